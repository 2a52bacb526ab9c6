/* gemm_bakeoff.c: times float32 GEMMs of given shapes under every library at hand, with the
 * timing loop in C (through ctypes a call costs about 1 us, more than these GEMMs).
 * Built and run by benchmarks/gemm_shapes.py, which also makes the shape list:
 *   cc -O2 -Icsrc benchmarks/gemm_bakeoff.c csrc/small_gemm.c -ldl -lm [-DHAVE_LIBXSMM ...]
 *   ./a.out OPENBLAS_LIB SAMPLES TARGET_NS < shapes
 * Each input line: ta tb M N K lda ldb ldc beta (row-major, as cgrad calls its sgemm).
 * Candidates: OpenBLAS (cgrad's scipy-openblas32, dlopen'ed, prefixed scipy_cblas_sgemm),
 * BLIS (libblis.so.4, its CBLAS), MKL (libmkl_rt, when found), libxsmm's JIT kernels (linked
 * when built with HAVE_LIBXSMM; only shapes its JIT takes) and cgrad's kernels
 * (csrc/small_gemm.c compiled in: cgrad-avx2, and cgrad-avx512 where the CPU has it). Every candidate's result is first checked against a
 * double-precision product. Output lines:
 *   lib NAME absent WHY                      a library not at hand
 *   shape I NAME median_ns min_ns rel_err    per shape and candidate, or
 *   shape I NAME absent WHY                  (a shape it does not take)
 *   rule I cgrad|openblas                    what cgrad's dispatch runs on one thread
 *                                            (cg_small_sgemm_wins, or cg_large_sgemm_wins above it)
 *   peak GFLOPS                              the FMA peak of one core (fma_peak.h), best of the runs
 * The samples of one shape are interleaved across candidates (a round of each, SAMPLES
 * times), so a busy machine slows them alike; each sample runs enough calls for TARGET_NS. */
#include "cg_internal.h"

#include <dlfcn.h>
#include <immintrin.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "fma_peak.h"

#ifdef HAVE_LIBXSMM
#include <libxsmm.h>
#endif

static double now_ns(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return 1e9 * (double)t.tv_sec + (double)t.tv_nsec;
}

/* ---- candidates ---- */
typedef struct {
    int ta, tb, M, N, K, lda, ldb, ldc;
    float beta;
} shape;

typedef void (*cblas_sgemm_fn)(int order, int ta, int tb, int M, int N, int K, float alpha, const float *A, int lda,
                               const float *B, int ldb, float beta, float *C, int ldc);
typedef void (*cblas_sgemm64_fn)(int order, int ta, int tb, int64_t M, int64_t N, int64_t K, float alpha,
                                 const float *A, int64_t lda, const float *B, int64_t ldb, float beta, float *C,
                                 int64_t ldc);

typedef struct candidate candidate;
struct candidate {
    const char *name;
    const char *absent; /* why it cannot run, or NULL */
    void *fn;
    int int64; /* CBLAS with 64-bit integers */
    /* per shape: prepare (0: cannot take this shape, why in *why) and run */
    int (*prepare)(candidate *c, const shape *s, const char **why);
    void (*run)(candidate *c, const shape *s, const float *A, const float *B, float *C);
    void *kernel; /* prepared per shape (libxsmm) */
    int isa;      /* cgrad's kernels: the instruction set (CG_SMALL_GEMM_*) */
};

static int prepare_any(candidate *c, const shape *s, const char **why) { return 1; }

static void run_cblas(candidate *c, const shape *s, const float *A, const float *B, float *C) {
    /* CblasRowMajor 101, CblasNoTrans 111, CblasTrans 112 */
    if (c->int64)
        ((cblas_sgemm64_fn)c->fn)(101, s->ta ? 112 : 111, s->tb ? 112 : 111, s->M, s->N, s->K, 1.0f, A, s->lda, B,
                                  s->ldb, s->beta, C, s->ldc);
    else
        ((cblas_sgemm_fn)c->fn)(101, s->ta ? 112 : 111, s->tb ? 112 : 111, s->M, s->N, s->K, 1.0f, A, s->lda, B,
                                s->ldb, s->beta, C, s->ldc);
}

static void run_cgrad(candidate *c, const shape *s, const float *A, const float *B, float *C) {
    if (cg_small_gemm_isa() != c->isa) cg_small_gemm_set_isa(c->isa);
    cg_small_sgemm_run(s->ta, s->tb, s->M, s->N, s->K, 1.0f, A, s->lda, B, s->ldb, NULL, s->beta, C, s->ldc);
}

#ifdef HAVE_LIBXSMM
/* libxsmm is column-major: row-major C = op(A) op(B) is column-major C^T = op(B)^T op(A)^T,
 * so its "A" is our B and its "B" our A, with M and N swapped. */
static int prepare_xsmm(candidate *c, const shape *s, const char **why) {
    int flags = (s->tb ? LIBXSMM_GEMM_FLAG_TRANS_A : 0) | (s->ta ? LIBXSMM_GEMM_FLAG_TRANS_B : 0);
    libxsmm_blasint lda = s->ldb, ldb = s->lda, ldc = s->ldc;
    float alpha = 1.0f, beta = s->beta;
    c->kernel = (void *)libxsmm_smmdispatch(s->N, s->M, s->K, &lda, &ldb, &ldc, &alpha, &beta, &flags, NULL);
    if (!c->kernel) *why = "no JIT kernel for these flags/shape";
    return c->kernel != NULL;
}

static void run_xsmm(candidate *c, const shape *s, const float *A, const float *B, float *C) {
    ((libxsmm_smmfunction)c->kernel)(B, A, C);
}
#endif

static void *open_first(const char *const *names) {
    for (int i = 0; names[i]; i++) {
        void *h = dlopen(names[i], RTLD_NOW | RTLD_LOCAL);
        if (h) return h;
    }
    return NULL;
}

/* ---- checking and timing ---- */
static double rel_error(const shape *s, const float *A, const float *B, const float *C) {
    double worst = 0, scale = 0;
    for (int i = 0; i < s->M; i++)
        for (int j = 0; j < s->N; j++) {
            double ref = 0, mag = 0;
            for (int k = 0; k < s->K; k++) {
                double a = s->ta ? A[k * s->lda + i] : A[i * s->lda + k];
                double b = s->tb ? B[j * s->ldb + k] : B[k * s->ldb + j];
                ref += a * b;
                mag += fabs(a * b);
            }
            double e = fabs(ref - C[i * s->ldc + j]);
            worst = e > worst ? e : worst;
            scale = mag > scale ? mag : scale;
        }
    return scale > 0 ? worst / scale : worst;
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

int main(int argc, char **argv) {
    if (argc < 4) {
        fprintf(stderr, "usage: %s OPENBLAS_LIB SAMPLES TARGET_NS < shapes\n", argv[0]);
        return 2;
    }
    int samples = atoi(argv[2]);
    double target_ns = atof(argv[3]);
    if (samples < 1) samples = 1;

    candidate cands[8];
    int nc = 0;
    {
        void *h = argv[1][0] ? dlopen(argv[1], RTLD_NOW | RTLD_LOCAL) : NULL;
        void (*threads)(int) = h ? (void (*)(int))dlsym(h, "scipy_openblas_set_num_threads") : NULL;
        if (threads) threads(1);
        void *sgemm = h ? dlsym(h, "scipy_cblas_sgemm") : NULL;
        cands[nc++] = (candidate){"openblas", sgemm ? NULL : "not found", sgemm, 0, prepare_any, run_cblas, NULL};
    }
    {
        static const char *const names[] = {"libblis.so.4", "libblis.so", NULL};
        void *h = open_first(names);
        candidate c = {"blis", h ? NULL : "not installed (apt-get install libblis-dev, or libblis4)",
                       h ? dlsym(h, "cblas_sgemm") : NULL, 0, prepare_any, run_cblas, NULL};
        int64_t (*intsize)(void) = h ? (int64_t(*)(void))dlsym(h, "bli_info_get_blas_int_type_size") : NULL;
        c.int64 = intsize && intsize() == 64;
        if (h && !c.fn) c.absent = "libblis has no cblas_sgemm";
        cands[nc++] = c;
    }
    {
        static const char *const names[] = {"libmkl_rt.so.2", "libmkl_rt.so", NULL};
        void *h = open_first(names);
        cands[nc++] = (candidate){"mkl", h ? NULL : "not found (pip install mkl puts libmkl_rt on LD_LIBRARY_PATH)",
                                  h ? dlsym(h, "cblas_sgemm") : NULL, 0, prepare_any, run_cblas, NULL};
    }
#ifdef HAVE_LIBXSMM
    libxsmm_init();
    cands[nc++] = (candidate){"libxsmm", NULL, NULL, 0, prepare_xsmm, run_xsmm, NULL};
#else
    cands[nc++] = (candidate){"libxsmm", "not installed (apt-get install libxsmm-dev)", NULL, 0, NULL, NULL, NULL};
#endif
    {
        int best = cg_small_gemm_set_isa(-1);
        cands[nc++] = (candidate){"cgrad-avx2", best < CG_SMALL_GEMM_AVX2 ? "no AVX2+FMA" : NULL, NULL, 0,
                                  prepare_any, run_cgrad, NULL, CG_SMALL_GEMM_AVX2};
        cands[nc++] = (candidate){"cgrad-avx512", best < CG_SMALL_GEMM_AVX512 ? "no AVX-512F" : NULL, NULL, 0,
                                  prepare_any, run_cgrad, NULL, CG_SMALL_GEMM_AVX512};
    }

    for (int c = 0; c < nc; c++)
        if (cands[c].absent) printf("lib %s absent %s\n", cands[c].name, cands[c].absent);
    double sink = 0, peak = fma_peak_gflops(2000000, 5, &sink);

    shape s;
    int idx = 0;
    double *t = malloc(sizeof(double) * (size_t)samples * (size_t)nc);
    srand(1);
    while (fscanf(stdin, "%d %d %d %d %d %d %d %d %f", &s.ta, &s.tb, &s.M, &s.N, &s.K, &s.lda, &s.ldb, &s.ldc,
                  &s.beta) == 9) {
        size_t na = (size_t)(s.ta ? s.K : s.M) * s.lda, nb = (size_t)(s.tb ? s.N : s.K) * s.ldb,
               ncs = (size_t)s.M * s.ldc;
        float *A = malloc(sizeof(float) * (na + 1)), *B = malloc(sizeof(float) * (nb + 1)),
              *C = malloc(sizeof(float) * (ncs + 1));
        for (size_t i = 0; i < na; i++) A[i] = (float)rand() / RAND_MAX - 0.5f;
        for (size_t i = 0; i < nb; i++) B[i] = (float)rand() / RAND_MAX - 0.5f;
        int ok[8] = {0}, reps = 1;
        double err[8] = {0};
        for (int c = 0; c < nc; c++) {
            const char *why = cands[c].absent;
            if (why) continue;
            if (cands[c].prepare(&cands[c], &s, &why)) {
                shape s0 = s;
                s0.beta = 0.0f;
                const char *w2 = NULL;
                if (s.beta != 0.0f && !cands[c].prepare(&cands[c], &s0, &w2)) {
                    ok[c] = 2; /* no check possible with beta 0: check once with the shape's beta below */
                } else {
                    memset(C, 0, sizeof(float) * ncs);
                    cands[c].run(&cands[c], &s0, A, B, C);
                    err[c] = rel_error(&s, A, B, C);
                    ok[c] = 1;
                }
                cands[c].prepare(&cands[c], &s, &why);
            }
            if (!ok[c]) printf("shape %d %s absent %s\n", idx, cands[c].name, why);
        }
        /* calls per sample: from a timed burst of OpenBLAS (or whichever runs) */
        for (int c = 0; c < nc; c++)
            if (ok[c]) {
                double t0 = now_ns();
                for (int r = 0; r < 10; r++) cands[c].run(&cands[c], &s, A, B, C);
                double per = (now_ns() - t0) / 10;
                reps = (int)(target_ns / (per > 1 ? per : 1)) + 1;
                break;
            }
        for (int k = 0; k < samples; k++)
            for (int c = 0; c < nc; c++) {
                if (!ok[c]) continue;
                double t0 = now_ns();
                for (int r = 0; r < reps; r++) cands[c].run(&cands[c], &s, A, B, C);
                t[c * samples + k] = (now_ns() - t0) / reps;
            }
        for (int c = 0; c < nc; c++) {
            if (!ok[c]) continue;
            qsort(t + c * samples, (size_t)samples, sizeof(double), cmp_double);
            double med = samples % 2 ? t[c * samples + samples / 2]
                                     : 0.5 * (t[c * samples + samples / 2 - 1] + t[c * samples + samples / 2]);
            printf("shape %d %s %.1f %.1f %.3g\n", idx, cands[c].name, med, t[c * samples], ok[c] == 1 ? err[c] : -1.0);
        }
        cg_small_gemm_set_isa(-1); /* the rule of the kernel cgrad runs here, not of the last one timed */
        int ours = cg_small_sgemm_wins(s.ta, s.tb, s.M, s.N, s.K) || cg_large_sgemm_wins(s.ta, s.tb, s.M, s.N, s.K);
        printf("rule %d %s\n", idx, ours ? "cgrad" : "openblas");
        fflush(stdout);
        free(A);
        free(B);
        free(C);
        idx++;
    }
    double again = fma_peak_gflops(2000000, 3, &sink);
    printf("peak %.1f\n", again > peak ? again : peak);
    free(t);
    return sink == 12345.0;
}
