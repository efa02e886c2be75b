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
    """Per-call times in seconds over `samples` samples of `number` calls each."""
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
        return asdict(self)

    @classmethod
    def from_samples(cls, per_call, number):
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
    """How threads are pinned in this process, naming only what is present."""
    how = ["fastlog.set_num_threads", "threadpoolctl (BLAS, OpenMP)"]
    if _torch_or_none() is not None:
        how.append("torch.set_num_threads")
    return ", ".join(how)


@contextlib.contextmanager
def pinned_threads(n):
    """Limit every library to `n` threads: fastlog, BLAS/OpenMP (threadpoolctl), PyTorch.

    Restores the previous settings on exit.  PyTorch is only touched if it has
    been imported already (the benchmark never imports it just to pin it).
    """
    import fastlog

    old_fl = fastlog.get_num_threads()
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
