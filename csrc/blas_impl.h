/* blas_impl.h: the built-in GEMM for one element type, included by blas.c once per dtype
 * with T and SFX defined. Row-major, i-p-j loop order so the inner loop streams rows of B
 * and C. */


static void FN(builtin_gemm_)(cg_trans ta, cg_trans tb, int64_t M, int64_t N, int64_t K, T alpha, const T *A,
                              int64_t lda, const T *B, int64_t ldb, T beta, T *C, int64_t ldc) {
    for (int64_t i = 0; i < M; i++) {
        T *c = C + i * ldc;
        if (beta == 0)
            for (int64_t j = 0; j < N; j++) c[j] = 0;
        else if (beta != 1)
            for (int64_t j = 0; j < N; j++) c[j] *= beta;
        if (!tb) {
            for (int64_t p = 0; p < K; p++) {
                T a = alpha * (ta ? A[p * lda + i] : A[i * lda + p]);
                const T *b = B + p * ldb;
                for (int64_t j = 0; j < N; j++) c[j] += a * b[j];
            }
        } else {
            for (int64_t j = 0; j < N; j++) {
                const T *b = B + j * ldb;
                T s = 0;
                for (int64_t p = 0; p < K; p++) s += (ta ? A[p * lda + i] : A[i * lda + p]) * b[p];
                c[j] += alpha * s;
            }
        }
    }
}
