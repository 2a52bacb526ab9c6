/* shape_impl.h: the strided copy and its scatter-add for one element type, included by
 * shape.c once per dtype with T and SFX defined (STRIDED_WALK comes from shape.c). */


CG_SIMD static void FN(strided_fwd_)(int nd, const int64_t *shape, const int64_t *strides, int64_t base, const T *X,
                             T *Y) {
    STRIDED_WALK(nd, shape, strides, base, Y[oy + j] = X[ox]);
}

CG_SIMD static void FN(strided_bwd_)(int nd, const int64_t *shape, const int64_t *strides, int64_t base, const T *G,
                             T *D) {
    STRIDED_WALK(nd, shape, strides, base, D[ox] += G[oy + j]);
}

/* the same, writing: for a permutation, which reaches every element of x once */
CG_SIMD static void FN(strided_bwd_set_)(int nd, const int64_t *shape, const int64_t *strides, int64_t base,
                                         const T *G, T *D) {
    STRIDED_WALK(nd, shape, strides, base, D[ox] = G[oy + j]);
}

/* D[idx[l], :inner] += G[l, :inner]; one call per rule, not per row (rows of 1 element
 * are common: 1-D indexing) */
CG_SIMD static void FN(gather_bwd_)(int64_t n, int64_t inner, const int64_t *idx, const T *G, T *D) {
    for (int64_t l = 0; l < n; l++) {
        T *d = D + idx[l] * inner;
        const T *s = G + l * inner;
        for (int64_t i = 0; i < inner; i++) d[i] += s[i];
    }
}

/* D[l, :inner] += G[idx[l], :inner]: scatter_add's gradient for src */
CG_SIMD static void FN(gather_add_)(int64_t n, int64_t inner, const int64_t *idx, const T *G, T *D) {
    for (int64_t l = 0; l < n; l++) {
        const T *s = G + idx[l] * inner;
        T *d = D + l * inner;
        for (int64_t i = 0; i < inner; i++) d[i] += s[i];
    }
}

/* each input's slice of G, chunk by chunk: G is outer x [chunk_0, chunk_1, ...] with
 * chunk_i = inputs[i]->shape[axis] * inner */
CG_SIMD static void FN(concat_bwd_)(int n, cg_tensor *const *inputs, int axis, int64_t outer, int64_t inner,
                                    const T *G, void **dins, unsigned fresh) {
    int64_t pos = 0;
    for (int64_t o = 0; o < outer; o++)
        for (int i = 0; i < n; i++) {
            int64_t chunk = inputs[i]->shape[axis] * inner;
            if (dins[i]) {
                T *d = (T *)dins[i] + o * chunk;
                const T *s = G + pos;
                if (CONCAT_FRESH(fresh, i)) memcpy(d, s, (size_t)chunk * sizeof(T));
                else
                    for (int64_t k = 0; k < chunk; k++) d[k] += s[k];
            }
            pos += chunk;
        }
}
