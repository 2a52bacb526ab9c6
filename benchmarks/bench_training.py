"""Training-step time of small MLPs: cgrad vs PyTorch eager vs hand-written numpy.

    python benchmarks/bench_training.py            # full run, a minute or two
    python benchmarks/bench_training.py --quick    # smoke run (CI)

One step = forward + loss + backward + SGD update, float32, one thread, each framework
written the way a user would write it. Medians over interleaved repeats (min-max in
brackets) and ratios from this same run; every framework's loss must go down.
"""
from __future__ import annotations

import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _harness import measure_together, start, summary, table  # noqa: E402

NETWORKS = [
    # name, layer sizes, activation, loss, batch
    ("2-16-16-1 tanh MSE b32", [2, 16, 16, 1], "tanh", "mse", 32),
    ("64-128-64-10 relu CE b64", [64, 128, 64, 10], "relu", "ce", 64),
    ("784-256-256-10 relu CE b128", [784, 256, 256, 10], "relu", "ce", 128),
    ("32-(32x16)-10 relu CE b16", [32] + [32] * 16 + [10], "relu", "ce", 16),
]
LR = 0.01


def make_data(sizes, loss, batch, seed=0):
    import numpy as np
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((batch, sizes[0])).astype(np.float32)
    if loss == "mse":
        y = rng.standard_normal((batch, sizes[-1])).astype(np.float32)
    else:
        y = rng.integers(0, sizes[-1], batch).astype(np.int64)
    return X, y


def init_weights(sizes, seed=0):
    """PyTorch's default Linear init, shared by every framework so they start alike."""
    import numpy as np
    rng = np.random.default_rng(seed)
    out = []
    for a, b in zip(sizes[:-1], sizes[1:]):
        bound = 1 / np.sqrt(a)
        out.append((rng.uniform(-bound, bound, (b, a)).astype(np.float32),
                    rng.uniform(-bound, bound, b).astype(np.float32)))
    return out


def cgrad_step(sizes, act, loss, X, y, weights):
    import cgrad
    from cgrad import nn
    model = nn.MLP(sizes, activation=act)
    model.load_state_dict({f"{2 * i}.{k}": v for i, (w, b) in enumerate(weights)
                           for k, v in (("weight", w), ("bias", b))})
    opt = cgrad.optim.SGD(model.parameters(), lr=LR)
    xb = cgrad.from_numpy(X)
    lossfn = nn.functional.mse_loss if loss == "mse" else nn.functional.cross_entropy

    def step():
        opt.zero_grad()
        out = lossfn(model(xb), y)
        out.backward()
        opt.step()
        return out.item()
    return step


def torch_step(sizes, act, loss, X, y, weights):
    import torch
    layers = []
    for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
        layers.append(torch.nn.Linear(a, b))
        if i < len(sizes) - 2:
            layers.append(torch.nn.Tanh() if act == "tanh" else torch.nn.ReLU())
    model = torch.nn.Sequential(*layers)
    with torch.no_grad():
        for layer, (w, b) in zip([m for m in model if isinstance(m, torch.nn.Linear)], weights):
            layer.weight.copy_(torch.from_numpy(w))
            layer.bias.copy_(torch.from_numpy(b))
    opt = torch.optim.SGD(model.parameters(), lr=LR)
    xb, yb = torch.from_numpy(X), torch.from_numpy(y)
    lossfn = torch.nn.functional.mse_loss if loss == "mse" else torch.nn.functional.cross_entropy

    def step():
        opt.zero_grad()
        out = lossfn(model(xb), yb)
        out.backward()
        opt.step()
        return out.item()
    return step


def numpy_step(sizes, act, loss, X, y, weights):
    """Hand-written forward and backward, as a numpy user would write them."""
    import numpy as np
    Ws = [w.T.copy() for w, _ in weights]  # [in, out]
    bs = [b.copy() for _, b in weights]
    n = len(X)

    def step():
        hs, zs = [X], []
        for i, (W, b) in enumerate(zip(Ws, bs)):
            z = hs[-1] @ W + b
            zs.append(z)
            if i < len(Ws) - 1:
                hs.append(np.tanh(z) if act == "tanh" else np.maximum(z, 0))
        out = zs[-1]
        if loss == "mse":
            diff = out - y
            value = float(np.mean(diff * diff))
            dz = 2 * diff / diff.size
        else:
            m = out.max(axis=1, keepdims=True)
            e = np.exp(out - m)
            s = e.sum(axis=1, keepdims=True)
            value = float(np.mean(np.log(s[:, 0]) + m[:, 0] - out[np.arange(n), y]))
            dz = e / s
            dz[np.arange(n), y] -= 1
            dz /= n
        for i in range(len(Ws) - 1, -1, -1):
            dW = hs[i].T @ dz
            db = dz.sum(axis=0)
            if i:
                dh = dz @ Ws[i].T
                dz = dh * (1 - hs[i] ** 2) if act == "tanh" else dh * (zs[i - 1] > 0)
            Ws[i] -= LR * dW
            bs[i] -= LR * db
        return value
    return step


def main() -> None:
    args, cgrad, torch = start(__doc__)
    repeat = 3 if args.quick else 11
    print(f"# training step, float32, 1 thread; cgrad {cgrad.__version__} ({cgrad._C.blas_current()}), "
          f"torch {torch.__version__ if torch else 'not installed'}")
    rows = []
    for name, sizes, act, loss, batch in NETWORKS:
        X, y = make_data(sizes, loss, batch)
        weights = init_weights(sizes)
        makers = {"cgrad": cgrad_step, "numpy": numpy_step}
        if torch is not None:
            makers["torch"] = torch_step
        steps = {k: make(sizes, act, loss, X, y, weights) for k, make in makers.items()}
        first = {k: s() for k, s in steps.items()}
        flops = 6 * batch * sum(a * b for a, b in zip(sizes[:-1], sizes[1:]))
        number = max(int(2e8 / max(flops, 1) * (0.05 if args.quick else 1)), 5)
        number = min(number, 2000)
        samples = measure_together(list(steps.values()), number, repeat)
        med = {k: summary(s, 1e6) for k, s in zip(steps, samples)}
        last = {k: s() for k, s in steps.items()}
        row = {"network": name}
        for k, (m, lo, hi) in med.items():
            row[f"{k} us"] = f"{m:.1f} [{lo:.0f}-{hi:.0f}]"
        row["cgrad/numpy"] = f"{med['cgrad'][0] / med['numpy'][0]:.2f}x"
        if "torch" in med:
            row["cgrad/torch"] = f"{med['cgrad'][0] / med['torch'][0]:.2f}x"
        row["loss down"] = "yes" if all(last[k] < first[k] for k in steps) else \
            "NO: " + ",".join(k for k in steps if not last[k] < first[k])
        rows.append(row)
    columns = ["network", "cgrad us", "numpy us"] + (["torch us"] if torch else []) + \
        ["cgrad/numpy"] + (["cgrad/torch"] if torch else []) + ["loss down"]
    print(table(rows, columns))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=1)


if __name__ == "__main__":
    main()
