/* loss_impl.h: the cross-entropy loops for one element type, included by loss.c once per
 * dtype with T and SFX defined (T also picks cg_math.h's EXP: cg_expf for float32).
 * Sums and the logsumexp are kept in double for both. */


/* X [N, C] -> Y (N losses, or one reduced), lses: each row's logsumexp */
CG_SIMD static void FN(ce_fwd_)(int64_t N, int64_t C, const T *X, const int64_t *tgt, int reduction, T *Y,
                                double *lses) {
    double total = 0;
    T buf[CE_BLOCK], ms[CE_BLOCK];
    int64_t rows_per = C <= CE_BLOCK ? (C ? CE_BLOCK / C : CE_BLOCK) : 1;
    for (int64_t i0 = 0; i0 < N; i0 += rows_per) {
        int64_t nr = N - i0 < rows_per ? N - i0 : rows_per;
        for (int64_t i = 0; i < nr; i++) {
            const T *row = X + (i0 + i) * C;
            T m = row[0];
            int nan = m != m;
            for (int64_t j = 1; j < C; j++) { /* branch-free: a max and a NaN flag */
                m = row[j] > m ? row[j] : m;
                nan |= row[j] != row[j];
            }
            ms[i] = nan ? (T)NAN : m;
        }
        if (C <= CE_BLOCK) { /* the whole block's exps in one flat loop */
            for (int64_t r = 0; r < nr; r++)
                for (int64_t j = 0; j < C; j++) buf[r * C + j] = X[(i0 + r) * C + j] - ms[r];
            for (int64_t k = 0; k < nr * C; k++) buf[k] = EXP(buf[k]);
        }
        for (int64_t i = 0; i < nr; i++) {
            const T *row = X + (i0 + i) * C;
            double s = 0;
            if (C <= CE_BLOCK) {
                for (int64_t j = 0; j < C; j++) s += buf[i * C + j];
            } else {
                for (int64_t j0 = 0; j0 < C; j0 += CE_BLOCK) {
                    int64_t nj = C - j0 < CE_BLOCK ? C - j0 : CE_BLOCK;
                    for (int64_t j = 0; j < nj; j++) buf[j] = EXP(row[j0 + j] - ms[i]);
                    for (int64_t j = 0; j < nj; j++) s += buf[j];
                }
            }
            double lse = (double)ms[i] + log(s); /* s is a double sum: log, not LOG */
            lses[i0 + i] = lse;
            double li = lse - (double)row[tgt[i0 + i]];
            if (reduction == CG_REDUCE_NONE) Y[i0 + i] = (T)li;
            total += li;
        }
    }
    if (reduction != CG_REDUCE_NONE)
        *Y = (T)(reduction == CG_REDUCE_MEAN ? (N ? total / (double)N : NAN) : total);
}

/* As the forward: a block of rows' exps in one flat loop, then dx += g (softmax - onehot).
 * fresh: D is uninitialised and is written (Note [First write]). */
CG_SIMD static void FN(ce_bwd_)(int64_t N, int64_t C, const T *X, const int64_t *tgt, const double *lses,
                                int reduction, const T *G, T *D, int fresh) {
    T buf[CE_BLOCK];
    T g_all = reduction == CG_REDUCE_NONE ? 0 : reduction == CG_REDUCE_MEAN ? G[0] / (T)N : G[0];
    int64_t rows_per = C && C <= CE_BLOCK ? CE_BLOCK / C : 1, cols = C <= CE_BLOCK ? C : CE_BLOCK;
    for (int64_t i0 = 0; i0 < N; i0 += rows_per) {
        int64_t nr = N - i0 < rows_per ? N - i0 : rows_per;
        for (int64_t j0 = 0; j0 < C; j0 += cols) {
            int64_t nj = C - j0 < cols ? C - j0 : cols;
            for (int64_t r = 0; r < nr; r++)
                for (int64_t j = 0; j < nj; j++) buf[r * nj + j] = X[(i0 + r) * C + j0 + j] - (T)lses[i0 + r];
            for (int64_t k = 0; k < nr * nj; k++) buf[k] = EXP(buf[k]);
            for (int64_t r = 0; r < nr; r++) {
                int64_t i = i0 + r;
                T gi = reduction == CG_REDUCE_NONE ? G[i] : g_all;
                T *drow = D + i * C + j0;
                if (fresh)
                    for (int64_t j = 0; j < nj; j++) drow[j] = (T)0 + gi * buf[r * nj + j];
                else
                    for (int64_t j = 0; j < nj; j++) drow[j] += gi * buf[r * nj + j];
            }
        }
        for (int64_t i = i0; i < i0 + nr; i++) D[i * C + tgt[i]] -= reduction == CG_REDUCE_NONE ? G[i] : g_all;
    }
}
