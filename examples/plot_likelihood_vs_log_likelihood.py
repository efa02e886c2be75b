"""
Likelihood against log-likelihood: underflow and a vanishing gradient
=====================================================================

Why every framework trains a classifier on the *sum of log-likelihoods* (the
cross-entropy) and never on the *product of likelihoods*, although both have the
same maximum.

The same softmax classifier (10 classes, weights 10 x 784) on real handwritten
digits is trained two ways that are equivalent in exact arithmetic:

* maximise the likelihood of a batch, the product
  ``L = p(y_1|x_1) * p(y_2|x_2) * ... * p(y_n|x_n)``;
* maximise the sum of log-likelihoods ``log L = sum_i log p(y_i|x_i)``, that is
  minimise the cross-entropy (here with :func:`fastlog.cross_entropy_and_grad`).

In floating point, a product of ``n`` probabilities falls below the smallest
float32 (1.4e-45) after a few dozen factors and below the smallest float64
(4.9e-324) after a few hundred: from there on ``L`` is exactly 0.  Its gradient,
``L`` times the gradient of ``log L``, shrinks with ``L`` long before that and is
exactly 0 after.  The sum of logs stays in range for any batch.
"""
import os

import matplotlib.pyplot as plt
import numpy as np

import fastlog
from fastlog.data import mnist_train_test
from fastlog.nn import linear_backward, linear_forward

FAST = os.environ.get("FASTLOG_EXAMPLES_FAST") == "1"   # the test suite: a few steps only
STEPS = 20 if FAST else 300

Xtr, Xte, ytr, yte = mnist_train_test()     # 4,000 training and 1,000 held-out digits, pixels in [0, 1]


# %%
# The two objectives and their gradients
# --------------------------------------
# ``product_and_grad`` computes ``L`` and ``dL/dW`` directly in a given dtype, as
# autograd would for the product.  ``loglik_and_grad`` takes the mean
# log-likelihood and its gradient from fastlog's fused cross-entropy, whose
# gradient with respect to the logits is ``(softmax - onehot) / n``.

def product_and_grad(W, b, x, y, dtype):
    """L = prod_i p(y_i|x_i) and dL/dW, dL/db, computed in `dtype`."""
    W, b, x = W.astype(dtype), b.astype(dtype), x.astype(dtype)
    p = fastlog.softmax(linear_forward(x, W, b), axis=1)
    py = p[np.arange(len(y)), y]
    L = np.prod(py)                                   # underflows to 0 for long batches
    dz = -p
    dz[np.arange(len(y)), y] += 1                     # d log p_i / dz_i = onehot - softmax
    dz *= L                                           # dL/dz_i = L * d log p_i / dz_i
    _, gW, gb = linear_backward(dz, x, W, input_grad=False)
    return L, gW, gb


def loglik_and_grad(W, b, x, y):
    """mean_i log p(y_i|x_i) and its gradient: fastlog's fused cross-entropy, float32."""
    nll, dz = fastlog.cross_entropy_and_grad(linear_forward(x, W, b), y)
    _, gW, gb = linear_backward(dz, x, W, input_grad=False)
    return -float(nll), -gW, -gb


# %%
# Training both ways
# ------------------
# Gradient ascent from zero weights with learning rate 0.5.  The sum of logs
# learns at batch 256.  The product's loss does not move at batch 16 or 256: at
# batch 16 its gradient is tiny but not zero, so the weights turn a little (the
# accuracy, which needs only the direction of ``W``, rises); at batch 256 it is
# exactly zero and nothing happens at all.

def train(objective, n, steps, lr=0.5, every=10):
    """Gradient ascent over batches of n digits; the held-out (step, accuracy, loss) curve and W, b."""
    rng = np.random.default_rng(0)
    W, b = np.zeros((10, 784), np.float32), np.zeros(10, np.float32)
    curve = []
    for step in range(steps + 1):
        if step % every == 0:
            z = linear_forward(Xte, W, b)
            curve.append((step, float(np.mean(np.argmax(z, 1) == yte)), float(fastlog.cross_entropy(z, yte))))
        idx = rng.integers(0, len(ytr), n)
        if objective == "log":
            _, gW, gb = loglik_and_grad(W, b, Xtr[idx], ytr[idx])
        else:
            _, gW, gb = product_and_grad(W, b, Xtr[idx], ytr[idx], np.float32)
        W += lr * gW
        b += lr * gb
    return np.array(curve), W, b


runs = {}
for objective, n in (("log", 256), ("prod", 1), ("prod", 16), ("prod", 256)):
    runs[objective, n], W, b = train(objective, n, STEPS, every=max(1, STEPS // 30))
    if objective == "log":
        trained = (W, b)
    name = "sum of log-likelihoods" if objective == "log" else "product of likelihoods"
    print(f"{name:>24}, batch {n:>3}: held-out loss {runs[objective, n][-1, 2]:.3f}, "
          f"accuracy {runs[objective, n][-1, 1]:.3f} after {STEPS} steps")

fig, (ax_l, ax_a) = plt.subplots(1, 2, figsize=(11, 4.4), layout="constrained")
styles = {("log", 256): ("-", 2.5), ("prod", 1): ("--", 1.5), ("prod", 16): ("-", 4), ("prod", 256): (":", 2.5)}
for (objective, n), curve in runs.items():
    label = f"{'sum of log-likelihoods' if objective == 'log' else 'product of likelihoods'}, batch {n}"
    style, lw = styles[objective, n]
    ax_l.plot(curve[:, 0], curve[:, 2], style, lw=lw, label=label)
    ax_a.plot(curve[:, 0], 100 * curve[:, 1], style, lw=lw, label=label)
ax_l.set_ylabel("held-out cross-entropy (nats)")
ax_l.set_title("the product at batch 16 and 256 does not move", fontsize=10)
ax_l.axhline(np.log(10), color="0.5", lw=0.8, ls=":")
ax_l.text(STEPS, np.log(10) - 0.05, "log 10: every p = 0.1", fontsize=8, color="0.4", ha="right", va="top")
ax_a.axhline(10, color="0.5", lw=0.8, ls=":")
ax_a.text(STEPS, 8, "chance (10 classes)", fontsize=8, color="0.4", ha="right", va="top")
ax_a.set_ylabel("held-out accuracy (%)")
ax_a.set_ylim(0, 100)
ax_a.set_title("held-out accuracy (argmax needs only the direction of W)", fontsize=10)
for ax in (ax_l, ax_a):
    ax.set_xlabel("SGD step (learning rate 0.5, from zero weights)")
    ax.grid(alpha=0.3)
ax_l.legend(fontsize=8, loc="center right", bbox_to_anchor=(1.0, 0.3))

# %%
# Where the product underflows
# ----------------------------
# The value and the gradient norm of both objectives against the batch size, for
# the untrained model (every ``p = 0.1``, so ``L = 0.1 ** n``) and for the model
# trained on the log-likelihood above.  The exact ``log10 L`` comes from summing
# logs in float64.

sizes = 2 ** np.arange(0, 12)
models = {"untrained": (np.zeros((10, 784), np.float32), np.zeros(10, np.float32)), "trained": trained}
table = {}
for name, (W, b) in models.items():
    for n in sizes:
        x, t = Xtr[:n], ytr[:n]
        logp = np.log(fastlog.softmax(linear_forward(x.astype(np.float64), W, b), axis=1)[np.arange(n), t])
        L32, gW32, _ = product_and_grad(W, b, x, t, np.float32)
        L64, gW64, _ = product_and_grad(W, b, x, t, np.float64)
        _, gl, _ = loglik_and_grad(W, b, x, t)
        table[name, n] = (float(np.sum(logp)) / np.log(10), float(L32), float(L64), np.linalg.norm(gW32),
                          np.linalg.norm(gW64), np.linalg.norm(gl))
for name in models:
    first = [n for n in sizes if table[name, n][1] == 0.0]
    print(f"{name} model: the float32 product of likelihoods is exactly 0 from batch size "
          f"{first[0] if first else '> ' + str(sizes[-1])}")


def log10_or_floor(v, floor):
    return np.where(v > 0, np.log10(np.maximum(v, 1e-320)), floor)


fig, (ax_v, ax_g) = plt.subplots(1, 2, figsize=(11, 5.4), layout="constrained")
floor = -350
for name, color in (("untrained", "C0"), ("trained", "C2")):
    rows = np.array([table[name, n] for n in sizes])
    ax_v.plot(sizes, rows[:, 0], "-", color=color, lw=6, alpha=0.2)
    for col, style in ((1, "o-"), (2, "s--")):
        ax_v.plot(sizes, log10_or_floor(rows[:, col], floor), style, color=color, ms=4)
        ax_g.plot(sizes, log10_or_floor(rows[:, col + 2], floor), style, color=color, ms=4)
    ax_g.plot(sizes, np.log10(rows[:, 5]), ":", color=color, lw=2.5)
for ax in (ax_v, ax_g):
    ax.set_xscale("log", base=2)
    ax.set_xlabel("batch size n")
    for dt, ls in ((np.float32, "-"), (np.float64, "--")):
        lim = np.log10(float(np.finfo(dt).smallest_subnormal))
        ax.axhline(lim, color="C3", lw=0.8, ls=ls)
        ax.text(sizes[-1], lim + 3, f"smallest {np.dtype(dt).name}", color="C3", fontsize=8, ha="right",
                va="bottom")
    ax.axhline(floor, color="k", lw=0.6)
    ax.text(1, floor + 3, "exactly 0 (underflow)", fontsize=8, va="bottom")
    ax.set_ylim(floor - 12, 25)
    ax.grid(alpha=0.3)
ax_v.set_ylabel("log10 of the likelihood L = prod p(y_i|x_i)")
ax_v.set_title("the product of likelihoods underflows", fontsize=11)
ax_g.set_ylabel("log10 of a gradient norm")
ax_g.set_title("so does its gradient; the log-likelihood's does not", fontsize=11)
from matplotlib.lines import Line2D  # noqa: E402

handles = [Line2D([], [], color="C0", lw=2, label="untrained model (every p = 0.1)"),
           Line2D([], [], color="C2", lw=2, label="trained model"),
           Line2D([], [], color="k", marker="o", ms=4, label="product computed in float32"),
           Line2D([], [], color="k", ls="--", marker="s", ms=4, label="product computed in float64"),
           Line2D([], [], color="0.5", lw=6, alpha=0.3, label="exact value (summed as logs)"),
           Line2D([], [], color="k", ls=":", lw=2.5, label="gradient of the mean log-likelihood")]
fig.legend(handles=handles, loc="outside lower center", ncol=3, fontsize=8)
plt.show()

# %%
# What this means
# ---------------
# The log turns the product into a sum whose terms are each of order one, so the
# loss and its gradient have the same size for a batch of 1 or of 4,096: that is
# why the loss is taken in the log domain, and why fastlog computes
# ``log_softmax`` and the cross-entropy directly (``x - max - log(sum(exp(x - max)))``)
# instead of ``log(softmax(x))``.  See :doc:`plot_logsumexp_stability` for the
# same issue one level down, inside the sum of exponentials.
