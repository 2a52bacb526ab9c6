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
