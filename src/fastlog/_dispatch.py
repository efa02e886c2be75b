"""Choose the kernel table for this CPU, once, at import time.

fastlog compiles its C kernels for three x86-64 levels: ``baseline`` (SSE2,
any x86-64), ``avx2`` (AVX2 + FMA + BMI2 + F16C) and ``avx512`` (AVX-512
F/DQ/BW/VL/CD), and links all of them into ONE extension, :mod:`fastlog._core`,
which calls the kernels through a table of function pointers.  The best level
the CPU supports is selected here unless the environment variable
``FASTLOG_ISA`` names one (``baseline``, ``avx2``, ``avx512``); asking for a
level the CPU lacks raises ImportError rather than crashing on an illegal
instruction.  ``fastlog.show_config()`` tells which one runs.
"""
import os

from . import _threads

# libgomp reads its wait policy once, when it is loaded (with _core, below).
with _threads.openmp_wait_policy():
    from . import _core

LEVELS = ("baseline", "avx2", "avx512")


def supported_levels():
    """The ISA levels this CPU can run and this build contains, lowest first."""
    return list(_core.cpu_levels())


def _select():
    levels = supported_levels()
    want = os.environ.get("FASTLOG_ISA", "").strip().lower()
    if want:
        if want not in LEVELS:
            raise ImportError(f"FASTLOG_ISA={want!r}: expected one of {', '.join(LEVELS)}")
        if want not in levels:
            raise ImportError(f"FASTLOG_ISA={want!r}: this CPU/build supports only {', '.join(levels)}")
        level = want
    else:
        level = levels[-1]
    _core.select(level)
    return _core


#: The compiled module, with the kernel table of the selected level.
core = _select()


def kernels(level):
    """The exp/log kernels of one ISA level (``.exp_array``, ``.log_array``), for
    tests that check every level this CPU supports; everything else runs on
    the level selected at import."""
    return _core.Kernels(level)


from . import _threads  # noqa: E402  (sets the initial thread count)

_threads._init()
