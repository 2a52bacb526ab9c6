# The op entry points, BLAS and threads, and the op registry's table (included by _C.pyx).

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

_SKINNY_ISAS = {"off": 0, "avx2": 2, "avx512": 3}

def skinny_isa(str want="best"):
    """Set the instruction set of cgrad's own float32 kernels, the skinny GEMMs
    (csrc/skinny_gemm.c, AVX-512 only) and the convolution's data movement (csrc/conv.c):
    'best' (the default), 'avx512', 'avx2' or 'off' (OpenBLAS for every GEMM, plain loops),
    for tests and measurements; a level the CPU lacks gives the best it has. Returns the one
    in effect."""
    if want != "best" and want not in _SKINNY_ISAS:
        raise ValueError(f"skinny_isa: want 'best', 'avx512', 'avx2' or 'off', not {want!r}")
    got = cg_skinny_set_isa(-1 if want == "best" else _SKINNY_ISAS[want])
    return {v: k for k, v in _SKINNY_ISAS.items()}[got]

cdef extern from "cg.h" nogil:
    ctypedef struct cg_gemm_shape:
        char kind
        uint8_t ta, tb
        int64_t M, N, K, lda, ldb, ldc
        double beta
        int64_t count
    void cg_gemm_trace(int on)
    int cg_gemm_trace_count()
    const cg_gemm_shape *cg_gemm_trace_at(int i)
    int64_t cg_gemm_trace_dropped()
    int cg_small_gemm_set_isa(int want)
    int cg_small_sgemm_run(int ta, int tb, int64_t M, int64_t N, int64_t K, float alpha, const float *A,
                           int64_t lda, const float *B, int64_t ldb, const float *bias, float beta, float *C,
                           int64_t ldc)

def gemm_trace(bint on):
    """Start (forgetting what was traced) or stop the GEMM shape trace (csrc/blas.c): while
    on, every GEMM the provider table computes is counted by shape; gemm_trace_read() lists them."""
    cg_gemm_trace(on)

_GEMM_KINDS = {ord("s"): ("sgemm", "float32"), ord("d"): ("dgemm", "float64"), ord("l"): ("linear_f32", "float32")}

def gemm_trace_read():
    """The shapes traced since gemm_trace(True), in first-seen order: dicts of kind ('sgemm',
    'dgemm', or 'linear_f32': the provider's fused X W^T + bias), dtype, ta, tb, M, N, K, lda,
    ldb, ldc, beta and count. Raises RuntimeError if the table overflowed (calls were lost)."""
    if cg_gemm_trace_dropped():
        raise RuntimeError(f"gemm_trace_read: the trace table is full, {cg_gemm_trace_dropped()} calls not counted")
    out = []
    cdef const cg_gemm_shape *t
    for i in range(cg_gemm_trace_count()):
        t = cg_gemm_trace_at(i)
        kind, dtype = _GEMM_KINDS[t.kind]
        out.append(dict(kind=kind, dtype=dtype, ta=bool(t.ta), tb=bool(t.tb), M=t.M, N=t.N, K=t.K, lda=t.lda,
                        ldb=t.ldb, ldc=t.ldc, beta=t.beta, count=t.count))
    return out

_SMALL_GEMM_ISAS = {"off": 0, "avx2": 2, "avx512": 3}

def small_gemm_isa(str want="best"):
    """Set the instruction set of cgrad's small float32 GEMMs (csrc/small_gemm.c): 'best' (the
    default), 'avx512', 'avx2' or 'off' (OpenBLAS for every shape), for tests and measurements; a level
    the CPU lacks gives the best it has. Returns the one in effect."""
    if want != "best" and want not in _SMALL_GEMM_ISAS:
        raise ValueError(f"small_gemm_isa: want 'best', 'avx512', 'avx2' or 'off', not {want!r}")
    got = cg_small_gemm_set_isa(-1 if want == "best" else _SMALL_GEMM_ISAS[want])
    return {v: k for k, v in _SMALL_GEMM_ISAS.items()}[got]

cdef int64_t _need(str what, bint trans, int64_t rows, int64_t cols, int64_t ld, Py_ssize_t have) except -1:
    """Elements a row-major operand op(X) [rows, cols] with leading dimension ld spans."""
    cdef int64_t r = cols if trans else rows, c = rows if trans else cols
    if ld < max(c, 1):
        raise ValueError(f"small_sgemm: {what} is [{r}, {c}] stored, its leading dimension {ld} is below {max(c, 1)}")
    cdef int64_t need = 0 if r == 0 or c == 0 else (r - 1) * ld + c
    if have < need:
        raise ValueError(f"small_sgemm: {what} [{r}, {c}] with leading dimension {ld} needs {need} elements, got {have}")
    return need

def small_sgemm(bint ta, bint tb, int64_t M, int64_t N, int64_t K, float alpha, const float[::1] A, int64_t lda,
                const float[::1] B, int64_t ldb, float beta, float[::1] C, int64_t ldc, bias=None):
    """csrc/small_gemm.c's kernel on flat float32 buffers, whatever the dispatch rule, for the
    tests: C = alpha op(A) op(B) (+ bias [N]) + beta C, row-major, in place. False when the
    kernel is off (small_gemm_isa), C then untouched."""
    if M < 0 or N < 0 or K < 0:
        raise ValueError(f"small_sgemm: negative size in M, N, K = {M}, {N}, {K}")
    _need("A", ta, M, K, lda, A.shape[0])
    _need("B", tb, K, N, ldb, B.shape[0])
    _need("C", False, M, N, ldc, C.shape[0])
    cdef const float[::1] bv
    cdef const float *bp = NULL
    if bias is not None:
        bv = np.ascontiguousarray(bias, dtype=np.float32).reshape(-1)
        if bv.shape[0] != N:
            raise ValueError(f"small_sgemm: bias has {bv.shape[0]} elements, C has N = {N} columns")
        if alpha != 1:
            raise ValueError("small_sgemm: a bias needs alpha 1")
        if N > 0:
            bp = &bv[0]
    cdef const float *ap = &A[0] if A.shape[0] else NULL
    cdef const float *bbp = &B[0] if B.shape[0] else NULL
    cdef float *cp = &C[0] if C.shape[0] else NULL
    return bool(cg_small_sgemm_run(ta, tb, M, N, K, alpha, ap, lda, bbp, ldb, bp, beta, cp, ldc))

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

def set_flush_denormal(bint mode):
    """PyTorch's torch.set_flush_denormal: with mode True, subnormal floats are read and
    written as zero on this thread (x86 FTZ and DAZ), which spares the arithmetic a slow
    microcode assist for each (a confident classifier's softmax makes them). Returns True
    when the CPU has the switch. Off by default, as in PyTorch; JAX runs with it on."""
    return bool(cg_set_flush_denormal(mode))

cg_set_num_threads(1)  # small ops gain nothing from threads (docs/architecture.md, "Build")

# A GEMM of at least this many multiply-adds runs without the GIL, so that other Python
# threads go on meanwhile; below it, releasing and taking the GIL back costs more than it frees.
cdef int64_t _NOGIL_MACS = 1 << 18

# ---------------------------------------------------------------- op entry points

cdef inline bint _is_scalar(object x):
    return type(x) is float or type(x) is int or isinstance(x, (float, int, np.number))

cdef inline TensorBase _const_like(object x, TensorBase like):
    """A constant (no grad) tensor from a scalar or array-like, in like's dtype when that
    is a float (numbers and arrays take the tensor's float dtype), else in its own."""
    if isinstance(x, TensorBase):
        return <TensorBase>x
    if like.t.dtype > CG_F64:
        return <TensorBase>_promotion.constant(x)
    if isinstance(x, (list, tuple, np.ndarray)) or _is_scalar(x) or hasattr(x, "__array__"):
        return <TensorBase>copy_from_array(x, _NP_DTYPE[like.t.dtype], "tensor op")
    raise TypeError(f"unsupported operand type for a tensor op: {type(x).__name__}")

cdef inline str _name(int op):
    return cg_op_name(op).decode()

# The hand-overs to _promotion are out of line, so that the inlined float paths stay small.
cdef object _unary_promoted(TensorBase x, int op, double p0, double p1):
    return _promotion.unary(_name(op), x, p0, p1)

cdef object _scalar_promoted(TensorBase x, int op, object value):
    return _promotion.scalar(_name(op), x, value)

cdef object _binary_promoted(int op, TensorBase a, TensorBase b):
    return _promotion.binary(_name(op), a, b)

cdef inline object _unary(TensorBase x, int op, double p0=0, double p1=0):
    cdef cg_tensor *out = NULL
    if x.t.dtype > CG_F64:
        return _unary_promoted(x, op, p0, p1)
    _check(cg_unary(op, x.t, p0, p1, &out))
    return _wrap(out)

cdef inline object _scalar(TensorBase x, int op, object number):
    """x (op) a Python number; an integer tensor keeps the number's kind (x * 2 stays int64)."""
    cdef cg_tensor *out = NULL
    if x.t.dtype > CG_F64:
        return _scalar_promoted(x, op, number)
    _check(cg_unary(op, x.t, <double>number, 0, &out))
    return _wrap(out)

cdef inline object _binary(int op, TensorBase a, TensorBase b):
    cdef cg_tensor *out = NULL
    if a.t.dtype != b.t.dtype or a.t.dtype > CG_F64:
        return _binary_promoted(op, a, b)
    _check(cg_binary(op, a.t, b.t, &out))
    return _wrap(out)

cdef object _reduce(TensorBase x, int op, object axis, bint keepdims):
    """Reduce over `axis` (None, int or tuple): adjacent axes go to C in one run, other
    runs one after another from the last, so earlier axis numbers stay valid."""
    cdef cg_tensor *out = NULL
    cdef int nd = x.t.ndim, a0, a1
    cdef list axes
    if x.t.dtype > CG_F64:
        return _promotion.reduce(_name(op), x, axis, keepdims)
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
    if x.t.dtype > CG_F64:
        return _promotion.reshape(x, shape)
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
    if x.t.dtype > CG_F64:
        return _promotion.permute(x, axes)
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
    if x.t.dtype > CG_F64:
        return _promotion.slice_(x, starts, steps, lengths)
    for i in range(x.t.ndim):
        st[i] = starts[i]
        sp[i] = steps[i]
        ln[i] = lengths[i]
    _check(cg_slice(x.t, st, sp, ln, &out))
    return _wrap(out)

def gather(TensorBase x, index):
    """Rows of x picked by an integer array (axis 0); repeated rows add up in backward."""
    cdef cg_tensor *out = NULL
    if x.t.dtype > CG_F64:
        return _promotion.gather(x, index)
    cdef int64_t[::1] idx = np.ascontiguousarray(index, dtype=np.int64).reshape(-1)
    cdef int64_t dummy = 0
    _check(cg_gather(x.t, &idx[0] if idx.shape[0] else &dummy, idx.shape[0], &out))
    return _wrap(out)

def scatter_add(TensorBase x, index, TensorBase src):
    """x with src's rows added at the rows `index` names (axis 0; repeats add up)."""
    cdef cg_tensor *out = NULL
    if x.t.dtype != src.t.dtype or x.t.dtype > CG_F64:
        return _promotion.scatter_add(x, index, src)
    cdef int64_t[::1] idx = np.ascontiguousarray(index, dtype=np.int64).reshape(-1)
    cdef int64_t dummy = 0
    _check(cg_scatter_add(x.t, &idx[0] if idx.shape[0] else &dummy, idx.shape[0], src.t, &out))
    return _wrap(out)

def cast(TensorBase x, dtype):
    """x in the other float dtype, recorded on the tape (the gradient converts back)."""
    cdef cg_tensor *out = NULL
    _check(cg_cast(x.t, _dtype_code(dtype), &out))
    return _wrap(out)

def concat(tensors, int axis):
    cdef cg_tensor *out = NULL
    cdef int n = len(tensors)
    cdef cg_tensor **xs
    if any((<TensorBase?>t).t.dtype != (<TensorBase?>tensors[0]).t.dtype or (<TensorBase>t).t.dtype > CG_F64
           for t in tensors):
        return _promotion.concat(tensors, axis)
    xs = <cg_tensor **>PyMem_Malloc(max(n, 1) * sizeof(cg_tensor *))
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
    if a.t.dtype != b.t.dtype or a.t.dtype > CG_F64:
        return _promotion.where(mask, a, b)
    m = np.asarray(mask, dtype=np.uint8, order="C")
    cdef int nd = _shape_from(m.shape, shp)
    cdef const uint8_t[::1] flat = m.reshape(-1)
    cdef uint8_t dummy = 0
    _check(cg_where(&flat[0] if flat.shape[0] else &dummy, nd, shp, a.t, b.t, &out))
    return _wrap(out)

def unary(int op, TensorBase x, double p0=0, double p1=0):
    return _unary(x, op, p0, p1)

def binary(int op, TensorBase a, TensorBase b):
    return _binary(op, a, b)

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
    if a.t.dtype != b.t.dtype or a.t.dtype > CG_F64:
        return _promotion.matmul(a, b)
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

def linear(TensorBase input, TensorBase weight, TensorBase bias=None):
    """input @ weight.T + bias in one op (weight in PyTorch's [out, in] layout)."""
    cdef cg_tensor *out = NULL
    cdef cg_status st
    cdef cg_tensor *bt = bias.t if bias is not None else NULL
    if weight.t.ndim == 2 and input.t.numel * weight.t.shape[0] >= _NOGIL_MACS:
        with nogil:
            st = cg_linear(input.t, weight.t, bt, &out)
    else:
        st = cg_linear(input.t, weight.t, bt, &out)
    _check(st)
    return _wrap(out)

def gemm(TensorBase a, TensorBase b, bint ta=False, bint tb=False):
    """op(a) @ op(b) for 2-D tensors, op a transpose where ta (tb): one GEMM with flags, no
    transposed copy (the taped backward's A^T G and G B^T)."""
    cdef cg_tensor *out = NULL
    cdef cg_status st
    if a.t.numel * (b.t.shape[0] if tb else b.t.shape[b.t.ndim - 1]) >= _NOGIL_MACS:
        with nogil:
            st = cg_gemm(a.t, b.t, ta, tb, &out)
    else:
        st = cg_gemm(a.t, b.t, ta, tb, &out)
    _check(st)
    return _wrap(out)

def tanh_backward(TensorBase grad, TensorBase y):
    """grad * (1 - y^2): tanh's backward as one op, whose own backward the taped sweep
    differentiates (PyTorch's tanh_backward)."""
    return _binary(CG_OP_TANH_BACKWARD, grad, y)

def matmul(a, b):
    if not isinstance(a, TensorBase):
        a = _const_like(a, b)
    if not isinstance(b, TensorBase):
        b = _const_like(b, a)
    return _matmul(a, b)

_REDUCTIONS = {"none": 0, "mean": 1, "sum": 2}

cdef str _legacy_reduction(size_average, reduce, str reduction):
    """PyTorch's deprecated size_average/reduce pair as a reduction (None, None: `reduction`)."""
    if size_average is None and reduce is None:
        return reduction
    if reduce is not None and not reduce:
        return "none"
    return "sum" if size_average is not None and not size_average else "mean"

cdef object _class_loss(str op, TensorBase input, target, TensorBase weight, int64_t ignore_index, str reduction,
                        double label_smoothing, int nll):
    """cross_entropy and nll_loss over (N, C), (N, C, d1, ...) or unbatched (C,) input with class
    index targets of shape (N,), (N, d1, ...) or (): the fused C op on (rows, C), rows being
    N (d1 ...) with the class axis moved last."""
    cdef cg_tensor *out = NULL
    cdef cg_tensor *tt
    cdef const int64_t *tp
    cdef int64_t dummy = 0
    cdef int64_t[::1] view
    cdef int nd = input.t.ndim, i
    cdef bint fits
    red = _REDUCTIONS.get(reduction)
    if red is None:
        raise ValueError(f"{op}: reduction must be 'mean', 'sum' or 'none', not {reduction!r}")
    if isinstance(target, TensorBase) and (<TensorBase>target).t.dtype == CG_I64:
        tt = (<TensorBase>target).t
        tp = <const int64_t *>tt.data  # its own memory: a replay re-reads it
        tg = None
        # the shape check in C terms first: the common (N, C) case makes no tuples
        fits = nd >= 1 and tt.ndim == (nd - 1 if nd > 1 else 0) and (nd == 1 or tt.shape[0] == input.t.shape[0])
        for i in range(2, nd):
            fits = fits and tt.shape[i - 1] == input.t.shape[i]
        tshape = None if fits else target.shape
    else:
        tg = np.asarray(target)
        if tg.dtype.kind == "f":
            if tg.shape == input.shape and nd >= 1 and not nll:
                return _soft_cross_entropy(input, tg, weight, reduction, label_smoothing)
            if not np.all(tg == np.round(tg)):
                raise TypeError(f"{op}: targets must be integer class indices (or, for cross_entropy, class "
                                f"probabilities of the input's shape {input.shape}), got {tg.dtype} of shape "
                                f"{tg.shape}")
        elif tg.dtype.kind not in "iub":
            raise TypeError(f"{op}: targets must be integer class indices, not {tg.dtype}")
        tg = np.asarray(tg, dtype=np.int64, order="C")
        tshape = tg.shape
    if nd == 0:
        raise ValueError(f"{op}: expected an input of shape (C,), (N, C) or (N, C, d1, ...), got shape ()")
    if tshape is not None:
        shape = input.shape
        expected = () if nd == 1 else (shape[0],) + shape[2:]
        if tuple(tshape) != expected:
            raise ValueError(f"{op}: input of shape {shape} needs targets of shape {expected}, got {tuple(tshape)}")
    if tg is not None:
        view = tg.reshape(-1)
        tp = &view[0] if view.shape[0] else &dummy
    if nd == 2:
        _check(cg_cross_entropy(input.t, tp, weight.t if weight is not None else NULL, ignore_index, label_smoothing,
                                red, nll, &out))
        return _wrap(out)
    shape = input.shape
    x2 = _reshape(input, (1, shape[0])) if nd == 1 else \
        _reshape(permute(input, (0,) + tuple(range(2, nd)) + (1,)), (-1, shape[1]))
    _check(cg_cross_entropy((<TensorBase>x2).t, tp, weight.t if weight is not None else NULL, ignore_index,
                            label_smoothing, red, nll, &out))
    y = _wrap(out)
    return _reshape(y, () if nd == 1 else (shape[0],) + shape[2:]) if reduction == "none" else y

cdef object _soft_cross_entropy(TensorBase input, tg, TensorBase weight, str reduction, double label_smoothing):
    """cross_entropy against class probabilities of input's shape: -sum_c w_c y_c log_softmax(x)_c
    per row, y mixed with the uniform distribution by label_smoothing; 'mean' over the rows."""
    cdef int nd = input.t.ndim
    cdef int axis = 0 if nd == 1 else 1
    ncls = input.shape[axis]
    y = tg * (1 - label_smoothing) + label_smoothing / ncls
    lp = input.log_softmax(axis) * from_numpy(np.asarray(y, dtype=input.dtype))
    if weight is not None:
        lp = lp * _reshape(weight, (ncls,) + (1,) * (nd - axis - 1))
    loss = -lp.sum(axis)
    return loss if reduction == "none" else loss.sum() if reduction == "sum" else loss.mean()

def cross_entropy(TensorBase input not None, target, TensorBase weight=None, size_average=None,
                  int64_t ignore_index=-100, reduce=None, str reduction="mean", double label_smoothing=0.0):
    """PyTorch's F.cross_entropy: log_softmax and the negative log-likelihood fused in one
    stable C op, over logits (N, C), (N, C, d1, ...) or (C,) and class-index targets, with class
    weights, ignore_index and label smoothing; or against class probabilities of the logits'
    shape. 'mean' divides by the weights of the targets not ignored, as PyTorch."""
    return _class_loss("cross_entropy", input, target, weight, ignore_index,
                       _legacy_reduction(size_average, reduce, reduction), label_smoothing, 0)

def nll_loss(TensorBase input not None, target, TensorBase weight=None, size_average=None,
             int64_t ignore_index=-100, reduce=None, str reduction="mean"):
    """PyTorch's F.nll_loss: -w_t input[t] per row of log-probabilities (shapes as
    cross_entropy's), 0 where the target is ignore_index; one C op."""
    return _class_loss("nll_loss", input, target, weight, ignore_index,
                       _legacy_reduction(size_average, reduce, reduction), 0.0, 1)

def class_loss_node_data(TensorBase t):
    """(targets, class weights or None) kept by the cross_entropy or nll_loss node that made t,
    as numpy copies, for their taped rule."""
    cdef double p[2]
    cdef int64_t ip[9]
    cdef const void *extra = NULL
    cdef int op = cg_node_params(t.t, p, ip, &extra)
    if (op != CG_OP_CROSS_ENTROPY and op != CG_OP_NLL_LOSS) or extra == NULL:
        raise RuntimeError("class_loss_node_data: the tensor was not made by a cross_entropy or nll_loss node")
    targets = np.asarray(<const int64_t[:ip[0]]>(<const int64_t *>extra)).copy() if ip[0] else np.zeros(0, np.int64)
    if not ip[4] or not ip[1]:
        return targets, None
    return targets, np.asarray(<const double[:ip[1]]>((<const double *>(<const int64_t *>extra + ip[0])) + ip[0])).copy()


# Op codes the facade uses by name.
OPS = {cg_op_name(i).decode(): i for i in range(CG_OP_COUNT)}

def cumsum(TensorBase input, int dim):
    """torch.cumsum(input, dim): the inclusive prefix sum along dim (same shape as input)."""
    cdef cg_tensor *out = NULL
    cdef int nd = input.t.ndim
    if dim < -max(nd, 1) or dim >= max(nd, 1):
        raise IndexError(f"cumsum: dim {dim} is out of range for a tensor of shape {input.shape}")
    if input.t.dtype > CG_F64:
        return _promotion.cumsum(input, dim)
    _check(cg_cumsum(input.t, dim + nd if dim < 0 else dim, &out))
    return _wrap(out)
