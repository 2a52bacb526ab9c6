"""Smoke tests of the examples: each runs as a user runs it, in a subprocess, on a tiny setup."""
import math
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
BURGERS = EXAMPLES / "burgers_pinn.py"


def run_example(script, *args, tmp_path, timeout=120):
    # run from an empty folder, so the installed cgrad is imported (not the source tree)
    env = dict(os.environ, OMP_NUM_THREADS="1")
    proc = subprocess.run([sys.executable, str(script), *args], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, f"{script.name} {' '.join(args)} failed:\n{proc.stdout}\n{proc.stderr}"
    return proc.stdout


def header(out):
    """The example's first line of its own (an editable install may print its rebuild first)."""
    return next(line for line in out.splitlines() if not line.startswith(("Running cmake", "[", "--", "ninja")))


def relative_error(out):
    found = re.findall(r"^relative L2 error: (\S+)", out, re.M)
    assert len(found) == 1, f"no final error line in:\n{out}"
    return float(found[0])


def losses(out, phase):
    return [float(v) for v in re.findall(rf"^{phase}\s+\d+\s+loss (\S+)", out, re.M)]


def test_burgers_pinn_quick_run_trains_and_reports_a_finite_error(tmp_path):
    out = run_example(BURGERS, "--quick", tmp_path=tmp_path)
    assert "cgrad" in header(out)
    error = relative_error(out)
    assert math.isfinite(error) and 0 < error < 1, error
    adam, lbfgs = losses(out, "adam"), losses(out, "lbfgs")
    assert len(adam) == 5 and len(lbfgs) >= 2, out   # progress every 10 steps / evaluations
    assert all(math.isfinite(v) for v in adam + lbfgs)
    assert lbfgs[-1] < adam[0], "the loss did not go down"
    assert re.search(r"^L-BFGS: 20 iterations, \d+ evaluations", out, re.M), out
    assert re.search(r"^wall time: \S+ s", out, re.M), out


def test_burgers_pinn_compiled_adam_steps_equal_eager_ones(tmp_path):
    """--compile replays the Adam step in C; it must give the same numbers, to the digit."""
    def numbers(out):
        return [line for line in out.splitlines() if line.startswith(("adam", "lbfgs", "final loss", "relative"))]
    eager = run_example(BURGERS, "--quick", tmp_path=tmp_path)
    compiled = run_example(BURGERS, "--quick", "--compile", tmp_path=tmp_path)
    strip = lambda lines: [re.sub(r"\s+\S+ s$", "", line) for line in lines]   # the elapsed time
    assert strip(numbers(eager)) == strip(numbers(compiled))


def test_burgers_pinn_runs_in_float64(tmp_path):
    out = run_example(BURGERS, "--quick", "--precision", "float64", tmp_path=tmp_path)
    assert "precision float64" in header(out)
    error = relative_error(out)
    assert math.isfinite(error) and 0 < error < 1, error


def test_burgers_pinn_reads_the_data_path_it_is_given(tmp_path):
    import numpy as np
    bad = tmp_path / "bad.npz"
    np.savez(bad, x=np.zeros((3, 1)))   # no t, no usol
    proc = subprocess.run([sys.executable, str(BURGERS), "--quick", "--data", str(bad)], cwd=tmp_path,
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode != 0 and "KeyError" in proc.stderr


def test_burgers_pinn_runs_unchanged_on_pytorch(tmp_path):
    pytest.importorskip("torch")
    out = run_example(BURGERS, "--quick", "--torch", tmp_path=tmp_path)
    assert "PyTorch" in header(out)
    assert math.isfinite(relative_error(out))


MNIST1D = EXAMPLES / "mnist1d.py"


def accuracy(out):
    found = re.findall(r"^test accuracy: (\S+)", out, re.M)
    assert len(found) == 1, f"no accuracy line in:\n{out}"
    return float(found[0])


def test_the_mnist1d_paper_recipe_reaches_92_percent(tmp_path):
    """The convolution issue's bar: the paper's CNN and recipe (6,000 Adam steps) at least 92%
    test accuracy (the paper reports 94%; seeds 0-3 give 92.2-94.4% here, PyTorch 93.3% at
    seed 0). Replayed, so that it costs seconds."""
    out = run_example(MNIST1D, "--compile", tmp_path=tmp_path)
    assert "compiled" in header(out)
    assert accuracy(out) >= 0.92


def test_mnist1d_example_eager_equals_compiled(tmp_path):
    a = run_example(MNIST1D, "--quick", tmp_path=tmp_path)
    b = run_example(MNIST1D, "--quick", "--compile", tmp_path=tmp_path)
    assert [line for line in a.splitlines() if line.startswith("step")] == \
        [line for line in b.splitlines() if line.startswith("step")]
    assert accuracy(a) == accuracy(b)


def test_mnist1d_example_runs_unchanged_on_pytorch(tmp_path):
    pytest.importorskip("torch")
    out = run_example(MNIST1D, "--quick", "--torch", tmp_path=tmp_path)
    assert "PyTorch" in header(out)
    assert 0.3 < accuracy(out) <= 1.0


def test_the_mnist1d_gru_recipe_reaches_88_percent(tmp_path):
    """The sequence issue's bar: the paper's bidirectional GRU and recipe (6,000 Adam steps,
    batches in order) at least 88% test accuracy (PyTorch 88.2% here, the paper 91%; 89.8%
    at seed 0). Replayed, so that it costs seconds."""
    # 6,000 steps: seconds here, minutes under the sanitizers (.ci/sanitize), hence the timeout
    out = run_example(MNIST1D, "--model", "gru", "--compile", tmp_path=tmp_path, timeout=900)
    assert "MNIST-1D GRU on cgrad (compiled)" in header(out)
    assert accuracy(out) >= 0.88


def test_mnist1d_gru_example_trains_and_replays_as_eager(tmp_path):
    a = run_example(MNIST1D, "--model", "gru", "--quick", tmp_path=tmp_path)
    b = run_example(MNIST1D, "--model", "gru", "--quick", "--compile", tmp_path=tmp_path)
    assert "MNIST-1D GRU" in header(a)
    assert [line for line in a.splitlines() if line.startswith("step")] == \
        [line for line in b.splitlines() if line.startswith("step")]
    assert 0.2 < accuracy(a) == accuracy(b)


NAMES = EXAMPLES / "names_mlp.py"
GPT = EXAMPLES / "char_gpt.py"


def _value(out, what):
    found = re.findall(rf"^{what}: (\S+)", out, re.M)
    assert len(found) == 1, f"no {what} line in:\n{out}"
    return float(found[0])


def test_names_mlp_example_learns_and_samples(tmp_path):
    """1,000 SGD steps take the dev loss from log(27) = 3.30 to well under 2.6; samples are
    lower-case names."""
    out = run_example(NAMES, "--quick", "--compile", tmp_path=tmp_path)
    assert "names MLP on cgrad (compiled): 11,897 parameters" in header(out)
    assert _value(out, "dev loss") < 2.6
    samples = re.findall(r"^samples: (.*)$", out, re.M)[0].split()
    assert len(samples) >= 8 and all(w.isalpha() and w.islower() for w in samples)


def test_names_mlp_example_runs_unchanged_on_pytorch(tmp_path):
    pytest.importorskip("torch")
    out = run_example(NAMES, "--quick", "--torch", tmp_path=tmp_path)
    assert "PyTorch" in header(out) and _value(out, "dev loss") < 2.6


def test_char_gpt_example_learns_and_samples(tmp_path):
    out = run_example(GPT, "--quick", tmp_path=tmp_path)
    assert "char GPT on cgrad: 0.80M parameters" in header(out)
    assert _value(out, "val loss") < 3.3  # from log(65) = 4.17 in 50 iterations
    assert len(out.split("sample:\n", 1)[1]) >= 190


def test_char_gpt_example_compiled_equals_eager(tmp_path):
    a = run_example(GPT, "--quick", "--iters", "10", tmp_path=tmp_path)
    b = run_example(GPT, "--quick", "--iters", "10", "--compile", tmp_path=tmp_path)
    assert _value(a, "val loss") == _value(b, "val loss")


def test_char_gpt_example_runs_unchanged_on_pytorch(tmp_path):
    pytest.importorskip("torch")
    out = run_example(GPT, "--quick", "--torch", tmp_path=tmp_path)
    assert "PyTorch" in header(out) and _value(out, "val loss") < 3.3
