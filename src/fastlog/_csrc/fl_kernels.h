/* fastlog's kernel interface: one table of function pointers per ISA level.
 *
 * fl_kernels.c (the row kernels of fl_rows_impl.h and the element-wise / MLP
 * kernels of fl_nn_impl.h, for float and double) is compiled once per x86-64
 * level by meson.build, each time with that level's flags and -DFL_ISA=<level>;
 * each object exports exactly one symbol, its table fl_ktab_<level>.  The one
 * Cython extension (fastlog._core) links all of them and picks a table at
 * import from the CPU's features (NumPy's / PyTorch's dispatch, in C).
 *
 * Adding a kernel: write it in an *_impl.h (once, for type T), add one line
 * to FL_KERNEL_LIST below and the matching field to fastlog/_kernels.pxd.
 * The table is filled from the same list, so the compiler checks every
 * pointer's type against this declaration.
 *
 * This header is also included by the Cython extension, which is compiled
 * with baseline flags: nothing here may be ISA-specific.
 */
#ifndef FL_KERNELS_H
#define FL_KERNELS_H

#include <stddef.h>
#include <stdint.h>

/* X(return type, name, parameter list) for a floating type T. */
#define FL_KERNEL_LIST(X, T)                                                                        \
    /* softmax family (fl_rows_impl.h) */                                                           \
    X(void, lse_rows, (const T *x, ptrdiff_t nrows, ptrdiff_t C, T *out))                           \
    X(void, lse_rows_d, (const T *x, ptrdiff_t nrows, ptrdiff_t C, double *out))                    \
    X(void, log_softmax_rows, (const T *x, ptrdiff_t nrows, ptrdiff_t C, T *out, int nanrow))       \
    X(void, softmax_rows, (const T *x, ptrdiff_t nrows, ptrdiff_t C, T *out))                       \
    X(void, log_softmax_backward_rows, (const T *go, const T *out, ptrdiff_t nrows, ptrdiff_t C,    \
                                        T *gi))                                                     \
    X(void, softmax_backward_rows, (const T *go, const T *out, ptrdiff_t nrows, ptrdiff_t C,        \
                                    T *gi))                                                         \
    /* losses (fl_rows_impl.h) */                                                                   \
    X(void, ce_index_rows, (const T *x, ptrdiff_t nrows, ptrdiff_t C, const int64_t *target,        \
                            const T *w, double W, int64_t ignore_index, double eps, double gscale,  \
                            double *loss, T *grad, int ign_nan))                                    \
    X(void, ce_prob_rows, (const T *x, ptrdiff_t nrows, ptrdiff_t C, const T *t, const T *w,        \
                           double eps, double gscale, double *loss, T *grad))                       \
    X(void, ce_grad_lse_rows, (const T *x, ptrdiff_t nrows, ptrdiff_t m, const double *lse,          \
                               const double *k, const double *s, const int64_t *ycol, const T *w,   \
                               double W, T *out))                                                   \
    X(double, bce_n, (const T *x, const T *y, const T *w, const T *pw, ptrdiff_t n,                 \
                      double gscale, T *loss, T *grad))                                             \
    /* the math, for tests (fl_rows_impl.h) */                                                      \
    X(void, exp_n, (const T *x, ptrdiff_t n, T *out))                                               \
    X(void, exp_nonpos_n, (const T *x, ptrdiff_t n, T *out))                                        \
    X(void, log_n, (const T *x, ptrdiff_t n, T *out))                                               \
    /* targets, NLL, fused linear + CE rows (fl_nn_impl.h) */                                       \
    X(ptrdiff_t, check_targets, (const int64_t *t, ptrdiff_t n, ptrdiff_t C, int64_t ignore_index,  \
                                 const T *w, double *wsum))                                         \
    X(void, nll_rows, (const T *x, ptrdiff_t n, ptrdiff_t C, const int64_t *t, const T *w,          \
                       int64_t ignore_index, double gscale, double *loss, T *grad))                 \
    X(void, lce_row, (T *row, ptrdiff_t V, const int64_t *t, const T *w, double W,                  \
                      int64_t ignore_index, double eps, double gs, double zscale, int want_grad,    \
                      int want_lse, double *loss, T *lse, T *scratch))                              \
    X(void, colsum_add, (const T *G, ptrdiff_t m, ptrdiff_t n, double *acc))                        \
    /* MLP epilogues, ReLU, SGD (fl_nn_impl.h) */                                                   \
    X(void, bias_act, (T *Y, const T *b, ptrdiff_t m, ptrdiff_t n, int relu))                       \
    X(void, colsum, (const T *G, ptrdiff_t m, ptrdiff_t n, double *acc))                            \
    X(void, mask_colsum, (const T *D, T *H, ptrdiff_t m, ptrdiff_t n, double *acc))                 \
    X(void, mask_colsum_to, (const T *G, const T *Y, T *out, ptrdiff_t m, ptrdiff_t n,             \
                             double *acc))                                                          \
    X(void, relu_fwd, (const T *x, T *y, ptrdiff_t n))                                              \
    X(void, relu_bwd, (const T *g, const T *y, T *gx, ptrdiff_t n))                                 \
    X(void, axpby_t, (T *C, const T *Tm, ptrdiff_t n_out, ptrdiff_t n_in, T alpha, T beta))         \
    X(void, momentum_finish, (T *V, T *W, ptrdiff_t n, double lr, double cwd))                      \
    X(void, bias_update, (T *b, T *gb, T *vb, const double *acc, ptrdiff_t n, int mode, double lr,  \
                          double mu, double damp, double wd, int first))

#define FL_KT_FIELD(ret, name, params) ret (*name) params;
typedef struct { FL_KERNEL_LIST(FL_KT_FIELD, float) } fl_kt_f32;
typedef struct { FL_KERNEL_LIST(FL_KT_FIELD, double) } fl_kt_f64;
#undef FL_KT_FIELD

/* bfloat16 / float16 (fl_half.h): the float32 kernels run on float32
 * copies of blocks of rows, outputs rounded once.  One driver for every op. */
#define FL_KIND_BF16 0
#define FL_KIND_F16 1
enum {
    FL_H_LOG_SOFTMAX = 0, FL_H_SOFTMAX = 1, FL_H_LSE = 2,
    FL_H_LOG_SOFTMAX_BWD = 3, FL_H_SOFTMAX_BWD = 4,
    FL_H_CE_INDEX = 5, FL_H_CE_PROB = 6, FL_H_BCE = 7
};

/* Everything one half-precision call needs; rows are `C` long (BCE: C = 1,
 * element-wise).  Arrays point at row 0 of the whole call. */
typedef struct {
    int kind, op;            /* FL_KIND_*, FL_H_* */
    ptrdiff_t C;
    const uint16_t *x;       /* logits / grad_output (backward) */
    const uint16_t *y;       /* softmax output (backward), probability / BCE target */
    uint16_t *out;           /* output, gradient (NULL: none) */
    uint16_t *out2;          /* BCE: per-element losses (NULL: none) */
    const int64_t *target;   /* CE class indices */
    const float *w;          /* CE: C class weights; BCE: per-element weights (or NULL) */
    const float *pw;         /* BCE: per-element pos_weight (or NULL) */
    double W, eps, gscale;
    int64_t ignore_index;
    int flag;                /* CE: ignored rows NaN where they have no log-softmax;
                              * log_softmax: NaN rows where the max is not finite */
    double *loss;            /* CE: per-row losses (double) */
    int stream;              /* 1: write outputs with streaming stores (larger than the caches) */
    ptrdiff_t nrows;         /* rows in the whole call (a chunk may prefetch the rows after it) */
} fl_half_args;

/* Scratch floats the half driver needs for m rows of C. */
static inline ptrdiff_t fl_half_scratch(ptrdiff_t m, ptrdiff_t C)
{
    return 2 * m * (C > 0 ? C : 1) + m + 16;
}

typedef struct {
    void (*h2f_n)(int kind, const uint16_t *s, ptrdiff_t n, float *d);
    void (*f2h_n)(int kind, const float *s, ptrdiff_t n, uint16_t *d);
    /* rows [r0, r0 + m) of the call `a` through the float32 scratch `s`;
     * returns the BCE chunk sum (0 otherwise) */
    double (*rows)(const fl_half_args *a, ptrdiff_t r0, ptrdiff_t m, float *s);
} fl_kt_half;

typedef struct {
    const char *isa;   /* "baseline", "avx2", "avx512" */
    fl_kt_f32 f32;
    fl_kt_f64 f64;
    fl_kt_half half;
} fl_ktab;

/* One table per level compiled in (meson.build defines FL_HAVE_<LEVEL>). */
extern const fl_ktab fl_ktab_baseline;
#ifdef FL_HAVE_AVX2
extern const fl_ktab fl_ktab_avx2;
#endif
#ifdef FL_HAVE_AVX512
extern const fl_ktab fl_ktab_avx512;
#endif

/* Level index 0 baseline, 1 avx2, 2 avx512 -> its table, NULL if not built. */
static inline const fl_ktab *fl_ktab_for(int level)
{
    switch (level) {
    case 0: return &fl_ktab_baseline;
#ifdef FL_HAVE_AVX2
    case 1: return &fl_ktab_avx2;
#endif
#ifdef FL_HAVE_AVX512
    case 2: return &fl_ktab_avx512;
#endif
    default: return NULL;
    }
}

/* CPU features, for choosing the table at import time. */
static inline int fl_cpu_has_avx2_fma(void)
{
#if defined(__GNUC__) && (defined(__x86_64__) || defined(__i386__))
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") &&
           __builtin_cpu_supports("bmi2") && __builtin_cpu_supports("f16c");
#else
    return 0;
#endif
}

static inline int fl_cpu_has_avx512(void)
{
#if defined(__GNUC__) && (defined(__x86_64__) || defined(__i386__))
    __builtin_cpu_init();
    return fl_cpu_has_avx2_fma() && __builtin_cpu_supports("avx512f") &&
           __builtin_cpu_supports("avx512dq") && __builtin_cpu_supports("avx512bw") &&
           __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512cd");
#else
    return 0;
#endif
}

/* OpenMP: the extension's threads (Cython prange).  The kernels themselves
 * use only `omp simd`. */
#ifdef _OPENMP
#include <omp.h>
#define FL_OPENMP 1
#else
#define FL_OPENMP 0
static inline int omp_get_max_threads(void) { return 1; }
static inline int omp_get_num_procs(void) { return 1; }
static inline int omp_get_thread_num(void) { return 0; }
#endif

#endif
