"""The backward-pass profiler: where backward spends its time, op by op and layer by layer.

    with cgrad.profile() as prof:
        loss = loss_fn(model(x), y)
        loss.backward()
    print(prof.table(by="layer", phase="backward"))
    prof.export_chrome_trace("trace.json")      # open in https://ui.perfetto.dev

The C core stamps every op's forward kernel, every node's backward rule, the dX and dW
GEMMs of each linear/matmul backward, and each whole backward call with a monotonic clock.
Nodes carry the scope (layer) that was current when they were recorded: nn.Module.__call__
opens one per module while profiling, and `cgrad.profiler.record("name")` opens your own.

Sequence layers get two more views (`prof.sequence_table()`): the gradient norm per time
step through each recurrent layer in the last backward (the lecture's vanishing gradient,
step by step), and the attention entropy per head of every scaled_dot_product_attention call
(a head near 0 nats attends to one position: collapsed; one near the uniform maximum
attends to all alike, as every head does at initialisation).
"""
from __future__ import annotations

import contextlib
import json
import time
from typing import Any

import numpy as np

from . import _C, _state

_OP_NAMES = _C.op_names()
PHASES = {0: "forward", 1: "backward", 2: "backward dX = dZ W^T", 3: "backward dW = X^T dZ",
          4: "backward call", 5: "optimizer", 6: "backward dX = col2im(dZ W)", 7: "backward dW = col(X)^T dZ"}
_GEMM_PHASES = (2, 3, 6, 7)  # the GEMMs inside a backward rule, each also its own event

_active = 0  # open profile() blocks


@contextlib.contextmanager
def record(name: str):
    """A named scope: ops recorded inside are attributed to `name` (nested scopes are
    joined with '/'). Costs nothing worth measuring when no profile is active."""
    if not _state.scoping:
        yield
        return
    parent = _C.get_scope()
    _C.set_scope(_state.child_scope(parent, name))
    try:
        yield
    finally:
        _C.set_scope(parent)


class profile:
    """Context manager that records per-op timings (see the module docstring).

    record_shapes: keep each node's output shape (shown by table(by='node')).
    profile_memory: show the bytes the core allocated in each row.
    with_flops: show FLOPs and GFLOP/s of the GEMM ops.
    capacity: events kept (ops + backward rules); beyond it they are counted as dropped."""

    def __init__(self, record_shapes: bool = False, profile_memory: bool = False, with_flops: bool = True,
                 capacity: int = 1_000_000):
        self.record_shapes, self.profile_memory, self.with_flops = record_shapes, profile_memory, with_flops
        self.capacity = capacity
        self.events: np.ndarray = np.empty(0, dtype=_C.PROFILE_EVENT)  # filled on exit
        self.dropped = 0
        self.shapes: dict = {}
        self.wall_ns = 0
        self._watch = SequenceWatch()

    def __enter__(self):
        global _active
        if _active:
            raise RuntimeError("profile: a profile is already active")
        _C.profile_start(self.capacity)
        _C.set_record_shapes(self.record_shapes)
        _active += 1
        _state.scoping_changed(1)
        self._watch = SequenceWatch().__enter__()
        self._t0 = time.perf_counter_ns()
        return self

    def __exit__(self, *exc):
        global _active
        self.wall_ns = time.perf_counter_ns() - self._t0
        _active -= 1
        _state.scoping_changed(-1)
        self._watch.__exit__()
        self.events, self.dropped = _C.profile_take()
        _C.set_record_shapes(False)
        self.shapes = _C.take_shapes()
        return False

    # ---- aggregation ----
    def _phase_mask(self, phase: str) -> np.ndarray:
        ev = self.events
        if phase == "forward":
            return ev["phase"] == 0
        if phase == "backward":
            return ev["phase"] == 1
        if phase == "both":
            return (ev["phase"] == 0) | (ev["phase"] == 1)
        raise ValueError(f"profile: phase must be 'forward', 'backward' or 'both', not {phase!r}")

    def total_ns(self, phase: str) -> int:
        """Measured time of the phase: whole backward calls, or the sum of forward ops."""
        ev = self.events
        if phase == "backward":
            calls = ev[ev["phase"] == 4]
            return int(np.sum(calls["t1"] - calls["t0"]))
        sel = ev[self._phase_mask(phase)]
        return int(np.sum(sel["t1"] - sel["t0"]))

    def rows(self, by: str = "op", phase: str = "backward", sort: str = "total", top: int | None = None) -> list:
        """Aggregated rows as plain dicts: name, calls, total_ms, self_ms, mean_us, percent
        (of the phase's measured total), flops and gflops_per_s where known. Backward rows
        of linear/matmul are followed by their dX and dW GEMMs."""
        if by not in ("op", "layer", "node"):
            raise ValueError(f"profile: by must be 'op', 'layer' or 'node', not {by!r}")
        ev = self.events
        both = phase == "both"
        main = ev[self._phase_mask(phase)]
        subs = ev[np.isin(ev["phase"], _GEMM_PHASES)] if phase in ("backward", "both") else ev[:0]
        # one integer key per event: (op | scope | op and node) and, for phase='both', the
        # phase; a GEMM sub-event keys as its backward node (aggregated with numpy: a long
        # profile holds a million events)
        span = max(len(_OP_NAMES), len(_state.scopes), 1)

        def keys(sel: np.ndarray, backward: np.ndarray | int) -> np.ndarray:
            if by == "op":
                k = sel["op"].astype(np.int64)
            elif by == "layer":
                k = sel["scope"].astype(np.int64)
            else:
                k = sel["node"].astype(np.int64) * span + sel["op"]
            return k * 2 + backward if both else k

        def name(k: int) -> str:
            base, back = (k // 2, k % 2) if both else (k, 0)
            if by == "op":
                label = _OP_NAMES[base]
            elif by == "layer":
                label = _state.scopes[base] if base < len(_state.scopes) else "?"
            else:
                label = f"{_OP_NAMES[base % span]} #{base // span}"
            return f"{label} [{PHASES[back]}]" if both else label

        mkeys, skeys = keys(main, main["phase"].astype(np.int64)), keys(subs, 1)
        uniq = np.unique(np.concatenate([mkeys, skeys]))
        mi, si = np.searchsorted(uniq, mkeys), np.searchsorted(uniq, skeys)
        n = len(uniq)
        sums = lambda idx, w: np.bincount(idx, weights=w, minlength=n)  # noqa: E731
        mdur = (main["t1"] - main["t0"]).astype(np.float64)
        sdur = (subs["t1"] - subs["t0"]).astype(np.float64)
        calls = np.bincount(mi, minlength=n)
        total, sub = sums(mi, mdur), sums(si, sdur)
        flops = sums(mi, main["flops"]) + sums(si, subs["flops"])
        nbytes = sums(mi, main["bytes"].astype(np.float64))
        parts: dict[int, dict[str, tuple[float, float]]] = {}
        for part in _GEMM_PHASES:
            sel = subs["phase"] == part
            ms, pf = sums(si[sel], sdur[sel]), sums(si[sel], subs["flops"][sel])
            label = PHASES[part].replace("backward ", "")
            for j in np.flatnonzero(np.bincount(si[sel], minlength=n)).tolist():
                parts.setdefault(j, {})[label] = (float(ms[j]), float(pf[j]))
        denom = max(self.total_ns("backward" if phase == "backward" else phase), 1)
        out: list[dict[str, Any]] = []
        for i, k in enumerate(uniq.tolist()):
            t = float(total[i])
            node = (k // 2 if both else k) // span
            row = {"name": name(k), "calls": int(calls[i]), "total_ms": t / 1e6,
                   "self_ms": (t - float(sub[i])) / 1e6, "mean_us": t / max(int(calls[i]), 1) / 1e3,
                   "percent": 100.0 * t / denom, "flops": float(flops[i]),
                   "gflops_per_s": float(flops[i]) / t if flops[i] and t else None,
                   "bytes": int(nbytes[i]),
                   "shape": self.shapes.get(node) if by == "node" else None,
                   "parts": {label: {"ms": ns / 1e6, "percent_of_row": 100.0 * ns / max(t, 1),
                                     "gflops_per_s": f / ns if ns else None}
                             for label, (ns, f) in parts.get(i, {}).items()}}
            out.append(row)
        sort_key = {"total": "total_ms", "self": "self_ms", "calls": "calls", "mean": "mean_us",
                    "name": "name"}.get(sort)
        if sort_key is None:
            raise ValueError(f"profile: sort must be total, self, calls, mean or name, not {sort!r}")
        out.sort(key=lambda r: r[sort_key], reverse=sort_key != "name")
        return out[:top] if top else out

    def unattributed_ms(self, phase: str = "backward") -> float:
        """Measured backward time not inside any node's rule (sorting, buffers, bookkeeping)."""
        ev = self.events
        rules = ev[ev["phase"] == 1]
        return (self.total_ns(phase) - int(np.sum(rules["t1"] - rules["t0"]))) / 1e6

    def table(self, by: str = "op", phase: str = "backward", sort: str = "total", top: int | None = 20) -> str:
        """The rows as a text table, with the lecture's names for the two GEMMs of a linear
        layer's backward (dW = X^T dZ, dX = dZ W^T) under its row."""
        rows = self.rows(by, phase, sort, top)
        head = f"{'name':<44} {'calls':>7} {'total ms':>10} {'self ms':>9} {'mean us':>9} {'%':>6}"
        head += f" {'GFLOP/s':>8}" if self.with_flops else ""
        head += f" {'alloc MB':>9}" if self.profile_memory else ""
        head += "  shape" if self.record_shapes and by == "node" else ""
        lines = [head, "-" * len(head)]
        for r in rows:
            gf = f"{r['gflops_per_s']:.1f}" if r["gflops_per_s"] else ""
            line = (f"{r['name'][:44]:<44} {r['calls']:>7} {r['total_ms']:>10.3f} {r['self_ms']:>9.3f} "
                    f"{r['mean_us']:>9.2f} {r['percent']:>6.1f}")
            line += f" {gf:>8}" if self.with_flops else ""
            line += f" {r['bytes'] / 2**20:>9.3f}" if self.profile_memory else ""
            line += f"  {r['shape']}" if self.record_shapes and by == "node" and r["shape"] else ""
            lines.append(line)
            for part, p in sorted(r["parts"].items()):
                gfp = f"{p['gflops_per_s']:.1f}" if p["gflops_per_s"] else ""
                lines.append(f"    {part:<40} {'':>7} {p['ms']:>10.3f} {'':>9} {'':>9} "
                             f"{p['percent_of_row']:>5.0f}% {gfp:>8}")
        if phase == "backward":
            total = self.total_ns("backward") / 1e6
            lines.append(f"measured backward {total:.3f} ms; not inside any rule {self.unattributed_ms():.3f} ms"
                         f"{f'; {self.dropped} events dropped' if self.dropped else ''}")
        return "\n".join(lines)

    def summary(self) -> str:
        """One screen: per step (one backward call = one step) the time in forward ops,
        backward, the optimizer and the rest (Python and everything between the ops); then
        the top backward layers and ops."""
        ev = self.events
        steps = max(int(np.sum(ev["phase"] == 4)), 1)
        opt = ev[ev["phase"] == 5]
        fwd, bwd = self.total_ns("forward"), self.total_ns("backward")
        optimizer = int(np.sum(opt["t1"] - opt["t0"]))
        rest = max(self.wall_ns - fwd - bwd - optimizer, 0)
        per = lambda ns: f"{ns / steps / 1e3:10.1f} us"  # noqa: E731
        parts = [f"per step ({steps} steps, {self.wall_ns / 1e6:.1f} ms in the profiled block):",
                 f"  forward ops  {per(fwd)}", f"  backward     {per(bwd)}", f"  optimizer    {per(optimizer)}",
                 f"  Python/other {per(rest)}",
                 "", "backward by layer:", self.table(by="layer", top=10), "",
                 "backward by op:", self.table(by="op", top=10)]
        return "\n".join(parts)

    def sequence_table(self) -> str:
        """The recurrent layers' gradient norm per time step (from the last backward) and
        the attention entropy per head (mean over the calls), with their warnings."""
        rec, att = self._watch.recurrent(), self._watch.attention()
        warnings = sequence_warnings(rec, att)
        return sequence_table(rec, att) + "".join(f"\nwarning: {w}" for w in warnings)

    def to_pandas(self, by: str = "op", phase: str = "backward"):
        import pandas as pd  # optional
        return pd.DataFrame([{k: v for k, v in r.items() if k != "parts"} for r in self.rows(by, phase)])

    def export_chrome_trace(self, path) -> None:
        """Trace Event JSON (Perfetto, chrome://tracing): forward and backward on separate
        tracks, each layer scope as a slice around its ops, each op inside."""
        ev = self.events
        if len(ev) == 0:
            trace: dict[str, Any] = {"traceEvents": []}
        else:
            t_origin = int(ev["t0"].min())
            out = [{"ph": "M", "name": "thread_name", "pid": 1, "tid": tid, "args": {"name": name}}
                   for tid, name in ((1, "forward"), (2, "backward"))]
            us = lambda t: (int(t) - t_origin) / 1e3  # noqa: E731
            for e in ev:
                phase = int(e["phase"])
                tid = 1 if phase == 0 else 2
                name = "backward()" if phase == 4 else _OP_NAMES[e["op"]]
                if phase in _GEMM_PHASES:
                    name = PHASES[phase].replace("backward ", "")
                args = {"layer": _state.scopes[e["scope"]] if 0 <= e["scope"] < len(_state.scopes) else "",
                        "node": int(e["node"])}
                if e["flops"]:
                    args["GFLOP/s"] = round(float(e["flops"]) / max(int(e["t1"] - e["t0"]), 1), 2)
                out.append({"ph": "X", "name": name, "cat": PHASES[phase], "pid": 1, "tid": tid,
                            "ts": us(e["t0"]), "dur": max(us(e["t1"]) - us(e["t0"]), 0.001), "args": args})
            # layer slices: consecutive events of one scope on a track, wrapped in one slice
            for tid, sel in ((1, ev[ev["phase"] == 0]), (2, ev[ev["phase"] == 1])):
                sel = sel[np.argsort(sel["t0"], kind="stable")]
                start = 0
                for i in range(1, len(sel) + 1):
                    if i == len(sel) or sel[i]["scope"] != sel[start]["scope"]:
                        sc = int(sel[start]["scope"])
                        if sc > 0:
                            t0, t1 = sel[start]["t0"], sel[start:i]["t1"].max()
                            out.append({"ph": "X", "name": _state.scopes[sc], "cat": "layer", "pid": 1,
                                        "tid": tid, "ts": us(t0), "dur": max(us(t1) - us(t0), 0.001)})
                        start = i
            trace = {"traceEvents": out, "displayTimeUnit": "ms"}
        with open(path, "w") as f:
            json.dump(trace, f)


# ---- sequence layers: the gradient per time step, the attention entropy per head ----
class SequenceWatch:
    """While open: labels layers (as the profiler does), keeps the recurrent layers whose
    forward ran, and averages each attention call's entropy per head by the layer (scope)
    it ran in. Read after the backward: recurrent() and attention()."""

    def __init__(self):
        self._recurrent: dict = {}  # id -> (label, module)
        self._attention: dict = {}  # label -> [sum of entropies, sum of uniform, calls]

    def __enter__(self):
        _state.attention_watchers.append(self._on_attention)
        _state.recurrent_watchers.append(self._on_recurrent)
        _state.scoping_changed(1)
        return self

    def __exit__(self, *exc):
        _state.attention_watchers.remove(self._on_attention)
        _state.recurrent_watchers.remove(self._on_recurrent)
        _state.scoping_changed(-1)
        return False

    @staticmethod
    def _label(default: str) -> str:
        return _state.scope_name(_C.get_scope()) or default

    def _on_recurrent(self, module) -> None:
        self._recurrent.setdefault(id(module), (self._label(type(module).__name__), module))

    def _on_attention(self, qshape, entropy, uniform) -> None:
        """One scaled_dot_product_attention call: the fused op's mean row entropy per
        (batch, head) block and uniform attention's over the same keys, averaged over the
        batch per head (query [B, H, L, E]; with fewer dims, one head)."""
        batch = tuple(qshape[:-2])
        heads = batch[-1] if len(batch) >= 2 else 1
        ent = entropy.numpy().astype(np.float64).reshape(-1, heads).mean(0)
        uni = np.asarray(uniform, np.float64).reshape(-1, heads).mean(0)
        acc = self._attention.setdefault(self._label("scaled_dot_product_attention"), [0.0, 0.0, 0])
        acc[0], acc[1], acc[2] = acc[0] + ent, acc[1] + uni, acc[2] + 1

    def recurrent(self) -> list:
        """[{'layer', 'step_grad_norms' [layers x directions, T]}] for each recurrent layer
        whose forward ran and whose backward since filled them."""
        return [{"layer": label, "step_grad_norms": np.asarray(m.step_grad_norms)}
                for label, m in self._recurrent.values() if getattr(m, "step_grad_norms", None) is not None]

    def attention(self) -> list:
        """[{'layer', 'entropy' [heads], 'uniform' [heads], 'calls'}], means over the calls."""
        return [{"layer": label, "entropy": e / n, "uniform": u / n, "calls": n}
                for label, (e, u, n) in self._attention.items()]


def sequence_warnings(recurrent: list, attention: list, vanish: float = 1e-3, collapsed: float = 0.05) -> list:
    """Plain-language warnings: gradients that vanish through time (the norm at some step
    below `vanish` of the largest) and collapsed heads (entropy below `collapsed` of the
    uniform's: each query attends to one position). Heads near uniform are usual at
    initialisation, so the table shows them (the '/ uniform' row) without a warning."""
    out = []
    for r in recurrent:
        for i, norms in enumerate(r["step_grad_norms"]):
            top = float(np.max(norms)) if norms.size else 0.0
            if top > 0 and float(np.min(norms)) < vanish * top:
                t = int(np.argmin(norms))
                out.append(f"{r['layer']} (layer/direction {i}): the gradient vanishes through time: |dL/dh_t| at "
                           f"step {t} is {float(norms[t]) / top:.1e} of its largest; an LSTM/GRU, a shorter "
                           f"sequence or gradient clipping help")
    for a in attention:
        frac = a["entropy"] / np.where(a["uniform"] > 0, a["uniform"], np.nan)
        for h, f in enumerate(frac):
            if np.isfinite(f) and f < collapsed:
                out.append(f"{a['layer']}: head {h} has collapsed (entropy {a['entropy'][h]:.3f} nats, "
                           f"{f:.0%} of uniform attention's): each query attends to a single position")
    return out


def sequence_table(recurrent: list, attention: list, steps_shown: int = 8) -> str:
    """The gradient norm at a few time steps of each recurrent layer, and each attention
    layer's entropy per head (nats, and as a fraction of uniform attention)."""
    lines = []
    for r in recurrent:
        norms = r["step_grad_norms"]
        T = norms.shape[-1]
        shown = sorted(set(np.linspace(0, T - 1, min(steps_shown, T)).round().astype(int).tolist()))
        lines.append(f"{r['layer']}: |dL/dh_t| by time step t")
        lines.append("  " + f"{'layer/dir':<10}" + "".join(f"{'t=' + str(t):>10}" for t in shown))
        for i, row in enumerate(norms):
            lines.append("  " + f"{i:<10}" + "".join(f"{float(row[t]):>10.2e}" for t in shown))
    for a in attention:
        heads = len(a["entropy"])
        lines.append(f"{a['layer']}: attention entropy per head (mean of {a['calls']} call(s))")
        lines.append("  " + f"{'':<10}" + "".join(f"{'head ' + str(h):>10}" for h in range(heads)))
        lines.append("  " + f"{'nats':<10}" + "".join(f"{float(e):>10.3f}" for e in a["entropy"]))
        frac = a["entropy"] / np.where(a["uniform"] > 0, a["uniform"], np.nan)
        lines.append("  " + f"{'/ uniform':<10}" + "".join(f"{float(f):>10.0%}" for f in frac))
    return "\n".join(lines) if lines else "no recurrent or attention layers ran"
