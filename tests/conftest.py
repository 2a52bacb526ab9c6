import gc
import os
import subprocess
import sys
import tempfile
import textwrap

import numpy as np
import pytest

import cgrad


@pytest.fixture(autouse=True)
def no_leaked_c_memory():
    """Every test must give back all the C memory it took (docs/architecture.md, "Memory").

    The count may also go down (garbage of an earlier test collected meanwhile); the
    collector runs only when the count went up, since a full collection is slow once
    PyTorch is imported."""
    before = cgrad.live_bytes()
    yield
    if cgrad.live_bytes() > before:
        gc.collect()
    assert cgrad.live_bytes() <= before, "the C core leaked memory in this test"


@pytest.fixture
def rng():
    return np.random.default_rng(1234)


@pytest.fixture(params=[1234, 1, 2], ids=lambda s: f"seed{s}")
def seeded_rng(request):
    """The op table's tests run once per seed: each draws its own inputs."""
    return np.random.default_rng(request.param)


TESTS_DIR = os.path.dirname(os.path.abspath(__file__))


def run_python(code: str, env: dict | None = None, timeout: float = 300, check: bool = True):
    """Run code in a fresh interpreter, as a user's script: from an empty folder (never the
    checkout, whose cgrad/ has no compiled module and would shadow the installed package),
    with this folder on its path so test modules import by name (`from test_x import f`),
    also in worker processes it starts. Returns the CompletedProcess; with check, a
    non-zero exit fails with the child's stderr."""
    with tempfile.TemporaryDirectory() as cwd:
        path = os.pathsep.join(p for p in (TESTS_DIR, os.environ.get("PYTHONPATH", "")) if p)
        proc = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True,
                              timeout=timeout, cwd=cwd, env={**os.environ, **(env or {}), "PYTHONPATH": path})
    if check:
        assert proc.returncode == 0, proc.stderr
    return proc
