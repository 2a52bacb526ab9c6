/* norm.c: batch normalisation as one fused op (forward, backward and replay).
 *
 * y = (x - mean_c) invstd_c w_c + b_c over x [N, C, *], invstd = 1 / sqrt(var + eps): the
 * statistics of channel c are the mean and biased variance of its M = N * prod(*) values
 * (training) or the running estimates given (evaluation). With xhat = (x - mean) invstd,
 * backward is the closed form
 *     dx = w invstd / M (M g - sum g - xhat sum(g xhat)),  dw = sum g xhat,  db = sum g
 * in training, and dx = w invstd g in evaluation, where the statistics are constants.
 *
 * In training the op itself updates the running estimates in place, so that cgrad.compile,
 * whose replay reruns only C ops, updates them as eager code does (PyTorch's rule):
 *     num_batches_tracked += 1
 *     running_mean = f mean + (1 - f) running_mean
 *     running_var  = f sq / (M - 1) + (1 - f) running_var    (the unbiased variance)
 * with f = momentum, or 1 / num_batches_tracked (a cumulative average: momentum None). An
 * empty batch updates nothing but the count. The three tensors are inputs of the node that
 * need no gradient (the node's references keep them alive). What backward needs per channel
 * (mean, invstd and w invstd) is kept in the node's extra, so the rule reads only x
 * (R_IN0): another forward updating the statistics, or an optimizer's step on w, does not
 * change this node's gradient. A channel of one value normalises to 0 (group norm of one
 * value per group, as PyTorch); batch norm's refusal of it in training is the facade's
 * check, as in PyTorch (its running variance would be 0 / 0).
 */
#include "cg_internal.h"

#include <math.h>

/* node->ip[3]: which inputs follow x, and the mode (CG_BN_*, cg.h) */

/* sum over j < D of expr (in j) into out, of type T, in 32 running partial sums (two
 * float32 vectors) combined in a fixed order: one running sum is a chain of dependent adds
 * that IEEE order keeps scalar; partial sums vectorise, and the result is the same on every
 * run and replay. */
#define LN_SUM32(T, D, expr, out)                                                               \
    do {                                                                                        \
        T s_[32] = {0};                                                                         \
        int64_t jb_ = 0;                                                                        \
        for (; jb_ + 32 <= (D); jb_ += 32)                                                      \
            for (int k_ = 0; k_ < 32; k_++) {                                                   \
                const int64_t j = jb_ + k_;                                                     \
                s_[k_] += (expr);                                                               \
            }                                                                                   \
        for (; jb_ + 8 <= (D); jb_ += 8)                                                        \
            for (int k_ = 0; k_ < 8; k_++) {                                                    \
                const int64_t j = jb_ + k_;                                                     \
                s_[k_] += (expr);                                                               \
            }                                                                                   \
        for (int k_ = 0; k_ < 8; k_++) s_[k_] = (s_[k_] + s_[k_ + 8]) + (s_[k_ + 16] + s_[k_ + 24]); \
        T t_ = ((s_[0] + s_[1]) + (s_[2] + s_[3])) + ((s_[4] + s_[5]) + (s_[6] + s_[7]));       \
        for (int64_t j = jb_; j < (D); j++) t_ += (expr);                                       \
        (out) = t_;                                                                             \
    } while (0)

#define CG_IMPL "norm_impl.h"
#include "cg_each_dtype.h"

/* The node's inputs: x, then weight, bias, running_mean and running_var, num_batches_tracked
 * where the flags say they were given. */
typedef struct {
    cg_tensor *x, *w, *b, *rm, *rv, *count;
} bn_args;

static bn_args bn_unpack(cg_tensor *const *ins, int flags) {
    bn_args a = {ins[0], NULL, NULL, NULL, NULL, NULL};
    int i = 1;
    if (flags & CG_BN_WEIGHT) a.w = ins[i++];
    if (flags & CG_BN_BIAS) a.b = ins[i++];
    if (flags & CG_BN_RUNNING) {
        a.rm = ins[i++];
        a.rv = ins[i++];
    }
    if (flags & CG_BN_COUNT) a.count = ins[i++];
    return a;
}

#define BN_DISPATCH(dtype, fn, ...)                                                             \
    do {                                                                                        \
        if ((dtype) == CG_F32) fn##_f32(__VA_ARGS__);                                          \
        else fn##_f64(__VA_ARGS__);                                                            \
    } while (0)

/* The forward, shared by the entry and replay (so replays are bitwise eager). stats: 5 C
 * doubles, the node's extra: mean, invstd, scale = w invstd (what backward reads), then two
 * rows of scratch. x [N, C, S] -> y. */
static void bn_run(const bn_args *a, int flags, int64_t N, int64_t C, int64_t S, double momentum, double eps,
                   double *stats, void *y) {
    cg_dtype dt = a->x->dtype;
    double *mean = stats, *invstd = stats + C, *scale = stats + 2 * C, *sq = stats + 3 * C, *w = stats + 4 * C;
    double M = (double)(N * S);
    if (flags & CG_BN_TRAINING) {
        BN_DISPATCH(dt, bn_stats_, N, C, S, a->x->data, mean, sq);
        for (int64_t c = 0; c < C; c++) invstd[c] = 1 / sqrt(sq[c] / M + eps);
        if (a->count) {
            ++*(int64_t *)a->count->data;
            cg_storage_bump(a->count->storage);
        }
        if (a->rm && M > 0) {
            double f = flags & CG_BN_CUMULATIVE ? 1.0 / (double)*(int64_t *)a->count->data : momentum;
            BN_DISPATCH(dt, bn_running_, C, a->rm->data, mean, 1.0, f);
            BN_DISPATCH(dt, bn_running_, C, a->rv->data, sq, M - 1, f);
            cg_storage_bump(a->rm->storage);
            cg_storage_bump(a->rv->storage);
        }
    } else {
        BN_DISPATCH(dt, bn_load_, C, a->rm->data, mean);
        BN_DISPATCH(dt, bn_load_, C, a->rv->data, sq);
        for (int64_t c = 0; c < C; c++) invstd[c] = 1 / sqrt(sq[c] + eps);
    }
    if (a->w) BN_DISPATCH(dt, bn_load_, C, a->w->data, w);
    for (int64_t c = 0; c < C; c++) scale[c] = a->w ? invstd[c] * w[c] : invstd[c];
    BN_DISPATCH(dt, bn_apply_, N, C, S, a->x->data, mean, scale, a->b ? a->b->data : NULL, y);
}

void cg_batch_norm_replay(cg_node *node) {
    int flags = (int)node->ip[3];
    bn_args a = bn_unpack(node->inputs, flags);
    bn_run(&a, flags, node->ip[0], node->ip[1], node->ip[2], node->p[1], node->p[0], node->extra,
           node->saved_out->data);
}

/* weight, bias, running_mean, running_var: [C] of x's dtype, or NULL */
static cg_status bn_check_channel(const char *name, const cg_tensor *t, const cg_tensor *x, int running) {
    char b1[CG_SHAPE_BUF], b2[CG_SHAPE_BUF];
    if (!t) return CG_OK;
    CG_REQUIRE_FLOAT("batch_norm", t);
    if (t->dtype != x->dtype)
        return cg_error(CG_ERR_DTYPE, "batch_norm: %s is %s but the input is %s", name, cg_dtype_name(t->dtype),
                        cg_dtype_name(x->dtype));
    if (t->ndim != 1 || t->shape[0] != x->shape[1])
        return cg_error(CG_ERR_SHAPE, "batch_norm: %s of shape %s does not fit the input of shape %s "
                                      "(expected (%lld,): one value per channel)",
                        name, cg_shape_str(t->ndim, t->shape, b1, sizeof b1),
                        cg_shape_str(x->ndim, x->shape, b2, sizeof b2), (long long)x->shape[1]);
    if (running && cg_tensor_needs_grad(t))
        return cg_error(CG_ERR_RUNTIME, "batch_norm: %s requires grad, but the running statistics take no "
                                        "gradient (the op updates them in place)", name);
    return CG_OK;
}

cg_status cg_batch_norm(cg_tensor *x, cg_tensor *weight, cg_tensor *bias, cg_tensor *running_mean,
                        cg_tensor *running_var, cg_tensor *num_batches_tracked, int training, double momentum,
                        int cumulative, double eps, cg_tensor **out) {
    CG_PROF_BEGIN();
    CG_REQUIRE_FLOAT("batch_norm", x);
    char b1[CG_SHAPE_BUF];
    cg_status st;
    if (x->ndim < 2)
        return cg_error(CG_ERR_SHAPE, "batch_norm: expected an input of at least 2 dims (N, C, ...), got shape %s",
                        cg_shape_str(x->ndim, x->shape, b1, sizeof b1));
    if ((st = bn_check_channel("weight", weight, x, 0)) || (st = bn_check_channel("bias", bias, x, 0)) ||
        (st = bn_check_channel("running_mean", running_mean, x, 1)) ||
        (st = bn_check_channel("running_var", running_var, x, 1)))
        return st;
    if (!running_mean != !running_var)
        return cg_error(CG_ERR_VALUE, "batch_norm: running_mean and running_var go together: give both or neither");
    if (!training && !running_mean)
        return cg_error(CG_ERR_VALUE, "batch_norm: running_mean and running_var must be given in evaluation mode "
                                      "(training=False)");
    int flags = (weight ? CG_BN_WEIGHT : 0) | (bias ? CG_BN_BIAS : 0) | (running_mean ? CG_BN_RUNNING : 0) |
                (training ? CG_BN_TRAINING : 0);
    if (training && running_mean) { /* the count takes part only where the statistics are updated */
        if (num_batches_tracked) {
            if (num_batches_tracked->dtype != CG_I64 || num_batches_tracked->numel != 1)
                return cg_error(CG_ERR_VALUE, "batch_norm: num_batches_tracked must be one int64 value, got %s of "
                                              "shape %s", cg_dtype_name(num_batches_tracked->dtype),
                                cg_shape_str(num_batches_tracked->ndim, num_batches_tracked->shape, b1, sizeof b1));
            flags |= CG_BN_COUNT;
        }
        if (cumulative) {
            if (!num_batches_tracked)
                return cg_error(CG_ERR_VALUE, "batch_norm: momentum None (a cumulative average) needs "
                                              "num_batches_tracked");
            flags |= CG_BN_CUMULATIVE;
        }
    }
    int64_t N = x->shape[0], C = x->shape[1], S = cg_numel(x->ndim - 2, x->shape + 2);
    double *stats = cg_malloc((size_t)(C ? 5 * C : 1) * sizeof(double));
    if (!stats) return cg_error(CG_ERR_NOMEM, "batch_norm: out of memory");
    cg_tensor *y;
    if ((st = cg_tensor_empty(x->dtype, x->ndim, x->shape, &y))) {
        cg_free(stats);
        return st;
    }
    cg_tensor *ins[6];
    int n = 0;
    ins[n++] = x;
    if (weight) ins[n++] = weight;
    if (bias) ins[n++] = bias;
    if (flags & CG_BN_RUNNING) {
        ins[n++] = running_mean;
        ins[n++] = running_var;
    }
    if (flags & CG_BN_COUNT) ins[n++] = num_batches_tracked;
    bn_args a = bn_unpack(ins, flags);
    bn_run(&a, flags, N, C, S, momentum, eps, stats, y->data);
    cg_node *node;
    if ((st = cg_record(CG_OP_BATCH_NORM, n, ins, y, &node))) {
        cg_free(stats);
        return st;
    }
    if (node) {
        node->extra = stats;
        node->ip[0] = N;
        node->ip[1] = C;
        node->ip[2] = S;
        node->ip[3] = flags;
        node->p[0] = eps;
        node->p[1] = momentum;
    } else {
        cg_free(stats);
    }
    *out = y;
    return CG_OK;
}

/* Backward, from the forward's per-channel values; the scratch rows take sum g and
 * sum g (x - mean), then the factors of dx = scale (g - k1 - (x - mean) k2). */
void cg_batch_norm_bwd(cg_node *node, const void *g, void **dins) {
    int flags = (int)node->ip[3];
    int64_t N = node->ip[0], C = node->ip[1], S = node->ip[2];
    double *stats = node->extra, M = (double)(N * S);
    double *mean = stats, *invstd = stats + C, *scale = stats + 2 * C, *k1 = stats + 3 * C, *k2 = stats + 4 * C;
    int iw = 1, ib = flags & CG_BN_WEIGHT ? 2 : 1;
    void *dw = flags & CG_BN_WEIGHT ? dins[iw] : NULL, *db = flags & CG_BN_BIAS ? dins[ib] : NULL;
    cg_dtype dt = node->dtype;
    const void *X = node->inputs[0]->data;
    BN_DISPATCH(dt, bn_grad_sums_, N, C, S, X, g, mean, k1, k2);
    for (int64_t c = 0; c < C; c++) k2[c] *= invstd[c]; /* sum g xhat */
    if (dw) BN_DISPATCH(dt, bn_channel_out_, C, k2, dw, node->fresh >> iw & 1);
    if (db) BN_DISPATCH(dt, bn_channel_out_, C, k1, db, node->fresh >> ib & 1);
    if (!dins[0]) return;
    int train = flags & CG_BN_TRAINING;
    for (int64_t c = 0; c < C; c++) {
        k1[c] = train ? k1[c] / M : 0;
        k2[c] = train ? k2[c] * invstd[c] / M : 0;
    }
    BN_DISPATCH(dt, bn_dx_, N, C, S, X, g, mean, scale, k1, k2, dins[0], node->fresh & 1);
}

/* ---- layer norm and RMS norm (one family, "layer_norm") ----
 * x [*, S] with S the normalized shape (nd dims), seen as M rows of D = prod(S) values:
 *     layer_norm: y = (x - mean) rstd w + b,  rstd = 1 / sqrt(var + eps)
 *     rms_norm:   y = x rstd w,               rstd = 1 / sqrt(mean(x^2) + eps)
 * with the row's mean and biased variance. The node's extra keeps, as doubles, each row's
 * mean and rstd and two rows of scratch for the column sums dw, db, and a copy of w in x's
 * dtype (taken by the forward, so that replay refreshes it): backward reads only x (R_IN0),
 * like batch norm, so an optimizer's step on w between forward and backward does not make
 * it refuse. */

typedef struct {
    int64_t M, D;
    double *mean, *rstd, *sw, *sb;
    void *w; /* D values of x's dtype */
} ln_layout;

static ln_layout ln_lay(int64_t M, int64_t D, double *extra) {
    ln_layout l = {M, D, extra, extra + M, extra + 2 * M + D, extra + 2 * M + 2 * D, extra + 2 * M};
    return l;
}

/* The forward, shared by the entry and replay. ins: x, then weight and bias as flags say. */
static void ln_run(cg_tensor *const *ins, int flags, int rms, double eps, const ln_layout *l, void *y) {
    const cg_tensor *x = ins[0], *w = flags & CG_LN_WEIGHT ? ins[1] : NULL;
    const cg_tensor *b = flags & CG_LN_BIAS ? ins[flags & CG_LN_WEIGHT ? 2 : 1] : NULL;
    if (w) memcpy(l->w, w->data, (size_t)l->D * cg_dtype_size(x->dtype));
    BN_DISPATCH(x->dtype, ln_fwd_, l->M, l->D, rms, eps, x->data, w ? l->w : NULL, b ? b->data : NULL, l->mean,
                l->rstd, y);
}

void cg_layer_norm_replay(cg_node *node) {
    ln_layout l = ln_lay(node->ip[0], node->ip[1], node->extra);
    ln_run(node->inputs, (int)node->ip[2], node->op == CG_OP_RMS_NORM, node->p[0], &l, node->saved_out->data);
}

/* weight or bias: the normalized shape exactly, in x's dtype */
static cg_status ln_check_param(const char *op, const char *name, const cg_tensor *t, const cg_tensor *x, int nd,
                                const int64_t *nshape) {
    char b1[CG_SHAPE_BUF], b2[CG_SHAPE_BUF];
    CG_REQUIRE_FLOAT(op, t);
    if (t->dtype != x->dtype)
        return cg_error(CG_ERR_DTYPE, "%s: %s is %s but the input is %s", op, name, cg_dtype_name(t->dtype),
                        cg_dtype_name(x->dtype));
    if (t->ndim != nd || memcmp(t->shape, nshape, (size_t)nd * sizeof(int64_t)))
        return cg_error(CG_ERR_SHAPE, "%s: %s of shape %s does not match normalized_shape %s", op, name,
                        cg_shape_str(t->ndim, t->shape, b1, sizeof b1), cg_shape_str(nd, nshape, b2, sizeof b2));
    return CG_OK;
}

cg_status cg_layer_norm(cg_tensor *x, int nd, const int64_t *nshape, cg_tensor *weight, cg_tensor *bias, double eps,
                        int rms, cg_tensor **out) {
    CG_PROF_BEGIN();
    const char *op = rms ? "rms_norm" : "layer_norm";
    CG_REQUIRE_FLOAT(op, x);
    char b1[CG_SHAPE_BUF], b2[CG_SHAPE_BUF];
    cg_status st;
    if (nd < 1 || nd > x->ndim || memcmp(x->shape + x->ndim - nd, nshape, (size_t)nd * sizeof(int64_t)))
        return cg_error(CG_ERR_SHAPE, "%s: normalized_shape %s does not match the last dims of the input of "
                                      "shape %s (expected an input of shape (*, %s))",
                        op, cg_shape_str(nd, nshape, b1, sizeof b1), cg_shape_str(x->ndim, x->shape, b2, sizeof b2),
                        nd >= 1 ? cg_shape_str(nd, nshape, b1, sizeof b1) : "...");
    if (rms && bias) return cg_error(CG_ERR_VALUE, "rms_norm: takes no bias");
    if ((weight && (st = ln_check_param(op, "weight", weight, x, nd, nshape))) ||
        (bias && (st = ln_check_param(op, "bias", bias, x, nd, nshape))))
        return st;
    int64_t D = cg_numel(nd, nshape), M = D ? x->numel / D : 0;
    int flags = (weight ? CG_LN_WEIGHT : 0) | (bias ? CG_LN_BIAS : 0);
    double *extra = cg_malloc((size_t)(2 * M + 3 * D + 1) * sizeof(double));
    if (!extra) return cg_error(CG_ERR_NOMEM, "%s: out of memory", op);
    cg_tensor *y;
    if ((st = cg_tensor_empty(x->dtype, x->ndim, x->shape, &y))) {
        cg_free(extra);
        return st;
    }
    cg_tensor *ins[3] = {x, NULL, NULL};
    int n = 1;
    if (weight) ins[n++] = weight;
    if (bias) ins[n++] = bias;
    ln_layout l = ln_lay(M, D, extra);
    ln_run(ins, flags, rms, eps, &l, y->data);
    cg_node *node;
    if ((st = cg_record(rms ? CG_OP_RMS_NORM : CG_OP_LAYER_NORM, n, ins, y, &node))) {
        cg_free(extra);
        return st;
    }
    if (node) {
        node->extra = extra;
        node->ip[0] = M;
        node->ip[1] = D;
        node->ip[2] = flags;
        node->p[0] = eps;
    } else {
        cg_free(extra);
    }
    *out = y;
    return CG_OK;
}

void cg_layer_norm_bwd(cg_node *node, const void *g, void **dins) {
    ln_layout l = ln_lay(node->ip[0], node->ip[1], node->extra);
    int flags = (int)node->ip[2], rms = node->op == CG_OP_RMS_NORM;
    int iw = 1, ib = flags & CG_LN_WEIGHT ? 2 : 1;
    void *dw = flags & CG_LN_WEIGHT ? dins[iw] : NULL, *db = flags & CG_LN_BIAS ? dins[ib] : NULL;
    for (int64_t j = 0; j < l.D; j++) l.sw[j] = l.sb[j] = 0;
    BN_DISPATCH(node->dtype, ln_bwd_, l.M, l.D, rms, node->inputs[0]->data, g, flags & CG_LN_WEIGHT ? l.w : NULL,
                l.mean, l.rstd, dins[0], node->fresh & 1, dw ? l.sw : NULL, db ? l.sb : NULL);
    if (dw) BN_DISPATCH(node->dtype, bn_channel_out_, l.D, l.sw, dw, node->fresh >> iw & 1);
    if (db) BN_DISPATCH(node->dtype, bn_channel_out_, l.D, l.sb, db, node->fresh >> ib & 1);
}
