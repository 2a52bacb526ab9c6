"""Gradient health on networks whose answers are known: all dead, none dead, half dead,
saturated; the update ratio; the Trainer callback."""
import numpy as np
import pytest

import cgrad
from cgrad import data, nn
from cgrad.diagnostics import GradientHealth, health

X, Y = data.moons(n=128, seed=0)


def _net(bias0):
    cgrad.manual_seed(0)
    m = nn.MLP([2, 8, 2])
    with cgrad.no_grad():
        m[0].weight.fill_(0.0)
        m[0].bias.copy_(np.asarray(bias0, dtype=np.float32))
    return m


def _row(report, label):
    return next(r for r in report.layers if r["layer"].startswith(label))


def test_bias_minus_10_kills_every_unit():
    r = health(_net([-10.0] * 8), X, Y)
    assert _row(r, "1: ReLU")["dead_fraction"] == 1.0
    assert any("100% of ReLU units are dead" in w for w in r.warnings)
    assert _row(r, "0: Linear")["grad_norm"] == 0.0


def test_positive_bias_kills_none_and_half_kills_half():
    assert _row(health(_net([10.0] * 8), X, Y), "1: ReLU")["dead_fraction"] == 0.0
    half = health(_net([10.0] * 4 + [-10.0] * 4), X, Y)
    assert _row(half, "1: ReLU")["dead_fraction"] == 0.5
    assert _row(half, "1: ReLU")["local_grad"] == pytest.approx(0.5)


def test_saturated_tanh_and_sigmoid():
    for act in ("tanh", "sigmoid"):
        cgrad.manual_seed(0)
        m = nn.MLP([2, 4, 2], activation=act)
        with cgrad.no_grad():
            m[0].weight.fill_(0.0)
            m[0].bias.copy_(np.array([20.0, -20.0, 0.0, 0.0], dtype=np.float32))
        r = _row(health(m, X, Y), "1: ")
        assert r["saturated_fraction"] == 0.5


def test_update_ratio_measured_and_step_undone():
    m = _net([0.5] * 8)
    opt = cgrad.optim.SGD(m.parameters(), lr=0.1)
    before = [p.numpy().copy() for p in m.parameters()]
    r = health(m, X, Y, optimizer=opt)
    assert _row(r, "2: Linear")["update_ratio"] > 0
    for p, b in zip(m.parameters(), before):
        np.testing.assert_array_equal(p.numpy(), b)
    assert opt.step_count == 0


def test_trainer_callback_logs_per_epoch(capsys):
    m = _net([-10.0] * 8)
    cb = GradientHealth(X, Y)
    trainer = cgrad.Trainer(m, "cross_entropy", cgrad.optim.SGD(m.parameters(), lr=0.1))
    h = trainer.fit(X, Y, epochs=2, callbacks=[cb], verbose=0)
    assert len(cb.reports) == 2 and "health" in h.history
    assert "ReLU units are dead" in capsys.readouterr().out


# ---- sequence layers: attention entropy per head ----

def _entropy_reference(q, k, mask=None, causal=False):
    """Per head (the axis before L for 4-D queries; one head otherwise): the mean over batch
    and rows of -sum p log p for p = softmax(q k^T / sqrt(E) + mask), in float64 numpy,
    and the uniform distribution's over the same allowed keys."""
    scores = q @ np.swapaxes(k, -1, -2) / np.sqrt(q.shape[-1])
    allowed = np.ones(scores.shape, bool) & (np.tril(np.ones(scores.shape[-2:], bool)) if causal else True)
    if mask is not None:
        allowed = allowed & (mask if mask.dtype == bool else np.isfinite(mask))
        scores = scores + (0 if mask.dtype == bool else np.where(np.isfinite(mask), mask, 0))
    scores = np.where(allowed, scores, -np.inf)
    p = np.exp(scores - scores.max(-1, keepdims=True))
    p /= p.sum(-1, keepdims=True)
    ent = -np.sum(np.where(p > 0, p * np.log(np.where(p > 0, p, 1)), 0), -1)
    uni = np.log(allowed.sum(-1)).astype(np.float64)
    axes = tuple(range(ent.ndim - 2)) + (ent.ndim - 1,) if q.ndim >= 4 else None
    return np.mean(ent, axis=axes), np.mean(uni, axis=axes)


@pytest.mark.parametrize("case", ["plain", "causal", "bool_mask", "float_mask", "3d", "cross"])
def test_profile_attention_entropy_per_head_matches_a_numpy_reference(case):
    """The fused op fills the entropy per (batch, head) block; the watch averages it per
    head: against softmax rows computed in numpy."""
    rng = np.random.default_rng(0)
    shape_q, shape_k = {"3d": ((5, 6, 8), (5, 6, 8)), "cross": ((2, 3, 4, 8), (2, 3, 7, 8))}.get(
        case, ((2, 3, 6, 8), (2, 3, 6, 8)))
    q = rng.standard_normal(shape_q) * 2
    k = rng.standard_normal(shape_k) * 2
    v = rng.standard_normal(shape_k)
    mask = {"bool_mask": rng.random((shape_q[-2], shape_k[-2])) < 0.7,
            "float_mask": np.where(rng.random((shape_q[-2], shape_k[-2])) < 0.7, rng.standard_normal(
                (shape_q[-2], shape_k[-2])), -np.inf)}.get(case)
    if mask is not None:
        mask[:, 0] = True if mask.dtype == bool else 0.5  # no fully masked row
    with cgrad.profile() as prof:
        nn.functional.scaled_dot_product_attention(
            cgrad.tensor(q), cgrad.tensor(k), cgrad.tensor(v), is_causal=case == "causal",
            attn_mask=None if mask is None else cgrad.tensor(mask))
    (a,) = prof._watch.attention()
    want, want_uniform = _entropy_reference(q, k, mask, causal=case == "causal")
    np.testing.assert_allclose(a["entropy"], np.atleast_1d(want), rtol=1e-10)
    np.testing.assert_allclose(a["uniform"], np.atleast_1d(want_uniform), rtol=1e-12)
    assert a["calls"] == 1 and len(a["entropy"]) == (shape_q[1] if len(shape_q) == 4 else 1)


def test_attention_entropy_reference_against_torch_weights():
    """The reference's softmax rows are torch's."""
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(1)
    q, k = rng.standard_normal((2, 4, 7, 8)), rng.standard_normal((2, 4, 9, 8))
    mask = rng.standard_normal((7, 9))
    scores = torch.from_numpy(q) @ torch.from_numpy(k).transpose(-1, -2) / np.sqrt(8) + torch.from_numpy(mask)
    p = torch.softmax(scores, -1).numpy()
    np.testing.assert_allclose(_entropy_reference(q, k, mask)[0], (-(p * np.log(p)).sum(-1)).mean(axis=(0, 2)),
                               rtol=1e-12)


# ---- sequence layers in the health report and the profiler ----

def test_health_shows_the_gradient_vanishing_through_a_tanh_rnn():
    """A tanh RNN with small recurrent weights passes on only a fraction of the gradient per
    step, so |dL/dh_t| for a loss on the last output falls geometrically towards t = 0: the
    report's per-step norms show it and warn; a GRU of the same size keeps its gradient."""
    rng = np.random.default_rng(0)
    X, y = rng.standard_normal((16, 30, 3)).astype(np.float32), rng.integers(0, 2, 16)

    class LastStep(nn.Module):
        def __init__(self, rnn):
            super().__init__()
            self.rnn, self.head = rnn, nn.Linear(8, 2)

        def forward(self, x):
            return self.head(self.rnn(x)[0][:, -1])

    cgrad.manual_seed(0)
    rnn = nn.RNN(3, 8, batch_first=True)
    with cgrad.no_grad():
        rnn.weight_hh_l0.mul_(0.2)
    report = health(LastStep(rnn), X, y)
    (rec,) = report.recurrent
    norms = rec["step_grad_norms"]
    assert "rnn: RNN(3, 8, batch_first=True)" in rec["layer"] and norms.shape == (1, 30)
    assert norms[0, -1] > 0 and norms[0, 0] < 1e-6 * norms[0, -1]
    assert np.all(np.diff(norms[0]) > 0)  # every step back loses some
    assert any("the gradient vanishes through time" in w for w in report.warnings)
    assert "|dL/dh_t| by time step" in str(report)


def test_health_and_profile_report_the_attention_entropy_per_head_of_a_gpt():
    """nanoGPT's model calls F.scaled_dot_product_attention itself (no MultiheadAttention):
    each block's heads are reported, labelled by layer. Zeroed query weights make every
    score equal, so each head of block 1 attends uniformly: entropy = the mean of
    log(i + 1) over the causal rows. Huge ones make block 0's heads pick one key per query:
    entropy near 0, and the report says they collapsed."""
    from cgrad.models import char_gpt
    cgrad.manual_seed(0)
    gpt = char_gpt(cgrad, 20, block_size=8, n_layer=2, n_head=2, n_embd=16)
    with cgrad.no_grad():
        gpt.transformer.h[1].attn.c_attn.weight[:16] = 0.0  # block 1's queries (a slice is a copy: set it)
        w0 = gpt.transformer.h[0].attn.c_attn.weight
        w0[:16] = w0[:16] * 1e4
    X = np.random.default_rng(0).integers(0, 20, (4, 8))
    report = health(gpt, X, X, "cross_entropy")
    assert [a["layer"].split(": ")[0] for a in report.attention] == ["GPT()/0", "GPT()/1"]
    np.testing.assert_allclose(report.attention[1]["entropy"], np.mean(np.log(np.arange(1, 9))), rtol=1e-6)
    assert report.attention[0]["entropy"].max() < 0.05
    collapsed = [w for w in report.warnings if "has collapsed" in w]
    assert len(collapsed) == 2 and all(w.startswith("GPT()/0") for w in collapsed), report.warnings
    with cgrad.profile() as prof:
        _, loss = gpt(cgrad.from_numpy(X), cgrad.from_numpy(X))
        loss.backward()
    table = prof.sequence_table()
    assert "attention entropy per head" in table and table.count("has collapsed") == 2
