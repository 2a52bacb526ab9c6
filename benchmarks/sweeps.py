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
    if args.json:
        import json
        with open(args.json, "w") as f:
            json.dump({"grid_search": rows}, f, indent=1, default=str)


if __name__ == "__main__":
    main()
