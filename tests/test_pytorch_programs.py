"""Whole PyTorch programs for small networks, as tutorials and courses write them, run on
cgrad with only the import changed (`import cgrad as torch`). Each program's source is
one string executed with `torch` bound to cgrad, and to PyTorch when it is installed; the
checks are on what the program reports (its loss falls, its accuracy, shapes), and where
both libraries run from the same initial weights the results must agree."""
import textwrap

import numpy as np
import pytest

import cgrad

try:
    import torch as real_torch
except ImportError:  # PyTorch is an optional oracle
    real_torch = None
LIBS = [cgrad] + ([real_torch] if real_torch is not None else [])
IDS = ["cgrad"] + (["torch"] if real_torch is not None else [])


def run(source: str, lib, **inputs) -> dict:
    """Execute a program with `torch` (and nn, F, optim, data) coming from lib."""
    scope = {"torch": lib, "nn": lib.nn, "F": lib.nn.functional, "optim": lib.optim,
             "DataLoader": lib.utils.data.DataLoader, "TensorDataset": lib.utils.data.TensorDataset,
             "np": np, **inputs}
    exec(compile(textwrap.dedent(source), "<program>", "exec"), scope)
    return scope


def _blobs(n=240, seed=0):
    rng = np.random.default_rng(seed)
    centres = np.array([[2.0, 0.0], [-1.0, 1.7], [-1.0, -1.7]])
    y = rng.integers(0, 3, n)
    x = centres[y] + 0.6 * rng.normal(size=(n, 2))
    return x.astype(np.float32), y


CLASSIFIER = """
device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
torch.manual_seed(0)

class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc1 = nn.Linear(2, 32)
        self.fc2 = nn.Linear(32, 3)

    def forward(self, x):
        return self.fc2(F.relu(self.fc1(x)))

model = Net().to(device)
with torch.no_grad():  # the same start on either library
    for p, w in zip(model.parameters(), weights):
        p.copy_(torch.tensor(w))
X, Y = torch.tensor(x_np), torch.tensor(y_np)
loader = DataLoader(TensorDataset(X, Y), batch_size=32, shuffle=False)
criterion = nn.CrossEntropyLoss()
optimizer = optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
log = []
for epoch in range(5):
    model.train()
    running = 0.0
    for xb, yb in loader:
        xb, yb = xb.to(device), yb.to(device)
        optimizer.zero_grad()
        loss = criterion(model(xb), yb)
        loss.backward()
        optimizer.step()
        running += loss.item() * xb.size(0)
    log.append(f"epoch {epoch}: loss {running / len(loader.dataset):.4f}")
model.eval()
with torch.no_grad():
    pred = model(X).argmax(dim=1)
    accuracy = (pred == Y).float().mean().item()
    correct = (pred == Y).sum().item()
"""


@pytest.mark.parametrize("lib", LIBS, ids=IDS)
def test_a_classifier_tutorial(lib):
    x, y = _blobs()
    rng = np.random.default_rng(1)
    weights = [rng.uniform(-0.5, 0.5, s).astype(np.float32) for s in [(32, 2), (32,), (3, 32), (3,)]]
    out = run(CLASSIFIER, lib, x_np=x, y_np=y, weights=weights)
    first, last = (float(line.split()[-1]) for line in (out["log"][0], out["log"][-1]))
    assert last < 0.5 * first and out["accuracy"] > 0.95
    assert out["correct"] == round(out["accuracy"] * len(y)) and isinstance(out["correct"], int)


@pytest.mark.skipif(real_torch is None, reason="PyTorch not installed")
def test_the_classifier_agrees_with_pytorch():
    x, y = _blobs()
    rng = np.random.default_rng(1)
    weights = [rng.uniform(-0.5, 0.5, s).astype(np.float32) for s in [(32, 2), (32,), (3, 32), (3,)]]
    ours, theirs = (run(CLASSIFIER, lib, x_np=x, y_np=y, weights=weights) for lib in (cgrad, real_torch))
    np.testing.assert_allclose([float(s.split()[-1]) for s in ours["log"]],
                               [float(s.split()[-1]) for s in theirs["log"]], rtol=2e-4)
    assert ours["correct"] == theirs["correct"]


MAKEMORE = """
words = ["emma", "olivia", "ava", "isabella", "sophia", "mia", "amelia", "harper", "evelyn", "abigail"]
chars = sorted(set("".join(words)))
stoi = {s: i + 1 for i, s in enumerate(chars)}
stoi["."] = 0
itos = {i: s for s, i in stoi.items()}
block_size = 3

def build(words):
    X, Y = [], []
    for w in words:
        context = [0] * block_size
        for ch in w + ".":
            ix = stoi[ch]
            X.append(context)
            Y.append(ix)
            context = context[1:] + [ix]
    return torch.tensor(X), torch.tensor(Y)

Xtr, Ytr = build(words)
g = torch.Generator().manual_seed(2147483647)
vocab = len(stoi)
C = torch.randn((vocab, 10), generator=g)
W1 = torch.randn((30, 64), generator=g) * 0.2
b1 = torch.randn(64, generator=g) * 0.01
W2 = torch.randn((64, vocab), generator=g) * 0.01
b2 = torch.zeros(vocab)
parameters = [C, W1, b1, W2, b2]
for p in parameters:
    p.requires_grad = True
n_params = sum(p.nelement() for p in parameters)
lossi = []
for i in range(300):
    ix = torch.randint(0, Xtr.shape[0], (32,), generator=g)
    emb = C[Xtr[ix]]
    h = torch.tanh(emb.view(-1, 30) @ W1 + b1)
    logits = h @ W2 + b2
    loss = F.cross_entropy(logits, Ytr[ix])
    for p in parameters:
        p.grad = None
    loss.backward()
    lr = 0.1 if i < 200 else 0.01
    for p in parameters:
        p.data += -lr * p.grad
    lossi.append(loss.log10().item())
with torch.no_grad():
    emb = C[Xtr]
    h = torch.tanh(emb.view(emb.shape[0], -1) @ W1 + b1)
    full_loss = F.cross_entropy(h @ W2 + b2, Ytr).item()
names = []
for _ in range(5):
    out, context = [], [0] * block_size
    while True:
        emb = C[torch.tensor([context])]
        h = torch.tanh(emb.view(1, -1) @ W1 + b1)
        probs = F.softmax(h @ W2 + b2, dim=1)
        ix = torch.multinomial(probs, num_samples=1, generator=g).item()
        context = context[1:] + [ix]
        if ix == 0 or len(out) > 20:
            break
        out.append(itos[ix])
    names.append("".join(out))
"""


@pytest.mark.parametrize("lib", LIBS, ids=IDS)
def test_the_makemore_mlp(lib):
    out = run(MAKEMORE, lib)
    assert out["n_params"] == out["vocab"] * 10 + 30 * 64 + 64 + 64 * out["vocab"] + out["vocab"]
    # from log(vocab) = 2.83 at the start to well below it on this tiny word list
    assert 10 ** out["lossi"][0] > 2.0 and out["full_loss"] < 1.6
    assert len(out["names"]) == 5 and all(isinstance(n, str) for n in out["names"])


REGRESSION = """
torch.manual_seed(0)
x = torch.linspace(-1, 1, 64).unsqueeze(1)
y = torch.sin(3 * x) + 0.1 * torch.randn(x.size())
model = nn.Sequential(nn.Linear(1, 32), nn.Tanh(), nn.Linear(32, 1))
for m in model.modules():
    if isinstance(m, nn.Linear):
        nn.init.xavier_uniform_(m.weight)
        nn.init.zeros_(m.bias)
decay, no_decay = [], []
for name, p in model.named_parameters():
    (no_decay if name.endswith("bias") else decay).append(p)
optimizer = optim.AdamW([{"params": decay, "weight_decay": 1e-2},
                         {"params": no_decay, "weight_decay": 0.0}], lr=3e-2)
scheduler = optim.lr_scheduler.StepLR(optimizer, step_size=100, gamma=0.5)
for step in range(300):
    loss = F.mse_loss(model(x), y)
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()
    scheduler.step()
    if step == 0:
        first = loss.item()
final = loss.item()
lrs = [group["lr"] for group in optimizer.param_groups]
state = {k: v.clone() for k, v in model.state_dict().items()}
"""


@pytest.mark.parametrize("lib", LIBS, ids=IDS)
def test_a_regression_with_parameter_groups_and_a_schedule(lib):
    out = run(REGRESSION, lib)
    assert out["final"] < 0.1 * out["first"] and out["final"] < 0.05
    np.testing.assert_allclose(out["lrs"], [3e-2 / 8] * 2)
    assert sorted(out["state"]) == ["0.bias", "0.weight", "2.bias", "2.weight"]


CUSTOM_FUNCTION = """
class Square(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        return x * x

    @staticmethod
    def backward(ctx, grad_output):
        (x,) = ctx.saved_tensors
        return 2 * x * grad_output

x = torch.tensor([1.0, -2.0, 3.0], requires_grad=True)
seen = []
h = x.register_hook(lambda g: seen.append(g.clone()))
y = Square.apply(x).sum() + x.sum()
(gx,) = torch.autograd.grad(y, [x], retain_graph=True)
y.backward()
h.remove()
"""


@pytest.mark.parametrize("lib", LIBS, ids=IDS)
def test_a_custom_function_a_hook_and_autograd_grad(lib):
    out = run(CUSTOM_FUNCTION, lib)
    assert out["gx"].tolist() == [3.0, -3.0, 7.0] and out["x"].grad.tolist() == [3.0, -3.0, 7.0]
    assert [g.tolist() for g in out["seen"]][-1] == [3.0, -3.0, 7.0]
