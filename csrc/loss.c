/* loss.c: the fused, numerically stable softmax cross-entropy.
 *
 * loss_i = logsumexp(x_i) - x_i[t_i];  d loss_i / d x_i = softmax(x_i) - onehot(t_i).
 * The forward keeps each row's logsumexp so the backward rebuilds softmax in one pass. */
#include "cg_internal.h"
#include "cg_math.h"

/* node->extra: N int64 targets, then N doubles of logsumexp; ip = N, C, reduction */
/* Rows are taken in blocks of up to CE_BLOCK values: the maxes first, then every
 * exp(x - max) of the block in one flat loop (vectorised even for 10 classes, where a
 * per-row loop is mostly its scalar remainder), then each row's sum, in order. */
#define CE_BLOCK 1024
#define CG_IMPL "loss_impl.h"
#include "cg_each_dtype.h"

/* tgt: N targets, followed by room for N doubles (each row's logsumexp, for backward) */
static void ce_run(const cg_tensor *logits, int64_t *tgt, int reduction, void *ydata) {
    int64_t N = logits->shape[0], C = logits->shape[1];
    double *lses = (double *)(tgt + N);
    if (logits->dtype == CG_F32) ce_fwd__f32(N, C, logits->data, tgt, reduction, ydata, lses);
    else ce_fwd__f64(N, C, logits->data, tgt, reduction, ydata, lses);
}

void cg_cross_entropy_replay(cg_node *node) {
    ce_run(node->inputs[0], node->extra, (int)node->ip[2], node->saved_out->data);
}

cg_status cg_cross_entropy(cg_tensor *logits, const int64_t *targets, int reduction, cg_tensor **out) {
    CG_PROF_BEGIN();
    CG_REQUIRE_FLOAT("cross_entropy", logits);
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

void cg_cross_entropy_bwd(cg_node *node, const void *g, void **dins) {
    if (!dins[0]) return;
    int64_t N = node->ip[0], C = node->ip[1];
    int reduction = (int)node->ip[2];
    const int64_t *tgt = node->extra;
    const double *lses = (const double *)(tgt + N);
    const void *X = node->inputs[0]->data;
    int fresh = node->fresh & 1;
    if (node->inputs[0]->dtype == CG_F32) ce_bwd__f32(N, C, X, tgt, lses, reduction, g, dins[0], fresh);
    else ce_bwd__f64(N, C, X, tgt, lses, reduction, g, dins[0], fresh);
}
