"""The one reduction owner (fastlog._losses._reduce) and the kernels that return final answers.

* ``_reduce.finish`` / ``grad_scale`` follow PyTorch's conventions for every reduction,
  for empty and fully ignored batches and with label smoothing (oracle: torch, and the
  IEEE division they come from);
* the gradient-given-logsumexp kernel (vocabulary-parallel and half-precision fused
  linear + cross-entropy) against a float64 reference, including a target whose
  probability is close to 1 (where ``softmax - 1`` cancels);
* the float64 logsumexp kernel; the PyTorch-semantics options of the row kernels
  (NaN rows of log_softmax, NaN gradients of ignored rows without a log-softmax)
  against torch.
"""
import math

import numpy as np
import pytest

import fastlog
from fastlog._dispatch import core
from fastlog._enums import Reduction
from fastlog._losses import _reduce
from _optional import optional

torch = optional("torch")
F = optional("torch.nn.functional")


# ------------------------------------------------------------------ reduce --
@pytest.mark.parametrize("red", ["none", "mean", "sum"])
@pytest.mark.parametrize("eps", [0.0, 0.2])
@pytest.mark.parametrize("case", ["all_ignored", "empty", "zero_weights", "ordinary"])
def test_cross_entropy_conventions_match_torch(red, eps, case):
    """Loss and gradient of the degenerate batches torch defines: an empty batch, every
    target ignored, counted targets of weight 0 (0/0 -> NaN; with label smoothing NaN
    through every counted row)."""
    rng = np.random.default_rng(1)
    x = rng.standard_normal((0 if case == "empty" else 4, 5))
    t = rng.integers(0, 5, len(x))
    w = np.linspace(0.5, 1.5, 5)
    if case == "all_ignored":
        t[:] = -100
    if case == "zero_weights":
        w[t] = 0.0
    loss, g = fastlog.cross_entropy_and_grad(x, t, w, reduction=red, label_smoothing=eps)
    xt = torch.tensor(x, requires_grad=True)
    ref = F.cross_entropy(xt, torch.tensor(t), torch.tensor(w), reduction=red, label_smoothing=eps)
    ref.sum().backward()
    np.testing.assert_allclose(loss, ref.detach().numpy(), rtol=1e-12, equal_nan=True)
    np.testing.assert_allclose(g, xt.grad.numpy(), rtol=1e-12, atol=1e-15, equal_nan=True)


def test_finish_rules():
    """finish(): IEEE division for 'mean', exact totals where the fast one overflowed,
    batchmean, the loss dtype of half-precision inputs, 0-d 'none' results as scalars."""
    big = 0.9 * np.finfo(np.float64).max
    terms = np.array([big, big, -big, -big, 1.0])
    f64 = np.dtype(np.float64)
    assert _reduce.finish(terms, math.inf, 5, Reduction.SUM, f64) == 1.0   # exact total
    assert _reduce.finish(terms, math.nan, 5, Reduction.MEAN, f64) == 0.2
    assert _reduce.finish(lambda: terms, math.inf, 5, Reduction.SUM, f64) == 1.0
    assert math.isnan(_reduce.finish(None, 0.0, 0.0, Reduction.MEAN, f64))
    assert _reduce.finish(None, -3.0, 0.0, Reduction.MEAN, f64) == -math.inf
    assert math.isnan(_reduce.finish(None, 2.0, 0.0, Reduction.MEAN, f64, smoothing=0.1))
    assert math.isnan(_reduce.finish(None, 0.0, 1.0, Reduction.SUM, f64, smoothing=0.1, classes=0))
    assert _reduce.finish(None, 6.0, 4.0, Reduction.BATCHMEAN, f64) == 1.5
    r = _reduce.finish(None, 1.0 / 3.0, 1.0, Reduction.SUM, np.dtype(np.float16))
    assert type(r) is np.float32 and r == np.float32(1 / 3)
    v = _reduce.finish(np.array([2.5]), 2.5, 1, Reduction.NONE, np.dtype(np.float32), ())
    assert type(v) is np.float32 and v == 2.5
    assert _reduce.exact_total([big, big, -big]) == big
    assert _reduce.exact_total([big, big]) == math.inf
    assert math.isnan(_reduce.exact_total([math.inf, -math.inf]))
    assert _reduce.grad_scale(Reduction.MEAN, 4.0) == 0.25
    assert _reduce.grad_scale(Reduction.MEAN, 0.0) == math.inf
    assert math.isnan(_reduce.grad_scale(Reduction.MEAN, 0.0, 0.1))
    assert _reduce.grad_scale(Reduction.SUM, 0.0, 0.1) == 1.0


# --------------------------------------------- gradient given logsumexp --
def _grad_lse_ref(x, lse, k, s, ycol, w, W):
    x = x.astype(np.float64)
    p = np.exp(x - lse[:, None])
    g = (k + s * W)[:, None] * p - s[:, None] * (1.0 if w is None else w.astype(np.float64))[None, :]
    rows = np.flatnonzero(ycol >= 0)
    g[rows, ycol[rows]] -= k[rows]
    g[(k == 0) & (s == 0)] = 0.0
    return g


@pytest.mark.parametrize("dt", [np.float32, np.float64])
@pytest.mark.parametrize("m", [7, 300])
def test_ce_grad_lse_matches_reference(dt, m):
    """The gradient of a block of columns from the rows' logsumexp over all classes:
    weights, smoothing, a target in the block or elsewhere (-1), ignored rows (0), a
    large common offset, written in place; against the float64 formula, each entry
    within a few ulps of the row's largest gradient entry."""
    rng = np.random.default_rng(2)
    n, C = 9, 3 * m
    X = rng.standard_normal((n, C)) * 3 + 1e4 * (dt == np.float32)
    X = X.astype(dt)
    c0 = m
    x = np.ascontiguousarray(X[:, c0:c0 + m])
    from scipy.special import logsumexp
    lse = logsumexp(X.astype(np.float64), axis=1)
    t = rng.integers(0, C, n)
    t[2] = c0 + 3
    wall = np.linspace(0.5, 2.0, C).astype(dt)
    eps, scale = 0.1, 1.0 / n
    wy = wall[t].astype(np.float64)
    k = scale * (1 - eps) * wy
    s = np.full(n, scale * eps / C)
    k[4] = s[4] = 0.0                        # an ignored row
    ycol = np.where((t >= c0) & (t < c0 + m), t - c0, -1)
    W = float(wall.astype(np.float64).sum())
    w = np.ascontiguousarray(wall[c0:c0 + m])
    out = np.empty_like(x)
    core.ce_grad_lse(x, lse, k, s, ycol, w, W, out)
    ref = _grad_lse_ref(x, lse, k, s, ycol, w, W)
    scale_row = np.abs(ref).max(axis=1, keepdims=True) + 1e-300
    assert (np.abs(out - ref) <= 8 * np.finfo(dt).eps * scale_row).all()
    assert (out[4] == 0).all()
    xi = x.copy()
    core.ce_grad_lse(xi, lse, k, s, ycol, w, W, xi)       # in place
    np.testing.assert_array_equal(xi, out)
    with fastlog.num_threads(1):
        one = np.empty_like(x)
        core.ce_grad_lse(x, lse, k, s, ycol, w, W, one)
    np.testing.assert_array_equal(one, out)


def test_ce_grad_lse_target_close_to_one():
    """A target of probability 1 - 1e-6: its gradient -1e-6 is formed without
    cancellation (float32: every bit of it, where exp(x - lse) - 1 would keep none)."""
    import mpmath as mp
    x = np.array([[20.0, 20.0 - 14.5, 0.0]], np.float32)
    with mp.workdps(50):
        xs = [mp.mpf(float(v)) for v in x[0]]
        lse = mp.log(sum(mp.e ** v for v in xs))
        want = float(mp.e ** (xs[0] - lse) - 1)
    out = np.empty_like(x)
    core.ce_grad_lse(x, np.array([float(lse)]), np.array([1.0]), np.array([0.0]), np.array([0]), None,
                     3.0, out)
    assert abs(out[0, 0] - want) <= 2 * abs(np.spacing(np.float32(want)))


@pytest.mark.parametrize("dt", [np.float32, np.float64])
@pytest.mark.parametrize("C", [5, 64, 65, 3000])
def test_lse_rows_d(dt, C):
    """The float64 logsumexp of float32/float64 rows: SciPy's values (inf, -inf, NaN
    rows too), to float64 accuracy for float64 input."""
    from scipy.special import logsumexp
    rng = np.random.default_rng(3)
    x = (rng.standard_normal((70, C)) * 4).astype(dt)
    x[1, 0] = np.inf
    x[2, :] = -np.inf
    x[3, 1] = np.nan
    out = np.empty(70)
    core.lse_rows_d(x, out)
    ref = logsumexp(x.astype(np.float64), axis=1)
    tol = 1e-15 if dt == np.float64 else 2e-7
    np.testing.assert_allclose(out, ref, rtol=tol, atol=tol, equal_nan=True)


# ----------------------------------------------- PyTorch-semantics options --
def test_log_softmax_nanrow_is_torch():
    """nanrow: a row holding +inf (or all -inf) is NaN everywhere, as torch gives; without
    it SciPy's -inf/NaN pattern.  Short and long rows, float32/float64 and half."""
    import scipy.special as sp
    from fastlog import _half
    for C in (4, 100):
        x = np.random.default_rng(4).standard_normal((5, C))
        x[0, 1] = np.inf
        x[1, :] = -np.inf
        x[2, 0] = np.nan
        dts = [np.float32, np.float64, np.float16] + ([_half.bfloat16()] if _half.bfloat16() else [])
        for dt in dts:
            xd = x.astype(dt)
            out = np.empty_like(xd)
            core.unary_rows(0, xd, out, C, True)
            ref = torch.log_softmax(torch.tensor(xd.astype(np.float32)), 1).numpy()
            np.testing.assert_allclose(out.astype(np.float32), ref, rtol=1e-2 if xd.itemsize == 2 else 1e-5,
                                       atol=1e-2 if xd.itemsize == 2 else 1e-6, equal_nan=True)
            core.unary_rows(0, xd, out, C, False)
            np.testing.assert_allclose(out.astype(np.float64)[:2], sp.log_softmax(x[:2], axis=1),
                                       rtol=1e-2, equal_nan=True)


@pytest.mark.parametrize("C", [4, 100])
@pytest.mark.parametrize("dt", ["float32", "float64", "float16", "bfloat16"])
def test_ignored_rows_nan_gradient_is_torch(C, dt):
    """ign_nan: the gradient of an ignored position whose logits have no log-softmax (a
    NaN or +inf logit, or all -inf) is NaN, as torch's 0 - exp(NaN) * 0; other ignored
    positions 0.  Without it 0 everywhere (the NumPy face's rule)."""
    from fastlog import _half
    npdt = _half.bfloat16() if dt == "bfloat16" else np.dtype(dt)
    if npdt is None:
        pytest.skip("ml_dtypes not installed")
    x = np.random.default_rng(5).standard_normal((6, C))
    x[0, 1] = np.inf
    x[1, :] = -np.inf
    x[2, 0] = np.nan
    t = np.array([-100, -100, -100, -100, 1, 2])
    xd = x.astype(npdt)
    loss = np.empty(6)
    g = np.empty_like(xd)
    core.ce_index(xd, t, None, -100, 0.0, Reduction.SUM, g, loss, True)
    xt = torch.tensor(xd.astype(np.float32) if xd.itemsize == 2 else xd, requires_grad=True)
    F.cross_entropy(xt, torch.tensor(t), reduction="sum").backward()
    gt = xt.grad.numpy()
    np.testing.assert_array_equal(np.isnan(g.astype(np.float32)), np.isnan(gt))
    assert (g[3].astype(np.float32) == 0).all()
    core.ce_index(xd, t, None, -100, 0.0, Reduction.SUM, g, loss, False)
    assert (g[:4].astype(np.float32) == 0).all()
