/* small_gemm_kernel.h: the tiles, panels and driver of small_gemm.c, written once for a
 * vector width and included once per instruction set. The includer defines:
 *   SG_NAME(f)         f's name for this instruction set (f_avx2, f_avx512)
 *   SG_TARGET          the function attribute that enables it
 *   VEC, MASK          the vector and lane-mask types; W lanes per vector
 *   MR, MR1, KC        rows of a two-vector tile, rows of a one-vector tile, rows of a
 *                      packed B^T panel
 *   V_ZERO, V_LOAD, V_MLOAD, V_STORE, V_MSTORE, V_BCAST, V_SET1, V_FMA, V_MUL, V_ADD,
 *   V_LANEMASK(rem)    the first rem lanes (1 <= rem <= W)
 * A tile is MR rows by NR = 2 W columns: 2 MR accumulators, op(B)'s two vectors and one
 * broadcast of op(A) must fit the register file, and two FMA pipes of 4-cycle latency need
 * at least eight independent chains (the last panel, of at most W columns, has MR1 rows).
 * The end of this file undefines all of these, so the next instruction set starts clean. */
#define NR (2 * W)

typedef struct {
    float alpha, beta;
    const float *bias; /* start of the accumulators (row vector at the tile's columns), or NULL */
    MASK last;         /* lane mask of a row's last vector */
    int masked;        /* the last vector is partial */
} SG_NAME(tile_out);

/* One tile: mr rows (<= MR, or MR1 for one vector) by nv vectors (1 or 2) over kc steps. op(A)'s element (r, k) is
 * a[r * lda + k] (ta = 0) or a[k * lda + r] (ta = 1); op(B)'s row k is b + k * bs, its last
 * vector loaded under the mask when mb (B read in place, N not a multiple of W). mr, nv, ta
 * and mb are constants at every call, so the loops unroll and acc stays in registers. */
INLINE SG_TARGET void SG_NAME(tile)(const int mr, const int nv, const int ta, const int mb, int64_t kc,
                                    const float *a, int64_t lda, const float *b, int64_t bs, float *c, int64_t ldc,
                                    const SG_NAME(tile_out) *o) {
    VEC acc[MR1][2];
    VEC init0 = V_ZERO(), init1 = V_ZERO();
    if (o->bias) {
        if (nv == 1) init0 = o->masked ? V_MLOAD(o->bias, o->last) : V_LOAD(o->bias);
        else {
            init0 = V_LOAD(o->bias);
            init1 = o->masked ? V_MLOAD(o->bias + W, o->last) : V_LOAD(o->bias + W);
        }
    }
#pragma GCC unroll 16
    for (int r = 0; r < mr; r++) {
        acc[r][0] = init0;
        acc[r][1] = init1;
    }
#pragma GCC unroll 2
    for (int64_t k = 0; k < kc; k++) {
        const float *bk = b + k * bs;
        VEC b0, b1;
        if (nv == 1) b0 = b1 = mb ? V_MLOAD(bk, o->last) : V_LOAD(bk);
        else {
            b0 = V_LOAD(bk);
            b1 = mb ? V_MLOAD(bk + W, o->last) : V_LOAD(bk + W);
        }
#pragma GCC unroll 16
        for (int r = 0; r < mr; r++) {
            VEC av = V_BCAST(ta ? a + k * lda + r : a + r * lda + k);
            acc[r][0] = V_FMA(av, b0, acc[r][0]);
            if (nv == 2) acc[r][1] = V_FMA(av, b1, acc[r][1]);
        }
    }
    const VEC va = V_SET1(o->alpha), vb = V_SET1(o->beta);
#pragma GCC unroll 16
    for (int r = 0; r < mr; r++) {
        float *cr = c + r * ldc;
#pragma GCC unroll 2
        for (int v = 0; v < nv; v++) {
            int part = v == nv - 1 && o->masked;
            VEC x = o->alpha == 1.0f ? acc[r][v] : V_MUL(va, acc[r][v]);
            if (o->beta != 0.0f) { /* beta 0 must not read C (it may be uninitialised) */
                VEC old = part ? V_MLOAD(cr + W * v, o->last) : V_LOAD(cr + W * v);
                x = o->beta == 1.0f ? V_ADD(x, old) : V_FMA(vb, old, x);
            }
            if (part) V_MSTORE(cr + W * v, o->last, x);
            else V_STORE(cr + W * v, x);
        }
    }
}

/* Every row block of one panel: whole tiles of MR rows (MR1 for one vector), then the rest. */
INLINE SG_TARGET void SG_NAME(panel)(const int nv, const int ta, const int mb, int64_t M, int64_t kc,
                                     const float *A, int64_t lda, const float *b, int64_t bs, float *C, int64_t ldc,
                                     const SG_NAME(tile_out) *o) {
    int64_t i = 0;
    const int64_t astep = ta ? 1 : lda; /* from one row of op(A) to the next */
    if (nv == 1)
        for (; i + MR1 <= M; i += MR1) SG_NAME(tile)(MR1, nv, ta, mb, kc, A + i * astep, lda, b, bs, C + i * ldc, ldc, o);
    for (; i + MR <= M; i += MR) SG_NAME(tile)(MR, nv, ta, mb, kc, A + i * astep, lda, b, bs, C + i * ldc, ldc, o);
    const float *a = A + i * astep;
    float *c = C + i * ldc;
    /* the rest, fewer than MR rows: each case a constant, so each tile unrolls (the cases
     * at or above MR are dead and compiled away) */
#define SG_REST(m) \
    case m: \
        if (m < MR) SG_NAME(tile)(m, nv, ta, mb, kc, a, lda, b, bs, c, ldc, o); \
        break;
    switch (M - i) {
        SG_REST(11) SG_REST(10) SG_REST(9) SG_REST(8) SG_REST(7) SG_REST(6)
        SG_REST(5) SG_REST(4) SG_REST(3) SG_REST(2) SG_REST(1)
    default: break;
    }
#undef SG_REST
}

SG_TARGET static void SG_NAME(gemm)(int ta, int tb, int64_t M, int64_t N, int64_t K, float alpha, const float *A,
                                    int64_t lda, const float *B, int64_t ldb, const float *bias, float beta, float *C,
                                    int64_t ldc) {
    float Bp[KC * NR] __attribute__((aligned(64)));
    for (int64_t j0 = 0; j0 < N; j0 += NR) {
        int64_t nr = N - j0 < NR ? N - j0 : NR;
        int nv = nr > W ? 2 : 1, rem = (int)(nr - W * (nv - 1));
        SG_NAME(tile_out) o = {alpha, beta, bias ? bias + j0 : NULL, V_LANEMASK(rem), rem < W};
        int64_t k0 = 0;
        do { /* at least once: K = 0 still writes beta C (+ bias) */
            int64_t kc = K - k0 < KC ? K - k0 : KC;
            const float *b = Bp;
            int64_t bs = NR;
            if (tb) pack_b(kc, nr, B, ldb, k0, j0, Bp, NR, nv * W);
            else {
                b = B + k0 * ldb + j0;
                bs = ldb;
            }
            const float *a = ta ? A + k0 * lda : A + k0;
            float *c = C + j0;
            /* the eight variants of (nv, ta, masked B), each a panel() with its own tiles */
            int v = (nv - 1) * 4 + ta * 2 + (!tb && o.masked);
            switch (v) {
            case 0: SG_NAME(panel)(1, 0, 0, M, kc, a, lda, b, bs, c, ldc, &o); break;
            case 1: SG_NAME(panel)(1, 0, 1, M, kc, a, lda, b, bs, c, ldc, &o); break;
            case 2: SG_NAME(panel)(1, 1, 0, M, kc, a, lda, b, bs, c, ldc, &o); break;
            case 3: SG_NAME(panel)(1, 1, 1, M, kc, a, lda, b, bs, c, ldc, &o); break;
            case 4: SG_NAME(panel)(2, 0, 0, M, kc, a, lda, b, bs, c, ldc, &o); break;
            case 5: SG_NAME(panel)(2, 0, 1, M, kc, a, lda, b, bs, c, ldc, &o); break;
            case 6: SG_NAME(panel)(2, 1, 0, M, kc, a, lda, b, bs, c, ldc, &o); break;
            default: SG_NAME(panel)(2, 1, 1, M, kc, a, lda, b, bs, c, ldc, &o); break;
            }
            o.beta = 1.0f; /* the next chunks add to what this one stored */
            o.bias = NULL;
        } while ((k0 += KC) < K);
    }
}

#undef NR
#undef SG_ISA
#undef SG_TARGET
#undef VEC
#undef MASK
#undef W
#undef MR
#undef MR1
#undef KC
#undef V_ZERO
#undef V_LOAD
#undef V_MLOAD
#undef V_STORE
#undef V_MSTORE
#undef V_BCAST
#undef V_SET1
#undef V_FMA
#undef V_MUL
#undef V_ADD
#undef V_LANEMASK
