/* cg_each_dtype.h: compile the per-dtype functions of the header named by CG_IMPL twice,
 * for float32 and for float64 (the one float/double idiom of the core: real functions a
 * debugger can step into, docs/architecture.md "How to add an op"). Usage:
 *     #define CG_IMPL "loss_impl.h"
 *     #include "cg_each_dtype.h"
 * In each pass the impl header sees T (the element type, which also picks cg_math.h's
 * functions), SFX (_f32 or _f64, appended to its function names), T_OTHER (the other
 * element type, for conversions) and GEMM_FN (the GEMM function type for T); FN(name)
 * appends SFX. No include guard: included once per impl header. */
#define CG_CAT_(a, b) a##b
#define CG_CAT(a, b) CG_CAT_(a, b)
#define FN(name) CG_CAT(name, SFX)
#define T float
#define SFX _f32
#define T_OTHER double
#define GEMM_FN cg_sgemm_fn
#include CG_IMPL
#undef T
#undef SFX
#undef T_OTHER
#undef GEMM_FN

#define T double
#define SFX _f64
#define T_OTHER float
#define GEMM_FN cg_dgemm_fn
#include CG_IMPL
#undef T
#undef SFX
#undef T_OTHER
#undef GEMM_FN
#undef CG_IMPL
#undef FN
#undef CG_CAT
#undef CG_CAT_
