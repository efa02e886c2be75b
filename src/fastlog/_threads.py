"""fastlog's one thread policy.

* ``set_num_threads(n)`` sets the process-wide count fastlog's kernels use
  (default: ``FASTLOG_NUM_THREADS``, else OpenMP's default, i.e. the cores).
* ``num_threads(n)`` (a context manager) overrides it for the calling Python
  thread only: two threads may each use their own count at the same time.
* Every compiled call reads the count ONCE, at entry, from the calling thread
  (its override, else the process default), and passes it down; changing it
  from another thread mid-call does not affect a running call.
* Results are bit-identical for any thread count.
* The default (no ``set_num_threads`` / ``FASTLOG_NUM_THREADS`` /
  ``num_threads``) is all cores, cut at each call to the cores that are idle
  at that moment (the runnable count of ``/proc/loadavg``, re-read at most
  every 20 ms): on a machine whose cores are busy, a parallel region waits
  for its slowest thread to be scheduled again, so extra threads only slow
  the call down.  A count the user sets is used as given.
* Waiting: OpenMP threads that finish early SLEEP instead of spinning
  (``OMP_WAIT_POLICY=PASSIVE`` for the libgomp fastlog loads, unless the
  user set ``OMP_WAIT_POLICY`` or ``GOMP_SPINCOUNT``).  libgomp's default
  spins for up to ~300,000 iterations at every barrier; on a machine whose
  cores are busy with other work that made 2 threads 2.5-8x SLOWER than 1
  (cross-entropy 4096 x 1000: 25 ms against 10 ms).  Sleeping costs a futex
  wake-up (tens of microseconds) per parallel region, and fastlog runs one
  region per call (inputs under 65,536 elements stay on one thread).  The
  variable is set only while libgomp loads, then removed again, so child
  processes do not inherit it.  (If another library loaded the same libgomp
  first, its setting stays in force.)
* BLAS: the GEMMs fastlog makes (fused linear + cross-entropy, the MLP) are
  cut into blocks that depend only on the shapes, run on fastlog's threads,
  each block one single-threaded BLAS call.  ``blas_pinned()`` sets SciPy's
  BLAS pool to 1 thread for the duration of such a call and restores the
  user's setting after, so nothing fastlog does leaves NumPy's or SciPy's
  BLAS changed, and the results do not depend on any library's thread count.
"""
import contextlib
import os
import threading
from typing import Any, Optional

from ._validation import positive_int

_MAX = 1 << 16
_local = threading.local()

# fastlog._core, handed over by fastlog._dispatch once it has loaded it (bind):
# this module never imports the loader, so the two form no cycle.
_core: Any = None


def bind(core):
    """Take the loaded extension from fastlog._dispatch and apply the thread
    setting of the environment (FASTLOG_NUM_THREADS) to it."""
    global _core
    _core = core
    _init()


def _count(n, name="n"):
    n = positive_int(n, name)
    if n > _MAX:
        raise ValueError(f"{name} must be at most {_MAX} threads, got {n}")
    return n


def set_num_threads(n: Optional[int]) -> None:
    """Use `n` threads (>= 1) in fastlog's kernels, process-wide.  Results do not depend on it.

    The default is ``FASTLOG_NUM_THREADS`` if set, else all cores cut at each
    call to the idle ones; ``set_num_threads(None)`` returns to it.  Small
    inputs run on one thread whatever this says.  A ``num_threads`` block in
    some thread takes precedence there.

    Parameters
    ----------
    n : int or None
        Thread count, 1 to 65536, used as given; None: the default policy.

    Raises
    ------
    TypeError
        An `n` that is not an integer (or None).
    ValueError
        An `n` below 1.

    Examples
    --------
    >>> import fastlog
    >>> old = fastlog.get_num_threads()
    >>> fastlog.set_num_threads(1)
    >>> fastlog.get_num_threads()
    1
    >>> fastlog.set_num_threads(None)   # back to the default policy
    """
    if n is None:
        _init()
    else:
        _core.set_threads(_count(n))


def get_num_threads() -> int:
    """The number of threads fastlog's kernels may use in a call made now from this thread.

    Returns
    -------
    int
        This thread's :class:`num_threads` override if one is active, else the
        process-wide count.

    Examples
    --------
    >>> import fastlog
    >>> with fastlog.num_threads(2):
    ...     fastlog.get_num_threads()
    2
    """
    return _core.get_threads()


class num_threads:
    """Context manager: ``with fastlog.num_threads(1): ...`` uses 1 thread for the
    calls made inside the block, by this Python thread only (thread-safe;
    other threads keep theirs), and restores the previous setting after.

    Parameters
    ----------
    n : int
        Thread count inside the block, 1 to 65536.

    Raises
    ------
    TypeError
        An `n` that is not an integer.
    ValueError
        An `n` below 1.

    Examples
    --------
    >>> import numpy as np, fastlog
    >>> x = np.arange(6.0).reshape(2, 3)
    >>> with fastlog.num_threads(1):
    ...     a = fastlog.log_softmax(x, axis=1)
    >>> bool(np.array_equal(a, fastlog.log_softmax(x, axis=1)))   # any thread count: same bits
    True
    """

    def __init__(self, n: int) -> None:
        self.n = _count(n)

    def __enter__(self):
        stack = getattr(_local, "stack", None)
        if stack is None:
            stack = _local.stack = []
        self.old = get_num_threads()       # the count in effect before the block
        stack.append(_core.set_thread_override(self.n))
        return self

    def __exit__(self, *exc):
        _core.set_thread_override(_local.stack.pop())


@contextlib.contextmanager
def openmp_wait_policy():
    """OMP_WAIT_POLICY=PASSIVE in the environment while the block runs (the
    import of the extension, which loads libgomp), unless the user chose."""
    chosen = any(k in os.environ for k in ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT"))
    if not chosen:
        os.environ["OMP_WAIT_POLICY"] = "PASSIVE"
    try:
        yield
    finally:
        if not chosen:
            os.environ.pop("OMP_WAIT_POLICY", None)


def _init():
    env = os.environ.get("FASTLOG_NUM_THREADS", "").strip()
    core = _core
    if env:
        try:
            n = int(env)
        except ValueError:
            raise ImportError(f"FASTLOG_NUM_THREADS={env!r} is not an integer") from None
        if n < 1:
            raise ImportError(f"FASTLOG_NUM_THREADS={env!r} must be >= 1")
        core.set_threads(min(n, _MAX), True)
    else:
        core.set_threads(max(1, core.max_threads()), False)


# ------------------------------------------------------------------ BLAS --
_blas_lock = threading.Lock()
_blas_ctl = None          # list of threadpoolctl controllers, once found
_blas_depth = 0           # nesting across threads (the pool is process-wide)
_blas_saved = None


def _blas_controllers():
    """SciPy's BLAS (the one scipy.linalg.cython_blas calls), via threadpoolctl."""
    global _blas_ctl
    if _blas_ctl is None:
        ctl = []
        try:
            import scipy.linalg.cython_blas  # noqa: F401  (make sure SciPy's BLAS is loaded)
            from threadpoolctl import ThreadpoolController
            libs = [c for c in ThreadpoolController().lib_controllers if c.user_api == "blas"]
        except Exception:  # pragma: no cover - no threadpoolctl, or it could not inspect the process
            libs = []
        # Prefer the BLAS shipped with SciPy; otherwise every BLAS except NumPy's own copy.
        ctl = [c for c in libs if "scipy.libs" in c.filepath or "scipy/.dylibs" in c.filepath]
        if not ctl:
            ctl = [c for c in libs if "numpy.libs" not in c.filepath and "numpy/.dylibs" not in c.filepath]
        _blas_ctl = ctl
    return _blas_ctl


@contextlib.contextmanager
def blas_pinned():
    """SciPy's BLAS at 1 thread inside the block; the previous counts are put
    back when the last concurrent block (any Python thread) exits."""
    global _blas_depth, _blas_saved
    with _blas_lock:
        if _blas_depth == 0:
            ctl = _blas_controllers()
            _blas_saved = [(c, c.get_num_threads()) for c in ctl]
            for c, n in _blas_saved:
                if n != 1:
                    c.set_num_threads(1)
        _blas_depth += 1
    try:
        yield
    finally:
        with _blas_lock:
            _blas_depth -= 1
            if _blas_depth == 0:
                for c, n in _blas_saved:
                    if n != 1:
                        c.set_num_threads(n)
                _blas_saved = None


class _BlasPool:
    """``enter()`` / ``exit(token)`` face of :func:`blas_pinned` for callers
    that cannot use a ``with`` block."""

    def enter(self):
        cm = blas_pinned()
        cm.__enter__()
        return cm

    def exit(self, token):
        token.__exit__(None, None, None)


blas_pool = _BlasPool()
