"""What a registration route costs per call: how fastlog's operators reach PyTorch.

Measures, in one process and interleaved round by round (so that load on a
shared machine hits every variant alike), on 64 x 10 float32 logits with
1 thread:

* an empty operator ``x -> x.new_empty(())`` registered three ways:
  ``torch.library.custom_op``; ``torch.library.Library.define`` + ``impl`` on
  the CPU key (vLLM's route); and the latter with a Python Autograd-key kernel
  in front (what a differentiable operator needs), called on an input that
  requires grad, under ``no_grad``;
* cross-entropy forward + backward (mean, int64 targets), the whole step a
  training loop runs: ``F.cross_entropy`` (PyTorch eager, the reference);
  fastlog's kernel behind a ``custom_op`` with ``register_autograd``; behind a
  ``Library`` operator with ``register_autograd``; behind a ``Library``
  operator with its own Autograd kernel and ``autograd.Function`` (fastlog's
  ``torch.ops.fastlog.cross_entropy``); and ``fastlog.torch.cross_entropy``,
  whose eager route calls the same CPU kernel from an ``autograd.Function``
  without the dispatcher.

A compiled C++ operator (PyTorch's stable ABI) is not measured: it would have
to be built against PyTorch, which fastlog's build (and CI) must not need.

    python benchmarks/bench_torch_route.py [--rounds 21] [--calls 2000]

Prints the load average with the results: the machine may be shared.
"""
import argparse
import os
import statistics
import time


def interleave(fns, calls, rounds, warm=300):
    """{name: [us per call, one per round]}: every variant timed once per round."""
    for f in fns.values():
        for _ in range(warm):
            f()
    res = {k: [] for k in fns}
    for _ in range(rounds):
        for k, f in fns.items():
            t0 = time.perf_counter()
            for _ in range(calls):
                f()
            res[k].append((time.perf_counter() - t0) / calls * 1e6)
    return res


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rounds", type=int, default=21)
    ap.add_argument("--calls", type=int, default=2000)
    args = ap.parse_args(argv)
    import numpy as np
    import torch
    import torch.nn.functional as F

    import fastlog
    import fastlog.torch as FL
    from fastlog import _losses
    torch.set_num_threads(1)
    fastlog.set_num_threads(1)

    # ---- empty operators
    @torch.library.custom_op("fastlog_bench::empty_custom", mutates_args=())
    def empty_custom(x: torch.Tensor) -> torch.Tensor:
        return x.new_empty(())
    lib = torch.library.Library("fastlog_bench", "FRAGMENT")
    lib.define("empty_lib(Tensor x) -> Tensor")
    lib.impl("empty_lib", lambda x: x.new_empty(()), "CPU")
    lib.define("empty_lib_ag(Tensor x) -> Tensor")
    lib.impl("empty_lib_ag", lambda x: x.new_empty(()), "CPU")
    op_ag = torch.ops.fastlog_bench.empty_lib_ag.default

    def autograd_kernel(x):
        with torch._C._AutoDispatchBelowAutograd():
            return op_ag(x)
    lib.impl("empty_lib_ag", autograd_kernel, "Autograd")
    op_lib = torch.ops.fastlog_bench.empty_lib.default

    # ---- cross-entropy through each route (the same NumPy-face kernel)
    def kernel(x, t):
        loss, g = _losses.cross_entropy_and_grad(x.detach().numpy(), t.numpy(), None, -100, "mean")
        return torch.from_numpy(np.asarray(loss)), torch.from_numpy(g)

    def fake(x, t):
        return x.new_empty(()), torch.empty_like(x)

    def setup(ctx, inputs, output):
        ctx.save_for_backward(output[1])

    def backward(ctx, gl, gg):
        (g,) = ctx.saved_tensors
        return g * gl, None

    @torch.library.custom_op("fastlog_bench::ce_custom", mutates_args=())
    def ce_custom(x: torch.Tensor, t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return kernel(x, t)
    ce_custom.register_fake(fake)
    ce_custom.register_autograd(backward, setup_context=setup)
    lib.define("ce_lib(Tensor x, Tensor t) -> (Tensor, Tensor)")
    lib.impl("ce_lib", kernel, "CPU")
    torch.library.register_fake("fastlog_bench::ce_lib", fake, lib=lib)
    torch.library.register_autograd("fastlog_bench::ce_lib", backward, setup_context=setup, lib=lib)
    ce_lib = torch.ops.fastlog_bench.ce_lib.default
    ops = torch.ops.fastlog

    x = torch.randn(64, 10)
    t = torch.randint(0, 10, (64,))
    xr = x.clone().requires_grad_()

    def step(f):
        def run():
            f().backward()
            xr.grad = None
        return run

    with torch.no_grad():
        empty = interleave({"custom_op": lambda: empty_custom(xr), "Library CPU": lambda: op_lib(xr),
                            "Library CPU + Python Autograd kernel": lambda: op_ag(xr)},
                           args.calls, args.rounds)
    ce = interleave({
        "F.cross_entropy (PyTorch eager)": step(lambda: F.cross_entropy(xr, t)),
        "custom_op + register_autograd": step(lambda: ce_custom(xr, t)[0]),
        "Library + register_autograd": step(lambda: ce_lib(xr, t)[0]),
        "torch.ops.fastlog.cross_entropy (Library, own Autograd kernel)":
            step(lambda: ops.cross_entropy(xr, t, None, 1, -100, 0.0)),
        "fastlog.torch.cross_entropy (eager route, no dispatcher)": step(lambda: FL.cross_entropy(xr, t)),
    }, args.calls, args.rounds)
    load = os.getloadavg()
    print(f"torch {torch.__version__}, 1 thread, 64 x 10 float32; medians of {args.rounds} rounds "
          f"x {args.calls} calls, interleaved; load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f} "
          f"on {os.cpu_count()} CPUs")
    print("\nempty operator, one call (us): median [min, max]")
    for k, v in empty.items():
        print(f"  {k:62s} {statistics.median(v):7.2f}  [{min(v):.2f}, {max(v):.2f}]")
    base = ce["F.cross_entropy (PyTorch eager)"]
    print("\ncross-entropy forward+backward (us): median [min, max], and the median over rounds of "
          "time / F.cross_entropy's time in the same round")
    for k, v in ce.items():
        r = statistics.median(a / b for a, b in zip(v, base))
        print(f"  {k:62s} {statistics.median(v):7.2f}  [{min(v):.2f}, {max(v):.2f}]  {r:5.2f}x")


if __name__ == "__main__":
    main()
