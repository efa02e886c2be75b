"""Out-of-core losses and softmax on Dask arrays, computed by fastlog's kernels per block.

``import fastlog.dask`` (needs ``dask[array]``; ``import fastlog`` never imports
dask).  Every function takes dask arrays (NumPy arrays are wrapped) and returns
a lazy dask array; call ``.compute()`` on the threaded scheduler or on a
``dask.distributed`` cluster.

Losses (``torch.nn.functional`` semantics, as :mod:`fastlog`'s NumPy API):
:func:`cross_entropy`, :func:`nll_loss`, :func:`binary_cross_entropy_with_logits`,
:func:`kl_div`.

* ``reduction='mean'``/``'sum'``: each block of rows gives one pair
  ``(sum of the block's losses, its weight)`` -- the weight being the summed
  class weights of its non-ignored targets (their number without weights, the
  number of positions for probability targets, of elements for BCE / KL) --
  and the pairs are summed by Dask's tree reduction (``split_every``).  The
  mean is the total loss over the total weight, so it equals the in-memory
  answer for any chunking (up to float rounding: the block sums come back in
  the input's dtype, half an ulp each).  Averaging per-block means -- what
  dask-ml's ``log_loss`` does -- is wrong for unequal blocks and is not done.
* ``reduction='none'`` stays lazy: one fastlog call per block of rows.

Layout: the losses with a class axis need whole rows in a block, so the input
is rechunked to a single chunk along every axis but the first (a no-op for the
usual ``(N, C)`` array chunked by rows), and the target is rechunked to the
input's row chunks (misaligned row chunks are aligned, never paired wrongly).
Targets out of range raise ``IndexError`` when computed; shapes that do not
match raise ``ValueError`` at once.

Softmax family (SciPy semantics): :func:`logsumexp` is a tree reduction whose
chunk, combine and aggregate steps are all fastlog's logsumexp (the logsumexp
of partial logsumexps is the logsumexp), so the reduced axes may be split
across chunks; :func:`log_softmax` / :func:`softmax` run fastlog per block when
the axes are whole in each block and otherwise subtract the reduced logsumexp
(``x - lse`` / ``exp(x - lse)``, lazily, without rechunking).

Threads: each task runs fastlog with ``threads`` threads (default 1).  Dask
runs one task per worker thread, so a worker started with T threads runs at
most T fastlog threads -- fastlog's threads follow Dask's threads per worker
instead of multiplying them.  The count is set when the first task of a
process starts and restored when the last one ends (fastlog's thread count is
process-wide).  Pass ``threads=k`` to let every task use k threads (e.g. a
single-threaded worker that owns several cores).
"""
import operator
import threading
from contextlib import contextmanager
from functools import partial
from typing import Any, Optional

import dask.array as da
import numpy as np

import fastlog

from ._enums import Reduction
from ._losses._reduce import finish
from ._typing import ArrayLike, Axis, KLReductionName, ReductionName
from ._validation import KL_REDUCTIONS, positive_int, reduction_code, smoothing_param

__all__ = ["cross_entropy", "nll_loss", "binary_cross_entropy_with_logits", "kl_div",
           "log_softmax", "softmax", "logsumexp"]


# ------------------------------------------------------------------ threads --
_lock = threading.Lock()
_depth = 0
_saved = None
#: fastlog's thread count seen by the last task run in this process (for tests / diagnostics).
last_task_threads = None


@contextmanager
def _task_threads(n):
    global _depth, _saved, last_task_threads
    with _lock:
        if _depth == 0:
            _saved = fastlog.get_num_threads()
            fastlog.set_num_threads(n)
        _depth += 1
        last_task_threads = fastlog.get_num_threads()
    try:
        yield
    finally:
        with _lock:
            _depth -= 1
            if _depth == 0:
                fastlog.set_num_threads(_saved)


def _threads_param(threads):
    return 1 if threads is None else positive_int(threads, "threads", maximum=1 << 16)


# ------------------------------------------------------------------- layout --
def _as_dask(a, name):
    if isinstance(a, da.Array):
        return a
    if a is None:
        return None
    arr = np.asarray(a)
    return da.from_array(arr, chunks=arr.shape or ())


def _float_dtype(dt, name):
    dt = np.dtype(dt)
    if dt not in (np.dtype(np.float32), np.dtype(np.float64)):
        raise TypeError(f"{name} must be a float32 or float64 array, got dtype {dt}")
    return dt


def _rows_layout(x):
    """x rechunked so that only the first axis is split."""
    if x.ndim >= 2 and any(len(c) > 1 for c in x.chunks[1:]):
        x = x.rechunk({i: -1 for i in range(1, x.ndim)})
    return x


def _letters(n, start=2):
    return "".join("abcdefghmnopqrstuvwxyz"[start - 2 + k] for k in range(n))


def _reduce_block(parts, red, dtype, count_override=None, smoothing=0.0):
    total, denom = float(parts[0]), float(parts[1])
    if count_override is not None:
        denom = count_override
    return np.asarray(finish(None, total, denom, red, dtype, smoothing=smoothing))


def _finish(partials, red, dtype, split_every, count_override=None, smoothing=0.0):
    """Tree-sum the (nblocks, 2) partial pairs (block totals, denominators) and
    reduce them as every face does (fastlog._losses._reduce): a lazy 0-d array."""
    tot = partials.sum(axis=0, split_every=split_every)
    return tot.map_blocks(_reduce_block, red, dtype, count_override, smoothing, dtype=dtype, drop_axis=0,
                          chunks=())


# ------------------------------------------------------- class-axis losses --
def _index_block_weight(tb, weight, ignore_index):
    valid = tb != ignore_index
    if weight is None:
        return float(np.count_nonzero(valid))
    tv = tb[valid]
    if tv.size and (tv.min() < 0 or tv.max() >= weight.shape[0]):
        return 0.0   # fastlog's call on this block has already raised the IndexError
    return float(np.sum(weight[tv], dtype=np.float64))


def _ce_pair(xb, tb, weight, ignore_index, eps, prob, threads, fn):
    with _task_threads(threads):
        if fn == "ce":
            s = fastlog.cross_entropy(xb, tb, weight, ignore_index, "sum", eps)
        else:
            s = fastlog.nll_loss(xb, tb, weight, ignore_index, "sum")
    if prob:
        d = float(tb.size // max(xb.shape[1], 1)) if xb.ndim >= 2 else 1.0
    else:
        d = _index_block_weight(tb, weight, ignore_index)
    # Block shape (1, 2, 1, ...): the output keeps every input index (see _class_loss).
    return np.array([float(s), d], np.float64).reshape((1, 2) + (1,) * (xb.ndim - 2))


def _ce_none(xb, tb, weight, ignore_index, eps, threads, fn):
    with _task_threads(threads):
        if fn == "ce":
            r = fastlog.cross_entropy(xb, tb, weight, ignore_index, "none", eps)
        else:
            r = fastlog.nll_loss(xb, tb, weight, ignore_index, "none")
    return np.expand_dims(r, 1)   # (rows, 1, d...): the class index kept, size 1


def _class_loss(fn, input, target, weight, ignore_index, reduction, eps, threads, split_every):
    x = _as_dask(input, "input")
    dtype = _float_dtype(x.dtype, "input")
    red = reduction_code(reduction)
    threads = _threads_param(threads)
    if isinstance(ignore_index, bool) or not isinstance(ignore_index, (int, np.integer)):
        raise TypeError(f"ignore_index must be an integer, got {type(ignore_index).__name__}")
    ignore_index = int(ignore_index)
    if x.ndim == 0:
        raise ValueError("input must have shape (C,), (N, C) or (N, C, d1, ...), got a 0-d array")
    if x.ndim == 1:
        x = x[None]
        t = _as_dask(target, "target")
        t = t[None] if (t.ndim == 0 or (t.dtype.kind == "f" and t.ndim == 1)) else t
        squeeze = True
    else:
        t = _as_dask(target, "target")
        squeeze = False
    x = _rows_layout(x)
    C = x.shape[1]
    w = None
    if weight is not None:
        w = np.ascontiguousarray(np.asarray(weight), dtype=dtype)
        if w.shape != (C,):
            raise ValueError(f"weight must be a 1-D array of length {C} (the number of classes), "
                             f"got shape {w.shape}")
    prob = t.dtype.kind == "f"
    extra = _letters(x.ndim - 2)
    xi = "ij" + extra
    if prob:
        if fn != "ce":
            raise TypeError(f"target has floating dtype {t.dtype}: nll_loss takes integer class indices")
        if t.shape != x.shape:
            raise ValueError(f"target has shape {t.shape}; probability targets must have the input's "
                             f"shape {x.shape}")
        t = t.astype(dtype).rechunk(x.chunks)
        ti = xi
    else:
        if t.dtype.kind not in "iu":
            raise TypeError(f"target must hold integer class indices, got dtype {t.dtype}")
        bshape = (x.shape[0],) + x.shape[2:]
        if t.shape != bshape:
            raise ValueError(f"target has shape {t.shape}, expected {bshape} for class indices")
        # Align the target's row chunks with the input's (never pair rows with other rows' targets).
        t = t.rechunk((x.chunks[0],) + tuple((n,) for n in x.shape[2:]))
        ti = "i" + extra
    # The outputs keep every index of the input (the class index j with its size adjusted) so
    # that no index is contracted: a contracted index makes Dask concatenate -- copy -- the
    # input block before the call, even when it is the only block along that index.
    if red == Reduction.NONE:
        out = da.blockwise(_ce_none, xi, x, xi, t, ti, weight=w, ignore_index=ignore_index, eps=eps,
                           threads=threads, fn=fn, adjust_chunks={"j": 1}, dtype=dtype)
        out = out[:, 0]
        return out[0] if squeeze else out
    partials = da.blockwise(_ce_pair, xi, x, xi, t, ti, weight=w, ignore_index=ignore_index, eps=eps,
                            prob=prob, threads=threads, fn=fn,
                            adjust_chunks=dict({"i": 1, "j": 2}, **{c: 1 for c in extra}),
                            dtype=np.float64)
    partials = partials[(slice(None), slice(None)) + (0,) * len(extra)]
    return _finish(partials, red, dtype, split_every, smoothing=eps)


def cross_entropy(input: Any, target: Any, weight: Optional[ArrayLike] = None, ignore_index: int = -100,
                  reduction: ReductionName = "mean", label_smoothing: float = 0.0, *,
                  threads: Optional[int] = None, split_every: Optional[int] = None) -> "da.Array":
    """:func:`fastlog.cross_entropy` on a dask array of logits (lazy).

    `input` ``(C,)``, ``(N, C)`` or ``(N, C, d1, ...)`` chunked along the rows;
    `target` class indices of shape ``(N, d1, ...)`` or probabilities of the
    input's shape (a dask or NumPy array; rechunked to the input's rows).
    Parameters as :func:`fastlog.cross_entropy`; ``threads`` (fastlog threads
    per task, default 1) and ``split_every`` (fan-in of the tree reduction) as
    described in the module docstring.  Returns a 0-d dask array (or one of
    the target's shape for ``reduction='none'``).

    Parameters
    ----------
    input : dask or NumPy array, float32 or float64
        Logits ``(C,)``, ``(N, C)`` or ``(N, C, d1, ...)``, chunked along the rows.
    target : dask or NumPy array
        Class indices ``(N, d1, ...)`` or probabilities of the input's shape.
    weight, ignore_index, reduction, label_smoothing
        As in :func:`fastlog.cross_entropy`.
    threads : int, optional, keyword-only
        fastlog threads per task (default 1; see the module docstring).
    split_every : int, optional, keyword-only
        Fan-in of the tree reduction (Dask's default when None).

    Returns
    -------
    dask.array.Array
        Lazy: a 0-d array for a reduced loss, the per-position losses for
        ``reduction='none'``; ``.compute()`` evaluates it, one fastlog call per
        block of rows.

    Raises
    ------
    ValueError
        At the call: shapes that do not match, an unknown `reduction`, a
        `label_smoothing` outside [0, 1], or a `threads` below 1.
    TypeError
        At the call: an input that is not float32 / float64, or targets that are
        not integers.
    IndexError
        When computed: a class-index target outside ``[0, C)`` that is not
        `ignore_index`.

    Examples
    --------
    >>> import numpy as np, dask.array as da, fastlog, fastlog.dask
    >>> x = da.from_array(np.array([[1.0, 2.0, 3.0], [1.0, 1.0, 1.0], [0.0, 5.0, 0.0]]), chunks=(2, 3))
    >>> t = np.array([2, 0, 1])
    >>> loss = fastlog.dask.cross_entropy(x, t)          # lazy: one fastlog call per block of rows
    >>> round(float(loss.compute(scheduler="synchronous")), 4)
    0.5065
    >>> round(float(fastlog.cross_entropy(x.compute(), t)), 4)      # the in-memory answer
    0.5065
    """
    eps = smoothing_param(label_smoothing)
    return _class_loss("ce", input, target, weight, ignore_index, reduction, eps, threads, split_every)


def nll_loss(input: Any, target: Any, weight: Optional[ArrayLike] = None, ignore_index: int = -100,
             reduction: ReductionName = "mean", *, threads: Optional[int] = None,
             split_every: Optional[int] = None) -> "da.Array":
    """:func:`fastlog.nll_loss` on a dask array of log-probabilities (lazy); see :func:`cross_entropy`.

    Parameters
    ----------
    input : dask or NumPy array, float32 or float64
        Log-probabilities ``(C,)``, ``(N, C)`` or ``(N, C, d1, ...)``, chunked along the rows.
    target : dask or NumPy array of int
        Class indices ``(N, d1, ...)``.
    weight, ignore_index, reduction
        As in :func:`fastlog.nll_loss`.
    threads : int, optional, keyword-only
        fastlog threads per task (default 1; see the module docstring).
    split_every : int, optional, keyword-only
        Fan-in of the tree reduction (Dask's default when None).

    Returns
    -------
    dask.array.Array
        Lazy: a 0-d array for a reduced loss, the per-position losses for
        ``reduction='none'``; ``.compute()`` evaluates it, one fastlog call per
        block of rows.

    Raises
    ------
    ValueError
        At the call: shapes that do not match, an unknown `reduction`, or a `threads` below 1.
    TypeError
        At the call: an input that is not float32 / float64, or targets that are
        not integers.
    IndexError
        When computed: a class-index target outside ``[0, C)`` that is not
        `ignore_index`.

    Examples
    --------
    >>> import numpy as np, dask.array as da, fastlog.dask
    >>> logp = da.from_array(np.log(np.array([[0.5, 0.25, 0.25], [0.1, 0.1, 0.8]])), chunks=(1, 3))
    >>> round(float(fastlog.dask.nll_loss(logp, np.array([0, 2])).compute(scheduler="synchronous")), 4)
    0.4581
    """
    return _class_loss("nll", input, target, weight, ignore_index, reduction, 0.0, threads, split_every)


# ------------------------------------------------------ elementwise losses --
def _bce_pair(xb, tb, wb, pwb, threads):
    with _task_threads(threads):
        s = fastlog.binary_cross_entropy_with_logits(xb, tb, wb, "sum", pwb)
    return np.array([float(s), float(xb.size)], np.float64).reshape((1,) * (xb.ndim - 1) + (1, 2))


def _bce_none(xb, tb, wb, pwb, threads):
    with _task_threads(threads):
        return fastlog.binary_cross_entropy_with_logits(xb, tb, wb, "none", pwb)


def _broadcast_param(v, x, dtype, name):
    if v is None:
        return None
    a = _as_dask(v, name).astype(dtype)
    try:
        b = da.broadcast_to(a, x.shape)
    except ValueError:
        raise ValueError(f"{name} of shape {a.shape} does not broadcast to the input's shape "
                         f"{x.shape}") from None
    return b.rechunk(x.chunks)


def binary_cross_entropy_with_logits(input: Any, target: Any, weight: Optional[ArrayLike] = None,
                                     reduction: ReductionName = "mean", pos_weight: Optional[ArrayLike] = None,
                                     *, threads: Optional[int] = None,
                                     split_every: Optional[int] = None) -> "da.Array":
    """:func:`fastlog.binary_cross_entropy_with_logits` on dask arrays (lazy).

    Any chunking; `target` is rechunked to the input's chunks and `weight` /
    `pos_weight` are broadcast against the input (NumPy rules: pos_weight
    along the last axis).  'mean' divides by the number of elements.

    Parameters
    ----------
    input : dask or NumPy array, float32 or float64
        Logits, any shape and chunking.
    target : dask or NumPy array
        Targets in [0, 1], the input's shape.
    weight, reduction, pos_weight
        As in :func:`fastlog.binary_cross_entropy_with_logits`.
    threads : int, optional, keyword-only
        fastlog threads per task (default 1; see the module docstring).
    split_every : int, optional, keyword-only
        Fan-in of the tree reduction (Dask's default when None).

    Returns
    -------
    dask.array.Array
        Lazy: a 0-d array for a reduced loss, the per-position losses for
        ``reduction='none'``; ``.compute()`` evaluates it, one fastlog call per
        block.

    Raises
    ------
    ValueError
        At the call: a target, `weight` or `pos_weight` whose shape does not fit
        the input, an unknown `reduction`, or a `threads` below 1.
    TypeError
        At the call: an input that is not float32 / float64.

    Examples
    --------
    >>> import numpy as np, dask.array as da, fastlog.dask
    >>> z = da.from_array(np.array([0.0, 2.0, -1.0, 3.0]), chunks=2)
    >>> y = np.array([1.0, 1.0, 0.0, 0.0])
    >>> fastlog.dask.binary_cross_entropy_with_logits(z, y, reduction="none").compute(scheduler="synchronous").round(4)
    array([0.6931, 0.1269, 0.3133, 3.0486])
    """
    x = _as_dask(input, "input")
    dtype = _float_dtype(x.dtype, "input")
    red = reduction_code(reduction)
    threads = _threads_param(threads)
    t = _as_dask(target, "target")
    if t.shape != x.shape:
        raise ValueError(f"target size {t.shape} must be the same as input size {x.shape}")
    if x.ndim == 0:
        x, t = x.reshape(1), t.reshape(1)
    t = t.astype(dtype).rechunk(x.chunks)
    w = _broadcast_param(weight, x, dtype, "weight")
    pw = _broadcast_param(pos_weight, x, dtype, "pos_weight")
    idx = _letters(x.ndim)
    if red == Reduction.NONE:
        out = da.blockwise(_bce_none, idx, x, idx, t, idx, w, None if w is None else idx,
                           pw, None if pw is None else idx, threads=threads, dtype=dtype)
        return out.reshape(np.shape(input)) if np.ndim(input) == 0 else out
    pairs = da.blockwise(_bce_pair, idx + "k", x, idx, t, idx, w, None if w is None else idx,
                         pw, None if pw is None else idx, threads=threads, new_axes={"k": 2},
                         adjust_chunks={c: 1 for c in idx}, dtype=np.float64).reshape(-1, 2)
    return _finish(pairs, red, dtype, split_every)


def _kl_pair(xb, tb, log_target, threads):
    with _task_threads(threads):
        s = fastlog.kl_div(xb, tb, "sum", log_target)
    return np.array([float(s), float(xb.size)], np.float64).reshape((1,) * xb.ndim + (2,))


def _kl_none(xb, tb, log_target, threads):
    with _task_threads(threads):
        return fastlog.kl_div(xb, tb, "none", log_target)


def kl_div(input: Any, target: Any, reduction: KLReductionName = "mean", log_target: bool = False, *,
           threads: Optional[int] = None, split_every: Optional[int] = None) -> "da.Array":
    """:func:`fastlog.kl_div` on dask arrays (lazy).

    `input` and `target` broadcast against each other (any chunking; the
    target is rechunked to the broadcast input's chunks).  'mean' divides by
    the number of elements, 'batchmean' by the first dimension.

    Parameters
    ----------
    input : dask or NumPy array, float32 or float64
        Log-probabilities, batch first.
    target : dask or NumPy array
        Probabilities (log-probabilities if `log_target`).
    reduction, log_target
        As in :func:`fastlog.kl_div`.
    threads : int, optional, keyword-only
        fastlog threads per task (default 1; see the module docstring).
    split_every : int, optional, keyword-only
        Fan-in of the tree reduction (Dask's default when None).

    Returns
    -------
    dask.array.Array
        Lazy: a 0-d array for a reduced loss, the per-position losses for
        ``reduction='none'``; ``.compute()`` evaluates it, one fastlog call per
        block.

    Raises
    ------
    ValueError
        At the call: a target that does not broadcast against the input, an
        unknown `reduction`, or a `threads` below 1.
    TypeError
        At the call: an input that is not float32 / float64.

    Examples
    --------
    >>> import numpy as np, dask.array as da, fastlog.dask
    >>> logq = da.from_array(np.log(np.array([[0.5, 0.5], [0.25, 0.75]])), chunks=(1, 2))
    >>> p = np.array([[0.5, 0.5], [0.5, 0.5]])
    >>> round(float(fastlog.dask.kl_div(logq, p, reduction="batchmean").compute(scheduler="synchronous")), 4)
    0.0719
    """
    x = _as_dask(input, "input")
    t = _as_dask(target, "target")
    red = reduction_code(reduction, KL_REDUCTIONS)
    threads = _threads_param(threads)
    for a, name in ((x, "input"), (t, "target")):
        if a.dtype.kind not in "fiub":
            raise TypeError(f"{name} must be a real numeric array, got dtype {a.dtype}")
    _float_dtype(x.dtype, "input")
    dtype = np.result_type(x.dtype, t.dtype if t.dtype.kind == "f" else x.dtype)
    try:
        shape = np.broadcast_shapes(x.shape, t.shape)
    except ValueError:
        raise ValueError(f"target of shape {t.shape} does not broadcast against input of shape "
                         f"{x.shape}") from None
    if shape == ():
        shape = (1,)
    x = da.broadcast_to(x.astype(dtype), shape)
    t = da.broadcast_to(t.astype(dtype), shape).rechunk(x.chunks)
    idx = _letters(len(shape))
    if red == Reduction.NONE:
        out = da.blockwise(_kl_none, idx, x, idx, t, idx, log_target=log_target, threads=threads,
                           dtype=dtype)
        return out.reshape(np.broadcast_shapes(np.shape(input), np.shape(target)))
    pairs = da.blockwise(_kl_pair, idx + "k", x, idx, t, idx, log_target=log_target, threads=threads,
                         new_axes={"k": 2}, adjust_chunks={c: 1 for c in idx},
                         dtype=np.float64).reshape(-1, 2)
    if red == Reduction.BATCHMEAN:
        n = np.broadcast_shapes(np.shape(input), np.shape(target))
        return _finish(pairs, red, dtype, split_every, count_override=float(n[0] if len(n) else 1))
    return _finish(pairs, red, dtype, split_every)


# ----------------------------------------------------------- softmax family --
def _result_dtype(dt):
    return np.dtype(np.float32) if np.dtype(dt) == np.float32 else np.dtype(np.float64)


def _lse_step(x, axis=None, keepdims=False, *, threads=1, final=False):
    with _task_threads(threads):
        return fastlog.logsumexp(x, axis=axis, keepdims=keepdims if final else True)


def _axes(axis, ndim):
    """The sorted, non-negative axes; an axis out of range is NumPy's AxisError (as on the NumPy face),
    a repeated one a ValueError -- never wrapped around."""
    if axis is None:
        return tuple(range(ndim))
    out = []
    for a in (axis if isinstance(axis, (tuple, list)) else (axis,)):
        a = operator.index(a)
        if not -ndim <= a < ndim:
            raise np.exceptions.AxisError(a, ndim, "axis")
        out.append(a % ndim)
    if len(set(out)) != len(out):
        raise ValueError(f"axis holds a repeated axis: {axis!r}")
    return tuple(sorted(out))


def logsumexp(a: Any, axis: Axis = None, keepdims: bool = False, *, threads: Optional[int] = None,
              split_every: Optional[int] = None) -> "da.Array":
    """``scipy.special.logsumexp`` (without ``b`` / ``return_sign``) on a dask array (lazy).

    A tree reduction: fastlog's logsumexp of each block, of groups of those
    partial results, and of the last group.  The reduced axes may be split
    across chunks.

    Parameters
    ----------
    a : dask or NumPy array, float32 or float64
        Input values, any chunking.
    axis : None, int or tuple of ints
        Axes to reduce (None: all); they may be split across chunks.
    keepdims : bool, default False
        Keep the reduced axes with length 1.
    threads : int, optional, keyword-only
        fastlog threads per task (default 1; see the module docstring).
    split_every : int, optional, keyword-only
        Fan-in of the tree reduction (Dask's default when None).

    Returns
    -------
    dask.array.Array
        Lazy, reduced over `axis` (kept as length 1 with `keepdims`).

    Raises
    ------
    numpy.exceptions.AxisError
        At the call: an axis out of range.
    ValueError
        At the call: a repeated axis.
    TypeError
        When computed: an input of a dtype fastlog does not compute in.

    Examples
    --------
    >>> import numpy as np, dask.array as da, fastlog.dask
    >>> a = da.from_array(np.array([[1.0, 2.0, 3.0, 4.0], [0.0, 0.0, 0.0, 0.0]]), chunks=(1, 2))
    >>> fastlog.dask.logsumexp(a, axis=1).compute(scheduler="synchronous").round(4)
    array([4.4402, 1.3863])
    """
    x = _as_dask(a, "a")
    threads = _threads_param(threads)
    if x.ndim == 0:
        x = x.reshape(1)
    axes = _axes(axis, x.ndim)
    dt = _result_dtype(x.dtype)
    return da.reduction(x, partial(_lse_step, threads=threads), partial(_lse_step, threads=threads,
                                                                        final=True),
                        combine=partial(_lse_step, threads=threads), axis=axes, keepdims=keepdims,
                        dtype=dt, split_every=split_every, concatenate=True)


def _unary_block(xb, op, axis, threads):
    with _task_threads(threads):
        return op(xb, axis=axis)


def _split_along(x, axes):
    return any(len(x.chunks[ax]) > 1 for ax in axes)


def log_softmax(x: Any, axis: Axis = None, *, threads: Optional[int] = None) -> "da.Array":
    """``scipy.special.log_softmax`` on a dask array (lazy; see the module docstring).

    Parameters
    ----------
    x : dask or NumPy array, float32 or float64
        Input values, any chunking.
    axis : None, int or tuple of ints
        The axes to normalise over (None: all).
    threads : int, optional, keyword-only
        fastlog threads per task (default 1; see the module docstring).

    Returns
    -------
    dask.array.Array
        Lazy, of the input's shape.

    Raises
    ------
    numpy.exceptions.AxisError
        At the call: an axis out of range.
    ValueError
        At the call: a repeated axis.
    TypeError
        When computed: an input of a dtype fastlog does not compute in.

    Examples
    --------
    >>> import numpy as np, dask.array as da, fastlog.dask
    >>> x = da.from_array(np.array([[1.0, 2.0, 3.0], [0.0, 0.0, 0.0]]), chunks=(1, 3))
    >>> fastlog.dask.log_softmax(x, axis=1).compute(scheduler="synchronous").round(4)
    array([[-2.4076, -1.4076, -0.4076],
           [-1.0986, -1.0986, -1.0986]])
    """
    a = _as_dask(x, "x")
    th = _threads_param(threads)
    dt = _result_dtype(a.dtype)
    if a.ndim == 0:
        return a.astype(dt) * 0
    axes = _axes(axis, a.ndim)
    ax = axes if axis is None or isinstance(axis, (tuple, list)) else axes[0]
    if not _split_along(a, axes):
        return a.map_blocks(_unary_block, fastlog.log_softmax, ax, th, dtype=dt)
    lse = logsumexp(a, axis=axes, keepdims=True, threads=th)
    return a.astype(dt) - lse


def _softmax_from_lse(xb, lb):
    with np.errstate(invalid="ignore", over="ignore"):
        r = np.exp(xb - lb)
    return np.where(np.isfinite(lb), r, np.asarray(np.nan, r.dtype))


def softmax(x: Any, axis: Axis = None, *, threads: Optional[int] = None) -> "da.Array":
    """``scipy.special.softmax`` on a dask array (lazy; see the module docstring).

    Parameters
    ----------
    x : dask or NumPy array, float32 or float64
        Input values, any chunking.
    axis : None, int or tuple of ints
        The axes to normalise over (None: all).
    threads : int, optional, keyword-only
        fastlog threads per task (default 1; see the module docstring).

    Returns
    -------
    dask.array.Array
        Lazy, of the input's shape.

    Raises
    ------
    numpy.exceptions.AxisError
        At the call: an axis out of range.
    ValueError
        At the call: a repeated axis.
    TypeError
        When computed: an input of a dtype fastlog does not compute in.

    Examples
    --------
    >>> import numpy as np, dask.array as da, fastlog.dask
    >>> x = da.from_array(np.array([[1.0, 2.0, 3.0], [0.0, 0.0, 0.0]]), chunks=(2, 2))   # rows split
    >>> fastlog.dask.softmax(x, axis=1).compute(scheduler="synchronous").round(4)
    array([[0.09  , 0.2447, 0.6652],
           [0.3333, 0.3333, 0.3333]])
    """
    a = _as_dask(x, "x")
    th = _threads_param(threads)
    dt = _result_dtype(a.dtype)
    if a.ndim == 0:
        return a.astype(dt) * 0 + 1
    axes = _axes(axis, a.ndim)
    ax = axes if axis is None or isinstance(axis, (tuple, list)) else axes[0]
    if not _split_along(a, axes):
        return a.map_blocks(_unary_block, fastlog.softmax, ax, th, dtype=dt)
    lse = logsumexp(a, axis=axes, keepdims=True, threads=th)
    return da.map_blocks(_softmax_from_lse, a.astype(dt), lse, dtype=dt)
