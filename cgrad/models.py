"""The sequence models of the published recipes, built from any PyTorch-like library, so
that `cgrad train`, the benchmarks and the tests build the same network in cgrad and in
PyTorch (pass `cgrad.nn` or `torch.nn`; the GPT, which also makes tensors, `cgrad` or `torch`):

- `mnist1d_gru(nn)`: the MNIST-1D paper's GRU (Greydanus 2020): a bidirectional GRU
  (input 1, hidden 6) over the 40 samples, flattened (480), Linear(480, 10);
- `names_mlp(nn)`: makemore's character MLP (Bengio et al. 2003): Embedding(27, 10) of a
  context of 3 characters, Linear(30, 200), tanh, Linear(200, 27);
- `char_gpt(lib, vocab_size)`: nanoGPT's GPT (Karpathy) at its CPU recipe's size: 4 layers,
  4 heads, width 128, block 64, no bias, no dropout, the output layer tied to the token
  embedding, GPT-2's initialisation.

The examples (examples/mnist1d_gru.py, names_mlp.py, char_gpt.py) write the same models
out as a PyTorch user would; tests/test_models.py checks that both give the same network.
"""
from __future__ import annotations

import importlib
import math
from typing import Any


def _travels_as_factory(model: Any, factory: Any, lib: Any, args: tuple) -> Any:
    """Let a recipe model pickle and deep-copy although its classes are local to the
    factory: it travels as the factory call plus its parameters and buffers (the same
    objects, so an optimizer pickled with it still updates it, and tied weights stay
    tied) and each submodule's train/eval mode."""
    def reduce(self, protocol):
        state = {"params": list(self.named_parameters(remove_duplicate=False)),
                 "buffers": list(self.named_buffers()),
                 "training": [m.training for m in self.modules()]}
        return _rebuild_recipe, (factory.__name__, lib.__name__, args), state

    def setstate(self, state: dict) -> None:
        for name, value in state["params"] + state["buffers"]:
            owner, _, attr = name.rpartition(".")
            setattr(self.get_submodule(owner) if owner else self, attr, value)
        for m, training in zip(self.modules(), state["training"]):
            m.training = training

    cls = type(model)
    setattr(cls, "__reduce_ex__", reduce)  # setattr: object's own signature would not type-check
    setattr(cls, "__setstate__", setstate)
    return model


def _rebuild_recipe(factory_name: str, lib_name: str, args: tuple) -> Any:
    # the factory initialises weights that setstate then replaces: keep the library's random
    # generator where it was, so a deepcopy mid-training leaves later draws as they were
    root = importlib.import_module(lib_name.split(".")[0])  # cgrad or torch
    state = root.get_rng_state()
    try:
        return globals()[factory_name](importlib.import_module(lib_name), *args)
    finally:
        root.set_rng_state(state)


def mnist1d_gru(nn: Any, hidden: int = 6, steps: int = 40) -> Any:
    Module: Any = nn.Module  # cgrad's or torch's

    class GRUClassifier(Module):
        def __init__(self):
            super().__init__()
            self.rnn = nn.GRU(1, hidden, batch_first=True, bidirectional=True)
            self.linear = nn.Linear(2 * hidden * steps, 10)

        def forward(self, x):  # x: [N, 40] signals
            out, _ = self.rnn(x.unsqueeze(-1))
            return self.linear(out.reshape(out.shape[0], -1))
    return _travels_as_factory(GRUClassifier(), mnist1d_gru, nn, (hidden, steps))


def names_mlp(nn: Any, vocab: int = 27, context: int = 3, embed: int = 10, hidden: int = 200) -> Any:
    return nn.Sequential(nn.Embedding(vocab, embed), nn.Flatten(), nn.Linear(context * embed, hidden), nn.Tanh(),
                         nn.Linear(hidden, vocab))


def char_gpt(lib: Any, vocab_size: int, block_size: int = 64, n_layer: int = 4, n_head: int = 4,
             n_embd: int = 128, dropout: float = 0.0, bias: bool = False) -> Any:
    nn, F = lib.nn, lib.nn.functional
    Module: Any = nn.Module  # cgrad's or torch's

    class CausalSelfAttention(Module):
        def __init__(self):
            super().__init__()
            self.c_attn = nn.Linear(n_embd, 3 * n_embd, bias=bias)
            self.c_proj = nn.Linear(n_embd, n_embd, bias=bias)
            self.resid_dropout = nn.Dropout(dropout)

        def forward(self, x):
            B, T, C = x.shape
            q, k, v = self.c_attn(x).split(n_embd, dim=2)
            q, k, v = (t.view(B, T, n_head, C // n_head).transpose(1, 2) for t in (q, k, v))
            y = F.scaled_dot_product_attention(q, k, v, dropout_p=dropout if self.training else 0.0, is_causal=True)
            return self.resid_dropout(self.c_proj(y.transpose(1, 2).contiguous().view(B, T, C)))

    class MLP(Module):
        def __init__(self):
            super().__init__()
            self.c_fc = nn.Linear(n_embd, 4 * n_embd, bias=bias)
            self.gelu = nn.GELU()
            self.c_proj = nn.Linear(4 * n_embd, n_embd, bias=bias)
            self.dropout = nn.Dropout(dropout)

        def forward(self, x):
            return self.dropout(self.c_proj(self.gelu(self.c_fc(x))))

    class Block(Module):
        def __init__(self):
            super().__init__()
            self.ln_1 = nn.LayerNorm(n_embd, bias=bias)
            self.attn = CausalSelfAttention()
            self.ln_2 = nn.LayerNorm(n_embd, bias=bias)
            self.mlp = MLP()

        def forward(self, x):
            x = x + self.attn(self.ln_1(x))
            return x + self.mlp(self.ln_2(x))

    class GPT(Module):
        def __init__(self):
            super().__init__()
            self.block_size = block_size
            self.transformer = nn.ModuleDict(dict(
                wte=nn.Embedding(vocab_size, n_embd), wpe=nn.Embedding(block_size, n_embd), drop=nn.Dropout(dropout),
                h=nn.ModuleList([Block() for _ in range(n_layer)]), ln_f=nn.LayerNorm(n_embd, bias=bias)))
            self.lm_head = nn.Linear(n_embd, vocab_size, bias=False)
            self.transformer.wte.weight = self.lm_head.weight  # weight tying, as GPT-2
            for name, p in self.named_parameters():
                if p.dim() == 2:  # every matrix N(0, 0.02), the residual projections scaled by depth
                    std = 0.02 / math.sqrt(2 * n_layer) if name.endswith("c_proj.weight") else 0.02
                    nn.init.normal_(p, mean=0.0, std=std)
                elif name.endswith(".bias") and "ln_" not in name:
                    nn.init.zeros_(p)

        def forward(self, idx, targets=None):
            T = idx.shape[1]
            if T > self.block_size:
                raise ValueError(f"GPT: a sequence of {T} tokens is longer than the block size {self.block_size}")
            pos = lib.arange(0, T, dtype=lib.long)
            x = self.transformer.drop(self.transformer.wte(idx) + self.transformer.wpe(pos))
            for block in self.transformer.h:
                x = block(x)
            logits = self.lm_head(self.transformer.ln_f(x))
            if targets is None:
                return logits, None
            return logits, F.cross_entropy(logits.view(-1, logits.shape[-1]), targets.view(-1))
    return _travels_as_factory(GPT(), char_gpt, lib, (vocab_size, block_size, n_layer, n_head, n_embd, dropout, bias))


def gpt_param_groups(model: Any, weight_decay: float) -> list:
    """nanoGPT's AdamW groups: weight decay on the matrices (embeddings and linear weights),
    none on the biases and layer-norm gains."""
    params = [p for p in model.parameters() if p.requires_grad]
    return [{"params": [p for p in params if p.dim() >= 2], "weight_decay": weight_decay},
            {"params": [p for p in params if p.dim() < 2], "weight_decay": 0.0}]


def gpt_lr(it: int, lr: float = 1e-3, min_lr: float = 1e-4, warmup: int = 100, decay_iters: int = 2000) -> float:
    """nanoGPT's schedule: linear warm-up from 0, cosine decay to min_lr, then min_lr."""
    if it < warmup:
        return lr * (it + 1) / (warmup + 1)
    if it > decay_iters:
        return min_lr
    ratio = (it - warmup) / (decay_iters - warmup)
    return min_lr + 0.5 * (1.0 + math.cos(math.pi * ratio)) * (lr - min_lr)
