/* fma_peak.h: the single-core float32 FMA peak, the ceiling no GEMM can pass: twelve
 * independent chains of fused multiply-adds (enough to cover the FMA latency on two pipes),
 * 8-wide on AVX2 + FMA and 16-wide on AVX-512F. fma_peak_gflops() measures the widest the
 * CPU has: the best of `runs` runs of `iters` rounds, in GFLOP/s (0 without AVX2 + FMA).
 * Included by fma_peak.c and gemm_bakeoff.c. */
#include <immintrin.h>
#include <time.h>

static double fma_peak_now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + 1e-9 * t.tv_nsec;
}

/* One chain step per accumulator; the asm keeps the chains in registers and the loop from
 * being folded away; the sum of the lanes is returned through *sink so the results count. */
#define FMA_PEAK_BODY(VEC, SET1, FMA, ADD, LANES)                                                             \
    VEC a0 = SET1(1), a1 = a0, a2 = a0, a3 = a0, a4 = a0, a5 = a0, a6 = a0, a7 = a0, a8 = a0, a9 = a0,         \
        a10 = a0, a11 = a0;                                                                                   \
    const VEC m = SET1(0.9999999f), c = SET1(1e-8f);                                                          \
    double t0 = fma_peak_now();                                                                               \
    for (long k = 0; k < iters; k++) {                                                                        \
        a0 = FMA(a0, m, c), a1 = FMA(a1, m, c), a2 = FMA(a2, m, c), a3 = FMA(a3, m, c);                       \
        a4 = FMA(a4, m, c), a5 = FMA(a5, m, c), a6 = FMA(a6, m, c), a7 = FMA(a7, m, c);                       \
        a8 = FMA(a8, m, c), a9 = FMA(a9, m, c), a10 = FMA(a10, m, c), a11 = FMA(a11, m, c);                   \
        __asm__ volatile("" : "+v"(a0), "+v"(a1), "+v"(a2), "+v"(a3), "+v"(a4), "+v"(a5), "+v"(a6), "+v"(a7), \
                         "+v"(a8), "+v"(a9), "+v"(a10), "+v"(a11));                                           \
    }                                                                                                         \
    double dt = fma_peak_now() - t0;                                                                          \
    VEC s = ADD(ADD(ADD(a0, a1), ADD(a2, a3)), ADD(ADD(a4, a5), ADD(a6, a7)));                                \
    s = ADD(s, ADD(ADD(a8, a9), ADD(a10, a11)));                                                              \
    float lanes[LANES];                                                                                       \
    __builtin_memcpy(lanes, &s, sizeof lanes);                                                                \
    *sink += lanes[0];                                                                                        \
    return iters * 12.0 * 2.0 * LANES / dt / 1e9; /* LANES x (multiply + add) per FMA */

__attribute__((target("avx2,fma"))) static double fma_peak_avx2(long iters, double *sink) {
    FMA_PEAK_BODY(__m256, _mm256_set1_ps, _mm256_fmadd_ps, _mm256_add_ps, 8)
}

__attribute__((target("avx512f"))) static double fma_peak_avx512(long iters, double *sink) {
    FMA_PEAK_BODY(__m512, _mm512_set1_ps, _mm512_fmadd_ps, _mm512_add_ps, 16)
}

/* The best of `runs` runs of the widest instruction set the CPU has. */
static double fma_peak_gflops(long iters, int runs, double *sink) {
    __builtin_cpu_init();
    int wide = __builtin_cpu_supports("avx512f");
    if (!wide && !(__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma"))) return 0;
    double best = 0;
    for (int r = 0; r < runs; r++) {
        double g = wide ? fma_peak_avx512(iters, sink) : fma_peak_avx2(iters, sink);
        best = g > best ? g : best;
    }
    return best;
}
