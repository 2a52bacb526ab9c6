"""The recurrent layers in numpy, one sample and one step at a time (PyTorch's equations and
parameter layouts), for tests/op_table.py's rnn_scan lines and tests/test_rnn.py."""
import numpy as np


def _sigmoid(x):
    return 1 / (1 + np.exp(-x))


def cell(mode, gx, h, c, w_hh, b_hh):
    """One step of one sample: gx [G H] (x W_ih^T + b_ih), h, c [H] -> (h, c)."""
    n_h = h.shape[0]
    gh = w_hh @ h + (0 if b_hh is None else b_hh)
    if mode == "GRU":
        r = _sigmoid(gx[:n_h] + gh[:n_h])
        z = _sigmoid(gx[n_h:2 * n_h] + gh[n_h:2 * n_h])
        n = np.tanh(gx[2 * n_h:] + r * gh[2 * n_h:])
        return (1 - z) * n + z * h, c
    a = gx + gh
    if mode == "LSTM":
        i, f = _sigmoid(a[:n_h]), _sigmoid(a[n_h:2 * n_h])
        g, o = np.tanh(a[2 * n_h:3 * n_h]), _sigmoid(a[3 * n_h:])
        c = f * c + i * g
        return o * np.tanh(c), c
    return (np.tanh(a) if mode == "RNN_TANH" else np.maximum(a, 0)), c


def scan(mode, xp, w_hh, h0=None, c0=None, b_hh=None, reverse=False, batch_first=False):
    """rnn_scan: every h_t [T, B, H] ([B, T, H] batch_first; LSTM: h then c stacked in front)."""
    x = xp.transpose(1, 0, 2) if batch_first else xp
    steps, batch, _ = x.shape
    n_h = w_hh.shape[1]
    hs, cs = np.zeros((steps, batch, n_h)), np.zeros((steps, batch, n_h))
    for b in range(batch):
        h = np.zeros(n_h) if h0 is None else h0[b]
        c = np.zeros(n_h) if c0 is None else c0[b]
        for t in (range(steps - 1, -1, -1) if reverse else range(steps)):
            h, c = cell(mode, x[t, b], h, c, w_hh, b_hh)
            hs[t, b], cs[t, b] = h, c
    out = np.stack([hs, cs]) if mode == "LSTM" else hs
    return np.swapaxes(out, -3, -2) if batch_first else out


def layer(mode, params, x, hx=None, num_layers=1, bidirectional=False, batch_first=False):
    """A whole RNN/GRU/LSTM layer stack from a state dict of numpy arrays (PyTorch's names):
    (output, h_n) or (output, (h_n, c_n)), batched input only, no dropout."""
    if batch_first:
        x = x.transpose(1, 0, 2)
    dirs = 2 if bidirectional else 1
    h0, c0 = (hx if mode == "LSTM" else (hx, None)) if hx is not None else (None, None)
    h_n, c_n = [], []
    for k in range(num_layers):
        outs = []
        for d, sfx in enumerate(["", "_reverse"][:dirs]):
            i = k * dirs + d
            w_ih, w_hh = params[f"weight_ih_l{k}{sfx}"], params[f"weight_hh_l{k}{sfx}"]
            b_ih, b_hh = params.get(f"bias_ih_l{k}{sfx}"), params.get(f"bias_hh_l{k}{sfx}")
            xp = x @ w_ih.T + (0 if b_ih is None else b_ih)
            y = scan(mode, xp, w_hh, None if h0 is None else h0[i], None if c0 is None else c0[i], b_hh, d == 1)
            if mode == "LSTM":
                y, c = y
                c_n.append(c[0] if d == 1 else c[-1])
            h_n.append(y[0] if d == 1 else y[-1])
            outs.append(y)
        x = np.concatenate(outs, -1)
    out = x.transpose(1, 0, 2) if batch_first else x
    return (out, (np.stack(h_n), np.stack(c_n))) if mode == "LSTM" else (out, np.stack(h_n))
