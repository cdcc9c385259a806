from .configuration_prior import VQPriorConfig
from .modeling_prior import VQPriorForCausalLM

__all__ = ["VQPriorConfig", "VQPriorForCausalLM"]
