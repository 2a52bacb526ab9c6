/* shape.c: reshape (shares storage), strided copies (permute, transpose, basic slicing),
 * row gather by an integer array, and concatenation. Each backward routes the upstream
 * gradient back to where the values came from and adds it there (scatter-add). */
#include "cg_internal.h"

/* ---- reshape: a new header over the same storage ---- */
cg_status cg_reshape(cg_tensor *x, int ndim, const int64_t *shape, cg_tensor **out) {
    CG_PROF_BEGIN();
    CG_REQUIRE_FLOAT("reshape", x);
    char b1[CG_SHAPE_BUF], b2[CG_SHAPE_BUF];
    if (ndim < 0 || ndim > CG_MAX_DIMS || cg_numel(ndim, shape) != x->numel)
        return cg_error(CG_ERR_SHAPE, "reshape: cannot reshape a tensor of shape %s into shape %s",
                        cg_shape_str(x->ndim, x->shape, b1, sizeof b1),
                        cg_shape_str(ndim < 0 ? 0 : ndim > CG_MAX_DIMS ? CG_MAX_DIMS : ndim, shape, b2, sizeof b2));
    cg_tensor *y;
    cg_status st = cg_tensor_detach(x, &y);
    if (st) return st;
    y->ndim = ndim;
    memcpy(y->shape, shape, sizeof(int64_t) * (size_t)ndim);
    cg_node *node;
    if ((st = cg_record(CG_OP_RESHAPE, 1, &x, y, &node))) return st;
    *out = y;
    return CG_OK;
}

/* WRITES (Note [First write]): a fresh buffer is a copy of g, not a memset and an add */
void cg_reshape_bwd(cg_node *node, const void *g, void **dins) {
    if (!dins[0]) return;
    if (node->fresh & 1) memcpy(dins[0], g, (size_t)node->numel * cg_dtype_size(node->dtype));
    else cg_add_into(node->dtype, node->numel, dins[0], g);
}

/* ---- strided: y[idx] = x[base + sum_d idx_d * stride_d], y contiguous ----
 * ip[0..nd) = strides into x, ip[CG_MAX_DIMS] = base. Permutations and basic slices never
 * read an element of x twice, so the backward scatter-add has no conflicts. */
#define STRIDED_WALK(nd, shape, strides, base, ...)                                            \
    do {                                                                                        \
        int64_t idx_[CG_MAX_DIMS] = {0}, off = (base), total_ = cg_numel(nd, shape);            \
        int last_ = (nd) - 1;                                                                   \
        int64_t n_ = (nd) ? (shape)[last_] : 1, s_ = (nd) ? (strides)[last_] : 0;               \
        for (int64_t row_ = 0; n_ > 0 && row_ < total_ / n_; row_++) {                          \
            int64_t oy = row_ * n_;                                                             \
            if (s_ == 1) { /* contiguous runs (a head's slice, a row of a slice): vectorises */   \
                for (int64_t j = 0; j < n_; j++) {                                              \
                    int64_t ox = off + j;                                                       \
                    __VA_ARGS__;                                                                \
                }                                                                               \
            } else {                                                                            \
                for (int64_t j = 0; j < n_; j++) {                                              \
                    int64_t ox = off + j * s_;                                                  \
                    __VA_ARGS__;                                                                \
                }                                                                               \
            }                                                                                   \
            for (int d_ = last_ - 1; d_ >= 0; d_--) {                                           \
                off += (strides)[d_];                                                           \
                if (++idx_[d_] < (shape)[d_]) break;                                            \
                off -= (strides)[d_] * (shape)[d_];                                             \
                idx_[d_] = 0;                                                                   \
            }                                                                                   \
        }                                                                                       \
    } while (0)

/* WRITES (Note [First write]): dins[i] is uninitialised, and written, where bit i of
 * node->fresh says so (inputs from the ninth on are always added to: zeroed buffers) */
#define CONCAT_FRESH(fresh, i) ((i) < 8 && ((fresh) >> (i) & 1))

#define CG_IMPL "shape_impl.h"
#include "cg_each_dtype.h"

static void strided_run(const cg_tensor *x, int nd, const int64_t *shape, const int64_t *strides,
                        int64_t base, void *y) {
    if (x->dtype == CG_F32) strided_fwd__f32(nd, shape, strides, base, x->data, y);
    else strided_fwd__f64(nd, shape, strides, base, x->data, y);
}

void cg_strided_replay(cg_node *node) {
    strided_run(node->inputs[0], node->ndim, node->shape, node->ip, node->ip[CG_MAX_DIMS], node->saved_out->data);
}

static cg_status strided(cg_tensor *x, int nd, const int64_t *shape, const int64_t *strides,
                         int64_t base, cg_tensor **out) {
    CG_PROF_BEGIN();
    cg_tensor *y;
    cg_status st = cg_tensor_empty(x->dtype, nd, shape, &y);
    if (st) return st;
    strided_run(x, nd, shape, strides, base, y->data);
    cg_node *node;
    if ((st = cg_record(CG_OP_STRIDED, 1, &x, y, &node))) return st;
    if (node) {
        memcpy(node->ip, strides, sizeof(int64_t) * (size_t)nd);
        node->ip[CG_MAX_DIMS] = base;
    }
    *out = y;
    return CG_OK;
}

/* WRITES (Note [First write]): a fresh buffer behind a permutation (as many elements as x,
 * each reached once) is written, with no memset of x's size first; behind a slice it is
 * zeroed here and added to, as before. */
void cg_strided_bwd(cg_node *node, const void *g, void **dins) {
    if (!dins[0]) return;
    const int64_t *strides = node->ip;
    int64_t base = node->ip[CG_MAX_DIMS];
    const cg_tensor *x = node->inputs[0];
    if (node->fresh & 1) {
        if (cg_numel(node->ndim, node->shape) == x->numel) {
            if (node->dtype == CG_F32) strided_bwd_set__f32(node->ndim, node->shape, strides, base, g, dins[0]);
            else strided_bwd_set__f64(node->ndim, node->shape, strides, base, g, dins[0]);
            return;
        }
        memset(dins[0], 0, (size_t)x->numel * cg_dtype_size(x->dtype));
    }
    if (node->dtype == CG_F32) strided_bwd__f32(node->ndim, node->shape, strides, base, g, dins[0]);
    else strided_bwd__f64(node->ndim, node->shape, strides, base, g, dins[0]);
}

cg_status cg_permute(cg_tensor *x, const int *perm, cg_tensor **out) {
    CG_REQUIRE_FLOAT("permute", x);
    int64_t xs[CG_MAX_DIMS], shape[CG_MAX_DIMS], strides[CG_MAX_DIMS];
    int seen[CG_MAX_DIMS] = {0};
    char b1[CG_SHAPE_BUF];
    for (int i = 0; i < x->ndim; i++) {
        if (perm[i] < 0 || perm[i] >= x->ndim || seen[perm[i]]++)
            return cg_error(CG_ERR_VALUE, "permute: the axes are not a permutation of 0..%d for shape %s",
                            x->ndim - 1, cg_shape_str(x->ndim, x->shape, b1, sizeof b1));
    }
    cg_contiguous_strides(x->ndim, x->shape, xs);
    for (int i = 0; i < x->ndim; i++) {
        shape[i] = x->shape[perm[i]];
        strides[i] = xs[perm[i]];
    }
    return strided(x, x->ndim, shape, strides, 0, out);
}

cg_status cg_slice(cg_tensor *x, const int64_t *start, const int64_t *step, const int64_t *len,
                   cg_tensor **out) {
    int64_t xs[CG_MAX_DIMS], strides[CG_MAX_DIMS], base = 0;
    CG_REQUIRE_FLOAT("slice", x);
    char b1[CG_SHAPE_BUF];
    cg_contiguous_strides(x->ndim, x->shape, xs);
    for (int d = 0; d < x->ndim; d++) {
        int64_t last = start[d] + (len[d] - 1) * step[d];
        if (step[d] == 0 || len[d] < 0 ||
            (len[d] > 0 && (start[d] < 0 || start[d] >= x->shape[d] || last < 0 || last >= x->shape[d])))
            return cg_error(CG_ERR_INDEX, "slice: start %lld, step %lld, length %lld out of range for axis %d of shape %s",
                            (long long)start[d], (long long)step[d], (long long)len[d], d,
                            cg_shape_str(x->ndim, x->shape, b1, sizeof b1));
        strides[d] = xs[d] * step[d];
        if (len[d] > 0) base += start[d] * xs[d];
    }
    return strided(x, x->ndim, len, strides, base, out);
}

/* ---- gather: y[l, ...] = x[index[l], ...]; backward dx[index[l], ...] += g[l, ...] ---- */
static void gather_run(const cg_tensor *x, const int64_t *idx, int64_t n_index, int64_t inner, void *y) {
    size_t es = cg_dtype_size(x->dtype);
    for (int64_t l = 0; l < n_index; l++)
        memcpy((char *)y + (size_t)(l * inner) * es, (char *)x->data + (size_t)(idx[l] * inner) * es,
               (size_t)inner * es);
}

void cg_gather_replay(cg_node *node) {
    gather_run(node->inputs[0], node->extra, node->ip[0], node->ip[1], node->saved_out->data);
}

/* index[] checked against axis 0 of x (negative ones wrapped) into a new array *idx, which
 * the node keeps: gather and scatter_add share the check. */
static cg_status row_indices(const char *op, const cg_tensor *x, const int64_t *index, int64_t n_index,
                             int64_t **idx) {
    char b1[CG_SHAPE_BUF];
    int64_t rows = x->shape[0];
    if (!(*idx = cg_malloc((size_t)(n_index ? n_index : 1) * sizeof **idx)))
        return cg_error(CG_ERR_NOMEM, "%s: out of memory", op);
    for (int64_t l = 0; l < n_index; l++) {
        int64_t i = index[l] < 0 ? index[l] + rows : index[l];
        if (i < 0 || i >= rows) {
            cg_free(*idx);
            return cg_error(CG_ERR_INDEX, "%s: index %lld is out of bounds for axis 0 of shape %s", op,
                            (long long)index[l], cg_shape_str(x->ndim, x->shape, b1, sizeof b1));
        }
        (*idx)[l] = i;
    }
    return CG_OK;
}

/* The node keeps the checked rows (replay re-reads the caller's index when it was a step
 * input); without a node they are freed. */
static void keep_rows(cg_node *node, int64_t *idx, int64_t n_index, int64_t inner, const int64_t *index,
                      int64_t rows) {
    if (!node) {
        cg_free(idx);
        return;
    }
    node->extra = idx;
    node->ip[0] = n_index;
    node->ip[1] = inner;
    if (cg_capturing) cg_capture_note_index(index, n_index, rows, 1);
}

cg_status cg_gather(cg_tensor *x, const int64_t *index, int64_t n_index, cg_tensor **out) {
    CG_PROF_BEGIN();
    CG_REQUIRE_FLOAT("gather", x);
    if (x->ndim < 1) return cg_error(CG_ERR_INDEX, "gather: cannot index a 0-dim tensor with an array");
    int64_t rows = x->shape[0], inner = rows ? x->numel / rows : 0;
    int64_t *idx;
    cg_status st = row_indices("gather", x, index, n_index, &idx);
    if (st) return st;
    int64_t shape[CG_MAX_DIMS];
    memcpy(shape, x->shape, sizeof shape);
    shape[0] = n_index;
    cg_tensor *y;
    if ((st = cg_tensor_empty(x->dtype, x->ndim, shape, &y))) {
        cg_free(idx);
        return st;
    }
    gather_run(x, idx, n_index, inner, y->data);
    cg_node *node;
    if ((st = cg_record(CG_OP_GATHER, 1, &x, y, &node))) {
        cg_free(idx);
        return st;
    }
    keep_rows(node, idx, n_index, inner, index, rows);
    *out = y;
    return CG_OK;
}

void cg_gather_bwd(cg_node *node, const void *g, void **dins) {
    if (!dins[0]) return;
    const int64_t *idx = node->extra;
    int64_t n = node->ip[0], inner = node->ip[1];
    if (node->dtype == CG_F32) gather_bwd__f32(n, inner, idx, g, dins[0]);
    else gather_bwd__f64(n, inner, idx, g, dins[0]);
}

/* ---- scatter_add: y = x; y[index[l], ...] += src[l, ...]; the adjoint of gather ----
 * Backward: dx += g, dsrc[l, ...] += g[index[l], ...]. */
static void scatter_add_run(const cg_tensor *x, const int64_t *idx, int64_t n, int64_t inner,
                            const cg_tensor *src, void *y) {
    memcpy(y, x->data, (size_t)x->numel * cg_dtype_size(x->dtype));
    if (x->dtype == CG_F32) gather_bwd__f32(n, inner, idx, src->data, y);
    else gather_bwd__f64(n, inner, idx, src->data, y);
}

void cg_scatter_add_replay(cg_node *node) {
    scatter_add_run(node->inputs[0], node->extra, node->ip[0], node->ip[1], node->inputs[1],
                    node->saved_out->data);
}

cg_status cg_scatter_add(cg_tensor *x, const int64_t *index, int64_t n_index, cg_tensor *src, cg_tensor **out) {
    CG_PROF_BEGIN();
    CG_REQUIRE_FLOAT("scatter_add", x);
    CG_REQUIRE_FLOAT("scatter_add", src);
    char b1[CG_SHAPE_BUF], b2[CG_SHAPE_BUF];
    if (x->ndim < 1) return cg_error(CG_ERR_INDEX, "scatter_add: cannot index a 0-dim tensor with an array");
    int64_t rows = x->shape[0], inner = rows ? x->numel / rows : 0;
    if (src->dtype != x->dtype)
        return cg_error(CG_ERR_DTYPE, "scatter_add: src is %s but the tensor is %s", cg_dtype_name(src->dtype),
                        cg_dtype_name(x->dtype));
    if (src->numel != n_index * inner || (src->ndim && src->shape[0] != n_index))
        return cg_error(CG_ERR_SHAPE, "scatter_add: src of shape %s does not hold %lld rows of the tensor of shape %s",
                        cg_shape_str(src->ndim, src->shape, b1, sizeof b1), (long long)n_index,
                        cg_shape_str(x->ndim, x->shape, b2, sizeof b2));
    int64_t *idx;
    cg_status st = row_indices("scatter_add", x, index, n_index, &idx);
    if (st) return st;
    cg_tensor *y;
    if ((st = cg_tensor_empty(x->dtype, x->ndim, x->shape, &y))) {
        cg_free(idx);
        return st;
    }
    scatter_add_run(x, idx, n_index, inner, src, y->data);
    cg_tensor *inputs[2] = {x, src};
    cg_node *node;
    if ((st = cg_record(CG_OP_SCATTER_ADD, 2, inputs, y, &node))) {
        cg_free(idx);
        return st;
    }
    keep_rows(node, idx, n_index, inner, index, rows);
    *out = y;
    return CG_OK;
}

void cg_scatter_add_bwd(cg_node *node, const void *g, void **dins) {
    if (dins[0]) cg_add_into(node->dtype, node->numel, dins[0], g);
    if (!dins[1]) return;
    if (node->dtype == CG_F32) gather_add__f32(node->ip[0], node->ip[1], node->extra, g, dins[1]);
    else gather_add__f64(node->ip[0], node->ip[1], node->extra, g, dins[1]);
}

/* ---- concat along axis: each input contributes a chunk of shape[axis] * inner per outer ---- */

/* float32 chunks of at most CONCAT_SHORT values move as masked AVX-512 runs: a call of memcpy
 * or a vector loop's prologue per chunk cost more than the copy (a bidirectional GRU's output
 * is 2 x 4000 chunks of 6, 40 us a backward in the loop of shape_impl.h). */
#define CONCAT_SHORT 64
#define CONCAT_SHORT_MAX 16 /* inputs */

#if defined(__GNUC__) && defined(__x86_64__)
#include "runs_avx512.h"

/* g == NULL: the forward, y from the inputs; else the backward, g written or added into each
 * dins[i] given. Writing a fresh buffer also keeps the next run's load clear of this run's
 * masked store (adding, a load that overlaps the store before waits for it to retire). */
AVX512 static void concat_short_avx512(int n, cg_tensor *const *xs, int axis, int64_t outer, int64_t inner,
                                       float *y, const float *g, void **dins, unsigned fresh) {
    /* each input's chunk and buffer, read once: the masked stores may alias anything, so
     * reading them from the tensors made every chunk reload them (a quarter of its time) */
    int64_t chunk[CONCAT_SHORT_MAX];
    float *buf[CONCAT_SHORT_MAX];
    int mode[CONCAT_SHORT_MAX]; /* backward: 0 none, 1 write, 2 add */
    for (int i = 0; i < n; i++) {
        chunk[i] = xs[i]->shape[axis] * inner;
        buf[i] = g ? (float *)dins[i] : (float *)xs[i]->data;
        mode[i] = !dins || !dins[i] ? 0 : CONCAT_FRESH(fresh, i) ? 1 : 2;
    }
    for (int64_t o = 0; o < outer; o++)
        for (int i = 0; i < n; i++) {
            const int64_t c = chunk[i];
            if (!g) {
                copy_run(y, buf[i] + o * c, c);
                y += c;
            } else {
                if (mode[i] == 1) copy_run(buf[i] + o * c, g, c);
                else if (mode[i] == 2) add_run(buf[i] + o * c, g, c);
                g += c;
            }
        }
}

static int concat_short(int n, cg_tensor *const *xs, int axis, int64_t inner) {
    if (n > CONCAT_SHORT_MAX || xs[0]->dtype != CG_F32 || cg_skinny_isa() != CG_SKINNY_AVX512) return 0;
    for (int i = 0; i < n; i++)
        if (xs[i]->shape[axis] * inner > CONCAT_SHORT) return 0;
    return 1;
}
#else
static int concat_short(int n, cg_tensor *const *xs, int axis, int64_t inner) { return 0; }
static void concat_short_avx512(int n, cg_tensor *const *xs, int axis, int64_t outer, int64_t inner, float *y,
                                const float *g, void **dins, unsigned fresh) {}
#endif

static void concat_run(int n, cg_tensor *const *xs, int axis, void *y) {
    const cg_tensor *x0 = xs[0];
    size_t es = cg_dtype_size(x0->dtype);
    int64_t outer = cg_numel(axis, x0->shape), inner = cg_numel(x0->ndim - axis - 1, x0->shape + axis + 1);
    if (concat_short(n, xs, axis, inner)) {
        concat_short_avx512(n, xs, axis, outer, inner, y, NULL, NULL, 0);
        return;
    }
    char *dst = y;
    for (int64_t o = 0; o < outer; o++)
        for (int i = 0; i < n; i++) {
            size_t chunk = (size_t)(xs[i]->shape[axis] * inner) * es;
            memcpy(dst, (char *)xs[i]->data + (size_t)o * chunk, chunk);
            dst += chunk;
        }
}

void cg_concat_replay(cg_node *node) {
    concat_run(node->n_inputs, node->inputs, (int)node->ip[0], node->saved_out->data);
}

void cg_reshape_replay(cg_node *node) { (void)node; /* the output shares the input's storage */ }

cg_status cg_concat(int n, cg_tensor **xs, int axis, cg_tensor **out) {
    CG_PROF_BEGIN();
    char b1[CG_SHAPE_BUF], b2[CG_SHAPE_BUF];
    if (n < 1) return cg_error(CG_ERR_VALUE, "concatenate: needs at least one tensor");
    cg_tensor *x0 = xs[0];
    if (axis < 0 || axis >= x0->ndim)
        return cg_error(CG_ERR_INDEX, "concatenate: axis %d out of range for shape %s", axis,
                        cg_shape_str(x0->ndim, x0->shape, b1, sizeof b1));
    int64_t shape[CG_MAX_DIMS];
    memcpy(shape, x0->shape, sizeof shape);
    shape[axis] = 0;
    for (int i = 0; i < n; i++) {
        cg_tensor *x = xs[i];
        CG_REQUIRE_FLOAT("concatenate", x);
        int ok = x->ndim == x0->ndim;
        for (int d = 0; ok && d < x0->ndim; d++) ok = d == axis || x->shape[d] == x0->shape[d];
        if (!ok)
            return cg_error(CG_ERR_SHAPE,
                            "concatenate: tensor %d has shape %s, which does not match %s outside axis %d",
                            i, cg_shape_str(x->ndim, x->shape, b1, sizeof b1),
                            cg_shape_str(x0->ndim, x0->shape, b2, sizeof b2), axis);
        if (x->dtype != x0->dtype)
            return cg_error(CG_ERR_DTYPE, "concatenate: tensor %d has a different dtype from tensor 0", i);
        shape[axis] += x->shape[axis];
    }
    cg_tensor *y;
    cg_status st = cg_tensor_empty(x0->dtype, x0->ndim, shape, &y);
    if (st) return st;
    concat_run(n, xs, axis, y->data);
    cg_node *node;
    if ((st = cg_record(CG_OP_CONCAT, n, xs, y, &node))) return st;
    if (node) node->ip[0] = axis;
    *out = y;
    return CG_OK;
}

void cg_concat_bwd(cg_node *node, const void *g, void **dins) {
    int axis = (int)node->ip[0];
    int64_t outer = cg_numel(axis, node->shape), inner = cg_numel(node->ndim - axis - 1, node->shape + axis + 1);
    if (concat_short(node->n_inputs, node->inputs, axis, inner))
        concat_short_avx512(node->n_inputs, node->inputs, axis, outer, inner, NULL, g, dins, node->fresh);
    else if (node->dtype == CG_F32) concat_bwd__f32(node->n_inputs, node->inputs, axis, outer, inner, g, dins, node->fresh);
    else concat_bwd__f64(node->n_inputs, node->inputs, axis, outer, inner, g, dins, node->fresh);
}
