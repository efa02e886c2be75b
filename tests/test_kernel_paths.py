"""The compiled kernels' internal paths, against SciPy and the float64 reference.

The row kernels switch on the class count C: rows of C <= 64 go through the
transposed small-C path (64 rows per vector group), longer rows through the
row path, whose last partial vector is padded with -inf; rows are cut into
chunks for threads.  These tests walk across those boundaries, at every ISA
level (conftest.py).  They need neither torch nor anything else optional, so
they also run where torch is not installed (aarch64 under emulation).
"""
import numpy as np
import pytest
import scipy.special as sp

import fastlog
from fastlog import _reference as ref
from fastlog._dispatch import core

# C values on and around every internal boundary: small-C limit (64),
# vector widths (4, 8, 16 lanes), the 1024-element summation block.
CS = [1, 2, 7, 8, 9, 15, 16, 17, 31, 33, 63, 64, 65, 127, 1023, 1024, 1025, 2049]
# N around the 64-row group of the small-C path.
NS = [1, 3, 63, 64, 65, 130]


def _tol(dt):
    return (2e-5, 2e-6) if dt == np.float32 else (1e-12, 1e-13)


@pytest.mark.parametrize("dt", [np.float32, np.float64])
@pytest.mark.parametrize("C", CS)
def test_softmax_family_across_paths(C, dt):
    rng = np.random.default_rng(C)
    for N in NS:
        x = (rng.standard_normal((N, C)) * 4).astype(dt)
        x[0, 0] = x[0].max() if C > 1 else x[0, 0]      # a tie with the max
        rtol, atol = _tol(dt)
        np.testing.assert_allclose(fastlog.log_softmax(x, axis=-1), sp.log_softmax(x, axis=-1),
                                   rtol=rtol, atol=atol)
        np.testing.assert_allclose(fastlog.softmax(x, axis=-1), sp.softmax(x, axis=-1),
                                   rtol=rtol, atol=atol)
        np.testing.assert_allclose(fastlog.logsumexp(x, axis=-1), sp.logsumexp(x, axis=-1),
                                   rtol=rtol, atol=atol)


@pytest.mark.parametrize("dt", [np.float32, np.float64])
@pytest.mark.parametrize("C", CS)
def test_cross_entropy_across_paths(C, dt):
    rng = np.random.default_rng(100 + C)
    w = rng.random(C).astype(dt) + 0.1
    for N in NS:
        x = (rng.standard_normal((N, C)) * 4).astype(dt)
        y = rng.integers(0, C, N)
        y[::5] = -100
        for eps in (0.0, 0.25):
            loss, grad = fastlog.cross_entropy_and_grad(x, y, weight=w, label_smoothing=eps)
            with np.errstate(invalid="ignore"):   # every row ignored: 0 / 0, as torch
                rl, rg = ref.cross_entropy_and_grad(x.astype(np.float64), y, weight=w.astype(np.float64),
                                                    label_smoothing=eps)
            rtol, atol = _tol(dt)
            if np.isnan(rl):
                assert np.isnan(loss)
            else:
                np.testing.assert_allclose(loss, rl, rtol=rtol, atol=atol)
            np.testing.assert_allclose(grad, rg, rtol=rtol, atol=atol)


@pytest.mark.parametrize("C", [3, 10, 64, 65, 1000])
def test_special_rows_in_both_paths(C):
    """-inf masks, +inf, NaN, all -inf and huge logits, in the small and row paths."""
    rows = []
    base = np.linspace(-3, 3, C)
    r = base.copy(); r[1:] = -np.inf; rows.append(r)              # one finite entry
    r = base.copy(); r[C // 2] = np.inf; rows.append(r)            # +inf
    r = base.copy(); r[-1] = np.nan; rows.append(r)                # NaN
    rows.append(np.full(C, -np.inf))                              # all -inf
    r = base.copy(); r[0] = np.inf; r[-1] = np.nan; rows.append(r)  # +inf and NaN
    r = np.full(C, -np.inf); r[-1] = np.nan; rows.append(r)        # -inf and NaN
    rows.append(base * 1e30)                                       # huge finite
    rows.append(base + 1e6)                                        # large common offset
    x = np.array(rows)
    with np.errstate(all="ignore"):
        for ours, ref in ((fastlog.log_softmax, sp.log_softmax), (fastlog.softmax, sp.softmax),
                          (fastlog.logsumexp, sp.logsumexp)):
            np.testing.assert_allclose(ours(x, axis=-1), ref(x, axis=-1), rtol=1e-12, atol=0,
                                       equal_nan=True, err_msg=ours.__name__)


def test_in_place_gradient_both_paths():
    rng = np.random.default_rng(5)
    for C in (10, 1000):
        x = rng.standard_normal((200, C)).astype(np.float32)
        y = rng.integers(0, C, 200)
        loss_ref, g_ref = fastlog.cross_entropy_and_grad(x.copy(), y)
        buf = x.copy()
        loss, g = fastlog.cross_entropy_and_grad(buf, y, out=buf)
        assert g is buf
        assert loss == loss_ref
        np.testing.assert_array_equal(g, g_ref)


@pytest.mark.parametrize("dt", [np.float32, np.float64])
def test_exp_nonpos_variant_ulp(dt):
    """The exp the softmax kernels call (arguments <= 0) is within 1 ULP of
    the correctly rounded result over its whole range, subnormals included."""
    if dt == np.float32:
        x = np.concatenate([np.linspace(-104, 0, 400_001), -np.logspace(-30, 2, 20_001)]).astype(dt)
        ref = np.exp(x.astype(np.float64))
    else:
        x = np.concatenate([np.random.default_rng(0).uniform(-746, 0, 200_000),
                            -np.logspace(-300, 2.5, 2_001)])
        ref = np.exp(x.astype(np.longdouble))
    out = np.empty_like(x)
    core.exp_array(x, out, True)
    ulp = np.spacing(ref.astype(dt)).astype(ref.dtype)
    err = np.abs(out.astype(ref.dtype) - ref) / ulp
    assert float(err.max()) <= 1.0
    edge = np.array([-np.inf, -1e30, 0.0, -0.0, np.nan], dt)
    out = np.empty_like(edge)
    core.exp_array(edge, out, True)
    np.testing.assert_array_equal(out[:4], [0, 0, 1, 1])
    assert np.isnan(out[4])
