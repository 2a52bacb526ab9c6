"""Optimizers with PyTorch's update rules and parameter groups; each step updates every
parameter of a group in one C call.

    opt = cgrad.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    opt = cgrad.optim.AdamW([{"params": weights, "weight_decay": 1e-2},
                             {"params": biases, "weight_decay": 0.0}], lr=1e-3)
    opt.zero_grad(); loss.backward(); opt.step()
"""
from __future__ import annotations

from ..replay import replayed
from ._base import _NATIVE, _REAL, Optimizer


def _step_point(self):
    return self._native_point("step")


class SGD(Optimizer):
    """p -= lr * g, with PyTorch's momentum, dampening, Nesterov and weight decay."""

    _state_names = ("momentum_buffer",)
    _unsupported = ("maximize",)
    _plan_kind = 0  # CG_OPTIM_SGD
    _plan_keys = ("lr", "momentum", "dampening", "weight_decay", "nesterov")

    def __init__(self, params, lr: float = 1e-3, momentum: float = 0.0, dampening: float = 0.0,
                 weight_decay: float = 0.0, nesterov: bool = False):
        super().__init__(params, dict(lr=lr, momentum=momentum, dampening=dampening,
                                      weight_decay=weight_decay, nesterov=nesterov))

    def _check_group(self, g: dict, where: str) -> None:
        super()._check_group(g, where)
        if g["nesterov"] and (g["momentum"] <= 0 or g["dampening"] != 0):
            raise ValueError(f"{self._name}: {where}Nesterov momentum needs momentum > 0 and dampening = 0")

    @replayed(native=_step_point)
    def step(self) -> None:
        self._c_step()


class Adam(Optimizer):
    """Adam (weight_decay adds wd * p to the gradient, as torch.optim.Adam)."""

    _state_names = ("exp_avg", "exp_avg_sq")
    _unsupported = ("amsgrad", "maximize")
    _decoupled = False
    _plan_kind = 1  # CG_OPTIM_ADAM
    _plan_keys = ("lr", "betas", "eps", "weight_decay")

    def __init__(self, params, lr: float = 1e-3, betas=(0.9, 0.999), eps: float = 1e-8,
                 weight_decay: float = 0.0):
        super().__init__(params, dict(lr=lr, betas=tuple(betas), eps=eps, weight_decay=weight_decay))

    def _check_group(self, g: dict, where: str) -> None:
        super()._check_group(g, where)
        b = g["betas"]
        if (not isinstance(b, (tuple, list)) or len(b) != 2
                or not all(isinstance(x, _REAL) and not isinstance(x, bool) and 0 <= x < 1 for x in b)):
            raise ValueError(f"{self._name}: {where}betas must be two numbers in [0, 1), got {b}")
        # torch's Adam(decoupled_weight_decay=True) is AdamW (a key its state dicts carry)
        if bool(g.get("decoupled_weight_decay", self._decoupled)) != self._decoupled:
            raise ValueError(f"{self._name}: {where}decoupled_weight_decay="
                             f"{g['decoupled_weight_decay']} does not match {self._name}; use "
                             f"{'AdamW' if not self._decoupled else 'Adam'}")

    @replayed(native=_step_point)
    def step(self) -> None:
        self._c_step()


class AdamW(Adam):
    """Adam with decoupled weight decay: p *= 1 - lr * wd before the Adam update."""

    _decoupled = True

    def __init__(self, params, lr: float = 1e-3, betas=(0.9, 0.999), eps: float = 1e-8,
                 weight_decay: float = 1e-2):
        super().__init__(params, lr, betas, eps, weight_decay)


_NATIVE["step"].update((SGD.step, Adam.step))

from . import lr_scheduler  # noqa: E402
from .lr_scheduler import (CosineAnnealingLR, ExponentialLR, LambdaLR, LinearLR, MultiStepLR,  # noqa: E402,F401
                           ReduceLROnPlateau, SequentialLR, StepLR)
from .lbfgs import LBFGS  # noqa: E402,F401
