"""Learning-rate schedules: call step() once per epoch (ReduceLROnPlateau: step(metric)).
Each acts on every param group of the optimizer, from that group's own base lr, as
PyTorch's do; get_last_lr() gives one value per group."""
from __future__ import annotations

import math
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from . import Optimizer


def _positive_int(v, what: str) -> int:
    if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 1:
        raise ValueError(f"{what} must be a positive integer, got {v!r}")
    return int(v)


class _Scheduler:
    _uses_base = True  # schedules from base lrs mark the groups with 'initial_lr', as torch

    def __init__(self, optimizer: Optimizer):
        self.optimizer = optimizer
        self.base_lrs: list[float] = []
        if self._uses_base:
            self._base_lrs()
        self.last_epoch = 0
        self._last_lr = [g["lr"] for g in optimizer.param_groups]

    def _base_lrs(self) -> list:
        """Each group's lr when a scheduler first saw it ('initial_lr', as PyTorch keeps
        it in the group); a group added later gets its base lr at the next step."""
        for g in self.optimizer.param_groups[len(self.base_lrs):]:
            self.base_lrs.append(g.setdefault("initial_lr", g["lr"]))
        return self.base_lrs

    @property
    def epoch(self) -> int:
        return self.last_epoch

    def _set_lrs(self, lrs: list) -> None:
        for g, lr in zip(self.optimizer.param_groups, lrs):
            g["lr"] = lr
        self._last_lr = list(lrs)

    def get_last_lr(self) -> list:
        """The lr of each param group as this scheduler last set it."""
        return list(self._last_lr)


class StepLR(_Scheduler):
    """Every step_size epochs, multiply each group's lr by gamma (base_lr * gamma **
    (epoch // step_size) unless the lr was changed by hand: like torch's, it scales the
    current value); call step() once per epoch."""

    def __init__(self, optimizer, step_size: int, gamma: float = 0.1):
        step_size = _positive_int(step_size, "StepLR: step_size")
        super().__init__(optimizer)
        self.step_size, self.gamma = step_size, gamma

    def step(self) -> None:
        self.last_epoch += 1
        groups = self.optimizer.param_groups
        self._base_lrs()
        if self.last_epoch % self.step_size == 0:
            self._set_lrs([g["lr"] * self.gamma for g in groups])
        else:
            self._last_lr = [g["lr"] for g in groups]


class CosineAnnealingLR(_Scheduler):
    """Each group's lr follows half a cosine from its base lr down to eta_min over T_max
    epochs (and stays at eta_min after)."""

    def __init__(self, optimizer, T_max: int, eta_min: float = 0.0):
        T_max = _positive_int(T_max, "CosineAnnealingLR: T_max")
        super().__init__(optimizer)
        self.T_max, self.eta_min = T_max, eta_min

    def step(self) -> None:
        self.last_epoch += 1
        t = min(self.last_epoch, self.T_max)
        c = (1 + math.cos(math.pi * t / self.T_max)) / 2
        self._set_lrs([self.eta_min + (base - self.eta_min) * c for base in self._base_lrs()])


class ReduceLROnPlateau(_Scheduler):
    """Multiply every group's lr by `factor` (not below its min_lr: one value, or one per
    group) when the metric passed to step(metric) has not improved by more than
    `threshold` (relative) for `patience` epochs. A reduction smaller than eps is skipped."""

    _uses_base = False

    def __init__(self, optimizer, mode: str = "min", factor: float = 0.1, patience: int = 10,
                 threshold: float = 1e-4, min_lr: float | list = 0.0, eps: float = 1e-8):
        if mode not in ("min", "max"):
            raise ValueError(f"ReduceLROnPlateau: mode must be 'min' or 'max', not {mode!r}")
        if not 0 < factor < 1:
            raise ValueError(f"ReduceLROnPlateau: factor must be in (0, 1), got {factor}")
        n = len(optimizer.param_groups)
        if isinstance(min_lr, (list, tuple)):
            if len(min_lr) != n:
                raise ValueError(f"ReduceLROnPlateau: {len(min_lr)} min_lr values for {n} param groups")
            self.min_lrs = [float(v) for v in min_lr]
        else:
            self.min_lrs = [float(min_lr)] * n
        super().__init__(optimizer)
        self.mode, self.factor, self.patience = mode, factor, patience
        self.threshold, self.eps = threshold, eps
        self.best = math.inf if mode == "min" else -math.inf
        self.bad_epochs = 0

    def step(self, metric: float) -> None:
        self.last_epoch += 1
        metric = float(metric)
        better = (metric < self.best * (1 - self.threshold) if self.mode == "min"
                  else metric > self.best * (1 + self.threshold))
        if better or not np.isfinite(self.best):
            self.best, self.bad_epochs = metric, 0
        else:
            self.bad_epochs += 1
        groups = self.optimizer.param_groups
        if self.bad_epochs > self.patience:
            if len(self.min_lrs) < len(groups):  # groups added since: the last group's floor
                self.min_lrs += [self.min_lrs[-1]] * (len(groups) - len(self.min_lrs))
            for g, floor in zip(groups, self.min_lrs):
                new = max(g["lr"] * self.factor, floor)
                if g["lr"] - new > self.eps:
                    g["lr"] = new
            self.bad_epochs = 0
        self._last_lr = [g["lr"] for g in groups]
