/* fastlog row kernels, written once for a floating type T.
 *
 * Included twice by fl_kernels.h with
 *   T = float  / double,   FL_SFX = f32 / f64,   FL_EXP = fl_expf / fl_exp.
 *
 * Every kernel works on a block of `nrows` contiguous rows of length `C`
 * (row stride C).  The callers (Cython, in _core.pxi) split the rows into
 * fixed chunks and run the chunks in an OpenMP `prange`; a row's result does
 * not depend on how rows are chunked or which thread ran it, so results are
 * bit-identical for any thread count.
 *
 * All of them are built on ONE row reduction, FL_(row_stats): the shift a
 * and the log term L with logsumexp(row) = a + L.
 */

#define FL_CAT2(a, b) a##_##b
#define FL_CAT(a, b) FL_CAT2(a, b)
#define FL_(name) FL_CAT(fl_##name, FL_SFX)

/* Row reduction.
 *
 * Finite max m (the usual case): a = m, and with cnt = #{j: x_j == m},
 * s = sum_{x_j != m} exp(x_j - m):  L = log(cnt) + log1p(s / cnt).
 * Splitting out the max terms and using log1p is SciPy's logsumexp trick;
 * it keeps log_softmax of the dominant class accurate to the last bit.
 * Non-finite max (+inf, -inf: all -inf, or a NaN that hides behind the max):
 * a = 0 and L = log(sum exp(x)), which reproduces SciPy's inf/nan results.
 *
 * If e != NULL, e[j] = exp(x_j - a) is stored (e may alias x).  *S_out gets
 * sum_j exp(x_j - a) (accumulated in double).  exp is evaluated once per
 * element.  Returns 1 if the row max is finite, else 0.
 */
static inline int FL_(row_stats)(const T *x, ptrdiff_t n, T *e,
                                 double *a_out, double *L_out, double *S_out)
{
    T m = -INFINITY;
    ptrdiff_t j;
#pragma omp simd reduction(max:m)
    for (j = 0; j < n; j++) m = x[j] > m ? x[j] : m;

    if (m > -INFINITY && m < INFINITY) {
        double s = 0.0;
        double cnt = 0.0;
        if (e) {
#pragma omp simd reduction(+:s, cnt)
            for (j = 0; j < n; j++) {
                T d = x[j] - m;
                T ev = FL_EXP(d);
                e[j] = ev;
                s += d == 0 ? 0.0 : (double)ev;
                cnt += d == 0 ? 1.0 : 0.0;
            }
        } else {
#pragma omp simd reduction(+:s, cnt)
            for (j = 0; j < n; j++) {
                T d = x[j] - m;
                T ev = FL_EXP(d);
                s += d == 0 ? 0.0 : (double)ev;
                cnt += d == 0 ? 1.0 : 0.0;
            }
        }
        *a_out = (double)m;
        *L_out = cnt == 1 ? log1p(s) : log((double)cnt) + log1p(s / (double)cnt);
        *S_out = (double)cnt + s;
        return 1;
    } else {
        double s = 0.0;
        if (e) {
#pragma omp simd reduction(+:s)
            for (j = 0; j < n; j++) { T ev = FL_EXP(x[j]); e[j] = ev; s += ev; }
        } else {
#pragma omp simd reduction(+:s)
            for (j = 0; j < n; j++) s += FL_EXP(x[j]);
        }
        /* A NaN anywhere makes s NaN, and so every output of the row NaN. */
        *a_out = 0.0;
        *L_out = log(s);
        *S_out = s;
        return 0;
    }
}

/* logsumexp of each row (SciPy semantics; n == 0 gives -inf). */
static void FL_(lse_rows)(const T *x, ptrdiff_t nrows, ptrdiff_t C, T *out)
{
    for (ptrdiff_t i = 0; i < nrows; i++) {
        double a, L, S;
        if (C == 0) { out[i] = -INFINITY; continue; }
        FL_(row_stats)(x + i * C, C, NULL, &a, &L, &S);
        out[i] = (T)(a + L);
    }
}

/* log_softmax: out = (x - a) - L.  out may alias x. */
static void FL_(log_softmax_rows)(const T *x, ptrdiff_t nrows, ptrdiff_t C, T *out)
{
    for (ptrdiff_t i = 0; i < nrows; i++) {
        const T *xr = x + i * C;
        T *o = out + i * C;
        double a, L, S;
        FL_(row_stats)(xr, C, NULL, &a, &L, &S);
        const T ta = (T)a, tL = (T)L;
#pragma omp simd
        for (ptrdiff_t j = 0; j < C; j++) o[j] = (xr[j] - ta) - tL;
    }
}

/* softmax: out = exp(x - m) / sum.  A row whose max is not finite is NaN
 * (SciPy computes exp(x - max) without masking).  out may alias x. */
static void FL_(softmax_rows)(const T *x, ptrdiff_t nrows, ptrdiff_t C, T *out)
{
    for (ptrdiff_t i = 0; i < nrows; i++) {
        T *o = out + i * C;
        double a, L, S;
        const int finite = FL_(row_stats)(x + i * C, C, o, &a, &L, &S);
        const T r = finite ? (T)(1.0 / S) : (T)NAN;
#pragma omp simd
        for (ptrdiff_t j = 0; j < C; j++) o[j] = o[j] * r;
    }
}

/* Gradient of log_softmax: gi = go - exp(out) * sum(go).  gi may alias go. */
static void FL_(log_softmax_backward_rows)(const T *go, const T *out, ptrdiff_t nrows,
                                           ptrdiff_t C, T *gi)
{
    for (ptrdiff_t i = 0; i < nrows; i++) {
        const T *g = go + i * C, *y = out + i * C;
        T *r = gi + i * C;
        double s = 0.0;
#pragma omp simd reduction(+:s)
        for (ptrdiff_t j = 0; j < C; j++) s += g[j];
        const T ts = (T)s;
#pragma omp simd
        for (ptrdiff_t j = 0; j < C; j++) r[j] = g[j] - FL_EXP(y[j]) * ts;
    }
}

/* Gradient of softmax: gi = out * (go - sum(go * out)).  gi may alias go. */
static void FL_(softmax_backward_rows)(const T *go, const T *out, ptrdiff_t nrows,
                                       ptrdiff_t C, T *gi)
{
    for (ptrdiff_t i = 0; i < nrows; i++) {
        const T *g = go + i * C, *y = out + i * C;
        T *r = gi + i * C;
        double s = 0.0;
#pragma omp simd reduction(+:s)
        for (ptrdiff_t j = 0; j < C; j++) s += (double)g[j] * (double)y[j];
        const T ts = (T)s;
#pragma omp simd
        for (ptrdiff_t j = 0; j < C; j++) r[j] = y[j] * (g[j] - ts);
    }
}

/* A row whose max is not finite (a +inf logit, or all -inf): its
 * log-softmax is NaN everywhere in torch, so loss and gradient are NaN. */
static inline void FL_(nan_row)(double *loss, T *g, ptrdiff_t C)
{
    *loss = NAN;
    if (g)
        for (ptrdiff_t j = 0; j < C; j++) g[j] = (T)NAN;
}

/* Cross-entropy with class-index targets, fused with its gradient.
 *
 * Row i with target y (already range-checked by the caller), class weights w
 * (NULL = all ones, W = sum of w), label smoothing eps:
 *   loss_i = (1-eps) w_y (lse - x_y) + eps/C * (W (lse - r0) - sum_c w_c (x_c - r0))
 * with r0 = x_y (0 if x_y is not finite), lse - r0 evaluated as (max - r0) + log(...)
 *   dloss_i/dx_c = ((1-eps) w_y + eps W / C) p_c - (1-eps) w_y [c == y] - eps/C w_c
 * Rows whose target is ignore_index get loss 0 and gradient 0.
 * loss[i] (double) receives loss_i; if grad != NULL it receives
 * gscale * dloss_i/dx (grad may alias x: x is read before it is written).
 */
static void FL_(ce_index_rows)(const T *x, ptrdiff_t nrows, ptrdiff_t C,
                               const int64_t *target, const T *w, double W,
                               int64_t ignore_index, double eps, double gscale,
                               double *loss, T *grad)
{
    const double keep = 1.0 - eps, epc = eps / (double)C;
    for (ptrdiff_t i = 0; i < nrows; i++) {
        const T *xr = x + i * C;
        T *g = grad ? grad + i * C : NULL;
        const int64_t y = target[i];
        if (y == ignore_index) {
            loss[i] = 0.0;
            if (g) memset(g, 0, (size_t)C * sizeof(T));
            continue;
        }
        const double xy = (double)xr[y];
        const double wy = w ? (double)w[y] : 1.0;
        /* Logits enter relative to x_y, and lse - x_y as (a - x_y) + L: with a
         * large common offset (logits ~1e6) lse - x_y would cancel.  (A masked
         * target, x_y = -inf, keeps the plain sums: its loss is inf.) */
        const double r0 = (xy > -INFINITY && xy < INFINITY) ? xy : 0.0;
        double swx = 0.0;   /* sum_c w_c (x_c - r0) */
        if (eps != 0.0) {
            if (w) {
#pragma omp simd reduction(+:swx)
                for (ptrdiff_t j = 0; j < C; j++) swx += (double)w[j] * ((double)xr[j] - r0);
            } else {
#pragma omp simd reduction(+:swx)
                for (ptrdiff_t j = 0; j < C; j++) swx += (double)xr[j] - r0;
            }
        }
        double a, L, S;
        if (!FL_(row_stats)(xr, C, g, &a, &L, &S)) {
            FL_(nan_row)(loss + i, g, C);
            continue;
        }
        double li = keep * wy * ((a - xy) + L);
        if (eps != 0.0) li += epc * (W * ((a - r0) + L) - swx);
        loss[i] = li;
        if (!g) continue;
        const double coef = keep * wy + epc * W;
        const T sc = (T)(gscale * coef / S);
        if (eps != 0.0 && w) {
            const T sw = (T)(gscale * epc);
#pragma omp simd
            for (ptrdiff_t j = 0; j < C; j++) g[j] = g[j] * sc - sw * w[j];
        } else {
            const T sw = (T)(gscale * epc);
#pragma omp simd
            for (ptrdiff_t j = 0; j < C; j++) g[j] = g[j] * sc - sw;
        }
        g[y] -= (T)(gscale * keep * wy);
    }
}

/* Cross-entropy with class-probability targets t (same shape as x), fused
 * with its gradient.  t' = (1-eps) t + eps/C;
 *   loss_i = sum_c w_c t'_c (lse - x_c) = swt ((max - r0) + L) - sum_c w_c t'_c (x_c - r0)
 * (swt = sum_c w_c t'_c; r0 = the row's first finite logit, against cancellation)
 *   dloss_i/dx_c = p_c sum_k w_k t'_k - w_c t'_c
 * grad may alias x, but not t. */
static void FL_(ce_prob_rows)(const T *x, ptrdiff_t nrows, ptrdiff_t C, const T *t,
                              const T *w, double eps, double gscale,
                              double *loss, T *grad)
{
    const T keep = (T)(1.0 - eps), epc = (T)(eps / (double)C);
    for (ptrdiff_t i = 0; i < nrows; i++) {
        const T *xr = x + i * C, *tr = t + i * C;
        T *g = grad ? grad + i * C : NULL;
        /* Logits enter relative to r0, the row's first finite logit, and
         * lse - r0 as (a - r0) + L: with a large common offset (logits ~1e6)
         * swt * lse - sum wt x would cancel. */
        double r0 = 0.0;
        for (ptrdiff_t j = 0; j < C; j++)
            if (xr[j] > -INFINITY && xr[j] < INFINITY) { r0 = (double)xr[j]; break; }
        double swt = 0.0, swtx = 0.0;   /* sum wt, sum wt (x - r0) */
        if (w) {
#pragma omp simd reduction(+:swt, swtx)
            for (ptrdiff_t j = 0; j < C; j++) {
                double wt = (double)w[j] * (double)(tr[j] * keep + epc);
                swt += wt;
                swtx += wt * ((double)xr[j] - r0);
            }
        } else {
#pragma omp simd reduction(+:swt, swtx)
            for (ptrdiff_t j = 0; j < C; j++) {
                double wt = (double)(tr[j] * keep + epc);
                swt += wt;
                swtx += wt * ((double)xr[j] - r0);
            }
        }
        double a, L, S;
        if (!FL_(row_stats)(xr, C, g, &a, &L, &S)) {
            FL_(nan_row)(loss + i, g, C);
            continue;
        }
        loss[i] = swt * ((a - r0) + L) - swtx;
        if (!g) continue;
        const T sc = (T)(gscale * swt / S), gs = (T)gscale;
        if (w) {
#pragma omp simd
            for (ptrdiff_t j = 0; j < C; j++)
                g[j] = g[j] * sc - gs * (w[j] * (tr[j] * keep + epc));
        } else {
#pragma omp simd
            for (ptrdiff_t j = 0; j < C; j++)
                g[j] = g[j] * sc - gs * (tr[j] * keep + epc);
        }
    }
}

/* Element-wise kernels over a flat range (exposed for tests of the math). */
static void FL_(exp_n)(const T *x, ptrdiff_t n, T *out)
{
#pragma omp simd
    for (ptrdiff_t j = 0; j < n; j++) out[j] = FL_EXP(x[j]);
}

static void FL_(log_n)(const T *x, ptrdiff_t n, T *out)
{
#pragma omp simd
    for (ptrdiff_t j = 0; j < n; j++) out[j] = FL_LOG(x[j]);
}

#undef FL_
#undef FL_CAT
#undef FL_CAT2
