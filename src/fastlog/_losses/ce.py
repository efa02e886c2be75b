"""Cross-entropy with class-index or class-probability targets, and its fused gradient.

``torch.nn.functional.cross_entropy`` semantics on ndarrays (shapes: see
:mod:`fastlog._losses`).  One kernel pass per row gives the loss and, when
asked, the gradient: the row is read once, exp(x - max) goes straight into the
gradient buffer and is scaled there while the row is in cache.  The kernels
return final per-row losses (rows near the float64 limits included); the
reduction is :mod:`._reduce`'s.
"""
from typing import Optional, Tuple

import numpy as np

from .. import _half
from .._dispatch import core
from .._enums import Reduction
from .._typing import ArrayLike, Loss, ReductionName
from .._validation import (_F32, _F64, _I64, check_overlap, class_weight, index_param, index_target,
                           reduction_code, smoothing_param)
from ._reduce import finish, grad_scale
from ._rows import Rows, check_grad_out

__all__ = ["cross_entropy", "cross_entropy_and_grad"]

_I64_LIM = 2**63


def fused(input: ArrayLike, target: ArrayLike, weight: Optional[ArrayLike], ignore_index: int,
          reduction: str, label_smoothing: float, want_grad: bool, out: Optional[np.ndarray],
          ign_nan: bool = False) -> Tuple[Loss, Optional[np.ndarray]]:
    """Validated cross-entropy: (loss, gradient), the gradient None without `want_grad`.

    `ign_nan` gives an ignored position PyTorch's gradient, NaN where that
    position's logits have no log-softmax (the torch face asks for it); the
    NumPy face's gradient is 0 at every ignored position."""
    R = Rows(input)
    red = reduction_code(reduction)
    eps = (0.0 if type(label_smoothing) in (float, int) and label_smoothing == 0
           else smoothing_param(label_smoothing))
    ignore_index = index_param(ignore_index)
    dtype = R.a.dtype
    if out is not None:
        check_grad_out(out, R.a, input, target, weight)
    w = None if weight is None else class_weight(weight, R.C, dtype)
    t = target if type(target) is np.ndarray else np.asarray(target)
    M = R.rows.shape[0]
    if M and R.C == 0:
        raise ValueError("input has 0 classes")
    losses = np.empty(M, np.float64)
    if (t.dtype.kind == "f" or _half.is_bfloat16(t.dtype)) and t.shape == R.a.shape and t.shape != R.batch_shape:
        # Class probabilities.
        if ignore_index >= 0:
            # torch: "ignore_index is not supported for floating point target"
            # (a negative one, like the default -100, is accepted and unused).
            raise ValueError(f"ignore_index={ignore_index} is not supported with class-probability "
                             f"targets (only a negative ignore_index, such as the default -100)")
        tr = R.same_layout(t, "target")
        g = R.grad_buffer(out) if want_grad else None
        total = core.ce_prob(R.rows, tr, w, eps, grad_scale(red, M), g, losses)
        # 'mean' divides by the number of positions; the smoothed target eps / C
        # of zero classes multiplies nothing (PyTorch: 0)
        loss = finish(losses, total, M, red, dtype, R.batch_shape, smoothing=eps)
    else:
        tt = index_target(t, R.batch_shape)
        g = R.grad_buffer(out) if want_grad else None
        bad, wsum, total = core.ce_index(R.rows, tt, w, ignore_index, eps, red, g, losses, ign_nan)
        if bad >= 0:
            raise IndexError(f"target {int(tt[bad])} is out of bounds for {R.C} classes "
                             f"(at flat position {bad}; ignore_index={ignore_index})")
        loss = finish(losses, total, wsum, red, dtype, R.batch_shape, smoothing=eps, classes=R.C)
    return loss, (R.finish_grad(g, out) if want_grad else None)


def cross_entropy(input: ArrayLike, target: ArrayLike, weight: Optional[ArrayLike] = None,
                  ignore_index: int = -100, reduction: ReductionName = "mean",
                  label_smoothing: float = 0.0) -> Loss:
    """Cross-entropy between logits and targets, as ``torch.nn.functional.cross_entropy``.

    Parameters
    ----------
    input : ndarray, float32 or float64
        Logits, ``(C,)``, ``(N, C)`` or ``(N, C, d1, ..., dk)``.
    target : ndarray
        Integer class indices of shape ``()``, ``(N,)`` or ``(N, d1, ..., dk)``
        (out-of-range values other than `ignore_index` raise IndexError), or
        class probabilities with the input's shape (floating dtype).
    weight : ndarray of shape (C,), optional
        Per-class rescaling weights.
    ignore_index : int, default -100
        Target value that contributes neither loss nor gradient (index targets).
    reduction : {'mean', 'sum', 'none'}
        'mean' divides by the summed weights of the non-ignored targets (by the
        number of positions for probability targets); all ignored gives NaN.
    label_smoothing : float in [0, 1]
        Mixes the target with the uniform distribution.

    Returns
    -------
    loss : scalar of the input's dtype, or an array of the target's shape for
        ``reduction='none'``.

    Raises
    ------
    IndexError
        A class-index target outside ``[0, C)`` that is not `ignore_index`.
    TypeError
        An input that is not floating point, class-index targets that are not
        integers, or an `ignore_index` that is not an integer.
    ValueError
        A target or `weight` of the wrong shape, an unknown `reduction`, or a
        `label_smoothing` outside [0, 1].

    Examples
    --------
    >>> import numpy as np, fastlog
    >>> x = np.array([[1.0, 2.0, 3.0], [1.0, 1.0, 1.0]])
    >>> round(float(fastlog.cross_entropy(x, np.array([2, 0]))), 4)
    0.7531
    >>> fastlog.cross_entropy(x, np.array([2, -100]), reduction="none").round(4)
    array([0.4076, 0.    ])
    >>> p = np.array([[0.0, 0.0, 1.0], [1.0, 0.0, 0.0]])      # probability targets
    >>> round(float(fastlog.cross_entropy(x, p, label_smoothing=0.1)), 4)
    0.8031
    """
    return fused(input, target, weight, ignore_index, reduction, label_smoothing, False, None)[0]


def cross_entropy_and_grad(input: ArrayLike, target: ArrayLike, weight: Optional[ArrayLike] = None,
                           ignore_index: int = -100, reduction: ReductionName = "mean",
                           label_smoothing: float = 0.0, *,
                           out: Optional[np.ndarray] = None) -> Tuple[Loss, np.ndarray]:
    """:func:`cross_entropy` and its gradient with respect to `input`, in one pass.

    Returns ``(loss, grad_input)``.  ``out`` (an array of the input's shape and
    dtype, possibly `input` itself) receives the gradient.

    Parameters
    ----------
    input, target, weight, ignore_index, reduction, label_smoothing
        As in :func:`cross_entropy`.
    out : ndarray, optional, keyword-only
        Receives the gradient (the input's shape and dtype).  It may be the
        input itself (in place: no N x C allocation); any other overlap with
        the input, the target or the weight is a ValueError.

    Returns
    -------
    loss : as :func:`cross_entropy`
    grad_input : ndarray of the input's shape and dtype
        d(loss)/d(input) (of the summed losses for ``reduction='none'``);
        0 at ignored positions.

    Raises
    ------
    IndexError
        A class-index target outside ``[0, C)`` that is not `ignore_index`.
    TypeError
        An input that is not floating point, class-index targets that are not
        integers, or an `ignore_index` that is not an integer.
    ValueError
        A target or `weight` of the wrong shape, an unknown `reduction`, or a
        `label_smoothing` outside [0, 1].
        Also an `out` of the wrong shape or dtype, overlapping an
        argument other than the input itself, or misaligned (``TypeError`` for
        the dtype, ``ValueError`` otherwise).

    Examples
    --------
    >>> import numpy as np, fastlog
    >>> x = np.array([[1.0, 2.0, 3.0], [1.0, 1.0, 1.0]])
    >>> loss, grad = fastlog.cross_entropy_and_grad(x, np.array([2, 0]))
    >>> round(float(loss), 4)
    0.7531
    >>> grad.round(4)
    array([[ 0.045 ,  0.1224, -0.1674],
           [-0.3333,  0.1667,  0.1667]])
    >>> loss, grad = fastlog.cross_entropy_and_grad(x, np.array([2, 0]), out=x)  # in place
    >>> grad is x
    True
    """
    # The training-loop call -- C-contiguous 2-D logits, int64 targets, no
    # weights or smoothing, mean/sum -- skips the general path's layout work:
    # at 64 x 10 the wrapper, not the kernel, is most of the time.  Every
    # check the kernel relies on is still made here or by the kernel itself
    # (targets are range-checked before anything is written).
    if (weight is None and type(input) is np.ndarray and type(target) is np.ndarray
            and type(label_smoothing) is float and label_smoothing == 0.0
            and (reduction == "mean" or reduction == "sum") and type(ignore_index) is int
            and -_I64_LIM <= ignore_index < _I64_LIM):
        dt = input.dtype
        if ((dt is _F32 or dt is _F64) and input.ndim == 2 and target.dtype is _I64
                and target.ndim == 1 and target.shape[0] == input.shape[0]
                and input.shape[1] > 0 and input.flags.c_contiguous and target.flags.c_contiguous
                and input.flags.aligned and target.flags.aligned
                and (out is None or (type(out) is np.ndarray and out.dtype is dt
                                     and out.shape == input.shape and out.flags.c_contiguous
                                     and out.flags.writeable and out.flags.aligned))):
            # (a bounds pre-test inline; the rule itself is check_overlap's)
            if out is not None and (np.may_share_memory(out, target) or (
                    out is not input and np.may_share_memory(out, input))):
                check_overlap(out, ((input, "input"), (target, "target")), inplace=("input",))
            g = np.empty_like(input) if out is None else out
            losses = np.empty(input.shape[0], np.float64)
            red = Reduction.MEAN if reduction == "mean" else Reduction.SUM
            bad, wsum, total = core.ce_index(input, target, None, ignore_index, 0.0, red, g, losses)
            if bad < 0:
                return finish(losses, total, wsum, red, dt), g
            # fall through: the general path raises the IndexError
    loss, grad = fused(input, target, weight, ignore_index, reduction, label_smoothing, True, out)
    assert grad is not None
    return loss, grad
