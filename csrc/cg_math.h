/* cg_math.h: the math functions of the loops, one table for both dtypes.
 *
 * Each line names the float32 and the float64 function together, so neither can be left
 * out. A file that compiles a loop for element type T defines T as float or double
 * before expanding them: CG_MATH picks the function by the argument's exact type with
 * _Generic and no default, so an argument of the other type (a double literal in a float32
 * expression) is a compile error instead of a silent round trip through double.
 * float32 exp, tanh, sigmoid and erf are the vectorisable ones of fastmath.h (EXP_NEG: exp
 * of an argument <= 0, the cheaper float path).
 */
#ifndef CG_MATH_H
#define CG_MATH_H

#include "fastmath.h"

#include <math.h>

/* Constants as literals: M_PI and friends are not ISO C. */
#define CG_LN2 0.69314718055994530942
#define CG_LN10 2.30258509299404568402
#define CG_SQRT1_2 0.70710678118654752440      /* 1 / sqrt(2) */
#define CG_2_SQRTPI 1.12837916709551257390     /* 2 / sqrt(pi) */
#define CG_SQRT_2_PI 0.79788456080286535588    /* sqrt(2 / pi) */
#define CG_INV_SQRT_2PI 0.39894228040143267794 /* 1 / sqrt(2 pi) */
#define CG_SELU_ALPHA 1.6732632423543772848170429916717
#define CG_SELU_SCALE 1.0507009873554804934193349852946

/* 1 + erf(x); erfc(-x) below 0, where 1 + erf cancels */
static inline double cg_erf1p_d(double x) { return x < 0 ? erfc(-x) : 1.0 + erf(x); }
static inline double cg_exp_neg_d(double x) { return exp(x); }

static inline double cg_sigmoid_d(double x) {
    if (x >= 0) return 1.0 / (1.0 + exp(-x));
    double e = exp(x);
    return e / (1.0 + e);
}
/* the recurrent gates' sigmoid in float64: libm's tanh, no branch on the sign */
static inline double cg_gate_sigmoid_d(double x) { return 0.5 + 0.5 * tanh(0.5 * x); }
/* log(1 + exp(x)) without overflow */
static inline float cg_softplusf(float x) { return x > 0 ? x + log1pf(cg_expf(-x)) : log1pf(cg_expf(x)); }
static inline double cg_softplus_d(double x) { return x > 0 ? x + log1p(exp(-x)) : log1p(exp(x)); }

/* The includer defines T (float or double) before expanding these. */
#define CG_MATH_SEL_float(f32, f64) f32
#define CG_MATH_SEL_double(f32, f64) f64
#define CG_MATH_PICK_(t, f32, f64) CG_MATH_SEL_##t(f32, f64)
#define CG_MATH_PICK(t, f32, f64) CG_MATH_PICK_(t, f32, f64)
#define CG_MATH(f32, f64, x) _Generic((x), T: CG_MATH_PICK(T, f32, f64))

/*        name(args)     float32         float64 */
#define EXP(x)      CG_MATH(cg_expf,      exp,           x)(x)
#define EXPM1(x)    CG_MATH(expm1f,       expm1,         x)(x)
#define LOG(x)      CG_MATH(logf,         log,           x)(x)
#define LOG1P(x)    CG_MATH(log1pf,       log1p,         x)(x)
#define LOG2(x)     CG_MATH(log2f,        log2,          x)(x)
#define LOG10(x)    CG_MATH(log10f,       log10,         x)(x)
#define SQRT(x)     CG_MATH(sqrtf,        sqrt,          x)(x)
#define FABS(x)     CG_MATH(fabsf,        fabs,          x)(x)
#define POW(x, y)   CG_MATH(powf,         pow,           x)(x, y)
#define SIN(x)      CG_MATH(sinf,         sin,           x)(x)
#define COS(x)      CG_MATH(cosf,         cos,           x)(x)
#define TAN(x)      CG_MATH(tanf,         tan,           x)(x)
#define ATAN(x)     CG_MATH(atanf,        atan,          x)(x)
#define ATAN2(y, x) CG_MATH(atan2f,       atan2,         y)(y, x)
#define SINH(x)     CG_MATH(sinhf,        sinh,          x)(x)
#define COSH(x)     CG_MATH(coshf,        cosh,          x)(x)
#define TANH(x)     CG_MATH(cg_tanhf,     tanh,          x)(x)
#define ERF(x)      CG_MATH(cg_erff,      erf,           x)(x)
#define ERF1P(x)    CG_MATH(cg_erf1pf,    cg_erf1p_d,    x)(x)
#define EXP_NEG(x)  CG_MATH(cg_exp_neg_f, cg_exp_neg_d,  x)(x)
#define FLOOR(x)    CG_MATH(floorf,       floor,         x)(x)
#define CEIL(x)     CG_MATH(ceilf,        ceil,          x)(x)
#define RINT(x)     CG_MATH(rintf,        rint,          x)(x)
#define TRUNC(x)    CG_MATH(truncf,       trunc,         x)(x)
#define SIGMOID(x)  CG_MATH(cg_sigmoidf,  cg_sigmoid_d,  x)(x)
#define GATE_SIGMOID(x) CG_MATH(cg_gate_sigmoidf, cg_gate_sigmoid_d, x)(x)
#define SOFTPLUS(x) CG_MATH(cg_softplusf, cg_softplus_d, x)(x)
/* GELU (exact): x Phi(x), and its derivative Phi(x) + x phi(x) */
#define GELU_Y(x) ((T)0.5 * (x) * ERF1P((x) * (T)CG_SQRT1_2))
#define GELU_DY(x) \
    ((T)0.5 * ERF1P((x) * (T)CG_SQRT1_2) + (x) * (T)CG_INV_SQRT_2PI * EXP_NEG((T)-0.5 * (x) * (x)))

#endif
