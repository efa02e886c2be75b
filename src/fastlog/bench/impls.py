"""The contenders: how fastlog, NumPy (written the usual way), SciPy and PyTorch compute each group.

A builder takes the case's inputs (a dict of arrays) and returns ``fn`` (what
is timed) or ``(fn, result)`` where ``result()`` gives the value to check after
one call.  A builder raises :class:`Unavailable` when its library, API or dtype
is missing.  Half precision: NumPy has no fast bfloat16/float16 math, so the
NumPy contender upcasts to float32 and casts back (what one writes by hand);
PyTorch gets ``torch.bfloat16`` / ``torch.float16`` tensors; fastlog is called
on the half arrays and is shown as unavailable while it raises TypeError for them.
"""
import numpy as np

import fastlog

from .data import HALF

__all__ = ["Unavailable", "LIBRARIES", "COMPILED", "TORCH_PAIRS", "TORCH_INSTALL", "torch_modules",
           "to_torch", "to_numpy"]

# fastlog (the NumPy face), NumPy, SciPy and PyTorch (eager), then PyTorch's functions
# under torch.compile (Inductor), fastlog.torch's functions eagerly, and fastlog.torch's
# functions under torch.compile (what a model compiled after fastlog.torch.patch() runs).
LIBRARIES = ("fastlog", "numpy", "scipy", "torch", "torch.compile", "fastlog.torch", "fastlog.torch.compile")
COMPILED = ("torch.compile", "fastlog.torch.compile")
# (contender, what it replaces): the report's "A vs B" columns for the torch face
TORCH_PAIRS = (("fastlog.torch", "torch"), ("fastlog.torch.compile", "torch.compile"))
TORCH_INSTALL = "pip install torch==2.13.0"   # the README's pin (a CPU wheel)
MLP_LR = 0.05


class Unavailable(Exception):
    """A library, API or dtype this case needs is not installed / not built.

    Examples
    --------
    >>> from fastlog.bench.impls import Unavailable
    >>> isinstance(Unavailable("no PyTorch"), Exception)
    True
    """


_torch_cache: list = []


def torch_modules():
    """(torch, torch.nn.functional), or raise Unavailable.

    Examples
    --------
    >>> from fastlog.bench.impls import Unavailable, torch_modules
    >>> try:
    ...     torch, F = torch_modules()
    ...     print(F.softmax is torch.nn.functional.softmax)
    ... except Unavailable:                    # PyTorch not installed
    ...     print(True)
    True
    """
    if not _torch_cache:
        try:
            import torch
            import torch.nn.functional as F
        except ImportError:
            _torch_cache.append(None)
        else:
            _torch_cache.append((torch, F))
    if _torch_cache[0] is None:
        raise Unavailable(f"PyTorch is not installed ({TORCH_INSTALL} to compare against it)")
    return _torch_cache[0]


def to_torch(a):
    """A tensor of the same dtype (bfloat16 arrays go through float32, exactly).

    Parameters
    ----------
    a : ndarray
        float32, float64, float16 or bfloat16 (ml_dtypes).

    Examples
    --------
    >>> import numpy as np
    >>> import torch
    >>> from fastlog.bench.impls import to_torch
    >>> to_torch(np.array([1.5, 2.0], np.float16))
    tensor([1.5000, 2.0000], dtype=torch.float16)
    """
    torch, _ = torch_modules()
    if a.dtype.name == "bfloat16":
        return torch.from_numpy(a.astype(np.float32)).to(torch.bfloat16)
    return torch.from_numpy(a)


def to_numpy(r):
    """A library's result as NumPy arrays (tuples kept; torch half tensors widened).

    Parameters
    ----------
    r : ndarray, tensor, scalar, or a tuple / list of them
        A library's result.

    Examples
    --------
    >>> import numpy as np
    >>> from fastlog.bench.impls import to_numpy
    >>> to_numpy((np.float64(1.0), np.array([1, 2])))
    (array(1.), array([1, 2]))
    """
    if isinstance(r, (tuple, list)):
        return tuple(to_numpy(v) for v in r)
    if hasattr(r, "detach"):
        t = r.detach().cpu()
        return (t.float() if str(t.dtype) == "torch.bfloat16" else t).numpy()
    a = np.asarray(r)
    return a.astype(np.float32) if a.dtype.name == "bfloat16" else a


def _dtype_of(d):
    return d["x"].dtype


# -------------------------------------------------------------- fastlog --
def fastlog_api(name):
    fn = getattr(fastlog, name, None)
    if fn is None:
        raise Unavailable(f"fastlog.{name} is not in this build of fastlog")
    return fn


def fl(name, call):
    """fastlog.`name` called as call(fn, d); a half dtype it rejects is Unavailable."""
    def build(d):
        fn = fastlog_api(name)
        if _dtype_of(d).name in HALF:
            try:
                call(fn, d)
            except TypeError as e:
                raise Unavailable(f"no {_dtype_of(d).name} kernels in this fastlog yet "
                                  "(its functions raise TypeError for that dtype)") from e
        return lambda: call(fn, d)
    return build


# ---------------------------------------------------------------- NumPy --
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
    return -np_log_softmax(x)[np.arange(len(y)), y].mean()


def np_cross_entropy_and_grad(x, y):
    rows = np.arange(len(y))
    lp = np_log_softmax(x)
    g = np.exp(lp)
    g[rows, y] -= 1
    g /= len(y)
    return -lp[rows, y].mean(), g


def np_nll_and_grad(lp, y):
    rows = np.arange(len(y))
    g = np.zeros_like(lp)
    g[rows, y] = -1.0 / len(y)
    return -lp[rows, y].mean(), g


def np_bce_with_logits_and_grad(x, t):
    loss = (np.maximum(x, 0) - x * t + np.log1p(np.exp(-np.abs(x)))).mean()
    return loss, (1 / (1 + np.exp(-x)) - t) / x.size


def np_mlp_forward(params, x):
    acts = [x]
    n_layers = len(params) // 2
    for i in range(n_layers):
        h = acts[-1] @ params[2 * i].T + params[2 * i + 1]
        acts.append(np.maximum(h, 0) if i < n_layers - 1 else h)
    return acts


def np_mlp_train_step(params, x, y, lr):
    """One SGD step (mean cross-entropy) on `params` in place; returns the loss."""
    acts = np_mlp_forward(params, x)
    loss, g = np_cross_entropy_and_grad(acts[-1], y)
    for i in reversed(range(len(params) // 2)):
        gw, gb = g.T @ acts[i], g.sum(axis=0)
        if i > 0:
            g = g @ params[2 * i]
            g *= acts[i] > 0
        params[2 * i] -= lr * gw
        params[2 * i + 1] -= lr * gb
    return loss


def np_linear_cross_entropy_and_grad(x, w, y):
    loss, g = np_cross_entropy_and_grad(x @ w.T, y)
    return loss, g @ w, g.T @ x


def numpy_rows(f, *keys):
    """NumPy on the arrays `keys`; half inputs are upcast to float32 and the results cast back
    (inside the timed call: that is the cost of doing it by hand)."""
    def build(d):
        args, dt = [d[k] for k in keys], _dtype_of(d)
        if dt.name not in HALF:
            return lambda: f(*args)

        def run():
            r = f(*[a.astype(np.float32) if a.dtype == dt else a for a in args])
            return tuple(np.asarray(v).astype(dt) for v in r) if isinstance(r, tuple) else r.astype(dt)
        return run
    return build


# ---------------------------------------------------------------- SciPy --
def scipy_special(name):
    def build(d):
        import scipy.special as sp
        fn, x = getattr(sp, name), d["x"]
        return lambda: fn(x, axis=-1)
    return build


# -------------------------------------------------------------- PyTorch --
def _face(face):
    """torch.nn.functional ('torch') or fastlog.torch ('fastlog.torch'): the namespace the
    contender's code calls (``F.cross_entropy`` etc.)."""
    torch, F = torch_modules()
    if face == "torch":
        return torch, F
    try:
        import fastlog.torch as FL
    except ImportError as e:   # pragma: no cover - fastlog.torch imports with any torch 2.x
        raise Unavailable(f"fastlog.torch does not import here: {e}") from e
    return torch, FL


def _maybe_compiled(torch, fn, compiled):
    """`fn`, or `fn` under torch.compile (Inductor, static shapes, the whole function as one
    graph).  Dynamo's cache is reset first: each case gets its own graph, compiled for
    this thread count (Inductor bakes it in); the runner's first call compiles it, so
    the timed calls are warm and compile time is excluded."""
    if not compiled:
        return fn
    torch._dynamo.reset()
    return torch.compile(fn, fullgraph=True, dynamic=False)


def torch_fwd(f, face="torch", compiled=False):
    """f(torch, F, tensors) under no_grad, F being torch.nn.functional or fastlog.torch."""
    def build(d):
        torch, F = _face(face)
        t = {k: to_torch(v) for k, v in d.items() if isinstance(v, np.ndarray)}
        g = _maybe_compiled(torch, lambda tt: f(torch, F, tt), compiled)

        def run():
            with torch.no_grad():
                return g(t)
        return run
    return build


def torch_loss_backward(loss_fn, face="torch", compiled=False):
    """fwd+bwd: loss_fn(F, x, tensors) -> loss; the run returns (loss, d loss / d x)."""
    def build(d):
        torch, F = _face(face)
        t = {k: to_torch(v) for k, v in d.items() if isinstance(v, np.ndarray)}
        xt = t["x"].clone().requires_grad_(True)
        g = _maybe_compiled(torch, lambda x, tt: loss_fn(F, x, tt), compiled)

        def run():
            xt.grad = None
            loss = g(xt, t)
            loss.backward()
            return loss, xt.grad
        return run
    return build


def torch_faces(make, *args):
    """The four PyTorch-side contenders of a group: {library: builder}.

    Parameters
    ----------
    make : callable
        :func:`torch_fwd`, :func:`torch_loss_backward` or :func:`torch_linear_ce`.
    *args
        Its leading arguments.

    Examples
    --------
    >>> from fastlog.bench.impls import torch_faces, torch_fwd
    >>> sorted(torch_faces(torch_fwd, lambda torch, F, t: F.log_softmax(t["x"], dim=-1)))
    ['fastlog.torch', 'fastlog.torch.compile', 'torch', 'torch.compile']
    """
    return {"torch": make(*args), "torch.compile": make(*args, compiled=True),
            "fastlog.torch": make(*args, face="fastlog.torch"),
            "fastlog.torch.compile": make(*args, face="fastlog.torch", compiled=True)}


# ------------------------------------------------------------------ MLP --
def _fl_mlp(d):
    cls = getattr(fastlog, "MLP", None)
    if cls is None:
        raise Unavailable("fastlog.MLP is not in this build of fastlog")
    model = cls(sizes=tuple(p.shape[1] for p in d["params"][::2]) + (d["params"][-1].shape[0],),
                dtype=d["x"].dtype, seed=0)
    for dst, src in zip(model.parameters(), d["params"]):
        dst[...] = src
    return model


def fl_mlp_train(d):
    model, x, y = _fl_mlp(d), d["x"], d["y"]
    return (lambda: model.train_step(x, y, MLP_LR)), (lambda: tuple(model.parameters()))


def fl_mlp_predict(d):
    model, x = _fl_mlp(d), d["x"]
    return lambda: model.forward(x)


def np_mlp_train(d):
    params, x, y = [p.copy() for p in d["params"]], d["x"], d["y"]
    return (lambda: np_mlp_train_step(params, x, y, MLP_LR)), (lambda: tuple(params))


def np_mlp_predict(d):
    params, x = d["params"], d["x"]
    return lambda: np_mlp_forward(params, x)[-1]


def _torch_mlp(d):
    torch, F = torch_modules()
    layers, n = [], len(d["params"]) // 2
    for i in range(n):
        w, b = (torch.from_numpy(p) for p in d["params"][2 * i:2 * i + 2])
        lin = torch.nn.Linear(w.shape[1], w.shape[0], dtype=w.dtype)
        with torch.no_grad():
            lin.weight.copy_(w)
            lin.bias.copy_(b)
        layers += [lin, torch.nn.ReLU()] if i < n - 1 else [lin]
    return torch, F, torch.nn.Sequential(*layers)


def torch_mlp_train(d):
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


def torch_mlp_predict(d):
    torch, F, model = _torch_mlp(d)
    xt = torch.from_numpy(d["x"])

    def run():
        with torch.no_grad():
            return model(xt)
    return run


# ------------------------------------------------------- linear + CE --
def fl_linear_ce(d):
    fn = fastlog_api("linear_cross_entropy_and_grad")
    x, w, y = d["x"], d["w"], d["y"]
    return lambda: tuple(fn(x, w, y)[:3])


def torch_linear_ce(face="torch", compiled=False):
    """F.linear_cross_entropy forward+backward; the run returns (loss, dx, dW)."""
    def build(d):
        torch, F = _face(face)
        if not hasattr(torch_modules()[1], "linear_cross_entropy"):
            raise Unavailable("this PyTorch has no F.linear_cross_entropy (added in 2.13)")
        xt = torch.from_numpy(d["x"]).clone().requires_grad_(True)
        wt = torch.from_numpy(d["w"]).clone().requires_grad_(True)
        yt = torch.from_numpy(d["y"])
        g = _maybe_compiled(torch, lambda x, w, y: F.linear_cross_entropy(x, w, y), compiled)

        def run():
            xt.grad = wt.grad = None
            loss = g(xt, wt, yt)
            loss.backward()
            return loss, xt.grad, wt.grad
        return run
    return build
