"""The floor of each row: the least time its operation can take on this machine.

A row can have up to three floors, each a least time measured in the same run;
its floor is the largest of them, and "x floor" = fastlog's time / that floor
(1.00 = at the limit).  No implementation can beat a floor: a row below its
floor means the floor (or the timing) is wrong, and the report says so.

memory
    The bytes the operation must read and write (``Group.floor``, see
    :mod:`.groups`), split into reads and writes (``traffic``), against
    three bandwidths measured on arrays of the operation's own N x C size
    with the row's thread count: a read-only pass (``ndarray.sum``), a
    write-only pass (``memset``, the fastest way to write: it beats a copy's
    rate per byte, so an operation that mostly writes, such as NLL's
    gradient, would beat a floor taken at the copy's rate) and a copy
    (``np.copyto``: each byte copied is read once and written once).  The
    floor is the largest of: the reads at the read rate, the writes at the
    write rate, and the part that is both read and written (twice the
    smaller of the two) at the copy rate.  Page faults of a freshly
    allocated output are not counted: the floor is the memory limit with the
    pages already mapped.  Arrays under 4 MiB live in cache and get no memory
    floor.
exp
    The softmax family and the losses that take logits evaluate at least one
    exponential per element (N x C of them; ``EXP_GROUPS``).  Floor: that
    count at the best exp throughput measured in this run on an in-cache
    array with one thread (the best of fastlog's own vectorized exp, NumPy's
    ``np.exp`` and, when it is loaded, ``torch.exp``), times the thread
    count.  Half-precision rows compute in float32: float32's rate.  Every
    size gets it (in cache the exponentials, not memory, are the limit).
gemm
    The MLP and fused linear + cross-entropy: their GEMM flops at the best
    rate SciPy's BLAS (the one fastlog calls) reached at the operation's own
    GEMM shapes (``gemm_shapes``: each product of the step, with its
    transposes), timed alone at the row's thread count and dtype.  A square
    1024^3 GEMM is not a floor: BLAS can run faster at the operation's
    shapes, and the old floor from it was beaten.

With one thread the passes, exponentials and GEMMs are timed in process CPU
time, which time slices given to other processes do not inflate; with more
threads, in wall time.  Every measurement keeps its best pass (of at least
`repeats` passes and at least 50 ms of them): other processes can only slow a
pass down.
"""
import sys
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from .data import MLP_SIZES
from .groups import GROUPS
from .timing import pinned_threads

__all__ = ["copy_rate", "read_rate", "write_rate", "traffic", "gemm_rate", "gemm_shape_rate", "gemm_shapes", "exp_rates", "exp_count",
           "EXP_GROUPS", "FloorMeter", "MIN_ARRAY_BYTES"]

MIN_ARRAY_BYTES = 4 * 2**20
EXP_SIZE = 2**16      # elements of the in-cache array the exp rate is measured on (256 KiB of float32)

# The operations that evaluate at least one exponential per input element (N x C): the
# softmax family and the losses that take logits.  NLL takes log-probabilities: none.
EXP_GROUPS = ("log_softmax", "softmax", "logsumexp", "cross_entropy", "cross_entropy_fwd_bwd",
              "bce_with_logits")


def _clock(threads):
    return time.process_time if threads == 1 else time.perf_counter


# Each least time is the best of at least `repeats` passes and of at least BUDGET_S seconds of
# passes: a pass of 0.1 ms repeated 5 times leaves the best to chance on a busy machine.
BUDGET_S = 0.05
MAX_PASSES = 1000


def _passes_for(first_s, repeats):
    """How many timed passes: `repeats`, or more to fill BUDGET_S (at most MAX_PASSES)."""
    return int(min(MAX_PASSES, max(repeats, np.ceil(BUDGET_S / max(first_s, 1e-9)))))


def _passes(threads, nbytes, work_of, moved, repeats):
    """(median, min, max) of ``moved / time`` over `repeats` timed passes of ``work_of(part)`` on
    `threads` slices of a float64 array of `nbytes` bytes, after one warm-up pass."""
    clock = _clock(threads)
    n = max(threads, nbytes // 8)
    src, dst = np.ones(n), np.empty(n)
    bounds = np.linspace(0, n, threads + 1).astype(int)
    parts = [(dst[a:b], src[a:b]) for a, b in zip(bounds[:-1], bounds[1:])]
    rates = []
    with ThreadPoolExecutor(max_workers=threads) as pool:
        def once():
            if threads == 1:
                work_of(parts[0])
            else:
                list(pool.map(work_of, parts))
        t0 = clock()
        once()
        for _ in range(_passes_for(clock() - t0, max(1, repeats))):
            t0 = clock()
            once()
            rates.append(moved(src.nbytes) / max(clock() - t0, 1e-9))
    return float(np.median(rates)), float(min(rates)), float(max(rates))


def copy_rate(nbytes, threads=1, repeats=5):
    """(median, min, max) bytes/s of ``2 * nbytes / time`` for a copy of `nbytes` bytes
    split across `threads` threads, after one warm-up copy that maps the pages.

    Parameters
    ----------
    nbytes : int
        Size of the copied array.
    threads : int, default 1
        Threads, each copying a slice.
    repeats : int, default 5
        Timed copies (after one warm-up copy).

    Examples
    --------
    >>> from fastlog.bench.floors import copy_rate
    >>> median, low, high = copy_rate(1 << 16, repeats=3)
    >>> 0 < low <= median <= high
    True
    """
    return _passes(threads, nbytes, lambda p: np.copyto(*p), lambda b: 2.0 * b, repeats)


def read_rate(nbytes, threads=1, repeats=5):
    """(median, min, max) bytes/s of ``nbytes / time`` for reading `nbytes` bytes once (a sum)
    split across `threads` threads, after one warm-up pass.

    Parameters
    ----------
    nbytes : int
        Size of the array read.
    threads : int, default 1
        Threads, each reading a slice.
    repeats : int, default 5
        Timed passes (after one warm-up pass).

    Examples
    --------
    >>> from fastlog.bench.floors import read_rate
    >>> median, low, high = read_rate(1 << 16, repeats=3)
    >>> 0 < low <= median <= high
    True
    """
    return _passes(threads, nbytes, lambda p: p[1].sum(), float, repeats)


def write_rate(nbytes, threads=1, repeats=5):
    """(median, min, max) bytes/s of ``nbytes / time`` for writing `nbytes` bytes (``memset``,
    C's fastest way to write memory) split across `threads` threads, after one warm-up pass.

    Parameters
    ----------
    nbytes : int
        Size of the array written.
    threads : int, default 1
        Threads, each writing a slice.
    repeats : int, default 5
        Timed passes (after one warm-up pass).

    Examples
    --------
    >>> from fastlog.bench.floors import write_rate
    >>> median, low, high = write_rate(1 << 16, repeats=3)
    >>> 0 < low <= median <= high
    True
    """
    import ctypes

    return _passes(threads, nbytes, lambda p: ctypes.memset(p[0].ctypes.data, 0, p[0].nbytes), float, repeats)


# What an operation writes when it is not an N x C array (the rest of its floor's bytes are reads).
_OUTPUT = {"logsumexp": "one value per row", "cross_entropy": "one scalar"}


def traffic(group, shape, dtype):
    """(bytes read, bytes written) of a memory-bound operation: its floor's bytes
    (``Group.floor``), of which the N x C output or gradient is written (N values
    for logsumexp, nothing for the cross-entropy forward's scalar) and the rest read.

    Parameters
    ----------
    group : str
        A group with a memory floor.
    shape : tuple of int
        (N, C).
    dtype : str
        The dtype.

    Examples
    --------
    >>> from fastlog.bench.floors import traffic
    >>> traffic("cross_entropy_fwd_bwd", (4096, 1000), "float32")   # logits + targets in, gradient out
    (16416768, 16384000)
    >>> traffic("logsumexp", (4096, 1000), "float32")
    (16384000, 16384)
    """
    from .data import itemsize

    n, c = shape[0], shape[1]
    total = GROUPS[group].floor(shape, dtype).amount
    out = _OUTPUT.get(group)
    written = (n * itemsize(dtype) if out == "one value per row" else 0 if out == "one scalar"
               else n * c * itemsize(dtype))
    return total - written, written


def _np_dtype(dtype):
    return np.float32 if dtype == "float32" else np.float64


def gemm_shape_rate(m, n, k, dtype, threads=1, trans_a=False, trans_b=False, repeats=5, clock=None):
    """Best flops/s of one row-major GEMM ``C (m x n) = op(A) @ op(B)`` through SciPy's BLAS.

    The product is computed into a preallocated C by the call fastlog's own
    kernels make (``fastlog._core.gemm``: ``cython_blas`` sgemm/dgemm), with the
    BLAS pinned to `threads` threads; ``2 m n k`` flops over the best of
    `repeats` timed calls (more for a small product: at least 50 ms of them) after one warm-up.

    Parameters
    ----------
    m, n, k : int
        The product's dimensions: op(A) is m x k, op(B) is k x n.
    dtype : {'float32', 'float64'}
        sgemm or dgemm.
    threads : int, default 1
        BLAS threads.
    trans_a, trans_b : bool, default False
        Whether A is stored as k x m (B as n x k) and used transposed.
    repeats : int, default 5
        Timed GEMMs.
    clock : callable, optional
        A clock in seconds (default: CPU time for one thread, wall time for more).

    Examples
    --------
    >>> from fastlog.bench.floors import gemm_shape_rate
    >>> gemm_shape_rate(64, 128, 784, "float32", trans_b=True, repeats=2) > 0
    True
    """
    from .. import _core

    clock = clock or _clock(threads)
    t = _np_dtype(dtype)
    rng = np.random.default_rng(0)
    A = rng.random((k, m) if trans_a else (m, k)).astype(t)
    B = rng.random((n, k) if trans_b else (k, n)).astype(t)
    C = np.zeros((m, n), t)
    best = np.inf
    with pinned_threads(threads):
        t0 = clock()
        _core.gemm(A, B, C, trans_a, trans_b)
        for _ in range(_passes_for(clock() - t0, max(1, repeats))):
            t0 = clock()
            _core.gemm(A, B, C, trans_a, trans_b)
            best = min(best, max(clock() - t0, 1e-9))
    return 2.0 * m * n * k / best


def gemm_rate(dtype, threads=1, n=1024, repeats=5, clock=None):
    """Best flops/s of an n x n x n GEMM (SciPy's BLAS sgemm/dgemm) with `threads` threads
    (`clock`: default CPU time for one thread, wall time for more).

    A reference figure, not a floor: see :func:`gemm_shape_rate` and the
    module docstring.

    Parameters
    ----------
    dtype : {'float32', 'float64'}
        sgemm or dgemm.
    threads : int, default 1
        BLAS threads (pinned for the measurement).
    n : int, default 1024
        The matrices are n x n.
    repeats : int, default 5
        Timed GEMMs (after one warm-up).
    clock : callable, optional
        A clock in seconds (default: CPU time for one thread, wall time for more).

    Examples
    --------
    >>> from fastlog.bench.floors import gemm_rate
    >>> gemm_rate("float32", n=64, repeats=2) > 0
    True
    """
    return gemm_shape_rate(n, n, n, dtype, threads, repeats=repeats, clock=clock)


def gemm_shapes(group, shape):
    """The GEMMs one call of a compute-bound operation performs: ``[(m, n, k, trans_a, trans_b)]``.

    Row-major ``C (m x n) = op(A) @ op(B)``, as fastlog computes them: the MLP
    step's forward products ``X @ W.T``, weight gradients ``G.T @ X`` and
    input gradients ``G @ W`` (none for the first layer); linear +
    cross-entropy's logits ``X @ W.T``, ``dX = G @ W`` and ``dW = G.T @ X``.
    Their ``2 m n k`` flops add up to the group's floor amount.

    Parameters
    ----------
    group : str
        'mlp_train', 'mlp_predict' or 'linear_cross_entropy' (others: []).
    shape : tuple of int
        (batch,) or (N, D, V).

    Examples
    --------
    >>> from fastlog.bench.floors import gemm_shapes
    >>> gemm_shapes("mlp_predict", (64,))
    [(64, 128, 784, False, True), (64, 64, 128, False, True), (64, 10, 64, False, True)]
    >>> gemm_shapes("linear_cross_entropy", (256, 512, 32000))
    [(256, 32000, 512, False, True), (256, 512, 32000, False, False), (32000, 512, 256, True, False)]
    """
    if group in ("mlp_train", "mlp_predict"):
        B = shape[0]
        layers = list(zip(MLP_SIZES[:-1], MLP_SIZES[1:]))
        out = [(B, o, i, False, True) for i, o in layers]
        if group == "mlp_train":
            out += [(o, i, B, True, False) for i, o in layers]
            out += [(B, i, o, False, False) for i, o in layers[1:]]
        return out
    if group == "linear_cross_entropy":
        N, D, V = shape
        return [(N, V, D, False, True), (N, D, V, False, False), (V, D, N, True, False)]
    return []


def exp_count(group, shape):
    """The exponentials an operation must evaluate at least: N x C for ``EXP_GROUPS``, else 0.

    Parameters
    ----------
    group : str
        A group name.
    shape : tuple of int
        The case's shape.

    Examples
    --------
    >>> from fastlog.bench.floors import exp_count
    >>> exp_count("cross_entropy_fwd_bwd", (4096, 1000)), exp_count("nll", (4096, 1000))
    (4096000, 0)
    """
    return int(np.prod(shape)) if group in EXP_GROUPS else 0


def exp_rates(dtype, n=EXP_SIZE, repeats=20):
    """{implementation: best exponentials per second} with one thread on an in-cache array.

    fastlog's own vectorized exp (the variant its softmax kernels call),
    ``np.exp`` and, when ``torch`` is already imported, ``torch.exp``; each
    timed in CPU time, writing into a preallocated output, best of `repeats` passes (more: at least
    50 ms of them).

    Parameters
    ----------
    dtype : {'float32', 'float64'}
        The dtype of the array.
    n : int
        Elements (default 65536).
    repeats : int, default 20
        Timed passes per implementation.

    Examples
    --------
    >>> from fastlog.bench.floors import exp_rates
    >>> rates = exp_rates("float32", n=4096, repeats=3)
    >>> sorted(rates)[:2], all(r > 0 for r in rates.values())
    (['fastlog', 'numpy'], True)
    """
    from .. import _core

    t = _np_dtype(dtype)
    x = -10.0 * np.random.default_rng(0).random(n).astype(t)     # x <= 0, as after the max shift
    out = np.empty_like(x)
    impls = {"fastlog": lambda: _core.exp_array(x, out, True), "numpy": lambda: np.exp(x, out=out)}
    torch = sys.modules.get("torch")
    if torch is not None:
        tx, tout = torch.from_numpy(x), torch.from_numpy(out)
        impls["torch"] = lambda: torch.exp(tx, out=tout)
    rates = {}
    with pinned_threads(1):
        for name, fn in impls.items():
            t0 = time.process_time()
            fn()
            best = np.inf
            for _ in range(_passes_for(time.process_time() - t0, max(1, repeats))):
                t0 = time.process_time()
                fn()
                best = min(best, max(time.process_time() - t0, 1e-9))
            rates[name] = n / best
    return rates


class FloorMeter:
    """Measures (once per array size, dtype, GEMM shape and thread count) and returns each row's floors.

    Parameters
    ----------
    repeats : int, default 5
        Passes per bandwidth / GEMM-rate measurement.
    exp_size : int, default 65536
        Elements of the in-cache array the exp throughput is measured on.

    Examples
    --------
    >>> from fastlog.bench.floors import FloorMeter
    >>> from fastlog.bench.presets import Case
    >>> meter = FloorMeter(repeats=1, exp_size=4096)
    >>> f = meter.floor(Case("softmax", (64, 10), "float32", 1))     # in cache: exp floor only
    >>> f["bound"], "memory" in f, f["exp"]["count"]
    ('exp', False, 640)
    >>> meter.floor(Case("nll", (64, 10), "float32", 1)) is None     # in cache, no exponentials
    True
    >>> f = meter.floor(Case("mlp_predict", (64,), "float32", 1))
    >>> f["bound"], f["gemm"]["flops"], f["seconds"] > 0
    ('gemm', 13975552, True)
    """

    def __init__(self, repeats=5, exp_size=EXP_SIZE):
        self.repeats, self.exp_size = repeats, exp_size
        self.bandwidth = {}   # (nbytes, threads) -> {"copy"|"read"|"write": (median, min, max)} bytes/s
        self.gemm = {}        # (dtype, threads, m, n, k, trans_a, trans_b) -> flops/s
        self.exp = {}         # dtype -> {implementation: exponentials/s, one thread}
        self.rows = {}        # Case -> floor dict (what floor() returned)

    def floor(self, case):
        """A dict describing the floors of `case`, or None (no floor for this row).

        Parameters
        ----------
        case : Case
            The row.

        Returns
        -------
        dict or None
            ``seconds`` (the largest floor), ``bound`` (which one: 'memory',
            'exp' or 'gemm'), and one entry per floor the row has: ``memory``
            (``bytes``, ``read``, ``written``, ``array_bytes``, ``rate``: bytes
            over seconds, ``seconds``),
            ``exp`` (``count``, ``rate`` in exponentials/s for the row's
            threads, ``seconds``), ``gemm`` (``flops``, ``rate`` in flops/s,
            ``at``: the GEMM shape that reached it, ``seconds``).  None for a
            row with none (an in-cache array without exponentials).

        Examples
        --------
        >>> from fastlog.bench.floors import FloorMeter
        >>> from fastlog.bench.presets import Case
        >>> f = FloorMeter(repeats=1, exp_size=4096).floor(Case("softmax", (1024, 1024), "float32", 1))
        >>> f["memory"]["bytes"], f["exp"]["count"], f["seconds"] == max(f["memory"]["seconds"], f["exp"]["seconds"])
        (8388608, 1048576, True)
        """
        if case not in self.rows:
            self.rows[case] = self._floor(case)
        return self.rows[case]

    def _floor(self, case):
        g = GROUPS[case.group]
        if g.floor is None:
            return None
        f = g.floor(case.shape, case.dtype)
        parts = {}
        if f.kind == "memory":
            if f.array_bytes >= MIN_ARRAY_BYTES:
                b = self._bandwidth(f.array_bytes, case.threads)
                r, w = traffic(case.group, case.shape, case.dtype)
                both = 2 * min(r, w)
                secs = max(r / b["read"][2], w / b["write"][2], both / b["copy"][2])   # best passes
                parts["memory"] = {"bytes": f.amount, "read": r, "written": w, "array_bytes": f.array_bytes,
                                   "rate": f.amount / secs, "seconds": secs}
            count = exp_count(case.group, case.shape)
            if count:
                rate = self._exp_rate(case.dtype) * case.threads
                parts["exp"] = {"count": count, "rate": rate, "seconds": count / rate}
        else:
            shapes = gemm_shapes(case.group, case.shape)
            rates = [(self._gemm_rate(case.dtype, case.threads, s), s) for s in shapes]
            rate, at = max(rates, key=lambda r: r[0])
            parts["gemm"] = {"flops": f.amount, "rate": rate, "at": list(at), "seconds": f.amount / rate}
        if not parts:
            return None
        bound = max(parts, key=lambda k: parts[k]["seconds"])
        return {"seconds": parts[bound]["seconds"], "bound": bound, **parts}

    def _bandwidth(self, nbytes, threads):
        key = (nbytes, threads)
        if key not in self.bandwidth:
            self.bandwidth[key] = {"copy": copy_rate(nbytes, threads, self.repeats),
                                   "read": read_rate(nbytes, threads, self.repeats),
                                   "write": write_rate(nbytes, threads, self.repeats)}
        return self.bandwidth[key]

    def _exp_rate(self, dtype):
        dt = "float64" if dtype == "float64" else "float32"   # half precision computes in float32
        if dt not in self.exp:
            self.exp[dt] = exp_rates(dt, self.exp_size, max(5, 4 * self.repeats))
        return max(self.exp[dt].values())

    def _gemm_rate(self, dtype, threads, s):
        key = (dtype, threads) + tuple(s)
        if key not in self.gemm:
            m, n, k, ta, tb = s
            self.gemm[key] = gemm_shape_rate(m, n, k, dtype, threads, ta, tb, self.repeats)
        return self.gemm[key]

    def to_dict(self):
        """What was measured, for the JSON report: bandwidths, exp and GEMM rates, each row's floors.

        Examples
        --------
        >>> from fastlog.bench.floors import FloorMeter
        >>> from fastlog.bench.presets import Case
        >>> meter = FloorMeter(repeats=1, exp_size=4096)
        >>> _ = meter.floor(Case("mlp_predict", (64,), "float32", 1))
        >>> d = meter.to_dict()
        >>> sorted(d), [g["dtype"] for g in d["gemm"]], d["rows"][0]["group"]
        (['bandwidth', 'exp', 'gemm', 'repeats', 'rows'], ['float32', 'float32', 'float32'], 'mlp_predict')
        """
        return {"repeats": self.repeats,
                "bandwidth": [{"array_bytes": k[0], "threads": k[1], "bytes_per_s": v["copy"][0],
                               "min": v["copy"][1], "max": v["copy"][2], "read_max": v["read"][2],
                               "write_max": v["write"][2]}
                              for k, v in self.bandwidth.items()],
                "exp": [{"dtype": dt, "n": self.exp_size, "per_s": rates} for dt, rates in self.exp.items()],
                "gemm": [{"dtype": k[0], "threads": k[1], "shape": list(k[2:]), "flops_per_s": v}
                         for k, v in self.gemm.items()],
                "rows": [dict(group=c.group, shape=list(c.shape), dtype=c.dtype, threads=c.threads, **f)
                         for c, f in self.rows.items() if f is not None]}
