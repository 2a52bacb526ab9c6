"""cgrad: reverse-mode automatic differentiation with a C core.

    import cgrad
    x = cgrad.tensor([1.0, 2.0], requires_grad=True)
    y = (x * x).sum()
    y.backward()
    x.grad            # tensor([2., 4.])
"""
import builtins as _builtins
import os as _os

import numpy as _np  # noqa: F401  first, so that numpy's own BLAS sees the user's environment


def _load_core():
    """Import the compiled core with its OpenBLAS starting on one thread: no idle thread
    pool spinning on the other cores (set_num_threads grows it when asked)."""
    key = "OPENBLAS_NUM_THREADS"
    previous = _os.environ.get(key)
    if previous is None:
        _os.environ[key] = "1"
    try:
        from . import _C
    finally:
        if previous is None:
            _os.environ.pop(key, None)
    return _C


_C = _load_core()
from .autograd import (GradcheckError, detect_anomaly, enable_grad, gradcheck, gradgradcheck, inference_mode,
                       is_grad_enabled, no_grad, set_anomaly, set_grad_enabled)
from .tensor import (Generator, Size, Tensor, arange, as_tensor, atan2, bernoulli, bool_, cat, concatenate, empty,
                     empty_like, eye, float32, float64, from_numpy, full, full_like, int32, int64, linspace,
                     logspace, manual_seed, matmul, maximum, minimum, multinomial, normal, ones, ones_like, pow,
                     get_rng_state, set_rng_state, rand, rand_like, randint, randint_like, randn, randn_like, randperm, stack, tensor, uint8,
                     where, zeros, zeros_like, is_tensor, get_default_dtype, set_default_dtype,
                     broadcast_tensors, meshgrid, hstack, vstack)
from ._promotion import result_type  # noqa: E402
from ._device import device  # noqa: E402
from ._shape_ops import einsum  # noqa: E402
# PyTorch's dtype aliases: cgrad.float is float32, double float64, long int64, int int32
float = float32
double = float64
long = int64
int = int32
bool = bool_

from . import backends, cuda, data, diagnostics, nn, optim, profiler, utils, viz  # noqa: E402  (after tensor)
from .autograd import functional as _functional  # noqa: E402,F401  (cgrad.autograd.functional)
from . import linalg  # noqa: E402
from .replay import CompiledStep, compile  # noqa: E402
from .profiler import profile  # noqa: E402
from .serialization import load, save  # noqa: E402
from . import onnx  # noqa: E402  (cgrad.onnx.export; the onnx package is imported only when it runs)
from .trainer import (Callback, EarlyStopping, History, ModelCheckpoint,  # noqa: E402
                      TerminateOnNaN, Trainer)

__version__ = "0.1.0"

_LAZY = {"MLPClassifier": "estimators", "MLPRegressor": "estimators"}


def __getattr__(name):
    """The estimators on first use: they import scikit-learn when it is installed (over a
    second), which `import cgrad` should not pay for."""
    if name in _LAZY:
        import importlib
        value = getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'cgrad' has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(_LAZY))


# Functional forms of the methods, numpy style: cgrad.exp(t), cgrad.sum(t, axis=0), ...
def _method(name):
    def fn(x, *args, **kwargs):
        return getattr(x, name)(*args, **kwargs)
    fn.__name__ = name
    fn.__doc__ = f"cgrad.{name}(t, ...) is t.{name}(...)"
    return fn


# every elementwise op of the registry that is a Tensor method (cgrad.sin, cgrad.gelu, ...),
# and these others
_FUNCTIONAL = [name for name, family, _ in _C.op_table() if family in ("unary", "binary")] + [
    "clip", "clamp", "sum", "mean", "max", "min", "logsumexp", "softmax", "log_softmax", "reshape",
    "transpose", "permute", "argmax", "argmin", "sort", "argsort", "topk", "gather", "scatter_add",
    "index_select", "masked_fill", "clamp_min", "clamp_max", "eq", "ne", "lt", "le", "gt", "ge", "equal",
    "allclose", "isclose", "any", "all", "nonzero", "logical_not", "logical_and", "logical_or", "isnan",
    "isinf", "isfinite", "numel", "is_floating_point", "amax", "amin", "t", "clone", "mm", "bmm", "mv", "dot",
    "inner", "outer", "diag", "diagonal", "trace", "lerp", "addcmul", "addcdiv", "take", "select",
    "masked_select", "unique", "remainder", "fmod", "floor_divide", "true_divide", "squeeze", "unsqueeze",
    "flatten", "expand", "add", "sub", "mul", "div", "multiply", "subtract", "divide"]
_FUNCTIONAL += ["var", "std", "norm", "cumsum", "flip", "roll", "chunk", "split", "unbind", "narrow", "tril",
                "triu", "movedim", "moveaxis", "swapaxes", "swapdims", "repeat"]  # the ShapeOps with a torch.<name> too
broadcast_to = _method("expand")
tile = _method("repeat")
for _name in _FUNCTIONAL:
    if _name not in globals() and hasattr(Tensor, _name):
        globals()[_name] = _method(_name)
del _name


set_num_threads = _C.set_num_threads
get_num_threads = _C.get_num_threads


def _default_num_threads() -> _builtins.int:
    """The thread count a process starts with: CGRAD_NUM_THREADS if set, else 1. Worker
    processes (joblib's loky, multiprocessing, Dask) inherit the environment, so the
    variable is how a user gives each worker more; without it two workers on two cores
    use one core each (docs/architecture.md, "Threads")."""
    value = _os.environ.get("CGRAD_NUM_THREADS", "").strip()
    if not value:
        return 1
    try:
        n = _builtins.int(value, 10)  # not str.isdigit, which takes '²' that int() refuses
    except ValueError:
        n = 0
    if n < 1:
        raise ValueError(f"cgrad: CGRAD_NUM_THREADS must be a positive integer, got {value!r}")
    return n


def _threads_after_fork() -> None:
    # a forked worker starts again at the default: the parent's set_num_threads(n) is
    # for the parent, and n threads in each of n workers would oversubscribe the cores
    set_num_threads(_default_num_threads())


set_num_threads(_default_num_threads())
_os.register_at_fork(after_in_child=_threads_after_fork)
set_flush_denormal = _C.set_flush_denormal


def set_blas(name: str) -> None:
    """Choose the GEMM provider: 'openblas' (the default when built with it) or 'builtin'."""
    _C.set_blas(name)


def show_config() -> dict:
    """Print and return build and runtime facts: version, BLAS provider and its version and
    configuration, threads, compiler flags and the CPU features in use."""
    info = {
        "version": __version__,
        "blas": _C.blas_current(),
        "blas_providers": _C.blas_providers(),
        "blas_config": _C.blas_config(),
        "num_threads": _C.get_num_threads(),
        "build": _C.build_info(),
        "numpy": _np.__version__,
    }
    for k, v in info.items():
        print(f"{k:15s} {v}")
    return info


def live_bytes() -> _builtins.int:
    """Bytes the C core holds right now (tensors, tape nodes); 0 once everything is freed."""
    return _C.live_bytes()
