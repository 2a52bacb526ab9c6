"""PyTorch's torch.utils: cgrad.utils.data (Dataset, TensorDataset, DataLoader, ...)."""
from . import data

__all__ = ["data"]
