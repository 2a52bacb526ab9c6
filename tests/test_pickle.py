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


# ---------------------------------------------------------------- modules

def _f(*shape):
    return lambda rng: (rng.standard_normal(shape).astype(np.float32),)


def _loss_inputs(kind):
    def make(rng):
        x = rng.standard_normal((4, 3)).astype(np.float32)
        if kind == "index":
            return x, rng.integers(0, 3, 4)
        if kind == "log_prob":
            return x - np.log(np.exp(x).sum(1, keepdims=True)), rng.integers(0, 3, 4)
        if kind == "prob":
            return 1 / (1 + np.exp(-x)), rng.uniform(0, 1, (4, 3)).astype(np.float32)
        return x, rng.standard_normal((4, 3)).astype(np.float32)
    return make


def _layer(d_model=4):
    return nn.TransformerEncoderLayer(d_model, 2, dim_feedforward=8, dropout=0.0)


# every Module in cgrad.nn.__all__: how to make a small one, and its inputs (numpy arrays:
# float ones become tensors that require grad) or None for containers without forward
MODULES = {
    "Module": (nn.Module, None),
    "ModuleList": (lambda: nn.ModuleList([nn.Linear(3, 2), nn.Tanh()]), None),
    "ModuleDict": (lambda: nn.ModuleDict({"a": nn.Linear(3, 2), "b": nn.ReLU()}), None),
    "ParameterList": (lambda: nn.ParameterList([cgrad.randn(2), cgrad.randn(3, 2)]), None),
    "Linear": (lambda: nn.Linear(4, 3), _f(2, 4)),
    "Sequential": (lambda: nn.Sequential(nn.Linear(4, 3), nn.ReLU(), nn.Linear(3, 2)), _f(2, 4)),
    "MLP": (lambda: nn.MLP([4, 5, 3], activation="tanh", dropout=0.5), _f(2, 4)),
    **{name: (getattr(nn, name), _f(2, 4)) for name in (
        "ReLU", "LeakyReLU", "Sigmoid", "Tanh", "Softmax", "SiLU", "GELU", "ELU", "SELU", "Mish", "Softsign",
        "Hardtanh", "Dropout", "Flatten", "Identity", "Softplus", "LogSigmoid", "LogSoftmax", "ReLU6",
        "Hardsigmoid", "Hardswish", "CELU", "GLU", "Tanhshrink", "Softshrink", "Hardshrink")},
    "Softmin": (lambda: nn.Softmin(dim=1), _f(2, 4)),
    "Threshold": (lambda: nn.Threshold(0.1, 20.0), _f(2, 4)),
    "PReLU": (lambda: nn.PReLU(4, init=0.1), _f(2, 4)),
    "Unflatten": (lambda: nn.Unflatten(1, (2, 2)), _f(2, 4)),
    "MSELoss": (nn.MSELoss, _loss_inputs("value")),
    "L1Loss": (lambda: nn.L1Loss(reduction="sum"), _loss_inputs("value")),
    "HuberLoss": (lambda: nn.HuberLoss(delta=0.5), _loss_inputs("value")),
    "SmoothL1Loss": (lambda: nn.SmoothL1Loss(beta=0.5), _loss_inputs("value")),
    "BCELoss": (nn.BCELoss, _loss_inputs("prob")),
    "BCEWithLogitsLoss": (nn.BCEWithLogitsLoss, _loss_inputs("value")),
    "CrossEntropyLoss": (lambda: nn.CrossEntropyLoss(weight=cgrad.tensor([1.0, 2.0, 0.5]), label_smoothing=0.1),
                         _loss_inputs("index")),
    "NLLLoss": (lambda: nn.NLLLoss(weight=cgrad.tensor([1.0, 2.0, 0.5]), ignore_index=1), _loss_inputs("log_prob")),
    "Conv1d": (lambda: nn.Conv1d(2, 3, 3, padding=1), _f(2, 2, 7)),
    "Conv2d": (lambda: nn.Conv2d(2, 4, 3, stride=2, groups=2), _f(2, 2, 7, 7)),
    "MaxPool1d": (lambda: nn.MaxPool1d(2), _f(2, 2, 6)),
    "MaxPool2d": (lambda: nn.MaxPool2d(2, return_indices=True), _f(1, 2, 4, 4)),
    "AvgPool1d": (lambda: nn.AvgPool1d(3, stride=2, padding=1), _f(2, 2, 6)),
    "AvgPool2d": (lambda: nn.AvgPool2d(2), _f(1, 2, 4, 4)),
    "AdaptiveAvgPool1d": (lambda: nn.AdaptiveAvgPool1d(3), _f(2, 2, 7)),
    "AdaptiveAvgPool2d": (lambda: nn.AdaptiveAvgPool2d((2, 3)), _f(1, 2, 5, 5)),
    "AdaptiveMaxPool1d": (lambda: nn.AdaptiveMaxPool1d(3), _f(2, 2, 7)),
    "AdaptiveMaxPool2d": (lambda: nn.AdaptiveMaxPool2d(2), _f(1, 2, 5, 5)),
    "BatchNorm1d": (lambda: nn.BatchNorm1d(3), _f(4, 3)),
    "BatchNorm2d": (lambda: nn.BatchNorm2d(2, momentum=None), _f(2, 2, 3, 3)),
    "GroupNorm": (lambda: nn.GroupNorm(2, 4), _f(2, 4, 3)),
    "LayerNorm": (lambda: nn.LayerNorm(4), _f(2, 4)),
    "RMSNorm": (lambda: nn.RMSNorm(4), _f(2, 4)),
    "Dropout1d": (nn.Dropout1d, _f(2, 3, 4)),
    "Dropout2d": (nn.Dropout2d, _f(2, 3, 4, 4)),
    "Upsample": (lambda: nn.Upsample(scale_factor=2), _f(1, 2, 3, 3)),
    "Embedding": (lambda: nn.Embedding(10, 4, padding_idx=0), lambda rng: (rng.integers(0, 10, (2, 3)),)),
    "RNNBase": (lambda: nn.RNNBase("LSTM", 3, 4), _f(5, 2, 3)),
    "RNN": (lambda: nn.RNN(3, 4, num_layers=2, bidirectional=True), _f(5, 2, 3)),
    "GRU": (lambda: nn.GRU(3, 4, batch_first=True), _f(2, 5, 3)),
    "LSTM": (lambda: nn.LSTM(3, 4), _f(5, 2, 3)),
    "RNNCellBase": (lambda: nn.RNNCellBase("GRU", 3, 4), None),
    "RNNCell": (lambda: nn.RNNCell(3, 4, nonlinearity="relu"), _f(2, 3)),
    "GRUCell": (lambda: nn.GRUCell(3, 4), _f(2, 3)),
    "LSTMCell": (lambda: nn.LSTMCell(3, 4), _f(2, 3)),
    "MultiheadAttention": (lambda: nn.MultiheadAttention(4, 2), lambda rng: (rng.standard_normal((3, 2, 4)).astype(np.float32),) * 3),
    "TransformerEncoderLayer": (_layer, _f(3, 2, 4)),
    "TransformerEncoder": (lambda: nn.TransformerEncoder(_layer(), 2, norm=nn.LayerNorm(4)), _f(3, 2, 4)),
}


def test_the_table_has_every_module_of_cgrad_nn():
    names = {n for n in nn.__all__ if isinstance(getattr(nn, n), type) and issubclass(getattr(nn, n), nn.Module)}
    assert names == set(MODULES)


def _tensors(out):
    """The tensors of a (nested) output, in order."""
    if isinstance(out, cgrad.Tensor):
        return [out]
    if isinstance(out, (tuple, list)):
        return [t for o in out for t in _tensors(o)]
    return []


def _run(module, arrays):
    """Outputs, parameter gradients and input gradients of one forward and backward."""
    inputs = [cgrad.tensor(a, requires_grad=a.dtype.kind == "f") for a in arrays]
    outs = _tensors(module(*inputs))
    total = sum((t * (i + 1)).sum() for i, t in enumerate(outs) if t.dtype.kind == "f")
    total.backward()
    grads = {name: None if p.grad is None else p.grad.numpy().copy() for name, p in module.named_parameters()}
    return [t.numpy().copy() for t in outs], grads, [x.grad.numpy().copy() for x in inputs if x.requires_grad]


def _assert_same_state(a, b, shared: bool):
    sa, sb = a.state_dict(), b.state_dict()
    assert list(sa) == list(sb)
    for k in sa:
        assert sa[k].dtype == sb[k].dtype and sa[k].shape == sb[k].shape
        np.testing.assert_array_equal(sa[k].numpy(), sb[k].numpy())
        assert np.shares_memory(sa[k].numpy(), sb[k].numpy()) == shared, k
    for (na, pa), (nb, pb) in zip(a.named_parameters(), b.named_parameters()):
        assert na == nb and type(pb) is nn.Parameter and pa.requires_grad == pb.requires_grad


COPIES = {f"pickle{p}": (lambda m, p=p: roundtrip(m, p)) for p in PROTOCOLS}
COPIES["deepcopy"] = copy.deepcopy


@pytest.mark.parametrize("how", list(COPIES))
@pytest.mark.parametrize("name", list(MODULES))
def test_module_copy_is_equal_independent_and_trains(name, how):
    make, inputs = MODULES[name]
    cgrad.manual_seed(0)
    m = make()
    m.eval()
    c = COPIES[how](m)
    assert type(c) is type(m) and c is not m and not c.training
    assert repr(c) == repr(m)
    _assert_same_state(m, c, shared=False)
    assert [type(x) for x in c.modules()] == [type(x) for x in m.modules()]
    assert all(x is not y for x, y in zip(c.modules(), m.modules()))
    if inputs is not None:
        arrays = inputs(np.random.default_rng(1))
        want, got = _run(m, arrays), _run(c, arrays)
        for w, g in zip(want[0], got[0]):
            np.testing.assert_array_equal(g, w)
        assert want[1].keys() == got[1].keys()
        for k in want[1]:
            np.testing.assert_array_equal(got[1][k], want[1][k])
        for w, g in zip(want[2], got[2]):
            np.testing.assert_array_equal(g, w)
    # the copy is independent: changing the original's values leaves it as it was
    before = {k: v.numpy().copy() for k, v in c.state_dict().items()}
    with cgrad.no_grad():
        for t in m.state_dict().values():
            t.copy_(t + 1)
    for k, v in c.state_dict().items():
        np.testing.assert_array_equal(v.numpy(), before[k])


@pytest.mark.parametrize("name", [n for n in MODULES if MODULES[n][1] is not None])
def test_copy_copy_of_a_module_shares_its_parameters(name):
    make, _ = MODULES[name]
    m = make()
    c = copy.copy(m)
    assert c is not m and c._parameters is m._parameters  # shallow, as in Python and PyTorch
    for (_, a), (_, b) in zip(m.named_parameters(), c.named_parameters()):
        assert a is b


def test_tied_weights_stay_tied_and_train_together():
    emb, head = nn.Embedding(10, 4), nn.Linear(4, 10, bias=False)
    head.weight = emb.weight
    model = nn.Sequential(emb, head)
    for c in (roundtrip(model), copy.deepcopy(model)):
        assert c[0].weight is c[1].weight and c[0].weight is not emb.weight
        assert len(c.parameters()) == 1 and list(c.state_dict()) == ["0.weight", "1.weight"]
        opt = cgrad.optim.SGD(c.parameters(), lr=0.1)
        before = c[0].weight.numpy().copy()
        nn.functional.cross_entropy(c(cgrad.tensor([[1, 2]])).reshape(2, 10), cgrad.tensor([3, 4])).backward()
        opt.step()
        assert c[1].weight.numpy()[3, 0] != before[3, 0]
        np.testing.assert_array_equal(emb.weight.numpy(), head.weight.numpy())


def test_per_process_caches_and_diagnostics_are_left_behind():
    """The profiler's scope ids, the GRU's step norms and attention's entropy belong to the
    original's last calls: the copy starts without them and makes its own."""
    cgrad.manual_seed(0)
    gru, mha = nn.GRU(3, 4), nn.MultiheadAttention(4, 2)
    x = cgrad.randn(5, 2, 3)
    q = cgrad.randn(3, 2, 4)
    with cgrad.profile():
        out, _ = gru(x)
        out.sum().backward()
        a, _ = mha(q, q, q, need_weights=False)
    assert gru.step_grad_norms is not None and mha.attention_entropy is not None
    assert "_scope_ids" in gru.__dict__
    for copy_of in (roundtrip, copy.deepcopy):
        g, m = copy_of(gru), copy_of(mha)
        assert "_scope_ids" not in g.__dict__ and g.step_grad_norms is None and m.attention_entropy is None
        out, _ = g(x)
        out.sum().backward()
        np.testing.assert_array_equal(g.step_grad_norms, gru.step_grad_norms)
        m(q, q, q, need_weights=False)
        np.testing.assert_array_equal(m.attention_entropy, mha.attention_entropy)


def test_batch_norm_running_statistics_travel_and_update_alike():
    cgrad.manual_seed(0)
    bn = nn.BatchNorm1d(3)
    x = cgrad.randn(8, 3) * 2 + 1
    bn(x)
    for c in (roundtrip(bn, 5), copy.deepcopy(bn)):
        assert c.training and int(c.num_batches_tracked.item()) == 1
        np.testing.assert_array_equal(c.running_mean.numpy(), bn.running_mean.numpy())
        b2 = copy.deepcopy(bn)
        b2(x)
        c(x)
        np.testing.assert_array_equal(c.running_var.numpy(), b2.running_var.numpy())
        assert not np.shares_memory(c.running_var.numpy(), bn.running_var.numpy())


def test_the_recipe_models_deepcopy_and_the_sequential_one_pickles():
    from cgrad import models
    cgrad.manual_seed(0)
    for model, x in ((models.mnist1d_gru(nn), cgrad.randn(2, 40)),
                     (models.names_mlp(nn), cgrad.tensor([[1, 2, 3], [0, 5, 26]])),
                     (models.char_gpt(cgrad, 30, block_size=8, n_layer=1, n_embd=16, n_head=2),
                      cgrad.tensor([[1, 2, 3, 4]]))):
        model.eval()
        c = copy.deepcopy(model)
        want, got = _tensors(model(x)), _tensors(c(x))
        for w, g in zip(want, got):
            np.testing.assert_array_equal(g.numpy(), w.numpy())
        _assert_same_state(model, c, shared=False)
    m = models.names_mlp(nn)
    _assert_same_state(m, roundtrip(m), shared=False)
