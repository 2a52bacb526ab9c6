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
