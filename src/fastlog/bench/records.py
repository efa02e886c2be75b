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
    """CPU model, cores, the ISA build fastlog chose, OpenMP, versions, how threads were pinned."""
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
    """The JSON-able report of one run (`floors`: a FloorMeter's to_dict())."""
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
    with open(path, "w") as f:
        json.dump(report, f, indent=1)
        f.write("\n")


def load_json(path):
    with open(path) as f:
        rep = json.load(f)
    if not isinstance(rep, dict) or rep.get("format") not in READABLE:
        raise ValueError(f"{path} is not a fastlog-bench report (expected format {FORMAT!r})")
    return rep


def results_of(report):
    return [Result.from_dict(d) for d in report["results"]]
