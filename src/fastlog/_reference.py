"""Slow, plain-NumPy float64 reference implementations (a test oracle, never the product).

Each function computes in float64 straight from the textbook formula, with
the class axis moved last and one row per sample, so that it shares no code
and no layout trick with the compiled kernels.  The ``*_and_grad`` functions
return ``(loss, grad)`` where ``grad`` is the derivative of the *sum* of the
returned losses (for ``reduction='none'``) or of the reduced loss, written out
by hand; the tests also check these gradients against PyTorch autograd and
finite differences, so the reference is itself verified.

Semantics are those of ``scipy.special`` (softmax family) and
``torch.nn.functional`` (losses).
"""
import numpy as np

__all__ = ["logsumexp", "log_softmax", "softmax", "cross_entropy_and_grad", "nll_loss_and_grad",
           "binary_cross_entropy_with_logits_and_grad", "kl_div", "mlp_forward", "mlp_sgd_step",
           "linear_cross_entropy_and_grad"]


def _f64(a):
    return np.array(a, dtype=np.float64, copy=True)


# -------------------------------------------------------- softmax family --
def logsumexp(x, axis=None, keepdims=False):
    """log(sum(exp(x))) shifted by the finite max (no b, no return_sign)."""
    x = _f64(x)
    if x.size == 0:                                  # an empty sum is 0: log gives -inf
        with np.errstate(divide="ignore"):
            return np.log(np.sum(np.exp(x), axis=axis, keepdims=keepdims))
    with np.errstate(invalid="ignore", over="ignore", divide="ignore"):
        m = np.max(x, axis=axis, keepdims=True)
        m = np.where(np.isfinite(m), m, 0.0)
        s = np.sum(np.exp(x - m), axis=axis, keepdims=True)
        r = np.log(s) + m
    return r if keepdims else np.squeeze(r, axis=axis)


def log_softmax(x, axis=None):
    x = _f64(x)
    with np.errstate(invalid="ignore"):
        return x - logsumexp(x, axis=axis, keepdims=True)


def softmax(x, axis=None):
    """exp(x - max) / sum; rows whose max is not finite are nan (as SciPy)."""
    x = _f64(x)
    with np.errstate(invalid="ignore", over="ignore"):
        m = np.max(x, axis=axis, keepdims=True)
        e = np.exp(x - m)
        return e / np.sum(e, axis=axis, keepdims=True)


# ------------------------------------------------------------------ rows --
def _rows(x):
    """(M, C) float64 rows with the class axis (1, or 0 for 1-D input) last."""
    x = _f64(x)
    if x.ndim == 1:
        return x.reshape(1, -1), x.shape
    return np.moveaxis(x, 1, -1).reshape(-1, x.shape[1]), x.shape


def _unrows(g, shape):
    if len(shape) == 1:
        return g.reshape(shape)
    moved = (shape[0],) + tuple(shape[2:]) + (shape[1],)
    return np.moveaxis(g.reshape(moved), -1, 1)


def _batch_shape(shape):
    return () if len(shape) == 1 else (shape[0],) + tuple(shape[2:])


def _reduce(losses, grads, denom, reduction, batch_shape, keep=None):
    """Apply a reduction to per-row losses and the matching per-row gradients.
    Rows not in `keep` (ignored targets) keep a zero gradient, even when 'mean'
    divides by a zero weight sum (torch's autograd gives 0 there too)."""
    if reduction == "none":
        return losses.reshape(batch_shape), grads
    total = losses.sum()
    if reduction == "sum":
        return total, grads
    with np.errstate(invalid="ignore", divide="ignore"):
        grads = grads / denom
    if keep is not None:
        grads = np.where(keep[:, None], grads, 0.0)
    return total / denom if denom else total * np.nan, grads


# --------------------------------------------------------- cross-entropy --
def cross_entropy_and_grad(input, target, weight=None, ignore_index=-100, reduction="mean",
                           label_smoothing=0.0):
    """torch.nn.functional.cross_entropy and d(loss)/d(input), in float64."""
    x, shape = _rows(input)
    M, C = x.shape
    w = np.ones(C) if weight is None else _f64(weight)
    eps = float(label_smoothing)
    with np.errstate(invalid="ignore", divide="ignore"):
        m = np.max(x, axis=1, keepdims=True) if C else np.zeros((M, 1))
        m = np.where(np.isfinite(m), m, 0.0)
        z = x - m                                 # shift first: exact for close logits
        logp = z - np.log(np.sum(np.exp(z), axis=1, keepdims=True))
    p = np.exp(logp)
    t = np.asarray(target)
    if t.dtype.kind == "f":                      # class probabilities
        tr, _ = _rows(t)
        tr = tr * (1 - eps) + eps / C
        wt = w * tr
        losses = -(wt * logp).sum(axis=1)
        grads = p * wt.sum(axis=1, keepdims=True) - wt
        denom = M
    else:                                        # class indices
        y = t.reshape(-1).astype(np.int64)
        keep = y != ignore_index
        ys = np.where(keep, y, 0)
        if np.any((ys < 0) | (ys >= C)):
            raise IndexError("target out of range")
        onehot = np.zeros((M, C))
        onehot[np.arange(M), ys] = 1.0
        wy = w[ys]
        nll = -logp[np.arange(M), ys] * wy
        smooth = -(w * logp).sum(axis=1)
        losses = (1 - eps) * nll + eps / C * smooth
        grads = ((1 - eps) * wy[:, None] * (p - onehot)
                 + eps / C * (p * w.sum() - w))
        losses = np.where(keep, losses, 0.0)
        grads = np.where(keep[:, None], grads, 0.0)
        denom = np.sum(np.where(keep, wy, 0.0))
    loss, grads = _reduce(losses, grads, denom, reduction, _batch_shape(shape),
                          None if t.dtype.kind == "f" else keep)
    return loss, _unrows(grads, shape)


def nll_loss_and_grad(input, target, weight=None, ignore_index=-100, reduction="mean"):
    """torch.nn.functional.nll_loss and its gradient, in float64."""
    x, shape = _rows(input)
    M, C = x.shape
    w = np.ones(C) if weight is None else _f64(weight)
    y = np.asarray(target).reshape(-1).astype(np.int64)
    keep = y != ignore_index
    ys = np.where(keep, y, 0)
    if np.any((ys < 0) | (ys >= C)):
        raise IndexError("target out of range")
    wy = np.where(keep, w[ys], 0.0)
    losses = -wy * x[np.arange(M), ys]
    grads = np.zeros((M, C))
    grads[np.arange(M), ys] = -wy
    loss, grads = _reduce(losses, grads, wy.sum(), reduction, _batch_shape(shape), keep)
    return loss, _unrows(grads, shape)


# ------------------------------------------------------ BCE with logits --
def binary_cross_entropy_with_logits_and_grad(input, target, weight=None, reduction="mean",
                                              pos_weight=None):
    """torch.nn.functional.binary_cross_entropy_with_logits and its gradient."""
    x = _f64(input)
    y = _f64(target)
    w = np.ones_like(x) if weight is None else np.broadcast_to(_f64(weight), x.shape)
    pw = np.ones_like(x) if pos_weight is None else np.broadcast_to(_f64(pos_weight), x.shape)
    lw = 1 + (pw - 1) * y
    softplus_neg = np.logaddexp(0.0, -x)             # -log(sigmoid(x))
    sig_neg = np.exp(-np.logaddexp(0.0, x))          # sigmoid(-x)
    losses = w * ((1 - y) * x + lw * softplus_neg)
    grads = w * ((1 - y) - lw * sig_neg)
    if reduction == "none":
        return losses, grads
    if reduction == "sum":
        return losses.sum(), grads
    n = x.size
    with np.errstate(invalid="ignore", divide="ignore"):
        return losses.sum() / n, grads / n


# ---------------------------------------------------------------- KL div --
def kl_div(input, target, reduction="mean", log_target=False):
    """torch.nn.functional.kl_div (input holds log-probabilities)."""
    x = _f64(input)
    t = _f64(target)
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        if log_target:
            pw = np.exp(t) * (t - x)
        else:
            tlogt = np.where(t == 0, 0.0, t * np.log(np.where(t == 0, 1.0, t)))
            tlogt = np.where(np.isnan(t), np.nan, tlogt)
            pw = tlogt - t * x
    if reduction == "none":
        return pw
    if reduction == "sum":
        return pw.sum()
    with np.errstate(invalid="ignore", divide="ignore"):
        if reduction == "mean":
            return pw.sum() / pw.size
        return pw.sum() / (pw.shape[0] if pw.ndim else 1)


# ------------------------------------------------------- ReLU MLP, linear+CE --
def mlp_forward(params, x):
    """Logits of a ReLU MLP: params = [W0 (out, in), b0, W1, b1, ...], ReLU between layers."""
    h = _f64(x)
    n_layers = len(params) // 2
    for i in range(n_layers):
        h = h @ _f64(params[2 * i]).T + _f64(params[2 * i + 1])
        if i < n_layers - 1:
            h = np.maximum(h, 0.0)
    return h


def mlp_sgd_step(params, x, y, lr):
    """The parameters after one plain SGD step on the mean cross-entropy (a new list)."""
    p = [_f64(a) for a in params]
    acts = [_f64(x)]
    for i in range(len(p) // 2):
        z = acts[-1] @ p[2 * i].T + p[2 * i + 1]
        acts.append(np.maximum(z, 0.0) if i < len(p) // 2 - 1 else z)
    _, g = cross_entropy_and_grad(acts[-1], y)
    new = list(p)
    for i in reversed(range(len(p) // 2)):
        gw, gb = g.T @ acts[i], g.sum(axis=0)
        if i > 0:
            g = (g @ p[2 * i]) * (acts[i] > 0)
        new[2 * i] = p[2 * i] - lr * gw
        new[2 * i + 1] = p[2 * i + 1] - lr * gb
    return new


def linear_cross_entropy_and_grad(x, w, y):
    """Mean cross-entropy of x @ w.T against integer targets y: (loss, d/dx, d/dw)."""
    x, w = _f64(x), _f64(w)
    loss, g = cross_entropy_and_grad(x @ w.T, y)
    return loss, g @ w, g.T @ x
