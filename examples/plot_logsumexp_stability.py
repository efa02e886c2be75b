"""
Logsumexp stability: the max shift
==================================

``logsumexp(x) = log(sum(exp(x)))`` is the normaliser of the softmax and the heart
of every cross-entropy.  Written as it reads, it fails as soon as the logits are
large or very negative: ``exp`` overflows to ``inf`` above 88.7 in float32 (709.8 in
float64) and underflows to 0 below about -103 (-745).  The fix is one identity,

    ``logsumexp(x) = m + log(sum(exp(x - m)))``  with ``m = max(x)``,

after which every ``exp`` is at most 1 and the largest term is exactly 1, so the sum
cannot overflow or vanish.  fastlog (like ``scipy.special.logsumexp``) also splits
the largest term out and uses ``log1p`` of the rest, which keeps full accuracy when
one logit dominates.

Here rows of 1,000 float32 logits are moved by an offset ``c``, and each method's
answer is compared with the exact logsumexp of the same float32 values, computed
with mpmath at 50 digits.  The error of a logarithm is best read as an absolute
error: an absolute error ``d`` in ``log S`` is a relative error ``d`` in ``S``.
"""
import matplotlib.pyplot as plt
import mpmath
import numpy as np
import scipy.special

import fastlog

rng = np.random.default_rng(0)
base = rng.standard_normal(1000).astype(np.float32)
offsets = np.concatenate([-np.geomspace(1000, 1, 25), [0.0], np.geomspace(1, 1000, 25)])
mpmath.mp.dps = 50


def exact(x):
    """logsumexp of the float32 values in x, to 50 digits (as a float64)."""
    return float(mpmath.log(mpmath.fsum(mpmath.exp(mpmath.mpf(float(v))) for v in x)))


def naive(x):
    with np.errstate(over="ignore", divide="ignore"):
        return np.log(np.sum(np.exp(x)))


def shifted(x):
    m = np.max(x)
    return m + np.log(np.sum(np.exp(x - m)))


methods = {
    "naive log(sum(exp(x))), float32": naive,
    "naive, float64": lambda x: naive(x.astype(np.float64)),
    "max shift, float32": shifted,
    "scipy.special.logsumexp, float32": scipy.special.logsumexp,
    "fastlog.logsumexp, float32": fastlog.logsumexp,
}
errors = {name: [] for name in methods}
# The yardstick: half a float32 spacing at the largest logit.  The inputs themselves carry that much
# rounding, and logsumexp passes an error in the largest logit straight on to the result.
half_ulp = []
for c in offsets:
    x = (base + np.float32(c)).astype(np.float32)
    ref = exact(x)
    half_ulp.append(float(np.spacing(np.max(np.abs(x)))) / 2)
    for name, f in methods.items():
        v = float(f(x))
        errors[name].append(abs(v - ref) if np.isfinite(v) else np.inf)
half_ulp = np.array(half_ulp)

for name, e in errors.items():
    e = np.array(e)
    finite = np.isfinite(e)
    print(f"{name:34s}: finite for {finite.sum():2d} of {len(e)} offsets; largest error where finite "
          f"{(e[finite] / (2 * half_ulp[finite])).max():.2f} float32 ulps of the largest logit")

# %%
# The picture: absolute error against the offset.  A missing point is ``inf`` or
# ``-inf``: the naive float32 formula fails beyond about +90 and below about
# -100, the float64 one beyond about +-710, while the shifted forms stay within
# about one float32 ulp of the largest logit everywhere (the grey band is half
# an ulp: the rounding the float32 inputs already carry).

fig, ax = plt.subplots(figsize=(9, 4.8), layout="constrained")
styles = ["o", "s", "^", "v", "D"]
for (name, e), marker in zip(errors.items(), styles):
    e = np.array(e)
    e = np.where(np.isfinite(e), np.maximum(e, 1e-9), np.nan)
    label = name + (" (errors below 1e-9 drawn at 1e-9)" if "float64" in name else "")
    ax.plot(offsets, e, marker=marker, ls="none", ms=5, label=label, alpha=0.8)
ax.plot(offsets, half_ulp, color="0.5", lw=6, alpha=0.3, label="half a float32 ulp of the largest logit")
ax.set_xscale("symlog", linthresh=1)
ax.set_yscale("log")
# exp overflows above 88.7 and underflows below -103.3 in float32; the row's own logsumexp is about 7.4
for lim, text in ((-103.3 - 7.4, "float32: every exp\nunderflows to 0"), (88.7 - 7.4, "float32: exp\noverflows to inf")):
    ax.axvline(lim, color="C3", lw=0.7, ls="--")
    ax.text(lim * 1.15, 3e-9, text, color="C3", fontsize=8, ha="right" if lim < 0 else "left")
ax.set_xlabel("offset c added to every logit (symmetric log scale)")
ax.set_ylabel("|error| against mpmath (missing: inf or -inf)")
ax.set_title("logsumexp of 1,000 float32 logits moved by c", fontsize=11)
ax.set_ylim(5e-10, 3e-4)
ax.legend(fontsize=8, loc="upper center")
ax.grid(alpha=0.3)
plt.show()

# %%
# The same failure inside the softmax
# -----------------------------------
# ``exp(x) / sum(exp(x))`` turns into ``inf / inf = nan`` for large logits;
# :func:`fastlog.softmax` and :func:`fastlog.log_softmax` use the shifted form and
# match SciPy.

x = np.array([1000.0, 999.0, 990.0], dtype=np.float32)
with np.errstate(over="ignore", invalid="ignore"):
    print("naive softmax:    ", np.exp(x) / np.sum(np.exp(x)))
print("fastlog.softmax:  ", fastlog.softmax(x))
print("scipy softmax:    ", scipy.special.softmax(x))
print("fastlog.log_softmax:", fastlog.log_softmax(x))
