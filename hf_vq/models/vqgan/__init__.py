from .configuration_vqgan import VQGANConfig
from .modeling_vqgan import VQGANModel

__all__ = ["VQGANConfig", "VQGANModel"]
