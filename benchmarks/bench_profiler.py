"""Cost of profiling: the training-step time of the bench_training networks with
cgrad.profile() on versus off, interleaved in one process (float32, one thread).

    python benchmarks/bench_profiler.py [--quick]

The cost with profiling off (one predictable branch per op and per node) is too small
to time on a noisy machine; count it with callgrind instead (see the closing note).
"""
from __future__ import annotations

import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import statistics  # noqa: E402
import time  # noqa: E402

from _harness import clean_blas_environment, table  # noqa: E402
from networks import NETWORKS, cgrad_step, gemm_flops, init_weights, make_data  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    clean_blas_environment()
    import cgrad
    cgrad.set_num_threads(1)
    repeat = 3 if args.quick else 11
    rows = []
    for name, sizes, act, loss, batch in NETWORKS[:4]:  # the big row takes minutes, and is all GEMM
        X, y = make_data(sizes, loss, batch)
        step, _ = cgrad_step(sizes, act, loss, X, y, init_weights(sizes))  # the loss is not read
        flops = gemm_flops(sizes, batch)
        number = min(max(int(2e8 / flops * (0.05 if args.quick else 1)), 5), 2000)

        def block():
            t0 = time.perf_counter()
            for _ in range(number):
                step()
            return (time.perf_counter() - t0) / number * 1e6

        block()
        offs, ons = [], []
        for _ in range(repeat):  # alternate blocks: drift hits both alike
            offs.append(block())
            with cgrad.profile(capacity=200 * number * len(sizes) + 1000):
                ons.append(block())
        off, on = statistics.median(offs), statistics.median(ons)
        rows.append({"network": name, "off us": f"{off:.1f}", "on us": f"{on:.1f}",
                     "on/off": f"{on / off:.3f}x"})
    print("# training step with profiling off and on (one profile around each block of steps)")
    print(table(rows, ["network", "off us", "on us", "on/off"]))


if __name__ == "__main__":
    main()
