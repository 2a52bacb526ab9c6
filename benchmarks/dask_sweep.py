"""A hyperparameter sweep on Dask: 8 configurations of cgrad.MLPClassifier on the digits,
fitted on a 2-worker distributed.LocalCluster (1 thread each, bound to 127.0.0.1, no
dashboard) through cgrad.dask.sweep with every epoch streamed to the client, beside the
same 8 fits one after the other in this process.

    python benchmarks/dask_sweep.py            # ~1 minute
    python benchmarks/dask_sweep.py --quick    # smoke run: 5 epochs, one run (CI)

The sweep's wall time runs from the first map to the last fitted model back in this
process (cluster start-up reported apart). The two runs alternate, 3 times each, so the
machine's drift hits both alike; medians with min-max. Each model is scored here on the
450 test images, and the two runs must give the same scores, config by config, bit for
bit. With 2 workers on 2 cores the best speed-up is 2x, less what the machine's other
processes take.
"""
from __future__ import annotations

import itertools
import json
import logging
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _harness import start, summary, table  # noqa: E402

GRID = {"hidden_layer_sizes": [(64,), (256,)], "learning_rate_init": [1e-3, 3e-3], "alpha": [1e-4, 1e-2]}


def configs() -> list[dict]:
    return [dict(zip(GRID, values)) for values in itertools.product(*GRID.values())]


def fit(config, callbacks=(), max_iter=200):
    import cgrad
    X, y, _, _ = cgrad.data.digits()
    return cgrad.MLPClassifier(**config, max_iter=max_iter, random_state=0).fit(X, y, callbacks=callbacks)


def main() -> None:
    args, cgrad, _ = start(__doc__)
    import distributed

    import cgrad.dask
    max_iter = 5 if args.quick else 200
    repeat = 1 if args.quick else 3
    grid = configs()
    _, _, X_test, y_test = cgrad.data.digits()

    t0 = time.perf_counter()
    cluster = distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1",
                                       dashboard_address=None, silence_logs=logging.ERROR)
    client = distributed.Client(cluster)
    client.run(lambda: __import__("cgrad"))  # the workers' first import is start-up, not sweep
    startup = time.perf_counter() - t0
    epochs = [0] * len(grid)

    def on_epoch(i, epoch, logs):
        epochs[i] = epoch

    serial_times, dask_times = [], []
    for _ in range(repeat):  # interleaved, so that the machine's drift hits both alike
        t0 = time.perf_counter()
        serial = [fit(c, max_iter=max_iter) for c in grid]
        serial_times.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        models = cgrad.dask.sweep(client, lambda c, callbacks: fit(c, callbacks, max_iter), grid, on_epoch=on_epoch)
        dask_times.append(time.perf_counter() - t0)
    client.close()
    cluster.close()
    serial_scores = [m.score(X_test, y_test) for m in serial]
    dask_scores = [m.score(X_test, y_test) for m in models]
    (serial_time, s_lo, s_hi), (dask_time, d_lo, d_hi) = summary(serial_times, 1), summary(dask_times, 1)

    assert dask_scores == serial_scores, (dask_scores, serial_scores)
    assert epochs == [m.n_iter_ for m in models], (epochs, [m.n_iter_ for m in models])  # every epoch streamed
    best = max(range(len(grid)), key=dask_scores.__getitem__)
    print(f"# cgrad {cgrad.__version__}, distributed {distributed.__version__}, {os.cpu_count()} cores; "
          f"{len(grid)} MLPClassifier fits on the digits (1,347 train, 450 test), max_iter {max_iter}; "
          f"epochs run: {sum(epochs)}; median of {repeat} runs [min-max]; "
          f"load average {os.getloadavg()[0]:.1f} at the end")
    rows = [{"run": "in-process, serial", "wall s": f"{serial_time:.2f} [{s_lo:.2f}-{s_hi:.2f}]", "speed-up": "1.00x"},
            {"run": "Dask LocalCluster, 2 workers x 1 thread", "wall s": f"{dask_time:.2f} [{d_lo:.2f}-{d_hi:.2f}]",
             "speed-up": f"{serial_time / dask_time:.2f}x"}]
    print(table(rows, ["run", "wall s", "speed-up"]))
    print(f"(cluster start-up {startup:.2f} s, not counted; best config {grid[best]}: "
          f"test accuracy {dask_scores[best]:.4f}, the same in both runs)")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"rows": rows, "best_config": repr(grid[best]), "best_score": dask_scores[best],
                       "startup_s": startup}, f, indent=1)


if __name__ == "__main__":
    main()
