from .backbone import build_decoder, build_encoder
from .distributions import DiagonalGaussian
from .quantizers import FSQ, QuantizerOutput, VectorQuantizer, build_quantizer, nearest_codes

__all__ = [
    "FSQ",
    "DiagonalGaussian",
    "QuantizerOutput",
    "VectorQuantizer",
    "build_decoder",
    "build_encoder",
    "build_quantizer",
    "nearest_codes",
]
