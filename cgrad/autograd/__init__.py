"""Grad mode switches, custom ops written in Python (Function), grad and gradcheck."""
from __future__ import annotations

import copy
import functools
from typing import Any, Sequence

import numpy as np

from .. import _C, _state
from .._double_backward import taped_grad
from ..tensor import Tensor, float64, ones, tensor
from .._C import RemovableHandle  # noqa: F401  (what register_hook returns)


class set_grad_enabled:
    """Turn recording on or off: as a call, a context manager or a decorator."""

    def __init__(self, mode: bool):
        self.prev = _C.is_grad_enabled()
        self.mode = bool(mode)
        _C.set_grad_enabled(self.mode)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        _C.set_grad_enabled(self.prev)
        return False


class no_grad:
    """`with cgrad.no_grad():` (or `@cgrad.no_grad()`): ops inside record nothing on the tape."""

    mode = False

    def __enter__(self):
        self.prev = _C.is_grad_enabled()
        _C.set_grad_enabled(self.mode)
        return self

    def __exit__(self, *exc):
        _C.set_grad_enabled(self.prev)
        return False

    def __call__(self, fn):
        @functools.wraps(fn)
        def wrapper(*args, **kwargs):
            with copy.copy(self):  # a fresh context per call (it keeps the mode to restore)
                return fn(*args, **kwargs)
        return wrapper


class enable_grad(no_grad):
    """Turn recording back on inside a no_grad block."""

    mode = True


class inference_mode(no_grad):
    """PyTorch's inference mode, which for cgrad is no_grad: `with cgrad.inference_mode():`,
    `@cgrad.inference_mode()`, or inference_mode(False) to leave recording as it is."""

    def __init__(self, mode: bool = True):
        self.enabled = mode

    def __enter__(self):
        self.mode = not self.enabled and _C.is_grad_enabled()  # the grad mode inside the block
        return super().__enter__()


is_grad_enabled = _C.is_grad_enabled


def set_anomaly(enabled: bool) -> None:
    """Check every op's output and every gradient for NaN/Inf and raise at the first one,
    naming the op, its input shapes, its layer and the line of Python that created it.
    Slows everything down: use it to find a NaN, not for training."""
    if bool(enabled) != _C.is_anomaly_enabled():
        _state.scoping_changed(1 if enabled else -1)  # name layers in the reports
    _C.set_anomaly(enabled)


class detect_anomaly:
    """`with cgrad.detect_anomaly():` turns on set_anomaly(True) for the block."""

    def __enter__(self):
        self.prev = _C.is_anomaly_enabled()
        set_anomaly(True)
        return self

    def __exit__(self, *exc):
        set_anomaly(self.prev)
        return False


class GradcheckError(RuntimeError):
    """Analytic and numerical gradients disagree."""


def gradcheck(fn, inputs, eps: float = 1e-6, atol: float = 1e-5, rtol: float = 1e-3,
              raise_exception: bool = True, seed: int = 0) -> bool:
    """Compare the gradients backward computes with central finite differences.

    fn(*inputs) must return a tensor. Inputs that require grad must be float64. The output
    is contracted with a fixed random upstream gradient v (so a rule that ignores the
    upstream gradient cannot pass), and for each input element
        analytic = d(sum(v * fn))/dx   from backward
        numeric  = (sum(v * fn(x + eps)) - sum(v * fn(x - eps))) / (2 eps)
    must agree within atol + rtol * |numeric|. On a mismatch raises GradcheckError naming
    the input and the element (or returns False when raise_exception is False).
    """
    if isinstance(inputs, Tensor):
        inputs = (inputs,)
    inputs = tuple(inputs)
    checked = [i for i, x in enumerate(inputs) if isinstance(x, Tensor) and x.requires_grad]
    if not checked:
        raise ValueError("gradcheck: no input requires grad")
    for i in checked:
        if inputs[i].dtype != float64:
            raise TypeError(f"gradcheck: input {i} is {inputs[i].dtype}; finite differences "
                            f"need float64 inputs")
        if not inputs[i].is_leaf:
            raise ValueError(f"gradcheck: input {i} is not a leaf tensor")
    saved = [inputs[i].grad for i in checked]
    try:
        out = fn(*inputs)
        if not isinstance(out, Tensor):
            raise TypeError("gradcheck: fn must return a cgrad Tensor")
        v = np.random.default_rng(seed).uniform(0.5, 1.5, out.shape) * \
            np.random.default_rng(seed + 1).choice([-1.0, 1.0], out.shape)
        v = np.asarray(v, dtype=out.dtype)
        for i in checked:
            inputs[i].grad = None
        if out.requires_grad:
            out.backward(v)
        analytic = [np.zeros(inputs[i].shape) if inputs[i].grad is None
                    else inputs[i].grad.numpy().copy() for i in checked]

        def f():
            with no_grad():
                return float(np.sum(np.asarray(fn(*inputs), dtype=np.float64) * v))

        for slot, i in enumerate(checked):
            x = inputs[i].numpy()  # shares memory: perturb in place
            for idx in np.ndindex(x.shape):
                orig = x[idx]
                x[idx] = orig + eps
                fp = f()
                x[idx] = orig - eps
                fm = f()
                x[idx] = orig
                numeric = (fp - fm) / (2 * eps)
                a = analytic[slot][idx]
                if not abs(a - numeric) <= atol + rtol * abs(numeric):
                    if raise_exception:
                        raise GradcheckError(
                            f"gradcheck: input {i} (shape {x.shape}), element {idx}: analytic "
                            f"gradient {a!r} but numerical {numeric!r}")
                    return False
        return True
    finally:
        for slot, i in enumerate(checked):
            inputs[i].grad = saved[slot]


# ---- custom ops (docs/architecture.md, "Python ops and hooks") ----

class FunctionCtx:
    """The `ctx` a Function's forward and backward share: save tensors with
    save_for_backward, read them back as saved_tensors; any other attribute may be set."""

    needs_input_grad: tuple[bool, ...]
    _saved_outputs: frozenset | set = frozenset()  # which saved tensors are the forward's output (Function.apply)
    _graph_output: Tensor | None = None  # that output as recorded, while the taped sweep runs backward

    def save_for_backward(self, *tensors: Tensor | None) -> None:
        for i, t in enumerate(tensors):
            if t is not None and not isinstance(t, Tensor):
                raise TypeError(f"save_for_backward can only save tensors or None, but argument {i} "
                                f"is a {type(t).__name__}")
        self._saved = tensors
        self._versions = [None if t is None else _C._tensor_version(t) for t in tensors]

    @property
    def saved_tensors(self) -> tuple[Tensor | None, ...]:
        """The saved tensors; an error if one was modified in place since it was saved."""
        saved = getattr(self, "_saved", ())
        graph_out = getattr(self, "_graph_output", None)
        if graph_out is not None:  # the taped sweep: a saved output is the recorded one, in the graph
            saved = tuple(graph_out if i in self._saved_outputs else t for i, t in enumerate(saved))
        for t, v in zip(saved, self._versions):
            if t is not None and _C._tensor_version(t) != v:
                raise RuntimeError(
                    f"one of the variables needed for gradient computation has been modified by an "
                    f"inplace operation: a tensor of shape {t.shape} saved by "
                    f"{type(self).__name__} is at version {_C._tensor_version(t)}; expected "
                    f"version {v} instead")
        return saved

    def mark_non_differentiable(self, *tensors: Tensor) -> None:
        """Outputs that are not differentiable: they are returned without a graph."""
        self._non_differentiable = {id(t) for t in tensors}

    def set_materialize_grads(self, value: bool) -> None:
        """Accepted for PyTorch compatibility: backward always receives a tensor here."""


class BackwardCFunction(FunctionCtx):
    """The ctx of one call of a Function; the tape node holds it until backward frees it."""

    _cls: Any  # the Function subclass
    _positions: list[int]  # the argument index of each tensor input the node records
    _tensor_args: list[bool]

    @property
    def _cg_name(self) -> str:
        return f"Function {self._cls.__name__}.backward"

    def _cg_backward(self, grad: Tensor) -> list:
        """The gradients of the recorded inputs, from the user's backward (called by the sweep)."""
        res = self._cls.backward(self, grad)
        if not isinstance(res, tuple):
            res = (res,)
        n = len(self._tensor_args)
        if len(res) < n or any(g is not None for g in res[n:]):
            raise RuntimeError(f"function {self._cls.__name__}Backward returned an incorrect number of "
                               f"gradients (expected {n}, got {len(res)})")
        for i, (g, is_tensor) in enumerate(zip(res, self._tensor_args)):
            if g is not None and not is_tensor:
                raise RuntimeError(f"function {self._cls.__name__}Backward returned a gradient different "
                                   f"than None at position {i}, but the corresponding forward input was "
                                   f"not a Tensor")
        return [res[p] for p in self._positions]

    def _cg_taped_backward(self, grad: Tensor, output: Tensor) -> list:
        """The same, called by the taped sweep (create_graph=True) with grad mode on, so
        that the user's backward records and can be differentiated again (as in PyTorch).
        A saved output reads as `output`, the recorded one, so its dependence on the
        inputs is in the graph."""
        self._graph_output = output
        try:
            return self._cg_backward(grad)
        finally:
            self._graph_output = None


class Function:
    """A custom op written in Python, as PyTorch's torch.autograd.Function::

        class Exp(cgrad.autograd.Function):
            @staticmethod
            def forward(ctx, x):
                y = x.exp()
                ctx.save_for_backward(y)
                return y

            @staticmethod
            def backward(ctx, grad):
                y, = ctx.saved_tensors
                return grad * y

        y = Exp.apply(x)

    forward runs without recording; backward runs inside the one C backward sweep, in its
    place in the graph, and returns one gradient (or None) per forward argument. Under
    create_graph=True it runs with grad mode on (a saved output is the recorded one), so a
    backward written in cgrad ops can be differentiated again, as in PyTorch.
    cgrad.compile refuses it (a Python op cannot be replayed in C)."""

    @staticmethod
    def forward(ctx: Any, *args: Any) -> Any:
        raise NotImplementedError("a Function subclass must define forward(ctx, *args)")

    @staticmethod
    def backward(ctx: Any, *grad_outputs: Any) -> Any:
        raise NotImplementedError("a Function subclass must define backward(ctx, *grad_outputs)")

    @classmethod
    def apply(cls, *args: Any) -> Any:
        _state.refuse_while_recording(f"the custom Function {cls.__name__}")
        ctx = BackwardCFunction()
        ctx._cls = cls
        is_tensor = [isinstance(a, Tensor) for a in args]
        recording = _C.is_grad_enabled()
        needs = [t and recording and a.requires_grad for a, t in zip(args, is_tensor)]
        ctx.needs_input_grad = tuple(needs)
        ctx._tensor_args = is_tensor
        ctx._positions = [i for i, n in enumerate(needs) if n]
        with no_grad():
            out = cls.forward(ctx, *args)
        single = not isinstance(out, tuple)
        outs = (out,) if single else out
        tensors = [o for o in outs if isinstance(o, Tensor)]
        if len(tensors) != 1:
            raise NotImplementedError(f"Function {cls.__name__}: forward returned {len(tensors)} tensors; "
                                      f"cgrad's custom Functions return exactly one tensor for now")
        skip = getattr(ctx, "_non_differentiable", ())
        ctx._saved_outputs = {i for i, t in enumerate(getattr(ctx, "_saved", ())) if any(t is o for o in tensors)}
        inputs = [args[p] for p in ctx._positions]
        result = [o if not isinstance(o, Tensor) else
                  o.detach() if id(o) in skip or not inputs or not o.is_floating_point()  # ints: no grad
                  else _C._function_record(ctx, inputs, o)
                  for o in outs]
        return result[0] if single else tuple(result)


def gradgradcheck(fn, inputs, eps: float = 1e-6, atol: float = 1e-5, rtol: float = 1e-3,
                  raise_exception: bool = True, seed: int = 0) -> bool:
    """Check second derivatives: the taped gradient (create_graph=True) must equal the C
    sweep's first-order gradient, and differentiating it must agree with float64 finite
    differences. With g = d(sum(v * fn))/dx for a fixed random v, gradcheck runs on
        S(x) = sum(u * g + g * g / 2)
    for a fixed random u: non-linear in g, so a double backward that drops a term fails."""
    if isinstance(inputs, Tensor):
        inputs = (inputs,)
    inputs = tuple(inputs)
    checked = [x for x in inputs if isinstance(x, Tensor) and x.requires_grad]
    if not checked:
        raise ValueError("gradgradcheck: no input requires grad")
    out = fn(*inputs)
    rng = np.random.default_rng(seed)
    v = tensor(rng.uniform(0.5, 1.5, out.shape) * rng.choice([-1.0, 1.0], out.shape), dtype=out.dtype)
    us = [tensor(rng.uniform(-1.0, 1.0, x.shape), dtype=x.dtype) for x in checked]
    first = grad((out * v).sum(), checked, retain_graph=True, allow_unused=True)
    taped = grad((out * v).sum(), checked, create_graph=True, allow_unused=True)
    for k, (a, b) in enumerate(zip(first, taped)):
        got = np.zeros(checked[k].shape) if b is None else b.detach().numpy()
        want = np.zeros(checked[k].shape) if a is None else a.numpy()
        if not np.allclose(got, want, rtol=1e-9, atol=1e-12):
            if raise_exception:
                raise GradcheckError(f"gradgradcheck: the taped gradient of input {k} differs from the C "
                                     f"sweep's: {got.ravel()[:4]} vs {want.ravel()[:4]}")
            return False

    def second(*xs):
        with enable_grad():
            y = fn(*xs)
            gs = grad((y * v).sum(), [x for x in xs if isinstance(x, Tensor) and x.requires_grad],
                      create_graph=True, allow_unused=True)
            total = None
            for g, u in zip(gs, us):
                if g is not None:
                    term = (u * g + g * g * 0.5).sum()
                    total = term if total is None else total + term
            return total if total is not None else (y * 0.0).sum()

    return gradcheck(second, inputs, eps=eps, atol=atol, rtol=rtol, raise_exception=raise_exception, seed=seed)


def _taped_grad(outs, seeds, ins) -> list:
    full = []
    for i, (o, s) in enumerate(zip(outs, seeds)):
        if s is None:
            if o.numel() != 1:
                raise RuntimeError(f"grad: grad can be implicitly created only for outputs with one element; "
                                   f"output {i} has shape {o.shape}: pass grad_outputs")
            s = ones(o.shape, dtype=o.dtype)
        elif not isinstance(s, Tensor):
            s = tensor(s, dtype=o.dtype)
        if s.shape != o.shape:
            raise ValueError(f"grad: grad_outputs[{i}] has shape {s.shape} but output {i} has shape {o.shape}")
        full.append(s)
    with enable_grad():
        return taped_grad(outs, full, ins)


def grad(outputs: Tensor | Sequence[Tensor], inputs: Tensor | Sequence[Tensor],
         grad_outputs: Any = None, retain_graph: bool | None = None, create_graph: bool = False,
         allow_unused: bool = False) -> tuple[Tensor | None, ...]:
    """The gradients of `outputs` with respect to `inputs` (leaves or not), summed over the
    outputs, as PyTorch's torch.autograd.grad: one backward sweep that reads and writes no
    tensor's .grad. grad_outputs: the upstream gradient of each output (None: ones, for an
    output of one element). An input the outputs do not depend on is an error unless
    allow_unused, which returns None for it. With create_graph=True the sweep is taped
    (cgrad/_double_backward.py), so the gradients can be differentiated again; it covers
    the elementwise, reduction, softmax, matmul, linear, shape, gather and cross-entropy
    ops so far, and names any op it does not."""
    if not create_graph:  # the taped sweep is made of recorded ops, so it replays; this C sweep is not
        _state.refuse_while_recording("autograd.grad without create_graph=True")
    outs = [outputs] if isinstance(outputs, Tensor) else list(outputs)
    ins = [inputs] if isinstance(inputs, Tensor) else list(inputs)
    if grad_outputs is None:
        seeds: list = [None] * len(outs)
    else:
        seeds = [grad_outputs] if isinstance(grad_outputs, Tensor) or not isinstance(grad_outputs, (list, tuple)) \
            else list(grad_outputs)
    if len(seeds) != len(outs):
        raise ValueError(f"grad: grad_outputs has {len(seeds)} entries but there are {len(outs)} outputs")
    for kind, ts in (("outputs", outs), ("inputs", ins)):
        for i, t in enumerate(ts):
            if not isinstance(t, Tensor):
                raise TypeError(f"grad: {kind}[{i}] is a {type(t).__name__}, not a Tensor")
    for i, t in enumerate(outs):
        if not t.requires_grad:
            raise RuntimeError(f"grad: element {i} of outputs does not require grad and does not have a grad_fn")
    for i, t in enumerate(ins):
        if not t.requires_grad:
            raise RuntimeError(f"grad: element {i} of inputs does not require grad (one of the "
                               f"differentiated Tensors does not require grad)")
    if create_graph:
        result = _taped_grad(outs, seeds, ins)
    else:
        result = _C._grad(outs, seeds, ins, bool(retain_graph))
    if not allow_unused:
        for i, g in enumerate(result):
            if g is None:
                raise RuntimeError(f"grad: input {i} (shape {ins[i].shape}) appears to not have been "
                                   f"used in the graph; set allow_unused=True if this is the desired "
                                   f"behavior")
    return tuple(result)
