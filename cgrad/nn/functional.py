"""Activations, dropout, the linear map and the losses, as functions (PyTorch names).

Also the convolution, pooling and normalisation layers' forms (conv1d/2d, max_pool*,
avg_pool*, adaptive_*, batch_norm, group_norm, dropout1d/2d, interpolate), each in its
section. Losses take reduction='mean' | 'sum' | 'none'. cross_entropy is one fused C op (a stable
log-softmax and the negative log-likelihood; backward (softmax - onehot) / N); the others
are compositions of core ops, so their gradients come from the core's rules.
"""
from __future__ import annotations

import math
import warnings
from functools import lru_cache as _lru_cache

import numpy as np

from .. import _C, _state
from .._C import PoolGeometry as _PoolGeometry, avg_pool as _avg_pool, max_pool as _max_pool
from .._C import batch_norm as _fused_batch_norm, gather as _gather
from .._C import cross_entropy, linear, nll_loss  # noqa: F401  (fused C ops, exposed as they are)
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


_PAD_MODES = ("constant", "reflect", "replicate", "circular")


def _pad_source(n: int, lo: int, hi: int, mode: str) -> np.ndarray:
    """The source index of each of the n + lo + hi padded positions along one dim."""
    i = np.arange(-lo, n + hi)
    if mode == "replicate":
        return np.clip(i, 0, n - 1)
    if mode == "circular":
        return i % n
    i = np.abs(i)  # reflect: about the first and the last element, which are not repeated
    return np.where(i > n - 1, 2 * (n - 1) - i, i)


def pad(input: Tensor, pad, mode: str = "constant", value: float = 0.0) -> Tensor:
    """PyTorch's F.pad: (left, right) of the last dim, then of the one before, ...;
    differentiable in input. 'constant' (negative amounts crop), and 'reflect', 'replicate'
    and 'circular' over the last 1-3 dims of a batched (or unbatched) input as PyTorch
    takes them, each one gather of the flat input, so backward adds into the sources."""
    if mode not in _PAD_MODES:
        raise ValueError(f"pad: mode must be one of {_PAD_MODES}, not {mode!r}")
    if len(pad) % 2 or len(pad) // 2 > input.ndim:
        raise ValueError(f"pad: {len(pad)} padding values do not fit a tensor of shape {input.shape}")
    if mode != "constant":
        k = len(pad) // 2
        if k > 3 or input.ndim not in (k + 1, k + 2):
            raise NotImplementedError(f"pad: mode {mode!r} pads the last 1-3 dims of a (batched) input with "
                                      f"1 or 2 dims before them; got {len(pad)} values for shape {input.shape}")
        pads = [(int(pad[2 * i]), int(pad[2 * i + 1])) for i in range(k)][::-1]  # first padded dim first
        spatial = input.shape[input.ndim - k:]
        for size, (lo, hi) in zip(spatial, pads):
            if lo < 0 or hi < 0:
                raise ValueError(f"pad: mode {mode!r} takes no negative padding, got {tuple(pad)}")
            if mode == "reflect" and (lo >= size or hi >= size):
                raise ValueError(f"pad: padding {tuple(pad)} must be smaller than the padded dims {spatial} "
                                 f"for mode 'reflect' (input shape {input.shape})")
            if mode == "circular" and (lo > size or hi > size):
                raise ValueError(f"pad: padding {tuple(pad)} must be at most the padded dims {spatial} "
                                 f"for mode 'circular' (input shape {input.shape})")
        lead = math.prod(input.shape[:input.ndim - k])
        stride = math.prod(spatial)
        pos = np.arange(lead) * stride
        sizes = []
        for size, (lo, hi) in zip(spatial, pads):
            stride //= size
            pos = pos[..., None] + _pad_source(size, lo, hi, mode) * stride
            sizes.append(size + lo + hi)
        return _gather(input.reshape(-1), pos.reshape(-1)).reshape(tuple(input.shape[:input.ndim - k]) + tuple(sizes))
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


# nll_loss(input, target, weight=None, size_average=None, ignore_index=-100, reduce=None,
# reduction='mean') is cross_entropy's C op on log-probabilities (no logsumexp), imported above


# ---- convolution ----
def _ntuple(value, n: int, what: str, op: str) -> tuple:
    """An int or a sequence of n ints as a tuple of n ints (PyTorch's _pair/_single)."""
    out = (value,) * n if isinstance(value, (int, np.integer)) else tuple(value)
    if len(out) != n or not all(isinstance(v, (int, np.integer)) for v in out):
        raise ValueError(f"{op}: {what} must be an int or {n} ints, got {value!r}")
    return tuple(int(v) for v in out)


def _conv_padding(padding, kernel: tuple, stride: tuple, dilation: tuple, op: str) -> list:
    """(before, after) per spatial dim from an int, ints, 'valid' or 'same' (which pads
    d (k - 1) in all, the odd one after, as PyTorch)."""
    n = len(kernel)
    if isinstance(padding, str):
        if padding == "valid":
            return [(0, 0)] * n
        if padding != "same":
            raise ValueError(f"{op}: padding must be 'valid', 'same', an int or {n} ints, not {padding!r}")
        if any(s != 1 for s in stride):
            raise ValueError(f"{op}: padding='same' is not supported for strided convolutions (stride {stride})")
        return [(d * (k - 1) // 2, d * (k - 1) - d * (k - 1) // 2) for k, d in zip(kernel, dilation)]
    pads = _ntuple(padding, n, "padding", op)
    if any(p < 0 for p in pads):
        raise ValueError(f"{op}: padding must be non-negative, got {pads}")
    return [(p, p) for p in pads]


def _conv(op: str, n: int, input, weight, bias, stride, padding, dilation, groups: int) -> Tensor:
    """conv1d (n = 1) and conv2d (n = 2): checks PyTorch's arguments and shapes once, then
    one C op (csrc/conv.c), which takes (height, width) pairs; a 1-D one has height 1."""
    for name, t in (("input", input), ("weight", weight), ("bias", bias)):
        if t is not None and not isinstance(t, Tensor):
            raise TypeError(f"{op}: {name} must be a cgrad Tensor, not {type(t).__name__}")
    if weight.ndim != n + 2:
        raise ValueError(f"{op}: weight must be {n + 2}-D (out_channels, in_channels/groups, *kernel), "
                         f"got shape {tuple(weight.shape)}")
    if input.ndim not in (n + 1, n + 2):
        raise ValueError(f"{op}: expected a {n + 1}-D (unbatched) or {n + 2}-D (batched) input, "
                         f"got shape {tuple(input.shape)}")
    if input.ndim == n + 1:
        if input.shape[0] != weight.shape[1] * groups:
            raise ValueError(f"{op}: a {n + 1}-D input {tuple(input.shape)} is read as unbatched (channels, "
                             f"*size) and has {input.shape[0]} channels where weight {tuple(weight.shape)} "
                             f"with groups={groups} expects {weight.shape[1] * groups}; for a batch of "
                             f"single-channel inputs use x.unsqueeze(1)")
        return _conv(op, n, input.unsqueeze(0), weight, bias, stride, padding, dilation, groups).squeeze(0)
    if not isinstance(groups, (int, np.integer)) or groups < 1:
        raise ValueError(f"{op}: groups must be a positive int, got {groups!r}")
    out_ch, in_per_group = weight.shape[0], weight.shape[1]
    if out_ch % groups:
        raise ValueError(f"{op}: groups={groups} does not divide the {out_ch} output channels of weight "
                         f"{tuple(weight.shape)}")
    if input.shape[1] != in_per_group * groups:
        raise ValueError(f"{op}: given groups={groups}, weight of size {tuple(weight.shape)} expects input "
                         f"{tuple(input.shape)} to have {in_per_group * groups} channels, but it has "
                         f"{input.shape[1]}")
    if bias is not None and tuple(bias.shape) != (out_ch,):
        raise ValueError(f"{op}: bias of shape {tuple(bias.shape)} does not fit weight {tuple(weight.shape)} "
                         f"(expected ({out_ch},))")
    kernel = tuple(weight.shape[2:])
    stride, dilation = _ntuple(stride, n, "stride", op), _ntuple(dilation, n, "dilation", op)
    if any(s < 1 for s in stride) or any(d < 1 for d in dilation):
        raise ValueError(f"{op}: stride and dilation must be positive, got stride {stride}, dilation {dilation}")
    pads = _conv_padding(padding, kernel, stride, dilation, op)
    sizes = tuple(input.shape[2:])
    padded = tuple(s + lo + hi for s, (lo, hi) in zip(sizes, pads))
    reach = tuple(d * (k - 1) + 1 for k, d in zip(kernel, dilation))
    if any(p < r for p, r in zip(padded, reach)):
        raise ValueError(f"{op}: the padded input {padded} of input {tuple(input.shape)} is smaller than the "
                         f"kernel {kernel} (dilated: {reach})")
    out = tuple((p - r) // s + 1 for p, r, s in zip(padded, reach, stride))
    per_dim = [(s, lo, d, o) for s, (lo, _), d, o in zip(stride, pads, dilation, out)]
    if n == 1:
        per_dim.insert(0, (1, 0, 1, 1))  # a 1-D convolution's height: stride 1, no padding, size 1
    s2, pad2, d2, out2 = zip(*per_dim)
    return _C.conv(input, weight, bias, s2, pad2, d2, int(groups), out2)


def conv1d(input: Tensor, weight: Tensor, bias: Tensor | None = None, stride=1, padding=0, dilation=1,
           groups: int = 1) -> Tensor:
    """1-D convolution over (N, C, L) or (C, L) input, weight (out, in/groups, k), PyTorch's semantics."""
    return _conv("conv1d", 1, input, weight, bias, stride, padding, dilation, groups)


def conv2d(input: Tensor, weight: Tensor, bias: Tensor | None = None, stride=1, padding=0, dilation=1,
           groups: int = 1) -> Tensor:
    """2-D convolution over (N, C, H, W) or (C, H, W) input, weight (out, in/groups, kh, kw)."""
    return _conv("conv2d", 2, input, weight, bias, stride, padding, dilation, groups)


# ---- end of convolution ----


# ---- pooling ----
# Max, average and adaptive pooling over [N, C, L] / [N, C, H, W] (or unbatched [C, L] /
# [C, H, W]), with PyTorch's arguments, output sizes and errors. Each call becomes one
# PoolGeometry (cached by input shape and arguments) and one C op (csrc/pool.c).


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
# batch norm is one fused C op (csrc/norm.c): forward, the closed-form backward, and in
# training the in-place update of the running statistics, which a replayed step redoes


def batch_norm(input: Tensor, running_mean: Tensor | None, running_var: Tensor | None, weight: Tensor | None = None,
               bias: Tensor | None = None, training: bool = False, momentum: float = 0.1, eps: float = 1e-5) -> Tensor:
    """(x - mean) / sqrt(var + eps) * weight + bias per channel of x (N, C, *): the batch's
    mean and biased variance in training, which also updates running_mean and running_var
    in place (when given) with the unbiased variance; the running statistics otherwise."""
    return _batch_norm(input, running_mean, running_var, weight, bias, training, momentum, eps, None)


def _batch_norm(input, running_mean, running_var, weight, bias, training, momentum, eps, num_batches_tracked):
    """batch_norm, and the BatchNorm layers' count of batches (their momentum=None averages over it)."""
    if training and input.ndim >= 2 and input.shape[0] * math.prod(input.shape[2:]) == 1:
        raise ValueError(f"batch_norm: Expected more than 1 value per channel when training, got input of shape "
                         f"{input.shape}")
    return _fused_batch_norm(input, weight, bias, running_mean, running_var, num_batches_tracked, training, momentum,
                             eps)


def _per_channel(t: Tensor, ndim: int) -> Tensor:
    """A (C,) tensor shaped (1, C, 1, ...) to broadcast over an (N, C, *) input of ndim dims."""
    return t.reshape((1, t.shape[0]) + (1,) * (ndim - 2))


def group_norm(input: Tensor, num_groups: int, weight: Tensor | None = None, bias: Tensor | None = None,
               eps: float = 1e-5) -> Tensor:
    """Each sample's channels in num_groups groups, each normalised by its own mean and biased
    variance, then weight and bias per channel. A (sample, group) pair is a channel of the
    fused batch norm over a batch of one: x (N, C, *) seen as (1, N * num_groups, rest)."""
    if input.ndim < 2:
        raise ValueError(f"group_norm: expected an input of at least 2 dims (N, C, ...), got shape {input.shape}")
    n, c = input.shape[:2]
    if num_groups <= 0 or c % num_groups:
        raise ValueError(f"group_norm: Expected number of channels in input to be divisible by num_groups, but got "
                         f"input of shape {input.shape} and num_groups={num_groups}")
    for name, t in (("weight", weight), ("bias", bias)):
        if t is not None and t.shape != (c,):
            raise ValueError(f"group_norm: {name} of shape {t.shape} does not fit the input of shape {input.shape} "
                             f"(expected ({c},): one value per channel)")
    groups = input.reshape(1, n * num_groups, (c // num_groups) * math.prod(input.shape[2:]))
    out = _fused_batch_norm(groups, None, None, None, None, None, True, 0.0, eps).reshape(input.shape)
    if weight is not None:
        out = out * _per_channel(weight, input.ndim)
    if bias is not None:
        out = out + _per_channel(bias, input.ndim)
    return out


def _channel_dropout(op: str, x: Tensor, p: float, training: bool, inplace: bool, mask_shape) -> Tensor:
    """Inverted dropout of whole channels: x times a 0 or 1/(1-p) per entry of mask_shape
    (x's shape with 1 for the dims each channel spans)."""
    if not 0 <= p <= 1:
        raise ValueError(f"{op}: dropout probability has to be between 0 and 1, but got {p}")
    if inplace:
        raise NotImplementedError(f"{op}: inplace=True is not supported; cgrad's dropout makes a new tensor")
    if not training or p == 0:
        return x
    if p == 1:
        return x * 0.0
    keep = (_generator().random(mask_shape) >= p) / (1 - p)
    return x * keep.astype(x.dtype)


def dropout1d(input: Tensor, p: float = 0.5, training: bool = True, inplace: bool = False) -> Tensor:
    """Zero each channel of (N, C, L) or (C, L) with probability p, scale the rest by 1/(1-p)."""
    if input.ndim not in (2, 3):
        raise RuntimeError(f"dropout1d: Expected 2D or 3D input, but received a {input.ndim}D input of shape "
                           f"{input.shape}")
    return _channel_dropout("dropout1d", input, p, training, inplace, input.shape[:-1] + (1,))


def dropout2d(input: Tensor, p: float = 0.5, training: bool = True, inplace: bool = False) -> Tensor:
    """Zero each channel of (N, C, H, W) with probability p, scale the rest by 1/(1-p). A 3-D
    input is taken as (N, C, L), as PyTorch does today (with its warning)."""
    if input.ndim not in (3, 4):
        raise RuntimeError(f"dropout2d: Expected 3D or 4D input, but received a {input.ndim}D input of shape "
                           f"{input.shape}")
    if input.ndim == 3:
        warnings.warn("dropout2d: Received a 3D input to dropout2d and assuming that channel-wise 1D dropout "
                      "behavior is desired - input is interpreted as shape (N, C, L), where C is the channel dim. "
                      "Use dropout1d for that.", stacklevel=2)
    return _channel_dropout("dropout2d", input, p, training, inplace, input.shape[:2] + (1,) * (input.ndim - 2))


def _nearest_source(n_in: int, n_out: int, scale: float | None, shortcuts: bool) -> np.ndarray:
    """PyTorch's 'nearest' source index of each output index: min(floor(dst * s), n_in - 1),
    s = 1 / scale_factor when one was given, else n_in / n_out, in float32 as PyTorch's
    kernel computes it (exact arithmetic would differ from it, from 2 -> 82 on). Its 2-D
    kernel (shortcuts) takes an output size equal to the input's as a copy and twice it as
    dst // 2, whatever the scale factor says (scale_factor=2.01 on 5 columns gives 10 of them)."""
    if shortcuts and n_out in (n_in, 2 * n_in):
        return np.arange(n_out) // (n_out // n_in)
    s = np.float32(1.0 / scale) if scale is not None and scale > 0 else np.float32(n_in) / np.float32(n_out)
    return np.minimum(np.floor(np.arange(n_out, dtype=np.float32) * s).astype(np.int64), n_in - 1)


def interpolate(input: Tensor, size=None, scale_factor=None, mode: str = "nearest", align_corners=None,
                recompute_scale_factor=None, antialias: bool = False) -> Tensor:
    """Resize the spatial dims of (N, C, L) or (N, C, H, W) to `size`, or by `scale_factor`
    (output floor(in * scale_factor)); mode 'nearest' only: output[i] = input[floor(i * s)].
    One gather of the flat input, so backward adds each output's gradient to its source."""
    if mode != "nearest":
        raise NotImplementedError(f"interpolate: mode {mode!r} is not implemented; cgrad has mode='nearest' only")
    if align_corners is not None:
        raise ValueError("interpolate: align_corners option can only be set with the interpolating modes: "
                         "linear | bilinear | bicubic | trilinear")
    if antialias:
        raise ValueError("interpolate: the anti-alias option is restricted to bilinear and bicubic modes")
    if input.ndim not in (3, 4):
        raise NotImplementedError(f"interpolate: only 3-D (N, C, L) and 4-D (N, C, H, W) inputs are supported, "
                                  f"got shape {input.shape}")
    spatial = input.shape[2:]
    dims = len(spatial)
    if (size is None) == (scale_factor is None):
        raise ValueError("interpolate: " + ("only one of size or scale_factor should be defined" if size is not None
                                            else "either size or scale_factor should be defined"))
    if size is not None:
        if recompute_scale_factor:
            raise ValueError("interpolate: recompute_scale_factor is not meaningful with an explicit size")
        sizes = list(size) if isinstance(size, (list, tuple)) else [size] * dims
        scales: list = [None] * dims
        what = f"output size of {size}"
    else:
        scales = list(scale_factor) if isinstance(scale_factor, (list, tuple)) else [scale_factor] * dims
        sizes = [int(n * float(f)) for n, f in zip(spatial, scales)] if len(scales) == dims else []
        if recompute_scale_factor:
            scales = [None] * dims
        what = f"scale_factor of {scale_factor}"
    if len(sizes) != dims:
        raise ValueError(f"interpolate: input and output must have the same number of spatial dimensions, but got "
                         f"input of shape {input.shape} and {what}")
    if any(int(o) != o or o <= 0 for o in sizes) or 0 in spatial:
        raise ValueError(f"interpolate: input and output sizes should be greater than 0, but got input of shape "
                         f"{input.shape} and output size {tuple(sizes)}")
    sizes = [int(o) for o in sizes]
    # the flat position of each output element's source: rows (n, c) times the spatial offsets
    pos = np.arange(input.shape[0] * input.shape[1]) * math.prod(spatial)
    stride = math.prod(spatial)
    for n_in, n_out, scale in zip(spatial, sizes, scales):
        stride //= n_in
        pos = pos[..., None] + _nearest_source(n_in, n_out, scale, dims == 2) * stride
    return _gather(input.reshape(-1), pos.reshape(-1)).reshape(tuple(input.shape[:2]) + tuple(sizes))


# layer norm and RMS norm are one fused C op each (csrc/norm.c), exposed as they are:
# layer_norm(input, normalized_shape, weight=None, bias=None, eps=1e-5) and
# rms_norm(input, normalized_shape, weight=None, eps=None)
layer_norm = _C.layer_norm
rms_norm = _C.rms_norm

# ---- end of normalisation ----

# ---- embedding and losses ----

# embedding(input, weight, padding_idx=None, max_norm=None, norm_type=2.0, scale_grad_by_freq=False,
# sparse=False): one C op (csrc/embedding.c), exposed as it is
embedding = _C.embedding

# more of PyTorch's activations, as composites of the C ops (so their gradients, second
# derivatives and replays come from those ops' rules). An indicator [x > t] is
# relu(x - t).sign() of x detached: C ops (replayed by cgrad.compile, where a comparison
# would be numpy and refuse to run while it records) outside the graph, as a mask is.
def _above(x: Tensor, t: float) -> Tensor:
    return (x.detach() - t).relu().sign()


def relu6(input: Tensor, inplace: bool = False) -> Tensor:
    """min(max(0, x), 6)."""
    return input.hardtanh(0.0, 6.0)


def hardsigmoid(input: Tensor, inplace: bool = False) -> Tensor:
    """relu6(x + 3) / 6."""
    return (input + 3.0).hardtanh(0.0, 6.0) / 6.0


def hardswish(input: Tensor, inplace: bool = False) -> Tensor:
    """x relu6(x + 3) / 6."""
    return input * hardsigmoid(input)


def celu(input: Tensor, alpha: float = 1.0, inplace: bool = False) -> Tensor:
    """max(0, x) + min(0, alpha (exp(x / alpha) - 1)) = alpha elu(x / alpha)."""
    if alpha == 0:
        raise ValueError("celu: alpha must not be 0")
    return (input / alpha).elu(1.0) * alpha


def prelu(input: Tensor, weight: Tensor) -> Tensor:
    """max(0, x) + weight min(0, x), weight one value or one per channel (dim 1; dim 0 of a
    1-D input)."""
    n = weight.numel()
    if n != 1:
        axis = 0 if input.ndim == 1 else 1
        if input.ndim == 0 or input.shape[axis] != n:
            raise ValueError(f"prelu: weight of shape {weight.shape} does not fit the input of shape {input.shape} "
                             f"(one value, or one per channel)")
        weight = weight.reshape((n,) + (1,) * (input.ndim - axis - 1))
    elif weight.ndim:
        weight = weight.reshape(())
    return input.relu() - weight * (-input).relu()


def glu(input: Tensor, dim: int = -1) -> Tensor:
    """a sigmoid(b), a and b the halves of input along dim."""
    if input.ndim == 0 or input.shape[dim] % 2:
        raise ValueError(f"glu: halving dimension must be even, but dimension {dim} of the input of shape "
                         f"{input.shape} is {input.shape[dim] if input.ndim else '()'}")
    half = input.shape[dim] // 2
    return input.narrow(dim, 0, half) * input.narrow(dim, half, half).sigmoid()


def _implicit_dim(ndim: int) -> int:
    """PyTorch's softmax dim when none is given (deprecated there): 0 for 0-, 1- and 3-D input, else 1."""
    return 0 if ndim in (0, 1, 3) else 1


def softmin(input: Tensor, dim: int | None = None) -> Tensor:
    """softmax(-x) along dim."""
    return (-input).softmax(_implicit_dim(input.ndim) if dim is None else dim)


def threshold(input: Tensor, threshold: float, value: float, inplace: bool = False) -> Tensor:
    """x where x > threshold, value elsewhere."""
    keep = _above(input, threshold)
    return (input - value) * keep + value


def tanhshrink(input: Tensor) -> Tensor:
    """x - tanh(x)."""
    return input - input.tanh()


def softshrink(input: Tensor, lambd: float = 0.5) -> Tensor:
    """x - lambd above lambd, x + lambd below -lambd, 0 between."""
    if lambd < 0:
        raise ValueError(f"softshrink: lambda must be greater or equal to 0, but found to be {lambd}")
    return input - input.clip(-lambd, lambd)


def hardshrink(input: Tensor, lambd: float = 0.5) -> Tensor:
    """x where |x| > lambd, 0 elsewhere: softshrink's x -+ lambd with the lambd added back, so
    that the gradient is clip's indicator, read from x as it is at backward."""
    return softshrink(input, lambd) + _above(input.abs(), lambd) * input.detach().sign() * lambd

# ---- end of embedding and losses ----

# ---- recurrent ----

# ---- end of recurrent ----

# ---- attention ----
# scaled dot-product attention is one fused C op (csrc/attention.c) over blocks of equal
# batch dims; dropout on the weights (dropout_p > 0) takes the composite path


def _attention_operands(query: Tensor, key: Tensor, value: Tensor):
    """query, key and value with their batch dims broadcast to one shape (PyTorch's rule)."""
    op = "scaled_dot_product_attention"
    if query.ndim < 2 or key.ndim < 2 or value.ndim < 2:
        raise ValueError(f"{op}: query, key and value need at least 2 dims (..., L, E), got query {query.shape}, "
                         f"key {key.shape}, value {value.shape}")
    try:
        batch = tuple(np.broadcast_shapes(query.shape[:-2], key.shape[:-2], value.shape[:-2]))
    except ValueError:
        raise ValueError(f"{op}: the batch dims of query {query.shape}, key {key.shape} and value {value.shape} "
                         f"cannot be broadcast together") from None
    return tuple(t if t.shape[:-2] == batch else t.expand(batch + t.shape[-2:]) for t in (query, key, value))


def _additive_mask(attn_mask, like: Tensor):
    """attn_mask as scores to add: a bool mask (True: take part) becomes a constant 0 / -inf
    of like's dtype (a constant of the step, as masked_fill's mask); a float one is used as
    it is (converted to like's dtype), so it gets a gradient when it needs one."""
    op = "scaled_dot_product_attention"
    if attn_mask is None:
        return None
    if not isinstance(attn_mask, Tensor):
        attn_mask = from_numpy(np.array(attn_mask))
    if attn_mask.dtype == np.bool_:
        return from_numpy(np.where(attn_mask.numpy(), 0.0, -np.inf).astype(like.dtype))
    if attn_mask.dtype not in (np.float32, np.float64):
        raise TypeError(f"{op}: Expected attn_mask dtype to be bool or float or to match query dtype, but got "
                        f"attn_mask of dtype {attn_mask.dtype} and shape {attn_mask.shape}, query of dtype "
                        f"{like.dtype}")
    return attn_mask if attn_mask.dtype == like.dtype else attn_mask.to(like.dtype)


def scaled_dot_product_attention(query: Tensor, key: Tensor, value: Tensor, attn_mask=None, dropout_p: float = 0.0,
                                 is_causal: bool = False, scale: float | None = None,
                                 enable_gqa: bool = False) -> Tensor:
    """softmax(query key^T scale + mask) value, query (..., L, E), key (..., S, E), value
    (..., S, Ev) -> (..., L, Ev); batch dims broadcast. attn_mask: bool (True: takes part) or
    float (added to the scores), broadcastable to (..., L, S); is_causal: query i attends
    keys 0..i (top-left aligned); scale: 1/sqrt(E) unless given. A fully masked row gives 0
    (PyTorch's CPU kernels do). dropout_p > 0 drops attention weights (always: as PyTorch,
    the function has no training flag); dropout_p == 0 is one fused C op."""
    return _sdpa(query, key, value, attn_mask, dropout_p, is_causal, scale, enable_gqa, None)


def _sdpa(query, key, value, attn_mask, dropout_p, is_causal, scale, enable_gqa, entropy):
    """scaled_dot_product_attention; entropy (MultiheadAttention's): a buffer of prod(batch)
    values the fused op writes each block's mean row entropy into."""
    op = "scaled_dot_product_attention"
    if enable_gqa:
        raise NotImplementedError(f"{op}: enable_gqa=True (grouped-query attention) is not implemented")
    if attn_mask is not None and is_causal:
        raise ValueError(f"{op}: give attn_mask or is_causal=True, not both (attn_mask of shape "
                         f"{tuple(np.shape(attn_mask))})")
    if not 0 <= dropout_p <= 1:
        raise ValueError(f"{op}: dropout_p must be in [0, 1], got {dropout_p}")
    query, key, value = _attention_operands(query, key, value)
    if query.shape[-1] != key.shape[-1] or key.shape[-2] != value.shape[-2]:
        raise ValueError(f"{op}: query (..., L, E), key (..., S, E) and value (..., S, Ev) do not fit: query "
                         f"{query.shape}, key {key.shape}, value {value.shape}")
    mask = _additive_mask(attn_mask, query)
    if scale is None:  # (E = 0: every score is 0, whatever the scale)
        scale = 1.0 / math.sqrt(query.shape[-1]) if query.shape[-1] else 1.0
    scale = float(scale)
    if _state.attention_watchers and entropy is None:  # health() or profile() is watching: the op fills it
        entropy = _C.empty((math.prod(query.shape[:-2]),), query.dtype)
    out = _sdpa_op(query, key, value, mask, dropout_p, is_causal, scale, entropy)
    for watch in _state.attention_watchers:  # diagnostics.health, profile (profiler.SequenceWatch)
        watch(query.shape, entropy, _uniform_entropy(mask, is_causal, query.shape, key.shape[-2]))
    return out


def _uniform_entropy(mask, is_causal, qshape, S) -> np.ndarray:
    """The entropy (nats) of uniform attention over each row's allowed keys, averaged over
    the rows of each (batch, head) block: what a head's entropy is measured against."""
    L = qshape[-2]
    if is_causal:
        allowed = np.minimum(np.arange(1, L + 1), S)[:, None]
    elif mask is None:
        allowed = np.full((L, 1), S)
    else:
        allowed = np.isfinite(mask.numpy()).sum(-1, keepdims=True)
    with np.errstate(divide="ignore"):
        per_row = np.where(allowed > 0, np.log(np.maximum(allowed, 1)), np.nan)
    per_block = np.nanmean(np.broadcast_to(per_row[..., 0], tuple(qshape[:-2]) + (L,)), axis=-1)
    return np.broadcast_to(per_block, tuple(qshape[:-2])).reshape(-1)


def _sdpa_op(query, key, value, mask, dropout_p, is_causal, scale, entropy):
    """The attention itself: the fused C op, or with dropout the composite of ops."""
    if dropout_p > 0:
        scores = (query @ key.transpose(-2, -1)) * scale
        if is_causal:
            n, s = query.shape[-2], key.shape[-2]
            mask = from_numpy(np.where(np.tril(np.ones((n, s), bool)), 0.0, -np.inf).astype(query.dtype))
        weights = (scores if mask is None else scores + mask).softmax(-1)
        if entropy is not None:  # this path draws dropout, so it never replays: numpy may fill it
            p = weights.numpy().astype(np.float64)
            plogp = np.where(p > 0, p * np.log(np.where(p > 0, p, 1.0)), 0.0)
            entropy.numpy()[...] = -plogp.sum(-1).mean(-1).reshape(-1)
        return dropout(weights, dropout_p, training=True) @ value
    return _C.scaled_dot_product_attention(query, key, value, mask, is_causal, scale, entropy)


# ---- end of attention ----
