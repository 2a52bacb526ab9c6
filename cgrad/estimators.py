"""scikit-learn-style estimators: MLPClassifier and MLPRegressor on plain numpy arrays.

Parameters follow sklearn.neural_network (hidden_layer_sizes, activation, solver, alpha,
batch_size, learning_rate_init, max_iter, early_stopping, validation_fraction,
n_iter_no_change, random_state); scikit-learn itself is not needed, but when it is
installed these estimators pass its clone / get_params round trip.
"""
from __future__ import annotations

import inspect

import numpy as np

from . import nn, optim
from .tensor import manual_seed
from .trainer import EarlyStopping, Trainer


class _MLPBase:
    _loss: str  # set by each estimator

    def __init__(self, hidden_layer_sizes=(100,), activation: str = "relu", solver: str = "adam",
                 alpha: float = 1e-4, batch_size="auto", learning_rate_init: float = 1e-3,
                 max_iter: int = 200, early_stopping: bool = False, validation_fraction: float = 0.1,
                 n_iter_no_change: int = 10, random_state=None, momentum: float = 0.9, verbose: bool = False):
        self.hidden_layer_sizes = hidden_layer_sizes
        self.activation = activation
        self.solver = solver
        self.alpha = alpha
        self.batch_size = batch_size
        self.learning_rate_init = learning_rate_init
        self.max_iter = max_iter
        self.early_stopping = early_stopping
        self.validation_fraction = validation_fraction
        self.n_iter_no_change = n_iter_no_change
        self.random_state = random_state
        self.momentum = momentum
        self.verbose = verbose

    # ---- scikit-learn's parameter protocol ----
    @classmethod
    def _param_names(cls):
        return [p for p in inspect.signature(cls.__init__).parameters if p != "self"]

    def get_params(self, deep: bool = True) -> dict:
        return {name: getattr(self, name) for name in self._param_names()}

    def set_params(self, **params):
        valid = self._param_names()
        for k, v in params.items():
            if k not in valid:
                raise ValueError(f"{type(self).__name__}: invalid parameter {k!r}")
            setattr(self, k, v)
        return self

    def __repr__(self):
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_params().items())
        return f"{type(self).__name__}({args})"

    # ---- fitting ----
    def _n_outputs(self, y) -> int:
        raise NotImplementedError

    def _fit(self, X, y_fit, callbacks=None):
        X = np.asarray(X, dtype=np.float32)
        if X.ndim != 2:
            raise ValueError(f"{type(self).__name__}.fit: X must be 2-D, got shape {X.shape}")
        if self.solver not in ("adam", "sgd"):
            raise ValueError(f"{type(self).__name__}: solver must be 'adam' or 'sgd', not {self.solver!r}")
        seed = int(self.random_state) if isinstance(self.random_state, (int, np.integer)) else None
        if seed is not None:
            manual_seed(seed)
        hidden = (self.hidden_layer_sizes,) if np.isscalar(self.hidden_layer_sizes) else tuple(self.hidden_layer_sizes)
        self.model_ = nn.MLP([X.shape[1], *hidden, self._n_outputs(y_fit)], activation=self.activation)
        batch = min(200, len(X)) if self.batch_size == "auto" else int(self.batch_size)
        wd = self.alpha / batch  # sklearn's penalty alpha/2 ||W||^2 per batch, as weight decay
        opt: optim.Optimizer
        if self.solver == "adam":
            opt = optim.Adam(self.model_.parameters(), lr=self.learning_rate_init, weight_decay=wd)
        else:
            opt = optim.SGD(self.model_.parameters(), lr=self.learning_rate_init,
                            momentum=self.momentum, nesterov=self.momentum > 0, weight_decay=wd)
        callbacks = [EarlyStopping("val_loss" if self.early_stopping else "loss",
                                   patience=self.n_iter_no_change, min_delta=1e-4,
                                   restore_best_weights=self.early_stopping), *(callbacks or ())]
        # replay: the same results bit for bit as eager steps, with less Python per step
        self.trainer_ = Trainer(self.model_, self._loss, opt, metrics=[], seed=seed, replay=True)
        self.history_ = self.trainer_.fit(
            X, y_fit, epochs=self.max_iter, batch_size=batch,
            validation_split=self.validation_fraction if self.early_stopping else 0.0,
            callbacks=callbacks, verbose=int(bool(self.verbose)))
        self.n_iter_ = len(self.history_.epoch)
        self.loss_ = self.history_["loss"][-1]
        self.n_features_in_ = X.shape[1]
        return self

    def _raw(self, X) -> np.ndarray:
        if not hasattr(self, "model_"):
            raise RuntimeError(f"{type(self).__name__} is not fitted yet; call fit first")
        X = np.asarray(X, dtype=np.float32)
        if X.ndim != 2 or X.shape[1] != self.n_features_in_:
            raise ValueError(f"{type(self).__name__}: X must have shape (n, {self.n_features_in_}), got {X.shape}")
        return self.trainer_.predict(X)


class MLPClassifier(_MLPBase):
    """A multilayer perceptron trained with cross-entropy; classes may be any labels."""

    _loss = "cross_entropy"

    def _n_outputs(self, y):
        return len(self.classes_)

    def fit(self, X, y, callbacks=None):
        """callbacks: more cgrad.trainer Callbacks for the training loop (e.g. cgrad.dask.StreamMetrics)."""
        y = np.asarray(y)
        self.classes_, y_idx = np.unique(y, return_inverse=True)
        return self._fit(X, y_idx.astype(np.int64), callbacks)

    def predict_proba(self, X) -> np.ndarray:
        z = self._raw(X)
        z = np.exp(z - z.max(axis=1, keepdims=True))
        return z / z.sum(axis=1, keepdims=True)

    def predict(self, X) -> np.ndarray:
        raw = self._raw(X)
        return self.classes_[raw.argmax(axis=1)]

    def score(self, X, y) -> float:
        """Mean accuracy."""
        return float(np.mean(self.predict(X) == np.asarray(y)))


class MLPRegressor(_MLPBase):
    """A multilayer perceptron trained with squared error."""

    _loss = "mse_loss"

    def _n_outputs(self, y):
        return 1 if y.ndim == 1 else y.shape[1]

    def fit(self, X, y, callbacks=None):
        """callbacks: more cgrad.trainer Callbacks for the training loop (e.g. cgrad.dask.StreamMetrics)."""
        y = np.asarray(y, dtype=np.float32)
        self._y_1d = y.ndim == 1
        return self._fit(X, y.reshape(len(y), -1), callbacks)

    def predict(self, X) -> np.ndarray:
        out = self._raw(X)
        return out[:, 0] if self._y_1d else out

    def score(self, X, y) -> float:
        """The coefficient of determination R^2."""
        y = np.asarray(y, dtype=np.float64)
        pred = self.predict(X).astype(np.float64).reshape(y.shape)
        ss_res = np.sum((y - pred) ** 2)
        ss_tot = np.sum((y - y.mean(axis=0)) ** 2)
        return float(1 - ss_res / ss_tot) if ss_tot > 0 else 0.0
