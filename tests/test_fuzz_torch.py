"""Differential fuzz of fastlog.torch against torch.nn.functional.

Every function of the torch face is called on random arguments -- shapes with
zero sizes, float32/float64, contiguous / transposed / strided-slice layouts,
non-finite values (nan, +-inf, +-float max), every parameter (weights,
ignore_index, label smoothing, reductions, log_target, pos_weight, dim, ...),
occasionally invalid ones -- and the same call goes to PyTorch.  Both must
raise, or both return values that agree (tolerance from the dtype and the
magnitude of the terms; NaN and inf patterns equal), and the gradients with
respect to the input must agree too.

The only accepted disagreements are the deliberate differences listed in the
``fastlog.torch`` docstring: fastlog raises ValueError for a negative or NaN
``label_smoothing`` (PyTorch treats it as 0); float32 results may instead
match PyTorch run in float64, element by element (difference 2); linear
cross-entropy rows with non-finite logits are compared where PyTorch's
gradient is not NaN (3); a reduced loss may equal the exact sum of PyTorch's
own per-position float64 terms where some summation order overflows; a
float64 cross_entropy position where torch's is NaN (0 * inf: a zero weight or
target times an overflowed lse - x_c) or inf (an overflowed lse - x_c that a
target probability below 1 scales back into range) may equal the exact loss
(mpmath), and a reduced loss the exact sum of those exact terms -- for linear
cross-entropy the exact loss of its float64 logits x W^T + b; and
linear cross-entropy losses and gradient elements whose GEMM sums (logits,
gradients) can overflow may be non-finite on one side (4).  Linear cross-entropy gradients also get the
error that rounding the logits in the input's dtype causes in any
implementation (float32 logits of 1e8 and more do not determine them), and
BCE-with-logits values a tolerance relative to the terms of
(1 - y) x + lw softplus(-x), which cancel for large |x| in both libraries.

In CI the fuzz is deterministic: a fixed number of cases per function from
fixed seeds (a few seconds in all).  ``FASTLOG_FUZZ_SECONDS=N`` runs an opt-in
long fuzz for N seconds over all functions (seeds from a counter, so a failure
is reproducible from the printed seed) and prints the number of cases per
function.
"""
import math
import os
import time
import warnings

import numpy as np
import pytest

torch = pytest.importorskip("torch")
import torch.nn.functional as F  # noqa: E402

import fastlog.torch as FL  # noqa: E402

CI_CASES = int(os.environ.get("FASTLOG_FUZZ_CASES", "60"))
LONG_SECONDS = float(os.environ.get("FASTLOG_FUZZ_SECONDS", "0") or 0)

F32MAX = float(np.finfo(np.float32).max)
F64MAX = float(np.finfo(np.float64).max)


# ------------------------------------------------------------ generators --
class Gen:
    """Random pieces of a call, from one seeded generator."""

    def __init__(self, seed):
        self.rng = np.random.default_rng(seed)
        self.seed = seed

    def choice(self, seq, p=None):
        return seq[self.rng.choice(len(seq), p=p)]

    def chance(self, p):
        return self.rng.random() < p

    def dtype(self):
        return self.choice([torch.float32, torch.float64])

    def values(self, shape, dtype):
        """float64 values of one of several kinds, with non-finite ones mixed in."""
        rng = self.rng
        n = int(np.prod(shape, dtype=np.int64))
        kind = self.choice(["normal", "normal", "normal", "wide", "offset", "ties", "nonfinite",
                            "extreme"])
        big = F32MAX if dtype == torch.float32 else F64MAX
        if kind == "normal":
            v = rng.standard_normal(n) * self.choice([0.1, 1.0, 3.0, 30.0])
        elif kind == "wide":
            v = rng.standard_normal(n) * 10.0 ** rng.integers(0, 30, n)
        elif kind == "offset":
            v = rng.standard_normal(n) * 3 + self.choice([1e4, -1e4, 1e8])
        elif kind == "ties":
            v = rng.integers(-2, 3, n).astype(np.float64)
        else:
            v = rng.standard_normal(n) * 3
            k = rng.random(n)
            if kind == "nonfinite":
                v[k < 0.15] = -np.inf
                v[(k >= 0.15) & (k < 0.2)] = np.inf
                v[(k >= 0.2) & (k < 0.25)] = np.nan
                if self.chance(0.2):
                    v[:] = -np.inf
            else:
                v[k < 0.2] = big
                v[(k >= 0.2) & (k < 0.4)] = -big
        return v.reshape(shape)

    def layout(self, a, dtype):
        """A tensor holding the values of ndarray `a`: contiguous, transposed or a strided slice."""
        kind = self.choice(["contiguous", "contiguous", "transposed", "strided"]) if a.ndim else "contiguous"
        if kind == "transposed" and a.ndim >= 2:
            # Storage in reversed axis order, viewed back: non-contiguous.
            t = torch.tensor(np.ascontiguousarray(a.transpose()), dtype=dtype)
            return t.permute(*reversed(range(a.ndim)))
        if kind == "strided" and a.ndim >= 1:
            ax = int(self.rng.integers(a.ndim))
            shape = list(a.shape)
            shape[ax] *= 2
            big = np.zeros(shape)
            idx = [slice(None)] * a.ndim
            idx[ax] = slice(None, None, 2)
            big[tuple(idx)] = a
            return torch.tensor(big, dtype=dtype)[tuple(idx)]
        return torch.tensor(a, dtype=dtype)

    def tensor(self, shape, dtype):
        return self.layout(self.values(shape, dtype), dtype)

    def reduction(self, extra=()):
        return self.choice(["mean", "sum", "none"] + list(extra))

    def batch_shapes(self):
        """(input shape, class count C, batch shape) for class-axis-1 losses."""
        C = int(self.choice([0, 1, 2, 3, 5, 10, 17, 40], p=[.03, .07, .15, .15, .2, .15, .15, .1]))
        form = self.choice(["1d", "2d", "2d", "2d", "kd"])
        if form == "1d":
            return (C,), C, ()
        N = int(self.choice([0, 1, 2, 4, 7, 33], p=[.05, .15, .2, .25, .2, .15]))
        if form == "2d":
            return (N, C), C, (N,)
        extra = tuple(int(d) for d in self.rng.integers(0, 4, int(self.rng.integers(1, 3))))
        return (N, C) + extra, C, (N,) + extra

    def index_target(self, batch_shape, C, ignore_index):
        rng = self.rng
        hi = max(C, 1)
        t = rng.integers(0, hi, batch_shape) if C else np.zeros(batch_shape, np.int64)
        if self.chance(0.4):
            t = np.where(rng.random(batch_shape) < 0.3, ignore_index, t)
        if self.chance(0.03):      # out of range
            t = np.array(t)
            if t.size:
                t.flat[int(rng.integers(t.size))] = self.choice([C, -1, C + 5])
        tt = torch.tensor(np.asarray(t), dtype=torch.int64)
        if self.chance(0.1) and tt.numel() and bool((tt >= 0).all()) and bool((tt < 256).all()):
            tt = tt.to(torch.uint8)
        if tt.dim() >= 2 and self.chance(0.2):
            tt = tt.transpose(0, 1).contiguous().transpose(0, 1)
        return tt

    def prob_target(self, shape, dtype):
        rng = self.rng
        kind = self.choice(["softmax", "softmax", "raw", "onehot", "nan"])
        if kind == "softmax":
            v = rng.standard_normal(shape) * 2
            ax = 1 if len(shape) > 1 else 0
            v = np.exp(v - v.max(axis=ax, keepdims=True)) if v.size else v
            v = v / v.sum(axis=ax, keepdims=True) if v.size else v
        elif kind == "raw":
            v = rng.random(shape) * 2 - 0.2
        elif kind == "onehot":
            v = (rng.random(shape) < 0.3).astype(np.float64)
        else:
            v = rng.random(shape)
            if v.size:
                v.flat[int(rng.integers(v.size))] = np.nan
        return self.layout(np.asarray(v, dtype=np.float64), dtype)

    def class_weight(self, C, dtype):
        if self.chance(0.6):
            return None
        w = self.rng.random(C) * 2
        if C and self.chance(0.2):
            w[int(self.rng.integers(C))] = 0.0
        return torch.tensor(w, dtype=dtype)

    def ignore_index(self, C):
        return int(self.choice([-100, -100, -1, 0, 1, C - 1 if C else -100, 2**40]))

    def smoothing(self):
        return float(self.choice([0.0, 0.0, 0.0, 0.1, 0.5, 1.0, 1.5, -0.1, math.nan, math.inf],
                                 p=[.35, .1, .1, .15, .1, .05, .04, .04, .04, .03]))


# ------------------------------------------------------------------ cases --
# A case is (fastlog_fn, torch_fn, args, kwargs, deliberate) where `deliberate`
# is True when the documented deliberate difference applies (fastlog raises).

def case_cross_entropy(g):
    shape, C, batch = g.batch_shapes()
    dt = g.dtype()
    x = g.tensor(shape, dt)
    ign = g.ignore_index(C)
    if g.chance(0.35):
        target = g.prob_target(shape, dt)
    else:
        target = g.index_target(batch, C, ign)
    eps = g.smoothing()
    kw = dict(weight=g.class_weight(C, dt), ignore_index=ign, reduction=g.reduction(),
              label_smoothing=eps)
    deliberate = not eps >= 0.0
    return FL.cross_entropy, F.cross_entropy, (x, target), kw, deliberate


def case_nll_loss(g):
    shape, C, batch = g.batch_shapes()
    dt = g.dtype()
    x = g.tensor(shape, dt)
    ign = g.ignore_index(C)
    target = g.index_target(batch, C, ign)
    kw = dict(weight=g.class_weight(C, dt), ignore_index=ign, reduction=g.reduction())
    return FL.nll_loss, F.nll_loss, (x, target), kw, False


def case_bce(g):
    nd = int(g.rng.integers(0, 4))
    shape = tuple(int(d) for d in g.rng.integers(0, 6, nd))
    dt = g.dtype()
    x = g.tensor(shape, dt)
    if g.chance(0.7):
        y = g.layout(g.rng.random(shape), dt)
    else:
        y = g.layout((g.rng.random(shape) < 0.5).astype(np.float64), dt)
    w = pw = None
    if g.chance(0.4):
        wshape = shape[int(g.rng.integers(0, nd + 1)):] if nd else ()
        w = torch.tensor(g.rng.random(wshape) * 2, dtype=dt)
    if g.chance(0.4):
        pshape = shape[-1:] if nd else ()
        pw = torch.tensor(g.rng.random(pshape) * 3, dtype=dt)
    kw = dict(weight=w, reduction=g.reduction(), pos_weight=pw)
    return (FL.binary_cross_entropy_with_logits, F.binary_cross_entropy_with_logits, (x, y), kw,
            False)


def case_kl_div(g):
    nd = int(g.rng.integers(0, 4))
    shape = tuple(int(d) for d in g.rng.integers(0, 6, nd))
    dt = g.dtype()
    x = g.tensor(shape, dt)
    log_target = g.chance(0.5)
    if log_target:
        y = g.tensor(shape, dt)
    else:
        v = g.rng.random(shape)
        if v.size and g.chance(0.3):
            v.flat[int(g.rng.integers(v.size))] = 0.0
        if v.size and g.chance(0.1):
            v.flat[int(g.rng.integers(v.size))] = np.nan
        y = g.layout(v, dt)
    kw = dict(reduction=g.reduction(["batchmean"]), log_target=log_target)
    return FL.kl_div, F.kl_div, (x, y), kw, False


def _softmax_case(g, fl_fn, t_fn):
    nd = int(g.rng.integers(0, 5))
    shape = tuple(int(d) for d in g.rng.integers(0, 7, nd))
    dt = g.dtype()
    x = g.tensor(shape, dt)
    nd1 = max(nd, 1)
    dim = int(g.rng.integers(-nd1, nd1)) if not g.chance(0.08) else nd1 + 1
    kw = {}
    if g.chance(0.1):
        kw["dtype"] = torch.float64 if dt == torch.float32 else torch.float32
    return fl_fn, t_fn, (x, dim), kw, False


def case_log_softmax(g):
    return _softmax_case(g, FL.log_softmax, F.log_softmax)


def case_softmax(g):
    return _softmax_case(g, FL.softmax, F.softmax)


def case_linear_cross_entropy(g):
    dt = g.dtype()
    H = int(g.choice([1, 3, 8, 16]))
    V = int(g.choice([1, 2, 5, 17, 40]))
    N = int(g.choice([0, 1, 3, 9, 40]))
    oned = g.chance(0.15)
    xs = (H,) if oned else (N, H)
    if g.chance(0.85):
        x = g.layout(g.rng.standard_normal(xs), dt)
        W = g.layout(g.rng.standard_normal((V, H)) * 0.5, dt)
    else:
        x = g.tensor(xs, dt)
        W = g.tensor((V, H), dt)
    b = torch.tensor(g.rng.standard_normal(V), dtype=dt) if g.chance(0.5) else None
    ign = g.ignore_index(V)
    target = g.index_target(() if oned else (N,), V, ign)
    if target.dtype == torch.uint8:
        target = target.to(torch.int64)
    eps = g.smoothing()
    kw = dict(linear_bias=b, weight=g.class_weight(V, dt), reduction=g.reduction(),
              ignore_index=ign, label_smoothing=eps)
    deliberate = not eps >= 0.0
    return FL.linear_cross_entropy, F.linear_cross_entropy, (x, W, target), kw, deliberate


CASES = {
    "cross_entropy": case_cross_entropy,
    "nll_loss": case_nll_loss,
    "binary_cross_entropy_with_logits": case_bce,
    "kl_div": case_kl_div,
    "log_softmax": case_log_softmax,
    "softmax": case_softmax,
    "linear_cross_entropy": case_linear_cross_entropy,
}
# Inputs whose gradient is compared (argument positions).
GRAD_ARGS = {"linear_cross_entropy": (0, 1)}


# ------------------------------------------------------------- comparison --
def _clone_args(args, kw, grad_pos):
    """Fresh leaf copies (same values, strides kept) so the two calls share nothing."""
    def cl(t, req):
        if not isinstance(t, torch.Tensor):
            return t
        c = torch.empty_strided(t.shape, t.stride(), dtype=t.dtype)
        c.copy_(t)
        if req and t.is_floating_point():
            c.requires_grad_(True)
        return c
    a = tuple(cl(t, i in grad_pos) for i, t in enumerate(args))
    k = {n: cl(v, False) for n, v in kw.items()}
    if k.get("linear_bias") is not None:
        k["linear_bias"].requires_grad_(True)
    return a, k


def _tols(dtype):
    return (2e-4, 1e-5) if dtype == torch.float32 else (1e-9, 1e-12)


def _ok(got, ref, scale=None):
    """Per element: the values agree (same NaN, same inf, finite values within a
    tolerance relative to the magnitude `scale` (per element) of the terms)."""
    got = got.detach().to(torch.float64).numpy()
    ref = ref.detach().to(torch.float64).numpy()
    if _inf_for_nan:
        # documented difference: label_smoothing=1 with an overflowing logit
        # difference is +inf (exact), where torch's 0 * inf gives NaN
        ref = np.where(np.isnan(ref) & (got == np.inf), np.inf, ref)
        # documented difference 2 (float64): fastlog's exact finite value near the
        # overflow threshold where torch's intermediate (lse - x_c) overflowed
        near = np.isinf(ref) & np.isfinite(got) & (np.abs(got) > 1e307) & (np.sign(got) == np.sign(ref))
        ref = np.where(near, got, ref)
    gn, rn = np.isnan(got), np.isnan(ref)
    gi, ri = np.isinf(got), np.isinf(ref)
    ok = (gn & rn) | (gi & ri & (got == ref))
    fin = ~(gn | gi | rn | ri)
    rtol, atol = _tols_cur
    s = np.abs(ref) if scale is None else np.broadcast_to(scale, ref.shape)
    with np.errstate(over="ignore", invalid="ignore"):
        ok |= fin & (np.abs(got - ref) <= atol + rtol * (np.abs(ref) + s))
    return ok, got, ref


def _close(name, what, got, ref, scale=None):
    """Values agree everywhere (see _ok)."""
    assert tuple(got.shape) == tuple(ref.shape), f"{name} {what}: shape {tuple(got.shape)} vs torch {tuple(ref.shape)}"
    ok, g, r = _ok(got, ref, scale)
    assert ok.all(), _mismatch(name, what, g, r, ok)


def _mismatch(name, what, g, r, ok):
    kind = ("NaN pattern" if (np.isnan(g) != np.isnan(r)).any() else
            "inf pattern" if (np.isinf(g) != np.isinf(r)).any() else "max error")
    with np.errstate(invalid="ignore"):
        err = np.abs(g - r)[~ok]
    err = err[np.isfinite(err)]
    return f"{name} {what}: {kind} differs (max error {err.max() if err.size else 0:.3g}):\n{g}\nvs torch\n{r}"


_tols_cur = (0, 0)
_inf_for_nan = False


def _loss_scale(t_fn, args, kw):
    """Magnitude of the terms a reduced loss adds up: the reduction of |per-element
    loss| (torch, float64), so cancelling sums get a fair tolerance.  For
    linear_cross_entropy also the logits' rounding: sum_h |x_h| |W_ch|."""
    red = kw.get("reduction")
    mag = None
    if t_fn is F.binary_cross_entropy_with_logits:
        # (1 - y) x + lw softplus(-x) cancels for large |x| (lw = 1 + (pw - 1) y):
        # both sides round its terms in the input's dtype, so the tolerance is
        # relative to their size, not to the result's
        with torch.no_grad():
            x, y = args[0].detach().double(), args[1].detach().double()
            pw, w = kw.get("pos_weight"), kw.get("weight")
            lw = 1 + (pw.double() - 1) * y if pw is not None else torch.ones_like(y)
            sp = torch.clamp(-x, min=0) + torch.log1p(torch.exp(-x.abs()))
            m = (1 - y).abs() * x.abs() + lw.abs() * sp
            if w is not None:
                m = m * w.double().abs()
            m = torch.where(torch.isfinite(m), m, torch.zeros_like(m))
        if red in (None, "none"):
            return m.numpy()
        tot = _reduced_scale(t_fn, args, kw, red)
        ms = float(m.sum()) / (max(1, m.numel()) if red == "mean" else 1)
        return ms if tot is None else max(tot, ms)
    if t_fn is F.linear_cross_entropy:
        with torch.no_grad():
            m = args[0].detach().double().abs() @ args[1].detach().double().abs().T
            m = m[torch.isfinite(m)]
            mag = float(m.max()) if m.numel() else 0.0
    if red in (None, "none"):
        return mag
    tot = _reduced_scale(t_fn, args, kw, red)
    return tot if mag is None or tot is None else max(tot, mag)


def _reduced_scale(t_fn, args, kw, red):
    try:
        a64 = tuple(t.detach().double() if isinstance(t, torch.Tensor) and t.is_floating_point() else t
                    for t in args)
        k64 = {n: (v.detach().double() if isinstance(v, torch.Tensor) and v.is_floating_point() else v)
               for n, v in kw.items()}
        k64["reduction"] = "none"
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            per = t_fn(*a64, **k64).abs()
    except Exception:
        return None
    per = torch.where(torch.isfinite(per), per, torch.zeros_like(per))
    eps = kw.get("label_smoothing", 0.0)
    if eps and eps > 0:
        # torch sums -w_c * log p_c over the whole batch: terms of the logits' size
        x = a64[0] if t_fn is not F.linear_cross_entropy else a64[0] @ a64[1].T
        x = torch.where(torch.isfinite(x), x.abs(), torch.zeros_like(x))
        w = k64.get("weight")
        wmax = 1.0 if w is None or not w.numel() else max(1.0, float(w.abs().max()))
        per = per + float(x.sum()) * wmax / max(1, per.numel())
    tot = float(per.sum())
    if red == "mean" or red == "batchmean":
        tot = tot / max(1, per.numel()) if red == "mean" else tot / max(1, (args[0].shape or (1,))[0])
        # mean over weights can scale up: allow for that
        tot = max(tot, float(per.max()) if per.numel() else 0.0)
    return tot


def run_case(name, seed):
    """One differential case; returns a short label of what it exercised."""
    global _tols_cur, _inf_for_nan
    g = Gen(seed)
    fl_fn, t_fn, args, kw, deliberate = CASES[name](g)
    # documented difference 2: with finite logits the exact loss is finite or
    # overflows to +inf; torch can give NaN there (0 * inf)
    # (finite logits: only where some are large enough for torch's intermediates to
    # overflow; a NaN from a zero 'mean' denominator is torch's and fastlog's alike)
    _inf_for_nan = kw.get("label_smoothing") == 1.0 or (_all_finite(args, kw) and _large(args))
    grad_pos = GRAD_ARGS.get(name, (0,))
    a1, k1 = _clone_args(args, kw, grad_pos)
    a2, k2 = _clone_args(args, kw, grad_pos)
    _tols_cur = _tols(args[0].dtype if kw.get("dtype") is None else kw["dtype"])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            r_t = t_fn(*a2, **k2)
            e_t = None
        except Exception as e:  # noqa: BLE001 - any torch error is "raises"
            r_t, e_t = None, e
        try:
            r_f = fl_fn(*a1, **k1)
            e_f = None
        except Exception as e:  # noqa: BLE001
            r_f, e_f = None, e
    ctx = f"[{name} seed={seed}] args={_describe(args, kw)}"
    if deliberate:
        assert e_f is not None, f"{ctx}: fastlog accepted a deliberately rejected argument"
        assert isinstance(e_f, ValueError), f"{ctx}: {type(e_f).__name__}: {e_f}"
        return "deliberate"
    if e_t is not None or e_f is not None:
        assert e_t is not None and e_f is not None, (
            f"{ctx}: only {'torch' if e_t is not None else 'fastlog'} raised: "
            f"{type(e_t or e_f).__name__}: {e_t or e_f}")
        # one exception, not a chain
        assert e_f.__cause__ is None and (e_f.__context__ is None or e_f.__suppress_context__), \
            f"{ctx}: chained exception {e_f!r} <- {e_f.__context__!r}"
        return "raises"
    scale = _loss_scale(t_fn, args, kw)
    go = None
    if r_t.requires_grad and r_f.requires_grad:
        go = torch.tensor(g.rng.standard_normal(tuple(r_t.shape)), dtype=r_t.dtype)
        if r_t.dim() == 0 and g.chance(0.5):
            go = torch.ones((), dtype=r_t.dtype)
    # float32: fastlog accumulates in float64, so where torch's float32 sums
    # overflow (inf, or inf - inf = NaN) fastlog may hold the exact finite value.
    # Such a result is accepted when it matches torch run in float64 (then
    # rounded to float32) instead.
    global _mp_case
    ce_case = _as_ce_case(name, args, kw)
    _mp_case = (ce_case if ce_case is not None and kw.get("reduction") == "none"
                and r_t.dtype == torch.float64 and not torch.isfinite(r_t).all()
                and _finite_large(ce_case[0][0]) and (kw.get("weight") is None
                                                      or bool(torch.isfinite(kw["weight"]).all())) else None)
    alt = _Alt(t_fn, args, kw, grad_pos, go) if r_t.dtype == torch.float32 else None
    _close_or_alt(name, f"value {ctx}", r_f, r_t, scale, alt, "value", _ExactReduced(t_fn, args, kw, r_t),
                  overflow=_logit_overflow(args, kw, tuple(r_t.shape)) if name == "linear_cross_entropy" else None)
    # Gradients: backward with a random grad_output, same on both sides.
    if go is None:
        assert r_t.requires_grad == r_f.requires_grad, f"{ctx}: requires_grad differs"
        return "value"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            r_t.backward(go)
        except RuntimeError:
            # torch's own backward fails on some layouts (nll_loss on a
            # non-contiguous K-dim input: "grad_input must be contiguous");
            # nothing to compare against.
            return "value"
        r_f.backward(go.clone())
    relaxed = name == "linear_cross_entropy" and not _finite_logits(args, kw)
    grads = [(i, a2[i].grad, a1[i].grad) for i in grad_pos]
    if k2.get("linear_bias") is not None:
        grads.append(("bias", k2["linear_bias"].grad, k1["linear_bias"].grad))
    for i, gt, gf in grads:
        if gt is None or gf is None:
            assert (gt is None or not gt.any()) and (gf is None or not gf.any()), \
                f"{ctx}: gradient {i} present on one side only"
            continue
        ov = _gemm_overflow(args, kw, i, go) if name == "linear_cross_entropy" else None
        if relaxed:
            # torch's linear_cross_entropy spreads NaN from a row with non-finite
            # logits to other rows' gradients; fastlog keeps rows independent.
            # Compare where torch's gradient is not NaN.
            keep = ~torch.isnan(gt)
            gt, gf = gt[keep], gf[keep]
            ov = None if ov is None else ov[keep.numpy()]
        gs = np.abs(gt.detach().double().numpy())
        gs = gs[np.isfinite(gs)]
        gs = float(gs.max()) if gs.size else 0.0
        if name == "linear_cross_entropy" and i in (0, 1):
            # grad_input = dlogits @ W, grad_weight = dlogits.T @ x: cancelling sums
            other = args[1 - i].detach().double().abs()
            other = other[torch.isfinite(other)]
            w = kw.get("weight")
            wmax = 1.0 if w is None or not w.numel() else max(1.0, float(w.abs().max()))
            rows = max(1, args[0].shape[0]) if (i == 1 and args[0].dim() == 2) else 1
            gs = max(gs, (float(other.max()) if other.numel() else 0.0) * wmax * rows)
        if name == "linear_cross_entropy":
            gs = max(gs, _logit_rounding_allowance(args, kw, i, go) / _tols_cur[0])
        _close_or_alt(name, f"grad[{i}] {ctx}", gf, gt, gs,
                      None if relaxed else alt, i,
                      overflow=ov)
    return "grad"


def _large(args):
    return any(isinstance(t, torch.Tensor) and t.is_floating_point() and t.numel()
               and float(t.detach().abs().max()) > 1e18 for t in args)


def _finite_large(t):
    """Some finite element of t is large enough for torch's intermediates to overflow."""
    f = t.detach()[torch.isfinite(t.detach())]
    return bool(f.numel()) and float(f.abs().max()) > 1e18


def _all_finite(args, kw):
    ts = list(args) + list(kw.values())
    return all(not isinstance(t, torch.Tensor) or not t.is_floating_point()
               or bool(torch.isfinite(t).all()) for t in ts)


def _logit_rounding_allowance(args, kw, i, go):
    """linear_cross_entropy's gradients depend on the logits x W^T + b, which any
    implementation forms in the input's dtype with an error up to
    dz = H eps max_c sum_h |x_h W_ch| (+|b_c|).  That moves each probability by a
    factor up to exp(+-2 dz), so d(loss)/d(logits) by up to 2 expm1(2 dz) per row
    (weights and grad_output scale it), and grad_input = dlogits W, grad_weight =
    dlogits^T x, grad_bias = sum_rows dlogits by that times max|W|, rows * max|x|,
    rows.  With float32 logits of 1e8 and more (dz >= 1) the gradient is not
    determined by the inputs at all; float64 and moderate float32 logits get a
    negligible allowance."""
    x, W = args[0].detach().double(), args[1].detach().double()
    b = kw.get("linear_bias")
    with torch.no_grad():
        m = x.abs() @ W.abs().T
        if b is not None:
            m = m + b.detach().double().abs()
    m = m[torch.isfinite(m)]
    if not m.numel():
        return 0.0
    dz = x.shape[-1] * float(torch.finfo(args[0].dtype).eps) * float(m.max())
    cond = 2.0 * math.expm1(min(2.0 * dz, 700.0))
    w = kw.get("weight")
    wmax = 1.0 if w is None or not w.numel() else max(1.0, float(w.abs().max()))
    gmax = 1.0 if go is None or not go.numel() else max(1.0, float(go.abs().max()))
    rows = max(1, x.shape[0]) if x.dim() == 2 else 1
    fin = lambda t: float(t[torch.isfinite(t)].abs().max()) if torch.isfinite(t).any() else 0.0  # noqa: E731
    factor = {0: fin(W), 1: rows * fin(x), "bias": rows}[i]
    return cond * wmax * gmax * factor


def _logit_overflow(args, kw, shape):
    """linear_cross_entropy's loss: positions whose logits x W^T + b can overflow
    in some summation order (sum_h |x_h W_ch| + |b_c| beyond the dtype's max:
    inf - inf = NaN in one order, finite in another; documented difference 4),
    in the loss's shape (a reduced loss: any such row)."""
    x, W = args[0].detach().double().abs(), args[1].detach().double().abs()
    with torch.no_grad():
        m = x.reshape(-1, x.shape[-1]) @ W.T
        b = kw.get("linear_bias")
        if b is not None:
            m = m + b.detach().double().abs()
    rows = (m >= float(torch.finfo(args[0].dtype).max)).any(dim=-1).numpy()
    if shape == ():
        return np.array(bool(rows.any()))
    return rows.reshape(shape)


def _gemm_overflow(args, kw, i, go):
    """linear_cross_entropy: the gradient elements whose GEMM sum can overflow in
    some summation order (|dlogits| <= 2 max|w| max|grad_output| per row):
    grad_weight[c, h] = sum_r dlogits[r, c] x[r, h], grad_input[r, h] =
    sum_c dlogits[r, c] W[c, h].  None where nothing comes near the limit."""
    x, W = args[0].detach().double().abs(), args[1].detach().double().abs()
    w = kw.get("weight")
    wmax = 1.0 if w is None or not w.numel() else max(1.0, float(w.abs().max()))
    gmax = 1.0 if go is None or not go.numel() else max(1.0, float(go.abs().max()))
    big = float(torch.finfo(args[0].dtype).max) / (2.0 * wmax * gmax)
    # rows whose logits can overflow in some order: their whole gradient row (and
    # anything summed over rows) may be non-finite on either side
    rows = _logit_overflow(args, kw, (x.reshape(-1, x.shape[-1]).shape[0],))
    if i == 1:
        xs = x.reshape(-1, x.shape[-1]).sum(0)                  # (H,)
        return np.broadcast_to((xs >= big).numpy() | bool(rows.any()), tuple(W.shape))
    if i == 0:
        ws = W.sum(0)                                           # (H,)
        m = (ws >= big).numpy()[None, :] | rows[:, None]
        return np.broadcast_to(m.reshape(-1, m.shape[-1]) if x.dim() == 2 else m[0], tuple(x.shape))
    return np.broadcast_to(np.array(bool(rows.any())), tuple(W.shape[:1]))


def _finite_logits(args, kw):
    """linear_cross_entropy: the logits x W^T + b, formed in the input's dtype as
    torch does, are all finite (documented difference 3 is about rows whose
    logits are not; x and W of 1e28 and 1e25 overflow float32 logits)."""
    with torch.no_grad():
        z = F.linear(args[0].detach(), args[1].detach(), kw.get("linear_bias"))
    return bool(torch.isfinite(z).all())


class _Alt:
    """torch on float64 copies of the arguments (computed on first use)."""

    def __init__(self, t_fn, args, kw, grad_pos, go):
        self.t_fn, self.args, self.kw, self.grad_pos, self.go = t_fn, args, kw, grad_pos, go
        self.res = None

    def get(self, key):
        if self.res is None:
            def up(t, req):
                if isinstance(t, torch.Tensor) and t.is_floating_point():
                    return t.detach().double().requires_grad_(req)
                return t
            a = tuple(up(t, i in self.grad_pos) for i, t in enumerate(self.args))
            k = {n: up(v, n == "linear_bias") for n, v in self.kw.items()}
            if k.get("dtype") is not None:
                k["dtype"] = torch.float64
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                r = self.t_fn(*a, **k)
                self.res = {"value": r.detach().float()}
                if self.go is not None and r.requires_grad:
                    try:
                        r.backward(self.go.double())
                    except RuntimeError:   # torch's backward fails on some layouts
                        return self.res.get(key)
                    for i in self.grad_pos:
                        if a[i].grad is not None:
                            self.res[i] = a[i].grad.float()
                    if k.get("linear_bias") is not None and k["linear_bias"].grad is not None:
                        self.res["bias"] = k["linear_bias"].grad.float()
        return self.res.get(key)


def _close_or_alt(name, what, got, ref, scale, alt, key, exact=None, overflow=None):
    """got agrees with torch; or (float32) each element agrees with torch or with
    torch run in float64 (documented difference 2: fastlog's float64
    accumulation keeps finite what torch's float32 sums overflow; which elements
    that touches depends on the summation order); or a reduced loss equals the
    exact sum of torch's terms (documented difference 4)."""
    assert tuple(got.shape) == tuple(ref.shape), f"{name} {what}: shape {tuple(got.shape)} vs torch {tuple(ref.shape)}"
    ok, g, r = _ok(got, ref, scale)
    if key == "value" and not ok.all() and _mp_case is not None:
        # documented difference 2: torch's NaN from 0 * inf (a zero weight or target
        # times an overflowed lse - x_c), or its inf from an overflowed lse - x_c
        # that a target probability below 1 scales back into range, where the
        # exact loss (mpmath) is finite or +inf
        # (positions whose own logits and targets are finite: _mp_ce gives NaN elsewhere)
        mp_ref = _mp_ce(*_mp_case)
        ok |= ~np.isfinite(r) & ~np.isnan(mp_ref.numpy()) & _ok(got, mp_ref, scale)[0]
    if overflow is not None:
        # documented difference 4: elements whose sum can overflow in some order
        # may be non-finite on either side
        ok |= overflow & ~(np.isfinite(g) & np.isfinite(r))
    if ok.all():
        return
    ref2 = alt.get(key) if alt is not None else None
    if ref2 is not None:
        ok2, _, r2 = _ok(got, ref2, scale)
        if (ok | ok2).all():
            return
    ref3 = exact.get() if exact is not None else None
    if ref3 is not None:
        _close(name, what + " (and vs the exact sum of torch's float64 terms)", got, ref3.to(got.dtype),
               scale)
        return
    if ref2 is not None:
        what += " (and vs torch in float64)"
    raise AssertionError(_mismatch(name, what, g, r, ok))


def _as_ce_case(name, args, kw):
    """(args, kw) of the cross_entropy a call amounts to: itself, or for
    linear_cross_entropy the cross-entropy of its float64 logits x W^T + b (the exact
    loss of those is what fastlog may return where torch's intermediates overflow,
    documented difference 2); None for other functions."""
    if name == "cross_entropy":
        return args, kw
    if name != "linear_cross_entropy":
        return None
    x, W = args[0].detach().double(), args[1].detach().double()
    b = kw.get("linear_bias")
    with torch.no_grad():
        z = x @ W.T + (0.0 if b is None else b.detach().double())
    ce_kw = {k: kw[k] for k in ("weight", "ignore_index", "label_smoothing", "reduction") if k in kw}
    if ce_kw.get("ignore_index") is None:
        ce_kw["ignore_index"] = -100
    return (z, args[2]), ce_kw


def _mp_ce(args, kw):
    """cross_entropy with reduction='none' in mpmath (no overflow anywhere),
    rounded to float64 (+-inf beyond its range): the exact per-position loss."""
    import mpmath as mp
    x, t = args[0].detach().double(), args[1].detach()
    if x.dim() == 1:
        x, t = x[None], t[None]
    C = x.shape[1]
    xr = x.movedim(1, -1).reshape(-1, C).tolist()
    prob = t.is_floating_point()
    tr = t.double().movedim(1, -1).reshape(-1, C).tolist() if prob else t.reshape(-1).tolist()
    w = kw.get("weight")
    w = [1.0] * C if w is None else w.double().tolist()
    eps = float(kw.get("label_smoothing", 0.0))
    ign = kw.get("ignore_index", -100)
    out = []
    with mp.workdps(40):
        for r, row in enumerate(xr):
            if not prob and tr[r] == ign:
                out.append(0.0)
                continue
            if not all(map(math.isfinite, row)) or (prob and not all(map(math.isfinite, tr[r]))):
                out.append(math.nan)   # no exact value to offer: torch's must hold
                continue
            v = [mp.mpf(a) for a in row]
            m = max(v)
            ls = mp.log(mp.fsum(mp.e ** (a - m) for a in v))
            nlp = [(m - a) + ls for a in v]            # -log p_c, exact
            if prob:
                tp = [(1 - eps) * mp.mpf(tc) + eps / C for tc in tr[r]]
                li = mp.fsum(mp.mpf(w[c]) * tp[c] * nlp[c] for c in range(C))
            else:
                y = tr[r]
                li = (1 - eps) * mp.mpf(w[y]) * nlp[y] + eps / C * mp.fsum(mp.mpf(w[c]) * nlp[c]
                                                                        for c in range(C))
            if mp.isnan(li) or abs(li) <= F64MAX:
                out.append(float(li))
            else:
                out.append(math.inf if li > 0 else -math.inf)
    x0 = args[0]
    shape = () if x0.dim() == 1 else (x0.shape[0],) + tuple(x0.shape[2:])
    return torch.tensor(out, dtype=torch.float64).reshape(shape)


_mp_case = None


class _ExactReduced:
    """Documented difference 4: a reduced loss is the correctly rounded sum of the
    per-position losses (divided by torch's denominator for 'mean'/'batchmean'),
    where torch's summation order can overflow to +-inf, or give inf - inf = NaN,
    although the exact total is finite (or an exact +inf total comes out NaN).
    The reference: torch's own per-position losses (reduction='none', on float64
    copies), summed exactly (fractions; an infinite term decides the sign, both
    infinities or a NaN give NaN), rounded once to float64.  None where the
    reduction is 'none' or the per-position call fails."""

    def __init__(self, t_fn, args, kw, ref):
        self.t_fn, self.args, self.kw, self.ref = t_fn, args, kw, ref

    def get(self):
        red = self.kw.get("reduction", "mean")
        if red == "none":
            return None
        t_fn, args, kw = self.t_fn, self.args, self.kw
        a = tuple(t.detach().double() if isinstance(t, torch.Tensor) and t.is_floating_point() else t
                  for t in args)
        k = {n: (v.detach().double() if isinstance(v, torch.Tensor) and v.is_floating_point() else v)
             for n, v in kw.items()}
        k["reduction"] = "none"
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                per = t_fn(*a, **k).detach().reshape(-1).numpy()
        except Exception:  # noqa: BLE001
            return None
        ce_case = _as_ce_case("linear_cross_entropy" if t_fn is F.linear_cross_entropy else "cross_entropy",
                              a, k)
        if (not np.isfinite(per).all() and t_fn in (F.cross_entropy, F.linear_cross_entropy)
                and args[0].dtype == torch.float64
                and (_inf_for_nan if t_fn is F.cross_entropy else _finite_large(ce_case[0][0]))):
            # torch's own terms are NaN (0 * inf) or inf from an overflowed
            # intermediate (difference 2): the exact ones (linear + CE: of the
            # float64 logits x W^T + b)
            per = _mp_ce(*ce_case).reshape(-1).numpy()
            replaced = True
        else:
            replaced = False
        # Only where some summation order can overflow: sum |terms| beyond float64
        # max; or torch's result is not finite and some term is huge (torch sums
        # the smoothing part, up to C / eps times a term, before scaling it); or
        # torch's terms were replaced by the exact ones.
        fin = np.abs(per[np.isfinite(per)])
        huge = fin.size and fin.max() > 1e300 and not bool(torch.isfinite(self.ref).all())
        if not (replaced or huge or _overflows(fin)):
            return None
        total = _exact_sum(per)
        if red == "sum":
            return torch.tensor(total, dtype=torch.float64)
        if red == "batchmean":
            n = args[0].shape[0] if args[0].dim() else 1
            return torch.tensor(total, dtype=torch.float64) / n
        denom = _mean_denominator(t_fn, args, kw, per)
        return torch.tensor(total, dtype=torch.float64) / denom


def _overflows(mags):
    from fractions import Fraction
    return sum(Fraction(float(v)) for v in mags) > Fraction(F64MAX)


def _exact_sum(per):
    from fractions import Fraction
    if np.isnan(per).any():
        return math.nan
    pos, neg = bool((per == np.inf).any()), bool((per == -np.inf).any())
    if pos or neg:
        return math.nan if pos and neg else (math.inf if pos else -math.inf)
    s = sum(Fraction(float(v)) for v in per)
    try:
        return float(s)   # correctly rounded
    except OverflowError:
        return math.inf if s > 0 else -math.inf


def _mean_denominator(t_fn, args, kw, per):
    """torch's divisor for reduction='mean': the summed class weights of the
    non-ignored targets for index targets, else the number of elements."""
    if t_fn in (F.cross_entropy, F.nll_loss, F.linear_cross_entropy):
        target = args[2] if t_fn is F.linear_cross_entropy else args[1]
        if not target.is_floating_point():
            t = target.reshape(-1).to(torch.int64)
            keep = t != kw.get("ignore_index", -100)
            w = kw.get("weight")
            if w is None:
                return float(keep.sum())
            return float(w.double()[t[keep]].sum())
    return float(per.size)


def _describe(args, kw):
    def d(v):
        if isinstance(v, torch.Tensor):
            return f"T{tuple(v.shape)}{str(v.dtype)[6:]}{'' if v.is_contiguous() else '/nc'}"
        return repr(v)
    return ", ".join([d(a) for a in args] + [f"{k}={d(v)}" for k, v in kw.items()])


# ------------------------------------------------------------------ tests --
@pytest.mark.parametrize("name", list(CASES))
def test_fuzz_against_torch(name):
    """CI: CI_CASES deterministic cases per function (seeds 0..CI_CASES-1)."""
    kinds = {}
    base = 1_000_003 * (list(CASES).index(name) + 1)
    for i in range(CI_CASES):
        k = run_case(name, base + i)
        kinds[k] = kinds.get(k, 0) + 1
    # The generator really exercises values, gradients and errors.
    assert kinds.get("grad", 0) > CI_CASES // 4, kinds
    assert kinds.get("raises", 0) + kinds.get("deliberate", 0) > 0 or name in (
        "kl_div", "binary_cross_entropy_with_logits"), kinds


@pytest.mark.skipif(not LONG_SECONDS, reason="opt-in: FASTLOG_FUZZ_SECONDS=N runs the long fuzz")
def test_fuzz_long():
    """FASTLOG_FUZZ_SECONDS=N: round-robin over all functions for N seconds."""
    deadline = time.monotonic() + LONG_SECONDS
    counts = {n: {} for n in CASES}
    failures = []
    seed = int(os.environ.get("FASTLOG_FUZZ_SEED", "7")) * 10**9
    t0 = time.monotonic()
    last = t0
    while time.monotonic() < deadline:
        for name in CASES:
            seed += 1
            try:
                k = run_case(name, seed)
            except Exception as e:  # noqa: BLE001 - a harness error is a failure too, not a stop
                k = "FAIL"
                if len(failures) < 50:
                    failures.append(f"{type(e).__name__} [{name} seed={seed}]: {str(e)[:2000]}")
            counts[name][k] = counts[name].get(k, 0) + 1
        if time.monotonic() - last > 60:
            last = time.monotonic()
            print(f"[fuzz {last - t0:.0f}s] " + "; ".join(
                f"{n}: {sum(c.values())}" for n, c in counts.items()), flush=True)
    mins = (time.monotonic() - t0) / 60
    print(f"\nfastlog.torch differential fuzz: {mins:.1f} minutes")
    for n, c in counts.items():
        print(f"  {n:34s} {sum(c.values()):7d} cases  {dict(sorted(c.items()))}")
    for f in failures:
        print("FAILURE:", f)
    assert not failures, f"{len(failures)} failing cases (first: {failures[0][:500]})"
