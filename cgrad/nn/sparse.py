"""Embedding layers (PyTorch's torch.nn.modules.sparse)."""

__all__: list = []
