"""PyTorch front end of fastlog's fused linear + cross-entropy.

:func:`linear_cross_entropy` takes the parameters of
``torch.nn.functional.linear_cross_entropy`` (torch 2.13) and
:class:`LinearCrossEntropyLoss` is a drop-in for
``torch.nn.LinearCrossEntropyLoss``.  On CPU float32/float64 tensors with
class-index targets they run fastlog's blocked kernel (the N x V logits are
never built, whatever ``options`` says); anything else (probability targets,
K-dimensional ``linear_weight``, other dtypes or devices) is passed on to
``torch.nn.functional.linear_cross_entropy`` unchanged.

Autograd: for ``reduction='mean'``/``'sum'`` the gradients are computed in
the forward pass (three GEMMs in all, like torch's chunked path) and handed
out by ``backward`` (scaled by the incoming gradient).  A second backward
(``retain_graph=True``) recomputes them from the saved inputs, so it works
without ``allow_retain_graph``.  ``reduction='none'`` computes only the loss
in forward and recomputes the logits in backward with per-row scales.
Higher-order gradients are not supported (``once_differentiable``).

Imported by ``fastlog.torch``; importing fastlog alone never imports torch.
"""
import numpy as np
import torch
from torch.autograd.function import once_differentiable

from .. import linear as _lin
from .._enums import Reduction
from .._losses._reduce import finish
from . import _orig as F   # PyTorch's own functions, even after fastlog.torch.patch()

__all__ = ["linear_cross_entropy", "LinearCrossEntropyLoss"]

_DTYPES = (torch.float32, torch.float64)


def _np(t):
    """A CPU tensor as an ndarray (no copy when contiguous)."""
    return None if t is None else t.detach().contiguous().numpy()


def _chunk_size(options, num_batches, in_features, num_classes, dtype):
    """Rows per block from LinearCrossEntropyOptions (None: fastlog's default)."""
    if options is None:
        return None
    opt_cls = getattr(torch.nn, "LinearCrossEntropyOptions", None)
    if opt_cls is None or not isinstance(options, opt_cls):
        raise TypeError(f"options must be a torch.nn.LinearCrossEntropyOptions or None, "
                        f"got {type(options).__name__}")
    if options.batch_chunk_size is None and options.chunking_method in (None, "auto"):
        return None
    adj = options._adjust(num_batches=max(num_batches, 1), in_features=max(in_features, 1),
                          num_classes=max(num_classes, 1), dtype=dtype, device=torch.device("cpu"))
    return adj.batch_chunk_size


class _LinearCrossEntropy(torch.autograd.Function):
    @staticmethod
    def forward(ctx, input, linear_weight, linear_bias, target, weight, reduction, ignore_index,
                label_smoothing, chunk_size):
        prep = _lin._prepare(_np(input), _np(linear_weight), _np(target), _np(linear_bias), _np(weight),
                             ignore_index, reduction, label_smoothing, chunk_size, 0.0)
        need_x, need_w, need_b = ctx.needs_input_grad[:3]
        need_b = need_b and prep.b is not None
        ctx.prep = prep
        ctx.want = (need_x, need_w, need_b)
        ctx.grads = None
        precompute = prep.red != Reduction.NONE and (need_x or need_w or need_b)
        r = _lin._run(prep, grad_input=precompute and need_x, grad_weight=precompute and need_w,
                      grad_bias=precompute and need_b)
        if precompute:
            ctx.grads = (r.gX, r.gW, r.gb)
        dtype = prep.dtype
        loss = finish(r.losses, r.total, r.wsum, prep.red, dtype, prep.batch_shape, smoothing=prep.eps)
        ctx.input_shape = tuple(input.shape)
        # Saved only so autograd checks they were not modified in place
        # before backward (ctx.prep holds ndarray views of them).
        ctx.save_for_backward(input, linear_weight, linear_bias)
        return torch.from_numpy(np.asarray(loss, dtype=dtype).copy())

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_output):
        ctx.saved_tensors   # raises if an input was modified in place since forward
        prep = ctx.prep
        dtype = prep.dtype
        need_x, need_w, need_b = ctx.want
        go = grad_output.detach()
        if prep.red == Reduction.NONE:
            # Per-row scales: recompute the logits block by block.
            rs = np.ascontiguousarray(go.to(torch.float64).reshape(-1).numpy())
            _, _, _, _, gX, gW, gb = _lin._run(prep._replace(red=Reduction.SUM), grad_input=need_x,
                                               grad_weight=need_w, grad_bias=need_b, row_scale=rs)
            scale = None
        else:
            if ctx.grads is not None:
                gX, gW, gb = ctx.grads
                ctx.grads = None          # hand them out once; a second backward recomputes
            else:
                _, _, _, _, gX, gW, gb = _lin._run(prep, grad_input=need_x, grad_weight=need_w,
                                                   grad_bias=need_b)
            scale = float(go)
        out = []
        for g, need, shape in ((gX, need_x, ctx.input_shape), (gW, need_w, None), (gb, need_b, None)):
            if not need or g is None:
                out.append(None)
                continue
            if g.dtype != dtype:       # grad_bias is accumulated in float64
                g = g.astype(dtype)
            tg = torch.from_numpy(g)
            if shape is not None:
                tg = tg.reshape(shape)
            if scale is not None and scale != 1.0:
                tg.mul_(scale)
            out.append(tg)
        return (*out, None, None, None, None, None, None)


def _fastlog_can_run(input, linear_weight, target, linear_bias, weight):
    tensors = [t for t in (input, linear_weight, linear_bias, weight) if t is not None]
    if any(t.device.type != "cpu" for t in tensors + [target]):
        return False
    if input.dtype not in _DTYPES or linear_weight.dtype != input.dtype:
        return False
    if linear_weight.dim() != 2 or input.dim() not in (1, 2):
        return False
    if target.is_floating_point() or target.is_complex():
        return False                 # probability targets: torch's path
    return True


def linear_cross_entropy(input, linear_weight, target, *, linear_bias=None, weight=None,
                         reduction="mean", ignore_index=None, label_smoothing=0.0, options=None):
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
    K-dimensional ``linear_weight``, dtypes other than float32/float64,
    non-CPU tensors) are computed by torch's own function.  Invalid
    arguments raise fastlog's exceptions (ValueError/TypeError/IndexError
    naming the argument) rather than torch's RuntimeError.

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
    RuntimeError, IndexError, ValueError
        PyTorch's own: an argument fastlog would reject is handed to PyTorch, so
        the exception is the one ``torch.nn.functional`` raises, as a single
        exception (e.g. ``IndexError: Target 5 is out of bounds.``).

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
    from . import linear_ce_half as _h   # bfloat16 / float16 (issue 13)
    if _h.can_run(input, linear_weight, target, linear_bias, weight, reduction):
        return _h.linear_cross_entropy_half(input, linear_weight, target, linear_bias, weight,
                                            reduction, ignore_index, label_smoothing)
    if not _fastlog_can_run(input, linear_weight, target, linear_bias, weight):
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
    ign = -100 if ignore_index is None else ignore_index
    n = input.shape[0] if input.dim() == 2 else 1
    cs = _chunk_size(options, n, input.shape[-1], linear_weight.shape[0], input.dtype)
    needs = torch.is_grad_enabled() and (input.requires_grad or linear_weight.requires_grad or
                                         (linear_bias is not None and linear_bias.requires_grad))
    if needs:
        return _LinearCrossEntropy.apply(input, linear_weight, linear_bias, target, weight, reduction,
                                         ign, label_smoothing, cs)
    p = _lin._prepare(_np(input), _np(linear_weight), _np(target), _np(linear_bias), _np(weight), ign,
                      reduction, label_smoothing, cs, 0.0)
    r = _lin._run(p, grad_input=False, grad_weight=False, grad_bias=False)
    loss = finish(r.losses, r.total, r.wsum, p.red, p.dtype, p.batch_shape, smoothing=p.eps)
    return torch.from_numpy(np.asarray(loss, dtype=p.dtype).copy())


_TorchLCELoss = getattr(torch.nn, "LinearCrossEntropyLoss", None)
if _TorchLCELoss is None:  # pragma: no cover  (torch < 2.13 has no such module)
    __all__.remove("LinearCrossEntropyLoss")
    _TorchLCELoss = object


class LinearCrossEntropyLoss(_TorchLCELoss):
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

    def forward(self, input, target):
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
        RuntimeError, IndexError, ValueError
            PyTorch's own, as :func:`linear_cross_entropy`.

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
