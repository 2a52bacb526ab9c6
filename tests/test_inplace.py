"""What each backward rule really reads, against what the core guards (Note [Versions]).

For every op-table line and every value its graph saved from outside, each input and
then the output, forward runs and the value is changed before backward:
(a) through its numpy view, which the version counter does not see: the rule reads the
    value exactly when the gradients come out different from an unchanged run (the oracle);
(b) through copy_, which bumps the version: backward must raise "modified in place"
    exactly when the oracle says the value is read, and give the gradients otherwise.
For a line that is one C op applied to its leaves, the registry's reads bits
(csrc/ops.def, cgrad._C.op_table()) must say what the oracle found.

Backward is seeded with a fixed random upstream gradient, out.backward(v), and no loss
node: a loss's own rule could read `out` and refuse for its own reasons.
"""
import numpy as np
import pytest

import cgrad
from cgrad import _C
from op_table import OPS

OUTPUT = "out"
READS_OUTPUT = 128
READS = {name: reads for name, _, reads in _C.op_table()}
CASES = [(op, which) for op in OPS for which in [*range(len(op.shapes)), OUTPUT]]


def _scaled(a):
    """A new value that changes what any rule reading it computes: a scale, a sign flip
    and a shift, so that no equality (max's output with its input), sign or ratio is kept."""
    return -1.3 * a + 0.25


def _write_through_numpy(t, change):
    a = t.numpy()
    new = change(a)
    a[...] = new
    assert np.array_equal(t.numpy(), new), "numpy() gave a copy, not a view"


def _write_through_core(t, change):
    t.detach().copy_(change(t.numpy()))


def _is_single(op, xs, out) -> bool:
    """Whether out was made by the one C op the line covers, applied to the leaves xs in
    their order (then the registry's reads bits can be checked against the oracle)."""
    name, inputs = _C.graph_node(out)
    return name == op.covers and [_C.tensor_key(t) for t in inputs] == [_C.tensor_key(x) for x in xs]


def _run(op, arrays, v, which=None, write=None, change=None):
    """The leaves' gradients of out.backward(v), with write(t, change) applied to input
    `which` (or the output) between forward and backward; and whether the line is one C
    op applied to the leaves, in their order."""
    xs = [cgrad.tensor(a, requires_grad=True) for a in arrays]
    out = op.fn(*xs)
    single = _is_single(op, xs, out)
    if write is not None:
        write(out if which == OUTPUT else xs[which], change)
    out.backward(v)
    return [np.zeros(x.shape) if x.grad is None else x.grad.numpy().copy() for x in xs], single


@pytest.mark.parametrize("op, which", CASES, ids=[f"{op.name}-{which}" for op, which in CASES])
def test_backward_refuses_exactly_when_its_rule_reads_a_changed_value(op, which, seeded_rng):
    """The oracle tries two changes of an input: _scaled, and a fresh draw from the line's
    own domain (away from its kinks; each element to an unrelated value, so that an
    indicator such as clip's or a comparison such as maximum's changes somewhere, which
    one change alone misses for some draws); of the output, _scaled."""
    arrays, fresh = op.inputs(seeded_rng), op.inputs(seeded_rng)
    shape = np.shape(op.ref(*arrays))
    v = seeded_rng.uniform(0.5, 1.5, shape) * seeded_rng.choice([-1.0, 1.0], shape)
    changes = [_scaled] + ([] if which == OUTPUT else [lambda a: fresh[which]])
    unchanged, single = _run(op, arrays, v)
    reads = False
    for change in changes:
        changed, _ = _run(op, arrays, v, which, _write_through_numpy, change)
        reads = any(not np.array_equal(a, b, equal_nan=True) for a, b in zip(unchanged, changed))
        if reads:
            break
    value = "its output" if which == OUTPUT else f"input {which}"
    if reads:
        with pytest.raises(RuntimeError, match="modified in place"):
            _run(op, arrays, v, which, _write_through_core, change)
    else:
        got, _ = _run(op, arrays, v, which, _write_through_core, change)  # must not raise
        for a, b in zip(got, unchanged):
            np.testing.assert_array_equal(a, b)
    if single:
        bit = READS_OUTPUT if which == OUTPUT else 1 << which
        assert bool(READS[op.covers] & bit) == reads, (
            f"csrc/ops.def: the reads of {op.covers} {'omit' if reads else 'name'} {value}, "
            f"but its backward rule {'reads' if reads else 'does not read'} it")


def test_every_c_op_has_a_line_whose_reads_bits_are_checked():
    """The reads check above runs only on lines that are one C op on their leaves: each
    registered op needs at least one such line, or a wrong entry would go unnoticed."""
    rng = np.random.default_rng(0)
    checked = set()
    for op in OPS:
        if op.covers is not None:
            xs = [cgrad.tensor(a, requires_grad=True) for a in op.inputs(rng)]
            if _is_single(op, xs, op.fn(*xs)):
                checked.add(op.covers)
    python_ops = {name for name, family, _ in _C.op_table() if family == "python"}  # user code's rule
    assert set(_C.op_names()) - checked - python_ops == set()
