"""Recurrent layers: nn.RNN/GRU/LSTM (one rnn_scan C op per layer and direction) and the cells.

Against the per-sample numpy loops of tests/rnn_reference.py (always), PyTorch (when
installed: outputs, states, every gradient, state dicts both ways, an Adam trajectory),
finite differences, and replay (a compiled training step equals eager bit for bit). The
step-gradient norms are checked against retain_grad on an unfused loop of cells."""
import numpy as np
import pytest

import cgrad
import rnn_reference as ref
from cgrad import nn
from cgrad._double_backward import _rnn_cell
from cgrad.nn import functional as F
from train_steps import assert_same, train_step

LAYERS = {"GRU": ("GRU", {}), "LSTM": ("LSTM", {}), "RNN_TANH": ("RNN", {}),
          "RNN_RELU": ("RNN", {"nonlinearity": "relu"})}
CONFIGS = [dict(), dict(num_layers=2), dict(bidirectional=True), dict(num_layers=2, bidirectional=True,
                                                                      batch_first=True), dict(bias=False)]


def _make(mode, dtype=cgrad.float64, **kw):
    cls, extra = LAYERS[mode]
    return getattr(nn, cls)(3, 4, dtype=dtype, **extra, **kw)


def _params(m):
    return {k: v.numpy().astype(np.float64) for k, v in m.state_dict().items()}


def _state(m, batch, rng, dtype=np.float64):
    shape = (m.num_layers * (2 if m.bidirectional else 1), batch, m.hidden_size)
    h0 = cgrad.tensor(rng.standard_normal(shape).astype(dtype))
    return (h0, cgrad.tensor(rng.standard_normal(shape).astype(dtype))) if m.mode == "LSTM" else h0


def _np(s):
    return tuple(t.numpy() for t in s) if isinstance(s, tuple) else s.numpy()


# ---- against the numpy reference ----
@pytest.mark.parametrize("config", CONFIGS, ids=str)
@pytest.mark.parametrize("mode", LAYERS)
@pytest.mark.parametrize("with_state", [False, True], ids=["zero_state", "h0"])
def test_layers_match_the_numpy_reference(mode, config, with_state, rng):
    m = _make(mode, **config)
    x = rng.standard_normal((5, 2, 3) if not config.get("batch_first") else (2, 5, 3))
    hx = _state(m, 2, rng) if with_state else None
    out, hn = m(cgrad.tensor(x), hx)
    want_out, want_hn = ref.layer(m.mode, _params(m), x, None if hx is None else _np(hx), m.num_layers,
                                  m.bidirectional, m.batch_first)
    np.testing.assert_allclose(out.numpy(), want_out, rtol=1e-12, atol=1e-12)
    for got, want in zip(hn if mode == "LSTM" else (hn,), want_hn if mode == "LSTM" else (want_hn,)):
        np.testing.assert_allclose(got.numpy(), want, rtol=1e-12, atol=1e-12)
    d = 2 if m.bidirectional else 1
    assert out.shape == x.shape[:2] + (4 * d,)


@pytest.mark.parametrize("mode", LAYERS)
def test_unbatched_input_is_a_batch_of_one(mode, rng):
    m = _make(mode, bidirectional=True, num_layers=2)
    x = rng.standard_normal((5, 3))
    hx = _state(m, 1, rng)
    hx2 = tuple(h.reshape(4, 4) for h in hx) if mode == "LSTM" else hx.reshape(4, 4)
    out, hn = m(cgrad.tensor(x), hx2)
    want_out, want_hn = m(cgrad.tensor(x[:, None]), hx)
    assert out.shape == (5, 8)
    np.testing.assert_array_equal(out.numpy(), want_out.numpy()[:, 0])
    if mode == "LSTM":
        assert hn[0].shape == hn[1].shape == (4, 4)
        np.testing.assert_array_equal(hn[1].numpy(), want_hn[1].numpy()[:, 0])
    else:
        np.testing.assert_array_equal(hn.numpy(), want_hn.numpy()[:, 0])


def _loss_of_params(mode, params, x, config):
    out, hn = ref.layer(mode, params, x, None, config.get("num_layers", 1), config.get("bidirectional", False))
    hn = hn if mode == "LSTM" else (hn,)
    return float((np.sin(out) * np.arange(out.size).reshape(out.shape)).sum() + sum((h ** 2).sum() for h in hn))


@pytest.mark.parametrize("mode", LAYERS)
@pytest.mark.parametrize("config", [dict(num_layers=2, bidirectional=True)], ids=str)
def test_parameter_gradients_match_finite_differences_of_the_reference(mode, config, rng):
    m = _make(mode, **config)
    x = rng.standard_normal((3, 2, 3))
    out, hn = m(cgrad.tensor(x))
    loss = (out.sin() * cgrad.tensor(np.arange(out.numel()).reshape(out.shape).astype(np.float64))).sum()
    for h in (hn if mode == "LSTM" else (hn,)):
        loss = loss + (h * h).sum()
    loss.backward()
    params = _params(m)
    for name, p in m.named_parameters():
        for idx in [(0,) * p.ndim, tuple(s - 1 for s in p.shape)]:
            up, down = dict(params), dict(params)
            up[name], down[name] = params[name].copy(), params[name].copy()
            up[name][idx] += 1e-6
            down[name][idx] -= 1e-6
            fd = (_loss_of_params(m.mode, up, x, config) - _loss_of_params(m.mode, down, x, config)) / 2e-6
            np.testing.assert_allclose(p.grad.numpy()[idx], fd, rtol=1e-5, atol=1e-7, err_msg=name)


@pytest.mark.parametrize("mode", LAYERS)
@pytest.mark.parametrize("config", [dict(), dict(num_layers=2, bidirectional=True), dict(batch_first=True)], ids=str)
@pytest.mark.parametrize("steps", [1, 3])
def test_gradcheck_in_the_input_and_the_initial_state(mode, config, steps, rng):
    m = _make(mode, **config)
    x = cgrad.tensor(rng.standard_normal((2, steps, 3) if config.get("batch_first") else (steps, 2, 3)),
                     requires_grad=True)
    hx = _state(m, 2, rng)
    if mode == "LSTM":
        h0, c0 = (cgrad.tensor(h.numpy(), requires_grad=True) for h in hx)
        assert cgrad.gradcheck(lambda x, h, c: _cat_outputs(m(x, (h, c))), [x, h0, c0])
    else:
        h0 = cgrad.tensor(hx.numpy(), requires_grad=True)
        assert cgrad.gradcheck(lambda x, h: _cat_outputs(m(x, h)), [x, h0])
    assert cgrad.gradcheck(lambda x: _cat_outputs(m(x)), [x])


def _cat_outputs(res):
    out, hn = res
    parts = [out] + list(hn if isinstance(hn, tuple) else (hn,))
    return cgrad.cat([p.reshape(-1) for p in parts], 0)


def test_a_second_derivative_through_a_layer_matches_finite_differences(rng):
    """A gradient penalty: d/dW of |dL/dx|^2, through the taped rule of rnn_scan."""
    m = _make("GRU", bidirectional=True)
    x = rng.standard_normal((3, 2, 3))

    def penalty():
        xt = cgrad.tensor(x, requires_grad=True)
        out, hn = m(xt)
        (gx,) = cgrad.autograd.grad((out.tanh().sum() + (hn * hn).sum()), [xt], create_graph=True)
        return (gx * gx).sum()

    m.zero_grad()
    penalty().backward()
    w = m.weight_hh_l0_reverse
    analytic = w.grad.numpy().copy()
    for idx in [(0, 0), (5, 2)]:
        vals = []
        for sign in (1, -1):
            with cgrad.no_grad():
                a = w.numpy()
                a[idx] += sign * 1e-5
            vals.append(penalty().item())
            with cgrad.no_grad():
                w.numpy()[idx] -= sign * 1e-5
        np.testing.assert_allclose(analytic[idx], (vals[0] - vals[1]) / 2e-5, rtol=1e-5, atol=1e-8)


# ---- dropout, cells ----
def test_dropout_between_layers_only_in_training(rng):
    m = nn.GRU(3, 4, num_layers=2, dropout=1.0, dtype=cgrad.float64)
    x = rng.standard_normal((4, 2, 3))
    out, hn = m(cgrad.tensor(x))
    p = _params(m)
    # dropout 1 zeroes layer 0's output: layer 1 sees zeros
    top = {k.replace("_l1", "_l0"): v for k, v in p.items() if "_l1" in k}
    want, _ = ref.layer("GRU", top, np.zeros((4, 2, 4)))
    np.testing.assert_allclose(out.numpy(), want, rtol=1e-12)
    m.eval()
    np.testing.assert_allclose(m(cgrad.tensor(x))[0].numpy(), ref.layer("GRU", p, x, num_layers=2)[0], rtol=1e-12)
    with pytest.warns(UserWarning, match="num_layers greater than 1"):
        nn.LSTM(3, 4, dropout=0.5)


@pytest.mark.parametrize("mode", LAYERS)
@pytest.mark.parametrize("batched", [True, False])
def test_cells_match_the_numpy_reference(mode, batched, rng):
    cls = {"GRU": nn.GRUCell, "LSTM": nn.LSTMCell}.get(mode, nn.RNNCell)
    kw = {"nonlinearity": "relu"} if mode == "RNN_RELU" else {}
    cell = cls(3, 4, dtype=cgrad.float64, **kw)
    x = rng.standard_normal((2, 3) if batched else (3,))
    h = rng.standard_normal((2, 4) if batched else (4,))
    c = rng.standard_normal(h.shape)
    p = {k: v.numpy() for k, v in cell.state_dict().items()}
    gx = x @ p["weight_ih"].T + p["bias_ih"]
    rows = [ref.cell(mode, g, hh, cc, p["weight_hh"], p["bias_hh"])
            for g, hh, cc in zip(np.atleast_2d(gx), np.atleast_2d(h), np.atleast_2d(c))]
    want_h = np.stack([r[0] for r in rows]).reshape(h.shape)
    if mode == "LSTM":
        got_h, got_c = cell(cgrad.tensor(x), (cgrad.tensor(h), cgrad.tensor(c)))
        np.testing.assert_allclose(got_c.numpy(), np.stack([r[1] for r in rows]).reshape(h.shape), rtol=1e-12)
    else:
        got_h = cell(cgrad.tensor(x), cgrad.tensor(h))
    np.testing.assert_allclose(got_h.numpy(), want_h, rtol=1e-12)
    zero = cell(cgrad.tensor(x))  # no state: zeros
    zero_h = zero[0] if mode == "LSTM" else zero
    want0 = np.stack([ref.cell(mode, g, np.zeros(4), np.zeros(4), p["weight_hh"], p["bias_hh"])[0]
                      for g in np.atleast_2d(gx)]).reshape(h.shape)
    np.testing.assert_allclose(zero_h.numpy(), want0, rtol=1e-12)
    names = ["weight_ih", "weight_hh", "bias_ih", "bias_hh"]
    assert list(p) == names and p["weight_ih"].shape == (4 * {"GRU": 3, "LSTM": 4}.get(mode, 1), 3)


def test_parameter_names_layouts_and_initialisation():
    m = nn.LSTM(3, 5, num_layers=2, bidirectional=True)
    names = [n for n, _ in m.named_parameters()]
    assert names[:8] == ["weight_ih_l0", "weight_hh_l0", "bias_ih_l0", "bias_hh_l0", "weight_ih_l0_reverse",
                         "weight_hh_l0_reverse", "bias_ih_l0_reverse", "bias_hh_l0_reverse"]
    assert m.weight_ih_l1.shape == (20, 10) and m.weight_hh_l1_reverse.shape == (20, 5)
    bound = 1 / np.sqrt(5)
    values = np.concatenate([p.numpy().ravel() for p in m.parameters()])
    assert values.min() >= -bound and values.max() <= bound and values.std() > bound / 3
    assert nn.GRU(2, 3).weight_ih_l0.shape == (9, 2) and nn.RNN(2, 3).weight_hh_l0.shape == (3, 3)
    assert "bias" not in "".join(n for n, _ in nn.GRU(2, 3, bias=False).named_parameters())
    assert repr(nn.GRU(2, 3, batch_first=True, bidirectional=True)).startswith("GRU(2, 3, batch_first=True, bidirectional=True)")


# ---- step-gradient norms ----
def _unfused_norms(m, x, loss_fn):
    """dL/dh_t's norm per step by retain_grad on a loop of _rnn_cell (cgrad ops, no rnn_scan)."""
    dirs = 2 if m.bidirectional else 1
    inp, hs_all, out = x, [], None
    for layer in range(m.num_layers):
        outs = []
        for d, sfx in enumerate(["", "_reverse"][:dirs]):
            w_ih, w_hh, b_ih, b_hh = m._layer_params(layer, sfx)
            xp = F.linear(inp, w_ih, b_ih)
            h = cgrad.zeros((x.shape[1], m.hidden_size), dtype=x.dtype)
            c = cgrad.zeros((x.shape[1], m.hidden_size), dtype=x.dtype) if m.mode == "LSTM" else None
            hs = [None] * x.shape[0]
            for t in (range(x.shape[0] - 1, -1, -1) if d else range(x.shape[0])):
                h, c = _rnn_cell(m.mode, xp[t], h, c, w_hh, b_hh)
                h.retain_grad()
                hs[t] = h
            hs_all.append(hs)
            outs.append(cgrad.stack(hs, 0))
        inp = outs[0] if dirs == 1 else cgrad.cat(outs, -1)
    out = inp
    loss_fn(out).backward()
    return np.array([[np.linalg.norm(h.grad.numpy()) for h in hs] for hs in hs_all])


@pytest.mark.parametrize("mode", LAYERS)
def test_step_grad_norms_match_retain_grad_on_an_unfused_loop(mode, rng):
    m = _make(mode, num_layers=2, bidirectional=True)
    assert m.step_grad_norms is None
    x = cgrad.tensor(rng.standard_normal((6, 3, 3)))
    weights = cgrad.tensor(rng.standard_normal((6, 3, 8)))

    def loss_fn(out):  # a loss on the last steps only: the norms fall off towards early steps
        return (out * weights)[4:].sum()

    out, _ = m(x)
    assert m.step_grad_norms is None  # forward alone fills nothing
    loss_fn(out).backward()
    got = m.step_grad_norms
    assert got.shape == (4, 6)
    np.testing.assert_allclose(got, _unfused_norms(m, x, loss_fn), rtol=1e-10, atol=1e-14)


def test_step_grad_norms_under_replay_follow_each_step(rng):
    m = nn.GRU(3, 4, bidirectional=True, batch_first=True)
    head = nn.Linear(8 * 5, 2)
    model = nn.Sequential(m, _First(), nn.Flatten(), head)
    opt = cgrad.optim.SGD(model.parameters(), lr=0.1)
    step = cgrad.compile(train_step(model, opt))
    for _ in range(3):
        x = rng.standard_normal((4, 5, 3)).astype(np.float32)
        y = rng.integers(0, 2, 4)
        opt.zero_grad()
        F.cross_entropy(model(cgrad.tensor(x)), y).backward()  # eager, from the parameters the step starts from
        eager = m.step_grad_norms.copy()
        step(x, y)
        np.testing.assert_array_equal(m.step_grad_norms, eager)
    assert step.recordings == 1


class _First(nn.Module):
    def forward(self, res):
        return res[0]


# ---- replay ----
def _seq_model(dtype, seed=0):
    cgrad.manual_seed(seed)
    return nn.Sequential(nn.GRU(1, 6, batch_first=True, bidirectional=True), _First(), nn.Flatten(),
                         nn.Linear(6 * 2 * 7, 3)).to(dtype)


class _LSTMStack(nn.Module):
    def __init__(self):
        super().__init__()
        self.lstm = nn.LSTM(2, 3, num_layers=2, dropout=0.0)
        self.cell = nn.GRUCell(3, 3)
        self.head = nn.Linear(3, 2)

    def forward(self, x):
        out, (h, c) = self.lstm(x)
        return self.head(self.cell(out[-1], h[-1]) + c[-1])


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_a_replayed_training_step_equals_eager_bit_for_bit(dtype, rng):
    for make, shape in ((lambda: _seq_model(dtype), (5, 7, 1)),
                        (lambda: (cgrad.manual_seed(1), _LSTMStack().to(dtype))[1], (4, 5, 2))):
        models = [make(), make()]
        compiled, eager = (train_step(m, cgrad.optim.Adam(m.parameters(), lr=0.01)) for m in models)
        compiled = cgrad.compile(compiled)
        for _ in range(4):
            x = rng.standard_normal(shape).astype(dtype)
            y = rng.integers(0, 2, shape[1] if isinstance(models[0], _LSTMStack) else shape[0])
            assert np.array_equal(compiled(x, y).numpy(), eager(cgrad.tensor(x), y).numpy())
        assert compiled.recordings == 1
        assert_same(models[0], models[1])


def test_profiler_and_anomaly_mode_see_the_op(rng):
    m = nn.GRU(3, 4)
    x = cgrad.tensor(rng.standard_normal((5, 2, 3)).astype(np.float32))
    with cgrad.profile() as prof:
        m(x)[0].sum().backward()
    ops = {r["name"] for r in prof.rows(by="op", phase="backward")}
    assert "rnn_scan" in ops
    with cgrad.detect_anomaly():
        m(x)[0].sum().backward()  # finite: no error
        bad = cgrad.tensor(np.full((5, 2, 3), np.nan, np.float32))
        with pytest.raises(RuntimeError, match="anomaly"):
            m(bad)


# ---- errors ----
def test_errors_name_the_layer_and_the_shapes(rng):
    gru = nn.GRU(3, 4, num_layers=2)
    x = cgrad.tensor(rng.standard_normal((5, 2, 3)))
    with pytest.raises(ValueError, match=r"GRU: input.size\(-1\) must be equal to input_size. Expected 3, got 2 "
                                         r"\(input of shape \(5, 2, 2\)\)"):
        gru(cgrad.zeros((5, 2, 2)))
    with pytest.raises(ValueError, match=r"GRU: Expected input to be 2D \(L, H_in\) or 3D, got 4D tensor of shape "
                                         r"\(1, 5, 2, 3\)"):
        gru(cgrad.zeros((1, 5, 2, 3)))
    with pytest.raises(ValueError, match=r"GRU: Expected hidden size \(2, 2, 4\), got \(1, 2, 4\)"):
        gru(x, cgrad.zeros((1, 2, 4), dtype=cgrad.float64))
    with pytest.raises(ValueError, match=r"hidden should also be 3-D but got 2-D tensor of shape \(2, 4\)"):
        gru(x, cgrad.zeros((2, 4), dtype=cgrad.float64))
    lstm = nn.LSTM(3, 4)
    h = cgrad.zeros((1, 2, 4), dtype=cgrad.float64)
    with pytest.raises(ValueError, match=r"LSTM: Expected hidden\[1\] size \(1, 2, 4\), got \(1, 3, 4\)"):
        lstm(x, (h, cgrad.zeros((1, 3, 4), dtype=cgrad.float64)))
    with pytest.raises(TypeError, match=r"LSTM: hx must be a tuple \(h_0, c_0\)"):
        lstm(x, h)
    with pytest.raises(NotImplementedError, match="proj_size"):
        nn.LSTM(3, 4, proj_size=2)
    with pytest.raises(ValueError, match="Unknown nonlinearity 'gelu'"):
        nn.RNN(3, 4, nonlinearity="gelu")
    with pytest.raises(ValueError, match="dropout should be a number in range"):
        nn.GRU(3, 4, dropout=1.5)
    with pytest.raises(ValueError, match="hidden_size must be a positive int"):
        nn.GRU(3, 0)
    with pytest.raises(ValueError, match=r"GRUCell: input has inconsistent input_size: got 2 expected 3"):
        nn.GRUCell(3, 4)(cgrad.zeros((2, 2)))
    with pytest.raises(ValueError, match=r"LSTMCell: Expected cell state of shape \(2, 4\) for an input of shape "
                                         r"\(2, 3\), got \(3, 4\)"):
        nn.LSTMCell(3, 4)(cgrad.zeros((2, 3)), (cgrad.zeros((2, 4)), cgrad.zeros((3, 4))))
    # the C op's own checks, named with its shapes
    xp, w = cgrad.zeros((5, 2, 10)), cgrad.zeros((12, 4))
    with pytest.raises(ValueError, match=r"rnn_scan \(GRU\): the input projection of shape \(5, 2, 10\) does not "
                                         r"fit weight_hh of shape \(12, 4\)"):
        cgrad._C.rnn_scan("GRU", xp, w, None, None, None, None)
    with pytest.raises(ValueError, match=r"rnn_scan \(LSTM\): h0 of shape \(3, 4\) does not fit the input "
                                         r"projection of shape \(5, 2, 16\)"):
        cgrad._C.rnn_scan("LSTM", cgrad.zeros((5, 2, 16)), cgrad.zeros((16, 4)), cgrad.zeros((3, 4)), None, None,
                          None)
    with pytest.raises(ValueError, match=r"the step-norm buffer float32 of shape \(4,\) does not fit 5 time steps"):
        cgrad._C.rnn_scan("LSTM", cgrad.zeros((5, 2, 16)), cgrad.zeros((16, 4)), None, None, None, cgrad.zeros(4))
    with pytest.raises(TypeError, match=r"weight_hh is float64 but the input projection is float32"):
        cgrad._C.rnn_scan("RNN_TANH", cgrad.zeros((5, 2, 4)), cgrad.zeros((4, 4), dtype=cgrad.float64), None, None,
                          None, None)
    with pytest.raises(ValueError, match="unknown mode 'gru'"):
        cgrad._C.rnn_scan("gru", xp, w, None, None, None, None)


# ---- against PyTorch ----
def _torch_layer(torch, m):
    cls, kw = LAYERS[m.mode]
    t = getattr(torch.nn, cls)(m.input_size, m.hidden_size, num_layers=m.num_layers, bias=m.bias,
                               batch_first=m.batch_first, bidirectional=m.bidirectional, **kw)
    return t.double() if m.weight_ih_l0.dtype == cgrad.float64 else t


@pytest.mark.parametrize("config", CONFIGS, ids=str)
@pytest.mark.parametrize("mode", LAYERS)
def test_outputs_states_and_every_gradient_agree_with_pytorch(mode, config, rng):
    torch = pytest.importorskip("torch")
    m = _make(mode, **config)
    tm = _torch_layer(torch, m)
    tm.load_state_dict({k: torch.tensor(v.numpy()) for k, v in m.state_dict().items()})
    shape = (2, 5, 3) if m.batch_first else (5, 2, 3)
    x = rng.standard_normal(shape)
    hx = _state(m, 2, rng)
    xs = cgrad.tensor(x, requires_grad=True)
    tx = torch.tensor(x, requires_grad=True)
    th = tuple(torch.tensor(h.numpy(), requires_grad=True) for h in (hx if mode == "LSTM" else (hx,)))
    ch = tuple(cgrad.tensor(h.numpy(), requires_grad=True) for h in (hx if mode == "LSTM" else (hx,)))
    out, hn = m(xs, ch if mode == "LSTM" else ch[0])
    tout, thn = tm(tx, th if mode == "LSTM" else th[0])
    v = rng.standard_normal(out.shape)
    states, tstates = (hn if mode == "LSTM" else (hn,)), (thn if mode == "LSTM" else (thn,))
    loss = (out * cgrad.tensor(v)).sum() + sum((s * s * s).sum() for s in states)
    tloss = (tout * torch.tensor(v)).sum() + sum((s ** 3).sum() for s in tstates)
    loss.backward()
    tloss.backward()
    np.testing.assert_allclose(out.numpy(), tout.detach().numpy(), rtol=1e-10, atol=1e-12)
    for s, ts in zip(states, tstates):
        np.testing.assert_allclose(s.numpy(), ts.detach().numpy(), rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(xs.grad.numpy(), tx.grad.numpy(), rtol=1e-10, atol=1e-12)
    for c, t in zip(ch, th):
        np.testing.assert_allclose(c.grad.numpy(), t.grad.numpy(), rtol=1e-10, atol=1e-12)
    tparams = dict(tm.named_parameters())
    assert [n for n, _ in m.named_parameters()] == list(tparams)
    for name, p in m.named_parameters():
        np.testing.assert_allclose(p.grad.numpy(), tparams[name].grad.numpy(), rtol=1e-10, atol=1e-12,
                                   err_msg=name)


@pytest.mark.parametrize("mode", LAYERS)
def test_pytorch_state_dicts_load_both_ways(mode, rng):
    torch = pytest.importorskip("torch")
    x = rng.standard_normal((4, 2, 3)).astype(np.float32)
    m = _make(mode, dtype=cgrad.float32, num_layers=2, bidirectional=True)
    tm = _torch_layer(torch, m)
    m.load_state_dict(tm.state_dict())  # PyTorch -> cgrad
    np.testing.assert_allclose(m(cgrad.tensor(x))[0].numpy(), tm(torch.tensor(x))[0].detach().numpy(), rtol=1e-5,
                               atol=1e-6)
    m2 = _make(mode, dtype=cgrad.float32, num_layers=2, bidirectional=True)
    tm.load_state_dict({k: torch.tensor(v.numpy()) for k, v in m2.state_dict().items()})  # cgrad -> PyTorch
    np.testing.assert_allclose(m2(cgrad.tensor(x))[0].numpy(), tm(torch.tensor(x))[0].detach().numpy(), rtol=1e-5,
                               atol=1e-6)


@pytest.mark.parametrize("mode", ["GRU", "LSTM", "RNN_TANH"])
@pytest.mark.parametrize("batched", [True, False])
def test_cells_agree_with_pytorch(mode, batched, rng):
    torch = pytest.importorskip("torch")
    cls = {"GRU": "GRUCell", "LSTM": "LSTMCell"}.get(mode, "RNNCell")
    cell = getattr(nn, cls)(3, 4, dtype=cgrad.float64)
    tcell = getattr(torch.nn, cls)(3, 4).double()
    tcell.load_state_dict({k: torch.tensor(v.numpy()) for k, v in cell.state_dict().items()})
    x = rng.standard_normal((2, 3) if batched else (3,))
    h = rng.standard_normal((2, 4) if batched else (4,))
    state = (h, h * 0.5) if mode == "LSTM" else h
    cx = cgrad.tensor(x, requires_grad=True)
    tx = torch.tensor(x, requires_grad=True)
    got = cell(cx, tuple(cgrad.tensor(s) for s in state) if mode == "LSTM" else cgrad.tensor(state))
    want = tcell(tx, tuple(torch.tensor(s) for s in state) if mode == "LSTM" else torch.tensor(state))
    got, want = (got if mode == "LSTM" else (got,)), (want if mode == "LSTM" else (want,))
    sum(g.sin().sum() for g in got).backward()
    sum(w.sin().sum() for w in want).backward()
    for g, w in zip(got, want):
        np.testing.assert_allclose(g.numpy(), w.detach().numpy(), rtol=1e-12)
    np.testing.assert_allclose(cx.grad.numpy(), tx.grad.numpy(), rtol=1e-10)
    for name, p in cell.named_parameters():
        np.testing.assert_allclose(p.grad.numpy(), dict(tcell.named_parameters())[name].grad.numpy(), rtol=1e-10)


@pytest.mark.parametrize("mode", ["GRU", "LSTM"])
def test_a_20_step_adam_trajectory_matches_pytorch_in_float32(mode, rng):
    torch = pytest.importorskip("torch")
    cls, _ = LAYERS[mode]
    m = getattr(nn, cls)(1, 6, batch_first=True, bidirectional=True)
    head = nn.Linear(6 * 2 * 10, 10)
    tm, thead = getattr(torch.nn, cls)(1, 6, batch_first=True, bidirectional=True), torch.nn.Linear(120, 10)
    tm.load_state_dict({k: torch.tensor(v.numpy()) for k, v in m.state_dict().items()})
    thead.load_state_dict({k: torch.tensor(v.numpy()) for k, v in head.state_dict().items()})
    params = list(m.parameters()) + list(head.parameters())
    opt = cgrad.optim.Adam(params, lr=0.01)
    topt = torch.optim.Adam(list(tm.parameters()) + list(thead.parameters()), lr=0.01)
    for _ in range(20):
        x = rng.standard_normal((16, 10, 1)).astype(np.float32)
        y = rng.integers(0, 10, 16)
        opt.zero_grad()
        loss = F.cross_entropy(head(m(cgrad.tensor(x))[0].reshape(16, -1)), y)
        loss.backward()
        opt.step()
        topt.zero_grad()
        tloss = torch.nn.functional.cross_entropy(thead(tm(torch.tensor(x))[0].reshape(16, -1)), torch.tensor(y))
        tloss.backward()
        topt.step()
        np.testing.assert_allclose(loss.item(), tloss.item(), rtol=1e-5)
    for (name, p), tp in zip(list(m.named_parameters()), tm.parameters()):
        np.testing.assert_allclose(p.numpy(), tp.detach().numpy(), rtol=1e-5, atol=1e-5, err_msg=name)


@pytest.mark.parametrize("mode", ["GRU", "LSTM"])
def test_step_grad_norms_agree_with_pytorch_retain_grad(mode, rng):
    torch = pytest.importorskip("torch")
    m = _make(mode)
    tm = _torch_layer(torch, m)
    tm.load_state_dict({k: torch.tensor(v.numpy()) for k, v in m.state_dict().items()})
    x = rng.standard_normal((7, 3, 3))
    out, _ = m(cgrad.tensor(x))
    out[-1].sum().backward()
    # PyTorch's fused layer keeps no per-step state: run its cell step by step
    cell = getattr(torch.nn, LAYERS[mode][0] + "Cell")(3, 4).double()
    cell.load_state_dict({k[:-3]: v for k, v in tm.state_dict().items()})
    h = torch.zeros(3, 4, dtype=torch.float64)
    state = (h, h) if mode == "LSTM" else h
    hs = []
    for t in range(7):
        state = cell(torch.tensor(x[t]), state)
        h = state[0] if mode == "LSTM" else state
        h.retain_grad()
        hs.append(h)
    hs[-1].sum().backward()
    want = np.array([[np.linalg.norm(h.grad.numpy()) for h in hs]])
    np.testing.assert_allclose(m.step_grad_norms, want, rtol=1e-10)
    assert want[0, 0] < want[0, -1]  # the gradient fades going back in time


@pytest.mark.parametrize("mode", LAYERS)
def test_a_hidden_size_whose_steps_go_through_the_gemm_provider(mode, rng):
    """From hidden size 16 the per-step products are GEMM calls (csrc/rnn.c): the same results."""
    cls, extra = LAYERS[mode]
    m = getattr(nn, cls)(3, 20, bidirectional=True, dtype=cgrad.float64, **extra)
    x = rng.standard_normal((3, 2, 3))
    hx = _state(m, 2, rng)
    out, _ = m(cgrad.tensor(x), hx)
    want, _ = ref.layer(m.mode, _params(m), x, _np(hx), 1, True)
    np.testing.assert_allclose(out.numpy(), want, rtol=1e-12, atol=1e-12)
    xs = cgrad.tensor(x, requires_grad=True)
    h0 = cgrad.tensor((hx[0] if mode == "LSTM" else hx).numpy(), requires_grad=True)
    assert cgrad.gradcheck(lambda x, h: _cat_outputs(m(x, (h, h * 0.5) if mode == "LSTM" else h)), [xs, h0])
    params = _params(m)
    m.zero_grad()
    loss = m(cgrad.tensor(x))[0].sin().sum()
    loss.backward()
    w = m.weight_hh_l0_reverse
    idx = (5, 7)
    up, down = dict(params), dict(params)
    up["weight_hh_l0_reverse"], down["weight_hh_l0_reverse"] = params["weight_hh_l0_reverse"].copy(), params[
        "weight_hh_l0_reverse"].copy()
    up["weight_hh_l0_reverse"][idx] += 1e-6
    down["weight_hh_l0_reverse"][idx] -= 1e-6
    fd = (np.sin(ref.layer(m.mode, up, x, None, 1, True)[0]).sum()
          - np.sin(ref.layer(m.mode, down, x, None, 1, True)[0]).sum()) / 2e-6
    np.testing.assert_allclose(w.grad.numpy()[idx], fd, rtol=1e-5)
    m.to(cgrad.float32)  # and sgemm's path in float32, with its gradient
    out32, _ = m(cgrad.tensor(x.astype(np.float32)))
    np.testing.assert_allclose(out32.numpy(), ref.layer(m.mode, params, x, None, 1, True)[0], rtol=1e-4, atol=1e-5)
    m.zero_grad()
    out32.sin().sum().backward()
    np.testing.assert_allclose(m.weight_hh_l0_reverse.grad.numpy()[idx], fd, rtol=1e-3, atol=1e-5)
