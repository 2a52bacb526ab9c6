# Declarations of the C core's public API (csrc/cg.h) for the binding.
from libc.stdint cimport int32_t, int64_t, uint8_t, uint64_t

# CG_OP_<NAME> for every op of the registry (csrc/ops.def), generated at build time
include "_op_ids.pxi"

cdef extern from "cg.h" nogil:
    enum: CG_MAX_DIMS
    ctypedef enum cg_dtype:
        CG_F32
        CG_F64
        CG_I64
        CG_I32
        CG_BOOL
        CG_U8
        CG_DTYPE_COUNT
    ctypedef enum cg_status:
        CG_OK
        CG_ERR_SHAPE
        CG_ERR_DTYPE
        CG_ERR_NOMEM
        CG_ERR_INDEX
        CG_ERR_VALUE
        CG_ERR_RUNTIME
    ctypedef struct cg_node:
        pass

    ctypedef struct cg_tensor:
        int64_t refcount
        void *data
        cg_dtype dtype
        int ndim
        int64_t shape[8]
        int64_t numel
        cg_tensor *grad
        cg_node *node
        uint8_t requires_grad
        uint8_t retains_grad
        uint8_t hooked

    const char *cg_last_error()
    int64_t cg_live_bytes()
    int64_t cg_alloc_count()
    int64_t cg_fresh_alloc_count()

    cg_status cg_tensor_empty(cg_dtype dtype, int ndim, const int64_t *shape, cg_tensor **out)
    cg_status cg_tensor_zeros(cg_dtype dtype, int ndim, const int64_t *shape, cg_tensor **out)
    cg_status cg_tensor_external(cg_dtype dtype, int ndim, const int64_t *shape, void *data,
                                 void (*release)(void *) noexcept, void *ctx, cg_tensor **out)
    void cg_tensor_retain(cg_tensor *t)
    void cg_tensor_release(cg_tensor *t)
    size_t cg_dtype_size(cg_dtype dtype)
    const char *cg_dtype_name(cg_dtype dtype)
    int cg_tensor_needs_grad(const cg_tensor *t)
    cg_status cg_tensor_detach(cg_tensor *t, cg_tensor **out)
    cg_status cg_tensor_copy_(cg_tensor *dst, const cg_tensor *src)
    cg_status cg_tensor_fill_(cg_tensor *t, double value)
    cg_status cg_tensor_axpy_(cg_tensor *y, double alpha, const cg_tensor *x)
    cg_status cg_tensor_astype(cg_tensor *t, cg_dtype dtype, cg_tensor **out)

    int cg_grad_enabled()
    void cg_set_grad_enabled(int enabled)

    const char *cg_op_name(int op)
    const char *cg_op_family(int op)
    int cg_op_reads(int op)
    int cg_node_op_of(const cg_tensor *t)
    cg_status cg_unary(int op, cg_tensor *x, double p0, double p1, cg_tensor **out)
    cg_status cg_binary(int op, cg_tensor *a, cg_tensor *b, cg_tensor **out)
    cg_status cg_where(const uint8_t *mask, int ndim, const int64_t *shape, cg_tensor *a,
                       cg_tensor *b, cg_tensor **out)
    cg_status cg_reduce(int op, cg_tensor *x, int axis0, int axis1, int keepdims, cg_tensor **out)
    cg_status cg_softmax(int op, cg_tensor *x, int axis, cg_tensor **out)
    cg_status cg_cumsum(cg_tensor *x, int axis, cg_tensor **out)
    cg_status cg_matmul(cg_tensor *a, cg_tensor *b, cg_tensor **out)
    cg_status cg_linear(cg_tensor *x, cg_tensor *w, cg_tensor *b, cg_tensor **out)
    cg_status cg_gemm(cg_tensor *a, cg_tensor *b, int ta, int tb, cg_tensor **out)
    cg_status cg_reshape(cg_tensor *x, int ndim, const int64_t *shape, cg_tensor **out)
    cg_status cg_permute(cg_tensor *x, const int *perm, cg_tensor **out)
    cg_status cg_scatter_add(cg_tensor *x, const int64_t *index, int64_t n_index, cg_tensor *src,
                             cg_tensor **out)
    cg_status cg_cast(cg_tensor *x, cg_dtype dtype, cg_tensor **out)
    cg_status cg_slice(cg_tensor *x, const int64_t *start, const int64_t *step, const int64_t *len,
                       cg_tensor **out)
    cg_status cg_gather(cg_tensor *x, const int64_t *index, int64_t n_index, cg_tensor **out)
    cg_status cg_concat(int n, cg_tensor **xs, int axis, cg_tensor **out)
    cg_status cg_backward(cg_tensor *root, cg_tensor *grad, int retain_graph)
    cg_status cg_grad(int n_roots, cg_tensor **roots, cg_tensor **seeds, int n_targets,
                      cg_tensor **targets, cg_tensor **out, int retain_graph)
    ctypedef cg_status (*cg_py_backward_fn)(void *obj, cg_tensor *g, int n, cg_tensor *const *inputs,
                                            cg_tensor **grads) noexcept
    ctypedef cg_status (*cg_py_leaf_hooks_fn)(cg_tensor *leaf, cg_tensor *g, cg_tensor **out) noexcept
    void cg_py_set_callbacks(cg_py_backward_fn backward, cg_py_leaf_hooks_fn leaf_hooks,
                             void (*release)(void *) noexcept)
    cg_status cg_py_record(int n_inputs, cg_tensor *const *inputs, cg_tensor *value, void *obj, cg_tensor **out)
    cg_status cg_py_hook_node(cg_tensor *t, void *obj)
    void *cg_py_hook_owner(const cg_tensor *t)
    void *cg_py_node_owner(const cg_tensor *t)
    uint64_t cg_tensor_version(const cg_tensor *t)
    cg_status cg_cross_entropy(cg_tensor *logits, const int64_t *targets, const cg_tensor *weight,
                               int64_t ignore_index, double label_smoothing, int reduction, int nll, cg_tensor **out)
    cg_status cg_sgd_step(int n, cg_tensor **params, cg_tensor **momentum_bufs, double lr,
                          double momentum, double dampening, double weight_decay, int nesterov)
    cg_status cg_adam_step(int n, cg_tensor **params, cg_tensor **exp_avg, cg_tensor **exp_avg_sq,
                           int64_t step, double lr, double beta1, double beta2, double eps,
                           double weight_decay, int decoupled)
    void cg_zero_grad(int n, cg_tensor **params, int set_to_none)
    void cg_clip_grad_norm(int n, cg_tensor **params, double max_norm, double *total)
    enum:
        CG_OPTIM_NONE
        CG_OPTIM_SGD
        CG_OPTIM_ADAM
        CG_OPTIM_STALE_HYPER
        CG_OPTIM_STALE_GROUPS
    ctypedef struct cg_optim_group:
        int n
        cg_tensor **params
        cg_tensor **state0
        cg_tensor **state1
        int64_t added_at
        double lr, momentum, dampening, weight_decay, beta1, beta2, eps
        int nesterov
    ctypedef struct cg_optim:
        int kind, decoupled, stale, n_groups
        int64_t step_count
        cg_optim_group *groups
    cg_status cg_optim_step(cg_optim *o)
    void cg_optim_zero_grad(const cg_optim *o, int set_to_none)
    cg_status cg_optim_native_step(void *o, int64_t unused, int *handled)
    cg_status cg_optim_native_zero_grad(void *o, int64_t set_to_none, int *handled)

    ctypedef struct cg_program:
        pass
    cg_status cg_program_new(cg_program **out)
    void cg_program_free(cg_program *p)
    cg_status cg_capture_begin(cg_program *p)
    cg_program *cg_capture_swap(cg_program *p)
    int cg_capture_active()
    cg_status cg_capture_call(int64_t *index)
    ctypedef cg_status (*cg_native_fn)(void *ctx, int64_t arg, int *handled)
    cg_status cg_capture_native(cg_native_fn fn, void *ctx, int64_t arg, int64_t *index)
    void cg_program_bind_index_inputs(cg_program *p, int n, const void *const *ptrs, const int64_t *nbytes)
    cg_status cg_program_run(cg_program *p, size_t *pc, int64_t *call)
    void cg_program_stats(const cg_program *p, int64_t *n_ops, int64_t *n_calls, int64_t *n_native, int64_t *n_instr)

    void cg_set_anomaly(int enabled)
    int64_t cg_anomaly_node()
    int64_t cg_node_id_of(const cg_tensor *t)
    int cg_node_inputs(const cg_tensor *t, cg_tensor **inputs, int max)
    int cg_node_params(const cg_tensor *t, double *p, int64_t *ip, const void **extra)
    const void *cg_node_key(const cg_tensor *t)

    ctypedef struct cg_prof_event:
        pass
    cg_status cg_profile_start(int64_t capacity)
    void cg_profile_stop()
    void cg_profile_clear()
    const cg_prof_event *cg_profile_events(int64_t *n, int64_t *dropped)
    void cg_profile_set_scope(int32_t scope)
    int32_t cg_profile_scope()

    ctypedef struct cg_blas_provider:
        const char *name
        const char *(*config)()
    int cg_blas_provider_count()
    const cg_blas_provider *cg_blas_provider_at(int i)
    const cg_blas_provider *cg_blas_current()
    cg_status cg_blas_select(const char *name)
    int cg_skinny_set_isa(int want)
    const char *cg_build_info()
    void cg_set_num_threads(int n)
    int cg_set_flush_denormal(int on)
    int cg_get_num_threads()

    # ---- convolution (conv.c) ----
    cg_status cg_conv(cg_tensor *x, cg_tensor *w, cg_tensor *b, const int64_t *stride, const int64_t *pad,
                      const int64_t *dilation, int64_t groups, const int64_t *out_hw, cg_tensor **out)
    cg_status cg_conv_dx(cg_tensor *G, cg_tensor *w, const int64_t *stride, const int64_t *pad,
                         const int64_t *dilation, int64_t groups, const int64_t *in_hw, cg_tensor **out)
    cg_status cg_conv_dw(cg_tensor *G, cg_tensor *x, const int64_t *stride, const int64_t *pad,
                         const int64_t *dilation, int64_t groups, const int64_t *k_hw, cg_tensor **out)

    # ---- end of convolution ----

    # ---- pooling (pool.c) ----
    ctypedef struct cg_pool_geom:
        int spatial
        int count_include_pad
        int64_t divisor
        int64_t in_size[2]
        int64_t out_size[2]
        int64_t kernel[2]
        int64_t stride[2]
        int64_t pad[2]
        int64_t dilation[2]
    cg_status cg_max_pool(cg_tensor *x, const cg_pool_geom *geom, cg_tensor **out, cg_tensor **indices)
    cg_status cg_avg_pool(cg_tensor *x, const cg_pool_geom *geom, cg_tensor **out)
    cg_status cg_avg_pool_backward(cg_tensor *g, const cg_pool_geom *geom, cg_tensor **out)
    cg_status cg_max_pool_backward(cg_tensor *g, cg_tensor *x, const cg_pool_geom *geom, cg_tensor **out)
    cg_status cg_max_pool_select(cg_tensor *u, cg_tensor *x, const cg_pool_geom *geom, cg_tensor **out)
    int cg_pool_node_geom(const cg_tensor *t, cg_pool_geom *geom)

    # ---- end of pooling ----

    # ---- normalisation (norm.c) ----
    enum:
        CG_BN_WEIGHT
        CG_BN_BIAS
        CG_BN_RUNNING
        CG_BN_TRAINING
    cg_status cg_batch_norm(cg_tensor *x, cg_tensor *weight, cg_tensor *bias, cg_tensor *running_mean,
                            cg_tensor *running_var, cg_tensor *num_batches_tracked, int training,
                            double momentum, int cumulative, double eps, cg_tensor **out)

    enum:
        CG_LN_WEIGHT
        CG_LN_BIAS
    cg_status cg_layer_norm(cg_tensor *x, int nd, const int64_t *nshape, cg_tensor *weight, cg_tensor *bias,
                            double eps, int rms, cg_tensor **out)

    # ---- end of normalisation ----

    # ---- embedding and losses (embedding.c, loss.c) ----

    enum:
        CG_EMB_MAX_NORM
        CG_EMB_SCALE_FREQ
    cg_status cg_embedding(cg_tensor *weight, const int64_t *ids, int ids_ndim, const int64_t *ids_shape,
                           int64_t padding_idx, double max_norm, double norm_type, int flags, cg_tensor **out)

    # ---- end of embedding and losses ----

    # ---- recurrent (rnn.c) ----
    enum:
        CG_RNN_TANH
        CG_RNN_RELU
        CG_RNN_LSTM
        CG_RNN_GRU
    cg_status cg_rnn_scan(int mode, cg_tensor *xp, cg_tensor *w_hh, cg_tensor *h0, cg_tensor *c0, cg_tensor *b_hh,
                          cg_tensor *norms, int reverse, int batch_first, cg_tensor **out)

    # ---- end of recurrent ----

    # ---- attention (attention.c) ----
    cg_status cg_scaled_dot_product_attention(cg_tensor *q, cg_tensor *k, cg_tensor *v, cg_tensor *mask,
                                              int is_causal, double scale, cg_tensor *entropy, cg_tensor **out)

    # ---- end of attention ----
