"""Gradient utilities."""
from __future__ import annotations

from .. import _C


def clip_grad_norm_(parameters, max_norm: float) -> float:
    """Scale the gradients of `parameters` in place (one C call) so that their joint L2
    norm is at most max_norm; returns the norm before clipping."""
    params = [p for p in parameters]
    return _C.ParamSet(params).clip_grad_norm(float(max_norm))
