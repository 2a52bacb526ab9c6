"""nn.Embedding and F.embedding (csrc/embedding.c): against naive loops written here
(always), PyTorch (when installed), and replay: a compiled training step through an
embedding equals eager steps bit for bit."""
import numpy as np
import pytest

import cgrad
from cgrad import nn
from cgrad.nn import functional as F
from train_steps import assert_same, train_step

DTYPES = [np.float32, np.float64]


# ---- naive references, one id at a time ----
def _naive_lookup(w, ids):
    out = np.empty(ids.shape + (w.shape[1],), w.dtype)
    for pos in np.ndindex(ids.shape):
        for j in range(w.shape[1]):
            out[pos + (j,)] = w[ids[pos], j]
    return out


def _naive_grad(w_shape, ids, g, padding_idx=None, scale_grad_by_freq=False):
    counts: dict = {}
    for pos in np.ndindex(ids.shape):
        counts[int(ids[pos])] = counts.get(int(ids[pos]), 0) + 1
    dw = np.zeros(w_shape)
    for pos in np.ndindex(ids.shape):
        r = int(ids[pos])
        if r == padding_idx:
            continue
        for j in range(w_shape[1]):
            dw[r, j] += g[pos + (j,)] / (counts[r] if scale_grad_by_freq else 1)
    return dw


def _naive_renorm(w, ids, max_norm, p):
    w = w.astype(np.float64).copy()
    for r in sorted(set(int(i) for i in ids.reshape(-1))):
        norm = max(abs(v) for v in w[r]) if p == float("inf") else sum(abs(v) ** p for v in w[r]) ** (1 / p)
        if norm > max_norm:
            w[r] *= max_norm / (norm + 1e-7)
    return w


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("ids_shape", [(6,), (2, 3), (2, 1, 4), ()], ids=str)
@pytest.mark.parametrize("options", [{}, {"padding_idx": 3}, {"scale_grad_by_freq": True},
                                     {"padding_idx": 0, "scale_grad_by_freq": True}], ids=str)
def test_lookup_and_gradient_match_the_naive_reference(ids_shape, options, dtype, rng):
    w = rng.standard_normal((5, 4)).astype(dtype)
    ids = rng.integers(0, 5, ids_shape)
    ids.reshape(-1)[:1] = 3  # a repeat and the padding row, when there are two ids or more
    if ids.size > 1:
        ids.reshape(-1)[1] = 3
    for id_dtype in (np.int64, np.int32):
        cw = cgrad.tensor(w, requires_grad=True)
        y = F.embedding(cgrad.tensor(ids.astype(id_dtype)), cw, **options)
        assert y.shape == ids_shape + (4,) and y.dtype == dtype
        assert np.array_equal(y.numpy(), _naive_lookup(w, ids))
        g = rng.standard_normal(y.shape)
        y.backward(g.astype(dtype))
        tol = 1e-6 if dtype == np.float32 else 1e-12
        np.testing.assert_allclose(cw.grad.numpy(), _naive_grad(w.shape, ids, g, **options), rtol=tol, atol=tol)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("max_norm, p", [(1.0, 2.0), (1.5, 1.0), (0.8, 3.0), (0.5, float("inf"))], ids=str)
def test_max_norm_renormalises_the_used_rows_in_place(max_norm, p, dtype, rng):
    w0 = (rng.standard_normal((6, 3)) * 2).astype(dtype)
    w0[4] *= 0.01  # a row under the limit stays as it is
    ids = np.array([[0, 4, 0], [2, 4, 5]])
    w = cgrad.tensor(w0, requires_grad=True)
    y = F.embedding(ids, w, max_norm=max_norm, norm_type=p)
    expected = _naive_renorm(w0, ids, max_norm, p)
    tol = 1e-6 if dtype == np.float32 else 1e-12
    np.testing.assert_allclose(w.numpy(), expected, rtol=tol, atol=tol)
    assert np.array_equal(w.numpy()[[1, 3]], w0[[1, 3]])  # rows not looked up are untouched
    np.testing.assert_allclose(y.numpy(), expected[ids], rtol=tol, atol=tol)


def test_layer_init_padding_row_repr_and_from_pretrained(rng):
    cgrad.manual_seed(0)
    e = nn.Embedding(2000, 16, padding_idx=-2)
    assert e.padding_idx == 1998 and e.weight.shape == (2000, 16) and e.weight.requires_grad
    w = e.weight.numpy()
    assert np.array_equal(w[1998], np.zeros(16))
    rest = np.delete(w, 1998, axis=0)
    assert abs(rest.mean()) < 0.02 and abs(rest.std() - 1) < 0.02  # N(0, 1)
    assert e.extra_repr() == "2000, 16, padding_idx=1998"
    assert nn.Embedding(3, 2, max_norm=1.0, scale_grad_by_freq=True).extra_repr() == \
        "3, 2, max_norm=1.0, scale_grad_by_freq=True"
    table = cgrad.tensor(rng.standard_normal((4, 3)))
    frozen = nn.Embedding.from_pretrained(table)
    assert not frozen.weight.requires_grad and frozen.num_embeddings == 4 and frozen.embedding_dim == 3
    assert np.array_equal(frozen(np.array([2, 0])).numpy(), table.numpy()[[2, 0]])
    assert nn.Embedding.from_pretrained(table, freeze=False, padding_idx=1).weight.requires_grad
    assert [k for k, _ in e.named_parameters()] == ["weight"]
    e.reset_parameters()
    assert np.array_equal(e.weight.numpy()[1998], np.zeros(16)) and e.weight.numpy().std() > 0.5
    assert nn.Embedding(3, 2, dtype=cgrad.float64).weight.dtype == np.float64


def test_the_taped_rule_equals_the_c_rule_and_is_differentiable(rng):
    ids = np.array([[1, 4, 1], [0, 4, 2]])
    for options in ({}, {"padding_idx": 4}, {"padding_idx": 1, "scale_grad_by_freq": True}):
        w = cgrad.tensor(rng.standard_normal((5, 3)), requires_grad=True)
        g = rng.standard_normal((2, 3, 3))
        F.embedding(ids, w, **options).backward(g)
        (taped,) = cgrad.autograd.grad(F.embedding(ids, w, **options), [w], cgrad.tensor(g), create_graph=True)
        np.testing.assert_allclose(taped.numpy(), w.grad.numpy(), rtol=1e-12)
        np.testing.assert_allclose(w.grad.numpy(), _naive_grad((5, 3), ids, g, **options), rtol=1e-12)
    w = cgrad.tensor(rng.standard_normal((5, 3)), requires_grad=True)
    assert cgrad.gradgradcheck(lambda w: F.embedding(ids, w) ** 3, [w])


def test_errors_name_the_op_the_id_and_the_table():
    w = cgrad.tensor(np.ones((4, 3), np.float32), requires_grad=True)
    with pytest.raises(IndexError, match=r"embedding: index 7 at position 2 of the ids of shape \(2, 2\) is out of "
                                         r"range for the weight of shape \(4, 3\) \(ids must be in \[0, 4\)\)"):
        F.embedding(np.array([[0, 1], [7, 2]]), w)
    with pytest.raises(IndexError, match=r"embedding: index -1 at position 0"):
        nn.Embedding(4, 3)(cgrad.tensor([-1]))
    with pytest.raises(TypeError, match=r"embedding: the ids must be an integer tensor .* not float32"):
        F.embedding(cgrad.tensor([0.0, 1.0]), w)
    with pytest.raises(ValueError, match=r"embedding: padding_idx 4 must be within num_embeddings .*\(4, 3\)"):
        F.embedding(np.array([0]), w, padding_idx=4)
    with pytest.raises(ValueError, match=r"Embedding: padding_idx \(-5\) must be within num_embeddings \(4\)"):
        nn.Embedding(4, 3, padding_idx=-5)
    with pytest.raises(ValueError, match=r"embedding: the weight must be 2-D .* got shape \(4,\)"):
        F.embedding(np.array([0]), cgrad.ones(4))
    with pytest.raises(ValueError, match=r"Embedding: _weight of shape \(2, 3\) does not match"):
        nn.Embedding(4, 3, _weight=cgrad.ones((2, 3)))
    with pytest.raises(ValueError, match=r"embedding: norm_type must be positive"):
        F.embedding(np.array([0]), w, max_norm=1.0, norm_type=0.0)
    with pytest.raises(ValueError, match=r"from_pretrained: embeddings must be 2-D"):
        nn.Embedding.from_pretrained(cgrad.ones(3))


# ---- replay ----
def _names_mlp(dtype, seed=0, padding_idx=None):
    cgrad.manual_seed(seed)

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.emb = nn.Embedding(27, 10, padding_idx=padding_idx)
            self.ln = nn.LayerNorm(30)
            self.l1, self.l2 = nn.Linear(30, 20), nn.Linear(20, 27)

        def forward(self, ids):
            return self.l2(self.l1(self.ln(self.emb(ids).reshape(ids.shape[0], 30))).tanh())
    return Net().to(dtype)


@pytest.mark.parametrize("dtype", DTYPES)
def test_a_replayed_training_step_equals_eager_bit_for_bit(dtype, rng):
    models = [_names_mlp(dtype, padding_idx=0), _names_mlp(dtype, padding_idx=0)]
    compiled, eager = (train_step(m, cgrad.optim.SGD(m.parameters(), lr=0.1, momentum=0.9)) for m in models)
    compiled = cgrad.compile(compiled)
    for _ in range(6):
        x, y = rng.integers(0, 27, (8, 3)), rng.integers(0, 27, 8)
        assert np.array_equal(compiled(x, y).numpy(), eager(cgrad.tensor(x), y).numpy())
    assert compiled.recordings == 1
    assert_same(models[0], models[1])
    assert np.array_equal(models[0].emb.weight.numpy()[0], np.zeros(10))  # padding: no gradient, never moves
    with pytest.raises(IndexError, match=r"compile: embedding: index 27 at position 1 is out of range \[0, 27\)"):
        compiled(np.array([[0, 27, 1]] * 8), np.zeros(8, np.int64))


def test_a_replayed_step_renormalises_as_eager(rng):
    def make():
        cgrad.manual_seed(1)
        return nn.Sequential(nn.Embedding(9, 4, max_norm=1.0), nn.Flatten(), nn.Linear(8, 3))
    models = [make(), make()]
    compiled, eager = (train_step(m, cgrad.optim.SGD(m.parameters(), lr=0.5)) for m in models)
    compiled = cgrad.compile(compiled)
    for _ in range(4):
        x, y = rng.integers(0, 9, (5, 2)), rng.integers(0, 3, 5)
        assert np.array_equal(compiled(x, y).numpy(), eager(cgrad.tensor(x), y).numpy())
    assert_same(models[0], models[1])


# ---- PyTorch ----
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("options", [{}, {"padding_idx": 2}, {"scale_grad_by_freq": True}, {"max_norm": 1.2},
                                     {"max_norm": 2.0, "norm_type": 1.0, "padding_idx": -1}], ids=str)
def test_agrees_with_pytorch_and_state_dicts_load_both_ways(options, dtype, rng):
    torch = pytest.importorskip("torch")
    tdt = torch.float32 if dtype == np.float32 else torch.float64
    theirs = torch.nn.Embedding(7, 5, **options).to(tdt)
    ours = nn.Embedding(7, 5, **options).to(dtype)
    ours.load_state_dict(theirs.state_dict())  # PyTorch -> cgrad
    ids = rng.integers(0, 7, (3, 4))
    ids[0, :2] = 2
    g = rng.standard_normal((3, 4, 5)).astype(dtype)
    yo, yt = ours(cgrad.tensor(ids)), theirs(torch.tensor(ids))
    yo.backward(g), yt.backward(torch.tensor(g))
    # max_norm: PyTorch renormalises in the table's dtype, cgrad in double (the last bit may differ)
    np.testing.assert_allclose(yo.numpy(), yt.detach().numpy(), rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(ours.weight.grad.numpy(), theirs.weight.grad.numpy(), rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(ours.weight.numpy(), theirs.weight.detach().numpy(), rtol=1e-6, atol=1e-7)
    back = torch.nn.Embedding(7, 5, **options).to(tdt)
    back.load_state_dict({k: torch.from_numpy(v.numpy().copy()) for k, v in ours.state_dict().items()})
    assert torch.equal(back.weight, torch.from_numpy(ours.weight.numpy()))
    assert ours.extra_repr() == theirs.extra_repr()
