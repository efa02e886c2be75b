"""Numerics: stability for any finite input, accuracy against high-precision
references (no worse than PyTorch's or SciPy's on the same rows), and the ULP
error of fastlog's own vectorized exp/log against float64 / long double /
mpmath references, for every ISA build this CPU can run.
"""
import mpmath
import numpy as np
import pytest
import scipy.special as sp
from _optional import optional  # noqa: E402
torch = optional("torch")   # only the tests that use it skip without torch
F = optional("torch.nn.functional")

import fastlog as fl
from fastlog import _reference as ref
from fastlog._dispatch import kernels

# The bounds documented in src/fastlog/_csrc/fl_math.h ("Accuracy"), in ULPs.
EXP_F32_ULP = 1.02
EXP_F64_ULP = 1.0
LOG_F32_ULP = 1.97
LOG_F64_ULP = 2.05

LD = np.longdouble
HAVE_EXTENDED = np.finfo(LD).nmant >= 63   # x87 80-bit long double (x86-64 Linux)


def _core(level):
    return kernels(level)


def _apply(core, fn, x):
    out = np.empty_like(x)
    getattr(core, fn)(np.ascontiguousarray(x), out)
    return out


# ------------------------------------------------------------ ULP tools --
def ulp32(r):
    """ULP of float32 at the float64 reference values r (subnormal ULP = 2**-149)."""
    _, e = np.frexp(np.abs(r))
    return np.maximum(np.ldexp(1.0, e - 24), 2.0 ** -149)


def ulp64(r):
    """ULP of float64 at extended-precision reference values r."""
    _, e = np.frexp(np.abs(r).astype(LD))
    return np.maximum(np.ldexp(LD(1), e - 53), LD(2) ** -1074)


def ulp_error_f32(ours, x, ref_fn):
    """Max ULP error of float32 results against a float64 reference, over the
    inputs whose correctly rounded result is finite; the others must match
    the rounded reference exactly (inf, 0, nan)."""
    with np.errstate(over="ignore", divide="ignore", invalid="ignore"):
        r = ref_fn(x.astype(np.float64))
        r32 = r.astype(np.float32)
    fin = np.isfinite(r32)
    np.testing.assert_array_equal(ours[~fin], r32[~fin])
    err = np.abs(ours[fin].astype(np.float64) - r[fin]) / ulp32(r[fin])
    k = int(np.argmax(err))
    return float(err[k]), float(x[fin][k])


def ulp_error_f64(ours, x, ref_fn):
    with np.errstate(over="ignore", divide="ignore", invalid="ignore"):
        r = ref_fn(x.astype(LD))
        r64 = r.astype(np.float64)
    fin = np.isfinite(r64)
    np.testing.assert_array_equal(ours[~fin], r64[~fin])
    err = (np.abs(ours[fin].astype(LD) - r[fin]) / ulp64(r[fin])).astype(np.float64)
    k = int(np.argmax(err))
    return float(err[k]), float(x[fin][k])


def f32_sweep(lo_bits, hi_bits, step):
    """float32 values whose bit patterns run from lo_bits to hi_bits by step."""
    return np.arange(lo_bits, hi_bits, step, dtype=np.int64).astype(np.uint32).view(np.float32)


def _bits(v):
    return int(np.array(v, np.float32).view(np.uint32))


def exp_f32_inputs(step):
    """Dense sweep over every float32 in [-104, 89] (beyond: exact 0 / inf),
    both signs, every `step`-th bit pattern (step odd: all mantissa residues)."""
    pos = f32_sweep(0, _bits(89.0), step)
    neg = f32_sweep(_bits(-0.0), _bits(-104.0), step)
    edges = np.array([88.72283, 88.72284, -87.33654, -103.972, -103.973, 1e-30, -1e-30], np.float32)
    return np.concatenate([pos, neg, edges])


def log_f32_inputs(step):
    """Every `step`-th positive finite float32 (subnormals included)."""
    return np.concatenate([f32_sweep(1, 0x7F800000, step),
                           f32_sweep(1, 0x00800000, 4099)])      # extra subnormals


# -------------------------------------------------------- ULP: float32 --
def test_expf_ulp(isa_level):
    step = 257
    x = exp_f32_inputs(step)
    worst, at = ulp_error_f32(_apply(_core(isa_level), "exp_array", x), x, np.exp)
    assert worst <= EXP_F32_ULP, f"fl_expf[{isa_level}]: {worst:.3f} ULP at x={at!r}"


def test_logf_ulp(isa_level):
    step = 257
    x = log_f32_inputs(step)
    worst, at = ulp_error_f32(_apply(_core(isa_level), "log_array", x), x, np.log)
    assert worst <= LOG_F32_ULP, f"fl_logf[{isa_level}]: {worst:.3f} ULP at x={at!r}"


# -------------------------------------------------------- ULP: float64 --
def _exp_f64_inputs(rng, n):
    return np.concatenate([rng.uniform(-745.2, 709.78, n),
                           rng.uniform(-745.2, -708.4, n // 8),    # subnormal results
                           rng.uniform(-1, 1, n // 8) * 10.0 ** rng.integers(-300, 0, n // 8),
                           [709.782712893384, -708.3964185322641, -745.1332191019411, 0.0, -0.0]])


def _log_f64_inputs(rng, n):
    bits = rng.integers(1, 0x7FF0000000000000, n, dtype=np.int64)       # every exponent alike
    near1 = 1.0 + rng.uniform(-0.3, 0.3, n // 8)
    # the worst region: k*ln2 and the series cancel (k = -1 / +1, m near sqrt(2) / sqrt(1/2))
    worst = np.concatenate([rng.uniform(0.6, 0.7072, n // 4), rng.uniform(1.4142, 1.7, n // 4)])
    return np.concatenate([bits.view(np.float64), near1, worst,
                           [5e-324, 2.2250738585072014e-308, 1.7976931348623157e308, 1.0]])


@pytest.mark.skipif(not HAVE_EXTENDED, reason="long double is not x87 extended here; "
                                               "test_f64_mpmath_spot_check covers float64 then")
def test_exp_log_f64_ulp(isa_level):
    rng = np.random.default_rng(20)
    n = 400_000
    x = _exp_f64_inputs(rng, n)
    worst, at = ulp_error_f64(_apply(_core(isa_level), "exp_array", x), x, np.exp)
    assert worst <= EXP_F64_ULP, f"fl_exp[{isa_level}]: {worst:.3f} ULP at x={at!r}"
    x = _log_f64_inputs(rng, n)
    worst, at = ulp_error_f64(_apply(_core(isa_level), "log_array", x), x, np.log)
    assert worst <= LOG_F64_ULP, f"fl_log[{isa_level}]: {worst:.3f} ULP at x={at!r}"


def test_f64_mpmath_spot_check(isa_level):
    """The float64 results against mpmath at 40 digits (also validates the long
    double reference used above, and runs where long double is not extended)."""
    rng = np.random.default_rng(21)
    core = _core(isa_level)
    mpmath.mp.dps = 40
    for fn, xs, mfn, bound in [("exp_array", _exp_f64_inputs(rng, 600), mpmath.exp, EXP_F64_ULP),
                               ("log_array", _log_f64_inputs(rng, 600), mpmath.log, LOG_F64_ULP)]:
        ours = _apply(core, fn, xs)
        for x, o in zip(xs, ours):
            r = mfn(mpmath.mpf(float(x)))
            if abs(r) > mpmath.mpf(np.finfo(np.float64).max):
                assert o == np.inf
                continue
            _, e = mpmath.frexp(r) if r != 0 else (0, -1073)
            u = mpmath.ldexp(1, max(int(e) - 53, -1074))
            err = abs(mpmath.mpf(float(o)) - r) / u
            assert err <= bound, f"{fn}({x!r}) = {o!r}: {float(err):.3f} ULP (mpmath {r})"


# ---------------------------------------------------------- edge values --
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_exp_log_edges(isa_level, dtype):
    core = _core(isa_level)
    tiny = np.finfo(dtype).tiny
    sub = np.array([tiny / 2, tiny / 1024, np.finfo(dtype).smallest_subnormal], dtype)
    x = np.array([-np.inf, np.inf, np.nan, 0.0, -0.0, 1e30, 800.0, 89.0, 710.0, -1e30, -800.0], dtype)
    e = _apply(core, "exp_array", x)
    with np.errstate(over="ignore"):
        np.testing.assert_array_equal(e, np.exp(x))          # 0, inf, nan, 1, 1, inf..., 0, 0
    assert e[0] == 0 and e[1] == np.inf and np.isnan(e[2]) and e[3] == 1 and e[4] == 1
    # subnormal outputs: exp of the log of subnormals, within one subnormal ULP
    ls = np.log(sub.astype(np.float64)).astype(dtype)
    es = _apply(core, "exp_array", ls)
    assert np.all(es > 0) and np.all(es < tiny)
    np.testing.assert_allclose(es, np.exp(ls.astype(np.float64)), rtol=0,
                               atol=float(np.finfo(dtype).smallest_subnormal) * 1.0)
    # log
    y = np.array([0.0, -0.0, np.inf, -1.0, -np.inf, np.nan, 1.0, -tiny], dtype)
    lg = _apply(core, "log_array", y)
    with np.errstate(divide="ignore", invalid="ignore"):
        np.testing.assert_array_equal(lg, np.log(y))
    assert lg[0] == -np.inf and lg[1] == -np.inf and lg[2] == np.inf and np.isnan(lg[3])
    assert lg[6] == 0.0
    # log of subnormals: accurate (computed after scaling into the normal range)
    ref_sub = np.log(sub.astype(LD))
    err = np.abs(_apply(core, "log_array", sub).astype(LD) - ref_sub) / ulp64(ref_sub.astype(np.float64)) \
        if dtype == np.float64 else \
        np.abs(_apply(core, "log_array", sub).astype(np.float64) - np.log(sub.astype(np.float64))) / \
        ulp32(np.log(sub.astype(np.float64)))
    assert float(np.max(err)) <= (LOG_F64_ULP if dtype == np.float64 else LOG_F32_ULP)


# -------------------------------------------------------------- stability --
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_huge_logits_and_masks_are_stable(dtype):
    """1e30 logits, rows mixing -inf masks with finite values: every result is
    finite (where the math is) and matches torch."""
    rng = np.random.default_rng(22)
    x = rng.standard_normal((8, 50)) * 3
    x[0] += 1e30
    x[1] -= 1e30
    x[2] *= 1e30
    x[3, ::2] = -np.inf
    x[4, 1:] = -np.inf
    x[5, :] = rng.choice([-1e30, 1e30, 0.0], 50)
    x = x.astype(dtype)
    t = np.array([0, 5, 7, 1, 0, 3, 9, 11])
    xt = torch.tensor(x)
    # softmax family: finite everywhere except log_softmax at the -inf entries
    lsm = fl.log_softmax(x, axis=1)
    assert np.array_equal(np.isfinite(lsm), np.isfinite(x))
    assert np.all(np.isfinite(fl.softmax(x, axis=1)))
    assert np.all(np.isfinite(fl.logsumexp(x, axis=1)))
    eps = float(np.finfo(dtype).eps)
    scale = np.maximum(1.0, np.max(np.abs(np.where(np.isfinite(x), x, 0)), axis=1, keepdims=True))
    fin = np.isfinite(x)
    np.testing.assert_allclose(lsm[fin] / np.broadcast_to(scale, x.shape)[fin],
                               torch.log_softmax(xt, 1).numpy()[fin] / np.broadcast_to(scale, x.shape)[fin],
                               rtol=0, atol=8 * eps)
    # losses with unmasked targets: finite loss and gradient
    loss, g = fl.cross_entropy_and_grad(x, t, reduction="none", label_smoothing=0.0)
    assert np.all(np.isfinite(loss)) and np.all(np.isfinite(g))
    xr = torch.tensor(x, requires_grad=True)
    tl = F.cross_entropy(xr, torch.tensor(t), reduction="none")
    tl.sum().backward()
    np.testing.assert_allclose(loss / scale[:, 0], tl.detach().numpy() / scale[:, 0], rtol=0, atol=8 * eps)
    np.testing.assert_allclose(g, xr.grad.numpy(), rtol=0, atol=8 * eps)
    # a masked (-inf) target has infinite loss, as in torch
    lm = fl.cross_entropy(x[3:4], np.array([0]), reduction="none")
    assert lm[0] == np.inf == F.cross_entropy(xt[3:4], torch.tensor([0]), reduction="none").item()
    # BCE at |x| = 1e30
    lb, gb = fl.binary_cross_entropy_with_logits_and_grad(x[2], np.full(50, 0.5, dtype), reduction="none")
    assert np.all(np.isfinite(lb)) and np.all(np.isfinite(gb))


# ------------------------------------ accuracy vs torch and SciPy (rows) --
def _rows(rng, dtype, n=48, C=700):
    """Hard rows: ordinary, huge offsets, -inf masks, one dominant class."""
    x = rng.standard_normal((n, C)) * rng.choice([1.0, 5.0, 30.0], (n, 1))
    q = n // 4
    x[:q] += rng.choice([-1e4, 1e4, 1e6], (q, 1))
    x[q:2 * q, 1::3] = -np.inf
    x[2 * q:3 * q, 0] += 40
    return x.astype(dtype)


def _ref_rows(x):
    """High-precision log_softmax, softmax, logsumexp of each row: float64 of
    the float32 values, or long double (or mpmath without it) for float64."""
    if x.dtype == np.float32 or not HAVE_EXTENDED:
        if x.dtype == np.float64:                                # pragma: no cover
            mpmath.mp.dps = 40
            lse = np.array([float(mpmath.log(mpmath.fsum(mpmath.exp(mpmath.mpf(float(v)))
                                                        for v in row if v != -np.inf))) for row in x])
            lsm = x - lse[:, None]
            return lsm, np.exp(lsm), lse
        return ref.log_softmax(x, axis=1), ref.softmax(x, axis=1), ref.logsumexp(x, axis=1)
    xl = x.astype(LD)
    m = np.max(xl, axis=1, keepdims=True)
    s = np.sum(np.exp(xl - m), axis=1, keepdims=True)
    return xl - m - np.log(s), np.exp(xl - m) / s, (np.log(s) + m)[:, 0]


def _abs_err(a, r):
    """Max |a - r| / max(1, |r|) over finite r; non-finite entries must agree."""
    a = np.asarray(a).astype(LD)
    r = np.asarray(r).astype(LD)
    fin = np.isfinite(r)
    assert np.array_equal(np.isfinite(a), fin)
    return float(np.max(np.abs(a[fin] - r[fin]) / np.maximum(1, np.abs(r[fin]))))


def _rel_err(a, r, floor):
    a = np.asarray(a).astype(LD)
    r = np.asarray(r).astype(LD)
    m = r > floor
    return float(np.max(np.abs(a[m] - r[m]) / r[m]))


FACTOR = 1.5   # ours may be at most this much worse than the worse of torch and SciPy


def no_worse(ours, theirs, dtype, what):
    """ours <= FACTOR * theirs, or within a few ULPs (1-2 ULP errors are rounding noise)."""
    floor = 4 * float(np.finfo(dtype).eps)
    assert ours <= max(FACTOR * theirs, floor), f"{what}: ours {ours:.3g}, theirs {theirs:.3g}"


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_softmax_family_accuracy_no_worse_than_torch_or_scipy(dtype):
    rng = np.random.default_rng(23)
    x = _rows(rng, dtype)
    xt = torch.tensor(x)
    r_lsm, r_sm, r_lse = _ref_rows(x)
    floor = 1e-30 if dtype == np.float32 else 1e-290
    errs = {
        "log_softmax": [_abs_err(f, r_lsm) for f in (fl.log_softmax(x, axis=1),
                                                     torch.log_softmax(xt, 1).numpy(),
                                                     sp.log_softmax(x, axis=1))],
        "softmax": [_rel_err(f, r_sm, floor) for f in (fl.softmax(x, axis=1),
                                                       torch.softmax(xt, 1).numpy(),
                                                       sp.softmax(x, axis=1))],
        "logsumexp": [_abs_err(f, r_lse) for f in (fl.logsumexp(x, axis=1),
                                                   torch.logsumexp(xt, 1).numpy(),
                                                   sp.logsumexp(x, axis=1))],
    }
    for name, (ours, t, s) in errs.items():
        no_worse(ours, max(t, s), dtype, f"{name} (torch {t:.3g}, scipy {s:.3g})")


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("smoothing", [0.0, 0.1])
def test_cross_entropy_accuracy_no_worse_than_torch(dtype, smoothing):
    """Per-row losses and gradients against the float64 (or long double) reference."""
    rng = np.random.default_rng(24)
    x = _rows(rng, dtype)
    x[np.isinf(x)] = -1e4                     # label smoothing needs finite logits
    t = rng.integers(0, x.shape[1], x.shape[0])
    w = rng.random(x.shape[1]).astype(dtype) + 0.5
    hp = x.astype(LD) if dtype == np.float64 and HAVE_EXTENDED else x.astype(np.float64)
    # reference in higher precision: the float64 reference for float32 data; for
    # float64 data the same formula evaluated in long double
    if dtype == np.float32:
        r_loss, r_grad = ref.cross_entropy_and_grad(x, t, w, reduction="none", label_smoothing=smoothing)
    else:
        m = np.max(hp, axis=1, keepdims=True)
        lse = m + np.log(np.sum(np.exp(hp - m), axis=1, keepdims=True))
        logp = hp - lse
        wl = w.astype(hp.dtype)
        nll = -logp[np.arange(len(t)), t] * wl[t]
        r_loss = (1 - smoothing) * nll - smoothing / x.shape[1] * np.sum(wl * logp, axis=1)
        onehot = np.zeros_like(hp)
        onehot[np.arange(len(t)), t] = 1
        p = np.exp(logp)
        r_grad = ((1 - smoothing) * wl[t][:, None] * (p - onehot)
                  + smoothing / x.shape[1] * (p * wl.sum() - wl))
    loss, g = fl.cross_entropy_and_grad(x, t, w, reduction="none", label_smoothing=smoothing)
    xr = torch.tensor(x, requires_grad=True)
    tl = F.cross_entropy(xr, torch.tensor(t), torch.tensor(w), reduction="none", label_smoothing=smoothing)
    tl.sum().backward()
    e_loss, t_loss = _abs_err(loss, r_loss), _abs_err(tl.detach().numpy(), r_loss)
    e_grad, t_grad = _abs_err(g, r_grad), _abs_err(xr.grad.numpy(), r_grad)
    no_worse(e_loss, t_loss, dtype, "loss vs torch")
    no_worse(e_grad, t_grad, dtype, "grad vs torch")


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_bce_accuracy_no_worse_than_torch(dtype):
    rng = np.random.default_rng(25)
    x = (rng.standard_normal(20000) * 10.0 ** rng.integers(-3, 4, 20000)).astype(dtype)
    y = rng.random(20000).astype(dtype)
    pw = np.array(3.0, dtype)
    hp = LD if dtype == np.float64 and HAVE_EXTENDED else np.float64
    xl, yl = x.astype(hp), y.astype(hp)
    # softplus(-x) = log1p(exp(-|x|)) + max(-x, 0), in higher precision
    sp_neg = np.log1p(np.exp(-np.abs(xl))) + np.maximum(-xl, 0)
    r_loss = (1 - yl) * xl + (1 + 2 * yl) * sp_neg
    sig_neg = np.exp(-(np.log1p(np.exp(-np.abs(xl))) + np.maximum(xl, 0)))
    r_grad = (1 - yl) - (1 + 2 * yl) * sig_neg
    loss, g = fl.binary_cross_entropy_with_logits_and_grad(x, y, reduction="none", pos_weight=pw)
    xr = torch.tensor(x, requires_grad=True)
    tl = F.binary_cross_entropy_with_logits(xr, torch.tensor(y), reduction="none",
                                            pos_weight=torch.tensor(pw))
    tl.sum().backward()
    e_loss, t_loss = _abs_err(loss, r_loss), _abs_err(tl.detach().numpy(), r_loss)
    e_grad, t_grad = _abs_err(g, r_grad), _abs_err(xr.grad.numpy(), r_grad)
    no_worse(e_loss, t_loss, dtype, "loss vs torch")
    no_worse(e_grad, t_grad, dtype, "grad vs torch")


def test_log_softmax_dominant_class_is_accurate_to_the_last_bits():
    """With one dominant logit, log p of that class is a tiny negative number;
    the log1p split keeps its relative error small (mpmath reference)."""
    mpmath.mp.dps = 50
    for gap in (5.0, 20.0, 40.0, 80.0, 700.0):
        x = np.array([gap, 0.0, -1.0, 0.5])
        exact = float(-mpmath.log1p(mpmath.fsum(mpmath.exp(mpmath.mpf(v) - gap) for v in x[1:])))
        ours = fl.log_softmax(x)[0]
        assert abs(ours - exact) <= 2 * np.spacing(abs(exact)), (gap, ours, exact)
        ours32 = float(fl.log_softmax(x.astype(np.float32))[0])
        assert abs(ours32 - exact) <= 2 * float(np.spacing(np.float32(abs(exact)))), (gap, ours32, exact)
        # and for the gradient-carrying path: the CE loss of the dominant class
        ce = fl.cross_entropy(x, np.array(0))
        assert abs(ce + exact) <= 2 * np.spacing(abs(exact)), (gap, ce, exact)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_cross_entropy_probability_targets_accuracy_no_worse_than_torch(dtype):
    rng = np.random.default_rng(26)
    x = _rows(rng, dtype)
    x[np.isinf(x)] = -1e4
    p = rng.random(x.shape)
    p /= p.sum(axis=1, keepdims=True)
    p = p.astype(dtype)
    hp = LD if dtype == np.float64 and HAVE_EXTENDED else np.float64
    xl, pl = x.astype(hp), p.astype(hp)
    m = np.max(xl, axis=1, keepdims=True)
    logp = xl - m - np.log(np.sum(np.exp(xl - m), axis=1, keepdims=True))
    r_loss = -np.sum(pl * logp, axis=1)
    r_grad = np.exp(logp) * np.sum(pl, axis=1, keepdims=True) - pl
    loss, g = fl.cross_entropy_and_grad(x, p, reduction="none")
    xr = torch.tensor(x, requires_grad=True)
    tl = F.cross_entropy(xr, torch.tensor(p), reduction="none")
    tl.sum().backward()
    e_loss, t_loss = _abs_err(loss, r_loss), _abs_err(tl.detach().numpy(), r_loss)
    e_grad, t_grad = _abs_err(g, r_grad), _abs_err(xr.grad.numpy(), r_grad)
    no_worse(e_loss, t_loss, dtype, "loss vs torch")
    no_worse(e_grad, t_grad, dtype, "grad vs torch")
