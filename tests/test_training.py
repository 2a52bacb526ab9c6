"""End to end: datasets, Trainer, callbacks, save/load, estimators and the CLI."""
import os
import subprocess
import sys

import numpy as np
import pytest

import cgrad
from cgrad import data, nn


def _train(X, y, sizes, activation, epochs, lr=0.01, batch_size=32, seed=0, opt="adam"):
    cgrad.manual_seed(seed)
    model = nn.MLP(sizes, activation=activation)
    optimizer = (cgrad.optim.Adam(model.parameters(), lr=lr) if opt == "adam"
                 else cgrad.optim.SGD(model.parameters(), lr=lr, momentum=0.9))
    trainer = cgrad.Trainer(model, "cross_entropy", optimizer, seed=seed)
    history = trainer.fit(X, y, epochs=epochs, batch_size=batch_size, verbose=0)
    return trainer, history


def test_xor_reaches_100_percent():
    X, y = data.xor(n=200, noise=0.1, seed=0)
    trainer, history = _train(X, y, [2, 8, 2], "tanh", epochs=60, lr=0.05)
    assert trainer.evaluate(X, y)["accuracy"] == 1.0
    assert history["loss"][-1] < history["loss"][0]


def test_moons_reaches_97_percent():
    X, y = data.moons(n=300, noise=0.1, seed=0)
    trainer, _ = _train(X, y, [2, 32, 32, 2], "relu", epochs=100, lr=0.01)
    assert trainer.evaluate(X, y)["accuracy"] >= 0.97


def test_spirals_reach_95_percent():
    X, y = data.spirals(n=300, classes=3, noise=0.2, seed=0)
    trainer, _ = _train(X, y, [2, 64, 64, 3], "relu", epochs=200, lr=0.01)
    assert trainer.evaluate(X, y)["accuracy"] >= 0.95


def test_digits_mlp_reaches_96_percent_test_accuracy():
    X_tr, y_tr, X_te, y_te = data.digits()
    assert X_tr.shape == (1347, 64) and X_te.shape == (450, 64)
    assert X_tr.dtype == np.float32 and 0 <= X_tr.min() and X_tr.max() <= 1
    trainer, _ = _train(X_tr, y_tr, [64, 128, 10], "relu", epochs=30, lr=1e-3)
    assert trainer.evaluate(X_te, y_te)["accuracy"] >= 0.96


def test_mnist1d_is_the_canonical_split_and_an_mlp_learns_it():
    """The bundled MNIST-1D: 4,000 / 1,000 signals of length 40, labels 0..9 in every class.
    The paper's MLP recipe (40-100-100-10 ReLU, Adam 1e-2, batch 100, batches in order)
    gives 68% test accuracy after 6,000-8,000 steps (logistic regression 32%); 2,000 steps
    already pass 60% here, which wrong or misaligned labels could not."""
    X, y, X_te, y_te = data.mnist1d()
    assert X.shape == (4000, 40) and X_te.shape == (1000, 40) and y.shape == (4000,) and y_te.shape == (1000,)
    assert X.dtype == np.float32 and y.dtype == np.int64
    assert set(np.unique(y)) == set(range(10)) == set(np.unique(y_te))
    cgrad.manual_seed(0)
    model = nn.MLP([40, 100, 100, 10], activation="relu")
    opt = cgrad.optim.Adam(model.parameters(), lr=1e-2)

    @cgrad.compile
    def step(xb, yb):
        opt.zero_grad()
        loss = nn.functional.cross_entropy(model(xb), yb)
        loss.backward()
        opt.step()
        return loss

    for s in range(2000):
        i = (s * 100) % 4000
        step(X[i:i + 100], y[i:i + 100])
    with cgrad.no_grad():
        accuracy = (model(cgrad.tensor(X_te)).argmax(1).numpy() == y_te).mean()
    assert accuracy >= 0.60, accuracy


def test_bundled_texts_are_makemores_names_and_tiny_shakespeare():
    """The sizes and alphabets the sources give (makemore has 32,033 names; ../shared/data/README.md says 32,032), and makemore's counting bigram model:
    228,146 bigrams (with the end token), average negative log-likelihood about 2.45 with
    add-one smoothing in the makemore lecture."""
    words = data.names()
    assert len(words) == 32033 and words[:3] == ["emma", "olivia", "ava"]
    assert sorted(set("".join(words))) == [chr(c) for c in range(ord("a"), ord("z") + 1)]
    counts = np.ones((27, 27))
    pairs = [(0 if a == "." else ord(a) - 96, 0 if b == "." else ord(b) - 96)
             for w in words for a, b in zip("." + w, w + ".")]
    np.add.at(counts, tuple(np.array(pairs).T), 1)
    logp = np.log(counts / counts.sum(1, keepdims=True))
    nll = -np.mean([logp[a, b] for a, b in pairs])
    assert len(pairs) == 228146 and 2.45 < nll < 2.46, (len(pairs), nll)
    text = data.tinyshakespeare()
    assert len(text) == 1115394 and len(set(text)) == 65 and text.startswith("First Citizen:")


def test_datasets_are_seeded():
    for name, fn in data.DATASETS.items():
        a, b = fn(seed=3), fn(seed=3)
        np.testing.assert_array_equal(a[0], b[0], err_msg=name)
        assert a[0].dtype == np.float32 and a[1].dtype == np.int64
        assert not np.array_equal(fn(seed=4)[0], a[0])


def test_dataloader_batches_and_shuffles():
    X = np.arange(10, dtype=np.float32).reshape(10, 1)
    y = np.arange(10)
    batches = list(data.DataLoader(X, y, batch_size=4))
    assert [len(b[1]) for b in batches] == [4, 4, 2]
    assert isinstance(batches[0][0], cgrad.Tensor)
    assert len(data.DataLoader(X, y, batch_size=4, drop_last=True)) == 2
    seen = np.concatenate([b[1] for b in data.DataLoader(X, y, batch_size=3, shuffle=True, seed=0)])
    assert sorted(seen) == list(range(10)) and list(seen) != list(range(10))
    with pytest.raises(ValueError, match="rows"):
        data.DataLoader(X, y[:5])


def test_fit_is_repeatable_bit_for_bit():
    X, y = data.moons(n=200, seed=1)
    runs = []
    for _ in range(2):
        cgrad.manual_seed(5)
        model = nn.MLP([2, 16, 2], dropout=0.1)
        trainer = cgrad.Trainer(model, "cross_entropy", cgrad.optim.Adam(model.parameters(), lr=0.01), seed=7)
        h = trainer.fit(X, y, epochs=3, batch_size=16, validation_split=0.2, verbose=0)
        runs.append((h["loss"], h["val_loss"], [p.numpy().copy() for p in model.parameters()]))
    assert runs[0][0] == runs[1][0] and runs[0][1] == runs[1][1]
    for a, b in zip(runs[0][2], runs[1][2]):
        np.testing.assert_array_equal(a, b)


def test_history_validation_and_metrics():
    X, y = data.blobs(n=200, seed=0)
    cgrad.manual_seed(0)
    model = nn.MLP([2, 8, 3])
    trainer = cgrad.Trainer(model, nn.CrossEntropyLoss(), cgrad.optim.SGD(model.parameters(), lr=0.1))
    h = trainer.fit(X, y, epochs=4, validation_data=(X[:50], y[:50]), verbose=0)
    assert set(h.history) == {"loss", "accuracy", "val_loss", "val_accuracy", "time"}
    assert h.epoch == [1, 2, 3, 4]
    pred = trainer.predict(X)
    assert pred.shape == (200, 3)


def test_regression_trainer_uses_mse():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(256, 3)).astype(np.float32)
    y = (X @ np.array([1.0, -2.0, 0.5]) + 0.3).astype(np.float32)
    cgrad.manual_seed(0)
    model = nn.MLP([3, 1])
    trainer = cgrad.Trainer(model, "mse_loss", cgrad.optim.SGD(model.parameters(), lr=0.05), metrics=["mse"])
    h = trainer.fit(X, y, epochs=40, batch_size=32, verbose=0)
    assert h["mse"][-1] < 1e-3


def test_early_stopping_restores_best_weights():
    X, y = data.moons(n=200, seed=0)
    cgrad.manual_seed(0)
    model = nn.MLP([2, 16, 2])
    trainer = cgrad.Trainer(model, "cross_entropy", cgrad.optim.SGD(model.parameters(), lr=5.0), seed=0)

    class Snapshots(cgrad.Callback):
        def __init__(self):
            self.params = {}

        def on_epoch_end(self, epoch, logs):
            self.params[epoch] = [p.numpy().copy() for p in model.parameters()]

    snaps = Snapshots()
    es = cgrad.EarlyStopping(monitor="loss", patience=2, restore_best_weights=True)
    h = trainer.fit(X, y, epochs=50, callbacks=[snaps, es], verbose=0)
    assert len(h.epoch) < 50 and es.stopped_epoch == h.epoch[-1]
    assert es.best_epoch == 1 + int(np.argmin(h["loss"]))
    assert es.best_epoch != h.epoch[-1]
    for p, best in zip(model.parameters(), snaps.params[es.best_epoch]):
        np.testing.assert_array_equal(p.numpy(), best)


def test_terminate_on_nan_and_checkpoint(tmp_path):
    X, y = data.xor(n=64, seed=0)
    cgrad.manual_seed(0)
    model = nn.MLP([2, 4, 2])
    trainer = cgrad.Trainer(model, "cross_entropy", cgrad.optim.SGD(model.parameters(), lr=1e30), seed=0)
    path = tmp_path / "ck-{epoch}.npz"
    h = trainer.fit(X, y, epochs=20, batch_size=8, callbacks=[cgrad.TerminateOnNaN(),
                                                             cgrad.ModelCheckpoint(path, monitor="loss")],
                    verbose=0)
    assert len(h.epoch) < 20
    assert (tmp_path / "ck-1.npz").exists()


def test_fit_prints_progress_lines(capsys):
    X, y = data.xor(n=64, seed=0)
    model = nn.MLP([2, 4, 2])
    cgrad.Trainer(model, "cross_entropy", cgrad.optim.Adam(model.parameters())).fit(X, y, epochs=2)
    out = capsys.readouterr().out
    assert "epoch 1/2: loss" in out and "us/step" in out


# ---------------------------------------------------------------- save / load

def test_save_load_round_trip(tmp_path):
    model = nn.MLP([3, 5, 2])
    cgrad.save(model.state_dict(), tmp_path / "m.npz")
    loaded = cgrad.load(tmp_path / "m.npz")
    assert list(loaded) == [n for n, _ in model.named_parameters()]
    other = nn.MLP([3, 5, 2])
    other.load_state_dict(loaded)
    for a, b in zip(model.parameters(), other.parameters()):
        np.testing.assert_array_equal(a.numpy(), b.numpy())
    t = cgrad.tensor(np.arange(6.0).reshape(2, 3))
    cgrad.save(t, tmp_path / "t.npz")
    np.testing.assert_array_equal(cgrad.load(tmp_path / "t.npz").numpy(), t.numpy())
    assert cgrad.load(tmp_path / "t.npz").dtype == np.float64
    cgrad.save({"ids": cgrad.tensor([3, 1]), "mask": cgrad.tensor([True, False])}, tmp_path / "i.npz")
    ints = cgrad.load(tmp_path / "i.npz")
    assert ints["ids"].dtype == np.int64 and ints["ids"].tolist() == [3, 1]
    assert ints["mask"].dtype == np.bool_ and ints["mask"].tolist() == [True, False]


def test_save_any_key_names(tmp_path):
    state = {"file": np.ones(2), "allow_pickle": np.zeros(1), "a/b.c": np.arange(3.0)}
    cgrad.save(state, tmp_path / "k.npz")
    loaded = cgrad.load(tmp_path / "k.npz")
    assert set(loaded) == set(state)
    np.testing.assert_array_equal(loaded["a/b.c"].numpy(), [0, 1, 2])


def test_load_rejects_bad_files(tmp_path):
    cgrad.save({"w": np.ones(3)}, tmp_path / "ok.npz")
    raw = (tmp_path / "ok.npz").read_bytes()
    (tmp_path / "trunc.npz").write_bytes(raw[: len(raw) // 2])
    with pytest.raises(ValueError, match="truncated or corrupted"):
        cgrad.load(tmp_path / "trunc.npz")
    np.savez(tmp_path / "foreign.npz", w=np.ones(3))
    with pytest.raises(ValueError, match="not a cgrad file"):
        cgrad.load(tmp_path / "foreign.npz")
    np.save(tmp_path / "obj.npy", np.array([{"a": 1}], dtype=object), allow_pickle=True)
    os.replace(tmp_path / "obj.npy", tmp_path / "obj.npz")
    with pytest.raises(ValueError):
        cgrad.load(tmp_path / "obj.npz")
    (tmp_path / "junk.npz").write_bytes(b"not a zip at all")
    with pytest.raises(ValueError):
        cgrad.load(tmp_path / "junk.npz")
    with pytest.raises(TypeError, match="dtype object"):
        cgrad.save({"w": np.array([object()])}, tmp_path / "x.npz")


def test_interrupted_save_keeps_previous_file(tmp_path, monkeypatch):
    path = tmp_path / "m.npz"
    cgrad.save({"w": np.ones(3)}, path)

    def boom(*a, **k):
        raise KeyboardInterrupt
    monkeypatch.setattr(np.lib.format, "write_array", boom)
    with pytest.raises(KeyboardInterrupt):
        cgrad.save({"w": np.zeros(3)}, path)
    monkeypatch.undo()
    np.testing.assert_array_equal(cgrad.load(path)["w"].numpy(), np.ones(3))
    assert [p.name for p in tmp_path.iterdir()] == ["m.npz"]


# ---------------------------------------------------------------- estimators

def test_mlp_classifier_fits_and_scores():
    X, y = data.moons(n=300, noise=0.1, seed=0)
    labels = np.array(["a", "b"])[y]
    clf = cgrad.MLPClassifier(hidden_layer_sizes=(32,), max_iter=150, random_state=0,
                              learning_rate_init=0.01)
    clf.fit(X, labels)
    assert clf.score(X, labels) >= 0.95
    proba = clf.predict_proba(X)
    np.testing.assert_allclose(proba.sum(axis=1), 1, rtol=1e-5)
    assert set(clf.predict(X)) <= {"a", "b"}
    assert clf.get_params()["hidden_layer_sizes"] == (32,)
    clf.set_params(alpha=0.1)
    assert clf.alpha == 0.1
    with pytest.raises(ValueError, match="Invalid parameter"):
        clf.set_params(foo=1)


def test_mlp_regressor_fits():
    rng = np.random.default_rng(0)
    X = rng.uniform(-1, 1, (300, 2)).astype(np.float32)
    y = np.sin(2 * X[:, 0]) + X[:, 1] ** 2
    reg = cgrad.MLPRegressor(hidden_layer_sizes=(32, 32), max_iter=200, random_state=0,
                             learning_rate_init=0.01, early_stopping=True)
    reg.fit(X, y)
    assert reg.score(X, y) > 0.9
    assert reg.predict(X).shape == (300,)


def test_estimators_with_sklearn_clone():
    sklearn_base = pytest.importorskip("sklearn.base")
    clf = cgrad.MLPClassifier(hidden_layer_sizes=(8,), alpha=0.01)
    c2 = sklearn_base.clone(clf)
    assert c2.get_params() == clf.get_params() and c2 is not clf


def test_estimator_not_fitted():
    with pytest.raises(RuntimeError, match="not fitted"):
        cgrad.MLPClassifier().predict(np.zeros((1, 2)))


# ---------------------------------------------------------------- the command line

def _run_cli(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "cgrad", *args], capture_output=True, text=True,
                          timeout=300, cwd=cwd)


def test_cli_train_end_to_end(tmp_path):
    out = _run_cli("train", "--epochs", "3", "--save", str(tmp_path / "m.npz"), cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert "epoch 3/3" in out.stdout and "test accuracy" in out.stdout and "us per step" in out.stdout
    assert set(cgrad.load(tmp_path / "m.npz")) == {"0.weight", "0.bias", "2.weight", "2.bias"}


def test_cli_help_and_example(tmp_path):
    out = _run_cli("--help", cwd=tmp_path)
    assert out.returncode == 0 and "train" in out.stdout
    out = _run_cli("train", "--help", cwd=tmp_path)
    assert "--dataset" in out.stdout and "--save" in out.stdout
    out = _run_cli("example", cwd=tmp_path)
    assert "0.73" in out.stdout


def test_cli_is_deterministic(tmp_path):
    a = _run_cli("train", "--dataset", "spirals", "--epochs", "3", "--quiet", cwd=tmp_path)
    b = _run_cli("train", "--dataset", "spirals", "--epochs", "3", "--quiet", cwd=tmp_path)
    assert a.returncode == 0, a.stderr
    strip = lambda s: [l for l in s.splitlines() if "us per step" not in l]  # noqa: E731
    assert strip(a.stdout) == strip(b.stdout)


def test_load_rejects_oversized_files(tmp_path):
    cgrad.save({"w": np.ones(1000)}, tmp_path / "big.npz")
    with pytest.raises(ValueError, match="more than max_bytes=100"):
        cgrad.load(tmp_path / "big.npz", max_bytes=100)
    assert cgrad.load(tmp_path / "big.npz", max_bytes=8000)["w"].shape == (1000,)


def test_cli_profile(tmp_path):
    out = _run_cli("profile", "--steps", "3", "--trace", str(tmp_path / "t.json"), cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert "backward by layer" in out.stdout and "dW = X^T dZ" in out.stdout
    assert "gradient health" in out.stdout and (tmp_path / "t.json").exists()


def test_steady_state_training_makes_no_malloc_calls():
    cgrad.manual_seed(0)
    model = nn.MLP([64, 128, 64, 10])
    x = cgrad.tensor(np.random.default_rng(0).random((64, 64)).astype(np.float32))
    y = np.random.default_rng(1).integers(0, 10, 64)
    opt = cgrad.optim.Adam(model.parameters(), lr=1e-3)

    def step():
        opt.zero_grad()
        nn.functional.cross_entropy(model(x), y).backward()
        opt.step()
    for _ in range(3):  # warm-up fills the core's block caches
        step()
    before = cgrad._C.fresh_alloc_count()
    for _ in range(20):
        step()
    assert cgrad._C.fresh_alloc_count() == before


def test_cli_trains_the_mnist1d_cnn(tmp_path):
    out = _run_cli("train", "--dataset", "mnist1d", "--model", "cnn", "--epochs", "2", "--replay", cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert "Conv1d(1, 25, kernel_size=(5,), stride=(2,), padding=(1,))" in out.stdout
    assert "4000 training and 1000 test examples of shape (1, 40)" in out.stdout
    acc = float(out.stdout.split("test accuracy ")[1].split(",")[0])
    assert acc > 0.4  # two epochs of the paper's recipe: far above chance (0.1)


def test_cli_trains_the_mnist1d_gru(tmp_path):
    out = _run_cli("train", "--dataset", "mnist1d", "--model", "gru", "--epochs", "2", "--replay", cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert "GRU(1, 6, batch_first=True, bidirectional=True)" in out.stdout
    assert "4000 training and 1000 test examples of shape (40,)" in out.stdout
    acc = float(out.stdout.split("test accuracy ")[1].split(",")[0])
    assert acc > 0.2  # two epochs (80 steps) of the paper's recipe: above chance (0.1)


def test_cli_trains_a_gpt_on_any_text(tmp_path):
    text = tmp_path / "tiny.txt"
    text.write_text("the quick brown fox jumps over the lazy dog. " * 200)
    out = _run_cli("train", "--model", "gpt", "--text", str(text), "--iters", "30", "--block-size", "16",
                   "--save", str(tmp_path / "gpt.npz"), cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert "9,000 characters, 28 distinct" in out.stdout
    first = float(out.stdout.split("val loss ")[1].split()[0])  # at iteration 0: about log(28) = 3.33
    final = float(out.stdout.split("\nval loss ")[1].split()[0])
    assert abs(first - np.log(28)) < 0.3 and final < first - 0.5, out.stdout
    assert "sample:" in out.stdout and "lm_head.weight" in cgrad.load(tmp_path / "gpt.npz")
    refused = _run_cli("train", "--model", "mlp", "--text", str(text), cwd=tmp_path)
    assert refused.returncode != 0 and "--text is for --model gpt" in refused.stderr


def test_cli_model_cnn_needs_an_image_or_signal_dataset(tmp_path):
    out = _run_cli("train", "--dataset", "spirals", "--model", "cnn", cwd=tmp_path)
    assert out.returncode != 0 and "--model cnn is for the digits and mnist1d" in out.stderr


def test_the_digits_cnn_beats_the_digits_mlp():
    """The convolution issue's bar, at each model's `cgrad train` defaults (the MLP [64, 128,
    10] at Adam 1e-3, the CNN at 3e-3; 30 epochs of batch 32), over two seeds."""
    from cgrad.__main__ import DEFAULTS, cnn_for
    X_tr, y_tr, X_te, y_te = cgrad.data.digits(flatten=False)
    acc: dict = {"mlp": [], "cnn": []}
    for seed in (0, 1):
        for kind in ("mlp", "cnn"):
            lr = DEFAULTS.get(("digits", kind), {}).get("lr", 1e-3)
            cgrad.manual_seed(seed)
            model = cnn_for("digits", nn) if kind == "cnn" else nn.MLP([64, 128, 10])
            X, Xt = (X_tr[:, None], X_te[:, None]) if kind == "cnn" else (X_tr.reshape(-1, 64), X_te.reshape(-1, 64))
            trainer = cgrad.Trainer(model, "cross_entropy", cgrad.optim.Adam(model.parameters(), lr=lr), seed=seed,
                                    replay=True)
            trainer.fit(X, y_tr, epochs=30, batch_size=32, verbose=0)
            acc[kind].append(trainer.evaluate(Xt, y_te)["accuracy"])
    assert np.mean(acc["cnn"]) > np.mean(acc["mlp"]), acc
