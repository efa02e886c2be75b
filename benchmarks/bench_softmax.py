"""Softmax family: fastlog vs NumPy (the usual way), scipy.special and PyTorch.

Run: PYTHONPATH=src python -m pytest benchmarks/bench_softmax.py (see benchmarks/README.md).
"""
GROUPS = ("log_softmax", "softmax", "logsumexp")


def test_softmax_family(benchmark, bench_case, run_bench):
    run_bench(benchmark, bench_case)
