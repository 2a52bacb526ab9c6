"""Modules: parameters, children registered by attribute assignment, train/eval, state
dicts; the layers and the loss modules."""
from __future__ import annotations

import math
from collections import OrderedDict
from typing import Callable

import numpy as np

from .. import _C, _state
from ..autograd import no_grad
from ..replay import replayed
from ..tensor import Tensor, _generator, _resolve_dtype, tensor, to_arguments
from . import functional as F


class Parameter(Tensor):
    """A leaf tensor that a Module registers as a parameter when assigned to it."""

    __slots__ = ()

    def __new__(cls, data, requires_grad: bool = True):
        t = data.detach() if isinstance(data, _C.TensorBase) else tensor(data)
        p = _C.rewrap(t, cls)
        p.requires_grad = requires_grad
        return p

    def __init__(self, data=None, requires_grad: bool = True):
        pass

    def __deepcopy__(self, memo):
        """A Parameter over a copy of the values, with requires_grad; as torch's, without .grad."""
        new = type(self)(self._deepcopy_values(memo), self.requires_grad)
        memo[id(self)] = new
        return new

    def __repr__(self):
        return "Parameter containing:\n" + super().__repr__()


class Module:
    """Base class of layers and models: assign Parameters and Modules as attributes and
    they are found by parameters(), state_dict(), train() and eval()."""

    _parameters: OrderedDict[str, Parameter]
    _modules: OrderedDict[str, Module]
    _buffers: OrderedDict[str, Tensor | None]
    _non_persistent: set
    training: bool

    def __init__(self):
        object.__setattr__(self, "_parameters", OrderedDict())
        object.__setattr__(self, "_modules", OrderedDict())
        object.__setattr__(self, "_buffers", OrderedDict())
        object.__setattr__(self, "_non_persistent", set())
        object.__setattr__(self, "training", True)

    def __setattr__(self, name, value):
        if "_parameters" not in self.__dict__:
            raise AttributeError("call super().__init__() in your Module's __init__ first")
        if name in self._buffers and (value is None or isinstance(value, Tensor)) and not isinstance(value, Parameter):
            self._buffers[name] = value  # a registered buffer takes its new value
            object.__setattr__(self, name, value)
            return
        self._buffers.pop(name, None)
        self._parameters.pop(name, None)
        self._modules.pop(name, None)
        if isinstance(value, Parameter):
            self._parameters[name] = value
        elif isinstance(value, Module):
            self._modules[name] = value
            object.__setattr__(value, "_name_in_parent", name)  # for the profiler's labels
        elif name == "training":
            _state.modes_changed()
        object.__setattr__(self, name, value)

    # ---- pickling and copying (pickle, copy.copy, copy.deepcopy) ----
    # Attributes that pickles and copies reset: per-process caches (the profiler's scope
    # ids) and what the last call left for diagnostics, all rebuilt on use. Name -> a
    # function giving the copy's value, or None to leave the attribute out.
    _transient: dict = {"_scope_ids": None}

    def __getstate__(self) -> dict:
        state = self.__dict__.copy()
        for name, fresh in self._transient.items():
            if name in state:
                if fresh is None:
                    del state[name]
                else:
                    state[name] = fresh()
        return state

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)

    def register_buffer(self, name: str, tensor: Tensor | None, persistent: bool = True) -> None:
        """A tensor that belongs to the module's state but is not a parameter (running
        statistics, masks): in state_dict() unless persistent=False, converted by to()."""
        if tensor is not None and not isinstance(tensor, Tensor):
            raise TypeError(f"register_buffer: {name!r} must be a cgrad Tensor or None, not {type(tensor).__name__}")
        if name in self._parameters or name in self._modules:
            raise KeyError(f"register_buffer: {name!r} is already a parameter or a submodule")
        self._buffers[name] = tensor
        if persistent:
            self._non_persistent.discard(name)
        else:
            self._non_persistent.add(name)
        object.__setattr__(self, name, tensor)

    def __delattr__(self, name):
        self._buffers.pop(name, None)
        self._parameters.pop(name, None)
        self._modules.pop(name, None)
        object.__delattr__(self, name)

    def forward(self, *args, **kwargs):
        raise NotImplementedError(f"{type(self).__name__} does not define forward()")

    def __call__(self, *args, **kwargs):
        if _state.recordings_active:  # a step is being recorded (somewhere): note this module's mode
            rec = _state.recording()
            if rec is not None:
                rec.note_module(self)
        if not _state.scoping:
            return self.forward(*args, **kwargs)
        # attribute this layer's nodes to it: its scope id, cached per enclosing scope
        parent = _C.get_scope()
        cache = self.__dict__.get("_scope_ids")
        if cache is None:
            cache = {}
            object.__setattr__(self, "_scope_ids", cache)
        sid = cache.get(parent)
        if sid is None:
            sid = cache[parent] = _state.child_scope(parent, self._scope_label())
        _C.set_scope(sid)
        try:
            return self.forward(*args, **kwargs)
        finally:
            _C.set_scope(parent)

    def _scope_label(self) -> str:
        name = self.__dict__.get("_name_in_parent")
        label = f"{type(self).__name__}({self.extra_repr()})"
        return f"{name}: {label}" if name else label

    # ---- traversal ----
    def named_modules(self, prefix: str = ""):
        yield prefix, self
        for name, m in self._modules.items():
            yield from m.named_modules(f"{prefix}.{name}" if prefix else name)

    def modules(self):
        return [m for _, m in self.named_modules()]

    def children(self):
        return list(self._modules.values())

    def get_submodule(self, target: str) -> Module:
        """The submodule at a dotted path ('' is self), as PyTorch's."""
        m = self
        for name in target.split(".") if target else ():
            if name not in m._modules:
                raise AttributeError(f"get_submodule: {type(m).__name__} has no submodule {name!r} (in {target!r})")
            m = m._modules[name]
        return m

    def named_children(self):
        yield from self._modules.items()

    def apply(self, fn):
        """fn(m) for every submodule, children first, then self (PyTorch's order)."""
        for m in self._modules.values():
            m.apply(fn)
        fn(self)
        return self

    def requires_grad_(self, requires_grad: bool = True):
        for p in self.parameters():
            p.requires_grad = requires_grad
        return self

    def named_buffers(self, prefix: str = "", recurse: bool = True, persistent_only: bool = False):
        mods = self.named_modules(prefix) if recurse else [(prefix, self)]
        for mprefix, m in mods:
            for name, b in m._buffers.items():
                if b is not None and not (persistent_only and name in m._non_persistent):
                    yield (f"{mprefix}.{name}" if mprefix else name), b

    def buffers(self, recurse: bool = True) -> list:
        return [b for _, b in self.named_buffers(recurse=recurse)]

    def named_parameters(self, prefix: str = "", recurse: bool = True, remove_duplicate: bool = True):
        """(name, parameter) pairs; a parameter shared by two modules (tied weights) once,
        under its first name, unless remove_duplicate=False."""
        seen = set()
        mods = self.named_modules(prefix) if recurse else [(prefix, self)]
        for mprefix, m in mods:
            for name, p in m._parameters.items():
                if not remove_duplicate or id(p) not in seen:
                    seen.add(id(p))
                    yield (f"{mprefix}.{name}" if mprefix else name), p

    def parameters(self, recurse: bool = True) -> list:
        return [p for _, p in self.named_parameters(recurse=recurse)]

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())

    @replayed
    def zero_grad(self, set_to_none: bool = True) -> None:
        for p in self.parameters():
            if set_to_none:
                p.grad = None
            elif p.grad is not None:
                p.grad.zero_()

    def train(self, mode: bool = True):
        for m in self.modules():
            object.__setattr__(m, "training", mode)
        _state.modes_changed()
        return self

    def eval(self):
        return self.train(False)

    # ---- devices and dtypes ----
    def to(self, *args, dtype=None, device=None):
        """to(device) (the CPU: checked, nothing moves), to(dtype) or to(device, dtype):
        parameters of another dtype are replaced by converted ones, so make the optimizer
        after converting (PyTorch advises the same)."""
        dtype, _ = to_arguments(args, dtype, device)
        if dtype is not None:
            for m in self.modules():
                for name, p in list(m._parameters.items()):
                    if p is not None and p.dtype != dtype:
                        setattr(m, name, Parameter(p.to(dtype), requires_grad=p.requires_grad))
                for name, b in list(m._buffers.items()):  # float buffers only, as PyTorch (not a count)
                    if b is not None and b.is_floating_point() and b.dtype != dtype:
                        setattr(m, name, b.to(dtype))
        return self

    def cpu(self):
        return self

    def float(self):
        return self.to(dtype=np.float32)

    def double(self):
        return self.to(dtype=np.float64)

    # ---- state ----
    def _state_items(self):
        yield from self.named_parameters(remove_duplicate=False)  # a tied weight under each name, as torch
        yield from self.named_buffers(persistent_only=True)

    def state_dict(self) -> "OrderedDict[str, Tensor]":
        """Parameter and persistent buffer names -> tensors sharing their memory (detached)."""
        return OrderedDict((name, t.detach()) for name, t in self._state_items())

    def load_state_dict(self, state_dict, strict: bool = True):
        """Copy values in from a state dict of tensors or arrays (a PyTorch state_dict of
        the same architecture works too). Shapes must match; with strict, names too."""
        own = dict(self._state_items())
        missing = [k for k in own if k not in state_dict]
        unexpected = [k for k in state_dict if k not in own]
        if strict and (missing or unexpected):
            raise KeyError(f"load_state_dict: missing keys {missing}, unexpected keys {unexpected}")
        for name, value in state_dict.items():
            if name not in own:
                continue
            arr = value.numpy() if isinstance(value, _C.TensorBase) else np.asarray(
                value.detach().cpu().numpy() if hasattr(value, "detach") else value)
            if tuple(arr.shape) != own[name].shape:
                raise ValueError(f"load_state_dict: '{name}' has shape {tuple(arr.shape)} in the "
                                 f"state dict but {own[name].shape} in the model")
            with no_grad():
                own[name].copy_(arr)
        return missing, unexpected

    def __repr__(self):
        own = sum(p.numel() for p in self._parameters.values() if p is not None)
        head = f"{type(self).__name__}({self.extra_repr()}"
        if not self._modules:
            return head + ")" + (f"  [{own:,} params]" if own else "")
        lines = [head] + [f"  ({name}): " + repr(m).replace("\n", "\n  ") for name, m in self._modules.items()]
        return "\n".join(lines) + f"\n)  [{self.num_parameters():,} params]"

    def extra_repr(self) -> str:
        return ""

    def summary(self) -> str:
        """The repr, then the parameter count."""
        return f"{self!r}\nparameters: {self.num_parameters():,}"


# ---- layers ----
class Linear(Module):
    """y = x W^T + b, with W of shape (out_features, in_features) as in PyTorch and its
    default initialisation: W and b uniform in +-1/sqrt(in_features)."""

    def __init__(self, in_features: int, out_features: int, bias: bool = True, dtype=None):
        super().__init__()
        self.in_features, self.out_features = in_features, out_features
        bound = 1 / math.sqrt(in_features) if in_features > 0 else 0.0
        rng, dtype = _generator(), _resolve_dtype(dtype)
        self.weight = Parameter(tensor(rng.uniform(-bound, bound, (out_features, in_features)), dtype=dtype))
        self.bias = Parameter(tensor(rng.uniform(-bound, bound, out_features), dtype=dtype)) if bias else None

    def forward(self, x):
        return F.linear(x, self.weight, self.bias)

    def extra_repr(self):
        return f"{self.in_features}→{self.out_features}, bias={self.bias is not None}"


class Sequential(Module):
    def __init__(self, *layers):
        super().__init__()
        for i, layer in enumerate(layers):
            setattr(self, str(i), layer)

    def forward(self, x):
        for layer in self._modules.values():
            x = layer(x)
        return x

    def __getitem__(self, i):
        return list(self._modules.values())[i]

    def __len__(self):
        return len(self._modules)

    def __iter__(self):
        return iter(self._modules.values())


class ModuleList(Module):
    """A list of modules, registered as children "0", "1", ..."""

    def __init__(self, modules=()):
        super().__init__()
        self.extend(modules)

    def _check(self, m):
        if not isinstance(m, Module):
            raise TypeError(f"{type(self).__name__}: {type(m).__name__} is not a Module")
        return m

    def append(self, module):
        setattr(self, str(len(self._modules)), self._check(module))
        return self

    def extend(self, modules):
        for m in modules:
            self.append(m)
        return self

    def insert(self, index: int, module) -> None:
        items = list(self._modules.values())
        items.insert(index, self._check(module))
        self._reset(items)

    def _reset(self, items):
        for key in list(self._modules):
            delattr(self, key)
        self.extend(items)

    def __getitem__(self, i):
        items = list(self._modules.values())
        return ModuleList(items[i]) if isinstance(i, slice) else items[i]

    def __setitem__(self, i: int, module) -> None:
        items = list(self._modules.values())
        items[i] = self._check(module)
        self._reset(items)

    def __delitem__(self, i) -> None:
        items = list(self._modules.values())
        del items[i]
        self._reset(items)

    def __len__(self):
        return len(self._modules)

    def __iter__(self):
        return iter(list(self._modules.values()))


class ModuleDict(Module):
    """A dict of modules, registered as children by their keys."""

    def __init__(self, modules=None):
        super().__init__()
        if modules is not None:
            self.update(modules)

    def update(self, modules) -> None:
        for k, m in (modules.items() if hasattr(modules, "items") else modules):
            self[k] = m

    def __getitem__(self, key: str):
        return self._modules[key]

    def __setitem__(self, key: str, module) -> None:
        if not isinstance(module, Module):
            raise TypeError(f"ModuleDict: {type(module).__name__} is not a Module")
        setattr(self, key, module)

    def __delitem__(self, key: str) -> None:
        delattr(self, key)

    def __contains__(self, key) -> bool:
        return key in self._modules

    def __len__(self):
        return len(self._modules)

    def __iter__(self):
        return iter(list(self._modules))

    def keys(self):
        return self._modules.keys()

    def values(self):
        return self._modules.values()

    def items(self):
        return self._modules.items()


class ParameterList(Module):
    """A list of parameters, registered as "0", "1", ... (tensors become Parameters)."""

    def __init__(self, values=()):
        super().__init__()
        for v in values:
            self.append(v)

    def append(self, value):
        setattr(self, str(len(self._parameters)), value if isinstance(value, Parameter) else Parameter(value))
        return self

    def __getitem__(self, i):
        return list(self._parameters.values())[i]

    def __len__(self):
        return len(self._parameters)

    def __iter__(self):
        return iter(list(self._parameters.values()))


class _Activation(Module):
    fn: Callable[..., Tensor]

    def forward(self, x):
        return type(self).fn(x)


class ReLU(_Activation):
    fn = staticmethod(F.relu)


class Sigmoid(_Activation):
    fn = staticmethod(F.sigmoid)


class Tanh(_Activation):
    fn = staticmethod(F.tanh)


class SiLU(_Activation):
    fn = staticmethod(F.silu)


class SELU(_Activation):
    fn = staticmethod(F.selu)


class Softsign(_Activation):
    fn = staticmethod(F.softsign)


class Mish(_Activation):
    fn = staticmethod(F.mish)


class Softplus(_Activation):
    fn = staticmethod(F.softplus)


class LogSigmoid(_Activation):
    fn = staticmethod(F.logsigmoid)


class GELU(Module):
    def __init__(self, approximate: str = "none"):
        super().__init__()
        if approximate not in ("none", "tanh"):
            raise ValueError(f"GELU: approximate must be 'none' or 'tanh', not {approximate!r}")
        self.approximate = approximate

    def forward(self, x):
        return x.gelu(self.approximate)


class ELU(Module):
    def __init__(self, alpha: float = 1.0):
        super().__init__()
        self.alpha = alpha

    def forward(self, x):
        return x.elu(self.alpha)


class Hardtanh(Module):
    def __init__(self, min_val: float = -1.0, max_val: float = 1.0):
        super().__init__()
        self.min_val, self.max_val = min_val, max_val

    def forward(self, x):
        return x.hardtanh(self.min_val, self.max_val)


class Identity(Module):
    def forward(self, x):
        return x


class LeakyReLU(Module):
    def __init__(self, negative_slope: float = 0.01):
        super().__init__()
        self.negative_slope = negative_slope

    def forward(self, x):
        return x.leaky_relu(self.negative_slope)

    def extra_repr(self):
        return f"negative_slope={self.negative_slope}"


class Softmax(Module):
    def __init__(self, dim: int = -1):
        super().__init__()
        self.dim = dim

    def forward(self, x):
        return x.softmax(self.dim)

    def extra_repr(self):
        return f"dim={self.dim}"


class LogSoftmax(Softmax):
    def forward(self, x):
        return x.log_softmax(self.dim)


# ---- more of PyTorch's activation layers (composites: nn.functional) ----
class _InplaceActivation(Module):
    """An activation taking PyTorch's `inplace` flag; cgrad returns a new tensor either way."""

    def __init__(self, inplace: bool = False):
        super().__init__()
        self.inplace = inplace

    def extra_repr(self):
        return "inplace=True" if self.inplace else ""


class ReLU6(_InplaceActivation):
    def forward(self, x):
        return F.relu6(x)


class Hardsigmoid(_InplaceActivation):
    def forward(self, x):
        return F.hardsigmoid(x)


class Hardswish(_InplaceActivation):
    def forward(self, x):
        return F.hardswish(x)


class CELU(_InplaceActivation):
    def __init__(self, alpha: float = 1.0, inplace: bool = False):
        super().__init__(inplace)
        self.alpha = alpha

    def forward(self, x):
        return F.celu(x, self.alpha)

    def extra_repr(self):
        return f"alpha={self.alpha}" + (", inplace=True" if self.inplace else "")


class Threshold(_InplaceActivation):
    def __init__(self, threshold: float, value: float, inplace: bool = False):
        super().__init__(inplace)
        self.threshold, self.value = threshold, value

    def forward(self, x):
        return F.threshold(x, self.threshold, self.value)

    def extra_repr(self):
        return f"threshold={self.threshold}, value={self.value}" + (", inplace=True" if self.inplace else "")


class _Count(int):
    """PReLU.num_parameters: PyTorch's attribute (an int), and, called, Module.num_parameters()
    (the same number: the slopes are PReLU's only parameters)."""

    def __call__(self) -> int:
        return int(self)


class PReLU(Module):
    """max(0, x) + a min(0, x) with a learnt slope a: one, or one per channel (PyTorch's
    layout: weight of shape (num_parameters,), filled with init)."""

    def __init__(self, num_parameters: int = 1, init: float = 0.25, device=None, dtype=None):
        super().__init__()
        self.weight = Parameter(tensor(np.full(num_parameters, init), dtype=_resolve_dtype(dtype)))

    @property
    def num_parameters(self) -> _Count:  # type: ignore[override]
        return _Count(self.weight.numel())

    def forward(self, x):
        return F.prelu(x, self.weight)

    def extra_repr(self):
        return f"num_parameters={self.num_parameters}"


class GLU(Module):
    def __init__(self, dim: int = -1):
        super().__init__()
        self.dim = dim

    def forward(self, x):
        return F.glu(x, self.dim)

    def extra_repr(self):
        return f"dim={self.dim}"


class Softmin(Module):
    def __init__(self, dim: int | None = None):
        super().__init__()
        self.dim = dim

    def forward(self, x):
        return F.softmin(x, self.dim)

    def extra_repr(self):
        return f"dim={self.dim}"


class Tanhshrink(_Activation):
    fn = staticmethod(F.tanhshrink)


class Softshrink(Module):
    def __init__(self, lambd: float = 0.5):
        super().__init__()
        self.lambd = lambd

    def forward(self, x):
        return F.softshrink(x, self.lambd)

    def extra_repr(self):
        return str(self.lambd)


class Hardshrink(Softshrink):
    def forward(self, x):
        return F.hardshrink(x, self.lambd)


class Dropout(Module):
    """Inverted dropout, active only in train mode."""

    def __init__(self, p: float = 0.5):
        super().__init__()
        if not 0 <= p <= 1:
            raise ValueError(f"Dropout: p must be in [0, 1], got {p}")
        self.p = p

    def forward(self, x):
        return F.dropout(x, self.p, self.training)

    def extra_repr(self):
        return f"p={self.p}"


class Flatten(Module):
    def __init__(self, start_dim: int = 1, end_dim: int = -1):
        super().__init__()
        self.start_dim, self.end_dim = start_dim, end_dim

    def forward(self, x):
        return x.flatten(self.start_dim, self.end_dim)


class Unflatten(Module):
    """Split dim into `unflattened_size` (the inverse of Flatten)."""

    def __init__(self, dim: int, unflattened_size):
        super().__init__()
        self.dim, self.unflattened_size = dim, tuple(unflattened_size)

    def forward(self, x):
        d = self.dim % x.ndim
        return x.reshape(x.shape[:d] + self.unflattened_size + x.shape[d + 1:])


ACTIVATIONS = {"relu": ReLU, "tanh": Tanh, "sigmoid": Sigmoid, "leaky_relu": LeakyReLU,
               "identity": Identity, "silu": SiLU, "gelu": GELU, "elu": ELU, "selu": SELU,
               "mish": Mish, "softsign": Softsign, "hardtanh": Hardtanh}


class MLP(Sequential):
    """Linear layers of the given sizes with an activation between them (none after the
    last): MLP([784, 256, 10], activation='relu')."""

    def __init__(self, sizes, activation="relu", dropout: float = 0.0, dtype=None):
        if len(sizes) < 2:
            raise ValueError(f"MLP: needs at least an input and an output size, got {sizes}")
        act = ACTIVATIONS.get(activation) if isinstance(activation, str) else activation
        if act is None:
            raise ValueError(f"MLP: unknown activation {activation!r}; choose from {sorted(ACTIVATIONS)}")
        layers: list[Module] = []
        for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
            layers.append(Linear(a, b, dtype=dtype))
            if i < len(sizes) - 2:
                layers.append(act())
                if dropout:
                    layers.append(Dropout(dropout))
        super().__init__(*layers)


# ---- loss modules ----
class _Loss(Module):
    fn: Callable[..., Tensor]

    def __init__(self, reduction: str = "mean"):
        super().__init__()
        if reduction not in F._REDUCTIONS:
            raise ValueError(f"reduction must be one of {F._REDUCTIONS}, not {reduction!r}")
        self.reduction = reduction

    def forward(self, input, target):
        return type(self).fn(input, target, reduction=self.reduction)

    def extra_repr(self):
        return f"reduction={self.reduction!r}"


class MSELoss(_Loss):
    fn = staticmethod(F.mse_loss)


class L1Loss(_Loss):
    fn = staticmethod(F.l1_loss)


class BCELoss(_Loss):
    fn = staticmethod(F.binary_cross_entropy)


class BCEWithLogitsLoss(_Loss):
    fn = staticmethod(F.binary_cross_entropy_with_logits)


class _WeightedLoss(_Loss):
    """A class-index loss with PyTorch's options: the class weights (a buffer, so they are in
    the state_dict as PyTorch's), ignore_index, and the deprecated size_average/reduce."""

    weight: Tensor | None

    def __init__(self, weight: Tensor | None = None, size_average=None, ignore_index: int = -100, reduce=None,
                 reduction: str = "mean"):
        if size_average is not None or reduce is not None:
            reduction = "none" if reduce is not None and not reduce else \
                "sum" if size_average is not None and not size_average else "mean"
        super().__init__(reduction)
        self.register_buffer("weight", weight)
        self.ignore_index = ignore_index

    def forward(self, input, target):
        return type(self).fn(input, target, self.weight, ignore_index=self.ignore_index, reduction=self.reduction)


class CrossEntropyLoss(_WeightedLoss):
    """F.cross_entropy as a layer: weight, ignore_index, reduction and label_smoothing as PyTorch's."""

    fn = staticmethod(F.cross_entropy)

    def __init__(self, weight: Tensor | None = None, size_average=None, ignore_index: int = -100, reduce=None,
                 reduction: str = "mean", label_smoothing: float = 0.0):
        super().__init__(weight, size_average, ignore_index, reduce, reduction)
        self.label_smoothing = label_smoothing

    def forward(self, input, target):
        return F.cross_entropy(input, target, self.weight, ignore_index=self.ignore_index, reduction=self.reduction,
                               label_smoothing=self.label_smoothing)


class NLLLoss(_WeightedLoss):
    """F.nll_loss as a layer: weight, ignore_index and reduction as PyTorch's."""

    fn = staticmethod(F.nll_loss)


class SmoothL1Loss(_Loss):
    def __init__(self, reduction: str = "mean", beta: float = 1.0):
        super().__init__(reduction)
        self.beta = beta

    def forward(self, input, target):
        return F.smooth_l1_loss(input, target, self.reduction, self.beta)


class HuberLoss(_Loss):
    def __init__(self, reduction: str = "mean", delta: float = 1.0):
        super().__init__(reduction)
        self.delta = delta

    def forward(self, input, target):
        return F.huber_loss(input, target, self.reduction, self.delta)

