"""Training losses combined in the training loop (models return only their own terms).

The LPIPS network lives in `hf_vq.modules.lpips` (the metrics use it too); it is re-exported here as the perceptual
loss.
"""

from ..modules.lpips import LPIPS, load_lpips
from .gan import (
    GAN_LOSSES,
    LeCAM,
    adaptive_weight,
    hinge_d_loss,
    hinge_g_loss,
    non_saturating_d_loss,
    non_saturating_g_loss,
)
from .reconstruction import reconstruction_loss

__all__ = [
    "GAN_LOSSES",
    "LPIPS",
    "LeCAM",
    "adaptive_weight",
    "hinge_d_loss",
    "hinge_g_loss",
    "load_lpips",
    "non_saturating_d_loss",
    "non_saturating_g_loss",
    "reconstruction_loss",
]
