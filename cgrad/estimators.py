"""scikit-learn-style estimators: MLPClassifier and MLPRegressor on plain numpy arrays.

Parameters follow sklearn.neural_network (hidden_layer_sizes, activation, solver, alpha,
batch_size, learning_rate_init, max_iter, early_stopping, validation_fraction,
n_iter_no_change, random_state). scikit-learn itself is not needed. When it is importable
the estimators are scikit-learn estimators: they inherit ClassifierMixin / RegressorMixin
and BaseEstimator (chosen once, at import), declare their tags (__sklearn_tags__), and
validate input with scikit-learn's own validate_data, so GridSearchCV, cross_val_score,
Pipeline, clone and check_estimator treat them as their own. Without it, small stand-ins
give the same parameter protocol, scores and input checks.

The estimators are imported lazily by `cgrad` (importing scikit-learn takes over a second).
"""
from __future__ import annotations

import inspect
from typing import TYPE_CHECKING, Any

import numpy as np

from . import nn, optim
from .tensor import manual_seed
from .trainer import EarlyStopping, Trainer


class _Params:
    """The parameter protocol (get_params/set_params/repr) without scikit-learn."""

    @classmethod
    def _get_param_names(cls):
        return sorted(p for p in inspect.signature(cls.__init__).parameters if p != "self")

    def get_params(self, deep: bool = True) -> dict:
        return {name: getattr(self, name) for name in self._get_param_names()}

    def set_params(self, **params):
        valid = self._get_param_names()
        for k, v in params.items():
            if k not in valid:
                raise ValueError(f"Invalid parameter {k!r} for estimator {type(self).__name__}. "
                                 f"Valid parameters are: {valid!r}.")
            setattr(self, k, v)
        return self

    def __repr__(self):
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_params().items())
        return f"{type(self).__name__}({args})"


class _Classifier:
    """ClassifierMixin's score without scikit-learn."""
    _estimator_type = "classifier"

    def score(self, X, y, sample_weight=None) -> float:
        """Mean accuracy of predict(X) against y (weighted by sample_weight)."""
        y = np.asarray(y)
        if y.ndim == 2 and y.shape[1] == 1:  # a column of labels, as fit takes it: not an n x n broadcast
            y = y[:, 0]
        return float(np.average(self.predict(X) == y, weights=sample_weight))  # type: ignore[attr-defined]


class _Regressor:
    """RegressorMixin's score without scikit-learn."""
    _estimator_type = "regressor"

    def score(self, X, y, sample_weight=None) -> float:
        """The coefficient of determination R^2, averaged over the outputs (r2_score's
        'uniform_average'); an output of constant y scores 1 if predicted exactly, else 0."""
        y = np.asarray(y, dtype=np.float64)
        y2 = y.reshape(len(y), -1)
        pred = np.asarray(self.predict(X), dtype=np.float64).reshape(y2.shape)  # type: ignore[attr-defined]
        w = np.ones(len(y)) if sample_weight is None else np.asarray(sample_weight, dtype=np.float64)
        ss_res = (w[:, None] * (y2 - pred) ** 2).sum(axis=0)
        ss_tot = (w[:, None] * (y2 - np.average(y2, axis=0, weights=w)) ** 2).sum(axis=0)
        r2 = np.where(ss_tot > 0, 1 - ss_res / np.where(ss_tot > 0, ss_tot, 1), np.where(ss_res == 0, 1.0, 0.0))
        return float(r2.mean())


# The bases, chosen once: scikit-learn's when importable, else the stand-ins above.
if TYPE_CHECKING:  # mypy checks the stand-ins
    _BaseEstimator = _Params
    _ClassifierMixin = _Classifier
    _RegressorMixin = _Regressor
    _NotFittedBases: tuple = (ValueError, AttributeError)
    validate_data: Any = None
    check_classification_targets: Any = None
else:
    try:
        from sklearn.base import BaseEstimator as _BaseEstimator
        from sklearn.base import ClassifierMixin as _ClassifierMixin
        from sklearn.base import RegressorMixin as _RegressorMixin
        from sklearn.exceptions import NotFittedError as _SklearnNotFittedError
        from sklearn.utils.multiclass import check_classification_targets
        from sklearn.utils.validation import validate_data
        _NotFittedBases = (_SklearnNotFittedError,)
    except ImportError:
        _BaseEstimator, _ClassifierMixin, _RegressorMixin = _Params, _Classifier, _Regressor
        _NotFittedBases = (ValueError, AttributeError)  # what scikit-learn's NotFittedError is
        validate_data = check_classification_targets = None


class NotFittedError(*_NotFittedBases, RuntimeError):  # type: ignore[misc]
    """predict before fit: scikit-learn's NotFittedError when it is installed (a ValueError
    and an AttributeError), and a RuntimeError, as cgrad raised before."""


_FLOATS = (np.float64, np.float32)  # float32 input stays float32 (no copy); the rest becomes float64


def _check_array(est, X, what: str, reset: bool):
    """validate_data's checks without scikit-learn: numeric, 2-D, non-empty, finite, dense,
    and the number of features seen by fit."""
    name = type(est).__name__
    if hasattr(X, "toarray") or hasattr(X, "tocsr"):
        raise TypeError(f"{name}.{what}: sparse input is not supported; convert it with X.toarray()")
    X = np.asarray(X)
    if np.iscomplexobj(X):
        raise ValueError(f"{name}.{what}: complex data not supported")
    try:
        X = X.astype(np.float32 if X.dtype == np.float32 else np.float64, copy=False)
    except (TypeError, ValueError) as e:
        raise ValueError(f"{name}.{what}: X must be numeric ({e})") from None
    if X.ndim != 2:
        raise ValueError(f"{name}.{what}: expected a 2-D array X, got shape {X.shape}; "
                         "reshape a single feature with X.reshape(-1, 1)")
    if X.shape[0] == 0 or X.shape[1] == 0:
        raise ValueError(f"{name}.{what}: found array with shape {X.shape}; at least 1 sample "
                         "and 1 feature are required")
    if not np.isfinite(X).all():
        raise ValueError(f"{name}.{what}: X contains NaN or infinity")
    if reset:
        est.n_features_in_ = X.shape[1]
    elif X.shape[1] != est.n_features_in_:
        raise ValueError(f"X has {X.shape[1]} features, but {name} is expecting "
                         f"{est.n_features_in_} features as input")
    return X


def _seed(random_state):
    """An int seed from random_state as scikit-learn accepts it (None, an int, a numpy
    RandomState or Generator, from which one seed is drawn)."""
    if random_state is None:
        return None
    if isinstance(random_state, (int, np.integer)) and not isinstance(random_state, bool):
        return int(random_state)
    if isinstance(random_state, np.random.RandomState):
        return int(random_state.randint(2 ** 31 - 1))
    if isinstance(random_state, np.random.Generator):
        return int(random_state.integers(2 ** 31 - 1))
    raise ValueError(f"random_state must be None, an int, a numpy RandomState or Generator, "
                     f"not {random_state!r}")


class _MLPBase(_BaseEstimator):
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

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()  # type: ignore[misc]  # scikit-learn installed only
        tags.input_tags.two_d_array = True
        tags.input_tags.sparse = False      # dense float arrays only
        tags.input_tags.allow_nan = False
        tags.input_tags.categorical = False
        tags.input_tags.string = False
        return tags

    # ---- input ----
    def _validate(self, X, y=None, *, reset: bool, what: str, **y_checks):
        """X (and y) checked and converted: X float32 or float64, 2-D; n_features_in_ (and
        feature_names_in_ for a DataFrame) recorded by fit and checked afterwards."""
        if validate_data is not None:
            if not reset:
                return validate_data(self, X, reset=False, dtype=_FLOATS), None
            return validate_data(self, X, y, reset=True, dtype=_FLOATS, **y_checks)
        if reset and y is None:
            raise ValueError(f"{type(self).__name__}.{what} requires y to be passed, but the target y is None")
        X = _check_array(self, X, what, reset)
        if y is None:
            return X, None
        y = np.asarray(y)
        if y.ndim == 2 and y.shape[1] == 1 and not y_checks.get("multi_output"):
            y = y.ravel()
        if len(y) != len(X):
            raise ValueError(f"{type(self).__name__}.{what}: X has {len(X)} samples but y has {len(y)}")
        if y_checks.get("y_numeric"):
            try:
                y = y.astype(np.float64)
            except (TypeError, ValueError) as e:
                raise ValueError(f"{type(self).__name__}.{what}: y must be numeric ({e})") from None
            if not np.isfinite(y).all():
                raise ValueError(f"{type(self).__name__}.{what}: y contains NaN or infinity")
        return X, y

    def _check_fitted(self):
        if not hasattr(self, "model_"):
            raise NotFittedError(f"This {type(self).__name__} instance is not fitted yet. Call 'fit' with "
                                 "appropriate arguments before using this estimator.")

    # ---- fitting ----
    def _n_outputs(self, y) -> int:
        raise NotImplementedError

    def _fit(self, X, y_fit, callbacks=None):
        name = type(self).__name__
        if self.solver not in ("adam", "sgd"):
            raise ValueError(f"{name}: solver must be 'adam' or 'sgd', not {self.solver!r}")
        hidden = (self.hidden_layer_sizes,) if np.isscalar(self.hidden_layer_sizes) else tuple(self.hidden_layer_sizes)
        if not all(isinstance(h, (int, np.integer)) and h > 0 for h in hidden):
            raise ValueError(f"{name}: hidden_layer_sizes must be positive ints, got {self.hidden_layer_sizes!r}")
        if not (isinstance(self.max_iter, (int, np.integer)) and self.max_iter > 0):
            raise ValueError(f"{name}: max_iter must be a positive int, got {self.max_iter!r}")
        if self.batch_size == "auto":
            batch = min(200, len(X))
        elif isinstance(self.batch_size, (int, np.integer)) and self.batch_size > 0:
            batch = min(int(self.batch_size), len(X))  # clipped to the data, as scikit-learn does
        else:
            raise ValueError(f"{name}: batch_size must be 'auto' or a positive int, got {self.batch_size!r}")
        seed = _seed(self.random_state)
        if seed is not None:
            manual_seed(seed)
        self.model_ = nn.MLP([X.shape[1], *hidden, self._n_outputs(y_fit)], activation=self.activation)
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
            np.asarray(X, dtype=np.float32), y_fit, epochs=self.max_iter, batch_size=batch,
            validation_split=self.validation_fraction if self.early_stopping else 0.0,
            callbacks=callbacks, verbose=int(bool(self.verbose)))
        self.n_iter_ = len(self.history_.epoch)
        self.loss_curve_ = list(self.history_["loss"])
        self.loss_ = self.loss_curve_[-1]
        return self

    def _raw(self, X, what: str) -> np.ndarray:
        """The network's outputs for X, in X's float dtype (float32 stays float32)."""
        self._check_fitted()
        X, _ = self._validate(X, reset=False, what=what)
        return self.trainer_.predict(X).astype(X.dtype, copy=False)


class MLPClassifier(_ClassifierMixin, _MLPBase):
    """A multilayer perceptron trained with cross-entropy; classes may be any labels."""

    _loss = "cross_entropy"

    def _n_outputs(self, y):
        return len(self.classes_)

    def fit(self, X, y, callbacks=None):
        """callbacks: more cgrad.trainer Callbacks for the training loop (e.g. cgrad.dask.StreamMetrics)."""
        X, y = self._validate(X, y, reset=True, what="fit")
        if check_classification_targets is not None:
            check_classification_targets(y)
        elif y.ndim != 1:
            raise ValueError(f"MLPClassifier.fit: y must be 1-D class labels, got shape {y.shape}")
        self.classes_, y_idx = np.unique(y, return_inverse=True)
        return self._fit(X, y_idx.reshape(-1).astype(np.int64), callbacks)

    def predict_proba(self, X) -> np.ndarray:
        """Class probabilities, columns in the order of classes_."""
        z = self._raw(X, "predict_proba")
        z = np.exp(z - z.max(axis=1, keepdims=True))
        return z / z.sum(axis=1, keepdims=True)

    def predict_log_proba(self, X) -> np.ndarray:
        return np.log(self.predict_proba(X))

    def predict(self, X) -> np.ndarray:
        raw = self._raw(X, "predict")  # first: it checks that the estimator is fitted
        return self.classes_[raw.argmax(axis=1)]


class MLPRegressor(_RegressorMixin, _MLPBase):
    """A multilayer perceptron trained with squared error; y may have several outputs."""

    _loss = "mse_loss"

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.target_tags.multi_output = True
        tags.target_tags.single_output = True
        return tags

    def _n_outputs(self, y):
        return y.shape[1]

    def fit(self, X, y, callbacks=None):
        """callbacks: more cgrad.trainer Callbacks for the training loop (e.g. cgrad.dask.StreamMetrics)."""
        X, y = self._validate(X, y, reset=True, what="fit", multi_output=True, y_numeric=True)
        y = np.asarray(y, dtype=np.float32)
        y = y.reshape(len(y), -1)
        self.n_outputs_ = y.shape[1]
        return self._fit(X, y, callbacks)

    def predict(self, X) -> np.ndarray:
        """Predictions, shape (n,) for a single output (as scikit-learn), else (n, n_outputs_)."""
        out = self._raw(X, "predict")
        return out[:, 0] if self.n_outputs_ == 1 else out
