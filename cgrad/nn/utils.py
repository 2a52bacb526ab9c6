"""Gradient utilities."""
from __future__ import annotations

from .. import _C
from ..replay import replayed


def clip_grad_norm_(parameters, max_norm: float) -> float:
    """Scale the gradients of `parameters` in place (one C call) so that their joint L2
    norm is at most max_norm; returns the norm before clipping."""
    return _clip(_C.ParamSet(list(parameters)), float(max_norm))


@replayed  # replays reuse the parameter set built here (parameters may be a generator)
def _clip(params: _C.ParamSet, max_norm: float) -> float:
    return params.clip_grad_norm(max_norm)
