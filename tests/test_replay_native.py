"""cgrad.compile runs the optimizers' step and zero_grad in C (OptimPlan): replays stay
bitwise equal to eager steps through schedules, param-group edits, added groups, loaded
state dicts and subclasses, and close to PyTorch's (float64) run of the same edits."""
import copy

import numpy as np
import pytest

import cgrad
from cgrad.replay import replayed

RNG = np.random.default_rng(11)
W0, B0, V0 = RNG.standard_normal((3, 4)), RNG.standard_normal(3), RNG.standard_normal(4)
XS = RNG.standard_normal((12, 6, 4))
YS = RNG.standard_normal((12, 6, 3))


@pytest.fixture
def torch_or_none():
    """PyTorch when installed (the reference run), else None (eager against replay only)."""
    try:
        import torch
    except ImportError:
        return None
    return torch


def _loss(lib, w, b, v, x, y):
    return (((x * v) @ w.T + b - y) ** 2).mean()


def _cg_params():
    return [cgrad.tensor(a.copy(), requires_grad=True) for a in (W0, B0, V0)]


def _groups(ps, split):
    return [{"params": ps[:2]}, {"params": ps[2:]}] if split else ps


def _run(make, edit=None, split=False, steps=12, torch=None):
    """Train eagerly and under cgrad.compile (and in torch when given), calling
    edit(k, opt, sched, params) on each before step k; eager and replay must agree bitwise
    after every step, torch to rounding. Returns (eager opt, replayed opt, compiled)."""
    runs = []
    for lib in ("eager", "replay") + (("torch",) if torch else ()):
        if lib == "torch":
            ps = [torch.tensor(a.copy(), requires_grad=True) for a in (W0, B0, V0)]
            opt, sched = make(_groups(ps, split), torch.optim)
        else:
            ps = _cg_params()
            opt, sched = make(_groups(ps, split), cgrad.optim)
        runs.append((lib, ps, opt, sched))

    def step(opt, ps, x, y):
        opt.zero_grad()
        loss = _loss(cgrad, *ps, x, y)
        loss.backward()
        opt.step()
        return loss

    compiled = cgrad.compile(lambda x, y: step(runs[1][2], runs[1][1], x, y))
    for k in range(steps):
        x, y = XS[k], YS[k]
        for lib, ps, opt, sched in runs:
            if edit is not None:
                edit(k, opt, sched, ps)
        a = step(runs[0][2], runs[0][1], cgrad.tensor(x), cgrad.tensor(y)).item()
        b = compiled(x, y).item()
        assert a == b, f"step {k}"
        for p, q in zip(runs[0][1], runs[1][1]):
            np.testing.assert_array_equal(p.numpy(), q.numpy(), err_msg=f"step {k}")
        if torch:
            _, tps, topt, _ = runs[2]
            topt.zero_grad()
            _loss(torch, *tps, torch.from_numpy(x), torch.from_numpy(y)).backward()
            topt.step()
            for p, t in zip(runs[0][1], tps):
                np.testing.assert_allclose(p.numpy(), t.detach().numpy(), rtol=1e-9, atol=1e-12,
                                           err_msg=f"torch, step {k}")
    assert compiled.recordings == 1
    return runs[0][2], runs[1][2], compiled


def _sched_every_step(k, opt, sched, ps):
    if k:
        sched.step()


MAKERS = {
    "sgd nesterov, ExponentialLR every step": (
        lambda g, o: _with(o.SGD(g, lr=0.05, momentum=0.9, nesterov=True, weight_decay=1e-2),
                           lambda opt: o.lr_scheduler.ExponentialLR(opt, gamma=0.9))),
    "sgd dampening, StepLR every 3 steps": (
        lambda g, o: _with(o.SGD(g, lr=0.05, momentum=0.5, dampening=0.3),
                           lambda opt: o.lr_scheduler.StepLR(opt, step_size=3, gamma=0.5))),
    "adam, CosineAnnealingLR": (
        lambda g, o: _with(o.Adam(g, lr=0.05, weight_decay=1e-2),
                           lambda opt: o.lr_scheduler.CosineAnnealingLR(opt, T_max=7))),
    "adamw, StepLR every 2 steps": (
        lambda g, o: _with(o.AdamW(g, lr=0.05, betas=(0.8, 0.95)),
                           lambda opt: o.lr_scheduler.StepLR(opt, step_size=2, gamma=0.7))),
}


def _with(opt, make_sched):
    return opt, make_sched(opt)


@pytest.mark.parametrize("split", [False, True], ids=["one group", "two groups"])
@pytest.mark.parametrize("name", list(MAKERS))
def test_schedules_stepping_between_replays(name, split, torch_or_none):
    eager, rep, compiled = _run(MAKERS[name], _sched_every_step, split=split, torch=torch_or_none)
    assert eager.step_count == rep.step_count == 12
    (stats,) = compiled.stats().values()
    assert stats["native_calls"] == 2 and stats["python_calls"] == 0


def _edit_groups(k, opt, sched, ps):
    g = opt.param_groups[-1]
    if k == 3:
        g["lr"] = 0.02
    if k == 5:
        g["weight_decay"] = 0.1
    if k == 7 and "betas" in g:
        g["betas"] = (0.5, 0.9)
    if k == 7 and "momentum" in g:
        g["momentum"] = 0.2
    if k == 8 and "eps" in g:
        g["eps"] = 1e-3
    if k == 9:
        opt.param_groups[0].update(lr=0.01)


@pytest.mark.parametrize("name", ["SGD", "Adam", "AdamW"])
def test_param_groups_edited_between_replays(name, torch_or_none):
    kw = dict(lr=0.05, momentum=0.9) if name == "SGD" else dict(lr=0.05)
    make = lambda g, o: (getattr(o, name)(g, **kw), None)  # noqa: E731
    eager, rep, _ = _run(make, _edit_groups, split=True, torch=torch_or_none)
    assert rep.param_groups[1]["lr"] == 0.02 and rep.step_count == 12


def _add_group(k, opt, sched, ps):
    if k == 4:
        opt.add_param_group({"params": ps[2:], "lr": 0.03})


def _append_group(k, opt, sched, ps):
    if k == 4:  # not add_param_group: taken in at the next zero_grad or step, as eagerly
        opt.param_groups.append({"params": ps[2:], "lr": 0.03})


@pytest.mark.parametrize("edit", [_add_group, _append_group])
@pytest.mark.parametrize("name", ["SGD", "Adam"])
def test_a_group_added_between_replays(name, edit):
    make = lambda g, o: (getattr(o, name)(g, lr=0.05), None)  # noqa: E731
    eager, rep, _ = _run(lambda g, o: make(g[:2], o), edit)
    assert len(rep.param_groups) == 2
    # Adam counts the new group's steps from when it joined
    assert eager.state_dict()["state"][2]["step"] == rep.state_dict()["state"][2]["step"] == 8


def _save_and_load(k, opt, sched, ps):
    if k == 4:
        opt._saved = copy.deepcopy(opt.state_dict())
    if k == 6:
        opt.param_groups[0]["lr"] = 0.5   # undone by the load
    if k == 8:
        opt.load_state_dict(opt._saved)   # back to step 4's moments, step count and lr


@pytest.mark.parametrize("name", ["SGD", "Adam"])
def test_state_dict_loaded_between_replays(name, torch_or_none):
    kw = dict(lr=0.05, momentum=0.9) if name == "SGD" else dict(lr=0.05)
    make = lambda g, o: (getattr(o, name)(g, **kw), None)  # noqa: E731
    eager, rep, _ = _run(make, _save_and_load, torch=torch_or_none)
    assert rep.step_count == eager.step_count == 4 + 4
    assert rep.lr == 0.05


def test_a_value_changed_in_place_or_made_invalid_is_seen():
    def edit(k, opt, sched, ps):
        if k == 2:
            opt.param_groups[0]["lr"] = np.array(0.05)   # mutable: the plan re-reads it each step
        if k == 5:
            opt.param_groups[0]["lr"][...] = 0.01
    _run(lambda g, o: (o.SGD(g, lr=0.1, momentum=0.5), None), edit)

    ps = _cg_params()
    opt = cgrad.optim.SGD(ps, lr=0.1)
    compiled = cgrad.compile(lambda x, y: _step(opt, ps, x, y))
    compiled(XS[0], YS[0])
    opt.param_groups[0]["lr"] = "fast"
    before = [p.numpy().copy() for p in ps]
    with pytest.raises(TypeError):
        compiled(XS[1], YS[1])
    for p, b in zip(ps, before):  # the step refused, before changing a parameter
        np.testing.assert_array_equal(p.numpy(), b)
    opt.param_groups[0]["lr"] = 0.1
    compiled(XS[1], YS[1])
    assert opt.step_count == 2


def _step(opt, ps, x, y):
    opt.zero_grad()
    loss = _loss(cgrad, *ps, x, y)
    loss.backward()
    opt.step()
    return loss


def test_python_runs_only_when_something_changed(monkeypatch):
    ps = _cg_params()
    opt = cgrad.optim.SGD(ps, lr=0.1, momentum=0.9)
    sched = cgrad.optim.lr_scheduler.StepLR(opt, step_size=3, gamma=0.5)
    calls = []
    c_step = opt._c_step
    opt._c_step = lambda: (calls.append(1), c_step())
    compiled = cgrad.compile(lambda x, y: _step(opt, ps, x, y))
    for k in range(12):
        compiled(XS[k], YS[k])
        sched.step()
    # recorded once; then Python only after the 3 lr changes seen by steps 3, 6 and 9
    assert len(calls) == 1 + 3


def test_a_subclass_overriding_step_still_runs_its_python():
    class Counting(cgrad.optim.SGD):
        calls = 0

        @replayed
        def step(self):
            self.calls += 1
            super().step()

    class Plain(cgrad.optim.SGD):
        def step(self):   # not @replayed: replays run SGD.step's Python, as before
            super().step()

    for cls, python_calls in ((Counting, 1), (Plain, 1)):
        ps1, ps2 = _cg_params(), _cg_params()
        o1, o2 = cls(ps1, lr=0.05, momentum=0.9), cls(ps2, lr=0.05, momentum=0.9)
        compiled = cgrad.compile(lambda x, y: _step(o2, ps2, x, y))
        for k in range(6):
            assert _step(o1, ps1, cgrad.tensor(XS[k]), cgrad.tensor(YS[k])).item() == compiled(XS[k], YS[k]).item()
        for p, q in zip(ps1, ps2):
            np.testing.assert_array_equal(p.numpy(), q.numpy())
        (stats,) = compiled.stats().values()
        assert stats["python_calls"] == python_calls and stats["native_calls"] == 1  # zero_grad
        if cls is Counting:
            assert o2.calls == 6


def test_pickled_optimizer_keeps_its_step_count_and_replays():
    import pickle
    ps = _cg_params()
    opt = cgrad.optim.Adam(ps, lr=0.05)
    for k in range(3):
        _step(opt, ps, cgrad.tensor(XS[k]), cgrad.tensor(YS[k]))
    ps2, opt2 = pickle.loads(pickle.dumps((ps, opt)))
    assert opt2.step_count == 3
    compiled = cgrad.compile(lambda x, y: _step(opt2, ps2, x, y))
    for k in range(3, 6):
        _step(opt, ps, cgrad.tensor(XS[k]), cgrad.tensor(YS[k]))
        compiled(XS[k], YS[k])
    assert opt2.step_count == 6
    for p, q in zip(ps, ps2):
        np.testing.assert_array_equal(p.numpy(), q.numpy())


@pytest.mark.parametrize("name", ["SGD", "Adam", "AdamW"])
def test_an_optimizer_and_its_parameters_are_freed_without_the_cyclic_gc(name):
    # The optimizer holds its C plan; a plan holding the optimizer back would make a cycle
    # that keeps every parameter's memory until the cyclic gc happens to run.
    import gc
    import weakref
    base = cgrad.live_bytes()
    gc.disable()
    try:
        ps = _cg_params()
        opt = getattr(cgrad.optim, name)(ps, lr=0.05)
        _step(opt, ps, cgrad.tensor(XS[0]), cgrad.tensor(YS[0]))
        alive = weakref.ref(opt)
        del opt, ps
        assert alive() is None
        assert cgrad.live_bytes() == base
    finally:
        gc.enable()


def test_the_fast_path_takes_only_arguments_that_match_the_last_recording(rng):
    """The last recording's arguments are matched and copied by one C call; anything it
    does not take exactly (another shape, dtype, value, layout) goes the keyed way."""
    def make():
        ps = _cg_params()
        return ps, cgrad.optim.SGD(ps, lr=0.05, momentum=0.9)

    def step(opt, ps, x, y, scale):
        opt.zero_grad()
        loss = _loss(cgrad, *ps, x, y) * scale
        loss.backward()
        opt.step()
        return loss

    (p1, o1), (p2, o2) = make(), make()
    compiled = cgrad.compile(lambda x, y, scale: step(o2, p2, x, y, scale))
    x, y = XS[0], YS[0]
    calls = [(x, y, 1.0), (x, y, 1.0), (x, y, 0.5), (x, y, 0.5), (x[:3], y[:3], 0.5),
             (np.asfortranarray(x), y, 0.5), (x.astype(np.float32), y, 0.5), (x, y, 1.0), (x, y, 1)]
    for xa, ya, s in calls:
        want = step(o1, p1, cgrad.tensor(np.ascontiguousarray(xa)), cgrad.tensor(ya), s).item()
        assert compiled(xa, ya, s).item() == want
    for p, q in zip(p1, p2):
        np.testing.assert_array_equal(p.numpy(), q.numpy())
    # 1.0, 0.5, the 3-row batch, float32 x (the Fortran-ordered one matches 0.5's key), int 1
    assert compiled.recordings == 5
