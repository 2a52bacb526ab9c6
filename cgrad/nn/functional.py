"""Activations, dropout, the linear map and the losses, as functions (PyTorch names).

Losses take reduction='mean' | 'sum' | 'none'. cross_entropy is one fused C op (a stable
log-softmax and the negative log-likelihood; backward (softmax - onehot) / N); the others
are compositions of core ops, so their gradients come from the core's rules.
"""
from __future__ import annotations

import numpy as np

from .._C import cross_entropy, linear  # noqa: F401  (fused C ops, exposed as they are)
from ..tensor import Tensor, _as_tensor, _generator, cat, from_numpy, full

_REDUCTIONS = ("mean", "sum", "none")


def _reduce(loss: Tensor, reduction: str) -> Tensor:
    if reduction == "mean":
        return loss.mean()
    if reduction == "sum":
        return loss.sum()
    if reduction == "none":
        return loss
    raise ValueError(f"reduction must be one of {_REDUCTIONS}, not {reduction!r}")


def _target(target, like: Tensor, op: str) -> Tensor:
    t = _as_tensor(target, like.dtype)
    if t.shape != like.shape:
        raise ValueError(f"{op}: input of shape {like.shape} and target of shape {t.shape} differ")
    return t


# ---- layers and activations ----
def relu(x: Tensor) -> Tensor:
    return x.relu()


def leaky_relu(x: Tensor, negative_slope: float = 0.01) -> Tensor:
    return x.leaky_relu(negative_slope)


def sigmoid(x: Tensor) -> Tensor:
    return x.sigmoid()


def tanh(x: Tensor) -> Tensor:
    return x.tanh()


def softplus(x: Tensor) -> Tensor:
    return x.softplus()


def silu(x: Tensor) -> Tensor:
    """x sigmoid(x) (also called swish)."""
    return x.silu()


def gelu(x: Tensor, approximate: str = "none") -> Tensor:
    """x Phi(x), exactly or (approximate='tanh') with PyTorch's tanh formula."""
    return x.gelu(approximate)


def elu(x: Tensor, alpha: float = 1.0) -> Tensor:
    return x.elu(alpha)


def selu(x: Tensor) -> Tensor:
    return x.selu()


def hardtanh(x: Tensor, min_val: float = -1.0, max_val: float = 1.0) -> Tensor:
    return x.hardtanh(min_val, max_val)


def softsign(x: Tensor) -> Tensor:
    return x.softsign()


def mish(x: Tensor) -> Tensor:
    """x tanh(softplus(x))."""
    return x.mish()


def logsigmoid(x: Tensor) -> Tensor:
    """log(sigmoid(x)) = -softplus(-x), stable for large |x|."""
    return -((-x).softplus())


def normalize(x: Tensor, p: float = 2.0, dim: int = 1, eps: float = 1e-12) -> Tensor:
    """x / max(||x||_p, eps) along dim, as PyTorch."""
    return x / x.norm(p, dim=dim, keepdim=True).clamp_min(eps)


def cosine_similarity(x1: Tensor, x2: Tensor, dim: int = 1, eps: float = 1e-8) -> Tensor:
    """sum(x1 x2) / (max(||x1||, eps) max(||x2||, eps)) along dim (PyTorch's eps per norm)."""
    n1 = x1.norm(dim=dim).clamp_min(eps)
    n2 = x2.norm(dim=dim).clamp_min(eps)
    return (x1 * x2).sum(dim) / (n1 * n2)


def one_hot(tensor, num_classes: int = -1) -> Tensor:
    """int64 one-hot rows for integer class indices: shape tensor.shape + (num_classes,)."""
    idx = np.asarray(tensor.numpy() if isinstance(tensor, Tensor) else tensor)
    if idx.dtype.kind not in "iu":
        raise TypeError(f"one_hot: needs an integer tensor of class indices, not {idx.dtype}")
    if num_classes < 0:
        num_classes = int(idx.max()) + 1 if idx.size else 0
    if idx.size and (idx.min() < 0 or idx.max() >= num_classes):
        raise ValueError(f"one_hot: class values must be in [0, {num_classes}), got {idx.min()}..{idx.max()}")
    return from_numpy((idx[..., None] == np.arange(num_classes)).astype(np.int64))


def pad(input: Tensor, pad, mode: str = "constant", value: float = 0.0) -> Tensor:
    """Constant padding, PyTorch's order: (left, right) of the last dim, then of the one
    before, ...; differentiable in input. Negative amounts crop."""
    if mode != "constant":
        raise ValueError(f"pad: only mode='constant' is supported, not {mode!r}")
    if len(pad) % 2 or len(pad) // 2 > input.ndim:
        raise ValueError(f"pad: {len(pad)} padding values do not fit a tensor of shape {input.shape}")
    out = input
    for i in range(len(pad) // 2):
        d = input.ndim - 1 - i
        lo, hi = int(pad[2 * i]), int(pad[2 * i + 1])
        if lo < 0 or hi < 0:
            out = out.narrow(d, max(-lo, 0), out.shape[d] - max(-lo, 0) - max(-hi, 0))
            lo, hi = max(lo, 0), max(hi, 0)
        parts = []
        for n in (lo, None, hi):
            if n is None:
                parts.append(out)
            elif n:
                shape = out.shape[:d] + (n,) + out.shape[d + 1:]
                parts.append(full(shape, value, dtype=out.dtype))
        out = cat(parts, d) if len(parts) > 1 else out
    return out


def softmax(x: Tensor, dim: int = -1) -> Tensor:
    return x.softmax(dim)


def log_softmax(x: Tensor, dim: int = -1) -> Tensor:
    return x.log_softmax(dim)


def dropout(x: Tensor, p: float = 0.5, training: bool = True) -> Tensor:
    """Inverted dropout: zero each element with probability p, scale the rest by 1/(1-p)."""
    if not 0 <= p <= 1:
        raise ValueError(f"dropout: p must be in [0, 1], got {p}")
    if not training or p == 0:
        return x
    if p == 1:
        return x * 0.0
    keep = (_generator().random(x.shape) >= p) / (1 - p)
    return x * keep.astype(x.dtype)


# ---- losses ----
def mse_loss(input: Tensor, target, reduction: str = "mean") -> Tensor:
    d = input - _target(target, input, "mse_loss")
    return _reduce(d * d, reduction)


def l1_loss(input: Tensor, target, reduction: str = "mean") -> Tensor:
    return _reduce((input - _target(target, input, "l1_loss")).abs(), reduction)


def smooth_l1_loss(input: Tensor, target, reduction: str = "mean", beta: float = 1.0) -> Tensor:
    """huber_loss / beta: 0.5 d^2 / beta where |d| < beta, else |d| - beta / 2."""
    if beta == 0:
        return l1_loss(input, target, reduction)
    return huber_loss(input, target, reduction, beta) / beta


def huber_loss(input: Tensor, target, reduction: str = "mean", delta: float = 1.0) -> Tensor:
    """0.5 d^2 where |d| < delta, else delta (|d| - delta / 2)."""
    # with m = min(|d|, delta): 0.5 m^2 + delta (|d| - m), all in ops, so that a replayed
    # step (cgrad.compile) recomputes which branch each element takes
    a = (input - _target(target, input, "huber_loss")).abs()
    m = a.clip(None, delta)
    return _reduce(m * m * 0.5 + (a - m) * delta, reduction)


def binary_cross_entropy(input: Tensor, target, reduction: str = "mean") -> Tensor:
    """-(y log p + (1 - y) log(1 - p)) on probabilities; logs clamped at -100 as PyTorch does."""
    y = _target(target, input, "binary_cross_entropy")
    p = input.numpy()
    if np.any((p < 0) | (p > 1)):
        raise ValueError("binary_cross_entropy: input values must be probabilities in [0, 1]")
    loss = -(y * input.log().clip(-100, None) + (1.0 - y) * (1.0 - input).log().clip(-100, None))
    return _reduce(loss, reduction)


def binary_cross_entropy_with_logits(input: Tensor, target, reduction: str = "mean") -> Tensor:
    """Stable for any logit: softplus(x) - x y (no log of a probability that underflows)."""
    y = _target(target, input, "binary_cross_entropy_with_logits")
    return _reduce(input.softplus() - input * y, reduction)


def nll_loss(input: Tensor, target, reduction: str = "mean") -> Tensor:
    """Negative log-likelihood of log-probabilities [N, C] at integer targets [N]."""
    t = np.asarray(target.numpy() if isinstance(target, Tensor) else target)
    if input.ndim != 2 or t.shape != (input.shape[0],):
        raise ValueError(f"nll_loss: input of shape {input.shape} needs targets of shape "
                         f"({input.shape[0] if input.ndim else '?'},), got {t.shape}")
    # -input[i, t_i] as cross_entropy - logsumexp: two C ops, and cross_entropy reads the
    # targets where cgrad.compile re-reads them (indexing with computed flat positions would
    # freeze the recorded targets)
    return _reduce(cross_entropy(input, target, "none") - input.logsumexp(1), reduction)


# ---- convolution ----

# ---- end of convolution ----


# ---- pooling ----
# Max, average and adaptive pooling over [N, C, L] / [N, C, H, W] (or unbatched [C, L] /
# [C, H, W]), with PyTorch's arguments, output sizes and errors. Each call becomes one
# PoolGeometry (cached by input shape and arguments) and one C op (csrc/pool.c).
from functools import lru_cache as _lru_cache

from .._C import PoolGeometry as _PoolGeometry, avg_pool as _avg_pool, max_pool as _max_pool


def _pool_tuple(value, n: int, name: str, op: str) -> tuple:
    """An int, or a sequence of 1 or n ints, as n ints."""
    if isinstance(value, (tuple, list)):
        if len(value) == 1:
            value = tuple(value) * n
        if len(value) != n or not all(isinstance(v, (int, np.integer)) for v in value):
            raise ValueError(f"{op}: {name} must be an int or a tuple of {n} ints, got {value!r}")
        return tuple(int(v) for v in value)
    if not isinstance(value, (int, np.integer)):
        raise ValueError(f"{op}: {name} must be an int or a tuple of {n} ints, got {value!r}")
    return (int(value),) * n


def _pool_input(op: str, shape: tuple, spatial: int, empty_channels: bool = False) -> None:
    """PyTorch's check: [C, *spatial] or [N, C, *spatial], only the batch (and, with
    empty_channels, the channels) may be empty."""
    rank = "2-D or 3-D" if spatial == 1 else "3-D or 4-D"
    batched = len(shape) == spatial + 2
    if len(shape) not in (spatial + 1, spatial + 2) or any(
            d == 0 for i, d in enumerate(shape[int(batched):]) if not (i == 0 and empty_channels)):
        raise ValueError(f"{op}: expected a {rank} (batched) input whose dims other than the batch are "
                         f"not empty, got shape {shape}")


def _pool_out_size(n: int, k: int, s: int, p: int, d: int, ceil_mode: bool) -> int:
    """PyTorch's output size; with ceil_mode the last window must start inside the input or
    the left padding."""
    out = (n + 2 * p - d * (k - 1) - 1 + (s - 1 if ceil_mode else 0)) // s + 1
    if ceil_mode and (out - 1) * s >= n + p:
        out -= 1
    return out


@_lru_cache(maxsize=256)
def _window_geometry(op: str, spatial: int, shape: tuple, kernel_size, stride, padding, dilation,
                     ceil_mode: bool, count_include_pad: bool, divisor) -> _PoolGeometry:
    _pool_input(op, shape, spatial)
    k = _pool_tuple(kernel_size, spatial, "kernel_size", op)
    s = k if stride is None or stride == () else _pool_tuple(stride, spatial, "stride", op)
    p = _pool_tuple(padding, spatial, "padding", op)
    d = _pool_tuple(dilation, spatial, "dilation", op)
    for name, values, low in (("kernel_size", k, 1), ("stride", s, 1), ("dilation", d, 1), ("padding", p, 0)):
        if min(values) < low:
            raise ValueError(f"{op}: {name} must be {'positive' if low else 'non-negative'}, got "
                             f"{values if spatial > 1 else values[0]}")
    for pi, ki in zip(p, k):
        if pi > ki // 2:
            raise ValueError(f"{op}: pad should be at most half of kernel size, but got padding={pi} and "
                             f"kernel_size={ki}")
    if divisor is not None and divisor == 0:
        raise ValueError(f"{op}: divisor must be not zero")
    size = shape[-spatial:]
    out = tuple(_pool_out_size(*a, ceil_mode) for a in zip(size, k, s, p, d))
    if min(out) < 1:
        raise ValueError(f"{op}: given an input of shape {shape}, the calculated output shape "
                         f"{shape[:-spatial] + out} is too small")
    return _PoolGeometry(spatial, size, out, k, s, p, d, count_include_pad, int(divisor or 0))


@_lru_cache(maxsize=256)
def _adaptive_geometry(op: str, spatial: int, shape: tuple, output_size, empty_channels: bool) -> _PoolGeometry:
    _pool_input(op, shape, spatial, empty_channels)
    size = shape[-spatial:]
    wanted = output_size if isinstance(output_size, (tuple, list)) else (output_size,) * spatial
    if len(wanted) != spatial or not all(o is None or isinstance(o, (int, np.integer)) for o in wanted):
        raise ValueError(f"{op}: output_size must be an int or a tuple of {spatial} ints or None, "
                         f"got {output_size!r}")
    out = tuple(n if o is None else int(o) for n, o in zip(size, wanted))
    if min(out) < 0:
        raise ValueError(f"{op}: output_size must be non-negative, got {output_size!r}")
    one = (1,) * spatial
    return _PoolGeometry(spatial, size, out, (0,) * spatial, one, (0,) * spatial, one, True, 0)


def _hashable(v):
    return tuple(v) if isinstance(v, list) else v


def _max_pool_nd(op, spatial, input, kernel_size, stride, padding, dilation, ceil_mode, return_indices):
    geom = _window_geometry(op, spatial, input.shape, _hashable(kernel_size), _hashable(stride),
                            _hashable(padding), _hashable(dilation), bool(ceil_mode), True, None)
    return _max_pool(input, geom, return_indices)


def max_pool1d(input: Tensor, kernel_size, stride=None, padding=0, dilation=1, ceil_mode: bool = False,
               return_indices: bool = False):
    """The max of each window of [N, C, L] (or [C, L]); with return_indices also (values,
    indices): each max's position along L (int64), as PyTorch's."""
    return _max_pool_nd("max_pool1d", 1, input, kernel_size, stride, padding, dilation, ceil_mode, return_indices)


def max_pool2d(input: Tensor, kernel_size, stride=None, padding=0, dilation=1, ceil_mode: bool = False,
               return_indices: bool = False):
    """The max of each window of [N, C, H, W] (or [C, H, W]); with return_indices also
    (values, indices): each max's flat index h * W + w in its plane (int64), as PyTorch's.
    Ties go to the first in scan order; a NaN in a window wins."""
    return _max_pool_nd("max_pool2d", 2, input, kernel_size, stride, padding, dilation, ceil_mode, return_indices)


def max_pool1d_with_indices(input: Tensor, kernel_size, stride=None, padding=0, dilation=1,
                            ceil_mode: bool = False, return_indices: bool = True):
    return max_pool1d(input, kernel_size, stride, padding, dilation, ceil_mode, return_indices=True)


def max_pool2d_with_indices(input: Tensor, kernel_size, stride=None, padding=0, dilation=1,
                            ceil_mode: bool = False, return_indices: bool = True):
    return max_pool2d(input, kernel_size, stride, padding, dilation, ceil_mode, return_indices=True)


def avg_pool1d(input: Tensor, kernel_size, stride=None, padding=0, ceil_mode: bool = False,
               count_include_pad: bool = True) -> Tensor:
    """The mean of each window of [N, C, L] (or [C, L]); the zero padding counts when
    count_include_pad (windows clipped at the padded end, as PyTorch)."""
    geom = _window_geometry("avg_pool1d", 1, input.shape, _hashable(kernel_size), _hashable(stride),
                            _hashable(padding), 1, bool(ceil_mode), bool(count_include_pad), None)
    return _avg_pool(input, geom)


def avg_pool2d(input: Tensor, kernel_size, stride=None, padding=0, ceil_mode: bool = False,
               count_include_pad: bool = True, divisor_override: int | None = None) -> Tensor:
    """The mean of each window of [N, C, H, W] (or [C, H, W]), or its sum over
    divisor_override when given."""
    geom = _window_geometry("avg_pool2d", 2, input.shape, _hashable(kernel_size), _hashable(stride),
                            _hashable(padding), 1, bool(ceil_mode), bool(count_include_pad), divisor_override)
    return _avg_pool(input, geom)


def adaptive_avg_pool1d(input: Tensor, output_size) -> Tensor:
    """The mean over windows [floor(i L / O), ceil((i + 1) L / O)) for O = output_size outputs."""
    return _avg_pool(input, _adaptive_geometry("adaptive_avg_pool1d", 1, input.shape, _hashable(output_size), True))


def adaptive_avg_pool2d(input: Tensor, output_size) -> Tensor:
    """Adaptive averages to output_size (an int, or (H, W) where None keeps that input size);
    output_size 1 is global average pooling."""
    return _avg_pool(input, _adaptive_geometry("adaptive_avg_pool2d", 2, input.shape, _hashable(output_size), True))


def adaptive_max_pool1d(input: Tensor, output_size, return_indices: bool = False):
    geom = _adaptive_geometry("adaptive_max_pool1d", 1, input.shape, _hashable(output_size), False)
    return _max_pool(input, geom, return_indices)


def adaptive_max_pool2d(input: Tensor, output_size, return_indices: bool = False):
    geom = _adaptive_geometry("adaptive_max_pool2d", 2, input.shape, _hashable(output_size), False)
    return _max_pool(input, geom, return_indices)


def adaptive_max_pool1d_with_indices(input: Tensor, output_size, return_indices: bool = True):
    return adaptive_max_pool1d(input, output_size, return_indices=True)


def adaptive_max_pool2d_with_indices(input: Tensor, output_size, return_indices: bool = True):
    return adaptive_max_pool2d(input, output_size, return_indices=True)

# ---- end of pooling ----


# ---- normalisation ----

# ---- end of normalisation ----
