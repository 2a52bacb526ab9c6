"""Recurrent layers: RNN, GRU, LSTM and their cells."""

__all__: list = []
