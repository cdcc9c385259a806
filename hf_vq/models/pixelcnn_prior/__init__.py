from .configuration_pixelcnn_prior import PixelCNNPriorConfig
from .modeling_pixelcnn_prior import PixelCNNPriorModel, PixelCNNPriorOutput

__all__ = ["PixelCNNPriorConfig", "PixelCNNPriorModel", "PixelCNNPriorOutput"]
