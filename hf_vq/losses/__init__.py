"""Training losses combined in the training loop (models return only their own terms)."""

from .reconstruction import reconstruction_loss

__all__ = ["reconstruction_loss"]
