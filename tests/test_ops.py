"""Generic op tests driven by op_table.OPS."""
import numpy as np
import pytest

import cgrad
from cgrad import _C
from op_table import OPS

IDS = [op.name for op in OPS]


def _loss(out):
    """A scalar with a non-trivial upstream gradient, so a rule ignoring it cannot pass."""
    return ((out + 1.0) ** 2).sum()


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("op", OPS, ids=IDS)
def test_forward_matches_numpy(op, dtype, rng):
    arrays = op.inputs(rng, dtype)
    out = op.fn(*[cgrad.tensor(a) for a in arrays])
    expected = op.ref(*arrays)
    assert out.dtype == np.dtype(dtype)
    assert out.shape == np.shape(expected)
    tol = dict(rtol=op.rtol32, atol=1e-6) if dtype == np.float32 else dict(rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(out.numpy(), expected, **tol)


@pytest.mark.parametrize("op", OPS, ids=IDS)
def test_gradient_matches_finite_differences(op, rng):
    xs = [cgrad.tensor(a, requires_grad=True) for a in op.inputs(rng)]
    assert cgrad.gradcheck(lambda *t: _loss(op.fn(*t)), xs)
    # and through gradcheck's own random upstream gradient on the raw output
    assert cgrad.gradcheck(op.fn, xs)


@pytest.mark.parametrize("op", OPS, ids=IDS)
def test_float32_agrees_with_float64(op, rng):
    arrays = op.inputs(rng)
    grads = {}
    for dtype in (np.float32, np.float64):
        xs = [cgrad.tensor(a, dtype=dtype, requires_grad=True) for a in arrays]
        out = op.fn(*xs)
        out.backward(np.ones(out.shape))
        grads[dtype] = [x.grad.numpy() for x in xs] + [out.numpy()]
    for g32, g64 in zip(grads[np.float32], grads[np.float64]):
        np.testing.assert_allclose(g32, g64, rtol=1e-4, atol=1e-5)


def test_every_registered_c_op_has_a_table_line():
    covered = {op.covers for op in OPS}
    missing = set(_C.op_names()) - covered
    assert not missing, f"C ops without an op-table line: {sorted(missing)}"


def test_table_names_only_registered_ops():
    assert {op.covers for op in OPS} <= set(_C.op_names())


BROADCAST_PAIRS = [((3, 4), (4,)), ((3, 1), (1, 4)), ((1,), (2, 3)), ((2, 1, 3), (4, 1)),
                   ((), (2, 2)), ((5, 1, 1), (1, 2, 3)), ((2, 3), (2, 3))]


@pytest.mark.parametrize("shapes", BROADCAST_PAIRS, ids=str)
@pytest.mark.parametrize("opname", ["add", "sub", "mul", "div", "maximum", "minimum"])
def test_broadcasting_binary_ops(opname, shapes, rng):
    a = rng.uniform(0.5, 2, shapes[0])
    b = rng.uniform(0.5, 2, shapes[1]) + 3 * (opname in ("maximum", "minimum"))
    fn = {"add": lambda x, y: x + y, "sub": lambda x, y: x - y, "mul": lambda x, y: x * y,
          "div": lambda x, y: x / y, "maximum": cgrad.maximum, "minimum": cgrad.minimum}[opname]
    ref = {"add": np.add, "sub": np.subtract, "mul": np.multiply, "div": np.divide,
           "maximum": np.maximum, "minimum": np.minimum}[opname]
    xs = [cgrad.tensor(a, requires_grad=True), cgrad.tensor(b, requires_grad=True)]
    np.testing.assert_allclose(fn(*xs).numpy(), ref(a, b), rtol=1e-12)
    assert cgrad.gradcheck(lambda x, y: _loss(fn(x, y)), xs)
