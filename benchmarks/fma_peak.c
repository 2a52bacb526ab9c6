/* fma_peak.c: prints the single-core float32 FMA peak of this machine in GFLOP/s (the best
 * of five runs, on the widest of AVX-512F and AVX2 + FMA the CPU has; fma_peak.h), the
 * ceiling no GEMM can pass.
 *   cc -O2 benchmarks/fma_peak.c -o /tmp/fma_peak && /tmp/fma_peak
 * benchmarks/run.py builds and runs it when a C compiler is at hand. */
#include <stdio.h>

#include "fma_peak.h"

int main(void) {
    double sink = 0;
    double peak = fma_peak_gflops(50000000, 5, &sink);
    printf("%.1f\n", peak);
    return sink == 12345.0 || peak == 0; /* uses the results; fails without AVX2 + FMA */
}
