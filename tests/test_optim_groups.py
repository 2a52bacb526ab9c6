"""Optimizer parameter groups: per-group hyperparameters, add_param_group, state_dict in
PyTorch's layout, schedulers over every group, and replays of multi-group steps."""
import numpy as np
import pytest

import cgrad
from cgrad import nn
from cgrad.nn import functional as F

# ---------------------------------------------------------------- helpers

RNG = np.random.default_rng(7)
W0 = RNG.standard_normal((3, 4))   # a "matrix" parameter
B0 = RNG.standard_normal(3)        # a "bias" parameter
V0 = RNG.standard_normal(4)        # a third, for add_param_group
X = RNG.standard_normal((6, 4))
Y = RNG.standard_normal((6, 3))


def _cg_params():
    return [cgrad.tensor(a.copy(), requires_grad=True) for a in (W0, B0, V0)]


def _cg_loss(w, b, v):
    return (((cgrad.tensor(X) * v) @ w.T + b - cgrad.tensor(Y)) ** 2).mean()


def _torch_params(torch):
    return [torch.tensor(a.copy(), requires_grad=True) for a in (W0, B0, V0)]


def _torch_loss(torch, w, b, v):
    return (((torch.from_numpy(X) * v) @ w.T + b - torch.from_numpy(Y)) ** 2).mean()


def _run_both(torch, make, steps=8, edit=None):
    """Run `make(params, optim_module)` in cgrad and torch side by side, calling
    edit(step, opt, params) before each step; compare all parameters after every step."""
    ps, ts = _cg_params(), _torch_params(torch)
    opt, topt = make(ps, cgrad.optim), make(ts, torch.optim)
    for k in range(steps):
        if edit is not None:
            edit(k, opt, ps)
            edit(k, topt, ts)
        opt.zero_grad()
        _cg_loss(*ps).backward()
        opt.step()
        topt.zero_grad()
        _torch_loss(torch, *ts).backward()
        topt.step()
        for p, t in zip(ps, ts):
            np.testing.assert_allclose(p.numpy(), t.detach().numpy(), rtol=1e-10, atol=1e-12,
                                       err_msg=f"step {k}")
    return opt, topt, ps, ts


def _lr_edit(k, opt, params):
    if k == 4:  # a hand-written schedule: one group's lr changes between steps
        opt.param_groups[1]["lr"] *= 0.25


# ---------------------------------------------------------------- against torch.optim

SGD_GROUPS = [
    # (group 0 options, group 1 options, defaults)
    (dict(momentum=0.9, nesterov=True, weight_decay=1e-2), dict(lr=0.05, momentum=0.5, dampening=0.1), dict(lr=0.1)),
    (dict(weight_decay=0.1), dict(momentum=0.9), dict(lr=0.05)),
    (dict(lr=0.2), dict(lr=0.01, momentum=0.8, nesterov=True, weight_decay=0.3), dict(lr=0.1, momentum=0.3)),
]


@pytest.mark.parametrize("g0, g1, defaults", SGD_GROUPS)
def test_sgd_groups_match_torch(g0, g1, defaults):
    torch = pytest.importorskip("torch")

    def make(p, optim):
        return optim.SGD([dict(g0, params=[p[0]]), dict(g1, params=[p[1], p[2]])], **defaults)
    opt, topt, _, _ = _run_both(torch, make, edit=_lr_edit)
    assert opt.param_groups[1]["lr"] == topt.param_groups[1]["lr"]


@pytest.mark.parametrize("name", ["Adam", "AdamW"])
def test_adam_groups_match_torch(name):
    torch = pytest.importorskip("torch")

    def make(p, optim):  # weight decay on the matrix only, other betas for the vectors
        return getattr(optim, name)([{"params": [p[0]], "weight_decay": 0.1},
                                     {"params": [p[1], p[2]], "weight_decay": 0.0, "betas": (0.8, 0.99),
                                      "lr": 3e-2}], lr=1e-2, eps=1e-6)
    _run_both(torch, make, steps=10, edit=_lr_edit)


@pytest.mark.parametrize("name", ["SGD", "Adam", "AdamW"])
def test_add_param_group_mid_training_matches_torch(name):
    torch = pytest.importorskip("torch")
    kw = dict(lr=0.05, momentum=0.9) if name == "SGD" else dict(lr=1e-2)

    def make(p, optim):
        return getattr(optim, name)([p[0], p[1]], **kw)

    def edit(k, opt, params):
        if k == 3:  # the third parameter joins with its own lr; its Adam steps count from 1
            opt.add_param_group({"params": params[2], "lr": 0.02})
        if k == 6:
            opt.param_groups[0]["lr"] = 0.01
    opt, topt, _, _ = _run_both(torch, make, steps=9, edit=edit)
    assert len(opt.param_groups) == len(topt.param_groups) == 2
    assert {k for k in topt.param_groups[1] if k in opt.defaults or k == "params"} == set(opt.param_groups[1])


def test_torch_adam_state_dict_loads_and_training_continues_alike():
    torch = pytest.importorskip("torch")

    def make(p, optim):
        return optim.Adam([{"params": [p[0]], "weight_decay": 0.05}, {"params": [p[1], p[2]]}], lr=1e-2)
    opt, topt, ps, ts = _run_both(torch, make, steps=3)
    fresh = make(ps, cgrad.optim)   # same weights, no state, other hyperparameters...
    fresh.param_groups[0]["lr"] = 1.0
    fresh.load_state_dict(topt.state_dict())   # ... until torch's state dict is loaded
    assert fresh.param_groups[0]["lr"] == 1e-2 and fresh.step_count == 3
    for _ in range(3):
        fresh.zero_grad()
        _cg_loss(*ps).backward()
        fresh.step()
        topt.zero_grad()
        _torch_loss(torch, *ts).backward()
        topt.step()
    for p, t in zip(ps, ts):
        np.testing.assert_allclose(p.numpy(), t.detach().numpy(), rtol=1e-10, atol=1e-12)


def test_state_dict_has_torchs_layout():
    torch = pytest.importorskip("torch")

    def make(p, optim):
        return optim.SGD([{"params": [p[0], p[1]], "momentum": 0.9}, {"params": [p[2]], "lr": 0.5}], lr=0.1)
    opt, topt, _, _ = _run_both(torch, make, steps=2)
    sd, tsd = opt.state_dict(), topt.state_dict()
    assert [g["params"] for g in sd["param_groups"]] == [g["params"] for g in tsd["param_groups"]] == [[0, 1], [2]]
    assert [g["lr"] for g in sd["param_groups"]] == [g["lr"] for g in tsd["param_groups"]]
    for i in (0, 1):
        np.testing.assert_allclose(sd["state"][i]["momentum_buffer"], tsd["state"][i]["momentum_buffer"].numpy(),
                                   rtol=1e-12)
    assert "momentum_buffer" not in sd["state"][2]  # momentum 0 in that group: no buffer, as torch


@pytest.mark.parametrize("kind", ["step", "cosine", "plateau"])
def test_schedulers_set_every_groups_lr_as_torch(kind):
    torch = pytest.importorskip("torch")
    metrics = [1.0, 0.9, 0.9, 0.9, 0.9, 0.8, 0.8, 0.8, 0.8, 0.8]
    lrs = {}
    for lib, optim in (("cgrad", cgrad.optim), ("torch", torch.optim)):
        ps = _cg_params() if lib == "cgrad" else _torch_params(torch)
        opt = optim.SGD([{"params": ps[:2]}, {"params": ps[2:], "lr": 0.3}], lr=1.0)
        sched = {"step": lambda: optim.lr_scheduler.StepLR(opt, step_size=3, gamma=0.5),
                 "cosine": lambda: optim.lr_scheduler.CosineAnnealingLR(opt, T_max=10, eta_min=0.01),
                 "plateau": lambda: optim.lr_scheduler.ReduceLROnPlateau(opt, factor=0.5, patience=1,
                                                                        min_lr=[0.0, 0.1])}[kind]()
        seen = []
        for m in metrics:
            opt.step()
            sched.step(m) if kind == "plateau" else sched.step()
            seen.append(list(sched.get_last_lr()) + [g["lr"] for g in opt.param_groups])
        lrs[lib] = seen
    np.testing.assert_allclose(lrs["cgrad"], lrs["torch"], rtol=1e-12)


def _closed_form_schedule(optim, opt, kind):
    sch = optim.lr_scheduler
    return {"lambda": lambda: sch.LambdaLR(opt, lambda e: 0.9 ** e + 0.1 * (e % 3)),
            "lambdas": lambda: sch.LambdaLR(opt, [lambda e: 1 / (e + 1), lambda e: 0.5 + 0.1 * e]),
            "linear": lambda: sch.LinearLR(opt, start_factor=0.1, total_iters=4),
            "exponential": lambda: sch.ExponentialLR(opt, gamma=0.8),
            "multistep": lambda: sch.MultiStepLR(opt, milestones=[2, 5, 7], gamma=0.5),
            "warmup_cosine": lambda: sch.SequentialLR(opt, [sch.LinearLR(opt, start_factor=0.2, total_iters=3),
                                                            sch.CosineAnnealingLR(opt, T_max=6, eta_min=0.05)],
                                                      milestones=[3])}[kind]()


@pytest.mark.parametrize("kind", ["lambda", "lambdas", "linear", "exponential", "multistep", "warmup_cosine"])
def test_closed_form_schedulers_match_torch_from_construction(kind):
    """Including the lr the constructor sets (epoch 0's), and SequentialLR's restart of the
    second schedule at its milestone."""
    torch = pytest.importorskip("torch")
    lrs = {}
    for lib, optim in (("cgrad", cgrad.optim), ("torch", torch.optim)):
        ps = _cg_params() if lib == "cgrad" else _torch_params(torch)
        opt = optim.SGD([{"params": ps[:2]}, {"params": ps[2:], "lr": 0.3}], lr=1.0)
        sched = _closed_form_schedule(optim, opt, kind)
        seen = [[g["lr"] for g in opt.param_groups]]
        for _ in range(10):
            opt.step()
            sched.step()
            seen.append(list(sched.get_last_lr()) + [g["lr"] for g in opt.param_groups])
        lrs[lib] = seen
    for a, b in zip(lrs["cgrad"], lrs["torch"]):
        np.testing.assert_allclose(a, b, rtol=1e-12)


def test_warmup_then_cosine_hand_computed():
    opt = cgrad.optim.SGD(_cg_params(), lr=1.0)
    sch = cgrad.optim.lr_scheduler
    s = sch.SequentialLR(opt, [sch.LinearLR(opt, start_factor=0.25, total_iters=2),
                               sch.CosineAnnealingLR(opt, T_max=2)], milestones=[2])
    seen = [opt.param_groups[0]["lr"]]
    for _ in range(5):
        s.step()
        seen.append(opt.param_groups[0]["lr"])
    np.testing.assert_allclose(seen, [0.25, 0.625, 1.0, 0.5, 0.0, 0.5], atol=1e-15)
    with pytest.raises(ValueError, match="SequentialLR: 2 schedulers need 1 milestones"):
        sch.SequentialLR(opt, [sch.LinearLR(opt), sch.LinearLR(opt)], milestones=[])


# ---------------------------------------------------------------- fixed expectations (no torch)

def _quadratic_grads(ps, coef):
    """loss = sum(coef_i * p_i): gradient coef_i for each parameter."""
    loss = sum((p * cgrad.tensor(c)).sum() for p, c in zip(ps, coef))
    loss.backward()


def test_a_group_with_lr_zero_stays_put_while_the_other_moves():
    ps = _cg_params()
    opt = cgrad.optim.Adam([{"params": [ps[0]], "lr": 0.0}, {"params": ps[1:]}], lr=0.1)
    for _ in range(3):
        opt.zero_grad()
        _cg_loss(*ps).backward()
        opt.step()
    np.testing.assert_array_equal(ps[0].numpy(), W0)
    assert np.abs(ps[1].numpy() - B0).min() > 1e-3


def test_sgd_weight_decay_only_in_its_group_hand_computed():
    ps = _cg_params()
    coef = [np.full(a.shape, c) for a, c in ((W0, 0.5), (B0, -1.0), (V0, 2.0))]
    opt = cgrad.optim.SGD([{"params": [ps[0]], "weight_decay": 0.1}, {"params": ps[1:], "lr": 0.2}], lr=0.05)
    _quadratic_grads(ps, coef)
    opt.step()
    np.testing.assert_allclose(ps[0].numpy(), W0 - 0.05 * (0.5 + 0.1 * W0), rtol=1e-14)
    np.testing.assert_allclose(ps[1].numpy(), B0 - 0.2 * -1.0, rtol=1e-14)
    np.testing.assert_allclose(ps[2].numpy(), V0 - 0.2 * 2.0, rtol=1e-14)


def test_adamw_decays_only_the_matrices_hand_computed():
    """First AdamW step: m/(1-b1) = g, v/(1-b2) = g^2, so p <- p (1 - lr wd) - lr g / (|g| + eps)."""
    cgrad.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 3, dtype=np.float64), nn.Tanh(), nn.Linear(3, 2, dtype=np.float64))
    weights = [p for n, p in model.named_parameters() if n.endswith("weight")]
    biases = [p for n, p in model.named_parameters() if n.endswith("bias")]
    opt = cgrad.optim.AdamW([{"params": weights}, {"params": biases, "weight_decay": 0.0}],
                            lr=0.01, weight_decay=0.5, eps=1e-3)
    before = {n: p.numpy().copy() for n, p in model.named_parameters()}
    F.mse_loss(model(cgrad.tensor(X)), cgrad.tensor(RNG.standard_normal((6, 2)))).backward()
    grads = {n: p.grad.numpy().copy() for n, p in model.named_parameters()}
    opt.step()
    for n, p in model.named_parameters():
        wd = 0.5 if n.endswith("weight") else 0.0
        g = grads[n]
        expected = before[n] * (1 - 0.01 * wd) - 0.01 * g / (np.abs(g) + 1e-3)
        np.testing.assert_allclose(p.numpy(), expected, rtol=1e-12, atol=1e-15, err_msg=n)
    assert opt.param_groups[0]["weight_decay"] == 0.5 and opt.param_groups[1]["weight_decay"] == 0.0


def test_missing_keys_come_from_the_defaults_and_the_dict_is_the_group():
    ps = _cg_params()
    g1 = {"params": ps[1:], "lr": 0.5, "name": "biases"}
    opt = cgrad.optim.SGD([{"params": ps[0]}, g1], lr=0.1, momentum=0.9)
    assert opt.param_groups[1] is g1 and g1["momentum"] == 0.9 and g1["name"] == "biases"
    assert opt.param_groups[0]["params"] == [ps[0]] and opt.param_groups[0]["lr"] == 0.1
    assert opt.lr == 0.1
    opt.lr = 0.3  # the convenience property is group 0's
    assert opt.param_groups[0]["lr"] == 0.3 and g1["lr"] == 0.5


def test_a_dict_appended_to_param_groups_is_added_at_the_next_step():
    ps = _cg_params()
    opt = cgrad.optim.SGD(ps[:2], lr=0.1)
    opt.param_groups.append({"params": [ps[2]], "lr": 1.0})
    _quadratic_grads(ps, [np.ones(a.shape) for a in (W0, B0, V0)])
    opt.step()
    np.testing.assert_allclose(ps[2].numpy(), V0 - 1.0, rtol=1e-14)
    np.testing.assert_allclose(ps[0].numpy(), W0 - 0.1, rtol=1e-14)
    assert opt.param_groups[1]["momentum"] == 0.0  # filled from the defaults


def test_state_dict_round_trip_with_groups_is_bitwise():
    ps, qs = _cg_params(), _cg_params()

    def make(p):
        return cgrad.optim.Adam([{"params": [p[0]], "weight_decay": 0.1}, {"params": p[1:], "lr": 0.05}], lr=0.01)
    a = make(ps)
    for _ in range(2):
        a.zero_grad()
        _cg_loss(*ps).backward()
        a.step()
    sd = a.state_dict()
    assert sorted(sd) == ["param_groups", "state"]
    assert [g["params"] for g in sd["param_groups"]] == [[0], [1, 2]]
    assert sd["state"][2]["step"] == 2 and set(sd["state"][2]) == {"step", "exp_avg", "exp_avg_sq"}
    with cgrad.no_grad():
        for q, p in zip(qs, ps):
            q.copy_(p.numpy())
    b = make(qs)
    b.param_groups[1]["lr"] = 9.0
    b.load_state_dict(sd)
    assert b.param_groups[1]["lr"] == 0.05 and b.step_count == 2
    for opt, params in ((a, ps), (b, qs)):
        for _ in range(2):
            opt.zero_grad()
            _cg_loss(*params).backward()
            opt.step()
    for p, q in zip(ps, qs):
        np.testing.assert_array_equal(p.numpy(), q.numpy())


def test_the_older_single_group_state_dict_still_loads():
    ps, qs = _cg_params(), _cg_params()
    a = cgrad.optim.SGD(ps, lr=0.1, momentum=0.9)
    a.zero_grad()
    _cg_loss(*ps).backward()
    a.step()
    new = a.state_dict()
    old = {"param_group": {k: v for k, v in new["param_groups"][0].items() if k != "params"},
           "step": 1, "state": {"momentum_buffer": [new["state"][i]["momentum_buffer"] for i in range(3)]}}
    with cgrad.no_grad():
        for q, p in zip(qs, ps):
            q.copy_(p.numpy())
    b = cgrad.optim.SGD(qs, lr=0.5)
    b.load_state_dict(old)
    assert b.lr == 0.1 and b.param_groups[0]["momentum"] == 0.9 and b.step_count == 1
    for opt, params in ((a, ps), (b, qs)):
        opt.zero_grad()
        _cg_loss(*params).backward()
        opt.step()
    for p, q in zip(ps, qs):
        np.testing.assert_array_equal(p.numpy(), q.numpy())
    two = cgrad.optim.SGD([{"params": qs[:1]}, {"params": qs[1:]}], lr=0.1)
    with pytest.raises(ValueError, match="single-group"):
        two.load_state_dict(old)


def test_load_state_dict_refuses_mismatches_before_changing_anything():
    ps = _cg_params()
    a = cgrad.optim.Adam([{"params": ps[:2]}, {"params": ps[2:]}], lr=0.01)
    _cg_loss(*ps).backward()
    a.step()
    sd = a.state_dict()
    one = cgrad.optim.Adam(ps, lr=0.5)
    with pytest.raises(ValueError, match="2 parameter groups, the optimizer 1"):
        one.load_state_dict(sd)
    other = cgrad.optim.Adam([{"params": ps[:1]}, {"params": ps[1:]}], lr=0.5)
    with pytest.raises(ValueError, match="saved param group 0 has 2 parameters"):
        other.load_state_dict(sd)
    bad = {"state": dict(sd["state"]), "param_groups": sd["param_groups"]}
    bad["state"][2] = dict(bad["state"][2], exp_avg=np.zeros(7))
    same = cgrad.optim.Adam([{"params": ps[:2]}, {"params": ps[2:]}], lr=0.5)
    with pytest.raises(ValueError, match="'exp_avg' of parameter 2 has 7 values"):
        same.load_state_dict(bad)
    assert same.lr == 0.5 and same.step_count == 0  # nothing was loaded
    with pytest.raises(ValueError, match="'state' and 'param_groups'"):
        same.load_state_dict({"state": {}})


def test_bad_groups_raise_clear_errors():
    w, b, v = _cg_params()
    with pytest.raises(ValueError, match="more than one parameter group"):
        cgrad.optim.SGD([{"params": [w, b]}, {"params": [b]}], lr=0.1)
    with pytest.raises(ValueError, match="empty parameter list"):
        cgrad.optim.AdamW([])
    with pytest.raises(TypeError, match="param group 1: a param group is a dict"):
        cgrad.optim.SGD([{"params": [w]}, b], lr=0.1)
    with pytest.raises(ValueError, match="no 'params' key"):
        cgrad.optim.SGD([{"lr": 0.1}])
    with pytest.raises(TypeError, match="is a set"):
        cgrad.optim.SGD([{"params": {w, b}}])
    with pytest.raises(TypeError, match="parameter 1 is a ndarray, not a tensor"):
        cgrad.optim.SGD([{"params": [w, W0]}])
    with pytest.raises(TypeError, match="iterable of tensors or of dicts"):
        cgrad.optim.SGD(w)
    with pytest.raises(ValueError, match="parameter 1 appears twice"):
        cgrad.optim.SGD([w, w])
    with pytest.raises(ValueError, match="param group 1: lr must be >= 0"):
        cgrad.optim.SGD([{"params": [w]}, {"params": [b], "lr": -0.1}], lr=0.1)
    with pytest.raises(TypeError, match="weight_decay must be a number"):
        cgrad.optim.Adam([{"params": [w], "weight_decay": "0.1"}])
    with pytest.raises(ValueError, match="param group 0: Nesterov"):
        cgrad.optim.SGD([{"params": [w], "nesterov": True}], lr=0.1)
    with pytest.raises(ValueError, match="param group 1: betas must be two numbers"):
        cgrad.optim.Adam([{"params": [w]}, {"params": [b], "betas": (0.9, 1.0)}])
    with pytest.raises(ValueError, match="amsgrad=True is not supported"):
        cgrad.optim.Adam([{"params": [w], "amsgrad": True}])
    with pytest.raises(ValueError, match="not a leaf"):
        cgrad.optim.SGD([{"params": [w]}, {"params": [b * 2.0]}], lr=0.1)


def test_a_refused_add_param_group_changes_nothing():
    w, b, v = _cg_params()
    opt = cgrad.optim.SGD([w], lr=0.1)
    group = {"params": [v, w], "lr": 0.5}
    with pytest.raises(ValueError, match="more than one parameter group"):
        opt.add_param_group(group)
    with pytest.raises(ValueError, match="lr must be >= 0"):
        opt.add_param_group({"params": [v], "lr": -1.0})
    assert len(opt.param_groups) == 1 and group == {"params": [v, w], "lr": 0.5}
    opt.add_param_group({"params": [v, b]})  # still possible after the refusals
    assert len(opt.param_groups) == 2 and opt.param_groups[1]["lr"] == 0.1


def test_schedulers_use_each_groups_base_lr():
    p, q = cgrad.tensor([1.0], requires_grad=True), cgrad.tensor([1.0], requires_grad=True)
    opt = cgrad.optim.SGD([{"params": [p]}, {"params": [q], "lr": 0.1}], lr=1.0)
    s = cgrad.optim.StepLR(opt, step_size=2, gamma=0.5)
    seen = []
    for _ in range(4):
        s.step()
        seen.append(s.get_last_lr())
    assert seen == [[1.0, 0.1], [0.5, 0.05], [0.5, 0.05], [0.25, 0.025]]
    assert [g["initial_lr"] for g in opt.param_groups] == [1.0, 0.1]
    r = cgrad.optim.ReduceLROnPlateau(opt, factor=0.5, patience=0, min_lr=[0.2, 0.0])
    for m in (1.0, 2.0, 2.0):
        r.step(m)
    assert r.get_last_lr() == [0.2, 0.025 * 0.25]
    with pytest.raises(ValueError, match="3 min_lr values for 2 param groups"):
        cgrad.optim.ReduceLROnPlateau(opt, min_lr=[0.0, 0.0, 0.0])


# ---------------------------------------------------------------- replay

@pytest.mark.parametrize("name", ["SGD", "AdamW"])
def test_replayed_multi_group_steps_are_bitwise_equal_to_eager(name, rng):
    Xs = rng.standard_normal((12, 16, 5)).astype(np.float32)
    Ys = rng.integers(0, 3, (12, 16))
    models = []
    for _ in range(2):
        cgrad.manual_seed(0)
        models.append(nn.MLP([5, 8, 3], activation="tanh"))

    def make(m):
        decay = [p for n, p in m.named_parameters() if n.endswith("weight")]
        other = [p for n, p in m.named_parameters() if not n.endswith("weight")]
        kw = dict(lr=0.1, momentum=0.9, nesterov=True) if name == "SGD" else dict(lr=1e-2)
        return getattr(cgrad.optim, name)([{"params": decay, "weight_decay": 0.05},
                                           {"params": other, "weight_decay": 0.0}], **kw)
    opts = [make(m) for m in models]
    scheds = [cgrad.optim.StepLR(o, step_size=4, gamma=0.5) for o in opts]

    def step(m, opt, x, y):
        opt.zero_grad()
        out = F.cross_entropy(m(x), y)
        out.backward()
        opt.step()
        return out

    compiled = cgrad.compile(lambda x, y: step(models[1], opts[1], x, y))
    for k, (x, y) in enumerate(zip(Xs, Ys)):
        assert step(models[0], opts[0], cgrad.tensor(x), y).item() == compiled(x, y).item()
        for o, s in zip(opts, scheds):
            s.step()
            if k == 5:  # and one group's lr by hand, as a schedule written in the loop does
                o.param_groups[1]["lr"] = 0.0
    assert compiled.recordings == 1
    for p1, p2 in zip(models[0].parameters(), models[1].parameters()):
        np.testing.assert_array_equal(p1.numpy(), p2.numpy())
    # StepLR scales the current lr, as torch's: the group set to 0 by hand stays at 0
    assert opts[1].param_groups[1]["lr"] == 0.0
    assert opts[1].param_groups[0]["lr"] == pytest.approx((0.1 if name == "SGD" else 1e-2) * 0.5 ** 3)
