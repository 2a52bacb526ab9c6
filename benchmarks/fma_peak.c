/* fma_peak.c: the single-core float32 FMA peak of this machine (AVX2 + FMA), the ceiling
 * no GEMM can pass: 12 independent chains of 8-wide fused multiply-adds, enough to cover
 * the FMA latency on two pipes. Prints the best GFLOP/s of five runs.
 *   cc -O2 -mavx2 -mfma benchmarks/fma_peak.c -o /tmp/fma_peak && /tmp/fma_peak
 * benchmarks/run.py builds and runs it when a C compiler is at hand. */
#include <immintrin.h>
#include <stdio.h>
#include <time.h>

static double seconds(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + 1e-9 * t.tv_nsec;
}

int main(void) {
    const long iters = 50000000;
    double best = 0, sink = 0;
    for (int run = 0; run < 5; run++) {
        __m256 a0 = _mm256_set1_ps(1), a1 = a0, a2 = a0, a3 = a0, a4 = a0, a5 = a0;
        __m256 a6 = a0, a7 = a0, a8 = a0, a9 = a0, a10 = a0, a11 = a0;
        const __m256 m = _mm256_set1_ps(0.9999999f), c = _mm256_set1_ps(1e-8f);
        double t0 = seconds();
        for (long k = 0; k < iters; k++) {
#define STEP(x) x = _mm256_fmadd_ps(x, m, c);
            STEP(a0) STEP(a1) STEP(a2) STEP(a3) STEP(a4) STEP(a5)
            STEP(a6) STEP(a7) STEP(a8) STEP(a9) STEP(a10) STEP(a11)
            /* keep the chains in registers and the loop from being folded away */
            __asm__ volatile("" : "+x"(a0), "+x"(a1), "+x"(a2), "+x"(a3), "+x"(a4), "+x"(a5),
                             "+x"(a6), "+x"(a7), "+x"(a8), "+x"(a9), "+x"(a10), "+x"(a11));
        }
        double dt = seconds() - t0;
        double gflops = iters * 12.0 * 16.0 / dt / 1e9; /* 8 lanes x (multiply + add) */
        best = gflops > best ? gflops : best;
        __m256 s = _mm256_add_ps(_mm256_add_ps(_mm256_add_ps(a0, a1), _mm256_add_ps(a2, a3)),
                                 _mm256_add_ps(_mm256_add_ps(a4, a5), _mm256_add_ps(a6, a7)));
        s = _mm256_add_ps(s, _mm256_add_ps(_mm256_add_ps(a8, a9), _mm256_add_ps(a10, a11)));
        sink += _mm256_cvtss_f32(s);
    }
    printf("%.1f\n", best);
    return sink == 12345.0; /* uses the results */
}
