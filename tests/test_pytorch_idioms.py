"""Ordinary PyTorch idioms run on cgrad unchanged: each is run against PyTorch when it is
installed (same values, same errors) and against fixed expectations when it is not."""
import numpy as np
import pytest

import cgrad
from cgrad import nn

try:
    import torch
except ImportError:  # PyTorch is an optional oracle
    torch = None
needs_torch = pytest.mark.skipif(torch is None, reason="PyTorch not installed")
LIBS = [cgrad] + ([torch] if torch is not None else [])
IDS = ["cgrad"] + (["torch"] if torch is not None else [])


def tutorial_regression(lib, steps=5):
    """The tutorial's hand-written training loop: in-place updates under no_grad."""
    lib.manual_seed(0)
    x = lib.tensor(np.linspace(-1, 1, 8).reshape(8, 1), dtype=lib.float64)
    y = 3 * x + 0.5
    w = lib.tensor([[0.2]], dtype=lib.float64, requires_grad=True)
    b = lib.tensor([0.1], dtype=lib.float64, requires_grad=True)
    w_id = id(w)
    for _ in range(steps):
        loss = ((x @ w + b - y) ** 2).mean()
        loss.backward()
        with lib.no_grad():
            w -= 0.1 * w.grad
            b -= 0.1 * b.grad
            w.grad.zero_()
            b.grad.zero_()
    assert id(w) == w_id and w.requires_grad and w.is_leaf
    return np.array([w.item(), b.item(), loss.item()])


@pytest.mark.parametrize("lib", LIBS, ids=IDS)
def test_in_place_update_under_no_grad_keeps_the_parameter(lib):
    got = tutorial_regression(lib)
    # w, b after five steps of gradient descent on the mean squared error, by hand:
    w, b, x = 0.2, 0.1, np.linspace(-1, 1, 8)
    for _ in range(5):
        r = w * x + b - (3 * x + 0.5)
        loss = np.mean(r ** 2)
        w, b = w - 0.1 * np.mean(2 * r * x), b - 0.1 * np.mean(2 * r)
    np.testing.assert_allclose(got, [w, b, loss], rtol=1e-12)


@pytest.mark.parametrize("lib", LIBS, ids=IDS)
def test_in_place_on_a_leaf_that_requires_grad_raises(lib):
    w = lib.ones(2, requires_grad=True)
    with pytest.raises(RuntimeError, match="leaf"):
        w -= 1.0
    with pytest.raises(RuntimeError, match="leaf"):
        w.mul_(2.0)
    with lib.no_grad():
        w.mul_(3.0).sub_(1.0).div_(4.0).clamp_(max=0.4)
    np.testing.assert_allclose(w.detach().numpy(), [0.4, 0.4])


@pytest.mark.parametrize("lib", LIBS, ids=IDS)
def test_augmented_assignment_on_a_graph_value_gives_the_right_gradient(lib):
    x = lib.tensor([1.0, 2.0], requires_grad=True)
    loss = (x * x).sum()
    loss += (3 * x).sum()  # PyTorch records it in place; cgrad records it out of place
    loss.backward()
    np.testing.assert_allclose(x.grad.numpy(), [5.0, 7.0])


def test_in_place_methods_on_graph_values_and_shape_changes_are_refused():
    x = cgrad.tensor([1.0, 2.0], requires_grad=True)
    y = x * 2
    with pytest.raises(RuntimeError, match="not recorded.*x = x - y"):
        y.sub_(1.0)
    z = cgrad.zeros(2)
    with pytest.raises(RuntimeError, match=r"shape \(2, 2\).*\(2,\)"):
        z += cgrad.ones(2, 2)
    z += 1  # in place, outside any graph
    z *= cgrad.tensor([2.0, 3.0])
    np.testing.assert_array_equal(z.numpy(), [2.0, 3.0])


def test_in_place_change_of_a_saved_value_is_caught_by_backward():
    x = cgrad.tensor([1.0, 2.0], requires_grad=True)
    h = x * 1.0
    y = (h * h).sum()  # mul saves h
    with cgrad.no_grad():
        h += 1.0
    with pytest.raises(RuntimeError, match="modified in place"):
        y.backward()


@pytest.mark.parametrize("lib", LIBS, ids=IDS)
def test_the_device_idiom_picks_the_cpu(lib):
    device = lib.device("cuda" if lib.cuda.is_available() else "cpu")
    assert str(device) == "cpu" and device == lib.device("cpu")
    assert not lib.backends.mps.is_available()
    model = nn.Linear(3, 2) if lib is cgrad else torch.nn.Linear(3, 2)
    assert model.to(device) is model
    x = lib.randn(4, 3, device=device)
    assert x.to(device).device == device and x.cpu().device.type == "cpu"
    assert lib.zeros(2, device="cpu").device.type == "cpu"
    assert lib.tensor([1.0], device=device).to("cpu", lib.float64).dtype == lib.float64


def test_asking_for_a_gpu_says_cgrad_runs_on_the_cpu():
    for make in (lambda: cgrad.device("cuda"), lambda: cgrad.zeros(2, device="cuda:0"),
                 lambda: cgrad.ones(2).to("mps"), lambda: cgrad.ones(2).cuda(),
                 lambda: nn.Linear(2, 2).to("cuda")):
        with pytest.raises(RuntimeError, match="CPU only"):
            make()
    assert cgrad.cuda.device_count() == 0


@pytest.mark.parametrize("lib", LIBS, ids=IDS)
def test_module_to_dtype_converts_the_parameters(lib):
    model = (nn.Linear(3, 2) if lib is cgrad else torch.nn.Linear(3, 2)).double()
    assert all(p.dtype == lib.float64 and p.requires_grad for p in model.parameters())
    assert model(lib.ones(1, 3, dtype=lib.float64)).dtype == lib.float64
    assert model.to(lib.float32).weight.dtype == lib.float32


@pytest.mark.parametrize("lib", LIBS, ids=IDS)
def test_formatting_a_loss_and_sizes(lib):
    loss = lib.tensor([0.5, 0.25]).mean()
    assert f"{loss:.4f}" == "0.3750" and f"{loss}" == "0.375"  # the number, not the repr
    t = lib.zeros(2, 3)
    assert t.nelement() == t.numel() == 6 and t.dim() == 2
    with pytest.raises(TypeError):
        f"{t:.2f}"  # only a 0-dim tensor formats as a number


@pytest.mark.parametrize("lib", LIBS, ids=IDS)
def test_creation_functions(lib):
    np.testing.assert_allclose(lib.linspace(0, 1, 5).numpy(), [0, 0.25, 0.5, 0.75, 1])
    np.testing.assert_allclose(lib.logspace(0, 2, 3).numpy(), [1, 10, 100], rtol=1e-6)
    np.testing.assert_array_equal(lib.eye(2, 3).numpy(), np.eye(2, 3))
    t = lib.ones(2, 3, dtype=lib.float64)
    for like, value in ((lib.full_like(t, 7.0), 7.0), (lib.zeros_like(t), 0.0), (lib.ones_like(t), 1.0)):
        assert like.shape == t.shape and like.dtype == lib.float64
        np.testing.assert_array_equal(like.numpy(), np.full((2, 3), value))
    for like in (lib.empty_like(t), lib.rand_like(t), lib.randn_like(t), lib.empty(2, 3, dtype=lib.float64)):
        assert like.shape == t.shape and like.dtype == lib.float64
    assert lib.float is lib.float32 and lib.double is lib.float64


@pytest.mark.parametrize("lib", LIBS, ids=IDS)
def test_inference_mode(lib):
    w = lib.ones(2, requires_grad=True)
    with lib.inference_mode():
        assert not (w * 2).requires_grad
    with lib.inference_mode(False):
        assert (w * 2).requires_grad

    @lib.inference_mode()
    def predict(x):
        return x * w

    assert not predict(lib.ones(2)).requires_grad


def _nn(lib):
    return nn if lib is cgrad else torch.nn


class _Net:
    """The same little model in either library: containers, a buffer, apply."""

    @staticmethod
    def make(lib):
        L = _nn(lib)

        class Net(L.Module):
            def __init__(self):
                super().__init__()
                self.blocks = L.ModuleList([L.Linear(4, 4) for _ in range(2)])
                self.blocks.append(L.Linear(4, 3))
                self.heads = L.ModuleDict({"a": L.Linear(3, 1), "b": L.Linear(3, 2)})
                self.scales = L.ParameterList([L.Parameter(lib.ones(3)) for _ in range(2)])
                self.register_buffer("running", lib.zeros(3))
                self.register_buffer("scratch", lib.zeros(2), persistent=False)

            def forward(self, x):
                for block in self.blocks:
                    x = block(x).tanh()
                x = x * self.scales[0] * self.scales[1]
                return self.heads["a"](x) + self.heads["b"](x).sum(1, keepdim=True)

        return Net()


@pytest.mark.parametrize("lib", LIBS, ids=IDS)
def test_containers_buffers_and_apply(lib):
    model = _Net.make(lib)
    names = [n for n, _ in model.named_parameters()]
    assert names[:2] == ["blocks.0.weight", "blocks.0.bias"] and "scales.1" in names and len(names) == 12
    assert sum(p.numel() for p in model.parameters()) == 2 * 20 + 15 + 4 + 8 + 6
    keys = list(model.state_dict())
    assert "running" in keys and "scratch" not in keys and len(keys) == 13
    assert [n for n, _ in model.named_children()] == ["blocks", "heads", "scales"]
    assert len(model.blocks) == 3 and len(model.heads) == 2 and "a" in model.heads
    seen = []
    model.apply(lambda m: seen.append(type(m).__name__))
    assert seen[-1] == "Net" and seen.count("Linear") == 5
    model.requires_grad_(False)
    assert not any(p.requires_grad for p in model.parameters())
    model.double()
    assert model.running.dtype == lib.float64 and model.blocks[0].weight.dtype == lib.float64
    out = model(lib.ones(2, 4, dtype=lib.float64))
    assert tuple(out.shape) == (2, 1)


def test_buffers_load_and_follow_assignment():
    a, b = _Net.make(cgrad), _Net.make(cgrad)
    a.running = cgrad.tensor([1.0, 2.0, 3.0])  # a registered buffer takes its new value
    b.load_state_dict(a.state_dict())
    np.testing.assert_array_equal(b.running.numpy(), [1.0, 2.0, 3.0])
    with pytest.raises(TypeError, match="register_buffer"):
        a.register_buffer("bad", np.zeros(2))
    with pytest.raises(TypeError, match="not a Module"):
        a.blocks.append(cgrad.zeros(2))
    del a.blocks[0]
    assert [n for n, _ in a.blocks.named_children()] == ["0", "1"]


@pytest.mark.parametrize("lib", LIBS, ids=IDS)
def test_init_functions_follow_pytorch_formulas(lib):
    init = _nn(lib).init
    lib.manual_seed(0)
    w = lib.empty(300, 200, dtype=lib.float64)
    bound = np.sqrt(6 / 500)
    assert np.abs(init.xavier_uniform_(w).numpy()).max() <= bound
    assert abs(w.numpy().std() - bound / np.sqrt(3)) < 0.02 * bound
    assert abs(init.xavier_normal_(w, gain=2.0).numpy().std() - 2 * np.sqrt(2 / 500)) < 0.02
    init.kaiming_uniform_(w, a=np.sqrt(5))  # nn.Linear's own initialisation: bound 1/sqrt(fan_in)
    assert np.abs(w.numpy()).max() <= 1 / np.sqrt(200) + 1e-12
    std = init.kaiming_normal_(w, mode="fan_out", nonlinearity="relu").numpy().std()
    assert abs(std - np.sqrt(2 / 300)) < 0.02 * np.sqrt(2 / 300)
    assert init.calculate_gain("tanh") == pytest.approx(5 / 3)
    assert init.calculate_gain("leaky_relu", 0.2) == pytest.approx(np.sqrt(2 / 1.04))
    np.testing.assert_array_equal(init.constant_(w, 0.5).numpy(), 0.5)
    assert init.zeros_(w).numpy().max() == 0 and init.ones_(w).numpy().min() == 1
    u = init.uniform_(lib.empty(1000, dtype=lib.float64), -2.0, -1.0).numpy()
    assert u.min() >= -2 and u.max() < -1
    assert abs(init.normal_(lib.empty(4000, dtype=lib.float64), 3.0, 0.5).numpy().mean() - 3) < 0.05


@needs_torch
def test_init_gains_match_pytorch():
    for name, param in [("linear", None), ("sigmoid", None), ("tanh", None), ("relu", None),
                        ("leaky_relu", None), ("leaky_relu", 0.3), ("selu", None)]:
        assert nn.init.calculate_gain(name, param) == pytest.approx(torch.nn.init.calculate_gain(name, param))


def _data(lib):
    return cgrad.utils.data if lib is cgrad else torch.utils.data


@pytest.mark.parametrize("lib", LIBS, ids=IDS)
def test_tensor_dataset_and_loader(lib):
    D = _data(lib)
    X = lib.tensor(np.arange(20, dtype=np.float32).reshape(10, 2))
    y = lib.tensor(np.arange(10, dtype=np.float32))
    ds = D.TensorDataset(X, y)
    assert len(ds) == 10 and float(ds[3][1]) == 3.0
    batches = list(D.DataLoader(ds, batch_size=4))
    assert [tuple(b[0].shape) for b in batches] == [(4, 2), (4, 2), (2, 2)]
    np.testing.assert_array_equal(batches[1][1].numpy(), [4, 5, 6, 7])
    assert len(D.DataLoader(ds, batch_size=4, drop_last=True)) == 2
    seen = np.concatenate([b[1].numpy() for b in D.DataLoader(ds, batch_size=3, shuffle=True)])
    assert sorted(seen) == list(range(10)) and list(seen) != list(range(10))


def test_a_seeded_generator_repeats_the_order_and_splits():
    D = cgrad.utils.data
    ds = D.TensorDataset(cgrad.arange(12))
    orders = [[float(v) for b in D.DataLoader(ds, batch_size=5, shuffle=True,
                                               generator=cgrad.Generator().manual_seed(7)) for v in b[0]]
              for _ in range(2)]
    assert orders[0] == orders[1] and sorted(orders[0]) == list(range(12))
    a, b = D.random_split(ds, [0.75, 0.25], generator=cgrad.Generator().manual_seed(1))
    assert len(a) == 9 and len(b) == 3 and set(a.indices).isdisjoint(b.indices)
    with pytest.raises(ValueError, match="add up"):
        D.random_split(ds, [5, 5])


@pytest.mark.parametrize("lib", LIBS, ids=IDS)
def test_a_map_style_dataset_is_collated(lib):
    D = _data(lib)

    class Squares(D.Dataset):
        def __len__(self):
            return 5

        def __getitem__(self, i):
            return {"x": lib.tensor([float(i), 1.0]), "y": i * i}

    batch = next(iter(D.DataLoader(Squares(), batch_size=3)))
    np.testing.assert_array_equal(batch["x"].numpy(), [[0, 1], [1, 1], [2, 1]])
    np.testing.assert_array_equal(batch["y"].numpy(), [0, 1, 4])
    custom = D.DataLoader(Squares(), batch_size=2, collate_fn=lambda s: len(s))
    assert list(custom) == [2, 2, 1]


def test_training_from_a_tensor_dataset():
    D = cgrad.utils.data
    X, y = cgrad.data.blobs(n=200, seed=0)
    cgrad.manual_seed(0)
    loader = D.DataLoader(D.TensorDataset(cgrad.tensor(X), cgrad.tensor(y)), batch_size=32, shuffle=True)
    model = nn.MLP([X.shape[1], 16, int(y.max()) + 1])
    opt = cgrad.optim.Adam(model.parameters(), lr=1e-2)
    for _ in range(20):
        for xb, yb in loader:
            opt.zero_grad()
            nn.functional.cross_entropy(model(xb), yb).backward()
            opt.step()
    with cgrad.no_grad():
        acc = (model(cgrad.tensor(X)).numpy().argmax(1) == y).mean()
    assert acc > 0.9


def test_load_accepts_pytorchs_keywords(tmp_path):
    model = nn.Linear(2, 2)
    cgrad.save(model.state_dict(), tmp_path / "m.npz")
    state = cgrad.load(tmp_path / "m.npz", map_location="cpu", weights_only=True)
    np.testing.assert_array_equal(state["weight"].numpy(), model.weight.numpy())
    assert cgrad.load(tmp_path / "m.npz", map_location=cgrad.device("cpu"))["bias"].shape == (2,)
    with pytest.raises(RuntimeError, match="CPU only"):
        cgrad.load(tmp_path / "m.npz", map_location="cuda:0")
