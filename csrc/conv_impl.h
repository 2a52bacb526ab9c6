/* conv_impl.h: the convolution's loops for one element type, included by conv.c once per
 * dtype (cg_each_dtype.h). Layouts and names as in conv.c's header comment. */

/* colT [CK, R] from the input view v (conv.c, conv_view): row q = (c, i, j), column
 * r = (n, oh, ow). The view covers every tap and splits each row into its stride phases,
 * so each (q, n, oh) is one contiguous run of OW values: no bounds tests, no strided reads. */
CG_SIMD CG_NO_MEMCPY_CALLS static void FN(im2col_)(const T *restrict src, const conv_geom *g, const conv_view *v,
                                                   T *restrict colT) {
    for (int64_t c = 0; c < g->c; c++)
        for (int64_t i = 0; i < g->kh; i++)
            for (int64_t j = 0; j < g->kw; j++) {
                const T *base = src + c * v->plane + i * g->dh * v->rs + view_tap(g, v, j);
                for (int64_t n = 0; n < g->n; n++)
                    for (int64_t oh = 0; oh < g->oh; oh++, colT += g->ow) {
                        const T *restrict s = base + n * g->c * v->plane + oh * g->sh * v->rs;
                        for (int64_t ow = 0; ow < g->ow; ow++) colT[ow] = s[ow];
                    }
            }
}

/* The adjoint: dst (a view as im2col's) += col2im(dcolT); taps that overlap add. */
CG_SIMD CG_NO_MEMCPY_CALLS static void FN(col2im_)(const T *restrict dcolT, const conv_geom *g, const conv_view *v,
                                                   T *restrict dst) {
    for (int64_t c = 0; c < g->c; c++)
        for (int64_t i = 0; i < g->kh; i++)
            for (int64_t j = 0; j < g->kw; j++) {
                T *base = dst + c * v->plane + i * g->dh * v->rs + view_tap(g, v, j);
                for (int64_t n = 0; n < g->n; n++)
                    for (int64_t oh = 0; oh < g->oh; oh++, dcolT += g->ow) {
                        T *restrict d = base + n * g->c * v->plane + oh * g->sh * v->rs;
                        for (int64_t ow = 0; ow < g->ow; ow++) d[ow] += dcolT[ow];
                    }
            }
}

/* The view's copy of x: rows zero-padded to every tap's extent, each split into its sw
 * stride phases: xv[nc, u, ph, t] = xpadded[nc, u, t sw + ph]. */
CG_SIMD CG_NO_MEMCPY_CALLS static void FN(pad_)(const T *restrict x, const conv_geom *g, const conv_view *v,
                                                T *restrict xv) {
    const int64_t sw = g->sw;
    for (int64_t nc = 0; nc < g->n * g->c; nc++)
        for (int64_t u = 0; u < v->hp; u++) {
            T *restrict row = xv + nc * v->plane + u * v->rs;
            int64_t h = u - g->ph;
            if (h < 0 || h >= g->h) {
                for (int64_t k = 0; k < v->rs; k++) row[k] = 0;
                continue;
            }
            const T *restrict xr = x + (nc * g->h + h) * g->w;
            for (int64_t ph = 0; ph < sw; ph++, row += v->wq)
                for (int64_t t = 0; t < v->wq; t++) { /* input column t sw + ph - pw */
                    int64_t w = t * sw + ph - g->pw;
                    row[t] = w >= 0 && w < g->w ? xr[w] : 0;
                }
        }
}

/* dx (+)= the input's part of the view dxv (written when fresh); the inverse of pad_ */
CG_SIMD CG_NO_MEMCPY_CALLS static void FN(unpad_)(const T *restrict dxv, const conv_geom *g, const conv_view *v,
                                                  int fresh, T *restrict dx) {
    const int64_t sw = g->sw;
    for (int64_t nc = 0; nc < g->n * g->c; nc++)
        for (int64_t h = 0; h < g->h; h++) {
            T *restrict xr = dx + (nc * g->h + h) * g->w;
            int64_t u = h + g->ph;
            if (fresh)
                for (int64_t w = 0; w < g->w; w++) xr[w] = 0;
            if (u >= v->hp) continue; /* a row no tap reaches */
            const T *row = dxv + nc * v->plane + u * v->rs;
            for (int64_t ph = 0; ph < sw; ph++, row += v->wq)
                for (int64_t t = 0; t < v->wq; t++) {
                    int64_t w = t * sw + ph - g->pw;
                    if (w >= 0 && w < g->w) xr[w] += row[t];
                }
        }
}

/* y [N, OC, P] (+)= Yp [OC, N*P] with its first two axes swapped, plus bias (NULL: none) */
CG_SIMD CG_NO_MEMCPY_CALLS static void FN(from_cnp_)(const T *restrict Yp, const T *restrict bias, const conv_geom *g, int add,
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

/* Gp [OC, N*P] from G [N, OC, P] */
CG_SIMD CG_NO_MEMCPY_CALLS static void FN(to_cnp_)(const T *restrict G, const conv_geom *g, T *restrict Gp) {
    const int64_t P = g->oh * g->ow, R = g->n * P;
    for (int64_t n = 0; n < g->n; n++)
        for (int64_t o = 0; o < g->oc; o++) {
            const T *restrict src = G + (n * g->oc + o) * P;
            T *restrict dst = Gp + o * R + n * P;
            for (int64_t p = 0; p < P; p++) dst[p] = src[p];
        }
}

/* db [OC] (written when db_fresh, else added to) = the row sums of Gp [OC, R]: the bias's
 * gradient (16 partial sums per row, so that the sum vectorises) */
CG_SIMD static void FN(cnp_sums_)(const T *restrict Gp, const conv_geom *g, T *restrict db, int db_fresh) {
    const int64_t R = g->n * g->oh * g->ow;
    for (int64_t o = 0; o < g->oc; o++) {
        const T *restrict row = Gp + o * R;
        T part[16] = {0};
        int64_t r = 0;
        for (; r + 16 <= R; r += 16)
            for (int k = 0; k < 16; k++) part[k] += row[r + k];
        T s = 0;
        for (int k = 0; k < 16; k++) s += part[k];
        for (; r < R; r++) s += row[r];
        db[o] = db_fresh ? s : db[o] + s;
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
