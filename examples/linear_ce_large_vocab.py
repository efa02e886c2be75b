"""Fused linear + cross-entropy for a large vocabulary: the loss of ``hidden @ W.T`` without the logits.

A language model's last layer maps N hidden states (H features) to V
logits; with V = 32,000 (Llama 2) or 128,256 (Llama 3) the N x V logits and
their gradient dwarf everything else.  ``fastlog.linear_cross_entropy_and_grad`` computes the loss
and the gradients of the hidden states and of W block by block, so only a
small block of logits ever exists.  This script compares it with the
straightforward NumPy computation: same numbers, a fraction of the memory.

    python examples/linear_ce_large_vocab.py [--tokens 1024] [--hidden 256] [--vocab 32000] [--chunk 128]

FASTLOG_EXAMPLES_FAST=1 uses a small problem.
"""
import argparse
import os
import time
import tracemalloc

import numpy as np

import fastlog

FAST = os.environ.get("FASTLOG_EXAMPLES_FAST") == "1"


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
    tracemalloc.start()
    t0 = time.perf_counter()
    out = fn(*args)
    dt = time.perf_counter() - t0
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return out, dt, peak


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--tokens", type=int, default=64 if FAST else 1024)
    p.add_argument("--hidden", type=int, default=64 if FAST else 256)
    p.add_argument("--vocab", type=int, default=8000 if FAST else 32000)
    p.add_argument("--chunk", type=int, default=16 if FAST else 128, help="rows of logits per block")
    args = p.parse_args()
    rng = np.random.default_rng(0)
    N, H, V = args.tokens, args.hidden, args.vocab
    h = rng.standard_normal((N, H)).astype(np.float32)
    W = (rng.standard_normal((V, H)) / np.sqrt(H)).astype(np.float32)
    y = rng.integers(0, V, N)
    mib = 2.0 ** 20
    grads = (N * H + V * H) * 4 / mib
    print(f"{N} tokens, hidden size {H}, vocabulary {V:,}: the logits alone are {N * V * 4 / mib:.0f} MiB; "
          f"the gradients of the hidden states and of W, {grads:.0f} MiB, are the outputs")

    fused = lambda h, W, y: fastlog.linear_cross_entropy_and_grad(h, W, y, chunk_size=args.chunk)  # noqa: E731
    (loss_f, gh_f, gW_f, _), t_f, m_f = measure(fused, h, W, y)
    (loss_n, gh_n, gW_n), t_n, m_n = measure(naive, h, W, y)
    for name, loss, t, m in (("fastlog (fused, blocks of %d rows)" % args.chunk, loss_f, t_f, m_f),
                             ("NumPy (full logits)", loss_n, t_n, m_n)):
        print(f"{name:>34}: loss {float(loss):.6f}, {1e3 * t:8.1f} ms, temporary memory beyond the outputs "
              f"{max(m / mib - grads, 0):7.1f} MiB")

    # An independent float64 check of both on a few rows of the gradient.
    h64, W64 = h.astype(np.float64), W.astype(np.float64)
    ref_loss, ref_gh, _ = naive(h64, W64, y)
    print(f"float64 reference loss {ref_loss:.6f}; largest gradient error: fastlog "
          f"{np.abs(gh_f - ref_gh).max():.2e}, NumPy float32 {np.abs(gh_n - ref_gh).max():.2e}")
    assert abs(float(loss_f) - ref_loss) < 1e-4 * max(1.0, abs(ref_loss))
    assert np.allclose(gW_f, gW_n, atol=1e-6)


if __name__ == "__main__":
    main()
