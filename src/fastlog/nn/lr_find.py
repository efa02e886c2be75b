"""The learning-rate range test (Smith 2015; fastai's ``lr_find``): :func:`lr_find`."""
import math

import numpy as np

__all__ = ["lr_find", "LRFinderResult"]


class LRFinderResult:
    """What :func:`lr_find` measured.

    Parameters
    ----------
    lrs, losses, raw_losses, suggestion, suggestion_loss, stopped
        The attributes below, in this order (:func:`lr_find` builds it).

    Attributes
    ----------
    lrs : ndarray
        The learning rates tried, one mini-batch each, in order.
    losses : ndarray
        The smoothed training loss at each rate (exponential moving average
        with bias correction, as fastai's ``Recorder``).
    raw_losses : ndarray
        The loss of each mini-batch before its step.
    suggestion : float
        The rate where the smoothed loss falls fastest against log(lr)
        (fastai's "steep" suggestion).
    suggestion_loss : float
        The smoothed loss at `suggestion`.
    stopped : str
        Why the sweep ended: "end" (all steps), "diverged" (smoothed loss
        above ``stop_div`` times its minimum) or "non-finite" (the loss
        overflowed).

    Examples
    --------
    >>> import numpy as np
    >>> from fastlog.nn import LRFinderResult
    >>> lrs = np.logspace(-4, 0, 5)
    >>> res = LRFinderResult(lrs, 2 - lrs, 2 - lrs, 0.01, 1.99, "end")
    >>> res
    LRFinderResult(suggestion=0.01, steps=5, stopped='end')
    >>> print(res)
    learning-rate finder: 5 mini-batches from lr 0.0001 to 1 (stopped after the last rate)
    lowest smoothed loss 1.0000 at lr 1
    suggested lr (steepest descent of the smoothed loss): 0.01
    """

    def __init__(self, lrs, losses, raw_losses, suggestion, suggestion_loss, stopped):
        self.lrs = np.asarray(lrs, np.float64)
        self.losses = np.asarray(losses, np.float64)
        self.raw_losses = np.asarray(raw_losses, np.float64)
        self.suggestion = float(suggestion)
        self.suggestion_loss = float(suggestion_loss)
        self.stopped = stopped

    def __repr__(self):
        return (f"LRFinderResult(suggestion={self.suggestion:.3g}, steps={len(self.lrs)}, "
                f"stopped={self.stopped!r})")

    def __str__(self):
        why = {"end": "after the last rate", "diverged": "when the loss diverged",
               "non-finite": "when the loss overflowed"}[self.stopped]
        n = len(self.lrs)
        best = int(np.argmin(self.losses))
        return (f"learning-rate finder: {n} mini-batch{'es' if n != 1 else ''} from lr {self.lrs[0]:.3g} "
                f"to {self.lrs[-1]:.3g} (stopped {why})\n"
                f"lowest smoothed loss {self.losses[best]:.4f} at lr {self.lrs[best]:.3g}\n"
                f"suggested lr (steepest descent of the smoothed loss): {self.suggestion:.3g}")

    def plot(self, path):
        """Save the loss-against-learning-rate curve to `path`; see :func:`fastlog.nn.plot.plot_lr_find`.

        Parameters
        ----------
        path : str or os.PathLike
            The image file to write (PNG; needs matplotlib).

        Examples
        --------
        >>> import os, tempfile
        >>> import numpy as np
        >>> from fastlog.nn import LRFinderResult
        >>> lrs = np.logspace(-4, 0, 30)
        >>> res = LRFinderResult(lrs, 2 - lrs, 2 - lrs, 0.01, 1.99, "end")
        >>> path = res.plot(os.path.join(tempfile.mkdtemp(), "lr.png"))
        >>> os.path.getsize(path) > 0
        True
        """
        from .plot import plot_lr_find
        return plot_lr_find(self, path)


def _snapshot(model):
    """A restorable copy of the model's parameters and optimizer state."""
    if hasattr(model, "_flat") and hasattr(model, "_vflat"):          # MLP
        return ("mlp", model._flat.copy(), model._vflat.copy(), model._momentum_started)
    if hasattr(model, "weight") and hasattr(model, "bias"):            # LogisticRegression
        return ("linear", model.weight.copy(), model.bias.copy())
    raise TypeError(f"lr_find needs a fastlog.nn.MLP or LogisticRegression, got {type(model).__name__}")


def _restore(model, snap):
    if snap[0] == "mlp":
        model._flat[...] = snap[1]
        model._vflat[...] = snap[2]
        model._momentum_started = snap[3]
    else:
        model.weight[...] = snap[1]
        model.bias[...] = snap[2]


def _positive(v, name):
    try:
        f = float(v)
    except (TypeError, ValueError):
        raise TypeError(f"{name} must be a number, got {type(v).__name__}") from None
    if not (f > 0 and math.isfinite(f)):
        raise ValueError(f"{name} must be a finite number > 0, got {v!r}")
    return f


def _steep(lrs, losses, steps):
    """fastai's suggestion: skip the first tenth of the planned steps and the last 5
    points, then take the rate where d(loss)/d(log lr) is most negative."""
    lo, hi = steps // 10, len(lrs) - 5
    if hi - lo < 2:
        lo, hi = 0, len(lrs)
    if hi - lo < 2:
        return lrs[0], losses[0]
    lr, loss = lrs[lo:hi], losses[lo:hi]
    grads = np.diff(loss) / np.diff(np.log(lr))
    i = int(np.argmin(grads))
    return lr[i], loss[i]


def lr_find(model, X, y, *, start=1e-6, end=10.0, steps=100, batch_size=64, beta=0.98, stop_div=4.0,
            momentum=0.9, weight_decay=0.0, seed=0):
    """Sweep the learning rate exponentially over mini-batches and suggest one.

    Each of up to `steps` mini-batches (drawn in a random order, reshuffled
    when the data run out) takes one SGD step at a rate growing exponentially
    from `start` to `end`; the loss is smoothed and the sweep stops early once
    it diverges.  The model's parameters and optimizer state are restored
    exactly afterwards, whatever happens.

    Parameters
    ----------
    model : MLP or LogisticRegression
    X, y : array_like
        Training data (labels as for ``model.fit``).
    start, end : float
        First and last learning rate, 0 < start < end.
    steps : int
        Number of rates (one mini-batch each), at least 2.
    batch_size : int
    beta : float
        Smoothing of the loss: ``avg = beta * avg + (1 - beta) * loss``,
        reported as ``avg / (1 - beta**k)`` after k batches (fastai's
        ``AvgSmoothLoss``).
    stop_div : float or None
        Stop when the smoothed loss exceeds ``stop_div`` times the lowest so
        far (fastai's 4); None runs every step.
    momentum, weight_decay : float
        The SGD settings of the sweep (for an MLP; as ``fit``'s defaults).
    seed : int
        Order of the mini-batches.

    Returns
    -------
    LRFinderResult
        ``lrs``, ``losses`` (smoothed), ``suggestion`` (fastai's steepest
        descent of the smoothed loss), and ``plot(path)``.

    Examples
    --------
    >>> import numpy as np
    >>> from fastlog import lr_find
    >>> from fastlog.nn import MLP
    >>> rng = np.random.default_rng(0)
    >>> X = rng.random((512, 8)).astype(np.float32)
    >>> y = (X[:, :4].sum(1) > X[:, 4:].sum(1)).astype(np.int64)
    >>> model = MLP((8, 16, 2), seed=0)
    >>> w = model.weights[0].copy()
    >>> res = lr_find(model, X, y, steps=60)
    >>> 1e-6 <= res.suggestion <= 10, float(res.lrs[0]), len(res.lrs) == len(res.losses)
    (True, 1e-06, True)
    >>> bool(np.array_equal(w, model.weights[0]))       # the weights are back
    True
    """
    start, end, stop_div = _check(start, end, steps, batch_size, beta, stop_div)
    snap = _snapshot(model)
    is_mlp = snap[0] == "mlp"
    X = model._x(X, "X") if is_mlp else model._x(X)
    if X.shape[0] == 0:
        raise ValueError("X has no rows")
    y = model._y(y, X.shape[0])
    if is_mlp:
        model._check_labels(y)
        model._raise_nonfinite(X, "X")
    step = ((lambda xb, yb, lr: model.train_step(xb, yb, lr, momentum=momentum, weight_decay=weight_decay))
            if is_mlp else model.train_step)
    try:
        lrs, smooth, raw, stopped = _sweep(step, X, y, start, end, int(steps), min(int(batch_size), X.shape[0]),
                                           float(beta), stop_div, np.random.default_rng(seed))
    finally:
        _restore(model, snap)
    if not lrs:
        raise FloatingPointError(f"the loss was not finite at the first rate ({start:g}); nothing to suggest")
    lrs, smooth = np.asarray(lrs), np.asarray(smooth)
    sug, sug_loss = _steep(lrs, smooth, int(steps))
    return LRFinderResult(lrs, smooth, raw, sug, sug_loss, stopped)


def _check(start, end, steps, batch_size, beta, stop_div):
    start, end = _positive(start, "start"), _positive(end, "end")
    if not start < end:
        raise ValueError(f"start must be < end, got start={start!r}, end={end!r}")
    if isinstance(steps, bool) or not isinstance(steps, (int, np.integer)) or steps < 2:
        raise ValueError(f"steps must be an integer >= 2, got {steps!r}")
    if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)) or batch_size < 1:
        raise ValueError(f"batch_size must be an integer >= 1, got {batch_size!r}")
    if not 0.0 <= float(beta) < 1.0:
        raise ValueError(f"beta must be in [0, 1), got {beta!r}")
    return start, end, (None if stop_div is None else _positive(stop_div, "stop_div"))


def _sweep(step, X, y, start, end, steps, bs, beta, stop_div, rng):
    """One mini-batch per rate; returns (lrs, smoothed losses, raw losses, why it stopped)."""
    n = X.shape[0]
    lrs, smooth, raw = [], [], []
    avg, best = 0.0, math.inf
    order, pos = rng.permutation(n), 0
    for i in range(steps):
        lr = start * (end / start) ** (i / (steps - 1))
        if pos + bs > n:
            order, pos = rng.permutation(n), 0
        idx = order[pos:pos + bs]
        pos += bs
        try:
            loss = step(X[idx], y[idx], lr)
        except FloatingPointError:
            return lrs, smooth, raw, "non-finite"
        if not math.isfinite(loss):
            return lrs, smooth, raw, "non-finite"
        avg = beta * avg + (1.0 - beta) * loss
        s = avg / (1.0 - beta ** (i + 1))
        lrs.append(lr)
        raw.append(loss)
        smooth.append(s)
        best = min(best, s)
        if stop_div is not None and s > stop_div * best:
            return lrs, smooth, raw, "diverged"
    return lrs, smooth, raw, "end"
