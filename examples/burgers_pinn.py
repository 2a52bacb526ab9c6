"""Physics-informed neural network for Burgers' equation (Raissi et al. 2019, the
continuous-time example), written as a PyTorch program with only the import changed.

Usage:

    python examples/burgers_pinn.py             # cgrad, the paper's setup (tens of minutes)
    python examples/burgers_pinn.py --torch     # the same script on PyTorch, to compare
    python examples/burgers_pinn.py --quick     # a smoke test that finishes in seconds

It trains u(t, x) ~ MLP(x, t) so that u_t + u u_x - (0.01/pi) u_xx = 0 on x in [-1, 1],
t in [0, 1], with u(0, x) = -sin(pi x) and u(t, -1) = u(t, 1) = 0, then prints the relative
L2 error ||u_pred - u_ref|| / ||u_ref|| against the reference solution on its full 256 x 100
grid (the paper reports 6.7e-4), the wall time, and on the way the loss every --print-every
Adam steps and L-BFGS loss evaluations. Measured on one core (2-core Xeon VM, AVX-512):
with the defaults (seed 1234, nn.init's Glorot-normal draw, 2000 Adam steps, then L-BFGS,
which stops at its tolerances after about 4,000 iterations) cgrad reaches a relative error
of 2.7e-3 in 4.7 minutes; with --numpy-init (the same seed's weights drawn by numpy, so
that --torch starts from the same ones) 8.3e-4 in 5.0 minutes, PyTorch 8.8e-4 in 6.8.
nn.init draws different weights in cgrad and PyTorch from one seed; from its own, PyTorch
reached 5.6e-4 in 6.5 minutes. The spread is the initialization's, not the library's.
Options: --numpy-init, --adam-steps, --adam-lr, --lbfgs-iters (L-BFGS's max_iter, 50,000 as the paper;
in float32 it stops at its tolerances long before), --precision (float32, the default, or
float64), --seed, --n-u, --n-f, --print-every, --data (the .npz; by default
data/burgers_shock.npz next to this script), --compile (cgrad only: record one Adam step
and replay it in C with cgrad.compile, bitwise equal to eager), --quick, --torch.

The setup is the paper's: an MLP [2, 20 x 8 tanh, 1] with Glorot-normal weights and zero
biases, its input scaled to [-1, 1]; N_u = 100 training points drawn from the reference
solution's initial (t = 0) and boundary (x = +-1) points; N_f = 10,000 collocation points
by Latin hypercube sampling (plus the N_u points, as the paper's code does), kept fixed
(full batch); loss = MSE_u + MSE_f; Adam first, then L-BFGS with a strong-Wolfe line search.
"""
import argparse
import math
import os
import sys
import time

import numpy as np

if "--torch" in sys.argv[1:]:
    import torch
    USING_TORCH = True
else:
    import cgrad as torch
    USING_TORCH = False

nn = torch.nn

NU = 0.01 / math.pi
HERE = os.path.dirname(os.path.abspath(__file__))


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--adam-steps", type=int, default=2000, help="Adam steps before L-BFGS (default 2000)")
    p.add_argument("--adam-lr", type=float, default=1e-3, help="Adam's learning rate (default 1e-3)")
    p.add_argument("--lbfgs-iters", type=int, default=50000,
                   help="L-BFGS max_iter (default 50000, as the paper; it stops earlier at its tolerances)")
    p.add_argument("--precision", choices=("float32", "float64"), default="float32",
                   help="the dtype of the model and the points (default float32, as the paper; float64 "
                        "is about 2.3x slower per iteration in cgrad)")
    p.add_argument("--n-u", type=int, default=100, help="initial and boundary training points (default 100)")
    p.add_argument("--n-f", type=int, default=10000, help="collocation points (default 10000)")
    p.add_argument("--seed", type=int, default=1234, help="seed of the sampling and the initialization")
    p.add_argument("--numpy-init", action="store_true",
                   help="draw the initial weights with numpy from --seed, so that cgrad and --torch start "
                        "from the same weights (nn.init draws differ between the libraries)")
    p.add_argument("--print-every", type=int, default=None,
                   help="print the loss every N Adam steps / L-BFGS evaluations (default 100; 10 with --quick)")
    p.add_argument("--data", default=os.path.join(HERE, "data", "burgers_shock.npz"),
                   help="the reference solution (.npz with x, t, usol)")
    p.add_argument("--quick", action="store_true",
                   help="a smoke test: N_f = 500, 50 Adam steps, 20 L-BFGS iterations")
    p.add_argument("--torch", action="store_true", help="run on PyTorch instead of cgrad")
    p.add_argument("--compile", action="store_true",
                   help="cgrad only: replay the Adam step with cgrad.compile (bitwise equal to eager)")
    args = p.parse_args(argv)
    if args.quick:
        args.n_f, args.adam_steps, args.lbfgs_iters = 500, 50, 20
    if args.print_every is None:
        args.print_every = 10 if args.quick else 100
    return args


# ---------------------------------------------------------------- data

def load_reference(path):
    """The reference solution on its grid: X_star (25600, 2) of (x, t), u_star (25600, 1)."""
    data = np.load(path)
    x, t, usol = data["x"], data["t"], data["usol"]   # (256, 1), (100, 1), usol[i, j] = u(t_j, x_i)
    X, T = np.meshgrid(x[:, 0], t[:, 0])              # (100, 256) each
    X_star = np.hstack([X.reshape(-1, 1), T.reshape(-1, 1)])
    u_star = usol.T.reshape(-1, 1)
    return x, t, usol, X_star, u_star


def latin_hypercube(n, lb, ub, rng):
    """n points in the box [lb, ub]: in each dimension, one point in each of n equal strata
    (at a uniform place inside it), the strata shuffled independently per dimension."""
    d = len(lb)
    strata = np.stack([rng.permutation(n) for _ in range(d)], axis=1)
    unit = (strata + rng.uniform(size=(n, d))) / n
    return lb + (ub - lb) * unit


def training_points(x, t, usol, n_u, n_f, lb, ub, rng):
    """(X_u, u_u): n_u points drawn from the initial and boundary data; X_f: the collocation
    points (n_f by Latin hypercube, plus X_u, as the paper's code does)."""
    initial = np.hstack([x, np.zeros_like(x)]), usol[:, :1]               # t = 0
    left = np.hstack([np.full_like(t, x[0, 0]), t]), usol[:1, :].T        # x = -1
    right = np.hstack([np.full_like(t, x[-1, 0]), t]), usol[-1:, :].T     # x = +1
    X_all = np.vstack([initial[0], left[0], right[0]])
    u_all = np.vstack([initial[1], left[1], right[1]])
    pick = rng.choice(X_all.shape[0], n_u, replace=False)
    X_u, u_u = X_all[pick], u_all[pick]
    X_f = np.vstack([latin_hypercube(n_f, lb, ub, rng), X_u])
    return X_u, u_u, X_f


# ---------------------------------------------------------------- the network

class PINN(nn.Module):
    """u(x, t): the input scaled to [-1, 1], then [2, 20 x 8 tanh, 1]."""

    def __init__(self, lb, ub, layers=(2,) + (20,) * 8 + (1,), numpy_seed=None):
        super().__init__()
        self.register_buffer("lb", torch.tensor(lb, dtype=torch.get_default_dtype()))
        self.register_buffer("ub", torch.tensor(ub, dtype=torch.get_default_dtype()))
        mods = []
        for i in range(len(layers) - 1):
            lin = nn.Linear(layers[i], layers[i + 1])
            if numpy_seed is None:
                nn.init.xavier_normal_(lin.weight)
            else:  # the same Glorot-normal draw in every library (--numpy-init)
                rng = np.random.default_rng([numpy_seed, i])
                w = rng.normal(0.0, math.sqrt(2.0 / (layers[i] + layers[i + 1])), (layers[i + 1], layers[i]))
                with torch.no_grad():
                    lin.weight.copy_(torch.tensor(w, dtype=lin.weight.dtype))
            nn.init.zeros_(lin.bias)
            mods.append(lin)
            if i < len(layers) - 2:
                mods.append(nn.Tanh())
        self.net = nn.Sequential(*mods)

    def forward(self, X):
        H = 2.0 * (X - self.lb) / (self.ub - self.lb) - 1.0
        return self.net(H)


def residual(model, X):
    """f = u_t + u u_x - nu u_xx at the points X (which require grad)."""
    u = model(X)
    du = torch.autograd.grad(u, X, grad_outputs=torch.ones_like(u), create_graph=True)[0]
    u_x, u_t = du[:, 0:1], du[:, 1:2]
    u_xx = torch.autograd.grad(u_x, X, grad_outputs=torch.ones_like(u_x), create_graph=True)[0][:, 0:1]
    return u_t + u * u_x - NU * u_xx


def losses(model, X_f, X_u, u_u):
    """(MSE_u, MSE_f)."""
    mse_u = ((model(X_u) - u_u) ** 2).mean()
    mse_f = (residual(model, X_f) ** 2).mean()
    return mse_u, mse_f


def relative_l2_error(model, X_star, u_star):
    with torch.no_grad():
        u_pred = model(torch.tensor(X_star, dtype=torch.get_default_dtype())).numpy().astype(np.float64)
    return float(np.linalg.norm(u_star - u_pred) / np.linalg.norm(u_star))


# ---------------------------------------------------------------- training

def main(argv=None):
    args = parse_args(argv)
    backend = f"PyTorch {torch.__version__}" if USING_TORCH else f"cgrad {torch.__version__}"
    print(f"Burgers PINN on {backend}: N_u={args.n_u}, N_f={args.n_f}, Adam {args.adam_steps} steps "
          f"(lr {args.adam_lr}), L-BFGS max_iter {args.lbfgs_iters}, seed {args.seed}, "
          f"precision {args.precision}", flush=True)

    x, t, usol, X_star, u_star = load_reference(args.data)
    lb, ub = X_star.min(axis=0), X_star.max(axis=0)
    rng = np.random.default_rng(args.seed)
    X_u_np, u_u_np, X_f_np = training_points(x, t, usol, args.n_u, args.n_f, lb, ub, rng)
    if args.precision == "float64":
        torch.set_default_dtype(torch.float64)
    dtype = np.float64 if args.precision == "float64" else np.float32
    X_u_np, u_u_np, X_f_np = (a.astype(dtype) for a in (X_u_np, u_u_np, X_f_np))

    torch.manual_seed(args.seed)
    model = PINN(lb, ub, numpy_seed=args.seed if args.numpy_init else None)
    n_params = sum(p.numel() for p in model.parameters())
    print(f"model: {n_params} parameters; {X_f_np.shape[0]} collocation points, {X_u_np.shape[0]} data points",
          flush=True)

    X_f = torch.tensor(X_f_np, requires_grad=True)   # fixed collocation points (full batch)
    X_u = torch.tensor(X_u_np)
    u_u = torch.tensor(u_u_np)

    start = time.perf_counter()

    def report(phase, i, mse_u, mse_f):
        print(f"{phase} {i:6d}  loss {mse_u + mse_f:.4e}  (MSE_u {mse_u:.3e}, MSE_f {mse_f:.3e})  "
              f"{time.perf_counter() - start:7.1f} s", flush=True)

    # -- Adam
    optimizer = torch.optim.Adam(model.parameters(), lr=args.adam_lr)

    def adam_step(xf, xu, uu):
        X = torch.as_tensor(xf).requires_grad_()
        optimizer.zero_grad()
        mse_u, mse_f = losses(model, X, torch.as_tensor(xu), torch.as_tensor(uu))
        loss = mse_u + mse_f
        loss.backward()
        optimizer.step()
        return mse_u.detach(), mse_f.detach()

    # cgrad.compile records the step once and replays it in C, bitwise equal to eager; it
    # saves the per-op Python overhead, which is small next to 10,000 points' arithmetic.
    # (PyTorch's torch.compile is another thing, so --torch always runs eagerly.)
    step = torch.compile(adam_step) if args.compile and not USING_TORCH else adam_step
    for i in range(1, args.adam_steps + 1):
        mse_u, mse_f = step(X_f_np, X_u_np, u_u_np)
        if i % args.print_every == 0 or i == args.adam_steps:
            report("adam ", i, mse_u.item(), mse_f.item())
    adam_time = time.perf_counter() - start
    if args.adam_steps:
        print(f"Adam: {args.adam_steps} steps in {adam_time:.1f} s; relative L2 error "
              f"{relative_l2_error(model, X_star, u_star):.3e}", flush=True)

    # -- L-BFGS, full batch, with a strong-Wolfe line search
    evals = 0

    def closure():
        nonlocal evals
        lbfgs.zero_grad()
        mse_u, mse_f = losses(model, X_f, X_u, u_u)
        loss = mse_u + mse_f
        loss.backward()
        evals += 1
        if evals % args.print_every == 0:
            report("lbfgs", evals, mse_u.item(), mse_f.item())
        return loss

    lbfgs = torch.optim.LBFGS(model.parameters(), lr=1, max_iter=args.lbfgs_iters,
                              max_eval=args.lbfgs_iters * 5 // 4, history_size=50,
                              tolerance_grad=1e-7, tolerance_change=np.finfo(float).eps,
                              line_search_fn="strong_wolfe")
    lbfgs_start = time.perf_counter()
    if args.lbfgs_iters:
        lbfgs.step(closure)   # one call: up to max_iter iterations, or until its tolerances
    state = lbfgs.state_dict()["state"]
    iters = state[0]["n_iter"] if state else 0
    lbfgs_time = time.perf_counter() - lbfgs_start
    final_u, final_f = (v.item() for v in losses(model, X_f, X_u, u_u))
    wall = time.perf_counter() - start

    error = relative_l2_error(model, X_star, u_star)
    print(f"L-BFGS: {iters} iterations, {evals} evaluations in {lbfgs_time:.1f} s", flush=True)
    print(f"final loss {final_u + final_f:.4e} (MSE_u {final_u:.3e}, MSE_f {final_f:.3e})")
    print(f"wall time: {wall:.1f} s (Adam {adam_time:.1f} s, L-BFGS {lbfgs_time:.1f} s)")
    print(f"relative L2 error: {error:.3e}  (Raissi et al. 2019: 6.7e-04)", flush=True)
    return error


if __name__ == "__main__":
    main()
