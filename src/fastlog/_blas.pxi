# BLAS from Cython through scipy.linalg.cython_blas (as scikit-learn's
# _cython_blas does): no BLAS of our own, never a hand-written GEMM.
# Included by _core.pyx (the GEMM itself runs in SciPy's BLAS, which does its
# own CPU dispatch).

from scipy.linalg.cython_blas cimport sgemm, dgemm


cdef void _gemm(bint trans_a, bint trans_b, int m, int n, int k, real alpha,
                const real *A, int lda, const real *B, int ldb, real beta,
                real *C, int ldc) noexcept nogil:
    """Row-major C[m, n] = alpha * op(A)[m, k] @ op(B)[k, n] + beta * C.

    op(A) is A (m x k, row stride lda) or, with trans_a, A.T where A is
    k x m.  BLAS is column-major, so we ask it for C.T = op(B).T @ op(A).T by
    swapping the operands.
    """
    cdef char ta = b'T' if trans_a else b'N'
    cdef char tb = b'T' if trans_b else b'N'
    if m == 0 or n == 0:
        return
    if real is float:
        sgemm(&tb, &ta, &n, &m, &k, &alpha, <float *>B, &ldb, <float *>A, &lda, &beta, C, &ldc)
    else:
        dgemm(&tb, &ta, &n, &m, &k, &alpha, <double *>B, &ldb, <double *>A, &lda, &beta, C, &ldc)


def gemm(cnp.ndarray A not None, cnp.ndarray B not None, cnp.ndarray C not None, bint trans_a=False,
         bint trans_b=False, double alpha=1.0, double beta=0.0):
    """C = alpha * op(A) @ op(B) + beta * C for C-contiguous 2-D arrays of one
    float dtype (C written in place).  Exposed so tests can check _gemm
    against NumPy."""
    cdef int tn = _float_arr(C, "C")
    cdef Py_ssize_t m = _dim2(C, 0, "C"), n = cnp.PyArray_DIM(C, 1)
    cdef Py_ssize_t ar = _dim2(A, 0, "A"), ac = cnp.PyArray_DIM(A, 1)
    cdef Py_ssize_t br = _dim2(B, 0, "B"), bc = cnp.PyArray_DIM(B, 1)
    cdef Py_ssize_t k = ar if trans_a else ac
    _like(A, tn, -1, "A", False, False)
    _like(B, tn, -1, "B", False, False)
    _like(C, tn, -1, "C", True, False)
    if (ac if trans_a else ar) != m or (bc if trans_b else br) != k or (br if trans_b else bc) != n:
        raise ValueError(f"gemm: shapes {(ar, ac)}{'.T' if trans_a else ''} @ {(br, bc)}"
                         f"{'.T' if trans_b else ''} do not give {(m, n)}")
    if max(m, n, k, ac, bc) > 2147483647:
        raise ValueError("gemm: dimensions must be below 2**31")
    if tn == cnp.NPY_FLOAT32:
        with nogil:
            _gemm[float](trans_a, trans_b, <int>m, <int>n, <int>k, <float>alpha,
                         <const float *>cnp.PyArray_DATA(A), <int>(ac if ac > 0 else 1), <const float *>cnp.PyArray_DATA(B),
                         <int>(bc if bc > 0 else 1), <float>beta, <float *>cnp.PyArray_DATA(C), <int>(n if n > 0 else 1))
    else:
        with nogil:
            _gemm[double](trans_a, trans_b, <int>m, <int>n, <int>k, alpha,
                          <const double *>cnp.PyArray_DATA(A), <int>(ac if ac > 0 else 1), <const double *>cnp.PyArray_DATA(B),
                          <int>(bc if bc > 0 else 1), beta, <double *>cnp.PyArray_DATA(C), <int>(n if n > 0 else 1))
