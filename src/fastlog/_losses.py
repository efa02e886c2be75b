"""Classification losses with ``torch.nn.functional`` semantics, on ndarrays.

Shapes follow torch: input ``(C,)``, ``(N, C)`` or ``(N, C, d1, ..., dk)``
with the class axis 1; class-index targets ``()``, ``(N,)`` or
``(N, d1, ..., dk)``; probability targets have the input's shape.

The ``*_and_grad`` calls return ``(loss, grad_input)`` from one pass over
the input: the kernel reads each row once, stores exp(x - max) straight into
the gradient buffer and scales it there while the row is in cache.
``grad_input`` is d(loss)/d(input); for ``reduction='none'`` it is the
gradient of the sum of the losses.  ``out=`` receives the gradient and may be
the input itself (no N x C allocation at all for a C-contiguous 2-D input).

Batch sums are accumulated in float64 in row order, so results are identical
for any thread count; the returned loss has the input's dtype, except that a
reduced loss of a float16/bfloat16 input is float32 (see ``_half.py``).
"""
import math

import numpy as np

from . import _half
from ._dispatch import core
from ._validation import (_F32, _F64, _I64, check_out, check_overlap, class_weight, float_array,
                          index_param, index_target, reduction_code, smoothing_param)

__all__ = ["cross_entropy", "cross_entropy_and_grad", "nll_loss", "nll_loss_and_grad",
           "binary_cross_entropy_with_logits", "binary_cross_entropy_with_logits_and_grad",
           "kl_div"]


# ----------------------------------------------------------------- layout --
class _Rows:
    """An input of shape (C,), (N, C) or (N, C, d...) seen as 2-D rows (M, C).

    `rows` is the input itself when it is already C-contiguous and 2-D (or 1-D);
    otherwise a private copy with the class axis moved last (`owned` True).
    """
    __slots__ = ("a", "rows", "C", "batch_shape", "owned")

    def __init__(self, x, name="input"):
        # Fast path first: a native float32/float64 ndarray (the per-call
        # overhead matters at N x C = 64 x 10).
        dt = x.dtype if type(x) is np.ndarray else None
        a = x if (dt is _F32 or dt is _F64) and x.flags.aligned else float_array(x, name, promote_int=False)
        nd = a.ndim
        if nd == 0:
            raise ValueError(f"{name} must have shape (C,), (N, C) or (N, C, d1, ...), got a 0-d array")
        shape = a.shape
        C = shape[0] if nd == 1 else shape[1]
        owned = False
        if nd <= 2:
            rows = a.reshape(1, C) if nd == 1 else a
            if not rows.flags.c_contiguous:
                rows = np.ascontiguousarray(rows)
                owned = True
            self.batch_shape = () if nd == 1 else (shape[0],)
        else:
            # Always a private copy: with d1*...*dk == 1 (or C == 1) the moved
            # view is already C-contiguous, and ascontiguousarray would hand back
            # the input itself, which the kernels then overwrite with the gradient.
            rows = np.array(np.moveaxis(a, 1, -1), order="C").reshape(-1, C)
            owned = True
            self.batch_shape = (shape[0],) + shape[2:]
        self.a, self.rows, self.C, self.owned = a, rows, C, owned

    def same_layout(self, t, name):
        """A probability target of the input's shape, laid out like `rows`."""
        a = self.a
        if t.shape != a.shape:
            raise ValueError(f"{name} has shape {t.shape}; probability targets must have the "
                             f"input's shape {a.shape}")
        t = t.astype(a.dtype, copy=False)
        if not t.flags.aligned:
            t = t.copy()
        if a.ndim <= 2:
            return np.ascontiguousarray(t).reshape(self.rows.shape)
        return np.ascontiguousarray(np.moveaxis(t, 1, -1)).reshape(self.rows.shape)

    def grad_buffer(self, out):
        """Where the kernel writes the gradient (rows layout), honouring `out`."""
        a = self.a
        if out is not None:
            if not (type(out) is np.ndarray and out.dtype is a.dtype and out.shape == a.shape
                    and out.flags.writeable and out.flags.aligned):
                check_out(out, a.shape, a.dtype)
            if a.ndim <= 2 and out.flags.c_contiguous:
                return out if a.ndim == 2 else out.reshape(self.rows.shape)
        # The private copy can take the gradient in place.
        return self.rows if self.owned else np.empty(self.rows.shape, a.dtype)

    def finish_grad(self, g, out):
        """The gradient in the input's layout (into `out` if given)."""
        a = self.a
        if out is not None and a.ndim <= 2 and out.flags.c_contiguous:
            return out
        if a.ndim <= 2:
            res = g.reshape(a.shape)
        else:
            res = np.moveaxis(g.reshape(self.batch_shape + (self.C,)), -1, 1)
        if out is None:
            return np.ascontiguousarray(res) if a.ndim > 2 else res
        out[...] = res
        return out


_I64_LIM = 2**63


def _ratio(total, denom):
    """total / denom with IEEE results for denom == 0 (0/0 -> nan, as torch)."""
    if denom:
        return total / denom
    if total != total or total == 0:
        return math.nan
    return math.copysign(math.inf, total)


def _exact_total(terms):
    """The sum of float64 `terms` without intermediate overflow: correctly rounded
    (+-inf only when the exact sum overflows), +-inf if a term is, NaN if one is
    NaN or both infinities occur.  For a batch total that came out non-finite: the
    kernels' row-order sums of terms near the float64 limits can overflow (or give
    inf - inf = NaN) although the exact total is finite."""
    terms = np.asarray(terms, np.float64).reshape(-1)
    if not np.isfinite(terms).all():
        if np.isnan(terms).any():
            return math.nan
        pos, neg = bool((terms == math.inf).any()), bool((terms == -math.inf).any())
        return math.nan if pos and neg else (math.inf if pos else -math.inf)
    # Scaling by a power of two is exact (bar subnormals, far below such a total);
    # fsum is exact and correctly rounded; scaling back overflows iff the sum does.
    return math.fsum((terms * 2.0**-64).tolist()) * 2.0**64


def _finish_loss(losses, total, denom, red, dtype, batch_shape, eps=0.0):
    if red == 0:
        v = losses.astype(dtype).reshape(batch_shape)
        return v[()] if v.ndim == 0 else v
    if not math.isfinite(total):
        total = _exact_total(losses)
    if red == 1 and eps and not denom:
        # torch: a smoothed 'mean' with zero total target weight is NaN (its NLL
        # part is 0/0), not smoothing_total/0 = inf
        total = math.nan
    return _half.loss_dtype(dtype).type(total if red == 2 else _ratio(total, denom))


# ---------------------------------------------------------- cross-entropy --
def _cross_entropy(input, target, weight, ignore_index, reduction, label_smoothing, want_grad, out):
    R = _Rows(input)
    red = reduction_code(reduction)
    eps = (0.0 if type(label_smoothing) in (float, int) and label_smoothing == 0
           else smoothing_param(label_smoothing))
    ignore_index = index_param(ignore_index)
    dtype = R.a.dtype
    if out is not None:
        _check_grad_out(out, R.a, input, target, weight)
    w = None if weight is None else class_weight(weight, R.C, dtype)
    t = target if type(target) is np.ndarray else np.asarray(target)
    M = R.rows.shape[0]
    if M and R.C == 0:
        raise ValueError("input has 0 classes")
    if (t.dtype.kind == "f" or _half.is_bfloat16(t.dtype)) and t.shape == R.a.shape and t.shape != R.batch_shape:
        # Class probabilities.
        if ignore_index >= 0:
            # torch: "ignore_index is not supported for floating point target"
            # (a negative one, like the default -100, is accepted and unused).
            raise ValueError(f"ignore_index={ignore_index} is not supported with class-probability "
                             f"targets (only a negative ignore_index, such as the default -100)")
        tr = R.same_layout(t, "target")
        losses = np.empty(M, np.float64)
        g = R.grad_buffer(out) if want_grad else None
        gscale = 1.0 / M if (red == 1 and M) else 1.0
        keep = _pre_kernel_rows(R.rows, g, 1.0)
        total = core.ce_prob(R.rows, tr, w, eps, gscale, g, losses)
        if not math.isfinite(total) or (red == 0 and not np.isfinite(losses).all()):
            if _prob_overflow_rows(R.rows if keep is None else keep, tr, w, eps, losses):
                total = _exact_total(losses)
        loss = _finish_loss(losses, total, M, red, dtype, R.batch_shape)
        if not want_grad:
            return loss
        return loss, R.finish_grad(g, out)
    return _index_loss(core.ce_index, R, t, w, ignore_index, red, want_grad, out, eps)


def _check_grad_out(out, a, input, target, weight):
    """The out= overlap rule for the gradient of a loss: `out` may be the input
    itself (the kernels read each row before they write its gradient), and must
    not overlap the input otherwise, nor the targets or the class weights."""
    if out is not a:
        check_out(out, a.shape, a.dtype)
    if out is not a or not isinstance(target, np.ndarray) or isinstance(weight, np.ndarray):
        check_overlap(out, ((input, "input"), (target, "target"), (weight, "weight")),
                      inplace=("input",))
    else:   # out is the input: only the target can still overlap
        check_overlap(out, ((target, "target"),))


def _pre_kernel_rows(rows, g, eps):
    """The logits the post-kernel fixes may need, when the gradient is written over
    them (out=input): None if they are not overwritten or cannot need a fix
    (float32, or float64 far from overflow); else a copy."""
    if g is None or not eps or rows.dtype != _F64 or not np.may_share_memory(g, rows):
        return None
    if rows.size and -1e307 < rows.min() and rows.max() < 1e307:
        return None
    return rows.copy()


def _prob_overflow_rows(x_rows, tr, w, eps, losses):
    """As _smoothing_overflow_rows, for class-probability targets:
    loss_i = -sum_c w_c t'_c log p_c with t' = (1 - eps) t + eps / C."""
    bad = np.flatnonzero(~np.isfinite(losses))
    if not bad.size or x_rows.dtype != _F64 or (w is not None and not np.isfinite(w).all()):
        return False   # (see _pre_kernel_rows: only float64 logits can need this)
    x = x_rows[bad].astype(np.float64)
    t = tr[bad].astype(np.float64)
    fin = np.isfinite(x).all(axis=1) & np.isfinite(t).all(axis=1)
    bad, x, t = bad[fin], x[fin], t[fin]
    if not bad.size:
        return False
    C = x.shape[1]
    with np.errstate(over="ignore", invalid="ignore"):
        m = x.max(axis=1, keepdims=True)
        # -log p_c / 2 = (m/2 - x_c/2) + L/2: halved, so logits of +-float64 max
        # (m - x_c = 2 max) do not overflow; the total is doubled at the end
        logp = -((m / 2 - x / 2) + np.log(np.exp(x - m).sum(axis=1, keepdims=True)) / 2)
        tp = t * (1.0 - eps) + eps / C if eps else t
        if w is not None:
            tp = tp * w
        losses[bad] = -(tp * logp).sum(axis=1) * 2.0
    return True


def _smoothing_overflow_rows(R, tt, w, ignore_index, eps, losses, x_rows=None):
    """Loss of the rows where the kernel's label-smoothing sum cancelled inf - inf.

    The kernel forms the smoothing term as ``W (lse - r0) - sum_c w_c (x_c - r0)``;
    with logits near the float64 limits both parts overflow and the row comes out
    NaN (or -inf) although its exact loss is +inf.  Rows with a non-finite loss
    and finite logits are recomputed here (float64, term by term as torch does:
    -sum_c w_c log p_c), so such a loss is +inf, never NaN.  Returns True if a
    row changed.  (The kernel's formula in fl_rows_impl.h could do this itself.)
    """
    bad = np.flatnonzero(~np.isfinite(losses))
    if not bad.size or R.rows.dtype != _F64:
        # float32 (and half) losses are formed in float64: nothing overflows, and
        # R.rows may hold the gradient by now (out=input, K-dim copy), not the
        # logits (see _pre_kernel_rows).
        return False
    x = (R.rows if x_rows is None else x_rows)[bad].astype(np.float64)
    fin = np.isfinite(x).all(axis=1)
    if w is not None and not np.isfinite(w).all():
        return False
    bad, x = bad[fin], x[fin]
    if not bad.size:
        return False
    y = tt[bad]
    keep = y != ignore_index
    bad, x, y = bad[keep], x[keep], y[keep]
    if not bad.size:
        return False
    C = x.shape[1]
    with np.errstate(over="ignore", invalid="ignore"):
        m = x.max(axis=1, keepdims=True)
        lse = m + np.log(np.exp(x - m).sum(axis=1, keepdims=True))
        logp = x - lse                                   # may overflow to -inf: exact is < -max
        wc = np.ones(C) if w is None else w.astype(np.float64)
        smooth = -(logp * wc).sum(axis=1)
        rows = np.arange(bad.size)
        wy = wc[y]
        nll = -logp[rows, y] * wy
        li = (eps / C) * smooth
        if eps != 1.0:
            li = li + (1.0 - eps) * nll
    losses[bad] = li
    return True


def _index_loss(kernel, R, target, w, ignore_index, red, want_grad, out, *params):
    """Run a class-index kernel (core.ce_index / core.nll) over R's rows.

    The kernel range-checks the targets before it writes anything and reports
    the first bad position, which becomes the IndexError."""
    tt = index_target(target, R.batch_shape)
    g = R.grad_buffer(out) if want_grad else None
    losses = np.empty(R.rows.shape[0], np.float64)
    eps = params[0] if params else 0.0
    keep = _pre_kernel_rows(R.rows, g, eps)
    bad, wsum, total = kernel(R.rows, tt, w, ignore_index, *params, red, g, losses)
    if bad >= 0:
        raise IndexError(f"target {int(tt[bad])} is out of bounds for {R.C} classes "
                         f"(at flat position {bad}; ignore_index={ignore_index})")
    if eps and (not math.isfinite(total) or (red == 0 and not np.isfinite(losses).all())):
        if _smoothing_overflow_rows(R, tt, w, ignore_index, eps, losses, keep):
            total = _exact_total(losses)
    loss = _finish_loss(losses, total, wsum, red, R.a.dtype, R.batch_shape, eps)
    if eps and not R.C and red == 2:
        loss = type(loss)(math.nan)   # torch: eps / C = inf with C == 0, times an empty sum
    if not want_grad:
        return loss
    if red == 1 and eps and not wsum:
        # the NaN loss of _finish_loss: its gradient is NaN through every counted
        # row, as torch's (the kernel's 1/wsum scale gives inf - inf or +-inf)
        g[tt != ignore_index] = np.nan
    return loss, R.finish_grad(g, out)


def cross_entropy(input, target, weight=None, ignore_index=-100, reduction="mean",
                  label_smoothing=0.0):
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
    return _cross_entropy(input, target, weight, ignore_index, reduction, label_smoothing, False, None)


def cross_entropy_and_grad(input, target, weight=None, ignore_index=-100, reduction="mean",
                           label_smoothing=0.0, *, out=None):
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
            red = 1 if reduction == "mean" else 2
            bad, wsum, total = core.ce_index(input, target, None, ignore_index, 0.0, red, g, losses)
            if bad < 0:
                if not math.isfinite(total):
                    total = _exact_total(losses)
                return dt.type(total if red == 2 else _ratio(total, wsum)), g
            # fall through: the general path raises the IndexError
    return _cross_entropy(input, target, weight, ignore_index, reduction, label_smoothing, True, out)


# -------------------------------------------------------------------- NLL --
def _nll(input, target, weight, ignore_index, reduction, want_grad, out):
    R = _Rows(input)
    red = reduction_code(reduction)
    ignore_index = index_param(ignore_index)
    dtype = R.a.dtype
    if out is not None:
        _check_grad_out(out, R.a, input, target, weight)
    w = class_weight(weight, R.C, dtype)
    return _index_loss(core.nll, R, target, w, ignore_index, red, want_grad, out)


def nll_loss(input, target, weight=None, ignore_index=-100, reduction="mean"):
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


def nll_loss_and_grad(input, target, weight=None, ignore_index=-100, reduction="mean", *, out=None):
    """:func:`nll_loss` and its gradient with respect to `input`: ``(loss, grad_input)``.

    ``out`` (keyword-only) receives the gradient and may be the input itself;
    any other overlap with the input, target or weight is a ValueError.

    Parameters
    ----------
    input, target, weight, ignore_index, reduction
        As in :func:`nll_loss`.
    out : ndarray, optional, keyword-only
        Receives the gradient (the input's shape and dtype); may be the input.

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


# -------------------------------------------------------- BCE with logits --
def _broadcast_param(v, shape, dtype, name):
    if v is None:
        return None
    a = float_array(v, name)
    try:
        return np.ascontiguousarray(np.broadcast_to(a, shape), dtype=dtype).reshape(-1)
    except ValueError:
        raise ValueError(f"{name} of shape {a.shape} does not broadcast to the input's shape "
                         f"{shape}") from None


def _bce(input, target, weight, reduction, pos_weight, want_grad, out):
    a = float_array(input, "input", promote_int=False)
    red = reduction_code(reduction)
    t = float_array(target, "target")
    if t.shape != a.shape:
        raise ValueError(f"target size {t.shape} must be the same as input size {a.shape}")
    dtype = a.dtype
    x = np.ascontiguousarray(a).reshape(-1)
    y = np.ascontiguousarray(t, dtype=dtype).reshape(-1)
    cdt = _half.compute_dtype(dtype)   # half inputs: float32 weights
    w = _broadcast_param(weight, a.shape, cdt, "weight")
    pw = _broadcast_param(pos_weight, a.shape, cdt, "pos_weight")
    n = x.size
    losses = np.empty(n, dtype) if red == 0 else None
    g = None
    if want_grad:
        if out is not None:
            check_out(out, a.shape, dtype)
            # Elementwise kernel: out may be the input itself, nothing else.
            check_overlap(out, ((input, "input"), (target, "target"), (weight, "weight"),
                                (pos_weight, "pos_weight")), inplace=("input",))
            g = out.reshape(-1) if out.flags.c_contiguous else np.empty(n, dtype)
        else:
            g = np.empty(n, dtype)
    gscale = 1.0 / n if (red == 1 and n) else 1.0
    total = core.bce_with_logits(x, y, w, pw, gscale, losses, g)
    if red and not math.isfinite(total):
        # rare: the terms again (loss only), summed without intermediate overflow
        terms = np.empty(n, dtype)
        core.bce_with_logits(x, y, w, pw, gscale, terms, None)
        total = _exact_total(terms)
    if red == 0:
        loss = losses.reshape(a.shape)
    else:
        loss = _half.loss_dtype(dtype).type(total if red == 2 else _ratio(total, n))
    if not want_grad:
        return loss
    if out is None:
        return loss, g.reshape(a.shape)
    if not out.flags.c_contiguous:
        out[...] = g.reshape(a.shape)
    return loss, out


def binary_cross_entropy_with_logits(input, target, weight=None, reduction="mean", pos_weight=None):
    """Binary cross-entropy on logits, as ``torch.nn.functional.binary_cross_entropy_with_logits``.

    loss = weight * ((1 - y) x + (1 + (pos_weight - 1) y) * softplus(-x)),
    computed without overflow for any finite x.  `weight` and `pos_weight`
    broadcast against the input (pos_weight along the last, class, axis).
    'mean' averages over all elements.

    Parameters
    ----------
    input : ndarray, float32 or float64
        Logits, any shape.
    target : ndarray
        Targets in [0, 1], the input's shape.
    weight : ndarray, optional
        Rescaling weights, broadcast against the input.
    reduction : {'mean', 'sum', 'none'}
        'mean' averages over all elements.
    pos_weight : ndarray, optional
        Weight of the positive term, broadcast along the last (class) axis.

    Returns
    -------
    loss : scalar of the input's dtype, or an array of the input's shape for
        ``reduction='none'``.

    Examples
    --------
    >>> import numpy as np, fastlog
    >>> z, y = np.array([0.0, 2.0, -1.0]), np.array([1.0, 1.0, 0.0])
    >>> round(float(fastlog.binary_cross_entropy_with_logits(z, y)), 4)
    0.3778
    >>> fastlog.binary_cross_entropy_with_logits(z, y, pos_weight=np.array([2.0, 2.0, 2.0]),
    ...                                          reduction="none").round(4)
    array([1.3863, 0.2539, 0.3133])
    """
    return _bce(input, target, weight, reduction, pos_weight, False, None)


def binary_cross_entropy_with_logits_and_grad(input, target, weight=None, reduction="mean",
                                              pos_weight=None, *, out=None):
    """:func:`binary_cross_entropy_with_logits` and its gradient, in one pass.

    Returns ``(loss, grad_input)``.  ``out`` (keyword-only) receives the
    gradient and may be the input itself; any other overlap with the input,
    target, weight or pos_weight is a ValueError.

    Parameters
    ----------
    input, target, weight, reduction, pos_weight
        As in :func:`binary_cross_entropy_with_logits`.
    out : ndarray, optional, keyword-only
        Receives the gradient (the input's shape and dtype); may be the input.

    Examples
    --------
    >>> import numpy as np, fastlog
    >>> z, y = np.array([0.0, 2.0, -1.0]), np.array([1.0, 1.0, 0.0])
    >>> loss, grad = fastlog.binary_cross_entropy_with_logits_and_grad(z, y)
    >>> grad.round(4)          # (sigmoid(z) - y) / 3
    array([-0.1667, -0.0397,  0.0896])
    """
    return _bce(input, target, weight, reduction, pos_weight, True, out)


# ---------------------------------------------------------------- KL div --
_KL_REDUCTIONS = {"none": 0, "mean": 1, "sum": 2, "batchmean": 3}


def kl_div(input, target, reduction="mean", log_target=False):
    """KL divergence, as ``torch.nn.functional.kl_div`` (input holds log-probabilities).

    Pointwise ``exp(t) * (t - x)`` if `log_target` else ``xlogy(t, t) - t * x``;
    'mean' averages over all elements, 'batchmean' divides the sum by the
    first dimension (the batch size), as torch does.

    Parameters
    ----------
    input : ndarray, float32 or float64
        Log-probabilities, any shape (batch first).
    target : ndarray
        Probabilities (log-probabilities if `log_target`), the input's shape.
    reduction : {'mean', 'batchmean', 'sum', 'none'}
        How the pointwise losses are reduced.
    log_target : bool, default False
        Whether `target` holds log-probabilities.

    Returns
    -------
    loss : scalar of the input's dtype, or an array of the input's shape for
        ``reduction='none'``.

    Examples
    --------
    >>> import numpy as np, fastlog
    >>> logq = np.log(np.array([[0.5, 0.5], [0.25, 0.75]]))
    >>> p = np.array([[0.5, 0.5], [0.5, 0.5]])
    >>> round(float(fastlog.kl_div(logq, p, reduction="batchmean")), 4)
    0.0719
    >>> round(float(fastlog.kl_div(logq, np.log(p), reduction="sum", log_target=True)), 4)
    0.1438
    """
    from scipy.special import xlogy

    a = float_array(input, "input", promote_int=False)
    red = reduction_code(reduction, _KL_REDUCTIONS)
    t = float_array(target, "target")
    dtype = np.result_type(a.dtype, t.dtype)
    if _half.is_half(dtype):   # computed in float32; 'none' rounded once to the half dtype
        r = kl_div(a.astype(np.float32), t.astype(np.float32), reduction, log_target)
        return r.astype(dtype) if red == 0 else r
    try:
        x, y = np.broadcast_arrays(a.astype(dtype, copy=False), t.astype(dtype, copy=False))
    except ValueError:
        raise ValueError(f"target of shape {t.shape} does not broadcast against input of shape "
                         f"{a.shape}") from None
    with np.errstate(over="ignore", invalid="ignore"):
        if log_target:
            pw = np.exp(y) * (y - x)
        else:
            pw = xlogy(y, y) - y * x
    if red == 0:
        return pw.astype(dtype, copy=False)
    with np.errstate(over="ignore", invalid="ignore"):
        total = np.sum(pw, dtype=np.float64)
        if not np.isfinite(total) and pw.dtype != np.float64:
            # float32 terms that overflowed on their own: the sum is accumulated in
            # float64, so form the terms in float64 too (rare path)
            x64, y64 = x.astype(np.float64), y.astype(np.float64)
            pw = np.exp(y64) * (y64 - x64) if log_target else xlogy(y64, y64) - y64 * x64
    if not np.isfinite(total):
        total = _exact_total(pw)
    if red == 2:
        return dtype.type(total)
    if red == 1:
        return dtype.type(total / pw.size) if pw.size else dtype.type(np.nan)
    n = x.shape[0] if x.ndim else 1
    with np.errstate(divide="ignore", invalid="ignore"):
        return dtype.type(np.float64(total) / n)
