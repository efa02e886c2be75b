"""KL divergence of log-probabilities, as ``torch.nn.functional.kl_div``.

Pointwise in NumPy (no fused kernel: its gradient is constant in the input);
the reduction is :mod:`._reduce`'s, with 'batchmean' dividing by the batch size.
"""
import numpy as np

from .. import _half
from .._enums import Reduction
from .._typing import ArrayLike, KLReductionName, Loss
from .._validation import KL_REDUCTIONS, float_array, reduction_code
from ._reduce import finish

__all__ = ["kl_div"]


def kl_div(input: ArrayLike, target: ArrayLike, reduction: KLReductionName = "mean",
           log_target: bool = False) -> Loss:
    """KL divergence, as ``torch.nn.functional.kl_div`` (input holds log-probabilities).

    Pointwise ``exp(t) * (t - x)`` if `log_target` else ``xlogy(t, t) - t * x``;
    'mean' averages over all elements, 'batchmean' divides the sum by the
    first dimension (the batch size), as torch does.

    Parameters
    ----------
    input : ndarray, float32 or float64
        Log-probabilities, any shape (batch first).
    target : ndarray
        Probabilities (log-probabilities if `log_target`), the input's shape.
    reduction : {'mean', 'batchmean', 'sum', 'none'}
        How the pointwise losses are reduced.
    log_target : bool, default False
        Whether `target` holds log-probabilities.

    Returns
    -------
    loss : scalar of the input's dtype, or an array of the input's shape for
        ``reduction='none'``.

    Raises
    ------
    TypeError
        An input that is not floating point.
    ValueError
        A target that does not broadcast against the input, or an unknown
        `reduction`.

    Examples
    --------
    >>> import numpy as np, fastlog
    >>> logq = np.log(np.array([[0.5, 0.5], [0.25, 0.75]]))
    >>> p = np.array([[0.5, 0.5], [0.5, 0.5]])
    >>> round(float(fastlog.kl_div(logq, p, reduction="batchmean")), 4)
    0.0719
    >>> round(float(fastlog.kl_div(logq, np.log(p), reduction="sum", log_target=True)), 4)
    0.1438
    """
    from scipy.special import xlogy   # (imported when used: scipy.special is slow to import)

    a = float_array(input, "input", promote_int=False)
    red = reduction_code(reduction, KL_REDUCTIONS)
    t = float_array(target, "target")
    dtype = np.result_type(a.dtype, t.dtype)
    if _half.is_half(dtype):   # computed in float32; 'none' rounded once to the half dtype
        r = kl_div(a.astype(np.float32), t.astype(np.float32), reduction, log_target)
        return r.astype(dtype) if red == Reduction.NONE else r
    try:
        x, y = np.broadcast_arrays(a.astype(dtype, copy=False), t.astype(dtype, copy=False))
    except ValueError:
        raise ValueError(f"target of shape {t.shape} does not broadcast against input of shape "
                         f"{a.shape}") from None
    with np.errstate(over="ignore", invalid="ignore"):
        if log_target:
            pw = np.exp(y) * (y - x)
        else:
            pw = xlogy(y, y) - y * x
    if red == Reduction.NONE:
        return pw.astype(dtype, copy=False)

    def terms():
        # (rare: the float64 total overflowed) float32 terms may have overflowed on
        # their own: form them in float64, as the total is accumulated
        if pw.dtype == np.float64:
            return pw
        x64, y64 = x.astype(np.float64), y.astype(np.float64)
        with np.errstate(over="ignore", invalid="ignore"):
            return np.exp(y64) * (y64 - x64) if log_target else xlogy(y64, y64) - y64 * x64

    with np.errstate(over="ignore", invalid="ignore"):
        total = float(np.sum(pw, dtype=np.float64))
    denom = (x.shape[0] if x.ndim else 1) if red == Reduction.BATCHMEAN else pw.size
    return finish(terms, total, denom, red, dtype)
