"""Runs the hypothesis fuzzer (fuzz_ops.py) in a subprocess: a crash of the interpreter is
a failed test here rather than a lost test run."""
import os
import subprocess
import sys

import pytest


def test_fuzzed_ops_give_numpy_results_or_clear_errors():
    pytest.importorskip("hypothesis")
    script = os.path.join(os.path.dirname(__file__), "fuzz_ops.py")
    out = subprocess.run([sys.executable, script, "--examples", "500", "--seed", "0"],
                         capture_output=True, text=True, timeout=1800)
    assert out.returncode == 0, (f"fuzzer exited with {out.returncode}"
                                 f"{' (killed by a signal: a crash)' if out.returncode < 0 else ''}\n"
                                 f"{out.stdout[-3000:]}\n{out.stderr[-5000:]}")
    assert "fuzz:" in out.stdout
