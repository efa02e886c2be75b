"""Run cases: build each library's version, check it against the oracle, then time it."""
import sys
import time
from dataclasses import dataclass

from . import cases as _cases
from .timing import Budget, Stats, measure, pinned_threads

__all__ = ["Result", "run_cases", "run_one", "prepare", "BUDGETS"]

BUDGETS = {
    "quick": Budget(target_s=0.1, min_samples=5, slow_call_s=0.05, slow_min_samples=3),
    "full": Budget(target_s=1.0, min_samples=10, slow_call_s=0.1, slow_min_samples=5, warmup=2),
    "tiny": Budget(target_s=0.0, min_samples=2, max_samples=3, min_sample_s=1e-5,
                   slow_min_samples=2),
}


@dataclass
class Result:
    """One (case, library) outcome.

    status: 'ok' (agreed with the oracle and timed), 'wrong' (disagreed: not
    timed, a failure), 'error' (raised), 'skipped' (library/API missing).
    err: largest |result - oracle| / max|oracle|.
    """
    case: _cases.Case
    library: str
    status: str
    reason: str = ""
    err: float = None
    stats: Stats = None

    def to_dict(self):
        c = self.case
        return {"group": c.group, "shape": list(c.shape), "dtype": c.dtype, "threads": c.threads,
                "library": self.library, "status": self.status, "reason": self.reason,
                "err": self.err, "stats": self.stats.to_dict() if self.stats else None}

    @classmethod
    def from_dict(cls, d):
        c = _cases.Case(d["group"], tuple(d["shape"]), d["dtype"], int(d["threads"]))
        st = Stats(**d["stats"]) if d.get("stats") else None
        return cls(c, d["library"], d["status"], d.get("reason", ""), d.get("err"), st)


class _Progress:
    """tqdm if installed, else a one-line text bar on a terminal; nothing when disabled."""

    def __init__(self, total, enabled):
        self.total, self.n, self.bar = total, 0, None
        self.enabled = enabled
        if not enabled:
            return
        try:
            from tqdm import tqdm
        except ImportError:
            self.enabled = sys.stderr.isatty()
        else:
            self.bar = tqdm(total=total, file=sys.stderr, unit="run", leave=False,
                            bar_format="{l_bar}{bar}| {n_fmt}/{total_fmt} [{elapsed}<{remaining}]")

    def update(self, text):
        self.n += 1
        if self.bar is not None:
            self.bar.set_description_str(text[:48].ljust(48))
            self.bar.update(1)
        elif self.enabled:
            done = int(30 * self.n / max(1, self.total))
            sys.stderr.write(f"\r[{'#' * done}{'.' * (30 - done)}] {self.n}/{self.total} {text[:40]:<40}")
            sys.stderr.flush()

    def close(self):
        if self.bar is not None:
            self.bar.close()
        elif self.enabled:
            sys.stderr.write("\r" + " " * 90 + "\r")
            sys.stderr.flush()


# Pause before timing a library at more than one thread (see run_cases).
SETTLE_S = 0.25


def prepare(group, library, data):
    """(fn, result_getter) for this library, or raise Unavailable."""
    built = group.impls[library](data)
    if isinstance(built, tuple):
        return built
    return built, None


def run_one(case, library, data, reference, budget):
    """Check one library's version of `case` against `reference`, then time it.

    Must be called with threads already pinned to ``case.threads``.
    """
    group = _cases.GROUPS[case.group]
    try:
        fn, getter = prepare(group, library, data)
        first = fn()
        out = getter() if getter is not None else first
    except _cases.Unavailable as e:
        return Result(case, library, "skipped", str(e))
    except Exception as e:  # report it; one broken library must not stop the run
        return Result(case, library, "error", f"{type(e).__name__}: {e}")
    ok, err = _cases.agreement(out, reference, case.dtype)
    if not ok:
        return Result(case, library, "wrong", "result disagrees with the float64 NumPy oracle", err)
    try:
        stats = measure(fn, budget, warmed=True)
    except Exception as e:
        return Result(case, library, "error", f"{type(e).__name__}: {e}", err)
    return Result(case, library, "ok", "", err, stats)


def run_cases(case_list, libraries=_cases.LIBRARIES, budget=BUDGETS["quick"], progress=True,
              keep_data=False):
    """Run every case for every library that implements its group; list of :class:`Result`.

    Inputs are made once per (group, shape, dtype) and shared by all libraries
    and thread counts; the oracle runs once on their float64 copies.
    """
    todo = [(c, lib) for c in case_list for lib in libraries if lib in _cases.GROUPS[c.group].impls]
    bar = _Progress(len(todo), progress)
    results = []
    order = []
    for c in case_list:
        if c.data_key not in order:
            order.append(c.data_key)
    try:
        for key in order:
            group, shape, dtype = key
            data = _cases.data_for(group, shape, dtype)
            reference = _cases.reference_for(group, data)
            for c in (c for c in case_list if c.data_key == key):
                with pinned_threads(c.threads):
                    for lib in libraries:
                        if lib not in _cases.GROUPS[group].impls:
                            continue
                        if c.threads > 1:
                            # Let the previous library's OpenMP/BLAS threads stop
                            # spinning, so they do not steal a core from this one.
                            time.sleep(SETTLE_S)
                        results.append(run_one(c, lib, data, reference, budget))
                        bar.update(f"{group} {c.label} {dtype} {c.threads}t {lib}")
            del data, reference
            if not keep_data:
                _cases.clear_data()
    finally:
        bar.close()
    return results
