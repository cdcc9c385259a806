"""hf_vq: autoencoders for images (AE, VAE, VQ-VAE, VQ-GAN) and their priors (GPT, PixelCNN), and a recurrent
sequence VAE (MusicVAE), as native Hugging Face models.

Importing the package registers every config and model with transformers' Auto classes.
"""

import transformers
from transformers import AutoConfig

from .models import (
    MODEL_CLASSES,
    AutoencoderConfig,
    AutoencoderModel,
    AutoencoderOutput,
    PatchDiscriminator,
    PatchDiscriminatorConfig,
    PixelCNNPriorConfig,
    PixelCNNPriorModel,
    PixelCNNPriorOutput,
    SequenceVAEConfig,
    SequenceVAEModel,
    SequenceVAEOutput,
    VAEConfig,
    VAEModel,
    VAEOutput,
    VQAutoencoderOutput,
    VQGANConfig,
    VQGANModel,
    VQPriorConfig,
    VQPriorForCausalLM,
    VQVAEConfig,
    VQVAEModel,
)
from .modules import (
    FSQ,
    LFQ,
    DiagonalGaussian,
    QuantizerOutput,
    ResidualVectorQuantizer,
    SimVQ,
    VectorQuantizer,
)
from .pipelines import VQImageGenerationPipeline
from .utils.configuration_utils import ConvAutoencoderConfig
from .utils.errors import UsageError

__version__ = "0.1.0"

for _model_type, _model_class in MODEL_CLASSES.items():
    # exist_ok: re-importing the package (e.g. after importlib.reload) must not fail.
    AutoConfig.register(_model_type, _model_class.config_class, exist_ok=True)
    # Its own Auto class (AutoModelForCausalLM for the GPT prior), and AutoModel, which resolves every family, so
    # that code taking "a prior" loads either prior with one call.
    for _auto_class_name in dict.fromkeys((_model_class.auto_class_name, "AutoModel")):
        getattr(transformers, _auto_class_name).register(_model_class.config_class, _model_class, exist_ok=True)

__all__ = [
    "AutoencoderConfig",
    "AutoencoderModel",
    "AutoencoderOutput",
    "ConvAutoencoderConfig",
    "DiagonalGaussian",
    "FSQ",
    "LFQ",
    "PatchDiscriminator",
    "PatchDiscriminatorConfig",
    "PixelCNNPriorConfig",
    "PixelCNNPriorModel",
    "PixelCNNPriorOutput",
    "QuantizerOutput",
    "ResidualVectorQuantizer",
    "SequenceVAEConfig",
    "SequenceVAEModel",
    "SequenceVAEOutput",
    "SimVQ",
    "UsageError",
    "VAEConfig",
    "VAEModel",
    "VAEOutput",
    "VQAutoencoderOutput",
    "VQGANConfig",
    "VQGANModel",
    "VQImageGenerationPipeline",
    "VQPriorConfig",
    "VQPriorForCausalLM",
    "VQVAEConfig",
    "VQVAEModel",
    "VectorQuantizer",
]
