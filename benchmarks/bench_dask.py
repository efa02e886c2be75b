"""Out-of-core cross-entropy with fastlog.dask: logits larger than the workers' memory.

    python benchmarks/bench_dask.py                       # 8 GiB of float32 logits, 2 workers x 1 GiB
    python benchmarks/bench_dask.py --gib 2 --inmem-gib 0.5 --memory-limit 512MiB

What it measures (script only; no pytest test here):

1. In one process, in memory: ``fastlog.cross_entropy`` (mean) over ``--inmem-gib`` of
   float32 logits (N x C, C = --classes) with 1 and 2 fastlog threads (median of --repeat).
2. On a ``LocalCluster(n_workers=--workers, threads_per_worker=1, memory_limit=--memory-limit)``:
   logits of ``--gib`` GiB (more than all workers' memory together) generated block by block from
   a seed (uniform in [-4, 4), ``--block-mib`` per block; ``--data tiled`` repeats 512 drawn rows
   down each block so that making the data costs one write pass) and never held whole anywhere:
   a. generation only (``X[:, :1].sum()``: every block is made, one column is read),
   b. ``fastlog.dask.cross_entropy(X, T).compute()`` (generation + cross-entropy).
   Throughput = logits bytes / wall time.  (b) - (a) estimates the cross-entropy's own share.
3. ``--check``: the in-process answer over the same generated blocks (sum of the per-block loss
   sums / number of targets), compared with the cluster's.

Prints one table, and writes --json if asked.  Timings on a shared machine are noisy: the
median and the spread of --repeat runs are shown, with the load average.
"""
import argparse
import json
import os
import time

import numpy as np


_BASE_ROWS = 512


def _gen_logits(block_id=None, *, seed, rows, C, N, data="tiled"):
    """Block i of the logits, from the seed: uniform in [-4, 4).

    data='random': every value drawn (the generator then costs more than the cross-entropy);
    data='tiled': 512 drawn rows repeated down the block (one write pass: the cheap way to make
    data that no worker holds for long)."""
    i = block_id[0]
    n = min(rows, N - i * rows)
    rng = np.random.default_rng([seed, i])
    m = n if data == "random" else min(n, _BASE_ROWS)
    base = rng.random((m, C), dtype=np.float32)
    base *= np.float32(8.0)
    base -= np.float32(4.0)
    if m == n:
        return base
    x = np.empty((n, C), np.float32)
    for a in range(0, n, m):
        b = min(n, a + m)
        x[a:b] = base[: b - a]
    return x


def _gen_target(block_id=None, *, seed, rows, C, N):
    i = block_id[0]
    n = min(rows, N - i * rows)
    return np.random.default_rng([seed, i, 1]).integers(0, C, n)


def _median_spread(ts):
    ts = sorted(ts)
    return ts[len(ts) // 2], ts[-1] - ts[0]


def _inmem(gib, C, repeat):
    import fastlog

    N = int(gib * (1 << 30)) // (4 * C)
    x = _gen_logits((0,), seed=1, rows=N, C=C, N=N)
    t = _gen_target((0,), seed=1, rows=N, C=C, N=N)
    out = {}
    for th in (1, 2):
        with fastlog.num_threads(th):
            fastlog.cross_entropy(x, t)
            ts = []
            for _ in range(repeat):
                t0 = time.perf_counter()
                fastlog.cross_entropy(x, t)
                ts.append(time.perf_counter() - t0)
        med, spread = _median_spread(ts)
        out[th] = dict(seconds=med, spread=spread, gbps=x.nbytes / med / 1e9)
    return x.nbytes, out


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--gib", type=float, default=8.0, help="GiB of float32 logits on the cluster")
    p.add_argument("--classes", type=int, default=1000)
    p.add_argument("--block-mib", type=float, default=64.0)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--memory-limit", default="1GiB", help="per worker")
    p.add_argument("--inmem-gib", type=float, default=1.0)
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--check", action="store_true")
    p.add_argument("--data", choices=("tiled", "random"), default="tiled",
                   help="how blocks are generated (see _gen_logits)")
    p.add_argument("--json")
    args = p.parse_args(argv)
    # Idle OpenMP threads sleep instead of spinning (a spinning pool makes 2 threads slower than 1
    # on a busy machine); set before fastlog loads its OpenMP runtime.
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

    import dask
    import dask.array as da
    from dask.utils import parse_bytes
    from distributed import Client, LocalCluster

    import fastlog
    import fastlog.dask as fd

    C = args.classes
    rows = max(1, int(args.block_mib * (1 << 20)) // (4 * C))
    N = int(args.gib * (1 << 30)) // (4 * C)
    nbytes = N * C * 4
    mem = parse_bytes(args.memory_limit) * args.workers
    print(f"load average {os.getloadavg()}; fastlog {fastlog.__version__} ({fastlog.config()['isa']}), "
          f"dask {dask.__version__}")
    inm_bytes, inm = _inmem(args.inmem_gib, C, args.repeat)

    kw = dict(seed=7, rows=rows, C=C, N=N)
    lkw = dict(kw, data=args.data)
    nblocks = -(-N // rows)
    chunks_r = tuple(min(rows, N - i * rows) for i in range(nblocks))
    X = da.map_blocks(_gen_logits, dtype=np.float32, chunks=(chunks_r, (C,)), **lkw)
    T = da.map_blocks(_gen_target, dtype=np.int64, chunks=(chunks_r,), **kw)
    res = {}
    with LocalCluster(n_workers=args.workers, threads_per_worker=1, processes=True,
                      memory_limit=args.memory_limit, dashboard_address=None,
                      env={"OMP_WAIT_POLICY": "PASSIVE"}) as cluster, Client(cluster) as client:
        # Warm-up on one block (worker imports, first fastlog call) before timing.
        client.compute(fd.cross_entropy(X[:rows], T[:rows])).result(timeout=600)
        for name, expr in (("generate", X[:, :1].sum()), ("generate+CE", fd.cross_entropy(X, T))):
            ts, val = [], None
            for _ in range(args.repeat):
                t0 = time.perf_counter()
                val = client.compute(expr).result(timeout=3600)
                ts.append(time.perf_counter() - t0)
            med, spread = _median_spread(ts)
            res[name] = dict(seconds=med, spread=spread, gbps=nbytes / med / 1e9, value=float(val))
        peak = client.run(lambda dask_worker: dask_worker.monitor.range_query(start=0)["memory"])
    peak_rss = {w: max(v) / 2**20 for w, v in peak.items() if v}
    if args.check:
        total = cnt = 0.0
        for i in range(nblocks):
            xb, tb = _gen_logits((i,), **lkw), _gen_target((i,), **kw)
            total += float(fastlog.cross_entropy(xb.astype(np.float64), tb, reduction="sum"))
            cnt += tb.size
        res["check"] = dict(in_process=total / cnt, cluster=res["generate+CE"]["value"])

    ce_only = res["generate+CE"]["seconds"] - res["generate"]["seconds"]
    print(f"\n[{args.data} data] Cross-entropy (mean) over N x C = {N} x {C} float32 logits = {nbytes / 2**30:.2f} GiB "
          f"on {args.workers} workers x {args.memory_limit} ({mem / 2**30:.2f} GiB in all), "
          f"{nblocks} blocks of {rows} rows")
    print(f"{'what':44s} {'seconds':>8s} {'spread':>7s} {'GB/s':>7s}")
    for th, r in inm.items():
        print(f"{f'in memory, 1 process, {th} fastlog thread(s), {inm_bytes / 2**30:.2f} GiB':44s} "
              f"{r['seconds']:8.3f} {r['spread']:7.3f} {r['gbps']:7.2f}")
    for name, r in res.items():
        if name == "check":
            continue
        print(f"{'cluster: ' + name:44s} {r['seconds']:8.3f} {r['spread']:7.3f} {r['gbps']:7.2f}")
    if ce_only > 0:
        print(f"{'cluster: CE share ((b) - (a))':44s} {ce_only:8.3f} {'':7s} {nbytes / ce_only / 1e9:7.2f}")
    print(f"peak worker RSS (MiB): {', '.join(f'{v:.0f}' for v in peak_rss.values())}")
    if "check" in res:
        c = res["check"]
        print(f"check: cluster {c['cluster']!r} vs in-process float64 {c['in_process']!r} "
              f"(rel. diff {abs(c['cluster'] - c['in_process']) / abs(c['in_process']):.2e})")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(dict(args=vars(args), inmem=inm, cluster=res, peak_rss_mib=peak_rss, N=N, C=C), f,
                      indent=1)


if __name__ == "__main__":
    main()
