# Pooling: the entry points of csrc/pool.c. cgrad/nn/functional.py turns PyTorch's arguments
# into a PoolGeometry (and raises PyTorch's errors); these hand it to the core as it is.

from collections import namedtuple as _namedtuple

# Per spatial dim, in PyTorch's order ((H, W), or (L,) for 1-D): the input and output sizes,
# and the kernel, stride, padding and dilation; a kernel of 0 is adaptive (the others are
# then ignored). count_include_pad and divisor (0: none, else divisor_override) serve averages.
PoolGeometry = _namedtuple("PoolGeometry", "spatial in_size out_size kernel stride padding dilation "
                                          "count_include_pad divisor")

cdef int _pool_geom(object geom, cg_pool_geom *g) except -1:
    cdef int sp = geom[0], d
    if sp != 1 and sp != 2:
        raise ValueError(f"pooling: pools 1 or 2 dims, not {sp}")
    memset(g, 0, sizeof(cg_pool_geom))
    g.spatial = sp
    g.count_include_pad = bool(geom[7])
    g.divisor = geom[8]
    in_size, out_size, kernel, stride, pad, dilation = geom[1:7]
    for i in range(sp):
        d = 2 - sp + i
        g.in_size[d] = in_size[i]
        g.out_size[d] = out_size[i]
        g.kernel[d] = kernel[i]
        g.stride[d] = stride[i]
        g.pad[d] = pad[i]
        g.dilation[d] = dilation[i]
    return 0

def max_pool(TensorBase x not None, geom, bint return_indices=False):
    """The max of each window of x's last geom.spatial dims; with return_indices also each
    max's flat index in its input plane (int64), as PyTorch's."""
    cdef cg_pool_geom g
    cdef cg_tensor *out = NULL
    cdef cg_tensor *idx = NULL
    _pool_geom(geom, &g)
    _check(cg_max_pool(x.t, &g, &out, &idx if return_indices else NULL))
    if return_indices:
        return _wrap(out), _wrap(idx)
    return _wrap(out)

def avg_pool(TensorBase x not None, geom):
    cdef cg_pool_geom g
    cdef cg_tensor *out = NULL
    _pool_geom(geom, &g)
    _check(cg_avg_pool(x.t, &g, &out))
    return _wrap(out)

def avg_pool_backward(TensorBase g not None, geom):
    """avg_pool's adjoint: g (shaped like its output) spread over the windows (shaped like its input)."""
    cdef cg_pool_geom pg
    cdef cg_tensor *out = NULL
    _pool_geom(geom, &pg)
    _check(cg_avg_pool_backward(g.t, &pg, &out))
    return _wrap(out)

def max_pool_backward(TensorBase g not None, TensorBase x not None, geom):
    """g (shaped like max_pool(x)) added at the arg-max of each of x's windows; x gets no gradient."""
    cdef cg_pool_geom pg
    cdef cg_tensor *out = NULL
    _pool_geom(geom, &pg)
    _check(cg_max_pool_backward(g.t, x.t, &pg, &out))
    return _wrap(out)

def max_pool_select(TensorBase u not None, TensorBase x not None, geom):
    """u (shaped like x) read at the arg-max of each of x's windows; x gets no gradient."""
    cdef cg_pool_geom pg
    cdef cg_tensor *out = NULL
    _pool_geom(geom, &pg)
    _check(cg_max_pool_select(u.t, x.t, &pg, &out))
    return _wrap(out)

def pool_geometry(TensorBase t not None):
    """The PoolGeometry of the pooling op that made t (for the taped rules)."""
    cdef cg_pool_geom g
    if cg_pool_node_geom(t.t, &g) < 0:
        raise RuntimeError("pool_geometry: the tensor was not made by a pooling op")
    dims = range(2 - g.spatial, 2)
    return PoolGeometry(g.spatial, tuple([g.in_size[d] for d in dims]), tuple([g.out_size[d] for d in dims]),
                        tuple([g.kernel[d] for d in dims]), tuple([g.stride[d] for d in dims]),
                        tuple([g.pad[d] for d in dims]), tuple([g.dilation[d] for d in dims]),
                        bool(g.count_include_pad), g.divisor)
