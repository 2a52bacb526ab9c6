"""The optimizers' base class: parameter groups (each group's parameters one C array),
hyperparameter checks, zero_grad and PyTorch's state_dict layout. Its own module, so that
both cgrad.optim and cgrad.optim.lbfgs import it without a cycle."""
from __future__ import annotations

import math

import numpy as np

from .. import _C
from ..replay import replayed

_REAL = (int, float, np.integer, np.floating)

# per method name, the functions whose effect the C plan reproduces: a replay runs the plan
# only for these, not for a subclass's own step or zero_grad (cgrad/optim adds the steps)
_NATIVE: dict = {"step": set(), "zero_grad": set()}


class Optimizer:
    """Parameter groups, as torch.optim has them: `param_groups` is a list of dicts, each
    with its `params` and its own hyperparameters (keys it lacks come from the defaults).
    A group's hyperparameters (e.g. `param_groups[i]['lr']`) may be changed between steps;
    its parameters are fixed once added (add more with add_param_group). Each group's
    parameters are one C array, so a step is one C call per group.

    Step counts (Adam's bias correction) are kept per group rather than per parameter:
    a parameter that had no gradient at some step still counts that step."""

    _state_names: tuple = ()
    _unsupported: tuple = ()   # torch options cgrad does not implement: refused when true
    # the C step (cgrad._C.OptimPlan) and the group keys it reads; CG_OPTIM_NONE: no C step
    _plan_kind: int = -1
    _plan_keys: tuple = ()
    _decoupled = False

    def __init__(self, params, defaults: dict):
        self.defaults = defaults
        self.param_groups: list[dict] = []
        self._sets: list[_C.ParamSet] = []   # one per group, in the same order
        self._plan = self._new_plan()         # holds step_count
        # group i has taken step_count - _added_at[i] steps: one counter to bump per step
        self._added_at: list[int] = []
        # (group, its ParamSet, _added_at) per group: one tuple to walk per step (zip costs more)
        self._pairs: tuple = ()
        self._check_group(defaults, "")
        if isinstance(params, _C.TensorBase) or isinstance(params, dict):
            raise TypeError(f"{self._name}: params must be an iterable of tensors or of dicts "
                            f"(param groups), got a {type(params).__name__}")
        groups = list(params)
        if not groups:
            raise ValueError(f"{self._name}: got an empty parameter list")
        if not isinstance(groups[0], dict):
            groups = [{"params": groups}]
        for group in groups:
            self.add_param_group(group)

    @property
    def _name(self) -> str:
        return type(self).__name__

    def _new_plan(self) -> _C.OptimPlan:
        return _C.OptimPlan(self, self._plan_kind, self._decoupled, self._plan_keys)

    @property
    def step_count(self) -> int:
        """Steps taken (the count Adam's bias correction uses); kept in the C plan."""
        return self._plan.step_count

    @step_count.setter
    def step_count(self, n: int) -> None:
        self._plan.step_count = n

    def add_param_group(self, param_group: dict) -> None:
        """Add a group (a dict with 'params' and any hyperparameters; missing ones are taken
        from the defaults). The dict itself is filled in and appended, as in PyTorch."""
        where = f"param group {len(self.param_groups)}: "
        if not isinstance(param_group, dict):
            raise TypeError(f"{self._name}: {where}a param group is a dict with a 'params' key, "
                            f"got a {type(param_group).__name__}")
        if "params" not in param_group:
            raise ValueError(f"{self._name}: {where}the dict has no 'params' key")
        params = param_group["params"]
        if isinstance(params, _C.TensorBase):
            params = [params]
        elif isinstance(params, (set, frozenset)):
            raise TypeError(f"{self._name}: {where}params is a set, whose order changes between "
                            f"runs (and so would the state_dict's indices); use a list")
        else:
            try:
                params = list(params)
            except TypeError:
                raise TypeError(f"{self._name}: {where}params must be a tensor or an iterable of "
                                f"tensors, got a {type(params).__name__}") from None
        seen: set[int] = set()
        for i, p in enumerate(params):
            if not isinstance(p, _C.TensorBase):
                raise TypeError(f"{self._name}: {where}parameter {i} is a {type(p).__name__}, not a tensor")
            if p.dtype.kind != "f":
                raise TypeError(f"{self._name}: {where}parameter {i} is {p.dtype}; the parameters must be "
                                f"float tensors")
            if id(p) in seen:  # one C array holding it twice would update it twice per step
                raise ValueError(f"{self._name}: {where}parameter {i} appears twice in the group")
            seen.add(id(p))
        if any(id(p) in seen for g in self.param_groups for p in g["params"]):
            raise ValueError(f"{self._name}: {where}some parameters appear in more than one parameter group")
        filled = dict(self.defaults)
        filled.update((k, v) for k, v in param_group.items() if k != "params")
        self._check_group(filled, where)
        pset = _C.ParamSet(params)  # refuses non-leaf tensors
        # checked: only now change the caller's dict and the optimizer
        for k, v in self.defaults.items():
            param_group.setdefault(k, v)
        param_group["params"] = params
        self.param_groups.append(param_group)
        self._sets.append(pset)
        self._added_at.append(self.step_count)
        self._repair()

    # ---- pickling and copying: the C parameter sets hold pointers, so they travel as
    # their state buffers and are rebuilt over the params (the same objects as the
    # model's when both are pickled or deep-copied together: the memo) ----
    def __getstate__(self) -> dict:
        state = self.__dict__.copy()
        del state["_sets"], state["_pairs"], state["_plan"]
        state["step_count"] = self.step_count
        state["_set_states"] = [[s.get_state(j) for j in range(len(self._state_names))] for s in self._sets]
        return state

    def __setstate__(self, state: dict) -> None:
        state = dict(state)
        saved = state.pop("_set_states")
        step_count = state.pop("step_count")
        self.__dict__.update(state)
        self._plan = self._new_plan()
        self.step_count = step_count
        self._sets = [_C.ParamSet(g["params"]) for g in self.param_groups[:len(saved)]]
        for s, buffers in zip(self._sets, saved):
            for j, values in enumerate(buffers):
                s.set_state(j, values)
        self._repair()

    def _repair(self) -> None:
        """The groups changed (added, loaded): the plan re-reads them at the next step."""
        self._pairs = tuple(zip(self.param_groups, self._sets, self._added_at))
        self._plan.set_groups(self.param_groups, self._sets, self._added_at)

    def _native_point(self, method: str, arg: int = 0):
        """What a replay runs in C for `method` (Program.capture_native's arguments), or
        None when this class overrides it or has no C step: then its Python runs."""
        if getattr(type(self), method) not in _NATIVE[method]:
            return None
        if method == "step" and self._plan_kind < 0:
            return None
        return self._plan, 0 if method == "step" else 1, arg

    def _c_step(self) -> None:
        """One step by the C plan, after re-reading the groups if anything changed."""
        plan = self._plan
        stale = plan.stale()
        if stale:
            if stale & 2:  # dicts were appended to param_groups
                self._sync_groups()
            plan.refresh()
        plan.step()

    def _check_group(self, g: dict, where: str) -> None:
        """Refuse hyperparameters the update rule cannot use (`where` names the group)."""
        for name, v in g.items():
            if name in self._unsupported and v:
                raise ValueError(f"{self._name}: {where}{name}=True is not supported by cgrad")
            if name not in self.defaults or isinstance(self.defaults[name], (bool, tuple)):
                continue
            if isinstance(v, bool) or not isinstance(v, _REAL):
                raise TypeError(f"{self._name}: {where}{name} must be a number, got {v!r}")
            if not v >= 0:  # also refuses nan
                raise ValueError(f"{self._name}: {where}{name} must be >= 0, got {v}")

    @property
    def lr(self) -> float:
        """Group 0's learning rate (the only one when there is one group)."""
        return self.param_groups[0]["lr"]

    @lr.setter
    def lr(self, value: float) -> None:
        self.param_groups[0]["lr"] = float(value)

    def _group_steps(self) -> list:
        return [self.step_count - a for a in self._added_at]

    def _sync_groups(self) -> tuple:
        """param_groups was changed directly: dicts appended to it are added as groups
        (as if by add_param_group); groups removed cannot be told apart, so refuse."""
        groups, n = self.param_groups, len(self._sets)
        if len(groups) < n:
            raise RuntimeError(f"{self._name}: param_groups has {len(groups)} groups, {n} were added; "
                               f"groups cannot be removed")
        extra = groups[n:]
        del groups[n:]
        for g in extra:
            self.add_param_group(g)
        return self._pairs

    @replayed(native=lambda self, set_to_none=True: self._native_point("zero_grad", bool(set_to_none)))
    def zero_grad(self, set_to_none: bool = True) -> None:
        """Drop (default) or zero every parameter's gradient."""
        if len(self.param_groups) != len(self._sets):
            self._sync_groups()
        self._plan.zero_grad(set_to_none)

    def step(self) -> None:
        raise NotImplementedError

    def __repr__(self) -> str:
        lines = [f"{self._name} ("]
        for i, g in enumerate(self.param_groups):
            lines.append(f"Parameter Group {i}")
            lines += [f"    {k}: {g[k]}" for k in sorted(g) if k != "params"]
        return "\n".join(lines + [")"])

    def state_dict(self) -> dict:
        """PyTorch's layout: {'state': {index: {'step': n, buffer name: array}},
        'param_groups': [{hyperparameters..., 'params': [indices]}]}, parameters numbered
        across the groups in order. Arrays are copies; a parameter without state is absent."""
        state: dict = {}
        groups = []
        index = 0
        for g, s, step in zip(self.param_groups, self._sets, self._group_steps()):
            buffers = [s.get_state(j) for j in range(len(self._state_names))]
            ids = []
            for k in range(len(g["params"])):
                entry = {name: b[k].numpy() for name, b in zip(self._state_names, buffers) if b[k] is not None}
                if entry or step:
                    state[index] = {"step": step, **entry}
                ids.append(index)
                index += 1
            packed = {k: v for k, v in g.items() if k != "params"}
            packed["params"] = ids
            groups.append(packed)
        return {"state": state, "param_groups": groups}

    def load_state_dict(self, state_dict: dict) -> None:
        """Load what state_dict() returned (or the single-group format older cgrad wrote).
        Hyperparameters come from the saved groups; everything is checked before anything
        changes."""
        if isinstance(state_dict, dict) and "param_group" in state_dict and "param_groups" not in state_dict:
            state_dict = self._from_old_format(state_dict)
        if not isinstance(state_dict, dict) or "state" not in state_dict or "param_groups" not in state_dict:
            raise ValueError(f"{self._name}.load_state_dict: expected a dict with 'state' and 'param_groups'")
        saved_groups, saved_state = state_dict["param_groups"], state_dict["state"]
        if len(saved_groups) != len(self.param_groups):
            raise ValueError(f"{self._name}.load_state_dict: the state dict has {len(saved_groups)} parameter "
                             f"groups, the optimizer {len(self.param_groups)}")
        saved_state = {int(k): v for k, v in saved_state.items()}
        plan = []
        for gi, (g, saved) in enumerate(zip(self.param_groups, saved_groups)):
            ids = list(saved["params"])
            if len(ids) != len(g["params"]):
                raise ValueError(f"{self._name}.load_state_dict: saved param group {gi} has {len(ids)} "
                                 f"parameters, the optimizer's has {len(g['params'])}")
            hyper = {k: v for k, v in saved.items() if k != "params"}
            self._check_group(dict(g, **hyper), f"saved param group {gi}: ")
            buffers: list[list] = [[] for _ in self._state_names]
            steps = set()
            for p, idx in zip(g["params"], ids):
                entry = saved_state.get(idx, {})
                if "step" in entry:
                    steps.add(int(float(entry["step"])))
                for j, name in enumerate(self._state_names):
                    v = entry.get(name)
                    if v is not None:
                        v = _as_array(v)
                        if v.size != math.prod(p.shape):
                            raise ValueError(f"{self._name}.load_state_dict: state '{name}' of parameter {idx} "
                                             f"has {v.size} values for a parameter of shape {tuple(p.shape)}")
                    buffers[j].append(v)
            if len(steps) > 1:
                raise ValueError(f"{self._name}.load_state_dict: the parameters of group {gi} have different step "
                                 f"counts {sorted(steps)}; cgrad keeps one step count per group")
            plan.append((hyper, buffers, steps.pop() if steps else 0))
        self.step_count = plan[0][2]
        for gi, (hyper, buffers, step) in enumerate(plan):
            self.param_groups[gi].update(hyper)
            for j, values in enumerate(buffers):
                self._sets[gi].set_state(j, values)
            self._added_at[gi] = self.step_count - step
        self._repair()

    def _from_old_format(self, old: dict) -> dict:
        """{'param_group', 'step', 'state': {name: [array per parameter]}} -> PyTorch's layout."""
        if len(self.param_groups) != 1:
            raise ValueError(f"{self._name}.load_state_dict: a single-group state dict (older cgrad) cannot be "
                             f"loaded into {len(self.param_groups)} param groups")
        n, step = len(self.param_groups[0]["params"]), int(old["step"])
        state = {}
        for k in range(n):
            entry = {}
            for name in self._state_names:
                values = old["state"][name]
                if len(values) != n:
                    raise ValueError(f"{self._name}.load_state_dict: state '{name}' has {len(values)} entries "
                                     f"for {n} parameters")
                if values[k] is not None:
                    entry[name] = values[k]
            if entry or step:
                state[k] = {"step": step, **entry}
        return {"state": state, "param_groups": [dict(old["param_group"], params=list(range(n)))]}


def _as_array(v) -> np.ndarray:
    if hasattr(v, "detach"):  # a torch tensor (a cgrad one converts directly)
        v = v.detach().cpu().numpy()
    return np.asarray(v)


_NATIVE["zero_grad"].add(Optimizer.zero_grad)
