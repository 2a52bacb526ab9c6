"""Instructions per training step, counted by callgrind: a figure that does not drift with
the machine's load, for comparing two builds (e.g. the cost of the profiler's hooks when
profiling is off: run this on both commits).

    python benchmarks/step_instructions.py            # 2-16-16-1 tanh MLP, batch 32,
                                                      # eager and replayed (cgrad.compile)
    python benchmarks/step_instructions.py --deep     # 32-(32x16)-10 relu CE, batch 16
    python benchmarks/step_instructions.py --adam     # either network with Adam, not SGD
    python benchmarks/step_instructions.py --replay   # the replayed step only
    python benchmarks/step_instructions.py --ops      # one recorded op on 4 elements:
                                                      # relu, sum, add, x * 2.0

It runs the same training loop for 100 and for 2,100 steps under valgrind and prints the
difference divided by 2,000 (so start-up is not counted). Needs valgrind.
"""
from __future__ import annotations

import os
import re
import subprocess
import sys
import tempfile

# the two networks of issue 17's replay targets (benchmarks/networks.py)
NETWORKS = {
    "tiny": ("2-16-16-1 tanh MSE b32", [2, 16, 16, 1], "tanh", "mse", 32),
    "deep": ("32-(32x16)-10 relu CE b16", [32] + [32] * 16 + [10], "relu", "cross_entropy", 16),
}

LOOP = """
import sys, numpy as np, cgrad
from cgrad import nn
sizes, activation, loss_name, batch, optimizer = {net!r}
cgrad.manual_seed(0)
rng = np.random.default_rng(0)
x = rng.random((batch, sizes[0])).astype(np.float32)
if loss_name == "mse":
    y = rng.random((batch, sizes[-1])).astype(np.float32)
else:
    y = rng.integers(0, sizes[-1], batch).astype(np.int64)
model = nn.MLP(sizes, activation=activation)
if optimizer == "adam":
    opt = cgrad.optim.Adam(model.parameters(), lr=1e-3)
else:
    opt = cgrad.optim.SGD(model.parameters(), lr=1e-2)
loss_fn = getattr(nn.functional, loss_name + ("_loss" if loss_name == "mse" else ""))

def step(xb, yb):
    opt.zero_grad()
    loss = loss_fn(model(xb), yb)
    loss.backward()
    opt.step()
    return loss

if sys.argv[2] == "replay":
    step = cgrad.compile(step)
else:
    x = cgrad.from_numpy(x)
for _ in range(int(sys.argv[1])):
    step(x, y)
"""


OPS = """
import sys, cgrad
a = cgrad.tensor([1.0, -2.0, 3.0, 4.0], requires_grad=True)
fn = {"relu": lambda: a.relu(), "sum": lambda: a.sum(), "add": lambda: a + a, "mul_scalar": lambda: a * 2.0}[sys.argv[2]]
for _ in range(int(sys.argv[1])):
    fn()
"""


def instructions(script: str, steps: int, mode: str) -> int:
    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, "callgrind.out")
        env = dict(os.environ, OPENBLAS_NUM_THREADS="1")
        subprocess.run(["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}",
                        sys.executable, script, str(steps), mode],
                       check=True, capture_output=True, env=env)
        summary = subprocess.run(["callgrind_annotate", out], check=True, capture_output=True, text=True).stdout
    m = re.search(r"([\d,]+) \(100\.0%\)\s+PROGRAM TOTALS", summary)
    return int(m.group(1).replace(",", ""))


def main() -> None:
    argv = sys.argv[1:]
    ops = "--ops" in argv
    name, sizes, activation, loss_name, batch = NETWORKS["deep" if "--deep" in argv else "tiny"]
    optimizer = "adam" if "--adam" in argv else "sgd"
    with tempfile.NamedTemporaryFile("w", suffix=".py", delete=False) as f:
        f.write(OPS if ops else LOOP.replace("{net!r}", repr((sizes, activation, loss_name, batch, optimizer))))
    modes = ("replay",) if "--replay" in argv else ("eager", "replay")
    try:
        for mode in (("relu", "sum", "add", "mul_scalar") if ops else modes):
            n0, n1 = (1000, 11000) if ops else (100, 2100)
            per = (instructions(f.name, n1, mode) - instructions(f.name, n0, mode)) / (n1 - n0)
            what = f"recorded {mode} of 4 elements" if ops else f"{name}, {optimizer.upper()}, {mode}"
            print(f"{what}: {per:,.0f} instructions per {'op' if ops else 'training step'}", flush=True)
    finally:
        os.unlink(f.name)


if __name__ == "__main__":
    main()
