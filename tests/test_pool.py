"""Pooling (csrc/pool.c, nn.functional's pooling section, nn/pooling.py): values, input
gradients and indices against the naive loops of pool_reference.py (always) and PyTorch
(when installed), over odd geometries in both dtypes; ties and NaN; the errors; replayed
CNN steps bitwise equal to eager ones; the layers' reprs."""
import numpy as np
import pytest

import cgrad
import pool_reference as ref
from train_steps import assert_same, train_step
from cgrad import nn
from cgrad.nn import functional as F

# (functional, spatial, input shape, keyword arguments): stride over kernel, padding,
# dilation, ceil_mode with partial last windows, count_include_pad both ways,
# divisor_override, batch 1, non-square, unbatched, rows longer than a chunk of the max
# loop (64 columns), 1-D rows that the windows tile (one long row in the max loop),
# adaptive sizes that do not divide the input or exceed it
CONFIGS = [
    ("max_pool2d", 2, (2, 3, 8, 8), dict(kernel_size=2)),
    ("max_pool2d", 2, (1, 2, 7, 9), dict(kernel_size=3, stride=2, padding=1)),
    ("max_pool2d", 2, (2, 2, 9, 7), dict(kernel_size=(3, 2), stride=(1, 3), padding=(1, 0), dilation=(2, 1),
                                         ceil_mode=True)),
    ("max_pool2d", 2, (1, 1, 5, 5), dict(kernel_size=2, stride=3, ceil_mode=True)),
    ("max_pool2d", 2, (3, 6, 5), dict(kernel_size=2, ceil_mode=True)),
    ("max_pool2d", 2, (2, 2, 3, 150), dict(kernel_size=(1, 3), stride=1)),
    ("max_pool2d", 2, (1, 2, 6, 70), dict(kernel_size=3, stride=(2, 3), padding=1, dilation=2)),
    ("max_pool2d", 2, (1, 1, 4, 4), dict(kernel_size=4)),
    ("max_pool1d", 1, (2, 3, 10), dict(kernel_size=2)),
    ("max_pool1d", 1, (2, 2, 300), dict(kernel_size=4, stride=4)),
    ("max_pool1d", 1, (3, 12), dict(kernel_size=3, stride=3)),
    ("max_pool1d", 1, (3, 7), dict(kernel_size=3, stride=3, padding=1, ceil_mode=True)),
    ("max_pool1d", 1, (1, 2, 9), dict(kernel_size=2, stride=1, padding=1, dilation=3)),
    ("adaptive_max_pool2d", 2, (2, 2, 7, 5), dict(output_size=(3, 2))),
    ("adaptive_max_pool2d", 2, (1, 1, 5, 5), dict(output_size=7)),
    ("adaptive_max_pool2d", 2, (2, 3, 6, 9), dict(output_size=(None, 4))),
    ("adaptive_max_pool2d", 2, (2, 2, 4, 4), dict(output_size=1)),
    ("adaptive_max_pool1d", 1, (2, 3, 10), dict(output_size=4)),
    ("adaptive_max_pool1d", 1, (3, 5), dict(output_size=8)),
    ("avg_pool2d", 2, (2, 3, 8, 8), dict(kernel_size=2)),
    ("avg_pool2d", 2, (1, 2, 7, 9), dict(kernel_size=3, stride=2, padding=1, ceil_mode=True)),
    ("avg_pool2d", 2, (1, 2, 7, 9), dict(kernel_size=3, stride=2, padding=1, ceil_mode=True,
                                         count_include_pad=False)),
    ("avg_pool2d", 2, (2, 1, 5, 6), dict(kernel_size=(3, 2), stride=(2, 3), padding=(1, 1), ceil_mode=True,
                                         divisor_override=4)),
    ("avg_pool2d", 2, (3, 5, 5), dict(kernel_size=2, stride=1)),
    ("avg_pool2d", 2, (1, 1, 4, 7), dict(kernel_size=(2, 3), stride=(3, 4), ceil_mode=True)),
    ("avg_pool1d", 1, (2, 3, 11), dict(kernel_size=4, stride=3, padding=2, ceil_mode=True)),
    ("avg_pool1d", 1, (2, 3, 11), dict(kernel_size=4, stride=3, padding=2, ceil_mode=True,
                                       count_include_pad=False)),
    ("avg_pool1d", 1, (2, 7), dict(kernel_size=3)),
    ("adaptive_avg_pool2d", 2, (2, 2, 7, 5), dict(output_size=(3, 2))),
    ("adaptive_avg_pool2d", 2, (1, 1, 5, 5), dict(output_size=7)),
    ("adaptive_avg_pool2d", 2, (2, 3, 6, 9), dict(output_size=(None, 4))),
    ("adaptive_avg_pool2d", 2, (2, 2, 4, 4), dict(output_size=1)),
    ("adaptive_avg_pool1d", 1, (2, 3, 10), dict(output_size=4)),
    ("adaptive_avg_pool1d", 1, (3, 5), dict(output_size=8)),
]
IDS = [f"{name}-{'x'.join(map(str, shape))}-{i}" for i, (name, _, shape, _) in enumerate(CONFIGS)]
DTYPES = [np.float32, np.float64]


def _geometry(kwargs):
    """F's keywords as pool_reference's."""
    return {("kernel" if k == "kernel_size" else k): v for k, v in kwargs.items()}


def _reference(name, spatial, x, kwargs):
    """The naive loops' values, indices (None for averages) and d(sum(g * values))/dx as a
    function of g."""
    mode = "max" if "max" in name else "avg"
    out = ref.pool(x, mode, spatial, **_geometry(kwargs))
    values, indices = out if mode == "max" else (out, None)
    return values, indices, lambda g: ref.pool_grad(x, g, mode, spatial, **_geometry(kwargs))


def _run(name, x, kwargs, g):
    """cgrad's values, indices (max) and input gradient of sum(g * values)."""
    t = cgrad.tensor(x, requires_grad=True)
    fn = getattr(F, name)
    if "max" in name:
        y, idx = fn(t, **kwargs, return_indices=True)
        idx = idx.numpy()
    else:
        y, idx = fn(t, **kwargs), None
    y.backward(g.astype(x.dtype))
    return y.numpy(), idx, t.grad.numpy()


def _tol(dtype):
    return dict(rtol=1e-5, atol=1e-6) if dtype == np.float32 else dict(rtol=1e-12, atol=1e-13)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name, spatial, shape, kwargs", CONFIGS, ids=IDS)
def test_values_indices_and_gradient_match_the_naive_loops(name, spatial, shape, kwargs, dtype, rng):
    x = rng.standard_normal(shape).astype(dtype)
    want, want_idx, want_grad = _reference(name, spatial, x, kwargs)
    g = rng.standard_normal(want.shape)
    got, got_idx, got_grad = _run(name, x, kwargs, g)
    assert got.dtype == dtype and got.shape == want.shape
    np.testing.assert_allclose(got, want, **_tol(dtype))
    if want_idx is not None:
        assert got_idx.dtype == np.int64
        np.testing.assert_array_equal(got_idx, want_idx)
    np.testing.assert_allclose(got_grad, want_grad(g), **_tol(dtype))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name, spatial, shape, kwargs", CONFIGS, ids=IDS)
def test_values_indices_and_gradient_match_pytorch(name, spatial, shape, kwargs, dtype, rng):
    torch = pytest.importorskip("torch")
    x = rng.standard_normal(shape).astype(dtype)
    t = torch.tensor(x, requires_grad=True)
    fn = getattr(torch.nn.functional, name)
    if "max" in name:
        ty, tidx = fn(t, **kwargs, return_indices=True)
    else:
        ty, tidx = fn(t, **kwargs), None
    g = rng.standard_normal(tuple(ty.shape))
    ty.backward(torch.tensor(g.astype(dtype)))
    got, got_idx, got_grad = _run(name, x, kwargs, g)
    np.testing.assert_allclose(got, ty.detach().numpy(), **_tol(dtype))
    if tidx is not None:
        np.testing.assert_array_equal(got_idx, tidx.numpy())
    np.testing.assert_allclose(got_grad, t.grad.numpy(), **_tol(dtype))


def _ties_and_nans(rng, shape, dtype):
    """Small integers (many ties), some NaN and -inf: where PyTorch's order rules show."""
    x = rng.integers(0, 3, shape).astype(dtype)
    x[rng.random(shape) < 0.08] = np.nan
    x[rng.random(shape) < 0.08] = -np.inf
    return x


MAX_CONFIGS = [(c, i) for c, i in zip(CONFIGS, IDS) if "max" in c[0]]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name, spatial, shape, kwargs", [c for c, _ in MAX_CONFIGS], ids=[i for _, i in MAX_CONFIGS])
def test_ties_go_to_the_first_maximum_and_nan_wins(name, spatial, shape, kwargs, dtype, rng):
    """As PyTorch: a tie keeps the first maximum in scan order, a NaN takes over (so the
    last NaN is named), a window of -inf names its first element; the gradient follows."""
    x = _ties_and_nans(rng, shape, dtype)
    want, want_idx, want_grad = _reference(name, spatial, x, kwargs)
    g = rng.standard_normal(want.shape)
    got, got_idx, got_grad = _run(name, x, kwargs, g)
    np.testing.assert_array_equal(got, want)
    np.testing.assert_array_equal(got_idx, want_idx)
    np.testing.assert_allclose(got_grad, want_grad(g), **_tol(dtype))
    torch = pytest.importorskip("torch")
    ty, tidx = getattr(torch.nn.functional, name)(torch.tensor(x), **kwargs, return_indices=True)
    np.testing.assert_array_equal(got, ty.numpy())
    np.testing.assert_array_equal(got_idx, tidx.numpy())


def test_a_window_that_covers_no_input_is_minus_inf_with_index_minus_one():
    """Padding 1 with dilation 3 and kernel 2 puts the one window's taps at -1 and 2 of a
    length-2 input: no element. PyTorch returns -inf too, with an index past the plane that
    its backward would write to; cgrad names no element and routes no gradient."""
    x = cgrad.tensor([[[1.0, 2.0]]], requires_grad=True)
    y, idx = F.max_pool1d(x, 2, padding=1, dilation=3, return_indices=True)
    assert y.numpy().tolist() == [[[-np.inf]]] and idx.numpy().tolist() == [[[-1]]]
    y.sum().backward()
    assert x.grad.numpy().tolist() == [[[0.0, 0.0]]]
    a = F.avg_pool1d(cgrad.tensor([[[1.0, 2.0, 3.0]]]), 2, stride=2, padding=1, ceil_mode=True)
    np.testing.assert_allclose(a.numpy(), [[[0.5, 2.5]]])  # the padding counts, as PyTorch


def test_an_empty_batch_gives_an_empty_output():
    x = cgrad.zeros(0, 2, 5, 5)
    assert F.max_pool2d(x, 2).shape == (0, 2, 2, 2)
    assert F.avg_pool2d(x, 2, ceil_mode=True).shape == (0, 2, 3, 3)
    assert F.adaptive_avg_pool2d(cgrad.zeros(1, 0, 4, 4), 2).shape == (1, 0, 2, 2)  # PyTorch allows no channels here
    assert F.adaptive_max_pool2d(cgrad.zeros(1, 1, 4, 4), 0).shape == (1, 1, 0, 0)


@pytest.mark.parametrize("fn, args", [
    (F.max_pool2d, dict(kernel_size=3, stride=2, padding=1, ceil_mode=True)),
    (F.avg_pool2d, dict(kernel_size=3, stride=2, padding=1, ceil_mode=True, count_include_pad=False)),
    (F.avg_pool2d, dict(kernel_size=2, divisor_override=3)),
    (F.adaptive_max_pool2d, dict(output_size=(4, 3))),
    (F.adaptive_avg_pool2d, dict(output_size=(2, 5))),
    (F.max_pool1d, dict(kernel_size=2)),
])
def test_second_derivatives(fn, args, rng):
    """Through the taped rules (create_graph=True): gradgradcheck, and a third order."""
    x = cgrad.tensor(rng.standard_normal((2, 2, 5, 6) if fn is not F.max_pool1d else (2, 3, 8)),
                     requires_grad=True)
    assert cgrad.gradgradcheck(lambda t: fn(t, **args) ** 2, [x])
    (g,) = cgrad.autograd.grad((fn(x, **args) ** 3).sum(), [x], create_graph=True)
    (h,) = cgrad.autograd.grad(g.sum(), [x], create_graph=True)
    (k,) = cgrad.autograd.grad((h * h).sum(), [x])
    assert k.shape == x.shape and np.isfinite(k.numpy()).all()


# ---- errors: PyTorch's checks, naming the op and the shapes ----
X4 = (1, 2, 5, 5)
ERRORS = [
    (lambda: F.max_pool2d(cgrad.zeros(*X4), 3, padding=2), ValueError,
     r"max_pool2d: pad should be at most half of kernel size, but got padding=2 and kernel_size=3"),
    (lambda: F.avg_pool1d(cgrad.zeros(1, 2, 5), 2, padding=2), ValueError, r"avg_pool1d: pad should be at most half"),
    (lambda: F.max_pool2d(cgrad.zeros(*X4), 7), ValueError,
     r"max_pool2d: given an input of shape \(1, 2, 5, 5\), the calculated output shape \(1, 2, 0, 0\) is too small"),
    (lambda: F.avg_pool1d(cgrad.zeros(2, 9), 10), ValueError,
     r"avg_pool1d: given an input of shape \(2, 9\), the calculated output shape \(2, 0\) is too small"),
    (lambda: F.max_pool2d(cgrad.zeros(*X4), 2, stride=0), ValueError, r"max_pool2d: stride must be positive, got \(0, 0\)"),
    (lambda: F.max_pool1d(cgrad.zeros(1, 2, 5), 0), ValueError, r"max_pool1d: kernel_size must be positive, got 0"),
    (lambda: F.max_pool2d(cgrad.zeros(*X4), 2, dilation=(1, 0)), ValueError, r"dilation must be positive"),
    (lambda: F.avg_pool2d(cgrad.zeros(*X4), 2, padding=-1), ValueError, r"avg_pool2d: padding must be non-negative"),
    (lambda: F.avg_pool2d(cgrad.zeros(*X4), 2, divisor_override=0), ValueError, r"avg_pool2d: divisor must be not zero"),
    (lambda: F.max_pool2d(cgrad.zeros(*X4), (2, 2, 2)), ValueError,
     r"max_pool2d: kernel_size must be an int or a tuple of 2 ints, got \(2, 2, 2\)"),
    (lambda: F.max_pool2d(cgrad.zeros(5, 5), 2), ValueError,
     r"max_pool2d: expected a 3-D or 4-D \(batched\) input .* got shape \(5, 5\)"),
    (lambda: F.max_pool1d(cgrad.zeros(1, 1, 2, 5), 2), ValueError,
     r"max_pool1d: expected a 2-D or 3-D \(batched\) input .* got shape \(1, 1, 2, 5\)"),
    (lambda: F.max_pool2d(cgrad.zeros(1, 0, 4, 4), 2), ValueError, r"max_pool2d: .* got shape \(1, 0, 4, 4\)"),
    (lambda: F.adaptive_avg_pool2d(cgrad.zeros(1, 1, 0, 4), 2), ValueError,
     r"adaptive_avg_pool2d: .* got shape \(1, 1, 0, 4\)"),
    (lambda: F.adaptive_max_pool2d(cgrad.zeros(*X4), (2, 3, 4)), ValueError,
     r"adaptive_max_pool2d: output_size must be an int or a tuple of 2 ints or None, got \(2, 3, 4\)"),
    (lambda: F.adaptive_max_pool1d(cgrad.zeros(1, 2, 5), -1), ValueError,
     r"adaptive_max_pool1d: output_size must be non-negative, got -1"),
    (lambda: F.max_pool2d(cgrad.zeros(*X4, dtype=cgrad.int64), 2), TypeError,
     r"max_pool: needs a float32 or float64 tensor, got int64 of shape \(1, 2, 5, 5\)"),
    # the core's own checks, for callers of the binding: shapes and geometry
    (lambda: cgrad._C.avg_pool(cgrad.zeros(1, 2, 5, 4), ref.taped_geometry()), ValueError,
     r"avg_pool: a tensor of shape \(1, 2, 5, 4\) does not end in the input size \(5, 6\)"),
    (lambda: cgrad._C.max_pool_backward(cgrad.zeros(2, 2, 3, 3), cgrad.zeros(2, 2, 5, 6), ref.taped_geometry()),
     ValueError, r"max_pool_backward: the gradient of shape \(2, 2, 3, 3\) does not go with an input of shape "
                 r"\(2, 2, 5, 6\)"),
    (lambda: cgrad._C.max_pool(cgrad.zeros(2, 2, 5, 6), ref.taped_geometry()._replace(stride=(0, 2))), ValueError,
     r"max_pool: bad window geometry for dim 0: input 5, output 3, kernel 3, stride 0"),
    (lambda: cgrad._C.avg_pool(cgrad.zeros(2, 2, 5, 6), ref.taped_geometry()._replace(dilation=(2, 1))), ValueError,
     r"avg_pool: averages take no dilation"),
    (lambda: cgrad._C.pool_geometry(cgrad.zeros(2) + 1), RuntimeError, r"not made by a pooling op"),
]


@pytest.mark.parametrize("call, exc, message", ERRORS, ids=[m[:40] for _, _, m in ERRORS])
def test_errors_name_the_op_and_the_shapes(call, exc, message):
    with pytest.raises(exc, match=message):
        call()


# ---- layers ----
LAYERS = [
    ("MaxPool2d", (2,), {}, "MaxPool2d(kernel_size=2, stride=2, padding=0, dilation=1, ceil_mode=False)"),
    ("MaxPool1d", (3, 2, 1, 2, True, True), {},
     "MaxPool1d(kernel_size=3, stride=2, padding=1, dilation=2, ceil_mode=True)"),
    ("MaxPool2d", ((2, 3),), dict(stride=(1, 2), padding=(1, 0)),
     "MaxPool2d(kernel_size=(2, 3), stride=(1, 2), padding=(1, 0), dilation=1, ceil_mode=False)"),
    ("AvgPool2d", ((2, 3),), {}, "AvgPool2d(kernel_size=(2, 3), stride=(2, 3), padding=0)"),
    ("AvgPool2d", (3,), dict(stride=1, padding=1, count_include_pad=False, divisor_override=2),
     "AvgPool2d(kernel_size=3, stride=1, padding=1)"),
    ("AvgPool1d", (3,), {}, "AvgPool1d(kernel_size=(3,), stride=(3,), padding=(0,))"),
    ("AdaptiveAvgPool2d", ((None, 3),), {}, "AdaptiveAvgPool2d(output_size=(None, 3))"),
    ("AdaptiveAvgPool1d", (4,), {}, "AdaptiveAvgPool1d(output_size=4)"),
    ("AdaptiveMaxPool2d", (2,), {}, "AdaptiveMaxPool2d(output_size=2)"),
    ("AdaptiveMaxPool1d", (3, True), {}, "AdaptiveMaxPool1d(output_size=3)"),
]


@pytest.mark.parametrize("cls, args, kwargs, text", LAYERS, ids=[t for *_, t in LAYERS])
def test_layer_repr_and_forward(cls, args, kwargs, text, rng):
    layer = getattr(nn, cls)(*args, **kwargs)
    assert repr(layer) == text
    assert layer.state_dict() == {} and list(layer.parameters()) == []
    x = rng.standard_normal((2, 3, 7, 8) if "2d" in cls else (2, 3, 9))
    got = layer(cgrad.tensor(x))
    if getattr(layer, "return_indices", False):
        got = got[0]
    torch = pytest.importorskip("torch")
    theirs = getattr(torch.nn, cls)(*args, **kwargs)
    assert repr(theirs) == text
    want = theirs(torch.tensor(x))
    if isinstance(want, tuple):
        want = want[0]
    np.testing.assert_allclose(got.numpy(), want.numpy(), rtol=1e-12)


def test_layer_attributes_are_pytorchs():
    m = nn.MaxPool2d(3)
    assert (m.kernel_size, m.stride, m.padding, m.dilation, m.return_indices, m.ceil_mode) == (3, 3, 0, 1, False, False)
    a = nn.AvgPool1d(2, padding=1)
    assert (a.kernel_size, a.stride, a.padding, a.ceil_mode, a.count_include_pad) == ((2,), (2,), (1,), False, True)
    b = nn.AvgPool2d(2, 1)
    assert (b.kernel_size, b.stride, b.divisor_override) == (2, 1, None)
    values, indices = nn.AdaptiveMaxPool2d((2, 2), return_indices=True)(cgrad.tensor(np.arange(16.0).reshape(1, 1, 4, 4)))
    assert values.numpy().ravel().tolist() == [5, 7, 13, 15] and indices.numpy().ravel().tolist() == [5, 7, 13, 15]


# ---- cgrad.compile, the profiler, anomaly mode ----
class _SmallCNN(nn.Module):
    """A 1 x 1 'convolution' (Linear over channels), then max, average and adaptive
    pooling, then a linear head."""

    def __init__(self, act="relu"):
        super().__init__()
        self.act = act
        self.mix = nn.Linear(3, 4)
        self.pool = nn.MaxPool2d(2, ceil_mode=True)
        self.avg = nn.AvgPool2d(2, stride=1, padding=1, count_include_pad=False)
        self.adapt = nn.AdaptiveMaxPool2d((2, 3))
        self.seq = nn.AdaptiveAvgPool1d(3)
        self.head = nn.Linear(4 * 3 + 4 * 2 * 3, 5)

    def forward(self, x):  # x [N, 3, 9, 8]
        h = getattr(self.mix(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2), self.act)()  # [N, 4, 9, 8]
        h = self.avg(self.pool(h))                                        # [N, 4, 6, 5]
        a = self.adapt(h).reshape(x.shape[0], -1)                          # [N, 24]
        s = self.seq(F.max_pool1d(h.reshape(x.shape[0], 4, -1), 3, 2, 1))  # [N, 4, 3]
        return self.head(cgrad.cat([a, s.reshape(x.shape[0], -1)], 1))


def _models(dtype, act="relu"):
    cgrad.manual_seed(0)
    m1 = _SmallCNN(act).to(dtype)
    cgrad.manual_seed(0)
    m2 = _SmallCNN(act).to(dtype)
    return m1, m2


@pytest.mark.parametrize("dtype", DTYPES)
def test_replayed_cnn_training_steps_equal_eager_ones_bitwise(dtype, rng):
    m1, m2 = _models(dtype)
    eager = train_step(m1, cgrad.optim.SGD(m1.parameters(), lr=0.1, momentum=0.9))
    compiled = cgrad.compile(train_step(m2, cgrad.optim.SGD(m2.parameters(), lr=0.1, momentum=0.9)))
    for _ in range(4):
        x, y = rng.standard_normal((6, 3, 9, 8)).astype(dtype), rng.integers(0, 5, 6)
        assert eager(cgrad.tensor(x), y).item() == compiled(x, y).item()
    assert compiled.recordings == 1
    assert_same(m1, m2)


def test_replayed_double_backward_through_pooling_equals_eager(rng):
    """A gradient penalty (create_graph=True) through max and average pooling, compiled:
    the taped rules recompute the arg-maxes from each step's input, so replays follow it.
    (tanh and a squared error: relu's and cross_entropy's taped rules compare values or
    build a one-hot in numpy, which a compiled step refuses.)"""
    m1, m2 = _models(np.float64, "tanh")

    def step(model, x, y):
        model.zero_grad()
        xt = cgrad.as_tensor(x).requires_grad_()
        loss = ((model(xt) - cgrad.as_tensor(y)) ** 2).mean()
        (gx,) = cgrad.autograd.grad(loss, [xt], create_graph=True)
        total = loss + (gx * gx).sum()
        total.backward()
        return total

    compiled = cgrad.compile(lambda x, y: step(m2, x, y))
    for _ in range(3):
        x, y = rng.standard_normal((4, 3, 9, 8)), rng.standard_normal((4, 5))
        assert step(m1, x, y).item() == compiled(x, y).item()
        for p1, p2 in zip(m1.parameters(), m2.parameters()):
            assert np.array_equal(p1.grad.numpy(), p2.grad.numpy())


def test_indices_returned_from_a_compiled_step_follow_each_replay(rng):
    w = cgrad.tensor(rng.uniform(0.5, 1.5, (1, 1, 6)), requires_grad=True)

    def step(x):
        values, idx = F.max_pool1d(x * w, 3, stride=2, padding=1, return_indices=True)
        values.sum().backward()
        return idx

    compiled = cgrad.compile(step)
    for _ in range(3):
        x = rng.standard_normal((2, 3, 6))
        assert np.array_equal(compiled(x).numpy(), step(cgrad.tensor(x)).numpy())


def test_the_profiler_and_anomaly_mode_name_the_pooling_ops(rng):
    m, _ = _models(np.float32)
    x = cgrad.tensor(rng.standard_normal((2, 3, 9, 8)).astype(np.float32))
    with cgrad.profile() as prof:
        F.cross_entropy(m(x), np.array([0, 1])).backward()
    forward = {r["name"] for r in prof.rows(by="op", phase="forward")}
    backward = {r["name"] for r in prof.rows(by="op", phase="backward")}
    assert {"max_pool", "avg_pool"} <= forward and {"max_pool", "avg_pool"} <= backward
    assert any("MaxPool2d(kernel_size=2, stride=2" in r["name"] for r in prof.rows(by="layer"))
    bad = x.numpy().copy()
    bad[0, 0, 0, 0] = np.nan
    with cgrad.detect_anomaly():
        with pytest.raises(RuntimeError, match=r"op 'max_pool' produced nan"):
            F.max_pool2d(cgrad.tensor(bad), 2)


@pytest.fixture(params=["avx512", "off"])
def float32_kernels(request):
    """Both float32 max-pooling paths (csrc/pool.c): AVX-512 gathers for windows that are all
    full, and the loops of pool_impl.h that every other case and CPU use."""
    got = cgrad._C.skinny_isa(request.param)
    if got != request.param:
        cgrad._C.skinny_isa("best")
        pytest.skip(f"this CPU has no {request.param}")
    yield got
    cgrad._C.skinny_isa("best")


@pytest.mark.parametrize("name, spatial, shape, kwargs", [c for c, _ in MAX_CONFIGS], ids=[i for _, i in MAX_CONFIGS])
def test_float32_max_pooling_paths_agree_with_the_naive_loops(float32_kernels, name, spatial, shape, kwargs, rng):
    """Ties, NaN and -inf through either path: the same values, indices and gradients as the
    reference (the full-window geometries take the gathers when the CPU has AVX-512)."""
    x = _ties_and_nans(rng, shape, np.float32)
    want, want_idx, want_grad = _reference(name, spatial, x, kwargs)
    g = rng.standard_normal(want.shape)
    got, got_idx, got_grad = _run(name, x, kwargs, g)
    np.testing.assert_array_equal(got, want)
    np.testing.assert_array_equal(got_idx, want_idx)
    np.testing.assert_allclose(got_grad, want_grad(g), **_tol(np.float32))


@pytest.mark.parametrize("shape, k, s, d", [((3, 5, 8, 8), 2, 2, 1), ((2, 3, 9, 40), 3, 1, 1), ((2, 2, 11, 13), 2, 3, 2),
                                            ((1, 1, 5, 70), (2, 3), (1, 2), 1)])
def test_float32_full_windows_of_more_than_16_outputs(float32_kernels, shape, k, s, d, rng):
    x = _ties_and_nans(rng, shape, np.float32)
    kwargs = dict(kernel_size=k, stride=s, dilation=d)
    want, want_idx, _ = _reference("max_pool2d", 2, x, kwargs)
    got, got_idx, _ = _run("max_pool2d", x, kwargs, np.ones(want.shape))
    np.testing.assert_array_equal(got, want)
    np.testing.assert_array_equal(got_idx, want_idx)


def test_an_empty_adaptive_dim_beside_a_plain_one_reads_nothing(float32_kernels):
    """No window holds a tap, so none may be gathered (csrc/pool.c, all_full)."""
    geom = cgrad._C.PoolGeometry(2, (0, 4), (2, 2), (0, 2), (1, 2), (0, 0), (1, 1), True, 0)
    y, idx = cgrad._C.max_pool(cgrad.zeros(1, 1, 0, 4), geom, True)
    assert np.all(y.numpy() == -np.inf) and np.all(idx.numpy() == -1)
