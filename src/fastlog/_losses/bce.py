"""Binary cross-entropy on logits, and its fused gradient.

``torch.nn.functional.binary_cross_entropy_with_logits`` semantics on
ndarrays: element-wise, `weight` and `pos_weight` broadcast against the
input; the reduction is :mod:`._reduce`'s ('mean' over all elements).
"""
from typing import Optional, Tuple

import numpy as np

from .. import _half
from .._dispatch import core
from .._enums import Reduction
from .._typing import ArrayLike, Loss, ReductionName
from .._validation import check_out, check_overlap, float_array, reduction_code
from ._reduce import finish, grad_scale

__all__ = ["binary_cross_entropy_with_logits", "binary_cross_entropy_with_logits_and_grad"]


def _broadcast_param(v, shape, dtype, name):
    if v is None:
        return None
    a = float_array(v, name)
    try:
        return np.ascontiguousarray(np.broadcast_to(a, shape), dtype=dtype).reshape(-1)
    except ValueError:
        raise ValueError(f"{name} of shape {a.shape} does not broadcast to the input's shape "
                         f"{shape}") from None


def _bce(input, target, weight, reduction, pos_weight, want_grad, out):
    a = float_array(input, "input", promote_int=False)
    red = reduction_code(reduction)
    t = float_array(target, "target")
    if t.shape != a.shape:
        raise ValueError(f"target size {t.shape} must be the same as input size {a.shape}")
    dtype = a.dtype
    x = np.ascontiguousarray(a).reshape(-1)
    y = np.ascontiguousarray(t, dtype=dtype).reshape(-1)
    cdt = _half.compute_dtype(dtype)   # half inputs: float32 weights
    w = _broadcast_param(weight, a.shape, cdt, "weight")
    pw = _broadcast_param(pos_weight, a.shape, cdt, "pos_weight")
    n = x.size
    losses = np.empty(n, dtype) if red == 0 else None
    g = None
    if want_grad:
        if out is not None:
            check_out(out, a.shape, dtype)
            # Elementwise kernel: out may be the input itself, nothing else.
            check_overlap(out, ((input, "input"), (target, "target"), (weight, "weight"),
                                (pos_weight, "pos_weight")), inplace=("input",))
            g = out.reshape(-1) if out.flags.c_contiguous else np.empty(n, dtype)
        else:
            g = np.empty(n, dtype)
    total = core.bce_with_logits(x, y, w, pw, grad_scale(red, n) if n else 1.0, losses, g)

    def terms():
        # (rare: the fast total overflowed) the terms again, loss only
        t = np.empty(n, dtype)
        core.bce_with_logits(x, y, w, pw, 1.0, t, None)
        return t

    loss = finish(losses if red == Reduction.NONE else terms, total, n, red, dtype, a.shape)
    if not want_grad:
        return loss
    if out is None:
        return loss, g.reshape(a.shape)
    if not out.flags.c_contiguous:
        out[...] = g.reshape(a.shape)
    return loss, out


def binary_cross_entropy_with_logits(input: ArrayLike, target: ArrayLike, weight: Optional[ArrayLike] = None,
                                     reduction: ReductionName = "mean",
                                     pos_weight: Optional[ArrayLike] = None) -> Loss:
    """Binary cross-entropy on logits, as ``torch.nn.functional.binary_cross_entropy_with_logits``.

    loss = weight * ((1 - y) x + (1 + (pos_weight - 1) y) * softplus(-x)),
    computed without overflow for any finite x.  `weight` and `pos_weight`
    broadcast against the input (pos_weight along the last, class, axis).
    'mean' averages over all elements.

    Parameters
    ----------
    input : ndarray, float32 or float64
        Logits, any shape.
    target : ndarray
        Targets in [0, 1], the input's shape.
    weight : ndarray, optional
        Rescaling weights, broadcast against the input.
    reduction : {'mean', 'sum', 'none'}
        'mean' averages over all elements.
    pos_weight : ndarray, optional
        Weight of the positive term, broadcast along the last (class) axis.

    Returns
    -------
    loss : scalar of the input's dtype, or an array of the input's shape for
        ``reduction='none'``.

    Raises
    ------
    TypeError
        An input that is not floating point.
    ValueError
        A target of another shape than the input, a `weight` that does not
        broadcast to the input, a `pos_weight` that does not broadcast over the
        class axis, or an unknown `reduction`.

    Examples
    --------
    >>> import numpy as np, fastlog
    >>> z, y = np.array([0.0, 2.0, -1.0]), np.array([1.0, 1.0, 0.0])
    >>> round(float(fastlog.binary_cross_entropy_with_logits(z, y)), 4)
    0.3778
    >>> fastlog.binary_cross_entropy_with_logits(z, y, pos_weight=np.array([2.0, 2.0, 2.0]),
    ...                                          reduction="none").round(4)
    array([1.3863, 0.2539, 0.3133])
    """
    return _bce(input, target, weight, reduction, pos_weight, False, None)


def binary_cross_entropy_with_logits_and_grad(input: ArrayLike, target: ArrayLike,
                                              weight: Optional[ArrayLike] = None,
                                              reduction: ReductionName = "mean",
                                              pos_weight: Optional[ArrayLike] = None, *,
                                              out: Optional[np.ndarray] = None) -> Tuple[Loss, np.ndarray]:
    """:func:`binary_cross_entropy_with_logits` and its gradient, in one pass.

    Returns ``(loss, grad_input)``.  ``out`` (keyword-only) receives the
    gradient and may be the input itself; any other overlap with the input,
    target, weight or pos_weight is a ValueError.

    Parameters
    ----------
    input, target, weight, reduction, pos_weight
        As in :func:`binary_cross_entropy_with_logits`.
    out : ndarray, optional, keyword-only
        Receives the gradient (the input's shape and dtype); may be the input.

    Returns
    -------
    loss : as :func:`binary_cross_entropy_with_logits`
    grad_input : ndarray of the input's shape and dtype
        d(loss)/d(input) (of the summed losses for ``reduction='none'``).

    Raises
    ------
    TypeError
        An input that is not floating point.
    ValueError
        A target of another shape than the input, a `weight` that does not
        broadcast to the input, a `pos_weight` that does not broadcast over the
        class axis, or an unknown `reduction`.
        Also an `out` of the wrong shape or dtype, overlapping an
        argument other than the input itself, or misaligned (``TypeError`` for
        the dtype, ``ValueError`` otherwise).

    Examples
    --------
    >>> import numpy as np, fastlog
    >>> z, y = np.array([0.0, 2.0, -1.0]), np.array([1.0, 1.0, 0.0])
    >>> loss, grad = fastlog.binary_cross_entropy_with_logits_and_grad(z, y)
    >>> grad.round(4)          # (sigmoid(z) - y) / 3
    array([-0.1667, -0.0397,  0.0896])
    """
    return _bce(input, target, weight, reduction, pos_weight, True, out)
