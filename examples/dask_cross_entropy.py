"""
Out-of-core cross-entropy on a Dask cluster (shown, not run)
============================================================

:mod:`fastlog.dask` evaluates the losses and the softmax family on Dask arrays, one
fastlog call per block of rows.  Here the logits (4 GiB of float32: 1,048,576 rows
of 1,000 classes) are generated block by block on a ``LocalCluster`` of two
workers limited to 1 GiB each, so they never exist whole anywhere, and their mean
cross-entropy comes back as one number.

The mean is exact whatever the chunking: every block returns the pair (sum of its
losses, number of its counted targets) and the pairs are summed in a tree, instead
of averaging per-block means (which is wrong for unequal blocks).  The
documentation shows this script without running it (it starts a cluster and
moves gigabytes); ``tests/test_dask.py`` checks the same functions on real
clusters, and ``benchmarks/bench_dask.py`` times them::

    pip install "fastlog-nn[dask]"
    python examples/dask_cross_entropy.py
"""
import os

import dask.array as da
import numpy as np
from dask.distributed import Client, LocalCluster

import fastlog
import fastlog.dask

N, C, ROWS = 1 << 20, 1000, 1 << 14          # 4 GiB of float32 logits in blocks of 62.5 MiB
if os.environ.get("FASTLOG_EXAMPLES_FAST") == "1":   # the test suite: 16 MiB in 4 blocks
    N, ROWS = 1 << 12, 1 << 10


def block(block_id=None):
    """Block i of the logits, made on the worker from a seed (uniform in [-4, 4))."""
    rng = np.random.default_rng(block_id[0])
    return rng.uniform(-4, 4, (ROWS, C)).astype(np.float32)


if __name__ == "__main__":
    with LocalCluster(n_workers=2, threads_per_worker=1, memory_limit="1GiB", dashboard_address=None) as cluster, \
            Client(cluster):
        logits = da.map_blocks(block, chunks=((ROWS,) * (N // ROWS), (C,)), dtype=np.float32)
        target = da.random.default_rng(0).integers(0, C, N, chunks=ROWS)
        print(f"logits: {logits.nbytes / 2**30:.1f} GiB in {logits.numblocks[0]} blocks of "
              f"{ROWS * C * 4 / 2**20:.1f} MiB")

        loss = fastlog.dask.cross_entropy(logits, target)               # lazy
        mean = float(loss.compute())
        print("mean cross-entropy:", mean)

        # One block in memory, for comparison: logits uniform in [-4, 4) give a mean loss near
        # log(1000) + log(sinh(4) / 4) = 8.83 in both.
        x0, t0 = logits[:ROWS].compute(), target[:ROWS].compute()
        print("first block in memory:", float(fastlog.cross_entropy(x0, t0)))
        if N <= 1 << 16:      # small enough to check the whole mean in memory
            whole = fastlog.cross_entropy(logits.compute(), target.compute())
            print(f"the whole array in memory: {float(whole)} (difference {abs(float(whole) - mean):.1e})")

        # Per-row losses stay lazy, and so does the softmax family:
        per_row = fastlog.dask.cross_entropy(logits, target, reduction="none")
        lse = fastlog.dask.logsumexp(logits, axis=1)
        print("largest per-row loss:", float(per_row.max().compute()),
              "; mean logsumexp:", float(lse.mean().compute()))
