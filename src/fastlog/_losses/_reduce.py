"""The one place where per-row losses and weights become a loss.

Every face of fastlog -- the NumPy losses, fused linear + cross-entropy, Dask,
the torch face, vocabulary-parallel cross-entropy, half-precision linear +
cross-entropy -- turns its per-row (or per-block) results into the value it
returns here, and scales gradients by :func:`grad_scale`.  The rules, which
are PyTorch's:

* ``Reduction.NONE``: the per-position losses, in the loss dtype, shaped like
  the batch (a 0-d result is a scalar);
* ``Reduction.SUM``: the total;
* ``Reduction.MEAN``: the total divided by the denominator the loss defines
  (the summed class weights of the counted targets for cross-entropy and NLL,
  the element count for BCE and KL); 0/0 is NaN and x/0 is +-inf, as IEEE
  division gives;
* ``Reduction.BATCHMEAN`` (KL divergence): the total divided by the batch size;
* label smoothing: a 'mean' whose counted targets weigh 0 in total is NaN
  (PyTorch's smoothing term is 0/0 then as well), and a 'sum' over zero
  classes is NaN (eps / C is inf, times an empty sum);
* totals are the kernels' fixed-order float64 sums; where such a sum overflowed
  (to +-inf, or inf - inf = NaN) although the exact total is finite -- terms
  near the float64 limits -- the total is the exact sum of the terms, rounded
  once (+-inf only where the exact sum overflows);
* the loss dtype is the input's, except that a reduced loss of a float16 or
  bfloat16 input is float32 (accumulated in float64 and rounded once: a
  bfloat16 scalar would keep only 3 significant digits).
"""
import math
from typing import Callable, Optional, Sequence, Union

import numpy as np

from .. import _half
from .._dispatch import core
from .._enums import Reduction

__all__ = ["Reduction", "loss_dtype", "grad_scale", "exact_total", "ratio", "total_of", "value", "finish"]

_F32 = np.dtype(np.float32)
# the scalar type of a reduced loss, per input dtype; the reductions as plain ints
# (finish() runs once per loss call: at 64 x 10 its own cost shows)
_LOSS_TYPES: dict = {}
_HALF_MAX = 65504.0   # float16's largest finite value, the smallest range of a loss dtype
_NONE, _MEAN, _SUM = int(Reduction.NONE), int(Reduction.MEAN), int(Reduction.SUM)
Terms = Union[np.ndarray, Callable[[], np.ndarray], None]


def loss_dtype(dtype: np.dtype) -> np.dtype:
    """The dtype of a reduced loss of an input of `dtype` (float32 for half precision)."""
    return _F32 if _half.is_half(dtype) else np.dtype(dtype)


def grad_scale(red: int, denom: float, smoothing: float = 0.0) -> float:
    """What the gradient of the summed losses is multiplied by: ``1 / denom`` for
    'mean' (inf when the denominator is 0, NaN when label smoothing makes the
    loss 0/0), 1 otherwise.  The compiled kernels use the same rule."""
    return core.grad_scale(int(red), float(denom), float(smoothing))


def exact_total(terms: np.ndarray) -> float:
    """The sum of float64 `terms` without intermediate overflow: correctly rounded
    (+-inf only when the exact sum overflows), +-inf if a term is, NaN if one is
    NaN or both infinities occur."""
    terms = np.asarray(terms, np.float64).reshape(-1)
    if not np.isfinite(terms).all():
        if np.isnan(terms).any():
            return math.nan
        pos, neg = bool((terms == math.inf).any()), bool((terms == -math.inf).any())
        return math.nan if pos and neg else (math.inf if pos else -math.inf)
    # Scaling by a power of two is exact (bar subnormals, far below such a total);
    # fsum is exact and correctly rounded; scaling back overflows iff the sum does.
    return math.fsum((terms * 2.0**-64).tolist()) * 2.0**64


def ratio(total: float, denom: float) -> float:
    """total / denom with IEEE results for denom == 0 (0/0 -> nan, x/0 -> +-inf)."""
    if denom:
        return total / denom
    if total != total or total == 0:
        return math.nan
    return math.copysign(math.inf, total)


def total_of(terms: np.ndarray) -> float:
    """The total of per-row losses that no kernel summed (NumPy's pairwise sum in
    float64), exact where that sum overflows."""
    with np.errstate(over="ignore", invalid="ignore"):
        total = float(np.sum(terms, dtype=np.float64))
    return total if math.isfinite(total) else exact_total(terms)


def value(terms: Terms, total: Optional[float], denom: float, red: int, *, smoothing: float = 0.0,
          classes: Optional[int] = None) -> float:
    """The reduced loss as a Python float (float64): the rules of :func:`finish` for
    'mean', 'sum' and 'batchmean', for callers that build their own scalar (the torch
    face makes a tensor of it directly)."""
    if total is None:
        assert isinstance(terms, np.ndarray), "a total or the terms themselves"
        total = total_of(terms)
    elif not math.isfinite(total) and terms is not None:
        total = exact_total(terms() if callable(terms) else terms)
    if red == _MEAN:
        if smoothing and not denom:
            return math.nan
        return total / denom if denom else ratio(total, denom)
    if red == _SUM:
        return math.nan if smoothing and classes == 0 else total
    with np.errstate(divide="ignore", invalid="ignore"):   # batchmean
        return float(np.float64(total) / denom)


def finish(terms: Terms, total: Optional[float], denom: float, red: int, dtype: np.dtype,
           batch_shape: Optional[Sequence[int]] = None, *, smoothing: float = 0.0,
           classes: Optional[int] = None):
    """The loss a function returns.

    Parameters
    ----------
    terms : ndarray, callable or None
        The per-position losses (float64), or a function that computes them
        (called only when the fast total overflowed: BCE recomputes its terms
        then), or None when only `total` is known.
    total : float or None
        The kernels' fixed-order total of `terms`; None: summed here.
    denom : float
        The 'mean' denominator (or the batch size for 'batchmean').
    red : Reduction
    dtype : numpy dtype
        The input's dtype.
    batch_shape : tuple, optional
        The shape of a 'none' result.
    smoothing : float
        The label smoothing of a cross-entropy (PyTorch's NaN conventions).
    classes : int, optional
        The number of classes of a cross-entropy.

    Returns
    -------
    An array of `dtype` (a scalar when 0-d) for 'none'; a scalar of
    :func:`loss_dtype` otherwise.
    """
    if red == _NONE:
        v = np.asarray(terms).astype(dtype, copy=False)
        if batch_shape is not None:
            v = v.reshape(batch_shape)
        return v[()] if v.ndim == 0 else v
    scalar = _LOSS_TYPES.get(dtype)
    if scalar is None:
        scalar = _LOSS_TYPES[dtype] = loss_dtype(dtype).type
    return rounded(value(terms, total, denom, red, smoothing=smoothing, classes=classes), scalar)


def rounded(v: float, scalar: Callable) -> np.generic:
    """`v` rounded to the loss dtype's scalar type; a value beyond that dtype's range
    becomes +-inf silently, as in PyTorch (the overflow is the answer, not an accident
    worth a RuntimeWarning)."""
    if -_HALF_MAX <= v <= _HALF_MAX:        # in every loss dtype's range (and not NaN)
        return scalar(v)
    with np.errstate(over="ignore"):
        return scalar(v)
