"""Record a training step once, replay it in C: `step = cgrad.compile(train_step)`.

    @cgrad.compile
    def train_step(x, y):
        opt.zero_grad()
        loss = F.cross_entropy(model(x), y)
        loss.backward()
        opt.step()
        return loss

    for xb, yb in loader:
        loss = train_step(xb, yb)      # first call per input signature: eager, and recorded

The first call with a given signature (each array argument's shape and dtype, the value
of every other argument, grad mode, and the train/eval mode of every module the step
called) runs the function eagerly while the core records every op,
backward call and dtype conversion it makes (csrc/replay.c). Later calls with the same
signature copy the new arrays into the recorded inputs and replay the ops in C on the
same buffers: no Python per op, no allocation. A new signature records again (a small
cache keeps the last few). Replays give bitwise the same parameters and gradients as
running the function eagerly.

What runs on every replay: the recorded ops and backward calls, and the methods marked
@replayed (Optimizer.step and zero_grad, Module.zero_grad, clip_grad_norm_), which run
again, so learning-rate schedules and Adam's step count behave as in eager code. The
optimizers' own step and zero_grad (SGD, Adam, AdamW) run in C from a struct of their
hyperparameters (cgrad._C.OptimPlan); each replay checks that no group's value changed
since it was read, and if one did (a scheduler's step, an edited param group, a loaded
state dict) that call runs the Python method, which reads them again. Everything else the function does in Python (prints, .item(), appending to
lists, reading a global) happens only while recording. Values that enter without an op
are constants of the recording; so inputs must come in through the arguments (numpy
arrays, cgrad tensors that do not require grad, or hashable Python values), and random
draws (dropout in training mode, cgrad.randn), reading .grad and in-place writes inside the
step raise an error while recording instead of being silently frozen.

Returned tensors are fresh copies (detached), so keeping them across steps is safe.
"""
from __future__ import annotations

import functools
from collections import OrderedDict

import numpy as np

from . import _C, _state
from .tensor import Tensor, from_numpy, tensor


def replayed(fn=None, *, native=None):
    """Mark a function whose effects must happen again on every replay of a compiled step
    that calls it (optimizer steps, zero_grad): while recording it is registered as a call
    point and run with recording paused, and each replay calls it again.

    native(*args, **kwargs), when given, may return (plan, which, arg) for
    Program.capture_native: replays then run that C step instead, and call fn only while
    the plan is stale. It returns None to keep the Python call (e.g. a subclass's method)."""
    if fn is None:
        return lambda f: replayed(f, native=native)

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        rec = _state.recording()
        if rec is None:
            return fn(*args, **kwargs)
        rec.calls.append(functools.partial(fn, *args, **kwargs))
        point = None if native is None else native(*args, **kwargs)
        index = _C.capture_call() if point is None else rec.program.capture_native(*point)
        assert index == len(rec.calls) - 1
        _state.set_recording(None)
        _C.capture_end()
        try:
            return fn(*args, **kwargs)
        finally:
            rec.program.resume()
            _state.set_recording(rec)
    return wrapper


class _Recording:
    """One recorded signature: the program, the input buffers it reads, its outputs."""

    def __init__(self):
        self.program = _C.Program()
        self.calls: list = []
        self.inputs: list = []         # (position, the tensor or int64 array it is copied into)
        self.index_inputs: list = []   # the int64 arrays among them
        self.outputs = None
        self.modules: dict = {}         # id -> (module, its training flag when called)
        self.spec = None                # _C.input_spec: the fast path's view of the arguments

    def note_module(self, module) -> None:
        """A module ran while recording: a replay in another train/eval mode records anew."""
        self.modules.setdefault(id(module), (module, module.training))

    def freeze_modes(self) -> None:
        self._mods = tuple(m for m, _ in self.modules.values())
        self._flags = tuple(flag for _, flag in self.modules.values())
        self._checked = _state.modes_version

    def modes_match(self) -> bool:
        if self._checked == _state.modes_version:  # no train()/eval() since the last check
            return True
        if tuple([m.training for m in self._mods]) != self._flags:
            return False
        self._checked = _state.modes_version
        return True


def _arg_key(a):
    """One argument's part of the cache key. This runs on every call, so it only reads;
    _check_argument validates an argument once, when its signature is first recorded."""
    if isinstance(a, np.ndarray):
        return (a.shape, a.dtype.num)
    if isinstance(a, _C.TensorBase):
        return ("tensor", a.shape, a.dtype.num, a.requires_grad)
    return ("value", type(a), a)


def _signature(args: tuple, kwargs: dict) -> tuple:
    """The cache key: shape and dtype of each array argument, the value of the others."""
    key = tuple([_arg_key(a) for a in args])
    if kwargs:
        key += tuple([(k, _arg_key(kwargs[k])) for k in sorted(kwargs)])
    return key


def _check_argument(name, a) -> None:
    if isinstance(a, np.ndarray):
        if a.dtype.kind not in "fiu":
            raise TypeError(f"cgrad.compile: argument {name!r} is a {a.dtype} array; pass float or integer arrays")
    elif isinstance(a, _C.TensorBase):
        if a.requires_grad:
            raise TypeError(f"cgrad.compile: argument {name!r} requires grad; parameters belong "
                            f"to the model, inputs must not require grad")
    else:
        try:
            hash(a)
        except TypeError:
            raise TypeError(f"cgrad.compile: argument {name!r} of type {type(a).__name__} is neither an "
                            f"array, a tensor nor a hashable value") from None


def _copies(out, path: tuple = ()):
    """The returned structure with every tensor replaced by a detached copy. Anything but
    tensors, None and tuples, lists or dicts of them is refused: it would keep its recorded
    value (only a recording can meet one; path locates it in the error)."""
    if isinstance(out, _C.TensorBase):
        return out._copy()
    if out is None:
        return None
    if isinstance(out, tuple):
        return tuple(_copies(o, path + (i,)) for i, o in enumerate(out))
    if isinstance(out, list):
        return [_copies(o, path + (i,)) for i, o in enumerate(out)]
    if isinstance(out, dict):
        return {k: _copies(v, path + (k,)) for k, v in out.items()}
    where = "the result" + "".join(f"[{k!r}]" for k in path)
    raise TypeError(f"cgrad.compile: {where} is a {type(out).__name__}; a compiled step returns tensors "
                    f"(or tuples, lists or dicts of them) or None, since anything else would keep its "
                    f"recorded value. Return the tensor and call .item() on it outside")


class CompiledStep:
    """A function recorded once per input signature and replayed in C afterwards."""

    def __init__(self, fn, cache_size: int = 8):
        if cache_size < 1:
            raise ValueError(f"cgrad.compile: cache_size must be >= 1, got {cache_size}")
        self.fn = fn
        self.cache_size = cache_size
        self._cache: OrderedDict = OrderedDict()
        # (recording, grad mode) of the last call: its arguments are checked and copied in
        # by one C call (_C.feed_inputs) before any cache key is built
        self._last: tuple | None = None
        self.recordings = 0   # how many times a signature was recorded
        functools.update_wrapper(self, fn)

    def __call__(self, *args, **kwargs):
        last = self._last
        if last is not None and not kwargs:
            rec = last[0]
            if (last[1] == _C.is_grad_enabled() and rec.spec is not None and rec.modes_match()
                    and _C.feed_inputs(rec.spec, args)):
                rec.program.run(rec.calls)
                out = rec.outputs
                return out._copy() if isinstance(out, _C.TensorBase) else _copies(out)
        key = (_C.is_grad_enabled(),) + _signature(args, kwargs)
        try:
            rec = self._cache.get(key)
        except TypeError:  # an unhashable argument: let _record name it
            rec = None
        if rec is None or not rec.modes_match():
            return self._record(key, args, kwargs)
        self._cache.move_to_end(key)
        self._last = (rec, key[0])
        for pos, dst in rec.inputs:
            _C.copy_into(dst, args[pos] if pos.__class__ is int else kwargs[pos])
        rec.program.run(rec.calls)
        return _copies(rec.outputs)

    def _record(self, key, args, kwargs):
        if _state.recording() is not None:
            raise RuntimeError("cgrad.compile: a compiled step cannot call another while recording")
        rec = _Recording()
        args0, args, kwargs = args, list(args), dict(kwargs)
        for pos, a in list(enumerate(args)) + list(kwargs.items()):
            _check_argument(pos, a)
            if isinstance(a, (np.ndarray, _C.TensorBase)):
                arr = np.asarray(a)
                t: Tensor | np.ndarray
                if arr.dtype.kind == "f":
                    t = given = tensor(arr, dtype=arr.dtype if arr.dtype in (np.float32, np.float64) else None)
                else:  # int64 memory that each replay re-reads; the step sees an int64 tensor over it
                    t = np.array(arr, dtype=np.int64, order="C")
                    rec.index_inputs.append(t)
                    given = from_numpy(t)
                rec.inputs.append((pos, t))
                if isinstance(pos, int):
                    args[pos] = given
                else:
                    kwargs[pos] = given
        rec.program.begin()
        _state.set_recording(rec)
        _state.recordings_active += 1
        try:
            out = self.fn(*args, **kwargs)
        finally:
            _state.recordings_active -= 1
            _state.set_recording(None)
            _C.capture_end()
        # after the recording (the copies are not part of the step), before anything is
        # cached: this also refuses results a replay could not return
        result = _copies(out)
        rec.program.bind_index_inputs(rec.index_inputs)
        rec.freeze_modes()
        rec.outputs = out
        if not kwargs:
            rec.spec = _C.input_spec(rec.inputs, tuple(args0))
        self._cache[key] = rec
        self._last = (rec, key[0])
        if len(self._cache) > self.cache_size:
            self._cache.popitem(last=False)
        self.recordings += 1
        return result

    def stats(self) -> dict:
        """Per cached signature: how many ops, Python call points, call points run in C
        (optimizer steps) and instructions it replays."""
        return {key: dict(zip(("ops", "python_calls", "native_calls", "instructions"), rec.program.stats()))
                for key, rec in self._cache.items()}

    def clear(self) -> None:
        """Forget every recording (the next call records again)."""
        self._cache.clear()
        self._last = None


def compile(fn=None, *, cache_size: int = 8):
    """Record `fn` once per input signature and replay it in C afterwards (see the module
    docstring for what is replayed and what runs only while recording). Usable as
    @cgrad.compile or @cgrad.compile(cache_size=...)."""
    if fn is None:
        return lambda f: CompiledStep(f, cache_size)
    return CompiledStep(fn, cache_size)
