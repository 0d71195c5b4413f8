import copy

import pytest
import torch

from dcgan.training.ema import ema_beta, update_ema


@pytest.mark.parametrize("batch_size", [16, 64, 256])
def test_half_life_in_images_does_not_depend_on_batch(batch_size):
    # After ema_kimg * 1000 images the starting weights weigh one half, whatever the batch.
    steps = 10_000 // batch_size
    weight = ema_beta(batch_size, 10.0, cur_nimg=10**9) ** steps
    assert weight == pytest.approx(0.5 ** (steps * batch_size / 10_000), rel=1e-9)
    assert ema_beta(batch_size, 10.0, cur_nimg=10**9) == pytest.approx(0.5 ** (batch_size / 10_000))


def test_rampup_caps_the_half_life():
    # 1,000 images seen with ramp-up 0.05: the half-life is 50 images, not 10,000.
    assert ema_beta(64, 10.0, cur_nimg=1000, rampup=0.05) == pytest.approx(0.5 ** (64 / 50))
    assert ema_beta(64, 10.0, cur_nimg=10**7, rampup=0.05) == pytest.approx(0.5 ** (64 / 10_000))


def test_update_moves_parameters_and_copies_buffers():
    model = torch.nn.Sequential(torch.nn.Linear(3, 2), torch.nn.BatchNorm1d(2))
    ema = copy.deepcopy(model)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(1.0)
        model[1].running_mean.fill_(7.0)
    before = [p.clone() for p in ema.parameters()]
    update_ema(ema, model, beta=0.75)
    for old, new, target in zip(before, ema.parameters(), model.parameters()):
        torch.testing.assert_close(new, 0.75 * old + 0.25 * target)
    assert torch.equal(ema[1].running_mean, torch.full((2,), 7.0))


def test_standing_statistics_are_the_generators_own_batch_statistics():
    from dcgan.models import build_generator
    from dcgan.training.ema import standing_statistics

    torch.manual_seed(0)
    G = build_generator(z_dim=8, img_resolution=32, img_channels=3, base_channels=4)
    before = {k: v.clone() for k, v in G.state_dict().items()}
    rng_before = torch.get_rng_state()
    fixed = standing_statistics(G, batches=3, batch_size=16, seed=5)
    assert torch.equal(torch.get_rng_state(), rng_before)  # the run's random stream is untouched
    assert all(torch.equal(before[k], v) for k, v in G.state_dict().items())  # the original is untouched
    # The first BatchNorm's running mean is the mean of the first layer's outputs on the same latents.
    latents = torch.Generator().manual_seed(5)
    z = torch.cat([torch.randn(16, 8, generator=latents) for _ in range(3)])
    with torch.no_grad():
        first = G.main[0](z[:, :, None, None])  # (48, C, 4, 4)
    torch.testing.assert_close(fixed.main[1].running_mean, first.mean(dim=(0, 2, 3)), rtol=1e-4, atol=1e-6)
    assert not fixed.training
