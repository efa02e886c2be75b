"""The one ``out=`` overlap rule, for every function of the NumPy face that takes ``out``.

Rule (fastlog._validation.check_overlap): ``out`` identical to an input (same
data pointer, shape, strides, dtype) is allowed where the function documents
in-place use of that input, and then gives the right answer; any other overlap
of ``out`` with any input -- inputs, targets, class weights, pos_weight,
grad_output, output -- is a ValueError naming both arguments.  Memory that
only interleaves (same extent, no common element) is not an overlap.

Each case lays an input and ``out`` in one byte buffer at a given byte offset:
0 (identical when shapes and dtypes agree, else the same bytes), one element,
one row, the whole input minus one element, and the negative offsets (``out``
first).  The oracle is the same call without any sharing.
"""
import numpy as np
import pytest

import fastlog
from fastlog._validation import check_overlap

RNG = np.random.default_rng(1234)
N, C = 6, 5


def _x(dtype=np.float64, shape=(N, C)):
    return RNG.standard_normal(shape).astype(dtype)


def _spec():
    """name -> (call(out, **inputs), inputs, out shape, out dtype, in-place names)."""
    x = _x()
    p = fastlog.softmax(_x(), axis=1)
    y = RNG.integers(0, C, N)
    w = RNG.random(C) + 0.5
    yb = RNG.random((N, C))
    g = _x()
    lsm = fastlog.log_softmax(_x(), axis=1)
    return {
        "log_softmax": (lambda out, x: fastlog.log_softmax(x, axis=1, out=out),
                        {"x": x}, (N, C), np.float64, ("x",)),
        "softmax": (lambda out, x: fastlog.softmax(x, axis=1, out=out),
                    {"x": x}, (N, C), np.float64, ("x",)),
        "softmax_temperature": (lambda out, x: fastlog.softmax(x, axis=1, out=out, temperature=2.0),
                                {"x": x}, (N, C), np.float64, ("x",)),
        "log_softmax_axis0": (lambda out, x: fastlog.log_softmax(x, axis=0, out=out),
                              {"x": x}, (N, C), np.float64, ("x",)),
        "log_softmax_backward": (
            lambda out, grad_output, output: fastlog.log_softmax_backward(grad_output, output, axis=1,
                                                                          out=out),
            {"grad_output": g, "output": lsm}, (N, C), np.float64, ("grad_output", "output")),
        "softmax_backward": (
            lambda out, grad_output, output: fastlog.softmax_backward(grad_output, output, axis=1,
                                                                      out=out),
            {"grad_output": g, "output": p}, (N, C), np.float64, ("grad_output", "output")),
        "cross_entropy_and_grad": (
            lambda out, input, target: fastlog.cross_entropy_and_grad(input, target, out=out),
            {"input": x, "target": y}, (N, C), np.float64, ("input",)),
        "cross_entropy_and_grad_weighted": (
            lambda out, input, target, weight: fastlog.cross_entropy_and_grad(
                input, target, weight, label_smoothing=0.1, reduction="none", out=out),
            {"input": x, "target": y, "weight": w}, (N, C), np.float64, ("input",)),
        "cross_entropy_and_grad_prob": (
            lambda out, input, target: fastlog.cross_entropy_and_grad(input, target, out=out),
            {"input": x, "target": p}, (N, C), np.float64, ("input",)),
        "nll_loss_and_grad": (
            lambda out, input, target, weight: fastlog.nll_loss_and_grad(input, target, weight,
                                                                         out=out),
            {"input": lsm, "target": y, "weight": w}, (N, C), np.float64, ("input",)),
        "bce_and_grad": (
            lambda out, input, target, weight, pos_weight:
                fastlog.binary_cross_entropy_with_logits_and_grad(input, target, weight,
                                                                  pos_weight=pos_weight, out=out),
            {"input": x, "target": yb, "weight": yb + 0.5, "pos_weight": w},
            (N, C), np.float64, ("input",)),
    }


SPEC = _spec()


def _result(r):
    """The out-receiving result of a call (the gradient of the *_and_grad ones) and the loss."""
    if isinstance(r, tuple):
        return r[1], r[0]
    return r, None


def _layout(arr, out_shape, out_dtype, shift_bytes):
    """`arr`'s values and an `out` in one buffer, out starting shift_bytes after arr
    (before it when negative)."""
    out_nbytes = int(np.prod(out_shape)) * np.dtype(out_dtype).itemsize
    a0 = max(0, -shift_bytes)
    o0 = max(0, shift_bytes)
    buf = np.zeros(max(a0 + arr.nbytes, o0 + out_nbytes) + 16, np.uint8)
    a = buf[a0:a0 + arr.nbytes].view(arr.dtype).reshape(arr.shape)
    a[...] = arr
    out = buf[o0:o0 + out_nbytes].view(out_dtype).reshape(out_shape)
    return a, out


def _shifts(arr, out_shape, out_dtype):
    it = np.dtype(out_dtype).itemsize
    row = out_shape[-1] * it
    s = {0, it, row, arr.nbytes - arr.itemsize, -it, -row}
    return sorted(v for v in s if -np.prod(out_shape) * it < v < arr.nbytes)


CASES = [(fn, name, shift) for fn, (_, inputs, shape, dt, _) in SPEC.items()
         for name, arr in inputs.items() for shift in _shifts(arr, shape, dt)]


@pytest.mark.parametrize("fn,name,shift", CASES, ids=[f"{f}-{n}-{s}" for f, n, s in CASES])
def test_overlap_rule(fn, name, shift):
    call, inputs, shape, dt, inplace = SPEC[fn]
    ref_out, ref_loss = _result(call(None, **{k: v.copy() for k, v in inputs.items()}))
    shared, out = _layout(inputs[name], shape, dt, shift)
    args = dict(inputs)
    args[name] = shared
    before = {k: v.copy() for k, v in args.items()}
    identical = shift == 0 and shared.shape == out.shape and shared.dtype == out.dtype
    if identical and name in inplace:
        got_out, got_loss = _result(call(out, **args))
        assert got_out is out
        np.testing.assert_allclose(out, ref_out, rtol=1e-12, atol=1e-14)
        if ref_loss is not None:
            np.testing.assert_allclose(got_loss, ref_loss, rtol=1e-12)
        return
    with pytest.raises(ValueError) as ei:
        call(out, **args)
    msg = str(ei.value)
    assert "out" in msg and name in msg, msg
    for k, v in args.items():   # nothing was written
        np.testing.assert_array_equal(v, before[k])


@pytest.mark.parametrize("fn", list(SPEC))
def test_interleaved_is_not_an_overlap(fn):
    """out and an input in alternate columns of one array: bounds overlap, no common
    element: allowed, and correct."""
    call, inputs, shape, dt, _ = SPEC[fn]
    name = next(iter(inputs))
    arr = inputs[name]
    if arr.shape != shape or arr.dtype != dt:
        pytest.skip("needs an input of out's shape")
    ref_out, ref_loss = _result(call(None, **{k: v.copy() for k, v in inputs.items()}))
    big = np.zeros(shape[:-1] + (2 * shape[-1],), dt)
    big[..., ::2] = arr
    args = dict(inputs)
    args[name] = big[..., ::2]
    out = big[..., 1::2]
    got_out, got_loss = _result(call(out, **args))
    np.testing.assert_allclose(out, ref_out, rtol=1e-12, atol=1e-14)
    np.testing.assert_array_equal(big[..., ::2], arr)


def test_issue_segfault_out_over_targets():
    """The issue's crash: int64 targets viewing the first bytes of the gradient buffer."""
    buf = np.zeros(512 * 300)
    t = buf[:512].view(np.int64)
    t[:] = RNG.integers(0, 300, 512)
    x = RNG.standard_normal((512, 300))
    for f in (fastlog.cross_entropy_and_grad, fastlog.nll_loss_and_grad):
        with pytest.raises(ValueError, match="out.*target"):
            f(x, t, out=buf.reshape(512, 300))
    # out identical to the input, with targets inside the input's bytes: still an overlap
    with pytest.raises(ValueError, match="target"):
        fastlog.cross_entropy_and_grad(buf.reshape(512, 300), t, out=buf.reshape(512, 300))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_fast_path_shapes(dtype):
    """The 64 x 10 fast path applies the same rule (row shift, element shift, in place)."""
    x = _x(dtype, (65, 10))
    y = RNG.integers(0, 10, 64)
    ref_loss, ref_g = fastlog.cross_entropy_and_grad(x[:64].copy(), y)
    for sl in (slice(1, 65),):
        with pytest.raises(ValueError, match="out overlaps input"):
            fastlog.cross_entropy_and_grad(x[:64], y, out=x[sl])
    flat = x.reshape(-1)
    with pytest.raises(ValueError, match="out overlaps input"):
        fastlog.cross_entropy_and_grad(x[:64], y, out=flat[1:641].reshape(64, 10))
    xi = x[:64].copy()
    loss, g = fastlog.cross_entropy_and_grad(xi, y, out=xi)
    assert g is xi
    tol = 1e-6 if dtype == np.float32 else 1e-14
    np.testing.assert_allclose(g, ref_g, rtol=tol, atol=tol)
    np.testing.assert_allclose(loss, ref_loss, rtol=tol)


def test_check_overlap_unit():
    a = np.zeros((4, 4))
    check_overlap(a, ((a, "x"),), inplace=("x",))                 # identical, allowed
    check_overlap(a[:, ::2], ((a[:, 1::2], "x"),))                # interleaved
    check_overlap(a, ((None, "w"), ([1.0], "t"), (3, "s")))       # non-arrays skipped
    with pytest.raises(ValueError, match="out overlaps x"):
        check_overlap(a, ((a, "x"),))                             # identical, not allowed
    with pytest.raises(ValueError, match="out overlaps x"):
        check_overlap(a[1:], ((a[:3], "x"),), inplace=("x",))
    with pytest.raises(ValueError, match="out overlaps x"):
        check_overlap(a.T, ((a, "x"),), inplace=("x",))           # same bytes, other strides
    with pytest.raises(ValueError, match="grad overlaps weight"):
        check_overlap(a, ((a[0], "weight"),), out_name="grad")
