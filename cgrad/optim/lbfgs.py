"""L-BFGS with PyTorch's closure API and stopping rules (torch.optim.LBFGS):

    opt = cgrad.optim.LBFGS(model.parameters(), line_search_fn="strong_wolfe")
    def closure():
        opt.zero_grad()
        loss = loss_fn(model(X), y)
        loss.backward()
        return loss
    for _ in range(10):
        opt.step(closure)      # up to max_iter iterations per call; returns the first loss

The parameters are handled as one flat numpy vector in their dtype (float32 parameters
give float32 directions, as in PyTorch); losses, step lengths and the line search's
scalars are Python floats. The direction is the L-BFGS two-loop recursion (Nocedal &
Wright, Algorithm 7.4) with the initial Hessian scaled by s'y / y'y; the optional line
search is the strong-Wolfe bracketing and zoom of Nocedal & Wright, Algorithms 3.5 and 3.6,
with safeguarded cubic interpolation. With no line search every iteration steps by lr
(the first by lr * min(1, 1/|g|_1)), as PyTorch does.

Only one parameter group is supported (as in PyTorch). step() cannot be recorded by
cgrad.compile: it calls the closure a data-dependent number of times.
"""
from __future__ import annotations

import math
from typing import Any, Callable

import numpy as np

from .. import _state
from ..autograd import enable_grad, no_grad
from ..tensor import from_numpy
from ._base import _REAL, Optimizer, _as_array

_VECTORS = ("d", "prev_flat_grad")


def _cubic_min(x1: float, f1: float, g1: float, x2: float, f2: float, g2: float,
               lo: float | None = None, hi: float | None = None) -> float:
    """The minimizer of the cubic through (x1, f1) and (x2, f2) with slopes g1 and g2
    (Nocedal & Wright, eq. 3.59), clipped to [lo, hi] (by default the interval between the
    two points); the interval's midpoint when the cubic has no minimizer."""
    if lo is None or hi is None:
        lo, hi = min(x1, x2), max(x1, x2)
    d1 = g1 + g2 - 3.0 * (f1 - f2) / (x1 - x2)
    disc = d1 * d1 - g1 * g2
    if not disc >= 0:
        return (lo + hi) / 2.0
    d2 = math.sqrt(disc)
    # written from whichever point lies to the right, so that d2 takes the sign of (x_r - x_l)
    if x1 <= x2:
        x = x2 - (x2 - x1) * ((g2 + d2 - d1) / (g2 - g1 + 2.0 * d2))
    else:
        x = x1 - (x1 - x2) * ((g1 + d2 - d1) / (g1 - g2 + 2.0 * d2))
    return min(max(x, lo), hi)


def _strong_wolfe(phi: Callable[[float], tuple], t: float, f0: float, g0: np.ndarray, gtd0: float,
                  d_norm: float, c1: float = 1e-4, c2: float = 0.9, tol: float = 1e-9,
                  max_ls: int = 25) -> tuple:
    """A step t along d with f(t) <= f0 + c1 t gtd0 and |f'(t)| <= c2 |gtd0|, where
    phi(t) -> (f, flat gradient, f') evaluates at x + t d. Returns (f, gradient, t, evaluations).

    Bracketing (Algorithm 3.5): try t; stop when it satisfies both conditions; bracket it
    with the previous trial when f rose (or the slope turned non-negative); otherwise
    extrapolate by cubic interpolation into [t + 0.01 (t - t_prev), 10 t]. Zoom (Algorithm
    3.6): cubic interpolation inside the bracket, kept at least a tenth of the bracket
    from its ends when the previous trial already was that close, until a trial satisfies
    both conditions, the bracket is shorter than tol (in units of |d|_max), or max_ls
    evaluations were spent (besides the first). The best end of the bracket is returned."""
    f, g, gtd = phi(t)
    evals = 1
    t_prev, f_prev, g_prev, gtd_prev = 0.0, f0, g0, gtd0
    done = False
    # each end of the bracket: [t, f, gradient, slope]
    ends: list[list] = []
    i = 0
    while i < max_ls:
        if f > f0 + c1 * t * gtd0 or (i > 1 and f >= f_prev):
            ends = [[t_prev, f_prev, g_prev, gtd_prev], [t, f, g, gtd]]
            break
        if abs(gtd) <= -c2 * gtd0:
            ends = [[t, f, g, gtd]]
            done = True
            break
        if gtd >= 0:
            ends = [[t_prev, f_prev, g_prev, gtd_prev], [t, f, g, gtd]]
            break
        t_next = _cubic_min(t_prev, f_prev, gtd_prev, t, f, gtd, t + 0.01 * (t - t_prev), 10.0 * t)
        t_prev, f_prev, g_prev, gtd_prev = t, f, g, gtd
        t = t_next
        f, g, gtd = phi(t)
        evals += 1
        i += 1
    if i >= max_ls:  # never bracketed: fall back on the better of x and the last trial
        ends = [[0.0, f0, g0, gtd0], [t, f, g, gtd]]

    low, high = (0, 1) if ends[0][1] <= ends[-1][1] else (1, 0)
    stuck = False  # the previous zoom trial was forced away from an end already
    while not done and i < max_ls:
        a, b = ends[0][0], ends[1][0]
        if abs(b - a) * d_norm < tol:
            break
        (t0, f0_, _, s0), (t1, f1_, _, s1) = ends
        t = _cubic_min(t0, f0_, s0, t1, f1_, s1)
        left, right = min(a, b), max(a, b)
        margin = 0.1 * (right - left)
        if min(right - t, t - left) < margin:
            if stuck or t >= right or t <= left:
                t = right - margin if abs(t - right) < abs(t - left) else left + margin
                stuck = False
            else:
                stuck = True
        else:
            stuck = False
        f, g, gtd = phi(t)
        evals += 1
        i += 1
        if f > f0 + c1 * t * gtd0 or f >= ends[low][1]:
            ends[high] = [t, f, g, gtd]
            low, high = (0, 1) if ends[0][1] <= ends[1][1] else (1, 0)
        else:
            if abs(gtd) <= -c2 * gtd0:
                done = True
            elif gtd * (ends[high][0] - ends[low][0]) >= 0:
                ends[high] = ends[low]
            ends[low] = [t, f, g, gtd]
    best = ends[low]
    return best[1], best[2], best[0], evals


class LBFGS(Optimizer):
    """torch.optim.LBFGS: step(closure) runs up to max_iter L-BFGS iterations (and at most
    max_eval closure calls), stopping early when the largest gradient entry is at most
    tolerance_grad, or a step changes the parameters (largest entry) or the loss by less
    than tolerance_change. history_size correction pairs are kept across calls.
    line_search_fn=None steps by lr; 'strong_wolfe' searches for a step satisfying the
    strong Wolfe conditions (c1=1e-4, c2=0.9), starting from lr."""

    def __init__(self, params, lr: float = 1, max_iter: int = 20, max_eval: int | None = None,
                 tolerance_grad: float = 1e-7, tolerance_change: float = 1e-9,
                 history_size: int = 100, line_search_fn: str | None = None):
        if max_eval is None and isinstance(max_iter, int) and not isinstance(max_iter, bool):
            max_eval = max_iter * 5 // 4
        super().__init__(params, dict(lr=lr, max_iter=max_iter, max_eval=max_eval, tolerance_grad=tolerance_grad,
                                      tolerance_change=tolerance_change, history_size=history_size,
                                      line_search_fn=line_search_fn))
        self._lbfgs: dict[str, Any] = {}

    def add_param_group(self, param_group: dict) -> None:
        """The one group; a second is refused, as torch.optim.LBFGS does."""
        if self.param_groups:
            raise ValueError(f"{self._name} supports only one parameter group (as torch.optim.LBFGS), "
                             f"so per-parameter options cannot be given; pass all the parameters as "
                             f"one list")
        super().add_param_group(param_group)

    def _check_group(self, g: dict, where: str) -> None:
        name = self._name
        for key in ("lr", "tolerance_grad", "tolerance_change"):
            v = g[key]
            if isinstance(v, bool) or not isinstance(v, _REAL):
                raise TypeError(f"{name}: {where}{key} must be a number, got {v!r}")
            if not v >= 0:
                raise ValueError(f"{name}: {where}{key} must be >= 0, got {v}")
        for key in ("max_iter", "max_eval", "history_size"):
            v = g[key]
            if isinstance(v, bool) or not isinstance(v, (int, np.integer)):
                raise TypeError(f"{name}: {where}{key} must be an int, got {v!r}")
            if v < 1:
                raise ValueError(f"{name}: {where}{key} must be >= 1, got {v}")
        if g["line_search_fn"] not in (None, "strong_wolfe"):
            raise ValueError(f"{name}: {where}line_search_fn must be None or 'strong_wolfe', "
                             f"got {g['line_search_fn']!r}")

    @property
    def state(self) -> dict:
        """The L-BFGS state (history, last direction and step, counters), kept for the
        group's first parameter as PyTorch keeps it; empty before the first step."""
        return self._lbfgs

    # ---- the flat parameter vector ----
    def _params(self) -> list:
        if len(self.param_groups) != 1:
            raise ValueError(f"{self._name} supports only one parameter group, param_groups has "
                             f"{len(self.param_groups)}")
        return self.param_groups[0]["params"]

    @staticmethod
    def _dtype(params) -> np.dtype:
        return np.result_type(*[p.dtype for p in params])

    def _flat_grad(self, params, dtype) -> np.ndarray:
        parts = []
        for p in params:
            g = p.grad
            parts.append(np.zeros(p.numel(), dtype) if g is None else g.numpy().reshape(-1))
        return np.concatenate(parts).astype(dtype, copy=False)

    @staticmethod
    def _flat_params(params, dtype) -> np.ndarray:
        return np.concatenate([p.numpy().reshape(-1) for p in params]).astype(dtype, copy=False)

    @staticmethod
    def _write(params, values) -> None:
        """Set each parameter to its slice of the flat `values`; `values(k, p)` gives it."""
        with no_grad():
            for k, p in enumerate(params):
                p.copy_(from_numpy(np.ascontiguousarray(values(k, p))))

    def _offsets(self, params) -> list:
        out, at = [], 0
        for p in params:
            out.append((at, at + p.numel()))
            at += p.numel()
        return out

    def _move(self, params, offsets, t: float, d: np.ndarray) -> None:
        """p += t * d (each parameter's slice, computed in the parameter's dtype)."""
        def new(k, p):
            cur = p.numpy()
            step = d[offsets[k][0]:offsets[k][1]].reshape(cur.shape).astype(cur.dtype, copy=False)
            return cur + cur.dtype.type(t) * step
        self._write(params, new)

    def _set(self, params, offsets, x: np.ndarray) -> None:
        self._write(params, lambda k, p: x[offsets[k][0]:offsets[k][1]].reshape(p.shape).astype(p.dtype))

    def _call(self, closure) -> tuple:
        """Run the closure with grad mode on: (what it returned, the loss as a float)."""
        with enable_grad():
            loss = closure()
        try:
            return loss, float(loss)
        except (TypeError, ValueError):
            raise TypeError(f"{self._name}.step: the closure must return the loss (a tensor of one "
                            f"element or a number), got {type(loss).__name__}") from None

    def _evaluate(self, closure) -> float:
        return self._call(closure)[1]

    # ---- the step ----
    def step(self, closure: Callable[[], Any] | None = None) -> Any:
        """Run up to max_iter iterations; `closure` must zero the gradients, compute the
        loss, call backward and return the loss. Returns the closure's first loss."""
        _state.refuse_while_recording(
            f"{self._name}.step (it calls the closure a number of times decided at run time, and "
            f"reads the gradients in Python)")
        if closure is None:
            raise TypeError(f"{self._name}.step needs a closure: a function that zeroes the gradients, "
                            f"computes the loss, calls loss.backward() and returns the loss")
        if not callable(closure):
            raise TypeError(f"{self._name}.step: closure must be callable (a function that zeroes the "
                            f"gradients, computes the loss, calls backward and returns it), got a "
                            f"{type(closure).__name__}")
        params = self._params()
        group = self.param_groups[0]
        lr, max_iter, max_eval = float(group["lr"]), int(group["max_iter"]), int(group["max_eval"])
        tol_grad, tol_change = float(group["tolerance_grad"]), float(group["tolerance_change"])
        history, line_search = int(group["history_size"]), group["line_search_fn"]
        dtype = self._dtype(params)
        offsets = self._offsets(params)
        st = self._lbfgs
        st.setdefault("func_evals", 0)
        st.setdefault("n_iter", 0)

        first, loss = self._call(closure)
        evals = 1
        st["func_evals"] += 1
        g = self._flat_grad(params, dtype)
        if np.abs(g).max() <= tol_grad:
            return first

        # the state from the previous step (None before the first iteration)
        d: Any = st.get("d")
        t: Any = st.get("t")
        dirs: Any = st.get("old_dirs")
        stps: Any = st.get("old_stps")
        ro: Any = st.get("ro")
        h_diag: Any = st.get("H_diag")
        g_prev: Any = st.get("prev_flat_grad")
        loss_prev: Any = st.get("prev_loss")

        n = 0
        while n < max_iter:
            n += 1
            st["n_iter"] += 1
            if st["n_iter"] == 1:
                d = -g
                dirs, stps, ro = [], [], []
                h_diag = dtype.type(1)
            else:
                # the newest pair: y = change of gradient, s = the last step
                y = g - g_prev
                s = d * dtype.type(t)
                ys = np.dot(y, s)
                if ys > 1e-10:  # keep only pairs with positive curvature
                    if len(dirs) == history:
                        dirs.pop(0)
                        stps.pop(0)
                        ro.pop(0)
                    dirs.append(y)
                    stps.append(s)
                    ro.append(dtype.type(1) / ys)
                    h_diag = ys / np.dot(y, y)
                # two-loop recursion: d = -H g with H0 = h_diag I
                q = -g
                alpha = [dtype.type(0)] * len(dirs)
                for i in range(len(dirs) - 1, -1, -1):
                    alpha[i] = np.dot(stps[i], q) * ro[i]
                    q -= alpha[i] * dirs[i]
                r = q * h_diag
                for i in range(len(dirs)):
                    beta = np.dot(dirs[i], r) * ro[i]
                    r += (alpha[i] - beta) * stps[i]
                d = r
            g_prev = g.copy()
            loss_prev = loss
            if st["n_iter"] == 1:
                t = min(1.0, float(dtype.type(1) / np.abs(g).sum())) * lr
            else:
                t = lr
            gtd = float(np.dot(g, d))
            if gtd > -tol_change:  # not a descent direction (or too flat to matter)
                break

            ls_evals = 0
            if line_search is not None:
                x0 = self._flat_params(params, dtype)

                def phi(step: float) -> tuple:
                    self._move(params, offsets, step, d)
                    f_t = self._evaluate(closure)
                    g_t = self._flat_grad(params, dtype)
                    self._set(params, offsets, x0)
                    return f_t, g_t, float(np.dot(g_t, d))

                # the search may spend what is left of this step's max_eval budget
                loss, g, t, ls_evals = _strong_wolfe(phi, t, loss, g, gtd, float(np.abs(d).max()),
                                                     max_ls=max_eval - evals)
                self._move(params, offsets, t, d)
                converged = np.abs(g).max() <= tol_grad
            else:
                self._move(params, offsets, t, d)
                converged = False
                if n != max_iter:
                    loss = self._evaluate(closure)
                    g = self._flat_grad(params, dtype)
                    converged = np.abs(g).max() <= tol_grad
                    ls_evals = 1
            evals += ls_evals
            st["func_evals"] += ls_evals

            if n == max_iter or evals >= max_eval or converged:
                break
            if np.abs(d * dtype.type(t)).max() <= tol_change:
                break
            if abs(loss - loss_prev) < tol_change:
                break

        st.update(d=d, t=t, old_dirs=dirs, old_stps=stps, ro=ro, H_diag=h_diag,
                  prev_flat_grad=g_prev, prev_loss=loss_prev)
        return first

    # ---- state ----
    def state_dict(self) -> dict:
        """PyTorch's layout: {'state': {0: {'func_evals', 'n_iter', 'd', 't', 'old_dirs',
        'old_stps', 'ro', 'H_diag', 'prev_flat_grad', 'prev_loss'}} (empty before the first
        step), 'param_groups': [{hyperparameters..., 'params': [0, 1, ...]}]}. Arrays are copies."""
        packed = {k: v for k, v in self.param_groups[0].items() if k != "params"}
        packed["params"] = list(range(len(self.param_groups[0]["params"])))
        entry: dict = {}
        for k, v in self._lbfgs.items():
            if isinstance(v, np.ndarray):
                entry[k] = v.copy()
            elif k == "ro":
                entry[k] = [float(x) for x in v]
            elif isinstance(v, list):
                entry[k] = [np.copy(x) for x in v]
            elif isinstance(v, np.generic):
                entry[k] = v.item()
            else:
                entry[k] = v
        return {"state": {0: entry} if entry else {}, "param_groups": [packed]}

    def load_state_dict(self, state_dict: dict) -> None:
        """Load what state_dict() returned (or torch.optim.LBFGS's state_dict, tensors and
        all). Everything is checked before anything changes."""
        name = f"{self._name}.load_state_dict"
        if not isinstance(state_dict, dict) or "state" not in state_dict or "param_groups" not in state_dict:
            raise ValueError(f"{name}: expected a dict with 'state' and 'param_groups'")
        groups, saved_state = state_dict["param_groups"], state_dict["state"]
        if len(groups) != 1:
            raise ValueError(f"{name}: the state dict has {len(groups)} parameter groups; LBFGS has one")
        params = self._params()
        ids = list(groups[0]["params"])
        if len(ids) != len(params):
            raise ValueError(f"{name}: the saved group has {len(ids)} parameters, the optimizer's has "
                             f"{len(params)}")
        hyper = {k: v for k, v in groups[0].items() if k != "params"}
        self._check_group(dict(self.param_groups[0], **hyper), "saved param group 0: ")
        saved_state = {int(k): v for k, v in saved_state.items()}
        saved = saved_state.get(int(ids[0]), {}) if ids else {}
        dtype = self._dtype(params)
        size = sum(p.numel() for p in params)

        def vector(key, v):
            a = _as_array(v).astype(dtype).reshape(-1)
            if a.size != size:
                raise ValueError(f"{name}: state '{key}' has {a.size} values for {size} parameter values")
            return a

        def scalar(v):
            return _as_array(v).reshape(()).item() if v is not None else None

        new: dict = {}
        for key, v in saved.items():
            if key in ("func_evals", "n_iter"):
                new[key] = int(scalar(v))
            elif key in ("t", "prev_loss"):
                new[key] = None if v is None else float(scalar(v))
            elif key == "H_diag":
                new[key] = None if v is None else dtype.type(scalar(v))
            elif key in _VECTORS:
                new[key] = None if v is None else vector(key, v)
            elif key in ("old_dirs", "old_stps"):
                new[key] = [vector(key, x) for x in v]
            elif key == "ro":
                new[key] = [dtype.type(scalar(x)) for x in v]
            # anything else (PyTorch's scratch 'al') is not needed
        if len(new.get("old_dirs", [])) != len(new.get("old_stps", [])) or \
                len(new.get("old_dirs", [])) != len(new.get("ro", [])):
            raise ValueError(f"{name}: old_dirs, old_stps and ro must have the same length")
        if new.get("n_iter", 0) > 0 and any(new.get(k) is None for k in ("d", "t", "prev_flat_grad")):
            raise ValueError(f"{name}: the state has n_iter > 0 but lacks d, t or prev_flat_grad")
        self.param_groups[0].update(hyper)
        self._lbfgs = new
