"""SciPy's BLAS thread pool, held at one thread while fastlog's MLP code runs.

fastlog cuts each GEMM into blocks that run on its own OpenMP threads, each a
single-threaded BLAS call, so results do not depend on the thread count.  The
pool of SciPy's OpenBLAS (the one ``scipy.linalg.cython_blas`` calls) is set to
1 thread through ``threadpoolctl`` when that is installed, and left there (see
:meth:`_BlasPool.enter` for why).
"""
import threading


class _BlasPool:
    """SciPy's BLAS thread pool (the one scipy.linalg.cython_blas calls), via threadpoolctl."""

    def __init__(self):
        self._ctl = None
        self._ready = False
        self._lock = threading.Lock()   # the first calls may come from several threads at once

    def _find(self):
        with self._lock:
            if not self._ready:
                self._find_locked()

    def _find_locked(self):
        try:
            import scipy.linalg.cython_blas  # noqa: F401  (make sure SciPy's BLAS is loaded)
            from threadpoolctl import ThreadpoolController
        except ImportError:
            self._ready = True
            return
        try:
            libs = [c for c in ThreadpoolController().lib_controllers if c.user_api == "blas"]
        except Exception:  # pragma: no cover - threadpoolctl could not inspect the process
            self._ready = True
            return
        # Prefer the BLAS shipped with SciPy; otherwise every BLAS except NumPy's own copy.
        scipy_libs = [c for c in libs if "scipy.libs" in c.filepath or "scipy/.dylibs" in c.filepath]
        if not scipy_libs:
            scipy_libs = [c for c in libs if "numpy.libs" not in c.filepath and "numpy/.dylibs" not in c.filepath]
        self._ctl = scipy_libs or None
        self._ready = True

    def enter(self):
        """Make sure the pool has 1 thread (fastlog runs the BLAS calls on its
        own threads).  The setting is left in place afterwards: raising an
        OpenBLAS pool's size again wakes its threads, which then spin for a
        while and steal cores from the next step (measured: a 0.3 ms step
        became several ms on 2 cores)."""
        if not self._ready:
            self._find()
        if self._ctl is None:
            return None
        for c in self._ctl:
            if c.get_num_threads() != 1:
                c.set_num_threads(1)
        return None

    def exit(self, old):
        pass

    # ``with _blas:`` around every BLAS-calling section (the one place to change the policy).
    def __enter__(self):
        return self.enter()

    def __exit__(self, *exc):
        self.exit(None)
        return False


_blas = _BlasPool()


