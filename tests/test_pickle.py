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


def _sharing(lib, make_param, copy_of):
    """Which of (reshape, Parameter over it, detach) still share the base's memory after
    copying the four together, and whether the copies share memory with the originals."""
    a = lib.arange(6.0)
    group = (a, a.reshape(2, 3), make_param(a), a.detach())
    c = copy_of(group)
    c[0][0] = 100.0
    return [x.reshape(-1).tolist()[0] == 100.0 for x in c[1:]], a.tolist()[0] == 100.0


@pytest.mark.parametrize("how", list(COPY_FUNCTIONS := {
    **{f"pickle{p}": (lambda o, p=p: roundtrip(o, p)) for p in PROTOCOLS}, "deepcopy": copy.deepcopy}))
def test_tensors_sharing_memory_copied_together_still_share(how):
    """As torch.save keeps them. (torch's own pickle copies each tensor apart, and its
    deepcopy gives a Parameter memory of its own; cgrad keeps the sharing in both.)"""
    with cgrad.no_grad():
        got = _sharing(cgrad, nn.Parameter, COPY_FUNCTIONS[how])
    assert got == ([True, True, True], False)
    torch = pytest.importorskip("torch")
    import io

    def torch_save_load(obj):
        buf = io.BytesIO()
        torch.save(obj, buf)
        buf.seek(0)
        return torch.load(buf, weights_only=False)
    with torch.no_grad():
        assert _sharing(torch, torch.nn.Parameter, torch_save_load) == got


def test_a_model_and_its_state_dict_pickled_together_share_memory():
    model = nn.Linear(3, 2)
    m, sd = roundtrip((model, model.state_dict()))
    assert np.shares_memory(m.weight.numpy(), sd["weight"].numpy())
    assert not np.shares_memory(m.weight.numpy(), model.weight.numpy())
    import sys
    assert len(sys.modules["cgrad.tensor"]._pickled_storages) == 0  # a finished pickle's arrays are gone


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


def _recipes():
    from cgrad import models
    cgrad.manual_seed(0)
    return ((models.mnist1d_gru(nn), cgrad.randn(2, 40)),
            (models.names_mlp(nn), cgrad.tensor([[1, 2, 3], [0, 5, 26]])),
            (models.char_gpt(cgrad, 30, block_size=8, n_layer=1, n_embd=16, n_head=2), cgrad.tensor([[1, 2, 3, 4]])))


@pytest.mark.parametrize("how", ["pickle", "deepcopy"])
def test_the_recipe_models_pickle_and_deepcopy(how):
    # the GRU and GPT classes are local to their factories: they travel as the factory call
    for model, x in _recipes():
        model.eval()
        c = roundtrip(model) if how == "pickle" else copy.deepcopy(model)
        assert type(c).__name__ == type(model).__name__ and not c.training
        want, got = _tensors(model(x)), _tensors(c(x))
        for w, g in zip(want, got):
            np.testing.assert_array_equal(g.numpy(), w.numpy())
        _assert_same_state(model, c, shared=False)
        if hasattr(model, "lm_head"):
            assert c.lm_head.weight is c.transformer.wte.weight  # still tied


@pytest.mark.parametrize("how", ["pickle", "deepcopy"])
def test_copying_a_recipe_model_leaves_the_random_generator_as_it_was(how):
    # rebuilding runs the factory's initialisation: it must not move later draws (dropout, shuffles)
    from cgrad import models
    cgrad.manual_seed(0)
    models.mnist1d_gru(nn)
    want = cgrad.rand(4).numpy()
    cgrad.manual_seed(0)
    m = models.mnist1d_gru(nn)
    roundtrip(m) if how == "pickle" else copy.deepcopy(m)
    np.testing.assert_array_equal(cgrad.rand(4).numpy(), want)


def test_a_recipe_model_pickled_with_its_optimizer_is_the_one_it_updates():
    model, x = _recipes()[2]
    opt = cgrad.optim.AdamW(model.parameters(), lr=1e-2)
    m2, opt2 = roundtrip((model, opt))
    for m, o in ((model, opt), (m2, opt2)):
        for _ in range(3):
            o.zero_grad()
            logits, _ = m(x)
            logits.sum().backward()
            o.step()
    _assert_same_state(model, m2, shared=False)


# ---------------------------------------------------------------- optimizers and schedulers

def _half(epoch):
    return 0.5 ** epoch


OPTIMIZERS = {
    "SGD": lambda m: cgrad.optim.SGD(m.parameters(), lr=0.05, momentum=0.9, nesterov=True, weight_decay=0.01),
    "SGD-plain": lambda m: cgrad.optim.SGD(m.parameters(), lr=0.05),
    "Adam-groups": lambda m: cgrad.optim.Adam([{"params": [m[0].weight], "lr": 0.01},
                                              {"params": [m[0].bias, m[2].weight, m[2].bias], "weight_decay": 0.1}],
                                             lr=0.003),
    "AdamW": lambda m: cgrad.optim.AdamW(m.parameters(), lr=0.01),
    "LBFGS": lambda m: cgrad.optim.LBFGS(m.parameters(), lr=0.5, max_iter=3, history_size=4,
                                         line_search_fn="strong_wolfe"),
}
SCHEDULERS = {
    "StepLR": lambda o: cgrad.optim.StepLR(o, 2, gamma=0.5),
    "CosineAnnealingLR": lambda o: cgrad.optim.CosineAnnealingLR(o, T_max=6, eta_min=1e-4),
    "LambdaLR": lambda o: cgrad.optim.LambdaLR(o, _half),
    "SequentialLR": lambda o: cgrad.optim.SequentialLR(
        o, [cgrad.optim.LinearLR(o, 0.25, total_iters=3), cgrad.optim.ExponentialLR(o, 0.8)], [3]),
    "MultiStepLR": lambda o: cgrad.optim.MultiStepLR(o, [2, 5], gamma=0.3),
    "ReduceLROnPlateau": lambda o: cgrad.optim.ReduceLROnPlateau(o, patience=0, factor=0.5, threshold=0.5),
}


def _problem():
    rng = np.random.default_rng(5)
    X = rng.standard_normal((16, 3)).astype(np.float32)
    return cgrad.tensor(X), cgrad.tensor(np.sin(X.sum(1, keepdims=True)).astype(np.float32))


def _train(model, opt, sched, steps):
    X, y = _problem()

    def closure():
        opt.zero_grad()
        loss = nn.functional.mse_loss(model(X), y)
        loss.backward()
        return loss
    for _ in range(steps):
        loss = opt.step(closure) if isinstance(opt, cgrad.optim.LBFGS) else (closure(), opt.step())[0]
        if sched is not None:
            sched.step(loss.item()) if isinstance(sched, cgrad.optim.ReduceLROnPlateau) else sched.step()


def _setup(opt_name, sched_name=None):
    cgrad.manual_seed(3)
    model = nn.Sequential(nn.Linear(3, 8), nn.Tanh(), nn.Linear(8, 1))
    opt = OPTIMIZERS[opt_name](model)
    return model, opt, SCHEDULERS[sched_name](opt) if sched_name else None


def _params(model):
    return [p.numpy().copy() for p in model.parameters()]


CONTINUE = {"pickle": roundtrip, "pickle5": lambda o: roundtrip(o, 5), "deepcopy": copy.deepcopy}


@pytest.mark.parametrize("how", list(CONTINUE))
@pytest.mark.parametrize("opt_name,sched_name", [(o, None) for o in OPTIMIZERS] + [
    ("SGD", s) for s in SCHEDULERS] + [("Adam-groups", "CosineAnnealingLR"), ("AdamW", "ReduceLROnPlateau")])
def test_training_continues_bitwise_after_a_copy(opt_name, sched_name, how):
    """5 steps, copy (model, optimizer, scheduler) together, 5 more steps on the copy:
    bitwise the 10 steps of a run never copied; the original goes on unchanged too."""
    ref = _setup(opt_name, sched_name)
    _train(*ref, 10)
    run = _setup(opt_name, sched_name)
    _train(*run, 5)
    model, opt, sched = CONTINUE[how](run)
    assert opt.param_groups[0]["params"][0] is model[0].weight  # the memo: the model's own parameters
    assert sched is None or sched.optimizer is opt
    assert opt.state_dict().keys() == run[1].state_dict().keys()
    _train(model, opt, sched, 5)
    _train(*run, 5)
    for got, orig, want in zip(_params(model), _params(run[0]), _params(ref[0])):
        np.testing.assert_array_equal(got, want)
        np.testing.assert_array_equal(orig, want)
    if sched is not None:
        assert sched.get_last_lr() == ref[2].get_last_lr() and sched.last_epoch == 10


def _same_optimizer_state(a, b):
    sa, sb = a.state_dict(), b.state_dict()
    assert sa["param_groups"] == sb["param_groups"]
    assert sa["state"].keys() == sb["state"].keys()
    for k in sa["state"]:
        assert sa["state"][k].keys() == sb["state"][k].keys()
        for name, v in sa["state"][k].items():
            if isinstance(v, list):
                for x, y in zip(v, sb["state"][k][name]):
                    np.testing.assert_array_equal(x, y)
            else:
                np.testing.assert_array_equal(v, sb["state"][k][name])


@pytest.mark.parametrize("opt_name", list(OPTIMIZERS))
def test_an_optimizer_pickled_alone_has_copies_of_the_parameters(opt_name):
    model, opt, _ = _setup(opt_name)
    _train(model, opt, None, 3)
    o = roundtrip(opt)
    _same_optimizer_state(o, opt)
    mine = o.param_groups[0]["params"][0]
    assert mine is not model[0].weight and type(mine) is nn.Parameter
    np.testing.assert_array_equal(mine.numpy(), model[0].weight.numpy())
    assert not np.shares_memory(mine.numpy(), model[0].weight.numpy())
    before = model[0].weight.numpy().copy()
    def closure():
        o.zero_grad()
        loss = sum(((q - 1) ** 2).sum() for g in o.param_groups for q in g["params"])
        loss.backward()
        return loss
    o.step(closure) if isinstance(o, cgrad.optim.LBFGS) else (closure(), o.step())
    assert not np.array_equal(mine.numpy(), before)
    np.testing.assert_array_equal(model[0].weight.numpy(), before)


def test_a_scheduler_with_a_lambda_deep_copies_but_does_not_pickle():
    """As in PyTorch: a lambda cannot be pickled (a module-level function can)."""
    _, opt, _ = _setup("SGD")
    sched = cgrad.optim.LambdaLR(opt, lambda e: 0.9 ** e)
    sched.step()
    c = copy.deepcopy(sched)
    c.step()
    assert c.get_last_lr() == [pytest.approx(0.05 * 0.81)] and sched.get_last_lr() == [pytest.approx(0.05 * 0.9)]
    with pytest.raises((pickle.PicklingError, AttributeError)):
        pickle.dumps(sched)


# ---------------------------------------------------------------- History, Trainer, estimators

def _digits_like():
    rng = np.random.default_rng(0)
    X = rng.standard_normal((96, 6)).astype(np.float32)
    return X, (X[:, 0] + X[:, 1] > 0).astype(np.int64) + (X[:, 2] > 1)


def test_history_roundtrips():
    h = cgrad.History()
    h.append(1, {"loss": 0.5, "accuracy": 0.75})
    h.append(2, {"loss": 0.25, "accuracy": 0.875})
    for c in (roundtrip(h), copy.deepcopy(h)):
        assert c.epoch == [1, 2] and c.history == {"loss": [0.5, 0.25], "accuracy": [0.75, 0.875]}
        assert c.history is not h.history and repr(c) == repr(h)


@pytest.mark.parametrize("replay", [False, True], ids=["eager", "replay"])
@pytest.mark.parametrize("how", ["pickle", "deepcopy"])
def test_a_trainer_continues_after_a_copy(replay, how):
    """fit, copy the trainer, fit again on the copy: bitwise the second fit of the original
    (a replayed trainer records its compiled step anew in the copy)."""
    X, y = _digits_like()

    def make():
        cgrad.manual_seed(1)
        model = nn.Sequential(nn.Linear(6, 8), nn.ReLU(), nn.Linear(8, 3))
        opt = cgrad.optim.Adam(model.parameters(), lr=0.01)
        return cgrad.Trainer(model, "cross_entropy", opt, seed=4, replay=replay)
    ref = make()
    ref.fit(X, y, epochs=2, batch_size=32, verbose=0)
    want = ref.fit(X, y, epochs=2, batch_size=32, verbose=0)
    t = make()
    first = t.fit(X, y, epochs=2, batch_size=32, verbose=0)
    c = roundtrip(t) if how == "pickle" else copy.deepcopy(t)
    assert c.optimizer.param_groups[0]["params"][0] is c.model[0].weight
    if replay:
        assert isinstance(c._train_step, cgrad.replay.CompiledStep) and c._train_step.recordings == 0
    got = c.fit(X, y, epochs=2, batch_size=32, verbose=0)
    assert got.history["loss"] == want.history["loss"] != first.history["loss"]
    for a, b in zip(c.model.parameters(), ref.model.parameters()):
        np.testing.assert_array_equal(a.numpy(), b.numpy())
    if replay:
        assert c._train_step.recordings == 1  # it recorded its own step, then replayed it
    np.testing.assert_array_equal(c.predict(X), ref.predict(X))


def test_a_compiled_step_replays_on_a_copied_model():
    cgrad.manual_seed(2)
    X, y = _problem()
    model = nn.Sequential(nn.Linear(3, 8), nn.Tanh(), nn.Linear(8, 1))
    opt = cgrad.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    m2, o2 = copy.deepcopy((model, opt))

    def stepper(m, o):
        @cgrad.compile
        def step(xb, yb):
            o.zero_grad()
            loss = nn.functional.mse_loss(m(xb), yb)
            loss.backward()
            o.step()
            return loss
        return step
    s1, s2 = stepper(model, opt), stepper(m2, o2)
    xb, yb = X.numpy(), y.numpy()
    for _ in range(4):
        assert s1(xb, yb).item() == s2(xb, yb).item()
    assert s2.recordings == 1
    for a, b in zip(model.parameters(), m2.parameters()):
        np.testing.assert_array_equal(a.numpy(), b.numpy())
        assert not np.shares_memory(a.numpy(), b.numpy())


@pytest.mark.parametrize("kind", ["classifier", "regressor"])
def test_estimators_pickle_unfitted_and_fitted(kind):
    X, y = _digits_like()
    est = (cgrad.MLPClassifier if kind == "classifier" else cgrad.MLPRegressor)(
        hidden_layer_sizes=(8,), max_iter=5, random_state=0)
    target = y if kind == "classifier" else y.astype(np.float32)
    u = roundtrip(est)
    assert u.get_params() == est.get_params()
    est.fit(X, target)
    for c in (roundtrip(est), roundtrip(est, 5), copy.deepcopy(est)):
        np.testing.assert_array_equal(c.predict(X), est.predict(X))
        assert c.score(X, target) == est.score(X, target)
        c.fit(X, target)  # refits from scratch with the same seed
        np.testing.assert_array_equal(c.predict(X), est.predict(X))


# ---------------------------------------------------------------- another process

def _train_in_worker(payload):
    """Runs in a spawned process: train the (model, optimizer) it was sent, send them back."""
    model, opt = payload
    _train(model, opt, None, 5)
    return model, opt


def test_a_model_trains_in_a_spawned_process_and_comes_back():
    import multiprocessing
    ref = _setup("Adam-groups")
    _train(*ref, 10)
    model, opt, _ = _setup("Adam-groups")
    _train(model, opt, None, 5)
    with multiprocessing.get_context("spawn").Pool(1) as pool:
        back_model, back_opt = pool.apply(_train_in_worker, ((model, opt),))
    assert back_opt.param_groups[0]["params"][0] is back_model[0].weight
    for got, want in zip(_params(back_model), _params(ref[0])):
        np.testing.assert_array_equal(got, want)
    _same_optimizer_state(back_opt, ref[1])


# ---------------------------------------------------------------- data that is not numbers

NOT_NUMBERS = {
    "complex64": np.ones(3, dtype=np.complex64) * (1 + 2j),
    "complex128": np.ones(3, dtype=np.complex128) * 1j,
    "python complex": 1 + 2j,
    "list of complex": [1.0, 2j],
    "object": np.array([1, 2.5], dtype=object),
    "str": np.array(["1.5", "2"]),
    "bytes": np.array([b"1"]),
    "datetime": np.array(["2020-01-01"], dtype="datetime64[D]"),
    "timedelta": np.array([5], dtype="timedelta64[s]"),
}


def _entry_points(value):
    f32, i64 = cgrad.zeros(3), cgrad.zeros(3, dtype=cgrad.int64)
    one = np.asarray(value).reshape(-1)[:1].reshape(())  # a 0-d array of the data's dtype
    return {
        "tensor": lambda: cgrad.tensor(value),
        "tensor(dtype=float32)": lambda: cgrad.tensor(value, dtype=cgrad.float32),
        "tensor(dtype=int64)": lambda: cgrad.tensor(value, dtype=cgrad.int64),
        "as_tensor": lambda: cgrad.as_tensor(value),
        "as_tensor(dtype=float64)": lambda: cgrad.as_tensor(value, dtype=cgrad.float64),
        "from_numpy": lambda: cgrad.from_numpy(np.asarray(value)),
        "Tensor": lambda: cgrad.Tensor(value),
        "full": lambda: cgrad.full((3,), one, dtype=cgrad.float32),
        "copy_": lambda: f32.copy_(value),
        "copy_ (int64)": lambda: i64.copy_(value),
        "__setitem__": lambda: f32.__setitem__(slice(None), value),
        "__setitem__ (int64)": lambda: i64.__setitem__(0, one),
        "an operand": lambda: f32 + value,
        "an operand (int64)": lambda: i64 * value,
        "backward's gradient": lambda: (cgrad.ones(3, requires_grad=True) * 2).backward(value),
    }


@pytest.mark.parametrize("kind", list(NOT_NUMBERS))
def test_data_that_is_not_numbers_raises_type_error_naming_its_dtype(kind):
    """cgrad tensors hold numbers; complex data once lost its imaginary part silently."""
    import warnings
    value = NOT_NUMBERS[kind]
    # the dtype numpy gives the data; a Python complex operand is named by its type
    dtype = "complex" if kind == "python complex" else str(np.asarray(value).dtype)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a ComplexWarning (numpy dropping the imaginary part) fails too
        for where, fn in _entry_points(value).items():
            with pytest.raises(TypeError, match=dtype.replace("[", r"\[")) as info:
                fn()
            assert "tensor" in str(info.value), where


def test_numbers_still_convert_everywhere():
    t = cgrad.zeros(3)
    t[:] = np.array([1, 2, 3], dtype=np.int32)
    t.copy_([0.5, True, 2])
    np.testing.assert_array_equal(t.numpy(), [0.5, 1.0, 2.0])
    assert cgrad.full((2,), 2 ** 60, dtype=cgrad.int64).tolist() == [2 ** 60] * 2
    assert cgrad.tensor(np.float16(1.5)).dtype == cgrad.float32 and cgrad.tensor([], dtype=cgrad.int64).shape == (0,)


# ---------------------------------------------------------------- files never unpickle

_DETONATED = []


def _detonate():
    _DETONATED.append(True)
    return "boom"


class _Bomb:
    """Unpickling this runs code: what cgrad.load must never do."""

    def __reduce__(self):
        return _detonate, ()


def test_cgrad_load_never_unpickles(tmp_path):
    import zipfile
    path = tmp_path / "m.npz"
    cgrad.save(nn.Linear(2, 2).state_dict(), path)
    with zipfile.ZipFile(path, "a") as z, z.open("evil.npy", "w") as member:
        np.lib.format.write_array(member, np.array([_Bomb()], dtype=object), allow_pickle=True)
    (tmp_path / "model.npz").write_bytes(pickle.dumps(nn.Linear(2, 2)))
    assert pickle.loads(pickle.dumps(_Bomb())) == "boom" and _DETONATED == [True]  # the bomb works
    _DETONATED.clear()
    for p in (path, tmp_path / "model.npz"):
        with pytest.raises(ValueError):
            cgrad.load(p)
    assert _DETONATED == []


def test_copy_copy_of_an_optimizer_steps_the_same_parameters_from_a_copy_of_its_state():
    """copy.copy shares the param groups (so the parameters); the step count and buffers
    are the copy's own (torch shares its state dict too; cgrad keeps step counts per
    optimizer object, so it cannot share half of them)."""
    model, opt, _ = _setup("SGD")
    _train(model, opt, None, 2)
    c = copy.copy(opt)
    assert c is not opt and c.param_groups is opt.param_groups
    assert c.param_groups[0]["params"][0] is model[0].weight
    _same_optimizer_state(c, opt)
    before = opt.state_dict()
    _train(model, c, None, 1)
    after = opt.state_dict()
    np.testing.assert_array_equal(after["state"][0]["momentum_buffer"], before["state"][0]["momentum_buffer"])
    assert not np.array_equal(c.state_dict()["state"][0]["momentum_buffer"], before["state"][0]["momentum_buffer"])


def test_a_frozen_parameter_stays_frozen():
    p = nn.Parameter(cgrad.randn(3), requires_grad=False)
    for c in (roundtrip(p, 2), roundtrip(p, 5), copy.deepcopy(p), copy.copy(p)):
        assert type(c) is nn.Parameter and not c.requires_grad
        np.testing.assert_array_equal(c.numpy(), p.numpy())
