"""Run cases: build each library's version, check it against the oracle, then time it."""
import time
from dataclasses import dataclass
from typing import Optional

from . import data as _data
from .groups import GROUPS
from .impls import Unavailable
from .noise import NoisePolicy, measure_reliably
from .oracle import agreement, reference_for
from .presets import Case, usable_cores
from .progress import Progress
from .timing import Budget, Stats, measure, pinned_threads

__all__ = ["Result", "run_cases", "run_one", "prepare", "BUDGETS", "POLICIES"]

BUDGETS = {
    "quick": Budget(target_s=0.1, min_samples=5, slow_call_s=0.05, slow_min_samples=3),
    "full": Budget(target_s=1.0, min_samples=10, slow_call_s=0.1, slow_min_samples=5, warmup=2),
    "tiny": Budget(target_s=0.0, min_samples=2, max_samples=3, min_sample_s=1e-5,
                   slow_min_samples=2),
}
POLICIES = {"quick": NoisePolicy(retries=1), "full": NoisePolicy(retries=2),
            "tiny": NoisePolicy(retries=0, pause_s=0.0)}


@dataclass
class Result:
    """One (case, library) outcome.

    status: 'ok' (agreed with the oracle and timed), 'wrong' (disagreed: not
    timed, a failure), 'error' (raised), 'skipped' (library, API or dtype
    missing).  err: largest |result - oracle| / max|oracle|.  noise: see
    :func:`.noise.measure_reliably` (None for rows not timed).

    Parameters
    ----------
    case : Case
        The row.
    library : str
        The contender.
    status : {'ok', 'wrong', 'error', 'skipped'}
        See above.
    reason : str
        Why it is not 'ok'.
    err : float, optional
        Largest ``|result - oracle| / max|oracle|``.
    stats : Stats, optional
        The timing ('ok' rows).
    noise : dict, optional
        See :func:`~fastlog.bench.noise.measure_reliably`.

    Examples
    --------
    >>> from fastlog.bench.presets import Case
    >>> from fastlog.bench.runner import Result
    >>> r = Result(Case("nll", (64, 10), "float32", 1), "torch", "skipped", "PyTorch is not installed")
    >>> r.noisy, Result.from_dict(r.to_dict()) == r
    (False, True)
    """
    case: Case
    library: str
    status: str
    reason: str = ""
    err: Optional[float] = None
    stats: Optional[Stats] = None
    noise: Optional[dict] = None

    @property
    def noisy(self):
        """True when the kept measurement was flagged as noisy."""
        return bool(self.noise and self.noise.get("flag"))

    def to_dict(self):
        """The row as a JSON-able dict (the report's ``results`` entries).

        Examples
        --------
        >>> from fastlog.bench.presets import Case
        >>> from fastlog.bench.runner import Result
        >>> Result(Case("nll", (64, 10), "float32", 1), "fastlog", "wrong", "disagrees", 0.5).to_dict()["status"]
        'wrong'
        """
        c = self.case
        return {"group": c.group, "shape": list(c.shape), "dtype": c.dtype, "threads": c.threads,
                "library": self.library, "status": self.status, "reason": self.reason,
                "err": self.err, "stats": self.stats.to_dict() if self.stats else None,
                "noise": self.noise}

    @classmethod
    def from_dict(cls, d):
        """The Result a :meth:`to_dict` dict describes.

        Parameters
        ----------
        d : dict
            An entry of a report's ``results``.

        Examples
        --------
        >>> from fastlog.bench.runner import Result
        >>> d = {"group": "softmax", "shape": [8, 5], "dtype": "float64", "threads": 1, "library": "numpy",
        ...      "status": "error", "reason": "ValueError: ..."}
        >>> Result.from_dict(d).case
        Case(group='softmax', shape=(8, 5), dtype='float64', threads=1)
        """
        c = Case(d["group"], tuple(d["shape"]), d["dtype"], int(d["threads"]))
        st = Stats(**d["stats"]) if d.get("stats") else None
        return cls(c, d["library"], d["status"], d.get("reason", ""), d.get("err"), st, d.get("noise"))


# Pause before timing a library at more than one thread (see run_cases).
SETTLE_S = 0.25


def prepare(group, library, data):
    """(fn, result_getter) for this library, or raise Unavailable.

    Parameters
    ----------
    group : Group
        The operation.
    library : str
        A key of ``group.impls``.
    data : dict
        The inputs (:func:`fastlog.bench.data.data_for`).

    Examples
    --------
    >>> from fastlog.bench.data import data_for
    >>> from fastlog.bench.groups import GROUPS
    >>> from fastlog.bench.runner import prepare
    >>> g = GROUPS["logsumexp"]
    >>> fn, getter = prepare(g, "fastlog", data_for(g, (8, 5), "float32"))
    >>> fn().shape, getter
    ((8,), None)
    """
    built = group.impls[library](data)
    return built if isinstance(built, tuple) else (built, None)


def run_one(case, library, data, reference, budget, policy=NoisePolicy(), cores=None):
    """Check one library's version of `case` against `reference`, then time it.

    Must be called with threads already pinned to ``case.threads``.

    Parameters
    ----------
    case : Case
        The row.
    library : str
        The contender.
    data : dict
        The case's inputs.
    reference : Oracle
        The float64 oracle (:func:`fastlog.bench.oracle.reference_for`).
    budget : Budget
        How long to time.
    policy : NoisePolicy
        When to re-measure.
    cores : int, optional
        Usable cores (default: :func:`fastlog.bench.presets.usable_cores`).

    Examples
    --------
    >>> from fastlog.bench.data import data_for
    >>> from fastlog.bench.groups import GROUPS
    >>> from fastlog.bench.oracle import reference_for
    >>> from fastlog.bench.presets import Case
    >>> from fastlog.bench.runner import BUDGETS, POLICIES, run_one
    >>> from fastlog.bench.timing import pinned_threads
    >>> case = Case("softmax", (8, 5), "float32", 1)
    >>> d = data_for(GROUPS["softmax"], case.shape, case.dtype)
    >>> with pinned_threads(1):
    ...     r = run_one(case, "fastlog", d, reference_for(GROUPS["softmax"], d), BUDGETS["tiny"], POLICIES["tiny"])
    >>> r.status, r.err < 1e-6, r.stats.samples >= 2
    ('ok', True, True)
    """
    try:
        fn, getter = prepare(GROUPS[case.group], library, data)
        first = fn()
        out = getter() if getter is not None else first
    except Unavailable as e:
        return Result(case, library, "skipped", str(e))
    except Exception as e:  # report it; one broken library must not stop the run
        return Result(case, library, "error", f"{type(e).__name__}: {e}")
    ok, err = agreement(out, reference, case.dtype)
    if not ok:
        return Result(case, library, "wrong",
                      "result disagrees with the float64 reference (fastlog._reference)", err)
    try:
        stats, noise = measure_reliably(lambda: measure(fn, budget, warmed=True),
                                        cores or usable_cores(), case.threads, policy)
    except Exception as e:
        return Result(case, library, "error", f"{type(e).__name__}: {e}", err)
    return Result(case, library, "ok", "", err, stats, noise)


def run_cases(case_list, libraries=("fastlog", "numpy", "scipy", "torch"), budget=BUDGETS["quick"],
              progress=True, keep_data=False, policy=NoisePolicy(), floors=None):
    """Run every case for every library that implements its group; list of :class:`Result`.

    Inputs are made once per (group, shape, dtype) and shared by all libraries
    and thread counts; the oracle runs once on their float64 copies.  With a
    :class:`.floors.FloorMeter`, each case's floor is measured just before it.

    Parameters
    ----------
    case_list : list of Case
        What to run (:func:`fastlog.bench.presets.plan`).
    libraries : sequence of str
        The contenders (those that implement a case's group run it).
    budget : Budget
        How long to time each (case, library).
    progress : bool, default True
        Show progress on stderr.
    keep_data : bool, default False
        Keep the cached inputs after each (group, shape, dtype).
    policy : NoisePolicy
        When to re-measure.
    floors : FloorMeter, optional
        Measure each case's floor just before it.

    Examples
    --------
    >>> from fastlog.bench.presets import plan
    >>> from fastlog.bench.runner import BUDGETS, POLICIES, run_cases
    >>> cases = plan("tiny", groups=["logsumexp"], shapes=[(8, 5)], dtypes=["float32"], threads=[1])
    >>> results = run_cases(cases, ("fastlog", "numpy"), BUDGETS["tiny"], progress=False, policy=POLICIES["tiny"])
    >>> [(r.library, r.status) for r in results]
    [('fastlog', 'ok'), ('numpy', 'ok')]
    """
    todo = [(c, lib) for c in case_list for lib in libraries if lib in GROUPS[c.group].impls]
    bar = Progress(len(todo), bool(progress))
    results, order, cores = [], list(dict.fromkeys(c.data_key for c in case_list)), usable_cores()
    try:
        for key in order:
            group = GROUPS[key[0]]
            data = _data.data_for(group, key[1], key[2])
            reference = reference_for(group, data)
            for c in (c for c in case_list if c.data_key == key):
                if floors is not None:
                    floors.floor(c)
                with pinned_threads(c.threads):
                    for lib in (lib for lib in libraries if lib in group.impls):
                        if c.threads > 1:
                            # Let the previous library's OpenMP/BLAS threads stop
                            # spinning, so they do not steal a core from this one.
                            time.sleep(SETTLE_S)
                        results.append(run_one(c, lib, data, reference, budget, policy, cores))
                        bar.update(f"{group.name} {c.label} {c.dtype} {c.threads}t {lib}",
                                   section=group.title)
            del data, reference
            if not keep_data:
                _data.clear_data()
    finally:
        bar.close()
    return results

