"""Vocabulary-parallel cross-entropy on ``torch.distributed`` (CPU, gloo).

Each rank of a process group holds a contiguous slice ``[lo, hi)`` of the
vocabulary: columns of the logits (:func:`vocab_parallel_cross_entropy`) or
rows of the output layer's weight (:func:`vocab_parallel_linear_cross_entropy`).
The slices follow the group's rank order and their widths come from the
ranks themselves (one all-gather of a small metadata vector), so shards may
have uneven widths.  The result equals ``torch.nn.functional.cross_entropy``
(``linear_cross_entropy``) of the gathered tensors, with the same ``weight``,
``ignore_index``, ``reduction`` and ``label_smoothing``.

Communication (Megatron-LM's recipe, with the shard's logsumexp in place of
its max): per call one all-gather of ~16 int64 per rank (widths, N, dtype,
parameters, target range and fingerprint: every rank checks every other rank's
arguments), then per block of rows one all-reduce MAX of the per-shard
logsumexp and one all-reduce SUM of per-row scalars (the shard's
``exp(lse_shard - max)``, the target logit -- only the owning shard adds a
non-zero -- and, with label smoothing, the shard's weighted row sum).  The
N x V logits never travel.

The gradient is computed in the forward pass, in one buffer the size of the
shard, and kept for backward: backward of :func:`vocab_parallel_cross_entropy`
only multiplies it by ``grad_output`` and needs no communication.

Passes over the shard (x has the shard's N x V_r logits):

1. the shard's logsumexp per row, in float64 (fastlog's kernel: one read); the
   target logit is gathered on the owning rank, and with smoothing
   ``x @ w_shard`` or ``x.sum(1)`` reads the shard once more;
2. with a gradient, fastlog's gradient-given-logsumexp kernel reads x and writes
   g once: ``g = c exp(x - lse) - s w - [target] k`` from the global logsumexp,
   with the target entry formed from ``expm1`` (no ``softmax - 1`` cancellation).

Errors: every check whose outcome could differ between ranks is decided from
the gathered metadata, which every rank holds in full, so all ranks raise the
same kind of exception after the same collectives (no rank is left waiting in
a collective another rank skipped).  A rank whose own arguments are malformed
reports an error code in the all-gather; then all ranks exchange the messages
(``all_gather_object``) and raise.  Inputs are never written to.

float32, float64, bfloat16 and float16.  Half-precision shards (logits, or input and
weight shard) are computed in float32 on one float32 copy, with float32 gradient
buffers; the loss and the gradients are rounded once to the input's dtype, as the
single-process half-precision kernels do.
Requires an initialized default process group (or ``group``); without one
(``torch.distributed`` not initialized and ``group=None``) the functions run as
a group of one.
"""
import zlib

from typing import Any, Optional

import numpy as np
import torch
import torch.distributed as dist

from .._dispatch import core
from .._enums import Reduction
from .._losses._reduce import finish, grad_scale
from ._buffers import grad_buffer as _grad_buffer

__all__ = ["vocab_parallel_cross_entropy", "vocab_parallel_linear_cross_entropy"]

_REDUCTIONS = {"none": Reduction.NONE, "mean": Reduction.MEAN, "sum": Reduction.SUM}
_ERR_TYPES = {1: TypeError, 2: ValueError, 3: IndexError, 4: RuntimeError}
_ERR_CODES = {TypeError: 1, ValueError: 2, IndexError: 3}
_I64_MIN, _I64_MAX = np.iinfo(np.int64).min, np.iinfo(np.int64).max
# Metadata fields (one int64 each) gathered from every rank.
_F = ["err", "width", "N", "dtype", "ignore", "reduction", "eps", "wlen", "wcrc", "tmin", "tmax",
      "tcrc", "vocab", "H", "bias", "grads", "chunk"]
_K = len(_F)
_AGREE = [("N", "number of rows N"), ("dtype", "dtype of the logits/input"),
          ("ignore", "ignore_index"), ("reduction", "reduction"), ("eps", "label_smoothing"),
          ("wlen", "length of weight"), ("wcrc", "class weight values"),
          ("tcrc", "target values"), ("vocab", "vocab_size"), ("H", "number of features H"),
          ("bias", "presence of a bias shard"), ("grads", "set of tensors requiring grad"),
          ("chunk", "chunk_size")]
# dtype of the logits/input, compared across ranks
_DT_CODE = {torch.float32: 0, torch.float64: 1, torch.bfloat16: 2, torch.float16: 3}
_HALF = (torch.bfloat16, torch.float16)


# ------------------------------------------------------------ the group --
class _Group:
    """The process group (or a stand-in group of one when torch.distributed is not initialized)."""

    def __init__(self, group):
        self.pg = group
        self.active = dist.is_available() and dist.is_initialized()
        if not self.active and group is not None:
            raise RuntimeError("a process group was given but torch.distributed is not initialized")
        self.size = dist.get_world_size(group) if self.active else 1
        self.rank = dist.get_rank(group) if self.active else 0

    def all_reduce(self, t, op):
        if self.active and self.size > 1:
            dist.all_reduce(t, op=op, group=self.pg)
        return t

    def all_gather(self, t):
        if not (self.active and self.size > 1):
            return t[None]
        out = [torch.empty_like(t) for _ in range(self.size)]
        dist.all_gather(out, t, group=self.pg)
        return torch.stack(out)

    def all_gather_object(self, obj):
        if not (self.active and self.size > 1):
            return [obj]
        out = [None] * self.size
        dist.all_gather_object(out, obj, group=self.pg)
        return out


def _crc(a):
    return 0 if a is None else zlib.crc32(np.ascontiguousarray(a).view(np.uint8))


class _Plan:
    """Validated arguments and the group-wide layout (bounds of every shard)."""


def _local_checks(plan, x, target, weight, ignore_index, reduction, label_smoothing, vocab_size,
                  half_ok=False):
    """Checks that need only this rank's arguments; fills `plan` (raises TypeError/ValueError).
    `half_ok`: bfloat16/float16 logits are accepted (computed in float32)."""
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"logits must be a torch.Tensor, got {type(x).__name__}")
    if x.device.type != "cpu" or x.layout != torch.strided:
        raise TypeError(f"logits must be a dense CPU tensor, got device {x.device}, layout {x.layout}")
    if x.dtype not in (torch.float32, torch.float64) and not (half_ok and x.dtype in _HALF):
        kinds = "float32, float64, bfloat16 or float16" if half_ok else "float32 or float64"
        raise TypeError(f"logits must be {kinds}, got {x.dtype}")
    if x.dim() != 2:
        raise ValueError(f"the logits shard must have shape (N, V_shard), got {tuple(x.shape)}")
    if not isinstance(target, torch.Tensor):
        raise TypeError(f"target must be a torch.Tensor, got {type(target).__name__}")
    if target.is_floating_point() or target.is_complex() or target.dtype == torch.bool:
        raise TypeError(f"target must hold integer class indices, got dtype {target.dtype}")
    if tuple(target.shape) != (x.shape[0],):
        raise ValueError(f"target has shape {tuple(target.shape)}, expected ({x.shape[0]},) "
                         f"(one class index per row of the logits)")
    red = _REDUCTIONS.get(reduction) if isinstance(reduction, str) else None
    if red is None:
        raise ValueError(f"reduction must be one of 'none', 'mean', 'sum', got {reduction!r}")
    if isinstance(ignore_index, bool) or not isinstance(ignore_index, (int, np.integer)):
        raise TypeError(f"ignore_index must be an integer, got {type(ignore_index).__name__}")
    if not _I64_MIN <= int(ignore_index) <= _I64_MAX:
        raise ValueError(f"ignore_index must fit in int64, got {ignore_index}")
    try:
        if isinstance(label_smoothing, (str, bytes)):
            raise TypeError
        eps = float(label_smoothing)
    except (TypeError, ValueError):
        raise TypeError(f"label_smoothing must be a float, got {type(label_smoothing).__name__}") from None
    if not 0.0 <= eps <= 1.0:
        raise ValueError(f"label_smoothing must be in [0, 1], got {label_smoothing!r}")
    if vocab_size is not None and (isinstance(vocab_size, bool) or not isinstance(vocab_size, (int, np.integer))
                                   or vocab_size < 0):
        raise TypeError(f"vocab_size must be a non-negative integer or None, got {vocab_size!r}")
    dt = np.dtype(np.float64) if x.dtype == torch.float64 else np.dtype(np.float32)
    plan.torch_dtype = x.dtype
    w = None
    if weight is not None:
        if not isinstance(weight, torch.Tensor) or weight.dim() != 1:
            raise ValueError("weight must be a 1-D tensor of length V (one weight per class of the "
                             "whole vocabulary, the same on every rank)")
        if weight.device.type != "cpu" or not (weight.is_floating_point() or weight.dtype == torch.int64):
            raise TypeError(f"weight must be a floating CPU tensor, got {weight.dtype} on {weight.device}")
        w = np.ascontiguousarray(weight.detach().to(torch.float64).numpy(), dtype=dt)
    t = target.detach().numpy().astype(np.int64, copy=False)
    ign = int(ignore_index)
    valid = t != ign
    tv = t[valid]
    plan.dtype, plan.red, plan.eps, plan.ign, plan.w = dt, red, eps, ign, w
    plan.t, plan.valid = np.ascontiguousarray(t), valid
    plan.tmin = int(tv.min()) if tv.size else _I64_MAX
    plan.tmax = int(tv.max()) if tv.size else _I64_MIN
    plan.vocab = -1 if vocab_size is None else int(vocab_size)


def _meta(plan, err, width, N, H=-1, bias=0, grads=0, chunk=-1):
    m = np.zeros(_K, np.int64)
    if err:
        m[0] = err
        return m
    vals = dict(err=0, width=width, N=N, dtype=_DT_CODE[plan.torch_dtype], ignore=plan.ign, reduction=plan.red,
                eps=int(np.float64(plan.eps).view(np.int64)),
                wlen=-1 if plan.w is None else plan.w.shape[0], wcrc=_crc(plan.w),
                tmin=plan.tmin, tmax=plan.tmax, tcrc=_crc(plan.t), vocab=plan.vocab, H=H, bias=bias,
                grads=grads, chunk=chunk)
    for i, k in enumerate(_F):
        m[i] = vals[k]
    return m


def _exchange(grp, plan, local_exc, meta):
    """All-gather the metadata; raise the same kind of error on every rank if any rank objects."""
    table = grp.all_gather(torch.from_numpy(meta)).numpy()
    errs = table[:, 0]
    if errs.any():
        msgs = grp.all_gather_object(None if local_exc is None else str(local_exc))
        first = int(np.flatnonzero(errs)[0])
        if local_exc is not None:
            if type(local_exc) in _ERR_CODES:
                raise type(local_exc)(f"{local_exc} (rank {grp.rank} of {grp.size})") from local_exc
            raise local_exc
        raise _ERR_TYPES[int(errs[first])](f"rank {first} of {grp.size} rejected its arguments: "
                                           f"{msgs[first]}")
    col = {k: table[:, i] for i, k in enumerate(_F)}
    for key, what in _AGREE:
        v = col[key]
        if (v != v[0]).any():
            raise ValueError(f"the ranks disagree on the {what}: per rank {v.tolist()}"
                             + (" (CRC-32 checksums)" if key in ("wcrc", "tcrc") else ""))
    widths = col["width"].astype(np.int64)
    V = int(widths.sum())
    bounds = np.concatenate([[0], np.cumsum(widths)])
    plan.widths, plan.V = widths, V
    plan.lo, plan.hi = int(bounds[grp.rank]), int(bounds[grp.rank + 1])
    if plan.vocab >= 0 and plan.vocab != V:
        raise ValueError(f"the shard widths {widths.tolist()} add up to {V} classes but vocab_size is "
                         f"{plan.vocab}")
    if plan.w is not None and plan.w.shape[0] != V:
        raise ValueError(f"weight has {plan.w.shape[0]} entries but the shard widths "
                         f"{widths.tolist()} add up to V = {V} (weight holds one value per class of the "
                         f"whole vocabulary)")
    tmin, tmax = int(col["tmin"].min()), int(col["tmax"].max())
    if tmin < 0 or tmax >= V:
        bad = tmin if tmin < 0 else tmax
        raise IndexError(f"target {bad} is out of bounds for {V} classes (the sum of the shard widths "
                         f"{widths.tolist()}; ignore_index={plan.ign})")
    return table


# ------------------------------------------------------ the per-row core --
def _denominator(plan):
    """Sum of w[y] over the non-ignored rows (their number without weights), in float64."""
    if plan.w is None:
        return float(np.count_nonzero(plan.valid))
    return float(np.sum(plan.w[plan.t[plan.valid]], dtype=np.float64))


def _ce_rows(grp, plan, x, rows, scale, row_scale=None, g=None):
    """Cross-entropy of the rows `rows` (a slice) whose shard logits are `x` (n x V_r).

    Collectives: one MAX and one SUM all-reduce of per-row float64 scalars.
    Returns the per-row losses (float64, 0 at ignored rows).  With `g` (n x V_r,
    may be `x` itself) writes the gradient of sum_i row_scale_i * scale * loss_i
    there.
    """
    n, Vr = x.shape
    lo, hi, V, eps = plan.lo, plan.hi, plan.V, plan.eps
    t = plan.t[rows]
    valid = plan.valid[rows]
    own = valid & (t >= lo) & (t < hi)
    own_rows = np.flatnonzero(own)
    own_cols = t[own_rows] - lo
    w_shard = None if plan.w is None else plan.w[lo:hi]
    k = 3 if eps else 2
    stats = np.zeros((k, n), np.float64)
    stats[1, own_rows] = x[own_rows, own_cols]
    if eps and Vr:
        stats[2] = x.sum(axis=1) if w_shard is None else x @ w_shard
    # The shard's logsumexp per row, in float64 (one read of the shard); a row whose
    # shard is all -inf (masked vocabulary) has no mass here: -inf.
    lse_r = np.full(n, -np.inf)
    if Vr:
        core.lse_rows_d(x, lse_r)
    # Collectives: per-row scalars only.
    M = grp.all_reduce(torch.from_numpy(lse_r.copy()), dist.ReduceOp.MAX).numpy()
    finite_M = np.where(np.isfinite(M), M, 0.0)
    with np.errstate(invalid="ignore", over="ignore"):
        stats[0] = np.exp(lse_r - finite_M)
    grp.all_reduce(torch.from_numpy(stats), dist.ReduceOp.SUM)
    with np.errstate(divide="ignore", invalid="ignore"):
        lse = finite_M + np.log(stats[0])
    lse = np.where(np.isfinite(M), lse, M)
    xy = stats[1]
    wy = np.ones(n) if plan.w is None else np.where(valid, plan.w[np.where(valid, t, 0)], 0.0)
    wy = np.where(valid, wy, 0.0).astype(np.float64)
    W = float(V) if plan.w is None else float(np.sum(plan.w, dtype=np.float64))
    with np.errstate(invalid="ignore", over="ignore"):
        losses = (1.0 - eps) * wy * (lse - xy)
        if eps:
            losses += (eps / V) * (W * lse - stats[2])
    losses = np.where(valid, losses, 0.0)
    if g is not None and Vr:
        # The gradient straight from the global logsumexp: one read of the shard,
        # one write of g (fastlog's gradient-given-logsumexp kernel).
        srow = np.full(n, scale) if row_scale is None else row_scale[rows] * scale
        with np.errstate(invalid="ignore", over="ignore"):
            kk = np.where(valid, srow * (1.0 - eps) * wy, 0.0)
            sm = np.where(valid, srow * (eps / V), 0.0)
        ycol = np.full(n, -1, np.int64)
        ycol[own_rows] = own_cols
        core.ce_grad_lse(x, np.ascontiguousarray(lse), kk, sm, ycol, w_shard, W, g)
    return losses


def _finish(losses, plan, D):
    return finish(losses, None, D, plan.red, plan.dtype, smoothing=plan.eps)


def _scale_of(plan, D):
    return grad_scale(plan.red, D, plan.eps)


# ------------------------------------------------------ logits-sharded CE --
def _prepare_ce(grp, logits, target, weight, ignore_index, reduction, label_smoothing, vocab_size,
                want_grad):
    plan = _Plan()
    exc = None
    try:
        _local_checks(plan, logits, target, weight, ignore_index, reduction, label_smoothing, vocab_size,
                      half_ok=True)
        meta = _meta(plan, 0, int(logits.shape[1]), int(logits.shape[0]), grads=int(want_grad))
    except Exception as e:  # noqa: BLE001 - every local failure is reported to the other ranks
        exc = e
        meta = _meta(plan, _ERR_CODES.get(type(e), 4), 0, 0)
    _exchange(grp, plan, exc, meta)
    return plan


def _ce_forward(grp, plan, x, want_grad):
    D = _denominator(plan)
    g = None
    if want_grad:
        # fastlog.torch's gradient-buffer cache (a fresh shard-sized array costs page faults).
        g = _grad_buffer(x.shape, x.dtype)
        if g is None:
            g = np.empty(x.shape, x.dtype)
    losses = _ce_rows(grp, plan, x, slice(None), _scale_of(plan, D), g=g)
    return _finish(losses, plan, D), g


def _shard(logits):
    """The shard as a NumPy array to compute on: float32 for half logits (one copy)."""
    x = logits.detach()
    return (x.float() if x.dtype in _HALF else x).numpy()


def _loss_tensor(loss, plan):
    """The loss as PyTorch returns it: in the logits' dtype (rounded once from float32/64)."""
    return torch.from_numpy(np.asarray(loss)).to(plan.torch_dtype)


class _VocabParallelCE(torch.autograd.Function):
    @staticmethod
    def forward(ctx, logits, target, weight, grp, plan):
        loss, g = _ce_forward(grp, plan, _shard(logits), True)
        ctx.red = plan.red
        ctx.half = plan.torch_dtype if plan.torch_dtype in _HALF else None
        ctx.save_for_backward(torch.from_numpy(g))
        return _loss_tensor(loss, plan)

    @staticmethod
    def backward(ctx, grad_output):
        (g,) = ctx.saved_tensors
        if ctx.half is not None:   # scale in float32, round once to the logits' dtype
            go = grad_output.float()
            gi = g * (go.reshape(-1, 1) if ctx.red == Reduction.NONE else go)
            return gi.to(ctx.half), None, None, None, None
        if ctx.red == Reduction.NONE:
            return g * grad_output.reshape(-1, 1), None, None, None, None
        if grad_output.numel() == 1 and grad_output.item() == 1.0:
            return g, None, None, None, None
        return g * grad_output, None, None, None, None


def vocab_parallel_cross_entropy(logits_shard: torch.Tensor, target: torch.Tensor, group: Any = None, *,
                                 weight: Optional[torch.Tensor] = None, ignore_index: int = -100,
                                 reduction: str = "mean", label_smoothing: float = 0.0,
                                 vocab_size: Optional[int] = None) -> torch.Tensor:
    """Cross-entropy of logits split by vocabulary across the ranks of `group`.

    Parameters
    ----------
    logits_shard : Tensor (N, V_r), float32, float64, bfloat16 or float16, CPU
        This rank's columns ``[lo, hi)`` of the N x V logits; rank r of the
        group holds the r-th slice in rank order (``lo`` is the sum of the
        widths of the lower ranks).  Widths may differ between ranks (0 too).
    target : int Tensor (N,)
        Global class indices in ``[0, V)`` (or `ignore_index`), the same on
        every rank.
    group : ProcessGroup, optional
        Default: the default group.
    weight : Tensor (V,), optional
        Per-class weights of the whole vocabulary (the same on every rank).
    ignore_index, reduction, label_smoothing
        As ``torch.nn.functional.cross_entropy``.
    vocab_size : int, optional
        If given, the shard widths must add up to it (checked on every rank).

    Returns
    -------
    The loss (0-d, or (N,) for ``reduction='none'``), identical on every rank.
    Its backward writes this rank's N x V_r gradient, with no communication.
    Must be called by every rank of the group (it is a collective).

    Raises
    ------
    ValueError, TypeError, IndexError
        Bad arguments on any rank (widths that do not add up, mismatched N,
        targets outside the global vocabulary, an unknown `reduction`, ...):
        every rank checks every rank's arguments and raises the same error, so
        no rank is left waiting in a collective.
    RuntimeError
        A `group` given while ``torch.distributed`` is not initialized.

    Examples
    --------
    A process group of one (gloo, a file store: no network); every rank of a
    real group runs the same code with its own shard:

    >>> import os, tempfile, torch, torch.distributed as dist
    >>> import torch.nn.functional as F
    >>> from fastlog.torch.distributed import vocab_parallel_cross_entropy
    >>> store = os.path.join(tempfile.mkdtemp(), "store")
    >>> dist.init_process_group("gloo", init_method="file://" + store, rank=0, world_size=1)
    >>> logits = torch.tensor([[1.0, 2.0, 3.0], [1.0, 1.0, 1.0]], requires_grad=True)
    >>> t = torch.tensor([2, 0])
    >>> loss = vocab_parallel_cross_entropy(logits, t, vocab_size=3)
    >>> loss.backward()
    >>> x = logits.detach().clone().requires_grad_()
    >>> F.cross_entropy(x, t).backward()                # the same loss and gradient
    >>> round(loss.item(), 4), torch.allclose(logits.grad, x.grad)
    (0.7531, True)
    >>> dist.destroy_process_group()
    """
    grp = _Group(group)
    want_grad = (torch.is_grad_enabled() and isinstance(logits_shard, torch.Tensor)
                 and logits_shard.requires_grad)
    plan = _prepare_ce(grp, logits_shard, target, weight, ignore_index, reduction, label_smoothing,
                       vocab_size, want_grad)
    if want_grad:
        return _VocabParallelCE.apply(logits_shard, target, weight, grp, plan)
    loss, _ = _ce_forward(grp, plan, _shard(logits_shard), False)
    return _loss_tensor(loss, plan)


# --------------------------------------------------- linear + CE, sharded --
def _block_rows(N, widths, itemsize, chunk_size):
    if chunk_size is not None:
        return max(1, min(int(chunk_size), max(N, 1)))
    Vmax = int(max(1, widths.max())) if widths.size else 1
    nb = max((32 << 20) // (Vmax * itemsize), 256)
    return int(max(1, min(nb, max(N, 1))))


def _lce_run(grp, plan, X, Wt, b, nb, want_x, want_w, want_b, row_scale=None, red_override=None):
    """Blocked linear + vocab-parallel CE.  Returns (losses, gX (all-reduced), gW, gb)."""
    N, H = X.shape
    Vr = Wt.shape[0]
    D = _denominator(plan)
    red = plan.red if red_override is None else red_override
    scale = grad_scale(red, D, plan.eps)
    want = want_x or want_w or want_b
    work = np.empty((nb, Vr), X.dtype)
    losses = np.empty(N, np.float64)
    gX = np.zeros((N, H), X.dtype) if want_x else None
    gW = np.zeros((Vr, H), X.dtype) if want_w else None
    tmpW = np.empty((Vr, H), X.dtype) if want_w else None
    gb = np.zeros(Vr, np.float64) if want_b else None
    for a in range(0, N, nb):
        e = min(N, a + nb)
        z = work[: e - a]
        np.matmul(X[a:e], Wt.T, out=z)
        if b is not None:
            z += b
        losses[a:e] = _ce_rows(grp, plan, z, slice(a, e), scale, row_scale, g=z if want else None)
        if want_x:
            np.matmul(z, Wt, out=gX[a:e])
        if want_w:
            np.matmul(z.T, X[a:e], out=tmpW)
            gW += tmpW
        if want_b:
            gb += z.sum(axis=0, dtype=np.float64)
    if want_x:
        grp.all_reduce(torch.from_numpy(gX), dist.ReduceOp.SUM)
    return losses, gX, gW, (None if gb is None else gb.astype(X.dtype))


def _prepare_lce(grp, input, weight_shard, target, bias_shard, weight, ignore_index, reduction,
                 label_smoothing, vocab_size, wants, chunk_size):
    plan = _Plan()
    exc = None
    try:
        if not isinstance(input, torch.Tensor) or not isinstance(weight_shard, torch.Tensor):
            raise TypeError("input and weight_shard must be torch.Tensors")
        if input.dim() != 2:
            raise ValueError(f"input must have shape (N, H), got {tuple(input.shape)}")
        if weight_shard.dim() != 2 or weight_shard.shape[1] != input.shape[1]:
            raise ValueError(f"weight_shard must have shape (V_shard, H) with H = {input.shape[1]} "
                             f"(the input's features), got {tuple(weight_shard.shape)}")
        if weight_shard.dtype != input.dtype:
            raise TypeError(f"input ({input.dtype}) and weight_shard ({weight_shard.dtype}) must have "
                            f"the same dtype")
        if bias_shard is not None and (not isinstance(bias_shard, torch.Tensor)
                                       or tuple(bias_shard.shape) != (weight_shard.shape[0],)
                                       or bias_shard.dtype != input.dtype):
            raise ValueError(f"bias_shard must be a tensor of shape ({weight_shard.shape[0]},) and the "
                             f"input's dtype")
        # The logits checks, on a stand-in of the shard's shape (no N x V_r tensor is made).
        if chunk_size is not None and (isinstance(chunk_size, bool) or not isinstance(chunk_size, int)
                                       or chunk_size < 1):
            raise TypeError(f"chunk_size must be a positive integer or None, got {chunk_size!r}")
        stand_in = torch.empty((input.shape[0], 1), dtype=input.dtype).expand(
            input.shape[0], weight_shard.shape[0]) if input.dtype in _DT_CODE else input
        _local_checks(plan, stand_in, target, weight, ignore_index, reduction, label_smoothing, vocab_size,
                      half_ok=True)
        meta = _meta(plan, 0, int(weight_shard.shape[0]), int(input.shape[0]), H=int(input.shape[1]),
                     bias=int(bias_shard is not None), grads=wants,
                     chunk=-1 if chunk_size is None else int(chunk_size))
    except Exception as e:  # noqa: BLE001 - every local failure is reported to the other ranks
        exc = e
        meta = _meta(plan, _ERR_CODES.get(type(e), 4), 0, 0)
    _exchange(grp, plan, exc, meta)
    return plan


def _np_c(t):
    """A contiguous NumPy array to compute on: float32 for half tensors (one copy)."""
    if t is None:
        return None
    t = t.detach()
    return np.ascontiguousarray((t.float() if t.dtype in _HALF else t).numpy())


class _VocabParallelLCE(torch.autograd.Function):
    @staticmethod
    def forward(ctx, input, weight_shard, bias_shard, grp, plan, nb):
        X, Wt, b = _np_c(input), _np_c(weight_shard), _np_c(bias_shard)
        need_x, need_w, need_b = ctx.needs_input_grad[:3]
        need_b = need_b and b is not None
        ctx.grp, ctx.plan, ctx.nb, ctx.want = grp, plan, nb, (need_x, need_w, need_b)
        ctx.arrays = (X, Wt, b)
        ctx.grads = None
        pre = plan.red != Reduction.NONE
        losses, gX, gW, gb = _lce_run(grp, plan, X, Wt, b, nb, pre and need_x, pre and need_w,
                                      pre and need_b)
        if pre:
            ctx.grads = (gX, gW, gb)
        ctx.save_for_backward(input, weight_shard, bias_shard)
        return _loss_tensor(_finish(losses, plan, _denominator(plan)), plan)

    @staticmethod
    def backward(ctx, grad_output):
        ctx.saved_tensors   # raises if an input was modified in place
        need_x, need_w, need_b = ctx.want
        plan = ctx.plan
        if plan.red == Reduction.NONE:
            # Per-row scales: recompute block by block (collectives in backward, on every rank).
            rs = np.ascontiguousarray(grad_output.detach().to(torch.float64).reshape(-1).numpy())
            X, Wt, b = ctx.arrays
            _, gX, gW, gb = _lce_run(ctx.grp, plan, X, Wt, b, ctx.nb, need_x, need_w, need_b,
                                     row_scale=rs, red_override=Reduction.SUM)
            s = 1.0
        else:
            if ctx.grads is None:
                raise RuntimeError("vocab_parallel_linear_cross_entropy: backward through the graph a "
                                   "second time is not supported (retain_graph)")
            gX, gW, gb = ctx.grads
            ctx.grads = None
            s = float(grad_output)
        out = []
        for gr, need in ((gX, need_x), (gW, need_w), (gb, need_b)):
            if not need or gr is None:
                out.append(None)
                continue
            tg = torch.from_numpy(gr)
            if s != 1.0:
                tg.mul_(s)
            # half inputs: float32 gradients rounded once to the input's dtype
            out.append(tg.to(plan.torch_dtype))
        return (*out, None, None, None)


def vocab_parallel_linear_cross_entropy(input: torch.Tensor, weight_shard: torch.Tensor, target: torch.Tensor,
                                        group: Any = None, *, bias_shard: Optional[torch.Tensor] = None,
                                        weight: Optional[torch.Tensor] = None, ignore_index: int = -100,
                                        reduction: str = "mean", label_smoothing: float = 0.0,
                                        vocab_size: Optional[int] = None,
                                        chunk_size: Optional[int] = None) -> torch.Tensor:
    """Fused linear + cross-entropy with the output layer's weight split by vocabulary.

    Equals ``torch.nn.functional.linear_cross_entropy(input, W, target,
    linear_bias=b, weight=weight, ...)`` where ``W`` (V x H) stacks the ranks'
    `weight_shard` (V_r x H) in rank order (and ``b`` their `bias_shard`).

    The rows are processed in blocks: per block the shard's logits
    ``input @ weight_shard.T`` go into one reused ``block x V_r`` workspace,
    the per-row scalars are all-reduced (see the module docstring), the
    workspace is turned into the gradient of the logits in place and consumed
    by two GEMMs (``grad_input`` part, ``grad_weight_shard`` accumulation).
    No rank ever holds N x V logits.  ``grad_input`` is all-reduced (SUM) at
    the end of the forward.  For 'mean'/'sum' the gradients are computed in
    the forward and handed out by backward; 'none' recomputes in backward
    (with collectives, so every rank must run it).

    `input` (N, H) and `target` (N,) must be the same on every rank.
    `chunk_size` sets the rows per block (default: a 32 MiB workspace on the
    widest shard, at least 256 rows); it must be the same on every rank.

    Parameters
    ----------
    input : Tensor (N, H)
        Features, the same on every rank.
    weight_shard : Tensor (V_r, H)
        This rank's rows ``[lo, hi)`` of the output layer's weight (rank order).
    target : int Tensor (N,)
        Global class indices in ``[0, V)`` (or `ignore_index`), the same on every rank.
    group : ProcessGroup, optional
        Default: the default group (none initialised: a group of one).
    bias_shard : Tensor (V_r,), optional
        This rank's slice of the output layer's bias.
    weight, ignore_index, reduction, label_smoothing, vocab_size
        As in :func:`vocab_parallel_cross_entropy`.
    chunk_size : int, optional
        Rows per block (the same on every rank).

    Returns
    -------
    Tensor
        The loss (0-d, or (N,) for ``reduction='none'``), identical on every rank.

    Raises
    ------
    ValueError, TypeError, IndexError
        Bad arguments on any rank (widths that do not add up, mismatched N,
        targets outside the global vocabulary, an unknown `reduction`, ...):
        every rank checks every rank's arguments and raises the same error, so
        no rank is left waiting in a collective.
    RuntimeError
        A `group` given while ``torch.distributed`` is not initialized.

    Examples
    --------
    Without an initialised process group the call runs as a group of one:

    >>> import torch, torch.nn.functional as F
    >>> from fastlog.torch.distributed import vocab_parallel_linear_cross_entropy
    >>> g = torch.Generator().manual_seed(0)
    >>> h, W = torch.randn(4, 3, generator=g), torch.randn(5, 3, generator=g)
    >>> t = torch.tensor([0, 4, 2, 1])
    >>> loss = vocab_parallel_linear_cross_entropy(h, W, t)
    >>> torch.allclose(loss, F.cross_entropy(h @ W.T, t))
    True
    """
    grp = _Group(group)
    ge = torch.is_grad_enabled()
    need = tuple(bool(ge and isinstance(t, torch.Tensor) and t.requires_grad)
                 for t in (input, weight_shard, bias_shard))
    wants = need[0] * 1 + need[1] * 2 + need[2] * 4
    plan = _prepare_lce(grp, input, weight_shard, target, bias_shard, weight, ignore_index, reduction,
                        label_smoothing, vocab_size, wants, chunk_size)
    nb = _block_rows(int(input.shape[0]), plan.widths, np.dtype(plan.dtype).itemsize, chunk_size)
    if any(need):
        return _VocabParallelLCE.apply(input, weight_shard, bias_shard, grp, plan, nb)
    X, Wt, b = _np_c(input), _np_c(weight_shard), _np_c(bias_shard)
    losses, _, _, _ = _lce_run(grp, plan, X, Wt, b, nb, False, False, False)
    return _loss_tensor(_finish(losses, plan, _denominator(plan)), plan)
