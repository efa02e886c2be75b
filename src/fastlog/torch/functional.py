"""The functions of :mod:`fastlog.torch`: ``torch.nn.functional``'s namesakes on fastlog's kernels.

Each function asks the routing (:mod:`._route`) which route the call takes
before anything runs: the eager path (:mod:`._eager`, the operators' CPU
kernels on the tensors' memory), the registered operators
``torch.ops.fastlog.*`` (:mod:`._ops`; under ``torch.compile``,
``torch.export`` and the ``torch.func`` transforms), or PyTorch's own function
(its result and its errors).  No exception is caught here.
"""
import warnings
from typing import Optional

import torch

from . import _eager as E
from . import _kernels as K
from . import _ops as O
from . import _orig as F   # PyTorch's own functions, saved before any patch()
from . import _route as R
from ._route import EAGER, OP, autocast_half, check_smoothing, legacy_reduction, needs_grad
from ._route import compiled_small, compiled_small_softmax, is_compiling

__all__ = ["cross_entropy", "nll_loss", "binary_cross_entropy_with_logits", "kl_div", "log_softmax",
           "softmax"]

_ops = O.ops


# ----------------------------------------------------------- cross-entropy --
def cross_entropy(input: torch.Tensor, target: torch.Tensor, weight: Optional[torch.Tensor] = None,
                  size_average: Optional[bool] = None, ignore_index: int = -100,
                  reduce: Optional[bool] = None, reduction: str = "mean",
                  label_smoothing: float = 0.0) -> torch.Tensor:
    """``torch.nn.functional.cross_entropy`` computed by fastlog's fused kernel.

    Same parameters and results: input ``(C,)``, ``(N, C)`` or ``(N, C, d1, ...)``
    logits; target class indices (int64/uint8) or class probabilities (the
    input's shape and dtype); `weight`, `ignore_index`, `reduction`
    ('mean', 'sum', 'none'), `label_smoothing`.  The forward computes loss and
    gradient in one pass; backward scales the saved gradient by grad_output.
    Goes to PyTorch where :mod:`fastlog.torch._route` says (see :mod:`fastlog.torch`).

    Parameters
    ----------
    input, target, weight, ignore_index, reduction, label_smoothing
        As ``torch.nn.functional.cross_entropy``'s.
    size_average, reduce
        ``size_average``/``reduce`` are PyTorch's deprecated pair, converted to `reduction` with its warning.

    Returns
    -------
    Tensor
        What the ``torch.nn.functional`` function of the same name returns: the
        same value, dtype and shape, with autograd.

    Raises
    ------
    RuntimeError, IndexError, ValueError
        PyTorch's own: an argument PyTorch rejects is handed to PyTorch, so the
        exception is the one ``torch.nn.functional`` raises (an out-of-range
        class index is an ``IndexError`` from fastlog's kernel, as from
        PyTorch's), except for the deliberate differences of the module
        docstring (a negative or NaN `label_smoothing` is a ``ValueError``).

    Examples
    --------
    >>> import torch, torch.nn.functional as F, fastlog.torch as FL
    >>> x = torch.tensor([[1.0, 2.0, 3.0], [1.0, 1.0, 1.0]], requires_grad=True)
    >>> t = torch.tensor([2, 0])
    >>> loss = FL.cross_entropy(x, t, label_smoothing=0.1)
    >>> round(loss.item(), 4)
    0.8031
    >>> loss.backward()
    >>> x.grad.round(decimals=4)
    tensor([[ 0.0283,  0.1057, -0.1340],
            [-0.3000,  0.1500,  0.1500]])
    """
    if is_compiling():
        if compiled_small(input):    # traced as PyTorch's function (first: few guards)
            return F.cross_entropy(input, target, weight, size_average, ignore_index, reduce, reduction,
                                   label_smoothing)
    elif weight is None and size_average is None and reduce is None and label_smoothing == 0.0:
        red = R.cross_entropy_hot(input, target, ignore_index, reduction)
        if red:
            # PyTorch's loss dtype: the input's, or float32 for a half input under autocast
            loss_dtype = torch.float32 if autocast_half(input) else None
            if input.requires_grad and torch.is_grad_enabled():
                return E.cross_entropy_hot(input, target, (red, ignore_index, loss_dtype))
            return K.cross_entropy_hot(input, target, red, ignore_index, loss_dtype)
    if size_average is not None or reduce is not None:
        reduction = legacy_reduction(size_average, reduce)
    check_smoothing(label_smoothing)
    mode, red, _ = R.cross_entropy(input, target, weight, ignore_index, reduction, label_smoothing)
    if mode == EAGER:
        # PyTorch's loss dtype: the input's, or float32 for a half input under autocast
        loss_dtype = torch.float32 if autocast_half(input) else None
        params = (red, ignore_index, float(label_smoothing), loss_dtype)
        if input.requires_grad and torch.is_grad_enabled():
            return E.cross_entropy(input, target, weight, params)
        return K.cross_entropy(input, target, weight, *params)
    if mode == OP:
        if needs_grad(input):
            return O.CrossEntropyFn.apply(input, target, weight, red, ignore_index,
                                          float(label_smoothing))[0]
        return _ops.cross_entropy(input, target, weight, red, ignore_index, float(label_smoothing))
    return F.cross_entropy(input, target, weight, ignore_index=ignore_index, reduction=reduction,
                           label_smoothing=label_smoothing)


# -------------------------------------------------------------------- NLL --
def nll_loss(input: torch.Tensor, target: torch.Tensor, weight: Optional[torch.Tensor] = None,
             size_average: Optional[bool] = None, ignore_index: int = -100, reduce: Optional[bool] = None,
             reduction: str = "mean") -> torch.Tensor:
    """``torch.nn.functional.nll_loss`` computed by fastlog (same parameters and results).

    Parameters
    ----------
    input, target, weight, ignore_index, reduction
        As ``torch.nn.functional.nll_loss``'s.
    size_average, reduce
        ``size_average``/``reduce`` are PyTorch's deprecated pair, converted to `reduction` with its warning.

    Returns
    -------
    Tensor
        What the ``torch.nn.functional`` function of the same name returns: the
        same value, dtype and shape, with autograd.

    Raises
    ------
    RuntimeError, IndexError, ValueError
        PyTorch's own: an argument PyTorch rejects is handed to PyTorch, so the
        exception is the one ``torch.nn.functional`` raises (an out-of-range
        class index is an ``IndexError`` from fastlog's kernel, as from
        PyTorch's), except for the deliberate differences of the module
        docstring (a negative or NaN `label_smoothing` is a ``ValueError``).

    Examples
    --------
    >>> import torch, fastlog.torch as FL
    >>> logp = torch.log(torch.tensor([[0.5, 0.25, 0.25], [0.1, 0.1, 0.8]]))
    >>> round(FL.nll_loss(logp, torch.tensor([0, 2])).item(), 4)
    0.4581
    """
    if compiled_small(input):
        return F.nll_loss(input, target, weight, size_average, ignore_index, reduce, reduction)
    if size_average is not None or reduce is not None:
        reduction = legacy_reduction(size_average, reduce)
    mode, red = R.nll_loss(input, target, weight, ignore_index, reduction)
    if mode == EAGER:
        if input.requires_grad and torch.is_grad_enabled():
            return E.nll_loss(input, target, weight, red, ignore_index)
        return K.nll_loss(input, target, weight, red, ignore_index)
    if mode == OP:
        if needs_grad(input):
            return O.NLLFn.apply(input, target, weight, red, ignore_index)
        return _ops.nll_loss(input, target, weight, red, ignore_index)
    return F.nll_loss(input, target, weight, ignore_index=ignore_index, reduction=reduction)


# -------------------------------------------------------- BCE with logits --
def binary_cross_entropy_with_logits(input: torch.Tensor, target: torch.Tensor,
                                     weight: Optional[torch.Tensor] = None,
                                     size_average: Optional[bool] = None, reduce: Optional[bool] = None,
                                     reduction: str = "mean",
                                     pos_weight: Optional[torch.Tensor] = None) -> torch.Tensor:
    """``torch.nn.functional.binary_cross_entropy_with_logits`` by fastlog's fused kernel.

    `target` has the input's shape and dtype; `weight` and `pos_weight`
    broadcast against the input.  Loss and gradient come from one pass.

    Parameters
    ----------
    input, target, weight, reduction, pos_weight
        As ``torch.nn.functional.binary_cross_entropy_with_logits``'s.
    size_average, reduce
        ``size_average``/``reduce`` are PyTorch's deprecated pair, converted to `reduction` with its warning.

    Returns
    -------
    Tensor
        What the ``torch.nn.functional`` function of the same name returns: the
        same value, dtype and shape, with autograd.

    Raises
    ------
    RuntimeError, IndexError, ValueError
        PyTorch's own: an argument PyTorch rejects is handed to PyTorch, so the
        exception is the one ``torch.nn.functional`` raises (an out-of-range
        class index is an ``IndexError`` from fastlog's kernel, as from
        PyTorch's), except for the deliberate differences of the module
        docstring (a negative or NaN `label_smoothing` is a ``ValueError``).

    Examples
    --------
    >>> import torch, fastlog.torch as FL
    >>> z, y = torch.tensor([0.0, 2.0, -1.0]), torch.tensor([1.0, 1.0, 0.0])
    >>> round(FL.binary_cross_entropy_with_logits(z, y).item(), 4)
    0.3778
    """
    if compiled_small(input):
        return F.binary_cross_entropy_with_logits(input, target, weight, size_average, reduce, reduction,
                                                  pos_weight)
    if size_average is not None or reduce is not None:
        reduction = legacy_reduction(size_average, reduce)
    mode, red = R.binary_cross_entropy_with_logits(input, target, weight, pos_weight, reduction)
    if mode == EAGER:
        if input.requires_grad and torch.is_grad_enabled():
            return E.bce_with_logits(input, target, weight, pos_weight, red)
        return K.binary_cross_entropy_with_logits(input, target, weight, pos_weight, red)
    if mode == OP:
        if needs_grad(input):
            return O.BCEWithLogitsFn.apply(input, target, weight, pos_weight, red)[0]
        return _ops.binary_cross_entropy_with_logits(input, target, weight, pos_weight, red)
    return F.binary_cross_entropy_with_logits(input, target, weight, reduction=reduction,
                                              pos_weight=pos_weight)


# ----------------------------------------------------------------- KL div --
_KL_MEAN_WARNING = ("reduction: 'mean' divides the total loss by both the batch size and the "
                    "support size.'batchmean' divides only by the batch size, and aligns with "
                    "the KL div math definition.'mean' will be changed to behave the same as "
                    "'batchmean' in the next major release.")


def kl_div(input: torch.Tensor, target: torch.Tensor, size_average: Optional[bool] = None,
           reduce: Optional[bool] = None, reduction: str = "mean", log_target: bool = False) -> torch.Tensor:
    """``torch.nn.functional.kl_div`` (input holds log-probabilities), computed by fastlog.

    Pointwise ``exp(t) * (t - x)`` if `log_target` else ``xlogy(t, t) - t * x``;
    'mean' averages over all elements (with PyTorch's warning), 'batchmean'
    divides the sum by the batch size.  The gradient (-t or -exp(t), scaled)
    is formed in backward from the saved target.

    Parameters
    ----------
    input, target, reduction, log_target
        As ``torch.nn.functional.kl_div``'s (`reduction` also 'batchmean').
    size_average, reduce
        ``size_average``/``reduce`` are PyTorch's deprecated pair, converted to `reduction` with its warning.

    Returns
    -------
    Tensor
        What the ``torch.nn.functional`` function of the same name returns: the
        same value, dtype and shape, with autograd.

    Raises
    ------
    RuntimeError, IndexError, ValueError
        PyTorch's own: an argument PyTorch rejects is handed to PyTorch, so the
        exception is the one ``torch.nn.functional`` raises (an out-of-range
        class index is an ``IndexError`` from fastlog's kernel, as from
        PyTorch's), except for the deliberate differences of the module
        docstring (a negative or NaN `label_smoothing` is a ``ValueError``).

    Examples
    --------
    >>> import torch, fastlog.torch as FL
    >>> logq = torch.log(torch.tensor([[0.5, 0.5], [0.25, 0.75]]))
    >>> p = torch.tensor([[0.5, 0.5], [0.5, 0.5]])
    >>> round(FL.kl_div(logq, p, reduction="batchmean").item(), 4)
    0.0719
    """
    if compiled_small(input):
        return F.kl_div(input, target, size_average, reduce, reduction, log_target)
    legacy = size_average is not None or reduce is not None
    if legacy:
        reduction = legacy_reduction(size_average, reduce)
    mode, red = R.kl_div(input, target, reduction)
    if not mode:
        return F.kl_div(input, target, reduction=reduction, log_target=log_target)
    if reduction == "mean" and not legacy:
        warnings.warn(_KL_MEAN_WARNING, stacklevel=2)
    log_target = bool(log_target)
    if mode == EAGER:
        if input.requires_grad and torch.is_grad_enabled():
            return E.kl_div(input, target, red, log_target)
        return K.kl_div(input, target, red, log_target)
    if needs_grad(input):
        return O.KLDivFn.apply(input, target, red, log_target)
    return _ops.kl_div(input, target, red, log_target)


# ---------------------------------------------------- softmax/log_softmax --
def _softmax_family(name, input, dim, _stacklevel, dtype):
    if dim is None:
        # PyTorch's legacy implicit dimension, with its deprecation warning.
        warnings.warn(f"Implicit dimension choice for {name} has been deprecated. "
                      "Change the call to include dim=X as an argument.", stacklevel=_stacklevel)
        dim = 0 if input.dim() in (0, 1, 3) else 1
    if dtype is not None:
        input = input.to(dtype)
    if compiled_small_softmax(input):
        return (torch.log_softmax if name == "log_softmax" else torch.softmax)(input, dim)
    mode, d = R.softmax_family(input, dim)
    if mode == EAGER:
        if input.requires_grad and torch.is_grad_enabled():
            return (E.log_softmax if name == "log_softmax" else E.softmax)(input, d or 0)
        return (K.log_softmax if name == "log_softmax" else K.softmax)(input, d or 0)
    if mode == OP:
        if needs_grad(input):
            return (O.LogSoftmaxFn if name == "log_softmax" else O.SoftmaxFn).apply(input, d or 0)
        return (_ops.log_softmax if name == "log_softmax" else _ops.softmax)(input, d or 0)
    return (torch.log_softmax if name == "log_softmax" else torch.softmax)(input, dim)


def log_softmax(input: torch.Tensor, dim: Optional[int] = None, _stacklevel: int = 3,
                dtype: Optional[torch.dtype] = None) -> torch.Tensor:
    """``torch.nn.functional.log_softmax`` computed by fastlog's kernel (one exp per element).

    `dim` None picks PyTorch's legacy implicit dimension (with its warning);
    `dtype` casts the input first.  Backward uses the saved output.

    Parameters
    ----------
    input : torch.Tensor
        Any shape.
    dim : int or None
        The axis to normalise (None: PyTorch's legacy implicit choice, with its warning).
    dtype : torch.dtype, optional
        Cast the input to it first.

    Returns
    -------
    Tensor
        What the ``torch.nn.functional`` function of the same name returns: the
        same value, dtype and shape, with autograd.

    Raises
    ------
    RuntimeError, IndexError
        PyTorch's own: an argument PyTorch rejects (a `dim` out of range, a
        `dtype` it cannot cast to) is handed to PyTorch, so the exception is the
        one ``torch.nn.functional`` raises.

    Examples
    --------
    >>> import torch, fastlog.torch as FL
    >>> FL.log_softmax(torch.tensor([[1.0, 2.0, 3.0]]), dim=1).round(decimals=4)
    tensor([[-2.4076, -1.4076, -0.4076]])
    >>> FL.log_softmax(torch.tensor([[1.0, float("inf")]]), dim=1)   # as torch: all NaN
    tensor([[nan, nan]])
    """
    return _softmax_family("log_softmax", input, dim, _stacklevel, dtype)


def softmax(input: torch.Tensor, dim: Optional[int] = None, _stacklevel: int = 3,
            dtype: Optional[torch.dtype] = None) -> torch.Tensor:
    """``torch.nn.functional.softmax`` computed by fastlog's kernel (same parameters).

    Parameters
    ----------
    input : torch.Tensor
        Any shape.
    dim : int or None
        The axis to normalise (None: PyTorch's legacy implicit choice, with its warning).
    dtype : torch.dtype, optional
        Cast the input to it first.

    Returns
    -------
    Tensor
        What the ``torch.nn.functional`` function of the same name returns: the
        same value, dtype and shape, with autograd.

    Raises
    ------
    RuntimeError, IndexError
        PyTorch's own: an argument PyTorch rejects (a `dim` out of range, a
        `dtype` it cannot cast to) is handed to PyTorch, so the exception is the
        one ``torch.nn.functional`` raises.

    Examples
    --------
    >>> import torch, fastlog.torch as FL
    >>> FL.softmax(torch.tensor([[1.0, 2.0, 3.0]]), dim=1).round(decimals=4)
    tensor([[0.0900, 0.2447, 0.6652]])
    """
    return _softmax_family("softmax", input, dim, _stacklevel, dtype)
