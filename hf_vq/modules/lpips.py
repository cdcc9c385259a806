"""LPIPS perceptual distance (Zhang et al. 2018, "The Unreasonable Effectiveness of Deep Features"), VGG16 variant.

The network, shared by the training losses and the evaluation metrics (`hf_vq.losses` re-exports it). Plain torch,
no torchvision. The parameter names are those of the released weights, so that they convert by picking keys (see
`hf_vq.conversion.lpips` and `scripts/convert_lpips_weights.py`):

- the VGG16 trunk `features.{0,2,5,7,10,12,14,17,19,21,24,26,28}.{weight,bias}` is torchvision's `vgg16().features`
  up to relu5_3 (ImageNet weights, e.g. `vgg16-397923af.pth`);
- the linear heads `lin{0..4}.model.1.weight`, (1, C, 1, 1), are LPIPS v0.1's `weights/v0.1/vgg.pth` (index 0 of
  `model` held a Dropout during LPIPS's training; here an Identity keeps the index without ever dropping).

Pretrained weights cannot be downloaded during training here: they are read from a local safetensors file or a Hub
repo (`LPIPS.from_pretrained`), and without them the perceptual term is off (`load_lpips(None)`).
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import torch
from safetensors.torch import load_file
from torch import nn

from ..utils.errors import UsageError

logger = logging.getLogger(__name__)

DEFAULT_FILENAME = "lpips_vgg16.safetensors"

# VGG16 configuration "D": conv output channels, "M" a 2x2 max-pool. Building it in this order numbers the layers
# exactly as torchvision's `features` (conv, ReLU, conv, ReLU, pool, ...).
_VGG16_LAYOUT = (64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512)
# Indices in `features` of relu1_2, relu2_2, relu3_3, relu4_3 and relu5_3, the five layers LPIPS compares.
TAP_INDICES = (3, 8, 15, 22, 29)
TAP_CHANNELS = (64, 128, 256, 512, 512)
# LPIPS v0.1's input scaling: ImageNet statistics expressed for inputs in [-1, 1].
_SHIFT = (-0.030, -0.088, -0.188)
_SCALE = (0.458, 0.448, 0.450)
# LPIPS's epsilon in the channel normalization.
NORMALIZE_EPS = 1e-10


def _vgg16_trunk() -> nn.Sequential:
    layers: list[nn.Module] = []
    in_channels = 3
    for item in _VGG16_LAYOUT:
        if item == "M":
            layers.append(nn.MaxPool2d(kernel_size=2, stride=2))
        else:
            layers += [nn.Conv2d(in_channels, item, kernel_size=3, padding=1), nn.ReLU()]
            in_channels = item
    return nn.Sequential(*layers)  # indices 0..29: torchvision's vgg16().features without the last pool


class LinearHead(nn.Module):
    """LPIPS's `NetLinLayer`: a 1x1 conv without bias from C channels to 1, under `model.1`."""

    def __init__(self, channels: int):
        super().__init__()
        self.model = nn.Sequential(nn.Identity(), nn.Conv2d(channels, 1, kernel_size=1, bias=False))

    @property
    def weight(self) -> torch.Tensor:
        """(1, C, 1, 1) the per-channel weights (non-negative in the released model)."""
        return self.model[1].weight


def normalize_channels(features: torch.Tensor, eps: float = NORMALIZE_EPS) -> torch.Tensor:
    """Unit-normalize (B, C, H, W) features over channels: `x / (||x||_2 + eps)`, LPIPS's `normalize_tensor`.

    The squared norm is clamped at eps**2 before the square root: identical values wherever a position has any
    signal, and a zero (not NaN) gradient at positions where every channel is 0, which post-ReLU features often are.
    """
    squared = features.pow(2).sum(dim=1, keepdim=True)  # (B, 1, H, W)
    return features / (squared.clamp_min(eps**2).sqrt() + eps)


class LPIPS(nn.Module):
    """Learned perceptual distance between two image batches, VGG16 trunk with LPIPS v0.1 linear heads.

    A fresh `LPIPS()` has random weights (for tests); use `LPIPS.from_pretrained` or `load_lpips` for the real
    metric. The module is frozen: no parameter requires grad and it stays in eval mode, but gradients flow to the
    inputs, as a loss needs.
    """

    def __init__(self):
        super().__init__()
        # Not persistent: constants of the method, not weights to convert.
        self.register_buffer("shift", torch.tensor(_SHIFT).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("scale", torch.tensor(_SCALE).view(1, 3, 1, 1), persistent=False)
        self.features = _vgg16_trunk()
        for k, channels in enumerate(TAP_CHANNELS):
            self.add_module(f"lin{k}", LinearHead(channels))
        self.requires_grad_(False)
        self.eval()

    @property
    def heads(self) -> list[LinearHead]:
        return [getattr(self, f"lin{k}") for k in range(len(TAP_CHANNELS))]

    def train(self, mode: bool = True) -> LPIPS:
        """Stays in eval mode: a frozen metric, even inside a module that the training loop switches to training."""
        return super().train(False)

    def extract_features(self, pixel_values: torch.Tensor) -> list[torch.Tensor]:
        """Images (B, 3, H, W) in [-1, 1] -> the five VGG16 taps, (B, C_k, H / 2**k, W / 2**k) for k = 0..4."""
        x = (pixel_values - self.shift) / self.scale
        taps = []
        for index, layer in enumerate(self.features):
            x = layer(x)
            if index in TAP_INDICES:
                taps.append(x)
        return taps

    def distance_from_features(self, features_a: list[torch.Tensor], features_b: list[torch.Tensor]) -> torch.Tensor:
        """LPIPS from two lists of taps: sum over taps of the spatial mean of `w_k . (n(a) - n(b))**2`, (B,).

        `n` unit-normalizes over channels (`normalize_channels`) and `w_k` is head k's 1x1 conv.
        """
        total = None
        for head, a, b in zip(self.heads, features_a, features_b, strict=True):
            diff = (normalize_channels(a.float()) - normalize_channels(b.float())).pow(2)  # (B, C_k, h, w)
            # The 1x1 conv as a weighted channel sum: elementwise ops stay in float32 under autocast.
            per_position = (diff * head.weight.float()).sum(dim=1)  # (B, h, w)
            layer_distance = per_position.mean(dim=(1, 2))  # (B,)
            total = layer_distance if total is None else total + layer_distance
        return total

    def forward(self, input: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """Distances (B,) between images `input` and `target` (B, 3 or 1, H, W) in [-1, 1].

        1-channel images are repeated to 3. Both batches go through the trunk together, in one pass.
        """
        if input.shape != target.shape:
            raise UsageError(f"LPIPS needs images of equal shapes, got {tuple(input.shape)} and {tuple(target.shape)}")
        if input.ndim != 4 or input.shape[1] not in (1, 3):
            raise UsageError(f"LPIPS takes images of shape (batch, 3 or 1, height, width), got {tuple(input.shape)}")
        if input.shape[1] == 1:
            input, target = input.expand(-1, 3, -1, -1), target.expand(-1, 3, -1, -1)
        batch = input.shape[0]
        taps = self.extract_features(torch.cat([input, target], dim=0))  # each (2B, C_k, h_k, w_k)
        return self.distance_from_features([t[:batch] for t in taps], [t[batch:] for t in taps])

    def load_weights(self, state_dict: dict[str, torch.Tensor]) -> None:
        """Copy a state dict with exactly this module's keys and shapes; a `ValueError` lists any difference."""
        expected = self.state_dict()
        missing = sorted(set(expected) - set(state_dict))
        unexpected = sorted(set(state_dict) - set(expected))
        if missing or unexpected:
            raise UsageError(
                "LPIPS weights do not match the VGG16 + linear heads layout "
                f"(features.N.weight/bias, linK.model.1.weight): missing keys {missing}, unexpected keys {unexpected}"
            )
        wrong_shapes = [
            f"{key}: expected {tuple(expected[key].shape)}, got {tuple(state_dict[key].shape)}"
            for key in expected
            if state_dict[key].shape != expected[key].shape
        ]
        if wrong_shapes:
            raise UsageError(f"LPIPS weights have wrong shapes: {'; '.join(wrong_shapes)}")
        self.load_state_dict(state_dict, strict=True)

    @classmethod
    def from_pretrained(
        cls, path_or_repo_id: str | os.PathLike, filename: str = DEFAULT_FILENAME, revision: str | None = None
    ) -> LPIPS:
        """Frozen LPIPS with weights from a safetensors file (never unpickled).

        Args:
            path_or_repo_id: a local `.safetensors` file, a local folder holding `filename`, or a Hub repo id
                (downloaded with `huggingface_hub.hf_hub_download`, which honours `HF_HUB_OFFLINE` and the cache).
            filename: the file's name in a folder or repo.
            revision: the Hub revision (branch, tag or commit); ignored for local paths.
        """
        path = Path(path_or_repo_id).expanduser()
        if path.is_file():
            weights_file = path
        elif path.is_dir():
            weights_file = path / filename
            if not weights_file.is_file():
                raise FileNotFoundError(f"no {filename} in the folder {path}")
        elif str(path_or_repo_id).endswith(".safetensors") or os.path.isabs(str(path)):
            raise FileNotFoundError(f"LPIPS weights file {path} does not exist")
        else:
            from huggingface_hub import hf_hub_download

            weights_file = Path(hf_hub_download(str(path_or_repo_id), filename, revision=revision))
        model = cls()
        model.load_weights(load_file(weights_file))
        return model


def load_lpips(weights: str | os.PathLike | None, filename: str = DEFAULT_FILENAME) -> LPIPS | None:
    """The frozen LPIPS for `--lpips_weights`, or `None` (with one warning) when no weights are given.

    Args:
        weights: a safetensors file, a folder or a Hub repo id (see `LPIPS.from_pretrained`), or `None`.
        filename: the file's name in a folder or repo.
    """
    if weights is None:
        logger.warning(
            "perceptual loss disabled: no --lpips_weights given (pretrained VGG16/LPIPS weights cannot be "
            "downloaded here; convert them with scripts/convert_lpips_weights.py)"
        )
        return None
    return LPIPS.from_pretrained(weights, filename=filename)
