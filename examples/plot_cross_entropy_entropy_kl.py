"""
Cross-entropy = entropy + KL divergence
=======================================

For a target distribution ``p`` and a model distribution ``q = softmax(z)``, the
cross-entropy splits into two parts:

    ``H(p, q) = -sum_c p_c log q_c = H(p) + KL(p || q)``,

the entropy ``H(p) = -sum_c p_c log p_c``, which the model cannot change, and the
Kullback-Leibler divergence ``KL(p || q) = sum_c p_c log(p_c / q_c) >= 0``, which is
zero exactly when ``q = p``.  Minimising the cross-entropy over the model is
therefore minimising the KL divergence, and the smallest loss a model can reach
is the target's entropy (0 for one-hot labels, more with label smoothing or soft
targets).

Here the three quantities come from three independent places:
:func:`fastlog.cross_entropy` with probability targets, :func:`fastlog.kl_div`
(PyTorch's ``kl_div(input=log q, target=p)``) and SciPy's ``entr``.
"""
import matplotlib.pyplot as plt
import numpy as np
import scipy.special

import fastlog

rng = np.random.default_rng(0)
C = 10
p = scipy.special.softmax(rng.standard_normal(C) * 1.5)      # a soft target over 10 classes
target_logits = np.log(p)

# %%
# A path of models from uniform to the target
# -------------------------------------------
# ``z_t = t * log p`` for ``t`` from 0 (every class 1/10) to 1 (``q = p``) and on to 2
# (too confident).  For each model the three numbers are computed separately.

ts = np.linspace(0.0, 2.0, 41)
Z = ts[:, None] * target_logits[None, :]                     # one model per row
P = np.broadcast_to(p, Z.shape).copy()

ce = fastlog.cross_entropy(Z, P, reduction="none")           # -sum_c p_c log softmax(z)_c, per row
kl = fastlog.kl_div(fastlog.log_softmax(Z, axis=1), P, reduction="none").sum(axis=1)
H = scipy.special.entr(p).sum()                              # -sum_c p_c log p_c

gap = np.max(np.abs(ce - (H + kl)))
print(f"entropy of the target H(p) = {H:.6f} nats")
print(f"largest |H(p, q) - (H(p) + KL(p || q))| over the {len(ts)} models: {gap:.2e}")
print(f"at q = p: cross-entropy {ce[ts == 1.0][0]:.6f}, KL {kl[ts == 1.0][0]:.2e}")
assert gap < 1e-12

fig, ax = plt.subplots(figsize=(8, 4.3), layout="constrained")
ax.fill_between(ts, 0, H, color="C0", alpha=0.35, label="entropy H(p) (fixed by the target)")
ax.fill_between(ts, H, H + kl, color="C1", alpha=0.35, label="KL(p || q) (what training removes)")
ax.plot(ts, ce, "k.", ms=6, label="fastlog.cross_entropy(z, p)")
ax.axvline(1.0, color="0.4", ls=":", lw=1)
ax.text(1.02, ce.max() * 0.95, "q = p", fontsize=9, color="0.3")
ax.set_xlabel("t (model logits z = t log p; 0: uniform, 1: the target)")
ax.set_ylabel("nats")
ax.set_title("the cross-entropy is the entropy plus the KL divergence", fontsize=10)
ax.legend(fontsize=8, loc="upper right")
ax.grid(alpha=0.3)

# %%
# The target and two models
# -------------------------
# The uniform model (``t = 0``), the target (``t = 1``) and an over-confident
# model (``t = 2``), with their cross-entropies.

fig, ax_bar = plt.subplots(figsize=(8, 3.8), layout="constrained")
x = np.arange(C)
for k, (t, label) in enumerate(((0.0, "uniform (t = 0)"), (1.0, "q = p (t = 1)"), (2.0, "over-confident (t = 2)"))):
    q = fastlog.softmax(t * target_logits)
    row = int(np.argmin(np.abs(ts - t)))
    ax_bar.bar(x + (k - 1) * 0.27, q, width=0.27, label=f"{label}: H(p, q) = {ce[row]:.3f}")
ax_bar.plot(x, p, "k_", ms=14, mew=2, label=f"target p: H(p) = {H:.3f}")
ax_bar.set_xticks(x)
ax_bar.set_xlabel("class")
ax_bar.set_ylabel("probability")
ax_bar.legend(fontsize=7.5)
ax_bar.set_title("the target and three models", fontsize=10)
plt.show()

# %%
# One-hot labels and label smoothing
# ----------------------------------
# With one-hot labels ``H(p) = 0`` and the cross-entropy *is* the KL divergence.
# Label smoothing ``e`` replaces the label by ``(1 - e) * onehot + e / C``, whose
# entropy is the floor under the smoothed loss: a model cannot go below it.

z = rng.standard_normal((5, C))
y = rng.integers(0, C, 5)
for eps in (0.0, 0.1):
    smooth = np.full((5, C), eps / C)
    smooth[np.arange(5), y] += 1 - eps
    loss = fastlog.cross_entropy(z, y, label_smoothing=eps, reduction="none")
    same = fastlog.cross_entropy(z, smooth, reduction="none")
    floor = scipy.special.entr(smooth).sum(axis=1)
    print(f"label smoothing {eps}: loss {loss.round(4)}; same with the smoothed target as probabilities: "
          f"{np.allclose(loss, same)}; entropy floor {floor[0]:.4f}")
