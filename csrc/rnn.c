/* rnn.c: the recurrence of a recurrent layer (one layer, one direction) as one op, forward,
 * backward through time and replay.
 *
 * The input projection xp = x W_ih^T + b_ih of every step is one linear op before this one;
 * rnn_scan runs the T steps of h_t = cell(xp_t, h_{t-1}) with PyTorch's gate equations:
 *   RNN:  h = act(xp + W_hh h + b_hh), act tanh or relu                     (G = 1)
 *   LSTM: [i f g o] = xp + W_hh h + b_hh; i, f, o sigmoid, g tanh;
 *         c = f c + i g, h = o tanh(c)                                        (G = 4)
 *   GRU:  [r z] = sigmoid(xp_rz + W_hh,rz h + b_hh,rz),
 *         n = tanh(xp_n + r (W_hn h + b_hn)), h = (1 - z) n + z h             (G = 3)
 * Shapes: xp [T, B, G H] (batch_first: [B, T, G H]), w_hh [G H, H], b_hh [G H], h0 and c0
 * [B, H]; y [T, B, H] (batch_first [B, T, H]) holds every h_t at its time, and for LSTM
 * y is [2, T, B, H] (or [2, B, T, H]): the h_t, then the c_t. reverse runs t from T - 1
 * down to 0, still writing y in the input's time order (the second direction of a
 * bidirectional layer).
 *
 * The node's extra keeps, gate-major with the batch contiguous (B padded to Bp lanes, a
 * multiple of RNN_LANES), the states Hst [H][T + 1][Bp] (h before and after each step, in
 * processing order; LSTM's Cst follows) and the saved gates Gs [S][T][Bp] (GRU: r, z, n,
 * W_hn h + b_hn; LSTM: i, f, g, o, tanh c).
 * Backward reads only those and W_hh (R_IN1): h0, c0 and xp were copied or consumed.
 * Its loop over the steps carries the total dL/dh_t (and dc_t), and gives dxp per step,
 * dh0, dc0; dW_hh is one GEMM over all steps' gate gradients, db_hh their sum.
 *
 * norms (optional, [T], no gradient): backward writes the L2 norm over the batch of the
 * total dL/dh_t at each time t (the lecture's vanishing gradient), in place, from the rule
 * that replay also runs; it is an input of the node that takes no gradient (as batch
 * norm's running statistics). */
#include "cg_internal.h"
#include "cg_math.h"

#include <math.h>
#include <string.h>

/* From this hidden size the per-step products go to the GEMM provider; below it, rnn_impl.h's
 * loops. Timed (best of 15, a shared and busy 2-core machine) on one direction's forward and
 * backward, GRU, B = 100, T = 40, float32: H = 6 loops 0.26 ms, GEMM 0.41; H = 12 0.75 / 1.04;
 * H = 16 1.5-1.9 / 1.3-1.7 (even within the noise); H = 32 and up the GEMM wins (32: 4.8-6.1
 * / 3.5). */
#define RNN_GEMM_MIN_H 16

/* The batch lanes of the gate-major layouts, padded to a multiple of 16 (zeros in the padding,
 * which stays finite and adds nothing): every row loop is then whole vectors, where B = 100
 * left 4 lanes to a scalar tail that cost as much as the 96 vector lanes. */
#define RNN_LANES 16

/* node->ip: mode, T, B, H, flags */
enum { RNN_H0 = 1, RNN_C0 = 2, RNN_BIAS = 4, RNN_NORMS = 8, RNN_REVERSE = 16, RNN_BATCH_FIRST = 32 };

typedef struct {
    int mode, reverse;
    int64_t nt, B, Bp, H, G, n_states; /* nt: the time steps (T is the element type in rnn_impl.h) */
    int64_t xs_t, xs_b; /* xp's strides in time and batch (the gate index is contiguous) */
    int64_t ys_t, ys_b, c_off; /* y's, and where LSTM's c part starts */
} rnn_geom;

static int64_t rnn_gates(int mode) { return mode == CG_RNN_LSTM ? 4 : mode == CG_RNN_GRU ? 3 : 1; }

static rnn_geom rnn_geometry(int mode, int64_t T, int64_t B, int64_t H, int flags) {
    rnn_geom g = {mode, !!(flags & RNN_REVERSE), T, B, (B + RNN_LANES - 1) / RNN_LANES * RNN_LANES, H, rnn_gates(mode),
                  mode == CG_RNN_LSTM ? 2 : 1, 0, 0, 0, 0, 0};
    int64_t GH = g.G * H;
    if (flags & RNN_BATCH_FIRST) {
        g.xs_t = GH, g.xs_b = T * GH, g.ys_t = H, g.ys_b = T * H;
    } else {
        g.xs_t = B * GH, g.xs_b = GH, g.ys_t = B * H, g.ys_b = H;
    }
    g.c_off = T * B * H;
    return g;
}

/* elements of the node's extra: the states, then the saved gates */
static int64_t rnn_extra_numel(const rnn_geom *g) {
    int64_t saved = g->mode == CG_RNN_GRU ? 4 : g->mode == CG_RNN_LSTM ? 5 : 0;
    return g->n_states * g->H * (g->nt + 1) * g->Bp + saved * g->H * g->nt * g->Bp;
}

/* dst[c * ds + r] (+)= src[r * ss + c] over a float block of nr <= 8 rows and nc <= 8
 * columns, in registers: three rounds of 8 shuffles (GCC's vector extensions; unpck, shufps,
 * vperm2f128 under AVX), where the scalar copy moved one element per load and store. Moves
 * (and one add per element) only, so bitwise the scalar copy. Always inline, with nr and nc
 * constants: out of line it was compiled for the baseline target (no AVX), not the caller's
 * clone, and cost 4x its inlined shuffles. */
#if defined(__GNUC__) && !defined(__clang__) && __GNUC__ >= 12 /* GCC's __builtin_shuffle, and __builtin_shufflevector from GCC 12; else the scalar copy */
#define RNN_TILES 1
#define RNN_INLINE inline __attribute__((always_inline))

typedef float rnn_v8f __attribute__((vector_size(32)));
typedef float rnn_v4f __attribute__((vector_size(16)));
typedef float rnn_v2f __attribute__((vector_size(8)));
typedef int32_t rnn_v8i __attribute__((vector_size(32)));

/* p[0..n) (n <= 4, a constant) in the low lanes: whole loads of 4, 2 or 1 floats joined in
 * registers. A memcpy of n floats into a zeroed vector went through the stack, and the wide
 * load after the narrow store missed store forwarding: a quarter of the GRU forward's time. */
static RNN_INLINE rnn_v4f rnn_load4_f32(const float *p, int n) {
    rnn_v4f v = {0};
    if (n == 4) {
        memcpy(&v, p, sizeof v);
        return v;
    }
    rnn_v2f a = {0}, b = {0};
    if (n >= 2) memcpy(&a, p, sizeof a);
    else a[0] = p[0];
    if (n == 3) b[0] = p[2];
    return __builtin_shufflevector(a, b, 0, 1, 2, 3);
}

/* p[0..n), n in 1..8 a constant; the lanes from n on are zero */
static RNN_INLINE rnn_v8f rnn_load8_f32(const float *p, int n) {
    rnn_v8f v;
    if (n == 8) {
        memcpy(&v, p, sizeof v);
        return v;
    }
    rnn_v4f lo = rnn_load4_f32(p, n < 4 ? n : 4), hi = {0};
    if (n > 4) hi = rnn_load4_f32(p + 4, n - 4);
    return __builtin_shufflevector(lo, hi, 0, 1, 2, 3, 4, 5, 6, 7);
}

static RNN_INLINE void rnn_tile_f32(const float *src, int64_t ss, float *dst, int64_t ds, int add, int nr, int nc) {
    rnn_v8f r[8], t[8], u[8], col[8];
    for (int i = 0; i < 8; i++) r[i] = i < nr ? rnn_load8_f32(src + i * ss, nc) : (rnn_v8f){0};
    const rnn_v8i lo = {0, 8, 1, 9, 4, 12, 5, 13}, hi = {2, 10, 3, 11, 6, 14, 7, 15};
    const rnn_v8i lo2 = {0, 1, 8, 9, 4, 5, 12, 13}, hi2 = {2, 3, 10, 11, 6, 7, 14, 15};
    const rnn_v8i lo4 = {0, 1, 2, 3, 8, 9, 10, 11}, hi4 = {4, 5, 6, 7, 12, 13, 14, 15};
    for (int i = 0; i < 8; i += 2) {
        t[i] = __builtin_shuffle(r[i], r[i + 1], lo);
        t[i + 1] = __builtin_shuffle(r[i], r[i + 1], hi);
    }
    for (int i = 0; i < 8; i += 4)
        for (int q = 0; q < 2; q++) {
            u[i + 2 * q] = __builtin_shuffle(t[i + q], t[i + 2 + q], lo2);
            u[i + 2 * q + 1] = __builtin_shuffle(t[i + q], t[i + 2 + q], hi2);
        }
    /* u[c] (c < 4) holds column c of rows 0-3 low and column c + 4 high; u[4 + c] rows 4-7 */
    for (int c = 0; c < 4; c++) {
        col[c] = __builtin_shuffle(u[c], u[4 + c], lo4);
        col[c + 4] = __builtin_shuffle(u[c], u[4 + c], hi4);
    }
    for (int c = 0; c < nc; c++) {
        if (add) col[c] += rnn_load8_f32(dst + c * ds, nr);
        memcpy(dst + c * ds, &col[c], (size_t)nr * sizeof(float));
    }
}

/* a call with n in 1..7 as a constant, so that the tile's partial loads and stores are fixed */
#define RNN_EDGE(n, CALL)                                                                                           \
    switch (n) {                                                                                                    \
    case 1: CALL(1); break;                                                                                         \
    case 2: CALL(2); break;                                                                                         \
    case 3: CALL(3); break;                                                                                         \
    case 4: CALL(4); break;                                                                                         \
    case 5: CALL(5); break;                                                                                         \
    case 6: CALL(6); break;                                                                                         \
    case 7: CALL(7); break;                                                                                         \
    default: break;                                                                                                 \
    }
#else
#define RNN_TILES 0
#define RNN_INLINE inline
#endif

#define CG_IMPL "rnn_impl.h"
#include "cg_each_dtype.h"

/* The node's inputs: xp, w_hh, then h0, c0, b_hh, norms where the flags say they were given. */
typedef struct {
    cg_tensor *xp, *w, *h0, *c0, *b, *norms;
} rnn_args;

static rnn_args rnn_unpack(cg_tensor *const *ins, int flags) {
    rnn_args a = {ins[0], ins[1], NULL, NULL, NULL, NULL};
    int i = 2;
    if (flags & RNN_H0) a.h0 = ins[i++];
    if (flags & RNN_C0) a.c0 = ins[i++];
    if (flags & RNN_BIAS) a.b = ins[i++];
    if (flags & RNN_NORMS) a.norms = ins[i++];
    return a;
}

#define DATA(t) ((t) ? (t)->data : NULL)

/* The forward, shared by the entry and replay (so replays are bitwise eager). */
static cg_status rnn_run(const rnn_geom *g, const rnn_args *a, void *y, void *extra) {
    int64_t GH = g->G * g->H;
    size_t esz = a->xp->dtype == CG_F32 ? sizeof(float) : sizeof(double);
    void *scratch = cg_malloc((size_t)(2 * GH * g->Bp + 1) * esz);
    if (!scratch) return cg_error(CG_ERR_NOMEM, "rnn_scan: out of memory for the step's scratch");
    const cg_blas_provider *blas = cg_blas_current();
    if (a->xp->dtype == CG_F32)
        rnn_forward__f32(blas->sgemm, g, a->xp->data, a->w->data, DATA(a->b), DATA(a->h0), DATA(a->c0), y, extra,
                         scratch, (float *)scratch + GH * g->Bp);
    else
        rnn_forward__f64(blas->dgemm, g, a->xp->data, a->w->data, DATA(a->b), DATA(a->h0), DATA(a->c0), y, extra,
                         scratch, (double *)scratch + GH * g->Bp);
    cg_free(scratch);
    return CG_OK;
}

void cg_rnn_replay(cg_node *node) {
    int flags = (int)node->ip[4];
    rnn_geom g = rnn_geometry((int)node->ip[0], node->ip[1], node->ip[2], node->ip[3], flags);
    rnn_args a = rnn_unpack(node->inputs, flags);
    cg_status st = rnn_run(&g, &a, node->saved_out->data, node->extra);
    if (st) cg_rule_status_ = st;
}

static const char *rnn_mode_name(int mode) {
    return mode == CG_RNN_LSTM ? "LSTM" : mode == CG_RNN_GRU ? "GRU" : mode == CG_RNN_RELU ? "RNN_RELU" : "RNN_TANH";
}

/* h0 or c0: [B, H] of xp's dtype, or NULL */
static cg_status rnn_check_state(const char *name, const cg_tensor *t, const cg_tensor *xp, int64_t B, int64_t H,
                                 int mode) {
    char b1[CG_SHAPE_BUF], b2[CG_SHAPE_BUF];
    if (!t) return CG_OK;
    CG_REQUIRE_FLOAT("rnn_scan", t);
    if (t->dtype != xp->dtype)
        return cg_error(CG_ERR_DTYPE, "rnn_scan (%s): %s is %s but the input projection is %s", rnn_mode_name(mode),
                        name, cg_dtype_name(t->dtype), cg_dtype_name(xp->dtype));
    if (t->ndim != 2 || t->shape[0] != B || t->shape[1] != H)
        return cg_error(CG_ERR_SHAPE, "rnn_scan (%s): %s of shape %s does not fit the input projection of shape %s "
                                      "(expected (%lld, %lld): batch, hidden)",
                        rnn_mode_name(mode), name, cg_shape_str(t->ndim, t->shape, b1, sizeof b1),
                        cg_shape_str(xp->ndim, xp->shape, b2, sizeof b2), (long long)B, (long long)H);
    return CG_OK;
}

cg_status cg_rnn_scan(int mode, cg_tensor *xp, cg_tensor *w_hh, cg_tensor *h0, cg_tensor *c0, cg_tensor *b_hh,
                      cg_tensor *norms, int reverse, int batch_first, cg_tensor **out) {
    CG_PROF_BEGIN();
    char b1[CG_SHAPE_BUF], b2[CG_SHAPE_BUF];
    cg_status st;
    if (mode < CG_RNN_TANH || mode > CG_RNN_GRU) return cg_error(CG_ERR_VALUE, "rnn_scan: unknown mode %d", mode);
    const char *name = rnn_mode_name(mode);
    CG_REQUIRE_FLOAT("rnn_scan", xp);
    CG_REQUIRE_FLOAT("rnn_scan", w_hh);
    if (w_hh->dtype != xp->dtype)
        return cg_error(CG_ERR_DTYPE, "rnn_scan (%s): weight_hh is %s but the input projection is %s", name,
                        cg_dtype_name(w_hh->dtype), cg_dtype_name(xp->dtype));
    int64_t G = rnn_gates(mode);
    if (w_hh->ndim != 2 || w_hh->shape[0] != G * w_hh->shape[1])
        return cg_error(CG_ERR_SHAPE, "rnn_scan (%s): weight_hh of shape %s is not (%lld * hidden, hidden)", name,
                        cg_shape_str(w_hh->ndim, w_hh->shape, b1, sizeof b1), (long long)G);
    int64_t H = w_hh->shape[1];
    if (xp->ndim != 3 || xp->shape[2] != G * H)
        return cg_error(CG_ERR_SHAPE, "rnn_scan (%s): the input projection of shape %s does not fit weight_hh of "
                                      "shape %s (expected 3 dims, the last %lld)",
                        name, cg_shape_str(xp->ndim, xp->shape, b1, sizeof b1),
                        cg_shape_str(w_hh->ndim, w_hh->shape, b2, sizeof b2), (long long)(G * H));
    int64_t T = xp->shape[batch_first ? 1 : 0], B = xp->shape[batch_first ? 0 : 1];
    if (T < 1)
        return cg_error(CG_ERR_SHAPE, "rnn_scan (%s): the input projection of shape %s has no time steps", name,
                        cg_shape_str(xp->ndim, xp->shape, b1, sizeof b1));
    if ((st = rnn_check_state("h0", h0, xp, B, H, mode)) || (st = rnn_check_state("c0", c0, xp, B, H, mode)))
        return st;
    if (c0 && mode != CG_RNN_LSTM) return cg_error(CG_ERR_VALUE, "rnn_scan (%s): only LSTM takes c0", name);
    if (b_hh) {
        CG_REQUIRE_FLOAT("rnn_scan", b_hh);
        if (b_hh->dtype != xp->dtype || b_hh->ndim != 1 || b_hh->shape[0] != G * H)
            return cg_error(CG_ERR_SHAPE, "rnn_scan (%s): bias_hh %s of shape %s does not fit weight_hh of shape %s "
                                          "(expected %s (%lld,))",
                            name, cg_dtype_name(b_hh->dtype), cg_shape_str(b_hh->ndim, b_hh->shape, b1, sizeof b1),
                            cg_shape_str(w_hh->ndim, w_hh->shape, b2, sizeof b2), cg_dtype_name(xp->dtype),
                            (long long)(G * H));
    }
    if (norms) {
        if (norms->dtype != xp->dtype || norms->ndim != 1 || norms->shape[0] != T)
            return cg_error(CG_ERR_SHAPE, "rnn_scan (%s): the step-norm buffer %s of shape %s does not fit %lld "
                                          "time steps (expected %s (%lld,))",
                            name, cg_dtype_name(norms->dtype), cg_shape_str(norms->ndim, norms->shape, b1, sizeof b1),
                            (long long)T, cg_dtype_name(xp->dtype), (long long)T);
        if (cg_tensor_needs_grad(norms))
            return cg_error(CG_ERR_RUNTIME, "rnn_scan (%s): the step-norm buffer requires grad, but it takes none "
                                            "(backward writes it in place)", name);
    }
    int flags = (h0 ? RNN_H0 : 0) | (c0 ? RNN_C0 : 0) | (b_hh ? RNN_BIAS : 0) | (norms ? RNN_NORMS : 0) |
                (reverse ? RNN_REVERSE : 0) | (batch_first ? RNN_BATCH_FIRST : 0);
    rnn_geom g = rnn_geometry(mode, T, B, H, flags);
    size_t esz = xp->dtype == CG_F32 ? sizeof(float) : sizeof(double);
    void *extra = cg_malloc((size_t)(rnn_extra_numel(&g) + 1) * esz);
    if (!extra) return cg_error(CG_ERR_NOMEM, "rnn_scan (%s): out of memory for the saved states", name);
    int64_t shape[4];
    int nd = 0;
    if (mode == CG_RNN_LSTM) shape[nd++] = 2;
    shape[nd++] = batch_first ? B : T;
    shape[nd++] = batch_first ? T : B;
    shape[nd++] = H;
    cg_tensor *y;
    if ((st = cg_tensor_empty(xp->dtype, nd, shape, &y))) {
        cg_free(extra);
        return st;
    }
    cg_tensor *ins[6];
    int n = 0;
    ins[n++] = xp;
    ins[n++] = w_hh;
    if (h0) ins[n++] = h0;
    if (c0) ins[n++] = c0;
    if (b_hh) ins[n++] = b_hh;
    if (norms) ins[n++] = norms;
    rnn_args a = rnn_unpack(ins, flags);
    if ((st = rnn_run(&g, &a, y->data, extra))) {
        cg_free(extra);
        cg_tensor_release(y);
        return st;
    }
    cg_node *node;
    if ((st = cg_record(CG_OP_RNN_SCAN, n, ins, y, &node))) {
        cg_free(extra);
        return st;
    }
    if (node) {
        node->extra = extra;
        node->ip[0] = mode;
        node->ip[1] = T;
        node->ip[2] = B;
        node->ip[3] = H;
        node->ip[4] = flags;
    } else {
        cg_free(extra);
    }
    *out = y;
    return CG_OK;
}

/* Backward through time, from the saved states and gates (rnn_impl.h). */
void cg_rnn_bwd(cg_node *node, const void *g, void **dins) {
    int flags = (int)node->ip[4];
    rnn_geom geo = rnn_geometry((int)node->ip[0], node->ip[1], node->ip[2], node->ip[3], flags);
    rnn_args a = rnn_unpack(node->inputs, flags);
    int i = 2, ih0 = -1, ic0 = -1, ib = -1;
    if (flags & RNN_H0) ih0 = i++;
    if (flags & RNN_C0) ic0 = i++;
    if (flags & RNN_BIAS) ib = i++;
#define DIN(k) ((k) >= 0 ? dins[k] : NULL)
#define FRESH(k) ((k) >= 0 && (node->fresh >> (k) & 1))
    int64_t GH = geo.G * geo.H, TB = geo.nt * geo.Bp, HB = geo.H * geo.Bp;
    size_t esz = node->dtype == CG_F32 ? sizeof(float) : sizeof(double);
    void *scratch = cg_malloc((size_t)(GH * TB + GH * geo.Bp + 3 * HB + GH * geo.H + 1) * esz);
    if (!scratch) {
        cg_rule_status_ = cg_error(CG_ERR_NOMEM, "rnn_scan: out of memory for the backward's scratch");
        return;
    }
    const cg_blas_provider *blas = cg_blas_current();
    void *norms = a.norms ? a.norms->data : NULL;
    if (node->dtype == CG_F32) {
        float *s = scratch;
        rnn_backward__f32(blas->sgemm, &geo, a.w->data, node->extra, g, dins[0], FRESH(0), dins[1], FRESH(1), DIN(ib),
                          FRESH(ib), DIN(ih0), FRESH(ih0), DIN(ic0), FRESH(ic0), norms, s, s + GH * TB,
                          s + GH * TB + GH * geo.Bp, s + GH * TB + GH * geo.Bp + HB, s + GH * TB + GH * geo.Bp + 3 * HB,
                          s + GH * TB + GH * geo.Bp + 2 * HB);
    } else {
        double *s = scratch;
        rnn_backward__f64(blas->dgemm, &geo, a.w->data, node->extra, g, dins[0], FRESH(0), dins[1], FRESH(1), DIN(ib),
                          FRESH(ib), DIN(ih0), FRESH(ih0), DIN(ic0), FRESH(ic0), norms, s, s + GH * TB,
                          s + GH * TB + GH * geo.Bp, s + GH * TB + GH * geo.Bp + HB, s + GH * TB + GH * geo.Bp + 3 * HB,
                          s + GH * TB + GH * geo.Bp + 2 * HB);
    }
#undef DIN
#undef FRESH
    if (norms) cg_storage_bump(a.norms->storage);
    cg_free(scratch);
}
