"""The PINN step's kernels one at a time, on its shapes (2,000 points x 20 units, float32,
1 thread): tanh, its one-op backward, the three matrix products (X W, X W^T, G^T X) and a
linear layer with bias, each through cgrad's skinny GEMMs (csrc/skinny_gemm.c, where the CPU
has AVX-512) and through OpenBLAS, interleaved; also the skinny kernel of another workload,
the MNIST-1D GRU's W_ih gradient over its one input feature (G^T x, 18x1x4000: the narrow
kernel). Medians of the repeats, in microseconds.

    python benchmarks/pinn_kernels.py [--quick]
"""
from __future__ import annotations

import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _harness import measure_together, start, summary, table  # noqa: E402


def main() -> None:
    args, cgrad, _ = start(__doc__)
    from cgrad import _C
    rng = np.random.default_rng(0)
    x, g = (cgrad.tensor(rng.standard_normal((2000, 20)), dtype=cgrad.float32) for _ in range(2))
    w = cgrad.tensor(rng.standard_normal((20, 20)), dtype=cgrad.float32)
    b = cgrad.tensor(rng.standard_normal(20), dtype=cgrad.float32)
    products = {"X W": lambda: _C.gemm(x, w, False, False), "X W^T": lambda: _C.gemm(x, w, False, True),
                "G^T X (K = 2,000)": lambda: _C.gemm(g, x, True, False), "linear with bias": lambda: _C.linear(x, w, b)}
    g_rnn, x_rnn = (cgrad.tensor(rng.standard_normal((4000, n)), dtype=cgrad.float32) for n in (18, 1))
    products["GRU W_ih: G^T x (18x1x4000)"] = lambda: _C.gemm(g_rnn, x_rnn, True, False)
    number, repeat = (20, 3) if args.quick else (200, 15)
    rows = []
    with cgrad.no_grad():
        for name, fn in (("tanh", lambda: x.tanh()), ("tanh_backward", lambda: _C.tanh_backward(g, x))):
            (t,) = measure_together([fn], number, repeat)
            rows.append({"kernel": name, "us": f"{summary(t, 1e6)[0]:.1f}"})
        isa = _C.skinny_isa("best")

        def via(which, fn):
            def run():
                _C.skinny_isa(which)
                fn()
            return run
        for name, fn in products.items():
            ours, blas = measure_together([via("best", fn), via("off", fn)], number, repeat)
            rows.append({"kernel": name, "us": f"{summary(ours, 1e6)[0]:.1f}", "OpenBLAS us": f"{summary(blas, 1e6)[0]:.1f}"})
        _C.skinny_isa("best")
    print(f"skinny GEMMs: {isa}; BLAS: {_C.blas_config()}")
    print(table(rows, ["kernel", "us", "OpenBLAS us"]))


if __name__ == "__main__":
    main()
