# Attention: the entry points of csrc/attention.c.

def scaled_dot_product_attention(TensorBase query not None, TensorBase key not None, TensorBase value not None,
                                 TensorBase mask, bint is_causal, double scale, TensorBase entropy=None):
    """The fused attention of csrc/attention.c: softmax(scale q k^T + mask) v over blocks of
    equal batch dims (nn.functional.scaled_dot_product_attention broadcasts them and turns a
    bool mask into an additive one first). entropy: a buffer the forward writes each block's
    mean row entropy into."""
    cdef cg_tensor *out = NULL
    cdef cg_status st
    cdef cg_tensor *m = mask.t if mask is not None else NULL
    cdef cg_tensor *e = entropy.t if entropy is not None else NULL
    cdef int64_t macs = query.t.numel * (key.t.shape[key.t.ndim - 2] if key.t.ndim >= 2 else 1)
    if macs >= _NOGIL_MACS:
        with nogil:
            st = cg_scaled_dot_product_attention(query.t, key.t, value.t, m, is_causal, scale, e, &out)
    else:
        st = cg_scaled_dot_product_attention(query.t, key.t, value.t, m, is_causal, scale, e, &out)
    _check(st)
    return _wrap(out)
