/* optim.c: parameter updates over all parameters in one call, with PyTorch's rules
 * (torch.optim.SGD / Adam / AdamW, single-tensor form), plus zero_grad and gradient-norm
 * clipping. State buffers live in arrays the caller owns; entries are made here. */
#include "cg_internal.h"
#include "cg_math.h"

static cg_status ensure_state(cg_tensor **slot, const cg_tensor *like) {
    if (*slot) return CG_OK;
    if (!(*slot = cg_grad_like(like->ndim, like->shape, like->dtype)))
        return cg_error(CG_ERR_NOMEM, "optimizer: out of memory for its state");
    return CG_OK;
}

#define CG_IMPL "optim_impl.h"
#include "cg_each_dtype.h"

cg_status cg_sgd_step(int n, cg_tensor **params, cg_tensor **momentum_bufs, double lr, double momentum,
                      double dampening, double weight_decay, int nesterov) {
    uint64_t t0 = cg_prof_on ? cg_now_ns() : 0;
    for (int i = 0; i < n; i++) {
        cg_tensor *p = params[i];
        if (!p->grad) continue;
        cg_tensor *buf = NULL;
        int first = 0;
        if (momentum != 0) {
            first = momentum_bufs[i] == NULL;
            cg_status st = ensure_state(&momentum_bufs[i], p);
            if (st) return st;
            buf = momentum_bufs[i];
        }
        void *B = buf ? buf->data : NULL;
        cg_storage_bump(p->storage);
        if (p->dtype == CG_F32)
            sgd__f32(p->numel, p->data, B, p->grad->data, (float)lr, (float)weight_decay,
                     (float)momentum, (float)(1 - dampening), first, nesterov);
        else
            sgd__f64(p->numel, p->data, B, p->grad->data, lr, weight_decay, momentum, 1 - dampening,
                     first, nesterov);
    }
    if (cg_prof_on) cg_prof_event_add(-1, CG_PHASE_OPTIMIZER, -1, -1, t0, cg_now_ns(), 0, 0);
    return CG_OK;
}

cg_status cg_adam_step(int n, cg_tensor **params, cg_tensor **exp_avg, cg_tensor **exp_avg_sq,
                       int64_t step, double lr, double beta1, double beta2, double eps,
                       double weight_decay, int decoupled) {
    uint64_t t0 = cg_prof_on ? cg_now_ns() : 0;
    double bc1 = 1 - pow(beta1, (double)step), bc2 = 1 - pow(beta2, (double)step);
    for (int i = 0; i < n; i++) {
        cg_tensor *p = params[i];
        if (!p->grad) continue;
        cg_status st;
        if ((st = ensure_state(&exp_avg[i], p)) || (st = ensure_state(&exp_avg_sq[i], p))) return st;
        cg_storage_bump(p->storage);
        /* decoupled: decay the weights, no gradient term; coupled: the other way round */
        double decay = decoupled ? 1 - lr * weight_decay : 1, wd = decoupled ? 0 : weight_decay;
        if (p->dtype == CG_F32)
            adam__f32(p->numel, p->data, exp_avg[i]->data, exp_avg_sq[i]->data, p->grad->data,
                      (float)decay, (float)wd, (float)(1 - beta1), (float)beta2, (float)(1 - beta2),
                      (float)(lr / bc1), (float)sqrt(bc2), (float)eps);
        else
            adam__f64(p->numel, p->data, exp_avg[i]->data, exp_avg_sq[i]->data, p->grad->data, decay,
                      wd, 1 - beta1, beta2, 1 - beta2, lr / bc1, sqrt(bc2), eps);
    }
    if (cg_prof_on) cg_prof_event_add(-1, CG_PHASE_OPTIMIZER, -1, -1, t0, cg_now_ns(), 0, 0);
    return CG_OK;
}

void cg_zero_grad(int n, cg_tensor **params, int set_to_none) {
    for (int i = 0; i < n; i++) {
        cg_tensor *p = params[i];
        if (!p->grad) continue;
        if (set_to_none) {
            cg_tensor_release(p->grad);
            p->grad = NULL;
        } else {
            memset(p->grad->data, 0, (size_t)p->grad->numel * cg_dtype_size(p->grad->dtype));
        }
    }
}

void cg_clip_grad_norm(int n, cg_tensor **params, double max_norm, double *total) {
    double sq = 0;
    for (int i = 0; i < n; i++) {
        cg_tensor *gr = params[i]->grad;
        if (!gr) continue;
        sq = gr->dtype == CG_F32 ? sum_sq__f32(gr->numel, gr->data, sq) : sum_sq__f64(gr->numel, gr->data, sq);
    }
    *total = sqrt(sq);
    double coef = max_norm / (*total + 1e-6);
    if (coef >= 1) return;
    for (int i = 0; i < n; i++) {
        cg_tensor *gr = params[i]->grad;
        if (!gr) continue;
        if (gr->dtype == CG_F32) scale__f32(gr->numel, gr->data, (float)coef);
        else scale__f64(gr->numel, gr->data, coef);
    }
}

/* Adam counts the step before its update (bias correction of step t), SGD after, as
 * cgrad.optim's Python steps always did: a failed update leaves the count as eager's. */
cg_status cg_optim_step(cg_optim *o) {
    cg_status st = CG_OK;
    if (o->kind == CG_OPTIM_ADAM) {
        int64_t n = ++o->step_count;
        for (int i = 0; i < o->n_groups && !st; i++) {
            const cg_optim_group *g = &o->groups[i];
            st = cg_adam_step(g->n, g->params, g->state0, g->state1, n - g->added_at, g->lr, g->beta1, g->beta2,
                              g->eps, g->weight_decay, o->decoupled);
        }
        return st;
    }
    if (o->kind != CG_OPTIM_SGD) return cg_error(CG_ERR_RUNTIME, "optimizer: this optimizer has no C step");
    for (int i = 0; i < o->n_groups; i++) {
        const cg_optim_group *g = &o->groups[i];
        if ((st = cg_sgd_step(g->n, g->params, g->state0, g->lr, g->momentum, g->dampening, g->weight_decay,
                              g->nesterov)))
            return st;
    }
    o->step_count++;
    return CG_OK;
}

void cg_optim_zero_grad(const cg_optim *o, int set_to_none) {
    for (int i = 0; i < o->n_groups; i++) cg_zero_grad(o->groups[i].n, o->groups[i].params, set_to_none);
}

cg_status cg_optim_native_step(void *o, int64_t unused, int *handled) {
    (void)unused;
    cg_optim *opt = o;
    if ((*handled = !opt->stale)) return cg_optim_step(opt);
    return CG_OK;
}

/* zero_grad reads only the groups' parameters, not their hyperparameters */
cg_status cg_optim_native_zero_grad(void *o, int64_t set_to_none, int *handled) {
    const cg_optim *opt = o;
    if ((*handled = !(opt->stale & CG_OPTIM_STALE_GROUPS))) cg_optim_zero_grad(opt, (int)set_to_none);
    return CG_OK;
}
