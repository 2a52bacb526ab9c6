"""Learning-rate schedules: call step() once per epoch (ReduceLROnPlateau: step(metric)).
Each acts on every param group of the optimizer, from that group's own base lr, as
PyTorch's do; get_last_lr() gives one value per group. The closed-form ones (an lr that is
a function of the epoch and the base lr) also set epoch 0's lr when made, as PyTorch's do,
and can be chained by SequentialLR (warm-up, then cosine decay, say)."""
from __future__ import annotations

import bisect
import math
from typing import TYPE_CHECKING, Callable

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


class _ClosedForm(_Scheduler):
    """A schedule whose lr at epoch t is a function of t and each group's base lr."""

    def __init__(self, optimizer):
        super().__init__(optimizer)
        self._set_lrs(self._lrs_at(0))

    def _lrs_at(self, t: int) -> list:
        raise NotImplementedError

    def step(self) -> None:
        self.last_epoch += 1
        self._set_lrs(self._lrs_at(self.last_epoch))


class CosineAnnealingLR(_ClosedForm):
    """Each group's lr follows half a cosine from its base lr down to eta_min over T_max
    epochs; after T_max the cosine goes on (back up over the next T_max), as PyTorch's does."""

    def __init__(self, optimizer, T_max: int, eta_min: float = 0.0):
        self.T_max, self.eta_min = _positive_int(T_max, "CosineAnnealingLR: T_max"), eta_min
        super().__init__(optimizer)

    def _lrs_at(self, t: int) -> list:
        c = (1 + math.cos(math.pi * t / self.T_max)) / 2
        return [self.eta_min + (base - self.eta_min) * c for base in self._base_lrs()]


class LambdaLR(_ClosedForm):
    """Each group's lr is its base lr times lr_lambda(epoch): one function, or one per group."""

    def __init__(self, optimizer, lr_lambda: Callable[[int], float] | list):
        n = len(optimizer.param_groups)
        fns = list(lr_lambda) if isinstance(lr_lambda, (list, tuple)) else [lr_lambda] * n
        if len(fns) != n:
            raise ValueError(f"LambdaLR: {len(fns)} lr_lambdas for {n} param groups")
        if not all(callable(f) for f in fns):
            raise TypeError("LambdaLR: lr_lambda must be a function of the epoch (or a list of them)")
        self.lr_lambdas = fns
        super().__init__(optimizer)

    def _lrs_at(self, t: int) -> list:
        return [base * f(t) for base, f in zip(self._base_lrs(), self.lr_lambdas)]


class LinearLR(_ClosedForm):
    """The lr goes linearly from base * start_factor to base * end_factor over total_iters
    epochs (a warm-up, with the defaults), then stays."""

    def __init__(self, optimizer, start_factor: float = 1.0 / 3, end_factor: float = 1.0, total_iters: int = 5):
        if not 0 < start_factor <= 1 or not 0 <= end_factor <= 1:
            raise ValueError(f"LinearLR: start_factor must be in (0, 1] and end_factor in [0, 1], "
                             f"got {start_factor} and {end_factor}")
        self.start_factor, self.end_factor = start_factor, end_factor
        self.total_iters = _positive_int(total_iters, "LinearLR: total_iters")
        super().__init__(optimizer)

    def _lrs_at(self, t: int) -> list:
        f = self.start_factor + (self.end_factor - self.start_factor) * min(t, self.total_iters) / self.total_iters
        return [base * f for base in self._base_lrs()]


class ExponentialLR(_ClosedForm):
    """lr = base * gamma ** epoch."""

    def __init__(self, optimizer, gamma: float):
        self.gamma = gamma
        super().__init__(optimizer)

    def _lrs_at(self, t: int) -> list:
        return [base * self.gamma ** t for base in self._base_lrs()]


class MultiStepLR(_ClosedForm):
    """lr = base * gamma ** (the number of milestones reached)."""

    def __init__(self, optimizer, milestones, gamma: float = 0.1):
        self.milestones, self.gamma = sorted(int(m) for m in milestones), gamma
        super().__init__(optimizer)

    def _lrs_at(self, t: int) -> list:
        return [base * self.gamma ** bisect.bisect_right(self.milestones, t) for base in self._base_lrs()]


class SequentialLR(_Scheduler):
    """schedulers[0] until milestones[0], then schedulers[1] from its own epoch 0, and so
    on (closed-form schedulers of the same optimizer)."""

    def __init__(self, optimizer, schedulers: list, milestones: list):
        if len(milestones) != len(schedulers) - 1:
            raise ValueError(f"SequentialLR: {len(schedulers)} schedulers need {len(schedulers) - 1} milestones, "
                             f"got {len(milestones)}")
        for sch in schedulers:
            if not isinstance(sch, _ClosedForm) or sch.optimizer is not optimizer:
                raise ValueError("SequentialLR: every scheduler must be a closed-form one (LambdaLR, LinearLR, "
                                 "CosineAnnealingLR, ExponentialLR, MultiStepLR) of the same optimizer")
        self.schedulers, self.milestones = list(schedulers), [int(m) for m in milestones]
        super().__init__(optimizer)
        self._set_lrs(self.schedulers[0]._lrs_at(0))

    def step(self) -> None:
        self.last_epoch += 1
        i = bisect.bisect_right(self.milestones, self.last_epoch)
        start = self.milestones[i - 1] if i else 0
        self._set_lrs(self.schedulers[i]._lrs_at(self.last_epoch - start))


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
