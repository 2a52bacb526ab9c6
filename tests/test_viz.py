"""Graph drawing: DOT text with the expected nodes and edges."""
import re

import pytest

import cgrad


def test_dot_of_the_lecture_neuron():
    w = cgrad.tensor([2.0, -3.0], dtype=cgrad.float64, requires_grad=True)
    x = cgrad.tensor([-1.0, -2.0], dtype=cgrad.float64, requires_grad=True)
    f = (w * x).sum().sigmoid()
    f.backward(retain_graph=True)
    dot = str(cgrad.viz.to_dot(f))
    ops = re.findall(r'(t\d+)_op \[label="(\w+)"', dot)
    assert sorted(name for _, name in ops) == ["mul", "sigmoid", "sum"]
    ids = {name: tid for tid, name in ops}
    # sigmoid's op takes the sum's output; the sum's op takes mul's output; mul takes w and x
    assert f"{ids['sum']} -> {ids['sigmoid']}_op;" in dot
    assert f"{ids['mul']} -> {ids['sum']}_op;" in dot
    assert len(re.findall(rf"t\d+ -> {ids['mul']}_op;", dot)) == 2
    for leaf in (w, x):  # leaves show their value and gradient, as the lecture draws them
        assert f"value {cgrad.viz._fmt(leaf)}\\ngrad {cgrad.viz._fmt(leaf.grad)}" in dot
    assert dot.startswith("digraph cgrad {") and dot.rstrip().endswith("}")


def test_render_without_graphviz_says_what_to_install(tmp_path):
    dot = cgrad.viz.to_dot(cgrad.tensor([1.0], requires_grad=True) * 2.0)
    dot.save(tmp_path / "g.dot")
    assert (tmp_path / "g.dot").read_text().startswith("digraph")
    try:
        import graphviz  # noqa: F401
    except ImportError:
        with pytest.raises(ImportError, match="pip install graphviz"):
            dot.render(tmp_path / "g.png")
    else:
        pytest.skip("graphviz is installed: the message for its absence cannot be checked")
