/* fastlog: the row <-> column transposes of the short-row path
 * (fl_rows_impl.h, C <= FL_SMALL_C), in vector registers.
 *
 * The short-row kernels work on blocks of 64 rows stored column-major (one
 * vector lane per row).  Written as plain loops the two transposes run one
 * element at a time and cost about as much as all the math of the kernel.
 * Here a 16 x 16 tile is loaded as 16 (masked) row vectors, transposed with
 * 64 shuffles, and stored as column vectors; masked loads and stores handle
 * a last column tile narrower than 16 and a last row group shorter than 64.
 * Only data movement: the values are the same as the plain loops give.
 * The avx512 ISA build uses 16 x 16 float tiles and 8 x 8 double tiles, the
 * avx2 build 8 x 8 float tiles of 256-bit vectors; other cases (the baseline
 * build, double without AVX-512) keep the loops in fl_rows_impl.h.
 * Each build defines FL_TR_F32 / FL_TR_F64 as the suffix of the tile
 * functions it has for that type (fl_rows_impl.h picks them up).
 */
#ifndef FL_TRANSPOSE_H
#define FL_TRANSPOSE_H

#include <stddef.h>

/* The tile loops, written once for a vector type V of W lanes of T (W x W
 * tiles, G a multiple of W); NAME gives fl_to_cols_NAME / fl_from_cols_NAME:
 *   to_cols:   xt[c * G + k] = x[k * C + c] for k < g, lanes k >= g zero;
 *   from_cols: x[k * C + c] = xt[c * G + k] for k < g (nothing past row g).
 * MASK(w) has the first w lanes on; LOADM(m, p) zeroes the lanes that are
 * off, STOREM(p, m, v) leaves them unwritten (neither touches their memory). */
#define FL_TR_TILES(NAME, T, V, W, MT, MASK, LOADM, STOREM, LOADU, STOREU, ZERO, TR)            \
static inline void fl_to_cols_##NAME(const T *x, ptrdiff_t g, ptrdiff_t C, ptrdiff_t G, T *xt)   \
{                                                                                              \
    V r[W];                                                                                    \
    for (ptrdiff_t c0 = 0; c0 < C; c0 += W) {                                                  \
        const int w = C - c0 < W ? (int)(C - c0) : W;                                          \
        const MT m = (MT)MASK(w);                                                               \
        for (ptrdiff_t k0 = 0; k0 < G; k0 += W) {                                              \
            for (int k = 0; k < W; k++)                                                        \
                r[k] = k0 + k < g ? LOADM(m, x + (k0 + k) * C + c0) : ZERO();                  \
            TR(r);                                                                             \
            for (int c = 0; c < w; c++) STOREU(xt + (c0 + c) * G + k0, r[c]);                  \
        }                                                                                      \
    }                                                                                          \
}                                                                                              \
static inline void fl_from_cols_##NAME(const T *xt, ptrdiff_t g, ptrdiff_t C, ptrdiff_t G, T *x) \
{                                                                                              \
    V r[W];                                                                                    \
    for (ptrdiff_t c0 = 0; c0 < C; c0 += W) {                                                  \
        const int w = C - c0 < W ? (int)(C - c0) : W;                                          \
        const MT m = (MT)MASK(w);                                                               \
        for (ptrdiff_t k0 = 0; k0 < g; k0 += W) {                                              \
            for (int c = 0; c < W; c++)                                                        \
                r[c] = c < w ? LOADU(xt + (c0 + c) * G + k0) : ZERO();                         \
            TR(r);                                                                             \
            for (int k = 0; k < W && k0 + k < g; k++)                                          \
                STOREM(x + (k0 + k) * C + c0, m, r[k]);                                        \
        }                                                                                      \
    }                                                                                          \
}

#if defined(__AVX512F__)
#include <immintrin.h>

/* In-register transpose of the 16 x 16 tile r[0..15] (row i in r[i]). */
static inline void fl_tr16x16_f32(__m512 r[16])
{
    __m512 t[16];
    int i;
    for (i = 0; i < 16; i += 2) {
        t[i] = _mm512_unpacklo_ps(r[i], r[i + 1]);
        t[i + 1] = _mm512_unpackhi_ps(r[i], r[i + 1]);
    }
    for (i = 0; i < 16; i += 4) {
        r[i] = _mm512_castpd_ps(_mm512_unpacklo_pd(_mm512_castps_pd(t[i]), _mm512_castps_pd(t[i + 2])));
        r[i + 1] = _mm512_castpd_ps(_mm512_unpackhi_pd(_mm512_castps_pd(t[i]), _mm512_castps_pd(t[i + 2])));
        r[i + 2] = _mm512_castpd_ps(_mm512_unpacklo_pd(_mm512_castps_pd(t[i + 1]), _mm512_castps_pd(t[i + 3])));
        r[i + 3] = _mm512_castpd_ps(_mm512_unpackhi_pd(_mm512_castps_pd(t[i + 1]), _mm512_castps_pd(t[i + 3])));
    }
    for (i = 0; i < 4; i++) {
        t[i] = _mm512_shuffle_f32x4(r[i], r[i + 4], 0x88);
        t[i + 4] = _mm512_shuffle_f32x4(r[i], r[i + 4], 0xdd);
        t[i + 8] = _mm512_shuffle_f32x4(r[i + 8], r[i + 12], 0x88);
        t[i + 12] = _mm512_shuffle_f32x4(r[i + 8], r[i + 12], 0xdd);
    }
    for (i = 0; i < 8; i++) {
        r[i] = _mm512_shuffle_f32x4(t[i], t[i + 8], 0x88);
        r[i + 8] = _mm512_shuffle_f32x4(t[i], t[i + 8], 0xdd);
    }
}

#define FL_KMASK(w) ((1u << (w)) - 1u)   /* AVX-512: a bit mask, first w bits on */
FL_TR_TILES(tr16_f32, float, __m512, 16, __mmask16, FL_KMASK,
            _mm512_maskz_loadu_ps, _mm512_mask_storeu_ps, _mm512_loadu_ps, _mm512_storeu_ps,
            _mm512_setzero_ps, fl_tr16x16_f32)
#define FL_TR_F32 tr16_f32

/* In-register transpose of the 8 x 8 double tile r[0..7]. */
static inline void fl_tr8x8_f64(__m512d r[8])
{
    __m512d t[8], u[8];
    int i;
    for (i = 0; i < 8; i += 2) {
        t[i] = _mm512_unpacklo_pd(r[i], r[i + 1]);       /* 128-bit lane j: r[i][2j],   r[i+1][2j]   */
        t[i + 1] = _mm512_unpackhi_pd(r[i], r[i + 1]);   /* 128-bit lane j: r[i][2j+1], r[i+1][2j+1] */
    }
    for (i = 0; i < 2; i++) {   /* i = 0: even columns, 1: odd columns */
        u[4 * i] = _mm512_shuffle_f64x2(t[i], t[i + 2], 0x44);
        u[4 * i + 1] = _mm512_shuffle_f64x2(t[i], t[i + 2], 0xee);
        u[4 * i + 2] = _mm512_shuffle_f64x2(t[i + 4], t[i + 6], 0x44);
        u[4 * i + 3] = _mm512_shuffle_f64x2(t[i + 4], t[i + 6], 0xee);
    }
    for (i = 0; i < 2; i++) {
        r[i] = _mm512_shuffle_f64x2(u[4 * i], u[4 * i + 2], 0x88);
        r[i + 2] = _mm512_shuffle_f64x2(u[4 * i], u[4 * i + 2], 0xdd);
        r[i + 4] = _mm512_shuffle_f64x2(u[4 * i + 1], u[4 * i + 3], 0x88);
        r[i + 6] = _mm512_shuffle_f64x2(u[4 * i + 1], u[4 * i + 3], 0xdd);
    }
}

FL_TR_TILES(tr8_f64, double, __m512d, 8, __mmask8, FL_KMASK,
            _mm512_maskz_loadu_pd, _mm512_mask_storeu_pd, _mm512_loadu_pd, _mm512_storeu_pd,
            _mm512_setzero_pd, fl_tr8x8_f64)
#define FL_TR_F64 tr8_f64

#elif defined(__AVX2__)
#include <immintrin.h>

/* In-register transpose of the 8 x 8 tile r[0..7]. */
static inline void fl_tr8x8_f32(__m256 r[8])
{
    __m256 t[8], u[8];
    int i;
    for (i = 0; i < 8; i += 2) {
        t[i] = _mm256_unpacklo_ps(r[i], r[i + 1]);
        t[i + 1] = _mm256_unpackhi_ps(r[i], r[i + 1]);
    }
    for (i = 0; i < 8; i += 4) {
        u[i] = _mm256_shuffle_ps(t[i], t[i + 2], 0x44);
        u[i + 1] = _mm256_shuffle_ps(t[i], t[i + 2], 0xee);
        u[i + 2] = _mm256_shuffle_ps(t[i + 1], t[i + 3], 0x44);
        u[i + 3] = _mm256_shuffle_ps(t[i + 1], t[i + 3], 0xee);
    }
    for (i = 0; i < 4; i++) {
        r[i] = _mm256_permute2f128_ps(u[i], u[i + 4], 0x20);
        r[i + 4] = _mm256_permute2f128_ps(u[i], u[i + 4], 0x31);
    }
}

/* AVX2 masked loads/stores take an integer vector with the first w lanes on
 * (and the pointer first); adapted to the argument order FL_TR_TILES uses. */
#define FL_MASK8(w) _mm256_cmpgt_epi32(_mm256_set1_epi32(w), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7))
#define FL_MASKLOAD8(m, p) _mm256_maskload_ps(p, m)
FL_TR_TILES(tr8_f32, float, __m256, 8, __m256i, FL_MASK8,
            FL_MASKLOAD8, _mm256_maskstore_ps, _mm256_loadu_ps, _mm256_storeu_ps,
            _mm256_setzero_ps, fl_tr8x8_f32)
#define FL_TR_F32 tr8_f32
#endif
#endif
