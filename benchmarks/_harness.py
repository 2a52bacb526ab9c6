"""Shared timing helpers for the benchmarks: medians over repeats, ratios from one run.

The machine is shared and noisy: absolute times drift, so every figure is printed beside
its baseline measured in the same process, and nothing here fails for being slow.
"""
from __future__ import annotations

import os
import statistics
import sys
import time


def clean_blas_environment() -> None:
    """Re-exec without OPENBLAS_CORETYPE / OPENBLAS_L2_SIZE (this workplace's machines set
    them, and OpenBLAS runs slower with them; README, "Benchmarks") and with every BLAS at
    one thread. Benchmarks only."""
    want = {"OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    dirty = [k for k in ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE") if k in os.environ]
    if dirty or any(os.environ.get(k) != v for k, v in want.items()):
        env = {k: v for k, v in os.environ.items() if k not in dirty}
        env.update(want)
        if dirty:
            print(f"# benchmark: unset {', '.join(dirty)} for this run", flush=True)
        os.execve(sys.executable, [sys.executable] + sys.argv, env)


def start(doc: str):
    """The common opening of a benchmark script: parse --quick/--json, clean the BLAS
    environment, one thread everywhere. Returns (args, cgrad, torch or None)."""
    import argparse
    parser = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="few repeats: check the script runs")
    parser.add_argument("--json", help="also write the rows to this file")
    args = parser.parse_args()
    clean_blas_environment()
    import cgrad
    try:
        import torch
        torch.set_num_threads(1)
    except ImportError:
        torch = None
    cgrad.set_num_threads(1)
    return args, cgrad, torch


def measure(fn, number: int, repeat: int) -> list[float]:
    """Seconds per call of fn, one figure per repeat (after one warm-up repeat)."""
    return measure_together([fn], number, repeat)[0]


def measure_together(fns, number: int, repeat: int, subtract_loop: bool = True) -> list[list[float]]:
    """Like measure, for several functions whose repeats are interleaved, so that the
    machine's drift hits each of them alike; the cost of the timing loop and of calling a
    lambda (measured the same way) is subtracted when subtract_loop is set."""
    for fn in fns:
        fn()
    ignore = lambda value: value  # noqa: E731
    samples, _ = measure_steps({i: (fn, ignore) for i, fn in enumerate(fns)}, number, repeat, subtract_loop)
    return list(samples.values())


def measure_steps(steps: dict, number: int, repeat: int, subtract_loop: bool = True) -> tuple[dict, dict]:
    """Seconds per step of each (step, sync) pair of steps, one figure per repeat, the
    repeats interleaved so that the machine's drift hits them alike. A repeat calls step()
    `number` times back to back and then sync(the last step's result) once, inside the
    timing: a step returns its loss without reading it, and sync reads it (JAX dispatches
    asynchronously, so its sync also waits for the steps dispatched; a training loop does
    not wait each step). The timing loop's own cost (an empty step, timed the same way) is
    subtracted when subtract_loop is set. Returns ({key: samples}, {key: the last repeat's
    synced loss})."""
    def once(step, sync):
        t0 = time.perf_counter()
        for _ in range(number):
            loss = step()
        value = sync(loss)
        return (time.perf_counter() - t0) / number, value

    empty = (lambda: None), (lambda loss: loss)
    samples: dict = {k: [] for k in steps}
    last: dict = {}
    for _ in range(repeat):
        base = once(*empty)[0] if subtract_loop else 0.0
        for k, (step, sync) in steps.items():
            seconds, last[k] = once(step, sync)
            samples[k].append(max(seconds - base, 0.0))
    return samples, last


def summary(samples: list[float], scale: float = 1e9) -> tuple[float, float, float]:
    return (statistics.median(samples) * scale, min(samples) * scale, max(samples) * scale)


def table(rows: list[dict], columns: list[str]) -> str:
    """A Markdown table."""
    widths = [max(len(c), *(len(str(r.get(c, ""))) for r in rows)) for c in columns]
    line = lambda cells: "| " + " | ".join(str(c).ljust(w) for c, w in zip(cells, widths)) + " |"
    return "\n".join([line(columns), line(["-" * w for w in widths])] +
                     [line([r.get(c, "") for c in columns]) for r in rows])


def rss_bytes() -> int:
    """This process's resident set size (Linux), for the memory figures."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    return 0
