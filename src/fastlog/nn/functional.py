"""Layer building blocks on NumPy arrays, for people writing their own backprop.

* :func:`linear_forward` -- ``act(x @ weight.T + bias)``, weight laid out like
  ``torch.nn.Linear`` (out_features, in_features); the bias add and the
  optional ReLU are one pass over the GEMM's output.
* :func:`linear_backward` -- the gradients of that layer; with ``relu_output``
  the ReLU mask is applied in the same pass as the bias-gradient sum.
* :func:`relu`, :func:`relu_backward`.

All take float32 or float64 (integers count as float64).  The functions are
thread-safe: each call uses only its own buffers.
"""
from typing import Optional, Tuple

import numpy as np

from .._dispatch import core
from .._typing import ArrayLike
from .._validation import check_out, check_overlap, float_array
from .._threads import blas_pinned

__all__ = ["linear_forward", "linear_backward", "relu", "relu_backward"]

def _float2d(a, name):
    a = float_array(a, name, promote_int=True)
    if a.ndim != 2:
        raise ValueError(f"{name} must be 2-D, got shape {a.shape}")
    return a


def _common(dtypes):
    return np.dtype(np.float64) if any(d == np.float64 for d in dtypes) else np.dtype(np.float32)


def _out_array(out, shape, dtype, inputs, inplace=()):
    """A fresh C-contiguous result, or the caller's `out` checked (shape, dtype,
    C order, and the package's overlap rule against `inputs`)."""
    if out is None:
        return np.empty(shape, dtype)
    check_out(out, shape, dtype)
    if not out.flags.c_contiguous:
        raise ValueError("out must be C-contiguous")
    check_overlap(out, inputs, inplace=inplace)
    return out


def linear_forward(x: ArrayLike, weight: ArrayLike, bias: Optional[ArrayLike] = None, *, relu: bool = False,
                   out: Optional[np.ndarray] = None) -> np.ndarray:
    """``y = x @ weight.T + bias``, optionally followed by ReLU, like ``torch.nn.Linear``.

    Parameters
    ----------
    x : array_like, shape (n, in_features)
    weight : array_like, shape (out_features, in_features)
    bias : array_like, shape (out_features,), optional
    relu : bool
        Apply ``max(y, 0)`` in the same pass as the bias add (NaN propagates).
    out : ndarray, shape (n, out_features), optional
        C-contiguous output of the result dtype; must not overlap the inputs.

    Returns
    -------
    ndarray, shape (n, out_features)
        In float64 if any input is float64, else float32 (integers count as float64).

    Raises
    ------
    TypeError
        Arrays of a kind fastlog does not compute in (complex, object, ...).
    ValueError
        Shapes that do not match (features of `x` and `weight`, length of
        `bias`), or an `out` of the wrong shape.

    Notes
    -----
    The product is one BLAS GEMM (SciPy's ``cython_blas``); the bias and the
    ReLU are an epilogue over its output.

    Examples
    --------
    >>> import numpy as np
    >>> from fastlog.nn import linear_forward
    >>> x = np.array([[1.0, 2.0]], np.float32)
    >>> w = np.array([[1.0, 1.0], [1.0, -1.0]], np.float32)
    >>> linear_forward(x, w, np.array([0.5, 0.0], np.float32))
    array([[ 3.5, -1. ]], dtype=float32)
    >>> linear_forward(x, w, relu=True)
    array([[3., 0.]], dtype=float32)
    """
    x = _float2d(x, "x")
    w = _float2d(weight, "weight")
    b = None if bias is None else float_array(bias, "bias")
    dt = _common([x.dtype, w.dtype] + ([] if b is None else [b.dtype]))
    if w.shape[1] != x.shape[1]:
        raise ValueError(f"x has {x.shape[1]} features but weight has shape {w.shape} "
                         f"(expected (out_features, {x.shape[1]}))")
    if w.shape[1] == 0:
        raise ValueError("in_features must be >= 1")
    if b is not None and b.shape != (w.shape[0],):
        raise ValueError(f"bias must have shape ({w.shape[0]},), got {b.shape}")
    shape = (x.shape[0], w.shape[0])
    out = _out_array(out, shape, dt, ((x, "x"), (weight, "weight"), (bias, "bias")))
    x = np.ascontiguousarray(x, dtype=dt)
    w = np.ascontiguousarray(w, dtype=dt)
    if b is not None:
        b = np.ascontiguousarray(b, dtype=dt)
    with blas_pinned():
        core.linear_fwd(x, w, b, out, bool(relu))
    return out


def linear_backward(grad_output: ArrayLike, x: ArrayLike, weight: ArrayLike, *,
                    relu_output: Optional[ArrayLike] = None, input_grad: bool = True,
                    bias_grad: bool = True) -> Tuple[Optional[np.ndarray], np.ndarray, Optional[np.ndarray]]:
    """Gradients of :func:`linear_forward` with respect to x, weight and bias.

    Parameters
    ----------
    grad_output : array_like, shape (n, out_features)
        dloss/dy, where y is the layer's output (after the ReLU if it has one).
    x : array_like, shape (n, in_features)
        The layer's input.
    weight : array_like, shape (out_features, in_features)
    relu_output : array_like, shape (n, out_features), optional
        The output of ``linear_forward(..., relu=True)``.  When given, the
        ReLU backward mask ``relu_output > 0`` is applied to ``grad_output``
        in the same pass that sums the bias gradient.
    input_grad, bias_grad : bool
        Whether to compute dloss/dx and dloss/dbias (None is returned if not).

    Returns
    -------
    grad_input : ndarray (n, in_features) or None
    grad_weight : ndarray (out_features, in_features)
    grad_bias : ndarray (out_features,) or None
        The bias gradient is summed over rows in float64, then rounded.

    Inputs are never modified.

    Raises
    ------
    TypeError
        Arrays of a kind fastlog does not compute in (complex, object, ...).
    ValueError
        Shapes that do not match (`grad_output`, `x`, `weight`, `relu_output`).

    Examples
    --------
    >>> import numpy as np
    >>> from fastlog.nn import linear_backward
    >>> x = np.array([[1.0, 2.0]])
    >>> w = np.array([[1.0, 1.0], [1.0, -1.0]])
    >>> gx, gw, gb = linear_backward(np.array([[1.0, 0.5]]), x, w)
    >>> gx
    array([[1.5, 0.5]])
    >>> gw
    array([[1. , 2. ],
           [0.5, 1. ]])
    >>> gb
    array([1. , 0.5])
    """
    g = _float2d(grad_output, "grad_output")
    x = _float2d(x, "x")
    w = _float2d(weight, "weight")
    y = None if relu_output is None else _float2d(relu_output, "relu_output")
    dt = _common([g.dtype, x.dtype, w.dtype] + ([] if y is None else [y.dtype]))
    n_out, n_in = w.shape
    if x.shape[1] != n_in:
        raise ValueError(f"x has {x.shape[1]} features but weight has shape {w.shape}")
    if n_in == 0 or n_out == 0:
        raise ValueError(f"weight must have non-zero dimensions, got shape {w.shape}")
    if g.shape != (x.shape[0], n_out):
        raise ValueError(f"grad_output has shape {g.shape}, expected {(x.shape[0], n_out)}")
    if y is not None and y.shape != g.shape:
        raise ValueError(f"relu_output has shape {y.shape}, expected {g.shape}")
    g = np.ascontiguousarray(g, dtype=dt)
    x = np.ascontiguousarray(x, dtype=dt)
    w = np.ascontiguousarray(w, dtype=dt)
    if y is not None:
        y = np.ascontiguousarray(y, dtype=dt)
    gx = np.empty(x.shape, dt) if input_grad else None
    gw = np.empty(w.shape, dt)
    gb = np.empty(n_out, dt) if bias_grad else None
    scratch = np.empty(g.shape, dt) if y is not None else None
    acc = np.empty(n_out, np.float64)
    with blas_pinned():
        core.linear_bwd(g, x, w, y, gx, gw, gb, scratch, acc)
    return gx, gw, gb


def relu(x: ArrayLike, *, out: Optional[np.ndarray] = None) -> np.ndarray:
    """``max(x, 0)`` elementwise (NaN propagates, as in ``torch.relu``).

    Parameters
    ----------
    x : array_like of float
    out : ndarray, optional
        C-contiguous, x's shape and dtype; may be `x` itself (any other overlap
        with `x` raises ValueError).

    Returns
    -------
    ndarray

    Raises
    ------
    TypeError
        `x` of a dtype fastlog does not compute in (complex, object, ...).
    ValueError
        An `out` of the wrong shape or overlapping `x` other than being `x`.

    Examples
    --------
    >>> import numpy as np
    >>> from fastlog.nn import relu
    >>> relu(np.array([-1.0, 0.0, 2.5, np.nan]))
    array([0. , 0. , 2.5, nan])
    """
    a = float_array(x, "x", promote_int=True)
    src = np.ascontiguousarray(a)
    out = _out_array(out, a.shape, a.dtype, ((x, "x"),), inplace=("x",))
    core.relu_fwd(src, out)
    return out


def relu_backward(grad_output: ArrayLike, output: ArrayLike, *, out: Optional[np.ndarray] = None) -> np.ndarray:
    """``grad_output * (output > 0)``: the gradient through a ReLU.

    Parameters
    ----------
    grad_output : array_like of float
    output : array_like of float
        The ReLU's output or its input (same mask), grad_output's shape.
    out : ndarray, optional
        C-contiguous; may be `grad_output` or `output` itself (any other overlap
        with them raises ValueError).

    Returns
    -------
    ndarray

    Raises
    ------
    TypeError
        Arrays of a dtype fastlog does not compute in.
    ValueError
        `grad_output` and `output` of different shapes, or an `out` of the wrong
        shape.

    Examples
    --------
    >>> import numpy as np
    >>> from fastlog.nn import relu_backward
    >>> relu_backward(np.array([1.0, 2.0, 3.0]), np.array([-1.0, 0.0, 4.0]))
    array([0., 0., 3.])
    """
    g = float_array(grad_output, "grad_output", promote_int=True)
    y = float_array(output, "output", promote_int=True)
    if g.shape != y.shape:
        raise ValueError(f"grad_output has shape {g.shape} but output has shape {y.shape}")
    dt = _common([g.dtype, y.dtype])
    gs = np.ascontiguousarray(g, dtype=dt)
    ys = np.ascontiguousarray(y, dtype=dt)
    out = _out_array(out, g.shape, dt, ((grad_output, "grad_output"), (output, "output")),
                     inplace=("grad_output", "output"))
    core.relu_bwd(gs, ys, out)
    return out
