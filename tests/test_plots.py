"""The pictures: History.plot, cgrad.viz.plot_backward_by_layer, and the CLI's --plot flags.
The drawn artists are read back and compared with numbers from an independent path (a
history built by hand; the profiler's raw events summed here with numpy)."""
import sys

import numpy as np
import pytest

matplotlib = pytest.importorskip("matplotlib")
matplotlib.use("Agg")  # never a window in the tests
import matplotlib.image  # noqa: E402
import matplotlib.pyplot as plt  # noqa: E402

import cgrad  # noqa: E402
from cgrad import nn  # noqa: E402
from cgrad.__main__ import main  # noqa: E402
from cgrad.viz import backward_by_layer, plot_backward_by_layer, plot_history  # noqa: E402


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


def hand_history():
    """A History with known values, as Trainer.fit fills it (plus a callback's 'lr')."""
    h = cgrad.History()
    rng = np.random.default_rng(0)
    for epoch in range(1, 8):
        h.append(epoch, {"loss": 2.0 / epoch, "accuracy": 1 - 0.5 / epoch, "val_loss": 2.2 / epoch + 0.01 * epoch,
                         "val_accuracy": 1 - 0.6 / epoch, "time": float(rng.uniform(0.1, 0.2)),
                         "lr": 0.1 * 0.9 ** epoch})
    return h


def lines_of(ax):
    return {line.get_label(): (line.get_xdata(), line.get_ydata()) for line in ax.get_lines()}


def test_history_plot_draws_exactly_the_history():
    h = hand_history()
    fig = h.plot()
    axes = fig.axes
    assert [a.get_title() for a in axes] == ["loss", "accuracy", "lr"]  # 'time' only when asked for
    epochs = np.arange(1, 8)
    for ax, name in zip(axes, ["loss", "accuracy", "lr"]):
        lines = lines_of(ax)
        assert sorted(lines) == (["training", "validation"] if name != "lr" else ["training"])
        np.testing.assert_array_equal(lines["training"][0], epochs)
        np.testing.assert_array_equal(lines["training"][1], h[name])
        if name != "lr":
            np.testing.assert_array_equal(lines["validation"][0], epochs)
            np.testing.assert_array_equal(lines["validation"][1], h[f"val_{name}"])
        assert ax.get_xlabel() == "epoch" and ax.get_yscale() == "linear"
        assert ax.get_legend() is not None
    # the epoch axis has whole-number ticks only
    ticks = axes[0].get_xticks()
    assert np.all(ticks == np.round(ticks))


def test_history_plot_options():
    h = hand_history()
    fig = h.plot(["loss", "time"], logy=True, title="run 3")
    assert [a.get_title() for a in fig.axes] == ["loss", "time"]
    assert [a.get_yscale() for a in fig.axes] == ["log", "linear"]
    assert fig.axes[1].get_ylabel() == "time (s)"
    assert fig.get_suptitle() == "run 3"
    np.testing.assert_array_equal(lines_of(fig.axes[1])["training"][1], h["time"])
    assert [a.get_yscale() for a in h.plot(["loss", "accuracy"], logy=["accuracy"]).axes] == ["linear", "log"]
    assert len(h.plot("accuracy").axes) == 1

    # into the caller's Axes: one, or one per panel; the figure returned is theirs
    fig, ax = plt.subplots()
    assert h.plot("loss", ax=ax) is fig and sorted(lines_of(ax)) == ["training", "validation"]
    fig, axs = plt.subplots(1, 2)
    assert h.plot(["accuracy", "loss"], ax=axs) is fig
    np.testing.assert_array_equal(lines_of(axs[1])["validation"][1], h["val_loss"])
    with pytest.raises(ValueError, match="ax has 1 Axes for 3 panels"):
        h.plot(ax=ax)


def test_history_plot_panels_from_what_fit_records():
    X, y = cgrad.data.moons(n=200, seed=0)
    model = nn.MLP([2, 16, 2])
    trainer = cgrad.Trainer(model, "cross_entropy", cgrad.optim.Adam(model.parameters(), lr=1e-2), seed=0)
    h = trainer.fit(X, y, epochs=3, validation_split=0.25, verbose=0)
    fig = h.plot()
    assert [a.get_title() for a in fig.axes] == ["loss", "accuracy"]
    for ax in fig.axes:
        name = ax.get_title()
        lines = lines_of(ax)
        np.testing.assert_array_equal(lines["training"][1], h[name])
        np.testing.assert_array_equal(lines["validation"][1], h[f"val_{name}"])
    # the last validation point is the fitted model's score on the held-out rows, which
    # fit took after one shuffle with the trainer's seed (its documented split)
    order = np.random.default_rng(0).permutation(len(X))
    held = order[-50:]
    out = trainer.predict(X[held])
    assert lines_of(fig.axes[1])["validation"][1][-1] == pytest.approx(np.mean(out.argmax(1) == y[held]))


def test_a_history_sent_from_another_process_plots_the_same():
    import pickle

    h = hand_history()
    back = pickle.loads(pickle.dumps(h))  # as a sweep's worker returns it
    for a, b in zip(h.plot().axes, back.plot().axes):
        assert lines_of(a).keys() == lines_of(b).keys()
        for k, (x, y) in lines_of(a).items():
            np.testing.assert_array_equal(lines_of(b)[k][0], x)
            np.testing.assert_array_equal(lines_of(b)[k][1], y)


def test_history_plot_refuses_bad_requests():
    h = hand_history()
    with pytest.raises(KeyError, match="History.plot: no 'f1' in the history"):
        h.plot("f1")
    with pytest.raises(ValueError, match="logy names"):
        h.plot("loss", logy=["accuracy"])
    with pytest.raises(ValueError, match="History.plot: the history is empty"):
        cgrad.History().plot()
    # a callback that logs a non-number, or not every epoch, is left out, and refused by name
    h.history["note"] = ["x"] * 7
    h.history["sometimes"] = [1.0, 2.0]
    assert [a.get_title() for a in h.plot().axes] == ["loss", "accuracy", "lr"]
    for key in ("note", "sometimes"):
        with pytest.raises(ValueError, match=f"'{key}' is not one number per epoch"):
            h.plot(key)
    h.history["val_lr"] = [0.1]  # only its ragged half is left out
    assert sorted(lines_of(h.plot().axes[2])) == ["training"]
    with pytest.raises(ValueError, match="'val_lr' is not one number per epoch"):
        h.plot("lr")
    # a validation-only key gets its panel, with the validation line alone
    v = cgrad.History()
    v.append(1, {"loss": 1.0, "val_f1": 0.5})
    v.append(2, {"loss": 0.5, "val_f1": 0.7})
    fig = v.plot()
    assert [a.get_title() for a in fig.axes] == ["loss", "f1"]
    assert lines_of(fig.axes[1])["validation"][1].tolist() == [0.5, 0.7]


def test_saving_is_off_screen_and_leaves_the_backend(tmp_path):
    backend = matplotlib.get_backend()
    before = plt.get_fignums()
    path = tmp_path / "curves.png"
    fig = hand_history().plot(path=path, dpi=50)
    assert plt.get_fignums() == before  # not pyplot's: no window, nothing to close
    img = matplotlib.image.imread(path)
    w, h = fig.get_size_inches()
    assert img.shape == (round(h * 50), round(w * 50), 4) == (170, 675, 4)  # 3 panels of 4.5 x 3.4 in
    assert img[..., :3].std() > 0.05  # something is drawn
    shown = hand_history().plot()  # no path: pyplot's figure, so plt.show() shows it
    assert plt.fignum_exists(shown.number)
    assert matplotlib.get_backend() == backend
    svg = tmp_path / "curves.svg"
    hand_history().plot(path=svg)
    assert svg.read_text().lstrip().startswith("<?xml")


# ---------------------------------------------------------------- the backward bar chart

def profiled(model, x, y, steps=3):
    opt = cgrad.optim.SGD(model.parameters(), lr=0.01)
    with cgrad.profile() as prof:
        for _ in range(steps):
            opt.zero_grad()
            nn.functional.cross_entropy(model(cgrad.from_numpy(x)), cgrad.from_numpy(y)).backward()
            opt.step()
    return prof


def events_by_scope(prof):
    """Per scope id, straight from the C core's events: (dW ns, dX ns, rule ns), and the
    number of backward calls. Phases: 1 a node's rule, 2/6 the dX GEMMs, 3/7 the dW GEMMs
    (linear/matmul, convolution), 4 a whole backward call."""
    ev = prof.events
    dur = (ev["t1"] - ev["t0"]).astype(np.int64)
    out = {}
    for sid in np.unique(ev["scope"][ev["phase"] == 1]).tolist():
        at = ev["scope"] == sid
        out[sid] = tuple(int(dur[at & np.isin(ev["phase"], ph)].sum()) for ph in ((3, 7), (2, 6), (1,)))
    return out, int(np.sum(ev["phase"] == 4))


def bars(ax):
    """{legend label: bar widths}, the bars top to bottom."""
    return {c.get_label(): np.array([p.get_width() for p in c.patches]) for c in ax.containers}


@pytest.mark.parametrize("kind", ["mlp", "cnn"])
def test_backward_bars_hold_the_profilers_dw_dx_split(kind):
    from cgrad import _state

    rng = np.random.default_rng(0)
    if kind == "mlp":
        # another MLP first, so that the global scope ids of this one's names are out of order
        profiled(nn.MLP([5, 16, 16, 3]), rng.normal(size=(8, 5)).astype(np.float32), rng.integers(0, 3, 8))
        model = nn.MLP([7, 16, 16, 3])
        x, y = rng.normal(size=(32, 7)).astype(np.float32), rng.integers(0, 3, 32)
    else:
        from cgrad.__main__ import cnn_for
        model = cnn_for("digits", nn)
        x, y = rng.normal(size=(16, 1, 8, 8)).astype(np.float32), rng.integers(0, 10, 16)
    prof = profiled(model, x, y)
    fig = plot_backward_by_layer(prof, title="my model, batch 32")
    ax = fig.axes[0]
    root = type(model).__name__ + "()"
    expected = [f"{name}: {type(m).__name__}({m.extra_repr()})" for name, m in model.named_children()]
    if kind == "cnn":  # pooling and flatten have no backward time
        expected = [e for e in expected if f"{root}/{e}" in {r["layer"] for r in backward_by_layer(prof)}]
    assert [t.get_text() for t in ax.get_yticklabels()] == expected + ["(no layer)"]
    assert ax.yaxis_inverted()  # the first layer on top
    assert fig.get_suptitle() == "my model, batch 32"

    by_scope, steps = events_by_scope(prof)
    assert steps == 3
    sids = [_state.scopes.index(f"{root}/{e}") for e in expected] + [0]
    dw, dx, rule = (np.array([by_scope[s][i] for s in sids]) / 1e6 / steps for i in range(3))
    drawn = bars(ax)
    assert list(drawn) == ["dW = X$^T$dZ (weight gradient)", "dX = dZ W$^T$ (input gradient)",
                           "rest (bias, activation, buffers)"]
    w_dw, w_dx, w_rest = drawn.values()
    np.testing.assert_allclose(w_dw, dw, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(w_dx, dx, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(w_rest, rule - dw - dx, rtol=1e-9, atol=1e-12)
    # weight layers have a dW GEMM; only the first has no dX (its input needs no gradient)
    weighted = [i for i, e in enumerate(expected) if "Linear" in e or "Conv" in e]
    assert np.all(dw[weighted] > 0) and dx[weighted[0]] == 0 and np.all(dx[weighted[1:]] > 0)
    others = [i for i in range(len(sids)) if i not in weighted]
    assert np.all(dw[others] == 0) and np.all(dx[others] == 0)
    # stacked: each segment starts where the previous ends
    left = [np.array([p.get_x() for p in c.patches]) for c in ax.containers]
    np.testing.assert_allclose(left[1], w_dw)
    np.testing.assert_allclose(left[2], w_dw + w_dx)
    assert ax.get_xlabel() == "backward time per step (ms, mean of 3 steps)"


def test_backward_bars_refuse_a_profile_without_backward():
    with cgrad.profile() as prof:
        nn.Linear(3, 2)(cgrad.ones(4, 3))
    with pytest.raises(ValueError, match="plot_backward_by_layer: the profile holds no backward pass"):
        plot_backward_by_layer(prof)


# ---------------------------------------------------------------- the CLI

def test_cli_train_plot(tmp_path, monkeypatch, capsys):
    drawn = []
    original = cgrad.History.plot

    def spy(self, *args, **kwargs):
        fig = original(self, *args, **kwargs)
        drawn.append((self, fig))
        return fig

    monkeypatch.setattr(cgrad.History, "plot", spy)
    path = tmp_path / "curves.png"
    assert main(["train", "--dataset", "spirals", "--samples", "200", "--epochs", "4", "--validation-split", "0.2",
                 "--plot", str(path), "--quiet"]) == 0
    assert f"saved the training curves to {path}" in capsys.readouterr().out
    (history, fig), = drawn
    assert history.epoch == [1, 2, 3, 4]
    assert [a.get_title() for a in fig.axes] == ["loss", "accuracy"]
    np.testing.assert_array_equal(lines_of(fig.axes[0])["validation"][1], history["val_loss"])
    assert "20% of the training set held out" in fig.get_suptitle()
    assert matplotlib.image.imread(path).shape == (340, 900, 4)  # two 4.5 x 3.4 in panels at 100 dpi


def test_cli_profile_plot(tmp_path, capsys):
    path = tmp_path / "layers.png"
    assert main(["profile", "--hidden", "16", "--steps", "3", "--batch-size", "32", "--plot", str(path),
                 "--trace", str(tmp_path / "t.json")]) == 0
    assert f"saved to {path}" in capsys.readouterr().out
    # Linear, ReLU, Linear and the loss: 8 x (1.5 + 0.4 * 4) in at 100 dpi
    assert matplotlib.image.imread(path).shape == (310, 800, 4)


def test_cli_plot_refusals(tmp_path):
    text = tmp_path / "t.txt"
    text.write_text("abc " * 500)
    for flags in (["--plot", "x.png"], ["--validation-split", "0.1"]):
        with pytest.raises(SystemExit, match=f"{flags[0]} is for the per-epoch models, not --model gpt"):
            main(["train", "--model", "gpt", "--text", str(text), *flags])
    with pytest.raises(SystemExit, match=r"--validation-split must be in \[0, 1\), not 1.5"):
        main(["train", "--validation-split", "1.5"])
    missing = tmp_path / "no" / "such" / "curves.png"
    for command in ("train", "profile"):  # before any work
        with pytest.raises(SystemExit, match=f"cgrad {command}: --plot .*: the folder .* does not exist"):
            main([command, "--plot", str(missing)])


def test_without_matplotlib_the_error_names_the_extra(monkeypatch, tmp_path):
    prof = profiled(nn.Linear(3, 2), np.ones((4, 3), np.float32), np.zeros(4, np.int64), steps=1)
    for mod in [m for m in sys.modules if m == "matplotlib" or m.startswith("matplotlib.")]:
        monkeypatch.delitem(sys.modules, mod)
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import matplotlib now raises ImportError
    with pytest.raises(ImportError, match=r"History.plot needs matplotlib: pip install cgrad\[plot\]"):
        hand_history().plot()
    with pytest.raises(ImportError, match=r"plot_backward_by_layer needs matplotlib: pip install cgrad\[plot\]"):
        plot_backward_by_layer(prof)
    with pytest.raises(ImportError, match=r"History.plot needs matplotlib"):
        plot_history(hand_history(), path=tmp_path / "x.png")
    for command in ("train", "profile"):
        with pytest.raises(SystemExit, match=rf"cgrad {command} --plot needs matplotlib: pip install cgrad\[plot\]"):
            main([command, "--plot", str(tmp_path / "x.png")])
    assert not (tmp_path / "x.png").exists()
