# Ops written in Python (cgrad.autograd.Function), tensor hooks and autograd.grad: the
# callbacks the backward sweep makes into Python (csrc/pyop.c); included by _C.pyx.
#
# The sweep runs without the GIL; each callback takes it. An exception raised in user code is
# kept here (per thread) and the callback returns an error status, so the C sweep unwinds
# normally and the binding re-raises that exception from .backward() or autograd.grad().
from cpython.ref cimport Py_INCREF, Py_DECREF
import threading

cdef object _pending = threading.local()  # .exc: the exception a callback caught

cdef inline int _check_sweep(cg_status st) except -1:
    """_check for a backward sweep: a user exception raised inside it is re-raised as itself.
    Only a failed sweep can have left one (the lookup costs ~0.4 us: not on every call)."""
    if st == CG_OK:
        return 0
    exc = getattr(_pending, "exc", None)
    if exc is not None:
        _pending.exc = None
        raise exc
    return _raise(st)

cdef str _shape_of(const cg_tensor *t):
    return str(tuple([t.shape[i] for i in range(t.ndim)]))

cdef int _check_grad_for(str who, object g, const cg_tensor *like, int index) except -1:
    """g, returned by user code as the gradient of `like`, must be a tensor of its shape and dtype."""
    cdef TensorBase r
    if not isinstance(g, TensorBase):
        raise TypeError(f"{who} returned a {type(g).__name__} as the gradient of input {index}; "
                        f"expected a Tensor or None")
    r = <TensorBase>g
    shape_ok = r.t.ndim == like.ndim and all([r.t.shape[i] == like.shape[i] for i in range(like.ndim)])
    if not shape_ok or r.t.dtype != like.dtype:
        raise ValueError(f"{who} returned an invalid gradient at index {index}: got shape {_shape_of(r.t)} "
                         f"and dtype {_NP_DTYPE[r.t.dtype]}, but expected shape {_shape_of(like)} and "
                         f"dtype {_NP_DTYPE[like.dtype]}")
    return 0

cdef cg_status _py_backward(void *obj, cg_tensor *g, int n, cg_tensor *const *inputs,
                            cg_tensor **grads) noexcept with gil:
    """The rule of a PYTHON node: obj is a Function's ctx or a tensor's _Hooks."""
    cdef TensorBase r
    cdef int prev = cg_grad_enabled()
    cdef object owner = <object>obj
    try:
        if cg_capture_active():
            raise RuntimeError(f"cgrad.compile: {owner._cg_name} cannot be replayed in C; use it outside "
                               f"the compiled step")
        cg_set_grad_enabled(0)  # first order: the user's backward records nothing
        cg_tensor_retain(g)
        res = owner._cg_backward(_wrap(g))
        if len(res) != n:
            raise RuntimeError(f"{owner._cg_name}: {len(res)} gradients for {n} inputs")
        for i in range(n):
            if res[i] is not None:
                _check_grad_for(owner._cg_name, res[i], inputs[i], i)
        for i in range(n):
            if res[i] is not None:
                r = <TensorBase>res[i]
                cg_tensor_retain(r.t)
                grads[i] = r.t
        return CG_OK
    except BaseException as e:
        _pending.exc = e
        return CG_ERR_RUNTIME
    finally:
        cg_set_grad_enabled(prev)

cdef dict _leaf_hooks = {}  # <size_t>cg_tensor * -> _Hooks, valid while that tensor's .hooked is set

cdef cg_status _py_leaf_hooks(cg_tensor *leaf, cg_tensor *g, cg_tensor **out) noexcept with gil:
    cdef TensorBase r
    cdef int prev = cg_grad_enabled()
    try:
        hooks = _leaf_hooks.get(<size_t>leaf)
        cg_tensor_retain(g)
        res = _wrap(g)
        if hooks is not None:
            cg_set_grad_enabled(0)
            res = (<_Hooks>hooks)._cg_backward(res)[0]
        r = <TensorBase>res
        cg_tensor_retain(r.t)
        out[0] = r.t
        return CG_OK
    except BaseException as e:
        _pending.exc = e
        return CG_ERR_RUNTIME
    finally:
        cg_set_grad_enabled(prev)

cdef void _py_release(void *obj) noexcept with gil:
    Py_DECREF(<object>obj)

cg_py_set_callbacks(_py_backward, _py_leaf_hooks, _py_release)


cdef class _Hooks:
    """The hooks of one tensor, in registration order."""
    cdef readonly dict hooks
    cdef readonly str _cg_name
    cdef int64_t next_id
    cdef object __weakref__

    def __cinit__(self):
        self.hooks = {}
        self._cg_name = "a tensor hook"
        self.next_id = 0

    def add(self, hook):
        self.next_id += 1
        self.hooks[self.next_id] = hook
        return RemovableHandle(self, self.next_id)

    def _cg_backward(self, grad):
        """Each hook sees the gradient so far; one returning a tensor replaces it."""
        cdef TensorBase g = <TensorBase>grad
        for hook in list(self.hooks.values()):
            res = hook(g)
            if res is not None:
                _check_grad_for(f"hook {getattr(hook, '__name__', hook)!r}", res, g.t, 0)
                g = <TensorBase>res
        return [g]


class RemovableHandle:
    """What register_hook returns: .remove() unregisters the hook (also as a context manager)."""

    def __init__(self, hooks, int64_t key):
        import weakref
        self._hooks = weakref.ref(hooks)
        self.id = key

    def remove(self):
        hooks = self._hooks()
        if hooks is not None:
            (<_Hooks>hooks).hooks.pop(self.id, None)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.remove()
        return False


cdef object _register_hook(TensorBase t, object hook):
    """TensorBase.register_hook (docs/architecture.md, "Python ops and hooks")."""
    cdef void *owner
    cdef _Hooks hooks
    if not callable(hook):
        raise TypeError(f"register_hook: the hook must be callable, not {type(hook).__name__}")
    if not cg_tensor_needs_grad(t.t):
        raise RuntimeError("cannot register a hook on a tensor that doesn't require gradient")
    if cg_capture_active():
        raise RuntimeError("cgrad.compile: register_hook inside a compiled step cannot be replayed in C; "
                           "register hooks outside the step")
    if t.t.node == NULL:  # a leaf: its gradient is gathered for the hooks (cg_tensor.hooked)
        key = <size_t>t.t
        if not t.t.hooked or key not in _leaf_hooks:  # an entry without the flag is a dead tensor's
            _leaf_hooks[key] = _Hooks()
            t.t.hooked = 1
        hooks = <_Hooks>_leaf_hooks[key]
    else:  # a node in front of the op that made t runs them
        owner = cg_py_hook_owner(t.t)
        if owner != NULL:
            hooks = <_Hooks>owner
        else:
            hooks = _Hooks()
            Py_INCREF(hooks)  # the node's reference
            _check(cg_py_hook_node(t.t, <void *>hooks))
    return hooks.add(hook)

cdef inline void _drop_leaf_hooks(cg_tensor *t):
    """The last reference to a hooked leaf is going: forget its hooks."""
    _leaf_hooks.pop(<size_t>t, None)
    t.hooked = 0


def _function_record(object ctx, list inputs, TensorBase value):
    """The output of a custom Function: a new tensor with value's data, made by a PYTHON node
    over `inputs` (the tensor arguments that need grad) that holds ctx."""
    cdef int n = len(inputs)
    cdef cg_tensor *out = NULL
    cdef cg_tensor **ins = <cg_tensor **>PyMem_Malloc(max(n, 1) * sizeof(cg_tensor *))
    if ins == NULL:
        raise MemoryError()
    try:
        for i in range(n):
            ins[i] = (<TensorBase?>inputs[i]).t
        Py_INCREF(ctx)  # the node's reference (given back by the core on failure too)
        _check(cg_py_record(n, ins, value.t, <void *>ctx, &out))
    finally:
        PyMem_Free(ins)
    return _wrap(out)

def python_node_owner(TensorBase t, bint hooks=False):
    """For the taped sweep (create_graph=True): the ctx of the custom Function that made t,
    or with hooks=True the hooks registered on t; None if there are none (or a backward
    without retain_graph freed the Function's node)."""
    cdef void *obj = cg_py_hook_owner(t.t) if hooks else cg_py_node_owner(t.t)
    return None if obj == NULL else <object>obj

def _tensor_version(TensorBase t):
    """The version of t's storage: bumped by every in-place write (Note [Versions])."""
    return cg_tensor_version(t.t)

def _grad(list roots, list seeds, list targets, bint retain_graph):
    """cg_grad: the gradients of roots (seeded by seeds: tensors or arrays, None: ones) w.r.t. targets, in one
    sweep, touching no .grad; None where no gradient reached a target."""
    cdef int nr = len(roots), nt = len(targets)
    cdef cg_tensor **buf = <cg_tensor **>PyMem_Malloc((2 * nr + 2 * nt + 1) * sizeof(cg_tensor *))
    cdef cg_tensor **rs = buf
    cdef cg_tensor **ss = buf + nr
    cdef cg_tensor **ts = buf + 2 * nr
    cdef cg_tensor **out = buf + 2 * nr + nt
    cdef cg_status st
    cdef list seed_tensors = []  # alive through the call
    cdef TensorBase seed
    if buf == NULL:
        raise MemoryError()
    try:
        for i in range(nr):
            rs[i] = (<TensorBase?>roots[i]).t
            ss[i] = NULL
            if seeds[i] is not None:
                seed = _const_like(seeds[i], <TensorBase>roots[i])
                seed_tensors.append(seed)
                ss[i] = seed.t
        for j in range(nt):
            ts[j] = (<TensorBase?>targets[j]).t
        with nogil:
            st = cg_grad(nr, rs, ss, nt, ts, out, retain_graph)
        _check_sweep(st)
        return [None if out[j] == NULL else _wrap(out[j]) for j in range(nt)]
    finally:
        PyMem_Free(buf)
