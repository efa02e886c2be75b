"""Binary logistic regression: :class:`LogisticRegression` (one logit, BCE with logits)."""
import os
import time
from typing import Any, BinaryIO, Dict, List, Optional, TextIO, Tuple, Union

import numpy as np

from .._losses import binary_cross_entropy_with_logits_and_grad
from .._typing import ArrayLike, DTypeLike
from .._validation import nonneg_float, positive_int, seed_param
from . import io as _io
from ._progress import Progress
from .functional import _float2d, linear_backward, linear_forward

__all__ = ["LogisticRegression", "load_logreg"]

_FLOATS = (np.dtype(np.float32), np.dtype(np.float64))


class LogisticRegression:
    """Binary logistic regression trained with mini-batch SGD on mean BCE with logits.

    The loss and its gradient come from
    :func:`fastlog.binary_cross_entropy_with_logits_and_grad`.

    Parameters
    ----------
    n_features : int
    dtype : float32 or float64
    seed : int
        Seed of the Xavier-normal initial weights (the bias starts at 0).
    init : {'xavier', 'zeros'}
        'zeros' starts from all-zero weights (the loss is convex, so this
        loses nothing, and inputs that are always 0, like the border pixels
        of MNIST, keep weight 0).

    Attributes
    ----------
    weight : ndarray, shape (1, n_features)
        Like ``nn.Linear(n_features, 1).weight``.
    bias : ndarray, shape (1,)

    Raises
    ------
    ValueError
        An `n_features` below 1 or an unknown `init`.
    TypeError
        A `dtype` other than float32 / float64.

    Notes
    -----
    Inference (``decision_function``, ``predict``, ``predict_proba``,
    ``evaluate``) is thread-safe; training one model from two threads at once
    is not (give each thread its own model).

    Examples
    --------
    >>> import numpy as np
    >>> from fastlog.nn import LogisticRegression
    >>> rng = np.random.default_rng(0)
    >>> X = rng.standard_normal((300, 2))
    >>> y = (X[:, 0] + X[:, 1] > 0).astype(np.int64)
    >>> model = LogisticRegression(2, dtype=np.float64)
    >>> hist = model.fit(X, y, epochs=5, lr=0.5, progress=False)
    >>> model.evaluate(X, y)[1] > 0.95
    True
    """

    def __init__(self, n_features: int, *, dtype: DTypeLike = np.float32, seed: Optional[int] = 0,
                 init: str = "xavier") -> None:
        n_features = positive_int(n_features, "n_features")
        #: The training-file fields of a model read by :meth:`load` (else None).
        self.info: Optional[Dict[str, Any]] = None
        if init not in ("xavier", "zeros"):
            raise ValueError(f"init must be 'xavier' or 'zeros', got {init!r}")
        dt = np.dtype(dtype)
        if dt not in _FLOATS:
            raise TypeError(f"dtype must be float32 or float64, got {dt}")
        self.dtype = dt
        rng = np.random.default_rng(seed_param(seed))
        std = np.sqrt(2.0 / (n_features + 1))
        self.weight = (rng.standard_normal((1, n_features)) * std).astype(dt)
        if init == "zeros":
            self.weight[...] = 0
        self.bias = np.zeros(1, dt)

    def __repr__(self):
        return f"LogisticRegression(n_features={self.weight.shape[1]}, dtype={self.dtype.name})"

    def _x(self, x: Any) -> np.ndarray:
        a = _float2d(x, "x")
        if a.shape[1] != self.weight.shape[1]:
            raise ValueError(f"x has {a.shape[1]} features per row, the model expects {self.weight.shape[1]}")
        return np.ascontiguousarray(a, dtype=self.dtype)

    def _y(self, y: Any, n: int) -> np.ndarray:
        t = np.asarray(y)
        if t.shape != (n,):
            raise ValueError(f"y has shape {t.shape}, expected ({n},)")
        if t.dtype.kind not in "biuf":
            raise TypeError(f"y must hold 0/1 labels, got dtype {t.dtype}")
        t = t.astype(self.dtype)
        if not np.all((t == 0) | (t == 1)):
            raise ValueError("y must hold only 0 and 1")
        return t

    def decision_function(self, x: ArrayLike) -> np.ndarray:
        """The logits ``x @ weight.T + bias``, shape (n,).

        Parameters
        ----------
        x : array_like, shape (n, n_features)
            Finite inputs.

        Returns
        -------
        ndarray, shape (n,)
            The logit ``x @ weight.T + bias`` of each row.

        Raises
        ------
        ValueError
            An `x` with another number of features than the model's.

        Examples
        --------
        >>> import numpy as np
        >>> from fastlog.nn import LogisticRegression
        >>> m = LogisticRegression(2)
        >>> m.weight[...] = [[1.0, -2.0]]
        >>> m.decision_function(np.array([[1.0, 1.0]]))
        array([-1.], dtype=float32)
        """
        return linear_forward(self._x(x), self.weight, self.bias)[:, 0]

    def predict_proba(self, x: ArrayLike) -> np.ndarray:
        """P(y = 1), shape (n,).

        Parameters
        ----------
        x : array_like, shape (n, n_features)
            Finite inputs.

        Returns
        -------
        ndarray, shape (n,)
            The probability of class 1 (the sigmoid of the logit).

        Raises
        ------
        ValueError
            An `x` with another number of features than the model's.

        Examples
        --------
        >>> import numpy as np
        >>> from fastlog.nn import LogisticRegression
        >>> LogisticRegression(2).predict_proba(np.zeros((1, 2)))
        array([0.5], dtype=float32)
        """
        z = self.decision_function(x).astype(np.float64)
        return (0.5 * (1.0 + np.tanh(0.5 * z))).astype(self.dtype)

    def predict(self, x: ArrayLike) -> np.ndarray:
        """1 where the logit is > 0, else 0 (int64, shape (n,)).

        Parameters
        ----------
        x : array_like, shape (n, n_features)
            Finite inputs.

        Returns
        -------
        ndarray of int64, shape (n,)
            1 where the logit is positive, else 0.

        Raises
        ------
        ValueError
            An `x` with another number of features than the model's.

        Examples
        --------
        >>> import numpy as np
        >>> from fastlog.nn import LogisticRegression
        >>> m = LogisticRegression(1)
        >>> m.weight[...] = 1.0
        >>> m.predict(np.array([[-1.0], [0.0], [2.0]]))
        array([0, 0, 1])
        """
        return (self.decision_function(x) > 0).astype(np.int64)

    def loss_and_grad(self, x: ArrayLike, y: ArrayLike) -> Tuple[float, np.ndarray, np.ndarray]:
        """(mean BCE, dW, db) on the batch.

        Parameters
        ----------
        x : array_like, shape (n, n_features)
            Finite inputs.
        y : array_like of 0/1, shape (n,)
            Binary labels.

        Returns
        -------
        loss : float
            Mean binary cross-entropy with logits of the batch.
        grad_weight : ndarray, shape (1, n_features)
        grad_bias : ndarray, shape (1,)

        Raises
        ------
        ValueError
            An `x` with another number of features than the model's, or labels other
            than 0 and 1.

        Examples
        --------
        >>> import numpy as np
        >>> from fastlog.nn import LogisticRegression
        >>> loss, gw, gb = LogisticRegression(2).loss_and_grad(np.zeros((2, 2)), [0, 1])
        >>> round(loss, 4), gw.shape, gb
        (0.6931, (1, 2), array([0.], dtype=float32))
        """
        x = self._x(x)
        y = self._y(y, x.shape[0])
        z = linear_forward(x, self.weight, self.bias)
        loss, g = binary_cross_entropy_with_logits_and_grad(z[:, 0], y)
        _, gw, gb = linear_backward(g[:, None], x, self.weight, input_grad=False)
        assert gb is not None   # (bias_grad is on)
        return float(loss), gw, gb

    def train_step(self, x: ArrayLike, y: ArrayLike, lr: float = 0.1) -> float:
        """One SGD step; returns the batch's mean loss before it.

        Parameters
        ----------
        x : array_like, shape (n, n_features)
            Finite inputs.
        y : array_like of 0/1, shape (n,)
            Binary labels.
        lr : float, default 0.1
            Learning rate.

        Returns
        -------
        float
            The mean loss of the batch before the update.

        Raises
        ------
        ValueError
            An `x` with another number of features than the model's, or labels other
            than 0 and 1.
        RuntimeError
            If another thread is training the same model.

        Examples
        --------
        >>> import numpy as np
        >>> from fastlog.nn import LogisticRegression
        >>> m = LogisticRegression(2)
        >>> first = m.train_step(np.ones((2, 2)), [1, 1], 0.5)
        >>> m.train_step(np.ones((2, 2)), [1, 1], 0.5) < first
        True
        """
        rate = self.dtype.type(nonneg_float(lr, "lr"))
        loss, gw, gb = self.loss_and_grad(x, y)
        self.weight -= rate * gw
        self.bias -= rate * gb
        return loss

    def fit(self, X: ArrayLike, y: ArrayLike, *, epochs: int = 10, batch_size: int = 64, lr: float = 0.1,
            seed: Optional[int] = 0, progress: Union[bool, str] = True, file: Optional[TextIO] = None,
            validation_data: Optional[Tuple[ArrayLike, ArrayLike]] = None) -> Dict[str, List[float]]:
        """Mini-batch SGD for `epochs` epochs (rows shuffled each epoch).

        Parameters
        ----------
        X : array_like, shape (n, n_features)
            Finite inputs.
        y : array_like of 0/1, shape (n,)
            Binary labels.
        epochs, batch_size : int
            Number of passes, rows per SGD step (the last batch may be smaller).
        lr : float, default 0.1
            Learning rate.
        seed : int or None, default 0
            Seed of the row shuffling.
        progress : bool or "plain"
            As in :func:`fastlog.nn.fit.fit_mlp`.
        file : file-like, optional
            Where the plain progress lines go (default ``sys.stdout``).
        validation_data : (X_val, y_val), optional
            Evaluated after every epoch.

        Returns
        -------
        dict
            Lists per epoch: 'loss', 'accuracy' (on the whole training set
            after the epoch), 'val_loss', 'val_accuracy' (with
            ``validation_data=(X_val, y_val)``), 'time'.

        Raises
        ------
        ValueError
            An `x` with another number of features than the model's, or labels other
            than 0 and 1.
        ValueError
            `epochs` or `batch_size` below 1, or a negative learning rate.
        RuntimeError
            If another thread is training the same model.

        Examples
        --------
        >>> import numpy as np
        >>> from fastlog.nn import LogisticRegression
        >>> X = np.array([[0.0], [1.0], [2.0], [3.0]])
        >>> hist = LogisticRegression(1).fit(X, [0, 0, 1, 1], epochs=3, progress=False)
        >>> sorted(hist), len(hist["loss"])
        (['accuracy', 'loss', 'time'], 3)
        """
        X = self._x(X)
        y = self._y(y, X.shape[0])
        epochs = positive_int(epochs, "epochs")
        bs = positive_int(batch_size, "batch_size")
        lr = nonneg_float(lr, "lr")
        if validation_data is not None:
            Xv = self._x(validation_data[0])
            yv = self._y(validation_data[1], Xv.shape[0])
        rng = np.random.default_rng(seed_param(seed))
        n = X.shape[0]
        hist: Dict[str, List[float]] = {"loss": [], "accuracy": [], "time": []}
        if validation_data is not None:
            hist["val_loss"], hist["val_accuracy"] = [], []
        bar = Progress(epochs, progress, file)
        try:
            for ep in range(1, epochs + 1):
                perm = rng.permutation(n)
                t0 = time.perf_counter()
                total = 0.0
                for i in range(0, n, bs):
                    idx = perm[i:i + bs]
                    total += self.train_step(X[idx], y[idx], lr) * len(idx)
                dt = time.perf_counter() - t0
                acc = float(np.mean(self.predict(X) == y))
                hist["loss"].append(total / n)
                hist["accuracy"].append(acc)
                hist["time"].append(dt)
                stats = {"loss": total / n, "acc": acc}
                if validation_data is not None:
                    vl, va = self.evaluate(Xv, yv)
                    hist["val_loss"].append(vl)
                    hist["val_accuracy"].append(va)
                    stats["val_acc"] = va
                stats["s"] = dt
                bar.update(ep, epochs, stats)
        finally:
            bar.close()
        return hist

    def evaluate(self, x: ArrayLike, y: ArrayLike) -> Tuple[float, float]:
        """(mean BCE, accuracy).

        Parameters
        ----------
        x : array_like, shape (n, n_features)
            Finite inputs.
        y : array_like of 0/1, shape (n,)
            Binary labels.

        Returns
        -------
        loss : float
            Mean binary cross-entropy.
        accuracy : float
            Fraction of the rows predicted right.

        Raises
        ------
        ValueError
            An `x` with another number of features than the model's, or labels other
            than 0 and 1.

        Examples
        --------
        >>> import numpy as np
        >>> from fastlog.nn import LogisticRegression
        >>> loss, acc = LogisticRegression(2).evaluate(np.zeros((2, 2)), [0, 1])
        >>> round(loss, 4), acc
        (0.6931, 0.5)
        """
        x = self._x(x)
        y = self._y(y, x.shape[0])
        z = linear_forward(x, self.weight, self.bias)[:, 0]
        loss, _ = binary_cross_entropy_with_logits_and_grad(z, y)
        return float(loss), float(np.mean((z > 0) == (y == 1)))

    def save(self, path: Union[str, "os.PathLike[str]"], *, final_accuracy: float, training_samples: int,
             learning_rate: float, data_type: str = "real_mnist", image_shape: Tuple[int, int] = (28, 28)) -> None:
        """Write the perceptron JSON format; see :func:`fastlog.nn.io.save_logreg`.

        Parameters
        ----------
        path : str or os.PathLike
            The JSON file to write.
        final_accuracy, training_samples, learning_rate, data_type, image_shape
            As in :func:`fastlog.nn.io.save_logreg`.

        Raises
        ------
        ValueError
            A `final_accuracy` outside [0, 1], or an `image_shape` that does not
            hold the weights.
        OSError
            If the file cannot be written.

        Examples
        --------
        >>> import os, tempfile
        >>> from fastlog.nn import LogisticRegression
        >>> path = os.path.join(tempfile.mkdtemp(), "p.json")
        >>> LogisticRegression(4).save(path, final_accuracy=1.0, training_samples=4, learning_rate=0.1,
        ...                            image_shape=(2, 2))
        >>> LogisticRegression.load(path)
        LogisticRegression(n_features=4, dtype=float32)
        """
        _io.save_logreg(self, path, final_accuracy=final_accuracy, training_samples=training_samples,
                    learning_rate=learning_rate, data_type=data_type, image_shape=image_shape)

    @classmethod
    def load(cls, path: Union[str, "os.PathLike[str]", BinaryIO], dtype: DTypeLike = np.float32) -> "LogisticRegression":
        """Read a perceptron JSON file (validated); the file's other fields land in ``model.info``.

        Parameters
        ----------
        path : str or os.PathLike
            A file written by :meth:`save` (see :func:`fastlog.nn.load_logreg`).
        dtype : float32 or float64, default float32
            The model's dtype.

        Returns
        -------
        LogisticRegression
            The model in the file.

        Raises
        ------
        ValueError
            A file that is not in the perceptron format (missing or extra keys,
            weights of the wrong shape, non-finite values).
        OSError
            If the file cannot be read.

        Examples
        --------
        >>> import os, tempfile
        >>> import numpy as np
        >>> from fastlog.nn import LogisticRegression
        >>> path = os.path.join(tempfile.mkdtemp(), "p.json")
        >>> LogisticRegression(4).save(path, final_accuracy=0.75, training_samples=8, learning_rate=0.1,
        ...                            image_shape=(2, 2))
        >>> model = LogisticRegression.load(path, dtype=np.float64)
        >>> model, model.info["final_accuracy"]
        (LogisticRegression(n_features=4, dtype=float64), 75.0)
        """
        model, info = load_logreg(path, dtype=dtype, cls=cls)
        model.info = info
        return model


def load_logreg(path: Union[str, "os.PathLike[str]", BinaryIO], dtype: DTypeLike = np.float32,
                cls: type = LogisticRegression) -> Tuple[LogisticRegression, Dict[str, Any]]:
    """Read a perceptron JSON file; returns ``(model, info)``.

    Parameters
    ----------
    path : str, os.PathLike or binary file object
    dtype : float32 or float64
    cls : type, default LogisticRegression
        The class to build.

    Returns
    -------
    model : LogisticRegression
        With ``n_features = rows * cols`` of the weight grid.
    info : dict
        final_accuracy (percent), training_samples, data_type, learning_rate.

    Raises
    ------
    ValueError
        A file that is not in the perceptron format (missing or extra keys,
        weights of the wrong shape, non-finite values).
    OSError
        If the file cannot be read.

    Examples
    --------
    >>> import io, json
    >>> from fastlog.nn import load_logreg
    >>> d = {"weights": [[1.0, -1.0]], "bias": 0.25, "final_accuracy": 90.0,
    ...      "training_samples": 2, "data_type": "real_mnist", "learning_rate": 0.1}
    >>> model, info = load_logreg(io.BytesIO(json.dumps(d).encode()))
    >>> model.weight, info["final_accuracy"]
    (array([[ 1., -1.]], dtype=float32), 90.0)
    """
    w, b, info = _io.read_logreg_params(path, dtype)
    model = cls(w.shape[1], dtype=w.dtype)
    model.weight[...] = w
    model.bias[...] = b
    return model, info
