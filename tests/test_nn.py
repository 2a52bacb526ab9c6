"""Layers, losses and optimizers: exact formulas against numpy, and PyTorch when installed."""
import numpy as np
import pytest

import cgrad
from cgrad import nn
from cgrad.nn import functional as F

try:
    import torch
except ImportError:  # PyTorch is an optional oracle
    torch = None
needs_torch = pytest.mark.skipif(torch is None, reason="PyTorch not installed")


def t64(a, **kw):
    return cgrad.tensor(np.asarray(a, dtype=np.float64), **kw)


# ---------------------------------------------------------------- layers

def test_linear_layout_init_and_formula():
    cgrad.manual_seed(0)
    layer = nn.Linear(5, 3)
    assert layer.weight.shape == (3, 5) and layer.bias.shape == (3,)
    bound = 1 / np.sqrt(5)
    assert np.all(np.abs(layer.weight.numpy()) <= bound) and np.all(np.abs(layer.bias.numpy()) <= bound)
    x = np.random.default_rng(0).normal(size=(4, 5)).astype(np.float32)
    np.testing.assert_allclose(layer(cgrad.tensor(x)).numpy(),
                               x @ layer.weight.numpy().T + layer.bias.numpy(), rtol=1e-5)
    assert nn.Linear(5, 3, bias=False).bias is None


def test_module_registration_and_state_dict():
    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.body = nn.Sequential(nn.Linear(2, 4), nn.ReLU(), nn.Linear(4, 1))
            self.scale = nn.Parameter(cgrad.ones(1))
            self.not_a_param = cgrad.ones(1)

    net = Net()
    names = [n for n, _ in net.named_parameters()]
    assert names == ["scale", "body.0.weight", "body.0.bias", "body.2.weight", "body.2.bias"]
    assert net.num_parameters() == 1 + 8 + 4 + 4 + 1
    sd = net.state_dict()
    other = Net()
    other.load_state_dict(sd)
    for (_, a), (_, b) in zip(net.named_parameters(), other.named_parameters()):
        np.testing.assert_array_equal(a.numpy(), b.numpy())
    with pytest.raises(KeyError, match="missing keys"):
        other.load_state_dict({"scale": np.ones(1)})
    with pytest.raises(ValueError, match="has shape"):
        other.load_state_dict(dict(sd, scale=np.ones(2)))
    net.eval()
    assert not any(m.training for m in net.modules())
    net.train()
    assert all(m.training for m in net.modules())
    assert "Linear(2→4, bias=True)  [12 params]" in repr(net)


def test_module_zero_grad_and_parameters_are_leaves():
    m = nn.MLP([3, 4, 2])
    F.mse_loss(m(cgrad.randn(5, 3)), np.zeros((5, 2), np.float32)).backward()
    assert all(p.grad is not None for p in m.parameters())
    m.zero_grad()
    assert all(p.grad is None for p in m.parameters())
    assert all(p.is_leaf and p.requires_grad for p in m.parameters())


def test_dropout_inverted_and_only_in_training():
    cgrad.manual_seed(0)
    d = nn.Dropout(0.25)
    x = cgrad.ones(1000, 100)
    y = d(x).numpy()
    assert set(np.unique(y)) == {0.0, np.float32(1 / 0.75)}
    assert abs((y == 0).mean() - 0.25) < 0.01
    d.eval()
    assert d(x) is x


def test_activation_modules_and_flatten():
    x = cgrad.tensor([[-1.0, 2.0]])
    np.testing.assert_allclose(nn.ReLU()(x).numpy(), [[0, 2]])
    np.testing.assert_allclose(nn.LeakyReLU(0.1)(x).numpy(), [[-0.1, 2]])
    np.testing.assert_allclose(nn.Tanh()(x).numpy(), np.tanh([[-1.0, 2.0]]), rtol=1e-6)
    np.testing.assert_allclose(nn.Sigmoid()(x).numpy(), 1 / (1 + np.exp([[1.0, -2.0]])), rtol=1e-6)
    np.testing.assert_allclose(nn.Softmax(dim=1)(x).numpy().sum(), 1, rtol=1e-6)
    assert nn.Flatten()(cgrad.zeros(2, 3, 4)).shape == (2, 12)
    assert nn.Identity()(x) is x
    with pytest.raises(ValueError, match="unknown activation"):
        nn.MLP([2, 2, 2], activation="swish")


ACTIVATION_MODULES = [  # (cgrad module, PyTorch module of the same name and arguments)
    ("SiLU", {}), ("GELU", {}), ("GELU", {"approximate": "tanh"}), ("ELU", {"alpha": 0.5}),
    ("SELU", {}), ("Hardtanh", {"min_val": -0.5, "max_val": 1.5}), ("Softsign", {}), ("Mish", {}),
]


@pytest.mark.parametrize("name, kwargs", ACTIVATION_MODULES, ids=[f"{n}{k}" for n, k in ACTIVATION_MODULES])
def test_activation_modules_apply_their_op(name, kwargs):
    x = np.linspace(-3, 3, 13)
    out = getattr(nn, name)(**kwargs)(t64(x)).numpy()
    fn = getattr(F, {"SiLU": "silu", "GELU": "gelu", "ELU": "elu", "SELU": "selu", "Hardtanh": "hardtanh",
                     "Softsign": "softsign", "Mish": "mish"}[name])
    np.testing.assert_array_equal(out, fn(t64(x), *kwargs.values()).numpy())
    if torch is not None:
        theirs = getattr(torch.nn, name)(**kwargs)(torch.tensor(x)).numpy()
        np.testing.assert_allclose(out, theirs, rtol=1e-12, atol=1e-15)
    assert getattr(nn, name) is nn.ACTIVATIONS[name.lower()]  # MLP(activation=...) takes it


def test_gelu_rejects_an_unknown_approximation():
    with pytest.raises(ValueError, match="approximate"):
        nn.GELU("fast")
    with pytest.raises(ValueError, match="approximate"):
        F.gelu(t64([1.0]), approximate="fast")


# ---------------------------------------------------------------- losses
# Each loss and reduction is a line of tests/op_table.py (forward against numpy, gradients,
# PyTorch); here only what a table line cannot say.

RNG = np.random.default_rng(3)
P = RNG.normal(size=(6, 4))
CLS = RNG.integers(0, 4, 6)


@pytest.mark.parametrize("loss", [lambda x: F.mse_loss(x, np.zeros_like(P), reduction="avg"),
                                  lambda x: F.cross_entropy(x, CLS, reduction="avg")], ids=["python", "fused"])
def test_loss_reduction_is_checked(loss):
    with pytest.raises(ValueError, match="reduction must be"):
        loss(t64(P))


def test_cross_entropy_backward_is_softmax_minus_onehot_over_n():
    x = t64(P, requires_grad=True)
    F.cross_entropy(x, CLS).backward()
    e = np.exp(P - P.max(1, keepdims=True))
    expected = e / e.sum(1, keepdims=True)
    expected[np.arange(6), CLS] -= 1
    np.testing.assert_allclose(x.grad.numpy(), expected / 6, rtol=1e-12)


@pytest.mark.parametrize("n, c", [(300, 7), (3, 1500)])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_cross_entropy_row_blocks_and_wide_rows(n, c, dtype, rng):
    """csrc/loss.c takes rows in blocks of 1,024 values (300 x 7 spans three blocks) and
    splits a row wider than a block (1,500 classes): both against numpy, forward and
    backward (softmax - onehot) / N."""
    z = rng.standard_normal((n, c)) * 3
    t = rng.integers(0, c, n)
    x = cgrad.tensor(z, dtype=dtype, requires_grad=True)
    loss = F.cross_entropy(x, t)
    loss.backward()
    m = z.max(1, keepdims=True)
    e = np.exp(z - m)
    lse = np.log(e.sum(1)) + m[:, 0]
    grad = e / e.sum(1, keepdims=True)
    grad[np.arange(n), t] -= 1
    tol = 1e-5 if dtype == np.float32 else 1e-12
    np.testing.assert_allclose(loss.item(), np.mean(lse - z[np.arange(n), t]), rtol=tol)
    np.testing.assert_allclose(x.grad.numpy(), grad / n, rtol=tol * 10, atol=tol / n)


def test_cross_entropy_stable_and_checked():
    x = cgrad.tensor([[1000.0, -1000.0], [-1e4, 1e4]], requires_grad=True)
    loss = F.cross_entropy(x, [0, 1])
    assert loss.item() == 0.0
    loss.backward()
    assert np.all(np.isfinite(x.grad.numpy()))
    with pytest.raises(IndexError, match="target 5 at position 1"):
        F.cross_entropy(x, [0, 5])
    with pytest.raises(ValueError, match="targets of shape"):
        F.cross_entropy(x, [0, 1, 1])
    with pytest.raises(TypeError, match="integer class indices"):
        F.cross_entropy(x, [0.5, 1.0])


@pytest.mark.parametrize("c", [7, 8, 9, 27])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_cross_entropy_row_max_sees_every_position(c, dtype):
    """A row's max runs over lanes (csrc/loss_impl.h): a logit of 1000 at any position must
    be found (exp(1000 - a smaller max) overflows), and a NaN at any position gives NaN."""
    z = np.zeros((c, c))
    z[np.arange(c), np.arange(c)] = 1000.0
    t = (np.arange(c) + 1) % c
    x = cgrad.tensor(z, dtype=dtype, requires_grad=True)
    loss = F.cross_entropy(x, t, reduction="none")
    np.testing.assert_allclose(loss.numpy(), np.full(c, 1000.0), rtol=1e-6)
    loss.sum().backward()
    want = np.zeros((c, c))
    want[np.arange(c), np.arange(c)] = 1.0
    want[np.arange(c), t] -= 1.0
    np.testing.assert_allclose(x.grad.numpy(), want, atol=1e-6)
    for p in range(c):
        zn = np.zeros((1, c))
        zn[0, p] = np.nan
        assert np.isnan(F.cross_entropy(cgrad.tensor(zn, dtype=dtype), [0]).item()), p


def test_bce_with_logits_stable_at_extremes():
    x = cgrad.tensor([-200.0, 0.0, 200.0], requires_grad=True)
    loss = F.binary_cross_entropy_with_logits(x, [1.0, 1.0, 0.0], reduction="none")
    np.testing.assert_allclose(loss.numpy(), [200.0, np.log(2), 200.0], rtol=1e-6)
    loss.sum().backward()
    np.testing.assert_allclose(x.grad.numpy(), [-1.0, -0.5, 1.0], rtol=1e-6)


# ---------------------------------------------------------------- optimizers vs the exact rules

def _numpy_trajectory(kind, p0, grads, **h):
    p, state = p0.copy(), {}
    for t, g in enumerate(grads, 1):
        g = g.copy()
        lr = h["lr"]
        if kind == "sgd":
            g = g + h.get("weight_decay", 0) * p
            mom = h.get("momentum", 0)
            if mom:
                b = g.copy() if "b" not in state else mom * state["b"] + (1 - h.get("dampening", 0)) * g
                state["b"] = b
                g = g + mom * b if h.get("nesterov") else b
            p = p - lr * g
        else:
            b1, b2 = h.get("betas", (0.9, 0.999))
            wd = h.get("weight_decay", 0)
            if kind == "adamw":
                p = p * (1 - lr * wd)
            else:
                g = g + wd * p
            m = state.get("m", 0) * b1 + (1 - b1) * g
            v = state.get("v", 0) * b2 + (1 - b2) * g * g
            state.update(m=m, v=v)
            p = p - lr / (1 - b1 ** t) * m / (np.sqrt(v) / np.sqrt(1 - b2 ** t) + h.get("eps", 1e-8))
    return p


OPTIMS = [
    ("sgd", cgrad.optim.SGD, dict(lr=0.1)),
    ("sgd", cgrad.optim.SGD, dict(lr=0.1, momentum=0.9)),
    ("sgd", cgrad.optim.SGD, dict(lr=0.1, momentum=0.9, dampening=0.3, weight_decay=0.01)),
    ("sgd", cgrad.optim.SGD, dict(lr=0.05, momentum=0.8, nesterov=True, weight_decay=0.1)),
    ("adam", cgrad.optim.Adam, dict(lr=0.01)),
    ("adam", cgrad.optim.Adam, dict(lr=0.01, betas=(0.8, 0.99), weight_decay=0.1)),
    ("adamw", cgrad.optim.AdamW, dict(lr=0.01, weight_decay=0.1)),
]


@pytest.mark.parametrize("kind, cls, hyper", OPTIMS, ids=[f"{k}-{h}" for k, _, h in OPTIMS])
def test_optimizer_matches_update_rules_over_20_steps(kind, cls, hyper):
    p0 = np.linspace(-2, 2, 7)
    p = cgrad.tensor(p0, requires_grad=True)
    opt = cls([p], **hyper)
    grads = []
    for _ in range(20):
        opt.zero_grad()
        loss = (p * p).sum() * 0.25 + (p * p * p).tanh().sum()  # gradients change along the way
        loss.backward()
        grads.append(p.grad.numpy().copy())
        opt.step()
    np.testing.assert_allclose(p.numpy(), _numpy_trajectory(kind, p0, grads, **hyper), rtol=1e-12, atol=1e-12)


@needs_torch
@pytest.mark.parametrize("kind, cls, hyper", OPTIMS, ids=[f"{k}-{h}" for k, _, h in OPTIMS])
def test_optimizer_matches_pytorch_over_20_steps(kind, cls, hyper):
    rng = np.random.default_rng(0)
    w0 = rng.normal(size=(4, 3)).astype(np.float32)
    X = rng.normal(size=(8, 4)).astype(np.float32)
    Yt = rng.normal(size=(8, 3)).astype(np.float32)
    w = cgrad.tensor(w0, requires_grad=True)
    opt = cls([w], **hyper)
    tw = torch.tensor(w0, requires_grad=True)
    topt = {"sgd": torch.optim.SGD, "adam": torch.optim.Adam, "adamw": torch.optim.AdamW}[kind]([tw], **hyper)
    for _ in range(20):
        opt.zero_grad()
        (((cgrad.tensor(X) @ w - Yt) ** 2).mean()).backward()
        opt.step()
        topt.zero_grad()
        (((torch.from_numpy(X) @ tw - torch.from_numpy(Yt)) ** 2).mean()).backward()
        topt.step()
    np.testing.assert_allclose(w.numpy(), tw.detach().numpy(), rtol=1e-5, atol=1e-5)


def test_optimizer_state_dict_round_trip():
    p = cgrad.tensor([1.0, 2.0], requires_grad=True)
    opt = cgrad.optim.Adam([p], lr=0.1)
    (p * p).sum().backward()
    opt.step()
    sd = opt.state_dict()
    q = cgrad.tensor(p.numpy().copy(), requires_grad=True)
    opt2 = cgrad.optim.Adam([q], lr=0.5)
    opt2.load_state_dict(sd)
    assert opt2.lr == 0.1 and opt2.step_count == 1
    for opt_, t in ((opt, p), (opt2, q)):
        opt_.zero_grad()
        (t * t).sum().backward()
        opt_.step()
    np.testing.assert_array_equal(p.numpy(), q.numpy())


def test_zero_grad_set_to_none_or_zero():
    p = cgrad.tensor([1.0], requires_grad=True)
    opt = cgrad.optim.SGD([p], lr=0.1)
    (p * 2.0).sum().backward()
    opt.zero_grad(set_to_none=False)
    assert p.grad.item() == 0.0
    opt.zero_grad()
    assert p.grad is None
    opt.step()  # no gradient: nothing happens
    assert p.item() == 1.0


def test_optimizer_argument_checks():
    p = cgrad.tensor([1.0], requires_grad=True)
    with pytest.raises(ValueError, match="lr must be >= 0"):
        cgrad.optim.SGD([p], lr=-1)
    with pytest.raises(ValueError, match="Nesterov"):
        cgrad.optim.SGD([p], lr=0.1, nesterov=True)
    with pytest.raises(ValueError, match="empty parameter list"):
        cgrad.optim.Adam([])
    with pytest.raises(ValueError, match="not a leaf"):
        cgrad.optim.SGD([p * 2.0], lr=0.1)


def test_clip_grad_norm():
    a = cgrad.tensor([3.0], requires_grad=True)
    b = cgrad.tensor([4.0], requires_grad=True)
    ((a * a).sum() * 0.5 + (b * b).sum() * 0.5).backward()
    total = nn.clip_grad_norm_([a, b], 1.0)
    assert total == pytest.approx(5.0)
    assert np.hypot(a.grad.item(), b.grad.item()) == pytest.approx(1.0, rel=1e-5)


def test_lr_schedules():
    p = cgrad.tensor([1.0], requires_grad=True)
    opt = cgrad.optim.SGD([p], lr=1.0)
    s = cgrad.optim.lr_scheduler.StepLR(opt, step_size=2, gamma=0.5)
    lrs = []
    for _ in range(5):
        s.step()
        lrs.append(opt.lr)
    assert lrs == [1.0, 0.5, 0.5, 0.25, 0.25]
    opt.lr = 1.0
    c = cgrad.optim.CosineAnnealingLR(opt, T_max=4, eta_min=0.0)
    for _ in range(4):
        c.step()
    assert opt.lr == pytest.approx(0.0, abs=1e-12)
    opt.lr = 1.0
    r = cgrad.optim.ReduceLROnPlateau(opt, factor=0.5, patience=1)
    for metric in [1.0, 0.5, 0.5, 0.5, 0.5]:
        r.step(metric)
    assert opt.lr == 0.5


# ---------------------------------------------------------------- PyTorch equivalence of layers

@needs_torch
def test_pytorch_state_dict_loads_and_matches():
    tmodel = torch.nn.Sequential(torch.nn.Linear(5, 7), torch.nn.ReLU(), torch.nn.Linear(7, 3))
    model = nn.MLP([5, 7, 3])
    model.load_state_dict(tmodel.state_dict())
    x = np.random.default_rng(0).normal(size=(4, 5)).astype(np.float32)
    np.testing.assert_allclose(model(cgrad.tensor(x)).numpy(), tmodel(torch.from_numpy(x)).detach().numpy(),
                               rtol=1e-5, atol=1e-6)


def test_a_tied_weight_is_one_parameter_but_in_the_state_dict_under_each_name():
    """As torch: parameters() lists it once (the optimizer updates it once), state_dict()
    under both modules' names, so a torch state_dict of a weight-tied model loads."""
    tied = nn.Sequential(nn.Linear(4, 4, bias=False), nn.Linear(4, 4, bias=False))
    tied[1].weight = tied[0].weight
    assert len(tied.parameters()) == 1 and [k for k, _ in tied.named_parameters()] == ["0.weight"]
    assert list(tied.state_dict()) == ["0.weight", "1.weight"]
    assert [k for k, _ in tied.named_parameters(remove_duplicate=False)] == ["0.weight", "1.weight"]
    w = np.arange(16, dtype=np.float32).reshape(4, 4)
    tied.load_state_dict({"0.weight": w, "1.weight": w})
    np.testing.assert_array_equal(tied[1].weight.numpy(), w)
