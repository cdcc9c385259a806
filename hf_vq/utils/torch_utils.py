"""Small torch helpers shared by the metrics, the latent tools, the pipelines and the trainers."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch

from .errors import UsageError


@contextmanager
def evaluating(model: torch.nn.Module) -> Iterator[torch.nn.Module]:
    """`model` in eval mode for the block, then back in the mode it was in."""
    was_training = model.training
    model.eval()
    try:
        yield model
    finally:
        model.train(was_training)


def module_device(model: torch.nn.Module) -> torch.device:
    """The device of a module's first parameter."""
    return next(model.parameters()).device


def check_same_shape(a: torch.Tensor, b: torch.Tensor, what: str) -> None:
    """A `ValueError` naming `what` unless the two tensors have the same shape."""
    if a.shape != b.shape:
        raise UsageError(
            f"{what}: the shapes differ, {tuple(a.shape)} and {tuple(b.shape)}; tensors of different shapes cannot be "
            "compared or interpolated"
        )
