/* matmul.c: Z = X W for 2-D and batched operands (leading dims broadcast), through the
 * current GEMM provider.
 *
 * Backward is two GEMMs with transpose flags and beta = 1 (accumulate, Note [Gradient
 * accumulation]), no transposed copies:  dX += dZ W^T,  dW += X^T dZ.
 * Accumulating also undoes batch broadcasting: every batch that read one slice of W adds
 * its product into the same slice of dW. */
#include "cg_internal.h"

#include <limits.h>

/* Time one GEMM of a backward rule as its own profiler event (dX or dW). */
#define PROF_GEMM(PHASE, FLOPS, ...) CG_PROF_PHASE(node, PHASE, FLOPS, __VA_ARGS__)

/* X [.., n, k] @ W [.., k, m] -> Z [.., n, m] */
typedef struct {
    int64_t n, k, m;
    int fold; /* W has no batch: X's batches fold into the rows of one GEMM */
    int64_t rows; /* GEMM rows when folded */
    cg_bcast batch;
} mm_plan;

static void plan(const cg_tensor *a, const cg_tensor *b, int nb, const int64_t *batch, mm_plan *p) {
    p->n = a->shape[a->ndim - 2];
    p->k = a->shape[a->ndim - 1];
    p->m = b->shape[b->ndim - 1];
    int64_t bb = cg_numel(b->ndim - 2, b->shape);
    p->fold = bb == 1;
    p->rows = cg_numel(a->ndim - 2, a->shape) * p->n;
    cg_bcast_init(&p->batch, nb, batch, a->ndim - 2, a->shape, b->ndim - 2, b->shape);
}

#define CG_IMPL "matmul_impl.h"
#include "cg_each_dtype.h"

static void matmul_run(const cg_tensor *a, const cg_tensor *b, int nb, const int64_t *batch, void *zdata) {
    mm_plan p;
    plan(a, b, nb, batch, &p);
    const cg_blas_provider *blas = cg_blas_current();
    if (a->dtype == CG_F32) mm_fwd__f32(blas->sgemm, &p, a->data, b->data, zdata);
    else mm_fwd__f64(blas->dgemm, &p, a->data, b->data, zdata);
}

void cg_matmul_replay(cg_node *node) {
    matmul_run(node->inputs[0], node->inputs[1], node->ndim - 2, node->shape, node->saved_out->data);
}

cg_status cg_matmul(cg_tensor *a, cg_tensor *b, cg_tensor **out) {
    CG_PROF_BEGIN();
    CG_REQUIRE_FLOAT("matmul", a);
    CG_REQUIRE_FLOAT("matmul", b);
    char b1[CG_SHAPE_BUF], b2[CG_SHAPE_BUF];
    if (a->dtype != b->dtype)
        return cg_error(CG_ERR_DTYPE, "matmul: dtypes float32 and float64 differ; convert one of "
                                      "them with .float() or .double() first");
    if (a->ndim < 2 || b->ndim < 2)
        return cg_error(CG_ERR_SHAPE, "matmul: the core needs operands of at least 2 dims, got %s and %s",
                        cg_shape_str(a->ndim, a->shape, b1, sizeof b1),
                        cg_shape_str(b->ndim, b->shape, b2, sizeof b2));
    if (a->shape[a->ndim - 1] != b->shape[b->ndim - 2])
        return cg_error(CG_ERR_SHAPE,
                        "matmul: shapes %s and %s are not aligned (%lld columns vs %lld rows)",
                        cg_shape_str(a->ndim, a->shape, b1, sizeof b1),
                        cg_shape_str(b->ndim, b->shape, b2, sizeof b2),
                        (long long)a->shape[a->ndim - 1], (long long)b->shape[b->ndim - 2]);
    int nb;
    int64_t shape[CG_MAX_DIMS];
    cg_status st = cg_broadcast_shape("matmul", a->ndim - 2, a->shape, b->ndim - 2, b->shape, &nb, shape);
    if (st)
        return cg_error(st, "matmul: the batch dims of %s and %s cannot be broadcast together",
                        cg_shape_str(a->ndim, a->shape, b1, sizeof b1),
                        cg_shape_str(b->ndim, b->shape, b2, sizeof b2));
    if (nb + 2 > CG_MAX_DIMS) return cg_error(CG_ERR_SHAPE, "matmul: result has too many dims");
    for (int i = 0; i < 2; i++)
        if (a->shape[a->ndim - 2 + i] > INT_MAX || b->shape[b->ndim - 2 + i] > INT_MAX)
            return cg_error(CG_ERR_SHAPE, "matmul: a matrix dimension exceeds 2^31 - 1");
    shape[nb] = a->shape[a->ndim - 2];
    shape[nb + 1] = b->shape[b->ndim - 1];
    cg_tensor *z;
    if ((st = cg_tensor_empty(a->dtype, nb + 2, shape, &z))) return st;
    matmul_run(a, b, nb, shape, z->data);
    cg_tensor *ins[2] = {a, b};
    cg_node *node;
    if ((st = cg_record(CG_OP_MATMUL, 2, ins, z, &node))) return st;
    *out = z;
    return CG_OK;
}

void cg_matmul_bwd(cg_node *node, const void *g, void **dins) {
    const cg_tensor *a = node->inputs[0], *b = node->inputs[1];
    mm_plan p;
    plan(a, b, node->ndim - 2, node->shape, &p);
    const cg_blas_provider *blas = cg_blas_current();
    if (a->dtype == CG_F32) mm_bwd__f32(blas->sgemm, node, &p, a->data, b->data, g, dins[0], dins[1]);
    else mm_bwd__f64(blas->dgemm, node, &p, a->data, b->data, g, dins[0], dins[1]);
}

/* ---- linear: Y [rows, out] = X [rows, in] W^T + b, rows = every leading dim of x ----
 * Backward, the lecture's linear layer:  dX += dY W,  dW += dY^T X,  db += sum_rows dY. */
static void linear_run(const cg_tensor *x, const cg_tensor *w, const cg_tensor *b, void *ydata) {
    int64_t nin = w->shape[1], nout = w->shape[0], rows = cg_numel(x->ndim - 1, x->shape);
    const cg_blas_provider *blas = cg_blas_current();
    const void *bias = b ? b->data : NULL;
    if (x->dtype == CG_F32 && blas->linear_f32 && blas->linear_f32(rows, nin, nout, x->data, w->data, bias, ydata))
        return;
    if (x->dtype == CG_F32) linear_fwd__f32(blas->sgemm, rows, nin, nout, x->data, w->data, bias, ydata);
    else linear_fwd__f64(blas->dgemm, rows, nin, nout, x->data, w->data, bias, ydata);
}

void cg_linear_replay(cg_node *node) {
    linear_run(node->inputs[0], node->inputs[1], node->n_inputs == 3 ? node->inputs[2] : NULL, node->saved_out->data);
}

cg_status cg_linear(cg_tensor *x, cg_tensor *w, cg_tensor *b, cg_tensor **out) {
    CG_PROF_BEGIN();
    CG_REQUIRE_FLOAT("linear", x);
    CG_REQUIRE_FLOAT("linear", w);
    if (b) CG_REQUIRE_FLOAT("linear", b);
    char b1[CG_SHAPE_BUF], b2[CG_SHAPE_BUF];
    if (x->dtype != w->dtype || (b && b->dtype != w->dtype))
        return cg_error(CG_ERR_DTYPE, "linear: input, weight and bias must share a dtype (float32 or float64)");
    if (w->ndim != 2 || x->ndim < 1 || x->shape[x->ndim - 1] != w->shape[1])
        return cg_error(CG_ERR_SHAPE, "linear: input of shape %s does not fit weight of shape %s "
                                      "(expected [..., in] and [out, in])",
                        cg_shape_str(x->ndim, x->shape, b1, sizeof b1),
                        cg_shape_str(w->ndim, w->shape, b2, sizeof b2));
    if (b && (b->ndim != 1 || b->shape[0] != w->shape[0]))
        return cg_error(CG_ERR_SHAPE, "linear: bias of shape %s does not fit weight of shape %s",
                        cg_shape_str(b->ndim, b->shape, b1, sizeof b1),
                        cg_shape_str(w->ndim, w->shape, b2, sizeof b2));
    if (w->shape[0] > INT_MAX || w->shape[1] > INT_MAX)
        return cg_error(CG_ERR_SHAPE, "linear: a weight dimension exceeds 2^31 - 1");
    int64_t nout = w->shape[0];
    int64_t shape[CG_MAX_DIMS];
    memcpy(shape, x->shape, sizeof shape);
    shape[x->ndim - 1] = nout;
    cg_tensor *y;
    cg_status st = cg_tensor_empty(x->dtype, x->ndim, shape, &y);
    if (st) return st;
    linear_run(x, w, b, y->data);
    cg_tensor *ins[3] = {x, w, b};
    cg_node *node;
    if ((st = cg_record(CG_OP_LINEAR, b ? 3 : 2, ins, y, &node))) return st;
    *out = y;
    return CG_OK;
}

void cg_linear_bwd(cg_node *node, const void *g, void **dins) {
    const cg_tensor *x = node->inputs[0], *w = node->inputs[1];
    int64_t nin = w->shape[1], nout = w->shape[0], rows = cg_numel(x->ndim - 1, x->shape);
    void *db = node->n_inputs == 3 ? dins[2] : NULL;
    const cg_blas_provider *blas = cg_blas_current();
    if (x->dtype == CG_F32)
        linear_bwd__f32(blas->sgemm, node, rows, nin, nout, x->data, w->data, g, dins[0], dins[1], db);
    else
        linear_bwd__f64(blas->dgemm, node, rows, nin, nout, x->data, w->data, g, dins[0], dins[1], db);
}

/* ---- gemm: Z [m, n] = op(A) op(B) for 2-D operands, ta and tb in node->ip[0..1] ----
 * Not a user-facing op: the taped backward (create_graph=True) writes matmul's and
 * linear's gradients with it (A^T G, G B^T), so they need no transposed copies. */
typedef struct {
    int ta, tb;
    int64_t m, k, n, lda, ldb;
} gemm_dims;

static gemm_dims dims_of(const cg_tensor *a, const cg_tensor *b, int ta, int tb) {
    return (gemm_dims){.ta = ta, .tb = tb, .m = a->shape[ta ? 1 : 0], .k = a->shape[ta ? 0 : 1],
                       .n = b->shape[tb ? 0 : 1], .lda = a->shape[1], .ldb = b->shape[1]};
}

static void gemm_run(const cg_tensor *a, const cg_tensor *b, gemm_dims d, void *z) {
    const cg_blas_provider *blas = cg_blas_current();
    if (a->dtype == CG_F32) gemm_fwd__f32(blas->sgemm, d.ta, d.tb, d.m, d.k, d.n, a->data, d.lda, b->data, d.ldb, z);
    else gemm_fwd__f64(blas->dgemm, d.ta, d.tb, d.m, d.k, d.n, a->data, d.lda, b->data, d.ldb, z);
}

cg_status cg_gemm(cg_tensor *a, cg_tensor *b, int ta, int tb, cg_tensor **out) {
    CG_PROF_BEGIN();
    CG_REQUIRE_FLOAT("gemm", a);
    CG_REQUIRE_FLOAT("gemm", b);
    char b1[CG_SHAPE_BUF], b2[CG_SHAPE_BUF];
    if (a->dtype != b->dtype)
        return cg_error(CG_ERR_DTYPE, "gemm: dtypes %s and %s differ", cg_dtype_name(a->dtype), cg_dtype_name(b->dtype));
    if (a->ndim != 2 || b->ndim != 2)
        return cg_error(CG_ERR_SHAPE, "gemm: operands must be 2-D, got %s and %s",
                        cg_shape_str(a->ndim, a->shape, b1, sizeof b1), cg_shape_str(b->ndim, b->shape, b2, sizeof b2));
    gemm_dims d = dims_of(a, b, ta != 0, tb != 0);
    if (d.k != b->shape[d.tb ? 1 : 0])
        return cg_error(CG_ERR_SHAPE, "gemm: shapes %s%s and %s%s are not aligned",
                        cg_shape_str(a->ndim, a->shape, b1, sizeof b1), d.ta ? "^T" : "",
                        cg_shape_str(b->ndim, b->shape, b2, sizeof b2), d.tb ? "^T" : "");
    for (int i = 0; i < 2; i++)
        if (a->shape[i] > INT_MAX || b->shape[i] > INT_MAX)
            return cg_error(CG_ERR_SHAPE, "gemm: a matrix dimension exceeds 2^31 - 1");
    int64_t shape[2] = {d.m, d.n};
    cg_tensor *z;
    cg_status st = cg_tensor_empty(a->dtype, 2, shape, &z);
    if (st) return st;
    gemm_run(a, b, d, z->data);
    cg_tensor *ins[2] = {a, b};
    cg_node *node;
    if ((st = cg_record(CG_OP_GEMM, 2, ins, z, &node))) return st;
    if (node) {
        node->ip[0] = d.ta;
        node->ip[1] = d.tb;
    }
    *out = z;
    return CG_OK;
}

void cg_gemm_replay(cg_node *node) {
    gemm_run(node->inputs[0], node->inputs[1], dims_of(node->inputs[0], node->inputs[1], (int)node->ip[0], (int)node->ip[1]),
             node->saved_out->data);
}

void cg_gemm_bwd(cg_node *node, const void *g, void **dins) {
    const cg_tensor *a = node->inputs[0], *b = node->inputs[1];
    gemm_dims d = dims_of(a, b, (int)node->ip[0], (int)node->ip[1]);
    const cg_blas_provider *blas = cg_blas_current();
    if (a->dtype == CG_F32)
        gemm_bwd__f32(blas->sgemm, node, d.ta, d.tb, d.m, d.k, d.n, a->data, d.lda, b->data, d.ldb, g, dins[0], dins[1]);
    else
        gemm_bwd__f64(blas->dgemm, node, d.ta, d.tb, d.m, d.k, d.n, a->data, d.lda, b->data, d.ldb, g, dins[0], dins[1]);
}
