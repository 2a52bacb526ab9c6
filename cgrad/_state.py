"""The state that recording (cgrad.compile) and profiling share with the tensor, nn,
autograd and the binding: which step is being recorded on this thread, and the profiler's
scopes (layer names). It imports nothing from cgrad, so every layer may import it and
imports run one way: the binding and tensor.py below, replay.py and profiler.py above.
"""
from __future__ import annotations

import threading
from typing import Any

import numpy as np

# ---- cgrad.compile ----
_local = threading.local()
recordings_active = 0  # recordings in progress in any thread: Module.__call__ checks this cheaply
modes_version = 0      # bumped by any module's train()/eval(): replays compare modes only then


def recording() -> Any:
    """The step being recorded on this thread (a replay._Recording), if any."""
    return getattr(_local, "recording", None)


def set_recording(rec: Any) -> None:
    _local.recording = rec


def modes_changed() -> None:
    global modes_version
    modes_version += 1


def refuse_derived_index(what: str, arrays) -> None:
    """While recording, refuse an index array computed from one of the step's integer inputs
    (a mask's positions, flattened multi-indices): the replay re-reads the input, not what
    was computed from it. Arrays passed through as they are, and constants, are fine."""
    rec = recording()
    if rec is None:
        return
    for a in arrays:
        if any(np.shares_memory(a, inp) for inp in rec.index_inputs):
            raise RuntimeError(f"cgrad.compile: {what} computes new indices from the step's integer input, "
                               f"which a replay would not recompute; index with the input itself "
                               f"(t[idx]) or do this outside the step")


def refuse_while_recording(what: str) -> None:
    if recording() is not None:
        raise RuntimeError(f"cgrad.compile: {what} inside a compiled step would be frozen at its "
                           f"recorded value; do it outside the step")


# ---- profiler scopes: nodes carry the id of the scope (layer) current when recorded ----
scopes: list[str] = ["(no layer)"]  # scope id -> name; id 0 is "outside any layer"
_scope_ids: dict[str, int] = {"(no layer)": 0}
scoping = 0  # open profile() blocks + anomaly mode: while > 0, layers open scopes


def child_scope(parent: int, name: str) -> int:
    """The id of scope `name` inside scope `parent` (names joined with '/')."""
    full = f"{scopes[parent]}/{name}" if parent else name
    sid = _scope_ids.get(full)
    if sid is None:
        sid = _scope_ids[full] = len(scopes)
        scopes.append(full)
    return sid


def scope_name(sid: int) -> str:
    """The name of scope `sid`, "" for none."""
    return scopes[sid] if 0 < sid < len(scopes) else ""


def scoping_changed(delta: int) -> None:
    global scoping
    scoping += delta


# ---- sequence layers, watched by diagnostics.health() and profile() (profiler.SequenceWatch) ----
attention_watchers: list = []  # fn(query, key, attn_mask, is_causal, scale): each scaled_dot_product_attention call
recurrent_watchers: list = []  # fn(module): each recurrent layer's forward
