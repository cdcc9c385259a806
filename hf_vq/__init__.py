"""hf_vq: autoencoders for images (AE, VAE, VQ-VAE, VQ-GAN) and their prior, as native Hugging Face models.

Importing the package registers every config and model with transformers' Auto classes.
"""

from transformers import AutoConfig, AutoModel, AutoModelForCausalLM

from .configuration_utils import ConvAutoencoderConfig
from .models import (
    AutoencoderConfig,
    AutoencoderModel,
    AutoencoderOutput,
    PatchDiscriminator,
    PatchDiscriminatorConfig,
    VAEConfig,
    VAEModel,
    VAEOutput,
    VQGANConfig,
    VQGANModel,
    VQPriorConfig,
    VQPriorForCausalLM,
    VQVAEConfig,
    VQVAEModel,
)
from .modules import FSQ, DiagonalGaussian, QuantizerOutput, VectorQuantizer
from .modules.vq_autoencoder import VQAutoencoderOutput
from .pipelines import VQImageGenerationPipeline

__version__ = "0.1.0"

# (config, model) pairs registered with AutoConfig / AutoModel under the config's `model_type`.
_AUTO_MODELS = (
    (AutoencoderConfig, AutoencoderModel),
    (VAEConfig, VAEModel),
    (VQVAEConfig, VQVAEModel),
    (VQGANConfig, VQGANModel),
    (PatchDiscriminatorConfig, PatchDiscriminator),
)

for _config_class, _model_class in _AUTO_MODELS:
    # exist_ok: re-importing the package (e.g. after importlib.reload) must not fail.
    AutoConfig.register(_config_class.model_type, _config_class, exist_ok=True)
    AutoModel.register(_config_class, _model_class, exist_ok=True)
AutoConfig.register(VQPriorConfig.model_type, VQPriorConfig, exist_ok=True)
AutoModelForCausalLM.register(VQPriorConfig, VQPriorForCausalLM, exist_ok=True)

__all__ = [
    "AutoencoderConfig",
    "AutoencoderModel",
    "AutoencoderOutput",
    "ConvAutoencoderConfig",
    "DiagonalGaussian",
    "FSQ",
    "PatchDiscriminator",
    "PatchDiscriminatorConfig",
    "QuantizerOutput",
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
