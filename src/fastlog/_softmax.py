"""log_softmax, softmax, logsumexp and their backward passes.

Drop-in replacements for ``scipy.special.log_softmax / softmax / logsumexp``
(same signatures, defaults and semantics: ``axis=None`` means the whole
array, tuple axes, ``keepdims``, ``b``, ``return_sign``, SciPy's results for
inf/nan/empty input, integers computed in float64).  float32 stays float32;
float16 and bfloat16 (ml_dtypes) are computed in float32 and each result is
rounded once to the input's dtype (``_half.py``, ``_csrc/fl_half.h``).

How: the reduced axes are brought last (a free reshape when they already are,
a copy otherwise) and each row goes through one compiled kernel that reads
it, finds the max, sums exp(x - max) in double with the max terms split out
(log1p, as SciPy's logsumexp does), and writes the result: exp is evaluated
once per element.

``out=`` may be the input itself (in place); any other overlap of ``out`` with
an input is a ValueError (``fastlog._validation.check_overlap``).  One
deliberate difference from SciPy: an empty result that needs no reduction --
softmax over the last axis of a (5, 0, 0) array, which has no rows -- comes
back empty, where SciPy raises NumPy's "zero-size array" error.
"""
from typing import Optional, Tuple, Union

import numpy as np

from . import _half
from ._dispatch import core
from ._enums import Op
from ._typing import ArrayLike, Axis, Scalar
from ._validation import _F32, _F64, check_out, check_overlap, float_array, float_param, normalize_axes

_LOG_SOFTMAX, _SOFTMAX, _LSE = Op.LOG_SOFTMAX, Op.SOFTMAX, Op.LOGSUMEXP
#: An array, or a scalar for a 0-d result.
Result = Union[np.ndarray, Scalar]


def _as_rows(a, axes):
    """View/copy `a` as 2-D (rows, K) with the `axes` last.

    Returns (rows, moved_shape, perm); perm is None when no transpose was needed.
    """
    nd = a.ndim
    k = len(axes)
    trailing = axes == tuple(range(nd - k, nd))
    K = 1
    for ax in axes:
        K *= a.shape[ax]
    if trailing:
        return np.ascontiguousarray(a).reshape(-1, K), a.shape, None
    rest = tuple(i for i in range(nd) if i not in axes)
    perm = rest + axes
    moved = np.transpose(a, perm)
    return np.ascontiguousarray(moved).reshape(-1, K), moved.shape, perm


def _restore(rows_result, moved_shape, perm, out):
    """Write a (rows, K) result back in the original axis order into `out`."""
    res = rows_result.reshape(moved_shape)
    if perm is None:
        if out is not None and not np.shares_memory(res, out):
            out[...] = res
            return out
        return res if out is None else out
    inv = np.argsort(perm)
    back = np.transpose(res, inv)
    if out is None:
        out = np.empty(back.shape, dtype=back.dtype)
    out[...] = back
    return out


def _elementwise(op, x, axis, out, name="x", orig=None, nanrow=False):
    # Fast path: the usual call, log_softmax(x, axis=-1) on a C-contiguous
    # float array (per-call overhead matters for small inputs).
    if out is None and type(x) is np.ndarray and (x.dtype is _F32 or x.dtype is _F64):
        nd = x.ndim
        if (nd and type(axis) is int and (axis == -1 or axis == nd - 1) and x.flags.c_contiguous
                and x.flags.aligned):
            K = x.shape[-1]
            if K and x.size:
                res = np.empty_like(x)
                core.unary_rows(op, x, res, K, nanrow)
                return res
    a = float_array(x, name)
    # NumPy (and so SciPy) accepts axis=0 / -1 for a 0-d array.
    int_axis_0d = a.ndim == 0 and axis is not None and not isinstance(axis, (tuple, list))
    axes = normalize_axes(axis, 1 if int_axis_0d else a.ndim)
    if out is not None:
        check_out(out, a.shape, a.dtype)
        # out may be x itself (in place); any other overlap is an error.
        check_overlap(out, ((x if orig is None else orig, name),), inplace=(name,))
    if a.ndim == 0:
        a1 = a.reshape(1)
        r = np.empty(1, a.dtype)
        core.unary_rows(op, a1.reshape(1, 1), r.reshape(1, 1), -1, nanrow)
        if out is not None:
            out[...] = r[0]
            return out
        return r[0]
    if a.size == 0:
        # An empty reduction is an error only where a result element needs one
        # (SciPy raises for any empty reduced axis; a (5, 0, 0) array normalized
        # over its last axis has no rows at all, and its empty result is returned).
        rows = 1
        for i, n in enumerate(a.shape):
            if i not in axes:
                rows *= n
        if rows:
            raise ValueError("zero-size array to reduction operation maximum which has no identity")
        return np.empty(a.shape, a.dtype) if out is None else out
    rows, moved_shape, perm = _as_rows(a, axes)
    # Write straight into `out` when it has the rows' layout (the common case).
    if perm is None and out is not None and out.flags.c_contiguous:
        core.unary_rows(op, rows, out.reshape(rows.shape), -1, nanrow)
        return out
    res = np.empty(rows.shape, a.dtype)
    core.unary_rows(op, rows, res, -1, nanrow)
    return _restore(res, moved_shape, perm, out)


def log_softmax(x: ArrayLike, axis: Axis = None, *,
out: Optional[np.ndarray] = None) -> Union[np.ndarray, Scalar]:
    """Logarithm of the softmax, like ``scipy.special.log_softmax``.

    Parameters
    ----------
    x : array_like
        Input (float32 stays float32; integers are computed in float64).
    axis : int, tuple of ints or None, optional
        Axes to normalize over; None (the default, as in SciPy) means all.
    out : ndarray, optional, keyword-only
        Where to write the result (shape and dtype of the result; may be `x`).

    Returns
    -------
    ndarray (a scalar for 0-d input)
        ``x - logsumexp(x, axis, keepdims=True)``, computed stably: the shift
        uses the finite max, the max terms are split out of the sum and the
        log taken with log1p.  A row whose max is +inf gives nan at the inf
        entries and -inf elsewhere; an all -inf row gives nan (as SciPy).

    Raises
    ------
    TypeError
        `x` of a dtype fastlog does not compute in (complex, object, strings,
        ...), or an `out` whose dtype is not the result's.
    ValueError
        An `out` of the wrong shape, overlapping `x` other than being `x`
        itself, or not aligned to its dtype.
    numpy.exceptions.AxisError
        An axis out of range (a subclass of ``ValueError`` and ``IndexError``).

    Examples
    --------
    >>> import numpy as np, fastlog
    >>> x = np.array([[1.0, 2.0, 3.0], [1.0, 1.0, 1.0]])
    >>> fastlog.log_softmax(x, axis=1).round(4)
    array([[-2.4076, -1.4076, -0.4076],
           [-1.0986, -1.0986, -1.0986]])
    >>> out = np.empty_like(x)
    >>> fastlog.log_softmax(x, axis=1, out=out) is out
    True
    """
    return _elementwise(_LOG_SOFTMAX, x, axis, out)


def log_softmax_nan_rows(x: ArrayLike, axis: Axis) -> Union[np.ndarray, Scalar]:
    """:func:`log_softmax` with PyTorch's non-finite rows: a row whose max is not
    finite (a +inf entry, or every entry -inf) is NaN everywhere, where SciPy gives
    -inf at its finite entries.  For the torch face."""
    return _elementwise(_LOG_SOFTMAX, x, axis, None, nanrow=True)


def softmax(x: ArrayLike, axis: Axis = None, *, out: Optional[np.ndarray] = None,
            temperature: Optional[float] = None) -> Union[np.ndarray, Scalar]:
    """Softmax, like ``scipy.special.softmax``.

    ``temperature`` (keyword-only, > 0) computes ``softmax(x / temperature)``.
    A row whose max is not finite (+inf, or all -inf, or NaN) is all NaN, as
    SciPy gives.  ``out`` as in :func:`log_softmax`.

    Parameters
    ----------
    x : array_like
        Input (float32 stays float32; integers are computed in float64).
    axis : int, tuple of ints or None, optional
        Axes to normalize over; None (the default, as in SciPy) means all.
    out : ndarray, optional, keyword-only
        Where to write the result; may be `x` itself (in place), must not
        otherwise overlap it.
    temperature : float > 0, optional, keyword-only
        Divides `x` first.

    Returns
    -------
    ndarray (a scalar for 0-d input)
        ``exp(x - logsumexp(x, axis, keepdims=True))``; sums to 1 over `axis`.

    Raises
    ------
    TypeError
        `x` of a dtype fastlog does not compute in (complex, object, strings,
        ...), or an `out` whose dtype is not the result's.
    ValueError
        An `out` of the wrong shape, overlapping `x` other than being `x`
        itself, or not aligned to its dtype.
    TypeError, ValueError
        A `temperature` that is not a number, or not a positive finite one.
    numpy.exceptions.AxisError
        An axis out of range (a subclass of ``ValueError`` and ``IndexError``).

    Examples
    --------
    >>> import numpy as np, fastlog
    >>> x = np.array([[1.0, 2.0, 3.0], [1.0, 1.0, 1.0]])
    >>> fastlog.softmax(x, axis=1).round(4)
    array([[0.09  , 0.2447, 0.6652],
           [0.3333, 0.3333, 0.3333]])
    >>> fastlog.softmax(x, axis=1, temperature=1e9).round(4)[0]
    array([0.3333, 0.3333, 0.3333])
    """
    if temperature is not None:
        t = float_param(temperature, "temperature", lo=0.0, lo_open=True)
        a = float_array(x, "x")
        if _half.is_half(a.dtype):   # x / t in float32, the softmax rounded once
            if out is not None:
                check_out(out, a.shape, a.dtype)
                check_overlap(out, ((x, "x"),), inplace=("x",))
            r = _elementwise(_SOFTMAX, a.astype(np.float32) / np.float32(t), axis, None)
            if out is None:
                return r.astype(a.dtype)
            out[...] = r
            return out
        return _elementwise(_SOFTMAX, a / a.dtype.type(t), axis, out, orig=x)
    return _elementwise(_SOFTMAX, x, axis, out)


def logsumexp(a: ArrayLike, axis: Axis = None, b: Optional[ArrayLike] = None, keepdims: bool = False,
              return_sign: bool = False) -> Union[Result, Tuple[Result, Result]]:
    """Log of the sum of exponentials, like ``scipy.special.logsumexp``.

    Parameters and results as in SciPy: ``axis`` (None = all axes, int or
    tuple), ``b`` scale factors broadcast against `a` (entries with
    ``b == 0`` count as -inf; a negative sum gives nan unless
    ``return_sign``), ``keepdims``, ``return_sign`` (then returns
    ``(out, sign)``).  Empty input gives -inf.  The b=None path runs in the
    compiled kernel; the b path is plain NumPy.

    Parameters
    ----------
    a : array_like
        Input values.
    axis : None, int or tuple of ints
        Axes to reduce (None: all).
    b : array_like, optional
        Scale factors broadcast against `a` (``b == 0`` counts as -inf).
    keepdims : bool, default False
        Keep the reduced axes with length 1.
    return_sign : bool, default False
        Also return the sign of the sum (a negative sum gives nan without it).

    Returns
    -------
    ndarray or scalar
        ``log(sum(b * exp(a), axis))``; with ``return_sign`` the pair
        ``(result, sign)``.

    Raises
    ------
    TypeError
        `a` or `b` of a dtype fastlog does not compute in (complex, object, ...).
    ValueError
        A `b` that does not broadcast against `a`.
    numpy.exceptions.AxisError
        An axis out of range (a subclass of ``ValueError`` and ``IndexError``).

    Examples
    --------
    >>> import numpy as np, fastlog
    >>> float(fastlog.logsumexp([0.0, 0.0]))
    0.6931471805599453
    >>> fastlog.logsumexp(np.array([[1.0, 2.0, 3.0], [1e4, 1e4, -np.inf]]), axis=1).round(4).tolist()
    [3.4076, 10000.6931]
    >>> fastlog.logsumexp([1.0, 2.0], b=[1.0, -1.0], return_sign=True)[1]
    np.float64(-1.0)
    """
    if b is not None:
        return _logsumexp_b(a, axis, b, keepdims, return_sign)
    arr = float_array(a, "a")
    if arr.ndim == 0:
        arr = arr.reshape(1)
    axes = normalize_axes(axis, arr.ndim)
    red_shape = tuple(1 if i in axes else n for i, n in enumerate(arr.shape))
    if arr.size == 0:
        out = np.full(red_shape, -np.inf, dtype=arr.dtype)
    else:
        rows, _, _ = _as_rows(arr, axes)
        res = np.empty(rows.shape[0], arr.dtype)
        core.unary_rows(_LSE, rows, res)
        out = res.reshape(red_shape)
    if not keepdims:
        out = out.reshape(tuple(n for i, n in enumerate(arr.shape) if i not in axes))
    if return_sign:
        if arr.size == 0:
            sgn = np.sign(out)  # SciPy: an empty sum has sign(-inf) = -1
        else:
            sgn = np.where(out == -np.inf, 0.0, 1.0).astype(out.dtype)
            sgn[np.isnan(out)] = np.nan
        return (out[()] if out.ndim == 0 else out), (sgn[()] if sgn.ndim == 0 else sgn)
    return out[()] if out.ndim == 0 else out


def _logsumexp_b(a, axis, b, keepdims, return_sign):
    """logsumexp with scale factors b, in NumPy (SciPy's semantics)."""
    arr = float_array(a, "a")
    bb = float_array(b, "b")
    if _half.is_half(arr.dtype) or _half.is_half(bb.dtype):
        # computed in float32, the results rounded once to the half dtype
        hd = arr.dtype if _half.is_half(arr.dtype) else bb.dtype
        r = _logsumexp_b(arr.astype(np.float32), axis, bb.astype(np.float32), keepdims, return_sign)
        if return_sign:
            return r[0].astype(hd)[()], r[1].astype(hd)[()]
        return np.asarray(r).astype(hd)[()]
    # A Python scalar b is "weak" (NEP 50): float32 a stays float32, as in SciPy.
    dt = np.result_type(arr, b if type(b) in (bool, int, float) else bb)
    try:
        arr, bb = np.broadcast_arrays(arr.astype(dt, copy=False), bb.astype(dt, copy=False))
    except ValueError:
        raise ValueError(f"b of shape {np.shape(b)} does not broadcast against a of shape "
                         f"{np.shape(a)}") from None
    arr = np.atleast_1d(arr)
    bb = np.atleast_1d(bb)
    axes = normalize_axes(axis, arr.ndim)
    if arr.size == 0:
        shape = tuple(1 if i in axes else n for i, n in enumerate(arr.shape))
        out = np.full(shape, -np.inf, dt)
        sgn = np.sign(out)
    else:
        with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
            # Direct formula, used wherever the stable one is not finite.
            direct = np.sum(bb * np.exp(arr), axis=axes, keepdims=True)
            sgn_direct = np.sign(direct)
            out_direct = np.log(np.abs(direct) if return_sign else direct)

            x = np.where(bb == 0, -np.inf, arr)
            xmax = np.max(x, axis=axes, keepdims=True)
            is_max = x == xmax
            bmax = np.sum(np.where(is_max, bb, 0), axis=axes, keepdims=True)
            rest = np.sum(np.where(is_max, 0, bb * np.exp(x - xmax)), axis=axes, keepdims=True)
            rest = np.where(rest == 0, rest, rest / bmax)
            sgn = np.sign(rest + 1) * np.sign(bmax)
            rest = np.where(rest < -1, -rest - 2, rest)
            out = np.log1p(rest) + np.log(np.abs(bmax)) + xmax
            if not return_sign:
                out = np.where(sgn < 0, np.nan, out)
            ok = np.isfinite(out)
            out = np.where(ok, out, out_direct)
            sgn = np.where(ok, sgn, sgn_direct)
    if not keepdims:
        out = np.squeeze(out, axis=axes)
        sgn = np.squeeze(sgn, axis=axes)
    out = out[()] if out.ndim == 0 else out
    sgn = sgn[()] if np.ndim(sgn) == 0 else sgn
    return (out, sgn) if return_sign else out


def _backward(op, grad_output, output, axis, out):
    y = float_array(output, "output")
    g = float_array(grad_output, "grad_output")
    if g.shape != y.shape:
        raise ValueError(f"grad_output has shape {g.shape} but output has shape {y.shape}")
    if g.dtype != y.dtype:
        raise TypeError(f"grad_output has dtype {g.dtype} but output has dtype {y.dtype}")
    if y.ndim == 0:
        y, g = y.reshape(1), g.reshape(1)
    axes = normalize_axes(axis, y.ndim)
    if out is not None:
        check_out(out, np.shape(output), y.dtype)
        # The kernels read grad_output[j] and output[j] before writing out[j]:
        # out may be either of them, but must not otherwise overlap them.
        check_overlap(out, ((grad_output, "grad_output"), (output, "output")),
                      inplace=("grad_output", "output"))
    if y.size == 0:
        return np.empty(y.shape, y.dtype) if out is None else out
    yr, moved_shape, perm = _as_rows(y, axes)
    gr, _, _ = _as_rows(g, axes)
    if perm is None and out is not None and out.flags.c_contiguous:
        core.backward_rows(op, gr, yr, out.reshape(yr.shape))
        return out
    res = np.empty(yr.shape, y.dtype)
    core.backward_rows(op, gr, yr, res)
    r = _restore(res, moved_shape, perm, out)
    return r.reshape(np.shape(output)) if out is None else r


def log_softmax_backward(grad_output: ArrayLike, output: ArrayLike, axis: Axis = -1, *,
                         out: Optional[np.ndarray] = None) -> np.ndarray:
    """Gradient of :func:`log_softmax` given its `output`:
    ``grad_output - exp(output) * grad_output.sum(axis, keepdims=True)``.

    ``out`` (keyword-only) may be `grad_output` itself (in place).

    Parameters
    ----------
    grad_output : array_like
        Gradient with respect to the output of :func:`log_softmax`.
    output : array_like
        That output (same shape and dtype).
    axis : int, tuple of ints or None, default -1
        The axes :func:`log_softmax` normalized over.
    out : ndarray, optional, keyword-only
        Where to write the result; may be `grad_output` or `output` itself,
        must not otherwise overlap them.

    Returns
    -------
    ndarray
        The gradient with respect to the input of :func:`log_softmax`.

    Raises
    ------
    TypeError
        Arrays of a dtype fastlog does not compute in, or an `out` whose dtype is
        not the result's.
    ValueError
        `grad_output` and `output` of different shapes, or an `out` of the wrong
        shape, overlapping an argument other than `grad_output`, or misaligned.
    numpy.exceptions.AxisError
        An axis out of range.

    Examples
    --------
    >>> import numpy as np, fastlog
    >>> y = fastlog.log_softmax(np.array([1.0, 2.0, 3.0]), axis=-1)
    >>> g = np.array([0.0, 0.0, 1.0])
    >>> fastlog.log_softmax_backward(g, y).round(4)
    array([-0.09  , -0.2447,  0.3348])
    """
    return _backward(0, grad_output, output, axis, out)


def softmax_backward(grad_output: ArrayLike, output: ArrayLike, axis: Axis = -1, *,
                     out: Optional[np.ndarray] = None) -> np.ndarray:
    """Gradient of :func:`softmax` given its `output`:
    ``output * (grad_output - (grad_output * output).sum(axis, keepdims=True))``.

    Parameters
    ----------
    grad_output : array_like
        Gradient with respect to the output of :func:`softmax`.
    output : array_like
        That output (same shape and dtype).
    axis : int, tuple of ints or None, default -1
        The axes :func:`softmax` normalized over.
    out : ndarray, optional, keyword-only
        As in :func:`log_softmax_backward`.

    Returns
    -------
    ndarray
        The gradient with respect to the input of :func:`softmax`.

    Raises
    ------
    TypeError
        Arrays of a dtype fastlog does not compute in, or an `out` whose dtype is
        not the result's.
    ValueError
        `grad_output` and `output` of different shapes, or an `out` of the wrong
        shape, overlapping an argument other than `grad_output`, or misaligned.
    numpy.exceptions.AxisError
        An axis out of range.

    Examples
    --------
    >>> import numpy as np, fastlog
    >>> p = fastlog.softmax(np.array([1.0, 1.0, 1.0]), axis=-1)
    >>> fastlog.softmax_backward(np.array([0.0, 0.0, 1.0]), p).round(4)
    array([-0.1111, -0.1111,  0.2222])
    """
    return _backward(1, grad_output, output, axis, out)
