/* fastmath.h: exp, tanh and sigmoid for float32 loops, written so the compiler vectorises
 * them (no libm call, no branch: the loops over 512 elements took 14 us with tanhf, one
 * element at a time).
 *
 * exp and sigmoid are computed in double and rounded once to float: the double result is within
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

/* exp(y) in float for y in [-87, 87]: y = k ln2 + r, |r| <= ln2/2, exp(r) by its Taylor
 * series to r^7 (truncation < 1e-8 relative), 2^k in the exponent bits; k is rounded with
 * the 1.5 * 2^23 trick, so the loop needs no float->int conversion. */
static inline float cg_exp_small_f(float y) {
    const float shift = 12582912.0f; /* 1.5 * 2^23 */
    float kf = y * 1.44269504f + shift;
    int32_t kbits;
    memcpy(&kbits, &kf, sizeof kbits);
    kf -= shift;
    float r = y - kf * 0.693145752f; /* ln 2 in two parts: the first is exact times k */
    r -= kf * 1.42860677e-6f;
    float p = 1.0f / 5040;
    p = p * r + 1.0f / 720;
    p = p * r + 1.0f / 120;
    p = p * r + 1.0f / 24;
    p = p * r + 1.0f / 6;
    p = p * r + 0.5f;
    p = p * r + 1.0f;
    p = p * r + 1.0f;
    int32_t k = (int32_t)((uint32_t)kbits - 0x4B400000u);
    uint32_t sbits = (uint32_t)(k + 127) << 23;
    float scale;
    memcpy(&scale, &sbits, sizeof scale);
    return p * scale;
}

/* tanh in float arithmetic (8 lanes per AVX2 instruction; the double version, 4 lanes with
 * a double division, took 3 ns an element). For |x| < 0.625 an odd polynomial fitted to
 * tanh (least squares in relative error, under 0.8 ulp); above, 1 - 2 / (exp(2|x|) + 1),
 * where no cancellation occurs; the sign is put back last. Within 1 ulp of float64 tanh
 * rounded to float (tests/test_ops.py checks a dense sweep). */
static inline float cg_tanhf(float x) {
    float a = x < 0 ? -x : x; /* -0 stays -0 here; the sign is taken from x below */
    a = a > 10.0f ? 10.0f : a; /* tanh(10) rounds to 1 in float */
    float a2 = a * a;
    float p = -0.005703992676f;
    p = p * a2 + 0.02063781768f;
    p = p * a2 - 0.05373914540f;
    p = p * a2 + 0.1333143115f;
    p = p * a2 - 0.3333328068f;
    float small = a + a * a2 * p;
    float big = 1.0f - 2.0f / (cg_exp_small_f(2.0f * a) + 1.0f);
    float y = a < 0.625f ? small : big;
    uint32_t xb, yb; /* x's sign bit onto y (tanh(-0) is -0) */
    memcpy(&xb, &x, sizeof xb);
    memcpy(&yb, &y, sizeof yb);
    yb |= xb & 0x80000000u;
    memcpy(&y, &yb, sizeof y);
    return x != x ? x : y;
}

/* 1 / (1 + exp(-x)): in double nothing overflows for float arguments. */
static inline float cg_sigmoidf(float x) {
    double e = cg_exp_d(cg_clamp_d(-(double)x, -110.0, 110.0));
    return x != x ? x : (float)(1.0 / (1.0 + e));
}

/* sigmoid for the recurrent cells' gates (rnn_impl.h), in float arithmetic: 1 / (1 + exp(-x))
 * with -x clamped to [-87, 87], where cg_exp_small_f stays finite (below x = -87 the result
 * is 1.6e-38, not the denormal; the sigmoid op keeps cg_sigmoidf, exact there). Within 2 ulp
 * of float64 elsewhere, and 0.38 ns an element against 0.66 for 0.5 + 0.5 tanh(x / 2) (a
 * GRU's forward is mostly its three activations; a C timing loop over 6,400 values). */
static inline float cg_gate_sigmoidf(float x) {
    float y = -x;
    y = y < -87.0f ? -87.0f : (y > 87.0f ? 87.0f : y);
    float s = 1.0f / (1.0f + cg_exp_small_f(y));
    return x != x ? x : s;
}

/* erf in float arithmetic (libm's erff is a call per element). Coefficients fitted here
 * (weighted least squares toward minimax, in double, rounded to float):
 *   |x| < 0.84:        erf(x) = x + x g(x^2), g of degree 5 (relative error of erf)
 *   0.84 <= |x| < 3.92: erfc(x) = exp(-x^2) h(1/x), h of degree 8 (relative error of erfc)
 *   3.92 <= |x| <= 9.3: erfc(x) = exp(-x^2) q(1/x^2) / x, q of degree 4; 0 beyond.
 * Measured over dense sweeps (tests/test_ops.py): erf within 2 ulp of float64 erf rounded
 * to float, erfc (hence 1 + erf(x) for x < 0) within 1e-6 relative. */
static inline float cg_erf_small_f(float a) {
    float u = a * a;
    float g = -6.341382395e-04f;
    g = g * u + 5.055217538e-03f;
    g = g * u - 2.680477686e-02f;
    g = g * u + 1.128276587e-01f;
    g = g * u - 3.761257529e-01f;
    g = g * u + 1.283791661e-01f;
    return a + a * g;
}
/* erfc(a) for a >= 0.84, one exp for both pieces */
static inline float cg_erfc_big_f(float a) {
    float c = a > 9.3f ? 9.3f : a;
    float v = 1.0f / c;
    float h = 1.118304092e-03f;
    h = h * v - 2.400884777e-02f;
    h = h * v + 1.349228770e-01f;
    h = h * v - 3.722357154e-01f;
    h = h * v + 5.893903971e-01f;
    h = h * v - 5.121695399e-01f;
    h = h * v + 5.271403491e-02f;
    h = h * v + 5.574864149e-01f;
    h = h * v + 3.656341287e-04f;
    float w = v * v;
    float q = 1.800458074e+00f;
    q = q * w - 9.442293048e-01f;
    q = q * w + 4.196721315e-01f;
    q = q * w - 2.820445001e-01f;
    q = q * w + 5.641893148e-01f;
    float e = cg_exp_small_f(-c * c) * (c < 3.92f ? h : q * v);
    return a > 9.3f ? 0.0f : e;
}
static inline float cg_erff(float x) {
    float a = x < 0 ? -x : x;
    float small = cg_erf_small_f(a < 0.84f ? a : 0.84f);
    float big = 1.0f - cg_erfc_big_f(a < 0.84f ? 0.84f : a);
    float r = a < 0.84f ? small : big;
    r = x < 0 ? -r : r;
    return x != x ? x : r;
}
/* exp(y) for y <= 0, 0 below -87 (where 2^k leaves the normal range) */
static inline float cg_exp_neg_f(float y) {
    float r = cg_exp_small_f(y < -87.0f ? -87.0f : y);
    return y < -87.0f ? 0.0f : r;
}

/* 1 + erf(x) for GELU's x Phi(x): erfc(|x|) = t exp(P(t) - x^2), t = 1 / (1 + |x| / 2), P of
 * degree 9 fitted here for erfc's relative error over [0, 9.3] (one piece, one exp, one
 * division: about half the instructions of erf's pieces). x < 0 takes it as it is, so the
 * value keeps its relative accuracy where 1 + erf would cancel; x >= 0 takes 2 - it.
 * GELU then stays within 2e-6 relative of float64 for |x| < 4 and 2e-5 beyond, where the
 * exponent's own rounding dominates (tests/test_ops.py); NaN propagates. */
static inline float cg_erf1pf(float x) {
    float a = x < 0 ? -x : x;
    float t = 1.0f / (1.0f + 0.5f * a);
    float p = 1.306264997e-01f;
    p = p * t - 6.036853194e-01f;
    p = p * t + 9.770841599e-01f;
    p = p * t - 4.598049223e-01f;
    p = p * t - 2.735122740e-01f;
    p = p * t + 1.026208401e-01f;
    p = p * t + 5.968176411e-04f;
    p = p * t + 3.936554492e-01f;
    p = p * t + 9.978277087e-01f;
    p = p * t - 1.265408874e+00f;
    float e = t * cg_exp_neg_f(p - a * a);
    return x < 0 ? e : 2.0f - e;
}

#endif
