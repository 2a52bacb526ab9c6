/* loss_impl.h: the cross-entropy loops for one element type, included by loss.c once per
 * dtype with T and SFX defined (T also picks cg_math.h's EXP_NEG: the float32 exp of fastmath.h,
 * whose arguments here, x - max and x - logsumexp, are at most a rounding above 0).
 * Sums and the logsumexp are kept in double for both. ce_params (loss.c) holds the class
 * weights, ignore_index and the label smoothing. */


/* A row's max (NaN if any is NaN) and its sum in double, each over CE_LANES independent
 * lanes: one running max or sum is a chain of C dependent operations (latency-bound: over
 * 32 rows of 27 classes the two chains were most of the forward). A max is exact in any
 * order; the sum's order changes only its double rounding. The lanes also sum x - x, which
 * is 0 unless some x is NaN or infinite: only then is the row searched for a NaN, so the
 * loop stays in float arithmetic that vectorises (a NaN flag per element did not). */
static inline T FN(ce_row_max_)(int64_t C, const T *restrict row) {
    T m[CE_LANES], z[CE_LANES];
    for (int l = 0; l < CE_LANES; l++) m[l] = row[0], z[l] = 0;
    int64_t j = 0;
    for (; j + CE_LANES <= C; j += CE_LANES)
        for (int l = 0; l < CE_LANES; l++) {
            m[l] = row[j + l] > m[l] ? row[j + l] : m[l];
            z[l] += row[j + l] - row[j + l];
        }
    for (; j < C; j++) {
        m[0] = row[j] > m[0] ? row[j] : m[0];
        z[0] += row[j] - row[j];
    }
    T best = m[0], zs = z[0];
    for (int l = 1; l < CE_LANES; l++) best = m[l] > best ? m[l] : best, zs += z[l];
    if (zs != zs)
        for (j = 0; j < C; j++)
            if (row[j] != row[j]) return (T)NAN;
    return best;
}

static inline double FN(ce_sum_)(int64_t n, const T *restrict v) {
    double acc[CE_LANES] = {0};
    int64_t j = 0;
    for (; j + CE_LANES <= n; j += CE_LANES)
        for (int l = 0; l < CE_LANES; l++) acc[l] += v[j + l];
    for (; j < n; j++) acc[0] += v[j];
    double s = 0;
    for (int l = 0; l < CE_LANES; l++) s += acc[l];
    return s;
}

/* X [N, C] -> Y (N losses, or one reduced), lses: each row's logsumexp. Returns the mean's
 * denominator: the summed weights of the rows not ignored (their count without weights). */
CG_SIMD static double FN(ce_fwd_)(int64_t N, int64_t C, const T *X, const int64_t *tgt, const ce_params *cp,
                                  int reduction, T *Y, double *lses) {
    double total = 0, denom = 0, eps = cp->smoothing, wsum = cp->w ? cp->wsum : (double)C;
    T buf[CE_BLOCK], ms[CE_BLOCK];
    int64_t rows_per = C <= CE_BLOCK ? (C ? CE_BLOCK / C : CE_BLOCK) : 1;
    for (int64_t i0 = 0; i0 < N; i0 += rows_per) {
        int64_t nr = N - i0 < rows_per ? N - i0 : rows_per;
        for (int64_t i = 0; i < nr; i++) {
            ms[i] = FN(ce_row_max_)(C, X + (i0 + i) * C);
        }
        if (C <= CE_BLOCK) { /* the whole block's exps in one flat loop */
            for (int64_t r = 0; r < nr; r++)
                for (int64_t j = 0; j < C; j++) buf[r * C + j] = X[(i0 + r) * C + j] - ms[r];
            for (int64_t k = 0; k < nr * C; k++) buf[k] = EXP_NEG(buf[k]);
        }
        for (int64_t i = 0; i < nr; i++) {
            const T *row = X + (i0 + i) * C;
            double s = 0;
            if (C <= CE_BLOCK) {
                s = FN(ce_sum_)(C, buf + i * C);
            } else {
                for (int64_t j0 = 0; j0 < C; j0 += CE_BLOCK) {
                    int64_t nj = C - j0 < CE_BLOCK ? C - j0 : CE_BLOCK;
                    for (int64_t j = 0; j < nj; j++) buf[j] = EXP_NEG(row[j0 + j] - ms[i]);
                    s += FN(ce_sum_)(nj, buf);
                }
            }
            double lse = (double)ms[i] + log(s); /* s is a double sum: log, not LOG */
            lses[i0 + i] = lse;
            int64_t t = tgt[i0 + i];
            double li = 0;
            if (t != cp->ignore_index) {
                double wt = cp->w ? cp->w[t] : 1.0;
                li = wt * (lse - (double)row[t]);
                denom += wt;
                if (eps > 0) { /* (eps / C) sum_c w_c (lse - x_c) */
                    double sx = 0;
                    if (cp->w)
                        for (int64_t j = 0; j < C; j++) sx += cp->w[j] * (double)row[j];
                    else
                        for (int64_t j = 0; j < C; j++) sx += (double)row[j];
                    li = (1 - eps) * li + eps / (double)C * (wsum * lse - sx);
                }
            }
            if (reduction == CG_REDUCE_NONE) Y[i0 + i] = (T)li;
            total += li;
        }
    }
    if (reduction != CG_REDUCE_NONE) *Y = (T)(reduction == CG_REDUCE_MEAN ? total / denom : total);
    return denom;
}

/* As the forward: a block of rows' exps in one flat loop, then per row i (s_i its share of g,
 * 0 when ignored) dx_j = s_i (a p_j - (1 - eps) w_t [j == t] - (eps / C) w_j), with
 * a = (1 - eps) w_t + (eps / C) sum_c w_c (w = 1 without weights).
 * fresh: D is uninitialised and is written (Note [First write]). */
CG_SIMD static void FN(ce_bwd_)(int64_t N, int64_t C, const T *X, const int64_t *tgt, const double *lses,
                                const ce_params *cp, int reduction, double denom, const T *G, T *D, int fresh) {
    T buf[CE_BLOCK];
    double eps = cp->smoothing, wsum = cp->w ? cp->wsum : (double)C;
    double g_all = reduction == CG_REDUCE_NONE ? 0 : reduction == CG_REDUCE_MEAN ? (double)G[0] / denom
                                                                                  : (double)G[0];
    int64_t rows_per = C && C <= CE_BLOCK ? CE_BLOCK / C : 1, cols = C <= CE_BLOCK ? C : CE_BLOCK;
    for (int64_t i0 = 0; i0 < N; i0 += rows_per) {
        int64_t nr = N - i0 < rows_per ? N - i0 : rows_per;
        for (int64_t j0 = 0; j0 < C; j0 += cols) {
            int64_t nj = C - j0 < cols ? C - j0 : cols;
            for (int64_t r = 0; r < nr; r++)
                for (int64_t j = 0; j < nj; j++) buf[r * nj + j] = X[(i0 + r) * C + j0 + j] - (T)lses[i0 + r];
            for (int64_t k = 0; k < nr * nj; k++) buf[k] = EXP_NEG(buf[k]);
            for (int64_t r = 0; r < nr; r++) {
                int64_t i = i0 + r, t = tgt[i];
                double si = t == cp->ignore_index ? 0 : reduction == CG_REDUCE_NONE ? (double)G[i] : g_all;
                double wt = si == 0 ? 0 : cp->w ? cp->w[t] : 1.0;
                T gi = (T)(si * ((1 - eps) * wt + eps / (double)C * wsum));
                T *drow = D + i * C + j0;
                if (fresh)
                    for (int64_t j = 0; j < nj; j++) drow[j] = (T)0 + gi * buf[r * nj + j];
                else
                    for (int64_t j = 0; j < nj; j++) drow[j] += gi * buf[r * nj + j];
                if (eps > 0 && si != 0) {
                    T k = (T)(si * eps / (double)C);
                    if (cp->w)
                        for (int64_t j = 0; j < nj; j++) drow[j] -= k * (T)cp->w[j0 + j];
                    else
                        for (int64_t j = 0; j < nj; j++) drow[j] -= k;
                }
            }
        }
        for (int64_t i = i0; i < i0 + nr; i++) {
            int64_t t = tgt[i];
            if (t == cp->ignore_index) continue;
            double si = reduction == CG_REDUCE_NONE ? (double)G[i] : g_all;
            D[i * C + t] -= (T)(si * (1 - eps) * (cp->w ? cp->w[t] : 1.0));
        }
    }
}

/* nll_loss: the input is already log-probabilities, loss_i = -w_t x_t (0 when ignored);
 * returns the mean's denominator as ce_fwd_ does */
static double FN(nll_fwd_)(int64_t N, int64_t C, const T *X, const int64_t *tgt, const ce_params *cp, int reduction,
                           T *Y) {
    double total = 0, denom = 0;
    for (int64_t i = 0; i < N; i++) {
        int64_t t = tgt[i];
        double li = 0;
        if (t != cp->ignore_index) {
            double wt = cp->w ? cp->w[t] : 1.0;
            li = -wt * (double)X[i * C + t];
            denom += wt;
        }
        if (reduction == CG_REDUCE_NONE) Y[i] = (T)li;
        total += li;
    }
    if (reduction != CG_REDUCE_NONE) *Y = (T)(reduction == CG_REDUCE_MEAN ? total / denom : total);
    return denom;
}

/* dx_it = -s_i w_t at the target, 0 elsewhere */
static void FN(nll_bwd_)(int64_t N, int64_t C, const int64_t *tgt, const ce_params *cp, int reduction, double denom,
                         const T *G, T *D, int fresh) {
    double g_all = reduction == CG_REDUCE_NONE ? 0 : reduction == CG_REDUCE_MEAN ? (double)G[0] / denom
                                                                                  : (double)G[0];
    if (fresh)
        for (int64_t k = 0; k < N * C; k++) D[k] = 0;
    for (int64_t i = 0; i < N; i++) {
        int64_t t = tgt[i];
        if (t == cp->ignore_index) continue;
        double si = reduction == CG_REDUCE_NONE ? (double)G[i] : g_all;
        D[i * C + t] -= (T)(si * (cp->w ? cp->w[t] : 1.0));
    }
}
