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
    `load1` = the 1-minute load average at its end."""

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
    """Why the measurement is unreliable (a short text), or None if it is not."""
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
