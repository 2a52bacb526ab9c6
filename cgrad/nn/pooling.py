"""Pooling layers: max, average, adaptive."""
from __future__ import annotations

__all__: list[str] = []
