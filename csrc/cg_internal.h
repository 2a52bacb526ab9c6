/* cg_internal.h: what the core's files share and the binding does not see:
 * the counting allocator, error reporting, anomaly and profiling hooks, the tape node,
 * the op registry's table, the broadcast iterator and the shared loops.
 */
#ifndef CG_INTERNAL_H
#define CG_INTERNAL_H

#include "cg.h"

#include <stdarg.h>
#include <string.h>

/* Hot loops: compiled three times, for the portable baseline, x86-64-v3 (AVX2 + FMA) and
 * x86-64-v4 (AVX-512), the clone picked once at load time by the CPU. Without them the
 * loops are SSE2 only: the vectorised float32 tanh took 11.5 ns per element instead of 2.9
 * (v3); v4's 16 lanes halve the float math again (float32 tanh 1.0 -> 0.6 ns). Results
 * can differ in the last bit between clones (FMA), never between runs on one machine. */
#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__) && defined(__linux__) && \
    !defined(CG_NO_CLONES)
#define CG_SIMD __attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default")))
#else
#define CG_SIMD
#endif

/* Thread-local state read on hot paths: initial-exec TLS needs no __tls_get_addr call
 * (the general model costs a call per access in a shared library). */
#define CG_TLS_FAST _Thread_local __attribute__((tls_model("initial-exec")))

/* ---- the one counting allocator (alloc.c; docs/architecture.md, "Memory") ---- */
/* Short copy loops stay loops: GCC would turn each into a memcpy/memset call, which costs
 * more than a copy of ten values. */
#if defined(__GNUC__) && !defined(__clang__)
#define CG_NO_MEMCPY_CALLS __attribute__((optimize("no-tree-loop-distribute-patterns")))
#else
#define CG_NO_MEMCPY_CALLS
#endif
void *cg_malloc(size_t nbytes); /* NULL on failure or on nbytes that overflow */
void cg_free(void *p);

/* ---- errors (error.c): set the thread-local message, return the status ---- */
cg_status cg_error(cg_status status, const char *fmt, ...);
cg_status cg_verror(cg_status status, const char *fmt, va_list ap);
/* "(2, 3)" into buf */
const char *cg_shape_str(int ndim, const int64_t *shape, char *buf, size_t n);
#define CG_SHAPE_BUF 96
/* The dtype check every op makes first (integer and bool tensors are storage only). */
cg_status cg_float_only(const char *op, const cg_tensor *t);
/* An op's operands that must share a dtype (the binding promotes before the core sees them) */
cg_status cg_same_dtype(const char *op, const cg_tensor *a, const cg_tensor *b);
#define CG_REQUIRE_FLOAT(op, t)                                           \
    do {                                                                  \
        if (__builtin_expect((t)->dtype > CG_F64, 0)) return cg_float_only(op, t); \
    } while (0)

/* ---- storage: refcounted buffer; the tape keeps outputs alive through it ---- */
struct cg_storage {
    int64_t refcount;
    size_t nbytes;
    void *data;
    void (*release)(void *); /* external memory: called with ctx when freed */
    void *ctx;
    uint64_t version; /* bumped by every in-place write through the core (Note [Versions]) */
};

/* Note [Versions]: a node remembers the version of each input's storage and of its own
 * output's storage when it is recorded. Backward refuses to run a rule whose saved values
 * were overwritten in place since (zero_, fill_, copy_, add_, optimizer steps), instead of
 * returning a silently wrong gradient. Writes through a numpy view are not seen. */
void cg_storage_bump(cg_storage *s);
void cg_storage_release(cg_storage *s);

/* ---- the tape node ----
 * Note [Tape lifetime]: an output tensor owns (a reference to) the node that made it; the
 * node owns references to its input tensors (the graph's edges and the values backward
 * reads) and to its output's *storage* (for rules written in terms of y), never to the
 * output tensor itself, so the graph has no reference cycles and is freed when the last
 * tensor that can reach it goes. node->out is a weak back-pointer, cleared when the output
 * tensor dies; it only serves retain_grad. */
struct cg_node {
    int64_t refcount;
    int op;
    int n_inputs;
    uint8_t freed;        /* saved values released by a backward without retain_graph */
    uint8_t fresh;        /* during its rule: bit i set when dins[i] is uninitialised (Note [First write]) */
    uint8_t wanted;       /* cg_grad: 1 its gradient is returned, 2 an input leads to a target */
    uint64_t mark;        /* topological-sort epoch */
    int64_t id;           /* for the profiler: set only while profiling */
    int32_t scope;        /* the profiler scope (layer) current at record time */
    cg_storage *saved_out; /* output values */
    cg_tensor *out;       /* weak, see Note [Tape lifetime] */
    void *grad;           /* d(loss)/d(out): a raw buffer, alive only during a backward sweep */
    cg_dtype dtype;
    int ndim;
    int64_t shape[CG_MAX_DIMS];
    int64_t numel;
    double p[2];                /* scalar parameters of unary ops */
    int64_t ip[CG_MAX_DIMS + 1]; /* integer parameters: O/R/I sizes, strides + base offset, ... */
    void *extra;                /* owned op data (index array, mask), freed with the node */
    uint64_t *versions;         /* n_inputs + 1 saved storage versions (the last: output) */
    cg_tensor *inputs[];        /* n_inputs references; the versions follow them */
};

/* ---- anomaly mode (anomaly.c) ---- */
extern int cg_anomaly_on;
/* index of the first non-finite element of a float buffer, -1 if none */
int64_t cg_first_nonfinite(cg_dtype dtype, const void *data, int64_t n);
/* An "anomaly:" CG_ERR_RUNTIME naming node node_id (-1: none), kept for cg_anomaly_node(). */
cg_status cg_anomaly_error(int64_t node_id, const char *fmt, ...);

/* ---- profiling hooks (profile.c): one branch each when profiling is off ---- */
extern int cg_prof_on;
extern _Thread_local uint64_t cg_prof_t0;
extern _Thread_local int64_t cg_prof_bytes0;
extern int64_t cg_allocated_total;
uint64_t cg_now_ns(void);
int64_t cg_profile_new_node_id(void);
/* Multiply-adds x 2 of a GEMM-based op (matmul, linear), for the profiler's GFLOP/s; else 0. */
double cg_op_flops(int op, cg_tensor *const *inputs, int64_t out_numel);
void cg_prof_event_add(int op, int phase, int64_t node, int32_t scope, uint64_t t0, uint64_t t1, double flops,
                       int64_t bytes);
/* At the entry of every op: the forward time (and allocation count) runs from here to cg_record. */
/* Time part of NODE's backward rule (a GEMM: dX or dW) as its own profiler event. */
#define CG_PROF_PHASE(NODE, PHASE, FLOPS, ...)                                                      \
    do {                                                                                            \
        if (cg_prof_on) {                                                                           \
            uint64_t t0_ = cg_now_ns();                                                             \
            __VA_ARGS__;                                                                            \
            cg_prof_event_add((NODE)->op, PHASE, (NODE)->id, (NODE)->scope, t0_, cg_now_ns(), FLOPS, 0); \
        } else {                                                                                    \
            __VA_ARGS__;                                                                            \
        }                                                                                           \
    } while (0)

#define CG_PROF_BEGIN()                                                                         \
    do {                                                                                        \
        if (cg_prof_on) {                                                                       \
            cg_prof_t0 = cg_now_ns();                                                           \
            cg_prof_bytes0 = cg_allocated_total;                                                \
        }                                                                                       \
    } while (0)

/* Make out's node if grad mode is on and an input needs grad; *node is NULL otherwise.
 * On failure out is released, so a caller only returns the status. */
cg_status cg_record(int op, int n_inputs, cg_tensor *const *inputs, cg_tensor *out, cg_node **node);
/* The node cg_record makes (inputs, versions, out's storage and shape), without its checks,
 * capture or profiling; owned by out (out->node) when `owned`, else refcount 0. NULL: no memory. */
cg_node *cg_node_new(int op, int n_inputs, cg_tensor *const *inputs, cg_tensor *out, int owned);

/* The backward sweep over nodes already sorted (inputs before users; root's node last), or
 * for n == 0 a leaf root taking the seed. grad: the seed tensor, NULL for ones. */
cg_status cg_backward_sorted(cg_node *const *order, size_t n, cg_tensor *root, cg_tensor *grad, int retain_graph);
void cg_node_release(cg_node *node); /* iterative, like cg_tensor_release */

/* ---- ops written in Python (pyop.c) ---- */
/* Rules and replay functions return nothing: they cannot fail on checked input. The few that
 * can (a PYTHON rule runs user code; a convolution takes scratch memory) leave their status
 * here (cg_rule_status_, with cg_error's message); the sweep and the replay read it after each
 * call with cg_rule_status(), which clears it. */
extern _Thread_local cg_status cg_rule_status_;
cg_status cg_rule_status(void);
int cg_python_is_hooks(const cg_node *node); /* a hook node (cg_py_hook_node)? */
/* leaf's gradient of this sweep after its hooks: a new reference in *out */
cg_status cg_python_leaf_hooks(cg_tensor *leaf, cg_tensor *g, cg_tensor **out);

/* ---- cgrad.compile (replay.c) ---- */
extern _Thread_local cg_program *cg_capturing; /* the program recording on this thread, or NULL */
cg_status cg_capture_op(cg_node *node);
cg_status cg_capture_backward(cg_node *const *order, size_t n, cg_tensor *root, cg_tensor *seed);
cg_status cg_capture_copy(cg_tensor *dst, cg_tensor *from);
/* The op just recorded read its integer array (targets, indices) from src: n values in
 * [0, bound), or [-bound, bound) wrapped when wrap_negative. */
void cg_capture_note_index(const int64_t *src, int64_t n, int64_t bound, int wrap_negative);
/* The same for targets in [0, bound) that may also be `ignore` (cross_entropy's ignore_index). */
void cg_capture_note_index_ignoring(const int64_t *src, int64_t n, int64_t bound, int64_t ignore);

/* Recompute node's output into its saved storage from its inputs, as the op did. */
typedef void (*cg_replay_fn)(cg_node *node);

/* Backward rule. g: d(loss)/d(out), node->numel elements of node->dtype. dins[i]: the
 * gradient buffer of input i (laid out like that input) to accumulate into, or NULL where
 * input i needs no gradient. Rules cannot fail: everything they need was checked forward. */
typedef void (*cg_bwd_fn)(cg_node *node, const void *g, void **dins);

/* ---- the op registry (ops.def), generated into one table indexed by op code ---- */
#define R_NONE 0
#define R_IN0 1
#define R_IN1 2
#define R_OUT 128
#define ADDS 0
#define WRITES 1
typedef struct {
    const char *name;
    const char *family;
    cg_bwd_fn bwd;
    cg_replay_fn replay;
    uint8_t reads;       /* R_* bits: the saved values bwd reads (Note [Versions]) */
    uint8_t first_write; /* WRITES: bwd writes fresh gradient buffers (Note [First write]) */
} cg_op_info;
extern const cg_op_info cg_ops[CG_OP_COUNT];

/* Each family's backward rule and replay function, declared from the registry. */
#define CG_UNARY(NAME, ...) CG_FAMILY_DECL(unary)
#define CG_BINARY(NAME, ...) CG_FAMILY_DECL(binary)
#define CG_OP(NAME, name, family, ...) CG_FAMILY_DECL(family)
#define CG_FAMILY_DECL(family)                                                                  \
    void cg_##family##_bwd(cg_node *node, const void *g, void **dins);                         \
    void cg_##family##_replay(cg_node *node);
#include "ops.def"
#undef CG_FAMILY_DECL

/* ---- broadcasting ----
 * Two operands are aligned to the output's rank, dims of size 1 dropped, and adjacent dims
 * merged where both operands are contiguous across them. What is left is walked row by row:
 * the last dim is the inner loop with strides sa, sb (each 0 or 1). Broadcasting is undone
 * in the backward loops themselves: da[oa + j*sa] += ..., so a broadcast input's gradient is
 * summed over the broadcast dims with no temporary (Note [Gradient accumulation]). */
typedef struct {
    int nd;
    int64_t shape[CG_MAX_DIMS];
    int64_t sa[CG_MAX_DIMS], sb[CG_MAX_DIMS];
} cg_bcast;

/* Output shape of broadcasting a with b; CG_ERR_SHAPE naming op if incompatible. */
cg_status cg_broadcast_shape(const char *op, int na, const int64_t *sa, int nb, const int64_t *sb,
                             int *nout, int64_t *out);
void cg_bcast_init(cg_bcast *bc, int nout, const int64_t *out, int na, const int64_t *sa, int nb,
                   const int64_t *sb);

/* Walk the rows of bc: the body (variadic, so it may hold commas) sees oa, ob (operand offsets), oy (output offset), n, sa, sb. */
#define CG_BCAST_FOR(bc, ...)                                                                   \
    do {                                                                                        \
        const cg_bcast *bc_ = (bc);                                                             \
        int last_ = bc_->nd - 1;                                                                \
        int64_t n = bc_->nd ? bc_->shape[last_] : 1;                                            \
        int64_t sa = bc_->nd ? bc_->sa[last_] : 0, sb = bc_->nd ? bc_->sb[last_] : 0;           \
        int64_t rows_ = 1, idx_[CG_MAX_DIMS] = {0}, oa = 0, ob = 0;                             \
        for (int d_ = 0; d_ < last_; d_++) rows_ *= bc_->shape[d_];                             \
        if (n == 0) rows_ = 0;                                                                  \
        for (int64_t row_ = 0; row_ < rows_; row_++) {                                          \
            int64_t oy = row_ * n;                                                              \
            __VA_ARGS__;                                                                        \
            for (int d_ = last_ - 1; d_ >= 0; d_--) {                                           \
                oa += bc_->sa[d_];                                                              \
                ob += bc_->sb[d_];                                                              \
                if (++idx_[d_] < bc_->shape[d_]) break;                                         \
                oa -= bc_->sa[d_] * bc_->shape[d_];                                             \
                ob -= bc_->sb[d_] * bc_->shape[d_];                                             \
                idx_[d_] = 0;                                                                   \
            }                                                                                   \
        }                                                                                       \
    } while (0)

/* ---- skinny float32 GEMMs (skinny_gemm.c): 1 when it computed C, 0 for a shape it does not take ---- */
int cg_skinny_isa(void); /* the one in effect: CG_SKINNY_AVX512, _AVX2 or _OFF (also for conv.c) */
int cg_skinny_sgemm(cg_trans ta, cg_trans tb, int64_t M, int64_t N, int64_t K, float alpha, const float *A,
                    int64_t lda, const float *B, int64_t ldb, float beta, float *C, int64_t ldc);
/* OpenBLAS's provider's linear_f32 (cg.h) */
int cg_skinny_linear(int64_t rows, int64_t nin, int64_t nout, const float *X, const float *Wt, const float *bias,
                     float *Y);

/* ---- small float32 GEMMs on AVX-512 or AVX2 + FMA (small_gemm.c) ---- */
int cg_small_gemm_isa(void); /* the one in effect: CG_SMALL_GEMM_AVX512, _AVX2 or _OFF */
/* The dispatch: 1 when the kernel is on and the rule picks it for the shape (then C is
 * computed), 0 for OpenBLAS. linear: Y [rows, nout] = X [rows, nin] W^T + bias (NULL: none). */
int cg_small_sgemm_wins(cg_trans ta, cg_trans tb, int64_t M, int64_t N, int64_t K);
int cg_small_sgemm(cg_trans ta, cg_trans tb, int64_t M, int64_t N, int64_t K, float alpha, const float *A,
                   int64_t lda, const float *B, int64_t ldb, float beta, float *C, int64_t ldc);
/* the products above cg_small_sgemm's range that its AVX-512 kernel still takes (a thread's
 * part of a split product, or the whole one on one thread); 0: not taken */
int cg_large_sgemm_wins(cg_trans ta, cg_trans tb, int64_t M, int64_t N, int64_t K);
int cg_large_sgemm(cg_trans ta, cg_trans tb, int64_t M, int64_t N, int64_t K, float alpha, const float *A,
                   int64_t lda, const float *B, int64_t ldb, float beta, float *C, int64_t ldc);
int cg_small_linear(int64_t rows, int64_t nin, int64_t nout, const float *X, const float *Wt, const float *bias,
                    float *Y);

/* ---- small helpers ---- */
int64_t cg_numel(int ndim, const int64_t *shape); /* -1 on a negative dim, INT64_MAX on overflow */
void cg_contiguous_strides(int ndim, const int64_t *shape, int64_t *strides);
/* A fresh zeroed gradient buffer shaped like t (same dtype). NULL on failure. */
cg_tensor *cg_grad_like(int ndim, const int64_t *shape, cg_dtype dtype);

/* ---- buffer loops shared by the rules (tensor.c) ---- */
/* dst[i] += src[i] for n elements of dtype: gradient accumulation, and the rules that route
 * an upstream gradient back unchanged (reshape, gather, concat). */
void cg_add_into(cg_dtype dtype, int64_t n, void *dst, const void *src);
/* dst = src (converting the dtype, same numel); bumps dst's version. */
void cg_copy_values(cg_tensor *dst, const cg_tensor *src);

#endif
