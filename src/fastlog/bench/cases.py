"""What the benchmark times: operations (groups), their inputs, and each library's version.

A :class:`Group` is one operation (log-softmax, cross-entropy forward+backward,
...).  It knows how to make its inputs for a shape and dtype, how each
library computes it (fastlog, NumPy written the usual way, SciPy where SciPy
has the function, PyTorch), the float64 NumPy oracle its results are checked
against, and how many N x C memory streams a fused kernel must move (for the
memory-bandwidth floor).  A :class:`Case` is one (group, shape, dtype,
threads) point; :func:`plan` turns a preset (``quick``, ``full``) and the
user's filters into the list of cases.

The pytest-benchmark files in ``benchmarks/`` and the ``fastlog-bench``
command both use these definitions, so they time exactly the same code.
"""
import os
from dataclasses import dataclass, field

import numpy as np

import fastlog

__all__ = ["Case", "Group", "Unavailable", "GROUPS", "LIBRARIES", "ROW_SHAPES", "data_for",
           "clear_data", "reference_for", "Oracle", "plan", "parse_shape", "shape_label", "agreement",
           "PRESETS"]

LIBRARIES = ("fastlog", "numpy", "scipy", "torch")


class Unavailable(Exception):
    """A library (or a fastlog API) this case needs is not installed / not built."""


@dataclass(frozen=True)
class Case:
    group: str
    shape: tuple
    dtype: str
    threads: int

    @property
    def data_key(self):
        return (self.group, self.shape, self.dtype)

    @property
    def label(self):
        return shape_label(self.group, self.shape)


# ------------------------------------------------------------------ helpers --
def shape_label(group, shape):
    g = GROUPS.get(group)
    if g is not None and g.kind == "mlp":
        return f"batch {shape[0]}"
    if g is not None and g.kind == "linear":
        return f"{shape[0]}x{shape[1]} @ {shape[2]}x{shape[1]}"
    return "x".join(str(n) for n in shape)


def parse_shape(text):
    """'4096x1000' -> (4096, 1000)."""
    try:
        dims = tuple(int(p) for p in text.lower().replace("*", "x").split("x"))
    except ValueError:
        raise ValueError(f"bad shape {text!r}: expected e.g. 4096x1000") from None
    if not dims or any(d < 1 for d in dims):
        raise ValueError(f"bad shape {text!r}: dimensions must be positive")
    return dims


_torch_cache = []


def _torch():
    """(torch, torch.nn.functional), or raise Unavailable."""
    if not _torch_cache:
        try:
            import torch
            import torch.nn.functional as F
        except ImportError:
            _torch_cache.append(None)
        else:
            _torch_cache.append((torch, F))
    if _torch_cache[0] is None:
        raise Unavailable("PyTorch is not installed (pip install torch to compare against it)")
    return _torch_cache[0]


def _fastlog_api(name):
    fn = getattr(fastlog, name, None)
    if fn is None:
        raise Unavailable(f"fastlog.{name} is not in this build of fastlog")
    return fn


def _scipy_special():
    try:
        import scipy.special as sp
    except ImportError:  # pragma: no cover - scipy is a dependency
        raise Unavailable("SciPy is not installed") from None
    return sp


# --------------------------------------------------------- input generation --
_DATA = {}


def _rows_data(group, shape, dtype):
    N, C = shape
    rng = np.random.default_rng([N, C, 17])
    x = rng.standard_normal((N, C), dtype=np.float32 if dtype == np.float32 else np.float64)
    x *= 3
    d = {"x": x.astype(dtype, copy=False)}
    if group == "bce_with_logits":
        d["t"] = (rng.random((N, C)) < 0.3).astype(dtype)
    else:
        d["y"] = rng.integers(0, C, N, dtype=np.int64)
    if group == "nll":
        d["x"] = np_log_softmax(d["x"])  # nll takes log-probabilities
    return d


def _mlp_data(group, shape, dtype):
    (B,) = shape
    rng = np.random.default_rng([B, 784, 23])
    x = rng.random((B, MLP_SIZES[0])).astype(dtype)
    y = rng.integers(0, MLP_SIZES[-1], B, dtype=np.int64)
    params = []
    for fan_in, fan_out in zip(MLP_SIZES[:-1], MLP_SIZES[1:]):
        bound = np.sqrt(6.0 / fan_in)
        params.append(rng.uniform(-bound, bound, (fan_out, fan_in)).astype(dtype))
        params.append(rng.uniform(-0.1, 0.1, fan_out).astype(dtype))
    return {"x": x, "y": y, "params": params}


def _linear_data(group, shape, dtype):
    N, D, V = shape
    rng = np.random.default_rng([N, D, V, 29])
    x = rng.standard_normal((N, D), dtype=np.float32).astype(dtype)
    w = (rng.standard_normal((V, D), dtype=np.float32) / np.sqrt(D)).astype(dtype)
    y = rng.integers(0, V, N, dtype=np.int64)
    return {"x": x, "w": w, "y": y}


def data_for(group, shape, dtype):
    """The cached inputs of (group, shape, dtype): created once, reused by every library."""
    key = (group, tuple(shape), np.dtype(dtype).name)
    d = _DATA.get(key)
    if d is None:
        d = GROUPS[group].make_data(group, tuple(shape), np.dtype(dtype).type)
        _DATA[key] = d
    return d


def clear_data():
    """Drop the cached inputs (the command does this between shapes to bound memory)."""
    _DATA.clear()


def _as_float64(d):
    out = {}
    for k, v in d.items():
        if isinstance(v, np.ndarray) and v.dtype.kind == "f":
            out[k] = v.astype(np.float64)
        elif isinstance(v, list):
            out[k] = [p.astype(np.float64) for p in v]
        else:
            out[k] = v
    return out


def reference_for(group, d):
    """The float64 NumPy oracle (an :class:`Oracle`) on the same inputs, upcast."""
    return Oracle(GROUPS[group].reference(_as_float64(d)))


# ------------------------------------------------- NumPy, the usual way --
def np_log_softmax(x):
    s = x - x.max(axis=-1, keepdims=True)
    return s - np.log(np.exp(s).sum(axis=-1, keepdims=True))


def np_softmax(x):
    e = np.exp(x - x.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def np_logsumexp(x):
    m = x.max(axis=-1)
    return m + np.log(np.exp(x - m[:, None]).sum(axis=-1))


def np_cross_entropy(x, y):
    lp = np_log_softmax(x)
    return -lp[np.arange(len(y)), y].mean()


def np_cross_entropy_and_grad(x, y):
    n = len(y)
    lp = np_log_softmax(x)
    rows = np.arange(n)
    loss = -lp[rows, y].mean()
    g = np.exp(lp)
    g[rows, y] -= 1
    g /= n
    return loss, g


def np_nll_and_grad(lp, y):
    n = len(y)
    rows = np.arange(n)
    loss = -lp[rows, y].mean()
    g = np.zeros_like(lp)
    g[rows, y] = -1.0 / n
    return loss, g


def np_bce_with_logits_and_grad(x, t):
    loss = (np.maximum(x, 0) - x * t + np.log1p(np.exp(-np.abs(x)))).mean()
    g = (1 / (1 + np.exp(-x)) - t) / x.size
    return loss, g


def np_mlp_forward(params, x):
    h = x
    n_layers = len(params) // 2
    acts = [h]
    for i in range(n_layers):
        h = h @ params[2 * i].T + params[2 * i + 1]
        if i < n_layers - 1:
            h = np.maximum(h, 0)
        acts.append(h)
    return acts


def np_mlp_train_step(params, x, y, lr):
    """One SGD step (mean cross-entropy) on `params` in place; returns the loss."""
    acts = np_mlp_forward(params, x)
    loss, g = np_cross_entropy_and_grad(acts[-1], y)
    n_layers = len(params) // 2
    for i in reversed(range(n_layers)):
        a_in = acts[i]
        gw = g.T @ a_in
        gb = g.sum(axis=0)
        if i > 0:
            g = g @ params[2 * i]
            g *= acts[i] > 0
        params[2 * i] -= lr * gw
        params[2 * i + 1] -= lr * gb
    return loss


def np_linear_cross_entropy_and_grad(x, w, y):
    logits = x @ w.T
    loss, g = np_cross_entropy_and_grad(logits, y)
    return loss, g @ w, g.T @ x


# ------------------------------------------------------ result conversion --
def _to_numpy(r):
    if isinstance(r, (tuple, list)):
        return tuple(_to_numpy(v) for v in r)
    if hasattr(r, "detach"):  # torch tensor
        return r.detach().cpu().numpy()
    return np.asarray(r)


class Oracle:
    """The float64 oracle's result, with the per-element tolerances precomputed once.

    A library's result agrees when every element satisfies
    ``|out - ref| <= rtol * |ref| + atol * max|ref|`` (float32: rtol 1e-4,
    atol 1e-5; float64: rtol 1e-8, atol 1e-11) and the shapes match.  NaN or
    inf where the oracle is finite fails.
    """
    TOL = {"float32": (1e-4, 1e-5), "float64": (1e-8, 1e-11)}

    def __init__(self, values):
        v = _to_numpy(values)
        self.values = tuple(np.asarray(a, dtype=np.float64) for a in (v if isinstance(v, tuple) else (v,)))
        self.scales = tuple(float(np.max(np.abs(a))) if a.size else 1.0 for a in self.values)
        self._tol = {}

    def _tolerances(self, dtype):
        name = np.dtype(dtype).name
        if name not in self._tol:
            rtol, atol = self.TOL.get(name, self.TOL["float64"])
            self._tol[name] = tuple(np.abs(a) * rtol + atol * (s or 1.0)
                                    for a, s in zip(self.values, self.scales))
        return self._tol[name]

    def check(self, out, dtype):
        """``(ok, err)``; err is the largest ``|out - ref| / max|ref|``."""
        out = _to_numpy(out)
        out = out if isinstance(out, tuple) else (out,)
        if len(out) != len(self.values):
            return False, float("inf")
        ok, worst = True, 0.0
        for o, r, tol, scale in zip(out, self.values, self._tolerances(dtype), self.scales):
            o = np.asarray(o)
            if o.shape != r.shape and o.size == r.size == 1:
                o = o.reshape(r.shape)
            if o.shape != r.shape or o.dtype.kind not in "fiub":
                return False, float("inf")
            if r.size == 0:
                continue
            d = np.subtract(o.reshape(-1), r.reshape(-1), dtype=np.float64)
            np.abs(d, out=d)
            if not np.all(d <= tol.reshape(-1)):  # NaN compares False: fails
                ok = False
            m = float(np.max(d))
            worst = max(worst, m / (scale or 1.0) if m == m else float("inf"))
        return ok, worst


def agreement(out, ref, dtype):
    """Compare a library's result with the float64 oracle (a result or an :class:`Oracle`).

    Returns ``(ok, err)``; see :class:`Oracle` for the tolerance.
    """
    return (ref if isinstance(ref, Oracle) else Oracle(ref)).check(out, dtype)


# ------------------------------------------------------------ the groups --
@dataclass
class Group:
    """One operation.

    impls maps a library name to a builder ``f(data) -> fn`` (or ``(fn,
    result)``, where ``result()`` gives the value to check after one call);
    ``fn()`` is what is timed.  A builder raises :class:`Unavailable` when
    its library or API is missing.  `streams` is the number of N x C arrays a
    fused kernel must read or write once (0: not a memory-bound kernel).
    """
    name: str
    title: str
    kind: str  # "rows" (N, C), "mlp" (batch,), "linear" (N, D, V)
    make_data: object
    reference: object
    impls: dict = field(default_factory=dict)
    streams: int = 0

    def nbytes(self, shape, dtype):
        """Bytes of one N x C array of this case."""
        return int(np.prod(shape[:2])) * np.dtype(dtype).itemsize


def _rows(name, title, reference, impls, streams):
    return Group(name, title, "rows", _rows_data, reference, impls, streams)


def _simple(f):
    """Builder for a function of the cached inputs."""
    return lambda d: (lambda: f(d))


def _torch_fwd(f):
    def build(d):
        torch, F = _torch()
        tensors = {k: torch.from_numpy(v) for k, v in d.items() if isinstance(v, np.ndarray)}

        def run():
            with torch.no_grad():
                return f(torch, F, tensors)
        return run
    return build


def _torch_loss_backward(loss_fn):
    """fwd+bwd: loss_fn(F, xt, tensors) -> loss; returns (loss, d loss / d x)."""
    def build(d):
        torch, F = _torch()
        tensors = {k: torch.from_numpy(v) for k, v in d.items() if isinstance(v, np.ndarray)}
        xt = tensors["x"].clone().requires_grad_(True)

        def run():
            xt.grad = None
            loss = loss_fn(F, xt, tensors)
            loss.backward()
            return loss, xt.grad
        return run
    return build


def _fl(name, call):
    def build(d):
        fn = _fastlog_api(name)
        return lambda: call(fn, d)
    return build


def _scipy(name, call):
    def build(d):
        fn = getattr(_scipy_special(), name)
        return lambda: call(fn, d)
    return build


# MLP ---------------------------------------------------------------------
MLP_SIZES = (784, 128, 64, 10)
MLP_LR = 0.05


def _fl_mlp(d, dtype):
    """A fastlog.MLP (or fastlog.nn.MLP) holding the case's initial weights, or Unavailable."""
    cls = getattr(fastlog, "MLP", None)
    if cls is None:
        try:
            from fastlog.nn import MLP as cls
        except ImportError:
            raise Unavailable("fastlog.MLP is not in this build of fastlog") from None
    try:
        model = cls(sizes=MLP_SIZES, dtype=dtype, seed=0)
    except TypeError:
        model = cls(sizes=MLP_SIZES)
    _mlp_set_params(model, d["params"])
    return model


def _mlp_param_list(model):
    """The model's parameters as [W1, b1, W2, b2, ...] arrays (views), if it exposes them."""
    for attr in ("params", "parameters"):
        p = getattr(model, attr, None)
        if callable(p):
            p = p()
        if isinstance(p, (list, tuple)) and p and all(isinstance(a, np.ndarray) for a in p):
            return list(p)
    ws, bs = getattr(model, "weights", None), getattr(model, "biases", None)
    if isinstance(ws, (list, tuple)) and isinstance(bs, (list, tuple)):
        return [a for pair in zip(ws, bs) for a in pair]
    return None


def _mlp_set_params(model, params):
    """Load our [W (out, in), b] list into a fastlog.MLP (either weight orientation)."""
    setter = getattr(model, "set_params", None)
    if callable(setter):
        setter([p.copy() for p in params])
        return
    mine = _mlp_param_list(model)
    if mine is None or len(mine) != len(params):
        raise Unavailable("fastlog.MLP exposes no parameters to load, so its result cannot be "
                          "checked against the other libraries")
    for dst, src in zip(mine, params):
        if dst.shape == src.shape:
            dst[...] = src
        elif dst.shape == src.T.shape:
            dst[...] = src.T
        else:
            raise Unavailable(f"fastlog.MLP parameter of shape {dst.shape} does not match {src.shape}")


def _mlp_params_out(model, like):
    mine = _mlp_param_list(model)
    return tuple(np.asarray(p.T if p.shape != q.shape else p) for p, q in zip(mine, like))


def _fl_mlp_train(d):
    model = _fl_mlp(d, d["x"].dtype)
    x, y = d["x"], d["y"]
    return (lambda: model.train_step(x, y, MLP_LR)), (lambda: _mlp_params_out(model, d["params"]))


def _fl_mlp_predict(d):
    model = _fl_mlp(d, d["x"].dtype)
    forward = getattr(model, "forward", None)
    if forward is None:
        raise Unavailable("fastlog.MLP has no forward() returning logits to check")
    x = d["x"]
    return lambda: forward(x)


def _np_mlp_train(d):
    params = [p.copy() for p in d["params"]]
    x, y = d["x"], d["y"]
    return (lambda: np_mlp_train_step(params, x, y, MLP_LR)), (lambda: tuple(params))


def _np_mlp_predict(d):
    params = d["params"]
    return lambda: np_mlp_forward(params, d["x"])[-1]


def _ref_mlp_train(d):
    params = [p.copy() for p in d["params"]]
    np_mlp_train_step(params, d["x"], d["y"], MLP_LR)
    return tuple(params)


def _torch_mlp(d):
    torch, F = _torch()
    n = len(d["params"]) // 2
    layers = []
    for i in range(n):
        lin = torch.nn.Linear(d["params"][2 * i].shape[1], d["params"][2 * i].shape[0],
                              dtype=torch.from_numpy(d["params"][0]).dtype)
        with torch.no_grad():
            lin.weight.copy_(torch.from_numpy(d["params"][2 * i]))
            lin.bias.copy_(torch.from_numpy(d["params"][2 * i + 1]))
        layers.append(lin)
        if i < n - 1:
            layers.append(torch.nn.ReLU())
    return torch, F, torch.nn.Sequential(*layers)


def _torch_mlp_train(d):
    torch, F, model = _torch_mlp(d)
    opt = torch.optim.SGD(model.parameters(), lr=MLP_LR)
    xt, yt = torch.from_numpy(d["x"]), torch.from_numpy(d["y"])

    def run():
        opt.zero_grad(set_to_none=True)
        loss = F.cross_entropy(model(xt), yt)
        loss.backward()
        opt.step()
        return loss

    return run, (lambda: tuple(p.detach().numpy() for p in model.parameters()))


def _torch_mlp_predict(d):
    torch, F, model = _torch_mlp(d)
    xt = torch.from_numpy(d["x"])

    def run():
        with torch.no_grad():
            return model(xt)
    return run


# linear + cross-entropy ----------------------------------------------------
def _fl_linear_ce(d):
    fn = _fastlog_api("linear_cross_entropy_and_grad")
    x, w, y = d["x"], d["w"], d["y"]

    def run():
        r = fn(x, w, y)
        return tuple(r[:3])
    return run


def _torch_linear_ce(d):
    torch, F = _torch()
    if not hasattr(F, "linear_cross_entropy"):
        raise Unavailable("this PyTorch has no F.linear_cross_entropy (added in 2.13)")
    xt = torch.from_numpy(d["x"]).clone().requires_grad_(True)
    wt = torch.from_numpy(d["w"]).clone().requires_grad_(True)
    yt = torch.from_numpy(d["y"])

    def run():
        xt.grad = None
        wt.grad = None
        loss = F.linear_cross_entropy(xt, wt, yt)
        loss.backward()
        return loss, xt.grad, wt.grad
    return run


GROUPS = {g.name: g for g in [
    _rows("log_softmax", "log_softmax(x, axis=-1)", lambda d: np_log_softmax(d["x"]), {
        "fastlog": _fl("log_softmax", lambda f, d: f(d["x"], axis=-1)),
        "numpy": _simple(lambda d: np_log_softmax(d["x"])),
        "scipy": _scipy("log_softmax", lambda f, d: f(d["x"], axis=-1)),
        "torch": _torch_fwd(lambda torch, F, t: F.log_softmax(t["x"], dim=-1)),
    }, streams=2),
    _rows("softmax", "softmax(x, axis=-1)", lambda d: np_softmax(d["x"]), {
        "fastlog": _fl("softmax", lambda f, d: f(d["x"], axis=-1)),
        "numpy": _simple(lambda d: np_softmax(d["x"])),
        "scipy": _scipy("softmax", lambda f, d: f(d["x"], axis=-1)),
        "torch": _torch_fwd(lambda torch, F, t: F.softmax(t["x"], dim=-1)),
    }, streams=2),
    _rows("logsumexp", "logsumexp(x, axis=-1)", lambda d: np_logsumexp(d["x"]), {
        "fastlog": _fl("logsumexp", lambda f, d: f(d["x"], axis=-1)),
        "numpy": _simple(lambda d: np_logsumexp(d["x"])),
        "scipy": _scipy("logsumexp", lambda f, d: f(d["x"], axis=-1)),
        "torch": _torch_fwd(lambda torch, F, t: torch.logsumexp(t["x"], dim=-1)),
    }, streams=1),
    _rows("cross_entropy", "cross-entropy forward (mean, integer targets)",
          lambda d: np_cross_entropy(d["x"], d["y"]), {
              "fastlog": _fl("cross_entropy", lambda f, d: f(d["x"], d["y"])),
              "numpy": _simple(lambda d: np_cross_entropy(d["x"], d["y"])),
              "torch": _torch_fwd(lambda torch, F, t: F.cross_entropy(t["x"], t["y"])),
          }, streams=1),
    _rows("cross_entropy_fwd_bwd", "cross-entropy forward+backward (mean, integer targets)",
          lambda d: np_cross_entropy_and_grad(d["x"], d["y"]), {
              "fastlog": _fl("cross_entropy_and_grad", lambda f, d: f(d["x"], d["y"])),
              "numpy": _simple(lambda d: np_cross_entropy_and_grad(d["x"], d["y"])),
              "torch": _torch_loss_backward(lambda F, x, t: F.cross_entropy(x, t["y"])),
          }, streams=2),
    _rows("nll", "nll_loss forward+backward (log-probability input)",
          lambda d: np_nll_and_grad(d["x"], d["y"]), {
              "fastlog": _fl("nll_loss_and_grad", lambda f, d: f(d["x"], d["y"])),
              "numpy": _simple(lambda d: np_nll_and_grad(d["x"], d["y"])),
              "torch": _torch_loss_backward(lambda F, x, t: F.nll_loss(x, t["y"])),
          }, streams=1),
    _rows("bce_with_logits", "binary_cross_entropy_with_logits forward+backward (mean)",
          lambda d: np_bce_with_logits_and_grad(d["x"], d["t"]), {
              "fastlog": _fl("binary_cross_entropy_with_logits_and_grad", lambda f, d: f(d["x"], d["t"])),
              "numpy": _simple(lambda d: np_bce_with_logits_and_grad(d["x"], d["t"])),
              "torch": _torch_loss_backward(
                  lambda F, x, t: F.binary_cross_entropy_with_logits(x, t["t"])),
          }, streams=3),
    Group("mlp_train", "MLP 784-128-64-10 ReLU: one SGD step (mean cross-entropy)", "mlp",
          _mlp_data, _ref_mlp_train, {
              "fastlog": _fl_mlp_train,
              "numpy": _np_mlp_train,
              "torch": _torch_mlp_train,
          }),
    Group("mlp_predict", "MLP 784-128-64-10 ReLU: inference (logits)", "mlp",
          _mlp_data, lambda d: np_mlp_forward(d["params"], d["x"])[-1], {
              "fastlog": _fl_mlp_predict,
              "numpy": _np_mlp_predict,
              "torch": _torch_mlp_predict,
          }),
    Group("linear_cross_entropy", "fused linear + cross-entropy forward+backward (loss, dx, dW)",
          "linear", _linear_data,
          lambda d: np_linear_cross_entropy_and_grad(d["x"], d["w"], d["y"]), {
              "fastlog": _fl_linear_ce,
              "numpy": _simple(lambda d: np_linear_cross_entropy_and_grad(d["x"], d["w"], d["y"])),
              "torch": _torch_linear_ce,
          }),
]}

ALIASES = {
    "mlp": ("mlp_train", "mlp_predict"),
    "softmax_family": ("log_softmax", "softmax", "logsumexp"),
    "losses": ("cross_entropy", "cross_entropy_fwd_bwd", "nll", "bce_with_logits"),
    "ce": ("cross_entropy", "cross_entropy_fwd_bwd"),
}

# ---------------------------------------------------------------- presets --
ROW_SHAPES = ((64, 10), (4096, 10), (4096, 1000), (1024, 32000), (128, 128256))
SCALING_SHAPES = ((4096, 1000), (1024, 32000))
MLP_BATCHES = ((64,), (1024,), (4096,))
LINEAR_SHAPES = ((256, 512, 32000), (1024, 1024, 32000))
F32, F64 = "float32", "float64"

# Per preset: group -> list of (shape, dtypes, threads).  A thread count of 2
# means "2 if this machine has 2 or more cores".
# quick: float32 at every shape, float64 where it stays cheap (the float64 runs of
# the two largest shapes take NumPy/SciPy/PyTorch seconds each: --full has them).
_MAIN = ([(s, (F32, F64), (1,)) for s in ROW_SHAPES[:3]] + [(s, (F32,), (1,)) for s in ROW_SHAPES[3:]]
         + [(s, (F32,), (2,)) for s in SCALING_SHAPES])
_SIDE = [(s, (F32,), (1,)) for s in ((64, 10), (4096, 1000), (128, 128256))]
PRESETS = {
    "quick": {
        "log_softmax": _MAIN,
        "cross_entropy_fwd_bwd": _MAIN,
        "softmax": _SIDE,
        "logsumexp": _SIDE,
        "cross_entropy": _SIDE,
        "nll": _SIDE,
        "bce_with_logits": [(s, (F32,), (1,)) for s in ((64, 10), (4096, 1000))],
        "mlp_train": [((64,), (F32,), (1,)), ((1024,), (F32,), (1,))],
        "mlp_predict": [((64,), (F32,), (1,)), ((1024,), (F32,), (1,))],
        "linear_cross_entropy": [(LINEAR_SHAPES[0], (F32,), (1,))],
    },
    "full": dict(
        {g: [(s, (F32, F64), (1, 2)) for s in ROW_SHAPES]
         for g in ("log_softmax", "softmax", "logsumexp", "cross_entropy", "cross_entropy_fwd_bwd",
                   "nll", "bce_with_logits")},
        mlp_train=[(b, (F32, F64), (1, 2)) for b in MLP_BATCHES],
        mlp_predict=[(b, (F32, F64), (1, 2)) for b in MLP_BATCHES],
        linear_cross_entropy=[(s, (F32,), (1, 2)) for s in LINEAR_SHAPES],
    ),
    # Seconds-long smoke run for the tests (hidden option --tiny).
    "tiny": dict(
        {g: [((8, 5), (F32, F64), (1,)), ((4, 1000), (F32,), (1, 2))]
         for g in ("log_softmax", "softmax", "logsumexp", "cross_entropy", "cross_entropy_fwd_bwd",
                   "nll", "bce_with_logits")},
        mlp_train=[((8,), (F32,), (1,))],
        mlp_predict=[((8,), (F32,), (1,))],
        linear_cross_entropy=[((8, 16, 50), (F32,), (1,))],
    ),
}


def expand_groups(names):
    """Group names and aliases -> ordered group names (ValueError for unknown ones)."""
    out = []
    for n in names:
        n = n.strip().lower().replace("-", "_")
        if not n:
            continue
        if n == "all":
            members = tuple(GROUPS)
        elif n in ALIASES:
            members = ALIASES[n]
        elif n in GROUPS:
            members = (n,)
        else:
            raise ValueError(f"unknown group {n!r}; choose from {', '.join(list(GROUPS) + list(ALIASES))}")
        out.extend(m for m in members if m not in out)
    return out


def plan(preset="quick", groups=None, shapes=None, dtypes=None, threads=None, max_threads=None):
    """The list of :class:`Case` to run.

    `groups` (names or aliases), `shapes` (tuples, for the N x C groups),
    `dtypes` and `threads` override the preset's choices.  Thread counts
    above `max_threads` (default: this machine's usable cores) are dropped.
    """
    if max_threads is None:
        max_threads = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (
            os.cpu_count() or 1)
    spec = PRESETS[preset]
    names = expand_groups(groups) if groups else list(spec)
    cases = []
    for g in names:
        entries = spec.get(g, [])
        if shapes is not None and GROUPS[g].kind == "rows":
            all_threads = sorted({t for _, _, ts in entries for t in ts}) or [1]
            all_dtypes = [d for d in (F32, F64) if any(d in ds for _, ds, _ in entries)] or [F32]
            entries = [(s, tuple(all_dtypes), tuple(all_threads)) for s in shapes]
        for shape, dts, ths in entries:
            for dt in (dtypes or dts):
                for th in (threads or ths):
                    if th > max_threads:
                        continue
                    c = Case(g, tuple(shape), np.dtype(dt).name, int(th))
                    if c not in cases:
                        cases.append(c)
    return cases
