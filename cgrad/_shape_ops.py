"""PyTorch's shape ops and a few reductions, as the `ShapeOps` mixin of `Tensor`, plus
`einsum` and `vector_norm`.

Everything here is a composite of ops that already record their gradients (reshape,
basic indexing, concat, gather, where, broadcasting arithmetic, sum, matmul) and of the
`cumsum` C op, so each result is differentiable with no rule of its own. The ops go
through Tensor methods and `_C` entry points that dispatch on the dtype, never through a
float-only path. Where PyTorch returns a view (expand, narrow, split, ...) cgrad returns
a copy, as its indexing does; values and gradients are the same.

This module must not import cgrad.tensor (it is Tensor's base): it uses only `_C` and
methods of `self`.
"""
from __future__ import annotations

import functools
import math
import numbers
import string
from typing import Any, Sequence

import numpy as np

from . import _C

# What `self` is in the mixin's methods: mypy takes no subclass (Tensor) as a self type,
# and ShapeOps alone has none of the methods they call. Results are Any, as the stub's
# TensorBase methods are (cgrad/_C.pyi).
_Self = Any


# ---------------------------------------------------------------- argument helpers

def _ints(op: str, args: tuple, what: str = "sizes") -> tuple[int, ...]:
    """PyTorch's `*sizes` or one sequence of them, as a tuple of ints."""
    if len(args) == 1 and isinstance(args[0], (tuple, list)):
        args = tuple(args[0])
    for a in args:
        if not isinstance(a, numbers.Integral) or isinstance(a, bool):
            raise TypeError(f"{op}: {what} must be integers, got {tuple(args)}")
    return tuple(int(a) for a in args)


def _dim(op: str, dim: Any, shape: tuple[int, ...]) -> int:
    """dim in [-ndim, ndim) made non-negative; a 0-dim tensor accepts 0 and -1, as PyTorch."""
    nd = len(shape)
    if not isinstance(dim, numbers.Integral) or isinstance(dim, bool):
        raise TypeError(f"{op}: dim must be an integer, got {dim!r}")
    d = int(dim)
    if not -max(nd, 1) <= d < max(nd, 1):
        raise IndexError(f"{op}: dim {d} is out of range for a tensor of shape {shape}")
    return d % nd if nd else 0


def _dims(op: str, dims: Any, shape: tuple[int, ...]) -> tuple[int, ...]:
    """One dim or a sequence of distinct dims, made non-negative."""
    seq = dims if isinstance(dims, (tuple, list)) else (dims,)
    out = tuple(_dim(op, d, shape) for d in seq)
    if len(set(out)) != len(out):
        raise ValueError(f"{op}: dims {tuple(seq)} name a dim more than once (shape {shape})")
    return out


def _reduce_dims(op: str, dim: Any, shape: tuple[int, ...]) -> tuple[int, ...] | None:
    return None if dim is None else _dims(op, dim, shape)


def _zeros(shape: tuple[int, ...], like: Any) -> Any:
    return _C.zeros(shape, like.dtype)


def _broadcast_to(x: Any, target: tuple[int, ...]) -> Any:
    """x (already of len(target) dims, each 1 or the target's) broadcast to target: one
    add of a zeros tensor that is 1 wherever x already has the size, so the backward is
    the broadcasting add's (a sum over the expanded dims) and the constant stays small."""
    zshape = tuple(t if s == 1 else 1 for s, t in zip(x.shape, target))
    return x + _zeros(zshape, x)


def _correction(op: str, unbiased: Any, correction: Any, ddof: Any) -> float:
    given = [v for v in (unbiased, correction, ddof) if v is not None]
    if len(given) > 1:
        raise ValueError(f"{op}: give at most one of correction=, unbiased= and ddof= "
                         f"(got unbiased={unbiased}, correction={correction}, ddof={ddof})")
    if unbiased is not None:
        return 1.0 if unbiased else 0.0
    value = correction if correction is not None else ddof
    return 1.0 if value is None else float(value)


def _vector_norm(op: str, x: Any, p: float, dim: Any, keepdim: bool) -> Any:
    axes = _reduce_dims(op, dim, x.shape)
    a = x.abs()
    if p == math.inf:
        return a.amax(axes, keepdim)
    if p == -math.inf:
        return a.amin(axes, keepdim)
    if p == 0:  # the number of non-zeros; sign's gradient is 0, as PyTorch's
        return a.sign().sum(axes, keepdim)
    if p == 1:
        return a.sum(axes, keepdim)
    tiny = float(np.finfo(x.dtype).tiny)
    if p == 2:
        powered = x.square()
    elif 0 < p < 1:  # |x|^p has an infinite slope at 0 too: floored the same way as below
        powered = a.clip(tiny) ** p * a.sign()
    else:  # (p < 0: the gradient is NaN where an element is 0; PyTorch's is 0)
        powered = a ** p
    return _root(powered.sum(axes, keepdim), p)


def _root(s: Any, p: float) -> Any:
    """s ** (1/p) for s >= 0 with a zero gradient at s = 0, as PyTorch's norm and std.
    The slope of s ** (1/p) is infinite at 0, and inf * 0 is NaN: flooring s at the
    smallest normal number keeps the slope finite, and the factor sign(s) (0 at s = 0,
    with a zero gradient) makes the value and the gradient exactly 0 there. NaN and inf
    stay NaN and inf. Only sums below the floor (a norm < 1e-19 in float32) lose accuracy."""
    floored = s.clip(float(np.finfo(s.dtype).tiny))
    return (floored.sqrt() if p == 2 else floored ** (1.0 / p)) * s.sign()


# ---------------------------------------------------------------- the mixin

class ShapeOps:
    """Tensor methods with PyTorch's names, signatures and semantics (see the module doc)."""

    __slots__ = ()

    # ---- shapes ----
    def view_as(self: _Self, other: Any) -> Any:
        return self.reshape(tuple(other.shape))

    def expand(self: _Self, *sizes: Any) -> Any:
        """Broadcast to `sizes` (new dims at the front; -1 keeps a dim; only dims of size 1
        grow). A copy when a dim grows; else a reshape, which shares memory like a view."""
        target = list(_ints("expand", sizes))
        lead = len(target) - self.ndim
        if lead < 0:
            raise ValueError(f"expand: {len(target)} sizes {tuple(target)} given for a tensor of shape "
                             f"{self.shape}; need at least {self.ndim}")
        for i, s in enumerate(target):
            have = self.shape[i - lead] if i >= lead else None
            if s == -1 and have is not None:
                target[i] = have
            elif s < 0:
                raise ValueError(f"expand: size {s} at dim {i} is not allowed (sizes {tuple(sizes)}, "
                                 f"shape {self.shape}); -1 keeps an existing dim only")
            elif have is not None and have != 1 and s != have:
                raise ValueError(f"expand: the size {s} at dim {i} does not match the existing size {have} "
                                 f"of the tensor of shape {self.shape} (only dims of size 1 expand)")
        x = self.reshape((1,) * lead + self.shape)
        return x if tuple(target) == x.shape else _broadcast_to(x, tuple(target))

    def expand_as(self: _Self, other: Any) -> Any:
        return self.expand(tuple(other.shape))

    def repeat(self: _Self, *sizes: Any) -> Any:
        """Tile the tensor sizes[i] times along dim i (new dims at the front)."""
        reps = _ints("repeat", sizes, "repeats")
        if len(reps) < self.ndim:
            raise ValueError(f"repeat: {len(reps)} repeats {reps} given for a tensor of shape {self.shape}; "
                             f"need at least {self.ndim}")
        if any(r < 0 for r in reps):
            raise ValueError(f"repeat: repeats must not be negative, got {reps}")
        shape = (1,) * (len(reps) - self.ndim) + self.shape
        # [s0, s1] -> [1, s0, 1, s1] -> broadcast [r0, s0, r1, s1] -> [r0*s0, r1*s1]
        inter = tuple(v for s in shape for v in (1, s))
        target = tuple(v for r, s in zip(reps, shape) for v in (r, s))
        tiled = _broadcast_to(self.reshape(inter), target)
        return tiled.reshape(tuple(r * s for r, s in zip(reps, shape)))

    def flip(self: _Self, *dims: Any) -> Any:
        axes = set(_dims("flip", _ints("flip", dims, "dims"), self.shape))
        return self[tuple(slice(None, None, -1) if i in axes else slice(None) for i in range(self.ndim))]

    def roll(self: _Self, shifts: Any, dims: Any = None) -> Any:
        """Shift elements along dims, wrapping around; dims=None rolls the flattened tensor."""
        shift_seq = _ints("roll", (shifts,), "shifts")
        if dims is None:
            if len(shift_seq) != 1:
                raise ValueError(f"roll: with dims=None, shifts must be one integer, got {shift_seq}")
            return _roll1(self.reshape(-1), shift_seq[0], 0).reshape(self.shape)
        dim_seq = _ints("roll", (dims,), "dims")
        if len(shift_seq) != len(dim_seq):
            raise ValueError(f"roll: shifts {shift_seq} and dims {dim_seq} must have the same length")
        out = self
        for s, d in zip(shift_seq, dim_seq):
            out = _roll1(out, s, _dim("roll", d, self.shape))
        return out

    def narrow(self: _Self, dim: int, start: int, length: int) -> Any:
        """Elements start .. start+length-1 along dim (start may be negative)."""
        d = _dim("narrow", dim, self.shape)
        n = self.shape[d] if self.ndim else 1
        if not -n <= start <= n:
            raise IndexError(f"narrow: start {start} is out of range for dim {d} of size {n} "
                             f"(shape {self.shape})")
        start = start + n if start < 0 else start
        if length < 0 or start + length > n:
            raise ValueError(f"narrow: start ({start}) + length ({length}) exceeds the size {n} of dim {d} "
                             f"(shape {self.shape})")
        return self[(slice(None),) * d + (slice(start, start + length),)]

    def split(self: _Self, split_size_or_sections: Any, dim: int = 0) -> tuple[Any, ...]:
        """Pieces of split_size along dim (the last may be smaller), or of the listed sizes."""
        d = _dim("split", dim, self.shape)
        n = self.shape[d]
        if isinstance(split_size_or_sections, numbers.Integral):
            size = int(split_size_or_sections)
            if size <= 0 and n:
                raise ValueError(f"split: split_size must be positive, got {size} (shape {self.shape})")
            sizes = [size] * (n // size) + ([n % size] if n % size else []) if n else [0]
        else:
            sizes = list(_ints("split", (split_size_or_sections,), "split sizes"))
            if any(s < 0 for s in sizes) or sum(sizes) != n:
                raise ValueError(f"split: split sizes {sizes} must be non-negative and sum to {n}, the size of "
                                 f"dim {d} of the tensor of shape {self.shape}")
        starts = np.cumsum([0] + sizes[:-1])
        return tuple(self.narrow(d, int(st), s) for st, s in zip(starts, sizes))

    def chunk(self: _Self, chunks: int, dim: int = 0) -> tuple[Any, ...]:
        """At most `chunks` pieces of ceil(size / chunks) along dim, as PyTorch."""
        if not isinstance(chunks, numbers.Integral) or chunks <= 0:
            raise ValueError(f"chunk: chunks must be a positive integer, got {chunks!r}")
        d = _dim("chunk", dim, self.shape)
        n = self.shape[d]
        if n == 0:
            return tuple(self.narrow(d, 0, 0) for _ in range(chunks))
        return self.split(-(-n // chunks), d)

    def unbind(self: _Self, dim: int = 0) -> tuple[Any, ...]:
        """The slices along dim, each without that dim."""
        d = _dim("unbind", dim, self.shape)
        if not self.ndim:
            raise IndexError("unbind: a 0-dim tensor has no dim to unbind")
        return tuple(self[(slice(None),) * d + (i,)] for i in range(self.shape[d]))

    def movedim(self: _Self, source: Any, destination: Any) -> Any:
        src = _dims("movedim", source, self.shape)
        dst = _dims("movedim", destination, self.shape)
        if len(src) != len(dst):
            raise ValueError(f"movedim: source {source} and destination {destination} must name as many dims")
        order = [d for d in range(self.ndim) if d not in src]
        for to, frm in sorted(zip(dst, src)):
            order.insert(to, frm)
        return self.permute(order)

    moveaxis = movedim

    def swapaxes(self: _Self, axis0: int, axis1: int) -> Any:
        a, b = _dim("swapaxes", axis0, self.shape), _dim("swapaxes", axis1, self.shape)
        return self.transpose(a, b)

    swapdims = swapaxes

    def tril(self: _Self, diagonal: int = 0) -> Any:
        """Zero the elements above the diagonal-th diagonal of the last two dims."""
        return _triangle("tril", self, np.tri(self.shape[-2], self.shape[-1], diagonal, dtype=bool) if self.ndim >= 2 else None)

    def triu(self: _Self, diagonal: int = 0) -> Any:
        """Zero the elements below the diagonal-th diagonal of the last two dims."""
        return _triangle("triu", self, ~np.tri(self.shape[-2], self.shape[-1], diagonal - 1, dtype=bool)
                         if self.ndim >= 2 else None)

    # ---- reductions ----
    def var(self: _Self, dim: Any = None, unbiased: bool | None = None, keepdim: bool = False, *,
            correction: float | None = None, ddof: float | None = None, axis: Any = None,
            keepdims: bool | None = None) -> Any:
        """PyTorch's variance: sum((x - mean)^2) / (N - correction), correction=1 (Bessel's)
        by default; unbiased=False is correction=0, and numpy's ddof= is an alias of
        correction (its default differs: numpy's is 0). axis=/keepdims= as numpy."""
        if isinstance(dim, bool):  # x.var(False): PyTorch's var(unbiased) form
            dim, unbiased = None, dim
        if axis is not None:
            dim = axis
        keepdim = keepdim if keepdims is None else keepdims
        c = _correction("var", unbiased, correction, ddof)
        axes = _reduce_dims("var", dim, self.shape)
        n = self.numel() if axes is None else math.prod(self.shape[a] for a in axes)
        centred = self - self.mean(axes, keepdims=True)
        # N <= correction divides by 0: inf or NaN, as PyTorch (which also warns)
        return (centred * centred).sum(axes, keepdim) / max(n - c, 0.0)

    def std(self: _Self, dim: Any = None, unbiased: bool | None = None, keepdim: bool = False, *,
            correction: float | None = None, ddof: float | None = None, axis: Any = None,
            keepdims: bool | None = None) -> Any:
        """sqrt(var(...)), with var's arguments; the gradient of a zero std is 0, as PyTorch's."""
        return _root(self.var(dim, unbiased, keepdim, correction=correction, ddof=ddof, axis=axis,
                              keepdims=keepdims), 2)

    def norm(self: _Self, p: Any = "fro", dim: Any = None, keepdim: bool = False, dtype: Any = None) -> Any:
        """The vector p-norm over dim (all dims by default): 'fro' is 2; inf, -inf, 0 and
        any other number as torch.linalg.vector_norm. The gradient at a zero norm is 0."""
        x = self if dtype is None else self.to(dtype)
        if p == "fro":
            if dim is not None and isinstance(dim, (tuple, list)) and len(dim) > 2:
                raise ValueError(f"norm: p='fro' takes at most 2 dims, got dim={dim}")
            p = 2
        if isinstance(p, str) or not isinstance(p, numbers.Real):
            raise ValueError(f"norm: p={p!r} is not supported (p='fro' or a number; no matrix norms "
                             f"such as 'nuc')")
        return _vector_norm("norm", x, float(p), dim, keepdim)

    def cumsum(self: _Self, dim: int, dtype: Any = None) -> Any:
        """The inclusive prefix sum along dim (one C op; backward the prefix sum from the end)."""
        x = self if dtype is None else self.to(dtype)
        return _C.cumsum(x, dim)


def _roll1(x: Any, shift: int, d: int) -> Any:
    n = x.shape[d] if x.ndim else 1
    s = shift % n if n else 0
    if s == 0:
        return x.narrow(d, 0, n)  # a copy, like every other roll
    return _C.concat([x.narrow(d, n - s, s), x.narrow(d, 0, n - s)], d)


def _triangle(op: str, x: Any, mask: np.ndarray | None) -> Any:
    if mask is None:
        raise ValueError(f"{op}: needs a tensor of at least 2 dims, got shape {x.shape}")
    # where, not a product with the mask: inf above the diagonal gives 0, as PyTorch's
    return _C.where(np.broadcast_to(mask, x.shape), x, _zeros((), x))


# ---------------------------------------------------------------- functions

def vector_norm(x: Any, ord: Any = 2, dim: Any = None, keepdim: bool = False, *, dtype: Any = None) -> Any:
    """torch.linalg.vector_norm: the ord-norm of x over dim (all elements by default)."""
    if isinstance(ord, str) or not isinstance(ord, numbers.Real):
        raise ValueError(f"vector_norm: ord must be a number (inf, -inf, 0 included), got {ord!r}")
    return _vector_norm("vector_norm", x if dtype is None else x.to(dtype), float(ord), dim, keepdim)


_LETTERS = set(string.ascii_letters)


def einsum(equation: str, *operands: Any) -> Any:
    """torch.einsum: operands contracted as the subscripts say ('ij,jk->ik', 'bij,bjk->bik',
    'i,j->ij', 'ij->ji', 'ii->i', 'bhqd,bhkd->bhqk', '...ij,...jk->...ik', implicit output).

    Operands are contracted two at a time, left to right; each pair is permuted into
    [batch, free, contracted] x [batch, contracted, free] and multiplied by one matmul
    (or linear, which needs no transposed copy of the second operand), or by a
    broadcasting product when no index is contracted. Indices only one operand has are
    summed first; a repeated index within an operand takes its diagonal; size-1 dims
    broadcast, as PyTorch's. The plan depends on the equation and the shapes only, and is
    kept for the next call with the same ones (a training loop's)."""
    if len(operands) == 1 and isinstance(operands[0], (list, tuple)):
        operands = tuple(operands[0])
    for i, t in enumerate(operands):
        if not isinstance(t, _C.TensorBase):
            raise TypeError(f"einsum: operand {i} is a {type(t).__name__}, not a tensor")
    steps, result = _einsum_plan(equation, tuple(t.shape for t in operands))
    values = list(operands)
    for name, a, b, arg in steps:
        x = values[a]
        if name == "reshape":
            values.append(x.reshape(arg))
        elif name == "permute":
            values.append(x.permute(arg))
        elif name == "sum":
            values.append(x.sum(arg))
        elif name == "gather":
            values.append(_C.gather(x, arg))
        elif name == "mul":
            values.append(x * values[b])
        elif name == "matmul":
            values.append(x @ values[b])
        else:
            values.append(_C.linear(x, values[b]))
    x = values[result]
    return x.reshape(x.shape) if result < len(operands) else x  # 'ij->ij': a new tensor, not the operand


class _Planned:
    """A stand-in for a tensor while einsum plans: a shape, and each op on it appended to
    the plan's steps as (op, input, other input, argument). ref is its place among the
    values: the n operands first, then step k's result at n + k."""

    __slots__ = ("shape", "ref", "steps", "n")

    def __init__(self, shape: tuple[int, ...], ref: int, steps: list, n: int) -> None:
        self.shape, self.ref, self.steps, self.n = tuple(shape), ref, steps, n

    @property
    def ndim(self) -> int:
        return len(self.shape)

    def _step(self, name: str, shape: tuple[int, ...], other: Any = None, arg: Any = None) -> _Planned:
        self.steps.append((name, self.ref, None if other is None else other.ref, arg))
        return _Planned(shape, self.n + len(self.steps) - 1, self.steps, self.n)

    def reshape(self, shape: tuple[int, ...]) -> _Planned:
        return self._step("reshape", shape, arg=tuple(shape))

    def permute(self, order: list[int]) -> _Planned:
        return self._step("permute", tuple(self.shape[i] for i in order), arg=tuple(order))

    def sum(self, axes: tuple[int, ...]) -> _Planned:
        return self._step("sum", tuple(n for i, n in enumerate(self.shape) if i not in axes), arg=axes)

    def gather(self, rows: np.ndarray) -> _Planned:
        return self._step("gather", (len(rows),) + self.shape[1:], arg=rows)

    def __mul__(self, other: _Planned) -> _Planned:
        return self._step("mul", tuple(np.broadcast_shapes(self.shape, other.shape)), other)

    def __matmul__(self, other: _Planned) -> _Planned:  # equal batch dims, as _contract makes them
        return self._step("matmul", self.shape[:-1] + other.shape[-1:], other)

    def linear(self, weight: _Planned) -> _Planned:
        return self._step("linear", self.shape[:-1] + weight.shape[:1], weight)


@functools.lru_cache(maxsize=256)
def _einsum_plan(equation: str, shapes: tuple[tuple[int, ...], ...]) -> tuple[list, int]:
    """The steps that compute einsum(equation, operands of these shapes), and which value
    is the result."""
    steps: list = []
    operands = [_Planned(shape, i, steps, len(shapes)) for i, shape in enumerate(shapes)]
    subs, out = _parse_einsum(equation, operands)
    size: dict[str, int] = {}
    for i, (s, t) in enumerate(zip(subs, operands)):
        for c in set(s):
            sizes = {n for letter, n in zip(s, t.shape) if letter == c}
            if len(sizes) > 1:  # a diagonal needs equal sizes: no broadcasting within an operand
                raise ValueError(f"einsum: index {c!r} of {equation!r} is repeated in operand {i} over dims of "
                                 f"sizes {' and '.join(map(str, sorted(sizes)))} (shape {t.shape})")
        for letter, n in zip(s, t.shape):
            if size.get(letter, 1) != 1 and n not in (1, size[letter]):
                raise ValueError(f"einsum: index {letter!r} of {equation!r} has size {size[letter]} in one operand "
                                 f"and {n} in another (shapes {list(shapes)})")
            size[letter] = max(size.get(letter, 1), n) if n else 0
    terms = [_squeeze_broadcast(t, s, size) for t, s in zip(operands, subs)]
    terms = [_diagonals(t, s) for t, s in terms]
    x, s = terms[0]
    for k in range(1, len(terms)):
        keep = set(out).union(*(set(u) for _, u in terms[k + 1:]))
        x, s = _contract(x, s, terms[k][0], terms[k][1], keep, out if k == len(terms) - 1 else None)
    x, s = _sum_out(x, s, set(out))
    return steps, _permuted(x, s, list(out)).ref


def _parse_einsum(equation: str, operands: Sequence[Any]) -> tuple[list[list[str]], list[str]]:
    """Each operand's subscripts and the output's, as lists of letters, '...' made into
    letters the equation does not use (aligned from the right, as broadcasting)."""
    eq = equation.replace(" ", "")
    if eq.count("->") > 1:
        raise ValueError(f"einsum: {equation!r} has more than one '->'")
    lhs, arrow, rhs = eq.partition("->")
    terms = lhs.split(",")
    if len(terms) != len(operands):
        raise ValueError(f"einsum: {equation!r} has subscripts for {len(terms)} operands, "
                         f"but {len(operands)} tensors were given")
    for part in terms + ([rhs] if arrow else []):
        rest = part.replace("...", "", 1)
        bad = sorted(set(rest) - _LETTERS)
        if bad:
            raise ValueError(f"einsum: {equation!r} has unsupported characters {''.join(bad)!r} "
                             f"(subscripts are letters a-z, A-Z and one '...' per operand)")
    spare = [c for c in string.ascii_letters if c not in eq]
    ell_nd = max((t.ndim - (len(s) - 3) for s, t in zip(terms, operands) if "..." in s), default=0)
    ell = spare[:ell_nd]
    subs = []
    for i, (s, t) in enumerate(zip(terms, operands)):
        named = len(s) - 3 if "..." in s else len(s)
        if named > t.ndim or ("..." not in s and named != t.ndim):
            raise ValueError(f"einsum: operand {i} of {equation!r} has shape {tuple(t.shape)}, "
                             f"but its subscripts {s!r} name {named} dims")
        head, _, tail = s.partition("...")
        subs.append(list(head) + (ell[ell_nd - (t.ndim - named):] if "..." in s else []) + list(tail))
    if arrow:
        head, dots, tail = rhs.partition("...")
        out = list(head) + (ell if dots else []) + list(tail)
        if len(set(out)) != len(out):
            raise ValueError(f"einsum: the output of {equation!r} names an index more than once")
        missing = sorted(set(out) - set().union(*map(set, subs)))
        if missing:
            raise ValueError(f"einsum: the output of {equation!r} has indices {''.join(missing)!r} "
                             f"that no operand has")
    else:  # implicit: the broadcast dims, then the indices seen once, in alphabetical order
        letters = [c for s in subs for c in s]
        out = ell + sorted(c for c in set(letters) if letters.count(c) == 1 and c not in ell)
    return subs, out


def _squeeze_broadcast(x: Any, s: list[str], size: dict[str, int]) -> tuple[Any, list[str]]:
    """Drop the size-1 dims whose index is bigger elsewhere: broadcasting then needs no
    expansion (an index the operand lacks is one the other operands carry alone)."""
    keep = [i for i, c in enumerate(s) if not (x.shape[i] == 1 and size[c] != 1)]
    if len(keep) == len(s):
        return x, s
    return x.reshape(tuple(x.shape[i] for i in keep)), [s[i] for i in keep]


def _diagonals(x: Any, s: list[str]) -> tuple[Any, list[str]]:
    """Each index repeated within one operand ('ii') becomes its diagonal: the two dims
    moved to the front, merged, and the rows i*(n+1) gathered."""
    while len(set(s)) != len(s):
        c = next(c for c in s if s.count(c) > 1)
        i = s.index(c)
        j = s.index(c, i + 1)
        n = x.shape[i]
        rest = [k for k in range(len(s)) if k not in (i, j)]
        order = [i, j] + rest
        x = x if order == list(range(len(s))) else x.permute(order)
        x = x.reshape((n * n,) + tuple(x.shape[2:])).gather(np.arange(n) * (n + 1))
        s = [c] + [s[k] for k in rest]
    return x, s


def _permuted(x: Any, s: list[str], target: list[str]) -> Any:
    """x with its dims (named s, distinct) in the order of target; no copy when already so."""
    order = [s.index(c) for c in target]
    return x if order == list(range(len(order))) else x.permute(order)


def _sum_out(x: Any, s: list[str], keep: set) -> tuple[Any, list[str]]:
    axes = tuple(i for i, c in enumerate(s) if c not in keep)
    if not axes:
        return x, s
    return x.sum(axes), [c for c in s if c in keep]


def _reshaped(x: Any, shape: tuple[int, ...]) -> Any:
    return x if tuple(x.shape) == shape else x.reshape(shape)


def _contract(a: Any, sa: list[str], b: Any, sb: list[str], keep: set, out: list[str] | None
              ) -> tuple[Any, list[str]]:
    """a and b contracted over their common indices not in keep; the result's indices
    are [batch, free of a, free of b]. out: the final output's order, on the last pair."""
    a, sa = _sum_out(a, sa, keep | set(sb))
    b, sb = _sum_out(b, sb, keep | set(sa))
    rank = {c: i for i, c in enumerate(out or [])}

    def by_out(letters: list[str]) -> list[str]:
        return sorted(letters, key=lambda c: rank.get(c, len(rank)))  # stable: ties keep their order

    batch = by_out([c for c in sa if c in sb and c in keep])
    summed = [c for c in sa if c in sb and c not in keep]
    free_a = by_out([c for c in sa if c not in sb])
    free_b = by_out([c for c in sb if c not in sa])
    if out and free_a and free_b and rank[free_b[0]] < rank[free_a[0]]:
        a, sa, b, sb, free_a, free_b = b, sb, a, sa, free_b, free_a  # the output wants b's indices first
    dims = dict(zip(sa, a.shape)) | dict(zip(sb, b.shape))
    bshape = tuple(dims[c] for c in batch)
    ashape, b_shape = tuple(dims[c] for c in free_a), tuple(dims[c] for c in free_b)
    result = batch + free_a + free_b
    if not summed:  # no contraction: a broadcasting product [batch, free_a, 1..] * [batch, 1.., free_b]
        x = _reshaped(_permuted(a, sa, batch + free_a), bshape + ashape + (1,) * len(free_b))
        y = _reshaped(_permuted(b, sb, batch + free_b), bshape + (1,) * len(free_a) + b_shape)
        return x * y, result
    # the summed indices in b's order when that spares b its copy and a needs one anyway
    a_order = [c for c in sa if c in summed]
    b_order = [c for c in sb if c in summed]
    if sa != batch + free_a + a_order and sb in (batch + b_order + free_b, batch + free_b + b_order):
        a_order = b_order
    m, n, k = math.prod(ashape), math.prod(b_shape), math.prod(dims[c] for c in a_order)
    lead = (math.prod(bshape),) if batch else ()
    x = _reshaped(_permuted(a, sa, batch + free_a + a_order), lead + (m, k))
    if not batch and sb == free_b + a_order:  # b is [n, k] already: linear multiplies by its transpose
        z = x.linear(_reshaped(b, (n, k)))
    else:
        z = x @ _reshaped(_permuted(b, sb, batch + a_order + free_b), lead + (k, n))
    return _reshaped(z, bshape + ashape + b_shape), result
