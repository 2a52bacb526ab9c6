"""Generic op tests driven by op_table.OPS, each over several seeds (seeded_rng)."""
import math

import numpy as np
import pytest

import cgrad
from cgrad import _C
from op_table import OPS

try:
    import torch
except ImportError:  # PyTorch is an optional oracle
    torch = None

IDS = [op.name for op in OPS]
C_LINES = {op.covers for op in OPS if op.covers is not None}


def _loss(out):
    """A scalar with a non-trivial upstream gradient, so a rule ignoring it cannot pass."""
    return ((out + 1.0) ** 2).sum()


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("op", OPS, ids=IDS)
def test_forward_matches_numpy(op, dtype, seeded_rng):
    arrays = op.inputs(seeded_rng, dtype)
    out = op.fn(*[cgrad.tensor(a) for a in arrays])
    expected = op.ref(*arrays)
    assert out.dtype == np.dtype(dtype)
    assert out.shape == np.shape(expected)
    tol = dict(rtol=op.rtol32, atol=1e-6) if dtype == np.float32 else dict(rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(out.numpy(), expected, **tol)


@pytest.mark.parametrize("op", OPS, ids=IDS)
def test_gradient_matches_finite_differences(op, seeded_rng):
    xs = [cgrad.tensor(a, requires_grad=True) for a in op.inputs(seeded_rng)]
    assert cgrad.gradcheck(lambda *t: _loss(op.fn(*t)), xs)
    # and through gradcheck's own random upstream gradient on the raw output
    assert cgrad.gradcheck(op.fn, xs)


@pytest.mark.parametrize("op", OPS, ids=IDS)
def test_float32_agrees_with_float64(op, seeded_rng):
    arrays = op.inputs(seeded_rng)
    grads = {}
    for dtype in (np.float32, np.float64):
        xs = [cgrad.tensor(a, dtype=dtype, requires_grad=True) for a in arrays]
        out = op.fn(*xs)
        out.backward(np.ones(out.shape))
        grads[dtype] = [x.grad.numpy() for x in xs] + [out.numpy()]
    for g32, g64 in zip(grads[np.float32], grads[np.float64]):
        np.testing.assert_allclose(g32, g64, rtol=1e-4, atol=1e-5)


# ops whose rule is user code (autograd.Function, hooks): tests/test_autograd_function.py
PYTHON_OPS = {name for name, family, _ in _C.op_table() if family == "python"}


def test_every_registered_c_op_has_a_table_line():
    missing = set(_C.op_names()) - C_LINES - PYTHON_OPS
    assert not missing, f"C ops without an op-table line: {sorted(missing)}"


def test_table_names_only_registered_ops():
    assert C_LINES <= set(_C.op_names())


# the families of csrc/ops.def, with how many tensor inputs an op of each takes at most
FAMILY_INPUTS = {"unary": 1, "binary": 2, "where": 2, "reduce": 1, "softmax": 1, "matmul": 2,
                 "reshape": 1, "strided": 1, "gather": 1, "concat": 7, "cross_entropy": 1, "linear": 3,
                 "cast": 1, "scatter_add": 2, "python": 7, "gemm": 2,
                 "conv": 3, "conv_dx": 2, "conv_dw": 2, "pool": 2,
                 "batch_norm": 6,  # x, weight, bias, running_mean, running_var, the count
                 # ---- embedding and losses ----
                 "layer_norm": 3,  # x, weight, bias (layer_norm and rms_norm)
                 "embedding": 1,  # the table
                 # ---- end of embedding and losses ----
                 # ---- recurrent ----
                 "rnn": 6,  # xp, w_hh, h0, c0, b_hh, the step-norm buffer
                 # ---- end of recurrent ----
                 # ---- attention ----
                 "attention": 5,  # q, k, v, the mask, the entropy buffer
                 # ---- end of attention ----
                 }
READS_OUTPUT = 128


def test_op_registry_families_and_reads():
    table = _C.op_table()
    assert [name for name, _, _ in table] == _C.op_names()
    for name, family, reads in table:
        assert family in FAMILY_INPUTS, f"{name}: unknown family {family!r}"
        inputs = (1 << FAMILY_INPUTS[family]) - 1
        assert reads & ~(inputs | READS_OUTPUT) == 0, \
            f"{name} ({family}, {FAMILY_INPUTS[family]} inputs) reads bits {reads:#b}"


def _graph_nodes(out):
    """(op name, number of inputs) of each node on the tape behind `out`."""
    seen, nodes, todo = set(), [], [out]
    while todo:
        name, inputs = _C.graph_node(todo.pop())
        if name is not None:
            nodes.append((name, len(inputs)))
        for t in inputs:
            if _C.tensor_key(t) not in seen:
                seen.add(_C.tensor_key(t))
                todo.append(t)
    return nodes


@pytest.mark.parametrize("op", OPS, ids=IDS)
def test_a_line_records_the_op_it_covers(op, rng):
    """A line's `covers` is the truth: its graph holds that C op (a composite line,
    covers=None, claims none); and each node has no more inputs than FAMILY_INPUTS says."""
    families = {name: family for name, family, _ in _C.op_table()}
    nodes = _graph_nodes(op.fn(*[cgrad.tensor(a, requires_grad=True) for a in op.inputs(rng)]))
    assert op.covers is None or op.covers in {name for name, _ in nodes}
    for name, n_inputs in nodes:
        assert n_inputs <= FAMILY_INPUTS[families[name]], name


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
def test_every_op_replays_like_eager(op, seeded_rng):
    """cgrad.compile reruns each op from its node (cg_replay_table): recorded with one set
    of inputs, replayed with another, values and gradients equal the eager ones exactly."""
    first, second = op.inputs(seeded_rng), op.inputs(seeded_rng)
    params = [cgrad.tensor(seeded_rng.uniform(0.5, 1.5, np.shape(a)), requires_grad=True) for a in first]

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
    if not op.replays:
        with pytest.raises(RuntimeError, match="cgrad.compile"):
            compiled(*first)
        return
    compiled(*first)  # records
    grads()
    replayed = compiled(*second).numpy()
    replayed_grads = grads()
    eager = step(*[cgrad.tensor(a) for a in second]).numpy()
    eager_grads = grads()
    assert np.array_equal(replayed, eager)
    for r, e in zip(replayed_grads, eager_grads):
        assert (r is None and e is None) or np.array_equal(r, e)


@pytest.mark.skipif(torch is None, reason="PyTorch not installed")
@pytest.mark.parametrize("op", OPS, ids=IDS)
def test_agrees_with_pytorch(op, seeded_rng):
    """In float64: forward values and the gradients of one non-trivial scalar loss equal
    PyTorch's (op.torch, or op.fn itself on torch tensors)."""
    if op.torch is None:
        pytest.skip(f"{op.name}: PyTorch has no counterpart")
    torch_fn = op.fn if op.torch == "fn" else op.torch
    arrays = op.inputs(seeded_rng)
    xs = [cgrad.tensor(a, requires_grad=True) for a in arrays]
    ts = [torch.tensor(a, requires_grad=True) for a in arrays]
    out, tout = op.fn(*xs), torch_fn(*ts)
    assert isinstance(tout, torch.Tensor), f"{op.name}: fn does not run on torch tensors; set op.torch"
    _loss(out).backward()
    _loss(tout).backward()
    assert out.shape == tuple(tout.shape)
    np.testing.assert_allclose(out.numpy(), tout.detach().numpy(), rtol=1e-10, atol=1e-12)
    for x, t in zip(xs, ts):
        theirs = np.zeros(t.shape) if t.grad is None else t.grad.numpy()
        np.testing.assert_allclose(x.grad.numpy(), theirs, rtol=1e-10, atol=1e-12)


def test_every_elementwise_op_is_compared_with_pytorch():
    elementwise = {name for name, family, _ in _C.op_table() if family in ("unary", "binary")}
    compared = {op.covers for op in OPS if op.torch is not None}
    assert not elementwise - compared, sorted(elementwise - compared)


def test_float32_erf_and_gelu_on_a_dense_sweep():
    """float32 erf runs in float arithmetic (csrc/fastmath.h: a polynomial below 0.84, erfc
    as exp(-x^2) times fitted functions above): within 1 ulp of float64 erf rounded to float
    over both pieces and their seams. GELU computes 1 + erf(x / sqrt 2) from erfc in one
    piece, so it keeps its relative accuracy for x << 0, where 1 + erf would cancel."""
    x = np.concatenate([np.linspace(-12, 12, 400_001), np.geomspace(1e-30, 12, 100_001),
                        np.linspace(0.83, 0.85, 10_001), np.linspace(3.9, 3.94, 10_001),
                        np.linspace(9.2, 9.4, 1001)]).astype(np.float32)
    x = np.concatenate([x, -x, [0.0, -0.0, np.inf, -np.inf, np.nan]]).astype(np.float32)
    want = np.array([math.erf(v) for v in x.astype(np.float64)]).astype(np.float32)
    got = cgrad.tensor(x).erf().numpy()
    assert _ulps(got, want).max() <= 1, x[_ulps(got, want).argmax()]
    z = x[np.isfinite(x) & (x > -12)].astype(np.float64)
    phi = np.array([math.erfc(-v / math.sqrt(2)) for v in z]) / 2
    want_gelu, want_grad = z * phi, phi + z * np.exp(-0.5 * z * z) / math.sqrt(2 * math.pi)
    t = cgrad.tensor(z.astype(np.float32), requires_grad=True)
    y = t.gelu()
    y.sum().backward()
    np.testing.assert_allclose(y.numpy(), want_gelu, rtol=2e-5, atol=1e-37)
    inner = np.abs(z) < 4
    np.testing.assert_allclose(y.numpy()[inner], want_gelu[inner], rtol=2e-6, atol=1e-37)
    np.testing.assert_allclose(t.grad.numpy(), want_grad, rtol=1e-5, atol=2e-7)


def test_float32_tanh_is_correctly_rounded_on_a_dense_sweep():
    """float32 tanh runs in float arithmetic (csrc/fastmath.h): a fitted polynomial below
    0.625, 1 - 2 / (exp(2|x|) + 1) above. Over a dense sweep of both branches and their
    seam it stays within 1 ulp of float64 tanh rounded to float32."""
    x = np.concatenate([np.linspace(-12, 12, 400_001), np.geomspace(1e-30, 12, 100_001),
                        np.linspace(0.6, 0.65, 10_001)]).astype(np.float32)
    x = np.concatenate([x, -x])
    got = cgrad.tensor(x).tanh().numpy()
    want = np.tanh(x.astype(np.float64)).astype(np.float32)
    assert _ulps(got, want).max() <= 1, x[_ulps(got, want).argmax()]
