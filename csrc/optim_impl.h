/* optim_impl.h: the optimizer loops for one element type, included by optim.c once per
 * dtype with T and SFX defined (T also picks cg_math.h's SQRT). Restrict pointers, so the
 * loops vectorise (the branches are loop-invariant and get unswitched). */


/* g = grad + wd p; buf = first ? g : momentum buf + (1 - dampening) g;
 * g = nesterov ? g + momentum buf : buf;  p -= lr g */
CG_SIMD static void FN(sgd_)(int64_t n, T *restrict P, T *restrict B, const T *restrict G, T lr, T wd, T mom,
                             T damp, int first, int nesterov) {
    if (!B) {
        for (int64_t k = 0; k < n; k++) P[k] -= lr * (G[k] + wd * P[k]);
        return;
    }
    for (int64_t k = 0; k < n; k++) {
        T gk = G[k] + wd * P[k];
        T b = first ? gk : mom * B[k] + damp * gk;
        B[k] = b;
        P[k] -= lr * (nesterov ? gk + mom * b : b);
    }
}

/* AdamW first decays p *= 1 - lr wd; Adam adds wd p to the gradient instead. Then
 * m = lerp(m, g, 1 - b1); v = b2 v + (1 - b2) g^2;
 * p -= lr / (1 - b1^t) * m / (sqrt(v) / sqrt(1 - b2^t) + eps) */
CG_SIMD static void FN(adam_)(int64_t n, T *restrict P, T *restrict M, T *restrict V, const T *restrict G,
                              T decay, T wd, T w1, T b2, T w2, T step_size, T bc2s, T eps) {
    for (int64_t k = 0; k < n; k++) {
        T p = P[k] * decay;
        T gk = G[k] + wd * p;
        T m = M[k] + w1 * (gk - M[k]);
        T v = V[k] * b2 + w2 * gk * gk;
        M[k] = m;
        V[k] = v;
        P[k] = p - step_size * (m / (SQRT(v) / bc2s + eps));
    }
}

/* sq + the sum of squares of x, in double for both dtypes: sixteen running sums (lane j
 * takes the elements j mod 16), so the loop vectorises and is not one chain of dependent
 * adds (4 cycles an element: 0.9 ms for the GPT's 0.8 M gradients), added up last; the
 * order is fixed, so the result is the same on every run. */
CG_SIMD static double FN(sum_sq_)(int64_t n, const T *restrict x, double sq) {
    double lane[16] = {0};
    int64_t k = 0;
    for (; k + 16 <= n; k += 16)
        for (int j = 0; j < 16; j++) lane[j] += (double)x[k + j] * (double)x[k + j];
    for (; k < n; k++) lane[k % 16] += (double)x[k] * (double)x[k];
    for (int w = 8; w >= 1; w /= 2)
        for (int j = 0; j < w; j++) lane[j] += lane[j + w];
    return sq + lane[0];
}

static void FN(scale_)(int64_t n, T *x, T coef) {
    for (int64_t k = 0; k < n; k++) x[k] *= coef;
}
