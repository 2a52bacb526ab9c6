import gc

import numpy as np
import pytest

import cgrad

_a_test_failed = False  # a failed test's traceback can keep its tensors alive for a while


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    global _a_test_failed
    report = (yield).get_result()
    if report.failed:
        _a_test_failed = True


@pytest.fixture(autouse=True)
def no_leaked_c_memory():
    """Every test must give back all the C memory it took (DESIGN.md section 5)."""
    gc.collect()
    before = cgrad.live_bytes()
    yield
    gc.collect()
    after = cgrad.live_bytes()
    if _a_test_failed:  # memory held by an earlier failure may be freed during this test
        assert after <= before, "the C core leaked memory in this test"
    else:
        assert after == before, "the C core leaked memory in this test"


@pytest.fixture
def rng():
    return np.random.default_rng(1234)
