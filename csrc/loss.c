/* loss.c: the fused, numerically stable softmax cross-entropy.
 *
 * With lp = log_softmax(x_i) = x_i - logsumexp(x_i), class weights w (1 without), label
 * smoothing eps and C classes, row i of target t_i loses
 *     loss_i = (1 - eps) w_t (-lp_t) + (eps / C) sum_c w_c (-lp_c),
 * and nothing when t_i is ignore_index (PyTorch's definition). 'mean' divides the sum by the
 * weights of the targets not ignored (their count without weights), 'sum' does not. Backward:
 *     d loss_i / d x_ij = a_i softmax_j - (1 - eps) w_t [j == t] - (eps / C) w_j,
 *     a_i = (1 - eps) w_t + (eps / C) sum_c w_c.
 * nll_loss is the same op on log-probabilities (ip[5]): lp = x, no logsumexp, no smoothing.
 * The forward keeps each row's logsumexp so the backward rebuilds softmax in one pass. The
 * class weights are copied into the node when the op is called (constants of a recorded step,
 * like its non-input targets); the targets are re-read by a replay when they were a step input. */
#include "cg_internal.h"
#include "cg_math.h"

typedef struct {
    const double *w; /* C class weights, or NULL */
    double wsum;     /* their sum */
    int64_t ignore_index;
    double smoothing;
} ce_params;

/* node->extra: N int64 targets, N doubles of logsumexp, then C doubles of class weights when
 * given; ip = N, C, reduction, ignore_index, has weights, nll; p = label smoothing, the mean's
 * denominator (rewritten by each run: it depends on the targets) */
/* Rows are taken in blocks of up to CE_BLOCK values: the maxes first, then every
 * exp(x - max) of the block in one flat loop (vectorised even for 10 classes, where a
 * per-row loop is mostly its scalar remainder), then each row's sum. A row's max and sum
 * run over CE_LANES lanes (loss_impl.h). */
#define CE_BLOCK 1024
#define CE_LANES 8
#define CG_IMPL "loss_impl.h"
#include "cg_each_dtype.h"

static ce_params ce_params_of(int64_t *extra, int64_t N, int64_t C, int has_w, int64_t ignore, double eps) {
    ce_params cp = {has_w ? (const double *)(extra + N) + N : NULL, 0, ignore, eps};
    if (cp.w)
        for (int64_t c = 0; c < C; c++) cp.wsum += cp.w[c];
    return cp;
}

/* tgt: N targets, followed by room for N doubles (each row's logsumexp, for backward);
 * returns the mean's denominator */
static double ce_run(const cg_tensor *logits, int64_t *tgt, const ce_params *cp, int reduction, int nll,
                     void *ydata) {
    int64_t N = logits->shape[0], C = logits->shape[1];
    double *lses = (double *)(tgt + N);
    if (nll)
        return logits->dtype == CG_F32 ? nll_fwd__f32(N, C, logits->data, tgt, cp, reduction, ydata)
                                       : nll_fwd__f64(N, C, logits->data, tgt, cp, reduction, ydata);
    if (logits->dtype == CG_F32) return ce_fwd__f32(N, C, logits->data, tgt, cp, reduction, ydata, lses);
    return ce_fwd__f64(N, C, logits->data, tgt, cp, reduction, ydata, lses);
}

void cg_cross_entropy_replay(cg_node *node) {
    ce_params cp = ce_params_of(node->extra, node->ip[0], node->ip[1], (int)node->ip[4], node->ip[3], node->p[0]);
    node->p[1] = ce_run(node->inputs[0], node->extra, &cp, (int)node->ip[2], (int)node->ip[5], node->saved_out->data);
}

cg_status cg_cross_entropy(cg_tensor *logits, const int64_t *targets, const cg_tensor *weight, int64_t ignore_index,
                           double label_smoothing, int reduction, int nll, cg_tensor **out) {
    CG_PROF_BEGIN();
    const char *op = nll ? "nll_loss" : "cross_entropy";
    CG_REQUIRE_FLOAT(op, logits);
    char b1[CG_SHAPE_BUF], b2[CG_SHAPE_BUF];
    if (logits->ndim != 2)
        return cg_error(CG_ERR_SHAPE, "%s: the input must be 2-D [batch, classes], got shape %s", op,
                        cg_shape_str(logits->ndim, logits->shape, b1, sizeof b1));
    if (reduction < CG_REDUCE_NONE || reduction > CG_REDUCE_SUM)
        return cg_error(CG_ERR_VALUE, "%s: unknown reduction %d", op, reduction);
    if (!(label_smoothing >= 0 && label_smoothing <= 1) || (nll && label_smoothing != 0))
        return cg_error(CG_ERR_VALUE, "%s: label_smoothing must be between 0.0 and 1.0%s, got %g", op,
                        nll ? " (and 0 for nll_loss)" : "", label_smoothing);
    int64_t N = logits->shape[0], C = logits->shape[1];
    if (C == 0 && N > 0) return cg_error(CG_ERR_SHAPE, "%s: the input has no classes", op);
    if (weight) {
        CG_REQUIRE_FLOAT(op, weight);
        if (weight->ndim != 1 || weight->shape[0] != C)
            return cg_error(CG_ERR_SHAPE, "%s: weight of shape %s does not fit the input of shape %s "
                                          "(expected one weight per class: (%lld,))",
                            op, cg_shape_str(weight->ndim, weight->shape, b1, sizeof b1),
                            cg_shape_str(2, logits->shape, b2, sizeof b2), (long long)C);
    }
    for (int64_t i = 0; i < N; i++)
        if ((targets[i] < 0 || targets[i] >= C) && targets[i] != ignore_index)
            return cg_error(CG_ERR_INDEX, "%s: target %lld at position %lld is not a class "
                                          "index in [0, %lld) (input of shape %s)",
                            op, (long long)targets[i], (long long)i, (long long)C,
                            cg_shape_str(2, logits->shape, b1, sizeof b1));
    size_t nw = weight ? (size_t)C : 0;
    int64_t *tgt = cg_malloc((size_t)(N ? N : 1) * (sizeof(int64_t) + sizeof(double)) + nw * sizeof(double));
    if (!tgt) return cg_error(CG_ERR_NOMEM, "%s: out of memory", op);
    memcpy(tgt, targets, (size_t)N * sizeof(int64_t));
    if (weight) {
        double *w = (double *)(tgt + N) + N;
        for (int64_t c = 0; c < C; c++)
            w[c] = weight->dtype == CG_F32 ? (double)((const float *)weight->data)[c] : ((const double *)weight->data)[c];
    }
    ce_params cp = ce_params_of(tgt, N, C, weight != NULL, ignore_index, label_smoothing);
    cg_tensor *y;
    cg_status st = cg_tensor_empty(logits->dtype, reduction == CG_REDUCE_NONE ? 1 : 0, &N, &y);
    if (st) {
        cg_free(tgt);
        return st;
    }
    double denom = ce_run(logits, tgt, &cp, reduction, nll, y->data);
    cg_node *node;
    if ((st = cg_record(nll ? CG_OP_NLL_LOSS : CG_OP_CROSS_ENTROPY, 1, &logits, y, &node))) {
        cg_free(tgt);
        return st;
    }
    if (node) {
        node->extra = tgt;
        node->ip[0] = N;
        node->ip[1] = C;
        node->ip[2] = reduction;
        node->ip[3] = ignore_index;
        node->ip[4] = weight != NULL;
        node->ip[5] = nll;
        node->p[0] = label_smoothing;
        node->p[1] = denom;
        if (cg_capturing) cg_capture_note_index_ignoring(targets, N, C, ignore_index);
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
    ce_params cp = ce_params_of(node->extra, N, C, (int)node->ip[4], node->ip[3], node->p[0]);
    const int64_t *tgt = node->extra;
    const double *lses = (const double *)(tgt + N);
    const void *X = node->inputs[0]->data;
    int fresh = node->fresh & 1;
    if (node->ip[5]) {
        if (node->inputs[0]->dtype == CG_F32) nll_bwd__f32(N, C, tgt, &cp, reduction, node->p[1], g, dins[0], fresh);
        else nll_bwd__f64(N, C, tgt, &cp, reduction, node->p[1], g, dins[0], fresh);
    } else if (node->inputs[0]->dtype == CG_F32)
        ce_bwd__f32(N, C, X, tgt, lses, &cp, reduction, node->p[1], g, dins[0], fresh);
    else
        ce_bwd__f64(N, C, X, tgt, lses, &cp, reduction, node->p[1], g, dins[0], fresh);
}
