"""
Fused linear + cross-entropy: memory against materialized logits
================================================================

A language model's last layer maps ``N`` hidden states (``H`` features) to ``V``
logits; with ``V`` = 32,000 (Llama 2) or 128,256 (Llama 3) the ``N x V`` logits and
their gradient dwarf everything else in the step.
:func:`fastlog.linear_cross_entropy_and_grad` computes the loss and the gradients
of the hidden states and of the weight block by block: one GEMM writes a block of
logits into a reused workspace, the fused cross-entropy kernel turns it into its
gradient in place, and two GEMMs accumulate the gradients.  Only one block of
logits ever exists.

Here it is compared with the straightforward NumPy computation that builds the
whole ``N x V`` logits, on the same inputs and for more and more tokens ``N`` at a
32,000-word vocabulary: same numbers, and the memory each allocates beyond its
outputs, measured with :mod:`tracemalloc` (which sees every NumPy array,
fastlog's workspace included).
"""
import os
import time
import tracemalloc

import matplotlib.pyplot as plt
import numpy as np

import fastlog

FAST = os.environ.get("FASTLOG_EXAMPLES_FAST") == "1"   # the test suite: small problems
V, H = (8000, 64) if FAST else (32000, 128)
TOKENS = (64, 128) if FAST else (128, 256, 512, 1024, 2048)
MiB = 2.0 ** 20


def naive(h, W, y):
    """Mean cross-entropy and its gradients with the full N x V logits (float32, as a framework would)."""
    z = h @ W.T
    z -= z.max(axis=1, keepdims=True)
    p = np.exp(z)
    p /= p.sum(axis=1, keepdims=True)
    n = len(y)
    loss = -np.mean(np.log(p[np.arange(n), y]))
    p[np.arange(n), y] -= 1.0
    p /= n
    return loss, p @ W, p.T @ h


def measure(fn, *args):
    """(result, seconds, peak bytes of NumPy allocations during the call)."""
    tracemalloc.start()
    t0 = time.perf_counter()
    out = fn(*args)
    dt = time.perf_counter() - t0
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return out, dt, peak


rng = np.random.default_rng(0)
W = (rng.standard_normal((V, H)) / np.sqrt(H)).astype(np.float32)
rows = []
for N in TOKENS:
    h = rng.standard_normal((N, H)).astype(np.float32)
    y = rng.integers(0, V, N)
    outputs = (N * H + V * H) * 4            # the gradients of h and W: what both must return
    (loss_f, gh_f, gW_f, _), t_f, m_f = measure(fastlog.linear_cross_entropy_and_grad, h, W, y)
    (loss_n, gh_n, gW_n), t_n, m_n = measure(naive, h, W, y)
    # an independent float64 check of both
    ref_loss, ref_gh, ref_gW = naive(h.astype(np.float64), W.astype(np.float64), y)
    assert abs(float(loss_f) - ref_loss) < 1e-4 * max(1.0, abs(ref_loss))
    err_f, err_n = np.abs(gW_f - ref_gW).max(), np.abs(gW_n - ref_gW).max()
    rows.append((N, N * V * 4 / MiB, max(m_f - outputs, 0) / MiB, max(m_n - outputs, 0) / MiB, t_f, t_n))
    print(f"N = {N:5,}: logits {N * V * 4 / MiB:6.1f} MiB; temporary memory beyond the outputs: "
          f"fastlog {rows[-1][2]:6.1f} MiB, NumPy {rows[-1][3]:6.1f} MiB; time {1e3 * t_f:6.1f} / "
          f"{1e3 * t_n:6.1f} ms; largest dW error vs float64: {err_f:.1e} / {err_n:.1e}")

# %%
# The picture
# -----------
# The NumPy version's extra memory grows with the number of tokens (the logits
# and the probabilities made from them); fastlog's is its workspace, one block of
# rows that stops growing at 48 MiB (the default budget; ``chunk_size`` sets the
# rows per block).

rows = np.array(rows)
fig, (ax_m, ax_t) = plt.subplots(1, 2, figsize=(10.5, 4), layout="constrained")
ax_m.plot(rows[:, 0], rows[:, 3], "s-", color="C0", label="NumPy, full N x V logits")
ax_m.plot(rows[:, 0], rows[:, 2], "o-", color="C3", label="fastlog.linear_cross_entropy_and_grad")
ax_m.plot(rows[:, 0], rows[:, 1], ":", color="0.5", label="the N x V float32 logits alone")
ax_m.set_ylabel("MiB allocated beyond the outputs")
ax_m.set_title(f"temporary memory, V = {V:,}, H = {H}", fontsize=10)
ax_t.plot(rows[:, 0], 1e3 * rows[:, 5], "s-", color="C0", label="NumPy")
ax_t.plot(rows[:, 0], 1e3 * rows[:, 4], "o-", color="C3", label="fastlog")
ax_t.set_ylabel("ms (forward + backward)")
ax_t.set_title("time (both are bound by their three GEMMs)", fontsize=10)
for ax in (ax_m, ax_t):
    ax.set_xscale("log", base=2)
    ax.set_xlabel("tokens N")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
plt.show()
