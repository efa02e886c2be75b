"""Run-time configuration: threads, the chosen ISA build, OpenMP status."""
import platform
import sys
from typing import Any, Dict, Optional, TextIO

from . import _dispatch
from ._version import __version__
from ._dispatch import core
from ._threads import get_num_threads, num_threads, set_num_threads  # noqa: F401


def _cpu_model():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _openmp_works():
    """Run-time check: an OpenMP region asked for 2 threads really runs 2
    (False for a build without OpenMP)."""
    return bool(core.OPENMP) and core.openmp_team_size(2) == 2


def config() -> Dict[str, Any]:
    """The build and run-time configuration as a dict.

    Returns
    -------
    dict
        ``version``, ``python``, ``numpy``, ``cpu``, ``isa`` (the kernel build in
        use), ``isa_supported``, ``openmp``, ``openmp_threads_ok`` (an OpenMP
        region asked for 2 threads ran 2), ``threads``, ``threads_policy``,
        ``threads_now`` (what a call made now would use), ``max_threads``.

    Examples
    --------
    >>> import fastlog
    >>> c = fastlog.config()
    >>> c["version"] == fastlog.__version__, c["isa"] in c["isa_supported"]
    (True, True)
    """
    import numpy as np

    return {
        "version": __version__,
        "python": sys.version.split()[0],
        "numpy": np.__version__,
        "cpu": _cpu_model(),
        "isa": core.ISA,
        "isa_supported": _dispatch.supported_levels(),
        "openmp": core.OPENMP,
        "openmp_threads_ok": _openmp_works(),
        "threads": core.get_threads(),
        "threads_policy": "as set" if core.threads_explicit() else "default: idle cores at each call",
        "threads_now": core.call_threads(),
        "max_threads": core.max_threads(),
    }


def show_config(file: Optional[TextIO] = None) -> None:
    """Print version, CPU, chosen ISA build, OpenMP status and threads.

    Parameters
    ----------
    file : file-like, optional
        Where to print (default ``sys.stdout``).

    Examples
    --------
    >>> import fastlog
    >>> fastlog.show_config()
    fastlog ... (python ..., numpy ...)
      cpu: ...
      isa: ...  (this CPU supports: ...; force one with FASTLOG_ISA)
      openmp: ...
      threads: ...
    """
    c = config()
    lines = [
        f"fastlog {c['version']} (python {c['python']}, numpy {c['numpy']})",
        f"  cpu:        {c['cpu']}",
        f"  isa:        {c['isa']}  (this CPU supports: {', '.join(c['isa_supported'])}; "
        f"force one with FASTLOG_ISA)",
        f"  openmp:     {'enabled' if c['openmp'] else 'DISABLED (single-threaded build)'}"
        f"{'' if c['openmp_threads_ok'] or not c['openmp'] else ' but NOT WORKING (2 threads asked, fewer ran)'}",
        f"  threads:    {c['threads']} ({c['threads_policy']}; a call now would use {c['threads_now']}; "
        f"OpenMP default {c['max_threads']}; set with fastlog.set_num_threads or FASTLOG_NUM_THREADS)",
    ]
    print("\n".join(lines), file=file)
