"""Fused linear + cross-entropy that never builds the logits.

``linear_cross_entropy(input, weight, target, bias)`` equals
``cross_entropy(input @ weight.T + bias, target)`` but works through the rows
in blocks: for each block the logits are computed by a GEMM into one reused
workspace, turned into the cross-entropy gradient in place by fastlog's fused
kernel, and consumed by two more GEMMs that produce ``grad_input`` and
accumulate ``grad_weight``.  Extra memory is the ``block x V`` workspace
(48 MiB by default, at least 256 rows), independent of the number of rows N;
the full N x V logits are never held.

Results are identical for any ``fastlog.set_num_threads`` value: rows are
independent, and ``grad_weight`` / ``grad_bias`` are accumulated block after
block in row order.  The GEMMs run in SciPy's BLAS, cut into blocks that
depend only on the shapes and spread over fastlog's threads, with SciPy's BLAS
pool held at 1 thread during the call (and restored after): results do not
depend on fastlog's or BLAS's thread count.
"""
from typing import NamedTuple, Optional, Tuple, Union

import numpy as np

from ._dispatch import core
from ._enums import Reduction
from ._losses._reduce import finish
from ._threads import blas_pinned
from ._typing import ArrayLike, Loss, ReductionName
from ._validation import class_weight as _class_weight
from ._validation import (float_array, index_param, index_target, nonneg_float, positive_int, reduction_code,
                          smoothing_param)

__all__ = ["linear_cross_entropy", "linear_cross_entropy_and_grad"]

#: Default workspace for one block of logits, in bytes.
WORKSPACE_BYTES = 48 << 20
#: Fewest rows per block when the workspace budget would allow fewer.
MIN_BLOCK_ROWS = 256
_INT_MAX = 2**31 - 1


def _block_rows(N, V, itemsize, chunk_size):
    if chunk_size is not None:
        nb = positive_int(chunk_size, "chunk_size", maximum=_INT_MAX)
    else:
        # Rows per block: fill the workspace budget, but never fewer than
        # MIN_BLOCK_ROWS (BLAS is markedly slower on thinner blocks: the
        # grad_input GEMM (rows x V) @ (V x H) drops to ~half speed at 64
        # rows), rounded to a multiple of 16.
        nb = max(WORKSPACE_BYTES // max(1, V * itemsize), MIN_BLOCK_ROWS)
        nb = nb - nb % 16
    return int(max(1, min(nb, max(N, 1))))


class Prepared(NamedTuple):
    """Validated arguments of a fused linear + cross-entropy call (what :func:`_run` takes)."""
    X: np.ndarray            # (N, H) input, C-contiguous
    W: np.ndarray            # (V, H) weight
    b: object                # (V,) bias or None
    cw: object               # (V,) class weight or None
    tt: np.ndarray           # (N,) int64 targets
    ign: int                 # ignore_index
    red: Reduction
    eps: float               # label smoothing
    z: float                 # z-loss coefficient
    nb: int                  # rows per block
    batch_shape: tuple
    dtype: np.dtype


class Result(NamedTuple):
    """What :func:`_run` returns (None for what was not asked for)."""
    losses: np.ndarray       # float64 (N,)
    wsum: float
    total: float
    lse: object
    gX: object
    gW: object
    gb: object               # float64 (V,)


def _prepare(input, weight, target, bias, class_weight, ignore_index, reduction, label_smoothing,
             chunk_size, z_loss):
    x = float_array(input, "input", promote_int=False)
    W = float_array(weight, "weight", promote_int=False)
    if x.dtype != W.dtype:
        raise TypeError(f"input ({x.dtype}) and weight ({W.dtype}) must have the same dtype")
    if x.ndim not in (1, 2):
        raise ValueError(f"input must have shape (H,) or (N, H), got shape {x.shape}")
    if W.ndim != 2:
        raise ValueError(f"weight must have shape (V, H) (classes x features), got shape {W.shape}")
    H = x.shape[-1]
    V = W.shape[0]
    if W.shape[1] != H:
        raise ValueError(f"weight has {W.shape[1]} features (shape {W.shape}) but input has {H} "
                         f"(shape {x.shape})")
    dtype = x.dtype
    batch_shape = () if x.ndim == 1 else (x.shape[0],)
    X = np.ascontiguousarray(x.reshape(batch_shape[0] if batch_shape else 1, H))
    N = X.shape[0]
    if max(N, H, V) > _INT_MAX:
        raise ValueError("input and weight dimensions must each be below 2**31")
    if N and V == 0:
        raise ValueError("weight has 0 rows: there are no classes")
    W = np.ascontiguousarray(W)
    b = None
    if bias is not None:
        b = float_array(bias, "bias", promote_int=False)
        if b.shape != (V,):
            raise ValueError(f"bias must have shape ({V},) (one value per class), got {b.shape}")
        b = np.ascontiguousarray(b, dtype=dtype)
    cw = _class_weight(class_weight, V, dtype, name="class_weight")
    t = target if type(target) is np.ndarray else np.asarray(target)
    if t.dtype.kind == "f":
        raise TypeError(f"target has floating dtype {t.dtype}: linear_cross_entropy takes integer class "
                        f"indices (use fastlog.cross_entropy on explicit logits for probability targets)")
    tt = index_target(t, batch_shape)
    red = reduction_code(reduction)
    eps = smoothing_param(label_smoothing)
    ign = index_param(ignore_index)
    z = nonneg_float(z_loss, "z_loss")
    nb = _block_rows(N, V, dtype.itemsize, chunk_size)
    return Prepared(X, W, b, cw, tt, ign, red, eps, z, nb, batch_shape, dtype)


def _run(p, *, grad_input=True, grad_weight=True, grad_bias=True, want_lse=False, row_scale=None):
    """The compiled call on the validated arguments `p` (a :class:`Prepared`);
    returns a :class:`Result`."""
    X, W, b, cw, tt, ign, red, eps, z, nb = p[:10]
    N, H = X.shape
    V = W.shape[0]
    dtype = X.dtype
    want_grad = grad_input or grad_weight or (grad_bias and b is not None)
    work = np.empty(nb * V if N else 0, dtype)
    scratch = np.empty(core.get_threads() * V, dtype) if (z and want_grad and N) else None
    losses = np.empty(N, np.float64)
    lse = np.empty(N, dtype) if want_lse else None
    gX = np.empty((N, H), dtype) if grad_input else None
    gW = np.empty((V, H), dtype) if grad_weight else None
    gb = np.empty(V, np.float64) if (grad_bias and b is not None) else None
    with blas_pinned():
        bad, wsum, total = core.linear_ce(X, W, b, tt, cw, ign, eps, red, row_scale, z, work, scratch,
                                          losses, lse, gX, gW, gb)
    if bad >= 0:
        raise IndexError(f"target {int(tt[bad])} is out of bounds for {V} classes "
                         f"(at position {bad}; ignore_index={ign})")
    return Result(losses, wsum, total, lse, gX, gW, gb)


def linear_cross_entropy(input: ArrayLike, weight: ArrayLike, target: ArrayLike, bias: Optional[ArrayLike] = None,
                         *, class_weight: Optional[ArrayLike] = None, ignore_index: int = -100,
                         reduction: ReductionName = "mean", label_smoothing: float = 0.0,
                         chunk_size: Optional[int] = None, z_loss: float = 0.0,
                         return_lse: bool = False) -> Union[Loss, Tuple[Loss, np.ndarray]]:
    """Cross-entropy of the logits ``input @ weight.T + bias``, without building them.

    Parameters
    ----------
    input : ndarray, float32 or float64, shape (H,) or (N, H)
        Features (the last hidden state).
    weight : ndarray of the input's dtype, shape (V, H)
        The classifier / LM-head weight (``torch.nn.Linear(H, V).weight``).
    target : int ndarray, shape () or (N,)
        Class indices in ``[0, V)``; other values than `ignore_index` raise IndexError.
    bias : ndarray of shape (V,), optional
        Added to the logits.
    class_weight : ndarray of shape (V,), optional
        Per-class rescaling weights (``weight=`` of ``torch.nn.functional.cross_entropy``).
    ignore_index : int, default -100
        Target value that contributes neither loss nor gradient.
    reduction : {'mean', 'sum', 'none'}
        'mean' divides by the summed class weights of the non-ignored
        targets (their number without `class_weight`); all ignored gives NaN.
    label_smoothing : float in [0, 1]
        Mixes the target with the uniform distribution (torch semantics).
    chunk_size : int, optional
        Rows per block.  Default: as many as fit a 48 MiB logits workspace,
        but at least 256 (so the workspace is ``max(48 MiB, 256 * V * itemsize)``).
        Larger blocks make the GEMMs faster (measured at N=4096, H=512,
        V=32000, 1 thread: 256 rows 3.35 s, 384 rows 3.10 s, 1024 rows
        2.95 s of CPU time) at the cost of memory.
    z_loss : float >= 0, default 0
        Adds ``z_loss * logsumexp(logits_i) ** 2`` to the loss of every
        non-ignored row (PaLM's auxiliary z-loss); 'mean' divides it by the
        same denominator as the cross-entropy.
    return_lse : bool, default False
        Also return the per-row logsumexp of the logits (shape of `target`).

    Returns
    -------
    loss : scalar of the input's dtype, or an array of the target's shape for
        ``reduction='none'``.  With ``return_lse`` the pair ``(loss, lse)``.

    Raises
    ------
    IndexError
        A target outside ``[0, V)`` that is not `ignore_index`.
    TypeError
        Inputs that are not float32/float64, an `input` and `weight` of
        different dtypes, or targets that are not integers.
    ValueError
        Shapes that do not match (`input`, `weight`, `bias`, `target`,
        `class_weight`), an unknown `reduction`, a `label_smoothing` outside
        [0, 1], a negative `z_loss`, or a `chunk_size` below 1.

    Notes
    -----
    Per-row losses and batch sums are accumulated in float64.  Without
    gradients only one GEMM per block runs.

    Examples
    --------
    >>> import numpy as np, fastlog
    >>> rng = np.random.default_rng(0)
    >>> h, W = rng.standard_normal((4, 3)), rng.standard_normal((5, 3))
    >>> t = np.array([0, 4, 2, 1])
    >>> loss = fastlog.linear_cross_entropy(h, W, t)
    >>> bool(np.isclose(loss, fastlog.cross_entropy(h @ W.T, t)))
    True
    >>> loss, lse = fastlog.linear_cross_entropy(h, W, t, reduction="none", return_lse=True)
    >>> loss.shape, lse.shape
    ((4,), (4,))
    """
    p = _prepare(input, weight, target, bias, class_weight, ignore_index, reduction, label_smoothing,
                 chunk_size, z_loss)
    r = _run(p, grad_input=False, grad_weight=False, grad_bias=False, want_lse=return_lse)
    loss = finish(r.losses, r.total, r.wsum, p.red, p.dtype, p.batch_shape, smoothing=p.eps)
    if return_lse:
        return loss, r.lse.reshape(p.batch_shape)
    return loss


def linear_cross_entropy_and_grad(input: ArrayLike, weight: ArrayLike, target: ArrayLike,
                                  bias: Optional[ArrayLike] = None, *, class_weight: Optional[ArrayLike] = None,
                                  ignore_index: int = -100, reduction: ReductionName = "mean",
                                  label_smoothing: float = 0.0, chunk_size: Optional[int] = None,
                                  z_loss: float = 0.0, return_lse: bool = False) -> tuple:
    """:func:`linear_cross_entropy` and its gradients, in one blocked pass.

    Parameters
    ----------
    input, weight, target, bias, class_weight, ignore_index, reduction, label_smoothing, chunk_size, z_loss, return_lse
        As in :func:`linear_cross_entropy`.

    Returns
    -------
    loss, grad_input, grad_weight, grad_bias
        The loss as in :func:`linear_cross_entropy`, and the gradients of it
        (of the sum of the losses for ``reduction='none'``) with respect to
        `input` (input's shape), `weight` (V, H) and `bias` (V,; None when no
        bias is given).  With ``return_lse`` the per-row logsumexp is appended
        as a fifth value.

    Raises
    ------
    IndexError, TypeError, ValueError
        As :func:`linear_cross_entropy`.

    Notes
    -----
    Three GEMMs per block of rows (logits, ``grad_input`` and the
    accumulation of ``grad_weight``); the memory beyond the inputs and the
    gradients is the block workspace.  ``grad_bias`` is accumulated in
    float64.

    Examples
    --------
    >>> import numpy as np, fastlog
    >>> rng = np.random.default_rng(0)
    >>> h, W, b = rng.standard_normal((4, 3)), rng.standard_normal((5, 3)), np.zeros(5)
    >>> t = np.array([0, 4, 2, 1])
    >>> loss, g_h, g_W, g_b = fastlog.linear_cross_entropy_and_grad(h, W, t, b)
    >>> g_h.shape, g_W.shape, g_b.shape
    ((4, 3), (5, 3), (5,))
    >>> _, g_logits = fastlog.cross_entropy_and_grad(h @ W.T + b, t)
    >>> bool(np.allclose(g_h, g_logits @ W) and np.allclose(g_W, g_logits.T @ h))
    True
    """
    p = _prepare(input, weight, target, bias, class_weight, ignore_index, reduction, label_smoothing,
                 chunk_size, z_loss)
    r = _run(p, want_lse=return_lse)
    loss = finish(r.losses, r.total, r.wsum, p.red, p.dtype, p.batch_shape, smoothing=p.eps)
    gX = r.gX.reshape(p.batch_shape + (p.X.shape[1],))
    gb = r.gb.astype(p.dtype) if r.gb is not None else None
    if return_lse:
        return loss, gX, r.gW, gb, r.lse.reshape(p.batch_shape)
    return loss, gX, r.gW, gb
