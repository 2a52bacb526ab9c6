"""cgrad.autograd.Function: custom ops written in Python whose backward runs inside the C
backward sweep (csrc/pyop.c). Expected gradients are derived by hand (numpy formulas)."""
import gc
import weakref

import numpy as np
import pytest

import cgrad
from cgrad.autograd import Function, gradcheck


def t64(a, requires_grad=True):
    return cgrad.tensor(np.asarray(a, dtype=np.float64), requires_grad=requires_grad)


class Exp(Function):
    @staticmethod
    def forward(ctx, x):
        y = x.exp()
        ctx.save_for_backward(y)
        return y

    @staticmethod
    def backward(ctx, grad):
        y, = ctx.saved_tensors
        return grad * y


class Linear(Function):
    """y = x W^T + b, saving the input and the weight."""

    @staticmethod
    def forward(ctx, x, w, b):
        ctx.save_for_backward(x, w)
        return x @ w.T + b

    @staticmethod
    def backward(ctx, grad):
        x, w = ctx.saved_tensors
        return grad @ w, grad.T @ x, grad.sum(axis=0)


class Scale(Function):
    """x * k for a Python number k: its gradient slot must be None."""

    @staticmethod
    def forward(ctx, x, k):
        ctx.k = k
        return x * k

    @staticmethod
    def backward(ctx, grad):
        return grad * ctx.k, None


def test_exp_matches_the_hand_derived_gradient():
    a = np.array([0.5, -1.0, 2.0])
    x = t64(a)
    y = Exp.apply(x)
    assert y.requires_grad and not y.is_leaf
    np.testing.assert_allclose(y.numpy(), np.exp(a))
    y.sum().backward()
    np.testing.assert_allclose(x.grad.numpy(), np.exp(a))


def test_gradcheck_exp_linear_scale_and_a_mix_with_builtin_ops(rng):
    x = t64(rng.normal(size=(4, 3)))
    w = t64(rng.normal(size=(2, 3)))
    b = t64(rng.normal(size=2))
    assert gradcheck(Exp.apply, [x])
    assert gradcheck(Linear.apply, [x, w, b])
    assert gradcheck(lambda t: Scale.apply(t, 2.5), [x])
    assert gradcheck(lambda x, w, b: (Exp.apply(Linear.apply(x.tanh(), w, b)) * 2 + x.sum()).log_softmax(-1),
                     [x, w, b])


def test_linear_matches_the_hand_derived_gradients(rng):
    xa, wa, ba = rng.normal(size=(4, 3)), rng.normal(size=(2, 3)), rng.normal(size=2)
    x, w, b = t64(xa), t64(wa), t64(ba)
    g = rng.normal(size=(4, 2))
    Linear.apply(x, w, b).backward(g)
    np.testing.assert_allclose(x.grad.numpy(), g @ wa)
    np.testing.assert_allclose(w.grad.numpy(), g.T @ xa)
    np.testing.assert_allclose(b.grad.numpy(), g.sum(0))


def test_an_output_used_twice_sums_its_gradients_and_chains_of_functions_work():
    a = np.array([0.3, -0.7])
    x = t64(a)
    y = Exp.apply(x)
    (y * y + y).sum().backward()  # d/dx (e^2x + e^x)
    np.testing.assert_allclose(x.grad.numpy(), 2 * np.exp(2 * a) + np.exp(a))
    x.grad = None
    Scale.apply(Exp.apply(Exp.apply(x)), 3.0).sum().backward()  # 3 exp(exp(x)) exp(x)
    np.testing.assert_allclose(x.grad.numpy(), 3 * np.exp(np.exp(a)) * np.exp(a))


def test_a_function_between_builtin_ops_runs_in_its_place_in_the_sweep():
    """The custom node's input is a non-leaf: its gradient must be complete (both uses) before
    the op below it runs, or the sin's gradient would miss a part."""
    a = np.array([0.2, 1.1])
    x = t64(a)
    s = x.sin()
    z = (Exp.apply(s) + s * 2).sum()
    z.backward()
    np.testing.assert_allclose(x.grad.numpy(), (np.exp(np.sin(a)) + 2) * np.cos(a))


def test_ctx_needs_input_grad_and_attributes():
    seen = {}

    class Probe(Function):
        @staticmethod
        def forward(ctx, x, y, k):
            ctx.note = "kept"
            return x * y * k

        @staticmethod
        def backward(ctx, grad):
            seen["needs"] = ctx.needs_input_grad
            seen["note"] = ctx.note
            return None, None, None

    x, y = t64([1.0, 2.0]), t64([3.0, 4.0], requires_grad=False)
    Probe.apply(x, y, 2.0).sum().backward()
    assert seen == {"needs": (True, False, False), "note": "kept"}
    assert x.grad is None  # a None gradient adds nothing


def test_mark_non_differentiable_and_no_grad_give_outputs_without_a_graph():
    class Sign(Function):
        @staticmethod
        def forward(ctx, x):
            out = x.sign()
            ctx.mark_non_differentiable(out)
            return out

        @staticmethod
        def backward(ctx, grad):
            raise AssertionError("not called")

    x = t64([1.0, -2.0])
    assert not Sign.apply(x).requires_grad
    with cgrad.no_grad():
        assert not Exp.apply(x).requires_grad
    assert not Exp.apply(t64([1.0], requires_grad=False)).requires_grad


def test_an_exception_in_backward_propagates_and_leaves_the_graph_sane():
    class Boom(Function):
        @staticmethod
        def forward(ctx, x):
            return x * 1.0

        @staticmethod
        def backward(ctx, grad):
            raise KeyError("boom from user code")

    x = t64([1.0, 2.0])
    out = (Boom.apply(x.exp()) * 2).sum()
    with pytest.raises(KeyError, match="boom from user code"):
        out.backward()
    assert x.grad is None  # the sweep stopped before the leaf
    y = (x * 3).sum()  # the same leaf in a fresh graph still works
    y.backward()
    np.testing.assert_allclose(x.grad.numpy(), [3.0, 3.0])


@pytest.mark.parametrize("bad, error, match", [
    (lambda g: g.sum(), ValueError, r"Function Bad.backward returned an invalid gradient at index 0: "
                                    r"got shape \(\) .* expected shape \(2, 3\)"),
    (lambda g: g._astype(np.float32), ValueError, r"dtype float32.*dtype float64"),
    (lambda g: g.numpy(), TypeError, r"returned a ndarray as the gradient of input 0"),
    (lambda g: (g, g), RuntimeError, r"incorrect number of gradients \(expected 1, got 2\)"),
])
def test_a_bad_gradient_is_a_clear_error(bad, error, match):
    class Bad(Function):
        @staticmethod
        def forward(ctx, x):
            return x * 2.0

        @staticmethod
        def backward(ctx, grad):
            return bad(grad)

    x = t64(np.ones((2, 3)))
    with pytest.raises(error, match=match):
        Bad.apply(x).sum().backward()


def test_a_gradient_for_a_non_tensor_argument_is_an_error():
    class Bad(Function):
        @staticmethod
        def forward(ctx, x, k):
            return x * k

        @staticmethod
        def backward(ctx, grad):
            return grad, grad

    with pytest.raises(RuntimeError, match="position 1, but the corresponding forward input was not a Tensor"):
        Bad.apply(t64([1.0]), 2.0).sum().backward()


def test_a_saved_tensor_changed_in_place_is_refused():
    x = t64([1.0, 2.0])
    y = Exp.apply(x)
    with cgrad.no_grad():
        y.fill_(3.0)  # y shares the saved output's storage
    with pytest.raises(RuntimeError, match="modified by an inplace operation"):
        y.sum().backward()


def test_saved_values_are_freed_by_backward_unless_retained():
    x = t64([0.5])
    y = Exp.apply(x)
    y.backward(retain_graph=True)
    y.backward()
    np.testing.assert_allclose(x.grad.numpy(), 2 * np.exp([0.5]))
    with pytest.raises(RuntimeError, match="second time"):
        y.backward()


def test_the_node_owns_ctx_and_lets_go_of_it():
    refs = []

    class Keep(Function):
        @staticmethod
        def forward(ctx, x):
            refs.append(weakref.ref(ctx))
            return x * 2.0

        @staticmethod
        def backward(ctx, grad):
            return grad * 2.0

    x = t64([1.0])
    y = Keep.apply(x)
    gc.collect()
    assert refs[0]() is not None  # only the C node holds it
    y.backward()
    assert refs[0]() is None  # backward without retain_graph released it
    y = Keep.apply(x)
    del y
    assert refs[1]() is None  # so does freeing the graph


def test_repeated_use_leaks_no_c_memory():
    x = t64(np.linspace(-1, 1, 50))
    w = t64(np.ones((3, 50)))
    b = t64(np.zeros(3))
    Linear.apply(x.reshape(1, 50), w, b).sum().backward()  # warm the caches
    x.grad = w.grad = b.grad = None
    before = cgrad.live_bytes()
    for _ in range(200):
        Exp.apply(Linear.apply(x.reshape(1, 50), w, b)).sum().backward()
        out = Scale.apply(x, 2.0).sum()  # a graph dropped without backward
        del out
    x.grad = w.grad = b.grad = None
    assert cgrad.live_bytes() <= before


def test_compile_refuses_a_custom_function():
    x = t64([1.0, 2.0])

    @cgrad.compile
    def step(a):
        Exp.apply(a * x).sum().backward()

    with pytest.raises(RuntimeError, match="cgrad.compile.*Exp"):
        step(np.ones(2))


def test_more_than_one_tensor_output_is_not_supported_yet():
    class Two(Function):
        @staticmethod
        def forward(ctx, x):
            return x * 1.0, x * 2.0

        @staticmethod
        def backward(ctx, g1, g2):
            return g1

    with pytest.raises(NotImplementedError, match="Two"):
        Two.apply(t64([1.0]))


def test_agrees_with_torch_autograd_function(rng):
    torch = pytest.importorskip("torch")

    def make(base):
        class TExp(base):
            @staticmethod
            def forward(ctx, x):
                y = x.exp()
                ctx.save_for_backward(y)
                return y

            @staticmethod
            def backward(ctx, grad):
                y, = ctx.saved_tensors
                return grad * y

        class TLinear(base):
            @staticmethod
            def forward(ctx, x, w, b, k):
                ctx.save_for_backward(x, w)
                ctx.k = k
                return (x @ w.T + b) * k

            @staticmethod
            def backward(ctx, grad):
                x, w = ctx.saved_tensors
                grad = grad * ctx.k
                return grad @ w, grad.T @ x, grad.sum(0), None

        return TExp, TLinear

    arrays = [rng.normal(size=(5, 3)), rng.normal(size=(4, 3)), rng.normal(size=4)]
    grads = []
    for lib, base, make_tensor in ((cgrad, Function, lambda a: t64(a)),
                                   (torch, torch.autograd.Function,
                                    lambda a: torch.tensor(a, requires_grad=True))):
        TExp, TLinear = make(base)
        x, w, b = [make_tensor(a) for a in arrays]
        h = TLinear.apply(x.tanh(), w, b, 0.5)
        loss = (TExp.apply(h) * h + TExp.apply(h)).sum()
        loss.backward()
        grads.append([np.asarray(t.grad.detach().numpy() if lib is torch else t.grad.numpy()) for t in (x, w, b)])
    for ours, theirs in zip(*grads):
        np.testing.assert_allclose(ours, theirs, rtol=1e-12, atol=1e-12)


def test_a_backward_reentering_the_graph_being_swept_is_refused():
    class Reenter(Function):
        @staticmethod
        def forward(ctx, x):
            return x * 1.0

        @staticmethod
        def backward(ctx, grad):
            graph[0].backward(retain_graph=True)  # the graph this sweep is working on
            return grad

    x = t64([1.0, 2.0])
    graph = [Reenter.apply(x.exp()).sum()]  # cleared at the end: the C node's ctx -> Reenter -> graph
    with pytest.raises(RuntimeError, match="cannot reenter the graph it sweeps"):
        graph[0].backward(retain_graph=True)  # (without it the sum's values would be freed first)
    assert x.grad is None
    graph.clear()
