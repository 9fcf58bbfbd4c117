"""Pure loss functions over tensors, one file per algorithm."""
from .rebel import rebel_loss

__all__ = ["rebel_loss"]
