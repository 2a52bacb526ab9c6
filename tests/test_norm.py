"""Normalisation and channel layers: BatchNorm1d/2d and F.batch_norm (the fused C op), GroupNorm,
Dropout1d/2d, Upsample and F.interpolate.

Against naive references written here with loops (always), PyTorch (when installed), and
replay: a compiled training step updates parameters and running statistics bit for bit
as eager steps do."""
import warnings

import numpy as np
import pytest

import cgrad
from cgrad import nn
from cgrad.nn import functional as F
from train_steps import assert_same, train_step

EPS = 1e-5


# ---- naive references (loops over channels and elements) ----
def _channel_values(x, c):
    """Every value of channel c of x (N, C, *), in a Python list."""
    return [x[(n, c) + idx] for n in range(x.shape[0]) for idx in np.ndindex(x.shape[2:])]


def _naive_stats(x):
    """Per channel: the mean, the biased and the unbiased variance."""
    mean, var, unbiased = [], [], []
    for c in range(x.shape[1]):
        v = _channel_values(x.astype(np.float64), c)
        m = sum(v) / len(v)
        sq = sum((a - m) ** 2 for a in v)
        mean.append(m)
        var.append(sq / len(v))
        unbiased.append(sq / (len(v) - 1) if len(v) > 1 else np.nan)
    return np.array(mean), np.array(var), np.array(unbiased)


def _naive_normalise(x, mean, var, w, b, eps=EPS):
    y = np.empty(x.shape)
    for n in range(x.shape[0]):
        for c in range(x.shape[1]):
            for idx in np.ndindex(x.shape[2:]):
                v = (float(x[(n, c) + idx]) - mean[c]) / np.sqrt(var[c] + eps)
                y[(n, c) + idx] = v * (1.0 if w is None else w[c]) + (0.0 if b is None else b[c])
    return y


def _naive_batch_norm(x, w=None, b=None, training=True, rm=None, rv=None, eps=EPS):
    if training:
        mean, var, _ = _naive_stats(x)
        return _naive_normalise(x, mean, var, w, b, eps)
    return _naive_normalise(x, rm, rv, w, b, eps)


def _naive_running(batches, momentum, rm, rv):
    """The running statistics after each batch: f stat + (1 - f) running, f = momentum or
    1 / (batches so far) when momentum is None; the variance unbiased."""
    rm, rv = np.array(rm, np.float64), np.array(rv, np.float64)
    for k, x in enumerate(batches, 1):
        mean, _, unbiased = _naive_stats(x)
        f = 1.0 / k if momentum is None else momentum
        rm = f * mean + (1 - f) * rm
        rv = f * unbiased + (1 - f) * rv
    return rm, rv


def _naive_group_norm(x, groups, w=None, b=None, eps=EPS):
    N, C = x.shape[:2]
    per = C // groups
    y = np.empty(x.shape)
    for n in range(N):
        for g in range(groups):
            v = [float(x[(n, c) + idx]) for c in range(g * per, (g + 1) * per) for idx in np.ndindex(x.shape[2:])]
            m = sum(v) / len(v)
            var = sum((a - m) ** 2 for a in v) / len(v)
            for c in range(g * per, (g + 1) * per):
                for idx in np.ndindex(x.shape[2:]):
                    v = (float(x[(n, c) + idx]) - m) / np.sqrt(var + eps)
                    y[(n, c) + idx] = v * (1.0 if w is None else w[c]) + (0.0 if b is None else b[c])
    return y


def _naive_nearest(x, sizes):
    """out[..., i, j] = x[..., floor(i * H / OH), floor(j * W / OW)], in exact integers."""
    spatial = x.shape[2:]
    out = np.empty(x.shape[:2] + tuple(sizes))
    for n in range(x.shape[0]):
        for c in range(x.shape[1]):
            for idx in np.ndindex(*sizes):
                src = tuple(i * n_in // n_out for i, n_in, n_out in zip(idx, spatial, sizes))
                out[(n, c) + idx] = x[(n, c) + src]
    return out


def _numeric_grads(f, arrays, g, h=1e-6):
    """d sum(f(*arrays) * g) / d arrays[i] by central differences, in float64."""
    grads = []
    for i, a in enumerate(arrays):
        d = np.zeros(a.shape)
        for idx in np.ndindex(a.shape):
            plus = [x.copy() for x in arrays]
            minus = [x.copy() for x in arrays]
            plus[i][idx] += h
            minus[i][idx] -= h
            d[idx] = ((f(*plus) - f(*minus)) * g).sum() / (2 * h)
        grads.append(d)
    return grads


def _tol(dtype):
    return dict(rtol=2e-5, atol=2e-5) if dtype == np.float32 else dict(rtol=1e-10, atol=1e-10)


SHAPES = [(4, 3), (2, 3), (3, 2, 5), (2, 3, 2, 3), (2, 2, 1, 4)]
DTYPES = [np.float32, np.float64]


# ---- F.batch_norm: the fused op against the naive reference ----
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("affine", [True, False])
@pytest.mark.parametrize("shape", SHAPES, ids=str)
def test_batch_norm_training_matches_the_naive_reference(shape, affine, dtype, rng):
    C = shape[1]
    x = rng.uniform(-2, 2, shape)
    w, b = (rng.uniform(0.5, 1.5, C), rng.uniform(-1, 1, C)) if affine else (None, None)
    g = rng.standard_normal(shape)
    xt = cgrad.tensor(x, dtype=dtype, requires_grad=True)
    wt = cgrad.tensor(w, dtype=dtype, requires_grad=True) if affine else None
    bt = cgrad.tensor(b, dtype=dtype, requires_grad=True) if affine else None
    rm0, rv0 = rng.uniform(-1, 1, C), rng.uniform(0.5, 2, C)
    rm, rv = cgrad.tensor(rm0, dtype=dtype), cgrad.tensor(rv0, dtype=dtype)
    y = F.batch_norm(xt, rm, rv, wt, bt, training=True, momentum=0.2)
    y.backward(cgrad.tensor(g, dtype=dtype))
    # inputs rounded to the dtype, so that the reference sees the values the op saw
    xs = x.astype(dtype).astype(np.float64)
    ws = None if w is None else w.astype(dtype).astype(np.float64)
    bs = None if b is None else b.astype(dtype).astype(np.float64)
    np.testing.assert_allclose(y.numpy(), _naive_batch_norm(xs, ws, bs), **_tol(dtype))
    want_rm, want_rv = _naive_running([xs], 0.2, rm0.astype(dtype), rv0.astype(dtype))
    np.testing.assert_allclose(rm.numpy(), want_rm, **_tol(dtype))
    np.testing.assert_allclose(rv.numpy(), want_rv, **_tol(dtype))
    if affine:
        want = _numeric_grads(lambda x, w, b: _naive_batch_norm(x, w, b), [xs, ws, bs], g)
        got = [xt.grad, wt.grad, bt.grad]
    else:
        want = _numeric_grads(lambda x: _naive_batch_norm(x), [xs], g)
        got = [xt.grad]
    for a, e in zip(got, want):
        np.testing.assert_allclose(a.numpy(), e, rtol=1e-4 if dtype == np.float32 else 1e-6, atol=1e-4)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", [(4, 3), (2, 3, 2, 3)], ids=str)
def test_batch_norm_evaluation_uses_the_given_statistics(shape, dtype, rng):
    C = shape[1]
    x, w, b = rng.uniform(-2, 2, shape), rng.uniform(0.5, 1.5, C), rng.uniform(-1, 1, C)
    rm, rv = rng.uniform(-1, 1, C), rng.uniform(0.5, 2, C)
    g = rng.standard_normal(shape)
    xt, wt, bt = (cgrad.tensor(a, dtype=dtype, requires_grad=True) for a in (x, w, b))
    rmt, rvt = cgrad.tensor(rm, dtype=dtype), cgrad.tensor(rv, dtype=dtype)
    y = F.batch_norm(xt, rmt, rvt, wt, bt)  # training=False by default, as PyTorch
    y.backward(cgrad.tensor(g, dtype=dtype))
    r = [a.astype(dtype).astype(np.float64) for a in (x, w, b, rm, rv)]
    np.testing.assert_allclose(y.numpy(), _naive_batch_norm(r[0], r[1], r[2], False, r[3], r[4]), **_tol(dtype))
    np.testing.assert_array_equal(rmt.numpy(), rm.astype(dtype))  # evaluation changes nothing
    np.testing.assert_array_equal(rvt.numpy(), rv.astype(dtype))
    want = _numeric_grads(lambda x, w, b: _naive_batch_norm(x, w, b, False, r[3], r[4]), r[:3], g)
    for a, e in zip([xt.grad, wt.grad, bt.grad], want):
        np.testing.assert_allclose(a.numpy(), e, rtol=1e-4 if dtype == np.float32 else 1e-6, atol=1e-4)


def test_a_channel_of_constant_values_normalises_to_the_bias(rng):
    x = np.repeat(rng.standard_normal((1, 3, 1)), 4, axis=0)  # each channel holds one value
    b = np.array([0.5, -1.0, 2.0])
    y = F.batch_norm(cgrad.tensor(x), None, None, cgrad.ones(3, dtype=cgrad.float64), cgrad.tensor(b), training=True)
    np.testing.assert_array_equal(y.numpy(), np.broadcast_to(b[None, :, None], x.shape))


# ---- the layers: parameters, buffers, running statistics over several steps ----
def _layer(cls, C, dtype, **kw):
    return cls(C, **kw).to(dtype)


LAYERS = [(nn.BatchNorm1d, (6, 3)), (nn.BatchNorm1d, (2, 3)), (nn.BatchNorm1d, (3, 3, 4)),
          (nn.BatchNorm2d, (2, 3, 3, 2)), (nn.BatchNorm2d, (2, 3, 1, 1))]
LAYER_IDS = [f"{cls.__name__}{shape}" for cls, shape in LAYERS]


def test_layer_parameters_buffers_and_state_dict_are_pytorch_s():
    bn = nn.BatchNorm2d(4)
    assert [n for n, _ in bn.named_parameters()] == ["weight", "bias"]
    assert list(bn.state_dict()) == ["weight", "bias", "running_mean", "running_var", "num_batches_tracked"]
    np.testing.assert_array_equal(bn.weight.numpy(), np.ones(4))
    np.testing.assert_array_equal(bn.bias.numpy(), np.zeros(4))
    np.testing.assert_array_equal(bn.running_mean.numpy(), np.zeros(4))
    np.testing.assert_array_equal(bn.running_var.numpy(), np.ones(4))
    assert bn.num_batches_tracked.shape == () and bn.num_batches_tracked.dtype == np.int64
    assert bn.weight.dtype == np.float32 and bn.running_mean.dtype == np.float32
    assert (bn.eps, bn.momentum, bn.affine, bn.track_running_stats) == (1e-5, 0.1, True, True)
    bn.double()  # floats convert; the count stays int64
    assert bn.running_var.dtype == np.float64 and bn.num_batches_tracked.dtype == np.int64
    plain = nn.BatchNorm1d(3, affine=False)
    assert plain.weight is None and plain.bias is None and plain.parameters() == []
    assert list(plain.state_dict()) == ["running_mean", "running_var", "num_batches_tracked"]
    untracked = nn.BatchNorm1d(3, track_running_stats=False)
    assert untracked.running_mean is None and untracked.num_batches_tracked is None
    assert list(untracked.state_dict()) == ["weight", "bias"]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("momentum", [0.1, None], ids=["momentum", "cumulative"])
@pytest.mark.parametrize("cls, shape", LAYERS, ids=LAYER_IDS)
def test_running_statistics_after_several_training_steps(cls, shape, momentum, dtype, rng):
    C = shape[1]
    bn = _layer(cls, C, dtype, momentum=momentum)
    batches = [rng.uniform(-2, 2, shape).astype(dtype) for _ in range(4)]
    for k, x in enumerate(batches):
        y = bn(cgrad.tensor(x))
        np.testing.assert_allclose(y.numpy(), _naive_batch_norm(x), **_tol(dtype))
    want_rm, want_rv = _naive_running(batches, momentum, np.zeros(C), np.ones(C))
    np.testing.assert_allclose(bn.running_mean.numpy(), want_rm, **_tol(dtype))
    np.testing.assert_allclose(bn.running_var.numpy(), want_rv, **_tol(dtype))
    assert int(bn.num_batches_tracked.item()) == 4
    bn.eval()
    x = rng.uniform(-2, 2, shape).astype(dtype)
    np.testing.assert_allclose(bn(cgrad.tensor(x)).numpy(),
                               _naive_batch_norm(x, training=False, rm=bn.running_mean.numpy(),
                                                 rv=bn.running_var.numpy()), **_tol(dtype))
    assert int(bn.num_batches_tracked.item()) == 4  # evaluation does not count


def test_reset_running_stats_and_parameters(rng):
    bn = nn.BatchNorm1d(3)
    bn(cgrad.tensor(rng.standard_normal((4, 3)), dtype=cgrad.float32))
    with cgrad.no_grad():
        bn.weight.copy_(rng.standard_normal(3))
        bn.bias.copy_(rng.standard_normal(3))
    bn.reset_running_stats()
    np.testing.assert_array_equal(bn.running_mean.numpy(), np.zeros(3))
    np.testing.assert_array_equal(bn.running_var.numpy(), np.ones(3))
    assert int(bn.num_batches_tracked.item()) == 0
    assert not np.array_equal(bn.weight.numpy(), np.ones(3))  # parameters kept
    bn.reset_parameters()
    np.testing.assert_array_equal(bn.weight.numpy(), np.ones(3))
    np.testing.assert_array_equal(bn.bias.numpy(), np.zeros(3))
    nn.BatchNorm1d(3, bias=False).reset_parameters()  # no bias to reset


def test_without_running_statistics_evaluation_normalises_by_the_batch(rng):
    bn = nn.BatchNorm1d(3, track_running_stats=False).double()
    x = rng.standard_normal((5, 3))
    bn.eval()
    np.testing.assert_allclose(bn(cgrad.tensor(x)).numpy(), _naive_batch_norm(x), rtol=1e-10, atol=1e-10)
    assert bn.running_mean is None


def test_state_dict_round_trip_gives_the_same_outputs(rng):
    a = nn.BatchNorm2d(3).double()
    with cgrad.no_grad():
        a.weight.copy_(rng.uniform(0.5, 1.5, 3))
        a.bias.copy_(rng.uniform(-1, 1, 3))
    for _ in range(3):
        a(cgrad.tensor(rng.standard_normal((2, 3, 2, 2))))
    b = nn.BatchNorm2d(3).double()
    b.load_state_dict(a.state_dict())
    assert int(b.num_batches_tracked.item()) == 3
    a.eval(), b.eval()
    x = cgrad.tensor(rng.standard_normal((2, 3, 2, 2)))
    np.testing.assert_array_equal(a(x).numpy(), b(x).numpy())


def test_two_forwards_then_one_backward(rng):
    """The second forward updates the statistics the first used: backward is still right,
    for the first node kept what it needs (its reads are x only)."""
    bn = nn.BatchNorm1d(3, affine=False).double()
    x1 = cgrad.tensor(rng.standard_normal((4, 3)), requires_grad=True)
    x2 = cgrad.tensor(rng.standard_normal((4, 3)), requires_grad=True)
    g = rng.standard_normal((4, 3))
    (bn(x1) * cgrad.tensor(g)).sum().backward()
    want = x1.grad.numpy().copy()
    x1.grad = None
    y1 = bn(x1)
    y2 = bn(x2)
    ((y1 + y2) * cgrad.tensor(g)).sum().backward()
    np.testing.assert_allclose(x1.grad.numpy(), want, rtol=1e-12, atol=1e-12)
    assert int(bn.num_batches_tracked.item()) == 3


def test_the_update_in_place_is_seen_by_backward_of_ops_that_read_the_statistics(rng):
    """Note [Versions]: the op bumps the versions of what it updates, so an op that saved a
    running statistic before the update refuses to backward through a changed value."""
    bn = nn.BatchNorm1d(3).double()
    w = cgrad.tensor(rng.standard_normal(3), requires_grad=True)
    z = (w * bn.running_var).sum()  # mul saves running_var for dz/dw
    bn(cgrad.tensor(rng.standard_normal((4, 3))))
    with pytest.raises(RuntimeError, match="modified in place"):
        z.backward()


# ---- errors ----
def test_errors_name_the_op_and_the_shapes(rng):
    x = cgrad.tensor(rng.standard_normal((2, 4, 5)), dtype=cgrad.float32)
    with pytest.raises(ValueError, match=r"batch_norm: running_mean of shape \(3,\) does not fit the input of shape "
                                         r"\(2, 4, 5\) \(expected \(4,\)"):
        nn.BatchNorm1d(3, affine=False)(x)
    with pytest.raises(ValueError, match=r"batch_norm: weight of shape \(3,\) does not fit the input of shape "
                                         r"\(2, 4, 5\)"):
        nn.BatchNorm1d(3, track_running_stats=False)(x)
    with pytest.raises(ValueError, match=r"BatchNorm1d: expected 2D or 3D input \(got 4D input of shape "
                                         r"\(2, 4, 5, 1\)\)"):
        nn.BatchNorm1d(4)(x.reshape(2, 4, 5, 1))
    with pytest.raises(ValueError, match=r"BatchNorm2d: expected 4D input \(got 3D input of shape \(2, 4, 5\)\)"):
        nn.BatchNorm2d(4)(x)
    with pytest.raises(ValueError, match=r"batch_norm: expected an input of at least 2 dims \(N, C, ...\), got "
                                         r"shape \(4,\)"):
        F.batch_norm(cgrad.zeros(4), None, None, training=True)
    for cls, shape in [(nn.BatchNorm1d, (1, 3)), (nn.BatchNorm1d, (1, 3, 1)), (nn.BatchNorm2d, (1, 3, 1, 1))]:
        bn = cls(3)
        with pytest.raises(ValueError, match=r"Expected more than 1 value per channel when training, got input of "
                                             rf"shape {shape}".replace("(", r"\(").replace(")", r"\)")):
            bn(cgrad.zeros(*shape))
        assert int(bn.num_batches_tracked.item()) == 0
        bn.eval()
        assert bn(cgrad.zeros(*shape)).shape == shape  # evaluation takes a single value
    with pytest.raises(ValueError, match="running_mean and running_var must be given in evaluation mode"):
        F.batch_norm(x, None, None)
    with pytest.raises(ValueError, match="give both or neither"):
        F.batch_norm(x, cgrad.zeros(4), None, training=True)
    with pytest.raises(TypeError, match="batch_norm: weight is float64 but the input is float32"):
        nn.BatchNorm1d(4).double()(x)
    with pytest.raises(RuntimeError, match="batch_norm: running_mean requires grad"):
        F.batch_norm(x, cgrad.zeros(4, requires_grad=True), cgrad.ones(4), training=True)
    with pytest.raises(ValueError, match="momentum None .* needs num_batches_tracked"):
        F.batch_norm(x, cgrad.zeros(4), cgrad.ones(4), training=True, momentum=None)
    with pytest.raises(TypeError, match="batch_norm"):
        F.batch_norm(cgrad.tensor(np.ones((2, 3), np.int64)), None, None, training=True)


# ---- group norm ----
@pytest.mark.parametrize("shape, groups", [((2, 4, 3), 2), ((3, 6, 2, 2), 3), ((2, 4), 4), ((1, 6, 5), 1)], ids=str)
def test_group_norm_matches_the_naive_reference(shape, groups, rng):
    C = shape[1]
    x, w, b = rng.uniform(-2, 2, shape), rng.uniform(0.5, 1.5, C), rng.uniform(-1, 1, C)
    g = rng.standard_normal(shape)
    xt, wt, bt = (cgrad.tensor(a, requires_grad=True) for a in (x, w, b))
    y = F.group_norm(xt, groups, wt, bt)
    y.backward(cgrad.tensor(g))
    np.testing.assert_allclose(y.numpy(), _naive_group_norm(x, groups, w, b), rtol=1e-10, atol=1e-10)
    want = _numeric_grads(lambda x, w, b: _naive_group_norm(x, groups, w, b), [x, w, b], g)
    for a, e in zip([xt.grad, wt.grad, bt.grad], want):
        np.testing.assert_allclose(a.numpy(), e, rtol=1e-6, atol=1e-6)
    m = nn.GroupNorm(groups, C).double()
    np.testing.assert_array_equal(m.weight.numpy(), np.ones(C))
    np.testing.assert_array_equal(m.bias.numpy(), np.zeros(C))
    np.testing.assert_allclose(m(cgrad.tensor(x)).numpy(), _naive_group_norm(x, groups), rtol=1e-10, atol=1e-10)
    x32 = x.astype(np.float32)
    np.testing.assert_allclose(nn.GroupNorm(groups, C, affine=False)(cgrad.tensor(x32)).numpy(),
                               _naive_group_norm(x32, groups), rtol=1e-5, atol=1e-5)


def test_group_norm_errors():
    with pytest.raises(ValueError, match=r"GroupNorm: num_channels \(6\) must be divisible by num_groups \(4\)"):
        nn.GroupNorm(4, 6)
    with pytest.raises(ValueError, match=r"group_norm: Expected number of channels in input to be divisible by "
                                         r"num_groups, but got input of shape \(2, 6, 3\) and num_groups=4"):
        F.group_norm(cgrad.zeros(2, 6, 3), 4)
    with pytest.raises(ValueError, match=r"group_norm: weight of shape \(4,\) does not fit the input of shape "
                                         r"\(2, 6, 3\)"):
        F.group_norm(cgrad.zeros(2, 6, 3), 3, cgrad.ones(4))


# ---- channel dropout ----
@pytest.mark.parametrize("fn, shape", [(F.dropout1d, (100, 40, 3)), (F.dropout1d, (400, 5)),
                                       (F.dropout2d, (50, 80, 2, 3))], ids=["1d", "1d_unbatched", "2d"])
def test_channel_dropout_zeroes_whole_channels_and_scales_the_rest(fn, shape, rng):
    p = 0.3
    x = rng.uniform(0.5, 1.5, shape)  # no zeros of its own
    cgrad.manual_seed(7)
    xt = cgrad.tensor(x, requires_grad=True)
    y = fn(xt, p)
    y.sum().backward()
    out = y.numpy()
    chan = out.reshape(shape[:-1] + (-1,)) if fn is F.dropout1d else out.reshape(shape[:2] + (-1,))
    xs = x.reshape(chan.shape)
    dropped = np.all(chan == 0, axis=-1)
    kept = np.all(np.isclose(chan, xs / (1 - p), rtol=1e-12), axis=-1)
    assert np.all(dropped | kept)  # a channel is zeroed whole or kept whole
    n = dropped.size  # the dropped fraction: within 4 standard deviations of p
    assert abs(dropped.sum() - p * n) < 4 * np.sqrt(n * p * (1 - p))
    grad = xt.grad.numpy().reshape(chan.shape)
    np.testing.assert_array_equal(grad, np.broadcast_to(np.where(dropped, 0.0, 1 / (1 - p))[..., None], grad.shape))
    cgrad.manual_seed(7)
    np.testing.assert_array_equal(fn(cgrad.tensor(x), p).numpy(), out)  # seeded: the same mask again
    np.testing.assert_array_equal(fn(cgrad.tensor(x), p, training=False).numpy(), x)
    np.testing.assert_array_equal(fn(cgrad.tensor(x), 0.0).numpy(), x)
    np.testing.assert_array_equal(fn(cgrad.tensor(x), 1.0).numpy(), np.zeros(shape))


def test_dropout_layers_and_their_errors(rng):
    x = cgrad.tensor(rng.uniform(0.5, 1.5, (4, 3, 2, 2)))
    for cls in (nn.Dropout1d, nn.Dropout2d):
        m = cls(0.4)
        assert m.extra_repr() == "p=0.4, inplace=False"
        v = x[:, :, 0] if cls is nn.Dropout1d else x
        m.eval()
        assert m(v) is v  # the identity in evaluation
        with pytest.raises(ValueError, match=rf"{cls.__name__}: dropout probability has to be between 0 and 1, "
                                             r"but got 1.5"):
            cls(1.5)
    with pytest.raises(RuntimeError, match=r"dropout1d: Expected 2D or 3D input, but received a 4D input of shape "
                                           r"\(4, 3, 2, 2\)"):
        F.dropout1d(x)
    with pytest.raises(RuntimeError, match=r"dropout2d: Expected 3D or 4D input, but received a 2D input"):
        F.dropout2d(x[:, :, 0, 0])
    with pytest.raises(ValueError, match="dropout2d: dropout probability has to be between 0 and 1"):
        F.dropout2d(x, -0.1)
    with pytest.raises(NotImplementedError, match="inplace=True"):
        F.dropout2d(x, inplace=True)
    with pytest.warns(UserWarning, match="dropout2d: Received a 3D input"):  # PyTorch's (N, C, L) reading
        y = F.dropout2d(x[:, :, :, 0], 0.5)
    chan = y.numpy()
    assert np.all(np.all(chan == 0, axis=-1) | np.all(chan != 0, axis=-1))
    compiled = cgrad.compile(lambda v: nn.Dropout2d(0.5)(v).sum())
    with pytest.raises(RuntimeError, match="random draw"):  # a mask is not replayable: refused, as F.dropout
        compiled(np.ones((2, 3, 2, 2), np.float32))


# ---- nearest upsampling ----
@pytest.mark.parametrize("shape, kw, sizes", [
    ((2, 3, 4), dict(size=7), (7,)), ((2, 3, 4), dict(scale_factor=2), (8,)), ((1, 2, 5), dict(size=3), (3,)),
    ((2, 2, 3, 4), dict(size=(5, 2)), (5, 2)), ((1, 3, 2, 3), dict(scale_factor=3), (6, 9)),
    ((1, 1, 4, 4), dict(scale_factor=(2, 0.5)), (8, 2)), ((2, 1, 3, 2), dict(size=4), (4, 4)),
], ids=str)
def test_interpolate_nearest_matches_the_naive_reference(shape, kw, sizes, rng):
    x = rng.standard_normal(shape)
    xt = cgrad.tensor(x, requires_grad=True)
    y = F.interpolate(xt, **kw)
    np.testing.assert_array_equal(y.numpy(), _naive_nearest(x, sizes))
    g = rng.standard_normal(y.shape)
    y.backward(cgrad.tensor(g))
    want = np.zeros(shape)  # each input takes the gradients of the outputs that copy it
    for n in range(shape[0]):
        for c in range(shape[1]):
            for idx in np.ndindex(*sizes):
                src = tuple(i * a // o for i, a, o in zip(idx, shape[2:], sizes))
                want[(n, c) + src] += g[(n, c) + idx]
    np.testing.assert_allclose(xt.grad.numpy(), want, rtol=1e-12, atol=1e-12)
    up = nn.Upsample(**kw)
    np.testing.assert_array_equal(up(cgrad.tensor(x)).numpy(), y.numpy())


def test_upsample_repr_and_interpolate_errors():
    assert nn.Upsample(scale_factor=2).extra_repr() == "scale_factor=2.0, mode='nearest'"
    assert nn.Upsample(size=(3, 4)).extra_repr() == "size=(3, 4), mode='nearest'"
    x = cgrad.zeros(1, 2, 3, 3)
    with pytest.raises(NotImplementedError, match="interpolate: mode 'bilinear' is not implemented"):
        F.interpolate(x, scale_factor=2, mode="bilinear")
    with pytest.raises(NotImplementedError, match="mode 'bilinear'"):
        nn.Upsample(scale_factor=2, mode="bilinear")(x)
    with pytest.raises(ValueError, match="only one of size or scale_factor"):
        F.interpolate(x, size=4, scale_factor=2)
    with pytest.raises(ValueError, match="either size or scale_factor"):
        F.interpolate(x)
    with pytest.raises(ValueError, match=r"same number of spatial dimensions, but got input of shape \(1, 2, 3, 3\) "
                                         r"and output size of \(4, 4, 4\)"):
        F.interpolate(x, size=(4, 4, 4))
    with pytest.raises(NotImplementedError, match=r"only 3-D \(N, C, L\) and 4-D \(N, C, H, W\) inputs are supported, "
                                                  r"got shape \(2, 3\)"):
        F.interpolate(cgrad.zeros(2, 3), size=4)
    with pytest.raises(ValueError, match="sizes should be greater than 0"):
        F.interpolate(x, scale_factor=0.2)
    with pytest.raises(ValueError, match="align_corners"):
        F.interpolate(x, size=4, align_corners=False)


# ---- replay: a compiled training step equals eager steps bit for bit ----
def _convnet(dtype, momentum, seed=0):
    cgrad.manual_seed(seed)
    return nn.Sequential(nn.BatchNorm2d(3, momentum=momentum), nn.ReLU(), nn.Upsample(scale_factor=2),
                         nn.GroupNorm(1, 3), nn.Flatten(), nn.Linear(3 * 4 * 6, 5), nn.BatchNorm1d(5),
                         nn.Linear(5, 2)).to(dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("momentum", [0.1, None], ids=["momentum", "cumulative"])
def test_a_replayed_training_step_updates_parameters_and_statistics_as_eager(momentum, dtype, rng):
    models = [_convnet(dtype, momentum), _convnet(dtype, momentum)]
    compiled, eager = (train_step(m, cgrad.optim.SGD(m.parameters(), lr=0.05, momentum=0.9)) for m in models)
    compiled = cgrad.compile(compiled)
    for _ in range(6):
        x = rng.standard_normal((4, 3, 2, 3)).astype(dtype)
        y = rng.integers(0, 2, 4)
        assert np.array_equal(compiled(x, y).numpy(), eager(cgrad.tensor(x), y).numpy())
    assert compiled.recordings == 1
    s0, s1 = models[0].state_dict(), models[1].state_dict()
    assert list(s0) == list(s1) and any("running_var" in k for k in s0)
    for k in s0:
        assert np.array_equal(s0[k].numpy(), s1[k].numpy()), k
    assert int(s0["0.num_batches_tracked"].item()) == 6
    assert_same(models[0], models[1])
    for m in models:  # evaluation replays too, reading the statistics as they are now
        m.eval()
    infer = cgrad.compile(lambda x: models[0](x))
    for _ in range(3):
        x = rng.standard_normal((2, 3, 2, 3)).astype(dtype)
        with cgrad.no_grad():
            assert np.array_equal(infer(x).numpy(), models[1](cgrad.tensor(x)).numpy())
    assert infer.recordings == 1


# ---- higher-order gradients ----
def test_a_gradient_penalty_through_batch_norm_is_differentiable(rng):
    """d/dw of |d loss / d x|^2 through the taped rule, against finite differences of the
    first-order gradient (itself checked above)."""
    x = rng.standard_normal((4, 3, 2))
    w0 = rng.uniform(0.5, 1.5, 3)
    g = rng.standard_normal((4, 3, 2))

    def penalty(w_arr, create_graph):
        xt = cgrad.tensor(x, requires_grad=True)
        wt = cgrad.tensor(w_arr, requires_grad=True)
        y = F.batch_norm(xt, None, None, wt, None, training=True)
        (dx,) = cgrad.autograd.grad((y * y * cgrad.tensor(g)).sum(), [xt], create_graph=create_graph)
        return (dx * dx).sum(), wt

    p, wt = penalty(w0, True)
    p.backward()
    h = 1e-6
    want = [(penalty(w0 + h * e, False)[0].item() - penalty(w0 - h * e, False)[0].item()) / (2 * h)
            for e in np.eye(3)]
    np.testing.assert_allclose(wt.grad.numpy(), want, rtol=1e-5, atol=1e-6)


# ---- against PyTorch ----
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("options", [{}, {"momentum": None}, {"affine": False}, {"track_running_stats": False},
                                     {"momentum": 0.5, "eps": 1e-3}, {"bias": False}], ids=str)
@pytest.mark.parametrize("cls, shape", LAYERS, ids=LAYER_IDS)
def test_batch_norm_agrees_with_pytorch_over_training_steps(cls, shape, options, dtype, rng):
    torch = pytest.importorskip("torch")
    tdtype = torch.float32 if dtype == np.float32 else torch.float64
    ours = _layer(cls, shape[1], dtype, **options)
    theirs = getattr(torch.nn, cls.__name__)(shape[1], **options).to(tdtype)
    for p, tp in zip(ours.parameters(), theirs.parameters()):  # weight and bias away from 1 and 0
        value = rng.uniform(0.5, 1.5, shape[1])
        with cgrad.no_grad():
            p.copy_(value)
        with torch.no_grad():
            tp.copy_(torch.tensor(value))
    tol = _tol(dtype)
    # PyTorch's float32 kernel sums in float32; a batch of 2, whose dx is nearly 0 (xhat is
    # +-1), shows its rounding: its dx does not even sum to 0 over the batch, ours does
    gtol = tol if dtype == np.float64 else dict(rtol=1e-3, atol=1e-4)
    for _ in range(3):
        x = rng.uniform(-2, 2, shape).astype(dtype)
        g = rng.standard_normal(shape).astype(dtype)
        xt, tx = cgrad.tensor(x, requires_grad=True), torch.tensor(x, requires_grad=True)
        y, ty = ours(xt), theirs(tx)
        y.backward(cgrad.tensor(g))
        ty.backward(torch.tensor(g))
        np.testing.assert_allclose(y.numpy(), ty.detach().numpy(), **tol)
        np.testing.assert_allclose(xt.grad.numpy(), tx.grad.numpy(), **gtol)
        for p, tp in zip(ours.parameters(), theirs.parameters()):
            np.testing.assert_allclose(p.grad.numpy(), tp.grad.numpy(), **gtol)
            p.grad = None
            tp.grad = None
    ostate, tstate = ours.state_dict(), theirs.state_dict()
    assert list(ostate) == list(tstate)
    for k in ostate:
        np.testing.assert_allclose(ostate[k].numpy(), tstate[k].numpy(), **tol)
    ours.eval(), theirs.eval()
    x = rng.uniform(-2, 2, shape).astype(dtype)
    np.testing.assert_allclose(ours(cgrad.tensor(x)).numpy(), theirs(torch.tensor(x)).detach().numpy(), **tol)
    assert ours.extra_repr() == theirs.extra_repr()


@pytest.mark.parametrize("cls, shape", [(nn.BatchNorm1d, (4, 3, 2)), (nn.BatchNorm2d, (2, 3, 2, 2))], ids=str)
def test_pytorch_state_dicts_load_both_ways(cls, shape, rng):
    torch = pytest.importorskip("torch")
    theirs = getattr(torch.nn, cls.__name__)(3).double()
    with torch.no_grad():
        theirs.weight.uniform_(0.5, 1.5)
        theirs.bias.uniform_(-1, 1)
    for _ in range(2):
        theirs(torch.tensor(rng.standard_normal(shape)))
    ours = cls(3).double()
    ours.load_state_dict(theirs.state_dict())  # PyTorch -> cgrad
    assert int(ours.num_batches_tracked.item()) == 2 and ours.num_batches_tracked.dtype == np.int64
    x = rng.standard_normal(shape)
    ours.eval(), theirs.eval()
    np.testing.assert_allclose(ours(cgrad.tensor(x)).numpy(), theirs(torch.tensor(x)).detach().numpy(),
                               rtol=1e-12, atol=1e-12)
    ours.train()
    for _ in range(2):
        ours(cgrad.tensor(rng.standard_normal(shape)))
    back = getattr(torch.nn, cls.__name__)(3).double()
    back.load_state_dict({k: torch.from_numpy(v.numpy().copy()) for k, v in ours.state_dict().items()})  # and back
    assert int(back.num_batches_tracked) == 4
    ours.eval(), back.eval()
    np.testing.assert_allclose(ours(cgrad.tensor(x)).numpy(), back(torch.tensor(x)).detach().numpy(),
                               rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("shape, groups, options", [((2, 4, 3), 2, {}), ((3, 6, 2, 2), 3, {"affine": False}),
                                                    ((3, 4), 2, {"bias": False})], ids=str)
def test_group_norm_agrees_with_pytorch(shape, groups, options, rng):
    torch = pytest.importorskip("torch")
    ours, theirs = nn.GroupNorm(groups, shape[1], **options), torch.nn.GroupNorm(groups, shape[1], **options)
    x = rng.uniform(-2, 2, shape).astype(np.float32)
    g = rng.standard_normal(shape).astype(np.float32)
    xt, tx = cgrad.tensor(x, requires_grad=True), torch.tensor(x, requires_grad=True)
    y, ty = ours(xt), theirs(tx)
    y.backward(cgrad.tensor(g))
    ty.backward(torch.tensor(g))
    np.testing.assert_allclose(y.numpy(), ty.detach().numpy(), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(xt.grad.numpy(), tx.grad.numpy(), rtol=1e-4, atol=1e-4)
    for p, tp in zip(ours.parameters(), theirs.parameters()):
        np.testing.assert_allclose(p.grad.numpy(), tp.grad.numpy(), rtol=1e-4, atol=1e-4)
    assert ours.extra_repr() == theirs.extra_repr()


def test_interpolate_agrees_with_pytorch(rng):
    """float32, as PyTorch computes the source index (floor(i * s) with s in float32): over a
    grid of sizes, including those where exact integer arithmetic differs (2 -> 82), and
    scale factors given (s = 1 / scale_factor) or recomputed."""
    torch = pytest.importorskip("torch")
    tF = torch.nn.functional
    for n_in in range(1, 9):
        x = rng.standard_normal((2, 2, n_in)).astype(np.float32)
        for n_out in [*range(1, 20), 82, 94]:
            np.testing.assert_array_equal(F.interpolate(cgrad.tensor(x), size=n_out).numpy(),
                                          tF.interpolate(torch.tensor(x), size=n_out).numpy())
        for sf in [0.5, 0.7, 1.5, 2.0, 2.5, 3.0, 1 / 3]:
            if int(n_in * sf) < 1:
                continue
            for recompute in (None, True):
                np.testing.assert_array_equal(
                    F.interpolate(cgrad.tensor(x), scale_factor=sf, recompute_scale_factor=recompute).numpy(),
                    tF.interpolate(torch.tensor(x), scale_factor=sf, recompute_scale_factor=recompute).numpy())
    x = rng.standard_normal((2, 3, 5, 7)).astype(np.float32)
    for kw in [dict(size=(3, 4)), dict(size=(10, 14)), dict(size=(11, 3)), dict(scale_factor=(2, 3)),
               dict(scale_factor=(0.5, 1.5)), dict(scale_factor=2),
               # PyTorch's 2-D kernel copies an equal size and halves a doubled one, whatever the factor
               dict(scale_factor=2.01), dict(scale_factor=1.1), dict(scale_factor=(1.99, 1.05))]:
        xt, tx = cgrad.tensor(x, requires_grad=True), torch.tensor(x, requires_grad=True)
        y, ty = F.interpolate(xt, **kw), tF.interpolate(tx, **kw)
        np.testing.assert_array_equal(y.numpy(), ty.detach().numpy())
        g = rng.standard_normal(y.shape).astype(np.float32)
        y.backward(cgrad.tensor(g))
        ty.backward(torch.tensor(g))
        np.testing.assert_allclose(xt.grad.numpy(), tx.grad.numpy(), rtol=1e-6, atol=1e-6)
    assert nn.Upsample(scale_factor=2).extra_repr() == torch.nn.Upsample(scale_factor=2).extra_repr()


def test_channel_dropout_matches_pytorch_s_statistics(rng):
    """The same rule as PyTorch's (draws differ): in training each channel is zeroed or
    scaled by 1/(1-p) whole, in evaluation the identity; here checked on PyTorch's side too."""
    torch = pytest.importorskip("torch")
    x = rng.uniform(0.5, 1.5, (20, 30, 2, 2)).astype(np.float32)
    torch.manual_seed(0)
    ty = torch.nn.functional.dropout2d(torch.tensor(x), 0.25).numpy()
    cgrad.manual_seed(0)
    y = F.dropout2d(cgrad.tensor(x), 0.25).numpy()
    for out in (ty, y):
        chan = out.reshape(20, 30, -1)
        kept = np.all(np.isclose(chan, x.reshape(20, 30, -1) / 0.75), axis=-1)
        assert np.all(kept | np.all(chan == 0, axis=-1))
        assert abs((~kept).mean() - 0.25) < 4 * np.sqrt(0.25 * 0.75 / 600)


def test_warnings_are_only_the_3d_dropout2d_one(rng):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        F.dropout2d(cgrad.tensor(rng.uniform(size=(2, 3, 2, 2))), 0.5)
        F.dropout1d(cgrad.tensor(rng.uniform(size=(2, 3, 2))), 0.5)


# ---- layer norm and RMS norm ----
def _naive_row_norm(x, k, w=None, b=None, eps=EPS, rms=False):
    """Each row of the last k dims, one value at a time: (x - mean) / sqrt(var + eps) (RMS:
    x / sqrt(mean(x^2) + eps)), then times w and plus b (of the row's shape)."""
    lead, row = x.shape[:x.ndim - k], x.shape[x.ndim - k:]
    y = np.empty(x.shape)
    for i in np.ndindex(lead):
        v = [float(x[i + j]) for j in np.ndindex(row)]
        m = 0.0 if rms else sum(v) / len(v)
        var = sum((a - m) ** 2 for a in v) / len(v)
        for j in np.ndindex(row):
            y[i + j] = (float(x[i + j]) - m) / np.sqrt(var + eps) * (1.0 if w is None else w[j]) + \
                (0.0 if b is None else b[j])
    return y


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape, k", [((4, 6), 1), ((2, 3, 5), 1), ((2, 3, 4), 2), ((1, 7), 1), ((5,), 1)], ids=str)
def test_layer_norm_and_rms_norm_match_the_naive_reference(shape, k, dtype, rng):
    x = rng.standard_normal(shape).astype(dtype) * 3 + 1
    w, b = rng.standard_normal(shape[-k:]), rng.standard_normal(shape[-k:])
    tol = dict(rtol=1e-5, atol=1e-5) if dtype == np.float32 else dict(rtol=1e-12, atol=1e-12)
    for weight, bias in [(w, b), (None, None), (w, None)]:
        cw = None if weight is None else cgrad.tensor(weight, dtype=dtype)
        cb = None if bias is None else cgrad.tensor(bias, dtype=dtype)
        y = F.layer_norm(cgrad.tensor(x), shape[-k:], cw, cb)
        assert y.dtype == dtype and y.shape == shape
        np.testing.assert_allclose(y.numpy(), _naive_row_norm(x, k, weight, bias), **tol)
        r = F.rms_norm(cgrad.tensor(x), shape[-k:], cw, eps=1e-4)
        np.testing.assert_allclose(r.numpy(), _naive_row_norm(x, k, weight, None, 1e-4, rms=True), **tol)
    # eps None: the dtype's machine epsilon (PyTorch 2.4+)
    np.testing.assert_allclose(F.rms_norm(cgrad.tensor(x), shape[-k:]).numpy(),
                               _naive_row_norm(x, k, eps=float(np.finfo(dtype).eps), rms=True), **tol)


def _row_norm_and_grads(x, w, b, g, rms, eps):
    """numpy float64: y and the closed-form dx, dw, db of a layer norm (RMS norm: mean 0,
    no mean(g w) term, no bias) over the last dim."""
    m = 0.0 if rms else x.mean(-1, keepdims=True)
    r = 1 / np.sqrt(((x - m) ** 2).mean(-1, keepdims=True) + eps)
    xh = (x - m) * r
    gw = g * w
    a = 0.0 if rms else gw.mean(-1, keepdims=True)
    dx = r * (gw - a - xh * (gw * xh).mean(-1, keepdims=True))
    return [xh * w + (0 if rms else b), dx, (g * xh).sum(0)] + ([] if rms else [g.sum(0)])


@pytest.mark.parametrize("D", [128, 200, 4099])
def test_float32_layer_norm_of_wide_rows_keeps_float64_accuracy(D, rng):
    """float32 rows sum in float (32 partial sums, blocks of 8, a tail): forward, dx, dw and
    db of wide rows, off-centre (mean 20, sd 3), against numpy in float64."""
    x = (rng.standard_normal((48, D)) * 3 + 20).astype(np.float32)
    w, b = rng.uniform(0.5, 1.5, D).astype(np.float32), rng.standard_normal(D).astype(np.float32)
    g = rng.standard_normal((48, D)).astype(np.float32)
    for rms in (False, True):
        ts = [cgrad.tensor(a, requires_grad=True) for a in (x, w, b)]
        y = F.rms_norm(ts[0], D, ts[1], eps=1e-5) if rms else F.layer_norm(ts[0], D, ts[1], ts[2])
        y.backward(cgrad.tensor(g))
        got = [y.numpy()] + [t.grad.numpy() for t in (ts[:2] if rms else ts)]
        want = _row_norm_and_grads(*(a.astype(np.float64) for a in (x, w, b, g)), rms, 1e-5)
        for name, a, e in zip(("y", "dx", "dw", "db"), got, want):
            np.testing.assert_allclose(a, e, rtol=0, atol=3e-6 * np.abs(e).max(), err_msg=f"{name} rms={rms}")


def test_layer_norm_gradient_is_the_closed_form_and_checks_in_float64(rng):
    x = cgrad.tensor(rng.standard_normal((3, 2, 4)), requires_grad=True)
    w = cgrad.tensor(rng.uniform(0.5, 1.5, (2, 4)), requires_grad=True)
    b = cgrad.tensor(rng.standard_normal((2, 4)), requires_grad=True)
    assert cgrad.gradcheck(lambda x, w, b: F.layer_norm(x, (2, 4), w, b) ** 2, [x, w, b])
    w1 = cgrad.tensor(rng.uniform(0.5, 1.5, 4), requires_grad=True)
    assert cgrad.gradcheck(lambda x, w: F.rms_norm(x, 4, w, 1e-3) ** 2, [x, w1])
    # a constant row: xhat = 0, so y = b, and dx is rstd (g - mean g) w
    c = cgrad.tensor(np.full((2, 3), 0.7), requires_grad=True)
    y = F.layer_norm(c, 3, None, cgrad.tensor([1.0, 2.0, 3.0], dtype=cgrad.float64))
    np.testing.assert_allclose(y.numpy(), [[1, 2, 3], [1, 2, 3]], atol=1e-12)
    y.backward(np.array([[1.0, 0.0, 2.0], [0.0, 0.0, 3.0]]))
    np.testing.assert_allclose(c.grad.numpy(), np.array([[0.0, -1.0, 1.0], [-1.0, -1.0, 2.0]]) / np.sqrt(EPS),
                               rtol=1e-9, atol=1e-9)


def test_layer_norm_layers_parameters_repr_and_reset(rng):
    ln = nn.LayerNorm((2, 3))
    assert ln.weight.shape == (2, 3) and ln.bias.shape == (2, 3) and ln.normalized_shape == (2, 3)
    assert np.array_equal(ln.weight.numpy(), np.ones((2, 3))) and np.array_equal(ln.bias.numpy(), np.zeros((2, 3)))
    assert ln.extra_repr() == "(2, 3), eps=1e-05, elementwise_affine=True"
    assert nn.LayerNorm(4, bias=False).bias is None and nn.LayerNorm(4, elementwise_affine=False).weight is None
    assert [k for k, _ in nn.LayerNorm(4).named_parameters()] == ["weight", "bias"]
    rms = nn.RMSNorm([4])
    assert rms.extra_repr() == "(4,), eps=None, elementwise_affine=True" and rms.weight.shape == (4,)
    assert nn.RMSNorm(4, elementwise_affine=False).weight is None
    with cgrad.no_grad():
        ln.weight.fill_(3.0)
    ln.reset_parameters()
    assert np.array_equal(ln.weight.numpy(), np.ones((2, 3)))
    assert nn.LayerNorm(3, dtype=cgrad.float64).weight.dtype == np.float64


def test_layer_norm_errors_name_the_op_and_the_shapes():
    x = cgrad.tensor(np.ones((2, 3), np.float32))
    with pytest.raises(ValueError, match=r"layer_norm: normalized_shape \(4,\) does not match the last dims of the "
                                         r"input of shape \(2, 3\)"):
        F.layer_norm(x, (4,))
    with pytest.raises(ValueError, match=r"layer_norm: normalized_shape \(1, 2, 3\) .* shape \(2, 3\)"):
        F.layer_norm(x, (1, 2, 3))
    with pytest.raises(ValueError, match=r"layer_norm: weight of shape \(4,\) does not match normalized_shape \(3,\)"):
        F.layer_norm(x, 3, cgrad.ones(4))
    with pytest.raises(ValueError, match=r"rms_norm: weight of shape \(2, 3\) does not match normalized_shape"):
        F.rms_norm(x, 3, cgrad.ones((2, 3)))
    with pytest.raises(TypeError, match=r"layer_norm: bias is float64 but the input is float32"):
        F.layer_norm(x, 3, None, cgrad.ones(3, dtype=cgrad.float64))
    with pytest.raises(ValueError, match=r"rms_norm: normalized_shape \(5,\) .* shape \(2, 3\)"):
        nn.RMSNorm(5)(x)
    with pytest.raises(TypeError, match="layer_norm"):
        F.layer_norm(cgrad.tensor(np.ones((2, 3), np.int64)), 3)


def _transformer_ish(dtype, seed=0):
    cgrad.manual_seed(seed)
    return nn.Sequential(nn.Linear(6, 8), nn.LayerNorm(8), nn.GELU(), nn.Linear(8, 8), nn.RMSNorm(8),
                         nn.Linear(8, 3)).to(dtype)


@pytest.mark.parametrize("dtype", DTYPES)
def test_a_replayed_training_step_through_layer_norms_equals_eager_bit_for_bit(dtype, rng):
    models = [_transformer_ish(dtype), _transformer_ish(dtype)]
    compiled, eager = (train_step(m, cgrad.optim.Adam(m.parameters(), lr=0.01)) for m in models)
    compiled = cgrad.compile(compiled)
    for _ in range(5):
        x = rng.standard_normal((5, 6)).astype(dtype)
        y = rng.integers(0, 3, 5)
        assert np.array_equal(compiled(x, y).numpy(), eager(cgrad.tensor(x), y).numpy())
    assert compiled.recordings == 1
    assert_same(models[0], models[1])


def test_layer_norm_second_derivatives(rng):
    x = cgrad.tensor(rng.standard_normal((3, 4)), requires_grad=True)
    w = cgrad.tensor(rng.uniform(0.5, 1.5, 4), requires_grad=True)
    for f in (lambda x, w: F.layer_norm(x, 4, w, None), lambda x, w: F.rms_norm(x, 4, w, 1e-3)):
        assert cgrad.gradgradcheck(lambda x, w: f(x, w) ** 3, [x, w])


@pytest.mark.parametrize("dtype", DTYPES)
def test_layer_norms_agree_with_pytorch(dtype, rng):
    torch = pytest.importorskip("torch")
    x = rng.standard_normal((3, 4, 5)).astype(dtype)
    for ours, theirs in [(nn.LayerNorm((4, 5), eps=1e-4), torch.nn.LayerNorm((4, 5), eps=1e-4)),
                         (nn.LayerNorm(5, bias=False), torch.nn.LayerNorm(5, bias=False)),
                         (nn.RMSNorm(5), torch.nn.RMSNorm(5)), (nn.RMSNorm((4, 5), eps=1e-3), torch.nn.RMSNorm((4, 5), eps=1e-3))]:
        theirs = theirs.to(torch.float32 if dtype == np.float32 else torch.float64)
        with torch.no_grad():
            for p in theirs.parameters():
                p.uniform_(0.5, 1.5)
        ours = ours.to(dtype)
        ours.load_state_dict(theirs.state_dict())  # PyTorch -> cgrad
        cx, tx = cgrad.tensor(x, requires_grad=True), torch.tensor(x, requires_grad=True)
        g = rng.standard_normal(x.shape).astype(dtype)
        yo, yt = ours(cx), theirs(tx)
        yo.backward(g), yt.backward(torch.tensor(g))
        tol = dict(rtol=2e-5, atol=2e-5) if dtype == np.float32 else dict(rtol=1e-10, atol=1e-10)
        np.testing.assert_allclose(yo.numpy(), yt.detach().numpy(), **tol)
        np.testing.assert_allclose(cx.grad.numpy(), tx.grad.numpy(), **tol)
        for (name, p), q in zip(ours.named_parameters(), theirs.parameters()):
            np.testing.assert_allclose(p.grad.numpy(), q.grad.numpy(), **tol, err_msg=name)
        back = type(theirs)(theirs.normalized_shape).to(theirs.weight.dtype)
        if hasattr(back, "bias") and theirs.bias is None:
            back = type(theirs)(theirs.normalized_shape, bias=False).to(theirs.weight.dtype)
        back.load_state_dict({k: torch.from_numpy(v.numpy().copy()) for k, v in ours.state_dict().items()})
        assert all(torch.equal(a, b) for a, b in zip(back.state_dict().values(), theirs.state_dict().values()))
