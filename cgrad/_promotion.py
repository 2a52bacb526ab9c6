"""Operands that are not one float dtype: PyTorch's type promotion, and integer and bool
tensors.

The binding's ops (cgrad/_C_ops.pxi) run in C when every operand has the same float
dtype. Otherwise they hand over here, after a single dtype test:

- Mixed operands are promoted as PyTorch promotes them: bool < integers < floats; within
  a kind the wider dtype wins; a 0-dim tensor does not widen a tensor of the same kind,
  and a Python number never widens a tensor (an integer tensor times 2.5 becomes
  float32). A float operand is converted with the recorded `cast` op, so gradients flow
  through promotion; an integer operand carries no gradient and is converted as data.
- An op whose result is an integer or bool tensor is computed by numpy. These tensors
  never require grad, so they need no tape; the result wraps numpy's array without a
  copy. cgrad.compile cannot replay numpy, so it refuses them while recording.

It imports only the binding and numpy: cgrad.tensor registers it with the binding.
"""
from __future__ import annotations

import numbers
from typing import Callable

import numpy as np

from . import _C
from ._state import refuse_while_recording

DEFAULT_FLOAT = np.dtype(np.float32)
_BOOL = np.dtype(np.bool_)

# Elementwise ops that keep an integer dtype; every other elementwise op on an integer
# tensor computes in the default float dtype, as PyTorch's exp(int) and sigmoid(int) do.
_INT_UNARY: dict[str, Callable] = {
    "neg": np.negative, "abs": np.abs, "sign": np.sign, "square": np.square,
    "relu": lambda a: np.maximum(a, 0).astype(a.dtype),
    "floor": np.copy, "ceil": np.copy, "round": np.copy, "trunc": np.copy,
}
_INT_BINARY = {
    "add": np.add, "sub": np.subtract, "mul": np.multiply, "maximum": np.maximum,
    "minimum": np.minimum, "pow": np.power,
}
# The scalar forms: (numpy function, whether the number comes first)
_SCALAR_OPS = {
    "add_scalar": (np.add, False), "mul_scalar": (np.multiply, False), "div_scalar": (np.true_divide, False),
    "rsub_scalar": (np.subtract, True), "rdiv_scalar": (np.true_divide, True), "pow_scalar": (np.power, False),
}
_TRUE_DIVISION = {"div", "div_scalar", "rdiv_scalar", "atan2"}


def kind(dtype: np.dtype) -> int:
    """0 bool, 1 integer, 2 float: the order in which kinds promote."""
    return 0 if dtype == _BOOL else 1 if dtype.kind in "iu" else 2


def _widest(dtypes) -> np.dtype:
    """The promoted dtype of operands that all count (tensors of one rank class)."""
    out = dtypes[0]
    for dt in dtypes[1:]:
        if kind(dt) != kind(out):
            out = dt if kind(dt) > kind(out) else out
        else:
            out = np.promote_types(out, dt)
    return out


def result_type(*tensors) -> np.dtype:
    """PyTorch's result dtype for tensors combined elementwise: dimensioned tensors decide,
    unless a 0-dim one is of a higher kind."""
    dims = [t.dtype for t in tensors if t.ndim > 0]
    zero = [t.dtype for t in tensors if t.ndim == 0]
    if not dims:
        return _widest(zero)
    out = _widest(dims)
    if zero and kind(_widest(zero)) > kind(out):
        return _widest(zero)
    return out


def _with_scalar(dtype: np.dtype, value) -> np.dtype:
    """A tensor's dtype combined with a Python number: only a higher kind changes it."""
    if isinstance(value, (bool, np.bool_)):
        return dtype
    if isinstance(value, numbers.Integral):
        return np.dtype(np.int64) if dtype == _BOOL else dtype
    if isinstance(value, numbers.Real):
        return DEFAULT_FLOAT if kind(dtype) < 2 else dtype
    raise TypeError(f"unsupported operand type for a tensor op: {type(value).__name__}")


def common_dtype(*xs) -> np.dtype:
    """The dtype PyTorch gives an op over tensors, arrays and Python numbers: tensors and
    arrays promote (an array meeting a float tensor takes its dtype, as the ops' constants
    do), then each number widens only across kinds."""
    tensors, numbers_, arrays = [], [], []
    for x in xs:
        if isinstance(x, _C.TensorBase):
            tensors.append(x)
        elif isinstance(x, (numbers.Number, np.bool_)) and not isinstance(x, np.ndarray):
            numbers_.append(x)
        elif x is not None:
            arrays.append(constant(x))
    if tensors and kind(result_type(*tensors)) == 2:
        arrays = []
    dtype = result_type(*tensors, *arrays) if tensors or arrays else None
    for v in numbers_:
        if dtype is None:
            dtype = constant(v).dtype
        else:
            dtype = _with_scalar(dtype, v)
    return DEFAULT_FLOAT if dtype is None else dtype


def integer_division(op: str, x, other):
    """x // other ('floor'), x % other ('remainder'), C's truncating 'trunc' and 'fmod', for
    integer operands, exactly (through a float they would lose digits past 2**24)."""
    b = other if isinstance(other, _C.TensorBase) else constant(other)
    dtype = common_dtype(x, other)
    a, d = _values(x).astype(np.int64), _values(b).astype(np.int64)
    if (d == 0).any():
        raise RuntimeError(f"{op}: ZeroDivisionError (an integer division by zero; tensor of shape {x.shape})")
    q, r = np.floor_divide(a, d), np.remainder(a, d)
    if op in ("trunc", "fmod"):  # toward zero: floor moved up where the signs differ and r != 0
        adjust = (r != 0) & ((a < 0) != (d < 0))
        q, r = q + adjust, r - adjust * d
    return _wrap((q if op in ("floor", "trunc") else r).astype(dtype, copy=False))


def to_dtype(t, dtype: np.dtype):
    """t in `dtype`: the recorded cast between floats, a plain conversion otherwise."""
    if t.dtype == dtype:
        return t
    if kind(t.dtype) == 2 and kind(dtype) == 2:
        return _C.cast(t, dtype)
    return t._astype(dtype)


def _wrap(a):
    """A tensor over numpy's result (no copy when it is contiguous, writable and of a dtype
    cgrad has; numpy scalars become 0-dim tensors)."""
    return _C.from_numpy(np.asarray(a))


def _values(t) -> np.ndarray:
    refuse_while_recording("an integer or bool tensor op")
    return t.numpy()


def constant(x):
    """A tensor for a number or array-like met by an integer op, in its own dtype
    (Python ints int64, floats float32, bools bool)."""
    a = np.asarray(x)
    if a.dtype.kind == "f" and not isinstance(x, np.ndarray):
        a = a.astype(DEFAULT_FLOAT)
    return _C.from_numpy(a, True)


# ---------------------------------------------------------------- elementwise

def unary(name: str, x, p0: float, p1: float):
    if name in _SCALAR_OPS:  # reached through round(decimals) and the like
        return scalar(name, x, p0)
    if name == "clip":
        lo, hi = p0, p1
        if (np.isinf(lo) or float(lo).is_integer()) and (np.isinf(hi) or float(hi).is_integer()):
            a = _values(x)
            info = np.iinfo(a.dtype) if a.dtype != _BOOL else None
            if info is not None:
                lo, hi = max(lo, info.min), min(hi, info.max)
                return _wrap(np.clip(a, int(lo), int(hi)).astype(a.dtype))
        return _C.unary(_C.OPS[name], x._astype(DEFAULT_FLOAT), p0, p1)
    fn = _INT_UNARY.get(name)
    if fn is None:
        return _C.unary(_C.OPS[name], x._astype(DEFAULT_FLOAT), p0, p1)
    a = _values(x)
    if a.dtype == _BOOL and name in ("neg", "sign", "square"):
        raise TypeError(f"{name}: not supported on a bool tensor (shape {x.shape}); use ~ or .int()")
    return _wrap(np.asarray(fn(a)).astype(a.dtype, copy=False))


def scalar(name: str, x, value):
    dtype = _with_scalar(x.dtype, value)
    if name in _TRUE_DIVISION and kind(dtype) < 2:
        dtype = DEFAULT_FLOAT
    if kind(dtype) == 2:
        return _C.unary(_C.OPS[name], to_dtype(x, dtype), float(value))
    fn, number_first = _SCALAR_OPS[name]
    a = _values(x)
    if name == "pow_scalar" and value < 0:
        raise ValueError(f"pow: integers to negative integer powers are not allowed (tensor of shape {x.shape})")
    if dtype != _BOOL:  # in int64, then wrapped into the dtype, as PyTorch's arithmetic wraps (uint8 - 5)
        a, value = a.astype(np.int64), np.int64(value)
    with np.errstate(over="ignore"):
        out = fn(value, a) if number_first else fn(a, value)
    return _wrap(np.asarray(out).astype(dtype, copy=False))


def reflected_pow(base, x):
    """base ** x for an integer or bool exponent tensor."""
    if isinstance(base, _C.TensorBase):
        return binary("pow", base, x)
    dtype = _with_scalar(x.dtype, base)
    if kind(dtype) == 2:
        return _C.binary(_C.OPS["pow"], _C.from_numpy(np.full(x.shape, base, dtype)), to_dtype(x, dtype))
    return _wrap(np.power(base, _values(x)).astype(dtype, copy=False))


def binary(name: str, a, b):
    dtype = result_type(a, b)
    if name in _TRUE_DIVISION and kind(dtype) < 2:
        dtype = DEFAULT_FLOAT
    if kind(dtype) == 2:
        return _C.binary(_C.OPS[name], to_dtype(a, dtype), to_dtype(b, dtype))
    fn = _INT_BINARY[name]
    try:
        out = fn(_values(a), _values(b))
    except ValueError:
        raise ValueError(f"{name}: shapes {a.shape} and {b.shape} cannot be broadcast together") from None
    except TypeError:
        raise TypeError(f"{name}: not supported between {a.dtype} tensors of shapes {a.shape} and {b.shape}") from None
    return _wrap(np.asarray(out).astype(dtype, copy=False))


def where(mask, a, b):
    dtype = result_type(a, b)
    if kind(dtype) == 2:
        return _C.where(mask, to_dtype(a, dtype), to_dtype(b, dtype))
    return _wrap(np.where(mask, _values(a), _values(b)).astype(dtype, copy=False))


def matmul(a, b):
    dtype = result_type(a, b)
    if kind(dtype) == 2:
        return _C.matmul(to_dtype(a, dtype), to_dtype(b, dtype))
    if a.ndim == 0 or b.ndim == 0:
        raise ValueError(f"matmul: operands must not be 0-dim, got shapes {a.shape} and {b.shape}")
    try:
        return _wrap(np.matmul(_values(a), _values(b)).astype(dtype, copy=False))
    except ValueError:
        raise ValueError(f"matmul: shapes {a.shape} and {b.shape} do not fit") from None


# ---------------------------------------------------------------- reductions

def reduce(name: str, x, axis, keepdims: bool):
    a = _values(x)
    axis = tuple(axis) if isinstance(axis, (list, tuple)) else axis
    for ax in (axis if isinstance(axis, tuple) else () if axis is None else (axis,)):
        if not -max(a.ndim, 1) <= ax < max(a.ndim, 1):
            raise IndexError(f"{name}: axis {ax} is out of range for a tensor of shape {x.shape}")
    if name == "sum":  # integers and bools sum in int64, as PyTorch
        return _wrap(np.sum(a, axis=axis, keepdims=keepdims, dtype=np.int64))
    if name in ("max", "min"):
        if a.size == 0:
            raise RuntimeError(f"{name}: the tensor of shape {x.shape} is empty")
        fn = np.max if name == "max" else np.min
        return _wrap(fn(a, axis=axis, keepdims=keepdims))
    if name == "mean":
        raise RuntimeError(f"mean: needs a floating point tensor, got {x.dtype} of shape {x.shape}; "
                           f"use .float().mean()")
    return getattr(x._astype(DEFAULT_FLOAT), name)(axis, keepdims)  # logsumexp


def cumsum(x, dim: int):
    """Integers and bools sum in int64, as PyTorch."""
    return _wrap(np.cumsum(_values(x), axis=dim, dtype=np.int64))


# ---------------------------------------------------------------- moving values

def reshape(x, shape):
    # not refused while recording: the result is a view, so a replay's re-read of a step
    # input reaches it
    try:
        return _wrap(x.numpy().reshape(tuple(shape)))
    except ValueError:
        raise ValueError(f"reshape: cannot reshape a tensor of shape {x.shape} into shape {tuple(shape)}") from None


def permute(x, axes):
    try:
        return _wrap(np.transpose(_values(x), tuple(axes)))
    except ValueError:
        raise ValueError(f"permute: {tuple(axes)} is not a permutation of the axes of shape {x.shape}") from None


def slice_(x, starts, steps, lengths):
    key = tuple(slice(s, s + st * n if s + st * n >= 0 else None, st) if n else slice(0, 0)
                for s, st, n in zip(starts, steps, lengths))
    return _wrap(_values(x)[key])


def gather(x, index):
    a = _values(x)
    if a.ndim == 0:
        raise IndexError("gather: cannot index a 0-dim tensor with an array")
    idx = np.asarray(index, dtype=np.int64).reshape(-1)
    n = a.shape[0]
    bad = (idx < -n) | (idx >= n)
    if bad.any():
        raise IndexError(f"gather: index {int(idx[bad][0])} is out of bounds for axis 0 of shape {x.shape}")
    return _wrap(a[idx])


def scatter_add(x, index, src):
    if x.dtype != src.dtype:
        raise TypeError(f"scatter_add: src is {src.dtype} but the tensor is {x.dtype}; they must match")
    out = _values(x).copy()
    idx = np.asarray(index, dtype=np.int64).reshape(-1)
    n = out.shape[0] if out.ndim else 0
    if ((idx < -n) | (idx >= n)).any():
        raise IndexError(f"scatter_add: an index is out of bounds for axis 0 of shape {x.shape}")
    np.add.at(out, idx, _values(src).reshape((len(idx),) + out.shape[1:]))
    return _wrap(out)


def concat(tensors, axis: int):
    dtype = result_type(*tensors)
    if kind(dtype) == 2:
        return _C.concat([to_dtype(t, dtype) for t in tensors], axis)
    try:
        return _wrap(np.concatenate([_values(t) for t in tensors], axis=axis).astype(dtype, copy=False))
    except ValueError:
        raise ValueError(f"concatenate: shapes {[t.shape for t in tensors]} do not match outside axis {axis}") from None
