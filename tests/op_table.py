"""The op table (docs/architecture.md, "How to add an op"): one line per op, driving the generic tests.

Each OpInfo names the C op it covers, a cgrad function, a numpy reference, the input
shapes, and how to draw inputs (domain, and kinks to stay away from so that finite
differences are meaningful). A composite line (covers=None) tests a function built from
several C ops or in Python (var, squeeze, the losses but cross_entropy, ...) and claims
no C op. test_ops.py checks forward against numpy in both dtypes, gradients against
finite differences in float64, float32 against float64, replay against eager, agreement
with PyTorch where installed, and that every op the C core registers has at least one
line that covers it; test_inplace.py checks what each backward reads.
"""
import math
from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np

import cgrad
import pool_reference as _pool
import rnn_reference as _rnn
from cgrad.nn import functional as F


@dataclass
class OpInfo:
    name: str                      # test id
    covers: str | None             # the C op name (cgrad._C.op_names()); None: a composite
    fn: Callable                   # cgrad tensors -> cgrad tensor
    ref: Callable                  # numpy arrays -> numpy array
    shapes: Sequence[tuple]        # one shape per input
    low: float = -2.0
    high: float = 2.0
    kinks: Sequence[float] = ()    # input values to stay at least `gap` away from
    gap: float = 1e-2
    distinct: bool = False         # inputs must not tie with each other (max/min)
    rtol32: float = 1e-5
    torch: Callable | str | None = "fn"  # the same op on torch tensors: "fn" when fn itself
    #                                       runs on them, None when PyTorch has no counterpart
    replays: bool = True           # False: it computes indices with numpy (argmax, sort), which
    #                                cgrad.compile refuses while recording

    def inputs(self, rng, dtype=np.float64):
        arrays = []
        for shape in self.shapes:
            a = rng.uniform(self.low, self.high, shape)
            for k in self.kinks:
                near = np.abs(a - k) < self.gap
                a[near] = k + np.where(a[near] >= k, self.gap, -self.gap) * 2
            arrays.append(a.astype(dtype))
        if self.distinct:  # on separate grids: no ties between inputs, even broadcast
            arrays = [(np.round(a * 10) / 10 + 0.03 * i).astype(dtype) for i, a in enumerate(arrays)]
        return arrays


def _np_logsumexp(x, axis=None, keepdims=False):
    m = np.max(x, axis=axis, keepdims=True)
    out = m + np.log(np.sum(np.exp(x - m), axis=axis, keepdims=True))
    return out if keepdims else np.squeeze(out, axis=axis)


def _np_softmax(x, axis=-1):
    e = np.exp(x - x.max(axis=axis, keepdims=True))
    return e / e.sum(axis=axis, keepdims=True)


def _np_log_softmax(x, axis=-1):
    return x - _np_logsumexp(x, axis=axis, keepdims=True)


def _sigmoid(x):
    return 1 / (1 + np.exp(-x))


_np_erf = np.vectorize(math.erf, otypes=[np.float64])
_MASK = np.array([True, False, True, False])
_IDX = np.array([[0, 3], [1, 1], [2, 0]])
_IDS = np.array([[0, 2, 6, 2], [5, 5, 2, 1]])  # embedding ids into a table of 7 rows  # gather/scatter_add along dim 1 of a (3, 4)


def _np_scatter_add(x, index, src, axis):
    out = x.copy()
    for pos in np.ndindex(index.shape):
        at = list(pos)
        at[axis] = index[pos]
        out[tuple(at)] += src[pos]
    return out


def _torch(fn):
    """fn(torch, *tensors) as a torch-side function; PyTorch is imported when it is called
    (CI has no PyTorch)."""
    def call(*xs):
        import torch
        return fn(torch, *xs)
    return call


def _tF(name, *args, **kwargs):
    """torch.nn.functional.<name>(x, *args, **kwargs)."""
    return _torch(lambda torch, *xs: getattr(torch.nn.functional, name)(*xs, *args, **kwargs))


# ---- convolution: naive numpy references, one tap at a time ----
def _pairs(v):
    return (v, v) if isinstance(v, int) else tuple(v)


def _conv_windows(shape_hw, k_hw, stride, pad, dilation, out_hw):
    """For each tap (i, j): the slices of the padded input under it at every output position."""
    (s0, s1), (d0, d1) = stride, dilation
    for i in range(k_hw[0]):
        for j in range(k_hw[1]):
            yield i, j, (slice(i * d0, i * d0 + s0 * (out_hw[0] - 1) + 1, s0),
                         slice(j * d1, j * d1 + s1 * (out_hw[1] - 1) + 1, s1))


def _conv_out(size, k, s, lo, hi, d):
    return (size + lo + hi - d * (k - 1) - 1) // s + 1


def np_conv2d(x, w, b=None, stride=1, padding=0, dilation=1, groups=1):
    """PyTorch's conv2d in numpy; padding: an int, a pair, or ((top, bottom), (left, right))."""
    stride, dilation = _pairs(stride), _pairs(dilation)
    pads = padding if isinstance(padding, tuple) and isinstance(padding[0], tuple) else \
        tuple((p, p) for p in _pairs(padding))
    xp = np.pad(x, ((0, 0), (0, 0), *pads))
    N, C = x.shape[:2]
    OC, CG, KH, KW = w.shape
    out = tuple(_conv_out(x.shape[2 + a], w.shape[2 + a], stride[a], *pads[a], dilation[a]) for a in range(2))
    y = np.zeros((N, OC, *out), x.dtype)
    og = OC // groups
    for g in range(groups):
        for i, j, (si, sj) in _conv_windows(x.shape[2:], (KH, KW), stride, pads, dilation, out):
            patch = xp[:, g * CG:(g + 1) * CG, si, sj]
            y[:, g * og:(g + 1) * og] += np.einsum("nchw,oc->nohw", patch, w[g * og:(g + 1) * og, :, i, j])
    return y if b is None else y + b.reshape(1, -1, 1, 1)


def np_conv1d(x, w, b=None, stride=1, padding=0, dilation=1, groups=1):
    pad = padding if isinstance(padding, tuple) else (padding, padding)
    return np_conv2d(x[:, :, None], w[:, :, None], b, (1, stride), ((0, 0), pad), (1, dilation), groups)[:, :, 0]


def np_conv2d_dx(g, w, in_hw, stride, pad, dilation, groups):
    """The adjoint of np_conv2d in x (padding before = pad, after implied by g's size)."""
    N, OC, OH, OW = g.shape
    _, CG, KH, KW = w.shape
    full = [max(in_hw[a] + pad[a], (g.shape[2 + a] - 1) * stride[a] + dilation[a] * (w.shape[2 + a] - 1) + 1)
            for a in range(2)]
    dxp = np.zeros((N, CG * groups, *full), g.dtype)
    og = OC // groups
    for q in range(groups):
        for i, j, (si, sj) in _conv_windows(in_hw, (KH, KW), stride, None, dilation, (OH, OW)):
            dxp[:, q * CG:(q + 1) * CG, si, sj] += np.einsum("nohw,oc->nchw", g[:, q * og:(q + 1) * og],
                                                             w[q * og:(q + 1) * og, :, i, j])
    return dxp[:, :, pad[0]:pad[0] + in_hw[0], pad[1]:pad[1] + in_hw[1]]


def np_conv2d_dw(g, x, k_hw, stride, pad, dilation, groups):
    """The adjoint of np_conv2d in w."""
    N, OC, OH, OW = g.shape
    C = x.shape[1]
    full = [max(x.shape[2 + a] + pad[a], (g.shape[2 + a] - 1) * stride[a] + dilation[a] * (k_hw[a] - 1) + 1)
            for a in range(2)]
    xp = np.zeros((N, C, *full), x.dtype)
    xp[:, :, pad[0]:pad[0] + x.shape[2], pad[1]:pad[1] + x.shape[3]] = x
    cg, og = C // groups, OC // groups
    dw = np.zeros((OC, cg, *k_hw), x.dtype)
    for q in range(groups):
        for i, j, (si, sj) in _conv_windows(x.shape[2:], k_hw, stride, None, dilation, (OH, OW)):
            dw[q * og:(q + 1) * og, :, i, j] = np.einsum("nohw,nchw->oc", g[:, q * og:(q + 1) * og],
                                                         xp[:, q * cg:(q + 1) * cg, si, sj])
    return dw


def _conv_line(name, n, x_shape, w_shape, bias=True, **kw):
    F_, ref = (F.conv2d, np_conv2d) if n == 2 else (F.conv1d, np_conv1d)
    ref_kw = dict(kw)
    if kw.get("padding") == "same":  # d (k - 1) in all, the odd one after
        d = _pairs(kw.get("dilation", 1))[:n] if n == 2 else (kw.get("dilation", 1),)
        tot = [dd * (k - 1) for dd, k in zip(d, w_shape[2:])]
        pads = tuple((t // 2, t - t // 2) for t in tot)
        ref_kw["padding"] = pads if n == 2 else pads[0]
    shapes = [x_shape, w_shape] + ([(w_shape[0],)] if bias else [])
    torch_fn = _tF(f"conv{n}d", **{k: v for k, v in kw.items()})
    if bias:
        return OpInfo(name, "conv", lambda x, w, b: F_(x, w, b, **kw), lambda x, w, b: ref(x, w, b, **ref_kw),
                      shapes, torch=lambda x, w, b: torch_fn(x, w, b))
    return OpInfo(name, "conv", lambda x, w: F_(x, w, None, **kw), lambda x, w: ref(x, w, None, **ref_kw),
                  shapes, torch=lambda x, w: torch_fn(x, w))


def _conv_adjoint_line(name, op, g_shape, other_shape, size, stride, pad, dilation, groups):
    fn = getattr(cgrad._C, op)
    ref = np_conv2d_dx if op == "conv_dx" else np_conv2d_dw
    return OpInfo(name, op, lambda g, o: fn(g, o, stride, pad, dilation, groups, size),
                  lambda g, o: ref(g, o, size, stride, pad, dilation, groups), [g_shape, other_shape], torch=None)


# ---- the losses: fixed targets, drawn once ----
_TRNG = np.random.default_rng(3)
LS = (6, 4)
TARGET = _TRNG.integers(-1, 2, LS).astype(np.float64)  # on the grid {-1, 0, 1}: the kinks of
#                                                         |input - target| are those values
BIN = (_TRNG.random(LS) > 0.5).astype(np.float64)
CLS = _TRNG.integers(0, LS[1], LS[0])
HUBER = 0.8


def _np_reduce(loss, reduction):
    return {"mean": np.mean, "sum": np.sum, "none": lambda v: v}[reduction](loss)


def _loss_lines(name, target, ref, reductions, covers=None, options=None, **info):
    """Lines for F.<name>(input, target, reduction=r, **options), one per reduction r,
    against ref(x, target) (the unreduced loss in numpy) and PyTorch's loss of the same
    name; composite unless `covers` names the C op; info: the OpInfo fields for drawing
    the input."""
    options = options or {}

    def line(r):
        return OpInfo(f"{name}_{r}", covers, lambda x: getattr(F, name)(x, target, reduction=r, **options),
                      lambda x: _np_reduce(ref(x, target), r), [LS],
                      torch=_torch(lambda torch, x: getattr(torch.nn.functional, name)(
                          x, torch.as_tensor(target), reduction=r, **options)), **info)
    return [line(r) for r in reductions]


def _joined(pieces, dim, cat):
    """The pieces scaled by 1, 2, 3, ... and joined by cat (cgrad's, numpy's or torch's):
    each piece of a split gets a different gradient, so a misrouted one fails."""
    return cat([p * (k + 1) for k, p in enumerate(pieces)], dim)


def _einsum_line(name, equation, *shapes):
    return OpInfo(name, None, lambda *xs: cgrad.einsum(equation, *xs), lambda *xs: np.einsum(equation, *xs),
                  list(shapes), torch=_torch(lambda torch, *xs: torch.einsum(equation, *xs)))


# ---- attention: a naive reference, one row at a time ----
def _np_sdpa(q, k, v, mask=None, causal=False, scale=None):
    """softmax(q k^T scale + mask) v with loops over the batch and rows; a bool mask keeps
    True; a fully masked row gives 0 (as PyTorch's CPU kernels)."""
    scale = 1 / math.sqrt(q.shape[-1]) if scale is None else scale
    batch = np.broadcast_shapes(q.shape[:-2], k.shape[:-2], v.shape[:-2])
    L, S = q.shape[-2], k.shape[-2]
    out = np.zeros(batch + (L, v.shape[-1]))
    for b in np.ndindex(*batch):
        qb, kb, vb = (np.broadcast_to(t, batch + t.shape[-2:])[b] for t in (q, k, v))
        mb = None if mask is None else np.broadcast_to(mask, batch + (L, S))[b]
        for i in range(L):
            s = np.array([qb[i] @ kb[j] * scale for j in range(S)])
            if mb is not None:
                s = np.where(mb[i], s, -np.inf) if mb.dtype == bool else s + mb[i]
            if causal:
                s[i + 1:] = -np.inf
            if np.all(s == -np.inf):
                continue
            e = np.exp(s - s.max())
            out[b + (i,)] = (e / e.sum()) @ vb
    return out


_SDPA_BOOL = np.random.default_rng(5).random((3, 5)) > 0.4
_SDPA_BOOL[1] = False  # a fully masked row


def _sdpa_line(name, fn, shapes, mask=None, causal=False, scale=None):
    """An OpInfo of the fused attention: a fourth input is a float mask."""
    def ref(q, k, v, m=None):
        return _np_sdpa(q, k, v, m if m is not None else mask, causal, scale)

    def torch_fn(torch, q, k, v, m=None):
        am = m if m is not None else (None if mask is None else torch.as_tensor(mask))
        return torch.nn.functional.scaled_dot_product_attention(q, k, v, attn_mask=am, is_causal=causal, scale=scale)
    return OpInfo(name, "scaled_dot_product_attention", fn, ref, shapes, torch=_torch(torch_fn))


# ---- cross_entropy and nll_loss with weights, ignore_index and label smoothing ----
_CE_T = np.array([0, 1, 3, 1, 2, 3])
_CE_W = np.array([0.5, 2.0, 1.0, 1.5])
_CE_T3 = np.array([[0, 2, 1, 0], [1, 1, 2, 0]])  # (N, d) targets of (2, 3, 4) logits
_CE_P = _TRNG.dirichlet(np.ones(4), 6)  # class probabilities


def _np_ce(x, t, w, ignore, eps, reduction, nll=False):
    """PyTorch's definition: (1 - eps) w_t (-lp_t) + (eps / C) sum_c w_c (-lp_c) per kept row,
    'mean' over the kept targets' weights."""
    n, c = x.shape
    w = np.ones(c) if w is None else w
    lp = x if nll else _np_log_softmax(x, 1)
    keep = t != ignore
    ts = np.where(keep, t, 0)
    loss = (1 - eps) * w[ts] * -lp[np.arange(n), ts] + eps / c * -(lp * w).sum(1)
    loss = np.where(keep, loss, 0.0)
    if reduction == "none":
        return loss
    return loss.sum() / (w[ts] * keep).sum() if reduction == "mean" else loss.sum()


# ---- layer norm and RMS norm over the last k dims ----
def _np_ln(x, k, eps=1e-5):
    axes = tuple(range(x.ndim - k, x.ndim))
    return (x - x.mean(axes, keepdims=True)) / np.sqrt(x.var(axes, keepdims=True) + eps)


def _tnorm(name, shape, **kwargs):
    """torch.nn.functional.<name>(x, shape, *params, **kwargs): the shape comes second."""
    return _torch(lambda torch, x, *ps: getattr(torch.nn.functional, name)(x, shape, *ps, **kwargs))


def _np_rms(x, k, eps):
    axes = tuple(range(x.ndim - k, x.ndim))
    return x / np.sqrt((x * x).mean(axes, keepdims=True) + eps)


S = (3, 4)
OPS = [
    # ---- unary elementwise ----
    OpInfo("neg", "neg", lambda x: -x, lambda x: -x, [S]),
    OpInfo("exp", "exp", lambda x: x.exp(), np.exp, [S]),
    OpInfo("log", "log", lambda x: x.log(), np.log, [S], low=0.2, high=3),
    OpInfo("sqrt", "sqrt", lambda x: x.sqrt(), np.sqrt, [S], low=0.2, high=3),
    OpInfo("abs", "abs", lambda x: x.abs(), np.abs, [S], kinks=[0]),
    OpInfo("relu", "relu", lambda x: x.relu(), lambda x: np.maximum(x, 0), [S], kinks=[0]),
    OpInfo("leaky_relu", "leaky_relu", lambda x: x.leaky_relu(0.1),
           lambda x: np.where(x > 0, x, 0.1 * x), [S], kinks=[0], torch=_tF("leaky_relu", 0.1)),
    OpInfo("sigmoid", "sigmoid", lambda x: x.sigmoid(), _sigmoid, [S], low=-6, high=6),
    OpInfo("tanh", "tanh", lambda x: x.tanh(), np.tanh, [S]),
    OpInfo("softplus", "softplus", lambda x: x.softplus(), lambda x: np.logaddexp(0, x), [S], low=-30, high=30,
           torch=_tF("softplus")),
    OpInfo("pow_int", "pow_scalar", lambda x: x ** 3, lambda x: x ** 3, [S]),
    OpInfo("pow_frac", "pow_scalar", lambda x: x ** 1.5, lambda x: x ** 1.5, [S], low=0.2, high=3),
    OpInfo("pow_neg", "pow_scalar", lambda x: x ** -2, lambda x: x ** -2.0, [S], low=0.5, high=3),
    OpInfo("clip", "clip", lambda x: x.clip(-0.5, 0.7), lambda x: np.clip(x, -0.5, 0.7), [S],
           kinks=[-0.5, 0.7]),
    OpInfo("add_scalar", "add_scalar", lambda x: x + 2.5, lambda x: x + 2.5, [S]),
    OpInfo("radd_scalar", "add_scalar", lambda x: 2.5 + x, lambda x: 2.5 + x, [S]),
    OpInfo("sub_scalar", "add_scalar", lambda x: x - 1.5, lambda x: x - 1.5, [S]),
    OpInfo("mul_scalar", "mul_scalar", lambda x: x * -3.0, lambda x: x * -3.0, [S]),
    OpInfo("rmul_scalar", "mul_scalar", lambda x: 0.5 * x, lambda x: 0.5 * x, [S]),
    OpInfo("div_scalar", "div_scalar", lambda x: x / 3.0, lambda x: x / 3.0, [S]),
    OpInfo("rsub_scalar", "rsub_scalar", lambda x: 1.0 - x, lambda x: 1.0 - x, [S]),
    OpInfo("rdiv_scalar", "rdiv_scalar", lambda x: 2.0 / x, lambda x: 2.0 / x, [S],
           low=0.3, high=3),
    OpInfo("rpow_scalar", "mul_scalar", lambda x: 2.0 ** x, lambda x: 2.0 ** x, [S]),
    OpInfo("sin", "sin", lambda x: x.sin(), np.sin, [S], low=-4, high=4),
    OpInfo("cos", "cos", lambda x: x.cos(), np.cos, [S], low=-4, high=4),
    OpInfo("tan", "tan", lambda x: x.tan(), np.tan, [S], low=-1.3, high=1.3),
    OpInfo("atan", "atan", lambda x: x.atan(), np.arctan, [S], low=-4, high=4),
    OpInfo("sinh", "sinh", lambda x: x.sinh(), np.sinh, [S]),
    OpInfo("cosh", "cosh", lambda x: x.cosh(), np.cosh, [S]),
    OpInfo("erf", "erf", lambda x: x.erf(), _np_erf, [S]),
    OpInfo("log1p", "log1p", lambda x: x.log1p(), np.log1p, [S], low=-0.8, high=3),
    OpInfo("expm1", "expm1", lambda x: x.expm1(), np.expm1, [S]),
    OpInfo("log2", "log2", lambda x: x.log2(), np.log2, [S], low=0.2, high=3),
    OpInfo("log10", "log10", lambda x: x.log10(), np.log10, [S], low=0.2, high=3),
    OpInfo("square", "square", lambda x: x.square(), np.square, [S]),
    OpInfo("reciprocal", "reciprocal", lambda x: x.reciprocal(), np.reciprocal, [S], low=0.3, high=3),
    OpInfo("rsqrt", "rsqrt", lambda x: x.rsqrt(), lambda x: 1 / np.sqrt(x), [S], low=0.3, high=3),
    OpInfo("sign", "sign", lambda x: x.sign(), np.sign, [S], kinks=[0]),
    OpInfo("floor", "floor", lambda x: x.floor(), np.floor, [S], kinks=[-2, -1, 0, 1, 2]),
    OpInfo("ceil", "ceil", lambda x: x.ceil(), np.ceil, [S], kinks=[-2, -1, 0, 1, 2]),
    OpInfo("round", "round", lambda x: x.round(), np.round, [S], kinks=[-1.5, -0.5, 0.5, 1.5]),
    OpInfo("round_decimals", "round", lambda x: x.round(decimals=1), lambda x: np.round(x, 1), [S],
           kinks=np.arange(-2, 2, 0.1) + 0.05, gap=2e-3),
    OpInfo("trunc", "trunc", lambda x: x.trunc(), np.trunc, [S], kinks=[-1, 0, 1]),
    OpInfo("silu", "silu", F.silu, lambda x: x * _sigmoid(x), [S], low=-4, high=4, torch=_tF("silu")),
    OpInfo("gelu", "gelu", F.gelu, lambda x: 0.5 * x * (1 + _np_erf(x / np.sqrt(2))), [S], low=-4, high=4,
           torch=_tF("gelu")),
    OpInfo("gelu_tanh", "gelu_tanh", lambda x: F.gelu(x, approximate="tanh"),
           lambda x: 0.5 * x * (1 + np.tanh(np.sqrt(2 / np.pi) * (x + 0.044715 * x ** 3))), [S],
           low=-4, high=4, torch=_tF("gelu", approximate="tanh")),
    OpInfo("elu", "elu", lambda x: F.elu(x, alpha=0.7), lambda x: np.where(x > 0, x, 0.7 * np.expm1(x)),
           [S], kinks=[0], torch=_tF("elu", alpha=0.7)),
    OpInfo("selu", "selu", F.selu,
           lambda x: 1.0507009873554805 * np.where(x > 0, x, 1.6732632423543772 * np.expm1(x)), [S], kinks=[0],
           torch=_tF("selu")),
    OpInfo("hardtanh", "hardtanh", lambda x: F.hardtanh(x, -0.5, 0.8), lambda x: np.clip(x, -0.5, 0.8), [S],
           kinks=[-0.5, 0.8], torch=_tF("hardtanh", -0.5, 0.8)),
    OpInfo("softsign", "softsign", F.softsign, lambda x: x / (1 + np.abs(x)), [S], kinks=[0],
           torch=_tF("softsign")),
    OpInfo("mish", "mish", F.mish, lambda x: x * np.tanh(np.logaddexp(0, x)), [S], low=-4, high=4,
           torch=_tF("mish")),
    # ---- binary, with broadcasting ----
    OpInfo("add", "add", lambda a, b: a + b, np.add, [S, S]),
    OpInfo("add_bcast_row", "add", lambda a, b: a + b, np.add, [(3, 4), (4,)]),
    OpInfo("add_bcast_col", "add", lambda a, b: a + b, np.add, [(3, 1), (1, 4)]),
    OpInfo("add_bcast_3d", "add", lambda a, b: a + b, np.add, [(2, 1, 4), (3, 1)]),
    OpInfo("add_scalar_tensor", "add", lambda a, b: a + b, np.add, [(), (2, 3)]),
    OpInfo("sub", "sub", lambda a, b: a - b, np.subtract, [(2, 3, 4), (3, 1)]),
    OpInfo("mul", "mul", lambda a, b: a * b, np.multiply, [(4, 1, 3), (2, 3)]),
    OpInfo("div", "div", lambda a, b: a / b, np.divide, [(2, 3), (3,)], low=0.5, high=2),
    OpInfo("maximum", "maximum", cgrad.maximum, np.maximum, [(3, 4), (4,)], distinct=True,
           torch=_torch(lambda torch, a, b: torch.maximum(a, b))),
    OpInfo("minimum", "minimum", cgrad.minimum, np.minimum, [(3, 4), (3, 1)], distinct=True,
           torch=_torch(lambda torch, a, b: torch.minimum(a, b))),
    OpInfo("pow_tensor", "pow", lambda a, b: a ** b, np.power, [(3, 4), (4,)], low=0.3, high=2),
    OpInfo("rpow_tensor", "pow", lambda a, b: cgrad.pow(a, b), np.power, [(3, 1), (3, 4)], low=0.3, high=2,
           torch=_torch(lambda torch, a, b: torch.pow(a, b))),
    OpInfo("tanh_backward", "tanh_backward", cgrad._C.tanh_backward, lambda g, y: g * (1 - y * y),
           [(3, 4), (3, 4)], low=-0.9, high=0.9,
           torch=_torch(lambda torch, g, y: torch.ops.aten.tanh_backward(g, y))),
    OpInfo("atan2", "atan2", cgrad.atan2, np.arctan2, [(3, 4), (3, 1)], kinks=[0],
           torch=_torch(lambda torch, a, b: torch.atan2(a, b))),
    OpInfo("where", "where", lambda a, b: cgrad.where(_MASK, a, b), lambda a, b: np.where(_MASK, a, b),
           [(3, 4), (3, 1)], torch=_torch(lambda torch, a, b: torch.where(torch.as_tensor(_MASK), a, b))),
    # ---- reductions ----
    OpInfo("sum_all", "sum", lambda x: x.sum(), np.sum, [(3, 4)]),
    OpInfo("sum_axis", "sum", lambda x: x.sum(axis=1), lambda x: x.sum(axis=1), [(2, 3, 4)]),
    OpInfo("sum_axes_keep", "sum", lambda x: x.sum(axis=(0, 2), keepdims=True),
           lambda x: x.sum(axis=(0, 2), keepdims=True), [(2, 3, 4)]),
    OpInfo("sum_dim", "sum", lambda x: x.sum(dim=-1, keepdim=True),
           lambda x: x.sum(axis=-1, keepdims=True), [(2, 3, 4)]),
    OpInfo("mean_all", "mean", lambda x: x.mean(), np.mean, [(3, 4)]),
    OpInfo("mean_axis", "mean", lambda x: x.mean(axis=0), lambda x: x.mean(axis=0), [(3, 4, 2)]),
    OpInfo("max_all", "max", lambda x: x.max(), np.max, [(3, 4)]),
    OpInfo("max_axis", "max", lambda x: x.amax(1, keepdim=True),
           lambda x: x.max(axis=1, keepdims=True), [(3, 4, 2)]),
    OpInfo("min_axis", "min", lambda x: x.amin(-1), lambda x: x.min(axis=-1), [(3, 4)]),
    OpInfo("logsumexp_all", "logsumexp", lambda x: x.logsumexp(), _np_logsumexp, [(3, 4)],
           torch=lambda x: x.logsumexp((0, 1))),
    OpInfo("logsumexp_axis", "logsumexp", lambda x: x.logsumexp(axis=1),
           lambda x: _np_logsumexp(x, axis=1), [(3, 5, 2)]),
    OpInfo("softmax", "softmax", lambda x: x.softmax(axis=-1), _np_softmax, [(3, 5)]),
    OpInfo("softmax_axis0", "softmax", lambda x: x.softmax(dim=0),
           lambda x: _np_softmax(x, axis=0), [(4, 3)]),
    OpInfo("log_softmax", "log_softmax", lambda x: x.log_softmax(axis=1),
           lambda x: _np_log_softmax(x, axis=1), [(3, 5)]),
    OpInfo("log_softmax_mid", "log_softmax", lambda x: x.log_softmax(axis=1),
           lambda x: _np_log_softmax(x, axis=1), [(2, 4, 3)]),
    # ---- matmul ----
    OpInfo("matmul", "matmul", lambda a, b: a @ b, np.matmul, [(3, 4), (4, 5)]),
    OpInfo("matmul_batched", "matmul", lambda a, b: a @ b, np.matmul, [(2, 3, 4), (2, 4, 5)]),
    OpInfo("matmul_bcast_w", "matmul", lambda a, b: a @ b, np.matmul, [(2, 3, 4), (4, 5)]),
    OpInfo("matmul_bcast_x", "matmul", lambda a, b: a @ b, np.matmul, [(3, 4), (2, 4, 5)]),
    OpInfo("matmul_bcast_both", "matmul", lambda a, b: a @ b, np.matmul,
           [(2, 1, 3, 4), (1, 3, 4, 2)]),
    OpInfo("matmul_vec", "matmul", lambda a, b: a @ b, np.matmul, [(4,), (4, 3)]),
    OpInfo("matvec", "matmul", lambda a, b: a @ b, np.matmul, [(3, 4), (4,)]),
    OpInfo("linear", "linear", lambda x, w, b: cgrad.nn.functional.linear(x, w, b),
           lambda x, w, b: x @ w.T + b, [(4, 3), (5, 3), (5,)], torch=_tF("linear")),
    OpInfo("linear_nobias_3d", "linear", lambda x, w: cgrad.nn.functional.linear(x, w),
           lambda x, w: x @ w.T, [(2, 4, 3), (5, 3)], torch=_tF("linear")),
    # op(a) op(b) with transpose flags: the taped rules' A^T G and G B^T (no public name)
    *[OpInfo(f"gemm_{'t' if ta else 'n'}{'t' if tb else 'n'}", "gemm",
             lambda a, b, ta=ta, tb=tb: cgrad._C.gemm(a, b, ta, tb),
             lambda a, b, ta=ta, tb=tb: (a.T if ta else a) @ (b.T if tb else b),
             [(4, 3) if ta else (3, 4), (5, 4) if tb else (4, 5)],
             torch=_torch(lambda torch, a, b, ta=ta, tb=tb: (a.T if ta else a) @ (b.T if tb else b)))
      for ta in (False, True) for tb in (False, True)],
    # ---- shape ----
    OpInfo("reshape", "reshape", lambda x: x.reshape(4, -1), lambda x: x.reshape(4, -1), [(2, 3, 2)]),
    OpInfo("transpose", "strided", lambda x: x.T, lambda x: x.T, [(3, 4)]),
    OpInfo("transpose_pair", "strided", lambda x: x.transpose(0, 2),
           lambda x: np.swapaxes(x, 0, 2), [(2, 3, 4)]),
    OpInfo("permute", "strided", lambda x: x.permute(1, 2, 0), lambda x: x.transpose(1, 2, 0),
           [(2, 3, 4)]),
    OpInfo("slice", "strided", lambda x: x[1:3], lambda x: x[1:3], [(4, 3)]),
    OpInfo("slice_step", "strided", lambda x: x[::-2, 1:], lambda x: x[::-2, 1:], [(5, 3)],
           torch=lambda x: x.flip(0)[::2, 1:]),
    OpInfo("index_int", "strided", lambda x: x[1], lambda x: x[1], [(3, 4)]),
    OpInfo("index_mixed", "strided", lambda x: x[..., 2, None], lambda x: x[..., 2, None], [(2, 3, 4)]),
    OpInfo("gather", "gather", lambda x: x[np.array([2, 0, 2, 1])],
           lambda x: x[np.array([2, 0, 2, 1])], [(3, 4)]),
    OpInfo("gather_pairs", "gather", lambda x: x[np.arange(3), np.array([1, 0, 3])],
           lambda x: x[np.arange(3), np.array([1, 0, 3])], [(3, 4)]),
    OpInfo("gather_mask", "gather", lambda x: x[np.array([True, False, True])],
           lambda x: x[np.array([True, False, True])], [(3, 2)]),
    OpInfo("concat_pair", "concat", lambda a, b: cgrad.concatenate([a, b], axis=0),
           lambda a, b: np.concatenate([a, b], axis=0), [(2, 3), (1, 3)],
           torch=_torch(lambda torch, a, b: torch.cat([a, b], dim=0))),  # one C op on its leaves
    OpInfo("concat", "concat", lambda a, b: cgrad.concatenate([a, b, a], axis=1),
           lambda a, b: np.concatenate([a, b, a], axis=1), [(2, 3), (2, 1)],
           torch=_torch(lambda torch, a, b: torch.cat([a, b, a], dim=1))),
    OpInfo("stack", "concat", lambda a, b: cgrad.stack([a, b], axis=1),
           lambda a, b: np.stack([a, b], axis=1), [(2, 3), (2, 3)],
           torch=_torch(lambda torch, a, b: torch.stack([a, b], dim=1))),
    # ---- promotion, scattering, and what integer indices pick along a dim ----
    # the cast C op to its own dtype (the table keeps dtypes; test_promotion.py converts)
    OpInfo("cast", "cast", lambda x: cgrad._C.cast(x, x.dtype), lambda x: x.copy(), [S], torch=lambda x: x.clone()),
    OpInfo("scatter_add_rows", "scatter_add", lambda x, s: cgrad._C.scatter_add(x, np.array([2, 0, 2]), s),
           lambda x, s: _np_scatter_add(x, np.array([2, 0, 2])[:, None].repeat(4, 1), s, 0), [(3, 4), (3, 4)],
           torch=_torch(lambda torch, x, s: x.index_add(0, torch.tensor([2, 0, 2]), s))),
    OpInfo("scatter_add_dim", None, lambda x, s: x.scatter_add(1, _IDX, s),
           lambda x, s: _np_scatter_add(x, _IDX, s, 1), [(3, 4), (3, 2)],
           torch=_torch(lambda torch, x, s: x.scatter_add(1, torch.as_tensor(_IDX), s))),
    OpInfo("gather_dim", None, lambda x: x.gather(1, _IDX), lambda x: np.take_along_axis(x, _IDX, 1), [(3, 4)],
           torch=_torch(lambda torch, x: x.gather(1, torch.as_tensor(_IDX)))),
    OpInfo("index_select", None, lambda x: x.index_select(1, np.array([3, 0, 3])), lambda x: x[:, [3, 0, 3]],
           [(2, 4)], torch=_torch(lambda torch, x: x.index_select(1, torch.tensor([3, 0, 3])))),
    OpInfo("masked_fill", None, lambda x: x.masked_fill(cgrad.tensor(_MASK), 0.5), lambda x: np.where(_MASK, 0.5, x),
           [(3, 4)], torch=_torch(lambda torch, x: x.masked_fill(torch.as_tensor(_MASK), 0.5))),
    OpInfo("max_dim", None, lambda x: x.max(dim=1).values, lambda x: x.max(axis=1), [(3, 4)], replays=False),
    OpInfo("min_dim_keepdim", None, lambda x: x.min(0, keepdim=True).values, lambda x: x.min(axis=0, keepdims=True),
           [(3, 4)], replays=False),
    OpInfo("topk", None, lambda x: x.topk(2, dim=1).values, lambda x: -np.sort(-x, axis=1)[:, :2], [(3, 4)],
           replays=False),
    OpInfo("sort_descending", None, lambda x: x.sort(dim=0, descending=True).values,
           lambda x: -np.sort(-x, axis=0), [(3, 4)], replays=False),
    # ---- PyTorch's everyday methods and functional forms over the ops above ----
    OpInfo("t", None, lambda x: x.t(), lambda x: x.T, [(3, 4)]),
    OpInfo("clone", None, lambda x: x.clone(), lambda x: x.copy(), [S]),
    OpInfo("mm", None, lambda a, b: a.mm(b), np.matmul, [(3, 4), (4, 2)]),
    OpInfo("outer", None, lambda a, b: a.outer(b), np.outer, [(3,), (4,)]),
    OpInfo("dot", None, lambda a, b: a.dot(b), np.dot, [(4,), (4,)]),
    OpInfo("diag_of_vector", None, lambda x: x.diag(1), lambda x: np.diag(x, 1), [(3,)]),
    OpInfo("trace", None, lambda x: x.trace(), np.trace, [(3, 3)]),
    OpInfo("lerp", None, lambda a, b: a.lerp(b, 0.3), lambda a, b: a + 0.3 * (b - a), [S, S]),
    OpInfo("addcmul", None, lambda a, b, c: a.addcmul(b, c, value=0.5), lambda a, b, c: a + 0.5 * b * c, [S, S, S]),
    OpInfo("remainder", None, lambda x: x.remainder(0.7), lambda x: np.remainder(x, 0.7), [S],
           kinks=[-1.4, -0.7, 0.0, 0.7, 1.4]),
    OpInfo("fmod", None, lambda x: x.fmod(0.7), lambda x: np.fmod(x, 0.7), [S], kinks=[-1.4, -0.7, 0.0, 0.7, 1.4]),
    OpInfo("select", None, lambda x: x.select(1, -1), lambda x: x[:, -1], [(3, 4)]),
    OpInfo("masked_select", None, lambda x: x.masked_select(cgrad.tensor(_MASK)),
           lambda x: x[np.broadcast_to(_MASK, x.shape)],
           [(3, 4)], torch=_torch(lambda torch, x: x.masked_select(torch.as_tensor(_MASK)))),
    OpInfo("take", None, lambda x: x.take(cgrad.tensor([[0, 11], [5, 5]])), lambda x: x.reshape(-1)[[[0, 11], [5, 5]]],
           [(3, 4)], torch=_torch(lambda torch, x: x.take(torch.tensor([[0, 11], [5, 5]])))),
    OpInfo("logsigmoid", None, F.logsigmoid, lambda x: -np.logaddexp(0, -x), [S], torch=_tF("logsigmoid")),
    OpInfo("normalize", None, lambda x: F.normalize(x, dim=1), lambda x: x / np.linalg.norm(x, axis=1, keepdims=True),
           [S], torch=_tF("normalize", dim=1)),
    OpInfo("cosine_similarity", None, lambda a, b: F.cosine_similarity(a, b, dim=1),
           lambda a, b: (a * b).sum(1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1)), [S, S],
           torch=_tF("cosine_similarity", dim=1)),
    OpInfo("pad", None, lambda x: F.pad(x, (1, 2, 0, 1), value=0.5),
           lambda x: np.pad(x, ((0, 1), (1, 2)), constant_values=0.5), [S], torch=_tF("pad", (1, 2, 0, 1), value=0.5)),
    OpInfo("pad_crop", None, lambda x: F.pad(x, (-1, 1)), lambda x: np.pad(x[:, 1:], ((0, 0), (0, 1))), [S],
           torch=_tF("pad", (-1, 1))),
    # ---- losses (each against a fixed target) ----
    *_loss_lines("cross_entropy", CLS, lambda x, t: _np_logsumexp(x, axis=1) - x[np.arange(len(t)), t],
                 ["mean", "none", "sum"], covers="cross_entropy"),
    *_loss_lines("mse_loss", TARGET, lambda x, t: (x - t) ** 2, ["mean", "sum", "none"]),
    *_loss_lines("l1_loss", TARGET, lambda x, t: np.abs(x - t), ["mean", "none"], kinks=[-1, 0, 1]),
    *_loss_lines("huber_loss", TARGET,
                 lambda x, t: np.where(np.abs(x - t) < HUBER, 0.5 * (x - t) ** 2, HUBER * (np.abs(x - t) - HUBER / 2)),
                 ["mean", "sum"], options=dict(delta=HUBER), low=-2.5, high=2.5),
    *_loss_lines("smooth_l1_loss", TARGET,
                 lambda x, t: np.where(np.abs(x - t) < 0.5, 0.5 * (x - t) ** 2 / 0.5, np.abs(x - t) - 0.25),
                 ["mean", "sum"], options=dict(beta=0.5), low=-2.5, high=2.5),
    *_loss_lines("binary_cross_entropy", BIN, lambda p, y: -(y * np.log(p) + (1 - y) * np.log1p(-p)),
                 ["mean", "none"], low=0.05, high=0.6),  # a probability even scaled by 1.5 (replay test)
    *_loss_lines("binary_cross_entropy_with_logits", BIN, lambda x, y: np.logaddexp(0, x) - x * y,
                 ["mean", "sum"], low=-4, high=4),
    *_loss_lines("nll_loss", CLS, lambda x, t: -x[np.arange(len(t)), t], ["mean", "none", "sum"], covers="nll_loss"),
    # ---- composites of Tensor and nn.functional ----
    OpInfo("var_all", None, lambda x: x.var(), lambda x: np.var(x, ddof=1), [(3, 4)]),  # PyTorch's correction=1
    OpInfo("var_axis_keep", None, lambda x: x.var(axis=1, keepdims=True),
           lambda x: np.var(x, axis=1, keepdims=True, ddof=1), [(3, 5, 2)],
           torch=lambda x: x.var(1, keepdim=True)),
    OpInfo("var_axes_ddof", None, lambda x: x.var(axis=(0, 2), ddof=1),
           lambda x: np.var(x, axis=(0, 2), ddof=1), [(3, 2, 4)], torch=lambda x: x.var((0, 2), correction=1)),
    OpInfo("var_dim_keepdim", None, lambda x: x.var(dim=-1, keepdim=True, ddof=1),
           lambda x: np.var(x, axis=-1, keepdims=True, ddof=1), [(4, 3)],
           torch=lambda x: x.var(-1, keepdim=True, correction=1)),
    OpInfo("squeeze_all", None, lambda x: x.squeeze(), np.squeeze, [(3, 1, 4, 1)]),
    OpInfo("squeeze_axis", None, lambda x: x.squeeze(axis=-1), lambda x: np.squeeze(x, axis=-1),
           [(1, 3, 1)], torch=lambda x: x.squeeze(-1)),
    OpInfo("squeeze_dims", None, lambda x: x.squeeze(dim=(0, 2)), lambda x: np.squeeze(x, axis=(0, 2)),
           [(1, 3, 1, 2)]),
    OpInfo("unsqueeze", None, lambda x: x.unsqueeze(1), lambda x: np.expand_dims(x, 1), [(3, 4)]),
    OpInfo("unsqueeze_last", None, lambda x: x.unsqueeze(dim=-1), lambda x: np.expand_dims(x, -1), [(3, 4)]),
    OpInfo("flatten", None, lambda x: x.flatten(), np.ravel, [(2, 3, 2)]),
    OpInfo("flatten_from_1", None, lambda x: x.flatten(1), lambda x: x.reshape(2, -1), [(2, 3, 2)]),
    OpInfo("flatten_middle", None, lambda x: x.flatten(1, 2), lambda x: x.reshape(2, 6, 2), [(2, 3, 2, 2)]),
    OpInfo("view", None, lambda x: x.view(-1, 2), lambda x: x.reshape(-1, 2), [(3, 4)]),
    OpInfo("transpose_reversed", None, lambda x: x.transpose(), np.transpose, [(2, 3, 4)],
           torch=lambda x: x.permute(2, 1, 0)),
    OpInfo("gather_then_slice", None, lambda x: x[np.array([2, 0]), 1:], lambda x: x[np.array([2, 0]), 1:],
           [(3, 4)]),
    OpInfo("gather_mask_2d", None, lambda x: x[_MASK.reshape(2, 2)], lambda x: x[_MASK.reshape(2, 2)],
           [(2, 2, 3)], torch=_torch(lambda torch, x: x[torch.as_tensor(_MASK.reshape(2, 2))])),
    OpInfo("gather_3d_index", None, lambda x: x[np.array([[0, 2], [1, 1]])],
           lambda x: x[np.array([[0, 2], [1, 1]])], [(3, 4)]),
    OpInfo("dropout_eval", None, lambda x: F.dropout(x, 0.3, training=False), lambda x: x, [S],
           torch=_tF("dropout", 0.3, training=False)),
    OpInfo("dropout_p0", None, lambda x: F.dropout(x, 0.0), lambda x: x, [S], torch=_tF("dropout", 0.0)),
    OpInfo("clamp", "clip", lambda x: x.clamp(min=-0.4), lambda x: np.maximum(x, -0.4), [S], kinks=[-0.4]),
    OpInfo("pos", None, lambda x: +x, lambda x: +x, [S]),
    # ---- shape ops and reductions with PyTorch's names (cgrad/_shape_ops.py), einsum ----
    OpInfo("view_as", None, lambda x: x.view_as(cgrad.zeros(6, 2)), lambda x: x.reshape(6, 2), [(3, 4)],
           torch=_torch(lambda torch, x: x.view_as(torch.zeros(6, 2, dtype=x.dtype)))),
    OpInfo("expand", None, lambda x: x.expand(2, -1, 4), lambda x: np.broadcast_to(x, (2, 3, 4)), [(3, 1)]),
    OpInfo("expand_as", None, lambda x: x.expand_as(cgrad.zeros(3, 4)), lambda x: np.broadcast_to(x, (3, 4)),
           [(4,)], torch=_torch(lambda torch, x: x.expand_as(torch.zeros(3, 4, dtype=x.dtype)))),
    OpInfo("repeat", None, lambda x: x.repeat(2, 1, 3), lambda x: np.tile(x, (2, 1, 3)), [(3, 2)]),
    OpInfo("flip", None, lambda x: x.flip(0, 2), lambda x: np.flip(x, (0, 2)), [(2, 3, 4)]),
    OpInfo("roll", None, lambda x: x.roll((1, -2), (0, 1)), lambda x: np.roll(x, (1, -2), (0, 1)), [(3, 4)]),
    OpInfo("roll_flat", None, lambda x: x.roll(5), lambda x: np.roll(x, 5), [(3, 4)]),
    OpInfo("narrow", None, lambda x: x.narrow(1, 1, 2), lambda x: x[:, 1:3], [(3, 4)]),
    OpInfo("narrow_negative", None, lambda x: x.narrow(0, -2, 2), lambda x: x[-2:], [(4, 3)]),
    OpInfo("chunk", None, lambda x: _joined(x.chunk(3, 1), 1, cgrad.cat),
           lambda x: _joined(np.split(x, [2, 4], 1), 1, np.concatenate), [(2, 5)],
           torch=_torch(lambda torch, x: _joined(x.chunk(3, 1), 1, torch.cat))),
    OpInfo("split_size", None, lambda x: _joined(x.split(2), 0, cgrad.cat),
           lambda x: _joined(np.split(x, [2, 4]), 0, np.concatenate), [(5, 3)],
           torch=_torch(lambda torch, x: _joined(x.split(2), 0, torch.cat))),
    OpInfo("split_sections", None, lambda x: _joined(cgrad.split(x, [1, 3], dim=1), 1, cgrad.cat),
           lambda x: _joined(np.split(x, [1], 1), 1, np.concatenate), [(2, 4)],
           torch=_torch(lambda torch, x: _joined(torch.split(x, [1, 3], dim=1), 1, torch.cat))),
    OpInfo("unbind", None, lambda x: _joined(x.unbind(1), 0, cgrad.stack),
           lambda x: _joined([x[:, i] for i in range(4)], 0, np.stack), [(2, 4)],
           torch=_torch(lambda torch, x: _joined(x.unbind(1), 0, torch.stack))),
    OpInfo("tril", None, lambda x: x.tril(), np.tril, [(2, 3, 4)]),
    OpInfo("tril_below", None, lambda x: cgrad.tril(x, -1), lambda x: np.tril(x, -1), [(4, 3)],
           torch=_torch(lambda torch, x: torch.tril(x, -1))),
    OpInfo("triu_above", None, lambda x: x.triu(1), lambda x: np.triu(x, 1), [(3, 4)]),
    OpInfo("movedim", None, lambda x: x.movedim((0, 1), (2, 0)), lambda x: np.moveaxis(x, (0, 1), (2, 0)),
           [(2, 3, 4)]),
    OpInfo("swapaxes", None, lambda x: x.swapaxes(0, -1), lambda x: np.swapaxes(x, 0, -1), [(2, 3, 4)]),
    OpInfo("var_unbiased_false", None, lambda x: x.var(0, unbiased=False), lambda x: np.var(x, axis=0),
           [(4, 3)]),
    OpInfo("var_correction", None, lambda x: cgrad.var(x, (0, 2), correction=2),
           lambda x: np.var(x, axis=(0, 2), ddof=2), [(3, 2, 4)],
           torch=_torch(lambda torch, x: torch.var(x, (0, 2), correction=2))),
    OpInfo("std_all", None, lambda x: x.std(), lambda x: np.std(x, ddof=1), [(3, 4)]),
    OpInfo("std_dim_keepdim", None, lambda x: x.std(dim=1, keepdim=True),
           lambda x: np.std(x, axis=1, keepdims=True, ddof=1), [(3, 5)]),
    OpInfo("norm_fro", None, lambda x: x.norm(), np.linalg.norm, [(3, 4)]),
    OpInfo("norm_1_dim", None, lambda x: x.norm(1, dim=1), lambda x: np.linalg.norm(x, 1, axis=1), [(3, 4)],
           kinks=[0]),
    OpInfo("norm_3_dims_keepdim", None, lambda x: x.norm(3, dim=(0, 1), keepdim=True),
           lambda x: np.sum(np.abs(x) ** 3, axis=(0, 1), keepdims=True) ** (1 / 3), [(3, 4, 2)], kinks=[0]),
    OpInfo("norm_inf", None, lambda x: cgrad.norm(x, float("inf"), dim=-1),
           lambda x: np.abs(x).max(axis=-1), [(3, 4)], kinks=[0],
           torch=_torch(lambda torch, x: torch.norm(x, float("inf"), dim=-1))),
    OpInfo("vector_norm_half", None, lambda x: cgrad.linalg.vector_norm(x, 0.5, dim=0),
           lambda x: np.sum(np.abs(x) ** 0.5, axis=0) ** 2, [(3, 4)], kinks=[0], gap=0.1,
           torch=_torch(lambda torch, x: torch.linalg.vector_norm(x, 0.5, dim=0))),
    OpInfo("cumsum", "cumsum", lambda x: x.cumsum(1), lambda x: np.cumsum(x, 1), [(3, 4, 2)]),
    OpInfo("cumsum_last", "cumsum", lambda x: x.cumsum(-1), lambda x: np.cumsum(x, -1), [(5,)]),
    OpInfo("cumsum_fn", "cumsum", lambda x: cgrad.cumsum(x, dim=0), lambda x: np.cumsum(x, 0), [(4, 3)],
           torch=_torch(lambda torch, x: torch.cumsum(x, dim=0))),
    _einsum_line("einsum_matmul", "ij,jk->ik", (3, 4), (4, 5)),
    _einsum_line("einsum_batched", "bij,bjk->bik", (2, 3, 4), (2, 4, 5)),
    _einsum_line("einsum_outer", "i,j->ij", (3,), (4,)),
    _einsum_line("einsum_transpose", "ij->ji", (3, 4)),
    _einsum_line("einsum_row_sums", "ij->i", (3, 4)),
    _einsum_line("einsum_attention", "bhqd,bhkd->bhqk", (2, 2, 3, 4), (2, 2, 5, 4)),
    _einsum_line("einsum_attention_values", "bhqk,bhkd->bhqd", (2, 2, 3, 5), (2, 2, 5, 4)),
    _einsum_line("einsum_times_transpose", "ij,kj->ik", (3, 4), (5, 4)),
    _einsum_line("einsum_diagonal", "ii->i", (3, 3)),
    _einsum_line("einsum_trace_implicit", "ii", (3, 3)),
    _einsum_line("einsum_dot", "ij,ij->", (3, 4), (3, 4)),
    _einsum_line("einsum_ellipsis", "...ij,jk->...ik", (2, 3, 4), (4, 5)),
    _einsum_line("einsum_three", "ij,jk,kl->il", (2, 3), (3, 4), (4, 2)),
    _einsum_line("einsum_broadcast_1", "bij,bjk->bik", (2, 3, 4), (1, 4, 5)),
    # ---- convolution ----
    _conv_line("conv2d", 2, (2, 3, 5, 4), (4, 3, 3, 2)),
    _conv_line("conv2d_strided_padded_dilated_groups", 2, (2, 4, 7, 6), (6, 2, 3, 3), stride=(2, 1),
               padding=(1, 2), dilation=(1, 2), groups=2),
    _conv_line("conv2d_stride_past_kernel_batch1", 2, (1, 2, 7, 7), (3, 2, 2, 2), bias=False, stride=3),
    _conv_line("conv2d_1x1", 2, (2, 3, 4, 5), (5, 3, 1, 1)),
    _conv_line("conv2d_same_even_kernel", 2, (2, 2, 5, 5), (3, 2, 2, 4), padding="same"),
    _conv_line("conv2d_depthwise", 2, (2, 4, 5, 5), (4, 1, 3, 3), padding=1, groups=4),
    _conv_line("conv1d", 1, (3, 2, 9), (4, 2, 3), stride=2, padding=1),
    _conv_line("conv1d_same_dilated", 1, (2, 3, 10), (2, 3, 2), bias=False, padding="same", dilation=3),
    _conv_adjoint_line("conv_dx", "conv_dx", (2, 4, 3, 2), (4, 3, 2, 2), (6, 4), (2, 2), (1, 0), (1, 1), 1),
    _conv_adjoint_line("conv_dx_groups_dilated", "conv_dx", (1, 4, 3, 3), (4, 1, 2, 2), (5, 5), (1, 1), (0, 1),
                       (2, 1), 2),
    _conv_adjoint_line("conv_dw", "conv_dw", (2, 4, 3, 2), (2, 3, 6, 4), (2, 2), (2, 2), (1, 0), (1, 1), 1),
    _conv_adjoint_line("conv_dw_groups_dilated", "conv_dw", (1, 4, 3, 3), (1, 2, 5, 5), (2, 2), (1, 1), (0, 1),
                       (2, 1), 2),

    # ---- end of convolution ----

    # ---- pooling ----
    # windows with padding, stride > kernel, dilation, ceil_mode's partial last window,
    # non-square, unbatched, adaptive sizes that do not divide (or exceed) the input
    OpInfo("max_pool2d", "max_pool", lambda x: F.max_pool2d(x, 3, stride=2, padding=1),
           lambda x: _pool.max_pool(x, 2, kernel=3, stride=2, padding=1)[0], [(2, 2, 5, 6)],
           torch=_tF("max_pool2d", 3, stride=2, padding=1)),
    OpInfo("max_pool2d_ceil_dilation", "max_pool",
           lambda x: F.max_pool2d(x, (2, 3), (3, 1), (1, 0), (2, 1), ceil_mode=True),
           lambda x: _pool.max_pool(x, 2, kernel=(2, 3), stride=(3, 1), padding=(1, 0), dilation=(2, 1),
                                    ceil_mode=True)[0], [(1, 2, 6, 5)],
           torch=_tF("max_pool2d", (2, 3), (3, 1), (1, 0), (2, 1), ceil_mode=True)),
    OpInfo("max_pool1d_stride_over_kernel", "max_pool", lambda x: F.max_pool1d(x, 2, 3, 1, ceil_mode=True),
           lambda x: _pool.max_pool(x, 1, kernel=2, stride=3, padding=1, ceil_mode=True)[0], [(2, 3, 8)],
           torch=_tF("max_pool1d", 2, 3, 1, ceil_mode=True)),
    OpInfo("max_pool2d_unbatched", "max_pool", lambda x: F.max_pool2d(x, 2),
           lambda x: _pool.max_pool(x, 2, kernel=2)[0], [(3, 4, 5)], torch=_tF("max_pool2d", 2)),
    OpInfo("adaptive_max_pool2d", "max_pool", lambda x: F.adaptive_max_pool2d(x, (3, 2)),
           lambda x: _pool.max_pool(x, 2, output_size=(3, 2))[0], [(2, 2, 5, 7)],
           torch=_tF("adaptive_max_pool2d", (3, 2))),
    OpInfo("adaptive_max_pool1d_larger", "max_pool", lambda x: F.adaptive_max_pool1d(x, 7),
           lambda x: _pool.max_pool(x, 1, output_size=7)[0], [(2, 2, 5)], torch=_tF("adaptive_max_pool1d", 7)),
    OpInfo("avg_pool2d_ceil", "avg_pool", lambda x: F.avg_pool2d(x, 3, stride=2, padding=1, ceil_mode=True),
           lambda x: _pool.avg_pool(x, 2, kernel=3, stride=2, padding=1, ceil_mode=True), [(2, 2, 5, 6)],
           torch=_tF("avg_pool2d", 3, stride=2, padding=1, ceil_mode=True)),
    OpInfo("avg_pool2d_exclude_pad", "avg_pool",
           lambda x: F.avg_pool2d(x, (3, 2), (2, 1), (1, 1), ceil_mode=True, count_include_pad=False),
           lambda x: _pool.avg_pool(x, 2, kernel=(3, 2), stride=(2, 1), padding=(1, 1), ceil_mode=True,
                                    count_include_pad=False), [(1, 2, 6, 5)],
           torch=_tF("avg_pool2d", (3, 2), (2, 1), (1, 1), ceil_mode=True, count_include_pad=False)),
    OpInfo("avg_pool2d_divisor", "avg_pool", lambda x: F.avg_pool2d(x, 2, divisor_override=3),
           lambda x: _pool.avg_pool(x, 2, kernel=2, divisor_override=3), [(2, 1, 4, 5)],
           torch=_tF("avg_pool2d", 2, divisor_override=3)),
    OpInfo("avg_pool1d", "avg_pool", lambda x: F.avg_pool1d(x, 3, 2, 1, count_include_pad=False),
           lambda x: _pool.avg_pool(x, 1, kernel=3, stride=2, padding=1, count_include_pad=False), [(2, 3, 7)],
           torch=_tF("avg_pool1d", 3, 2, 1, count_include_pad=False)),
    OpInfo("adaptive_avg_pool2d", "avg_pool", lambda x: F.adaptive_avg_pool2d(x, (None, 3)),
           lambda x: _pool.avg_pool(x, 2, output_size=(None, 3)), [(2, 2, 4, 7)],
           torch=_tF("adaptive_avg_pool2d", (None, 3))),
    OpInfo("adaptive_avg_pool1d_larger_unbatched", "avg_pool", lambda x: F.adaptive_avg_pool1d(x, 6),
           lambda x: _pool.avg_pool(x, 1, output_size=6), [(3, 4)], torch=_tF("adaptive_avg_pool1d", 6)),
    OpInfo("global_avg_pool", "avg_pool", lambda x: F.adaptive_avg_pool2d(x, 1),
           lambda x: _pool.avg_pool(x, 2, output_size=1), [(2, 3, 4, 4)], torch=_tF("adaptive_avg_pool2d", 1)),
    # the taped rules' maps (no public name), on the geometry of max_pool2d(3, 2, 1, ceil_mode)
    OpInfo("avg_pool_backward", "avg_pool_backward", lambda g: cgrad._C.avg_pool_backward(g, _pool.taped_geometry()),
           lambda g: _pool.adjoint(lambda x: _pool.avg_pool(x, 2, **_pool.TAPED_ARGS), (2, 2, 5, 6), g), [(2, 2, 3, 4)],
           torch=_torch(lambda torch, g: torch.ops.aten.avg_pool2d_backward(
               g, torch.zeros(2, 2, 5, 6, dtype=g.dtype), 3, 2, 1, True, True, None))),
    OpInfo("max_pool_backward", "max_pool_backward", lambda g, x: cgrad._C.max_pool_backward(g, x, _pool.taped_geometry()),
           lambda g, x: _pool.scatter_at(_pool.max_pool(x, 2, **_pool.TAPED_ARGS)[1], g, x.shape, 2),
           [(2, 2, 3, 4), (2, 2, 5, 6)],
           torch=_torch(lambda torch, g, x: torch.ops.aten.max_pool2d_with_indices_backward(
               g, x, 3, 2, 1, 1, True, torch.nn.functional.max_pool2d(x, 3, 2, 1, ceil_mode=True,
                                                                       return_indices=True)[1]))),
    OpInfo("max_pool_select", "max_pool_select", lambda u, x: cgrad._C.max_pool_select(u, x, _pool.taped_geometry()),
           lambda u, x: _pool.gather_at(_pool.max_pool(x, 2, **_pool.TAPED_ARGS)[1], u, 2),
           [(2, 2, 5, 6), (2, 2, 5, 6)],
           torch=_torch(_pool.torch_select)),

    # ---- end of pooling ----

    # ---- normalisation ----
    # batch norm in training, batch statistics: one C op on the leaves (its reads bits are
    # checked); with fresh running statistics (updated, not read); weight only; none, batch 2
    OpInfo("batch_norm_train", "batch_norm", lambda x, w, b: F.batch_norm(x, None, None, w, b, training=True),
           lambda x, w, b: (x - x.mean((0, 2), keepdims=True)) / np.sqrt(x.var((0, 2), keepdims=True) + 1e-5)
           * w[:, None] + b[:, None], [(4, 3, 5), (3,), (3,)],
           torch=_torch(lambda torch, x, w, b: torch.nn.functional.batch_norm(x, None, None, w, b, training=True))),
    OpInfo("batch_norm_train_running", "batch_norm",
           lambda x, w, b: F.batch_norm(x, cgrad.zeros(3, dtype=x.dtype), cgrad.ones(3, dtype=x.dtype), w, b,
                                        training=True, momentum=0.3),
           lambda x, w, b: (x - x.mean((0, 2, 3), keepdims=True)) / np.sqrt(x.var((0, 2, 3), keepdims=True) + 1e-5)
           * w[:, None, None] + b[:, None, None], [(2, 3, 2, 3), (3,), (3,)],
           torch=_torch(lambda torch, x, w, b: torch.nn.functional.batch_norm(
               x, torch.zeros(3, dtype=x.dtype), torch.ones(3, dtype=x.dtype), w, b, training=True, momentum=0.3))),
    OpInfo("batch_norm_2d_weight_only", "batch_norm", lambda x, w: F.batch_norm(x, None, None, w, training=True),
           lambda x, w: (x - x.mean(0)) / np.sqrt(x.var(0) + 1e-5) * w, [(5, 3), (3,)],
           torch=_torch(lambda torch, x, w: torch.nn.functional.batch_norm(x, None, None, w, training=True))),
    OpInfo("batch_norm_no_affine_batch_2", "batch_norm", lambda x: F.batch_norm(x, None, None, training=True),
           lambda x: (x - x.mean(0)) / np.sqrt(x.var(0) + 1e-5), [(2, 4)],
           torch=_tF("batch_norm", None, None, training=True)),
    # evaluation: the running statistics given, as constants
    OpInfo("batch_norm_eval", "batch_norm",
           lambda x, w, b: F.batch_norm(x, cgrad.tensor([0.3, -0.2, 0.5], dtype=x.dtype),
                                        cgrad.tensor([0.8, 1.5, 0.4], dtype=x.dtype), w, b),
           lambda x, w, b: (x - np.array([0.3, -0.2, 0.5])[:, None]) / np.sqrt(np.array([0.8, 1.5, 0.4])[:, None]
                                                                               + 1e-5) * w[:, None] + b[:, None],
           [(2, 3, 4), (3,), (3,)],
           torch=_torch(lambda torch, x, w, b: torch.nn.functional.batch_norm(
               x, torch.tensor([0.3, -0.2, 0.5], dtype=x.dtype), torch.tensor([0.8, 1.5, 0.4], dtype=x.dtype), w, b))),
    # group norm: batch norm of (1, N * groups, rest), then weight and bias
    OpInfo("group_norm", None, lambda x, w, b: F.group_norm(x, 2, w, b),
           lambda x, w, b: (((g := x.reshape(2, 2, 6)) - g.mean(2, keepdims=True)) / np.sqrt(g.var(2, keepdims=True)
                                                                                           + 1e-5)).reshape(x.shape)
           * w[:, None] + b[:, None], [(2, 4, 3), (4,), (4,)],
           torch=_torch(lambda torch, x, w, b: torch.nn.functional.group_norm(x, 2, w, b))),
    OpInfo("group_norm_4d_no_affine", None, lambda x: F.group_norm(x, 3),
           lambda x: (((g := x.reshape(2, 3, 8)) - g.mean(2, keepdims=True)) / np.sqrt(g.var(2, keepdims=True)
                                                                                    + 1e-5)).reshape(x.shape),
           [(2, 6, 2, 2)], torch=_tF("group_norm", 3)),
    OpInfo("dropout2d_eval", None, lambda x: F.dropout2d(x, 0.3, training=False), lambda x: x, [(2, 3, 2, 2)],
           torch=_tF("dropout2d", 0.3, training=False)),
    OpInfo("dropout1d_p0", None, lambda x: F.dropout1d(x, 0.0), lambda x: x, [(2, 3, 4)],
           torch=_tF("dropout1d", 0.0)),
    # nearest: source floor(i * in / out) (a doubling repeats each value twice)
    OpInfo("interpolate_1d_size", None, lambda x: F.interpolate(x, size=7), lambda x: x[:, :, [0, 0, 1, 2, 2, 3, 4]],
           [(2, 3, 5)], torch=_tF("interpolate", size=7)),
    OpInfo("interpolate_2d_scale_2", None, lambda x: F.interpolate(x, scale_factor=2),
           lambda x: x.repeat(2, 2).repeat(2, 3), [(1, 2, 2, 3)], torch=_tF("interpolate", scale_factor=2)),
    OpInfo("interpolate_2d_size_down", None, lambda x: F.interpolate(x, size=(2, 5)),
           lambda x: x[:, :, [0, 1]][:, :, :, [0, 0, 1, 1, 2]], [(2, 1, 3, 3)], torch=_tF("interpolate", size=(2, 5))),
    # layer norm over the last dims (one and two), with and without weight and bias; RMS norm
    OpInfo("layer_norm", "layer_norm", lambda x, w, b: F.layer_norm(x, (5,), w, b), lambda x, w, b: _np_ln(x, 1) * w + b,
           [(2, 3, 5), (5,), (5,)], torch=_tnorm("layer_norm", (5,))),
    OpInfo("layer_norm_2d_shape", "layer_norm", lambda x, w, b: F.layer_norm(x, (3, 4), w, b, eps=1e-3),
           lambda x, w, b: _np_ln(x, 2, 1e-3) * w + b, [(2, 3, 4), (3, 4), (3, 4)],
           torch=_tnorm("layer_norm", (3, 4), eps=1e-3)),
    OpInfo("layer_norm_no_affine_one_row", "layer_norm", lambda x: F.layer_norm(x, 6), lambda x: _np_ln(x, 1),
           [(1, 6)], torch=_tnorm("layer_norm", (6,))),
    OpInfo("layer_norm_weight_only", "layer_norm", lambda x, w: F.layer_norm(x, [4], w), lambda x, w: _np_ln(x, 1) * w,
           [(3, 4), (4,)], torch=_tnorm("layer_norm", [4])),
    OpInfo("layer_norm_bias_only", "layer_norm", lambda x, b: F.layer_norm(x, (4,), None, b),
           lambda x, b: _np_ln(x, 1) + b, [(3, 4), (4,)],
           torch=_torch(lambda torch, x, b: torch.nn.functional.layer_norm(x, (4,), None, b))),
    OpInfo("rms_norm", "rms_norm", lambda x, w: F.rms_norm(x, (5,), w, eps=1e-6), lambda x, w: _np_rms(x, 1, 1e-6) * w,
           [(2, 3, 5), (5,)], torch=_tnorm("rms_norm", (5,), eps=1e-6)),
    OpInfo("rms_norm_2d_no_weight", "rms_norm", lambda x: F.rms_norm(x, (2, 3)),
           lambda x: _np_rms(x, 2, np.finfo(x.dtype).eps), [(4, 2, 3)], torch=_tnorm("rms_norm", (2, 3))),
    # ---- end of normalisation ----
    # ---- embedding and losses ----
    # embedding: rows of a (7, 3) table at fixed ids (repeats add up in backward), of 2-D int64,
    # 1-D int32 and 0-dim ids (padding_idx, whose row gets no gradient by design, is tested in
    # test_embedding.py: finite differences would disagree)
    OpInfo("embedding", "embedding", lambda w: F.embedding(_IDS, w), lambda w: w[_IDS], [(7, 3)],
           torch=_torch(lambda torch, w: torch.nn.functional.embedding(torch.as_tensor(_IDS), w))),
    OpInfo("embedding_int32_1d", "embedding", lambda w: F.embedding(_IDS.reshape(-1).astype(np.int32), w),
           lambda w: w[_IDS.reshape(-1)], [(7, 1)],
           torch=_torch(lambda torch, w: torch.nn.functional.embedding(torch.as_tensor(_IDS.reshape(-1)), w))),
    OpInfo("embedding_0d_ids", "embedding", lambda w: F.embedding(cgrad.tensor(4), w), lambda w: w[4], [(5, 2)],
           torch=_torch(lambda torch, w: torch.nn.functional.embedding(torch.tensor(4), w))),
    # cross_entropy and nll_loss with PyTorch's options: class weights, ignore_index (the mean
    # over the weights of the targets kept), label smoothing, (N, C, d) and unbatched (C,) input,
    # class-probability targets (a composite)
    OpInfo("cross_entropy_weight_ignore_smooth", "cross_entropy",
           lambda x: F.cross_entropy(x, _CE_T, cgrad.tensor(_CE_W, dtype=x.dtype), ignore_index=1,
                                     label_smoothing=0.2),
           lambda x: _np_ce(x, _CE_T, _CE_W, 1, 0.2, "mean"), [(6, 4)],
           torch=_torch(lambda torch, x: torch.nn.functional.cross_entropy(
               x, torch.as_tensor(_CE_T), torch.as_tensor(_CE_W, dtype=x.dtype), ignore_index=1,
               label_smoothing=0.2))),
    OpInfo("cross_entropy_smooth_sum", "cross_entropy",
           lambda x: F.cross_entropy(x, _CE_T, reduction="sum", label_smoothing=0.1),
           lambda x: _np_ce(x, _CE_T, None, -100, 0.1, "sum"), [(6, 4)],
           torch=_torch(lambda torch, x: torch.nn.functional.cross_entropy(x, torch.as_tensor(_CE_T), reduction="sum",
                                                                           label_smoothing=0.1))),
    OpInfo("cross_entropy_3d_ignore_none", "cross_entropy",
           lambda x: F.cross_entropy(x, _CE_T3, ignore_index=0, reduction="none"),
           lambda x: _np_ce(np.moveaxis(x, 1, -1).reshape(-1, 3), _CE_T3.reshape(-1), None, 0, 0.0,
                            "none").reshape(_CE_T3.shape), [(2, 3, 4)],
           torch=_torch(lambda torch, x: torch.nn.functional.cross_entropy(x, torch.as_tensor(_CE_T3), ignore_index=0,
                                                                           reduction="none"))),
    OpInfo("cross_entropy_unbatched", "cross_entropy", lambda x: F.cross_entropy(x, np.array(2)),
           lambda x: _np_logsumexp(x) - x[2], [(5,)],
           torch=_torch(lambda torch, x: torch.nn.functional.cross_entropy(x, torch.tensor(2)))),
    OpInfo("cross_entropy_probabilities", None, lambda x: F.cross_entropy(x, _CE_P, label_smoothing=0.1),
           lambda x: -((_CE_P * 0.9 + 0.1 / 4) * _np_log_softmax(x, 1)).sum(1).mean(), [(6, 4)],
           torch=_torch(lambda torch, x: torch.nn.functional.cross_entropy(x, torch.as_tensor(_CE_P),
                                                                           label_smoothing=0.1))),
    OpInfo("nll_loss_weight_ignore", "nll_loss",
           lambda x: F.nll_loss(x, _CE_T, cgrad.tensor(_CE_W, dtype=x.dtype), ignore_index=3),
           lambda x: _np_ce(x, _CE_T, _CE_W, 3, 0.0, "mean", nll=True), [(6, 4)],
           torch=_torch(lambda torch, x: torch.nn.functional.nll_loss(
               x, torch.as_tensor(_CE_T), torch.as_tensor(_CE_W, dtype=x.dtype), ignore_index=3))),
    OpInfo("nll_loss_3d_sum", "nll_loss", lambda x: F.nll_loss(x, _CE_T3, reduction="sum"),
           lambda x: _np_ce(np.moveaxis(x, 1, -1).reshape(-1, 3), _CE_T3.reshape(-1), None, -100, 0.0, "sum",
                            nll=True), [(2, 3, 4)],
           torch=_torch(lambda torch, x: torch.nn.functional.nll_loss(x, torch.as_tensor(_CE_T3), reduction="sum"))),
    # more activations (composites): kinks kept away from finite differences. hardsigmoid,
    # hardswish and celu have no PyTorch form here: PyTorch's backward carries float32 constants
    # even in float64 (tests/test_activations.py compares them at 1e-6)
    OpInfo("relu6", None, F.relu6, lambda x: np.clip(x, 0, 6), [S], low=-3, high=8, kinks=[0, 6],
           torch=_tF("relu6")),
    OpInfo("hardsigmoid", None, F.hardsigmoid, lambda x: np.clip(x / 6 + 0.5, 0, 1), [S], low=-4, high=4,
           kinks=[-3, 3], torch=None),
    OpInfo("hardswish", None, F.hardswish, lambda x: x * np.clip(x + 3, 0, 6) / 6, [S], low=-4, high=4,
           kinks=[-3, 3], torch=None),
    OpInfo("celu", None, lambda x: F.celu(x, 0.7), lambda x: np.maximum(x, 0) + np.minimum(0, 0.7 * np.expm1(x / 0.7)),
           [S], kinks=[0], torch=None),
    OpInfo("prelu_channels", None, F.prelu, lambda x, w: np.where(x > 0, x, w[:, None] * x), [(2, 3, 4), (3,)],
           kinks=[0], torch=_tF("prelu")),
    OpInfo("prelu_one", None, F.prelu, lambda x, w: np.where(x > 0, x, w * x), [S, (1,)], kinks=[0],
           torch=_tF("prelu")),
    OpInfo("glu", None, lambda x: F.glu(x, 1), lambda x: x[:, :2] * _sigmoid(x[:, 2:]), [(3, 4)],
           torch=_tF("glu", 1)),
    OpInfo("softmin", None, lambda x: F.softmin(x, dim=0), lambda x: _np_softmax(-x, 0), [S],
           torch=_tF("softmin", dim=0)),
    OpInfo("threshold", None, lambda x: F.threshold(x, 0.5, -2.0), lambda x: np.where(x > 0.5, x, -2.0), [S],
           kinks=[0.5], torch=_tF("threshold", 0.5, -2.0)),
    OpInfo("tanhshrink", None, F.tanhshrink, lambda x: x - np.tanh(x), [S], torch=_tF("tanhshrink")),
    OpInfo("softshrink", None, lambda x: F.softshrink(x, 0.6),
           lambda x: np.where(x > 0.6, x - 0.6, np.where(x < -0.6, x + 0.6, 0)), [S], kinks=[-0.6, 0.6],
           torch=_tF("softshrink", 0.6)),
    OpInfo("hardshrink", None, lambda x: F.hardshrink(x, 0.6), lambda x: np.where(np.abs(x) > 0.6, x, 0), [S],
           kinks=[-0.6, 0.6], torch=_tF("hardshrink", 0.6)),
    # ---- end of embedding and losses ----
    # ---- recurrent ----
    # one layer and direction of the recurrence (rnn_scan) against a per-sample loop in numpy
    # (tests/rnn_reference.py): GRU with a state, reversed and batch-first without one, LSTM with
    # both states, one step without a bias, tanh and relu RNNs, and the step-norm buffer given
    OpInfo("rnn_scan_gru", "rnn_scan", lambda xp, w, h0, b: cgrad._C.rnn_scan("GRU", xp, w, h0, None, b, None),
           lambda xp, w, h0, b: _rnn.scan("GRU", xp, w, h0, None, b), [(3, 2, 9), (9, 3), (2, 3), (9,)], torch=None),
    OpInfo("rnn_scan_gru_reverse_batch_first", "rnn_scan",
           lambda xp, w, b: cgrad._C.rnn_scan("GRU", xp, w, None, None, b, None, True, True),
           lambda xp, w, b: _rnn.scan("GRU", xp, w, None, None, b, True, True), [(2, 4, 6), (6, 2), (6,)],
           torch=None),
    OpInfo("rnn_scan_lstm", "rnn_scan", lambda xp, w, h0, c0, b: cgrad._C.rnn_scan("LSTM", xp, w, h0, c0, b, None),
           lambda xp, w, h0, c0, b: _rnn.scan("LSTM", xp, w, h0, c0, b), [(3, 2, 8), (8, 2), (2, 2), (2, 2), (8,)],
           torch=None),
    OpInfo("rnn_scan_lstm_one_step_no_bias_reverse", "rnn_scan",
           lambda xp, w, h0, c0: cgrad._C.rnn_scan("LSTM", xp, w, h0, c0, None, None, True),
           lambda xp, w, h0, c0: _rnn.scan("LSTM", xp, w, h0, c0, None, True), [(1, 3, 8), (8, 2), (3, 2), (3, 2)],
           torch=None),
    OpInfo("rnn_scan_tanh_batch_first", "rnn_scan",
           lambda xp, w, h0, b: cgrad._C.rnn_scan("RNN_TANH", xp, w, h0, None, b, None, False, True),
           lambda xp, w, h0, b: _rnn.scan("RNN_TANH", xp, w, h0, None, b, False, True),
           [(2, 4, 3), (3, 3), (2, 3), (3,)], torch=None),
    OpInfo("rnn_scan_relu", "rnn_scan", lambda xp, w, b: cgrad._C.rnn_scan("RNN_RELU", xp, w, None, None, b, None),
           lambda xp, w, b: _rnn.scan("RNN_RELU", xp, w, None, None, b), [(4, 2, 3), (3, 3), (3,)],
           torch=None),
    OpInfo("rnn_scan_gru_step_norms", "rnn_scan",
           lambda xp, w: cgrad._C.rnn_scan("GRU", xp, w, None, None, None, cgrad.zeros(3, dtype=xp.dtype)),
           lambda xp, w: _rnn.scan("GRU", xp, w), [(3, 2, 6), (6, 2)], torch=None),
    # ---- end of recurrent ----
    # ---- attention ----
    # the fused op: 3-D and 4-D, L != S, causal (L < S and L > S), a fixed bool mask with a
    # fully masked row, a float mask (an input, broadcast over batch and heads), a scale
    _sdpa_line("sdpa", lambda q, k, v: F.scaled_dot_product_attention(q, k, v), [(2, 3, 4), (2, 5, 4), (2, 5, 3)]),
    _sdpa_line("sdpa_4d_scale", lambda q, k, v: F.scaled_dot_product_attention(q, k, v, scale=0.7),
               [(2, 2, 3, 4), (2, 2, 4, 4), (2, 2, 4, 5)], scale=0.7),
    _sdpa_line("sdpa_causal", lambda q, k, v: F.scaled_dot_product_attention(q, k, v, is_causal=True),
               [(1, 2, 4, 3), (1, 2, 4, 3), (1, 2, 4, 2)], causal=True),
    _sdpa_line("sdpa_causal_l_lt_s", lambda q, k, v: F.scaled_dot_product_attention(q, k, v, is_causal=True),
               [(2, 3, 4), (2, 5, 4), (2, 5, 3)], causal=True),
    _sdpa_line("sdpa_causal_l_gt_s", lambda q, k, v: F.scaled_dot_product_attention(q, k, v, is_causal=True),
               [(2, 5, 3), (2, 3, 3), (2, 3, 2)], causal=True),
    _sdpa_line("sdpa_bool_mask", lambda q, k, v: F.scaled_dot_product_attention(q, k, v, attn_mask=cgrad.tensor(
        _SDPA_BOOL)), [(2, 3, 4), (2, 5, 4), (2, 5, 3)], mask=_SDPA_BOOL),
    _sdpa_line("sdpa_float_mask", lambda q, k, v, m: F.scaled_dot_product_attention(q, k, v, attn_mask=m),
               [(2, 2, 3, 4), (2, 2, 5, 4), (2, 2, 5, 3), (1, 3, 5)]),
    # one query (a decoding step); L = S = 1 makes P constant, so the in-place check cannot
    # see its reads: tests/test_attention.py checks that case's gradients
    _sdpa_line("sdpa_one_query", lambda q, k, v: F.scaled_dot_product_attention(q, k, v),
               [(3, 1, 4), (3, 4, 4), (3, 4, 2)]),
    # ---- end of attention ----
]
