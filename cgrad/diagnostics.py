"""Gradient health: the lecture's diagnostics as numbers, layer by layer.

    report = cgrad.diagnostics.health(model, X, y, "cross_entropy", optimizer=opt)
    print(report)            # a table and plain-language warnings
    report.layers            # the same as plain dicts

For each activation layer: the fraction of dead ReLU units (zero for every example of the
batch; after a convolution a unit is a channel, dead when zero at every position of every
example), the fraction of saturated sigmoid/tanh outputs (local derivative below
`saturation`), the mean magnitude of the upstream gradient dL/dy arriving at the layer and
of its local gradient dy/dx. For each Linear and Conv layer: the weight-gradient norm and, when an
optimizer is given, the update ratio |dw| / |w| of one step (taken and then undone).
For sequence models: the gradient norm |dL/dh_t| per time step through each recurrent layer
(where the gradient vanishes, step by step) and the attention entropy per head of every
attention call (collapsed or uniform heads); see profiler.SequenceWatch. X may be token ids
(an integer array), and a model may return (logits, ...) as language models do: the loss
is then taken of the first output, with (N, T, C) logits flattened to (N*T, C).
"""
from __future__ import annotations

import numpy as np

from . import nn
from .autograd import no_grad
from .tensor import from_numpy
from .losses import batch_loss, loss_targets, resolve_loss
from .profiler import SequenceWatch, sequence_table, sequence_warnings
from .trainer import Callback

_ACTIVATIONS = (nn.ReLU, nn.LeakyReLU, nn.Sigmoid, nn.Tanh)
_WEIGHTED = (nn.Linear, nn.Conv1d, nn.Conv2d)


class HealthReport:
    def __init__(self, layers: list, warnings: list, recurrent: list | None = None, attention: list | None = None):
        self.layers, self.warnings = layers, warnings
        self.recurrent, self.attention = recurrent or [], attention or []

    def __str__(self):
        head = f"{'layer':<34} {'dead':>6} {'satur.':>7} {'|upstream|':>11} {'|local|':>9} {'|grad w|':>10} {'|dw|/|w|':>9}"
        lines = [head, "-" * len(head)]
        fmt = lambda v, f: "" if v is None else format(v, f)  # noqa: E731
        for r in self.layers:
            lines.append(f"{r['layer'][:34]:<34} {fmt(r.get('dead_fraction'), '6.0%'):>6} "
                         f"{fmt(r.get('saturated_fraction'), '7.0%'):>7} {fmt(r.get('upstream_grad'), '11.2e'):>11} "
                         f"{fmt(r.get('local_grad'), '9.3f'):>9} {fmt(r.get('grad_norm'), '10.2e'):>10} "
                         f"{fmt(r.get('update_ratio'), '9.1e'):>9}")
        if self.recurrent or self.attention:
            lines += ["", sequence_table(self.recurrent, self.attention), ""]
        lines += [f"warning: {w}" for w in self.warnings] or ["no warnings"]
        return "\n".join(lines)

    __repr__ = __str__


def _layers(model):
    """(label, module) for every activation, Linear and Conv layer, in forward order."""
    out = []
    for name, m in model.named_modules():
        if isinstance(m, _ACTIVATIONS + _WEIGHTED):
            out.append((f"{name}: {m._scope_label().split(': ', 1)[-1]}" if name else m._scope_label(), m))
    return out


def health(model, X, y, loss="cross_entropy", optimizer=None, saturation: float = 0.01) -> HealthReport:
    """Run one forward and backward pass on (X, y) and measure each layer's gradient health.
    The model's gradients are left as that backward made them."""
    loss_fn, loss_name = resolve_loss(loss)
    X = np.asarray(X)
    X = X if X.dtype.kind in "iub" else X.astype(np.float32)  # token ids stay integers
    y = loss_targets(loss_name, y)
    captured = {}
    layers = _layers(model)
    acts = {id(m): label for label, m in layers if isinstance(m, _ACTIVATIONS)}

    # wrap each activation's forward for this one pass, keeping its input and output
    originals = {}
    for label, m in layers:
        if isinstance(m, _ACTIVATIONS):
            originals[id(m)] = m.forward

            def forward(x, _m=m, _orig=m.forward):
                out = _orig(x)
                out.retain_grad()
                captured[id(_m)] = (x, out)
                return out
            m.__dict__["forward"] = forward
    try:
        model.zero_grad()
        with SequenceWatch() as watch:
            out = model(from_numpy(X))
            if isinstance(out, tuple):  # (logits, loss) of a language model
                out = out[0]
            if loss_name in ("cross_entropy", "nll_loss") and out.dim() == 3 and y.ndim == 2:
                out, y = out.reshape(-1, out.shape[-1]), y.reshape(-1)  # per token
            batch_loss(loss_fn, loss_name, out, y).backward()
    finally:
        for label, m in layers:
            if id(m) in originals:
                del m.__dict__["forward"]

    rows, warnings = [], []
    for label, m in layers:
        row = {"layer": label}
        if id(m) in captured:
            x, a = captured[id(m)]
            xv, av = x.numpy(), a.numpy()
            g = a.grad.numpy() if a.grad is not None else np.zeros_like(av)
            # units: the features of (N, F), the channels of (N, C, L...) (dead everywhere = a dead filter)
            units = np.moveaxis(av, 1, -1).reshape(-1, av.shape[1]) if av.ndim > 1 else av.reshape(1, -1)
            if isinstance(m, (nn.ReLU, nn.LeakyReLU)):
                local = (xv > 0).astype(np.float64) if isinstance(m, nn.ReLU) else np.where(xv > 0, 1.0, m.negative_slope)
                dead = float(np.mean(np.all(units <= 0, axis=0))) if isinstance(m, nn.ReLU) else 0.0
                row["dead_fraction"] = dead
                if dead >= 0.5:
                    warnings.append(f"{label}: {dead:.0%} of ReLU units are dead (zero for every example); "
                                    f"lower the learning rate or check the initialisation and biases")
            else:
                local = av * (1 - av) if isinstance(m, nn.Sigmoid) else 1 - av * av
                peak = 0.25 if isinstance(m, nn.Sigmoid) else 1.0
                sat = float(np.mean(local < saturation * peak))
                row["saturated_fraction"] = sat
                if sat >= 0.5:
                    warnings.append(f"{label}: {sat:.0%} of outputs are saturated (local gradient below "
                                    f"{saturation:g} of its peak): gradients vanish here; scale the inputs "
                                    f"or the initial weights down, or use ReLU")
            row["upstream_grad"] = float(np.mean(np.abs(g)))
            row["local_grad"] = float(np.mean(np.abs(local)))
        if isinstance(m, _WEIGHTED):
            gw = m.weight.grad
            row["grad_norm"] = float(np.linalg.norm(gw.numpy())) if gw is not None else 0.0
            if row["grad_norm"] < 1e-8:
                warnings.append(f"{label}: the weight gradient is zero; nothing upstream lets a gradient through")
        rows.append(row)

    if optimizer is not None:  # one step, measured, then undone
        state = optimizer.state_dict()
        before = [p.numpy().copy() for p in model.parameters()]
        weights = {id(m): m.weight.numpy().copy() for _, m in layers if isinstance(m, _WEIGHTED)}
        optimizer.step()
        for row, (label, m) in zip(rows, layers):
            if isinstance(m, _WEIGHTED):
                w0 = weights[id(m)]
                row["update_ratio"] = float(np.linalg.norm(m.weight.numpy() - w0)) / max(float(np.linalg.norm(w0)), 1e-12)
                if row["update_ratio"] > 1e-1:
                    warnings.append(f"{label}: one step changes the weights by {row['update_ratio']:.0%}; "
                                    f"the learning rate is probably too high (about 1e-3 is healthy)")
        with no_grad():
            for p, b in zip(model.parameters(), before):
                p.copy_(b)
        optimizer.load_state_dict(state)
    recurrent, attention = watch.recurrent(), watch.attention()
    return HealthReport(rows, warnings + sequence_warnings(recurrent, attention), recurrent, attention)


class GradientHealth(Callback):
    """Trainer callback: at the end of every `every` epochs, measure health() on (X, y)
    (e.g. a sample of the training data: dead units are then those dead for all of it),
    store the report in logs['health'] and print its warnings."""

    def __init__(self, X, y, every: int = 1, verbose: bool = True):
        self.X, self.y, self.every, self.verbose = X, y, every, verbose
        self.reports: list = []

    def on_epoch_end(self, epoch, logs):
        if epoch % self.every:
            return
        t = self.trainer
        report = health(t.model, self.X, self.y, t.loss_fn, t.optimizer)
        self.reports.append(report)
        logs["health"] = report
        if self.verbose:
            for w in report.warnings:
                print(f"epoch {epoch}: {w}")
