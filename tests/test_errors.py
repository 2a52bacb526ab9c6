"""Bad input: a clear Python exception naming the op and the shapes, never a crash."""
import numpy as np
import pytest

import cgrad


def t(shape, dtype=np.float32, **kw):
    return cgrad.tensor(np.ones(shape), dtype=dtype, **kw)


@pytest.mark.parametrize("fn, match", [
    (lambda: t((2, 3)) + t((4,)), r"add: shapes \(2, 3\) and \(4,\) cannot be broadcast"),
    (lambda: t((2, 3)) * t((3, 2)), r"mul: shapes \(2, 3\) and \(3, 2\)"),
    (lambda: cgrad.maximum(t((2,)), t((3,))), r"maximum: shapes \(2,\) and \(3,\)"),
    (lambda: t((2, 3)) @ t((2, 3)), r"matmul: shapes \(2, 3\) and \(2, 3\) are not aligned"),
    (lambda: t((2, 3, 4)) @ t((3, 4, 5)), r"matmul: the batch dims of \(2, 3, 4\) and \(3, 4, 5\) cannot be broadcast"),
    (lambda: t((2, 3)).reshape(4, 2), r"reshape: cannot reshape a tensor of shape \(2, 3\) into shape \(4, 2\)"),
    (lambda: t((2, 3)).reshape(-1, -1), r"only one dimension can be -1"),
    (lambda: cgrad.concatenate([t((2, 3)), t((3, 2))]), r"concatenate: tensor 1 has shape \(3, 2\)"),
    (lambda: cgrad.stack([t((2,)), t((3,))]), r"stack: tensor 1 has shape \(3,\)"),
    (lambda: cgrad.where(np.ones((2, 2), bool), t((3,)), t((2, 2))), r"where: shapes"),
    (lambda: t((2, 3)).permute(0, 0), r"permute: the axes are not a permutation"),
    (lambda: t((2, 3)).backward(), r"does not require grad"),
])
def test_shape_errors_name_the_op_and_shapes(fn, match):
    with pytest.raises((ValueError, RuntimeError), match=match):
        fn()


@pytest.mark.parametrize("fn, match", [
    (lambda: t((2, 3)).sum(axis=2), r"sum: axis 2 is out of range for a tensor of shape \(2, 3\)"),
    (lambda: t((2, 3)).softmax(axis=-3), r"softmax: axis -3 is out of range"),
    (lambda: t((2, 3))[5], r"index 5 is out of bounds for axis 0 with size 2"),
    (lambda: t((2, 3))[np.array([0, 2])], r"gather: index 2 is out of bounds for axis 0"),
    (lambda: t((2, 3))[0, 0, 0], r"too many indices"),
    (lambda: t((2, 3))[1.5], r"unsupported index"),
])
def test_index_errors(fn, match):
    with pytest.raises(IndexError, match=match):
        fn()


def test_dtype_mix_promotes_as_pytorch():
    assert (t((2,)) + t((2,), np.float64)).dtype == np.float64
    assert (t((2, 2)) @ t((2, 2), np.float64)).dtype == np.float64
    # linear does not promote, as in PyTorch
    with pytest.raises(TypeError, match=r"linear: input, weight and bias must share a dtype"):
        cgrad.nn.functional.linear(t((2, 2)), t((2, 2), np.float64))
    # Python numbers and numpy arrays take the tensor's dtype
    assert (t((2,)) + np.ones(2, np.float64)).dtype == np.float32
    assert (t((2,), np.float64) * 2).dtype == np.float64
    assert (t((2,)).double() + t((2,), np.float64)).dtype == np.float64


def test_unsupported_dtype_and_operands():
    with pytest.raises(TypeError, match="float32, float64, int64, int32, bool or uint8, not int16"):
        cgrad.zeros(2, dtype=np.int16)
    # the ops with no integer form name the op, the dtype and the shape (the C check)
    with pytest.raises(TypeError, match="softmax: needs a float32 or float64 tensor, got int64 of shape \\(2,\\)"):
        cgrad.tensor([1, 2]).softmax(-1)
    with pytest.raises(TypeError, match="linear: needs a float32 or float64 tensor, got int32"):
        cgrad.nn.functional.linear(cgrad.ones(2, 2, dtype=cgrad.int32), t((2, 2)))
    with pytest.raises(TypeError, match="unsupported operand"):
        t((2,)) + "a"
    with pytest.raises(TypeError, match="unsupported operand"):
        t((2,)) ** "a"
    with pytest.raises(ValueError, match="pow: shapes"):
        t((2,)) ** t((3,))


def test_out_of_memory_is_memory_error():
    with pytest.raises(MemoryError):
        cgrad.zeros(1 << 40, 1 << 20)
    with pytest.raises(MemoryError):
        cgrad.zeros(1 << 40)  # 4 TiB: too large for this machine


def test_invalid_shapes():
    with pytest.raises(ValueError, match="invalid shape"):
        cgrad.zeros(-1, 2)
    with pytest.raises(ValueError, match="at most 8 dims"):
        cgrad.zeros(*([1] * 9))


def test_clip_bounds_checked():
    with pytest.raises(ValueError, match="min 2.0 is greater than max 1.0"):
        t((2,)).clip(2, 1)


def test_error_leaves_state_intact():
    x = t((2, 3), requires_grad=True)
    y = x * 2.0
    with pytest.raises(ValueError):
        y + t((4,))
    y.sum().backward()
    np.testing.assert_array_equal(x.grad.numpy(), np.full((2, 3), 2.0))


def test_len_of_scalar():
    with pytest.raises(TypeError, match="0-dim"):
        len(cgrad.tensor(1.0))
    with pytest.raises(ValueError, match="one element"):
        t((2,)).item()


# ---- numerically hostile values: stable results, no NaN ----

@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_softmax_family_is_stable_for_huge_values(dtype):
    x = cgrad.tensor([[1000.0, 0.0, -1000.0], [-1e30, -1e30, -1e30]], dtype=dtype, requires_grad=True)
    sm, lsm, lse = x.softmax(axis=1), x.log_softmax(axis=1), x.logsumexp(axis=1)
    np.testing.assert_allclose(sm.numpy()[0], [1, 0, 0], atol=1e-7)
    np.testing.assert_allclose(sm.numpy()[1], [1 / 3] * 3, rtol=1e-6)
    np.testing.assert_allclose(lsm.numpy()[0], [0, -1000, -2000], rtol=1e-6)
    np.testing.assert_allclose(lse.numpy(), [1000, -1e30 + np.log(3)], rtol=1e-6)
    (sm.sum() + lsm.sum() + lse.sum()).backward()
    assert np.all(np.isfinite(x.grad.numpy()))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_sigmoid_is_stable_for_huge_values(dtype):
    x = cgrad.tensor([-1000.0, -50.0, 0.0, 50.0, 1000.0], dtype=dtype, requires_grad=True)
    s = x.sigmoid()
    assert np.all(np.isfinite(s.numpy()))
    assert s.numpy()[0] == 0.0 and s.numpy()[-1] == 1.0
    s.sum().backward()
    assert np.all(np.isfinite(x.grad.numpy()))


def test_empty_tensors():
    e = cgrad.tensor(np.zeros((0, 3)), requires_grad=True)
    assert (e + 1.0).shape == (0, 3)
    assert e.sum().item() == 0.0
    assert e.sum(axis=0).shape == (3,)
    assert (e @ cgrad.tensor(np.ones((3, 2)))).shape == (0, 2)
    assert (cgrad.tensor(np.ones((2, 0))) @ cgrad.tensor(np.ones((0, 4)))).numpy().tolist() == [[0.0] * 4] * 2
    with pytest.raises(ValueError, match="max: cannot reduce over a zero-size dimension"):
        e.amax(0)
    with pytest.raises(ValueError, match="max: cannot reduce over a zero-size dimension"):
        e.max(dim=0)
    (e * 2.0).sum().backward()
    assert e.grad.shape == (0, 3)
    assert e[np.array([], dtype=np.int64)].shape == (0, 3)
    assert cgrad.tensor(np.ones((3, 2)))[2:1].shape == (0, 2)
