# Fused linear + cross-entropy: loss and gradients of
#     cross_entropy(X @ Wm.T + b, target)
# without ever holding the N x V logits.  Included at the end of _core.pyx.
#
# Rows are processed in blocks of `nb` rows; for each block
#   1. work[nb, V]  = X_blk @ Wm.T (+ b)                    GEMM (BLAS)
#   2. work         = gscale * dloss/dlogits, in place      lce_row (kernel table)
#   3. gX_blk       = work @ Wm                             GEMM
#      gW          += work.T @ X_blk  (beta = 0 on block 0)  GEMM
#      gb_acc      += column sums of work (float64)
# so the extra memory is the nb x V workspace whatever N is.
#
# Determinism: step 2 is per row (rows handed to threads dynamically, each
# row's result independent of which thread ran it); gW and gb are accumulated
# block after block in row order, never across threads of ours.  The GEMMs
# are cut into blocks that depend only on the shapes (_lce_gemm), each block
# one single-threaded BLAS call on one of fastlog's threads; fastlog.linear
# holds SciPy's BLAS pool at 1 thread during the call (threadpoolctl, then
# restores it), so no library's thread count changes a result (a BLAS that
# splits a dot product over its own threads sums in another order).

cdef void _lce_block(real *work, Py_ssize_t m, Py_ssize_t V, const int64_t *t, const real *w, double W,
                     int64_t ignore_index, double eps, double gscale, const double *row_scale,
                     double zscale, bint want_grad, bint want_lse, double *loss, real *lse,
                     real *scratch, int nthr) noexcept nogil:
    """One row at a time (lce_row of the kernel table) over the m rows of a
    block, threads over rows (a dynamic schedule: a preempted thread does not
    hold the others up).  nthr was fixed at the call's entry and scratch holds
    nthr * V values when it is used: thread k uses row k of it."""
    cdef Py_ssize_t i
    cdef int nt = _threads_for(nthr, m, V)
    cdef int tid
    cdef double gs
    if nt == 1:
        for i in range(m):
            gs = gscale * row_scale[i] if row_scale != NULL else gscale
            if real is float:
                K.f32.lce_row(work + i * V, V, t + i, w, W, ignore_index, eps, gs, zscale, want_grad,
                              want_lse, loss + i, (lse + i) if lse != NULL else NULL, scratch)
            else:
                K.f64.lce_row(work + i * V, V, t + i, w, W, ignore_index, eps, gs, zscale, want_grad,
                              want_lse, loss + i, (lse + i) if lse != NULL else NULL, scratch)
        return
    for i in prange(m, num_threads=nt, schedule='dynamic'):
        tid = threadid()
        gs = gscale * row_scale[i] if row_scale != NULL else gscale
        if real is float:
            K.f32.lce_row(work + i * V, V, t + i, w, W, ignore_index, eps, gs, zscale, want_grad,
                          want_lse, loss + i, (lse + i) if lse != NULL else NULL,
                          (scratch + tid * V) if scratch != NULL else NULL)
        else:
            K.f64.lce_row(work + i * V, V, t + i, w, W, ignore_index, eps, gs, zscale, want_grad,
                          want_lse, loss + i, (lse + i) if lse != NULL else NULL,
                          (scratch + tid * V) if scratch != NULL else NULL)


cdef enum:
    _LCE_MAX_PARTS = 8
    _LCE_SPLIT_MIN = 1 << 22   # multiply-adds below which a GEMM stays one call


cdef inline Py_ssize_t _lce_parts(Py_ssize_t dim, Py_ssize_t block, Py_ssize_t work) noexcept nogil:
    """How many blocks a GEMM dimension is cut into: a function of the shape
    only, so results do not depend on any thread count."""
    cdef Py_ssize_t p
    if work < _LCE_SPLIT_MIN:
        return 1
    p = dim // block
    if p < 1:
        return 1
    return _LCE_MAX_PARTS if p > _LCE_MAX_PARTS else p


cdef void _lce_gemm(int which, Py_ssize_t m, Py_ssize_t H, Py_ssize_t V, const real *Xb, const real *Wm,
                    real *work, real beta, real *C, int nthr) noexcept nogil:
    """One of the three GEMMs of a block, cut into fixed blocks (each a
    single-threaded BLAS call; SciPy's pool is held at 1 thread by the
    caller) spread over fastlog's threads:
      which 0: work (m x V) = Xb @ Wm.T + beta * work    blocks of V columns
      which 1: C (m x H)    = work @ Wm                   blocks of H columns
      which 2: C (V x H)    = work.T @ Xb + beta * C      blocks of V rows
    Every output element is one BLAS dot product over the same operands
    whatever the blocks, and the blocks depend only on the shape."""
    cdef Py_ssize_t parts, p, c0, c1, dim
    cdef int nt
    cdef int ldh = <int>(H if H > 0 else 1)
    if which == 1:
        dim = H
        parts = _lce_parts(H, 256, m * H * V)   # each block re-packs all of `work`: few, wide blocks
    else:
        dim = V
        parts = _lce_parts(V, 1024, m * H * V)
    nt = nthr if nthr < parts else <int>parts
    if nt < 1:
        nt = 1
    for p in prange(parts, num_threads=nt, schedule='dynamic'):
        c0 = p * dim // parts
        c1 = (p + 1) * dim // parts
        if which == 0:
            _gemm(False, True, <int>m, <int>(c1 - c0), <int>H, <real>1, Xb, ldh, Wm + c0 * H, ldh,
                  beta, work + c0, <int>V)
        elif which == 1:
            _gemm(False, False, <int>m, <int>(c1 - c0), <int>V, <real>1, work, <int>V, Wm + c0, ldh,
                  <real>0, C + c0, ldh)
        else:
            _gemm(True, False, <int>(c1 - c0), <int>H, <int>m, <real>1, work + c0, <int>V, Xb, ldh,
                  beta, C + c0 * H, ldh)


cdef void _lce_run(const real *X, const real *Wm, const real *b, Py_ssize_t N, Py_ssize_t H,
                   Py_ssize_t V, const int64_t *t, const real *w, double W, int64_t ignore_index,
                   double eps, double gscale, const double *row_scale, double zscale, Py_ssize_t nb,
                   real *work, real *scratch, double *loss, real *lse, real *gX, real *gW,
                   double *gb, int nthr) noexcept nogil:
    cdef Py_ssize_t r0 = 0, m, i
    cdef bint want_grad = gX != NULL or gW != NULL or gb != NULL
    cdef real beta
    if gW != NULL and N == 0:
        memset(gW, 0, V * H * sizeof(real))
    if gb != NULL:
        memset(gb, 0, V * sizeof(double))
    while r0 < N:
        m = nb if r0 + nb <= N else N - r0
        # 1. logits of the block
        beta = 0
        if b != NULL:
            for i in range(m):
                memcpy(work + i * V, b, V * sizeof(real))
            beta = 1
        if H > 0:
            _lce_gemm[real](0, m, H, V, X + r0 * H, Wm, work, beta, NULL, nthr)
        elif b == NULL:
            memset(work, 0, m * V * sizeof(real))
        # 2. loss and gscale * dloss/dlogits, in place
        _lce_block(work, m, V, t + r0, w, W, ignore_index, eps, gscale,
                   (row_scale + r0) if row_scale != NULL else NULL, zscale, want_grad,
                   lse != NULL, loss + r0, (lse + r0) if lse != NULL else NULL, scratch, nthr)
        # 3. gradients
        if gX != NULL:
            _lce_gemm[real](1, m, H, V, NULL, Wm, work, 0, gX + r0 * H, nthr)
        if gW != NULL:
            _lce_gemm[real](2, m, H, V, X + r0 * H, NULL, work, <real>(0 if r0 == 0 else 1), gW, nthr)
        if gb != NULL:
            if real is float:
                K.f32.colsum_add(work, m, V, gb)
            else:
                K.f64.colsum_add(work, m, V, gb)
        r0 += m


def linear_ce(cnp.ndarray X not None, cnp.ndarray Wm not None, object bias, cnp.ndarray target not None,
              object weight, long long ignore_index, double eps, int reduction, object row_scale,
              double zscale, cnp.ndarray work not None, object scratch, cnp.ndarray loss not None,
              object lse, object gX, object gW, object gb):
    """Fused linear + cross-entropy over the rows of X (N, H) with Wm (V, H).

    bias: None or (V,); weight: None or (V,) class weights; target: int64 (N,).
    reduction (Reduction) 0 none / 1 mean / 2 sum sets gscale (1/sum of
    weights for mean); row_scale: None or float64 (N,) multiplying each row's
    gradient (then reduction only matters through it: pass 0 or 2).  work:
    nb*V buffer of X's dtype (nb = rows per block = work.size // V).  scratch:
    None or k*V buffer (k >= 1; used when zscale != 0 and gradients are
    wanted: at most k threads then run the per-row pass).
    loss: float64 (N,) OUT; lse: None or (N,) OUT of X's dtype.
    gX (N, H), gW (V, H): None or OUT of X's dtype; gb: None or float64 (V,) OUT.
    Returns (bad_row, weight_sum, loss_sum); bad_row >= 0: target out of
    range there, nothing computed.  All arrays C-contiguous.
    """
    cdef int tn = _float_arr(X, "X"), nthr = _call_threads()
    cdef Py_ssize_t N = _dim2(X, 0, "X"), H = cnp.PyArray_DIM(X, 1), V = _dim2(Wm, 0, "Wm")
    cdef Py_ssize_t nb, bad
    cdef double wsum = 0.0, Wtot = <double>V, gscale, total = 0.0
    cdef const int64_t *t
    cdef double *lp
    cdef const double *rs = NULL
    cdef void *bp = NULL
    cdef void *wp = NULL
    cdef void *sp = NULL
    cdef void *lsp = NULL
    cdef void *gxp = NULL
    cdef void *gwp = NULL
    cdef double *gbp = NULL
    cdef bint want_grad = gX is not None or gW is not None or gb is not None
    if cnp.PyArray_DIM(Wm, 1) != H:
        raise ValueError(f"Wm: expected {H} columns, got {cnp.PyArray_DIM(Wm, 1)}")
    _like(Wm, tn, V * H, "Wm", False, False)
    _like(bias, tn, V, "bias")
    _targets_arg(target, N)
    _like(weight, tn, V, "weight")
    _reduction(reduction)
    _like(row_scale, cnp.NPY_FLOAT64, N, "row_scale")
    _like(work, tn, -1, "work", True, False)
    _like(scratch, tn, -1, "scratch", True)
    _like(loss, cnp.NPY_FLOAT64, N, "loss", True, False)
    _like(lse, tn, N, "lse", True)
    _like(gX, tn, N * H, "gX", True)
    _like(gW, tn, V * H, "gW", True)
    _like(gb, cnp.NPY_FLOAT64, V, "gb", True)
    _int_dims(N, H, V)
    nb = (cnp.PyArray_SIZE(work) // V) if V > 0 else 1
    if N > 0 and V > 0 and nb < 1:
        raise ValueError(f"work: needs at least V = {V} values (one row)")
    if nb < 1:
        nb = 1
    if zscale != 0.0 and want_grad and N > 0:
        # The per-row pass needs V values of scratch per thread: the thread
        # count of this call is fixed here, from the scratch given.
        if scratch is None or cnp.PyArray_SIZE(<cnp.ndarray>scratch) < V:
            raise ValueError(f"scratch: z_loss with gradients needs at least V = {V} values per thread")
        nthr = min(nthr, <int>min(cnp.PyArray_SIZE(<cnp.ndarray>scratch) // max(V, 1), MAX_THREADS))
    t = <const int64_t *>cnp.PyArray_DATA(target)
    lp = <double *>cnp.PyArray_DATA(loss)
    bp = _ptr(bias)
    wp = _ptr(weight)
    if row_scale is not None:
        rs = <const double *>cnp.PyArray_DATA(<cnp.ndarray>row_scale)
    sp = _ptr(scratch)
    lsp = _ptr(lse)
    gxp = _ptr(gX)
    gwp = _ptr(gW)
    if gb is not None:
        gbp = <double *>cnp.PyArray_DATA(<cnp.ndarray>gb)
    if tn == cnp.NPY_FLOAT32:
        with nogil:
            bad = _check_targets[float](t, N, V, ignore_index, <const float *>wp, &wsum)
            if bad < 0:
                if wp != NULL:
                    Wtot = _sum_w[float](<const float *>wp, V)
                gscale = _grad_scale(reduction if rs == NULL else RED_SUM, wsum, eps)
                _lce_run[float](<const float *>cnp.PyArray_DATA(X), <const float *>cnp.PyArray_DATA(Wm),
                                <const float *>bp, N, H, V, t, <const float *>wp, Wtot, ignore_index, eps,
                                gscale, rs, zscale, nb, <float *>cnp.PyArray_DATA(work), <float *>sp,
                                lp, <float *>lsp, <float *>gxp, <float *>gwp, gbp, nthr)
                total = _sum_rows(lp, N)
    else:
        with nogil:
            bad = _check_targets[double](t, N, V, ignore_index, <const double *>wp, &wsum)
            if bad < 0:
                if wp != NULL:
                    Wtot = _sum_w[double](<const double *>wp, V)
                gscale = _grad_scale(reduction if rs == NULL else RED_SUM, wsum, eps)
                _lce_run[double](<const double *>cnp.PyArray_DATA(X), <const double *>cnp.PyArray_DATA(Wm),
                                 <const double *>bp, N, H, V, t, <const double *>wp, Wtot, ignore_index,
                                 eps, gscale, rs, zscale, nb, <double *>cnp.PyArray_DATA(work),
                                 <double *>sp, lp, <double *>lsp, <double *>gxp, <double *>gwp, gbp, nthr)
                total = _sum_rows(lp, N)
    if bad >= 0:
        return bad, 0.0, 0.0
    return -1, wsum, total
