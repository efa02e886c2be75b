"""The floor of each row: the least time its operation can take on this machine.

Memory-bound operations: the bytes the operation must read and write (see
``Group.floor``) divided by the bandwidth of a read+write pass (``np.copyto``)
over arrays of the operation's own N x C size, with as many threads as the
row (each thread copies a slice; NumPy releases the GIL while copying).  The
floor is a least time, so it uses the best of the passes: other processes can
only slow a pass down.  With one thread the passes (and the GEMMs below) are
timed in process CPU time, which time slices given to other processes do not
inflate; with more threads, in wall time.
Page faults of a freshly allocated output are not counted: the floor is the
memory limit with the pages already mapped.  Arrays under 4 MiB live in cache,
where call overhead rather than memory sets the time: they get no floor.

Compute-bound operations (the MLP, linear + cross-entropy): their GEMM flops
divided by the rate of a square GEMM (SciPy's BLAS, the one fastlog calls)
measured at the row's thread count and dtype.

"x floor" is a multiple: fastlog's time / floor time (1.00 = at the limit).
"""
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from .groups import GROUPS
from .timing import pinned_threads

__all__ = ["copy_rate", "gemm_rate", "FloorMeter", "MIN_ARRAY_BYTES"]

MIN_ARRAY_BYTES = 4 * 2**20


def _clock(threads):
    return time.process_time if threads == 1 else time.perf_counter


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
    clock = _clock(threads)
    n = max(threads, nbytes // 8)
    src, dst = np.ones(n), np.empty(n)
    bounds = np.linspace(0, n, threads + 1).astype(int)
    parts = [(dst[a:b], src[a:b]) for a, b in zip(bounds[:-1], bounds[1:])]
    rates = []
    with ThreadPoolExecutor(max_workers=threads) as pool:
        def copy():
            if threads == 1:
                np.copyto(dst, src)
            else:
                list(pool.map(lambda p: np.copyto(*p), parts))
        copy()
        for _ in range(max(1, repeats)):
            t0 = clock()
            copy()
            rates.append(2.0 * src.nbytes / max(clock() - t0, 1e-9))
    return float(np.median(rates)), float(min(rates)), float(max(rates))


def gemm_rate(dtype, threads=1, n=1024, repeats=5, clock=None):
    """Best flops/s of an n x n x n GEMM (SciPy's BLAS sgemm/dgemm) with `threads` threads
    (`clock`: default CPU time for one thread, wall time for more).

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
    clock = clock or _clock(threads)
    from scipy.linalg import blas

    gemm = blas.sgemm if dtype == "float32" else blas.dgemm
    a = np.ones((n, n), dtype=np.float32 if dtype == "float32" else np.float64, order="F")
    best = np.inf
    with pinned_threads(threads):
        gemm(1.0, a, a)
        for _ in range(max(1, repeats)):
            t0 = clock()
            gemm(1.0, a, a)
            best = min(best, max(clock() - t0, 1e-9))
    return 2.0 * n ** 3 / best


class FloorMeter:
    """Measures (once per array size / dtype and thread count) and returns each row's floor.

    Parameters
    ----------
    repeats : int, default 5
        Passes per bandwidth / GEMM-rate measurement.
    gemm_n : int, default 1024
        Size of the square GEMM timed for compute-bound rows.

    Examples
    --------
    >>> from fastlog.bench.floors import FloorMeter
    >>> from fastlog.bench.presets import Case
    >>> meter = FloorMeter(repeats=1, gemm_n=64)
    >>> meter.floor(Case("softmax", (64, 10), "float32", 1)) is None     # in cache: no floor
    True
    >>> f = meter.floor(Case("mlp_predict", (64,), "float32", 1))
    >>> f["kind"], f["flops"], f["seconds"] > 0
    ('compute', 13975552, True)
    """

    def __init__(self, repeats=5, gemm_n=1024):
        self.repeats, self.gemm_n = repeats, gemm_n
        self.bandwidth = {}   # (nbytes, threads) -> (median, min, max) bytes/s
        self.gemm = {}        # (dtype, threads) -> flops/s
        self.rows = {}        # Case -> floor dict (what floor() returned)

    def floor(self, case):
        """A dict describing the floor of `case`, or None (no floor for this row).

        Parameters
        ----------
        case : Case
            The row.

        Returns
        -------
        dict or None
            ``kind`` ('memory' or 'compute'), ``bytes`` or ``flops``, ``rate`` (bytes/s
            or flops/s), ``seconds`` (the floor time); None for a group without a
            floor or an array under ``MIN_ARRAY_BYTES``.

        Examples
        --------
        >>> from fastlog.bench.floors import FloorMeter
        >>> from fastlog.bench.presets import Case
        >>> f = FloorMeter(repeats=1).floor(Case("softmax", (1024, 1024), "float32", 1))   # 4 MiB
        >>> f["kind"], f["bytes"], f["seconds"] > 0
        ('memory', 8388608, True)
        """
        if case not in self.rows:
            self.rows[case] = self._floor(case)
        return self.rows[case]

    def _floor(self, case):
        g = GROUPS[case.group]
        if g.floor is None:
            return None
        f = g.floor(case.shape, case.dtype)
        if f.kind == "memory":
            if f.array_bytes < MIN_ARRAY_BYTES:
                return None
            key = (f.array_bytes, case.threads)
            if key not in self.bandwidth:
                self.bandwidth[key] = copy_rate(f.array_bytes, case.threads, self.repeats)
            rate = self.bandwidth[key][2]   # the best pass
            return {"kind": "memory", "bytes": f.amount, "rate": rate, "seconds": f.amount / rate,
                    "array_bytes": f.array_bytes}
        key = (case.dtype, case.threads)
        if key not in self.gemm:
            self.gemm[key] = gemm_rate(case.dtype, case.threads, self.gemm_n)
        rate = self.gemm[key]
        return {"kind": "compute", "flops": f.amount, "rate": rate, "seconds": f.amount / rate}

    def to_dict(self):
        """What was measured, for the JSON report: bandwidths, GEMM rates and each row's floor.

        Examples
        --------
        >>> from fastlog.bench.floors import FloorMeter
        >>> from fastlog.bench.presets import Case
        >>> meter = FloorMeter(repeats=1, gemm_n=64)
        >>> _ = meter.floor(Case("mlp_predict", (64,), "float32", 1))
        >>> d = meter.to_dict()
        >>> sorted(d), [g["dtype"] for g in d["gemm"]], d["rows"][0]["group"]
        (['bandwidth', 'gemm', 'repeats', 'rows'], ['float32'], 'mlp_predict')
        """
        return {"repeats": self.repeats, "bandwidth": [{"array_bytes": k[0], "threads": k[1], "bytes_per_s": v[0], "min": v[1],
                               "max": v[2]} for k, v in self.bandwidth.items()],
                "gemm": [{"dtype": k[0], "threads": k[1], "flops_per_s": v, "n": self.gemm_n}
                         for k, v in self.gemm.items()],
                "rows": [dict(group=c.group, shape=list(c.shape), dtype=c.dtype, threads=c.threads, **f)
                         for c, f in self.rows.items() if f is not None]}
