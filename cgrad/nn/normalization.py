"""Normalisation and channel layers: BatchNorm, GroupNorm, Dropout1d/2d, Upsample."""
from __future__ import annotations

__all__: list[str] = []
