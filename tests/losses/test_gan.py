import math

import pytest
import torch
from torch import nn

from hf_vq.losses import (
    GAN_LOSSES,
    LPIPS,
    LeCAM,
    adaptive_weight,
    hinge_d_loss,
    hinge_g_loss,
    load_lpips,
    non_saturating_d_loss,
    non_saturating_g_loss,
)
from hf_vq.modules import lpips as lpips_module

# ----- LPIPS: the network lives in hf_vq.modules.lpips (tests/modules/test_lpips.py) -----


def test_the_lpips_loss_is_the_modules_network():
    assert LPIPS is lpips_module.LPIPS and load_lpips is lpips_module.load_lpips


# ----- GAN losses -----

REAL = torch.tensor([2.0, 0.5, -1.0])
FAKE = torch.tensor([-2.0, 0.0, 0.5])


def softplus(x: float) -> float:
    return math.log1p(math.exp(x))


def test_hinge_losses_against_hand_computation():
    # relu(1 - real) = (0, 0.5, 2), relu(1 + fake) = (0, 1, 1.5): (2.5/3 + 2.5/3) / 2 = 5/6
    torch.testing.assert_close(hinge_d_loss(REAL, FAKE), torch.tensor(5 / 6))
    torch.testing.assert_close(hinge_g_loss(FAKE), torch.tensor(0.5))


def test_non_saturating_losses_against_hand_computation():
    d_real = sum(softplus(-r) for r in REAL.tolist()) / 3
    d_fake = sum(softplus(f) for f in FAKE.tolist()) / 3
    torch.testing.assert_close(non_saturating_d_loss(REAL, FAKE), torch.tensor(0.5 * (d_real + d_fake)))
    g = sum(softplus(-f) for f in FAKE.tolist()) / 3
    torch.testing.assert_close(non_saturating_g_loss(FAKE), torch.tensor(g))
    # stable for confident logits: -log(sigmoid(-100)) = 100, not inf
    torch.testing.assert_close(non_saturating_g_loss(torch.tensor([-100.0])), torch.tensor(100.0))


def test_gan_losses_mapping():
    assert GAN_LOSSES["hinge"] == (hinge_d_loss, hinge_g_loss)
    assert GAN_LOSSES["non_saturating"] == (non_saturating_d_loss, non_saturating_g_loss)


def _tiny_decoder_losses(gan_scale: float):
    # "decoder" y = W x with W (2, 3) = 0, x = (1, 2, 2) (|x| = 3), target t = (3, 4) (|t| = 5).
    # L_rec = |W x - t|^2 -> grad 2 (W x - t) x^T, norm 2 * 5 * 3 = 30.
    # L_gan = -gan_scale * c . (W x), c = (0.6, 0.8) -> grad -gan_scale c x^T, norm 3 * gan_scale.
    weight = nn.Parameter(torch.zeros(2, 3))
    y = weight @ torch.tensor([1.0, 2.0, 2.0])
    rec = (y - torch.tensor([3.0, 4.0])).pow(2).sum()
    gan = -gan_scale * (torch.tensor([0.6, 0.8]) * y).sum()
    return weight, rec, gan


def test_adaptive_weight_against_hand_computation():
    weight, rec, gan = _tiny_decoder_losses(gan_scale=2.0)
    value = adaptive_weight(rec, gan, weight)
    torch.testing.assert_close(value, torch.tensor(30.0 / (6.0 + 1e-4)))
    assert not value.requires_grad
    (rec + value * gan).backward()  # the graphs were retained for the training step's backward
    assert weight.grad is not None


def test_adaptive_weight_is_clamped():
    weight, rec, gan = _tiny_decoder_losses(gan_scale=1e-6)  # 30 / (3e-6 + 1e-4) ~ 2.9e5
    torch.testing.assert_close(adaptive_weight(rec, gan, weight), torch.tensor(1e4))
    weight, rec, gan = _tiny_decoder_losses(gan_scale=2.0)
    torch.testing.assert_close(adaptive_weight(rec, gan, weight, max_weight=3.0), torch.tensor(3.0))
    weight, rec, gan = _tiny_decoder_losses(gan_scale=0.0)  # vanishing adversarial gradient: eps keeps it finite
    torch.testing.assert_close(adaptive_weight(rec, gan, weight, max_weight=1e9), torch.tensor(30.0 / 1e-4))


def test_lecam_update_and_penalty_against_hand_computation():
    lecam = LeCAM(decay=0.9)
    with pytest.raises(RuntimeError, match="call update"):
        lecam.penalty(REAL, FAKE)
    lecam.update(torch.tensor([1.0, 3.0]), torch.tensor([-1.0, -3.0]))  # first update: the batch means
    torch.testing.assert_close((lecam.ema_real, lecam.ema_fake), (torch.tensor(2.0), torch.tensor(-2.0)))
    lecam.update(torch.tensor([4.0, 4.0]), torch.tensor([1.0, -1.0]))  # 0.9 * 2 + 0.1 * 4, 0.9 * -2 + 0.1 * 0
    torch.testing.assert_close((lecam.ema_real, lecam.ema_fake), (torch.tensor(2.2), torch.tensor(-1.8)))
    # relu(real - ema_fake) = relu(1, -1) = (1, 0) -> 0.5; relu(ema_real - fake) = relu(2, -0.5) = (2, 0) -> 2
    real = torch.tensor([-0.8, -2.8], requires_grad=True)
    fake = torch.tensor([0.2, 2.7], requires_grad=True)
    penalty = lecam.penalty(real, fake)
    torch.testing.assert_close(penalty, torch.tensor(2.5))
    penalty.backward()
    torch.testing.assert_close(real.grad, torch.tensor([1.0, 0.0]))  # d/dr (r + 1.8)^2 / 2 = r + 1.8
    torch.testing.assert_close(fake.grad, torch.tensor([-2.0, 0.0]))  # d/df (2.2 - f)^2 / 2 = -(2.2 - f)


def test_lecam_state_dict_round_trip():
    lecam = LeCAM()
    lecam.update(torch.tensor([1.0, 2.0]), torch.tensor([-1.0]))
    lecam.update(torch.tensor([0.5]), torch.tensor([0.0]))
    restored = LeCAM()
    restored.load_state_dict(lecam.state_dict())
    assert set(lecam.state_dict()) == {"ema_real", "ema_fake", "num_updates"}
    assert restored.num_updates.item() == 2
    torch.testing.assert_close(restored.penalty(REAL, FAKE), lecam.penalty(REAL, FAKE), rtol=0, atol=0)
    with pytest.raises(ValueError, match="decay"):
        LeCAM(decay=1.0)
