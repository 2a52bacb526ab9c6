"""The Burgers physics-informed network (PINN): one Adam step through the second derivative,
in cgrad (eager and replayed), PyTorch eager (and torch.compile, when it compiles) and JAX
jit, each written as its users write it.

    python -m benchmarks --threads 1 --networks PINN --no-digits    # this workload alone
    python benchmarks/pinn.py [--quick]                             # the same

The network is an MLP [2, 20 x 8 tanh, 1] of (x, t); the step is the Adam step (lr 1e-3,
float32) on the loss

    mean((u(x_u, t_u) - u_data)^2) + mean(f^2),   f = u_t + u u_x - (0.01/pi) u_xx

over 2,000 collocation points (x_f, t_f) and 100 boundary and initial points, with u_x, u_t
and u_xx taken by autograd: two create_graph grads, then the backward through them to the
weights. Every framework starts from the same weights and the same batch; the first-step
losses must agree (and the fifth-step ones, which also check the gradients and Adam).
Nothing here fails for being slow: the targets (cgrad eager <= 0.7x and replay <= 0.5x the
fastest peer of the same run) are printed, not asserted.
"""
from __future__ import annotations

import math
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from _steps import jax_adam_stepper  # noqa: E402
from networks import init_weights  # noqa: E402

NAME = "Burgers PINN [2, 20x8 tanh, 1] Adam, 2000 + 100 points"
SIZES = [2] + [20] * 8 + [1]
N_F, N_U = 2000, 100
NU = 0.01 / math.pi
LR = 1e-3
TARGETS = {"cgrad": 0.7, "cgrad-replay": 0.5}  # of the fastest peer, from the issue
CHECK_STEPS = 5                                # the loss of this step is compared too


def init():
    return init_weights(SIZES)


def make_batch(seed=0):
    """Collocation points in [-1, 1] x [0, 1]; 50 initial points u(x, 0) = -sin(pi x) and
    25 on each wall u(+-1, t) = 0. Columns (x, t), float32."""
    import numpy as np
    rng = np.random.default_rng(seed)
    xf = np.column_stack([rng.uniform(-1, 1, N_F), rng.uniform(0, 1, N_F)])
    x0 = rng.uniform(-1, 1, N_U // 2)
    tb = rng.uniform(0, 1, N_U - N_U // 2)
    walls = np.where(np.arange(tb.size) % 2 == 0, -1.0, 1.0)
    xu = np.concatenate([np.column_stack([x0, np.zeros_like(x0)]), np.column_stack([walls, tb])])
    uu = np.concatenate([-np.sin(np.pi * x0), np.zeros_like(tb)])[:, None]
    return tuple(a.astype(np.float32) for a in (xf, xu, uu))


def gemm_flops() -> int:
    """FLOPs of the step's matrix products, by analysis (2 M N K each; elementwise work,
    tanh and its derivatives are not counted). With layers i = 0..8 of W_i [out, in], N the
    collocation points, a product of layer i costs 2 N in out:

      forward u = net(X)                      9 products (every layer)
      grad 1, du/dX (create_graph)            9: dh = dz W_i for every layer (the input's
                                              gradient only: no dW in an autograd.grad to X)
      grad 2, d(u_x)/dX (create_graph)        16: the reverse of grad 1's graph, back to X:
                                              g W_i^T through its products for layers 0..7
                                              (layer 8's product has the constant seed
                                              ones as operand, so it does not depend on X),
                                              and g W_i through the forward's products for
                                              layers 0..7, into which the tanh' factors of
                                              grad 1 feed (u_x does not depend on layer 8's)
      backward of the loss to the weights     2 per product above: dW and the gradient of
                                              its other operand, but 1 where that operand is
                                              a constant (X in the forward's layer 0, the
                                              ones seed in grad 1's layer 8, the one-hot
                                              seed of u_x in grad 2's layer 0)

    so 34 products made by the step on N points, 65 in its backward; plus the boundary
    points' forward (9 products on N_U points) and its backward (17): 138.1 MFLOP. Each of
    the 7 hidden 20 x 20 layers has 12 products of 2 N 400 FLOPs on the collocation points,
    97% of the total. (PyTorch's step, counted by a dispatch mode, makes these 125 products
    and one more, 0.1%: its backward also computes the gradient of X, which requires grad.)
    """
    layers = list(zip(SIZES[:-1], SIZES[1:]))  # (in, out)
    last = len(layers) - 1
    cost = lambda n, i: 2 * n * layers[i][0] * layers[i][1]  # noqa: E731
    made = [(N_F, i, i > 0) for i in range(len(layers))]              # forward; operand X at 0
    made += [(N_F, i, i < last) for i in range(len(layers))]          # grad 1; seed at layer 8
    made += [(N_F, i, i > 0) for i in range(last)]                    # grad 2 through grad 1's
    made += [(N_F, i, True) for i in range(last)]                     # grad 2 through the forward's
    made += [(N_U, i, i > 0) for i in range(len(layers))]             # boundary forward
    total = sum(cost(n, i) for n, i, _ in made)                       # the products themselves
    total += sum(cost(n, i) * (2 if operand else 1) for n, i, operand in made)  # their backward
    return total


# ---------------------------------------------------------------- the steps

def torch_like_step(lib, net, opt):
    """The step as a PyTorch user writes it: the same code for cgrad (import cgrad as torch)
    and PyTorch."""
    def step(xf, xu, uu):
        X = lib.as_tensor(xf).requires_grad_()
        opt.zero_grad()
        u = net(X)
        du = lib.autograd.grad(u.sum(), X, create_graph=True)[0]
        u_x, u_t = du[:, :1], du[:, 1:]
        u_xx = lib.autograd.grad(u_x.sum(), X, create_graph=True)[0][:, :1]
        f = u_t + u * u_x - NU * u_xx
        loss = ((net(lib.as_tensor(xu)) - lib.as_tensor(uu)) ** 2).mean() + (f ** 2).mean()
        loss.backward()
        opt.step()
        return loss
    return step


def _sequential(nn, weights):
    """nn.Sequential(Linear(2, 20), Tanh(), ..., Linear(20, 1)) holding the given weights;
    the same code for cgrad and PyTorch."""
    layers = []
    for i, (w, _) in enumerate(weights):
        layers.append(nn.Linear(w.shape[1], w.shape[0]))
        if i < len(weights) - 1:
            layers.append(nn.Tanh())
    net = nn.Sequential(*layers)
    net.load_state_dict({f"{2 * i}.{k}": v for i, (w, b) in enumerate(weights)
                         for k, v in (("weight", w), ("bias", b))})
    return net


def _cgrad_parts(weights):
    import cgrad
    net = _sequential(cgrad.nn, weights)
    return cgrad, net, cgrad.optim.Adam(net.parameters(), lr=LR)


# Each maker returns (step, sync), as benchmarks/_steps.py describes.

def _eager(lib, parts, batch):
    step = torch_like_step(*parts)
    xf, xu, uu = (lib.from_numpy(a) for a in batch)
    return (lambda: step(xf, xu, uu)), (lambda loss: loss.item())


def cgrad_step(batch, weights):
    import cgrad
    return _eager(cgrad, _cgrad_parts(weights), batch)


def cgrad_replay_step(batch, weights):
    """The same step under cgrad.compile: recorded on the first call, replayed in C after;
    the batch comes in as numpy arrays, as step inputs must be arguments."""
    import cgrad
    step = cgrad.compile(torch_like_step(*_cgrad_parts(weights)))
    return (lambda: step(*batch)), (lambda loss: loss.item())


def _torch_parts(weights):
    import torch
    net = _sequential(torch.nn, [(torch.from_numpy(w), torch.from_numpy(b)) for w, b in weights])
    return torch, net, torch.optim.Adam(net.parameters(), lr=LR)


def torch_step(batch, weights):
    import torch
    return _eager(torch, _torch_parts(weights), batch)


def torch_compile_step(batch, weights):
    """torch.compile over the same step. Raises (on the first call) when it does not
    compile: aot_autograd does not support double backward."""
    import torch
    step = torch.compile(torch_like_step(*_torch_parts(weights)))
    xf, xu, uu = (torch.from_numpy(a) for a in batch)
    return (lambda: step(xf, xu, uu)), (lambda loss: loss.item())


def jax_step(batch, weights):
    """The whole step under one jax.jit, as JAX users write a PINN: u(params, x, t) of one
    point, its derivatives by nested jax.grad, vmap over the points, then value_and_grad of
    the loss and Adam (benchmarks/_steps.py, jax_adam_stepper)."""
    import jax
    import jax.numpy as jnp

    def u(params, x, t):
        h = jnp.stack([x, t])
        for w, b in params[:-1]:
            h = jnp.tanh(w @ h + b)
        w, b = params[-1]
        return (w @ h + b)[0]

    u_x = jax.grad(u, argnums=1)
    u_t = jax.grad(u, argnums=2)
    u_xx = jax.grad(u_x, argnums=1)

    def residual(params, x, t):
        return u_t(params, x, t) + u(params, x, t) * u_x(params, x, t) - NU * u_xx(params, x, t)

    def loss_fn(params, xf, xu, uu):
        f = jax.vmap(residual, in_axes=(None, 0, 0))(params, xf[:, 0], xf[:, 1])
        pred = jax.vmap(u, in_axes=(None, 0, 0))(params, xu[:, 0], xu[:, 1])
        return jnp.mean((pred - uu[:, 0]) ** 2) + jnp.mean(f ** 2)

    params = [(jnp.asarray(w), jnp.asarray(b)) for w, b in weights]
    return jax_adam_stepper(loss_fn, params, batch, LR)


FRAMEWORKS = {"cgrad": cgrad_step, "cgrad-replay": cgrad_replay_step, "torch": torch_step, "jax": jax_step}


def main() -> None:
    """python benchmarks/pinn.py [--quick] [--json F] [--markdown F]: run.py's one-thread
    run of this workload alone (its child process, thread settings and pinning)."""
    from run import main as run_main
    run_main(["--threads", "1", "--networks", "PINN", "--no-digits"] + sys.argv[1:])


if __name__ == "__main__":
    main()
