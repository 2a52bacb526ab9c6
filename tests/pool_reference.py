"""Naive numpy pooling, loop by loop, as PyTorch defines it: the reference of
tests/test_pool.py and of the pooling lines of tests/op_table.py.

Written from the definitions, not from cgrad's window tables: a plain window exists while
it fits in the padded input, or (ceil_mode) while it starts inside the input or the left
padding and the one before it did not reach the padded end; its taps are start + k *
dilation, those outside the input skipped; an adaptive window is [floor(i L / O),
ceil((i + 1) L / O)).
"""
import itertools

import numpy as np


def _dims(v, n):
    return (v,) * n if np.isscalar(v) else tuple(v)


def _plain_windows(n, k, s, p, d, ceil_mode, count_include_pad):
    """[(taps inside the input, divisor count)] of one dim."""
    span = (k - 1) * d + 1
    out = []
    for o in itertools.count():
        start = o * s - p
        fits = start + span <= n + p
        if not (fits or (ceil_mode and start < n and (o - 1) * s - p + span < n + p)):
            break
        taps = [start + j * d for j in range(k) if 0 <= start + j * d < n]
        # PyTorch counts the padding up to the padded end, not the taps of a window past it
        count = min(start + k, n + p) - start if count_include_pad else len(taps)
        out.append((taps, count))
    return out


def _adaptive_windows(n, o):
    wins = []
    for i in range(o):
        a, b = (i * n) // o, -(-((i + 1) * n) // o)
        wins.append((list(range(a, b)), b - a))
    return wins


def windows(shape, spatial, kernel=None, stride=None, padding=0, dilation=1, ceil_mode=False,
            count_include_pad=True, output_size=None):
    """Per spatial dim, the list of windows (taps, count)."""
    sizes = shape[len(shape) - spatial:]
    if output_size is not None:
        outs = [n if o is None else o for n, o in zip(sizes, _dims(output_size, spatial))]
        return [_adaptive_windows(n, o) for n, o in zip(sizes, outs)]
    k = _dims(kernel, spatial)
    s = k if stride is None else _dims(stride, spatial)
    return [_plain_windows(n, kk, ss, pp, dd, ceil_mode, count_include_pad)
            for n, kk, ss, pp, dd in zip(sizes, k, s, _dims(padding, spatial), _dims(dilation, spatial))]


def _routes(x, mode, spatial, divisor_override=None, **geometry):
    """The output's shape, and per output element (plane, its index, value, [(input index,
    weight)]): max routes to its arg-max with weight 1 (and names it, -1 for no tap), the
    average to each tap with weight 1 / divisor."""
    wins = windows(x.shape, spatial, **geometry)
    lead, sizes = x.shape[:x.ndim - spatial], x.shape[x.ndim - spatial:]
    out_shape = lead + tuple(len(w) for w in wins)
    routes = []
    for plane in np.ndindex(*lead):
        for at in np.ndindex(*out_shape[len(lead):]):
            per_dim = [wins[d][at[d]] for d in range(spatial)]
            taps = list(itertools.product(*[t for t, _ in per_dim]))
            if mode == "max":
                best, arg = -np.inf, (taps[0] if taps else None)
                for tap in taps:  # PyTorch's rule: a larger value or a NaN takes over
                    v = x[plane + tap]
                    if v > best or np.isnan(v):
                        best, arg = v, tap
                routes.append((plane + at, best, [] if arg is None else [(plane + arg, 1.0)],
                               -1 if arg is None else np.ravel_multi_index(arg, sizes)))
            else:
                total = sum((x[plane + tap] for tap in taps), x.dtype.type(0))
                div = divisor_override or int(np.prod([c for _, c in per_dim]))
                routes.append((plane + at, total / div if taps else 0, [(plane + t, 1.0 / div) for t in taps], 0))
    return out_shape, routes


def pool(x, mode, spatial, divisor_override=None, **geometry):
    """mode 'max' -> (values, indices), 'avg' -> values; geometry: windows()'s keywords."""
    x = np.asarray(x)
    out_shape, routes = _routes(x, mode, spatial, divisor_override, **geometry)
    values = np.zeros(out_shape, x.dtype)
    indices = np.zeros(out_shape, np.int64)
    for at, value, _, index in routes:
        values[at], indices[at] = value, index
    return (values, indices) if mode == "max" else values


def pool_grad(x, g, mode, spatial, divisor_override=None, **geometry):
    """d(sum(g * pool(x)))/dx: g routed back along each output's taps."""
    x = np.asarray(x)
    _, routes = _routes(x, mode, spatial, divisor_override, **geometry)
    dx = np.zeros(x.shape, np.float64)
    for at, _, taps, _ in routes:
        for tap, weight in taps:
            dx[tap] += g[at] * weight
    return dx


def max_pool(x, spatial, **geometry):
    return pool(x, "max", spatial, **geometry)


def avg_pool(x, spatial, **geometry):
    return pool(x, "avg", spatial, **geometry)


def adjoint(fn, in_shape, g):
    """J^T g for the linear map fn (numpy arrays of in_shape to arrays of g's shape),
    built column by column from unit inputs."""
    out = np.zeros(int(np.prod(in_shape)), g.dtype)
    for i in range(out.size):
        e = np.zeros(out.size, g.dtype)
        e[i] = 1
        out[i] = np.sum(fn(e.reshape(in_shape)) * g)
    return out.reshape(in_shape)


def scatter_at(indices, g, in_shape, spatial):
    """g added at the flat plane indices (max pooling's gradient)."""
    lead = in_shape[:len(in_shape) - spatial]
    out = np.zeros((int(np.prod(lead, dtype=np.int64)), int(np.prod(in_shape[len(lead):]))), g.dtype)
    for p, (idx, gv) in enumerate(zip(indices.reshape(len(out), -1), g.reshape(len(out), -1))):
        for i, v in zip(idx, gv):
            if i >= 0:
                out[p, i] += v
    return out.reshape(in_shape)


def gather_at(indices, u, spatial):
    """u read at the flat plane indices (0 where -1)."""
    lead = indices.shape[:indices.ndim - spatial]
    planes = u.reshape(int(np.prod(lead, dtype=np.int64)), -1)
    idx = indices.reshape(len(planes), -1)
    got = np.where(idx >= 0, np.take_along_axis(planes, np.maximum(idx, 0), 1), 0)
    return got.reshape(indices.shape).astype(u.dtype)


# The geometry of the op-table lines of the taped rules' maps (avg_pool_backward,
# max_pool_backward, max_pool_select): max_pool2d(3, 2, 1, ceil_mode=True) of (2, 2, 5, 6)
# into (2, 2, 3, 4).
TAPED_ARGS = dict(kernel=3, stride=2, padding=1, ceil_mode=True)


def taped_geometry():
    from cgrad import _C
    return _C.PoolGeometry(2, (5, 6), (3, 4), (3, 3), (2, 2), (1, 1), (1, 1), True, 0)


def torch_select(torch, u, x):
    """max_pool_select in PyTorch: u read at the arg-maxes of max_pool2d(x, TAPED_ARGS)."""
    _, idx = torch.nn.functional.max_pool2d(x, 3, 2, 1, ceil_mode=True, return_indices=True)
    return u.flatten(2).gather(2, idx.flatten(2)).view(idx.shape)
