/* optim.c: parameter updates over all parameters in one call, with PyTorch's rules
 * (torch.optim.SGD / Adam / AdamW, single-tensor form), plus zero_grad and gradient-norm
 * clipping. State buffers live in arrays the caller owns; entries are made here. */
#include "cg_internal.h"

#include <math.h>

static cg_status ensure_state(cg_tensor **slot, const cg_tensor *like) {
    if (*slot) return CG_OK;
    if (!(*slot = cg_grad_like(like->ndim, like->shape, like->dtype)))
        return cg_error(CG_ERR_NOMEM, "optimizer: out of memory for its state");
    return CG_OK;
}

/* g = grad + wd p; buf = first ? g : momentum buf + (1 - dampening) g;
 * g = nesterov ? g + momentum buf : buf;  p -= lr g */
#define SGD_LOOP(T)                                                                            \
    do {                                                                                       \
        T *P = p->data, *B = buf ? buf->data : NULL;                                           \
        const T *G = p->grad->data;                                                            \
        T wd = (T)weight_decay, mom = (T)momentum, damp = (T)(1 - dampening), alr = (T)lr;     \
        for (int64_t k = 0; k < p->numel; k++) {                                               \
            T gk = G[k];                                                                       \
            if (weight_decay != 0) gk += wd * P[k];                                            \
            if (B) {                                                                           \
                B[k] = first ? gk : mom * B[k] + damp * gk;                                    \
                gk = nesterov ? gk + mom * B[k] : B[k];                                        \
            }                                                                                  \
            P[k] -= alr * gk;                                                                  \
        }                                                                                      \
    } while (0)

cg_status cg_sgd_step(int n, cg_tensor **params, cg_tensor **momentum_bufs, double lr, double momentum,
                      double dampening, double weight_decay, int nesterov) {
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
        if (p->dtype == CG_F32) SGD_LOOP(float);
        else SGD_LOOP(double);
    }
    return CG_OK;
}

/* AdamW first decays p *= 1 - lr wd; Adam adds wd p to the gradient instead. Then
 * m = lerp(m, g, 1 - b1); v = b2 v + (1 - b2) g^2;
 * p -= lr / (1 - b1^t) * m / (sqrt(v) / sqrt(1 - b2^t) + eps) */
#define ADAM_LOOP(T, SQRT)                                                                     \
    do {                                                                                       \
        T *P = p->data, *M = exp_avg[i]->data, *V = exp_avg_sq[i]->data;                       \
        const T *G = p->grad->data;                                                            \
        T decay = (T)(1 - lr * weight_decay), wd = (T)weight_decay, w1 = (T)(1 - beta1);       \
        T b2 = (T)beta2, w2 = (T)(1 - beta2), step_size = (T)(lr / bc1), bc2s = (T)sqrt(bc2);  \
        T e = (T)eps;                                                                          \
        for (int64_t k = 0; k < p->numel; k++) {                                               \
            T gk = G[k];                                                                       \
            if (weight_decay != 0) {                                                           \
                if (decoupled) P[k] *= decay;                                                  \
                else gk += wd * P[k];                                                          \
            }                                                                                  \
            M[k] += w1 * (gk - M[k]);                                                          \
            V[k] = V[k] * b2 + w2 * gk * gk;                                                   \
            P[k] -= step_size * (M[k] / (SQRT(V[k]) / bc2s + e));                              \
        }                                                                                      \
    } while (0)

cg_status cg_adam_step(int n, cg_tensor **params, cg_tensor **exp_avg, cg_tensor **exp_avg_sq,
                       int64_t step, double lr, double beta1, double beta2, double eps,
                       double weight_decay, int decoupled) {
    double bc1 = 1 - pow(beta1, (double)step), bc2 = 1 - pow(beta2, (double)step);
    for (int i = 0; i < n; i++) {
        cg_tensor *p = params[i];
        if (!p->grad) continue;
        cg_status st;
        if ((st = ensure_state(&exp_avg[i], p)) || (st = ensure_state(&exp_avg_sq[i], p))) return st;
        if (p->dtype == CG_F32) ADAM_LOOP(float, sqrtf);
        else ADAM_LOOP(double, sqrt);
    }
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
        for (int64_t k = 0; k < gr->numel; k++) {
            double v = gr->dtype == CG_F32 ? ((float *)gr->data)[k] : ((double *)gr->data)[k];
            sq += v * v;
        }
    }
    *total = sqrt(sq);
    double coef = max_norm / (*total + 1e-6);
    if (coef >= 1) return;
    for (int i = 0; i < n; i++) {
        cg_tensor *gr = params[i]->grad;
        if (!gr) continue;
        if (gr->dtype == CG_F32)
            for (int64_t k = 0; k < gr->numel; k++) ((float *)gr->data)[k] *= (float)coef;
        else
            for (int64_t k = 0; k < gr->numel; k++) ((double *)gr->data)[k] *= coef;
    }
}
