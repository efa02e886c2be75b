# Half precision (bfloat16 / float16) entry points of the compiled core.
#
# Included by _core.pyx; the C is in the ISA level's kernel table (K.half).
# Arrays: C-contiguous numpy.float16 or ml_dtypes.bfloat16 (checked here, as
# the float entry points check theirs); class / element weights float32,
# per-row losses float64.  The math is the
# float32 row kernels, run on rows widened as they are read (long rows of
# log_softmax / softmax / logsumexp / class-index CE) or on float32 copies of
# fixed chunks of rows, in a per-thread scratch buffer (fl_half.h); outputs of
# STREAM_MIN_BYTES or more are written with streaming stores; chunks are the same as for float32
# (_chunk_rows depends only on C), so results do not depend on the thread
# count.  The core's float entry points (unary_rows, ce_index, ...) forward
# 2-byte arrays here before their float32/float64 checks.

from libc.stdint cimport uint16_t
from cython.parallel cimport parallel
from fastlog._kernels cimport (fl_half_args, fl_half_scratch, FL_KIND_BF16, FL_KIND_F16, FL_H_LOG_SOFTMAX,
                               FL_H_SOFTMAX, FL_H_LSE, FL_H_LOG_SOFTMAX_BWD, FL_H_SOFTMAX_BWD, FL_H_CE_INDEX,
                               FL_H_CE_PROB, FL_H_BCE)


cdef bint _is_half(cnp.ndarray a):
    """float16 or ml_dtypes.bfloat16 (what the float entry points forward here)."""
    return cnp.PyArray_TYPE(a) == cnp.NPY_FLOAT16 or (cnp.PyArray_ITEMSIZE(a) == 2
                                                      and a.dtype.name == "bfloat16")


cdef int _half_x(cnp.ndarray x, str name) except -1:
    """x is a C-contiguous float16 / bfloat16 array; returns its type number."""
    cdef int tn = cnp.PyArray_TYPE(x)
    if not _is_half(x):
        raise TypeError(f"{name}: expected a float16 or bfloat16 array, got {x.dtype}")
    if not cnp.PyArray_IS_C_CONTIGUOUS(x):
        raise ValueError(f"{name}: expected a C-contiguous array")
    return tn


cdef inline int _half_kind(cnp.ndarray a):
    return FL_KIND_F16 if cnp.PyArray_TYPE(a) == cnp.NPY_FLOAT16 else FL_KIND_BF16


cdef inline const uint16_t *_u16(object a):
    return <const uint16_t *>_ptr(a)


cdef inline uint16_t *_u16w(object a):
    return <uint16_t *>_ptr(a)


cdef inline const float *_f32p(object a):
    return <const float *>_ptr(a)


cdef int _half_run(fl_half_args *a, Py_ssize_t n, double *part, int stream=-1) except -1:
    """fl_half_rows over fixed chunks of rows (threads over chunks), each
    thread with its own float32 scratch.  part: NULL or one double per chunk
    (the BCE chunk sums, added afterwards in chunk order).  stream: -1 =
    streaming stores for outputs of STREAM_MIN_BYTES or more, 0 = never (the
    caller reads the output right away: a block of fused linear + CE)."""
    cdef Py_ssize_t C = a.C, cr = _chunk_rows(C), nch, k, r0, m, ss
    cdef int nt, tid, nthr = _call_threads()
    cdef float *scr
    cdef double v
    if n <= 0:
        return 0
    nch = (n + cr - 1) // cr
    a.nrows = n
    a.stream = stream != 0 and n * (C if C > 0 else 1) * 2 >= STREAM_MIN_BYTES
    nt = _threads_for(nthr, n, C if C > 0 else 1)
    ss = fl_half_scratch(cr if cr < n else n, C)
    scr = <float *>malloc(nt * ss * sizeof(float))
    if scr == NULL:
        raise MemoryError()
    with nogil:
        if nt == 1:
            for k in range(nch):
                r0 = k * cr
                m = cr if r0 + cr <= n else n - r0
                v = K.half.rows(a, r0, m, scr)
                if part != NULL:
                    part[k] = v
        else:
            with parallel(num_threads=nt):
                tid = threadid()
                for k in prange(nch, schedule='static'):
                    r0 = k * cr
                    m = cr if r0 + cr <= n else n - r0
                    v = K.half.rows(a, r0, m, scr + tid * ss)
                    if part != NULL:
                        part[k] = v
    free(scr)
    return 0


cdef fl_half_args _half_args(int op, cnp.ndarray x, Py_ssize_t C):
    cdef fl_half_args a
    memset(&a, 0, sizeof(a))
    a.kind = _half_kind(x)
    a.op = op
    a.C = C
    a.x = <const uint16_t *>cnp.PyArray_DATA(x)
    return a


def half_unary_rows(int op, cnp.ndarray x, cnp.ndarray out, Py_ssize_t C=-1, bint nanrow=False):
    """unary_rows for 2-byte x (out of x's dtype)."""
    cdef Py_ssize_t n, size = cnp.PyArray_SIZE(x)
    cdef int tn = _half_x(x, "x")
    if op < OP_LOG_SOFTMAX or op > OP_LOGSUMEXP:
        raise ValueError(f"op must be 0, 1 or 2, got {op}")
    if C < 0:
        C = _dim2(x, 1, "x")
    if C <= 0:
        raise ValueError("x: rows of length 0")
    if size % C:
        raise ValueError(f"x: {size} elements are not whole rows of {C}")
    n = size // C
    _like(out, tn, n if op == OP_LOGSUMEXP else size, "out", True, False)
    cdef fl_half_args a = _half_args(op, x, C)
    a.out = _u16w(out)
    a.flag = nanrow and op == OP_LOG_SOFTMAX
    _half_run(&a, n, NULL)


def half_backward_rows(int op, cnp.ndarray grad_output, cnp.ndarray output, cnp.ndarray grad_input):
    """backward_rows for 2-byte arrays (op 0/1 = log_softmax/softmax)."""
    cdef int tn = _half_x(output, "output")
    cdef Py_ssize_t n = _dim2(output, 0, "output"), C = cnp.PyArray_DIM(output, 1)
    _like(grad_output, tn, n * C, "grad_output", False, False)
    _like(grad_input, tn, n * C, "grad_input", True, False)
    cdef fl_half_args a = _half_args(FL_H_LOG_SOFTMAX_BWD if op == 0 else FL_H_SOFTMAX_BWD,
                                     grad_output, C)
    a.y = _u16(output)
    a.out = _u16w(grad_input)
    _half_run(&a, n, NULL)


cdef object _half_index_run(int kind, const uint16_t *x, Py_ssize_t n, Py_ssize_t C,
                            const int64_t *t, const float *wp, long long ignore_index, double eps,
                            int reduction, object gscale, bint stream, bint ign_nan, double *lp,
                            uint16_t *gp):
    """half_ce_index over checked memory (kind FL_KIND_F16 / FL_KIND_BF16)."""
    cdef Py_ssize_t bad, j
    cdef double wsum = 0.0, W = <double>C
    with nogil:
        bad = _check_targets[float](t, n, C, ignore_index, wp, &wsum)
    if bad >= 0:
        return bad, 0.0, 0.0
    if wp != NULL:
        W = 0.0
        for j in range(C):
            W += wp[j]
    cdef fl_half_args a
    memset(&a, 0, sizeof(a))
    a.kind = kind
    a.op = FL_H_CE_INDEX
    a.C = C
    a.x = x
    a.target = t
    a.w = wp
    a.W = W
    a.ignore_index = ignore_index
    a.eps = eps
    a.gscale = _grad_scale(reduction, wsum, eps) if gscale is None else <double>gscale
    a.flag = ign_nan
    a.loss = lp
    a.out = gp
    _half_run(&a, n, NULL, -1 if stream else 0)
    return -1, wsum, _sum_rows(lp, n)


def half_ce_index(cnp.ndarray x, cnp.ndarray target, object weight, long long ignore_index,
                  double eps, int reduction, object grad, cnp.ndarray loss, object gscale=None,
                  bint stream=True, bint ign_nan=False):
    """ce_index for 2-byte x; weight None or float32 (C,); grad None or like x.
    gscale (a float) replaces the gradient scale the reduction implies (a block
    of a larger batch: fused linear + cross-entropy, torch/linear_ce_half.py);
    stream=False keeps a large gradient in the caches (it is read next);
    ign_nan as for ce_index."""
    cdef int tn = _half_x(x, "x")
    cdef Py_ssize_t n = _dim2(x, 0, "x"), C = cnp.PyArray_DIM(x, 1)
    _reduction(reduction)
    _targets_arg(target, n)
    _like(weight, cnp.NPY_FLOAT32, C, "weight")
    _like(grad, tn, n * C, "grad", True)
    _like(loss, cnp.NPY_FLOAT64, n, "loss", True, False)
    return _half_index_run(_half_kind(x), <const uint16_t *>cnp.PyArray_DATA(x), n, C,
                           <const int64_t *>cnp.PyArray_DATA(target), _f32p(weight), ignore_index,
                           eps, reduction, gscale, stream, ign_nan,
                           <double *>cnp.PyArray_DATA(loss), _u16w(grad))


def half_ce_prob(cnp.ndarray x, cnp.ndarray target, object weight, double eps, double gscale,
                 object grad, cnp.ndarray loss):
    """ce_prob for 2-byte x and target (same dtype); weight None or float32 (C,)."""
    cdef int tn = _half_x(x, "x")
    cdef Py_ssize_t n = _dim2(x, 0, "x"), C = cnp.PyArray_DIM(x, 1)
    _like(target, tn, n * C, "target", False, False)
    _like(weight, cnp.NPY_FLOAT32, C, "weight")
    _like(grad, tn, n * C, "grad", True)
    _like(loss, cnp.NPY_FLOAT64, n, "loss", True, False)
    cdef fl_half_args a = _half_args(FL_H_CE_PROB, x, C)
    a.y = _u16(target)
    a.w = _f32p(weight)
    a.eps = eps
    a.gscale = gscale
    a.loss = <double *>cnp.PyArray_DATA(loss)
    a.out = _u16w(grad)
    _half_run(&a, n, NULL)
    return _sum_rows(a.loss, n)


def half_nll(cnp.ndarray x, cnp.ndarray target, object weight, long long ignore_index, int reduction,
             object grad, cnp.ndarray loss):
    """nll for 2-byte x; weight None or float32 (C,).  The gradient entry
    -gscale * w[y] is rounded once to x's dtype."""
    cdef int tn = _half_x(x, "x")
    cdef Py_ssize_t n = _dim2(x, 0, "x"), C = cnp.PyArray_DIM(x, 1), bad, i
    cdef double wsum = 0.0, gscale, wy
    _reduction(reduction)
    _targets_arg(target, n)
    _like(weight, cnp.NPY_FLOAT32, C, "weight")
    _like(grad, tn, n * C, "grad", True)
    _like(loss, cnp.NPY_FLOAT64, n, "loss", True, False)
    cdef const int64_t *t = <const int64_t *>cnp.PyArray_DATA(target)
    cdef const float *wp = _f32p(weight)
    cdef const uint16_t *xp = <const uint16_t *>cnp.PyArray_DATA(x)
    cdef uint16_t *gp = _u16w(grad)
    cdef double *lp = <double *>cnp.PyArray_DATA(loss)
    cdef int kind = _half_kind(x)
    cdef int64_t y
    cdef float v
    with nogil:
        bad = _check_targets[float](t, n, C, ignore_index, wp, &wsum)
        if bad < 0:
            gscale = _grad_scale(reduction, wsum, 0.0)
            for i in range(n):
                y = t[i]
                if y == ignore_index:
                    lp[i] = 0.0
                    if gp != NULL:
                        memset(gp + i * C, 0, C * sizeof(uint16_t))
                    continue
                wy = wp[y] if wp != NULL else 1.0
                K.half.h2f_n(kind, xp + i * C + y, 1, &v)   # read before the row is cleared (out=input)
                lp[i] = -wy * v
                if gp != NULL:
                    memset(gp + i * C, 0, C * sizeof(uint16_t))
                    v = <float>(-gscale * wy)
                    K.half.f2h_n(kind, &v, 1, gp + i * C + y)
    if bad >= 0:
        return bad, 0.0, 0.0
    return -1, wsum, _sum_rows(lp, n)


def half_bce_with_logits(cnp.ndarray x, cnp.ndarray y, object w, object pw, double gscale,
                         object loss, object grad):
    """bce_with_logits for 2-byte x and y (same dtype); w/pw None or float32
    of x's size; loss/grad None or OUT like x.  Returns the float64 sum."""
    cdef int tn = _half_x(x, "x")
    cdef Py_ssize_t n = cnp.PyArray_SIZE(x), nch
    _like(y, tn, n, "y", False, False)
    _like(w, cnp.NPY_FLOAT32, n, "w")
    _like(pw, cnp.NPY_FLOAT32, n, "pw")
    _like(loss, tn, n, "loss", True)
    _like(grad, tn, n, "grad", True)
    cdef fl_half_args a = _half_args(FL_H_BCE, x, 1)
    cdef double *part
    cdef double total
    a.y = _u16(y)
    a.w = _f32p(w)
    a.pw = _f32p(pw)
    a.gscale = gscale
    a.out = _u16w(grad)
    a.out2 = _u16w(loss)
    if n == 0:
        return 0.0
    nch = (n + _chunk_rows(1) - 1) // _chunk_rows(1)
    part = <double *>malloc(nch * sizeof(double))
    if part == NULL:
        raise MemoryError()
    try:
        _half_run(&a, n, part)
        total = _sum_rows(part, nch)
    finally:
        free(part)
    return total


def half_to_float32(cnp.ndarray x, cnp.ndarray out):
    """Convert a contiguous 2-byte array to float32 (exact), for tests."""
    _half_x(x, "x")
    _like(out, cnp.NPY_FLOAT32, cnp.PyArray_SIZE(x), "out", True, False)
    cdef int kind = _half_kind(x)
    with nogil:
        K.half.h2f_n(kind, <const uint16_t *>cnp.PyArray_DATA(x), cnp.PyArray_SIZE(x),
                 <float *>cnp.PyArray_DATA(out))


def float32_to_half(cnp.ndarray x, cnp.ndarray out):
    """Round a contiguous float32 array to out's 2-byte dtype (nearest even), for tests."""
    _half_x(out, "out")
    _like(x, cnp.NPY_FLOAT32, cnp.PyArray_SIZE(out), "x", False, False)
    cdef int kind = _half_kind(out)
    with nogil:
        K.half.f2h_n(kind, <const float *>cnp.PyArray_DATA(x), cnp.PyArray_SIZE(x),
                 <uint16_t *>cnp.PyArray_DATA(out))
