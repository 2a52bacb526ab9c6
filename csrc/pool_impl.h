/* pool_impl.h: the pooling loops for one element type, included by pool.c once per dtype
 * (cg_each_dtype.h). Every loop walks the planes, then the output rows i and columns j;
 * output o = (i, j) reads the window rows wh[3i] + a dh (a < wh[3i + 1]) and columns
 * ww[3j] + b dw (b < ww[3j + 1]) of its plane, so padding and clipped windows cost no test
 * per tap. */

/* Max pooling. As PyTorch: a strictly larger value or a NaN takes over, so ties go to the
 * first in scan order (window rows, then columns) and NaN propagates; the arg-max starts at
 * the first tap, so a window of -inf names its first element. */

/* take ? v : old without a branch (for a scalar loop GCC turned the ternary into one, which
 * on data mispredicts half the time), also for the arg-max; the vectorised loops blend. */
typedef __typeof__(_Generic((T)0, float: (uint32_t)0, double: (uint64_t)0)) FN(bits_);
static inline CG_POOL_INLINE T FN(take_)(int take, T v, T old) {
    FN(bits_) a, b, m = (FN(bits_))0 - (FN(bits_))take;
    memcpy(&a, &v, sizeof a);
    memcpy(&b, &old, sizeof b);
    a = (a & m) | (b & ~m);
    memcpy(&v, &a, sizeof v);
    return v;
}

static inline CG_POOL_INLINE int64_t FN(take_index_)(int take, int64_t v, int64_t old) {
    int64_t m = -(int64_t)take;
    return (v & m) | (old & ~m);
}

/* One output's max over taps h0 + a dh (a < nh) by w0 + b dw (b < nw); -1: an empty window */
static inline CG_POOL_INLINE void FN(max_window_)(const T *X, int64_t W, int64_t h0, int64_t nh, int64_t dh,
                                                  int64_t w0, int64_t nw, int64_t dw, T *best_out, int64_t *arg_out) {
    T best = (T)-INFINITY;
    int64_t arg = nh > 0 && nw > 0 ? h0 * W + w0 : -1;
    for (int64_t a = 0; a < nh; a++) {
        int64_t row = (h0 + a * dh) * W + w0;
        for (int64_t b = 0; b < nw; b++) {
            T v = X[row + b * dw];
            int take = (v > best) | (v != v);
            best = FN(take_)(take, v, best);
            arg = FN(take_index_)(take, row + b * dw, arg);
        }
    }
    *best_out = best;
    *arg_out = arg;
}

/* Columns [j0, j1) of one output row, each a full window of kw taps from j s - pad: the
 * columns advance together tap by tap, as independent chains that the compiler vectorises
 * (one window's compare-and-select chain alone runs at a few ns per tap: MaxPool2d(3, 1, 1)
 * of 64 x 16 x 28 x 28 took 27 ms window by window, 4-5 ms this way; PyTorch's 25 ms), in
 * chunks whose running maxes stay in L1. Each window sees its taps in the same order as in
 * max_window_, so both give the same arg-max. */
#define POOL_CHUNK 64
static inline CG_POOL_INLINE void FN(max_full_columns_)(const T *restrict X, int64_t W, int64_t h0, int64_t nh,
                                                        int64_t dh, int64_t j0, int64_t j1, int64_t s, int64_t pad,
                                                        int64_t kw, int64_t dw, T *restrict Y, int64_t *restrict A) {
    T scratch[POOL_CHUNK]; /* the running maxes when only the arg-maxes are wanted */
    for (int64_t c = j0; c < j1; c += POOL_CHUNK) {
        int64_t n = j1 - c < POOL_CHUNK ? j1 - c : POOL_CHUNK, first = h0 * W + c * s - pad;
        /* the maxes and arg-maxes run in the outputs themselves: a copy out of local arrays
         * became a memcpy that cost more than the row of a small input */
        T *restrict best = Y ? Y + c : scratch;
        int64_t *restrict arg = A + c;
        for (int64_t k = 0; k < n; k++) {
            best[k] = (T)-INFINITY;
            arg[k] = first + k * s;
        }
        for (int64_t a = 0; a < nh; a++)
            for (int64_t b = 0; b < kw; b++) {
                int64_t base = (h0 + a * dh) * W + c * s - pad + b * dw;
                const T *restrict x = X + base;
                for (int64_t k = 0; k < n; k++) {
                    T v = x[k * s];
                    int take = (v > best[k]) | (v != v);
                    best[k] = FN(take_)(take, v, best[k]);
                    arg[k] = FN(take_index_)(take, base + k * s, arg[k]);
                }
            }
    }
}
#undef POOL_CHUNK

/* Y[o] = the max of o's window, A[o] its flat index in the plane (-1: an empty window);
 * Y may be NULL (only the arg-maxes are wanted). */
CG_SIMD static void FN(max_pool_fwd_)(const pool_data *pd, const T *X, T *Y, int64_t *A) {
    const cg_pool_geom *g = &pd->geom;
    int64_t H = g->in_size[0], W = g->in_size[1], OH = g->out_size[0], OW = g->out_size[1];
    int64_t dh = g->dilation[0], dw = g->dilation[1];
    const int64_t *wh = pd->win[0], *ww = pd->win[1];
    int64_t jl = pd->full_lo, jh = pd->full_hi;
    if (H == 1 && OH == 1 && wh[1] == 1 && jl == 0 && jh == OW && W == OW * g->stride[1]) {
        /* rows that the windows tile exactly (MaxPool1d(2) of an even length): the planes
         * are one long row of full windows, so the vectorised loop runs over all of them at
         * once instead of a few columns per plane; then the indices are made per plane */
        int64_t s = g->stride[1], kw = g->kernel[1], n = pd->planes * OW;
        if (s == 1) FN(max_full_columns_)(X, W, 0, 1, 1, 0, n, 1, 0, kw, dw, Y, A);
        else if (s == 2) FN(max_full_columns_)(X, W, 0, 1, 1, 0, n, 2, 0, kw, dw, Y, A);
        else FN(max_full_columns_)(X, W, 0, 1, 1, 0, n, s, 0, kw, dw, Y, A);
        for (int64_t p = 0; p < pd->planes; p++)
            for (int64_t j = 0; j < OW; j++) A[p * OW + j] -= p * W;
        return;
    }
    for (int64_t p = 0; p < pd->planes; p++, X += H * W)
        for (int64_t i = 0; i < OH; i++) {
            int64_t h0 = wh[3 * i], nh = wh[3 * i + 1], o = (p * OH + i) * OW;
            /* a few columns (8 x 8 digits pooled by 2: 4) take the window loop, whose running max
             * stays in a register; the columns' loop keeps one per column in memory */
            int full = nh > 0 && jh - jl >= 16;
            if (full) { /* strides 1 and 2 as constants: contiguous or paired loads, not gathers */
                int64_t s = g->stride[1], pad = g->pad[1], kw = g->kernel[1];
                T *y = Y ? Y + o : NULL;
                if (s == 1) FN(max_full_columns_)(X, W, h0, nh, dh, jl, jh, 1, pad, kw, dw, y, A + o);
                else if (s == 2) FN(max_full_columns_)(X, W, h0, nh, dh, jl, jh, 2, pad, kw, dw, y, A + o);
                else FN(max_full_columns_)(X, W, h0, nh, dh, jl, jh, s, pad, kw, dw, y, A + o);
            }
            for (int64_t j = 0; j < OW; j++) {
                if (full && j == jl) j = jh; /* done above */
                if (j == OW) break;
                T best;
                FN(max_window_)(X, W, h0, nh, dh, ww[3 * j], ww[3 * j + 1], dw, &best, A + o + j);
                if (Y) Y[o + j] = best;
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
