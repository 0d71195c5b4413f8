import math

import pytest
import torch

from dcgan.losses import (d_loss_bce, d_loss_hinge, d_loss_wasserstein, g_loss_mean, g_loss_nonsaturating,
                          gradient_penalty, r1_penalty)

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
