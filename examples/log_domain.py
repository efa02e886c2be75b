"""Why the loss is taken in the log domain: the product of likelihoods underflows and its gradient vanishes.

The same softmax classifier (10 classes, weights 10 x 784) on real digits is
trained two ways that are equivalent in exact arithmetic:

* maximise the likelihood of a batch, the product  L = p(y_1|x_1) * ... * p(y_n|x_n);
* maximise the sum of log-likelihoods  log L = sum_i log p(y_i|x_i)  (minimise
  the cross-entropy, what every framework does; here ``fastlog.cross_entropy_and_grad``).

In floating point the product of n probabilities falls below the smallest
float32 (1.4e-45) after a few dozen factors, and float64 (4.9e-324) after a
few hundred; from there on L is exactly 0.  Its gradient, L times the gradient
of log L, shrinks with L long before that and is exactly 0 after.  The sum of
logs stays in range for any batch.

Writes two plots: log_domain_underflow.png (value and gradient against batch
size) and log_domain_training.png (held-out accuracy while training each way).

    python examples/log_domain.py [--steps 300] [--out DIR]

FASTLOG_EXAMPLES_FAST=1 trains for a few steps only.
"""
import argparse
import os

import numpy as np

import fastlog
from fastlog.data import mnist_train_test
from fastlog.nn import linear_backward, linear_forward

FAST = os.environ.get("FASTLOG_EXAMPLES_FAST") == "1"


def product_and_grad(W, b, x, y, dtype):
    """L = prod_i p(y_i|x_i) and dL/dW, dL/db computed directly in `dtype`, as autograd would."""
    W, b, x = W.astype(dtype), b.astype(dtype), x.astype(dtype)
    p = fastlog.softmax(linear_forward(x, W, b), axis=1)
    py = p[np.arange(len(y)), y]
    L = np.prod(py)                                   # underflows to 0 for long batches
    dz = p * -1
    dz[np.arange(len(y)), y] += 1                     # d log p_i / dz_i = onehot - softmax
    dz *= (L / py)[:, None] * py[:, None]             # dL/dp_i * dp_i/dz_i = (prod_{j != i} p_j) * p_i * (...)
    _, gW, gb = linear_backward(dz, x, W, input_grad=False)
    return L, gW, gb


def loglik_and_grad(W, b, x, y):
    """mean_i log p(y_i|x_i) and its gradient (fastlog's fused cross-entropy, float32)."""
    nll, dz = fastlog.cross_entropy_and_grad(linear_forward(x, W, b), y)
    _, gW, gb = linear_backward(dz, x, W, input_grad=False)
    return -float(nll), -gW, -gb


def train(objective, n, steps, Xtr, ytr, Xte, yte, lr, every):
    """Gradient ascent on the objective over batches of n digits from zero weights.

    Returns the held-out (step, accuracy, loss) every `every` steps, and the final W, b."""
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


def underflow_table(models, X, y, sizes):
    """{(model name, n): (exact log10 L, L in float32, L in float64, ||dL/dW|| float32, float64,
    ||d mean log-lik / dW||)} on the first n digits."""
    table = {}
    for name, (W, b) in models.items():
        for n in sizes:
            x, t = X[:n], y[:n]
            logp = np.log(fastlog.softmax(linear_forward(x.astype(np.float64), W, b), axis=1)[np.arange(n), t])
            L32, gW32, _ = product_and_grad(W, b, x, t, np.float32)
            L64, gW64, _ = product_and_grad(W, b, x, t, np.float64)
            _, gl, _ = loglik_and_grad(W, b, x, t)
            table[name, n] = (float(np.sum(logp)) / np.log(10), float(L32), float(L64), np.linalg.norm(gW32),
                              np.linalg.norm(gW64), np.linalg.norm(gl))
    return table


def _log10_or_floor(v, floor):
    return np.where(v > 0, np.log10(np.maximum(v, 1e-320)), floor)


def plot_underflow(Figure, table, sizes, path):
    fig = Figure(figsize=(11, 5.2), layout="constrained")
    ax_v, ax_g = fig.subplots(1, 2)
    floor = -350
    for name, color in (("untrained", "C0"), ("trained", "C2")):
        rows = np.array([table[name, n] for n in sizes])
        ax_v.plot(sizes, rows[:, 0], "-", color=color, lw=6, alpha=0.2)
        for col, style in ((1, "o-"), (2, "s--")):
            ax_v.plot(sizes, _log10_or_floor(rows[:, col], floor), style, color=color, ms=4)
            ax_g.plot(sizes, _log10_or_floor(rows[:, col + 2], floor), style, color=color, ms=4)
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
    ax_g.set_title("so does its gradient ||dL/dW||; the log-likelihood's does not", fontsize=11)
    from matplotlib.lines import Line2D
    handles = [Line2D([], [], color="C0", lw=2, label="untrained model (every p = 0.1)"),
               Line2D([], [], color="C2", lw=2, label="trained model"),
               Line2D([], [], color="k", marker="o", ms=4, label="product computed in float32"),
               Line2D([], [], color="k", ls="--", marker="s", ms=4, label="product computed in float64"),
               Line2D([], [], color="0.5", lw=6, alpha=0.3, label="exact value (summed as logs)"),
               Line2D([], [], color="k", ls=":", lw=2.5, label="gradient of the mean log-likelihood")]
    fig.legend(handles=handles, loc="outside lower center", ncol=3, fontsize=8)
    fig.savefig(path, dpi=110)


def plot_training(Figure, runs, steps, path):
    fig = Figure(figsize=(11, 4.4), layout="constrained")
    ax_l, ax_a = fig.subplots(1, 2)
    styles = {("log", 256): ("-", 2.5), ("prod", 1): ("--", 1.5), ("prod", 16): ("-", 4), ("prod", 256): (":", 2.5)}
    for (objective, n), curve in runs.items():
        label = f"{'sum of log-likelihoods' if objective == 'log' else 'product of likelihoods'}, batch {n}"
        style, lw = styles[objective, n]
        ax_l.plot(curve[:, 0], curve[:, 2], style, lw=lw, label=label)
        ax_a.plot(curve[:, 0], 100 * curve[:, 1], style, lw=lw, label=label)
    ax_l.set_ylabel("held-out cross-entropy (nats)")
    ax_l.set_title("held-out loss: the product at batch 16 and 256 does not move", fontsize=10)
    ax_l.axhline(np.log(10), color="0.5", lw=0.8, ls=":")
    ax_l.text(steps, np.log(10) - 0.05, "log 10: every p = 0.1", fontsize=8, color="0.4", ha="right", va="top")
    ax_a.axhline(10, color="0.5", lw=0.8, ls=":")
    ax_a.text(steps, 8, "chance (10 classes)", fontsize=8, color="0.4", ha="right", va="top")
    ax_a.set_ylabel("held-out accuracy (%)")
    ax_a.set_ylim(0, 100)
    ax_a.set_title("accuracy (argmax needs only the direction of W)", fontsize=10)
    for ax in (ax_l, ax_a):
        ax.set_xlabel("SGD step (learning rate 0.5, from zero weights)")
        ax.grid(alpha=0.3)
    ax_l.legend(fontsize=8, loc="center right", bbox_to_anchor=(1.0, 0.21))
    fig.savefig(path, dpi=110)


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--steps", type=int, default=20 if FAST else 300)
    p.add_argument("--out", default=".", help="directory for the two PNG files")
    args = p.parse_args()
    try:
        from matplotlib.figure import Figure
    except ImportError:
        raise SystemExit('log_domain.py: error: the plots need matplotlib: pip install "fastlog-nn[plot]"')
    Xtr, Xte, ytr, yte = mnist_train_test()

    # Training: the sum of logs (batch 256) against the product (batches of 1, 16 and 256).
    runs, trained = {}, None
    for objective, n in (("log", 256), ("prod", 1), ("prod", 16), ("prod", 256)):
        runs[objective, n], W, b = train(objective, n, args.steps, Xtr, ytr, Xte, yte, lr=0.5,
                                         every=max(1, args.steps // 30))
        trained = trained or (W, b)
        print(f"{'sum of log-likelihoods' if objective == 'log' else 'product of likelihoods':>24}, "
              f"batch {n:>3}: held-out loss {runs[objective, n][-1, 2]:.3f}, accuracy "
              f"{runs[objective, n][-1, 1]:.3f} after {args.steps} steps")

    # Value and gradient against the batch size, for the untrained model (every p = 0.1) and the trained one.
    sizes = 2 ** np.arange(0, 12)
    untrained = (np.zeros((10, 784), np.float32), np.zeros(10, np.float32))
    table = underflow_table({"untrained": untrained, "trained": trained}, Xtr, ytr, sizes)
    for name in ("untrained", "trained"):
        first = [n for n in sizes if table[name, n][1] == 0.0]
        print(f"{name} model: the float32 product of likelihoods is exactly 0 from batch size "
              f"{first[0] if first else '> ' + str(sizes[-1])}")

    os.makedirs(args.out, exist_ok=True)
    paths = [os.path.join(args.out, "log_domain_underflow.png"), os.path.join(args.out, "log_domain_training.png")]
    plot_underflow(Figure, table, sizes, paths[0])
    plot_training(Figure, runs, args.steps, paths[1])
    print(f"plots: {', '.join(paths)}")


if __name__ == "__main__":
    main()
