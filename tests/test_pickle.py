"""Pickling and copying (pickle, copy.copy, copy.deepcopy) of tensors, parameters, modules,
optimizers, schedulers, History and Trainer: for moving objects between processes."""
import copy
import pickle

import numpy as np
import pytest

import cgrad
from cgrad import nn

PROTOCOLS = list(range(2, pickle.HIGHEST_PROTOCOL + 1))


def roundtrip(obj, protocol=pickle.DEFAULT_PROTOCOL):
    return pickle.loads(pickle.dumps(obj, protocol=protocol))


# ---------------------------------------------------------------- tensors

@pytest.mark.parametrize("protocol", PROTOCOLS)
@pytest.mark.parametrize("dtype", ["float32", "float64", "int64", "int32", "bool", "uint8"])
@pytest.mark.parametrize("shape", [(), (0,), (5,), (2, 3, 4)], ids=str)
def test_tensor_roundtrip_keeps_values_dtype_shape(protocol, dtype, shape, rng):
    values = (rng.standard_normal(shape) * 100).astype(dtype)
    t = cgrad.tensor(values)
    u = roundtrip(t, protocol)
    assert type(u) is cgrad.Tensor and u is not t
    assert u.dtype == np.dtype(dtype) and u.shape == shape and not u.requires_grad and u.is_leaf
    np.testing.assert_array_equal(u.numpy(), values)
    assert not np.shares_memory(u.numpy(), t.numpy())


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_requires_grad_is_kept_and_the_copy_trains(protocol):
    t = cgrad.tensor([1.0, -2.0, 3.0], requires_grad=True)
    u = roundtrip(t, protocol)
    assert u.requires_grad and u.is_leaf
    (u * u).sum().backward()
    np.testing.assert_array_equal(u.grad.numpy(), [2.0, -4.0, 6.0])


def test_pickle_is_raw_bytes_and_protocol_5_goes_out_of_band():
    """The values travel as one buffer of their bytes, not as Python numbers per element."""
    t = cgrad.randn(100_000)
    assert len(pickle.dumps(t, protocol=4)) < t.nbytes + 1000
    buffers = []
    blob = pickle.dumps(t, protocol=5, buffer_callback=buffers.append)
    assert len(buffers) == 1 and buffers[0].raw().nbytes == t.nbytes and len(blob) < 1000
    # as received from another process: read-only bytes, which from_numpy copies
    u = pickle.loads(blob, buffers=[bytes(b.raw()) for b in buffers])
    np.testing.assert_array_equal(u.numpy(), t.numpy())
    before = t.numpy().copy()
    u.add_(1.0)
    np.testing.assert_array_equal(u.numpy(), before + 1.0)
    np.testing.assert_array_equal(t.numpy(), before)


def _semantics(lib, make_param):
    """What pickle and copy do with .grad, requires_grad, leaves and memory, as a table."""
    out = {}
    t = lib.tensor([1.0, 2.0, 3.0], requires_grad=True)
    (t * 2).sum().backward()
    u = roundtrip(t)
    out["pickle leaf"] = (u.requires_grad, u.is_leaf, u.grad is None)
    d = copy.deepcopy(t)
    out["deepcopy leaf"] = (d.requires_grad, d.grad is not None and d.grad.tolist() == [2.0, 2.0, 2.0])
    c = copy.copy(t)
    out["copy.copy leaf"] = (c is t, c.requires_grad, c.grad is None)
    c.detach()[0] = 10.0
    out["copy.copy shares memory"] = t.tolist()[0] == 10.0
    p = make_param(lib.tensor([1.0, 2.0]))
    (p * 3).sum().backward()
    for name, q in (("pickle", roundtrip(p)), ("deepcopy", copy.deepcopy(p)), ("copy.copy", copy.copy(p))):
        out[f"{name} parameter"] = (type(q).__name__, q.requires_grad, q.grad is None)
    n = t * 3
    v = roundtrip(n)
    out["pickle non-leaf"] = (v.requires_grad, v.is_leaf, v.grad_fn is None, v.tolist())
    try:
        copy.deepcopy(n)
        out["deepcopy non-leaf"] = "copied"
    except RuntimeError:
        out["deepcopy non-leaf"] = "RuntimeError"
    w = copy.copy(n)
    out["copy.copy non-leaf"] = (w.requires_grad, w.is_leaf)
    out["deepcopy no-grad result"] = copy.deepcopy(lib.tensor([1.0]) * 2).is_leaf
    return out


# torch 2.13's behaviour (the test below checks this table against torch when it is installed)
EXPECTED = {
    "pickle leaf": (True, True, True),
    "deepcopy leaf": (True, True),
    "copy.copy leaf": (False, True, True),
    "copy.copy shares memory": True,
    "pickle parameter": ("Parameter", True, True),
    "deepcopy parameter": ("Parameter", True, True),
    "copy.copy parameter": ("Parameter", True, True),
    "pickle non-leaf": (True, True, True, [30.0, 6.0, 9.0]),  # t[0] is 10 by then
    "deepcopy non-leaf": "RuntimeError",
    "copy.copy non-leaf": (True, True),
    "deepcopy no-grad result": True,
}


def test_pickle_and_copy_semantics_are_pytorchs():
    assert _semantics(cgrad, nn.Parameter) == EXPECTED


def test_pickle_and_copy_semantics_table_is_torchs():
    torch = pytest.importorskip("torch")
    assert _semantics(torch, torch.nn.Parameter) == EXPECTED


def test_deepcopy_shares_no_memory_and_copies_grad():
    t = cgrad.randn(4, 3, requires_grad=True)
    (t * t).sum().backward()
    d = copy.deepcopy(t)
    assert not np.shares_memory(d.numpy(), t.numpy())
    assert not np.shares_memory(d.grad.numpy(), t.grad.numpy())
    with cgrad.no_grad():
        t.mul_(0.0)
        t.grad.fill_(5.0)
    assert np.all(d.numpy() != 0) and np.all(d.grad.numpy() == 2 * d.numpy())


def test_deepcopy_memo_keeps_one_object_per_tensor():
    p = nn.Parameter(cgrad.randn(3))
    t = cgrad.randn(2)
    a, b, c, e = copy.deepcopy([p, p, t, t])
    assert a is b and c is e and a is not p
    a, b, c, e = roundtrip([p, p, t, t])
    assert a is b and c is e and type(a) is nn.Parameter


def test_a_view_pickles_as_a_tensor_of_its_own():
    base = cgrad.arange(12, dtype=cgrad.float32).reshape(3, 4)
    view = base[1]
    u = roundtrip(view)
    np.testing.assert_array_equal(u.numpy(), [4.0, 5.0, 6.0, 7.0])
    u.add_(1.0)
    assert base.numpy()[1, 0] == 4.0


class _Tagged(cgrad.Tensor):
    """A Tensor subclass with attributes of its own (__dict__)."""


def test_a_subclass_keeps_its_class_and_attributes():
    t = cgrad._C.rewrap(cgrad.randn(3), _Tagged)
    t.note = {"kind": "tagged"}
    for u in (roundtrip(t), copy.deepcopy(t)):
        assert type(u) is _Tagged and u.note == {"kind": "tagged"}
        np.testing.assert_array_equal(u.numpy(), t.numpy())
