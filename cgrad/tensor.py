"""The user-facing Tensor and the functions that make and combine tensors.

`Tensor` subclasses the compiled `TensorBase`, which holds the C tensor and implements the
hot operators (arithmetic, elementwise functions, reductions, matmul, backward). This
module adds what is sugar over those: construction, indexing, shape helpers, comparisons,
repr, and the multi-tensor functions (concatenate, stack, where, maximum, minimum).

Dtypes: float32 (the default) and float64. Ops between a float32 and a float64 tensor
raise TypeError rather than promote silently; Python numbers and numpy arrays mixed with a
tensor take the tensor's dtype.
"""
from __future__ import annotations

import numbers
from typing import Any

import numpy as np
import numpy.typing as npt

from . import _C, _device
from ._device import CPU, check_device
from ._shape_ops import ShapeOps
from ._state import refuse_while_recording

float32 = np.dtype(np.float32)
float64 = np.dtype(np.float64)
_DEFAULT_DTYPE = float32

_rng = np.random.default_rng()


def manual_seed(seed: int) -> None:
    """Seed the generator behind randn/rand (and everything in cgrad that draws from it)."""
    global _rng
    _rng = np.random.default_rng(seed)


def _generator() -> np.random.Generator:
    """The generator behind every random draw in cgrad (init, dropout, shuffling)."""
    refuse_while_recording("a random draw (dropout in training mode, randn, ...)")
    return _rng


def _resolve_dtype(dtype, data=None):
    if dtype is not None:
        dt = np.dtype(dtype)
        if dt not in (float32, float64):
            raise TypeError(f"cgrad tensors are float32 or float64, not {dt}")
        return dt
    if isinstance(data, np.ndarray) and data.dtype in (float32, float64):
        return data.dtype
    return _DEFAULT_DTYPE


class Tensor(_C.TensorBase, ShapeOps):
    """An n-dimensional float32/float64 array that records the ops applied to it.

    Make one with `cgrad.tensor(data, requires_grad=True)`; combine tensors with the
    usual operators and methods; call `.backward()` on a scalar result to fill `.grad`.
    """

    __slots__ = ()
    __array_ufunc__ = None  # numpy defers to our reflected operators: array + tensor -> tensor

    # ---- conversion (numpy() is TensorBase's) ----
    def __array__(self, dtype=None, copy=None):
        a = self.numpy()
        if dtype is not None and np.dtype(dtype) != a.dtype:
            return a.astype(dtype)
        return a.copy() if copy else a

    def tolist(self):
        return self.numpy().tolist()

    def __float__(self):
        return self.item()

    def __int__(self):
        return int(self.item())

    def __bool__(self):
        if self.size != 1:
            raise ValueError(f"the truth value of a tensor of shape {self.shape} is ambiguous")
        return bool(self.item())

    def __iter__(self):
        for i in range(len(self)):
            yield self[i]

    def __format__(self, spec):
        """A 0-dim tensor formats as its number (f"{loss:.4f}"), as in PyTorch."""
        if self.ndim == 0:
            return format(self.item(), spec)
        return object.__format__(self, spec)

    def nelement(self) -> int:
        return self.size

    def dim(self) -> int:
        return self.ndim

    # ---- in-place arithmetic (Note [Versions] guards the values saved for backward) ----
    def _inplace(self, name: str, fn, other, method: bool):
        """self = fn(self, other), written into self's memory in self's dtype. On a leaf
        that requires grad (outside no_grad) it raises, as PyTorch does. When the update
        would be part of a graph, `x += y` records it out of place and rebinds x (the
        core records no in-place ops); the method form refuses instead."""
        graph = _C.is_grad_enabled() and (self.requires_grad or getattr(other, "requires_grad", False))
        if graph and self.is_leaf and self.requires_grad:
            raise RuntimeError(f"{name}: a leaf tensor that requires grad is used in an in-place operation; "
                               f"update it inside `with cgrad.no_grad():`, as an optimizer step does")
        if graph:
            if method:
                raise RuntimeError(f"{name}: in-place operations on tensors that are part of a graph are not "
                                   f"recorded by cgrad; assign the out-of-place result instead (x = x - y)")
            return fn(self, other)
        prev = _C.is_grad_enabled()
        _C.set_grad_enabled(False)
        try:
            result = fn(self, other)
        finally:
            _C.set_grad_enabled(prev)
        if result.shape != self.shape:
            raise RuntimeError(f"{name}: the result has shape {result.shape}, which differs from the "
                               f"tensor's shape {self.shape}; an in-place op cannot change the shape")
        self.copy_(result)
        return self

    def __iadd__(self, other: _C.TensorBase | npt.ArrayLike) -> Any:
        return self._inplace("add_", Tensor.__add__, other, False)

    def __isub__(self, other: _C.TensorBase | npt.ArrayLike) -> Any:
        return self._inplace("sub_", Tensor.__sub__, other, False)

    def __imul__(self, other: _C.TensorBase | npt.ArrayLike) -> Any:
        return self._inplace("mul_", Tensor.__mul__, other, False)

    def __itruediv__(self, other: _C.TensorBase | npt.ArrayLike) -> Any:
        return self._inplace("div_", Tensor.__truediv__, other, False)

    def sub_(self, other, alpha: float = 1.0) -> "Tensor":
        return self._inplace("sub_", lambda a, b: a - (b if alpha == 1 else b * alpha), other, True)

    def mul_(self, other) -> "Tensor":
        return self._inplace("mul_", Tensor.__mul__, other, True)

    def div_(self, other) -> "Tensor":
        return self._inplace("div_", Tensor.__truediv__, other, True)

    def clamp_(self, min=None, max=None) -> "Tensor":
        return self._inplace("clamp_", lambda a, _: a.clip(min, max), None, True)

    clip_ = clamp_

    def uniform_(self, a: float = 0.0, b: float = 1.0) -> "Tensor":
        """Fill with uniform samples in [a, b) from cgrad's generator (no graph)."""
        self.copy_(_generator().uniform(a, b, self.shape))
        return self

    def normal_(self, mean: float = 0.0, std: float = 1.0) -> "Tensor":
        self.copy_(_generator().normal(mean, std, self.shape))
        return self

    def to(self, *args, dtype=None, device=None, copy: bool = False, non_blocking: bool = False) -> "Tensor":
        """PyTorch's forms: to(dtype), to(device), to(device, dtype), to(other_tensor).
        A dtype change is a copy that is not recorded on the tape (a new leaf, meant for
        data rather than parameters); otherwise self (or a copy with copy=True)."""
        dtype, _ = to_arguments(args, dtype, device)
        if dtype is not None and dtype != self.dtype:
            return self._astype(dtype)
        return self._copy() if copy else self

    @property
    def device(self) -> _device.device:
        return CPU

    is_cuda = False

    def cpu(self) -> "Tensor":
        return self

    def cuda(self, device=None) -> "Tensor":
        check_device("cuda")  # raises: cgrad runs on the CPU only
        return self

    def float(self) -> "Tensor":
        return self.to(float32)

    def double(self) -> "Tensor":
        return self.to(float64)

    @property
    def data(self) -> "Tensor":
        """This tensor's values as a leaf outside the graph (shares memory)."""
        return self.detach()

    @data.setter
    def data(self, value):
        self.detach().copy_(value)

    def __repr__(self):
        body = np.array2string(self.numpy(), separator=", ", prefix="tensor(")
        extra = "" if self.dtype == float32 else ", dtype=float64"
        if self.grad_fn is not None:
            extra += f", grad_fn=<{self.grad_fn}>"
        elif self.requires_grad:
            extra += ", requires_grad=True"
        return f"tensor({body}{extra})"

    __hash__ = _C.TensorBase.__hash__

    # ---- comparisons: no gradient; a numpy bool array (use it with where or as a mask) ----
    def _cmp_operand(self, other):
        return other.numpy() if isinstance(other, _C.TensorBase) else other

    def __lt__(self, other):
        return self.numpy() < self._cmp_operand(other)

    def __le__(self, other):
        return self.numpy() <= self._cmp_operand(other)

    def __gt__(self, other):
        return self.numpy() > self._cmp_operand(other)

    def __ge__(self, other):
        return self.numpy() >= self._cmp_operand(other)

    def __eq__(self, other):
        return self.numpy() == self._cmp_operand(other)

    def __ne__(self, other):
        return self.numpy() != self._cmp_operand(other)

    # ---- shape ----
    def reshape(self, *shape) -> "Tensor":
        """Same values in a new shape (one dim may be -1); shares memory."""
        if len(shape) == 1 and isinstance(shape[0], (tuple, list)):
            shape = tuple(shape[0])
        return _C.reshape(self, shape)

    view = reshape

    def flatten(self, start_dim: int = 0, end_dim: int = -1) -> "Tensor":
        nd = max(self.ndim, 1)
        s, e = start_dim % nd, end_dim % nd
        shape = self.shape or (1,)
        return self.reshape(shape[:s] + (-1,) + shape[e + 1:])

    def squeeze(self, axis=None, *, dim=None) -> "Tensor":
        axis = axis if dim is None else dim
        if axis is None:
            return self.reshape(tuple(d for d in self.shape if d != 1))
        axes = {a % self.ndim for a in (axis if isinstance(axis, (tuple, list)) else (axis,))}
        return self.reshape(tuple(d for i, d in enumerate(self.shape) if i not in axes or d != 1))

    def unsqueeze(self, axis: int | None = None, *, dim=None) -> "Tensor":
        axis = axis if dim is None else dim
        if axis is None:
            raise TypeError("unsqueeze: needs the axis at which to insert a dimension")
        axis = axis % (self.ndim + 1)
        return self.reshape(self.shape[:axis] + (1,) + self.shape[axis:])

    def permute(self, *axes) -> "Tensor":
        """Reorder the axes (a copy)."""
        if len(axes) == 1 and isinstance(axes[0], (tuple, list)):
            axes = tuple(axes[0])
        return _C.permute(self, axes)

    def transpose(self, dim0=None, dim1=None) -> "Tensor":
        """With no arguments, reverse the axes (numpy); with two, swap them (PyTorch)."""
        if dim0 is None:
            return _C.permute(self, tuple(range(self.ndim))[::-1])
        axes = list(range(self.ndim))
        axes[dim0], axes[dim1] = axes[dim1], axes[dim0]
        return _C.permute(self, axes)

    @property
    def T(self) -> "Tensor":
        return _C.permute(self, tuple(range(self.ndim))[::-1])

    # ---- indexing ----
    def __getitem__(self, key) -> "Tensor":
        """Integers, slices, None and ..., and integer or boolean arrays on the leading
        axes (gathered rows; repeated indices add up in backward). Results are copies."""
        if not isinstance(key, tuple):
            key = (key,)
        key = tuple(k.numpy() if isinstance(k, _C.TensorBase) else k for k in key)
        n_adv = 0
        while n_adv < len(key) and _is_array_index(key[n_adv]):
            n_adv += 1
        if any(_is_array_index(k) for k in key[n_adv:]):
            raise IndexError("indexing: array indices must come first (t[idx], t[rows, cols], "
                             "t[mask], optionally followed by slices)")
        if n_adv:
            rows = _advanced_index(self, key[:n_adv])
            if not key[n_adv:]:
                return rows
            lead = rows.ndim - (self.ndim - n_adv)  # dims the index arrays produced
            return rows[(slice(None),) * lead + key[n_adv:]]
        return _basic_index(self, key)

    # var, std, norm, cumsum and the shape ops with PyTorch's names: ShapeOps (_shape_ops.py)


def to_arguments(args, dtype, device):
    """(dtype, device) from PyTorch's to(...) arguments: a dtype, a device (or its
    string), or a tensor whose dtype to take; the device is checked (the CPU)."""
    for a in args:
        if isinstance(a, _C.TensorBase):
            dtype = a.dtype
        elif isinstance(a, (str, _device.device)):
            device = a
        else:
            dtype = a
    check_device(device)
    return None if dtype is None else _resolve_dtype(dtype), device


def _is_array_index(k) -> bool:
    return isinstance(k, (list, np.ndarray)) and not isinstance(k, (str, bytes))


def _advanced_index(t: Tensor, arrays) -> Tensor:
    """Integer or boolean arrays on the leading axes: flatten those axes, gather rows."""
    if len(arrays) == 1:
        a = np.asarray(arrays[0])
        if a.dtype == bool:
            if a.shape != t.shape[:a.ndim]:
                raise IndexError(f"indexing: boolean mask of shape {a.shape} does not match "
                                 f"the tensor's shape {t.shape}")
            flat_rows = t.reshape((-1,) + t.shape[a.ndim:]) if a.ndim != 1 else t
            return _C.gather(flat_rows, np.flatnonzero(a))
        if a.dtype.kind not in "iu":
            raise IndexError(f"indexing: arrays must be integer or boolean, not {a.dtype}")
        rows = _C.gather(t, a.reshape(-1))
        return rows.reshape(a.shape + t.shape[1:]) if a.ndim != 1 else rows
    k = len(arrays)
    if k > t.ndim:
        raise IndexError(f"indexing: {k} array indices for a tensor of shape {t.shape}")
    arrays = [np.asarray(a) for a in arrays]
    if any(a.dtype.kind not in "iu" for a in arrays):
        raise IndexError("indexing: with several array indices, all must be integer arrays")
    lead = t.shape[:k]
    arrays = np.broadcast_arrays(*arrays)
    normalised = []
    for axis, (a, n) in enumerate(zip(arrays, lead)):
        if a.size and (a.min() < -n or a.max() >= n):
            raise IndexError(f"indexing: index out of bounds for axis {axis} with size {n}")
        normalised.append(np.where(a < 0, a + n, a))
    flat = np.ravel_multi_index(tuple(normalised), lead) if lead else np.zeros(0, np.int64)
    rows = _C.gather(t.reshape((-1,) + t.shape[k:]), flat.reshape(-1))
    return rows.reshape(arrays[0].shape + t.shape[k:])


def _basic_index(t: Tensor, key) -> Tensor:
    """Integers, slices, None and Ellipsis: one strided copy, then a reshape."""
    n_real = sum(1 for k in key if k is not None and k is not Ellipsis)
    if sum(1 for k in key if k is Ellipsis) > 1:
        raise IndexError("indexing: only one ellipsis (...) is allowed")
    if n_real > t.ndim:
        raise IndexError(f"indexing: too many indices ({n_real}) for a tensor of shape {t.shape}")
    if Ellipsis in key:
        i = key.index(Ellipsis)
        key = key[:i] + (slice(None),) * (t.ndim - n_real) + key[i + 1:]
    else:
        key = key + (slice(None),) * (t.ndim - n_real)
    starts, steps, lengths, out_shape = [], [], [], []
    axis = 0
    for k in key:
        if k is None:
            out_shape.append(1)
            continue
        n = t.shape[axis]
        if isinstance(k, slice):
            start, stop, step = k.indices(n)
            length = len(range(start, stop, step))
            starts.append(start if length else 0)
            steps.append(step)
            lengths.append(length)
            out_shape.append(length)
        elif isinstance(k, numbers.Integral):
            i = int(k)
            if not -n <= i < n:
                raise IndexError(f"indexing: index {i} is out of bounds for axis {axis} with size {n}")
            starts.append(i % n)
            steps.append(1)
            lengths.append(1)
        else:
            raise IndexError(f"indexing: unsupported index of type {type(k).__name__}")
        axis += 1
    out = _C.slice_(t, starts, steps, lengths)
    return out if tuple(out_shape) == out.shape else out.reshape(tuple(out_shape))


# ---------------------------------------------------------------- construction

def _made(t: Tensor, requires_grad: bool, device) -> Tensor:
    """The last step of every creation function: the device checked, requires_grad set."""
    check_device(device)
    t.requires_grad = requires_grad
    return t


def tensor(data, dtype=None, device=None, requires_grad: bool = False) -> Tensor:
    """A new tensor holding a copy of `data` (nested lists, numbers, numpy arrays or a
    tensor). dtype: float32 by default; a float64 numpy array stays float64."""
    if isinstance(data, _C.TensorBase):
        data = data.numpy()
    dtype = _resolve_dtype(dtype, data if isinstance(data, np.ndarray) else None)
    return _made(_C.copy_from_array(data, dtype), requires_grad, device)


def from_numpy(array: np.ndarray, requires_grad: bool = False) -> Tensor:
    """A tensor that shares `array`'s memory: changes through either are seen by both.

    Memory is shared when `array` is C-contiguous, writable and float32/float64. Other
    arrays (non-contiguous, read-only, integer, ...) are copied, integers to float32."""
    return _made(_C.from_numpy(array), requires_grad, None)


def _shape_arg(shape):
    if len(shape) == 1 and isinstance(shape[0], (tuple, list)):
        return tuple(shape[0])
    return tuple(shape)


def empty(*shape, dtype=None, device=None, requires_grad: bool = False) -> Tensor:
    """A tensor whose values are whatever its memory held."""
    return _made(_C.empty(_shape_arg(shape), _resolve_dtype(dtype)), requires_grad, device)


def zeros(*shape, dtype=None, device=None, requires_grad: bool = False) -> Tensor:
    return _made(_C.zeros(_shape_arg(shape), _resolve_dtype(dtype)), requires_grad, device)


def ones(*shape, dtype=None, device=None, requires_grad: bool = False) -> Tensor:
    return full(_shape_arg(shape), 1.0, dtype=dtype, device=device, requires_grad=requires_grad)


def full(shape, fill_value: float, dtype=None, device=None, requires_grad: bool = False) -> Tensor:
    t = _C.empty(tuple(shape) if isinstance(shape, (tuple, list)) else (shape,), _resolve_dtype(dtype))
    t.fill_(fill_value)
    return _made(t, requires_grad, device)


def zeros_like(t: Tensor, dtype=None, device=None, requires_grad: bool = False) -> Tensor:
    return zeros(t.shape, dtype=dtype or t.dtype, device=device, requires_grad=requires_grad)


def ones_like(t: Tensor, dtype=None, device=None, requires_grad: bool = False) -> Tensor:
    return ones(t.shape, dtype=dtype or t.dtype, device=device, requires_grad=requires_grad)


def full_like(t: Tensor, fill_value: float, dtype=None, device=None, requires_grad: bool = False) -> Tensor:
    return full(t.shape, fill_value, dtype=dtype or t.dtype, device=device, requires_grad=requires_grad)


def empty_like(t: Tensor, dtype=None, device=None, requires_grad: bool = False) -> Tensor:
    return empty(t.shape, dtype=dtype or t.dtype, device=device, requires_grad=requires_grad)


def rand_like(t: Tensor, dtype=None, device=None, requires_grad: bool = False) -> Tensor:
    return rand(t.shape, dtype=dtype or t.dtype, device=device, requires_grad=requires_grad)


def randn_like(t: Tensor, dtype=None, device=None, requires_grad: bool = False) -> Tensor:
    return randn(t.shape, dtype=dtype or t.dtype, device=device, requires_grad=requires_grad)


def arange(start, stop=None, step=1, dtype=None, device=None, requires_grad: bool = False) -> Tensor:
    values = np.arange(start, stop, step) if stop is not None else np.arange(start)
    return tensor(values, dtype=_resolve_dtype(dtype), device=device, requires_grad=requires_grad)


def linspace(start: float, end: float, steps: int, dtype=None, device=None,
             requires_grad: bool = False) -> Tensor:
    """`steps` values evenly spaced from start to end, both included."""
    return tensor(np.linspace(start, end, steps), dtype=_resolve_dtype(dtype), device=device,
                  requires_grad=requires_grad)


def logspace(start: float, end: float, steps: int, base: float = 10.0, dtype=None, device=None,
             requires_grad: bool = False) -> Tensor:
    """base ** linspace(start, end, steps)."""
    return tensor(np.logspace(start, end, steps, base=base), dtype=_resolve_dtype(dtype), device=device,
                  requires_grad=requires_grad)


def eye(n: int, m: int | None = None, dtype=None, device=None, requires_grad: bool = False) -> Tensor:
    return tensor(np.eye(n, m), dtype=_resolve_dtype(dtype), device=device, requires_grad=requires_grad)


def randn(*shape, dtype=None, device=None, requires_grad: bool = False) -> Tensor:
    """Standard normal samples from the generator seeded by `cgrad.manual_seed`."""
    return tensor(_rng.standard_normal(_shape_arg(shape)), dtype=_resolve_dtype(dtype), device=device,
                  requires_grad=requires_grad)


def rand(*shape, dtype=None, device=None, requires_grad: bool = False) -> Tensor:
    """Uniform samples in [0, 1) from the generator seeded by `cgrad.manual_seed`."""
    return tensor(_rng.random(_shape_arg(shape)), dtype=_resolve_dtype(dtype), device=device,
                  requires_grad=requires_grad)


# ---------------------------------------------------------------- combining tensors

def _dtype_of(*xs):
    for x in xs:
        if isinstance(x, _C.TensorBase):
            return x.dtype
    return _DEFAULT_DTYPE


def _as_tensor(x, dtype) -> Tensor:
    return x if isinstance(x, Tensor) else _C.copy_from_array(x, dtype)


def _tensor_list(op: str, items) -> list:
    """A non-empty list of tensors of one dtype (arrays and numbers converted)."""
    items = list(items)
    if not items:
        raise ValueError(f"{op}: needs at least one tensor")
    dtype = _dtype_of(*items)
    return [_as_tensor(t, dtype) for t in items]


def concatenate(tensors, axis: int = 0, *, dim=None) -> Tensor:
    """Join tensors along an existing axis; each gets its slice of the gradient."""
    tensors = _tensor_list("concatenate", tensors)
    axis = axis if dim is None else dim
    nd = tensors[0].ndim
    if not -nd <= axis < max(nd, 1):
        raise IndexError(f"concatenate: axis {axis} is out of range for shape {tensors[0].shape}")
    return _C.concat(tensors, axis % nd if nd else 0)


cat = concatenate


def stack(tensors, axis: int = 0, *, dim=None) -> Tensor:
    """Join tensors of equal shape along a new axis."""
    tensors = _tensor_list("stack", tensors)
    axis = axis if dim is None else dim
    shape = tensors[0].shape
    for i, t in enumerate(tensors):
        if t.shape != shape:
            raise ValueError(f"stack: tensor {i} has shape {t.shape}, tensor 0 has {shape}")
    nd = len(shape) + 1
    if not -nd <= axis < nd:
        raise IndexError(f"stack: axis {axis} is out of range for {nd}-dim result")
    axis %= nd
    return _C.concat([t.unsqueeze(axis) for t in tensors], axis)


def maximum(a, b) -> Tensor:
    """Elementwise max; the gradient goes to the larger input (split equally on ties)."""
    dtype = _dtype_of(a, b)
    return _C.binary(_C.OPS["maximum"], _as_tensor(a, dtype), _as_tensor(b, dtype))


def minimum(a, b) -> Tensor:
    """Elementwise min; the gradient goes to the smaller input (split equally on ties)."""
    dtype = _dtype_of(a, b)
    return _C.binary(_C.OPS["minimum"], _as_tensor(a, dtype), _as_tensor(b, dtype))


def pow(input, exponent) -> Tensor:
    """input ** exponent; either may be a number."""
    if isinstance(input, _C.TensorBase):
        return input ** exponent
    return _as_tensor(exponent, _dtype_of(input, exponent)).__rpow__(input)


def atan2(input, other) -> Tensor:
    """The angle of the point (other, input), elementwise with broadcasting."""
    dtype = _dtype_of(input, other)
    return _as_tensor(input, dtype).atan2(_as_tensor(other, dtype))


def where(condition, a, b) -> Tensor:
    """a where condition holds, else b (all three broadcast). No gradient to condition."""
    if isinstance(condition, _C.TensorBase):
        condition = condition.numpy()
    cond = np.asarray(condition).astype(bool, copy=False)
    dtype = _dtype_of(a, b)
    a, b = _as_tensor(a, dtype), _as_tensor(b, dtype)
    try:
        shape = np.broadcast_shapes(cond.shape, a.shape, b.shape)
    except ValueError:
        raise ValueError(f"where: shapes {cond.shape}, {a.shape} and {b.shape} cannot be "
                         f"broadcast together") from None
    return _C.where(np.broadcast_to(cond, shape), a, b)


matmul = _C.matmul

_C._set_tensor_type(Tensor)
