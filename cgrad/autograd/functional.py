"""PyTorch's torch.autograd.functional: vjp, jvp, jacobian, hessian, hvp and vhp, built
on autograd.grad (the taped sweep where a second derivative is needed).

`inputs` is a tensor or a tuple of tensors, and results follow that form, as in PyTorch.
The function is evaluated on detached copies of the inputs that require grad, so the
caller's tensors and their graphs are left alone.
"""
from __future__ import annotations

from typing import Any, Callable

from . import grad
from ..tensor import Tensor, zeros


def _as_tuple(x) -> tuple[bool, tuple]:
    if isinstance(x, Tensor):
        return False, (x,)
    if isinstance(x, (tuple, list)) and all(isinstance(t, Tensor) for t in x):
        return True, tuple(x)
    raise TypeError(f"functional: expected a tensor or a tuple of tensors, got {type(x).__name__}")


def _leaves(inputs: tuple) -> tuple:
    for i, t in enumerate(inputs):
        if not t.is_floating_point():
            raise TypeError(f"functional: input {i} is {t.dtype}; differentiating needs float inputs")
    return tuple(t.detach().clone().requires_grad_() for t in inputs)


def _grads(outputs: tuple, inputs: tuple, grad_outputs, create_graph: bool, strict: bool, what: str) -> tuple:
    """The gradient of each input (zeros where an input is not used, unless strict)."""
    live = [o for o in outputs if o.requires_grad]
    seeds = None if grad_outputs is None else [g for o, g in zip(outputs, grad_outputs) if o.requires_grad]
    if not live:
        got: tuple = (None,) * len(inputs)
    else:
        got = grad(live, list(inputs), grad_outputs=seeds, create_graph=True if create_graph else False,
                   retain_graph=True, allow_unused=True)
    out = []
    for i, (g, x) in enumerate(zip(got, inputs)):
        if g is None:
            if strict:
                raise RuntimeError(f"{what}: the output does not depend on input {i} (strict=True)")
            g = zeros(x.shape, dtype=x.dtype)
        out.append(g if create_graph else g.detach())
    return tuple(out)


def _check_v(v, like: tuple, what: str) -> tuple:
    _, vs = _as_tuple(v)
    if len(vs) != len(like) or any(a.shape != b.shape for a, b in zip(vs, like)):
        raise ValueError(f"{what}: v has shapes {[a.shape for a in vs]}, expected {[b.shape for b in like]}")
    return vs


def _ones_for_scalars(outputs: tuple, what: str) -> tuple:
    for i, o in enumerate(outputs):
        if o.numel() != 1:
            raise RuntimeError(f"{what}: v can be omitted only when the output has one element; output {i} "
                               f"has shape {o.shape}")
    return tuple(zeros(o.shape, dtype=o.dtype) + 1.0 for o in outputs)


def vjp(func: Callable, inputs, v=None, create_graph: bool = False, strict: bool = False):
    """(func(inputs), v^T J): the vector-Jacobian product."""
    is_tuple, ins = _as_tuple(inputs)
    ins = _leaves(ins)
    out = func(*ins)
    out_tuple, outs = _as_tuple(out)
    vs = _ones_for_scalars(outs, "vjp") if v is None else _check_v(v, outs, "vjp")
    res = _grads(outs, ins, vs, create_graph, strict, "vjp")
    outs_ret = outs if create_graph else tuple(o.detach() for o in outs)
    return (outs_ret if out_tuple else outs_ret[0]), (res if is_tuple else res[0])


def jvp(func: Callable, inputs, v=None, create_graph: bool = False, strict: bool = False):
    """(func(inputs), J v): the Jacobian-vector product, by differentiating a vjp with
    respect to its vector (the double-vjp form PyTorch uses)."""
    is_tuple, ins = _as_tuple(inputs)
    ins = _leaves(ins)
    vs = _ones_for_scalars(ins, "jvp") if v is None else _check_v(v, ins, "jvp")
    out = func(*ins)
    out_tuple, outs = _as_tuple(out)
    us = tuple(zeros(o.shape, dtype=o.dtype).requires_grad_() for o in outs)
    g = grad([o for o in outs], list(ins), grad_outputs=list(us), create_graph=True, allow_unused=True)
    pairs = [(gi, vi) for gi, vi in zip(g, vs) if gi is not None and gi.requires_grad]
    if pairs:
        res = grad([p[0] for p in pairs], list(us), grad_outputs=[p[1] for p in pairs],
                   create_graph=create_graph, allow_unused=True)
    else:
        res = (None,) * len(us)
    res = tuple(zeros(o.shape, dtype=o.dtype) if r is None else (r if create_graph else r.detach())
                for r, o in zip(res, outs))
    outs_ret = outs if create_graph else tuple(o.detach() for o in outs)
    return (outs_ret if out_tuple else outs_ret[0]), (res if out_tuple else res[0])


def jacobian(func: Callable, inputs, create_graph: bool = False, strict: bool = False,
             vectorize: bool = False, strategy: str = "reverse-mode"):
    """d func / d inputs: for one output and one input a tensor of shape
    output.shape + input.shape; nested tuples (per output, per input) otherwise."""
    if strategy != "reverse-mode":
        raise ValueError(f"jacobian: only strategy='reverse-mode' is supported, not {strategy!r}")
    is_tuple, ins = _as_tuple(inputs)
    ins = _leaves(ins)
    out = func(*ins)
    out_tuple, outs = _as_tuple(out)
    per_output = []
    for o in outs:
        flat = o.reshape(-1)
        rows: list[list[Any]] = [[] for _ in ins]
        for k in range(flat.numel()):
            gs = _grads((flat[k],), ins, None, create_graph, strict, "jacobian")
            for j, g in enumerate(gs):
                rows[j].append(g)
        blocks = tuple(_stack(rows[j], o.shape, x) for j, x in enumerate(ins))
        per_output.append(blocks if is_tuple else blocks[0])
    return tuple(per_output) if out_tuple else per_output[0]


def _stack(rows: list, out_shape: tuple, x: Tensor) -> Tensor:
    from ..tensor import stack
    if not rows:
        return zeros(tuple(out_shape) + tuple(x.shape), dtype=x.dtype)
    return stack(rows, 0).reshape(tuple(out_shape) + tuple(x.shape))


def hessian(func: Callable, inputs, create_graph: bool = False, strict: bool = False,
            vectorize: bool = False, outer_jacobian_strategy: str = "reverse-mode"):
    """The Hessian of a scalar func: the jacobian of its gradient."""
    is_tuple, ins = _as_tuple(inputs)

    def gradient(*xs):
        out = func(*xs)
        if not isinstance(out, Tensor) or out.numel() != 1:
            raise RuntimeError("hessian: func must return a tensor with one element")
        gs = grad(out, list(xs), create_graph=True, allow_unused=True)
        gs = tuple(zeros(x.shape, dtype=x.dtype) if g is None else g for g, x in zip(gs, xs))
        return gs if is_tuple else gs[0]

    return jacobian(gradient, ins if is_tuple else ins[0], create_graph=create_graph, strict=strict)


def vhp(func: Callable, inputs, v=None, create_graph: bool = False, strict: bool = False):
    """(func(inputs), v^T H) for a scalar func."""
    is_tuple, ins = _as_tuple(inputs)
    ins = _leaves(ins)
    vs = _ones_for_scalars(ins, "vhp") if v is None else _check_v(v, ins, "vhp")
    out = func(*ins)
    if not isinstance(out, Tensor) or out.numel() != 1:
        raise RuntimeError("vhp: func must return a tensor with one element")
    gs = grad(out, list(ins), create_graph=True, allow_unused=True)
    live = [(g, v_) for g, v_ in zip(gs, vs) if g is not None and g.requires_grad]
    if live:
        res = grad([g for g, _ in live], list(ins), grad_outputs=[v_ for _, v_ in live],
                   create_graph=create_graph, allow_unused=True)
    else:
        res = (None,) * len(ins)
    res = tuple(zeros(x.shape, dtype=x.dtype) if r is None else (r if create_graph else r.detach())
                for r, x in zip(res, ins))
    return (out if create_graph else out.detach()), (res if is_tuple else res[0])


def hvp(func: Callable, inputs, v=None, create_graph: bool = False, strict: bool = False):
    """(func(inputs), H v); the Hessian of a twice-differentiable function is symmetric, so
    this is vhp's product."""
    return vhp(func, inputs, v, create_graph, strict)
