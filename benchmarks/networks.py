"""The benchmark networks and one training step for each framework, written the way a user
of that framework would write it.

One step = forward + loss + backward + SGD update (lr 0.01), float32. Every framework starts
from the same weights (PyTorch's default Linear initialisation) and the same batch. Each
maker returns (step, sync), as benchmarks/_steps.py describes: step() runs one training step
and returns its loss unread (a tensor, JAX's device array), sync(loss) reads it as a Python
float (JAX: after waiting for it); the timing loop syncs once per repeat, as a training
loop that logs now and then does. MLPWorkload puts a network in _steps' workload shape.
"""
from __future__ import annotations

LR = 0.01

# name, layer sizes, activation, loss, batch
NETWORKS = [
    ("2-16-16-1 tanh MSE b32", [2, 16, 16, 1], "tanh", "mse", 32),
    ("64-128-64-10 relu CE b64", [64, 128, 64, 10], "relu", "ce", 64),
    ("784-256-256-10 relu CE b128", [784, 256, 256, 10], "relu", "ce", 128),
    ("32-(32x16)-10 relu CE b16", [32] + [32] * 16 + [10], "relu", "ce", 16),
    ("1024-2048-2048-10 relu CE b256", [1024, 2048, 2048, 10], "relu", "ce", 256),
]


# issue 17's one-thread targets, printed beside the rows (never asserted):
# network name -> [(framework, "us" for an absolute step time or a peer's key, bound)]
TARGETS = {
    "2-16-16-1 tanh MSE b32": [("cgrad-replay", "us", 4.0)],
    "32-(32x16)-10 relu CE b16": [("cgrad-replay", "us", 25.0)],
    "64-128-64-10 relu CE b64": [("cgrad-replay", "jax", 0.6), ("cgrad", "jax", 0.8)],
}


def gemm_flops(sizes, batch) -> int:
    """Floating-point operations of the step's matrix products: forward x W^T, backward
    dW = dZ^T x for every layer, dX = dZ W for every layer but the first (no framework
    computes the input's gradient)."""
    per_layer = [2 * batch * a * b for a, b in zip(sizes[:-1], sizes[1:])]
    return 2 * sum(per_layer) + sum(per_layer[1:])


def gemm_floor(sizes, batch, weights):
    """The step's matrix products and nothing else, through cgrad's BLAS: the same M, N, K
    as gemm_flops counts (forward x W^T + b through linear itself; dW and dX from operands
    laid out beforehand). A step cannot be faster than this at this BLAS's speed, so
    floor / peer is the best ratio any framework built on it could reach in that run.
    Returns (step, sync) like the frameworks' makers, its "loss" 0.0."""
    import numpy as np
    import cgrad
    from cgrad.nn.functional import linear
    rng = np.random.default_rng(1)
    f32 = lambda *shape: cgrad.tensor(rng.standard_normal(shape), dtype="float32")  # noqa: E731
    layers = []
    for i, (w, b) in enumerate(weights):
        out_f, in_f = w.shape
        layers.append((f32(batch, in_f), cgrad.tensor(w), cgrad.tensor(b),  # forward operands
                       f32(batch, out_f), f32(out_f, batch), i > 0))      # dZ, dZ^T, wants dX

    def run():
        with cgrad.no_grad():
            for x, w, b, dz, dzt, wants_dx in layers:
                linear(x, w, b)
                dzt @ x                    # dW = dZ^T x
                if wants_dx:
                    dz @ w                 # dX = dZ W
        return 0.0
    return run, float


def make_data(sizes, loss, batch, seed=0):
    import numpy as np
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((batch, sizes[0])).astype(np.float32)
    if loss == "mse":
        y = rng.standard_normal((batch, sizes[-1])).astype(np.float32)
    else:
        y = rng.integers(0, sizes[-1], batch).astype(np.int64)
    return X, y


def init_weights(sizes, seed=0):
    """PyTorch's default Linear init, W [out, in] and b uniform in +-1/sqrt(in)."""
    import numpy as np
    rng = np.random.default_rng(seed)
    out = []
    for a, b in zip(sizes[:-1], sizes[1:]):
        bound = 1 / np.sqrt(a)
        out.append((rng.uniform(-bound, bound, (b, a)).astype(np.float32),
                    rng.uniform(-bound, bound, b).astype(np.float32)))
    return out


def _cgrad_model(sizes, act, loss, weights):
    import cgrad
    from cgrad import nn
    model = nn.MLP(sizes, activation=act)
    model.load_state_dict({f"{2 * i}.{k}": v for i, (w, b) in enumerate(weights)
                           for k, v in (("weight", w), ("bias", b))})
    opt = cgrad.optim.SGD(model.parameters(), lr=LR)
    lossfn = nn.functional.mse_loss if loss == "mse" else nn.functional.cross_entropy
    return model, opt, lossfn


def _train_step(model, opt, lossfn):
    """The training step as its user writes it: the same code in cgrad and PyTorch."""
    def step(xb, yb):
        opt.zero_grad()
        out = lossfn(model(xb), yb)
        out.backward()
        opt.step()
        return out
    return step


def _item(loss) -> float:
    return loss.item()


def cgrad_step(sizes, act, loss, X, y, weights):
    import cgrad
    step = _train_step(*_cgrad_model(sizes, act, loss, weights))
    xb = cgrad.from_numpy(X)
    return (lambda: step(xb, y)), _item


def cgrad_replay_step(sizes, act, loss, X, y, weights):
    """The same step under cgrad.compile: recorded on the first call, replayed in C after."""
    import cgrad
    step = cgrad.compile(_train_step(*_cgrad_model(sizes, act, loss, weights)))
    return (lambda: step(X, y)), _item


def torch_step(sizes, act, loss, X, y, weights, compile_=False):
    """PyTorch eager, or with torch.compile over the step when compile_ is set (the first
    call compiles; benchmarks/_steps.py, try_torch_compile, reports what it does)."""
    import torch
    layers = []
    for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
        layers.append(torch.nn.Linear(a, b))
        if i < len(sizes) - 2:
            layers.append(torch.nn.Tanh() if act == "tanh" else torch.nn.ReLU())
    model = torch.nn.Sequential(*layers)
    with torch.no_grad():
        for layer, (w, b) in zip([m for m in model if isinstance(m, torch.nn.Linear)], weights):
            layer.weight.copy_(torch.from_numpy(w))
            layer.bias.copy_(torch.from_numpy(b))
    opt = torch.optim.SGD(model.parameters(), lr=LR)
    xb, yb = torch.from_numpy(X), torch.from_numpy(y)
    lossfn = torch.nn.functional.mse_loss if loss == "mse" else torch.nn.functional.cross_entropy
    step = _train_step(model, opt, lossfn)
    if compile_:
        step = torch.compile(step)
    return (lambda: step(xb, yb)), _item


def jax_step(sizes, act, loss, X, y, weights):
    """jax.jit over the whole step (value_and_grad and the update); parameters are threaded
    through the calls as JAX users do (benchmarks/_steps.py, jax_sgd_stepper)."""
    import jax
    import jax.numpy as jnp
    from _steps import jax_sgd_stepper

    activation = jnp.tanh if act == "tanh" else jax.nn.relu

    def loss_fn(params, x, t):
        for i, (w, b) in enumerate(params):
            x = x @ w.T + b
            if i < len(params) - 1:
                x = activation(x)
        if loss == "mse":
            return jnp.mean((x - t) ** 2)
        logp = jax.nn.log_softmax(x)
        return -jnp.mean(jnp.take_along_axis(logp, t[:, None], axis=1))

    params = [(jnp.asarray(w), jnp.asarray(b)) for w, b in weights]
    return jax_sgd_stepper(loss_fn, params, (X, y), LR)


def numpy_step(sizes, act, loss, X, y, weights):
    """Hand-written forward and backward, as a numpy user would write them."""
    import numpy as np
    Ws = [w.T.copy() for w, _ in weights]  # [in, out]
    bs = [b.copy() for _, b in weights]
    n = len(X)

    def step():
        hs, zs = [X], []
        for i, (W, b) in enumerate(zip(Ws, bs)):
            z = hs[-1] @ W + b
            zs.append(z)
            if i < len(Ws) - 1:
                hs.append(np.tanh(z) if act == "tanh" else np.maximum(z, 0))
        out = zs[-1]
        if loss == "mse":
            diff = out - y
            value = float(np.mean(diff * diff))
            dz = 2 * diff / diff.size
        else:
            m = out.max(axis=1, keepdims=True)
            e = np.exp(out - m)
            s = e.sum(axis=1, keepdims=True)
            value = float(np.mean(np.log(s[:, 0]) + m[:, 0] - out[np.arange(n), y]))
            dz = e / s
            dz[np.arange(n), y] -= 1
            dz /= n
        for i in range(len(Ws) - 1, -1, -1):
            dW = hs[i].T @ dz
            db = dz.sum(axis=0)
            if i:
                dh = dz @ Ws[i].T
                dz = dh * (1 - hs[i] ** 2) if act == "tanh" else dh * (zs[i - 1] > 0)
            Ws[i] -= LR * dW
            bs[i] -= LR * db
        return value
    return step, float  # the loss is a float already


class MLPWorkload:
    """One of NETWORKS in the shape benchmarks/_steps.py measures (NAME, CHECK_STEPS,
    make_batch, init, FRAMEWORKS, torch_compile_step, gemm_flops), with the given makers
    ({key: maker(sizes, act, loss, X, y, weights) -> (step, sync)}, e.g. run.FRAMEWORKS)."""
    CHECK_STEPS = 5

    def __init__(self, net, makers):
        self.NAME, self.sizes, self.act, self.loss, self.batch = net
        self.FRAMEWORKS = {k: self._bind(make) for k, make in makers.items()}

    def _bind(self, make):
        return lambda batch, weights: make(self.sizes, self.act, self.loss, *batch, weights)

    def make_batch(self):
        return make_data(self.sizes, self.loss, self.batch)

    def init(self):
        return init_weights(self.sizes)

    def gemm_flops(self) -> int:
        return gemm_flops(self.sizes, self.batch)

    def torch_compile_step(self, batch, weights):
        return torch_step(self.sizes, self.act, self.loss, *batch, weights, compile_=True)
