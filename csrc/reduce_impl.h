/* reduce_impl.h: reduction and softmax loops for one element type (T, SFX; the math
 * functions of cg_math.h), included by reduce.c once per dtype.
 *
 * Layout: x is viewed as [O, R, I] (R = the reduced axes, merged), y as [O, I]
 * (softmax: y is [O, R, I] like x). Element (o, r, i) of x is x[(o*R + r)*I + i]. */

#define CG_EXP_CHUNK 256 /* exps computed into a stack buffer this long before they are summed */

/* y[o,i] = sum_r x[o,r,i] (MEAN: / R) */
CG_SIMD static void FN(sum_fwd_)(int64_t O, int64_t R, int64_t I, const T *x, T *y, int mean) {
    for (int64_t o = 0; o < O; o++) {
        T *yr = y + o * I;
        if (I == 1) { /* a whole row, in double: a float32 loss summed over 10,000 points kept a
                       * rounding error (~1e-6 relative) that stopped L-BFGS's line search early */
            double acc = 0;
            const T *xr = x + o * R;
            for (int64_t r = 0; r < R; r++) acc += (double)xr[r];
            yr[0] = (T)(mean ? acc / (double)R : acc);
        } else {
            for (int64_t i = 0; i < I; i++) yr[i] = 0;
            for (int64_t r = 0; r < R; r++) {
                const T *xr = x + (o * R + r) * I;
                for (int64_t i = 0; i < I; i++) yr[i] += xr[i];
            }
            if (mean)
                for (int64_t i = 0; i < I; i++) yr[i] /= (T)R;
        }
    }
}

/* dx[o,r,i] += g[o,i] (MEAN: / R) */
CG_SIMD static void FN(sum_bwd_)(int64_t O, int64_t R, int64_t I, const T *g, T *dx, int mean) {
    T scale = mean ? (T)1 / (T)R : (T)1;
    for (int64_t o = 0; o < O; o++)
        for (int64_t r = 0; r < R; r++) {
            T *d = dx + (o * R + r) * I;
            const T *gr = g + o * I;
            for (int64_t i = 0; i < I; i++) d[i] += gr[i] * scale;
        }
}

/* max (sign = 1) or min (sign = -1); NaN wins. R > 0. */
CG_SIMD static void FN(max_fwd_)(int64_t O, int64_t R, int64_t I, const T *x, T *y, int sign) {
    for (int64_t o = 0; o < O; o++)
        for (int64_t i = 0; i < I; i++) {
            const T *p = x + o * R * I + i;
            T m = p[0];
            for (int64_t r = 1; r < R; r++) {
                T v = p[r * I];
                if ((sign > 0 ? v > m : v < m) || v != v) m = v;
            }
            y[o * I + i] = m;
        }
}

/* The gradient is shared equally among the elements equal to the extreme (ties). */
CG_SIMD static void FN(max_bwd_)(int64_t O, int64_t R, int64_t I, const T *x, const T *y, const T *g, T *dx) {
    for (int64_t o = 0; o < O; o++)
        for (int64_t i = 0; i < I; i++) {
            const T *p = x + o * R * I + i;
            T m = y[o * I + i];
            int64_t count = 0;
            for (int64_t r = 0; r < R; r++) count += p[r * I] == m;
            if (!count) continue; /* NaN extreme: no element equals it */
            T share = g[o * I + i] / (T)count;
            for (int64_t r = 0; r < R; r++)
                if (p[r * I] == m) dx[o * R * I + r * I + i] += share;
        }
}

/* y = m + log(sum exp(x - m)), m the max: no overflow for large x */
CG_SIMD static void FN(logsumexp_fwd_)(int64_t O, int64_t R, int64_t I, const T *x, T *y) {
    for (int64_t o = 0; o < O; o++)
        for (int64_t i = 0; i < I; i++) {
            const T *p = x + o * R * I + i;
            T m = -INFINITY;
            for (int64_t r = 0; r < R; r++) {
                T v = p[r * I];
                if (v > m || v != v) m = v;
            }
            if (m != m || m == INFINITY || m == -INFINITY) {
                y[o * I + i] = m;
                continue;
            }
            T s = 0, buf[CG_EXP_CHUNK];
            for (int64_t r0 = 0; r0 < R; r0 += CG_EXP_CHUNK) { /* exps vectorised, then summed in order */
                int64_t nr = R - r0 < CG_EXP_CHUNK ? R - r0 : CG_EXP_CHUNK;
                for (int64_t r = 0; r < nr; r++) buf[r] = EXP(p[(r0 + r) * I] - m);
                for (int64_t r = 0; r < nr; r++) s += buf[r];
            }
            y[o * I + i] = m + LOG(s);
        }
}

CG_SIMD static void FN(logsumexp_bwd_)(int64_t O, int64_t R, int64_t I, const T *x, const T *y, const T *g,
                               T *dx) {
    for (int64_t o = 0; o < O; o++)
        for (int64_t i = 0; i < I; i++) {
            T yv = y[o * I + i], gv = g[o * I + i];
            for (int64_t r = 0; r < R; r++) {
                int64_t k = (o * R + r) * I + i;
                dx[k] += gv * EXP(x[k] - yv);
            }
        }
}

/* softmax / log_softmax along R, shifted by the max so that exp never overflows */
CG_SIMD static void FN(softmax_fwd_)(int64_t O, int64_t R, int64_t I, const T *x, T *y, int log_out) {
    for (int64_t o = 0; o < O; o++)
        for (int64_t i = 0; i < I; i++) {
            int64_t base = o * R * I + i;
            T m = -INFINITY;
            for (int64_t r = 0; r < R; r++) {
                T v = x[base + r * I];
                if (v > m || v != v) m = v;
            }
            if (m == -INFINITY) m = 0; /* all -inf: keep exp(x - m) defined */
            T s = 0;
            for (int64_t r = 0; r < R; r++) y[base + r * I] = EXP(x[base + r * I] - m); /* vectorised */
            for (int64_t r = 0; r < R; r++) s += y[base + r * I];
            if (log_out) {
                T ls = m + LOG(s);
                for (int64_t r = 0; r < R; r++) y[base + r * I] = x[base + r * I] - ls;
            } else {
                T inv = 1 / s;
                for (int64_t r = 0; r < R; r++) y[base + r * I] *= inv;
            }
        }
}

/* softmax: dx += y * (g - sum(g*y));  log_softmax: dx += g - exp(y) * sum(g) */
CG_SIMD static void FN(softmax_bwd_)(int64_t O, int64_t R, int64_t I, const T *y, const T *g, T *dx,
                             int log_out) {
    for (int64_t o = 0; o < O; o++)
        for (int64_t i = 0; i < I; i++) {
            int64_t base = o * R * I + i;
            T s = 0;
            for (int64_t r = 0; r < R; r++)
                s += log_out ? g[base + r * I] : g[base + r * I] * y[base + r * I];
            for (int64_t r = 0; r < R; r++) {
                int64_t k = base + r * I;
                dx[k] += log_out ? g[k] - EXP(y[k]) * s : y[k] * (g[k] - s);
            }
        }
}


/* y[o,r,i] = sum_{r' <= r} x[o,r',i]: each row is the previous row plus x's (vectorised over I) */
CG_SIMD static void FN(cumsum_fwd_)(int64_t O, int64_t R, int64_t I, const T *x, T *y) {
    for (int64_t o = 0; o < O; o++) {
        const T *xo = x + o * R * I;
        T *yo = y + o * R * I;
        if (I == 1) {
            T acc = 0;
            for (int64_t r = 0; r < R; r++) yo[r] = acc += xo[r];
            continue;
        }
        for (int64_t i = 0; i < I && R; i++) yo[i] = xo[i];
        for (int64_t r = 1; r < R; r++)
            for (int64_t i = 0; i < I; i++) yo[r * I + i] = yo[(r - 1) * I + i] + xo[r * I + i];
    }
}

/* dx[o,r,i] += sum_{r' >= r} g[o,r',i], the prefix sum taken from the end. dx holds other
 * gradients already (ADDS), so the running sums live in a stack buffer, CG_EXP_CHUNK
 * columns of I at a time. */
CG_SIMD static void FN(cumsum_bwd_)(int64_t O, int64_t R, int64_t I, const T *g, T *dx) {
    T acc[CG_EXP_CHUNK];
    for (int64_t o = 0; o < O; o++)
        for (int64_t i0 = 0; i0 < I; i0 += CG_EXP_CHUNK) {
            int64_t ni = I - i0 < CG_EXP_CHUNK ? I - i0 : CG_EXP_CHUNK;
            for (int64_t i = 0; i < ni; i++) acc[i] = 0;
            for (int64_t r = R - 1; r >= 0; r--) {
                const T *gr = g + (o * R + r) * I + i0;
                T *d = dx + (o * R + r) * I + i0;
                for (int64_t i = 0; i < ni; i++) {
                    acc[i] += gr[i];
                    d[i] += acc[i];
                }
            }
        }
}
