"""Fused linear + cross-entropy: fastlog vs PyTorch, forward + backward, float32.

Two ways to run it:

* pytest-benchmark, small cases only (seconds):
      PYTHONPATH=src python -m pytest benchmarks/bench_linear_ce.py
* script mode, one fresh process per library (the sizes of the issue):
      PYTHONPATH=src python benchmarks/bench_linear_ce.py --case 4096
  cases: small (N=1024, H=256, V=8000), 4096 (N=4096, H=512, V=32000),
  16384 (N=16384, H=1024, V=128256: minutes; run it once), 16384/8 (the same
  with N=2048).  Each library runs
  in its own subprocess with every thread pool pinned (--threads, default 1)
  and prints wall and CPU time (min of --repeat runs; with one thread the
  CPU time is the robust number on a shared machine), GFLOP/s (6 N H V flop:
  the three GEMMs) against the machine's sgemm, and peak RSS growth.  "gemms" is the
  same three GEMMs alone (fastlog's block size, the same BLAS), i.e. the
  floor for any implementation that does the linear layer's arithmetic.

Peak RSS growth = peak resident memory during the timed calls minus the
resident memory once the inputs exist and one warm-up call on 256 rows has
run (so the BLAS's own buffers are already resident); "over grads" subtracts
the gradients the call returns (grad_input + grad_weight), leaving the
workspace/overhead.
"""
import argparse
import contextlib
import json
import os
import subprocess
import sys
import time

import numpy as np
import pytest

from _procmem import reset_peak, status_kib

CASES = {
    "small": (1024, 256, 8000),
    "4096": (4096, 512, 32000),
    "16384": (16384, 1024, 128256),
    "16384/8": (2048, 1024, 128256),  # the 16384 case with 1/8 of the rows (seconds, not minutes)
}
LIBS = ("sgemm", "fastlog", "torch_chunked", "torch_ref")


# ------------------------------------------------------------- inputs ------
def make_inputs(N, H, V, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((N, H), dtype=np.float32)
    W = rng.standard_normal((V, H), dtype=np.float32)
    W *= np.float32(1.0 / np.sqrt(H))
    t = rng.integers(0, V, N)
    return x, W, t


# -------------------------------------------------------------- workers ----
def _pin(threads):
    """Pin every thread pool to `threads` for the rest of this (worker) process."""
    from fastlog.bench.timing import pinned_threads
    stack = contextlib.ExitStack()
    stack.enter_context(pinned_threads(threads))
    return stack


def _callable(lib, x, W, t, threads):
    """(fn, grads_bytes): fn() runs forward+backward once and drops its results."""
    import fastlog
    if lib == "fastlog":
        def fn():
            loss, gx, gw, gb = fastlog.linear_cross_entropy_and_grad(x, W, t)
            return float(loss)
        return fn
    if lib == "sgemm":
        from fastlog._dispatch import core
        from fastlog.linear import _block_rows
        N, H = x.shape
        V = W.shape[0]
        nb = _block_rows(N, V, 4, None)
        work = np.empty((nb, V), np.float32)
        gx = np.empty((N, H), np.float32)
        gw = np.empty((V, H), np.float32)

        def fn():
            for r0 in range(0, N, nb):
                xb = x[r0:r0 + nb]
                wk = work[:xb.shape[0]]
                core.gemm(xb, W, wk, False, True)
                core.gemm(wk, W, gx[r0:r0 + nb], False, False)
                core.gemm(wk, xb, gw, True, False, 1.0, 0.0 if r0 == 0 else 1.0)
            return 0.0
        return fn
    import torch
    import torch.nn.functional as F
    torch.set_num_threads(threads)
    xt = torch.from_numpy(x).requires_grad_()
    Wt = torch.from_numpy(W).requires_grad_()
    tt = torch.from_numpy(t)
    opts = torch.nn.LinearCrossEntropyOptions() if lib == "torch_chunked" else None

    def fn():
        xt.grad = None
        Wt.grad = None
        loss = F.linear_cross_entropy(xt, Wt, tt, options=opts)
        loss.backward()
        v = float(loss.detach())
        xt.grad = None
        Wt.grad = None
        return v
    return fn


def _sgemm_peak(threads):
    """The machine's sgemm rate (SciPy's BLAS, the one fastlog calls), GFLOP/s, best of 3
    (CPU time with one thread, wall time with more)."""
    from fastlog.bench.floors import gemm_rate
    clock = time.process_time if threads == 1 else time.perf_counter
    return gemm_rate("float32", threads, n=2048, clock=clock) / 1e9


def worker(lib, case, threads, repeat, paired=True):
    if lib.startswith("torch"):
        import torch  # noqa: F401  (imported before pinning so the pin reaches it)
    limits = _pin(threads)  # noqa: F841  (kept alive for the whole run)
    N, H, V = CASES[case]
    x, W, t = make_inputs(N, H, V)
    fn = _callable(lib, x, W, t, threads)
    extra = {}
    if lib == "sgemm":
        extra["sgemm_peak_gflops"] = _sgemm_peak(threads)
    # Warm up on a few rows first, so that one-time buffers of the BLAS (and
    # torch's allocator) are resident before the baseline is taken.
    nw = min(N, 256)
    _callable(lib, x[:nw], W, t[:nw], threads)()
    base = status_kib("VmRSS")
    peak_ok = reset_peak()
    times, cpu, loss = [], [], None
    for _ in range(repeat):
        t0, c0 = time.perf_counter(), time.process_time()
        loss = fn()
        times.append(time.perf_counter() - t0)
        cpu.append(time.process_time() - c0)
    peak = status_kib("VmHWM") if peak_ok else None
    if lib == "fastlog" and paired:
        # Same-process check of the target "fastlog within 1.15x of its GEMMs
        # alone": alternate the two so load from other processes hits both.
        gem = _callable("sgemm", x, W, t, threads)
        ratios = []
        clock = time.process_time if threads == 1 else time.perf_counter
        for _ in range(repeat):
            t0 = clock()
            gem()
            t1 = clock()
            fn()
            t2 = clock()
            ratios.append((t2 - t1) / (t1 - t0))
        extra["paired_ratios"] = ratios
    grads_mb = (N * H + V * H) * 4 / 2**20
    out = dict(lib=lib, case=case, N=N, H=H, V=V, threads=threads, times=times, cpu=cpu, loss=loss,
               gflop=6 * N * H * V / 1e9, grads_mb=grads_mb,
               peak_growth_mb=None if peak is None else (peak - base) / 1024, **extra)
    print("RESULT " + json.dumps(out), flush=True)


# --------------------------------------------------------------- driver ----
def _torch_ref_need_gb(N, V):
    # logits, log-softmax output and the logits' gradient, float32, at least
    return 3 * N * V * 4 / 2**30


def _avail_gb():
    with open("/proc/meminfo") as f:
        for line in f:
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) / 2**20
    return float("inf")


def run_case(case, threads, repeat, libs):
    N, H, V = CASES[case]
    print(f"case {case}: N={N} H={H} V={V} float32, {threads} thread(s), forward+backward, "
          f"{6 * N * H * V / 1e9:.0f} GFLOP in the three GEMMs; min of {repeat} run(s), "
          f"each library in a fresh process")
    env = dict(os.environ)
    for k in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "FASTLOG_NUM_THREADS"):
        env[k] = str(threads)
    res = {}
    for lib in libs:
        if lib == "torch_ref" and _torch_ref_need_gb(N, V) > 0.8 * _avail_gb():
            print(f"  {lib:14s} skipped: needs > {_torch_ref_need_gb(N, V):.0f} GB for the logits and "
                  f"their gradients, {_avail_gb():.0f} GB available")
            continue
        cmd = [sys.executable, os.path.abspath(__file__), "--worker", lib, "--case", case,
               "--threads", str(threads), "--repeat", str(repeat)]
        p = subprocess.run(cmd, env=env, capture_output=True, text=True)
        line = [ln for ln in p.stdout.splitlines() if ln.startswith("RESULT ")]
        if p.returncode != 0 or not line:
            print(f"  {lib:14s} FAILED (exit {p.returncode}): {p.stderr.strip()[-300:]}")
            continue
        res[lib] = json.loads(line[0][7:])
    peak = res.get("sgemm", {}).get("sgemm_peak_gflops")
    if peak:
        print(f"  machine sgemm (2048^3, same BLAS, {threads} thread(s)): {peak:.1f} GFLOP/s")
    # With one thread the CPU time of the process is the robust measure on a
    # shared machine (it leaves out time spent descheduled); wall time is shown
    # too.  Ratios and GFLOP/s use the CPU time when threads == 1.
    key = "cpu" if threads == 1 else "times"
    gem = min(res["sgemm"][key]) if "sgemm" in res else None
    print(f"  {'library':14s} {'wall s':>8s} {'cpu s':>8s} {'(' + ('cpu' if key == 'cpu' else 'wall') + ', all runs)':>22s} {'GFLOP/s':>8s} "
          f"{'% sgemm':>8s} {'x gemms':>8s} {'peak RSS +MB':>12s} {'over grads':>10s}  loss")
    for lib in libs:
        if lib not in res:
            continue
        r = res[lib]
        tmin = min(r[key])
        gf = r["gflop"] / tmin
        pg = r["peak_growth_mb"]
        over = "" if (pg is None or lib in ("sgemm",)) else f"{pg - r['grads_mb']:10.0f}"
        name = "gemms alone" if lib == "sgemm" else lib
        print(f"  {name:14s} {min(r['times']):8.3f} {min(r['cpu']):8.3f} "
              f"{' '.join(f'{v:.2f}' for v in r[key]):>22s} {gf:8.1f} "
              f"{(100 * gf / peak if peak else float('nan')):7.0f}% "
              f"{(tmin / gem if gem else float('nan')):8.3f} "
              f"{(pg if pg is not None else float('nan')):12.0f} {over:>10s}  {r['loss']:.6f}")
    if "fastlog" in res:
        f = min(res["fastlog"][key])
        pr = res["fastlog"].get("paired_ratios")
        if pr:
            print(f"  fastlog / gemms alone ({'cpu' if threads == 1 else 'wall'} time), interleaved in one "
                  f"process: median "
                  f"{float(np.median(pr)):.3f} (runs: {' '.join(f'{v:.3f}' for v in pr)})")
        for lib in ("torch_chunked", "torch_ref"):
            if lib in res:
                print(f"  fastlog speed-up over {lib}: {min(res[lib][key]) / f:.2f}x "
                      f"({'cpu' if key == 'cpu' else 'wall'} time)")
    return res


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--case", default="4096", choices=sorted(CASES))
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--repeat", type=int, default=None,
                    help="timed runs per library (default 3; 1 for the 16384 case)")
    ap.add_argument("--libs", default=",".join(LIBS), help="subset of " + ",".join(LIBS))
    ap.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    a = ap.parse_args(argv)
    repeat = a.repeat if a.repeat is not None else (1 if a.case == "16384" else 3)
    if a.worker:
        worker(a.worker, a.case, a.threads, repeat, paired=a.case != "16384")
        return
    run_case(a.case, a.threads, repeat, [s.strip() for s in a.libs.split(",") if s.strip()])


# ------------------------------------------------- pytest-benchmark cases ---
SMALL = [(512, 256, 8000), (2048, 128, 4000)]


@pytest.fixture(scope="module")
def _pinned():
    from fastlog.bench.timing import pinned_threads
    with pinned_threads(1):
        yield


@pytest.mark.parametrize("shape", SMALL, ids=lambda s: "N%d-H%d-V%d" % s)
@pytest.mark.parametrize("lib", ["fastlog", "torch_chunked", "torch_ref", "sgemm"])
def test_linear_ce_fwd_bwd(benchmark, _pinned, lib, shape):
    N, H, V = shape
    x, W, t = make_inputs(N, H, V)
    if lib.startswith("torch"):
        torch = pytest.importorskip("torch")
        old = torch.get_num_threads()
        torch.set_num_threads(1)
    try:
        fn = _callable(lib, x, W, t, 1)
        benchmark.group = "linear_cross_entropy N=%d H=%d V=%d float32 1 thread" % shape
        benchmark.extra_info["gflop"] = 6 * N * H * V / 1e9
        benchmark(fn)
    finally:
        if lib.startswith("torch"):
            torch.set_num_threads(old)


if __name__ == "__main__":
    main()
