"""The model: :class:`MLP`, Linear -> ReLU -> ... -> Linear on mean cross-entropy.

One call of :meth:`MLP.train_step` runs the forward pass, the fused
cross-entropy + gradient kernel, the backward pass and the SGD update
(optionally with momentum and weight decay, PyTorch's ``torch.optim.SGD``
rule) inside one nogil Cython function on preallocated buffers: no Python
loop over layers and no allocation per step.  The matrix products are BLAS
calls (SciPy's ``cython_blas``); without momentum the SGD update is folded
into the weight-gradient GEMM itself (``alpha = -lr``, ``beta = 1 - lr*wd``).

Threads: :func:`fastlog.set_num_threads` governs everything; results are
bit-identical for any thread count (see :func:`fastlog._threads.blas_pinned`).

Thread safety (Python threads sharing one model):

* inference (:meth:`MLP.forward`, :meth:`~MLP.predict`,
  :meth:`~MLP.predict_proba`, :meth:`~MLP.predict_log_proba`,
  :meth:`~MLP.evaluate`) is safe from any number of threads at once: each
  thread has its own activation buffers;
* training (:meth:`~MLP.fit`, :meth:`~MLP.train_step`,
  :meth:`~MLP.loss_and_grad`) runs in one thread at a time per model; a second
  thread that tries raises RuntimeError instead of corrupting the shared
  gradient and momentum buffers.  Inference during training in another thread
  sees parameters in the middle of an update.  Use one model per thread
  (``copy.deepcopy(model)``) to train in parallel.
"""
import math
import os
import threading
from typing import Any, BinaryIO, Dict, List, Mapping, Optional, Sequence, TextIO, Tuple, Union

import numpy as np

from .._dispatch import core
from .._enums import MLPMode, MLPOutput
from .._typing import ArrayLike, DTypeLike
from .._validation import float_array, int_param, nonneg_float, positive_int, seed_param
from .._threads import blas_pinned
from . import io as _io
from .fit import fit_mlp

__all__ = ["MLP", "load_mlp", "mlp_gemms_only", "INFER_BLOCK"]

_FLOATS = (np.dtype(np.float32), np.dtype(np.float64))
# Rows per block in inference (activations of a block stay in cache).
INFER_BLOCK = 4096


def _to_numpy(v, name):
    """A state_dict value (ndarray, torch tensor, array_like) as an ndarray."""
    if hasattr(v, "detach") and hasattr(v, "cpu"):
        v = v.detach().cpu().numpy()
    return float_array(v, name, promote_int=True)


def mlp_gemms_only(model: "MLP", x: ArrayLike, train: bool = True, lr: float = 0.01) -> None:
    """Run only the GEMMs of a training step or of inference, for benchmarks.

    Parameters
    ----------
    model : MLP
    x : array_like, shape (n, model.n_features)
    train : bool
        True: the GEMMs of ``model.train_step(x, ...)`` (seven for three
        layers, same shapes, blocks, alpha/beta and buffers); False: those of
        ``model.predict(x)``.
    lr : float
        The alpha of the fused update GEMMs.

    Raises
    ------
    ValueError
        An `x` with another number of features than the model's.

    Notes
    -----
    The floor of a step built on these GEMMs.  The model's parameters are not
    changed.

    Examples
    --------
    >>> import numpy as np
    >>> from fastlog.nn import MLP, mlp_gemms_only
    >>> model = MLP((8, 4, 3))
    >>> w = model.weights[0].copy()
    >>> mlp_gemms_only(model, np.ones((5, 8), np.float32))
    >>> bool(np.array_equal(w, model.weights[0]))
    True
    """
    x = model._x(x)
    n = x.shape[0]
    with model._training("mlp_gemms_only") if train else _nothing():
        ws = model._workspace(n if train else min(max(n, 1), INFER_BLOCK), bool(train))
        with blas_pinned():
            core.mlp_gemms_only(ws, x, bool(train), nonneg_float(lr, "lr"))


class _nothing:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


class _TrainingGuard:
    """Holds the model's training lock for one call; a second thread gets a clear error."""

    def __init__(self, lock, what):
        self.lock, self.what = lock, what

    def __enter__(self):
        if not self.lock.acquire(blocking=False):
            raise RuntimeError(f"MLP.{self.what}: this model is being trained by another call (another "
                               "thread, or a callback inside fit); one model trains in one thread at a time "
                               "(train a copy.deepcopy(model) per thread)")
        return self

    def __exit__(self, *exc):
        self.lock.release()
        return False


def _check_init(init):
    if init not in ("he", "xavier"):
        raise ValueError(f"init must be 'he' or 'xavier', got {init!r}")


class MLP:
    """Linear -> ReLU -> ... -> Linear, trained on mean cross-entropy with SGD.

    Parameters
    ----------
    sizes : sequence of int
        Layer widths ``(in_features, hidden..., n_classes)``; default
        ``(784, 128, 64, 10)``.  At least two entries, at most 65.
    dtype : float32 or float64
    seed : int or None
        Seed of the Gaussian initialisation.
    init : {'he', 'xavier'}
        'he': layers followed by a ReLU get He (Kaiming) normal weights,
        std = sqrt(2 / fan_in), the output layer Xavier (Glorot) normal,
        std = sqrt(2 / (fan_in + fan_out)); 'xavier': Xavier for all.
        Biases start at zero.

    Attributes
    ----------
    weights, biases : tuple of ndarray
        Views of the parameters, shaped like ``torch.nn.Linear`` (out, in) and
        (out,); they may be modified in place.  All parameters live in one
        flat vector in the order of ``nn.Sequential(...).parameters()``.

    Raises
    ------
    ValueError
        Fewer than 2 or more than 65 `sizes`, a size below 1, or an unknown
        `init`.
    TypeError
        A `dtype` other than float32 / float64, or sizes that are not integers.

    Notes
    -----
    ``forward`` returns logits; ``state_dict`` / ``from_state_dict`` use the
    keys of ``nn.Sequential(Linear, ReLU, Linear, ReLU, Linear)``: ``"0.weight"``,
    ``"0.bias"``, ``"2.weight"``, ...  Inputs containing NaN or infinity,
    wrong feature counts, labels out of range and mismatched lengths raise
    (ValueError / IndexError / TypeError) before anything is changed.

    Inference is thread-safe (each thread has its own buffers); training one
    model from two threads at once raises RuntimeError (see
    :mod:`fastlog.nn.mlp`).  ``copy.deepcopy`` and ``pickle`` give an
    independent model.

    Files: :meth:`save` / :meth:`load` (npz, or the JSON format with keys
    ``param_0`` ... of :mod:`fastlog.nn.io`).

    Examples
    --------
    >>> import numpy as np
    >>> from fastlog.nn import MLP
    >>> rng = np.random.default_rng(0)
    >>> X = rng.random((200, 4)).astype(np.float32)
    >>> y = (X[:, 0] > X[:, 1]).astype(np.int64)
    >>> model = MLP((4, 16, 2), seed=0)
    >>> hist = model.fit(X, y, epochs=20, batch_size=20, lr=0.1, progress=False)
    >>> hist["accuracy"][-1] > 0.9
    True
    >>> model.predict(X[:5]).tolist() == y[:5].tolist()
    True
    """

    def __init__(self, sizes: Sequence[int] = (784, 128, 64, 10), *, dtype: DTypeLike = np.float32,
                 seed: Optional[int] = 0, init: str = "he") -> None:
        try:
            sizes = tuple(sizes)
        except TypeError:
            raise TypeError("sizes must be a sequence of integers") from None
        if len(sizes) < 2 or len(sizes) > 65:
            raise ValueError(f"sizes needs between 2 and 65 entries (input, ..., classes), got {len(sizes)}")
        sizes = tuple(int_param(s, "sizes", lo=-math.inf, hi=math.inf) for s in sizes)
        if min(sizes) < 1:
            raise ValueError(f"every layer width must be >= 1, got sizes={sizes}")
        dt = np.dtype(dtype)
        if dt not in _FLOATS:
            raise TypeError(f"dtype must be float32 or float64, got {dt}")
        # parameters, gradients and velocities: three arrays of n values
        n = sum(o * i + o for i, o in zip(sizes[:-1], sizes[1:]))
        if 3 * n * dt.itemsize > np.iinfo(np.intp).max:
            raise ValueError(f"sizes={sizes} need {n} parameters, more than this machine can address")
        _check_init(init)       # before allocating anything
        self._setup(sizes, dt)
        self.reset_parameters(seed=seed, init=init)

    def _setup(self, sizes, dt):
        self.sizes = sizes
        self.dtype = dt
        n = sum(o * i + o for i, o in zip(sizes[:-1], sizes[1:]))
        self._flat = np.zeros(n, dt)
        self._gflat = np.zeros(n, dt)
        self._vflat = np.zeros(n, dt)
        self.weights, self.biases = self._views(self._flat)
        self._momentum_started = False
        self._ws_train = None
        self._local = threading.local()     # per-thread inference workspace
        self._train_lock = threading.Lock()

    # -- copies --
    def __getstate__(self):
        return {"sizes": self.sizes, "dtype": self.dtype.str, "params": self._flat,
                "velocity": self._vflat, "momentum_started": self._momentum_started}

    def __setstate__(self, state):
        self._setup(tuple(state["sizes"]), np.dtype(state["dtype"]))
        self._flat[...] = state["params"]
        self._vflat[...] = state["velocity"]
        self._momentum_started = bool(state["momentum_started"])

    # -- layout --
    def _views(self, flat):
        ws, bs, off = [], [], 0
        for i, o in zip(self.sizes[:-1], self.sizes[1:]):
            ws.append(flat[off:off + o * i].reshape(o, i))
            off += o * i
            bs.append(flat[off:off + o])
            off += o
        return tuple(ws), tuple(bs)

    @property
    def n_layers(self) -> int:
        """Number of Linear layers."""
        return len(self.sizes) - 1

    @property
    def n_features(self) -> int:
        """Input width, ``sizes[0]``."""
        return self.sizes[0]

    @property
    def n_classes(self) -> int:
        """Output width, ``sizes[-1]``."""
        return self.sizes[-1]

    def parameters(self) -> List[np.ndarray]:
        """[W0, b0, W1, b1, ...] (views), the order of ``nn.Sequential.parameters()``.

        Returns
        -------
        list of ndarray
            ``[W0, b0, W1, b1, ...]``: views of the model's parameters (writing to
            them changes the model).

        Examples
        --------
        >>> from fastlog.nn import MLP
        >>> [p.shape for p in MLP((4, 3, 2)).parameters()]
        [(3, 4), (3,), (2, 3), (2,)]
        """
        out = []
        for w, b in zip(self.weights, self.biases):
            out += [w, b]
        return out

    def reset_parameters(self, seed: Optional[int] = 0, init: str = "he") -> None:
        """Gaussian He/Xavier initialisation (see the class docstring); clears momentum.

        Parameters
        ----------
        seed : int or None, default 0
            Seed of the Gaussian initialisation.
        init : {'he', 'xavier'}
            As in the class docstring.

        Raises
        ------
        ValueError
            An unknown `init` (the parameters are left as they were).

        Examples
        --------
        >>> import numpy as np
        >>> from fastlog.nn import MLP
        >>> a, b = MLP((4, 3, 2), seed=1), MLP((4, 3, 2), seed=2)
        >>> b.reset_parameters(seed=1)
        >>> bool(np.array_equal(a.weights[0], b.weights[0]))
        True
        """
        _check_init(init)
        rng = np.random.default_rng(seed_param(seed))
        L = self.n_layers
        for l, (w, b) in enumerate(zip(self.weights, self.biases)):
            fan_out, fan_in = w.shape
            if init == "he" and l < L - 1:
                std = np.sqrt(2.0 / fan_in)
            else:
                std = np.sqrt(2.0 / (fan_in + fan_out))
            w[...] = rng.standard_normal(w.shape) * std
            b[...] = 0
        self.reset_optimizer()

    def reset_optimizer(self) -> None:
        """Forget the momentum buffers (the next momentum step starts afresh, like a new torch SGD).

        Examples
        --------
        >>> from fastlog.nn import MLP
        >>> MLP((4, 3, 2)).reset_optimizer()
        """
        self._vflat[...] = 0
        self._momentum_started = False

    def __repr__(self):
        return f"MLP(sizes={self.sizes}, dtype={self.dtype.name})"

    # -- workspaces --
    def _new_workspace(self, cap, train):
        s = self.sizes
        hidden = max(s[1:-1]) if len(s) > 2 else 1
        return core.MLPWorkspace(list(s), self._flat, self._gflat if train else None,
                                 self._vflat if train else None,
                                 np.empty(cap * sum(s[1:]), self.dtype),
                                 np.empty(cap * hidden, self.dtype),  # the compiled workspace checks its size
                                 np.empty(cap, np.float64), np.empty(max(s), np.float64), cap,
                                 np.empty(max(i * o for i, o in zip(s[:-1], s[1:])), self.dtype)
                                 if train else None)

    def _workspace(self, rows, train):
        """The training workspace (one per model; callers hold the training
        lock) or this thread's inference workspace, grown to `rows` rows."""
        ws = self._ws_train if train else getattr(self._local, "ws", None)
        if ws is not None and ws.cap >= rows:
            return ws
        ws = self._new_workspace(max(rows, 1), train)
        if train:
            self._ws_train = ws
        else:
            self._local.ws = ws
        return ws

    def workspace(self, rows: int, train: bool = True) -> Any:
        """The compiled workspace for batches of up to `rows` rows.

        What :func:`mlp_gemms_only` runs on: the model's training workspace,
        or (``train=False``) the calling thread's inference workspace.

        Parameters
        ----------
        rows : int
            The largest batch the workspace must hold (it grows, never shrinks).
        train : bool, default True
            The training workspace (True) or this thread's inference one.

        Returns
        -------
        MLPWorkspace
            The compiled workspace (an opaque object that :func:`mlp_gemms_only`
            takes).

        Raises
        ------
        ValueError
            A `rows` below 1.

        Examples
        --------
        >>> from fastlog.nn import MLP
        >>> MLP((4, 3, 2)).workspace(16).cap
        16
        """
        return self._workspace(positive_int(rows, "rows"), train)

    def _training(self, what):
        return _TrainingGuard(self._train_lock, what)

    # -- validation --
    def _x(self, x: Any, name: str = "x") -> np.ndarray:
        if (type(x) is np.ndarray and x.dtype == self.dtype and x.ndim == 2
                and x.shape[1] == self.sizes[0] and x.flags.c_contiguous and x.flags.aligned):
            return x
        if hasattr(x, "detach") and hasattr(x, "cpu"):
            x = x.detach().cpu().numpy()
        a = float_array(x, name, promote_int=True)
        if a.ndim != 2:
            raise ValueError(f"{name} must be 2-D (n_samples, {self.sizes[0]}), got shape {a.shape}")
        if a.shape[1] != self.sizes[0]:
            raise ValueError(f"{name} has {a.shape[1]} features per row, the model expects {self.sizes[0]}")
        return np.ascontiguousarray(a, dtype=self.dtype)

    def _y(self, y: Any, n: int, name: str = "y") -> np.ndarray:
        if type(y) is np.ndarray and y.dtype == np.int64 and y.ndim == 1 and y.flags.c_contiguous:
            t = y
        else:
            if hasattr(y, "detach") and hasattr(y, "cpu"):
                y = y.detach().cpu().numpy()
            t = np.asarray(y)
            if t.dtype.kind not in "iu":
                raise TypeError(f"{name} must hold integer class labels, got dtype {t.dtype}")
            if t.ndim != 1:
                raise ValueError(f"{name} must be 1-D, got shape {t.shape}")
            if t.dtype.kind == "u" and t.dtype.itemsize == 8 and t.size and t.max() > np.iinfo(np.int64).max:
                raise IndexError(f"{name} holds a label out of range [0, {self.n_classes})")
            t = np.ascontiguousarray(t, dtype=np.int64)
        if t.shape[0] != n:
            raise ValueError(f"{name} has {t.shape[0]} labels but x has {n} rows")
        return t

    def _check_labels(self, y, name="y"):
        if y.size and (y.min() < 0 or y.max() >= self.n_classes):
            bad = int(np.flatnonzero((y < 0) | (y >= self.n_classes))[0])
            raise IndexError(f"{name}[{bad}] = {y[bad]} is out of range for {self.n_classes} classes")

    def _raise_step(self, status, x, y):
        if status >= 0:
            raise IndexError(f"y[{status}] = {y[status]} is out of range for {self.n_classes} classes")
        self._raise_nonfinite(x)
        raise FloatingPointError("the loss is not finite (the parameters hold NaN/inf or the training "
                                 "diverged; try a lower learning rate); nothing was updated")

    @staticmethod
    def _raise_nonfinite(x, name="x"):
        bad = ~np.isfinite(x)
        if bad.any():
            r = int(np.argwhere(bad)[0][0])
            raise ValueError(f"{name} contains NaN or infinity (first in row {r})")

    # -- inference --
    def _infer(self, x, kind):
        x = self._x(x)
        n = x.shape[0]
        ws = self._workspace(min(max(n, 1), INFER_BLOCK), False)
        if kind == MLPOutput.LABELS:
            out, labels = None, np.empty(n, np.int64)
        else:
            out, labels = np.empty((n, self.n_classes), self.dtype), None
        with blas_pinned():
            ws.forward(x, kind, out, labels)
        if kind == MLPOutput.LABELS:
            if n and labels.min() < 0:
                self._raise_nonfinite(x)
                self._raise_nonfinite_params()
            return labels
        if np.isnan(out).any():
            self._raise_nonfinite(x)
            self._raise_nonfinite_params()
        return out

    def _raise_nonfinite_params(self):
        if not np.isfinite(self._flat).all():
            raise FloatingPointError("the model's parameters hold NaN or infinity")

    def forward(self, x: ArrayLike) -> np.ndarray:
        """Logits, shape (n, n_classes).  Also ``model(x)``.

        Parameters
        ----------
        x : array_like, shape (n, n_features)
            Finite inputs (float32/float64; other dtypes are converted).

        Returns
        -------
        ndarray, shape (n, n_classes), the model's dtype
            The logits.

        Raises
        ------
        ValueError
            An `x` with another number of features than the model's, or holding NaN
            or infinity.

        Examples
        --------
        >>> import numpy as np
        >>> from fastlog.nn import MLP
        >>> MLP((4, 3, 2)).forward(np.zeros((1, 4)))
        array([[0., 0.]], dtype=float32)
        """
        return self._infer(x, MLPOutput.LOGITS)

    __call__ = forward

    def predict_log_proba(self, x: ArrayLike) -> np.ndarray:
        """log_softmax of the logits (fastlog's stable row kernel), shape (n, n_classes).

        Parameters
        ----------
        x : array_like, shape (n, n_features)
            Finite inputs (float32/float64; other dtypes are converted).

        Returns
        -------
        ndarray, shape (n, n_classes)
            ``log_softmax`` of the logits.

        Raises
        ------
        ValueError
            An `x` with another number of features than the model's, or holding NaN
            or infinity.

        Examples
        --------
        >>> import numpy as np
        >>> from fastlog.nn import MLP
        >>> MLP((4, 3, 2)).predict_log_proba(np.zeros((1, 4))).round(4)
        array([[-0.6931, -0.6931]], dtype=float32)
        """
        return self._infer(x, MLPOutput.LOG_PROBA)

    def predict_proba(self, x: ArrayLike) -> np.ndarray:
        """softmax of the logits, shape (n, n_classes).

        Parameters
        ----------
        x : array_like, shape (n, n_features)
            Finite inputs (float32/float64; other dtypes are converted).

        Returns
        -------
        ndarray, shape (n, n_classes)
            ``softmax`` of the logits.

        Raises
        ------
        ValueError
            An `x` with another number of features than the model's, or holding NaN
            or infinity.

        Examples
        --------
        >>> import numpy as np
        >>> from fastlog.nn import MLP
        >>> MLP((4, 3, 2)).predict_proba(np.zeros((1, 4)))
        array([[0.5, 0.5]], dtype=float32)
        """
        return self._infer(x, MLPOutput.PROBA)

    def predict(self, x: ArrayLike) -> np.ndarray:
        """Predicted class (first maximum of the logits), int64 of shape (n,).

        Parameters
        ----------
        x : array_like, shape (n, n_features)
            Finite inputs (float32/float64; other dtypes are converted).

        Returns
        -------
        ndarray of int64, shape (n,)
            The class of the largest logit of each row.

        Raises
        ------
        ValueError
            An `x` with another number of features than the model's, or holding NaN
            or infinity.

        Examples
        --------
        >>> import numpy as np
        >>> from fastlog.nn import MLP
        >>> model = MLP((2, 2))
        >>> model.weights[0][...] = [[1, 0], [0, 1]]
        >>> model.predict(np.array([[1.0, 0.0], [0.0, 1.0]]))
        array([0, 1])
        """
        return self._infer(x, MLPOutput.LABELS)

    def evaluate(self, x: ArrayLike, y: ArrayLike) -> Tuple[float, float]:
        """(mean cross-entropy, accuracy) on (x, y).

        Parameters
        ----------
        x : array_like, shape (n, n_features)
            Finite inputs (float32/float64; other dtypes are converted).
        y : array_like of int, shape (n,)
            Class labels in ``[0, n_classes)``.

        Returns
        -------
        loss : float
            Mean cross-entropy over the rows.
        accuracy : float
            Fraction of the rows whose largest logit is the label.

        Raises
        ------
        ValueError
            An `x` with another number of features than the model's, or holding NaN
            or infinity.
        IndexError
            A label outside ``[0, n_classes)``.

        Examples
        --------
        >>> import numpy as np
        >>> from fastlog.nn import MLP
        >>> loss, acc = MLP((4, 3, 2)).evaluate(np.zeros((2, 4)), [0, 1])
        >>> round(loss, 4), acc
        (0.6931, 0.5)
        """
        x = self._x(x)
        y = self._y(y, x.shape[0])
        if x.shape[0] == 0:
            raise ValueError("x has no rows")
        self._check_labels(y)
        logp = self._infer(x, MLPOutput.LOG_PROBA)
        loss = -float(np.mean(logp[np.arange(x.shape[0]), y], dtype=np.float64))
        acc = float(np.mean(np.argmax(logp, axis=1) == y))
        return loss, acc

    # -- training --
    def _step_unlocked(self, x, y, mode, lr, momentum, dampening, weight_decay):
        """One compiled step; the caller holds the training lock."""
        x = self._x(x)
        n = x.shape[0]
        if n == 0:
            raise ValueError("x has no rows")
        y = self._y(y, n)
        ws = self._workspace(n, True)
        first = not self._momentum_started
        with blas_pinned():
            st, loss, hits = ws.step(x, y, mode, lr, momentum, dampening, weight_decay, first)
        if st != -1:
            self._raise_step(st, x, y)
        if mode == MLPMode.SGD and momentum != 0.0:
            self._momentum_started = True
        return loss, hits

    def loss_and_grad(self, x: ArrayLike, y: ArrayLike) -> Tuple[float, List[np.ndarray]]:
        """Mean cross-entropy over the batch and its gradients.

        Parameters
        ----------
        x : array_like, shape (n, n_features)
            Finite inputs (float32/float64; other dtypes are converted).
        y : array_like of int, shape (n,)
            Class labels in ``[0, n_classes)``.

        Returns
        -------
        loss : float
        grads : list of ndarray
            d(loss)/d(parameter) in the order of :meth:`parameters`
            ([dW0, db0, dW1, db1, ...]); fresh copies.

        Raises
        ------
        ValueError
            An `x` with another number of features than the model's, or holding NaN
            or infinity.
        IndexError
            A label outside ``[0, n_classes)``.

        Examples
        --------
        >>> import numpy as np
        >>> from fastlog.nn import MLP
        >>> loss, grads = MLP((4, 3, 2)).loss_and_grad(np.zeros((2, 4)), [0, 1])
        >>> round(loss, 4), [g.shape for g in grads]
        (0.6931, [(3, 4), (3,), (2, 3), (2,)])
        """
        x = self._x(x)
        with self._training("loss_and_grad"):   # the gradient buffer is shared: copy it under the lock
            loss, _ = self._step_unlocked(x, y, MLPMode.GRAD, 0.0, 0.0, 0.0, 0.0)
            gw, gb = self._views(self._gflat)
            out = []
            for w, b in zip(gw, gb):
                out += [w.copy(), b.copy()]
        return loss, out

    def train_step(self, x: ArrayLike, y: ArrayLike, lr: float = 0.01, *, momentum: float = 0.0,
                   weight_decay: float = 0.0, dampening: float = 0.0) -> float:
        """One SGD step on the batch (x, y); returns the batch's mean loss before the step.

        The update is ``torch.optim.SGD(lr, momentum, dampening, weight_decay)``'s:
        ``g = grad + weight_decay * p``; with momentum ``v = momentum * v +
        (1 - dampening) * g`` (``v = g`` on the first step) and ``p -= lr * v``,
        else ``p -= lr * g``.

        Parameters
        ----------
        x : array_like, shape (n, n_features)
            Finite inputs (float32/float64; other dtypes are converted).
        y : array_like of int, shape (n,)
            Class labels in ``[0, n_classes)``.
        lr : float >= 0, default 0.01
            Learning rate.
        momentum, weight_decay, dampening : float >= 0, keyword-only
            As ``torch.optim.SGD``'s.

        Returns
        -------
        float
            The mean cross-entropy of the batch before the update.

        Raises
        ------
        ValueError
            An `x` with another number of features than the model's, or holding NaN
            or infinity.
        IndexError
            A label outside ``[0, n_classes)``.
        ValueError
            A negative or non-finite `lr`, `momentum`, `weight_decay` or
            `dampening`.
        RuntimeError
            If another thread is training the same model.

        Examples
        --------
        >>> import numpy as np
        >>> from fastlog.nn import MLP
        >>> model = MLP((4, 3, 2))
        >>> x, y = np.ones((2, 4)), np.array([0, 0])
        >>> first = model.train_step(x, y, 0.5)
        >>> model.train_step(x, y, 0.5) < first
        True
        """
        lr = nonneg_float(lr, "lr")
        momentum = nonneg_float(momentum, "momentum")
        weight_decay = nonneg_float(weight_decay, "weight_decay")
        dampening = nonneg_float(dampening, "dampening")
        with self._training("train_step"):
            loss, _ = self._step_unlocked(x, y, MLPMode.SGD, lr, momentum, dampening, weight_decay)
        return loss

    def fit(self, X: ArrayLike, y: ArrayLike, *, epochs: int = 10, batch_size: int = 64, lr: float = 0.05,
            momentum: float = 0.9, weight_decay: float = 0.0, dampening: float = 0.0, shuffle: bool = True,
            seed: Optional[int] = 0, validation_data: Optional[Tuple[ArrayLike, ArrayLike]] = None,
            progress: Union[bool, str] = True, file: Optional[TextIO] = None,
            checkpoint_dir: Union[str, "os.PathLike[str]", None] = None,
            checkpoint_format: str = "json") -> Dict[str, List[float]]:
        """Mini-batch SGD over (X, y) for `epochs` epochs; see :func:`fastlog.nn.fit.fit_mlp`.

        Parameters
        ----------
        X, y, epochs, batch_size, lr, momentum, weight_decay, dampening, shuffle, seed, validation_data, progress, file, checkpoint_dir, checkpoint_format
            As in :func:`fastlog.nn.fit.fit_mlp`.

        Returns
        -------
        dict
            Lists per epoch: 'loss', 'accuracy', 'val_loss', 'val_accuracy'
            (with validation data), 'time'.

        Raises
        ------
        ValueError
            An `x` with another number of features than the model's, or holding NaN
            or infinity.
        IndexError
            A label outside ``[0, n_classes)``.
        ValueError
            `epochs` or `batch_size` below 1, a negative learning rate or momentum,
            an unknown `checkpoint_format`.
        RuntimeError
            If another thread is training the same model.

        Examples
        --------
        >>> import numpy as np
        >>> from fastlog.nn import MLP
        >>> X = np.eye(4, dtype=np.float32)
        >>> hist = MLP((4, 8, 4)).fit(X, np.arange(4), epochs=30, batch_size=4, lr=0.2, progress=False)
        >>> sorted(hist), hist["accuracy"][-1]
        (['accuracy', 'loss', 'time'], 1.0)
        """
        return fit_mlp(self, X, y, epochs=epochs, batch_size=batch_size, lr=lr, momentum=momentum,
                       weight_decay=weight_decay, dampening=dampening, shuffle=shuffle, seed=seed,
                       validation_data=validation_data, progress=progress, file=file,
                       checkpoint_dir=checkpoint_dir, checkpoint_format=checkpoint_format)

    # -- state --
    def _keys(self):
        return [(f"{2 * l}.weight", f"{2 * l}.bias") for l in range(self.n_layers)]

    def state_dict(self, tensors: bool = False) -> Dict[str, Any]:
        """Copies of the parameters keyed like ``nn.Sequential``'s state_dict.

        Keys "0.weight", "0.bias", "2.weight", ...; torch tensors if ``tensors``.

        Parameters
        ----------
        tensors : bool, default False
            Return ``torch.Tensor`` values (sharing the copies' memory) instead of arrays.

        Returns
        -------
        dict
            ``{"0.weight": ..., "0.bias": ..., "2.weight": ...}``: copies, as NumPy
            arrays or (``tensors=True``) torch tensors.

        Examples
        --------
        >>> from fastlog.nn import MLP
        >>> list(MLP((4, 3, 2)).state_dict())
        ['0.weight', '0.bias', '2.weight', '2.bias']
        """
        sd = {}
        for (kw, kb), w, b in zip(self._keys(), self.weights, self.biases):
            sd[kw], sd[kb] = w.copy(), b.copy()
        if tensors:
            import torch
            sd = {k: torch.from_numpy(v) for k, v in sd.items()}
        return sd

    def load_state_dict(self, state_dict: Mapping[str, Any]) -> "MLP":
        """Copy parameters from a state_dict (arrays or tensors) of the same sizes; clears momentum.

        Parameters
        ----------
        state_dict : mapping of str to ndarray or torch.Tensor
            Keys "0.weight", "0.bias", "2.weight", ... with the model's shapes.

        Returns
        -------
        MLP
            The model itself.

        Raises
        ------
        KeyError
            Keys that are not exactly the model's.
        ValueError
            Arrays of other shapes than the model's.

        Examples
        --------
        >>> import numpy as np
        >>> from fastlog.nn import MLP
        >>> a, b = MLP((4, 3, 2), seed=1), MLP((4, 3, 2), seed=2)
        >>> bool(np.array_equal(b.load_state_dict(a.state_dict()).weights[1], a.weights[1]))
        True
        """
        keys = self._keys()
        want = {k for pair in keys for k in pair}
        got = set(state_dict)
        if got != want:
            raise KeyError(f"state_dict keys {sorted(got)} do not match the model's {sorted(want)}")
        new = {}
        for (kw, kb), w, b in zip(keys, self.weights, self.biases):
            a, c = _to_numpy(state_dict[kw], kw), _to_numpy(state_dict[kb], kb)
            if a.shape != w.shape or c.shape != b.shape:
                raise ValueError(f"{kw}/{kb} have shapes {a.shape}/{c.shape}, expected {w.shape}/{b.shape}")
            new[kw], new[kb] = a, c
        for (kw, kb), w, b in zip(keys, self.weights, self.biases):
            w[...] = new[kw]
            b[...] = new[kb]
        self.reset_optimizer()
        return self

    @classmethod
    def from_state_dict(cls, state_dict: Mapping[str, Any], dtype: Optional[DTypeLike] = None) -> "MLP":
        """A model built from a state_dict of ``nn.Sequential(Linear, ReLU, ..., Linear)``.

        Arrays or tensors; keys "0.weight", "0.bias", "2.weight", ...  The
        dtype defaults to the first weight's (float32 unless it is float64).

        Parameters
        ----------
        state_dict : mapping of str to ndarray or torch.Tensor
            The weights and biases of ``nn.Sequential(Linear, ReLU, ..., Linear)``.
        dtype : float32 or float64, optional
            The model's dtype (default: from the first weight).

        Returns
        -------
        MLP
            A new model with those parameters (layer sizes read from their shapes).

        Raises
        ------
        KeyError
            Keys other than ``'<index>.weight'`` / ``'<index>.bias'``.
        ValueError
            Shapes that do not chain from layer to layer.

        Examples
        --------
        >>> from fastlog.nn import MLP
        >>> MLP.from_state_dict(MLP((5, 3, 2)).state_dict())
        MLP(sizes=(5, 3, 2), dtype=float32)
        """
        idx: Dict[int, set] = {}
        for k in state_dict:
            head, _, kind = str(k).rpartition(".")
            if kind not in ("weight", "bias") or not head.isdigit():
                raise KeyError(f"unexpected state_dict key {k!r} (expected '<index>.weight' / '<index>.bias')")
            idx.setdefault(int(head), set()).add(kind)
        order = sorted(idx)
        if not order or order != [2 * i for i in range(len(order))] or any(v != {"weight", "bias"}
                                                                            for v in idx.values()):
            raise KeyError("state_dict must hold '<i>.weight' and '<i>.bias' for i = 0, 2, 4, ... "
                           "(nn.Sequential of Linear and ReLU)")
        ws = [_to_numpy(state_dict[f"{i}.weight"], f"{i}.weight") for i in order]
        for i, w in zip(order, ws):
            if w.ndim != 2:
                raise ValueError(f"{i}.weight must be 2-D, got shape {w.shape}")
        sizes = [ws[0].shape[1]] + [w.shape[0] for w in ws]
        for l in range(1, len(ws)):
            if ws[l].shape[1] != sizes[l]:
                raise ValueError(f"{order[l]}.weight has {ws[l].shape[1]} inputs but the previous layer "
                                 f"has {sizes[l]} outputs")
        if dtype is None:
            dtype = np.float64 if ws[0].dtype == np.float64 else np.float32
        model = cls(sizes, dtype=dtype, seed=0)
        return model.load_state_dict(state_dict)

    def to_torch(self) -> Any:
        """An equivalent ``torch.nn.Sequential`` (float32/float64 like the model).

        Returns
        -------
        torch.nn.Sequential
            Linear / ReLU layers holding copies of the parameters.

        Raises
        ------
        ModuleNotFoundError
            Without PyTorch.

        Examples
        --------
        >>> from fastlog.nn import MLP
        >>> MLP((4, 3, 2)).to_torch()
        Sequential(
          (0): Linear(in_features=4, out_features=3, bias=True)
          (1): ReLU()
          (2): Linear(in_features=3, out_features=2, bias=True)
        )
        """
        import torch
        layers: List[Any] = []
        for l, (i, o) in enumerate(zip(self.sizes[:-1], self.sizes[1:])):
            layers.append(torch.nn.Linear(i, o, dtype=torch.float64 if self.dtype == np.float64
                                          else torch.float32))
            if l < self.n_layers - 1:
                layers.append(torch.nn.ReLU())
        net = torch.nn.Sequential(*layers)
        net.load_state_dict(self.state_dict(tensors=True))
        return net

    def save(self, path: Union[str, "os.PathLike[str]", BinaryIO], format: Optional[str] = None) -> None:
        """Write the parameters to `path`: JSON (``.json``) or npz (anything else).

        Parameters
        ----------
        path : str, os.PathLike or binary file object
        format : {None, 'json', 'npz'}
            None: from the suffix (``.json`` -> JSON, otherwise npz; a file
            object gets npz).

        Raises
        ------
        ValueError
            A `format` other than 'json' or 'npz'.
        OSError
            If the file cannot be written (e.g. ``FileNotFoundError`` for a missing
            directory); an existing file is replaced only once the new one is
            complete.

        Notes
        -----
        See :func:`fastlog.nn.io.save_mlp`.  Both formats round-trip the
        parameters bit for bit.

        Examples
        --------
        >>> import os, tempfile
        >>> from fastlog.nn import MLP
        >>> path = os.path.join(tempfile.mkdtemp(), "model.json")
        >>> MLP((4, 3, 2)).save(path)
        >>> MLP.load(path)
        MLP(sizes=(4, 3, 2), dtype=float32)
        """
        _io.save_mlp(self, path, format=format)

    @classmethod
    def load(cls, path: Union[str, "os.PathLike[str]", BinaryIO], format: Optional[str] = None,
             dtype: Optional[DTypeLike] = None) -> "MLP":
        """Read a model written by :meth:`save` (or any file in the same formats).

        Parameters
        ----------
        path : str, os.PathLike or binary file object
        format : {None, 'json', 'npz'}
            None: from the suffix (``.json`` -> JSON, otherwise npz).
        dtype : float32 or float64, optional
            JSON files hold no dtype: float32 unless given; npz files keep
            theirs unless given.

        Returns
        -------
        MLP
            The model in the file.

        Raises
        ------
        ValueError, TypeError
            For anything but a well-formed model file, naming the key at
            fault; nothing is allocated beyond the file's own size before the
            whole file is checked.  See :func:`fastlog.nn.load_mlp`.

        Examples
        --------
        >>> import os, tempfile
        >>> import numpy as np
        >>> from fastlog.nn import MLP
        >>> model = MLP((4, 3, 2), dtype=np.float64)
        >>> path = os.path.join(tempfile.mkdtemp(), "model.npz")
        >>> model.save(path)
        >>> back = MLP.load(path)
        >>> back.dtype, bool(np.array_equal(back.weights[0], model.weights[0]))
        (dtype('float64'), True)
        """
        return load_mlp(path, format=format, dtype=dtype, cls=cls)


def load_mlp(path: Union[str, "os.PathLike[str]", BinaryIO], format: Optional[str] = None,
             dtype: Optional[DTypeLike] = None, cls: type = MLP) -> MLP:
    """Read an MLP file (JSON or npz, see the module docstring), validating it fully.

    Parameters
    ----------
    path : str, os.PathLike or binary file object
    format : {None, 'json', 'npz'}
        None: JSON if the path ends in ``.json``, otherwise npz.
    dtype : float32 or float64, optional
        Default: float32 for JSON, the file's for npz.
    cls : type, optional
        The class to build (default :class:`fastlog.nn.MLP`).

    Returns
    -------
    MLP

    Raises
    ------
    ValueError
        Malformed file, wrong or missing keys, shapes that do not chain,
        NaN/infinity or values out of the dtype's range.
    TypeError
        Values that are not numbers (strings, booleans, null, objects),
        layer sizes that are not integers.

    Examples
    --------
    >>> import io, json
    >>> from fastlog.nn import load_mlp
    >>> text = json.dumps({"param_0": [[1.0, 2.0]], "param_1": [0.5]})
    >>> load_mlp(io.BytesIO(text.encode()), format="json").weights[0]
    array([[1., 2.]], dtype=float32)
    >>> load_mlp(io.BytesIO(b'{"param_0": [[1.0, "2"]], "param_1": [0.5]}'), format="json")
    Traceback (most recent call last):
    ...
    TypeError: param_0[0][1] is str '2', expected a number
    """
    sizes, arrays, dtype = _io.read_mlp_params(path, format, dtype)
    model = cls(sizes, dtype=dtype, seed=0)
    for p, a in zip(model.parameters(), arrays):
        p[...] = a
    model.reset_optimizer()
    return model
