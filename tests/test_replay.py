"""cgrad.compile: record a step once, replay it in C; bitwise equal to eager steps."""
import numpy as np
import pytest

import cgrad
from cgrad import nn
from cgrad.nn import functional as F
from train_steps import assert_same, train_step


def _model(sizes, act, dtype, seed=0):
    cgrad.manual_seed(seed)
    return nn.MLP(sizes, activation=act, dtype=dtype)


def _data(rng, steps, batch, n_in, n_out, loss, dtype):
    X = rng.standard_normal((steps, batch, n_in)).astype(dtype)
    if loss == "ce":
        Y = rng.integers(0, n_out, (steps, batch))
    else:
        Y = rng.standard_normal((steps, batch, n_out)).astype(dtype)
    return X, Y


CASES = [
    # sizes, activation, loss, optimizer, dtype
    ([8, 16, 16, 3], "tanh", "ce", lambda p: cgrad.optim.SGD(p, lr=0.1, momentum=0.9, nesterov=True), np.float32),
    ([5, 12, 2], "relu", "mse", lambda p: cgrad.optim.Adam(p, lr=0.01, weight_decay=1e-3), np.float32),
    ([6, 10, 10, 4], "sigmoid", "ce", lambda p: cgrad.optim.AdamW(p, lr=0.01), np.float64),
    ([4, 8, 1], "leaky_relu", "mse", lambda p: cgrad.optim.SGD(p, lr=0.05, weight_decay=0.01), np.float64),
]


@pytest.mark.parametrize("sizes, act, loss, make_opt, dtype", CASES)
def test_replayed_steps_are_bitwise_equal_to_eager_steps(sizes, act, loss, make_opt, dtype, rng):
    X, Y = _data(rng, 25, 16, sizes[0], sizes[-1], loss, dtype)
    m1, m2 = _model(sizes, act, dtype), _model(sizes, act, dtype)
    o1, o2 = make_opt(m1.parameters()), make_opt(m2.parameters())
    lossfn = F.cross_entropy if loss == "ce" else F.mse_loss

    def step(model, opt, x, y):
        opt.zero_grad()
        out = lossfn(model(x), y)
        out.backward()
        nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        return out

    compiled = cgrad.compile(lambda x, y: step(m2, o2, x, y))
    for x, y in zip(X, Y):
        a = step(m1, o1, cgrad.tensor(x), y).item()
        b = compiled(x, y).item()
        assert a == b
    assert_same(m1, m2)
    assert compiled.recordings == 1
    (stats,) = compiled.stats().values()
    assert stats["python_calls"] == 1  # clip_grad_norm_
    assert stats["native_calls"] == 2  # the optimizer's zero_grad and step, in C


def test_a_new_input_shape_records_again_and_the_cache_is_bounded(rng):
    m1, m2 = _model([3, 5, 2], "relu", np.float32), _model([3, 5, 2], "relu", np.float32)
    o1, o2 = cgrad.optim.SGD(m1.parameters(), lr=0.1), cgrad.optim.SGD(m2.parameters(), lr=0.1)

    eager, compiled = train_step(m1, o1), cgrad.compile(cache_size=2)(train_step(m2, o2))
    for n in (8, 8, 3, 8, 3, 5, 8):  # 5 evicts 8's recording (least recently used)
        x = rng.standard_normal((n, 3)).astype(np.float32)
        y = rng.integers(0, 2, n)
        assert eager(cgrad.tensor(x), y).item() == compiled(x, y).item()
    assert compiled.recordings == 4
    assert len(compiled.stats()) == 2
    assert_same(m1, m2)


def test_a_learning_rate_schedule_applies_to_replayed_steps(rng):
    X, Y = _data(rng, 12, 8, 4, 3, "ce", np.float32)
    ms = [_model([4, 6, 3], "tanh", np.float32) for _ in range(2)]
    opts = [cgrad.optim.SGD(m.parameters(), lr=0.5, momentum=0.5) for m in ms]
    scheds = [cgrad.optim.StepLR(o, step_size=3, gamma=0.5) for o in opts]

    eager, compiled = train_step(ms[0], opts[0]), cgrad.compile(train_step(ms[1], opts[1]))
    for x, y in zip(X, Y):
        eager(cgrad.tensor(x), y)
        compiled(x, y)
        for s in scheds:
            s.step()
    assert_same(ms[0], ms[1])


def test_python_in_the_step_runs_only_while_recording_and_results_are_copies(rng):
    m = _model([2, 4, 1], "tanh", np.float32)
    opt = cgrad.optim.SGD(m.parameters(), lr=0.1)
    seen = []

    @cgrad.compile
    def step(x, y):
        opt.zero_grad()
        out = F.mse_loss(m(x), y)
        seen.append(out.item())
        out.backward()
        opt.step()
        return out, {"pred": m(x)}

    X = rng.standard_normal((4, 16, 2)).astype(np.float32)
    Y = rng.standard_normal((4, 16, 1)).astype(np.float32)
    results = [step(x, y) for x, y in zip(X, Y)]
    assert len(seen) == 1
    losses = [r[0].item() for r in results]
    assert len(set(losses)) == 4  # each a copy, not the one recorded buffer
    assert results[-1][1]["pred"].shape == (16, 1)
    assert results[-1][0].grad_fn is None


def test_integer_targets_are_checked_at_every_replay_and_nothing_runs_on_a_bad_one(rng):
    m = _model([3, 4, 3], "relu", np.float32)
    opt = cgrad.optim.SGD(m.parameters(), lr=0.1)

    step = cgrad.compile(train_step(m, opt))

    x = rng.standard_normal((5, 3)).astype(np.float32)
    step(x, np.array([0, 1, 2, 0, 1]))
    before = {k: v.numpy().copy() for k, v in m.state_dict().items()}
    with pytest.raises(IndexError, match="cross_entropy: target 7 at position 2"):
        step(x, np.array([0, 1, 7, 0, 1]))
    for k, v in m.state_dict().items():
        assert np.array_equal(v.numpy(), before[k])
    step(x, np.array([2, 2, 2, 2, 2]))  # still usable


def test_indexing_with_an_integer_input_is_replayed(rng):
    w = cgrad.tensor(rng.standard_normal((6, 3)), requires_grad=True)
    w2 = cgrad.tensor(w.numpy().copy(), requires_grad=True)

    def step_on(w):
        opt = cgrad.optim.SGD([w], lr=0.1)

        def step(idx):
            opt.zero_grad()
            out = (w[idx] ** 2).sum()
            out.backward()
            opt.step()
            return out
        return step

    step, compiled = step_on(w), cgrad.compile(step_on(w2))
    for idx in ([0, 1, 1], [5, -1, 2], [3, 3, 3]):
        assert step(np.array(idx)).item() == compiled(np.array(idx)).item()
    assert np.array_equal(w.numpy(), w2.numpy())


@pytest.mark.parametrize("body, exc, match", [
    (lambda m, x: F.dropout(m(x), 0.5, training=True).sum(), RuntimeError, "random draw"),
    (lambda m, x: m(x).sum() + m.parameters()[0].grad.sum(), RuntimeError, "reading .grad"),
    (lambda m, x: m(x).sum().fill_(1.0), RuntimeError, "in-place"),
    (lambda m, x: m(x).sum().item(), TypeError, "returns tensors"),
    (lambda m, x: (m(x).sum(), {"n": 3}), TypeError, r"the result\[1\]\['n'\] is a int"),
])
def test_what_cannot_be_replayed_is_refused_while_recording(body, exc, match, rng):
    m = _model([2, 3, 1], "relu", np.float32)
    m(cgrad.tensor(np.ones((1, 2)), dtype="float32")).sum().backward()  # give .grad a value
    compiled = cgrad.compile(lambda x: body(m, x))
    with pytest.raises(exc, match=match):
        compiled(rng.standard_normal((4, 2)).astype(np.float32))
    assert not cgrad._C.capture_active()
    (m(cgrad.tensor(np.ones((1, 2)), dtype="float32")) * 2).sum()  # eager still works


def test_arguments_that_cannot_be_inputs_are_refused():
    compiled = cgrad.compile(lambda x: x * 2)
    with pytest.raises(TypeError, match="requires grad"):
        compiled(cgrad.tensor([1.0], requires_grad=True))
    with pytest.raises(TypeError, match="neither an array"):
        compiled([1.0, 2.0])


def test_replay_makes_no_allocation_in_the_steady_state(rng):
    m = _model([16, 32, 10], "relu", np.float32)
    opt = cgrad.optim.Adam(m.parameters(), lr=1e-3)

    step = cgrad.compile(train_step(m, opt))

    x = rng.standard_normal((8, 16)).astype(np.float32)
    y = rng.integers(0, 10, 8)
    for _ in range(5):
        step(x, y)
    fresh, live = cgrad._C.fresh_alloc_count(), cgrad.live_bytes()
    for _ in range(200):
        step(x, y)
    assert cgrad._C.fresh_alloc_count() == fresh
    assert cgrad.live_bytes() == live


def test_trainer_with_replay_gives_the_same_run():
    X = np.random.default_rng(1).standard_normal((100, 4)).astype(np.float32)
    y = (X[:, 0] > 0).astype(np.int64)
    hist = []
    for replay in (False, True):
        m = _model([4, 8, 2], "relu", np.float32)
        tr = cgrad.Trainer(m, "cross_entropy", cgrad.optim.SGD(m.parameters(), lr=0.1, momentum=0.9),
                           seed=3, replay=replay)
        hist.append((tr.fit(X, y, epochs=3, batch_size=32, verbose=0)["loss"], m.state_dict()))
    assert hist[0][0] == hist[1][0]
    for k in hist[0][1]:
        assert np.array_equal(hist[0][1][k].numpy(), hist[1][1][k].numpy())


def test_a_replayed_step_shows_in_the_profiler_and_anomaly_mode_checks_it(rng):
    m = _model([3, 8, 2], "relu", np.float32)
    opt = cgrad.optim.SGD(m.parameters(), lr=0.1)

    step = cgrad.compile(train_step(m, opt, F.mse_loss))

    x = rng.standard_normal((4, 3)).astype(np.float32)
    y = rng.standard_normal((4, 2)).astype(np.float32)
    step(x, y)
    with cgrad.profile() as prof:
        step(x, y)
    rows = {r["name"]: r for r in prof.rows(by="op", phase="both")}
    assert {"linear [forward]", "linear [backward]", "relu [forward]"} <= set(rows)
    assert rows["linear [forward]"]["flops"] == 2 * 4 * (3 * 8 + 8 * 2)  # as for an eager step
    bad = x.copy()
    bad[0, 0] = np.inf
    with cgrad.detect_anomaly():
        with pytest.raises(RuntimeError, match="anomaly: op 'linear'.*replayed step"):
            step(bad, y)


def test_a_change_of_train_eval_or_grad_mode_records_again(rng):
    cgrad.manual_seed(0)
    m = nn.Sequential(nn.Linear(3, 4), nn.Dropout(0.5), nn.Linear(4, 1))
    compiled = cgrad.compile(lambda x: m(x).sum())
    x = rng.standard_normal((2, 3)).astype(np.float32)
    m.eval()
    compiled(x)
    compiled(x)
    assert compiled.recordings == 1
    m.train()  # dropout now draws masks: recording again refuses, instead of replaying eval
    with pytest.raises(RuntimeError, match="random draw"):
        compiled(x)
    m.eval()
    with cgrad.no_grad():
        compiled(x)
    assert compiled.recordings == 2
