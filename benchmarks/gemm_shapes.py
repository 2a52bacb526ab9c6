"""The float32 GEMMs the benchmark's training steps make, and a bake-off of the libraries on them.

    python benchmarks/gemm_shapes.py            # shapes of every workload, then the bake-off
    python benchmarks/gemm_shapes.py --quick    # CI smoke: two workloads, few samples
    python benchmarks/gemm_shapes.py --shapes   # the shapes only

Shapes: one eager training step of every workload of `python -m benchmarks` (the MLPs of
benchmarks/networks.py, the CNN and sequence workloads, the PINN) run with cgrad's GEMM
trace on (cgrad._C.gemm_trace; a replayed step makes the same GEMMs), cgrad's own kernels
switched off so that every product shows as the sgemm it is: transpose flags, M, N, K, the
leading dimensions, beta (1: accumulates into a gradient) and the calls per step.

Bake-off: benchmarks/gemm_bakeoff.c, compiled here with the system C compiler, times each
distinct shape in C (through ctypes a call costs about 1 us, more than these GEMMs) under
each library at hand, single-threaded, samples interleaved across libraries:
  - OpenBLAS: cgrad's scipy-openblas32 (scipy_cblas_sgemm);
  - BLIS: Debian's libblis4 (`apt-get install libblis-dev`), through its CBLAS;
  - MKL: libmkl_rt if the loader finds it (`pip install mkl` and LD_LIBRARY_PATH);
  - libxsmm: Debian's libxsmm-dev 1.17 (static library, linked in), its JIT kernels;
    shapes its JIT does not take are reported as absent;
  - cgrad: csrc/small_gemm.c's kernels, compiled in: cgrad-avx2, and cgrad-avx512 where the
    CPU has AVX-512F (the one cgrad runs there).
A library not installed is reported as absent. Printed per shape: median ns, GFLOP/s and %
of the core's FMA peak (measured by the same program), the fastest marked, and which one
cgrad's rule (cg_small_sgemm_wins, or cg_large_sgemm_wins above it) runs on one thread;
then per workload the step's GEMM time under OpenBLAS alone and as cgrad dispatches.
Wall-clock medians: on a busy machine they are noisy (the min-of-samples column helps); the
program never fails for being slow.
"""
from __future__ import annotations

import argparse
import glob
import os
import shutil
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, HERE)

LIBS = ["openblas", "blis", "mkl", "libxsmm", "cgrad-avx2", "cgrad-avx512"]


def _workloads(quick: bool):
    """(name, step) for each workload: step() runs one eager cgrad training step."""
    import numpy as np

    import cgrad
    import networks
    out = []
    nets = networks.NETWORKS[:2] if quick else [n for n in networks.NETWORKS if not n[0].startswith("1024")]
    for name, sizes, act, loss, batch in nets:
        X, y = networks.make_data(sizes, loss, batch)
        step, _sync = networks.cgrad_step(sizes, act, loss, X, y, networks.init_weights(sizes))
        out.append((name, step))
    if quick:
        return out
    import cnn
    import pinn
    import sequence
    for w in list(cnn.WORKLOADS) + list(sequence.WORKLOADS) + [pinn]:
        step, _sync = w.FRAMEWORKS["cgrad"](w.make_batch(), w.init())
        out.append((w.NAME, step))
    del np, cgrad
    return out


def trace_shapes(quick: bool):
    """{workload: {shape: calls per step}}, shape = (ta, tb, M, N, K, lda, ldb, ldc, beta)."""
    from cgrad import _C
    per = {}
    _C.small_gemm_isa("off"), _C.skinny_isa("off")
    try:
        for name, step in _workloads(quick):
            step()  # first step: lazy state (optimizer buffers) made outside the trace
            _C.gemm_trace(True)
            try:
                step()
            finally:
                _C.gemm_trace(False)
            shapes = {}
            for t in _C.gemm_trace_read():
                if t["dtype"] != "float32":
                    continue
                key = (int(t["ta"]), int(t["tb"]), t["M"], t["N"], t["K"], t["lda"], t["ldb"], t["ldc"], t["beta"])
                shapes[key] = shapes.get(key, 0) + t["count"]
            per[name] = shapes
    finally:
        _C.small_gemm_isa("best")
        _C.skinny_isa("best")
    return per


def _flags(key):
    return ("T" if key[0] else "N") + ("T" if key[1] else "N")


def _fmt_shape(key):
    ta, tb, M, N, K, lda, ldb, ldc, beta = key
    lds = f"ld {lda},{ldb},{ldc}"
    return f"{_flags(key)} {M}x{N}x{K} {lds} b{beta:g}"


def print_shapes(per):
    for name, shapes in per.items():
        print(f"\n{name}: {sum(shapes.values())} float32 GEMMs per step, {len(shapes)} distinct")
        for key, n in sorted(shapes.items(), key=lambda kv: -kv[0][2] * kv[0][3] * kv[0][4]):
            print(f"  {_fmt_shape(key):40s} x{n}")


def build_bakeoff(tmp):
    """The bake-off program (with libxsmm linked in when its static library is installed)."""
    cc = shutil.which("cc") or shutil.which("gcc")
    if not cc:
        return None, "no C compiler"
    exe = os.path.join(tmp, "gemm_bakeoff")
    base = [cc, "-O3", "-fno-math-errno", "-fno-trapping-math", "-I", os.path.join(ROOT, "csrc"),
            os.path.join(HERE, "gemm_bakeoff.c"), os.path.join(ROOT, "csrc", "small_gemm.c"), "-o", exe]
    libs = ["-ldl", "-lm", "-lpthread"]
    xsmm = [p for p in ("/usr/lib/libxsmm.a", "/usr/lib/x86_64-linux-gnu/libxsmm.a") if os.path.exists(p)]
    if xsmm and os.path.exists("/usr/include/libxsmm.h"):
        noblas = xsmm[0].replace("libxsmm.a", "libxsmmnoblas.a")
        if subprocess.run(base + ["-DHAVE_LIBXSMM", xsmm[0], noblas] + libs, capture_output=True).returncode == 0:
            return exe, None
    r = subprocess.run(base + libs, capture_output=True, text=True)
    return (exe, None) if r.returncode == 0 else (None, r.stderr[-500:])


def openblas_library():
    """cgrad's OpenBLAS: the copy an installed wheel bundles beside cgrad's extension, else the
    scipy-openblas32 package a source build links ("" when neither is there: reported absent)."""
    import cgrad
    dirs = [os.path.dirname(cgrad._C.__file__)]
    try:
        import scipy_openblas32
        dirs.append(scipy_openblas32.get_lib_dir())
    except ImportError:
        pass
    for d in dirs:
        found = sorted(glob.glob(os.path.join(d, "libscipy_openblas*.so*")))
        if found:
            return found[0]
    return ""


def run_bakeoff(shapes, samples, target_ns):
    """{shape: {lib: (median_ns, min_ns, rel_err) or reason absent}}, the FMA peak in GFLOP/s
    and {shape: True where cgrad's rule runs its own kernel}."""
    with tempfile.TemporaryDirectory() as tmp:
        exe, why = build_bakeoff(tmp)
        if exe is None:
            raise SystemExit(f"gemm_shapes: cannot build benchmarks/gemm_bakeoff.c: {why}")
        lines = "".join(f"{ta} {tb} {M} {N} {K} {lda} {ldb} {ldc} {beta:g}\n"
                        for ta, tb, M, N, K, lda, ldb, ldc, beta in shapes)
        env = dict(os.environ, BLIS_NUM_THREADS="1", OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
        out = subprocess.run([exe, openblas_library(), str(samples), str(target_ns)], input=lines, text=True,
                             capture_output=True, env=env, check=True).stdout
    res = {s: {} for s in shapes}
    rule, peak, absent = {}, None, {}
    for line in out.splitlines():
        f = line.split()
        if f[0] == "lib":
            absent[f[1]] = " ".join(f[3:])
        elif f[0] == "peak":
            peak = float(f[1])
        elif f[0] == "rule":
            rule[shapes[int(f[1])]] = f[2] == "cgrad"
        elif f[0] == "shape":
            s = shapes[int(f[1])]
            res[s][f[2]] = " ".join(f[4:]) if f[3] == "absent" else (float(f[3]), float(f[4]), float(f[5]))
    return res, peak, rule, absent


def print_bakeoff(per, res, peak, rule, absent):
    calls = {}
    for shapes in per.values():
        for k, n in shapes.items():
            calls[k] = calls.get(k, 0) + n
    print(f"\nBake-off: median ns (min) per call, GFLOP/s and % of the FMA peak ({peak:.1f} GFLOP/s, this run),"
          " 1 thread; * the fastest; rule: what cgrad runs")
    for lib, why in sorted(absent.items()):
        print(f"  {lib}: absent, {why}")
    libs = [lib for lib in LIBS if lib not in absent]
    print(f"  {'shape':40s} {'calls':>5s} " + " ".join(f"{lib:>24s}" for lib in libs) + "  rule")
    for s in sorted(res, key=lambda k: (k[2] * k[3] * k[4], k)):
        flops = 2.0 * s[2] * s[3] * s[4]
        best = min((v[0] for v in res[s].values() if not isinstance(v, str)), default=None)
        cells = []
        for lib in libs:
            v = res[s].get(lib)
            if v is None or isinstance(v, str):
                cells.append(f"{'-':>24s}")
                continue
            mark = "*" if v[0] == best else " "
            g = flops / v[0]
            cells.append(f"{v[0]:8.0f} ({v[1]:6.0f}) {g:5.1f} {100 * g / peak:3.0f}%{mark}")
        print(f"  {_fmt_shape(s):40s} {calls.get(s, 0):5d} " + " ".join(cells) + ("  cgrad" if rule.get(s) else "  openblas"))
    print("\nPer workload: the step's float32 GEMMs (sum of calls x median) under OpenBLAS alone, as cgrad"
          " dispatches, and at the FMA peak")
    ours_lib = "cgrad-avx512" if "cgrad-avx512" not in absent else "cgrad-avx2"  # what cgrad runs here
    for name, shapes in per.items():
        ob = sum(n * res[s]["openblas"][0] for s, n in shapes.items())
        ours = sum(n * res[s][ours_lib if rule.get(s) and isinstance(res[s].get(ours_lib), tuple) else "openblas"][0]
                   for s, n in shapes.items())
        ideal = sum(n * 2.0 * s[2] * s[3] * s[4] / peak for s, n in shapes.items())
        print(f"  {name:60s} openblas {ob / 1e3:9.1f} us  cgrad {ours / 1e3:9.1f} us ({ours / ob:.2f}x)"
              f"  peak {ideal / 1e3:8.1f} us ({ideal / ours:.0%} of it)")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="CI smoke: two workloads, few samples")
    ap.add_argument("--shapes", action="store_true", help="print the traced shapes only")
    ap.add_argument("--samples", type=int, default=None, help="interleaved samples per shape and library")
    args = ap.parse_args()
    per = trace_shapes(args.quick)
    print_shapes(per)
    if args.shapes:
        return
    shapes = sorted({k for s in per.values() for k in s})
    samples = args.samples or (3 if args.quick else 31)
    res, peak, rule, absent = run_bakeoff(shapes, samples, 2_000 if args.quick else 30_000)
    print_bakeoff(per, res, peak, rule, absent)


if __name__ == "__main__":
    main()
