"""Long-run leak check, run by CI: 100,000 training steps of a small MLP, eager and
replayed (cgrad.compile), 10,000 steps of a physics-informed network (a backward through
u_xx, create_graph=True), eager and replayed, and 100,000 create-backward-free cycles of
random graphs. Fails if the C live-byte counter is not back
to its baseline after a freed graph, if RSS grows by more than 1 MiB after warm-up, or if
reference counts of the tensors and modules involved drift.

    python .ci/soak.py [--steps N] [--graphs N] [--pinn-steps N]
"""
from __future__ import annotations

import argparse
import gc
import os
import sys

import numpy as np

import cgrad
from cgrad import nn

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "benchmarks"))
from _harness import rss_bytes  # noqa: E402
from pinn import torch_like_step as pinn_step  # noqa: E402


def check_flat(name: str, samples: list[int]) -> None:
    warm = samples[len(samples) // 5]  # after warm-up
    growth = max(samples[len(samples) // 5:]) - warm
    print(f"{name}: RSS after warm-up {warm / 2**20:.1f} MiB, growth {growth / 1024:.0f} KiB")
    if growth > 2**20:
        sys.exit(f"soak: {name}: RSS grew by {growth / 2**20:.2f} MiB after warm-up")


def training(steps: int) -> None:
    cgrad.manual_seed(0)
    rng = np.random.default_rng(0)
    X = rng.normal(size=(32, 2)).astype(np.float32)
    y = rng.normal(size=(32, 1)).astype(np.float32)
    model = nn.MLP([2, 16, 16, 1], activation="tanh")
    opt = cgrad.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    xb = cgrad.from_numpy(X)
    refs = [sys.getrefcount(p) for p in model.parameters()] + [sys.getrefcount(model), sys.getrefcount(xb)]
    base = None
    samples = []
    for step in range(steps):
        opt.zero_grad()
        loss = nn.functional.mse_loss(model(xb), y)
        loss.backward()
        opt.step()
        del loss
        if step == 100:
            base = cgrad.live_bytes()
        elif base is not None and step % 1000 == 0:
            if cgrad.live_bytes() != base:
                sys.exit(f"soak: training: live bytes {cgrad.live_bytes()} at step {step}, baseline {base}")
            samples.append(rss_bytes())
    now = [sys.getrefcount(p) for p in model.parameters()] + [sys.getrefcount(model), sys.getrefcount(xb)]
    if now != refs:
        sys.exit(f"soak: training: reference counts drifted {refs} -> {now}")
    check_flat(f"training, {steps} steps", samples)


def replayed_training(steps: int) -> None:
    """The same network under cgrad.compile, with a shorter last batch every 10 steps (two
    recordings), and a recording dropped and made again every 10,000 steps."""
    cgrad.manual_seed(0)
    rng = np.random.default_rng(0)
    X = rng.normal(size=(32, 2)).astype(np.float32)
    y = rng.normal(size=(32, 1)).astype(np.float32)
    model = nn.MLP([2, 16, 16, 1], activation="tanh")
    opt = cgrad.optim.Adam(model.parameters(), lr=1e-3)

    @cgrad.compile
    def step(xb, yb):
        opt.zero_grad()
        loss = nn.functional.mse_loss(model(xb), yb)
        loss.backward()
        opt.step()
        return loss

    base, samples = None, []
    for i in range(steps):
        n = 20 if i % 10 == 9 else 32
        step(X[:n], y[:n])
        if i % 10_000 == 9_999:
            step.clear()  # both shapes are recorded again within the next 10 steps
        if i == 500:
            base = cgrad.live_bytes()
        elif base is not None and i % 1000 == 500:
            if cgrad.live_bytes() != base:
                sys.exit(f"soak: replay: live bytes {cgrad.live_bytes()} at step {i}, baseline {base}")
            samples.append(rss_bytes())
    check_flat(f"replayed training, {steps} steps", samples)


def pinn(steps: int, compiled: bool) -> None:
    """The Burgers PINN step of benchmarks/pinn.py (Adam through the second derivative) on a
    small network and batch: the taped sweep's graph must be freed every step."""
    cgrad.manual_seed(0)
    rng = np.random.default_rng(0)
    xf = rng.uniform([-1, 0], [1, 1], (256, 2)).astype(np.float32)
    xu = rng.uniform([-1, 0], [1, 1], (32, 2)).astype(np.float32)
    uu = -np.sin(np.pi * xu[:, :1]).astype(np.float32)
    net = nn.Sequential(nn.Linear(2, 16), nn.Tanh(), nn.Linear(16, 16), nn.Tanh(), nn.Linear(16, 1))
    opt = cgrad.optim.Adam(net.parameters(), lr=1e-3)

    step = pinn_step(cgrad, net, opt)  # the benchmark's step, as a PyTorch user writes it
    run = cgrad.compile(step) if compiled else step
    base, samples, first = None, [], None
    for i in range(steps):
        loss = run(xf, xu, uu).item()
        first = loss if first is None else first
        if i == 100:
            base = cgrad.live_bytes()
        elif base is not None and i % 500 == 100:
            if cgrad.live_bytes() != base:
                sys.exit(f"soak: pinn: live bytes {cgrad.live_bytes()} at step {i}, baseline {base}")
            samples.append(rss_bytes())
    if not loss < first:
        sys.exit(f"soak: pinn: the loss did not go down ({first} -> {loss})")
    check_flat(f"PINN {'replayed' if compiled else 'eager'}, {steps} steps", samples)


def random_graph(rng) -> None:
    shapes = [(3,), (2, 3), (4, 1, 3)]
    x = cgrad.tensor(rng.normal(size=shapes[rng.integers(3)]), requires_grad=True)
    w = cgrad.tensor(rng.normal(size=(3, 2)), requires_grad=True)
    h = x
    for _ in range(int(rng.integers(1, 12))):
        k = int(rng.integers(14))
        if k == 0:
            h = h * w[:, 0]
        elif k == 1:
            h = (h + 1.0).relu()
        elif k == 2:
            h = h.tanh() * 2.0
        elif k == 3:
            h = h.sigmoid() + h
        elif k == 4:
            h = h.softmax(axis=-1)
        elif k == 5:
            h = cgrad.concatenate([h, h], axis=-1)[..., :3]
        elif k == 6:
            h = (h @ w).sum(axis=-1, keepdims=True) + h
        elif k == 7:
            h = cgrad.maximum(h, h * 0.5)
        elif k == 8:
            h = h.reshape(-1)[np.array([0, 1, 2])] * h if h.numel() >= 3 else h * 2.0
        elif k == 9:
            h = h.exp().clip(0, 10).log_softmax(axis=-1)
        elif k == 10:  # promotion: an int64 operand, and the recorded casts both ways
            h = h * cgrad.tensor(2) + h.float().double()
        elif k == 11:  # values at numpy-computed indices, through gather
            h = h.max(dim=-1, keepdim=True).values * h
        elif k == 12:
            h = h.scatter_add(-1, cgrad.zeros(h.shape, dtype=cgrad.int64), h)
        else:
            h = h.cumsum(-1) + (h > 0).float()
    loss = (h * h).sum()
    loss.backward()


def graphs(n: int) -> None:
    rng = np.random.default_rng(1)
    base = cgrad.live_bytes()
    gc.collect()
    objects = len(gc.get_objects())
    samples = []
    for i in range(n):
        random_graph(rng)
        if cgrad.live_bytes() != base:
            sys.exit(f"soak: graphs: live bytes {cgrad.live_bytes()} after graph {i}, baseline {base}")
        if i % 1000 == 0:
            samples.append(rss_bytes())
    gc.collect()
    grown = len(gc.get_objects()) - objects
    if grown > 100:
        sys.exit(f"soak: graphs: {grown} more Python objects tracked by gc than at the start")
    check_flat(f"random graphs, {n} cycles", samples)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--steps", type=int, default=100_000)
    parser.add_argument("--graphs", type=int, default=100_000)
    parser.add_argument("--pinn-steps", type=int, default=10_000)
    args = parser.parse_args()
    training(args.steps)
    replayed_training(args.steps)
    pinn(args.pinn_steps, compiled=False)
    pinn(args.pinn_steps, compiled=True)
    graphs(args.graphs)
    print("soak: no leaks")


if __name__ == "__main__":
    main()
