"""Grad mode switches and gradcheck."""
from __future__ import annotations

import copy
import functools

import numpy as np

from . import _C, _state
from .tensor import Tensor, float64


class set_grad_enabled:
    """Turn recording on or off: as a call, a context manager or a decorator."""

    def __init__(self, mode: bool):
        self.prev = _C.is_grad_enabled()
        self.mode = bool(mode)
        _C.set_grad_enabled(self.mode)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        _C.set_grad_enabled(self.prev)
        return False


class no_grad:
    """`with cgrad.no_grad():` (or `@cgrad.no_grad()`): ops inside record nothing on the tape."""

    mode = False

    def __enter__(self):
        self.prev = _C.is_grad_enabled()
        _C.set_grad_enabled(self.mode)
        return self

    def __exit__(self, *exc):
        _C.set_grad_enabled(self.prev)
        return False

    def __call__(self, fn):
        @functools.wraps(fn)
        def wrapper(*args, **kwargs):
            with copy.copy(self):  # a fresh context per call (it keeps the mode to restore)
                return fn(*args, **kwargs)
        return wrapper


class enable_grad(no_grad):
    """Turn recording back on inside a no_grad block."""

    mode = True


class inference_mode(no_grad):
    """PyTorch's inference mode, which for cgrad is no_grad: `with cgrad.inference_mode():`,
    `@cgrad.inference_mode()`, or inference_mode(False) to leave recording as it is."""

    def __init__(self, mode: bool = True):
        self.enabled = mode

    def __enter__(self):
        self.mode = not self.enabled and _C.is_grad_enabled()  # the grad mode inside the block
        return super().__enter__()


is_grad_enabled = _C.is_grad_enabled


def set_anomaly(enabled: bool) -> None:
    """Check every op's output and every gradient for NaN/Inf and raise at the first one,
    naming the op, its input shapes, its layer and the line of Python that created it.
    Slows everything down: use it to find a NaN, not for training."""
    if bool(enabled) != _C.is_anomaly_enabled():
        _state.scoping_changed(1 if enabled else -1)  # name layers in the reports
    _C.set_anomaly(enabled)


class detect_anomaly:
    """`with cgrad.detect_anomaly():` turns on set_anomaly(True) for the block."""

    def __enter__(self):
        self.prev = _C.is_anomaly_enabled()
        set_anomaly(True)
        return self

    def __exit__(self, *exc):
        set_anomaly(self.prev)
        return False


class GradcheckError(RuntimeError):
    """Analytic and numerical gradients disagree."""


def gradcheck(fn, inputs, eps: float = 1e-6, atol: float = 1e-5, rtol: float = 1e-3,
              raise_exception: bool = True, seed: int = 0) -> bool:
    """Compare the gradients backward computes with central finite differences.

    fn(*inputs) must return a tensor. Inputs that require grad must be float64. The output
    is contracted with a fixed random upstream gradient v (so a rule that ignores the
    upstream gradient cannot pass), and for each input element
        analytic = d(sum(v * fn))/dx   from backward
        numeric  = (sum(v * fn(x + eps)) - sum(v * fn(x - eps))) / (2 eps)
    must agree within atol + rtol * |numeric|. On a mismatch raises GradcheckError naming
    the input and the element (or returns False when raise_exception is False).
    """
    if isinstance(inputs, Tensor):
        inputs = (inputs,)
    inputs = tuple(inputs)
    checked = [i for i, x in enumerate(inputs) if isinstance(x, Tensor) and x.requires_grad]
    if not checked:
        raise ValueError("gradcheck: no input requires grad")
    for i in checked:
        if inputs[i].dtype != float64:
            raise TypeError(f"gradcheck: input {i} is {inputs[i].dtype}; finite differences "
                            f"need float64 inputs")
        if not inputs[i].is_leaf:
            raise ValueError(f"gradcheck: input {i} is not a leaf tensor")
    saved = [inputs[i].grad for i in checked]
    try:
        out = fn(*inputs)
        if not isinstance(out, Tensor):
            raise TypeError("gradcheck: fn must return a cgrad Tensor")
        v = np.random.default_rng(seed).uniform(0.5, 1.5, out.shape) * \
            np.random.default_rng(seed + 1).choice([-1.0, 1.0], out.shape)
        v = np.asarray(v, dtype=out.dtype)
        for i in checked:
            inputs[i].grad = None
        if out.requires_grad:
            out.backward(v)
        analytic = [np.zeros(inputs[i].shape) if inputs[i].grad is None
                    else inputs[i].grad.numpy().copy() for i in checked]

        def f():
            with no_grad():
                return float(np.sum(np.asarray(fn(*inputs), dtype=np.float64) * v))

        for slot, i in enumerate(checked):
            x = inputs[i].numpy()  # shares memory: perturb in place
            for idx in np.ndindex(x.shape):
                orig = x[idx]
                x[idx] = orig + eps
                fp = f()
                x[idx] = orig - eps
                fm = f()
                x[idx] = orig
                numeric = (fp - fm) / (2 * eps)
                a = analytic[slot][idx]
                if not abs(a - numeric) <= atol + rtol * abs(numeric):
                    if raise_exception:
                        raise GradcheckError(
                            f"gradcheck: input {i} (shape {x.shape}), element {idx}: analytic "
                            f"gradient {a!r} but numerical {numeric!r}")
                    return False
        return True
    finally:
        for slot, i in enumerate(checked):
            inputs[i].grad = saved[slot]
