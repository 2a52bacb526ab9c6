/* fastmath.h: exp, tanh and sigmoid for float32 loops, written so the compiler vectorises
 * them (no libm call, no branch: the loops over 512 elements took 14 us with tanhf, one
 * element at a time).
 *
 * Each is computed in double and rounded once to float: the double result is within
 * ~1e-12 relative of the true value, so the float result is the correctly rounded one
 * except when the true value lies within that distance of a rounding boundary (then it
 * is 1 ulp off). float64 ops keep libm.
 */
#ifndef CG_FASTMATH_H
#define CG_FASTMATH_H

#include <stdint.h>
#include <string.h>

/* exp(x) for x in [-746, 709] (the caller clamps; float arguments are always inside).
 * x = k ln2 + r with |r| <= ln2/2; exp(r) by its Taylor series to r^11 (error < 1e-14
 * relative); 2^k built in the exponent bits. k is rounded with the 1.5 * 2^52 trick so that
 * no float->int conversion is needed (AVX2 has none for 64-bit lanes). */
static inline double cg_exp_d(double x) {
    const double shift = 6755399441055744.0; /* 1.5 * 2^52 */
    double kd = x * 1.4426950408889634 + shift;
    int64_t kbits;
    memcpy(&kbits, &kd, sizeof kbits);
    kd -= shift;
    double r = x - kd * 0.6931471805599453;
    r -= kd * 2.3190468138462996e-17; /* the rest of ln 2 */
    double p = 1.0 / 39916800;
    p = p * r + 1.0 / 3628800;
    p = p * r + 1.0 / 362880;
    p = p * r + 1.0 / 40320;
    p = p * r + 1.0 / 5040;
    p = p * r + 1.0 / 720;
    p = p * r + 1.0 / 120;
    p = p * r + 1.0 / 24;
    p = p * r + 1.0 / 6;
    p = p * r + 0.5;
    p = p * r + 1.0;
    p = p * r + 1.0;
    /* k = kbits - bits(shift); scale by 2^k in two halves so k down to -1074 stays exact.
     * Unsigned arithmetic: for a NaN argument k is garbage (the caller returns the NaN) and
     * must not be undefined behaviour on the way. */
    int64_t k = (int64_t)((uint64_t)kbits - 0x4338000000000000ULL);
    int64_t k1 = k >> 1, k2 = k - k1;
    uint64_t b1 = (uint64_t)(k1 + 1023) << 52, b2 = (uint64_t)(k2 + 1023) << 52;
    double s1, s2;
    memcpy(&s1, &b1, sizeof s1);
    memcpy(&s2, &b2, sizeof s2);
    return p * s1 * s2;
}

static inline double cg_clamp_d(double x, double lo, double hi) {
    return x < lo ? lo : (x > hi ? hi : x);
}

/* exp of a float: below -104 the result is 0 in float, above 89 it is inf. */
static inline float cg_expf(float x) {
    double e = cg_exp_d(cg_clamp_d((double)x, -110.0, 100.0));
    return x != x ? x : (float)e;
}

/* tanh = (e - 1) / (e + 1), e = exp(2x); near 0, where e - 1 cancels, its Taylor series. */
static inline float cg_tanhf(float x) {
    double d = cg_clamp_d((double)x, -10.0, 10.0); /* tanh(10) rounds to 1 in float */
    double e = cg_exp_d(2 * d);
    double big = (e - 1) / (e + 1);
    double d2 = d * d;
    double small = d * (1 + d2 * (-1.0 / 3 + d2 * (2.0 / 15 + d2 * (-17.0 / 315 + d2 * (62.0 / 2835)))));
    double y = d * d < 1.0 / 4096 ? small : big;
    return x != x ? x : (float)y;
}

/* 1 / (1 + exp(-x)): in double nothing overflows for float arguments. */
static inline float cg_sigmoidf(float x) {
    double e = cg_exp_d(cg_clamp_d(-(double)x, -110.0, 110.0));
    return x != x ? x : (float)(1.0 / (1.0 + e));
}

#endif
