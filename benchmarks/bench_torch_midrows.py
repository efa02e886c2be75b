"""fastlog.torch against torch.nn.functional on rows of 65-512 classes.

Rows of up to 64 classes take fastlog's grouped short-row kernels (64 rows
transposed, one vector lane per row); longer rows take the one-row-at-a-time
kernels, whose per-row costs (two passes, lane reductions, a log1p, a padded
tail) dominate until rows are several hundred classes long.  This prints
PyTorch's time / fastlog's (< 1: fastlog slower) for 4096 rows, 1 thread,
best of 5 repeats:

    python benchmarks/bench_torch_midrows.py                   # log_softmax float32
    python benchmarks/bench_torch_midrows.py softmax bfloat16
    python benchmarks/bench_torch_midrows.py ce float32        # cross-entropy forward + backward
"""
import os
import sys
import timeit


def main(argv):
    import torch
    import torch.nn.functional as F

    import fastlog
    import fastlog.torch as FL
    which = argv[0] if argv else "log_softmax"
    dt = getattr(torch, argv[1] if len(argv) > 1 else "float32")
    torch.set_num_threads(1)
    fastlog.set_num_threads(1)
    print(f"{which} {dt}, 4096 rows, 1 thread; load average {os.getloadavg()[0]:.2f}")
    for C in (64, 65, 100, 128, 192, 256, 320, 384, 512, 1000):
        x = torch.randn(4096, C, dtype=dt)
        t = torch.randint(0, C, (4096,))
        xr = x.clone().requires_grad_()

        def step(f):
            xr.grad = None
            f(xr, t).backward()
        if which == "ce":
            a_fn, b_fn = (lambda: step(F.cross_entropy)), (lambda: step(FL.cross_entropy))
        else:
            fa, fb = getattr(F, which), getattr(FL, which)
            a_fn, b_fn = (lambda: fa(x, -1)), (lambda: fb(x, -1))
        n = max(3, int(1e7 // (4096 * C)))
        a = min(timeit.repeat(a_fn, number=n, repeat=5)) / n
        b = min(timeit.repeat(b_fn, number=n, repeat=5)) / n
        print(f"C={C:5d}  torch {a * 1e3:8.3f} ms  fastlog.torch {b * 1e3:8.3f} ms  torch/fastlog {a / b:5.2f}")


if __name__ == "__main__":
    main(sys.argv[1:])
