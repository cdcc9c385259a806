from .backbone import build_decoder, build_encoder
from .distributions import DiagonalGaussian

__all__ = ["DiagonalGaussian", "build_decoder", "build_encoder"]
