"""Tensor.register_hook and cgrad.autograd.grad (first order), both inside the one C backward
sweep. Expected gradients are derived by hand."""
import numpy as np
import pytest

import cgrad
from cgrad.autograd import Function, grad


def t64(a, requires_grad=True):
    return cgrad.tensor(np.asarray(a, dtype=np.float64), requires_grad=requires_grad)


# ---- hooks ----

def test_a_hook_on_a_non_leaf_replaces_what_flows_on():
    x = t64([1.0, 2.0])
    y = x * 3.0
    seen = []
    y.register_hook(lambda g: seen.append(g.numpy().copy()) or g * 2.0)
    (y * y).sum().backward()  # dL/dy = 2y = 6x; the hook doubles it; dy/dx = 3
    np.testing.assert_allclose(seen[0], [6.0, 12.0])
    np.testing.assert_allclose(x.grad.numpy(), [36.0, 72.0])
    assert y.grad_fn == "mul_scalar"  # the hook's node is not an op


def test_a_hook_on_a_leaf_changes_what_is_accumulated():
    x = t64([1.0, 2.0])
    x.register_hook(lambda g: g + 1.0)
    (x * 3.0).sum().backward()
    np.testing.assert_allclose(x.grad.numpy(), [4.0, 4.0])
    (x * 3.0).sum().backward()  # accumulates the hooked gradient again
    np.testing.assert_allclose(x.grad.numpy(), [8.0, 8.0])


@pytest.mark.parametrize("leaf", [True, False])
def test_hooks_run_once_on_the_summed_gradient_in_registration_order(leaf):
    x = t64([1.0, 2.0])
    t = x if leaf else x * 1.0
    calls = []

    def double(g):
        calls.append(("double", g.numpy().copy()))
        return g * 2.0

    def plus_one(g):
        calls.append(("plus_one", g.numpy().copy()))
        return g + 1.0

    t.register_hook(double)
    t.register_hook(plus_one)
    (t * 2.0 + t * 3.0).sum().backward()  # two uses: one call with 2 + 3
    assert [name for name, _ in calls] == ["double", "plus_one"]
    np.testing.assert_allclose(calls[0][1], [5.0, 5.0])
    np.testing.assert_allclose(calls[1][1], [10.0, 10.0])
    np.testing.assert_allclose(x.grad.numpy(), [11.0, 11.0])


def test_remove_unregisters_a_hook():
    x = t64([1.0])
    y = x * 2.0
    h1 = x.register_hook(lambda g: g * 10.0)
    h2 = y.register_hook(lambda g: g * 100.0)
    h1.remove()
    h2.remove()
    y.sum().backward()
    np.testing.assert_allclose(x.grad.numpy(), [2.0])
    with x.register_hook(lambda g: g * 0.0):
        pass  # removed on leaving the block
    (x * 1.0).sum().backward()
    np.testing.assert_allclose(x.grad.numpy(), [3.0])


def test_retain_grad_sees_the_gradient_after_the_hooks():
    x = t64([1.0, 2.0])
    y = x * 1.0
    y.retain_grad()
    y.register_hook(lambda g: g * 5.0)
    y.sum().backward()
    np.testing.assert_allclose(y.grad.numpy(), [5.0, 5.0])
    np.testing.assert_allclose(x.grad.numpy(), [5.0, 5.0])


def test_hook_errors():
    with pytest.raises(RuntimeError, match="doesn't require gradient"):
        t64([1.0], requires_grad=False).register_hook(lambda g: g)
    with pytest.raises(TypeError, match="callable"):
        t64([1.0]).register_hook(3)
    x = t64([1.0, 2.0])
    y = x * 2.0

    def bad_shape(g):
        return g.sum()

    y.register_hook(bad_shape)
    with pytest.raises(ValueError, match=r"hook 'bad_shape' returned an invalid gradient.*\(\).*\(2,\)"):
        y.sum().backward()

    def boom(g):
        raise ZeroDivisionError("from a hook")

    z = t64([1.0])
    z.register_hook(boom)
    with pytest.raises(ZeroDivisionError, match="from a hook"):
        (z * 2.0).sum().backward()
    assert z.grad is None


def test_hooks_leak_no_c_memory():
    x = t64(np.ones(10))
    (x * 2.0).sum().backward()
    x.grad = None
    before = cgrad.live_bytes()
    for _ in range(100):
        y = x * 2.0
        y.register_hook(lambda g: g * 0.5)
        y.sum().backward()
        w = t64(np.ones(10))
        w.register_hook(lambda g: g + 1.0)
        (w * x).sum().backward()
        del w
    x.grad = None
    del y
    assert cgrad.live_bytes() <= before


def test_hooks_agree_with_torch():
    torch = pytest.importorskip("torch")
    grads = []
    for make in (lambda a: t64(a), lambda a: torch.tensor(a, requires_grad=True)):
        x = make(np.array([0.5, -1.5, 2.0]))
        h = x.tanh()
        h.register_hook(lambda g: g * 3.0)
        x.register_hook(lambda g: g - 1.0)
        (h * h + h.exp()).sum().backward()
        grads.append(np.array(x.grad.tolist()))
    np.testing.assert_allclose(grads[0], grads[1], rtol=1e-12)


# ---- autograd.grad ----

def test_grad_returns_gradients_and_touches_no_grad_field():
    a, b = np.array([1.0, 2.0]), np.array([3.0, -1.0])
    x, w = t64(a), t64(b)
    w.grad = cgrad.tensor(np.array([7.0, 7.0]))
    loss = (x * w).sum() + (x * x).sum()
    gx, = grad(loss, x)
    np.testing.assert_allclose(gx.numpy(), b + 2 * a)
    assert x.grad is None  # neither the input's .grad
    np.testing.assert_allclose(w.grad.numpy(), [7.0, 7.0])  # nor another leaf's


def test_grad_with_respect_to_non_leaves_and_several_inputs():
    a = np.array([0.5, 1.5])
    x = t64(a)
    h = x.sin()
    h.retain_grad()
    loss = (h * h).sum()
    gh, gx = grad(loss, [h, x])
    np.testing.assert_allclose(gh.numpy(), 2 * np.sin(a))
    np.testing.assert_allclose(gx.numpy(), 2 * np.sin(a) * np.cos(a))
    assert h.grad is None and x.grad is None


def test_grad_of_several_outputs_with_grad_outputs_sums_them():
    a = np.array([1.0, 2.0, 3.0])
    x = t64(a)
    y1, y2 = x * 2.0, x * x
    gx, = grad([y1, y2], [x], grad_outputs=[np.ones(3), np.array([1.0, 0.0, 2.0])])
    np.testing.assert_allclose(gx.numpy(), 2.0 + 2 * a * np.array([1.0, 0.0, 2.0]))


def test_unused_inputs_raise_unless_allow_unused():
    x, u = t64([1.0]), t64([2.0])
    y = x * u.detach()
    with pytest.raises(RuntimeError, match="input 1 .* not have been used in the graph"):
        grad(y.sum(), [x, u], retain_graph=True)
    gx, gu = grad(y.sum(), [x, u], allow_unused=True)
    np.testing.assert_allclose(gx.numpy(), [2.0])
    assert gu is None


def test_grad_errors_and_retain_graph():
    x = t64([1.0, 2.0])
    y = (x * x).sum()
    (g,) = grad(y, x, create_graph=True, retain_graph=True)  # 2x, differentiable again
    assert g.requires_grad and g.detach().numpy().tolist() == [2.0, 4.0]
    with pytest.raises(RuntimeError, match="does not require grad"):
        grad(y, t64([1.0], requires_grad=False))
    with pytest.raises(RuntimeError, match="only for a tensor with one element"):
        grad(x * 2.0, x)
    with pytest.raises(ValueError, match=r"grad has shape \(3,\) but the tensor has shape \(2,\)"):
        grad(x * 2.0, x, grad_outputs=np.ones(3))
    g1, = grad(y, x, retain_graph=True)
    g2, = grad(y, x)
    np.testing.assert_allclose(g1.numpy(), g2.numpy())
    with pytest.raises(RuntimeError, match="second time"):
        grad(y, x)


def test_grad_runs_custom_functions_and_hooks_on_the_way():
    class Cube(Function):
        @staticmethod
        def forward(ctx, x):
            ctx.save_for_backward(x)
            return x * x * x

        @staticmethod
        def backward(ctx, g):
            x, = ctx.saved_tensors
            return g * 3.0 * x * x

    a = np.array([1.0, -2.0])
    x = t64(a)
    h = Cube.apply(x)
    h.register_hook(lambda g: g * 2.0)
    gx, = grad(h.sum(), x)
    np.testing.assert_allclose(gx.numpy(), 6 * a * a)
    assert x.grad is None


def test_grad_leaks_no_c_memory():
    x = t64(np.ones(8))
    grad((x * x).sum(), x)
    before = cgrad.live_bytes()
    for _ in range(100):
        h = x.exp()
        g = grad((h * x).sum(), [x, h])
        del g, h
    assert cgrad.live_bytes() <= before


def test_grad_agrees_with_torch(rng):
    torch = pytest.importorskip("torch")
    arrays = [rng.normal(size=(3, 4)), rng.normal(size=(4, 2))]
    results = []
    for make, lib in ((lambda a: t64(a), None), (lambda a: torch.tensor(a, requires_grad=True), torch)):
        x, w = [make(a) for a in arrays]
        h = (x @ w).tanh()
        out = (h * h).sum() + x.sum()
        if lib is None:
            gs = grad(out, [x, h, w])
        else:
            gs = torch.autograd.grad(out, [x, h, w])
        results.append([np.array(g.tolist()) for g in gs])
    for ours, theirs in zip(*results):
        np.testing.assert_allclose(ours, theirs, rtol=1e-12, atol=1e-12)


def test_compile_refuses_hooks_and_grad():
    w = t64([1.0, 2.0])
    w.register_hook(lambda g: g * 2.0)

    @cgrad.compile
    def step(x):
        (w * x).sum().backward()

    with pytest.raises(RuntimeError, match="cgrad.compile: a tensor hook cannot be replayed"):
        step(np.ones(2))
    v = t64([1.0, 2.0])

    @cgrad.compile
    def step2(x):
        return grad((v * x).sum(), v)

    with pytest.raises(RuntimeError, match="cgrad.compile"):
        step2(np.ones(2))
