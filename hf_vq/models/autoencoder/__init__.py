from .configuration_autoencoder import AutoencoderConfig
from .modeling_autoencoder import AutoencoderModel, AutoencoderOutput

__all__ = ["AutoencoderConfig", "AutoencoderModel", "AutoencoderOutput"]
