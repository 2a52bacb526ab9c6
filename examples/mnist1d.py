"""The MNIST-1D CNN and GRU (Greydanus 2020, "Scaling Down Deep Learning"), written as a
PyTorch program with only the import changed.

Usage:

    python examples/mnist1d.py                 # cgrad, the paper's CNN and recipe (a few seconds)
    python examples/mnist1d.py --model gru     # the paper's bidirectional GRU
    python examples/mnist1d.py --compile       # each step recorded once and replayed in C
    python examples/mnist1d.py --torch         # the same script on PyTorch, to compare
    python examples/mnist1d.py --quick         # a smoke test

The paper's models: the CNN Conv1d(1, 25, 5, stride 2, padding 1), ReLU,
Conv1d(25, 25, 3, 2, 1), ReLU, Conv1d(25, 25, 3, 2, 1), ReLU, flatten, Linear(125, 10); the
GRU a bidirectional GRU (input 1, hidden 6) over the 40 samples, flatten (480),
Linear(480, 10) (cgrad/models.py). The recipe: cross-entropy, Adam lr 1e-2, batch 100,
6,000 steps over the 4,000 training signals in order; then the test accuracy on the 1,000
test signals (the paper reports 94% for its CNN, 91% for its GRU, 68% for an MLP). It
prints the test accuracy, the training time and the time per step, on one thread unless
--threads says otherwise. Options: --model, --steps, --seed, --threads, --quick (200
steps), --compile (cgrad only), --torch.
"""
import argparse
import sys
import time

import numpy as np

from cgrad.data import mnist1d  # the canonical split, bundled with cgrad (Apache-2.0)
from cgrad.models import mnist1d_gru  # the paper's GRU, written in PyTorch's nn

if "--torch" in sys.argv[1:]:
    import torch
else:
    import cgrad as torch

nn = torch.nn


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", choices=("cnn", "gru"), default="cnn", help="the paper's CNN (default) or GRU")
    p.add_argument("--steps", type=int, default=6000, help="Adam steps (default 6000, the paper's)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--quick", action="store_true", help="200 steps: a smoke test")
    p.add_argument("--compile", action="store_true", help="cgrad only: record one step, replay it (cgrad.compile)")
    p.add_argument("--torch", action="store_true", help="run on PyTorch instead of cgrad")
    args = p.parse_args(argv)
    if args.compile and args.torch:
        p.error("--compile is cgrad's (cgrad.compile); PyTorch's torch.compile is a different thing")
    return args


def make_model(kind):
    if kind == "gru":
        return mnist1d_gru(nn)
    return nn.Sequential(
        nn.Conv1d(1, 25, 5, stride=2, padding=1), nn.ReLU(),
        nn.Conv1d(25, 25, 3, stride=2, padding=1), nn.ReLU(),
        nn.Conv1d(25, 25, 3, stride=2, padding=1), nn.ReLU(),
        nn.Flatten(), nn.Linear(125, 10))


def main(argv=None):
    args = parse_args(argv)
    steps = 200 if args.quick else args.steps
    torch.manual_seed(args.seed)
    torch.set_num_threads(args.threads)
    X, y, X_test, y_test = mnist1d()
    if args.model == "cnn":  # a Conv1d reads [N, channels, length]; the GRU [N, length]
        X, X_test = X[:, None, :], X_test[:, None, :]
    X, X_test = torch.from_numpy(X), torch.from_numpy(X_test)
    y, y_test = torch.from_numpy(y), torch.from_numpy(y_test)
    model = make_model(args.model)
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)

    def step(xb, yb):
        opt.zero_grad()
        loss = nn.functional.cross_entropy(model(xb), yb)
        loss.backward()
        opt.step()
        return loss

    if args.compile:
        step = torch.compile(step)
    print(f"MNIST-1D {args.model.upper()} on {'PyTorch' if args.torch else 'cgrad'}{' (compiled)' if args.compile else ''}: "
          f"{sum(p.numel() for p in model.parameters()):,} parameters, {steps} steps of batch 100")
    t0 = time.perf_counter()
    for i in range(steps):
        j = i * 100 % len(X)
        loss = step(X[j:j + 100], y[j:j + 100])
        if (i + 1) % 1000 == 0 or i + 1 == steps:
            print(f"step {i + 1:5d}  loss {loss.item():.4g}")
    elapsed = time.perf_counter() - t0
    model.eval()
    with torch.no_grad():
        accuracy = (model(X_test).argmax(dim=1) == y_test).float().mean().item()
    print(f"test accuracy: {accuracy:.4f}")
    print(f"trained in {elapsed:.2f} s ({elapsed / steps * 1e6:.0f} us per step)")
    return accuracy


if __name__ == "__main__":
    main()
