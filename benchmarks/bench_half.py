"""Half precision: bfloat16 / float16 cross-entropy, log_softmax and fused
linear + cross-entropy, fastlog vs PyTorch and vs fastlog's own float32.

Script mode (one process; every thread pool pinned to --threads):

    OMP_WAIT_POLICY=PASSIVE python benchmarks/bench_half.py --threads 1
    OMP_WAIT_POLICY=PASSIVE python benchmarks/bench_half.py --threads 2 --only ce
    python benchmarks/bench_half.py --only lce          # N=4096, H=512, V=32000 (slow)

Rows printed: median, min and max wall time in ms over --repeat runs, and the
speed-ups the issue sets targets for:
  ce       cross_entropy forward + backward through fastlog.torch on bf16/fp16
           tensors vs PyTorch's bf16/fp16 path (target >= 8x) and vs fastlog's
           float32 path on the same shape (target >= 1.6x).
  lsm      log_softmax (NumPy face) bf16 vs fastlog float32 (target >= 1.6x).
  lce      fastlog.torch.linear_cross_entropy in bf16 vs
           torch.nn.functional.linear_cross_entropy in bf16 (target >= 1.3x),
           with the peak RSS growth beyond inputs and returned gradients
           (target <= 64 MB).
On a shared machine the numbers move with the load: report them with `uptime`.
"""
import argparse
import os
import statistics
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _procmem import reset_peak, status_kib  # noqa: E402


def timeit(fn, repeat, warmup=1):
    for _ in range(warmup):
        fn()
    ts = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        ts.append((time.perf_counter() - t0) * 1e3)
    return statistics.median(ts), min(ts), max(ts)


def fmt(name, r):
    return f"  {name:<34s} {r[0]:9.2f} ms  (min {r[1]:.2f}, max {r[2]:.2f})"


def bench_ce(shapes, repeat):
    import torch
    import torch.nn.functional as F

    import fastlog.torch as FL
    for N, C in shapes:
        g = torch.Generator().manual_seed(0)
        x32 = torch.randn(N, C, generator=g)
        t = torch.randint(0, C, (N,), generator=g)
        print(f"cross_entropy fwd+bwd, {N} x {C}")
        res = {}
        for name, dt in (("float32", torch.float32), ("bfloat16", torch.bfloat16),
                         ("float16", torch.float16)):
            x = x32.to(dt).clone().requires_grad_()   # a leaf of its own (x32.to(float32) is x32)

            def fl_step():
                x.grad = None
                FL.cross_entropy(x, t).backward()

            def torch_step():
                x.grad = None
                F.cross_entropy(x, t).backward()
            res[("fastlog", name)] = timeit(fl_step, repeat)
            print(fmt(f"fastlog.torch {name}", res[("fastlog", name)]), flush=True)
            if name != "float32":
                res[("torch", name)] = timeit(torch_step, max(3, repeat // 2))
                print(fmt(f"PyTorch {name}", res[("torch", name)]), flush=True)
        for name in ("bfloat16", "float16"):
            ours = res[("fastlog", name)][0]
            print(f"  {name}: {res[('torch', name)][0] / ours:.1f}x PyTorch {name} (target 8x), "
                  f"{res[('fastlog', 'float32')][0] / ours:.2f}x fastlog float32 (target 1.6x)")


def bench_lsm(shapes, repeat):
    import ml_dtypes

    import fastlog as fl
    for N, C in shapes:
        x32 = np.random.default_rng(0).standard_normal((N, C)).astype(np.float32)
        print(f"log_softmax (NumPy face, out=), {N} x {C}")
        res = {}
        for name, dt in (("float32", np.float32), ("bfloat16", ml_dtypes.bfloat16), ("float16", np.float16)):
            x = x32.astype(dt)
            out = np.empty_like(x)
            res[name] = timeit(lambda: fl.log_softmax(x, axis=-1, out=out), repeat)
            print(fmt(f"fastlog {name}", res[name]), flush=True)
        for name in ("bfloat16", "float16"):
            print(f"  {name}: {res['float32'][0] / res[name][0]:.2f}x fastlog float32 (target 1.6x)")


def bench_lce(N, H, V, repeat):
    import torch
    import torch.nn.functional as F

    import fastlog.torch as FL
    g = torch.Generator().manual_seed(0)
    x = torch.randn(N, H, generator=g).bfloat16().requires_grad_()
    W = (torch.randn(V, H, generator=g) * 0.05).bfloat16().requires_grad_()
    t = torch.randint(0, V, (N,), generator=g)
    grads_mb = (x.numel() + W.numel()) * 2 / 2 ** 20
    print(f"linear + cross_entropy fwd+bwd, bf16, N={N} H={H} V={V}")
    res = {}
    for name, fn in (("fastlog.torch", FL.linear_cross_entropy), ("PyTorch", F.linear_cross_entropy)):
        def step():
            x.grad = W.grad = None
            fn(x, W, t).backward()
        step()
        x.grad = W.grad = None
        base = status_kib("VmRSS")
        ok = reset_peak()
        r = timeit(step, repeat, warmup=0)
        peak = status_kib("VmHWM") - base if ok else float("nan")
        res[name] = r
        print(fmt(name, r) + f"  peak RSS growth {peak / 1024:.0f} MB "
              f"({peak / 1024 - grads_mb:.0f} MB beyond the {grads_mb:.0f} MB of gradients)", flush=True)
    print(f"  {res['PyTorch'][0] / res['fastlog.torch'][0]:.2f}x PyTorch (target 1.3x)")


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--repeat", type=int, default=7)
    ap.add_argument("--only", choices=["ce", "lsm", "lce"], action="append")
    ap.add_argument("--shapes", default="1024x32000,128x128256")
    ap.add_argument("--lce", default="4096,512,32000")
    a = ap.parse_args(argv)
    import torch

    import fastlog
    fastlog.set_num_threads(a.threads)
    torch.set_num_threads(a.threads)
    shapes = [tuple(int(v) for v in s.split("x")) for s in a.shapes.split(",")]
    print(f"threads {a.threads}; load average {os.getloadavg()[0]:.1f}")
    only = a.only or ["ce", "lsm", "lce"]
    if "ce" in only:
        bench_ce(shapes, a.repeat)
    if "lsm" in only:
        bench_lsm(shapes, a.repeat)
    if "lce" in only:
        bench_lce(*(int(v) for v in a.lce.split(",")), max(2, a.repeat // 3))


if __name__ == "__main__":
    main()
