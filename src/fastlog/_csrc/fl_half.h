/* fastlog half precision: bfloat16 / float16 <-> float32 conversion, and the
 * block drivers that run the float32 row kernels on converted rows.
 *
 * Included by fl_kernels.c after the float32 kernels, so every ISA level gets
 * its own copy compiled with its own flags; exported through the level's
 * kernel table (fl_ktab.half; the argument struct is in fl_kernels.h).
 *
 * Design.  Rows longer than FL_SMALL_C in log_softmax, softmax,
 * logsumexp and class-index cross-entropy (the large, memory-bound cases) go
 * through fl_rows_impl.h's large-row kernels compiled once more per half type
 * (storage type uint16_t, math in float32): each row is widened while it is
 * read (the max pass in registers, the exp pass a block of FL_BLK at a time
 * into L1), exp values are kept in the float32 scratch, and results are
 * rounded once while written -- with streaming stores when the output is
 * larger than the caches (the caller sets `stream`).  The row is read from
 * memory once and written once.  Everything else (short rows, backward
 * passes, probability targets, BCE) uses the block driver: a block of rows
 * (a chunk of ~32K elements, sized by the Cython caller) is converted from
 * half into a float32 scratch buffer that stays in L1/L2, the existing
 * float32 row kernel runs on the scratch (it accumulates batch sums in
 * double), and the outputs/gradients are converted back with ONE
 * round-to-nearest-even from float32.  Both give the same bits (the same
 * float32 arithmetic); neither is a second copy of a kernel.
 *
 * Conversions:
 *   bfloat16 -> float32: a 16-bit shift (exact).
 *   float32 -> bfloat16: round to nearest even on the bits (NaN stays NaN,
 *     quieted; overflow rounds to inf; subnormals rounded like any value);
 *     on aarch64 CPUs with FEAT_BF16, BFCVTN (same results: it rounds to
 *     nearest even and keeps subnormals under the default FPCR), chosen at
 *     run time (fl_cpu_has_bf16) in every aarch64 build.
 *   float16 <-> float32: F16C (vcvtph2ps / vcvtps2ph, round to nearest even)
 *     in the x86-64-v3 and x86-64-v4 builds; FCVTL / FCVTN (part of every
 *     aarch64 CPU) in the aarch64 builds; exact bit arithmetic in the x86-64
 *     build (F. Giesen's conversions, same results).
 * AVX512_BF16's vcvtneps2bf16 is NOT used: it flushes subnormal inputs to
 * zero (it ignores MXCSR and always applies DAZ/FTZ), which would break the
 * "rounded once" guarantee for tiny values; the shift/round path is already
 * limited by memory, not by the conversion (see benchmarks/bench_half.py).
 */
#ifndef FL_HALF_H
#define FL_HALF_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "fl_kernels.h"
#if defined(__F16C__) || defined(__AVX2__) || defined(__AVX512F__)
#include <immintrin.h>
#endif
#if defined(__aarch64__)
#include <arm_neon.h>
#endif

/* fl_u2f / fl_f2u (bit casts) come from fl_math.h, through fl_kernels.h. */

/* ----------------------------------------------------------- scalar ---- */
static inline float fl_bf16_to_f32_1(uint16_t h) { return fl_u2f((uint32_t)h << 16); }

static inline uint16_t fl_f32_to_bf16_1(float f)
{
    const uint32_t u = fl_f2u(f);
    if (f != f) return (uint16_t)((u >> 16) | 0x40);           /* quiet NaN */
    return (uint16_t)((u + 0x7fffu + ((u >> 16) & 1u)) >> 16); /* RNE */
}

static inline float fl_f16_to_f32_1(uint16_t h)
{
    const uint32_t sign = (uint32_t)(h & 0x8000u) << 16;
    uint32_t o = (uint32_t)(h & 0x7fffu) << 13;
    const uint32_t e = o & 0x0f800000u;
    o += (uint32_t)(127 - 15) << 23;
    if (e == 0x0f800000u)
        o += (uint32_t)(128 - 16) << 23;                        /* inf / NaN */
    else if (e == 0) {                                          /* zero / subnormal */
        o += 1u << 23;
        o = fl_f2u(fl_u2f(o) - fl_u2f(113u << 23));
    }
    return fl_u2f(o | sign);
}

static inline uint16_t fl_f32_to_f16_1(float x)
{
    const uint32_t f32inf = 255u << 23, f16max = (127u + 16u) << 23;
    const uint32_t denorm_magic = ((127u - 15u) + (23u - 10u) + 1u) << 23;
    uint32_t f = fl_f2u(x);
    const uint32_t sign = f & 0x80000000u;
    uint16_t o;
    f ^= sign;
    if (f >= f16max)
        o = f > f32inf ? 0x7e00 : 0x7c00;                       /* NaN, inf, overflow */
    else if (f < (113u << 23))                                  /* subnormal or zero */
        o = (uint16_t)(fl_f2u(fl_u2f(f) + fl_u2f(denorm_magic)) - denorm_magic);
    else {
        const uint32_t odd = (f >> 13) & 1u;
        f += ((uint32_t)(15 - 127) << 23) + 0xfffu;
        f += odd;
        o = (uint16_t)(f >> 13);
    }
    return (uint16_t)(o | (sign >> 16));
}

/* ---------------------------------------------------------- vectors ---- */
static void fl_bf16_to_f32_n(const uint16_t *restrict s, ptrdiff_t n, float *restrict d)
{
    ptrdiff_t j = 0;
#if defined(__AVX512F__)
    for (; j + 16 <= n; j += 16) {
        __m512i v = _mm512_cvtepu16_epi32(_mm256_loadu_si256((const __m256i *)(s + j)));
        _mm512_storeu_ps(d + j, _mm512_castsi512_ps(_mm512_slli_epi32(v, 16)));
    }
#elif defined(__AVX2__)
    for (; j + 8 <= n; j += 8) {
        __m256i v = _mm256_cvtepu16_epi32(_mm_loadu_si128((const __m128i *)(s + j)));
        _mm256_storeu_ps(d + j, _mm256_castsi256_ps(_mm256_slli_epi32(v, 16)));
    }
#endif
    for (; j < n; j++) d[j] = fl_bf16_to_f32_1(s[j]);
}

#if defined(__aarch64__) && defined(__GNUC__) && !defined(__clang__) && defined(__linux__)
/* BFCVTN, compiled for FEAT_BF16 whatever the level's flags and called only
 * where the CPU has it (GCC's target attribute; other compilers use it when
 * the whole build may, __ARM_FEATURE_BF16). */
#define FL_BFCVT_ATTR __attribute__((target("arch=armv8.2-a+bf16")))
#define FL_BFCVT_RUNTIME 1
#elif defined(__aarch64__) && defined(__ARM_FEATURE_BF16)
#define FL_BFCVT_ATTR
#define FL_BFCVT_RUNTIME 0
#endif

#ifdef FL_BFCVT_ATTR
FL_BFCVT_ATTR static ptrdiff_t fl_f32_to_bf16_bfcvt(const float *restrict s, ptrdiff_t n,
                                                    uint16_t *restrict d)
{
    ptrdiff_t j = 0;
    for (; j + 8 <= n; j += 8) {
        const bfloat16x8_t r = vcvtq_high_bf16_f32(vcvtq_low_bf16_f32(vld1q_f32(s + j)), vld1q_f32(s + j + 4));
        vst1q_u16(d + j, vreinterpretq_u16_bf16(r));
    }
    return j;   /* the rest: the bit arithmetic, the same results */
}

/* 1 where BFCVTN runs: read once per process (a relaxed atomic: any thread
 * that reads before the first store computes the same answer). */
static int fl_bfcvt_ok(void)
{
#if FL_BFCVT_RUNTIME
    static int ok = -1;
    int v = __atomic_load_n(&ok, __ATOMIC_RELAXED);
    if (v < 0) {
        v = fl_cpu_has_bf16();
        __atomic_store_n(&ok, v, __ATOMIC_RELAXED);
    }
    return v;
#else
    return 1;
#endif
}
#endif

static void fl_f32_to_bf16_n(const float *restrict s, ptrdiff_t n, uint16_t *restrict d)
{
    ptrdiff_t j = 0;
#ifdef FL_BFCVT_ATTR
    if (fl_bfcvt_ok()) j = fl_f32_to_bf16_bfcvt(s, n, d);
#endif
#if defined(__AVX512F__)
    const __m512i bias = _mm512_set1_epi32(0x7fff), one = _mm512_set1_epi32(1),
                  qbit = _mm512_set1_epi32(0x40);
#if defined(__AVX512BW__)
    /* 32 at a time: the rounded value's upper 16 bits (NaN: the quiet bit
     * set in them) taken from two vectors by one word permute, instead of a
     * shift and a narrowing move per vector. */
    const __m512i qhi = _mm512_set1_epi32(0x400000);
    const __m512i odd = _mm512_set_epi16(63, 61, 59, 57, 55, 53, 51, 49, 47, 45, 43, 41, 39, 37, 35, 33,
                                         31, 29, 27, 25, 23, 21, 19, 17, 15, 13, 11, 9, 7, 5, 3, 1);
    for (; j + 32 <= n; j += 32) {
        __m512i r2[2];
        for (int h = 0; h < 2; h++) {
            const __m512 f = _mm512_loadu_ps(s + j + 16 * h);
            const __m512i u = _mm512_castps_si512(f);
            const __m512i r = _mm512_add_epi32(
                _mm512_add_epi32(u, bias), _mm512_and_si512(_mm512_srli_epi32(u, 16), one));
            const __mmask16 nan = _mm512_cmp_ps_mask(f, f, _CMP_UNORD_Q);
            r2[h] = _mm512_mask_or_epi32(r, nan, u, qhi);
        }
        _mm512_storeu_si512((void *)(d + j), _mm512_permutex2var_epi16(r2[0], odd, r2[1]));
    }
#endif
    for (; j + 16 <= n; j += 16) {
        const __m512 f = _mm512_loadu_ps(s + j);
        const __m512i u = _mm512_castps_si512(f);
        const __m512i hi = _mm512_srli_epi32(u, 16);
        __m512i r = _mm512_srli_epi32(
            _mm512_add_epi32(_mm512_add_epi32(u, bias), _mm512_and_si512(hi, one)), 16);
        const __mmask16 nan = _mm512_cmp_ps_mask(f, f, _CMP_UNORD_Q);
        r = _mm512_mask_mov_epi32(r, nan, _mm512_or_si512(hi, qbit));
        _mm256_storeu_si256((__m256i *)(d + j), _mm512_cvtepi32_epi16(r));
    }
#elif defined(__AVX2__)
    const __m256i bias = _mm256_set1_epi32(0x7fff), one = _mm256_set1_epi32(1),
                  qbit = _mm256_set1_epi32(0x40);
    for (; j + 16 <= n; j += 16) {
        __m256i r2[2];
        for (int h = 0; h < 2; h++) {
            const __m256 f = _mm256_loadu_ps(s + j + 8 * h);
            const __m256i u = _mm256_castps_si256(f);
            const __m256i hi = _mm256_srli_epi32(u, 16);
            const __m256i r = _mm256_srli_epi32(
                _mm256_add_epi32(_mm256_add_epi32(u, bias), _mm256_and_si256(hi, one)), 16);
            const __m256 nan = _mm256_cmp_ps(f, f, _CMP_UNORD_Q);
            r2[h] = _mm256_blendv_epi8(r, _mm256_or_si256(hi, qbit), _mm256_castps_si256(nan));
        }
        /* values are < 2^16: unsigned saturation keeps them; fix the lane order */
        const __m256i p = _mm256_permute4x64_epi64(_mm256_packus_epi32(r2[0], r2[1]), 0xD8);
        _mm256_storeu_si256((__m256i *)(d + j), p);
    }
#endif
    for (; j < n; j++) d[j] = fl_f32_to_bf16_1(s[j]);
}

static void fl_f16_to_f32_n(const uint16_t *restrict s, ptrdiff_t n, float *restrict d)
{
    ptrdiff_t j = 0;
#if defined(__AVX512F__)
    for (; j + 16 <= n; j += 16)
        _mm512_storeu_ps(d + j, _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(s + j))));
#elif defined(__F16C__)
    for (; j + 8 <= n; j += 8)
        _mm256_storeu_ps(d + j, _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(s + j))));
#elif defined(__aarch64__)
    for (; j + 8 <= n; j += 8) {
        const float16x8_t h = vreinterpretq_f16_u16(vld1q_u16(s + j));
        vst1q_f32(d + j, vcvt_f32_f16(vget_low_f16(h)));
        vst1q_f32(d + j + 4, vcvt_high_f32_f16(h));
    }
#endif
    for (; j < n; j++) d[j] = fl_f16_to_f32_1(s[j]);
}

static void fl_f32_to_f16_n(const float *restrict s, ptrdiff_t n, uint16_t *restrict d)
{
    ptrdiff_t j = 0;
#if defined(__AVX512F__)
    for (; j + 16 <= n; j += 16)
        _mm256_storeu_si256((__m256i *)(d + j),
                            _mm512_cvtps_ph(_mm512_loadu_ps(s + j), _MM_FROUND_TO_NEAREST_INT));
#elif defined(__F16C__)
    for (; j + 8 <= n; j += 8)
        _mm_storeu_si128((__m128i *)(d + j),
                         _mm256_cvtps_ph(_mm256_loadu_ps(s + j), _MM_FROUND_TO_NEAREST_INT));
#elif defined(__aarch64__)
    for (; j + 8 <= n; j += 8) {
        const float16x8_t h = vcvt_high_f16_f32(vcvt_f16_f32(vld1q_f32(s + j)), vld1q_f32(s + j + 4));
        vst1q_u16(d + j, vreinterpretq_u16_f16(h));
    }
#endif
    for (; j < n; j++) d[j] = fl_f32_to_f16_1(s[j]);
}

/* Running maxima (64 lanes, fl_rows_impl.h's max_acc for float) of n
 * widened values, widened in registers; returns the max of the values after
 * the last 64.  max(x, m) keeps m when x is NaN, as
 * `x > m ? x : m` does. */
static float fl_bf16_max_acc(const uint16_t *restrict s, ptrdiff_t n, float *restrict mx)
{
    ptrdiff_t j = 0, l;
    for (; j + 64 <= n; j += 64) {
#pragma omp simd
        for (l = 0; l < 64; l++) {
            const float v = fl_bf16_to_f32_1(s[j + l]);
            mx[l] = v > mx[l] ? v : mx[l];
        }
    }
    float t = -INFINITY;   /* the tail in a scalar (see fl_rows_impl.h's max_acc) */
    for (; j < n; j++) {
        const float v = fl_bf16_to_f32_1(s[j]);
        t = v > t ? v : t;
    }
    return t;
}

static float fl_f16_max_acc(const uint16_t *restrict s, ptrdiff_t n, float *restrict mx)
{
    (void)mx;   /* (unused in the x86-64 build: no vector conversion) */
    ptrdiff_t j = 0;
#if defined(__AVX512F__)
    __m512 m0 = _mm512_loadu_ps(mx), m1 = _mm512_loadu_ps(mx + 16), m2 = _mm512_loadu_ps(mx + 32),
           m3 = _mm512_loadu_ps(mx + 48);
    for (; j + 64 <= n; j += 64) {
        m0 = _mm512_max_ps(_mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(s + j))), m0);
        m1 = _mm512_max_ps(_mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(s + j + 16))), m1);
        m2 = _mm512_max_ps(_mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(s + j + 32))), m2);
        m3 = _mm512_max_ps(_mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(s + j + 48))), m3);
    }
    _mm512_storeu_ps(mx, m0); _mm512_storeu_ps(mx + 16, m1);
    _mm512_storeu_ps(mx + 32, m2); _mm512_storeu_ps(mx + 48, m3);
#elif defined(__F16C__)
    for (; j + 64 <= n; j += 64)
        for (ptrdiff_t l = 0; l < 64; l += 8)
            _mm256_storeu_ps(mx + l, _mm256_max_ps(
                _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(s + j + l))), _mm256_loadu_ps(mx + l)));
#elif defined(__aarch64__)
    /* x > m ? x : m (a select, not FMAX, which would return the NaN) */
    for (; j + 64 <= n; j += 64)
        for (ptrdiff_t l = 0; l < 64; l += 8) {
            const float16x8_t h = vreinterpretq_f16_u16(vld1q_u16(s + j + l));
            const float32x4_t a = vcvt_f32_f16(vget_low_f16(h)), b = vcvt_high_f32_f16(h);
            const float32x4_t ma = vld1q_f32(mx + l), mb = vld1q_f32(mx + l + 4);
            vst1q_f32(mx + l, vbslq_f32(vcgtq_f32(a, ma), a, ma));
            vst1q_f32(mx + l + 4, vbslq_f32(vcgtq_f32(b, mb), b, mb));
        }
#endif
    float t = -INFINITY;   /* the rest in a scalar (see fl_rows_impl.h's max_acc) */
    for (; j < n; j++) {
        const float v = fl_f16_to_f32_1(s[j]);
        t = v > t ? v : t;
    }
    return t;
}

/* kind: FL_KIND_BF16 or FL_KIND_F16. */
static inline void fl_h2f_n(int kind, const uint16_t *s, ptrdiff_t n, float *d)
{
    if (kind == FL_KIND_F16) fl_f16_to_f32_n(s, n, d);
    else fl_bf16_to_f32_n(s, n, d);
}

static inline void fl_f2h_n(int kind, const float *s, ptrdiff_t n, uint16_t *d)
{
    if (kind == FL_KIND_F16) fl_f32_to_f16_n(s, n, d);
    else fl_f32_to_bf16_n(s, n, d);
}

/* ------------------------------------------- fused large-row kernels ---- */
/* log_softmax, softmax, logsumexp and class-index cross-entropy of rows
 * longer than FL_SMALL_C: the large-row kernels of fl_rows_impl.h compiled
 * once more per half type (FL_TS = uint16_t).  They widen the row a block at
 * a time while reading it and round once while writing, so each row is read
 * from memory once (then from L1/L2) and written once; exp values are kept
 * in the float32 scratch.  Same float32 arithmetic as the block driver below,
 * the same results. */
#define T float
#define FL_TS uint16_t
#define FL_TS_IS_T 0
#define FL_HALF_ROWS 1
#define FL_EXP fl_expf
#define FL_EXP_NP fl_expf_nonpos
#define FL_LOG fl_logf
#define FL_LOG1P fl_log1pf

#define FL_SFX bf16
#define FL_HLD1 fl_bf16_to_f32_1
#define FL_HLDN fl_bf16_to_f32_n
#define FL_HST1 fl_f32_to_bf16_1
#define FL_HSTN fl_f32_to_bf16_n
#define FL_HMAXACC fl_bf16_max_acc
#include "fl_rows_impl.h"
#undef FL_HMAXACC
#undef FL_SFX
#undef FL_HLD1
#undef FL_HLDN
#undef FL_HST1
#undef FL_HSTN

#define FL_HALF_ROWS 1
#define FL_SFX f16
#define FL_HLD1 fl_f16_to_f32_1
#define FL_HLDN fl_f16_to_f32_n
#define FL_HST1 fl_f32_to_f16_1
#define FL_HSTN fl_f32_to_f16_n
#define FL_HMAXACC fl_f16_max_acc
#include "fl_rows_impl.h"
#undef FL_HMAXACC
#undef FL_SFX
#undef FL_HLD1
#undef FL_HLDN
#undef FL_HST1
#undef FL_HSTN

#undef T
#undef FL_TS
#undef FL_TS_IS_T
#undef FL_EXP
#undef FL_EXP_NP
#undef FL_LOG
#undef FL_LOG1P

/* The fused kernels for rows [r0, r0 + m) of `a`, if the op has one (else
 * 0).  s: at least C floats of scratch. */
#define FL_HFUSED(sfx)                                                                     \
    static int fl_half_fused_##sfx(const fl_half_args *a, ptrdiff_t r0, ptrdiff_t m, float *s) \
    {                                                                                      \
        const ptrdiff_t C = a->C, off = r0 * C, npf = a->nrows - r0;                       \
        switch (a->op) {                                                                   \
        case FL_H_LOG_SOFTMAX:                                                             \
            fl_log_softmax_rows_x_##sfx(a->x + off, m, C, a->out + off, a->stream, npf,   \
                                        a->flag);                                          \
            return 1;                                                                      \
        case FL_H_SOFTMAX:                                                                 \
            fl_softmax_rows_x_##sfx(a->x + off, m, C, a->out + off, s, a->stream, npf);    \
            return 1;                                                                      \
        case FL_H_LSE:                                                                     \
            fl_lse_rows_x_##sfx(a->x + off, m, C, a->out + r0, npf);                       \
            return 1;                                                                      \
        case FL_H_CE_INDEX:                                                                \
            fl_ce_index_rows_x_##sfx(a->x + off, m, C, a->target + r0, a->w, a->W,         \
                                     a->ignore_index, a->eps, a->gscale, a->loss + r0,     \
                                     a->out ? a->out + off : NULL, s, a->stream, npf,      \
                                     a->flag);                                             \
            return 1;                                                                      \
        default:                                                                           \
            return 0;                                                                      \
        }                                                                                  \
    }
FL_HFUSED(bf16)
FL_HFUSED(f16)
#undef FL_HFUSED

/* ------------------------------------------------------ block driver ---- */
/* Rows [r0, r0 + m) of the call described by `a`, through the float32
 * scratch `s` (fl_half_scratch(m, C) floats).  Returns the BCE chunk sum
 * (0 for the other ops).  Outputs may alias inputs (out = x): every input
 * block is converted into the scratch before any output of it is written. */
static double fl_half_rows(const fl_half_args *a, ptrdiff_t r0, ptrdiff_t m, float *s)
{
    const ptrdiff_t C = a->C, nC = m * C, off = r0 * C;
    float *s1 = s + nC;
    double total = 0.0;
    if (C > FL_SMALL_C && (a->kind == FL_KIND_F16 ? fl_half_fused_f16(a, r0, m, s)
                                                  : fl_half_fused_bf16(a, r0, m, s)))
        return 0.0;
    fl_h2f_n(a->kind, a->x + off, nC, s);
    switch (a->op) {
    case FL_H_LOG_SOFTMAX:
        fl_log_softmax_rows_f32(s, m, C, s, a->flag);
        fl_f2h_n(a->kind, s, nC, a->out + off);
        break;
    case FL_H_SOFTMAX:
        fl_softmax_rows_f32(s, m, C, s);
        fl_f2h_n(a->kind, s, nC, a->out + off);
        break;
    case FL_H_LSE:
        fl_lse_rows_f32(s, m, C, s1);
        fl_f2h_n(a->kind, s1, m, a->out + r0);
        break;
    case FL_H_LOG_SOFTMAX_BWD:
    case FL_H_SOFTMAX_BWD:
        fl_h2f_n(a->kind, a->y + off, nC, s1);
        if (a->op == FL_H_LOG_SOFTMAX_BWD) fl_log_softmax_backward_rows_f32(s, s1, m, C, s);
        else fl_softmax_backward_rows_f32(s, s1, m, C, s);
        fl_f2h_n(a->kind, s, nC, a->out + off);
        break;
    case FL_H_CE_INDEX:
        fl_ce_index_rows_f32(s, m, C, a->target + r0, a->w, a->W, a->ignore_index, a->eps,
                             a->gscale, a->loss + r0, a->out ? s : NULL, a->flag);
        if (a->out) fl_f2h_n(a->kind, s, nC, a->out + off);
        break;
    case FL_H_CE_PROB:
        fl_h2f_n(a->kind, a->y + off, nC, s1);
        fl_ce_prob_rows_f32(s, m, C, s1, a->w, a->eps, a->gscale, a->loss + r0, a->out ? s : NULL);
        if (a->out) fl_f2h_n(a->kind, s, nC, a->out + off);
        break;
    case FL_H_BCE:
        /* element-wise: the loss may overwrite y's scratch, the gradient x's */
        fl_h2f_n(a->kind, a->y + off, nC, s1);
        total = fl_bce_n_f32(s, s1, a->w ? a->w + off : NULL, a->pw ? a->pw + off : NULL, nC,
                             a->gscale, a->out2 ? s1 : NULL, a->out ? s : NULL);
        if (a->out2) fl_f2h_n(a->kind, s1, nC, a->out2 + off);
        if (a->out) fl_f2h_n(a->kind, s, nC, a->out + off);
        break;
    }
    return total;
}

#endif
