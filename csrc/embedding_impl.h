/* embedding_impl.h: the embedding's loops for one element type, included by embedding.c once
 * per dtype with T and SFX defined. W is the table [V, D]; ids, Y and G run over the n ids. */


/* Y[l, :] = W[ids[l], :] (rows of 10-128 values: a loop, not a memcpy call per row) */
CG_NO_MEMCPY_CALLS CG_SIMD static void FN(emb_fwd_)(int64_t n, int64_t D, const int64_t *ids, const T *W, T *Y) {
    for (int64_t l = 0; l < n; l++) {
        const T *w = W + ids[l] * D;
        T *y = Y + l * D;
        for (int64_t j = 0; j < D; j++) y[j] = w[j];
    }
}

/* DW[ids[l], :] += G[l, :] (times 1 / count[ids[l]] when count is given), except the
 * padding row, which gets no gradient (pad < 0: none) */
CG_SIMD static void FN(emb_bwd_)(int64_t n, int64_t D, const int64_t *ids, int64_t pad, const int64_t *count,
                                 const T *G, T *DW) {
    for (int64_t l = 0; l < n; l++) {
        int64_t r = ids[l];
        if (r == pad) continue;
        T *d = DW + r * D;
        const T *g = G + l * D;
        if (count) {
            T k = (T)1 / (T)count[r];
            for (int64_t j = 0; j < D; j++) d[j] += g[j] * k;
        } else {
            for (int64_t j = 0; j < D; j++) d[j] += g[j];
        }
    }
}

/* max_norm: each row the ids use whose p-norm exceeds max_norm is scaled to max_norm (with
 * PyTorch's 1e-7 in the denominator); seen marks the rows done (V bytes, zeroed). Norms are
 * taken in double. */
static void FN(emb_renorm_)(int64_t n, int64_t D, const int64_t *ids, double max_norm, double p, T *W,
                            unsigned char *seen) {
    for (int64_t l = 0; l < n; l++) {
        int64_t r = ids[l];
        if (seen[r]) continue;
        seen[r] = 1;
        T *w = W + r * D;
        double s = 0;
        for (int64_t j = 0; j < D; j++) {
            double a = fabs((double)w[j]);
            s = p == 1 ? s + a : p == 2 ? s + a * a : isinf(p) ? (a > s ? a : s) : s + pow(a, p);
        }
        double norm = p == 1 || isinf(p) ? s : p == 2 ? sqrt(s) : pow(s, 1 / p);
        if (norm > max_norm) {
            T k = (T)(max_norm / (norm + 1e-7)); /* the factor in T, as PyTorch's row *= scale */
            for (int64_t j = 0; j < D; j++) w[j] *= k;
        }
    }
}
