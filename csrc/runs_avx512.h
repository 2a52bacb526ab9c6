/* runs_avx512.h: copying and adding short float32 runs with AVX-512 masks, for the data
 * movement of conv.c (im2col and col2im runs) and shape.c (concatenation chunks). Include
 * it under `#if defined(__GNUC__) && defined(__x86_64__)`, and call it only where
 * cg_skinny_isa() says AVX-512. */
#ifndef CG_RUNS_AVX512_H
#define CG_RUNS_AVX512_H

#include <immintrin.h>
#define AVX512 __attribute__((target("avx512f,avx512vl")))

/* lanes l of [0, 16) with lo <= l < hi */
AVX512 static inline __mmask16 lanes(int64_t lo, int64_t hi) {
    lo = lo < 0 ? 0 : lo;
    hi = hi > 16 ? 16 : hi;
    return hi <= lo ? 0 : (__mmask16)(((1u << (hi - lo)) - 1) << lo);
}

AVX512 static inline void copy_run(float *d, const float *s, int64_t n) {
    if (n <= 8) { /* as add_run */
        __mmask8 m = (__mmask8)((1u << n) - 1);
        if (n <= 4) _mm_mask_storeu_ps(d, m, _mm_maskz_loadu_ps(m, s));
        else _mm256_mask_storeu_ps(d, m, _mm256_maskz_loadu_ps(m, s));
        return;
    }
    int64_t k = 0;
    for (; k + 16 <= n; k += 16) _mm512_storeu_ps(d + k, _mm512_loadu_ps(s + k));
    if (k < n) {
        __mmask16 m = lanes(0, n - k);
        _mm512_mask_storeu_ps(d + k, m, _mm512_maskz_loadu_ps(m, s + k));
    }
}

/* d[:n] += s[:n]. A run of at most 8 uses a register of its width: a 16-lane masked load
 * that overlaps the masked store of the run before it (the next row of a small 2-D plane,
 * 24 bytes on) waits for that store to retire, masked-off lanes or not (the digits CNN's
 * col2im ran at 5 ns a run of 4). */
AVX512 static inline void add_run(float *d, const float *s, int64_t n) {
    if (n <= 4) {
        __mmask8 m = (__mmask8)((1u << n) - 1);
        _mm_mask_storeu_ps(d, m, _mm_add_ps(_mm_maskz_loadu_ps(m, d), _mm_maskz_loadu_ps(m, s)));
        return;
    }
    if (n <= 8) {
        __mmask8 m = (__mmask8)((1u << n) - 1);
        _mm256_mask_storeu_ps(d, m, _mm256_add_ps(_mm256_maskz_loadu_ps(m, d), _mm256_maskz_loadu_ps(m, s)));
        return;
    }
    int64_t k = 0;
    for (; k + 16 <= n; k += 16) _mm512_storeu_ps(d + k, _mm512_add_ps(_mm512_loadu_ps(d + k), _mm512_loadu_ps(s + k)));
    if (k < n) {
        __mmask16 m = lanes(0, n - k);
        _mm512_mask_storeu_ps(d + k, m, _mm512_add_ps(_mm512_maskz_loadu_ps(m, d + k), _mm512_maskz_loadu_ps(m, s + k)));
    }
}

#endif
