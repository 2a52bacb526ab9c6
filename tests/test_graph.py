"""Graph semantics: fan-out, deep chains, accumulation, retain_graph, no_grad, lifetimes."""
import gc

import numpy as np
import pytest

import cgrad


def test_fan_out_sums_gradients_over_paths():
    x = cgrad.tensor([1.5, -2.0], dtype=cgrad.float64, requires_grad=True)
    y = (x * x + x).sum()
    y.backward()
    np.testing.assert_allclose(x.grad.numpy(), 2 * x.numpy() + 1)


def test_diamond_graph():
    x = cgrad.tensor(0.7, dtype=cgrad.float64, requires_grad=True)
    a = x.exp()
    b = a * 2.0
    c = a * a
    d = b * c + a
    d.backward()
    xv = 0.7
    # d = 2 e^x * e^{2x} + e^x = 2 e^{3x} + e^x
    assert x.grad.item() == pytest.approx(6 * np.exp(3 * xv) + np.exp(xv))


def test_deep_diamonds_gradcheck():
    def f(x):
        h = x
        for _ in range(5):
            h = (h * 0.5).tanh() + h.sigmoid() * h
        return h.sum()
    x = cgrad.tensor(np.linspace(-1, 1, 6), dtype=cgrad.float64, requires_grad=True)
    assert cgrad.gradcheck(f, [x])


def test_chain_of_100000_ops():
    x = cgrad.tensor([1.0], dtype=cgrad.float64, requires_grad=True)
    y = x
    for _ in range(100_000):
        y = y * 1.0 + 0.0
    y.sum().backward()
    assert x.grad.item() == 1.0
    del y  # freeing a 200,000-node graph must not recurse either


def test_leaf_grad_accumulates_until_zeroed():
    x = cgrad.tensor([1.0, 2.0], requires_grad=True)
    (x * 3.0).sum().backward()
    (x * 3.0).sum().backward()
    np.testing.assert_array_equal(x.grad.numpy(), [6.0, 6.0])
    x.grad.zero_()
    (x * 2.0).sum().backward()
    np.testing.assert_array_equal(x.grad.numpy(), [2.0, 2.0])
    x.grad = None
    assert x.grad is None


def test_second_backward_needs_retain_graph():
    x = cgrad.tensor([1.0, 2.0], requires_grad=True)
    y = (x.exp() * x).sum()
    y.backward(retain_graph=True)
    y.backward()
    with pytest.raises(RuntimeError, match="second time.*retain_graph=True"):
        y.backward()


def test_intermediate_grads_not_kept_unless_asked():
    x = cgrad.tensor([1.0, 2.0], requires_grad=True)
    h = x * 2.0
    k = x * 3.0
    k.retain_grad()
    (h * k).sum().backward()
    assert h.grad is None
    np.testing.assert_array_equal(k.grad.numpy(), h.numpy())


def test_backward_on_non_scalar_needs_grad():
    x = cgrad.tensor([1.0, 2.0], requires_grad=True)
    with pytest.raises(RuntimeError, match="implicitly created only for a tensor with one element"):
        (x * 2.0).backward()
    (x * 2.0).backward(np.array([1.0, -1.0], dtype=np.float32))
    np.testing.assert_array_equal(x.grad.numpy(), [2.0, -2.0])


def test_backward_grad_shape_is_checked():
    x = cgrad.tensor([1.0, 2.0], requires_grad=True)
    with pytest.raises(ValueError, match=r"grad has shape \(3,\) but the tensor has shape \(2,\)"):
        (x * 2.0).backward(np.ones(3))


def test_backward_on_tensor_without_grad():
    x = cgrad.tensor([1.0, 2.0])
    with pytest.raises(RuntimeError, match="does not require grad"):
        (x * 2.0).sum().backward()


def test_no_grad_records_nothing():
    x = cgrad.tensor([1.0], requires_grad=True)
    with cgrad.no_grad():
        y = x * 2.0
        with cgrad.enable_grad():
            z = x * 2.0
    assert not y.requires_grad and y.grad_fn is None
    assert z.requires_grad and z.grad_fn == "mul_scalar"
    assert cgrad.is_grad_enabled()

    @cgrad.no_grad()
    def f(t):
        return t * 2.0
    assert not f(x).requires_grad


def test_detach_shares_memory_and_cuts_the_graph():
    x = cgrad.tensor([1.0, 2.0], requires_grad=True)
    h = x * 2.0
    d = h.detach()
    assert d.is_leaf and not d.requires_grad
    d.numpy()[0] = 10.0
    assert h.numpy()[0] == 10.0


def test_requires_grad_only_settable_on_leaves():
    x = cgrad.tensor([1.0], requires_grad=True)
    with pytest.raises(RuntimeError, match="leaf"):
        (x * 2.0).requires_grad = False


def test_graph_freed_when_tensors_go():
    gc.collect()
    before = cgrad.live_bytes()
    x = cgrad.tensor(np.ones((50, 50)), requires_grad=True)
    loss = ((x @ x).relu().sum(axis=0) * 2.0).mean()
    loss.backward()
    assert cgrad.live_bytes() > before
    del x, loss
    gc.collect()
    assert cgrad.live_bytes() == before


def test_graph_kept_alive_by_output_only():
    x = cgrad.tensor([1.0, 2.0], requires_grad=True)
    y = (x * 3.0).exp().sum()
    del x  # the graph still holds x; its gradient is reachable via the graph
    y.backward()


def test_inputs_that_do_not_need_grad_get_none():
    x = cgrad.tensor([1.0, 2.0], requires_grad=True)
    c = cgrad.tensor([3.0, 4.0])
    (x * c).sum().backward()
    assert c.grad is None
    np.testing.assert_array_equal(x.grad.numpy(), [3.0, 4.0])


def test_same_tensor_twice_in_one_op():
    x = cgrad.tensor([3.0], dtype=cgrad.float64, requires_grad=True)
    (x * x).backward(np.ones(1))
    assert x.grad.item() == 6.0
    x.grad = None
    cgrad.concatenate([x, x, x]).sum().backward()
    assert x.grad.item() == 3.0


def test_gradcheck_reports_the_disagreeing_element():
    x = cgrad.tensor([1.0, 2.0], dtype=cgrad.float64, requires_grad=True)

    def wrong(t):  # cuts the graph for element 1: backward misses its gradient
        return cgrad.concatenate([t[:1] * t[:1], t.detach()[1:] ** 2])
    with pytest.raises(cgrad.GradcheckError, match=r"input 0 .*element \(1,\)"):
        cgrad.gradcheck(wrong, [x])
    assert cgrad.gradcheck(wrong, [x], raise_exception=False) is False


def test_gradcheck_needs_float64():
    x = cgrad.tensor([1.0], requires_grad=True)
    with pytest.raises(TypeError, match="float64"):
        cgrad.gradcheck(lambda t: t * 2.0, [x])


def test_in_place_change_of_a_saved_input_is_detected():
    x = cgrad.tensor([1.0, 2.0, 3.0], requires_grad=True)
    y = (x * x).sum()
    with cgrad.no_grad():
        x.add_(cgrad.tensor([1.0, 1.0, 1.0]))
    with pytest.raises(RuntimeError, match=r"input \(3,\) of op 'mul' was modified in place"):
        y.backward()


def test_in_place_change_of_a_saved_output_is_detected():
    x = cgrad.tensor([1.0, 2.0], requires_grad=True)
    e = x.exp()
    loss = e.sum()
    e.fill_(0.0)
    with pytest.raises(RuntimeError, match=r"the output \(2,\) of op 'exp' was modified in place"):
        loss.backward()


def test_optimizer_step_between_graphs_is_fine():
    w = cgrad.tensor([1.0, -1.0], requires_grad=True)
    opt = cgrad.optim.SGD([w], lr=0.1)
    for _ in range(3):
        opt.zero_grad()
        (w * w).sum().backward()
        opt.step()
    np.testing.assert_allclose(w.numpy(), [0.8 ** 3, -(0.8 ** 3)], rtol=1e-6)
    stale = (w * w).sum()
    opt.step()  # the parameters change after the graph was built
    with pytest.raises(RuntimeError, match="modified in place"):
        stale.backward()


def test_in_place_change_is_fine_where_backward_does_not_read_the_value():
    x = cgrad.tensor([1.0, 2.0], requires_grad=True)
    h = x * 3.0
    loss = (h + 1.0).sum()  # add_scalar and sum read no saved values
    h.fill_(5.0)
    loss.backward()
    np.testing.assert_array_equal(x.grad.numpy(), [3.0, 3.0])


@pytest.mark.parametrize("order", range(6))
def test_freeing_reusing_and_retaining_graphs_in_any_order(order):
    import itertools
    x = cgrad.tensor([0.5, -1.5], dtype=cgrad.float64, requires_grad=True)
    a = x.tanh()
    b = a * x
    c = (b + a).sum()
    d = (b * 2.0).sum()
    names = ["a", "b", "x"]
    perm = list(itertools.permutations(names))[order]
    c.backward(retain_graph=True)
    local = {"a": a, "b": b, "x": x}
    del a, b
    for name in perm:  # drop the Python references in some order; the graph keeps what it needs
        local.pop(name)
    d.backward(retain_graph=True)
    c.backward()
    g = x.grad.numpy()
    xv = np.array([0.5, -1.5])
    t = np.tanh(xv)
    dt = 1 - t * t
    expected = 2 * (dt * xv + t + dt) + 2 * (dt * xv + t)
    np.testing.assert_allclose(g, expected, rtol=1e-12)
    for root in (c, d):  # c's backward freed the nodes both graphs share
        with pytest.raises(RuntimeError, match="second time"):
            root.backward()


@pytest.mark.parametrize("make", [
    lambda w, x: cgrad.nn.functional.linear(w, w, x[0]),          # one leaf as input and weight
    lambda w, x: (w @ w).tanh(),                                   # one leaf as both matmul operands
    lambda w, x: w.tanh() * w.sigmoid() + w.tanh(),                # first write, then adds, to one buffer
    lambda w, x: cgrad.nn.functional.linear(w.relu(), w, None) @ w,
])
def test_buffers_written_first_are_right_whatever_they_held(make, rng):
    """Gradient buffers a rule writes instead of adding to (Note [First write]) come from a
    pool of used ones: every element must be written, and a buffer behind two inputs added."""
    w = cgrad.tensor(rng.standard_normal((4, 4)), requires_grad=True)
    x = cgrad.tensor(rng.standard_normal((1, 4)), requires_grad=True)
    for _ in range(3):  # the pool holds the previous round's buffers
        w.grad = x.grad = None
        cgrad.gradcheck(lambda a, b: make(a, b).sum() * 1.0, (w, x))
        (make(w, x) * 1.5).sum().backward()
        first = w.grad.numpy().copy()
        w.grad = None
        (make(w, x) * 1.5).sum().backward()
        assert np.array_equal(w.grad.numpy(), first)
