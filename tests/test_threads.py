"""Two threads training two separate models at once get the results of training them one
after the other (the GIL is released in backward and in large matmuls)."""
import threading

import numpy as np
import pytest

import cgrad
from cgrad import nn


def _make(seed):
    cgrad.manual_seed(seed)
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(256, 64)).astype(np.float32)
    y = rng.integers(0, 10, 256)
    return nn.MLP([64, 256, 256, 10]), X, y


def _train(model, X, y, steps=30):
    opt = cgrad.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    xb = cgrad.from_numpy(X)
    for _ in range(steps):
        opt.zero_grad()
        nn.functional.cross_entropy(model(xb), y).backward()
        opt.step()
    return [p.numpy().copy() for p in model.parameters()]


def test_two_threads_match_sequential_training():
    sequential = [_train(*_make(seed)) for seed in (1, 2)]
    jobs = [_make(seed) for seed in (1, 2)]
    results = [None, None]
    errors = []

    def run(i):
        try:
            results[i] = _train(*jobs[i])
        except BaseException as e:  # surfaced below
            errors.append(e)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    for seq, par in zip(sequential, results):
        for a, b in zip(seq, par):
            np.testing.assert_array_equal(a, b)


def test_grad_mode_is_per_thread():
    seen = []

    def worker():
        x = cgrad.tensor([1.0], requires_grad=True)
        seen.append((x * 2.0).requires_grad)

    with cgrad.no_grad():
        t = threading.Thread(target=worker)
        t.start()
        t.join()
        assert not (cgrad.tensor([1.0], requires_grad=True) * 2.0).requires_grad
    assert seen == [True]


def test_set_flush_denormal_reads_and_writes_subnormals_as_zero():
    """PyTorch's switch (off by default): on, a subnormal input reads as zero and a result
    below the smallest normal number is written as zero; off, both are kept."""
    tiny = np.float32(np.finfo(np.float32).tiny)
    sub = np.array([tiny / 4, 1.0], np.float32)
    try:
        if not cgrad.set_flush_denormal(True):
            pytest.skip("this CPU has no flush-to-zero switch")
        assert (cgrad.tensor(sub) * 1.0).numpy()[0] == 0           # DAZ: the input reads as 0
        assert (cgrad.tensor([tiny]) * 0.25).numpy()[0] == 0         # FTZ: the result is written as 0
    finally:
        cgrad.set_flush_denormal(False)
    assert (cgrad.tensor(sub) * 1.0).numpy()[0] == sub[0]
    assert (cgrad.tensor([tiny]) * 0.25).numpy()[0] == tiny / 4
