/* tensor_impl.h: the buffer loops of tensor.c for one element type, included once per
 * dtype with T, SFX and T_OTHER (the other dtype's type, for conversions) defined. */


/* dst += src. Adds only, so the AVX2 clone gives the same values as the baseline. */
CG_SIMD static void FN(add_into_)(int64_t n, T *dst, const T *src) {
    for (int64_t i = 0; i < n; i++) dst[i] += src[i];
}

static void FN(fill_)(int64_t n, T *dst, T value) {
    for (int64_t i = 0; i < n; i++) dst[i] = value;
}

/* Not cloned: the AVX2 clone would fuse a * s + d (FMA) and change the last bit. */
static void FN(axpy_)(int64_t n, T *dst, T alpha, const T *src) {
    for (int64_t i = 0; i < n; i++) dst[i] += alpha * src[i];
}

static void FN(convert_)(int64_t n, T *dst, const T_OTHER *src) {
    for (int64_t i = 0; i < n; i++) dst[i] = (T)src[i];
}

/* dst += src from the other dtype (the cast op's backward) */
static void FN(add_converted_)(int64_t n, T *dst, const T_OTHER *src) {
    for (int64_t i = 0; i < n; i++) dst[i] += (T)src[i];
}
