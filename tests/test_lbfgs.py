"""cgrad.optim.LBFGS: trajectories against torch.optim.LBFGS (where torch is installed),
convergence on Rosenbrock and a convex quadratic, a small MLP, the stopping rules,
state_dict round trips and the errors for bad input."""
import numpy as np
import pytest

import cgrad
from cgrad import nn
from cgrad.nn import functional as F

X0 = (-1.5, 2.0)


def rosen(x):
    return (1 - x[0]) ** 2 + 100 * (x[1] - x[0] ** 2) ** 2


def _run(lib, steps, dtype="float64", x0=X0, opt=None, x=None, **kw):
    """`steps` LBFGS steps on Rosenbrock with cgrad or torch (lib); returns (loss after each
    step, closure calls in each step, what each step returned, x, optimizer)."""
    if x is None:
        if lib is cgrad:
            x = cgrad.tensor(np.array(x0, dtype=dtype), requires_grad=True)
        else:
            x = lib.tensor(x0, dtype=getattr(lib, dtype), requires_grad=True)
    if opt is None:
        opt = lib.optim.LBFGS([x], **kw)
    calls = [0]

    def closure():
        opt.zero_grad()
        loss = rosen(x)
        loss.backward()
        calls[0] += 1
        return loss

    losses, evals, returned = [], [], []
    for _ in range(steps):
        before = calls[0]
        returned.append(float(opt.step(closure).detach()))
        evals.append(calls[0] - before)
        losses.append(float(rosen(x.detach())))
    return np.array(losses), evals, returned, x, opt


# ---------------------------------------------------------------- against torch.optim.LBFGS

# Unit steps without a line search (the defaults with line_search_fn=None) make the
# Rosenbrock trajectory amplify last-bit differences (BLAS dot products, fused
# multiply-adds) to 4e-6 by the third step, so those runs use shorter steps; every other
# configuration here agrees to 1e-9 or better.
TRAJECTORIES = [
    dict(line_search_fn=None, lr=0.5, max_iter=5),
    dict(line_search_fn=None, lr=0.25, max_iter=4, history_size=2),   # history is evicted
    dict(line_search_fn="strong_wolfe"),                                # the defaults
    dict(line_search_fn="strong_wolfe", max_iter=3, history_size=2),
    dict(line_search_fn="strong_wolfe", max_iter=1),  # max_eval=1: the search has no budget
]


@pytest.mark.parametrize("kw", TRAJECTORIES, ids=lambda kw: ",".join(f"{k}={v}" for k, v in kw.items()))
def test_rosenbrock_trajectory_matches_torch(kw):
    torch = pytest.importorskip("torch")
    ours, our_evals, our_ret, _, _ = _run(cgrad, 12, **kw)
    theirs, their_evals, their_ret, _, _ = _run(torch, 12, **kw)
    np.testing.assert_allclose(ours, theirs, rtol=1e-6, atol=0)
    assert our_evals == their_evals          # the same closure calls in every step
    np.testing.assert_allclose(our_ret, their_ret, rtol=1e-6, atol=0)  # step returns the first loss
    if kw.get("max_iter") != 1:   # with max_iter=1 both stay put: each search returns t=0
        assert ours[-1] < 0.1 * ours[0]


def test_float32_stays_float32_and_follows_torch():
    torch = pytest.importorskip("torch")
    kw = dict(line_search_fn="strong_wolfe", max_iter=3)
    ours, our_evals, _, x, opt = _run(cgrad, 6, dtype="float32", **kw)
    theirs, their_evals, _, _, _ = _run(torch, 6, dtype="float32", **kw)
    assert x.dtype == np.float32
    assert opt.state["d"].dtype == np.float32 and opt.state["prev_flat_grad"].dtype == np.float32
    np.testing.assert_allclose(ours, theirs, rtol=1e-4)   # float32 rounding, amplified
    assert our_evals == their_evals


def test_mlp_trajectory_matches_torch():
    """Several parameters of different shapes: the flat vector's order and slicing."""
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(3)
    X, Y = rng.standard_normal((20, 2)), rng.standard_normal((20, 1))
    ours = nn.Sequential(nn.Linear(2, 6, dtype="float64"), nn.Tanh(), nn.Linear(6, 1, dtype="float64"))
    theirs = torch.nn.Sequential(torch.nn.Linear(2, 6), torch.nn.Tanh(), torch.nn.Linear(6, 1)).double()
    with torch.no_grad():
        for p, q in zip(ours.parameters(), theirs.parameters()):
            q.copy_(torch.from_numpy(p.numpy().copy()))
    o = cgrad.optim.LBFGS(ours.parameters(), line_search_fn="strong_wolfe", max_iter=5)
    t = torch.optim.LBFGS(theirs.parameters(), line_search_fn="strong_wolfe", max_iter=5)
    xc, yc, xt, yt = cgrad.tensor(X), cgrad.tensor(Y), torch.from_numpy(X), torch.from_numpy(Y)

    def c_closure():
        o.zero_grad()
        loss = F.mse_loss(ours(xc), yc)
        loss.backward()
        return loss

    def t_closure():
        t.zero_grad()
        loss = torch.nn.functional.mse_loss(theirs(xt), yt)
        loss.backward()
        return loss

    for _ in range(6):
        np.testing.assert_allclose(float(o.step(c_closure)), float(t.step(t_closure).detach()), rtol=1e-6)
    for p, q in zip(ours.parameters(), theirs.parameters()):
        np.testing.assert_allclose(p.numpy(), q.detach().numpy(), rtol=1e-5, atol=1e-8)


def test_torch_state_dict_loads_and_continues_torch_trajectory():
    torch = pytest.importorskip("torch")
    kw = dict(line_search_fn="strong_wolfe", max_iter=3, history_size=4)
    _, _, _, xt, topt = _run(torch, 3, **kw)
    x = cgrad.tensor(xt.detach().numpy().copy(), requires_grad=True)
    opt = cgrad.optim.LBFGS([x], **kw)
    opt.load_state_dict(topt.state_dict())
    ours, our_evals, _, _, _ = _run(cgrad, 5, x=x, opt=opt)
    theirs, their_evals, _, _, _ = _run(torch, 5, x=xt, opt=topt)
    np.testing.assert_allclose(ours, theirs, rtol=1e-6, atol=0)
    assert our_evals == their_evals


# ---------------------------------------------------------------- fixed expectations (no torch)

@pytest.mark.parametrize("line_search_fn", [None, "strong_wolfe"])
def test_rosenbrock_reaches_the_minimum(line_search_fn):
    # measured: 1e-6 is reached after 5 steps (None) and 3 steps (strong_wolfe); with the
    # default tolerances both stop improving at about 3e-6 (the loss changes by < 1e-9)
    losses, _, _, x, _ = _run(cgrad, 10, line_search_fn=line_search_fn,
                              tolerance_grad=1e-12, tolerance_change=1e-15)
    np.testing.assert_allclose(x.numpy(), [1.0, 1.0], atol=1e-6, rtol=0)
    assert losses[-1] < 1e-12
    assert losses[0] < rosen(np.array(X0))


def _quadratic(n=6, seed=0, dtype="float64"):
    rng = np.random.default_rng(seed)
    M = rng.standard_normal((n, n))
    A = M @ M.T + n * np.eye(n)
    b = rng.standard_normal(n)
    return A, b, np.linalg.solve(A, b)


@pytest.mark.parametrize("line_search_fn", [None, "strong_wolfe"])
@pytest.mark.parametrize("dtype, tol", [("float64", 1e-8), ("float32", 1e-4)])
def test_convex_quadratic_converges_to_the_solution(line_search_fn, dtype, tol):
    A, b, solution = _quadratic()
    At, bt = cgrad.tensor(A.astype(dtype)), cgrad.tensor(b.astype(dtype))
    x = cgrad.zeros(len(b), dtype=dtype, requires_grad=True)
    # measured in float64: within 6e-13 (None) and 4e-10 (strong_wolfe) after the first step;
    # tolerance_change=0, since the loss stops changing visibly when x is 3e-8 off
    opt = cgrad.optim.LBFGS([x], line_search_fn=line_search_fn, tolerance_grad=1e-11,
                            tolerance_change=0.0)

    def closure():
        opt.zero_grad()
        loss = 0.5 * (x * (At @ x)).sum() - (bt * x).sum()
        loss.backward()
        return loss

    for _ in range(5):
        opt.step(closure)
    assert x.dtype == np.dtype(dtype)
    np.testing.assert_allclose(x.numpy(), solution, atol=tol, rtol=0)


def test_mlp_regression_beats_adam():
    rng = np.random.default_rng(0)
    X = np.linspace(-3, 3, 64, dtype=np.float32).reshape(-1, 1)
    Y = (np.sin(X) + 0.05 * rng.standard_normal(X.shape)).astype(np.float32)
    xs, ys = cgrad.tensor(X), cgrad.tensor(Y)

    def fit(make_opt, steps, closure_api):
        cgrad.manual_seed(1)
        model = nn.MLP([1, 16, 16, 1], activation="tanh")
        opt = make_opt(model.parameters())

        def closure():
            opt.zero_grad()
            loss = F.mse_loss(model(xs), ys)
            loss.backward()
            return loss

        for _ in range(steps):
            if closure_api:
                opt.step(closure)
            else:
                closure()
                opt.step()
        return float(F.mse_loss(model(xs), ys))

    adam = fit(lambda p: cgrad.optim.Adam(p, lr=1e-2), 50, False)
    lbfgs = fit(lambda p: cgrad.optim.LBFGS(p, line_search_fn="strong_wolfe"), 5, True)
    assert lbfgs < adam
    assert lbfgs < 0.01   # measured 0.0015 (Adam's 50 steps: 0.045)


# ---------------------------------------------------------------- stopping rules

def test_tolerance_grad_stops_at_once_at_a_minimum():
    _, evals, returned, x, opt = _run(cgrad, 2, x0=(1.0, 1.0))
    assert evals == [1, 1]              # the gradient is 0: one closure call, no iteration
    assert returned == [0.0, 0.0]
    np.testing.assert_array_equal(x.numpy(), [1.0, 1.0])
    assert opt.state["n_iter"] == 0 and opt.state["func_evals"] == 2
    # a large tolerance_grad stops where the gradient is small enough
    _, evals, _, x, _ = _run(cgrad, 1, tolerance_grad=1e3)
    assert evals == [1]
    np.testing.assert_array_equal(x.numpy(), X0)


@pytest.mark.parametrize("line_search_fn", [None, "strong_wolfe"])
def test_tolerance_change_stops_early(line_search_fn):
    _, full, _, _, _ = _run(cgrad, 1, line_search_fn=line_search_fn, max_iter=200, max_eval=1000)
    _, early, _, _, _ = _run(cgrad, 1, line_search_fn=line_search_fn, max_iter=200, max_eval=1000,
                             tolerance_change=1e-3)
    assert 1 < early[0] < full[0]
    # a threshold above -g'd refuses the first direction: one call, nothing moves
    _, evals, _, x, _ = _run(cgrad, 1, line_search_fn=line_search_fn, tolerance_change=1e6)
    assert evals == [1]
    np.testing.assert_array_equal(x.numpy(), X0)


def test_max_iter_and_max_eval_bound_the_closure_calls():
    # without a line search: one call per iteration, the last iteration's point not evaluated
    _, evals, _, _, opt = _run(cgrad, 3, max_iter=4)
    assert evals == [4, 4, 4] and opt.state["n_iter"] == 12
    _, evals, _, _, _ = _run(cgrad, 2, max_iter=20, max_eval=3)
    assert evals == [3, 3]
    # the line search spends what is left of max_eval (and may take one call more)
    _, evals, _, _, _ = _run(cgrad, 4, line_search_fn="strong_wolfe", max_eval=6)
    assert all(e <= 7 for e in evals)
    x = cgrad.tensor([1.0], requires_grad=True)
    assert cgrad.optim.LBFGS([x]).param_groups[0]["max_eval"] == 25          # max_iter * 5 // 4
    assert cgrad.optim.LBFGS([x], max_iter=7).param_groups[0]["max_eval"] == 8


# ---------------------------------------------------------------- state_dict

@pytest.mark.parametrize("line_search_fn", [None, "strong_wolfe"])
def test_state_dict_round_trip_continues_the_same_trajectory(line_search_fn):
    kw = dict(line_search_fn=line_search_fn, max_iter=3, history_size=3)
    _, _, _, x, opt = _run(cgrad, 3, **kw)
    saved, x_saved = opt.state_dict(), x.numpy().copy()
    assert set(saved["state"]) == {0} and saved["param_groups"][0]["params"] == [0]
    assert len(saved["state"][0]["old_dirs"]) == 3
    # the state dict holds copies
    d_before = opt.state["d"].copy()
    sd2 = opt.state_dict()
    sd2["state"][0]["d"][:] = 123.0
    np.testing.assert_array_equal(opt.state["d"], d_before)

    continued, evals, _, _, _ = _run(cgrad, 4, x=x, opt=opt)
    x2 = cgrad.tensor(x_saved, requires_grad=True)
    opt2 = cgrad.optim.LBFGS([x2], **kw)
    opt2.load_state_dict(saved)
    resumed, evals2, _, _, _ = _run(cgrad, 4, x=x2, opt=opt2)
    np.testing.assert_array_equal(resumed, continued)
    assert evals2 == evals
    # a fresh optimizer (no history) goes elsewhere: the state mattered
    x3 = cgrad.tensor(x_saved, requires_grad=True)
    fresh, _, _, _, _ = _run(cgrad, 4, x=x3, opt=cgrad.optim.LBFGS([x3], **kw))
    assert not np.array_equal(fresh, continued)


def test_state_dict_before_any_step_and_hyperparameters():
    x = cgrad.tensor([1.0, 2.0], requires_grad=True)
    opt = cgrad.optim.LBFGS([x], lr=0.5, history_size=7)
    sd = opt.state_dict()
    assert sd["state"] == {}
    assert sd["param_groups"][0] == dict(lr=0.5, max_iter=20, max_eval=25, tolerance_grad=1e-7,
                                         tolerance_change=1e-9, history_size=7, line_search_fn=None,
                                         params=[0])
    other = cgrad.optim.LBFGS([cgrad.tensor([1.0, 2.0], requires_grad=True)])
    other.load_state_dict(sd)
    assert other.param_groups[0]["lr"] == 0.5 and other.param_groups[0]["history_size"] == 7


def test_load_state_dict_refuses_mismatches_and_changes_nothing():
    _, _, _, x, opt = _run(cgrad, 2, max_iter=3)
    sd = opt.state_dict()
    y = cgrad.tensor([0.0, 0.0, 0.0], requires_grad=True)
    other = cgrad.optim.LBFGS([y])
    with pytest.raises(ValueError, match="3 parameter values"):
        other.load_state_dict(sd)
    assert other.state == {}
    with pytest.raises(ValueError, match="expected a dict"):
        other.load_state_dict({"state": {}})
    with pytest.raises(ValueError, match="parameters"):
        cgrad.optim.LBFGS([x, y]).load_state_dict(sd)


# ---------------------------------------------------------------- bad input

def test_bad_input_is_refused_clearly():
    a = cgrad.tensor([1.0], requires_grad=True)
    b = cgrad.tensor([2.0], requires_grad=True)
    with pytest.raises(ValueError, match="only one parameter group"):
        cgrad.optim.LBFGS([{"params": [a]}, {"params": [b], "lr": 0.1}])
    opt = cgrad.optim.LBFGS([a])
    with pytest.raises(ValueError, match="only one parameter group"):
        opt.add_param_group({"params": [b]})
    assert len(opt.param_groups) == 1
    with pytest.raises(TypeError, match="needs a closure"):
        opt.step()
    with pytest.raises(TypeError, match="needs a closure"):
        opt.step(None)
    with pytest.raises(TypeError, match="closure must be callable"):
        opt.step(a)
    with pytest.raises(TypeError, match="must return the loss"):
        opt.step(lambda: None)
    with pytest.raises(ValueError, match="line_search_fn"):
        cgrad.optim.LBFGS([a], line_search_fn="backtracking")
    with pytest.raises(ValueError, match="max_iter must be >= 1"):
        cgrad.optim.LBFGS([a], max_iter=0)
    with pytest.raises(TypeError, match="history_size must be an int"):
        cgrad.optim.LBFGS([a], history_size=2.5)
    with pytest.raises(ValueError, match="lr must be >= 0"):
        cgrad.optim.LBFGS([a], lr=-1.0)
    with pytest.raises(TypeError, match="float tensors"):
        cgrad.optim.LBFGS([cgrad.tensor([1, 2])])
    opt.param_groups.append({"params": [b]})   # edited behind its back
    with pytest.raises(ValueError, match="one parameter group"):
        opt.step(lambda: a.sum())


def test_step_is_refused_inside_a_compiled_step():
    x = cgrad.tensor([-1.5, 2.0], requires_grad=True)
    opt = cgrad.optim.LBFGS([x])

    def closure():
        opt.zero_grad()
        loss = rosen(x)
        loss.backward()
        return loss

    compiled = cgrad.compile(lambda v: opt.step(closure))
    with pytest.raises(RuntimeError, match="cgrad.compile: LBFGS.step"):
        compiled(np.zeros(1))
    assert not cgrad._C.capture_active()
    opt.step(closure)   # eager still works
    assert float(rosen(x.detach())) < rosen(np.array(X0))


def test_parameters_without_gradients_count_as_zero():
    a = cgrad.tensor(np.array(X0), requires_grad=True)
    unused = cgrad.tensor(np.array([5.0, 6.0]), requires_grad=True)
    opt = cgrad.optim.LBFGS([a, unused], line_search_fn="strong_wolfe")

    def closure():
        opt.zero_grad()
        loss = rosen(a)
        loss.backward()
        return loss

    for _ in range(5):
        opt.step(closure)
    np.testing.assert_array_equal(unused.numpy(), [5.0, 6.0])
    assert float(rosen(a.detach())) < 1e-8


def test_schedulers_zero_grad_and_repr_work_as_for_the_other_optimizers():
    x = cgrad.tensor(np.array(X0), requires_grad=True)
    opt = cgrad.optim.LBFGS([x], lr=1.0)
    sched = cgrad.optim.StepLR(opt, step_size=1, gamma=0.5)
    sched.step()
    assert opt.param_groups[0]["lr"] == opt.lr == 0.5
    rosen(x).backward()
    opt.zero_grad(set_to_none=False)
    np.testing.assert_array_equal(x.grad.numpy(), [0.0, 0.0])
    opt.zero_grad()
    assert x.grad is None
    assert "LBFGS (" in repr(opt) and "history_size: 100" in repr(opt)
