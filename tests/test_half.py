"""float16 and bfloat16 (ml_dtypes) on the NumPy face.

Oracle: fastlog._reference (plain float64 NumPy) evaluated on the SAME rounded
half-precision inputs.  Every output / gradient element must lie within 1 ulp
of the output dtype of that float64 value (fastlog rounds once from float32:
0.5 ulp plus float32's error); reduced losses within 1e-6 relative.  Also:
the conversions themselves bit for bit against NumPy / ml_dtypes, thread-count
bit identity, out= and in-place, the documented result dtypes, and errors.
Run at every ISA level this CPU supports (the isa_level fixture of conftest.py).
"""
import subprocess
import sys

import numpy as np
import pytest

import fastlog as fl
from fastlog import _reference as ref
from fastlog._dispatch import core

ml_dtypes = pytest.importorskip("ml_dtypes")
BF16 = np.dtype(ml_dtypes.bfloat16)
F16 = np.dtype(np.float16)
HALVES = [F16, BF16]
IDS = ["float16", "bfloat16"]

# mantissa bits (incl. the implicit one) and the smallest normal exponent
_P = {F16: (11, -14), BF16: (8, -126)}


def ulps(out, r, dt):
    """|out - r| in ulps of dtype dt at the exact value r (float64).

    Non-finite r (or an r whose rounding overflows) must be matched exactly by
    out's rounded value; NaN where r is NaN."""
    p, emin = _P[dt]
    o = np.asarray(out).astype(np.float64)
    r = np.asarray(r, np.float64)
    o, r = np.broadcast_arrays(o, r)
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        rr = r.astype(dt).astype(np.float64)          # r rounded (may overflow to inf)
        special = ~np.isfinite(rr)
        e = np.floor(np.log2(np.abs(r)))
        e = np.where(np.isfinite(e), np.maximum(e, emin), emin)
        u = np.abs(o - r) / 2.0 ** (e - (p - 1))
    bad_special = special & ~((o == rr) | (np.isnan(o) & np.isnan(rr)))
    u = np.where(special, np.where(bad_special, np.inf, 0.0), u)
    return u


def assert_ulp(out, r, dt, bound=1.0, atol=0.0):
    """Every element within `bound` ulps of r -- or within `atol` of it: the
    label-smoothing gradient p_c coef - (eps/C) w_c cancels where p_c is close
    to (eps/C) w_c / coef, and there the float32 kernel's error of the terms
    (a few float32 ulps of gscale (eps/C) w_c, depending on FMA contraction in
    the ISA build) can exceed an ulp of the tiny result."""
    u = ulps(out, r, dt)
    if atol:
        u = np.where(np.abs(np.asarray(out).astype(np.float64) - r) <= atol, 0.0, u)
    assert u.size == 0 or u.max() <= bound, f"max {u.max():.3g} ulp at {np.unravel_index(np.argmax(u), u.shape)}"
    return float(u.max()) if u.size else 0.0


def rnd(a, dt):
    return np.asarray(a, np.float64).astype(dt)


def log_softmax64(x, axis=-1):
    """float64 log_softmax as (x - max) - log(sum exp(x - max)): x - max is exact
    for half inputs, so huge logits with tied maxima keep their log(1/k)
    (reference.log_softmax's x - logsumexp(x) rounds that away)."""
    z = x - np.max(x, axis=axis, keepdims=True)
    return z - np.log(np.sum(np.exp(z), axis=axis, keepdims=True))


def logits(rng, shape, dt, kind="normal"):
    x = rng.standard_normal(shape) * 3
    if kind == "dominant":      # the target class (column 0) holds softmax >= 0.999
        x[..., 0] = x.max(axis=-1) + np.log(shape[-1]) + 8 + rng.random(x.shape[:-1])
    elif kind == "masked":      # -inf entries (never a whole row)
        x[rng.random(shape) < 0.3] = -np.inf
        x[..., 0] = 1.0
    elif kind == "huge":
        big = 3e4 if dt == F16 else 1e30
        x = x * (big / 30) + big * 0.9 * np.sign(rng.standard_normal(shape[:-1] + (1,)))
        x = np.clip(x, -6e4, 6e4) if dt == F16 else x
    return rnd(x, dt)


# ------------------------------------------------------------ conversion --
@pytest.mark.parametrize("dt", HALVES, ids=IDS)
def test_every_half_value_converts_exactly(dt):
    bits = np.arange(1 << 16, dtype=np.uint16)
    h = bits.view(dt)[3:]                      # odd length: vector body and scalar tail
    out = np.empty(h.size, np.float32)
    core.half_to_float32(h, out)
    want = h.astype(np.float32)
    nan = np.isnan(want)
    assert np.array_equal(np.isnan(out), nan)
    assert np.array_equal(out[~nan].view(np.uint32), want[~nan].view(np.uint32))


@pytest.mark.parametrize("dt", HALVES, ids=IDS)
def test_float32_rounds_to_nearest_even(dt):
    rng = np.random.default_rng(1)
    hb = rng.integers(0, 1 << 16, 20000).astype(np.uint16).view(dt).astype(np.float32)
    hb = hb[np.isfinite(hb)]
    step = np.spacing(hb)                      # float32 neighbours of half values, and ties
    vals = np.concatenate([
        rng.standard_normal(5000).astype(np.float32) * 10.0 ** rng.integers(-8, 8, 5000),
        hb, hb + step, hb - step,
        (hb.astype(np.float64) + np.spacing(hb.astype(dt)).astype(np.float64) / 2).astype(np.float32),
        np.array([0.0, -0.0, np.inf, -np.inf, np.nan, 65504, 65519, 65520, 1e-8, -6e-8, 3e38,
                  3.4e38, 1e-40, -1e-45], np.float32),
    ]).astype(np.float32)
    vals = vals[:-1]                           # odd length
    out = np.empty(vals.size, dt)
    core.float32_to_half(vals, out)
    want = vals.astype(dt)
    nan = np.isnan(want.astype(np.float32))
    assert np.array_equal(np.isnan(out.astype(np.float32)), nan)
    assert np.array_equal(out[~nan].view(np.uint16), want[~nan].view(np.uint16))


@pytest.mark.one_isa_level
def test_import_fastlog_does_not_import_ml_dtypes():
    code = "import sys, fastlog; fastlog.log_softmax([1.0, 2.0]); print('ml_dtypes' in sys.modules)"
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "False"


# -------------------------------------------------------- softmax family --
@pytest.mark.parametrize("dt", HALVES, ids=IDS)
@pytest.mark.parametrize("C", [10, 100, 1000])
@pytest.mark.parametrize("kind", ["normal", "dominant", "masked", "huge"])
def test_softmax_family_within_one_ulp(dt, C, kind):
    rng = np.random.default_rng(C)
    x = logits(rng, (37, C), dt, kind)
    x64 = x.astype(np.float64)
    y = fl.log_softmax(x, axis=-1)
    assert y.dtype == dt
    assert_ulp(y, log_softmax64(x64), dt)
    s = fl.softmax(x, axis=-1)
    assert s.dtype == dt
    assert_ulp(s, ref.softmax(x64, axis=-1), dt)
    lse = fl.logsumexp(x, axis=-1)
    assert lse.dtype == dt
    assert_ulp(lse, ref.logsumexp(x64, axis=-1), dt)
    # backward passes, from the (rounded) outputs
    go = rnd(rng.standard_normal(x.shape), dt)
    g64, y64, s64 = go.astype(np.float64), y.astype(np.float64), s.astype(np.float64)
    gl = fl.log_softmax_backward(go, y, axis=-1)
    assert gl.dtype == dt
    want = g64 - np.exp(y64) * g64.sum(-1, keepdims=True)
    finite = np.isfinite(want)
    assert_ulp(gl[finite], want[finite], dt, bound=1.0 if kind != "masked" else 1.0)
    gs = fl.softmax_backward(go, s, axis=-1)
    assert_ulp(gs, s64 * (g64 - (g64 * s64).sum(-1, keepdims=True)), dt)


@pytest.mark.parametrize("dt", HALVES, ids=IDS)
def test_softmax_family_axes_temperature_and_b(dt):
    rng = np.random.default_rng(3)
    x = logits(rng, (4, 6, 5), dt)
    x64 = x.astype(np.float64)
    assert_ulp(fl.log_softmax(x, axis=(0, 2)), ref.log_softmax(x64, axis=(0, 2)), dt)
    assert_ulp(fl.softmax(x), ref.softmax(x64), dt)
    r = fl.softmax(x, axis=1, temperature=2.5)
    assert r.dtype == dt
    # x / T is formed in float32 (one rounding), then the softmax is rounded once
    assert_ulp(r, ref.softmax((x.astype(np.float32) / np.float32(2.5)).astype(np.float64), axis=1), dt)
    b = rnd(rng.random(x.shape), dt)
    v = fl.logsumexp(x, axis=2, b=b)
    assert v.dtype == dt
    assert_ulp(v, np.log(np.sum(b.astype(np.float64) * np.exp(x64), axis=2)), dt)
    v0 = fl.logsumexp(x[0, 0, 0])
    assert v0.dtype == dt and v0 == x[0, 0, 0]


@pytest.mark.parametrize("dt", HALVES, ids=IDS)
def test_non_finite_rows_match_float32_semantics(dt):
    x = np.array([[1.0, np.inf, 2.0] * 30, [-np.inf] * 90, [1.0, np.nan, 0.0] * 30,
                  [0.5, -1.0, 3.0] * 30], np.float64)
    xh = x.astype(dt)
    for f in (fl.log_softmax, fl.softmax):
        a = f(xh, axis=-1).astype(np.float64)
        b = f(x.astype(np.float32), axis=-1).astype(np.float64)
        assert np.array_equal(np.isnan(a), np.isnan(b))
        assert np.array_equal(a[np.isinf(b)], b[np.isinf(b)])
    a = fl.logsumexp(xh, axis=-1).astype(np.float64)
    b = fl.logsumexp(x.astype(np.float32), axis=-1).astype(np.float64)
    assert np.array_equal(np.isnan(a), np.isnan(b)) and np.array_equal(a[np.isinf(b)], b[np.isinf(b)])
    t = np.array([0, 1, 2, 2])
    la, ga = fl.cross_entropy_and_grad(xh, t, reduction="none")
    lb, gb = fl.cross_entropy_and_grad(x.astype(np.float32), t, reduction="none")
    assert np.array_equal(np.isnan(la.astype(np.float32)), np.isnan(lb))
    assert np.array_equal(np.isnan(ga.astype(np.float32)), np.isnan(gb))


# ---------------------------------------------------------- cross-entropy --
CE_CASES = [
    dict(),
    dict(reduction="sum"),
    dict(reduction="none"),
    dict(weight=True),
    dict(ignore_index=1),
    dict(label_smoothing=0.1),
    dict(weight=True, label_smoothing=0.2, ignore_index=2, reduction="sum"),
]


def _ce_args(case, rng, C, dt):
    kw = dict(case)
    if kw.pop("weight", None):
        kw["weight"] = rnd(rng.random(C) + 0.5, dt)     # torch: weight in the input's dtype
    return kw


def _smoothing_atol(x, t, kw):
    """4 float32 ulps of the label-smoothing term gscale (eps/C) max(w) (see assert_ulp)."""
    eps = kw.get("label_smoothing", 0.0)
    if not eps:
        return 0.0
    C = x.shape[1] if x.ndim > 1 else x.shape[0]
    w = kw.get("weight")
    wmax = 1.0 if w is None else float(np.max(np.asarray(w, np.float64)))
    n = max(1, int(np.sum(np.asarray(t) != kw.get("ignore_index", -100))))
    gscale = 1.0 if kw.get("reduction", "mean") != "mean" else 1.0 / n
    return 4 * 2.0 ** -24 * gscale * eps / C * wmax


def _check_ce(x, t, kw, dt, want_loss_dt):
    loss, g = fl.cross_entropy_and_grad(x, t, **kw)
    rkw = dict(kw)
    if "weight" in rkw:
        rkw["weight"] = rkw["weight"].astype(np.float64)
    rl, rg = ref.cross_entropy_and_grad(x.astype(np.float64), t, **rkw)
    if not rkw and np.isinf(x).any():
        # masked logits: the reference's smoothing term is 0 * inf; the loss is -log p_y
        nll = -log_softmax64(x.astype(np.float64))[np.arange(x.shape[0]), t]
        rl = nll.mean()
    assert g.dtype == dt and g.shape == x.shape
    gu = assert_ulp(g, rg, dt, atol=_smoothing_atol(x, t, kw))
    l_only = fl.cross_entropy(x, t, **kw)
    if kw.get("reduction", "mean") == "none":
        assert loss.dtype == dt
        assert_ulp(loss, rl, dt)
    else:
        assert type(loss) is np.float32 and want_loss_dt == np.float32
        np.testing.assert_allclose(float(loss), rl, rtol=1e-6)
    np.testing.assert_array_equal(np.asarray(l_only).astype(np.float64), np.asarray(loss).astype(np.float64))
    return gu


@pytest.mark.parametrize("dt", HALVES, ids=IDS)
@pytest.mark.parametrize("C", [10, 1000])
@pytest.mark.parametrize("case", CE_CASES)
def test_cross_entropy_index_targets(dt, C, case):
    rng = np.random.default_rng(C)
    x = logits(rng, (41, C), dt)
    t = rng.integers(0, C, 41)
    t[::7] = case.get("ignore_index", -100)
    _check_ce(x, t, _ce_args(case, rng, C, dt), dt, np.float32)


@pytest.mark.parametrize("dt", HALVES, ids=IDS)
@pytest.mark.parametrize("kind", ["dominant", "masked", "huge"])
@pytest.mark.parametrize("C", [10, 3000])
def test_cross_entropy_hard_inputs(dt, kind, C):
    """Target classes with softmax >= 0.999 (the `softmax - 1` trap), masked
    logits, huge logits: every gradient element within 1 ulp."""
    rng = np.random.default_rng(7)
    x = logits(rng, (23, C), dt, kind)
    t = np.zeros(23, np.int64)
    if kind == "dominant":
        p0 = ref.softmax(x.astype(np.float64), axis=-1)[:, 0]
        assert p0.min() >= 0.999
    _check_ce(x, t, {}, dt, np.float32)
    if kind != "masked":
        _check_ce(x, t, {"reduction": "sum"}, dt, np.float32)


@pytest.mark.parametrize("dt", HALVES, ids=IDS)
def test_cross_entropy_kdim_and_probability_targets(dt):
    rng = np.random.default_rng(5)
    x = logits(rng, (3, 7, 4, 5), dt)
    t = rng.integers(0, 7, (3, 4, 5))
    _check_ce(x, t, {}, dt, np.float32)
    _check_ce(x, t, {"reduction": "none", "weight": rnd(rng.random(7) + 0.5, dt)}, dt, np.float32)
    p = rng.random(x.shape)
    p = rnd(p / p.sum(axis=1, keepdims=True), dt)
    for kw in ({}, {"label_smoothing": 0.1, "reduction": "sum"}, {"reduction": "none"},
               {"weight": rnd(rng.random(7) + 0.5, dt)}):
        loss, g = fl.cross_entropy_and_grad(x, p, **kw)
        rkw = {k: (v.astype(np.float64) if k == "weight" else v) for k, v in kw.items()}
        rl, rg = ref.cross_entropy_and_grad(x.astype(np.float64), p.astype(np.float64), **rkw)
        assert_ulp(g, rg, dt)
        if kw.get("reduction") == "none":
            assert_ulp(loss, rl, dt)
        else:
            np.testing.assert_allclose(float(loss), rl, rtol=1e-6)


def test_cross_entropy_never_worse_than_torch():
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(11)
    for dt, tdt in ((BF16, torch.bfloat16), (F16, torch.float16)):
        for kind in ("normal", "dominant"):
            x = logits(rng, (64, 2000), dt, kind)
            t = rng.integers(0, 2000, 64) if kind == "normal" else np.zeros(64, np.int64)
            rl, rg = ref.cross_entropy_and_grad(x.astype(np.float64), t)
            loss, g = fl.cross_entropy_and_grad(x, t)
            xt = torch.tensor(x.astype(np.float32)).to(tdt).requires_grad_()
            tl = torch.nn.functional.cross_entropy(xt, torch.tensor(t))
            tl.backward()
            ours, theirs = ulps(g, rg, dt).max(), ulps(xt.grad.float().numpy(), rg, dt).max()
            assert ours <= max(theirs, 1.0)
            assert abs(float(loss) - rl) <= abs(float(tl.detach()) - rl)


# --------------------------------------------------------- nll, bce, kl --
@pytest.mark.parametrize("dt", HALVES, ids=IDS)
def test_nll_loss(dt):
    rng = np.random.default_rng(2)
    x = rnd(-rng.random((30, 12)) * 5, dt)
    t = rng.integers(0, 12, 30)
    t[3] = -100
    w = rnd(rng.random(12) + 0.5, dt)
    for kw in ({}, {"weight": w, "reduction": "sum"}, {"reduction": "none", "weight": w}):
        loss, g = fl.nll_loss_and_grad(x, t, **kw)
        rkw = {k: (v.astype(np.float64) if k == "weight" else v) for k, v in kw.items()}
        rl, rg = ref.nll_loss_and_grad(x.astype(np.float64), t, **rkw)
        assert g.dtype == dt
        assert_ulp(g, rg, dt)
        if kw.get("reduction") == "none":
            assert loss.dtype == dt
            assert_ulp(loss, rl, dt)
        else:
            assert type(loss) is np.float32
            np.testing.assert_allclose(float(loss), rl, rtol=1e-6)


@pytest.mark.parametrize("dt", HALVES, ids=IDS)
def test_bce_with_logits(dt):
    rng = np.random.default_rng(4)
    x = rnd(rng.standard_normal((50, 7)) * 4, dt)
    x[0, :3] = rnd([30.0, -30.0, 0.0], dt)
    y = rnd(rng.random((50, 7)), dt)
    w = rnd(rng.random(7) + 0.5, dt)
    pw = rnd(rng.random(7) + 0.5, dt)
    for kw in ({}, {"reduction": "sum", "weight": w}, {"reduction": "none", "pos_weight": pw},
               {"weight": w, "pos_weight": pw}):
        loss, g = fl.binary_cross_entropy_with_logits_and_grad(x, y, **kw)
        rkw = {k: (v.astype(np.float64) if k in ("weight", "pos_weight") else v) for k, v in kw.items()}
        rl, rg = ref.binary_cross_entropy_with_logits_and_grad(x.astype(np.float64), y.astype(np.float64),
                                                              **rkw)
        assert g.dtype == dt
        assert_ulp(g, rg, dt)
        if kw.get("reduction") == "none":
            assert loss.dtype == dt
            assert_ulp(loss, rl, dt)
        else:
            assert type(loss) is np.float32
            np.testing.assert_allclose(float(loss), rl, rtol=1e-6)


@pytest.mark.parametrize("dt", HALVES, ids=IDS)
def test_kl_div(dt):
    rng = np.random.default_rng(6)
    x = rnd(np.log(rng.dirichlet(np.ones(9), 8)), dt)
    t = rnd(rng.dirichlet(np.ones(9), 8), dt)
    for red in ("none", "sum", "batchmean"):
        for lt in (False, True):
            tt = rnd(np.log(t.astype(np.float64)), dt) if lt else t
            v = fl.kl_div(x, tt, reduction=red, log_target=lt)
            r = ref.kl_div(x.astype(np.float64), tt.astype(np.float64), reduction=red, log_target=lt)
            if red == "none":
                assert v.dtype == dt
                assert_ulp(v, r, dt)
            else:
                assert type(v) is np.float32
                np.testing.assert_allclose(float(v), r, rtol=1e-6)


# --------------------------------------------- threads, out=, in place --
@pytest.mark.parametrize("dt", HALVES, ids=IDS)
def test_bit_identical_for_any_thread_count(dt):
    rng = np.random.default_rng(8)
    x = logits(rng, (96, 3000), dt)
    t = rng.integers(0, 3000, 96)
    xb = rnd(rng.standard_normal(200_000), dt)
    yb = rnd(rng.random(200_000), dt)
    res = []
    for n in (1, 2, 3):
        with fl.num_threads(n):
            l, g = fl.cross_entropy_and_grad(x, t, label_smoothing=0.1)
            bl, bg = fl.binary_cross_entropy_with_logits_and_grad(xb, yb)
            res.append((l, g.view(np.uint16).copy(), fl.log_softmax(x, axis=-1).view(np.uint16),
                        fl.softmax(x, axis=-1).view(np.uint16), bl, bg.view(np.uint16).copy()))
    for r in res[1:]:
        for a, b in zip(res[0], r):
            assert np.array_equal(np.asarray(a), np.asarray(b))


@pytest.mark.parametrize("dt", HALVES, ids=IDS)
@pytest.mark.parametrize("C", [1001, 4096])
def test_streaming_stores_write_the_same_bytes(dt, C):
    """Outputs larger than the caches are written with streaming stores (the
    fused large-row kernels, fl_stream.h); with the threshold lowered to one
    byte every output here streams, also in place and on rows that do not
    start on a vector boundary (C odd).  The bytes must be those of the
    ordinary stores, which the other tests hold to the float64 reference."""
    rng = np.random.default_rng(C)
    x = logits(rng, (13, C), dt, "dominant")
    t = rng.integers(0, C, 13)
    t[3] = -100
    w = rng.random(C).astype(np.float32)

    def run():
        xi = x.copy()
        l, g = fl.cross_entropy_and_grad(xi, t, out=xi)
        return (l, g.view(np.uint16).copy(), fl.log_softmax(x, axis=-1).view(np.uint16),
                fl.softmax(x, axis=-1).view(np.uint16), fl.logsumexp(x, axis=-1).view(np.uint16),
                fl.cross_entropy_and_grad(x, t, weight=w, label_smoothing=0.2)[1].view(np.uint16))
    want = run()
    old = core._set_stream_min_bytes(1)
    try:
        with fl.num_threads(2):
            got = run()
    finally:
        core._set_stream_min_bytes(old)
    for a, b in zip(want, got):
        assert np.array_equal(np.asarray(a), np.asarray(b))


@pytest.mark.parametrize("dt", HALVES, ids=IDS)
def test_out_and_in_place(dt):
    rng = np.random.default_rng(9)
    x = logits(rng, (20, 300), dt)
    t = rng.integers(0, 300, 20)
    want_l, want_g = fl.cross_entropy_and_grad(x, t)
    out = np.empty_like(x)
    l, g = fl.cross_entropy_and_grad(x, t, out=out)
    assert g is out and np.array_equal(out.view(np.uint16), want_g.view(np.uint16)) and l == want_l
    xi = x.copy()
    l, g = fl.cross_entropy_and_grad(xi, t, out=xi)
    assert g is xi and np.array_equal(xi.view(np.uint16), want_g.view(np.uint16)) and l == want_l
    want = fl.log_softmax(x, axis=-1)
    xi = x.copy()
    r = fl.log_softmax(xi, axis=-1, out=xi)
    assert r is xi and np.array_equal(xi.view(np.uint16), want.view(np.uint16))
    xi = x.copy()
    r = fl.softmax(xi, axis=1, out=xi)
    assert r is xi and np.array_equal(xi.view(np.uint16), fl.softmax(x, axis=1).view(np.uint16))
    go = rnd(rng.standard_normal(x.shape), dt)
    want = fl.log_softmax_backward(go, fl.log_softmax(x, axis=-1))
    r = fl.log_softmax_backward(go, fl.log_softmax(x, axis=-1), out=go)
    assert r is go and np.array_equal(go.view(np.uint16), want.view(np.uint16))
    xn = rnd(-rng.random((20, 300)), dt)
    want = fl.nll_loss_and_grad(xn, t)
    l, g = fl.nll_loss_and_grad(xn, t, out=xn)
    assert g is xn and np.array_equal(xn.view(np.uint16), want[1].view(np.uint16)) and l == want[0]
    with pytest.raises(TypeError, match="out has dtype"):
        fl.cross_entropy_and_grad(x, t, out=np.empty(x.shape, np.float32))


def test_input_is_not_modified():
    rng = np.random.default_rng(10)
    for dt in HALVES:
        x = logits(rng, (10, 50), dt)
        keep = x.copy()
        fl.cross_entropy_and_grad(x, rng.integers(0, 50, 10))
        fl.log_softmax(x, axis=-1)
        assert np.array_equal(x.view(np.uint16), keep.view(np.uint16))


# ------------------------------------------------------------------ errors --
@pytest.mark.parametrize("fn", [lambda a: fl.log_softmax(a), lambda a: fl.softmax(a, axis=0),
                                lambda a: fl.logsumexp(a)], ids=["log_softmax", "softmax", "logsumexp"])
def test_unsupported_dtypes_softmax(fn):
    for dt in (np.complex64, ml_dtypes.float8_e4m3fn, ml_dtypes.float8_e5m2):
        with pytest.raises(TypeError, match=r"(x|a): .*supported dtypes: float32, float64, float16 or bfloat16"):
            fn(np.zeros(3, dt))


@pytest.mark.parametrize("dt", [np.int8, np.complex128, ml_dtypes.float8_e4m3fn, ml_dtypes.float8_e5m2])
def test_unsupported_dtypes_losses(dt):
    x = np.zeros((2, 3), dt)
    t = np.array([0, 1])
    for f in (fl.cross_entropy, fl.nll_loss):
        with pytest.raises(TypeError, match=r"input.*float16 or bfloat16"):
            f(x, t)
    with pytest.raises(TypeError, match=r"input.*float16 or bfloat16"):
        fl.binary_cross_entropy_with_logits(x, np.zeros((2, 3)))


# ------------------------------------------------------------ torch face --
def _torch():
    return pytest.importorskip("torch")


def _spy(monkeypatch, name):
    """Record the arrays fastlog's compiled kernel `name` receives from fastlog.torch."""
    from fastlog._dispatch import core
    seen = []
    real = getattr(core, name)

    def spy(x, *a, **k):
        seen.append(x)
        return real(x, *a, **k)
    monkeypatch.setattr(core, name, spy)
    return seen


@pytest.mark.parametrize("tname", ["bfloat16", "float16"])
def test_torch_cross_entropy_half_on_the_tensors_memory(monkeypatch, tname):
    torch = _torch()
    import torch.nn.functional as F
    import fastlog.torch as FL
    tdt = getattr(torch, tname)
    dt = BF16 if tname == "bfloat16" else F16
    rng = np.random.default_rng(12)
    xn = logits(rng, (33, 500), dt)
    t = torch.tensor(rng.integers(0, 500, 33))
    x = torch.tensor(xn.astype(np.float32)).to(tdt).requires_grad_()
    assert FL.fast_path_available(x, t)
    seen = _spy(monkeypatch, "ce_index")
    loss = FL.cross_entropy(x, t, label_smoothing=0.05)
    assert len(seen) == 1 and seen[0].dtype == dt
    assert seen[0].__array_interface__["data"][0] == x.data_ptr()      # no conversion copy
    ref_loss = F.cross_entropy(x.detach(), t, label_smoothing=0.05)
    assert loss.dtype == ref_loss.dtype == tdt
    loss.backward()
    assert x.grad.dtype == tdt
    rl, rg = ref.cross_entropy_and_grad(xn.astype(np.float64), t.numpy(), label_smoothing=0.05)
    assert_ulp(x.grad.float().numpy(), rg, dt, atol=_smoothing_atol(xn, t.numpy(), {"label_smoothing": 0.05}))
    assert_ulp(loss.detach().float().numpy(), rl, dt)


def test_torch_autocast_reads_bf16_logits(monkeypatch):
    torch = _torch()
    import torch.nn.functional as F
    import fastlog.torch as FL
    rng = np.random.default_rng(13)
    xn = logits(rng, (40, 300), BF16)
    t = torch.tensor(rng.integers(0, 300, 40))
    x = torch.tensor(xn.astype(np.float32)).bfloat16().requires_grad_()
    x2 = x.detach().clone().requires_grad_()
    from fastlog._dispatch import core
    seen = []
    real = core.ce_index_addr      # the training-loop call: the tensors' memory by address

    def spy(kind, addr, *a):
        seen.append((kind, addr))
        return real(kind, addr, *a)
    monkeypatch.setattr(core, "ce_index_addr", spy)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        loss = FL.cross_entropy(x, t)
        want = F.cross_entropy(x2, t)
    assert seen == [(3, x.data_ptr())]      # bfloat16 (kind 3), read where the tensor lies
    assert loss.dtype == want.dtype == torch.float32
    np.testing.assert_allclose(float(loss), float(want), rtol=1e-6)
    loss.backward()
    want.backward()
    assert x.grad.dtype == x2.grad.dtype == torch.bfloat16
    _, rg = ref.cross_entropy_and_grad(xn.astype(np.float64), t.numpy())
    assert_ulp(x.grad.float().numpy(), rg, BF16)
    assert ulps(x.grad.float().numpy(), rg, BF16).max() <= max(ulps(x2.grad.float().numpy(), rg, BF16).max(), 1)


@pytest.mark.parametrize("tname", ["bfloat16", "float16"])
def test_torch_other_ops_half(tname):
    torch = _torch()
    import torch.nn.functional as F
    import fastlog.torch as FL
    tdt = getattr(torch, tname)
    dt = BF16 if tname == "bfloat16" else F16
    rng = np.random.default_rng(14)
    xn = logits(rng, (9, 70), dt)
    x = torch.tensor(xn.astype(np.float32)).to(tdt)
    x64 = xn.astype(np.float64)
    for fn, want in ((FL.log_softmax, log_softmax64(x64)), (FL.softmax, ref.softmax(x64, axis=-1))):
        xr = x.clone().requires_grad_()
        y = fn(xr, dim=1)
        assert y.dtype == tdt
        assert_ulp(y.detach().float().numpy(), want, dt)
        y.float().square().sum().backward()
        assert xr.grad.dtype == tdt
    lp = torch.tensor(log_softmax64(x64)).to(tdt).requires_grad_()
    t = torch.tensor(rng.integers(0, 70, 9))
    loss = FL.nll_loss(lp, t)
    assert loss.dtype == F.nll_loss(lp.detach(), t).dtype == tdt
    loss.backward()
    assert lp.grad.dtype == tdt
    y = torch.tensor(rng.random((9, 70))).to(tdt)
    xr = x.clone().requires_grad_()
    loss = FL.binary_cross_entropy_with_logits(xr, y)
    assert loss.dtype == tdt
    loss.backward()
    rl, rg = ref.binary_cross_entropy_with_logits_and_grad(x64, y.double().numpy())
    assert_ulp(xr.grad.float().numpy(), rg, dt)
    assert_ulp(loss.detach().float().numpy(), rl, dt)
    k = FL.kl_div(lp.detach(), torch.softmax(x.float(), 1).to(tdt), reduction="batchmean")
    assert k.dtype == tdt


@pytest.mark.parametrize("tname", ["bfloat16", "float16"])
@pytest.mark.parametrize("kw", [dict(), dict(reduction="sum", label_smoothing=0.1),
                                dict(ignore_index=3, weight=True), dict(bias=True)])
def test_torch_linear_cross_entropy_half(monkeypatch, tname, kw):
    """Blocked bf16/fp16 fused linear + CE (blocks forced small so several run):
    PyTorch's dtypes, and no less accurate than PyTorch's own bf16/fp16 path
    against float64 on the same rounded inputs."""
    torch = _torch()
    import torch.nn.functional as F
    import fastlog.torch as FL
    import fastlog.torch.linear_ce_half as H
    monkeypatch.setattr(H, "BLOCK_BYTES", 2 * 16 * 700)     # 16-row blocks
    tdt = getattr(torch, tname)
    g = torch.Generator().manual_seed(15)
    N, Hd, V = 70, 24, 700
    kw = dict(kw)
    x = torch.randn(N, Hd, generator=g).to(tdt).requires_grad_()
    W = (torch.randn(V, Hd, generator=g) * 0.3).to(tdt).requires_grad_()
    t = torch.randint(0, V, (N,), generator=g)
    t[::5] = kw.get("ignore_index", -100)
    if kw.pop("weight", None):
        kw["weight"] = (torch.rand(V, generator=g) + 0.5).to(tdt)
    b = (torch.randn(V, generator=g) * 0.1).to(tdt).requires_grad_() if kw.pop("bias", None) else None
    loss = FL.linear_cross_entropy(x, W, t, linear_bias=b, **kw)
    assert loss.dtype == tdt
    loss.backward()
    leaves = [x, W] + ([b] if b is not None else [])
    assert all(v.grad.dtype == tdt for v in leaves)
    d = [v.detach().double().requires_grad_() for v in leaves]
    logits = d[0] @ d[1].T + (d[2] if b is not None else 0)
    kw64 = {k: (v.double() if k == "weight" else v) for k, v in kw.items()}
    l64 = F.cross_entropy(logits, t, **kw64)
    l64.backward()
    p = [v.detach().clone().requires_grad_() for v in leaves]
    lt = F.linear_cross_entropy(p[0], p[1], t, linear_bias=p[2] if b is not None else None, **kw)
    lt.backward()
    assert abs(float(loss) - float(l64)) <= max(abs(float(lt.detach()) - float(l64)), 2 * 2.0 ** -8 * abs(float(l64)))
    for ours, exact, theirs in zip(leaves, d, p):
        e_ours = (ours.grad.double() - exact.grad).norm() / exact.grad.norm()
        e_theirs = (theirs.grad.double() - exact.grad).norm() / exact.grad.norm()
        assert e_ours <= 1.2 * e_theirs + 1e-3, (float(e_ours), float(e_theirs))
