/* threads.c: cgrad's own GEMM threads. A large GEMM is cut into parts along N (or M when
 * M is larger), each part a one-thread BLAS call; the caller and up to n - 1 helper threads
 * claim parts from one atomic counter, so a helper that has not started (asleep, or
 * descheduled by another process) leaves its parts to the caller instead of stalling it.
 * The only wait is for a part a helper is already computing. Idle helpers spin briefly, then
 * sleep on a condition variable: no thread burns a core between steps, and a waiting caller
 * never spins on a descheduled sibling for long (OpenBLAS's own pool spins for 2^28 cycles
 * and syncs its threads inside each GEMM, which is what collapsed on a busy machine; blas.c,
 * the policy comment, has the figures). Every element of C is computed by the same
 * one-thread kernel over the same K, so the results are those of one thread, bit for bit. */
#define _POSIX_C_SOURCE 200809L /* clock_gettime */
#include "threads.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <time.h>

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define CPU_RELAX() _mm_pause()
/* The caller's floating-point modes (FTZ/DAZ from cg_set_flush_denormal, rounding, masks:
 * MXCSR without its 6 sticky flag bits), which a helper takes on before its parts: else its
 * rows would be computed in the modes it was started with. */
#define FP_MODES_MASK (~0x3Fu)
#define FP_MODES() (_mm_getcsr() & FP_MODES_MASK)
#define SET_FP_MODES(m) _mm_setcsr((_mm_getcsr() & ~FP_MODES_MASK) | (m))
#else
#define CPU_RELAX() ((void)0)
#define FP_MODES() 0u
#define SET_FP_MODES(m) ((void)(m))
#endif

#define MAX_HELPERS 63
/* Below this M*N*K (8 MFLOP, ~120 us on one core) a GEMM stays on the calling thread. */
#define THREADED_GEMM_MNK (1 << 22)
/* A part has at least this M*N*K (~30 us): smaller ones lose more to packing the shared operand
 * again and to the hand-over than they gain. */
#define MIN_PART_MNK (1 << 20)
/* Parts per thread: more than one lets the caller take over a late helper's share. */
#define PARTS_PER_THREAD 2
/* Part boundaries: rows on multiples of 12, where OpenBLAS's Haswell/Zen sgemm kernel gives
 * each element of a part the same bits as in the whole product (measured: 12, 24, 48 do; 8, 16,
 * 32, 64 do not; dgemm is the same for any split); columns on whole 16-wide tiles. */
#define ROW_ALIGN 12
#define COL_ALIGN 16
/* How long an idle helper, and a caller waiting for a helper's part, spin before sleeping:
 * long enough to bridge the gap between one step's GEMMs without a wake-up. */
#define SPIN_NS 50000

/* The claim word: generation << 32 | threads << 24 | parts << 12 | next part. A claim is a
 * compare-and-swap on it, so a helper that wakes late can only claim parts of the job whose
 * generation it saw, and none once they are all taken. */
#define W_GEN(w) ((uint32_t)((w) >> 32))
#define W_THREADS(w) ((int)(((w) >> 24) & 0xff))
#define W_PARTS(w) ((int)(((w) >> 12) & 0xfff))
#define W_NEXT(w) ((int)((w) & 0xfff))

typedef struct {
    cg_sgemm_fn sgemm; /* one of the two is set */
    cg_dgemm_fn dgemm;
    cg_trans ta, tb;
    int64_t M, N, K, lda, ldb, ldc, extent, align;
    double alpha, beta; /* a float alpha/beta is exact as a double */
    const char *A, *B;
    char *C;
    int split_n, parts;
    unsigned fp_modes; /* the caller's (FP_MODES) */
} job_t;

static struct {
    pthread_mutex_t submit;  /* one caller's GEMM at a time; others run theirs alone */
    pthread_mutex_t lock;    /* for sleeping and waking only */
    pthread_cond_t work;     /* helpers sleep here */
    pthread_cond_t finished; /* the caller sleeps here for the last part */
    _Atomic uint64_t claim;
    _Atomic int done;        /* parts of the current job finished */
    _Atomic int sleepers;    /* helpers asleep (or about to be) on work */
    _Atomic int caller_asleep;
    _Atomic int wanted;      /* cg_set_num_threads */
    int helpers;             /* started, under submit */
    uint32_t start_gen[MAX_HELPERS + 1];
    job_t job;               /* written under submit, read by a part's claimer */
} pool = {.submit = PTHREAD_MUTEX_INITIALIZER, .lock = PTHREAD_MUTEX_INITIALIZER,
          .work = PTHREAD_COND_INITIALIZER, .finished = PTHREAD_COND_INITIALIZER, .wanted = 1};

static uint64_t now_ns(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (uint64_t)t.tv_sec * 1000000000u + (uint64_t)t.tv_nsec;
}

/* Where part i starts: i/parts of the extent, to the nearest multiple of align, so that the
 * parts differ by at most align (rounding every part up or down left one part short). */
static int64_t part_start(const job_t *j, int i) {
    if (i == j->parts) return j->extent;
    return (i * j->extent / j->parts + j->align / 2) / j->align * j->align;
}

static void run_part(const job_t *j, int i) {
    int64_t lo = part_start(j, i), hi = part_start(j, i + 1);
    size_t es = j->sgemm ? sizeof(float) : sizeof(double);
    const char *A = j->A, *B = j->B;
    char *C = j->C;
    int64_t m = j->M, n = j->N;
    if (j->split_n) { /* columns lo..hi of op(B) and C */
        n = hi - lo;
        B += (size_t)(j->tb ? lo * j->ldb : lo) * es;
        C += (size_t)lo * es;
    } else { /* rows lo..hi of op(A) and C */
        m = hi - lo;
        A += (size_t)(j->ta ? lo : lo * j->lda) * es;
        C += (size_t)(lo * j->ldc) * es;
    }
    if (j->sgemm)
        j->sgemm(j->ta, j->tb, m, n, j->K, (float)j->alpha, (const float *)A, j->lda, (const float *)B, j->ldb,
                 (float)j->beta, (float *)C, j->ldc);
    else
        j->dgemm(j->ta, j->tb, m, n, j->K, j->alpha, (const double *)A, j->lda, (const double *)B, j->ldb,
                 j->beta, (double *)C, j->ldc);
}

static int claim(uint32_t gen) {
    uint64_t w = atomic_load(&pool.claim);
    for (;;) {
        if (W_GEN(w) != gen || W_NEXT(w) >= W_PARTS(w)) return -1;
        if (atomic_compare_exchange_weak(&pool.claim, &w, w + 1)) return W_NEXT(w);
    }
}

/* Claim and run parts of job gen until none is left. */
static void work(uint32_t gen, int parts) {
    int i;
    while ((i = claim(gen)) >= 0) {
        run_part(&pool.job, i);
        if (atomic_fetch_add(&pool.done, 1) + 1 == parts && atomic_load(&pool.caller_asleep)) {
            pthread_mutex_lock(&pool.lock);
            pthread_cond_signal(&pool.finished);
            pthread_mutex_unlock(&pool.lock);
        }
    }
}

static void *helper_main(void *arg) {
    int index = (int)(intptr_t)arg; /* 1..MAX_HELPERS: thread index, the caller is 0 */
    uint32_t seen = pool.start_gen[index];
    for (;;) {
        uint64_t w = atomic_load(&pool.claim), t0 = 0;
        for (int spins = 0; W_GEN(w) == seen; spins++, w = atomic_load(&pool.claim)) {
            CPU_RELAX();
            if ((spins & 255) != 255) continue;
            uint64_t t = now_ns();
            if (!t0) t0 = t;
            else if (t - t0 > SPIN_NS) {
                pthread_mutex_lock(&pool.lock);
                atomic_fetch_add(&pool.sleepers, 1);
                while (W_GEN(w = atomic_load(&pool.claim)) == seen) pthread_cond_wait(&pool.work, &pool.lock);
                atomic_fetch_sub(&pool.sleepers, 1);
                pthread_mutex_unlock(&pool.lock);
            }
        }
        seen = W_GEN(w);
        if (index < W_THREADS(w)) {
            if (FP_MODES() != pool.job.fp_modes) SET_FP_MODES(pool.job.fp_modes);
            work(seen, W_PARTS(w));
        }
    }
    return NULL;
}

/* A forked child has none of the parent's helpers: start again with none. */
static void reset_in_child(void) {
    pthread_mutex_init(&pool.submit, NULL);
    pthread_mutex_init(&pool.lock, NULL);
    pthread_cond_init(&pool.work, NULL);
    pthread_cond_init(&pool.finished, NULL);
    atomic_store(&pool.claim, 0);
    atomic_store(&pool.done, 0);
    atomic_store(&pool.sleepers, 0);
    atomic_store(&pool.caller_asleep, 0);
    pool.helpers = 0;
}

static pthread_once_t atfork_once = PTHREAD_ONCE_INIT;
static void register_atfork(void) { pthread_atfork(NULL, NULL, reset_in_child); }

void cg_threads_set(int n) {
    atomic_store(&pool.wanted, n < 1 ? 1 : n > MAX_HELPERS + 1 ? MAX_HELPERS + 1 : n);
}

/* Under submit: start helpers up to wanted - 1; returns the threads there are for this job. */
static int ensure_helpers(int wanted) {
    pthread_once(&atfork_once, register_atfork);
    uint32_t gen = W_GEN(atomic_load(&pool.claim));
    while (pool.helpers < wanted - 1) {
        pthread_t tid;
        pthread_attr_t attr;
        int index = pool.helpers + 1;
        pool.start_gen[index] = gen;
        pthread_attr_init(&attr);
        pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED); /* reused for the process's life */
        int failed = pthread_create(&tid, &attr, helper_main, (void *)(intptr_t)index);
        pthread_attr_destroy(&attr);
        if (failed) break; /* fewer threads, still correct */
        pool.helpers = index;
    }
    return pool.helpers + 1 < wanted ? pool.helpers + 1 : wanted;
}

static int run_split(job_t *j) {
    int wanted = atomic_load(&pool.wanted);
    double mnk = (double)j->M * (double)j->N * (double)j->K;
    if (wanted < 2 || mnk < THREADED_GEMM_MNK) return 0;
    if (pthread_mutex_trylock(&pool.submit) != 0) return 0; /* another thread's GEMM has the pool */
    int threads = ensure_helpers(wanted);
    /* rows when there are enough: parts on multiples of ROW_ALIGN rows give every element the
     * one-thread result, bit for bit; columns (float32 then differs in the last bits, as with
     * OpenBLAS's own threads) below 4 ROW_ALIGN rows, where each row part would pack the
     * whole of op(B) again for a few rows (the digits CNN's 32x1024x144 products: its step at
     * 2 threads 1.12x slower than at 1 with row parts, 0.96x with column parts), if there are
     * columns enough for two parts */
    j->split_n = j->M < 2 * ROW_ALIGN || (j->M < 4 * ROW_ALIGN && j->N >= 2 * COL_ALIGN);
    j->extent = j->split_n ? j->N : j->M;
    j->align = j->split_n ? COL_ALIGN : ROW_ALIGN;
    int64_t parts = (int64_t)PARTS_PER_THREAD * threads;
    if (parts > (int64_t)(mnk / MIN_PART_MNK)) parts = (int64_t)(mnk / MIN_PART_MNK);
    if (parts > j->extent / j->align) parts = j->extent / j->align;
    if (threads < 2 || parts < 2) {
        pthread_mutex_unlock(&pool.submit);
        return 0;
    }
    j->parts = (int)parts;
    j->fp_modes = FP_MODES();
    pool.job = *j;

    uint32_t gen = W_GEN(atomic_load(&pool.claim)) + 1;
    atomic_store(&pool.done, 0);
    atomic_store(&pool.claim, (uint64_t)gen << 32 | (uint64_t)threads << 24 | (uint64_t)j->parts << 12);
    if (atomic_load(&pool.sleepers) > 0) {
        pthread_mutex_lock(&pool.lock);
        pthread_cond_broadcast(&pool.work);
        pthread_mutex_unlock(&pool.lock);
    }
    work(gen, j->parts);
    /* the parts helpers are still computing */
    uint64_t t0 = now_ns();
    for (int spins = 0; atomic_load(&pool.done) < j->parts; spins++) {
        CPU_RELAX();
        if ((spins & 255) == 255 && now_ns() - t0 > SPIN_NS) {
            pthread_mutex_lock(&pool.lock);
            atomic_store(&pool.caller_asleep, 1);
            while (atomic_load(&pool.done) < j->parts) pthread_cond_wait(&pool.finished, &pool.lock);
            atomic_store(&pool.caller_asleep, 0);
            pthread_mutex_unlock(&pool.lock);
        }
    }
    pthread_mutex_unlock(&pool.submit);
    return 1;
}

int cg_threads_sgemm(cg_sgemm_fn gemm, cg_trans ta, cg_trans tb, int64_t M, int64_t N, int64_t K, float alpha,
                     const float *A, int64_t lda, const float *B, int64_t ldb, float beta, float *C, int64_t ldc) {
    job_t j = {.sgemm = gemm, .ta = ta, .tb = tb, .M = M, .N = N, .K = K, .lda = lda, .ldb = ldb, .ldc = ldc,
               .alpha = alpha, .beta = beta, .A = (const char *)A, .B = (const char *)B, .C = (char *)C};
    return run_split(&j);
}

int cg_threads_dgemm(cg_dgemm_fn gemm, cg_trans ta, cg_trans tb, int64_t M, int64_t N, int64_t K, double alpha,
                     const double *A, int64_t lda, const double *B, int64_t ldb, double beta, double *C,
                     int64_t ldc) {
    job_t j = {.dgemm = gemm, .ta = ta, .tb = tb, .M = M, .N = N, .K = K, .lda = lda, .ldb = ldb, .ldc = ldc,
               .alpha = alpha, .beta = beta, .A = (const char *)A, .B = (const char *)B, .C = (char *)C};
    return run_split(&j);
}
