"""Losses with torch.nn.functional semantics, and the fused loss+gradient calls.

Oracles: torch 2.13 on the same data (float64 and float32; gradients from
autograd of the loss, summed for reduction='none'), fastlog._reference (plain
NumPy float64) and 4th-order finite differences in float64.
"""
import itertools
import math

import numpy as np
import pytest
from _optional import optional  # noqa: E402
torch = optional("torch")   # only the tests that use it skip without torch
F = optional("torch.nn.functional")
from hypothesis import given, settings
from hypothesis import strategies as st

import fastlog as fl
from fastlog import _reference as ref

from conftest import assert_close, assert_unchanged, exact_sum, layouts, mp_prob_ce_rows, snapshot, tol

REDUCTIONS = ("none", "mean", "sum")
# (input shape): 1-D (C,) with a 0-d target, rows, K-dim, empty batch.  K-dim
# shapes with d1*...*dk == 1 (or C == 1), whose class axis moved last is
# already C-contiguous: the gradient once overwrote such an input (found by the differential fuzz).
CE_SHAPES = [(7,), (6, 5), (4, 3, 2), (3, 4, 2, 3), (1, 1), (0, 4), (0, 3, 2), (4, 3, 1),
             (3, 1, 1, 1), (2, 1, 3)]

pytestmark = pytest.mark.filterwarnings("ignore:reduction. 'mean' divides:UserWarning")


def _t(a):
    return None if a is None else torch.tensor(np.array(a, copy=True))  # keeps 0-d arrays 0-d


def torch_loss_grad(fn, x, *args, **kw):
    """torch's loss and d(sum of losses)/dx."""
    xt = torch.tensor(np.array(x, copy=True), requires_grad=True)
    args = [_t(a) if isinstance(a, np.ndarray) else a for a in args]
    kw = {k: (_t(v) if isinstance(v, np.ndarray) else v) for k, v in kw.items()}
    loss = fn(xt, *args, **kw)
    if loss.numel():
        loss.sum().backward()
        g = xt.grad.numpy()
    else:
        g = np.zeros(x.shape, x.dtype)
    return loss.detach().numpy(), g


def check_loss_grad(ours, theirs, dtype, what, scale=1.0, k=16):
    eps = tol(dtype)
    (l1, g1), (l0, g0) = ours, theirs
    assert np.asarray(l1).dtype == dtype, f"{what}: loss dtype {np.asarray(l1).dtype}"
    assert g1.dtype == dtype and g1.shape == np.shape(g0), f"{what}: grad {g1.dtype} {g1.shape}"
    assert_close(l1, l0, k * eps, k * eps * scale, f"{what}: loss")
    assert_close(g1, g0, k * eps, k * eps * scale, f"{what}: grad")


def _class_dims(shape):
    C = shape[0] if len(shape) == 1 else shape[1]
    batch = () if len(shape) == 1 else (shape[0],) + shape[2:]
    return C, batch


def _index_target(rng, C, batch, ignore_index):
    t = np.array(rng.integers(0, max(C, 1), batch) if C else np.zeros(batch), dtype=np.int64)
    if t.size and ignore_index != -100:
        t[rng.random(batch) < 0.3] = ignore_index
    return t


def _prob_target(rng, shape, dtype):
    p = rng.random(shape)
    p /= np.maximum(p.sum(axis=0 if len(shape) == 1 else 1, keepdims=True), 1e-300)
    return p.astype(dtype)


# ------------------------------------------------------- cross-entropy --
@pytest.mark.parametrize("shape", CE_SHAPES, ids=str)
def test_cross_entropy_index_targets_match_torch(shape, dtype):
    """All parameters together: weight x ignore_index (default, in range,
    outside [0, C) both ways) x label_smoothing x reduction, loss and grad."""
    rng = np.random.default_rng(10)
    C, batch = _class_dims(shape)
    x = (rng.standard_normal(shape) * 4).astype(dtype)
    for weighted, ii, ls, red in itertools.product((False, True), (-100, 1, C + 2, -1),
                                                   (0.0, 0.25, 1.0), REDUCTIONS):
        w = (rng.random(C) + 0.1).astype(dtype) if weighted else None
        t = _index_target(rng, C, batch, ii)
        kw = dict(weight=w, ignore_index=ii, reduction=red, label_smoothing=ls)
        what = f"CE {shape} {kw}"
        want = torch_loss_grad(F.cross_entropy, x, t, **kw)
        snap = snapshot(x, t, w)
        got = fl.cross_entropy_and_grad(x, t, **kw)
        loss_only = fl.cross_entropy(x, t, **kw)
        assert_unchanged(snap)
        check_loss_grad(got, want, dtype, what)
        assert_close(loss_only, got[0], 2 * tol(dtype), 0, f"{what}: fused vs unfused")
        if dtype == np.float64:
            check_loss_grad(got, ref.cross_entropy_and_grad(x, t, **kw), dtype, what + " (reference)")


@pytest.mark.parametrize("shape", [(7,), (6, 5), (4, 3, 2), (0, 3), (4, 3, 1)], ids=str)
def test_cross_entropy_probability_targets_match_torch(shape, dtype):
    rng = np.random.default_rng(11)
    C, _ = _class_dims(shape)
    x = (rng.standard_normal(shape) * 4).astype(dtype)
    for weighted, ls, red, soft in itertools.product((False, True), (0.0, 0.3, 1.0), REDUCTIONS,
                                                     (True, False)):
        w = (rng.random(C) + 0.1).astype(dtype) if weighted else None
        # normalized probabilities, or arbitrary non-negative scores
        t = _prob_target(rng, shape, dtype) if soft else (rng.random(shape) * 3).astype(dtype)
        kw = dict(weight=w, reduction=red, label_smoothing=ls)
        what = f"CE-prob {shape} {kw} soft={soft}"
        want = torch_loss_grad(F.cross_entropy, x, t, **kw)
        snap = snapshot(x, t, w)
        got = fl.cross_entropy_and_grad(x, t, **kw)
        loss_only = fl.cross_entropy(x, t, **kw)
        assert_unchanged(snap)
        check_loss_grad(got, want, dtype, what, scale=4)
        assert_close(loss_only, got[0], 2 * tol(dtype), 0, f"{what}: fused vs unfused")
        if dtype == np.float64:
            check_loss_grad(got, ref.cross_entropy_and_grad(x, t, **kw), dtype, what + " (reference)", 4)


@pytest.mark.parametrize("weighted", [False, True])
def test_cross_entropy_all_ignored(weighted, dtype):
    """Every target ignored: 'mean' is NaN (0/0) as in torch, 'sum' 0, 'none' zeros;
    gradients as torch's autograd gives them."""
    rng = np.random.default_rng(12)
    x = rng.standard_normal((4, 3)).astype(dtype)
    w = rng.random(3).astype(dtype) if weighted else None
    t = np.full(4, 7)
    for red in REDUCTIONS:
        want = torch_loss_grad(F.cross_entropy, x, t, weight=w, ignore_index=7, reduction=red)
        got = fl.cross_entropy_and_grad(x, t, weight=w, ignore_index=7, reduction=red)
        check_loss_grad(got, want, dtype, f"all ignored {red}")
        if red == "mean":
            assert np.isnan(got[0]) and np.isnan(fl.cross_entropy(x, t, weight=w, ignore_index=7))


def test_cross_entropy_zero_weight_sum(dtype):
    """Weights that sum to zero over the batch: mean is NaN, as torch."""
    x = np.arange(6, dtype=dtype).reshape(2, 3)
    w = np.array([0, 1, 1], dtype)
    t = np.array([0, 0])
    want = torch_loss_grad(F.cross_entropy, x, t, weight=w)
    check_loss_grad(fl.cross_entropy_and_grad(x, t, weight=w), want, dtype, "zero weight sum")


@pytest.mark.parametrize("tdtype", [np.int8, np.uint8, np.int32, np.int64, np.uint64])
def test_integer_target_dtypes(tdtype):
    rng = np.random.default_rng(13)
    x = rng.standard_normal((5, 4))
    t = rng.integers(0, 4, 5)
    want = fl.cross_entropy_and_grad(x, t)
    got = fl.cross_entropy_and_grad(x, t.astype(tdtype))
    np.testing.assert_array_equal(got[0], want[0])
    np.testing.assert_array_equal(got[1], want[1])
    np.testing.assert_array_equal(fl.nll_loss(x, t.astype(tdtype)), fl.nll_loss(x, t))


# ----------------------------------------------------------------- NLL --
@pytest.mark.parametrize("shape", CE_SHAPES, ids=str)
def test_nll_loss_matches_torch(shape, dtype):
    rng = np.random.default_rng(14)
    C, batch = _class_dims(shape)
    x = fl.log_softmax((rng.standard_normal(shape) * 3).astype(dtype), axis=0 if len(shape) == 1 else 1) \
        if C else np.zeros(shape, dtype)
    for weighted, ii, red in itertools.product((False, True), (-100, 0, C + 1, -3), REDUCTIONS):
        w = (rng.random(C) + 0.1).astype(dtype) if weighted else None
        t = _index_target(rng, C, batch, ii)
        kw = dict(weight=w, ignore_index=ii, reduction=red)
        what = f"NLL {shape} {kw}"
        want = torch_loss_grad(F.nll_loss, x, t, **kw)
        snap = snapshot(x, t, w)
        got = fl.nll_loss_and_grad(x, t, **kw)
        loss_only = fl.nll_loss(x, t, **kw)
        assert_unchanged(snap)
        check_loss_grad(got, want, dtype, what, scale=4)
        np.testing.assert_array_equal(loss_only, got[0])
        if dtype == np.float64:
            check_loss_grad(got, ref.nll_loss_and_grad(x, t, **kw), dtype, what + " (reference)", 4)


# ----------------------------------------------------- BCE with logits --
BCE_SHAPES = [(), (7,), (5, 4), (3, 4, 2), (0, 3)]


def _bce_params(rng, shape, dtype):
    """weight/pos_weight variants: none, full shape, broadcast along the last
    (class) axis, a broadcastable (1, C) or 0-d array."""
    ws = [None, rng.random(shape).astype(dtype)]
    pws = [None, np.array(2.5, dtype)]
    if len(shape) >= 1:
        ws.append(rng.random(shape[-1:]).astype(dtype))
        pws.append((rng.random(shape[-1:]) * 4).astype(dtype))
    if len(shape) >= 2:
        ws.append(rng.random((1, shape[-1])).astype(dtype))
    return ws, pws


@pytest.mark.parametrize("shape", BCE_SHAPES, ids=str)
def test_bce_with_logits_matches_torch(shape, dtype):
    rng = np.random.default_rng(15)
    x = (rng.standard_normal(shape) * 5).astype(dtype)
    if x.size >= 4:
        x.flat[:4] = [1e4, -1e4, 80.0, -80.0]       # large |x|: no overflow, exact tails
    y = rng.random(shape).astype(dtype)
    if y.size >= 2:
        y.flat[:2] = [0.0, 1.0]
    ws, pws = _bce_params(rng, shape, dtype)
    for w, pw, red in itertools.product(ws, pws, REDUCTIONS):
        kw = dict(weight=w, pos_weight=pw, reduction=red)
        what = (f"BCE {shape} weight={None if w is None else w.shape} "
                f"pos_weight={None if pw is None else pw.shape} {red}")
        want = torch_loss_grad(F.binary_cross_entropy_with_logits, x, y, **kw)
        snap = snapshot(x, y, w, pw)
        got = fl.binary_cross_entropy_with_logits_and_grad(x, y, **kw)
        loss_only = fl.binary_cross_entropy_with_logits(x, y, **kw)
        assert_unchanged(snap)
        check_loss_grad(got, want, dtype, what, scale=4)
        np.testing.assert_array_equal(loss_only, got[0])
        if dtype == np.float64:
            check_loss_grad(got, ref.binary_cross_entropy_with_logits_and_grad(x, y, **kw), dtype,
                            what + " (reference)", 4)


def test_bce_extreme_logits_are_exact(dtype):
    """|x| up to 1e30: loss = max(x, 0) - x*y + log1p(exp(-|x|)) has no overflow."""
    x = np.array([1e30, -1e30, 1e20, -1e20, 200.0, -200.0], dtype)
    y = np.array([0.0, 1.0, 0.3, 0.7, 0.5, 0.5], dtype)
    want = torch_loss_grad(F.binary_cross_entropy_with_logits, x, y, reduction="none")
    got = fl.binary_cross_entropy_with_logits_and_grad(x, y, reduction="none")
    assert np.all(np.isfinite(got[0])) and np.all(np.isfinite(got[1]))
    check_loss_grad(got, want, dtype, "extreme logits")


# -------------------------------------------------------------- kl_div --
@pytest.mark.parametrize("shape", [(), (6,), (4, 5), (3, 4, 2), (0, 3)], ids=str)
@pytest.mark.parametrize("log_target", [False, True])
def test_kl_div_matches_torch(shape, log_target, dtype):
    rng = np.random.default_rng(16)
    x = np.log(rng.random(shape) + 1e-3).astype(dtype)
    t = rng.random(shape)
    if t.size >= 2:
        t.flat[:2] = [0.0, 1.0]                     # xlogy(0, 0) = 0
    with np.errstate(divide="ignore"):
        t = (np.log(t) if log_target else t).astype(dtype)     # log(0) = -inf: exp(t) = 0
    for red in REDUCTIONS + ("batchmean",):
        kw = dict(reduction=red, log_target=log_target)
        want = F.kl_div(torch.tensor(x), torch.tensor(t), **kw).numpy()
        snap = snapshot(x, t)
        with np.errstate(divide="ignore"):
            got = fl.kl_div(x, t, **kw)
        assert_unchanged(snap)
        assert np.asarray(got).dtype == dtype
        eps = tol(dtype)
        assert_close(got, want, 16 * eps, 16 * eps, f"kl_div {shape} {kw}")
        if dtype == np.float64:
            assert_close(got, ref.kl_div(x, t, **kw), 16 * eps, 16 * eps, f"kl_div {shape} {kw} (ref)")


# ------------------------------------------------ finite differences --
def fd4(f, x, h=1e-4):
    """4th-order central difference gradient of scalar f at x (float64)."""
    g = np.empty_like(x)
    for i in np.ndindex(x.shape):
        def at(d):
            xp = x.copy()
            xp[i] += d
            return float(np.sum(f(xp)))
        g[i] = (-at(2 * h) + 8 * at(h) - 8 * at(-h) + at(-2 * h)) / (12 * h)
    return g


FD_CASES = [
    ("ce", (5, 4), dict(reduction="mean")),
    ("ce", (5, 4), dict(reduction="none", label_smoothing=0.2, ignore_index=2)),
    ("ce", (3, 4, 2), dict(reduction="sum", label_smoothing=0.1, weighted=True)),
    ("ce", (6,), dict(reduction="mean", weighted=True)),
    ("ce-prob", (4, 5), dict(reduction="mean", label_smoothing=0.3, weighted=True)),
    ("ce-prob", (2, 3, 2), dict(reduction="none")),
    ("nll", (5, 4), dict(reduction="mean", weighted=True, ignore_index=1)),
    ("nll", (2, 3, 3), dict(reduction="none")),
    ("bce", (4, 3), dict(reduction="mean", pos_weight=True, weighted=True)),
    ("bce", (5,), dict(reduction="none")),
]


@pytest.mark.parametrize("kind,shape,opts", FD_CASES, ids=lambda v: str(v))
def test_fused_gradient_finite_difference(kind, shape, opts):
    rng = np.random.default_rng(17)
    x = rng.standard_normal(shape) * 2
    C, batch = _class_dims(shape)
    opts = dict(opts)
    weighted = opts.pop("weighted", False)
    if kind in ("ce", "nll"):
        w = rng.random(C) + 0.5 if weighted else None
        t = _index_target(rng, C, batch, opts.get("ignore_index", -100))
        f = fl.cross_entropy if kind == "ce" else fl.nll_loss
        fg = fl.cross_entropy_and_grad if kind == "ce" else fl.nll_loss_and_grad
        args, kw = (t,), dict(opts, weight=w)
    elif kind == "ce-prob":
        w = rng.random(C) + 0.5 if weighted else None
        args, kw = (_prob_target(rng, shape, np.float64),), dict(opts, weight=w)
        f, fg = fl.cross_entropy, fl.cross_entropy_and_grad
    else:
        y = rng.random(shape)
        pw = rng.random(shape[-1:]) * 3 if opts.pop("pos_weight", False) else None
        w = rng.random(shape) if weighted else None
        args, kw = (y,), dict(opts, weight=w, pos_weight=pw)
        f, fg = fl.binary_cross_entropy_with_logits, fl.binary_cross_entropy_with_logits_and_grad
    loss, g = fg(x, *args, **kw)
    num = fd4(lambda xp: f(xp, *args, **kw), x)
    np.testing.assert_allclose(g, num, rtol=1e-7, atol=1e-9)


# --------------------------------------------------------------- out= --
def _fused_cases(rng, dtype):
    """(name, fused function, input, extra args, kwargs) for every fused call."""
    out = []
    for shape in [(7,), (6, 5), (4, 3, 2)]:
        C, batch = _class_dims(shape)
        x = (rng.standard_normal(shape) * 3).astype(dtype)
        t = _index_target(rng, C, batch, 1)
        w = rng.random(C).astype(dtype)
        out.append(("ce", fl.cross_entropy_and_grad, x, (t,),
                    dict(weight=w, ignore_index=1, label_smoothing=0.1)))
        out.append(("ce-prob", fl.cross_entropy_and_grad, x, (_prob_target(rng, shape, dtype),), {}))
        out.append(("nll", fl.nll_loss_and_grad, x, (t,), dict(weight=w, ignore_index=1)))
        out.append(("bce", fl.binary_cross_entropy_with_logits_and_grad, x,
                    (rng.random(shape).astype(dtype),), dict(pos_weight=w[:shape[-1]] * 0 + 2)))
    return out


@pytest.mark.parametrize("red", REDUCTIONS)
def test_out_is_written_in_place(red, dtype):
    """out= receives the gradient (np.shares_memory); out=input works in place
    and gives the same loss and gradient; non-contiguous outs work."""
    rng = np.random.default_rng(18)
    for name, fg, x, args, kw in _fused_cases(rng, dtype):
        kw = dict(kw, reduction=red)
        what = f"{name} {x.shape} {red}"
        loss0, g0 = fg(x, *args, **kw)
        outs = [np.empty_like(x)]
        if x.ndim >= 2:
            outs.append(np.empty(x.shape[::-1], dtype).T)                      # Fortran
        outs.append(np.empty(x.shape[:-1] + (2 * x.shape[-1],), dtype)[..., ::2])  # strided
        outs.append(np.empty_like(x)[::-1])                                    # negative stride
        for out in outs:
            loss, g = fg(x, *args, **kw, out=out)
            assert g is out and np.shares_memory(g, out), what
            np.testing.assert_array_equal(loss, loss0, err_msg=what)
            np.testing.assert_array_equal(out, g0, err_msg=what)
        # out=input: in place, same answer
        xi = x.copy()
        loss, g = fg(xi, *args, **kw, out=xi)
        assert g is xi, what
        np.testing.assert_array_equal(loss, loss0, err_msg=what + " out=input loss")
        np.testing.assert_array_equal(xi, g0, err_msg=what + " out=input grad")
        # out=input with a Fortran-ordered input
        if x.ndim >= 2:
            xf = np.asfortranarray(x)
            loss, g = fg(xf, *args, **kw, out=xf)
            assert g is xf
            np.testing.assert_array_equal(loss, loss0)
            np.testing.assert_array_equal(xf, g0)


# ------------------------------------------------------------ layouts --
def test_every_layout_gives_the_contiguous_answer(dtype):
    """Fortran order, negative strides, non-contiguous slices and byte-swapped
    inputs, targets and weights: bit-for-bit the contiguous result."""
    rng = np.random.default_rng(19)
    for name, fg, x, args, kw in _fused_cases(rng, dtype):
        unfused = {"ce": fl.cross_entropy, "ce-prob": fl.cross_entropy, "nll": fl.nll_loss,
                   "bce": fl.binary_cross_entropy_with_logits}[name]
        for red in REDUCTIONS:
            l0, g0 = fg(x, *args, **kw, reduction=red)
            for (lx, xv), (lt, tv) in zip(layouts(x), layouts(args[0])):
                kwv = dict(kw)
                if "weight" in kwv:
                    kwv["weight"] = layouts(kw["weight"])[-2][1]               # strided weight
                snap = snapshot(xv, tv, *kwv.values())
                l1, g1 = fg(xv, tv, **kwv, reduction=red)
                l2 = unfused(xv, tv, **kwv, reduction=red)
                assert_unchanged(snap)
                what = f"{name} {x.shape} {red} input {lx} target {lt}"
                np.testing.assert_array_equal(l1, l0, err_msg=what)
                np.testing.assert_array_equal(g1, g0, err_msg=what)
                np.testing.assert_array_equal(l2, l1, err_msg=what)


# --------------------------------------------------------- hypothesis --
@settings(max_examples=50, deadline=None)
@given(n=st.integers(0, 6), c=st.integers(1, 9), k=st.integers(0, 3), seed=st.integers(0, 2 ** 31),
       weighted=st.booleans(), eps=st.sampled_from([0.0, 0.05, 0.5, 1.0]),
       red=st.sampled_from(REDUCTIONS), use_ignore=st.booleans(), scale=st.sampled_from([1.0, 30.0, 1e4]))
def test_hypothesis_cross_entropy_matches_reference(n, c, k, seed, weighted, eps, red, use_ignore, scale):
    rng = np.random.default_rng(seed)
    shape = (n, c) + (2,) * k if k else (n, c)
    x = rng.standard_normal(shape) * scale
    C, batch = _class_dims(shape)
    ii = int(rng.integers(-2, c + 2)) if use_ignore else -100
    t = _index_target(rng, C, batch, ii)
    w = rng.random(c) + 0.05 if weighted else None
    kw = dict(weight=w, ignore_index=ii, reduction=red, label_smoothing=eps)
    got = fl.cross_entropy_and_grad(x, t, **kw)
    want = ref.cross_entropy_and_grad(x, t, **kw)
    check_loss_grad(got, want, np.dtype(np.float64), f"{shape} {kw}", scale=scale * 4, k=32)
    # float32 of the same data against torch float32
    x32 = x.astype(np.float32)
    w32 = None if w is None else w.astype(np.float32)
    kw32 = dict(kw, weight=w32)
    check_loss_grad(fl.cross_entropy_and_grad(x32, t, **kw32),
                    torch_loss_grad(F.cross_entropy, x32, t, **kw32), np.dtype(np.float32),
                    f"f32 {shape} {kw}", scale=scale * 4, k=32)


# ------------------------------------------------------- non-finite rows --
@pytest.mark.parametrize("ls", [0.0, 0.1])
@pytest.mark.parametrize("red", REDUCTIONS)
def test_cross_entropy_non_finite_rows_match_torch(ls, red, dtype):
    """Rows with +inf logits, all -inf, a nan, -inf masks (target masked or not):
    torch's loss and gradient, nan where torch's log_softmax is nan."""
    inf, nan = np.inf, np.nan
    x = np.array([[inf, 1, 2], [1, inf, inf], [-inf, -inf, -inf], [nan, 1, 2],
                  [1, 2, 3], [-inf, 1, 2], [-inf, 1, 2], [inf, inf, inf]], dtype)
    for t in (np.array([1, 0, 0, 1, 0, 0, 1, 2]), np.array([0, 1, 2, 0, 2, 1, 0, 0])):
        want = torch_loss_grad(F.cross_entropy, x, t, reduction=red, label_smoothing=ls)
        check_loss_grad(fl.cross_entropy_and_grad(x, t, reduction=red, label_smoothing=ls), want, dtype,
                        f"index {t}")
        # rows one at a time too (a nan row must not leak into the others)
        for i in range(len(t)):
            want = torch_loss_grad(F.cross_entropy, x[i:i + 1], t[i:i + 1], reduction=red, label_smoothing=ls)
            check_loss_grad(fl.cross_entropy_and_grad(x[i:i + 1], t[i:i + 1], reduction=red,
                                                      label_smoothing=ls), want, dtype, f"row {i}")
    p = np.full(x.shape, 1 / 3, dtype)
    want = torch_loss_grad(F.cross_entropy, x, p, reduction=red, label_smoothing=ls)
    check_loss_grad(fl.cross_entropy_and_grad(x, p, reduction=red, label_smoothing=ls), want, dtype, "prob")


def test_bce_infinite_logits_match_torch(dtype):
    inf = np.inf
    x = np.array([inf, inf, inf, -inf, -inf, -inf, np.nan, 0.0], dtype)
    y = np.array([0, 0.5, 1, 0, 0.5, 1, 0.5, 0.5], dtype)
    for pw in (None, np.array(2.0, dtype)):
        want = torch_loss_grad(F.binary_cross_entropy_with_logits, x, y, reduction="none", pos_weight=pw)
        check_loss_grad(fl.binary_cross_entropy_with_logits_and_grad(x, y, reduction="none", pos_weight=pw),
                        want, dtype, f"pos_weight={pw}")


def test_kl_div_partial_sum_overflow_is_not_inf():
    """float64 terms near the limit whose exact total is finite: not -inf/+inf from
    an intermediate overflow of the summation order."""
    big = np.finfo(np.float64).max
    x = np.array([-0.9, -0.9, 0.9, 0.5]) * big   # pointwise -t*x with t=1: +,+,-,- terms
    t = np.ones(4)
    got = fl.kl_div(x, t, reduction="sum")
    exact = float(sum(-v for v in (x / 2.0**64).tolist())) * 2.0**64
    assert np.isfinite(got) and got == pytest.approx(exact, rel=1e-12)
    ref = F.kl_div(torch.tensor(x), torch.tensor(t), reduction="sum").item()
    assert got == pytest.approx(ref, rel=1e-12) or not np.isfinite(ref)


def test_smoothing_with_minus_inf_logit_when_gradient_overwrites_rows():
    """float32, label smoothing, a -inf logit: the loss is +inf (eps/C * -log 0), also
    where the gradient is written over the rows (K-dim private copy, out=input).
    The float64-overflow fix once re-read those rows and gave a finite loss (found by
    the differential fuzz)."""
    inf = np.inf
    x2 = np.array([[3.0, -inf, -1.5], [1.0, 2.0, 3.0]], np.float32)
    t = np.array([2, 0])
    want = torch_loss_grad(F.cross_entropy, x2, t, reduction="none", label_smoothing=0.1)
    xk = np.ascontiguousarray(x2[:, :, None])                  # (N, C, 1)
    got_k = fl.cross_entropy_and_grad(xk, t[:, None], reduction="none", label_smoothing=0.1)
    check_loss_grad((got_k[0][:, 0], got_k[1][:, :, 0]), want, np.dtype(np.float32), "K-dim")
    xi = x2.copy()
    got_i = fl.cross_entropy_and_grad(xi, t, reduction="none", label_smoothing=0.1, out=xi)
    check_loss_grad(got_i, want, np.dtype(np.float32), "out=input")
    p = np.full((2, 3, 1), 1 / 3, np.float32)
    got_p = fl.cross_entropy_and_grad(xk, p, reduction="none", label_smoothing=0.1)
    assert got_p[0][0, 0] == inf and np.isfinite(got_p[0][1, 0])


@pytest.mark.parametrize("signs", [(1, 1, -1, -1, 1), (1, 1, 1, -1), (-1, -1, 1),
                                   (1, -1, 1, -1, 1, 1)], ids=str)
def test_batch_sums_near_float64_limit_are_exact(signs):
    """Per-position losses of +-0.9 * float64 max: the batch total is the exact sum
    (finite where it is, +-inf only where the exact sum overflows, never NaN from an
    intermediate inf - inf), whatever the summation order (found by the differential fuzz)."""
    big = 0.9 * np.finfo(np.float64).max
    n = len(signs)
    # nll: loss_i = -x[i, t_i]
    x = np.zeros((n, 2))
    x[np.arange(n), 0] = [-s * big for s in signs]
    t = np.zeros(n, np.int64)
    want = exact_sum([s * big for s in signs])
    for fn in (fl.nll_loss, lambda *a, **k: fl.nll_loss_and_grad(*a, **k)[0]):
        assert fn(x, t, reduction="sum") == want
        assert fn(np.ascontiguousarray(x[:, :, None]), t[:, None], reduction="sum") == want
        m = fn(x, t, reduction="mean")
        assert m == (want / n if math.isfinite(want) else want)
    # kl_div: pointwise -t * x with t = 1
    assert fl.kl_div(np.array([-s * big for s in signs]), np.ones(n), reduction="sum") == want
    # BCE with logits, y = 0: weights carry the size and sign of the terms
    xb = np.full(n, math.log(math.e - 1))   # loss ~1 per unit weight
    unit = float(fl.binary_cross_entropy_with_logits(xb[:1], np.zeros(1), reduction="sum"))
    w = np.array([s * big for s in signs]) / unit
    got = fl.binary_cross_entropy_with_logits(xb, np.zeros(n), weight=w, reduction="sum")
    terms = fl.binary_cross_entropy_with_logits(xb, np.zeros(n), weight=w, reduction="none")
    assert got == exact_sum(terms)


@pytest.mark.parametrize("dt", [np.float32, np.float64])
def test_probability_targets_first_logit_far_below_max(dt):
    """Probability-target CE with a first logit far below the row's max (-1e28
    against 4e15): the kernel's reference logit was the first finite one, every
    term w t (x - r0) was ~1e28 and the loss lost 4 digits (found by the differential fuzz).
    Oracle: mpmath."""
    import mpmath as mp
    x = np.array([[-1.1263748671186148e+28, 1535403349065.5593, -929564258953438.2,
                   -1531987395093.7896, 3898818291858705.5, -1.7209018493615055e+19]], dt)
    t = np.array([[0.0, 1.0, 1.0, 1.0, 0.0, 0.25]], dt)
    w = np.array([1e-3, 0.5, 1.25, 1.75, 1.0, 0.5], dt)
    with mp.workdps(60):
        xr = [mp.mpf(float(v)) for v in x[0]]
        m = max(xr)
        lse = m + mp.log(sum(mp.e ** (v - m) for v in xr))
        want = float(sum(-float(w[c]) * float(t[0, c]) * (xr[c] - lse) for c in range(6)))
    for fn in (fl.cross_entropy, lambda *a, **k: fl.cross_entropy_and_grad(*a, **k)[0]):
        got = fn(x, t, weight=w, reduction="none")
        assert_close(got.astype(np.float64), np.array([want]), 4 * tol(dt), 0, "CE prob")


@pytest.mark.parametrize("C", [3, 40])      # the small-C (grouped) kernel and the row kernel
@pytest.mark.parametrize("big", [1e300, np.finfo(np.float64).max])
def test_smoothing_with_target_far_below_max(C, big):
    """Label smoothing, target logit far below the row's max (1e300 or float64 max
    against -0.29): the smoothing sum was taken relative to the target logit and
    W (lse - x_y) - sum_c w_c (x_c - x_y) cancelled to 1e283 (or inf - inf, then
    0 from the overflow fix) where the loss is 0.227 (found by the differential fuzz).  Oracle:
    mpmath."""
    import mpmath as mp
    x = np.full((2, C), big)
    x[:, 2] = -0.29
    x[1] = np.linspace(-1, 1, C)   # an ordinary row alongside
    w = np.linspace(0.3, 1.7, C)
    w[2] = 0.0
    t = np.array([2, 2])
    eps = 0.5
    want = []
    with mp.workdps(80):
        for r in range(2):
            xr = [mp.mpf(float(v)) for v in x[r]]
            m = max(xr)
            ls = mp.log(sum(mp.e ** (v - m) for v in xr))   # lse - x_c = (m - x_c) + ls
            sm = sum(float(w[c]) * ((m - xr[c]) + ls) for c in range(C))
            want.append(float((1 - eps) * float(w[2]) * ((m - xr[2]) + ls) + eps / C * sm))
    for fn in (fl.cross_entropy, lambda *a, **k: fl.cross_entropy_and_grad(*a, **k)[0]):
        got = fn(x, t, w, reduction="none", label_smoothing=eps)
        assert_close(got, np.array(want), 1e-12, 0, f"C={C} big={big}")
    ref = F.cross_entropy(torch.tensor(x), torch.tensor(t), torch.tensor(w), reduction="none",
                          label_smoothing=eps).numpy()
    assert_close(ref, np.array(want), 1e-12, 0, "torch agrees")


def test_kl_div_float32_terms_beyond_float32_are_summed_in_float64():
    """float32 KL terms that overflow float32 on their own (e * -3.4e38) while the
    float64 total is finite: the reduced loss is that total (float32 losses are
    accumulated in float64), not -inf or NaN (found by the differential fuzz)."""
    big = float(np.finfo(np.float32).max)
    x = np.array([big, -big, -big, -big / 2], np.float32)
    t = np.array([1.0, 0.0, 0.0, 0.0], np.float32)             # log targets
    x64, t64 = x.astype(np.float64), t.astype(np.float64)
    terms = np.exp(t64) * (t64 - x64)
    want = exact_sum(terms)
    assert np.isfinite(want) and abs(want) < big
    assert fl.kl_div(x, t, reduction="sum", log_target=True) == np.float32(want)
    assert fl.kl_div(x, t, reduction="mean", log_target=True) == np.float32(want / 4)
    assert np.isneginf(fl.kl_div(x, t, reduction="none", log_target=True)[0])   # as torch


@pytest.mark.parametrize("C", [3, 40])
def test_smoothing_with_target_far_below_max_half(C):
    """As above through the half-precision rows (bfloat16 storage, float32 compute):
    the reference logit must be the largest logit's value, not its storage bits."""
    from fastlog import _half
    bf16 = _half.bfloat16()
    if bf16 is None:
        pytest.skip("ml_dtypes not installed")
    x = np.full((2, C), 1e30)
    x[:, 2] = -0.29
    x[1] = np.linspace(-1, 1, C)
    xb = x.astype(bf16)
    w = np.linspace(0.3, 1.7, C).astype(np.float32)
    w[2] = 0.0
    t = np.array([2, 2])
    want = fl.cross_entropy(xb.astype(np.float64), t, w.astype(np.float64), reduction="none",
                            label_smoothing=0.5)
    got = fl.cross_entropy(xb, t, w, reduction="none", label_smoothing=0.5)
    assert_close(np.asarray(got, np.float64), want, 1e-2, 0, f"bf16 C={C}")


def _overflowing_log_probability_row():
    """Probability targets (one negative, as torch accepts) with logits of +-float64
    max: -log p_c = 2 max overflows, but the exact loss is 2.6e307; it was -inf
    (torch: NaN) (found by the differential fuzz).  Returns the row, its targets, class weights,
    smoothing and the exact loss (mpmath)."""
    big = np.finfo(np.float64).max
    x = np.array([[big, -0.07661957712747713, -big]])
    t = np.array([[0.9065460289284621, 1.6349354870437178, -0.1021265641566676]])
    w = np.array([1.8640, 0.1562, 0.7495])
    eps = 0.1
    return x, t, w, eps, float(mp_prob_ce_rows(x, t, w, eps)[0])


def test_probability_targets_overflowing_log_probability_finite_loss():
    x, t, w, eps, want = _overflowing_log_probability_row()
    for fn in (fl.cross_entropy, lambda *a, **k: fl.cross_entropy_and_grad(*a, **k)[0]):
        got = fn(x, t, w, reduction="none", label_smoothing=eps)
        assert_close(got, np.array([want]), 1e-12, 0, "prob, +-max logits")


def test_probability_targets_overflowing_log_probability_finite_loss_torch():
    """The same row through fastlog.torch (value and 'sum'), where torch itself gives NaN:
    the exact loss (deliberate difference 4 of the fastlog.torch docstring)."""
    x, t, w, eps, want = _overflowing_log_probability_row()
    xt = torch.tensor(x, requires_grad=True)   # (skips here without torch)
    import fastlog.torch as FLT
    args = (xt, torch.tensor(t))
    kw = dict(weight=torch.tensor(w), label_smoothing=eps)
    assert torch.isnan(F.cross_entropy(*args, reduction="none", **kw)).all()   # torch's overflow
    got = FLT.cross_entropy(*args, reduction="none", **kw)
    assert_close(got.detach().numpy(), np.array([want]), 1e-12, 0, "torch face, none")
    tot = FLT.cross_entropy(*args, reduction="sum", **kw)
    assert_close(float(tot.detach()), want, 1e-12, 0, "torch face, sum")
    tot.backward()   # d/dx = p * sum_c w_c t'_c - w t' : finite, as torch's
    gt = torch.tensor(x, requires_grad=True)
    F.cross_entropy(gt, args[1], reduction="sum", **kw).backward()
    assert_close(xt.grad.numpy(), gt.grad.numpy(), 1e-12, 0, "torch face, gradient")
