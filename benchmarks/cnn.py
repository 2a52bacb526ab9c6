"""The CNN workloads: one Adam training step of a small convolutional network, in cgrad
(eager and replayed), PyTorch eager, torch.compile and JAX jit, each written as its users
write it.

    python -m benchmarks --threads 1 --networks CNN --no-digits --no-pinn   # these alone
    python benchmarks/cnn.py [--quick]                                      # the same

- MNIST-1D CNN (Greydanus 2020, the paper's recipe): Conv1d(1, 25, 5, stride 2, padding 1),
  ReLU, Conv1d(25, 25, 3, 2, 1), ReLU, Conv1d(25, 25, 3, 2, 1), ReLU, flatten,
  Linear(125, 10); cross-entropy, Adam lr 1e-2, the first 100 training signals.
- digits CNN: Conv2d(1, 16, 3, padding 1), ReLU, MaxPool2d(2), Conv2d(16, 32, 3, padding 1),
  ReLU, MaxPool2d(2), flatten, Linear(128, 10); Adam lr 1e-3, the first 64 8x8 digits.

Every framework starts from the same weights (PyTorch's default init, drawn once with
numpy) and the same batch; the first-step and fifth-step losses must agree. Targets (from
the convolution issue), against the fastest peer of the same run: cgrad eager <= 1.0x,
replay <= 0.5x; printed, not asserted.
"""
from __future__ import annotations

import math
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from _steps import ClassifierWorkload  # noqa: E402


def mnist1d_net(nn):
    """`cgrad train --dataset mnist1d --model cnn`'s network, built with nn (cgrad.nn or
    torch.nn). cgrad is imported when a step is made, as everywhere in benchmarks/: run.py
    sets up the process (threads, pinning) first."""
    from cgrad.__main__ import cnn_for
    return cnn_for("mnist1d", nn)


def digits_net(nn):
    from cgrad.__main__ import cnn_for
    return cnn_for("digits", nn)


def _mnist1d_batch():
    import cgrad
    X, y, _, _ = cgrad.data.mnist1d()
    return X[:100, None, :], y[:100]


def _digits_batch():
    import cgrad
    X, y, _, _ = cgrad.data.digits(flatten=False)
    return X[:64, None].astype("float32"), y[:64].astype("int64")


def _conv_out(size, k, s, p):
    return (size + 2 * p - k) // s + 1


class CNNWorkload(ClassifierWorkload):
    """A CNN classifier step; every layer starts from PyTorch's default init (U(+-1/sqrt(fan_in))
    for weights and biases), drawn with numpy in state_dict order."""
    TARGETS = {"cgrad": 1.0, "cgrad-replay": 0.5}

    def init(self):
        import cgrad
        import numpy as np
        rng = np.random.default_rng(0)
        shapes = {k: tuple(v.shape) for k, v in self.build(cgrad.nn).state_dict().items()}
        out = {}
        for k, shape in shapes.items():
            fan_in = math.prod(shapes[k.rsplit(".", 1)[0] + ".weight"][1:])
            bound = 1 / math.sqrt(fan_in)
            out[k] = rng.uniform(-bound, bound, shape).astype(np.float32)
        return out


def _jax_conv(x, w, b, stride, padding):
    import jax
    n = w.ndim - 2
    dims = ("NCH", "OIH", "NCH") if n == 1 else ("NCHW", "OIHW", "NCHW")
    y = jax.lax.conv_general_dilated(x, w, (stride,) * n, [(padding, padding)] * n, dimension_numbers=dims)
    return y + b.reshape((1, -1) + (1,) * n)


def _mnist1d_jax(p, x):
    import jax
    h = x
    for i, s in ((0, 2), (2, 2), (4, 2)):
        h = jax.nn.relu(_jax_conv(h, p[f"{i}.weight"], p[f"{i}.bias"], s, 1))
    h = h.reshape(h.shape[0], -1)
    return h @ p["7.weight"].T + p["7.bias"]


def _digits_jax(p, x):
    import jax
    import jax.numpy as jnp

    def pool(h):
        return jax.lax.reduce_window(h, -jnp.inf, jax.lax.max, (1, 1, 2, 2), (1, 1, 2, 2), "VALID")
    h = pool(jax.nn.relu(_jax_conv(x, p["0.weight"], p["0.bias"], 1, 1)))
    h = pool(jax.nn.relu(_jax_conv(h, p["3.weight"], p["3.bias"], 1, 1)))
    h = h.reshape(h.shape[0], -1)
    return h @ p["7.weight"].T + p["7.bias"]


def _conv_gemm_flops(batch, layers, linear):
    """2 M N K of each convolution's three products (forward Y = W col(X); dW = dZ col(X)^T;
    dX = col2im(W^T dZ), which the first layer, whose input needs no gradient, skips) and of
    the classifier's (forward, dW, dX). layers: (in, out, kernel elements, output positions)."""
    total = 0
    for i, (cin, cout, kk, positions) in enumerate(layers):
        one = 2 * batch * positions * cout * cin * kk
        total += one * (2 if i == 0 else 3)
    fin, fout = linear
    return total + 3 * 2 * batch * fin * fout


def _mnist1d_flops():
    l1 = _conv_out(40, 5, 2, 1)
    l2 = _conv_out(l1, 3, 2, 1)
    l3 = _conv_out(l2, 3, 2, 1)
    return _conv_gemm_flops(100, [(1, 25, 5, l1), (25, 25, 3, l2), (25, 25, 3, l3)], (125, 10))


def _digits_flops():
    return _conv_gemm_flops(64, [(1, 16, 9, 64), (16, 32, 9, 16)], (128, 10))


MNIST1D = CNNWorkload("MNIST-1D CNN [Conv1d 1-25-25-25, Linear 125-10] Adam, batch 100", mnist1d_net,
                      _mnist1d_batch, 1e-2, _mnist1d_jax, _mnist1d_flops)
DIGITS = CNNWorkload("digits CNN [Conv2d 1-16-32, MaxPool2d, Linear 128-10] Adam, batch 64", digits_net,
                     _digits_batch, 1e-3, _digits_jax, _digits_flops)
WORKLOADS = (MNIST1D, DIGITS)


def main() -> None:
    """python benchmarks/cnn.py [--quick] [--json F] [--markdown F]: run.py's one-thread run
    of these workloads alone (its child process, thread settings and pinning)."""
    from run import main as run_main
    run_main(["--threads", "1", "--networks", "CNN", "--no-digits", "--no-pinn"] + sys.argv[1:])


if __name__ == "__main__":
    main()
