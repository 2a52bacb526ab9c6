/* embedding.c: the embedding lookup y[..., :] = W[ids[...], :] as one op.
 *
 * W [V, D] is the table, ids any shape of n integers in [0, V) (int32 ids are widened by the
 * binding); y has ids' shape + (D,). Backward scatter-adds g's rows into the rows the ids
 * used (repeated ids add up), skipping padding_idx's row, and with scale_grad_by_freq divides
 * each row's gradient by how often its id occurs. With max_norm the op first renormalises, in
 * place, every used row whose norm exceeds it (as PyTorch's embedding_renorm_), so a replayed
 * step (cgrad.compile) does too.
 *
 * The node keeps the checked ids (node->extra: n int64, then V counts when scaling by
 * frequency, then V bytes of scratch for max_norm); replay re-reads ids that came in as a step
 * input. It reads no saved value: the gradient depends on the ids only (R_NONE).
 * ip: n, D, padding_idx (-1: none), V, flags (CG_EMB_*); p: max_norm, norm_type. */
#include "cg_internal.h"

#include <math.h>

#define CG_IMPL "embedding_impl.h"
#include "cg_each_dtype.h"

#define EMB_DISPATCH(dtype, fn, ...)                                                            \
    do {                                                                                        \
        if ((dtype) == CG_F32) fn##_f32(__VA_ARGS__);                                          \
        else fn##_f64(__VA_ARGS__);                                                            \
    } while (0)

typedef struct {
    int64_t n, D, V, pad;
    int flags;
    double max_norm, norm_type;
} emb_args;

/* The forward, shared by the entry and replay: renormalise, count, then gather. */
static void emb_run(const emb_args *a, cg_tensor *w, int64_t *extra, void *y) {
    int64_t *count = extra + a->n;
    if (a->flags & CG_EMB_MAX_NORM) {
        unsigned char *seen = (unsigned char *)(count + (a->flags & CG_EMB_SCALE_FREQ ? a->V : 0));
        memset(seen, 0, (size_t)a->V);
        EMB_DISPATCH(w->dtype, emb_renorm_, a->n, a->D, extra, a->max_norm, a->norm_type, w->data, seen);
        cg_storage_bump(w->storage);
    }
    if (a->flags & CG_EMB_SCALE_FREQ) {
        memset(count, 0, (size_t)a->V * sizeof *count);
        for (int64_t l = 0; l < a->n; l++) count[extra[l]]++;
    }
    EMB_DISPATCH(w->dtype, emb_fwd_, a->n, a->D, extra, w->data, y);
}

static emb_args emb_from_node(const cg_node *node) {
    emb_args a = {node->ip[0], node->ip[1], node->ip[3], node->ip[2], (int)node->ip[4], node->p[0], node->p[1]};
    return a;
}

void cg_embedding_replay(cg_node *node) {
    emb_args a = emb_from_node(node);
    emb_run(&a, node->inputs[0], node->extra, node->saved_out->data);
}

cg_status cg_embedding(cg_tensor *weight, const int64_t *ids, int ids_ndim, const int64_t *ids_shape,
                       int64_t padding_idx, double max_norm, double norm_type, int flags, cg_tensor **out) {
    CG_PROF_BEGIN();
    CG_REQUIRE_FLOAT("embedding", weight);
    char b1[CG_SHAPE_BUF], b2[CG_SHAPE_BUF];
    if (weight->ndim != 2)
        return cg_error(CG_ERR_SHAPE, "embedding: the weight must be 2-D (num_embeddings, embedding_dim), got shape %s",
                        cg_shape_str(weight->ndim, weight->shape, b1, sizeof b1));
    if (ids_ndim + 1 > CG_MAX_DIMS)
        return cg_error(CG_ERR_SHAPE, "embedding: ids of shape %s give more than %d dims",
                        cg_shape_str(ids_ndim, ids_shape, b1, sizeof b1), CG_MAX_DIMS);
    int64_t V = weight->shape[0], D = weight->shape[1], n = cg_numel(ids_ndim, ids_shape);
    if (padding_idx >= V || padding_idx < -1)
        return cg_error(CG_ERR_VALUE, "embedding: padding_idx %lld is not a row of the weight of shape %s",
                        (long long)padding_idx, cg_shape_str(2, weight->shape, b1, sizeof b1));
    if ((flags & CG_EMB_MAX_NORM) && !(norm_type > 0))
        return cg_error(CG_ERR_VALUE, "embedding: norm_type must be positive, got %g", norm_type);
    for (int64_t l = 0; l < n; l++)
        if (ids[l] < 0 || ids[l] >= V)
            return cg_error(CG_ERR_INDEX, "embedding: index %lld at position %lld of the ids of shape %s is out of "
                                          "range for the weight of shape %s (ids must be in [0, %lld))",
                            (long long)ids[l], (long long)l, cg_shape_str(ids_ndim, ids_shape, b1, sizeof b1),
                            cg_shape_str(2, weight->shape, b2, sizeof b2), (long long)V);
    size_t bytes = (size_t)n * sizeof(int64_t) + (flags & CG_EMB_SCALE_FREQ ? (size_t)V * sizeof(int64_t) : 0) +
                   (flags & CG_EMB_MAX_NORM ? (size_t)V : 0);
    int64_t *extra = cg_malloc(bytes ? bytes : 1);
    if (!extra) return cg_error(CG_ERR_NOMEM, "embedding: out of memory");
    memcpy(extra, ids, (size_t)n * sizeof(int64_t));
    int64_t shape[CG_MAX_DIMS];
    memcpy(shape, ids_shape, (size_t)ids_ndim * sizeof(int64_t));
    shape[ids_ndim] = D;
    cg_tensor *y;
    cg_status st = cg_tensor_empty(weight->dtype, ids_ndim + 1, shape, &y);
    if (st) {
        cg_free(extra);
        return st;
    }
    emb_args a = {n, D, V, padding_idx, flags, max_norm, norm_type};
    emb_run(&a, weight, extra, y->data);
    cg_node *node;
    if ((st = cg_record(CG_OP_EMBEDDING, 1, &weight, y, &node))) {
        cg_free(extra);
        return st;
    }
    if (node) {
        node->extra = extra;
        node->ip[0] = n;
        node->ip[1] = D;
        node->ip[2] = padding_idx;
        node->ip[3] = V;
        node->ip[4] = flags;
        node->p[0] = max_norm;
        node->p[1] = norm_type;
        if (cg_capturing) cg_capture_note_index(ids, n, V, 0);
    } else {
        cg_free(extra);
    }
    *out = y;
    return CG_OK;
}

void cg_embedding_bwd(cg_node *node, const void *g, void **dins) {
    if (!dins[0]) return;
    emb_args a = emb_from_node(node);
    const int64_t *ids = node->extra;
    EMB_DISPATCH(node->dtype, emb_bwd_, a.n, a.D, ids, a.pad, a.flags & CG_EMB_SCALE_FREQ ? ids + a.n : NULL, g,
                 dins[0]);
}
