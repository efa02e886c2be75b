"""Losses: cross-entropy (forward; forward+backward), nll, BCE with logits, fused linear+CE.

fastlog vs NumPy written the usual way and PyTorch (forward+backward = the
loss and ``.backward()``).  Run: PYTHONPATH=src python -m pytest benchmarks/bench_losses.py
"""
GROUPS = ("cross_entropy", "cross_entropy_fwd_bwd", "nll", "bce_with_logits", "linear_cross_entropy")


def test_losses(benchmark, bench_case, run_bench):
    run_bench(benchmark, bench_case)
