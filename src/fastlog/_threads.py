"""fastlog's one thread policy.

* ``set_num_threads(n)`` sets the process-wide count fastlog's kernels use
  (default: ``FASTLOG_NUM_THREADS``, else OpenMP's default, i.e. the cores).
* ``num_threads(n)`` (a context manager) overrides it for the calling Python
  thread only: two threads may each use their own count at the same time.
* Every compiled call reads the count ONCE, at entry, from the calling thread
  (its override, else the process default), and passes it down; changing it
  from another thread mid-call does not affect a running call.
* Results are bit-identical for any thread count.
"""
import os
import threading

from ._validation import positive_int

_MAX = 1 << 16
_local = threading.local()


def _core():
    from ._dispatch import core
    return core


def _count(n, name="n"):
    n = positive_int(n, name)
    if n > _MAX:
        raise ValueError(f"{name} must be at most {_MAX} threads, got {n}")
    return n


def set_num_threads(n):
    """Use `n` threads (>= 1) in fastlog's kernels, process-wide.  Results do not depend on it.

    The default is OpenMP's default (all cores) or ``FASTLOG_NUM_THREADS``.
    Small inputs run on one thread whatever this says.  A ``num_threads``
    block in some thread takes precedence there.
    """
    _core().set_threads(_count(n))


def get_num_threads():
    """The number of threads fastlog's kernels may use in a call made now from this thread."""
    return _core().get_threads()


class num_threads:
    """Context manager: ``with fastlog.num_threads(1): ...`` uses 1 thread for the
    calls made inside the block, by this Python thread only (thread-safe;
    other threads keep theirs), and restores the previous setting after."""

    def __init__(self, n):
        self.n = _count(n)

    def __enter__(self):
        stack = getattr(_local, "stack", None)
        if stack is None:
            stack = _local.stack = []
        self.old = get_num_threads()       # the count in effect before the block
        stack.append(_core().set_thread_override(self.n))
        return self

    def __exit__(self, *exc):
        _core().set_thread_override(_local.stack.pop())


def _init():
    env = os.environ.get("FASTLOG_NUM_THREADS", "").strip()
    core = _core()
    if env:
        try:
            n = int(env)
        except ValueError:
            raise ImportError(f"FASTLOG_NUM_THREADS={env!r} is not an integer") from None
        if n < 1:
            raise ImportError(f"FASTLOG_NUM_THREADS={env!r} must be >= 1")
        core.set_threads(min(n, _MAX))
    else:
        core.set_threads(max(1, core.max_threads()))
