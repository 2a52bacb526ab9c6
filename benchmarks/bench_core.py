"""Core engine costs, float32, one thread, beside numpy (and PyTorch when installed).

    python benchmarks/bench_core.py            # full run, ~1 minute
    python benchmarks/bench_core.py --quick    # smoke run (CI)

Reports (medians over interleaved repeats, min-max in brackets, ratios from this same run;
per-op figures have the cost of the timing loop and a lambda call subtracted):
  1. the cost of one forward op on a 4-element tensor called from Python, with and
     without requires_grad (recorded on the tape or not);
  2. the backward cost per tape node: backward of a chain of 101 ops minus a chain of 1,
     divided by 100 (an upper bound on the overhead: it includes a 4-element kernel);
  3. GEMM speed through matmul at 64, 256 and 1024 square, in GFLOP/s;
  4. two kernels at training sizes, no graph: tanh over 512 floats (the 2-16-16-1
     network's hidden layer) and cross_entropy over [200, 10] logits (the digits batch);
  5. the scatter-add backward rules on rows of one element (forward, sum and backward
     together): gathering 100,000 values of a 1-D tensor, and concatenating two
     [100000, 1] columns;
  6. the GPT step's ops other than its GEMMs, at nanoGPT's CPU shapes, forward + backward
     (beside torch): GELU over [768, 512], layer norm over [768, 128], a head transpose
     [12, 64, 4, 32] -> contiguous, causal attention over [12, 4, 64, 32].
"""
from __future__ import annotations

import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _harness import measure, measure_together, start, summary, table  # noqa: E402


def main() -> None:
    args, cgrad, torch = start(__doc__)
    import numpy as np

    repeat = 3 if args.quick else 15
    scale = 0.02 if args.quick else 1.0
    print(f"# cgrad {cgrad.__version__}, BLAS {cgrad._C.blas_current()}, numpy {np.__version__}, "
          f"torch {torch.__version__ if torch else 'not installed'}; 1 thread, float32")
    rows = []

    # ---- 1. per-op forward cost ----
    a_np = np.ones(4, np.float32)
    a, b = cgrad.tensor(a_np), cgrad.tensor(a_np)
    ag, bg = cgrad.tensor(a_np, requires_grad=True), cgrad.tensor(a_np, requires_grad=True)
    cases = [
        ("a + b", lambda: a + b, lambda: ag + bg),
        ("a * 2.0", lambda: a * 2.0, lambda: ag * 2.0),
        ("a.relu()", lambda: a.relu(), lambda: ag.relu()),
        ("a.sum()", lambda: a.sum(), lambda: ag.sum()),
    ]
    n_op = max(int(50_000 * scale), 500)
    np_ops = {"a + b": lambda: a_np + a_np, "a * 2.0": lambda: a_np * 2.0,
              "a.relu()": lambda: np.maximum(a_np, 0), "a.sum()": lambda: a_np.sum()}
    if torch is not None:
        ta, tag = torch.ones(4), torch.ones(4, requires_grad=True)
        t_ops = {"a + b": (lambda: ta + ta, lambda: tag + tag), "a * 2.0": (lambda: ta * 2.0, lambda: tag * 2.0),
                 "a.relu()": (lambda: ta.relu(), lambda: tag.relu()), "a.sum()": (lambda: ta.sum(), lambda: tag.sum())}
    for name, plain, recorded in cases:
        fns = [plain, recorded, np_ops[name]] + ([t_ops[name][1]] if torch is not None else [])
        samples = measure_together(fns, n_op, repeat)
        (med_p, lo_p, hi_p), (med_r, lo_r, hi_r), (med_np, _, _) = (summary(x) for x in samples[:3])
        row = {"benchmark": f"forward op {name} (4 elems)", "cgrad ns": f"{med_p:.0f} [{lo_p:.0f}-{hi_p:.0f}]",
               "cgrad recorded ns": f"{med_r:.0f} [{lo_r:.0f}-{hi_r:.0f}]", "numpy ns": f"{med_np:.0f}",
               "recorded / numpy": f"{med_r / med_np:.2f}x"}
        if torch is not None:
            med_t = summary(samples[3])[0]
            row["torch recorded ns"] = f"{med_t:.0f}"
            row["recorded / torch"] = f"{med_r / med_t:.2f}x"
        rows.append(row)

    # ---- 2. backward cost per node ----
    def cgrad_chain(k):
        x = cgrad.tensor(a_np, requires_grad=True)
        y = x
        for _ in range(k):
            y = y * 1.0001
        return y.sum()

    def per_node(make, k_small=1, k_big=101, number=max(int(2000 * scale), 50)):
        small, big = make(k_small), make(k_big)
        t_small = summary(measure(lambda: small.backward(retain_graph=True), number, repeat))[0]
        t_big = summary(measure(lambda: big.backward(retain_graph=True), number, repeat))[0]
        return (t_big - t_small) / (k_big - k_small), t_small

    node_ns, call_ns = per_node(cgrad_chain)
    row = {"benchmark": "backward per tape node (mul, 4 elems)", "cgrad ns": f"{node_ns:.1f}",
           "cgrad recorded ns": f"call {call_ns:.0f}"}
    if torch is not None:
        def torch_chain(k):
            x = torch.ones(4, requires_grad=True)
            y = x
            for _ in range(k):
                y = y * 1.0001
            return y.sum()
        t_node, t_call = per_node(torch_chain)
        row["torch recorded ns"] = f"{t_node:.0f} (call {t_call:.0f})"
        row["recorded / torch"] = f"{node_ns / t_node:.2f}x"
    rows.append(row)

    # ---- 3. GEMM ----
    rng = np.random.default_rng(0)
    for n in (64, 256, 1024):
        x_np = rng.standard_normal((n, n)).astype(np.float32)
        x = cgrad.tensor(x_np)
        flop = 2.0 * n ** 3
        number = max(int((2e9 / flop) * scale), 1)
        fns = [lambda: x @ x, lambda: x_np @ x_np]
        if torch is not None:
            tx = torch.from_numpy(x_np)
            fns.append(lambda: tx @ tx)
        meds = [summary(m, 1.0)[0] for m in measure_together(fns, number, repeat, subtract_loop=False)]
        row = {"benchmark": f"matmul {n}x{n}x{n} GFLOP/s", "cgrad ns": f"{flop / meds[0] / 1e9:.1f}",
               "numpy ns": f"{flop / meds[1] / 1e9:.1f}", "recorded / numpy": f"time {meds[0] / meds[1]:.2f}x"}
        if torch is not None:
            row["torch recorded ns"] = f"{flop / meds[2] / 1e9:.1f}"
            row["recorded / torch"] = f"time {meds[0] / meds[2]:.2f}x"
        rows.append(row)

    # ---- 4. kernels at training sizes (tanh, exp: csrc/fastmath.h; cross_entropy: csrc/loss.c) ----
    h_np = rng.standard_normal((32, 16)).astype(np.float32)
    z_np = rng.standard_normal((200, 10)).astype(np.float32)
    t_np = rng.integers(0, 10, 200)
    h, z = cgrad.tensor(h_np), cgrad.tensor(z_np)

    def np_cross_entropy():
        m = z_np.max(axis=1, keepdims=True)
        lse = np.log(np.exp(z_np - m).sum(axis=1)) + m[:, 0]
        return float(np.mean(lse - z_np[np.arange(200), t_np]))

    kernels = [("tanh over [32, 16]", lambda: h.tanh(), lambda: np.tanh(h_np)),
               ("cross_entropy over [200, 10]", lambda: cgrad.nn.functional.cross_entropy(z, t_np),
                np_cross_entropy)]
    with cgrad.no_grad():
        for name, fn, ref in kernels:
            (med, lo, hi), (med_np, _, _) = (summary(x) for x in measure_together([fn, ref], max(int(20_000 * scale), 200), repeat))
            rows.append({"benchmark": f"forward {name}", "cgrad ns": f"{med:.0f} [{lo:.0f}-{hi:.0f}]",
                         "numpy ns": f"{med_np:.0f}", "recorded / numpy": f"{med / med_np:.2f}x"})

    # ---- 5. scatter-add backward rules (csrc/shape_impl.h), rows of one element ----
    v = cgrad.tensor(rng.standard_normal(100_000).astype(np.float32), requires_grad=True)
    col = cgrad.tensor(rng.standard_normal((100_000, 1)).astype(np.float32), requires_grad=True)
    picks = rng.integers(0, 100_000, 100_000)
    scatter = [("gather 100,000 of [100000]", lambda: v[picks].sum().backward()),
               ("concat [100000, 1] x 2, axis 1", lambda: cgrad.concatenate([col, col], axis=1).sum().backward())]
    for name, fn in scatter:
        (med, lo, hi), = (summary(x) for x in measure_together([fn], max(int(200 * scale), 5), repeat))
        rows.append({"benchmark": f"forward + backward {name}", "cgrad recorded ns": f"{med:.0f} [{lo:.0f}-{hi:.0f}]"})

    # ---- 6. the GPT step's non-GEMM ops (fastmath.h's GELU, norm.c, shape.c, attention.c) ----
    def fwd_bwd(lib, make):
        """forward + backward of make(lib, x) against a fixed upstream gradient."""
        def build(shape):
            a = rng.standard_normal(shape).astype(np.float32)
            x = (lib.tensor(a).requires_grad_() if lib is cgrad else lib.tensor(a, requires_grad=True))
            y = make(lib, x)
            g = lib.tensor(rng.standard_normal(tuple(y.shape)).astype(np.float32))
            return lambda: make(lib, x).backward(g)
        return build

    gpt_ops = [("GELU [768, 512]", (768, 512), lambda lib, x: lib.nn.functional.gelu(x)),
               ("layer_norm [768, 128]", (768, 128), lambda lib, x: lib.nn.functional.layer_norm(x, (128,))),
               ("transpose(1, 2).contiguous() [12, 64, 4, 32]", (12, 64, 4, 32),
                lambda lib, x: x.transpose(1, 2).contiguous()),
               ("causal attention [12, 4, 64, 32]", (12, 4, 64, 32),
                lambda lib, x: lib.nn.functional.scaled_dot_product_attention(x, x, x, is_causal=True))]
    for name, shape, make in gpt_ops:
        fns = [fwd_bwd(cgrad, make)(shape)] + ([fwd_bwd(torch, make)(shape)] if torch is not None else [])
        meds = [summary(m) for m in measure_together(fns, max(int(100 * scale), 3), repeat)]
        row = {"benchmark": f"forward + backward {name}", "cgrad recorded ns": f"{meds[0][0]:.0f} [{meds[0][1]:.0f}-{meds[0][2]:.0f}]"}
        if torch is not None:
            row["torch recorded ns"] = f"{meds[1][0]:.0f}"
            row["recorded / torch"] = f"{meds[0][0] / meds[1][0]:.2f}x"
        rows.append(row)

    columns = ["benchmark", "cgrad ns", "cgrad recorded ns", "numpy ns", "recorded / numpy"]
    if torch is not None:
        columns += ["torch recorded ns", "recorded / torch"]
    print(table(rows, columns))
    print("(GEMM rows: GFLOP/s in the ns columns, and the time ratio)")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=1)


if __name__ == "__main__":
    main()
