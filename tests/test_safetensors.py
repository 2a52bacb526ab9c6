"""cgrad.save / cgrad.load in the safetensors format: round trips, files other writers made
(safetensors.numpy, safetensors.torch), PyTorch state dicts both ways, and the errors."""
import os
import sys

import numpy as np
import pytest

import cgrad
from cgrad import models

st_numpy = pytest.importorskip("safetensors.numpy")


def _arrays():
    rng = np.random.default_rng(0)
    return {"w": rng.standard_normal((3, 4)).astype(np.float32), "d": rng.standard_normal(5),
            "steps": np.array(7, dtype=np.int64), "ids": np.arange(6, dtype=np.int32).reshape(2, 3),
            "pixels": np.array([0, 255, 3], dtype=np.uint8), "mask": np.array([True, False])}


def test_round_trip_keeps_names_dtypes_and_values(tmp_path):
    arrays = _arrays()
    path = tmp_path / "state.safetensors"
    cgrad.save({k: cgrad.tensor(v) for k, v in arrays.items()}, path)
    out = cgrad.load(path)
    assert sorted(out) == sorted(arrays)
    for k, v in arrays.items():
        assert isinstance(out[k], cgrad.Tensor)
        assert out[k].numpy().dtype == v.dtype and out[k].shape == v.shape
        np.testing.assert_array_equal(out[k].numpy(), v)


def test_file_is_plain_safetensors(tmp_path):
    """Another reader sees the same arrays; arrays (not only tensors) can be saved."""
    arrays = _arrays()
    path = tmp_path / "state.safetensors"
    cgrad.save(arrays, path)
    theirs = st_numpy.load_file(str(path))
    assert sorted(theirs) == sorted(arrays)
    for k, v in arrays.items():
        assert theirs[k].dtype == v.dtype
        np.testing.assert_array_equal(theirs[k], v)
    with open(path, "rb") as f:
        assert f.read(8) != b"PK\x03\x04"  # not a zip (.npz) file


def test_foreign_file_loads(tmp_path):
    arrays = _arrays()
    path = tmp_path / "theirs.safetensors"
    st_numpy.save_file(arrays, str(path))
    out = cgrad.load(path)
    for k, v in arrays.items():
        np.testing.assert_array_equal(out[k].numpy(), v)


def test_a_tensor_is_stored_under_its_key(tmp_path):
    t = cgrad.tensor(np.arange(6.0).reshape(2, 3))
    path = tmp_path / "t.safetensors"
    cgrad.save(t, path)
    back = cgrad.load(path)
    assert isinstance(back, cgrad.Tensor)
    np.testing.assert_array_equal(back.numpy(), np.arange(6.0).reshape(2, 3))
    assert list(st_numpy.load_file(str(path))) == [cgrad.serialization.SAFETENSORS_TENSOR_KEY] == ["tensor"]
    # a foreign file with one entry named "tensor" is still a state dict
    st_numpy.save_file({"tensor": np.ones(2)}, str(tmp_path / "f.safetensors"))
    assert list(cgrad.load(tmp_path / "f.safetensors")) == ["tensor"]


def test_format_keyword_and_default(tmp_path):
    sd = {"a": np.ones(3, np.float32)}
    cgrad.save(sd, tmp_path / "weights.bin", format="safetensors")
    np.testing.assert_array_equal(st_numpy.load_file(str(tmp_path / "weights.bin"))["a"], sd["a"])
    np.testing.assert_array_equal(cgrad.load(tmp_path / "weights.bin", format="safetensors")["a"].numpy(), sd["a"])
    cgrad.save(sd, tmp_path / "weights.pt")  # other names keep .npz
    with open(tmp_path / "weights.pt", "rb") as f:
        assert f.read(4) == b"PK\x03\x04"
    with pytest.raises(ValueError, match="save: format must be"):
        cgrad.save(sd, tmp_path / "x.safetensors", format="onnx")
    with pytest.raises(ValueError, match="load: format must be"):
        cgrad.load(tmp_path / "x.safetensors", format="pickle")


def test_save_is_atomic(tmp_path, monkeypatch):
    path = tmp_path / "m.safetensors"
    cgrad.save({"a": np.ones(2)}, path)

    def boom(*args, **kwargs):
        raise RuntimeError("disk full")
    monkeypatch.setattr(st_numpy, "save_file", boom)
    with pytest.raises(RuntimeError, match="disk full"):
        cgrad.save({"a": np.zeros(2)}, path)
    np.testing.assert_array_equal(cgrad.load(path)["a"].numpy(), np.ones(2))
    assert os.listdir(tmp_path) == ["m.safetensors"]  # no temporary file left behind


def test_truncated_and_foreign_files_raise_value_error(tmp_path):
    path = tmp_path / "m.safetensors"
    cgrad.save({"a": np.arange(100.0)}, path)
    data = path.read_bytes()
    for i, bad in enumerate([data[:-9], data[:20], b"not a safetensors file at all", b""]):
        p = tmp_path / f"bad{i}.safetensors"
        p.write_bytes(bad)
        with pytest.raises(ValueError, match=f"load: {p}"):
            cgrad.load(p)
    cgrad.save({"a": np.ones(2)}, tmp_path / "n.npz")
    with pytest.raises(ValueError, match="n.npz"):  # an .npz file read as safetensors
        cgrad.load(tmp_path / "n.npz", format="safetensors")
    with pytest.raises(FileNotFoundError):
        cgrad.load(tmp_path / "missing.safetensors")


def test_max_bytes(tmp_path):
    path = tmp_path / "m.safetensors"
    cgrad.save({"a": np.zeros(1000)}, path)
    with pytest.raises(ValueError, match="max_bytes"):
        cgrad.load(path, max_bytes=7999)
    assert cgrad.load(path, max_bytes=8000)["a"].shape == (1000,)


def test_dtypes_cgrad_lacks(tmp_path):
    path = tmp_path / "h.safetensors"
    half = np.array([1.5, -2.0, 65504.0, 6e-8], dtype=np.float16)
    st_numpy.save_file({"half": half, "small": np.array([1, -2], dtype=np.int16)}, str(path))
    with pytest.raises(TypeError, match="'small'.*I16"):
        cgrad.load(path)
    st_numpy.save_file({"half": half}, str(path))
    out = cgrad.load(path)["half"]
    assert out.dtype == cgrad.float32
    np.testing.assert_array_equal(out.numpy(), half.astype(np.float32))  # widening is exact
    with pytest.raises(TypeError, match="'c'.*complex"):
        cgrad.save({"c": np.ones(2, np.complex64)}, path)


def test_a_dtype_numpy_lacks_too_is_a_type_error_naming_it(tmp_path):
    # float8, written by hand in the format's layout (8-byte header length, JSON, bytes):
    # refused by name, not reported as a corrupted file
    import json
    import struct
    header = json.dumps({"f8": {"dtype": "F8_E4M3", "shape": [2], "data_offsets": [0, 2]}}).encode()
    path = tmp_path / "f8.safetensors"
    path.write_bytes(struct.pack("<Q", len(header)) + header + b"\x38\x40")
    with pytest.raises(TypeError, match="'f8'.*F8_E4M3"):
        cgrad.load(path)


@pytest.mark.parametrize("suffix", [".safetensors", ".npz"])
def test_zero_dimensional_entries_keep_their_shape(tmp_path, suffix):
    path = tmp_path / ("s" + suffix)
    cgrad.save({"x": np.array(3.0), "n": 5, "t": cgrad.tensor(2.5)}, path)
    out = cgrad.load(path)
    assert {k: tuple(v.shape) for k, v in out.items()} == {"x": (), "n": (), "t": ()}
    assert out["n"].item() == 5 and out["x"].item() == 3.0


def test_bfloat16_is_widened_to_float32(tmp_path):
    torch = pytest.importorskip("torch")
    st_torch = pytest.importorskip("safetensors.torch")
    x = torch.tensor([1.0, -3.140625, 1e30, -1e-30, 0.0], dtype=torch.bfloat16)
    path = tmp_path / "bf.safetensors"
    st_torch.save_file({"x": x, "y": x.reshape(5, 1).float()}, str(path))
    out = cgrad.load(path)
    assert out["x"].dtype == cgrad.float32 and out["x"].shape == (5,)
    np.testing.assert_array_equal(out["x"].numpy(), x.float().numpy())
    np.testing.assert_array_equal(out["y"].numpy(), x.float().numpy().reshape(5, 1))


def test_missing_package_names_the_extra(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "safetensors", None)
    monkeypatch.setitem(sys.modules, "safetensors.numpy", None)
    with pytest.raises(ImportError, match=r"pip install cgrad\[safetensors\]"):
        cgrad.save({"a": np.ones(2)}, tmp_path / "m.safetensors")
    with pytest.raises(ImportError, match=r"pip install cgrad\[safetensors\]"):
        cgrad.load(tmp_path / "m.safetensors")
    cgrad.save({"a": np.ones(2)}, tmp_path / "m.npz")  # .npz needs nothing
    np.testing.assert_array_equal(cgrad.load(tmp_path / "m.npz")["a"].numpy(), np.ones(2))


# ---- PyTorch state dicts, both ways ----

def _pairs(lib):
    """name -> (model builder, an input maker) for the same architecture in cgrad and torch."""
    nn = lib.nn

    class EmbedNorm(nn.Module):
        def __init__(self):
            super().__init__()
            self.emb = nn.Embedding(11, 6)
            self.norm = nn.LayerNorm(6)
            self.head = nn.Linear(6, 3)

        def forward(self, ids):
            return self.head(self.norm(self.emb(ids)))

    class Recurrent(nn.Module):
        def __init__(self):
            super().__init__()
            self.gru = nn.GRU(3, 5, num_layers=2, batch_first=True, bidirectional=True)
            self.lstm = nn.LSTM(10, 4, batch_first=True)

        def forward(self, x):
            return self.lstm(self.gru(x)[0])[0]

    return {
        "mlp": lambda: nn.Sequential(nn.Linear(4, 8), nn.Tanh(), nn.Linear(8, 3)),
        "cnn": lambda: nn.Sequential(nn.Conv2d(2, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(), nn.MaxPool2d(2),
                                     nn.Flatten(), nn.Linear(4 * 3 * 3, 5),
                                     nn.BatchNorm1d(5)),
        "recurrent": Recurrent,
        "embed_norm": EmbedNorm,
        "transformer": lambda: nn.TransformerEncoderLayer(8, 2, dim_feedforward=16, dropout=0.0, batch_first=True),
        "gpt": lambda: models.char_gpt(lib, 13, block_size=6, n_layer=1, n_head=2, n_embd=8),
    }


def _input(name, rng):
    if name in ("embed_norm", "gpt"):
        return rng.integers(0, 11, size=(3, 5))
    shape = {"mlp": (5, 4), "cnn": (3, 2, 6, 6), "recurrent": (2, 7, 3), "transformer": (2, 5, 8)}[name]
    return rng.standard_normal(shape).astype(np.float32)


def _first(y):
    return y[0] if isinstance(y, tuple) else y


def _train_batch_norm_a_little(torch, model, x):
    """Running statistics and num_batches_tracked that are not their initial values."""
    model.train()
    with torch.no_grad():
        for _ in range(2):
            model(torch.from_numpy(x) * 3 + 1)
    model.eval()


NAMES = ["mlp", "cnn", "recurrent", "embed_norm", "transformer", "gpt"]


@pytest.mark.parametrize("name", NAMES)
def test_torch_file_loads_into_cgrad(tmp_path, name):
    torch = pytest.importorskip("torch")
    st_torch = pytest.importorskip("safetensors.torch")
    torch.manual_seed(0)
    rng = np.random.default_rng(1)
    x = _input(name, rng)
    theirs = _pairs(torch)[name]()
    if name == "cnn":
        _train_batch_norm_a_little(torch, theirs, x)
    theirs.eval()
    sd = theirs.state_dict()
    if name == "gpt":  # safetensors.torch refuses the tied (shared) weights: one copy per name
        sd = {k: v.clone() for k, v in sd.items()}
    path = tmp_path / f"{name}.safetensors"
    st_torch.save_file(sd, str(path))
    ours = _pairs(cgrad)[name]()
    ours.load_state_dict(cgrad.load(path))
    ours.eval()
    if name == "cnn":
        assert ours.state_dict()["1.num_batches_tracked"].dtype == cgrad.int64
        assert ours.state_dict()["1.num_batches_tracked"].item() == 2
    with torch.no_grad():
        expected = _first(theirs(torch.from_numpy(x))).numpy()
    got = _first(ours(cgrad.tensor(x))).numpy()
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("name", NAMES)
def test_cgrad_file_loads_into_torch(tmp_path, name):
    torch = pytest.importorskip("torch")
    st_torch = pytest.importorskip("safetensors.torch")
    cgrad.manual_seed(0)
    rng = np.random.default_rng(2)
    x = _input(name, rng)
    ours = _pairs(cgrad)[name]()
    if name == "cnn":  # non-trivial running statistics, trained in cgrad
        ours.train()
        with cgrad.no_grad():
            for _ in range(3):
                ours(cgrad.tensor(x * 3 + 1))
    ours.eval()
    path = tmp_path / f"{name}.safetensors"
    cgrad.save(ours.state_dict(), path)
    loaded = st_torch.load_file(str(path))
    theirs = _pairs(torch)[name]()
    theirs.load_state_dict(loaded)
    theirs.eval()
    if name == "cnn":
        assert loaded["1.num_batches_tracked"].dtype == torch.int64
        assert int(loaded["1.num_batches_tracked"]) == 3
    with torch.no_grad():
        expected = _first(theirs(torch.from_numpy(x))).numpy()
    got = _first(ours(cgrad.tensor(x))).numpy()
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5)


def test_tied_weights_are_saved_once_per_name(tmp_path):
    cgrad.manual_seed(0)
    gpt = models.char_gpt(cgrad, 13, block_size=6, n_layer=1, n_head=2, n_embd=8)
    assert gpt.transformer.wte.weight is gpt.lm_head.weight
    path = tmp_path / "gpt.safetensors"
    cgrad.save(gpt.state_dict(), path)
    raw = st_numpy.load_file(str(path))
    np.testing.assert_array_equal(raw["transformer.wte.weight"], raw["lm_head.weight"])
    np.testing.assert_array_equal(raw["lm_head.weight"], gpt.lm_head.weight.numpy())
