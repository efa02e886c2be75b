"""Run-time configuration: threads, the chosen ISA build, OpenMP status."""
import platform
import sys

from . import _dispatch
from ._dispatch import core
from ._validation import positive_int


def set_num_threads(n):
    """Use `n` threads (>= 1) in fastlog's kernels.  Results do not depend on it.

    The default is OpenMP's default (all cores) or ``FASTLOG_NUM_THREADS``.
    Small inputs run on one thread whatever this says.
    """
    core.set_threads(positive_int(n, "n"))


def get_num_threads():
    """The number of threads fastlog's kernels may use."""
    return core.get_threads()


class num_threads:
    """Context manager: ``with fastlog.num_threads(1): ...`` restores the old count after."""

    def __init__(self, n):
        self.n = n

    def __enter__(self):
        self.old = get_num_threads()
        set_num_threads(self.n)
        return self

    def __exit__(self, *exc):
        set_num_threads(self.old)


def _cpu_model():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def config():
    """The build and run-time configuration as a dict."""
    from . import __version__
    import numpy as np

    return {
        "version": __version__,
        "python": sys.version.split()[0],
        "numpy": np.__version__,
        "cpu": _cpu_model(),
        "isa": core.ISA,
        "isa_supported": _dispatch.supported_levels(),
        "openmp": core.OPENMP,
        "threads": core.get_threads(),
        "max_threads": core.max_threads(),
    }


def show_config(file=None):
    """Print version, CPU, chosen ISA build, OpenMP status and threads."""
    c = config()
    lines = [
        f"fastlog {c['version']} (python {c['python']}, numpy {c['numpy']})",
        f"  cpu:        {c['cpu']}",
        f"  isa:        {c['isa']}  (this CPU supports: {', '.join(c['isa_supported'])}; "
        f"force one with FASTLOG_ISA)",
        f"  openmp:     {'enabled' if c['openmp'] else 'DISABLED (single-threaded build)'}",
        f"  threads:    {c['threads']} (OpenMP default {c['max_threads']}; "
        f"set with fastlog.set_num_threads or FASTLOG_NUM_THREADS)",
    ]
    print("\n".join(lines), file=file)
