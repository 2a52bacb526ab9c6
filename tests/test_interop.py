"""numpy interop, construction, indexing and repr."""
import numpy as np
import pytest

import cgrad


def test_from_numpy_shares_memory():
    a = np.arange(6, dtype=np.float64).reshape(2, 3)
    t = cgrad.from_numpy(a)
    assert t.dtype == np.float64 and t.shape == (2, 3)
    a[0, 0] = 42.0
    assert t.numpy()[0, 0] == 42.0
    t.numpy()[1, 2] = -1.0
    assert a[1, 2] == -1.0


def test_from_numpy_keeps_array_alive():
    t = cgrad.from_numpy(np.ones(1000, dtype=np.float32))
    import gc
    gc.collect()
    assert t.sum().item() == 1000.0


@pytest.mark.parametrize("array", [
    np.arange(12, dtype=np.float64).reshape(3, 4).T,        # non-contiguous
    np.arange(12, dtype=np.int64).reshape(3, 4),            # integer
    np.arange(12, dtype=np.float16).reshape(3, 4),          # other float
], ids=["noncontiguous", "int", "float16"])
def test_from_numpy_copies_what_it_cannot_share(array):
    t = cgrad.from_numpy(array)
    np.testing.assert_array_equal(t.numpy(), array.astype(t.dtype))
    assert t.dtype == {"f8": np.float64, "i8": np.int64, "f2": np.float32}[array.dtype.str[1:]]


def test_from_numpy_read_only_is_copied():
    a = np.ones(3, dtype=np.float32)
    a.flags.writeable = False
    t = cgrad.from_numpy(a)
    t.fill_(2.0)
    assert a[0] == 1.0


def test_numpy_and_asarray_share_memory():
    t = cgrad.tensor([[1.0, 2.0], [3.0, 4.0]])
    n = t.numpy()
    n[0, 0] = 9.0
    assert np.asarray(t)[0, 0] == 9.0
    assert np.asarray(t).dtype == np.float32
    assert np.array(t, dtype=np.float64).dtype == np.float64


def test_tensor_copies_and_infers_dtype():
    a = np.ones(3)
    t = cgrad.tensor(a)
    a[0] = 5.0
    assert t.numpy()[0] == 1.0
    assert t.dtype == np.float64
    assert cgrad.tensor([1, 2, 3]).dtype == np.int64  # as PyTorch: ints int64, floats float32
    assert cgrad.tensor([1, 2.5]).dtype == np.float32
    assert cgrad.tensor([True, False]).dtype == np.bool_
    assert cgrad.tensor(np.arange(3, dtype=np.int32)).dtype == np.int32
    assert cgrad.tensor(2.5).shape == ()
    assert cgrad.tensor([[1.0]], dtype="float64").dtype == np.float64


def test_numpy_on_either_side_of_operators():
    t = cgrad.tensor([1.0, 2.0], requires_grad=True)
    a = np.array([10.0, 20.0])
    for out, ref in [(a + t, [11, 22]), (t + a, [11, 22]), (a - t, [9, 18]), (a * t, [10, 40]),
                     (a / t, [10, 10]), (t / a, [0.1, 0.1]), (2 ** t, [2, 4]), (1 - t, [0, -1])]:
        assert isinstance(out, cgrad.Tensor)
        np.testing.assert_allclose(out.numpy(), ref, rtol=1e-6)
    (a @ cgrad.tensor(np.eye(2), dtype=np.float32) @ t).backward()
    np.testing.assert_allclose(t.grad.numpy(), a)


def test_comparisons_give_numpy_bool_arrays():
    t = cgrad.tensor([1.0, 2.0, 3.0])
    np.testing.assert_array_equal(t > 1.5, [False, True, True])
    np.testing.assert_array_equal(t == cgrad.tensor([1.0, 0.0, 3.0]), [True, False, True])
    np.testing.assert_array_equal(cgrad.where(t > 1.5, t, 0.0).numpy(), [0, 2, 3])
    assert len({t, t}) == 1  # tensors stay hashable (by identity)


def test_creation_functions():
    cgrad.manual_seed(0)
    a = cgrad.randn(2, 3)
    cgrad.manual_seed(0)
    b = cgrad.randn((2, 3))
    np.testing.assert_array_equal(a.numpy(), b.numpy())
    assert cgrad.zeros(2, 3).numpy().sum() == 0
    assert cgrad.ones((2, 3), dtype=np.float64).dtype == np.float64
    np.testing.assert_array_equal(cgrad.full((2,), 7.0).numpy(), [7, 7])
    np.testing.assert_array_equal(cgrad.arange(4).numpy(), [0, 1, 2, 3])
    r = cgrad.rand(100)
    assert 0 <= r.numpy().min() and r.numpy().max() < 1
    assert cgrad.zeros_like(a).shape == (2, 3)
    assert cgrad.ones(3, requires_grad=True).requires_grad


def test_shape_helpers():
    x = cgrad.tensor(np.arange(24.0).reshape(2, 3, 4))
    assert x.reshape(6, 4).shape == (6, 4)
    assert x.view((4, -1)).shape == (4, 6)
    assert x.flatten().shape == (24,)
    assert x.flatten(1).shape == (2, 12)
    assert x.unsqueeze(0).shape == (1, 2, 3, 4)
    assert x.unsqueeze(-1).shape == (2, 3, 4, 1)
    assert x[:, :1].squeeze().shape == (2, 4)
    assert x.T.shape == (4, 3, 2)
    assert x.transpose().shape == (4, 3, 2)
    assert x.transpose(1, 2).shape == (2, 4, 3)
    assert x.ndim == 3 and len(x) == 2 and x.numel() == 24
    assert x.size() == (2, 3, 4) and x.size(-1) == 4 and x.size().numel() == 24
    assert [r.shape for r in x] == [(3, 4), (3, 4)]


def test_indexing_matches_numpy():
    a = np.arange(60.0).reshape(3, 4, 5)
    x = cgrad.tensor(a)
    for key in [0, -1, (1, 2), (slice(None), 1), (Ellipsis, 3), (None, 0), (slice(1, None, 2),),
                (0, slice(None, None, -1)), (np.array([2, 0]),), (np.array([[1, 2], [0, 0]]),),
                (np.array([0, 2]), np.array([1, 3])), (np.array([True, False, True]),),
                (np.array([0, 1]), slice(1, 3)), (a[:, :, 0] > 20,)]:
        np.testing.assert_array_equal(x[key].numpy(), a[key], err_msg=str(key))


def test_functional_forms():
    x = cgrad.tensor([[1.0, -2.0]])
    np.testing.assert_allclose(cgrad.exp(x).numpy(), np.exp(x.numpy()))
    assert cgrad.sum(x, axis=1).shape == (1,)
    np.testing.assert_array_equal(cgrad.relu(x).numpy(), [[1.0, 0.0]])


def test_repr():
    assert repr(cgrad.tensor([1.0, 2.0])) == "tensor([1., 2.])"
    assert "requires_grad=True" in repr(cgrad.tensor([1.0], requires_grad=True))
    assert "grad_fn=<mul_scalar>" in repr(cgrad.tensor([1.0], requires_grad=True) * 2)
    assert "dtype=cgrad.float64" in repr(cgrad.tensor([1.0], dtype=np.float64))
    assert repr(cgrad.tensor([1, 2])) == "tensor([1, 2])"
    assert repr(cgrad.tensor([1, 2], dtype=cgrad.int32)) == "tensor([1, 2], dtype=cgrad.int32)"


def test_item_and_conversions():
    x = cgrad.tensor([[2.5]])
    assert x.item() == 2.5 and float(x) == 2.5 and int(x) == 2 and bool(x)
    assert x.tolist() == [[2.5]]
    assert cgrad.Tensor([1, 2]).dtype == np.float32  # the legacy constructor is float32
    assert cgrad.Tensor(2, 3).shape == (2, 3)
    assert ["a", "b", "c"][cgrad.tensor(2)] == "c"  # __index__
    with pytest.raises(TypeError, match="integer tensors of a single element"):
        ["a"][cgrad.tensor(0.0)]


def test_grad_assignment_is_checked():
    x = cgrad.tensor([1.0, 2.0], requires_grad=True)
    x.grad = cgrad.tensor([0.5, 0.5])
    (x * 2).sum().backward()
    np.testing.assert_array_equal(x.grad.numpy(), [2.5, 2.5])
    with pytest.raises(ValueError, match="shape"):
        x.grad = cgrad.tensor([1.0])


def test_inplace_helpers_and_data():
    x = cgrad.tensor([1.0, 2.0], requires_grad=True)
    x.data = np.array([5.0, 6.0])
    np.testing.assert_array_equal(x.numpy(), [5, 6])
    with pytest.raises(RuntimeError, match="add_: a leaf tensor that requires grad"):
        x.add_(cgrad.tensor([1.0, 1.0]))
    x = x.detach()
    x.add_(cgrad.tensor([1.0, 1.0]), alpha=-2)
    np.testing.assert_array_equal(x.numpy(), [3, 4])
    x.copy_([0.0, 1.0])
    np.testing.assert_array_equal(x.numpy(), [0, 1])
