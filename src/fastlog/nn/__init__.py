"""A small multi-layer perceptron trained with SGD, every step in compiled code.

Building blocks (for people writing their own backprop), all on NumPy arrays
in float32 or float64:

* :func:`linear_forward` -- ``act(x @ weight.T + bias)``, weight laid out like
  ``torch.nn.Linear`` (out_features, in_features); the bias add and the
  optional ReLU are one pass over the GEMM's output.
* :func:`linear_backward` -- the gradients of that layer; with ``relu_output``
  the ReLU mask is applied in the same pass as the bias-gradient sum.
* :func:`relu`, :func:`relu_backward`.

The model, :class:`MLP` (default 784-128-64-10): Linear -> ReLU -> ... ->
Linear, trained on the mean cross-entropy of the logits.  One call of
:meth:`MLP.train_step` runs the forward pass, the fused
cross-entropy + gradient kernel, the backward pass and the SGD update
(optionally with momentum and weight decay, PyTorch's ``torch.optim.SGD``
rule) inside one nogil Cython function on preallocated buffers: no Python
loop over layers and no allocation per step.  The matrix products are BLAS
calls (SciPy's ``cython_blas``); without momentum the SGD update is folded into
the weight-gradient GEMM itself (``alpha = -lr``, ``beta = 1 - lr*wd``).

Threads: :func:`fastlog.set_num_threads` governs everything.  Each GEMM is
cut into a fixed number of blocks that depends only on its shape, and the
blocks run on fastlog's OpenMP threads, each as a single-threaded BLAS call;
so results are bit-identical for any thread count (OpenBLAS's own threading
is not: its split of ``x @ W.T`` changes the rounding).  SciPy's OpenBLAS has
its own thread pool; fastlog's MLP calls set it to 1 thread through
``threadpoolctl`` when that is installed, and leave it there (restoring it
after every call would wake its threads, which then spin and steal cores from
the next step).  This affects only SciPy's BLAS (``scipy.linalg``), not
NumPy's; use ``threadpoolctl.threadpool_limits`` to change it for your own
SciPy calls.  Without threadpoolctl, set ``OPENBLAS_NUM_THREADS=1`` (results
are deterministic only with threadpoolctl or that setting).

:class:`LogisticRegression` is the binary counterpart (one logit, BCE with
logits through :func:`fastlog.binary_cross_entropy_with_logits_and_grad`).
"""
import operator
import os
import sys
import time

import numpy as np

from .._dispatch import core
from .._losses import binary_cross_entropy_with_logits_and_grad
from .._validation import check_out, float_array, positive_int

__all__ = ["MLP", "LogisticRegression", "linear_forward", "linear_backward", "relu", "relu_backward",
           "mlp_gemms_only"]

_FLOATS = (np.dtype(np.float32), np.dtype(np.float64))
# Rows per block in inference (activations of a block stay in cache).
INFER_BLOCK = 4096


# ------------------------------------------------------------ BLAS threads --
class _BlasPool:
    """SciPy's BLAS thread pool (the one scipy.linalg.cython_blas calls), via threadpoolctl."""

    def __init__(self):
        self._ctl = None
        self._ready = False

    def _find(self):
        self._ready = True
        try:
            import scipy.linalg.cython_blas  # noqa: F401  (make sure SciPy's BLAS is loaded)
            from threadpoolctl import ThreadpoolController
        except ImportError:
            return
        try:
            libs = [c for c in ThreadpoolController().lib_controllers if c.user_api == "blas"]
        except Exception:  # pragma: no cover - threadpoolctl could not inspect the process
            return
        # Prefer the BLAS shipped with SciPy; otherwise every BLAS except NumPy's own copy.
        scipy_libs = [c for c in libs if "scipy.libs" in c.filepath or "scipy/.dylibs" in c.filepath]
        if not scipy_libs:
            scipy_libs = [c for c in libs if "numpy.libs" not in c.filepath and "numpy/.dylibs" not in c.filepath]
        self._ctl = scipy_libs or None

    def enter(self):
        """Make sure the pool has 1 thread (fastlog runs the BLAS calls on its
        own threads).  The setting is left in place afterwards: raising an
        OpenBLAS pool's size again wakes its threads, which then spin for a
        while and steal cores from the next step (measured: a 0.3 ms step
        became several ms on 2 cores)."""
        if not self._ready:
            self._find()
        if self._ctl is None:
            return None
        for c in self._ctl:
            if c.get_num_threads() != 1:
                c.set_num_threads(1)
        return None

    def exit(self, old):
        pass


from .._threads import blas_pool as _blas  # noqa: E402  (scoped: restores the user's BLAS threads)


# ---------------------------------------------------------- building blocks --
def _float2d(a, name):
    a = float_array(a, name, promote_int=True)
    if a.ndim != 2:
        raise ValueError(f"{name} must be 2-D, got shape {a.shape}")
    return a


def _common(dtypes):
    return np.dtype(np.float64) if any(d == np.float64 for d in dtypes) else np.dtype(np.float32)


def _check_no_overlap(out, name, *arrays):
    for a in arrays:
        if a is not None and np.may_share_memory(out, a):
            raise ValueError(f"{name} must not overlap the inputs")


def linear_forward(x, weight, bias=None, *, relu=False, out=None):
    """``y = x @ weight.T + bias``, optionally followed by ReLU, like ``torch.nn.Linear``.

    Parameters
    ----------
    x : array_like, shape (n, in_features)
    weight : array_like, shape (out_features, in_features)
    bias : array_like, shape (out_features,), optional
    relu : bool
        Apply ``max(y, 0)`` in the same pass as the bias add (NaN propagates).
    out : ndarray, shape (n, out_features), optional
        C-contiguous output of the result dtype; must not overlap the inputs.

    Returns
    -------
    ndarray, shape (n, out_features)
        In float64 if any input is float64, else float32 (integers count as float64).

    Notes
    -----
    The product is one BLAS GEMM (SciPy's ``cython_blas``); the bias and the
    ReLU are an epilogue over its output.
    """
    x = _float2d(x, "x")
    w = _float2d(weight, "weight")
    b = None if bias is None else float_array(bias, "bias")
    dt = _common([x.dtype, w.dtype] + ([] if b is None else [b.dtype]))
    if w.shape[1] != x.shape[1]:
        raise ValueError(f"x has {x.shape[1]} features but weight has shape {w.shape} "
                         f"(expected (out_features, {x.shape[1]}))")
    if w.shape[1] == 0:
        raise ValueError("in_features must be >= 1")
    if b is not None and b.shape != (w.shape[0],):
        raise ValueError(f"bias must have shape ({w.shape[0]},), got {b.shape}")
    shape = (x.shape[0], w.shape[0])
    if out is None:
        out = np.empty(shape, dt)
    else:
        check_out(out, shape, dt)
        if not out.flags.c_contiguous:
            raise ValueError("out must be C-contiguous")
        _check_no_overlap(out, "out", x, w, b)
    x = np.ascontiguousarray(x, dtype=dt)
    w = np.ascontiguousarray(w, dtype=dt)
    if b is not None:
        b = np.ascontiguousarray(b, dtype=dt)
    old = _blas.enter()
    try:
        core.linear_fwd(x, w, b, out, bool(relu))
    finally:
        _blas.exit(old)
    return out


def linear_backward(grad_output, x, weight, *, relu_output=None, input_grad=True, bias_grad=True):
    """Gradients of :func:`linear_forward` with respect to x, weight and bias.

    Parameters
    ----------
    grad_output : array_like, shape (n, out_features)
        dloss/dy, where y is the layer's output (after the ReLU if it has one).
    x : array_like, shape (n, in_features)
        The layer's input.
    weight : array_like, shape (out_features, in_features)
    relu_output : array_like, shape (n, out_features), optional
        The output of ``linear_forward(..., relu=True)``.  When given, the
        ReLU backward mask ``relu_output > 0`` is applied to ``grad_output``
        in the same pass that sums the bias gradient.
    input_grad, bias_grad : bool
        Whether to compute dloss/dx and dloss/dbias (None is returned if not).

    Returns
    -------
    grad_input : ndarray (n, in_features) or None
    grad_weight : ndarray (out_features, in_features)
    grad_bias : ndarray (out_features,) or None
        The bias gradient is summed over rows in float64, then rounded.

    Inputs are never modified.
    """
    g = _float2d(grad_output, "grad_output")
    x = _float2d(x, "x")
    w = _float2d(weight, "weight")
    y = None if relu_output is None else _float2d(relu_output, "relu_output")
    dt = _common([g.dtype, x.dtype, w.dtype] + ([] if y is None else [y.dtype]))
    n_out, n_in = w.shape
    if x.shape[1] != n_in:
        raise ValueError(f"x has {x.shape[1]} features but weight has shape {w.shape}")
    if n_in == 0 or n_out == 0:
        raise ValueError(f"weight must have non-zero dimensions, got shape {w.shape}")
    if g.shape != (x.shape[0], n_out):
        raise ValueError(f"grad_output has shape {g.shape}, expected {(x.shape[0], n_out)}")
    if y is not None and y.shape != g.shape:
        raise ValueError(f"relu_output has shape {y.shape}, expected {g.shape}")
    g = np.ascontiguousarray(g, dtype=dt)
    x = np.ascontiguousarray(x, dtype=dt)
    w = np.ascontiguousarray(w, dtype=dt)
    if y is not None:
        y = np.ascontiguousarray(y, dtype=dt)
    gx = np.empty(x.shape, dt) if input_grad else None
    gw = np.empty(w.shape, dt)
    gb = np.empty(n_out, dt) if bias_grad else None
    scratch = np.empty(g.shape, dt) if y is not None else None
    acc = np.empty(n_out, np.float64)
    old = _blas.enter()
    try:
        core.linear_bwd(g, x, w, y, gx, gw, gb, scratch, acc)
    finally:
        _blas.exit(old)
    return gx, gw, gb


def relu(x, *, out=None):
    """``max(x, 0)`` elementwise (NaN propagates, as in ``torch.relu``); out may be x."""
    a = float_array(x, "x", promote_int=True)
    src = np.ascontiguousarray(a)
    if out is None:
        out = np.empty(a.shape, a.dtype)
    else:
        check_out(out, a.shape, a.dtype)
        if not out.flags.c_contiguous:
            raise ValueError("out must be C-contiguous")
    core.relu_fwd(src, out)
    return out


def relu_backward(grad_output, output, *, out=None):
    """``grad_output * (output > 0)``: the gradient through a ReLU.

    ``output`` may be the ReLU's output or its input (same mask).  out may be
    grad_output itself.
    """
    g = float_array(grad_output, "grad_output", promote_int=True)
    y = float_array(output, "output", promote_int=True)
    if g.shape != y.shape:
        raise ValueError(f"grad_output has shape {g.shape} but output has shape {y.shape}")
    dt = _common([g.dtype, y.dtype])
    gs = np.ascontiguousarray(g, dtype=dt)
    ys = np.ascontiguousarray(y, dtype=dt)
    if out is None:
        out = np.empty(g.shape, dt)
    else:
        check_out(out, g.shape, dt)
        if not out.flags.c_contiguous:
            raise ValueError("out must be C-contiguous")
        if np.may_share_memory(out, ys) and out is not ys:
            ys = ys.copy()
    core.relu_bwd(gs, ys, out)
    return out


# ----------------------------------------------------------------- helpers --
def _to_numpy(v, name):
    """A state_dict value (ndarray, torch tensor, array_like) as an ndarray."""
    if hasattr(v, "detach") and hasattr(v, "cpu"):
        v = v.detach().cpu().numpy()
    return float_array(v, name, promote_int=True)


def _nonneg(v, name):
    try:
        f = float(v)
    except (TypeError, ValueError):
        raise TypeError(f"{name} must be a number, got {type(v).__name__}") from None
    if not f >= 0.0 or f == float("inf"):
        raise ValueError(f"{name} must be a finite number >= 0, got {v!r}")
    return f


class _Progress:
    """tqdm over epochs when it is installed, else one plain line per epoch."""

    def __init__(self, total, enabled, file):
        self.bar = None
        self.enabled = enabled
        self.file = file if file is not None else sys.stdout
        if enabled and enabled != "plain":
            try:
                from tqdm.auto import tqdm
            except ImportError:
                tqdm = None
            if tqdm is not None:
                self.bar = tqdm(total=total, unit="epoch", file=file, leave=True)

    def update(self, epoch, total, stats):
        if not self.enabled:
            return
        text = {k: (f"{v:.4f}" if isinstance(v, float) else v) for k, v in stats.items()}
        if self.bar is not None:
            self.bar.set_postfix(text, refresh=False)
            self.bar.update(1)
        else:
            parts = " ".join(f"{k} {v}" for k, v in text.items())
            print(f"epoch {epoch}/{total}: {parts}", file=self.file, flush=True)

    def close(self):
        if self.bar is not None:
            self.bar.close()


def mlp_gemms_only(model, x, train=True, lr=0.01):
    """Run only the GEMMs of ``model.train_step(x, ...)`` (train=True: seven
    for three layers, same shapes, blocks, alpha/beta and buffers) or of
    ``model.predict(x)`` (train=False), with the same thread settings, and
    nothing else.  For benchmarks: the floor of a step built on these GEMMs.
    The model's parameters are not changed."""
    x = model._x(x)
    n = x.shape[0]
    ws = model._workspace(n if train else min(max(n, 1), INFER_BLOCK), bool(train))
    old = _blas.enter()
    try:
        core.mlp_gemms_only(ws, x, bool(train), float(lr))
    finally:
        _blas.exit(old)


# --------------------------------------------------------------------- MLP --
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

    Notes
    -----
    ``forward`` returns logits; ``state_dict`` / ``from_state_dict`` use the
    keys of ``nn.Sequential(Linear, ReLU, Linear, ReLU, Linear)``: ``"0.weight"``,
    ``"0.bias"``, ``"2.weight"``, ...  Inputs containing NaN or infinity,
    wrong feature counts, labels out of range and mismatched lengths raise
    (ValueError / IndexError / TypeError) before anything is changed.
    """

    def __init__(self, sizes=(784, 128, 64, 10), *, dtype=np.float32, seed=0, init="he"):
        try:
            sizes = tuple(operator.index(s) for s in sizes)
        except TypeError:
            raise TypeError("sizes must be a sequence of integers") from None
        if len(sizes) < 2 or len(sizes) > 65:
            raise ValueError(f"sizes needs between 2 and 65 entries (input, ..., classes), got {len(sizes)}")
        if min(sizes) < 1:
            raise ValueError(f"every layer width must be >= 1, got {sizes}")
        dt = np.dtype(dtype)
        if dt not in _FLOATS:
            raise TypeError(f"dtype must be float32 or float64, got {dt}")
        if init not in ("he", "xavier"):
            raise ValueError(f"init must be 'he' or 'xavier', got {init!r}")
        self.sizes = sizes
        self.dtype = dt
        n = sum(o * i + o for i, o in zip(sizes[:-1], sizes[1:]))
        self._flat = np.zeros(n, dt)
        self._gflat = np.zeros(n, dt)
        self._vflat = np.zeros(n, dt)
        self.weights, self.biases = self._views(self._flat)
        self._momentum_started = False
        self._ws_train = None
        self._ws_infer = None
        self.reset_parameters(seed=seed, init=init)

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
    def n_layers(self):
        """Number of Linear layers."""
        return len(self.sizes) - 1

    @property
    def n_features(self):
        return self.sizes[0]

    @property
    def n_classes(self):
        return self.sizes[-1]

    def parameters(self):
        """[W0, b0, W1, b1, ...] (views), the order of ``nn.Sequential.parameters()``."""
        out = []
        for w, b in zip(self.weights, self.biases):
            out += [w, b]
        return out

    def reset_parameters(self, seed=0, init="he"):
        """Gaussian He/Xavier initialisation (see the class docstring); clears momentum."""
        rng = np.random.default_rng(seed)
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

    def reset_optimizer(self):
        """Forget the momentum buffers (the next momentum step starts afresh, like a new torch SGD)."""
        self._vflat[...] = 0
        self._momentum_started = False

    def __repr__(self):
        return f"MLP(sizes={self.sizes}, dtype={self.dtype.name})"

    # -- workspaces --
    def _workspace(self, rows, train):
        ws = self._ws_train if train else self._ws_infer
        if ws is not None and ws.cap >= rows:
            return ws
        cap = max(rows, 1)
        s = self.sizes
        hidden = max(s[1:-1]) if len(s) > 2 else 1
        ws = core.MLPWorkspace(list(s), self._flat, self._gflat, self._vflat,
                               np.empty(cap * sum(s[1:]), self.dtype), np.empty(cap * hidden, self.dtype),
                               np.empty(cap, np.float64), np.empty(max(s), np.float64), cap,
                               np.empty(max(i * o for i, o in zip(s[:-1], s[1:])), self.dtype))
        if train:
            self._ws_train = ws
        else:
            self._ws_infer = ws
        return ws

    def workspace(self, rows, train=True):
        """The compiled workspace for batches of up to `rows` rows (what
        :func:`mlp_gemms_only` runs on)."""
        return self._workspace(positive_int(rows, "rows"), train)

    # -- validation --
    def _x(self, x, name="x"):
        if (type(x) is np.ndarray and x.dtype == self.dtype and x.ndim == 2
                and x.shape[1] == self.sizes[0] and x.flags.c_contiguous):
            return x
        if hasattr(x, "detach") and hasattr(x, "cpu"):
            x = x.detach().cpu().numpy()
        a = float_array(x, name, promote_int=True)
        if a.ndim != 2:
            raise ValueError(f"{name} must be 2-D (n_samples, {self.sizes[0]}), got shape {a.shape}")
        if a.shape[1] != self.sizes[0]:
            raise ValueError(f"{name} has {a.shape[1]} features per row, the model expects {self.sizes[0]}")
        return np.ascontiguousarray(a, dtype=self.dtype)

    def _y(self, y, n, name="y"):
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
        if kind == 3:
            out, labels = None, np.empty(n, np.int64)
        else:
            out, labels = np.empty((n, self.n_classes), self.dtype), None
        old = _blas.enter()
        try:
            ws.forward(x, kind, out, labels)
        finally:
            _blas.exit(old)
        if kind == 3:
            if n and labels.min() < 0:
                self._raise_nonfinite(x)
            return labels
        if np.isnan(out).any():
            self._raise_nonfinite(x)
        return out

    def forward(self, x):
        """Logits, shape (n, n_classes)."""
        return self._infer(x, 0)

    __call__ = forward

    def predict_log_proba(self, x):
        """log_softmax of the logits (fastlog's stable row kernel)."""
        return self._infer(x, 1)

    def predict_proba(self, x):
        """softmax of the logits."""
        return self._infer(x, 2)

    def predict(self, x):
        """Predicted class (first maximum of the logits), int64 of shape (n,)."""
        return self._infer(x, 3)

    def evaluate(self, x, y):
        """(mean cross-entropy, accuracy) on (x, y)."""
        x = self._x(x)
        y = self._y(y, x.shape[0])
        if x.shape[0] == 0:
            raise ValueError("x has no rows")
        if y.min() < 0 or y.max() >= self.n_classes:
            bad = int(np.flatnonzero((y < 0) | (y >= self.n_classes))[0])
            raise IndexError(f"y[{bad}] = {y[bad]} is out of range for {self.n_classes} classes")
        logp = self._infer(x, 1)
        loss = -float(np.mean(logp[np.arange(x.shape[0]), y], dtype=np.float64))
        acc = float(np.mean(np.argmax(logp, axis=1) == y))
        return loss, acc

    # -- training --
    def _step(self, x, y, mode, lr, momentum, dampening, weight_decay):
        x = self._x(x)
        n = x.shape[0]
        if n == 0:
            raise ValueError("x has no rows")
        y = self._y(y, n)
        ws = self._workspace(n, True)
        first = not self._momentum_started
        old = _blas.enter()
        try:
            st, loss, hits = ws.step(x, y, mode, lr, momentum, dampening, weight_decay, first)
        finally:
            _blas.exit(old)
        if st != -1:
            self._raise_step(st, x, y)
        if mode == 1 and momentum != 0.0:
            self._momentum_started = True
        return loss, hits

    def loss_and_grad(self, x, y):
        """Mean cross-entropy over the batch and its gradients.

        Returns
        -------
        loss : float
        grads : list of ndarray
            d(loss)/d(parameter) in the order of :meth:`parameters`
            ([dW0, db0, dW1, db1, ...]); fresh copies.
        """
        loss, _ = self._step(x, y, 0, 0.0, 0.0, 0.0, 0.0)
        gw, gb = self._views(self._gflat)
        out = []
        for w, b in zip(gw, gb):
            out += [w.copy(), b.copy()]
        return loss, out

    def train_step(self, x, y, lr=0.01, *, momentum=0.0, weight_decay=0.0, dampening=0.0):
        """One SGD step on the batch (x, y); returns the batch's mean loss before the step.

        The update is ``torch.optim.SGD(lr, momentum, dampening, weight_decay)``'s:
        ``g = grad + weight_decay * p``; with momentum ``v = momentum * v +
        (1 - dampening) * g`` (``v = g`` on the first step) and ``p -= lr * v``,
        else ``p -= lr * g``.
        """
        lr = _nonneg(lr, "lr")
        momentum = _nonneg(momentum, "momentum")
        weight_decay = _nonneg(weight_decay, "weight_decay")
        dampening = _nonneg(dampening, "dampening")
        loss, _ = self._step(x, y, 1, lr, momentum, dampening, weight_decay)
        return loss

    def fit(self, X, y, *, epochs=10, batch_size=64, lr=0.05, momentum=0.9, weight_decay=0.0,
            dampening=0.0, shuffle=True, seed=0, validation_data=None, progress=True, file=None):
        """Mini-batch SGD over (X, y) for `epochs` epochs.

        Each epoch visits the rows in a fresh random order (``shuffle``; from
        ``numpy.random.default_rng(seed)``) in batches of `batch_size` (the
        last one may be smaller).  ``progress=True`` shows a tqdm bar with the
        epoch's training loss and accuracy (and validation accuracy when
        ``validation_data=(X_val, y_val)``), or prints one line per epoch to
        `file` (default stdout) if tqdm is not installed or ``progress="plain"``;
        ``progress=False`` is silent.

        Returns
        -------
        dict
            Lists per epoch: 'loss', 'accuracy' (running training figures of
            the epoch), 'val_loss', 'val_accuracy' (if validation data), 'time'
            (seconds spent in the epoch's training steps).
        """
        X = self._x(X, "X")
        n = X.shape[0]
        if n == 0:
            raise ValueError("X has no rows")
        y = self._y(y, n)
        if y.min() < 0 or y.max() >= self.n_classes:
            bad = int(np.flatnonzero((y < 0) | (y >= self.n_classes))[0])
            raise IndexError(f"y[{bad}] = {y[bad]} is out of range for {self.n_classes} classes")
        self._raise_nonfinite(X, "X")
        epochs = positive_int(epochs, "epochs")
        bs = min(positive_int(batch_size, "batch_size"), n)
        lr = _nonneg(lr, "lr")
        momentum = _nonneg(momentum, "momentum")
        weight_decay = _nonneg(weight_decay, "weight_decay")
        dampening = _nonneg(dampening, "dampening")
        if validation_data is not None:
            Xv, yv = validation_data
            Xv = self._x(Xv, "X_val")
            yv = self._y(yv, Xv.shape[0], "y_val")
        rng = np.random.default_rng(seed)
        ws = self._workspace(bs, True)
        Xs, ys = (np.empty_like(X), np.empty_like(y)) if shuffle else (X, y)
        hist = {"loss": [], "accuracy": [], "time": []}
        if validation_data is not None:
            hist["val_loss"], hist["val_accuracy"] = [], []
        bar = _Progress(epochs, progress, file)
        try:
            for ep in range(1, epochs + 1):
                if shuffle:
                    perm = rng.permutation(n)
                    np.take(X, perm, axis=0, out=Xs)
                    np.take(y, perm, out=ys)
                total, hits = 0.0, 0
                old = _blas.enter()
                t0 = time.perf_counter()
                try:
                    for i in range(0, n, bs):
                        xb, yb = Xs[i:i + bs], ys[i:i + bs]
                        st, loss, h = ws.step(xb, yb, 1, lr, momentum, dampening, weight_decay,
                                              not self._momentum_started)
                        if st != -1:
                            self._raise_step(st, xb, yb)
                        if momentum != 0.0:
                            self._momentum_started = True
                        total += loss * xb.shape[0]
                        hits += h
                finally:
                    dt = time.perf_counter() - t0
                    _blas.exit(old)
                hist["loss"].append(total / n)
                hist["accuracy"].append(hits / n)
                hist["time"].append(dt)
                stats = {"loss": total / n, "acc": hits / n}
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

    # -- state --
    def _keys(self):
        return [(f"{2 * l}.weight", f"{2 * l}.bias") for l in range(self.n_layers)]

    def state_dict(self, tensors=False):
        """Copies of the parameters keyed like ``nn.Sequential``'s state_dict
        ("0.weight", "0.bias", "2.weight", ...); torch tensors if ``tensors``."""
        sd = {}
        for (kw, kb), w, b in zip(self._keys(), self.weights, self.biases):
            sd[kw], sd[kb] = w.copy(), b.copy()
        if tensors:
            import torch
            sd = {k: torch.from_numpy(v) for k, v in sd.items()}
        return sd

    def load_state_dict(self, state_dict):
        """Copy parameters from a state_dict (arrays or tensors) of the same sizes; clears momentum."""
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
    def from_state_dict(cls, state_dict, dtype=None):
        """A model built from a state_dict of ``nn.Sequential(Linear, ReLU, ..., Linear)``
        (arrays or tensors; keys "0.weight", "0.bias", "2.weight", ...).  The
        dtype defaults to the first weight's (float32 unless it is float64)."""
        idx = {}
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

    def to_torch(self):
        """An equivalent ``torch.nn.Sequential`` (float32/float64 like the model)."""
        import torch
        layers = []
        for l, (i, o) in enumerate(zip(self.sizes[:-1], self.sizes[1:])):
            layers.append(torch.nn.Linear(i, o, dtype=torch.float64 if self.dtype == np.float64
                                          else torch.float32))
            if l < self.n_layers - 1:
                layers.append(torch.nn.ReLU())
        net = torch.nn.Sequential(*layers)
        net.load_state_dict(self.state_dict(tensors=True))
        return net

    def save(self, path):
        """Write the parameters to an ``.npz`` file (plain arrays, no pickle)."""
        arrays = self.state_dict()
        arrays["__sizes__"] = np.asarray(self.sizes, np.int64)
        arrays["__format__"] = np.asarray([1], np.int64)
        if hasattr(path, "write"):
            np.savez(path, **arrays)
        else:
            path = os.fspath(path)
            np.savez(path, **arrays)

    @classmethod
    def load(cls, path):
        """Read a model written by :meth:`save` (``np.load(allow_pickle=False)``)."""
        with np.load(path, allow_pickle=False) as f:
            files = set(f.files)
            if "__sizes__" not in files or "__format__" not in files:
                raise ValueError(f"{path!r} is not a fastlog MLP file (no __sizes__/__format__)")
            fmt = int(f["__format__"][0])
            if fmt != 1:
                raise ValueError(f"unsupported fastlog MLP file format {fmt}")
            sizes = [int(s) for s in f["__sizes__"]]
            sd = {k: f[k] for k in files if not k.startswith("__")}
        dtype = np.float64 if sd["0.weight"].dtype == np.float64 else np.float32
        model = cls(sizes, dtype=dtype, seed=0)
        return model.load_state_dict(sd)


# ------------------------------------------------------ logistic regression --
class LogisticRegression:
    """Binary logistic regression (one logit) trained with mini-batch SGD on
    the mean BCE-with-logits loss (:func:`fastlog.binary_cross_entropy_with_logits_and_grad`).

    weight has shape (1, n_features) and bias (1,), like ``nn.Linear(n_features, 1)``.
    """

    def __init__(self, n_features, *, dtype=np.float32, seed=0):
        n_features = positive_int(n_features, "n_features")
        dt = np.dtype(dtype)
        if dt not in _FLOATS:
            raise TypeError(f"dtype must be float32 or float64, got {dt}")
        self.dtype = dt
        rng = np.random.default_rng(seed)
        std = np.sqrt(2.0 / (n_features + 1))
        self.weight = (rng.standard_normal((1, n_features)) * std).astype(dt)
        self.bias = np.zeros(1, dt)

    def _x(self, x):
        a = _float2d(x, "x")
        if a.shape[1] != self.weight.shape[1]:
            raise ValueError(f"x has {a.shape[1]} features per row, the model expects {self.weight.shape[1]}")
        return np.ascontiguousarray(a, dtype=self.dtype)

    def _y(self, y, n):
        t = np.asarray(y)
        if t.shape != (n,):
            raise ValueError(f"y has shape {t.shape}, expected ({n},)")
        if t.dtype.kind not in "biuf":
            raise TypeError(f"y must hold 0/1 labels, got dtype {t.dtype}")
        t = t.astype(self.dtype)
        if not np.all((t == 0) | (t == 1)):
            raise ValueError("y must hold only 0 and 1")
        return t

    def decision_function(self, x):
        """The logits, shape (n,)."""
        return linear_forward(self._x(x), self.weight, self.bias)[:, 0]

    def predict_proba(self, x):
        """P(y = 1), shape (n,)."""
        z = self.decision_function(x).astype(np.float64)
        return (0.5 * (1.0 + np.tanh(0.5 * z))).astype(self.dtype)

    def predict(self, x):
        return (self.decision_function(x) > 0).astype(np.int64)

    def loss_and_grad(self, x, y):
        """(mean BCE, dW, db)."""
        x = self._x(x)
        y = self._y(y, x.shape[0])
        z = linear_forward(x, self.weight, self.bias)
        loss, g = binary_cross_entropy_with_logits_and_grad(z[:, 0], y)
        _, gw, gb = linear_backward(g[:, None], x, self.weight, input_grad=False)
        return float(loss), gw, gb

    def train_step(self, x, y, lr=0.1):
        loss, gw, gb = self.loss_and_grad(x, y)
        self.weight -= self.dtype.type(lr) * gw
        self.bias -= self.dtype.type(lr) * gb
        return loss

    def fit(self, X, y, *, epochs=10, batch_size=64, lr=0.1, seed=0, progress=True, file=None):
        X = self._x(X)
        y = self._y(y, X.shape[0])
        epochs = positive_int(epochs, "epochs")
        bs = positive_int(batch_size, "batch_size")
        rng = np.random.default_rng(seed)
        n = X.shape[0]
        hist = {"loss": [], "accuracy": [], "time": []}
        bar = _Progress(epochs, progress, file)
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
                bar.update(ep, epochs, {"loss": total / n, "acc": acc, "s": dt})
        finally:
            bar.close()
        return hist

    def evaluate(self, x, y):
        """(mean BCE, accuracy)."""
        x = self._x(x)
        y = self._y(y, x.shape[0])
        z = linear_forward(x, self.weight, self.bias)[:, 0]
        loss, _ = binary_cross_entropy_with_logits_and_grad(z, y)
        return float(loss), float(np.mean((z > 0) == (y == 1)))
