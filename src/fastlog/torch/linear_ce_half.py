"""Fused linear + cross-entropy for bfloat16 / float16 tensors.

Two passes, every GEMM through PyTorch's own bf16/fp16 matmul (the CPU's bf16
instructions; they accumulate in float32 and round the result once), and no
float32 GEMM (on this CPU 4x slower than bf16):

1. Row blocks (``rows x V`` logits, full vocabulary): the block's logits
   ``x_blk @ W.T (+ b)``; fastlog's half-precision cross-entropy kernel reads
   them once for each row's log-sum-exp (kept, float64, one number per row)
   and then turns them in place into the block's gradient (float32 math,
   rounded once); ``grad_input`` for the block is ``g_blk @ W``.
2. Vocabulary blocks (``N x cols`` logits, all rows), only if ``grad_weight``
   or ``grad_bias`` is wanted: the block's logits again, the gradient
   ``gscale (coef_n exp(z - lse_n) - eps/C w_v - [v = y_n] (1-eps) w_y)`` in
   float32 from the saved log-sum-exp by fastlog's gradient-given-logsumexp
   kernel (the one vocabulary-parallel cross-entropy uses), rounded once, and
   ``grad_weight[cols] = g.T @ x`` in ONE GEMM over all N rows (so it is
   accumulated in float32 and rounded once, with no V x H float32
   accumulator); ``grad_bias`` is the float32 column sum.

The N x V logits never exist: the extra memory is one block of logits in each
pass (about ``BLOCK_BYTES`` of half precision, and the float32 copy of a
vocabulary block), a few numbers per row and the float32 bias accumulator.

Used by :func:`fastlog.torch.linear_cross_entropy` for 2-D bf16/fp16 inputs
with class-index targets and reduction 'mean' or 'sum'.
"""
import numpy as np
import torch

from .._dispatch import core
from .._losses._reduce import finish, grad_scale
from .._validation import reduction_code, smoothing_param

HALVES = (torch.bfloat16, torch.float16)
# Logits per block: about 16 MiB of half precision (at least 16 rows or 64
# columns).  Row blocks of a few hundred rows keep PyTorch's GEMMs efficient
# (65-row blocks made them 1.9-3.2x slower per flop at V = 32000).
BLOCK_BYTES = 16 << 20


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
    from ._route import half_ok as _half_ok

    return (input.dtype in HALVES and _half_ok(input.dtype) and linear_weight.dtype == input.dtype
            and input.dim() == 2 and linear_weight.dim() == 2
            and (linear_bias is None or linear_bias.dtype == input.dtype)
            and (weight is None or weight.dtype in (input.dtype, torch.float32))
            and not target.is_floating_point() and not target.is_complex()
            and reduction in ("mean", "sum")
            and all(t.device.type == "cpu" for t in (input, linear_weight, target)))


def _block_rows(V):
    return max(16, BLOCK_BYTES // (2 * max(V, 1)))


def _block_cols(N):
    # the vocabulary pass holds the half block and its float32 copy: 6 bytes
    return max(64, BLOCK_BYTES // (6 * max(N, 1)) // 64 * 64)


def _run(x, W, b, target, weight, reduction, ign, eps, need_x, need_w, need_b):
    from ._buffers import np_view as _np

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
    gscale = grad_scale(red, wsum, eps)
    want_grad = need_x or need_w or need_b
    two_pass = need_w or need_b
    x = x.detach().contiguous()
    Wd = W.detach().contiguous()
    bd = None if b is None else b.detach()
    gX = torch.empty_like(x) if need_x else None
    losses = np.empty(N, np.float64)
    if two_pass:
        # log-sum-exp per row = the plain (unweighted, unsmoothed) CE loss
        # plus the target's logit; ignored rows get class 0 for this pass.
        t0 = np.where(keep, tn, 0)
        lse = np.empty(N, np.float64)
    bs = min(_block_rows(V), max(N, 1))
    lbuf = torch.empty(bs, V, dtype=x.dtype)
    for r0 in range(0, N, bs):
        r1 = min(N, r0 + bs)
        lb = lbuf[: r1 - r0]
        torch.mm(x[r0:r1], Wd.t(), out=lb)
        if bd is not None:
            lb += bd
        ln = _np(lb)
        if two_pass:
            core.half_ce_index(ln, t0[r0:r1], None, -1, 0.0, 0, None, lse[r0:r1], 1.0)
            lse[r0:r1] += lb[np.arange(r1 - r0), t0[r0:r1]].double().numpy()
        core.half_ce_index(ln, tn[r0:r1], cw, ign, eps, red, ln if want_grad else None,
                           losses[r0:r1], gscale, stream=False)   # the GEMMs read it next
        if need_x:
            torch.mm(lb, Wd, out=gX[r0:r1])
    del lbuf
    gW = gb = None
    if two_pass:
        gW, gb = _vocab_pass(x, Wd, bd, tn, keep, cw, eps, gscale, lse, need_w, need_b)
    loss = finish(losses, None, wsum, red, np.dtype(np.float32), smoothing=eps)
    return loss, gX, gW, gb


def _vocab_pass(x, W, b, tn, keep, cw, eps, gscale, lse, need_w, need_b):
    """grad_weight and grad_bias by vocabulary blocks (pass 2, see the module
    docstring): each block's gradient over all N rows, one GEMM per block."""
    N, H = x.shape
    V = W.shape[0]
    Wsum = float(V) if cw is None else float(np.sum(cw, dtype=np.float64))
    wy = np.ones(N) if cw is None else cw[np.where(keep, tn, 0)].astype(np.float64)
    # per row: the target's coefficient and the smoothing's (0 and 0: an ignored row)
    with np.errstate(invalid="ignore", over="ignore"):
        kk = np.where(keep, gscale * (1.0 - eps) * wy, 0.0)
        sm = np.where(keep, gscale * (eps / V), 0.0)
    gW = torch.empty(V, H, dtype=W.dtype) if need_w else None
    gb = torch.empty(V, dtype=b.dtype) if need_b else None
    bc = min(_block_cols(N), V)
    zbuf = torch.empty(N * bc, dtype=x.dtype)
    fbuf = torch.empty(N * bc, dtype=torch.float32)
    for c0 in range(0, V, bc):
        c1 = min(V, c0 + bc)
        z, f = zbuf[: N * (c1 - c0)].view(N, c1 - c0), fbuf[: N * (c1 - c0)].view(N, c1 - c0)
        torch.mm(x, W[c0:c1].t(), out=z)
        if b is not None:
            z += b[c0:c1]
        f.copy_(z)
        fn = f.numpy()
        ycol = np.where(keep & (tn >= c0) & (tn < c1), tn - c0, -1)
        # the block's gradient in float32, from the saved log-sum-exp (one kernel pass)
        core.ce_grad_lse(fn, lse, kk, sm, ycol, None if cw is None else cw[c0:c1], Wsum, fn)
        if need_b:
            gb[c0:c1] = f.sum(0)
        if need_w:
            z.copy_(f)
            torch.mm(z.t(), x, out=gW[c0:c1])
    return gW, gb


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
