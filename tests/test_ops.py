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


def _ulps(got, want):
    """Distance in float32 units in the last place (0 where both are the same NaN or zero)."""
    g = got.view(np.int32).astype(np.int64)
    w = want.view(np.int32).astype(np.int64)
    g = np.where(g < 0, -(g & 0x7FFFFFFF), g)  # order the bit patterns like the values
    w = np.where(w < 0, -(w & 0x7FFFFFFF), w)
    d = np.abs(g - w)
    d[np.isnan(got) & np.isnan(want)] = 0
    return d


@pytest.mark.parametrize("name, ref", [
    ("exp", np.exp),
    ("tanh", np.tanh),
    ("sigmoid", lambda x: 1 / (1 + np.exp(-x))),
])
def test_float32_transcendentals_are_correctly_rounded(name, ref, rng):
    """exp, tanh and sigmoid have their own vectorised float32 code (csrc/fastmath.h):
    within 1 ulp of the float64 result rounded to float32, with signs, zeros, infinities,
    NaN and the under/overflow edges right."""
    x = np.concatenate([
        rng.standard_normal(100_000) * 5, rng.standard_normal(20_000) * 1e-3,
        np.linspace(-120, 120, 20_001), np.geomspace(1e-30, 1e-2, 1000),
        -np.geomspace(1e-30, 1e-2, 1000),
        [0.0, -0.0, np.inf, -np.inf, np.nan, 88.72, 88.73, -87.3, -103.9, -104.0, 1e-45, 9.0, 10.0],
    ]).astype(np.float32)
    got = getattr(cgrad.tensor(x), name)().numpy()
    with np.errstate(over="ignore"):
        want = ref(x.astype(np.float64)).astype(np.float32)
    assert _ulps(got, want).max() <= 1
    finite = ~np.isnan(want)
    assert np.array_equal(np.signbit(got[finite]), np.signbit(want[finite]))
    assert np.isnan(got[~finite]).all()


@pytest.mark.parametrize("op", OPS, ids=IDS)
def test_every_op_replays_like_eager(op, rng):
    """cgrad.compile reruns each op from its node (cg_replay_table): recorded with one set
    of inputs, replayed with another, values and gradients equal the eager ones exactly."""
    first, second = op.inputs(rng), op.inputs(rng)
    params = [cgrad.tensor(rng.uniform(0.5, 1.5, np.shape(a)), requires_grad=True) for a in first]

    def step(*xs):
        out = op.fn(*[p * x for p, x in zip(params, xs)])
        _loss(out).backward()
        return out

    def grads():
        got = [None if p.grad is None else p.grad.numpy().copy() for p in params]
        for p in params:
            p.grad = None
        return got

    compiled = cgrad.compile(step)
    compiled(*first)  # records
    grads()
    replayed = compiled(*second).numpy()
    replayed_grads = grads()
    eager = step(*[cgrad.tensor(a) for a in second]).numpy()
    eager_grads = grads()
    assert np.array_equal(replayed, eager)
    for r, e in zip(replayed_grads, eager_grads):
        assert (r is None and e is None) or np.array_equal(r, e)
