"""Recurrent layers: RNN, GRU, LSTM and their cells, in PyTorch's names, signatures,
parameter layouts and initialisation (a PyTorch state_dict loads and gives the same outputs).

Each layer and direction is two ops: the input projection of every step at once
(F.linear, one GEMM), then the T steps of the recurrence as one C op, `_C.rnn_scan`
(csrc/rnn.c), whose backward is a C loop through time. The cells are the same op over one
step. After a backward, `step_grad_norms` holds the norm of dL/dh_t per time step.
"""
from __future__ import annotations

import math
import warnings

import numpy as np

from .. import _state
from .._C import _tensor_version, rnn_scan
from ..tensor import Tensor, _generator, _resolve_dtype, cat, tensor, zeros
from . import functional as F
from .modules import Module, Parameter

__all__ = ["RNNBase", "RNN", "GRU", "LSTM", "RNNCellBase", "RNNCell", "GRUCell", "LSTMCell"]

_GATES = {"RNN_TANH": 1, "RNN_RELU": 1, "LSTM": 4, "GRU": 3}


def _shape_str(shape) -> str:
    return "(" + ", ".join(str(n) for n in shape) + ")"


def _uniform(rng, bound, shape, dtype) -> Parameter:
    return Parameter(tensor(rng.uniform(-bound, bound, shape), dtype=dtype))


class RNNBase(Module):
    """The multi-layer, optionally bidirectional recurrence shared by RNN, GRU and LSTM.

    Parameters per layer k and direction (suffix '' or '_reverse'): weight_ih_l{k}
    [G hidden, in] (in: input_size for layer 0, else D hidden), weight_hh_l{k} [G hidden,
    hidden], bias_ih_l{k} and bias_hh_l{k} [G hidden], with the gates stacked in PyTorch's
    order (LSTM i, f, g, o; GRU r, z, n), all uniform in +-1/sqrt(hidden)."""

    # the last backward's step norms (step_grad_norms) stay with the original
    _transient = {**Module._transient, "_norm_bufs": list, "_norm_versions": list}

    def __init__(self, mode: str, input_size: int, hidden_size: int, num_layers: int = 1, bias: bool = True,
                 batch_first: bool = False, dropout: float = 0.0, bidirectional: bool = False, proj_size: int = 0,
                 device=None, dtype=None):
        super().__init__()
        name = {"RNN_TANH": "RNN", "RNN_RELU": "RNN"}.get(mode, mode)
        if mode not in _GATES:
            raise ValueError(f"RNNBase: unknown mode {mode!r}; expected one of {sorted(_GATES)}")
        if not isinstance(hidden_size, int) or isinstance(hidden_size, bool) or hidden_size <= 0:
            raise ValueError(f"{name}: hidden_size must be a positive int, got {hidden_size!r}")
        if not isinstance(num_layers, int) or isinstance(num_layers, bool) or num_layers <= 0:
            raise ValueError(f"{name}: num_layers must be a positive int, got {num_layers!r}")
        if isinstance(dropout, bool) or not isinstance(dropout, (int, float)) or not 0 <= dropout <= 1:
            raise ValueError(f"{name}: dropout should be a number in range [0, 1] representing the probability of "
                             f"an element being zeroed, got {dropout!r}")
        if proj_size:
            raise NotImplementedError(f"{name}: proj_size={proj_size} (LSTM with projections) is not implemented")
        if dropout > 0 and num_layers == 1:
            warnings.warn(f"dropout option adds dropout after all but last recurrent layer, so non-zero dropout "
                          f"expects num_layers greater than 1, but got dropout={dropout} and num_layers=1")
        self.mode, self.input_size, self.hidden_size, self.num_layers = mode, input_size, hidden_size, num_layers
        self.bias, self.batch_first, self.dropout = bias, batch_first, float(dropout)
        self.bidirectional, self.proj_size = bidirectional, proj_size
        dtype = _resolve_dtype(dtype)
        rng, bound, gh = _generator(), 1 / math.sqrt(hidden_size), _GATES[mode] * hidden_size
        directions = 2 if bidirectional else 1
        for layer in range(num_layers):
            n_in = input_size if layer == 0 else hidden_size * directions
            for suffix in ("", "_reverse")[:directions]:
                setattr(self, f"weight_ih_l{layer}{suffix}", _uniform(rng, bound, (gh, n_in), dtype))
                setattr(self, f"weight_hh_l{layer}{suffix}", _uniform(rng, bound, (gh, hidden_size), dtype))
                if bias:
                    setattr(self, f"bias_ih_l{layer}{suffix}", _uniform(rng, bound, gh, dtype))
                    setattr(self, f"bias_hh_l{layer}{suffix}", _uniform(rng, bound, gh, dtype))
        # the step-norm buffers, one [T] tensor per layer and direction (not state), and
        # their versions when made: a backward through the op writes them (csrc/rnn.c)
        self._norm_bufs: list = []
        self._norm_versions: list = []

    @property
    def _name(self) -> str:
        return type(self).__name__

    def _layer_params(self, layer: int, suffix: str):
        w_ih = getattr(self, f"weight_ih_l{layer}{suffix}")
        w_hh = getattr(self, f"weight_hh_l{layer}{suffix}")
        b_ih = getattr(self, f"bias_ih_l{layer}{suffix}") if self.bias else None
        b_hh = getattr(self, f"bias_hh_l{layer}{suffix}") if self.bias else None
        return w_ih, w_hh, b_ih, b_hh

    @property
    def all_weights(self) -> list:
        return [list(self._layer_params(layer, s)) for layer in range(self.num_layers)
                for s in ("", "_reverse")[:2 if self.bidirectional else 1]]

    def flatten_parameters(self) -> None:
        """PyTorch's cuDNN hook; nothing to do here."""

    @property
    def step_grad_norms(self) -> np.ndarray | None:
        """[num_layers * num_directions, T]: the L2 norm over the batch of the total gradient
        dL/dh_t at each time step t (input order for both directions, rows as h_n's), from
        the last backward through the last forward; None before any backward."""
        if not self._norm_bufs or all(_tensor_version(b) == v for b, v in zip(self._norm_bufs, self._norm_versions)):
            return None
        return np.stack([b.numpy() for b in self._norm_bufs]).astype(np.float64)

    def _norm_buffers(self, steps: int, dtype) -> list:
        n = self.num_layers * (2 if self.bidirectional else 1)
        bufs = self._norm_bufs
        if len(bufs) != n or bufs[0].shape != (steps,) or bufs[0].dtype != dtype:
            bufs = [zeros(steps, dtype=dtype) for _ in range(n)]
            object.__setattr__(self, "_norm_bufs", bufs)
            object.__setattr__(self, "_norm_versions", [_tensor_version(b) for b in bufs])
        return bufs

    def forward(self, input: Tensor, hx=None):
        for watch in _state.recurrent_watchers:  # diagnostics.health, profile (profiler.SequenceWatch)
            watch(self)
        name, lstm = self._name, self.mode == "LSTM"
        if not isinstance(input, Tensor):
            raise TypeError(f"{name}: input must be a cgrad Tensor, not {type(input).__name__}")
        if input.ndim not in (2, 3):
            raise ValueError(f"{name}: Expected input to be 2D (L, H_in) or 3D, got {input.ndim}D tensor of shape "
                             f"{_shape_str(input.shape)}")
        if input.shape[-1] != self.input_size:
            raise ValueError(f"{name}: input.size(-1) must be equal to input_size. Expected {self.input_size}, got "
                             f"{input.shape[-1]} (input of shape {_shape_str(input.shape)})")
        batched = input.ndim == 3
        batch_first = self.batch_first and batched
        x = input if batched else input.reshape(input.shape[0], 1, input.shape[1])
        steps, batch = (x.shape[1], x.shape[0]) if batch_first else (x.shape[0], x.shape[1])
        if steps == 0:
            raise ValueError(f"{name}: the input of shape {_shape_str(input.shape)} has no time steps")
        directions = 2 if self.bidirectional else 1
        h0 = c0 = None
        if hx is not None:
            if lstm:
                if not isinstance(hx, (tuple, list)) or len(hx) != 2:
                    raise TypeError(f"{name}: hx must be a tuple (h_0, c_0), not {type(hx).__name__}")
                h0, c0 = hx
            else:
                h0 = hx
            states = [(h0, "hidden[0]" if lstm else "hidden")] + ([(c0, "hidden[1]")] if lstm else [])
            for state, which in states:
                if state.ndim != (3 if batched else 2):
                    kind = "batched 3-D" if batched else "unbatched 2-D"
                    raise ValueError(f"{name}: For {kind} input of shape {_shape_str(input.shape)}, {which} should "
                                     f"also be {3 if batched else 2}-D but got {state.ndim}-D tensor of shape "
                                     f"{_shape_str(state.shape)}")
                expected = (self.num_layers * directions,) + ((batch,) if batched else ()) + (self.hidden_size,)
                if tuple(state.shape) != expected:
                    raise ValueError(f"{name}: Expected {which} size {_shape_str(expected)}, got "
                                     f"{_shape_str(state.shape)}")
            if not batched:
                h0 = h0.reshape(h0.shape[0], 1, h0.shape[1])
                c0 = c0.reshape(c0.shape[0], 1, c0.shape[1]) if c0 is not None else None
        norms = self._norm_buffers(steps, x.dtype)
        last = steps - 1
        h_n, c_n = [], []
        for layer in range(self.num_layers):
            outs = []
            for d, suffix in enumerate(("", "_reverse")[:directions]):
                i = layer * directions + d
                w_ih, w_hh, b_ih, b_hh = self._layer_params(layer, suffix)
                xp = F.linear(x, w_ih, b_ih)
                y = rnn_scan(self.mode, xp, w_hh, h0[i] if h0 is not None else None,
                             c0[i] if c0 is not None else None, b_hh, norms[i], d == 1, batch_first)
                t_end = 0 if d == 1 else last
                if lstm:
                    y, c = y[0], y[1]
                    c_n.append(c[:, t_end] if batch_first else c[t_end])
                h_n.append(y[:, t_end] if batch_first else y[t_end])
                outs.append(y)
            x = outs[0] if directions == 1 else cat(outs, -1)
            if self.dropout and self.training and layer < self.num_layers - 1:
                x = F.dropout(x, self.dropout, True)
        out = x if batched else x.reshape(x.shape[0], x.shape[2])
        shape = (len(h_n), batch, self.hidden_size) if batched else (len(h_n), self.hidden_size)
        hn = _stack_states(h_n, shape)
        if lstm:
            return out, (hn, _stack_states(c_n, shape))
        return out, hn

    def extra_repr(self) -> str:
        s = f"{self.input_size}, {self.hidden_size}"
        if self.num_layers != 1:
            s += f", num_layers={self.num_layers}"
        if self.mode == "RNN_RELU":
            s += ", nonlinearity='relu'"
        if not self.bias:
            s += ", bias=False"
        if self.batch_first:
            s += ", batch_first=True"
        if self.dropout:
            s += f", dropout={self.dropout}"
        if self.bidirectional:
            s += ", bidirectional=True"
        return s


def _stack_states(states: list, shape: tuple) -> Tensor:
    """h_n (or c_n) from each layer's and direction's last state [B, H]."""
    return (states[0] if len(states) == 1 else cat(states, 0)).reshape(shape)


class RNN(RNNBase):
    """Elman RNN: h_t = act(x_t W_ih^T + b_ih + h_{t-1} W_hh^T + b_hh), act tanh or relu."""

    def __init__(self, input_size: int, hidden_size: int, num_layers: int = 1, nonlinearity: str = "tanh",
                 bias: bool = True, batch_first: bool = False, dropout: float = 0.0, bidirectional: bool = False,
                 device=None, dtype=None):
        if nonlinearity not in ("tanh", "relu"):
            raise ValueError(f"RNN: Unknown nonlinearity '{nonlinearity}'. Select from 'tanh' or 'relu'.")
        super().__init__("RNN_TANH" if nonlinearity == "tanh" else "RNN_RELU", input_size, hidden_size, num_layers,
                         bias, batch_first, dropout, bidirectional, 0, device, dtype)
        self.nonlinearity = nonlinearity


class GRU(RNNBase):
    """GRU with PyTorch's equations: r, z = sigmoid(W_i{r,z} x + b_i{r,z} + W_h{r,z} h + b_h{r,z}),
    n = tanh(W_in x + b_in + r (W_hn h + b_hn)), h' = (1 - z) n + z h."""

    def __init__(self, input_size: int, hidden_size: int, num_layers: int = 1, bias: bool = True,
                 batch_first: bool = False, dropout: float = 0.0, bidirectional: bool = False, device=None,
                 dtype=None):
        super().__init__("GRU", input_size, hidden_size, num_layers, bias, batch_first, dropout, bidirectional, 0,
                         device, dtype)


class LSTM(RNNBase):
    """LSTM: i, f, o = sigmoid(.), g = tanh(.) of W_i* x + b_i* + W_h* h + b_h*;
    c' = f c + i g, h' = o tanh(c'). Returns (output, (h_n, c_n)). proj_size is not implemented."""

    def __init__(self, input_size: int, hidden_size: int, num_layers: int = 1, bias: bool = True,
                 batch_first: bool = False, dropout: float = 0.0, bidirectional: bool = False, proj_size: int = 0,
                 device=None, dtype=None):
        super().__init__("LSTM", input_size, hidden_size, num_layers, bias, batch_first, dropout, bidirectional,
                         proj_size, device, dtype)


class RNNCellBase(Module):
    """One step of a recurrence: weight_ih [G hidden, input], weight_hh [G hidden, hidden],
    bias_ih, bias_hh [G hidden], uniform in +-1/sqrt(hidden); the step is rnn_scan over T = 1."""

    def __init__(self, mode: str, input_size: int, hidden_size: int, bias: bool = True, device=None, dtype=None):
        super().__init__()
        if not isinstance(hidden_size, int) or isinstance(hidden_size, bool) or hidden_size <= 0:
            raise ValueError(f"{type(self).__name__}: hidden_size must be a positive int, got {hidden_size!r}")
        self.mode, self.input_size, self.hidden_size, self.bias = mode, input_size, hidden_size, bias
        dtype = _resolve_dtype(dtype)
        rng, bound, gh = _generator(), 1 / math.sqrt(hidden_size), _GATES[mode] * hidden_size
        self.weight_ih = _uniform(rng, bound, (gh, input_size), dtype)
        self.weight_hh = _uniform(rng, bound, (gh, hidden_size), dtype)
        self.bias_ih = _uniform(rng, bound, gh, dtype) if bias else None
        self.bias_hh = _uniform(rng, bound, gh, dtype) if bias else None

    def _step(self, input: Tensor, hx: Tensor | None, cx: Tensor | None = None) -> Tensor:
        """rnn_scan's y over the one step, [1, B, H] ([2, 1, B, H] for LSTM), after the checks."""
        name = type(self).__name__
        if not isinstance(input, Tensor):
            raise TypeError(f"{name}: input must be a cgrad Tensor, not {type(input).__name__}")
        if input.ndim not in (1, 2):
            raise ValueError(f"{name}: Expected input to be 1D or 2D, got {input.ndim}D tensor of shape "
                             f"{_shape_str(input.shape)}")
        if input.shape[-1] != self.input_size:
            raise ValueError(f"{name}: input has inconsistent input_size: got {input.shape[-1]} expected "
                             f"{self.input_size} (input of shape {_shape_str(input.shape)})")
        batch = input.shape[0] if input.ndim == 2 else 1
        states: list = []
        for state, which in ((hx, "hidden"), (cx, "cell state")):
            if state is None:
                states.append(None)
                continue
            if state.ndim != input.ndim or state.shape[-1] != self.hidden_size or (
                    input.ndim == 2 and state.shape[0] != batch):
                expected = (batch, self.hidden_size) if input.ndim == 2 else (self.hidden_size,)
                raise ValueError(f"{name}: Expected {which} of shape {_shape_str(expected)} for an input of shape "
                                 f"{_shape_str(input.shape)}, got {_shape_str(state.shape)}")
            states.append(state.reshape(batch, self.hidden_size))
        xp = F.linear(input.reshape(1, batch, self.input_size), self.weight_ih, self.bias_ih)
        return rnn_scan(self.mode, xp, self.weight_hh, states[0], states[1], self.bias_hh, None)

    def _out(self, h: Tensor, input: Tensor) -> Tensor:
        return h.reshape(*input.shape[:-1], self.hidden_size)

    def extra_repr(self) -> str:
        s = f"{self.input_size}, {self.hidden_size}"
        if not self.bias:
            s += ", bias=False"
        if self.mode == "RNN_RELU":
            s += ", nonlinearity='relu'"
        return s


class RNNCell(RNNCellBase):
    def __init__(self, input_size: int, hidden_size: int, bias: bool = True, nonlinearity: str = "tanh",
                 device=None, dtype=None):
        if nonlinearity not in ("tanh", "relu"):
            raise ValueError(f"RNNCell: Unknown nonlinearity: {nonlinearity}")
        super().__init__("RNN_TANH" if nonlinearity == "tanh" else "RNN_RELU", input_size, hidden_size, bias,
                         device, dtype)
        self.nonlinearity = nonlinearity

    def forward(self, input: Tensor, hx: Tensor | None = None) -> Tensor:
        return self._out(self._step(input, hx), input)


class GRUCell(RNNCellBase):
    def __init__(self, input_size: int, hidden_size: int, bias: bool = True, device=None, dtype=None):
        super().__init__("GRU", input_size, hidden_size, bias, device, dtype)

    def forward(self, input: Tensor, hx: Tensor | None = None) -> Tensor:
        return self._out(self._step(input, hx), input)


class LSTMCell(RNNCellBase):
    def __init__(self, input_size: int, hidden_size: int, bias: bool = True, device=None, dtype=None):
        super().__init__("LSTM", input_size, hidden_size, bias, device, dtype)

    def forward(self, input: Tensor, hx=None):
        h0, c0 = (None, None) if hx is None else hx
        y = self._step(input, h0, c0)
        return self._out(y[0], input), self._out(y[1], input)
