"""The benchmark harness's protocol (benchmarks/_harness.py, _steps.py, networks.py, run.py):
every framework's maker returns (step, sync), step() leaves its loss unread, sync reads it
as a float, and the timing loop reads it once per repeat. Speed is never checked here."""
import importlib.util
import os
import sys

import numpy as np
import pytest

from conftest import run_python

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "benchmarks"))
import _harness  # noqa: E402
import run  # noqa: E402
from networks import NETWORKS, init_weights, make_data  # noqa: E402

TINY = NETWORKS[0]  # 2-16-16-1 tanh MSE b32
# the type of the unread loss each framework's step returns
UNREAD = {"cgrad": "cgrad.Tensor", "cgrad-replay": "cgrad.Tensor", "cgrad@1": "cgrad.Tensor",
          "numpy": "float", "torch": "torch.Tensor", "jax": "jax.Array"}


def first_loss_float64(sizes, act, X, y, weights) -> float:
    """The loss at the initial weights, in float64 numpy: what every first step returns."""
    h = X.astype(np.float64)
    for i, (w, b) in enumerate(weights):
        h = h @ w.T.astype(np.float64) + b
        if i < len(weights) - 1:
            h = np.tanh(h) if act == "tanh" else np.maximum(h, 0)
    return float(np.mean((h - y) ** 2))


def test_measure_steps_reads_the_loss_once_at_the_end_of_each_repeat():
    calls = {"step": 0, "sync": []}

    def step():
        calls["step"] += 1
        return calls["step"]

    def sync(loss):
        calls["sync"].append(loss)
        return float(loss)

    samples, last = _harness.measure_steps({"fake": (step, sync)}, number=7, repeat=4)
    assert calls["step"] == 28
    assert calls["sync"] == [7, 14, 21, 28]  # the last step of each repeat, once
    assert last == {"fake": 28.0}
    assert len(samples["fake"]) == 4 and all(s >= 0 for s in samples["fake"])


def check_maker(key: str) -> None:
    """The maker of run.FRAMEWORKS[key] gives (step, sync): step() returns the loss unread
    (of the framework's own type), sync reads it as a float: the float64 loss at the
    initial weights on the first step, lower after 20 more."""
    name, sizes, act, loss, batch = TINY
    X, y = make_data(sizes, loss, batch)
    weights = init_weights(sizes)
    step, sync = run.FRAMEWORKS[key](sizes, act, loss, X, y, weights)
    unread = step()
    module, _, cls = UNREAD[key].partition(".")
    kind = float if module == "float" else getattr(__import__(module), cls)
    assert isinstance(unread, kind), type(unread)
    first = sync(unread)
    assert type(first) is float
    assert first == pytest.approx(first_loss_float64(sizes, act, X, y, weights), rel=1e-5)
    for _ in range(20):
        later = step()
    assert sync(later) < first  # the steps train


@pytest.mark.parametrize("key", list(run.FRAMEWORKS))
def test_each_mlp_maker_returns_an_unread_loss_and_a_sync_that_reads_it(key):
    module = UNREAD[key].split(".")[0]
    if module not in ("float", "cgrad") and importlib.util.find_spec(module) is None:
        pytest.skip(f"{module} is not installed")
    if module == "jax":  # in its own interpreter: JAX's threads would make later tests' fork unsafe
        run_python(f"from test_benchmarks import check_maker; check_maker({key!r})")
    else:
        check_maker(key)


def test_an_mlp_row_checks_the_losses_and_prints_the_limits_and_targets():
    makers = {k: run.FRAMEWORKS[k] for k in ("cgrad", "cgrad-replay", "numpy")}
    row = run.measure_network(TINY, makers, quick=True)
    assert set(row["frameworks"]) == set(makers) and "torch_compile" not in row
    forward = 2 * 32 * (2 * 16 + 16 * 16 + 16 * 1)  # x W^T of each layer, batch 32
    assert row["gemm_flops"] == forward + forward + (forward - 2 * 32 * 2 * 16)  # + dW of each, dX but the first's
    assert row["gemm_floor_us"] > 0
    for f in row["frameworks"].values():
        assert f["median_us"] > 0 and f["loss_down"]
    lines = run._steps.agreement(row, 5)
    assert all("(agree," in line for line in lines), lines
    res = run.merge([{"threads": 1, "frameworks": list(makers), "sgemm_gflops": 50.0, "fma_peak_gflops": 100.0,
                      "rows": [row]}])
    rows, columns, notes = run.mlp_table(res)
    assert rows[0]["FMA-peak us"] == f"{row['gemm_flops'] / 100.0 / 1e3:.2f}"
    assert rows[0]["issue 17 target"].startswith("replay <= 4 us: ")
    assert "fastest peer" not in columns  # no peer ran
    assert {"limit/cgrad", "limit/replay", "GEMM floor us", "cgrad/numpy"} <= set(columns)
