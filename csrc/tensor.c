/* tensor.c: storages and tensors, their iterative release (Note [Tape lifetime]), grad
 * mode, and the in-place helpers that record nothing on the tape.
 *
 * Contract: every tensor and storage header is made by cg_malloc (alloc.c) and freed by its
 * last release; in-place writes bump the storage's version (Note [Versions]) and are
 * refused while cgrad.compile records a step.
 */
#include "cg_internal.h"

#include <stdlib.h>

#define CG_IMPL "tensor_impl.h"
#include "cg_each_dtype.h"

/* ---- grad mode ---- */
static CG_TLS_FAST int grad_enabled = 1;
int cg_grad_enabled(void) { return grad_enabled; }
void cg_set_grad_enabled(int enabled) { grad_enabled = enabled != 0; }

/* ---- helpers ---- */
static const struct {
    const char *name;
    size_t size;
} dtypes[CG_DTYPE_COUNT] = {
    [CG_F32] = {"float32", 4}, [CG_F64] = {"float64", 8}, [CG_I64] = {"int64", 8},
    [CG_I32] = {"int32", 4},   [CG_BOOL] = {"bool", 1},   [CG_U8] = {"uint8", 1},
};
size_t cg_dtype_size(cg_dtype dtype) { return dtypes[dtype].size; }
const char *cg_dtype_name(cg_dtype dtype) {
    return (unsigned)dtype < CG_DTYPE_COUNT ? dtypes[dtype].name : "?";
}

int64_t cg_numel(int ndim, const int64_t *shape) {
    int64_t n = 1;
    for (int i = 0; i < ndim; i++) {
        if (shape[i] < 0) return -1;
        if (shape[i] && n > INT64_MAX / shape[i]) return INT64_MAX; /* too large to allocate */
        n *= shape[i];
    }
    return n;
}

void cg_contiguous_strides(int ndim, const int64_t *shape, int64_t *strides) {
    int64_t s = 1;
    for (int i = ndim - 1; i >= 0; i--) {
        strides[i] = s;
        s *= shape[i];
    }
}

int cg_tensor_needs_grad(const cg_tensor *t) { return t->node != NULL || t->requires_grad; }

/* ---- storages and tensors ---- */
static cg_status tensor_header(cg_dtype dtype, int ndim, const int64_t *shape, cg_tensor **out) {
    char buf[CG_SHAPE_BUF];
    if (ndim < 0 || ndim > CG_MAX_DIMS)
        return cg_error(CG_ERR_SHAPE, "tensor: rank %d is not supported (at most %d dims)", ndim,
                        CG_MAX_DIMS);
    if ((unsigned)dtype >= CG_DTYPE_COUNT) return cg_error(CG_ERR_DTYPE, "tensor: unknown dtype %d", (int)dtype);
    int64_t numel = cg_numel(ndim, shape);
    if (numel < 0)
        return cg_error(CG_ERR_SHAPE, "tensor: invalid shape %s",
                        cg_shape_str(ndim, shape, buf, sizeof buf));
    if ((uint64_t)numel > ((uint64_t)1 << 60) / cg_dtype_size(dtype))
        return cg_error(CG_ERR_NOMEM, "tensor: shape %s is too large to allocate",
                        cg_shape_str(ndim, shape, buf, sizeof buf));
    cg_tensor *t = cg_malloc(sizeof *t);
    if (!t) return cg_error(CG_ERR_NOMEM, "tensor: out of memory");
    memset(t, 0, sizeof *t);
    t->refcount = 1;
    t->dtype = dtype;
    t->ndim = ndim;
    for (int i = 0; i < ndim; i++) t->shape[i] = shape[i];
    t->numel = numel;
    *out = t;
    return CG_OK;
}

cg_status cg_tensor_empty(cg_dtype dtype, int ndim, const int64_t *shape, cg_tensor **out) {
    cg_tensor *t;
    cg_status st = tensor_header(dtype, ndim, shape, &t);
    if (st) return st;
    size_t nbytes = (size_t)t->numel * cg_dtype_size(dtype);
    /* the storage header and its data share one allocation */
    cg_storage *s = cg_malloc(sizeof(cg_storage) + 32 + nbytes);
    if (!s) {
        char buf[CG_SHAPE_BUF];
        cg_free(t);
        return cg_error(CG_ERR_NOMEM, "tensor: out of memory allocating %zu bytes for shape %s",
                        nbytes, cg_shape_str(ndim, shape, buf, sizeof buf));
    }
    s->refcount = 1;
    s->nbytes = nbytes;
    s->data = (void *)(((uintptr_t)(s + 1) + 31) & ~(uintptr_t)31);
    s->release = NULL;
    s->ctx = NULL;
    s->version = 0;
    t->storage = s;
    t->data = s->data;
    *out = t;
    return CG_OK;
}

cg_status cg_tensor_zeros(cg_dtype dtype, int ndim, const int64_t *shape, cg_tensor **out) {
    cg_status st = cg_tensor_empty(dtype, ndim, shape, out);
    if (st == CG_OK) memset((*out)->data, 0, (*out)->storage->nbytes);
    return st;
}

cg_status cg_tensor_external(cg_dtype dtype, int ndim, const int64_t *shape, void *data,
                             void (*release)(void *), void *ctx, cg_tensor **out) {
    cg_tensor *t;
    cg_status st = tensor_header(dtype, ndim, shape, &t);
    if (st) return st;
    cg_storage *s = cg_malloc(sizeof *s);
    if (!s) {
        cg_free(t);
        return cg_error(CG_ERR_NOMEM, "tensor: out of memory");
    }
    s->refcount = 1;
    s->nbytes = (size_t)t->numel * cg_dtype_size(dtype);
    s->data = data;
    s->release = release;
    s->ctx = ctx;
    s->version = 0;
    t->storage = s;
    t->data = data;
    *out = t;
    return CG_OK;
}

cg_tensor *cg_grad_like(int ndim, const int64_t *shape, cg_dtype dtype) {
    cg_tensor *t = NULL;
    return cg_tensor_zeros(dtype, ndim, shape, &t) == CG_OK ? t : NULL;
}

void cg_tensor_retain(cg_tensor *t) { t->refcount++; }

void cg_add_into(cg_dtype dtype, int64_t n, void *dst, const void *src) {
    if (dtype == CG_F32) add_into__f32(n, dst, src);
    else if (dtype == CG_F64) add_into__f64(n, dst, src);
    /* no other dtype reaches a gradient: the entry points refuse them (CG_REQUIRE_FLOAT) */
}

void cg_storage_bump(cg_storage *s) { s->version++; }

void cg_storage_release(cg_storage *s) {
    if (!s || --s->refcount > 0) return;
    if (s->release) s->release(s->ctx);
    cg_free(s);
}

/* Freeing a tensor frees its node, which releases the node's inputs, whose nodes ...
 * Done with an explicit work stack so a 100,000-op chain never recurses. */
typedef struct {
    void **items;
    size_t n, cap;
} release_stack;

static void push(release_stack *st, void *p, void **local) {
    if (st->n == st->cap) {
        size_t cap = st->cap * 2;
        void **items = malloc(cap * sizeof *items); /* plain malloc: not tensor memory */
        if (!items) return;                          /* leak rather than crash */
        memcpy(items, st->items, st->n * sizeof *items);
        if (st->items != local) free(st->items);
        st->items = items;
        st->cap = cap;
    }
    st->items[st->n++] = p;
}

/* Tagged pointers: low bit 1 marks a node. Both structs are at least 8-byte aligned.
 * `first` is a tensor or a tagged node whose last reference has gone. */
static void release_all(void *first) {
    void *local[64];
    release_stack st = {local, 0, 64};
    push(&st, first, local);
    while (st.n) {
        uintptr_t item = (uintptr_t)st.items[--st.n];
        if (item & 1) {
            cg_node *node = (cg_node *)(item & ~(uintptr_t)1);
            for (int i = 0; i < node->n_inputs; i++) {
                cg_tensor *in = node->inputs[i];
                if (--in->refcount == 0) push(&st, in, local);
            }
            cg_storage_release(node->saved_out);
            cg_free(node->grad);
            cg_free(node->extra);
            cg_free(node);
        } else {
            cg_tensor *t = (cg_tensor *)item;
            cg_storage_release(t->storage);
            if (t->grad && --t->grad->refcount == 0) push(&st, t->grad, local);
            if (t->node) {
                if (t->node->out == t) t->node->out = NULL;
                if (--t->node->refcount == 0) push(&st, (void *)((uintptr_t)t->node | 1), local);
            }
            cg_free(t);
        }
    }
    if (st.items != local) free(st.items);
}

void cg_tensor_release(cg_tensor *t) {
    if (t && --t->refcount == 0) release_all(t);
}

void cg_node_release(cg_node *node) {
    if (node && --node->refcount == 0) release_all((void *)((uintptr_t)node | 1));
}

/* ---- no-graph helpers ---- */
cg_status cg_tensor_detach(cg_tensor *t, cg_tensor **out) {
    cg_tensor *d;
    cg_status st = tensor_header(t->dtype, t->ndim, t->shape, &d);
    if (st) return st;
    d->storage = t->storage;
    d->storage->refcount++;
    d->data = t->data;
    *out = d;
    return CG_OK;
}

static cg_status same_numel(const char *op, const cg_tensor *a, const cg_tensor *b) {
    char b1[CG_SHAPE_BUF], b2[CG_SHAPE_BUF];
    if (a->numel != b->numel)
        return cg_error(CG_ERR_SHAPE, "%s: shapes %s and %s differ", op,
                        cg_shape_str(a->ndim, a->shape, b1, sizeof b1),
                        cg_shape_str(b->ndim, b->shape, b2, sizeof b2));
    return CG_OK;
}

/* cgrad.compile replays ops, not in-place writes made from Python: refuse them while
 * recording rather than replay a step that silently lacks them (replay.c). */
static cg_status refuse_in_capture(const char *op) {
    if (!cg_capturing) return CG_OK;
    return cg_error(CG_ERR_RUNTIME, "%s: in-place changes to tensors cannot be recorded by cgrad.compile; "
                                    "do them outside the compiled step (optimizers and zero_grad are fine)", op);
}

/* ---- conversions between any two dtypes (the float pair has its own loops above) ----
 * Each source is read as a double (floats) or an int64 (the rest), then stored. */
#define SATURATE(T, LO, HI, x) ((x) != (x) ? (T)0 : (x) <= (double)(LO) ? (T)(LO) : (x) >= (double)(HI) ? (T)(HI) : (T)(x))
#define STORE_F32(x) ((float)(x))
#define STORE_F64(x) ((double)(x))
#define STORE_BOOL(x) ((uint8_t)((x) != 0))
#define STORE_I64_F(x) SATURATE(int64_t, INT64_MIN, INT64_MAX, x)
#define STORE_I32_F(x) SATURATE(int32_t, INT32_MIN, INT32_MAX, x)
#define STORE_U8_F(x) SATURATE(uint8_t, 0, UINT8_MAX, x)
#define STORE_I64_I(x) ((int64_t)(x))
#define STORE_I32_I(x) ((int32_t)(x)) /* wraps, as PyTorch and numpy do */
#define STORE_U8_I(x) ((uint8_t)(x))
#define LOOP(DT, ST, STORE)                                      \
    do {                                                         \
        DT *d = dst;                                             \
        const ST *s = src;                                       \
        for (int64_t i = 0; i < n; i++) d[i] = STORE(s[i]);      \
    } while (0)
#define FROM_ANY(DT, STORE_F, STORE_I)                                      \
    switch (sd) {                                                           \
    case CG_F32: LOOP(DT, float, STORE_F); break;                           \
    case CG_F64: LOOP(DT, double, STORE_F); break;                          \
    case CG_I64: LOOP(DT, int64_t, STORE_I); break;                         \
    case CG_I32: LOOP(DT, int32_t, STORE_I); break;                         \
    default: LOOP(DT, uint8_t, STORE_I); break; /* bool, uint8 */           \
    }

static void convert_any(cg_dtype dd, void *dst, cg_dtype sd, const void *src, int64_t n) {
    switch (dd) {
    case CG_F32: FROM_ANY(float, STORE_F32, STORE_F32); break;
    case CG_F64: FROM_ANY(double, STORE_F64, STORE_F64); break;
    case CG_I64: FROM_ANY(int64_t, STORE_I64_F, STORE_I64_I); break;
    case CG_I32: FROM_ANY(int32_t, STORE_I32_F, STORE_I32_I); break;
    case CG_BOOL: FROM_ANY(uint8_t, STORE_BOOL, STORE_BOOL); break;
    default: FROM_ANY(uint8_t, STORE_U8_F, STORE_U8_I); break;
    }
}

static void convert_values(cg_dtype dd, void *dst, cg_dtype sd, const void *src, int64_t n) {
    if (dd == sd) memmove(dst, src, (size_t)n * cg_dtype_size(dd));
    else if (dd == CG_F32 && sd == CG_F64) convert__f32(n, dst, src);
    else if (dd == CG_F64 && sd == CG_F32) convert__f64(n, dst, src);
    else convert_any(dd, dst, sd, src, n);
}

void cg_copy_values(cg_tensor *dst, const cg_tensor *src) {
    if (dst->data == src->data) return;
    cg_storage_bump(dst->storage);
    convert_values(dst->dtype, dst->data, src->dtype, src->data, dst->numel);
}

/* ---- cast: the one recorded conversion (float32 <-> float64, for promotion) ---- */
cg_status cg_cast(cg_tensor *x, cg_dtype dtype, cg_tensor **out) {
    CG_PROF_BEGIN();
    CG_REQUIRE_FLOAT("cast", x);
    if (dtype > CG_F64) return cg_error(CG_ERR_DTYPE, "cast: the target %s is not a float dtype", cg_dtype_name(dtype));
    cg_tensor *y;
    cg_status st = cg_tensor_empty(dtype, x->ndim, x->shape, &y);
    if (st) return st;
    convert_values(dtype, y->data, x->dtype, x->data, x->numel);
    cg_node *node;
    if ((st = cg_record(CG_OP_CAST, 1, &x, y, &node))) return st;
    *out = y;
    return CG_OK;
}

void cg_cast_replay(cg_node *node) {
    const cg_tensor *x = node->inputs[0];
    convert_values(node->dtype, node->saved_out->data, x->dtype, x->data, x->numel);
}

void cg_cast_bwd(cg_node *node, const void *g, void **dins) {
    if (!dins[0]) return;
    if (node->inputs[0]->dtype == node->dtype) cg_add_into(node->dtype, node->numel, dins[0], g);
    else if (node->dtype == CG_F64) add_converted__f32(node->numel, dins[0], g);
    else add_converted__f64(node->numel, dins[0], g);
}


cg_status cg_tensor_copy_(cg_tensor *dst, const cg_tensor *src) {
    cg_status st = same_numel("copy_", dst, src);
    if (st || (st = refuse_in_capture("copy_"))) return st;
    cg_copy_values(dst, src);
    return CG_OK;
}

cg_status cg_tensor_astype(cg_tensor *t, cg_dtype dtype, cg_tensor **out) {
    cg_status st = cg_tensor_empty(dtype, t->ndim, t->shape, out);
    if (st) return st;
    cg_copy_values(*out, t);
    if (cg_capturing && (st = cg_capture_copy(*out, t))) {
        cg_tensor_release(*out);
        *out = NULL;
    }
    return st;
}

/* Repeat the first element over the rest (integer fills; not a hot path). */
static void fill_bytes(cg_tensor *t) {
    size_t es = cg_dtype_size(t->dtype);
    for (int64_t i = 1; i < t->numel; i++) memcpy((char *)t->data + i * es, t->data, es);
}

cg_status cg_tensor_fill_(cg_tensor *t, double value) {
    cg_status st = refuse_in_capture("fill_");
    if (st) return st;
    cg_storage_bump(t->storage);
    if (t->dtype == CG_F32) fill__f32(t->numel, t->data, (float)value);
    else if (t->dtype == CG_F64) fill__f64(t->numel, t->data, value);
    else if (t->numel) {
        /* an integral value wraps into a narrow dtype as PyTorch's (uint8 fill -1 is 255); others
         * convert as astype does */
        if (value == value && value >= -0x1p63 && value < 0x1p63 && value == (double)(int64_t)value) {
            int64_t v = (int64_t)value;
            convert_any(t->dtype, t->data, CG_I64, &v, 1);
        } else {
            convert_any(t->dtype, t->data, CG_F64, &value, 1);
        }
        fill_bytes(t);
    }
    return CG_OK;
}

cg_status cg_tensor_axpy_(cg_tensor *y, double alpha, const cg_tensor *x) {
    cg_status st = same_numel("axpy_", y, x);
    if (st || (st = refuse_in_capture("axpy_"))) return st;
    CG_REQUIRE_FLOAT("axpy_", y);
    if (y->dtype != x->dtype) return cg_error(CG_ERR_DTYPE, "axpy_: dtypes differ");
    cg_storage_bump(y->storage);
    if (y->dtype == CG_F32) axpy__f32(y->numel, y->data, (float)alpha, x->data);
    else axpy__f64(y->numel, y->data, alpha, x->data);
    return CG_OK;
}
