"""Integer and bool tensors, type promotion, and the PyTorch idioms built on them. Each
idiom runs on cgrad and, when it is installed, on PyTorch, against the same fixed
expectations (worked out by hand or with numpy, never by cgrad)."""
import numpy as np
import pytest

import cgrad
from cgrad.nn import functional as cF

try:
    import torch
except ImportError:  # PyTorch is an optional oracle
    torch = None
LIBS = [cgrad] + ([torch] if torch is not None else [])
IDS = ["cgrad"] + (["torch"] if torch is not None else [])


def _np(t):
    return t.detach().numpy() if hasattr(t, "detach") else np.asarray(t)


def _name(dtype):
    """'int64' for cgrad's numpy dtype and torch.int64 alike."""
    return str(dtype).replace("torch.", "")


# ---------------------------------------------------------------- creation infers dtypes

@pytest.mark.parametrize("lib", LIBS, ids=IDS)
def test_creation_infers_pytorchs_dtypes(lib):
    cases = [(lib.tensor([1, 2, 3]), "int64"), (lib.tensor([1.0, 2.0]), "float32"),
             (lib.tensor([1, 2.5]), "float32"), (lib.tensor([True, False]), "bool"),
             (lib.tensor(np.arange(3, dtype=np.int32)), "int32"), (lib.tensor(np.ones(2)), "float64"),
             (lib.arange(5), "int64"), (lib.arange(0, 1, 0.25), "float32"), (lib.full((2,), 7), "int64"),
             (lib.full((2,), 7.0), "float32"), (lib.full((2,), True), "bool"), (lib.zeros(2), "float32"),
             (lib.randint(0, 10, (3,)), "int64"), (lib.randperm(4), "int64"), (lib.Tensor([1, 2]), "float32"),
             (lib.zeros(2, dtype=lib.long), "int64"), (lib.ones(2, dtype=lib.int), "int32"),
             (lib.ones(2, dtype=lib.bool), "bool"), (lib.ones(2, dtype=lib.double), "float64")]
    assert [_name(t.dtype) for t, _ in cases] == [want for _, want in cases]


@pytest.mark.parametrize("lib", LIBS, ids=IDS)
def test_conversions(lib):
    x = lib.tensor([1.7, -1.7, 0.0])
    assert _np(x.long()).tolist() == [1, -1, 0]  # truncation toward zero
    assert _np(x.int()).tolist() == [1, -1, 0] and _name(x.int().dtype) == "int32"
    assert _np(x.bool()).tolist() == [True, True, False]
    assert _name(x.type(lib.float64).dtype) == "float64" and _name(x.to(lib.int64).dtype) == "int64"
    assert x.type() == "torch.FloatTensor" and x.long().type() == "torch.LongTensor"
    assert _name(x.type("torch.DoubleTensor").dtype) == "float64"
    assert lib.tensor([3]).item() == 3 and isinstance(lib.tensor([3]).item(), int)
    assert lib.tensor(True).item() is True
    assert x.is_floating_point() and not x.long().is_floating_point()


# ---------------------------------------------------------------- promotion

PROMOTION = [  # (a dtype, a dims, b dtype, b dims) -> result, PyTorch's table
    ("int64", 1, "float32", 1, "float32"), ("float32", 1, "float64", 1, "float64"),
    ("int32", 1, "int64", 1, "int64"), ("bool", 1, "int32", 1, "int32"), ("bool", 1, "float64", 1, "float64"),
    ("uint8", 1, "int64", 1, "int64"), ("float32", 1, "float64", 0, "float32"),  # 0-dim, same kind
    ("int64", 1, "float64", 0, "float64"),  # 0-dim of a higher kind decides
    ("int32", 1, "int64", 0, "int32"),
]


@pytest.mark.parametrize("lib", LIBS, ids=IDS)
@pytest.mark.parametrize("a_dt, a_nd, b_dt, b_nd, want", PROMOTION)
def test_promotion_table(lib, a_dt, a_nd, b_dt, b_nd, want):
    a = lib.ones((2,) * a_nd, dtype=getattr(lib, a_dt))
    b = lib.ones((2,) * b_nd, dtype=getattr(lib, b_dt))
    assert _name((a + b).dtype) == want and _name((b * a).dtype) == want


@pytest.mark.parametrize("lib", LIBS, ids=IDS)
def test_python_numbers_do_not_widen_a_tensor(lib):
    i, f = lib.tensor([1, 2]), lib.tensor([1.0, 2.0])
    assert [_name(t.dtype) for t in (i * 2, i * 2.5, i / 2, f * 2, 2 ** i, i + True, lib.tensor([True]) + 1)] == \
        ["int64", "float32", "float32", "float32", "int64", "int64", "int64"]
    assert _np(i * 2.5).tolist() == [2.5, 5.0] and _np(i / 2).tolist() == [0.5, 1.0]
    assert _np(lib.tensor([7, -7]) // 2).tolist() == [3, -4] and _np(lib.tensor([7, -7]) % 3).tolist() == [1, 2]


@pytest.mark.parametrize("lib", LIBS, ids=IDS)
def test_gradient_flows_through_promotion(lib):
    a = lib.tensor([1.0, 2.0], requires_grad=True)                       # float32
    b = lib.tensor([3.0, 4.0], dtype=lib.float64, requires_grad=True)
    out = a * b
    assert _name(out.dtype) == "float64"
    out.sum().backward()
    assert _name(a.grad.dtype) == "float32" and _np(a.grad).tolist() == [3.0, 4.0]
    assert _np(b.grad).tolist() == [1.0, 2.0]
    c = lib.tensor([1.0, 2.0], requires_grad=True)
    (c * lib.tensor([2, 3])).sum().backward()  # int operand: a constant
    assert _np(c.grad).tolist() == [2.0, 3.0]
    d = lib.tensor([1.0, 2.0], requires_grad=True)
    d.double().pow(2).sum().backward()  # .double() stays in the graph
    assert _np(d.grad).tolist() == [2.0, 4.0]


def test_a_float64_leaf_through_float32_gets_a_float64_gradient():
    # finite differences cannot see through float32 rounding; the rule is d(cast x) = g, converted
    x = cgrad.tensor([0.3, -1.2], dtype=cgrad.float64, requires_grad=True)
    (x.float() * cgrad.tensor([2.0, -3.0])).sum().backward()
    assert x.grad.dtype == cgrad.float64 and x.grad.numpy().tolist() == [2.0, -3.0]


# ---------------------------------------------------------------- integer tensors index

@pytest.mark.parametrize("lib", LIBS, ids=IDS)
def test_embedding_by_indexing_and_picking_probabilities(lib):
    C = lib.tensor(np.arange(12.0).reshape(4, 3), requires_grad=True)
    X = lib.tensor([[0, 3], [3, 3]])
    emb = C[X]                                   # makemore's C[X]
    assert tuple(emb.shape) == (2, 2, 3)
    emb.sum().backward()
    assert _np(C.grad)[:, 0].tolist() == [1.0, 0.0, 0.0, 3.0]  # repeated ids add up
    probs = lib.tensor([[0.1, 0.9], [0.7, 0.3], [0.5, 0.5]])
    ys = lib.tensor([1, 0, 1])
    np.testing.assert_allclose(_np(probs[lib.arange(3), ys]), [0.9, 0.7, 0.5], rtol=1e-6)
    assert ["a", "b", "c"][lib.tensor(2)] == "c"


@pytest.mark.parametrize("lib", LIBS, ids=IDS)
def test_accuracy_from_comparisons(lib):
    logits = lib.tensor([[2.0, 1.0, 0.0], [0.0, 3.0, 1.0], [1.0, 0.0, 5.0], [4.0, 0.0, 1.0]])
    y = lib.tensor([0, 1, 1, 0])
    correct = logits.argmax(1) == y
    assert _name(correct.dtype) == "bool" and _np(correct).tolist() == [True, True, False, True]
    assert (logits.argmax(1) == y).float().mean().item() == 0.75
    assert (logits.argmax(dim=1) == y).sum().item() == 3
    assert _name((logits > 1).sum().dtype) == "int64"
    mask = logits > 1.5
    assert _np(logits[mask]).tolist() == [2.0, 3.0, 5.0, 4.0]
    assert bool((y >= 0).all()) and not bool((y > 1).any())
    assert _np(y.eq(0) | y.eq(1)).all() and _np(~(y == 0)).tolist() == [False, True, True, False]


@pytest.mark.parametrize("lib", LIBS, ids=IDS)
def test_integer_arithmetic_and_reductions(lib):
    a = lib.tensor([[3, -1], [2, 5]])
    assert _np(a + a).tolist() == [[6, -2], [4, 10]] and _np(a * a).tolist() == [[9, 1], [4, 25]]
    assert a.sum().item() == 9 and _np(a.sum(0)).tolist() == [5, 4] and _name(a.sum().dtype) == "int64"
    assert a.max().item() == 5 and a.min().item() == -1 and _np(a.argmax(0)).tolist() == [0, 1]
    assert _np(a.abs()).tolist() == [[3, 1], [2, 5]] and _np(-a).tolist() == [[-3, 1], [-2, -5]]
    assert _np(a.cumsum(1)).tolist() == [[3, 2], [2, 7]] and _np(a.t()).tolist() == [[3, 2], [-1, 5]]
    assert _np(a.float().mean()).item() == 2.25
    assert _np(a @ a).tolist() == [[7, -8], [16, 23]]
    with pytest.raises(RuntimeError):
        a.mean()  # PyTorch: mean needs a floating point tensor


@pytest.mark.parametrize("lib", LIBS, ids=IDS)
def test_max_with_dim_topk_and_sort(lib):
    x = lib.tensor([[1.0, 5.0, 3.0], [4.0, 2.0, 6.0]], requires_grad=True)
    values, indices = x.max(dim=1)
    assert _np(values).tolist() == [5.0, 6.0] and _np(indices).tolist() == [1, 2]
    values.sum().backward()
    assert _np(x.grad).tolist() == [[0, 1, 0], [0, 0, 1]]  # to the arg-max: the max gate routes
    m = x.min(0, keepdim=True)
    assert _np(m.values).tolist() == [[1.0, 2.0, 3.0]] and _np(m.indices).tolist() == [[0, 1, 0]]
    top = x.topk(2, dim=1)
    assert _np(top.values).tolist() == [[5.0, 3.0], [6.0, 4.0]] and _np(top.indices).tolist() == [[1, 2], [2, 0]]
    s = x.sort(dim=1, descending=True)
    assert _np(s.values).tolist() == [[5.0, 3.0, 1.0], [6.0, 4.0, 2.0]]
    assert _np(x.argsort(dim=0)).tolist() == [[0, 1, 0], [1, 0, 1]]
    assert _np(lib.max(x, lib.tensor(4.0))).tolist() == [[4.0, 5.0, 4.0], [4.0, 4.0, 6.0]]


@pytest.mark.parametrize("lib", LIBS, ids=IDS)
def test_gather_scatter_add_index_select_one_hot(lib):
    x = lib.tensor([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]], requires_grad=True)
    idx = lib.tensor([[2, 2], [0, 1]])
    g = x.gather(1, idx)
    assert _np(g).tolist() == [[3.0, 3.0], [4.0, 5.0]]
    g.sum().backward()
    assert _np(x.grad).tolist() == [[0, 0, 2], [1, 1, 0]]
    base = lib.zeros(2, 3)
    out = base.scatter_add(1, idx, lib.ones(2, 2))
    assert _np(out).tolist() == [[0, 0, 2], [1, 1, 0]]
    assert _np(x.index_select(1, lib.tensor([2, 0]))).tolist() == [[3.0, 1.0], [6.0, 4.0]]
    assert _np(x.masked_fill(x > 4, 0.0)).tolist() == [[1, 2, 3], [4, 0, 0]]
    F = cF if lib is cgrad else torch.nn.functional
    oh = F.one_hot(lib.tensor([0, 2, 1]), 3)
    assert _name(oh.dtype) == "int64" and _np(oh).tolist() == [[1, 0, 0], [0, 0, 1], [0, 1, 0]]


@pytest.mark.parametrize("lib", LIBS, ids=IDS)
def test_cross_entropy_takes_integer_targets(lib):
    F = cF if lib is cgrad else torch.nn.functional
    logits = lib.tensor([[2.0, 0.0], [0.0, 2.0]], requires_grad=True)
    loss = F.cross_entropy(logits, lib.tensor([0, 0]))
    np.testing.assert_allclose(loss.item(), (np.log1p(np.exp(-2)) + np.log1p(np.exp(2))) / 2, rtol=1e-6)


# ---------------------------------------------------------------- random functions

@pytest.mark.parametrize("lib", LIBS, ids=IDS)
def test_random_functions_shapes_ranges_and_generators(lib):
    g = lib.Generator().manual_seed(3)
    r = lib.randint(2, 5, (1000,), generator=g)
    assert int(r.min()) == 2 and int(r.max()) == 4
    assert sorted(_np(lib.randperm(6, generator=g)).tolist()) == list(range(6))
    n = lib.normal(2.0, 0.5, (4000,), generator=g)
    assert abs(n.mean().item() - 2.0) < 0.05 and abs(n.std().item() - 0.5) < 0.05
    b = lib.bernoulli(lib.full((4000,), 0.25), generator=g)
    assert abs(b.mean().item() - 0.25) < 0.03
    m = lib.multinomial(lib.tensor([0.0, 1.0, 3.0]), 4000, replacement=True, generator=g)
    counts = np.bincount(_np(m), minlength=3)
    assert counts[0] == 0 and abs(counts[2] / 4000 - 0.75) < 0.03
    w = lib.multinomial(lib.tensor([[1.0, 1.0, 1.0, 1.0]]), 4, generator=g)
    assert sorted(_np(w)[0].tolist()) == [0, 1, 2, 3]  # without replacement: each once
    # the same seed, the same draws
    a1 = lib.randint(0, 100, (5,), generator=lib.Generator().manual_seed(9))
    a2 = lib.randint(0, 100, (5,), generator=lib.Generator().manual_seed(9))
    assert _np(a1).tolist() == _np(a2).tolist()


# ---------------------------------------------------------------- bad input

@pytest.mark.parametrize("lib", LIBS, ids=IDS)
def test_integer_tensors_cannot_require_grad(lib):
    with pytest.raises(RuntimeError, match="(?i)only tensors of floating point"):
        lib.tensor([1, 2], requires_grad=True)
    with pytest.raises(RuntimeError, match="(?i)only tensors of floating point"):
        lib.arange(3).requires_grad_()


@pytest.mark.parametrize("lib", LIBS, ids=IDS)
def test_out_of_range_indices_raise(lib):
    x = lib.zeros(3, 2)
    with pytest.raises(IndexError):
        x[lib.tensor([0, 3])]
    with pytest.raises((IndexError, RuntimeError)):
        x.gather(0, lib.tensor([[5, 0]]))


def test_messages_name_the_op_and_shapes():
    with pytest.raises(TypeError, match=r"softmax: needs a float32 or float64 tensor, got int64 of shape \(2,\)"):
        cgrad.tensor([1, 2]).softmax(-1)
    with pytest.raises(IndexError, match=r"gather: an index is out of bounds for dim 0 of size 3 \(shape \(3, 2\)\)"):
        cgrad.zeros(3, 2).gather(0, cgrad.tensor([[5, 0]]))
    with pytest.raises(IndexError, match=r"gather: index 3 is out of bounds for axis 0 of shape \(3,\)"):
        cgrad.arange(3)[cgrad.tensor([3])]
    with pytest.raises(RuntimeError, match="fill_: a leaf tensor that requires grad"):
        cgrad.zeros(2, requires_grad=True).fill_(1.0)
    with pytest.raises(RuntimeError, match="cannot be written into a int64 tensor in place"):
        t = cgrad.tensor([1, 2])
        t += 0.5
    with pytest.raises(TypeError, match="cgrad tensors are float32, float64, int64, int32, bool or uint8"):
        cgrad.zeros(2, dtype=np.complex64)


def test_integer_ops_are_refused_inside_a_compiled_step():
    @cgrad.compile
    def step(x):
        return (x.argmax(0) == 1).float()
    with pytest.raises(RuntimeError, match="cgrad.compile"):
        step(cgrad.tensor([1.0, 3.0]))


def test_integer_step_inputs_are_read_again_at_each_replay():
    w = cgrad.tensor([[0.5, -0.5], [1.0, 2.0]], requires_grad=True)

    @cgrad.compile
    def step(x, y):
        loss = cF.cross_entropy(x @ w, y)
        loss.backward()
        return loss
    x = cgrad.tensor([[1.0, 0.0], [0.0, 1.0]])
    step(x, cgrad.tensor([0, 1]))
    w.grad = None
    replayed = step(x, cgrad.tensor([1, 0])).item()
    w.grad = None
    eager = cF.cross_entropy(x @ w, cgrad.tensor([1, 0])).item()
    assert replayed == eager


def test_int_storage_conversions_in_the_core():
    big = np.array([np.nan, np.inf, -np.inf, 3e10, -2.5, 255.9, 300.0])
    assert cgrad.tensor(big).long().numpy().tolist()[:2] == [0, np.iinfo(np.int64).max]  # NaN 0, saturating
    assert cgrad.tensor(big).int().numpy().tolist()[3] == np.iinfo(np.int32).max
    assert cgrad.tensor(big).byte().numpy().tolist()[4:] == [0, 255, 255]
    t = cgrad.zeros(3, dtype=cgrad.int32)
    t.fill_(7)
    assert t.numpy().tolist() == [7, 7, 7]
    t.copy_(np.array([1.9, -1.9, 0.0]))
    assert t.numpy().tolist() == [1, -1, 0]


# ---------------------------------------------------------------- found in review

@pytest.mark.parametrize("lib", LIBS, ids=IDS)
def test_integer_division_is_exact_and_refuses_zero(lib):
    big = lib.arange(16777215, 16777222)
    assert _np(big % 2).tolist() == [1, 0, 1, 0, 1, 0, 1] and _np(big // 1).tolist() == list(range(16777215, 16777222))
    assert _np(lib.tensor([2 ** 60 + 1]) % 7).tolist() == [(2 ** 60 + 1) % 7]
    assert _np(lib.tensor([7, -7]).div(2, rounding_mode="trunc")).tolist() == [3, -3]
    assert _np(lib.tensor([7, -7]).fmod(3)).tolist() == [1, -1]
    assert _np(7 // lib.tensor([2, -2])).tolist() == [3, -4] and _np(7 % lib.tensor([2, -3])).tolist() == [1, -2]
    with pytest.raises(RuntimeError, match="ZeroDivisionError"):
        lib.tensor([1, 2]) // 0


@pytest.mark.parametrize("lib", LIBS, ids=IDS)
def test_in_place_updates_across_dtypes(lib):
    a = lib.tensor([1.0, 2.0])
    a += lib.tensor([1.0, 1.0], dtype=lib.float64)  # same kind: written back in a's dtype
    a.add_(1)
    a.add_(lib.tensor([1, 1]), alpha=2)
    assert _name(a.dtype) == "float32" and _np(a).tolist() == [5.0, 6.0]
    m = lib.zeros(2, 3)
    m.add_(lib.ones(3))
    m.copy_(m + lib.tensor([1.0, 2.0, 3.0]))
    assert _np(m).tolist() == [[2.0, 3.0, 4.0]] * 2
    i = lib.tensor([1, 2])
    with pytest.raises(RuntimeError):
        i += 0.5  # a float result cannot be written into an int64 tensor
    with pytest.raises(RuntimeError):
        i.add_(1.5)
    with pytest.raises(RuntimeError):
        lib.zeros(2, 3).copy_(lib.zeros(3, 2))


@pytest.mark.parametrize("lib", LIBS, ids=IDS)
def test_narrow_integers_wrap_as_pytorch(lib):
    u = lib.tensor([1, 2, 3], dtype=lib.uint8)
    assert _np(u - 5).tolist() == [252, 253, 254] and _np(u * 300).tolist() == [44, 88, 132]
    assert _np(lib.zeros(2, dtype=lib.uint8).fill_(-1)).tolist() == [255, 255]


@pytest.mark.parametrize("lib", LIBS, ids=IDS)
def test_scalars_in_where_maximum_and_creation_edge_cases(lib):
    i = lib.tensor([1, 2, 3])
    w = lib.where(i > 1, i, 0.5)
    assert _name(w.dtype) == "float32" and _np(w).tolist() == [0.5, 2.0, 3.0]
    assert _name(lib.where(i > 1, 1, 0).dtype) == "int64"
    assert tuple(lib.randint(10, (3,)).shape) == (3,)
    assert _name(lib.arange(lib.tensor(3)).dtype) == "int64"
    assert _name(lib.tensor(np.float64(2.5)).dtype) == "float64" and _name(lib.tensor(np.int32(3)).dtype) == "int32"
    assert tuple(lib.Tensor().shape) == (0,)
    v, ix = lib.tensor(3.0).max(0)
    assert v.item() == 3.0 and ix.item() == 0
    with pytest.raises((TypeError, RuntimeError)):
        lib.randn(2, dtype=lib.int64)
    with pytest.raises((TypeError, RuntimeError, NotImplementedError)):
        lib.zeros(2, dtype=lib.int64).uniform_()


@pytest.mark.parametrize("lib", LIBS, ids=IDS)
def test_an_index_array_after_slices_and_integers(lib):
    a = np.arange(24.0).reshape(2, 3, 4)
    x = lib.tensor(a, requires_grad=True)
    assert _np(x[:, [2, 0]]).tolist() == a[:, [2, 0]].tolist()
    assert _np(x[1, [2, 0], 1:3]).tolist() == a[1, [2, 0], 1:3].tolist()
    assert _np(x[:, :, lib.tensor([3, 1, 1])]).tolist() == a[:, :, [3, 1, 1]].tolist()
    x[:, [2, 0, 2]].sum().backward()
    assert _np(x.grad)[0].tolist() == [[1.0] * 4, [0.0] * 4, [2.0] * 4]


@pytest.mark.parametrize("lib", LIBS, ids=IDS)
def test_a_custom_function_with_a_bool_output_has_no_gradient(lib):
    class Positive(lib.autograd.Function):
        @staticmethod
        def forward(ctx, x):
            return x > 0

        @staticmethod
        def backward(ctx, g):
            return g

    y = Positive.apply(lib.randn(100000, requires_grad=True))
    assert not y.requires_grad
    with pytest.raises(RuntimeError):
        y.backward(lib.ones(100000, dtype=lib.bool))


def test_backward_never_runs_on_an_integer_seed():
    x = cgrad.randn(3, requires_grad=True)
    y = x * 2
    with pytest.raises(TypeError, match="backward: needs a float32 or float64 tensor, got int64"):
        y.backward(cgrad.tensor([1, 1, 1]))


def test_indices_computed_from_a_step_input_are_refused_while_compiling():
    w = cgrad.tensor(np.arange(12.0).reshape(3, 4), requires_grad=True)
    steps = {"gather(dim)": lambda idx: w.gather(1, idx), "a comparison": lambda idx: w[idx.reshape(-1) > 1],
             "several index arrays": lambda idx: w[np.arange(3), idx.reshape(-1)]}
    for what, fn in steps.items():
        step = cgrad.compile(lambda idx, fn=fn: fn(idx).sum())
        with pytest.raises(RuntimeError, match="cgrad.compile: "):
            step(cgrad.tensor([[0], [3], [1]]))
    pairs = cgrad.compile(lambda idx: w[np.arange(3), idx].sum())
    with pytest.raises(RuntimeError, match="cgrad.compile: .*computes new indices from the step's integer input"):
        pairs(cgrad.tensor([0, 3, 1]))
    # an index input used as it is replays with each call's values
    rows = cgrad.compile(lambda idx: w[idx].sum())
    assert [rows(cgrad.tensor(i)).item() for i in ([0], [2], [1, 1])] == [6.0, 38.0, 44.0]


def test_nll_loss_in_a_compiled_step_reads_each_calls_targets():
    w = cgrad.tensor(np.arange(6.0).reshape(2, 3) / 3, requires_grad=True)
    step = cgrad.compile(lambda y: cF.nll_loss(w.log_softmax(1), y))
    replayed = [step(cgrad.tensor(t)).item() for t in ([0, 1], [2, 2], [1, 0])]
    logp = np.arange(6.0).reshape(2, 3) / 3
    logp = logp - np.log(np.exp(logp).sum(1, keepdims=True))
    np.testing.assert_allclose(replayed, [-(logp[0, a] + logp[1, b]) / 2 for a, b in ([0, 1], [2, 2], [1, 0])],
                               rtol=1e-12)
