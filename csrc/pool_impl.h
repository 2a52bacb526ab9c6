/* pool_impl.h: the pooling loops for one element type, included by pool.c once per dtype
 * (cg_each_dtype.h). Every loop walks the planes, then the output rows i and columns j;
 * output o = (i, j) reads the window rows wh[3i] + a dh (a < wh[3i + 1]) and columns
 * ww[3j] + b dw (b < ww[3j + 1]) of its plane, so padding and clipped windows cost no test
 * per tap. */

/* Y[o] = the max of o's window, A[o] its flat index in the plane (-1: an empty window).
 * As PyTorch: a strictly larger value or a NaN takes over, so ties go to the first in scan
 * order and NaN propagates. Y may be NULL (only the arg-maxes are wanted). */
static void FN(max_pool_fwd_)(const pool_data *pd, const T *X, T *Y, int64_t *A) {
    const cg_pool_geom *g = &pd->geom;
    int64_t H = g->in_size[0], W = g->in_size[1], OH = g->out_size[0], OW = g->out_size[1];
    int64_t dh = g->dilation[0], dw = g->dilation[1];
    const int64_t *wh = pd->win[0], *ww = pd->win[1];
    for (int64_t p = 0; p < pd->planes; p++, X += H * W)
        for (int64_t i = 0; i < OH; i++) {
            int64_t h0 = wh[3 * i], nh = wh[3 * i + 1];
            for (int64_t j = 0; j < OW; j++) {
                int64_t w0 = ww[3 * j], nw = ww[3 * j + 1];
                T best = (T)-INFINITY;
                int64_t arg = -1;
                if (nh > 0 && nw > 0) {
                    arg = h0 * W + w0; /* PyTorch's start: the first tap, even when all are -inf */
                    for (int64_t a = 0; a < nh; a++) {
                        int64_t row = (h0 + a * dh) * W + w0;
                        for (int64_t b = 0; b < nw; b++) {
                            T v = X[row + b * dw];
                            if (v > best || v != v) {
                                best = v;
                                arg = row + b * dw;
                            }
                        }
                    }
                }
                if (Y) *Y++ = best;
                *A++ = arg;
            }
        }
}

/* D[plane][A[o]] += G[o]: max pooling's gradient */
static void FN(max_pool_scatter_)(int64_t planes, int64_t in_plane, int64_t out_plane, const int64_t *A,
                                  const T *G, T *D) {
    for (int64_t p = 0; p < planes; p++, D += in_plane)
        for (int64_t o = 0; o < out_plane; o++, A++, G++)
            if (*A >= 0) D[*A] += *G;
}

/* Y[o] = U[plane][A[o]] (0 for an empty window), or += with add: the scatter's adjoint */
static void FN(max_pool_gather_)(int64_t planes, int64_t in_plane, int64_t out_plane, const int64_t *A,
                                 const T *U, T *Y, int add) {
    for (int64_t p = 0; p < planes; p++, U += in_plane)
        for (int64_t o = 0; o < out_plane; o++, A++, Y++) {
            T v = *A >= 0 ? U[*A] : 0;
            *Y = add ? *Y + v : v;
        }
}

/* o's divisor: the override, or the product of the two dims' window counts (as PyTorch
 * divides by (hend - hstart) (wend - wstart)) */
#define POOL_DIVISOR(pd, i, j) \
    ((T)((pd)->geom.divisor ? (pd)->geom.divisor : (pd)->win[0][3 * (i) + 2] * (pd)->win[1][3 * (j) + 2]))

/* Y[o] = (the sum of o's window) / divisor, or += with add (avg_pool_backward's gradient) */
static void FN(avg_pool_fwd_)(const pool_data *pd, const T *X, T *Y, int add) {
    const cg_pool_geom *g = &pd->geom;
    int64_t H = g->in_size[0], W = g->in_size[1], OH = g->out_size[0], OW = g->out_size[1];
    const int64_t *wh = pd->win[0], *ww = pd->win[1];
    for (int64_t p = 0; p < pd->planes; p++, X += H * W)
        for (int64_t i = 0; i < OH; i++) {
            int64_t h0 = wh[3 * i], nh = wh[3 * i + 1];
            for (int64_t j = 0; j < OW; j++, Y++) {
                int64_t w0 = ww[3 * j], nw = ww[3 * j + 1];
                T sum = 0;
                for (int64_t a = 0; a < nh; a++) {
                    const T *row = X + (h0 + a) * W + w0;
                    for (int64_t b = 0; b < nw; b++) sum += row[b];
                }
                T v = sum / POOL_DIVISOR(pd, i, j);
                *Y = add ? *Y + v : v;
            }
        }
}

/* D[each tap of o] += G[o] / divisor: the adjoint of the average */
static void FN(avg_pool_adj_)(const pool_data *pd, const T *G, T *D) {
    const cg_pool_geom *g = &pd->geom;
    int64_t H = g->in_size[0], W = g->in_size[1], OH = g->out_size[0], OW = g->out_size[1];
    const int64_t *wh = pd->win[0], *ww = pd->win[1];
    for (int64_t p = 0; p < pd->planes; p++, D += H * W)
        for (int64_t i = 0; i < OH; i++) {
            int64_t h0 = wh[3 * i], nh = wh[3 * i + 1];
            for (int64_t j = 0; j < OW; j++, G++) {
                int64_t w0 = ww[3 * j], nw = ww[3 * j + 1];
                T v = *G / POOL_DIVISOR(pd, i, j);
                for (int64_t a = 0; a < nh; a++) {
                    T *row = D + (h0 + a) * W + w0;
                    for (int64_t b = 0; b < nw; b++) row[b] += v;
                }
            }
        }
}

#undef POOL_DIVISOR
