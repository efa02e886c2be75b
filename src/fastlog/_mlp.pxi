# Multi-layer perceptron (Linear -> ReLU -> ... -> Linear -> cross-entropy):
# building blocks and a whole SGD training step in one nogil call.
#
# Included at the end of _core.pyx (uses `real`, `_gemm`, `_sum_rows`, the
# cross-entropy C kernel fl_ce_index_rows_f32/_f64).  The Python layer
# (fastlog/nn/mlp.py) validates, allocates every buffer and keeps them alive;
# nothing here allocates per step or raises user-facing errors.
#
# Layout: parameters like torch.nn.Linear, W_l is (out, in) row-major, b_l is
# (out,), all of them packed in ONE flat vector [W_0, b_0, W_1, b_1, ...]
# (the order of nn.Sequential.parameters()); gradients and momentum buffers
# use the same layout.  Activations are row-major (rows x features).
#
# Matrix products go through BLAS (_gemm in _blas.pxi), seven per training
# step of a 3-layer net: three forward, then per layer from the top the input
# gradient dA = G W (not for the first layer) and the weight gradient G^T A.
# Everything else is an O(rows x features) epilogue:
#   forward:  Z = A W^T (BLAS, beta = 0), then one pass Z += b, ReLU;
#   backward: one pass that applies the ReLU mask to dA and sums the columns
#             (bias gradient, accumulated in double);
#   SGD:      without momentum the update is folded into the weight-gradient
#             GEMM itself: W <- (1 - lr*wd) W - lr G^T A  (alpha = -lr,
#             beta = 1 - lr*wd); with momentum the GEMM writes the buffer
#             V <- mu V + (1-dampening) G^T A and one pass finishes
#             V += (1-dampening) wd W;  W -= lr V  (PyTorch's SGD, whose first
#             step sets V to the gradient).  For 2048+ rows the first layer's
#             weight gradient is asked of BLAS as A^T G (faster in SciPy's
#             OpenBLAS) into a scratch, and the update is applied by one
#             transposing pass instead (see _wgrad_transposed).
# Threads: every GEMM is cut into a fixed number of blocks that depends only
# on its shape (rows of the output for the forward and dA products, columns
# of the weight gradient), and the blocks run in a static prange over
# fastlog's threads, each block one single-threaded BLAS call (fastlog.nn
# sets SciPy's OpenBLAS pool to 1 thread during these calls).  A block's
# result does not depend on which thread ran it, so results are bit-identical
# for any thread count; OpenBLAS's own threading is not (its split of
# A @ W.T changes the rounding).  The bias/ReLU epilogue runs inside the same
# block, while it is in cache; the column reductions are serial, in row order.

cdef struct MLPNet:
    int L                          # number of Linear layers
    Py_ssize_t cap                 # rows the activation buffers hold
    Py_ssize_t s[65]               # s[0] inputs, s[l+1] outputs of layer l
    Py_ssize_t woff[64]            # offset of W_l in the flat parameter vector
    Py_ssize_t boff[64]            # offset of b_l
    Py_ssize_t hoff[64]            # offset of layer l's activations in acts
    void *P                        # flat parameters
    void *G                        # flat gradients (loss_and_grad)
    void *V                        # flat momentum buffers
    void *A                        # activations, cap * sum(s[1:]) values
    void *D                        # scratch for dA, cap * max hidden width
    void *T                        # scratch for a transposed weight gradient, max in*out
    double *loss                   # per-row losses, cap
    double *acc                    # column sums, max width


# ------------------------------------------------------------ epilogues --
# Per-element passes over GEMM outputs: in the per-ISA C (fl_nn_impl.h),
# called through the kernel table K.
cdef inline void _bias_act(real *Y, const real *b, Py_ssize_t m, Py_ssize_t n, bint relu) noexcept nogil:
    """Y[i, :] += b (b may be NULL), then ReLU in place if asked (NaN stays NaN)."""
    if real is float:
        K.f32.bias_act(Y, b, m, n, relu)
    else:
        K.f64.bias_act(Y, b, m, n, relu)


cdef inline void _colsum(const real *G, Py_ssize_t m, Py_ssize_t n, double *acc) noexcept nogil:
    """acc[j] = sum_i G[i, j], in row order, in double."""
    if real is float:
        K.f32.colsum(G, m, n, acc)
    else:
        K.f64.colsum(G, m, n, acc)


cdef inline void _mask_colsum_inplace(const real *D, real *H, Py_ssize_t m, Py_ssize_t n,
                                      double *acc) noexcept nogil:
    """ReLU backward fused with the bias-gradient reduction, written over H:
    H[i, j] = D[i, j] if H[i, j] > 0 else 0;  acc[j] = sum_i H[i, j]."""
    if real is float:
        K.f32.mask_colsum(D, H, m, n, acc)
    else:
        K.f64.mask_colsum(D, H, m, n, acc)


cdef inline void _mask_colsum_to(const real *G, const real *Y, real *out, Py_ssize_t m, Py_ssize_t n,
                                 double *acc) noexcept nogil:
    """out = G where Y > 0 else 0 (out distinct from G and Y); acc its column sums."""
    if real is float:
        K.f32.mask_colsum_to(G, Y, out, m, n, acc)
    else:
        K.f64.mask_colsum_to(G, Y, out, m, n, acc)


# ------------------------------------------------------- blocked GEMMs --
cdef enum:
    _ROW_BLOCK = 512      # rows per block (at most _MAX_PARTS blocks)
    _COL_BLOCK = 128      # weight-gradient columns per block
    _MAX_PARTS = 4
    _SPLIT_MIN = 1 << 25  # multiply-adds below which a GEMM stays one call


cdef inline Py_ssize_t _parts(Py_ssize_t dim, Py_ssize_t block, Py_ssize_t work) noexcept nogil:
    """Number of blocks for a dimension: a function of the shape only."""
    cdef Py_ssize_t p
    if work < _SPLIT_MIN:
        return 1
    p = dim // block
    if p < 1:
        return 1
    return _MAX_PARTS if p > _MAX_PARTS else p


cdef void _gemm_rows(bint trans_b, Py_ssize_t m, Py_ssize_t n, Py_ssize_t k, const real *A,
                     const real *B, real *C, const real *bias, int epi, int nthr) noexcept nogil:
    """C (m x n) = A (m x k) @ op(B), A/C contiguous, in row blocks over
    fastlog's threads; epi 0 none, 1 bias add, 2 bias add + ReLU (bias may
    be NULL) on each block right after its GEMM."""
    cdef Py_ssize_t parts = _parts(m, _ROW_BLOCK, m * n * k), p, r0, r1
    cdef int nt = nthr if nthr < parts else <int>parts
    cdef int ldb = <int>(k if trans_b else n)
    if parts == 1:
        _gemm[real](False, trans_b, <int>m, <int>n, <int>k, 1, A, <int>k, B, ldb, 0, C, <int>n)
        if epi:
            _bias_act[real](C, bias, m, n, epi == 2)
        return
    if nt <= 1:
        for p in range(parts):
            r0 = p * m // parts
            r1 = (p + 1) * m // parts
            _gemm[real](False, trans_b, <int>(r1 - r0), <int>n, <int>k, 1, A + r0 * k, <int>k, B, ldb, 0,
                        C + r0 * n, <int>n)
            if epi:
                _bias_act[real](C + r0 * n, bias, r1 - r0, n, epi == 2)
        return
    for p in prange(parts, num_threads=nt, schedule='dynamic'):
        r0 = p * m // parts
        r1 = (p + 1) * m // parts
        _gemm[real](False, trans_b, <int>(r1 - r0), <int>n, <int>k, 1, A + r0 * k, <int>k, B, ldb, 0,
                    C + r0 * n, <int>n)
        if epi:
            _bias_act[real](C + r0 * n, bias, r1 - r0, n, epi == 2)


cdef void _gemm_wgrad(Py_ssize_t n_out, Py_ssize_t n_in, Py_ssize_t m, real alpha, const real *G,
                      const real *A, real beta, real *C, int nthr) noexcept nogil:
    """C (n_out x n_in) = alpha * G.T @ A + beta * C with G (m x n_out), A
    (m x n_in), in column blocks of C over fastlog's threads."""
    cdef Py_ssize_t parts = _parts(n_in, _COL_BLOCK, m * n_out * n_in), p, c0, c1
    cdef int nt = nthr if nthr < parts else <int>parts
    if parts == 1:
        _gemm[real](True, False, <int>n_out, <int>n_in, <int>m, alpha, G, <int>n_out, A, <int>n_in, beta,
                    C, <int>n_in)
        return
    if nt <= 1:
        for p in range(parts):
            c0 = p * n_in // parts
            c1 = (p + 1) * n_in // parts
            _gemm[real](True, False, <int>n_out, <int>(c1 - c0), <int>m, alpha, G, <int>n_out, A + c0,
                        <int>n_in, beta, C + c0, <int>n_in)
        return
    for p in prange(parts, num_threads=nt, schedule='dynamic'):
        c0 = p * n_in // parts
        c1 = (p + 1) * n_in // parts
        _gemm[real](True, False, <int>n_out, <int>(c1 - c0), <int>m, alpha, G, <int>n_out, A + c0,
                    <int>n_in, beta, C + c0, <int>n_in)


cdef inline bint _wgrad_transposed(Py_ssize_t m, Py_ssize_t n_out, Py_ssize_t n_in) noexcept nogil:
    """Whether a weight gradient is computed as (A.T @ G), then transposed.

    SciPy's OpenBLAS computes G.T @ A (out x in, the nn.Linear layout) for
    the 784-wide first layer several times slower than the same product
    asked for the other way round, A.T @ G (in x out), once the batch is
    large; the transposing pass that follows costs ~0.1 ms.  A function of
    the shape only (so of no thread count)."""
    return m >= 2048 and n_out * n_in >= 32768


cdef void _gemm_wgrad_t(Py_ssize_t n_out, Py_ssize_t n_in, Py_ssize_t m, const real *G, const real *A,
                        real *T, int nthr) noexcept nogil:
    """T (n_in x n_out) = A.T @ G, in row blocks of T over fastlog's threads."""
    cdef Py_ssize_t parts = _parts(n_in, _COL_BLOCK, m * n_out * n_in), p, c0, c1
    cdef int nt = nthr if nthr < parts else <int>parts
    if nt <= 1:
        for p in range(parts):
            c0 = p * n_in // parts
            c1 = (p + 1) * n_in // parts
            _gemm[real](True, False, <int>(c1 - c0), <int>n_out, <int>m, 1, A + c0, <int>n_in, G, <int>n_out,
                        0, T + c0 * n_out, <int>n_out)
        return
    for p in prange(parts, num_threads=nt, schedule='dynamic'):
        c0 = p * n_in // parts
        c1 = (p + 1) * n_in // parts
        _gemm[real](True, False, <int>(c1 - c0), <int>n_out, <int>m, 1, A + c0, <int>n_in, G, <int>n_out,
                    0, T + c0 * n_out, <int>n_out)


cdef inline void _axpby_t(real *C, const real *T, Py_ssize_t n_out, Py_ssize_t n_in, real alpha,
                          real beta) noexcept nogil:
    """C[o, i] = alpha * T[i, o] + beta * C[o, i] (C not read when beta == 0)."""
    if real is float:
        K.f32.axpby_t(C, T, n_out, n_in, alpha, beta)
    else:
        K.f64.axpby_t(C, T, n_out, n_in, alpha, beta)


cdef inline void _linear_fwd(const real *X, Py_ssize_t m, Py_ssize_t k, const real *W, Py_ssize_t n,
                             const real *b, real *Y, bint relu, int nthr) noexcept nogil:
    """Y (m x n) = act(X (m x k) @ W.T + b), W is (n x k) like nn.Linear."""
    _gemm_rows[real](True, m, n, k, X, W, Y, b, 2 if relu else 1, nthr)


cdef inline Py_ssize_t _argmax_correct(const real *Z, Py_ssize_t m, Py_ssize_t C,
                                       const int64_t *y) noexcept nogil:
    """How many rows have their first maximum at the target class."""
    cdef Py_ssize_t i, j, best, hits = 0
    cdef real v
    for i in range(m):
        best = 0
        v = Z[i * C]
        for j in range(1, C):
            if Z[i * C + j] > v:
                v = Z[i * C + j]
                best = j
        if best == y[i]:
            hits += 1
    return hits


cdef inline void _argmax_rows(const real *Z, Py_ssize_t m, Py_ssize_t C, int64_t *out) noexcept nogil:
    """First maximum of each row; -1 for a row holding a NaN."""
    cdef Py_ssize_t i, j, best
    cdef real v, z
    cdef bint nan
    for i in range(m):
        best = 0
        v = Z[i * C]
        nan = v != v
        for j in range(1, C):
            z = Z[i * C + j]
            nan = nan or z != z
            if z > v:
                v = z
                best = j
        out[i] = -1 if nan else best


# --------------------------------------------------------- SGD updates --
cdef inline void _momentum_finish(real *V, real *W, Py_ssize_t n, double lr, double cwd) noexcept nogil:
    """V += cwd * W;  W -= lr * V  (one pass)."""
    if real is float:
        K.f32.momentum_finish(V, W, n, lr, cwd)
    else:
        K.f64.momentum_finish(V, W, n, lr, cwd)


cdef inline void _bias_update(real *b, real *gb, real *vb, const double *acc, Py_ssize_t n, int mode,
                              double lr, double mu, double damp, double wd, bint first) noexcept nogil:
    """mode 0: gb = acc.  mode 1: PyTorch SGD on b with gradient acc."""
    if real is float:
        K.f32.bias_update(b, gb, vb, acc, n, mode, lr, mu, damp, wd, first)
    else:
        K.f64.bias_update(b, gb, vb, acc, n, mode, lr, mu, damp, wd, first)


cdef inline void _weight_grad(MLPNet *net, int l, const real *G, const real *Ain, Py_ssize_t m, int mode,
                              double lr, double mu, double damp, double wd, bint first,
                              int nthr) noexcept nogil:
    """dW_l = G^T Ain (s[l+1] x s[l]) stored (mode 0) or applied as an SGD step (mode 1)."""
    cdef int n_out = <int>net.s[l + 1], n_in = <int>net.s[l]
    cdef real *W = <real *>net.P + net.woff[l]
    cdef real *T
    cdef real *S = <real *>net.T
    cdef double a
    if S != NULL and _wgrad_transposed(m, n_out, n_in):
        _gemm_wgrad_t[real](n_out, n_in, m, G, Ain, S, nthr)
        if mode == 0:
            _axpby_t[real](<real *>net.G + net.woff[l], S, n_out, n_in, 1, 0)
        elif mu == 0.0:
            _axpby_t[real](W, S, n_out, n_in, <real>(-lr), <real>(1.0 - lr * wd))
        else:
            T = <real *>net.V + net.woff[l]
            a = 1.0 if first else 1.0 - damp
            _axpby_t[real](T, S, n_out, n_in, <real>a, <real>(0.0 if first else mu))
            _momentum_finish[real](T, W, net.s[l + 1] * net.s[l], lr, a * wd)
        return
    if mode == 0:
        T = <real *>net.G + net.woff[l]
        _gemm_wgrad[real](n_out, n_in, m, 1, G, Ain, 0, T, nthr)
    elif mu == 0.0:
        _gemm_wgrad[real](n_out, n_in, m, <real>(-lr), G, Ain, <real>(1.0 - lr * wd), W, nthr)
    else:
        T = <real *>net.V + net.woff[l]
        a = 1.0 if first else 1.0 - damp
        _gemm_wgrad[real](n_out, n_in, m, <real>a, G, Ain, <real>(0.0 if first else mu), T, nthr)
        _momentum_finish[real](T, W, net.s[l + 1] * net.s[l], lr, a * wd)


# ------------------------------------------------------ the train step --
cdef Py_ssize_t _mlp_step(MLPNet *net, const real *X, const int64_t *y, Py_ssize_t m, int mode,
                          double lr, double mu, double damp, double wd, bint first,
                          double *loss_out, Py_ssize_t *hits, int nthr) noexcept nogil:
    """Forward, cross-entropy (mean) + gradient, backward and (mode 1) SGD.

    Returns -1 on success, the first row whose label is out of range (nothing
    computed), or -2 when the loss is not finite (nothing updated).
    """
    cdef int L = net.L, l
    cdef Py_ssize_t i, C = net.s[L]
    cdef real *P = <real *>net.P
    cdef real *acts = <real *>net.A
    cdef real *D = <real *>net.D
    cdef const real *Ain
    cdef real *H
    cdef real *Gb
    cdef real *Vb
    cdef double total
    H = acts
    for i in range(m):
        if y[i] < 0 or y[i] >= C:
            return i
    # forward
    Ain = X
    for l in range(L):
        H = acts + net.hoff[l]
        _linear_fwd[real](Ain, m, net.s[l], P + net.woff[l], net.s[l + 1], P + net.boff[l], H, l < L - 1, nthr)
        Ain = H
    hits[0] = _argmax_correct[real](H, m, C, y)
    # loss and d(mean loss)/dlogits, in place over the logits (the kernel
    # reads a row before writing it); labels are in range so ignore_index=-1
    # never matches.
    if real is float:
        K.f32.ce_index_rows(H, m, C, y, NULL, <double>C, -1, 0.0, 1.0 / m, net.loss, H, 0)
    else:
        K.f64.ce_index_rows(H, m, C, y, NULL, <double>C, -1, 0.0, 1.0 / m, net.loss, H, 0)
    total = _sum_rows(net.loss, m) / m
    loss_out[0] = total
    if not (total - total == 0.0):          # NaN or inf
        return -2
    # backward, top layer first; G holds dloss/dZ_l (masked), acc its column sums
    _colsum[real](H, m, C, net.acc)
    for l in range(L - 1, -1, -1):
        H = acts + net.hoff[l]
        Ain = X if l == 0 else acts + net.hoff[l - 1]
        Gb = (<real *>net.G + net.boff[l]) if net.G != NULL else NULL
        Vb = (<real *>net.V + net.boff[l]) if net.V != NULL else NULL
        _bias_update[real](P + net.boff[l], Gb, Vb, net.acc, net.s[l + 1], mode, lr, mu, damp, wd, first)
        if l > 0:   # dA = G W_l with the weights before the update
            _gemm_rows[real](False, m, net.s[l], net.s[l + 1], H, P + net.woff[l], D, NULL, 0, nthr)
        _weight_grad[real](net, l, H, Ain, m, mode, lr, mu, damp, wd, first, nthr)
        if l > 0:   # ReLU mask + bias gradient of the layer below, into its activation buffer
            _mask_colsum_inplace[real](D, <real *>Ain, m, net.s[l], net.acc)
    return -1


cdef void _mlp_gemms(MLPNet *net, const real *X, Py_ssize_t m, bint train, double lr,
                     int nthr) noexcept nogil:
    """The GEMMs of _mlp_step (train) or of the forward pass alone, with the
    same shapes, operands and alpha/beta, and nothing else.  The weight GEMMs
    accumulate into the gradient buffer (beta = 1, like the fused SGD update
    into W) so the model is left unchanged."""
    cdef int L = net.L, l
    cdef real *acts = <real *>net.A
    cdef real *P = <real *>net.P
    cdef const real *Ain = X
    cdef real *H
    for l in range(L):
        H = acts + net.hoff[l]
        _gemm_rows[real](True, m, net.s[l + 1], net.s[l], Ain, P + net.woff[l], H, NULL, 0, nthr)
        Ain = H
    if not train:
        return
    for l in range(L - 1, -1, -1):
        H = acts + net.hoff[l]
        Ain = X if l == 0 else acts + net.hoff[l - 1]
        if l > 0:
            _gemm_rows[real](False, m, net.s[l], net.s[l + 1], H, P + net.woff[l], <real *>net.D, NULL, 0, nthr)
        if net.T != NULL and _wgrad_transposed(m, net.s[l + 1], net.s[l]):
            _gemm_wgrad_t[real](net.s[l + 1], net.s[l], m, H, Ain, <real *>net.T, nthr)
        else:
            _gemm_wgrad[real](net.s[l + 1], net.s[l], m, <real>(-lr), H, Ain, 1, <real *>net.G + net.woff[l], nthr)


cdef void _mlp_forward(MLPNet *net, const real *X, Py_ssize_t n, int kind, real *out,
                       int64_t *labels, int nthr) noexcept nogil:
    """Inference over n rows in blocks of net.cap rows.
    kind 0 logits, 1 log-probabilities, 2 probabilities (into out, n x C);
    kind 3 predicted class (into labels)."""
    cdef int L = net.L, l
    cdef Py_ssize_t r0, m, C = net.s[L]
    cdef real *acts = <real *>net.A
    cdef real *P = <real *>net.P
    cdef const real *Ain
    cdef real *H = acts
    r0 = 0
    while r0 < n:
        m = net.cap if r0 + net.cap <= n else n - r0
        Ain = X + r0 * net.s[0]
        for l in range(L):
            if l == L - 1 and kind != MLP_LABELS:
                H = out + r0 * C
            else:
                H = acts + net.hoff[l]
            _linear_fwd[real](Ain, m, net.s[l], P + net.woff[l], net.s[l + 1], P + net.boff[l], H, l < L - 1, nthr)
            Ain = H
        if kind == MLP_LABELS:
            _argmax_rows[real](H, m, C, labels + r0)
        elif kind == MLP_LOG_PROBA:
            if real is float:
                K.f32.log_softmax_rows(H, m, C, H, 0)
            else:
                K.f64.log_softmax_rows(H, m, C, H, 0)
        elif kind == MLP_PROBA:
            if real is float:
                K.f32.softmax_rows(H, m, C, H)
            else:
                K.f64.softmax_rows(H, m, C, H)
        r0 += m


cdef enum:
    _MAX_LAYERS = 64


cdef class MLPWorkspace:
    """Pointers into the buffers of one MLP (allocated and owned by
    fastlog.nn.MLP, which keeps them alive through this object).

    sizes: layer widths (s0, ..., sL), 1 <= L <= 64, each >= 1.  params /
    grads / velocity: flat vectors [W_0, b_0, W_1, b_1, ...] of one float
    dtype (grads/velocity may be None).  acts: cap * sum(sizes[1:]) values,
    dscratch: cap * max(sizes[1:-1], default 1) values, rowloss: float64
    (cap,), acc: float64 (max(sizes),).  wscratch: None or
    max(sizes[l] * sizes[l+1]) values (used for large batches, see
    _wgrad_transposed).  Every length is checked here.

    Thread safety: the object holds no state besides these pointers, and its
    buffers (acts, dscratch, rowloss, acc, wscratch) are scratch for ONE call
    at a time.  A second call on the same workspace while one is running (from
    another Python thread) raises RuntimeError instead of sharing the scratch;
    for concurrent inference give each thread its own workspace (creating one
    costs a few microseconds plus its buffers) over the same `params`.
    """
    cdef MLPNet net
    cdef readonly bint is_f32
    cdef readonly Py_ssize_t cap
    cdef readonly tuple sizes
    cdef object _keep
    cdef bint _busy

    def __cinit__(self, sizes, cnp.ndarray params not None, object grads, object velocity,
                  cnp.ndarray acts not None, cnp.ndarray dscratch not None, cnp.ndarray rowloss not None,
                  cnp.ndarray acc not None, Py_ssize_t cap, object wscratch=None):
        cdef int L, l, tn
        cdef Py_ssize_t off = 0, hoff = 0, widest = 1, hidden = 1, wmax = 1, v
        sizes = tuple(sizes)
        if len(sizes) < 2 or len(sizes) > _MAX_LAYERS + 1:
            raise ValueError(f"MLPWorkspace: sizes must have 2 to {_MAX_LAYERS + 1} entries, got {len(sizes)}")
        for l in range(len(sizes)):
            v = sizes[l]
            if v < 1:
                raise ValueError(f"MLPWorkspace: sizes[{l}] must be >= 1, got {v}")
        if cap < 1:
            raise ValueError(f"MLPWorkspace: cap must be >= 1, got {cap}")
        L = len(sizes) - 1
        tn = _float_arr(params, "params")
        for l in range(L + 1):
            self.net.s[l] = sizes[l]
            widest = max(widest, self.net.s[l])
            if 0 < l < L:
                hidden = max(hidden, self.net.s[l])
        for l in range(L):
            self.net.woff[l] = off
            off += self.net.s[l + 1] * self.net.s[l]
            self.net.boff[l] = off
            off += self.net.s[l + 1]
            self.net.hoff[l] = hoff
            hoff += cap * self.net.s[l + 1]
            wmax = max(wmax, self.net.s[l + 1] * self.net.s[l])
        _like(params, tn, off, "params", True, False)
        _like(grads, tn, off, "grads", True)
        _like(velocity, tn, off, "velocity", True)
        if cnp.PyArray_SIZE(acts) < hoff:
            raise ValueError(f"MLPWorkspace: acts needs {hoff} values, got {cnp.PyArray_SIZE(acts)}")
        _like(acts, tn, -1, "acts", True, False)
        if cnp.PyArray_SIZE(dscratch) < cap * hidden:
            raise ValueError(f"MLPWorkspace: dscratch needs {cap * hidden} values")
        _like(dscratch, tn, -1, "dscratch", True, False)
        _like(rowloss, cnp.NPY_FLOAT64, -1, "rowloss", True, False)
        if cnp.PyArray_SIZE(rowloss) < cap:
            raise ValueError(f"MLPWorkspace: rowloss needs {cap} values")
        _like(acc, cnp.NPY_FLOAT64, -1, "acc", True, False)
        if cnp.PyArray_SIZE(acc) < widest:
            raise ValueError(f"MLPWorkspace: acc needs {widest} values")
        _like(wscratch, tn, -1, "wscratch", True)
        if wscratch is not None and cnp.PyArray_SIZE(<cnp.ndarray>wscratch) < wmax:
            raise ValueError(f"MLPWorkspace: wscratch needs {wmax} values")
        self._keep = (params, grads, velocity, acts, dscratch, rowloss, acc, wscratch)
        self.sizes = sizes
        self.is_f32 = tn == cnp.NPY_FLOAT32
        self.cap = cap
        self.net.L = L
        self.net.cap = cap
        self.net.P = cnp.PyArray_DATA(params)
        self.net.G = _ptr(grads)
        self.net.V = _ptr(velocity)
        self.net.A = cnp.PyArray_DATA(acts)
        self.net.D = cnp.PyArray_DATA(dscratch)
        self.net.T = _ptr(wscratch)
        self.net.loss = <double *>cnp.PyArray_DATA(rowloss)
        self.net.acc = <double *>cnp.PyArray_DATA(acc)

    cdef int _check(self, cnp.ndarray x, Py_ssize_t max_rows) except -1:
        """Memory-safety guard against misuse of this internal object (the
        public wrappers validate everything before calling)."""
        if (cnp.PyArray_NDIM(x) != 2 or cnp.PyArray_DIM(x, 1) != self.net.s[0]
                or not cnp.PyArray_IS_C_CONTIGUOUS(x)
                or cnp.PyArray_TYPE(x) != (cnp.NPY_FLOAT32 if self.is_f32 else cnp.NPY_FLOAT64)
                or cnp.PyArray_DIM(x, 0) > max_rows):
            raise ValueError("MLPWorkspace: x does not fit this workspace")
        return 0

    cdef int _enter(self) except -1:
        # Runs with the GIL held, so test-and-set cannot race.
        if self._busy:
            raise RuntimeError("MLPWorkspace is in use by another thread; give each thread its own "
                               "workspace")
        self._busy = True
        return 0

    def step(self, cnp.ndarray x not None, cnp.ndarray y not None, int mode, double lr=0.0,
             double momentum=0.0, double dampening=0.0, double weight_decay=0.0, bint first=True):
        """One forward/backward over the rows of x (<= cap) with int64 labels y.
        mode (MLPMode) 0: gradients into `grads`; 1: SGD update of `params`.
        Returns (status, mean loss, correct predictions); status -1 ok, >= 0
        the first row with a label out of range, -2 non-finite loss (in both
        error cases nothing was changed)."""
        cdef Py_ssize_t m = cnp.PyArray_DIM(x, 0) if cnp.PyArray_NDIM(x) >= 1 else 0, hits = 0, st
        cdef double loss = 0.0
        cdef int nthr = _call_threads()
        self._check(x, self.cap)
        if (cnp.PyArray_NDIM(y) != 1 or cnp.PyArray_DIM(y, 0) != m or cnp.PyArray_TYPE(y) != cnp.NPY_INT64
                or not cnp.PyArray_IS_C_CONTIGUOUS(y) or m < 1 or (mode != MLP_GRAD and mode != MLP_SGD)):
            raise ValueError("MLPWorkspace.step: bad y, mode or empty batch")
        if mode == MLP_GRAD and self.net.G == NULL:
            raise ValueError("MLPWorkspace.step: mode 0 needs a gradient buffer")
        if mode == MLP_SGD and momentum != 0.0 and self.net.V == NULL:
            raise ValueError("MLPWorkspace.step: momentum needs a velocity buffer")
        cdef const int64_t *yp = <const int64_t *>cnp.PyArray_DATA(y)
        cdef void *xp = cnp.PyArray_DATA(x)
        self._enter()
        try:
            if self.is_f32:
                with nogil:
                    st = _mlp_step[float](&self.net, <const float *>xp, yp, m, mode, lr, momentum, dampening,
                                          weight_decay, first, &loss, &hits, nthr)
            else:
                with nogil:
                    st = _mlp_step[double](&self.net, <const double *>xp, yp, m, mode, lr, momentum,
                                           dampening, weight_decay, first, &loss, &hits, nthr)
        finally:
            self._busy = False
        return st, loss, hits

    def forward(self, cnp.ndarray x not None, int kind, object out, object labels):
        """Inference over all rows of x (any count), see _mlp_forward; kind
        is an MLPOutput (3: labels into `labels`, int64 (n,); else `out`,
        (n, classes) of x's dtype)."""
        cdef Py_ssize_t n
        cdef void *xp
        cdef void *op
        cdef int64_t *lp
        cdef int nthr = _call_threads()
        self._check(x, PY_SSIZE_T_MAX)
        n = cnp.PyArray_DIM(x, 0)
        if kind < MLP_LOGITS or kind > MLP_LABELS:
            raise ValueError(f"MLPWorkspace.forward: kind must be 0..3, got {kind}")
        if kind == MLP_LABELS:
            _like(labels, cnp.NPY_INT64, n, "labels", True, False)
        else:
            _like(out, cnp.NPY_FLOAT32 if self.is_f32 else cnp.NPY_FLOAT64, n * self.net.s[self.net.L],
                  "out", True, False)
        xp = cnp.PyArray_DATA(x)
        op = _ptr(out) if kind != MLP_LABELS else NULL
        lp = <int64_t *>_ptr(labels) if kind == MLP_LABELS else NULL
        self._enter()
        try:
            if self.is_f32:
                with nogil:
                    _mlp_forward[float](&self.net, <const float *>xp, n, kind, <float *>op, lp, nthr)
            else:
                with nogil:
                    _mlp_forward[double](&self.net, <const double *>xp, n, kind, <double *>op, lp, nthr)
        finally:
            self._busy = False


def mlp_gemms_only(MLPWorkspace ws not None, cnp.ndarray x not None, bint train=True, double lr=0.01):
    """Run only the GEMMs of one training step (train=True; 2L+... i.e. seven
    for three layers) or of inference over all rows of x in the workspace's
    blocks (train=False), on the workspace's own buffers.  For benchmarks: the
    floor a fused implementation can reach.  The model's parameters are not
    changed (the weight GEMMs accumulate into the gradient buffer)."""
    cdef Py_ssize_t n, r0, m
    cdef void *xp
    cdef Py_ssize_t s0 = ws.net.s[0]
    cdef int nthr = _call_threads()
    ws._check(x, ws.cap if train else PY_SSIZE_T_MAX)
    n = cnp.PyArray_DIM(x, 0)
    xp = cnp.PyArray_DATA(x)
    if train and (ws.net.G == NULL or n < 1):
        raise ValueError("mlp_gemms_only: the workspace has no gradient buffer, or x is empty")
    ws._enter()
    try:
        if ws.is_f32:
            with nogil:
                if train:
                    _mlp_gemms[float](&ws.net, <const float *>xp, n, True, lr, nthr)
                else:
                    r0 = 0
                    while r0 < n:
                        m = ws.net.cap if r0 + ws.net.cap <= n else n - r0
                        _mlp_gemms[float](&ws.net, <const float *>xp + r0 * s0, m, False, lr, nthr)
                        r0 += m
        else:
            with nogil:
                if train:
                    _mlp_gemms[double](&ws.net, <const double *>xp, n, True, lr, nthr)
                else:
                    r0 = 0
                    while r0 < n:
                        m = ws.net.cap if r0 + ws.net.cap <= n else n - r0
                        _mlp_gemms[double](&ws.net, <const double *>xp + r0 * s0, m, False, lr, nthr)
                        r0 += m
    finally:
        ws._busy = False


# ------------------------------------------------- public building blocks --
cdef int _int_dims(Py_ssize_t a, Py_ssize_t b, Py_ssize_t c) except -1:
    if a > 2147483647 or b > 2147483647 or c > 2147483647:
        raise ValueError("dimensions must be below 2**31 (BLAS takes int)")
    return 0


def linear_fwd(cnp.ndarray x not None, cnp.ndarray w not None, object b, cnp.ndarray out not None,
               bint relu):
    """out (m x n) = act(x (m x k) @ w.T + b); w is (n x k); b None or (n,)."""
    cdef int tn = _float_arr(x, "x"), nthr = _call_threads()
    cdef Py_ssize_t m = _dim2(x, 0, "x"), k = cnp.PyArray_DIM(x, 1), n = _dim2(w, 0, "w")
    cdef void *xp
    cdef void *wp
    cdef void *bp
    cdef void *op
    if cnp.PyArray_DIM(w, 1) != k:
        raise ValueError(f"w: expected {k} columns, got {cnp.PyArray_DIM(w, 1)}")
    _like(w, tn, n * k, "w", False, False)
    _like(b, tn, n, "b")
    _like(out, tn, m * n, "out", True, False)
    _int_dims(m, n, k)
    xp = cnp.PyArray_DATA(x)
    wp = cnp.PyArray_DATA(w)
    bp = _ptr(b)
    op = cnp.PyArray_DATA(out)
    if tn == cnp.NPY_FLOAT32:
        with nogil:
            _linear_fwd[float](<const float *>xp, m, k, <const float *>wp, n, <const float *>bp,
                               <float *>op, relu, nthr)
    else:
        with nogil:
            _linear_fwd[double](<const double *>xp, m, k, <const double *>wp, n, <const double *>bp,
                                <double *>op, relu, nthr)


cdef void _linear_bwd(const real *G, const real *X, const real *W, const real *Y, Py_ssize_t m,
                      Py_ssize_t k, Py_ssize_t n, real *GX, real *GW, real *GB, real *S,
                      double *acc, int nthr) noexcept nogil:
    cdef const real *Gm = G
    cdef Py_ssize_t j
    if Y != NULL:
        _mask_colsum_to[real](G, Y, S, m, n, acc)
        Gm = S
    else:
        _colsum[real](G, m, n, acc)
    if GB != NULL:
        for j in range(n):
            GB[j] = <real>acc[j]
    _gemm_wgrad[real](n, k, m, 1, Gm, X, 0, GW, nthr)
    if GX != NULL:
        _gemm_rows[real](False, m, k, n, Gm, W, GX, NULL, 0, nthr)


def linear_bwd(cnp.ndarray g not None, cnp.ndarray x not None, cnp.ndarray w not None, object y,
               object gx, cnp.ndarray gw not None, object gb, object scratch, cnp.ndarray acc not None):
    """Gradients of out = act(x @ w.T + b) given g = dloss/dout.  y: None (no
    activation) or the ReLU output, whose mask is applied to g (into `scratch`,
    m x n) in the same pass as the bias-gradient sum (acc: float64 (n,)).
    gx (m x k) / gb (n,) may be None; gw is (n x k)."""
    cdef int tn = _float_arr(x, "x"), nthr = _call_threads()
    cdef Py_ssize_t m = _dim2(x, 0, "x"), k = cnp.PyArray_DIM(x, 1), n = _dim2(w, 0, "w")
    if cnp.PyArray_DIM(w, 1) != k:
        raise ValueError(f"w: expected {k} columns, got {cnp.PyArray_DIM(w, 1)}")
    _like(w, tn, n * k, "w", False, False)
    _like(g, tn, m * n, "g", False, False)
    _like(y, tn, m * n, "y")
    _like(scratch, tn, m * n, "scratch", True, y is None)
    _like(gx, tn, m * k, "gx", True)
    _like(gw, tn, n * k, "gw", True, False)
    _like(gb, tn, n, "gb", True)
    _like(acc, cnp.NPY_FLOAT64, n, "acc", True, False)
    _int_dims(m, n, k)
    cdef void *gp = cnp.PyArray_DATA(g)
    cdef void *xp = cnp.PyArray_DATA(x)
    cdef void *wp = cnp.PyArray_DATA(w)
    cdef void *yp = _ptr(y)
    cdef void *gxp = _ptr(gx)
    cdef void *gwp = cnp.PyArray_DATA(gw)
    cdef void *gbp = _ptr(gb)
    cdef void *sp = _ptr(scratch)
    cdef double *ap = <double *>cnp.PyArray_DATA(acc)
    if tn == cnp.NPY_FLOAT32:
        with nogil:
            _linear_bwd[float](<const float *>gp, <const float *>xp, <const float *>wp, <const float *>yp,
                               m, k, n, <float *>gxp, <float *>gwp, <float *>gbp, <float *>sp, ap, nthr)
    else:
        with nogil:
            _linear_bwd[double](<const double *>gp, <const double *>xp, <const double *>wp,
                                <const double *>yp, m, k, n, <double *>gxp, <double *>gwp,
                                <double *>gbp, <double *>sp, ap, nthr)


def relu_fwd(cnp.ndarray x not None, cnp.ndarray out not None):
    """out = max(x, 0) elementwise over contiguous arrays (NaN propagates); out may be x."""
    cdef int tn = _float_arr(x, "x")
    cdef Py_ssize_t n = cnp.PyArray_SIZE(x)
    _like(out, tn, n, "out", True, False)
    cdef void *xp = cnp.PyArray_DATA(x)
    cdef void *op = cnp.PyArray_DATA(out)
    with nogil:
        if tn == cnp.NPY_FLOAT32:
            K.f32.relu_fwd(<const float *>xp, <float *>op, n)
        else:
            K.f64.relu_fwd(<const double *>xp, <double *>op, n)


def relu_bwd(cnp.ndarray g not None, cnp.ndarray y not None, cnp.ndarray out not None):
    """out = g where y > 0 else 0 (y: the ReLU's output or input); out may be g."""
    cdef int tn = _float_arr(g, "g")
    cdef Py_ssize_t n = cnp.PyArray_SIZE(g)
    _like(y, tn, n, "y", False, False)
    _like(out, tn, n, "out", True, False)
    cdef void *gp = cnp.PyArray_DATA(g)
    cdef void *yp = cnp.PyArray_DATA(y)
    cdef void *op = cnp.PyArray_DATA(out)
    with nogil:
        if tn == cnp.NPY_FLOAT32:
            K.f32.relu_bwd(<const float *>gp, <const float *>yp, <float *>op, n)
        else:
            K.f64.relu_bwd(<const double *>gp, <const double *>yp, <double *>op, n)
