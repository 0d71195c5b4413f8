import pytest
import torch

from dcgan.augment import _cutout, _translation, diff_augment


def test_policies_keep_shape_and_pass_gradients():
    x = torch.rand(4, 3, 32, 32, requires_grad=True)
    y = diff_augment(x * 2 - 1, ["color", "translation", "cutout"])
    assert y.shape == (4, 3, 32, 32)
    y.sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0


def test_translation_moves_pixels_and_pads_with_zeros():
    torch.manual_seed(3)
    x = torch.arange(1, 1 + 2 * 8 * 8, dtype=torch.float32).view(2, 1, 8, 8)
    y = _translation(x)
    for image, shifted in zip(x, y):
        # Every non-zero output pixel is an input pixel; the rest is zero padding.
        values = shifted[shifted != 0]
        assert torch.isin(values, image.flatten()).all()
        # A translation keeps the row/column order: the non-zero block is a contiguous crop.
        rows = (shifted[0] != 0).any(1).nonzero().flatten()
        assert torch.equal(rows, torch.arange(rows[0], rows[-1] + 1))
        assert (shifted[0] != 0).sum() >= (8 - 1) * (8 - 1)  # shift <= 1/8 of 8 = 1 pixel


def test_cutout_zeroes_a_square_of_half_the_side():
    torch.manual_seed(0)
    y = _cutout(torch.ones(64, 3, 32, 32))
    zeros = (y[:, 0] == 0).sum(dim=(1, 2)).float()
    assert zeros.max() == 16 * 16  # an uncropped 16x16 square
    assert zeros.min() >= 8 * 8  # at worst a quarter of it is off the image
    assert torch.equal(y[:, 0] == 0, y[:, 2] == 0)  # same mask on every channel


def test_color_changes_are_per_image():
    torch.manual_seed(0)
    x = torch.zeros(8, 3, 4, 4)
    y = diff_augment(x, ["color"])
    assert not torch.allclose(y[0], y[1])
    assert torch.allclose(y[0], y[0, 0, 0, 0].expand_as(y[0]))  # brightness shifts the whole image


def test_unknown_policy_is_a_key_error():
    with pytest.raises(KeyError):
        diff_augment(torch.zeros(1, 3, 8, 8), ["zoom"])


def test_augmenter_probability_zero_is_identity_and_one_always_augments():
    from dcgan.augment import Augmenter

    x = torch.rand(8, 3, 16, 16) * 2 - 1
    assert torch.equal(Augmenter(["color"], p=0.0)(x), x)
    torch.manual_seed(0)
    out = Augmenter(["color"], p=1.0)(x)
    assert all(not torch.equal(out[i], x[i]) for i in range(8))


def test_adaptive_probability_follows_the_overfitting_heuristic():
    from dcgan.augment import Augmenter

    ada = Augmenter(["translation"], target=0.6, interval=2, speed_kimg=1.0)
    assert ada.p == 0.0
    confident = torch.ones(10)  # r_t = 1 > 0.6: D overfits, p rises by batch * interval / 1000
    for _ in range(4):
        ada.observe(confident, batch_size=10)
    assert ada.p == pytest.approx(2 * 10 * 2 / 1000)
    unsure = -torch.ones(10)  # r_t = -1 < 0.6: p falls, never below 0
    for _ in range(20):
        ada.observe(unsure, batch_size=10)
    assert ada.p == 0.0
    ada.observe(confident, batch_size=10)
    twin = Augmenter(["translation"], target=0.6, interval=2, speed_kimg=1.0)
    twin.load_state_dict(ada.state_dict())
    assert twin.state_dict() == ada.state_dict()
