"""The training loop of :class:`fastlog.nn.MLP`: epochs, progress, history, checkpoints."""
import os
import time
from typing import Any, Dict, List, Optional, TextIO, Tuple, Union

import numpy as np

from .._validation import nonneg_float, positive_int, seed_param
from .._threads import blas_pinned
from .._typing import ArrayLike
from ._progress import Progress

__all__ = ["fit_mlp", "CHECKPOINT_FORMATS"]

CHECKPOINT_FORMATS = ("json", "npz")


def checkpoint_path(directory: Union[str, "os.PathLike[str]"], epoch: Union[int, str],
format: str = "json") -> str:
    """Where :func:`fit_mlp` writes the model after `epoch` (an int, or "final").

    Examples
    --------
    >>> from fastlog.nn.fit import checkpoint_path
    >>> checkpoint_path("ckpt", 3)
    'ckpt/relu_model_epoch_3.json'
    >>> checkpoint_path("ckpt", "final", "npz")
    'ckpt/relu_model_final.npz'
    """
    name = "relu_model_final" if epoch == "final" else f"relu_model_epoch_{int(epoch)}"
    return os.path.join(os.fspath(directory), f"{name}.{format}")


def _checkpoint_dir(directory, format):
    if format not in CHECKPOINT_FORMATS:
        raise ValueError(f"checkpoint_format must be 'json' or 'npz', got {format!r}")
    if directory is None:
        return None
    directory = os.fspath(directory)
    if os.path.exists(directory) and not os.path.isdir(directory):
        raise ValueError(f"checkpoint_dir {directory!r} exists and is not a directory")
    os.makedirs(directory, exist_ok=True)
    return directory


def _run_epoch(model, ws, Xs, ys, bs, lr, momentum, dampening, weight_decay):
    """One pass over (Xs, ys) in batches; returns (summed loss, hits, seconds)."""
    n = Xs.shape[0]
    total, hits = 0.0, 0
    t0 = time.perf_counter()
    with blas_pinned():
        for i in range(0, n, bs):
            xb, yb = Xs[i:i + bs], ys[i:i + bs]
            st, loss, h = ws.step(xb, yb, 1, lr, momentum, dampening, weight_decay,
                                  not model._momentum_started)
            if st != -1:
                model._raise_step(st, xb, yb)
            if momentum != 0.0:
                model._momentum_started = True
            total += loss * xb.shape[0]
            hits += h
    return total, hits, time.perf_counter() - t0


def fit_mlp(model: Any, X: ArrayLike, y: ArrayLike, *, epochs: int = 10, batch_size: int = 64,
            lr: float = 0.05, momentum: float = 0.9, weight_decay: float = 0.0, dampening: float = 0.0,
            shuffle: bool = True, seed: Optional[int] = 0,
            validation_data: Optional[Tuple[ArrayLike, ArrayLike]] = None, progress: Union[bool, str] = True,
            file: Optional[TextIO] = None, checkpoint_dir: Union[str, "os.PathLike[str]", None] = None,
            checkpoint_format: str = "json") -> Dict[str, List[float]]:
    """Mini-batch SGD of an :class:`~fastlog.nn.MLP` over (X, y) for `epochs` epochs.

    Parameters
    ----------
    model : MLP
    X : array_like, shape (n, model.n_features)
    y : array_like of int, shape (n,)
    epochs, batch_size : int
        Each epoch visits the rows in a fresh random order (``shuffle``; from
        ``numpy.random.default_rng(seed)``) in batches of `batch_size` (the
        last one may be smaller).
    shuffle : bool, default True
        Visit the rows in a fresh random order every epoch.
    seed : int or None, default 0
        Seed of the shuffling.
    lr, momentum, weight_decay, dampening : float
        ``torch.optim.SGD``'s rule (see :meth:`MLP.train_step`).
    validation_data : (X_val, y_val), optional
        Evaluated after every epoch.
    progress : bool or "plain"
        True: a tqdm bar with the epoch's training loss and accuracy (and
        validation accuracy), or one line per epoch to `file` (default
        stdout) if tqdm is not installed or ``progress="plain"``; False:
        silent.
    file : file-like, optional
        Where the plain progress lines go (default ``sys.stdout``).
    checkpoint_dir : str or os.PathLike, optional
        Write the model after every epoch as ``relu_model_epoch_1.json``,
        ``relu_model_epoch_2.json``, ... and at the end as
        ``relu_model_final.json`` (created if missing; existing files of
        those names are replaced).  :func:`fastlog.nn.io.weight_evolution`
        summarises them.
    checkpoint_format : {'json', 'npz'}
        The file format of the checkpoints (see :func:`fastlog.nn.io.save_mlp`).

    Returns
    -------
    dict
        Lists per epoch: 'loss', 'accuracy' (running training figures of the
        epoch), 'val_loss', 'val_accuracy' (if validation data), 'time'
        (seconds spent in the epoch's training steps).

    Raises
    ------
    RuntimeError
        If the model is already being trained by another thread.

    Examples
    --------
    >>> import os, tempfile
    >>> import numpy as np
    >>> from fastlog.nn import MLP
    >>> from fastlog.nn.fit import fit_mlp
    >>> X, y = np.eye(4, dtype=np.float32), np.arange(4)
    >>> d = tempfile.mkdtemp()
    >>> hist = fit_mlp(MLP((4, 8, 4)), X, y, epochs=2, batch_size=4, progress=False, checkpoint_dir=d)
    >>> sorted(os.listdir(d))
    ['relu_model_epoch_1.json', 'relu_model_epoch_2.json', 'relu_model_final.json']
    """
    X = model._x(X, "X")
    n = X.shape[0]
    if n == 0:
        raise ValueError("X has no rows")
    y = model._y(y, n)
    model._check_labels(y)
    model._raise_nonfinite(X, "X")
    epochs = positive_int(epochs, "epochs")
    bs = min(positive_int(batch_size, "batch_size"), n)
    lr = nonneg_float(lr, "lr")
    momentum = nonneg_float(momentum, "momentum")
    weight_decay = nonneg_float(weight_decay, "weight_decay")
    dampening = nonneg_float(dampening, "dampening")
    val = None
    if validation_data is not None:
        Xv, yv = validation_data
        Xv = model._x(Xv, "X_val")
        val = (Xv, model._y(yv, Xv.shape[0], "y_val"))
    ckpt = _checkpoint_dir(checkpoint_dir, checkpoint_format)
    rng = np.random.default_rng(seed_param(seed))
    hist: Dict[str, List[float]] = {"loss": [], "accuracy": [], "time": []}
    if validation_data is not None:
        hist["val_loss"], hist["val_accuracy"] = [], []
    with model._training("fit"):
        _epochs(model, X, y, hist, epochs, bs, (lr, momentum, dampening, weight_decay), shuffle, rng, val,
                (progress, file), ckpt, checkpoint_format)
    return hist


def _epochs(model, X, y, hist, epochs, bs, sgd, shuffle, rng, val, progress, ckpt, fmt):
    """The epoch loop of :func:`fit_mlp` (the caller holds the training lock)."""
    n = X.shape[0]
    ws = model._workspace(bs, True)
    Xs, ys = (np.empty_like(X), np.empty_like(y)) if shuffle else (X, y)
    bar = Progress(epochs, *progress)
    try:
        for ep in range(1, epochs + 1):
            if shuffle:
                perm = rng.permutation(n)
                np.take(X, perm, axis=0, out=Xs)
                np.take(y, perm, out=ys)
            total, hits, dt = _run_epoch(model, ws, Xs, ys, bs, *sgd)
            hist["loss"].append(total / n)
            hist["accuracy"].append(hits / n)
            hist["time"].append(dt)
            stats = {"loss": total / n, "acc": hits / n}
            if val:
                vl, va = model.evaluate(*val)
                hist["val_loss"].append(vl)
                hist["val_accuracy"].append(va)
                stats["val_acc"] = va
            stats["s"] = dt
            if ckpt is not None:
                model.save(checkpoint_path(ckpt, ep, fmt), format=fmt)
            bar.update(ep, epochs, stats)
    finally:
        bar.close()
    if ckpt is not None:
        model.save(checkpoint_path(ckpt, "final", fmt), format=fmt)
