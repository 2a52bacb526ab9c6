"""Export a cgrad model to ONNX: `cgrad.onnx.export(model, example_input, "model.onnx")`.

Needs the `onnx` package (pip install cgrad[onnx]); `import cgrad` does not.

How it works: the model runs once, in eval mode, on the example input, with grad on so that
the core records its tape. Every layer call is noted on the way. The graph is then read
back from the outputs: the output of a layer that has a converter here (Conv, pooling,
BatchNorm, GroupNorm, Embedding, RNN/GRU/LSTM and their cells, Upsample, ...) becomes that
layer's native ONNX ops, built from its attributes; any other tensor is the op that made
it on the tape (what a custom forward or a composite layer runs: linear, reshape, slicing
and permutations, elementwise ops and activations, layer and RMS norm, softmax, attention,
F.conv1d/2d, ...). So a model whose
forward is custom Python exports without help, and recurrent layers become ONNX's own
RNN/GRU/LSTM ops instead of their unrolled steps.

Values the forward computes outside the tape (numpy comparisons, masks, Python branches on
the data) would be frozen into the file. To catch them, the model runs a second time on a
different input (another batch size too, when the batch dimension is dynamic) and the two
graphs must be identical; otherwise export raises and says why.
"""
from __future__ import annotations

import inspect
import math
import os
import sys
from typing import Any, Callable

import numpy as np

from . import _C
from ._optional import require
from .nn import conv as _conv, functional as _F, normalization as _norm, rnn as _rnn, sparse as _sparse
from .nn.modules import Module, PReLU, Softshrink, Hardshrink, Threshold
from .autograd import enable_grad
from .tensor import Tensor, tensor

__all__ = ["export", "UnsupportedOperatorError"]

_BATCH = object()  # dynamic_axes' default: dim 0 of every input and output is "batch"


class UnsupportedOperatorError(RuntimeError):
    """A layer or an op of the model has no ONNX conversion (yet)."""


def _onnx():
    for submodule in ("onnx.helper", "onnx.numpy_helper"):  # the ones the builder uses
        require(submodule, "onnx", "cgrad.onnx.export")
    return require("onnx", "onnx", "cgrad.onnx.export")


def _key(t) -> int:
    return _C.tensor_key(t)


def _flat(out) -> list:
    """The tensors of a layer's output (tuples and lists nested), in order."""
    if isinstance(out, Tensor):
        return [out]
    if isinstance(out, (tuple, list)):
        return [t for o in out for t in _flat(o)]
    return []


class _Call:
    __slots__ = ("module", "name", "args", "kwargs", "outputs")

    def __init__(self, module, name, args, kwargs, outputs):
        self.module, self.name, self.args, self.kwargs, self.outputs = module, name, args, kwargs, outputs


def _where(name: str) -> str:
    return f" ({name})" if name else ""


class _Builder:
    """One trace of the model read back into ONNX nodes."""

    def __init__(self, model, inputs: list, input_names: list, dynamic_batch: bool, opset: int):
        self.onnx = _onnx()
        self.opset = opset
        self.h = self.onnx.helper
        self.nodes: list = []
        self.inits: dict = {}        # name -> array
        self.names: dict = {}        # tensor key -> ONNX value name
        self.dtypes: dict = {}       # ONNX value name -> numpy dtype
        self.count = 0
        self.dynamic = dynamic_batch
        self.keep: list = []         # tensors whose keys are in use: kept alive
        for t, n in zip(inputs, input_names):
            self.names[_key(t)] = n
            self.dtypes[n] = t.numpy().dtype
        self.params: dict[int, str] = {}
        for n, p in list(model.named_parameters()) + list(model.named_buffers()):
            if p is not None:
                self.params.setdefault(_key(p), n)
                self.keep.append(p)
        self.current = None          # the tensor being converted, and what made each constant
        self.origin: dict = {}
        self.calls: dict = {}        # output key -> the call of a layer with a converter
        self.all_calls: list = []    # every layer call, innermost first (for error messages)

    # ---- building blocks ----
    def fresh(self, hint: str) -> str:
        self.count += 1
        return f"{hint}_{self.count}"

    def const(self, value, dtype=None, hint: str = "const") -> str:
        arr = np.asarray(value, dtype=dtype)
        name = self.fresh(hint)
        self.inits[name] = arr
        self.dtypes[name] = arr.dtype
        self.origin[name] = self.current
        return name

    def ints(self, values) -> str:
        return self.const(np.asarray(list(values), dtype=np.int64), hint="shape")

    def scalar(self, value, like: str) -> str:
        """A 0-dim constant in the dtype of the value `like`."""
        return self.const(np.asarray(value, dtype=self.dtypes.get(like, np.float32)), hint="scalar")

    def op(self, op_type: str, inputs: list, n_out: int = 1, dtype=None, **attrs) -> Any:
        outs = [self.fresh(op_type.lower()) for _ in range(n_out)]
        self.nodes.append(self.h.make_node(op_type, inputs, outs, **attrs))
        first = next((i for i in inputs if i), None)
        for o in outs:
            self.dtypes[o] = dtype if dtype is not None else self.dtypes.get(first, np.float32)
        return outs[0] if n_out == 1 else outs

    def reshape(self, x: str, in_shape: tuple, out_shape: tuple) -> str:
        """Reshape whose target holds for any batch size when the batch is dynamic: the
        leading dims it shares with the input copied (0); without any, -1 at the output dim
        that holds the input's dim 0 (after leading 1s). Others stay as traced: a reshape
        that splits the batch stays literal, and the second trace refuses it."""
        target = list(out_shape)
        k = 0
        while k < min(len(in_shape), len(target)) and in_shape[k] == target[k]:
            target[k] = 0
            k += 1
        if self.dynamic and k == 0 and in_shape and target:
            prefix = 1
            for j, n in enumerate(target):
                if prefix == 1 and n % max(in_shape[0], 1) == 0 and n >= in_shape[0]:
                    target[j] = -1
                    break
                prefix *= n
        return self.op("Reshape", [x, self.ints(target)])

    # ---- reading the trace back ----
    def value(self, t) -> str:
        k = _key(t)
        name = self.names.get(k)
        if name is not None:
            return name
        self.keep.append(t)
        outer, self.current = self.current, t
        try:
            name = self._convert(t, k)
        finally:
            self.current = outer
        if t.grad_fn is None and name in self.origin:  # a constant leaf: named by the op that reads it
            self.origin[name] = outer
        self.names[k] = name
        return name

    def _convert(self, t, k: int) -> str:
        call = self.calls.get(k)
        if call is not None:
            conv = _layer_converter(call.module)
            assert conv is not None
            args = [self.value(a) if isinstance(a, Tensor) else a for a in call.args]
            outs = conv(self, call, args)
            for o, n in zip(call.outputs, outs):
                if n is not None:
                    self.names.setdefault(_key(o), n)
            return self.names[k]
        if t.grad_fn is None:  # a leaf: a parameter, a buffer, or a constant of the forward
            arr = np.ascontiguousarray(t.numpy())
            pname = self.params.get(k)
            if pname is not None:
                self.inits[pname] = arr
                self.dtypes[pname] = arr.dtype
                name = pname
            else:
                name = self.const(arr.copy())
        else:
            op, ins = _C.graph_node(t)
            params = _C.node_params(t)
            fn = _OPS.get(op)
            if fn is None:
                raise UnsupportedOperatorError(f"onnx.export: the op '{op}'{self._inside(t)} cannot be exported yet")
            self.keep.extend(ins)
            name = fn(self, t, ins, [self.value(i) for i in ins], params[1], params[2], params[3])
        return name

    def describe(self, name: str) -> str:
        """What made the ONNX constant `name`: 'the op 'x' in Layer (path)' or a layer."""
        t = self.origin.get(name)
        if t is None:
            return "a constant"
        call = self.calls.get(_key(t))
        if call is not None:
            m = call.module
            return m.label(call.name) if isinstance(m, _Functional) else f"{type(m).__name__}{_where(call.name)}"
        op = _C.graph_node(t)[0]
        return f"the op '{op}'{self._inside(t)}" if op else "a constant of the forward"

    def _inside(self, t) -> str:
        """' in Layer (path)' for the innermost layer call that made t, if any."""
        k = _key(t)
        for call in self.all_calls:
            if isinstance(call.module, _Functional):
                continue
            stop = {_key(a) for a in _flat(list(call.args))}
            seen, stack = set(), list(call.outputs)
            while stack:
                u = stack.pop()
                uk = _key(u)
                if uk in seen or uk in stop:
                    continue
                if uk == k:
                    return f" in {type(call.module).__name__}{_where(call.name)}"
                seen.add(uk)
                stack.extend(_C.graph_node(u)[1])
        return ""


# ---- the tape's ops ----
def _unary(onnx_op: str, **attrs) -> Callable:
    return lambda b, t, ins, xs, p0, p1, ip: b.op(onnx_op, xs, **attrs)


def _scalar_op(onnx_op: str, reverse: bool = False) -> Callable:
    def fn(b, t, ins, xs, p0, p1, ip):
        c = b.scalar(p0, xs[0])
        return b.op(onnx_op, [c, xs[0]] if reverse else [xs[0], c])
    return fn


def _gelu(b, x):
    # 0.5 x (1 + erf(x / sqrt 2)): ONNX's Gelu op is opset 20
    e = b.op("Erf", [b.op("Mul", [x, b.scalar(math.sqrt(0.5), x)])])
    return b.op("Mul", [b.op("Mul", [x, b.scalar(0.5, x)]), b.op("Add", [e, b.scalar(1.0, x)])])


def _gelu_tanh(b, x):
    cube = b.op("Mul", [b.op("Mul", [x, x]), x])
    inner = b.op("Mul", [b.op("Add", [x, b.op("Mul", [cube, b.scalar(0.044715, x)])]),
                         b.scalar(math.sqrt(2 / math.pi), x)])
    return b.op("Mul", [b.op("Mul", [x, b.scalar(0.5, x)]), b.op("Add", [b.op("Tanh", [inner]), b.scalar(1.0, x)])])


def _clip(b, x, lo, hi):
    return b.op("Clip", [x, b.scalar(lo, x), b.scalar(hi, x)])


def _axis_of(shape: tuple, O: int, R: int, I: int) -> int:
    """The dim a [O, R, I] view of `shape` runs over (reductions, softmax)."""
    for a in range(len(shape) - 1, -1, -1):
        if shape[a] == R and math.prod(shape[a + 1:]) == I and math.prod(shape[:a]) == O:
            return a
    raise UnsupportedOperatorError(f"onnx.export: a reduction of shape {shape} over [{O}, {R}, {I}]")


def _softmax(onnx_op):
    def fn(b, t, ins, xs, p0, p1, ip):
        return b.op(onnx_op, xs, axis=_axis_of(ins[0].shape, *ip[:3]))
    return fn


def _reduce_mean(b, x: str, axes: list) -> str:
    """ReduceMean keeping dims; its axes became an input at opset 18 (ReduceSum's at 13)."""
    if b.opset >= 18:
        return b.op("ReduceMean", [x, b.ints(axes)], keepdims=1)
    return b.op("ReduceMean", [x], axes=axes, keepdims=1)


def _reduce(onnx_op):
    def fn(b, t, ins, xs, p0, p1, ip):
        shape = ins[0].shape
        axis = _axis_of(shape, *ip[:3])
        if onnx_op == "ReduceSum":
            y = b.op(onnx_op, [xs[0], b.ints([axis])], keepdims=1)
        else:
            y = _reduce_mean(b, xs[0], [axis])
        return b.reshape(y, shape[:axis] + (1,) + shape[axis + 1:], t.shape)
    return fn


def _linear_op(b, t, ins, xs, p0, p1, ip):
    if len(ins[0].shape) == 2:
        return b.op("Gemm", xs, transB=1)
    y = b.op("MatMul", [xs[0], b.op("Transpose", [xs[1]], perm=[1, 0])])
    return b.op("Add", [y, xs[2]]) if len(xs) == 3 else y


def _reshape_op(b, t, ins, xs, p0, p1, ip):
    return b.reshape(xs[0], ins[0].shape, t.shape)


def _strided(b, t, ins, xs, p0, p1, ip):
    """A permutation and basic slicing of a contiguous input (the strides and the base
    offset into it, ip[0..ndim) and ip[8]) as Slice, Transpose and Reshape."""
    shape, out = ins[0].shape, t.shape
    cs = [math.prod(shape[d + 1:]) for d in range(len(shape))]
    strides, base = list(ip[:len(out)]), int(ip[8])
    starts = [(base // cs[d]) % shape[d] if shape[d] else 0 for d in range(len(shape))]
    dims, steps = [], []
    for k, (n, s) in enumerate(zip(out, strides)):
        if n == 1:
            continue
        cand = [d for d in range(len(shape)) if s % cs[d] == 0 and s != 0 and
                starts[d] + (s // cs[d]) * (n - 1) < shape[d] and d not in dims]
        if not cand:
            raise UnsupportedOperatorError(f"onnx.export: a strided view of shape {out} with strides {strides} "
                                           f"of an input of shape {shape}{b._inside(t)} cannot be exported yet")
        dims.append(cand[0])
        steps.append(s // cs[cand[0]])
    if sum(starts[d] * cs[d] for d in range(len(shape))) != base:
        raise UnsupportedOperatorError(f"onnx.export: a strided view with base {base}{b._inside(t)}")
    # slice every input dim: the used ones by their range, the others to their one index
    slices = []  # (axis, start, end, step)
    kept = []
    sizes = [n for n in out if n != 1]
    for d in range(len(shape)):
        if d in dims:
            step, n = steps[dims.index(d)], sizes[dims.index(d)]
            if not (starts[d] == 0 and step == 1 and n == shape[d]):  # a whole dim needs no Slice
                slices.append((d, starts[d], starts[d] + step * (n - 1) + 1, step))
            kept.append(d)
        elif shape[d] != 1:
            slices.append((d, starts[d], starts[d] + 1, 1))
    s_axes, s_starts, s_ends, s_steps = (list(c) for c in zip(*slices)) if slices else ([], [], [], [])
    x = xs[0]
    if s_axes:
        x = b.op("Slice", [x, b.ints(s_starts), b.ints(s_ends), b.ints(s_axes), b.ints(s_steps)])
    # the sliced shape, the kept dims moved into the output's order, then the output's size-1 dims
    sliced = list(shape)
    for a, s0, e, st in zip(s_axes, s_starts, s_ends, s_steps):
        sliced[a] = len(range(s0, e, st))
    order = sorted(kept, key=dims.index)
    perm = order + [d for d in range(len(shape)) if d not in order]
    if perm != list(range(len(shape))):
        x = b.op("Transpose", [x], perm=perm)
    moved = tuple(sliced[d] for d in perm)
    return x if moved == tuple(out) else b.reshape(x, moved, tuple(out))


def _conv_op(b, t, ins, xs, p0, p1, ip):
    """F.conv1d/conv2d: ip holds (stride, padding, dilation) as (height, width) pairs, the
    height of a 1-D convolution being 1, then groups."""
    n = len(ins[0].shape) - 2
    pick = (lambda h, w: [int(w)]) if n == 1 else (lambda h, w: [int(h), int(w)])
    lo, strides, dilations, kernel = pick(ip[2], ip[3]), pick(ip[0], ip[1]), pick(ip[4], ip[5]), ins[1].shape[2:]
    # the padding after, from the output's size: 'same' with an even reach pads one more after
    hi = [(o - 1) * st + d * (k - 1) + 1 - size - p
          for o, st, d, k, size, p in zip(t.shape[2:], strides, dilations, kernel, ins[0].shape[2:], lo)]
    return b.op("Conv", xs, kernel_shape=list(kernel), strides=strides, pads=lo + hi, dilations=dilations,
                group=int(ip[6]))


def _where_op(b, t, ins, xs, p0, p1, ip):
    # the condition is data the op keeps, not an input: a constant (the second trace refuses
    # one computed from the input's values)
    mask = _C.node_params(t)[4].reshape(t.shape)
    for axis in range(mask.ndim):  # kept only where it varies, so it broadcasts over the batch
        if mask.shape[axis] > 1 and (mask == mask.take([0], axis=axis)).all():
            mask = mask.take([0], axis=axis)
    cond = b.const(mask, hint="condition")
    return b.op("Where", [cond, xs[0], xs[1]], dtype=b.dtypes[xs[1]])


def _gather_op(b, t, ins, xs, p0, p1, ip):
    """Rows of the input seen as [-1, inner], chosen by the indices the op keeps."""
    index = b.const(_C.node_params(t)[4], hint="index")
    shape = ins[0].shape
    if shape and t.shape == (int(ip[0]),) + shape[1:]:  # rows along dim 0: no reshape, so any batch size
        return b.op("Gather", [xs[0], index], axis=0)
    rows = b.op("Reshape", [xs[0], b.ints([-1, int(ip[1])])])
    return b.reshape(b.op("Gather", [rows, index], axis=0), (int(ip[0]), int(ip[1])), t.shape)


def _cast_op(b, t, ins, xs, p0, p1, ip):
    dtype = t.numpy().dtype
    return b.op("Cast", xs, to=b.h.np_dtype_to_tensor_dtype(dtype), dtype=dtype)


def _filled(b, like: str, shape, value: float) -> str:
    """A constant of `shape` full of value, in the dtype of `like` (absent affine parameters)."""
    return b.const(np.full(shape, value, dtype=b.dtypes.get(like, np.float32)))


def _norm_op(b, t, ins, xs, p0, p1, ip):
    """layer_norm and rms_norm over the trailing dims that hold ip[1] values; ip[2]'s bits
    say which of weight and bias follow x (eps is p0, already the dtype's for RMSNorm's None)."""
    shape, D, flags = ins[0].shape, int(ip[1]), int(ip[2])
    k = next(k for k in range(1, len(shape) + 1) if math.prod(shape[len(shape) - k:]) == D)
    x, rest = xs[0], list(xs[1:])
    w = rest.pop(0) if flags & 1 else None
    bias = rest.pop(0) if flags & 2 else None
    if _C.graph_node(t)[0] == "layer_norm":
        w = w or _filled(b, x, shape[len(shape) - k:], 1.0)
        return b.op("LayerNormalization", [x, w] + ([bias] if bias else []), axis=-k, epsilon=float(p0))
    # RMSNorm: x / sqrt(mean(x^2) + eps) w (ONNX's RMSNormalization is opset 23)
    ms = _reduce_mean(b, b.op("Mul", [x, x]), list(range(-k, 0)))
    y = b.op("Mul", [x, b.op("Reciprocal", [b.op("Sqrt", [b.op("Add", [ms, b.scalar(p0, x)])])])])
    return b.op("Mul", [y, w]) if w else y


def _concat(b, t, ins, xs, p0, p1, ip):
    return b.op("Concat", xs, axis=int(ip[0]))


def _attention(b, t, ins, xs, p0, p1, ip):
    flags = int(ip[5])
    if len(ins) != 3 or flags & ~2:
        raise UnsupportedOperatorError(f"onnx.export: scaled_dot_product_attention with a mask{b._inside(t)} "
                                       "cannot be exported yet (is_causal can)")
    q, k, v = xs
    nd = len(ins[1].shape)
    perm = list(range(nd - 2)) + [nd - 1, nd - 2]
    scores = b.op("Mul", [b.op("MatMul", [q, b.op("Transpose", [k], perm=perm)]), b.scalar(p0, q)])
    if flags & 2:  # query i attends keys 0..i
        L, S = int(ip[1]), int(ip[2])
        mask = np.where(np.tril(np.ones((L, S), dtype=bool)), 0.0, -np.inf).astype(b.dtypes[q])
        scores = b.op("Add", [scores, b.const(mask, hint="causal_mask")])
    return b.op("MatMul", [b.op("Softmax", [scores], axis=-1), v])


_OPS: dict[str, Callable] = {
    "neg": _unary("Neg"), "exp": _unary("Exp"), "log": _unary("Log"), "sqrt": _unary("Sqrt"), "abs": _unary("Abs"),
    "relu": _unary("Relu"), "sigmoid": _unary("Sigmoid"), "tanh": _unary("Tanh"), "softplus": _unary("Softplus"),
    "sin": _unary("Sin"), "cos": _unary("Cos"), "tan": _unary("Tan"), "atan": _unary("Atan"),
    "sinh": _unary("Sinh"), "cosh": _unary("Cosh"), "erf": _unary("Erf"), "reciprocal": _unary("Reciprocal"),
    "sign": _unary("Sign"), "floor": _unary("Floor"), "ceil": _unary("Ceil"), "round": _unary("Round"),
    "softsign": _unary("Softsign"), "selu": _unary("Selu"),
    "leaky_relu": lambda b, t, ins, xs, p0, p1, ip: b.op("LeakyRelu", xs, alpha=p0),
    "elu": lambda b, t, ins, xs, p0, p1, ip: b.op("Elu", xs, alpha=p0),
    "clip": lambda b, t, ins, xs, p0, p1, ip: _clip(b, xs[0], p0, p1),
    "hardtanh": lambda b, t, ins, xs, p0, p1, ip: _clip(b, xs[0], p0, p1),
    "square": lambda b, t, ins, xs, p0, p1, ip: b.op("Mul", [xs[0], xs[0]]),
    "rsqrt": lambda b, t, ins, xs, p0, p1, ip: b.op("Reciprocal", [b.op("Sqrt", xs)]),
    "log1p": lambda b, t, ins, xs, p0, p1, ip: b.op("Log", [b.op("Add", [xs[0], b.scalar(1.0, xs[0])])]),
    "expm1": lambda b, t, ins, xs, p0, p1, ip: b.op("Sub", [b.op("Exp", xs), b.scalar(1.0, xs[0])]),
    "silu": lambda b, t, ins, xs, p0, p1, ip: b.op("Mul", [xs[0], b.op("Sigmoid", xs)]),
    "mish": lambda b, t, ins, xs, p0, p1, ip: b.op("Mul", [xs[0], b.op("Tanh", [b.op("Softplus", xs)])]),
    "gelu": lambda b, t, ins, xs, p0, p1, ip: _gelu(b, xs[0]),
    "gelu_tanh": lambda b, t, ins, xs, p0, p1, ip: _gelu_tanh(b, xs[0]),
    "pow_scalar": _scalar_op("Pow"), "add_scalar": _scalar_op("Add"), "mul_scalar": _scalar_op("Mul"),
    "div_scalar": _scalar_op("Div"), "rsub_scalar": _scalar_op("Sub", reverse=True),
    "rdiv_scalar": _scalar_op("Div", reverse=True),
    "add": _unary("Add"), "sub": _unary("Sub"), "mul": _unary("Mul"), "div": _unary("Div"), "pow": _unary("Pow"),
    "maximum": _unary("Max"), "minimum": _unary("Min"),
    "softmax": _softmax("Softmax"), "log_softmax": _softmax("LogSoftmax"),
    "sum": _reduce("ReduceSum"), "mean": _reduce("ReduceMean"),
    "matmul": _unary("MatMul"), "linear": _linear_op, "reshape": _reshape_op, "strided": _strided,
    "concat": _concat, "scaled_dot_product_attention": _attention, "conv": _conv_op, "where": _where_op,
    "gather": _gather_op, "cast": _cast_op, "layer_norm": _norm_op, "rms_norm": _norm_op,
}


# ---- layers with converters: their native ONNX ops, from their attributes ----
def _tuple(v, n: int) -> list:
    return [int(i) for i in v] if isinstance(v, (tuple, list)) else [int(v)] * n


def _conv_layer(b, call, args):
    m, x = call.module, args[0]
    n = m._n
    if call.args[0].ndim != n + 2:
        raise UnsupportedOperatorError(f"onnx.export: {type(m).__name__}{_where(call.name)} on an unbatched input "
                                       "cannot be exported yet")
    pads = _F._conv_padding(m.padding, m.kernel_size, m.stride, m.dilation, type(m).__name__)
    lo, hi = [int(p[0]) for p in pads], [int(p[1]) for p in pads]
    if m.padding_mode != "zeros" and any(lo + hi):
        mode = {"reflect": "reflect", "replicate": "edge", "circular": "wrap"}[m.padding_mode]
        if mode == "wrap" and b.opset < 19:
            raise UnsupportedOperatorError(f"onnx.export: {type(m).__name__}{_where(call.name)} with "
                                           "padding_mode='circular' needs opset_version >= 19")
        x = b.op("Pad", [x, b.ints([0, 0] + lo + [0, 0] + hi)], mode=mode)
        lo, hi = [0] * n, [0] * n
    ins = [x, b.value(m.weight)] + ([b.value(m.bias)] if m.bias is not None else [])
    return [b.op("Conv", ins, kernel_shape=list(m.kernel_size), strides=list(m.stride), pads=lo + hi,
                 dilations=list(m.dilation), group=int(m.groups))]


class _Functional:
    """A pooling function's call noted while tracing (F.max_pool2d, ... , which the pooling
    layers call too): its arguments by name, and the layer it ran in."""

    def __init__(self, fn_name: str, arguments: dict, inside):
        self.fn_name, self.inside = fn_name, inside
        self.__dict__.update(arguments)

    def label(self, path: str) -> str:
        return f"{self.fn_name}" + (f" in {type(self.inside).__name__}{_where(path)}" if self.inside else "")


def _pool_fn(b, call, args):
    m, x, nd = call.module, args[0], call.args[0].ndim
    n = 1 if m.fn_name.endswith("1d") else 2
    what = m.label(call.name)
    if nd != n + 2:
        raise UnsupportedOperatorError(f"onnx.export: {what} on an unbatched input cannot be exported yet")
    stride = m.stride if m.stride is not None and m.stride != [] else m.kernel_size
    k, s, p = _tuple(m.kernel_size, n), _tuple(stride, n), _tuple(m.padding, n)
    d = _tuple(m.dilation, n) if m.fn_name.startswith("max") else [1] * n
    attrs: dict = dict(kernel_shape=k, strides=s, pads=p + p, ceil_mode=int(m.ceil_mode))
    if m.fn_name.startswith("max"):
        if m.return_indices:
            raise UnsupportedOperatorError(f"onnx.export: {what} with return_indices=True cannot be exported yet")
        y = b.op("MaxPool", [x], dilations=d, **attrs)
    elif getattr(m, "divisor_override", None):
        raise UnsupportedOperatorError(f"onnx.export: {what} with divisor_override cannot be exported yet")
    else:
        y = b.op("AveragePool", [x], count_include_pad=int(m.count_include_pad), **attrs)
    # with ceil_mode, PyTorch drops a last window that would start in the padding after, and
    # ONNX's output size keeps it: slice it off where the two differ
    sizes = call.args[0].shape[2:]
    onnx_out = [-(-(size + 2 * pi - (di * (ki - 1) + 1)) // si) + 1 if m.ceil_mode else
                (size + 2 * pi - (di * (ki - 1) + 1)) // si + 1
                for size, pi, di, ki, si in zip(sizes, p, d, k, s)]
    want = list(_flat(call.outputs)[0].shape[2:])
    if onnx_out != want:
        axes = [2 + i for i in range(n) if onnx_out[i] != want[i]]
        y = b.op("Slice", [y, b.ints([0] * len(axes)), b.ints([want[a - 2] for a in axes]), b.ints(axes)])
    return [y]


def _adaptive_fn(b, call, args):
    m, x, shape = call.module, args[0], call.args[0].shape
    n = 1 if m.fn_name.endswith("1d") else 2
    avg, what = "avg" in m.fn_name, m.label(call.name)
    if len(shape) != n + 2 or getattr(m, "return_indices", False):
        raise UnsupportedOperatorError(f"onnx.export: {what} on an unbatched input or with return_indices "
                                       "cannot be exported yet")
    size = m.output_size if isinstance(m.output_size, (tuple, list)) else (m.output_size,) * n
    ins = shape[2:]
    outs = [i if o is None else int(o) for i, o in zip(ins, size)]
    if all(o == 1 for o in outs):
        return [b.op("GlobalAveragePool" if avg else "GlobalMaxPool", [x])]
    if any(i % o for i, o in zip(ins, outs)):
        raise UnsupportedOperatorError(f"onnx.export: {what} from {tuple(ins)} to {tuple(outs)}: only sizes the "
                                       "input divides (fixed windows) can be exported")
    k = [i // o for i, o in zip(ins, outs)]
    return [b.op("AveragePool" if avg else "MaxPool", [x], kernel_shape=k, strides=k)]


# pooling's geometry is not in its node (the core keeps window tables), so the functions are noted instead
_FUNCTIONS: dict[str, Callable] = {
    "max_pool1d": _pool_fn, "max_pool2d": _pool_fn, "avg_pool1d": _pool_fn, "avg_pool2d": _pool_fn,
    "adaptive_avg_pool1d": _adaptive_fn, "adaptive_avg_pool2d": _adaptive_fn,
    "adaptive_max_pool1d": _adaptive_fn, "adaptive_max_pool2d": _adaptive_fn,
}


def _batch_norm_layer(b, call, args):
    m, x = call.module, args[0]
    if m.running_mean is None:
        raise UnsupportedOperatorError(f"onnx.export: {type(m).__name__}{_where(call.name)} with "
                                       "track_running_stats=False (batch statistics in eval) cannot be exported yet")
    c = m.num_features
    w = b.value(m.weight) if m.weight is not None else _filled(b, x, c, 1.0)
    bias = b.value(m.bias) if m.bias is not None else _filled(b, x, c, 0.0)
    return [b.op("BatchNormalization", [x, w, bias, b.value(m.running_mean), b.value(m.running_var)],
                 epsilon=float(m.eps))]


def _group_norm_layer(b, call, args):
    # InstanceNormalization over [N, G, rest]: ONNX's GroupNormalization changed meaning at opset 21
    m, x, shape = call.module, args[0], call.args[0].shape
    g = m.num_groups
    grouped = b.op("Reshape", [x, b.ints([0, g, -1])])
    normed = b.op("InstanceNormalization", [grouped, _filled(b, x, g, 1.0), _filled(b, x, g, 0.0)],
                  epsilon=float(m.eps))
    y = b.op("Reshape", [normed, b.op("Shape", [x], dtype=np.int64)])
    per_channel = (m.num_channels,) + (1,) * (len(shape) - 2)
    if m.weight is not None:
        y = b.op("Mul", [y, b.op("Reshape", [b.value(m.weight), b.ints(per_channel)])])
    if m.bias is not None:
        y = b.op("Add", [y, b.op("Reshape", [b.value(m.bias), b.ints(per_channel)])])
    return [y]


def _embedding_layer(b, call, args):
    m = call.module
    if m.max_norm is not None:
        raise UnsupportedOperatorError(f"onnx.export: Embedding{_where(call.name)} with max_norm cannot be "
                                       "exported yet")
    ids = args[0]
    if b.dtypes.get(ids) not in (np.int64, np.int32):
        ids = b.op("Cast", [ids], to=b.onnx.TensorProto.INT64, dtype=np.int64)
    return [b.op("Gather", [b.value(m.weight), ids], axis=0, dtype=b.dtypes[b.value(m.weight)])]


def _gates(w: np.ndarray, mode: str, hidden: int) -> np.ndarray:
    """PyTorch's gate blocks in ONNX's order: GRU r,z,n -> z,r,n; LSTM i,f,g,o -> i,o,f,c."""
    blocks = [w[i * hidden:(i + 1) * hidden] for i in range(len(w) // hidden)]
    if mode == "GRU":
        blocks = [blocks[1], blocks[0], blocks[2]]
    elif mode == "LSTM":
        blocks = [blocks[0], blocks[3], blocks[1], blocks[2]]
    return np.concatenate(blocks)


def _recurrence(b, mode: str, hidden: int, x: str, directions: list, h0, c0) -> list:
    """One ONNX RNN/GRU/LSTM node over x [T, N, in]: directions holds (w_ih, w_hh, b_ih,
    b_hh) per direction (PyTorch's layout; biases None without bias), h0 and c0 are
    [D, N, H] values or None. Returns its outputs Y [T, D, N, H], Y_h (and Y_c)."""
    op_type = {"RNN_TANH": "RNN", "RNN_RELU": "RNN", "GRU": "GRU", "LSTM": "LSTM"}[mode]
    D = len(directions)
    attrs: dict = dict(hidden_size=hidden, direction="bidirectional" if D == 2 else "forward")
    if op_type == "RNN":
        attrs["activations"] = ["Relu" if mode == "RNN_RELU" else "Tanh"] * D
    if op_type == "GRU":
        attrs["linear_before_reset"] = 1  # PyTorch's n = tanh(W_in x + b_in + r * (W_hn h + b_hn))
    W = np.stack([_gates(w_ih.numpy(), mode, hidden) for w_ih, _, _, _ in directions])
    R = np.stack([_gates(w_hh.numpy(), mode, hidden) for _, w_hh, _, _ in directions])
    biased = directions[0][2] is not None
    ins = [x, b.const(W, hint="W"), b.const(R, hint="R")]
    ins.append(b.const(np.stack([np.concatenate([_gates(b_ih.numpy(), mode, hidden), _gates(b_hh.numpy(), mode, hidden)])
                                 for _, _, b_ih, b_hh in directions]), hint="B") if biased else "")
    ins += ["", h0 or "", c0 or ""]  # no sequence_lens: every sequence runs all T steps
    while ins[-1] == "":
        ins.pop()
    return b.op(op_type, ins, n_out=3 if mode == "LSTM" else 2, **attrs)


def _rnn_layer(b, call, args):
    m, x = call.module, args[0]
    H, D, lstm = m.hidden_size, 2 if m.bidirectional else 1, m.mode == "LSTM"
    unbatched = call.args[0].ndim == 2
    hx = call.args[1] if len(call.args) > 1 else call.kwargs.get("hx")
    h0 = c0 = None
    if hx is not None:
        h0, c0 = (hx if lstm else (hx, None))
        h0, c0 = b.value(h0), (b.value(c0) if c0 is not None else None)
        if unbatched:
            h0 = b.op("Unsqueeze", [h0, b.ints([1])])
            c0 = b.op("Unsqueeze", [c0, b.ints([1])]) if c0 is not None else None
    if unbatched:
        x = b.op("Unsqueeze", [x, b.ints([1])])
    elif m.batch_first:
        x = b.op("Transpose", [x], perm=[1, 0, 2])

    def layer_state(state, layer):
        return b.op("Slice", [state, b.ints([layer * D]), b.ints([(layer + 1) * D]), b.ints([0])]) if state else None
    hs, cs = [], []
    for layer in range(m.num_layers):  # stacked: each layer's output [T, N, D H] feeds the next
        directions = [m._layer_params(layer, s) for s in ("", "_reverse")[:D]]
        outs = _recurrence(b, m.mode, H, x, directions, layer_state(h0, layer), layer_state(c0, layer))
        x = b.op("Reshape", [b.op("Transpose", [outs[0]], perm=[0, 2, 1, 3]), b.ints([0, 0, -1])])
        hs.append(outs[1])
        if lstm:
            cs.append(outs[2])
    out = x
    if unbatched:
        out = b.op("Squeeze", [out, b.ints([1])])
    elif m.batch_first:
        out = b.op("Transpose", [out], perm=[1, 0, 2])

    def stacked(parts):
        v = parts[0] if len(parts) == 1 else b.op("Concat", parts, axis=0)
        return b.op("Squeeze", [v, b.ints([1])]) if unbatched else v
    return [out, stacked(hs)] + ([stacked(cs)] if lstm else [])


def _cell_layer(b, call, args):
    """RNNCell/GRUCell/LSTMCell: the recurrence over one step, input [N, in] or [in]."""
    m, x = call.module, args[0]
    lstm = m.mode == "LSTM"
    axes = [0] if call.args[0].ndim == 2 else [0, 1]  # to [T=1, N, in]; states to [D=1, N, H]
    hx = call.args[1] if len(call.args) > 1 else call.kwargs.get("hx")
    states = list(hx) if lstm and hx is not None else [hx, None]
    h0, c0 = (b.op("Unsqueeze", [b.value(s), b.ints(axes)]) if s is not None else None for s in states)
    outs = _recurrence(b, m.mode, m.hidden_size, b.op("Unsqueeze", [x, b.ints(axes)]),
                       [(m.weight_ih, m.weight_hh, m.bias_ih, m.bias_hh)], h0, c0)
    return [b.op("Squeeze", [o, b.ints(axes)]) for o in outs[1:]]


def _upsample_layer(b, call, args):
    # output[i] = input[floor(i / scale)]: Resize's asymmetric nearest with floor
    m, x, shape = call.module, args[0], call.args[0].shape
    attrs = dict(mode="nearest", coordinate_transformation_mode="asymmetric", nearest_mode="floor")
    n = len(shape) - 2
    if m.size is not None:
        size = list(m.size) if isinstance(m.size, (list, tuple)) else [m.size] * n
        sizes = b.op("Concat", [b.op("Slice", [b.op("Shape", [x], dtype=np.int64), b.ints([0]), b.ints([2])]),
                                b.ints(size)], axis=0)
        return [b.op("Resize", [x, "", "", sizes], **attrs)]
    if m.recompute_scale_factor:
        raise UnsupportedOperatorError(f"onnx.export: Upsample{_where(call.name)} with recompute_scale_factor "
                                       "cannot be exported yet")
    f = list(m.scale_factor) if isinstance(m.scale_factor, tuple) else [m.scale_factor] * n
    scales = b.const(np.asarray([1.0, 1.0] + f, dtype=np.float32), hint="scales")
    return [b.op("Resize", [x, "", scales], **attrs)]


def _prelu_layer(b, call, args):
    m, x, nd = call.module, args[0], call.args[0].ndim
    w = b.value(m.weight)
    if m.weight.numel() != 1 and nd > 2:  # one slope per channel (dim 1): broadcast over the rest
        w = b.op("Reshape", [w, b.ints([-1] + [1] * (nd - 2))])
    return [b.op("PRelu", [x, w])]


def _shrink_layer(b, call, args):
    m = call.module
    soft = type(m) is Softshrink
    return [b.op("Shrink", [args[0]], lambd=float(m.lambd), bias=float(m.lambd) if soft else 0.0)]


def _threshold_layer(b, call, args):
    m, x = call.module, args[0]
    keep = b.op("Greater", [x, b.scalar(m.threshold, x)], dtype=np.bool_)
    return [b.op("Where", [keep, x, b.scalar(m.value, x)], dtype=b.dtypes[x])]


_LAYERS: dict[type, Callable] = {
    _conv.Conv1d: _conv_layer, _conv.Conv2d: _conv_layer,
    _norm.BatchNorm1d: _batch_norm_layer, _norm.BatchNorm2d: _batch_norm_layer,
    _norm.GroupNorm: _group_norm_layer, _sparse.Embedding: _embedding_layer,
    _rnn.RNN: _rnn_layer, _rnn.GRU: _rnn_layer, _rnn.LSTM: _rnn_layer,
    _rnn.RNNCell: _cell_layer, _rnn.GRUCell: _cell_layer, _rnn.LSTMCell: _cell_layer,
    _norm.Upsample: _upsample_layer,
    PReLU: _prelu_layer, Softshrink: _shrink_layer, Hardshrink: _shrink_layer, Threshold: _threshold_layer,
}


def _layer_converter(module) -> Callable | None:
    if isinstance(module, _Functional):
        return _FUNCTIONS[module.fn_name]
    return _LAYERS.get(type(module))


# ---- tracing and the public entry point ----
def _trace(model, arrays: list, input_names: list, dynamic_batch: bool, opset: int):
    """Run the model on `arrays` and read its graph back: (builder, output names)."""
    inputs = [tensor(a, requires_grad=a.dtype.kind == "f") for a in arrays]
    b = _Builder(model, inputs, input_names, dynamic_batch, opset)
    qualified = {id(m): n for n, m in model.named_modules()}
    original = Module.__call__
    stack: list = []  # the layers running

    def note(call, a) -> None:
        b.all_calls.append(call)
        b.keep.extend(call.outputs)
        if _layer_converter(call.module) is not None:
            in_keys = {_key(t) for t in _flat(list(a))}
            for t in call.outputs:
                if _key(t) not in in_keys:  # a layer that returns its input adds nothing
                    b.calls.setdefault(_key(t), call)

    def noting(self, *a, **kw):
        stack.append(self)
        try:
            out = original(self, *a, **kw)
        finally:
            stack.pop()
        note(_Call(self, qualified.get(id(self), ""), a, kw, _flat(out)), a)
        return out

    def noting_function(name, fn):
        signature = inspect.signature(fn)

        def wrapper(*a, **kw):
            out = fn(*a, **kw)
            bound = signature.bind(*a, **kw)
            bound.apply_defaults()
            inside = stack[-1] if stack else None
            path = qualified.get(id(inside), "") if inside is not None else ""
            note(_Call(_Functional(name, dict(bound.arguments), inside), path, (bound.arguments["input"],), {},
                       _flat(out)), a)
            return out
        return wrapper
    saved = {name: getattr(_F, name) for name in _FUNCTIONS}
    Module.__call__ = noting  # type: ignore[method-assign]
    for name, fn in saved.items():
        setattr(_F, name, noting_function(name, fn))
    try:
        out = model(*inputs)
    finally:
        Module.__call__ = original  # type: ignore[method-assign]
        for name, fn in saved.items():
            setattr(_F, name, fn)
    outputs = _flat(out)
    if not outputs:
        raise TypeError(f"onnx.export: the model returned {type(out).__name__}, not tensors")
    limit = sys.getrecursionlimit()
    sys.setrecursionlimit(max(limit, 20000))  # the read-back recurses once per op of the longest path
    try:
        names = [b.value(t) for t in outputs]
    finally:
        sys.setrecursionlimit(limit)
    return b, names, outputs


def _as_arrays(args) -> list:
    args = args if isinstance(args, (tuple, list)) else (args,)
    out = []
    for a in args:
        arr = np.array(a.numpy() if isinstance(a, Tensor) else a)
        if arr.dtype.kind not in "fiu":
            raise TypeError(f"onnx.export: example inputs must be tensors or arrays of numbers, got {arr.dtype}")
        out.append(arr)
    return out


def _other_input(arr: np.ndarray, dynamic: dict, rng) -> np.ndarray:
    """A second input of the example's kind: new values, one more along each dynamic dim."""
    shape = tuple(n + 1 if d in dynamic else n for d, n in enumerate(arr.shape))
    if arr.dtype.kind == "f":
        scale = float(arr.std()) if arr.size > 1 and arr.std() > 0 else 1.0
        return (rng.standard_normal(shape) * scale + float(arr.mean() if arr.size else 0)).astype(arr.dtype)
    lo, hi = (int(arr.min()), int(arr.max())) if arr.size else (0, 1)
    return rng.integers(lo, hi + 1, size=shape).astype(arr.dtype)


def _graph_text(b, names) -> list:
    """What must be the same in two traces: the nodes and the constants' values."""
    consts = {k: (v.dtype.str, v.shape, v.tobytes()) for k, v in b.inits.items()}
    return [names, [str(n) for n in b.nodes], consts]


def export(model, args, f=None, input_names=None, output_names=None, dynamic_axes=_BATCH,
           opset_version: int = 17, check: bool = True):
    """Export `model` (a cgrad nn.Module) to ONNX, as torch.onnx.export does.

    args: the example input (a Tensor or array) or a tuple of them. f: a path or a binary
    file object to write (or None: only return the model). input_names / output_names default to input_0, ... and
    output_0, .... dynamic_axes: {name: {dim: label}} or {name: [dims]}, as PyTorch; by
    default dim 0 of every input is the dynamic "batch", and so is each output dim that
    follows it (pass {} for fixed shapes). The model is exported in eval mode (dropout off, batch norm's running
    statistics) and returned to its mode afterwards. Returns the onnx.ModelProto, checked by
    onnx.checker. A layer or op without a conversion raises UnsupportedOperatorError naming
    it and where it is in the model."""
    onnx = _onnx()
    helper = onnx.helper
    if not isinstance(model, Module):
        raise TypeError(f"onnx.export: model must be a cgrad nn.Module, not {type(model).__name__}")
    if not isinstance(opset_version, int) or not 17 <= opset_version <= 21:
        raise ValueError(f"onnx.export: opset_version must be an int from 17 to 21, got {opset_version!r}")
    arrays = _as_arrays(args)
    input_names = list(input_names) if input_names is not None else [f"input_{i}" for i in range(len(arrays))]
    if len(input_names) != len(arrays):
        raise ValueError(f"onnx.export: {len(input_names)} input_names for {len(arrays)} inputs")
    was_training = [(m, m.training) for m in model.modules()]
    model.eval()
    try:
        with enable_grad():  # the tape is what export reads
            b, names, outputs = _trace(model, arrays, input_names, dynamic_axes is _BATCH or bool(dynamic_axes),
                                       opset_version)
            if output_names is None:
                output_names = [f"output_{i}" for i in range(len(outputs))]
            output_names = list(output_names)
            if len(output_names) != len(outputs):
                raise ValueError(f"onnx.export: {len(output_names)} output_names for {len(outputs)} outputs")
            default = dynamic_axes is _BATCH
            if default:  # the outputs' dynamic dims are found below, from the second trace
                dynamic_axes = {n: {0: "batch"} for n in input_names}
            dyn = {n: ({d: f"{n}_dim{d}" for d in v} if isinstance(v, (list, tuple)) else dict(v))
                   for n, v in (dynamic_axes or {}).items()}
            unknown = set(dyn) - set(input_names) - set(output_names)
            if unknown:
                raise ValueError(f"onnx.export: dynamic_axes names {sorted(unknown)} are neither inputs nor outputs")
            # a second run on other values (and other sizes along the dynamic dims) must give the same graph
            batched = any(dyn.get(n) for n in input_names)
            rng = np.random.default_rng(12345)
            others = [_other_input(a, dyn.get(n, {}), rng) for a, n in zip(arrays, input_names)]
            b2, names2, outputs2 = _trace(model, others, input_names, bool(dyn), opset_version)
            if default:  # an output dim is the batch where it changed with the inputs' dim 0
                for n, o1, o2 in zip(output_names, outputs, outputs2):
                    dyn[n] = {d: "batch" for d, (i, j) in enumerate(zip(o1.shape, o2.shape)) if i != j}
            first, second = _graph_text(b, names), _graph_text(b2, names2)
            if first != second:
                changed = [n for n in first[2] if first[2][n] != second[2].get(n)]
                where = f" (first at {b.describe(changed[0])})" if changed and first[:2] == second[:2] else ""
                raise UnsupportedOperatorError(
                    "onnx.export: the model's graph changes with its input " +
                    ("(its values or the sizes of its dynamic axes, such as the batch size)" if batched else
                     "values") + where + ": a constant computed from the data (a mask from a comparison, "
                    "a tensor made with the batch size, a Python branch on values) would be frozen into the file")
    finally:
        for m, mode in was_training:
            m.training = mode
    value_infos = []
    for n, arr in zip(input_names, arrays):
        value_infos.append(_value_info(helper, n, arr.dtype, arr.shape, dyn.get(n, {})))
    outs = []
    nodes = list(b.nodes)
    for n, src, t in zip(output_names, names, outputs):
        nodes.append(helper.make_node("Identity", [src], [n]))
        outs.append(_value_info(helper, n, t.numpy().dtype, t.shape, dyn.get(n, {})))
    inits = [onnx.numpy_helper.from_array(v, name=k) for k, v in b.inits.items()]
    graph = helper.make_graph(nodes, type(model).__name__, value_infos, outs, initializer=inits)
    proto = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset_version)],
                              producer_name="cgrad")
    if check:
        onnx.checker.check_model(proto, full_check=True)
    if f is not None:
        data = proto.SerializeToString()
        if hasattr(f, "write"):  # a file object, as torch.onnx.export takes
            f.write(data)
        else:
            with open(os.fspath(f), "wb") as fh:
                fh.write(data)
    return proto


def _value_info(helper, name, dtype, shape, dyn: dict):
    dims = [dyn.get(i, d) for i, d in enumerate(shape)]
    return helper.make_tensor_value_info(name, helper.np_dtype_to_tensor_dtype(np.dtype(dtype)), dims)

