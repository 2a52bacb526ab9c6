"""F.cross_entropy / F.nll_loss with PyTorch's options (class weights, ignore_index, label
smoothing, (N, C, d...) and unbatched input, class-probability targets) and their layers:
against naive loops written here (always), PyTorch (when installed), and replay: a compiled
training step of a small sequence model equals eager steps bit for bit."""
import math

import numpy as np
import pytest

import cgrad
from cgrad import nn
from cgrad.nn import functional as F
from train_steps import assert_same, train_step

DTYPES = [np.float32, np.float64]


# ---- naive reference: one row and one class at a time ----
def _naive(x, t, w=None, ignore_index=-100, eps=0.0, reduction="mean", nll=False):
    """Loss and d(loss)/dx of rows x [R, C] against targets t [R], by PyTorch's definition."""
    rows, c = x.shape
    w = [1.0] * c if w is None else list(w)
    losses, grad, denom = [], np.zeros((rows, c)), 0.0
    for i in range(rows):
        ti = int(t[i])
        if ti == ignore_index:
            losses.append(0.0)
            continue
        if nll:
            lp = [float(v) for v in x[i]]
            p = [0.0] * c
        else:
            m = max(float(v) for v in x[i])
            lse = m + math.log(sum(math.exp(float(v) - m) for v in x[i]))
            lp = [float(v) - lse for v in x[i]]
            p = [math.exp(v) for v in lp]
        loss = (1 - eps) * w[ti] * -lp[ti] + eps / c * sum(-w[j] * lp[j] for j in range(c))
        losses.append(loss)
        denom += w[ti]
        for j in range(c):  # d/dx_j of -lp_k is p_j - [j == k]
            grad[i, j] = (1 - eps) * w[ti] * (p[j] - (j == ti)) + eps / c * sum(
                w[k] * (p[j] - (j == k)) for k in range(c))
    if reduction == "none":
        return np.array(losses), grad
    total = sum(losses)
    return (total / denom, grad / denom) if reduction == "mean" else (total, grad)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("options", [{}, {"ignore_index": 2}, {"label_smoothing": 0.3}, {"weight": True},
                                     {"weight": True, "ignore_index": -100, "label_smoothing": 0.15}], ids=str)
def test_cross_entropy_and_nll_loss_match_the_naive_reference(options, reduction, dtype, rng):
    x = (rng.standard_normal((7, 5)) * 2).astype(dtype)
    t = rng.integers(0, 5, 7)
    t[:2] = [2, -100]  # one target ignored by each ignore_index tried
    if options.get("ignore_index", -100) != -100:
        t[1] = 0
    w = rng.uniform(0.2, 2.0, 5)
    kw = dict(options)
    if kw.pop("weight", False):
        kw["weight"] = cgrad.tensor(w, dtype=dtype)
    weights = w if "weight" in kw else None
    ignore = kw.get("ignore_index", -100)
    tol = dict(rtol=2e-5, atol=2e-6) if dtype == np.float32 else dict(rtol=1e-11, atol=1e-12)
    for fn, nll in ((F.cross_entropy, False), (F.nll_loss, True)):
        if nll:
            kw.pop("label_smoothing", None)
        cx = cgrad.tensor(x, requires_grad=True)
        loss = fn(cx, cgrad.tensor(t), reduction=reduction, **kw)
        g = rng.standard_normal(loss.shape) if reduction == "none" else np.array(1.0)
        loss.backward(g.astype(dtype))
        ref, ref_grad = _naive(x, t, weights, ignore, kw.get("label_smoothing", 0.0), reduction, nll)
        np.testing.assert_allclose(loss.numpy(), ref, **tol)
        np.testing.assert_allclose(cx.grad.numpy(), ref_grad * (g[:, None] if reduction == "none" else 1), **tol)


def test_spatial_and_unbatched_inputs_are_rows_with_the_class_axis_moved_last(rng):
    x = rng.standard_normal((2, 4, 3, 2))  # (N, C, d1, d2)
    t = rng.integers(0, 4, (2, 3, 2))
    t[0, 0, 0] = -100
    rows = np.moveaxis(x, 1, -1).reshape(-1, 4)
    for reduction in ("mean", "none"):
        cx = cgrad.tensor(x, requires_grad=True)
        loss = F.cross_entropy(cx, t, reduction=reduction, label_smoothing=0.1)
        ref, ref_grad = _naive(rows, t.reshape(-1), eps=0.1, reduction=reduction)
        assert loss.shape == (() if reduction == "mean" else (2, 3, 2))
        np.testing.assert_allclose(loss.numpy(), np.reshape(ref, loss.shape), rtol=1e-12)
        loss.backward(np.ones(loss.shape))
        np.testing.assert_allclose(cx.grad.numpy(), np.moveaxis(ref_grad.reshape(2, 3, 2, 4), -1, 1), rtol=1e-10,
                                   atol=1e-14)
    v = cgrad.tensor(rng.standard_normal(5), requires_grad=True)
    loss = F.cross_entropy(v, 3, reduction="none")
    assert loss.shape == ()
    np.testing.assert_allclose(loss.numpy(), _naive(v.numpy()[None], [3], reduction="none")[0][0], rtol=1e-12)


def test_class_probability_targets(rng):
    x = rng.standard_normal((4, 3))
    p = rng.dirichlet(np.ones(3), 4)
    w = np.array([0.5, 1.0, 2.0])
    cx = cgrad.tensor(x, requires_grad=True)
    loss = F.cross_entropy(cx, p, cgrad.tensor(w, dtype=cgrad.float64), label_smoothing=0.2)
    lp = x - np.log(np.exp(x).sum(1, keepdims=True))
    q = p * 0.8 + 0.2 / 3
    expected = np.mean([-sum(w[j] * q[i, j] * lp[i, j] for j in range(3)) for i in range(4)])
    np.testing.assert_allclose(loss.item(), expected, rtol=1e-12)
    assert cgrad.gradcheck(lambda x: F.cross_entropy(x, p, reduction="sum"), [cx])


def test_all_targets_ignored_gives_nan_as_pytorch():
    loss = F.cross_entropy(cgrad.tensor(np.zeros((2, 3))), np.array([-100, -100]))
    assert np.isnan(loss.item())
    assert F.cross_entropy(cgrad.tensor(np.zeros((2, 3))), np.array([-100, -100]), reduction="sum").item() == 0


def test_loss_layers_options_state_dict_and_legacy_reduction(rng):
    w = cgrad.tensor([1.0, 2.0, 0.5])
    ce = nn.CrossEntropyLoss(weight=w, ignore_index=0, label_smoothing=0.1)
    assert list(ce.state_dict()) == ["weight"] and ce.ignore_index == 0 and ce.label_smoothing == 0.1
    x, t = cgrad.tensor(rng.standard_normal((5, 3)).astype(np.float32)), np.array([0, 1, 2, 2, 1])
    assert ce(x, t).item() == F.cross_entropy(x, t, w, ignore_index=0, label_smoothing=0.1).item()
    nll = nn.NLLLoss(weight=w, reduction="sum")
    assert nll(x, t).item() == F.nll_loss(x, t, w, reduction="sum").item()
    assert nn.CrossEntropyLoss(reduce=False).reduction == "none"
    assert nn.NLLLoss(size_average=False).reduction == "sum"
    assert F.cross_entropy(x, t, reduce=False).shape == (5,)
    assert list(nn.CrossEntropyLoss().state_dict()) == []


def test_the_trainer_still_names_and_uses_the_losses(rng):
    from cgrad.losses import resolve_loss
    assert resolve_loss(nn.CrossEntropyLoss())[1] == "cross_entropy"
    assert resolve_loss(nn.NLLLoss())[1] == "nll_loss"
    assert resolve_loss("nll_loss")[0] is F.nll_loss


def test_errors_name_the_op_and_the_shapes():
    x = cgrad.tensor(np.zeros((3, 4), np.float32))
    with pytest.raises(IndexError, match=r"cross_entropy: target 4 at position 2 is not a class index in \[0, 4\) "
                                         r"\(input of shape \(3, 4\)\)"):
        F.cross_entropy(x, [0, 1, 4])
    with pytest.raises(IndexError, match=r"nll_loss: target -1 at position 0"):
        F.nll_loss(x, [-1, 1, 2])
    with pytest.raises(ValueError, match=r"cross_entropy: input of shape \(3, 4\) needs targets of shape \(3,\), "
                                         r"got \(2,\)"):
        F.cross_entropy(x, [0, 1])
    with pytest.raises(ValueError, match=r"nll_loss: input of shape \(2, 4, 5\) needs targets of shape \(2, 5\)"):
        F.nll_loss(cgrad.tensor(np.zeros((2, 4, 5))), np.zeros((2, 4), np.int64))
    with pytest.raises(ValueError, match=r"cross_entropy: weight of shape \(3,\) does not fit the input of shape "
                                         r"\(3, 4\) \(expected one weight per class: \(4,\)\)"):
        F.cross_entropy(x, [0, 1, 2], cgrad.ones(3))
    with pytest.raises(ValueError, match=r"cross_entropy: label_smoothing must be between 0.0 and 1.0, got 1.5"):
        F.cross_entropy(x, [0, 1, 2], label_smoothing=1.5)
    with pytest.raises(ValueError, match=r"cross_entropy: reduction must be 'mean', 'sum' or 'none', not 'avg'"):
        F.cross_entropy(x, [0, 1, 2], reduction="avg")
    with pytest.raises(TypeError, match=r"cross_entropy: targets must be integer class indices"):
        F.cross_entropy(x, [0.5, 1.0, 2.0])
    with pytest.raises(ValueError, match=r"cross_entropy: expected an input of shape \(C,\)"):
        F.cross_entropy(cgrad.tensor(1.0), 0)


# ---- a small sequence model: Embedding + LayerNorm + Linear, cross_entropy over (B, V, T) ----
class _TinyLM(nn.Module):
    def __init__(self, vocab=11, dim=8):
        super().__init__()
        self.emb = nn.Embedding(vocab, dim, padding_idx=0)
        self.ln = nn.LayerNorm(dim)
        self.head = nn.Linear(dim, vocab)

    def forward(self, ids):
        return self.head(self.ln(self.emb(ids)).tanh())  # (B, T, V)


def _lm_loss(logits, targets):
    b, t, v = logits.shape
    return F.cross_entropy(logits.reshape(b * t, v), targets.reshape(-1), ignore_index=-100, label_smoothing=0.1)


def _batches(rng, steps, b=4, t=6, vocab=11):
    out = []
    for _ in range(steps):
        ids = rng.integers(0, vocab, (b, t))
        tgt = np.roll(ids, -1, axis=1)
        tgt[:, -1] = -100  # the last position has no next token
        tgt[rng.random((b, t)) < 0.15] = -100
        out.append((ids, tgt))
    return out


@pytest.mark.parametrize("dtype", DTYPES)
def test_a_replayed_training_step_equals_eager_bit_for_bit(dtype, rng):
    def make():
        cgrad.manual_seed(3)
        return _TinyLM().to(dtype)
    models = [make(), make()]
    compiled, eager = (train_step(m, cgrad.optim.Adam(m.parameters(), lr=0.01), _lm_loss) for m in models)
    compiled = cgrad.compile(compiled)
    for ids, tgt in _batches(rng, 6):  # different ignored positions each step: the replay re-reads them
        assert np.array_equal(compiled(ids, tgt).numpy(), eager(cgrad.tensor(ids), cgrad.tensor(tgt)).numpy())
    assert compiled.recordings == 1
    assert_same(models[0], models[1])
    bad = _batches(rng, 1)[0]
    bad[1][0, 0] = 11
    with pytest.raises(IndexError, match=r"compile: cross_entropy: target 11 at position 0 is out of range"):
        compiled(*bad)
    nll = cgrad.compile(lambda x, t: F.nll_loss(x, t, ignore_index=-1))
    x = rng.standard_normal((3, 4)).astype(np.float32)
    assert np.array_equal(nll(x, np.array([0, -1, 3])).numpy(), F.nll_loss(cgrad.tensor(x), [0, -1, 3],
                                                                             ignore_index=-1).numpy())
    assert nll(x, np.array([-1, -1, 2])).item() == -x[2, 2]  # the replay re-read the targets
    with pytest.raises(IndexError, match=r"compile: nll_loss: target 4 at position 1 is out of range"):
        nll(x, np.array([0, 4, 3]))


def test_a_20_step_trajectory_matches_pytorch(rng):
    torch = pytest.importorskip("torch")
    torch.manual_seed(0)
    theirs = torch.nn.ModuleDict({"emb": torch.nn.Embedding(11, 8, padding_idx=0), "ln": torch.nn.LayerNorm(8),
                                  "head": torch.nn.Linear(8, 11)})
    with torch.no_grad():
        theirs["ln"].weight.uniform_(0.5, 1.5)
        theirs["ln"].bias.uniform_(-0.5, 0.5)
    ours = _TinyLM()
    ours.load_state_dict({k: cgrad.tensor(v.detach().numpy()) for k, v in theirs.state_dict().items()})
    opt_o = cgrad.optim.SGD(ours.parameters(), lr=0.5, momentum=0.9)
    opt_t = torch.optim.SGD(theirs.parameters(), lr=0.5, momentum=0.9)
    loss_t_fn = torch.nn.CrossEntropyLoss(ignore_index=-100, label_smoothing=0.1)
    for ids, tgt in _batches(rng, 20):
        opt_o.zero_grad()
        lo = _lm_loss(ours(cgrad.tensor(ids)), cgrad.tensor(tgt))
        lo.backward()
        opt_o.step()
        opt_t.zero_grad()
        logits = theirs["head"](theirs["ln"](theirs["emb"](torch.tensor(ids))).tanh())
        lt = loss_t_fn(logits.reshape(-1, 11), torch.tensor(tgt).reshape(-1))
        lt.backward()
        opt_t.step()
        np.testing.assert_allclose(lo.item(), lt.item(), rtol=1e-5)
    for k, v in theirs.state_dict().items():
        np.testing.assert_allclose(ours.state_dict()[k].numpy(), v.numpy(), rtol=1e-5, atol=1e-5, err_msg=k)
    assert np.array_equal(ours.emb.weight.numpy()[0], np.zeros(8))


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_agrees_with_pytorch_over_shapes_and_options(reduction, rng):
    torch = pytest.importorskip("torch")
    w = rng.uniform(0.5, 2.0, 5)
    for shape, tshape in [((6, 5), (6,)), ((3, 5, 4), (3, 4)), ((2, 5, 2, 3), (2, 2, 3)), ((5,), ())]:
        for opts in ({}, {"ignore_index": 1, "label_smoothing": 0.2}, {"weight": w, "ignore_index": 4},
                     {"weight": w, "label_smoothing": 0.05}):
            x = rng.standard_normal(shape)
            t = rng.integers(0, 5, tshape)
            for name in ("cross_entropy", "nll_loss"):
                o = dict(opts)
                if name == "nll_loss":
                    o.pop("label_smoothing", None)
                ow = {**o, "weight": cgrad.tensor(o["weight"], dtype=cgrad.float64)} if "weight" in o else o
                tw = {**o, "weight": torch.tensor(o["weight"])} if "weight" in o else o
                cx, tx = cgrad.tensor(x, requires_grad=True), torch.tensor(x, requires_grad=True)
                a = getattr(F, name)(cx, t, reduction=reduction, **ow)
                b = getattr(torch.nn.functional, name)(tx, torch.tensor(t), reduction=reduction, **tw)
                g = rng.standard_normal(b.shape)
                a.backward(g), b.backward(torch.tensor(g))
                np.testing.assert_allclose(a.numpy(), b.detach().numpy(), rtol=1e-10, atol=1e-12)
                np.testing.assert_allclose(cx.grad.numpy(), tx.grad.numpy(), rtol=1e-10, atol=1e-12)
