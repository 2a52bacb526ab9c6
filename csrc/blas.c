/* blas.c: the GEMM provider table. OpenBLAS (the scipy-openblas32 build, whose symbols are
 * prefixed scipy_) when the build found it, and a small portable kernel that is always there:
 * the fallback, and the reference the tests compare OpenBLAS against. */
#include "cg_internal.h"

#include <stdio.h>

/* ---- the GEMM shape trace (cg.h): one branch per call when off ---- */
#define TRACE_MAX 1024
static int trace_on;
static int trace_n;
static int64_t trace_dropped;
static cg_gemm_shape trace[TRACE_MAX];

void cg_gemm_trace(int on) {
    if (on) {
        trace_n = 0;
        trace_dropped = 0;
    }
    trace_on = on;
}
int cg_gemm_trace_count(void) { return trace_n; }
const cg_gemm_shape *cg_gemm_trace_at(int i) { return i >= 0 && i < trace_n ? &trace[i] : NULL; }
int64_t cg_gemm_trace_dropped(void) { return trace_dropped; }

static void trace_note(char kind, cg_trans ta, cg_trans tb, int64_t M, int64_t N, int64_t K, int64_t lda,
                       int64_t ldb, int64_t ldc, double beta) {
    cg_gemm_shape key = {kind, (uint8_t)ta, (uint8_t)tb, M, N, K, lda, ldb, ldc, beta, 0};
    for (int i = trace_n - 1; i >= 0; i--) {
        cg_gemm_shape *t = &trace[i];
        if (t->kind == kind && t->ta == key.ta && t->tb == key.tb && t->M == M && t->N == N && t->K == K &&
            t->lda == lda && t->ldb == ldb && t->ldc == ldc && t->beta == beta) {
            t->count++;
            return;
        }
    }
    if (trace_n == TRACE_MAX) {
        trace_dropped++;
        return;
    }
    key.count = 1;
    trace[trace_n++] = key;
}
#define TRACE(...)                                                  \
    do {                                                            \
        if (__builtin_expect(trace_on, 0)) trace_note(__VA_ARGS__); \
    } while (0)

/* ---- built-in kernel (blas_impl.h) ---- */
#define CG_IMPL "blas_impl.h"
#include "cg_each_dtype.h"

static void builtin_sgemm(cg_trans ta, cg_trans tb, int64_t M, int64_t N, int64_t K, float alpha, const float *A,
                          int64_t lda, const float *B, int64_t ldb, float beta, float *C, int64_t ldc) {
    TRACE('s', ta, tb, M, N, K, lda, ldb, ldc, beta);
    builtin_gemm__f32(ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
}

static void builtin_dgemm(cg_trans ta, cg_trans tb, int64_t M, int64_t N, int64_t K, double alpha, const double *A,
                          int64_t lda, const double *B, int64_t ldb, double beta, double *C, int64_t ldc) {
    TRACE('d', ta, tb, M, N, K, lda, ldb, ldc, beta);
    builtin_gemm__f64(ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
}

static void builtin_threads(int n) { (void)n; }
static const char *builtin_config(void) { return "cgrad built-in GEMM (portable C, 1 thread)"; }

static int num_threads = 1;

#ifdef CG_HAVE_OPENBLAS
#include <cblas.h>

/* Thread policy: a GEMM uses the cg_set_num_threads() threads only when M*N*K is at least
 * CG_THREADED_GEMM_MNK (about 8 MFLOP, ~120 us on one core); smaller ones, and every other
 * kernel, run on the calling thread. Measured as the cgrad/cgrad@1 column of
 * `python -m benchmarks --threads 2` (2 threads against the same step switched to 1, in one
 * process), rebuilt with each cut-off, medians of 6-11 launches: waking the helper for the
 * 0.5M GEMMs of the 64-128-64-10 step made it up to 1.6x slower (OpenBLAS's own cut-off,
 * M*N*K > 262,144), and the digits fit's 1.6M ones 1.15x slower, while threading the 8.4M
 * GEMMs of the 784-256-256-10 step as well as its 25.7M ones took it from 0.83x to 0.63x of
 * one thread (cut-off 2^24 before). Switching is a store in OpenBLAS once its threads exist. */
#define CG_THREADED_GEMM_MNK (1 << 22)
static int openblas_threads_now = 1;

static void choose_threads(int64_t M, int64_t N, int64_t K) {
    int want = (double)M * (double)N * (double)K >= CG_THREADED_GEMM_MNK ? num_threads : 1;
    if (want != openblas_threads_now) {
        scipy_openblas_set_num_threads(want);
        openblas_threads_now = want;
    }
}

static void openblas_sgemm(cg_trans ta, cg_trans tb, int64_t M, int64_t N, int64_t K, float alpha,
                           const float *A, int64_t lda, const float *B, int64_t ldb, float beta,
                           float *C, int64_t ldc) {
    TRACE('s', ta, tb, M, N, K, lda, ldb, ldc, beta);
    if (M == 0 || N == 0) return;
    if (K == 0) { /* C = beta C: handled here rather than trusting every BLAS with K = 0 */
        builtin_gemm__f32(ta, tb, M, N, 0, alpha, A, lda, B, ldb, beta, C, ldc);
        return;
    }
    if (cg_skinny_sgemm(ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc)) return;
    if (cg_small_sgemm(ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc)) return;
    choose_threads(M, N, K);
    scipy_cblas_sgemm(CblasRowMajor, ta ? CblasTrans : CblasNoTrans, tb ? CblasTrans : CblasNoTrans,
                      (blasint)M, (blasint)N, (blasint)K, alpha, A, (blasint)lda, B, (blasint)ldb,
                      beta, C, (blasint)ldc);
}

static void openblas_dgemm(cg_trans ta, cg_trans tb, int64_t M, int64_t N, int64_t K, double alpha,
                           const double *A, int64_t lda, const double *B, int64_t ldb, double beta,
                           double *C, int64_t ldc) {
    TRACE('d', ta, tb, M, N, K, lda, ldb, ldc, beta);
    if (M == 0 || N == 0) return;
    if (K == 0) {
        builtin_gemm__f64(ta, tb, M, N, 0, alpha, A, lda, B, ldb, beta, C, ldc);
        return;
    }
    choose_threads(M, N, K);
    scipy_cblas_dgemm(CblasRowMajor, ta ? CblasTrans : CblasNoTrans, tb ? CblasTrans : CblasNoTrans,
                      (blasint)M, (blasint)N, (blasint)K, alpha, A, (blasint)lda, B, (blasint)ldb,
                      beta, C, (blasint)ldc);
}

/* Y = X W^T + bias in one pass where a kernel of ours takes the shape; 0: sgemm then a bias pass */
static int openblas_linear(int64_t rows, int64_t nin, int64_t nout, const float *X, const float *W,
                           const float *bias, float *Y) {
    if (!cg_skinny_linear(rows, nin, nout, X, W, bias, Y) && !cg_small_linear(rows, nin, nout, X, W, bias, Y))
        return 0;
    TRACE('l', CG_NO_TRANS, CG_TRANS, rows, nout, nin, nin, nin, nout, 0.0);
    return 1;
}

/* The pool is sized by cg_set_num_threads; each call then picks 1 or all (choose_threads). */
static void openblas_threads(int n) {
    scipy_openblas_set_num_threads(n);
    openblas_threads_now = n;
}

static const char *openblas_config(void) {
    static char buf[256];
    snprintf(buf, sizeof buf, "%s; core %s", scipy_openblas_get_config(), scipy_openblas_get_corename());
    return buf;
}
#endif

static const cg_blas_provider providers[] = {
#ifdef CG_HAVE_OPENBLAS
    {"openblas", openblas_sgemm, openblas_dgemm, openblas_threads, openblas_config, openblas_linear},
#endif
    {"builtin", builtin_sgemm, builtin_dgemm, builtin_threads, builtin_config, NULL},
};
#define N_PROVIDERS ((int)(sizeof providers / sizeof providers[0]))

static const cg_blas_provider *current = &providers[0]; /* the fastest one built */

int cg_blas_provider_count(void) { return N_PROVIDERS; }
const cg_blas_provider *cg_blas_provider_at(int i) { return i >= 0 && i < N_PROVIDERS ? &providers[i] : NULL; }
const cg_blas_provider *cg_blas_current(void) { return current; }

cg_status cg_blas_select(const char *name) {
    for (int i = 0; i < N_PROVIDERS; i++)
        if (strcmp(providers[i].name, name) == 0) {
            current = &providers[i];
            current->set_num_threads(num_threads);
            return CG_OK;
        }
    return cg_error(CG_ERR_VALUE, "set_blas: no provider named '%s' in this build", name);
}

#if defined(__x86_64__) || defined(__i386__)
#include <pmmintrin.h>
int cg_set_flush_denormal(int on) {
    _MM_SET_FLUSH_ZERO_MODE(on ? _MM_FLUSH_ZERO_ON : _MM_FLUSH_ZERO_OFF);
    _MM_SET_DENORMALS_ZERO_MODE(on ? _MM_DENORMALS_ZERO_ON : _MM_DENORMALS_ZERO_OFF);
    return 1;
}
#else
int cg_set_flush_denormal(int on) { return 0; }
#endif

void cg_set_num_threads(int n) {
    num_threads = n < 1 ? 1 : n;
    for (int i = 0; i < N_PROVIDERS; i++) providers[i].set_num_threads(num_threads);
}

int cg_get_num_threads(void) { return num_threads; }

#ifndef CG_BUILD_FLAGS
#define CG_BUILD_FLAGS "?"
#endif

const char *cg_build_info(void) {
    static char buf[512];
#if defined(__GNUC__) && (defined(__x86_64__) || defined(__i386__))
    __builtin_cpu_init();
    snprintf(buf, sizeof buf, "compiler: gcc %s; flags: %s; cpu: sse4.2=%d avx=%d avx2=%d fma=%d avx512f=%d",
             __VERSION__, CG_BUILD_FLAGS, !!__builtin_cpu_supports("sse4.2"), !!__builtin_cpu_supports("avx"),
             !!__builtin_cpu_supports("avx2"), !!__builtin_cpu_supports("fma"),
             !!__builtin_cpu_supports("avx512f"));
#else
    snprintf(buf, sizeof buf, "compiler: %s; flags: %s", __VERSION__, CG_BUILD_FLAGS);
#endif
    return buf;
}
