# fastlog._core: the ONE compiled extension.  Typed nogil loops over rows,
# threads, reductions, the BLAS glue, the MLP and fused linear + CE.
#
# The SIMD math lives in C (src/fastlog/_csrc/), compiled once per ISA level
# (x86-64, x86-64-v3, x86-64-v4; aarch64, aarch64-sve) into a table of
# function pointers (fl_ktab_<level>, see fl_kernels.h / _kernels.pxd); this
# module is compiled once and calls the kernels through the table `K`: the
# best level this CPU runs, chosen when the module loads (select();
# fastlog._dispatch applies FASTLOG_ISA).  Every per-element loop is in the
# table, so each level's vector width and FMA apply; what is left here is
# chunking, threads and fixed-order reductions.
#
# Contract with the Python layer (fastlog/_softmax.py, fastlog/_losses.py, ...):
# arrays arrive validated, C-contiguous, of one floating dtype (float32 or
# float64), 2-D (rows x classes) unless said otherwise, targets as int64.
# The entry points still check dtype, contiguity and sizes (cheap C checks) so
# that a wrong call raises TypeError/ValueError instead of touching memory it
# should not; user-facing messages are the wrappers' job.  Bad targets are
# reported back as a row index and the wrapper raises.
#
# Threads: the thread count is read ONCE per call (_call_threads(), with the
# GIL held: the calling thread's fastlog.num_threads override, else the
# process default) and passed down; nothing below reads a global that another
# Python thread could change mid-call.  Rows are cut into fixed chunks
# (_chunk_rows depends only on C) and the chunks are handed to threads by a
# dynamic prange (a thread that the OS preempts does not hold up the others:
# on a busy machine a static split waited for the straggler).  Per-row
# results never depend on the chunking or on which thread ran a chunk, and
# reductions over rows are done afterwards in row order, so results are
# bit-identical for any thread count.

cimport numpy as cnp
from cython.parallel cimport prange, threadid
from libc.stdint cimport int64_t
from libc.string cimport memset, memcpy
from libc.stdlib cimport malloc, free
from libc.math cimport NAN
from cpython.pyport cimport PY_SSIZE_T_MAX

from fastlog._kernels cimport fl_ktab, fl_ktab_for, FL_NLEVELS, fl_level_name, fl_cpu_has_level, fl_cpu_has_bf16
from fastlog._kernels cimport FL_OPENMP, omp_get_max_threads, omp_get_num_procs, omp_get_thread_num
from fastlog._enums cimport *

cnp.import_array()

cdef extern from *:
    """
    #include <stdio.h>
    #include <time.h>
    /* A clock read at most every 20 ms needs no precision: the coarse
     * clock where there is one (Linux), the monotonic one elsewhere. */
    #ifdef CLOCK_MONOTONIC_COARSE
    #define FL_CLOCK CLOCK_MONOTONIC_COARSE
    #else
    #define FL_CLOCK CLOCK_MONOTONIC
    #endif
    /* fastlog.num_threads(n) override of the calling OS thread (0: none). */
    static __thread int fl_tls_threads = 0;

    /* Runnable tasks on the machine now (/proc/loadavg's "running/total"),
     * re-read at most every 20 ms; -1 where unknown (no /proc: macOS).
     * Relaxed atomics: any recent value will do. */
    static int fl_runnable_val = -1;
    static long long fl_runnable_ms = -1000;
    static int fl_runnable(void)
    {
        struct timespec ts;
        long long now, last;
        if (clock_gettime(FL_CLOCK, &ts) != 0)
            return -1;
        now = (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
        last = __atomic_load_n(&fl_runnable_ms, __ATOMIC_RELAXED);
        if (now - last >= 20 || now < last) {
            int run = -1, tot = 0;
            double a, b, c;
            FILE *f = fopen("/proc/loadavg", "r");
            if (f) {
                if (fscanf(f, "%lf %lf %lf %d/%d", &a, &b, &c, &run, &tot) != 5)
                    run = -1;
                fclose(f);
            }
            __atomic_store_n(&fl_runnable_val, run, __ATOMIC_RELAXED);
            __atomic_store_n(&fl_runnable_ms, now, __ATOMIC_RELAXED);
            return run;
        }
        return __atomic_load_n(&fl_runnable_val, __ATOMIC_RELAXED);
    }
    """
    int fl_tls_threads
    int fl_runnable() noexcept nogil

ctypedef fused real:
    float
    double

# ------------------------------------------------------------------ config --
#: The ISA levels of this architecture, lowest first (fl_kernels.h).
LEVELS = tuple(fl_level_name(i).decode() for i in range(FL_NLEVELS))
OPENMP = bool(FL_OPENMP)
ENUMS = {
    "Op": {"LOG_SOFTMAX": OP_LOG_SOFTMAX, "SOFTMAX": OP_SOFTMAX, "LOGSUMEXP": OP_LOGSUMEXP},
    "Reduction": {"NONE": RED_NONE, "MEAN": RED_MEAN, "SUM": RED_SUM, "BATCHMEAN": RED_BATCHMEAN},
    "MLPMode": {"GRAD": MLP_GRAD, "SGD": MLP_SGD},
    "MLPOutput": {"LOGITS": MLP_LOGITS, "LOG_PROBA": MLP_LOG_PROBA, "PROBA": MLP_PROBA,
                  "LABELS": MLP_LABELS},
}

# The kernel table in use: the best level this CPU runs, chosen when the
# module is loaded (select() below); fastlog._dispatch applies FASTLOG_ISA.
cdef const fl_ktab *K = NULL
ISA = ""

# The process-wide thread count: OpenMP's default (all cores) until
# fastlog._threads applies FASTLOG_NUM_THREADS or set_num_threads.
cdef int _n_threads = 1
# False while _n_threads is fastlog's default (not set by the user): then a
# call uses only the cores that are idle right now (see _call_threads).
cdef bint _threads_explicit = False
# Below this many elements a call stays on one thread (thread start-up costs
# more than it saves).
cdef Py_ssize_t PAR_MIN_ELEMS = 1 << 16
# Work unit: ~32K elements (128 KB of float32) per chunk, whole rows.
cdef Py_ssize_t CHUNK_ELEMS = 1 << 15
# Outputs of at least this many bytes are written with streaming stores (they
# would leave the caches before anything reads them again; fl_stream.h).
cdef Py_ssize_t STREAM_MIN_BYTES = 16 << 20
cdef int MAX_THREADS = 1 << 16


def _set_stream_min_bytes(Py_ssize_t nbytes):
    """Set the output size from which kernels use streaming stores; returns the
    old value (for tests: the streamed and the cached writes give the same bytes)."""
    global STREAM_MIN_BYTES
    old = STREAM_MIN_BYTES
    STREAM_MIN_BYTES = nbytes if nbytes > 0 else 1
    return old


def cpu_has(str level):
    """Whether this CPU has the features the kernels of `level` are compiled
    for (x86-64-v3: AVX2, FMA, BMI2, F16C; x86-64-v4: those and AVX-512
    F/DQ/BW/VL/CD; aarch64-sve: SVE enabled by the OS)."""
    if level not in LEVELS:
        raise ValueError(f"unknown ISA level {level!r} (levels: {', '.join(LEVELS)})")
    return bool(fl_cpu_has_level(LEVELS.index(level)))


def cpu_has_bf16():
    """Whether the CPU converts float32 to bfloat16 in hardware with round to
    nearest even that fastlog uses (aarch64 FEAT_BF16: BFCVT); elsewhere the
    conversion is done on the bits."""
    return bool(fl_cpu_has_bf16())


def built_levels():
    """The ISA levels whose kernel table is compiled into this module, lowest first."""
    return tuple(LEVELS[i] for i in range(FL_NLEVELS) if fl_ktab_for(i) != NULL)


def cpu_levels():
    """The built levels this CPU can run, lowest first (each level's features
    include those of the levels below it)."""
    out = [LEVELS[0]]
    for i in range(1, FL_NLEVELS):
        if not fl_cpu_has_level(i) or fl_ktab_for(i) == NULL:
            break
        out.append(LEVELS[i])
    return out


def select(str level):
    """Use the kernel table of `level` from now on, process-wide, and return
    its name.  Called when the module is loaded (the best level), by
    fastlog._dispatch (FASTLOG_ISA) and by the tests, which run every level
    in one process.  Not for use while another thread is inside a kernel."""
    global K, ISA
    if level not in cpu_levels():
        raise ValueError(f"ISA level {level!r} is not available on this CPU/build "
                         f"(available: {', '.join(cpu_levels())})")
    K = fl_ktab_for(LEVELS.index(level))
    ISA = K.isa.decode()
    return ISA


def _init():
    for i in range(FL_NLEVELS):   # the header's names and the tables' agree
        if fl_ktab_for(i) != NULL and fl_ktab_for(i).isa.decode() != LEVELS[i]:
            raise ImportError(f"fastlog._core: table {i} is {fl_ktab_for(i).isa.decode()!r}, "
                              f"expected {LEVELS[i]!r} (build and fl_kernels.h disagree)")
    levels = cpu_levels()
    select(levels[len(levels) - 1])   # (no negative index: wraparound is off here)
    set_threads(omp_get_max_threads(), False)


def max_threads():
    """What OpenMP would use by default (1 without OpenMP)."""
    return omp_get_max_threads()


def set_threads(int n, bint explicit=True):
    """The process-wide thread count (fastlog.set_num_threads: explicit, used
    as given; fastlog's own default: explicit=False, adapted to the load)."""
    global _n_threads, _threads_explicit
    _n_threads = n if n > 0 else 1
    if _n_threads > MAX_THREADS:
        _n_threads = MAX_THREADS
    _threads_explicit = explicit


_init()


def get_default_threads():
    return _n_threads


def threads_explicit():
    """Whether the process-wide count was set by the user (else: adaptive default)."""
    return bool(_threads_explicit)


def runnable_tasks():
    """Runnable tasks on the machine now (/proc/loadavg), -1 if unknown."""
    return fl_runnable()


def set_thread_override(int n):
    """The calling OS thread's override (fastlog.num_threads); 0 clears it.
    Returns the previous override."""
    global fl_tls_threads
    cdef int old = fl_tls_threads
    fl_tls_threads = (n if n < MAX_THREADS else MAX_THREADS) if n > 0 else 0
    return old


def get_threads():
    """The thread count set for calls made now from this thread (its
    num_threads override, else the process-wide count)."""
    return fl_tls_threads if fl_tls_threads > 0 else _n_threads


def call_threads():
    """The thread count a call made now from this thread would use."""
    return _call_threads()


cdef inline int _call_threads() noexcept nogil:
    """Read once at the entry of every call.  A count the user chose
    (num_threads block, set_num_threads, FASTLOG_NUM_THREADS) is used as
    given.  fastlog's default (all cores) is cut to the cores that are idle
    right now: on a machine whose cores are busy with other work, a parallel
    region waits for its slowest thread to be scheduled again, which made 2
    threads several times SLOWER than 1 (cross-entropy 4096 x 1000 on 2 busy
    cores: 4-8 ms against 1.6-2 ms, with OMP_WAIT_POLICY=PASSIVE).  Results
    are bit-identical for any count, so this changes only the speed."""
    cdef int n, run, busy, idle
    if fl_tls_threads > 0:
        return fl_tls_threads
    n = _n_threads
    if _threads_explicit or n <= 1:
        return n
    run = fl_runnable()
    if run < 0:
        return n
    busy = run - 1                      # runnable tasks besides this thread
    idle = omp_get_num_procs() - busy
    if idle < 1:
        return 1
    return idle if idle < n else n


def openmp_team_size(int n):
    """How many threads an OpenMP parallel region asked for `n` really ran
    (run-time check that the build's OpenMP works; 1 without OpenMP)."""
    cdef int k, seen = 0
    cdef int *hit = <int *>malloc(max(n, 1) * sizeof(int))
    if hit == NULL:
        raise MemoryError()
    memset(hit, 0, max(n, 1) * sizeof(int))
    with nogil:
        for k in prange(n, num_threads=n, schedule='static', chunksize=1):
            hit[omp_get_thread_num()] = 1
    for k in range(n):
        seen += hit[k]
    free(hit)
    return seen


cdef inline Py_ssize_t _chunk_rows(Py_ssize_t C) noexcept nogil:
    if C <= 0:
        return CHUNK_ELEMS
    if C >= CHUNK_ELEMS:
        return 1
    return CHUNK_ELEMS // C


cdef inline int _threads_for(int nthr, Py_ssize_t nrows, Py_ssize_t C) noexcept nogil:
    cdef Py_ssize_t nch
    if nthr <= 1 or nrows * C < PAR_MIN_ELEMS:
        return 1
    nch = (nrows + _chunk_rows(C) - 1) // _chunk_rows(C)
    if nch < 2:
        return 1
    return <int>(nch if nch < nthr else nthr)


# ------------------------------------------------- argument checks (cheap) --
cdef inline bint _is_f32(cnp.ndarray a):
    return cnp.PyArray_TYPE(a) == cnp.NPY_FLOAT32


cdef inline int _float_arr(cnp.ndarray a, str name) except -1:
    """a is a C-contiguous float32/float64 array; returns its type number."""
    cdef int tn = cnp.PyArray_TYPE(a)
    if tn != cnp.NPY_FLOAT32 and tn != cnp.NPY_FLOAT64:
        raise TypeError(f"{name}: expected a float32 or float64 array, got {a.dtype}")
    if not cnp.PyArray_IS_C_CONTIGUOUS(a):
        raise ValueError(f"{name}: expected a C-contiguous array")
    return tn


cdef inline void *_ptr(object a):
    """The data pointer of an optional (already checked) ndarray; NULL for None."""
    return NULL if a is None else cnp.PyArray_DATA(<cnp.ndarray>a)


cdef inline int _like(object a, int tn, Py_ssize_t size, str name, bint out=False,
               bint allow_none=True) except -1:
    """a is None (if allowed) or a C-contiguous array of type tn and `size`
    elements (size < 0: any), writable when out."""
    cdef cnp.ndarray arr
    if a is None:
        if not allow_none:
            raise TypeError(f"{name}: an array is required, got None")
        return 0
    if not isinstance(a, cnp.ndarray):
        raise TypeError(f"{name}: expected a numpy array, got {type(a).__name__}")
    arr = <cnp.ndarray>a
    if cnp.PyArray_TYPE(arr) != tn:
        raise TypeError(f"{name}: expected dtype {cnp.PyArray_DescrFromType(tn)}, got {arr.dtype}")
    if not cnp.PyArray_IS_C_CONTIGUOUS(arr):
        raise ValueError(f"{name}: expected a C-contiguous array")
    if size >= 0 and cnp.PyArray_SIZE(arr) != size:
        raise ValueError(f"{name}: expected {size} elements, got {cnp.PyArray_SIZE(arr)}")
    if out and not cnp.PyArray_ISWRITEABLE(arr):
        raise ValueError(f"{name}: output array is read-only")
    return 0


cdef inline Py_ssize_t _dim2(cnp.ndarray a, int k, str name) except -1:
    if cnp.PyArray_NDIM(a) != 2:
        raise ValueError(f"{name}: expected a 2-D array, got {cnp.PyArray_NDIM(a)}-D")
    return cnp.PyArray_DIM(a, k)


cdef int _reduction(int r) except -1:
    if r != RED_NONE and r != RED_MEAN and r != RED_SUM:
        raise ValueError(f"reduction code must be 0 (none), 1 (mean) or 2 (sum), got {r}")
    return r


cdef inline double _grad_scale(int reduction, double wsum, double eps) noexcept nogil:
    """The gradient's scale: 1 / (sum of the counted targets' weights) for
    'mean', 1 otherwise.  A zero sum gives IEEE's 1/0 = inf (so inf or NaN
    where a row's gradient is nonzero or zero, as PyTorch's division), except
    with label smoothing, where PyTorch's 'mean' of the smoothing term is 0/0
    as well and its gradient is NaN through every counted row: NaN then."""
    if reduction != RED_MEAN:
        return 1.0
    if wsum == 0.0 and eps != 0.0:
        return NAN
    return 1.0 / wsum


def grad_scale(int reduction, double wsum, double eps=0.0):
    """The gradient scale the kernels use for a reduction (Reduction) whose counted
    targets' weights sum to `wsum` (see _grad_scale); for the faces that scale
    gradients themselves (vocab-parallel, half-precision linear + CE)."""
    _reduction(reduction)
    return _grad_scale(reduction, wsum, eps)


# ------------------------------------------------------ unary row kernels --
cdef void _unary_block(int op, const real *x, Py_ssize_t n, Py_ssize_t C, real *out,
                       int nanrow) noexcept nogil:
    if real is float:
        if op == OP_LOG_SOFTMAX:
            K.f32.log_softmax_rows(x, n, C, out, nanrow)
        elif op == OP_SOFTMAX:
            K.f32.softmax_rows(x, n, C, out)
        else:
            K.f32.lse_rows(x, n, C, out)
    else:
        if op == OP_LOG_SOFTMAX:
            K.f64.log_softmax_rows(x, n, C, out, nanrow)
        elif op == OP_SOFTMAX:
            K.f64.softmax_rows(x, n, C, out)
        else:
            K.f64.lse_rows(x, n, C, out)


cdef void _unary_run(int op, const real *x, Py_ssize_t n, Py_ssize_t C, real *out,
                     int nthr, int nanrow) noexcept nogil:
    cdef Py_ssize_t cr = _chunk_rows(C), nch = (n + cr - 1) // cr, k, r0, ostride
    cdef int nt = _threads_for(nthr, n, C)
    ostride = 1 if op == OP_LOGSUMEXP else C
    if nt == 1:
        _unary_block(op, x, n, C, out, nanrow)
        return
    for k in prange(nch, num_threads=nt, schedule='dynamic'):
        r0 = k * cr
        _unary_block(op, x + r0 * C, (cr if r0 + cr <= n else n - r0), C, out + r0 * ostride, nanrow)


def unary_rows(int op, cnp.ndarray x not None, cnp.ndarray out not None, Py_ssize_t C=-1,
               bint nanrow=False):
    """op (Op) log_softmax / softmax / logsumexp over the rows of `x` into `out`.

    x is C-contiguous; rows have length C (default: the last dimension of a
    2-D x), so an N-d array reduced over trailing axes needs no reshape.
    nanrow (log_softmax): a row whose max is not finite is NaN everywhere
    (PyTorch's result) instead of SciPy's -inf / NaN pattern."""
    if _is_half(x):   # float16 / bfloat16: _half.pxi
        return half_unary_rows(op, x, out, C, nanrow)
    cdef Py_ssize_t n, size = cnp.PyArray_SIZE(x)
    cdef int tn = _float_arr(x, "x"), nthr = _call_threads()
    if op < OP_LOG_SOFTMAX or op > OP_LOGSUMEXP:
        raise ValueError(f"op must be 0, 1 or 2, got {op}")
    if C < 0:
        C = _dim2(x, 1, "x")
    if C > 0:
        if size % C:
            raise ValueError(f"x: {size} elements are not whole rows of {C}")
        n = size // C
    else:
        n = cnp.PyArray_DIM(x, 0) if cnp.PyArray_NDIM(x) > 0 else 1
        if size != 0:
            raise ValueError("x: rows of length 0 but x is not empty")
    _like(out, tn, n if op == OP_LOGSUMEXP else size, "out", True, False)
    if op == OP_LOGSUMEXP and C == 0 and n > 0 and cnp.PyArray_SIZE(out) < n:
        raise ValueError("out: too small")
    if tn == cnp.NPY_FLOAT32:
        with nogil:
            _unary_run[float](op, <const float *>cnp.PyArray_DATA(x), n, C, <float *>cnp.PyArray_DATA(out),
                              nthr, nanrow)
    else:
        with nogil:
            _unary_run[double](op, <const double *>cnp.PyArray_DATA(x), n, C,
                               <double *>cnp.PyArray_DATA(out), nthr, nanrow)


def lse_rows_d(cnp.ndarray x not None, cnp.ndarray out not None):
    """The logsumexp of each row of 2-D float32/float64 `x` into float64 `out`
    (n,), not rounded to x's dtype (see fl_rows_impl.h's lse_rows_d)."""
    cdef int tn = _float_arr(x, "x"), nthr = _call_threads()
    cdef Py_ssize_t n = _dim2(x, 0, "x"), C = cnp.PyArray_DIM(x, 1)
    cdef Py_ssize_t cr = _chunk_rows(C), nch = (n + cr - 1) // cr, k, r0, m
    cdef int nt = _threads_for(nthr, n, C)
    cdef double *op
    cdef const void *xp = cnp.PyArray_DATA(x)
    _like(out, cnp.NPY_FLOAT64, n, "out", True, False)
    op = <double *>cnp.PyArray_DATA(out)
    with nogil:
        for k in prange(nch, num_threads=nt, schedule='dynamic'):
            r0 = k * cr
            m = cr if r0 + cr <= n else n - r0
            if tn == cnp.NPY_FLOAT32:
                K.f32.lse_rows_d(<const float *>xp + r0 * C, m, C, op + r0)
            else:
                K.f64.lse_rows_d(<const double *>xp + r0 * C, m, C, op + r0)


# ------------------------------------------------------- backward kernels --
cdef void _backward_block(int op, const real *go, const real *y, Py_ssize_t n, Py_ssize_t C,
                          real *gi) noexcept nogil:
    if real is float:
        if op == OP_LOG_SOFTMAX:
            K.f32.log_softmax_backward_rows(go, y, n, C, gi)
        else:
            K.f32.softmax_backward_rows(go, y, n, C, gi)
    else:
        if op == OP_LOG_SOFTMAX:
            K.f64.log_softmax_backward_rows(go, y, n, C, gi)
        else:
            K.f64.softmax_backward_rows(go, y, n, C, gi)


cdef void _backward_run(int op, const real *go, const real *y, Py_ssize_t n, Py_ssize_t C,
                        real *gi, int nthr) noexcept nogil:
    cdef Py_ssize_t cr = _chunk_rows(C), nch = (n + cr - 1) // cr, k, r0
    cdef int nt = _threads_for(nthr, n, C)
    if nt == 1:
        _backward_block(op, go, y, n, C, gi)
        return
    for k in prange(nch, num_threads=nt, schedule='dynamic'):
        r0 = k * cr
        _backward_block(op, go + r0 * C, y + r0 * C, (cr if r0 + cr <= n else n - r0), C, gi + r0 * C)


def backward_rows(int op, cnp.ndarray grad_output not None, cnp.ndarray output not None,
                  cnp.ndarray grad_input not None):
    """op (Op) 0/1 = log_softmax/softmax backward over the rows of 2-D arrays."""
    if _is_half(output):
        return half_backward_rows(op, grad_output, output, grad_input)
    cdef int tn = _float_arr(output, "output"), nthr = _call_threads()
    cdef Py_ssize_t n = _dim2(output, 0, "output"), C = cnp.PyArray_DIM(output, 1)
    if op != OP_LOG_SOFTMAX and op != OP_SOFTMAX:
        raise ValueError(f"op must be 0 or 1, got {op}")
    _like(grad_output, tn, n * C, "grad_output", False, False)
    _like(grad_input, tn, n * C, "grad_input", True, False)
    if tn == cnp.NPY_FLOAT32:
        with nogil:
            _backward_run[float](op, <const float *>cnp.PyArray_DATA(grad_output),
                                 <const float *>cnp.PyArray_DATA(output), n, C,
                                 <float *>cnp.PyArray_DATA(grad_input), nthr)
    else:
        with nogil:
            _backward_run[double](op, <const double *>cnp.PyArray_DATA(grad_output),
                                  <const double *>cnp.PyArray_DATA(output), n, C,
                                  <double *>cnp.PyArray_DATA(grad_input), nthr)


# ---------------------------------------------------------- target checks --
cdef inline Py_ssize_t _check_targets(const int64_t *t, Py_ssize_t n, Py_ssize_t C, int64_t ignore_index,
                                      const real *w, double *wsum) noexcept nogil:
    """Range-check class-index targets; sum w[t] over the rows not ignored
    (their count when w is NULL).  Returns the first bad row, or -1."""
    if real is float:
        return K.f32.check_targets(t, n, C, ignore_index, w, wsum)
    else:
        return K.f64.check_targets(t, n, C, ignore_index, w, wsum)


cdef double _sum_rows(const double *v, Py_ssize_t n) noexcept nogil:
    """Sum in a fixed order (4 interleaved partial sums, then combined), so
    the total does not depend on the thread count and is not one long chain
    of dependent additions.  (Explicit order: no compiler flag changes it.)"""
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


cdef double _sum_w(const real *w, Py_ssize_t C) noexcept nogil:
    """Sum of the class weights, left to right in double."""
    cdef double W = 0.0
    cdef Py_ssize_t j
    for j in range(C):
        W += w[j]
    return W


cdef int _targets_arg(cnp.ndarray target, Py_ssize_t n, str name="target") except -1:
    if cnp.PyArray_TYPE(target) != cnp.NPY_INT64:
        raise TypeError(f"{name}: expected an int64 array, got {target.dtype}")
    if not cnp.PyArray_IS_C_CONTIGUOUS(target):
        raise ValueError(f"{name}: expected a C-contiguous array")
    if cnp.PyArray_SIZE(target) != n:
        raise ValueError(f"{name}: expected {n} targets, got {cnp.PyArray_SIZE(target)}")
    return 0


# --------------------------------------------- cross-entropy, index targets --
cdef void _ce_index_run(const real *x, Py_ssize_t n, Py_ssize_t C, const int64_t *t, const real *w,
                        double W, int64_t ignore_index, double eps, double gscale, double *loss,
                        real *grad, int nthr, int ign_nan) noexcept nogil:
    cdef Py_ssize_t cr = _chunk_rows(C), nch = (n + cr - 1) // cr, k, r0, m
    cdef int nt = _threads_for(nthr, n, C)
    if nt == 1:
        if real is float:
            K.f32.ce_index_rows(x, n, C, t, w, W, ignore_index, eps, gscale, loss, grad, ign_nan)
        else:
            K.f64.ce_index_rows(x, n, C, t, w, W, ignore_index, eps, gscale, loss, grad, ign_nan)
        return
    for k in prange(nch, num_threads=nt, schedule='dynamic'):
        r0 = k * cr
        m = cr if r0 + cr <= n else n - r0
        if real is float:
            K.f32.ce_index_rows(x + r0 * C, m, C, t + r0, w, W, ignore_index, eps, gscale,
                                loss + r0, (grad + r0 * C) if grad != NULL else NULL, ign_nan)
        else:
            K.f64.ce_index_rows(x + r0 * C, m, C, t + r0, w, W, ignore_index, eps, gscale,
                                loss + r0, (grad + r0 * C) if grad != NULL else NULL, ign_nan)


cdef Py_ssize_t _index_rows(bint is_ce, const real *x, Py_ssize_t n, Py_ssize_t C,
                            const int64_t *t, const real *w, long long ignore_index, double eps,
                            int reduction, real *grad, double *lp, int ign_nan, int nthr,
                            double *wsum) noexcept nogil:
    """_index_run for one floating type."""
    cdef double W = <double>C, gscale
    cdef Py_ssize_t bad = _check_targets(t, n, C, ignore_index, w, wsum)
    if bad >= 0:
        return bad
    gscale = _grad_scale(reduction, wsum[0], eps)
    if is_ce:
        if w != NULL:
            W = _sum_w(w, C)
        _ce_index_run(x, n, C, t, w, W, ignore_index, eps, gscale, lp, grad, nthr, ign_nan)
    elif real is float:
        K.f32.nll_rows(x, n, C, t, w, ignore_index, gscale, lp, grad)
    else:
        K.f64.nll_rows(x, n, C, t, w, ignore_index, gscale, lp, grad)
    return -1


cdef Py_ssize_t _index_run(bint is_ce, int tn, const void *xp, Py_ssize_t n, Py_ssize_t C,
                           const int64_t *t, const void *wp, long long ignore_index, double eps,
                           int reduction, void *gp, double *lp, int ign_nan, int nthr,
                           double *wsum, double *total) noexcept nogil:
    """ce_index / nll over checked float32 (tn NPY_FLOAT32) or float64 memory: the
    targets are range-checked first (returns the first bad row, nothing written), then
    the rows run; *wsum and *total get the counted weight and the sum of the row losses."""
    cdef Py_ssize_t bad
    wsum[0] = 0.0
    total[0] = 0.0
    if tn == cnp.NPY_FLOAT32:
        bad = _index_rows(is_ce, <const float *>xp, n, C, t, <const float *>wp, ignore_index, eps,
                          reduction, <float *>gp, lp, ign_nan, nthr, wsum)
    else:
        bad = _index_rows(is_ce, <const double *>xp, n, C, t, <const double *>wp, ignore_index, eps,
                          reduction, <double *>gp, lp, ign_nan, nthr, wsum)
    if bad < 0:
        total[0] = _sum_rows(lp, n)
    return bad


cdef object _index_call(bint is_ce, cnp.ndarray x, cnp.ndarray target, object weight,
                        long long ignore_index, double eps, int reduction, object grad,
                        cnp.ndarray loss, int ign_nan):
    cdef int tn = _float_arr(x, "x"), nthr = _call_threads()
    cdef Py_ssize_t n = _dim2(x, 0, "x"), C = cnp.PyArray_DIM(x, 1), bad
    cdef double wsum, total
    _reduction(reduction)
    _targets_arg(target, n)
    _like(weight, tn, C, "weight")
    _like(grad, tn, n * C, "grad", True)
    _like(loss, cnp.NPY_FLOAT64, n, "loss", True, False)
    cdef const int64_t *t = <const int64_t *>cnp.PyArray_DATA(target)
    cdef double *lp = <double *>cnp.PyArray_DATA(loss)
    cdef const void *wp = _ptr(weight)
    cdef void *gp = _ptr(grad)
    cdef const void *xp = cnp.PyArray_DATA(x)
    with nogil:
        bad = _index_run(is_ce, tn, xp, n, C, t, wp, ignore_index, eps, reduction, gp, lp, ign_nan,
                         nthr, &wsum, &total)
    if bad >= 0:
        return bad, 0.0, 0.0
    return -1, wsum, total


def ce_index(cnp.ndarray x not None, cnp.ndarray target not None, object weight, long long ignore_index,
             double eps, int reduction, object grad, cnp.ndarray loss not None, bint ign_nan=False):
    """Cross-entropy with int64 class targets over the rows of 2-D `x`.

    reduction (Reduction): 0 none, 1 mean, 2 sum (sets the gradient's scale).
    loss: float64 (n,) OUT, per-row losses.  grad: None or OUT array like x
    (may be x itself).  ign_nan: the gradient of an ignored row is NaN where
    the row has no log-softmax (PyTorch's value) instead of 0.  Returns
    (bad_row, weight_sum, loss_sum); bad_row >= 0 means target[bad_row] is out
    of range and nothing else was computed.
    """
    if _is_half(x):
        return half_ce_index(x, target, weight, ignore_index, eps, reduction, grad, loss,
                             ign_nan=ign_nan)
    return _index_call(True, x, target, weight, ignore_index, eps, reduction, grad, loss, ign_nan)


cdef enum:     # ce_index_addr's `kind`
    _ADDR_F32 = 0
    _ADDR_F64 = 1
    _ADDR_F16 = 2
    _ADDR_BF16 = 3


def ce_index_addr(int kind, size_t x, size_t target, Py_ssize_t n, Py_ssize_t C,
                  long long ignore_index, int reduction, size_t grad, cnp.ndarray loss not None):
    """ce_index (no class weight, no smoothing, PyTorch's NaN gradient for ignored
    rows) on memory given by address: the training-loop call of fastlog.torch, where
    turning two tensors into ndarrays and one back would cost more than the kernel.

    kind: 0 float32, 1 float64, 2 float16, 3 bfloat16.  x: n x C C-contiguous
    elements of that kind; target: n C-contiguous int64; grad: 0 (the loss alone) or
    n x C writable elements of x's kind, not overlapping x.  The caller (fastlog.torch._kernels)
    has checked the tensors behind the addresses: CPU, strided, C-contiguous, those
    dtypes and shapes, alive for the call.  loss: float64 (n,) OUT.  Returns
    (bad_row, weight_sum, loss_sum) as ce_index does.
    """
    cdef int nthr = _call_threads(), tn
    cdef double wsum = 0.0, total = 0.0
    cdef Py_ssize_t bad
    if kind < _ADDR_F32 or kind > _ADDR_BF16:
        raise ValueError(f"kind must be 0 (float32), 1 (float64), 2 (float16) or 3 (bfloat16), got {kind}")
    if n < 0 or C <= 0:
        raise ValueError(f"n must be >= 0 and C > 0, got n={n}, C={C}")
    if n > 0 and (x == 0 or target == 0):
        raise ValueError("x and target must be non-null addresses")
    _reduction(reduction)
    _like(loss, cnp.NPY_FLOAT64, n, "loss", True, False)
    cdef double *lp = <double *>cnp.PyArray_DATA(loss)
    cdef const int64_t *t = <const int64_t *>target
    if kind >= _ADDR_F16:
        return _half_index_run(FL_KIND_F16 if kind == _ADDR_F16 else FL_KIND_BF16,
                               <const uint16_t *>x, n, C, t, NULL, ignore_index, 0.0, reduction,
                               None, True, True, lp, <uint16_t *>grad)
    tn = cnp.NPY_FLOAT32 if kind == _ADDR_F32 else cnp.NPY_FLOAT64
    with nogil:
        bad = _index_run(True, tn, <const void *>x, n, C, t, NULL, ignore_index, 0.0, reduction,
                         <void *>grad, lp, True, nthr, &wsum, &total)
    if bad >= 0:
        return bad, 0.0, 0.0
    return -1, wsum, total


# ---------------------------------------- cross-entropy, probability targets --
cdef void _ce_prob_run(const real *x, Py_ssize_t n, Py_ssize_t C, const real *t, const real *w,
                       double eps, double gscale, double *loss, real *grad, int nthr) noexcept nogil:
    cdef Py_ssize_t cr = _chunk_rows(C), nch = (n + cr - 1) // cr, k, r0, m
    cdef int nt = _threads_for(nthr, n, C)
    if nt == 1:
        if real is float:
            K.f32.ce_prob_rows(x, n, C, t, w, eps, gscale, loss, grad)
        else:
            K.f64.ce_prob_rows(x, n, C, t, w, eps, gscale, loss, grad)
        return
    for k in prange(nch, num_threads=nt, schedule='dynamic'):
        r0 = k * cr
        m = cr if r0 + cr <= n else n - r0
        if real is float:
            K.f32.ce_prob_rows(x + r0 * C, m, C, t + r0 * C, w, eps, gscale, loss + r0,
                               (grad + r0 * C) if grad != NULL else NULL)
        else:
            K.f64.ce_prob_rows(x + r0 * C, m, C, t + r0 * C, w, eps, gscale, loss + r0,
                               (grad + r0 * C) if grad != NULL else NULL)


def ce_prob(cnp.ndarray x not None, cnp.ndarray target not None, object weight, double eps, double gscale,
            object grad, cnp.ndarray loss not None):
    """Cross-entropy with class-probability targets (same shape and dtype as x).
    Returns the sum of the per-row losses (written to `loss`)."""
    if _is_half(x):
        return half_ce_prob(x, target, weight, eps, gscale, grad, loss)
    cdef int tn = _float_arr(x, "x"), nthr = _call_threads()
    cdef Py_ssize_t n = _dim2(x, 0, "x"), C = cnp.PyArray_DIM(x, 1)
    cdef double *lp
    cdef void *wp = NULL
    cdef void *gp = NULL
    cdef double total
    _like(target, tn, n * C, "target", False, False)
    _like(weight, tn, C, "weight")
    _like(grad, tn, n * C, "grad", True)
    _like(loss, cnp.NPY_FLOAT64, n, "loss", True, False)
    lp = <double *>cnp.PyArray_DATA(loss)
    wp = _ptr(weight)
    gp = _ptr(grad)
    if tn == cnp.NPY_FLOAT32:
        with nogil:
            _ce_prob_run[float](<const float *>cnp.PyArray_DATA(x), n, C,
                                <const float *>cnp.PyArray_DATA(target), <const float *>wp,
                                eps, gscale, lp, <float *>gp, nthr)
            total = _sum_rows(lp, n)
    else:
        with nogil:
            _ce_prob_run[double](<const double *>cnp.PyArray_DATA(x), n, C,
                                 <const double *>cnp.PyArray_DATA(target), <const double *>wp,
                                 eps, gscale, lp, <double *>gp, nthr)
            total = _sum_rows(lp, n)
    return total


# ------------------------------------- CE gradient given the log-sum-exp --
cdef void _grad_lse_run(const real *x, Py_ssize_t n, Py_ssize_t m, const double *lse, const double *k,
                        const double *s, const int64_t *ycol, const real *w, double W, real *out,
                        int nthr) noexcept nogil:
    cdef Py_ssize_t cr = _chunk_rows(m), nch = (n + cr - 1) // cr, c, r0, mm
    cdef int nt = _threads_for(nthr, n, m)
    if nt == 1:
        if real is float:
            K.f32.ce_grad_lse_rows(x, n, m, lse, k, s, ycol, w, W, out)
        else:
            K.f64.ce_grad_lse_rows(x, n, m, lse, k, s, ycol, w, W, out)
        return
    for c in prange(nch, num_threads=nt, schedule='dynamic'):
        r0 = c * cr
        mm = cr if r0 + cr <= n else n - r0
        if real is float:
            K.f32.ce_grad_lse_rows(x + r0 * m, mm, m, lse + r0, k + r0, s + r0, ycol + r0, w, W,
                                   out + r0 * m)
        else:
            K.f64.ce_grad_lse_rows(x + r0 * m, mm, m, lse + r0, k + r0, s + r0, ycol + r0, w, W,
                                   out + r0 * m)


def ce_grad_lse(cnp.ndarray x not None, cnp.ndarray lse not None, cnp.ndarray k not None,
                cnp.ndarray s not None, cnp.ndarray ycol not None, object weight, double W,
                cnp.ndarray out not None):
    """The cross-entropy gradient of the rows of 2-D `x` (a block of m columns of
    the classes) given each row's log-sum-exp over all classes:
    out[i, j] = (k_i + s_i W) exp(x[i, j] - lse_i) - s_i w_j - [j == ycol_i] k_i.
    lse, k, s: float64 (n,); ycol: int64 (n,), the target's column in the
    block or -1; weight: None or the block's (m,) class weights of x's dtype;
    W: the weights' sum over all classes.  out: like x (may be x itself)."""
    cdef int tn = _float_arr(x, "x"), nthr = _call_threads()
    cdef Py_ssize_t n = _dim2(x, 0, "x"), m = cnp.PyArray_DIM(x, 1)
    _like(lse, cnp.NPY_FLOAT64, n, "lse", False, False)
    _like(k, cnp.NPY_FLOAT64, n, "k", False, False)
    _like(s, cnp.NPY_FLOAT64, n, "s", False, False)
    _targets_arg(ycol, n, "ycol")
    _like(weight, tn, m, "weight")
    _like(out, tn, n * m, "out", True, False)
    cdef const double *lp = <const double *>cnp.PyArray_DATA(lse)
    cdef const double *kp = <const double *>cnp.PyArray_DATA(k)
    cdef const double *sp = <const double *>cnp.PyArray_DATA(s)
    cdef const int64_t *yp = <const int64_t *>cnp.PyArray_DATA(ycol)
    cdef void *wp = _ptr(weight)
    if tn == cnp.NPY_FLOAT32:
        with nogil:
            _grad_lse_run[float](<const float *>cnp.PyArray_DATA(x), n, m, lp, kp, sp, yp,
                                 <const float *>wp, W, <float *>cnp.PyArray_DATA(out), nthr)
    else:
        with nogil:
            _grad_lse_run[double](<const double *>cnp.PyArray_DATA(x), n, m, lp, kp, sp, yp,
                                  <const double *>wp, W, <double *>cnp.PyArray_DATA(out), nthr)


# -------------------------------------------------------------------- NLL --
def nll(cnp.ndarray x not None, cnp.ndarray target not None, object weight, long long ignore_index,
        int reduction, object grad, cnp.ndarray loss not None):
    """NLL over the rows of 2-D log-probabilities `x`; same contract as ce_index."""
    if _is_half(x):
        return half_nll(x, target, weight, ignore_index, reduction, grad, loss)
    return _index_call(False, x, target, weight, ignore_index, 0.0, reduction, grad, loss, 0)


# ---------------------------------------------------- BCE with logits -------
cdef double _bce_run(const real *x, const real *y, const real *w, const real *pw, Py_ssize_t n,
                     double gscale, real *loss, real *grad, int nthr) noexcept nogil:
    """bce_n over fixed chunks of CHUNK_ELEMS elements, threads over chunks;
    chunk sums added in chunk order.  Whether the sum is chunked depends on n
    only (never on the thread count: one thread walks the same chunks), so
    the total is bit-identical for any thread count."""
    cdef Py_ssize_t nch = (n + CHUNK_ELEMS - 1) // CHUNK_ELEMS, k, j0, m
    cdef bint chunked = n >= PAR_MIN_ELEMS and nch > 1
    cdef int nt = nthr if chunked else 1
    cdef double total = 0.0
    cdef double *part
    if nt > nch:
        nt = <int>nch
    if nt < 1:
        nt = 1
    if not chunked:
        if real is float:
            return K.f32.bce_n(x, y, w, pw, n, gscale, loss, grad)
        else:
            return K.f64.bce_n(x, y, w, pw, n, gscale, loss, grad)
    part = <double *>malloc(nch * sizeof(double))
    if part == NULL:
        return NAN
    for k in prange(nch, num_threads=nt, schedule='dynamic'):
        j0 = k * CHUNK_ELEMS
        m = CHUNK_ELEMS if j0 + CHUNK_ELEMS <= n else n - j0
        if real is float:
            part[k] = K.f32.bce_n(x + j0, y + j0, (w + j0) if w != NULL else NULL,
                                  (pw + j0) if pw != NULL else NULL, m, gscale,
                                  (loss + j0) if loss != NULL else NULL,
                                  (grad + j0) if grad != NULL else NULL)
        else:
            part[k] = K.f64.bce_n(x + j0, y + j0, (w + j0) if w != NULL else NULL,
                                  (pw + j0) if pw != NULL else NULL, m, gscale,
                                  (loss + j0) if loss != NULL else NULL,
                                  (grad + j0) if grad != NULL else NULL)
    total = _sum_rows(part, nch)
    free(part)
    return total


def bce_with_logits(cnp.ndarray x not None, cnp.ndarray y not None, object w, object pw, double gscale,
                    object loss, object grad):
    """Element-wise over flat contiguous arrays of one dtype; w/pw None or
    arrays of x's size; loss None or OUT like x (per-element losses), grad
    None or OUT like x.  Returns the sum of the losses (float64)."""
    if _is_half(x):
        return half_bce_with_logits(x, y, w, pw, gscale, loss, grad)
    cdef int tn = _float_arr(x, "x"), nthr = _call_threads()
    cdef Py_ssize_t n = cnp.PyArray_SIZE(x)
    cdef void *wp = NULL
    cdef void *pp = NULL
    cdef void *lp = NULL
    cdef void *gp = NULL
    cdef double total
    _like(y, tn, n, "y", False, False)
    _like(w, tn, n, "w")
    _like(pw, tn, n, "pw")
    _like(loss, tn, n, "loss", True)
    _like(grad, tn, n, "grad", True)
    wp = _ptr(w)
    pp = _ptr(pw)
    lp = _ptr(loss)
    gp = _ptr(grad)
    if tn == cnp.NPY_FLOAT32:
        with nogil:
            total = _bce_run[float](<const float *>cnp.PyArray_DATA(x), <const float *>cnp.PyArray_DATA(y),
                                    <const float *>wp, <const float *>pp, n, gscale, <float *>lp, <float *>gp,
                                    nthr)
    else:
        with nogil:
            total = _bce_run[double](<const double *>cnp.PyArray_DATA(x), <const double *>cnp.PyArray_DATA(y),
                                     <const double *>wp, <const double *>pp, n, gscale, <double *>lp,
                                     <double *>gp, nthr)
    return total


# --------------------------------------------------- the math, for tests --
cdef class Kernels:
    """One ISA level's kernel table (the exp/log math, for tests that check
    every level's; `targets` holds one per compiled level).  The module-level
    functions use the table select() chose."""
    cdef const fl_ktab *tab
    cdef readonly str isa

    def __cinit__(self, str level):
        if level not in cpu_levels():
            raise ValueError(f"ISA level {level!r} is not available on this CPU/build "
                             f"(available: {', '.join(cpu_levels())})")
        self.tab = fl_ktab_for(LEVELS.index(level))
        self.isa = level

    def __repr__(self):
        return f"<fastlog._core.Kernels {self.isa}>"

    def exp_array(self, cnp.ndarray x not None, cnp.ndarray out not None, bint nonpos=False):
        _math_call(self.tab, 1 if nonpos else 0, x, out)

    def log_array(self, cnp.ndarray x not None, cnp.ndarray out not None):
        _math_call(self.tab, 2, x, out)


#: Every compiled level -> its Kernels, or None where this CPU lacks the
#: level's features (as NumPy's numpy._core._simd.targets).
targets = {lv: (Kernels(lv) if lv in cpu_levels() else None) for lv in built_levels()}


cdef int _math_call(const fl_ktab *tab, int which, cnp.ndarray x, cnp.ndarray out) except -1:
    cdef int tn = _float_arr(x, "x")
    cdef Py_ssize_t n = cnp.PyArray_SIZE(x)
    cdef void *xp = cnp.PyArray_DATA(x)
    cdef void *op
    _like(out, tn, n, "out", True, False)
    op = cnp.PyArray_DATA(out)
    with nogil:
        if tn == cnp.NPY_FLOAT32:
            if which == 0:
                tab.f32.exp_n(<const float *>xp, n, <float *>op)
            elif which == 1:
                tab.f32.exp_nonpos_n(<const float *>xp, n, <float *>op)
            else:
                tab.f32.log_n(<const float *>xp, n, <float *>op)
        else:
            if which == 0:
                tab.f64.exp_n(<const double *>xp, n, <double *>op)
            elif which == 1:
                tab.f64.exp_nonpos_n(<const double *>xp, n, <double *>op)
            else:
                tab.f64.log_n(<const double *>xp, n, <double *>op)
    return 0


def exp_array(cnp.ndarray x not None, cnp.ndarray out not None, bint nonpos=False):
    """fastlog's own vectorized exp over a contiguous float32/float64 array.
    nonpos=True uses the variant the softmax kernels call (valid for x <= 0)."""
    _math_call(K, 1 if nonpos else 0, x, out)


def log_array(cnp.ndarray x not None, cnp.ndarray out not None):
    """fastlog's own vectorized log over a contiguous float32/float64 array."""
    _math_call(K, 2, x, out)


# ------------------------------------------------------------ other parts --
# Each part below is its own file; it can use everything defined above.
include "_blas.pxi"
include "_mlp.pxi"
include "_linear_ce.pxi"
include "_half.pxi"
