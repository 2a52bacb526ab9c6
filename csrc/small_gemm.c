/* small_gemm.c: float32 GEMMs too small for OpenBLAS to reach the FMA peak, on AVX2 + FMA.
 * C [M, N] = alpha op(A) [M, K] op(B) [K, N] + beta C, row-major, all four transpose
 * combinations, any lda/ldb/ldc. OpenBLAS packs both operands on every call and its
 * kernels are tuned for large blocks: on a 64x64x64 product it pays about as much for the
 * call as for the arithmetic. Here:
 *  - C is computed in tiles of 6 rows x 16 columns: twelve 8-wide accumulators, the two
 *    vectors of op(B)'s row and one broadcast of op(A) fill the 16 ymm registers, and two
 *    FMA pipes with a 4-cycle latency need at least eight independent chains (a last panel
 *    of at most 8 columns: 12 rows x 8);
 *  - op(A) is read in place (rows for NN/NT, columns for TN/TT: both are broadcasts);
 *  - op(B) is read in place when it is not transposed (the last vector of a row under a
 *    mask when N is not a multiple of 8); B^T is copied a panel of at most KC rows at a
 *    time to the stack, zero beyond N, its columns becoming rows (8x8 register transposes);
 *  - K is cut into chunks of KC (the panel stays in L1); chunks after the first add to C;
 *  - the last vector of a row is stored under a mask when N is not a multiple of 8.
 * Which shapes come here is cg_small_sgemm_wins's rule, written from the bake-off of
 * benchmarks/gemm_shapes.py. Results differ from OpenBLAS's in rounding (the
 * summation order), never between runs. */
#include "cg_internal.h"

#if defined(__GNUC__) && defined(__x86_64__)
#include <immintrin.h>

#define AVX2 __attribute__((target("avx2,fma")))
#define INLINE __attribute__((always_inline)) static inline

#define MR 6   /* rows of a tile */
#define MR1 12 /* rows of a one-vector tile (a panel of at most 8 columns): twelve chains too */
#define NR 16  /* columns of a tile: two vectors */
#define KC 256 /* rows of op(B) in a panel: 16 KiB */

typedef struct {
    float alpha, beta;
    const float *bias; /* start of the accumulators (row vector at the tile's columns), or NULL */
    __m256i last;      /* lane mask of a row's last vector */
    int masked;        /* the last vector is partial */
} tile_out;

/* One tile: mr rows (<= MR, or MR1 for one vector) by nv vectors (1 or 2) over kc steps. op(A)'s element (r, k) is
 * a[r * lda + k] (ta = 0) or a[k * lda + r] (ta = 1); op(B)'s row k is b + k * bs, its last
 * vector loaded under the mask when mb (B read in place, N not a multiple of 8). mr, nv, ta
 * and mb are constants at every call, so the loops unroll and acc stays in registers. */
INLINE AVX2 void tile(const int mr, const int nv, const int ta, const int mb, int64_t kc, const float *a, int64_t lda,
                      const float *b, int64_t bs, float *c, int64_t ldc, const tile_out *o) {
    __m256 acc[MR1][2];
    __m256 init0 = _mm256_setzero_ps(), init1 = _mm256_setzero_ps();
    if (o->bias) {
        if (nv == 1) init0 = o->masked ? _mm256_maskload_ps(o->bias, o->last) : _mm256_loadu_ps(o->bias);
        else {
            init0 = _mm256_loadu_ps(o->bias);
            init1 = o->masked ? _mm256_maskload_ps(o->bias + 8, o->last) : _mm256_loadu_ps(o->bias + 8);
        }
    }
#pragma GCC unroll 12
    for (int r = 0; r < mr; r++) {
        acc[r][0] = init0;
        acc[r][1] = init1;
    }
#pragma GCC unroll 2
    for (int64_t k = 0; k < kc; k++) {
        const float *bk = b + k * bs;
        __m256 b0, b1;
        if (nv == 1) b0 = b1 = mb ? _mm256_maskload_ps(bk, o->last) : _mm256_loadu_ps(bk);
        else {
            b0 = _mm256_loadu_ps(bk);
            b1 = mb ? _mm256_maskload_ps(bk + 8, o->last) : _mm256_loadu_ps(bk + 8);
        }
#pragma GCC unroll 12
        for (int r = 0; r < mr; r++) {
            __m256 av = _mm256_broadcast_ss(ta ? a + k * lda + r : a + r * lda + k);
            acc[r][0] = _mm256_fmadd_ps(av, b0, acc[r][0]);
            if (nv == 2) acc[r][1] = _mm256_fmadd_ps(av, b1, acc[r][1]);
        }
    }
    const __m256 va = _mm256_set1_ps(o->alpha), vb = _mm256_set1_ps(o->beta);
#pragma GCC unroll 12
    for (int r = 0; r < mr; r++) {
        float *cr = c + r * ldc;
#pragma GCC unroll 2
        for (int v = 0; v < nv; v++) {
            int part = v == nv - 1 && o->masked;
            __m256 x = o->alpha == 1.0f ? acc[r][v] : _mm256_mul_ps(va, acc[r][v]);
            if (o->beta != 0.0f) { /* beta 0 must not read C (it may be uninitialised) */
                __m256 old = part ? _mm256_maskload_ps(cr + 8 * v, o->last) : _mm256_loadu_ps(cr + 8 * v);
                x = o->beta == 1.0f ? _mm256_add_ps(x, old) : _mm256_fmadd_ps(vb, old, x);
            }
            if (part) _mm256_maskstore_ps(cr + 8 * v, o->last, x);
            else _mm256_storeu_ps(cr + 8 * v, x);
        }
    }
}

/* Every row block of one panel: whole tiles of MR rows (MR1 for one vector), then the rest. */
INLINE AVX2 void panel(const int nv, const int ta, const int mb, int64_t M, int64_t kc, const float *A, int64_t lda,
                       const float *b, int64_t bs, float *C, int64_t ldc, const tile_out *o) {
    int64_t i = 0;
    const int64_t astep = ta ? 1 : lda; /* from one row of op(A) to the next */
    if (nv == 1)
        for (; i + MR1 <= M; i += MR1) tile(MR1, nv, ta, mb, kc, A + i * astep, lda, b, bs, C + i * ldc, ldc, o);
    for (; i + MR <= M; i += MR) tile(MR, nv, ta, mb, kc, A + i * astep, lda, b, bs, C + i * ldc, ldc, o);
    const float *a = A + i * astep;
    float *c = C + i * ldc;
    switch (M - i) {
    case 5: tile(5, nv, ta, mb, kc, a, lda, b, bs, c, ldc, o); break;
    case 4: tile(4, nv, ta, mb, kc, a, lda, b, bs, c, ldc, o); break;
    case 3: tile(3, nv, ta, mb, kc, a, lda, b, bs, c, ldc, o); break;
    case 2: tile(2, nv, ta, mb, kc, a, lda, b, bs, c, ldc, o); break;
    case 1: tile(1, nv, ta, mb, kc, a, lda, b, bs, c, ldc, o); break;
    default: break;
    }
}

/* op(B) = B^T [k0 : k0 + kc, j0 : j0 + nr] into Bp [kc][NR], zero beyond nr: column j of
 * the panel is row j0 + j of B, eight rows at a time transposed in registers. */
AVX2 static void pack_b(int64_t kc, int64_t nr, const float *B, int64_t ldb, int64_t k0, int64_t j0, float *Bp) {
    int64_t j = 0;
    for (; j + 8 <= nr; j += 8) {
        const float *src = B + (j0 + j) * ldb + k0;
        int64_t k = 0;
        for (; k + 8 <= kc; k += 8) {
            __m256 r0 = _mm256_loadu_ps(src + k), r1 = _mm256_loadu_ps(src + ldb + k);
            __m256 r2 = _mm256_loadu_ps(src + 2 * ldb + k), r3 = _mm256_loadu_ps(src + 3 * ldb + k);
            __m256 r4 = _mm256_loadu_ps(src + 4 * ldb + k), r5 = _mm256_loadu_ps(src + 5 * ldb + k);
            __m256 r6 = _mm256_loadu_ps(src + 6 * ldb + k), r7 = _mm256_loadu_ps(src + 7 * ldb + k);
            __m256 t0 = _mm256_unpacklo_ps(r0, r1), t1 = _mm256_unpackhi_ps(r0, r1);
            __m256 t2 = _mm256_unpacklo_ps(r2, r3), t3 = _mm256_unpackhi_ps(r2, r3);
            __m256 t4 = _mm256_unpacklo_ps(r4, r5), t5 = _mm256_unpackhi_ps(r4, r5);
            __m256 t6 = _mm256_unpacklo_ps(r6, r7), t7 = _mm256_unpackhi_ps(r6, r7);
            __m256 u0 = _mm256_shuffle_ps(t0, t2, 0x44), u1 = _mm256_shuffle_ps(t0, t2, 0xEE);
            __m256 u2 = _mm256_shuffle_ps(t1, t3, 0x44), u3 = _mm256_shuffle_ps(t1, t3, 0xEE);
            __m256 u4 = _mm256_shuffle_ps(t4, t6, 0x44), u5 = _mm256_shuffle_ps(t4, t6, 0xEE);
            __m256 u6 = _mm256_shuffle_ps(t5, t7, 0x44), u7 = _mm256_shuffle_ps(t5, t7, 0xEE);
            float *dst = Bp + k * NR + j;
            _mm256_storeu_ps(dst + 0 * NR, _mm256_permute2f128_ps(u0, u4, 0x20));
            _mm256_storeu_ps(dst + 1 * NR, _mm256_permute2f128_ps(u1, u5, 0x20));
            _mm256_storeu_ps(dst + 2 * NR, _mm256_permute2f128_ps(u2, u6, 0x20));
            _mm256_storeu_ps(dst + 3 * NR, _mm256_permute2f128_ps(u3, u7, 0x20));
            _mm256_storeu_ps(dst + 4 * NR, _mm256_permute2f128_ps(u0, u4, 0x31));
            _mm256_storeu_ps(dst + 5 * NR, _mm256_permute2f128_ps(u1, u5, 0x31));
            _mm256_storeu_ps(dst + 6 * NR, _mm256_permute2f128_ps(u2, u6, 0x31));
            _mm256_storeu_ps(dst + 7 * NR, _mm256_permute2f128_ps(u3, u7, 0x31));
        }
        for (; k < kc; k++)
            for (int64_t jj = 0; jj < 8; jj++) Bp[k * NR + j + jj] = src[jj * ldb + k];
    }
    for (int64_t k = 0; k < kc; k++) {
        float *dst = Bp + k * NR;
        for (int64_t jj = j; jj < nr; jj++) dst[jj] = B[(j0 + jj) * ldb + k0 + k];
        for (int64_t jj = nr; jj < NR; jj++) dst[jj] = 0.0f;
    }
}

AVX2 static void gemm_avx2(int ta, int tb, int64_t M, int64_t N, int64_t K, float alpha, const float *A,
                           int64_t lda, const float *B, int64_t ldb, const float *bias, float beta, float *C,
                           int64_t ldc) {
    float Bp[KC * NR] __attribute__((aligned(32)));
    for (int64_t j0 = 0; j0 < N; j0 += NR) {
        int64_t nr = N - j0 < NR ? N - j0 : NR;
        int nv = nr > 8 ? 2 : 1, rem = (int)(nr - 8 * (nv - 1));
        tile_out o = {alpha, beta, bias ? bias + j0 : NULL,
                      _mm256_cmpgt_epi32(_mm256_set1_epi32(rem), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7)),
                      rem < 8};
        int64_t k0 = 0;
        do { /* at least once: K = 0 still writes beta C (+ bias) */
            int64_t kc = K - k0 < KC ? K - k0 : KC;
            const float *b = Bp;
            int64_t bs = NR;
            if (tb) pack_b(kc, nr, B, ldb, k0, j0, Bp);
            else {
                b = B + k0 * ldb + j0;
                bs = ldb;
            }
            const float *a = ta ? A + k0 * lda : A + k0;
            float *c = C + j0;
            /* the eight variants of (nv, ta, masked B), each a panel() with its own tiles */
            int v = (nv - 1) * 4 + ta * 2 + (!tb && o.masked);
            switch (v) {
            case 0: panel(1, 0, 0, M, kc, a, lda, b, bs, c, ldc, &o); break;
            case 1: panel(1, 0, 1, M, kc, a, lda, b, bs, c, ldc, &o); break;
            case 2: panel(1, 1, 0, M, kc, a, lda, b, bs, c, ldc, &o); break;
            case 3: panel(1, 1, 1, M, kc, a, lda, b, bs, c, ldc, &o); break;
            case 4: panel(2, 0, 0, M, kc, a, lda, b, bs, c, ldc, &o); break;
            case 5: panel(2, 0, 1, M, kc, a, lda, b, bs, c, ldc, &o); break;
            case 6: panel(2, 1, 0, M, kc, a, lda, b, bs, c, ldc, &o); break;
            default: panel(2, 1, 1, M, kc, a, lda, b, bs, c, ldc, &o); break;
            }
            o.beta = 1.0f; /* the next chunks add to what this one stored */
            o.bias = NULL;
        } while ((k0 += KC) < K);
    }
}

/* ---- dispatch ---- */
static int isa = -1; /* CG_SMALL_GEMM_*, or -1: not chosen yet */

static int best_isa(void) {
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") ? CG_SMALL_GEMM_AVX2 : CG_SMALL_GEMM_OFF;
}

int cg_small_gemm_set_isa(int want) {
    int best = best_isa();
    isa = want < 0 || want > best ? best : want == CG_SMALL_GEMM_AVX2 ? want : CG_SMALL_GEMM_OFF;
    return isa;
}

int cg_small_gemm_isa(void) {
    if (isa < 0) isa = best_isa();
    return isa;
}

int cg_small_sgemm_run(cg_trans ta, cg_trans tb, int64_t M, int64_t N, int64_t K, float alpha, const float *A,
                       int64_t lda, const float *B, int64_t ldb, const float *bias, float beta, float *C,
                       int64_t ldc) {
    if (cg_small_gemm_isa() == CG_SMALL_GEMM_OFF) return 0;
    if (M > 0 && N > 0) gemm_avx2(ta, tb, M, N, K, alpha, A, lda, B, ldb, bias, beta, C, ldc);
    return 1;
}

/* The shapes where this kernel beat OpenBLAS in the bake-off (`python benchmarks/gemm_shapes.py
 * --samples 11`, every float32 GEMM of the benchmark's steps, 1 core of an AMD EPYC Zen 3 shared
 * with other jobs: provisional, median ns cgrad / OpenBLAS):
 *  - small products, all flags: 16x32x32 NN 794 / 1162, NT 16x16x32 392 / 717, TN 10x64x64
 *    2203 / 3622, 64x128x64 NN 19.9 / 29.2 us, NT 17.4 / 18.1, TN 19.4 / 21.4;
 *  - up to M N K = 2^21: 25x1000x75 NN 56.7 / 65.8 us; beyond, OpenBLAS's packing pays off:
 *    128x256x256 NN 336 / 306 us, 768x128x384 NN 1.34 / 1.07 ms;
 *  - but not the matrix-vector shapes, where most lanes of a 16-wide tile are idle: N = 1
 *    unless A is transposed (32x1x16 NT 589 / 408 ns; TN 18x1x4000 27 / 44 us stays ours),
 *    K = 1 or 2 over more than 64 rows (100x20x1 NN 1246 / 890 ns), B^T with N <= 10
 *    (64x10x64 NT 2185 / 1981 ns, 16x9x4096 61 / 48 us), nor a batch of 1,000 rows or more
 *    into N <= 32 columns (the PINN's 2000x20x20 NT 66 / 59 us, NN with beta 1 67 / 53 us;
 *    skinny_gemm.c takes those on AVX-512). */
int cg_small_sgemm_wins(cg_trans ta, cg_trans tb, int64_t M, int64_t N, int64_t K) {
    if ((double)M * (double)N * (double)K > (double)(1 << 21)) return 0;
    if ((N < 2 && !ta) || (K <= 2 && M > 64) || (tb && N <= 10) || (M >= 1000 && N <= 32)) return 0;
    return 1;
}

int cg_small_sgemm(cg_trans ta, cg_trans tb, int64_t M, int64_t N, int64_t K, float alpha, const float *A,
                   int64_t lda, const float *B, int64_t ldb, float beta, float *C, int64_t ldc) {
    if (cg_small_gemm_isa() == CG_SMALL_GEMM_OFF || !cg_small_sgemm_wins(ta, tb, M, N, K)) return 0;
    gemm_avx2(ta, tb, M, N, K, alpha, A, lda, B, ldb, NULL, beta, C, ldc);
    return 1;
}

int cg_small_linear(int64_t rows, int64_t nin, int64_t nout, const float *X, const float *Wt, const float *bias,
                    float *Y) {
    if (cg_small_gemm_isa() == CG_SMALL_GEMM_OFF || !cg_small_sgemm_wins(CG_NO_TRANS, CG_TRANS, rows, nout, nin))
        return 0;
    gemm_avx2(0, 1, rows, nout, nin, 1.0f, X, nin, Wt, nin, bias, 0.0f, Y, nout);
    return 1;
}

#else
int cg_small_sgemm_wins(cg_trans ta, cg_trans tb, int64_t M, int64_t N, int64_t K) { return 0; }
int cg_small_sgemm(cg_trans ta, cg_trans tb, int64_t M, int64_t N, int64_t K, float alpha, const float *A,
                   int64_t lda, const float *B, int64_t ldb, float beta, float *C, int64_t ldc) {
    return 0;
}
int cg_small_linear(int64_t rows, int64_t nin, int64_t nout, const float *X, const float *Wt, const float *bias,
                    float *Y) {
    return 0;
}
int cg_small_gemm_set_isa(int want) { return CG_SMALL_GEMM_OFF; }
int cg_small_gemm_isa(void) { return CG_SMALL_GEMM_OFF; }
int cg_small_sgemm_run(cg_trans ta, cg_trans tb, int64_t M, int64_t N, int64_t K, float alpha, const float *A,
                       int64_t lda, const float *B, int64_t ldb, const float *bias, float beta, float *C,
                       int64_t ldc) {
    return 0;
}
#endif
