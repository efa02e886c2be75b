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
 */
#ifndef FL_TRANSPOSE_H
#define FL_TRANSPOSE_H

#if defined(__AVX512F__)
#include <immintrin.h>
#define FL_HAVE_TR16 1

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

/* xt[c * G + k] = x[k * C + c] for k < g (g <= G, G a multiple of 16);
 * lanes k >= g are zero. */
static inline void fl_to_cols_tr16_f32(const float *x, ptrdiff_t g, ptrdiff_t C, ptrdiff_t G,
                                       float *xt)
{
    __m512 r[16];
    for (ptrdiff_t c0 = 0; c0 < C; c0 += 16) {
        const int w = C - c0 < 16 ? (int)(C - c0) : 16;
        const __mmask16 m = (__mmask16)((1u << w) - 1u);
        for (ptrdiff_t k0 = 0; k0 < G; k0 += 16) {
            for (int k = 0; k < 16; k++)
                r[k] = k0 + k < g ? _mm512_maskz_loadu_ps(m, x + (k0 + k) * C + c0) : _mm512_setzero_ps();
            fl_tr16x16_f32(r);
            for (int c = 0; c < w; c++) _mm512_storeu_ps(xt + (c0 + c) * G + k0, r[c]);
        }
    }
}

/* x[k * C + c] = xt[c * G + k] for k < g. */
static inline void fl_from_cols_tr16_f32(const float *xt, ptrdiff_t g, ptrdiff_t C, ptrdiff_t G,
                                         float *x)
{
    __m512 r[16];
    for (ptrdiff_t c0 = 0; c0 < C; c0 += 16) {
        const int w = C - c0 < 16 ? (int)(C - c0) : 16;
        const __mmask16 m = (__mmask16)((1u << w) - 1u);
        for (ptrdiff_t k0 = 0; k0 < g; k0 += 16) {
            for (int c = 0; c < 16; c++)
                r[c] = c < w ? _mm512_loadu_ps(xt + (c0 + c) * G + k0) : _mm512_setzero_ps();
            fl_tr16x16_f32(r);
            for (int k = 0; k < 16 && k0 + k < g; k++)
                _mm512_mask_storeu_ps(x + (k0 + k) * C + c0, m, r[k]);
        }
    }
}

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

/* As fl_to_cols_tr16_f32, for double with 8 x 8 tiles (G a multiple of 8). */
static inline void fl_to_cols_tr8_f64(const double *x, ptrdiff_t g, ptrdiff_t C, ptrdiff_t G, double *xt)
{
    __m512d r[8];
    for (ptrdiff_t c0 = 0; c0 < C; c0 += 8) {
        const int w = C - c0 < 8 ? (int)(C - c0) : 8;
        const __mmask8 m = (__mmask8)((1u << w) - 1u);
        for (ptrdiff_t k0 = 0; k0 < G; k0 += 8) {
            for (int k = 0; k < 8; k++)
                r[k] = k0 + k < g ? _mm512_maskz_loadu_pd(m, x + (k0 + k) * C + c0) : _mm512_setzero_pd();
            fl_tr8x8_f64(r);
            for (int c = 0; c < w; c++) _mm512_storeu_pd(xt + (c0 + c) * G + k0, r[c]);
        }
    }
}

static inline void fl_from_cols_tr8_f64(const double *xt, ptrdiff_t g, ptrdiff_t C, ptrdiff_t G, double *x)
{
    __m512d r[8];
    for (ptrdiff_t c0 = 0; c0 < C; c0 += 8) {
        const int w = C - c0 < 8 ? (int)(C - c0) : 8;
        const __mmask8 m = (__mmask8)((1u << w) - 1u);
        for (ptrdiff_t k0 = 0; k0 < g; k0 += 8) {
            for (int c = 0; c < 8; c++)
                r[c] = c < w ? _mm512_loadu_pd(xt + (c0 + c) * G + k0) : _mm512_setzero_pd();
            fl_tr8x8_f64(r);
            for (int k = 0; k < 8 && k0 + k < g; k++)
                _mm512_mask_storeu_pd(x + (k0 + k) * C + c0, m, r[k]);
        }
    }
}

#elif defined(__AVX2__)
#include <immintrin.h>
#define FL_HAVE_TR8 1

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

/* Lane mask with the first w (0..8) lanes on, for maskload/maskstore. */
static inline __m256i fl_mask8(int w)
{
    return _mm256_cmpgt_epi32(_mm256_set1_epi32(w), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
}

/* As fl_to_cols_tr16_f32, with 8 x 8 tiles (G a multiple of 8). */
static inline void fl_to_cols_tr8_f32(const float *x, ptrdiff_t g, ptrdiff_t C, ptrdiff_t G, float *xt)
{
    __m256 r[8];
    for (ptrdiff_t c0 = 0; c0 < C; c0 += 8) {
        const int w = C - c0 < 8 ? (int)(C - c0) : 8;
        const __m256i m = fl_mask8(w);
        for (ptrdiff_t k0 = 0; k0 < G; k0 += 8) {
            for (int k = 0; k < 8; k++)
                r[k] = k0 + k < g ? _mm256_maskload_ps(x + (k0 + k) * C + c0, m) : _mm256_setzero_ps();
            fl_tr8x8_f32(r);
            for (int c = 0; c < w; c++) _mm256_storeu_ps(xt + (c0 + c) * G + k0, r[c]);
        }
    }
}

static inline void fl_from_cols_tr8_f32(const float *xt, ptrdiff_t g, ptrdiff_t C, ptrdiff_t G, float *x)
{
    __m256 r[8];
    for (ptrdiff_t c0 = 0; c0 < C; c0 += 8) {
        const int w = C - c0 < 8 ? (int)(C - c0) : 8;
        const __m256i m = fl_mask8(w);
        for (ptrdiff_t k0 = 0; k0 < g; k0 += 8) {
            for (int c = 0; c < 8; c++)
                r[c] = c < w ? _mm256_loadu_ps(xt + (c0 + c) * G + k0) : _mm256_setzero_ps();
            fl_tr8x8_f32(r);
            for (int k = 0; k < 8 && k0 + k < g; k++)
                _mm256_maskstore_ps(x + (k0 + k) * C + c0, m, r[k]);
        }
    }
}
#endif
#endif
