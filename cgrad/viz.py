"""Draw the graph behind a tensor as Graphviz DOT, the way the lecture draws it: values
on the edges going forward and, where known, gradients coming back.

    dot = cgrad.viz.to_dot(loss, values=True, grads=True)
    dot.save("graph.dot")               # always works
    dot.render("graph.png")             # needs the graphviz Python package and binary
"""
from __future__ import annotations

import numpy as np

from . import _C


def _fmt(t, limit: int = 4) -> str:
    a = t.numpy()
    if a.size == 1:
        return f"{float(a.reshape(-1)[0]):.3g}"
    if a.size <= limit:
        return np.array2string(a, precision=3, separator=",")
    return f"{a.shape}"


class Dot:
    def __init__(self, source: str):
        self.source = source

    def __str__(self):
        return self.source

    def save(self, path) -> None:
        with open(path, "w") as f:
            f.write(self.source)

    def render(self, path, format: str | None = None) -> str:
        """Render to an image with the graphviz package (pip install graphviz) and binary
        (apt-get install graphviz); a clear ImportError/RuntimeError otherwise."""
        try:
            import graphviz
        except ImportError:
            raise ImportError("render needs the 'graphviz' Python package (pip install graphviz) "
                              "and the Graphviz 'dot' program; save() writes the DOT text without them") from None
        import os
        base, ext = os.path.splitext(os.fspath(path))
        src = graphviz.Source(self.source)
        try:
            return src.render(base, format=format or (ext.lstrip(".") or "png"), cleanup=True)
        except graphviz.backend.ExecutableNotFound:
            raise RuntimeError("render: the Graphviz 'dot' program is not installed "
                               "(e.g. apt-get install graphviz); save() writes the DOT text") from None


def to_dot(root, values: bool = True, grads: bool = True, max_nodes: int = 2000) -> Dot:
    """DOT source of the graph behind `root`: an oval per tensor (shape; value and gradient
    when small and asked for) and a box per op, edges in the forward direction."""
    lines = ["digraph cgrad {", '  rankdir=LR; node [fontname="Helvetica", fontsize=10];']
    ids: dict[int, str] = {}

    def ident(t) -> str:
        key = _C.tensor_key(t)
        if key not in ids:
            ids[key] = f"t{len(ids)}"
        return ids[key]

    done = set()
    stack = [root]
    while stack:  # iterative: deep graphs draw too
        t = stack.pop()
        tid = ident(t)
        if tid in done:
            continue
        done.add(tid)
        if len(done) > max_nodes:
            lines.append('  truncated [label="... graph truncated", shape=plaintext];')
            break
        label = f"{t.shape}"
        if values:
            label += f"\\nvalue {_fmt(t)}"
        if grads and t.grad is not None:
            label += f"\\ngrad {_fmt(t.grad)}"
        lines.append(f'  {tid} [label="{label}", shape={"doublecircle" if t is root else "ellipse"}];')
        op, inputs = _C.graph_node(t)
        if op is None:
            continue
        lines.append(f'  {tid}_op [label="{op}", shape=box, style=filled, fillcolor="#e8eefc"];')
        lines.append(f"  {tid}_op -> {tid};")
        for x in inputs:
            lines.append(f"  {ident(x)} -> {tid}_op;")
            stack.append(x)
    lines.append("}")
    return Dot("\n".join(lines))
