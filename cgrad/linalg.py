"""torch.linalg's vector norm (matrix functions are not in cgrad)."""
from ._shape_ops import vector_norm

__all__ = ["vector_norm"]
