/* attention.c: scaled dot-product attention as one fused op (forward, backward, replay).
 *
 * q [*, L, E], k [*, S, E], v [*, S, Ev] -> y [*, L, Ev] = softmax(scale q k^T + mask) v,
 * per (batch, head) block (* : the same batch dims for all three; the facade broadcasts).
 * mask: additive, of q's dtype, broadcastable to [*, L, S] (the facade turns a bool mask
 * into 0 / -inf); or causal, top-left aligned (row i sees columns 0..i), never both.
 *
 * The node keeps P = softmax(...) [*, L, S] in its extra, beside the mask's per-block
 * offsets. Recomputing P in backward from a per-row logsumexp (flash attention's choice)
 * would keep L values per block instead of L S, at the price of the QK^T GEMM and the exps
 * again: at nanoGPT's shapes (12 x 4 blocks of 64 x 64, head dim 32, float32, causal) perf
 * puts those two parts (the softmax rows, then the scores' GEMM) at about a quarter of the
 * op's forward + backward time, which recomputing would add, while keeping P costs 0.8 MB
 * per layer, written once and read once.
 * Backward (dS = P (dP - rowsum(P dP)), the softmax's rule):
 *     dV += P^T dY,  dP = dY V^T,  dQ += scale dS K,  dK += scale dS^T Q,  dmask += dS
 * It reads q, k and v; P is the forward's, so a mask changed in place does not change this
 * node's gradient (what it reads is only q, k, v: R_IN0 | R_IN1 | bit 2).
 *
 * Entropy (transparency): when given an entropy tensor [B] (B = prod(*)), the forward
 * writes into it, per block, the mean over the L rows of -sum_j p_ij log p_ij (nats); it is
 * an input that takes no gradient and is written in place by the compute function replay
 * shares, as batch norm's running statistics are, so a replayed step updates it too.
 */
#include "cg_internal.h"
#include "cg_math.h"

#include <math.h>

enum { SD_MASK = 1, SD_CAUSAL = 2, SD_ENTROPY = 4 };

/* a block's geometry; chunk: rows per pass, so a chunk's L x S scores stay in cache */
typedef struct {
    int64_t L, S, E, Ev, chunk, mrs, mcs;
    int causal, entropy, fast; /* fast: float32 rows on AVX-512 */
    double scale;
} sd_dims;

#define SD_CHUNK_VALUES 8192 /* a chunk's scores: 32 KiB of float32 */
#define SD_CAUSAL_CHUNK 16

/* exp(t) for the shifted scores t <= 0 (and -inf): in float arithmetic for float32, 16 lanes
 * an AVX-512 instruction where cg_expf computes in double (8): the exps were the largest
 * part of a forward at nanoGPT's shapes. Below -87 (where 2^k leaves the normal range) the
 * float result is 0 to within 1e-38; NaN stays NaN. */
static inline float sd_exp__f32(float t) {
    float e = cg_exp_small_f(t < -87.0f ? -87.0f : t);
    return t < -87.0f ? 0.0f : e;
}
static inline double sd_exp__f64(double t) { return exp(t); }

/* A float32 row's softmax on AVX-512 (sd_softmax_row_'s contract, after the mask is added):
 * the rows of a causal block are short (1 to 64 values at nanoGPT's shapes), where the
 * generic loop's lanes, its padded tail and its per-row setup cost more than the exps (perf:
 * as much time as the block's GEMMs); here a row is three passes of masked vectors in L1. */
#if defined(__GNUC__) && defined(__x86_64__)
#include "fastmath_avx512.h"

AVX512 static double sd_softmax_fast__f32(float *p, int64_t n, int64_t zto, int want_entropy) {
    const __m512 ninf = _mm512_set1_ps(-INFINITY);
    __m512 vm = ninf;
    for (int64_t j = 0; j < n; j += 16) vm = _mm512_max_ps(_mm512_mask_loadu_ps(ninf, lanes(0, n - j), p + j), vm);
    float m = _mm512_reduce_max_ps(vm);
    for (int64_t j = n; j < zto; j += 16) _mm512_mask_storeu_ps(p + j, lanes(0, zto - j), _mm512_setzero_ps());
    if (m == -INFINITY) { /* fully masked: zeros; unless every score is NaN (a NaN query row) */
        __mmask16 nan = 0;
        for (int64_t j = 0; j < n; j += 16) {
            __mmask16 k = lanes(0, n - j);
            nan |= _mm512_mask_cmp_ps_mask(k, _mm512_maskz_loadu_ps(k, p + j), _mm512_setzero_ps(), _CMP_UNORD_Q);
        }
        __m512 fill = nan ? _mm512_set1_ps(NAN) : _mm512_setzero_ps();
        for (int64_t j = 0; j < n; j += 16) _mm512_mask_storeu_ps(p + j, lanes(0, n - j), fill);
        return nan ? NAN : 0;
    }
    __m512 vz = _mm512_setzero_ps(), vt = _mm512_setzero_ps(), bm = _mm512_set1_ps(m);
    for (int64_t j = 0; j < n; j += 16) {
        __mmask16 k = lanes(0, n - j);
        __m512 t = _mm512_sub_ps(_mm512_mask_loadu_ps(ninf, k, p + j), bm), e = cg_exp_neg_v16(t);
        vz = _mm512_add_ps(vz, e);
        if (want_entropy) /* e = 0 where t = -inf (masked, or a padding lane) */
            vt = _mm512_mask3_fmadd_ps(e, t, vt, _mm512_cmp_ps_mask(e, _mm512_setzero_ps(), _CMP_GT_OQ));
        _mm512_mask_storeu_ps(p + j, k, e);
    }
    float z = _mm512_reduce_add_ps(vz);
    __m512 inv = _mm512_set1_ps(1 / z);
    for (int64_t j = 0; j < n; j += 16) {
        __mmask16 k = lanes(0, n - j);
        _mm512_mask_storeu_ps(p + j, k, _mm512_mul_ps(_mm512_maskz_loadu_ps(k, p + j), inv));
    }
    if (!want_entropy) return 0;
    double et = (double)_mm512_reduce_add_ps(vt);
    return log((double)z) - et / (double)z;
}
static inline int sd_fast_isa(void) { return cg_skinny_isa() == CG_SKINNY_AVX512; }
#else
static double sd_softmax_fast__f32(float *p, int64_t n, int64_t zto, int want_entropy) { return 0; }
static inline int sd_fast_isa(void) { return 0; }
#endif
/* never called: d.fast is float32's only */
static inline double sd_softmax_fast__f64(double *p, int64_t n, int64_t zto, int want_entropy) { return 0; }

#define CG_IMPL "attention_impl.h"
#include "cg_each_dtype.h"

static sd_dims sd_dims_of(const int64_t *ip, double scale) {
    sd_dims d = {ip[1], ip[2], ip[3], ip[4], 1, ip[6], ip[7], (ip[5] & SD_CAUSAL) != 0, (ip[5] & SD_ENTROPY) != 0, 0,
                 scale};
    int64_t c = ip[2] > 0 ? SD_CHUNK_VALUES / ip[2] : ip[1];
    /* causal: short chunks, so that each chunk's GEMMs cover only the n = r0 + rows columns
     * its rows see (one 64-row chunk computed the masked upper half of the scores too) */
    if (d.causal && c > SD_CAUSAL_CHUNK) c = SD_CAUSAL_CHUNK;
    d.chunk = c < 1 ? 1 : (c > ip[1] ? (ip[1] > 0 ? ip[1] : 1) : c);
    return d;
}

/* The extra: B int64 mask offsets (with a mask), then P [B, L, S] */
static size_t sd_offsets_bytes(int flags, int64_t B) { return flags & SD_MASK ? (size_t)B * sizeof(int64_t) : 0; }

/* The forward, shared by the entry and replay (so replays are bitwise eager). */
static void sd_run(cg_tensor *const *ins, const int64_t *ip, double scale, void *extra, void *y) {
    int flags = (int)ip[5];
    int64_t B = ip[0];
    sd_dims d = sd_dims_of(ip, scale);
    const cg_tensor *q = ins[0], *k = ins[1], *v = ins[2];
    d.fast = q->dtype == CG_F32 && sd_fast_isa();
    const cg_tensor *mask = flags & SD_MASK ? ins[3] : NULL;
    cg_tensor *ent = flags & SD_ENTROPY ? ins[flags & SD_MASK ? 4 : 3] : NULL;
    const int64_t *moff = extra;
    char *P = (char *)extra + sd_offsets_bytes(flags, B);
    const cg_blas_provider *blas = cg_blas_current();
    size_t es = cg_dtype_size(q->dtype);
    for (int64_t b = 0; b < B; b++) {
        double total;
        if (q->dtype == CG_F32)
            total = sd_block_fwd__f32(blas->sgemm, &d, (const float *)q->data + b * d.L * d.E,
                                      (const float *)k->data + b * d.S * d.E, (const float *)v->data + b * d.S * d.Ev,
                                      mask ? (const float *)mask->data + moff[b] : NULL,
                                      (float *)(P + (size_t)(b * d.L * d.S) * es), (float *)y + b * d.L * d.Ev);
        else
            total = sd_block_fwd__f64(blas->dgemm, &d, (const double *)q->data + b * d.L * d.E,
                                      (const double *)k->data + b * d.S * d.E,
                                      (const double *)v->data + b * d.S * d.Ev,
                                      mask ? (const double *)mask->data + moff[b] : NULL,
                                      (double *)(P + (size_t)(b * d.L * d.S) * es), (double *)y + b * d.L * d.Ev);
        if (ent) {
            if (q->dtype == CG_F32) sd_store_entropy__f32(ent->data, b, total, d.L);
            else sd_store_entropy__f64(ent->data, b, total, d.L);
        }
    }
    if (ent) cg_storage_bump(ent->storage);
}

void cg_attention_replay(cg_node *node) {
    sd_run(node->inputs, node->ip, node->p[0], node->extra, node->saved_out->data);
}

static cg_status sd_shape_error(const char *what, const cg_tensor *q, const cg_tensor *k, const cg_tensor *v) {
    char b1[CG_SHAPE_BUF], b2[CG_SHAPE_BUF], b3[CG_SHAPE_BUF];
    return cg_error(CG_ERR_SHAPE, "scaled_dot_product_attention: %s: query %s, key %s, value %s", what,
                    cg_shape_str(q->ndim, q->shape, b1, sizeof b1), cg_shape_str(k->ndim, k->shape, b2, sizeof b2),
                    cg_shape_str(v->ndim, v->shape, b3, sizeof b3));
}

/* The mask's offset for each block and its row and column strides, from its shape
 * broadcast (aligned right) against [*, L, S]. */
static cg_status sd_mask_layout(const cg_tensor *mask, const cg_tensor *q, int64_t S, int64_t B, int64_t *moff,
                                int64_t *mrs, int64_t *mcs) {
    char b1[CG_SHAPE_BUF], b2[CG_SHAPE_BUF];
    int nd = q->ndim, m = mask->ndim;
    int64_t L = q->shape[nd - 2];
    int64_t full[CG_MAX_DIMS], strides[CG_MAX_DIMS];
    for (int i = 0; i < nd - 2; i++) full[i] = q->shape[i];
    full[nd - 2] = L;
    full[nd - 1] = S;
    int ok = m <= nd;
    for (int i = 0; ok && i < m; i++) {
        int64_t have = mask->shape[m - 1 - i], want = full[nd - 1 - i];
        ok = have == 1 || have == want;
    }
    if (!ok)
        return cg_error(CG_ERR_SHAPE, "scaled_dot_product_attention: attn_mask of shape %s cannot be broadcast to "
                                      "the attention scores' shape %s",
                        cg_shape_str(m, mask->shape, b1, sizeof b1), cg_shape_str(nd, full, b2, sizeof b2));
    /* the mask's strides seen in the scores' dims: 0 where it broadcasts */
    int64_t s = 1;
    for (int i = nd - 1; i >= 0; i--) {
        int mi = i - (nd - m);
        strides[i] = mi >= 0 && mask->shape[mi] != 1 ? s : 0;
        if (mi >= 0) s *= mask->shape[mi];
    }
    *mrs = strides[nd - 2];
    *mcs = strides[nd - 1];
    for (int64_t b = 0; b < B; b++) {
        int64_t rem = b, off = 0;
        for (int i = nd - 3; i >= 0; i--) {
            off += (rem % full[i]) * strides[i];
            rem /= full[i];
        }
        moff[b] = off;
    }
    return CG_OK;
}

cg_status cg_scaled_dot_product_attention(cg_tensor *q, cg_tensor *k, cg_tensor *v, cg_tensor *mask, int is_causal,
                                          double scale, cg_tensor *entropy, cg_tensor **out) {
    CG_PROF_BEGIN();
    const char *op = "scaled_dot_product_attention";
    char b1[CG_SHAPE_BUF], b2[CG_SHAPE_BUF];
    cg_status st;
    CG_REQUIRE_FLOAT(op, q);
    CG_REQUIRE_FLOAT(op, k);
    CG_REQUIRE_FLOAT(op, v);
    if ((st = cg_same_dtype(op, q, k)) || (st = cg_same_dtype(op, q, v))) return st;
    int nd = q->ndim;
    if (nd < 2 || k->ndim != nd || v->ndim != nd)
        return sd_shape_error("expected query, key and value of the same number of dims, at least 2", q, k, v);
    for (int i = 0; i < nd - 2; i++)
        if (k->shape[i] != q->shape[i] || v->shape[i] != q->shape[i])
            return sd_shape_error("the batch dims differ", q, k, v);
    int64_t L = q->shape[nd - 2], E = q->shape[nd - 1], S = k->shape[nd - 2], Ev = v->shape[nd - 1];
    if (k->shape[nd - 1] != E) return sd_shape_error("query and key must have the same embedding size (last dim)", q, k, v);
    if (v->shape[nd - 2] != S) return sd_shape_error("key and value must have the same sequence length", q, k, v);
    if (mask && is_causal)
        return cg_error(CG_ERR_VALUE, "%s: give attn_mask or is_causal=True, not both (attn_mask of shape %s)", op,
                        cg_shape_str(mask->ndim, mask->shape, b1, sizeof b1));
    int64_t B = cg_numel(nd - 2, q->shape);
    if (mask) {
        CG_REQUIRE_FLOAT(op, mask);
        if ((st = cg_same_dtype(op, q, mask))) return st;
    }
    if (entropy) {
        if (entropy->dtype != q->dtype || entropy->numel != B || cg_tensor_needs_grad(entropy))
            return cg_error(CG_ERR_VALUE, "%s: the entropy buffer must be %lld values of %s that need no gradient, "
                                          "got %s of shape %s", op, (long long)B, cg_dtype_name(q->dtype),
                            cg_dtype_name(entropy->dtype), cg_shape_str(entropy->ndim, entropy->shape, b2, sizeof b2));
    }
    int flags = (mask ? SD_MASK : 0) | (is_causal ? SD_CAUSAL : 0) | (entropy ? SD_ENTROPY : 0);
    size_t off_bytes = sd_offsets_bytes(flags, B);
    size_t p_bytes = (size_t)(B * L * S) * cg_dtype_size(q->dtype);
    void *extra = cg_malloc(off_bytes + p_bytes ? off_bytes + p_bytes : 1);
    if (!extra) return cg_error(CG_ERR_NOMEM, "%s: out of memory for the attention weights", op);
    int64_t ip[8] = {B, L, S, E, Ev, flags, 0, 0};
    if (mask && (st = sd_mask_layout(mask, q, S, B, extra, &ip[6], &ip[7]))) {
        cg_free(extra);
        return st;
    }
    int64_t shape[CG_MAX_DIMS];
    memcpy(shape, q->shape, sizeof(int64_t) * (size_t)nd);
    shape[nd - 1] = Ev;
    cg_tensor *y;
    if ((st = cg_tensor_empty(q->dtype, nd, shape, &y))) {
        cg_free(extra);
        return st;
    }
    cg_tensor *ins[5] = {q, k, v, NULL, NULL};
    int n = 3;
    if (mask) ins[n++] = mask;
    if (entropy) ins[n++] = entropy;
    sd_run(ins, ip, scale, extra, y->data);
    cg_node *node;
    if ((st = cg_record(CG_OP_SCALED_DOT_PRODUCT_ATTENTION, n, ins, y, &node))) {
        cg_free(extra);
        return st;
    }
    if (node) {
        node->extra = extra;
        memcpy(node->ip, ip, sizeof ip);
        node->p[0] = scale;
    } else {
        cg_free(extra);
    }
    *out = y;
    return CG_OK;
}

/* Backward: per block, from the P the forward kept; dmask (when the mask needs a gradient)
 * gets dS summed over the positions that broadcast onto one of its values. */
void cg_attention_bwd(cg_node *node, const void *g, void **dins) {
    int flags = (int)node->ip[5];
    int64_t B = node->ip[0];
    sd_dims d = sd_dims_of(node->ip, node->p[0]);
    const cg_tensor *q = node->inputs[0], *k = node->inputs[1], *v = node->inputs[2];
    void *dmask = flags & SD_MASK ? dins[3] : NULL;
    if (!dins[0] && !dins[1] && !dins[2] && !dmask) return;
    const int64_t *moff = node->extra;
    const char *P = (const char *)node->extra + sd_offsets_bytes(flags, B);
    size_t es = cg_dtype_size(q->dtype);
    void *scratch = cg_malloc((size_t)(d.chunk * d.S) * es + 1);
    if (!scratch) {
        cg_rule_status_ = cg_error(CG_ERR_NOMEM, "scaled_dot_product_attention: out of memory in backward");
        return;
    }
    const cg_blas_provider *blas = cg_blas_current();
    for (int64_t b = 0; b < B; b++) {
        size_t oq = (size_t)(b * d.L * d.E), ok = (size_t)(b * d.S * d.E), ov = (size_t)(b * d.S * d.Ev);
        size_t op = (size_t)(b * d.L * d.S), og = (size_t)(b * d.L * d.Ev);
        if (q->dtype == CG_F32)
            sd_block_bwd__f32(blas->sgemm, &d, (const float *)q->data + oq, (const float *)k->data + ok,
                              (const float *)v->data + ov, (const float *)(P + op * es), (const float *)g + og,
                              dins[0] ? (float *)dins[0] + oq : NULL, dins[1] ? (float *)dins[1] + ok : NULL,
                              dins[2] ? (float *)dins[2] + ov : NULL, dmask ? (float *)dmask + moff[b] : NULL,
                              scratch);
        else
            sd_block_bwd__f64(blas->dgemm, &d, (const double *)q->data + oq, (const double *)k->data + ok,
                              (const double *)v->data + ov, (const double *)(P + op * es), (const double *)g + og,
                              dins[0] ? (double *)dins[0] + oq : NULL, dins[1] ? (double *)dins[1] + ok : NULL,
                              dins[2] ? (double *)dins[2] + ov : NULL, dmask ? (double *)dmask + moff[b] : NULL,
                              scratch);
    }
    cg_free(scratch);
}
