"""PyTorch front end of fastlog's fused linear + cross-entropy.

:func:`linear_cross_entropy` takes the parameters of
``torch.nn.functional.linear_cross_entropy`` (torch 2.13) and
:class:`LinearCrossEntropyLoss` is a drop-in for
``torch.nn.LinearCrossEntropyLoss``.  On CPU float32/float64 tensors with
class-index targets they run fastlog's blocked kernel (the N x V logits are
never built, whatever ``options`` says); bfloat16/float16 ``(N, H)`` inputs
with reduction 'mean' or 'sum' take the half-precision path
(``linear_ce_half.py``); anything else (probability targets, K-dimensional
``linear_weight``, other dtypes or devices, a class weight that requires
grad) is passed on to ``torch.nn.functional.linear_cross_entropy`` unchanged.
Under ``torch.compile``, ``torch.export`` and the ``torch.func`` transforms
the call is the operator ``torch.ops.fastlog.linear_cross_entropy`` (see
:mod:`._route` and :mod:`._ops`).

Autograd: for ``reduction='mean'``/``'sum'`` the gradients are computed in
the forward pass (three GEMMs in all, like torch's chunked path) and handed
out by ``backward`` (scaled by the incoming gradient).  A second backward
(``retain_graph=True``) recomputes them from the saved inputs.
``reduction='none'`` computes only the loss in forward and recomputes the
logits in backward with per-row scales.  Higher-order gradients: not in
eager mode (``once_differentiable``); the operator's backward with grad mode
on uses PyTorch's formula.

Imported by ``fastlog.torch``; importing fastlog alone never imports torch.
"""
from typing import Any, Optional

import torch
from torch.autograd.function import once_differentiable

from .._validation import index_param, reduction_code, smoothing_param
from . import _kernels as K
from . import _ops as O
from . import _orig as F   # PyTorch's own functions, even after fastlog.torch.patch()
from . import _route as R

__all__ = ["linear_cross_entropy", "LinearCrossEntropyLoss"]


def _chunk_size(options, num_batches, in_features, num_classes, dtype):
    """Rows per block from LinearCrossEntropyOptions (-1: fastlog's default)."""
    if options is None:
        return -1
    opt_cls = getattr(torch.nn, "LinearCrossEntropyOptions", None)
    if opt_cls is None or not isinstance(options, opt_cls):
        raise TypeError(f"options must be a torch.nn.LinearCrossEntropyOptions or None, "
                        f"got {type(options).__name__}")
    if options.batch_chunk_size is None and options.chunking_method in (None, "auto"):
        return -1
    adj = options._adjust(num_batches=max(num_batches, 1), in_features=max(in_features, 1),
                          num_classes=max(num_classes, 1), dtype=dtype, device=torch.device("cpu"))
    return -1 if adj.batch_chunk_size is None else int(adj.batch_chunk_size)


class _LinearCrossEntropy(torch.autograd.Function):
    """The eager route: the operator's CPU kernels called directly (see ``_eager.py``)."""

    @staticmethod
    def forward(ctx, input, linear_weight, linear_bias, target, weight, params):
        red, ign, eps, cs = params
        need_x, need_w, need_b = ctx.needs_input_grad[:3]
        need_b = need_b and linear_bias is not None
        pre = red != 0
        loss, gX, gW, gb = K.linear_cross_entropy_with_grad(
            input, linear_weight, linear_bias, target, weight, red, ign, eps, cs,
            need_x and pre, need_w and pre, need_b and pre)
        ctx.grads = (gX, gW, gb) if pre else None
        ctx.want, ctx.params = (need_x, need_w, need_b), params
        # saved so autograd checks they were not modified in place before backward
        ctx.save_for_backward(input, linear_weight, linear_bias, target, weight)
        return loss

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_output):
        input, linear_weight, linear_bias, target, weight = ctx.saved_tensors
        red, ign, eps, cs = ctx.params
        need_x, need_w, need_b = ctx.want
        args = (input, linear_weight, linear_bias, target, weight, red, ign, eps, cs, need_x, need_w, need_b)
        if red == 0:      # per-row scales: the logits again, block by block
            gX, gW, gb = K.linear_cross_entropy_backward(grad_output, *args)
        else:
            if ctx.grads is not None:
                gX, gW, gb = ctx.grads
                ctx.grads = None          # handed out once; a second backward recomputes
            else:
                _, gX, gW, gb = K.linear_cross_entropy_with_grad(*args)
            scale = float(grad_output)
            if scale != 1.0:
                gX, gW, gb = (g.mul_(scale) if g.numel() else g for g in (gX, gW, gb))
        return ((gX if need_x else None), (gW if need_w else None), (gb if need_b else None),
                None, None, None)


_eager = super(torch.autograd.Function, _LinearCrossEntropy).apply


def _route(input, linear_weight, target, linear_bias, weight, reduction):
    """EAGER, OP or TORCH for a linear_cross_entropy call (see the module docstring)."""
    mode = R.environment(input, linear_weight, target, linear_bias, weight)
    if not mode or not all(isinstance(t, torch.Tensor) for t in (input, linear_weight, target)):
        return R.TORCH
    tensors = [t for t in (input, linear_weight, target, linear_bias, weight) if t is not None]
    if not all(R.cpu_tensor(t, mode) for t in tensors):
        return R.TORCH
    dt = input.dtype
    if (not R.float_ok(dt) or linear_weight.dtype != dt or linear_weight.dim() != 2
            or input.dim() not in (1, 2) or target.is_floating_point() or target.is_complex()
            or (linear_bias is not None and linear_bias.dtype != dt)
            or (weight is not None and R.needs_grad(weight))):
        return R.TORCH
    if dt in R.HALVES:
        if (input.dim() != 2 or reduction not in ("mean", "sum") or mode != R.EAGER and R.autocast_half(input)
                or (weight is not None and weight.dtype not in (dt, torch.float32))):
            return R.TORCH
    elif weight is not None and weight.dtype != dt:
        return R.TORCH
    if (mode == R.OP and R._is_compiling() and not R._is_exporting()
            and input.numel() // max(input.shape[-1], 1) * linear_weight.shape[0] < R.COMPILED_MIN_ELEMENTS):
        return R.TORCH       # the logits are small: Inductor's code is cheaper than an operator call
    return mode


def linear_cross_entropy(input: torch.Tensor, linear_weight: torch.Tensor, target: torch.Tensor, *,
                         linear_bias: Optional[torch.Tensor] = None, weight: Optional[torch.Tensor] = None,
                         reduction: str = "mean", ignore_index: Optional[int] = None,
                         label_smoothing: float = 0.0, options: Any = None) -> torch.Tensor:
    """``torch.nn.functional.linear_cross_entropy`` on fastlog's fused kernel.

    Same parameters and result as
    ``torch.nn.functional.linear_cross_entropy(input, linear_weight, target,
    linear_bias=..., weight=..., reduction=..., ignore_index=...,
    label_smoothing=..., options=...)``; the logits
    ``input @ linear_weight.T + linear_bias`` are never materialized.

    ``options`` (a ``torch.nn.LinearCrossEntropyOptions`` or None) only sets
    the rows per block through ``batch_chunk_size`` / ``chunking_method``
    (None or an all-default instance: fastlog's own block size); fastlog
    always runs blocked, with ``reduction``, ``label_smoothing`` and
    ``weight`` all supported.  ``ignore_index=None`` means -100.

    Cases the kernel does not cover (class-probability targets,
    K-dimensional ``linear_weight``, dtypes other than float32/float64 and
    half precision as above, non-CPU tensors) are computed by torch's own
    function.  Invalid arguments raise fastlog's exceptions
    (ValueError/TypeError/IndexError naming the argument) rather than torch's
    RuntimeError.

    Parameters
    ----------
    input, linear_weight, target, linear_bias, weight, reduction, ignore_index, label_smoothing, options
        As ``torch.nn.functional.linear_cross_entropy``'s (see above).

    Returns
    -------
    Tensor
        What the ``torch.nn.functional`` function of the same name returns: the
        same value, dtype and shape, with autograd.

    Raises
    ------
    ValueError, TypeError, IndexError
        fastlog's own for arguments its kernel takes but finds invalid (naming the
        argument; the deliberate difference from PyTorch's RuntimeError); PyTorch's
        own for the calls handed to it.

    Examples
    --------
    >>> import torch, torch.nn.functional as F, fastlog.torch as FL
    >>> g = torch.Generator().manual_seed(0)
    >>> h, W = torch.randn(4, 3, generator=g), torch.randn(5, 3, generator=g)
    >>> t = torch.tensor([0, 4, 2, 1])
    >>> loss = FL.linear_cross_entropy(h, W, t)
    >>> torch.allclose(loss, F.cross_entropy(h @ W.T, t))
    True
    """
    mode = _route(input, linear_weight, target, linear_bias, weight, reduction)
    if not mode:
        if hasattr(F, "linear_cross_entropy"):
            return F.linear_cross_entropy(input, linear_weight, target, linear_bias=linear_bias,
                                          weight=weight, reduction=reduction,
                                          ignore_index=ignore_index,
                                          label_smoothing=label_smoothing, options=options)
        # torch < 2.13: the unfused reference (2-D linear_weight only)
        return F.cross_entropy(F.linear(input, linear_weight, linear_bias), target, weight=weight,
                               reduction=reduction,
                               ignore_index=-100 if ignore_index is None else ignore_index,
                               label_smoothing=label_smoothing)
    # fastlog's own argument errors (the deliberate difference from PyTorch's RuntimeError)
    red = reduction_code(reduction)
    ign = index_param(-100 if ignore_index is None else ignore_index)
    eps = smoothing_param(label_smoothing)
    n = input.shape[0] if input.dim() == 2 else 1
    cs = _chunk_size(options, n, input.shape[-1], linear_weight.shape[0], input.dtype)
    if mode == R.EAGER:
        if torch.is_grad_enabled() and (input.requires_grad or linear_weight.requires_grad or
                                        (linear_bias is not None and linear_bias.requires_grad)):
            return _eager(input, linear_weight, linear_bias, target, weight, (red, ign, eps, cs))
        return K.linear_cross_entropy_with_grad(input, linear_weight, linear_bias, target, weight, red,
                                                ign, eps, cs, False, False, False)[0]
    need = (R.needs_grad(input), R.needs_grad(linear_weight),
            linear_bias is not None and R.needs_grad(linear_bias))
    if any(need):
        return O.LinearCrossEntropyFn.apply(input, linear_weight, linear_bias, target, weight, red, ign,
                                            eps, cs, *need)[0]
    return O.ops.linear_cross_entropy(input, linear_weight, linear_bias, target, weight, red, ign, eps, cs)


_TorchLCELoss: Any = getattr(torch.nn, "LinearCrossEntropyLoss", None)
if _TorchLCELoss is None:  # pragma: no cover  (torch < 2.13 has no such module)
    __all__.remove("LinearCrossEntropyLoss")
    _TorchLCELoss = object


class LinearCrossEntropyLoss(_TorchLCELoss):  # type: ignore[misc,valid-type]  # a base chosen at import
    """``torch.nn.LinearCrossEntropyLoss`` whose forward runs fastlog's fused kernel.

    Same constructor, parameters (``self.linear``) and state dict as the torch
    module; ``forward(input, target)`` calls :func:`linear_cross_entropy`.

    Parameters
    ----------
    in_features, num_classes, out_features, bias, device, dtype, reduction, weight, ignore_index, label_smoothing, options
        As ``torch.nn.LinearCrossEntropyLoss``'s (the same constructor).

    Examples
    --------
    >>> import torch, torch.nn.functional as F, fastlog.torch as FL
    >>> _ = torch.manual_seed(0)
    >>> crit = FL.LinearCrossEntropyLoss(3, 5)          # a Linear(3, 5) without bias, then CE
    >>> h, t = torch.randn(4, 3), torch.tensor([0, 4, 2, 1])
    >>> torch.allclose(crit(h, t), F.cross_entropy(crit.linear(h), t))
    True
    """

    def forward(self, input: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """The loss of ``self.linear(input)`` against `target`, the logits never built.

        Parameters
        ----------
        input : torch.Tensor, (in_features,) or (N, in_features)
            Features.
        target : torch.Tensor
            Class indices (or probabilities: then PyTorch's own path).

        Returns
        -------
        torch.Tensor
            :func:`linear_cross_entropy` with the module's weight, bias and settings.

        Raises
        ------
        ValueError, TypeError, IndexError, RuntimeError
            As :func:`linear_cross_entropy`.

        Examples
        --------
        >>> import torch, fastlog.torch as FL
        >>> crit = FL.LinearCrossEntropyLoss(2, 3, reduction="sum")
        >>> with torch.no_grad():
        ...     _ = crit.linear.weight.zero_()
        >>> round(crit.forward(torch.ones(2, 2), torch.tensor([0, 2])).item(), 4)   # 2 * log(3)
        2.1972
        """
        linear_weight = self.linear.weight.reshape(
            (self.num_classes, *self.out_features, self.linear.in_features))
        linear_bias = (self.linear.bias.reshape((self.num_classes, *self.out_features))
                       if self.linear.bias is not None else None)
        return linear_cross_entropy(input, linear_weight, target, linear_bias=linear_bias,
                                    weight=self.weight, reduction=self.reduction,
                                    ignore_index=self.ignore_index,
                                    label_smoothing=self.label_smoothing, options=self.options)


if _TorchLCELoss is object:  # pragma: no cover
    del LinearCrossEntropyLoss
