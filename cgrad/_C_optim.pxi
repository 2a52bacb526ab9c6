# The optimizers' parameter sets (csrc/optim.c; the facade is cgrad/optim); included by _C.pyx.

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
