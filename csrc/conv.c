/* conv.c: convolution, 2-D (x [N, C, H, W]) and 1-D (x [N, C, L], computed as H = 1), in
 * PyTorch's layouts: w [OC, C/G, KH, KW], y [N, OC, OH, OW], G groups.
 *
 * im2col plus GEMM through the provider table. colT [CK, R] (CK = C KH KW, R = N OH OW)
 * holds in row q = (c, i, j), for each output position r = (n, oh, ow), the input under tap
 * (i, j) of channel c, 0 in the padding. Then, one GEMM per group:
 *   forward   Yp [OC, R] = W [OC, CK] colT, and y is Yp with its first two axes swapped, + bias
 *   backward  dW = Gp colT^T                       the lecture's  dW = col(X)^T dZ
 *             dX = col2im(W^T Gp)                                  dX = col2im(dZ W)
 * where Gp is dZ in Yp's layout. One GEMM over the whole batch (not one per sample): in
 * the MNIST-1D CNN a sample's col matrix is 10 x 75, far too small for a GEMM call each.
 * The forward keeps colT for the backward (it reads no saved input, only w).
 *
 * Three ops share these loops, each the others' backward, so that the convolution is
 * differentiable to any order (the taped sweep, create_graph=True):
 *   conv   (x, w[, b]) -> y
 *   conv_dx(g, w)      -> dX, the adjoint in x:  its gradient is conv(U, w) for g, conv_dw(g, U) for w
 *   conv_dw(g, x)      -> dW, the adjoint in w:  its gradient is conv(x, V) for g, conv_dx(g, V) for x
 * node->ip: stride (2), padding before (2), dilation (2), groups, and two sizes: the output's
 * (conv), the input's (conv_dx) or the kernel's (conv_dw). Padding after is implied by the
 * output size, so 'same' with an even kernel (more padding after) needs nothing more.
 */
#include "cg_internal.h"

#include <limits.h>
#include <string.h>

typedef struct {
    int64_t n, c, h, w, oc, kh, kw, oh, ow, sh, sw, ph, pw, dh, dw, groups;
    int spatial; /* 1 or 2: the tensors' layout */
} conv_geom;

typedef struct {
    int64_t hp, wq, rs, plane;
} conv_view;

/* Where tap column j starts in a view row: its stride phase, then its offset in the phase */
static int64_t view_tap(const conv_geom *g, const conv_view *v, int64_t j) {
    int64_t k = j * g->dw;
    return k % g->sw * v->wq + k / g->sw;
}

static int64_t geom_cols(const conv_geom *g) { return g->c * g->kh * g->kw; }
static int64_t geom_rows(const conv_geom *g) { return g->n * g->oh * g->ow; }

#define CG_IMPL "conv_impl.h"
#include "cg_each_dtype.h"

/* ---- float32 data movement in AVX-512, where the CPU has it (and cgrad._C.skinny_isa allows) ----
 * The loops above move runs of OW (or P) values, 5 to 20 in a small CNN: one masked load and
 * store per run here, where the compiler's vector loops spend more on their prologues and
 * tails than on the copy. Strides 1 and 2 only; the others take the loops above. */
#if defined(__GNUC__) && defined(__x86_64__)
#include "runs_avx512.h"
#define HAVE_CONV_AVX512 1

/* 16 values of row[k0 + l] for l < 16, 0 where k0 + l is outside [0, len) (no read there) */
AVX512 static inline __m512 load_window(const float *row, int64_t k0, int64_t len) {
    return _mm512_maskz_loadu_ps(lanes(-k0, len - k0), row + k0);
}

AVX512 static void im2col_avx512(const float *src, const conv_geom *g, const conv_view *v, float *colT) {
    for (int64_t c = 0; c < g->c; c++)
        for (int64_t i = 0; i < g->kh; i++)
            for (int64_t j = 0; j < g->kw; j++) {
                const float *base = src + c * v->plane + i * g->dh * v->rs + view_tap(g, v, j);
                for (int64_t n = 0; n < g->n; n++)
                    for (int64_t oh = 0; oh < g->oh; oh++, colT += g->ow)
                        copy_run(colT, base + n * g->c * v->plane + oh * g->sh * v->rs, g->ow);
            }
}

AVX512 static void col2im_avx512(const float *dcolT, const conv_geom *g, const conv_view *v, float *dst) {
    for (int64_t c = 0; c < g->c; c++)
        for (int64_t i = 0; i < g->kh; i++)
            for (int64_t j = 0; j < g->kw; j++) {
                float *base = dst + c * v->plane + i * g->dh * v->rs + view_tap(g, v, j);
                for (int64_t n = 0; n < g->n; n++)
                    for (int64_t oh = 0; oh < g->oh; oh++, dcolT += g->ow)
                        add_run(base + n * g->c * v->plane + oh * g->sh * v->rs, dcolT, g->ow);
            }
}

/* im2col and col2im on small planes and rows, straight from and into x, without the view's
 * padded copy. A "line" is a whole plane where it fits two registers (H W <= 32 inputs,
 * OH OW <= 16 outputs, KH KW taps: the digits CNN's 4 x 4 planes), else a row (W <= 32,
 * OW <= 16, KW taps: the MNIST-1D CNN's rows of 19 and 10). A line of x is loaded once and
 * each tap's run of outputs is one permute of it, zero where the tap falls in the padding;
 * col2im adds each run's permute into the line in registers and stores the line once. With
 * the view, its copies cost as much as the runs themselves. */
#define LINE_TAPS 16
typedef struct {
    __m512i idx[2][LINE_TAPS]; /* per half of the line (col2im) and tap: each lane's source */
    __mmask16 keep[2][LINE_TAPS];
    __mmask16 run, m0, m1; /* the lanes of a run, of the line's two halves */
    int64_t taps, in, out; /* taps, and the values of a line and of a run */
    int whole;             /* a line is a whole plane, else a row */
} line_taps;

static int plane_lines(const conv_geom *g) {
    return g->h * g->w <= 32 && g->oh * g->ow <= 16 && g->kh * g->kw <= LINE_TAPS;
}
static int row_lines(const conv_geom *g) { return g->w <= 32 && g->ow <= 16 && g->kw <= LINE_TAPS; }

/* The taps of a line: tap (i, j) lane q = (oh, ow) of a run takes input (oh sh + i dh - ph,
 * ow sw + j dw - pw) of the line, for im2col; for col2im, lane p = (h, w) of the line takes
 * run value ((h + ph - i dh) / sh, (w + pw - j dw) / sw) where both are whole outputs. Rows
 * are planes of one row: the row's geometry with h = kh = oh = 1 and ph = 0. */
AVX512 static void line_taps_of(const conv_geom *plane, int adjoint, line_taps *t) {
    conv_geom row = *plane;
    t->whole = plane_lines(plane);
    if (!t->whole) row.h = row.kh = row.oh = 1, row.ph = 0;
    const conv_geom *g = &row;
    const int64_t W = g->w, OW = g->ow;
    t->taps = g->kh * g->kw, t->in = g->h * W, t->out = g->oh * OW;
    for (int half = 0; half < 2; half++)
        for (int64_t tap = 0; tap < t->taps; tap++) {
            const int64_t i = tap / g->kw, j = tap % g->kw;
            int32_t lane[16];
            t->keep[half][tap] = 0;
            for (int l = 0; l < 16; l++) {
                int64_t src = -1;
                if (!adjoint && half == 0 && l < t->out) {
                    int64_t h = l / OW * g->sh + i * g->dh - g->ph, w = l % OW * g->sw + j * g->dw - g->pw;
                    if (h >= 0 && h < g->h && w >= 0 && w < W) src = h * W + w;
                } else if (adjoint && 16 * half + l < t->in) {
                    int64_t p = 16 * half + l, oh = p / W + g->ph - i * g->dh, ow = p % W + g->pw - j * g->dw;
                    if (oh >= 0 && ow >= 0 && oh % g->sh == 0 && ow % g->sw == 0 && oh / g->sh < g->oh &&
                        ow / g->sw < OW)
                        src = oh / g->sh * OW + ow / g->sw;
                }
                lane[l] = src < 0 ? 0 : (int32_t)src;
                if (src >= 0) t->keep[half][tap] |= (__mmask16)(1u << l);
            }
            t->idx[half][tap] = _mm512_loadu_si512(lane);
        }
    t->run = lanes(0, t->out), t->m0 = lanes(0, t->in), t->m1 = lanes(0, t->in - 16);
}

/* One line xr (NULL: a row in the padding) into the runs at dst, dst + R, ...; inlined with
 * the tap count a constant for the common kernels. narrow: runs of <= 8, where half the store
 * does (a 512-bit store takes two cycles on Zen 4). */
AVX512 static inline __attribute__((always_inline)) void im2col_line(const float *xr, const __m512i *idx,
                                                                    const __mmask16 *keep, int64_t taps,
                                                                    __mmask16 m0, __mmask16 m1, __mmask16 run,
                                                                    int wide, int narrow, int64_t R, float *dst) {
    __m512 a = _mm512_setzero_ps(), b = a;
    if (xr) {
        a = _mm512_maskz_loadu_ps(m0, xr);
        if (wide) b = _mm512_maskz_loadu_ps(m1, xr + 16);
    }
#pragma GCC unroll 9
    for (int64_t j = 0; j < taps; j++) {
        __m512 v = _mm512_maskz_permutex2var_ps(keep[j], a, idx[j], b);
        if (narrow) _mm256_mask_storeu_ps(dst + j * R, (__mmask8)run, _mm512_castps512_ps256(v));
        else _mm512_mask_storeu_ps(dst + j * R, run, v);
    }
}

/* Line xr of dx += the runs at src, src + R, ... (their adjoint of im2col_line); a and b carry
 * the sums of earlier tap rows (rows with KH > 1). */
AVX512 static inline __attribute__((always_inline)) void col2im_acc(const float *src, const __m512i *idx0,
                                                                   const __mmask16 *keep0, const __m512i *idx1,
                                                                   const __mmask16 *keep1, int64_t taps,
                                                                   __mmask16 run, int wide, int64_t R,
                                                                   __m512 *a, __m512 *b) {
#pragma GCC unroll 9
    for (int64_t j = 0; j < taps; j++) {
        __m512 v = _mm512_maskz_loadu_ps(run, src + j * R);
        *a = _mm512_add_ps(*a, _mm512_maskz_permutexvar_ps(keep0[j], idx0[j], v));
        if (wide) *b = _mm512_add_ps(*b, _mm512_maskz_permutexvar_ps(keep1[j], idx1[j], v));
    }
}

AVX512 static inline __attribute__((always_inline)) void col2im_store(__mmask16 m0, __mmask16 m1, int wide, int fresh,
                                                                     __m512 a, __m512 b, float *xr) {
    if (!fresh) a = _mm512_add_ps(a, _mm512_maskz_loadu_ps(m0, xr));
    _mm512_mask_storeu_ps(xr, m0, a);
    if (wide) {
        if (!fresh) b = _mm512_add_ps(b, _mm512_maskz_loadu_ps(m1, xr + 16));
        _mm512_mask_storeu_ps(xr + 16, m1, b);
    }
}

/* A whole plane's taps go TAP_GROUP at a time, a pass over the planes each: fewer runs in
 * flight. Three a pass timed fastest of 1, 3 and 9 on Zen 4 (a C timing loop over 63 planes
 * of 16 by 3 x 3). At 64 planes (R = 1024, every run 4 KiB from the next) all three take
 * 2.5-3x as long; a colT row stride off 4 KiB multiples would avoid that. */
#define TAP_GROUP 3
#define GROUP_TAPS(T, t0) ((T) - (t0) < TAP_GROUP ? (T) - (t0) : TAP_GROUP)

/* BODY(idx0, keep0, idx1, keep1, T), the tap tables of the line's two halves and the tap
 * count, with T a constant for the 3 and 3 x 3 kernels and their tables copied to locals:
 * GCC keeps a table that the float stores may alias in memory, and reloads it every tap. */
#define TAP_LIST3(a) {a[0], a[1], a[2]}
#define TAP_LIST9(a) {a[0], a[1], a[2], a[3], a[4], a[5], a[6], a[7], a[8]}
#define COPY_TAPS(t, T, BODY) /* initialisers, not a loop: GCC then keeps the copies in registers */      \
    {                                                                                                           \
        const __m512i i0_[T] = TAP_LIST##T((t).idx[0]), i1_[T] = TAP_LIST##T((t).idx[1]);                      \
        const __mmask16 k0_[T] = TAP_LIST##T((t).keep[0]), k1_[T] = TAP_LIST##T((t).keep[1]);                  \
        (void)i1_, (void)k1_; /* im2col reads one half */                                                       \
        BODY(i0_, k0_, i1_, k1_, T)                                                                             \
    }
#define WITH_TAPS(t, BODY)                                                                                      \
    do {                                                                                                        \
        if ((t).taps == 3) COPY_TAPS(t, 3, BODY)                                                                \
        else if ((t).taps == 9) COPY_TAPS(t, 9, BODY)                                                           \
        else {                                                                                                  \
            BODY((t).idx[0], (t).keep[0], (t).idx[1], (t).keep[1], (t).taps)                                    \
        }                                                                                                       \
    } while (0)

AVX512 static void im2col_lines_avx512(const float *x, const conv_geom *g, float *colT) {
    line_taps t = {0};
    line_taps_of(g, 0, &t);
    const int whole = t.whole;
    /* the geometry in locals: the stores through float pointers would otherwise reload it */
    const int64_t N = g->n, C = g->c, H = g->h, W = g->w, KH = g->kh, KW = g->kw, OH = g->oh, OW = g->ow;
    const int64_t R = geom_rows(g), SH = g->sh, DH = g->dh, PH = g->ph;
    const __mmask16 m0 = t.m0, m1 = t.m1, lrun = t.run;
    const int wide = t.in > 16, narrow = t.out <= 8;
    /* a plane is one line for all taps; a row, KW taps' line for each (i, oh) */
#define IM2COL_BODY(idx, keep, idx1_, keep1_, T)                                                                 \
    if (whole)                                                                                                  \
        for (int64_t t0 = 0; t0 < T; t0 += TAP_GROUP)                                                           \
            for (int64_t n = 0; n < N; n++)                                                                     \
                for (int64_t c = 0; c < C; c++)                                                                 \
                    im2col_line(x + (n * C + c) * H * W, idx + t0, keep + t0, GROUP_TAPS(T, t0), m0, m1, lrun,  \
                                wide, narrow, R, colT + (c * KH * KW + t0) * R + n * OH * OW);                   \
    else                                                                                                        \
        for (int64_t n = 0; n < N; n++)                                                                         \
            for (int64_t c = 0; c < C; c++)                                                                     \
                for (int64_t i = 0; i < KH; i++)                                                                \
                    for (int64_t oh = 0; oh < OH; oh++) {                                                       \
                        int64_t h = oh * SH + i * DH - PH;                                                      \
                        im2col_line(h >= 0 && h < H ? x + ((n * C + c) * H + h) * W : NULL, idx, keep, T, m0,  \
                                    m1, lrun, wide, narrow, R, colT + (c * KH + i) * KW * R + (n * OH + oh) * OW); \
                    }
    WITH_TAPS(t, IM2COL_BODY);
#undef IM2COL_BODY
}

/* dx (written when fresh, else added to) = col2im(dcolT), the adjoint of im2col_lines_avx512:
 * each line of dx is summed in registers and stored once. */
AVX512 static void col2im_lines_avx512(const float *dcolT, const conv_geom *g, int fresh, float *dx) {
    line_taps t = {0};
    line_taps_of(g, 1, &t);
    const int whole = t.whole;
    const int64_t N = g->n, C = g->c, H = g->h, W = g->w, KH = g->kh, KW = g->kw, OH = g->oh, OW = g->ow;
    const int64_t R = geom_rows(g), SH = g->sh, DH = g->dh, PH = g->ph;
    const __mmask16 m0 = t.m0, m1 = t.m1, lrun = t.run;
    const int wide = t.in > 16;
#define COL2IM_BODY(idx0, keep0, idx1, keep1, T)                                                                  \
    if (whole)                                                                                                  \
        for (int64_t t0 = 0; t0 < T; t0 += TAP_GROUP)                                                           \
            for (int64_t n = 0; n < N; n++)                                                                     \
                for (int64_t c = 0; c < C; c++) {                                                               \
                    __m512 a = _mm512_setzero_ps(), b = a;                                                      \
                    col2im_acc(dcolT + (c * KH * KW + t0) * R + n * OH * OW, idx0 + t0, keep0 + t0, idx1 + t0,  \
                               keep1 + t0, GROUP_TAPS(T, t0), lrun, wide, R, &a, &b);                           \
                    col2im_store(m0, m1, wide, fresh && t0 == 0, a, b, dx + (n * C + c) * H * W);               \
                }                                                                                               \
    else                                                                                                        \
        for (int64_t n = 0; n < N; n++)                                                                         \
            for (int64_t c = 0; c < C; c++)                                                                     \
                for (int64_t h = 0; h < H; h++) {                                                               \
                    __m512 a = _mm512_setzero_ps(), b = a;                                                      \
                    for (int64_t i = 0; i < KH; i++) { /* the output rows that row h feeds */                  \
                        int64_t o = h + PH - i * DH, oh = o / SH;                                               \
                        if (o >= 0 && o % SH == 0 && oh < OH)                                                   \
                            col2im_acc(dcolT + (c * KH + i) * KW * R + (n * OH + oh) * OW, idx0, keep0, idx1,   \
                                       keep1, T, lrun, wide, R, &a, &b);                                        \
                    }                                                                                           \
                    col2im_store(m0, m1, wide, fresh, a, b, dx + ((n * C + c) * H + h) * W);                    \
                }
    WITH_TAPS(t, COL2IM_BODY);
#undef COL2IM_BODY
}

/* pad_'s view of one input row xr (W values) into row: sw phases of wq values */
AVX512 static void pad_row_avx512(const float *xr, const conv_geom *g, const conv_view *v, float *row) {
    int64_t wq = v->wq, pw = g->pw;
    if (g->sw == 1) {
        for (int64_t t = 0; t < wq; t += 16)
            _mm512_mask_storeu_ps(row + t, lanes(0, wq - t), load_window(xr, t - pw, g->w));
        return;
    }
    const __m512i even = _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30);
    const __m512i odd = _mm512_setr_epi32(1, 3, 5, 7, 9, 11, 13, 15, 17, 19, 21, 23, 25, 27, 29, 31);
    for (int64_t t = 0; t < wq; t += 16) { /* padded columns 2t .. 2t + 31 */
        __m512 a = load_window(xr, 2 * t - pw, g->w), b = load_window(xr, 2 * t + 16 - pw, g->w);
        __mmask16 m = lanes(0, wq - t);
        _mm512_mask_storeu_ps(row + t, m, _mm512_permutex2var_ps(a, even, b));
        _mm512_mask_storeu_ps(row + wq + t, m, _mm512_permutex2var_ps(a, odd, b));
    }
}

AVX512 static void pad_avx512(const float *x, const conv_geom *g, const conv_view *v, float *xv) {
    for (int64_t nc = 0; nc < g->n * g->c; nc++)
        for (int64_t u = 0; u < v->hp; u++) {
            float *row = xv + nc * v->plane + u * v->rs;
            int64_t h = u - g->ph;
            if (h < 0 || h >= g->h)
                for (int64_t k = 0; k < v->rs; k += 16) _mm512_mask_storeu_ps(row + k, lanes(0, v->rs - k), _mm512_setzero_ps());
            else
                pad_row_avx512(x + (nc * g->h + h) * g->w, g, v, row);
        }
}

/* dx row xr (+)= the input's part of one view row */
AVX512 static void unpad_row_avx512(const float *row, const conv_geom *g, const conv_view *v, int fresh, float *xr) {
    int64_t wq = v->wq, pw = g->pw, W = g->w;
    if (g->sw == 1) {
        for (int64_t w = 0; w < W; w += 16) {
            __mmask16 m = lanes(0, W - w);
            __m512 d = load_window(row, w + pw, wq);
            if (!fresh) d = _mm512_add_ps(d, _mm512_maskz_loadu_ps(m, xr + w));
            _mm512_mask_storeu_ps(xr + w, m, d);
        }
        return;
    }
    const __m512i lo = _mm512_setr_epi32(0, 16, 1, 17, 2, 18, 3, 19, 4, 20, 5, 21, 6, 22, 7, 23);
    const __m512i hi = _mm512_setr_epi32(8, 24, 9, 25, 10, 26, 11, 27, 12, 28, 13, 29, 14, 30, 15, 31);
    for (int64_t k = 0; k < W + pw; k += 32) { /* padded columns k .. k + 31, phases' entries k/2 .. k/2 + 15 */
        __m512 p0 = load_window(row, k / 2, wq), p1 = load_window(row + wq, k / 2, wq);
        __m512 halves[2] = {_mm512_permutex2var_ps(p0, lo, p1), _mm512_permutex2var_ps(p0, hi, p1)};
        for (int h = 0; h < 2; h++) {
            int64_t w0 = k + 16 * h - pw; /* input column of lane 0 */
            __mmask16 m = lanes(-w0, W - w0);
            if (!m) continue;
            __m512 d = halves[h];
            if (!fresh) d = _mm512_add_ps(d, _mm512_maskz_loadu_ps(m, xr + w0));
            _mm512_mask_storeu_ps(xr + w0, m, d);
        }
    }
}

AVX512 static void unpad_avx512(const float *dxv, const conv_geom *g, const conv_view *v, int fresh, float *dx) {
    for (int64_t nc = 0; nc < g->n * g->c; nc++)
        for (int64_t h = 0; h < g->h; h++) {
            float *xr = dx + (nc * g->h + h) * g->w;
            int64_t u = h + g->ph;
            if (u < v->hp) unpad_row_avx512(dxv + nc * v->plane + u * v->rs, g, v, fresh, xr);
            else if (fresh) /* a row no tap reaches */
                for (int64_t w = 0; w < g->w; w += 16) _mm512_mask_storeu_ps(xr + w, lanes(0, g->w - w), _mm512_setzero_ps());
        }
}

AVX512 static void from_cnp_avx512(const float *Yp, const float *bias, const conv_geom *g, int add, float *y) {
    const int64_t P = g->oh * g->ow, R = g->n * P;
    for (int64_t n = 0; n < g->n; n++)
        for (int64_t o = 0; o < g->oc; o++) {
            const float *src = Yp + o * R + n * P;
            float *dst = y + (n * g->oc + o) * P;
            __m512 b = _mm512_set1_ps(bias ? bias[o] : 0.0f);
            for (int64_t p = 0; p < P; p += 16) {
                __mmask16 m = lanes(0, P - p);
                __m512 val = _mm512_add_ps(_mm512_maskz_loadu_ps(m, src + p), b);
                if (add) val = _mm512_add_ps(val, _mm512_maskz_loadu_ps(m, dst + p));
                _mm512_mask_storeu_ps(dst + p, m, val);
            }
        }
}

AVX512 static void to_cnp_avx512(const float *G, const conv_geom *g, float *Gp) {
    const int64_t P = g->oh * g->ow, R = g->n * P;
    for (int64_t n = 0; n < g->n; n++)
        for (int64_t o = 0; o < g->oc; o++) copy_run(Gp + o * R + n * P, G + (n * g->oc + o) * P, P);
}

/* 1: the float32 movements of this geometry run here */
static int conv_avx512(const conv_geom *g) {
    static int vl = -1; /* the 4- and 8-lane masked forms need AVX-512VL beside AVX-512F */
    if (vl < 0) vl = __builtin_cpu_supports("avx512vl");
    return g->sw <= 2 && vl && cg_skinny_isa() == CG_SKINNY_AVX512;
}

/* ---- the same float32 movements in AVX2, for CPUs without AVX-512 ----
 * AVX2's masked loads are cheap, but its masked stores are not (vmaskmovps to memory: 11-17
 * ns a run of 5 on Zen 3, against 2 ns for an unmasked store and 7-10 ns for the scalar
 * loop): so loads are masked, and the last 1-7 values of a run are stored in 4-, 2- and
 * 1-wide pieces. Strides 1 and 2 only, as above. */
#define AVX2 __attribute__((target("avx2,fma")))
#define HAVE_CONV_AVX2 1

/* lanes l of [0, 8) with lo <= l < hi, as a maskload mask */
AVX2 static inline __m256i lanes8(int64_t lo, int64_t hi) {
    int l0 = lo < 0 ? 0 : lo > 8 ? 8 : (int)lo, h0 = hi < 0 ? 0 : hi > 8 ? 8 : (int)hi;
    const __m256i iota = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
    return _mm256_and_si256(_mm256_cmpgt_epi32(iota, _mm256_set1_epi32(l0 - 1)),
                            _mm256_cmpgt_epi32(_mm256_set1_epi32(h0), iota));
}

/* d[:min(r, 8)] = v's first lanes */
AVX2 static inline void store_first(float *d, __m256 v, int64_t r) {
    if (r >= 8) {
        _mm256_storeu_ps(d, v);
        return;
    }
    __m128 x = _mm256_castps256_ps128(v);
    if (r & 4) {
        _mm_storeu_ps(d, x);
        x = _mm256_extractf128_ps(v, 1);
        d += 4;
    }
    if (r & 2) {
        _mm_storel_pi((__m64 *)d, x);
        x = _mm_movehl_ps(x, x);
        d += 2;
    }
    if (r & 1) _mm_store_ss(d, x);
}

/* 8 values of row[k0 + l], 0 where k0 + l is outside [0, len) (no read there) */
AVX2 static inline __m256 window8(const float *row, int64_t k0, int64_t len) {
    return _mm256_maskload_ps(row + k0, lanes8(-k0, len - k0));
}

AVX2 static inline void copy_run8(float *d, const float *s, int64_t n) {
    if (n >= 8) { /* whole vectors, the last one overlapping the one before: a copy may */
        int64_t k = 0;
        for (; k + 8 <= n; k += 8) _mm256_storeu_ps(d + k, _mm256_loadu_ps(s + k));
        if (k < n) _mm256_storeu_ps(d + n - 8, _mm256_loadu_ps(s + n - 8));
        return;
    }
    store_first(d, _mm256_maskload_ps(s, lanes8(0, n)), n);
}

AVX2 static inline void add_run8(float *d, const float *s, int64_t n) {
    int64_t k = 0;
    for (; k + 8 <= n; k += 8) _mm256_storeu_ps(d + k, _mm256_add_ps(_mm256_loadu_ps(d + k), _mm256_loadu_ps(s + k)));
    if (k < n) {
        __m256i m = lanes8(0, n - k);
        store_first(d + k, _mm256_add_ps(_mm256_maskload_ps(d + k, m), _mm256_maskload_ps(s + k, m)), n - k);
    }
}

AVX2 static void im2col_avx2(const float *src, const conv_geom *g, const conv_view *v, float *colT) {
    for (int64_t c = 0; c < g->c; c++)
        for (int64_t i = 0; i < g->kh; i++)
            for (int64_t j = 0; j < g->kw; j++) {
                const float *base = src + c * v->plane + i * g->dh * v->rs + view_tap(g, v, j);
                for (int64_t n = 0; n < g->n; n++)
                    for (int64_t oh = 0; oh < g->oh; oh++, colT += g->ow)
                        copy_run8(colT, base + n * g->c * v->plane + oh * g->sh * v->rs, g->ow);
            }
}

AVX2 static void col2im_avx2(const float *dcolT, const conv_geom *g, const conv_view *v, float *dst) {
    for (int64_t c = 0; c < g->c; c++)
        for (int64_t i = 0; i < g->kh; i++)
            for (int64_t j = 0; j < g->kw; j++) {
                float *base = dst + c * v->plane + i * g->dh * v->rs + view_tap(g, v, j);
                for (int64_t n = 0; n < g->n; n++)
                    for (int64_t oh = 0; oh < g->oh; oh++, dcolT += g->ow)
                        add_run8(base + n * g->c * v->plane + oh * g->sh * v->rs, dcolT, g->ow);
            }
}

/* the even and the odd lanes of the 16 values a, b */
AVX2 static inline void deinterleave8(__m256 a, __m256 b, __m256 *even, __m256 *odd) {
    __m256 e = _mm256_shuffle_ps(a, b, _MM_SHUFFLE(2, 0, 2, 0)), o = _mm256_shuffle_ps(a, b, _MM_SHUFFLE(3, 1, 3, 1));
    *even = _mm256_castpd_ps(_mm256_permute4x64_pd(_mm256_castps_pd(e), _MM_SHUFFLE(3, 1, 2, 0)));
    *odd = _mm256_castpd_ps(_mm256_permute4x64_pd(_mm256_castps_pd(o), _MM_SHUFFLE(3, 1, 2, 0)));
}

AVX2 static void pad_row_avx2(const float *xr, const conv_geom *g, const conv_view *v, float *row) {
    int64_t wq = v->wq, pw = g->pw;
    if (g->sw == 1) {
        for (int64_t t = 0; t < wq; t += 8) store_first(row + t, window8(xr, t - pw, g->w), wq - t);
        return;
    }
    for (int64_t t = 0; t < wq; t += 8) { /* padded columns 2t .. 2t + 15 */
        __m256 even, odd;
        deinterleave8(window8(xr, 2 * t - pw, g->w), window8(xr, 2 * t + 8 - pw, g->w), &even, &odd);
        store_first(row + t, even, wq - t);
        store_first(row + wq + t, odd, wq - t);
    }
}

AVX2 static void pad_avx2(const float *x, const conv_geom *g, const conv_view *v, float *xv) {
    for (int64_t nc = 0; nc < g->n * g->c; nc++)
        for (int64_t u = 0; u < v->hp; u++) {
            float *row = xv + nc * v->plane + u * v->rs;
            int64_t h = u - g->ph;
            if (h < 0 || h >= g->h)
                for (int64_t k = 0; k < v->rs; k += 8) store_first(row + k, _mm256_setzero_ps(), v->rs - k);
            else
                pad_row_avx2(x + (nc * g->h + h) * g->w, g, v, row);
        }
}

/* dx row xr (+)= the input's part of one view row. Stride 2: input column w is padded
 * column w + pw, entry (w + pw) / 2 of phase (w + pw) % 2; 8 columns from w (w + pw of
 * fixed parity) interleave 4 entries of one phase with 4 of the other. */
AVX2 static void unpad_row_avx2(const float *row, const conv_geom *g, const conv_view *v, int fresh, float *xr) {
    int64_t wq = v->wq, pw = g->pw, W = g->w;
    const float *first = row + (pw & 1) * wq, *second = row + (1 - (pw & 1)) * wq;
    for (int64_t w = 0; w < W; w += 8) {
        __m256 d;
        if (g->sw == 1)
            d = window8(row, w + pw, wq);
        else {
            int64_t e = (w + pw) / 2, e2 = e + (pw & 1); /* first's entry, second's */
            __m128 a = _mm_maskload_ps(first + e, _mm256_castsi256_si128(lanes8(0, wq - e)));
            __m128 b = _mm_maskload_ps(second + e2, _mm256_castsi256_si128(lanes8(0, wq - e2)));
            d = _mm256_set_m128(_mm_unpackhi_ps(a, b), _mm_unpacklo_ps(a, b));
        }
        if (!fresh) d = _mm256_add_ps(d, _mm256_maskload_ps(xr + w, lanes8(0, W - w)));
        store_first(xr + w, d, W - w);
    }
}

AVX2 static void unpad_avx2(const float *dxv, const conv_geom *g, const conv_view *v, int fresh, float *dx) {
    for (int64_t nc = 0; nc < g->n * g->c; nc++)
        for (int64_t h = 0; h < g->h; h++) {
            float *xr = dx + (nc * g->h + h) * g->w;
            int64_t u = h + g->ph;
            if (u < v->hp) unpad_row_avx2(dxv + nc * v->plane + u * v->rs, g, v, fresh, xr);
            else if (fresh) /* a row no tap reaches */
                for (int64_t w = 0; w < g->w; w += 8) store_first(xr + w, _mm256_setzero_ps(), g->w - w);
        }
}

AVX2 static void from_cnp_avx2(const float *Yp, const float *bias, const conv_geom *g, int add, float *y) {
    const int64_t P = g->oh * g->ow, R = g->n * P;
    for (int64_t n = 0; n < g->n; n++)
        for (int64_t o = 0; o < g->oc; o++) {
            const float *src = Yp + o * R + n * P;
            float *dst = y + (n * g->oc + o) * P;
            __m256 b = _mm256_set1_ps(bias ? bias[o] : 0.0f);
            for (int64_t p = 0; p < P; p += 8) {
                __m256i m = lanes8(0, P - p);
                __m256 val = _mm256_add_ps(_mm256_maskload_ps(src + p, m), b);
                if (add) val = _mm256_add_ps(val, _mm256_maskload_ps(dst + p, m));
                store_first(dst + p, val, P - p);
            }
        }
}

AVX2 static void to_cnp_avx2(const float *G, const conv_geom *g, float *Gp) {
    const int64_t P = g->oh * g->ow, R = g->n * P;
    for (int64_t n = 0; n < g->n; n++)
        for (int64_t o = 0; o < g->oc; o++) copy_run8(Gp + o * R + n * P, G + (n * g->oc + o) * P, P);
}

static int conv_avx2(const conv_geom *g) { return g->sw <= 2 && cg_skinny_isa() == CG_SKINNY_AVX2; }
#else
#define HAVE_CONV_AVX512 0
#endif

/* The float32 movements: AVX-512 or AVX2 where conv_avx512 / conv_avx2 say, else the loops of conv_impl.h */
#if HAVE_CONV_AVX512
#define F32_MOVE(name, g, ...)                                                                 \
    do {                                                                                       \
        if (conv_avx512(g)) name##_avx512(__VA_ARGS__);                                        \
        else if (conv_avx2(g)) name##_avx2(__VA_ARGS__);                                       \
        else name##__f32(__VA_ARGS__);                                                         \
    } while (0)
#else
#define F32_MOVE(name, g, ...) name##__f32(__VA_ARGS__)
#endif

/* Scratch for a rule or replay, which cannot return a status (cg_rule_status). */
static void *scratch(size_t nbytes) {
    void *p = cg_malloc(nbytes ? nbytes : 1);
    if (!p) cg_rule_status_ = cg_error(CG_ERR_NOMEM, "conv: out of memory for a %zu-byte workspace", nbytes);
    return p;
}

/* How im2col reads the input: x itself (stride 1 and every tap inside it) or a copy padded
 * to every tap's extent (hp rows) with each row split into its sw stride phases of wq values,
 * so that a tap's values for consecutive outputs are adjacent. plane and rs: the strides of
 * (n, c) and of a row. */
static int conv_view_of(const conv_geom *g, conv_view *v) {
    v->hp = (g->oh - 1) * g->sh + (g->kh - 1) * g->dh + 1;
    int64_t wp = (g->ow - 1) * g->sw + (g->kw - 1) * g->dw + 1;
    int copy = g->ph || g->pw || v->hp > g->h || wp > g->w || g->sw > 1;
    v->wq = copy ? (wp + g->sw - 1) / g->sw : g->w;
    v->rs = copy ? g->sw * v->wq : g->w;
    v->plane = copy ? v->hp * v->rs : g->h * g->w;
    return copy;
}

#if HAVE_CONV_AVX512
/* the one test of im2col and col2im both: they must take the same path */
static int by_lines(const conv_geom *g, cg_dtype dt) {
    return dt == CG_F32 && conv_avx512(g) && (plane_lines(g) || row_lines(g));
}
#endif

/* colT = im2col(x): by lines (planes or rows) straight from x where they fit registers, else
 * through the view's copy when there is one; 0 when out of memory */
static int im2col(const conv_geom *g, cg_dtype dt, const void *x, void *colT) {
    conv_view v;
    void *xv = NULL;
#if HAVE_CONV_AVX512
    if (by_lines(g, dt)) {
        im2col_lines_avx512(x, g, colT);
        return 1;
    }
#endif
    if (conv_view_of(g, &v)) {
        if (!(xv = scratch((size_t)(g->n * g->c * v.plane) * cg_dtype_size(dt)))) return 0;
        if (dt == CG_F32) F32_MOVE(pad, g, x, g, &v, xv);
        else pad__f64(x, g, &v, xv);
    }
    if (dt == CG_F32) F32_MOVE(im2col, g, xv ? xv : x, g, &v, colT);
    else im2col__f64(xv ? xv : x, g, &v, colT);
    cg_free(xv);
    return 1;
}

/* dx (+)= col2im(dcolT) (written when fresh): by lines where im2col went by lines, else through a
 * view's copy when im2col used one */
static void col2im(const conv_geom *g, cg_dtype dt, const void *dcolT, int fresh, void *dx) {
    conv_view v;
    size_t es = cg_dtype_size(dt);
#if HAVE_CONV_AVX512
    if (by_lines(g, dt)) {
        col2im_lines_avx512(dcolT, g, fresh, dx);
        return;
    }
#endif
    if (!conv_view_of(g, &v)) {
        if (fresh) memset(dx, 0, (size_t)(g->n * g->c * g->h * g->w) * es);
        if (dt == CG_F32) F32_MOVE(col2im, g, dcolT, g, &v, dx);
        else col2im__f64(dcolT, g, &v, dx);
        return;
    }
    size_t nbytes = (size_t)(g->n * g->c * v.plane) * es;
    void *dxv = scratch(nbytes);
    if (!dxv) return;
    memset(dxv, 0, nbytes);
    if (dt == CG_F32) {
        F32_MOVE(col2im, g, dcolT, g, &v, dxv);
        F32_MOVE(unpad, g, dxv, g, &v, fresh, dx);
    } else {
        col2im__f64(dcolT, g, &v, dxv);
        unpad__f64(dxv, g, &v, fresh, dx);
    }
    cg_free(dxv);
}

/* im2col(x) in scratch (NULL: out of memory) */
static void *col_of(const conv_geom *g, cg_dtype dt, const void *x) {
    void *colT = scratch((size_t)(geom_cols(g) * geom_rows(g)) * cg_dtype_size(dt));
    if (colT && !im2col(g, dt, x, colT)) {
        cg_free(colT);
        return NULL;
    }
    return colT;
}

/* The compute functions, for either dtype. colT: im2col(x) (NULL: computed here); y written,
 * or added to when add. */
static cg_status conv_compute(const conv_geom *g, cg_dtype dt, const void *x, const void *w, const void *b,
                              void *colT_given, int add, void *y, void **colT_out) {
    size_t es = cg_dtype_size(dt);
    void *colT = colT_given ? colT_given : col_of(g, dt, x);
    void *Yp = g->n == 1 && !add && !b ? y : scratch((size_t)(g->oc * geom_rows(g)) * es); /* one sample: Yp is y */
    if (!colT || !Yp) {
        if (!colT_given) cg_free(colT);
        if (Yp != y) cg_free(Yp);
        return cg_rule_status();
    }
    const cg_blas_provider *blas = cg_blas_current();
    if (dt == CG_F32) {
        conv_gemm__f32(blas->sgemm, g, w, colT, Yp);
        if (Yp != y) F32_MOVE(from_cnp, g, Yp, b, g, add, y);
    } else {
        conv_gemm__f64(blas->dgemm, g, w, colT, Yp);
        if (Yp != y) from_cnp__f64(Yp, b, g, add, y);
    }
    if (Yp != y) cg_free(Yp);
    if (colT_out) *colT_out = colT;
    else if (!colT_given) cg_free(colT);
    return CG_OK;
}

/* Gp [OC, R] from G; db (NULL: none) its sums */
static void *gp_of(const conv_geom *g, cg_dtype dt, const void *G, void *db, int db_fresh) {
    void *Gp = scratch((size_t)(g->oc * geom_rows(g)) * cg_dtype_size(dt));
    if (!Gp) return NULL;
    if (dt == CG_F32) {
        F32_MOVE(to_cnp, g, G, g, Gp);
        if (db) cnp_sums__f32(Gp, g, db, db_fresh);
    } else {
        to_cnp__f64(G, g, Gp);
        if (db) cnp_sums__f64(Gp, g, db, db_fresh);
    }
    return Gp;
}

/* dX (+)= col2im(W^T Gp): written when fresh */
static void dx_compute(const conv_geom *g, cg_dtype dt, const void *w, const void *Gp, int fresh, void *dx) {
    size_t es = cg_dtype_size(dt);
    void *dcolT = scratch((size_t)(geom_cols(g) * geom_rows(g)) * es);
    if (!dcolT) return;
    const cg_blas_provider *blas = cg_blas_current();
    if (dt == CG_F32) conv_dcol_gemm__f32(blas->sgemm, g, w, Gp, dcolT);
    else conv_dcol_gemm__f64(blas->dgemm, g, w, Gp, dcolT);
    col2im(g, dt, dcolT, fresh, dx);
    cg_free(dcolT);
}

/* dW (+)= Gp colT^T (colT NULL: im2col(x) here) */
static void dw_compute(const conv_geom *g, cg_dtype dt, const void *Gp, const void *colT, const void *x, int fresh,
                       void *dW) {
    void *own = NULL;
    if (!colT && !(colT = own = col_of(g, dt, x))) return;
    const cg_blas_provider *blas = cg_blas_current();
    if (dt == CG_F32) conv_dw_gemm__f32(blas->sgemm, g, Gp, colT, fresh ? 0.0f : 1.0f, dW);
    else conv_dw_gemm__f64(blas->dgemm, g, Gp, colT, fresh ? 0.0 : 1.0, dW);
    cg_free(own);
}

/* ---- geometry ---- */
static int spatial_of(const cg_tensor *t) { return t->ndim - 2; }

/* x [N, C, (H,) W] or w [OC, CG, (KH,) KW]: the trailing sizes as (h, w) */
static void hw_of(const cg_tensor *t, int64_t *h, int64_t *w) {
    *h = t->ndim == 4 ? t->shape[2] : 1;
    *w = t->shape[t->ndim - 1];
}

static void params_of(conv_geom *g, const int64_t *ip) {
    g->sh = ip[0], g->sw = ip[1], g->ph = ip[2], g->pw = ip[3], g->dh = ip[4], g->dw = ip[5], g->groups = ip[6];
}

static void params_to(const conv_geom *g, int64_t a, int64_t b, int64_t *ip) {
    int64_t v[9] = {g->sh, g->sw, g->ph, g->pw, g->dh, g->dw, g->groups, a, b};
    memcpy(ip, v, sizeof v);
}

/* A node's geometry: conv from (x, w), conv_dx from (g, w) and the input size, conv_dw from
 * (g, x) and the kernel size. */
static conv_geom node_geom(const cg_node *node) {
    conv_geom g;
    params_of(&g, node->ip);
    const cg_tensor *a = node->inputs[0], *b = node->inputs[1];
    g.spatial = spatial_of(a);
    g.n = a->shape[0];
    if (node->op == CG_OP_CONV) {
        g.c = a->shape[1], g.oc = b->shape[0];
        hw_of(a, &g.h, &g.w);
        hw_of(b, &g.kh, &g.kw);
        g.oh = node->ip[7], g.ow = node->ip[8];
    } else {
        g.oc = a->shape[1];
        hw_of(a, &g.oh, &g.ow);
        if (node->op == CG_OP_CONV_DX) {
            g.c = b->shape[1] * g.groups;
            hw_of(b, &g.kh, &g.kw);
            g.h = node->ip[7], g.w = node->ip[8];
        } else {
            g.c = b->shape[1];
            hw_of(b, &g.h, &g.w);
            g.kh = node->ip[7], g.kw = node->ip[8];
        }
    }
    return g;
}

static cg_status check_params(const char *op, const conv_geom *g) {
    if (g->sh < 1 || g->sw < 1 || g->dh < 1 || g->dw < 1 || g->ph < 0 || g->pw < 0 || g->groups < 1)
        return cg_error(CG_ERR_VALUE, "%s: stride and dilation must be positive and padding non-negative, got "
                                      "stride (%lld, %lld), padding (%lld, %lld), dilation (%lld, %lld), groups %lld",
                        op, (long long)g->sh, (long long)g->sw, (long long)g->ph, (long long)g->pw, (long long)g->dh,
                        (long long)g->dw, (long long)g->groups);
    const int64_t big = (int64_t)1 << 31;
    if (g->sh > big || g->sw > big || g->dh > big || g->dw > big || g->ph > big || g->pw > big || g->groups > big ||
        g->n > big || g->c > big || g->oc > big || g->h > big || g->w > big || g->kh > big || g->kw > big ||
        g->oh > big || g->ow > big)
        return cg_error(CG_ERR_SHAPE, "%s: a size, stride, padding or dilation exceeds 2^31", op);
    if (g->c % g->groups || g->oc % g->groups)
        return cg_error(CG_ERR_VALUE, "%s: groups=%lld must divide both the input channels (%lld) and the output "
                                      "channels (%lld)",
                        op, (long long)g->groups, (long long)g->c, (long long)g->oc);
    if (g->spatial == 1 && (g->h != 1 || g->kh != 1 || g->oh != 1 || g->ph != 0))
        return cg_error(CG_ERR_SHAPE, "%s: a 1-D convolution has height 1 and no padding in it", op);
    if (g->oh < 1 || g->ow < 1 || g->h < 1 || g->w < 1 || g->kh < 1 || g->kw < 1)
        return cg_error(CG_ERR_SHAPE, "%s: empty sizes: input %lldx%lld, kernel %lldx%lld, output %lldx%lld", op,
                        (long long)g->h, (long long)g->w, (long long)g->kh, (long long)g->kw, (long long)g->oh,
                        (long long)g->ow);
    double cols = (double)g->c * (double)g->kh * (double)g->kw, rows = (double)g->n * (double)g->oh * (double)g->ow;
    if (cols * rows > 0x1p40 || rows > INT_MAX || cols > INT_MAX || g->oc > INT_MAX)
        return cg_error(CG_ERR_SHAPE, "%s: the im2col matrix (%.0f x %.0f) is too large", op, cols, rows);
    /* the padded copy of the input: every tap's extent */
    double hp = (double)(g->oh - 1) * (double)g->sh + (double)(g->kh - 1) * (double)g->dh + 1;
    double wp = (double)(g->ow - 1) * (double)g->sw + (double)(g->kw - 1) * (double)g->dw + 1 + (double)g->sw;
    if ((double)g->n * (double)g->c * (hp + (double)g->h) * (wp + (double)g->w) > 0x1p40)
        return cg_error(CG_ERR_SHAPE, "%s: the taps' extent (%.0f x %.0f) is too large", op, hp, wp);
    return CG_OK;
}

static void out_shape(const conv_geom *g, int64_t d1, int64_t h, int64_t w, int64_t *shape) {
    shape[0] = g->n, shape[1] = d1;
    if (g->spatial == 2) shape[2] = h, shape[3] = w;
    else shape[2] = w;
}

/* Record op over ins with y and the geometry; keep (or free, with no node) extra. */
static cg_status record(int op, int n_in, cg_tensor **ins, cg_tensor *y, const conv_geom *g, int64_t a, int64_t b,
                        void *extra) {
    cg_node *node;
    cg_status st = cg_record(op, n_in, ins, y, &node);
    if (st || !node) {
        cg_free(extra);
        return st;
    }
    params_to(g, a, b, node->ip);
    node->extra = extra;
    return CG_OK;
}

/* ---- conv: y = x * w + b ---- */
cg_status cg_conv(cg_tensor *x, cg_tensor *w, cg_tensor *b, const int64_t *stride, const int64_t *pad,
                  const int64_t *dilation, int64_t groups, const int64_t *out_hw, cg_tensor **out) {
    CG_PROF_BEGIN();
    CG_REQUIRE_FLOAT("conv", x);
    CG_REQUIRE_FLOAT("conv", w);
    if (b) CG_REQUIRE_FLOAT("conv", b);
    cg_status st;
    if ((st = cg_same_dtype("conv", x, w)) || (b && (st = cg_same_dtype("conv", x, b)))) return st;
    char b1[CG_SHAPE_BUF], b2[CG_SHAPE_BUF];
    if ((x->ndim != 3 && x->ndim != 4) || w->ndim != x->ndim)
        return cg_error(CG_ERR_SHAPE, "conv: input %s and weight %s must both be 3-D (1-D convolution) or 4-D (2-D)",
                        cg_shape_str(x->ndim, x->shape, b1, sizeof b1), cg_shape_str(w->ndim, w->shape, b2, sizeof b2));
    int64_t ip[9] = {stride[0], stride[1], pad[0], pad[1], dilation[0], dilation[1], groups, out_hw[0], out_hw[1]};
    conv_geom g;
    params_of(&g, ip);
    g.spatial = spatial_of(x), g.n = x->shape[0], g.c = x->shape[1], g.oc = w->shape[0], g.oh = out_hw[0],
    g.ow = out_hw[1];
    hw_of(x, &g.h, &g.w);
    hw_of(w, &g.kh, &g.kw);
    if ((st = check_params("conv", &g))) return st;
    if (w->shape[1] * groups != g.c)
        return cg_error(CG_ERR_SHAPE, "conv: weight %s with groups=%lld expects %lld input channels, got input %s",
                        cg_shape_str(w->ndim, w->shape, b2, sizeof b2), (long long)groups,
                        (long long)(w->shape[1] * groups), cg_shape_str(x->ndim, x->shape, b1, sizeof b1));
    if (b && (b->ndim != 1 || b->shape[0] != g.oc))
        return cg_error(CG_ERR_SHAPE, "conv: bias %s does not fit weight %s (expected [%lld])",
                        cg_shape_str(b->ndim, b->shape, b1, sizeof b1), cg_shape_str(w->ndim, w->shape, b2, sizeof b2),
                        (long long)g.oc);
    int64_t shape[4];
    out_shape(&g, g.oc, g.oh, g.ow, shape);
    cg_tensor *y;
    if ((st = cg_tensor_empty(x->dtype, x->ndim, shape, &y))) return st;
    void *colT = NULL;
    if ((st = conv_compute(&g, x->dtype, x->data, w->data, b ? b->data : NULL, NULL, 0, y->data, &colT))) {
        cg_tensor_release(y);
        return st;
    }
    cg_tensor *ins[3] = {x, w, b};
    if ((st = record(CG_OP_CONV, b ? 3 : 2, ins, y, &g, g.oh, g.ow, colT))) return st; /* cg_record released y */
    *out = y;
    return CG_OK;
}

void cg_conv_replay(cg_node *node) {
    conv_geom g = node_geom(node);
    const cg_tensor *b = node->n_inputs == 3 ? node->inputs[2] : NULL;
    if (!im2col(&g, node->dtype, node->inputs[0]->data, node->extra)) return; /* the colT the backward reads */
    conv_compute(&g, node->dtype, NULL, node->inputs[1]->data, b ? b->data : NULL, node->extra, 0,
                 node->saved_out->data, NULL);
}

/* dx = col2im(W^T Gp), dW = Gp colT^T (the saved colT), db = the sums of G */
void cg_conv_bwd(cg_node *node, const void *G, void **dins) {
    conv_geom g = node_geom(node);
    const cg_tensor *w = node->inputs[1];
    void *db = node->n_inputs == 3 ? dins[2] : NULL;
    void *Gp = gp_of(&g, node->dtype, G, db, node->fresh & 4);
    if (!Gp) return;
    if (dins[1]) CG_PROF_PHASE(node, CG_PHASE_BWD_CONV_DW, 2.0 * (double)(g.oc * geom_rows(&g)) * (double)(geom_cols(&g) / g.groups),
                               dw_compute(&g, node->dtype, Gp, node->extra, NULL, node->fresh & 2, dins[1]));
    if (dins[0]) CG_PROF_PHASE(node, CG_PHASE_BWD_CONV_DX, 2.0 * (double)(g.oc * geom_rows(&g)) * (double)(geom_cols(&g) / g.groups),
                               dx_compute(&g, node->dtype, w->data, Gp, node->fresh & 1, dins[0]));
    cg_free(Gp);
}

/* ---- conv_dx: dX [N, C, H, W] = col2im(W^T Gp) from G [N, OC, OH, OW], the adjoint of conv in x ---- */
static cg_status adjoint_geom(const char *op, cg_tensor *G, cg_tensor *other, const int64_t *stride, const int64_t *pad,
                              const int64_t *dilation, int64_t groups, const int64_t *size, int op_code, conv_geom *g) {
    CG_REQUIRE_FLOAT(op, G);
    CG_REQUIRE_FLOAT(op, other);
    cg_status st;
    if ((st = cg_same_dtype(op, G, other))) return st;
    char b1[CG_SHAPE_BUF], b2[CG_SHAPE_BUF];
    if ((G->ndim != 3 && G->ndim != 4) || other->ndim != G->ndim)
        return cg_error(CG_ERR_SHAPE, "%s: %s and %s must both be 3-D or 4-D", op,
                        cg_shape_str(G->ndim, G->shape, b1, sizeof b1), cg_shape_str(other->ndim, other->shape, b2, sizeof b2));
    int64_t ip[9] = {stride[0], stride[1], pad[0], pad[1], dilation[0], dilation[1], groups, size[0], size[1]};
    params_of(g, ip);
    g->spatial = spatial_of(G), g->n = G->shape[0], g->oc = G->shape[1];
    hw_of(G, &g->oh, &g->ow);
    if (op_code == CG_OP_CONV_DX) {
        g->c = other->shape[1] * groups, g->h = size[0], g->w = size[1];
        hw_of(other, &g->kh, &g->kw);
        if (other->shape[0] != g->oc)
            return cg_error(CG_ERR_SHAPE, "%s: gradient %s does not fit weight %s", op,
                            cg_shape_str(G->ndim, G->shape, b1, sizeof b1), cg_shape_str(other->ndim, other->shape, b2, sizeof b2));
    } else {
        g->c = other->shape[1], g->kh = size[0], g->kw = size[1];
        hw_of(other, &g->h, &g->w);
        if (other->shape[0] != g->n)
            return cg_error(CG_ERR_SHAPE, "%s: gradient %s does not fit input %s", op,
                            cg_shape_str(G->ndim, G->shape, b1, sizeof b1), cg_shape_str(other->ndim, other->shape, b2, sizeof b2));
    }
    return check_params(op, g);
}

/* dX = col2im(W^T Gp) of G into dx */
static void conv_dx_run(const conv_geom *g, cg_dtype dt, const void *G, const void *w, void *dx) {
    void *Gp = gp_of(g, dt, G, NULL, 0);
    if (!Gp) return;
    dx_compute(g, dt, w, Gp, 1, dx);
    cg_free(Gp);
}

/* dW = Gp col(x)^T of G and x into dW */
static void conv_dw_run(const conv_geom *g, cg_dtype dt, const void *G, const void *x, void *dW) {
    void *Gp = gp_of(g, dt, G, NULL, 0);
    if (!Gp) return;
    dw_compute(g, dt, Gp, NULL, x, 1, dW);
    cg_free(Gp);
}

/* The entry of conv_dx and conv_dw: check, compute with run, record. */
static cg_status adjoint(int op, cg_tensor *G, cg_tensor *other, const int64_t *stride, const int64_t *pad,
                         const int64_t *dilation, int64_t groups, const int64_t *size, cg_tensor **out) {
    const char *name = cg_op_name(op);
    conv_geom g;
    cg_status st = adjoint_geom(name, G, other, stride, pad, dilation, groups, size, op, &g);
    if (st) return st;
    int64_t shape[4];
    if (op == CG_OP_CONV_DX) out_shape(&g, g.c, g.h, g.w, shape);
    else {
        shape[0] = g.oc, shape[1] = g.c / g.groups;
        if (g.spatial == 2) shape[2] = g.kh, shape[3] = g.kw;
        else shape[2] = g.kw;
    }
    cg_tensor *y;
    if ((st = cg_tensor_empty(G->dtype, G->ndim, shape, &y))) return st;
    if (op == CG_OP_CONV_DX) conv_dx_run(&g, G->dtype, G->data, other->data, y->data);
    else conv_dw_run(&g, G->dtype, G->data, other->data, y->data);
    cg_tensor *ins[2] = {G, other};
    if ((st = cg_rule_status())) {
        cg_tensor_release(y);
        return st;
    }
    if ((st = record(op, 2, ins, y, &g, size[0], size[1], NULL))) return st; /* cg_record released y */
    *out = y;
    return CG_OK;
}

cg_status cg_conv_dx(cg_tensor *G, cg_tensor *w, const int64_t *stride, const int64_t *pad, const int64_t *dilation,
                     int64_t groups, const int64_t *in_hw, cg_tensor **out) {
    CG_PROF_BEGIN();
    return adjoint(CG_OP_CONV_DX, G, w, stride, pad, dilation, groups, in_hw, out);
}

cg_status cg_conv_dw(cg_tensor *G, cg_tensor *x, const int64_t *stride, const int64_t *pad, const int64_t *dilation,
                     int64_t groups, const int64_t *k_hw, cg_tensor **out) {
    CG_PROF_BEGIN();
    return adjoint(CG_OP_CONV_DW, G, x, stride, pad, dilation, groups, k_hw, out);
}

void cg_conv_dx_replay(cg_node *node) {
    conv_geom g = node_geom(node);
    conv_dx_run(&g, node->dtype, node->inputs[0]->data, node->inputs[1]->data, node->saved_out->data);
}

void cg_conv_dw_replay(cg_node *node) {
    conv_geom g = node_geom(node);
    conv_dw_run(&g, node->dtype, node->inputs[0]->data, node->inputs[1]->data, node->saved_out->data);
}

/* conv_dx(G, w) with upstream U (x's shape): dG = conv(U, w), dw = Gp col(U)^T */
void cg_conv_dx_bwd(cg_node *node, const void *U, void **dins) {
    conv_geom g = node_geom(node);
    void *colU = NULL;
    if (dins[0]) {
        if (conv_compute(&g, node->dtype, U, node->inputs[1]->data, NULL, NULL, !(node->fresh & 1), dins[0],
                         dins[1] ? &colU : NULL))
            return;
    } else if (!(colU = col_of(&g, node->dtype, U)))
        return;
    if (dins[1]) {
        void *Gp = gp_of(&g, node->dtype, node->inputs[0]->data, NULL, 0);
        if (Gp) dw_compute(&g, node->dtype, Gp, colU, NULL, node->fresh & 2, dins[1]);
        cg_free(Gp);
    }
    cg_free(colU);
}

/* conv_dw(G, x) with upstream V (w's shape): dG = conv(x, V), dx = col2im(V^T Gp) */
void cg_conv_dw_bwd(cg_node *node, const void *V, void **dins) {
    conv_geom g = node_geom(node);
    if (dins[0] && conv_compute(&g, node->dtype, node->inputs[1]->data, V, NULL, NULL, !(node->fresh & 1), dins[0], NULL))
        return;
    if (dins[1]) {
        void *Gp = gp_of(&g, node->dtype, node->inputs[0]->data, NULL, 0);
        if (Gp) dx_compute(&g, node->dtype, V, Gp, node->fresh & 2, dins[1]);
        cg_free(Gp);
    }
}
