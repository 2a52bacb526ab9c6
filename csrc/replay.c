/* replay.c: record a whole training step once, replay it in C (cgrad.compile).
 *
 * While a program is capturing (thread-local cg_capturing), every op keeps its node, also
 * one that needs no gradient, and the program takes a reference to it (cg_record); a
 * backward call keeps its topological order; a dtype conversion keeps (source, copy); and
 * the binding inserts CALL marks where Python must run again (a user's @replayed function),
 * or NATIVE ones, which run C in its place (an optimizer's step and zero_grad, from a
 * struct of hyperparameters the binding keeps current). Replaying walks the same list: each
 * op recomputes its output into the storage it wrote the first time (its registry entry's
 * replay function), each backward sweeps the saved order, and at a CALL (or a NATIVE point
 * whose struct is stale) the run returns to the caller, which runs the Python and resumes. The same kernels
 * run on the same buffers in the same order, so N replayed steps are bitwise equal to N
 * eager ones.
 *
 * Integer inputs (class targets, gather indices) are copied by their ops; an op whose
 * integer array lay inside one of the step's integer inputs (cg_program_bind_index_inputs)
 * re-reads and re-checks it at the start of every replay. Any other integer array, like any
 * other value made outside the ops, is a constant of the program.
 */
#include "cg_internal.h"

#include <stdlib.h>

_Thread_local cg_program *cg_capturing;

typedef enum { INSTR_OP, INSTR_BACKWARD, INSTR_COPY, INSTR_CALL, INSTR_NATIVE } instr_kind;

typedef struct {
    int kind;
    cg_node *node; /* OP: one reference */
    /* OP with an integer input: where it was read from at record time, and its checks */
    const int64_t *src;
    int64_t n_src, bound;
    uint8_t wrap_negative, bound_src, has_ignore;
    int64_t ignore; /* with has_ignore: a value passed as it is (an ignored target) */
    /* BACKWARD: the sorted nodes (one reference each), the root and the seed (NULL: ones) */
    cg_node **order;
    size_t n_order;
    cg_tensor *root, *seed;
    /* COPY: dst = src converted to dst's dtype (references) */
    cg_tensor *dst, *from;
    int64_t call; /* CALL, NATIVE: the index of its Python fallback */
    /* NATIVE: fn(ctx, arg, &handled) */
    cg_native_fn native;
    void *ctx;
    int64_t arg;
} instr;

struct cg_program {
    instr *code;
    size_t n, cap;
    int64_t n_calls, n_native, n_ops;
};

cg_status cg_program_new(cg_program **out) {
    *out = calloc(1, sizeof **out);
    return *out ? CG_OK : cg_error(CG_ERR_NOMEM, "compile: out of memory");
}

void cg_program_free(cg_program *p) {
    if (!p) return;
    if (cg_capturing == p) cg_capturing = NULL;
    for (size_t i = 0; i < p->n; i++) {
        instr *in = &p->code[i];
        cg_node_release(in->node);
        for (size_t k = 0; k < in->n_order; k++) cg_node_release(in->order[k]);
        free(in->order);
        cg_tensor_release(in->root);
        cg_tensor_release(in->seed);
        cg_tensor_release(in->dst);
        cg_tensor_release(in->from);
    }
    free(p->code);
    free(p);
}

cg_status cg_capture_begin(cg_program *p) {
    if (cg_capturing)
        return cg_error(CG_ERR_RUNTIME, "compile: already recording a step on this thread (compiled steps "
                                        "cannot call each other while recording)");
    cg_capturing = p;
    return CG_OK;
}

cg_program *cg_capture_swap(cg_program *p) {
    cg_program *old = cg_capturing;
    cg_capturing = p;
    return old;
}

int cg_capture_active(void) { return cg_capturing != NULL; }

static instr *append(cg_program *p, int kind) {
    if (p->n == p->cap) {
        size_t cap = p->cap ? 2 * p->cap : 64;
        instr *code = realloc(p->code, cap * sizeof *code);
        if (!code) return NULL;
        p->code = code;
        p->cap = cap;
    }
    instr *in = &p->code[p->n++];
    memset(in, 0, sizeof *in);
    in->kind = kind;
    return in;
}

static cg_status nomem(void) { return cg_error(CG_ERR_NOMEM, "compile: out of memory recording the step"); }

cg_status cg_capture_op(cg_node *node) {
    instr *in = append(cg_capturing, INSTR_OP);
    if (!in) return nomem();
    node->refcount++;
    in->node = node;
    cg_capturing->n_ops++;
    return CG_OK;
}

void cg_capture_note_index(const int64_t *src, int64_t n, int64_t bound, int wrap_negative) {
    cg_program *p = cg_capturing;
    if (!p || !p->n || p->code[p->n - 1].kind != INSTR_OP) return;
    instr *in = &p->code[p->n - 1];
    in->src = src;
    in->n_src = n;
    in->bound = bound;
    in->wrap_negative = (uint8_t)wrap_negative;
    in->has_ignore = 0;
}

void cg_capture_note_index_ignoring(const int64_t *src, int64_t n, int64_t bound, int64_t ignore) {
    cg_capture_note_index(src, n, bound, 0);
    cg_program *p = cg_capturing;
    if (!p || !p->n || p->code[p->n - 1].kind != INSTR_OP) return;
    p->code[p->n - 1].has_ignore = 1;
    p->code[p->n - 1].ignore = ignore;
}

cg_status cg_capture_copy(cg_tensor *dst, cg_tensor *from) {
    instr *in = append(cg_capturing, INSTR_COPY);
    if (!in) return nomem();
    dst->refcount++;
    from->refcount++;
    in->dst = dst;
    in->from = from;
    return CG_OK;
}

cg_status cg_capture_backward(cg_node *const *order, size_t n, cg_tensor *root, cg_tensor *seed) {
    instr *in = append(cg_capturing, INSTR_BACKWARD);
    if (!in) return nomem();
    if (n && !(in->order = malloc(n * sizeof *in->order))) {
        cg_capturing->n--;
        return nomem();
    }
    for (size_t k = 0; k < n; k++) {
        in->order[k] = order[k];
        order[k]->refcount++;
    }
    in->n_order = n;
    in->root = root;
    root->refcount++;
    if ((in->seed = seed)) seed->refcount++;
    return CG_OK;
}

cg_status cg_capture_call(int64_t *index) {
    if (!cg_capturing) return cg_error(CG_ERR_RUNTIME, "compile: not recording");
    instr *in = append(cg_capturing, INSTR_CALL);
    if (!in) return nomem();
    *index = in->call = cg_capturing->n_calls++;
    return CG_OK;
}

cg_status cg_capture_native(cg_native_fn fn, void *ctx, int64_t arg, int64_t *index) {
    cg_status st = cg_capture_call(index);
    if (st) return st;
    instr *in = &cg_capturing->code[cg_capturing->n - 1];
    in->kind = INSTR_NATIVE;
    in->native = fn;
    in->ctx = ctx;
    in->arg = arg;
    cg_capturing->n_native++;
    return CG_OK;
}

void cg_program_stats(const cg_program *p, int64_t *n_ops, int64_t *n_calls, int64_t *n_native, int64_t *n_instr) {
    *n_ops = p->n_ops;
    *n_calls = p->n_calls;
    *n_native = p->n_native;
    *n_instr = (int64_t)p->n;
}

void cg_program_bind_index_inputs(cg_program *p, int n, const void *const *ptrs, const int64_t *nbytes) {
    for (size_t i = 0; i < p->n; i++) {
        instr *in = &p->code[i];
        if (!in->src) continue;
        uintptr_t a = (uintptr_t)in->src, b = a + (uintptr_t)in->n_src * sizeof(int64_t);
        in->bound_src = 0;
        for (int k = 0; k < n && !in->bound_src; k++) {
            uintptr_t lo = (uintptr_t)ptrs[k], hi = lo + (uintptr_t)nbytes[k];
            in->bound_src = a >= lo && b <= hi;
        }
        if (!in->bound_src) in->src = NULL; /* a constant: the op's copy stays as it is */
    }
}

/* Check every bound integer input, then copy it in: nothing runs on a bad index. */
static cg_status refresh_index_inputs(cg_program *p) {
    for (size_t i = 0; i < p->n; i++) {
        instr *in = &p->code[i];
        if (!in->bound_src) continue;
        for (int64_t k = 0; k < in->n_src; k++) {
            int64_t v = in->src[k], lo = in->wrap_negative ? -in->bound : 0;
            if ((v < lo || v >= in->bound) && !(in->has_ignore && v == in->ignore))
                return cg_error(CG_ERR_INDEX, "compile: %s: %s %lld at position %lld is out of range [%lld, %lld); "
                                              "nothing was run",
                                cg_op_name(in->node->op),
                                in->node->op == CG_OP_CROSS_ENTROPY || in->node->op == CG_OP_NLL_LOSS ? "target" : "index",
                                (long long)v, (long long)k, (long long)lo, (long long)in->bound);
        }
    }
    for (size_t i = 0; i < p->n; i++) {
        instr *in = &p->code[i];
        if (!in->bound_src) continue;
        int64_t *dst = in->node->extra;
        for (int64_t k = 0; k < in->n_src; k++) {
            int64_t v = in->src[k];
            dst[k] = v < 0 && in->wrap_negative ? v + in->bound : v;
        }
    }
    return CG_OK;
}

static cg_status replay_op(cg_node *node) {
    uint64_t t0 = cg_prof_on ? cg_now_ns() : 0;
    /* the saved versions become those of this step's values (Note [Versions]) */
    for (int i = 0; i < node->n_inputs; i++) node->versions[i] = node->inputs[i]->storage->version;
    node->versions[node->n_inputs] = node->saved_out->version;
    cg_ops[node->op].replay(node);
    cg_status st = cg_rule_status();
    if (st) return st;
    if (cg_prof_on)
        cg_prof_event_add(node->op, CG_PHASE_FORWARD, node->id, node->scope, t0, cg_now_ns(),
                          cg_op_flops(node->op, node->inputs, node->numel), 0);
    if (cg_anomaly_on && cg_first_nonfinite(node->dtype, node->saved_out->data, node->numel) >= 0)
        return cg_anomaly_error(node->id, "anomaly: op '%s' (node %lld) produced a non-finite value in a replayed step",
                                cg_op_name(node->op), (long long)node->id);
    return CG_OK;
}

cg_status cg_program_run(cg_program *p, size_t *pc, int64_t *call) {
    cg_status st;
    *call = -1;
    if (cg_capturing) return cg_error(CG_ERR_RUNTIME, "compile: cannot replay a step while recording one");
    if (*pc == 0 && (st = refresh_index_inputs(p))) return st;
    while (*pc < p->n) {
        instr *in = &p->code[(*pc)++];
        switch (in->kind) {
        case INSTR_OP:
            if ((st = replay_op(in->node))) return st;
            break;
        case INSTR_COPY:
            cg_copy_values(in->dst, in->from);
            break;
        case INSTR_BACKWARD:
            if ((st = cg_backward_sorted(in->order, in->n_order, in->root, in->seed, 1))) return st;
            break;
        case INSTR_NATIVE: {
            int handled = 0;
            if ((st = in->native(in->ctx, in->arg, &handled))) return st;
            if (handled) break;
            *call = in->call;
            return CG_OK;
        }
        case INSTR_CALL:
            *call = in->call;
            return CG_OK;
        }
    }
    return CG_OK;
}
