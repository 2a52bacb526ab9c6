/* cg.h: the public C API of the cgrad core.
 *
 * Contract (docs/architecture.md, "The three layers"):
 *  - Plain C11, no Python.h. Nothing here prints, exits or aborts.
 *  - Every function that can fail returns a cg_status (CG_OK == 0) and leaves a message
 *    naming the op and the shapes in cg_last_error() (thread-local).
 *  - Tensors are contiguous, row-major buffers, reference counted. The ops and the tape are
 *    float32/float64; integer and bool tensors are storage only (made, converted, copied,
 *    filled): every op refuses them, and the facade computes them with numpy.
 *    A function that returns a tensor through an out-pointer hands over one reference.
 */
#ifndef CG_H
#define CG_H

#include <stddef.h>
#include <stdint.h>

#define CG_MAX_DIMS 8

/* Floats first: `dtype <= CG_F64` is the one check an op makes. CG_BOOL holds 0 or 1 in a byte. */
typedef enum { CG_F32 = 0, CG_F64 = 1, CG_I64 = 2, CG_I32 = 3, CG_BOOL = 4, CG_U8 = 5, CG_DTYPE_COUNT } cg_dtype;

typedef enum {
    CG_OK = 0,
    CG_ERR_SHAPE,   /* ValueError: incompatible or invalid shapes */
    CG_ERR_DTYPE,   /* TypeError: dtype mismatch */
    CG_ERR_NOMEM,   /* MemoryError */
    CG_ERR_INDEX,   /* IndexError */
    CG_ERR_VALUE,   /* ValueError: bad argument value */
    CG_ERR_RUNTIME, /* RuntimeError: misuse, e.g. backward through a freed graph */
} cg_status;

/* Op codes, one per line of the op registry (ops.def). */
typedef enum {
#define CG_UNARY(NAME, ...) CG_OP_##NAME,
#define CG_BINARY(NAME, ...) CG_OP_##NAME,
#define CG_OP(NAME, ...) CG_OP_##NAME,
#include "ops.def"
    CG_OP_COUNT
} cg_op;

typedef struct cg_storage cg_storage;
typedef struct cg_node cg_node;

typedef struct cg_tensor {
    int64_t refcount;
    cg_storage *storage;
    void *data; /* == storage->data */
    cg_dtype dtype;
    int ndim;
    int64_t shape[CG_MAX_DIMS];
    int64_t numel;
    struct cg_tensor *grad; /* accumulated gradient (leaves, or retain_grad) */
    cg_node *node;          /* the op that made this tensor; NULL for a leaf */
    uint8_t requires_grad;  /* set by the user on leaves; implied by node on non-leaves */
    uint8_t retains_grad;
    uint8_t hooked; /* a leaf with hooks (register_hook): its gradient is gathered for them first */
} cg_tensor;

/* ---- memory and errors ---- */
const char *cg_last_error(void);
int64_t cg_live_bytes(void);  /* bytes currently allocated by the core */
int64_t cg_alloc_count(void); /* allocations made so far (for per-step accounting) */
int64_t cg_fresh_alloc_count(void); /* of those, the ones that had to call malloc */

/* ---- tensors ---- */
cg_status cg_tensor_empty(cg_dtype dtype, int ndim, const int64_t *shape, cg_tensor **out);
cg_status cg_tensor_zeros(cg_dtype dtype, int ndim, const int64_t *shape, cg_tensor **out);
/* Wrap memory the core does not own; release(ctx) is called when the last user lets go. */
cg_status cg_tensor_external(cg_dtype dtype, int ndim, const int64_t *shape, void *data,
                             void (*release)(void *), void *ctx, cg_tensor **out);
void cg_tensor_retain(cg_tensor *t);
void cg_tensor_release(cg_tensor *t); /* iterative: a 100,000-op graph frees without recursion */
size_t cg_dtype_size(cg_dtype dtype);
const char *cg_dtype_name(cg_dtype dtype); /* "float32", "int64", ... */
int cg_tensor_needs_grad(const cg_tensor *t);
/* A new leaf with the same storage and no history (detach). */
cg_status cg_tensor_detach(cg_tensor *t, cg_tensor **out);
/* Copy values (same numel); in-place ops record nothing. */
cg_status cg_tensor_copy_(cg_tensor *dst, const cg_tensor *src);
cg_status cg_tensor_fill_(cg_tensor *t, double value); /* integers: NaN is 0, beyond the range saturates */
cg_status cg_tensor_axpy_(cg_tensor *y, double alpha, const cg_tensor *x); /* y += alpha x */
/* A converted copy, no graph. Float to integer truncates toward zero; NaN becomes 0 and values
 * beyond the range saturate (C leaves both undefined); anything non-zero becomes true. */
cg_status cg_tensor_astype(cg_tensor *t, cg_dtype dtype, cg_tensor **out);

/* ---- grad mode (thread-local) ---- */
int cg_grad_enabled(void);
void cg_set_grad_enabled(int enabled);

/* ---- ops (each records a tape node when grad mode is on and an input needs grad) ---- */
const char *cg_op_name(int op);    /* "?" for a code that is not an op */
const char *cg_op_family(int op);  /* the family whose functions serve it (ops.def) */
int cg_op_reads(int op);           /* what its backward reads: bit i input i, bit 7 the output */
int cg_node_op_of(const cg_tensor *t); /* the op that made t, -1 for a leaf */
/* The inputs of the op that made t (borrowed pointers), for drawing the graph; returns how many. */
int cg_node_inputs(const cg_tensor *t, cg_tensor **inputs, int max);
/* For the taped second sweep (create_graph): the op that made t (-1 for a leaf) with its
 * scalar parameters p[2], integer parameters ip[CG_MAX_DIMS + 1] and owned extra data
 * (borrowed); and a key that identifies that node while it lives. */
int cg_node_params(const cg_tensor *t, double *p, int64_t *ip, const void **extra);
const void *cg_node_key(const cg_tensor *t);
cg_status cg_unary(int op, cg_tensor *x, double p0, double p1, cg_tensor **out);
cg_status cg_binary(int op, cg_tensor *a, cg_tensor *b, cg_tensor **out);
/* mask is a uint8 array of the broadcast output's shape; it is copied. */
cg_status cg_where(const uint8_t *mask, int ndim, const int64_t *shape, cg_tensor *a, cg_tensor *b,
                   cg_tensor **out);
/* Reduce axes [axis0, axis1) of x. op: SUM, MEAN, MAX, MIN, LOGSUMEXP. */
cg_status cg_reduce(int op, cg_tensor *x, int axis0, int axis1, int keepdims, cg_tensor **out);
/* SOFTMAX or LOG_SOFTMAX along one axis. */
cg_status cg_softmax(int op, cg_tensor *x, int axis, cg_tensor **out);
/* Inclusive prefix sum along one axis (a 0-dim x: axis 0, y = x). */
cg_status cg_cumsum(cg_tensor *x, int axis, cg_tensor **out);
cg_status cg_matmul(cg_tensor *a, cg_tensor *b, cg_tensor **out);
/* y = x W^T + b with x [..., in], W [out, in] (PyTorch's layout), b [out] or NULL. */
cg_status cg_linear(cg_tensor *x, cg_tensor *w, cg_tensor *b, cg_tensor **out);
/* z = op(a) op(b) for 2-D a and b, op transposing where ta (tb) is non-zero. */
cg_status cg_gemm(cg_tensor *a, cg_tensor *b, int ta, int tb, cg_tensor **out);
cg_status cg_reshape(cg_tensor *x, int ndim, const int64_t *shape, cg_tensor **out);
cg_status cg_permute(cg_tensor *x, const int *perm, cg_tensor **out);
/* Basic slicing: per dim start, step (non-zero) and length of the result. */
cg_status cg_slice(cg_tensor *x, const int64_t *start, const int64_t *step, const int64_t *len,
                   cg_tensor **out);
cg_status cg_gather(cg_tensor *x, const int64_t *index, int64_t n_index, cg_tensor **out);
cg_status cg_concat(int n, cg_tensor **xs, int axis, cg_tensor **out);
/* y = x with y[index[l], ...] += src[l, ...] (rows along axis 0; repeated rows add up). */
cg_status cg_scatter_add(cg_tensor *x, const int64_t *index, int64_t n_index, cg_tensor *src, cg_tensor **out);
/* x converted to the other float dtype, recorded: the gradient is converted back. */
cg_status cg_cast(cg_tensor *x, cg_dtype dtype, cg_tensor **out);

/* Cross-entropy of logits [N, C] against integer targets [N] in [0, C). reduction: 0 none
 * (out [N]), 1 mean, 2 sum (out a scalar). Backward: (softmax - onehot) * upstream (/ N). */
typedef enum { CG_REDUCE_NONE = 0, CG_REDUCE_MEAN = 1, CG_REDUCE_SUM = 2 } cg_reduction;
/* logits [N, C], N targets in [0, C) or ignore_index; weight [C] or NULL; nll: logits are already
 * log-probabilities (nll_loss; no smoothing) */
cg_status cg_cross_entropy(cg_tensor *logits, const int64_t *targets, const cg_tensor *weight, int64_t ignore_index,
                           double label_smoothing, int reduction, int nll, cg_tensor **out);

/* ---- optimizers: one call updates every parameter (state arrays are owned by the caller,
 * entries allocated here on first use); parameters without a gradient are skipped ---- */
cg_status cg_sgd_step(int n, cg_tensor **params, cg_tensor **momentum_bufs, double lr, double momentum,
                      double dampening, double weight_decay, int nesterov);
cg_status cg_adam_step(int n, cg_tensor **params, cg_tensor **exp_avg, cg_tensor **exp_avg_sq,
                       int64_t step, double lr, double beta1, double beta2, double eps,
                       double weight_decay, int decoupled);
void cg_zero_grad(int n, cg_tensor **params, int set_to_none);
/* Scale all gradients so that their joint L2 norm is at most max_norm; *total = the norm before. */
void cg_clip_grad_norm(int n, cg_tensor **params, double max_norm, double *total);

/* An optimizer's step as data (cgrad/optim), so that a replayed step (cgrad.compile) runs it
 * with no Python: each group's parameter arrays (a ParamSet's) and hyperparameters. The
 * binding refreshes them when a Python-side value changed; until then `stale` is nonzero
 * and a replay calls the Python method instead (cg_capture_native). */
typedef enum { CG_OPTIM_NONE = -1, CG_OPTIM_SGD = 0, CG_OPTIM_ADAM = 1 } cg_optim_kind;
enum { CG_OPTIM_STALE_HYPER = 1, CG_OPTIM_STALE_GROUPS = 2 };
typedef struct {
    int n;
    cg_tensor **params, **state0, **state1;
    int64_t added_at; /* the optimizer's step count when the group was added */
    double lr, momentum, dampening, weight_decay, beta1, beta2, eps;
    int nesterov;
} cg_optim_group;
typedef struct {
    int kind, decoupled, stale, n_groups;
    int64_t step_count;
    cg_optim_group *groups; /* owned by the binding */
} cg_optim;
/* One step of every group (SGD, Adam or AdamW by kind); step_count advances as eager's. */
cg_status cg_optim_step(cg_optim *o);
void cg_optim_zero_grad(const cg_optim *o, int set_to_none);
/* The two as replay's native call points: *handled = 0 (nothing done) while o is stale. */
cg_status cg_optim_native_step(void *o, int64_t unused, int *handled);
cg_status cg_optim_native_zero_grad(void *o, int64_t set_to_none, int *handled);

/* ---- profiling (profile.c) ---- */
typedef enum {
    CG_PHASE_FORWARD = 0,
    CG_PHASE_BACKWARD = 1,  /* a node's whole backward rule */
    CG_PHASE_BWD_DX = 2,    /* the dX = dZ W^T GEMM inside a matmul/linear rule */
    CG_PHASE_BWD_DW = 3,    /* the dW = X^T dZ GEMM */
    CG_PHASE_BWD_CALL = 4,  /* one whole cg_backward call */
    CG_PHASE_OPTIMIZER = 5, /* one optimizer step over all parameters */
    CG_PHASE_BWD_CONV_DX = 6, /* the dX = col2im(dZ W) GEMM and col2im inside a convolution's rule */
    CG_PHASE_BWD_CONV_DW = 7, /* the dW = col(X)^T dZ GEMM */
} cg_phase;
typedef struct {
    uint64_t t0, t1; /* monotonic ns */
    int64_t node;    /* node id, -1 when the op recorded no node */
    double flops;    /* for GEMMs, else 0 */
    int64_t bytes;   /* allocated by the core during the event */
    int32_t op;      /* -1 for a whole backward call */
    int32_t phase;
    int32_t scope;   /* the scope (layer) current when the node was recorded */
} cg_prof_event;
cg_status cg_profile_start(int64_t capacity);
void cg_profile_stop(void);
void cg_profile_clear(void);
const cg_prof_event *cg_profile_events(int64_t *n, int64_t *dropped);
void cg_profile_set_scope(int32_t scope);
int32_t cg_profile_scope(void);

/* ---- anomaly mode (anomaly.c): every op's output and every gradient checked for NaN/Inf ---- */
void cg_set_anomaly(int enabled);
int64_t cg_node_id_of(const cg_tensor *t); /* -1 for a leaf or a node made with both off */
/* The node id (as cg_node_id_of) of the op named by the last "anomaly:" error raised on this
 * thread; -1 when that error named no node (an op's forward output, checked before its node
 * exists). Meaningful only right after an anomaly error. */
int64_t cg_anomaly_node(void);

/* ---- backward ---- */
/* Sort the graph behind root, seed d(root) with grad (NULL: ones, root must have one element),
 * sweep in reverse accumulating into .grad of leaves that require grad. Without retain_graph
 * the saved values are freed and a second backward through these nodes is an error. */
cg_status cg_backward(cg_tensor *root, cg_tensor *grad, int retain_graph);
/* autograd.grad: the gradients of the roots (each seeded with seeds[i], NULL: ones) w.r.t.
 * targets (leaves or not), summed over the roots, in one sweep. out[j] receives a new tensor,
 * or NULL where no gradient reached target j. No .grad is read or written. */
cg_status cg_grad(int n_roots, cg_tensor *const *roots, cg_tensor *const *seeds, int n_targets,
                  cg_tensor *const *targets, cg_tensor **out, int retain_graph);

/* ---- ops written in Python, and tensor hooks (pyop.c) ----
 * The core holds the binding's objects as opaque pointers, one reference each, given back
 * through `release` when the node holding one is freed. The callbacks are called from
 * inside the backward sweep and return CG_OK or an error status (the binding keeps the
 * exception). backward(obj, g, n, inputs, grads): g is d(loss)/d(output) (the callee may
 * keep it); grads[i] receives a new reference to input i's gradient or NULL. For a hook
 * node n is 1 and grads[0] is the tensor's gradient after its hooks.
 * leaf_hooks(leaf, g, out): *out a new reference to the gradient after leaf's hooks. */
typedef cg_status (*cg_py_backward_fn)(void *obj, cg_tensor *g, int n, cg_tensor *const *inputs, cg_tensor **grads);
typedef cg_status (*cg_py_leaf_hooks_fn)(cg_tensor *leaf, cg_tensor *g, cg_tensor **out);
void cg_py_set_callbacks(cg_py_backward_fn backward, cg_py_leaf_hooks_fn leaf_hooks, void (*release)(void *));
/* *out: a new tensor with value's data, made by a Python function of inputs when one needs
 * grad (the node owns obj), else a plain leaf (obj released). */
cg_status cg_py_record(int n_inputs, cg_tensor *const *inputs, cg_tensor *value, void *obj, cg_tensor **out);
/* Hooks on a non-leaf t: a node owning obj is put between t and the op that made t. */
cg_status cg_py_hook_node(cg_tensor *t, void *obj);
void *cg_py_hook_owner(const cg_tensor *t); /* that node's obj (borrowed), NULL if none */
/* The obj of the Function node that made t, past t's hooks (borrowed), NULL if none or
 * freed by a backward: the taped sweep (create_graph=True) calls its rule in Python. */
void *cg_py_node_owner(const cg_tensor *t);
uint64_t cg_tensor_version(const cg_tensor *t); /* its storage's version (Note [Versions]) */

/* ---- record once, replay (replay.c; cgrad.compile) ----
 * Between cg_capture_begin and cg_capture_swap(NULL) every op, backward call and dtype
 * conversion on this thread is also appended to the program; in-place writes (copy_,
 * fill_, axpy_) are refused. cg_program_run replays from *pc (0: the start) until the end
 * (*call = -1) or a CALL mark (*call = its index; resume with the same *pc). */
typedef struct cg_program cg_program;
cg_status cg_program_new(cg_program **out);
void cg_program_free(cg_program *p);
cg_status cg_capture_begin(cg_program *p);
cg_program *cg_capture_swap(cg_program *p); /* returns the one that was recording (pause/resume) */
int cg_capture_active(void);
cg_status cg_capture_call(int64_t *index);  /* a point where the caller must run again */
/* A point that runs fn(ctx, arg, &handled) in C; when it leaves handled 0 the replay
 * returns to the caller as at a CALL mark of the same index (its Python fallback). */
typedef cg_status (*cg_native_fn)(void *ctx, int64_t arg, int *handled);
cg_status cg_capture_native(cg_native_fn fn, void *ctx, int64_t arg, int64_t *index);
/* The step's integer inputs: ops whose integer arrays were read from inside one of these
 * re-read them (checked) at each replay. */
void cg_program_bind_index_inputs(cg_program *p, int n, const void *const *ptrs, const int64_t *nbytes);
cg_status cg_program_run(cg_program *p, size_t *pc, int64_t *call);
/* n_calls counts every call point, n_native those of them that run in C */
void cg_program_stats(const cg_program *p, int64_t *n_ops, int64_t *n_calls, int64_t *n_native, int64_t *n_instr);

/* ---- GEMM provider table ---- */
typedef enum { CG_NO_TRANS = 0, CG_TRANS = 1 } cg_trans;
/* Row-major C[M,N] = alpha * op(A)[M,K] op(B)[K,N] + beta * C */
typedef void (*cg_sgemm_fn)(cg_trans ta, cg_trans tb, int64_t M, int64_t N, int64_t K, float alpha,
                            const float *A, int64_t lda, const float *B, int64_t ldb, float beta,
                            float *C, int64_t ldc);
typedef void (*cg_dgemm_fn)(cg_trans ta, cg_trans tb, int64_t M, int64_t N, int64_t K, double alpha,
                            const double *A, int64_t lda, const double *B, int64_t ldb, double beta,
                            double *C, int64_t ldc);
typedef struct {
    const char *name;
    cg_sgemm_fn sgemm;
    cg_dgemm_fn dgemm;
    void (*set_num_threads)(int n);
    const char *(*config)(void);
    /* float32 Y [rows, nout] = X [rows, in] W^T + bias (bias NULL: none) in one pass: 1 when
     * the provider has a kernel for the shape, 0 to use sgemm; NULL when it has none */
    int (*linear_f32)(int64_t rows, int64_t nin, int64_t nout, const float *X, const float *W, const float *bias,
                      float *Y);
} cg_blas_provider;

/* The GEMM shape trace (blas.c), off by default: while on, every GEMM the provider table
 * computes is counted by distinct shape, to tune the kernels on the shapes the steps make.
 * For one thread at a time (a measuring tool). */
typedef struct {
    char kind; /* 's' sgemm, 'd' dgemm, 'l' the provider's float32 linear (X W^T + bias) */
    uint8_t ta, tb;
    int64_t M, N, K, lda, ldb, ldc;
    double beta;
    int64_t count;
} cg_gemm_shape;
void cg_gemm_trace(int on); /* on: forget the shapes traced so far and start; 0: stop */
int cg_gemm_trace_count(void);
const cg_gemm_shape *cg_gemm_trace_at(int i);
int64_t cg_gemm_trace_dropped(void); /* calls not counted because the table was full */

int cg_blas_provider_count(void);
const cg_blas_provider *cg_blas_provider_at(int i);
const cg_blas_provider *cg_blas_current(void);
cg_status cg_blas_select(const char *name);
/* The instruction set of the skinny float32 GEMMs (skinny_gemm.c, AVX-512 only) and of the
 * convolution's float32 data movement (conv.c, AVX-512 or AVX2): the best the CPU has
 * (want -1) or none (CG_SKINNY_OFF: OpenBLAS for every shape), for tests and measurements;
 * returns the one in effect (a level the CPU lacks gives the best it has). */
enum { CG_SKINNY_OFF = 0, CG_SKINNY_AVX2 = 2, CG_SKINNY_AVX512 = 3 };
int cg_skinny_set_isa(int want);
/* The same switch for the small float32 GEMMs (small_gemm.c, AVX-512 or AVX2 + FMA): the
 * best the CPU has (want -1), or CG_SMALL_GEMM_OFF (OpenBLAS for those shapes); returns the
 * one in effect. */
enum { CG_SMALL_GEMM_OFF = 0, CG_SMALL_GEMM_AVX2 = 2, CG_SMALL_GEMM_AVX512 = 3 };
int cg_small_gemm_set_isa(int want);
/* The kernel itself, whatever the rule (tests, the bake-off): C = alpha op(A) op(B) (+ bias, a row vector of N starting the sums; only with alpha 1) +
 * beta C for any shape, K = 0 included: 1 when it computed C, 0 when the kernel is off (then
 * C is untouched). */
int cg_small_sgemm_run(cg_trans ta, cg_trans tb, int64_t M, int64_t N, int64_t K, float alpha, const float *A,
                       int64_t lda, const float *B, int64_t ldb, const float *bias, float beta, float *C,
                       int64_t ldc);
/* Compiler, flags and the CPU features this machine offers, for show_config(). */
const char *cg_build_info(void);
void cg_set_num_threads(int n);
/* Subnormal inputs and results read and written as zero (x86's FTZ and DAZ) on the calling
 * thread, where cgrad's kernels and a one-thread BLAS run; 1 when the CPU has the switch. */
int cg_set_flush_denormal(int on);
int cg_get_num_threads(void);

/* ---- convolution (conv.c) ---- */
/* x [N, C, H, W] (or [N, C, L]: 1-D, H = 1) and w [OC, C/groups, KH, KW] -> y [N, OC, OH, OW]
 * (+ bias [OC], NULL: none). Each 2-array is (H, W): stride, padding before, dilation, and the
 * output size out_hw, which implies the padding after (so 'same' may pad more after). */
cg_status cg_conv(cg_tensor *x, cg_tensor *w, cg_tensor *b, const int64_t *stride, const int64_t *pad,
                  const int64_t *dilation, int64_t groups, const int64_t *out_hw, cg_tensor **out);
/* The adjoints, each differentiable (the taped backward): dX [N, C, H, W] from dY and w; dW
 * [OC, C/groups, KH, KW] from dY and x. */
cg_status cg_conv_dx(cg_tensor *G, cg_tensor *w, const int64_t *stride, const int64_t *pad, const int64_t *dilation,
                     int64_t groups, const int64_t *in_hw, cg_tensor **out);
cg_status cg_conv_dw(cg_tensor *G, cg_tensor *x, const int64_t *stride, const int64_t *pad, const int64_t *dilation,
                     int64_t groups, const int64_t *k_hw, cg_tensor **out);

/* ---- end of convolution ---- */

/* ---- pooling (pool.c) ---- */
/* Pooling over the last `spatial` dims (1 or 2) of a tensor; the dims before them are planes
 * pooled alike ([N, C, H, W], [C, H, W], [N, C, L], ...). Per spatial dim d (for 1-D, d = 1
 * is the length and d = 0 a dummy of size 1, filled in by the core): the input and output
 * sizes, and a kernel > 0 (output o reads o * stride - pad + k * dilation, k < kernel, where
 * that lies in the input) or kernel 0, adaptive (o reads [floor(o in / out),
 * ceil((o + 1) in / out))). Averages divide by `divisor` when it is not 0, else by the
 * window's size: with the padding (clipped at the padded end) if count_include_pad, else
 * the input elements it covers. The caller computes the output sizes (PyTorch's formula). */
typedef struct {
    int spatial;
    int count_include_pad;
    int64_t divisor;
    int64_t in_size[2], out_size[2], kernel[2], stride[2], pad[2], dilation[2];
} cg_pool_geom;
/* y = the max of each window, x [..., in] -> [..., out]. indices (NULL: not wanted): an
 * int64 tensor of y's shape, each max's flat index in its input plane (PyTorch's; ties go
 * to the first in scan order, a NaN wins; -1 for a window that covers no input element). */
cg_status cg_max_pool(cg_tensor *x, const cg_pool_geom *geom, cg_tensor **out, cg_tensor **indices);
cg_status cg_avg_pool(cg_tensor *x, const cg_pool_geom *geom, cg_tensor **out);
/* avg_pool's adjoint: g [..., out] -> [..., in], each g spread evenly over its window */
cg_status cg_avg_pool_backward(cg_tensor *g, const cg_pool_geom *geom, cg_tensor **out);
/* g [..., out] added at the arg-maxes of x's windows -> x's shape (no gradient for x) */
cg_status cg_max_pool_backward(cg_tensor *g, cg_tensor *x, const cg_pool_geom *geom, cg_tensor **out);
/* u (x's shape) read at the arg-maxes of x's windows -> [..., out] (no gradient for x) */
cg_status cg_max_pool_select(cg_tensor *u, cg_tensor *x, const cg_pool_geom *geom, cg_tensor **out);
/* The geometry of the pooling op that made t, for the taped rules: its op code, -1 if t was
 * not made by one. */
int cg_pool_node_geom(const cg_tensor *t, cg_pool_geom *geom);

/* ---- end of pooling ---- */

/* ---- normalisation (norm.c) ---- */
/* batch_norm's node->ip[3]: which inputs follow x, and the mode (also the taped rule's to read) */
enum { CG_BN_WEIGHT = 1, CG_BN_BIAS = 2, CG_BN_RUNNING = 4, CG_BN_COUNT = 8, CG_BN_CUMULATIVE = 16, CG_BN_TRAINING = 32 };
/* y = (x - mean_c) / sqrt(var_c + eps) w_c + b_c over x [N, C, *]; weight, bias [C] or NULL.
 * training: the batch's statistics (biased variance), and running_mean/running_var [C] (both
 * or NULL) updated in place: num_batches_tracked (one int64, or NULL) += 1, then
 * r = f stat + (1 - f) r with the unbiased variance, f = momentum, or 1 / num_batches_tracked
 * when cumulative. Otherwise the running statistics are used as they are. */
cg_status cg_batch_norm(cg_tensor *x, cg_tensor *weight, cg_tensor *bias, cg_tensor *running_mean,
                        cg_tensor *running_var, cg_tensor *num_batches_tracked, int training, double momentum,
                        int cumulative, double eps, cg_tensor **out);

/* layer_norm's and rms_norm's node->ip[2]: which inputs follow x (also the taped rule's to read) */
enum { CG_LN_WEIGHT = 1, CG_LN_BIAS = 2 };
/* x [*, S], S = nshape (nd >= 1 dims): each row of prod(S) values normalised by its mean and
 * biased variance (rms: by its root mean square, no mean subtracted, no bias), then times
 * weight and plus bias (each of shape S, or NULL). */
cg_status cg_layer_norm(cg_tensor *x, int nd, const int64_t *nshape, cg_tensor *weight, cg_tensor *bias, double eps,
                        int rms, cg_tensor **out);

/* ---- end of normalisation ---- */

/* ---- embedding and losses (embedding.c, loss.c) ---- */

/* embedding's flags (node->ip[4]): max_norm given, scale_grad_by_freq */
enum { CG_EMB_MAX_NORM = 1, CG_EMB_SCALE_FREQ = 2 };
/* y [ids_shape..., D] = weight [V, D] at the ids (n int64 in [0, V)); padding_idx -1: none.
 * flags CG_EMB_MAX_NORM: the used rows renormalised in place to norm_type-norm <= max_norm. */
cg_status cg_embedding(cg_tensor *weight, const int64_t *ids, int ids_ndim, const int64_t *ids_shape,
                       int64_t padding_idx, double max_norm, double norm_type, int flags, cg_tensor **out);

/* ---- end of embedding and losses ---- */

/* ---- recurrent (rnn.c) ---- */
/* rnn_scan's cell: tanh or relu RNN, LSTM (gates i, f, g, o), GRU (r, z, n), PyTorch's equations */
enum { CG_RNN_TANH = 0, CG_RNN_RELU = 1, CG_RNN_LSTM = 2, CG_RNN_GRU = 3 };
/* The T steps of one layer and direction: xp [T, B, G H] (batch_first [B, T, G H]) is the
 * input projection x W_ih^T + b_ih, w_hh [G H, H] (G: 1, 4, 3 by mode), b_hh [G H], h0 and
 * c0 (LSTM only) [B, H], each NULL for none (zeros). y [T, B, H] (batch_first [B, T, H]),
 * every h_t at its time; LSTM's y is [2, T, B, H] (or [2, B, T, H]), the h_t then the c_t.
 * reverse: t runs from T - 1 down. norms [T] (NULL: none, no grad): backward writes the L2
 * norm of the total dL/dh_t over the batch at each t, in place. */
cg_status cg_rnn_scan(int mode, cg_tensor *xp, cg_tensor *w_hh, cg_tensor *h0, cg_tensor *c0, cg_tensor *b_hh,
                      cg_tensor *norms, int reverse, int batch_first, cg_tensor **out);

/* ---- end of recurrent ---- */

/* ---- attention (attention.c) ---- */
/* y [*, L, Ev] = softmax(scale q k^T + mask) v for q [*, L, E], k [*, S, E], v [*, S, Ev] (the
 * same batch dims *). mask: additive, q's dtype, broadcastable to [*, L, S], or NULL; is_causal:
 * row i sees columns 0..i (not with a mask). entropy: NULL, or prod(*) values of q's dtype into
 * which the forward writes each block's mean row entropy (nats). */
cg_status cg_scaled_dot_product_attention(cg_tensor *q, cg_tensor *k, cg_tensor *v, cg_tensor *mask, int is_causal,
                                          double scale, cg_tensor *entropy, cg_tensor **out);

/* ---- end of attention ---- */

#endif
