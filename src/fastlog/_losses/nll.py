"""Negative log-likelihood of log-probabilities, and its gradient.

``torch.nn.functional.nll_loss`` semantics on ndarrays: loss_i =
-weight[y_i] * input[i, y_i]; the kernel range-checks the targets before it
writes anything; the reduction is :mod:`._reduce`'s.
"""
from typing import Optional, Tuple

import numpy as np

from .._dispatch import core
from .._typing import ArrayLike, Loss, ReductionName
from .._validation import class_weight, index_param, index_target, reduction_code
from ._reduce import finish
from ._rows import Rows, check_grad_out

__all__ = ["nll_loss", "nll_loss_and_grad"]


def _nll(input, target, weight, ignore_index, reduction, want_grad, out):
    R = Rows(input)
    red = reduction_code(reduction)
    ignore_index = index_param(ignore_index)
    dtype = R.a.dtype
    if out is not None:
        check_grad_out(out, R.a, input, target, weight)
    w = class_weight(weight, R.C, dtype)
    tt = index_target(target, R.batch_shape)
    g = R.grad_buffer(out) if want_grad else None
    losses = np.empty(R.rows.shape[0], np.float64)
    bad, wsum, total = core.nll(R.rows, tt, w, ignore_index, red, g, losses)
    if bad >= 0:
        raise IndexError(f"target {int(tt[bad])} is out of bounds for {R.C} classes "
                         f"(at flat position {bad}; ignore_index={ignore_index})")
    loss = finish(losses, total, wsum, red, dtype, R.batch_shape)
    if not want_grad:
        return loss
    return loss, R.finish_grad(g, out)


def nll_loss(input: ArrayLike, target: ArrayLike, weight: Optional[ArrayLike] = None, ignore_index: int = -100,
             reduction: ReductionName = "mean") -> Loss:
    """Negative log-likelihood of log-probabilities, as ``torch.nn.functional.nll_loss``.

    Same shapes, weights, ignore_index and reductions as :func:`cross_entropy`
    with index targets; loss_i = -weight[y_i] * input[i, y_i].

    Parameters
    ----------
    input : ndarray, float32 or float64
        Log-probabilities, ``(C,)``, ``(N, C)`` or ``(N, C, d1, ..., dk)``.
    target : int ndarray
        Class indices of shape ``()``, ``(N,)`` or ``(N, d1, ..., dk)``.
    weight : ndarray of shape (C,), optional
        Per-class rescaling weights.
    ignore_index : int, default -100
        Target value that contributes neither loss nor gradient.
    reduction : {'mean', 'sum', 'none'}
        As in :func:`cross_entropy`.

    Returns
    -------
    loss : scalar of the input's dtype, or an array of the target's shape for
        ``reduction='none'``.

    Raises
    ------
    IndexError
        A target outside ``[0, C)`` that is not `ignore_index`.
    TypeError
        An input that is not floating point, targets that are not integers, or
        an `ignore_index` that is not an integer.
    ValueError
        A target or `weight` of the wrong shape, or an unknown `reduction`.

    Examples
    --------
    >>> import numpy as np, fastlog
    >>> logp = np.log(np.array([[0.5, 0.25, 0.25], [0.1, 0.1, 0.8]]))
    >>> round(float(fastlog.nll_loss(logp, np.array([0, 2]))), 4)
    0.4581
    >>> fastlog.nll_loss(logp, np.array([0, 2]), weight=np.array([2.0, 1.0, 1.0]),
    ...                  reduction="none").round(4)
    array([1.3863, 0.2231])
    """
    return _nll(input, target, weight, ignore_index, reduction, False, None)


def nll_loss_and_grad(input: ArrayLike, target: ArrayLike, weight: Optional[ArrayLike] = None,
                      ignore_index: int = -100, reduction: ReductionName = "mean", *,
                      out: Optional[np.ndarray] = None) -> Tuple[Loss, np.ndarray]:
    """:func:`nll_loss` and its gradient with respect to `input`: ``(loss, grad_input)``.

    ``out`` (keyword-only) receives the gradient and may be the input itself;
    any other overlap with the input, target or weight is a ValueError.

    Parameters
    ----------
    input, target, weight, ignore_index, reduction
        As in :func:`nll_loss`.
    out : ndarray, optional, keyword-only
        Receives the gradient (the input's shape and dtype); may be the input.

    Returns
    -------
    loss : as :func:`nll_loss`
    grad_input : ndarray of the input's shape and dtype
        d(loss)/d(input) (of the summed losses for ``reduction='none'``):
        ``-weight[y] / denominator`` at each target, 0 elsewhere and at ignored
        positions.

    Raises
    ------
    IndexError
        A target outside ``[0, C)`` that is not `ignore_index`.
    TypeError
        An input that is not floating point, targets that are not integers, or
        an `ignore_index` that is not an integer.
    ValueError
        A target or `weight` of the wrong shape, or an unknown `reduction`.
        Also an `out` of the wrong shape or dtype, overlapping an
        argument other than the input itself, or misaligned (``TypeError`` for
        the dtype, ``ValueError`` otherwise).

    Examples
    --------
    >>> import numpy as np, fastlog
    >>> logp = np.log(np.array([[0.5, 0.25, 0.25], [0.1, 0.1, 0.8]]))
    >>> loss, grad = fastlog.nll_loss_and_grad(logp, np.array([0, 2]))
    >>> grad
    array([[-0.5,  0. ,  0. ],
           [ 0. ,  0. , -0.5]])
    """
    return _nll(input, target, weight, ignore_index, reduction, True, out)
