"""The user-facing Tensor and the functions that make and combine tensors.

`Tensor` subclasses the compiled `TensorBase`, which holds the C tensor and implements the
hot operators (arithmetic, elementwise functions, reductions, matmul, backward). This
module adds what is sugar over those: construction, indexing, shape helpers, comparisons,
repr, and the multi-tensor functions (concatenate, stack, where, maximum, minimum).

Dtypes: float32 (the default), float64, int64, int32, bool and uint8. Only float tensors
require grad. Mixed operands promote as in PyTorch (cgrad/_promotion.py); numpy arrays
mixed with a float tensor take the tensor's dtype.
"""
from __future__ import annotations

import builtins
import collections
import copy
import numbers
import weakref
from typing import Any

import numpy as np
import numpy.typing as npt

from . import _C, _device, _double_backward, _promotion
from ._device import CPU, check_device
from ._shape_ops import ShapeOps
from . import _state
from ._state import refuse_derived_index, refuse_while_recording

float32 = np.dtype(np.float32)
float64 = np.dtype(np.float64)
int64 = np.dtype(np.int64)
int32 = np.dtype(np.int32)
bool_ = np.dtype(np.bool_)
uint8 = np.dtype(np.uint8)
_DTYPES = (float32, float64, int64, int32, bool_, uint8)
_DEFAULT_DTYPE = float32
# Tensor.type()'s names, PyTorch's legacy tensor types
_TYPE_NAMES = {float32: "torch.FloatTensor", float64: "torch.DoubleTensor", int64: "torch.LongTensor",
               int32: "torch.IntTensor", bool_: "torch.BoolTensor", uint8: "torch.ByteTensor"}

_rng = np.random.default_rng()


def manual_seed(seed: int) -> None:
    """Seed the generator behind randn/rand (and everything in cgrad that draws from it)."""
    global _rng
    _rng = np.random.default_rng(seed)


def get_rng_state() -> dict:
    """The state of cgrad's own generator (numpy's bit-generator state), for set_rng_state."""
    return copy.deepcopy(dict(_rng.bit_generator.state))


def set_rng_state(state: dict) -> None:
    """Put cgrad's own generator back to a state get_rng_state gave."""
    _rng.bit_generator.state = copy.deepcopy(state)


class Generator:
    """A random generator of its own, as torch.Generator: `Generator().manual_seed(0)`,
    passed as generator= to the random functions, DataLoader and random_split."""

    def __init__(self, device="cpu"):
        check_device(device)
        self._seed = int(np.random.default_rng().integers(1 << 63))
        self.rng = np.random.default_rng(self._seed)

    def manual_seed(self, seed: int) -> "Generator":
        self._seed = int(seed)
        self.rng = np.random.default_rng(self._seed)
        return self

    def seed(self) -> int:
        return self.manual_seed(int(np.random.default_rng().integers(1 << 63))).initial_seed()

    def initial_seed(self) -> int:
        return self._seed


def _generator(generator: Generator | None = None) -> np.random.Generator:
    """The generator behind a random draw: the one given, else cgrad's own (seeded by
    manual_seed), which every other draw in cgrad uses (init, dropout, shuffling)."""
    refuse_while_recording("a random draw (dropout in training mode, randn, ...)")
    if generator is None:
        return _rng
    if not isinstance(generator, Generator):
        raise TypeError(f"generator must be a cgrad.Generator, not {type(generator).__name__}")
    return generator.rng


def _resolve_dtype(dtype, data=None):
    """The dtype asked for, or PyTorch's inference from the data: Python ints give int64,
    floats float32 and bools bool; a numpy array keeps its dtype where cgrad has it (other
    floats become float32, other integers int64)."""
    if dtype is not None:
        if isinstance(dtype, str) and dtype.startswith("torch."):
            dtype = dtype[6:]
        dt = np.dtype(dtype)
        if dt not in _DTYPES:
            raise TypeError(f"cgrad tensors are float32, float64, int64, int32, bool or uint8, not {dt}")
        return dt
    if data is None:
        return _DEFAULT_DTYPE
    a = data if isinstance(data, np.ndarray) else np.asarray(data)
    typed = isinstance(data, (np.ndarray, np.generic))  # numpy arrays and scalars keep their dtype
    if a.dtype.kind == "b":
        return bool_
    if a.dtype.kind in "iu":
        return a.dtype if typed and a.dtype in _DTYPES else int64
    if a.dtype.kind == "f" and typed and a.dtype == float64:
        return float64
    if a.dtype.kind in "fiub" or a.size == 0:
        return _DEFAULT_DTYPE
    raise TypeError(f"tensor: cannot make a tensor of {a.dtype} data")


class Size(tuple):
    """A shape, as PyTorch's torch.Size: a tuple of ints with numel()."""

    def numel(self) -> int:
        return int(np.prod(self, dtype=np.int64))


_RETURN_TYPES: dict = {}


def _return_type(op: str):
    """PyTorch's torch.return_types.<op>: a named tuple (values, indices)."""
    if op not in _RETURN_TYPES:
        _RETURN_TYPES[op] = collections.namedtuple(op, ["values", "indices"])
    return _RETURN_TYPES[op]


class Tensor(_C.TensorBase, ShapeOps):
    """An n-dimensional array that records the ops applied to it.

    Make one with `cgrad.tensor(data, requires_grad=True)`; combine tensors with the
    usual operators and methods; call `.backward()` on a scalar result to fill `.grad`.
    `cgrad.Tensor(data)` and `cgrad.Tensor(*shape)` make float32 tensors, as in PyTorch.
    """

    __slots__ = ()
    __array_ufunc__ = None  # numpy defers to our reflected operators: array + tensor -> tensor

    def __init__(self, *args):
        """PyTorch's legacy constructor: Tensor(data) copies data as float32, Tensor(*sizes)
        is an uninitialised float32 tensor of that shape."""
        if not args:
            made = _C.empty((0,), float32)
        elif len(args) == 1 and not isinstance(args[0], numbers.Integral):
            made = tensor(args[0], dtype=float32)
        elif all(isinstance(a, numbers.Integral) for a in args):
            made = _C.empty(tuple(int(a) for a in args), float32)
        else:
            raise TypeError(f"Tensor(): expected data or integer sizes, got {args!r}")
        self._take(made)

    # ---- conversion (numpy() is TensorBase's) ----
    def __array__(self, dtype=None, copy=None):
        a = self.numpy()
        if dtype is not None and np.dtype(dtype) != a.dtype:
            return a.astype(dtype)
        return a.copy() if copy else a

    def tolist(self):
        return self.numpy().tolist()

    def __float__(self):
        return float(self.item())

    def __int__(self):
        return int(self.item())

    def __index__(self):
        """An integer tensor of one element indexes a list (lst[t]) and makes a range."""
        if self.dtype.kind not in "iu" or self.numel() != 1:
            raise TypeError(f"only integer tensors of a single element can be converted to an index "
                            f"(this one is {self.dtype} of shape {self.shape})")
        return int(self.item())

    def __bool__(self):
        if self.numel() != 1:
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

    # ---- PyTorch's everyday methods over the ops above ----
    def t(self) -> "Tensor":
        """The transpose of a matrix (a 0-d or 1-D tensor as it is)."""
        if self.ndim > 2:
            raise ValueError(f"t: expects a tensor with at most 2 dims, got shape {self.shape}; use transpose(0, 1)")
        return self.T if self.ndim == 2 else self

    @property
    def mT(self) -> "Tensor":
        """The last two dims swapped (batched matrix transpose)."""
        return self.transpose(-2, -1)

    def clone(self) -> "Tensor":
        """A copy with its own memory that stays in the graph (the gradient passes through)."""
        return self * 1  # x * 1 is exact for every value (x + 0 would turn -0.0 into 0.0)

    def contiguous(self) -> "Tensor":
        return self  # cgrad tensors are always contiguous

    def is_contiguous(self) -> builtins.bool:
        return True

    def reshape_as(self, other) -> "Tensor":
        return self.reshape(other.shape)

    def requires_grad_(self, requires_grad: builtins.bool = True) -> "Tensor":
        self.requires_grad = requires_grad
        return self

    def element_size(self) -> builtins.int:
        return self.dtype.itemsize

    @property
    def itemsize(self) -> builtins.int:
        return self.dtype.itemsize

    @property
    def nbytes(self) -> builtins.int:
        return self.numel() * self.dtype.itemsize

    def stride(self, dim: builtins.int | None = None):
        strides = tuple(s // self.dtype.itemsize for s in self.numpy().strides)
        return strides if dim is None else strides[dim]

    def add(self, other, *, alpha=1) -> "Tensor":
        return self + (other if alpha == 1 else other * alpha)

    def sub(self, other, *, alpha=1) -> "Tensor":
        return self - (other if alpha == 1 else other * alpha)

    def mul(self, other) -> "Tensor":
        return self * other

    def div(self, other, *, rounding_mode=None) -> "Tensor":
        """True division; rounding_mode 'floor' or 'trunc' rounds the quotient."""
        if rounding_mode is None:
            return self / other
        if rounding_mode not in ("floor", "trunc"):
            raise ValueError(f"div: rounding_mode must be None, 'floor' or 'trunc', not {rounding_mode!r}")
        if _promotion.kind(_promotion.common_dtype(self, other)) < 2:
            return _promotion.integer_division(rounding_mode, self, other)
        q = self / other
        return q.floor() if rounding_mode == "floor" else q.trunc()

    true_divide = _C.TensorBase.__truediv__
    multiply, subtract, divide = mul, sub, div

    def floor_divide(self, other) -> "Tensor":
        return self.div(other, rounding_mode="floor")

    def remainder(self, other) -> "Tensor":
        """self - floor(self / other) * other: the sign of other, as Python's % and PyTorch."""
        if _promotion.kind(_promotion.common_dtype(self, other)) < 2:
            return _promotion.integer_division("remainder", self, other)
        return self - self.floor_divide(other) * other

    __mod__ = remainder
    __floordiv__ = floor_divide

    def __rfloordiv__(self, other) -> "Tensor":
        return _as_tensor(other, _promotion.common_dtype(self, other)).floor_divide(self)

    def __rmod__(self, other) -> "Tensor":
        return _as_tensor(other, _promotion.common_dtype(self, other)).remainder(self)

    def fmod(self, other) -> "Tensor":
        """self - trunc(self / other) * other: the sign of self, as C's fmod."""
        if _promotion.kind(_promotion.common_dtype(self, other)) < 2:
            return _promotion.integer_division("fmod", self, other)
        return self - self.div(other, rounding_mode="trunc") * other

    def addcmul(self, tensor1, tensor2, *, value=1) -> "Tensor":
        return self + tensor1 * tensor2 * value

    def addcdiv(self, tensor1, tensor2, *, value=1) -> "Tensor":
        return self + tensor1 / tensor2 * value

    def lerp(self, end, weight) -> "Tensor":
        """self + weight * (end - self)."""
        return self + (end - self) * weight

    def where(self, condition, other) -> "Tensor":
        """self where condition holds, else other."""
        return where(condition, self, other)

    def matmul(self, other) -> "Tensor":
        return self @ other

    def mm(self, other) -> "Tensor":
        if self.ndim != 2 or getattr(other, "ndim", 2) != 2:
            raise ValueError(f"mm: expects two matrices, got shapes {self.shape} and {tuple(np.shape(other))}")
        return self @ other

    def bmm(self, other) -> "Tensor":
        if self.ndim != 3 or getattr(other, "ndim", 3) != 3:
            raise ValueError(f"bmm: expects two 3-D tensors, got shapes {self.shape} and {tuple(np.shape(other))}")
        return self @ other

    def mv(self, vec) -> "Tensor":
        return self @ vec

    def dot(self, other) -> "Tensor":
        if self.ndim != 1 or getattr(other, "ndim", 1) != 1:
            raise ValueError(f"dot: expects two 1-D tensors, got shapes {self.shape} and {tuple(np.shape(other))}")
        return self @ other

    inner = dot

    def outer(self, vec2) -> "Tensor":
        return self.reshape(-1, 1) * _as_tensor(vec2, self.dtype).reshape(1, -1)

    def select(self, dim: builtins.int, index: builtins.int) -> "Tensor":
        d = self._dim("select", dim)
        return self[(slice(None),) * d + (index,)]

    def masked_select(self, mask) -> "Tensor":
        m = mask.numpy() if isinstance(mask, _C.TensorBase) else np.asarray(mask)
        return self[np.broadcast_to(m, self.shape)] if m.shape != self.shape else self[m]

    def take(self, index) -> "Tensor":
        """Elements of the flattened tensor at `index`, in index's shape."""
        idx = index.numpy() if isinstance(index, _C.TensorBase) else np.asarray(index)
        return self.reshape(-1)[idx.reshape(-1)].reshape(idx.shape)

    def diagonal(self, offset: builtins.int = 0, dim1: builtins.int = 0, dim2: builtins.int = 1) -> "Tensor":
        """The diagonal of a matrix (dim1, dim2 of a batch go last, as PyTorch)."""
        if self.ndim != 2 or (dim1 % 2, dim2 % 2) != (0, 1):
            raise ValueError(f"diagonal: cgrad supports the diagonal of a matrix, got shape {self.shape} "
                             f"and dims ({dim1}, {dim2})")
        rows, cols = self.shape
        r = np.arange(max(0, -offset), min(rows, cols - offset)) if rows and cols else np.zeros(0, np.int64)
        return self[r, r + offset] if r.size else self.reshape(-1)[np.zeros(0, np.int64)]

    def diag(self, diagonal: builtins.int = 0) -> "Tensor":
        """A 1-D tensor's square diagonal matrix, or a matrix's diagonal."""
        if self.ndim == 2:
            return self.diagonal(diagonal)
        if self.ndim != 1:
            raise ValueError(f"diag: expects a 1-D or 2-D tensor, got shape {self.shape}")
        n = self.shape[0] + abs(diagonal)
        rows = np.arange(self.shape[0]) + max(0, -diagonal)
        flat = rows * n + rows + diagonal
        return zeros(n * n, dtype=self.dtype).scatter_add(0, flat, self).reshape(n, n)

    def trace(self) -> "Tensor":
        return self.diagonal().sum()

    def unique(self, sorted: builtins.bool = True, return_inverse: builtins.bool = False,
               return_counts: builtins.bool = False, dim=None):
        """The distinct values, sorted (no gradient), as torch.unique."""
        if dim is not None:
            raise ValueError("unique: dim= is not supported; cgrad flattens")
        values, inverse, counts = np.unique(self._indices("unique"), return_inverse=True, return_counts=True)
        out = [from_numpy(values)]
        if return_inverse:
            out.append(from_numpy(inverse.reshape(self.shape).astype(np.int64)))
        if return_counts:
            out.append(from_numpy(counts.astype(np.int64)))
        return out[0] if len(out) == 1 else tuple(out)

    def new_tensor(self, data, dtype=None, requires_grad: builtins.bool = False) -> "Tensor":
        return tensor(data, dtype=dtype or self.dtype, requires_grad=requires_grad)

    def new_zeros(self, *size, dtype=None, requires_grad: builtins.bool = False) -> "Tensor":
        return zeros(*size, dtype=dtype or self.dtype, requires_grad=requires_grad)

    def new_ones(self, *size, dtype=None, requires_grad: builtins.bool = False) -> "Tensor":
        return ones(*size, dtype=dtype or self.dtype, requires_grad=requires_grad)

    def new_empty(self, *size, dtype=None, requires_grad: builtins.bool = False) -> "Tensor":
        return empty(*size, dtype=dtype or self.dtype, requires_grad=requires_grad)

    def new_full(self, size, fill_value, dtype=None, requires_grad: builtins.bool = False) -> "Tensor":
        return full(size, fill_value, dtype=dtype or self.dtype, requires_grad=requires_grad)

    def nelement(self) -> builtins.int:
        return self.numel()

    def dim(self) -> builtins.int:
        return self.ndim

    def size(self, dim: builtins.int | None = None):
        """The shape (a Size), or the length of one dim, as PyTorch (numpy's .size is numel())."""
        if dim is None:
            return Size(self.shape)
        if not -max(self.ndim, 1) <= dim < max(self.ndim, 1):
            raise IndexError(f"size: dim {dim} is out of range for a tensor of shape {self.shape}")
        return self.shape[dim] if self.ndim else 1

    def is_floating_point(self) -> builtins.bool:
        return self.dtype.kind == "f"

    # ---- in-place arithmetic (Note [Versions] guards the values saved for backward) ----
    def _inplace(self, name: str, fn, other, method: builtins.bool):
        """self = fn(self, other), written into self's memory in self's dtype. On a leaf
        that requires grad (outside no_grad) it raises, as PyTorch does. When the update
        would be part of a graph, `x += y` records it out of place and rebinds x (the
        core records no in-place ops); the method form refuses instead."""
        self._check_inplace(name)
        graph = _C.is_grad_enabled() and (self.requires_grad or getattr(other, "requires_grad", False))
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
        if _promotion.kind(result.dtype) > _promotion.kind(self.dtype):  # float into int, int into bool
            raise RuntimeError(f"{name}: the result is {result.dtype}, which cannot be written into a "
                               f"{self.dtype} tensor in place")
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

    def add_(self, other, alpha=1) -> "Tensor":
        return self._inplace("add_", lambda a, b: a + (b if alpha == 1 else b * alpha), other, True)

    def sub_(self, other, alpha: float = 1.0) -> "Tensor":
        return self._inplace("sub_", lambda a, b: a - (b if alpha == 1 else b * alpha), other, True)

    def mul_(self, other) -> "Tensor":
        return self._inplace("mul_", Tensor.__mul__, other, True)

    def div_(self, other) -> "Tensor":
        return self._inplace("div_", Tensor.__truediv__, other, True)

    def clamp_(self, min=None, max=None) -> "Tensor":
        return self._inplace("clamp_", lambda a, _: a.clip(min, max), None, True)

    clip_ = clamp_

    def uniform_(self, a: float = 0.0, b: float = 1.0, *, generator=None) -> "Tensor":
        """Fill with uniform samples in [a, b) from cgrad's generator (no graph)."""
        _float_like(self, None)
        self.copy_(_generator(generator).uniform(a, b, self.shape))
        return self

    def normal_(self, mean: float = 0.0, std: float = 1.0, *, generator=None) -> "Tensor":
        _float_like(self, None)
        self.copy_(_generator(generator).normal(mean, std, self.shape))
        return self

    def multinomial(self, num_samples: int, replacement: bool = False, *, generator=None) -> "Tensor":
        """cgrad.multinomial(self, ...): indices drawn from the rows' weights."""
        return multinomial(self, num_samples, replacement, generator=generator)

    def __setitem__(self, key, value) -> None:
        """t[key] = value in place, as in PyTorch (outside the graph; the version counter
        guards values saved for backward)."""
        self._check_inplace("__setitem__")
        if self.grad_fn is not None and _C.is_grad_enabled():
            raise RuntimeError("__setitem__: assigning into a tensor that is part of a graph is not "
                               "recorded by cgrad; build the result out of place (where, cat)")
        if not isinstance(key, tuple):
            key = (key,)
        key = tuple(k.numpy() if isinstance(k, _C.TensorBase) else k for k in key)
        values = self.numpy().copy()
        try:
            values[key] = value.numpy() if isinstance(value, _C.TensorBase) else _C.numbers(value, "__setitem__")
        except IndexError as e:
            raise IndexError(f"__setitem__: {e} (tensor of shape {self.shape})") from None
        except ValueError as e:
            raise ValueError(f"__setitem__: {e} (tensor of shape {self.shape})") from None
        self.copy_(values)

    def to(self, *args, dtype=None, device=None, copy: builtins.bool = False, non_blocking: builtins.bool = False) -> "Tensor":
        """PyTorch's forms: to(dtype), to(device), to(device, dtype), to(other_tensor).
        A dtype change is a copy that is not recorded on the tape (a new leaf, meant for
        data rather than parameters); otherwise self (or a copy with copy=True)."""
        dtype, _ = to_arguments(args, dtype, device)
        if dtype is not None and dtype != self.dtype:
            return _promotion.to_dtype(self, dtype)
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

    def long(self) -> "Tensor":
        return self.to(int64)

    def int(self) -> "Tensor":
        return self.to(int32)

    def bool(self) -> "Tensor":
        return self.to(bool_)

    def byte(self) -> "Tensor":
        return self.to(uint8)

    def type(self, dtype=None):
        """With no argument, PyTorch's type name ('torch.FloatTensor'); with a dtype or
        such a name, the tensor in that dtype."""
        if dtype is None:
            return _TYPE_NAMES[self.dtype]
        if isinstance(dtype, str) and dtype in _TYPE_NAMES.values():
            dtype = next(dt for dt, name in _TYPE_NAMES.items() if name == dtype)
        return self.to(dtype)

    def type_as(self, other) -> "Tensor":
        return self.to(other.dtype)

    @property
    def data(self) -> "Tensor":
        """This tensor's values as a leaf outside the graph (shares memory)."""
        return self.detach()

    @data.setter
    def data(self, value):
        self.detach().copy_(value)

    def __repr__(self):
        body = np.array2string(self.numpy(), separator=", ", prefix="tensor(")
        extra = "" if self.dtype in (float32, int64, bool_) else f", dtype=cgrad.{self.dtype}"
        if self.grad_fn is not None:
            extra += f", grad_fn=<{self.grad_fn}>"
        elif self.requires_grad:
            extra += ", requires_grad=True"
        return f"tensor({body}{extra})"

    __hash__ = _C.TensorBase.__hash__

    # ---- pickling and copying: for moving objects between processes (cgrad.save for files) ----
    def _storage_key(self) -> tuple:
        # tensors over the same memory (reshape, detach, Parameter(t), state_dict entries)
        # have the same first address; numel and dtype make a prefix or a reinterpretation
        # a storage of its own (copied apart, never aliased wrongly)
        return self.data_ptr(), self.numel(), self.dtype.num

    def __reduce_ex__(self, protocol):
        """pickle and copy.copy: the values as one flat numpy array over this tensor's memory
        (pickled as raw bytes, out of band with protocol 5's buffer_callback), the shape, the
        class and requires_grad, as torch pickles them: not .grad, and a non-leaf comes back
        as a leaf. Tensors sharing memory give the same array object while it is alive, so
        pickled together they come back sharing it (pickle's memo), as torch's do. copy.copy
        shares the memory, as torch's does."""
        key = self._storage_key()
        flat = _pickled_storages.get(key)
        if flat is None:
            flat = _pickled_storages[key] = self.numpy().reshape(-1)
        state = getattr(self, "__dict__", None)  # a subclass's attributes
        return _rebuild_tensor, (type(self), flat, self.shape, self.requires_grad), state or None

    def __setstate__(self, state: dict) -> None:
        # a subclass's attributes (TensorBase's Cython-made __setstate__ would refuse)
        self.__dict__.update(state)

    def _deepcopy_values(self, memo) -> "Tensor":
        """A leaf Tensor holding a copy of the values (one memcpy), or, for a tensor sharing
        memory with one copied before in this deepcopy, a tensor over that copy's memory."""
        key = ("cgrad storage",) + self._storage_key()
        first = memo.get(key)
        if first is None:
            memo[key] = first = self._copy()
            return first
        return _C.from_numpy(first.numpy().reshape(self.shape))

    def __deepcopy__(self, memo):
        """copy.deepcopy, as torch's: leaves only (a non-leaf raises), a copy of the values
        (tensors sharing memory share the copy's), requires_grad and a copy of .grad
        (nn.Parameter's has its own)."""
        if self.grad_fn is not None:
            raise RuntimeError("deepcopy: only tensors created explicitly by the user (graph leaves) support "
                               "the deepcopy protocol; detach() a tensor that is part of a graph first")
        new = self._deepcopy_values(memo)
        if type(self) is not Tensor:
            new = _C.rewrap(new, type(self))
        memo[id(self)] = new
        new.requires_grad = self.requires_grad
        grad = self.grad
        if grad is not None:
            new.grad = grad._copy()
        state = getattr(self, "__dict__", None)
        if state:
            new.__dict__.update(copy.deepcopy(state, memo))
        return new

    # ---- comparisons and logic: builtins.bool tensors, no gradient ----
    def _compare(self, op: str, other):
        refuse_while_recording(f"a comparison ({op})")
        b = other.numpy() if isinstance(other, _C.TensorBase) else other
        try:
            return _C.from_numpy(np.asarray(getattr(np, op)(self.numpy(), b)))
        except ValueError:
            shape = getattr(b, "shape", ())
            raise ValueError(f"{op}: shapes {self.shape} and {tuple(shape)} cannot be broadcast together") from None

    def __lt__(self, other):
        return self._compare("less", other)

    def __le__(self, other):
        return self._compare("less_equal", other)

    def __gt__(self, other):
        return self._compare("greater", other)

    def __ge__(self, other):
        return self._compare("greater_equal", other)

    def __eq__(self, other):
        return self._compare("equal", other)

    def __ne__(self, other):
        return self._compare("not_equal", other)

    lt, le, gt, ge, eq, ne = __lt__, __le__, __gt__, __ge__, __eq__, __ne__
    less, less_equal, greater, greater_equal, not_equal = lt, le, gt, ge, ne

    def equal(self, other) -> builtins.bool:
        """True when other has the same shape and values (PyTorch's torch.equal)."""
        return self.shape == tuple(other.shape) and bool(np.array_equal(self.numpy(), np.asarray(other)))

    def allclose(self, other, rtol: builtins.float = 1e-5, atol: builtins.float = 1e-8, equal_nan: builtins.bool = False) -> builtins.bool:
        return bool(np.allclose(self.numpy(), np.asarray(other), rtol=rtol, atol=atol, equal_nan=equal_nan))

    def isclose(self, other, rtol: builtins.float = 1e-5, atol: builtins.float = 1e-8, equal_nan: builtins.bool = False) -> "Tensor":
        return _C.from_numpy(np.isclose(self.numpy(), np.asarray(other), rtol=rtol, atol=atol, equal_nan=equal_nan))

    def _logical(self, op: str, *others):
        refuse_while_recording(f"a logical op ({op})")
        args = [o.numpy() if isinstance(o, _C.TensorBase) else o for o in others]
        return _C.from_numpy(np.asarray(getattr(np, op)(self.numpy(), *args)))

    def __invert__(self):
        if self.dtype.kind == "f":
            raise TypeError(f"~ (bitwise not) needs a bool or integer tensor, not {self.dtype}")
        return self._logical("invert")

    def __and__(self, other):
        return self._logical("bitwise_and", other)

    def __or__(self, other):
        return self._logical("bitwise_or", other)

    def __xor__(self, other):
        return self._logical("bitwise_xor", other)

    __rand__, __ror__, __rxor__ = __and__, __or__, __xor__

    def logical_not(self):
        return self._logical("logical_not")

    def logical_and(self, other):
        return self._logical("logical_and", other)

    def logical_or(self, other):
        return self._logical("logical_or", other)

    def isnan(self):
        return self._logical("isnan")

    def isinf(self):
        return self._logical("isinf")

    def isfinite(self):
        return self._logical("isfinite")

    def any(self, dim=None, keepdim: builtins.bool = False):
        return self._logical("any", dim, None, keepdim)

    def all(self, dim=None, keepdim: builtins.bool = False):
        return self._logical("all", dim, None, keepdim)

    def nonzero(self, as_tuple: builtins.bool = False):
        """The indices of the non-zero elements: an int64 tensor [n, ndim], or one per dim."""
        idx = np.nonzero(self.numpy())
        if as_tuple:
            return tuple(_C.from_numpy(np.asarray(i, dtype=np.int64)) for i in idx)
        return _C.from_numpy(np.asarray(np.stack(idx, axis=-1), dtype=np.int64))

    # ---- shape ----
    def reshape(self, *shape) -> "Tensor":
        """Same values in a new shape (one dim may be -1); shares memory."""
        if len(shape) == 1 and isinstance(shape[0], (tuple, list)):
            shape = tuple(shape[0])
        return _C.reshape(self, shape)

    view = reshape

    def flatten(self, start_dim: builtins.int = 0, end_dim: builtins.int = -1) -> "Tensor":
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

    def unsqueeze(self, axis: builtins.int | None = None, *, dim=None) -> "Tensor":
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
        lead = 0  # x[:, idx] and x[1, idx]: full slices and integers before one index array
        while lead < len(key) and (isinstance(key[lead], numbers.Integral) or
                                   (isinstance(key[lead], slice) and key[lead] == slice(None))):
            lead += 1
        if 0 < lead < len(key) and _is_array_index(key[lead]) and not any(_is_array_index(k) for k in key[lead + 1:]):
            return _index_one_dim(self, key[:lead], np.asarray(key[lead]), key[lead + 1:])
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

    # ---- reductions that return indices, PyTorch's forms ----
    def _dim(self, op: str, dim: builtins.int) -> builtins.int:
        nd = max(self.ndim, 1)
        if not -nd <= dim < nd:
            raise IndexError(f"{op}: dim {dim} is out of range for a tensor of shape {self.shape}")
        return dim % nd

    def _indices(self, op: str) -> np.ndarray:
        refuse_while_recording(f"{op} (its indices are computed by numpy)")
        return self.numpy()

    def _extreme(self, op: str, dim, keepdim: builtins.bool, axis, keepdims):
        dim = axis if dim is None else dim
        keepdim = bool(keepdims) if keepdims is not None else keepdim
        if isinstance(dim, _C.TensorBase):  # max(other): the elementwise maximum
            return (maximum if op == "max" else minimum)(self, dim)
        if dim is None:
            return getattr(_C.TensorBase, op)(self)
        d = self._dim(op, dim)
        if self.ndim == 0:  # PyTorch: the value itself, at index 0
            return _return_type(op)(self.clone(), from_numpy(np.zeros((), np.int64)))
        if self.shape[d] == 0:
            raise ValueError(f"{op}: cannot reduce over a zero-size dimension (dim {d} of shape {self.shape})")
        idx = (self.argmax if op == "max" else self.argmin)(d, keepdim=True)
        values = self.gather(d, idx) if self.ndim else self
        if not keepdim and self.ndim:
            values, idx = values.squeeze(d), idx.squeeze(d)
        return _return_type(op)(values, idx)

    def amax(self, dim=None, keepdim: builtins.bool = False) -> "Tensor":
        """The largest values over dim (an int, a tuple, or all); ties share the gradient
        equally, as PyTorch's amax."""
        return _C.TensorBase.max(self, dim, keepdim)

    def amin(self, dim=None, keepdim: builtins.bool = False) -> "Tensor":
        return _C.TensorBase.min(self, dim, keepdim)

    def max(self, dim=None, keepdim: builtins.bool = False, *, axis=None, keepdims=None):
        """The largest value; with dim, (values, indices) along it, the gradient going to the
        index as in PyTorch; with a tensor, the elementwise maximum. Over the whole tensor,
        ties share the gradient equally."""
        return self._extreme("max", dim, keepdim, axis, keepdims)

    def min(self, dim=None, keepdim: builtins.bool = False, *, axis=None, keepdims=None):
        """The smallest value, as max."""
        return self._extreme("min", dim, keepdim, axis, keepdims)

    def _arg(self, op: str, dim, keepdim: builtins.bool) -> "Tensor":
        a = self._indices(op)
        if a.size == 0:
            raise RuntimeError(f"{op}: the tensor of shape {self.shape} is empty")
        fn = np.argmax if op == "argmax" else np.argmin
        if dim is None:
            out = np.asarray(fn(a))
            return from_numpy(out.reshape((1,) * self.ndim) if keepdim else out)
        return from_numpy(np.asarray(fn(a, axis=self._dim(op, dim), keepdims=keepdim)))

    def argmax(self, dim=None, keepdim: builtins.bool = False) -> "Tensor":
        """The index of the largest value (of the flattened tensor when dim is None), int64."""
        return self._arg("argmax", dim, keepdim)

    def argmin(self, dim=None, keepdim: builtins.bool = False) -> "Tensor":
        return self._arg("argmin", dim, keepdim)

    def sort(self, dim: builtins.int = -1, descending: builtins.bool = False, stable: builtins.bool = False):
        """(values, indices) sorted along dim; the values are differentiable."""
        d = self._dim("sort", dim)
        idx = self.argsort(d, descending)
        return _return_type("sort")(self.gather(d, idx) if self.ndim else self, idx)

    def argsort(self, dim: builtins.int = -1, descending: builtins.bool = False, stable: builtins.bool = True) -> "Tensor":
        a = self._indices("argsort")
        if a.ndim == 0:
            return from_numpy(np.zeros((), np.int64))
        d = self._dim("argsort", dim)
        if descending:  # stable among equals, as PyTorch's stable sort
            order = np.flip(np.argsort(np.flip(a, d), axis=d, kind="stable"), d)
            order = a.shape[d] - 1 - order
        else:
            order = np.argsort(a, axis=d, kind="stable")
        return from_numpy(np.asarray(order, dtype=np.int64))

    def topk(self, k: builtins.int, dim: builtins.int = -1, largest: builtins.bool = True, sorted: builtins.bool = True):
        """The k largest (or smallest) values along dim and their indices."""
        d = self._dim("topk", dim)
        n = self.shape[d] if self.ndim else 1
        if not 0 <= k <= n:
            raise IndexError(f"topk: k ({k}) is out of range for dim {dim} of shape {self.shape}")
        order = self.argsort(d, descending=largest).numpy()
        idx = from_numpy(np.asarray(np.take(order, np.arange(k), axis=d if self.ndim else None)))
        return _return_type("topk")(self.gather(d, idx) if self.ndim else self, idx)

    # ---- gathering and scattering along a dim (differentiable in the values) ----
    def _flat_index(self, op: str, dim: builtins.int, index) -> np.ndarray:
        """Flat positions in self of index's entries taken along dim (torch.gather's rule:
        index[i][j][k] names self[i][index][k] for dim 1)."""
        idx = index.numpy() if isinstance(index, _C.TensorBase) else np.asarray(index)
        refuse_derived_index(op, [idx])
        if idx.dtype.kind not in "iu":
            raise TypeError(f"{op}: index must be an integer tensor, not {idx.dtype}")
        if idx.ndim != self.ndim:
            raise ValueError(f"{op}: index of shape {idx.shape} must have as many dims as the tensor "
                             f"of shape {self.shape}")
        n = self.shape[dim]
        if idx.size and (idx.min() < -n or idx.max() >= n):
            raise IndexError(f"{op}: an index is out of bounds for dim {dim} of size {n} (shape {self.shape})")
        for ax in range(self.ndim):
            if ax != dim and idx.shape[ax] > self.shape[ax]:
                raise ValueError(f"{op}: index of shape {idx.shape} is larger than the tensor of shape "
                                 f"{self.shape} outside dim {dim}")
        strides = np.cumprod((self.shape[1:] + (1,))[::-1])[::-1]
        grid = np.indices(idx.shape, sparse=True) if idx.ndim else ()
        flat = np.zeros(idx.shape, np.int64)
        for ax in range(self.ndim):
            flat = flat + (np.where(idx < 0, idx + n, idx) if ax == dim else grid[ax]) * int(strides[ax])
        return flat.reshape(-1)

    def gather(self, dim: builtins.int, index) -> "Tensor":
        """out[i][j][k] = self[i][index[i][j][k]][k] for dim 1 (torch.gather); repeated
        indices add up in backward."""
        d = self._dim("gather", dim)
        flat = self._flat_index("gather", d, index)
        return _C.gather(self.reshape(-1), flat).reshape(tuple(np.shape(index)))

    take_along_dim = gather

    def scatter_add(self, dim: builtins.int, index, src) -> "Tensor":
        """A copy of self with src[i][j][k] added at self[i][index[i][j][k]][k] (dim 1);
        differentiable in self and src."""
        d = self._dim("scatter_add", dim)
        flat = self._flat_index("scatter_add", d, index)
        shape = tuple(np.shape(index))
        if not isinstance(src, _C.TensorBase):
            src = full(shape, src, dtype=self.dtype)
        if any(s < i for s, i in zip(src.shape, shape)) or src.ndim != len(shape):
            raise ValueError(f"scatter_add: src of shape {src.shape} is smaller than index of shape {shape}")
        part = src if src.shape == shape else src[tuple(slice(0, i) for i in shape)]
        return _C.scatter_add(self.reshape(-1), flat, part.reshape(-1)).reshape(self.shape)

    def scatter_add_(self, dim: builtins.int, index, src) -> "Tensor":
        return self._inplace("scatter_add_", lambda a, _: a.scatter_add(dim, index, src), None, True)

    def index_select(self, dim: builtins.int, index) -> "Tensor":
        """The entries at positions `index` (1-D integers) along dim."""
        d = self._dim("index_select", dim)
        idx = index.numpy() if isinstance(index, _C.TensorBase) else np.asarray(index)
        if idx.ndim > 1:
            raise ValueError(f"index_select: index must be 1-D, got shape {idx.shape}")
        if d == 0:
            return self[idx.reshape(-1)]
        shape = [1] * self.ndim
        shape[d] = idx.size
        out_shape = self.shape[:d] + (idx.size,) + self.shape[d + 1:]
        return self.gather(d, np.broadcast_to(idx.reshape(shape), out_shape))

    def masked_fill(self, mask, value) -> "Tensor":
        """value where mask (broadcast) is true, else self; differentiable in self (and in a
        0-dim tensor value)."""
        m = mask.numpy() if isinstance(mask, _C.TensorBase) else np.asarray(mask)
        if m.dtype != bool_:
            raise TypeError(f"masked_fill: the mask must be a bool tensor, not {m.dtype}")
        return where(m, value, self)

    def masked_fill_(self, mask, value) -> "Tensor":
        return self._inplace("masked_fill_", lambda a, _: a.masked_fill(mask, value), None, True)

    def clamp(self, min=None, max=None) -> "Tensor":
        """Limit values to [min, max] (numbers or tensors); the gradient passes inside."""
        if isinstance(min, _C.TensorBase) or isinstance(max, _C.TensorBase):
            out = self if min is None else maximum(self, min)
            return out if max is None else minimum(out, max)
        return self.clip(min, max)

    def clamp_min(self, min) -> "Tensor":
        return self.clamp(min=min)

    def clamp_max(self, max) -> "Tensor":
        return self.clamp(max=max)

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


def _index_one_dim(t: Tensor, before, idx: np.ndarray, after) -> Tensor:
    """t[before + (idx,) + after] where `before` holds full slices and integers: the
    integers drop their dims first, then idx picks along its dim, whose result dims stand
    where that dim was (numpy's and PyTorch's rule for one index array)."""
    if any(isinstance(k, numbers.Integral) for k in before):
        t = t[tuple(k if isinstance(k, numbers.Integral) else slice(None) for k in before)]
    d = sum(1 for k in before if not isinstance(k, numbers.Integral))
    if d == 0:
        return t[(idx,) + tuple(after)]
    picked = t.movedim(d, 0)[idx]  # idx's dims first, then t's other dims in order
    k = picked.ndim - (t.ndim - 1)  # how many dims idx produced
    order = list(range(k, k + d)) + list(range(k)) + list(range(k + d, picked.ndim))
    out = picked.permute(order)
    return out[(slice(None),) * (d + k) + tuple(after)] if after else out


def _advanced_index(t: Tensor, arrays) -> Tensor:
    """Integer or boolean arrays on the leading axes: flatten those axes, gather rows."""
    if len(arrays) == 1:
        a = np.asarray(arrays[0])
        if a.dtype == bool:
            if a.shape != t.shape[:a.ndim]:
                raise IndexError(f"indexing: boolean mask of shape {a.shape} does not match "
                                 f"the tensor's shape {t.shape}")
            refuse_derived_index("indexing with a boolean mask", [a])
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
    refuse_derived_index("indexing with several index arrays", arrays)
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

# The flat array each storage is pickled as, while a pickle (or a copy) holds it: weak, so
# an entry lives as long as its array (which keeps its tensor, so its address, alive).
_pickled_storages: weakref.WeakValueDictionary = weakref.WeakValueDictionary()


def _rebuild_tensor(cls, flat: np.ndarray, shape: tuple, requires_grad: bool) -> Tensor:
    """Tensor.__reduce_ex__'s inverse: a leaf of class cls over the unpickled array (no second
    copy when the array is writable, as an in-band pickle gives it, so tensors rebuilt from
    one array share it; from_numpy copies a read-only one)."""
    t = _C.from_numpy(flat.reshape(shape))
    if cls is not Tensor:
        t = _C.rewrap(t, cls)
    t.requires_grad = requires_grad
    return t


def _made(t: Tensor, requires_grad: bool, device) -> Tensor:
    """The last step of every creation function: the device checked, requires_grad set."""
    check_device(device)
    t.requires_grad = requires_grad
    return t


def tensor(data, dtype=None, device=None, requires_grad: bool = False) -> Tensor:
    """A new tensor holding a copy of `data` (nested lists, numbers, numpy arrays or a
    tensor). dtype as PyTorch infers it: Python floats give float32, ints int64, bools
    bool; a numpy array or tensor keeps its dtype (see _resolve_dtype)."""
    if isinstance(data, Tensor):
        if _state.recording() is not None and data.is_floating_point():
            # inside a compiled step the copy must be an op, or replays would keep the
            # recorded values of a step input
            want = data.dtype if dtype is None else _resolve_dtype(dtype)
            src = data.detach()
            return _made(src * 1 if want == data.dtype else _C.cast(src, want), requires_grad, device)
        data = data.numpy()
    elif isinstance(data, _C.TensorBase):
        data = data.numpy()
    elif isinstance(data, (list, tuple)) and any(isinstance(d, _C.TensorBase) for d in data):
        data = [np.asarray(d) for d in data]  # a list of 0-dim tensors, as in tensor([loss1, loss2])
    return _made(_C.copy_from_array(data, _resolve_dtype(dtype, data)), requires_grad, device)


def as_tensor(data, dtype=None, device=None) -> Tensor:
    """`data` as a tensor without copying where possible, as PyTorch's: a tensor of the
    dtype asked for is returned itself (in a compiled step too, where a copy would freeze a
    step input), and a numpy array of a cgrad dtype shares its memory (see from_numpy)."""
    check_device(device)
    if isinstance(data, Tensor):
        return data if dtype is None or _resolve_dtype(dtype) == data.dtype else data.to(dtype)
    if isinstance(data, np.ndarray) and (dtype is None or _resolve_dtype(dtype) == data.dtype):
        return from_numpy(data)
    return tensor(data, dtype, device)


def from_numpy(array: np.ndarray, requires_grad: bool = False) -> Tensor:
    """A tensor that shares `array`'s memory: changes through either are seen by both.

    Memory is shared when `array` is C-contiguous, writable and of a dtype cgrad has
    (float32, float64, int64, int32, bool, uint8). Others are copied: non-contiguous or
    read-only arrays as they are, other floats to float32, other integers to int64."""
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
    return full(_shape_arg(shape), 1.0, dtype=_resolve_dtype(dtype), device=device, requires_grad=requires_grad)


def full(shape, fill_value, dtype=None, device=None, requires_grad: bool = False) -> Tensor:
    """A tensor of `fill_value`; its dtype, unless given, is the value's (full(s, 7) is int64)."""
    dtype = _resolve_dtype(dtype, fill_value)
    t = _C.empty(tuple(shape) if isinstance(shape, (tuple, list)) else (shape,), dtype)
    t.numpy()[...] = _C.numbers(fill_value, "full")  # exact for every dtype (integers beyond 2**53 too)
    return _made(t, requires_grad, device)


def zeros_like(t: Tensor, dtype=None, device=None, requires_grad: bool = False) -> Tensor:
    return zeros(t.shape, dtype=dtype or t.dtype, device=device, requires_grad=requires_grad)


def ones_like(t: Tensor, dtype=None, device=None, requires_grad: bool = False) -> Tensor:
    return ones(t.shape, dtype=dtype or t.dtype, device=device, requires_grad=requires_grad)


def full_like(t: Tensor, fill_value, dtype=None, device=None, requires_grad: bool = False) -> Tensor:
    return full(t.shape, fill_value, dtype=dtype or t.dtype, device=device, requires_grad=requires_grad)


def empty_like(t: Tensor, dtype=None, device=None, requires_grad: bool = False) -> Tensor:
    return empty(t.shape, dtype=dtype or t.dtype, device=device, requires_grad=requires_grad)


def _random_float(dtype):
    dtype = _resolve_dtype(dtype)
    if dtype.kind != "f":
        raise TypeError(f"random floats cannot be drawn as {dtype}; pass a float dtype")
    return dtype


def _float_like(t: Tensor, dtype):
    return _random_float(dtype or t.dtype)


def rand_like(t: Tensor, dtype=None, device=None, requires_grad: bool = False) -> Tensor:
    return rand(t.shape, dtype=_float_like(t, dtype), device=device, requires_grad=requires_grad)


def randn_like(t: Tensor, dtype=None, device=None, requires_grad: bool = False) -> Tensor:
    return randn(t.shape, dtype=_float_like(t, dtype), device=device, requires_grad=requires_grad)


def randint_like(t: Tensor, low: int, high: int | None = None, dtype=None, device=None, generator=None) -> Tensor:
    return randint(low, high, t.shape, dtype=dtype or t.dtype, device=device, generator=generator)


def arange(start, end=None, step=1, dtype=None, device=None, requires_grad: bool = False) -> Tensor:
    """start, start + step, ... below end; int64 when all three are integers, else float32."""
    start, end, step = (v.item() if isinstance(v, _C.TensorBase) else v for v in (start, end, step))
    values = np.arange(start, end, step) if end is not None else np.arange(start)
    integral = all(isinstance(v, numbers.Integral) for v in (start, end if end is not None else 0, step))
    return tensor(values, dtype=_resolve_dtype(dtype) if dtype is not None or not integral else int64,
                  device=device, requires_grad=requires_grad)


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


def randn(*shape, dtype=None, device=None, requires_grad: bool = False, generator=None) -> Tensor:
    """Standard normal samples from the generator seeded by `cgrad.manual_seed` (or `generator`)."""
    return tensor(_generator(generator).standard_normal(_shape_arg(shape)), dtype=_random_float(dtype),
                  device=device, requires_grad=requires_grad)


def rand(*shape, dtype=None, device=None, requires_grad: bool = False, generator=None) -> Tensor:
    """Uniform samples in [0, 1) from the generator seeded by `cgrad.manual_seed` (or `generator`)."""
    return tensor(_generator(generator).random(_shape_arg(shape)), dtype=_random_float(dtype), device=device,
                  requires_grad=requires_grad)


def randint(low: int, high: int | None = None, size=None, *, dtype=None, device=None, generator=None,
            requires_grad: bool = False) -> Tensor:
    """Integers uniform in [low, high) (randint(high, size) starts at 0), int64 by default."""
    if size is None and isinstance(high, (tuple, list)):  # randint(high, size)
        low, high, size = 0, low, high
    if high is None:
        low, high = 0, low
    if size is None:
        raise TypeError("randint: needs a size, e.g. randint(0, 10, (3,))")
    if low >= high:
        raise ValueError(f"randint: low ({low}) must be less than high ({high})")
    size = (size,) if isinstance(size, numbers.Integral) else tuple(size)
    values = _generator(generator).integers(low, high, size)
    return tensor(values, dtype=_resolve_dtype(dtype) if dtype is not None else int64, device=device,
                  requires_grad=requires_grad)


def randperm(n: int, *, dtype=None, device=None, generator=None, requires_grad: bool = False) -> Tensor:
    """A random permutation of 0..n-1 (int64)."""
    return tensor(_generator(generator).permutation(n), dtype=_resolve_dtype(dtype) if dtype is not None else int64,
                  device=device, requires_grad=requires_grad)


def normal(mean=0.0, std=1.0, size=None, *, generator=None, dtype=None, device=None,
           requires_grad: bool = False) -> Tensor:
    """Normal samples: mean and std numbers with a size, or tensors (broadcast) giving one
    sample per element."""
    m = mean.numpy() if isinstance(mean, _C.TensorBase) else mean
    s = std.numpy() if isinstance(std, _C.TensorBase) else std
    if size is None and np.ndim(m) == 0 and np.ndim(s) == 0:
        raise TypeError("normal: with number mean and std, give a size")
    shape = None if size is None else (size,) if isinstance(size, numbers.Integral) else tuple(size)
    values = _generator(generator).normal(m, s, shape)
    like = next((x.dtype for x in (mean, std) if isinstance(x, _C.TensorBase)), None)
    return tensor(values, dtype=_resolve_dtype(dtype or like), device=device, requires_grad=requires_grad)


def bernoulli(input: Tensor, p: float | None = None, *, generator=None) -> Tensor:
    """1 with probability input (or p) per element, else 0; in input's dtype."""
    probs = input.numpy() if p is None else np.full(input.shape, p)
    if probs.size and (np.min(probs) < 0 or np.max(probs) > 1):
        raise ValueError(f"bernoulli: probabilities must be in [0, 1] (tensor of shape {input.shape})")
    draws = _generator(generator).random(input.shape) < probs
    return tensor(draws, dtype=input.dtype)


def multinomial(input: Tensor, num_samples: int, replacement: bool = False, *, generator=None) -> Tensor:
    """Indices drawn from each row's (unnormalised, non-negative) weights: int64 of shape
    [num_samples] for a 1-D input, [rows, num_samples] for 2-D."""
    w = np.asarray(input.numpy(), dtype=np.float64)
    if w.ndim not in (1, 2):
        raise ValueError(f"multinomial: input must be 1-D or 2-D, got shape {input.shape}")
    rows = w.reshape(-1, w.shape[-1])
    if (rows < 0).any() or not np.isfinite(rows).all():
        raise ValueError("multinomial: weights must be finite and non-negative")
    rng = _generator(generator)
    out = np.empty((rows.shape[0], num_samples), np.int64)
    for r, row in enumerate(rows):
        total = row.sum()
        if total <= 0:
            raise ValueError(f"multinomial: row {r} of the weights sums to zero")
        if not replacement and num_samples > np.count_nonzero(row):
            raise ValueError(f"multinomial: cannot draw {num_samples} samples without replacement from "
                             f"{np.count_nonzero(row)} non-zero weights")
        out[r] = rng.choice(len(row), num_samples, replace=replacement, p=row / total)
    return tensor(out.reshape(w.shape[:-1] + (num_samples,)), dtype=int64)


# ---------------------------------------------------------------- combining tensors

_dtype_of = _promotion.common_dtype


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


def is_tensor(obj) -> builtins.bool:
    return isinstance(obj, _C.TensorBase)


def get_default_dtype() -> np.dtype:
    return _DEFAULT_DTYPE


def set_default_dtype(dtype) -> None:
    """The float dtype of tensors made from Python floats, of zeros/ones/randn and of
    integer tensors promoted to floats (float32 unless changed)."""
    global _DEFAULT_DTYPE
    dt = _resolve_dtype(dtype)
    if dt.kind != "f":
        raise TypeError(f"set_default_dtype: needs a float dtype, not {dt}")
    _DEFAULT_DTYPE = _promotion.DEFAULT_FLOAT = dt


def broadcast_tensors(*tensors) -> tuple:
    shape = np.broadcast_shapes(*(t.shape for t in tensors))
    return tuple(t.expand(*shape) for t in tensors)


def meshgrid(*tensors, indexing: str = "ij") -> tuple:
    """Coordinate grids of 1-D tensors, 'ij' (PyTorch's default) or 'xy' indexing."""
    if indexing not in ("ij", "xy"):
        raise ValueError(f"meshgrid: indexing must be 'ij' or 'xy', not {indexing!r}")
    if len(tensors) == 1 and isinstance(tensors[0], (list, tuple)):
        tensors = tuple(tensors[0])
    n = len(tensors)
    shape = [t.numel() for t in tensors]
    if indexing == "xy" and n >= 2:
        shape[0], shape[1] = shape[1], shape[0]
    out = []
    for i, t in enumerate(tensors):
        axis = (1 - i if i < 2 else i) if indexing == "xy" and n >= 2 else i
        view = [1] * n
        view[axis] = t.numel()
        out.append(t.reshape(view).expand(*shape))
    return tuple(out)


def hstack(tensors) -> Tensor:
    tensors = list(tensors)
    return concatenate(tensors, 0 if tensors and tensors[0].ndim == 1 else 1)


def vstack(tensors) -> Tensor:
    return concatenate([t.reshape(1, -1) if t.ndim == 1 else t for t in tensors], 0)


_C._set_tensor_type(Tensor)
_C._set_promotion(_promotion)
_C._set_taped_backward(_double_backward.backward)
