# The tensor: errors, wrapping C results, numpy <-> core, grad mode, and TensorBase (included by _C.pyx).

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

cdef inline int _check(cg_status st) except -1:
    if st != CG_OK:
        _raise(st)
    return 0

# numpy's dtype and the buffer format of each cg_dtype, by code
cdef tuple _NP_DTYPE = (np.dtype(np.float32), np.dtype(np.float64), np.dtype(np.int64),
                        np.dtype(np.int32), np.dtype(np.bool_), np.dtype(np.uint8))
cdef dict _DTYPE_CODES = {dt: code for code, dt in enumerate(_NP_DTYPE)}
cdef tuple _BUFFER_FORMAT = (b"f", b"d", b"q", b"i", b"?", b"B")

# The facade's module for operands that are not one float dtype (cgrad/_promotion.py):
# mixed dtypes are promoted there, and integer and bool tensors computed with numpy. The
# ops below hand over to it after a single dtype test, so the float path pays nothing else.
cdef object _promotion = None
cdef object _taped_backward = None  # cgrad/_double_backward.py's backward, set by the facade

def _set_promotion(module):
    global _promotion
    _promotion = module

def _set_taped_backward(fn):
    global _taped_backward
    _taped_backward = fn

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
    code = _DTYPE_CODES.get(np.dtype(dtype))
    if code is None:
        raise TypeError(f"cgrad tensors are float32, float64, int64, int32, bool or uint8, not {np.dtype(dtype)}")
    return <cg_dtype>code

def numbers(object a, str where):
    """`a` if it is a Python int, float or bool, else `a` as a numpy array of numbers. Other
    data raises TypeError naming `where` and the dtype: complex values, whose imaginary part
    a conversion would silently drop, strings, objects, dates."""
    if type(a) is float or type(a) is int or type(a) is bool:
        return a
    if not isinstance(a, np.ndarray):
        a = np.asarray(a)
    if a.dtype.kind not in "biuf":
        raise TypeError(f"{where}: cannot convert {a.dtype} data to a tensor (cgrad tensors are float32, "
                        f"float64, int64, int32, bool or uint8)")
    return a

cdef object _storable(object a):
    """a, or a converted copy in the dtype cgrad stores it as: other floats (float16) become
    float32 (float128 float64), other integers int64."""
    if a.dtype in _DTYPE_CODES:
        return a
    kind = a.dtype.kind
    if kind == "f":
        return a.astype(np.float64 if a.dtype.itemsize > 8 else np.float32)
    if kind in "iu":
        return a.astype(np.int64)
    return a  # bool: stored as it is

cdef int _shape_from(object shape, int64_t *out) except -1:
    cdef int n = len(shape)
    if n > CG_MAX_DIMS:
        raise ValueError(f"tensor: rank {n} is not supported (at most {CG_MAX_DIMS} dims)")
    for i in range(n):
        out[i] = shape[i]
    return n

def from_numpy(object a, bint copy=False):
    """A tensor over `a`'s memory (no copy) when `a` is a C-contiguous, writable array of a
    dtype cgrad stores (float32, float64, int64, int32, bool, uint8) and copy is False;
    otherwise a converted copy (see _storable). Writes through either side are seen by the
    other when memory is shared."""
    cdef cg_tensor *t = NULL
    cdef int64_t shape[8]
    cdef Py_buffer *view
    cdef int nd
    a = numbers(np.asarray(a), "from_numpy")
    if a.dtype not in _DTYPE_CODES:
        a = _storable(a)
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

def copy_from_array(object a, object dtype, str where="tensor"):
    """A core-owned tensor holding a copy of the array-like `a` (numbers only: see
    numbers(), whose errors name `where`) converted to `dtype`."""
    cdef cg_tensor *t = NULL
    cdef int64_t shp[8]
    cdef Py_buffer view
    cdef cg_dtype code = _dtype_code(dtype)
    a = np.asarray(numbers(a, where), dtype=_NP_DTYPE[code], order="C")
    cdef int nd = _shape_from(a.shape, shp)
    _check(cg_tensor_empty(code, nd, shp, &t))
    PyObject_GetBuffer(a, &view, PyBUF_C_CONTIGUOUS)
    memcpy(t.data, view.buf, view.len)
    PyBuffer_Release(&view)
    return _wrap(t)


def is_grad_enabled():
    return bool(cg_grad_enabled())

def set_grad_enabled(bint enabled):
    cg_set_grad_enabled(enabled)

cdef cg_tensor *_PLACEHOLDER = NULL
cdef int64_t _ZERO_SHAPE[1]
_ZERO_SHAPE[0] = 0
_check(cg_tensor_empty(CG_F32, 1, _ZERO_SHAPE, &_PLACEHOLDER))  # shape (0,): in-place ops are no-ops

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

    def _take(self, TensorBase other):
        """Point this object at other's C tensor (Tensor.__init__ builds into self)."""
        cg_tensor_retain(other.t)
        cg_tensor_release(self.t)
        self.t = other.t

    def __dealloc__(self):
        if self.t != NULL:
            if self.t.hooked and self.t.refcount == 1:
                _drop_leaf_hooks(self.t)
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
        buf.format = _BUFFER_FORMAT[t.dtype]
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

    def numel(self):
        return self.t.numel

    def data_ptr(self):
        """The address of the first element, as torch's: tensors over the same memory
        (reshape, detach, a Parameter made from a tensor) have the same one."""
        return <size_t>self.t.data

    def __len__(self):
        if self.t.ndim == 0:
            raise TypeError("len() of a 0-dim tensor")
        return self.t.shape[0]

    @property
    def requires_grad(self):
        return bool(cg_tensor_needs_grad(self.t))

    @requires_grad.setter
    def requires_grad(self, bint value):
        if value and self.t.dtype > CG_F64:
            raise RuntimeError(f"only tensors of floating point dtype can require gradients; this one is "
                               f"{_NP_DTYPE[self.t.dtype]} (of shape {self.shape})")
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
        if self.t.dtype > CG_F64:  # so no integer tensor ever reaches an optimizer's float loops
            raise RuntimeError(f"grad: only float tensors have gradients; this one is {_NP_DTYPE[self.t.dtype]}")
        if g.shape != self.shape or g.t.dtype != self.t.dtype:
            raise ValueError(f"grad: assigned gradient of shape {g.shape} and dtype {g.dtype} "
                             f"to a tensor of shape {self.shape} and dtype {self.dtype}")
        if g.t.node != NULL:
            raise ValueError("grad: the assigned gradient must not have a graph; detach it first")
        cg_tensor_retain(g.t)
        if self.t.grad != NULL:
            cg_tensor_release(self.t.grad)
        self.t.grad = g.t

    def _accumulate_grad(self, value):
        """.grad += value, keeping value's graph (backward(create_graph=True))."""
        cdef TensorBase g = <TensorBase?>value
        if self.t.grad != NULL:
            cg_tensor_retain(self.t.grad)
            g = <TensorBase?>(_wrap(self.t.grad) + g)
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
        """The value of a one-element tensor as a Python float, int or bool."""
        if self.t.numel != 1:
            raise ValueError(f"item: only a tensor with one element can be converted to a "
                             f"Python number, this one has shape {self.shape}")
        if self.t.dtype == CG_F32:
            return <double>(<float *>self.t.data)[0]
        if self.t.dtype == CG_F64:
            return (<double *>self.t.data)[0]
        return self.numpy().reshape(-1)[0].item()

    def _copy(self):
        """A copy of the values as a new leaf (no graph), in the same dtype."""
        cdef cg_tensor *out = NULL
        _check(cg_tensor_astype(self.t, self.t.dtype, &out))
        return _wrap(out)

    def _astype(self, dtype):
        cdef cg_tensor *out = NULL
        _check(cg_tensor_astype(self.t, _dtype_code(dtype), &out))
        return _wrap(out)

    # ---- in-place, outside the graph ----
    def _check_inplace(self, str op):
        """The one check of every in-place method: PyTorch refuses to change a leaf that
        requires grad while grad mode is on (the change would be invisible to backward)."""
        if self.t.requires_grad and self.t.node == NULL and cg_grad_enabled():
            raise RuntimeError(f"{op}: a leaf tensor that requires grad (shape {self.shape}) is used in an "
                               f"in-place operation; update it inside `with cgrad.no_grad():`, as an "
                               f"optimizer step does")

    def zero_(self):
        self._check_inplace("zero_")
        _check(cg_tensor_fill_(self.t, 0.0))
        return self

    def fill_(self, double value):
        self._check_inplace("fill_")
        _check(cg_tensor_fill_(self.t, value))
        return self

    def copy_(self, src):
        """Write src's values (broadcast to this shape, converted to this dtype) into self."""
        self._check_inplace("copy_")
        cdef TensorBase s = _const_like(src if isinstance(src, TensorBase) else numbers(src, "copy_"), self)
        if s.shape != self.shape:
            try:
                s = copy_from_array(np.broadcast_to(s.numpy(), self.shape), _NP_DTYPE[s.t.dtype])
            except ValueError:
                raise RuntimeError(f"copy_: the source of shape {s.shape} cannot be broadcast to the "
                                   f"tensor's shape {self.shape}") from None
        _check(cg_tensor_copy_(self.t, s.t))
        return self

    # ---- backward ----
    def backward(self, gradient=None, retain_graph=None, create_graph=False, inputs=None, *, grad=None):
        """Accumulate d(self)/d(leaf) into .grad of every leaf that requires grad.

        gradient (or grad=): the upstream gradient, required unless self has one element.
        Without retain_graph the graph's saved values are freed and a second backward
        through it raises RuntimeError. create_graph=True tapes the sweep, so the .grad
        values can be differentiated again (as in PyTorch, such a .grad refers back to its
        leaf, a cycle: set .grad = None when done); inputs= accumulates into those tensors
        only. Both take the taped sweep (cgrad/_double_backward.py)."""
        cdef TensorBase g = None
        cdef cg_tensor *gt = NULL
        cdef cg_status st
        if grad is None:
            grad = gradient
        if create_graph or inputs is not None:
            return _taped_backward(self, grad, bool(create_graph), inputs)
        if grad is not None:
            g = _const_like(grad, self)
            gt = g.t
        cdef int retain = bool(retain_graph)
        with nogil:
            st = cg_backward(self.t, gt, retain)
        _check_sweep(st)  # re-raises an exception from a custom Function's backward or a hook

    def register_hook(self, hook):
        """hook(grad) is called with this tensor's gradient each time backward computes it;
        a tensor it returns replaces the gradient. Returns a handle whose .remove() undoes it."""
        return _register_hook(self, hook)

    # ---- arithmetic: Python scalars go to the scalar ops, arrays become constants ----
    def __add__(self, other):
        if isinstance(other, TensorBase):
            return _binary(CG_OP_ADD, self, <TensorBase>other)
        if _is_scalar(other):
            return _scalar(self, CG_OP_ADD_SCALAR, other)
        return _binary(CG_OP_ADD, self, _const_like(other, self))

    def __radd__(self, other):
        if _is_scalar(other):
            return _scalar(self, CG_OP_ADD_SCALAR, other)
        return _binary(CG_OP_ADD, _const_like(other, self), self)

    def __sub__(self, other):
        if isinstance(other, TensorBase):
            return _binary(CG_OP_SUB, self, <TensorBase>other)
        if _is_scalar(other):
            return _scalar(self, CG_OP_ADD_SCALAR, -other)
        return _binary(CG_OP_SUB, self, _const_like(other, self))

    def __rsub__(self, other):
        if _is_scalar(other):
            return _scalar(self, CG_OP_RSUB_SCALAR, other)
        return _binary(CG_OP_SUB, _const_like(other, self), self)

    def __mul__(self, other):
        if isinstance(other, TensorBase):
            return _binary(CG_OP_MUL, self, <TensorBase>other)
        if _is_scalar(other):
            return _scalar(self, CG_OP_MUL_SCALAR, other)
        return _binary(CG_OP_MUL, self, _const_like(other, self))

    def __rmul__(self, other):
        if _is_scalar(other):
            return _scalar(self, CG_OP_MUL_SCALAR, other)
        return _binary(CG_OP_MUL, _const_like(other, self), self)

    def __truediv__(self, other):
        if isinstance(other, TensorBase):
            return _binary(CG_OP_DIV, self, <TensorBase>other)
        if _is_scalar(other):
            return _scalar(self, CG_OP_DIV_SCALAR, other)
        return _binary(CG_OP_DIV, self, _const_like(other, self))

    def __rtruediv__(self, other):
        if _is_scalar(other):
            return _scalar(self, CG_OP_RDIV_SCALAR, other)
        return _binary(CG_OP_DIV, _const_like(other, self), self)

    def __pow__(self, exponent, modulo):
        if _is_scalar(exponent):
            return _scalar(self, CG_OP_POW_SCALAR, exponent)
        return _binary(CG_OP_POW, self, _const_like(exponent, self))

    def __rpow__(self, base, modulo):
        if self.t.dtype > CG_F64:
            return _promotion.reflected_pow(base, self)
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
        return _unary(_unary(_scalar(self, CG_OP_MUL_SCALAR, scale), CG_OP_ROUND), CG_OP_DIV_SCALAR, scale)

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
