/* rnn_impl.h: the recurrence's loops for one element type, included by rnn.c once per
 * dtype with T, SFX and GEMM_FN defined (the layouts are rnn.c's header comment).
 *
 * Inside the loops every per-step quantity is gate-major, [rows][B] with the batch
 * contiguous, so each elementwise loop runs over the B lanes of one row (vectorised; in
 * the caller's [B, G H] layout the runs would be the G H = 18 values of one sample). */

/* A [M][B] = W [M, K] X, X [K][B] with row stride ldx, B a multiple of RNN_LANES: each run
 * of lanes sums in registers over K (a BLAS call per step costs more than the 100 x 18 x 6
 * product of the benchmark's GRU). */
CG_SIMD static void FN(rnn_small_mm_)(int64_t M, int64_t K, int64_t B, const T *restrict W, const T *restrict X,
                                      int64_t ldx, T *restrict A) {
    for (int64_t j = 0; j < M; j++) {
        const T *w = W + j * K;
        for (int64_t b0 = 0; b0 < B; b0 += RNN_LANES) {
            T acc[RNN_LANES] = {0};
            for (int64_t k = 0; k < K; k++)
                for (int l = 0; l < RNN_LANES; l++) acc[l] += w[k] * X[k * ldx + b0 + l];
            for (int l = 0; l < RNN_LANES; l++) A[j * B + b0 + l] = acc[l];
        }
    }
}

/* A [GH][B] = W [GH, H] Hs, Hs [H][B] with row stride ldh: the GEMM provider from
 * RNN_GEMM_MIN_H on */
static void FN(rnn_hh_)(GEMM_FN gemm, int64_t GH, int64_t H, int64_t B, const T *W, const T *Hs, int64_t ldh, T *A) {
    if (H >= RNN_GEMM_MIN_H) gemm(CG_NO_TRANS, CG_NO_TRANS, GH, B, H, 1, W, H, Hs, ldh, 0, A, B);
    else FN(rnn_small_mm_)(GH, H, B, W, Hs, ldh, A);
}

/* D [H][B] += W^T dG, dG [GH][B] with row stride ldg; Wt: W transposed [H, GH] (small H),
 * tmp [H][B] scratch */
static void FN(rnn_hh_t_)(GEMM_FN gemm, int64_t GH, int64_t H, int64_t B, const T *W, const T *Wt, const T *dG,
                          int64_t ldg, T *D, T *tmp) {
    if (H >= RNN_GEMM_MIN_H) {
        gemm(CG_TRANS, CG_NO_TRANS, H, B, GH, 1, W, H, dG, ldg, 1, D, B);
        return;
    }
    FN(rnn_small_mm_)(H, GH, B, Wt, dG, ldg, tmp);
    for (int64_t i = 0; i < H * B; i++) D[i] += tmp[i];
}

/* dW[j, k] (+)= sum over c < n of dG[j][c] Hs[k][c] for nj <= 2 rows j and nk <= 4 rows k
 * (constants): eight independent sums, each loaded row used nk or nj times. One sum at a
 * time was a chain of dependent adds, latency-bound at a third of the loads' rate. The sums
 * are vectors of RNN_LANES (GCC's and clang's vector extension): as arrays, GCC kept them
 * in memory and stored and reloaded each one on every add. */
typedef T FN(rnn_lanes_) __attribute__((vector_size(RNN_LANES * sizeof(T))));

static RNN_INLINE void FN(rnn_dw_block_)(int nj, int nk, int64_t n, const T *restrict dG, const T *restrict Hs,
                                         int64_t ldh, T *restrict dW, int64_t H, int fresh) {
    FN(rnn_lanes_) acc[2][4] = {{{0}}}, g[2], h[4];
    for (int64_t c = 0; c < n; c += RNN_LANES) {
        for (int a = 0; a < nj; a++) memcpy(&g[a], dG + a * n + c, sizeof g[a]);
        for (int q = 0; q < nk; q++) memcpy(&h[q], Hs + q * ldh + c, sizeof h[q]);
        for (int a = 0; a < nj; a++)
            for (int q = 0; q < nk; q++) acc[a][q] += g[a] * h[q];
    }
    for (int a = 0; a < nj; a++)
        for (int q = 0; q < nk; q++) {
            T s = 0;
            for (int l = 0; l < RNN_LANES; l++) s += acc[a][q][l];
            dW[a * H + q] = fresh ? s : dW[a * H + q] + s;
        }
}

/* dW [GH, H] (+)= dG [GH][n] Hs^T, Hs [H][n] with row stride ldh, n a multiple of RNN_LANES.
 * Below RNN_GEMM_MIN_H in blocks of 2 x 4 sums with one accumulator per lane, combined in a
 * fixed order: the GEMM provider's [18, 6] x 4480 product cost 3x the unblocked loops
 * (packing, and a kernel made for large M and N). */
CG_SIMD static void FN(rnn_dw_)(GEMM_FN gemm, int64_t GH, int64_t H, int64_t n, const T *restrict dG,
                                const T *restrict Hs, int64_t ldh, T *restrict dW, int fresh) {
    if (H >= RNN_GEMM_MIN_H) {
        gemm(CG_NO_TRANS, CG_TRANS, GH, H, n, 1, dG, n, Hs, ldh, fresh ? 0 : 1, dW, H);
        return;
    }
    for (int64_t j = 0; j < GH; j += 2)
        for (int64_t k = 0; k < H; k += 4) {
            const T *g = dG + j * n, *h = Hs + k * ldh;
            T *w = dW + j * H + k;
            int two = j + 1 < GH, nk = H - k < 4 ? (int)(H - k) : 4;
#define RNN_DW_BLOCK(nj, q) FN(rnn_dw_block_)(nj, q, n, g, h, ldh, w, H, fresh)
#define RNN_DW_ROWS(q) (two ? RNN_DW_BLOCK(2, q) : RNN_DW_BLOCK(1, q))
            switch (nk) {
            case 1: RNN_DW_ROWS(1); break;
            case 2: RNN_DW_ROWS(2); break;
            case 3: RNN_DW_ROWS(3); break;
            default: RNN_DW_ROWS(4); break;
            }
#undef RNN_DW_ROWS
#undef RNN_DW_BLOCK
        }
}

/* dst[c * ds + r] (+)= src[r * ss + c], r < R, c < C: the copies between the caller's
 * [B, rows] layout and the gate-major [rows][B] one. float32 moves blocks of 8 x 8 (and
 * the edges' 8 x n, n x 8) in registers (rnn_tile_f32); the corner, and float64, one
 * element at a time. */
static RNN_INLINE void FN(rnn_transpose_)(int64_t R, int64_t C, const T *restrict src, int64_t ss, T *restrict dst,
                                          int64_t ds, int add) {
    int64_t R8 = 0, C8 = 0;
#if RNN_TILES
    if (sizeof(T) == sizeof(float)) {
        const float *fs = (const float *)src;
        float *fd = (float *)dst;
        R8 = R / 8 * 8, C8 = C / 8 * 8;
        for (int64_t r0 = 0; r0 < R8; r0 += 8)
            for (int64_t c0 = 0; c0 < C8; c0 += 8) rnn_tile_f32(fs + r0 * ss + c0, ss, fd + c0 * ds + r0, ds, add, 8, 8);
#define RNN_ROWS_EDGE(n)                                                                                            \
    for (int64_t c0 = 0; c0 < C8; c0 += 8) rnn_tile_f32(fs + R8 * ss + c0, ss, fd + c0 * ds + R8, ds, add, n, 8)
#define RNN_COLS_EDGE(n)                                                                                            \
    for (int64_t r0 = 0; r0 < R8; r0 += 8) rnn_tile_f32(fs + r0 * ss + C8, ss, fd + C8 * ds + r0, ds, add, 8, n)
        RNN_EDGE(R - R8, RNN_ROWS_EDGE)
        RNN_EDGE(C - C8, RNN_COLS_EDGE)
#undef RNN_ROWS_EDGE
#undef RNN_COLS_EDGE
    }
#endif
    for (int64_t c = C8; c < C; c++) /* the corner: dst's contiguous r inner (strided stores cost more) */
        for (int64_t r = R8; r < R; r++) {
            if (add) dst[c * ds + r] += src[r * ss + c];
            else dst[c * ds + r] = src[r * ss + c];
        }
}

/* Between the caller's [B, rows] layout (row stride sb) and the gate-major [rows][B] one
 * (row stride ld). */
static RNN_INLINE void FN(rnn_gather_)(int64_t rows, int64_t B, const T *restrict src, int64_t sb, T *restrict dst,
                                   int64_t ld) {
    FN(rnn_transpose_)(B, rows, src, sb, dst, ld, 0);
}

/* add: dst += instead of =. */
static RNN_INLINE void FN(rnn_scatter_)(int64_t rows, int64_t B, const T *restrict src, int64_t ld, T *restrict dst,
                                    int64_t sb, int add) {
    FN(rnn_transpose_)(rows, B, src, ld, dst, sb, add);
}

/* dst [rows][B] += the caller's [B, rows] */
static RNN_INLINE void FN(rnn_gather_add_)(int64_t rows, int64_t B, const T *restrict src, int64_t sb, T *restrict dst,
                                       int64_t ld) {
    FN(rnn_transpose_)(B, rows, src, sb, dst, ld, 1);
}

/* sum of v[0..n) (n a multiple of RNN_LANES), and sum of its squares in double: one
 * accumulator per lane, so the adds vectorise (one running sum is a chain of n dependent adds) */
static inline T FN(rnn_sum_)(int64_t n, const T *restrict v) {
    T acc[RNN_LANES] = {0};
    for (int64_t i = 0; i < n; i += RNN_LANES)
        for (int l = 0; l < RNN_LANES; l++) acc[l] += v[i + l];
    T s = 0;
    for (int l = 0; l < RNN_LANES; l++) s += acc[l];
    return s;
}

static inline double FN(rnn_sumsq_)(int64_t n, const T *restrict v) {
    double acc[RNN_LANES] = {0};
    for (int64_t i = 0; i < n; i += RNN_LANES)
        for (int l = 0; l < RNN_LANES; l++) acc[l] += (double)v[i + l] * (double)v[i + l];
    double s = 0;
    for (int l = 0; l < RNN_LANES; l++) s += acc[l];
    return s;
}

static inline T FN(rnn_sigmoid_)(T x) { return GATE_SIGMOID(x); }
static inline T FN(rnn_tanh_)(T x) { return TANH(x); }

/* One row k of a step over the B lanes, with restrict pointers so that the loops vectorise
 * (without, GCC gives up on the many possible overlaps and runs them scalar, 5x slower).
 * x: the step's input projection rows, a: W_hh h rows, bias: b_hh's entries (0 without). */
static inline void FN(gru_row_)(int64_t B, const T *restrict xr, const T *restrict xz, const T *restrict xn,
                                const T *restrict ar, const T *restrict az, const T *restrict an, T br, T bz, T bn,
                                const T *restrict hp, T *restrict r, T *restrict z, T *restrict n, T *restrict hh,
                                T *restrict h) {
    for (int64_t b = 0; b < B; b++) {
        T rb = FN(rnn_sigmoid_)(xr[b] + ar[b] + br);
        T zb = FN(rnn_sigmoid_)(xz[b] + az[b] + bz);
        T hb = an[b] + bn;
        T nb = FN(rnn_tanh_)(xn[b] + rb * hb);
        r[b] = rb, z[b] = zb, hh[b] = hb, n[b] = nb;
        h[b] = (1 - zb) * nb + zb * hp[b];
    }
}

static inline void FN(lstm_row_)(int64_t B, const T *restrict xi, const T *restrict xf, const T *restrict xg,
                                 const T *restrict xo, const T *restrict ai, const T *restrict af,
                                 const T *restrict ag, const T *restrict ao, T bi, T bf, T bg, T bo,
                                 const T *restrict cp, T *restrict si, T *restrict sf, T *restrict sg,
                                 T *restrict so, T *restrict stc, T *restrict c, T *restrict h) {
    for (int64_t b = 0; b < B; b++) {
        T ib = FN(rnn_sigmoid_)(xi[b] + ai[b] + bi);
        T fb = FN(rnn_sigmoid_)(xf[b] + af[b] + bf);
        T gb = FN(rnn_tanh_)(xg[b] + ag[b] + bg);
        T ob = FN(rnn_sigmoid_)(xo[b] + ao[b] + bo);
        T cb = fb * cp[b] + ib * gb;
        T tc = FN(rnn_tanh_)(cb);
        si[b] = ib, sf[b] = fb, sg[b] = gb, so[b] = ob, stc[b] = tc;
        c[b] = cb;
        h[b] = ob * tc;
    }
}

static inline void FN(elman_row_)(int64_t B, int relu, const T *restrict x, const T *restrict a, T bk,
                                  T *restrict h) {
    if (!relu)
        for (int64_t b = 0; b < B; b++) h[b] = FN(rnn_tanh_)(x[b] + a[b] + bk);
    else
        for (int64_t b = 0; b < B; b++) {
            T v = x[b] + a[b] + bk;
            h[b] = (v > 0 || v != v) ? v : 0; /* relu(NaN) = NaN, as the relu op */
        }
}

/* The forward over all steps. X: the step's input projection gathered gate-major [GH][L];
 * A: W_hh h [GH][L]. Writes y (the caller's layout), the states and the saved gates. */
CG_SIMD static void FN(rnn_forward_)(GEMM_FN gemm, const rnn_geom *g, const T *xp, const T *W, const T *bias,
                                     const T *h0, const T *c0, T *y, T *ex, T *X, T *A) {
    const int64_t Tn = g->nt, B = g->B, L = g->Bp, H = g->H, GH = g->G * H, TL = Tn * L, ld = (Tn + 1) * L;
    T *Hst = ex, *Cst = ex + H * ld, *Gs = ex + g->n_states * H * ld;
    /* the initial states, given [B, H] or zero; the padding lanes B..L stay zero */
    for (int64_t k = 0; k < H; k++)
        for (int64_t b = 0; b < L; b++) {
            Hst[k * ld + b] = h0 && b < B ? h0[b * H + k] : 0;
            if (g->mode == CG_RNN_LSTM) Cst[k * ld + b] = c0 && b < B ? c0[b * H + k] : 0;
        }
    for (int64_t j = 0; j < GH; j++)
        for (int64_t b = B; b < L; b++) X[j * L + b] = 0;
    for (int64_t s = 0; s < Tn; s++) {
        int64_t t = g->reverse ? Tn - 1 - s : s;
        const T *xt = xp + t * g->xs_t;
        FN(rnn_gather_)(GH, B, xt, g->xs_b, X, L);
        FN(rnn_hh_)(gemm, GH, H, L, W, Hst + s * L, ld, A);
        for (int64_t k = 0; k < H; k++) {
            const T *hp = Hst + k * ld + s * L;
            T *hn_ = Hst + k * ld + (s + 1) * L;
            if (g->mode == CG_RNN_GRU) {
                T *sv = Gs + k * TL + s * L;
                FN(gru_row_)(L, X + k * L, X + (H + k) * L, X + (2 * H + k) * L, A + k * L, A + (H + k) * L,
                             A + (2 * H + k) * L, bias ? bias[k] : 0, bias ? bias[H + k] : 0,
                             bias ? bias[2 * H + k] : 0, hp, sv, sv + H * TL, sv + 2 * H * TL, sv + 3 * H * TL, hn_);
            } else if (g->mode == CG_RNN_LSTM) {
                T *sv = Gs + k * TL + s * L;
                const T *xk = X + k * L, *ak = A + k * L;
                int64_t q = H * L, sq = H * TL;
                FN(lstm_row_)(L, xk, xk + q, xk + 2 * q, xk + 3 * q, ak, ak + q, ak + 2 * q, ak + 3 * q,
                              bias ? bias[k] : 0, bias ? bias[H + k] : 0, bias ? bias[2 * H + k] : 0,
                              bias ? bias[3 * H + k] : 0, Cst + k * ld + s * L, sv, sv + sq, sv + 2 * sq, sv + 3 * sq,
                              sv + 4 * sq, Cst + k * ld + (s + 1) * L, hn_);
            } else {
                FN(elman_row_)(L, g->mode == CG_RNN_RELU, X + k * L, A + k * L, bias ? bias[k] : 0, hn_);
            }
        }
        /* the step's h (and c) into y at time t */
        T *yt = y + t * g->ys_t;
        FN(rnn_scatter_)(H, B, Hst + (s + 1) * L, ld, yt, g->ys_b, 0);
        if (g->mode == CG_RNN_LSTM) FN(rnn_scatter_)(H, B, Cst + (s + 1) * L, ld, yt + g->c_off, g->ys_b, 0);
    }
}

/* Backward rows (restrict, as the forward's). d: dL/dh_t in, h_{t-1}'s direct part out. */
static inline void FN(gru_row_bwd_)(int64_t B, const T *restrict r, const T *restrict z, const T *restrict n,
                                    const T *restrict hh, const T *restrict hp, T *restrict d, T *restrict gr,
                                    T *restrict gz, T *restrict gn, T *restrict xr, T *restrict xz,
                                    T *restrict xn) {
    for (int64_t b = 0; b < B; b++) {
        T db_ = d[b], zb = z[b], nb = n[b], rb = r[b];
        T dan = db_ * (1 - zb) * (1 - nb * nb);
        T dar = dan * hh[b] * rb * (1 - rb);
        T daz = db_ * (hp[b] - nb) * zb * (1 - zb);
        gr[b] = xr[b] = dar;
        gz[b] = xz[b] = daz;
        gn[b] = dan * rb;
        xn[b] = dan;
        d[b] = db_ * zb;
    }
}

/* d, c: dL/dh_t and the carried dL/dc_t in; d zeroed (h_{t-1} reaches the loss only
 * through the gates), c: dL/dc_{t-1}'s part through f */
static inline void FN(lstm_row_bwd_)(int64_t B, const T *restrict si, const T *restrict sf, const T *restrict sg,
                                     const T *restrict so, const T *restrict stc, const T *restrict cp,
                                     T *restrict d, T *restrict c, T *restrict gi, T *restrict gf,
                                     T *restrict gg, T *restrict go) {
    for (int64_t b = 0; b < B; b++) {
        T ib = si[b], fb = sf[b], gb = sg[b], ob = so[b], tc = stc[b];
        T dcb = c[b] + d[b] * ob * (1 - tc * tc);
        gi[b] = dcb * gb * ib * (1 - ib);
        gf[b] = dcb * cp[b] * fb * (1 - fb);
        gg[b] = dcb * ib * (1 - gb * gb);
        go[b] = d[b] * tc * ob * (1 - ob);
        c[b] = dcb * fb;
        d[b] = 0;
    }
}

static inline void FN(elman_row_bwd_)(int64_t B, int relu, const T *restrict hy, T *restrict d, T *restrict gk) {
    if (!relu)
        for (int64_t b = 0; b < B; b++) gk[b] = d[b] * (1 - hy[b] * hy[b]);
    else
        for (int64_t b = 0; b < B; b++) gk[b] = hy[b] > 0 ? d[b] : 0;
    for (int64_t b = 0; b < B; b++) d[b] = 0;
}

/* Backward through time. gy: d(loss)/dy in y's layout. dG [GH][T][L] (scratch): each step's
 * gradient of the pre-activations the hidden state feeds (W_hh h + b_hh); dX [GH][L]: the
 * step's gradient of xp (GRU's n row differs: r scales W_hn h + b_hn, not x). dh, dc [H][L]:
 * the total d(loss)/dh_t and dc_t, recurrence included, carried to the step before. */
CG_SIMD static void FN(rnn_backward_)(GEMM_FN gemm, const rnn_geom *g, const T *W, const T *ex, const T *gy,
                                      T *dxp, int dxp_fresh, T *dW, int dW_fresh, T *db, int db_fresh, T *dh0,
                                      int dh0_fresh, T *dc0, int dc0_fresh, T *norms, T *dG, T *dX, T *dh,
                                      T *dc, T *Wt, T *tmp) {
    const int64_t Tn = g->nt, B = g->B, L = g->Bp, H = g->H, GH = g->G * H, TL = Tn * L, ld = (Tn + 1) * L;
    const T *Hst = ex, *Gs = ex + g->n_states * H * ld;
    const int lstm = g->mode == CG_RNN_LSTM, gru = g->mode == CG_RNN_GRU;
    for (int64_t i = 0; i < H * L; i++) dh[i] = dc[i] = 0;
    for (int64_t j = 0; j < GH; j++)
        for (int64_t k = 0; k < H; k++) Wt[k * GH + j] = W[j * H + k];
    for (int64_t s = Tn - 1; s >= 0; s--) {
        int64_t t = g->reverse ? Tn - 1 - s : s;
        const T *gt = gy + t * g->ys_t;
        FN(rnn_gather_add_)(H, B, gt, g->ys_b, dh, L);
        if (lstm) FN(rnn_gather_add_)(H, B, gt + g->c_off, g->ys_b, dc, L);
        if (norms) norms[t] = (T)sqrt(FN(rnn_sumsq_)(H * L, dh)); /* dL/dh_t's L2 norm over the batch */
        for (int64_t k = 0; k < H; k++) {
            T *d = dh + k * L, *gk = dG + k * TL + s * L;
            const T *sv = Gs + k * TL + s * L;
            if (gru)
                FN(gru_row_bwd_)(L, sv, sv + H * TL, sv + 2 * H * TL, sv + 3 * H * TL, Hst + k * ld + s * L, d, gk,
                                 gk + H * TL, gk + 2 * H * TL, dX + k * L, dX + (H + k) * L, dX + (2 * H + k) * L);
            else if (lstm)
                FN(lstm_row_bwd_)(L, sv, sv + H * TL, sv + 2 * H * TL, sv + 3 * H * TL, sv + 4 * H * TL,
                                  Hst + (H + k) * ld + s * L /* c_{t-1}: Cst follows Hst */, d, dc + k * L, gk,
                                  gk + H * TL, gk + 2 * H * TL, gk + 3 * H * TL);
            else
                FN(elman_row_bwd_)(L, g->mode == CG_RNN_RELU, Hst + k * ld + (s + 1) * L, d, gk);
        }
        FN(rnn_hh_t_)(gemm, GH, H, L, W, Wt, dG + s * L, TL, dh, tmp);
        if (dxp) /* the step's xp gradient into the caller's layout */
            FN(rnn_scatter_)(GH, B, gru ? dX : dG + s * L, gru ? L : TL, dxp + t * g->xs_t, g->xs_b, !dxp_fresh);
    }
    /* dW_hh = sum over steps of dG_s h_{s}^T: one product over all T L columns */
    if (dW) FN(rnn_dw_)(gemm, GH, H, TL, dG, Hst, ld, dW, dW_fresh);
    if (db)
        for (int64_t j = 0; j < GH; j++) {
            T s = FN(rnn_sum_)(TL, dG + j * TL);
            db[j] = db_fresh ? s : db[j] + s;
        }
    if (dh0)
        for (int64_t b = 0; b < B; b++)
            for (int64_t k = 0; k < H; k++) dh0[b * H + k] = dh0_fresh ? dh[k * L + b] : dh0[b * H + k] + dh[k * L + b];
    if (dc0)
        for (int64_t b = 0; b < B; b++)
            for (int64_t k = 0; k < H; k++) dc0[b * H + k] = dc0_fresh ? dc[k * L + b] : dc0[b * H + k] + dc[k * L + b];
}
