"""The loss part of a PyTorch training step: F.cross_entropy vs fastlog.torch.cross_entropy.

What is timed: ``loss = ce(logits, y); loss.backward()`` for float32 logits that
require grad (the logits a model's last layer hands to the loss), mean
reduction, integer targets, ``logits.grad = None`` before each step as
``optimizer.zero_grad()`` does.  Torch and fastlog both pinned to 1 thread.

pytest-benchmark::

    PYTHONPATH=src python -m pytest benchmarks/bench_torch_loss.py --benchmark-only

Script mode (time table, then peak memory measured in a fresh process per
case as the growth of the peak resident set size over the loss's
forward + backward; PyTorch's allocations are invisible to tracemalloc)::

    PYTHONPATH=src python benchmarks/bench_torch_loss.py [--repeat 15]

Targets (issue "fastlog.torch"): forward+backward >= 5x faster than PyTorch at
1024 x 32000 and >= 2x at 4096 x 1000, with a lower peak memory.
"""
import argparse
import contextlib
import gc
import json
import os
import resource
import subprocess
import sys
import time

import numpy as np
import pytest

from _procmem import reset_peak, status_kib

SHAPES = [(4096, 1000), (1024, 32000)]
IMPLS = ["torch", "fastlog"]


def _loss_fn(impl):
    if impl == "torch":
        import torch.nn.functional as F
        return F.cross_entropy
    import fastlog.torch as FL
    return FL.cross_entropy


def _pin_threads():
    """Pin every thread pool (torch, fastlog, BLAS) to 1 thread; close the returned stack to undo."""
    import torch  # noqa: F401  (imported first so that the pin reaches it)

    from fastlog.bench.timing import pinned_threads
    stack = contextlib.ExitStack()
    stack.enter_context(pinned_threads(1))
    return stack


def _data(N, C, seed=0):
    import torch
    g = torch.Generator().manual_seed(seed)
    x = (torch.randn(N, C, generator=g) * 2.0).requires_grad_()
    y = torch.randint(0, C, (N,), generator=g)
    return x, y


def _step(fn, x, y):
    x.grad = None
    fn(x, y).backward()


# ------------------------------------------------------ pytest-benchmark --
@pytest.fixture
def one_thread():
    pytest.importorskip("torch")
    with _pin_threads():
        yield


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: f"{s[0]}x{s[1]}")
def test_cross_entropy_forward_backward(benchmark, one_thread, impl, shape):
    fn = _loss_fn(impl)
    x, y = _data(*shape)
    benchmark.group = f"torch loss fwd+bwd {shape[0]}x{shape[1]} float32 1 thread"
    benchmark.extra_info.update(impl=impl, N=shape[0], C=shape[1])
    benchmark.pedantic(_step, args=(fn, x, y), rounds=7 if shape[1] > 10000 else 30,
                       warmup_rounds=1)


# ------------------------------------------------------------ script mode --
def _mem_child(impl, N, C):
    """In a fresh process: peak RSS growth (KiB) over one loss forward+backward."""
    pin = _pin_threads()  # noqa: F841  (held: the pin lasts while it lives)
    fn = _loss_fn(impl)
    xs, ys = _data(8, 16)            # load code paths and thread pools first
    _step(fn, xs, ys)
    x, y = _data(N, C)
    gc.collect()
    before = status_kib("VmRSS")
    method = "VmHWM after clear_refs" if reset_peak() else "ru_maxrss"
    maxrss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    _step(fn, x, y)
    peak = status_kib("VmHWM") if method != "ru_maxrss" else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    growth = peak - (before if method != "ru_maxrss" else max(before, maxrss0))
    print(json.dumps({"impl": impl, "N": N, "C": C, "growth_kib": growth, "method": method,
                      "maxrss_growth_kib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - maxrss0}))


def _time(fn, x, y, repeat):
    _step(fn, x, y)
    ts = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        _step(fn, x, y)
        ts.append(time.perf_counter() - t0)
    return float(np.median(ts)), float(np.min(ts))


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--repeat", type=int, default=15)
    ap.add_argument("--mem-child", nargs=3, metavar=("IMPL", "N", "C"), help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.mem_child:
        impl, N, C = args.mem_child
        _mem_child(impl, int(N), int(C))
        return
    import torch

    import fastlog
    pin = _pin_threads()  # noqa: F841  (held: the pin lasts while it lives)
    print(f"torch {torch.__version__}, fastlog {fastlog.__version__} ({fastlog.config()['isa']}), "
          f"1 thread each, float32, mean reduction, integer targets")
    print("\nloss forward + backward, ms (median / min of", args.repeat, "runs)")
    print(f"{'N x C':>14} | {'PyTorch':>15} | {'fastlog.torch':>15} | speed-up (median, min)")
    for N, C in SHAPES:
        x, y = _data(N, C)
        t = {impl: _time(_loss_fn(impl), x, y, max(5, args.repeat // (4 if C > 10000 else 1)))
             for impl in IMPLS}
        del x, y
        print(f"{N:>6} x {C:<6} | {t['torch'][0] * 1e3:6.2f} / {t['torch'][1] * 1e3:6.2f} | "
              f"{t['fastlog'][0] * 1e3:6.2f} / {t['fastlog'][1] * 1e3:6.2f} | "
              f"{t['torch'][0] / t['fastlog'][0]:5.1f}x, {t['torch'][1] / t['fastlog'][1]:5.1f}x")
    print("\npeak memory of the loss part, MiB (fresh process per case; growth of peak RSS over "
          "one forward+backward; N x C float32 array = reference size)")
    print(f"{'N x C':>14} | {'N x C array':>11} | {'PyTorch':>8} | {'fastlog.torch':>13} | ratio")
    env = dict(os.environ)
    for N, C in SHAPES:
        res = {}
        for impl in IMPLS:
            out = subprocess.run([sys.executable, os.path.abspath(__file__), "--mem-child", impl,
                                  str(N), str(C)], capture_output=True, text=True, env=env, check=True)
            res[impl] = json.loads(out.stdout.strip().splitlines()[-1])
        mib = {k: v["growth_kib"] / 1024 for k, v in res.items()}
        print(f"{N:>6} x {C:<6} | {N * C * 4 / 2**20:11.1f} | {mib['torch']:8.1f} | "
              f"{mib['fastlog']:13.1f} | {mib['torch'] / max(mib['fastlog'], 1e-9):4.1f}x "
              f"({res['torch']['method']})")


if __name__ == "__main__":
    main()
