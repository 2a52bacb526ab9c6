"""How the Trainer and the diagnostics name a loss and shape its targets: a name from
nn.functional, a function or a loss module, with integer class targets for the
classification losses that index and float values for the others."""
from __future__ import annotations

import numpy as np

from . import nn

_INDEX_TARGET_LOSSES = {"cross_entropy", "nll_loss"}  # targets are integer class indices
CLASSIFICATION_LOSSES = _INDEX_TARGET_LOSSES | {"binary_cross_entropy", "binary_cross_entropy_with_logits"}


def resolve_loss(loss):
    """(callable, name): a name from nn.functional, a function, or a loss module (whose
    name is that of the function it wraps, so CrossEntropyLoss() is 'cross_entropy')."""
    if isinstance(loss, str):
        fn = getattr(nn.functional, loss, None)
        if fn is None or loss not in {"mse_loss", "l1_loss", "huber_loss", *CLASSIFICATION_LOSSES}:
            raise ValueError(f"Trainer: unknown loss {loss!r}")
        return fn, loss
    name = getattr(loss, "__name__", None) or getattr(getattr(loss, "fn", None), "__name__", "")
    return loss, name


def loss_targets(loss_name: str, y) -> np.ndarray:
    """Targets as the loss wants them: int64 class indices, or float32 values."""
    return np.asarray(y).astype(np.int64 if loss_name in _INDEX_TARGET_LOSSES else np.float32, copy=False)


def batch_loss(loss_fn, loss_name: str, out, y):
    """The loss of outputs `out` against targets `y` (value targets take the outputs' shape)."""
    return loss_fn(out, y) if loss_name in _INDEX_TARGET_LOSSES else loss_fn(out, y.reshape(out.shape))
