"""Is a measurement trustworthy?  Spread and competing load, re-measuring, the flag.

A measurement is noisy when its interquartile range exceeds `max_spread` of
the median, or when other processes kept more cores busy than the row leaves
free (``cores - threads``, with half a core of slack) while it ran.  The
competing load comes from ``/proc/stat`` (all busy CPU time) minus this
process's own CPU time over the same interval; where ``/proc/stat`` is missing
(or the interval is under 50 ms, too short for its 10 ms ticks) the 1-minute
load average minus the row's own threads stands in.  A noisy measurement is
repeated, after a short pause, up to `retries` times; the least noisy attempt is kept, and flagged
if every attempt was noisy.
"""
import os
import time
from dataclasses import dataclass

__all__ = ["NoisePolicy", "CpuMonitor", "noise_reason", "measure_reliably"]


@dataclass(frozen=True)
class NoisePolicy:
    """When a measurement counts as noisy, and how often it is repeated (see the module docstring).

    Parameters
    ----------
    max_spread : float, default 0.25
        Largest interquartile range, as a fraction of the median.
    retries : int, default 1
        Re-measurements of a noisy row.
    slack_cores : float, default 0.5
        Competing load allowed beyond the cores the row leaves free.
    pause_s : float, default 0.2
        Pause before a re-measurement.

    Examples
    --------
    >>> from fastlog.bench.noise import NoisePolicy
    >>> NoisePolicy(retries=0)
    NoisePolicy(max_spread=0.25, retries=0, slack_cores=0.5, pause_s=0.2)
    """
    max_spread: float = 0.25
    retries: int = 1
    slack_cores: float = 0.5
    pause_s: float = 0.2      # before a re-measurement: let a burst of other work pass


def _busy_seconds():
    """Seconds of CPU time all cores spent busy since boot, or None."""
    try:
        with open("/proc/stat") as f:
            fields = f.readline().split()[1:]
    except OSError:
        return None
    ticks = [int(v) for v in fields]
    idle = ticks[3] + (ticks[4] if len(ticks) > 4 else 0)  # idle + iowait
    busy = sum(ticks[:8]) - idle                            # guest time is inside user time
    return busy / os.sysconf("SC_CLK_TCK")


def _own_seconds():
    t = os.times()
    return t.user + t.system


class CpuMonitor:
    """Context manager: `others` = cores kept busy by other processes during the block (or None);
    `load1` = the 1-minute load average at its end.

    Examples
    --------
    >>> from fastlog.bench.noise import CpuMonitor
    >>> with CpuMonitor() as mon:
    ...     pass
    >>> mon.others is None                          # under 50 ms: too short for /proc/stat
    True
    """

    def __enter__(self):
        self._t, self._busy, self._own = time.perf_counter(), _busy_seconds(), _own_seconds()
        self.others = self.load1 = None
        return self

    def __exit__(self, *exc):
        wall = time.perf_counter() - self._t
        busy = _busy_seconds()
        if busy is not None and self._busy is not None and wall >= 0.05:
            self.others = max(0.0, (busy - self._busy - (_own_seconds() - self._own)) / wall)
        if hasattr(os, "getloadavg"):
            self.load1 = os.getloadavg()[0]
        return False


def noise_reason(stats, others, load1, cores, threads, policy):
    """Why the measurement is unreliable (a short text), or None if it is not.

    Parameters
    ----------
    stats : Stats
        The measurement.
    others : float or None
        Cores kept busy by other processes (:class:`CpuMonitor`).
    load1 : float or None
        The 1-minute load average, used when `others` is None.
    cores, threads : int
        The machine's usable cores; the row's threads.
    policy : NoisePolicy
        The limits.

    Examples
    --------
    >>> from fastlog.bench.noise import NoisePolicy, noise_reason
    >>> from fastlog.bench.timing import Stats
    >>> s = Stats.from_samples([1.0, 1.0, 2.0, 3.0], 1)
    >>> noise_reason(s, others=1.8, load1=None, cores=2, threads=1, policy=NoisePolicy())
    'IQR 83% of the median; other processes kept 1.8 of 2 cores busy'
    >>> noise_reason(Stats.from_samples([1.0] * 4, 1), 0.0, None, 2, 1, NoisePolicy()) is None
    True
    """
    reasons = []
    spread = stats.spread
    if spread > policy.max_spread:
        reasons.append(f"IQR {spread:.0%} of the median")
    free = max(0.0, cores - threads)
    if others is not None:
        if others > free + policy.slack_cores:
            reasons.append(f"other processes kept {others:.1f} of {cores} cores busy")
    elif load1 is not None and load1 - threads > free + policy.slack_cores:
        reasons.append(f"load average {load1:.1f} on {cores} cores")
    return "; ".join(reasons) or None


def measure_reliably(run, cores, threads, policy=NoisePolicy(), monitor=CpuMonitor):
    """``(stats, noise)``: run() -> Stats, repeated while noisy (at most 1 + policy.retries times).

    `noise` is a dict for the JSON: attempts, spread, others, load1 and flag (the
    reason text of the kept attempt, None when it was clean).

    Parameters
    ----------
    run : callable
        ``run()`` -> Stats, one measurement.
    cores, threads : int
        The machine's usable cores; the row's threads.
    policy : NoisePolicy
        The limits and retries.
    monitor : callable
        Makes the context manager that observes the competing load (:class:`CpuMonitor`).

    Examples
    --------
    >>> from fastlog.bench.noise import NoisePolicy, measure_reliably
    >>> from fastlog.bench.timing import Stats
    >>> wobbly = iter([[1.0, 3.0, 5.0], [1.0, 1.0, 1.1]])
    >>> stats, noise = measure_reliably(lambda: Stats.from_samples(next(wobbly), 1), cores=64, threads=1,
    ...                                 policy=NoisePolicy(retries=1, pause_s=0))
    >>> noise["attempts"], stats.median, noise["flag"]
    (2, 1.0, None)
    """
    tries = []
    for k in range(1 + max(0, policy.retries)):
        if k and policy.pause_s > 0:
            time.sleep(policy.pause_s)
        with monitor() as mon:
            stats = run()
        reason = noise_reason(stats, mon.others, mon.load1, cores, threads, policy)
        tries.append((reason is not None, stats.spread, stats, reason, mon))
        if reason is None:
            break
    _, _, stats, reason, mon = min(tries, key=lambda t: (t[0], t[1]))
    return stats, {"attempts": len(tries), "spread": stats.spread, "others": mon.others,
                   "load1": mon.load1, "flag": reason}
