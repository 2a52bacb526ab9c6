"""Convolution layers: Conv1d and Conv2d against a naive numpy convolution (always) and
PyTorch (when installed): forward, input, weight and bias gradients, state_dicts both ways;
PyTorch's initialisation and errors; replay, the profiler's GEMM names, gradient health.
The op-level checks (finite differences, float32, gradgradcheck, in-place) are the op
table's conv lines."""
import numpy as np
import pytest

import cgrad
from cgrad import nn
from cgrad.nn import functional as F
from op_table import np_conv1d, np_conv2d
from train_steps import assert_same, train_step

try:
    import torch
except ImportError:  # PyTorch is an optional oracle
    torch = None
needs_torch = pytest.mark.skipif(torch is None, reason="PyTorch not installed")

# (in, out, kernel, keyword arguments) for both layers
CONFIGS_2D = [
    (3, 4, 3, {}),
    (4, 6, (3, 2), dict(stride=(2, 1), padding=(1, 2), dilation=(1, 2), groups=2)),
    (2, 3, 2, dict(stride=3, bias=False)),
    (3, 5, 1, {}),
    (2, 3, (2, 4), dict(padding="same")),
    (4, 4, 3, dict(padding=1, groups=4)),
    (3, 2, 3, dict(padding="valid", dilation=2)),
]
CONFIGS_1D = [
    (1, 25, 5, dict(stride=2, padding=1)),
    (25, 25, 3, dict(stride=2, padding=1)),
    (3, 4, 4, dict(padding="same", dilation=3)),
    (4, 2, 2, dict(stride=5, groups=2, bias=False)),
]


def _cases():
    for cin, cout, k, kw in CONFIGS_2D:
        yield 2, cin, cout, k, kw, (2, cin, 7, 6)
    for cin, cout, k, kw in CONFIGS_1D:
        yield 1, cin, cout, k, kw, (3, cin, 19)


CASES = list(_cases())
IDS = [f"conv{n}d-{cin}-{cout}-{k}-{kw}" for n, cin, cout, k, kw, _ in CASES]


def _layer(n, cin, cout, k, kw, dtype="float64"):
    cls = nn.Conv2d if n == 2 else nn.Conv1d
    return cls(cin, cout, k, dtype=dtype, **kw)


def _reference_kwargs(layer):
    """The layer's arguments for np_conv1d/np_conv2d ('same' resolved as PyTorch does)."""
    n = layer._n
    pad = layer.padding
    if pad == "valid":
        pad = (0,) * n
    if pad == "same":
        tot = [d * (k - 1) for d, k in zip(layer.dilation, layer.kernel_size)]
        pad = tuple((t // 2, t - t // 2) for t in tot)
        pad = pad if n == 2 else pad[0]
    else:
        pad = pad if n == 2 else pad[0]
    if n == 1:
        return dict(stride=layer.stride[0], padding=pad, dilation=layer.dilation[0], groups=layer.groups)
    return dict(stride=layer.stride, padding=pad, dilation=layer.dilation, groups=layer.groups)


@pytest.mark.parametrize("n, cin, cout, k, kw, shape", CASES, ids=IDS)
def test_forward_and_gradients_against_numpy(n, cin, cout, k, kw, shape, rng):
    cgrad.manual_seed(0)
    layer = _layer(n, cin, cout, k, kw)
    x = rng.normal(size=shape)
    xt = cgrad.tensor(x, requires_grad=True)
    y = layer(xt)
    w, b = layer.weight.numpy(), None if layer.bias is None else layer.bias.numpy()
    ref = (np_conv2d if n == 2 else np_conv1d)(x, w, b, **_reference_kwargs(layer))
    np.testing.assert_allclose(y.numpy(), ref, rtol=1e-12, atol=1e-12)
    # gradients of sum(y * u), by finite differences of the numpy reference along random directions
    u = rng.normal(size=ref.shape)
    (y * cgrad.tensor(u)).sum().backward()
    f = lambda x_, w_, b_: np.sum((np_conv2d if n == 2 else np_conv1d)(x_, w_, b_, **_reference_kwargs(layer)) * u)  # noqa: E731
    eps = 1e-6
    for name, grad, bump in [("x", xt.grad.numpy(), lambda d: (x + eps * d, w, b)),
                             ("w", layer.weight.grad.numpy(), lambda d: (x, w + eps * d, b))] + \
            ([("b", layer.bias.grad.numpy(), lambda d: (x, w, b + eps * d))] if b is not None else []):
        d = rng.normal(size=grad.shape)
        lo = f(*bump(-d))
        hi = f(*bump(d))
        assert np.sum(grad * d) == pytest.approx((hi - lo) / (2 * eps), rel=1e-6, abs=1e-8), name


@pytest.mark.parametrize("n, cin, cout, k, kw, shape", CASES, ids=IDS)
@needs_torch
def test_agrees_with_pytorch_and_state_dicts_load_both_ways(n, cin, cout, k, kw, shape, rng):
    tcls = torch.nn.Conv2d if n == 2 else torch.nn.Conv1d
    tl = tcls(cin, cout, k, **kw).double()
    layer = _layer(n, cin, cout, k, kw)
    layer.load_state_dict({name: cgrad.tensor(v.detach().numpy()) for name, v in tl.state_dict().items()})
    x = rng.normal(size=shape)
    xt, xc = torch.tensor(x, requires_grad=True), cgrad.tensor(x, requires_grad=True)
    yt, yc = tl(xt), layer(xc)
    np.testing.assert_allclose(yc.numpy(), yt.detach().numpy(), rtol=1e-10, atol=1e-12)
    u = rng.normal(size=tuple(yt.shape))
    (yt * torch.tensor(u)).sum().backward()
    (yc * cgrad.tensor(u)).sum().backward()
    np.testing.assert_allclose(xc.grad.numpy(), xt.grad.numpy(), rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(layer.weight.grad.numpy(), tl.weight.grad.numpy(), rtol=1e-10, atol=1e-12)
    if layer.bias is not None:
        np.testing.assert_allclose(layer.bias.grad.numpy(), tl.bias.grad.numpy(), rtol=1e-10, atol=1e-12)
    # and back: cgrad's weights into a fresh PyTorch layer give cgrad's outputs
    tl2 = tcls(cin, cout, k, **kw).double()
    tl2.load_state_dict({name: torch.tensor(v.numpy()) for name, v in layer.state_dict().items()})
    np.testing.assert_allclose(tl2(torch.tensor(x)).detach().numpy(), yc.numpy(), rtol=1e-10, atol=1e-12)


@needs_torch
def test_float32_on_a_larger_batch_matches_pytorch(rng):
    x = rng.normal(size=(16, 8, 28, 28)).astype(np.float32)
    tl = torch.nn.Conv2d(8, 16, 3, padding=1)
    layer = nn.Conv2d(8, 16, 3, padding=1)
    layer.load_state_dict({k: cgrad.tensor(v.detach().numpy()) for k, v in tl.state_dict().items()})
    xt, xc = torch.tensor(x, requires_grad=True), cgrad.tensor(x, requires_grad=True)
    yt, yc = tl(xt), layer(xc)
    np.testing.assert_allclose(yc.numpy(), yt.detach().numpy(), rtol=1e-4, atol=1e-5)
    yt.square().sum().backward()
    yc.square().sum().backward()
    np.testing.assert_allclose(xc.grad.numpy(), xt.grad.numpy(), rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(layer.weight.grad.numpy(), tl.weight.grad.numpy(), rtol=1e-4, atol=1e-2)


def test_unbatched_input_and_the_layout():
    layer = nn.Conv2d(2, 3, 3, padding=1)
    assert layer.weight.shape == (3, 2, 3, 3) and layer.bias.shape == (3,)
    x = np.random.default_rng(0).normal(size=(2, 5, 4)).astype(np.float32)
    y = layer(cgrad.tensor(x))
    assert y.shape == (3, 5, 4)
    np.testing.assert_allclose(y.numpy(), layer(cgrad.tensor(x[None])).numpy()[0], rtol=1e-6)
    assert nn.Conv1d(2, 3, 3)(cgrad.zeros(2, 7)).shape == (3, 5)


def test_initialisation_is_pytorchs_uniform_over_fan_in():
    cgrad.manual_seed(0)
    layer = nn.Conv2d(6, 32, (3, 5), groups=2)
    bound = 1 / np.sqrt(3 * 3 * 5)  # fan_in = in/groups * kh * kw
    w, b = layer.weight.numpy(), layer.bias.numpy()
    assert np.abs(w).max() <= bound and np.abs(w).max() > 0.95 * bound
    assert np.abs(b).max() <= bound
    assert abs(w.std() - bound / np.sqrt(3)) < 0.1 * bound  # uniform's std
    assert repr(layer).startswith("Conv2d(6, 32, kernel_size=(3, 5), stride=(1, 1), groups=2)")
    assert repr(nn.Conv1d(1, 25, 5, stride=2, padding=1)).startswith(
        "Conv1d(1, 25, kernel_size=(5,), stride=(2,), padding=(1,))")


@pytest.mark.parametrize("make, x_shape, match", [
    (lambda: nn.Conv2d(3, 4, 3), (2, 2, 8, 8), "expects input .* to have 3 channels, but it has 2"),
    (lambda: nn.Conv2d(1, 4, 3), (64, 8, 8), "read as unbatched"),
    (lambda: nn.Conv2d(1, 4, 3), (8, 8), "expected a 3-D .*or 4-D"),
    (lambda: nn.Conv2d(1, 4, 5), (2, 1, 3, 8), "padded input .* is smaller than the kernel"),
    (lambda: nn.Conv1d(1, 4, 3, dilation=4), (2, 1, 8), "smaller than the kernel .*dilated"),
    (lambda: nn.Conv1d(2, 4, 3), (2, 2, 8, 8), "expected a 2-D .*or 3-D"),
])
def test_bad_input_is_a_clear_error(make, x_shape, match):
    with pytest.raises(ValueError, match=match):
        make()(cgrad.zeros(*x_shape))


def test_bad_arguments_are_clear_errors():
    with pytest.raises(ValueError, match="groups=3 must divide in_channels=4"):
        nn.Conv2d(4, 6, 3, groups=3)
    with pytest.raises(ValueError, match="'same' is not supported for strided"):
        nn.Conv2d(1, 1, 3, stride=2, padding="same")
    with pytest.raises(ValueError, match="padding must be 'valid', 'same'"):
        nn.Conv1d(1, 1, 3, padding="full")
    with pytest.raises(ValueError, match="kernel_size must be an int or 2 ints"):
        nn.Conv2d(1, 1, (3, 3, 3))
    with pytest.raises(ValueError, match="padding_mode must be 'zeros', 'reflect', 'replicate' or 'circular'"):
        nn.Conv2d(1, 1, 3, padding_mode="mirror")
    w = cgrad.zeros(4, 2, 3, 3)
    with pytest.raises(ValueError, match="stride and dilation must be positive"):
        F.conv2d(cgrad.zeros(1, 2, 5, 5), w, stride=0)
    with pytest.raises(ValueError, match="padding must be non-negative"):
        F.conv2d(cgrad.zeros(1, 2, 5, 5), w, padding=-1)
    with pytest.raises(ValueError, match="groups=3 does not divide the 4 output channels"):
        F.conv2d(cgrad.zeros(1, 6, 5, 5), w, groups=3)
    with pytest.raises(ValueError, match="bias of shape"):
        F.conv2d(cgrad.zeros(1, 2, 5, 5), w, cgrad.zeros(3))
    with pytest.raises(TypeError, match="conv: dtypes float64 and float32 differ"):
        F.conv2d(cgrad.zeros(1, 2, 5, 5, dtype=cgrad.float64), w)
    with pytest.raises(TypeError, match="conv"):
        F.conv2d(cgrad.zeros(1, 2, 5, 5, dtype=cgrad.int64), w)


def _cnn(seed):
    cgrad.manual_seed(seed)
    return nn.Sequential(nn.Conv1d(1, 6, 5, stride=2, padding=1), nn.ReLU(),
                         nn.Conv1d(6, 6, 3, stride=2, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(30, 4))


def test_a_compiled_cnn_step_replays_bit_for_bit(rng):
    m1, m2 = _cnn(0), _cnn(0)
    eager = train_step(m1, cgrad.optim.Adam(m1.parameters(), lr=1e-2))
    compiled = cgrad.compile(train_step(m2, cgrad.optim.Adam(m2.parameters(), lr=1e-2)))
    for _ in range(5):
        x = rng.normal(size=(8, 1, 20)).astype(np.float32)
        y = rng.integers(0, 4, 8)
        assert eager(cgrad.tensor(x), y).item() == compiled(x, y).item()
    assert compiled.recordings == 1
    assert_same(m1, m2)


def test_the_profiler_names_the_convolutions_backward_gemms(rng):
    model = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.Conv2d(4, 4, 3), nn.Flatten())
    x = cgrad.tensor(rng.normal(size=(4, 1, 6, 6)).astype(np.float32))
    with cgrad.profile() as prof:
        model(x).sum().backward()
    rows = {r["name"]: r for r in prof.rows(by="layer", phase="backward")}
    first = rows["Sequential()/0: Conv2d(1, 4, kernel_size=(3, 3), stride=(1, 1), padding=(1, 1))"]
    second = rows["Sequential()/2: Conv2d(4, 4, kernel_size=(3, 3), stride=(1, 1))"]
    assert set(first["parts"]) == {"dW = col(X)^T dZ"}  # its input needs no gradient
    assert set(second["parts"]) == {"dW = col(X)^T dZ", "dX = col2im(dZ W)"}
    assert "dX = col2im(dZ W)" in prof.table(by="op")
    forward = {r["name"]: r for r in prof.rows(by="op", phase="forward")}
    assert forward["conv"]["gflops_per_s"] > 0


def test_health_reports_dead_relu_channels_after_a_convolution(rng):
    cgrad.manual_seed(0)
    model = nn.Sequential(nn.Conv1d(1, 4, 3), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 8, 3))
    with cgrad.no_grad():
        model[0].bias.copy_(cgrad.tensor(np.array([-100.0, -100.0, -100.0, 0.0], np.float32)))
    X = rng.normal(size=(16, 1, 10)).astype(np.float32)
    report = cgrad.diagnostics.health(model, X, rng.integers(0, 3, 16))
    rows = {r["layer"]: r for r in report.layers}
    relu = next(r for name, r in rows.items() if "ReLU" in name)
    assert relu["dead_fraction"] == 0.75  # three of the four channels
    conv = next(r for name, r in rows.items() if "Conv1d" in name)
    assert conv["grad_norm"] > 0
    assert any("75% of ReLU units are dead" in w for w in report.warnings)


def test_anomaly_mode_names_the_convolution():
    layer = nn.Conv2d(1, 2, 3)
    x = cgrad.tensor(np.full((1, 1, 4, 4), np.nan, np.float32))
    with cgrad.autograd.detect_anomaly():
        with pytest.raises(RuntimeError, match="conv"):
            layer(x)


@pytest.fixture(params=["avx512", "avx2", "off"])
def float32_kernels(request):
    """Every way of moving float32 data (csrc/conv.c): AVX-512 masked runs, AVX2 runs
    (masked loads, stores in pieces), and the plain loops that float64 and other CPUs use."""
    got = cgrad._C.skinny_isa(request.param)
    if got != request.param:
        cgrad._C.skinny_isa("best")
        pytest.skip(f"this CPU has no {request.param}")
    yield got
    cgrad._C.skinny_isa("best")


# strides 1, 2 (the AVX-512 paths) and 3 (the loops), padding and dilation, and widths that
# end inside a 16-lane vector and past two of them
GEOMETRIES = [(w, k, s, p, d) for w in (7, 16, 19, 37) for k, s, p, d in
              ((3, 1, 0, 1), (3, 1, 2, 1), (5, 2, 1, 1), (3, 2, 0, 2), (2, 2, 3, 1), (4, 3, 1, 1))]


@pytest.mark.parametrize("w, k, s, p, d", GEOMETRIES)
def test_float32_movements_match_float64_both_ways(float32_kernels, w, k, s, p, d, rng):
    """Forward, dX, dW and db of float32 convolutions against the float64 ones, 1-D and 2-D."""
    for kw in (dict(stride=s, padding=p, dilation=d), dict(stride=(1, s), padding=(1, p), dilation=(1, d)),
               dict(stride=(s, s), padding=(1, p), dilation=(2, d))):  # rows skipped and shared in H
        n = 1 if isinstance(kw["stride"], int) else 2
        x = rng.normal(size=(3, 4) + ((5,) if n == 2 else ()) + (w,))
        wt = rng.normal(size=(6, 4) + ((2,) if n == 2 else ()) + (k,))
        b = rng.normal(size=6)
        conv = F.conv1d if n == 1 else F.conv2d
        grads = {}
        for dtype in (np.float64, np.float32):
            ts = [cgrad.tensor(a.astype(dtype), requires_grad=True) for a in (x, wt, b)]
            y = conv(*ts, **kw)
            u = cgrad.tensor(np.cos(np.arange(y.numel())).reshape(y.shape).astype(dtype))
            (y * u).sum().backward()
            grads[dtype] = [y.numpy()] + [t.grad.numpy() for t in ts]
        for got, want in zip(grads[np.float32], grads[np.float64]):
            np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4 * np.abs(want).max())


# planes of at most 32 values with at most 16 outputs (one line for all taps in csrc/conv.c)
# beside planes just past it; the digits CNN's 4 x 4 by 3 x 3 with padding 1 is the first
PLANES = [((4, 4), (3, 3), (1, 1), (1, 1), (1, 1)), ((3, 7), (2, 3), (1, 2), (0, 1), (1, 1)),
          ((5, 6), (3, 2), (2, 1), (1, 0), (1, 2)), ((1, 9), (3, 3), (1, 1), (1, 1), (1, 1)),
          ((2, 16), (1, 5), (1, 2), (0, 2), (1, 1)), ((8, 8), (3, 3), (1, 1), (1, 1), (1, 1))]


@pytest.mark.parametrize("hw, k, s, p, d", PLANES)
def test_float32_small_planes_match_float64_both_ways(float32_kernels, hw, k, s, p, d, rng):
    """Forward, dX, dW and db of float32 2-D convolutions on small planes against float64; x
    feeds two convolutions, so that the second dX adds to the first."""
    x, wt, b = rng.normal(size=(3, 4) + hw), rng.normal(size=(5, 4) + k), rng.normal(size=5)
    grads = {}
    for dtype in (np.float64, np.float32):
        ts = [cgrad.tensor(a.astype(dtype), requires_grad=True) for a in (x, wt, b)]
        y = F.conv2d(*ts, stride=s, padding=p, dilation=d) + F.conv2d(ts[0], ts[1].flip(2), stride=s, padding=p,
                                                                      dilation=d)
        u = cgrad.tensor(np.cos(np.arange(y.numel())).reshape(y.shape).astype(dtype))
        (y * u).sum().backward()
        grads[dtype] = [y.numpy()] + [t.grad.numpy() for t in ts]
    for got, want in zip(grads[np.float32], grads[np.float64]):
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4 * np.abs(want).max())


@pytest.mark.parametrize("stride, pad, dilation, out", [
    ((1, 1), (0, 0), (1, 2 ** 61), (1, 1)),    # taps' extent past any memory
    ((1, 1), (0, 0), (1, 2 ** 40), (1, 1)),
    ((2 ** 40, 1), (0, 0), (1, 1), (3, 3)),
    ((1, 1), (2 ** 40, 0), (1, 1), (1, 1)),
])
def test_the_core_refuses_geometries_too_large_to_hold(stride, pad, dilation, out):
    """The C entry points check what nn.functional would never pass (cgrad._C is reachable)."""
    x, w = cgrad.zeros(1, 1, 4, 4), cgrad.zeros(1, 1, 2, 2)
    g = cgrad.zeros(1, 1, *out)
    for call in (lambda: cgrad._C.conv(x, w, None, stride, pad, dilation, 1, out),
                 lambda: cgrad._C.conv_dx(g, w, stride, pad, dilation, 1, (4, 4)),
                 lambda: cgrad._C.conv_dw(g, x, stride, pad, dilation, 1, (2, 2))):
        with pytest.raises(ValueError, match="exceeds 2\\^31|too large"):
            call()
    with pytest.raises(TypeError):
        cgrad._C.conv(None, w, None, (1, 1), (0, 0), (1, 1), 1, (3, 3))


NP_PAD_MODES = {"reflect": "reflect", "replicate": "edge", "circular": "wrap"}


@pytest.mark.parametrize("mode", list(NP_PAD_MODES))
@pytest.mark.parametrize("shape, pads", [((2, 3, 5), (2, 1)), ((3, 5), (1, 3)), ((2, 2, 4, 5), (1, 2, 3, 0)),
                                         ((1, 2, 3, 4, 5), (1, 1, 2, 0, 1, 1))])
def test_pad_modes_match_numpy_and_route_the_gradient(mode, shape, pads, rng):
    k = len(pads) // 2
    width = [(0, 0)] * (len(shape) - k) + [(pads[2 * i], pads[2 * i + 1]) for i in range(k)][::-1]
    x = rng.normal(size=shape)
    xt = cgrad.tensor(x, requires_grad=True)
    y = F.pad(xt, pads, mode=mode)
    np.testing.assert_array_equal(y.numpy(), np.pad(x, width, mode=NP_PAD_MODES[mode]))
    # the gradient is the adjoint: <pad(x), u> = <x, pad^T(u)>, checked along a random x
    u = rng.normal(size=y.shape)
    (y * cgrad.tensor(u)).sum().backward()
    d = rng.normal(size=shape)
    assert np.sum(xt.grad.numpy() * d) == pytest.approx(np.sum(np.pad(d, width, mode=NP_PAD_MODES[mode]) * u))


def test_pad_mode_errors():
    with pytest.raises(ValueError, match="smaller than the padded dims"):
        F.pad(cgrad.zeros(1, 2, 3), (3, 0), mode="reflect")
    with pytest.raises(ValueError, match="no negative padding"):
        F.pad(cgrad.zeros(1, 2, 3), (-1, 0), mode="replicate")
    with pytest.raises(ValueError, match="mode must be one of"):
        F.pad(cgrad.zeros(1, 2, 3), (1, 1), mode="mirror")


@needs_torch
@pytest.mark.parametrize("mode", list(NP_PAD_MODES))
@pytest.mark.parametrize("n, kw", [(1, dict(kernel_size=3, padding=2, stride=2)), (2, dict(kernel_size=(3, 2), padding="same")),
                                   (2, dict(kernel_size=3, padding=(1, 2), dilation=(2, 1)))])
def test_padding_modes_agree_with_pytorch(mode, n, kw, rng):
    tl = (torch.nn.Conv1d if n == 1 else torch.nn.Conv2d)(2, 3, padding_mode=mode, **kw).double()
    cl = (nn.Conv1d if n == 1 else nn.Conv2d)(2, 3, padding_mode=mode, dtype="float64", **kw)
    cl.load_state_dict({k: cgrad.tensor(v.detach().numpy()) for k, v in tl.state_dict().items()})
    x = rng.normal(size=(2, 2, 7) if n == 1 else (2, 2, 6, 7))
    xt, xc = torch.tensor(x, requires_grad=True), cgrad.tensor(x, requires_grad=True)
    yt, yc = tl(xt), cl(xc)
    np.testing.assert_allclose(yc.numpy(), yt.detach().numpy(), rtol=1e-10, atol=1e-12)
    yt.square().sum().backward()
    yc.square().sum().backward()
    np.testing.assert_allclose(xc.grad.numpy(), xt.grad.numpy(), rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(cl.weight.grad.numpy(), tl.weight.grad.numpy(), rtol=1e-10, atol=1e-12)
    assert repr(cl).split("  [")[0] == repr(tl)
