"""The pixel losses against hand values."""

import pytest
import torch

from hf_vq.losses import reconstruction_loss


def test_reconstruction_losses_against_hand_values():
    target = torch.zeros(2, 1, 2, 2)
    reconstruction = torch.tensor([1.0, -1.0, 2.0, 0.0, 0.0, 0.0, 0.0, 3.0]).view(2, 1, 2, 2)
    assert reconstruction_loss(reconstruction, target, "l2").item() == pytest.approx((1 + 1 + 4 + 9) / 8)
    assert reconstruction_loss(reconstruction, target, "l1").item() == pytest.approx((1 + 1 + 2 + 3) / 8)
    assert reconstruction_loss(reconstruction, target, "l2", "sum").item() == pytest.approx((6 + 9) / 2)
    with pytest.raises(ValueError, match="loss_type"):
        reconstruction_loss(reconstruction, target, "huber")
