"""What fastlog's wrapper costs where torch.compile traces PyTorch's own function.

Below fastlog.torch._route.COMPILED_MIN_ELEMENTS(_SOFTMAX) elements a compiled
call of a fastlog.torch function traces PyTorch's function, so the compiled
graph is Inductor's own; the only difference left is the guards Dynamo checks
on fastlog's wrapper at every call.  This times the two compiled functions
against each other, interleaved round by round, 1 thread, no grad:

    python benchmarks/bench_compile_guards.py            # log_softmax 64 x 10
    python benchmarks/bench_compile_guards.py --rounds 41 --calls 5000
"""
import argparse
import os
import statistics
import time


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=21)
    ap.add_argument("--calls", type=int, default=2000)
    args = ap.parse_args(argv)
    import torch
    import torch.nn.functional as F

    import fastlog
    import fastlog.torch as FL
    torch.set_num_threads(1)
    fastlog.set_num_threads(1)
    x = torch.randn(64, 10)

    def plain(v):
        return F.log_softmax(v, dim=-1)

    def wrapped(v):
        return FL.log_softmax(v, dim=-1)
    fns = {"torch.compile(F.log_softmax)": torch.compile(plain, fullgraph=True, dynamic=False),
           "torch.compile(fastlog.torch.log_softmax)": torch.compile(wrapped, fullgraph=True, dynamic=False)}
    res = {k: [] for k in fns}
    print("load average at start", " ".join(f"{v:.2f}" for v in os.getloadavg()))
    with torch.no_grad():
        for f in fns.values():
            f(x)
        for _ in range(args.rounds):
            for k, f in fns.items():
                t0 = time.perf_counter()
                for _ in range(args.calls):
                    f(x)
                res[k].append((time.perf_counter() - t0) / args.calls * 1e6)
    a, b = res.values()
    for k, v in res.items():
        print(f"{k:42s} {statistics.median(v):7.2f} us per call  [{min(v):.2f}, {max(v):.2f}]")
    print(f"ratio (first / second), median over rounds: {statistics.median(p / q for p, q in zip(a, b)):.3f}")
    print("load average at end", " ".join(f"{v:.2f}" for v in os.getloadavg()))


if __name__ == "__main__":
    main()
