# The C kernel interface (src/fastlog/_csrc/fl_kernels.h): one table of
# function pointers per ISA level, chosen once at import (fastlog._core.select).
# Keep these fields in the order and with the types of FL_KERNEL_LIST; the C
# compiler checks every call the generated code makes against the real header.
from libc.stdint cimport int64_t, uint16_t

cdef extern from "fl_kernels.h" nogil:
    ctypedef struct fl_kt_f32:
        void (*lse_rows)(const float *x, Py_ssize_t nrows, Py_ssize_t C, float *out) noexcept nogil
        void (*lse_rows_d)(const float *x, Py_ssize_t nrows, Py_ssize_t C, double *out) noexcept nogil
        void (*log_softmax_rows)(const float *x, Py_ssize_t nrows, Py_ssize_t C, float *out, int nanrow) noexcept nogil
        void (*softmax_rows)(const float *x, Py_ssize_t nrows, Py_ssize_t C, float *out) noexcept nogil
        void (*log_softmax_backward_rows)(const float *go, const float *out, Py_ssize_t nrows, Py_ssize_t C, float *gi) noexcept nogil
        void (*softmax_backward_rows)(const float *go, const float *out, Py_ssize_t nrows, Py_ssize_t C, float *gi) noexcept nogil
        void (*ce_index_rows)(const float *x, Py_ssize_t nrows, Py_ssize_t C, const int64_t *target, const float *w, double W, int64_t ignore_index, double eps, double gscale, double *loss, float *grad, int ign_nan) noexcept nogil
        void (*ce_prob_rows)(const float *x, Py_ssize_t nrows, Py_ssize_t C, const float *t, const float *w, double eps, double gscale, double *loss, float *grad) noexcept nogil
        void (*ce_grad_lse_rows)(const float *x, Py_ssize_t nrows, Py_ssize_t m, const double *lse, const double *k, const double *s, const int64_t *ycol, const float *w, double W, float *out) noexcept nogil
        double (*bce_n)(const float *x, const float *y, const float *w, const float *pw, Py_ssize_t n, double gscale, float *loss, float *grad) noexcept nogil
        void (*exp_n)(const float *x, Py_ssize_t n, float *out) noexcept nogil
        void (*exp_nonpos_n)(const float *x, Py_ssize_t n, float *out) noexcept nogil
        void (*log_n)(const float *x, Py_ssize_t n, float *out) noexcept nogil
        Py_ssize_t (*check_targets)(const int64_t *t, Py_ssize_t n, Py_ssize_t C, int64_t ignore_index, const float *w, double *wsum) noexcept nogil
        void (*nll_rows)(const float *x, Py_ssize_t n, Py_ssize_t C, const int64_t *t, const float *w, int64_t ignore_index, double gscale, double *loss, float *grad) noexcept nogil
        void (*lce_row)(float *row, Py_ssize_t V, const int64_t *t, const float *w, double W, int64_t ignore_index, double eps, double gs, double zscale, int want_grad, int want_lse, double *loss, float *lse, float *scratch) noexcept nogil
        void (*colsum_add)(const float *G, Py_ssize_t m, Py_ssize_t n, double *acc) noexcept nogil
        void (*bias_act)(float *Y, const float *b, Py_ssize_t m, Py_ssize_t n, int relu) noexcept nogil
        void (*colsum)(const float *G, Py_ssize_t m, Py_ssize_t n, double *acc) noexcept nogil
        void (*mask_colsum)(const float *D, float *H, Py_ssize_t m, Py_ssize_t n, double *acc) noexcept nogil
        void (*mask_colsum_to)(const float *G, const float *Y, float *out, Py_ssize_t m, Py_ssize_t n, double *acc) noexcept nogil
        void (*relu_fwd)(const float *x, float *y, Py_ssize_t n) noexcept nogil
        void (*relu_bwd)(const float *g, const float *y, float *gx, Py_ssize_t n) noexcept nogil
        void (*axpby_t)(float *C, const float *Tm, Py_ssize_t n_out, Py_ssize_t n_in, float alpha, float beta) noexcept nogil
        void (*momentum_finish)(float *V, float *W, Py_ssize_t n, double lr, double cwd) noexcept nogil
        void (*bias_update)(float *b, float *gb, float *vb, const double *acc, Py_ssize_t n, int mode, double lr, double mu, double damp, double wd, int first) noexcept nogil
    ctypedef struct fl_kt_f64:
        void (*lse_rows)(const double *x, Py_ssize_t nrows, Py_ssize_t C, double *out) noexcept nogil
        void (*lse_rows_d)(const double *x, Py_ssize_t nrows, Py_ssize_t C, double *out) noexcept nogil
        void (*log_softmax_rows)(const double *x, Py_ssize_t nrows, Py_ssize_t C, double *out, int nanrow) noexcept nogil
        void (*softmax_rows)(const double *x, Py_ssize_t nrows, Py_ssize_t C, double *out) noexcept nogil
        void (*log_softmax_backward_rows)(const double *go, const double *out, Py_ssize_t nrows, Py_ssize_t C, double *gi) noexcept nogil
        void (*softmax_backward_rows)(const double *go, const double *out, Py_ssize_t nrows, Py_ssize_t C, double *gi) noexcept nogil
        void (*ce_index_rows)(const double *x, Py_ssize_t nrows, Py_ssize_t C, const int64_t *target, const double *w, double W, int64_t ignore_index, double eps, double gscale, double *loss, double *grad, int ign_nan) noexcept nogil
        void (*ce_prob_rows)(const double *x, Py_ssize_t nrows, Py_ssize_t C, const double *t, const double *w, double eps, double gscale, double *loss, double *grad) noexcept nogil
        void (*ce_grad_lse_rows)(const double *x, Py_ssize_t nrows, Py_ssize_t m, const double *lse, const double *k, const double *s, const int64_t *ycol, const double *w, double W, double *out) noexcept nogil
        double (*bce_n)(const double *x, const double *y, const double *w, const double *pw, Py_ssize_t n, double gscale, double *loss, double *grad) noexcept nogil
        void (*exp_n)(const double *x, Py_ssize_t n, double *out) noexcept nogil
        void (*exp_nonpos_n)(const double *x, Py_ssize_t n, double *out) noexcept nogil
        void (*log_n)(const double *x, Py_ssize_t n, double *out) noexcept nogil
        Py_ssize_t (*check_targets)(const int64_t *t, Py_ssize_t n, Py_ssize_t C, int64_t ignore_index, const double *w, double *wsum) noexcept nogil
        void (*nll_rows)(const double *x, Py_ssize_t n, Py_ssize_t C, const int64_t *t, const double *w, int64_t ignore_index, double gscale, double *loss, double *grad) noexcept nogil
        void (*lce_row)(double *row, Py_ssize_t V, const int64_t *t, const double *w, double W, int64_t ignore_index, double eps, double gs, double zscale, int want_grad, int want_lse, double *loss, double *lse, double *scratch) noexcept nogil
        void (*colsum_add)(const double *G, Py_ssize_t m, Py_ssize_t n, double *acc) noexcept nogil
        void (*bias_act)(double *Y, const double *b, Py_ssize_t m, Py_ssize_t n, int relu) noexcept nogil
        void (*colsum)(const double *G, Py_ssize_t m, Py_ssize_t n, double *acc) noexcept nogil
        void (*mask_colsum)(const double *D, double *H, Py_ssize_t m, Py_ssize_t n, double *acc) noexcept nogil
        void (*mask_colsum_to)(const double *G, const double *Y, double *out, Py_ssize_t m, Py_ssize_t n, double *acc) noexcept nogil
        void (*relu_fwd)(const double *x, double *y, Py_ssize_t n) noexcept nogil
        void (*relu_bwd)(const double *g, const double *y, double *gx, Py_ssize_t n) noexcept nogil
        void (*axpby_t)(double *C, const double *Tm, Py_ssize_t n_out, Py_ssize_t n_in, double alpha, double beta) noexcept nogil
        void (*momentum_finish)(double *V, double *W, Py_ssize_t n, double lr, double cwd) noexcept nogil
        void (*bias_update)(double *b, double *gb, double *vb, const double *acc, Py_ssize_t n, int mode, double lr, double mu, double damp, double wd, int first) noexcept nogil
    # bfloat16 / float16 (fl_half.h; _half.pxi)
    int FL_KIND_BF16
    int FL_KIND_F16
    int FL_H_LOG_SOFTMAX, FL_H_SOFTMAX, FL_H_LSE, FL_H_LOG_SOFTMAX_BWD, FL_H_SOFTMAX_BWD
    int FL_H_CE_INDEX, FL_H_CE_PROB, FL_H_BCE
    ctypedef struct fl_half_args:
        int kind, op
        Py_ssize_t C
        const uint16_t *x
        const uint16_t *y
        uint16_t *out
        uint16_t *out2
        const int64_t *target
        const float *w
        const float *pw
        double W, eps, gscale
        int64_t ignore_index
        int flag
        double *loss
        int stream
        Py_ssize_t nrows
    Py_ssize_t fl_half_scratch(Py_ssize_t m, Py_ssize_t C)
    ctypedef struct fl_kt_half:
        void (*h2f_n)(int kind, const uint16_t *s, Py_ssize_t n, float *d) noexcept nogil
        void (*f2h_n)(int kind, const float *s, Py_ssize_t n, uint16_t *d) noexcept nogil
        double (*rows)(const fl_half_args *a, Py_ssize_t r0, Py_ssize_t m, float *s) noexcept nogil
    ctypedef struct fl_ktab:
        const char *isa
        fl_kt_f32 f32
        fl_kt_f64 f64
        fl_kt_half half

    const fl_ktab *fl_ktab_for(int level)
    int fl_cpu_has_avx2_fma()
    int fl_cpu_has_avx512()
    int FL_OPENMP
    int omp_get_max_threads()
    int omp_get_num_procs()
    int omp_get_thread_num()
