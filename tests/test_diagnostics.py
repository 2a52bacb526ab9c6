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


# ---- sequence layers: attention entropy per head (profiler.attention_entropy) ----

def test_attention_entropy_of_known_distributions():
    from cgrad.profiler import attention_entropy
    rng = np.random.default_rng(0)
    k = rng.standard_normal((2, 3, 5, 4))
    # zero queries: every score equal, so uniform over the 5 keys: log 5 in every head
    ent, uni = attention_entropy(np.zeros((2, 3, 6, 4)), k)
    np.testing.assert_allclose(ent, np.log(5), rtol=1e-12)
    np.testing.assert_allclose(uni, np.log(5), rtol=1e-12)
    # causal, zero queries: row i is uniform over i + 1 keys, so the mean of log(i + 1)
    ent, uni = attention_entropy(np.zeros((1, 2, 5, 4)), k[:1, :2], is_causal=True)
    np.testing.assert_allclose(ent, np.mean(np.log(np.arange(1, 6))), rtol=1e-12)
    # a bool mask letting through two keys per row: log 2; a huge scale on one matching key: ~0
    mask = np.zeros((6, 5), bool)
    mask[:, 1:3] = True
    ent, _ = attention_entropy(np.zeros((1, 1, 6, 4)), k[:1, :1], attn_mask=mask)
    np.testing.assert_allclose(ent, np.log(2), rtol=1e-12)
    q = k[:1, :1, :1] * np.ones((1, 1, 5, 1))  # each query equals key 0
    ent, _ = attention_entropy(q, k[:1, :1], scale=1e3)
    assert ent[0] < 1e-6


def test_attention_entropy_matches_torch_weights():
    torch = pytest.importorskip("torch")
    from cgrad.profiler import attention_entropy
    rng = np.random.default_rng(1)
    q, k = rng.standard_normal((2, 4, 7, 8)), rng.standard_normal((2, 4, 9, 8))
    mask = rng.standard_normal((7, 9))
    scores = torch.from_numpy(q) @ torch.from_numpy(k).transpose(-1, -2) / np.sqrt(8) + torch.from_numpy(mask)
    p = torch.softmax(scores, -1).numpy()
    want = (-(p * np.log(p)).sum(-1)).mean(axis=(0, 2))
    ent, uni = attention_entropy(q, k, attn_mask=mask)
    np.testing.assert_allclose(ent, want, rtol=1e-10)
    np.testing.assert_allclose(uni, np.log(9), rtol=1e-12)


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
