/* reduce.c: sum, mean, max, min, logsumexp over a run of adjacent axes, softmax /
 * log_softmax along one axis, and cumsum (the "reduce" family: y keeps x's shape, the
 * [O, R, I] layout and the rules are a reduction's). The facade reduces non-adjacent axis
 * sets one run at a time. */
#include "cg_internal.h"
#include "cg_math.h"

#define CG_IMPL "reduce_impl.h"
#include "cg_each_dtype.h"

static void split_dims(const cg_tensor *x, int a0, int a1, int64_t *O, int64_t *R, int64_t *I) {
    *O = cg_numel(a0, x->shape);
    *R = cg_numel(a1 - a0, x->shape + a0);
    *I = cg_numel(x->ndim - a1, x->shape + a1);
}

/* Record y = op(x) with the [O, R, I] layout its backward rule needs; hand y to *out. */
static cg_status record_ori(int op, cg_tensor *x, cg_tensor *y, int64_t O, int64_t R, int64_t I,
                            cg_tensor **out) {
    cg_node *node;
    cg_status st = cg_record(op, 1, &x, y, &node);
    if (st) return st;
    if (node) {
        node->ip[0] = O;
        node->ip[1] = R;
        node->ip[2] = I;
    }
    *out = y;
    return CG_OK;
}

static void reduce_run(int op, const cg_tensor *x, void *y, int64_t O, int64_t R, int64_t I) {
    int f32 = x->dtype == CG_F32;
    switch (op) {
    case CG_OP_SUM:
    case CG_OP_MEAN:
        if (f32) sum_fwd__f32(O, R, I, x->data, y, op == CG_OP_MEAN);
        else sum_fwd__f64(O, R, I, x->data, y, op == CG_OP_MEAN);
        break;
    case CG_OP_MAX:
    case CG_OP_MIN:
        if (f32) max_fwd__f32(O, R, I, x->data, y, op == CG_OP_MAX ? 1 : -1);
        else max_fwd__f64(O, R, I, x->data, y, op == CG_OP_MAX ? 1 : -1);
        break;
    case CG_OP_CUMSUM:
        if (f32) cumsum_fwd__f32(O, R, I, x->data, y);
        else cumsum_fwd__f64(O, R, I, x->data, y);
        break;
    default:
        if (f32) logsumexp_fwd__f32(O, R, I, x->data, y);
        else logsumexp_fwd__f64(O, R, I, x->data, y);
    }
}

void cg_reduce_replay(cg_node *node) {
    reduce_run(node->op, node->inputs[0], node->saved_out->data, node->ip[0], node->ip[1], node->ip[2]);
}

cg_status cg_reduce(int op, cg_tensor *x, int axis0, int axis1, int keepdims, cg_tensor **out) {
    CG_PROF_BEGIN();
    CG_REQUIRE_FLOAT(cg_op_name(op), x);
    const char *name = cg_op_name(op);
    char b1[CG_SHAPE_BUF];
    if (op != CG_OP_SUM && op != CG_OP_MEAN && op != CG_OP_MAX && op != CG_OP_MIN &&
        op != CG_OP_LOGSUMEXP)
        return cg_error(CG_ERR_VALUE, "reduce: op '%s' is not a reduction", name);
    if (axis0 < 0 || axis1 < axis0 || axis1 > x->ndim)
        return cg_error(CG_ERR_INDEX, "%s: axes [%d, %d) out of range for shape %s", name, axis0,
                        axis1, cg_shape_str(x->ndim, x->shape, b1, sizeof b1));
    int64_t O, R, I;
    split_dims(x, axis0, axis1, &O, &R, &I);
    if (R == 0 && (op == CG_OP_MAX || op == CG_OP_MIN)) /* as numpy: no identity */
        return cg_error(CG_ERR_VALUE, "%s: cannot reduce over a zero-size dimension of shape %s",
                        name, cg_shape_str(x->ndim, x->shape, b1, sizeof b1));
    int64_t shape[CG_MAX_DIMS];
    int nd = 0;
    for (int d = 0; d < x->ndim; d++) {
        if (d < axis0 || d >= axis1) shape[nd++] = x->shape[d];
        else if (keepdims) shape[nd++] = 1;
    }
    cg_tensor *y;
    cg_status st = cg_tensor_empty(x->dtype, nd, shape, &y);
    if (st) return st;
    reduce_run(op, x, y->data, O, R, I);
    return record_ori(op, x, y, O, R, I, out);
}

void cg_reduce_bwd(cg_node *node, const void *g, void **dins) {
    const cg_tensor *x = node->inputs[0];
    if (!dins[0]) return;
    int64_t O = node->ip[0], R = node->ip[1], I = node->ip[2];
    int f32 = x->dtype == CG_F32;
    void *dx = dins[0], *y = node->saved_out->data;
    switch (node->op) {
    case CG_OP_SUM:
    case CG_OP_MEAN:
        if (f32) sum_bwd__f32(O, R, I, g, dx, node->op == CG_OP_MEAN);
        else sum_bwd__f64(O, R, I, g, dx, node->op == CG_OP_MEAN);
        break;
    case CG_OP_MAX:
    case CG_OP_MIN:
        if (f32) max_bwd__f32(O, R, I, x->data, y, g, dx);
        else max_bwd__f64(O, R, I, x->data, y, g, dx);
        break;
    case CG_OP_CUMSUM:
        if (f32) cumsum_bwd__f32(O, R, I, g, dx);
        else cumsum_bwd__f64(O, R, I, g, dx);
        break;
    default:
        if (f32) logsumexp_bwd__f32(O, R, I, x->data, y, g, dx);
        else logsumexp_bwd__f64(O, R, I, x->data, y, g, dx);
    }
}

/* An op whose y has x's shape and works along one axis (cumsum, softmax, log_softmax):
 * the axis checked, x seen as [O, R, I], run, recorded. */
static cg_status along_axis(int op, cg_tensor *x, int axis,
                            void (*run)(int, const cg_tensor *, void *, int64_t, int64_t, int64_t),
                            cg_tensor **out) {
    char b1[CG_SHAPE_BUF];
    if (axis < 0 || axis >= (x->ndim ? x->ndim : 1))
        return cg_error(CG_ERR_INDEX, "%s: axis %d out of range for shape %s", cg_op_name(op), axis,
                        cg_shape_str(x->ndim, x->shape, b1, sizeof b1));
    int64_t O, R, I;
    if (x->ndim == 0) O = R = I = 1;
    else split_dims(x, axis, axis + 1, &O, &R, &I);
    cg_tensor *y;
    cg_status st = cg_tensor_empty(x->dtype, x->ndim, x->shape, &y);
    if (st) return st;
    run(op, x, y->data, O, R, I);
    return record_ori(op, x, y, O, R, I, out);
}

/* y [shape of x] = inclusive prefix sum of x along axis; backward the prefix sum from the end. */
cg_status cg_cumsum(cg_tensor *x, int axis, cg_tensor **out) {
    CG_PROF_BEGIN();
    CG_REQUIRE_FLOAT("cumsum", x);
    return along_axis(CG_OP_CUMSUM, x, axis, reduce_run, out);
}

static void softmax_run(int op, const cg_tensor *x, void *y, int64_t O, int64_t R, int64_t I) {
    if (x->dtype == CG_F32) softmax_fwd__f32(O, R, I, x->data, y, op == CG_OP_LOG_SOFTMAX);
    else softmax_fwd__f64(O, R, I, x->data, y, op == CG_OP_LOG_SOFTMAX);
}

void cg_softmax_replay(cg_node *node) {
    softmax_run(node->op, node->inputs[0], node->saved_out->data, node->ip[0], node->ip[1], node->ip[2]);
}

cg_status cg_softmax(int op, cg_tensor *x, int axis, cg_tensor **out) {
    CG_PROF_BEGIN();
    CG_REQUIRE_FLOAT(cg_op_name(op), x);
    if (op != CG_OP_SOFTMAX && op != CG_OP_LOG_SOFTMAX)
        return cg_error(CG_ERR_VALUE, "softmax: op '%s' is not softmax or log_softmax", cg_op_name(op));
    return along_axis(op, x, axis, softmax_run, out);
}

void cg_softmax_bwd(cg_node *node, const void *g, void **dins) {
    if (!dins[0]) return;
    int64_t O = node->ip[0], R = node->ip[1], I = node->ip[2];
    int log_out = node->op == CG_OP_LOG_SOFTMAX;
    if (node->dtype == CG_F32)
        softmax_bwd__f32(O, R, I, node->saved_out->data, g, dins[0], log_out);
    else
        softmax_bwd__f64(O, R, I, node->saved_out->data, g, dins[0], log_out);
}
