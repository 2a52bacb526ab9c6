"""cgrad.onnx.export: every supported layer and the recipe models, run by onnxruntime on
random inputs (and on another batch size, the batch being dynamic) against cgrad's forward."""
import sys

import numpy as np
import pytest

import cgrad
from cgrad import models, nn

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")


def _outputs(y):
    return [t.numpy() for t in (y if isinstance(y, (tuple, list)) else (y,)) for t in
            (t if isinstance(t, (tuple, list)) else (t,)) if t is not None]


def check(model, x, other=None, tmp_path=None, atol=1e-5, **kw):
    """Export, then the same outputs from onnxruntime as from cgrad (eval mode) on x and on
    `other` (another batch size by default: dim 0 is dynamic)."""
    xs = x if isinstance(x, tuple) else (x,)
    path = str(tmp_path / "m.onnx") if tmp_path is not None else None
    proto = cgrad.onnx.export(model, xs, path, **kw)
    session = ort.InferenceSession(path if path else proto.SerializeToString(), providers=["CPUExecutionProvider"])
    names = [i.name for i in session.get_inputs()]
    for inputs in [xs] + ([other if isinstance(other, tuple) else (other,)] if other is not None else []):
        got = session.run(None, dict(zip(names, inputs)))
        model.eval()
        with cgrad.no_grad():
            expected = _outputs(model(*[cgrad.tensor(a) for a in inputs]))
        assert len(got) == len(expected)
        for g, e in zip(got, expected):
            assert g.shape == e.shape
            np.testing.assert_allclose(g, e, rtol=1e-5, atol=atol)
    return proto


def rand(*shape, seed=0):
    return np.random.default_rng(seed).standard_normal(shape).astype(np.float32)


ACTIVATIONS = [nn.ReLU(), nn.Sigmoid(), nn.Tanh(), nn.GELU(), nn.GELU("tanh"), nn.SiLU(), nn.ELU(0.7),
               nn.LeakyReLU(0.1), nn.Softmax(dim=1), nn.LogSoftmax(dim=-1), nn.Softplus(), nn.Hardtanh(-0.5, 0.7),
               nn.ReLU6(), nn.Hardswish(), nn.Hardsigmoid(), nn.Mish(), nn.SELU(), nn.CELU(0.8), nn.Softsign(),
               nn.LogSigmoid(), nn.Tanhshrink(), nn.Softshrink(0.4), nn.Hardshrink(0.4), nn.Threshold(0.2, -1.5),
               nn.GLU(dim=1), nn.Softmin(dim=1), nn.Identity(), nn.PReLU(), nn.PReLU(6)]


@pytest.mark.parametrize("layer", ACTIVATIONS, ids=lambda m: repr(m).split("(")[0] + str(id(m) % 97))
def test_activations(layer):
    # values around every kink: -6..6, on [N, 6, 5] so that PReLU(6) has its channels
    x = rand(3, 6, 5) * 3
    model = nn.Sequential(nn.Linear(5, 5), layer) if not isinstance(layer, nn.PReLU) else layer
    check(model, x, rand(4, 6, 5, seed=1) * 3)


def test_linear_mlp_dropout_and_flatten():
    model = nn.Sequential(nn.Flatten(), nn.Linear(12, 16), nn.ReLU(), nn.Dropout(0.5), nn.Linear(16, 6),
                          nn.Unflatten(1, (2, 3)), nn.Dropout1d(0.3), nn.Identity())
    model.train()
    cgrad.onnx.export(model, rand(5, 3, 4))
    assert model.training and model[3].training  # export runs in eval mode and leaves the mode as it was
    check(model, rand(5, 3, 4), rand(2, 3, 4, seed=3))


def test_linear_on_3d_input_and_functional_ops():
    class Custom(nn.Module):
        def __init__(self):
            super().__init__()
            self.a = nn.Linear(4, 6)
            self.b = nn.Linear(4, 6, bias=False)

        def forward(self, x):
            h = self.a(x) * self.b(x).sigmoid() + 0.5
            h = cgrad.cat([h, 2.0 - h], dim=-1).transpose(1, 2)
            return (h[:, 1:9:2] / 3.0).softmax(-1).sum(1), h.mean(-1)
    check(Custom(), rand(2, 5, 4), rand(3, 5, 4, seed=2))


CONVS = [nn.Conv1d(3, 4, 3), nn.Conv1d(3, 6, 3, stride=2, padding=2, dilation=2, groups=3),
         nn.Conv1d(3, 4, 4, padding="same"), nn.Conv1d(3, 4, 3, padding=1, padding_mode="reflect"),
         nn.Conv1d(3, 4, 3, padding=2, padding_mode="replicate", bias=False)]


@pytest.mark.parametrize("i", range(len(CONVS)))
def test_conv1d(i):
    check(CONVS[i], rand(2, 3, 11), rand(3, 3, 11, seed=1))


CONVS2 = [nn.Conv2d(2, 4, 3), nn.Conv2d(2, 4, (3, 2), stride=(2, 1), padding=(1, 2), dilation=(1, 2)),
          nn.Conv2d(4, 8, 3, padding="same", groups=2), nn.Conv2d(2, 3, 3, padding=1, padding_mode="reflect")]


@pytest.mark.parametrize("i", range(len(CONVS2)))
def test_conv2d(i):
    c = CONVS2[i].in_channels
    check(CONVS2[i], rand(2, c, 9, 8), rand(1, c, 9, 8, seed=1))


POOLS = [nn.MaxPool1d(2), nn.MaxPool1d(3, stride=2, padding=1, ceil_mode=True), nn.MaxPool1d(2, dilation=2),
         nn.AvgPool1d(3, stride=2, padding=1), nn.AvgPool1d(3, stride=2, padding=1, count_include_pad=False),
         nn.AvgPool1d(2, ceil_mode=True), nn.AdaptiveAvgPool1d(1), nn.AdaptiveAvgPool1d(3), nn.AdaptiveMaxPool1d(1)]


@pytest.mark.parametrize("i", range(len(POOLS)))
def test_pool1d(i):
    check(POOLS[i], rand(2, 3, 9), rand(3, 3, 9, seed=1))


POOLS2 = [nn.MaxPool2d(2), nn.MaxPool2d((3, 2), stride=(2, 1), padding=(1, 0), ceil_mode=True),
          nn.AvgPool2d(2), nn.AvgPool2d(3, stride=2, padding=1, count_include_pad=False),
          nn.AvgPool2d(3, stride=2, padding=1, ceil_mode=True), nn.AdaptiveAvgPool2d(1),
          nn.AdaptiveAvgPool2d((2, 4)), nn.AdaptiveAvgPool2d((None, 2)), nn.AdaptiveMaxPool2d((1, 1))]


@pytest.mark.parametrize("i", range(len(POOLS2)))
def test_pool2d(i):
    check(POOLS2[i], rand(2, 3, 8, 8), rand(1, 3, 8, 8, seed=1))


# ceil_mode where PyTorch drops the last window, which would start in the padding after
# (5 + 2 - 2) / 2 -> 3 windows, not ONNX's 4), and where it keeps it
CEIL_POOLS = [nn.MaxPool2d(2, 2, 1, ceil_mode=True), nn.AvgPool2d(2, 2, 1, ceil_mode=True),
              nn.AvgPool2d(2, 2, 1, ceil_mode=True, count_include_pad=False), nn.MaxPool1d(2, 2, 1, ceil_mode=True),
              nn.AvgPool1d(2, 2, 1, ceil_mode=True), nn.MaxPool2d((2, 3), 2, 1, dilation=(1, 2), ceil_mode=True)]


@pytest.mark.parametrize("size", [5, 6])
@pytest.mark.parametrize("i", range(len(CEIL_POOLS)))
def test_pool_ceil_mode_drops_a_window_that_starts_in_the_padding(i, size):
    pool = CEIL_POOLS[i]
    shape = (2, 3, size, size) if "2d" in type(pool).__name__ else (2, 3, size)
    check(pool, rand(*shape), rand(3, *shape[1:], seed=1))


@pytest.mark.parametrize("shape,kernel,dilation", [((2, 4, 7, 7), (3, 4, 2, 2), 1), ((2, 4, 7, 6), (3, 4, 2, 3), 1),
                                                   ((2, 4, 7, 7), (3, 4, 2, 2), 3), ((2, 4, 9), (3, 4, 2), 1)])
def test_functional_same_padding_with_an_even_reach_pads_one_more_after(shape, kernel, dilation):
    w = cgrad.tensor(rand(*kernel, seed=2))
    conv = nn.functional.conv2d if len(shape) == 4 else nn.functional.conv1d

    class Same(nn.Module):
        def forward(self, x):
            return conv(x, w, padding="same", dilation=dilation)
    check(Same(), rand(*shape), rand(3, *shape[1:], seed=1))


def _trained_batch_norm(bn, shape):
    bn.train()
    with cgrad.no_grad():
        for s in range(3):
            bn(cgrad.tensor(rand(*shape, seed=10 + s) * 2 + 1))
    return bn


@pytest.mark.parametrize("make, shape", [(lambda: nn.BatchNorm1d(5), (4, 5)), (lambda: nn.BatchNorm1d(5), (4, 5, 7)),
                                         (lambda: nn.BatchNorm2d(3), (2, 3, 4, 4)),
                                         (lambda: nn.BatchNorm2d(3, affine=False), (2, 3, 4, 4))])
def test_batch_norm_eval(make, shape):
    bn = _trained_batch_norm(make(), shape)
    assert not np.allclose(bn.running_mean.numpy(), 0)
    check(bn, rand(*shape), rand(shape[0] + 2, *shape[1:], seed=1))


@pytest.mark.parametrize("layer", [nn.LayerNorm(6), nn.LayerNorm((4, 6), eps=1e-3), nn.LayerNorm(6, bias=False),
                                   nn.LayerNorm(6, elementwise_affine=False), nn.GroupNorm(2, 4),
                                   nn.GroupNorm(4, 4, affine=False)], ids=repr)
def test_norms(layer):
    if isinstance(layer, nn.GroupNorm):
        x, x2 = rand(3, 4, 5, 3) * 2 + 1, rand(2, 4, 5, 3, seed=1)
    else:
        x, x2 = rand(3, 4, 6) * 2 + 1, rand(5, 4, 6, seed=1)
    with cgrad.no_grad():  # affine parameters that are not ones and zeros
        for p in layer.parameters():
            p.copy_(rand(*p.shape, seed=7))
    check(layer, x, x2)


def test_embedding():
    model = nn.Sequential(nn.Embedding(10, 4, padding_idx=0), nn.Flatten(), nn.Linear(12, 2))
    ids = np.random.default_rng(0).integers(0, 10, (5, 3))
    check(model, ids, np.random.default_rng(1).integers(0, 10, (2, 3)))
    check(model, ids.astype(np.int32), np.random.default_rng(1).integers(0, 10, (2, 3)).astype(np.int32))


RNNS = [lambda: nn.RNN(3, 5, batch_first=True), lambda: nn.RNN(3, 5, nonlinearity="relu", num_layers=2),
        lambda: nn.GRU(3, 4, batch_first=True, bidirectional=True),
        lambda: nn.GRU(3, 4, num_layers=2, bidirectional=True, bias=False),
        lambda: nn.LSTM(3, 4, batch_first=True), lambda: nn.LSTM(3, 4, num_layers=2, bidirectional=True),
        lambda: nn.LSTM(3, 4, num_layers=3, batch_first=True, dropout=0.5)]


@pytest.mark.parametrize("i", range(len(RNNS)))
def test_recurrent_layers_return_output_and_state(i):
    cgrad.manual_seed(i)
    m = RNNS[i]()
    if m.batch_first:
        check(m, rand(2, 7, 3), rand(3, 7, 3, seed=1))
    else:  # seq-first: the batch is dim 1
        dyn = {n: {1: "batch"} for n in ["input_0", "output_0", "output_1", "output_2"][:4 if m.mode == "LSTM" else 3]}
        check(m, rand(7, 2, 3), rand(7, 4, 3, seed=1), dynamic_axes=dyn)


def test_default_dynamic_axes_follow_the_batch():
    proto = cgrad.onnx.export(nn.GRU(3, 4, num_layers=2, batch_first=True), rand(2, 5, 3))
    dims = [[d.dim_param or d.dim_value for d in o.type.tensor_type.shape.dim] for o in proto.graph.output]
    assert dims == [["batch", 5, 4], [2, "batch", 4]]  # output [N, T, H], h_n [layers, N, H]


def test_recurrent_with_initial_state_and_unbatched():
    cgrad.manual_seed(0)
    gru = nn.GRU(3, 4, num_layers=2, batch_first=True, bidirectional=True)
    check(gru, (rand(2, 5, 3), rand(4, 2, 4, seed=2)), (rand(3, 5, 3, seed=1), rand(4, 3, 4, seed=3)),
          dynamic_axes={"input_0": {0: "batch"}, "input_1": {1: "batch"}})
    lstm = nn.LSTM(3, 4)

    class WithState(nn.Module):
        def __init__(self):
            super().__init__()
            self.lstm = lstm

        def forward(self, x, h, c):
            out, (h_n, c_n) = self.lstm(x, (h, c))
            return out, h_n, c_n
    check(WithState(), (rand(5, 2, 3), rand(1, 2, 4, seed=1), rand(1, 2, 4, seed=2)), dynamic_axes={})
    check(nn.RNN(3, 4, num_layers=2), rand(6, 3), rand(8, 3, seed=1))  # unbatched [T, in]; T varies


def test_recipe_models():
    cgrad.manual_seed(0)
    rng = np.random.default_rng(0)
    check(models.mnist1d_gru(nn), rand(3, 40), rand(5, 40, seed=1))
    check(models.names_mlp(nn), rng.integers(0, 27, (4, 3)), rng.integers(0, 27, (9, 3)))
    gpt = models.char_gpt(cgrad, 13, block_size=8, n_layer=2, n_head=2, n_embd=16)
    check(gpt, rng.integers(0, 13, (2, 8)), rng.integers(0, 13, (3, 8)))


@pytest.mark.parametrize("norm_first", [False, True])
def test_transformer_encoder_layer(norm_first):
    cgrad.manual_seed(0)
    layer = nn.TransformerEncoderLayer(8, 2, dim_feedforward=16, dropout=0.1, batch_first=True,
                                       norm_first=norm_first, activation="gelu")
    check(layer, rand(2, 5, 8), rand(3, 5, 8, seed=1))


def test_cnn_model_with_a_custom_forward(tmp_path):
    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv1, self.bn = nn.Conv2d(1, 4, 3, padding=1), nn.BatchNorm2d(4)
            self.conv2, self.drop = nn.Conv2d(4, 8, 3), nn.Dropout2d(0.5)
            self.pool, self.fc = nn.AdaptiveAvgPool2d(1), nn.Linear(8, 3)

        def forward(self, x):
            x = nn.functional.max_pool2d(self.drop(nn.functional.relu(self.bn(self.conv1(x)))), 3, 1, 1)
            x = self.pool(nn.functional.gelu(self.conv2(x)))
            return self.fc(x.reshape(x.shape[0], -1)).log_softmax(-1)
    net = Net()
    _trained_batch_norm(net.bn, (2, 4, 8, 8))
    proto = check(net, rand(2, 1, 8, 8), rand(6, 1, 8, 8, seed=1), tmp_path=tmp_path,
                  input_names=["image"], output_names=["log_probs"])
    assert (tmp_path / "m.onnx").exists()
    assert [i.name for i in proto.graph.input] == ["image"] and [o.name for o in proto.graph.output] == ["log_probs"]
    assert proto.graph.input[0].type.tensor_type.shape.dim[0].dim_param == "batch"
    names = {i.name for i in proto.graph.initializer}
    assert {"conv1.weight", "bn.running_mean", "fc.bias"} <= names  # parameters keep their state-dict names
    assert nn.functional.max_pool2d.__name__ == "max_pool2d"  # the noted functions are restored
    assert "wrapper" not in repr(nn.functional.max_pool2d)


def test_writes_to_a_file_object():
    import io
    model = nn.Sequential(nn.Linear(4, 2), nn.Tanh())
    buf = io.BytesIO()
    proto = cgrad.onnx.export(model, rand(3, 4), buf)
    assert buf.getvalue() == proto.SerializeToString()
    x = rand(6, 4, seed=1)
    got = ort.InferenceSession(buf.getvalue(), providers=["CPUExecutionProvider"]).run(None, {"input_0": x})[0]
    np.testing.assert_allclose(got, np.tanh(x @ model[0].weight.numpy().T + model[0].bias.numpy()), rtol=1e-5,
                               atol=1e-6)


def test_fixed_shapes_when_asked():
    model = nn.Sequential(nn.Linear(4, 2))
    proto = check(model, rand(3, 4), dynamic_axes={})
    assert proto.graph.input[0].type.tensor_type.shape.dim[0].dim_value == 3
    session = ort.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"])
    with pytest.raises(Exception):
        session.run(None, {"input_0": rand(5, 4)})


def test_unsupported_layer_and_op_are_named():
    class Sorts(nn.Module):
        def forward(self, x):
            return x.cumsum(1)

    model = nn.Sequential(nn.Linear(3, 3), nn.Sequential(nn.ReLU(), Sorts()))
    with pytest.raises(cgrad.onnx.UnsupportedOperatorError, match=r"op 'cumsum' in Sorts \(1\.1\)"):
        cgrad.onnx.export(model, rand(2, 3))
    with pytest.raises(cgrad.onnx.UnsupportedOperatorError, match=r"avg_pool2d in AvgPool2d \(0\) with divisor_override"):
        cgrad.onnx.export(nn.Sequential(nn.AvgPool2d(2, divisor_override=3)), rand(1, 1, 4, 4))
    with pytest.raises(cgrad.onnx.UnsupportedOperatorError, match=r"scaled_dot_product_attention with a mask"):
        _sdpa_with_mask()


def _sdpa_with_mask():
    class Masked(nn.Module):
        def forward(self, q):
            mask = cgrad.tensor(np.tril(np.ones((3, 3), dtype=bool)))
            return nn.functional.scaled_dot_product_attention(q, q, q, attn_mask=mask)
    cgrad.onnx.export(Masked(), rand(2, 3, 4))


def test_values_computed_outside_the_tape_are_refused():
    class Masks(nn.Module):
        def forward(self, x):
            return x * cgrad.tensor((x.numpy() > 0).astype(np.float32))  # a mask frozen by tracing

    with pytest.raises(cgrad.onnx.UnsupportedOperatorError, match="graph changes with its input values "
                                                                  r"\(first at the op 'mul' in Masks\)"):
        cgrad.onnx.export(Masks(), rand(3, 4), dynamic_axes={})

    class BatchSized(nn.Module):
        def forward(self, x):
            return x + cgrad.zeros(x.shape[0], 4)
    with pytest.raises(cgrad.onnx.UnsupportedOperatorError, match="batch size.*first at the op 'add' in BatchSized"):
        cgrad.onnx.export(BatchSized(), rand(3, 4))

    class Picks(nn.Module):  # index_select along a later dim gathers rows of the flattened batch
        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(4, 4)

        def forward(self, x):
            return self.fc(x).index_select(1, cgrad.tensor([3, 1]))
    with pytest.raises(cgrad.onnx.UnsupportedOperatorError, match="first at the op 'gather' in Picks"):
        cgrad.onnx.export(Picks(), rand(3, 4))
    check(Picks(), rand(3, 4), dynamic_axes={})
    check(BatchSized(), rand(3, 4), dynamic_axes={})  # fixed shapes: a constant is fine


def test_argument_errors(monkeypatch):
    with pytest.raises(TypeError, match="onnx.export: model must be"):
        cgrad.onnx.export(lambda x: x, rand(2))
    with pytest.raises(ValueError, match="opset_version"):
        cgrad.onnx.export(nn.ReLU(), rand(2), opset_version=11)
    with pytest.raises(ValueError, match="input_names"):
        cgrad.onnx.export(nn.ReLU(), rand(2), input_names=["a", "b"])
    with pytest.raises(ValueError, match="dynamic_axes"):
        cgrad.onnx.export(nn.ReLU(), rand(2), dynamic_axes={"nope": [0]})
    monkeypatch.setitem(sys.modules, "onnx", None)
    with pytest.raises(ImportError, match=r"pip install cgrad\[onnx\]"):
        cgrad.onnx.export(nn.ReLU(), rand(2))


def test_opset_versions_and_float64():
    # (not GELU: onnxruntime has no float64 Erf)
    model = nn.Sequential(nn.Linear(4, 5, dtype=cgrad.float64), nn.LayerNorm(5, dtype=cgrad.float64), nn.SiLU())
    x = np.random.default_rng(0).standard_normal((3, 4))
    for opset in (17, 18, 21):
        proto = check(model, x, np.random.default_rng(1).standard_normal((2, 4)), opset_version=opset)
        assert proto.opset_import[0].version == opset
        assert proto.graph.input[0].type.tensor_type.elem_type == onnx.TensorProto.DOUBLE

    class Means(nn.Module):  # ReduceMean takes its axes as an input from opset 18
        def forward(self, x):
            return x.mean(1)
    for opset in (17, 18):
        check(Means(), rand(2, 3, 4), rand(3, 3, 4, seed=1), opset_version=opset)


def test_attention_layers():
    cgrad.manual_seed(0)

    class SelfAttention(nn.Module):
        def __init__(self, need_weights):
            super().__init__()
            self.mha, self.need_weights = nn.MultiheadAttention(8, 2, batch_first=True), need_weights

        def forward(self, x):
            return self.mha(x, x, x, need_weights=self.need_weights)
    check(SelfAttention(False), rand(2, 5, 8), rand(3, 5, 8, seed=1))
    proto = check(SelfAttention(True), rand(2, 5, 8), rand(3, 5, 8, seed=1))  # and the averaged weights
    assert len(proto.graph.output) == 2
    encoder = nn.TransformerEncoder(nn.TransformerEncoderLayer(8, 2, 16, batch_first=True), 2, norm=nn.LayerNorm(8))
    check(encoder, rand(2, 5, 8), rand(4, 5, 8, seed=1))
    seq_first = nn.TransformerEncoderLayer(8, 2, 16)
    check(seq_first, rand(5, 2, 8), rand(5, 3, 8, seed=1), dynamic_axes={"input_0": {1: "b"}, "output_0": {1: "b"}})


@pytest.mark.parametrize("layer", [nn.RMSNorm(6), nn.RMSNorm((3, 6), eps=1e-3),
                                   nn.RMSNorm(6, elementwise_affine=False)], ids=repr)
def test_rms_norm(layer):
    with cgrad.no_grad():
        for p in layer.parameters():
            p.copy_(rand(*p.shape, seed=7))
    check(layer, rand(2, 3, 6) * 3, rand(4, 3, 6, seed=1))


def test_recurrent_cells():
    cgrad.manual_seed(0)
    for cell in (nn.RNNCell(3, 4), nn.RNNCell(3, 4, nonlinearity="relu", bias=False), nn.GRUCell(3, 4)):
        check(cell, rand(2, 3), rand(5, 3, seed=1))
        check(cell, (rand(2, 3), rand(2, 4, seed=2)), (rand(5, 3, seed=1), rand(5, 4, seed=3)))
    lstm = nn.LSTMCell(3, 4)

    class Step(nn.Module):
        def __init__(self):
            super().__init__()
            self.cell = lstm

        def forward(self, x, h, c):
            return self.cell(x, (h, c))
    check(Step(), (rand(2, 3), rand(2, 4, seed=1), rand(2, 4, seed=2)),
          (rand(3, 3, seed=3), rand(3, 4, seed=4), rand(3, 4, seed=5)))
    check(lstm, rand(3), dynamic_axes={})  # unbatched [in]


@pytest.mark.parametrize("layer, shape", [(nn.Upsample(scale_factor=2), (2, 3, 5)),
                                          (nn.Upsample(scale_factor=(2, 3)), (2, 3, 4, 5)),
                                          (nn.Upsample(size=(7, 9)), (2, 3, 4, 5)), (nn.Upsample(size=11), (1, 2, 4))],
                         ids=repr)
def test_upsample_nearest(layer, shape):
    check(layer, rand(*shape), rand(shape[0] + 1, *shape[1:], seed=1))


def test_functional_ops_in_a_custom_forward():
    w1 = cgrad.tensor(rand(4, 3, 2, seed=1))
    w2 = cgrad.tensor(rand(6, 2, 3, 2, seed=2))
    causal = cgrad.tensor(np.tril(np.ones((4, 4), dtype=bool)))

    class Functional(nn.Module):
        def forward(self, x):
            F = nn.functional
            y = F.conv1d(x, w1, stride=2, padding=1)                       # [N, 4, 4]
            z = F.conv2d(y.unsqueeze(1).repeat(1, 4, 1, 1), w2, groups=2, padding=(1, 0), dilation=(1, 1))
            s = y.masked_fill(causal, 0.0) + cgrad.where(causal, y, y * 2)  # constant masks
            return z.double().sum(1), s[:, [0, 2]]
    check(Functional(), rand(2, 3, 7), rand(5, 3, 7, seed=3))


def test_functional_norms_in_a_custom_forward():
    w, bias = cgrad.tensor(rand(3, 4, seed=1)), cgrad.tensor(rand(3, 4, seed=2))

    class Norms(nn.Module):
        def forward(self, x):
            F = nn.functional
            return (F.layer_norm(x, (3, 4), w, bias, 1e-3), F.layer_norm(x, (4,)), F.rms_norm(x, (4,), w[0]),
                    F.rms_norm(x, (3, 4), eps=1e-2))
    check(Norms(), rand(2, 3, 4) * 2 + 1, rand(5, 3, 4, seed=3))


def test_import_cgrad_imports_neither_onnx_nor_safetensors():
    from conftest import run_python
    run_python("import sys, cgrad; cgrad.onnx.export; assert not {'onnx', 'safetensors'} & set(sys.modules), sys.modules")


def test_functional_pooling_in_a_custom_forward():
    F = nn.functional

    class Pools(nn.Module):
        def forward(self, x):
            y = F.avg_pool2d(F.max_pool2d(x, 2, ceil_mode=True), kernel_size=3, stride=1, padding=1,
                             count_include_pad=False)
            z = F.max_pool1d(x.flatten(2), 3, stride=2, dilation=2)
            return y, z, F.adaptive_avg_pool2d(x, 1), F.adaptive_max_pool1d(x.flatten(2), 5), F.avg_pool1d(z, 2)
    check(Pools(), rand(2, 3, 5, 5), rand(4, 3, 5, 5, seed=1))

    class Indices(nn.Module):
        def forward(self, x):
            return F.max_pool2d(x, 2, return_indices=True)[0]
    with pytest.raises(cgrad.onnx.UnsupportedOperatorError, match=r"max_pool2d in Indices with return_indices"):
        cgrad.onnx.export(Indices(), rand(1, 1, 4, 4))
