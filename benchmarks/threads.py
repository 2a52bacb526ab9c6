"""The 1-thread/2-thread table: cgrad's training steps (eager and replayed) at 1 and 2
threads, on a quiet machine and beside busy neighbour processes.

    python benchmarks/threads.py                   # quiet, then one busy neighbour per core
    python benchmarks/threads.py --neighbours 0    # quiet only
    python benchmarks/threads.py --quick           # smoke run (CI): few repeats, small workloads
    python benchmarks/threads.py --workloads 784 1024 --rounds 3 --json out.json

Workloads: the MLPs of benchmarks/networks.py and the CNN and sequence steps of
benchmarks/cnn.py and sequence.py ((step, sync) makers, benchmarks/_steps.py). Each thread
count runs in its own process with run.py's thread_env and pinned to that many cores, as in
`python -m benchmarks`; a third process runs 1 thread on 2 cores, which tells a slowdown of the
thread policy from one of the process merely having two cores to wander over. Inside a process
eager and replay repeats are interleaved; --rounds runs the processes again in turn (quiet and
busy alternating) and takes the median of the rounds' medians.

Busy: --neighbours N (default one per core) starts N processes spinning in a tight loop at
normal priority, neighbour i pinned to core i mod cores. Pinned, because that is the load the
target names (one busy neighbour per core) and it stays that load: free neighbours may pile onto
one core and leave the other idle. They are killed when the measurement ends, also on an error
or Ctrl-C.

Targets (docs: issue 17, "Threads that help"): quiet, 2 threads never slower than 1 (2t/1t <=
1.0) and the 1024 MLP at least 1.7x faster (2t/1t <= 0.59); busy, 2t/1t <= 1.3. Printed beside
the ratios, never asserted: nothing here fails for being slow.
"""
from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from _harness import table  # noqa: E402
from run import thread_env  # noqa: E402
import networks  # noqa: E402

QUICK_NETWORKS = ("2-16-16-1", "32-(32x16)")
QUIET_TARGET, BIG_TARGET, BUSY_TARGET = 1.0, 1 / 1.7, 1.3
BIG = "1024-"  # the network with the 1.7x target


def _as_step(made):
    """A maker's result as (step, sync): networks.py's makers return a step giving a float,
    or (step, sync) (benchmarks/_steps.py)."""
    if isinstance(made, tuple):
        return made
    return made, (lambda loss: loss)


def workloads(names=None, quick=False):
    """[(name, {"eager": maker(), "replay": maker()})], each maker building (step, sync)."""
    out = []
    for name, sizes, act, loss, batch in networks.NETWORKS:
        def makers(sizes=sizes, act=act, loss=loss, batch=batch):
            X, y = networks.make_data(sizes, loss, batch)
            w = networks.init_weights(sizes)
            return {"eager": lambda: _as_step(networks.cgrad_step(sizes, act, loss, X, y, w)),
                    "replay": lambda: _as_step(networks.cgrad_replay_step(sizes, act, loss, X, y, w))}
        out.append((name, makers))
    if not quick:
        import cnn
        import sequence
        for wl in (*cnn.WORKLOADS, *sequence.WORKLOADS):
            def makers(wl=wl):
                batch, weights = wl.make_batch(), wl.init()
                return {"eager": lambda: wl.FRAMEWORKS["cgrad"](batch, weights),
                        "replay": lambda: wl.FRAMEWORKS["cgrad-replay"](batch, weights)}
            out.append((wl.NAME, makers))
    if quick:
        out = [w for w in out if w[0].startswith(QUICK_NETWORKS)]
    if names:
        out = [w for w in out if any(n in w[0] for n in names)]
    return out


def measure(makers, quick: bool) -> dict:
    """Median, min and max seconds per step of eager and replay, their repeats interleaved."""
    steps = {k: make() for k, make in makers().items()}
    for step, sync in steps.values():  # record / warm up
        for _ in range(3):
            sync(step())
    t0 = time.perf_counter()
    for step, sync in steps.values():
        sync(step())
    slowest = (time.perf_counter() - t0) / len(steps)
    number = max(1, int((0.005 if quick else 0.03) / max(slowest, 1e-7)))
    repeat = 3 if quick else 15
    samples = {k: [] for k in steps}
    for _ in range(repeat):
        for k, (step, sync) in steps.items():
            t0 = time.perf_counter()
            for _ in range(number):
                loss = step()
            sync(loss)
            samples[k].append((time.perf_counter() - t0) / number)
    return {k: {"median": statistics.median(s), "min": min(s), "max": max(s), "number": number}
            for k, s in samples.items()}


def child(threads: int, cores: int, names, quick: bool, out_path: str) -> None:
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, sorted(os.sched_getaffinity(0))[:cores])
    import cgrad
    cgrad.set_num_threads(threads)
    result = {name: measure(makers, quick) for name, makers in workloads(names, quick)}
    with open(out_path, "w") as f:
        json.dump(result, f)


def run_child(threads: int, cores: int, args) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, "out.json")
        cmd = [sys.executable, os.path.abspath(__file__), "--child", str(threads), "--cores", str(cores),
               "--out", out] + (["--quick"] if args.quick else []) + \
              (["--workloads", *args.workloads] if args.workloads else [])
        subprocess.run(cmd, env=thread_env(threads), check=True)
        with open(out) as f:
            return json.load(f)


class Neighbours:
    """N busy processes (a tight loop, normal priority), neighbour i pinned to core i mod
    cores; stopped on leaving the block, whatever happened inside it."""
    LOOP = "import os, sys\nos.sched_setaffinity(0, {int(sys.argv[1])})\nwhile True: pass\n"

    def __init__(self, n: int):
        self.n, self.procs = n, []

    def __enter__(self):
        cores = sorted(os.sched_getaffinity(0))
        for i in range(self.n):
            self.procs.append(subprocess.Popen([sys.executable, "-c", self.LOOP, str(cores[i % len(cores)])]))
        time.sleep(0.5)  # running before we measure
        return self

    def __exit__(self, *exc):
        for p in self.procs:
            if p.poll() is None:
                p.kill()
        for p in self.procs:
            p.wait()
        self.procs = []
        return False


def combine(rounds: list) -> dict:
    """The median over rounds of each step's median (and the min/max over all rounds)."""
    out = {}
    for name in rounds[0]:
        out[name] = {}
        for mode in rounds[0][name]:
            vals = [r[name][mode] for r in rounds]
            out[name][mode] = {"median": statistics.median(v["median"] for v in vals),
                               "min": min(v["min"] for v in vals), "max": max(v["max"] for v in vals)}
    return out


def fmt(v) -> str:
    return f"{v['median'] * 1e3:.3f} [{v['min'] * 1e3:.3f}-{v['max'] * 1e3:.3f}]"


def report(res: dict) -> str:
    rows = []
    quiet1, quiet2, quiet1c2 = res["quiet"]["1"], res["quiet"]["2"], res["quiet"].get("1@2cores")
    busy = res.get("busy")
    for name in quiet1:
        for mode in quiet1[name]:
            q1, q2 = quiet1[name][mode], quiet2[name][mode]
            ratio = q2["median"] / q1["median"]
            target = BIG_TARGET if name.startswith(BIG) else QUIET_TARGET
            row = {"workload": name, "step": mode, "quiet 1t ms": fmt(q1), "quiet 2t ms": fmt(q2),
                   "quiet 2t/1t": f"{ratio:.2f}", "target": f"<= {target:.2f}: {'met' if ratio <= target else 'missed'}"}
            if quiet1c2:
                row["1t on 2 cores / 1t"] = f"{quiet1c2[name][mode]['median'] / q1['median']:.2f}"
            if busy:
                b1, b2 = busy["1"][name][mode], busy["2"][name][mode]
                br = b2["median"] / b1["median"]
                row.update({"busy 1t ms": fmt(b1), "busy 2t ms": fmt(b2), "busy 2t/1t": f"{br:.2f}",
                            "busy target": f"<= {BUSY_TARGET}: {'met' if br <= BUSY_TARGET else 'missed'}"})
            rows.append(row)
    columns = list(rows[0]) if rows else []
    notes = [f"{res['rounds']} round(s); each figure the median over rounds of a process's median step time "
             f"[min-max over all repeats], ms; 1t and 2t in separate processes pinned to 1 and 2 cores."]
    if busy:
        notes.append(f"busy: {res['neighbours']} neighbour process(es) spinning, pinned one per core.")
    return table(rows, columns) + "\n\n" + "\n".join(notes)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="smoke run: the two small MLPs, few repeats")
    ap.add_argument("--neighbours", type=int, default=len(os.sched_getaffinity(0)),
                    help="busy neighbour processes for the busy table (0: quiet table only)")
    ap.add_argument("--workloads", nargs="*", help="only workloads whose name contains one of these")
    ap.add_argument("--rounds", type=int, default=1, help="run every process this many times, in turn")
    ap.add_argument("--json", help="write the results here")
    ap.add_argument("--child", type=int, help=argparse.SUPPRESS)
    ap.add_argument("--cores", type=int, help=argparse.SUPPRESS)
    ap.add_argument("--out", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        child(args.child, args.cores, args.workloads, args.quick, args.out)
        return
    if len(os.sched_getaffinity(0)) < 2:
        print("threads.py: needs at least 2 cores", file=sys.stderr)
        return
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(1))  # so that the neighbours are stopped
    configs = {"1": (1, 1), "2": (2, 2), "1@2cores": (1, 2)}
    quiet = {k: [] for k in configs}
    busy = {k: [] for k in ("1", "2")}
    for _ in range(args.rounds):
        for k, (threads, cores) in configs.items():
            quiet[k].append(run_child(threads, cores, args))
        if args.neighbours > 0:
            with Neighbours(args.neighbours):
                for k in busy:
                    busy[k].append(run_child(*configs[k], args))
    res = {"rounds": args.rounds, "neighbours": args.neighbours,
           "quiet": {k: combine(v) for k, v in quiet.items()}}
    if args.neighbours > 0:
        res["busy"] = {k: combine(v) for k, v in busy.items()}
    print(report(res), flush=True)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(res, f, indent=1)


if __name__ == "__main__":
    main()
