/* matmul_impl.h: the matmul and linear GEMM sequences for one element type, included by
 * matmul.c once per dtype with T, SFX and GEMM_FN (the provider's GEMM type for T)
 * defined. The caller passes the current provider's GEMM of that type. */


static void FN(mm_fwd_)(GEMM_FN gemm, const mm_plan *p, const T *A, const T *B, T *Z) {
    if (p->fold) {
        gemm(CG_NO_TRANS, CG_NO_TRANS, p->rows, p->m, p->k, 1, A, p->k, B, p->m, 0, Z, p->m);
        return;
    }
    CG_BCAST_FOR(&p->batch, {
        for (int64_t j = 0; j < n; j++)
            gemm(CG_NO_TRANS, CG_NO_TRANS, p->n, p->m, p->k, 1, A + (oa + j * sa) * p->n * p->k, p->k,
                 B + (ob + j * sb) * p->k * p->m, p->m, 0, Z + (oy + j) * p->n * p->m, p->m);
    });
}

/* dA += G B^T, dB += A^T G (dA, dB NULL where not needed) */
static void FN(mm_bwd_)(GEMM_FN gemm, const cg_node *node, const mm_plan *p, const T *A, const T *B,
                        const T *G, T *dA, T *dB) {
    if (p->fold) { /* one GEMM per gradient: write a fresh buffer (beta 0), Note [First write] */
        double fl = 2.0 * (double)p->rows * (double)p->k * (double)p->m;
        if (dA)
            PROF_GEMM(CG_PHASE_BWD_DX, fl, gemm(CG_NO_TRANS, CG_TRANS, p->rows, p->k, p->m, 1, G, p->m, B, p->m,
                                                node->fresh & 1 ? 0 : 1, dA, p->k));
        if (dB)
            PROF_GEMM(CG_PHASE_BWD_DW, fl, gemm(CG_TRANS, CG_NO_TRANS, p->k, p->m, p->rows, 1, A, p->k, G, p->m,
                                                node->fresh & 2 ? 0 : 1, dB, p->m));
        return;
    }
    /* batches add into shared slices: start fresh buffers from zero */
    const cg_tensor *a = node->inputs[0], *b = node->inputs[1];
    if (dA && (node->fresh & 1)) memset(dA, 0, sizeof(T) * (size_t)a->numel);
    if (dB && (node->fresh & 2)) memset(dB, 0, sizeof(T) * (size_t)b->numel);
    CG_BCAST_FOR(&p->batch, {
        for (int64_t j = 0; j < n; j++) {
            int64_t ia = (oa + j * sa) * p->n * p->k, ib = (ob + j * sb) * p->k * p->m;
            const T *g = G + (oy + j) * p->n * p->m;
            double fl = 2.0 * (double)p->n * (double)p->k * (double)p->m;
            if (dA)
                PROF_GEMM(CG_PHASE_BWD_DX, fl, gemm(CG_NO_TRANS, CG_TRANS, p->n, p->k, p->m, 1, g, p->m, B + ib,
                                                    p->m, 1, dA + ia, p->k));
            if (dB)
                PROF_GEMM(CG_PHASE_BWD_DW, fl, gemm(CG_TRANS, CG_NO_TRANS, p->k, p->m, p->n, 1, A + ia, p->k, g,
                                                    p->m, 1, dB + ib, p->m));
        }
    });
}

/* Y [rows, nout] = X [rows, nin] W^T (+ bias, added after a beta-0 GEMM: copying the bias
 * into Y for a beta-1 GEMM made OpenBLAS's small-matrix kernel read Y back, and in a PINN
 * step, where Y is not in cache, a linear layer cost three times the GEMM) */
CG_SIMD static void FN(linear_fwd_)(GEMM_FN gemm, int64_t rows, int64_t nin, int64_t nout, const T *X, const T *W,
                                    const T *bias, T *Y) {
    gemm(CG_NO_TRANS, CG_TRANS, rows, nout, nin, 1, X, nin, W, nin, 0, Y, nout);
    if (bias)
        for (int64_t r = 0; r < rows; r++) {
            T *restrict y = Y + r * nout;
            for (int64_t j = 0; j < nout; j++) y[j] += bias[j];
        }
}

/* dX += G W, dW += G^T X, db += sum_rows G (each NULL where not needed) */
CG_SIMD static void FN(linear_bwd_)(GEMM_FN gemm, const cg_node *node, int64_t rows, int64_t nin, int64_t nout,
                                    const T *X, const T *W, const T *G, T *dX, T *dW, T *db) {
    double fl = 2.0 * (double)rows * (double)nin * (double)nout;
    if (dX)
        PROF_GEMM(CG_PHASE_BWD_DX, fl, gemm(CG_NO_TRANS, CG_NO_TRANS, rows, nin, nout, 1, G, nout, W, nin,
                                            node->fresh & 1 ? 0 : 1, dX, nin));
    if (dW)
        PROF_GEMM(CG_PHASE_BWD_DW, fl, gemm(CG_TRANS, CG_NO_TRANS, nout, nin, rows, 1, G, nout, X, nin,
                                            node->fresh & 2 ? 0 : 1, dW, nin));
    if (db) {
        if (node->fresh & 4) memset(db, 0, sizeof(T) * (size_t)nout);
        for (int64_t r = 0; r < rows; r++)
            for (int64_t j = 0; j < nout; j++) db[j] += G[r * nout + j];
    }
}

/* Z [m, n] = op(A) op(B); A is stored [*, lda], B [*, ldb] (row-major, whatever the flags) */
static void FN(gemm_fwd_)(GEMM_FN gemm, int ta, int tb, int64_t m, int64_t k, int64_t n, const T *A,
                          int64_t lda, const T *B, int64_t ldb, T *Z) {
    gemm(ta ? CG_TRANS : CG_NO_TRANS, tb ? CG_TRANS : CG_NO_TRANS, m, n, k, 1, A, lda, B, ldb, 0, Z, n);
}

/* With A' = op(A), B' = op(B):  dA' = G B'^T and dB' = A'^T G, each one GEMM whose flags
 * also undo op (dA = dA'^T = B' G^T when ta; dB = G^T A' when tb). */
static void FN(gemm_bwd_)(GEMM_FN gemm, const cg_node *node, int ta, int tb, int64_t m, int64_t k, int64_t n,
                          const T *A, int64_t lda, const T *B, int64_t ldb, const T *G, T *dA, T *dB) {
    double fl = 2.0 * (double)m * (double)k * (double)n;
    const cg_trans N_ = CG_NO_TRANS, T_ = CG_TRANS;
    if (dA) {
        T beta = node->fresh & 1 ? 0 : 1;
        if (!ta)
            PROF_GEMM(CG_PHASE_BWD_DX, fl, gemm(N_, tb ? N_ : T_, m, k, n, 1, G, n, B, ldb, beta, dA, k));
        else
            PROF_GEMM(CG_PHASE_BWD_DX, fl, gemm(tb ? T_ : N_, T_, k, m, n, 1, B, ldb, G, n, beta, dA, m));
    }
    if (dB) {
        T beta = node->fresh & 2 ? 0 : 1;
        if (!tb)
            PROF_GEMM(CG_PHASE_BWD_DW, fl, gemm(ta ? N_ : T_, N_, k, n, m, 1, A, lda, G, n, beta, dB, n));
        else
            PROF_GEMM(CG_PHASE_BWD_DW, fl, gemm(T_, ta ? T_ : N_, n, k, m, 1, G, n, A, lda, beta, dB, k));
    }
}
