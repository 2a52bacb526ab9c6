/* loss.c: the fused, numerically stable softmax cross-entropy.
 *
 * loss_i = logsumexp(x_i) - x_i[t_i];  d loss_i / d x_i = softmax(x_i) - onehot(t_i).
 * The forward keeps each row's logsumexp so the backward rebuilds softmax in one pass. */
#include "cg_internal.h"
#include "fastmath.h"

#include <math.h>

/* node->extra: N int64 targets, then N doubles of logsumexp; ip = N, C, reduction */
#define CE_LOOP(T, EXP, LOG)                                                                   \
    do {                                                                                       \
        const T *X = logits->data;                                                             \
        T *Y = ydata;                                                                          \
        double total = 0;                                                                      \
        for (int64_t i = 0; i < N; i++) {                                                      \
            const T *row = X + i * C;                                                          \
            T m = row[0];                                                                      \
            for (int64_t j = 1; j < C; j++)                                                    \
                if (row[j] > m || row[j] != row[j]) m = row[j];                                \
            double s = 0;                                                                      \
            for (int64_t j = 0; j < C; j++) s += EXP(row[j] - m);                              \
            double lse = (double)m + log(s);                                                   \
            lses[i] = lse;                                                                     \
            double li = lse - (double)row[tgt[i]];                                             \
            if (reduction == CG_REDUCE_NONE) Y[i] = (T)li;                                     \
            total += li;                                                                       \
        }                                                                                      \
        if (reduction != CG_REDUCE_NONE)                                                       \
            *Y = (T)(reduction == CG_REDUCE_MEAN ? (N ? total / (double)N : NAN) : total); \
    } while (0)

/* tgt: N targets, followed by room for N doubles (each row's logsumexp, for backward) */
CG_SIMD static void ce_run(const cg_tensor *logits, int64_t *tgt, int reduction, void *ydata) {
    int64_t N = logits->shape[0], C = logits->shape[1];
    double *lses = (double *)(tgt + N);
    if (logits->dtype == CG_F32) CE_LOOP(float, cg_expf, logf);
    else CE_LOOP(double, exp, log);
}

void cg_cross_entropy_replay(cg_node *node) {
    ce_run(node->inputs[0], node->extra, (int)node->ip[2], node->saved_out->data);
}

cg_status cg_cross_entropy(cg_tensor *logits, const int64_t *targets, int reduction, cg_tensor **out) {
    CG_PROF_BEGIN();
    char b1[CG_SHAPE_BUF];
    if (logits->ndim != 2)
        return cg_error(CG_ERR_SHAPE, "cross_entropy: logits must be 2-D [batch, classes], got shape %s",
                        cg_shape_str(logits->ndim, logits->shape, b1, sizeof b1));
    if (reduction < CG_REDUCE_NONE || reduction > CG_REDUCE_SUM)
        return cg_error(CG_ERR_VALUE, "cross_entropy: unknown reduction %d", reduction);
    int64_t N = logits->shape[0], C = logits->shape[1];
    if (C == 0 && N > 0) return cg_error(CG_ERR_SHAPE, "cross_entropy: logits have no classes");
    for (int64_t i = 0; i < N; i++)
        if (targets[i] < 0 || targets[i] >= C)
            return cg_error(CG_ERR_INDEX, "cross_entropy: target %lld at position %lld is not a class "
                                          "index in [0, %lld)",
                            (long long)targets[i], (long long)i, (long long)C);
    int64_t *tgt = cg_malloc((size_t)(N ? N : 1) * (sizeof(int64_t) + sizeof(double)));
    if (!tgt) return cg_error(CG_ERR_NOMEM, "cross_entropy: out of memory");
    memcpy(tgt, targets, (size_t)N * sizeof(int64_t));
    cg_tensor *y;
    cg_status st = cg_tensor_empty(logits->dtype, reduction == CG_REDUCE_NONE ? 1 : 0, &N, &y);
    if (st) {
        cg_free(tgt);
        return st;
    }
    ce_run(logits, tgt, reduction, y->data);
    cg_node *node;
    if ((st = cg_record(CG_OP_CROSS_ENTROPY, 1, &logits, y, &node))) {
        cg_free(tgt);
        return st;
    }
    if (node) {
        node->extra = tgt;
        node->ip[0] = N;
        node->ip[1] = C;
        node->ip[2] = reduction;
        if (cg_capturing) cg_capture_note_index(targets, N, C, 0);
    } else {
        cg_free(tgt);
    }
    *out = y;
    return CG_OK;
}

#define CE_BWD(T, EXP)                                                                         \
    do {                                                                                       \
        const T *X = node->inputs[0]->data, *G = g;                                            \
        T *D = dins[0];                                                                        \
        for (int64_t i = 0; i < N; i++) {                                                      \
            T gi = reduction == CG_REDUCE_NONE ? G[i] : reduction == CG_REDUCE_MEAN ? G[0] / (T)N : G[0]; \
            const T *row = X + i * C;                                                          \
            T *drow = D + i * C;                                                               \
            T lse = (T)lses[i];                                                                \
            for (int64_t j = 0; j < C; j++) drow[j] += gi * EXP(row[j] - lse);                 \
            drow[tgt[i]] -= gi;                                                                \
        }                                                                                      \
    } while (0)

CG_SIMD void cg_cross_entropy_bwd(cg_node *node, const void *g, void **dins) {
    if (!dins[0]) return;
    int64_t N = node->ip[0], C = node->ip[1];
    int reduction = (int)node->ip[2];
    const int64_t *tgt = node->extra;
    const double *lses = (const double *)(tgt + N);
    if (node->inputs[0]->dtype == CG_F32) CE_BWD(float, cg_expf);
    else CE_BWD(double, exp);
}
