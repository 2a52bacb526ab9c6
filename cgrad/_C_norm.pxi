# Normalisation: the entry points of csrc/norm.c.

# batch_norm's node flags (node_params' ip[3]), for its taped rule
BN_WEIGHT, BN_BIAS, BN_RUNNING, BN_TRAINING = CG_BN_WEIGHT, CG_BN_BIAS, CG_BN_RUNNING, CG_BN_TRAINING

def batch_norm(TensorBase input not None, TensorBase weight, TensorBase bias, TensorBase running_mean,
               TensorBase running_var, TensorBase num_batches_tracked, bint training, momentum, double eps):
    """The fused batch norm over input [N, C, *] (nn.functional.batch_norm and the BatchNorm
    layers call it): batch statistics in training, updating running_mean/running_var in
    place (and counting num_batches_tracked) when given; the running ones otherwise.
    momentum None: the cumulative average over num_batches_tracked batches."""
    cdef cg_tensor *out = NULL
    cdef cg_status st
    cdef cg_tensor *w = weight.t if weight is not None else NULL
    cdef cg_tensor *b = bias.t if bias is not None else NULL
    cdef cg_tensor *rm = running_mean.t if running_mean is not None else NULL
    cdef cg_tensor *rv = running_var.t if running_var is not None else NULL
    cdef cg_tensor *count = num_batches_tracked.t if num_batches_tracked is not None else NULL
    cdef int cumulative = momentum is None
    cdef double m = 0.0 if cumulative else momentum
    if input.t.numel >= _NOGIL_MACS:
        with nogil:
            st = cg_batch_norm(input.t, w, b, rm, rv, count, training, m, cumulative, eps, &out)
    else:
        st = cg_batch_norm(input.t, w, b, rm, rv, count, training, m, cumulative, eps, &out)
    _check(st)
    return _wrap(out)

# layer_norm's and rms_norm's node flags (node_params' ip[2]), for their taped rule
LN_WEIGHT, LN_BIAS = CG_LN_WEIGHT, CG_LN_BIAS

cdef object _layer_norm(TensorBase input, normalized_shape, TensorBase weight, TensorBase bias, double eps,
                        int rms):
    cdef cg_tensor *out = NULL
    cdef cg_status st
    cdef int64_t nshape[8]
    cdef int nd
    cdef cg_tensor *w = weight.t if weight is not None else NULL
    cdef cg_tensor *b = bias.t if bias is not None else NULL
    if isinstance(normalized_shape, int):
        normalized_shape = (normalized_shape,)
    nd = _shape_from(tuple(normalized_shape), nshape)
    if input.t.numel >= _NOGIL_MACS:
        with nogil:
            st = cg_layer_norm(input.t, nd, nshape, w, b, eps, rms, &out)
    else:
        st = cg_layer_norm(input.t, nd, nshape, w, b, eps, rms, &out)
    _check(st)
    return _wrap(out)

def layer_norm(TensorBase input not None, normalized_shape, TensorBase weight=None, TensorBase bias=None,
               double eps=1e-5):
    """PyTorch's F.layer_norm: each row over the last len(normalized_shape) dims normalised by
    its mean and biased variance, then times weight and plus bias (one fused C op)."""
    return _layer_norm(input, normalized_shape, weight, bias, eps, 0)

def rms_norm(TensorBase input not None, normalized_shape, TensorBase weight=None, eps=None):
    """PyTorch's F.rms_norm: x / sqrt(mean(x^2) + eps) * weight over the last dims; eps None is
    the machine epsilon of input's dtype (one fused C op)."""
    if eps is None:
        eps = np.finfo(np.float32 if input.t.dtype == CG_F32 else np.float64).eps
    return _layer_norm(input, normalized_shape, weight, None, eps, 1)
