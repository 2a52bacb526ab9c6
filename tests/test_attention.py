"""Attention: the fused scaled_dot_product_attention against a naive numpy reference (loops,
tests/op_table.py's _np_sdpa) and finite differences, against PyTorch when installed;
MultiheadAttention against PyTorch (outputs, every gradient, state_dict both ways, a
training trajectory); replay; the entropy per head; the error messages."""
import numpy as np
import pytest

import cgrad
from cgrad import nn
from cgrad.nn import functional as F
from cgrad.tensor import _generator
from op_table import _np_sdpa
from train_steps import assert_same, train_step

SDPA = F.scaled_dot_product_attention


def _draw(rng, *shapes, dtype=np.float64):
    return [rng.standard_normal(s).astype(dtype) for s in shapes]


# ---- the fused op against the numpy reference (no PyTorch needed) ----
CASES = {  # name: shapes of q, k, v, and keyword arguments (a mask as a numpy array)
    "plain": ([(2, 3, 4), (2, 5, 4), (2, 5, 3)], {}),
    "causal_square": ([(2, 2, 6, 4), (2, 2, 6, 4), (2, 2, 6, 4)], {"is_causal": True}),
    "causal_l_lt_s": ([(1, 3, 4), (1, 6, 4), (1, 6, 2)], {"is_causal": True}),
    "causal_l_gt_s": ([(1, 6, 4), (1, 3, 4), (1, 3, 2)], {"is_causal": True}),
    "t1_causal": ([(3, 1, 4), (3, 1, 4), (3, 1, 2)], {"is_causal": True}),
    "bool_mask_fully_masked_row": ([(2, 4, 3), (2, 5, 3), (2, 5, 3)],
                                   {"attn_mask": np.array([[1, 0, 1, 0, 1], [0, 0, 0, 0, 0], [1, 1, 1, 1, 1],
                                                           [0, 0, 0, 0, 1]], bool)}),
    "float_mask_broadcast": ([(2, 3, 4, 3), (2, 3, 5, 3), (2, 3, 5, 2)],
                             {"attn_mask": np.random.default_rng(9).standard_normal((3, 1, 5))}),
    "batch_broadcast_scale": ([(2, 3, 4, 3), (1, 3, 5, 3), (2, 1, 5, 2)], {"scale": 0.3}),
    "long_rows_chunked": ([(1, 200, 8), (1, 150, 8), (1, 150, 3)], {"is_causal": True}),  # rows in chunks
    # causal blocks go in chunks of 16 rows, the GEMMs of each over only the columns it sees: a partial last chunk
    "causal_partial_last_chunk": ([(2, 37, 5), (2, 37, 5), (2, 37, 3)], {"is_causal": True}),
}


def _kwargs(kw, dtype):
    out = dict(kw)
    if "attn_mask" in kw:
        m = kw["attn_mask"]
        out["attn_mask"] = cgrad.tensor(m if m.dtype == bool else m.astype(dtype))
    return out


@pytest.mark.parametrize("name", CASES)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_forward_matches_a_naive_numpy_reference(name, dtype, rng):
    shapes, kw = CASES[name]
    q, k, v = _draw(rng, *shapes)
    out = SDPA(*(cgrad.tensor(a.astype(dtype)) for a in (q, k, v)), **_kwargs(kw, dtype))
    ref = _np_sdpa(q, k, v, kw.get("attn_mask"), kw.get("is_causal", False), kw.get("scale"))
    assert out.dtype == dtype and out.shape == ref.shape
    np.testing.assert_allclose(out.numpy(), ref, rtol=1e-5 if dtype == np.float32 else 1e-12,
                               atol=1e-5 if dtype == np.float32 else 1e-12)


@pytest.mark.parametrize("name", CASES)
def test_gradients_match_finite_differences(name, rng):
    shapes, kw = CASES[name]
    if name == "long_rows_chunked":
        shapes = [(1, 70, 3), (1, 140, 3), (1, 140, 2)]  # still more than one chunk of rows: 8192 / 140
    arrays = _draw(rng, *shapes)
    mask = kw.get("attn_mask")
    if mask is not None and mask.dtype != bool:  # a float mask takes a gradient
        xs = [cgrad.tensor(a, requires_grad=True) for a in arrays + [mask]]
        rest = {k: v for k, v in kw.items() if k != "attn_mask"}
        assert cgrad.gradcheck(lambda q, k, v, m: SDPA(q, k, v, attn_mask=m, **rest), xs)
        return
    xs = [cgrad.tensor(a, requires_grad=True) for a in arrays]
    assert cgrad.gradcheck(lambda q, k, v: SDPA(q, k, v, **_kwargs(kw, np.float64)), xs)


@pytest.mark.parametrize("name", CASES)
def test_forward_and_gradients_of_q_k_v_match_pytorch(name, rng):
    torch = pytest.importorskip("torch")
    shapes, kw = CASES[name]
    arrays = _draw(rng, *shapes)
    tkw = dict(kw)
    if "attn_mask" in kw:
        tkw["attn_mask"] = torch.tensor(kw["attn_mask"])
    txs = [torch.tensor(a, requires_grad=True) for a in arrays]
    cxs = [cgrad.tensor(a, requires_grad=True) for a in arrays]
    tout, cout = torch.nn.functional.scaled_dot_product_attention(*txs, **tkw), SDPA(*cxs, **_kwargs(kw, np.float64))
    np.testing.assert_allclose(cout.numpy(), tout.detach().numpy(), rtol=1e-10, atol=1e-12)
    g = rng.standard_normal(tout.shape)
    (tout * torch.tensor(g)).sum().backward()
    (cout * cgrad.tensor(g)).sum().backward()
    for c, t, what in zip(cxs, txs, "qkv"):
        np.testing.assert_allclose(c.grad.numpy(), t.grad.numpy(), rtol=1e-9, atol=1e-11, err_msg=what)


def test_nanogpt_shapes_in_float32_match_pytorch(rng):
    torch = pytest.importorskip("torch")
    arrays = _draw(rng, *[(12, 4, 64, 32)] * 3, dtype=np.float32)
    txs = [torch.tensor(a, requires_grad=True) for a in arrays]
    cxs = [cgrad.tensor(a, requires_grad=True) for a in arrays]
    tout = torch.nn.functional.scaled_dot_product_attention(*txs, is_causal=True)
    cout = SDPA(*cxs, is_causal=True)
    np.testing.assert_allclose(cout.numpy(), tout.detach().numpy(), rtol=1e-4, atol=1e-5)
    g = rng.standard_normal(tout.shape).astype(np.float32)
    tout.backward(torch.tensor(g))
    cout.backward(cgrad.tensor(g))
    for c, t, what in zip(cxs, txs, "qkv"):
        np.testing.assert_allclose(c.grad.numpy(), t.grad.numpy(), rtol=1e-3, atol=1e-4, err_msg=what)


@pytest.mark.parametrize("name", CASES)
def test_the_avx512_softmax_rows_agree_with_the_generic_loop(name, rng):
    """float32 rows take an AVX-512 loop where the CPU has it (cg_skinny_isa); "off" runs the
    generic one (on a CPU without AVX-512 both runs are the generic loop). In both, a query
    row of NaN stays NaN (a fully masked row's zeros once caught it)."""
    from cgrad import _C
    shapes, kw = CASES[name]
    q, k, v = (a.astype(np.float32) for a in _draw(rng, *shapes))
    q[(0,) * (q.ndim - 1)] = np.nan
    outs, ents = [], []
    try:
        for isa in ("off", "best"):
            _C.skinny_isa(isa)
            a = _kwargs(kw, np.float32)
            ops = F._attention_operands(*(cgrad.tensor(x) for x in (q, k, v)))
            ent = _C.empty((int(np.prod(ops[0].shape[:-2])),), np.float32)
            mask = F._additive_mask(a.get("attn_mask"), ops[0])
            scale = a.get("scale", 1 / np.sqrt(q.shape[-1]))
            outs.append(_C.scaled_dot_product_attention(*ops, mask, kw.get("is_causal", False), scale, ent).numpy())
            ents.append(ent.numpy().copy())
    finally:
        _C.skinny_isa("best")
    for out in outs:
        assert np.all(np.isnan(out[(0,) * (q.ndim - 1)]))
    np.testing.assert_allclose(outs[1], outs[0], rtol=2e-6, atol=2e-7)
    np.testing.assert_allclose(ents[1], ents[0], rtol=2e-6, atol=2e-7)


def test_a_fully_masked_row_gives_zeros_and_no_gradient(rng):
    q, k, v = (cgrad.tensor(a, requires_grad=True) for a in _draw(rng, (3, 4), (5, 4), (5, 2)))
    mask = np.ones((3, 5), bool)
    mask[1] = False
    out = SDPA(q, k, v, attn_mask=cgrad.tensor(mask))
    assert np.all(out.numpy()[1] == 0) and np.all(np.isfinite(out.numpy()))
    out.sum().backward()
    assert np.all(q.grad.numpy()[1] == 0) and np.all(np.isfinite(k.grad.numpy()))


@pytest.mark.parametrize("shapes", [((2, 0, 4), (2, 5, 4), (2, 5, 3)), ((2, 3, 4), (2, 0, 4), (2, 0, 3)),
                                    ((0, 3, 4), (0, 5, 4), (0, 5, 3)), ((2, 3, 4), (2, 5, 4), (2, 5, 0))])
@pytest.mark.parametrize("causal", [False, True])
def test_empty_dims_give_empty_or_zero_results(shapes, causal, rng):
    xs = [cgrad.tensor(a, requires_grad=True) for a in _draw(rng, *shapes)]
    out = SDPA(*xs, is_causal=causal)
    assert out.shape == shapes[0][:-1] + shapes[2][-1:]
    assert np.all(out.numpy() == 0)  # no keys: zero rows, as PyTorch
    out.sum().backward()
    assert all(x.grad is None or np.all(x.grad.numpy() == 0) for x in xs[:2])


def test_a_zero_head_dim_averages_the_values(rng):
    q, k, v = (cgrad.tensor(a, requires_grad=True) for a in _draw(rng, (2, 3, 0), (2, 5, 0), (2, 5, 3)))
    out = SDPA(q, k, v)  # every score 0, whatever the default scale would be
    np.testing.assert_allclose(out.numpy(), np.broadcast_to(v.numpy().mean(1, keepdims=True), (2, 3, 3)))


def test_dropout_drops_the_weights_with_cgrads_generator(rng):
    q, k, v = _draw(rng, (2, 4, 3), (2, 5, 3), (2, 5, 2))
    cgrad.manual_seed(7)
    out = SDPA(cgrad.tensor(q), cgrad.tensor(k), cgrad.tensor(v), dropout_p=0.4)
    cgrad.manual_seed(7)
    keep = (_generator().random((2, 4, 5)) >= 0.4) / 0.6
    s = q @ k.transpose(0, 2, 1) / np.sqrt(3)
    p = np.exp(s - s.max(-1, keepdims=True))
    p /= p.sum(-1, keepdims=True)
    np.testing.assert_allclose(out.numpy(), (p * keep) @ v, rtol=1e-12)
    assert 0 < keep.mean() < 1 / 0.6  # some weights dropped, some kept


def test_a_replay_of_the_op_and_its_backward_equals_eager_bit_for_bit(rng):
    """The op alone (the training steps below replay it inside layers): q's gradient
    through a causal and a float-masked attention, compiled against eager."""
    k, v, m = _draw(rng, (2, 2, 7, 4), (2, 2, 7, 3), (7, 7), dtype=np.float32)
    leaves = [cgrad.tensor(k, requires_grad=True), cgrad.tensor(k, requires_grad=True)]

    def step(q, leaf):  # the leaf's gradient accumulates over the steps, in both
        q = cgrad.tensor(q) if not isinstance(q, cgrad.Tensor) else q
        out = SDPA(q * leaf, leaf, cgrad.tensor(v), is_causal=True) + SDPA(q, leaf, cgrad.tensor(v),
                                                                             attn_mask=cgrad.tensor(m))
        (out * out).sum().backward()
        return out

    compiled = cgrad.compile(lambda q: step(q, leaves[0]))
    for _ in range(3):
        q = _draw(rng, (2, 2, 7, 4), dtype=np.float32)[0]
        assert np.array_equal(compiled(q).numpy(), step(cgrad.tensor(q), leaves[1]).numpy())
        assert np.array_equal(leaves[0].grad.numpy(), leaves[1].grad.numpy())
    assert compiled.recordings == 1


def test_anomaly_mode_and_the_profiler_see_the_op(rng):
    q, k, v = (cgrad.tensor(a, requires_grad=True) for a in _draw(rng, (2, 3, 4), (2, 5, 4), (2, 5, 3)))
    with cgrad.profiler.profile() as prof:
        SDPA(q, k, v).sum().backward()
    assert "scaled_dot_product_attention" in prof.table(phase="forward")
    huge = np.full((2, 3, 4), 1e200)  # finite, but the scores overflow: the op makes the NaN
    with cgrad.detect_anomaly():
        with pytest.raises(RuntimeError, match="scaled_dot_product_attention"):
            SDPA(cgrad.tensor(huge, requires_grad=True), cgrad.tensor(np.full((2, 5, 4), 1e200)), v)


# ---- errors: the op and the shapes named ----
@pytest.mark.parametrize("shapes, kw, exc, match", [
    ([(2, 3, 4), (2, 5, 3), (2, 5, 3)], {}, ValueError, r"query \(2, 3, 4\), key \(2, 5, 3\)"),
    ([(2, 3, 4), (2, 5, 4), (2, 6, 3)], {}, ValueError, r"value \(2, 6, 3\)"),
    ([(2, 3, 4), (3, 5, 4), (3, 5, 3)], {}, ValueError, "batch dims"),
    ([(4,), (5, 4), (5, 3)], {}, ValueError, "at least 2 dims"),
    ([(2, 3, 4), (2, 5, 4), (2, 5, 3)], {"attn_mask": np.ones((4, 5))}, ValueError,
     r"attn_mask of shape \(4, 5\) cannot be broadcast to the attention scores' shape \(2, 3, 5\)"),
    ([(2, 3, 4), (2, 5, 4), (2, 5, 3)], {"attn_mask": np.ones((3, 5), np.int64)}, TypeError,
     "attn_mask dtype to be bool or float"),
    ([(2, 3, 4), (2, 5, 4), (2, 5, 3)], {"attn_mask": np.ones((3, 5), bool), "is_causal": True}, ValueError,
     "not both"),
])
def test_bad_arguments_are_named(shapes, kw, exc, match, rng):
    xs = [cgrad.tensor(a) for a in _draw(rng, *shapes)]
    if "attn_mask" in kw:
        kw = dict(kw, attn_mask=cgrad.tensor(kw["attn_mask"]))
    with pytest.raises(exc, match=match) as info:
        SDPA(*xs, **kw)
    assert "scaled_dot_product_attention" in str(info.value)


def test_multihead_attention_errors_name_the_shapes():
    with pytest.raises(ValueError, match="embed_dim must be divisible by num_heads, got embed_dim=10 and num_heads=3"):
        nn.MultiheadAttention(10, 3)
    with pytest.raises(NotImplementedError, match="add_bias_kv"):
        nn.MultiheadAttention(8, 2, add_bias_kv=True)
    m = nn.MultiheadAttention(8, 2)
    x = cgrad.randn(5, 3, 8)
    with pytest.raises(ValueError, match=r"attn_mask of shape \(4, 5\) should be one of \[\(5, 5\), \(6, 5, 5\)\]"):
        m(x, x, x, attn_mask=cgrad.tensor(np.zeros((4, 5), bool)))
    with pytest.raises(ValueError, match=r"expected key_padding_mask of shape \(3, 5\), got \(5, 3\)"):
        m(x, x, x, key_padding_mask=cgrad.tensor(np.zeros((5, 3), bool)))
    with pytest.raises(ValueError, match=r"embedding dimension of 8, but got query of shape \(5, 3, 6\)"):
        m(cgrad.randn(5, 3, 6), x, x)
    with pytest.raises(TypeError, match="only bool and floating types of attn_mask"):
        m(x, x, x, attn_mask=cgrad.tensor(np.zeros((5, 5), np.int64)))
    with pytest.raises(ValueError, match=r"do not match the query of shape \(5, 3, 8\)"):
        m(x, cgrad.randn(5, 2, 8), cgrad.randn(5, 2, 8))


# ---- the entropy per head ----
def _np_entropy(weights):
    """Mean over batch and query rows of -sum p log p, per head: weights (N, H, L, S)."""
    p = weights.astype(np.float64)
    plogp = np.where(p > 0, p * np.log(np.where(p > 0, p, 1)), 0)
    return -plogp.sum(-1).mean(axis=(0, 2))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_attention_entropy_matches_the_returned_weights(dtype, rng):
    m = nn.MultiheadAttention(8, 4, dtype=dtype)
    assert m.attention_entropy is None
    x = cgrad.tensor(rng.standard_normal((6, 3, 8)).astype(dtype) * 3)
    kpm = np.zeros((3, 6), bool)
    kpm[1, 2:] = True
    _, w = m(x, x, x, key_padding_mask=cgrad.tensor(kpm), average_attn_weights=False)
    expected = _np_entropy(w.numpy())
    assert expected.shape == (4,) and np.all(expected > 0)
    np.testing.assert_allclose(m.attention_entropy, expected, rtol=1e-5)
    m(x, x, x, key_padding_mask=cgrad.tensor(kpm), need_weights=False)  # the fused op's own
    np.testing.assert_allclose(m.attention_entropy, expected, rtol=1e-4 if dtype == np.float32 else 1e-10)


def test_dropout_in_training_draws_the_same_weights_with_and_without_need_weights(rng):
    m = nn.MultiheadAttention(8, 2, dropout=0.3, dtype=np.float64)
    x = cgrad.tensor(rng.standard_normal((5, 3, 8)))
    cgrad.manual_seed(11)
    out_w, w = m(x, x, x, average_attn_weights=False)
    ent_w = m.attention_entropy
    cgrad.manual_seed(11)
    out_f, none = m(x, x, x, need_weights=False)  # the composite path, which drops the same weights
    assert none is None
    np.testing.assert_allclose(out_f.numpy(), out_w.numpy(), rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(m.attention_entropy, ent_w, rtol=1e-12)
    assert np.any(w.numpy() == 0) and np.any(w.numpy().sum(-1) > 1.01)  # dropped, and the rest scaled
    m.eval()
    out_e, _ = m(x, x, x, need_weights=False)
    assert not np.allclose(out_e.numpy(), out_f.numpy())
    np.testing.assert_array_equal(m.attention_entropy, ent_w)  # evaluation leaves it as it was


def test_the_entropy_shows_a_collapsed_and_a_uniform_head():
    q = np.zeros((1, 2, 4, 3))
    q[0, 0] = 50.0  # head 0: one key wins everywhere
    k = np.zeros((1, 2, 6, 3))
    k[0, 0, 2] = 1.0
    ent = cgrad.zeros(2, dtype=np.float64)
    F._sdpa(cgrad.tensor(q), cgrad.tensor(k), cgrad.randn(1, 2, 6, 2).double(), None, 0.0, False, None, False, ent)
    assert ent.numpy()[0] < 1e-6 and np.isclose(ent.numpy()[1], np.log(6))


# ---- MultiheadAttention against PyTorch ----
def _torch_pair(torch, dtype, **kw):
    tm = torch.nn.MultiheadAttention(8, 2, dtype=torch.float64 if dtype == np.float64 else torch.float32, **kw)
    cm = nn.MultiheadAttention(8, 2, dtype=dtype, **kw)
    cm.load_state_dict({k: v.detach().numpy() for k, v in tm.state_dict().items()})
    return tm, cm


@pytest.mark.filterwarnings("ignore:Support for mismatched key_padding_mask")  # PyTorch's, on bool + float masks
@pytest.mark.parametrize("kw", [{}, {"batch_first": True}, {"kdim": 6, "vdim": 5}, {"bias": False}],
                         ids=["default", "batch_first", "kdim_vdim", "no_bias"])
@pytest.mark.parametrize("need_weights", [True, False])
def test_multihead_attention_outputs_and_gradients_match_pytorch(kw, need_weights, rng):
    torch = pytest.importorskip("torch")
    torch.manual_seed(0)
    tm, cm = _torch_pair(torch, np.float64, **kw)
    assert list(cm.state_dict()) == list(tm.state_dict())
    bf = kw.get("batch_first", False)

    def shp(n, d):
        return (3, n, d) if bf else (n, 3, d)
    x = rng.standard_normal(shp(4, 8))
    key, value = rng.standard_normal(shp(5, kw.get("kdim", 8))), rng.standard_normal(shp(5, kw.get("vdim", 8)))
    kpm = np.zeros((3, 5), bool)
    kpm[0, 1] = True
    am = rng.standard_normal((4, 5))
    tout, tw = tm(torch.tensor(x), torch.tensor(key), torch.tensor(value), key_padding_mask=torch.tensor(kpm),
                  attn_mask=torch.tensor(am), need_weights=need_weights)
    cout, cw = cm(cgrad.tensor(x), cgrad.tensor(key), cgrad.tensor(value), key_padding_mask=cgrad.tensor(kpm),
                  attn_mask=cgrad.tensor(am), need_weights=need_weights)
    np.testing.assert_allclose(cout.numpy(), tout.detach().numpy(), rtol=1e-10, atol=1e-12)
    assert (cw is None) == (tw is None)
    if cw is not None:
        np.testing.assert_allclose(cw.numpy(), tw.detach().numpy(), rtol=1e-10, atol=1e-12)
    g = rng.standard_normal(tout.shape)
    (tout * torch.tensor(g)).sum().backward()
    (cout * cgrad.tensor(g)).sum().backward()
    tparams = dict(tm.named_parameters())
    for name, p in cm.named_parameters():
        np.testing.assert_allclose(p.grad.numpy(), tparams[name].grad.numpy(), rtol=1e-9, atol=1e-12, err_msg=name)


def test_multihead_self_attention_unbatched_causal_and_per_head_weights_match_pytorch(rng):
    torch = pytest.importorskip("torch")
    torch.manual_seed(1)
    tm, cm = _torch_pair(torch, np.float64)
    x = rng.standard_normal((6, 8))
    causal = np.triu(np.ones((6, 6), bool), 1)  # True: masked out
    tout, tw = tm(*(torch.tensor(x),) * 3, attn_mask=torch.tensor(causal), average_attn_weights=False,
                  is_causal=True)
    cx = cgrad.tensor(x)
    cout, cw = cm(cx, cx, cx, attn_mask=cgrad.tensor(causal), average_attn_weights=False, is_causal=True)
    np.testing.assert_allclose(cout.numpy(), tout.detach().numpy(), rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(cw.numpy(), tw.detach().numpy(), rtol=1e-10, atol=1e-12)
    with pytest.raises(RuntimeError, match="need attn_mask"):
        cm(cx, cx, cx, is_causal=True)


def test_state_dict_round_trips_through_pytorch(rng):
    torch = pytest.importorskip("torch")
    cm = nn.MultiheadAttention(8, 2, kdim=6, vdim=5, dtype=np.float32)
    tm = torch.nn.MultiheadAttention(8, 2, kdim=6, vdim=5)
    tm.load_state_dict({k: torch.tensor(v.numpy()) for k, v in cm.state_dict().items()})
    x, k, v = (rng.standard_normal(s).astype(np.float32) for s in ((4, 2, 8), (5, 2, 6), (5, 2, 5)))
    np.testing.assert_array_equal(tm.state_dict()["k_proj_weight"].numpy(), cm.k_proj_weight.numpy())
    tout, _ = tm(torch.tensor(x), torch.tensor(k), torch.tensor(v))
    cout, _ = cm(cgrad.tensor(x), cgrad.tensor(k), cgrad.tensor(v))
    np.testing.assert_allclose(cout.numpy(), tout.detach().numpy(), rtol=1e-5, atol=1e-6)


def test_initialisation_follows_pytorch():
    m = nn.MultiheadAttention(64, 4)
    bound = np.sqrt(6 / (64 + 192))  # xavier_uniform_ over [3E, E]
    w = m.in_proj_weight.numpy()
    assert w.shape == (192, 64) and np.abs(w).max() <= bound and np.abs(w).max() > 0.9 * bound
    assert np.all(m.in_proj_bias.numpy() == 0) and np.all(m.out_proj.bias.numpy() == 0)
    assert np.abs(m.out_proj.weight.numpy()).max() <= 1 / 8  # Linear's U(+-1/sqrt(E))


class _Model:
    """An attention block and a head, the same in cgrad and PyTorch."""

    @staticmethod
    def make(lib, E=16, H=4, classes=3):
        class M(lib.nn.Module):
            def __init__(self):
                super().__init__()
                self.attn = lib.nn.MultiheadAttention(E, H, batch_first=True)
                self.head = lib.nn.Linear(E, classes)

            def forward(self, x):
                y, _ = self.attn(x, x, x, need_weights=False)
                return self.head((y + x).mean(1))
        return M()


def test_a_20_step_training_trajectory_matches_pytorch_in_float32(rng):
    torch = pytest.importorskip("torch")
    torch.manual_seed(3)
    tmodel, cmodel = _Model.make(torch), _Model.make(cgrad)
    cmodel.load_state_dict({k: v.detach().numpy() for k, v in tmodel.state_dict().items()})
    # SGD, not Adam: the key bias's gradient is 0 in exact arithmetic (it shifts each row's
    # scores by a constant), and Adam would turn both sides' rounding noise into full steps
    topt = torch.optim.SGD(tmodel.parameters(), lr=0.1, momentum=0.9)
    copt = cgrad.optim.SGD(cmodel.parameters(), lr=0.1, momentum=0.9)
    for _ in range(20):
        x = rng.standard_normal((4, 7, 16)).astype(np.float32)
        y = rng.integers(0, 3, 4)
        topt.zero_grad()
        tl = torch.nn.functional.cross_entropy(tmodel(torch.tensor(x)), torch.tensor(y))
        tl.backward()
        topt.step()
        copt.zero_grad()
        cl = F.cross_entropy(cmodel(cgrad.tensor(x)), y)
        cl.backward()
        copt.step()
        np.testing.assert_allclose(cl.item(), tl.item(), rtol=1e-5, atol=1e-6)
    tparams = dict(tmodel.named_parameters())
    for name, p in cmodel.named_parameters():
        np.testing.assert_allclose(p.numpy(), tparams[name].detach().numpy(), rtol=1e-5, atol=1e-5, err_msg=name)


def test_a_compiled_training_step_with_attention_equals_eager_bit_for_bit(rng):
    models = [_Model.make(cgrad), _Model.make(cgrad)]
    models[1].load_state_dict(models[0].state_dict())
    compiled, eager = (train_step(m, cgrad.optim.SGD(m.parameters(), lr=0.05, momentum=0.9)) for m in models)
    compiled = cgrad.compile(compiled)
    for _ in range(5):
        x = rng.standard_normal((4, 7, 16)).astype(np.float32)
        y = rng.integers(0, 3, 4)
        assert np.array_equal(compiled(x, y).numpy(), eager(cgrad.tensor(x), y).numpy())
        # the entropy buffer the replayed op writes follows the step too
        assert np.array_equal(models[0].attn.attention_entropy, models[1].attn.attention_entropy)
    assert compiled.recordings == 1
    assert_same(models[0], models[1])


# ---- the Transformer encoder ----
@pytest.mark.parametrize("kw", [{}, {"norm_first": True, "activation": "gelu", "batch_first": True}],
                         ids=["post_norm_relu", "pre_norm_gelu_batch_first"])
def test_transformer_encoder_layer_outputs_and_gradients_match_pytorch(kw, rng):
    torch = pytest.importorskip("torch")
    torch.manual_seed(2)
    tl = torch.nn.TransformerEncoderLayer(16, 4, 32, dropout=0.0, dtype=torch.float64, **kw)
    cl = nn.TransformerEncoderLayer(16, 4, 32, dropout=0.0, dtype=np.float64, **kw)
    assert list(cl.state_dict()) == list(tl.state_dict())
    cl.load_state_dict({k: v.detach().numpy() for k, v in tl.state_dict().items()})
    x = rng.standard_normal((3, 5, 16) if kw.get("batch_first") else (5, 3, 16))
    kpm = np.zeros((3, 5), bool)
    kpm[1, 3:] = True
    tx, cx = torch.tensor(x, requires_grad=True), cgrad.tensor(x, requires_grad=True)
    tout = tl(tx, src_key_padding_mask=torch.tensor(kpm))
    cout = cl(cx, src_key_padding_mask=cgrad.tensor(kpm))
    np.testing.assert_allclose(cout.numpy(), tout.detach().numpy(), rtol=1e-10, atol=1e-12)
    g = rng.standard_normal(tout.shape)
    (tout * torch.tensor(g)).sum().backward()
    (cout * cgrad.tensor(g)).sum().backward()
    np.testing.assert_allclose(cx.grad.numpy(), tx.grad.numpy(), rtol=1e-9, atol=1e-11)
    tparams = dict(tl.named_parameters())
    for name, p in cl.named_parameters():
        np.testing.assert_allclose(p.grad.numpy(), tparams[name].grad.numpy(), rtol=1e-8, atol=1e-11, err_msg=name)


def test_transformer_encoder_stacks_copies_and_matches_pytorch(rng):
    torch = pytest.importorskip("torch")
    torch.manual_seed(4)
    tl = torch.nn.TransformerEncoderLayer(8, 2, 16, dropout=0.0, dtype=torch.float64)
    te = torch.nn.TransformerEncoder(tl, 2, norm=torch.nn.LayerNorm(8, dtype=torch.float64),
                                     enable_nested_tensor=False)
    cl = nn.TransformerEncoderLayer(8, 2, 16, dropout=0.0, dtype=np.float64)
    ce = nn.TransformerEncoder(cl, 2, norm=nn.LayerNorm(8, dtype=np.float64))
    assert list(ce.state_dict()) == list(te.state_dict())
    assert ce.layers[0].linear1.weight is not ce.layers[1].linear1.weight
    assert np.array_equal(ce.layers[1].linear1.weight.numpy(), cl.linear1.weight.numpy())
    ce.load_state_dict({k: v.detach().numpy() for k, v in te.state_dict().items()})
    x = rng.standard_normal((6, 2, 8))
    causal = np.triu(np.ones((6, 6), bool), 1)
    tout = te(torch.tensor(x), mask=torch.tensor(causal), is_causal=True)
    cout = ce(cgrad.tensor(x), mask=cgrad.tensor(causal), is_causal=True)
    np.testing.assert_allclose(cout.numpy(), tout.detach().numpy(), rtol=1e-10, atol=1e-12)


def test_a_compiled_encoder_training_step_equals_eager_bit_for_bit(rng):
    def model():
        cgrad.manual_seed(0)
        return nn.Sequential(nn.TransformerEncoderLayer(8, 2, 16, dropout=0.0, batch_first=True), nn.Flatten(),
                             nn.Linear(40, 3))
    models = [model(), model()]
    compiled, eager = (train_step(m, cgrad.optim.Adam(m.parameters(), lr=1e-2)) for m in models)
    compiled = cgrad.compile(compiled)
    for _ in range(4):
        x = rng.standard_normal((3, 5, 8)).astype(np.float32)
        y = rng.integers(0, 3, 3)
        assert np.array_equal(compiled(x, y).numpy(), eager(cgrad.tensor(x), y).numpy())
    assert compiled.recordings == 1
    assert_same(models[0], models[1])
