/* fastlog: vectorizable exp and log for float32 and float64.
 *
 * Written so that GCC auto-vectorizes loops that call them (no branches, no
 * library calls): range reduction + polynomial + exponent bits, selects
 * instead of ifs.  The same source is compiled once per ISA level (x86-64,
 * x86-64-v3, x86-64-v4; aarch64, aarch64-sve) and the level is chosen at
 * import time.
 *
 * Multiply-adds: FL_FMA(a, b, c) = a * b + c (FL_FNMA: c - a * b, FL_CFMA:
 * c + a * b).  On x86 that is the plain expression, as written before these
 * macros existed, and the compiler contracts it into an FMA in the FMA builds
 * (-ffp-contract=fast): the x86 results are what those builds always gave.
 * On aarch64 every build has FMA and nothing is contracted
 * (-ffp-contract=off): FL_FMA is an explicit fused multiply-add, at the
 * places the x86 FMA builds fuse, so the source alone fixes every rounding
 * and the NEON and SVE builds give the same bits.
 *
 * Accuracy, max error in ULPs of the result (measured against float64 /
 * long double / mpmath references; tests/test_numerics.py holds these bounds
 * for every ISA build the CPU runs):
 *   fl_expf  <= 1.02 ULP  exhaustive over all float32 inputs: 0.990 in the
 *                         x86-64 build, 1.010 in the FMA builds (x86-64-v3,
 *                         x86-64-v4); subnormal results within one subnormal ULP
 *   fl_exp   <= 1 ULP     max 0.994 over 1e7 random inputs
 *   fl_logf  <= 1.97 ULP  exhaustive over all positive float32: 1.968 (all
 *                         builds), subnormal inputs included
 *   fl_log   <= 2.05 ULP  max 1.996 over 1e7 random inputs; 2.021 over 4e7
 *                         inputs aimed at the worst region, x in [0.6, 0.71)
 *                         and [1.41, 1.7), where k*ln2 and the atanh series
 *                         cancel (subnormal inputs are scaled up first)
 * Edge cases: exp(-inf) = 0, exp(x) = +inf past overflow, exp(nan) = nan;
 * log(0) = -inf, log(+inf) = +inf, log(x<0) = nan, log(nan) = nan.
 */
#ifndef FL_MATH_H
#define FL_MATH_H

#include <stdint.h>
#include <string.h>
#include <math.h>

/* Integer views of the float bits.  All integer arithmetic on them is done in
 * UNSIGNED types (wrap-around is defined; signed overflow and left shifts of
 * negative values are undefined behaviour, which UBSan reports and a compiler
 * may exploit): the unsigned result is converted back to a signed type only
 * where a sign is needed, and only arithmetic right shifts (GCC/Clang:
 * implementation-defined as sign-extending) act on negative values.  NaN and
 * negative inputs go through the same wrapped arithmetic and are then
 * overridden by the selects at the end, so every result is bit-identical to
 * the signed formulation the compilers generated before. */
static inline uint32_t fl_f2u(float f) { uint32_t i; memcpy(&i, &f, 4); return i; }
static inline float fl_u2f(uint32_t i) { float f; memcpy(&f, &i, 4); return f; }
static inline uint64_t fl_d2u(double f) { uint64_t i; memcpy(&i, &f, 8); return i; }
static inline double fl_u2d(uint64_t i) { double f; memcpy(&f, &i, 8); return f; }
/* Two's-complement reinterpretation (memcpy: no implementation-defined conversion). */
static inline int32_t fl_u2i32(uint32_t u) { int32_t i; memcpy(&i, &u, 4); return i; }
static inline int64_t fl_u2i64(uint64_t u) { int64_t i; memcpy(&i, &u, 8); return i; }

/* a * b + c, c - a * b, c + a * b: on x86 exactly these expressions, operand
 * order included (it decides which NaN an operation returns when both
 * operands are NaN), so the x86 builds compile what they always did. */
#if defined(__aarch64__)
#define FL_FMAF(a, b, c) __builtin_fmaf((a), (b), (c))
#define FL_FNMAF(a, b, c) __builtin_fmaf(-(a), (b), (c))
#define FL_CFMAF(c, a, b) __builtin_fmaf((a), (b), (c))
#define FL_FMA(a, b, c) __builtin_fma((a), (b), (c))
#define FL_FNMA(a, b, c) __builtin_fma(-(a), (b), (c))
#define FL_CFMA(c, a, b) __builtin_fma((a), (b), (c))
#else
#define FL_FMAF(a, b, c) ((a) * (b) + (c))
#define FL_FNMAF(a, b, c) ((c) - (a) * (b))
#define FL_CFMAF(c, a, b) ((c) + (a) * (b))
#define FL_FMA(a, b, c) ((a) * (b) + (c))
#define FL_FNMA(a, b, c) ((c) - (a) * (b))
#define FL_CFMA(c, a, b) ((c) + (a) * (b))
#endif

/* ---------------------------------------------------------------- expf -- */
/* The shared part of the float exps: for xc already clamped to [-104, 89],
 * returns exp(r) for r = xc - n*ln2 in [-ln2/2, ln2/2] and sets *ni = n. */
static inline float fl_expf_reduced(float xc, int32_t *ni)
{
    const float magic = 12582912.0f;            /* 1.5 * 2^23: round-to-nearest */
    float t = FL_FMAF(xc, 1.44269504088896341f, magic);
    float n = t - magic;
    /* n as an integer, in [-150, 129] (any value for NaN: wrapped, unused) */
    *ni = fl_u2i32(fl_f2u(t) - fl_f2u(magic));
    /* Cody-Waite: r = x - n*ln2 in two pieces (ln2_hi has 8 trailing zero bits). */
    float r = FL_FNMAF(n, 0.693359375f, xc);
    r = FL_FNMAF(n, -2.12194440e-4f, r);
    /* exp(r) on [-ln2/2, ln2/2] (Cephes expf polynomial). */
    float p = 1.9875691500e-4f;
    p = FL_FMAF(p, r, 1.3981999507e-3f);
    p = FL_FMAF(p, r, 8.3334519073e-3f);
    p = FL_FMAF(p, r, 4.1665795894e-2f);
    p = FL_FMAF(p, r, 1.6666665459e-1f);
    p = FL_FMAF(p, r, 5.0000001201e-1f);
    return FL_FMAF(p, r * r, r) + 1.0f;
}

static inline float fl_expf(float x)
{
    float xc = x < -104.0f ? -104.0f : x;       /* exp(-104) < 2^-150: rounds to 0 */
    xc = xc > 89.0f ? 89.0f : xc;               /* exp(89) > FLT_MAX: gives inf   */
    int32_t ni;
    float p = fl_expf_reduced(xc, &ni);
    /* Scale by 2^n in two steps so subnormal results and 2^128 work. */
    int32_t n1 = ni >> 1;                       /* |n1|, |ni - n1| < 2^30: no overflow */
    int32_t n2 = ni - n1;
    return (p * fl_u2f(((uint32_t)n1 + 127u) << 23)) * fl_u2f(((uint32_t)n2 + 127u) << 23);
}

/* exp for x <= 0 (or NaN), as in softmax where x = logit - max: no overflow
 * clamp, and the 2^n scaling done as (p * 2^(n+64)) * 2^-64, exact for every
 * n in [-150, 0] including subnormal results.  Undefined for x > 0. */
static inline float fl_expf_nonpos(float x)
{
    float xc = x < -104.0f ? -104.0f : x;
    int32_t ni;
    float p = fl_expf_reduced(xc, &ni);
    return (p * fl_u2f(((uint32_t)ni + 191u) << 23)) * 5.42101086242752217e-20f;   /* 2^-64 */
}

/* ----------------------------------------------------------------- exp -- */
/* The shared part of the double exps (xc clamped to [-746, 710]). */
static inline double fl_exp_reduced(double xc, int64_t *ni)
{
    const double magic = 6755399441055744.0;    /* 1.5 * 2^52 */
    double t = FL_FMA(xc, 1.4426950408889634074, magic);
    double n = t - magic;
    *ni = fl_u2i64(fl_d2u(t) - fl_d2u(magic));
    double r = FL_FNMA(n, 6.93147180369123816490e-01, xc);   /* ln2_hi (Cephes/fdlibm split) */
    r = FL_FNMA(n, 1.90821492927058770002e-10, r);           /* ln2_lo */
    /* Taylor series to degree 13 on [-ln2/2, ln2/2]: truncation < 5e-18. */
    double p = 1.0 / 6227020800.0;
    p = FL_FMA(p, r, 1.0 / 479001600.0);
    p = FL_FMA(p, r, 1.0 / 39916800.0);
    p = FL_FMA(p, r, 1.0 / 3628800.0);
    p = FL_FMA(p, r, 1.0 / 362880.0);
    p = FL_FMA(p, r, 1.0 / 40320.0);
    p = FL_FMA(p, r, 1.0 / 5040.0);
    p = FL_FMA(p, r, 1.0 / 720.0);
    p = FL_FMA(p, r, 1.0 / 120.0);
    p = FL_FMA(p, r, 1.0 / 24.0);
    p = FL_FMA(p, r, 1.0 / 6.0);
    p = FL_FMA(p, r, 0.5);
    return FL_FMA(p, r * r, r) + 1.0;
}

static inline double fl_exp(double x)
{
    double xc = x < -746.0 ? -746.0 : x;
    xc = xc > 710.0 ? 710.0 : xc;
    int64_t ni;
    double p = fl_exp_reduced(xc, &ni);
    int64_t n1 = ni >> 1;
    int64_t n2 = ni - n1;
    return (p * fl_u2d(((uint64_t)n1 + 1023u) << 52)) * fl_u2d(((uint64_t)n2 + 1023u) << 52);
}

static inline double fl_exp_nonpos(double x)
{
    double xc = x < -746.0 ? -746.0 : x;
    int64_t ni;
    double p = fl_exp_reduced(xc, &ni);
    return (p * fl_u2d(((uint64_t)ni + 1535u) << 52)) * 7.4583407312002067e-155;   /* 2^-512 */
}

/* ---------------------------------------------------------------- logf -- */
/* log(x) = k*ln2 + 2*atanh(f), f = (m-1)/(m+1), m in [sqrt(1/2), sqrt(2)). */
static inline float fl_logf(float x)
{
    /* Subnormals: scale up by 2^25 first. */
    float xs = x < 1.17549435e-38f ? x * 33554432.0f : x;
    float kadj = x < 1.17549435e-38f ? 25.0f : 0.0f;
    uint32_t ix = fl_f2u(xs);
    /* Move the mantissa into [sqrt(1/2), sqrt(2)).  (Negative input, -0.0 and
     * NaN wrap here; their results are replaced below.) */
    int32_t k = fl_u2i32(ix - 0x3f3504f3u) >> 23;
    float m = fl_u2f(ix - ((uint32_t)k << 23));
    float kf = (float)k - kadj;
    float f = (m - 1.0f) / (m + 1.0f);
    float f2 = f * f;
    float q = 0.1111111111f;                 /* 1/9 */
    q = FL_FMAF(q, f2, 0.1428571429f);
    q = FL_FMAF(q, f2, 0.2f);
    q = FL_FMAF(q, f2, 0.3333333333f);
    float lm = FL_CFMAF(2.0f * f, 2.0f * f * f2, q);
    float res = FL_FMAF(kf, 0.693359375f, FL_FMAF(kf, -2.12194440e-4f, lm));
    res = x == 0.0f ? -INFINITY : res;
    res = x < 0.0f ? NAN : res;
    res = x == INFINITY ? INFINITY : res;
    res = x != x ? x : res;
    return res;
}

/* ----------------------------------------------------------------- log -- */
static inline double fl_log(double x)
{
    double xs = x < 2.2250738585072014e-308 ? x * 18014398509481984.0 : x;  /* 2^54 */
    double kadj = x < 2.2250738585072014e-308 ? 54.0 : 0.0;
    uint64_t ix = fl_d2u(xs);
    int64_t k = fl_u2i64(ix - 0x3fe6a09e667f3bcdULL) >> 52;
    double m = fl_u2d(ix - ((uint64_t)k << 52));
    double kd = (double)k - kadj;
    double f = (m - 1.0) / (m + 1.0);
    double f2 = f * f;
    /* 2*atanh(f) = 2f (1 + f^2/3 + f^4/5 + ...), |f| < 0.1716, f^2 < 0.0295 */
    double q = 1.0 / 23.0;
    q = FL_FMA(q, f2, 1.0 / 21.0);
    q = FL_FMA(q, f2, 1.0 / 19.0);
    q = FL_FMA(q, f2, 1.0 / 17.0);
    q = FL_FMA(q, f2, 1.0 / 15.0);
    q = FL_FMA(q, f2, 1.0 / 13.0);
    q = FL_FMA(q, f2, 1.0 / 11.0);
    q = FL_FMA(q, f2, 1.0 / 9.0);
    q = FL_FMA(q, f2, 1.0 / 7.0);
    q = FL_FMA(q, f2, 1.0 / 5.0);
    q = FL_FMA(q, f2, 1.0 / 3.0);
    double lm = FL_CFMA(2.0 * f, 2.0 * f * f2, q);
    double res = FL_FMA(kd, 6.93147180369123816490e-01, FL_FMA(kd, 1.90821492927058770002e-10, lm));
    res = x == 0.0 ? -INFINITY : res;
    res = x < 0.0 ? NAN : res;
    res = x == INFINITY ? INFINITY : res;
    res = x != x ? x : res;
    return res;
}

/* log1p for s >= 0 (or NaN/inf) from fl_log: with u = 1 + s rounded,
 * log1p(s) = log(u) * s / (u - 1) corrects the rounding of u (Goldberg). */
static inline float fl_log1pf(float s)
{
    float u = 1.0f + s;
    float r = fl_logf(u) * (s / (u - 1.0f));
    r = u == 1.0f ? s : r;
    return u == INFINITY ? u : r;
}

static inline double fl_log1p(double s)
{
    double u = 1.0 + s;
    double r = fl_log(u) * (s / (u - 1.0));
    r = u == 1.0 ? s : r;
    return u == INFINITY ? u : r;
}

#endif
