/* shape_impl.h: the strided copy and its scatter-add for one element type, included by
 * shape.c once per dtype with T and SFX defined (STRIDED_WALK comes from shape.c). */

#define CG_CAT_(a, b) a##b
#define CG_CAT(a, b) CG_CAT_(a, b)
#define FN(name) CG_CAT(name, SFX)

static void FN(strided_fwd_)(int nd, const int64_t *shape, const int64_t *strides, int64_t base, const T *X,
                             T *Y) {
    STRIDED_WALK(nd, shape, strides, base, Y[oy + j] = X[ox]);
}

static void FN(strided_bwd_)(int nd, const int64_t *shape, const int64_t *strides, int64_t base, const T *G,
                             T *D) {
    STRIDED_WALK(nd, shape, strides, base, D[ox] += G[oy + j]);
}
