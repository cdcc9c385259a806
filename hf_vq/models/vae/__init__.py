from .configuration_vae import VAEConfig
from .modeling_vae import VAEModel, VAEOutput

__all__ = ["VAEConfig", "VAEModel", "VAEOutput"]
