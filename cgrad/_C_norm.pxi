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
