# Record once, replay (csrc/replay.c; the facade is cgrad/replay.py); included by _C.pyx.

cdef class Program:
    """A recorded step: replaying it reruns its ops and backward calls in C and calls back
    into Python at each point recorded with capture_call(), and at a point recorded with
    capture_native() whose optimizer plan is stale."""
    cdef cg_program *p
    cdef list plans   # the OptimPlans of its native points (alive while it is), each once

    def __init__(self):
        self.plans = []

    def __cinit__(self):
        _check(cg_program_new(&self.p))

    def __dealloc__(self):
        cg_program_free(self.p)

    def begin(self):
        """Start recording on this thread."""
        _check(cg_capture_begin(self.p))

    def resume(self):
        cg_capture_swap(self.p)

    def bind_index_inputs(self, list arrays):
        """The step's integer inputs (C-contiguous int64 arrays that stay alive)."""
        cdef int n = len(arrays)
        cdef const void **ptrs = <const void **>PyMem_Malloc(max(n, 1) * sizeof(void *))
        cdef int64_t *sizes = <int64_t *>PyMem_Malloc(max(n, 1) * sizeof(int64_t))
        cdef int64_t[::1] view
        try:
            for i in range(n):
                view = arrays[i].reshape(-1)
                ptrs[i] = &view[0] if view.shape[0] else NULL
                sizes[i] = view.shape[0] * sizeof(int64_t)
            cg_program_bind_index_inputs(self.p, n, ptrs, sizes)
        finally:
            PyMem_Free(ptrs)
            PyMem_Free(sizes)

    def capture_native(self, OptimPlan plan, int which, int64_t arg):
        """Mark a point where replays run plan's step (which 0) or zero_grad (which 1, arg:
        set_to_none) in C; returns its index, that of its Python fallback in calls."""
        cdef int64_t idx = 0
        _check(cg_capture_native(cg_optim_native_step if which == 0 else cg_optim_native_zero_grad,
                                 &plan.o, arg, &idx))
        if not any(p is plan for p in self.plans):
            self.plans.append(plan)
        return idx

    def run(self, list calls):
        """Replay; calls[i]() runs at the i-th recorded call point (and at a native one
        whose plan is stale: the Python method, which refreshes it)."""
        cdef size_t pc = 0
        cdef int64_t call = 0
        cdef cg_status st
        for plan in self.plans:
            (<OptimPlan>plan).check()
        while True:
            with nogil:
                st = cg_program_run(self.p, &pc, &call)
            _check(st)
            if call < 0:
                return
            calls[call]()
            for plan in self.plans:  # the Python may have changed a hyperparameter
                (<OptimPlan>plan).check()

    def stats(self):
        """(ops, Python call points, native call points, instructions)"""
        cdef int64_t ops, ncalls, nnative, ninstr
        cg_program_stats(self.p, &ops, &ncalls, &nnative, &ninstr)
        return ops, ncalls - nnative, nnative, ninstr


cdef inline bint _same_kind(const char *a, const char *b):
    """Two struct-module formats for one element type ('f' and '=f' alike)."""
    if a[0] in b"@=<": a += 1
    if b[0] in b"@=<": b += 1
    return a[0] == b[0] and a[1] == 0 and b[1] == 0

def copy_into(object dst, object src):
    """dst[...] = src for a replay's inputs: a memcpy when both are C-contiguous buffers of
    one element type and size, numpy's copy (with conversion) otherwise."""
    cdef Py_buffer bd, bs
    cdef bint done = False
    try:
        PyObject_GetBuffer(dst, &bd, PyBUF_C_CONTIGUOUS | PyBUF_FORMAT | PyBUF_WRITABLE)
    except (BufferError, TypeError, ValueError):
        np.copyto(np.asarray(dst), np.asarray(src), casting="unsafe")
        return
    try:
        try:
            PyObject_GetBuffer(src, &bs, PyBUF_C_CONTIGUOUS | PyBUF_FORMAT)
        except (BufferError, TypeError, ValueError):
            pass
        else:
            try:
                if bd.len == bs.len and bd.itemsize == bs.itemsize and bd.format != NULL \
                        and bs.format != NULL and _same_kind(bd.format, bs.format):
                    memcpy(bd.buf, bs.buf, bd.len)
                    done = True
            finally:
                PyBuffer_Release(&bs)
    finally:
        PyBuffer_Release(&bd)
    if not done:
        np.copyto(np.asarray(dst), np.asarray(src), casting="unsafe")

def capture_end():
    """Stop (or pause) recording on this thread."""
    cg_capture_swap(NULL)

def capture_active():
    return bool(cg_capture_active())

def capture_call():
    """Mark a point where replays must call back into Python; returns its index."""
    cdef int64_t idx = 0
    _check(cg_capture_call(&idx))
    return idx

def input_spec(list inputs, tuple args):
    """For feed_inputs: per positional argument, (dst, its address, bytes, ndim, shape,
    struct format) for an array copied into the recorded input dst, or (None, type, value)
    for any other argument. inputs: the recording's (position, dst) pairs."""
    cdef Py_buffer b
    dsts = {pos: dst for pos, dst in inputs}
    spec = []
    for i, a in enumerate(args):
        if i not in dsts:
            spec.append((None, type(a), a))
            continue
        if type(a) is not np.ndarray:
            return None  # tensors and array-likes take the slow path
        PyObject_GetBuffer(dsts[i], &b, PyBUF_C_CONTIGUOUS | PyBUF_FORMAT | PyBUF_WRITABLE)
        try:
            spec.append((dsts[i], <size_t>b.buf, b.len, a.ndim, tuple(a.shape), b.format))
        finally:
            PyBuffer_Release(&b)
    return tuple(spec)

def feed_inputs(tuple spec, tuple args):
    """CompiledStep's fast path: True, each array argument copied into its recorded input,
    when args match what spec was made from exactly (the same count; each array a
    C-contiguous numpy array of the recorded shape and of the input's own format; each other
    value the same type and equal); False as soon as one does not (the caller then takes
    the slow path, which copies every input again)."""
    cdef Py_buffer b
    cdef Py_ssize_t k
    cdef bint ok
    if len(args) != len(spec):
        return False
    for i in range(len(spec)):
        entry, a = spec[i], args[i]
        if entry[0] is None:
            if type(a) is not entry[1] or not (a is entry[2] or a == entry[2]):
                return False
            continue
        if type(a) is not np.ndarray:
            return False
        try:
            PyObject_GetBuffer(a, &b, PyBUF_C_CONTIGUOUS | PyBUF_FORMAT)
        except (BufferError, TypeError, ValueError):
            return False
        try:
            ok = b.len == <Py_ssize_t>entry[2] and b.ndim == <int>entry[3] and b.format != NULL \
                and b.format == <bytes>entry[5]
            shape = entry[4]
            k = 0
            while ok and k < b.ndim:
                ok = b.shape[k] == <Py_ssize_t>shape[k]
                k += 1
            if ok:
                memcpy(<void *><size_t>entry[1], b.buf, b.len)
        finally:
            PyBuffer_Release(&b)
        if not ok:
            return False
    return True
