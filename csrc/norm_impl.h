/* norm_impl.h: batch norm's loops for one element type, included by norm.c once per dtype
 * with T and SFX defined. x, y, g and dx are [N, C, S] (S: the product of the trailing
 * dims, 1 for an (N, C) input); per-channel values are doubles, and every sum is kept in
 * double. Loops walk memory in order (n, c, then the S values of a row), so an (N, C)
 * input with many channels is read row by row, not one strided column per channel. */


/* mean[c] and sq[c], the sum of squared deviations from it, of the N*S values of channel
 * c: the mean first, then the deviations (two passes: no cancellation of E[x^2] - E[x]^2). */
CG_SIMD static void FN(bn_stats_)(int64_t N, int64_t C, int64_t S, const T *X, double *mean, double *sq) {
    double M = (double)(N * S);
    for (int64_t c = 0; c < C; c++) mean[c] = sq[c] = 0;
    for (int64_t n = 0; n < N; n++)
        for (int64_t c = 0; c < C; c++) {
            const T *row = X + (n * C + c) * S;
            double s = 0;
            for (int64_t j = 0; j < S; j++) s += (double)row[j];
            mean[c] += s;
        }
    for (int64_t c = 0; c < C; c++) mean[c] /= M;
    for (int64_t n = 0; n < N; n++)
        for (int64_t c = 0; c < C; c++) {
            const T *row = X + (n * C + c) * S;
            double m = mean[c], q = 0;
            for (int64_t j = 0; j < S; j++) {
                double d = (double)row[j] - m;
                q += d * d;
            }
            sq[c] += q;
        }
}

/* y = (x - mean) scale + b, b NULL: no bias */
CG_SIMD static void FN(bn_apply_)(int64_t N, int64_t C, int64_t S, const T *X, const double *mean,
                                  const double *scale, const T *B, T *Y) {
    for (int64_t n = 0; n < N; n++)
        for (int64_t c = 0; c < C; c++) {
            const T *row = X + (n * C + c) * S;
            T *out = Y + (n * C + c) * S;
            double m = mean[c], k = scale[c], b = B ? (double)B[c] : 0.0;
            for (int64_t j = 0; j < S; j++) out[j] = (T)(((double)row[j] - m) * k + b);
        }
}

/* sum_g[c] = sum g, sum_gx[c] = sum g (x - mean) over channel c */
CG_SIMD static void FN(bn_grad_sums_)(int64_t N, int64_t C, int64_t S, const T *X, const T *G, const double *mean,
                                      double *sum_g, double *sum_gx) {
    for (int64_t c = 0; c < C; c++) sum_g[c] = sum_gx[c] = 0;
    for (int64_t n = 0; n < N; n++)
        for (int64_t c = 0; c < C; c++) {
            const T *row = X + (n * C + c) * S, *grow = G + (n * C + c) * S;
            double m = mean[c], sg = 0, sgx = 0;
            for (int64_t j = 0; j < S; j++) {
                double g = (double)grow[j];
                sg += g;
                sgx += g * ((double)row[j] - m);
            }
            sum_g[c] += sg;
            sum_gx[c] += sgx;
        }
}

/* dx = k0 (g - k1 - (x - mean) k2) per channel; written when fresh, else added */
CG_SIMD static void FN(bn_dx_)(int64_t N, int64_t C, int64_t S, const T *X, const T *G, const double *mean,
                               const double *k0, const double *k1, const double *k2, T *D, int fresh) {
    for (int64_t n = 0; n < N; n++)
        for (int64_t c = 0; c < C; c++) {
            int64_t o = (n * C + c) * S;
            double m = mean[c], a = k0[c], b = k1[c], k = k2[c];
            if (fresh)
                for (int64_t j = 0; j < S; j++)
                    D[o + j] = (T)(a * ((double)G[o + j] - b - ((double)X[o + j] - m) * k));
            else
                for (int64_t j = 0; j < S; j++)
                    D[o + j] += (T)(a * ((double)G[o + j] - b - ((double)X[o + j] - m) * k));
        }
}

/* per-channel doubles into a [C] gradient buffer: written when fresh, else added */
static void FN(bn_channel_out_)(int64_t C, const double *v, T *D, int fresh) {
    for (int64_t c = 0; c < C; c++) D[c] = fresh ? (T)v[c] : D[c] + (T)v[c];
}

/* running = f v / div + (1 - f) running (PyTorch's order of operations) */
static void FN(bn_running_)(int64_t C, T *R, const double *v, double div, double f) {
    for (int64_t c = 0; c < C; c++) R[c] = (T)(f * (v[c] / div) + (1 - f) * (double)R[c]);
}

/* v[c] = R[c] as doubles (the running statistics of evaluation mode) */
static void FN(bn_load_)(int64_t C, const T *R, double *v) {
    for (int64_t c = 0; c < C; c++) v[c] = (double)R[c];
}

/* ---- layer norm and RMS norm: rows of D values, x [M, D] ----
 * In x's own precision, as PyTorch: a float32 row's sums go through 32 float partial sums
 * (no measurable loss at a row's few hundred values, tests/test_norm.py against float64),
 * where double conversions made the op 3x slower. The column sums dw, db, over all M rows,
 * stay double. mean and rstd are kept as doubles; W is x's dtype (the forward's copy). */

/* Each row's statistics (mean 0 for RMS norm; the variance about it: two passes), then
 * y = (x - mean) rstd w + b. W and B may be NULL. */
CG_SIMD static void FN(ln_fwd_)(int64_t M, int64_t D, int rms, double eps, const T *restrict X, const T *W,
                                const T *B, double *mean, double *rstd, T *restrict Y) {
    for (int64_t i = 0; i < M; i++) {
        const T *x = X + i * D;
        T *y = Y + i * D;
        T m = 0, q;
        if (!rms) {
            LN_SUM32(T, D, x[j], m);
            m /= (T)D;
        }
        LN_SUM32(T, D, (x[j] - m) * (x[j] - m), q);
        double r = 1 / sqrt((double)q / (double)D + eps);
        mean[i] = (double)m;
        rstd[i] = r;
        T rt = (T)r;
        if (W && B)
            for (int64_t j = 0; j < D; j++) y[j] = (x[j] - m) * rt * W[j] + B[j];
        else if (W)
            for (int64_t j = 0; j < D; j++) y[j] = (x[j] - m) * rt * W[j];
        else if (B)
            for (int64_t j = 0; j < D; j++) y[j] = (x[j] - m) * rt + B[j];
        else
            for (int64_t j = 0; j < D; j++) y[j] = (x[j] - m) * rt;
    }
}

/* The closed form per row, with xhat = (x - mean) rstd and gw = g w:
 *     dx = rstd (gw - mean(gw) - xhat mean(gw xhat))     (RMS norm: no mean(gw) term)
 * and the column sums dw += g xhat, db += g into SW, SB (D doubles each, or NULL).
 * DX NULL: x needs no gradient; fresh: DX is written, else added to. */
CG_SIMD static void FN(ln_bwd_)(int64_t M, int64_t D, int rms, const T *restrict X, const T *restrict G,
                                const T *W, const double *mean, const double *rstd, T *restrict DX, int fresh,
                                double *restrict SW, double *restrict SB) {
    for (int64_t i = 0; i < M; i++) {
        const T *x = X + i * D, *g = G + i * D;
        T m = (T)mean[i], r = (T)rstd[i], a, c;
        /* the row's two sums apart from the column sums, and W tested outside the loops, so
         * that each loop vectorises */
#define LN_XH ((x[j] - m) * r)
        if (W) {
            LN_SUM32(T, D, g[j] * W[j], a);
            LN_SUM32(T, D, g[j] * W[j] * LN_XH, c);
        } else {
            LN_SUM32(T, D, g[j], a);
            LN_SUM32(T, D, g[j] * LN_XH, c);
        }
        if (SW && SB)
            for (int64_t j = 0; j < D; j++) {
                SW[j] += (double)(g[j] * LN_XH);
                SB[j] += (double)g[j];
            }
        else if (SW)
            for (int64_t j = 0; j < D; j++) SW[j] += (double)(g[j] * LN_XH);
        else if (SB)
            for (int64_t j = 0; j < D; j++) SB[j] += (double)g[j];
        if (!DX) continue;
        a = rms ? 0 : a / (T)D;
        c /= (T)D;
        T *dx = DX + i * D;
        if (W && fresh)
            for (int64_t j = 0; j < D; j++) dx[j] = r * (g[j] * W[j] - a - LN_XH * c);
        else if (W)
            for (int64_t j = 0; j < D; j++) dx[j] += r * (g[j] * W[j] - a - LN_XH * c);
        else if (fresh)
            for (int64_t j = 0; j < D; j++) dx[j] = r * (g[j] - a - LN_XH * c);
        else
            for (int64_t j = 0; j < D; j++) dx[j] += r * (g[j] - a - LN_XH * c);
#undef LN_XH
    }
}
