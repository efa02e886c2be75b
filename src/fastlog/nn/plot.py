"""Pictures of training (matplotlib, the ``[plot]`` extra; imported only when a plot is asked for).

Every function draws on a standalone ``matplotlib.figure.Figure`` (no pyplot,
no global state, no display needed), saves it to `path` (the format from the
suffix, e.g. ``.png`` or ``.pdf``) and returns `path`.
"""
import os
from typing import Any, Dict, Optional, Sequence, Tuple, Union

import numpy as np

__all__ = ["plot_history", "plot_logreg_weights", "plot_first_layer", "plot_lr_find",
           "plot_weight_evolution", "MATPLOTLIB_HINT"]

MATPLOTLIB_HINT = 'plots need matplotlib: pip install "fastlog-nn[plot]"'


def _figure(figsize):
    try:
        from matplotlib.figure import Figure
    except ImportError:
        raise ImportError(MATPLOTLIB_HINT) from None
    return Figure(figsize=figsize, layout="constrained")


def _save(fig, path):
    path = os.fspath(path)
    fig.savefig(path, dpi=110)
    return path


def plot_history(history: Dict[str, Sequence[float]], path: Union[str, "os.PathLike[str]"],
                 title: Optional[str] = None, train_label: str = "training") -> Any:
    """Training (and validation) loss and accuracy per epoch, side by side.

    Validation is measured after each epoch; ``MLP.fit``'s training figures
    are running means over the epoch's mini-batches (while the weights move),
    say so with `train_label`.

    Parameters
    ----------
    history : dict
        As returned by ``fit``: 'loss', 'accuracy', optionally 'val_loss',
        'val_accuracy'.
    path : str or os.PathLike
    title : str, optional
    train_label : str
        Legend of the training curves.

    Returns
    -------
    str
        `path`, written.

    Raises
    ------
    ImportError
        Without matplotlib (the message says ``pip install "fastlog-nn[plot]"``).
    KeyError
        A `history` without its ``'loss'`` list.

    Examples
    --------
    >>> import os, tempfile
    >>> from fastlog.nn.plot import plot_history
    >>> hist = {"loss": [0.9, 0.5, 0.4], "accuracy": [0.7, 0.85, 0.9], "val_loss": [0.8, 0.6, 0.55],
    ...         "val_accuracy": [0.75, 0.82, 0.86]}
    >>> path = plot_history(hist, os.path.join(tempfile.mkdtemp(), "h.png"))
    >>> os.path.getsize(path) > 0
    True
    """
    fig = _figure((9, 3.6))
    ax_l, ax_a = fig.subplots(1, 2)
    epochs = np.arange(1, len(history["loss"]) + 1)
    for ax, key, label in ((ax_l, "loss", "cross-entropy loss"), (ax_a, "accuracy", "accuracy (%)")):
        scale = 100.0 if key == "accuracy" else 1.0
        ax.plot(epochs, scale * np.asarray(history[key]), "o-", label=train_label, color="C0")
        if f"val_{key}" in history:
            ax.plot(epochs, scale * np.asarray(history[f"val_{key}"]), "s--", label="validation (end of epoch)",
                    color="C1")
        ax.set_xlabel("epoch")
        ax.set_ylabel(label)
        ax.grid(alpha=0.3)
        ax.legend()
        if len(epochs) <= 20:
            ax.set_xticks(epochs)
    ax_l.set_title("loss per epoch")
    ax_a.set_title("accuracy per epoch")
    if title:
        fig.suptitle(title)
    return _save(fig, path)


def _weights_of(model_or_weights):
    w = getattr(model_or_weights, "weight", model_or_weights)
    return np.asarray(w, np.float64)


def plot_logreg_weights(model: Any, path: Union[str, "os.PathLike[str]"],
                        image_shape: Tuple[int, int] = (28, 28), labels: Tuple[Any, Any] = (3, 7)) -> Any:
    """The weights of a binary classifier on images as one image, which pixels vote for which class.

    Diverging colormap centred at 0: red pixels push the logit up (vote for
    ``labels[1]``), blue ones down (vote for ``labels[0]``).

    Parameters
    ----------
    model : LogisticRegression or array_like
        The model, or its weights (any shape holding ``rows * cols`` values).
    path : str or os.PathLike
    image_shape : (int, int)
    labels : (str or int, str or int)
        The classes of logit < 0 and logit > 0.

    Returns
    -------
    str
        `path`, written.

    Raises
    ------
    ImportError
        Without matplotlib (the message says ``pip install "fastlog-nn[plot]"``).
    ValueError
        An `image_shape` that does not hold the model's weights.

    Examples
    --------
    >>> import os, tempfile
    >>> import numpy as np
    >>> from fastlog.nn.plot import plot_logreg_weights
    >>> w = np.linspace(-1, 1, 784)
    >>> os.path.getsize(plot_logreg_weights(w, os.path.join(tempfile.mkdtemp(), "w.png"))) > 0
    True
    """
    img = _weights_of(model).reshape(image_shape)
    lim = float(np.max(np.abs(img))) or 1.0
    fig = _figure((5.2, 4.4))
    ax = fig.subplots()
    im = ax.imshow(img, cmap="RdBu_r", vmin=-lim, vmax=lim, interpolation="nearest")
    ax.set_xticks([])
    ax.set_yticks([])
    ax.set_title(f"{labels[1]}-vs-{labels[0]} weights per pixel")
    cb = fig.colorbar(im, ax=ax, shrink=0.9)
    cb.set_label(f"weight  (< 0 votes {labels[0]}, > 0 votes {labels[1]})")
    cb.ax.text(0.5, 1.02, f"votes {labels[1]}", transform=cb.ax.transAxes, ha="center", va="bottom",
               fontsize=8, color="firebrick")
    cb.ax.text(0.5, -0.02, f"votes {labels[0]}", transform=cb.ax.transAxes, ha="center", va="top",
               fontsize=8, color="navy")
    return _save(fig, path)


def plot_first_layer(model: Any, path: Union[str, "os.PathLike[str]"],
                     image_shape: Tuple[int, int] = (28, 28), max_tiles: int = 64,
                     columns: Optional[int] = None) -> Any:
    """The first layer's weights of an MLP as a grid of images, one per hidden unit.

    Each tile is one row of ``model.weights[0]`` reshaped to `image_shape`,
    on its own symmetric colour scale (red positive, blue negative).

    Parameters
    ----------
    model : MLP
    path : str or os.PathLike
    image_shape : (int, int)
        Must hold ``model.n_features`` pixels.
    max_tiles : int
        Show at most this many units (the first ones).
    columns : int, optional
        Tiles per row (default: about square).

    Returns
    -------
    str
        `path`, written.

    Raises
    ------
    ImportError
        Without matplotlib (the message says ``pip install "fastlog-nn[plot]"``).
    ValueError
        An `image_shape` that does not hold the first layer's inputs.

    Examples
    --------
    >>> import os, tempfile
    >>> from fastlog.nn import MLP
    >>> from fastlog.nn.plot import plot_first_layer
    >>> path = plot_first_layer(MLP((784, 16, 10)), os.path.join(tempfile.mkdtemp(), "l1.png"))
    >>> os.path.getsize(path) > 0
    True
    """
    w = np.asarray(model.weights[0], np.float64)
    rows, cols = image_shape
    if rows * cols != w.shape[1]:
        raise ValueError(f"image_shape {image_shape} does not hold the {w.shape[1]} inputs of the first layer")
    k = min(w.shape[0], int(max_tiles))
    ncol = int(columns) if columns else int(np.ceil(np.sqrt(k)))
    nrow = int(np.ceil(k / ncol))
    fig = _figure((1.1 * ncol + 0.4, 1.1 * nrow + 0.6))
    axes = np.atleast_1d(fig.subplots(nrow, ncol)).ravel()
    for i, ax in enumerate(axes):
        ax.set_axis_off()
        if i < k:
            tile = w[i].reshape(rows, cols)
            lim = float(np.max(np.abs(tile))) or 1.0
            ax.imshow(tile, cmap="RdBu_r", vmin=-lim, vmax=lim, interpolation="nearest")
            ax.set_title(str(i), fontsize=7, pad=1)
    fig.suptitle(f"first-layer weights: {k} of {w.shape[0]} hidden units "
                 "(red > 0, blue < 0; each tile on its own scale)", fontsize=9)
    return _save(fig, path)


def plot_lr_find(result: Any, path: Union[str, "os.PathLike[str]"]) -> Any:
    """The learning-rate finder's smoothed loss against the learning rate (log axis), suggestion marked.

    Parameters
    ----------
    result : LRFinderResult
    path : str or os.PathLike

    Returns
    -------
    str
        `path`, written.

    Raises
    ------
    ImportError
        Without matplotlib (the message says ``pip install "fastlog-nn[plot]"``).

    Examples
    --------
    >>> import os, tempfile
    >>> import numpy as np
    >>> from fastlog.nn.lr_find import LRFinderResult
    >>> from fastlog.nn.plot import plot_lr_find
    >>> lrs = np.logspace(-5, 0, 50)
    >>> loss = 2 - np.tanh(np.log10(lrs) + 2.5) + np.maximum(0, np.log10(lrs) + 0.5) ** 2
    >>> res = LRFinderResult(lrs, loss, loss, 10 ** -2.5, 2.0, "end")
    >>> os.path.getsize(plot_lr_find(res, os.path.join(tempfile.mkdtemp(), "lr.png"))) > 0
    True
    """
    fig = _figure((6.4, 4.2))
    ax = fig.subplots()
    ax.plot(result.lrs, result.raw_losses, color="0.75", lw=0.8, label="mini-batch loss")
    ax.plot(result.lrs, result.losses, color="C0", lw=2, label="smoothed loss")
    ax.set_xscale("log")
    ax.axvline(result.suggestion, color="C3", ls="--", lw=1)
    ax.plot([result.suggestion], [result.suggestion_loss], "o", color="C3", ms=8,
            label=f"suggestion: lr = {result.suggestion:.2g}")
    top = float(np.max(result.losses[: max(1, len(result.losses) // 10)]))
    lo = min(float(np.min(result.losses)), float(np.min(result.raw_losses)))
    ax.set_ylim(lo - 0.05 * (top - lo + 1e-12), top + 0.6 * (top - lo + 1e-12))
    ax.set_xlabel("learning rate (log scale)")
    ax.set_ylabel("training loss")
    ax.set_title("learning-rate finder (one mini-batch per rate)")
    ax.grid(alpha=0.3)
    ax.legend()
    return _save(fig, path)


def plot_weight_evolution(evolution: Any, path: Union[str, "os.PathLike[str]"]) -> Any:
    """How far each layer's weights moved per epoch (relative change norms), from checkpoint files.

    Parameters
    ----------
    evolution : WeightEvolution
        From :func:`fastlog.nn.io.weight_evolution`.
    path : str or os.PathLike

    Returns
    -------
    str
        `path`, written.

    Raises
    ------
    ImportError
        Without matplotlib (the message says ``pip install "fastlog-nn[plot]"``).

    Examples
    --------
    >>> import os, tempfile
    >>> import numpy as np
    >>> from fastlog.nn.io import WeightEvolution
    >>> from fastlog.nn.plot import plot_weight_evolution
    >>> evo = WeightEvolution([1, 2, 3], ["layer1.weight", "layer1.bias"],
    ...                       [[1, 1], [1.5, 1.2], [1.7, 1.3]], [[np.nan, np.nan], [0.6, 0.2], [0.3, 0.1]])
    >>> os.path.getsize(plot_weight_evolution(evo, os.path.join(tempfile.mkdtemp(), "e.png"))) > 0
    True
    """
    fig = _figure((9.5, 4.2))
    ax_c, ax_n = fig.subplots(1, 2)
    e = np.asarray(evolution.epochs)
    for j, name in enumerate(evolution.names):
        style = "-" if name.endswith("weight") else ":"
        color = f"C{j // 2}"
        ax_c.plot(e[1:], 100.0 * evolution.relative[1:, j], style, marker="o", ms=4, color=color, label=name)
        ax_n.plot(e, evolution.norms[:, j], style, marker="o", ms=4, color=color)
    ax_c.set_title("change since the previous checkpoint", fontsize=10)
    ax_c.set_ylabel("||p(e) - p(e-1)|| / ||p(e-1)||  (%)")
    ax_c.set_ylim(bottom=0)
    ax_n.set_title("parameter norm", fontsize=10)
    ax_n.set_ylabel("||p(e)||  (log scale)")
    ax_n.set_yscale("log")
    for ax, ticks in ((ax_c, e[1:]), (ax_n, e)):
        ax.set_xlabel("epoch")
        ax.grid(alpha=0.3, which="both")
        if 0 < len(ticks) <= 20:
            ax.set_xticks(ticks)
    fig.suptitle(f"weight evolution over {len(e)} checkpoints (solid: weights, dotted: biases)", fontsize=11)
    fig.legend(loc="outside lower center", ncol=min(6, len(evolution.names)), fontsize=8)
    return _save(fig, path)
