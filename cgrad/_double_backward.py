"""The taped backward sweep behind `autograd.grad(..., create_graph=True)`.

The first-order sweep is one C call whose rules are raw loops that record nothing. Here
the same graph is swept in Python and each op's backward is written in cgrad ops, which
record on the tape when grad mode is on, so the gradients it returns can be differentiated
again, to any order (docs/architecture.md, "Room for higher-order gradients"). The ops are
C ops, so a step that uses it replays in C under cgrad.compile.

Each rule takes the node's view (its inputs, its output tensor, its parameters) and the
upstream gradient g, and returns one gradient (or None) per input.
"""
from __future__ import annotations

import math
from typing import Callable

import numpy as np

from ._C import BN_BIAS as _BN_BIAS, BN_RUNNING as _BN_RUNNING, BN_TRAINING as _BN_TRAINING, BN_WEIGHT as _BN_WEIGHT
from ._C import avg_pool, avg_pool_backward, max_pool_backward, max_pool_select, pool_geometry
from ._C import (cast, conv, conv_dw, conv_dx, copy_from_array, gather, gemm, graph_node, node_params,
                 python_node_owner, scatter_add, tanh_backward, tensor_key, where, zeros)


class _Node:
    __slots__ = ("op", "key", "inputs", "in_keys", "out", "p0", "p1", "ip", "extra", "need")

    def __init__(self, out):
        self.op, self.inputs = graph_node(out)
        self.key, self.p0, self.p1, self.ip, self.extra = node_params(out)
        self.out = out
        # the key of the node that made each input (None for a leaf), looked up once
        self.in_keys = [node_params(x)[0] if x.grad_fn is not None else None for x in self.inputs]
        self.need = (True,) * len(self.inputs)  # which inputs' gradients lead to a target


def _unbroadcast(g, shape: tuple):
    """g summed down to `shape` (the adjoint of broadcasting)."""
    if g.shape == shape:
        return g
    extra = g.ndim - len(shape)
    if extra:
        g = g.sum(tuple(range(extra)))
    axes = tuple(i for i, (a, b) in enumerate(zip(g.shape, shape)) if b == 1 and a != 1)
    if axes:
        g = g.sum(axes, keepdims=True)
    return g.reshape(shape)


_SELU_SCALE, _SELU_ALPHA = 1.0507009873554804934193349852946, 1.6732632423543772848170429916717

# d(op)/dx as cgrad ops of x, y (the output), p0, p1
_UNARY: dict[str, Callable] = {
    "neg": lambda x, y, p0, p1: -1.0,
    "exp": lambda x, y, p0, p1: y,
    "log": lambda x, y, p0, p1: 1.0 / x,
    "sqrt": lambda x, y, p0, p1: 0.5 / y,
    "sigmoid": lambda x, y, p0, p1: y * (1.0 - y),
    "sin": lambda x, y, p0, p1: x.cos(),
    "cos": lambda x, y, p0, p1: -x.sin(),
    "square": lambda x, y, p0, p1: 2.0 * x,
    "softplus": lambda x, y, p0, p1: x.sigmoid(),
    "relu": lambda x, y, p0, p1: _mask(x.detach() > 0, x),
    "abs": lambda x, y, p0, p1: x.detach().sign(),
    "reciprocal": lambda x, y, p0, p1: -(y * y),
    "pow_scalar": lambda x, y, p0, p1: p0 * x ** (p0 - 1) if p0 != 0 else 0.0,
    "add_scalar": lambda x, y, p0, p1: 1.0,
    "mul_scalar": lambda x, y, p0, p1: p0,
    "div_scalar": lambda x, y, p0, p1: 1.0 / p0,
    "rsub_scalar": lambda x, y, p0, p1: -1.0,
    "rdiv_scalar": lambda x, y, p0, p1: -y / x,
    "log1p": lambda x, y, p0, p1: 1.0 / (1.0 + x),
    "expm1": lambda x, y, p0, p1: y + 1.0,
    "silu": lambda x, y, p0, p1: x.sigmoid() * (1.0 + x * (1.0 - x.sigmoid())),
    "leaky_relu": lambda x, y, p0, p1: _mask(x.detach() > 0, x) * (1.0 - p0) + p0,
    "atan": lambda x, y, p0, p1: 1.0 / (1.0 + x * x),
    "tan": lambda x, y, p0, p1: 1.0 + y * y,
    "sinh": lambda x, y, p0, p1: x.cosh(),
    "cosh": lambda x, y, p0, p1: x.sinh(),
    "erf": lambda x, y, p0, p1: (2.0 / math.sqrt(math.pi)) * (-(x * x)).exp(),
    "log2": lambda x, y, p0, p1: 1.0 / (x * math.log(2.0)),
    "log10": lambda x, y, p0, p1: 1.0 / (x * math.log(10.0)),
    "rsqrt": lambda x, y, p0, p1: -0.5 * y * y * y,
    "softsign": lambda x, y, p0, p1: (1.0 + x.abs()) ** -2,
    "gelu": lambda x, y, p0, p1: 0.5 * (1.0 + (x * math.sqrt(0.5)).erf()) +
    x * (-0.5 * x * x).exp() / math.sqrt(2 * math.pi),
    "elu": lambda x, y, p0, p1: _mask(x > 0, x) + _mask(x <= 0, x) * p0 * x.exp(),
    "selu": lambda x, y, p0, p1: _SELU_SCALE * (_mask(x > 0, x) + _mask(x <= 0, x) * _SELU_ALPHA * x.exp()),
    # piecewise constant or clipped: the derivative is a constant mask (zero for rounding)
    "sign": lambda x, y, p0, p1: 0.0, "floor": lambda x, y, p0, p1: 0.0, "ceil": lambda x, y, p0, p1: 0.0,
    "round": lambda x, y, p0, p1: 0.0, "trunc": lambda x, y, p0, p1: 0.0,
    "gelu_tanh": lambda x, y, p0, p1: _gelu_tanh_derivative(x),
    "mish": lambda x, y, p0, p1: _mish_derivative(x),
    "clip": lambda x, y, p0, p1: _mask((x >= p0) & (x <= p1), x),
    "hardtanh": lambda x, y, p0, p1: _mask((x > p0) & (x < p1), x),
}


def _gelu_tanh_derivative(x):
    """d/dx of 0.5 x (1 + tanh(u)), u = sqrt(2/pi) (x + 0.044715 x^3)."""
    c = math.sqrt(2.0 / math.pi)
    t = (c * (x + 0.044715 * x * x * x)).tanh()
    return 0.5 * (1.0 + t) + 0.5 * x * (1.0 - t * t) * c * (1.0 + 3 * 0.044715 * x * x)


def _mish_derivative(x):
    """d/dx of x tanh(softplus(x)) = tanh(sp) + x (1 - tanh(sp)^2) sigmoid(x)."""
    t = x.softplus().tanh()
    return t + x * (1.0 - t * t) * x.sigmoid()


def _mask(condition, like):
    """A 0/1 tensor in like's dtype of a condition on values: a constant, no graph."""
    return condition.to(like.dtype)


def _unary(node, g):
    x = node.inputs[0]
    rule = _UNARY.get(node.op)
    if rule is None:
        raise NotImplementedError(f"create_graph: the double backward of '{node.op}' is not written yet")
    return (g * rule(x, node.out, node.p0, node.p1),)


def _binary(node, g):
    a, b = node.inputs
    y = node.out
    if node.op == "add":
        da, db = g, g
    elif node.op == "sub":
        da, db = g, -g
    elif node.op == "mul":
        da, db = (g * b if node.need[0] else None), (g * a if node.need[1] else None)
    elif node.op == "div":
        da, db = g / b, -g * y / b
    elif node.op == "pow":
        da, db = g * b * a ** (b - 1.0), g * y * a.log()
    elif node.op in ("maximum", "minimum"):  # to the larger (smaller) input, halves on ties
        av, bv = a.detach(), b.detach()
        wins = (av > bv) if node.op == "maximum" else (av < bv)
        ma = _mask(wins, g) + _mask(av == bv, g) * 0.5
        da, db = g * ma, g * (1.0 - ma)
    elif node.op == "tanh_backward":  # y = a (1 - b^2)
        da, db = (tanh_backward(g, b) if node.need[0] else None), (-2.0 * g * a * b if node.need[1] else None)
    elif node.op == "atan2":
        r2 = a * a + b * b
        da, db = g * b / r2, -g * a / r2
    else:
        raise NotImplementedError(f"create_graph: the double backward of '{node.op}' is not written yet")
    return (None if da is None else _unbroadcast(da, a.shape)), (None if db is None else _unbroadcast(db, b.shape))


def _reduce(node, g):
    x = node.inputs[0]
    O, R, I = node.ip[:3]
    if node.op == "cumsum":  # the prefix sums from the end; g has x's shape
        return (g.reshape(O, R, I).flip(1).cumsum(1).flip(1).reshape(x.shape),)
    g3 = g.reshape(O, 1, I)
    if node.op == "sum":
        dx = g3 + zeros((O, R, I), x.dtype)
    elif node.op == "mean":
        dx = g3 / float(R) + zeros((O, R, I), x.dtype)
    elif node.op == "logsumexp":
        dx = g3 * (x.reshape(O, R, I) - node.out.reshape(O, 1, I)).exp()
    elif node.op in ("max", "min"):  # shared equally among the extreme values, as the C rule
        hit = _mask(x.detach().reshape(O, R, I) == node.out.detach().reshape(O, 1, I), x)
        dx = g3 * (hit / hit.sum(1, keepdims=True))
    else:
        raise NotImplementedError(f"create_graph: the double backward of '{node.op}' is not written yet")
    return (dx.reshape(x.shape),)


def _softmax(node, g):
    x, y = node.inputs[0], node.out
    O, R, I = node.ip[:3]
    g3, y3 = g.reshape(O, R, I), y.reshape(O, R, I)
    if node.op == "softmax":
        dx = y3 * (g3 - (g3 * y3).sum(1, keepdims=True))
    else:
        dx = g3 - y3.exp() * g3.sum(1, keepdims=True)
    return (dx.reshape(x.shape),)


def _matmul(node, g):
    a, b = node.inputs
    if a.ndim == 2 and b.ndim == 2:
        return (gemm(g, b, False, True) if node.need[0] else None,
                gemm(a, g, True, False) if node.need[1] else None)
    return (_unbroadcast(g @ b.transpose(-1, -2), a.shape), _unbroadcast(a.transpose(-1, -2) @ g, b.shape))


def _linear(node, g):
    x, w = node.inputs[:2]
    g2 = g.reshape(-1, w.shape[0])
    need = node.need
    grads = [g @ w if need[0] else None, gemm(g2, x.reshape(-1, w.shape[1]), True, False) if need[1] else None]
    if len(node.inputs) == 3:
        grads.append(g2.sum(0) if need[2] else None)
    return tuple(grads)


def _tanh(node, g):
    """One op, tanh_backward(g, y), not the three of g * (1 - y * y): tanh is the PINNs' activation."""
    return (tanh_backward(g, node.out),)


def _gemm(node, g):
    """z = op(a) op(b): dop(a) = g op(b)^T, dop(b) = op(a)^T g, with the flags undoing op."""
    a, b = node.inputs
    ta, tb = bool(node.ip[0]), bool(node.ip[1])
    da = None if not node.need[0] else gemm(b, g, tb, True) if ta else gemm(g, b, False, not tb)
    db = None if not node.need[1] else gemm(g, a, True, ta) if tb else gemm(a, g, not ta, False)
    return da, db


def _reshape(node, g):
    return (g.reshape(node.inputs[0].shape),)


def _positions(node) -> np.ndarray:
    """The flat position in the input of each output element of a strided copy."""
    shape = node.out.shape
    idx = np.full(shape, node.ip[8], np.int64)
    for d, n in enumerate(shape):
        view = [1] * len(shape)
        view[d] = n
        idx = idx + np.arange(n).reshape(view) * node.ip[d]
    return idx.reshape(-1)


def _scatter_into_zeros(like, positions, g):
    flat = zeros((like.numel(), 1), like.dtype)
    return scatter_add(flat, positions, g.reshape(-1, 1)).reshape(like.shape)


def _strided(node, g):
    return (_scatter_into_zeros(node.inputs[0], _positions(node), g),)


def _gather(node, g):
    x = node.inputs[0]
    rows = zeros(x.shape, x.dtype)
    return (scatter_add(rows, node.extra, g),)


def _scatter_add(node, g):
    return g, gather(g, node.extra)


def _concat(node, g):
    axis = node.ip[0]
    out, start = [], 0
    for x in node.inputs:
        n = x.shape[axis]
        out.append(g.narrow(axis, start, n))
        start += n
    return tuple(out)


def _cast(node, g):
    return (cast(g, node.inputs[0].dtype),)


def _where(node, g):
    a, b = node.inputs
    zero = zeros((), g.dtype)
    return (_unbroadcast(where(node.extra.reshape(g.shape), g, zero + g * 0.0), a.shape),
            _unbroadcast(where(node.extra.reshape(g.shape), g * 0.0, g), b.shape))


def _python(node, g):
    """A custom Function's backward, called with grad mode on: what it computes in cgrad
    ops records, so it is differentiable again when written in them."""
    owner = python_node_owner(node.out)
    if owner is None:
        raise RuntimeError("create_graph: the graph of a custom Function was freed by an earlier backward; "
                           "pass retain_graph=True to it")
    grads = owner._cg_taped_backward(g, node.out)
    for i, (x, dx) in enumerate(zip(node.inputs, grads)):
        if dx is not None and (not hasattr(dx, "shape") or tuple(dx.shape) != tuple(x.shape)):
            raise RuntimeError(f"{owner._cg_name} returned a gradient of shape {getattr(dx, 'shape', None)} "
                               f"for input {i} of shape {x.shape}")
    return tuple(grads)


_RULES: dict[str, Callable] = {
    "add": _binary, "sub": _binary, "mul": _binary, "div": _binary, "pow": _binary,
    "maximum": _binary, "minimum": _binary, "atan2": _binary, "tanh_backward": _binary,
    "sum": _reduce, "mean": _reduce, "logsumexp": _reduce, "max": _reduce, "min": _reduce, "cumsum": _reduce, "softmax": _softmax, "log_softmax": _softmax,
    "matmul": _matmul, "gemm": _gemm, "linear": _linear, "reshape": _reshape, "strided": _strided, "gather": _gather,
    "scatter_add": _scatter_add, "concat": _concat, "cast": _cast, "where": _where,
    "python_function": _python, "tanh": _tanh,
}

# ---- convolution ----
def _conv_geometry(node):
    """stride, padding before and dilation as (h, w) pairs, the groups and the op's own two sizes."""
    ip = node.ip
    return (ip[0], ip[1]), (ip[2], ip[3]), (ip[4], ip[5]), ip[6], (ip[7], ip[8])


def _hw(t) -> tuple:
    return (t.shape[2], t.shape[3]) if t.ndim == 4 else (1, t.shape[2])


def _conv_rule(node, g):
    """y = conv(x, w) + b: dx = conv_dx(g, w), dw = conv_dw(g, x), db = the sums of g."""
    x, w = node.inputs[:2]
    s, p, d, groups, _ = _conv_geometry(node)
    need = node.need
    grads = [conv_dx(g, w, s, p, d, groups, _hw(x)) if need[0] else None,
             conv_dw(g, x, s, p, d, groups, _hw(w)) if need[1] else None]
    if len(node.inputs) == 3:
        grads.append(g.sum((0, *range(2, g.ndim))) if need[2] else None)
    return tuple(grads)


def _conv_dx_rule(node, u):
    """dx = conv_dx(g, w), bilinear: d/dg = conv(u, w), d/dw = conv_dw(g, u)."""
    g, w = node.inputs
    s, p, d, groups, _ = _conv_geometry(node)
    return (conv(u, w, None, s, p, d, groups, _hw(g)) if node.need[0] else None,
            conv_dw(g, u, s, p, d, groups, _hw(w)) if node.need[1] else None)


def _conv_dw_rule(node, v):
    """dw = conv_dw(g, x), bilinear: d/dg = conv(x, v), d/dx = conv_dx(g, v)."""
    g, x = node.inputs
    s, p, d, groups, _ = _conv_geometry(node)
    return (conv(x, v, None, s, p, d, groups, _hw(g)) if node.need[0] else None,
            conv_dx(g, v, s, p, d, groups, _hw(x)) if node.need[1] else None)


_RULES["conv"], _RULES["conv_dx"], _RULES["conv_dw"] = _conv_rule, _conv_dx_rule, _conv_dw_rule

# ---- end of convolution ----

# ---- pooling ----
# Average pooling is linear: its gradient is its adjoint (avg_pool_backward), whose gradient
# is the average again. Max pooling's gradient routes g to the arg-maxes of x's windows
# (max_pool_backward); that is linear in g, with select (read at the arg-maxes) as its
# adjoint, and constant in x where the arg-maxes are, so its x gets no gradient. All read
# the geometry from the node and recompute the arg-maxes from x in C, so a replayed step
# (cgrad.compile) follows x.


def _avg_pool(node, g):
    return (avg_pool_backward(g, pool_geometry(node.out)),)


def _avg_pool_backward(node, g):
    return (avg_pool(g, pool_geometry(node.out)),)


def _max_pool(node, g):
    return (max_pool_backward(g, node.inputs[0], pool_geometry(node.out)),)


def _max_pool_backward(node, g):
    return max_pool_select(g, node.inputs[1], pool_geometry(node.out)), None


def _max_pool_select(node, g):
    return max_pool_backward(g, node.inputs[1], pool_geometry(node.out)), None


_RULES["avg_pool"] = _avg_pool
_RULES["avg_pool_backward"] = _avg_pool_backward
_RULES["max_pool"] = _max_pool
_RULES["max_pool_backward"] = _max_pool_backward
_RULES["max_pool_select"] = _max_pool_select

# ---- end of pooling ----

# ---- normalisation ----


def _batch_norm(node, g):
    """batch_norm's closed form in ops, with xhat and invstd recomputed from x (training),
    so that the gradient depends on x as the statistics do: dx = w invstd (g - mean(g) -
    xhat mean(g xhat)), dw = sum g xhat, db = sum g; in evaluation dx = w invstd g."""
    x = node.inputs[0]
    n, c, s, flags = node.ip[:4]
    eps = node.p0
    rest = iter(node.inputs[1:])
    w = next(rest) if flags & _BN_WEIGHT else None
    b = next(rest) if flags & _BN_BIAS else None
    x3, g3 = x.reshape(n, c, s), g.reshape(n, c, s)
    if flags & _BN_TRAINING:
        xc = x3 - x3.mean((0, 2), keepdims=True)
        invstd = ((xc * xc).mean((0, 2), keepdims=True) + eps).rsqrt()
    else:
        rm, rv = next(rest), next(rest)
        xc = x3 - rm.reshape(1, c, 1)
        invstd = (rv.reshape(1, c, 1) + eps).rsqrt()
    xhat = xc * invstd
    grads: list = [None] * len(node.inputs)
    if node.need[0]:
        scale = invstd if w is None else invstd * w.reshape(1, c, 1)
        if flags & _BN_TRAINING:
            g3 = g3 - g3.mean((0, 2), keepdims=True) - xhat * (g3 * xhat).mean((0, 2), keepdims=True)
        grads[0] = (scale * g3).reshape(x.shape)
    if w is not None and node.need[1]:
        grads[1] = (g.reshape(n, c, s) * xhat).sum((0, 2))
    if b is not None and node.need[2 if w is not None else 1]:
        grads[2 if w is not None else 1] = g.reshape(n, c, s).sum((0, 2))
    return tuple(grads)


_RULES["batch_norm"] = _batch_norm

from ._C import LN_BIAS as _LN_BIAS, LN_WEIGHT as _LN_WEIGHT  # noqa: E402


def _layer_norm(node, g):
    """layer_norm's and rms_norm's closed form in ops, with xhat and rstd recomputed from x
    (rows of D): dx = rstd (gw - mean(gw) - xhat mean(gw xhat)) with gw = g w (RMS norm: no
    mean subtracted, no mean(gw) term), dw = sum g xhat, db = sum g over the rows."""
    x = node.inputs[0]
    m, d, flags = node.ip[:3]
    rms = node.op == "rms_norm"
    rest = iter(node.inputs[1:])
    w = next(rest) if flags & _LN_WEIGHT else None
    b = next(rest) if flags & _LN_BIAS else None
    x2, g2 = x.reshape(m, d), g.reshape(m, d)
    xc = x2 if rms else x2 - x2.mean(1, keepdims=True)
    rstd = ((xc * xc).mean(1, keepdims=True) + node.p0).rsqrt()
    xhat = xc * rstd
    grads: list = [None] * len(node.inputs)
    if node.need[0]:
        gw = g2 if w is None else g2 * w.reshape(1, d)
        inner = gw - xhat * (gw * xhat).mean(1, keepdims=True)
        grads[0] = (rstd * (inner if rms else inner - gw.mean(1, keepdims=True))).reshape(x.shape)
    if w is not None and node.need[1]:
        grads[1] = (g2 * xhat).sum(0).reshape(w.shape)
    if b is not None and node.need[len(node.inputs) - 1]:
        grads[-1] = g2.sum(0).reshape(b.shape)
    return tuple(grads)


_RULES["layer_norm"] = _layer_norm
_RULES["rms_norm"] = _layer_norm

# ---- end of normalisation ----

# ---- embedding and losses ----
from ._C import EMB_SCALE_FREQ as _EMB_SCALE_FREQ, embedding_node_ids as _embedding_node_ids  # noqa: E402


def _embedding(node, g):
    """dW = g's rows added into zeros at the ids (scatter_add, linear in g), each row times
    0 at padding_idx and 1 / its id's count with scale_grad_by_freq."""
    w = node.inputs[0]
    n, d, pad, v, flags = node.ip[:5]
    ids = _embedding_node_ids(node.out)
    g2 = g.reshape(n, d)
    if pad >= 0 or flags & _EMB_SCALE_FREQ:
        scale = np.ones(n)
        if flags & _EMB_SCALE_FREQ:
            scale /= np.bincount(ids, minlength=v)[ids]
        scale[ids == pad] = 0.0
        g2 = g2 * copy_from_array(scale.reshape(n, 1), g.dtype)
    return (scatter_add(zeros((v, d), w.dtype), ids, g2),)


_RULES["embedding"] = _embedding

from ._C import class_loss_node_data as _class_loss_node_data  # noqa: E402


def _class_loss(node, g):
    """cross_entropy's (and nll_loss's) gradient in ops: per row, times its share s_i of g (0
    where the target is ignored), a_i softmax(x) - (1 - eps) w_t onehot(t) - (eps / C) w with
    a_i = (1 - eps) w_t + (eps / C) sum w; nll_loss: -w_t onehot(t). The softmax is of x, in
    the graph, so the second derivative sees it; the rest are constants of the targets."""
    x = node.inputs[0]
    n, c, reduction, ignore, _, nll = node.ip[:6]
    eps, denom = node.p0, node.p1
    t, w = _class_loss_node_data(node.out)
    w = np.ones(c) if w is None else w
    keep = t != ignore
    rows = np.arange(n)[keep]
    wt = np.zeros(n)
    wt[keep] = w[t[keep]]
    const = np.zeros((n, c))
    const[rows, t[keep]] = (1 - eps) * wt[keep]
    const[keep] += eps / c * w
    share = g.reshape(n, 1) if reduction == 0 else g / denom if reduction == 1 else g
    if nll:
        return (copy_from_array(-const, x.dtype) * share,)
    a = (1 - eps) * wt + keep * (eps / c * w.sum())
    d = x.softmax(1) * copy_from_array(a.reshape(n, 1), x.dtype) - copy_from_array(const, x.dtype)
    return (d * share,)


_RULES["cross_entropy"] = _RULES["nll_loss"] = _class_loss

# ---- end of embedding and losses ----

# ---- recurrent ----
from ._C import RNN_MODE_NAMES, concat, is_grad_enabled, linear, set_grad_enabled  # noqa: E402


def _rnn_cell(mode: str, xp_t, h, c, w_hh, b_hh):
    """One step of rnn_scan's recurrence in cgrad ops (PyTorch's equations, csrc/rnn.c):
    xp_t [B, G H] the step's input projection; returns (h, c), c None but for LSTM."""
    hid = h.shape[-1]
    gh = linear(h, w_hh, b_hh)
    if mode == "GRU":
        r = (xp_t[:, :hid] + gh[:, :hid]).sigmoid()
        z = (xp_t[:, hid:2 * hid] + gh[:, hid:2 * hid]).sigmoid()
        n = (xp_t[:, 2 * hid:] + r * gh[:, 2 * hid:]).tanh()
        return (1.0 - z) * n + z * h, None
    a = xp_t + gh
    if mode == "LSTM":
        i, f = a[:, :hid].sigmoid(), a[:, hid:2 * hid].sigmoid()
        g, o = a[:, 2 * hid:3 * hid].tanh(), a[:, 3 * hid:].sigmoid()
        c = f * c + i * g
        return o * c.tanh(), c
    return (a.tanh() if mode == "RNN_TANH" else a.relu()), None


def _rnn_scan(node, g):
    """rnn_scan's gradient as the taped sweep over the same recurrence written step by step
    in cgrad ops (_rnn_cell), recomputed from the node's inputs: a Python loop over time,
    which runs only when a second derivative is asked for. Each input enters through a
    reshape of its own, so the sweep's gradient for it is this node's partial derivative
    alone (not paths through the inputs' own history). The step-norm buffer is not
    written here (the C backward writes it)."""
    mode = RNN_MODE_NAMES[node.ip[0]]
    steps, batch, hid, flags = node.ip[1:5]
    rest = iter(node.inputs)
    names = ["xp", "w_hh"] + [n for bit, n in ((1, "h0"), (2, "c0"), (4, "b_hh"), (8, "norms")) if flags & bit]
    given = {n: next(rest) for n in names}
    prev = is_grad_enabled()
    set_grad_enabled(True)
    try:
        alias = {n: t.reshape(t.shape) for n, t in given.items() if n != "norms"}
        xp = alias["xp"].transpose(0, 1) if flags & 32 else alias["xp"]
        h = alias.get("h0")
        dtype = given["xp"].dtype
        h = h if h is not None else zeros((batch, hid), dtype)
        c = alias.get("c0")
        c = c if c is not None or mode != "LSTM" else zeros((batch, hid), dtype)
        hs: list = [None] * steps
        cs: list = [None] * steps
        for t in (range(steps - 1, -1, -1) if flags & 16 else range(steps)):
            h, c = _rnn_cell(mode, xp[t], h, c, alias["w_hh"], alias.get("b_hh"))
            hs[t], cs[t] = h.reshape(1, batch, hid), c.reshape(1, batch, hid) if c is not None else None
        y = concat(hs, 0)
        if mode == "LSTM":
            y = concat([y.reshape(1, steps, batch, hid), concat(cs, 0).reshape(1, steps, batch, hid)], 0)
        if flags & 32:
            y = y.transpose(-3, -2)
        wrt = [n for n in alias if alias[n].requires_grad]
        found = dict(zip(wrt, taped_grad([y], [g], [alias[n] for n in wrt])))
    finally:
        set_grad_enabled(prev)
    grads = [found.get(n) for n in names]
    return tuple(d if d is None or prev else d.detach() for d in grads)


_RULES["rnn_scan"] = _rnn_scan

# ---- end of recurrent ----

# ---- attention ----

# node.ip[5] of scaled_dot_product_attention (csrc/attention.c): a mask input, causal
_SD_MASK, _SD_CAUSAL = 1, 2


def _scaled_dot_product_attention(node, g):
    """The fused attention's gradient in ops, P recomputed from q and k so that it depends
    on them: dV = P^T g, dS = P (dP - rowsum(P dP)) with dP = g V^T, dQ = scale dS K,
    dK = scale dS^T Q, and the mask's gradient dS summed to its shape."""
    q, k, v = node.inputs[:3]
    flags, scale = node.ip[5], node.p0
    mask = node.inputs[3] if flags & _SD_MASK else None
    s = q.matmul(k.transpose(-2, -1)) * scale
    if mask is not None:
        s = s + mask
    if flags & _SD_CAUSAL:
        n, m = q.shape[-2], k.shape[-2]
        s = s + copy_from_array(np.where(np.tril(np.ones((n, m), bool)), 0.0, -np.inf), s.dtype)
    # rows masked out entirely are 0 in the op (PyTorch's CPU result); softmax would make NaN
    alive = np.isfinite(s.detach().numpy()).any(-1, keepdims=True)
    if alive.all():
        p = s.softmax(-1)
    else:
        p = where(np.broadcast_to(alive, s.shape), s, copy_from_array(np.zeros(s.shape), s.dtype)).softmax(-1) * copy_from_array(alive, s.dtype)
    grads: list = [None] * len(node.inputs)
    if node.need[2]:
        grads[2] = p.transpose(-2, -1).matmul(g)
    if any(node.need[:2]) or (mask is not None and node.need[3]):
        dp = g.matmul(v.transpose(-2, -1))
        ds = p * (dp - (dp * p).sum(-1, keepdims=True))
        if node.need[0]:
            grads[0] = ds.matmul(k) * scale
        if node.need[1]:
            grads[1] = ds.transpose(-2, -1).matmul(q) * scale
        if mask is not None and node.need[3]:
            grads[3] = _unbroadcast(ds, mask.shape)
    return tuple(grads)


_RULES["scaled_dot_product_attention"] = _scaled_dot_product_attention

# ---- end of attention ----


def _order(roots, wanted=None) -> list:
    """Nodes reachable from the roots, each after every node that uses its output. With
    `wanted` (the tensor keys of the targets), each node's `need` says which of its inputs'
    gradients lead to a target, so rules skip the others (a parameter's dW in a gradient
    with respect to the input, say), and nodes that lead to none are left out."""
    seen: set = set()
    post: list = []
    for root in roots:
        if root.grad_fn is None or node_params(root)[0] in seen:
            continue
        stack = [(_Node(root), 0)]
        seen.add(stack[0][0].key)
        while stack:
            node, i = stack[-1]
            if i < len(node.inputs):
                stack[-1] = (node, i + 1)
                key = node.in_keys[i]
                if key is not None and key not in seen:
                    seen.add(key)
                    stack.append((_Node(node.inputs[i]), 0))
            else:
                stack.pop()
                post.append(node)
    if wanted is None:
        return post[::-1]
    leads: set = set()  # keys of the nodes whose output leads to a target
    kept = []
    for node in post:  # inputs before the nodes that use them
        node.need = tuple(x.requires_grad and (tensor_key(x) in wanted or (k is not None and k in leads))
                          for x, k in zip(node.inputs, node.in_keys))
        if any(node.need):
            leads.add(node.key)
            kept.append(node)
    return kept[::-1]


def taped_grad(roots, seeds, targets) -> list:
    """d(sum of seed . root)/d(target) for each target, as tensors on the tape."""
    wanted = {tensor_key(t): i for i, t in enumerate(targets)}
    found: list = [None] * len(targets)
    grads: dict = {}  # node key, or tensor key for a leaf, -> gradient so far

    def add(key, g):
        grads[key] = g if key not in grads else grads[key] + g

    for r, s in zip(roots, seeds):
        add(node_params(r)[0] if r.grad_fn is not None else tensor_key(r), s)
        if tensor_key(r) in wanted:
            i = wanted[tensor_key(r)]
            found[i] = s if found[i] is None else found[i] + s
    for node in _order(roots, wanted):
        g = grads.pop(node.key, None)
        if g is None:
            continue
        hooks = python_node_owner(node.out, True)
        if hooks is not None:  # hooks on the output see (and may replace) its whole gradient
            (g,) = hooks._cg_backward(g)
        rule = _RULES.get(node.op) or (_unary if node.op in _UNARY else None)
        if rule is None:
            raise NotImplementedError(f"create_graph: the double backward of '{node.op}' is not written yet")
        for x, dx, need, in_key in zip(node.inputs, rule(node, g), node.need, node.in_keys):
            if dx is None or not need:
                continue
            key = tensor_key(x)
            if key in wanted:
                i = wanted[key]
                found[i] = dx if found[i] is None else found[i] + dx
            if in_key is not None:
                add(in_key, dx)
    return found


def backward(root, seed, create_graph: bool, inputs) -> None:
    """Tensor.backward(create_graph=True or inputs=...): the taped sweep, accumulated into
    the .grad of `inputs` (default: every leaf that requires grad and that root reaches)."""
    from ._C import is_grad_enabled, set_grad_enabled
    if not root.requires_grad:
        raise RuntimeError("backward: the tensor does not require grad and has no grad_fn")
    if seed is None:
        if root.numel() != 1:
            raise RuntimeError(f"backward: grad can be implicitly created only for a tensor with one element, "
                               f"but this tensor has shape {root.shape}")
        seed = zeros(root.shape, root.dtype) + 1.0
    elif not isinstance(seed, type(root)):
        seed = copy_from_array(seed, root.dtype)
    if inputs is None:
        targets, keys = [], set()
        for node in _order([root]):
            for x in node.inputs:
                if x.grad_fn is None and x.requires_grad and tensor_key(x) not in keys:
                    keys.add(tensor_key(x))
                    targets.append(x)
        if root.grad_fn is None:
            targets.append(root)
    else:
        targets = [inputs] if isinstance(inputs, type(root)) else list(inputs)
    prev = is_grad_enabled()
    set_grad_enabled(create_graph)
    try:
        found = taped_grad([root], [seed], targets)
    finally:
        set_grad_enabled(prev)
    for t, g in zip(targets, found):
        if g is not None:
            t._accumulate_grad(g if create_graph else g.detach())
