# cython: language_level=3, embedsignature=True
"""The binding between the C core (csrc/) and the Python facade.

Thin by design (DESIGN.md section 1): `TensorBase` holds a `cg_tensor *`; each op checks
its Python arguments once, calls one C function and wraps the result. C status codes
become Python exceptions in `_raise`. No math and no per-element loops here.
"""
from cpython.buffer cimport PyObject_GetBuffer, PyBuffer_Release, PyBUF_C_CONTIGUOUS, PyBUF_FORMAT, PyBUF_WRITABLE
from cpython.mem cimport PyMem_Malloc, PyMem_Free
from cpython.object cimport PyTypeObject
from cpython.ref cimport PyObject
from libc.stdint cimport int64_t, uint8_t
from libc.string cimport memcpy, memset

from ._cg cimport *

import numpy as np

__all__ = ["TensorBase"]

cdef type _TensorType = None   # the facade's Tensor class; results are created as it
cdef tuple _NO_ARGS = ()

cdef dict _EXC = {
    CG_ERR_SHAPE: ValueError, CG_ERR_DTYPE: TypeError, CG_ERR_NOMEM: MemoryError,
    CG_ERR_INDEX: IndexError, CG_ERR_VALUE: ValueError, CG_ERR_RUNTIME: RuntimeError,
}

cdef int _raise(cg_status st) except -1:
    """Turn a failed C status into the Python exception, with the core's message."""
    msg = cg_last_error().decode("utf-8", "replace")
    if _anomaly and msg.startswith("anomaly:"):
        msg = _anomaly_context(msg)
    raise _EXC.get(st, RuntimeError)(msg)

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
    from . import profiler
    sc = cg_profile_scope()
    return profiler._scopes[sc] if 0 < sc < len(profiler._scopes) else ""

cdef object _anomaly_context(str msg):
    import re
    m = re.search(r"node (\d+)", msg)
    if m and int(m.group(1)) in _origins:
        return f"{msg}; the op was created at {_origins[int(m.group(1))]}"
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

cdef inline int _check(cg_status st) except -1:
    if st != CG_OK:
        _raise(st)
    return 0

cdef object _NP_DTYPE = (np.dtype(np.float32), np.dtype(np.float64))

cdef int64_t _n_wrapped = 0  # Python tensor objects made for C results (benchmarks report it per step)

def wrapped_count():
    """How many Python tensor objects have been made for C results so far."""
    return _n_wrapped

cdef inline object _wrap(cg_tensor *t):
    """A new facade Tensor owning the reference t (created without calling __init__)."""
    global _n_wrapped
    _n_wrapped += 1
    # tp_new directly: no __init__, no argument parsing (this is the per-op hot path)
    cdef TensorBase o = <TensorBase>(<PyTypeObject*>_TensorType).tp_new(_TensorType, <PyObject*>_NO_ARGS, NULL)
    cg_tensor_release(o.t)  # the placeholder from __cinit__
    o.t = t
    if _record_shapes and t.node != NULL:
        _shapes[cg_node_id_of(t)] = tuple([t.shape[i] for i in range(t.ndim)])
    if _anomaly and t.node != NULL:
        layer = _scope_name()
        _origins[cg_node_id_of(t)] = _user_frame() + (f" (layer {layer})" if layer else "")
    return o

def rewrap(TensorBase x, cls):
    """A new object of class `cls` (a TensorBase subclass) for the same C tensor."""
    if not issubclass(cls, TensorBase):
        raise TypeError("rewrap: cls must subclass TensorBase")
    # TensorBase's own tp_new: cls may define a Python __new__ with other arguments
    cdef TensorBase o = <TensorBase>(<PyTypeObject*>TensorBase).tp_new(cls, <PyObject*>_NO_ARGS, NULL)
    cg_tensor_release(o.t)
    cg_tensor_retain(x.t)
    o.t = x.t
    return o

def _set_tensor_type(cls):
    """Called once by cgrad.tensor: op results are created as instances of `cls`."""
    global _TensorType
    if not issubclass(cls, TensorBase):
        raise TypeError("the tensor type must subclass TensorBase")
    _TensorType = cls

# ---------------------------------------------------------------- numpy <-> core

cdef void _release_buffer(void *ctx) noexcept with gil:
    PyBuffer_Release(<Py_buffer *>ctx)
    PyMem_Free(ctx)

cdef cg_dtype _dtype_code(object dtype) except *:
    dtype = np.dtype(dtype)
    if dtype == _NP_DTYPE[0]:
        return CG_F32
    if dtype == _NP_DTYPE[1]:
        return CG_F64
    raise TypeError(f"cgrad tensors are float32 or float64, not {dtype}")

cdef int _shape_from(object shape, int64_t *out) except -1:
    cdef int n = len(shape)
    if n > CG_MAX_DIMS:
        raise ValueError(f"tensor: rank {n} is not supported (at most {CG_MAX_DIMS} dims)")
    for i in range(n):
        out[i] = shape[i]
    return n

def from_numpy(object a, bint copy=False):
    """A tensor over `a`'s memory (no copy) when `a` is a C-contiguous, writable float32 or
    float64 array and copy is False; otherwise a converted copy (non-float input becomes
    float32). Writes through either side are seen by the other when memory is shared."""
    cdef cg_tensor *t = NULL
    cdef int64_t shape[8]
    cdef Py_buffer *view
    cdef int nd
    a = np.asarray(a)
    if a.dtype != _NP_DTYPE[0] and a.dtype != _NP_DTYPE[1]:
        a = a.astype(np.float64 if a.dtype.kind == "f" and a.dtype.itemsize > 8 else np.float32)
        copy = False  # already a fresh array
    if not (a.flags.c_contiguous and a.flags.writeable and a.flags.aligned):
        a = np.array(a, order="C", copy=True)
        copy = False
    elif copy:
        a = a.copy()
    nd = _shape_from(a.shape, shape)
    view = <Py_buffer *>PyMem_Malloc(sizeof(Py_buffer))
    if view == NULL:
        raise MemoryError()
    if PyObject_GetBuffer(a, view, PyBUF_C_CONTIGUOUS | PyBUF_FORMAT) < 0:
        PyMem_Free(view)
        raise
    st = cg_tensor_external(_dtype_code(a.dtype), nd, shape, view.buf, _release_buffer, view, &t)
    if st != CG_OK:
        _release_buffer(view)
        _raise(st)
    return _wrap(t)

def empty(shape, dtype=np.float32):
    cdef cg_tensor *t = NULL
    cdef int64_t shp[8]
    cdef int nd = _shape_from(shape, shp)
    _check(cg_tensor_empty(_dtype_code(dtype), nd, shp, &t))
    return _wrap(t)

def zeros(shape, dtype=np.float32):
    cdef cg_tensor *t = NULL
    cdef int64_t shp[8]
    cdef int nd = _shape_from(shape, shp)
    _check(cg_tensor_zeros(_dtype_code(dtype), nd, shp, &t))
    return _wrap(t)

def copy_from_array(object a, object dtype):
    """A core-owned tensor holding a copy of the array-like `a` converted to `dtype`."""
    cdef cg_tensor *t = NULL
    cdef int64_t shp[8]
    cdef Py_buffer view
    cdef cg_dtype code = _dtype_code(dtype)
    a = np.asarray(a, dtype=_NP_DTYPE[code], order="C")
    cdef int nd = _shape_from(a.shape, shp)
    _check(cg_tensor_empty(code, nd, shp, &t))
    PyObject_GetBuffer(a, &view, PyBUF_C_CONTIGUOUS)
    memcpy(t.data, view.buf, view.len)
    PyBuffer_Release(&view)
    return _wrap(t)

# ---------------------------------------------------------------- grad mode, memory, BLAS

def is_grad_enabled():
    return bool(cg_grad_enabled())

def set_grad_enabled(bint enabled):
    cg_set_grad_enabled(enabled)

def live_bytes():
    """Bytes currently allocated by the C core (tensors, storages, tape nodes)."""
    return cg_live_bytes()

def alloc_count():
    """Number of allocations the C core has made since import."""
    return cg_alloc_count()

def fresh_alloc_count():
    """Allocations since import that the core's caches could not serve (calls to malloc)."""
    return cg_fresh_alloc_count()

def op_names():
    return [cg_op_name(i).decode() for i in range(CG_OP_COUNT)]

def op_table():
    """(name, family, reads) of every op of the registry (csrc/ops.def), by op code;
    reads has bit i set when the op's backward reads input i, bit 7 for its output."""
    return [(cg_op_name(i).decode(), cg_op_family(i).decode(), cg_op_reads(i)) for i in range(CG_OP_COUNT)]

def blas_providers():
    return [cg_blas_provider_at(i).name.decode() for i in range(cg_blas_provider_count())]

def blas_current():
    return cg_blas_current().name.decode()

def blas_config():
    return cg_blas_current().config().decode()

def build_info():
    return cg_build_info().decode()

def set_blas(str name):
    _check(cg_blas_select(name.encode()))

def set_num_threads(int n):
    if n < 1:
        raise ValueError(f"set_num_threads: need at least 1 thread, got {n}")
    cg_set_num_threads(n)

def get_num_threads():
    return cg_get_num_threads()

cg_set_num_threads(1)  # small ops gain nothing from threads (DESIGN.md section 6)

# A GEMM of at least this many multiply-adds runs without the GIL, so that other Python
# threads go on meanwhile; below it, releasing and taking the GIL back costs more than it frees.
cdef int64_t _NOGIL_MACS = 1 << 18

cdef cg_tensor *_PLACEHOLDER = NULL
cdef int64_t _ZERO_SHAPE[1]
_ZERO_SHAPE[0] = 0
_check(cg_tensor_empty(CG_F32, 1, _ZERO_SHAPE, &_PLACEHOLDER))  # shape (0,): in-place ops are no-ops

# ---------------------------------------------------------------- op entry points

cdef inline bint _is_scalar(object x):
    return type(x) is float or type(x) is int or isinstance(x, (float, int, np.number))

cdef inline TensorBase _const_like(object x, TensorBase like):
    """A constant (no grad) tensor from a scalar or array-like, in like's dtype."""
    if isinstance(x, TensorBase):
        return <TensorBase>x
    if isinstance(x, (list, tuple, np.ndarray)) or _is_scalar(x) or hasattr(x, "__array__"):
        return <TensorBase>copy_from_array(x, _NP_DTYPE[like.t.dtype])
    raise TypeError(f"unsupported operand type for a tensor op: {type(x).__name__}")

cdef inline object _unary(TensorBase x, int op, double p0=0, double p1=0):
    cdef cg_tensor *out = NULL
    _check(cg_unary(op, x.t, p0, p1, &out))
    return _wrap(out)

cdef inline object _binary(int op, TensorBase a, TensorBase b):
    cdef cg_tensor *out = NULL
    _check(cg_binary(op, a.t, b.t, &out))
    return _wrap(out)

cdef object _reduce(TensorBase x, int op, object axis, bint keepdims):
    """Reduce over `axis` (None, int or tuple): adjacent axes go to C in one run, other
    runs one after another from the last, so earlier axis numbers stay valid."""
    cdef cg_tensor *out = NULL
    cdef int nd = x.t.ndim, a0, a1
    cdef list axes
    if axis is None:  # the common case, one run over every axis
        _check(cg_reduce(op, x.t, 0, nd, keepdims, &out))
        return _wrap(out)
    opname = cg_op_name(op).decode()
    axes = list(axis) if isinstance(axis, (tuple, list)) else [axis]
    for i in range(len(axes)):
        a = int(axes[i])
        if a < -nd or a >= nd:  # as numpy, a 0-dim tensor has no axis to name
            raise IndexError(f"{opname}: axis {a} is out of range for a tensor of shape {x.shape}")
        axes[i] = a + nd if a < 0 else a
    axes = sorted(set(axes))
    if not axes:
        _check(cg_reduce(op, x.t, 0, 0, keepdims, &out))
        return _wrap(out)
    result = x
    i = len(axes)
    while i > 0:
        a1 = axes[i - 1] + 1
        i -= 1
        while i > 0 and axes[i - 1] == axes[i] - 1:
            i -= 1
        a0 = axes[i]
        _check(cg_reduce(op, (<TensorBase>result).t, a0, a1, keepdims, &out))
        result = _wrap(out)
    return result

cdef object _reshape(TensorBase x, object shape):
    cdef cg_tensor *out = NULL
    cdef int64_t shp[8]
    cdef int nd = len(shape)
    cdef int64_t known = 1
    cdef int infer = -1
    if nd > CG_MAX_DIMS:
        raise ValueError(f"reshape: rank {nd} is not supported (at most {CG_MAX_DIMS} dims)")
    for i in range(nd):
        shp[i] = shape[i]
        if shp[i] == -1:
            if infer >= 0:
                raise ValueError(f"reshape: only one dimension can be -1, got {tuple(shape)}")
            infer = i
        else:
            known *= shp[i]
    if infer >= 0:
        if known == 0 or x.t.numel % known:
            raise ValueError(f"reshape: cannot reshape a tensor of shape {x.shape} into shape {tuple(shape)}")
        shp[infer] = x.t.numel // known
    _check(cg_reshape(x.t, nd, shp, &out))
    return _wrap(out)

def reshape(TensorBase x, shape):
    return _reshape(x, shape)

def permute(TensorBase x, axes):
    cdef cg_tensor *out = NULL
    cdef int perm[8]
    cdef int nd = x.t.ndim
    if len(axes) != nd:
        raise ValueError(f"permute: {len(axes)} axes given for a tensor of shape {x.shape}")
    for i in range(nd):
        a = int(axes[i])
        perm[i] = a + nd if a < 0 else a
    _check(cg_permute(x.t, perm, &out))
    return _wrap(out)

def slice_(TensorBase x, starts, steps, lengths):
    """Basic slicing: per axis a start, a non-zero step and the result's length."""
    cdef cg_tensor *out = NULL
    cdef int64_t st[8]
    cdef int64_t sp[8]
    cdef int64_t ln[8]
    for i in range(x.t.ndim):
        st[i] = starts[i]
        sp[i] = steps[i]
        ln[i] = lengths[i]
    _check(cg_slice(x.t, st, sp, ln, &out))
    return _wrap(out)

def gather(TensorBase x, index):
    """Rows of x picked by an integer array (axis 0); repeated rows add up in backward."""
    cdef cg_tensor *out = NULL
    cdef int64_t[::1] idx = np.ascontiguousarray(index, dtype=np.int64).reshape(-1)
    cdef int64_t dummy = 0
    _check(cg_gather(x.t, &idx[0] if idx.shape[0] else &dummy, idx.shape[0], &out))
    return _wrap(out)

def concat(tensors, int axis):
    cdef cg_tensor *out = NULL
    cdef int n = len(tensors)
    cdef cg_tensor **xs = <cg_tensor **>PyMem_Malloc(max(n, 1) * sizeof(cg_tensor *))
    if xs == NULL:
        raise MemoryError()
    try:
        for i in range(n):
            xs[i] = (<TensorBase?>tensors[i]).t
        _check(cg_concat(n, xs, axis, &out))
    finally:
        PyMem_Free(xs)
    return _wrap(out)

def where(mask, TensorBase a, TensorBase b):
    """mask: a bool/uint8 array already broadcast to the result's shape."""
    cdef cg_tensor *out = NULL
    cdef int64_t shp[8]
    m = np.asarray(mask, dtype=np.uint8, order="C")
    cdef int nd = _shape_from(m.shape, shp)
    cdef const uint8_t[::1] flat = m.reshape(-1)
    cdef uint8_t dummy = 0
    _check(cg_where(&flat[0] if flat.shape[0] else &dummy, nd, shp, a.t, b.t, &out))
    return _wrap(out)

def binary(int op, TensorBase a, TensorBase b):
    return _binary(op, a, b)

def unary(int op, TensorBase x, double p0=0, double p1=0):
    return _unary(x, op, p0, p1)

def softmax(int op, TensorBase x, int axis):
    cdef cg_tensor *out = NULL
    cdef int nd = x.t.ndim
    if axis < -max(nd, 1) or axis >= max(nd, 1):
        raise IndexError(f"{cg_op_name(op).decode()}: axis {axis} is out of range for a tensor of shape {x.shape}")
    _check(cg_softmax(op, x.t, axis + nd if axis < 0 else axis, &out))
    return _wrap(out)

cdef object _matmul(TensorBase a, TensorBase b):
    """numpy's matmul semantics; 1-D operands are promoted and the added dim removed."""
    cdef cg_tensor *out = NULL
    cdef int64_t macs
    if a.t.ndim == 0 or b.t.ndim == 0:
        raise ValueError(f"matmul: operands must not be 0-dim, got shapes {a.shape} and {b.shape}")
    if a.t.ndim == 1 or b.t.ndim == 1:
        a2 = _reshape(a, (1, a.t.shape[0])) if a.t.ndim == 1 else a
        b2 = _reshape(b, (b.t.shape[0], 1)) if b.t.ndim == 1 else b
        z = _matmul(a2, b2)
        shape = z.shape
        if a.t.ndim == 1:
            shape = shape[:-2] + shape[-1:]
        if b.t.ndim == 1:
            shape = shape[:-1]
        return _reshape(z, shape)
    macs = a.t.numel * b.t.shape[b.t.ndim - 1]
    if macs >= _NOGIL_MACS:
        with nogil:
            st = cg_matmul(a.t, b.t, &out)
    else:
        st = cg_matmul(a.t, b.t, &out)
    _check(st)
    return _wrap(out)

def linear(TensorBase x, TensorBase weight, TensorBase bias=None):
    """x @ weight.T + bias in one op (weight in PyTorch's [out, in] layout)."""
    cdef cg_tensor *out = NULL
    cdef cg_status st
    cdef cg_tensor *bt = bias.t if bias is not None else NULL
    if weight.t.ndim == 2 and x.t.numel * weight.t.shape[0] >= _NOGIL_MACS:
        with nogil:
            st = cg_linear(x.t, weight.t, bt, &out)
    else:
        st = cg_linear(x.t, weight.t, bt, &out)
    _check(st)
    return _wrap(out)

def matmul(a, b):
    if not isinstance(a, TensorBase):
        a = _const_like(a, b)
    if not isinstance(b, TensorBase):
        b = _const_like(b, a)
    return _matmul(a, b)

_REDUCTIONS = {"none": 0, "mean": 1, "sum": 2}

def cross_entropy(TensorBase logits, targets, str reduction="mean"):
    """Fused log_softmax + negative log-likelihood over integer class targets."""
    cdef cg_tensor *out = NULL
    if reduction not in _REDUCTIONS:
        raise ValueError(f"cross_entropy: reduction must be 'mean', 'sum' or 'none', not {reduction!r}")
    if isinstance(targets, TensorBase):
        targets = np.asarray(targets)
    tg = np.asarray(targets)
    if tg.dtype.kind == "f":
        if not np.all(tg == np.round(tg)):
            raise TypeError("cross_entropy: targets must be integer class indices")
    elif tg.dtype.kind not in "iu":
        raise TypeError(f"cross_entropy: targets must be integer class indices, not {tg.dtype}")
    if logits.t.ndim != 2 or tg.shape != (logits.t.shape[0],):
        raise ValueError(f"cross_entropy: logits of shape {logits.shape} need targets of shape "
                         f"({logits.shape[0] if logits.t.ndim else '?'},), got {tg.shape}")
    cdef int64_t[::1] idx = np.ascontiguousarray(tg, dtype=np.int64)
    cdef int64_t dummy = 0
    _check(cg_cross_entropy(logits.t, &idx[0] if idx.shape[0] else &dummy, _REDUCTIONS[reduction], &out))
    return _wrap(out)


# ---- record once, replay (csrc/replay.c; the facade is cgrad/replay.py) ----
cdef class Program:
    """A recorded step: replaying it reruns its ops and backward calls in C and calls back
    into Python at each point recorded with capture_call()."""
    cdef cg_program *p

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

    def run(self, list calls):
        """Replay; calls[i]() runs at the i-th recorded call point."""
        cdef size_t pc = 0
        cdef int64_t call = 0
        cdef cg_status st
        while True:
            with nogil:
                st = cg_program_run(self.p, &pc, &call)
            _check(st)
            if call < 0:
                return
            calls[call]()

    def stats(self):
        """(ops, Python call points, instructions)"""
        cdef int64_t ops, ncalls, ninstr
        cg_program_stats(self.p, &ops, &ncalls, &ninstr)
        return ops, ncalls, ninstr


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


cdef class ParamSet:
    """The parameters an optimizer updates, as a C array, with its per-parameter state
    (momentum, or Adam's two moments). One call updates every parameter."""
    cdef cg_tensor **params
    cdef cg_tensor **state0
    cdef cg_tensor **state1
    cdef int n
    cdef readonly list tensors

    def __cinit__(self, tensors):
        self.tensors = list(tensors)
        self.n = len(self.tensors)
        cdef size_t size = max(self.n, 1) * sizeof(cg_tensor *)
        self.params = <cg_tensor **>PyMem_Malloc(size)
        self.state0 = <cg_tensor **>PyMem_Malloc(size)
        self.state1 = <cg_tensor **>PyMem_Malloc(size)
        if self.params == NULL or self.state0 == NULL or self.state1 == NULL:
            raise MemoryError()
        # all NULL first: __dealloc__ runs even when a check below raises half-way
        memset(self.params, 0, size)
        memset(self.state0, 0, size)
        memset(self.state1, 0, size)
        for i in range(self.n):
            t = <TensorBase?>self.tensors[i]
            if t.t.node != NULL:
                raise ValueError(f"optimizer: parameter {i} is not a leaf tensor")
            self.params[i] = t.t
            cg_tensor_retain(t.t)
            self.state0[i] = NULL
            self.state1[i] = NULL

    def __dealloc__(self):
        for i in range(self.n):  # cg_tensor_release(NULL) does nothing
            if self.params != NULL:
                cg_tensor_release(self.params[i])
            if self.state0 != NULL:
                cg_tensor_release(self.state0[i])
            if self.state1 != NULL:
                cg_tensor_release(self.state1[i])
        PyMem_Free(self.params)
        PyMem_Free(self.state0)
        PyMem_Free(self.state1)

    def sgd_step(self, double lr, double momentum, double dampening, double weight_decay, bint nesterov):
        _check(cg_sgd_step(self.n, self.params, self.state0, lr, momentum, dampening, weight_decay, nesterov))

    def adam_step(self, int64_t step, double lr, double beta1, double beta2, double eps,
                  double weight_decay, bint decoupled):
        _check(cg_adam_step(self.n, self.params, self.state0, self.state1, step, lr, beta1, beta2,
                            eps, weight_decay, decoupled))

    def zero_grad(self, bint set_to_none=True):
        cg_zero_grad(self.n, self.params, set_to_none)

    def clip_grad_norm(self, double max_norm):
        cdef double total = 0
        cg_clip_grad_norm(self.n, self.params, max_norm, &total)
        return total

    def get_state(self, int which):
        """Copies of state buffer `which` (0 or 1), None where not yet made."""
        cdef cg_tensor **arr = self.state0 if which == 0 else self.state1
        cdef cg_tensor *c = NULL
        out = []
        for i in range(self.n):
            if arr[i] == NULL:
                out.append(None)
            else:
                _check(cg_tensor_astype(arr[i], arr[i].dtype, &c))
                out.append(_wrap(c))
        return out

    def set_state(self, int which, list values):
        """Load state buffer `which` from arrays (None clears an entry)."""
        cdef cg_tensor **arr = self.state0 if which == 0 else self.state1
        cdef TensorBase v
        if len(values) != self.n:
            raise ValueError(f"optimizer state has {len(values)} entries for {self.n} parameters")
        converted = []
        for i in range(self.n):  # check everything before changing anything
            v = None if values[i] is None else <TensorBase>copy_from_array(values[i], _NP_DTYPE[self.params[i].dtype])
            if v is not None and v.t.numel != self.params[i].numel:
                raise ValueError(f"optimizer state entry {i} has {v.t.numel} values for a "
                                 f"parameter of {self.params[i].numel}")
            converted.append(v)
        for i in range(self.n):
            cg_tensor_release(arr[i])
            arr[i] = NULL
            if converted[i] is not None:
                v = converted[i]
                cg_tensor_retain(v.t)
                arr[i] = v.t


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


# Op codes the facade uses by name.
OPS = {cg_op_name(i).decode(): i for i in range(CG_OP_COUNT)}

# ---------------------------------------------------------------- the tensor

cdef class TensorBase:
    """The core of `cgrad.Tensor`: a reference to a C tensor and the hot operators.
    Construct tensors with `cgrad.tensor`, not with this class."""
    cdef cg_tensor *t
    cdef Py_ssize_t _bshape[8]
    cdef Py_ssize_t _bstrides[8]

    def __cinit__(self):
        # Never NULL, whoever creates the object: a shared empty tensor until _wrap sets it.
        cg_tensor_retain(_PLACEHOLDER)
        self.t = _PLACEHOLDER

    def __init__(self, *args, **kwargs):
        raise TypeError("make tensors with cgrad.tensor(data), cgrad.zeros(shape), ...")

    def __dealloc__(self):
        if self.t != NULL:
            cg_tensor_release(self.t)
            self.t = NULL

    # ---- buffer protocol: numpy sees the data without a copy ----
    def __getbuffer__(self, Py_buffer *buf, int flags):
        cdef cg_tensor *t = self.t
        cdef Py_ssize_t size = cg_dtype_size(t.dtype)
        cdef Py_ssize_t stride = size
        for i in range(t.ndim - 1, -1, -1):
            self._bshape[i] = t.shape[i]
            self._bstrides[i] = stride
            stride *= t.shape[i]
        buf.buf = t.data
        buf.obj = self
        buf.len = t.numel * size
        buf.readonly = 0
        buf.itemsize = size
        buf.format = b"f" if t.dtype == CG_F32 else b"d"
        buf.ndim = t.ndim
        buf.shape = self._bshape
        buf.strides = self._bstrides
        buf.suboffsets = NULL
        buf.internal = NULL

    def __releasebuffer__(self, Py_buffer *buf):
        pass

    def numpy(self):
        """The values as a numpy array that shares this tensor's memory (no copy)."""
        return np.asarray(memoryview(self))

    # ---- properties ----
    @property
    def shape(self):
        return tuple([self.t.shape[i] for i in range(self.t.ndim)])

    @property
    def ndim(self):
        return self.t.ndim

    @property
    def dtype(self):
        return _NP_DTYPE[self.t.dtype]

    @property
    def size(self):
        return self.t.numel

    def numel(self):
        return self.t.numel

    def __len__(self):
        if self.t.ndim == 0:
            raise TypeError("len() of a 0-dim tensor")
        return self.t.shape[0]

    @property
    def requires_grad(self):
        return bool(cg_tensor_needs_grad(self.t))

    @requires_grad.setter
    def requires_grad(self, bint value):
        if self.t.node != NULL:
            raise RuntimeError("requires_grad can only be changed on leaf tensors; use "
                               ".detach() to get a leaf from this tensor")
        self.t.requires_grad = value

    @property
    def is_leaf(self):
        return self.t.node == NULL

    @property
    def grad_fn(self):
        """Name of the op that made this tensor (None for a leaf)."""
        return cg_op_name(cg_node_op_of(self.t)).decode() if self.t.node != NULL else None

    @property
    def grad(self):
        if cg_capture_active():
            raise RuntimeError("grad: reading .grad inside a step being recorded by cgrad.compile is not "
                               "supported (the value read would be baked into every replay); read it "
                               "outside the compiled step")
        if self.t.grad == NULL:
            return None
        cg_tensor_retain(self.t.grad)
        return _wrap(self.t.grad)

    @grad.setter
    def grad(self, value):
        cdef TensorBase g
        if value is None:
            if self.t.grad != NULL:
                cg_tensor_release(self.t.grad)
                self.t.grad = NULL
            return
        g = <TensorBase?>value
        if g.shape != self.shape or g.t.dtype != self.t.dtype:
            raise ValueError(f"grad: assigned gradient of shape {g.shape} and dtype {g.dtype} "
                             f"to a tensor of shape {self.shape} and dtype {self.dtype}")
        if g.t.node != NULL:
            raise ValueError("grad: the assigned gradient must not have a graph; detach it first")
        cg_tensor_retain(g.t)
        if self.t.grad != NULL:
            cg_tensor_release(self.t.grad)
        self.t.grad = g.t

    def retain_grad(self):
        """Keep this non-leaf tensor's gradient in .grad after backward."""
        if self.t.node != NULL:
            self.t.retains_grad = 1

    def detach(self):
        """A new leaf sharing this tensor's memory, outside the graph."""
        cdef cg_tensor *out = NULL
        _check(cg_tensor_detach(self.t, &out))
        return _wrap(out)

    def item(self):
        """The value of a one-element tensor as a Python float."""
        if self.t.numel != 1:
            raise ValueError(f"item: only a tensor with one element can be converted to a "
                             f"Python number, this one has shape {self.shape}")
        if self.t.dtype == CG_F32:
            return <double>(<float *>self.t.data)[0]
        return (<double *>self.t.data)[0]

    def _copy(self):
        """A copy of the values as a new leaf (no graph), in the same dtype."""
        cdef cg_tensor *out = NULL
        _check(cg_tensor_astype(self.t, self.t.dtype, &out))
        return _wrap(out)

    def _astype(self, dtype):
        cdef cg_tensor *out = NULL
        _check(cg_tensor_astype(self.t, _dtype_code(dtype), &out))
        return _wrap(out)

    def _same_object(self, TensorBase other):
        return self.t == other.t

    # ---- in-place, outside the graph ----
    def zero_(self):
        _check(cg_tensor_fill_(self.t, 0.0))
        return self

    def fill_(self, double value):
        _check(cg_tensor_fill_(self.t, value))
        return self

    def copy_(self, src):
        cdef TensorBase s = _const_like(src, self)
        _check(cg_tensor_copy_(self.t, s.t))
        return self

    def add_(self, other, double alpha=1.0):
        """self += alpha * other (same number of elements), recorded nowhere."""
        cdef TensorBase o = _const_like(other, self)
        _check(cg_tensor_axpy_(self.t, alpha, o.t))
        return self

    # ---- backward ----
    def backward(self, grad=None, bint retain_graph=False):
        """Accumulate d(self)/d(leaf) into .grad of every leaf that requires grad.

        grad: the upstream gradient, required unless self has one element. Without
        retain_graph the graph's saved values are freed and a second backward through
        it raises RuntimeError."""
        cdef TensorBase g = None
        cdef cg_tensor *gt = NULL
        cdef cg_status st
        if grad is not None:
            g = _const_like(grad, self)
            gt = g.t
        with nogil:
            st = cg_backward(self.t, gt, retain_graph)
        _check(st)

    # ---- arithmetic: Python scalars go to the scalar ops, arrays become constants ----
    def __add__(self, other):
        if isinstance(other, TensorBase):
            return _binary(CG_OP_ADD, self, <TensorBase>other)
        if _is_scalar(other):
            return _unary(self, CG_OP_ADD_SCALAR, other)
        return _binary(CG_OP_ADD, self, _const_like(other, self))

    def __radd__(self, other):
        if _is_scalar(other):
            return _unary(self, CG_OP_ADD_SCALAR, other)
        return _binary(CG_OP_ADD, _const_like(other, self), self)

    def __sub__(self, other):
        if isinstance(other, TensorBase):
            return _binary(CG_OP_SUB, self, <TensorBase>other)
        if _is_scalar(other):
            return _unary(self, CG_OP_ADD_SCALAR, -other)
        return _binary(CG_OP_SUB, self, _const_like(other, self))

    def __rsub__(self, other):
        if _is_scalar(other):
            return _unary(self, CG_OP_RSUB_SCALAR, other)
        return _binary(CG_OP_SUB, _const_like(other, self), self)

    def __mul__(self, other):
        if isinstance(other, TensorBase):
            return _binary(CG_OP_MUL, self, <TensorBase>other)
        if _is_scalar(other):
            return _unary(self, CG_OP_MUL_SCALAR, other)
        return _binary(CG_OP_MUL, self, _const_like(other, self))

    def __rmul__(self, other):
        if _is_scalar(other):
            return _unary(self, CG_OP_MUL_SCALAR, other)
        return _binary(CG_OP_MUL, _const_like(other, self), self)

    def __truediv__(self, other):
        if isinstance(other, TensorBase):
            return _binary(CG_OP_DIV, self, <TensorBase>other)
        if _is_scalar(other):
            return _unary(self, CG_OP_DIV_SCALAR, other)
        return _binary(CG_OP_DIV, self, _const_like(other, self))

    def __rtruediv__(self, other):
        if _is_scalar(other):
            return _unary(self, CG_OP_RDIV_SCALAR, other)
        return _binary(CG_OP_DIV, _const_like(other, self), self)

    def __pow__(self, exponent, modulo):
        if _is_scalar(exponent):
            return _unary(self, CG_OP_POW_SCALAR, exponent)
        return _binary(CG_OP_POW, self, _const_like(exponent, self))

    def __rpow__(self, base, modulo):
        if _is_scalar(base) and base > 0:  # exp(x log b): no log of the base per element
            return _unary(self, CG_OP_MUL_SCALAR, np.log(float(base))).exp()
        return _binary(CG_OP_POW, _const_like(base, self), self)

    def pow(self, exponent):
        """self ** exponent, for a number or a tensor exponent."""
        return self.__pow__(exponent, None)

    def __matmul__(self, other):
        return matmul(self, other)

    def __rmatmul__(self, other):
        return matmul(_const_like(other, self), self)

    def __neg__(self):
        return _unary(self, CG_OP_NEG)

    def __pos__(self):
        return self

    def __abs__(self):
        return _unary(self, CG_OP_ABS)

    # ---- elementwise ----
    def exp(self):
        return _unary(self, CG_OP_EXP)

    def log(self):
        return _unary(self, CG_OP_LOG)

    def sqrt(self):
        return _unary(self, CG_OP_SQRT)

    def abs(self):
        return _unary(self, CG_OP_ABS)

    def relu(self):
        return _unary(self, CG_OP_RELU)

    def leaky_relu(self, double negative_slope=0.01):
        return _unary(self, CG_OP_LEAKY_RELU, negative_slope)

    def sigmoid(self):
        return _unary(self, CG_OP_SIGMOID)

    def tanh(self):
        return _unary(self, CG_OP_TANH)

    def softplus(self):
        """log(1 + exp(x)), stable for large |x|; its derivative is sigmoid(x)."""
        return _unary(self, CG_OP_SOFTPLUS)

    def neg(self):
        return _unary(self, CG_OP_NEG)

    def sin(self):
        return _unary(self, CG_OP_SIN)

    def cos(self):
        return _unary(self, CG_OP_COS)

    def tan(self):
        return _unary(self, CG_OP_TAN)

    def atan(self):
        return _unary(self, CG_OP_ATAN)

    def sinh(self):
        return _unary(self, CG_OP_SINH)

    def cosh(self):
        return _unary(self, CG_OP_COSH)

    def erf(self):
        return _unary(self, CG_OP_ERF)

    def log1p(self):
        return _unary(self, CG_OP_LOG1P)

    def expm1(self):
        return _unary(self, CG_OP_EXPM1)

    def log2(self):
        return _unary(self, CG_OP_LOG2)

    def log10(self):
        return _unary(self, CG_OP_LOG10)

    def square(self):
        return _unary(self, CG_OP_SQUARE)

    def reciprocal(self):
        return _unary(self, CG_OP_RECIPROCAL)

    def rsqrt(self):
        return _unary(self, CG_OP_RSQRT)

    def sign(self):
        return _unary(self, CG_OP_SIGN)

    def floor(self):
        return _unary(self, CG_OP_FLOOR)

    def ceil(self):
        return _unary(self, CG_OP_CEIL)

    def trunc(self):
        return _unary(self, CG_OP_TRUNC)

    def silu(self):
        return _unary(self, CG_OP_SILU)

    def selu(self):
        return _unary(self, CG_OP_SELU)

    def softsign(self):
        return _unary(self, CG_OP_SOFTSIGN)

    def mish(self):
        return _unary(self, CG_OP_MISH)

    def round(self, decimals=0):
        """Round half to even (as PyTorch and numpy); decimals > 0 rounds to that many places."""
        if decimals == 0:
            return _unary(self, CG_OP_ROUND)
        scale = 10.0 ** decimals
        return _unary(_unary(_unary(self, CG_OP_MUL_SCALAR, scale), CG_OP_ROUND), CG_OP_DIV_SCALAR, scale)

    def gelu(self, approximate="none"):
        """x Phi(x) exactly (approximate='none') or with PyTorch's tanh formula ('tanh')."""
        if approximate == "none":
            return _unary(self, CG_OP_GELU)
        if approximate == "tanh":
            return _unary(self, CG_OP_GELU_TANH)
        raise ValueError(f"gelu: approximate must be 'none' or 'tanh', not {approximate!r}")

    def elu(self, double alpha=1.0):
        return _unary(self, CG_OP_ELU, alpha)

    def hardtanh(self, double min_val=-1.0, double max_val=1.0):
        """clip to [min_val, max_val]; the gradient passes strictly inside (as PyTorch)."""
        if min_val > max_val:
            raise ValueError(f"hardtanh: min_val {min_val} is greater than max_val {max_val}")
        return _unary(self, CG_OP_HARDTANH, min_val, max_val)

    def atan2(self, other):
        """atan2(self, other), elementwise with broadcasting."""
        return _binary(CG_OP_ATAN2, self, _const_like(other, self))

    def clip(self, min=None, max=None):
        """Limit values to [min, max]; the gradient passes where min <= x <= max."""
        lo = -np.inf if min is None else float(min)
        hi = np.inf if max is None else float(max)
        if lo > hi:
            raise ValueError(f"clip: min {lo} is greater than max {hi}")
        return _unary(self, CG_OP_CLIP, lo, hi)

    clamp = clip

    # ---- reductions (axis= or dim=, keepdims= or keepdim=) ----
    def sum(self, axis=None, keepdims=False, *, dim=None, keepdim=None):
        return _reduce(self, CG_OP_SUM, axis if dim is None else dim,
                       keepdims if keepdim is None else keepdim)

    def mean(self, axis=None, keepdims=False, *, dim=None, keepdim=None):
        return _reduce(self, CG_OP_MEAN, axis if dim is None else dim,
                       keepdims if keepdim is None else keepdim)

    def max(self, axis=None, keepdims=False, *, dim=None, keepdim=None):
        """Largest value; on ties the gradient is shared equally among the maxima."""
        return _reduce(self, CG_OP_MAX, axis if dim is None else dim,
                       keepdims if keepdim is None else keepdim)

    def min(self, axis=None, keepdims=False, *, dim=None, keepdim=None):
        """Smallest value; on ties the gradient is shared equally among the minima."""
        return _reduce(self, CG_OP_MIN, axis if dim is None else dim,
                       keepdims if keepdim is None else keepdim)

    def logsumexp(self, axis=None, keepdims=False, *, dim=None, keepdim=None):
        """log(sum(exp(x))), computed without overflow."""
        return _reduce(self, CG_OP_LOGSUMEXP, axis if dim is None else dim,
                       keepdims if keepdim is None else keepdim)

    def softmax(self, axis=-1, *, dim=None):
        return softmax(CG_OP_SOFTMAX, self, axis if dim is None else dim)

    def log_softmax(self, axis=-1, *, dim=None):
        return softmax(CG_OP_LOG_SOFTMAX, self, axis if dim is None else dim)

_TensorType = TensorBase  # until the facade registers its subclass
