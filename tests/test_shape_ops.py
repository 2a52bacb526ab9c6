"""The shape ops, var/std/norm, cumsum and einsum (cgrad/_shape_ops.py) beyond the op
table's gradient checks: values and shapes against numpy and fixed expectations, PyTorch
agreement where installed, the structure einsum records, and the errors for bad input."""
import numpy as np
import pytest

import cgrad
from cgrad import _C


def _t(a, **kw):
    return cgrad.tensor(np.asarray(a, dtype=np.float64), **kw)


def _graph_ops(out):
    """Names of the ops on the tape behind out."""
    seen, names, todo = set(), [], [out]
    while todo:
        name, inputs = _C.graph_node(todo.pop())
        if name is not None:
            names.append(name)
        for t in inputs:
            if _C.tensor_key(t) not in seen:
                seen.add(_C.tensor_key(t))
                todo.append(t)
    return names


# ---------------------------------------------------------------- fixed expectations

def test_split_chunk_and_unbind_pieces():
    x = np.arange(10.0).reshape(5, 2)
    assert [p.shape for p in _t(x).chunk(3)] == [(2, 2), (2, 2), (1, 2)]
    assert [p.shape for p in _t(np.arange(6.0)).chunk(4)] == [(2,), (2,), (2,)]  # fewer than asked
    assert [p.shape for p in _t(np.zeros(0)).chunk(3)] == [(0,), (0,), (0,)]
    pieces = _t(x).split([1, 0, 4])
    assert [p.shape for p in pieces] == [(1, 2), (0, 2), (4, 2)]
    np.testing.assert_array_equal(pieces[2].numpy(), x[1:])
    np.testing.assert_array_equal(_t(x).split(2, dim=1)[0].numpy(), x)
    rows = cgrad.unbind(_t(x), 1)
    assert len(rows) == 2
    np.testing.assert_array_equal(rows[1].numpy(), x[:, 1])


def test_values_against_numpy():
    x = np.arange(24.0).reshape(2, 3, 4)
    t = _t(x)
    np.testing.assert_array_equal(t.expand(5, 2, -1, 4).numpy(), np.broadcast_to(x, (5, 2, 3, 4)))
    np.testing.assert_array_equal(_t(x[:, :1]).expand(2, 3, 4).numpy(), np.broadcast_to(x[:, :1], (2, 3, 4)))
    np.testing.assert_array_equal(t.repeat(1, 2, 1, 3).numpy(), np.tile(x, (1, 2, 1, 3)))
    np.testing.assert_array_equal(cgrad.flip(t, (1, -1)).numpy(), x[:, ::-1, ::-1])
    np.testing.assert_array_equal(t.roll(-7).numpy(), np.roll(x, -7))
    np.testing.assert_array_equal(cgrad.roll(t, (4, 1), (2, 0)).numpy(), np.roll(x, (4, 1), (2, 0)))
    np.testing.assert_array_equal(cgrad.narrow(t, -1, 1, 3).numpy(), x[..., 1:4])
    np.testing.assert_array_equal(t.movedim(-1, 0).numpy(), np.moveaxis(x, -1, 0))
    np.testing.assert_array_equal(cgrad.swapdims(t, 0, 1).numpy(), np.swapaxes(x, 0, 1))
    np.testing.assert_array_equal(t.view_as(np.zeros((4, 6))).numpy(), x.reshape(4, 6))
    np.testing.assert_array_equal(t.tril(1).numpy(), np.tril(x, 1))
    np.testing.assert_array_equal(cgrad.triu(t, -1).numpy(), np.triu(x, -1))


def test_tril_zeroes_infinities_instead_of_making_nan():
    x = np.full((3, 3), np.inf)
    np.testing.assert_array_equal(_t(x).tril().numpy(), np.tril(x))


def test_roll_and_movedim_copy_like_the_other_ops():
    """cgrad's results of these ops are new tensors (copies), so writing one leaves x alone."""
    x = _t(np.arange(4.0))
    y = x.roll(4)
    y.fill_(7.0)
    np.testing.assert_array_equal(x.numpy(), np.arange(4.0))


def test_var_and_std_default_to_pytorchs_correction():
    x = np.array([[1.0, 2.0, 4.0], [0.5, -1.0, 3.0]])
    t = _t(x)
    assert t.var().item() == pytest.approx(np.var(x, ddof=1))
    assert t.std().item() == pytest.approx(np.std(x, ddof=1))
    np.testing.assert_allclose(t.var(1).numpy(), np.var(x, axis=1, ddof=1))
    np.testing.assert_allclose(t.var(1, False).numpy(), np.var(x, axis=1))  # var(dim, unbiased)
    assert t.var(False).item() == pytest.approx(np.var(x))                  # var(unbiased)
    np.testing.assert_allclose(t.var(dim=0, correction=0, keepdim=True).numpy(), np.var(x, 0, keepdims=True))
    np.testing.assert_allclose(t.var(axis=0, ddof=0).numpy(), np.var(x, axis=0))  # numpy's spelling
    np.testing.assert_allclose(cgrad.std(t, 0, unbiased=True).numpy(), np.std(x, axis=0, ddof=1))
    assert np.isnan(_t([3.0]).var().item())  # one value, correction 1: 0/0, as PyTorch


def test_std_and_norm_have_a_zero_gradient_at_zero():
    """sqrt's slope is infinite at 0; PyTorch's std and norm give 0 there, not NaN."""
    for dtype in (np.float32, np.float64):
        for f in (lambda x: x.std(), lambda x: x.norm(), lambda x: x.norm(3), lambda x: x.norm(0.5),
                  lambda x: cgrad.linalg.vector_norm(x, 2, dim=0)):
            x = cgrad.tensor(np.ones(3), dtype=dtype, requires_grad=True)
            y = f(x - 1.0)
            y.sum().backward()
            assert y.numpy().max() == 0
            np.testing.assert_array_equal(x.grad.numpy(), np.zeros(3))


def test_norm_values():
    x = np.array([[3.0, -4.0, 0.0], [1.0, 0.0, -2.0]])
    t = _t(x)
    assert t.norm().item() == pytest.approx(np.sqrt(30))
    assert t.norm("fro", dim=(0, 1)).item() == pytest.approx(np.sqrt(30))
    np.testing.assert_allclose(t.norm(0, dim=1).numpy(), [2, 2])  # non-zeros
    np.testing.assert_allclose(t.norm(float("-inf"), dim=1).numpy(), [0, 0])
    np.testing.assert_allclose(cgrad.linalg.vector_norm(t, 1, dim=0, keepdim=True).numpy(), [[4, 4, 2]])
    tiny = cgrad.tensor([3e-20, 4e-20], dtype=np.float64)  # sums far below float32's floor are exact in float64
    assert tiny.norm().item() == pytest.approx(5e-20)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_cumsum_against_numpy(dtype, rng):
    x = rng.standard_normal((3, 600, 2)).astype(dtype)
    for dim in (0, 1, 2, -1):
        np.testing.assert_allclose(cgrad.tensor(x).cumsum(dim).numpy(), np.cumsum(x.astype(np.float64), dim),
                                   rtol=1e-4 if dtype == np.float32 else 1e-12, atol=1e-4)
    # the backward of a wide row (more columns than the stack buffer of running sums)
    w = cgrad.tensor(rng.standard_normal((4, 700)), dtype=dtype, requires_grad=True)
    g = rng.standard_normal((4, 700))
    w.cumsum(0).backward(g)
    np.testing.assert_allclose(w.grad.numpy(), np.cumsum(g[::-1], 0)[::-1], rtol=1e-5, atol=1e-5)
    assert cgrad.tensor(2.5, dtype=dtype).cumsum(0).item() == 2.5
    assert cgrad.zeros(0, 3, dtype=dtype).cumsum(0).shape == (0, 3)


EINSUMS = [("ij,jk->ik", [(3, 4), (4, 5)]), ("bij,bjk->bik", [(2, 3, 4), (2, 4, 5)]),
           ("i,j->ij", [(3,), (4,)]), ("ij->ji", [(3, 4)]), ("ij->i", [(3, 4)]), ("ij->", [(3, 4)]),
           ("bhqd,bhkd->bhqk", [(2, 3, 4, 5), (2, 3, 6, 5)]), ("ii->i", [(3, 3)]), ("ii", [(3, 3)]),
           ("iij->j", [(3, 3, 2)]), ("ij,jk", [(2, 3), (3, 4)]), ("ba,cb", [(2, 3), (4, 2)]),
           ("ij,kj->ik", [(3, 4), (5, 4)]), ("ij,jk->ki", [(2, 3), (3, 4)]), ("bji,bjk->bik", [(2, 3, 4), (2, 3, 5)]),
           ("ijk,ikl->jl", [(2, 3, 4), (2, 4, 5)]), ("ij,jk,kl->il", [(2, 3), (3, 4), (4, 5)]),
           ("...ij,...jk->...ik", [(5, 2, 3), (1, 3, 4)]), ("i...->...", [(2, 3, 4)]),
           ("ij,kl->ijkl", [(2, 3), (4, 5)]), ("ij,i->j", [(3, 4), (3,)]), ("aB,Bc->ca", [(2, 3), (3, 4)]),
           (" ij , jk -> ik ", [(2, 3), (3, 4)])]


@pytest.mark.parametrize("equation, shapes", EINSUMS, ids=[e for e, _ in EINSUMS])
def test_einsum_against_numpy(equation, shapes, rng):
    arrays = [rng.standard_normal(s) for s in shapes]
    got = cgrad.einsum(equation, *[_t(a) for a in arrays])
    want = np.einsum(equation.replace(" ", ""), *arrays)
    assert got.shape == np.shape(want)
    np.testing.assert_allclose(got.numpy(), want, rtol=1e-12, atol=1e-12)


def test_einsum_broadcasts_size_1_dims(rng):
    """As PyTorch (numpy refuses): a size-1 'j' against a size-4 one acts as repeated, so
    sum_j a[i, 0] b[j, k] = a[i, 0] * sum_j b[j, k]."""
    a, b = rng.standard_normal((3, 1)), rng.standard_normal((4, 5))
    np.testing.assert_allclose(cgrad.einsum("ij,jk->ik", _t(a), _t(b)).numpy(), a * b.sum(0), rtol=1e-12)


def test_einsum_takes_a_list_of_operands():
    a, b = np.ones((2, 3)), np.full((3, 2), 2.0)
    np.testing.assert_array_equal(cgrad.einsum("ij,jk->ik", [_t(a), _t(b)]).numpy(), a @ b)


@pytest.mark.parametrize("equation, shapes, ops", [
    ("ij,jk->ik", [(3, 4), (4, 5)], ["matmul"]),
    ("bij,bjk->bik", [(2, 3, 4), (2, 4, 5)], ["matmul"]),
    ("ij,kj->ik", [(3, 4), (5, 4)], ["linear"]),           # no transposed copy of the second
    ("ij,jk->ki", [(3, 4), (4, 5)], ["linear", "strided"]),  # (AB)^T = B^T A^T: one transposed copy
    ("bij,jk->bik", [(2, 3, 4), (4, 5)], ["matmul", "reshape", "reshape"]),
    ("bhqd,bhkd->bhqk", [(2, 3, 4, 5), (2, 3, 6, 5)], ["matmul", "reshape", "reshape", "reshape", "strided"]),
])
def test_einsum_matrix_products_are_one_matmul(equation, shapes, ops):
    """The contraction is one GEMM; around it only reshapes (no copies) and, where the
    layout needs one, a single transposed copy (strided)."""
    xs = [cgrad.randn(*s, requires_grad=True) for s in shapes]
    assert sorted(_graph_ops(cgrad.einsum(equation, *xs))) == sorted(ops)


def test_einsum_identity_is_a_new_tensor():
    x = _t(np.ones((2, 3)))
    y = cgrad.einsum("ij->ij", x)
    assert y is not x and y.shape == (2, 3)


def test_free_functions_are_the_methods():
    x = _t(np.arange(6.0).reshape(2, 3))
    for name, args in [("flip", (0,)), ("roll", (1,)), ("narrow", (1, 0, 2)), ("tril", ()), ("triu", ()),
                       ("movedim", (0, 1)), ("moveaxis", (0, 1)), ("swapaxes", (0, 1)), ("var", (0,)),
                       ("std", ()), ("norm", ()), ("cumsum", (1,))]:
        np.testing.assert_array_equal(getattr(cgrad, name)(x, *args).numpy(), getattr(x, name)(*args).numpy())
    for name, args in [("split", (1,)), ("chunk", (2,)), ("unbind", ())]:
        assert len(getattr(cgrad, name)(x, *args)) == len(getattr(x, name)(*args))


# ---------------------------------------------------------------- errors

@pytest.mark.parametrize("call, exc, words", [
    (lambda x: x.flip(3), IndexError, ["flip", "dim 3", "(2, 3)"]),
    (lambda x: x.flip(0, 0), ValueError, ["flip", "more than once"]),
    (lambda x: x.roll(1, 2), IndexError, ["roll", "dim 2", "(2, 3)"]),
    (lambda x: x.roll((1, 2), 0), ValueError, ["roll", "same length"]),
    (lambda x: x.roll((1, 2)), ValueError, ["roll", "dims=None"]),
    (lambda x: x.split([1, 1], dim=1), ValueError, ["split", "[1, 1]", "sum to 3", "(2, 3)"]),
    (lambda x: x.split([4, -1], dim=1), ValueError, ["split", "sum to 3"]),
    (lambda x: x.split(0), ValueError, ["split", "positive"]),
    (lambda x: x.chunk(0), ValueError, ["chunk", "positive"]),
    (lambda x: x.unbind(-3), IndexError, ["unbind", "dim -3", "(2, 3)"]),
    (lambda x: x.narrow(1, 2, 2), ValueError, ["narrow", "exceeds", "(2, 3)"]),
    (lambda x: x.narrow(1, -4, 1), IndexError, ["narrow", "start -4", "(2, 3)"]),
    (lambda x: x.expand(4, 3), ValueError, ["expand", "size 4", "existing size 2", "(2, 3)"]),
    (lambda x: x.expand(3), ValueError, ["expand", "(2, 3)"]),
    (lambda x: x.expand(-1, 2, 3), ValueError, ["expand", "-1"]),
    (lambda x: x.repeat(2), ValueError, ["repeat", "(2, 3)"]),
    (lambda x: x.repeat(1, 2.5), TypeError, ["repeat", "integers"]),
    (lambda x: x.movedim((0, 1), 0), ValueError, ["movedim"]),
    (lambda x: x.swapaxes(0, 5), IndexError, ["swapaxes", "dim 5"]),
    (lambda x: x[0].tril(), ValueError, ["tril", "at least 2 dims", "(3,)"]),
    (lambda x: x.var(correction=1, unbiased=True), ValueError, ["var", "at most one"]),
    (lambda x: x.var(2), IndexError, ["var", "dim 2", "(2, 3)"]),
    (lambda x: x.norm("nuc"), ValueError, ["norm", "'nuc'"]),
    (lambda x: x.norm(2, dim=4), IndexError, ["norm", "dim 4"]),
    (lambda x: cgrad.linalg.vector_norm(x, "fro"), ValueError, ["vector_norm", "number"]),
    (lambda x: x.cumsum(2), IndexError, ["cumsum", "dim 2", "(2, 3)"]),
])
def test_bad_input_raises_naming_the_op(call, exc, words):
    with pytest.raises(exc) as info:
        call(_t(np.zeros((2, 3))))
    for w in words:
        assert w in str(info.value), (w, str(info.value))


@pytest.mark.parametrize("equation, shapes, words", [
    ("ij,jk->ik", [(2, 3), (4, 5)], ["index 'j'", "size 3", "4", "(2, 3)", "(4, 5)"]),
    ("ij,jk->ik", [(2, 3)], ["2 operands", "1 tensors"]),
    ("ijk->i", [(2, 3)], ["operand 0", "(2, 3)", "'ijk'", "3 dims"]),
    ("i1,1j->ij", [(2, 3), (3, 2)], ["unsupported characters", "'1'"]),
    ("i.j->i", [(2, 3)], ["unsupported characters", "'.'"]),
    ("ij->ik", [(2, 3)], ["output", "'k'", "no operand"]),
    ("ij->ii", [(2, 3)], ["output", "more than once"]),
    ("ij->i->j", [(2, 3)], ["more than one '->'"]),
    ("ii->i", [(2, 3)], ["index 'i'", "repeated in operand 0", "sizes 2 and 3", "(2, 3)"]),
    ("ii->i", [(1, 3)], ["index 'i'", "repeated in operand 0", "sizes 1 and 3", "(1, 3)"]),
])
def test_einsum_errors_say_what_is_wrong(equation, shapes, words):
    with pytest.raises(ValueError) as info:
        cgrad.einsum(equation, *[_t(np.zeros(s)) for s in shapes])
    assert "einsum" in str(info.value)
    for w in words:
        assert w in str(info.value), (w, str(info.value))


def test_einsum_wants_tensors():
    with pytest.raises(TypeError, match="einsum: operand 1 is a ndarray"):
        cgrad.einsum("i,i->", _t(np.ones(2)), np.ones(2))


# ---------------------------------------------------------------- against PyTorch

def test_piece_shapes_agree_with_pytorch():
    torch = pytest.importorskip("torch")
    for n in range(0, 9):
        x, tx = cgrad.zeros(n, 2), torch.zeros(n, 2)
        for k in range(1, 6):
            assert [p.shape for p in x.chunk(k)] == [tuple(p.shape) for p in tx.chunk(k)], (n, k)
            assert [p.shape for p in x.split(k)] == [tuple(p.shape) for p in tx.split(k)], (n, k)


def test_shapes_agree_with_pytorch():
    torch = pytest.importorskip("torch")
    a = np.random.default_rng(0).standard_normal((2, 1, 3))
    x, tx = _t(a), torch.tensor(a)
    for f in [lambda t: t.expand(4, 2, 5, -1), lambda t: t.expand(2, 1, 3), lambda t: t.repeat(2, 3, 1, 1),
              lambda t: t.repeat(1, 1, 1), lambda t: t.movedim(0, -1), lambda t: t.movedim((2, 0), (0, 1)),
              lambda t: t.roll(2), lambda t: t.roll(-1, -1), lambda t: t.narrow(-1, -3, 2), lambda t: t.tril(-2),
              lambda t: t.triu(5), lambda t: t.var(dim=(0, 2), keepdim=True), lambda t: t.std(-1, correction=0),
              lambda t: t.norm(2.5, dim=(0, 2)), lambda t: t.norm(float("inf")), lambda t: t.cumsum(-1)]:
        got, want = f(x), f(tx)
        assert got.shape == tuple(want.shape)
        np.testing.assert_allclose(got.numpy(), want.numpy(), rtol=1e-12, atol=1e-12)


TORCH_EINSUMS = EINSUMS + [("Ab,ba", [(2, 3), (3, 4)]), ("...i,...i", [(2, 3), (3,)]),
                           ("ij,jk->ik", [(3, 1), (4, 5)])]


@pytest.mark.parametrize("equation, shapes", TORCH_EINSUMS, ids=[f"{e}{s}" for e, s in TORCH_EINSUMS])
def test_einsum_agrees_with_pytorch(equation, shapes, rng):
    torch = pytest.importorskip("torch")
    arrays = [rng.standard_normal(s) for s in shapes]
    got = cgrad.einsum(equation, *[_t(a) for a in arrays])
    want = torch.einsum(equation, *[torch.tensor(a) for a in arrays])
    assert got.shape == tuple(want.shape)
    np.testing.assert_allclose(got.numpy(), want.numpy(), rtol=1e-12, atol=1e-12)


# ---------------------------------------------------------------- concatenation's backward
@pytest.fixture(params=["best", "off"])
def concat_isa(request):
    """Both float32 paths for short chunks: AVX-512 masked runs (where the CPU has them) and
    the loops of shape_impl.h."""
    yield _C.skinny_isa(request.param)
    _C.skinny_isa("best")


@pytest.mark.parametrize("widths", [(6, 6), (1, 3, 17), (64, 65), tuple(range(1, 11))])
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_concat_backward_routes_each_chunk_back(concat_isa, widths, dtype, rng):
    """cat along the last dim of [4, 5, w]: dL/dx_i is W's slice for x_i. x_0 is also the last
    piece (its two slices add, the second into the buffer the first wrote), ten pieces pass
    the eight that get fresh buffers, a piece's .grad from an earlier backward is added to,
    and widths of 64 and 65 straddle the masked runs' limit."""
    xs = [cgrad.tensor(rng.standard_normal((4, 5, w)).astype(dtype), requires_grad=True) for w in widths]
    pieces = xs + [xs[0]]
    W = rng.standard_normal((4, 5, sum(widths) + widths[0])).astype(dtype)
    edges = np.cumsum([0] + [p.shape[2] for p in pieces])
    y = cgrad.cat(pieces, -1)
    np.testing.assert_array_equal(y.numpy(), np.concatenate([p.numpy() for p in pieces], -1))
    (y * cgrad.tensor(W)).sum().backward()
    first = [x.grad.numpy().copy() for x in xs]
    (cgrad.cat(pieces, -1) * cgrad.tensor(W)).sum().backward()  # again: each .grad is added to
    for i, x in enumerate(xs):
        want = W[..., edges[i]:edges[i + 1]] + (W[..., edges[-2]:] if i == 0 else 0)
        np.testing.assert_allclose(first[i], want, rtol=1e-6)  # x_0: its two slices' sum, rounded once
        np.testing.assert_allclose(x.grad.numpy(), 2 * want, rtol=1e-5 if dtype == "float32" else 1e-12)
