import math

import pytest
import torch

from dcgan.losses import (
    d_loss_bce,
    d_loss_hinge,
    d_loss_wasserstein,
    g_loss_mean,
    g_loss_nonsaturating,
    gradient_penalty,
    r1_penalty,
)

REAL = torch.tensor([2.0, -0.5])
FAKE = torch.tensor([-1.0, 0.5])


def softplus(x):
    return math.log1p(math.exp(x))


def test_bce_discriminator_loss_by_hand():
    # -log sigmoid(r) = softplus(-r); -log(1 - sigmoid(f)) = softplus(f)
    expected = (softplus(-2.0) + softplus(0.5)) / 2 + (softplus(-1.0) + softplus(0.5)) / 2
    assert d_loss_bce(REAL, FAKE).item() == pytest.approx(expected, rel=1e-6)


def test_bce_one_sided_label_smoothing_by_hand():
    def bce(logit, target):
        p = 1 / (1 + math.exp(-logit))
        return -(target * math.log(p) + (1 - target) * math.log(1 - p))

    expected = (bce(2.0, 0.9) + bce(-0.5, 0.9)) / 2 + (bce(-1.0, 0) + bce(0.5, 0)) / 2
    assert d_loss_bce(REAL, FAKE, label_smoothing=0.1).item() == pytest.approx(expected, rel=1e-6)


def test_hinge_discriminator_loss_by_hand():
    # mean(relu(1 - r)) = (0 + 1.5) / 2; mean(relu(1 + f)) = (0 + 1.5) / 2
    assert d_loss_hinge(REAL, FAKE).item() == pytest.approx(1.5)


def test_wasserstein_critic_loss_by_hand():
    assert d_loss_wasserstein(REAL, FAKE).item() == pytest.approx((-1.0 + 0.5) / 2 - (2.0 - 0.5) / 2)


def test_generator_losses_by_hand():
    assert g_loss_nonsaturating(FAKE).item() == pytest.approx((softplus(1.0) + softplus(-0.5)) / 2, rel=1e-6)
    assert g_loss_mean(FAKE).item() == pytest.approx(0.25)


class Quadratic(torch.nn.Module):
    """D(x) = sum(w * x^2): gradient 2 w x, known in closed form."""

    def __init__(self, shape):
        super().__init__()
        self.w = torch.nn.Parameter(torch.randn(shape))

    def forward(self, x):
        return (self.w * x.square()).flatten(1).sum(1)


def test_r1_matches_autograd_reference():
    torch.manual_seed(0)
    D = Quadratic((3, 4, 4))
    x = torch.randn(5, 3, 4, 4, requires_grad=True)
    r1 = r1_penalty(D(x), x)
    expected = (2 * D.w * x).square().flatten(1).sum(1).mean()
    assert r1.item() == pytest.approx(expected.item(), rel=1e-5)
    # Its gradient reaches D's weights (create_graph), as R1 needs to regularize D.
    r1.backward()
    assert D.w.grad is not None and D.w.grad.abs().sum() > 0


def test_gradient_penalty_of_a_linear_critic():
    torch.manual_seed(0)
    w = torch.randn(3, 4, 4)

    def critic(x):
        return (w * x).flatten(1).sum(1)

    gp = gradient_penalty(critic, torch.randn(6, 3, 4, 4), torch.randn(6, 3, 4, 4))
    assert gp.item() == pytest.approx((w.norm().item() - 1) ** 2, rel=1e-5)


def test_relativistic_pairing_losses_by_hand():
    from dcgan.losses import d_loss_relativistic, g_loss_relativistic

    # pairs (2.0, -1.0) and (-0.5, 0.5): D pays softplus(f - r), G pays softplus(r - f)
    assert d_loss_relativistic(REAL, FAKE).item() == pytest.approx((softplus(-3.0) + softplus(1.0)) / 2, rel=1e-6)
    assert g_loss_relativistic(FAKE, REAL).item() == pytest.approx((softplus(3.0) + softplus(-1.0)) / 2, rel=1e-6)


def test_lecam_penalty_by_hand():
    from dcgan.losses import lecam_penalty

    # relu(r - a_F)^2 with a_F = 0.5: (1.5^2 + 0) / 2; relu(a_R - f)^2 with a_R = 0.25: (1.25^2 + 0) / 2
    value = lecam_penalty(REAL, FAKE, ema_real=0.25, ema_fake=0.5)
    assert value.item() == pytest.approx(1.5 ** 2 / 2 + 1.25 ** 2 / 2)


def NoScaler():
    return torch.amp.GradScaler("cpu", enabled=False)  # scale() returns the loss as it is


def _discriminator(**kwargs):
    from dcgan.models import build_discriminator

    torch.manual_seed(1)
    return build_discriminator(img_resolution=32, img_channels=3, base_channels=8, **kwargs)


@pytest.mark.parametrize("kwargs", [dict(norm="none", mbstd_group=4), dict(norm="none", spectral_norm=True),
                                    dict(norm="none", num_classes=3, conditioning="projection"),
                                    dict(norm="none", num_classes=3, conditioning="acgan")])
def test_fused_discriminator_forward_matches_two_forwards(kwargs):
    import copy

    from dcgan.losses import GANLoss

    D = _discriminator(**kwargs)
    if kwargs.get("spectral_norm"):
        D.eval()  # no power iteration, so both ways see the same normalized weights
    twin = copy.deepcopy(D)
    real, fake = torch.randn(8, 3, 32, 32), torch.randn(8, 3, 32, 32)
    conditioning = kwargs.get("conditioning", "")
    labels = (torch.arange(8) % 3, torch.arange(8).flip(0) % 3) if conditioning else (None, None)
    fused = GANLoss(generator=None, discriminator=D, loss="hinge", r1_gamma=1.0, r1_interval=1,
                    conditioning=conditioning)
    split = GANLoss(generator=None, discriminator=twin, loss="hinge", r1_gamma=1.0, r1_interval=1,
                    conditioning=conditioning)
    split.fused = False
    assert fused.fused
    a = fused.discriminator_step(real, fake, 0, NoScaler(), *labels)
    b = split.discriminator_step(real, fake, 0, NoScaler(), *labels)
    for key in ("loss_d", "d_real", "d_fake", "r1") + (("ac_d",) if conditioning == "acgan" else ()):
        assert a[key].item() == pytest.approx(b[key].item(), rel=1e-5, abs=1e-6), key
    for p, q in zip(D.parameters(), twin.parameters()):
        torch.testing.assert_close(p.grad, q.grad, rtol=1e-4, atol=1e-6)


def test_discriminator_with_batch_norm_is_not_fused():
    from dcgan.losses import GANLoss

    assert not GANLoss(generator=None, discriminator=_discriminator(norm="batch"), loss="bce").fused


def test_r2_and_lecam_enter_the_discriminator_loss():
    from dcgan.losses import GANLoss, d_loss_relativistic

    D = _discriminator(norm="none")
    real, fake = torch.randn(4, 3, 32, 32), torch.randn(4, 3, 32, 32)
    loss = GANLoss(generator=None, discriminator=D, loss="rpgan", r2_gamma=0.5, r1_interval=1, lecam_weight=0.3,
                   lecam_decay=0.9)
    stats = loss.discriminator_step(real, fake, 0, NoScaler())
    assert stats["r2"].item() > 0
    with torch.no_grad():
        r, f = D(real), D(fake)
    assert stats["loss_d"].item() == pytest.approx(d_loss_relativistic(r, f).item(), rel=1e-5)
    # The LeCam anchors moved 10% of the way from 0 toward the batch means.
    assert loss.lecam_ema["real"] == pytest.approx(0.1 * r.mean().item(), rel=1e-4)
    assert loss.lecam_ema["fake"] == pytest.approx(0.1 * f.mean().item(), rel=1e-4)
    restored = GANLoss(generator=None, discriminator=D, loss="rpgan")
    restored.load_state_dict(loss.state_dict())
    assert restored.lecam_ema == loss.lecam_ema
