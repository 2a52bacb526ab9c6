"""Sweeps of cgrad fits on a real Dask LocalCluster (2 worker processes, 1 thread each),
bound to 127.0.0.1 with no dashboard: client.map of fits returning fitted models, joblib's
Dask backend driving GridSearchCV, and per-epoch metrics streamed to the client while the
fits run (cgrad.dask). The oracles are the same fits run in this process and
scikit-learn's own n_jobs=1 search. The cluster starts once for the module; every socket
this process opens must be a loopback one, and so must those of the cluster's processes."""
import ipaddress
import logging
import os
import socket
import time

import numpy as np
import pytest

import cgrad
import cgrad.dask
import cgrad.nn.functional as F
from conftest import run_python
from cgrad import nn, optim

N_ROWS = 400  # a slice of the digits: enough to learn, quick to fit


def _digits():
    X, y, X_test, y_test = cgrad.data.digits()
    return X[:N_ROWS], y[:N_ROWS], X_test, y_test


def _is_loopback(host) -> bool:
    host = host.strip("[]")
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


@pytest.fixture(scope="module")
def loopback_only():
    """While the module runs, a socket of this process (the client, the scheduler) that
    connects beyond loopback raises instead."""
    real_connect, real_connect_ex = socket.socket.connect, socket.socket.connect_ex

    def check(sock, address):
        if sock.family in (socket.AF_INET, socket.AF_INET6) and not _is_loopback(address[0]):
            raise AssertionError(f"test_dask: a connection to {address} beyond loopback")

    def connect(self, address):
        check(self, address)
        return real_connect(self, address)

    def connect_ex(self, address):
        check(self, address)
        return real_connect_ex(self, address)

    socket.socket.connect, socket.socket.connect_ex = connect, connect_ex  # type: ignore[method-assign]
    yield
    socket.socket.connect, socket.socket.connect_ex = real_connect, real_connect_ex  # type: ignore[method-assign]


@pytest.fixture(scope="module")
def client(loopback_only):
    distributed = pytest.importorskip("distributed")
    cluster = distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1",
                                       dashboard_address=None, silence_logs=logging.ERROR)
    client = distributed.Client(cluster)
    yield client
    client.close()
    cluster.close()


# ---------------------------------------------------------------- the fits run on the workers

class _Pace(cgrad.Callback):
    """Sleeps after each epoch, so that a fit lasts long enough for its first events to
    be seen in the client before it ends, however busy the machine."""

    def __init__(self, seconds):
        self.seconds = seconds

    def on_epoch_end(self, epoch, logs):
        time.sleep(self.seconds)


def fit_estimator(config, callbacks=()):
    X, y, _, _ = _digits()
    return cgrad.MLPClassifier(hidden_layer_sizes=(config["hidden"],), learning_rate_init=config["lr"],
                               max_iter=config.get("epochs", 5), random_state=config["seed"]).fit(
        X, y, callbacks=callbacks)


def fit_trainer(config, callbacks=()):
    """An nn.Module trained with cgrad.Trainer; returns the model and its History."""
    X, y, _, _ = _digits()
    cgrad.manual_seed(config["seed"])
    model = nn.MLP([64, config["hidden"], 10])
    trainer = cgrad.Trainer(model, "cross_entropy", optim.Adam(model.parameters(), lr=config["lr"]),
                            seed=config["seed"])
    history = trainer.fit(X, y, epochs=config.get("epochs", 4), batch_size=32, verbose=0,
                          callbacks=[*callbacks, _Pace(config.get("pace", 0.0))])
    return model, history.history, time.time()


def fit_loop(config, callbacks=()):
    """A hand-written training loop, reporting each epoch's mean loss to the callbacks."""
    X, y, _, _ = _digits()
    cgrad.manual_seed(config["seed"])
    model = nn.Sequential(nn.Linear(64, config["hidden"]), nn.Tanh(), nn.Linear(config["hidden"], 10))
    opt = optim.SGD(model.parameters(), lr=config["lr"], momentum=0.9)
    rng = np.random.default_rng(config["seed"])
    for epoch in range(1, 4):
        total = 0.0
        order = rng.permutation(len(X))
        for start in range(0, len(X), 50):
            idx = order[start:start + 50]
            opt.zero_grad()
            loss = F.cross_entropy(model(cgrad.from_numpy(X[idx])), y[idx])
            loss.backward()
            opt.step()
            total += loss.item() * len(idx)
        for cb in callbacks:
            cb.on_epoch_end(epoch, {"loss": total / len(X)})
    return model


def fit_failing(config, callbacks=()):
    if config["solver"] == "lbfgs":
        time.sleep(0.2)  # the others are running when it fails
    X, y, _, _ = _digits()
    return cgrad.MLPClassifier(solver=config["solver"], max_iter=2, random_state=0).fit(X, y, callbacks=callbacks)


CONFIGS = [{"hidden": h, "lr": lr, "seed": s} for h, lr, s in [(16, 1e-2, 0), (32, 3e-3, 1), (8, 1e-2, 2)]]


def _outputs(model, X):
    with cgrad.no_grad():
        return model.eval()(cgrad.from_numpy(X)).numpy().copy()


# ---------------------------------------------------------------- the cluster

def test_cluster_binds_and_connects_to_loopback_only(client):
    info = client.scheduler_info()
    addresses = [info["address"]] + [a for a, w in info["workers"].items()] + [
        w["nanny"] for w in info["workers"].values()]
    assert len(info["workers"]) == 2
    for address in addresses:
        assert address.startswith("tcp://") and _is_loopback(address[6:].rsplit(":", 1)[0]), address
    assert all(_is_loopback(w["host"]) for w in info["workers"].values())
    # some traffic before looking
    assert cgrad.dask.sweep(client, lambda c: _outputs(fit_loop(c), _digits()[2]).shape, CONFIGS[:2]) == [(450, 10)] * 2
    # every socket of this process and of the cluster's (nannies, workers): listening or
    # connected, loopback only. No dashboard: only distributed's plain HTTP routes listen.
    psutil = pytest.importorskip("psutil")  # distributed's own dependency
    me = psutil.Process()
    processes = [me, *me.children(recursive=True)]  # the nannies run in this one
    assert set(client.run(os.getpid).values()) <= {p.pid for p in processes}  # the workers are looked at
    n_sockets = 0
    for proc in processes:
        for conn in proc.net_connections(kind="inet"):
            n_sockets += 1
            assert _is_loopback(conn.laddr.ip), (proc.pid, conn)
            assert not conn.raddr or _is_loopback(conn.raddr.ip), (proc.pid, conn)
    assert n_sockets >= 10  # the check saw the cluster's sockets
    assert _is_loopback(client.cluster.scheduler.http_server.address)


def test_each_worker_uses_one_blas_thread(client):
    threads = client.run(cgrad.get_num_threads)
    assert sorted(threads.values()) == [1, 1]


# ---------------------------------------------------------------- client.map of fits

def test_client_map_returns_fitted_estimators_equal_to_in_process_fits(client):
    _, _, X_test, _ = _digits()
    remote = client.gather(client.map(fit_estimator, CONFIGS, pure=False))
    for config, model in zip(CONFIGS, remote):
        local = fit_estimator(config)
        assert type(model) is cgrad.MLPClassifier and model.n_iter_ == local.n_iter_
        np.testing.assert_array_equal(model.predict_proba(X_test), local.predict_proba(X_test))  # bit for bit
        np.testing.assert_array_equal(model.predict(X_test), local.predict(X_test))


def test_sweep_returns_modules_equal_to_in_process_fits_in_config_order(client):
    _, _, X_test, _ = _digits()
    for fit in (fit_loop, lambda c: fit_trainer(c)[0]):
        remote = cgrad.dask.sweep(client, fit, CONFIGS)
        assert len(remote) == len(CONFIGS)
        for config, model in zip(CONFIGS, remote):
            assert isinstance(model, nn.Module)
            np.testing.assert_array_equal(_outputs(model, X_test), _outputs(fit(config), X_test))


# ---------------------------------------------------------------- streamed metrics

def test_sweep_streams_every_epoch_while_the_fits_run(client):
    configs = [dict(c, epochs=6, pace=0.15) for c in CONFIGS + [{"hidden": 24, "lr": 1e-3, "seed": 3}]]
    seen = []
    results = cgrad.dask.sweep(client, lambda c, callbacks: fit_trainer(c, callbacks)[1:], configs,
                               on_epoch=lambda i, epoch, logs: seen.append((i, epoch, logs, time.time())))
    for i, config in enumerate(configs):
        mine = [(epoch, logs, t) for j, epoch, logs, t in seen if j == i]
        assert [epoch for epoch, _, _ in mine] == list(range(1, 7))  # all of them, in epoch order
        remote_history, finished = results[i]
        assert mine[0][2] < finished  # the first epoch was seen before the fit returned
        # the logs are the fit's: its History, and the same run in this process
        assert [logs["loss"] for _, logs, _ in mine] == remote_history["loss"]
        assert [logs["accuracy"] for _, logs, _ in mine] == remote_history["accuracy"]
        assert [logs["loss"] for _, logs, _ in mine] == fit_trainer(dict(config, pace=0.0))[1]["loss"]
    assert seen[0][3] < max(r[1] for r in results)


def test_sweep_streams_an_estimators_epochs(client):
    configs = [dict(c, epochs=4) for c in CONFIGS[:2]]
    seen: dict[int, list] = {}
    losses = cgrad.dask.sweep(client, lambda c, callbacks: fit_estimator(c, callbacks).history_["loss"], configs,
                              on_epoch=lambda i, epoch, logs: seen.setdefault(i, []).append((epoch, logs["loss"])))
    for i, config in enumerate(configs):
        local = fit_estimator(config)
        assert seen[i] == list(enumerate(local.history_["loss"], 1))
        assert losses[i] == local.history_["loss"]


def test_stream_metrics_with_client_map_and_subscribe_topic(client):
    """The mechanism without the sweep helper: the tag defaults to the task's key."""
    events = []
    client.subscribe_topic("cgrad-test-topic", events.append)
    try:
        futures = client.map(lambda c: fit_loop(c, [cgrad.dask.StreamMetrics("cgrad-test-topic")]).training,
                             CONFIGS[:2], pure=False)
        assert client.gather(futures) == [True, True]
        deadline = time.monotonic() + 10
        while len(events) < 6 and time.monotonic() < deadline:
            time.sleep(0.02)
    finally:
        client.unsubscribe_topic("cgrad-test-topic")
    messages = [msg for _, msg in events]
    for f in futures:
        assert [m["epoch"] for m in messages if m["tag"] == f.key] == [1, 2, 3]
    assert all(set(m["logs"]) == {"loss"} and isinstance(m["logs"]["loss"], float) for m in messages)


def test_stream_metrics_outside_a_task_sends_through_the_client(client):
    # read back from the scheduler's event log: a subscription made just before could
    # lose the race with this client's log_event, which takes another connection
    cgrad.dask.StreamMetrics("cgrad-test-local", tag="here").on_epoch_end(
        2, {"loss": np.float32(0.5), "note": "dropped", "flag": True})
    assert [msg for _, msg in client.get_events("cgrad-test-local")] == [
        {"tag": "here", "epoch": 2, "logs": {"loss": 0.5}}]


# ---------------------------------------------------------------- errors

def test_a_failing_fit_raises_its_cgrad_error_in_the_client(client):
    configs = [{"solver": "adam"}, {"solver": "lbfgs"}, {"solver": "sgd"}]
    msg = "MLPClassifier: solver must be 'adam' or 'sgd', not 'lbfgs'"
    with pytest.raises(ValueError, match=msg):
        cgrad.dask.sweep(client, fit_failing, configs, on_epoch=lambda *a: None)
    with pytest.raises(ValueError, match=msg):
        cgrad.dask.sweep(client, fit_failing, configs)
    with pytest.raises(ValueError, match=msg):
        client.submit(fit_failing, configs[1]).result()


def test_sweep_argument_errors(client):
    with pytest.raises(TypeError, match="sweep: client must be a distributed.Client"):
        cgrad.dask.sweep("tcp://127.0.0.1:1", fit_loop, CONFIGS)
    with pytest.raises(TypeError, match="sweep: fit must be callable"):
        cgrad.dask.sweep(client, "fit_loop", CONFIGS)
    with pytest.raises(TypeError, match="sweep: on_epoch must be callable"):
        cgrad.dask.sweep(client, fit_loop, CONFIGS, on_epoch=1)
    with pytest.raises(TypeError, match="StreamMetrics: topic must be a non-empty str"):
        cgrad.dask.StreamMetrics("")
    assert cgrad.dask.sweep(client, fit_loop, []) == []


def test_without_distributed_cgrad_imports_and_the_helpers_name_the_extra():
    code = ("import sys; sys.modules['distributed'] = None\n"
            "import cgrad, cgrad.dask\n"
            "cgrad.MLPClassifier(max_iter=1).fit(*cgrad.data.xor(20))\n"
            "for call in (lambda: cgrad.dask.sweep(None, print, [1]),\n"
            "             lambda: cgrad.dask.StreamMetrics().on_epoch_end(1, {'loss': 1.0})):\n"
            "    try:\n"
            "        call()\n"
            "    except ImportError as e:\n"
            "        assert 'pip install cgrad[dask]' in str(e), e\n"
            "    else:\n"
            "        raise AssertionError('no ImportError')\n"
            "print('ok')\n")
    assert run_python(code).stdout.strip().endswith("ok")


# ---------------------------------------------------------------- scikit-learn on Dask

def test_gridsearchcv_on_joblibs_dask_backend_matches_n_jobs_1(client):
    joblib = pytest.importorskip("joblib")
    model_selection = pytest.importorskip("sklearn.model_selection")
    X, y, _, _ = _digits()
    grid = {"hidden_layer_sizes": [(8,), (32,)], "learning_rate_init": [1e-3, 1e-2]}

    def search(n_jobs):
        return model_selection.GridSearchCV(cgrad.MLPClassifier(max_iter=5, random_state=0), grid, cv=3,
                                            n_jobs=n_jobs)

    serial = search(1).fit(X, y)
    distributed = pytest.importorskip("distributed")
    with distributed.get_task_stream(client) as stream, joblib.parallel_config(backend="dask"):
        on_dask = search(2).fit(X, y)
    assert {task["worker"] for task in stream.data} == set(client.scheduler_info()["workers"])  # both ran fits
    assert on_dask.best_params_ == serial.best_params_
    for key in ("params", "mean_test_score", "rank_test_score", *(f"split{k}_test_score" for k in range(3))):
        np.testing.assert_array_equal(on_dask.cv_results_[key], serial.cv_results_[key])
    assert on_dask.best_score_ == serial.best_score_
