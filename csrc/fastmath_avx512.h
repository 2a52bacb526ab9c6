/* fastmath_avx512.h: fastmath.h's float32 functions on 16 lanes of AVX-512, for the loops
 * whose shape defeats the compiler's vectoriser (short rows with a reduction before and
 * after, as attention's softmax rows). The same algorithms and constants as the scalar
 * ones, so a lane agrees with the scalar function to the rounding of the FMAs. Include it
 * under `#if defined(__GNUC__) && defined(__x86_64__)`, and call it only where the CPU has
 * AVX-512 (cg_skinny_isa()). The target attribute and the lane masks are runs_avx512.h's. */
#ifndef CG_FASTMATH_AVX512_H
#define CG_FASTMATH_AVX512_H

#include "runs_avx512.h"

/* cg_exp_small_f on 16 lanes: exp(y) for y in [-87, 87] */
AVX512 static inline __m512 cg_exp_small_v16(__m512 y) {
    const __m512 shift = _mm512_set1_ps(12582912.0f); /* 1.5 * 2^23 */
    __m512 kf = _mm512_fmadd_ps(y, _mm512_set1_ps(1.44269504f), shift);
    __m512i kbits = _mm512_castps_si512(kf);
    kf = _mm512_sub_ps(kf, shift);
    __m512 r = _mm512_fnmadd_ps(kf, _mm512_set1_ps(0.693145752f), y);
    r = _mm512_fnmadd_ps(kf, _mm512_set1_ps(1.42860677e-6f), r);
    __m512 p = _mm512_set1_ps(1.0f / 5040);
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f / 720));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f / 120));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f / 24));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f / 6));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(0.5f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f));
    __m512i k = _mm512_sub_epi32(kbits, _mm512_set1_epi32(0x4B400000));
    __m512i sbits = _mm512_slli_epi32(_mm512_add_epi32(k, _mm512_set1_epi32(127)), 23);
    return _mm512_mul_ps(p, _mm512_castsi512_ps(sbits));
}

/* exp(t) for t <= 0 (and -inf): 0 below -87, NaN stays NaN (MAXPS returns its second
 * operand when either is NaN, so the clamp keeps a NaN t, and the compare is false for it) */
AVX512 static inline __m512 cg_exp_neg_v16(__m512 t) {
    const __m512 lo = _mm512_set1_ps(-87.0f);
    __m512 e = cg_exp_small_v16(_mm512_max_ps(lo, t));
    return _mm512_mask_mov_ps(e, _mm512_cmp_ps_mask(t, lo, _CMP_LT_OQ), _mm512_setzero_ps());
}

#endif
