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

# ---- end of pooling ----


# ---- normalisation ----
# batch norm is one fused C op (csrc/norm.c): forward, the closed-form backward, and in
# training the in-place update of the running statistics, which a replayed step redoes
import math  # noqa: E402

from .._C import batch_norm as _fused_batch_norm  # noqa: E402


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

# ---- end of normalisation ----
