"""Property-based fuzzing of the op surface with hypothesis (run by test_fuzz.py in a
subprocess, so that a crash of the interpreter is a failed test, not a lost test run).

Every case must either give the numpy result (NaN where numpy has NaN) or raise a Python
exception of an expected type with a message. Seeded: the same cases every run.

    python tests/fuzz_ops.py --examples 500 --seed 0
"""
from __future__ import annotations

import argparse
import warnings

import numpy as np
from hypothesis import HealthCheck, given, seed, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import cgrad

ERRORS = (ValueError, TypeError, IndexError, MemoryError, RuntimeError)
counts = {"ok": 0, "raised": 0}

dtypes = st.sampled_from([np.float32, np.float64])
shapes = hnp.array_shapes(min_dims=0, max_dims=4, min_side=0, max_side=4)
elements = st.floats(allow_nan=True, allow_infinity=True, width=32)


@st.composite
def arrays(draw, shape=shapes):
    """A float array, sometimes non-contiguous or read-only."""
    dt = draw(dtypes)
    a = draw(hnp.arrays(dt, draw(shape), elements=elements))
    layout = draw(st.sampled_from(["plain", "transposed", "readonly", "strided"]))
    if layout == "transposed" and a.ndim >= 2:
        a = np.ascontiguousarray(a.swapaxes(0, 1)).swapaxes(0, 1)  # same values, F-ish layout
    elif layout == "readonly":
        a.flags.writeable = False
    elif layout == "strided" and a.ndim >= 1:
        a = np.repeat(a, 2, axis=0)[::2]
    return a


def same(out, expected):
    out = np.asarray(out.numpy() if isinstance(out, cgrad.Tensor) else out, dtype=np.float64)
    expected = np.asarray(expected, dtype=np.float64)
    assert out.shape == expected.shape, (out.shape, expected.shape)
    np.testing.assert_allclose(out, expected, rtol=2e-5, atol=1e-6, equal_nan=True)


def run(fn, reference):
    """fn() must match reference() or both must fail (ours with a clear exception)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            expected = reference()
        except Exception:
            expected = None
        try:
            out = fn()
        except ERRORS as e:
            assert str(e), f"empty message from {type(e).__name__}"
            counts["raised"] += 1
            return
    assert expected is not None, "cgrad returned a result where numpy raised"
    same(out, expected)
    counts["ok"] += 1


BINARY = {"add": (lambda a, b: a + b, np.add), "sub": (lambda a, b: a - b, np.subtract),
          "mul": (lambda a, b: a * b, np.multiply), "div": (lambda a, b: a / b, np.divide),
          "maximum": (cgrad.maximum, np.maximum), "minimum": (cgrad.minimum, np.minimum)}
UNARY = {"exp": np.exp, "log": np.log, "sqrt": np.sqrt, "abs": np.abs, "tanh": np.tanh,
         "relu": lambda x: np.where(np.isnan(x), x, np.maximum(x, 0)), "neg": np.negative,
         "sigmoid": lambda x: 1 / (1 + np.exp(-x))}


def binary_case(data):
    a, b = data.draw(arrays()), data.draw(arrays())
    name = data.draw(st.sampled_from(sorted(BINARY)))
    ours, ref = BINARY[name]

    def reference():  # mixed float dtypes promote to float64, as in PyTorch, except that a
        # 0-dim operand does not widen the other: the result is rounded to that dtype
        dtype = b.dtype if a.ndim == 0 and b.ndim else a.dtype if b.ndim == 0 and a.ndim else np.result_type(a, b)
        with np.errstate(all="ignore"):
            return ref(a.astype(np.float64), b.astype(np.float64)).astype(dtype)
    run(lambda: ours(cgrad.from_numpy(a), cgrad.from_numpy(b)), reference)


def unary_case(data):
    a = data.draw(arrays())
    name = data.draw(st.sampled_from(sorted(UNARY)))
    fn = {"neg": lambda t: -t}.get(name, lambda t: getattr(t, name)())
    run(lambda: fn(cgrad.from_numpy(a)), lambda: UNARY[name](a.astype(np.float64)).astype(a.dtype))


def reduction_case(data):
    a = data.draw(arrays())
    name = data.draw(st.sampled_from(["sum", "mean", "amax", "amin"]))
    axis = data.draw(st.one_of(st.none(), st.integers(-5, 5)))
    keep = data.draw(st.booleans())
    if name in ("sum", "mean"):  # accumulate like cgrad, in the array's precision
        reference = lambda: getattr(np, name)(a.astype(np.float64), axis=axis, keepdims=keep)  # noqa: E731
    else:
        reference = lambda: getattr(np, name)(a, axis=axis, keepdims=keep)  # noqa: E731
    run(lambda: getattr(cgrad.from_numpy(a), name)(axis, keep), reference)


def matmul_case(data):
    a = data.draw(arrays(hnp.array_shapes(min_dims=1, max_dims=3, min_side=0, max_side=4)))
    b = data.draw(arrays(hnp.array_shapes(min_dims=1, max_dims=3, min_side=0, max_side=4)))

    def reference():
        # exact in float64, then rounded to the operands' dtype: a float32 product past
        # its largest value is inf there (2^64 * 2^64 was compared with 2^128 and failed)
        with np.errstate(over="ignore"):
            return np.matmul(a.astype(np.float64), b.astype(np.float64)).astype(np.result_type(a, b))
    run(lambda: cgrad.from_numpy(a) @ cgrad.from_numpy(b), reference)


def index_case(data):
    a = data.draw(arrays(hnp.array_shapes(min_dims=1, max_dims=3, min_side=0, max_side=5)))
    item = st.one_of(st.integers(-6, 6), st.slices(6), st.just(None), st.just(Ellipsis))
    key = data.draw(st.one_of(item, st.tuples(item, item),
                              st.lists(st.integers(-6, 6), min_size=0, max_size=4).map(np.array)))
    if isinstance(key, np.ndarray) and key.size == 0:
        key = key.astype(np.int64)
    run(lambda: cgrad.from_numpy(a)[key], lambda: a[key])


def misuse_case(data):
    t = cgrad.tensor(np.ones((2, 3)))
    bad = data.draw(st.sampled_from([
        lambda: t + "x", lambda: t.sum(axis="a"), lambda: cgrad.tensor(object()),
        lambda: t.reshape(5), lambda: cgrad.zeros(1 << 40, 1 << 10), lambda: t[1.5],
        lambda: t @ t, lambda: cgrad.concatenate([]), lambda: t.softmax(axis=9),
        lambda: t.backward(), lambda: cgrad.nn.functional.cross_entropy(t, [0, 7]),
        lambda: cgrad.tensor("s"),
        lambda: t.clip(3, 1), lambda: t.permute(0, 0), lambda: cgrad.zeros(-1),
    ]))
    try:
        bad()
    except ERRORS as e:
        assert str(e)
        counts["raised"] += 1
        return
    raise AssertionError("a misuse did not raise")


def gradient_case(data):
    """Short random chains of smooth ops in float64: backward agrees with finite differences.
    Every op keeps values within a few units, so the differences stay accurate."""
    shape = data.draw(hnp.array_shapes(min_dims=1, max_dims=2, min_side=1, max_side=3))
    x0 = data.draw(hnp.arrays(np.float64, shape, elements=st.floats(-1, 1)))
    ops = data.draw(st.lists(st.sampled_from(["tanh", "sigmoid", "exp_tanh", "square", "softmax",
                                              "scale", "sum_keep", "mul_self"]), min_size=1, max_size=5))

    def f(t):
        for op in ops:
            if op == "square":
                t = t * t.tanh()
            elif op == "exp_tanh":
                t = t.tanh().exp()
            elif op == "softmax":
                t = t.softmax(axis=-1)
            elif op == "scale":
                t = t * 0.7 + 0.1
            elif op == "sum_keep":
                t = (t.sum(axis=-1, keepdims=True) * 0.3 + t).tanh()
            elif op == "mul_self":
                t = t * t.tanh()
            else:
                t = getattr(t, op)()
        return t
    x = cgrad.tensor(x0, requires_grad=True)
    assert cgrad.gradcheck(f, [x], atol=1e-5, rtol=1e-3)
    counts["ok"] += 1


CASES = [binary_case, unary_case, reduction_case, matmul_case, index_case, misuse_case, gradient_case]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--examples", type=int, default=500, help="cases per kind")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    cfg = settings(max_examples=args.examples, deadline=None, database=None,
                   suppress_health_check=list(HealthCheck))
    for case in CASES:
        test = seed(args.seed)(cfg(given(st.data())(case)))
        test()
        print(f"{case.__name__}: done")
    print(f"fuzz: {counts['ok']} results checked, {counts['raised']} clear exceptions, "
          f"{len(CASES)} kinds x {args.examples} examples")


if __name__ == "__main__":
    main()
