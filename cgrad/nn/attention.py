"""Attention layers: MultiheadAttention and the Transformer encoder layer (PyTorch's arguments,
parameter names, layouts and initialisation, so a PyTorch state_dict loads)."""
from __future__ import annotations

from typing import Any

import numpy as np

from .. import _C
from ..tensor import Tensor, _resolve_dtype, empty, from_numpy, tensor
from . import functional as F
from . import init
from .modules import Dropout, Linear, Module, ModuleList, Parameter
from .normalization import LayerNorm

__all__ = ["MultiheadAttention", "TransformerEncoderLayer", "TransformerEncoder"]


def _as_additive(mask, like: Tensor, what: str):
    """A MultiheadAttention mask as scores to add: bool True means *masked out* (PyTorch's
    convention here, the opposite of scaled_dot_product_attention's), so -inf there; a float
    mask is added as it is. None stays None."""
    if mask is None:
        return None
    if not isinstance(mask, Tensor):
        mask = from_numpy(np.array(mask))
    if mask.dtype == np.bool_:
        return from_numpy(np.where(mask.numpy(), -np.inf, 0.0).astype(like.dtype))
    if mask.dtype not in (np.float32, np.float64):
        raise TypeError(f"MultiheadAttention: only bool and floating types of {what} are supported, got "
                        f"{mask.dtype} of shape {mask.shape}")
    return mask if mask.dtype == like.dtype else mask.to(like.dtype)


class MultiheadAttention(Module):
    """Multi-head attention, as torch.nn.MultiheadAttention: inputs (L, N, E) (or (N, L, E)
    with batch_first, or unbatched (L, E)); q, k, v projected by in_proj_weight [3E, E] (or
    q/k/v_proj_weight when kdim/vdim differ from embed_dim), split into num_heads heads,
    attended, joined and projected by out_proj. need_weights=False runs the fused
    scaled_dot_product_attention; need_weights=True computes the weights explicitly and
    returns them (averaged over heads unless average_attn_weights=False).

    attention_entropy: after a forward in training mode, the mean over the batch and the
    query rows of each head's attention entropy -sum_j p_ij log p_ij (nats), a numpy array
    [num_heads] (a head near 0 attends to one key: collapsed; near log S: uniform); None
    before. The fused op writes it as it computes the weights, so a replayed step
    (cgrad.compile) updates it too."""

    # the last forward's entropy (attention_entropy) stays with the original
    _transient = {**Module._transient, "_entropy_from": lambda: None}

    in_proj_weight: Parameter | None
    q_proj_weight: Parameter | None
    k_proj_weight: Parameter | None
    v_proj_weight: Parameter | None

    def __init__(self, embed_dim: int, num_heads: int, dropout: float = 0.0, bias: bool = True,
                 add_bias_kv: bool = False, add_zero_attn: bool = False, kdim: int | None = None,
                 vdim: int | None = None, batch_first: bool = False, device=None, dtype=None):
        super().__init__()
        if embed_dim <= 0 or num_heads <= 0:
            raise ValueError(f"MultiheadAttention: embed_dim and num_heads must be greater than 0, got "
                             f"embed_dim={embed_dim} and num_heads={num_heads}")
        if embed_dim % num_heads:
            raise ValueError(f"MultiheadAttention: embed_dim must be divisible by num_heads, got embed_dim="
                             f"{embed_dim} and num_heads={num_heads}")
        if add_bias_kv or add_zero_attn:
            raise NotImplementedError("MultiheadAttention: add_bias_kv and add_zero_attn are not implemented")
        self.embed_dim, self.num_heads, self.dropout, self.batch_first = embed_dim, num_heads, dropout, batch_first
        self.kdim = kdim if kdim is not None else embed_dim
        self.vdim = vdim if vdim is not None else embed_dim
        self._qkv_same_embed_dim = self.kdim == embed_dim and self.vdim == embed_dim
        self.head_dim = embed_dim // num_heads
        self.bias_k = self.bias_v = None
        dtype = _resolve_dtype(dtype)
        self.add_zero_attn = False
        # PyTorch's _reset_parameters: xavier_uniform_ projections, zero biases; out_proj's
        # weight keeps Linear's initialisation
        if self._qkv_same_embed_dim:
            self.in_proj_weight = Parameter(init.xavier_uniform_(empty((3 * embed_dim, embed_dim), dtype=dtype)))
            self.q_proj_weight = self.k_proj_weight = self.v_proj_weight = None
        else:
            self.q_proj_weight = Parameter(init.xavier_uniform_(empty((embed_dim, embed_dim), dtype=dtype)))
            self.k_proj_weight = Parameter(init.xavier_uniform_(empty((embed_dim, self.kdim), dtype=dtype)))
            self.v_proj_weight = Parameter(init.xavier_uniform_(empty((embed_dim, self.vdim), dtype=dtype)))
            self.in_proj_weight = None
        self.in_proj_bias = Parameter(tensor(np.zeros(3 * embed_dim), dtype=dtype)) if bias else None
        self.out_proj = Linear(embed_dim, embed_dim, bias=bias, dtype=dtype)
        if bias:
            init.zeros_(self.out_proj.bias)
        self._entropy_from: tuple | None = None  # what attention_entropy reads: ("fused", buffer, N) or ("weights", P)

    def extra_repr(self):
        return f"embed_dim={self.embed_dim}, num_heads={self.num_heads}, dropout={self.dropout}"

    @property
    def attention_entropy(self):
        if self._entropy_from is None:
            return None
        kind, t, n = self._entropy_from
        if kind == "fused":  # per (batch, head) block: the mean over the batch
            return t.numpy().reshape(n, self.num_heads).astype(np.float64).mean(0)
        p = t.numpy().astype(np.float64)  # (N, H, L, S) weights
        with np.errstate(divide="ignore", invalid="ignore"):
            plogp = np.where(p > 0, p * np.log(np.where(p > 0, p, 1.0)), 0.0)
        return -plogp.sum(-1).mean(axis=(0, 2))

    def _projections(self, query, key, value):
        """q, k, v: (L, N, E), (S, N, E), (S, N, E) projected."""
        E, b = self.embed_dim, self.in_proj_bias
        bq, bk, bv = (None, None, None) if b is None else (b[:E], b[E:2 * E], b[2 * E:])
        w: Any = self.in_proj_weight
        ws: Any
        if w is not None:
            if query is key and key is value:  # self-attention: one product, then split
                qkv = F.linear(query, w, b)
                return qkv[..., :E], qkv[..., E:2 * E], qkv[..., 2 * E:]
            ws = w[:E], w[E:2 * E], w[2 * E:]
        else:
            ws = self.q_proj_weight, self.k_proj_weight, self.v_proj_weight
        return F.linear(query, ws[0], bq), F.linear(key, ws[1], bk), F.linear(value, ws[2], bv)

    def _check(self, query, key, value, key_padding_mask, attn_mask):
        """The shapes of (L, N, E) inputs and their masks."""
        name, E = "MultiheadAttention", self.embed_dim
        if query.shape[-1] != E:
            raise ValueError(f"{name}: was expecting embedding dimension of {E}, but got query of shape "
                             f"{query.shape}")
        if key.shape[-1] != self.kdim or value.shape[-1] != self.vdim:
            raise ValueError(f"{name}: key of shape {key.shape} and value of shape {value.shape} do not fit kdim="
                             f"{self.kdim} and vdim={self.vdim}")
        if key.shape[:-1] != value.shape[:-1] or key.shape[1] != query.shape[1]:
            raise ValueError(f"{name}: key of shape {key.shape} and value of shape {value.shape} do not match the "
                             f"query of shape {query.shape} (sequence and batch dims)")
        L, N, S = query.shape[0], query.shape[1], key.shape[0]
        if key_padding_mask is not None:
            want = (N, S)
            if tuple(np.shape(key_padding_mask)) != want:
                raise ValueError(f"{name}: expected key_padding_mask of shape {want}, got "
                                 f"{tuple(np.shape(key_padding_mask))} (query {query.shape}, key {key.shape})")
        if attn_mask is not None:
            shape = tuple(np.shape(attn_mask))
            ok = [(L, S), (N * self.num_heads, L, S)]
            if shape not in ok:
                raise ValueError(f"{name}: attn_mask of shape {shape} should be one of {ok} (query {query.shape}, "
                                 f"key {key.shape}, num_heads={self.num_heads})")

    def forward(self, query, key, value, key_padding_mask=None, need_weights: bool = True, attn_mask=None,
                average_attn_weights: bool = True, is_causal: bool = False):
        batched = query.ndim == 3
        if query.ndim not in (2, 3) or key.ndim != query.ndim or value.ndim != query.ndim:
            raise ValueError(f"MultiheadAttention: expected query, key and value of 2 (unbatched) or 3 dims, got "
                             f"query {query.shape}, key {key.shape}, value {value.shape}")
        if is_causal and attn_mask is None:
            raise RuntimeError("MultiheadAttention: need attn_mask if specifying the is_causal hint (query of "
                               f"shape {query.shape})")
        if batched and self.batch_first:  # to (L, N, E), keeping self-attention's identity
            same_kv = key is value
            if query is key:
                query = key = value = query.transpose(0, 1)
            else:
                query, key = query.transpose(0, 1), key.transpose(0, 1)
                value = key if same_kv else value.transpose(0, 1)
        if not batched:  # one sequence: a batch of 1 (an (H, L, S) attn_mask is then (N H, L, S))
            self_attention = query is key and key is value
            query, key, value = query.unsqueeze(1), key.unsqueeze(1), value.unsqueeze(1)
            if self_attention:
                key = value = query
            if key_padding_mask is not None:
                key_padding_mask = key_padding_mask.reshape(1, -1) if isinstance(key_padding_mask, Tensor) \
                    else np.asarray(key_padding_mask).reshape(1, -1)
        self._check(query, key, value, key_padding_mask, attn_mask)
        L, N, E = query.shape
        S, H, hd = key.shape[0], self.num_heads, self.head_dim
        q, k, v = self._projections(query, key, value)
        # (L, N, E) -> (N, H, L, hd)
        q = q.reshape(L, N, H, hd).permute(1, 2, 0, 3)
        k = k.reshape(S, N, H, hd).permute(1, 2, 0, 3)
        v = v.reshape(S, N, H, hd).permute(1, 2, 0, 3)
        mask = _as_additive(attn_mask, q, "attn_mask")
        if mask is not None and mask.ndim == 3:  # (N H, L, S)
            mask = mask.reshape(N, H, L, S)
        kpm = _as_additive(key_padding_mask, q, "key_padding_mask")
        if kpm is not None:
            kpm = kpm.reshape(N, 1, 1, S)
            mask = kpm if mask is None else mask + kpm
        p_drop = self.dropout if self.training else 0.0
        weights = None
        if need_weights:
            scores = (q @ k.transpose(-2, -1)) * (1.0 / np.sqrt(hd))
            p = (scores if mask is None else scores + mask).softmax(-1)
            if self.training:
                self._entropy_from = ("weights", p.detach(), N)
            if p_drop > 0:  # the weights returned are the dropped ones, as PyTorch's
                p = F.dropout(p, p_drop, training=True)
            out = p @ v
            weights = p.mean(1) if average_attn_weights else p
            if not batched:
                weights = weights.squeeze(0)
        else:
            entropy = _C.empty((N * H,), q.dtype) if self.training else None
            out = F._sdpa(q, k, v, mask, p_drop, False, None, False, entropy)
            if entropy is not None:
                self._entropy_from = ("fused", entropy, N)
        out = self.out_proj(out.permute(2, 0, 1, 3).reshape(L, N, E))
        if not batched:
            out = out.squeeze(1)
        elif self.batch_first:
            out = out.transpose(0, 1)
        return out, weights


_ACTIVATIONS = {"relu": F.relu, "gelu": F.gelu}


class TransformerEncoderLayer(Module):
    """Self-attention and a feed-forward block, each with a residual connection and a layer
    norm (after it, or before with norm_first), as torch.nn.TransformerEncoderLayer: the
    submodules self_attn, linear1, dropout, linear2, norm1, norm2, dropout1, dropout2, so a
    PyTorch state_dict loads. Self-attention runs the fused op (need_weights=False)."""

    def __init__(self, d_model: int, nhead: int, dim_feedforward: int = 2048, dropout: float = 0.1,
                 activation="relu", layer_norm_eps: float = 1e-5, batch_first: bool = False,
                 norm_first: bool = False, bias: bool = True, device=None, dtype=None):
        super().__init__()
        if isinstance(activation, str):
            if activation not in _ACTIVATIONS:
                raise RuntimeError(f"TransformerEncoderLayer: activation should be relu/gelu, not {activation}")
            activation = _ACTIVATIONS[activation]
        # what a TransformerEncoder needs to make copies of the layer
        self._config = dict(d_model=d_model, nhead=nhead, dim_feedforward=dim_feedforward, dropout=dropout,
                            activation=activation, layer_norm_eps=layer_norm_eps, batch_first=batch_first,
                            norm_first=norm_first, bias=bias, dtype=dtype)
        self.self_attn = MultiheadAttention(d_model, nhead, dropout=dropout, bias=bias, batch_first=batch_first,
                                            dtype=dtype)
        self.linear1 = Linear(d_model, dim_feedforward, bias=bias, dtype=dtype)
        self.dropout = Dropout(dropout)
        self.linear2 = Linear(dim_feedforward, d_model, bias=bias, dtype=dtype)
        self.norm_first = norm_first
        self.norm1 = LayerNorm(d_model, eps=layer_norm_eps, bias=bias, dtype=dtype)
        self.norm2 = LayerNorm(d_model, eps=layer_norm_eps, bias=bias, dtype=dtype)
        self.dropout1 = Dropout(dropout)
        self.dropout2 = Dropout(dropout)
        self.activation = activation

    def _sa_block(self, x, attn_mask, key_padding_mask, is_causal):
        x = self.self_attn(x, x, x, attn_mask=attn_mask, key_padding_mask=key_padding_mask, need_weights=False,
                           is_causal=is_causal)[0]
        return self.dropout1(x)

    def _ff_block(self, x):
        return self.dropout2(self.linear2(self.dropout(self.activation(self.linear1(x)))))

    def forward(self, src, src_mask=None, src_key_padding_mask=None, is_causal: bool = False):
        x = src
        if self.norm_first:
            x = x + self._sa_block(self.norm1(x), src_mask, src_key_padding_mask, is_causal)
            return x + self._ff_block(self.norm2(x))
        x = self.norm1(x + self._sa_block(x, src_mask, src_key_padding_mask, is_causal))
        return self.norm2(x + self._ff_block(x))


class TransformerEncoder(Module):
    """num_layers copies of encoder_layer (layers.0, layers.1, ..., each with the given
    layer's parameters at the start, as PyTorch's deep copies), then norm when given."""

    def __init__(self, encoder_layer: TransformerEncoderLayer, num_layers: int, norm=None,
                 enable_nested_tensor: bool = True, mask_check: bool = True):
        super().__init__()
        layers = []
        for _ in range(num_layers):
            layer = TransformerEncoderLayer(**encoder_layer._config)
            layer.load_state_dict(encoder_layer.state_dict())
            layers.append(layer)
        self.layers = ModuleList(layers)
        self.num_layers = num_layers
        self.norm = norm

    def forward(self, src, mask=None, src_key_padding_mask=None, is_causal=None):
        x = src
        for layer in self.layers:
            x = layer(x, src_mask=mask, src_key_padding_mask=src_key_padding_mask, is_causal=bool(is_causal))
        return self.norm(x) if self.norm is not None else x
