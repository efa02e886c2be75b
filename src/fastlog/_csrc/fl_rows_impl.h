/* fastlog row kernels, written once for a floating type T.
 *
 * Included four times: by fl_kernels.c with T = float / double (FL_SFX =
 * f32 / f64, FL_EXP = fl_expf / fl_exp), and by fl_half.h with T = float and
 * bfloat16 / float16 storage (FL_SFX = bf16 / f16, FL_HALF_ROWS: only the
 * large-row kernels the half-precision driver calls; see "Storage type").
 *
 * Every kernel works on a block of `nrows` contiguous rows of length `C`
 * (row stride C).  The callers (Cython, in _core.pyx) split the rows into
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
 * a = 0 and L = log(sum exp(x)), which reproduces SciPy's inf/nan results
 * (a NaN anywhere makes the sum, and so the whole row, NaN).
 *
 * If e != NULL, e[j] = exp(x_j - a) is stored (e may alias x).  *S_out gets
 * sum_j exp(x_j - a).  exp is evaluated once per element.  Returns 1 if the
 * row max is finite, else 0.
 *
 * exp sums are accumulated in T inside blocks of FL_BLK elements (vector
 * lanes, so each lane adds only a few terms) and the block sums in double.
 */
#define FL_BLK 1024
#define FL_VL ((ptrdiff_t)(64 / sizeof(T)))   /* one 512-bit vector of T */
/* The bytes of one set of sum lanes.  x86: one vector of the level.  ARM:
 * 64 bytes (16 floats, 8 doubles) at every level and every SVE vector
 * length -- four NEON registers, one to four SVE ones -- so the summation
 * order, and with it every result, is the same on all ARM CPUs. */
#if defined(__aarch64__)
#define FL_VB 64
#elif defined(__AVX512F__)
#define FL_VB 64
#elif defined(__AVX2__)
#define FL_VB 32
#else
#define FL_VB 16
#endif
#define FL_NL ((ptrdiff_t)(FL_VB / sizeof(T)))   /* lanes of a sum (x86: one vector of this level) */

/* Order-explicit sums.  A float sum's rounding depends on the
 * order of its additions, and `omp simd reduction` leaves that order to the
 * vectorizer: -O1, sanitizer instrumentation or another vector width sum in
 * another order, with a different (for a long scalar chain: several times
 * larger) error.  So every floating-point reduction in these kernels is
 * written with its lanes spelled out, and the source fixes the order at
 * every optimisation level, vectorized or not (built at -O1 without
 * -fopenmp-simd, the accuracy tests pass):
 *   - lane l (l < FL_NL, one vector of the level: 4 / 8 / 16 floats in the
 *     x86-64 / AVX2 / AVX-512 builds; 16 in every ARM build, whatever its
 *     vector length) adds the terms j = l, l + FL_NL, ...
 *     in order; the terms after the last whole vector go into lane 0, in
 *     order; the lanes are then added in lane order, starting from 0;
 *   - a double multiply-add term is one FMA in the FMA builds (FL_MADD), not
 *     left to the compiler's contraction, which differs between vector and
 *     tail code.
 * That is the order GCC's vectorized `omp simd reduction` loops had before
 * (one vector of partial sums, a scalar epilogue into lane 0, lanes added in
 * order), so the results are the same bits as those loops gave at -O3
 * (spelling the order out moved no result).  Where GCC left such a loop scalar -- the BCE
 * sum in the baseline build and for double in the AVX2 one -- the sum has
 * one lane (FL_NL_BCE).  The label-smoothing and probability-target sums
 * relative to the row's largest finite logit (an accuracy fix, so new
 * bits anyway) use FL_VL lanes at every level, which is more accurate in
 * the baseline build.
 *
 * FL_LANE_LOOP(lo, hi, stmts) runs stmts with `j` (the element) and `l` (its
 * lane) for lo <= j < hi; FL_LANE_LOOP_N takes the lane count.  The inner
 * lane loop is an `omp simd` loop that GCC turns into vector code with the
 * accumulator arrays in registers, provided the body has no branches left
 * after if-conversion (check with -fopt-info-vec when changing a body). */
#define FL_LANE_LOOP_N(nl, lo, hi, ...)                                         \
    do {                                                                       \
        ptrdiff_t j0_ = (lo);                                                  \
        for (; j0_ + (nl) <= (hi); j0_ += (nl)) {                              \
            _Pragma("omp simd")                                                \
            for (ptrdiff_t l = 0; l < (nl); l++) { const ptrdiff_t j = j0_ + l; __VA_ARGS__ } \
        }                                                                      \
        for (ptrdiff_t j = j0_; j < (hi); j++) { const ptrdiff_t l = 0; __VA_ARGS__ } \
    } while (0)
#define FL_LANE_LOOP(lo, hi, ...) FL_LANE_LOOP_N(FL_NL, lo, hi, __VA_ARGS__)
/* The same for hi - lo a multiple of FL_NL (no tail). */
#define FL_LANE_LOOP_FULL(lo, hi, ...)                                          \
    do {                                                                       \
        for (ptrdiff_t j0_ = (lo); j0_ < (hi); j0_ += FL_NL) {                 \
            _Pragma("omp simd")                                                \
            for (ptrdiff_t l = 0; l < FL_NL; l++) { const ptrdiff_t j = j0_ + l; __VA_ARGS__ } \
        }                                                                      \
    } while (0)

/* Total of the first nl lanes, in lane order (T or double accumulators). */
static inline T FL_(lanes_total_n)(const T *a, ptrdiff_t nl)
{
    T s = 0;
    for (ptrdiff_t l = 0; l < nl; l++) s += a[l];
    return s;
}
#define FL_lanes_total(a) FL_(lanes_total_n)((a), FL_NL)

static inline double FL_(lanes_total_dn)(const double *a, ptrdiff_t nl)
{
    double s = 0.0;
    for (ptrdiff_t l = 0; l < nl; l++) s += a[l];
    return s;
}
#define FL_lanes_total_d(a) FL_(lanes_total_dn)((a), FL_NL)

/* c + a * b for the double multiply-add sums: one rounding (FMA) in the
 * builds with FMA (x86-64-v3, x86-64-v4, every aarch64 build), two without,
 * whatever the compiler's contraction choices for vector and tail code. */
#if defined(__FMA__) || defined(__ARM_FEATURE_FMA)
#define FL_MADD(a, b, c) __builtin_fma((a), (b), (c))
#else
#define FL_MADD(a, b, c) ((a) * (b) + (c))
#endif
/* The same for a product of two T widened to double: exact for float T (so
 * no FMA is needed, and the float build's loop stays a plain sum). */
#define FL_MADD_D(a, b, c) (sizeof(T) == 4 ? (c) + (a) * (b) : FL_MADD(a, b, c))

#define FL_LANES_T(name) T name[64 / sizeof(T)] = {0}
#define FL_LANES_D(name) double name[64 / sizeof(T)] = {0}

/* Storage type.  The arrays the large-row kernels read and write
 * hold FL_TS, by default T itself.  fl_half.h includes this file once more
 * per half type with T = float, FL_TS = uint16_t (bfloat16 / float16 bits),
 * FL_TS_IS_T = 0 and the conversions FL_HLD1 / FL_HLDN (widen one / n) and
 * FL_HST1 / FL_HSTN (round one / n to nearest even), FL_HMAXACC (max_acc of
 * widened values); FL_HALF_ROWS then leaves
 * out every kernel the half driver does not call.  A half row is widened a
 * block of FL_BLK at a time into float32 in L1 as it is read, and results
 * are computed into float32 in L1 and rounded once as they are written: the
 * row itself is read from memory once and written once.  With T storage the
 * helpers below are identities and each loop runs over the whole row, as
 * before (the same code, the same results). */
#ifndef FL_TS
#define FL_TS T
#define FL_TS_IS_T 1
#define FL_TS_DEFAULTED
#endif
#ifndef FL_HALF_ROWS
#define FL_HALF_ROWS 0
#endif

/* Block lengths: an input block (the whole row when nothing is converted),
 * an output block (the whole row, written in place, unless converted or
 * streamed). */
#define FL_IB(C) (FL_TS_IS_T ? (C) : (ptrdiff_t)FL_BLK)
#define FL_OB(C, nt) ((FL_TS_IS_T && !(nt)) ? (C) : (ptrdiff_t)FL_BLK)

static inline T FL_(ld1)(FL_TS v)
{
#if FL_TS_IS_T
    return v;
#else
    return FL_HLD1(v);
#endif
}

static inline FL_TS FL_(st1)(T v)
{
#if FL_TS_IS_T
    return v;
#else
    return FL_HST1(v);
#endif
}

/* n <= FL_BLK stored values as T: s itself, or widened into tmp. */
static inline const T *FL_(ldn)(const FL_TS *s, ptrdiff_t n, T *tmp)
{
#if FL_TS_IS_T
    (void)n; (void)tmp;
    return s;
#else
    FL_HLDN(s, n, tmp);
    return tmp;
#endif
}

/* Where a block of results bound for dst is computed: dst itself (T storage,
 * not streamed) or the L1 buffer tmp; then FL_(oput) stores it. */
static inline T *FL_(oblk)(FL_TS *dst, T *tmp, int nt)
{
#if FL_TS_IS_T
    return nt ? tmp : dst;
#else
    (void)dst; (void)nt;
    return tmp;
#endif
}

static inline void FL_(oput)(const T *ob, ptrdiff_t n, FL_TS *dst, int nt)
{
#if FL_TS_IS_T
    if (nt) fl_stream_copy(dst, ob, (size_t)n * sizeof(T));
#else
    if (nt) {
        FL_TS h[FL_BLK];
        FL_HSTN(ob, n, h);
        fl_stream_copy(dst, h, (size_t)n * sizeof(FL_TS));
    } else {
        FL_HSTN(ob, n, dst);
    }
#endif
}

/* Running maxima of a row (NaNs are skipped): FL_MAXACC (4 vectors) lanes,
 * so the loop is not bound by the latency of one max chain; the max is
 * exact, so the order does not matter.  max_acc folds x[0..n) into mx,
 * and returns the max of the values after its last whole vector; max_fin gives
 * the max of the lanes (-inf if none). */
#define FL_MAXACC (4 * FL_VL)
static inline T FL_(max_acc)(const T *x, ptrdiff_t n, T *mx)
{
    ptrdiff_t j = 0, l;
    for (; j + FL_MAXACC <= n; j += FL_MAXACC) {
#pragma omp simd
        for (l = 0; l < FL_MAXACC; l++) mx[l] = x[j + l] > mx[l] ? x[j + l] : mx[l];
    }
    for (; j + FL_VL <= n; j += FL_VL) {
#pragma omp simd
        for (l = 0; l < FL_VL; l++) mx[l] = x[j + l] > mx[l] ? x[j + l] : mx[l];
    }
    /* The last < FL_VL values are returned, not stored into mx: scalar stores
     * followed by max_fin's vector loads of the same bytes stall on store
     * forwarding (float32 log_softmax 4096 x 1000, 1 thread: 1.95 ms with the
     * stall, 1.62 ms without). */
    T t = -INFINITY;
    for (; j < n; j++) t = x[j] > t ? x[j] : t;
    return t;
}

static inline T FL_(max_fin)(T *mx)
{
    for (ptrdiff_t k = FL_VL; k < FL_MAXACC; k += FL_VL) {   /* 4 vectors into one */
#pragma omp simd
        for (ptrdiff_t l = 0; l < FL_VL; l++) mx[l] = mx[k + l] > mx[l] ? mx[k + l] : mx[l];
    }
    T m = mx[0];
    for (ptrdiff_t l = 1; l < FL_VL; l++) m = mx[l] > m ? mx[l] : m;
    return m;
}

/* The largest finite value of x[0..n) (NaN and +-inf skipped; -inf if none),
 * in FL_MAXACC lanes (the max is exact: any order gives the same value). */
static inline T FL_(max_finite)(const FL_TS *x, ptrdiff_t n)
{
    T mx[FL_MAXACC];
    ptrdiff_t j = 0, l;
    for (l = 0; l < FL_MAXACC; l++) mx[l] = -INFINITY;
    for (; j + FL_MAXACC <= n; j += FL_MAXACC) {
#pragma omp simd
        for (l = 0; l < FL_MAXACC; l++) {
            const T v = FL_(ld1)(x[j + l]);
            mx[l] = (v < (T)INFINITY && v > mx[l]) ? v : mx[l];
        }
    }
    T t = -INFINITY;   /* (the tail in a scalar: see max_acc) */
    for (; j < n; j++) {
        const T v = FL_(ld1)(x[j]);
        t = (v < (T)INFINITY && v > t) ? v : t;
    }
    const T m = FL_(max_fin)(mx);
    return t > m ? t : m;
}

/* sum over j < n of exp(x_j - sh), split into non-max terms (*ps) and the
 * count of max terms (*pc, where x_j - sh == 0); e[j] = exp(x_j - sh) if e.
 * fin == 0: plain sum of exp(x_j) (sh = 0, no max terms).
 * n is a multiple of FL_VL at every call. */
static inline void FL_(expsum_block)(const T *x, ptrdiff_t n, T *e, T sh, int fin,
                                     T *ps_out, T *pc_out)
{
    FL_LANES_T(ps);
    FL_LANES_T(pc);
    if (fin) {
        /* ism = 1 for a max term (exp(0) = 1, so ev - ism * ev = 0 exactly),
         * written without a select so the lane loop vectorizes. */
        if (e)
            FL_LANE_LOOP_FULL(0, n, const T d = x[j] - sh; const T ev = FL_EXP_NP(d); e[j] = ev;
                         const T ism = (T)(d == 0); ps[l] += ev - ism * ev; pc[l] += ism;);
        else
            FL_LANE_LOOP_FULL(0, n, const T d = x[j] - sh; const T ev = FL_EXP_NP(d);
                         const T ism = (T)(d == 0); ps[l] += ev - ism * ev; pc[l] += ism;);
    } else {
        /* +inf, all -inf, or NaN: plain sum of exp(x), SciPy's fallback. */
        if (e)
            FL_LANE_LOOP_FULL(0, n, const T ev = FL_EXP(x[j]); e[j] = ev; ps[l] += ev;);
        else
            FL_LANE_LOOP_FULL(0, n, ps[l] += FL_EXP(x[j]););
    }
    *ps_out = FL_lanes_total(ps);
    *pc_out = FL_lanes_total(pc);
}

static inline int FL_(row_stats_pf)(const FL_TS *x, ptrdiff_t n, T *e, const FL_TS *pf,
                                    double *a_out, double *L_out, double *S_out)
{
    ptrdiff_t j, j0;
    T tin[FL_TS_IS_T ? 1 : FL_BLK];   /* a widened block (half storage) */
    T mx[FL_MAXACC];
    for (j = 0; j < FL_MAXACC; j++) mx[j] = -INFINITY;
#if FL_TS_IS_T
    const T mt = FL_(max_acc)(x, n, mx);
#else
    const T mt = FL_HMAXACC(x, n, mx);   /* widened in registers, not stored */
#endif
    const T mf = FL_(max_fin)(mx), m = mt > mf ? mt : mf;

    const int fin = m > -INFINITY && m < INFINITY;
    const T sh = fin ? m : (T)0;
    double s = 0.0, cnt = 0.0;
    T ps, pc;
    /* Whole vectors in blocks of FL_BLK ... */
    const ptrdiff_t nfull = n - n % FL_VL;
    for (j0 = 0; j0 < nfull; j0 += FL_BLK) {
        const ptrdiff_t len = j0 + FL_BLK < nfull ? FL_BLK : nfull - j0;
        if (pf) fl_prefetch_l2(pf + j0, (size_t)len * sizeof(FL_TS));
        FL_(expsum_block)(FL_(ldn)(x + j0, len, tin), len, e ? e + j0 : NULL, sh, fin, &ps, &pc);
        s += (double)ps;
        cnt += (double)pc;
    }
    /* ... and the last partial vector padded with -inf (exp gives exactly
     * 0), so it runs as one vector step instead of a scalar tail. */
    if (nfull < n) {
        T tx[64 / sizeof(T)], te[64 / sizeof(T)];
        const ptrdiff_t r = n - nfull;
        for (j = 0; j < FL_VL; j++) tx[j] = j < r ? FL_(ld1)(x[nfull + j]) : (T)-INFINITY;
        FL_(expsum_block)(tx, FL_VL, e ? te : NULL, sh, fin, &ps, &pc);
        if (e) for (j = 0; j < r; j++) e[nfull + j] = te[j];
        s += (double)ps;
        cnt += (double)pc;
    }
    *a_out = (double)sh;
    if (fin)
        *L_out = cnt == 1.0 ? log1p(s) : log(cnt) + log1p(s / cnt);
    else
        *L_out = log(s);
    *S_out = cnt + s;
    return fin;
}

/* The same, without prefetching.  row_stats_pf's pf: NULL, or the row the
 * caller reads next (its n values are fetched into L2 during the exp pass,
 * which is bound by arithmetic, so the next row's first pass does not wait
 * for memory). */
static inline int FL_(row_stats)(const FL_TS *x, ptrdiff_t n, T *e,
                                 double *a_out, double *L_out, double *S_out)
{
    return FL_(row_stats_pf)(x, n, e, NULL, a_out, L_out, S_out);
}

#if !FL_HALF_ROWS
/* ---------------------------------------------------------------------------
 * Short rows (C <= FL_SMALL_C = 64, e.g. the 10 classes of MNIST).
 *
 * A row of 10 elements is too short for a vector loop: every row would pay
 * for scalar tails and a scalar log1p.  Instead FL_G rows at a time are
 * transposed into a C x FL_G scratch block and all the math runs across
 * rows, one vector lane per row; results are transposed back.  The row
 * statistics are the same as FL_(row_stats) (max terms split out, log1p).
 * ------------------------------------------------------------------------- */
#define FL_G 64
#ifndef FL_SMALL_C
#define FL_SMALL_C 64
#endif

/* xt[c * FL_G + k] = x[k * C + c] for k < g; lanes k >= g are zero.
 * (Full groups take the loop with constant bounds: the common case.) */
static inline void FL_(to_cols)(const T *restrict x, ptrdiff_t g, ptrdiff_t C, T *restrict xt)
{
#ifdef FL_TR   /* in vector registers (fl_transpose.h): the same values */
    FL_CAT(fl_to_cols, FL_TR)(x, g, C, FL_G, xt);
#else
    if (g == FL_G) {
        for (ptrdiff_t c = 0; c < C; c++)
            for (ptrdiff_t k = 0; k < FL_G; k++) xt[c * FL_G + k] = x[k * C + c];
        return;
    }
    for (ptrdiff_t c = 0; c < C; c++) {
        T *col = xt + c * FL_G;
        for (ptrdiff_t k = 0; k < g; k++) col[k] = x[k * C + c];
        for (ptrdiff_t k = g; k < FL_G; k++) col[k] = 0;
    }
#endif
}

static inline void FL_(from_cols)(const T *restrict xt, ptrdiff_t g, ptrdiff_t C, T *restrict x)
{
#ifdef FL_TR
    FL_CAT(fl_from_cols, FL_TR)(xt, g, C, FL_G, x);
#else
    if (g == FL_G) {
        for (ptrdiff_t k = 0; k < FL_G; k++)
            for (ptrdiff_t c = 0; c < C; c++) x[k * C + c] = xt[c * FL_G + k];
        return;
    }
    for (ptrdiff_t k = 0; k < g; k++)
        for (ptrdiff_t c = 0; c < C; c++) x[k * C + c] = xt[c * FL_G + k];
#endif
}

/* Per-lane statistics of a transposed block (see FL_(row_stats)): a, L with
 * lse = a + L, S = sum exp(x - a), fin = 1 where the max is finite.  If
 * want_e, xt is overwritten with exp(x - a) (where the max is finite). */
static inline void FL_(col_stats)(T *xt, ptrdiff_t C, int want_e, T *a, T *L, T *S, T *fin,
                                  T *Sm1)
{
    T m[FL_G], s[FL_G], cnt[FL_G], nan[FL_G];
    ptrdiff_t c, k;
    for (k = 0; k < FL_G; k++) { m[k] = -INFINITY; nan[k] = 0; }
    for (c = 0; c < C; c++)
        for (k = 0; k < FL_G; k++) {
            const T v = xt[c * FL_G + k];
            m[k] = v > m[k] ? v : m[k];
            nan[k] = v != v ? (T)1 : nan[k];
        }
    for (k = 0; k < FL_G; k++) {
        fin[k] = (m[k] > -INFINITY && m[k] < INFINITY) ? (T)1 : (T)0;
        a[k] = fin[k] != 0 ? m[k] : (T)0;
        s[k] = 0;
        cnt[k] = 0;
    }
    /* Shifting by m itself (not by a) keeps every d <= 0 or NaN, so the
     * cheaper exp for non-positive arguments serves every lane: a lane whose
     * max is not finite gets only -inf/NaN differences (and L = m below,
     * which is what log(sum exp(x)) gives there: +inf, or -inf when all are
     * -inf); its e values are not used (its softmax / gradient is NaN). */
    for (c = 0; c < C; c++) {
        T *col = xt + c * FL_G;
        for (k = 0; k < FL_G; k++) {
            const T d = col[k] - m[k];
            const T ev = FL_EXP_NP(d);
            const int im = d == 0;
            s[k] += im ? (T)0 : ev;
            cnt[k] += im ? (T)1 : (T)0;
            if (want_e) col[k] = ev;
        }
    }
    /* L = log(cnt + s), except that for a single max term (cnt == 1) the
     * rounding of 1 + s is corrected as in log1p (Goldberg's trick), which
     * keeps a tiny L accurate; cnt >= 2 means L >= log 2 (no such issue).
     * A lane whose max is not finite has L = m (a = 0), or NaN if it holds
     * a NaN (the max skips NaNs). */
    for (k = 0; k < FL_G; k++) {
        const T u = cnt[k] + s[k];
        const T lu = FL_LOG(u);
        const T corr = (cnt[k] == 1 && u != 1) ? s[k] / (u - 1) : (T)1;
        L[k] = fin[k] == 0 ? (nan[k] != 0 ? (T)NAN : m[k]) : ((cnt[k] == 1 && u == 1) ? s[k] : lu * corr);
        S[k] = u;
        if (Sm1) Sm1[k] = (cnt[k] - 1) + s[k];   /* S - 1 without u's rounding (exact s when cnt == 1) */
    }
}

/* op: 0 log_softmax, 1 softmax, 2 logsumexp (one value per row); nanrow: a
 * log_softmax row whose max is not finite is NaN (see log_softmax_rows_x). */
static void FL_(unary_small)(int op, const T *x, ptrdiff_t nrows, ptrdiff_t C, T *out, int nanrow)
{
    T xt[FL_SMALL_C * FL_G], a[FL_G], L[FL_G], S[FL_G], fin[FL_G];
    for (ptrdiff_t i0 = 0; i0 < nrows; i0 += FL_G) {
        const ptrdiff_t g = nrows - i0 < FL_G ? nrows - i0 : FL_G;
        FL_(to_cols)(x + i0 * C, g, C, xt);
        FL_(col_stats)(xt, C, op == 1, a, L, S, fin, NULL);
        if (op == 2) {
            for (ptrdiff_t k = 0; k < g; k++) out[i0 + k] = (T)((double)a[k] + (double)L[k]);
            continue;
        }
        if (op == 0) {
            if (nanrow)
                for (ptrdiff_t k = 0; k < FL_G; k++) L[k] = fin[k] != 0 ? L[k] : (T)NAN;
            for (ptrdiff_t c = 0; c < C; c++)
                for (ptrdiff_t k = 0; k < FL_G; k++) xt[c * FL_G + k] = (xt[c * FL_G + k] - a[k]) - L[k];
        } else {
            T r[FL_G];
            for (ptrdiff_t k = 0; k < FL_G; k++) r[k] = fin[k] != 0 ? (T)1 / S[k] : (T)NAN;
            for (ptrdiff_t c = 0; c < C; c++)
                for (ptrdiff_t k = 0; k < FL_G; k++) xt[c * FL_G + k] *= r[k];
        }
        FL_(from_cols)(xt, g, C, out + i0 * C);
    }
}

#endif /* !FL_HALF_ROWS */

/* Gradient at a target class y that holds the row max (x_y == a, so
 * p_y = 1/S): the kernels' e_y * sc - gscale (1-eps) w_y would subtract two
 * numbers close to gscale (1-eps) w_y when p_y is close to 1 (the
 * "softmax - 1" trap, Liger-Kernel PR #1329), losing log2(1/(1-p_y)) bits.
 * With S - 1 = (cnt - 1) + s known without cancellation,
 *   (1-eps) w_y (p_y - 1) + eps/C (W p_y - w_y)
 *     = ((eps/C) W - (1-eps) w_y (S - 1)) / S - (eps/C) w_y,
 * evaluated in double. */
static inline T FL_(target_grad)(double kwy, double epc, double W, double wy, double gscale,
                                 double S, double Sm1)
{
    return (T)(gscale * ((epc * W - kwy * Sm1) / S - epc * wy));
}

/* The loss of a row whose fast formula overflowed although its logits are
 * finite: logits near the float64 limits, where lse - x_c = (a - x_c) + L can
 * be twice the largest double (a [max, -max] row), and the reassociated sums
 * of the fast formulas overflow or cancel inf - inf.  The loss is
 *   sum_c v_c (lse - x_c),   v_c = w_c ((1-eps) t_c + eps/C)   (probability targets t)
 *                            v_c = eps/C w_c + [c == y] (1-eps) w_y   (class index y),
 * taken here from halved differences h_c = (a/2 - x_c/2) + L/2, which cannot
 * overflow, summed in double-double arithmetic (exact sums and products,
 * TwoSum / FMA) in class order and doubled at the end: the result is the
 * exact loss rounded once (+inf only where the exact loss overflows, never NaN
 * from an intermediate inf - inf; a loss within an ulp of the largest double
 * stays finite).  A row with a non-finite logit, target or weight keeps `fast`
 * (its inf or NaN is the exact answer, as in torch).  keep = 1 - eps,
 * epc = eps / C.  A rare path: only rows whose fast loss is not finite. */
static inline void FL_(two_sum)(double a, double b, double *s, double *e)
{
    const double t = a + b, bb = t - a;
    *s = t;
    *e = (a - (t - bb)) + (b - bb);
}

static double FL_(halved_loss)(const FL_TS *x, ptrdiff_t C, double a, double L, const T *w,
                               const T *t, double keep, double epc, int64_t y, double fast)
{
    /* Everything is scaled by 2^-64 (exact): the double-double sums of terms near
     * the largest double would overflow inside TwoSum (inf - inf = NaN); scaled,
     * only class weights beyond ~1e19 can, and then `fast` stands. */
    const double S = 0x1p-64;
    const double ha = a / 2 * S, hL = L / 2 * S;
    const double kwy = (y >= 0 && y < C) ? keep * (w ? (double)w[y] : 1.0) : 0.0;
    double sh = 0.0, sl = 0.0;   /* the (scaled) sum as sh + sl */
    for (ptrdiff_t c = 0; c < C; c++) {
        const double xc = (double)FL_(ld1)(x[c]);
        const double wc = w ? (double)w[c] : 1.0;
        /* t'_c rounded in T, as the probability-target kernel forms it */
        double v = t ? wc * (double)(t[c] * (T)keep + (T)epc) : wc * epc;
        if (c == y) v += kwy;
        if (!(isfinite(xc) && isfinite(v))) return fast;
        double dh, dl, hh, hl;
        FL_(two_sum)(ha, -(xc / 2 * S), &dh, &dl);   /* a/2 - x_c/2 = dh + dl exactly */
        FL_(two_sum)(dh, hL, &hh, &hl);
        hl += dl;                                    /* h_c = hh + hl */
        const double p = v * hh, pe = __builtin_fma(v, hh, -p) + v * hl;
        double ts, te;
        FL_(two_sum)(sh, p, &ts, &te);
        sh = ts;
        sl += te + pe;
    }
    const double s = sh + sl;
    if (!isfinite(s)) return fast;
    return s * 0x1p65;   /* 2 s 2^64: exact, or +-inf where the loss overflows */
}

/* 1 if the row has no log-softmax: a NaN anywhere, or a max that is not
 * finite (a +inf logit, or every logit -inf). */
static inline int FL_(no_log_softmax)(const FL_TS *x, ptrdiff_t C)
{
    T m = -INFINITY;
    int nan = 0;
    for (ptrdiff_t j = 0; j < C; j++) {
        const T v = FL_(ld1)(x[j]);
        nan |= v != v;
        m = v > m ? v : m;
    }
    return nan || !(m > -INFINITY && m < INFINITY);
}

#if !FL_HALF_ROWS
static void FL_(ce_index_small)(const T *x, ptrdiff_t nrows, ptrdiff_t C,
                                const int64_t *target, const T *w, double W,
                                int64_t ignore_index, double eps, double gscale,
                                double *loss, T *grad, int ign_nan)
{
    const double keep = 1.0 - eps, epc = eps / (double)C;
    const T sw = (T)(gscale * epc);
    T xt[FL_SMALL_C * FL_G], a[FL_G], L[FL_G], S[FL_G], fin[FL_G], sc[FL_G], oh[FL_G], yc[FL_G], on[FL_G];
    T Sm1[FL_G];
    double xy[FL_G], wy[FL_G], swx[FL_G], r0[FL_G];
    for (ptrdiff_t i0 = 0; i0 < nrows; i0 += FL_G) {
        const ptrdiff_t g = nrows - i0 < FL_G ? nrows - i0 : FL_G;
        const T *xb = x + i0 * C;
        for (ptrdiff_t k = 0; k < g; k++) {
            const int64_t y = target[i0 + k];
            const int ign = y == ignore_index;
            xy[k] = ign ? 0.0 : (double)xb[k * C + y];
            wy[k] = ign ? 0.0 : (w ? (double)w[y] : 1.0);
        }
        FL_(to_cols)(xb, g, C, xt);
        /* As in ce_index_rows: the smoothing sum takes the logits relative
         * to r0, the row's largest finite logit, and lse - r0 as
         * (a - r0) + L, so neither a large common offset nor a target far
         * below the max cancels. */
        if (eps != 0.0) {
            for (ptrdiff_t k = 0; k < FL_G; k++) r0[k] = -INFINITY;
            for (ptrdiff_t c = 0; c < C; c++)
                for (ptrdiff_t k = 0; k < FL_G; k++) {
                    const double v = (double)xt[c * FL_G + k];
                    if (v < INFINITY && v > r0[k]) r0[k] = v;
                }
            for (ptrdiff_t k = 0; k < FL_G; k++)
                if (k >= g || r0[k] == -INFINITY) r0[k] = 0.0;
            for (ptrdiff_t k = 0; k < FL_G; k++) swx[k] = 0.0;
            for (ptrdiff_t c = 0; c < C; c++) {
                const double wc = w ? (double)w[c] : 1.0;
                for (ptrdiff_t k = 0; k < FL_G; k++) swx[k] += wc * ((double)xt[c * FL_G + k] - r0[k]);
            }
        }
        FL_(col_stats)(xt, C, grad != NULL, a, L, S, fin, Sm1);
        for (ptrdiff_t k = 0; k < g; k++) {
            double li = keep * wy[k] * (((double)a[k] - xy[k]) + (double)L[k]);
            if (eps != 0.0) li += epc * (W * (((double)a[k] - r0[k]) + (double)L[k]) - swx[k]);
            /* max not finite (+inf logit or all -inf): NaN, as torch */
            loss[i0 + k] = target[i0 + k] == ignore_index ? 0.0 : (fin[k] != 0 ? li : NAN);
        }
        /* Logits near the float64 limits: the exact loss, from the row itself
         * (x is intact: the gradient is written below). */
        for (ptrdiff_t k = 0; k < g; k++)
            if (!isfinite(loss[i0 + k]) && fin[k] != 0 && target[i0 + k] != ignore_index)
                loss[i0 + k] = FL_(halved_loss)(xb + k * C, C, (double)a[k], (double)L[k], w, NULL, keep,
                                                epc, target[i0 + k], loss[i0 + k]);
        if (!grad) continue;
        /* Per lane: sc scales exp(x - a) (NaN for a row whose max is not
         * finite, as torch); the target class (yc, -1 for none) also loses
         * oh = gscale (1-eps) w_y; ignored rows (and padding lanes) get 0,
         * or NaN with ign_nan where the row has no log-softmax (torch's
         * 0 - exp(NaN) * 0).  All of it in the vector loop, so no per-row
         * fix-up follows. */
        for (ptrdiff_t k = 0; k < FL_G; k++) {
            const int real_row = k < g;
            const int live = real_row && target[i0 + (k < g ? k : 0)] != ignore_index;
            const int nan_ign = ign_nan && real_row && !live && (fin[k] == 0 || L[k] != L[k]);
            sc[k] = live ? (fin[k] != 0 ? (T)(gscale * (keep * wy[k] + epc * W) / (double)S[k]) : (T)NAN)
                         : (nan_ign ? (T)NAN : (T)0);
            oh[k] = live ? (T)(gscale * keep * wy[k]) : (T)0;
            yc[k] = live ? (T)target[i0 + k] : (T)-1;
            on[k] = (live || nan_ign) ? (T)1 : (T)0;
        }
        for (ptrdiff_t c = 0; c < C; c++) {
            const T swc = w ? sw * w[c] : sw, tc = (T)c;
            for (ptrdiff_t k = 0; k < FL_G; k++) {
                const T v = (xt[c * FL_G + k] * sc[k] - swc) - (yc[k] == tc ? oh[k] : (T)0);
                xt[c * FL_G + k] = on[k] != 0 ? v : (T)0;
            }
        }
        FL_(from_cols)(xt, g, C, grad + i0 * C);
        /* A target that holds the row max: its gradient without the
         * cancellation of p_y - 1 (see FL_(target_grad)). */
        for (ptrdiff_t k = 0; k < g; k++) {
            const int64_t y = target[i0 + k];
            if (y != ignore_index && fin[k] != 0 && xy[k] == (double)a[k])
                grad[(i0 + k) * C + y] = FL_(target_grad)(keep * wy[k], epc, W, w ? (double)w[y] : 1.0,
                                                          gscale, (double)S[k], (double)Sm1[k]);
        }
    }
}


#endif /* !FL_HALF_ROWS */

/* The large-row kernels, generic over the storage type (FL_TS).  The *_x
 * forms take `nt` (1: stream the output past the caches, fl_stream.h),
 * `npf` (rows i + 1 < npf of x may be read: row i + 1 is prefetched while
 * row i is reduced; rows past nrows belong to the caller's next chunk) and,
 * where exp values are kept, `esc`: C values of scratch for them (NULL: they
 * go into the output row itself, T storage only). */
#define FL_PF(i) ((i) + 1 < npf ? x + ((i) + 1) * C : NULL)

/* logsumexp of each row (SciPy semantics; n == 0 gives -inf). */
static void FL_(lse_rows_x)(const FL_TS *x, ptrdiff_t nrows, ptrdiff_t C, FL_TS *out,
                            ptrdiff_t npf)
{
    for (ptrdiff_t i = 0; i < nrows; i++) {
        double a, L, S;
        if (C == 0) { out[i] = FL_(st1)((T)-INFINITY); continue; }
        FL_(row_stats_pf)(x + i * C, C, NULL, FL_PF(i), &a, &L, &S);
        out[i] = FL_(st1)((T)(a + L));
    }
}

/* log_softmax: out = (x - a) - L.  out may alias x.  A row whose max is not
 * finite gives SciPy's values (-inf at the finite entries of a row holding
 * +inf, NaN at its +inf ones), or with nanrow NaN everywhere, as torch. */
static void FL_(log_softmax_rows_x)(const FL_TS *x, ptrdiff_t nrows, ptrdiff_t C, FL_TS *out,
                                    int nt, ptrdiff_t npf, int nanrow)
{
    T tin[FL_TS_IS_T ? 1 : FL_BLK], tout[FL_BLK];
    for (ptrdiff_t i = 0; i < nrows; i++) {
        const FL_TS *xr = x + i * C;
        FL_TS *o = out + i * C;
        double a, L, S;
        const int fin = FL_(row_stats_pf)(xr, C, NULL, FL_PF(i), &a, &L, &S);
        const T ta = (T)a, tL = (nanrow && !fin) ? (T)NAN : (T)L;
        for (ptrdiff_t j0 = 0; j0 < C; j0 += FL_OB(C, nt)) {
            const ptrdiff_t len = j0 + FL_OB(C, nt) < C ? FL_OB(C, nt) : C - j0;
            const T *xb = FL_(ldn)(xr + j0, len, tin);
            T *ob = FL_(oblk)(o + j0, tout, nt);
#pragma omp simd
            for (ptrdiff_t j = 0; j < len; j++) ob[j] = (xb[j] - ta) - tL;
            FL_(oput)(ob, len, o + j0, nt);
        }
    }
    if (nt) fl_stream_fence();
}

/* softmax: out = exp(x - m) / sum.  A row whose max is not finite is NaN
 * (SciPy computes exp(x - max) without masking).  out may alias x. */
static void FL_(softmax_rows_x)(const FL_TS *x, ptrdiff_t nrows, ptrdiff_t C, FL_TS *out,
                                T *esc, int nt, ptrdiff_t npf)
{
    T tout[FL_BLK];
    for (ptrdiff_t i = 0; i < nrows; i++) {
        FL_TS *o = out + i * C;
        T *e = esc ? esc : (T *)o;
        double a, L, S;
        const int finite = FL_(row_stats_pf)(x + i * C, C, e, FL_PF(i), &a, &L, &S);
        const T r = finite ? (T)(1.0 / S) : (T)NAN;
        for (ptrdiff_t j0 = 0; j0 < C; j0 += FL_OB(C, nt)) {
            const ptrdiff_t len = j0 + FL_OB(C, nt) < C ? FL_OB(C, nt) : C - j0;
            const T *eb = e + j0;
            T *ob = FL_(oblk)(o + j0, tout, nt);
#pragma omp simd
            for (ptrdiff_t j = 0; j < len; j++) ob[j] = eb[j] * r;
            FL_(oput)(ob, len, o + j0, nt);
        }
    }
    if (nt) fl_stream_fence();
}

#if !FL_HALF_ROWS
/* The float32/float64 kernels of the table: short rows by the transposed
 * kernels, long ones by the *_x kernels with the next row of the same call
 * prefetched during each row's exp pass (1024 x 32000 float32, 1 thread:
 * CE 11.7 -> 10.1 ms, log_softmax 14.3 -> 11.9 ms; same results). */
static void FL_(lse_rows)(const T *x, ptrdiff_t nrows, ptrdiff_t C, T *out)
{
    if (C > 0 && C <= FL_SMALL_C) { FL_(unary_small)(2, x, nrows, C, out, 0); return; }
    FL_(lse_rows_x)(x, nrows, C, out, nrows);
}

/* logsumexp of each row as a double, a + L unrounded to T: for callers that
 * combine it with others (vocabulary shards) or subtract it again, where
 * rounding to float would cost half an ulp of the logsumexp in every use. */
static void FL_(lse_rows_d)(const T *x, ptrdiff_t nrows, ptrdiff_t C, double *out)
{
    if (C > 0 && C <= FL_SMALL_C) {
        T xt[FL_SMALL_C * FL_G], a[FL_G], L[FL_G], S[FL_G], fin[FL_G];
        for (ptrdiff_t i0 = 0; i0 < nrows; i0 += FL_G) {
            const ptrdiff_t g = nrows - i0 < FL_G ? nrows - i0 : FL_G;
            FL_(to_cols)(x + i0 * C, g, C, xt);
            FL_(col_stats)(xt, C, 0, a, L, S, fin, NULL);
            for (ptrdiff_t k = 0; k < g; k++) out[i0 + k] = (double)a[k] + (double)L[k];
        }
        return;
    }
    for (ptrdiff_t i = 0; i < nrows; i++) {
        double a, L, S;
        if (C == 0) { out[i] = -INFINITY; continue; }
        FL_(row_stats_pf)(x + i * C, C, NULL, i + 1 < nrows ? x + (i + 1) * C : NULL, &a, &L, &S);
        out[i] = a + L;
    }
}

static void FL_(log_softmax_rows)(const T *x, ptrdiff_t nrows, ptrdiff_t C, T *out, int nanrow)
{
    if (C <= FL_SMALL_C) { FL_(unary_small)(0, x, nrows, C, out, nanrow); return; }
    FL_(log_softmax_rows_x)(x, nrows, C, out, 0, nrows, nanrow);
}

static void FL_(softmax_rows)(const T *x, ptrdiff_t nrows, ptrdiff_t C, T *out)
{
    if (C <= FL_SMALL_C) { FL_(unary_small)(1, x, nrows, C, out, 0); return; }
    FL_(softmax_rows_x)(x, nrows, C, out, NULL, 0, nrows);
}

/* Gradient of log_softmax: gi = go - exp(out) * sum(go).  gi may alias go. */
static void FL_(log_softmax_backward_rows)(const T *go, const T *out, ptrdiff_t nrows,
                                           ptrdiff_t C, T *gi)
{
    for (ptrdiff_t i = 0; i < nrows; i++) {
        const T *g = go + i * C, *y = out + i * C;
        T *r = gi + i * C;
        FL_LANES_D(sl);
        FL_LANE_LOOP(0, C, sl[l] += (double)g[j];);
        const T ts = (T)FL_lanes_total_d(sl);
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
        FL_LANES_D(sl);
        FL_LANE_LOOP(0, C, sl[l] = FL_MADD_D((double)g[j], (double)y[j], sl[l]););
        const double s = FL_lanes_total_d(sl);
        /* s as hi + lo in T: where g[j] is close to s (a dominant class,
         * y ~ 1) g[j] - hi is exact (Sterbenz) and lo keeps the bits a single
         * T would lose to the cancellation. */
        const T hi = (T)s, lo = (T)(s - (double)hi);
#pragma omp simd
        for (ptrdiff_t j = 0; j < C; j++) r[j] = y[j] * ((g[j] - hi) - lo);
    }
}

#endif /* !FL_HALF_ROWS */

/* A row whose max is not finite (a +inf logit, or all -inf): its
 * log-softmax is NaN everywhere in torch, so loss and gradient are NaN. */
static inline void FL_(nan_row)(double *loss, FL_TS *g, ptrdiff_t C)
{
    *loss = NAN;
    if (g)
        for (ptrdiff_t j = 0; j < C; j++) g[j] = FL_(st1)((T)NAN);
}

/* Cross-entropy with class-index targets, fused with its gradient.
 *
 * Row i with target y (already range-checked by the caller), class weights w
 * (NULL = all ones, W = sum of w), label smoothing eps:
 *   loss_i = (1-eps) w_y (lse - x_y) + eps/C * (W (lse - r0) - sum_c w_c (x_c - r0))
 * with r0 = the row's largest finite logit (0 if none), lse - x_y and lse - r0
 * evaluated as (max - x_y) + log(...) and (max - r0) + log(...)
 *   dloss_i/dx_c = ((1-eps) w_y + eps W / C) p_c - (1-eps) w_y [c == y] - eps/C w_c
 * Rows whose target is ignore_index get loss 0 and gradient 0.
 * loss[i] (double) receives loss_i; if grad != NULL it receives
 * gscale * dloss_i/dx (grad may alias x: x is read before it is written).
 */
/* The gradient at the target class y (v: its value without the one-hot term). */
#define FL_CE_TARGET(v)                                                                      \
    do {                                                                                     \
        if (xy == a)   /* the target holds the max: no cancellation (FL_(target_grad)) */   \
            (v) = FL_(target_grad)(keep * wy, epc, W, w ? (double)w[y] : 1.0, gscale, S,     \
                                   S - 1.0);                                                 \
        else                                                                                 \
            (v) -= (T)(gscale * keep * wy);                                                  \
    } while (0)

static void FL_(ce_index_rows_x)(const FL_TS *x, ptrdiff_t nrows, ptrdiff_t C,
                                 const int64_t *target, const T *w, double W,
                                 int64_t ignore_index, double eps, double gscale,
                                 double *loss, FL_TS *grad, T *esc, int nt, ptrdiff_t npf,
                                 int ign_nan)
{
    const double keep = 1.0 - eps, epc = eps / (double)C;
    T tin[FL_TS_IS_T ? 1 : FL_BLK], tout[FL_BLK];
    for (ptrdiff_t i = 0; i < nrows; i++) {
        const FL_TS *xr = x + i * C;
        FL_TS *g = grad ? grad + i * C : NULL;
        T *e = esc ? esc : (T *)g;   /* exp(x - a), then the gradient (T storage) */
        const int64_t y = target[i];
        if (y == ignore_index) {
            loss[i] = 0.0;
            if (g) {
                /* torch: an ignored row's gradient is 0 - exp(log_softmax) * 0,
                 * NaN where the row has no log-softmax (ign_nan asks for that) */
                if (ign_nan && FL_(no_log_softmax)(xr, C))
                    for (ptrdiff_t j = 0; j < C; j++) g[j] = FL_(st1)((T)NAN);
                else
                    memset(g, 0, (size_t)C * sizeof(FL_TS));
            }
            continue;
        }
        const double xy = (double)FL_(ld1)(xr[y]);
        const double wy = w ? (double)w[y] : 1.0;
        /* lse - x_y as (a - x_y) + L: with a large common offset (logits
         * ~1e6) lse - x_y would cancel.  The smoothing sum takes the logits
         * relative to r0, the row's largest finite logit (not x_y: a target
         * far below the max, 1e300 against -0.3, made W (a - r0) and swx
         * cancel to garbage). */
        double r0 = 0.0;
        double swx = 0.0;   /* sum_c w_c (x_c - r0) */
        if (eps != 0.0) {
            r0 = (double)FL_(max_finite)(xr, C);
            if (r0 == -INFINITY) r0 = 0.0;
            FL_LANES_D(sl);
            /* blocks start at multiples of FL_VL: lane l still adds j = l, l + FL_VL, ... */
            for (ptrdiff_t j0 = 0; j0 < C; j0 += FL_IB(C)) {
                const ptrdiff_t len = j0 + FL_IB(C) < C ? FL_IB(C) : C - j0;
                const T *xb = FL_(ldn)(xr + j0, len, tin);
                const T *wb = w ? w + j0 : NULL;
                if (w)
                    FL_LANE_LOOP_N(FL_VL, 0, len, sl[l] = FL_MADD((double)wb[j], (double)xb[j] - r0, sl[l]););
                else
                    FL_LANE_LOOP_N(FL_VL, 0, len, sl[l] += (double)xb[j] - r0;);
            }
            swx = FL_(lanes_total_dn)(sl, FL_VL);
        }
        /* The gradient written over the logits (out=input) destroys them in
         * the exp pass.  A float64 row whose loss may need them again (a
         * difference of logits that overflows: see FL_(halved_loss)) keeps
         * its exp values in a buffer of its own instead.  float32 and half
         * rows form every loss term in double: nothing overflows. */
        T *own = NULL;
        if (sizeof(T) == 8 && FL_TS_IS_T && g && (const void *)e == (const void *)xr) {
            if (eps == 0.0 && w && fabs(wy) < 1.0) {   /* without smoothing only a weight < 1 can */
                r0 = (double)FL_(max_finite)(xr, C);   /* make an overflowing a - x_y finite */
            }
            if ((eps != 0.0 || (w && fabs(wy) < 1.0)) && !(isfinite(r0 - xy) && isfinite(swx))) {
                own = (T *)malloc((size_t)C * sizeof(T));
                if (own) e = own;
            }
        }
        double a, L, S;
        if (!FL_(row_stats_pf)(xr, C, g ? e : NULL, FL_PF(i), &a, &L, &S)) {
            FL_(nan_row)(loss + i, g, C);
            free(own);
            continue;
        }
        double li = keep * wy * ((a - xy) + L);
        if (eps != 0.0) li += epc * (W * ((a - r0) + L) - swx);
        if (!isfinite(li) && (!g || (const void *)e != (const void *)xr))
            li = FL_(halved_loss)(xr, C, a, L, w, NULL, keep, epc, y, li);
        loss[i] = li;
        if (!g) { free(own); continue; }
        const double coef = keep * wy + epc * W;
        const T sc = (T)(gscale * coef / S);
        const T sw = (T)(gscale * epc);
        for (ptrdiff_t j0 = 0; j0 < C; j0 += FL_OB(C, nt)) {
            const ptrdiff_t len = j0 + FL_OB(C, nt) < C ? FL_OB(C, nt) : C - j0;
            const T *eb = e + j0;
            T *ob = FL_(oblk)(g + j0, tout, nt);
            if (eps != 0.0 && w) {
                const T *wb = w + j0;
#pragma omp simd
                for (ptrdiff_t j = 0; j < len; j++) ob[j] = eb[j] * sc - sw * wb[j];
            } else {
#pragma omp simd
                for (ptrdiff_t j = 0; j < len; j++) ob[j] = eb[j] * sc - sw;
            }
            /* The target class, before the block is rounded / streamed (written
             * in place: after the loop, as the float kernels always did). */
            const int late = FL_TS_IS_T && !nt;
            if (!late && y >= j0 && y < j0 + len) FL_CE_TARGET(ob[y - j0]);
            FL_(oput)(ob, len, g + j0, nt);
        }
        if (FL_TS_IS_T && !nt) FL_CE_TARGET(((T *)g)[y]);   /* (T storage only) */
        free(own);
    }
    if (nt) fl_stream_fence();
}

#if !FL_HALF_ROWS
static void FL_(ce_index_rows)(const T *x, ptrdiff_t nrows, ptrdiff_t C,
                               const int64_t *target, const T *w, double W,
                               int64_t ignore_index, double eps, double gscale,
                               double *loss, T *grad, int ign_nan)
{
    if (C <= FL_SMALL_C) {
        FL_(ce_index_small)(x, nrows, C, target, w, W, ignore_index, eps, gscale, loss, grad, ign_nan);
        return;
    }
    FL_(ce_index_rows_x)(x, nrows, C, target, w, W, ignore_index, eps, gscale, loss, grad, NULL, 0,
                         nrows, ign_nan);
}

/* Cross-entropy with class-probability targets t (same shape as x), fused
 * with its gradient.  t' = (1-eps) t + eps/C;
 *   loss_i = sum_c w_c t'_c (lse - x_c) = swt ((max - r0) + L) - sum_c w_c t'_c (x_c - r0)
 * (swt = sum_c w_c t'_c; r0 = the row's largest finite logit, against cancellation)
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
        /* Logits enter relative to r0, the row's largest finite logit, and
         * lse - r0 as (a - r0) + L: with a large common offset (logits ~1e6)
         * swt * lse - sum wt x would cancel.  (Not the first finite logit:
         * one far below the max, e.g. -1e28 against 4e15, made every
         * wt (x_c - r0) ~1e28 and the loss lost 4 digits -- found by the
         * differential fuzz.)  NaN and +-inf are skipped. */
        double r0 = (double)FL_(max_finite)(xr, C);
        if (r0 == -INFINITY) r0 = 0.0;
        FL_LANES_D(st);    /* sum wt */
        FL_LANES_D(stx);   /* sum wt (x - r0) */
#define FL_WT ((w ? (double)w[j] : 1.0) * (double)(tr[j] * keep + epc))
#if FL_VB >= 32
        /* one loop, as the vectorized reduction summed it (wt has two uses,
         * so its product is rounded on its own in swt) */
        FL_LANE_LOOP(0, C, const double wt = FL_WT; st[l] += wt;
                     stx[l] = FL_MADD(wt, (double)xr[j] - r0, stx[l]););
        const double swt = FL_lanes_total_d(st), swtx = FL_lanes_total_d(stx);
#else
        /* baseline: swt in its lanes as before; swtx, new bits since the
         * reference logit moved, in FL_VL lanes instead of 2 or 4
         * (a sum of 16,000 terms per lane lost up to 8 ulp of the loss) */
        FL_LANE_LOOP(0, C, st[l] += FL_WT;);
        FL_LANE_LOOP_N(FL_VL, 0, C, stx[l] = FL_MADD(FL_WT, (double)xr[j] - r0, stx[l]););
        const double swt = FL_lanes_total_d(st), swtx = FL_(lanes_total_dn)(stx, FL_VL);
#endif
#undef FL_WT
        /* As in ce_index_rows_x: a float64 row written over by its own
         * gradient keeps its exp values apart when its sums overflowed
         * (the loss is then taken from the logits again). */
        T *e = g, *own = NULL;
        if (sizeof(T) == 8 && g == xr && !(isfinite(swt) && isfinite(swtx))) {
            own = (T *)malloc((size_t)C * sizeof(T));
            if (own) e = own;
        }
        double a, L, S;
        if (!FL_(row_stats)(xr, C, e, &a, &L, &S)) {
            FL_(nan_row)(loss + i, g, C);
            free(own);
            continue;
        }
        double li = swt * ((a - r0) + L) - swtx;
        if (!isfinite(li) && e != xr)
            li = FL_(halved_loss)(xr, C, a, L, w, tr, 1.0 - eps, eps / (double)C, -1, li);
        loss[i] = li;
        if (!g) { free(own); continue; }
        const T sc = (T)(gscale * swt / S), gs = (T)gscale;
        if (w) {
#pragma omp simd
            for (ptrdiff_t j = 0; j < C; j++)
                g[j] = e[j] * sc - gs * (w[j] * (tr[j] * keep + epc));
        } else {
#pragma omp simd
            for (ptrdiff_t j = 0; j < C; j++)
                g[j] = e[j] * sc - gs * (tr[j] * keep + epc);
        }
        free(own);
    }
}

/* The cross-entropy gradient of rows whose log-sum-exp is already known: a
 * block of m of the C classes (a vocabulary shard of another process, or the
 * column block of a second pass), with lse_i over all C classes.  Row i:
 *   out[i, j] = c_i exp(x[i, j] - lse_i) - s_i w_j - [j == ycol_i] k_i,   c_i = k_i + s_i W
 * where k_i = scale_i (1-eps) w_{y_i} and s_i = scale_i eps / C are given per row
 * (both 0 for an ignored row, whose gradient is 0), w holds the block's class
 * weights (NULL: all 1), W the weights' sum over all C classes, and ycol_i the
 * target's column in the block (-1 when it lies elsewhere).
 * lse_i is subtracted as hi + lo in T (hi = (T)lse_i), so a large common
 * offset of the logits does not cost the bits that rounding lse_i to T would.
 * The target entry is formed in double from expm1: c p - k cancels when
 * p = exp(x_y - lse) is close to 1 (the "softmax - 1" trap).  out may alias x. */
static void FL_(ce_grad_lse_rows)(const T *x, ptrdiff_t nrows, ptrdiff_t m, const double *lse,
                                  const double *k, const double *s, const int64_t *ycol,
                                  const T *w, double W, T *out)
{
    for (ptrdiff_t i = 0; i < nrows; i++) {
        const T *xr = x + i * m;
        T *o = out + i * m;
        const double ki = k[i], si = s[i];
        if (ki == 0.0 && si == 0.0) {
            memset(o, 0, (size_t)m * sizeof(T));
            continue;
        }
        const T hi = (T)lse[i], lo = (T)(lse[i] - (double)hi);
        const T ct = (T)(ki + si * W), st = (T)si;
        const int64_t yc = ycol[i];
        const double xy = (yc >= 0 && yc < m) ? (double)xr[yc] : 0.0;   /* read before o is written */
        if (w) {
#pragma omp simd
            for (ptrdiff_t j = 0; j < m; j++) o[j] = FL_EXP((xr[j] - hi) - lo) * ct - st * w[j];
        } else {
#pragma omp simd
            for (ptrdiff_t j = 0; j < m; j++) o[j] = FL_EXP((xr[j] - hi) - lo) * ct - st;
        }
        if (yc >= 0 && yc < m) {
            const double d = xy - lse[i];
            o[yc] = (T)(ki * expm1(d) + si * (W * exp(d) - (w ? (double)w[yc] : 1.0)));
        }
    }
}

/* Binary cross-entropy with logits, element-wise over n elements, fused with
 * its gradient (torch's formula, stable for any finite x):
 *   loss_j = w_j ((1 - y_j) x_j + lw_j softplus(-x_j)),  lw_j = 1 + (pw_j - 1) y_j
 *   dloss_j/dx_j = w_j ((1 - y_j) - lw_j sigmoid(-x_j))
 * with softplus(-x) = log1p(exp(-|x|)) + max(-x, 0): one exp and one log1p
 * per element, both fastlog's vectorized ones.  w, pw: NULL (all ones) or n
 * values.  If loss != NULL it receives the per-element losses; grad (may be
 * NULL) receives gscale * dloss/dx.  Returns the sum of the losses (T inside
 * blocks of FL_BLK, double across blocks). */
#define FL_BCE_BODY(WJ, LWJ)                                                   \
    {                                                                          \
        const T xj = x[j], yj = y[j], wj = (WJ), lwj = (LWJ);                  \
        const T ax = xj < 0 ? -xj : xj;                                        \
        const T ev = FL_EXP_NP(-ax);                                           \
        const T sp = FL_LOG1P(ev) + (xj < 0 ? -xj : (T)0);                     \
        const T lj = wj * (((T)1 - yj) * xj + lwj * sp);                       \
        ps[l] += lj;                                                           \
        if (loss) loss[j] = lj;                                                \
        if (grad) {                                                            \
            const T inv = (T)1 / ((T)1 + ev);                                  \
            const T sg = xj <= 0 ? inv : ev * inv;                             \
            grad[j] = gs * wj * (((T)1 - yj) - lwj * sg);                      \
        }                                                                      \
    }

/* The BCE sum's lanes: one vector of this level in the AVX-512 build and for
 * float in the AVX2 one; one lane (a plain sum in element order) in the
 * x86-64 build and for double in the AVX2 one; FL_NL on ARM. */
#if defined(__AVX512F__) || defined(__aarch64__)
#define FL_NL_BCE FL_NL
#elif defined(__AVX2__)
#define FL_NL_BCE ((ptrdiff_t)(sizeof(T) == 4 ? FL_NL : 1))
#else
#define FL_NL_BCE ((ptrdiff_t)1)
#endif

static double FL_(bce_n)(const T *x, const T *y, const T *w, const T *pw, ptrdiff_t n,
                         double gscale, T *loss, T *grad)
{
    const T gs = (T)gscale;
    double total = 0.0;
    for (ptrdiff_t j0 = 0; j0 < n; j0 += FL_BLK) {
        const ptrdiff_t j1 = j0 + FL_BLK < n ? j0 + FL_BLK : n;
        FL_LANES_T(ps);
        if (w && pw)
            FL_LANE_LOOP_N(FL_NL_BCE, j0, j1, FL_BCE_BODY(w[j], (T)1 + (pw[j] - (T)1) * y[j]));
        else if (w)
            FL_LANE_LOOP_N(FL_NL_BCE, j0, j1, FL_BCE_BODY(w[j], (T)1));
        else if (pw)
            FL_LANE_LOOP_N(FL_NL_BCE, j0, j1, FL_BCE_BODY((T)1, (T)1 + (pw[j] - (T)1) * y[j]));
        else
            FL_LANE_LOOP_N(FL_NL_BCE, j0, j1, FL_BCE_BODY((T)1, (T)1));
        total += (double)FL_(lanes_total_n)(ps, FL_NL_BCE);
    }
    return total;
}
#undef FL_BCE_BODY


/* Element-wise kernels over a flat range (exposed for tests of the math). */
static void FL_(exp_n)(const T *x, ptrdiff_t n, T *out)
{
#pragma omp simd
    for (ptrdiff_t j = 0; j < n; j++) out[j] = FL_EXP(x[j]);
}

/* The variant the softmax kernels use (arguments <= 0). */
static void FL_(exp_nonpos_n)(const T *x, ptrdiff_t n, T *out)
{
#pragma omp simd
    for (ptrdiff_t j = 0; j < n; j++) out[j] = FL_EXP_NP(x[j]);
}

static void FL_(log_n)(const T *x, ptrdiff_t n, T *out)
{
#pragma omp simd
    for (ptrdiff_t j = 0; j < n; j++) out[j] = FL_LOG(x[j]);
}

#endif /* !FL_HALF_ROWS */

#ifdef FL_TS_DEFAULTED
#undef FL_TS
#undef FL_TS_IS_T
#undef FL_TS_DEFAULTED
#endif
#undef FL_HALF_ROWS
#undef FL_IB
#undef FL_OB
#undef FL_PF
#undef FL_CE_TARGET
#undef FL_MAXACC
#undef FL_LANE_LOOP
#undef FL_LANE_LOOP_N
#undef FL_LANE_LOOP_FULL
#undef FL_lanes_total
#undef FL_lanes_total_d
#undef FL_MADD
#undef FL_MADD_D
#undef FL_NL_BCE
#undef FL_NL
#undef FL_VB
#undef FL_LANES_T
#undef FL_LANES_D
#undef FL_
#undef FL_CAT
#undef FL_CAT2
