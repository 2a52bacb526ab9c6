/* pyop.c: ops written in Python (cgrad.autograd.Function) and tensor hooks
 * (docs/architecture.md, "Python ops and hooks").
 *
 * The core knows no Python: the binding registers callbacks, and a node of op PYTHON holds
 * the binding's object (a Function's ctx, or a non-leaf tensor's hooks) in a storage of no
 * data whose release callback gives the reference back. That storage is the node's
 * saved_out, which the rule does not read otherwise, so the node's ordinary release, and
 * the release of saved values by a backward without retain_graph, let go of the object
 * with no special case (Note [Tape lifetime]).
 */
#include "cg_internal.h"

#include <stdlib.h>

static cg_py_backward_fn py_backward;
static cg_py_leaf_hooks_fn py_leaf_hooks;
static void (*py_release)(void *);

#define PY_FUNCTION 0 /* node->ip[0] */
#define PY_HOOKS 1

void cg_py_set_callbacks(cg_py_backward_fn backward, cg_py_leaf_hooks_fn leaf_hooks, void (*release)(void *)) {
    py_backward = backward;
    py_leaf_hooks = leaf_hooks;
    py_release = release;
}

uint64_t cg_tensor_version(const cg_tensor *t) { return t->storage->version; }

static void release_obj(void *obj) {
    if (py_release) py_release(obj);
}

/* A storage of no data holding obj's reference. */
static cg_storage *holder_new(void *obj) {
    cg_storage *s = cg_malloc(sizeof *s);
    if (!s) {
        release_obj(obj);
        return NULL;
    }
    memset(s, 0, sizeof *s);
    s->refcount = 1;
    s->release = release_obj;
    s->ctx = obj;
    return s;
}

static void set_holder(cg_node *node, cg_storage *holder, int kind) {
    cg_storage_release(node->saved_out);
    node->saved_out = holder;
    node->ip[0] = kind;
}

static cg_status refuse_in_capture(const char *what) {
    return cg_error(CG_ERR_RUNTIME, "cgrad.compile: %s cannot be replayed in C; use it outside the compiled step", what);
}

cg_status cg_py_record(int n_inputs, cg_tensor *const *inputs, cg_tensor *value, void *obj, cg_tensor **out) {
    *out = NULL;
    if (cg_capturing) {
        release_obj(obj);
        return refuse_in_capture("a custom autograd.Function");
    }
    if (value->dtype > CG_F64) { /* the binding detaches integer outputs; this is the core's own guard */
        release_obj(obj);
        return cg_float_only("python_function", value);
    }
    cg_storage *holder = holder_new(obj);
    if (!holder) return cg_error(CG_ERR_NOMEM, "python_function: out of memory");
    cg_tensor *t;
    cg_node *node;
    cg_status st = cg_tensor_detach(value, &t); /* the output is a new tensor: value may be an input */
    if (st || (st = cg_record(CG_OP_PYTHON, n_inputs, inputs, t, &node))) {
        cg_storage_release(holder);
        return st;
    }
    if (node) set_holder(node, holder, PY_FUNCTION);
    else cg_storage_release(holder);
    *out = t;
    return CG_OK;
}

int cg_python_is_hooks(const cg_node *node) { return node->op == CG_OP_PYTHON && node->ip[0] == PY_HOOKS; }

void *cg_py_hook_owner(const cg_tensor *t) {
    return t->node && cg_python_is_hooks(t->node) && t->node->saved_out ? t->node->saved_out->ctx : NULL;
}

/* t (made by node N) becomes the output of a new node H whose one input t0 is a new tensor
 * taking t's place as N's output: H's rule sees t's whole gradient (every use of t adds into
 * H's buffer), runs the hooks and passes their result on to N. */
cg_status cg_py_hook_node(cg_tensor *t, void *obj) {
    if (cg_capturing) {
        release_obj(obj);
        return refuse_in_capture("a tensor hook");
    }
    if (!t->node) {
        release_obj(obj);
        return cg_error(CG_ERR_RUNTIME, "register_hook: the tensor is a leaf");
    }
    cg_storage *holder = holder_new(obj);
    if (!holder) return cg_error(CG_ERR_NOMEM, "register_hook: out of memory");
    cg_tensor *t0;
    cg_status st = cg_tensor_detach(t, &t0);
    if (st) {
        cg_storage_release(holder);
        return st;
    }
    cg_node *made = t->node;
    cg_node *h = cg_node_new(CG_OP_PYTHON, 1, &t0, t, 0);
    if (!h) {
        cg_tensor_release(t0);
        cg_storage_release(holder);
        return cg_error(CG_ERR_NOMEM, "register_hook: out of memory");
    }
    t0->node = made; /* t's reference to N moves to t0 */
    if (made->out == t) made->out = t0;
    cg_tensor_release(t0); /* H holds it */
    h->refcount = 1;
    h->out = t;
    h->id = made->id;
    h->scope = made->scope;
    t->node = h;
    set_holder(h, holder, PY_HOOKS);
    return CG_OK;
}


/* What a callback handed back must have the shape of `like`: checked again here (the binding
 * checks it with a better message) since it is added into a buffer laid out like `like`. */
static cg_status check_grad(const cg_tensor *g, const cg_tensor *like) {
    char b1[CG_SHAPE_BUF], b2[CG_SHAPE_BUF];
    if (g->dtype == like->dtype && g->numel == like->numel) return CG_OK;
    return cg_error(CG_ERR_SHAPE, "backward: a Python backward or hook returned a gradient of shape %s for a tensor of shape %s",
                    cg_shape_str(g->ndim, g->shape, b1, sizeof b1), cg_shape_str(like->ndim, like->shape, b2, sizeof b2));
}

/* Where the user's backward gave no gradient (None, or it raised), a buffer made fresh for
 * this rule still has to be defined: a leaf's new .grad is dropped again (None stays None, as
 * PyTorch), an intermediate one zeroed. */
static void finish_input(cg_node *node, int i, cg_tensor *grad, void **dins) {
    cg_tensor *in = node->inputs[i];
    int fresh = i < 8 && (node->fresh >> i & 1); /* Note [First write] */
    size_t nb = (size_t)in->numel * cg_dtype_size(in->dtype);
    if (!dins[i]) return;
    if (grad) {
        if (fresh) memcpy(dins[i], grad->data, nb);
        else cg_add_into(in->dtype, in->numel, dins[i], grad->data);
    } else if (fresh) {
        if (!in->node && in->grad && in->grad->data == dins[i]) {
            cg_tensor_release(in->grad);
            in->grad = NULL;
            dins[i] = NULL;
        } else {
            memset(dins[i], 0, nb);
        }
    }
}

static cg_status python_rule(cg_node *node, void *g, void **dins) {
    char b1[CG_SHAPE_BUF];
    int n = node->n_inputs;
    cg_tensor *local[16], **grads = n <= 8 ? local : malloc(2 * (size_t)n * sizeof *grads);
    if (!grads) {
        for (int i = 0; i < n && i < 8; i++) finish_input(node, i, NULL, dins);
        return cg_error(CG_ERR_NOMEM, "backward: out of memory");
    }
    cg_tensor **kept = grads + n; /* leaves' .grad, kept alive should user code drop them */
    for (int i = 0; i < n; i++) {
        grads[i] = NULL;
        if ((kept[i] = node->inputs[i]->node ? NULL : node->inputs[i]->grad)) cg_tensor_retain(kept[i]);
    }
    cg_tensor *gt = NULL;
    cg_status st = CG_OK;
    if (!py_backward || !node->saved_out)
        st = cg_error(CG_ERR_RUNTIME, "backward: python_function of shape %s has no backward",
                      cg_shape_str(node->ndim, node->shape, b1, sizeof b1));
    else if ((st = cg_tensor_empty(node->dtype, node->ndim, node->shape, &gt)) == CG_OK) {
        memcpy(gt->data, g, (size_t)node->numel * cg_dtype_size(node->dtype));
        st = py_backward(node->saved_out->ctx, gt, n, node->inputs, grads);
        if (st) cg_error(st, "backward: the backward of a Python function (autograd.Function or hook) raised");
        cg_tensor_release(gt);
    }
    for (int i = 0; i < n && st == CG_OK; i++)
        if (grads[i]) st = check_grad(grads[i], node->inputs[i]);
    if (st == CG_OK && node->ip[0] == PY_HOOKS && grads[0]) /* what flows on, and retain_grad sees */
        memcpy(g, grads[0]->data, (size_t)node->numel * cg_dtype_size(node->dtype));
    for (int i = 0; i < n; i++) {
        finish_input(node, i, st == CG_OK ? grads[i] : NULL, dins);
        cg_tensor_release(grads[i]);
        cg_tensor_release(kept[i]);
    }
    if (grads != local) free(grads);
    return st;
}

void cg_python_bwd(cg_node *node, const void *g, void **dins) {
    cg_rule_status_ = python_rule(node, (void *)g, dins); /* g is node->grad, this node's own buffer */
}

/* Never called: cgrad.compile refuses Python functions while recording. */
void cg_python_replay(cg_node *node) { (void)node; }

cg_status cg_python_leaf_hooks(cg_tensor *leaf, cg_tensor *g, cg_tensor **out) {
    *out = NULL;
    if (cg_capturing) return refuse_in_capture("a tensor hook");
    if (!py_leaf_hooks) {
        cg_tensor_retain(g);
        *out = g;
        return CG_OK;
    }
    cg_status st = py_leaf_hooks(leaf, g, out);
    if (st) return cg_error(st, "backward: a tensor hook raised");
    if (*out && (st = check_grad(*out, leaf))) {
        cg_tensor_release(*out);
        *out = NULL;
    }
    return st;
}
