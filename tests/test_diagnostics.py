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
