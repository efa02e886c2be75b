"""Choose the compiled kernel build for this CPU, once, at import time.

fastlog ships the same kernels compiled for three x86-64 levels:
``baseline`` (SSE2, any x86-64), ``avx2`` (AVX2 + FMA) and ``avx512``
(AVX-512 F/DQ/BW/VL).  The best level the CPU supports is used unless the
environment variable ``FASTLOG_ISA`` names one (``baseline``, ``avx2``,
``avx512``); asking for a level the CPU lacks raises ImportError rather than
crashing on an illegal instruction.  Threads: ``FASTLOG_NUM_THREADS`` or
:func:`fastlog.set_num_threads` (default: OpenMP's default, i.e. all cores).
"""
import importlib
import importlib.util
import os

from . import _core_baseline

LEVELS = ("baseline", "avx2", "avx512")


def supported_levels():
    """The ISA levels this CPU can run and this build contains, lowest first."""
    out = ["baseline"]
    for name, ok in (("avx2", _core_baseline.cpu_has_avx2_fma()),
                     ("avx512", _core_baseline.cpu_has_avx512())):
        if not ok or importlib.util.find_spec(f"fastlog._core_{name}") is None:
            break
        out.append(name)
    return out


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
    return importlib.import_module(f"fastlog._core_{level}")


core = _select()


def _initial_threads():
    env = os.environ.get("FASTLOG_NUM_THREADS", "").strip()
    if env:
        try:
            n = int(env)
        except ValueError:
            raise ImportError(f"FASTLOG_NUM_THREADS={env!r} is not an integer") from None
        if n < 1:
            raise ImportError(f"FASTLOG_NUM_THREADS={env!r} must be >= 1")
        return n
    return max(1, core.max_threads())


core.set_threads(_initial_threads())
