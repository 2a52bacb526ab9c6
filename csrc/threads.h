/* threads.h: cgrad's own GEMM threads (threads.c), for blas.c. */
#ifndef CG_THREADS_H
#define CG_THREADS_H

#include "cg.h"

/* The number of threads a large GEMM may use (cg_set_num_threads); helpers start lazily. */
void cg_threads_set(int n);

/* Run C = alpha op(A) op(B) + beta C split across the threads when the policy says it pays:
 * returns 1 when it ran it (every part through gemm, a one-thread GEMM), 0 when the caller
 * should run it on its own thread (small product, one thread, or the pool busy with another
 * caller's GEMM). Row-major, as cg_sgemm_fn. */
int cg_threads_sgemm(cg_sgemm_fn gemm, cg_trans ta, cg_trans tb, int64_t M, int64_t N, int64_t K, float alpha,
                     const float *A, int64_t lda, const float *B, int64_t ldb, float beta, float *C, int64_t ldc);
int cg_threads_dgemm(cg_dgemm_fn gemm, cg_trans ta, cg_trans tb, int64_t M, int64_t N, int64_t K, double alpha,
                     const double *A, int64_t lda, const double *B, int64_t ldb, double beta, double *C,
                     int64_t ldc);

#endif
