# Convolution: the entry points of csrc/conv.c. The facade (nn.functional.conv1d/conv2d)
# resolves PyTorch's arguments (ints, tuples, 'same', 'valid') into these pairs; each pair
# is (height, width), a 1-D convolution's height entries being (1, 0, 1).

cdef int _pairs(object stride, object pad, object dilation, object size, int64_t *out) except -1:
    cdef int i
    for i in range(2):
        out[i] = stride[i]
        out[2 + i] = pad[i]
        out[4 + i] = dilation[i]
        out[6 + i] = size[i]
    return 0

def conv(TensorBase x not None, TensorBase w not None, TensorBase b, stride, pad, dilation, int64_t groups, out_hw):
    """Convolution y = x * w (+ b) in PyTorch's layouts; out_hw implies the padding after."""
    cdef int64_t p[8]
    cdef cg_tensor *out = NULL
    cdef cg_tensor *bt = b.t if b is not None else NULL
    cdef cg_status st
    _pairs(stride, pad, dilation, out_hw, p)
    if x.t.numel * w.t.numel >= _NOGIL_MACS:
        with nogil:
            st = cg_conv(x.t, w.t, bt, p, p + 2, p + 4, groups, p + 6, &out)
    else:
        st = cg_conv(x.t, w.t, bt, p, p + 2, p + 4, groups, p + 6, &out)
    _check(st)
    return _wrap(out)

def conv_dx(TensorBase g not None, TensorBase w not None, stride, pad, dilation, int64_t groups, in_hw):
    """The convolution's adjoint in its input: col2im(dY W), of the input's shape."""
    cdef int64_t p[8]
    cdef cg_tensor *out = NULL
    _pairs(stride, pad, dilation, in_hw, p)
    _check(cg_conv_dx(g.t, w.t, p, p + 2, p + 4, groups, p + 6, &out))
    return _wrap(out)

def conv_dw(TensorBase g not None, TensorBase x not None, stride, pad, dilation, int64_t groups, k_hw):
    """The convolution's adjoint in its weight: dY^T col(x), of the weight's shape."""
    cdef int64_t p[8]
    cdef cg_tensor *out = NULL
    _pairs(stride, pad, dilation, k_hw, p)
    _check(cg_conv_dw(g.t, x.t, p, p + 2, p + 4, groups, p + 6, &out))
    return _wrap(out)
