"""Argument checking and coercion shared by every public wrapper.

The compiled kernels trust their inputs; everything a user can get wrong is
caught here, once, with an exception that names the argument.
"""
import math
import operator

import numpy as np

from . import _half
from ._enums import Reduction

_F32 = np.dtype(np.float32)
_F64 = np.dtype(np.float64)
_I64 = np.dtype(np.int64)
REDUCTIONS = {"none": Reduction.NONE, "mean": Reduction.MEAN, "sum": Reduction.SUM}
KL_REDUCTIONS = dict(REDUCTIONS, batchmean=Reduction.BATCHMEAN)


def float_array(x, name, *, promote_int=True):
    """`x` as a native-endian, aligned float32/float64 ndarray (no copy when it
    already is one).  A misaligned array (e.g. ``np.frombuffer`` at an odd
    offset, or a buffer unpickled inside a larger frame, as Dask workers do) is
    copied: the kernels read typed pointers, and a misaligned load is undefined
    behaviour in C (UBSan reports it).

    Integers (and bools) become float64 when ``promote_int`` (SciPy's rule),
    otherwise they are a TypeError (torch's rule for losses).  float16 and
    bfloat16 (ml_dtypes) pass through (native byte order); complex, float8 and
    non-numeric input are a TypeError listing the supported dtypes.
    """
    a = x if type(x) is np.ndarray else np.asarray(x)
    dt = a.dtype
    if dt is _F32 or dt is _F64 or dt == _F32 or dt == _F64:
        return a if a.flags.aligned else a.copy()
    if dt.kind == "f" and dt.itemsize in (4, 8) and not dt.isnative:
        # Byte-swapped float32/float64 (a non-native dtype never equals the native one).
        return a.astype(dt.newbyteorder("="))
    if _half.is_half(dt) or (dt.kind == "f" and dt.itemsize == 2):
        # float16 / bfloat16: computed in float32, rounded once (_half.py)
        return a if dt.isnative and a.flags.aligned else a.astype(dt.newbyteorder("="))
    kind = dt.kind
    if kind in "biu":
        if promote_int:
            return a.astype(np.float64)
        raise TypeError(f"{name} must be a floating array ({_half.SUPPORTED}), got dtype {dt}")
    if kind in "fcV":
        raise _half.unsupported(name, dt)
    raise TypeError(f"{name} must be a real numeric array, got dtype {dt}")


def normalize_axes(axis, ndim, name="axis"):
    """Tuple of sorted, non-negative axes; None means all of them."""
    if axis is None:
        return tuple(range(ndim))
    if isinstance(axis, (tuple, list)):
        axes = [_one_axis(a, ndim, name) for a in axis]
        if len(set(axes)) != len(axes):
            raise ValueError(f"{name}: repeated axis in {tuple(axis)}")
        return tuple(sorted(axes))
    return (_one_axis(axis, ndim, name),)


def _one_axis(a, ndim, name):
    try:
        a = operator.index(a)
    except TypeError:
        raise TypeError(f"{name} must be an int, a tuple of ints or None, got {a!r}") from None
    if not -ndim <= a < ndim:
        raise np.exceptions.AxisError(a, ndim, name)
    return a % ndim


def reduction_code(reduction, allowed=REDUCTIONS):
    try:
        return allowed[reduction]
    except (KeyError, TypeError):
        raise ValueError(f"reduction must be one of {', '.join(repr(k) for k in allowed)}, "
                         f"got {reduction!r}") from None


def check_out(out, shape, dtype, name="out"):
    """`out` must be a writable, aligned ndarray of exactly this shape and dtype
    (the kernels write through typed pointers: a misaligned `out` is a ValueError)."""
    if not isinstance(out, np.ndarray):
        raise TypeError(f"{name} must be a numpy.ndarray, got {type(out).__name__}")
    if out.shape != shape:
        raise ValueError(f"{name} has shape {out.shape}, expected {shape}")
    if out.dtype != dtype:
        raise TypeError(f"{name} has dtype {out.dtype}, expected {dtype}")
    if not out.flags.writeable:
        raise ValueError(f"{name} is read-only")
    if not out.flags.aligned:
        raise ValueError(f"{name} is not aligned to its dtype ({dtype}); pass an aligned array")
    return out


# ------------------------------------------------------------- numbers --
# One coercion for every public number parameter.  A value that is not a real
# number of the right kind is a TypeError naming the parameter; one that the
# parameter cannot take -- NaN, inf, out of range, or too large to represent
# at all (an integer like 10**400 has no float, 2**70 no C integer) -- is a
# ValueError naming it.  Nothing reaches compiled code to overflow there.

#: Upper bound of :func:`positive_int` unless a call gives its own (a C ``int``).
INT_MAX = 2**31 - 1
_I64_MIN, _I64_MAX = -2**63, 2**63 - 1


def _is_bool(v):
    return isinstance(v, (bool, np.bool_))


def float_param(v, name, *, lo=-math.inf, hi=math.inf, lo_open=False, finite=True):
    """`v` as a Python float in ``[lo, hi]`` (``(lo, hi]`` with `lo_open`).

    Real numbers only: int, float, NumPy scalars and 0-d arrays (bools, strings
    and None are a TypeError).  NaN, +-inf (with `finite`), a value outside the
    range, and an integer too large for a float (``10**400``) are a ValueError
    naming `name` and the values it takes.
    """
    if _is_bool(v) or isinstance(v, (str, bytes)):
        raise TypeError(f"{name} must be a float, got {type(v).__name__}")
    if math.isfinite(lo) and math.isfinite(hi):
        allowed = f"in {'(' if lo_open else '['}{lo:g}, {hi:g}]"
    elif lo == 0 and lo_open:
        allowed = "a positive finite number" if finite else "a positive number"
    elif math.isfinite(lo):
        allowed = f"a {'finite ' if finite else ''}number {'>' if lo_open else '>='} {lo:g}"
    else:
        allowed = "a finite number" if finite else "a number"
    try:
        f = float(v)
    except OverflowError:
        raise ValueError(f"{name} must be {allowed}, got an integer too large for a float "
                         f"({str(v)[:12]}...)") from None
    except (TypeError, ValueError):
        raise TypeError(f"{name} must be a float, got {type(v).__name__}") from None
    if f != f or (finite and math.isinf(f)) or f < lo or f > hi or (lo_open and f == lo):
        raise ValueError(f"{name} must be {allowed}, got {v!r}")
    return f


def nonneg_float(v, name):
    """A finite float >= 0 (learning rates, momentum, weight decay, z_loss)."""
    return float_param(v, name, lo=0.0)


def int_param(v, name, *, lo=_I64_MIN, hi=_I64_MAX):
    """`v` as a Python int in ``[lo, hi]`` (default: int64).  Integers only
    (``operator.index``: no floats, no bools); out of range is a ValueError
    naming `name`."""
    if _is_bool(v):
        raise TypeError(f"{name} must be an integer, got bool")
    try:
        i = operator.index(v)
    except TypeError:
        raise TypeError(f"{name} must be an integer, got {type(v).__name__}") from None
    if not lo <= i <= hi:
        if lo == _I64_MIN and hi == _I64_MAX:
            raise ValueError(f"{name} must fit in int64 (-2**63 to 2**63 - 1), got {i}")
        if hi in (_I64_MAX, math.inf):
            raise ValueError(f"{name} must be >= {lo}, got {i}")
        raise ValueError(f"{name} must be in [{lo}, {hi}], got {i}")
    return i


def positive_int(v, name, maximum=INT_MAX):
    """An integer in ``[1, maximum]`` (TypeError if not an integer, ValueError outside).

    The bound keeps a value that the compiled code stores in a C ``int`` (thread
    counts, sizes) from turning into an OverflowError deep inside; pass a smaller
    `maximum` where a sane limit exists (e.g. ``2**15`` threads).
    """
    i = int_param(v, name, lo=-math.inf, hi=math.inf)
    if i < 1:
        raise ValueError(f"{name} must be >= 1, got {i}")
    if i > maximum:
        raise ValueError(f"{name} must be <= {maximum}, got {i}")
    return i


def index_param(v, name="ignore_index"):
    """An integer that the kernels compare with int64 targets (ignore_index):
    TypeError if not an integer, ValueError naming it outside the int64 range."""
    return int_param(v, name)


def seed_param(v, name="seed"):
    """A seed for ``numpy.random.default_rng``: None or an integer >= 0."""
    return None if v is None else int_param(v, name, lo=0, hi=math.inf)


def smoothing_param(v):
    """label_smoothing: a float in [0, 1]."""
    return float_param(v, "label_smoothing", lo=0.0, hi=1.0)


# ---------------------------------------------------------------- overlap --
# The one rule for every ``out=`` in the package:
#   * `out` IDENTICAL to an input (same data pointer, shape, strides and dtype)
#     is allowed where the function documents in-place use of that input
#     (`inplace` names those inputs);
#   * any other overlap of `out` with any input array (inputs, targets, class
#     weights, pos_weight, grad_output, ...) is a ValueError naming both.
# The kernels read inputs while they write `out` (and the loss kernels
# range-check integer targets once, then re-read them), so a partial overlap
# gives wrong answers or worse.  Cost: one bounds comparison per input (a few
# hundred ns); the exact (and possibly slow) test runs only when the memory
# extents overlap and the arrays are not identical.
_MAX_WORK = 1 << 16


def _data_ptr(a):
    return a.__array_interface__["data"][0]


def _identical(a, b):
    return (a.shape == b.shape and a.strides == b.strides and a.dtype == b.dtype
            and _data_ptr(a) == _data_ptr(b))


def check_overlap(out, inputs, inplace=(), out_name="out"):
    """Enforce the ``out=`` overlap rule.

    `inputs` is a sequence of ``(array_or_other, name)``; entries that are not
    ndarrays (None, lists, scalars: values converted to fresh arrays) cannot
    overlap and are skipped.  `inplace` holds the names of the inputs that
    `out` may be identical to (the documented in-place uses).
    """
    for a, name in inputs:
        if not isinstance(a, np.ndarray) or a is out and name in inplace:
            continue
        if not np.may_share_memory(out, a):   # memory extents only: cheap
            continue
        if name in inplace and _identical(out, a):
            continue
        try:
            overlap = np.shares_memory(out, a, max_work=_MAX_WORK)
        except np.exceptions.TooHardError:
            overlap = True   # cannot prove they are disjoint
        if overlap:
            how = (f"may be {name} itself (the identical array) but must not otherwise overlap it"
                   if name in inplace else f"must not share memory with {name}")
            raise ValueError(f"{out_name} overlaps {name}: {out_name} {how}")


def class_weight(weight, C, dtype, name="weight"):
    """1-D weight of length C, as a contiguous array of `dtype`."""
    if weight is None:
        return None
    w = float_array(weight, name, promote_int=True)
    dtype = _half.compute_dtype(dtype)   # half inputs: float32 weights
    if w.ndim != 1 or w.shape[0] != C:
        raise ValueError(f"{name} must be a 1-D array of length {C} (the number of classes), "
                         f"got shape {w.shape}")
    return np.ascontiguousarray(w, dtype=dtype)


def index_target(target, expected_shape, name="target"):
    """Class-index target as a flat contiguous int64 array (range checked later)."""
    t = target if type(target) is np.ndarray else np.asarray(target)
    if (t.dtype is _I64 and t.ndim == 1 and t.shape == expected_shape and t.flags.c_contiguous
            and t.flags.aligned):
        return t
    if t.dtype is not _I64:
        k = t.dtype.kind
        if k == "f":
            raise TypeError(f"{name} has floating dtype {t.dtype} and shape {t.shape}: class-index "
                            f"targets must be integers (probability targets must have the input's shape)")
        if k not in "iu":
            raise TypeError(f"{name} must hold integer class indices, got dtype {t.dtype}")
    if t.shape != expected_shape:
        raise ValueError(f"{name} has shape {t.shape}, expected {expected_shape} for class indices")
    if t.dtype.kind == "u" and t.dtype.itemsize == 8 and t.size and t.max() > np.iinfo(np.int64).max:
        raise IndexError(f"{name} contains a class index out of range")
    t = np.ascontiguousarray(t, dtype=_I64)
    return (t if t.flags.aligned else t.copy()).reshape(-1)
