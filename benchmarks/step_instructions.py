"""Instructions per training step, counted by callgrind: a figure that does not drift with
the machine's load, for comparing two builds (e.g. the cost of the profiler's hooks when
profiling is off: run this on both commits).

    python benchmarks/step_instructions.py            # 2-16-16-1 tanh MLP, batch 32,
                                                      # eager and replayed (cgrad.compile)
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

LOOP = """
import sys, numpy as np, cgrad
from cgrad import nn
cgrad.manual_seed(0)
rng = np.random.default_rng(0)
x = rng.random((32, 2)).astype(np.float32)
y = rng.random((32, 1)).astype(np.float32)
model = nn.MLP([2, 16, 16, 1], activation="tanh")
opt = cgrad.optim.SGD(model.parameters(), lr=1e-2)

def step(xb, yb):
    opt.zero_grad()
    loss = nn.functional.mse_loss(model(xb), yb)
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
                        os.path.realpath(sys.executable), script, str(steps), mode],
                       check=True, capture_output=True, env=env)
        summary = subprocess.run(["callgrind_annotate", out], check=True, capture_output=True, text=True).stdout
    m = re.search(r"([\d,]+) \(100\.0%\)\s+PROGRAM TOTALS", summary)
    return int(m.group(1).replace(",", ""))


def main() -> None:
    ops = "--ops" in sys.argv[1:]
    with tempfile.NamedTemporaryFile("w", suffix=".py", delete=False) as f:
        f.write(OPS if ops else LOOP)
    try:
        for mode in (("relu", "sum", "add", "mul_scalar") if ops else ("eager", "replay")):
            n0, n1 = (1000, 11000) if ops else (100, 2100)
            per = (instructions(f.name, n1, mode) - instructions(f.name, n0, mode)) / (n1 - n0)
            what = f"recorded {mode} of 4 elements" if ops else f"2-16-16-1 tanh MLP, batch 32, SGD, {mode}"
            print(f"{what}: {per:,.0f} instructions per {'op' if ops else 'training step'}", flush=True)
    finally:
        os.unlink(f.name)


if __name__ == "__main__":
    main()
