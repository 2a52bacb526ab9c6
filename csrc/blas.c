/* blas.c: the GEMM provider table. OpenBLAS (the scipy-openblas32 build, whose symbols are
 * prefixed scipy_) when the build found it, and a small portable kernel that is always there:
 * the fallback, and the reference the tests compare OpenBLAS against. */
#include "cg_internal.h"
#include "threads.h"

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
    if (trace_n >= TRACE_MAX) { /* >=: memory-safe even if two threads trace at once */
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

/* Thread policy (threads.c): OpenBLAS always runs on one thread, its own pool never started;
 * a GEMM with M*N*K >= 2^22 (about 8 MFLOP, ~120 us on one core) is split by cgrad across the
 * cg_set_num_threads() threads, each part a one-thread OpenBLAS call (the *_part functions),
 * claimed by the caller and helpers that sleep when idle. Why: with OpenBLAS's own threads
 * (all of them from 2^22, else 1), on this 2-core machine with other processes keeping both
 * cores busy (load average 8-9), the 784-256-256-10 step took 194 ms at 2 threads against 12.7
 * at 1 (15x slower; issue 17 saw 38x) and the 1024-2048-2048-10 step 801 ms against 553
 * (1.45x): its idle threads spin for 2^28 cycles (0.035 s of CPU after every threaded GEMM,
 * measured) and its threads wait on each other inside each product, so a descheduled one stalls
 * the rest. Split by cgrad, in the same runs: 4.4 ms against 13.5 (0.33x) and 524 against 550
 * (0.95x). A/B of the two builds: processes pinned to 1 and 2 cores, old and new builds
 * alternating, 4 rounds, medians of medians, wall clock on that loaded machine; quiet-machine
 * figures: benchmarks/threads.py. The deep-narrow step that measured 1.79x slower at 2 threads
 * runs no GEMM that large: it never starts a helper, and callgrind counts the same instructions
 * for it at 1 and 2 threads (200 replayed steps: +0.26% with OpenBLAS's threads, +0.2% now), so
 * its slowdown is outside the code path; threads.py's "1t on 2 cores" column tells what a 2-core
 * process alone costs it. */
static void openblas_sgemm_part(cg_trans ta, cg_trans tb, int64_t M, int64_t N, int64_t K, float alpha,
                                const float *A, int64_t lda, const float *B, int64_t ldb, float beta, float *C,
                                int64_t ldc) {
    if (cg_large_sgemm(ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc)) return;
    scipy_cblas_sgemm(CblasRowMajor, ta ? CblasTrans : CblasNoTrans, tb ? CblasTrans : CblasNoTrans,
                      (blasint)M, (blasint)N, (blasint)K, alpha, A, (blasint)lda, B, (blasint)ldb,
                      beta, C, (blasint)ldc);
}

static void openblas_dgemm_part(cg_trans ta, cg_trans tb, int64_t M, int64_t N, int64_t K, double alpha,
                                const double *A, int64_t lda, const double *B, int64_t ldb, double beta, double *C,
                                int64_t ldc) {
    scipy_cblas_dgemm(CblasRowMajor, ta ? CblasTrans : CblasNoTrans, tb ? CblasTrans : CblasNoTrans,
                      (blasint)M, (blasint)N, (blasint)K, alpha, A, (blasint)lda, B, (blasint)ldb,
                      beta, C, (blasint)ldc);
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
    if (!cg_threads_sgemm(openblas_sgemm_part, ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc))
        openblas_sgemm_part(ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
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
    if (!cg_threads_dgemm(openblas_dgemm_part, ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc))
        openblas_dgemm_part(ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
}

/* Y = X W^T + bias in one pass where a kernel of ours takes the shape; 0: sgemm then a bias pass */
static int openblas_linear(int64_t rows, int64_t nin, int64_t nout, const float *X, const float *W,
                           const float *bias, float *Y) {
    if (!cg_skinny_linear(rows, nin, nout, X, W, bias, Y) && !cg_small_linear(rows, nin, nout, X, W, bias, Y))
        return 0;
    TRACE('l', CG_NO_TRANS, CG_TRANS, rows, nout, nin, nin, nin, nout, 0.0);
    return 1;
}

/* OpenBLAS stays on one thread whatever n is: cgrad's threads split its large GEMMs. */
static void openblas_threads(int n) {
    (void)n;
    scipy_openblas_set_num_threads(1);
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
    cg_threads_set(num_threads);
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
