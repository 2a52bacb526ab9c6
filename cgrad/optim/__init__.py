"""Optimizers with PyTorch's update rules; each step updates every parameter in one C call.

    opt = cgrad.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    opt.zero_grad(); loss.backward(); opt.step()
"""
from __future__ import annotations

from .. import _C
from ..replay import replayed


class Optimizer:
    """Holds the parameters (as one C array) and one param group of hyperparameters.
    `param_groups[0]['lr']` (or `.lr`) may be changed between steps, e.g. by a scheduler."""

    _state_names: tuple = ()

    def __init__(self, params, defaults: dict):
        params = list(params)
        if not params:
            raise ValueError(f"{type(self).__name__}: got an empty parameter list")
        for name, v in defaults.items():
            if isinstance(v, (int, float)) and not isinstance(v, bool) and v < 0:
                raise ValueError(f"{type(self).__name__}: {name} must be >= 0, got {v}")
        self._set = _C.ParamSet(params)
        self.param_groups = [dict(defaults, params=params)]
        self.defaults = defaults
        self.step_count = 0

    @property
    def lr(self) -> float:
        return self.param_groups[0]["lr"]

    @lr.setter
    def lr(self, value: float) -> None:
        self.param_groups[0]["lr"] = float(value)

    @replayed
    def zero_grad(self, set_to_none: bool = True) -> None:
        """Drop (default) or zero every parameter's gradient."""
        self._set.zero_grad(set_to_none)

    def step(self) -> None:
        raise NotImplementedError

    def state_dict(self) -> dict:
        """Hyperparameters, step count and per-parameter state as numpy arrays."""
        group = {k: v for k, v in self.param_groups[0].items() if k != "params"}
        state = {name: [None if t is None else t.numpy() for t in self._set.get_state(i)]
                 for i, name in enumerate(self._state_names)}
        return {"param_group": group, "step": self.step_count, "state": state}

    def load_state_dict(self, state: dict) -> None:
        self.param_groups[0].update(state["param_group"])
        self.step_count = int(state["step"])
        for i, name in enumerate(self._state_names):
            self._set.set_state(i, list(state["state"][name]))


class SGD(Optimizer):
    """p -= lr * g, with PyTorch's momentum, dampening, Nesterov and weight decay."""

    _state_names = ("momentum_buffer",)

    def __init__(self, params, lr: float = 1e-3, momentum: float = 0.0, dampening: float = 0.0,
                 weight_decay: float = 0.0, nesterov: bool = False):
        if nesterov and (momentum <= 0 or dampening != 0):
            raise ValueError("SGD: Nesterov momentum needs momentum > 0 and dampening = 0")
        super().__init__(params, dict(lr=lr, momentum=momentum, dampening=dampening,
                                      weight_decay=weight_decay, nesterov=nesterov))

    @replayed
    def step(self) -> None:
        g = self.param_groups[0]
        self._set.sgd_step(g["lr"], g["momentum"], g["dampening"], g["weight_decay"], g["nesterov"])
        self.step_count += 1


class Adam(Optimizer):
    """Adam (weight_decay adds wd * p to the gradient, as torch.optim.Adam)."""

    _state_names = ("exp_avg", "exp_avg_sq")
    _decoupled = False

    def __init__(self, params, lr: float = 1e-3, betas=(0.9, 0.999), eps: float = 1e-8,
                 weight_decay: float = 0.0):
        if not (0 <= betas[0] < 1 and 0 <= betas[1] < 1):
            raise ValueError(f"{type(self).__name__}: betas must be in [0, 1), got {betas}")
        super().__init__(params, dict(lr=lr, betas=tuple(betas), eps=eps, weight_decay=weight_decay))

    @replayed
    def step(self) -> None:
        g = self.param_groups[0]
        self.step_count += 1
        self._set.adam_step(self.step_count, g["lr"], g["betas"][0], g["betas"][1], g["eps"],
                            g["weight_decay"], self._decoupled)


class AdamW(Adam):
    """Adam with decoupled weight decay: p *= 1 - lr * wd before the Adam update."""

    _decoupled = True

    def __init__(self, params, lr: float = 1e-3, betas=(0.9, 0.999), eps: float = 1e-8,
                 weight_decay: float = 1e-2):
        super().__init__(params, lr, betas, eps, weight_decay)


from . import lr_scheduler  # noqa: E402
from .lr_scheduler import CosineAnnealingLR, ReduceLROnPlateau, StepLR  # noqa: E402,F401
