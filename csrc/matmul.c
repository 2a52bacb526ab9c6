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
#define PROF_GEMM(PHASE, FLOPS, ...)                                                            \
    do {                                                                                        \
        if (cg_prof_on) {                                                                       \
            uint64_t t0_ = cg_now_ns();                                                         \
            __VA_ARGS__;                                                                        \
            cg_prof_event_add(node->op, PHASE, node->id, node->scope, t0_, cg_now_ns(), FLOPS, 0); \
        } else {                                                                                \
            __VA_ARGS__;                                                                        \
        }                                                                                       \
    } while (0)

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

#define MM_FWD(T, GEMM)                                                                        \
    do {                                                                                       \
        const T *A = a->data, *B = b->data;                                                    \
        T *Z = zdata;                                                                          \
        if (p.fold) {                                                                          \
            GEMM(CG_NO_TRANS, CG_NO_TRANS, p.rows, p.m, p.k, 1, A, p.k, B, p.m, 0, Z, p.m);   \
        } else {                                                                               \
            CG_BCAST_FOR(&p.batch, {                                                           \
                for (int64_t j = 0; j < n; j++)                                                \
                    GEMM(CG_NO_TRANS, CG_NO_TRANS, p.n, p.m, p.k, 1,                           \
                         A + (oa + j * sa) * p.n * p.k, p.k, B + (ob + j * sb) * p.k * p.m, p.m, \
                         0, Z + (oy + j) * p.n * p.m, p.m);                                    \
            });                                                                                \
        }                                                                                      \
    } while (0)

#define MM_BWD(T, GEMM)                                                                        \
    do {                                                                                       \
        const T *A = a->data, *B = b->data, *G = g;                                      \
        T *dA = dins[0], *dB = dins[1];          \
        if (p.fold) { /* one GEMM per gradient: write a fresh buffer (beta 0), Note [First write] */ \
            double fl_ = 2.0 * (double)p.rows * (double)p.k * (double)p.m;                    \
            if (dA) PROF_GEMM(CG_PHASE_BWD_DX, fl_, GEMM(CG_NO_TRANS, CG_TRANS, p.rows, p.k, p.m, 1, G, p.m, B, p.m, \
                                                          node->fresh & 1 ? 0 : 1, dA, p.k));   \
            if (dB) PROF_GEMM(CG_PHASE_BWD_DW, fl_, GEMM(CG_TRANS, CG_NO_TRANS, p.k, p.m, p.rows, 1, A, p.k, G, p.m, \
                                                          node->fresh & 2 ? 0 : 1, dB, p.m));   \
        } else { /* batches add into shared slices: start fresh buffers from zero */          \
            if (dA && (node->fresh & 1)) memset(dA, 0, sizeof(T) * (size_t)a->numel);          \
            if (dB && (node->fresh & 2)) memset(dB, 0, sizeof(T) * (size_t)b->numel);          \
            CG_BCAST_FOR(&p.batch, {                                                           \
                for (int64_t j = 0; j < n; j++) {                                              \
                    int64_t ia = (oa + j * sa) * p.n * p.k, ib = (ob + j * sb) * p.k * p.m;    \
                    const T *g_ = G + (oy + j) * p.n * p.m;                                    \
                    double fl_ = 2.0 * (double)p.n * (double)p.k * (double)p.m;                \
                    if (dA) PROF_GEMM(CG_PHASE_BWD_DX, fl_, GEMM(CG_NO_TRANS, CG_TRANS, p.n, p.k, p.m, 1, g_, p.m, \
                                                              B + ib, p.m, 1, dA + ia, p.k));  \
                    if (dB) PROF_GEMM(CG_PHASE_BWD_DW, fl_, GEMM(CG_TRANS, CG_NO_TRANS, p.k, p.m, p.n, 1, A + ia, \
                                                              p.k, g_, p.m, 1, dB + ib, p.m)); \
                }                                                                              \
            });                                                                                \
        }                                                                                      \
    } while (0)

static void matmul_run(const cg_tensor *a, const cg_tensor *b, int nb, const int64_t *batch, void *zdata) {
    mm_plan p;
    plan(a, b, nb, batch, &p);
    const cg_blas_provider *blas = cg_blas_current();
    if (a->dtype == CG_F32) MM_FWD(float, blas->sgemm);
    else MM_FWD(double, blas->dgemm);
}

void cg_matmul_replay(cg_node *node) {
    matmul_run(node->inputs[0], node->inputs[1], node->ndim - 2, node->shape, node->saved_out->data);
}

cg_status cg_matmul(cg_tensor *a, cg_tensor *b, cg_tensor **out) {
    CG_PROF_BEGIN();
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
    if (a->dtype == CG_F32) MM_BWD(float, blas->sgemm);
    else MM_BWD(double, blas->dgemm);
}

/* ---- linear: Y [rows, out] = X [rows, in] W^T + b, rows = every leading dim of x ----
 * Backward, the lecture's linear layer:  dX += dY W,  dW += dY^T X,  db += sum_rows dY. */
#define LIN_FWD(T, GEMM)                                                                       \
    do {                                                                                       \
        T *Y = ydata;                                                                          \
        if (b)                                                                                 \
            for (int64_t r = 0; r < rows; r++) memcpy(Y + r * nout, b->data, sizeof(T) * (size_t)nout); \
        GEMM(CG_NO_TRANS, CG_TRANS, rows, nout, nin, 1, x->data, nin, w->data, nin, b ? 1 : 0, Y, nout); \
    } while (0)

#define LIN_BWD(T, GEMM)                                                                       \
    do {                                                                                       \
        const T *G = g;                                                                        \
        double fl_ = 2.0 * (double)rows * (double)nin * (double)nout;                          \
        if (dins[0]) PROF_GEMM(CG_PHASE_BWD_DX, fl_, GEMM(CG_NO_TRANS, CG_NO_TRANS, rows, nin, nout, 1, G, nout, \
                                                          w->data, nin, node->fresh & 1 ? 0 : 1, dins[0], nin)); \
        if (dins[1]) PROF_GEMM(CG_PHASE_BWD_DW, fl_, GEMM(CG_TRANS, CG_NO_TRANS, nout, nin, rows, 1, G, nout, \
                                                          x->data, nin, node->fresh & 2 ? 0 : 1, dins[1], nin)); \
        if (node->n_inputs == 3 && dins[2]) {                                                  \
            T *db = dins[2];                                                                   \
            if (node->fresh & 4) memset(db, 0, sizeof(T) * (size_t)nout);                      \
            for (int64_t r = 0; r < rows; r++)                                                 \
                for (int64_t j = 0; j < nout; j++) db[j] += G[r * nout + j];                   \
        }                                                                                      \
    } while (0)

static void linear_run(const cg_tensor *x, const cg_tensor *w, const cg_tensor *b, void *ydata) {
    int64_t nin = w->shape[1], nout = w->shape[0], rows = cg_numel(x->ndim - 1, x->shape);
    const cg_blas_provider *blas = cg_blas_current();
    if (x->dtype == CG_F32) LIN_FWD(float, blas->sgemm);
    else LIN_FWD(double, blas->dgemm);
}

void cg_linear_replay(cg_node *node) {
    linear_run(node->inputs[0], node->inputs[1], node->n_inputs == 3 ? node->inputs[2] : NULL, node->saved_out->data);
}

cg_status cg_linear(cg_tensor *x, cg_tensor *w, cg_tensor *b, cg_tensor **out) {
    CG_PROF_BEGIN();
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

CG_SIMD void cg_linear_bwd(cg_node *node, const void *g, void **dins) {
    const cg_tensor *x = node->inputs[0], *w = node->inputs[1];
    int64_t nin = w->shape[1], nout = w->shape[0], rows = cg_numel(x->ndim - 1, x->shape);
    const cg_blas_provider *blas = cg_blas_current();
    if (x->dtype == CG_F32) LIN_BWD(float, blas->sgemm);
    else LIN_BWD(double, blas->dgemm);
}
