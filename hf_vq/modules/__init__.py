from .backbone import build_decoder, build_encoder
from .distributions import DiagonalGaussian
from .quantizers import (
    FSQ,
    LFQ,
    QuantizerOutput,
    ResidualVectorQuantizer,
    SimVQ,
    VectorQuantizer,
    build_quantizer,
    nearest_codes,
)

__all__ = [
    "FSQ",
    "LFQ",
    "DiagonalGaussian",
    "QuantizerOutput",
    "ResidualVectorQuantizer",
    "SimVQ",
    "VectorQuantizer",
    "build_decoder",
    "build_encoder",
    "build_quantizer",
    "nearest_codes",
]
