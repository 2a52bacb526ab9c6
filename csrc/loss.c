/* loss.c: the fused, numerically stable softmax cross-entropy.
 *
 * loss_i = logsumexp(x_i) - x_i[t_i];  d loss_i / d x_i = softmax(x_i) - onehot(t_i).
 * The forward keeps each row's logsumexp so the backward rebuilds softmax in one pass. */
#include "cg_internal.h"
#include "fastmath.h"

#include <math.h>

/* node->extra: N int64 targets, then N doubles of logsumexp; ip = N, C, reduction */
/* Rows are taken in blocks of up to CE_BLOCK values: the maxes first, then every
 * exp(x - max) of the block in one flat loop (vectorised even for 10 classes, where a
 * per-row loop is mostly its scalar remainder), then each row's sum, in order. */
#define CE_BLOCK 1024
#define CE_LOOP(T, EXP)                                                                        \
    do {                                                                                       \
        const T *X = logits->data;                                                             \
        T *Y = ydata;                                                                          \
        double total = 0;                                                                      \
        T buf[CE_BLOCK], ms[CE_BLOCK];                                                         \
        int64_t rows_per = C <= CE_BLOCK ? (C ? CE_BLOCK / C : CE_BLOCK) : 1;                  \
        for (int64_t i0 = 0; i0 < N; i0 += rows_per) {                                         \
            int64_t nr = N - i0 < rows_per ? N - i0 : rows_per;                                \
            for (int64_t i = 0; i < nr; i++) {                                                 \
                const T *row = X + (i0 + i) * C;                                               \
                T m = row[0];                                                                  \
                int nan = m != m;                                                              \
                for (int64_t j = 1; j < C; j++) { /* branch-free: a max and a NaN flag */     \
                    m = row[j] > m ? row[j] : m;                                               \
                    nan |= row[j] != row[j];                                                   \
                }                                                                              \
                ms[i] = nan ? (T)NAN : m;                                                      \
            }                                                                                  \
            if (C <= CE_BLOCK) { /* the whole block's exps in one flat loop */                 \
                for (int64_t r = 0; r < nr; r++)                                               \
                    for (int64_t j = 0; j < C; j++) buf[r * C + j] = X[(i0 + r) * C + j] - ms[r]; \
                for (int64_t k = 0; k < nr * C; k++) buf[k] = EXP(buf[k]);                     \
            }                                                                                  \
            for (int64_t i = 0; i < nr; i++) {                                                 \
                const T *row = X + (i0 + i) * C;                                               \
                double s = 0;                                                                  \
                if (C <= CE_BLOCK) {                                                           \
                    for (int64_t j = 0; j < C; j++) s += buf[i * C + j];                       \
                } else {                                                                       \
                    for (int64_t j0 = 0; j0 < C; j0 += CE_BLOCK) {                             \
                        int64_t nj = C - j0 < CE_BLOCK ? C - j0 : CE_BLOCK;                    \
                        for (int64_t j = 0; j < nj; j++) buf[j] = EXP(row[j0 + j] - ms[i]);    \
                        for (int64_t j = 0; j < nj; j++) s += buf[j];                          \
                    }                                                                          \
                }                                                                              \
                double lse = (double)ms[i] + log(s);                                           \
                lses[i0 + i] = lse;                                                            \
                double li = lse - (double)row[tgt[i0 + i]];                                    \
                if (reduction == CG_REDUCE_NONE) Y[i0 + i] = (T)li;                            \
                total += li;                                                                   \
            }                                                                                  \
        }                                                                                      \
        if (reduction != CG_REDUCE_NONE)                                                       \
            *Y = (T)(reduction == CG_REDUCE_MEAN ? (N ? total / (double)N : NAN) : total);     \
    } while (0)

/* tgt: N targets, followed by room for N doubles (each row's logsumexp, for backward) */
CG_SIMD static void ce_run(const cg_tensor *logits, int64_t *tgt, int reduction, void *ydata) {
    int64_t N = logits->shape[0], C = logits->shape[1];
    double *lses = (double *)(tgt + N);
    if (logits->dtype == CG_F32) CE_LOOP(float, cg_expf);
    else CE_LOOP(double, exp);
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

/* As the forward: a block of rows' exps in one flat loop, then dx += g (softmax - onehot). */
#define CE_BWD(T, EXP)                                                                         \
    do {                                                                                       \
        const T *X = node->inputs[0]->data, *G = g;                                            \
        T *D = dins[0];                                                                        \
        T buf[CE_BLOCK];                                                                       \
        T g_all = reduction == CG_REDUCE_NONE ? 0 : reduction == CG_REDUCE_MEAN ? G[0] / (T)N : G[0]; \
        int64_t rows_per = C && C <= CE_BLOCK ? CE_BLOCK / C : 1, cols = C <= CE_BLOCK ? C : CE_BLOCK; \
        for (int64_t i0 = 0; i0 < N; i0 += rows_per) {                                         \
            int64_t nr = N - i0 < rows_per ? N - i0 : rows_per;                                \
            for (int64_t j0 = 0; j0 < C; j0 += cols) {                                         \
                int64_t nj = C - j0 < cols ? C - j0 : cols;                                    \
                for (int64_t r = 0; r < nr; r++)                                               \
                    for (int64_t j = 0; j < nj; j++)                                           \
                        buf[r * nj + j] = X[(i0 + r) * C + j0 + j] - (T)lses[i0 + r];          \
                for (int64_t k = 0; k < nr * nj; k++) buf[k] = EXP(buf[k]);                    \
                for (int64_t r = 0; r < nr; r++) {                                             \
                    int64_t i = i0 + r;                                                        \
                    T gi = reduction == CG_REDUCE_NONE ? G[i] : g_all;                          \
                    T *drow = D + i * C + j0;                                                  \
                    if (node->fresh & 1) /* uninitialised: write (Note [First write]) */     \
                        for (int64_t j = 0; j < nj; j++) drow[j] = (T)0 + gi * buf[r * nj + j]; \
                    else                                                                       \
                        for (int64_t j = 0; j < nj; j++) drow[j] += gi * buf[r * nj + j];      \
                }                                                                              \
            }                                                                                  \
            for (int64_t i = i0; i < i0 + nr; i++)                                             \
                D[i * C + tgt[i]] -= reduction == CG_REDUCE_NONE ? G[i] : g_all;               \
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
