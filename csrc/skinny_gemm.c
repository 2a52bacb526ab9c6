/* skinny_gemm.c: float32 GEMMs of the shapes a small network makes over a batch, where
 * OpenBLAS is far from the FMA peak (it packs both operands, and its small-matrix kernels
 * are tuned for square blocks):
 *  - "rows": C [M, N] = alpha A [M, K] op(B) + beta C with N, K <= 32 and M >= 64: a linear
 *    layer's forward (X W^T), its dX (G W), a taped rule's G B^T;
 *  - "cols": C [M, N] = alpha A^T B + beta C, A [K, M], B [K, N], with M, N <= 32 and
 *    K >= 64: a weight gradient (G^T X) summed over the batch.
 * AVX-512 only, picked at run time (elsewhere OpenBLAS runs them): a row of C is two
 * 16-wide registers with masks beyond N, four rows at a time, so the eight accumulators,
 * the row of B and the broadcast A values all stay in registers. An AVX2 version (four
 * 8-wide registers, three rows at a time) matched OpenBLAS's Haswell kernels on X W and
 * X W^T (35 us both), lost on G^T X (50 against 39) and won only a linear layer with bias
 * (33 against 44), so it was left out. op(B) for "rows" is first
 * copied into a zero-padded [K][32] block (at most 4 KiB). `python benchmarks/pinn_kernels.py`
 * (2,000x20x20 float32, 1 core, AVX-512), cgrad's against OpenBLAS's: X W 20 against 24 us,
 * X W^T 22 against 30, G^T X (K = 2,000) 22 against 24, a linear layer with bias 19 against
 * 37. Results differ from OpenBLAS's in rounding (another summation order), never between
 * runs. */
#include "cg_internal.h"

#define W 32 /* padded width */

#if defined(__GNUC__) && defined(__x86_64__)
#include <immintrin.h>

#define AVX512 __attribute__((target("avx512f")))

/* c[:N] = alpha acc + beta c, the two halves under their masks */
AVX512 static inline void store2(float *c, __m512 lo, __m512 hi, __mmask16 m0, __mmask16 m1, float alpha,
                                 float beta) {
    __m512 va = _mm512_set1_ps(alpha);
    lo = _mm512_mul_ps(va, lo);
    hi = _mm512_mul_ps(va, hi);
    if (beta != 0) { /* beta 0 must not read C (it may be uninitialised) */
        __m512 vb = _mm512_set1_ps(beta);
        lo = _mm512_fmadd_ps(vb, _mm512_maskz_loadu_ps(m0, c), lo);
        hi = _mm512_fmadd_ps(vb, _mm512_maskz_loadu_ps(m1, c + 16), hi);
    }
    _mm512_mask_storeu_ps(c, m0, lo);
    _mm512_mask_storeu_ps(c + 16, m1, hi);
}

#define FMA_ROW(r, a)                                                                           \
    do {                                                                                        \
        __m512 a_ = _mm512_set1_ps(a);                                                          \
        lo##r = _mm512_fmadd_ps(a_, b0, lo##r);                                                 \
        hi##r = _mm512_fmadd_ps(a_, b1, hi##r);                                                 \
    } while (0)

/* bias (NULL: none) starts every row's accumulators: linear's x W^T + b in one pass */
AVX512 static void rows_avx512(int64_t M, int64_t N, int64_t K, float alpha, const float *A, int64_t lda,
                               const float *Bp, const float *bias, float beta, float *C, int64_t ldc, __mmask16 m0,
                               __mmask16 m1) {
    __m512 init_lo = bias ? _mm512_maskz_loadu_ps(m0, bias) : _mm512_setzero_ps();
    __m512 init_hi = bias ? _mm512_maskz_loadu_ps(m1, bias + 16) : _mm512_setzero_ps();
    int64_t i = 0;
    for (; i + 4 <= M; i += 4) {
        __m512 lo0 = init_lo, hi0 = init_hi, lo1 = init_lo, hi1 = init_hi, lo2 = init_lo, hi2 = init_hi, lo3 = init_lo,
               hi3 = init_hi;
        const float *a = A + i * lda;
        for (int64_t k = 0; k < K; k++) {
            __m512 b0 = _mm512_load_ps(Bp + k * W), b1 = _mm512_load_ps(Bp + k * W + 16);
            FMA_ROW(0, a[k]);
            FMA_ROW(1, a[lda + k]);
            FMA_ROW(2, a[2 * lda + k]);
            FMA_ROW(3, a[3 * lda + k]);
        }
        store2(C + i * ldc, lo0, hi0, m0, m1, alpha, beta);
        store2(C + (i + 1) * ldc, lo1, hi1, m0, m1, alpha, beta);
        store2(C + (i + 2) * ldc, lo2, hi2, m0, m1, alpha, beta);
        store2(C + (i + 3) * ldc, lo3, hi3, m0, m1, alpha, beta);
    }
    for (; i < M; i++) {
        __m512 lo0 = init_lo, hi0 = init_hi;
        for (int64_t k = 0; k < K; k++) {
            __m512 b0 = _mm512_load_ps(Bp + k * W), b1 = _mm512_load_ps(Bp + k * W + 16);
            FMA_ROW(0, A[i * lda + k]);
        }
        store2(C + i * ldc, lo0, hi0, m0, m1, alpha, beta);
    }
}

/* RB rows of C (RB <= 8) over all k: sixteen accumulators, B's row loaded once for them */
#define COLS_BLOCK(RB)                                                                          \
    do {                                                                                        \
        __m512 lo[RB], hi[RB];                                                                  \
        for (int r = 0; r < RB; r++) lo[r] = hi[r] = _mm512_setzero_ps();                       \
        for (int64_t k = 0; k < K; k++) {                                                       \
            const float *b = B + k * ldb, *a = A + k * lda + i;                                 \
            __m512 b0 = _mm512_maskz_loadu_ps(m0, b), b1 = _mm512_maskz_loadu_ps(m1, b + 16);   \
            for (int r = 0; r < RB; r++) {                                                      \
                __m512 a_ = _mm512_set1_ps(a[r]);                                               \
                lo[r] = _mm512_fmadd_ps(a_, b0, lo[r]);                                         \
                hi[r] = _mm512_fmadd_ps(a_, b1, hi[r]);                                         \
            }                                                                                   \
        }                                                                                       \
        for (int r = 0; r < RB; r++) store2(C + (i + r) * ldc, lo[r], hi[r], m0, m1, alpha, beta); \
    } while (0)

AVX512 static void cols_avx512(int64_t M, int64_t K, float alpha, const float *A, int64_t lda, const float *B,
                               int64_t ldb, float beta, float *C, int64_t ldc, __mmask16 m0, __mmask16 m1) {
    int64_t i = 0;
    for (; i + 8 <= M; i += 8) COLS_BLOCK(8);
    for (; i + 4 <= M; i += 4) COLS_BLOCK(4);
    for (; i < M; i++) COLS_BLOCK(1);
}

/* lane masks beyond N: the two 16-lane halves of a row */
static void masks512(int64_t N, __mmask16 *m0, __mmask16 *m1) {
    *m0 = (__mmask16)(N >= 16 ? 0xFFFF : (1u << N) - 1);
    *m1 = (__mmask16)(N >= 32 ? 0xFFFF : N > 16 ? (1u << (N - 16)) - 1 : 0);
}

/* C [M, N] = alpha A^T B + beta C with N <= NARROW_N: there the lanes run over M instead (a
 * row of A is M contiguous values) against one broadcast value of B per column, so a k
 * costs 2 N FMAs rather than 2 M with N of 32 lanes used. U steps of k run in separate
 * accumulators (summed in a fixed order at the end) to hide the FMA latency. This is an
 * RNN's W_ih gradient over one input feature: 18x1x4000 takes 7-10 us, against 57 in
 * cols_avx512 and 15 in OpenBLAS (1 core, AVX-512 at 2 GHz; benchmarks/pinn_kernels.py). */
#define NARROW_N 4
/* one k: row a of A (M values, two halves when two) times b's N values into lo[j], hi[j] */
AVX512 static inline __attribute__((always_inline)) void narrow_k(int N, int two, const float *a, const float *b,
                                                                  __mmask16 m0, __mmask16 m1, __m512 *lo,
                                                                  __m512 *hi) {
    __m512 a0 = _mm512_maskz_loadu_ps(m0, a), a1 = two ? _mm512_maskz_loadu_ps(m1, a + 16) : a0;
    for (int j = 0; j < N; j++) {
        __m512 bj = _mm512_set1_ps(b[j]);
        lo[j] = _mm512_fmadd_ps(a0, bj, lo[j]);
        if (two) hi[j] = _mm512_fmadd_ps(a1, bj, hi[j]);
    }
}

AVX512 static inline __attribute__((always_inline)) void narrow_block(int64_t M, int N, int U, int two, int64_t K,
                                                                      float alpha, const float *A, int64_t lda,
                                                                      const float *B, int64_t ldb, float beta,
                                                                      float *C, int64_t ldc) {
    __mmask16 m0, m1;
    masks512(M, &m0, &m1);
    __m512 lo[8][NARROW_N], hi[8][NARROW_N]; /* [u][j], U <= 8 */
    for (int u = 0; u < U; u++)
        for (int j = 0; j < N; j++) lo[u][j] = hi[u][j] = _mm512_setzero_ps();
    int64_t k = 0;
    for (; k + U <= K; k += U)
        for (int u = 0; u < U; u++) narrow_k(N, two, A + (k + u) * lda, B + (k + u) * ldb, m0, m1, lo[u], hi[u]);
    for (; k < K; k++) narrow_k(N, two, A + k * lda, B + k * ldb, m0, m1, lo[0], hi[0]);
    float out[2 * 16] __attribute__((aligned(64)));
    for (int j = 0; j < N; j++) {
        __m512 l = lo[0][j], h = hi[0][j];
        for (int u = 1; u < U; u++) {
            l = _mm512_add_ps(l, lo[u][j]);
            if (two) h = _mm512_add_ps(h, hi[u][j]);
        }
        _mm512_store_ps(out, l);
        if (two) _mm512_store_ps(out + 16, h);
        for (int64_t i = 0; i < M; i++) { /* beta 0 must not read C (it may be uninitialised) */
            float *c = C + i * ldc + j;
            *c = beta != 0 ? alpha * out[i] + beta * *c : alpha * out[i];
        }
    }
}

/* N 1..NARROW_N and M <= 32 as constants to narrow_block: sixteen accumulators or fewer */
AVX512 static void narrow_cols_avx512(int64_t M, int64_t N, int64_t K, float alpha, const float *A, int64_t lda,
                                      const float *B, int64_t ldb, float beta, float *C, int64_t ldc) {
#define NARROW(n, u)                                                                             \
    (M > 16 ? narrow_block(M, n, u, 1, K, alpha, A, lda, B, ldb, beta, C, ldc)                   \
            : narrow_block(M, n, 2 * (u), 0, K, alpha, A, lda, B, ldb, beta, C, ldc))
    switch (N) {
    case 1: NARROW(1, 4); break;
    case 2: NARROW(2, 2); break;
    case 3: NARROW(3, 2); break;
    default: NARROW(4, 2); break;
    }
#undef NARROW
}

/* ---- dispatch ---- */
static int isa = -1; /* CG_SKINNY_*, or -1: not chosen yet */

static int best_isa(void) {
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx512f")) return CG_SKINNY_AVX512;
    return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") ? CG_SKINNY_AVX2 : CG_SKINNY_OFF;
}

int cg_skinny_set_isa(int want) {
    int best = best_isa();
    isa = want < 0 || want > best ? best : want == CG_SKINNY_AVX512 || want == CG_SKINNY_AVX2 ? want : CG_SKINNY_OFF;
    return isa;
}

int cg_skinny_isa(void) {
    if (isa < 0) isa = best_isa();
    return isa;
}

/* op(B) [K, N] as [K][32], zero beyond N */
static void pad_b(int tb, int64_t N, int64_t K, const float *B, int64_t ldb, float *Bp) {
    for (int64_t k = 0; k < K; k++)
        for (int64_t j = 0; j < W; j++) Bp[k * W + j] = j >= N ? 0.0f : tb ? B[j * ldb + k] : B[k * ldb + j];
}

static void rows(int tb, int64_t M, int64_t N, int64_t K, float alpha, const float *A, int64_t lda, const float *B,
                 int64_t ldb, const float *bias, float beta, float *C, int64_t ldc) {
    float Bp[W * W] __attribute__((aligned(64)));
    pad_b(tb, N, K, B, ldb, Bp);
    __mmask16 m0, m1;
    masks512(N, &m0, &m1);
    rows_avx512(M, N, K, alpha, A, lda, Bp, bias, beta, C, ldc, m0, m1);
}

int cg_skinny_sgemm(cg_trans ta, cg_trans tb, int64_t M, int64_t N, int64_t K, float alpha, const float *A,
                    int64_t lda, const float *B, int64_t ldb, float beta, float *C, int64_t ldc) {
    if (cg_skinny_isa() != CG_SKINNY_AVX512 || N > W || N < 1) return 0;
    if (!ta && K <= W && M >= 64) {
        rows(tb, M, N, K, alpha, A, lda, B, ldb, NULL, beta, C, ldc);
        return 1;
    }
    if (ta && !tb && M <= W && K >= 64 && N <= NARROW_N) {
        narrow_cols_avx512(M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
        return 1;
    }
    if (ta && !tb && M <= W && K >= 64) {
        __mmask16 m0, m1;
        masks512(N, &m0, &m1);
        cols_avx512(M, K, alpha, A, lda, B, ldb, beta, C, ldc, m0, m1);
        return 1;
    }
    return 0;
}

int cg_skinny_linear(int64_t rows_, int64_t nin, int64_t nout, const float *X, const float *Wt, const float *bias,
                     float *Y) {
    if (cg_skinny_isa() != CG_SKINNY_AVX512 || nout > W || nout < 1 || nin > W || rows_ < 64) return 0;
    rows(1, rows_, nout, nin, 1.0f, X, nin, Wt, nin, bias, 0.0f, Y, nout);
    return 1;
}

#else
int cg_skinny_sgemm(cg_trans ta, cg_trans tb, int64_t M, int64_t N, int64_t K, float alpha, const float *A,
                    int64_t lda, const float *B, int64_t ldb, float beta, float *C, int64_t ldc) {
    return 0;
}
int cg_skinny_linear(int64_t rows, int64_t nin, int64_t nout, const float *X, const float *Wt, const float *bias,
                     float *Y) {
    return 0;
}
int cg_skinny_set_isa(int want) { return CG_SKINNY_OFF; }
int cg_skinny_isa(void) { return CG_SKINNY_OFF; }
#endif
