"""fastlog inside torch.compile: eager and compiled, against what it replaces.

For each case four contenders, timed interleaved round by round in one
process (so that load on a shared machine hits them alike), warm (compile
time excluded), with the same thread count for PyTorch, Inductor's code and
fastlog:

* ``torch``: PyTorch's function, eager;
* ``fastlog.torch``: fastlog.torch's function, eager;
* ``inductor``: PyTorch's function under ``torch.compile`` (Inductor, static shapes);
* ``inductor + fastlog``: fastlog.torch's function under ``torch.compile`` (what a model
  compiled after ``fastlog.torch.patch()`` runs).

Operations: cross-entropy forward + backward (mean, int64 targets, logits that
require grad, ``x.grad = None`` before each step), log_softmax forward
(no grad), and fused linear + cross-entropy forward + backward
(``F.linear_cross_entropy``); each step frees the gradients it made, as a training
loop's ``zero_grad(set_to_none=True)`` does before the next step.  The table gives medians (ms) and the ratios
"torch / fastlog.torch" and "inductor / inductor + fastlog" (> 1: fastlog
faster), each the median over rounds of the two contenders' times in the same
round.

    python benchmarks/bench_torch_compile.py                       # all cases (~10 min on 2 cores)
    python benchmarks/bench_torch_compile.py --ops ce --dtypes float32 --threads 1 --shapes 64x10,1024x32000
    python benchmarks/bench_torch_compile.py --json out.json

Prints the load average before and after: the machine may be shared.
"""
import argparse
import json
import os
import statistics
import sys
import time

SHAPES = ((64, 10), (4096, 10), (4096, 1000), (1024, 32000), (128, 128256))
LINEAR = ((256, 512, 32000),)
CONTENDERS = ("torch", "fastlog.torch", "inductor", "inductor + fastlog")


def _load():
    return " ".join(f"{v:.2f}" for v in os.getloadavg())


def _build(op, shape, dtype, contender):
    """A no-argument callable running one step of `op`."""
    import torch
    import torch.nn.functional as F

    import fastlog.torch as FL
    g = torch.Generator().manual_seed(0)
    compiled = contender.startswith("inductor")
    fl = contender in ("fastlog.torch", "inductor + fastlog")
    if op == "linear_ce":
        N, H, V = shape
        x = (torch.randn(N, H, generator=g) * 0.5).to(dtype).requires_grad_()
        W = (torch.randn(V, H, generator=g) * 0.05).to(dtype).requires_grad_()
        t = torch.randint(0, V, (N,), generator=g)
        ns = FL if fl else F

        def f(a, b):
            return ns.linear_cross_entropy(a, b, t)
        fn = torch.compile(f, fullgraph=True, dynamic=False) if compiled else f

        def step():
            x.grad = W.grad = None
            fn(x, W).backward()
            x.grad = W.grad = None      # (see the cross-entropy step)
        return step
    N, C = shape
    x = (torch.randn(N, C, generator=g) * 3).to(dtype)
    ns = FL if fl else F
    if op == "log_softmax":
        def f(a):
            return ns.log_softmax(a, dim=-1)
        fn = torch.compile(f, fullgraph=True, dynamic=False) if compiled else f

        def step():
            with torch.no_grad():
                fn(x)
        return step
    t = torch.randint(0, C, (N,), generator=g)
    xr = x.requires_grad_()

    def f(a, b):
        return ns.cross_entropy(a, b)
    fn = torch.compile(f, fullgraph=True, dynamic=False) if compiled else f

    def step():
        xr.grad = None
        fn(xr, t).backward()
        # A training loop's optimizer reads the gradient, then zero_grad(set_to_none=True)
        # frees it before the next forward.  Free it here too: otherwise each contender's
        # gradient stays alive while the others run, which no single training loop does
        # (and fastlog's buffer cache could never hand a gradient's memory back).
        xr.grad = None
    return step


def measure(op, shape, dtype_name, threads, rounds, budget_s):
    """{contender: [seconds per call, one per round]}."""
    import torch

    import fastlog
    dtype = getattr(torch, dtype_name)
    torch.set_num_threads(threads)
    fastlog.set_num_threads(threads)
    torch._dynamo.reset()
    steps = {}
    for c in CONTENDERS:
        steps[c] = _build(op, shape, dtype, c)
        steps[c]()          # compile (Inductor bakes in the thread count set above) and warm up
        steps[c]()
    t0 = time.perf_counter()
    steps["torch"]()
    one = time.perf_counter() - t0
    calls = max(1, int(budget_s / max(one, 1e-6) / len(CONTENDERS) / rounds))
    res = {c: [] for c in CONTENDERS}
    for _ in range(rounds):
        for c, s in steps.items():
            t0 = time.perf_counter()
            for _ in range(calls):
                s()
            res[c].append((time.perf_counter() - t0) / calls)
    torch._dynamo.reset()
    return res, calls


def _ratio(res, a, b):
    return statistics.median(x / y for x, y in zip(res[a], res[b]))


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--ops", default="ce,log_softmax,linear_ce")
    ap.add_argument("--shapes", default=None, help="N x C shapes, e.g. 64x10,1024x32000")
    ap.add_argument("--dtypes", default="float32,bfloat16")
    ap.add_argument("--threads", default="1,2")
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--budget", type=float, default=3.0, help="seconds of timing per case")
    ap.add_argument("--json", default=None)
    args = ap.parse_args(argv)
    import torch

    import fastlog
    shapes = (tuple(tuple(int(v) for v in s.split("x")) for s in args.shapes.split(","))
              if args.shapes else SHAPES)
    threads = [int(t) for t in args.threads.split(",") if int(t) <= (os.cpu_count() or 1)]
    print(f"torch {torch.__version__}, fastlog {fastlog.__version__} ({fastlog.config()['isa']}); "
          f"load average at start {_load()} on {os.cpu_count()} CPUs", flush=True)
    print(f"median ms per step over {args.rounds} interleaved rounds; ratio = median over rounds of "
          f"(replaced / fastlog) in the same round, > 1: fastlog faster", flush=True)
    head = (f"{'op':12s} {'shape':>14s} {'dtype':9s} thr " + " ".join(f"{c:>18s}" for c in CONTENDERS)
            + f" {'torch/fl.torch':>15s} {'inductor/+fastlog':>18s} calls")
    print(head, flush=True)
    rows = []
    for op in args.ops.split(","):
        cases = LINEAR if op == "linear_ce" else shapes
        dts = ["float32"] if op in ("linear_ce", "log_softmax") else args.dtypes.split(",")
        if op == "log_softmax" and not args.shapes:
            cases = [s for s in cases if s in ((64, 10), (4096, 10), (4096, 1000), (1024, 32000))]
        for shape in cases:
            for dt in dts:
                for th in threads:
                    res, calls = measure(op, shape, dt, th, args.rounds, args.budget)
                    med = {c: statistics.median(v) for c, v in res.items()}
                    r1, r2 = _ratio(res, "torch", "fastlog.torch"), _ratio(res, "inductor", "inductor + fastlog")
                    label = "x".join(map(str, shape))
                    print(f"{op:12s} {label:>14s} {dt:9s} {th:3d} "
                          + " ".join(f"{med[c] * 1e3:18.4g}" for c in CONTENDERS)
                          + f" {r1:15.2f} {r2:18.2f} {calls:5d}", flush=True)
                    rows.append({"op": op, "shape": list(shape), "dtype": dt, "threads": th,
                                 "median_ms": {c: med[c] * 1e3 for c in CONTENDERS},
                                 "min_ms": {c: min(v) * 1e3 for c, v in res.items()},
                                 "torch_over_fastlog_torch": r1, "inductor_over_inductor_fastlog": r2,
                                 "calls_per_round": calls, "rounds": args.rounds})
    print(f"load average at end {_load()}", flush=True)
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"command": " ".join([sys.executable] + sys.argv), "rows": rows}, f, indent=1)


if __name__ == "__main__":
    main()
