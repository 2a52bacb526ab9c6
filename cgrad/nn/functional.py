"""Activations, dropout, the linear map and the losses, as functions (PyTorch names).

Losses take reduction='mean' | 'sum' | 'none'. cross_entropy is one fused C op (a stable
log-softmax and the negative log-likelihood; backward (softmax - onehot) / N); the others
are compositions of core ops, so their gradients come from the core's rules.
"""
from __future__ import annotations

import numpy as np

from .._C import cross_entropy, linear  # noqa: F401  (fused C ops, exposed as they are)
from ..tensor import Tensor, _as_tensor, _generator

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
    return _reduce(-input[np.arange(len(t)), t.astype(np.int64)], reduction)
