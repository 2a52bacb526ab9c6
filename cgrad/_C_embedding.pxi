# Embedding and the sequence losses: the entry points of csrc/embedding.c and loss.c's additions.

EMB_SCALE_FREQ = CG_EMB_SCALE_FREQ

def embedding(input, TensorBase weight not None, padding_idx=None, max_norm=None, double norm_type=2.0,
              bint scale_grad_by_freq=False, bint sparse=False):
    """PyTorch's F.embedding: the rows of weight [V, D] at the integer ids `input` (any shape;
    int64 or int32), shape input.shape + (D,), one C op. Backward adds g's rows into the rows
    used; padding_idx's row gets no gradient; scale_grad_by_freq divides each row's gradient
    by its id's count in input. max_norm renormalises the used rows of weight in place.
    sparse=True is accepted, but the gradient is dense (cgrad has no sparse tensors)."""
    cdef cg_tensor *out = NULL
    cdef cg_tensor *ids_t
    cdef const int64_t *ids
    cdef int64_t[::1] view
    cdef int64_t shape[8]
    cdef int64_t dummy = 0, pad = -1, V = weight.t.shape[0] if weight.t.ndim else 0
    cdef int nd, flags = 0
    if isinstance(input, TensorBase) and (<TensorBase>input).t.dtype == CG_I64:
        ids_t = (<TensorBase>input).t  # the tensor's own memory: a replayed step re-reads it
        ids = <const int64_t *>ids_t.data
        nd = ids_t.ndim
        for i in range(nd):
            shape[i] = ids_t.shape[i]
    else:
        a = np.asarray(input)
        if a.dtype.kind not in "iu":
            raise TypeError(f"embedding: the ids must be an integer tensor (int64 or int32), not {a.dtype} "
                            f"(of shape {a.shape})")
        a = np.asarray(a, dtype=np.int64, order="C")  # keeps 0-dim ids 0-dim
        nd = _shape_from(a.shape, shape)
        view = a.reshape(-1)
        ids = &view[0] if view.shape[0] else &dummy
    if padding_idx is not None:
        pad = padding_idx
        if not -V <= pad < V:
            raise ValueError(f"embedding: padding_idx {padding_idx} must be within num_embeddings (the weight has "
                             f"shape {weight.shape})")
        if pad < 0:
            pad += V
    if max_norm is not None:
        flags |= CG_EMB_MAX_NORM
    if scale_grad_by_freq:
        flags |= CG_EMB_SCALE_FREQ
    _check(cg_embedding(weight.t, ids, nd, shape, pad, 0.0 if max_norm is None else max_norm, norm_type, flags,
                        &out))
    return _wrap(out)

def embedding_node_ids(TensorBase t):
    """A numpy copy of the ids kept by the embedding node that made t (its taped rule's)."""
    cdef double p[2]
    cdef int64_t ip[9]
    cdef const void *extra = NULL
    cdef int op = cg_node_params(t.t, p, ip, &extra)
    if op != CG_OP_EMBEDDING or extra == NULL:
        raise RuntimeError("embedding_node_ids: the tensor was not made by an embedding node")
    return np.asarray(<const int64_t[:ip[0]]>(<const int64_t *>extra)).copy() if ip[0] else np.zeros(0, np.int64)
