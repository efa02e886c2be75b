# BLAS from Cython through scipy.linalg.cython_blas (as scikit-learn's
# _cython_blas does): no BLAS of our own, never a hand-written GEMM.
# Included by _core.pxi (so it is compiled into every ISA build; the GEMM
# itself runs in SciPy's BLAS, which does its own CPU dispatch).

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


def gemm(cnp.ndarray A, cnp.ndarray B, cnp.ndarray C, bint trans_a=False, bint trans_b=False,
         double alpha=1.0, double beta=0.0):
    """C = alpha * op(A) @ op(B) + beta * C for C-contiguous 2-D arrays of one
    float dtype (C written in place).  Exposed so tests can check _gemm
    against NumPy; callers validate shapes."""
    cdef int m = <int>cnp.PyArray_DIM(C, 0), n = <int>cnp.PyArray_DIM(C, 1)
    cdef int k = <int>(cnp.PyArray_DIM(A, 0) if trans_a else cnp.PyArray_DIM(A, 1))
    cdef int lda = <int>cnp.PyArray_DIM(A, 1), ldb = <int>cnp.PyArray_DIM(B, 1)
    if _is_f32(C):
        with nogil:
            _gemm[float](trans_a, trans_b, m, n, k, <float>alpha, <const float *>cnp.PyArray_DATA(A), lda,
                         <const float *>cnp.PyArray_DATA(B), ldb, <float>beta,
                         <float *>cnp.PyArray_DATA(C), n)
    else:
        with nogil:
            _gemm[double](trans_a, trans_b, m, n, k, alpha, <const double *>cnp.PyArray_DATA(A), lda,
                          <const double *>cnp.PyArray_DATA(B), ldb, beta,
                          <double *>cnp.PyArray_DATA(C), n)
