# Anomaly mode, graph drawing, memory counters and the profiler's events (included by _C.pyx).

# ---- anomaly mode: where each node came from, to name it when its gradient goes bad ----
cdef bint _anomaly = False
cdef dict _origins = {}   # node id -> "file:line (layer)"

def _user_frame():
    """The innermost caller outside the cgrad package, as 'file:line: code'."""
    import sys, os, linecache
    f = sys._getframe(0)  # Cython functions have no frames: this is the innermost Python one
    pkg = os.path.dirname(os.path.abspath(__file__))
    while f is not None and os.path.abspath(f.f_code.co_filename).startswith(pkg):
        f = f.f_back
    if f is None:
        return "?"
    code = linecache.getline(f.f_code.co_filename, f.f_lineno).strip()
    return f"{f.f_code.co_filename}:{f.f_lineno}: {code}"

def _scope_name():
    return _state.scope_name(cg_profile_scope())

cdef object _anomaly_context(str msg):
    """The core's anomaly message, with where the op it names was created (the core says
    which node as data, cg_anomaly_node), or else where the user's code is now."""
    cdef int64_t node = cg_anomaly_node()
    if node >= 0 and node in _origins:
        return f"{msg}; the op was created at {_origins[node]}"
    layer = _scope_name()
    return f"{msg}; at {_user_frame()}" + (f" (layer {layer})" if layer else "")

def graph_node(TensorBase t):
    """(op name or None for a leaf, [input tensors]) of the op that made t; the inputs are
    new tensor objects for the same C tensors."""
    cdef cg_tensor *ins[64]
    cdef cg_tensor **buf = ins
    cdef int n = cg_node_inputs(t.t, ins, 64)
    if t.t.node == NULL:
        return None, []
    if n > 64:
        buf = <cg_tensor **>PyMem_Malloc(n * sizeof(cg_tensor *))
        if buf == NULL:
            raise MemoryError()
        cg_node_inputs(t.t, buf, n)
    out = []
    for i in range(n):
        cg_tensor_retain(buf[i])
        out.append(_wrap(buf[i]))
    if buf != ins:
        PyMem_Free(buf)
    return cg_op_name(cg_node_op_of(t.t)).decode(), out

def node_params(TensorBase t):
    """(node key, p0, p1, ip, extra) of the op that made t, for the taped second sweep
    (cgrad/_double_backward.py); extra is a numpy copy of the op's index or mask data."""
    cdef double p[2]
    cdef int64_t ip[9]
    cdef const void *extra = NULL
    cdef int op = cg_node_params(t.t, p, ip, &extra)
    if op < 0:
        return None
    name = cg_op_name(op).decode()
    data = None
    if extra != NULL:
        if name in ("gather", "scatter_add", "cross_entropy"):
            data = np.asarray(<const int64_t[:ip[0]]>(<const int64_t *>extra)).copy() if ip[0] else np.zeros(0, np.int64)
        elif name == "where" and t.t.numel:
            data = np.asarray(<const uint8_t[:t.t.numel]>(<const uint8_t *>extra)).astype(bool)
    return (<size_t>cg_node_key(t.t), p[0], p[1], tuple([ip[i] for i in range(9)]), data)

def tensor_key(TensorBase t):
    """An id for the C tensor behind t (stable while it lives)."""
    return <size_t>t.t

def set_anomaly(bint enabled):
    global _anomaly
    _anomaly = enabled
    cg_set_anomaly(enabled)
    if not enabled:
        _origins.clear()

def is_anomaly_enabled():
    return bool(_anomaly)

def live_bytes():
    """Bytes currently allocated by the C core (tensors, storages, tape nodes)."""
    return cg_live_bytes()

def alloc_count():
    """Number of allocations the C core has made since import."""
    return cg_alloc_count()

def fresh_alloc_count():
    """Allocations since import that the core's caches could not serve (calls to malloc)."""
    return cg_fresh_alloc_count()

# ---------------------------------------------------------------- profiler

PROFILE_EVENT = np.dtype([("t0", np.uint64), ("t1", np.uint64), ("node", np.int64), ("flops", np.float64),
                          ("bytes", np.int64), ("op", np.int32), ("phase", np.int32), ("scope", np.int32)],
                         align=True)
cdef bint _record_shapes = False
cdef dict _shapes = {}   # node id -> output shape, while a profile records shapes

def set_record_shapes(bint on):
    global _record_shapes
    _record_shapes = on

def take_shapes():
    out = dict(_shapes)
    _shapes.clear()
    return out

def profile_start(int64_t capacity):
    if PROFILE_EVENT.itemsize != sizeof(cg_prof_event):
        raise RuntimeError("profile: event layout differs between C and Python")
    _check(cg_profile_start(capacity))

def profile_stop():
    cg_profile_stop()

def profile_take():
    """Stop, copy the events out as a numpy structured array, free the C buffer."""
    cdef int64_t n = 0, dropped = 0
    cg_profile_stop()
    cdef const cg_prof_event *ev = cg_profile_events(&n, &dropped)
    out = np.empty(n, dtype=PROFILE_EVENT)
    cdef unsigned char[::1] raw
    if n:
        raw = out.view(np.uint8)
        memcpy(<void *>&raw[0], <const void *>ev, n * sizeof(cg_prof_event))
    cg_profile_clear()
    return out, dropped

def set_scope(int scope):
    cg_profile_set_scope(scope)

def get_scope():
    return cg_profile_scope()
