/* fastlog element-wise kernels, written once for a floating type T: target
 * checks, NLL, one row of fused linear + cross-entropy, the MLP's epilogues
 * (bias + ReLU, ReLU backward + bias-gradient sums), SGD updates.
 *
 * Included by fl_kernels.c after fl_rows_impl.h, with the same T / FL_SFX /
 * FL_EXP macros, once per type; fl_kernels.c is compiled once per ISA level,
 * so these loops get that level's vector width and FMA.  They were Cython
 * loops compiled per ISA before the build had one extension; the arithmetic
 * is written exactly as it was there (same expression trees, so the same
 * FMA contractions and the same results).  Serial; the caller (Cython)
 * splits work over threads.
 */

#define FL_CAT2(a, b) a##_##b
#define FL_CAT(a, b) FL_CAT2(a, b)
#define FL_(name) FL_CAT(fl_##name, FL_SFX)

/* Range-check class-index targets; *wsum = sum of w[t] over the rows not
 * ignored (their count when w is NULL), added in a fixed order (4 partial
 * sums).  Returns the first bad row, or -1 (then *wsum is set). */
static ptrdiff_t FL_(check_targets)(const int64_t *t, ptrdiff_t n, ptrdiff_t C, int64_t ignore_index,
                                    const T *w, double *wsum)
{
    ptrdiff_t cnt = 0;
    double s[4] = {0.0, 0.0, 0.0, 0.0};
    for (ptrdiff_t i = 0; i < n; i++) {
        const int64_t y = t[i];
        if (y == ignore_index)
            continue;
        if (y < 0 || y >= C)
            return i;
        if (w)
            s[i & 3] += w[y];
        else
            cnt += 1;
    }
    *wsum = w ? ((s[0] + s[1]) + (s[2] + s[3])) : (double)cnt;
    return -1;
}

/* NLL over rows of log-probabilities x (targets already range-checked). */
static void FL_(nll_rows)(const T *x, ptrdiff_t n, ptrdiff_t C, const int64_t *t, const T *w,
                          int64_t ignore_index, double gscale, double *loss, T *grad)
{
    for (ptrdiff_t i = 0; i < n; i++) {
        const int64_t y = t[i];
        if (y == ignore_index) {
            loss[i] = 0.0;
            if (grad)
                memset(grad + i * C, 0, (size_t)C * sizeof(T));
            continue;
        }
        const double wy = w ? (double)w[y] : 1.0;
        /* Read x before clearing the gradient row: grad may alias x (out=input). */
        loss[i] = -wy * (double)x[i * C + y];
        if (grad) {
            memset(grad + i * C, 0, (size_t)C * sizeof(T));
            grad[i * C + y] = (T)(-gscale * wy);
        }
    }
}

/* One row of logits -> its loss (and lse); with want_grad the row is
 * overwritten by gs * dloss/dlogits (cross-entropy with label smoothing eps,
 * plus the z-loss zscale * lse^2).  scratch: V values, used only when
 * zscale != 0 and want_grad. */
static void FL_(lce_row)(T *row, ptrdiff_t V, const int64_t *t, const T *w, double W,
                         int64_t ignore_index, double eps, double gs, double zscale, int want_grad,
                         int want_lse, double *loss, T *lse, T *scratch)
{
    T l = 0;
    const int ext = want_lse || zscale != 0.0;
    const int ignored = t[0] == ignore_index;
    if (ext) {
        FL_(lse_rows)(row, 1, V, &l);
        if (want_lse)
            lse[0] = l;
        if (zscale != 0.0 && want_grad && !ignored)
            memcpy(scratch, row, (size_t)V * sizeof(T));
    }
    FL_(ce_index_rows)(row, 1, V, t, w, W, ignore_index, eps, gs, loss, want_grad ? row : NULL, 0);
    if (zscale != 0.0 && !ignored) {
        /* z-loss: zscale * lse^2, gradient 2 * zscale * lse * softmax. */
        loss[0] += zscale * (double)l * (double)l;
        if (want_grad) {
            const T zg = (T)(gs * 2.0 * zscale * (double)l);
            const T lr = l;
            for (ptrdiff_t j = 0; j < V; j++)
                row[j] += zg * FL_EXP(scratch[j] - lr);
        }
    }
}

/* acc[j] += sum_i G[i, j], in row order, in double (acc not cleared). */
static void FL_(colsum_add)(const T *restrict G, ptrdiff_t m, ptrdiff_t n, double *restrict acc)
{
    for (ptrdiff_t i = 0; i < m; i++) {
        const T *restrict g = G + i * n;
#pragma omp simd
        for (ptrdiff_t j = 0; j < n; j++) acc[j] += g[j];
    }
}

/* Y[i, :] += b (b may be NULL), then ReLU (NaN stays NaN) if relu. */
static void FL_(bias_act)(T *restrict Y, const T *restrict b, ptrdiff_t m, ptrdiff_t n, int relu)
{
    for (ptrdiff_t i = 0; i < m; i++) {
        T *restrict y = Y + i * n;
        if (b && relu) {
#pragma omp simd
            for (ptrdiff_t j = 0; j < n; j++) { T v = y[j] + b[j]; y[j] = v < 0 ? (T)0 : v; }
        } else if (b) {
#pragma omp simd
            for (ptrdiff_t j = 0; j < n; j++) y[j] += b[j];
        } else if (relu) {
#pragma omp simd
            for (ptrdiff_t j = 0; j < n; j++) { T v = y[j]; y[j] = v < 0 ? (T)0 : v; }
        }
    }
}

/* acc[j] = sum_i G[i, j] in row order, in double. */
static void FL_(colsum)(const T *restrict G, ptrdiff_t m, ptrdiff_t n, double *restrict acc)
{
    for (ptrdiff_t j = 0; j < n; j++) acc[j] = 0.0;
    FL_(colsum_add)(G, m, n, acc);
}

/* ReLU backward + bias-gradient sum in one pass, in place over H:
 * H[i, j] = H[i, j] > 0 ? D[i, j] : 0;  acc[j] = sum_i H[i, j]. */
static void FL_(mask_colsum)(const T *restrict D, T *restrict H, ptrdiff_t m, ptrdiff_t n,
                             double *restrict acc)
{
    for (ptrdiff_t j = 0; j < n; j++) acc[j] = 0.0;
    for (ptrdiff_t i = 0; i < m; i++) {
        const T *restrict d = D + i * n;
        T *restrict h = H + i * n;
#pragma omp simd
        for (ptrdiff_t j = 0; j < n; j++) { T g = h[j] > 0 ? d[j] : (T)0; h[j] = g; acc[j] += (double)g; }
    }
}

/* out[i, j] = Y[i, j] > 0 ? G[i, j] : 0 (out distinct from G, Y); acc its column sums. */
static void FL_(mask_colsum_to)(const T *restrict G, const T *restrict Y, T *restrict out,
                                ptrdiff_t m, ptrdiff_t n, double *restrict acc)
{
    for (ptrdiff_t j = 0; j < n; j++) acc[j] = 0.0;
    for (ptrdiff_t i = 0; i < m; i++) {
        const T *restrict g = G + i * n, *restrict y = Y + i * n;
        T *restrict o = out + i * n;
#pragma omp simd
        for (ptrdiff_t j = 0; j < n; j++) { T v = y[j] > 0 ? g[j] : (T)0; o[j] = v; acc[j] += (double)v; }
    }
}

/* y = max(x, 0) (NaN propagates); y may be x. */
static void FL_(relu_fwd)(const T *x, T *y, ptrdiff_t n)
{
#pragma omp simd
    for (ptrdiff_t i = 0; i < n; i++) { const T v = x[i]; y[i] = v < 0 ? (T)0 : v; }
}

/* gx = g where y > 0 else 0; gx may be g. */
static void FL_(relu_bwd)(const T *g, const T *y, T *gx, ptrdiff_t n)
{
#pragma omp simd
    for (ptrdiff_t i = 0; i < n; i++) gx[i] = y[i] > 0 ? g[i] : (T)0;
}

/* C[o, i] = alpha * Tm[i, o] + beta * C[o, i] (C not read when beta == 0), in 32 x 32 tiles. */
static void FL_(axpby_t)(T *C, const T *Tm, ptrdiff_t n_out, ptrdiff_t n_in, T alpha, T beta)
{
    for (ptrdiff_t o0 = 0; o0 < n_out; o0 += 32) {
        const ptrdiff_t o1 = o0 + 32 < n_out ? o0 + 32 : n_out;
        for (ptrdiff_t i0 = 0; i0 < n_in; i0 += 32) {
            const ptrdiff_t i1 = i0 + 32 < n_in ? i0 + 32 : n_in;
            if (beta == 0) {
                for (ptrdiff_t o = o0; o < o1; o++)
                    for (ptrdiff_t i = i0; i < i1; i++)
                        C[o * n_in + i] = alpha * Tm[i * n_out + o];
            } else {
                for (ptrdiff_t o = o0; o < o1; o++)
                    for (ptrdiff_t i = i0; i < i1; i++)
                        C[o * n_in + i] = alpha * Tm[i * n_out + o] + beta * C[o * n_in + i];
            }
        }
    }
}

/* V += cwd * W;  W -= lr * V  (one pass). */
static void FL_(momentum_finish)(T *V, T *W, ptrdiff_t n, double lr, double cwd)
{
    const T tl = (T)lr, tc = (T)cwd;
    if (cwd != 0.0) {
        for (ptrdiff_t i = 0; i < n; i++) {
            const T v = V[i] + tc * W[i];
            V[i] = v;
            W[i] = W[i] - tl * v;
        }
    } else {
        for (ptrdiff_t i = 0; i < n; i++)
            W[i] = W[i] - tl * V[i];
    }
}

/* mode 0: gb = acc.  mode 1: PyTorch's SGD on b with gradient acc (rounded
 * to T first, as the gradient buffer would hold it). */
static void FL_(bias_update)(T *b, T *gb, T *vb, const double *acc, ptrdiff_t n, int mode, double lr,
                             double mu, double damp, double wd, int first)
{
    double g, v, c;
    if (mode == 0) {
        for (ptrdiff_t j = 0; j < n; j++) gb[j] = (T)acc[j];
        return;
    }
    if (mu == 0.0) {
        for (ptrdiff_t j = 0; j < n; j++) {
            g = (T)acc[j];
            g = g + wd * b[j];
            b[j] = (T)(b[j] - lr * g);
        }
        return;
    }
    c = first ? 1.0 : 1.0 - damp;
    for (ptrdiff_t j = 0; j < n; j++) {
        g = (T)acc[j];
        g = g + wd * b[j];
        v = first ? c * g : mu * vb[j] + c * g;
        vb[j] = (T)v;
        b[j] = (T)(b[j] - lr * vb[j]);
    }
}

#undef FL_
#undef FL_CAT
#undef FL_CAT2
