/* small_gemm.c: float32 GEMMs too small for OpenBLAS to reach the FMA peak, on AVX-512F or
 * AVX2 + FMA (the best the CPU has, chosen at the first call).
 * C [M, N] = alpha op(A) [M, K] op(B) [K, N] + beta C, row-major, all four transpose
 * combinations, any lda/ldb/ldc. OpenBLAS packs both operands on every call and its
 * kernels are tuned for large blocks: on a 64x64x64 product it pays about as much for the
 * call as for the arithmetic. Here (small_gemm_kernel.h, written once for both widths):
 *  - C is computed in tiles of two vectors' width: 6 rows x 16 columns on AVX2 (twelve
 *    accumulators, the two vectors of op(B)'s row and one broadcast of op(A) fill the 16
 *    ymm registers), 8 x 32 on AVX-512 (sixteen of the 32 zmm); two FMA pipes with a
 *    4-cycle latency need at least eight independent chains, so a last panel of one
 *    vector's width has more rows on AVX2 (12 x 8); on AVX-512 it keeps 8 (8 x 16), since
 *    each row of op(A) read in place needs its own pointer and sixteen spill;
 *  - op(A) is read in place (rows for NN/NT, columns for TN/TT: both are broadcasts);
 *  - op(B) is read in place when it is not transposed (the last vector of a row under a
 *    mask when N is not a multiple of the width); B^T is copied a panel of at most KC rows
 *    at a time to the stack, zero beyond N, its columns becoming rows (8x8 register
 *    transposes);
 *  - K is cut into chunks of KC (the panel stays in L1); chunks after the first add to C;
 *  - the last vector of a row is stored under a mask when N is not a multiple of the width.
 * Which shapes come here is cg_small_sgemm_wins's rule, written from the bake-off of
 * benchmarks/gemm_shapes.py. Results differ from OpenBLAS's in rounding (the
 * summation order), never between runs. */
#include "cg_internal.h"

#if defined(__GNUC__) && defined(__x86_64__)
#include <immintrin.h>

#define AVX2 __attribute__((target("avx2,fma")))
#define INLINE __attribute__((always_inline)) static inline

/* op(B) = B^T [k0 : k0 + kc, j0 : j0 + nr] into Bp [kc][nrp], zero from nr up to width (the
 * vectors the tiles read: nr rounded up to the vector width, a multiple of 8): column j of
 * the panel is row j0 + j of B, eight rows at a time transposed in registers, the rows past
 * nr read as zeros. (The last rows, copied one value at a time, took a quarter of a 32x27x200
 * product: 4.85 us against 4.12 for 32x32x200.) */
#define PACK_ROW(i) ((i) < rows ? _mm256_loadu_ps(src + (i) * ldb + k) : _mm256_setzero_ps())
AVX2 static void pack_b(int64_t kc, int64_t nr, const float *B, int64_t ldb, int64_t k0, int64_t j0, float *Bp,
                        int64_t nrp, int64_t width) {
    for (int64_t j = 0; j < width; j += 8) {
        const int64_t rows = nr - j >= 8 ? 8 : nr - j > 0 ? nr - j : 0; /* of B, in this block */
        const float *src = B + (j0 + (rows ? j : 0)) * ldb + k0; /* rows 0: never read, kept inside B */
        int64_t k = 0;
        for (; k + 8 <= kc; k += 8) {
            __m256 r0 = PACK_ROW(0), r1 = PACK_ROW(1), r2 = PACK_ROW(2), r3 = PACK_ROW(3);
            __m256 r4 = PACK_ROW(4), r5 = PACK_ROW(5), r6 = PACK_ROW(6), r7 = PACK_ROW(7);
            __m256 t0 = _mm256_unpacklo_ps(r0, r1), t1 = _mm256_unpackhi_ps(r0, r1);
            __m256 t2 = _mm256_unpacklo_ps(r2, r3), t3 = _mm256_unpackhi_ps(r2, r3);
            __m256 t4 = _mm256_unpacklo_ps(r4, r5), t5 = _mm256_unpackhi_ps(r4, r5);
            __m256 t6 = _mm256_unpacklo_ps(r6, r7), t7 = _mm256_unpackhi_ps(r6, r7);
            __m256 u0 = _mm256_shuffle_ps(t0, t2, 0x44), u1 = _mm256_shuffle_ps(t0, t2, 0xEE);
            __m256 u2 = _mm256_shuffle_ps(t1, t3, 0x44), u3 = _mm256_shuffle_ps(t1, t3, 0xEE);
            __m256 u4 = _mm256_shuffle_ps(t4, t6, 0x44), u5 = _mm256_shuffle_ps(t4, t6, 0xEE);
            __m256 u6 = _mm256_shuffle_ps(t5, t7, 0x44), u7 = _mm256_shuffle_ps(t5, t7, 0xEE);
            float *dst = Bp + k * nrp + j;
            _mm256_storeu_ps(dst + 0 * nrp, _mm256_permute2f128_ps(u0, u4, 0x20));
            _mm256_storeu_ps(dst + 1 * nrp, _mm256_permute2f128_ps(u1, u5, 0x20));
            _mm256_storeu_ps(dst + 2 * nrp, _mm256_permute2f128_ps(u2, u6, 0x20));
            _mm256_storeu_ps(dst + 3 * nrp, _mm256_permute2f128_ps(u3, u7, 0x20));
            _mm256_storeu_ps(dst + 4 * nrp, _mm256_permute2f128_ps(u0, u4, 0x31));
            _mm256_storeu_ps(dst + 5 * nrp, _mm256_permute2f128_ps(u1, u5, 0x31));
            _mm256_storeu_ps(dst + 6 * nrp, _mm256_permute2f128_ps(u2, u6, 0x31));
            _mm256_storeu_ps(dst + 7 * nrp, _mm256_permute2f128_ps(u3, u7, 0x31));
        }
        for (; k < kc; k++)
            for (int64_t jj = 0; jj < 8; jj++) Bp[k * nrp + j + jj] = jj < rows ? src[jj * ldb + k] : 0.0f;
    }
}
#undef PACK_ROW

#define SG_CAT(f, isa) f##_##isa
#define SG_XCAT(f, isa) SG_CAT(f, isa)
#define SG_NAME(f) SG_XCAT(f, SG_ISA)

/* AVX2 + FMA: 8 lanes, 16 ymm registers (tiles of 6 x 16: twelve accumulators) */
#define SG_ISA avx2
#define SG_TARGET AVX2
#define VEC __m256
#define MASK __m256i
#define W 8
#define MR 6
#define MR1 12
#define KC 256 /* a packed panel of 256 x 16: 16 KiB, in L1 */
#define V_ZERO() _mm256_setzero_ps()
#define V_LOAD(p) _mm256_loadu_ps(p)
#define V_MLOAD(p, m) _mm256_maskload_ps(p, m)
#define V_STORE(p, x) _mm256_storeu_ps(p, x)
#define V_MSTORE(p, m, x) _mm256_maskstore_ps(p, m, x)
#define V_BCAST(p) _mm256_broadcast_ss(p)
#define V_SET1(x) _mm256_set1_ps(x)
#define V_FMA(a, b, c) _mm256_fmadd_ps(a, b, c)
#define V_MUL(a, b) _mm256_mul_ps(a, b)
#define V_ADD(a, b) _mm256_add_ps(a, b)
#define V_LANEMASK(rem) _mm256_cmpgt_epi32(_mm256_set1_epi32(rem), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7))
#include "small_gemm_kernel.h"

/* AVX-512F: 16 lanes, 32 zmm registers (tiles of 8 x 32: sixteen accumulators); masked
 * loads and stores are cheap here, and a masked load does not fault on the lanes it skips */
#define SG_ISA avx512
#define SG_TARGET __attribute__((target("avx512f")))
#define VEC __m512
#define MASK __mmask16
#define W 16
#define MR 8
#define MR1 8 /* one-vector tiles: sixteen rows need more row pointers than there are registers */
#define KC 128 /* a packed panel of 128 x 32: 16 KiB */
#define V_ZERO() _mm512_setzero_ps()
#define V_LOAD(p) _mm512_loadu_ps(p)
#define V_MLOAD(p, m) _mm512_maskz_loadu_ps(m, p)
#define V_STORE(p, x) _mm512_storeu_ps(p, x)
#define V_MSTORE(p, m, x) _mm512_mask_storeu_ps(p, m, x)
#define V_BCAST(p) _mm512_set1_ps(*(p))
#define V_SET1(x) _mm512_set1_ps(x)
#define V_FMA(a, b, c) _mm512_fmadd_ps(a, b, c)
#define V_MUL(a, b) _mm512_mul_ps(a, b)
#define V_ADD(a, b) _mm512_add_ps(a, b)
#define V_LANEMASK(rem) ((__mmask16)((1u << (rem)) - 1u))
#include "small_gemm_kernel.h"

/* ---- dispatch ---- */
static int isa = -1; /* CG_SMALL_GEMM_*, or -1: not chosen yet */

static int best_isa(void) {
    __builtin_cpu_init();
    if (!__builtin_cpu_supports("avx2") || !__builtin_cpu_supports("fma")) return CG_SMALL_GEMM_OFF;
    /* AVX-512 also calls pack_b, which is AVX2 code */
    return __builtin_cpu_supports("avx512f") ? CG_SMALL_GEMM_AVX512 : CG_SMALL_GEMM_AVX2;
}

/* the kernel of the instruction set in effect (not OFF) */
static void gemm(int ta, int tb, int64_t M, int64_t N, int64_t K, float alpha, const float *A, int64_t lda,
                 const float *B, int64_t ldb, const float *bias, float beta, float *C, int64_t ldc) {
    if (isa == CG_SMALL_GEMM_AVX512) gemm_avx512(ta, tb, M, N, K, alpha, A, lda, B, ldb, bias, beta, C, ldc);
    else gemm_avx2(ta, tb, M, N, K, alpha, A, lda, B, ldb, bias, beta, C, ldc);
}

int cg_small_gemm_set_isa(int want) {
    int best = best_isa();
    isa = want < 0 || want > best                                   ? best
          : want == CG_SMALL_GEMM_AVX2 || want == CG_SMALL_GEMM_AVX512 ? want
                                                                       : CG_SMALL_GEMM_OFF;
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
    if (M > 0 && N > 0) gemm(ta, tb, M, N, K, alpha, A, lda, B, ldb, bias, beta, C, ldc);
    return 1;
}

/* The shapes where the kernel beat OpenBLAS in the bake-off (`python benchmarks/gemm_shapes.py
 * --samples 11`: every float32 GEMM of the benchmark's steps, one core, median ns cgrad /
 * OpenBLAS). OpenBLAS's kernels differ by CPU, so the rule follows the instruction set.
 *
 * AVX2 (an AMD EPYC Zen 3 shared with other jobs, provisional; OpenBLAS's Haswell/Zen
 * kernels pack both operands on every call):
 *  - small products, all flags: 16x32x32 NN 794 / 1162, NT 16x16x32 392 / 717, TN 10x64x64
 *    2203 / 3622, 64x128x64 NN 19.9 / 29.2 us, NT 17.4 / 18.1, TN 19.4 / 21.4;
 *  - up to M N K = 2^21: 25x1000x75 NN 56.7 / 65.8 us; beyond, OpenBLAS's packing pays off:
 *    128x256x256 NN 336 / 306 us, 768x128x384 NN 1.34 / 1.07 ms;
 *  - but not the matrix-vector shapes, where most lanes of a 16-wide tile are idle: N = 1
 *    unless A is transposed (32x1x16 NT 589 / 408 ns; TN 18x1x4000 27 / 44 us stays ours),
 *    K = 1 or 2 over more than 64 rows (100x20x1 NN 1246 / 890 ns), B^T with N <= 10
 *    (64x10x64 NT 2185 / 1981 ns, 16x9x4096 61 / 48 us), nor a batch of 1,000 rows or more
 *    into N <= 32 columns (the PINN's 2000x20x20 NT 66 / 59 us, NN with beta 1 67 / 53 us;
 *    skinny_gemm.c takes those on AVX-512).
 *
 * AVX-512 (an Intel Xeon Sapphire Rapids, quiet; OpenBLAS's SkylakeX kernels have a
 * no-packing path for small products, which wins most NN and TN shapes):
 *  - NT with N >= 16, where OpenBLAS's small path is weak: 32x16x16 175 / 346, 16x32x32
 *    308 / 597, 64x64x128 7085 / 11075, 25x75x1000 49.4 / 64.2 us; not N <= 10 (64x10x64
 *    1160 / 1083, 16x9x4096 29.8 / 18.5 us), nor (an AMD EPYC Zen 4, quiet, 21 samples)
 *    up to 32 rows into 17-31 columns over K >= 128, where a second, part-filled vector
 *    of columns costs as much as a full one: 32x27x200 (the names MLP's logits) 4905 /
 *    4725, 32x20x200 4873 / 3285, 16x27x200 2828 / 2372, 32x17x128 2892 / 1864, 32x30x400
 *    10.3 / 8.7 us; at K = 100 or 48 rows ours again (32x27x100 2405 / 2871, 48x27x200
 *    7207 / 10360);
 *  - NN with K >= 48 short of M >= 64 and N >= 128 (16x32x48 323 / 381, 25x1000x75 43.0 /
 *    54.4 us, 32x30x200 4180 / 5464; 64x128x64 6994 / 6423 stays OpenBLAS's), and NN over
 *    100 rows or more into 16-32 columns (100x20x20 1484 / 1888); with K < 48 OpenBLAS
 *    wins (16x32x16 242 / 219, 64x128x10 2136 / 1738);
 *  - TN only over K >= 1000 into N >= 16 (20x20x2000 18.0 / 19.2 us): elsewhere OpenBLAS
 *    (10x64x64 553 / 495, 128x64x64 6161 / 5675);
 *  - NN, NT and TN above M N K = 10^6 into N >= 16 over K > 2 (not 1000 rows into N <= 32,
 *    below), where OpenBLAS's time jumps (its small path seems to end there): TN
 *    75x500x25 13.9 / 12.4 us, but 75x1000x25 28.2 / 41.7; NN 25x1000x75 28.9 / 41.4, NT
 *    25x75x1000 38.3 / 70.4 (the MNIST-1D CNN's three products);
 *  - up to M N K = 2^21 as on AVX2: larger products go to OpenBLAS, which threads.c splits;
 *  - a thousand rows or more into N <= 32 columns go to skinny_gemm.c first (blas.c). */
int cg_small_sgemm_wins(cg_trans ta, cg_trans tb, int64_t M, int64_t N, int64_t K) {
    const double mnk = (double)M * (double)N * (double)K;
    if (mnk > (double)(1 << 21)) return 0;
    if (cg_small_gemm_isa() == CG_SMALL_GEMM_AVX512) {
        /* the big ones, short of the narrow shapes no measurement covers */
        if (mnk > 1e6 && N >= 16 && K > 2 && !(ta && tb) && !(M >= 1000 && N <= 32)) return 1;
        if (tb) return !ta && N >= 16 && !(M <= 32 && N > 16 && N < 32 && K >= 128);
        if (ta) return K >= 1000 && N >= 16;
        return (K >= 48 && !(M >= 64 && N >= 128)) || (M >= 100 && N >= 16 && N <= 32);
    }
    if ((N < 2 && !ta) || (K <= 2 && M > 64) || (tb && N <= 10) || (M >= 1000 && N <= 32)) return 0;
    return 1;
}

int cg_small_sgemm(cg_trans ta, cg_trans tb, int64_t M, int64_t N, int64_t K, float alpha, const float *A,
                   int64_t lda, const float *B, int64_t ldb, float beta, float *C, int64_t ldc) {
    if (cg_small_gemm_isa() == CG_SMALL_GEMM_OFF || !cg_small_sgemm_wins(ta, tb, M, N, K)) return 0;
    gemm(ta, tb, M, N, K, alpha, A, lda, B, ldb, NULL, beta, C, ldc);
    return 1;
}

/* Above M N K = 2^21 on AVX-512, in the range measured (the GPT's products, 768 rows by
 * up to 512 columns over up to 768, all three flags; an AMD EPYC Zen 4, one core, 7
 * interleaved samples, ns cgrad / OpenBLAS): NT 768x512x128 883 / 963 us, NN 768x128x512
 * 915 / 972, TN 512x128x768 909 / 996, NT 768x384x128 659 / 727, TN 128x128x768 224 / 252:
 * 93-98% of the FMA peak against OpenBLAS's 86-89%. Larger ones (the 1024-2048 MLP) stay
 * OpenBLAS's: the driver re-reads all of A for each 32-column panel, unmeasured there. */
int cg_large_sgemm_wins(cg_trans ta, cg_trans tb, int64_t M, int64_t N, int64_t K) {
    if (cg_small_gemm_isa() != CG_SMALL_GEMM_AVX512 || (ta && tb)) return 0;
    const double mnk = (double)M * (double)N * (double)K;
    return !(mnk <= (double)(1 << 21) || M > 768 || N > 512 || K > 768 || M < 64 || N < 64 || K < 64);
}

int cg_large_sgemm(cg_trans ta, cg_trans tb, int64_t M, int64_t N, int64_t K, float alpha, const float *A,
                   int64_t lda, const float *B, int64_t ldb, float beta, float *C, int64_t ldc) {
    if (!cg_large_sgemm_wins(ta, tb, M, N, K)) return 0;
    gemm(ta, tb, M, N, K, alpha, A, lda, B, ldb, NULL, beta, C, ldc);
    return 1;
}

int cg_small_linear(int64_t rows, int64_t nin, int64_t nout, const float *X, const float *Wt, const float *bias,
                    float *Y) {
    if (cg_small_gemm_isa() == CG_SMALL_GEMM_OFF || !cg_small_sgemm_wins(CG_NO_TRANS, CG_TRANS, rows, nout, nin))
        return 0;
    gemm(0, 1, rows, nout, nin, 1.0f, X, nin, Wt, nin, bias, 0.0f, Y, nout);
    return 1;
}

#else
int cg_small_sgemm_wins(cg_trans ta, cg_trans tb, int64_t M, int64_t N, int64_t K) { return 0; }
int cg_large_sgemm_wins(cg_trans ta, cg_trans tb, int64_t M, int64_t N, int64_t K) { return 0; }
int cg_large_sgemm(cg_trans ta, cg_trans tb, int64_t M, int64_t N, int64_t K, float alpha, const float *A,
                   int64_t lda, const float *B, int64_t ldb, float beta, float *C, int64_t ldc) {
    return 0;
}
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
