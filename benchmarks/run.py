"""The benchmark suite: training-step time of five MLPs in cgrad (eager and replayed),
hand-written numpy, PyTorch eager, torch.compile and JAX jit, at 1 and 2 threads; and
scikit-learn's MLPClassifier on the digits against cgrad's.

    python -m benchmarks                    # full run, ~10 minutes
    python -m benchmarks --quick            # smoke run: every row, few repeats (CI)
    python -m benchmarks --threads 1 --networks 784 --json out.json --markdown out.md

Each thread count runs in its own process (with more than one thread, one process per
framework: see process_groups), with every framework's thread count set to it
(cgrad.set_num_threads, torch.set_num_threads, OPENBLAS/OMP_NUM_THREADS for numpy,
XLA_FLAGS for JAX), and pinned to that many cores: JAX 0.10 keeps more than one core busy
whatever its thread flags say (process CPU time / wall time 1.5 to 1.9 at "1 thread"), so
only the pinning makes its 1-thread figures 1-thread figures. JAX runs with its default
asynchronous dispatch, whose helper thread then shares the core. Inside a process the frameworks'
repeats are interleaved, so the machine's drift hits them alike: the ratios are figures of
one run; absolute times drift between runs on this shared machine. Every step is timed
as a training loop runs it (benchmarks/_steps.py's protocol, which the MLP rows share): many
steps back to back, the loss read once at the end of each repeat, so that JAX's
asynchronous dispatch is not made to wait each step and nobody pays a per-step .item().
Medians with min-max; the first-step losses of all frameworks must agree, and every
framework's loss must go down over the run. torch.compile is tried beside PyTorch eager
(its compile time reported, or the error when it does not compile). Also: cgrad eager and
replay against the fastest peer of the run (PyTorch eager, torch.compile, JAX jit) and
against JAX, the GEMM FLOPs per step, the GFLOP/s cgrad reaches, the fraction of the sgemm
roofline (a 1024^3 sgemm through cgrad's BLAS, measured in the same process), the limit:
the step's GEMM FLOPs at the core's float32 FMA peak (fma_peak.c, when a C compiler is at
hand; no GEMM passes it) and the share of it eager and replay reach, and the GEMM floor:
the step's matrix products alone, timed interleaved with the steps, and its ratio to the
fastest peer (no step built on this BLAS can beat that ratio in that run); at one thread,
issue 17's targets for the small networks, printed (networks.TARGETS).

The one-thread run also times the Burgers PINN step (benchmarks/pinn.py: an Adam step
through the second derivative, two create_graph grads, in cgrad eager and replayed,
PyTorch eager, and JAX jit; torch.compile is tried and reported as not compiling when it
does not), with the check that every framework's losses agree, ratios to the fastest peer
and the step's GEMM FLOPs at the FMA peak. Its name contains "PINN", so

    python -m benchmarks --threads 1 --networks PINN --no-digits     # the PINN alone

and --no-pinn leaves it out. The same for the CNN steps (benchmarks/cnn.py: the MNIST-1D
CNN and the digits CNN, also beside torch.compile): --networks CNN, --no-cnn; and for the
sequence steps (benchmarks/sequence.py: the MNIST-1D biGRU, makemore's names MLP and
nanoGPT's character GPT): --networks seq:, --no-seq.

Nothing here fails for being slow.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from _harness import measure_together, rss_bytes, table  # noqa: E402
from networks import (NETWORKS, TARGETS, MLPWorkload, cgrad_replay_step, cgrad_step, gemm_floor,  # noqa: E402
                      init_weights, jax_step, make_data, numpy_step, torch_step)
import _steps  # noqa: E402
import cnn  # noqa: E402
import pinn  # noqa: E402
import sequence  # noqa: E402

# the step workloads (benchmarks/_steps.py): all frameworks of one in one process, interleaved
STEP_WORKLOADS = (pinn, *cnn.WORKLOADS, *sequence.WORKLOADS)

def cgrad_one_thread_step(sizes, act, loss, X, y, weights):
    """cgrad eager switched to one thread inside a run at more: the same-process baseline
    for "more threads are never slower"."""
    import cgrad
    (step, sync), n = cgrad_step(sizes, act, loss, X, y, weights), cgrad._C.get_num_threads()

    def run():
        cgrad.set_num_threads(1)
        try:
            return step()
        finally:
            cgrad.set_num_threads(n)
    return run, sync


FRAMEWORKS = {"cgrad": cgrad_step, "cgrad-replay": cgrad_replay_step, "cgrad@1": cgrad_one_thread_step,
              "numpy": numpy_step, "torch": torch_step, "jax": jax_step}


def thread_env(n: int) -> dict:
    """The environment of a child measuring at n threads."""
    env = {k: v for k, v in os.environ.items() if k not in ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE")}
    env.update(OPENBLAS_NUM_THREADS=str(n), OMP_NUM_THREADS=str(n), MKL_NUM_THREADS=str(n),
               XLA_FLAGS=f"--xla_cpu_multi_thread_eigen={'true' if n > 1 else 'false'} "
                         f"intra_op_parallelism_threads={n}",
               JAX_PLATFORMS="cpu", TF_CPP_MIN_LOG_LEVEL="3")
    return env


def available(threads: int, only=None) -> dict:
    """The frameworks importable here (or those named in `only`), each set to `threads`."""
    import cgrad
    cgrad.set_num_threads(threads)
    found = {"cgrad": cgrad_step, "numpy": numpy_step}
    if hasattr(cgrad, "compile"):
        found["cgrad-replay"] = cgrad_replay_step
    if threads > 1:
        found["cgrad@1"] = cgrad_one_thread_step
    wanted = lambda name: only is None or name in only  # noqa: E731
    if wanted("torch"):
        try:
            import torch
            torch.set_num_threads(threads)
            found["torch"] = torch_step
        except ImportError:
            pass
    if wanted("jax"):
        try:
            import jax  # noqa: F401
            found["jax"] = jax_step
        except ImportError:
            pass
    return {k: FRAMEWORKS[k] for k in FRAMEWORKS if k in found and wanted(k)}


def process_groups(threads: int) -> list:
    """Which frameworks share a measuring process. At one thread, all of them: their
    repeats interleave, so drift hits them alike. With more threads each framework's idle
    pool (OpenBLAS, OpenMP, XLA) spins on the cores the next one needs, so each gets its own
    process (cgrad eager and replay share one: the same library and pool)."""
    import importlib.util
    groups = [["cgrad", "cgrad-replay", "cgrad@1"], ["numpy"]]
    groups += [[m] for m in ("torch", "jax") if importlib.util.find_spec(m)]
    return [None] if threads == 1 else groups


def sgemm_gflops(n: int, quick: bool) -> float:
    """The roofline: an n^3 float32 matmul through cgrad's BLAS, median GFLOP/s."""
    import numpy as np
    import cgrad
    rng = np.random.default_rng(0)
    a = cgrad.tensor(rng.standard_normal((n, n)), dtype="float32")
    b = cgrad.tensor(rng.standard_normal((n, n)), dtype="float32")
    with cgrad.no_grad():
        samples = measure_together([lambda: a @ b], 2 if quick else 5, 3 if quick else 7, subtract_loop=False)[0]
    return 2 * n ** 3 / statistics.median(samples) / 1e9


def fma_peak_gflops():
    """The core's float32 FMA peak (benchmarks/fma_peak.c: on AVX-512 where the CPU has it, else
    AVX2+FMA), or None without a C compiler or AVX2+FMA: the ceiling no GEMM passes, beside
    the sgemm it qualifies."""
    import platform
    import shutil
    cc = shutil.which("cc") or shutil.which("gcc")
    if not cc or platform.machine() not in ("x86_64", "AMD64"):
        return None
    try:
        with open("/proc/cpuinfo") as f:
            flags = f.read()
        if " avx2" not in flags or " fma" not in flags:
            return None
        with tempfile.TemporaryDirectory() as tmp:
            exe = os.path.join(tmp, "fma_peak")
            subprocess.run([cc, "-O2", os.path.join(HERE, "fma_peak.c"), "-o", exe],
                           check=True, capture_output=True)
            return float(subprocess.run([exe], check=True, capture_output=True, text=True).stdout)
    except (OSError, subprocess.CalledProcessError, ValueError):
        return None


def measure_network(net, makers, quick: bool) -> dict:
    """One MLP's row: its steps in the frameworks of makers, with torch.compile beside torch
    (benchmarks/_steps.py, measure), and beside cgrad the GEMM floor, timed interleaved
    (other frameworks' processes skip it)."""
    name, sizes, act, loss, batch = net
    extra = {"gemm_floor": gemm_floor(sizes, batch, init_weights(sizes))} if "cgrad" in makers else {}
    # many short repeats (0.04 s) rather than a few long ones, so that a burst of load on
    # this shared machine spoils few of them and the median stays put
    res = _steps.measure(MLPWorkload(net, makers), list(makers), quick, extra=extra, seconds_per_repeat=0.04)
    row = {"network": name, "batch": batch, **res}
    if extra:
        row["gemm_floor_us"] = row["extra_us"]["gemm_floor"]
    return row


def child(threads: int, networks: list, quick: bool, sklearn: bool, only=None, steps=(),
          flush_denormal=False) -> dict:
    """Measure at one thread count; returns the JSON-able result."""
    if hasattr(os, "sched_setaffinity"):  # n threads = n cores, also for JAX (see the docstring)
        os.sched_setaffinity(0, sorted(os.sched_getaffinity(0))[:threads])
    import cgrad
    # the calling thread's FTZ/DAZ: every framework of the process computes on it
    flush_denormal = flush_denormal and cgrad.set_flush_denormal(True)
    makers = available(threads, only)
    out = {"threads": threads, "frameworks": list(makers), "cgrad_version": cgrad.__version__,
           "blas": cgrad._C.blas_current(), "flush_denormal": flush_denormal}
    for mod in ("numpy", "torch", "jax"):
        try:
            out[f"{mod}_version"] = __import__(mod).__version__
        except ImportError:
            pass
    if "cgrad" in makers:  # the roofline beside cgrad; other frameworks' processes skip it
        out["sgemm_gflops"] = sgemm_gflops(512 if quick else 1024, quick)
        out["fma_peak_gflops"] = fma_peak_gflops()
    out["rows"] = []
    for net in networks:
        print(f"# {threads} thread(s): {net[0]}", file=sys.stderr, flush=True)
        out["rows"].append(measure_network(net, makers, quick))
    out["steps"] = []
    for workload in steps:  # the one-thread run's: all its frameworks in this process, interleaved
        print(f"# {threads} thread(s): {workload.NAME}", file=sys.stderr, flush=True)
        out["steps"].append(_steps.measure(workload, list(makers), quick))
    if sklearn:  # the one-thread run's extras
        out["digits"] = digits_fit(quick)
        out["steady_state"] = steady_state(quick)
    return out


def steady_state(quick: bool) -> dict:
    """Per step of the 64-128-64-10 network, eager and replayed: the core's allocations and
    the malloc calls behind them, the Python tensor objects made (one per op result, eager),
    Python function calls (cProfile's count), and the RSS growth over 10,000 steps after
    500 of warm-up."""
    import cProfile
    import pstats
    import cgrad
    name, sizes, act, loss, batch = NETWORKS[1]
    X, y = make_data(sizes, loss, batch)
    out = {"network": name}
    for mode, make in (("eager", cgrad_step), ("replay", cgrad_replay_step)):
        step, _ = make(sizes, act, loss, X, y, init_weights(sizes))
        for _ in range(500):
            step()
        n = 1000 if quick else 10_000
        a0, f0, w0, r0 = cgrad._C.alloc_count(), cgrad._C.fresh_alloc_count(), cgrad._C.wrapped_count(), rss_bytes()
        peak = r0
        for i in range(n):
            step()
            if i % 100 == 0:
                peak = max(peak, rss_bytes())
        peak = max(peak, rss_bytes())
        a1, f1, w1 = cgrad._C.alloc_count(), cgrad._C.fresh_alloc_count(), cgrad._C.wrapped_count()
        prof = cProfile.Profile()
        prof.enable()
        for _ in range(100):
            step()
        prof.disable()
        calls = pstats.Stats(prof).total_calls / 100
        out[mode] = {"steps": n, "core_allocations_per_step": (a1 - a0) / n, "mallocs_per_step": (f1 - f0) / n,
                     "tensor_objects_per_step": (w1 - w0) / n,
                     "python_calls_per_step": calls, "rss_growth_kib": (peak - r0) / 1024}
    return out


def digits_fit(quick: bool) -> dict:
    """scikit-learn's MLPClassifier(128, adam, max_iter=200) on the digits against cgrad's,
    same parameters; fit time (median of repeats) and test accuracy."""
    import cgrad
    X_train, y_train, X_test, y_test = cgrad.data.digits()
    params = dict(hidden_layer_sizes=(128,), solver="adam", max_iter=200, random_state=0)
    makers = {"cgrad": lambda: cgrad.MLPClassifier(**params)}
    try:
        import warnings
        from sklearn.exceptions import ConvergenceWarning
        from sklearn.neural_network import MLPClassifier
        warnings.filterwarnings("ignore", category=ConvergenceWarning)
        makers["sklearn"] = lambda: MLPClassifier(**params)
    except ImportError:
        pass
    times = {name: [] for name in makers}
    fitted = {}
    for _ in range(1 if quick else 7):  # interleaved, as the step benchmarks
        for name, make in makers.items():
            est = make()
            t0 = time.perf_counter()
            est.fit(X_train, y_train)
            times[name].append(time.perf_counter() - t0)
            fitted[name] = est
    return {name: {"fit_s": statistics.median(t), "min_s": min(t), "max_s": max(t),
                   "epochs": int(getattr(fitted[name], "n_iter_", 0)),
                   "test_accuracy": float(fitted[name].score(X_test, y_test))} for name, t in times.items()}


def merge(parts: list) -> dict:
    """One result from the processes of one thread count (see process_groups)."""
    out = dict(parts[0])
    out["frameworks"] = [f for p in parts for f in p["frameworks"]]
    out["rows"] = [dict(r, frameworks={}) for r in parts[0]["rows"]]
    for p in parts:
        for k, v in p.items():
            if k.endswith("_version") or k in ("digits", "steady_state") or (k == "steps" and v):
                out[k] = v
        for row, prow in zip(out["rows"], p["rows"]):
            row["frameworks"].update(prow["frameworks"])
            row.update({k: prow[k] for k in ("gemm_floor_us", "torch_compile") if k in prow})
    for row in out["rows"]:
        row["cgrad_gflops"] = row["gemm_flops"] / row["frameworks"]["cgrad"]["median_us"] / 1e3
        row["roofline_fraction"] = row["cgrad_gflops"] / out["sgemm_gflops"]
    return out


def _ratio(a: float, b: float) -> str:
    return f"{a / b:.2f}x"


def _targets(f: dict, targets: list) -> str:
    """Issue 17's targets of one row as text: what each asks, met or missed, the figure."""
    short = {"cgrad": "eager", "cgrad-replay": "replay"}
    out = []
    for k, against, bound in targets:
        if k not in f or (against != "us" and against not in f):
            continue
        if against == "us":
            value, ask, shown = f[k]["median_us"], f"<= {bound:g} us", f"{f[k]['median_us']:.1f} us"
        else:
            value = f[k]["median_us"] / f[against]["median_us"]
            ask, shown = f"<= {bound:g}x {against}", f"{value:.2f}x"
        out.append(f"{short.get(k, k)} {ask}: {'met' if value <= bound else 'missed'} ({shown})")
    return "; ".join(out)


def mlp_table(res: dict) -> tuple[list, list, list]:
    """The MLP rows of one thread count: (rows, columns, notes). Per network: each
    framework's median step [min-max]; cgrad eager and replay against the fastest peer of
    the run (PyTorch eager, torch.compile, JAX jit) and against JAX (the targets' peer);
    the GFLOP/s of cgrad's GEMMs and their share of the sgemm; the limit (the step's GEMM
    FLOPs at the FMA peak, at the sgemm speed without it) and the share of it eager and
    replay reach; the GEMM floor; issue 17's targets at one thread; the loss checks."""
    fw = list(res["frameworks"])
    if any("torch_compile" in r for r in res["rows"]) and "torch" in fw:
        fw.insert(fw.index("torch") + 1, "torch.compile")
    peak, peak_name = ((res["fma_peak_gflops"], "FMA-peak") if res.get("fma_peak_gflops")
                       else (res["sgemm_gflops"], "sgemm-peak"))
    rows, notes = [], []
    for r in res["rows"]:
        f = r["frameworks"]
        row = {"network": r["network"]}
        for k in fw:
            row[f"{k} us"] = (f"{f[k]['median_us']:.1f} [{f[k]['min_us']:.0f}-{f[k]['max_us']:.0f}]" if k in f
                              else "does not compile" if k == "torch.compile" else "")
        fastest = _steps.fastest_peer(f)
        if fastest:
            row["fastest peer"] = fastest
            for k, col in (("cgrad", "cgrad/peer"), ("cgrad-replay", "replay/peer")):
                if k in f:
                    row[col] = _ratio(f[k]["median_us"], f[fastest]["median_us"])
        if "jax" in f:
            row["cgrad/jax"] = _ratio(f["cgrad"]["median_us"], f["jax"]["median_us"])
            if "cgrad-replay" in f:
                row["replay/jax"] = _ratio(f["cgrad-replay"]["median_us"], f["jax"]["median_us"])
        if "numpy" in f:
            row["cgrad/numpy"] = _ratio(f["cgrad"]["median_us"], f["numpy"]["median_us"])
        if "cgrad@1" in f:
            row["cgrad/cgrad@1"] = _ratio(f["cgrad"]["median_us"], f["cgrad@1"]["median_us"])
        row["GFLOP/s"] = f"{r['cgrad_gflops']:.1f}"
        row["of sgemm"] = f"{100 * r['roofline_fraction']:.0f}%"
        limit = r["gemm_flops"] / peak / 1e3  # us
        row[f"{peak_name} us"] = f"{limit:.2f}" if limit < 10 else f"{limit:.1f}"
        for k, col in (("cgrad", "limit/cgrad"), ("cgrad-replay", "limit/replay")):
            if k in f:
                row[col] = f"{100 * limit / f[k]['median_us']:.0f}%"
        row["GEMM floor us"] = f"{r['gemm_floor_us']:.1f}"
        if fastest:
            row["floor/peer"] = _ratio(r["gemm_floor_us"], f[fastest]["median_us"])
        if res["threads"] == 1 and r["network"] in TARGETS:
            row["issue 17 target"] = _targets(f, TARGETS[r["network"]])
        bad = [k for k in f if not f[k]["loss_down"]]
        row["loss down"] = "NO: " + ",".join(bad) if bad else "yes"
        rows.append(row)
        notes += [f"{r['network']}: {line}" for line in _steps.agreement(r, MLPWorkload.CHECK_STEPS)]
        tc = r.get("torch_compile")
        if tc:
            notes.append(f"{r['network']}: " + (f"torch.compile took {tc['compile_s']:.1f} s to compile the step "
                                               f"(its first call)" if tc["compiles"]
                                               else f"torch.compile does not compile the step: {tc['error']}"))
    order = ["network"] + [f"{k} us" for k in fw] + \
        ["fastest peer", "cgrad/peer", "replay/peer", "cgrad/jax", "replay/jax", "cgrad/numpy", "cgrad/cgrad@1",
         "GFLOP/s", "of sgemm", f"{peak_name} us", "limit/cgrad", "limit/replay", "GEMM floor us", "floor/peer",
         "issue 17 target", "loss down"]
    columns = [c for c in order if any(c in row for row in rows)]
    if rows:
        notes.append(f"{res['rows'][0]['repeats']} repeats of each step, interleaved; a repeat runs many steps "
                     f"back to back and reads the loss once, at its end (JAX waits there for the steps it "
                     f"dispatched); medians [min-max]; ratios from this run. {peak_name} us: the step's GEMM FLOPs at "
                     f"{peak:.0f} GFLOP/s, which no step can beat; limit/cgrad and limit/replay: the share of "
                     f"that limit each reaches. The targets are printed, not asserted.")
    return rows, columns, notes


def markdown(results: list) -> str:
    parts = []
    for res in results:
        fw = res["frameworks"]
        head = (f"### {res['threads']} thread(s): cgrad {res['cgrad_version']} ({res['blas']}); "
                + ", ".join(f"{m} {res[m + '_version']}" for m in ("numpy", "torch", "jax") if m + "_version" in res)
                + f"; sgemm {res['sgemm_gflops']:.0f} GFLOP/s"
                + (f" (FMA peak of one core {res['fma_peak_gflops']:.0f})" if res.get("fma_peak_gflops") else "")
                + ("; subnormals flushed to zero (--flush-denormal)" if res.get("flush_denormal") else ""))
        rows, columns, notes = mlp_table(res)
        if rows or not res.get("steps"):
            parts += [head, "", table(rows, columns) if rows else "(no rows)", ""] + notes + [""] * bool(notes)
        else:
            parts += [head, ""]
        for step_res in res.get("steps", []):
            workload = next(w for w in STEP_WORKLOADS if w.NAME == step_res["workload"])
            parts += [f"{workload.NAME}, {res['threads']} thread(s):", "",
                      _steps.markdown(workload, step_res, res.get("fma_peak_gflops"), res.get("sgemm_gflops")), ""]
        if "digits" in res:
            d = res["digits"]
            drows = [{"estimator": k, "fit s": f"{v['fit_s']:.3f} [{v['min_s']:.3f}-{v['max_s']:.3f}]",
                      "epochs": v["epochs"], "test accuracy": f"{v['test_accuracy']:.3f}"} for k, v in d.items()]
            if "sklearn" in d:
                drows[0]["vs sklearn"] = f"{d['sklearn']['fit_s'] / d['cgrad']['fit_s']:.1f}x faster"
            parts += [f"digits, MLPClassifier(hidden_layer_sizes=(128,), solver='adam', max_iter=200), "
                      f"{res['threads']} thread(s):", "",
                      table(drows, ["estimator", "fit s", "epochs", "test accuracy", "vs sklearn"]), ""]
        if "steady_state" in res:
            st = res["steady_state"]
            srows = [{"mode": m, "steps": v["steps"], "core allocations/step": f"{v['core_allocations_per_step']:.1f}",
                      "malloc calls/step": f"{v['mallocs_per_step']:.3f}",
                      "Python tensors/step": f"{v['tensor_objects_per_step']:.0f}",
                      "Python calls/step": f"{v['python_calls_per_step']:.0f}",
                      "RSS growth": f"{v['rss_growth_kib']:.0f} KiB"} for m, v in st.items() if m != "network"]
            parts += [f"steady state, {st['network']}:", "",
                      table(srows, ["mode", "steps", "core allocations/step", "malloc calls/step",
                                    "Python tensors/step", "Python calls/step", "RSS growth"]), ""]
    return "\n".join(parts)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="few repeats: check that everything runs")
    parser.add_argument("--threads", default="1,2", help="comma-separated thread counts (default 1,2)")
    parser.add_argument("--networks", default="", help="only networks whose name contains this")
    parser.add_argument("--no-digits", action="store_true", help="skip the scikit-learn digits comparison")
    parser.add_argument("--no-pinn", action="store_true", help="skip the Burgers PINN step (benchmarks/pinn.py)")
    parser.add_argument("--no-cnn", action="store_true", help="skip the CNN steps (benchmarks/cnn.py)")
    parser.add_argument("--no-seq", action="store_true", help="skip the sequence steps (benchmarks/sequence.py)")
    parser.add_argument("--flush-denormal", action="store_true",
                        help="cgrad.set_flush_denormal(True) in each measuring process (it acts on every framework there)")
    parser.add_argument("--json", help="write the results to this file")
    parser.add_argument("--markdown", help="write the tables to this file")
    parser.add_argument("--child", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--child-out", help=argparse.SUPPRESS)
    parser.add_argument("--child-only", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    networks = [n for n in NETWORKS if args.networks in n[0]]
    skipped = {pinn} if args.no_pinn else set()
    skipped |= set(cnn.WORKLOADS) if args.no_cnn else set()
    skipped |= set(sequence.WORKLOADS) if args.no_seq else set()
    steps = [w for w in STEP_WORKLOADS if args.networks in w.NAME and w not in skipped]
    if args.child:
        only = args.child_only.split(",") if args.child_only else None
        result = child(args.child, networks, args.quick, not args.no_digits, only, steps if args.child == 1 else (),
                       args.flush_denormal)
        with open(args.child_out, "w") as f:
            json.dump(result, f)
        return
    results = []
    for n in (int(t) for t in args.threads.split(",")):
        parts = []
        for group in process_groups(n):
            with tempfile.TemporaryDirectory() as tmp:
                out = os.path.join(tmp, "result.json")
                cmd = [sys.executable, os.path.abspath(__file__), "--child", str(n), "--child-out", out,
                       "--networks", args.networks] + ["--quick"] * args.quick
                # the digits fit: at one thread, beside scikit-learn
                cmd += ["--no-digits"] * (args.no_digits or n > 1)
                cmd += ["--no-pinn"] * args.no_pinn + ["--no-cnn"] * args.no_cnn + ["--no-seq"] * args.no_seq  # (one thread only)
                cmd += ["--flush-denormal"] * args.flush_denormal
                cmd += ["--child-only", ",".join(group)] if group else []
                subprocess.run(cmd, env=thread_env(n), check=True)
                with open(out) as f:
                    parts.append(json.load(f))
        results.append(merge(parts))
        print(markdown(results[-1:]), flush=True)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=1)
    if args.markdown:
        with open(args.markdown, "w") as f:
            f.write(markdown(results))


if __name__ == "__main__":
    main()
