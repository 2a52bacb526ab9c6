"""Trainer: fit / evaluate / predict over numpy data, with progress, history and callbacks.

    trainer = cgrad.Trainer(model, "cross_entropy", cgrad.optim.Adam(model.parameters()))
    history = trainer.fit(X, y, epochs=20, batch_size=32, validation_split=0.1)

The loop per step is the plain one (zero_grad, forward, loss, backward, step); the work
per element and per node is in C. Training metrics are those of the weights at the end of
each epoch. validation_split takes the last fraction of the data *after* shuffling it once
with the trainer's seed, so it is a random subset.
"""
from __future__ import annotations

import math
import os
import sys
import time

import numpy as np

from . import nn
from .autograd import no_grad
from .data import DataLoader
from .losses import CLASSIFICATION_LOSSES, batch_loss, loss_targets, resolve_loss
from .replay import compile
from .serialization import save
from .tensor import from_numpy, manual_seed

# ---------------------------------------------------------------- metrics

def accuracy(output: np.ndarray, target: np.ndarray) -> float:
    """Share of rows whose arg-max (or, for one output column, output > 0) is the target."""
    output = np.asarray(output)
    pred = (output.reshape(len(output), -1)[:, 0] > 0).astype(np.int64) if (
        output.ndim == 1 or output.shape[1] == 1) else output.argmax(axis=1)
    return float(np.mean(pred == np.asarray(target).reshape(-1)))


def mse(output: np.ndarray, target: np.ndarray) -> float:
    return float(np.mean((np.asarray(output) - np.asarray(target).reshape(np.shape(output))) ** 2))


METRICS = {"accuracy": accuracy, "mse": mse}


class History:
    """Per-epoch records: history['loss'], ['val_loss'], metric names, ['time'] (s)."""

    def __init__(self):
        self.epoch: list[int] = []
        self.history: dict[str, list[float]] = {}

    def append(self, epoch: int, logs: dict) -> None:
        self.epoch.append(epoch)
        for k, v in logs.items():
            self.history.setdefault(k, []).append(v)

    def __getitem__(self, key):
        return self.history[key]

    def __repr__(self):
        return f"History(epochs={len(self.epoch)}, keys={sorted(self.history)})"

    def plot(self, metrics=None, **kwargs):
        """Draw the curves per epoch, one panel per metric with training and validation on
        it; returns the matplotlib Figure. Options (cgrad.viz.plot_history): metrics,
        logy=True (log-scale loss), ax=, path= (also save), title=, figsize=, dpi=."""
        from .viz import plot_history  # matplotlib only when plotting
        return plot_history(self, metrics, **kwargs)


# ---------------------------------------------------------------- callbacks

class Callback:
    """Hooks called by Trainer.fit; set trainer.stop_training = True to stop."""

    trainer: Trainer  # set by Trainer.fit before the first hook

    def on_train_begin(self, logs=None): ...
    def on_epoch_end(self, epoch: int, logs: dict): ...
    def on_batch_end(self, step: int, loss: float): ...
    def on_train_end(self, logs=None): ...


def _monitor_mode(monitor: str, mode: str) -> str:
    if mode == "auto":
        return "max" if "acc" in monitor else "min"
    if mode not in ("min", "max"):
        raise ValueError(f"mode must be 'min', 'max' or 'auto', not {mode!r}")
    return mode


class EarlyStopping(Callback):
    """Stop when `monitor` has not improved by min_delta for `patience` epochs; with
    restore_best_weights, put back the parameters of the best epoch at the end."""

    def __init__(self, monitor: str = "val_loss", patience: int = 5, min_delta: float = 0.0,
                 mode: str = "auto", restore_best_weights: bool = False):
        self.monitor, self.patience, self.min_delta = monitor, patience, min_delta
        self.mode = _monitor_mode(monitor, mode)
        self.restore_best_weights = restore_best_weights
        self.best_state: dict[str, np.ndarray] | None = None
        self.best, self.best_epoch, self.wait = None, None, 0
        self.stopped_epoch = None

    def on_train_begin(self, logs=None):
        self.best, self.best_epoch, self.wait, self.best_state = None, None, 0, None

    def on_epoch_end(self, epoch, logs):
        value = logs.get(self.monitor)
        if value is None:
            raise KeyError(f"EarlyStopping: no '{self.monitor}' in the logs ({sorted(logs)}); "
                           f"give validation data or monitor 'loss'")
        better = self.best is None or (value < self.best - self.min_delta if self.mode == "min"
                                       else value > self.best + self.min_delta)
        if better:
            self.best, self.best_epoch, self.wait = value, epoch, 0
            if self.restore_best_weights:
                self.best_state = {k: v.numpy().copy() for k, v in self.trainer.model.state_dict().items()}
        else:
            self.wait += 1
            if self.wait >= self.patience:
                self.stopped_epoch = epoch
                self.trainer.stop_training = True

    def on_train_end(self, logs=None):
        if self.restore_best_weights and self.best_state is not None:
            self.trainer.model.load_state_dict(self.best_state)


class ModelCheckpoint(Callback):
    """Save the model's state dict to `path` (formatted with epoch=, e.g. 'ck-{epoch}.npz')
    after each epoch, or only when `monitor` improves if save_best_only."""

    def __init__(self, path, monitor: str = "val_loss", save_best_only: bool = False, mode: str = "auto"):
        self.path, self.monitor, self.save_best_only = os.fspath(path), monitor, save_best_only
        self.mode = _monitor_mode(monitor, mode)
        self.best = None

    def on_epoch_end(self, epoch, logs):
        if self.save_best_only:
            value = logs.get(self.monitor)
            if value is None:
                raise KeyError(f"ModelCheckpoint: no '{self.monitor}' in the logs ({sorted(logs)})")
            if self.best is not None and not (value < self.best if self.mode == "min" else value > self.best):
                return
            self.best = value
        save(self.trainer.model.state_dict(), self.path.format(epoch=epoch))


class TerminateOnNaN(Callback):
    """Stop training at the first batch whose loss is NaN or infinite."""

    def on_batch_end(self, step, loss):
        if not math.isfinite(loss):
            print(f"TerminateOnNaN: loss is {loss} at step {step}; stopping", file=sys.stderr)
            self.trainer.stop_training = True


# ---------------------------------------------------------------- progress

class _Progress:
    """tqdm when installed and stdout is a terminal, a plain-text bar otherwise on a
    terminal, nothing when not a terminal; the per-epoch summary is printed with verbose."""

    def __init__(self, total: int, desc: str, enabled: bool):
        self.total, self.n, self.bar, self.desc = total, 0, None, desc
        self.enabled = enabled and sys.stdout.isatty()
        if self.enabled:
            try:
                from tqdm.auto import tqdm
                self.bar = tqdm(total=total, desc=desc, leave=False, unit="step")
            except ImportError:
                self.bar = None

    def update(self, loss: float):
        self.n += 1
        if not self.enabled:
            return
        if self.bar is not None:
            self.bar.update(1)
            if self.n % 10 == 0 or self.n == self.total:
                self.bar.set_postfix(loss=f"{loss:.4f}", refresh=False)
        elif self.n % max(self.total // 50, 1) == 0 or self.n == self.total:
            filled = int(30 * self.n / self.total)
            sys.stdout.write(f"\r{self.desc} [{'=' * filled}{'.' * (30 - filled)}] "
                             f"{self.n}/{self.total} loss {loss:.4f}")
            sys.stdout.flush()

    def close(self):
        if self.bar is not None:
            self.bar.close()
        elif self.enabled:
            sys.stdout.write("\r" + " " * 79 + "\r")


# ---------------------------------------------------------------- the trainer

class Trainer:
    """Train `model` with `loss` (a function, a loss Module, or a name such as
    'cross_entropy' or 'mse_loss') and `optimizer`.

    metrics: names from METRICS; by default accuracy for classification losses.
    seed: reseeds cgrad's generator (dropout) and fixes the shuffling, so that the same
    model, data and seed give bit-for-bit the same run (on one thread).
    replay: record the training step once per batch shape and replay it in C afterwards
    (cgrad.compile): the same results bit for bit, less Python per step. Not for models
    that draw random numbers while training (dropout).
    """

    def __init__(self, model, loss, optimizer, metrics=None, seed: int | None = None, replay: bool = False):
        self.model, self.optimizer = model, optimizer
        self.loss_fn, self.loss_name = resolve_loss(loss)
        if metrics is None:
            metrics = ["accuracy"] if self.loss_name in CLASSIFICATION_LOSSES else []
        unknown = [m for m in metrics if m not in METRICS]
        if unknown:
            raise ValueError(f"Trainer: unknown metrics {unknown}; choose from {sorted(METRICS)}")
        self.metrics = list(metrics)
        self.seed = seed
        self.stop_training = False
        self.step_time: float | None = None  # seconds per training step of the last epoch
        self.replay = replay
        self._make_step()

    def _make_step(self) -> None:
        self._train_step = compile(self._eager_step) if self.replay else self._eager_step

    # pickling and copying: a compiled step's recordings hold C programs over this
    # process's buffers, so a copy records its own on its first step
    def __getstate__(self) -> dict:
        state = self.__dict__.copy()
        del state["_train_step"]
        return state

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        self._make_step()

    def _eager_step(self, xb, yb):
        self.optimizer.zero_grad()
        loss = batch_loss(self.loss_fn, self.loss_name, self.model(xb), yb)
        loss.backward()
        self.optimizer.step()
        return loss

    def fit(self, X, y, epochs: int = 1, batch_size: int = 32, validation_data=None,
            validation_split: float = 0.0, shuffle: bool = True, callbacks=(), verbose: int = 1) -> History:
        """Train for `epochs` passes over (X, y); returns the History."""
        X = np.asarray(X, dtype=np.float32)
        y = loss_targets(self.loss_name, y)
        if len(X) != len(y):
            raise ValueError(f"fit: X has {len(X)} rows but y has {len(y)}")
        if not 0 <= validation_split < 1:
            raise ValueError(f"fit: validation_split must be in [0, 1), got {validation_split}")
        rng = np.random.default_rng(self.seed)
        if self.seed is not None:
            manual_seed(self.seed)
        if validation_split and validation_data is None:
            order = rng.permutation(len(X))  # split after shuffling: a random subset
            n_val = max(int(round(len(X) * validation_split)), 1)
            X, y = X[order], y[order]
            validation_data = (X[-n_val:], y[-n_val:])
            X, y = X[:-n_val], y[:-n_val]
        loader = DataLoader(X, y, batch_size=batch_size, shuffle=shuffle,
                            seed=int(rng.integers(2 ** 63)))
        history = History()
        callbacks = list(callbacks)
        for cb in callbacks:
            cb.trainer = self
        self.stop_training = False
        for cb in callbacks:
            cb.on_train_begin()
        step = 0
        for epoch in range(1, epochs + 1):
            self.model.train()
            progress = _Progress(len(loader), f"epoch {epoch}/{epochs}", verbose > 0)
            t0 = time.perf_counter()
            total, count = 0.0, 0
            for xb, yb in loader:
                value = self._train_step(xb, yb).item()
                total += value * len(yb)
                count += len(yb)
                step += 1
                progress.update(value)
                for cb in callbacks:
                    cb.on_batch_end(step, value)
                if self.stop_training:
                    break
            elapsed = time.perf_counter() - t0
            progress.close()
            self.step_time = elapsed / max(len(loader), 1)
            logs = {"loss": total / max(count, 1)}
            if self.metrics:  # one no-graph pass in large batches: cheaper than per-step metrics
                logs.update(self.evaluate(X, y, loss=False))
            if validation_data is not None:
                logs.update({f"val_{k}": v for k, v in self.evaluate(*validation_data).items()})
            logs["time"] = elapsed
            for cb in callbacks:  # before the history, so callbacks may add to the logs
                cb.on_epoch_end(epoch, logs)
            history.append(epoch, logs)
            if verbose:
                parts = " ".join(f"{k} {v:.4f}" for k, v in logs.items() if isinstance(v, float) and k != "time")
                print(f"epoch {epoch}/{epochs}: {parts} ({elapsed:.2f} s, "
                      f"{self.step_time * 1e6:.0f} us/step)", flush=True)
            if self.stop_training:
                break
        for cb in callbacks:
            cb.on_train_end()
        self.model.eval()
        return history

    def predict(self, X, batch_size: int = 1024) -> np.ndarray:
        """The model's outputs for X as a numpy array (eval mode, no graph)."""
        X = np.asarray(X, dtype=np.float32)
        was_training = self.model.training
        self.model.eval()
        outs = []
        with no_grad():
            for start in range(0, len(X), batch_size):
                outs.append(np.array(self.model(from_numpy(X[start:start + batch_size])).numpy()))
        self.model.train(was_training)
        return np.concatenate(outs) if outs else np.zeros((0,), np.float32)

    def evaluate(self, X, y, batch_size: int = 1024, loss: bool = True) -> dict:
        """{'loss': ..., metric: ...} over (X, y) with the current weights."""
        y = loss_targets(self.loss_name, y)
        out = self.predict(X, batch_size)
        logs = {}
        if loss:
            with no_grad():
                logs["loss"] = batch_loss(self.loss_fn, self.loss_name, from_numpy(out), y).item()
        for m in self.metrics:
            logs[m] = METRICS[m](out, y)
        return logs
