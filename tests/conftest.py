import gc

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
