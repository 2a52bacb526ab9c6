"""The GEMM provider table: OpenBLAS and the built-in kernel agree; threads are settable."""
import numpy as np
import pytest

import cgrad
from cgrad import _C


@pytest.fixture
def restore_blas():
    name, threads = _C.blas_current(), cgrad.get_num_threads()
    yield
    cgrad.set_blas(name)
    cgrad.set_num_threads(threads)


def test_providers_listed():
    assert "builtin" in _C.blas_providers()
    assert _C.blas_current() in _C.blas_providers()


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shapes", [((7, 5), (5, 3)), ((2, 33, 17), (17, 9)), ((3, 1, 4, 6), (2, 6, 5))],
                         ids=str)
def test_providers_agree_forward_and_backward(shapes, dtype, restore_blas):
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=shapes[0]), rng.normal(size=shapes[1])
    results = {}
    for provider in _C.blas_providers():
        cgrad.set_blas(provider)
        x = cgrad.tensor(a, dtype=dtype, requires_grad=True)
        w = cgrad.tensor(b, dtype=dtype, requires_grad=True)
        z = x @ w
        (z * z).sum().backward()
        results[provider] = (z.numpy(), x.grad.numpy(), w.grad.numpy())
    ref = results["builtin"]
    np.testing.assert_allclose(ref[0], np.matmul(a, b), rtol=1e-4 if dtype == np.float32 else 1e-12, atol=1e-5)
    for provider, got in results.items():
        for g, r in zip(got, ref):
            np.testing.assert_allclose(g, r, rtol=1e-4 if dtype == np.float32 else 1e-10, atol=1e-4)


def test_set_blas_rejects_unknown(restore_blas):
    with pytest.raises(ValueError, match="no provider named 'mkl'"):
        cgrad.set_blas("mkl")


def test_threads(restore_blas):
    assert cgrad.get_num_threads() == 1  # the default
    cgrad.set_num_threads(2)
    assert cgrad.get_num_threads() == 2
    x = cgrad.tensor(np.ones((300, 300)))
    np.testing.assert_allclose((x @ x).numpy(), np.full((300, 300), 300.0))
    with pytest.raises(ValueError):
        cgrad.set_num_threads(0)


def test_show_config(capsys):
    info = cgrad.show_config()
    assert info["blas"] == _C.blas_current()
    assert "blas" in capsys.readouterr().out


# Shapes that take csrc/skinny_gemm.c's float32 kernels on an AVX-512 machine (rows: N, K <=
# 32 and M >= 64; cols: op(a) = a^T with M, N <= 32 and K >= 64) and their edges: N of 1, 16,
# 17 and 32 (the two masked halves), row counts that are not multiples of the 4- and 8-row
# blocks, K of 1, and shapes just past the cut-offs. Elsewhere they check OpenBLAS.
_SKINNY = [(64, 20, 20), (2001, 20, 20), (67, 1, 2), (130, 16, 32), (65, 17, 3), (99, 32, 1), (64, 33, 20),
           (64, 20, 33)]
# cols with N <= 4 take the narrow kernel (lanes over M): an RNN's W_ih gradient over one
# feature (18x1x4000); M of 1, 16 and 17 (one half, two), N of 1-4 (its unroll widths) and 5
# (the wide kernel again), K not a multiple of the unroll
_NARROW = [(18, 1, 4000), (1, 1, 64), (16, 2, 67), (17, 3, 99), (32, 4, 65), (5, 4, 130), (31, 5, 64)]


@pytest.fixture(params=["best", "off"])
def skinny(request):
    """Both paths for these shapes: cgrad's kernels (where the CPU has them) and OpenBLAS's."""
    got = _C.skinny_isa(request.param)
    yield got
    _C.skinny_isa("best")


def test_skinny_isa_names_what_is_in_effect():
    assert _C.skinny_isa("off") == "off"
    assert _C.skinny_isa("best") in ("off", "avx2", "avx512")
    with pytest.raises(ValueError, match="skinny_isa"):
        _C.skinny_isa("sse")


@pytest.mark.parametrize("ta, tb", [(False, False), (False, True), (True, False), (True, True)])
@pytest.mark.parametrize("m, n, k", _SKINNY + _NARROW + [(20, 20, 2000), (7, 1, 64), (32, 32, 100), (13, 29, 65)],
                         ids=str)
def test_skinny_float32_gemms_match_float64(m, n, k, ta, tb, skinny):
    """op(a) @ op(b) forward (beta 0) and both gradients (beta 0 and beta 1: the second
    backward accumulates into the first's .grad) against float64 numpy."""
    rng = np.random.default_rng(m * 7 + n * 3 + k)
    a = rng.normal(size=(k, m) if ta else (m, k))
    b = rng.normal(size=(n, k) if tb else (k, n))
    g = rng.normal(size=(m, n))
    x = cgrad.tensor(a, dtype=cgrad.float32, requires_grad=True)
    w = cgrad.tensor(b, dtype=cgrad.float32, requires_grad=True)
    A, B = (a.T if ta else a), (b.T if tb else b)
    for _ in range(2):
        z = _C.gemm(x, w, ta, tb)
        z.backward(cgrad.tensor(g, dtype=cgrad.float32))
    tol = dict(rtol=1e-4, atol=1e-4 * np.sqrt(k))
    np.testing.assert_allclose(z.numpy(), A @ B, **tol)
    da, db = g @ B.T, A.T @ g
    np.testing.assert_allclose(x.grad.numpy(), 2 * (da.T if ta else da), **tol)
    np.testing.assert_allclose(w.grad.numpy(), 2 * (db.T if tb else db), **tol)


@pytest.mark.parametrize("rows, nin, nout", [(2000, 20, 20), (67, 2, 20), (64, 20, 1), (100, 32, 17), (64, 33, 5)])
@pytest.mark.parametrize("bias", [True, False])
def test_linear_forward_with_the_bias_in_the_gemm_matches_float64(rows, nin, nout, bias, skinny):
    rng = np.random.default_rng(rows + nin + nout)
    x, w, b = rng.normal(size=(rows, nin)), rng.normal(size=(nout, nin)), rng.normal(size=nout)
    args = [cgrad.tensor(v, dtype=cgrad.float32) for v in ((x, w, b) if bias else (x, w))]
    got = cgrad.nn.functional.linear(*args).numpy()
    np.testing.assert_allclose(got, x @ w.T + (b if bias else 0), rtol=1e-4, atol=1e-4 * np.sqrt(nin))
