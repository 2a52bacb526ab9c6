/* elementwise.c: unary, binary (broadcasting) and where ops, forward and backward.
 * The loops themselves come from the CG_UNARY/CG_BINARY lines of ops.def through
 * elementwise_impl.h, compiled once per dtype. */
#include "cg_internal.h"

#include "cg_math.h"

/* ops.def's expressions must use cg_math.h's functions, which pick the float32 or float64
 * one by type. A libm name written directly (sin(x) in float32, or sinf(x) in float64), or
 * a double literal in a float32 expression, would compile and silently change precision:
 * these make each of those an error here. */
#pragma GCC diagnostic error "-Wdouble-promotion"
#pragma GCC diagnostic error "-Wfloat-conversion"

#define CG_IMPL "elementwise_impl.h"
#include "cg_each_dtype.h"

/* ---- dispatch tables, indexed by op code: one row of four loops per ops.def line ---- */
typedef struct {
    void (*fwd32)(int64_t, const float *, float *, double, double);
    void (*fwd64)(int64_t, const double *, double *, double, double);
    void (*bwd32)(int64_t, const float *, const float *, const float *, float *, double, double, int);
    void (*bwd64)(int64_t, const double *, const double *, const double *, double *, double, double, int);
} unary_rules;

typedef struct {
    void (*fwd32)(const cg_bcast *, const float *, const float *, float *);
    void (*fwd64)(const cg_bcast *, const double *, const double *, double *);
    void (*bwd32)(const cg_bcast *, const float *, const float *, const float *, const float *, float *, float *, int, int);
    void (*bwd64)(const cg_bcast *, const double *, const double *, const double *, const double *, double *, double *, int,
                  int);
} binary_rules;

#define CG_UNARY(NAME, name, reads, fwd, deriv) \
    [CG_OP_##NAME] = {name##_fwd__f32, name##_fwd__f64, name##_bwd__f32, name##_bwd__f64},
static const unary_rules unary_table[CG_OP_COUNT] = {
#include "ops.def"
};

#define CG_BINARY(NAME, name, reads, fwd, da, db) \
    [CG_OP_##NAME] = {name##_fwd__f32, name##_fwd__f64, name##_bwd__f32, name##_bwd__f64},
static const binary_rules binary_table[CG_OP_COUNT] = {
#include "ops.def"
};

/* ---- unary ---- */
/* The loops that compute op: x ** 2 runs square's, x * x, whose values and gradient (2x) are
 * pow's bit for bit, vectorised instead of a libm pow per element. The node stays pow_scalar. */
static const unary_rules *rules_of(int op, double p0) {
    return &unary_table[op == CG_OP_POW_SCALAR && p0 == 2 ? CG_OP_SQUARE : op];
}

static void unary_run(int op, const cg_tensor *x, void *y, double p0, double p1) {
    if (x->dtype == CG_F32) rules_of(op, p0)->fwd32(x->numel, x->data, y, p0, p1);
    else rules_of(op, p0)->fwd64(x->numel, x->data, y, p0, p1);
}

/* GELU keeps its derivative in node->extra (x's dtype) when its gradient will be needed:
 * erf and exp are most of its cost, and the backward would compute them again. A node
 * without it was recorded for replay only (cgrad.compile, no gradient needed), so no
 * backward runs on it; ops.def's derivative is the kept one's formula (GELU_DY). */
static void gelu_keep_dy_run(const cg_tensor *x, void *y, void *dy) {
    if (x->dtype == CG_F32) gelu_keep_dy__f32(x->numel, x->data, y, dy);
    else gelu_keep_dy__f64(x->numel, x->data, y, dy);
}

cg_status cg_unary(int op, cg_tensor *x, double p0, double p1, cg_tensor **out) {
    CG_PROF_BEGIN();
    CG_REQUIRE_FLOAT(cg_op_name(op), x);
    if (op < 0 || op >= CG_OP_COUNT || !unary_table[op].fwd32)
        return cg_error(CG_ERR_VALUE, "unary: op %d (%s) is not an elementwise unary op", op,
                        cg_op_name(op));
    cg_tensor *y;
    cg_status st = cg_tensor_empty(x->dtype, x->ndim, x->shape, &y);
    if (st) return st;
    void *dy = NULL;
    if (op == CG_OP_GELU && cg_grad_enabled() && cg_tensor_needs_grad(x)) {
        if (!(dy = cg_malloc((size_t)x->numel * cg_dtype_size(x->dtype)))) {
            cg_tensor_release(y);
            return cg_error(CG_ERR_NOMEM, "gelu: out of memory");
        }
        gelu_keep_dy_run(x, y->data, dy);
    } else {
        unary_run(op, x, y->data, p0, p1);
    }
    cg_node *node;
    if ((st = cg_record(op, 1, &x, y, &node))) {
        cg_free(dy);
        return st;
    }
    if (node) {
        node->p[0] = p0;
        node->p[1] = p1;
        node->extra = dy;
    } else {
        cg_free(dy);
    }
    *out = y;
    return CG_OK;
}

void cg_unary_replay(cg_node *node) {
    if (node->extra) gelu_keep_dy_run(node->inputs[0], node->saved_out->data, node->extra);
    else unary_run(node->op, node->inputs[0], node->saved_out->data, node->p[0], node->p[1]);
}

void cg_unary_bwd(cg_node *node, const void *g, void **dins) {
    const cg_tensor *x = node->inputs[0];
    if (!dins[0]) return;
    if (node->extra) {
        if (x->dtype == CG_F32) times_kept_dy__f32(x->numel, node->extra, g, dins[0], node->fresh & 1);
        else times_kept_dy__f64(x->numel, node->extra, g, dins[0], node->fresh & 1);
    } else if (x->dtype == CG_F32)
        rules_of(node->op, node->p[0])->bwd32(x->numel, x->data, node->saved_out->data, g, dins[0],
                              node->p[0], node->p[1], node->fresh & 1);
    else
        rules_of(node->op, node->p[0])->bwd64(x->numel, x->data, node->saved_out->data, g, dins[0],
                              node->p[0], node->p[1], node->fresh & 1);
}

/* ---- broadcasting ---- */
cg_status cg_broadcast_shape(const char *op, int na, const int64_t *sa, int nb, const int64_t *sb,
                             int *nout, int64_t *out) {
    int n = na > nb ? na : nb;
    for (int i = 0; i < n; i++) {
        int64_t da = i < n - na ? 1 : sa[i - (n - na)];
        int64_t db = i < n - nb ? 1 : sb[i - (n - nb)];
        if (da != db && da != 1 && db != 1) {
            char b1[CG_SHAPE_BUF], b2[CG_SHAPE_BUF];
            return cg_error(CG_ERR_SHAPE, "%s: shapes %s and %s cannot be broadcast together",
                            op, cg_shape_str(na, sa, b1, sizeof b1), cg_shape_str(nb, sb, b2, sizeof b2));
        }
        out[i] = da == 1 ? db : da;
    }
    *nout = n;
    return CG_OK;
}

void cg_bcast_init(cg_bcast *bc, int nout, const int64_t *out, int na, const int64_t *sha, int nb,
                   const int64_t *shb) {
    int64_t ca[CG_MAX_DIMS], cb[CG_MAX_DIMS];
    int64_t acc_a = 1, acc_b = 1;
    /* aligned strides, 0 along broadcast dims */
    for (int i = nout - 1; i >= 0; i--) {
        int ia = i - (nout - na), ib = i - (nout - nb);
        int64_t da = ia >= 0 ? sha[ia] : 1, db = ib >= 0 ? shb[ib] : 1;
        ca[i] = da == 1 ? 0 : acc_a;
        cb[i] = db == 1 ? 0 : acc_b;
        acc_a *= da;
        acc_b *= db;
    }
    bc->nd = 0;
    for (int i = 0; i < nout; i++) {
        if (out[i] == 1) continue;
        int k = bc->nd;
        if (k > 0 && bc->sa[k - 1] == ca[i] * out[i] && bc->sb[k - 1] == cb[i] * out[i]) {
            bc->shape[k - 1] *= out[i]; /* contiguous across both: merge */
            bc->sa[k - 1] = ca[i];
            bc->sb[k - 1] = cb[i];
            continue;
        }
        bc->shape[k] = out[i];
        bc->sa[k] = ca[i];
        bc->sb[k] = cb[i];
        bc->nd++;
    }
    /* a zero-size dim anywhere: make the walk empty */
    for (int i = 0; i < nout; i++)
        if (out[i] == 0) {
            bc->nd = 1;
            bc->shape[0] = 0;
            bc->sa[0] = bc->sb[0] = 0;
        }
}

static cg_status same_dtype(const char *op, const cg_tensor *a, const cg_tensor *b) {
    if (a->dtype == b->dtype) return CG_OK;
    return cg_error(CG_ERR_DTYPE,
                    "%s: dtypes %s and %s differ; convert one of them with .float() or .double() first",
                    op, cg_dtype_name(a->dtype), cg_dtype_name(b->dtype));
}

/* The broadcast walk of a with b into an output of shape [nout, shape]. */
static void binary_plan(const cg_tensor *a, const cg_tensor *b, int nout, const int64_t *shape, cg_bcast *bc) {
    if (a->ndim == b->ndim && !memcmp(a->shape, b->shape, sizeof(int64_t) * (size_t)a->ndim))
        *bc = (cg_bcast){.nd = 1, .shape = {a->numel}, .sa = {1}, .sb = {1}}; /* one flat loop */
    else
        cg_bcast_init(bc, nout, shape, a->ndim, a->shape, b->ndim, b->shape);
}

static void binary_run(int op, const cg_tensor *a, const cg_tensor *b, int nout, const int64_t *shape, void *y) {
    cg_bcast bc;
    binary_plan(a, b, nout, shape, &bc);
    if (a->dtype == CG_F32) binary_table[op].fwd32(&bc, a->data, b->data, y);
    else binary_table[op].fwd64(&bc, a->data, b->data, y);
}

cg_status cg_binary(int op, cg_tensor *a, cg_tensor *b, cg_tensor **out) {
    CG_PROF_BEGIN();
    CG_REQUIRE_FLOAT(cg_op_name(op), a);
    CG_REQUIRE_FLOAT(cg_op_name(op), b);
    if (op < 0 || op >= CG_OP_COUNT || !binary_table[op].fwd32)
        return cg_error(CG_ERR_VALUE, "binary: op %d (%s) is not an elementwise binary op", op,
                        cg_op_name(op));
    const char *name = cg_op_name(op);
    cg_status st = same_dtype(name, a, b);
    if (st) return st;
    int nout = a->ndim;
    int64_t shape[CG_MAX_DIMS];
    memcpy(shape, a->shape, sizeof shape);
    if ((a->ndim != b->ndim || memcmp(a->shape, b->shape, sizeof(int64_t) * (size_t)a->ndim)) &&
        (st = cg_broadcast_shape(name, a->ndim, a->shape, b->ndim, b->shape, &nout, shape)))
        return st;
    cg_tensor *y;
    if ((st = cg_tensor_empty(a->dtype, nout, shape, &y))) return st;
    binary_run(op, a, b, nout, shape, y->data);
    cg_tensor *ins[2] = {a, b};
    cg_node *node;
    if ((st = cg_record(op, 2, ins, y, &node))) return st;
    *out = y;
    return CG_OK;
}

void cg_binary_replay(cg_node *node) {
    binary_run(node->op, node->inputs[0], node->inputs[1], node->ndim, node->shape, node->saved_out->data);
}

void cg_binary_bwd(cg_node *node, const void *g, void **dins) {
    const cg_tensor *a = node->inputs[0], *b = node->inputs[1];
    cg_bcast bc;
    cg_bcast_init(&bc, node->ndim, node->shape, a->ndim, a->shape, b->ndim, b->shape);
    void *da = dins[0], *db = dins[1];
    /* Note [First write]: an operand of the output's size is written; a broadcast one sums
     * several elements into each of its own, so its fresh buffer is zeroed first */
    int fresh[2] = {node->fresh & 1, (node->fresh >> 1) & 1};
    for (int i = 0; i < 2; i++)
        if (fresh[i] && dins[i] && node->inputs[i]->numel != node->numel) {
            memset(dins[i], 0, (size_t)node->inputs[i]->numel * cg_dtype_size(a->dtype));
            fresh[i] = 0;
        }
    if (a->dtype == CG_F32)
        binary_table[node->op].bwd32(&bc, a->data, b->data, node->saved_out->data, g, da, db, fresh[0], fresh[1]);
    else
        binary_table[node->op].bwd64(&bc, a->data, b->data, node->saved_out->data, g, da, db, fresh[0], fresh[1]);
}

/* ---- where ---- */
static cg_status check_broadcasts_to(const cg_tensor *t, int n, const int64_t *shape) {
    int ok = t->ndim <= n;
    for (int i = 0; ok && i < t->ndim; i++) {
        int64_t d = t->shape[i], o = shape[i + n - t->ndim];
        ok = d == 1 || d == o;
    }
    if (ok) return CG_OK;
    char b1[CG_SHAPE_BUF], b2[CG_SHAPE_BUF];
    return cg_error(CG_ERR_SHAPE, "where: shape %s cannot be broadcast to the condition's shape %s",
                    cg_shape_str(t->ndim, t->shape, b1, sizeof b1), cg_shape_str(n, shape, b2, sizeof b2));
}

static void where_run(const uint8_t *mask, const cg_tensor *a, const cg_tensor *b, int ndim,
                      const int64_t *shape, void *y) {
    cg_bcast bc;
    cg_bcast_init(&bc, ndim, shape, a->ndim, a->shape, b->ndim, b->shape);
    if (a->dtype == CG_F32) where_fwd__f32(&bc, mask, a->data, b->data, y);
    else where_fwd__f64(&bc, mask, a->data, b->data, y);
}

cg_status cg_where(const uint8_t *mask, int ndim, const int64_t *shape, cg_tensor *a, cg_tensor *b,
                   cg_tensor **out) {
    CG_PROF_BEGIN();
    CG_REQUIRE_FLOAT("where", a);
    CG_REQUIRE_FLOAT("where", b);
    cg_status st = same_dtype("where", a, b);
    if (st || (st = check_broadcasts_to(a, ndim, shape)) || (st = check_broadcasts_to(b, ndim, shape)))
        return st;
    cg_tensor *y;
    if ((st = cg_tensor_empty(a->dtype, ndim, shape, &y))) return st;
    where_run(mask, a, b, ndim, shape, y->data);
    cg_tensor *ins[2] = {a, b};
    cg_node *node;
    if ((st = cg_record(CG_OP_WHERE, 2, ins, y, &node))) return st;
    if (node) {
        if (!(node->extra = cg_malloc((size_t)y->numel))) {
            cg_tensor_release(y);
            return cg_error(CG_ERR_NOMEM, "where: out of memory");
        }
        memcpy(node->extra, mask, (size_t)y->numel);
    }
    *out = y;
    return CG_OK;
}

void cg_where_replay(cg_node *node) {
    where_run(node->extra, node->inputs[0], node->inputs[1], node->ndim, node->shape, node->saved_out->data);
}

void cg_where_bwd(cg_node *node, const void *g, void **dins) {
    const cg_tensor *a = node->inputs[0], *b = node->inputs[1];
    cg_bcast bc;
    cg_bcast_init(&bc, node->ndim, node->shape, a->ndim, a->shape, b->ndim, b->shape);
    void *da = dins[0], *db = dins[1];
    if (a->dtype == CG_F32) where_bwd__f32(&bc, node->extra, g, da, db);
    else where_bwd__f64(&bc, node->extra, g, da, db);
}
