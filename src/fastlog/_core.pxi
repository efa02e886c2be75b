# fastlog compiled core: typed nogil loops over rows, threads, reductions.
#
# This file is `include`d by _core_baseline.pyx, _core_avx2.pyx and
# _core_avx512.pyx, which setup.py compiles with different -m flags; the math
# itself lives in the C headers of _csrc/ (static inline, so every ISA build
# has its own copy).  fastlog._dispatch imports exactly one of them.
#
# Contract with the Python layer (fastlog/_softmax.py, fastlog/_losses.py):
# arrays arrive validated, C-contiguous, of one floating dtype (float32 or
# float64), 2-D (rows x classes) unless said otherwise, targets as int64.
# Nothing here raises user-facing errors; bad targets are reported back as a
# row index and the wrapper raises.
#
# Threads: rows are cut into fixed chunks (_chunk_rows depends only on C) and
# the chunks are spread over threads with a static prange.  Per-row results
# never depend on the chunking, and reductions over rows are done afterwards
# in row order, so results are bit-identical for any thread count.

cimport numpy as cnp
from cython.parallel cimport prange
from libc.stdint cimport int64_t
from libc.string cimport memset
from libc.stdlib cimport malloc, free
from libc.math cimport NAN

cnp.import_array()

cdef extern from "fl_kernels.h" nogil:
    const char *FL_ISA_NAME
    int FL_OPENMP
    int omp_get_max_threads()
    int omp_get_num_procs()
    int fl_cpu_has_avx2_fma()
    int fl_cpu_has_avx512()

    void fl_lse_rows_f32(const float *x, Py_ssize_t nrows, Py_ssize_t C, float *out)
    void fl_lse_rows_f64(const double *x, Py_ssize_t nrows, Py_ssize_t C, double *out)
    void fl_log_softmax_rows_f32(const float *x, Py_ssize_t nrows, Py_ssize_t C, float *out)
    void fl_log_softmax_rows_f64(const double *x, Py_ssize_t nrows, Py_ssize_t C, double *out)
    void fl_softmax_rows_f32(const float *x, Py_ssize_t nrows, Py_ssize_t C, float *out)
    void fl_softmax_rows_f64(const double *x, Py_ssize_t nrows, Py_ssize_t C, double *out)
    void fl_log_softmax_backward_rows_f32(const float *go, const float *out, Py_ssize_t nrows,
                                          Py_ssize_t C, float *gi)
    void fl_log_softmax_backward_rows_f64(const double *go, const double *out, Py_ssize_t nrows,
                                          Py_ssize_t C, double *gi)
    void fl_softmax_backward_rows_f32(const float *go, const float *out, Py_ssize_t nrows,
                                      Py_ssize_t C, float *gi)
    void fl_softmax_backward_rows_f64(const double *go, const double *out, Py_ssize_t nrows,
                                      Py_ssize_t C, double *gi)
    void fl_ce_index_rows_f32(const float *x, Py_ssize_t nrows, Py_ssize_t C,
                              const int64_t *target, const float *w, double W,
                              int64_t ignore_index, double eps, double gscale,
                              double *loss, float *grad)
    void fl_ce_index_rows_f64(const double *x, Py_ssize_t nrows, Py_ssize_t C,
                              const int64_t *target, const double *w, double W,
                              int64_t ignore_index, double eps, double gscale,
                              double *loss, double *grad)
    void fl_ce_prob_rows_f32(const float *x, Py_ssize_t nrows, Py_ssize_t C, const float *t,
                             const float *w, double eps, double gscale, double *loss, float *grad)
    void fl_ce_prob_rows_f64(const double *x, Py_ssize_t nrows, Py_ssize_t C, const double *t,
                             const double *w, double eps, double gscale, double *loss, double *grad)
    double fl_bce_n_f32(const float *x, const float *y, const float *w, const float *pw, Py_ssize_t n,
                        double gscale, float *loss, float *grad)
    double fl_bce_n_f64(const double *x, const double *y, const double *w, const double *pw,
                        Py_ssize_t n, double gscale, double *loss, double *grad)
    void fl_exp_n_f32(const float *x, Py_ssize_t n, float *out)
    void fl_exp_n_f64(const double *x, Py_ssize_t n, double *out)
    void fl_exp_nonpos_n_f32(const float *x, Py_ssize_t n, float *out)
    void fl_exp_nonpos_n_f64(const double *x, Py_ssize_t n, double *out)
    void fl_log_n_f32(const float *x, Py_ssize_t n, float *out)
    void fl_log_n_f64(const double *x, Py_ssize_t n, double *out)

ctypedef fused real:
    float
    double

# ------------------------------------------------------------------ config --
ISA = FL_ISA_NAME.decode()
OPENMP = bool(FL_OPENMP)

cdef int _n_threads = 1
# Below this many elements a call stays on one thread (thread start-up costs
# more than it saves).
cdef Py_ssize_t PAR_MIN_ELEMS = 1 << 16
# Work unit: ~32K elements (128 KB of float32) per chunk, whole rows.
cdef Py_ssize_t CHUNK_ELEMS = 1 << 15


def cpu_has_avx2_fma():
    return bool(fl_cpu_has_avx2_fma())


def cpu_has_avx512():
    return bool(fl_cpu_has_avx512())


def max_threads():
    """What OpenMP would use by default (1 without OpenMP)."""
    return omp_get_max_threads()


def set_threads(int n):
    global _n_threads
    _n_threads = n if n > 0 else 1


def get_threads():
    return _n_threads


cdef inline Py_ssize_t _chunk_rows(Py_ssize_t C) noexcept nogil:
    if C <= 0:
        return CHUNK_ELEMS
    if C >= CHUNK_ELEMS:
        return 1
    return CHUNK_ELEMS // C


cdef inline int _threads_for(Py_ssize_t nrows, Py_ssize_t C) noexcept nogil:
    cdef Py_ssize_t nch
    if _n_threads <= 1 or nrows * C < PAR_MIN_ELEMS:
        return 1
    nch = (nrows + _chunk_rows(C) - 1) // _chunk_rows(C)
    if nch < 2:
        return 1
    return <int>(nch if nch < _n_threads else _n_threads)


cdef inline bint _is_f32(cnp.ndarray a):
    return cnp.PyArray_TYPE(a) == cnp.NPY_FLOAT32


# ------------------------------------------------------ unary row kernels --
# op: 0 = log_softmax, 1 = softmax, 2 = logsumexp (out has one value per row)
cdef void _unary_block(int op, const real *x, Py_ssize_t n, Py_ssize_t C, real *out) noexcept nogil:
    if real is float:
        if op == 0:
            fl_log_softmax_rows_f32(x, n, C, out)
        elif op == 1:
            fl_softmax_rows_f32(x, n, C, out)
        else:
            fl_lse_rows_f32(x, n, C, out)
    else:
        if op == 0:
            fl_log_softmax_rows_f64(x, n, C, out)
        elif op == 1:
            fl_softmax_rows_f64(x, n, C, out)
        else:
            fl_lse_rows_f64(x, n, C, out)


cdef void _unary_run(int op, const real *x, Py_ssize_t n, Py_ssize_t C, real *out) noexcept nogil:
    cdef Py_ssize_t cr = _chunk_rows(C), nch = (n + cr - 1) // cr, k, r0, ostride
    cdef int nt = _threads_for(n, C)
    ostride = 1 if op == 2 else C
    if nt == 1:
        _unary_block(op, x, n, C, out)
        return
    for k in prange(nch, num_threads=nt, schedule='static'):
        r0 = k * cr
        _unary_block(op, x + r0 * C, (cr if r0 + cr <= n else n - r0), C, out + r0 * ostride)


def unary_rows(int op, cnp.ndarray x, cnp.ndarray out, Py_ssize_t C=-1):
    """op 0/1/2 = log_softmax/softmax/logsumexp over the rows of `x` into `out`.

    x is C-contiguous; rows have length C (default: the last dimension of a
    2-D x), so an N-d array reduced over trailing axes needs no reshape."""
    cdef Py_ssize_t n
    if cnp.PyArray_ITEMSIZE(x) == 2:   # bfloat16 / float16: _half.pxi
        return half_unary_rows(op, x, out, C)
    if C < 0:
        C = cnp.PyArray_DIM(x, 1)
    n = cnp.PyArray_SIZE(x) // C if C > 0 else cnp.PyArray_DIM(x, 0)
    if _is_f32(x):
        with nogil:
            _unary_run[float](op, <const float *>cnp.PyArray_DATA(x), n, C, <float *>cnp.PyArray_DATA(out))
    else:
        with nogil:
            _unary_run[double](op, <const double *>cnp.PyArray_DATA(x), n, C, <double *>cnp.PyArray_DATA(out))


# ------------------------------------------------------- backward kernels --
cdef void _backward_block(int op, const real *go, const real *y, Py_ssize_t n, Py_ssize_t C,
                          real *gi) noexcept nogil:
    if real is float:
        if op == 0:
            fl_log_softmax_backward_rows_f32(go, y, n, C, gi)
        else:
            fl_softmax_backward_rows_f32(go, y, n, C, gi)
    else:
        if op == 0:
            fl_log_softmax_backward_rows_f64(go, y, n, C, gi)
        else:
            fl_softmax_backward_rows_f64(go, y, n, C, gi)


cdef void _backward_run(int op, const real *go, const real *y, Py_ssize_t n, Py_ssize_t C,
                        real *gi) noexcept nogil:
    cdef Py_ssize_t cr = _chunk_rows(C), nch = (n + cr - 1) // cr, k, r0
    cdef int nt = _threads_for(n, C)
    if nt == 1:
        _backward_block(op, go, y, n, C, gi)
        return
    for k in prange(nch, num_threads=nt, schedule='static'):
        r0 = k * cr
        _backward_block(op, go + r0 * C, y + r0 * C, (cr if r0 + cr <= n else n - r0), C, gi + r0 * C)


def backward_rows(int op, cnp.ndarray grad_output, cnp.ndarray output, cnp.ndarray grad_input):
    """op 0/1 = log_softmax/softmax backward over rows."""
    cdef Py_ssize_t n = cnp.PyArray_DIM(output, 0), C = cnp.PyArray_DIM(output, 1)
    if cnp.PyArray_ITEMSIZE(output) == 2:
        return half_backward_rows(op, grad_output, output, grad_input)
    if _is_f32(output):
        with nogil:
            _backward_run[float](op, <const float *>cnp.PyArray_DATA(grad_output),
                                 <const float *>cnp.PyArray_DATA(output), n, C,
                                 <float *>cnp.PyArray_DATA(grad_input))
    else:
        with nogil:
            _backward_run[double](op, <const double *>cnp.PyArray_DATA(grad_output),
                                  <const double *>cnp.PyArray_DATA(output), n, C,
                                  <double *>cnp.PyArray_DATA(grad_input))


# ---------------------------------------------------------- target checks --
cdef Py_ssize_t _check_targets(const int64_t *t, Py_ssize_t n, Py_ssize_t C, int64_t ignore_index,
                               const real *w, double *wsum) noexcept nogil:
    """Range-check class-index targets; sum w[t] over the rows not ignored
    (their count when w is NULL).  Returns the first bad row, or -1."""
    cdef Py_ssize_t i, cnt = 0
    cdef int64_t y
    cdef double s[4]
    s[0] = s[1] = s[2] = s[3] = 0.0
    for i in range(n):
        y = t[i]
        if y == ignore_index:
            continue
        if y < 0 or y >= C:
            return i
        if w != NULL:
            s[i & 3] += w[y]
        else:
            cnt += 1
    wsum[0] = ((s[0] + s[1]) + (s[2] + s[3])) if w != NULL else <double>cnt
    return -1


cdef double _sum_rows(const double *v, Py_ssize_t n) noexcept nogil:
    """Sum in a fixed order (4 interleaved partial sums, then combined), so
    the total does not depend on the thread count and is not one long chain
    of dependent additions."""
    cdef double s0 = 0.0, s1 = 0.0, s2 = 0.0, s3 = 0.0
    cdef Py_ssize_t i, n4 = n - n % 4
    for i in range(0, n4, 4):
        s0 += v[i]
        s1 += v[i + 1]
        s2 += v[i + 2]
        s3 += v[i + 3]
    for i in range(n4, n):
        s0 += v[i]
    return (s0 + s1) + (s2 + s3)


# --------------------------------------------- cross-entropy, index targets --
cdef void _ce_index_run(const real *x, Py_ssize_t n, Py_ssize_t C, const int64_t *t, const real *w,
                        double W, int64_t ignore_index, double eps, double gscale, double *loss,
                        real *grad) noexcept nogil:
    cdef Py_ssize_t cr = _chunk_rows(C), nch = (n + cr - 1) // cr, k, r0, m
    cdef int nt = _threads_for(n, C)
    if nt == 1:
        if real is float:
            fl_ce_index_rows_f32(x, n, C, t, w, W, ignore_index, eps, gscale, loss, grad)
        else:
            fl_ce_index_rows_f64(x, n, C, t, w, W, ignore_index, eps, gscale, loss, grad)
        return
    for k in prange(nch, num_threads=nt, schedule='static'):
        r0 = k * cr
        m = cr if r0 + cr <= n else n - r0
        if real is float:
            fl_ce_index_rows_f32(x + r0 * C, m, C, t + r0, w, W, ignore_index, eps, gscale,
                                 loss + r0, (grad + r0 * C) if grad != NULL else NULL)
        else:
            fl_ce_index_rows_f64(x + r0 * C, m, C, t + r0, w, W, ignore_index, eps, gscale,
                                 loss + r0, (grad + r0 * C) if grad != NULL else NULL)


def ce_index(cnp.ndarray x, cnp.ndarray target, object weight, long long ignore_index,
             double eps, int reduction, object grad, cnp.ndarray loss):
    """Cross-entropy with int64 class targets over the rows of 2-D `x`.

    reduction: 0 none, 1 mean, 2 sum (sets the gradient's scale).
    loss: float64 (n,) OUT, per-row losses.  grad: None or OUT array like x
    (may be x itself).  Returns (bad_row, weight_sum, loss_sum); bad_row >= 0
    means target[bad_row] is out of range and nothing else was computed.
    """
    cdef Py_ssize_t n = cnp.PyArray_DIM(x, 0), C = cnp.PyArray_DIM(x, 1), bad, j
    cdef double wsum = 0.0, W = <double>C, gscale, total
    cdef const int64_t *t = <const int64_t *>cnp.PyArray_DATA(target)
    cdef double *lp = <double *>cnp.PyArray_DATA(loss)
    cdef void *wp = NULL
    cdef void *gp = NULL
    cdef cnp.ndarray warr
    if cnp.PyArray_ITEMSIZE(x) == 2:
        return half_ce_index(x, target, weight, ignore_index, eps, reduction, grad, loss)
    if weight is not None:
        warr = <cnp.ndarray>weight
        wp = cnp.PyArray_DATA(warr)
    if grad is not None:
        gp = cnp.PyArray_DATA(<cnp.ndarray>grad)
    if _is_f32(x):
        with nogil:
            bad = _check_targets[float](t, n, C, ignore_index, <const float *>wp, &wsum)
            if bad < 0:
                if wp != NULL:
                    W = 0.0
                    for j in range(C):
                        W += (<const float *>wp)[j]
                gscale = (1.0 / wsum) if reduction == 1 else 1.0
                _ce_index_run[float](<const float *>cnp.PyArray_DATA(x), n, C, t, <const float *>wp, W,
                                     ignore_index, eps, gscale, lp, <float *>gp)
                total = _sum_rows(lp, n)
    else:
        with nogil:
            bad = _check_targets[double](t, n, C, ignore_index, <const double *>wp, &wsum)
            if bad < 0:
                if wp != NULL:
                    W = 0.0
                    for j in range(C):
                        W += (<const double *>wp)[j]
                gscale = (1.0 / wsum) if reduction == 1 else 1.0
                _ce_index_run[double](<const double *>cnp.PyArray_DATA(x), n, C, t, <const double *>wp, W,
                                      ignore_index, eps, gscale, lp, <double *>gp)
                total = _sum_rows(lp, n)
    if bad >= 0:
        return bad, 0.0, 0.0
    return -1, wsum, total


# ---------------------------------------- cross-entropy, probability targets --
cdef void _ce_prob_run(const real *x, Py_ssize_t n, Py_ssize_t C, const real *t, const real *w,
                       double eps, double gscale, double *loss, real *grad) noexcept nogil:
    cdef Py_ssize_t cr = _chunk_rows(C), nch = (n + cr - 1) // cr, k, r0, m
    cdef int nt = _threads_for(n, C)
    if nt == 1:
        if real is float:
            fl_ce_prob_rows_f32(x, n, C, t, w, eps, gscale, loss, grad)
        else:
            fl_ce_prob_rows_f64(x, n, C, t, w, eps, gscale, loss, grad)
        return
    for k in prange(nch, num_threads=nt, schedule='static'):
        r0 = k * cr
        m = cr if r0 + cr <= n else n - r0
        if real is float:
            fl_ce_prob_rows_f32(x + r0 * C, m, C, t + r0 * C, w, eps, gscale, loss + r0,
                                (grad + r0 * C) if grad != NULL else NULL)
        else:
            fl_ce_prob_rows_f64(x + r0 * C, m, C, t + r0 * C, w, eps, gscale, loss + r0,
                                (grad + r0 * C) if grad != NULL else NULL)


def ce_prob(cnp.ndarray x, cnp.ndarray target, object weight, double eps, double gscale,
            object grad, cnp.ndarray loss):
    """Cross-entropy with class-probability targets (same shape and dtype as x).
    Returns the sum of the per-row losses (written to `loss`)."""
    cdef Py_ssize_t n = cnp.PyArray_DIM(x, 0), C = cnp.PyArray_DIM(x, 1)
    cdef double *lp = <double *>cnp.PyArray_DATA(loss)
    cdef void *wp = NULL
    cdef void *gp = NULL
    cdef double total
    if cnp.PyArray_ITEMSIZE(x) == 2:
        return half_ce_prob(x, target, weight, eps, gscale, grad, loss)
    if weight is not None:
        wp = cnp.PyArray_DATA(<cnp.ndarray>weight)
    if grad is not None:
        gp = cnp.PyArray_DATA(<cnp.ndarray>grad)
    if _is_f32(x):
        with nogil:
            _ce_prob_run[float](<const float *>cnp.PyArray_DATA(x), n, C,
                                <const float *>cnp.PyArray_DATA(target), <const float *>wp,
                                eps, gscale, lp, <float *>gp)
            total = _sum_rows(lp, n)
    else:
        with nogil:
            _ce_prob_run[double](<const double *>cnp.PyArray_DATA(x), n, C,
                                 <const double *>cnp.PyArray_DATA(target), <const double *>wp,
                                 eps, gscale, lp, <double *>gp)
            total = _sum_rows(lp, n)
    return total


# -------------------------------------------------------------------- NLL --
cdef void _nll_run(const real *x, Py_ssize_t n, Py_ssize_t C, const int64_t *t, const real *w,
                   int64_t ignore_index, double gscale, double *loss, real *grad) noexcept nogil:
    cdef Py_ssize_t i
    cdef int64_t y
    cdef double wy
    for i in range(n):
        y = t[i]
        if y == ignore_index:
            loss[i] = 0.0
            if grad != NULL:
                memset(grad + i * C, 0, C * sizeof(real))
            continue
        wy = w[y] if w != NULL else 1.0
        # Read x before clearing the gradient row: grad may alias x (out=input).
        loss[i] = -wy * x[i * C + y]
        if grad != NULL:
            memset(grad + i * C, 0, C * sizeof(real))
            grad[i * C + y] = <real>(-gscale * wy)


def nll(cnp.ndarray x, cnp.ndarray target, object weight, long long ignore_index, int reduction,
        object grad, cnp.ndarray loss):
    """NLL over the rows of 2-D log-probabilities `x`; same contract as ce_index."""
    cdef Py_ssize_t n = cnp.PyArray_DIM(x, 0), C = cnp.PyArray_DIM(x, 1), bad
    cdef double wsum = 0.0, gscale, total = 0.0
    cdef const int64_t *t = <const int64_t *>cnp.PyArray_DATA(target)
    cdef double *lp = <double *>cnp.PyArray_DATA(loss)
    cdef void *wp = NULL
    cdef void *gp = NULL
    if cnp.PyArray_ITEMSIZE(x) == 2:
        return half_nll(x, target, weight, ignore_index, reduction, grad, loss)
    if weight is not None:
        wp = cnp.PyArray_DATA(<cnp.ndarray>weight)
    if grad is not None:
        gp = cnp.PyArray_DATA(<cnp.ndarray>grad)
    if _is_f32(x):
        with nogil:
            bad = _check_targets[float](t, n, C, ignore_index, <const float *>wp, &wsum)
            if bad < 0:
                gscale = (1.0 / wsum) if reduction == 1 else 1.0
                _nll_run[float](<const float *>cnp.PyArray_DATA(x), n, C, t, <const float *>wp,
                                ignore_index, gscale, lp, <float *>gp)
                total = _sum_rows(lp, n)
    else:
        with nogil:
            bad = _check_targets[double](t, n, C, ignore_index, <const double *>wp, &wsum)
            if bad < 0:
                gscale = (1.0 / wsum) if reduction == 1 else 1.0
                _nll_run[double](<const double *>cnp.PyArray_DATA(x), n, C, t, <const double *>wp,
                                 ignore_index, gscale, lp, <double *>gp)
                total = _sum_rows(lp, n)
    if bad >= 0:
        return bad, 0.0, 0.0
    return -1, wsum, total


# ---------------------------------------------------- BCE with logits -------
cdef double _bce_run(const real *x, const real *y, const real *w, const real *pw, Py_ssize_t n,
                     double gscale, real *loss, real *grad) noexcept nogil:
    """fl_bce_n over fixed chunks of CHUNK_ELEMS elements, threads over chunks;
    chunk sums added in chunk order (thread-count independent)."""
    cdef Py_ssize_t nch = (n + CHUNK_ELEMS - 1) // CHUNK_ELEMS, k, j0, m
    cdef int nt = _n_threads if (n >= PAR_MIN_ELEMS and nch > 1) else 1
    cdef double total = 0.0
    cdef double *part
    if nt > nch:
        nt = <int>nch
    if nt == 1:
        if real is float:
            return fl_bce_n_f32(x, y, w, pw, n, gscale, loss, grad)
        else:
            return fl_bce_n_f64(x, y, w, pw, n, gscale, loss, grad)
    part = <double *>malloc(nch * sizeof(double))
    if part == NULL:
        return NAN
    for k in prange(nch, num_threads=nt, schedule='static'):
        j0 = k * CHUNK_ELEMS
        m = CHUNK_ELEMS if j0 + CHUNK_ELEMS <= n else n - j0
        if real is float:
            part[k] = fl_bce_n_f32(x + j0, y + j0, (w + j0) if w != NULL else NULL,
                                   (pw + j0) if pw != NULL else NULL, m, gscale,
                                   (loss + j0) if loss != NULL else NULL,
                                   (grad + j0) if grad != NULL else NULL)
        else:
            part[k] = fl_bce_n_f64(x + j0, y + j0, (w + j0) if w != NULL else NULL,
                                   (pw + j0) if pw != NULL else NULL, m, gscale,
                                   (loss + j0) if loss != NULL else NULL,
                                   (grad + j0) if grad != NULL else NULL)
    total = _sum_rows(part, nch)
    free(part)
    return total


def bce_with_logits(cnp.ndarray x, cnp.ndarray y, object w, object pw, double gscale,
                    object loss, object grad):
    """Element-wise over flat contiguous arrays of one dtype; w/pw None or
    arrays of x's size; loss None or OUT like x (per-element losses), grad
    None or OUT like x.  Returns the sum of the losses (float64)."""
    cdef Py_ssize_t n = cnp.PyArray_SIZE(x)
    cdef void *wp = NULL
    cdef void *pp = NULL
    cdef void *lp = NULL
    cdef void *gp = NULL
    cdef double total
    if cnp.PyArray_ITEMSIZE(x) == 2:
        return half_bce_with_logits(x, y, w, pw, gscale, loss, grad)
    if w is not None:
        wp = cnp.PyArray_DATA(<cnp.ndarray>w)
    if pw is not None:
        pp = cnp.PyArray_DATA(<cnp.ndarray>pw)
    if loss is not None:
        lp = cnp.PyArray_DATA(<cnp.ndarray>loss)
    if grad is not None:
        gp = cnp.PyArray_DATA(<cnp.ndarray>grad)
    if _is_f32(x):
        with nogil:
            total = _bce_run[float](<const float *>cnp.PyArray_DATA(x), <const float *>cnp.PyArray_DATA(y),
                                    <const float *>wp, <const float *>pp, n, gscale, <float *>lp, <float *>gp)
    else:
        with nogil:
            total = _bce_run[double](<const double *>cnp.PyArray_DATA(x), <const double *>cnp.PyArray_DATA(y),
                                     <const double *>wp, <const double *>pp, n, gscale, <double *>lp,
                                     <double *>gp)
    return total


# --------------------------------------------------- the math, for tests --
def exp_array(cnp.ndarray x, cnp.ndarray out, bint nonpos=False):
    """fastlog's own vectorized exp over a contiguous float32/float64 array.
    nonpos=True uses the variant the softmax kernels call (valid for x <= 0)."""
    cdef Py_ssize_t n = cnp.PyArray_SIZE(x)
    if _is_f32(x):
        with nogil:
            if nonpos:
                fl_exp_nonpos_n_f32(<const float *>cnp.PyArray_DATA(x), n, <float *>cnp.PyArray_DATA(out))
            else:
                fl_exp_n_f32(<const float *>cnp.PyArray_DATA(x), n, <float *>cnp.PyArray_DATA(out))
    else:
        with nogil:
            if nonpos:
                fl_exp_nonpos_n_f64(<const double *>cnp.PyArray_DATA(x), n, <double *>cnp.PyArray_DATA(out))
            else:
                fl_exp_n_f64(<const double *>cnp.PyArray_DATA(x), n, <double *>cnp.PyArray_DATA(out))


def log_array(cnp.ndarray x, cnp.ndarray out):
    """fastlog's own vectorized log over a contiguous float32/float64 array."""
    cdef Py_ssize_t n = cnp.PyArray_SIZE(x)
    if _is_f32(x):
        with nogil:
            fl_log_n_f32(<const float *>cnp.PyArray_DATA(x), n, <float *>cnp.PyArray_DATA(out))
    else:
        with nogil:
            fl_log_n_f64(<const double *>cnp.PyArray_DATA(x), n, <double *>cnp.PyArray_DATA(out))


# ------------------------------------------------------------ other parts --
# Each part below is its own file; it can use everything defined above.
include "_blas.pxi"
include "_mlp.pxi"
include "_linear_ce.pxi"
include "_half.pxi"
