"""The backpropagation lecture's worked example and gates, checked to its two decimals."""
import math

import numpy as np
import pytest

import cgrad


def _inputs():
    w = [cgrad.tensor(v, dtype=cgrad.float64, requires_grad=True) for v in (2.0, -3.0, -3.0)]
    x = [cgrad.tensor(v, dtype=cgrad.float64, requires_grad=True) for v in (-1.0, -2.0)]
    return w, x


def test_worked_example_from_primitive_ops():
    """f = 1 / (1 + exp(-(w0 x0 + w1 x1 + w2))) built gate by gate."""
    w, x = _inputs()
    dot = w[0] * x[0] + w[1] * x[1] + w[2]
    neg = dot * -1.0
    e = neg.exp()
    d = e + 1.0
    f = 1.0 / d
    for t in (dot, neg, e, d):
        t.retain_grad()
    f.backward()
    assert round(f.item(), 2) == 0.73
    assert [round(t.grad.item(), 2) for t in w] == [-0.20, -0.39, 0.20]
    assert [round(t.grad.item(), 2) for t in x] == [0.39, -0.59]
    # the 1/x gate: local gradient -1/d^2 at d = 1.37
    assert round(d.grad.item(), 2) == -0.53
    assert d.grad.item() == pytest.approx(-1 / d.item() ** 2)
    # the exp gate: upstream -0.53 times local exp(-1)
    assert round(neg.grad.item(), 2) == -0.20
    assert neg.grad.item() == pytest.approx(math.exp(-1) * d.grad.item())


def test_worked_example_with_sigmoid_op():
    w, x = _inputs()
    f = (w[0] * x[0] + w[1] * x[1] + w[2]).sigmoid()
    f.backward()
    assert round(f.item(), 2) == 0.73
    assert [round(t.grad.item(), 2) for t in w] == [-0.20, -0.39, 0.20]
    assert [round(t.grad.item(), 2) for t in x] == [0.39, -0.59]
    # sigmoid's local gradient (1 - f) f, times upstream 1, is dw2
    assert w[2].grad.item() == pytest.approx((1 - f.item()) * f.item())


def test_add_gate_distributes():
    a = cgrad.tensor(3.0, requires_grad=True)
    b = cgrad.tensor(-4.0, requires_grad=True)
    (a + b).backward(cgrad.tensor(2.5))
    assert a.grad.item() == 2.5 and b.grad.item() == 2.5


def test_mul_gate_switches():
    a = cgrad.tensor(3.0, requires_grad=True)
    b = cgrad.tensor(-4.0, requires_grad=True)
    (a * b).backward(cgrad.tensor(2.0))
    assert a.grad.item() == 2.0 * -4.0 and b.grad.item() == 2.0 * 3.0


def test_max_gate_routes_to_the_larger_input():
    a = cgrad.tensor([5.0, 1.0], requires_grad=True)
    b = cgrad.tensor([2.0, 7.0], requires_grad=True)
    cgrad.maximum(a, b).backward(cgrad.tensor([3.0, 4.0]))
    np.testing.assert_array_equal(a.grad.numpy(), [3.0, 0.0])
    np.testing.assert_array_equal(b.grad.numpy(), [0.0, 4.0])


def test_max_gate_tie_splits_equally():
    a = cgrad.tensor([2.0], requires_grad=True)
    b = cgrad.tensor([2.0], requires_grad=True)
    cgrad.maximum(a, b).backward(cgrad.tensor([1.0]))
    assert a.grad.item() == 0.5 and b.grad.item() == 0.5


def test_max_reduction_shares_gradient_among_ties():
    x = cgrad.tensor([1.0, 3.0, 3.0, 2.0], requires_grad=True)
    x.max().backward()
    np.testing.assert_array_equal(x.grad.numpy(), [0.0, 0.5, 0.5, 0.0])


def test_relu_kills_gradient_of_negative_inputs():
    x = cgrad.tensor([-1.0, 0.0, 2.0], requires_grad=True)
    x.relu().sum().backward()
    np.testing.assert_array_equal(x.grad.numpy(), [0.0, 0.0, 1.0])


def test_sigmoid_gradient_vanishes_when_saturated():
    x = cgrad.tensor([0.0, 10.0, -10.0], dtype=cgrad.float64, requires_grad=True)
    x.sigmoid().sum().backward()
    g = x.grad.numpy()
    assert g[0] == pytest.approx(0.25)
    assert g[1] < 1e-4 and g[2] < 1e-4


def test_linear_layer_gradients():
    """z = x W: dL/dx = dL/dz W^T and dL/dW = x^T dL/dz."""
    rng = np.random.default_rng(0)
    xv, wv, gv = rng.normal(size=(5, 3)), rng.normal(size=(3, 4)), rng.normal(size=(5, 4))
    x = cgrad.tensor(xv, requires_grad=True)
    w = cgrad.tensor(wv, requires_grad=True)
    (x @ w).backward(gv)
    np.testing.assert_allclose(x.grad.numpy(), gv @ wv.T, rtol=1e-12)
    np.testing.assert_allclose(w.grad.numpy(), xv.T @ gv, rtol=1e-12)


def test_sgd_step_decreases_loss():
    """w <- w - eta dL/dw on a least-squares problem."""
    rng = np.random.default_rng(0)
    Xv = rng.normal(size=(20, 3))
    X = cgrad.tensor(Xv)
    y = cgrad.tensor(Xv @ np.array([[1.0], [-2.0], [0.5]]) + 0.1 * rng.normal(size=(20, 1)))
    w = cgrad.tensor(np.zeros((3, 1)), requires_grad=True)
    losses = []
    for _ in range(20):
        loss = ((X @ w - y) ** 2).mean()
        losses.append(loss.item())
        w.grad = None
        loss.backward()
        with cgrad.no_grad():
            w.add_(w.grad, alpha=-0.1)
    assert losses[-1] < 0.2 * losses[0]
    assert all(b <= a + 1e-12 for a, b in zip(losses, losses[1:]))
