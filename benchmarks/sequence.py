"""The sequence workloads: one training step of a recurrent, an embedding and an attention
network, in cgrad (eager and replayed), PyTorch eager, torch.compile and JAX jit, each
written as its users write it (the models: cgrad/models.py).

    python -m benchmarks --threads 1 --networks seq: --no-digits --no-pinn --no-cnn   # these alone
    python benchmarks/sequence.py [--quick]                                          # the same

- seq: MNIST-1D biGRU: the paper's bidirectional GRU (hidden 6) over the 40 samples,
  flatten, Linear(480, 10); cross-entropy, Adam lr 1e-2, the first 100 training signals.
  JAX scans the cell (lax.scan), as its users write a recurrence.
- seq: names MLP: makemore's Embedding(27, 10), context 3, Linear(30, 200), tanh,
  Linear(200, 27); cross-entropy, SGD lr 0.1, 32 contexts drawn from the names.
- seq: char GPT: nanoGPT's CPU recipe (4 layers, 4 heads, width 128, no bias, tied output
  layer) on 12 windows of 64 characters of Tiny Shakespeare; AdamW lr 1e-3, betas
  (0.9, 0.99), weight decay 0.1 on the matrices only, gradients clipped to norm 1.0.

Every framework starts from the same weights (cgrad's initialisation, seed 0) and batch;
the first-step and fifth-step losses must agree. Targets (from the sequence-model issue),
against the fastest peer of the same run, are printed, not asserted.
"""
from __future__ import annotations

import math
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from _steps import ClassifierWorkload, TrainingStepWorkload  # noqa: E402


# ---- MNIST-1D biGRU ----
def _gru_net(nn):
    from cgrad.models import mnist1d_gru
    return mnist1d_gru(nn)


def _mnist1d_signals():
    import cgrad
    X, y, _, _ = cgrad.data.mnist1d()
    return X[:100], y[:100]


def _jax_gru_direction(x_proj, w_hh, b_hh, reverse):
    """PyTorch's GRU cell scanned over time: x_proj [T, N, 3H] = x W_ih^T + b_ih."""
    import jax
    import jax.numpy as jnp
    H = w_hh.shape[1]

    def cell(h, xp):
        hp = h @ w_hh.T + b_hh
        r = jax.nn.sigmoid(xp[:, :H] + hp[:, :H])
        z = jax.nn.sigmoid(xp[:, H:2 * H] + hp[:, H:2 * H])
        n = jnp.tanh(xp[:, 2 * H:] + r * hp[:, 2 * H:])
        h = (1 - z) * n + z * h
        return h, h
    h0 = jnp.zeros((x_proj.shape[1], H), x_proj.dtype)
    _, hs = jax.lax.scan(cell, h0, x_proj, reverse=reverse)
    return hs  # [T, N, H], in time order for both directions


def _gru_jax(p, x):
    import jax.numpy as jnp
    xt = x.T[:, :, None]  # [T, N, 1]
    outs = []
    for suffix, reverse in (("", False), ("_reverse", True)):
        x_proj = xt @ p[f"rnn.weight_ih_l0{suffix}"].T + p[f"rnn.bias_ih_l0{suffix}"]
        outs.append(_jax_gru_direction(x_proj, p[f"rnn.weight_hh_l0{suffix}"], p[f"rnn.bias_hh_l0{suffix}"], reverse))
    out = jnp.concatenate(outs, axis=-1).transpose(1, 0, 2)  # [N, T, 2H]
    return out.reshape(out.shape[0], -1) @ p["linear.weight"].T + p["linear.bias"]


def _gru_flops(n=100, T=40, H=6, directions=2, inputs=1):
    # per direction: the input projection (forward, dW) and the recurrent product at every
    # step (forward, dW_hh, dh); then the classifier (forward, dW, dX)
    per_direction = 2 * n * T * 3 * H * (2 * inputs + 3 * H)
    return directions * per_direction + 3 * 2 * n * (directions * H * T) * 10


# ---- names MLP ----
def _names_net(nn):
    from cgrad.models import names_mlp
    return names_mlp(nn)


def _names_batch(n=32, context=3, seed=0):
    """makemore's dataset (every context of 3 characters before each character of each
    name, '.' = 0 the start and end token), 32 rows drawn with a seeded generator."""
    import cgrad
    import numpy as np
    X, Y = [], []
    for w in cgrad.data.names():
        ctx = [0] * context
        for ch in w + ".":
            ix = 0 if ch == "." else ord(ch) - 96
            X.append(ctx)
            Y.append(ix)
            ctx = ctx[1:] + [ix]
    rows = np.random.default_rng(seed).integers(0, len(X), n)
    return np.array(X, np.int64)[rows], np.array(Y, np.int64)[rows]


def _names_jax(p, x):
    import jax.numpy as jnp
    emb = p["0.weight"][x].reshape(x.shape[0], -1)
    h = jnp.tanh(emb @ p["2.weight"].T + p["2.bias"])
    return h @ p["4.weight"].T + p["4.bias"]


def _names_flops(n=32):
    return 2 * n * (30 * 200 + 200 * 27) * 3  # forward, dX, dW: dX of the first layer feeds the embedding


GRU = ClassifierWorkload("seq: MNIST-1D biGRU [GRU 1-6 x2 directions, 40 steps, Linear 480-10] Adam, batch 100",
                         _gru_net, _mnist1d_signals, 1e-2, _gru_jax, _gru_flops,
                         targets={"cgrad": 0.5, "cgrad-replay": 0.3})
NAMES = ClassifierWorkload("seq: names MLP [Embedding 27x10, context 3, 30-200 tanh-27] SGD, batch 32",
                           _names_net, _names_batch, 0.1, _names_jax, _names_flops, optimizer="sgd",
                           targets={"cgrad": 0.6, "cgrad-replay": 0.4})


# ---- char GPT ----
class GPTWorkload(TrainingStepWorkload):
    """nanoGPT's step: forward to the loss, backward, clip to norm 1.0, AdamW (groups)."""
    NAME = "seq: char GPT [4 layers, 4 heads, width 128, block 64] AdamW, batch 12"
    TARGETS = {"cgrad": 0.8, "cgrad-replay": 0.7}
    LR, BETAS, WEIGHT_DECAY, CLIP = 1e-3, (0.9, 0.99), 0.1, 1.0
    B, T, LAYERS, HEADS, WIDTH = 12, 64, 4, 4, 128

    @staticmethod
    def vocabulary():
        import cgrad
        return sorted(set(cgrad.data.tinyshakespeare()))

    def make_batch(self, seed=0):
        import cgrad
        import numpy as np
        text = cgrad.data.tinyshakespeare()
        stoi = {c: i for i, c in enumerate(self.vocabulary())}
        data = np.array([stoi[c] for c in text[:int(0.9 * len(text))]], np.int64)
        starts = np.random.default_rng(seed).integers(0, len(data) - self.T, self.B)
        x = np.stack([data[i:i + self.T] for i in starts])
        y = np.stack([data[i + 1:i + 1 + self.T] for i in starts])
        return x, y

    def build(self, lib):
        from cgrad.models import char_gpt
        return char_gpt(lib, len(self.vocabulary()), block_size=self.T, n_layer=self.LAYERS, n_head=self.HEADS,
                        n_embd=self.WIDTH)

    def init(self):
        import cgrad
        cgrad.manual_seed(0)
        return {k: v.numpy().copy() for k, v in self.build(cgrad).state_dict().items()}

    def gemm_flops(self) -> int:
        """The linear layers (forward, dW, dX; the embedding's none) and the attention's two
        products per head (forward and two backward each), all 2 M N K."""
        n, C, V = self.B * self.T, self.WIDTH, len(self.vocabulary())
        per_layer = 3 * 2 * n * C * (3 * C + C + 4 * C + 4 * C)
        attention = 3 * 2 * 2 * self.B * self.HEADS * self.T * self.T * (C // self.HEADS)
        return self.LAYERS * (per_layer + attention) + 3 * 2 * n * C * V

    # ---- the steps ----
    def _parts(self, lib, weights, as_tensor):
        from cgrad.models import gpt_param_groups
        net = self.build(lib)
        net.load_state_dict({k: as_tensor(v) for k, v in weights.items()})
        opt = lib.optim.AdamW(gpt_param_groups(net, self.WEIGHT_DECAY), lr=self.LR, betas=self.BETAS)
        return net, opt

    def torch_like_step(self, lib, net, opt):
        """nanoGPT's training step (without its gradient accumulation, scaler and schedule),
        the same code for cgrad and PyTorch."""
        def step(x, y):
            _, loss = net(x, y)
            loss.backward()
            lib.nn.utils.clip_grad_norm_(net.parameters(), self.CLIP)
            opt.step()
            opt.zero_grad(set_to_none=True)
            return loss
        return step

    def jax_step(self, batch, weights):
        """The GPT as a jnp function of its parameters, and the whole step (value_and_grad,
        global-norm clipping, AdamW written out) under one jax.jit."""
        import jax
        import jax.numpy as jnp
        H, L = self.HEADS, self.LAYERS
        (b1, b2), lr, wd, clip = self.BETAS, self.LR, self.WEIGHT_DECAY, self.CLIP
        tree = jax.tree_util.tree_map

        def layer_norm(x, w):
            mu = x.mean(-1, keepdims=True)
            var = ((x - mu) ** 2).mean(-1, keepdims=True)
            return (x - mu) / jnp.sqrt(var + 1e-5) * w

        def attention(x, p):
            B, T, C = x.shape
            q, k, v = jnp.split(x @ p["attn.c_attn.weight"].T, 3, axis=-1)
            q, k, v = (t.reshape(B, T, H, C // H).transpose(0, 2, 1, 3) for t in (q, k, v))
            s = q @ k.transpose(0, 1, 3, 2) / math.sqrt(C // H)
            s = jnp.where(jnp.tril(jnp.ones((T, T), bool)), s, -jnp.inf)
            y = jax.nn.softmax(s, axis=-1) @ v
            return y.transpose(0, 2, 1, 3).reshape(B, T, C) @ p["attn.c_proj.weight"].T

        def loss_fn(params, idx, targets):
            wte = params["transformer.wte.weight"]
            x = wte[idx] + params["transformer.wpe.weight"][: idx.shape[1]]
            for i in range(L):
                p = {k[len(f"transformer.h.{i}."):]: v for k, v in params.items() if k.startswith(f"transformer.h.{i}.")}
                x = x + attention(layer_norm(x, p["ln_1.weight"]), p)
                h = jax.nn.gelu(layer_norm(x, p["ln_2.weight"]) @ p["mlp.c_fc.weight"].T, approximate=False)
                x = x + h @ p["mlp.c_proj.weight"].T
            logits = layer_norm(x, params["transformer.ln_f.weight"]) @ wte.T  # tied to the embedding
            logp = jax.nn.log_softmax(logits, axis=-1)
            return -jnp.mean(jnp.take_along_axis(logp, targets[..., None], axis=-1))

        @jax.jit
        def train_step(params, m, v, count, idx, targets):
            loss, grads = jax.value_and_grad(loss_fn)(params, idx, targets)
            norm = jnp.sqrt(sum(jnp.sum(g * g) for g in jax.tree_util.tree_leaves(grads)))
            grads = tree(lambda g: g * jnp.minimum(1.0, clip / (norm + 1e-6)), grads)
            count = count + 1
            m = tree(lambda m, g: b1 * m + (1 - b1) * g, m, grads)
            v = tree(lambda v, g: b2 * v + (1 - b2) * g * g, v, grads)
            c1, c2 = 1 - b1 ** count, 1 - b2 ** count

            def update(p, m, v):
                decay = wd if p.ndim >= 2 else 0.0
                return p * (1 - lr * decay) - lr * (m / c1) / (jnp.sqrt(v / c2) + 1e-8)
            params = {k: update(params[k], m[k], v[k]) for k in params}
            return params, m, v, count, loss

        # the tied weight is one parameter: keep one name for it, as the other frameworks do
        params = {k: jnp.asarray(w) for k, w in weights.items() if k != "lm_head.weight"}
        zeros = tree(jnp.zeros_like, params)
        state = {"s": (params, zeros, zeros, jnp.zeros((), jnp.float32))}
        idx, targets = (jnp.asarray(a) for a in batch)

        def step():
            *s, loss = train_step(*state["s"], idx, targets)
            state["s"] = tuple(s)
            return loss
        return step, (lambda loss: float(loss.block_until_ready()))


GPT = GPTWorkload()
WORKLOADS = (GRU, NAMES, GPT)


def main() -> None:
    """python benchmarks/sequence.py [--quick] [--json F] [--markdown F]: run.py's one-thread
    run of these workloads alone (its child process, thread settings and pinning)."""
    from run import main as run_main
    run_main(["--threads", "1", "--networks", "seq:", "--no-digits", "--no-pinn", "--no-cnn"] + sys.argv[1:])


if __name__ == "__main__":
    main()
