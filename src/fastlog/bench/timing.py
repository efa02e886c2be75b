"""Timing primitives: thread pinning and repeated timing with warm-up.

Every library is timed by the same :func:`measure` under the same
:func:`pinned_threads` context, so the comparison is like for like.
"""
import contextlib
import gc
import math
import time
from dataclasses import asdict, dataclass

import numpy as np

__all__ = ["Stats", "Budget", "measure", "pinned_threads", "pinning_text"]


@dataclass(frozen=True)
class Stats:
    """Per-call times in seconds over `samples` samples of `number` calls each.

    Parameters
    ----------
    median, q1, q3, min, max : float
        Per-call seconds: median, quartiles, extremes over the samples.
    samples : int
        Number of samples.
    number : int
        Calls per sample.

    Examples
    --------
    >>> from fastlog.bench.timing import Stats
    >>> s = Stats.from_samples([1e-3, 2e-3, 2e-3, 3e-3, 9e-3], number=10)
    >>> s.median, s.q1, s.q3, round(s.iqr_pct)
    (0.002, 0.002, 0.003, 50)
    """
    median: float
    q1: float
    q3: float
    min: float
    max: float
    samples: int
    number: int

    @property
    def spread(self):
        """Interquartile range / median."""
        return (self.q3 - self.q1) / self.median if self.median > 0 else 0.0

    @property
    def iqr_pct(self):
        """Interquartile range as a percentage of the median."""
        return 100.0 * (self.q3 - self.q1) / self.median if self.median > 0 else 0.0

    def to_dict(self):
        """The fields as a dict (for the JSON report; ``Stats(**d)`` reads it back).

        Examples
        --------
        >>> from fastlog.bench.timing import Stats
        >>> Stats.from_samples([0.5], 1).to_dict()
        {'median': 0.5, 'q1': 0.5, 'q3': 0.5, 'min': 0.5, 'max': 0.5, 'samples': 1, 'number': 1}
        """
        return asdict(self)

    @classmethod
    def from_samples(cls, per_call, number):
        """Stats of per-call times (percentiles by NumPy's default linear interpolation).

        Parameters
        ----------
        per_call : array_like of float
            Seconds per call, one value per sample.
        number : int
            Calls per sample.

        Examples
        --------
        >>> from fastlog.bench.timing import Stats
        >>> Stats.from_samples([4.0, 1.0, 2.0, 3.0], 1)
        Stats(median=2.5, q1=1.75, q3=3.25, min=1.0, max=4.0, samples=4, number=1)
        """
        a = np.asarray(per_call, dtype=np.float64)
        q1, med, q3 = np.percentile(a, [25, 50, 75])
        return cls(float(med), float(q1), float(q3), float(a.min()), float(a.max()), int(a.size), int(number))


@dataclass(frozen=True)
class Budget:
    """How long to time one (case, library) pair.

    Samples are taken until both `min_samples` and `target_s` seconds are
    reached (or `max_samples`); a sample is `number` back-to-back calls,
    `number` chosen so that one sample lasts at least `min_sample_s` (timer
    resolution and call overhead stay negligible).  `warmup` untimed calls
    come first.  Calls slower than `slow_call_s` need only
    `slow_min_samples` samples.

    Parameters
    ----------
    target_s : float
        Seconds of samples to take at least.
    min_samples, max_samples : int
        Bounds on the number of samples.
    min_sample_s : float
        A sample lasts at least this long (calls per sample chosen for it).
    warmup : int
        Untimed calls first.
    slow_call_s : float
        Calls at least this slow ...
    slow_min_samples : int
        ... need only this many samples.

    Examples
    --------
    >>> from fastlog.bench.timing import Budget
    >>> Budget(target_s=0.0, min_samples=2, max_samples=3)
    Budget(target_s=0.0, min_samples=2, max_samples=3, min_sample_s=0.0002, warmup=1, slow_call_s=0.05, slow_min_samples=3)
    """
    target_s: float = 0.25
    min_samples: int = 5
    max_samples: int = 200
    min_sample_s: float = 2e-4
    warmup: int = 1
    slow_call_s: float = 0.05
    slow_min_samples: int = 3


def measure(fn, budget=Budget(), warmed=False):
    """Time ``fn()`` with warm-up; return :class:`Stats` of the per-call time.

    ``warmed=True`` says the caller has just called `fn` (e.g. to check its
    result), which then counts as the first warm-up call.

    Parameters
    ----------
    fn : callable
        Called with no arguments.
    budget : Budget
        How long to time it.
    warmed : bool, default False
        The caller has just called `fn` once (one warm-up call fewer).

    Examples
    --------
    >>> import numpy as np
    >>> from fastlog.bench.timing import Budget, measure
    >>> x = np.ones(1000)
    >>> s = measure(lambda: x.sum(), Budget(target_s=0.0, min_samples=3, max_samples=3))
    >>> s.samples, s.median > 0
    (3, True)
    """
    for _ in range(max(0, budget.warmup - bool(warmed))):
        fn()
    t0 = time.perf_counter()
    fn()
    one = time.perf_counter() - t0
    min_samples = budget.slow_min_samples if one >= budget.slow_call_s else budget.min_samples
    if one >= budget.min_sample_s:
        number, per_call, spent = 1, [one], one  # the calibration call is a valid sample
    else:
        number, per_call, spent = int(math.ceil(budget.min_sample_s / max(one, 1e-9))), [], 0.0
    enabled = gc.isenabled()
    gc.disable()
    try:
        while len(per_call) < budget.max_samples and (len(per_call) < min_samples
                                                      or spent < budget.target_s):
            t0 = time.perf_counter()
            for _ in range(number):
                fn()
            dt = time.perf_counter() - t0
            spent += dt
            per_call.append(dt / number)
    finally:
        if enabled:
            gc.enable()
    return Stats.from_samples(per_call, number)


def _torch_or_none():
    import sys
    return sys.modules.get("torch")


def pinning_text():
    """How threads are pinned in this process, naming only what is present.

    Examples
    --------
    >>> from fastlog.bench.timing import pinning_text
    >>> pinning_text().startswith("fastlog.set_num_threads, threadpoolctl (BLAS, OpenMP)")
    True
    """
    how = ["fastlog.set_num_threads", "threadpoolctl (BLAS, OpenMP)"]
    if _torch_or_none() is not None:
        how.append("torch.set_num_threads")
    return ", ".join(how)


@contextlib.contextmanager
def pinned_threads(n):
    """Limit every library to `n` threads: fastlog, BLAS/OpenMP (threadpoolctl), PyTorch.

    Restores the previous settings on exit.  PyTorch is only touched if it has
    been imported already (the benchmark never imports it just to pin it).

    Parameters
    ----------
    n : int
        Thread count for every library inside the block.

    Examples
    --------
    >>> import fastlog
    >>> from fastlog.bench.timing import pinned_threads
    >>> before = fastlog.get_num_threads()
    >>> with pinned_threads(1):
    ...     fastlog.get_num_threads()
    1
    >>> fastlog.get_num_threads() == before
    True
    """
    import fastlog

    from .._dispatch import core
    # restored as it was: a count the user chose, else the default policy
    old_fl = fastlog.get_num_threads() if core.threads_explicit() else None
    torch = _torch_or_none()
    old_torch = torch.get_num_threads() if torch is not None else None
    try:
        from threadpoolctl import threadpool_limits
        limiter = threadpool_limits(limits=n)
    except ImportError:  # pragma: no cover - threadpoolctl is a scipy/sklearn staple
        limiter = contextlib.nullcontext()
    with limiter:
        fastlog.set_num_threads(n)
        if torch is not None:
            torch.set_num_threads(n)
        try:
            yield n
        finally:
            fastlog.set_num_threads(old_fl)
            if torch is not None:
                torch.set_num_threads(old_torch)
