"""csrc/small_gemm.c's AVX-512 and AVX2+FMA float32 GEMMs against numpy float64, both through the
raw entry (_C.small_sgemm, each instruction set the CPU has: every flag, odd sizes, leading
dimensions wider than the rows, alpha/beta, beta 0 over NaN, K = 0, the bias start) and
through the public ops with the dispatch on each kernel and off (_C.small_gemm_isa); and the
GEMM shape trace (_C.gemm_trace)."""
import numpy as np
import pytest

import cgrad
from cgrad import _C


def _select(isa):
    """Switch the kernel to isa, skipping the test when the CPU lacks it."""
    got = _C.small_gemm_isa(isa)
    if got != isa:
        _C.small_gemm_isa("best")
        pytest.skip(f"the CPU has no {isa} (best: {got})")
    return got

SIZES = [1, 3, 7, 15, 16, 17, 31, 33, 63, 64, 65, 130]
FLAGS = [(False, False), (False, True), (True, False), (True, True)]


@pytest.fixture(params=["avx512", "avx2"])
def kernel(request):
    """Each of the kernel's instruction sets the CPU has, called whatever the dispatch rule."""
    yield _select(request.param)
    _C.small_gemm_isa("best")


@pytest.fixture(params=["avx512", "avx2", "off"])
def small(request):
    """Every path the dispatch can take: each kernel the CPU has, and OpenBLAS for every shape."""
    yield _C.small_gemm_isa("off") if request.param == "off" else _select(request.param)
    _C.small_gemm_isa("best")


def _operand(rng, rows, cols, pad):
    """A [rows, cols] operand stored with leading dimension cols + pad (flat, float32) and its float64 value."""
    ld = cols + pad
    flat = rng.standard_normal(rows * ld).astype(np.float32) if rows and ld else np.zeros(0, np.float32)
    full = flat.reshape(rows, ld) if rows else np.zeros((0, ld), np.float32)
    return flat, ld, full[:, :cols].astype(np.float64)


def _run(ta, tb, M, N, K, alpha=1.0, beta=0.0, pad=0, bias=None, c_fill=None, seed=0):
    rng = np.random.default_rng(seed)
    A, lda, a = _operand(rng, K if ta else M, M if ta else K, pad)
    B, ldb, b = _operand(rng, N if tb else K, K if tb else N, 2 * pad)
    C, ldc, c0 = _operand(rng, M, N, 3 * pad)
    if c_fill is not None:
        C[:] = c_fill
    before = C.copy()
    opA, opB = (a.T if ta else a), (b.T if tb else b)
    want = alpha * (opA @ opB) + (0 if bias is None else bias.astype(np.float64))
    if beta != 0:
        want = want + beta * c0
    assert _C.small_sgemm(ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc, bias)
    got = C.reshape(M, ldc) if M else np.zeros((0, ldc), np.float32)
    # the padding beyond N in each row of C is untouched
    np.testing.assert_array_equal(got[:, N:], before.reshape(M, ldc)[:, N:] if M else got[:, N:])
    return got[:, :N], want, K


def _close(got, want, K):
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5 * (1 + np.sqrt(K)) * 10)


@pytest.mark.parametrize("ta, tb", FLAGS)
@pytest.mark.parametrize("size", SIZES)
def test_every_flag_and_odd_size_in_each_dimension(ta, tb, size, kernel):
    for M, N, K in ((size, 17, 9), (10, size, 9), (10, 17, size)):
        _close(*_run(ta, tb, M, N, K, seed=size))


@pytest.mark.parametrize("ta, tb", FLAGS)
@pytest.mark.parametrize("M, N, K", [(13, 29, 300), (64, 64, 64), (7, 130, 65), (65, 9, 513)])
def test_leading_dimensions_wider_than_the_rows_alpha_beta(ta, tb, M, N, K, kernel):
    """K beyond one packed panel (256) too: the chunks after the first add to C."""
    _close(*_run(ta, tb, M, N, K, alpha=-0.5, beta=0.75, pad=5, seed=M))
    _close(*_run(ta, tb, M, N, K, alpha=2.0, beta=1.0, pad=1, seed=N))


@pytest.mark.parametrize("ta, tb", FLAGS)
def test_beta_zero_does_not_read_c(ta, tb, kernel):
    got, want, K = _run(ta, tb, 23, 19, 40, beta=0.0, c_fill=np.nan, pad=2)
    assert np.isfinite(got).all()
    _close(got, want, K)


@pytest.mark.parametrize("beta", [0.0, 1.0, 0.5])
def test_k_zero_scales_c(beta, kernel):
    got, want, K = _run(False, False, 9, 18, 0, beta=beta, pad=1, c_fill=np.nan if beta == 0 else None)
    _close(got, want, K)


@pytest.mark.parametrize("M, N, K", [(64, 20, 20), (5, 1, 3), (70, 33, 300), (6, 8, 16), (13, 17, 1)])
def test_bias_starts_the_sums(M, N, K, kernel):
    bias = np.random.default_rng(3).standard_normal(N).astype(np.float32)
    _close(*_run(False, True, M, N, K, bias=bias))


def test_raw_entry_checks_its_buffers():
    A = np.zeros(6, np.float32)
    with pytest.raises(ValueError, match="small_sgemm: A"):
        _C.small_sgemm(False, False, 2, 2, 4, 1.0, A, 4, A, 2, 0.0, A, 2)
    with pytest.raises(ValueError, match="leading dimension 1 is below 3"):
        _C.small_sgemm(False, False, 2, 2, 3, 1.0, A, 1, A, 2, 0.0, A, 2)
    with pytest.raises(ValueError, match="bias has 3 elements"):
        _C.small_sgemm(False, False, 1, 2, 2, 1.0, A, 2, A, 2, 0.0, A, 2, np.zeros(3, np.float32))
    with pytest.raises(ValueError, match="small_gemm_isa"):
        _C.small_gemm_isa("sse")


def test_switched_off_leaves_c_untouched():
    A = np.ones(4, np.float32)
    C = np.full(4, 7.0, np.float32)
    try:
        assert _C.small_gemm_isa("off") == "off"
        assert not _C.small_sgemm(False, False, 2, 2, 2, 1.0, A, 2, A, 2, 0.0, C, 2)
        np.testing.assert_array_equal(C, 7.0)
    finally:
        _C.small_gemm_isa("best")


# ---- through the public ops, both paths ----

@pytest.mark.parametrize("ta, tb", FLAGS)
# (300, 140, 129): above M N K = 2^21, where on AVX-512 cg_large_sgemm takes the products
@pytest.mark.parametrize("m, n, k", [(16, 32, 32), (64, 128, 64), (32, 1, 16), (7, 10, 33), (130, 65, 17),
                                     (300, 140, 129)], ids=str)
def test_gemm_op_forward_and_gradients(m, n, k, ta, tb, small):
    """op(a) @ op(b) forward (beta 0) and both gradients twice (beta 0 then 1)."""
    rng = np.random.default_rng(m + n + k)
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


@pytest.mark.parametrize("rows, nin, nout", [(32, 16, 10), (64, 64, 128), (128, 784, 256), (5, 3, 1)])
@pytest.mark.parametrize("bias", [True, False])
def test_linear_and_matmul(rows, nin, nout, bias, small):
    rng = np.random.default_rng(rows + nin)
    x, w, b = rng.normal(size=(rows, nin)), rng.normal(size=(nout, nin)), rng.normal(size=nout)
    X = cgrad.tensor(x, dtype=cgrad.float32, requires_grad=True)
    Wt = cgrad.tensor(w, dtype=cgrad.float32, requires_grad=True)
    args = [X, Wt] + ([cgrad.tensor(b, dtype=cgrad.float32)] if bias else [])
    y = cgrad.nn.functional.linear(*args)
    tol = dict(rtol=1e-4, atol=1e-4 * np.sqrt(nin))
    np.testing.assert_allclose(y.numpy(), x @ w.T + (b if bias else 0), **tol)
    y.sum().backward()
    np.testing.assert_allclose(X.grad.numpy(), np.ones((rows, nout)) @ w, **tol)
    np.testing.assert_allclose(Wt.grad.numpy(), np.ones((rows, nout)).T @ x, rtol=1e-4, atol=1e-4 * np.sqrt(rows))
    np.testing.assert_allclose((X @ Wt.T).numpy(), x @ w.T, **tol)


def test_conv_matches_torch_both_paths(small):
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(5)
    x, w, b = rng.normal(size=(4, 3, 11, 9)), rng.normal(size=(8, 3, 3, 3)), rng.normal(size=8)
    X = cgrad.tensor(x, dtype=cgrad.float32, requires_grad=True)
    W = cgrad.tensor(w, dtype=cgrad.float32, requires_grad=True)
    y = cgrad.nn.functional.conv2d(X, W, cgrad.tensor(b, dtype=cgrad.float32), padding=1)
    (y * y).sum().backward()
    tx = torch.tensor(x, requires_grad=True)
    tw = torch.tensor(w, requires_grad=True)
    ty = torch.nn.functional.conv2d(tx, tw, torch.tensor(b), padding=1)
    (ty * ty).sum().backward()
    np.testing.assert_allclose(y.numpy(), ty.detach().numpy(), rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(X.grad.numpy(), tx.grad.numpy(), rtol=1e-3, atol=1e-3)
    np.testing.assert_allclose(W.grad.numpy(), tw.grad.numpy(), rtol=1e-3, atol=1e-3)


# ---- the trace ----

def test_trace_counts_each_shape_of_a_linear_step():
    x = cgrad.tensor(np.ones((32, 16)), dtype=cgrad.float32, requires_grad=True)
    w = cgrad.tensor(np.ones((10, 16)), dtype=cgrad.float32, requires_grad=True)
    _C.small_gemm_isa("off"), _C.skinny_isa("off")
    try:
        _C.gemm_trace(True)
        for _ in range(3):
            cgrad.nn.functional.linear(x, w).sum().backward()
        _C.gemm_trace(False)
        cgrad.nn.functional.linear(x, w)  # not traced
    finally:
        _C.small_gemm_isa("best")
        _C.skinny_isa("best")
    got = {(t["kind"], t["ta"], t["tb"], t["M"], t["N"], t["K"], t["beta"]): t["count"] for t in _C.gemm_trace_read()}
    assert got == {("sgemm", False, True, 32, 10, 16, 0.0): 3,   # y = x W^T
                   ("sgemm", False, False, 32, 16, 10, 0.0): 1,  # dx = g W, first backward
                   ("sgemm", False, False, 32, 16, 10, 1.0): 2,  # then accumulated
                   ("sgemm", True, False, 10, 16, 32, 0.0): 1,   # dW = g^T x
                   ("sgemm", True, False, 10, 16, 32, 1.0): 2}
    _C.gemm_trace(True)  # starting again forgets
    assert _C.gemm_trace_read() == []
    _C.gemm_trace(False)


def test_trace_names_the_fused_linear_and_float64():
    x = cgrad.tensor(np.ones((8, 4)), dtype=cgrad.float64)
    _C.gemm_trace(True)
    x @ x.T
    cgrad.nn.functional.linear(cgrad.tensor(np.ones((16, 32)), dtype=cgrad.float32),
                               cgrad.tensor(np.ones((64, 32)), dtype=cgrad.float32))
    _C.gemm_trace(False)
    kinds = {(t["kind"], t["dtype"]) for t in _C.gemm_trace_read()}
    assert ("dgemm", "float64") in kinds
    assert kinds & {("linear_f32", "float32"), ("sgemm", "float32")}
    if _C.small_gemm_isa("best") != "off" and _C.blas_current() == "openblas":
        assert ("linear_f32", "float32") in kinds  # the small kernel took the 16x64x32 linear (NT)
