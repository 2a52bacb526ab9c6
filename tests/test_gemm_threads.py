"""cgrad's GEMM threads (csrc/threads.c): a large product split across threads gives the
one-thread result (bit for bit where the parts are rows, and in float64), the thread count
switches back and forth, concurrent callers and forked children work. Nothing here is timed."""
import itertools
import threading

import numpy as np
import pytest

import cgrad
from conftest import run_python

# M*N*K of every shape is at least 2^22, the threaded cut-off; below 48 rows the split is by
# columns (the digits CNN's 32x1024x144 among them) when there are columns for two parts
ROW_SPLIT = [(128, 256, 784), (256, 512, 256), (1000, 33, 300), (48, 999, 100), (300, 300, 300), (40, 24, 5000)]
COL_SPLIT = [(16, 4096, 64), (37, 999, 257), (32, 1024, 144)]


@pytest.fixture
def restore_threads():
    before = cgrad.get_num_threads()
    yield
    cgrad.set_num_threads(before)


def _product(a, b, ta, tb, dtype):
    """op(a) @ op(b) in cgrad, op a transpose view when asked (the BLAS's transpose flags)."""
    x, y = cgrad.tensor(a, dtype=dtype), cgrad.tensor(b, dtype=dtype)
    return ((x.t() if ta else x) @ (y.t() if tb else y)).numpy()


def _operands(rng, M, N, K, ta, tb):
    return rng.standard_normal((K, M) if ta else (M, K)), rng.standard_normal((N, K) if tb else (K, N))


def _bitwise_rows_float32() -> bool:
    """Whether OpenBLAS's float32 kernel here is the one whose row parts on multiples of 12
    were measured to give one thread's bits (Haswell, which Zen also runs)."""
    return "Haswell" in cgrad._C.blas_config() or "Zen" in cgrad._C.blas_config()


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("shape", ROW_SPLIT + COL_SPLIT, ids=str)
def test_two_threads_give_one_threads_result(shape, dtype, restore_threads):
    rng = np.random.default_rng(0)
    M, N, K = shape
    for ta, tb in itertools.product([False, True], repeat=2):
        a, b = _operands(rng, M, N, K, ta, tb)
        cgrad.set_num_threads(1)
        one = _product(a, b, ta, tb, dtype)
        cgrad.set_num_threads(2)
        two = _product(a, b, ta, tb, dtype)
        ref = (a.T if ta else a) @ (b.T if tb else b)  # numpy float64
        tol = 2e-5 if dtype == "float32" else 1e-12
        np.testing.assert_allclose(two, ref, rtol=tol, atol=tol * np.abs(ref).max())
        exact = dtype == "float64" or (shape in ROW_SPLIT and _bitwise_rows_float32())
        if exact:
            np.testing.assert_array_equal(two, one, err_msg=f"{shape} ta={ta} tb={tb}")
        else:  # a column split of float32 may differ in the last bits, as OpenBLAS's own threads did
            np.testing.assert_allclose(two, one, rtol=1e-5, atol=1e-5 * np.abs(ref).max())


def test_switching_thread_counts_back_and_forth(restore_threads):
    rng = np.random.default_rng(1)
    a, b = rng.standard_normal((256, 300)), rng.standard_normal((300, 200))
    cgrad.set_num_threads(1)
    first = _product(a, b, False, False, "float64")
    for n in (2, 1, 3, 2, 1, 2, 4, 1):
        cgrad.set_num_threads(n)
        assert cgrad.get_num_threads() == n
        np.testing.assert_array_equal(_product(a, b, False, False, "float64"), first, err_msg=f"{n} threads")


def _mlp_training(threads: int):
    """Three SGD steps of a float64 784-256-10 MLP (threaded GEMMs forward and backward); the
    losses and the final weights."""
    cgrad.set_num_threads(threads)
    cgrad.manual_seed(0)
    model = cgrad.nn.MLP([784, 256, 10], activation="relu").double()
    rng = np.random.default_rng(2)
    x = cgrad.tensor(rng.standard_normal((128, 784)), dtype="float64")
    y = rng.integers(0, 10, 128)
    opt = cgrad.optim.SGD(model.parameters(), lr=0.01)
    losses = []
    for _ in range(3):
        opt.zero_grad()
        loss = cgrad.nn.functional.cross_entropy(model(x), y)
        loss.backward()
        opt.step()
        losses.append(loss.item())
    return losses, [p.numpy().copy() for p in model.parameters()]


def test_training_steps_identical_at_one_and_two_threads(restore_threads):
    losses1, weights1 = _mlp_training(1)
    losses2, weights2 = _mlp_training(2)
    assert all(w.dtype == np.float64 for w in weights1)
    assert losses1 == losses2
    for w1, w2 in zip(weights1, weights2):
        np.testing.assert_array_equal(w1, w2)
    assert losses1[-1] < losses1[0]


def test_concurrent_callers(restore_threads):
    """Two Python threads' large GEMMs at once: one has the pool, the other runs alone."""
    cgrad.set_num_threads(2)
    rng = np.random.default_rng(3)
    pairs = [(rng.standard_normal((240, 300)), rng.standard_normal((300, 256))) for _ in range(2)]
    want = [a @ b for a, b in pairs]
    got, errors = [[None] * 8, [None] * 8], []

    def worker(i):
        try:
            for r in range(8):
                got[i][r] = _product(*pairs[i], False, False, "float64")
        except Exception as exc:  # noqa: BLE001 - reported below
            errors.append(exc)
    threads = [threading.Thread(target=worker, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not errors and not any(t.is_alive() for t in threads)
    for i in range(2):
        for r in range(8):
            np.testing.assert_allclose(got[i][r], want[i], rtol=1e-12, atol=1e-10)


def test_fork_after_threaded_gemms():
    """A child forked after the parent's threaded GEMMs has none of its helper threads: it must
    start its own (no hang on the parent's), compute right, and so must the parent after."""
    out = run_python("""
        import os, numpy as np, cgrad
        rng = np.random.default_rng(0)
        a, b = rng.standard_normal((256, 300)), rng.standard_normal((300, 256))
        x, y = cgrad.tensor(a), cgrad.tensor(b)
        cgrad.set_num_threads(2)
        for _ in range(5):
            first = (x @ y).numpy()
        pid = os.fork()
        if pid == 0:
            ok = cgrad.get_num_threads() == 1  # a forked child starts at the default
            cgrad.set_num_threads(2)
            ok = ok and all(np.array_equal((x @ y).numpy(), first) for _ in range(5))
            os._exit(0 if ok else 3)
        _, status = os.waitpid(pid, 0)
        assert os.WEXITSTATUS(status) == 0, status
        assert np.array_equal((x @ y).numpy(), first)
        print("ok")
    """, timeout=120)
    assert out.stdout.strip().splitlines()[-1] == "ok"


def test_openblas_stays_on_one_thread(restore_threads):
    """cgrad's threads split the GEMMs; OpenBLAS's own pool, which spins, is never started."""
    threadpoolctl = pytest.importorskip("threadpoolctl")
    cgrad.set_num_threads(2)
    x = cgrad.tensor(np.ones((300, 300)))
    np.testing.assert_array_equal((x @ x).numpy(), np.full((300, 300), 300.0))
    import os
    here = os.path.dirname(os.path.realpath(cgrad._C.__file__))
    ours = [i["num_threads"] for i in threadpoolctl.threadpool_info()
            if os.path.dirname(os.path.realpath(i["filepath"])) == here]
    assert ours == [1]


def test_helpers_take_the_callers_denormal_mode():
    """A helper started while subnormals were flushed (cgrad.set_flush_denormal) computes its
    parts in the caller's current mode, not the one it was started in: else a split product's
    rows would come out in a mix of the two modes, differently from run to run."""
    out = run_python("""
        import numpy as np, cgrad
        if not cgrad.set_flush_denormal(True):
            print("ok"); raise SystemExit  # no FTZ/DAZ control on this CPU
        rng = np.random.default_rng(0)
        a = (rng.standard_normal((512, 512)) * 1e-20).astype(np.float32)  # products ~1e-40: subnormal
        x, y = cgrad.tensor(a), cgrad.tensor(a.T.copy())
        cgrad.set_num_threads(2)
        flushed = (x @ y).numpy()          # the helper starts with subnormals flushed
        cgrad.set_flush_denormal(False)
        cgrad.set_num_threads(1)
        one = (x @ y).numpy()
        assert np.count_nonzero(one) > np.count_nonzero(flushed)  # the modes differ here
        cgrad.set_num_threads(2)
        for _ in range(5):
            np.testing.assert_array_equal((x @ y).numpy(), one)
        print("ok")
    """, timeout=120)
    assert out.stdout.strip().splitlines()[-1] == "ok"
