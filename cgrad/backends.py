"""PyTorch's accelerator back ends, none of which cgrad has: `backends.mps.is_available()`
is False, as it is for PyTorch on a machine without Apple's GPU."""
from types import SimpleNamespace

mps = SimpleNamespace(is_available=lambda: False, is_built=lambda: False)
