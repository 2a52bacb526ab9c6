/* elementwise_impl.h: the elementwise loops for one element type, included by
 * elementwise.c once per dtype with T and SFX defined (T also picks cg_math.h's
 * functions). Each CG_UNARY and CG_BINARY line of ops.def becomes a forward loop and a
 * backward loop. */


/* ---- unary: y[i] = f(x[i]);  dx[i] += g[i] * f'(x[i], y[i]) ---- */
#define CG_UNARY(NAME, name, reads, fwd, deriv)                                                 \
    CG_SIMD static void FN(name##_fwd_)(int64_t n, const T *restrict xs, T *restrict ys, double p0,    \
                                double p1) {                                                   \
        (void)p0; (void)p1;                                                                    \
        for (int64_t i = 0; i < n; i++) {                                                      \
            T x = xs[i];                                                                       \
            ys[i] = (fwd);                                                                     \
        }                                                                                      \
    }                                                                                          \
    CG_SIMD static void FN(name##_bwd_)(int64_t n, const T *restrict xs, const T *restrict ys,         \
                                const T *restrict g, T *restrict dx, double p0, double p1,     \
                                int assign) {                                                  \
        (void)p0; (void)p1; (void)xs; (void)ys;                                                \
        for (int64_t i = 0; i < n; i++) { /* assign: dx is uninitialised (Note [First write]) */ \
            T x = xs[i], y = ys[i];                                                            \
            (void)x; (void)y;                                                                  \
            dx[i] = (assign ? (T)0 : dx[i]) + g[i] * (deriv);                                  \
        }                                                                                      \
    }
#include "ops.def"

/* GELU's forward for a node whose gradient will be needed: y and dy/dx in one pass, so that
 * the backward multiplies instead of computing erf and exp again (elementwise.c) */
CG_SIMD static void FN(gelu_keep_dy_)(int64_t n, const T *restrict xs, T *restrict ys, T *restrict dys) {
    for (int64_t i = 0; i < n; i++) {
        T x = xs[i];
        ys[i] = GELU_Y(x);
        dys[i] = GELU_DY(x);
    }
}

/* dx = g dy/dx from a kept derivative; assign: dx is uninitialised (Note [First write]) */
CG_SIMD static void FN(times_kept_dy_)(int64_t n, const T *restrict dys, const T *restrict g, T *restrict dx,
                                       int assign) {
    if (assign)
        for (int64_t i = 0; i < n; i++) dx[i] = g[i] * dys[i];
    else
        for (int64_t i = 0; i < n; i++) dx[i] += g[i] * dys[i];
}

/* ---- binary with broadcasting (see cg_bcast in cg_internal.h) ----
 * The inner loop is specialised on whether each operand advances (stride 1) or is
 * broadcast along it (stride 0), so the common cases vectorise. */
#define CG_INNER4(sa, sb, ...)                                                                  \
    if (sa && sb) { for (int64_t j = 0; j < n; j++) { const int64_t ja = j, jb = j; __VA_ARGS__; } }  \
    else if (sa)  { for (int64_t j = 0; j < n; j++) { const int64_t ja = j, jb = 0; __VA_ARGS__; } }  \
    else if (sb)  { for (int64_t j = 0; j < n; j++) { const int64_t ja = 0, jb = j; __VA_ARGS__; } }  \
    else          { for (int64_t j = 0; j < n; j++) { const int64_t ja = 0, jb = 0; __VA_ARGS__; } }

#define CG_BINARY(NAME, name, reads, fwd, da_expr, db_expr)                                     \
    CG_SIMD static void FN(name##_fwd_)(const cg_bcast *bc, const T *restrict A, const T *restrict B,  \
                                T *restrict Y) {                                               \
        CG_BCAST_FOR(bc, {                                                                     \
            const T *pa = A + oa, *pb = B + ob;                                                \
            T *py = Y + oy;                                                                    \
            CG_INNER4(sa, sb, {                                                                \
                T a = pa[ja], b = pb[jb];                                                      \
                py[j] = (fwd);                                                                 \
            })                                                                                 \
        });                                                                                    \
    }                                                                                          \
    /* fa (fb): dA (dB) is uninitialised and its operand not broadcast, so it is written    \
     * (Note [First write]); the same-shape case is one pass that writes both */             \
    CG_SIMD static void FN(name##_bwd_)(const cg_bcast *bc, const T *A, const T *B, const T *Y,        \
                                const T *G, T *dA, T *dB, int fa, int fb) {                    \
        if (dA && dB && dA != dB && bc->nd == 1 && bc->sa[0] == 1 && bc->sb[0] == 1) {         \
            const T *restrict pa = A, *restrict pb = B, *restrict py = Y, *restrict pg = G;    \
            T *restrict pda = dA, *restrict pdb = dB;                                          \
            for (int64_t j = 0; j < bc->shape[0]; j++) {                                       \
                T a = pa[j], b = pb[j], y = py[j];                                             \
                (void)a; (void)b; (void)y;                                                     \
                pda[j] = (fa ? (T)0 : pda[j]) + pg[j] * (da_expr);                             \
                pdb[j] = (fb ? (T)0 : pdb[j]) + pg[j] * (db_expr);                             \
            }                                                                                  \
            return;                                                                            \
        }                                                                                      \
        CG_BCAST_FOR(bc, {                                                                     \
            const T *pa = A + oa, *pb = B + ob, *py = Y + oy, *pg = G + oy;                    \
            if (dA) {                                                                          \
                T *pda = dA + oa;                                                              \
                CG_INNER4(sa, sb, {                                                            \
                    T a = pa[ja], b = pb[jb], y = py[j];                                       \
                    (void)a; (void)b; (void)y;                                                 \
                    pda[ja] = (fa ? (T)0 : pda[ja]) + pg[j] * (da_expr);                       \
                })                                                                             \
            }                                                                                  \
            if (dB) {                                                                          \
                T *pdb = dB + ob;                                                              \
                CG_INNER4(sa, sb, {                                                            \
                    T a = pa[ja], b = pb[jb], y = py[j];                                       \
                    (void)a; (void)b; (void)y;                                                 \
                    pdb[jb] = (fb ? (T)0 : pdb[jb]) + pg[j] * (db_expr);                       \
                })                                                                             \
            }                                                                                  \
        });                                                                                    \
    }
#include "ops.def"

/* ---- where(mask, a, b): mask is laid out like the output ---- */
CG_SIMD static void FN(where_fwd_)(const cg_bcast *bc, const uint8_t *M, const T *A, const T *B, T *Y) {
    CG_BCAST_FOR(bc, {
        const T *pa = A + oa, *pb = B + ob;
        const uint8_t *pm = M + oy;
        T *py = Y + oy;
        CG_INNER4(sa, sb, { py[j] = pm[j] ? pa[ja] : pb[jb]; })
    });
}

CG_SIMD static void FN(where_bwd_)(const cg_bcast *bc, const uint8_t *M, const T *G, T *dA, T *dB) {
    CG_BCAST_FOR(bc, {
        const uint8_t *pm = M + oy;
        const T *pg = G + oy;
        if (dA) {
            T *pda = dA + oa;
            CG_INNER4(sa, sb, { (void)jb; if (pm[j]) pda[ja] += pg[j]; })
        }
        if (dB) {
            T *pdb = dB + ob;
            CG_INNER4(sa, sb, { (void)ja; if (!pm[j]) pdb[jb] += pg[j]; })
        }
    });
}

#undef CG_INNER4
