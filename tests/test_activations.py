"""The activation layers added beside nn.functional's composites (ReLU6, Hardsigmoid,
Hardswish, CELU, PReLU, GLU, Softmin, Threshold, Tanhshrink, Softshrink, Hardshrink): values
against formulas written here, against PyTorch's layers when installed (outputs, gradients,
PReLU's state_dict), replay, and their errors. Their functional forms have op-table lines."""
import numpy as np
import pytest

import cgrad
from cgrad import nn
from cgrad.nn import functional as F
from train_steps import assert_same, train_step

X = np.linspace(-7.5, 7.5, 31)  # every piece of every function, no value at a kink

LAYERS = [
    (lambda: nn.ReLU6(), lambda x: min(max(x, 0.0), 6.0)),
    (lambda: nn.Hardsigmoid(), lambda x: min(max(x / 6 + 0.5, 0.0), 1.0)),
    (lambda: nn.Hardswish(), lambda x: x * min(max(x + 3, 0.0), 6.0) / 6),
    (lambda: nn.CELU(0.5), lambda x: x if x > 0 else 0.5 * (np.exp(x / 0.5) - 1)),
    (lambda: nn.Threshold(0.1, 20.0), lambda x: x if x > 0.1 else 20.0),
    (lambda: nn.Tanhshrink(), lambda x: x - np.tanh(x)),
    (lambda: nn.Softshrink(1.0), lambda x: x - 1 if x > 1 else x + 1 if x < -1 else 0.0),
    (lambda: nn.Hardshrink(1.0), lambda x: x if abs(x) > 1 else 0.0),
    (lambda: nn.PReLU(), lambda x: x if x > 0 else 0.25 * x),
]


@pytest.mark.parametrize("make, formula", LAYERS, ids=[type(make()).__name__ for make, _ in LAYERS])
def test_elementwise_layers_match_their_formula(make, formula):
    y = make()(cgrad.tensor(X))
    np.testing.assert_allclose(y.numpy(), [formula(v) for v in X], rtol=1e-12, atol=1e-12)


def test_glu_softmin_and_prelu_per_channel(rng):
    x = rng.standard_normal((2, 6, 3))
    a, b = x[:, :3], x[:, 3:]
    np.testing.assert_allclose(nn.GLU(1)(cgrad.tensor(x)).numpy(), a / (1 + np.exp(-b)), rtol=1e-12)
    e = np.exp(-x)
    np.testing.assert_allclose(nn.Softmin(2)(cgrad.tensor(x)).numpy(), e / e.sum(2, keepdims=True), rtol=1e-12)
    np.testing.assert_allclose(nn.Softmin()(cgrad.tensor(x)).numpy(), e / e.sum(0, keepdims=True), rtol=1e-12)
    p = nn.PReLU(6, init=0.1).double()
    assert p.weight.shape == (6,) and np.all(p.weight.numpy() == np.float32(0.1))
    np.testing.assert_allclose(p(cgrad.tensor(x)).numpy(), np.where(x > 0, x, np.float32(0.1) * x), rtol=1e-12)
    np.testing.assert_allclose(F.prelu(cgrad.tensor(x[0, :, 0]), p.weight).numpy(),
                               np.where(x[0, :, 0] > 0, x[0, :, 0], np.float32(0.1) * x[0, :, 0]), rtol=1e-12)


def test_errors_name_the_op_and_the_shapes():
    with pytest.raises(ValueError, match=r"glu: halving dimension must be even, but dimension 1 of the input of "
                                         r"shape \(2, 3\) is 3"):
        F.glu(cgrad.ones((2, 3)), 1)
    with pytest.raises(ValueError, match=r"prelu: weight of shape \(4,\) does not fit the input of shape \(2, 3\)"):
        F.prelu(cgrad.ones((2, 3)), cgrad.ones(4))
    with pytest.raises(ValueError, match="softshrink: lambda must be greater or equal to 0"):
        F.softshrink(cgrad.ones(2), -1.0)


def test_a_replayed_step_through_the_new_activations_equals_eager(rng):
    def make():
        cgrad.manual_seed(0)
        return nn.Sequential(nn.Linear(4, 8), nn.PReLU(8), nn.Hardswish(), nn.Linear(8, 8), nn.CELU(),
                             nn.Threshold(-0.5, 0.0), nn.Linear(8, 6), nn.GLU(), nn.Linear(3, 2))
    models = [make(), make()]
    compiled, eager = (train_step(m, cgrad.optim.SGD(m.parameters(), lr=0.05)) for m in models)
    compiled = cgrad.compile(compiled)
    for _ in range(4):
        x, y = rng.standard_normal((5, 4)).astype(np.float32), rng.integers(0, 2, 5)
        assert np.array_equal(compiled(x, y).numpy(), eager(cgrad.tensor(x), y).numpy())
    assert_same(models[0], models[1])


def test_agree_with_pytorch_layers(rng):
    torch = pytest.importorskip("torch")
    x = rng.standard_normal((3, 4, 5)) * 4
    pairs = [(nn.ReLU6(), torch.nn.ReLU6()), (nn.Hardsigmoid(), torch.nn.Hardsigmoid()),
             (nn.Hardswish(), torch.nn.Hardswish()), (nn.CELU(1.3), torch.nn.CELU(1.3)),
             (nn.Threshold(0.2, -1.0), torch.nn.Threshold(0.2, -1.0)), (nn.Tanhshrink(), torch.nn.Tanhshrink()),
             (nn.Softshrink(), torch.nn.Softshrink()), (nn.Hardshrink(0.3), torch.nn.Hardshrink(0.3)),
             (nn.GLU(1), None), (nn.Softmin(1), torch.nn.Softmin(1)), (nn.PReLU(4), torch.nn.PReLU(4))]
    for ours, theirs in pairs:
        theirs = theirs if theirs is not None else torch.nn.GLU(1)
        theirs = theirs.double()
        ours = ours.double()
        if isinstance(ours, nn.PReLU):
            with torch.no_grad():
                theirs.weight.uniform_(0, 0.5)
            ours.load_state_dict({k: cgrad.tensor(v.numpy()) for k, v in theirs.state_dict().items()})
        cx, tx = cgrad.tensor(x, dtype=cgrad.float64, requires_grad=True), torch.tensor(x, requires_grad=True)
        yo, yt = ours(cx), theirs(tx)
        g = rng.standard_normal(yt.shape)
        yo.backward(g), yt.backward(torch.tensor(g))
        np.testing.assert_allclose(yo.numpy(), yt.detach().numpy(), rtol=1e-12, atol=1e-12, err_msg=repr(ours))
        # PyTorch's hardsigmoid, hardswish and celu backward carry float32 constants even in
        # float64 (celu'(-0.5) at alpha 1.3: 0.68071241 there, exp(-0.5 / 1.3) = 0.68071240)
        np.testing.assert_allclose(cx.grad.numpy(), tx.grad.numpy(), rtol=1e-6, atol=1e-12, err_msg=repr(ours))
        assert ours.extra_repr() == theirs.extra_repr(), repr(ours)
        if isinstance(ours, nn.PReLU):
            np.testing.assert_allclose(ours.weight.grad.numpy(), theirs.weight.grad.numpy(), rtol=1e-12)


def test_tensor_multinomial_and_generators():
    g = cgrad.Generator().manual_seed(0)
    p = cgrad.tensor([0.1, 0.0, 0.5, 0.4])
    s = p.multinomial(3, generator=g)
    assert s.dtype == np.int64 and s.shape == (3,) and len(set(s.numpy().tolist())) == 3 and 1 not in s.numpy()
    many = p.multinomial(4000, replacement=True, generator=cgrad.Generator().manual_seed(1)).numpy()
    np.testing.assert_allclose(np.bincount(many, minlength=4) / 4000, [0.1, 0.0, 0.5, 0.4], atol=0.03)
    rows = cgrad.multinomial(cgrad.tensor([[1.0, 2.0, 0.0], [0.0, 0.0, 1.0]]), 1, generator=g)
    assert rows.shape == (2, 1) and rows.numpy()[1, 0] == 2
    a = cgrad.multinomial(p, 2, generator=cgrad.Generator().manual_seed(5)).numpy()
    b = cgrad.multinomial(p, 2, generator=cgrad.Generator().manual_seed(5)).numpy()
    assert np.array_equal(a, b)
