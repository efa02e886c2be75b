"""The saved form of a run: machine information and the JSON report."""
import datetime
import json
import os
import platform
import sys

from .impls import TORCH_INSTALL
from .presets import usable_cores
from .runner import Result
from .timing import pinning_text

__all__ = ["machine_info", "make_report", "save_json", "load_json", "results_of", "FORMAT"]

FORMAT = "fastlog-bench/2"
READABLE = ("fastlog-bench/1", FORMAT)


def _version(mod_name):
    mod = sys.modules.get(mod_name)
    if mod is None:
        try:
            from importlib.metadata import version
            return version(mod_name)
        except Exception:
            return None
    return getattr(mod, "__version__", "?")


def _blas():
    try:
        from threadpoolctl import threadpool_info
    except ImportError:
        return []
    return sorted({f"{i.get('internal_api')} {i.get('version')}" for i in threadpool_info()
                   if i.get("user_api") == "blas"})


def load_average():
    return os.getloadavg()[0] if hasattr(os, "getloadavg") else None


def machine_info(load_at_start=None):
    """CPU model, cores, the ISA build fastlog chose, OpenMP, versions, how threads were pinned.

    Parameters
    ----------
    load_at_start : float, optional
        The load average when the run began (recorded as given).

    Examples
    --------
    >>> import fastlog
    >>> from fastlog.bench.records import machine_info
    >>> m = machine_info()
    >>> m["fastlog"] == fastlog.__version__, m["isa"] in m["isa_supported"], m["cores"] >= 1
    (True, True, True)
    """
    import fastlog

    c = fastlog.config()
    return {
        "cpu": c["cpu"],
        "cores": usable_cores(),
        "platform": f"{platform.system()} {platform.machine()}",
        "fastlog": c["version"],
        "isa": c["isa"],
        "isa_supported": list(c["isa_supported"]),
        "isa_forced": os.environ.get("FASTLOG_ISA", "") or None,
        "openmp": bool(c["openmp"]),
        "python": c["python"],
        "numpy": c["numpy"],
        "scipy": _version("scipy"),
        "torch": _version("torch") if "torch" in sys.modules else None,
        "torch_install": TORCH_INSTALL,
        "blas": _blas(),
        "pinning": pinning_text(),
        "load_avg_start": load_at_start,
        "load_avg_1min": load_average(),
    }


def make_report(results, machine, floors, preset, command, elapsed_s=None, policy=None):
    """The JSON-able report of one run (`floors`: a FloorMeter's to_dict()).

    Parameters
    ----------
    results : list of Result
        The rows (:func:`fastlog.bench.runner.run_cases`).
    machine : dict
        :func:`machine_info`.
    floors : dict or None
        A :class:`~fastlog.bench.floors.FloorMeter`'s ``to_dict()``.
    preset, command : str
        The preset run and the command line that ran it.
    elapsed_s : float, optional
        Wall time of the run.
    policy : dict, optional
        The noise policy (``dataclasses.asdict(NoisePolicy)``).

    Examples
    --------
    >>> from fastlog.bench.presets import Case
    >>> from fastlog.bench.records import machine_info, make_report
    >>> from fastlog.bench.runner import Result
    >>> from fastlog.bench.timing import Stats
    >>> case = Case("softmax", (4096, 1000), "float32", 1)
    >>> def timed(lib, ms):
    ...     return Result(case, lib, "ok", err=0.0, stats=Stats.from_samples([ms / 1e3] * 5, 1))
    >>> rep = make_report([timed("fastlog", 2.0), timed("numpy", 8.0)], machine_info(), None, "quick", "example")
    >>> rep["format"], rep["command"], [r["library"] for r in rep["results"]]
    ('fastlog-bench/2', 'example', ['fastlog', 'numpy'])
    """
    return {
        "format": FORMAT,
        "created": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "command": command,
        "preset": preset,
        "elapsed_s": elapsed_s,
        "machine": machine,
        "floors": floors,
        "noise_policy": policy,
        "results": [r.to_dict() for r in results],
    }


def save_json(report, path):
    """Write a report as indented JSON.

    Parameters
    ----------
    report : dict
        :func:`make_report`.
    path : str or os.PathLike
        The file to write.

    Examples
    --------
    >>> from fastlog.bench.presets import Case
    >>> from fastlog.bench.records import machine_info, make_report
    >>> from fastlog.bench.runner import Result
    >>> from fastlog.bench.timing import Stats
    >>> case = Case("softmax", (4096, 1000), "float32", 1)
    >>> def timed(lib, ms):
    ...     return Result(case, lib, "ok", err=0.0, stats=Stats.from_samples([ms / 1e3] * 5, 1))
    >>> rep = make_report([timed("fastlog", 2.0), timed("numpy", 8.0)], machine_info(), None, "quick", "example")
    >>> import os, tempfile
    >>> from fastlog.bench.records import load_json, save_json
    >>> path = os.path.join(tempfile.mkdtemp(), "run.json")
    >>> save_json(rep, path)
    >>> load_json(path) == rep
    True
    """
    with open(path, "w") as f:
        json.dump(report, f, indent=1)
        f.write("\n")


def load_json(path):
    """Read a report saved by :func:`save_json` (ValueError if the file is not one).

    Parameters
    ----------
    path : str or os.PathLike
        The JSON file.

    Examples
    --------
    >>> import json, os, tempfile
    >>> from fastlog.bench.records import load_json
    >>> path = os.path.join(tempfile.mkdtemp(), "other.json")
    >>> with open(path, "w") as f:
    ...     json.dump({"format": "something else"}, f)
    >>> load_json(path)
    Traceback (most recent call last):
    ValueError: ... is not a fastlog-bench report (expected format 'fastlog-bench/2')
    """
    with open(path) as f:
        rep = json.load(f)
    if not isinstance(rep, dict) or rep.get("format") not in READABLE:
        raise ValueError(f"{path} is not a fastlog-bench report (expected format {FORMAT!r})")
    return rep


def results_of(report):
    """The report's rows as :class:`~fastlog.bench.runner.Result` objects.

    Parameters
    ----------
    report : dict
        A report (:func:`make_report` or :func:`load_json`).

    Examples
    --------
    >>> from fastlog.bench.presets import Case
    >>> from fastlog.bench.records import machine_info, make_report
    >>> from fastlog.bench.runner import Result
    >>> from fastlog.bench.timing import Stats
    >>> case = Case("softmax", (4096, 1000), "float32", 1)
    >>> def timed(lib, ms):
    ...     return Result(case, lib, "ok", err=0.0, stats=Stats.from_samples([ms / 1e3] * 5, 1))
    >>> rep = make_report([timed("fastlog", 2.0), timed("numpy", 8.0)], machine_info(), None, "quick", "example")
    >>> from fastlog.bench.records import results_of
    >>> [(r.library, r.stats.median) for r in results_of(rep)]
    [('fastlog', 0.002), ('numpy', 0.008)]
    """
    return [Result.from_dict(d) for d in report["results"]]
