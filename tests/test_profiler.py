"""The profiler: attribution that adds up, the lecture's names for a linear layer's two
GEMMs, a Chrome trace that parses and nests, and nothing recorded when it is off."""
import json

import numpy as np
import pytest

import cgrad
from cgrad import _C, nn


def _step(model, x, y):
    loss = nn.functional.cross_entropy(model(x), y)
    loss.backward()
    return loss


@pytest.fixture
def profiled():
    cgrad.manual_seed(0)
    model = nn.MLP([64, 128, 64, 10])
    x = cgrad.tensor(np.random.default_rng(0).random((32, 64)).astype(np.float32))
    y = np.random.default_rng(1).integers(0, 10, 32)
    with cgrad.profile() as prof:
        for _ in range(3):
            model.zero_grad()
            _step(model, x, y)
    return prof


def test_layer_rows_add_up_to_the_measured_backward_time(profiled):
    rows = profiled.rows(by="layer", phase="backward")
    total = profiled.total_ns("backward") / 1e6
    attributed = sum(r["total_ms"] for r in rows)
    assert total > 0
    assert abs(attributed - total) <= 0.10 * total
    assert profiled.unattributed_ms() == pytest.approx(total - attributed, abs=1e-6)
    names = [r["name"] for r in rows]
    assert "MLP()/0: Linear(64→128, bias=True)" in names and "MLP()/1: ReLU()" in names
    assert all(r["calls"] == 3 for r in rows if "Linear" in r["name"])


def test_linear_backward_split_into_dw_and_dx(profiled):
    rows = {r["name"]: r for r in profiled.rows(by="op", phase="backward")}
    parts = rows["linear"]["parts"]
    assert set(parts) == {"dW = X^T dZ", "dX = dZ W^T"}
    assert rows["linear"]["gflops_per_s"] > 0
    text = profiled.table(by="layer")
    assert "dW = X^T dZ" in text and "not inside any rule" in text
    # the first layer's input needs no gradient: only its dW GEMM runs
    first = {r["name"]: r for r in profiled.rows(by="layer")}["MLP()/0: Linear(64→128, bias=True)"]
    assert set(first["parts"]) == {"dW = X^T dZ"}


def test_forward_rows_and_summary(profiled):
    ops = {r["name"]: r["calls"] for r in profiled.rows(by="op", phase="forward")}
    assert ops["linear"] == 9 and ops["relu"] == 6 and ops["cross_entropy"] == 3
    assert "backward by layer" in profiled.summary()


def test_chrome_trace_parses_and_nests(profiled, tmp_path):
    path = tmp_path / "trace.json"
    profiled.export_chrome_trace(path)
    events = json.loads(path.read_text())["traceEvents"]
    slices = [e for e in events if e["ph"] == "X"]
    assert {e["tid"] for e in slices} == {1, 2}
    layers = [e for e in slices if e["cat"] == "layer"]
    assert layers
    for tid in (1, 2):  # on each track, any two slices are nested or disjoint
        track = sorted((e for e in slices if e["tid"] == tid), key=lambda e: (e["ts"], -e["dur"]))
        for a, b in zip(track, track[1:]):
            a_end, b_end = a["ts"] + a["dur"], b["ts"] + b["dur"]
            assert b["ts"] >= a_end - 1e-3 or b_end <= a_end + 1e-3


def test_user_scopes_and_a_profile_sees_only_its_own_ops():
    x = cgrad.tensor([1.0, 2.0], requires_grad=True)
    with cgrad.profiler.record("outside"):  # no profile active: a no-op
        (x * 2.0).sum().backward()
    with cgrad.profile() as prof:
        with cgrad.profiler.record("my block"):
            y = (x * 3.0).exp().sum()
        y.backward()
    for phase in ("forward", "backward"):
        assert {r["name"]: r["calls"] for r in prof.rows(by="op", phase=phase)} == \
            {"mul_scalar": 1, "exp": 1, "sum": 1}
    layers = {r["name"] for r in prof.rows(by="layer", phase="forward")}
    assert "my block" in layers and not any("outside" in name for name in layers)
    with pytest.raises(RuntimeError, match="already active"):
        with cgrad.profile():
            with cgrad.profile():
                pass


def test_nothing_recorded_when_off():
    """Between the core's profile_stop and profile_take the buffer is kept: ops run then
    (forward and backward) must add no event to it."""
    x = cgrad.tensor([1.0, 2.0], requires_grad=True)
    _C.profile_start(1000)
    try:
        (x * 3.0).exp()
    finally:
        _C.profile_stop()
    (x * 2.0).sin().sum().backward()
    events, dropped = _C.profile_take()
    assert dropped == 0
    assert sorted(_C.op_names()[op] for op in events["op"]) == ["exp", "mul_scalar"]
    assert set(events["phase"]) == {0}


def test_options_shapes_memory_and_summary():
    cgrad.manual_seed(0)
    model = nn.MLP([8, 16, 4])
    opt = cgrad.optim.SGD(model.parameters(), lr=0.1)
    x = cgrad.randn(5, 8)
    with cgrad.profile(record_shapes=True, profile_memory=True) as prof:
        for _ in range(2):
            opt.zero_grad()
            _step(model, x, np.array([0, 1, 2, 3, 0]))
            opt.step()
    nodes = prof.rows(by="node", phase="forward")
    assert {r["shape"] for r in nodes if r["name"].startswith("linear")} == {(5, 16), (5, 4)}
    fwd = {r["name"]: r for r in prof.rows(by="op", phase="forward")}
    assert fwd["linear"]["bytes"] >= 2 * 5 * (16 + 4) * 4  # at least the outputs' data
    assert "alloc MB" in prof.table(by="op") and "shape" in prof.table(by="node", phase="forward")
    text = prof.summary()
    assert "optimizer" in text and "Python/other" in text and "(2 steps" in text
