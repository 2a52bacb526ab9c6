/* attention_impl.h: scaled dot-product attention's loops for one element type, included by
 * attention.c once per dtype with T, SFX and GEMM_FN defined (the caller passes the current
 * provider's GEMM of that type). One (batch, head) block at a time: q [L, E], k [S, E],
 * v [S, Ev], P [L, S]; rows are taken in chunks of at most sd_chunk_rows, so that a chunk's
 * scores, its softmax and its product with V run while the chunk is in cache. */

/* Reductions over a row keep SD_LANES partial results, so that the compiler vectorises them
 * (a float sum in order cannot be: without it a block's softmax cost more than its GEMMs). */
#define SD_LANES 16

/* One group of SD_LANES values: the running maxima, and e = exp(x - m) in place with the
 * running sums of e and (for the entropy) of e (x - m). */
static inline void FN(sd_max_lanes_)(const T *x, T *lane) {
    for (int l = 0; l < SD_LANES; l++) lane[l] = x[l] > lane[l] ? x[l] : lane[l]; /* a NaN: exp(NaN - m) below */
}
static inline void FN(sd_exp_lanes_)(T *x, T m, T *lz, T *lt, int want_entropy) {
    for (int l = 0; l < SD_LANES; l++) {
        T t = x[l] - m, e = FN(sd_exp_)(t);
        lz[l] += e;
        if (want_entropy) lt[l] += e > 0 ? e * t : 0; /* e = 0 where t = -inf (masked) */
        x[l] = e;
    }
}

/* Row i's softmax in place over its first n scores (the rest up to zto are set to 0: the
 * columns its chunk's GEMMs read; beyond them nothing reads P), the mask row
 * added first (mrow NULL: none; stride mcs 0 or 1). Returns the row's entropy in nats when
 * want_entropy (else 0). A row whose every score is -inf (fully masked) becomes zeros with
 * entropy 0, as PyTorch's output for it is 0. The last, partial group of lanes goes through
 * a buffer padded with -inf, so that every exp is computed vectorised (a causal row's
 * length is anything). */
CG_SIMD static double FN(sd_softmax_row_)(T *restrict p, int64_t n, int64_t zto, const T *mrow, int64_t mcs,
                                          int want_entropy, int fast) {
    if (mrow)
        for (int64_t j = 0; j < n; j++) p[j] += mrow[j * mcs];
    if (fast) return FN(sd_softmax_fast_)(p, n, zto, want_entropy);
    for (int64_t j = n; j < zto; j++) p[j] = 0;
    T lz[SD_LANES], lt[SD_LANES], tail[SD_LANES];
    int64_t full = n - n % SD_LANES, rest = n - full;
    for (int l = 0; l < SD_LANES; l++) {
        lz[l] = -INFINITY;
        tail[l] = l < rest ? p[full + l] : -INFINITY;
    }
    for (int64_t j = 0; j < full; j += SD_LANES) FN(sd_max_lanes_)(p + j, lz);
    FN(sd_max_lanes_)(tail, lz);
    T m = -INFINITY;
    for (int l = 0; l < SD_LANES; l++) m = lz[l] > m ? lz[l] : m;
    if (m == -INFINITY) { /* fully masked: zeros; unless every score is NaN (a NaN query row) */
        T fill = 0;
        for (int64_t j = 0; j < n; j++) fill = p[j] != p[j] ? p[j] : fill;
        for (int64_t j = 0; j < n; j++) p[j] = fill;
        return (double)fill;
    }
    /* t = s - m <= 0; z = sum e^t, and the entropy H = log z - sum e^t t / z */
    for (int l = 0; l < SD_LANES; l++) lz[l] = lt[l] = 0;
    for (int64_t j = 0; j < full; j += SD_LANES) FN(sd_exp_lanes_)(p + j, m, lz, lt, want_entropy);
    if (rest) FN(sd_exp_lanes_)(tail, m, lz, lt, want_entropy);
    double z = 0, et = 0;
    for (int l = 0; l < SD_LANES; l++) {
        z += (double)lz[l];
        et += (double)lt[l];
    }
    T inv = (T)(1 / z);
    for (int64_t j = 0; j < full; j++) p[j] *= inv;
    for (int64_t l = 0; l < rest; l++) p[full + l] = tail[l] * inv;
    return want_entropy ? log(z) - et / z : 0;
}

/* Forward of one block: P [L, S] (written) and O [L, Ev] = softmax(scale Q K^T + mask) V.
 * moff: the mask's offset of this block (mask NULL: none), mrs/mcs its row and column
 * strides. Returns the sum over rows of the rows' entropies. */
static double FN(sd_block_fwd_)(GEMM_FN gemm, const sd_dims *d, const T *Q, const T *K, const T *V, const T *mask,
                                T *P, T *O) {
    double ent = 0;
    int64_t L = d->L, S = d->S, E = d->E, Ev = d->Ev, R = d->chunk;
    for (int64_t r0 = 0; r0 < L; r0 += R) {
        int64_t rows = L - r0 < R ? L - r0 : R;
        /* causal, top-left aligned: row i sees columns 0..i, so the chunk needs min(S, r0 + rows) */
        int64_t n = d->causal ? (r0 + rows < S ? r0 + rows : S) : S;
        T *Pc = P + r0 * S;
        if (n > 0) gemm(CG_NO_TRANS, CG_TRANS, rows, n, E, (T)d->scale, Q + r0 * E, E, K, E, 0, Pc, S);
        for (int64_t i = 0; i < rows; i++) {
            int64_t row = r0 + i, cols = d->causal ? (row + 1 < n ? row + 1 : n) : n;
            ent += FN(sd_softmax_row_)(Pc + i * S, cols, n, mask ? mask + row * d->mrs : NULL, d->mcs, d->entropy,
                                     d->fast);
        }
        if (n > 0) gemm(CG_NO_TRANS, CG_NO_TRANS, rows, Ev, n, 1, Pc, S, V, Ev, 0, O + r0 * Ev, Ev);
        else
            for (int64_t j = 0; j < rows * Ev; j++) O[r0 * Ev + j] = 0;
    }
    return ent;
}

/* dS = P (dP - rowsum(P dP)) in place of dP over a chunk's rows (the softmax's backward);
 * the mask's gradient is dS itself, added at the mask's (broadcast) positions. */
CG_SIMD static void FN(sd_dscores_)(int64_t rows, int64_t n, int64_t S, const T *P, T *D, T *dmask, int64_t mrs,
                                    int64_t mcs) {
    for (int64_t i = 0; i < rows; i++) {
        const T *p = P + i * S;
        T *dp = D + i * S;
        T lane[SD_LANES] = {0};
        int64_t full = n - n % SD_LANES, j;
        for (j = 0; j < full; j += SD_LANES)
            for (int l = 0; l < SD_LANES; l++) lane[l] += p[j + l] * dp[j + l];
        double acc = 0;
        for (int l = 0; l < SD_LANES; l++) acc += (double)lane[l];
        for (; j < n; j++) acc += (double)p[j] * (double)dp[j];
        T a = (T)acc;
        for (int64_t j = 0; j < n; j++) dp[j] = p[j] * (dp[j] - a);
        if (dmask)
            for (int64_t j = 0; j < n; j++) dmask[i * mrs + j * mcs] += dp[j];
    }
}

/* Backward of one block, adding into dQ, dK, dV (each NULL where not needed) and dmask:
 *   dV += P^T dO,  dP = dO V^T,  dS = P (dP - rowsum(P dP)),  dQ += scale dS K,  dK += scale dS^T Q.
 * scratch: chunk x S values for dP/dS. */
static void FN(sd_block_bwd_)(GEMM_FN gemm, const sd_dims *d, const T *Q, const T *K, const T *V, const T *P,
                              const T *G, T *dQ, T *dK, T *dV, T *dmask, T *scratch) {
    int64_t L = d->L, S = d->S, E = d->E, Ev = d->Ev, R = d->chunk;
    T sc = (T)d->scale;
    for (int64_t r0 = 0; r0 < L; r0 += R) {
        int64_t rows = L - r0 < R ? L - r0 : R;
        int64_t n = d->causal ? (r0 + rows < S ? r0 + rows : S) : S;
        if (n == 0) continue;
        const T *Pc = P + r0 * S, *Gc = G + r0 * Ev;
        if (dV) gemm(CG_TRANS, CG_NO_TRANS, n, Ev, rows, 1, Pc, S, Gc, Ev, 1, dV, Ev);
        if (!dQ && !dK && !dmask) continue;
        gemm(CG_NO_TRANS, CG_TRANS, rows, n, Ev, 1, Gc, Ev, V, Ev, 0, scratch, S);
        FN(sd_dscores_)(rows, n, S, Pc, scratch, dmask ? dmask + r0 * d->mrs : NULL, d->mrs, d->mcs);
        if (dQ) gemm(CG_NO_TRANS, CG_NO_TRANS, rows, E, n, sc, scratch, S, K, E, 1, dQ + r0 * E, E);
        if (dK) gemm(CG_TRANS, CG_NO_TRANS, n, E, rows, sc, scratch, S, Q + r0 * E, E, 1, dK, E);
    }
}

/* ent[b] = total / L, into the caller's tensor of the op's dtype */
static void FN(sd_store_entropy_)(T *ent, int64_t b, double total, int64_t L) {
    ent[b] = (T)(L ? total / (double)L : 0);
}
