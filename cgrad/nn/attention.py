"""Attention layers: MultiheadAttention and the Transformer encoder layer."""

__all__: list = []
