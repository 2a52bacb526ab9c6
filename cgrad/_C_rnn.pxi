# Recurrent layers: the entry points of csrc/rnn.c.

_RNN_MODES = {"RNN_TANH": CG_RNN_TANH, "RNN_RELU": CG_RNN_RELU, "LSTM": CG_RNN_LSTM, "GRU": CG_RNN_GRU}
RNN_MODE_NAMES = {v: k for k, v in _RNN_MODES.items()}  # node_params' ip[0], for the taped rule

def rnn_scan(str mode, TensorBase xp not None, TensorBase w_hh not None, TensorBase h0, TensorBase c0,
             TensorBase b_hh, TensorBase norms, bint reverse=False, bint batch_first=False):
    """The T steps of one recurrent layer and direction (csrc/rnn.c): mode 'RNN_TANH',
    'RNN_RELU', 'LSTM' or 'GRU'; xp the input projection x W_ih^T + b_ih, [T, B, G H]
    ([B, T, G H] batch_first). Returns every h_t, [T, B, H] ([B, T, H]); for LSTM
    [2, T, B, H]: the h_t, then the c_t. norms: a [T] buffer backward fills with the norm
    of dL/dh_t over the batch, or None."""
    cdef cg_tensor *out = NULL
    cdef cg_status st
    cdef int m
    if mode not in _RNN_MODES:
        raise ValueError(f"rnn_scan: unknown mode {mode!r}; expected one of {sorted(_RNN_MODES)}")
    m = _RNN_MODES[mode]
    cdef cg_tensor *h = h0.t if h0 is not None else NULL
    cdef cg_tensor *c = c0.t if c0 is not None else NULL
    cdef cg_tensor *b = b_hh.t if b_hh is not None else NULL
    cdef cg_tensor *nb = norms.t if norms is not None else NULL
    if xp.t.numel * w_hh.t.shape[1] >= _NOGIL_MACS:
        with nogil:
            st = cg_rnn_scan(m, xp.t, w_hh.t, h, c, b, nb, reverse, batch_first, &out)
    else:
        st = cg_rnn_scan(m, xp.t, w_hh.t, h, c, b, nb, reverse, batch_first, &out)
    _check(st)
    return _wrap(out)
