"""Load the compiled kernels, choose their ISA level, hand them to the thread policy.

fastlog compiles its C kernels once per ISA level of the target architecture
and links all of them into ONE extension, :mod:`fastlog._core`, which calls
the kernels through a table of function pointers:

* x86-64: ``x86-64`` (the baseline, SSE2), ``x86-64-v3`` (AVX2 + FMA + BMI2 +
  F16C) and ``x86-64-v4`` (AVX-512 F/DQ/BW/VL/CD), named as NumPy and the
  x86-64 psABI name the levels;
* aarch64: ``aarch64`` (Advanced SIMD) and ``aarch64-sve`` (SVE, any vector
  length: the results do not depend on it).

Loading ``_core`` selects the best level the CPU supports.  This module is
the one place that loads it: it applies ``FASTLOG_ISA`` (a level's name, or
one of the old names ``baseline``, ``avx2``, ``avx512``), then hands the
module to :mod:`fastlog._threads`, which applies the thread settings.
Asking for a level the CPU lacks raises ImportError rather than crashing on
an illegal instruction.  ``fastlog.show_config()`` tells which level runs.
"""
import os

from . import _threads

# libgomp reads its wait policy once, when it is loaded (with _core, here).
with _threads.openmp_wait_policy():
    from . import _core

#: The levels of this architecture, lowest first.
LEVELS = _core.LEVELS

#: Names FASTLOG_ISA accepted before the levels were named after the x86-64
#: psABI levels; ``baseline`` is the lowest level of any architecture.
OLD_NAMES = {"baseline": LEVELS[0], "avx2": "x86-64-v3", "avx512": "x86-64-v4"}


def supported_levels():
    """The ISA levels this CPU can run and this build contains, lowest first."""
    return list(_core.cpu_levels())


def level_name(name):
    """The level a FASTLOG_ISA value names (case-insensitive; old names map
    to the new ones); ValueError for a name that is no level."""
    want = str(name).strip().lower()
    want = OLD_NAMES.get(want, want)
    if want not in LEVELS and want not in OLD_NAMES.values():
        raise ValueError(f"expected one of {', '.join(LEVELS)} (or the old names "
                         f"{', '.join(OLD_NAMES)})")
    return want


def _select():
    value = os.environ.get("FASTLOG_ISA", "").strip()
    if value:
        try:
            level = level_name(value)
        except ValueError as e:
            raise ImportError(f"FASTLOG_ISA={value.lower()!r}: {e}") from None
        levels = supported_levels()
        if level not in levels:
            raise ImportError(f"FASTLOG_ISA={value.lower()!r}: this CPU/build supports only "
                              f"{', '.join(levels)}")
        _core.select(level)
    return _core


#: The compiled module, with the kernel table of the selected level.
core = _select()
_threads.bind(core)


def kernels(level):
    """The exp/log kernels of one ISA level (``.exp_array``, ``.log_array``),
    for tests that check every level this CPU supports; everything else runs
    on the level selected at import."""
    return _core.Kernels(level_name(level))
