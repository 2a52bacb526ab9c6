/* autograd.c: the tape and the backward pass.
 *
 * cg_record() appends a node to the graph when an op runs with grad mode on and an input
 * needs a gradient. cg_backward() sorts the nodes the root depends on (iterative DFS,
 * post-order), seeds d(root), and sweeps them in reverse, calling each op's rule from
 * the op registry (cg_ops). The whole sweep is one call from Python. cg_node_op_of and
 * cg_node_inputs let the binding walk the graph (grad_fn, drawing it).
 *
 * Note [Gradient accumulation]: every backward rule adds into its inputs' gradient buffers
 * (dx += upstream * local), never assigns. A value used on several paths therefore receives
 * the sum of the gradients of all paths (the lecture's multiple-paths rule) with no special
 * case, and a leaf's .grad keeps accumulating across backward calls until it is zeroed.
 */
#include "cg_internal.h"

#include <stdio.h>
#include <stdlib.h>

/* The op that made t, past the nodes of t's hooks (cg_py_hook_node), which are not ops. */
static const cg_node *made_by(const cg_tensor *t) {
    const cg_node *node = t->node;
    while (node && cg_python_is_hooks(node)) node = node->inputs[0]->node;
    return node;
}

int cg_node_op_of(const cg_tensor *t) { return made_by(t) ? made_by(t)->op : -1; }

void *cg_py_node_owner(const cg_tensor *t) {
    const cg_node *node = made_by(t);
    return node && node->op == CG_OP_PYTHON && node->saved_out ? node->saved_out->ctx : NULL;
}

int cg_node_inputs(const cg_tensor *t, cg_tensor **inputs, int max) {
    const cg_node *node = made_by(t);
    if (!node) return 0;
    for (int i = 0; i < node->n_inputs && i < max; i++) inputs[i] = node->inputs[i];
    return node->n_inputs;
}

int cg_node_params(const cg_tensor *t, double *p, int64_t *ip, const void **extra) {
    const cg_node *node = made_by(t);
    if (!node) return -1;
    p[0] = node->p[0];
    p[1] = node->p[1];
    memcpy(ip, node->ip, sizeof node->ip);
    *extra = node->extra;
    return node->op;
}

const void *cg_node_key(const cg_tensor *t) { return made_by(t); }

static void profile_forward(int op, cg_tensor *const *inputs, const cg_tensor *out, cg_node *node) {
    int32_t sc = cg_profile_scope();
    int64_t id = -1;
    if (node) {
        node->id = id = cg_profile_new_node_id();
        node->scope = sc;
    }
    cg_prof_event_add(op, CG_PHASE_FORWARD, id, sc, cg_prof_t0, cg_now_ns(), cg_op_flops(op, inputs, out->numel),
                      cg_allocated_total - cg_prof_bytes0);
}

static const char *shapes_str(int n, cg_tensor *const *ts, char *buf, size_t size) {
    size_t k = 0;
    buf[0] = 0;
    for (int i = 0; i < n && k + 2 < size; i++) {
        char b[CG_SHAPE_BUF];
        k += (size_t)snprintf(buf + k, size - k, i ? ", %s" : "%s", cg_shape_str(ts[i]->ndim, ts[i]->shape, b, sizeof b));
    }
    return buf;
}

/* Anomaly mode, forward: the first op whose output holds a NaN or Inf is an error. */
static cg_status check_output(int op, int n_inputs, cg_tensor *const *inputs, cg_tensor *out) {
    int64_t bad = cg_first_nonfinite(out->dtype, out->data, out->numel);
    if (bad < 0) return CG_OK;
    double v = out->dtype == CG_F32 ? ((float *)out->data)[bad] : ((double *)out->data)[bad];
    char buf[256];
    /* no node yet: the op has not been recorded */
    cg_status st = cg_anomaly_error(-1, "anomaly: op '%s' produced %g at element %lld of its output, "
                                        "from inputs of shape %s",
                                    cg_op_name(op), v, (long long)bad, shapes_str(n_inputs, inputs, buf, sizeof buf));
    cg_tensor_release(out);
    return st;
}

/* Inlined into cg_record, the per-op path, rather than called; pyop.c gets the exported
 * copy below. */
static inline __attribute__((always_inline)) cg_node *node_new(int op, int n_inputs, cg_tensor *const *inputs,
                                                               cg_tensor *out, int owned) {
    cg_node *node = cg_malloc(sizeof *node + (size_t)n_inputs * sizeof(cg_tensor *) +
                              (size_t)(n_inputs + 1) * sizeof(uint64_t));
    if (!node) return NULL;
    memset(node, 0, sizeof *node);
    node->refcount = owned; /* owned by out when it is part of the graph */
    node->op = op;
    node->n_inputs = n_inputs;
    node->versions = (uint64_t *)(node->inputs + n_inputs);
    for (int i = 0; i < n_inputs; i++) {
        node->inputs[i] = inputs[i];
        node->versions[i] = inputs[i]->storage->version;
        inputs[i]->refcount++;
    }
    node->versions[n_inputs] = out->storage->version;
    node->saved_out = out->storage;
    out->storage->refcount++;
    node->out = owned ? out : NULL;
    node->dtype = out->dtype;
    node->ndim = out->ndim;
    memcpy(node->shape, out->shape, sizeof node->shape);
    node->numel = out->numel;
    if (owned) out->node = node;
    return node;
}

cg_node *cg_node_new(int op, int n_inputs, cg_tensor *const *inputs, cg_tensor *out, int owned) {
    return node_new(op, n_inputs, inputs, out, owned);
}

cg_status cg_record(int op, int n_inputs, cg_tensor *const *inputs, cg_tensor *out, cg_node **pnode) {
    *pnode = NULL;
    if (cg_anomaly_on) {
        cg_status st = check_output(op, n_inputs, inputs, out);
        if (st) return st;
    }
    int needed = 0;
    for (int i = 0; i < n_inputs && cg_grad_enabled(); i++) needed |= cg_tensor_needs_grad(inputs[i]);
    if (!needed && !cg_capturing) {
        if (cg_prof_on) profile_forward(op, inputs, out, NULL);
        return CG_OK;
    }
    cg_node *node = node_new(op, n_inputs, inputs, out, needed);
    if (!node) {
        cg_tensor_release(out);
        return cg_error(CG_ERR_NOMEM, "%s: out of memory recording the tape", cg_op_name(op));
    }
    /* Under cgrad.compile every op is kept for replay, also those that need no gradient
     * (see replay.c); the program holds a reference. */
    if (cg_capturing) {
        cg_status st = cg_capture_op(node);
        if (st) {
            if (needed) out->node = NULL;
            cg_node_release(node);
            cg_tensor_release(out);
            return st;
        }
    }
    *pnode = node;
    if (cg_prof_on) profile_forward(op, inputs, out, node);
    else if (cg_anomaly_on) node->id = cg_profile_new_node_id(); /* to name it in reports */
    return CG_OK;
}

/* ---- backward ---- */
static uint64_t epoch;

/* Accumulate src into the tensor *slot, allocating a zeroed one shaped like `like`. */
static cg_status accumulate(cg_tensor **slot, const cg_tensor *like, const void *src) {
    if (!*slot && !(*slot = cg_grad_like(like->ndim, like->shape, like->dtype)))
        return cg_error(CG_ERR_NOMEM, "backward: out of memory for a gradient");
    cg_add_into(like->dtype, like->numel, (*slot)->data, src);
    return CG_OK;
}

/* Gradient buffers of intermediate nodes live only while the sweep passes them; a buffer
 * freed by one node is usually the right size for the next, so keep a few for reuse. */
#define POOL_SIZE 16
typedef struct {
    void *buf[POOL_SIZE];
    size_t nbytes[POOL_SIZE];
    int n;
} grad_pool;

static void *pool_take(grad_pool *pool, size_t nbytes);

static void *pool_zeroed(grad_pool *pool, size_t nbytes) {
    void *p = pool_take(pool, nbytes);
    if (p) memset(p, 0, nbytes);
    return p;
}

/* See cg_internal.h: a rule's failure, read after each rule */
_Thread_local cg_status cg_rule_status_;

cg_status cg_rule_status(void) {
    cg_status st = cg_rule_status_;
    cg_rule_status_ = CG_OK;
    return st;
}

/* A buffer of nbytes with whatever it held: only for rules that write before they add. */
static void *pool_take(grad_pool *pool, size_t nbytes) {
    for (int i = pool->n - 1; i >= 0; i--)
        if (pool->nbytes[i] == nbytes) {
            void *p = pool->buf[i];
            pool->buf[i] = pool->buf[--pool->n];
            pool->nbytes[i] = pool->nbytes[pool->n];
            return p;
        }
    return cg_malloc(nbytes ? nbytes : 1);
}

static void pool_give(grad_pool *pool, void *p, size_t nbytes) {
    if (!p) return;
    if (pool->n == POOL_SIZE) {
        cg_free(pool->buf[0]);
        pool->buf[0] = pool->buf[--pool->n];
        pool->nbytes[0] = pool->nbytes[pool->n];
    }
    pool->buf[pool->n] = p;
    pool->nbytes[pool->n++] = nbytes;
}

static size_t node_grad_bytes(const cg_node *node) {
    return (size_t)node->numel * cg_dtype_size(node->dtype);
}

typedef struct {
    cg_node *node;
    int next;
} dfs_frame;

/* Post-order of the nodes reachable from the roots' nodes: inputs before the nodes that use
 * them. One DFS per root appends after the earlier ones: a node reachable from an earlier
 * root was placed by that root's DFS, so the concatenation is still in order. */
static cg_status topo_sort(int n_roots, cg_tensor *const *roots, cg_node ***porder, size_t *pn) {
    size_t cap = 64, n = 0, depth = 0, dcap = 64;
    cg_node **order = malloc(cap * sizeof *order);
    dfs_frame *stack = malloc(dcap * sizeof *stack);
    cg_status st = CG_OK;
    uint64_t mark = __atomic_add_fetch(&epoch, 1, __ATOMIC_RELAXED);
    if (!order || !stack) goto nomem;
    for (int r = 0; r < n_roots; r++) {
        cg_node *root = roots[r]->node;
        if (!root || root->mark == mark) continue;
        root->mark = mark;
        stack[depth++] = (dfs_frame){root, 0};
        while (depth) {
            dfs_frame *f = &stack[depth - 1];
            if (f->node->freed) {
                st = cg_error(CG_ERR_RUNTIME,
                              "backward: trying to backward through the graph a second time (the "
                              "saved values of op '%s' were freed by the first backward); pass "
                              "retain_graph=True to the first backward if you need to do this",
                              cg_op_name(f->node->op));
                goto done;
            }
            if (f->next < f->node->n_inputs) {
                cg_node *child = f->node->inputs[f->next++]->node;
                if (child && child->mark != mark) {
                    child->mark = mark;
                    if (depth == dcap) {
                        dfs_frame *s2 = realloc(stack, (dcap *= 2) * sizeof *stack);
                        if (!s2) goto nomem;
                        stack = s2;
                    }
                    stack[depth++] = (dfs_frame){child, 0};
                }
            } else {
                if (f->node->grad) { /* a sweep over it is running: user code called backward from inside one */
                    st = cg_error(CG_ERR_RUNTIME, "backward: op '%s' is being differentiated by a backward that is "
                                                  "running (called from a custom Function's backward or a hook); a "
                                                  "backward cannot reenter the graph it sweeps", cg_op_name(f->node->op));
                    goto done;
                }
                if (n == cap) {
                    cg_node **o2 = realloc(order, (cap *= 2) * sizeof *order);
                    if (!o2) goto nomem;
                    order = o2;
                }
                order[n++] = f->node;
                depth--;
            }
        }
    }
    goto done;
nomem:
    st = cg_error(CG_ERR_NOMEM, "backward: out of memory sorting the graph");
done:
    free(stack);
    if (st) {
        free(order);
        return st;
    }
    *porder = order;
    *pn = n;
    return CG_OK;
}

static cg_status check_seed(const char *op, const cg_tensor *root, const cg_tensor *grad) {
    char b1[CG_SHAPE_BUF], b2[CG_SHAPE_BUF];
    CG_REQUIRE_FLOAT(op, root); /* the sweep's buffers are float: never let an integer seed in */
    if (grad) CG_REQUIRE_FLOAT(op, grad);
    if (!grad) {
        if (root->numel != 1)
            return cg_error(CG_ERR_RUNTIME,
                            "%s: grad can be implicitly created only for a tensor with one "
                            "element, but this tensor has shape %s; pass grad= of that shape or "
                            "reduce it first (e.g. .sum())", op,
                            cg_shape_str(root->ndim, root->shape, b1, sizeof b1));
        return CG_OK;
    }
    if (grad->ndim != root->ndim || memcmp(grad->shape, root->shape, sizeof(int64_t) * root->ndim))
        return cg_error(CG_ERR_SHAPE, "%s: grad has shape %s but the tensor has shape %s", op,
                        cg_shape_str(grad->ndim, grad->shape, b1, sizeof b1),
                        cg_shape_str(root->ndim, root->shape, b2, sizeof b2));
    if (grad->dtype != root->dtype)
        return cg_error(CG_ERR_DTYPE, "%s: grad has dtype %s but the tensor has dtype %s", op,
                        cg_dtype_name(grad->dtype), cg_dtype_name(root->dtype));
    return CG_OK;
}

/* Note [First write]: a gradient buffer made for a rule's input (an intermediate's, or a
 * leaf's .grad after zero_grad(set_to_none=True)) would be zeroed and then added to. The
 * rules of the ops marked WRITES write such a buffer instead (bit i of node->fresh: dins[i]
 * is uninitialised; GEMMs with beta = 0), which saves the memset and a read of the buffer:
 * 25 MB of each per step for the 1024-2048-2048-10 network. Adding to zero and writing give
 * the same values (0 + v is v, up to the sign of a zero). Every other rule gets zeroed
 * buffers, as Note [Gradient accumulation] describes. Which rules write is the
 * first_write column of ops.def. */

/* Anomaly mode, backward: the first rule that leaves a NaN or Inf in an input's gradient. */
static cg_status check_gradients(const cg_node *node, void **dins) {
    char b1[CG_SHAPE_BUF];
    for (int i = 0; i < node->n_inputs; i++) {
        const cg_tensor *in = node->inputs[i];
        if (!dins[i] || cg_first_nonfinite(in->dtype, dins[i], in->numel) < 0) continue;
        return cg_anomaly_error(node->id, "anomaly: the backward of op '%s' (node %lld) produced a non-finite "
                                          "gradient for its input %d of shape %s",
                                cg_op_name(node->op), (long long)node->id, i,
                                cg_shape_str(in->ndim, in->shape, b1, sizeof b1));
    }
    return CG_OK;
}

/* See Note [Versions]; what each rule reads is the reads column of ops.def. */
static cg_status check_versions(const cg_node *node) {
    char b1[CG_SHAPE_BUF];
    for (int i = 0; i <= node->n_inputs; i++) {
        if (!(cg_ops[node->op].reads & (i < node->n_inputs ? (i < 7 ? 1 << i : 0) : R_OUT))) continue;
        const cg_storage *s = i < node->n_inputs ? node->inputs[i]->storage : node->saved_out;
        if (s && s->version != node->versions[i]) {
            const cg_tensor *t = i < node->n_inputs ? node->inputs[i] : NULL;
            return cg_error(CG_ERR_RUNTIME,
                            "backward: %s %s of op '%s' was modified in place after the op used it "
                            "(version %llu, now %llu); its gradient would be wrong. Modify a copy, "
                            "or do the in-place change after backward",
                            t ? "input" : "the output", t ? cg_shape_str(t->ndim, t->shape, b1, sizeof b1)
                                                          : cg_shape_str(node->ndim, node->shape, b1, sizeof b1),
                            cg_op_name(node->op), (unsigned long long)node->versions[i],
                            (unsigned long long)s->version);
        }
    }
    return CG_OK;
}

static cg_status check_root(const char *op, cg_tensor *root, cg_tensor *grad) {
    if (!cg_tensor_needs_grad(root))
        return cg_error(CG_ERR_RUNTIME,
                        "%s: the tensor does not require grad and has no grad_fn (create "
                        "the inputs with requires_grad=True, outside no_grad())", op);
    cg_status st = check_seed(op, root, grad);
    if (st) return st;
    if (root->node && cg_anomaly_on && cg_first_nonfinite(root->dtype, root->data, root->numel) >= 0)
        return cg_anomaly_error(root->node->id, "anomaly: %s: the tensor to differentiate is already not "
                                                "finite (made by op '%s', node %lld); nothing was run", op,
                                cg_op_name(root->node->op), (long long)root->node->id);
    return CG_OK;
}

/* What a sweep does besides .backward()'s plain one: the leaves whose gradient is gathered
 * apart from their .grad (hooked leaves, whose hooks see the sum first; cg_grad's targets),
 * and cg_grad's targets. */
typedef struct {
    cg_tensor *leaf; /* a reference */
    cg_tensor *grad; /* zeroed, then the leaf's gradient from this sweep */
} leaf_slot;

typedef struct {
    int n_targets; /* cg_grad: no .grad is touched; targets[j]'s gradient goes to out[j] */
    cg_tensor *const *targets;
    cg_tensor **out;
    leaf_slot *slots;
    int n_slots, cap_slots;
} sweep_extra;

static int target_index(const sweep_extra *x, const cg_tensor *t) {
    for (int j = 0; j < x->n_targets; j++)
        if (x->targets[j] == t) return j;
    return -1;
}

/* The buffer leaf's gradient is gathered in apart from its .grad, or NULL for a leaf cg_grad
 * does not return. Called only for hooked leaves and in cg_grad: not on backward's hot path. */
static cg_status leaf_slot_buf(sweep_extra *x, cg_tensor *leaf, void **buf) {
    *buf = NULL;
    for (int i = 0; i < x->n_slots; i++)
        if (x->slots[i].leaf == leaf) {
            *buf = x->slots[i].grad->data;
            return CG_OK;
        }
    if (x->targets && target_index(x, leaf) < 0) return CG_OK;
    if (x->n_slots == x->cap_slots) {
        int cap = x->cap_slots ? 2 * x->cap_slots : 8;
        leaf_slot *s2 = realloc(x->slots, (size_t)cap * sizeof *s2);
        if (!s2) return cg_error(CG_ERR_NOMEM, "backward: out of memory");
        x->slots = s2;
        x->cap_slots = cap;
    }
    cg_tensor *g = cg_grad_like(leaf->ndim, leaf->shape, leaf->dtype);
    if (!g) return cg_error(CG_ERR_NOMEM, "backward: out of memory for a leaf's gradient");
    cg_tensor_retain(leaf);
    x->slots[x->n_slots++] = (leaf_slot){leaf, g};
    *buf = g->data;
    return CG_OK;
}

/* After the sweep: each gathered leaf's gradient through its hooks, then into its .grad or,
 * for cg_grad, to its target's slot. */
static cg_status finish_leaves(sweep_extra *x, cg_status st) {
    for (int i = 0; i < x->n_slots; i++) {
        leaf_slot *s = &x->slots[i];
        cg_tensor *g = NULL;
        if (st == CG_OK) {
            if (s->leaf->hooked) st = cg_python_leaf_hooks(s->leaf, s->grad, &g);
            else cg_tensor_retain(g = s->grad);
        }
        if (st == CG_OK && g) {
            if (x->targets) {
                int j = target_index(x, s->leaf);
                cg_tensor_release(x->out[j]);
                x->out[j] = g;
                g = NULL;
            } else {
                st = accumulate(&s->leaf->grad, s->leaf, g->data);
            }
        }
        cg_tensor_release(g);
        cg_tensor_release(s->grad);
        cg_tensor_release(s->leaf);
    }
    free(x->slots);
    return st;
}

/* cg_grad: mark the nodes it needs, in order (inputs first): 1 on a target's node, 2 where an
 * input is a target or a needed node. Other nodes' rules are not run. */
static void mark_wanted(cg_node *const *order, size_t n, const sweep_extra *x) {
    for (size_t k = 0; k < n; k++) order[k]->wanted = 0;
    for (int j = 0; j < x->n_targets; j++)
        if (x->targets[j]->node) x->targets[j]->node->wanted = 1;
    for (size_t k = 0; k < n; k++) {
        cg_node *node = order[k];
        for (int i = 0; i < node->n_inputs; i++) {
            cg_tensor *in = node->inputs[i];
            if (in->node ? in->node->wanted != 0 : target_index(x, in) >= 0) {
                node->wanted |= 2;
                break;
            }
        }
    }
}

/* Inlined into its two callers, so that .backward()'s copy (grad_only 0) has none of
 * cg_grad's tests. */
static inline __attribute__((always_inline)) cg_status sweep(cg_node *const *order, size_t n, int n_roots,
                                                             cg_tensor *const *roots, cg_tensor *const *seeds,
                                                             int retain_graph, sweep_extra *x, const int grad_only);

cg_status cg_backward(cg_tensor *root, cg_tensor *grad, int retain_graph) {
    cg_status st = check_root("backward", root, grad);
    if (st) return st;
    cg_node **order = NULL;
    size_t n = 0;
    if (root->node && (st = topo_sort(1, &root, &order, &n))) return st;
    if (cg_capturing) { /* kept for replay (replay.c), so the saved values must stay */
        retain_graph = 1;
        if ((st = cg_capture_backward(order, n, root, grad))) {
            free(order);
            return st;
        }
    }
    st = cg_backward_sorted(order, n, root, grad, retain_graph);
    free(order);
    return st;
}

cg_status cg_grad(int n_roots, cg_tensor *const *roots, cg_tensor *const *seeds, int n_targets,
                  cg_tensor *const *targets, cg_tensor **out, int retain_graph) {
    for (int j = 0; j < n_targets; j++) out[j] = NULL;
    if (cg_capturing)
        return cg_error(CG_ERR_RUNTIME, "cgrad.compile: autograd.grad cannot be recorded; call it outside the compiled step");
    cg_status st = CG_OK;
    for (int r = 0; r < n_roots && st == CG_OK; r++) st = check_root("grad", roots[r], seeds[r]);
    cg_node **order = NULL;
    size_t n = 0;
    if (st || (st = topo_sort(n_roots, roots, &order, &n))) return st;
    sweep_extra x = {.n_targets = n_targets, .targets = targets, .out = out};
    mark_wanted(order, n, &x);
    st = sweep(order, n, n_roots, roots, seeds, retain_graph, &x, 1);
    free(order);
    if (st)
        for (int j = 0; j < n_targets; j++) {
            cg_tensor_release(out[j]);
            out[j] = NULL;
        }
    return st;
}

cg_status cg_backward_sorted(cg_node *const *order, size_t n, cg_tensor *root, cg_tensor *grad, int retain_graph) {
    sweep_extra x = {0};
    return sweep(order, n, 1, &root, &grad, retain_graph, &x, 0);
}

/* A copy of node's gradient for the cg_grad targets it made. */
static cg_status capture_targets(const cg_node *node, sweep_extra *x) {
    for (int j = 0; j < x->n_targets; j++) {
        if (x->targets[j]->node != node) continue;
        if (!x->out[j] && !(x->out[j] = cg_grad_like(node->ndim, node->shape, node->dtype)))
            return cg_error(CG_ERR_NOMEM, "grad: out of memory for a gradient");
        cg_add_into(node->dtype, node->numel, x->out[j]->data, node->grad);
    }
    return CG_OK;
}

/* Seed d(root): into its node's buffer, or for a leaf root into its .grad (or its slot). */
static cg_status seed_root(grad_pool *pool, cg_tensor *root, cg_tensor *grad, sweep_extra *x) {
    double one64 = 1.0;
    float one32 = 1.0f;
    const void *seed = grad ? grad->data : root->dtype == CG_F32 ? (void *)&one32 : (void *)&one64;
    if (!root->node) {
        void *buf;
        if (!root->hooked && !x->targets) return accumulate(&root->grad, root, seed);
        cg_status st = leaf_slot_buf(x, root, &buf);
        if (buf) cg_add_into(root->dtype, root->numel, buf, seed);
        return st;
    }
    cg_node *node = root->node;
    if (!node->grad && !(node->grad = pool_zeroed(pool, node_grad_bytes(node))))
        return cg_error(CG_ERR_NOMEM, "backward: out of memory for the seed gradient");
    cg_add_into(node->dtype, node->numel, node->grad, seed);
    return CG_OK;
}

/* grad_only: cg_grad's sweep (x->targets set) */
static inline __attribute__((always_inline)) cg_status sweep(cg_node *const *order, size_t n, int n_roots,
                                                             cg_tensor *const *roots, cg_tensor *const *seeds,
                                                             int retain_graph, sweep_extra *x, const int grad_only) {
    cg_status st = CG_OK;
    uint64_t call_t0 = cg_prof_on ? cg_now_ns() : 0;
    grad_pool pool = {.n = 0};
    for (int r = 0; r < n_roots && st == CG_OK; r++) st = seed_root(&pool, roots[r], seeds[r], x);
    void *dins_local[8], **dins = dins_local;
    for (size_t k = n; k-- > 0 && st == CG_OK;) {
        cg_node *node = order[k];
        if (!node->grad) continue; /* no gradient reached it */
        if (grad_only && !node->wanted) {
            pool_give(&pool, node->grad, node_grad_bytes(node));
            node->grad = NULL;
            continue;
        }
        if (node->n_inputs > 8 && dins == dins_local) {
            size_t max_in = 0;
            for (size_t j = 0; j < n; j++)
                if ((size_t)order[j]->n_inputs > max_in) max_in = (size_t)order[j]->n_inputs;
            if (!(dins = malloc(max_in * sizeof *dins))) {
                dins = dins_local;
                st = cg_error(CG_ERR_NOMEM, "backward: out of memory");
                break;
            }
        }
        /* the node's profiler event covers finding (and zeroing) its inputs' buffers too */
        uint64_t t0 = cg_prof_on ? cg_now_ns() : 0;
        int64_t bytes0 = cg_allocated_total;
        /* where each input's gradient goes: its node's buffer, or a leaf's .grad; see
         * Note [First write] for the buffers made here */
        int assigns = cg_ops[node->op].first_write && node->n_inputs <= 8; /* node->fresh has 8 bits */
        node->fresh = 0;
        for (int i = 0; i < node->n_inputs && st == CG_OK; i++) {
            cg_tensor *in = node->inputs[i];
            dins[i] = NULL;
            if (in->node) {
                if (grad_only && !in->node->wanted) continue;
                if (!in->node->grad) {
                    size_t nb = node_grad_bytes(in->node);
                    if (!(in->node->grad = assigns ? pool_take(&pool, nb) : pool_zeroed(&pool, nb)))
                        st = cg_error(CG_ERR_NOMEM, "backward: out of memory for a gradient");
                    else if (assigns)
                        node->fresh |= (uint8_t)(1u << i);
                }
                dins[i] = in->node->grad;
            } else if (in->requires_grad) {
                if (in->hooked | grad_only) { /* gathered apart from .grad (zeroed: no fresh bit) */
                    st = leaf_slot_buf(x, in, &dins[i]);
                    continue;
                }
                if (!in->grad) {
                    if (!assigns) in->grad = cg_grad_like(in->ndim, in->shape, in->dtype);
                    else if (cg_tensor_empty(in->dtype, in->ndim, in->shape, &in->grad)) in->grad = NULL;
                    if (!in->grad) {
                        st = cg_error(CG_ERR_NOMEM, "backward: out of memory for a leaf's gradient");
                        break;
                    }
                    if (assigns) node->fresh |= (uint8_t)(1u << i);
                }
                dins[i] = in->grad->data;
            }
        }
        /* one buffer behind two inputs (x * x): the second write must add to the first */
        for (int i = 0; i < node->n_inputs && node->fresh && st == CG_OK; i++)
            for (int j = i + 1; j < node->n_inputs; j++)
                if (dins[i] && dins[i] == dins[j] && (node->fresh & ((1u << i) | (1u << j)))) {
                    cg_tensor *in = node->inputs[i];
                    memset(dins[i], 0, (size_t)in->numel * cg_dtype_size(in->dtype));
                    node->fresh &= (uint8_t) ~((1u << i) | (1u << j));
                }
        if (st || (st = check_versions(node))) break;
        /* cg_grad: a node whose inputs lead to no target runs no rule, but a hook node still
         * runs its hooks, which decide the target's gradient */
        if (!grad_only || (node->wanted & 2) || cg_python_is_hooks(node)) {
            cg_ops[node->op].bwd(node, node->grad, dins);
            if ((st = cg_rule_status())) break;
        }
        if (cg_anomaly_on && (st = check_gradients(node, dins))) break;
        if (grad_only) st = capture_targets(node, x);
        else if (node->out && node->out->retains_grad)
            st = accumulate(&node->out->grad, node->out, node->grad);
        pool_give(&pool, node->grad, node_grad_bytes(node));
        node->grad = NULL;
        if (!retain_graph) {
            cg_storage_release(node->saved_out);
            node->saved_out = NULL;
            node->freed = 1;
        }
        if (cg_prof_on)
            cg_prof_event_add(node->op, CG_PHASE_BACKWARD, node->id, node->scope, t0, cg_now_ns(), 0,
                              cg_allocated_total - bytes0);
    }
    if (st) /* leave no half-swept buffers behind */
        for (size_t k = 0; k < n; k++) {
            cg_free(order[k]->grad);
            order[k]->grad = NULL;
        }
    if (x->slots) st = finish_leaves(x, st);
    for (int i = 0; i < pool.n; i++) cg_free(pool.buf[i]);
    if (dins != dins_local) free(dins);
    if (cg_prof_on) cg_prof_event_add(-1, CG_PHASE_BWD_CALL, -1, -1, call_t0, cg_now_ns(), 0, 0);
    return st;
}
