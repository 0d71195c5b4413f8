import pytest
import torch

from dcgan.config import PRESETS, resolve_config
from dcgan.models import MODEL_FAMILIES, build_discriminator, build_generator, discriminator_kwargs, generator_kwargs


@pytest.mark.parametrize("family", sorted(MODEL_FAMILIES))
@pytest.mark.parametrize("preset", sorted(PRESETS))
@pytest.mark.parametrize("resolution", [32, 64])
@pytest.mark.parametrize("channels", [1, 3])
def test_output_shapes(family, preset, resolution, channels):
    config = resolve_config(preset)
    G = build_generator(family, **generator_kwargs(config, resolution, channels))
    D = build_discriminator(family, **discriminator_kwargs(config, resolution, channels))
    images = G(torch.randn(3, config.z_dim))
    assert images.shape == (3, channels, resolution, resolution)
    assert images.abs().max() <= 1.0  # tanh output
    assert D(images).shape == (3,)


def test_classic_widths_follow_radford():
    G = build_generator(z_dim=100, img_resolution=64, img_channels=3, base_channels=64)
    widths = [m.out_channels for m in G.modules() if isinstance(m, torch.nn.ConvTranspose2d)]
    assert widths == [512, 256, 128, 64, 3]  # ngf*8 at 4x4 ... 3 at 64x64, as in the paper


def test_weights_drawn_from_normal_0_002():
    torch.manual_seed(0)
    G = build_generator(z_dim=100, img_resolution=32, img_channels=3, base_channels=64)
    weight = G.main[0].weight
    assert abs(weight.std().item() - 0.02) < 0.002 and abs(weight.mean().item()) < 0.002


def test_spectral_norm_wraps_every_discriminator_layer_and_keeps_radford_init():
    from torch.nn.utils import parametrize

    torch.manual_seed(0)
    D = build_discriminator(img_resolution=32, img_channels=3, base_channels=16, norm="none", spectral_norm=True,
                            num_classes=10)
    layers = [m for m in D.modules() if isinstance(m, (torch.nn.Conv2d, torch.nn.Embedding))]
    assert len(layers) == 5 and all(parametrize.is_parametrized(m, "weight") for m in layers)
    for layer in layers:  # N(0, 0.02) reaches the stored weight, not a copy computed on access
        original = layer.parametrizations.weight.original
        assert abs(original.std().item() - 0.02) < 0.004, original.std().item()
    plain = build_discriminator(img_resolution=32, img_channels=3, base_channels=16, norm="none")
    assert not any(parametrize.is_parametrized(m) for m in plain.modules())


def test_class_conditional_variant_uses_the_label():
    torch.manual_seed(0)
    G = build_generator(z_dim=16, img_resolution=32, img_channels=3, base_channels=8, num_classes=10)
    D = build_discriminator(img_resolution=32, img_channels=3, base_channels=8, num_classes=10, norm="none")
    G.eval()
    z = torch.randn(2, 16)
    a, b = G(z, torch.tensor([0, 0])), G(z, torch.tensor([1, 1]))
    assert a.shape == (2, 3, 32, 32) and not torch.equal(a, b)
    assert D(a, torch.tensor([0, 1])).shape == (2,)
    with pytest.raises(ValueError, match="class labels"):
        G(z)


def test_conv3x3_output_adds_a_full_resolution_stage():
    G = build_generator(z_dim=16, img_resolution=32, img_channels=3, base_channels=64, output="conv3x3")
    assert G(torch.randn(2, 16)).shape == (2, 3, 32, 32)
    last = [m for m in G.modules() if isinstance(m, (torch.nn.Conv2d, torch.nn.ConvTranspose2d))][-1]
    assert isinstance(last, torch.nn.Conv2d) and last.kernel_size == (3, 3) and last.in_channels == 64


def test_minibatch_std_by_hand():
    from dcgan.models.dcgan import MinibatchStd

    x = torch.zeros(4, 2, 1, 1)
    x[:2, 0] = torch.tensor([[[1.0]], [[3.0]]])  # first group of 2: std of channel 0 is 1, channel 1 is 0
    out = MinibatchStd(2)(x)
    assert out.shape == (4, 3, 1, 1)
    assert out[:2, 2].flatten().tolist() == pytest.approx([0.5, 0.5], abs=1e-3)  # mean over channels of (1, 0)
    assert out[2:, 2].flatten().tolist() == pytest.approx([0.0, 0.0], abs=1e-3)  # the second group is constant
