"""Pictures: the graph behind a tensor as Graphviz DOT, the training curves of a History
and the per-layer backward time of a profile, through matplotlib.

    dot = cgrad.viz.to_dot(loss, values=True, grads=True)
    dot.save("graph.dot")               # always works
    dot.render("graph.png")             # needs the graphviz Python package and binary

    history.plot(path="curves.png")     # = cgrad.viz.plot_history(history, ...)
    cgrad.viz.plot_backward_by_layer(prof, path="layers.png")

The graph is drawn the way the lecture draws it: values on the edges going forward and,
where known, gradients coming back. The plots need matplotlib (pip install cgrad[plot]);
with `path=` and no `ax=` they draw off-screen (no window, whatever the backend), otherwise
on pyplot's current backend, which they never change.
"""
from __future__ import annotations

import math
import numbers
import os
from typing import Any

import numpy as np

from . import _C
from ._optional import require


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


# ---------------------------------------------------------------- matplotlib plots

def _matplotlib(what: str):
    return require("matplotlib", "plot", what)


def _new_figure(figsize, offscreen: bool):
    """A Figure for a plot: a standalone one when it is only saved (no pyplot, so no
    window and nothing to close), else pyplot's, so plt.show() and notebooks show it."""
    if offscreen:
        from matplotlib.figure import Figure
        return Figure(figsize=figsize, layout="constrained")
    import matplotlib.pyplot as plt
    return plt.figure(figsize=figsize, layout="constrained")


def _root_figure(ax):
    try:
        return ax.get_figure(root=True)
    except TypeError:  # matplotlib < 3.10: ax.figure is the root
        return ax.figure


def _axes_list(what: str, ax, n: int) -> list:
    axes = list(np.asarray(ax, dtype=object).ravel())
    if len(axes) != n:
        raise ValueError(f"{what}: ax has {len(axes)} Axes for {n} panels; pass one Axes per panel")
    return axes


def _save(fig, path, dpi) -> None:
    if path is not None:
        fig.savefig(os.fspath(path), dpi=dpi)


def _is_number(v) -> bool:
    return isinstance(v, numbers.Real) and not isinstance(v, bool)


def history_panels(history, metrics=None) -> list[tuple[str, str | None, str | None]]:
    """The panels plot_history draws: (name, training key, validation key) in the order the
    history recorded them; a validation-only key (val_x without x) gets its own panel.
    By default every per-epoch number but 'time'; `metrics` names the panels to draw."""
    keys = history.history

    def per_epoch(k):  # callbacks may log other things, or not every epoch
        return len(keys[k]) == len(history.epoch) and all(_is_number(x) for x in keys[k])

    if metrics is None:
        names = list(dict.fromkeys(k[4:] if k.startswith("val_") else k for k in keys))
        names = [m for m in names if m != "time"]
    else:
        names = [metrics] if isinstance(metrics, str) else list(metrics)
    panels = []
    for m in names:
        found = [k for k in (m, f"val_{m}") if k in keys]
        if metrics is not None:
            if not found:
                raise KeyError(f"History.plot: no '{m}' in the history; it has {sorted(keys)}")
            for k in found:
                if not per_epoch(k):
                    raise ValueError(f"History.plot: '{k}' is not one number per epoch")
        train, val = (k if k in found and per_epoch(k) else None for k in (m, f"val_{m}"))
        if train or val:
            panels.append((m, train, val))
    return panels


_UNITS = {"time": "s"}


def plot_history(history, metrics=None, *, logy=False, ax=None, path=None, title: str | None = None,
                 figsize=None, dpi: int = 100):
    """Draw a History's curves per epoch: one panel per metric (loss first, as recorded),
    training and validation (the val_* keys) on the same panel; returns the Figure.

    metrics: a name or names of the panels ('loss', 'accuracy', 'time', ...); by default
        every per-epoch number but 'time'.
    logy: True puts the loss panels (names containing 'loss') on a log scale; or a list of
        panel names to put on it.
    ax: an Axes, or one per panel (e.g. from plt.subplots), to draw into; by default a
        new figure with up to three panels a row.
    path: also save the figure there (the format from the suffix: .png, .svg, .pdf).
    title: the figure's title. figsize: inches (default 4.5 x 3.4 per panel). dpi: of the
        saved file.
    """
    what = "History.plot"
    _matplotlib(what)
    if not history.epoch:
        raise ValueError(f"{what}: the history is empty (no epoch recorded)")
    panels = history_panels(history, metrics)
    if not panels:
        raise ValueError(f"{what}: nothing to plot; the history has {sorted(history.history)}")
    if isinstance(logy, str):
        logy = [logy]
    log_panels = {m for m, _, _ in panels if "loss" in m} if logy is True else set(logy or ())
    unknown = log_panels - {m for m, _, _ in panels}
    if unknown:
        raise ValueError(f"{what}: logy names {sorted(unknown)}, which are not among the panels "
                         f"{[m for m, _, _ in panels]}")
    if ax is None:
        cols = min(len(panels), 3)
        rows = math.ceil(len(panels) / cols)
        fig = _new_figure(figsize or (4.5 * cols, 3.4 * rows), offscreen=path is not None)
        axes = list(np.asarray(fig.subplots(rows, cols, squeeze=False)).ravel())
        for extra in axes[len(panels):]:
            extra.remove()
        axes = axes[:len(panels)]
    else:
        axes = _axes_list(what, ax, len(panels))
        fig = _root_figure(axes[0])
    from matplotlib.ticker import MaxNLocator

    epochs = np.asarray(history.epoch)
    marker = "o" if len(epochs) <= 20 else None  # a few epochs: show the points themselves
    for a, (name, train_key, val_key) in zip(axes, panels):
        for key, label in ((train_key, "training"), (val_key, "validation")):
            if key is not None:
                a.plot(epochs, np.asarray(history.history[key], dtype=np.float64), marker=marker,
                       markersize=3, label=label)
        unit = _UNITS.get(name)
        a.set_title(name)
        a.set_xlabel("epoch")
        a.set_ylabel(f"{name} ({unit})" if unit else name)
        a.xaxis.set_major_locator(MaxNLocator(integer=True))
        if name in log_panels:
            a.set_yscale("log")
        a.grid(True, alpha=0.3)
        a.legend()
    if title:
        fig.suptitle(title)
    _save(fig, path, dpi)
    return fig


def backward_by_layer(prof) -> list[dict[str, Any]]:
    """Per layer of a profile, in the network's order (the order the layers' forward first
    ran in the profile; time outside any layer, such as the loss, last): {'layer', 'steps', 'dW_ms', 'dX_ms',
    'other_ms', 'total_ms'}, each the mean per backward call (step). dW and dX are the
    backward GEMMs (dW = X^T dZ, dX = dZ W^T; for a convolution on im2col's columns);
    'other' is the rest of the layers' backward rules (bias and activation gradients,
    finding and zeroing buffers)."""
    from . import _state

    steps = max(int(np.sum(prof.events["phase"] == 4)), 1)  # one backward call per step
    out = []
    for r in prof.rows(by="layer", phase="backward"):
        dw = sum(p["ms"] for label, p in r["parts"].items() if label.startswith("dW"))
        dx = sum(p["ms"] for label, p in r["parts"].items() if label.startswith("dX"))
        out.append({"layer": r["name"], "steps": steps, "dW_ms": dw / steps, "dX_ms": dx / steps,
                    "other_ms": (r["total_ms"] - dw - dx) / steps, "total_ms": r["total_ms"] / steps})
    # the network's order is the order of the layers' first forward op in this profile
    # (scope ids are global: another model may have made some of these names first)
    fwd = prof.events[prof.events["phase"] == 0]
    fwd = fwd[np.argsort(fwd["t0"], kind="stable")]
    scopes, first = np.unique(fwd["scope"], return_index=True)
    first_seen = dict(zip(scopes.tolist(), first.tolist()))
    sid = {name: i for i, name in enumerate(_state.scopes)}

    def order(row):
        i = sid.get(row["layer"], 0)
        return (2, 0) if i == 0 else (0, first_seen[i]) if i in first_seen else (1, i)
    out.sort(key=order)
    return out


def _short_names(names: list[str]) -> list[str]:
    """Drop the model's prefix ('MLP()/2: Linear(...)' -> '2: Linear(...)') when every
    layer has it: the title names the model."""
    inside = [n for n in names if "/" in n]
    prefixes = {n.split("/", 1)[0] for n in inside}
    if len(prefixes) == 1 and len(inside) == len([n for n in names if n != "(no layer)"]):
        return [n.split("/", 1)[1] if "/" in n else n for n in names]
    return names


def plot_backward_by_layer(prof, *, title: str | None = None, ax=None, path=None, figsize=None,
                           dpi: int = 100):
    """Horizontal bars of each layer's backward time per step (ms), in the network's order
    from the top, split into dW (the weight-gradient GEMM), dX (the input-gradient GEMM) and
    the rest of the layer's rules; returns the Figure. The numbers are backward_by_layer's.

    title: e.g. the model and the batch (default 'backward time by layer'). ax: an Axes to
    draw into. path: also save the figure there. figsize: inches. dpi: of the saved file.
    """
    what = "plot_backward_by_layer"
    _matplotlib(what)
    rows = backward_by_layer(prof)
    if not rows:
        raise ValueError(f"{what}: the profile holds no backward pass (run backward() inside the profile block)")
    own_figure = ax is None
    if own_figure:
        fig = _new_figure(figsize or (8.0, 1.5 + 0.4 * len(rows)), offscreen=path is not None)
        ax = fig.subplots()
    else:
        fig = _root_figure(ax)
    y = np.arange(len(rows))
    left = np.zeros(len(rows))
    for key, label, color in (("dW_ms", "dW = X$^T$dZ (weight gradient)", "#4c72b0"),
                              ("dX_ms", "dX = dZ W$^T$ (input gradient)", "#dd8452"),
                              ("other_ms", "rest (bias, activation, buffers)", "#b0b0b0")):
        width = np.array([r[key] for r in rows])
        ax.barh(y, width, left=left, height=0.62, label=label, color=color)
        left += width
    for yi, r in zip(y, rows):
        ax.annotate(f"{r['total_ms']:.3g} ms", (r["total_ms"], yi), xytext=(4, 0),
                    textcoords="offset points", va="center", fontsize=8)
    ax.set_yticks(y, _short_names([r["layer"] for r in rows]))
    ax.invert_yaxis()  # the input layer on top
    ax.set_xlabel(f"backward time per step (ms, mean of {rows[0]['steps']} steps)")
    ax.set_xlim(0, max(r["total_ms"] for r in rows) * 1.15 or 1.0)
    ax.grid(True, axis="x", alpha=0.3)
    ax.set_axisbelow(True)
    title = title or "backward time by layer"
    if own_figure:  # below the axes, where it covers no bar; the title centred on the figure
        fig.legend(loc="outside lower center", ncols=3, fontsize=8, frameon=False)
        fig.suptitle(title)
    else:
        ax.legend(fontsize=8)
        ax.set_title(title)
    _save(fig, path, dpi)
    return fig
