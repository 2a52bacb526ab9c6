/* conv_impl.h: the convolution's loops for one element type, included by conv.c once per
 * dtype (cg_each_dtype.h). Layouts and names as in conv.c's header comment. */

/* colT [CK, R] from x: row q = (c, i, j), column r = (n, oh, ow); 0 where the tap is in the padding.
 * Rows are written contiguously; for each output row only the range of ow whose tap lies
 * inside the input is read, the edges are zero-filled. */
CG_SIMD static void FN(im2col_)(const T *restrict x, const conv_geom *g, T *restrict colT) {
    const int64_t R = g->n * g->oh * g->ow;
    for (int64_t c = 0; c < g->c; c++)
        for (int64_t i = 0; i < g->kh; i++)
            for (int64_t j = 0; j < g->kw; j++) {
                T *restrict row = colT + ((c * g->kh + i) * g->kw + j) * R;
                int64_t lo, hi; /* valid ow: 0 <= ow*sw - pw + j*dw < w */
                valid_range(g->ow, g->sw, j * g->dw - g->pw, g->w, &lo, &hi);
                for (int64_t n = 0; n < g->n; n++) {
                    const T *xc = x + (n * g->c + c) * g->h * g->w;
                    for (int64_t oh = 0; oh < g->oh; oh++, row += g->ow) {
                        int64_t ih = oh * g->sh - g->ph + i * g->dh;
                        if (ih < 0 || ih >= g->h) {
                            for (int64_t ow = 0; ow < g->ow; ow++) row[ow] = 0;
                            continue;
                        }
                        const T *xr = xc + ih * g->w + (j * g->dw - g->pw);
                        for (int64_t ow = 0; ow < lo; ow++) row[ow] = 0;
                        if (g->sw == 1)
                            for (int64_t ow = lo; ow < hi; ow++) row[ow] = xr[ow];
                        else
                            for (int64_t ow = lo; ow < hi; ow++) row[ow] = xr[ow * g->sw];
                        for (int64_t ow = hi; ow < g->ow; ow++) row[ow] = 0;
                    }
                }
            }
}

/* dx [N, C, H, W] += col2im(dcolT): the adjoint of im2col (taps that overlap add) */
CG_SIMD static void FN(col2im_)(const T *restrict dcolT, const conv_geom *g, T *restrict dx) {
    const int64_t R = g->n * g->oh * g->ow;
    for (int64_t c = 0; c < g->c; c++)
        for (int64_t i = 0; i < g->kh; i++)
            for (int64_t j = 0; j < g->kw; j++) {
                const T *restrict row = dcolT + ((c * g->kh + i) * g->kw + j) * R;
                int64_t lo, hi;
                valid_range(g->ow, g->sw, j * g->dw - g->pw, g->w, &lo, &hi);
                for (int64_t n = 0; n < g->n; n++) {
                    T *xc = dx + (n * g->c + c) * g->h * g->w;
                    for (int64_t oh = 0; oh < g->oh; oh++, row += g->ow) {
                        int64_t ih = oh * g->sh - g->ph + i * g->dh;
                        if (ih < 0 || ih >= g->h) continue;
                        T *xr = xc + ih * g->w + (j * g->dw - g->pw);
                        if (g->sw == 1)
                            for (int64_t ow = lo; ow < hi; ow++) xr[ow] += row[ow];
                        else
                            for (int64_t ow = lo; ow < hi; ow++) xr[ow * g->sw] += row[ow];
                    }
                }
            }
}

/* y [N, OC, P] (+)= Yp [OC, N*P] with its first two axes swapped, plus bias (NULL: none) */
CG_SIMD static void FN(from_cnp_)(const T *restrict Yp, const T *restrict bias, const conv_geom *g, int add,
                                  T *restrict y) {
    const int64_t P = g->oh * g->ow, R = g->n * P;
    for (int64_t n = 0; n < g->n; n++)
        for (int64_t o = 0; o < g->oc; o++) {
            const T *src = Yp + o * R + n * P;
            T *dst = y + (n * g->oc + o) * P;
            T b = bias ? bias[o] : 0;
            if (add)
                for (int64_t p = 0; p < P; p++) dst[p] += src[p] + b;
            else
                for (int64_t p = 0; p < P; p++) dst[p] = src[p] + b;
        }
}

/* Gp [OC, N*P] from G [N, OC, P]; db [OC] (NULL: none) gets the sums over n and p, written
 * when db_fresh, else added */
CG_SIMD static void FN(to_cnp_)(const T *restrict G, const conv_geom *g, T *restrict Gp, T *restrict db,
                                int db_fresh) {
    const int64_t P = g->oh * g->ow, R = g->n * P;
    for (int64_t o = 0; o < g->oc; o++) {
        T s = 0;
        for (int64_t n = 0; n < g->n; n++) {
            const T *src = G + (n * g->oc + o) * P;
            T *dst = Gp + o * R + n * P;
            for (int64_t p = 0; p < P; p++) {
                dst[p] = src[p];
                s += src[p];
            }
        }
        if (db) db[o] = db_fresh ? s : db[o] + s;
    }
}

/* Yp [OC, R] = W colT, one GEMM per group */
static void FN(conv_gemm_)(GEMM_FN gemm, const conv_geom *g, const T *W, const T *colT, T *Yp) {
    const int64_t R = g->n * g->oh * g->ow, og = g->oc / g->groups, cgk = g->c / g->groups * g->kh * g->kw;
    for (int64_t q = 0; q < g->groups; q++)
        gemm(CG_NO_TRANS, CG_NO_TRANS, og, R, cgk, 1, W + q * og * cgk, cgk, colT + q * cgk * R, R, 0,
             Yp + q * og * R, R);
}

/* dW [OC, CGK] (beta 0: write, 1: add) = Gp colT^T, one GEMM per group: dW = col(X)^T dZ */
static void FN(conv_dw_gemm_)(GEMM_FN gemm, const conv_geom *g, const T *Gp, const T *colT, T beta, T *dW) {
    const int64_t R = g->n * g->oh * g->ow, og = g->oc / g->groups, cgk = g->c / g->groups * g->kh * g->kw;
    for (int64_t q = 0; q < g->groups; q++)
        gemm(CG_NO_TRANS, CG_TRANS, og, cgk, R, 1, Gp + q * og * R, R, colT + q * cgk * R, R, beta,
             dW + q * og * cgk, cgk);
}

/* dcolT [CK, R] = W^T Gp, one GEMM per group: the dZ W of dX = col2im(dZ W) */
static void FN(conv_dcol_gemm_)(GEMM_FN gemm, const conv_geom *g, const T *W, const T *Gp, T *dcolT) {
    const int64_t R = g->n * g->oh * g->ow, og = g->oc / g->groups, cgk = g->c / g->groups * g->kh * g->kw;
    for (int64_t q = 0; q < g->groups; q++)
        gemm(CG_TRANS, CG_NO_TRANS, cgk, R, og, 1, W + q * og * cgk, cgk, Gp + q * og * R, R, 0,
             dcolT + q * cgk * R, R);
}
