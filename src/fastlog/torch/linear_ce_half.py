"""Fused linear + cross-entropy for bfloat16 / float16 tensors (issue 13).

Rows are processed in blocks: the block's logits ``x_blk @ W.T (+ b)`` come
from PyTorch's own bf16/fp16 matmul (the CPU's bf16 instructions), fastlog's
half-precision cross-entropy kernel turns them in place into the block's
gradient (float32 math, rounded once), ``grad_input`` for the block is
``g_blk @ W`` (PyTorch's matmul again) and ``grad_weight`` / ``grad_bias`` are
accumulated in float32 across blocks (``g_blk.T @ x_blk`` in float32) and
rounded once at the end.  The N x V logits never exist: the extra memory is
one block of logits (``rows x V``, half precision) and its float32 copy for the
weight-gradient GEMM, plus the float32 ``grad_weight`` accumulator (V x H).

Used by :func:`fastlog.torch.linear_cross_entropy` for 2-D bf16/fp16 inputs
with class-index targets and reduction 'mean' or 'sum'.
"""
import numpy as np
import torch

from .._dispatch import core
from .._validation import reduction_code, smoothing_param

HALVES = (torch.bfloat16, torch.float16)
# Rows per block: about 4 MiB of half-precision logits (at least 16 rows).
BLOCK_BYTES = 4 << 20


def can_run(input, linear_weight, target, linear_bias, weight, reduction):
    """Whether :func:`linear_cross_entropy_half` handles these arguments (else float32/64 or PyTorch).

    Parameters
    ----------
    input, linear_weight, target, linear_bias, weight, reduction
        As :func:`fastlog.torch.linear_cross_entropy` receives them.

    Returns
    -------
    bool
        True for 2-D bfloat16/float16 `input` and `linear_weight` of one dtype
        (bfloat16 only where ml_dtypes is installed), class-index targets,
        reduction 'mean' or 'sum', all on the CPU.

    Examples
    --------
    >>> import torch
    >>> from fastlog.torch.linear_ce_half import can_run
    >>> x, W, t = torch.zeros(2, 3, dtype=torch.float16), torch.zeros(4, 3, dtype=torch.float16), torch.tensor([0, 1])
    >>> can_run(x, W, t, None, None, "mean"), can_run(x.float(), W.float(), t, None, None, "mean")
    (True, False)
    """
    from . import _half_ok, _np  # noqa: F401  (fastlog.torch is imported by now)

    return (input.dtype in HALVES and _half_ok(input.dtype) and linear_weight.dtype == input.dtype
            and input.dim() == 2 and linear_weight.dim() == 2
            and (linear_bias is None or linear_bias.dtype == input.dtype)
            and (weight is None or weight.dtype in (input.dtype, torch.float32))
            and not target.is_floating_point() and not target.is_complex()
            and reduction in ("mean", "sum")
            and all(t.device.type == "cpu" for t in (input, linear_weight, target)))


def _block_rows(V):
    return max(16, BLOCK_BYTES // (2 * max(V, 1)))


def _run(x, W, b, target, weight, reduction, ign, eps, need_x, need_w, need_b):
    from . import _np

    N, H = x.shape
    V = W.shape[0]
    if target.shape != (N,):
        raise ValueError(f"target has shape {tuple(target.shape)}, expected ({N},)")
    tn = np.ascontiguousarray(target.detach().numpy(), dtype=np.int64)
    cw = None if weight is None else np.ascontiguousarray(weight.detach().float().numpy())
    keep = tn != ign
    badm = keep & ((tn < 0) | (tn >= V))
    if badm.any():
        i = int(np.argmax(badm))
        raise IndexError(f"target {int(tn[i])} is out of bounds for {V} classes (at position {i})")
    ys = tn[keep]
    wsum = float(np.sum(cw[ys], dtype=np.float64)) if cw is not None else float(ys.size)
    red = reduction_code(reduction)
    gscale = (1.0 / wsum if wsum else 0.0) if red == 1 else 1.0
    want_grad = need_x or need_w or need_b
    x = x.detach().contiguous()
    Wd = W.detach().contiguous()
    bd = None if b is None else b.detach()
    gX = torch.empty_like(x) if need_x else None
    gW = torch.zeros(V, H, dtype=torch.float32) if need_w else None
    gb = torch.zeros(V, dtype=torch.float32) if need_b else None
    losses = np.empty(N, np.float64)
    bs = min(_block_rows(V), max(N, 1))
    lbuf = torch.empty(bs, V, dtype=x.dtype)
    for r0 in range(0, N, bs):
        r1 = min(N, r0 + bs)
        lb = lbuf[: r1 - r0]
        xb = x[r0:r1]
        torch.mm(xb, Wd.t(), out=lb)
        if bd is not None:
            lb += bd
        ln = _np(lb)
        core.half_ce_index(ln, tn[r0:r1], cw, ign, eps, red, ln if want_grad else None,
                           losses[r0:r1], gscale)
        if need_x:
            torch.mm(lb, Wd, out=gX[r0:r1])
        if need_w or need_b:
            lf = lb.float()
            if need_w:
                gW.addmm_(lf.t(), xb.float())
            if need_b:
                gb += lf.sum(0)
    total = float(np.sum(losses))
    loss = total / wsum if red == 1 else total
    if red == 1 and not wsum:
        loss = float("nan")
    return (loss, gX, None if gW is None else gW.to(W.dtype),
            None if gb is None else gb.to(b.dtype))


class _HalfLinearCrossEntropy(torch.autograd.Function):
    @staticmethod
    def forward(ctx, input, linear_weight, linear_bias, target, weight, reduction, ign, eps):
        need_x, need_w, need_b = ctx.needs_input_grad[:3]
        need_b = need_b and linear_bias is not None
        loss, gX, gW, gb = _run(input, linear_weight, linear_bias, target, weight, reduction, ign, eps,
                                need_x, need_w, need_b)
        ctx.grads = (gX, gW, gb)
        ctx.save_for_backward(input, linear_weight, linear_bias)
        return torch.tensor(loss, dtype=torch.float32).to(input.dtype)

    @staticmethod
    def backward(ctx, grad_output):
        ctx.saved_tensors   # raises if an input was modified in place since forward
        grads = ctx.grads
        if grads is None:
            raise RuntimeError("fastlog.torch.linear_cross_entropy (half precision): backward twice "
                               "through the same graph is not supported")
        ctx.grads = None
        s = float(grad_output)
        out = [None if g is None else (g if s == 1.0 else g * s) for g in grads]
        return (*out, None, None, None, None, None)


def linear_cross_entropy_half(input, linear_weight, target, linear_bias, weight, reduction,
                              ignore_index, label_smoothing):
    """Fused linear + cross-entropy of half-precision tensors (see the module docstring).

    Parameters
    ----------
    input, linear_weight, target, linear_bias, weight, reduction, ignore_index, label_smoothing
        As :func:`fastlog.torch.linear_cross_entropy` receives them, where
        :func:`can_run` is true (``ignore_index=None`` means -100).

    Returns
    -------
    torch.Tensor
        The 0-d loss in the input's dtype (differentiable when an input requires grad).

    Examples
    --------
    >>> import torch, torch.nn.functional as F
    >>> from fastlog.torch.linear_ce_half import linear_cross_entropy_half
    >>> x, W = torch.ones(2, 3, dtype=torch.float16), torch.zeros(4, 3, dtype=torch.float16)
    >>> linear_cross_entropy_half(x, W, torch.tensor([0, 3]), None, None, "mean", None, 0.0)   # log(4)
    tensor(1.3867, dtype=torch.float16)
    """
    ign = -100 if ignore_index is None else int(ignore_index)
    eps = smoothing_param(label_smoothing)
    if torch.is_grad_enabled() and (input.requires_grad or linear_weight.requires_grad or
                                    (linear_bias is not None and linear_bias.requires_grad)):
        return _HalfLinearCrossEntropy.apply(input, linear_weight, linear_bias, target, weight,
                                             reduction, ign, eps)
    loss, _, _, _ = _run(input, linear_weight, linear_bias, target, weight, reduction, ign, eps,
                         False, False, False)
    return torch.tensor(loss, dtype=torch.float32).to(input.dtype)
