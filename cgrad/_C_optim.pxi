# The optimizers' parameter sets and C steps (csrc/optim.c; the facade is cgrad/optim); included by _C.pyx.

from cpython.dict cimport PyDict_GetItem

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


# hyperparameter values a plan may cache by identity: immutable (a tuple of them too)
_IMMUTABLE_HYPER = (float, int, bool, np.generic)

cdef inline bint _immutable(object v):
    if isinstance(v, tuple):
        return all(isinstance(x, _IMMUTABLE_HYPER) for x in v)
    return isinstance(v, _IMMUTABLE_HYPER)


cdef class OptimPlan:
    """An optimizer's step as a C struct (cg_optim): each group's ParamSet arrays and
    hyperparameters, so that a replayed step runs the update with no Python.

    set_groups() takes the groups (after add_param_group, load_state_dict, ...), refresh()
    reads their hyperparameters. check() costs a few pointer compares: it marks the struct
    stale when param_groups grew or a group's value is not the object refresh() read (a
    scheduler or the user set it); while stale, a replay calls the Python method instead,
    which refreshes. Values are compared by identity, and refresh() keeps them alive, so
    an unchanged identity is an unchanged value (mutable values keep the struct stale)."""
    cdef cg_optim o
    # the optimizer, weakly (it holds this plan: a strong reference would make a cycle
    # that only the cyclic gc frees, keeping every parameter alive until it runs)
    cdef object opt_ref
    cdef list dicts       # the group dicts the values are read from
    cdef list sets        # their ParamSets (kept alive: o points into them)
    cdef list seen        # per group and key, the object refresh() read
    cdef tuple keys

    def __cinit__(self, opt, int kind, bint decoupled, tuple keys):
        memset(&self.o, 0, sizeof(self.o))
        self.o.kind = kind
        self.o.decoupled = decoupled
        self.o.stale = CG_OPTIM_STALE_HYPER | CG_OPTIM_STALE_GROUPS
        self.opt_ref = weakref.ref(opt)
        self.keys = keys
        self.dicts, self.sets, self.seen = [], [], []

    def __dealloc__(self):
        PyMem_Free(self.o.groups)

    def set_groups(self, list dicts, list sets, list added_at):
        """The optimizer's groups (dicts, their ParamSets and the step counts at which they
        were added); their hyperparameters are read at the next refresh()."""
        cdef int n = len(sets)
        cdef cg_optim_group *groups = <cg_optim_group *>PyMem_Malloc(max(n, 1) * sizeof(cg_optim_group))
        cdef ParamSet s
        if groups == NULL:
            raise MemoryError()
        memset(groups, 0, max(n, 1) * sizeof(cg_optim_group))
        for i in range(n):
            s = <ParamSet?>sets[i]
            groups[i].n = s.n
            groups[i].params, groups[i].state0, groups[i].state1 = s.params, s.state0, s.state1
            groups[i].added_at = added_at[i]
        PyMem_Free(self.o.groups)
        self.o.groups, self.o.n_groups = groups, n
        self.dicts, self.sets, self.seen = list(dicts[:n]), list(sets), []
        self.o.stale = CG_OPTIM_STALE_HYPER

    def refresh(self):
        """Read every group's hyperparameters (as the Python steps did: a value that is not
        a number raises here, at the step, and the struct stays stale)."""
        cdef cg_optim_group *g
        seen = []
        mutable = False
        for i in range(self.o.n_groups):
            d, g = self.dicts[i], &self.o.groups[i]
            if self.o.kind == CG_OPTIM_SGD:
                g.lr, g.momentum, g.dampening = d["lr"], d["momentum"], d["dampening"]
                g.weight_decay, g.nesterov = d["weight_decay"], bool(d["nesterov"])
            elif self.o.kind == CG_OPTIM_ADAM:
                g.beta1, g.beta2 = d["betas"]
                g.lr, g.eps, g.weight_decay = d["lr"], d["eps"], d["weight_decay"]
            for key in self.keys:
                v = d[key]
                mutable = mutable or not _immutable(v)
                seen.append(v)
        self.seen = seen
        self.o.stale = CG_OPTIM_STALE_HYPER if mutable else 0

    cdef int check(self) except -1:
        """Mark the struct stale if the optimizer's Python side moved on since refresh()."""
        cdef Py_ssize_t k = 0
        cdef PyObject *v
        if self.o.stale == CG_OPTIM_STALE_HYPER | CG_OPTIM_STALE_GROUPS:
            return 0
        opt = self.opt_ref()
        if opt is None or len(opt.param_groups) != self.o.n_groups:
            self.o.stale = CG_OPTIM_STALE_HYPER | CG_OPTIM_STALE_GROUPS
            return 0
        if self.o.stale:
            return 0
        for d in self.dicts:
            for key in self.keys:
                v = PyDict_GetItem(d, key)
                if v == NULL or v != <PyObject *>self.seen[k]:
                    self.o.stale = CG_OPTIM_STALE_HYPER
                    return 0
                k += 1
        return 0

    def stale(self):
        """After a check: 0 (current), or CG_OPTIM_STALE_* bits (2: param_groups grew)."""
        self.check()
        return self.o.stale

    @property
    def step_count(self):
        return self.o.step_count

    @step_count.setter
    def step_count(self, int64_t n):
        self.o.step_count = n

    def step(self):
        """One step of every group (refresh() first, if stale)."""
        _check(cg_optim_step(&self.o))

    def zero_grad(self, bint set_to_none=True):
        cg_optim_zero_grad(&self.o, set_to_none)
