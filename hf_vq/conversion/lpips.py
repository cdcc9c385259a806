"""The released VGG16 and LPIPS v0.1 weights -> the state dict of `hf_vq.modules.lpips.LPIPS`.

Both releases already use the network's parameter names (torchvision's `features.N.*`, LPIPS's `linK.model.1.weight`),
so the conversion picks keys: the VGG16 trunk up to relu5_3 from one file, the five linear heads from the other. The
files are read by the caller (`scripts/convert_lpips_weights.py`, with `torch.load(weights_only=True)`).
"""

from __future__ import annotations

from collections.abc import Mapping

import torch

from ..modules.lpips import LPIPS


def convert_lpips_state_dict(
    vgg16_state: Mapping[str, torch.Tensor], lpips_state: Mapping[str, torch.Tensor]
) -> dict[str, torch.Tensor]:
    """The `LPIPS` state dict from the released files, checked key for key and shape for shape.

    Args:
        vgg16_state: torchvision's VGG16 state dict (`vgg16-397923af.pth`); its `features.*` up to relu5_3 are kept,
            the classifier dropped.
        lpips_state: LPIPS v0.1's `vgg.pth`; its `lin{0..4}.model.1.weight` heads are kept.
    """
    target = LPIPS()
    expected = target.state_dict()
    state = {key: value for key, value in vgg16_state.items() if key.startswith("features.") and key in expected}
    state.update({key: value for key, value in lpips_state.items() if key.startswith("lin") and key in expected})
    state = {key: value.detach().float().contiguous() for key, value in state.items()}
    target.load_weights(state)  # raises a ValueError naming missing keys or wrong shapes
    return state


__all__ = ["convert_lpips_state_dict"]
