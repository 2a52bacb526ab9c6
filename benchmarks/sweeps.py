"""Sweeps: a hyperparameter search over cgrad models in several processes.

    python benchmarks/sweeps.py            # full run, ~1-2 min
    python benchmarks/sweeps.py --quick    # smoke run (CI), ~20 s

GridSearchCV over 8 configurations of MLPClassifier (hidden_layer_sizes (128,) and (512,)
x 4 learning rates, cv=3) on the digits' 1,347 training images: wall time with n_jobs=1
(at one and at two BLAS threads), with n_jobs=2 at cgrad's default of one thread per
worker, and with n_jobs=2 at two threads per worker (CGRAD_NUM_THREADS=2: oversubscribed
on two cores), with the best cross-validated score and the refit model's test accuracy. One run per setting: each is
long, and a busy machine shifts them alike only within one run. The worker processes are
started (and cgrad imported in them) before the clock starts: a sweep pays that once.

The same 8 configurations as a Dask sweep (when distributed is installed): each fitted
on the 1,347 training images on a 2-worker distributed.LocalCluster (1 thread each,
bound to 127.0.0.1, no dashboard) through cgrad.dask.sweep, every epoch streamed to the
client, the fitted models scored here on the 450 test images; beside the same 8 fits
one after the other in this process. The two alternate (3 rounds; medians, min-max),
must give the same test scores bit for bit, and every epoch must have been streamed.
The cluster's start-up is reported apart.
One function per measurement; main() calls them.
"""
from __future__ import annotations

import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _harness import start, table  # noqa: E402


def _grid(quick: bool):
    """The 8 configurations and the fixed parameters (--quick: small layers, 2 epochs)."""
    hidden = [(16,), (32,)] if quick else [(128,), (512,)]  # a (512,) layer's GEMMs are big enough to use 2 threads
    return ({"hidden_layer_sizes": hidden, "learning_rate_init": [1e-3, 3e-3, 1e-2, 3e-2]},
            dict(max_iter=2 if quick else 40, random_state=0))


def _fresh_workers(n_jobs: int, threads: int | None) -> None:
    """Start loky's worker processes anew, with CGRAD_NUM_THREADS=threads (None: unset),
    and wait until each has imported cgrad and scikit-learn."""
    import joblib
    from joblib.externals.loky import get_reusable_executor
    get_reusable_executor().shutdown(wait=True)  # workers read the environment when they start
    if threads is None:
        os.environ.pop("CGRAD_NUM_THREADS", None)
    else:
        os.environ["CGRAD_NUM_THREADS"] = str(threads)
    seen = joblib.Parallel(n_jobs=n_jobs)(joblib.delayed(_worker_threads)() for _ in range(4 * n_jobs))
    assert set(seen) == {threads or 1}, f"workers run {set(seen)} threads, wanted {threads or 1}"
    # one tiny search through the same path first: it unpickles the estimator in each worker
    # (importing cgrad.estimators and what it takes of scikit-learn), which cost the first
    # timed search about a second more than a search in warm workers
    import cgrad
    from sklearn.model_selection import GridSearchCV
    X, y, _, _ = cgrad.data.digits()
    GridSearchCV(cgrad.MLPClassifier(max_iter=1), {"alpha": [1e-4, 1e-3]}, cv=2, n_jobs=n_jobs).fit(X[:64], y[:64])


def _worker_threads() -> int:
    import sklearn.model_selection  # noqa: F401  (imported before the clock starts)
    import cgrad
    return cgrad.get_num_threads()


def grid_search(n_jobs: int, threads_per_worker: int | None, quick: bool) -> dict:
    """Wall time of GridSearchCV(MLPClassifier, 8 configurations, cv=3, n_jobs) on the digits."""
    import cgrad
    from sklearn.model_selection import GridSearchCV
    X, y, X_test, y_test = cgrad.data.digits()
    grid, params = _grid(quick)
    if n_jobs > 1:
        _fresh_workers(n_jobs, threads_per_worker)
    before = cgrad.get_num_threads()
    cgrad.set_num_threads((threads_per_worker or 1) if n_jobs == 1 else before)  # n_jobs=1 fits here
    try:
        t0 = time.perf_counter()
        search = GridSearchCV(cgrad.MLPClassifier(**params), grid, cv=3, n_jobs=n_jobs).fit(X, y)
        seconds = time.perf_counter() - t0
    finally:
        cgrad.set_num_threads(before)
    return {"n_jobs": n_jobs, "threads per process": threads_per_worker or 1, "wall s": f"{seconds:.1f}",
            "seconds": seconds, "best CV score": f"{search.best_score_:.4f}",
            "best params": search.best_params_, "test accuracy": f"{search.score(X_test, y_test):.4f}"}


def _fit_config(config, params, callbacks=()):
    import cgrad
    X, y, _, _ = cgrad.data.digits()
    return cgrad.MLPClassifier(**config, **params).fit(X, y, callbacks=callbacks)


def dask_sweep(quick: bool) -> dict:
    """Wall time and best test score of cgrad.dask.sweep over the 8 configurations on a
    2-worker LocalCluster, beside the same fits serially in this process."""
    import itertools
    import logging
    import statistics

    import distributed

    import cgrad
    import cgrad.dask
    _, _, X_test, y_test = cgrad.data.digits()
    grid, params = _grid(quick)
    configs = [dict(zip(grid, values)) for values in itertools.product(*grid.values())]
    os.environ.pop("CGRAD_NUM_THREADS", None)  # grid_search may have left it set: workers start at 1 thread
    t0 = time.perf_counter()
    cluster = distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1",
                                       dashboard_address=None, silence_logs=logging.ERROR)
    client = distributed.Client(cluster)
    # the workers' imports are start-up, not sweep
    assert set(client.run(_worker_threads).values()) == {1}, "the Dask workers should run 1 thread each"
    startup = time.perf_counter() - t0
    epochs = [0] * len(configs)

    def on_epoch(i, epoch, logs):
        epochs[i] = epoch

    serial_s, dask_s = [], []
    try:
        for _ in range(1 if quick else 3):  # alternating, so that the machine's drift hits both alike
            t0 = time.perf_counter()
            serial = [_fit_config(c, params) for c in configs]
            serial_s.append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            models = cgrad.dask.sweep(client, lambda c, callbacks: _fit_config(c, params, callbacks), configs,
                                      on_epoch=on_epoch)
            dask_s.append(time.perf_counter() - t0)
    finally:
        client.close()
        cluster.close()
    scores = [m.score(X_test, y_test) for m in models]
    assert scores == [m.score(X_test, y_test) for m in serial], "the sweep's models differ from the serial fits'"
    assert epochs == [m.n_iter_ for m in models], (epochs, [m.n_iter_ for m in models])  # every epoch streamed
    best = max(range(len(configs)), key=scores.__getitem__)
    serial_med, dask_med = statistics.median(serial_s), statistics.median(dask_s)
    rows = [{"run": "in-process, serial", "wall s": f"{serial_med:.2f} [{min(serial_s):.2f}-{max(serial_s):.2f}]",
             "seconds": serial_med, "speed-up": "1.00x"},
            {"run": "cgrad.dask.sweep, LocalCluster 2 workers x 1 thread",
             "wall s": f"{dask_med:.2f} [{min(dask_s):.2f}-{max(dask_s):.2f}]", "seconds": dask_med,
             "speed-up": f"{serial_med / dask_med:.2f}x"}]
    return {"rows": rows, "startup s": startup, "epochs": sum(epochs), "best params": configs[best],
            "best test accuracy": scores[best], "load average": os.getloadavg()[0]}


def main() -> None:
    args, cgrad, _ = start(__doc__)
    import joblib
    import numpy as np
    import sklearn
    grid, params = _grid(args.quick)
    n_configs = int(np.prod([len(v) for v in grid.values()]))
    print(f"# cgrad {cgrad.__version__}, scikit-learn {sklearn.__version__}, joblib {joblib.__version__}, "
          f"{os.cpu_count()} CPUs; GridSearchCV over {n_configs} configurations, cv=3, "
          f"max_iter={params['max_iter']}, digits (1,347 training images)", flush=True)
    rows = [grid_search(1, None, args.quick), grid_search(1, 2, args.quick),
            grid_search(2, None, args.quick), grid_search(2, 2, args.quick)]
    base = rows[0]["seconds"]
    for r in rows:
        r["speed-up"] = f"{base / r['seconds']:.2f}x"
    print(table(rows, ["n_jobs", "threads per process", "wall s", "speed-up", "best CV score",
                       "test accuracy", "best params"]))
    out = {"grid_search": rows}
    try:
        import distributed
    except ImportError:
        print("(distributed is not installed: no Dask sweep)")
    else:
        sweep = dask_sweep(args.quick)
        out["dask_sweep"] = sweep
        print(f"\n# Dask sweep of the {n_configs} configurations (distributed {distributed.__version__}), each "
              f"fitted on the training images and scored on the 450 test images; {sweep['epochs']} epochs "
              f"streamed; median of {1 if args.quick else 3} alternating runs [min-max]")
        print(table(sweep["rows"], ["run", "wall s", "speed-up"]))
        print(f"(cluster start-up {sweep['startup s']:.2f} s, not counted; best {sweep['best params']}: test "
              f"accuracy {sweep['best test accuracy']:.4f}, the same in both runs; load average "
              f"{sweep['load average']:.1f} at the end)")
    if args.json:
        import json
        with open(args.json, "w") as f:
            json.dump(out, f, indent=1, default=str)


if __name__ == "__main__":
    main()
