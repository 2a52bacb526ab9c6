/* pool.c: max and average pooling, plain and adaptive, over the last one or two dims
 * (1-D as 2-D with a height of 1), and the two maps the taped rules need.
 *
 * A pooling op is a list of windows per spatial dim: for each output index, the first input
 * index it reads, how many it reads (every dilation-th from there) and the average's
 * divisor factor. The windows are built once per call from the geometry (plain: PyTorch's
 * stride, padding, dilation, ceil_mode clipping; adaptive: floor/ceil bounds), so padding
 * never shows up as a test per tap, and max, average and adaptive pooling share one loop
 * per mode. The node keeps the geometry, the windows and (max) each output's arg-max in
 * one block (node->extra); a replay rebuilds the arg-maxes in place.
 *
 *   max_pool(x)             y[o] = max of x over o's window     dx[argmax o] += g[o]
 *   avg_pool(x)             y[o] = mean of x over o's window    dx[window o] += g[o] / div
 *   avg_pool_backward(g)    avg_pool's adjoint                   its gradient: avg_pool
 *   max_pool_backward(g, x) g added at x's arg-maxes            dg[o] += G[argmax o]
 *   max_pool_select(u, x)   u read at x's arg-maxes             du[argmax o] += g[o]
 * The last two are each other's adjoint in their first argument; their gradient for x is
 * zero (the arg-maxes are piecewise constant), so max pooling is differentiable to any order.
 */
#include "cg_internal.h"

#include <math.h>

typedef struct {
    cg_pool_geom geom;   /* normalised: for 1-D, dim 0 is a dummy of size 1 */
    int64_t planes;      /* the product of the dims before the spatial ones */
    int64_t *win[2];     /* per dim, 3 int64 per output index: first input index, taps, divisor factor */
    int64_t *argmax;     /* max ops: planes x out plane, flat indices in the input plane; else NULL */
    int64_t full_lo, full_hi; /* the output columns whose windows hold all kernel[1] taps (plain dims) */
    int all_full;             /* every window holds all its kernel's taps (none reaches the padding) */
} pool_data;

/* The loops' helpers are inlined into their CG_SIMD callers, so that each clone vectorises
 * them for its instruction set (called out of line, they ran the baseline's scalar code). */
#define CG_POOL_INLINE __attribute__((always_inline))
#define CG_IMPL "pool_impl.h"
#include "cg_each_dtype.h"

static int is_pool_op(int op) {
    return op == CG_OP_MAX_POOL || op == CG_OP_AVG_POOL || op == CG_OP_AVG_POOL_BACKWARD ||
           op == CG_OP_MAX_POOL_BACKWARD || op == CG_OP_MAX_POOL_SELECT;
}

static int64_t in_plane(const pool_data *pd) { return pd->geom.in_size[0] * pd->geom.in_size[1]; }
static int64_t out_plane(const pool_data *pd) { return pd->geom.out_size[0] * pd->geom.out_size[1]; }

/* Dim d's windows into win (3 per output index). */
static void dim_windows(const cg_pool_geom *g, int d, int64_t *win) {
    int64_t in = g->in_size[d], out = g->out_size[d], k = g->kernel[d], s = g->stride[d], pad = g->pad[d],
            dil = g->dilation[d];
    for (int64_t o = 0; o < out; o++, win += 3) {
        if (k == 0) { /* adaptive: [floor(o in / out), ceil((o + 1) in / out)) */
            int64_t a = o * in / out, b = ((o + 1) * in + out - 1) / out;
            win[0] = a;
            win[1] = win[2] = b - a;
            continue;
        }
        int64_t start = o * s - pad;
        int64_t m0 = start < 0 ? (-start + dil - 1) / dil : 0; /* the first tap inside the input */
        int64_t m1 = start < in ? (in - start + dil - 1) / dil : 0; /* past the last */
        if (m1 > k) m1 = k;
        int64_t n = m1 > m0 ? m1 - m0 : 0;
        win[0] = start + m0 * dil;
        win[1] = n;
        /* as PyTorch: with the padding, the window clipped at the padded end; else the taps */
        int64_t count = g->count_include_pad ? (start + k < in + pad ? start + k : in + pad) - start : n;
        win[2] = count > 0 ? count : 1; /* an empty window sums to 0; 0 / 1, not 0 / 0 */
    }
}

/* Check geom against t (whose last spatial dims have the sizes `sizes`: in_size or out_size)
 * and build the node's block: geometry, windows, and room for the arg-maxes when `argmax`. */
static cg_status plan(const char *op, const cg_pool_geom *geom, const cg_tensor *t, int sizes_are_out,
                      int argmax, pool_data **out) {
    char b1[CG_SHAPE_BUF], b2[CG_SHAPE_BUF];
    cg_pool_geom g = *geom;
    int sp = g.spatial;
    if (sp != 1 && sp != 2) return cg_error(CG_ERR_VALUE, "%s: pools 1 or 2 dims, not %d", op, sp);
    if (sp == 1) { /* the dummy height */
        g.in_size[0] = g.out_size[0] = g.kernel[0] = g.stride[0] = g.dilation[0] = 1;
        g.pad[0] = 0;
    }
    const int64_t *sizes = sizes_are_out ? g.out_size : g.in_size;
    int ok = t->ndim >= sp;
    for (int d = 2 - sp; ok && d < 2; d++) ok = t->shape[t->ndim - 2 + d] == sizes[d];
    if (!ok)
        return cg_error(CG_ERR_SHAPE, "%s: a tensor of shape %s does not end in the %s size %s", op,
                        cg_shape_str(t->ndim, t->shape, b1, sizeof b1), sizes_are_out ? "output" : "input",
                        cg_shape_str(sp, sizes + 2 - sp, b2, sizeof b2));
    for (int d = 0; d < 2; d++) {
        int64_t in = g.in_size[d], o = g.out_size[d], k = g.kernel[d];
        int plain = k > 0;
        if (k == 0) { /* adaptive: contiguous windows, whatever the caller passed */
            g.stride[d] = g.dilation[d] = 1;
            g.pad[d] = 0;
        }
        /* every o * stride and (o + 1) * in below stays far from overflow */
        if (in < 0 || o < 0 || k < 0 || in > ((int64_t)1 << 31) || o > ((int64_t)1 << 31) ||
            (plain && (g.stride[d] < 1 || g.stride[d] > ((int64_t)1 << 20) || g.pad[d] < 0 || g.pad[d] > k ||
                       g.dilation[d] < 1 || k > ((int64_t)1 << 20) || g.dilation[d] > ((int64_t)1 << 20))))
            return cg_error(CG_ERR_VALUE, "%s: bad window geometry for dim %d: input %lld, output %lld, kernel "
                                          "%lld, stride %lld, padding %lld, dilation %lld", op, d - 2 + sp,
                            (long long)in, (long long)o, (long long)k, (long long)g.stride[d],
                            (long long)g.pad[d], (long long)g.dilation[d]);
    }
    if (!argmax && (g.dilation[0] != 1 || g.dilation[1] != 1)) /* the loops and divisors assume none */
        return cg_error(CG_ERR_VALUE, "%s: averages take no dilation", op);
    int64_t planes = cg_numel(t->ndim - sp, t->shape), n_out;
    if (__builtin_mul_overflow(planes, g.out_size[0] * g.out_size[1], &n_out) || n_out > ((int64_t)1 << 56))
        return cg_error(CG_ERR_NOMEM, "%s: an output of %lld planes of %lld x %lld is too large", op,
                        (long long)planes, (long long)g.out_size[0], (long long)g.out_size[1]);
    size_t words = (size_t)(3 * (g.out_size[0] + g.out_size[1]) + (argmax ? n_out : 0));
    pool_data *pd = cg_malloc(sizeof *pd + words * sizeof(int64_t));
    if (!pd) return cg_error(CG_ERR_NOMEM, "%s: out of memory", op);
    pd->geom = g;
    pd->planes = planes;
    pd->win[0] = (int64_t *)(pd + 1);
    pd->win[1] = pd->win[0] + 3 * g.out_size[0];
    pd->argmax = argmax ? pd->win[1] + 3 * g.out_size[1] : NULL;
    dim_windows(&g, 0, pd->win[0]);
    dim_windows(&g, 1, pd->win[1]);
    /* full windows are consecutive: those that start inside the input and end inside it */
    pd->full_lo = pd->full_hi = 0;
    for (int64_t j = 0; g.kernel[1] > 0 && j < g.out_size[1]; j++)
        if (pd->win[1][3 * j + 1] == g.kernel[1]) {
            if (pd->full_hi == pd->full_lo) pd->full_lo = j;
            pd->full_hi = j + 1;
        }
    pd->all_full = pd->full_lo == 0 && pd->full_hi == g.out_size[1] && g.kernel[0] > 0 && g.kernel[1] > 0 &&
                   g.in_size[0] > 0 && g.in_size[1] > 0; /* then every gathered tap is inside the plane */
    for (int64_t i = 0; i < g.out_size[0]; i++) pd->all_full &= pd->win[0][3 * i + 1] == g.kernel[0];
    *out = pd;
    return CG_OK;
}

/* t's shape with the spatial dims set to sizes (in_size or out_size) */
static void shape_with(const cg_tensor *t, const pool_data *pd, const int64_t *sizes, int64_t *shape) {
    int sp = pd->geom.spatial;
    memcpy(shape, t->shape, sizeof t->shape);
    for (int d = 2 - sp; d < 2; d++) shape[t->ndim - 2 + d] = sizes[d];
}

/* Record y (inputs ins); the node keeps pd, or pd is freed. */
static cg_status finish(int op, int n, cg_tensor **ins, cg_tensor *y, pool_data *pd, cg_node **pnode,
                        cg_tensor **out) {
    cg_node *node;
    cg_status st = cg_record(op, n, ins, y, &node);
    if (st) {
        cg_free(pd);
        return st;
    }
    if (node) node->extra = pd;
    else if (!pnode) cg_free(pd);
    if (pnode) *pnode = node;
    *out = y;
    return CG_OK;
}

/* ---- float32 max pooling with AVX-512 gathers, where every window is full ----
 * The loops of pool_impl.h run one window's compare-and-select chain at a time (a few ns per
 * tap: MaxPool2d(2) over the digits CNN's 8 x 8 planes cost 330 us of its 1.7 ms step), or
 * vectorise across the columns of one row, of which an 8 x 8 plane pooled by 2 has 4. Here
 * 16 outputs advance together tap by tap, each tap one gather: the windows' starts are
 * computed once per 16 outputs of a plane and serve every plane. The same scan order and
 * take rule as max_window_, so the same values and arg-maxes. */
#if defined(__GNUC__) && defined(__x86_64__)
#include <immintrin.h>
#define HAVE_POOL_AVX512 1
__attribute__((target("avx512f"))) static void max_full_avx512(const pool_data *pd, const float *X, float *Y,
                                                               int64_t *A) {
    const cg_pool_geom *g = &pd->geom;
    const int64_t W = g->in_size[1], plane = g->in_size[0] * W, OW = g->out_size[1], P = g->out_size[0] * OW;
    const int64_t kh = g->kernel[0], kw = g->kernel[1], dh = g->dilation[0], dw = g->dilation[1];
    for (int64_t q0 = 0; q0 < P; q0 += 16) {
        int32_t start[16];
        for (int l = 0; l < 16; l++) { /* lanes past P repeat the last output: valid reads, not stored */
            int64_t q = q0 + l < P ? q0 + l : P - 1, i = q / OW, j = q % OW;
            start[l] = (int32_t)(pd->win[0][3 * i] * W + pd->win[1][3 * j]);
        }
        __m512i vstart = _mm512_loadu_si512(start);
        __mmask16 m = (__mmask16)(P - q0 >= 16 ? 0xFFFF : (1u << (P - q0)) - 1);
        __mmask8 m_lo = (__mmask8)(m & 0xFF), m_hi = (__mmask8)(m >> 8);
        for (int64_t p = 0; p < pd->planes; p++) {
            const float *x = X + p * plane;
            __m512 best = _mm512_i32gather_ps(vstart, x, 4);
            __m512i arg = vstart;
            for (int64_t a = 0; a < kh; a++)
                for (int64_t b = a ? 0 : 1; b < kw; b++) {
                    __m512i idx = _mm512_add_epi32(vstart, _mm512_set1_epi32((int32_t)(a * dh * W + b * dw)));
                    __m512 v = _mm512_i32gather_ps(idx, x, 4);
                    __mmask16 take = _mm512_cmp_ps_mask(v, best, _CMP_GT_OQ) | _mm512_cmp_ps_mask(v, v, _CMP_UNORD_Q);
                    best = _mm512_mask_mov_ps(best, take, v);
                    arg = _mm512_mask_mov_epi32(arg, take, idx);
                }
            int64_t o = p * P + q0;
            if (Y) _mm512_mask_storeu_ps(Y + o, m, best);
            _mm512_mask_storeu_epi64(A + o, m_lo, _mm512_cvtepi32_epi64(_mm512_castsi512_si256(arg)));
            _mm512_mask_storeu_epi64(A + o + 8, m_hi, _mm512_cvtepi32_epi64(_mm512_extracti64x4_epi64(arg, 1)));
        }
    }
}
#else
#define HAVE_POOL_AVX512 0
#endif

/* ---- the runs, shared by forward and replay (dt: the element type) ---- */
static void max_run(const pool_data *pd, cg_dtype dt, const void *x, void *y, int64_t *argmax) {
#if HAVE_POOL_AVX512
    if (dt == CG_F32 && pd->all_full && pd->geom.in_size[0] * pd->geom.in_size[1] < ((int64_t)1 << 31) &&
        cg_skinny_isa() == CG_SKINNY_AVX512) {
        max_full_avx512(pd, x, y, argmax);
        return;
    }
#endif
    if (dt == CG_F32) max_pool_fwd__f32(pd, x, y, argmax);
    else max_pool_fwd__f64(pd, x, y, argmax);
}

static void avg_run(const pool_data *pd, cg_dtype dt, const void *x, void *y, int add) {
    if (dt == CG_F32) avg_pool_fwd__f32(pd, x, y, add);
    else avg_pool_fwd__f64(pd, x, y, add);
}

static void avg_adj_run(const pool_data *pd, cg_dtype dt, const void *g, void *d) {
    if (dt == CG_F32) avg_pool_adj__f32(pd, g, d);
    else avg_pool_adj__f64(pd, g, d);
}

static void scatter_run(const pool_data *pd, cg_dtype dt, const void *g, void *d) {
    if (dt == CG_F32) max_pool_scatter__f32(pd->planes, in_plane(pd), out_plane(pd), pd->argmax, g, d);
    else max_pool_scatter__f64(pd->planes, in_plane(pd), out_plane(pd), pd->argmax, g, d);
}

static void gather_run(const pool_data *pd, cg_dtype dt, const void *u, void *y, int add) {
    if (dt == CG_F32) max_pool_gather__f32(pd->planes, in_plane(pd), out_plane(pd), pd->argmax, u, y, add);
    else max_pool_gather__f64(pd->planes, in_plane(pd), out_plane(pd), pd->argmax, u, y, add);
}

/* Compute the op's output y (y_numel elements) from its inputs: the forward and every replay. */
static void pool_run(int op, pool_data *pd, cg_tensor *const *ins, void *y, int64_t y_numel) {
    cg_dtype dt = ins[0]->dtype;
    size_t nbytes = (size_t)y_numel * cg_dtype_size(dt);
    switch (op) {
    case CG_OP_MAX_POOL:
        max_run(pd, dt, ins[0]->data, y, pd->argmax);
        break;
    case CG_OP_AVG_POOL:
        avg_run(pd, dt, ins[0]->data, y, 0);
        break;
    case CG_OP_AVG_POOL_BACKWARD:
        memset(y, 0, nbytes);
        avg_adj_run(pd, dt, ins[0]->data, y);
        break;
    case CG_OP_MAX_POOL_BACKWARD:
        max_run(pd, dt, ins[1]->data, NULL, pd->argmax);
        memset(y, 0, nbytes);
        scatter_run(pd, dt, ins[0]->data, y);
        break;
    default: /* MAX_POOL_SELECT */
        max_run(pd, dt, ins[1]->data, NULL, pd->argmax);
        gather_run(pd, dt, ins[0]->data, y, 0);
    }
}

void cg_pool_replay(cg_node *node) {
    pool_run(node->op, node->extra, node->inputs, node->saved_out->data, node->numel);
}

/* ---- entry points ---- */

/* The node's reference, held by an indices tensor that shares its arg-maxes */
static void release_node(void *node) { cg_node_release(node); }

/* x [..., in] -> y [..., out] */
cg_status cg_max_pool(cg_tensor *x, const cg_pool_geom *geom, cg_tensor **out, cg_tensor **indices) {
    CG_PROF_BEGIN();
    CG_REQUIRE_FLOAT("max_pool", x);
    pool_data *pd;
    cg_status st = plan("max_pool", geom, x, 0, 1, &pd);
    if (st) return st;
    int64_t shape[CG_MAX_DIMS];
    shape_with(x, pd, pd->geom.out_size, shape);
    cg_tensor *y;
    if ((st = cg_tensor_empty(x->dtype, x->ndim, shape, &y))) {
        cg_free(pd);
        return st;
    }
    pool_run(CG_OP_MAX_POOL, pd, &x, y->data, y->numel);
    cg_node *node;
    if ((st = finish(CG_OP_MAX_POOL, 1, &x, y, pd, &node, out))) return st;
    if (!indices) {
        if (!node) cg_free(pd);
        return CG_OK;
    }
    /* While cgrad.compile records, the indices are the node's own arg-maxes (the tensor keeps
     * the node alive), so each replay's indices are seen; otherwise they are a copy. */
    if (node && cg_capturing) {
        st = cg_tensor_external(CG_I64, y->ndim, y->shape, pd->argmax, release_node, node, indices);
        if (!st) node->refcount++;
    } else {
        st = cg_tensor_empty(CG_I64, y->ndim, y->shape, indices);
        if (!st) memcpy((*indices)->data, pd->argmax, (size_t)y->numel * sizeof(int64_t));
        if (!node) cg_free(pd);
    }
    if (st) {
        cg_tensor_release(y);
        *out = NULL;
    }
    return st;
}

/* The average and its adjoint: avg_pool x [..., in] -> y [..., out], avg_pool_backward
 * g [..., out] -> y [..., in]; they differ only in which sizes the input has */
static cg_status avg_map(int op, cg_tensor *a, const cg_pool_geom *geom, cg_tensor **out) {
    CG_PROF_BEGIN();
    const char *name = cg_op_name(op);
    int backward = op == CG_OP_AVG_POOL_BACKWARD;
    CG_REQUIRE_FLOAT(name, a);
    pool_data *pd;
    cg_status st = plan(name, geom, a, backward, 0, &pd);
    if (st) return st;
    int64_t shape[CG_MAX_DIMS];
    shape_with(a, pd, backward ? pd->geom.in_size : pd->geom.out_size, shape);
    cg_tensor *y;
    if ((st = cg_tensor_empty(a->dtype, a->ndim, shape, &y))) {
        cg_free(pd);
        return st;
    }
    pool_run(op, pd, &a, y->data, y->numel);
    return finish(op, 1, &a, y, pd, NULL, out);
}

cg_status cg_avg_pool(cg_tensor *x, const cg_pool_geom *geom, cg_tensor **out) {
    return avg_map(CG_OP_AVG_POOL, x, geom, out);
}

cg_status cg_avg_pool_backward(cg_tensor *g, const cg_pool_geom *geom, cg_tensor **out) {
    return avg_map(CG_OP_AVG_POOL_BACKWARD, g, geom, out);
}

/* The two maps at x's arg-maxes: backward g [..., out] -> [..., in] (x's shape), select
 * u [..., in] -> [..., out]; a (g or u) must have the shape that goes with x. */
static cg_status at_argmax(int op, cg_tensor *a, cg_tensor *x, const cg_pool_geom *geom, cg_tensor **out) {
    CG_PROF_BEGIN();
    const char *name = cg_op_name(op);
    char b1[CG_SHAPE_BUF], b2[CG_SHAPE_BUF];
    CG_REQUIRE_FLOAT(name, a);
    CG_REQUIRE_FLOAT(name, x);
    cg_status st = cg_same_dtype(name, a, x);
    if (st) return st;
    pool_data *pd;
    if ((st = plan(name, geom, x, 0, 1, &pd))) return st;
    int64_t ashape[CG_MAX_DIMS], yshape[CG_MAX_DIMS];
    int backward = op == CG_OP_MAX_POOL_BACKWARD;
    shape_with(x, pd, backward ? pd->geom.out_size : pd->geom.in_size, ashape);
    if (a->ndim != x->ndim || memcmp(ashape, a->shape, sizeof(int64_t) * (size_t)x->ndim)) {
        cg_free(pd);
        return cg_error(CG_ERR_SHAPE, "%s: %s of shape %s does not go with an input of shape %s", name,
                        backward ? "the gradient" : "the tensor", cg_shape_str(a->ndim, a->shape, b1, sizeof b1),
                        cg_shape_str(x->ndim, x->shape, b2, sizeof b2));
    }
    shape_with(x, pd, backward ? pd->geom.in_size : pd->geom.out_size, yshape);
    cg_tensor *y;
    if ((st = cg_tensor_empty(x->dtype, x->ndim, yshape, &y))) {
        cg_free(pd);
        return st;
    }
    cg_tensor *ins[2] = {a, x};
    pool_run(op, pd, ins, y->data, y->numel);
    return finish(op, 2, ins, y, pd, NULL, out);
}

cg_status cg_max_pool_backward(cg_tensor *g, cg_tensor *x, const cg_pool_geom *geom, cg_tensor **out) {
    return at_argmax(CG_OP_MAX_POOL_BACKWARD, g, x, geom, out);
}

cg_status cg_max_pool_select(cg_tensor *u, cg_tensor *x, const cg_pool_geom *geom, cg_tensor **out) {
    return at_argmax(CG_OP_MAX_POOL_SELECT, u, x, geom, out);
}

/* g: the gradient of the node's output; dins[1] (x of the arg-max maps) gets nothing */
void cg_pool_bwd(cg_node *node, const void *g, void **dins) {
    const pool_data *pd = node->extra;
    cg_dtype dt = node->dtype;
    if (!dins[0]) return;
    switch (node->op) {
    case CG_OP_MAX_POOL:
    case CG_OP_MAX_POOL_SELECT:
        scatter_run(pd, dt, g, dins[0]);
        break;
    case CG_OP_AVG_POOL:
        avg_adj_run(pd, dt, g, dins[0]);
        break;
    case CG_OP_AVG_POOL_BACKWARD:
        avg_run(pd, dt, g, dins[0], 1);
        break;
    default: /* MAX_POOL_BACKWARD */
        gather_run(pd, dt, g, dins[0], 1);
    }
}

int cg_pool_node_geom(const cg_tensor *t, cg_pool_geom *geom) {
    double p[2];
    int64_t ip[CG_MAX_DIMS + 1];
    const void *extra;
    int op = cg_node_params(t, p, ip, &extra);
    if (!is_pool_op(op) || !extra) return -1;
    *geom = ((const pool_data *)extra)->geom;
    return op;
}
