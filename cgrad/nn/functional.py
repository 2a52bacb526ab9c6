"""Activations, dropout, the linear map and the losses, as functions (PyTorch names).

Losses take reduction='mean' | 'sum' | 'none'. cross_entropy is one fused C op (a stable
log-softmax and the negative log-likelihood; backward (softmax - onehot) / N); the others
are compositions of core ops, so their gradients come from the core's rules.
"""
from __future__ import annotations

import numpy as np

from .. import _C
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

# ---- end of pooling ----


# ---- normalisation ----

# ---- end of normalisation ----
