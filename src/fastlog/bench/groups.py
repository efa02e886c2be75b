"""The operations the benchmark times (groups), each with its contenders, oracle and floor.

A :class:`Group` names one operation, in words for the report and the plot;
its `impls` map a library to a builder (see :mod:`.impls`), `reference` is the
float64 oracle from ``fastlog._reference``, and `floor` gives the least work
the operation must do for a shape and dtype: the bytes it must read and write
(memory-bound operations) or the floating-point operations of its GEMMs
(compute-bound ones).  :mod:`.floors` turns that into a time.
"""
from dataclasses import dataclass, field

from .. import _reference as ref
from . import impls as I
from .data import MLP_SIZES, itemsize

__all__ = ["Group", "Floor", "GROUPS", "ALIASES", "expand_groups", "FLOAT_DTYPES", "ALL_DTYPES"]

FLOAT_DTYPES = ("float32", "float64")
ALL_DTYPES = ("float32", "float64", "bfloat16", "float16")
TARGET_BYTES = 8   # int64 class index per row
LINE = 64          # a gathered element costs one cache line


@dataclass(frozen=True)
class Floor:
    """What an operation must do at least: `amount` bytes ("memory") or flops ("compute").

    For a memory floor, `array_bytes` is the size of the operation's N x C
    array: the bandwidth is measured on a copy of that size.

    Parameters
    ----------
    kind : {'memory', 'compute'}
        What bounds the operation.
    amount : float
        Bytes read and written ('memory') or floating-point operations ('compute').
    array_bytes : int, default 0
        For a memory floor, the size of the operation's N x C array.

    Examples
    --------
    >>> from fastlog.bench.groups import GROUPS
    >>> GROUPS["softmax"].floor((1024, 1000), "float32")     # read once, write once
    Floor(kind='memory', amount=8192000, array_bytes=4096000)
    """
    kind: str
    amount: float
    array_bytes: int = 0


@dataclass
class Group:
    """One operation the benchmark times, with its contenders, oracle and floor (see the module docstring).

    Parameters
    ----------
    name : str
        Key in ``GROUPS`` and on the command line.
    title, short : str
        Heading of its table; title of its plot panel.
    kind : {'rows', 'mlp', 'linear'}
        The shape of its cases: (N, C), (batch,) or (N, D, V).
    reference : callable
        ``reference(d)``: the float64 result on the inputs ``d`` (``fastlog._reference``).
    impls : dict
        Library name -> builder ``impls[lib](d)`` of a no-argument callable (see :mod:`.impls`).
    floor : callable, optional
        ``floor(shape, dtype)`` -> :class:`Floor`.
    floor_text : str
        What the floor counts, printed under the table.
    dtypes : tuple of str
        The dtypes the operation takes.

    Examples
    --------
    >>> from fastlog.bench.groups import GROUPS
    >>> g = GROUPS["cross_entropy_fwd_bwd"]
    >>> g.kind, sorted(g.impls), g.dtypes
    ('rows', ['fastlog', 'fastlog.torch', 'fastlog.torch.compile', 'numpy', 'torch', 'torch.compile'], ('float32', 'float64', 'bfloat16', 'float16'))
    """
    name: str
    title: str          # table heading
    short: str          # plot panel title
    kind: str           # "rows" (N, C), "mlp" (batch,), "linear" (N, D, V)
    reference: object
    impls: dict
    floor: object = None        # f(shape, dtype) -> Floor
    floor_text: str = ""        # what the floor counts, printed under the table
    dtypes: tuple = field(default=ALL_DTYPES)


def _nc(shape, dtype):
    return shape[0] * shape[1] * itemsize(dtype)


def _mem(f):
    return lambda shape, dtype: Floor("memory", f(shape[0], shape[1], itemsize(dtype)), _nc(shape, dtype))


def _mlp_flops(shape, train):
    S = sum(a * b for a, b in zip(MLP_SIZES[:-1], MLP_SIZES[1:]))
    B = shape[0]
    # forward 2BS; backward: weight gradients 2BS, input gradients of every layer but the first.
    return 2 * B * (3 * S - MLP_SIZES[0] * MLP_SIZES[1]) if train else 2 * B * S


_RW = "reads the N x C input once and writes the N x C output once: 2 x N*C*itemsize bytes"

GROUPS = {g.name: g for g in [
    Group("log_softmax", "log_softmax(x, axis=-1)", "log-softmax", "rows",
          lambda d: ref.log_softmax(d["x"], axis=-1), {
              "fastlog": I.fl("log_softmax", lambda f, d: f(d["x"], axis=-1)),
              "numpy": I.numpy_rows(I.np_log_softmax, "x"),
              "scipy": I.scipy_special("log_softmax"),
              **I.torch_faces(I.torch_fwd, lambda torch, F, t: F.log_softmax(t["x"], dim=-1)),
          }, _mem(lambda n, c, s: 2 * n * c * s), _RW),
    Group("softmax", "softmax(x, axis=-1)", "softmax", "rows",
          lambda d: ref.softmax(d["x"], axis=-1), {
              "fastlog": I.fl("softmax", lambda f, d: f(d["x"], axis=-1)),
              "numpy": I.numpy_rows(I.np_softmax, "x"),
              "scipy": I.scipy_special("softmax"),
              "torch": I.torch_fwd(lambda torch, F, t: F.softmax(t["x"], dim=-1)),
          }, _mem(lambda n, c, s: 2 * n * c * s), _RW),
    Group("logsumexp", "logsumexp(x, axis=-1)", "logsumexp", "rows",
          lambda d: ref.logsumexp(d["x"], axis=-1), {
              "fastlog": I.fl("logsumexp", lambda f, d: f(d["x"], axis=-1)),
              "numpy": I.numpy_rows(I.np_logsumexp, "x"),
              "scipy": I.scipy_special("logsumexp"),
              "torch": I.torch_fwd(lambda torch, F, t: torch.logsumexp(t["x"], dim=-1)),
          }, _mem(lambda n, c, s: n * c * s + n * s),
          "reads the N x C input, writes N results: (N*C + N) x itemsize bytes"),
    Group("cross_entropy", "cross-entropy forward (mean, integer targets)", "cross-entropy forward",
          "rows", lambda d: ref.cross_entropy_and_grad(d["x"], d["y"])[0], {
              "fastlog": I.fl("cross_entropy", lambda f, d: f(d["x"], d["y"])),
              "numpy": I.numpy_rows(I.np_cross_entropy, "x", "y"),
              **I.torch_faces(I.torch_fwd, lambda torch, F, t: F.cross_entropy(t["x"], t["y"])),
          }, _mem(lambda n, c, s: n * c * s + TARGET_BYTES * n),
          "reads the N x C logits and N int64 targets: N*C*itemsize + 8N bytes"),
    Group("cross_entropy_fwd_bwd", "cross-entropy forward+backward (mean, integer targets)",
          "cross-entropy forward+backward", "rows",
          lambda d: ref.cross_entropy_and_grad(d["x"], d["y"]), {
              "fastlog": I.fl("cross_entropy_and_grad", lambda f, d: f(d["x"], d["y"])),
              "numpy": I.numpy_rows(I.np_cross_entropy_and_grad, "x", "y"),
              **I.torch_faces(I.torch_loss_backward, lambda F, x, t: F.cross_entropy(x, t["y"])),
          }, _mem(lambda n, c, s: 2 * n * c * s + TARGET_BYTES * n),
          "reads the N x C logits and N int64 targets, writes the N x C gradient: "
          "2 x N*C*itemsize + 8N bytes"),
    Group("nll", "nll_loss forward+backward (log-probability input)", "NLL loss forward+backward",
          "rows", lambda d: ref.nll_loss_and_grad(d["x"], d["y"]), {
              "fastlog": I.fl("nll_loss_and_grad", lambda f, d: f(d["x"], d["y"])),
              "numpy": I.numpy_rows(I.np_nll_and_grad, "x", "y"),
              "torch": I.torch_loss_backward(lambda F, x, t: F.nll_loss(x, t["y"])),
          }, _mem(lambda n, c, s: n * min(LINE, c * s) + TARGET_BYTES * n + n * c * s),
          "gathers N input elements (one 64-byte cache line each) and N int64 targets, writes the "
          "N x C gradient (all of it, zeros included): N*min(64, C*itemsize) + 8N + N*C*itemsize bytes"),
    Group("bce_with_logits", "binary_cross_entropy_with_logits forward+backward (mean)",
          "BCE with logits forward+backward", "rows",
          lambda d: ref.binary_cross_entropy_with_logits_and_grad(d["x"], d["t"]), {
              "fastlog": I.fl("binary_cross_entropy_with_logits_and_grad", lambda f, d: f(d["x"], d["t"])),
              "numpy": I.numpy_rows(I.np_bce_with_logits_and_grad, "x", "t"),
              "torch": I.torch_loss_backward(
                  lambda F, x, t: F.binary_cross_entropy_with_logits(x, t["t"])),
          }, _mem(lambda n, c, s: 3 * n * c * s),
          "reads the N x C input and N x C target, writes the N x C gradient: 3 x N*C*itemsize bytes"),
    Group("mlp_train", "MLP 784-128-64-10 ReLU: one SGD step (mean cross-entropy)", "MLP training step",
          "mlp", lambda d: ref.mlp_sgd_step(d["params"], d["x"], d["y"], I.MLP_LR), {
              "fastlog": I.fl_mlp_train, "numpy": I.np_mlp_train, "torch": I.torch_mlp_train,
          }, lambda shape, dtype: Floor("compute", _mlp_flops(shape, True)),
          "compute bound: the GEMMs' 2*B*(3*S - 784*128) flops, S = sum of in*out over the layers, "
          "at the measured GEMM rate", FLOAT_DTYPES),
    Group("mlp_predict", "MLP 784-128-64-10 ReLU: inference (logits)", "MLP inference", "mlp",
          lambda d: ref.mlp_forward(d["params"], d["x"]), {
              "fastlog": I.fl_mlp_predict, "numpy": I.np_mlp_predict, "torch": I.torch_mlp_predict,
          }, lambda shape, dtype: Floor("compute", _mlp_flops(shape, False)),
          "compute bound: the GEMMs' 2*B*S flops at the measured GEMM rate", FLOAT_DTYPES),
    Group("linear_cross_entropy", "fused linear + cross-entropy forward+backward (loss, dx, dW)",
          "linear + cross-entropy (fused)", "linear",
          lambda d: ref.linear_cross_entropy_and_grad(d["x"], d["w"], d["y"]), {
              "fastlog": I.fl_linear_ce,
              "numpy": lambda d: (lambda: I.np_linear_cross_entropy_and_grad(d["x"], d["w"], d["y"])),
              **I.torch_faces(I.torch_linear_ce),
          }, lambda shape, dtype: Floor("compute", 6 * shape[0] * shape[1] * shape[2]),
          "compute bound: three N x D x V GEMMs (logits, dx, dW) = 6*N*D*V flops at the measured "
          "GEMM rate", FLOAT_DTYPES),
]}

ALIASES = {
    "mlp": ("mlp_train", "mlp_predict"),
    "softmax_family": ("log_softmax", "softmax", "logsumexp"),
    "losses": ("cross_entropy", "cross_entropy_fwd_bwd", "nll", "bce_with_logits"),
    "ce": ("cross_entropy", "cross_entropy_fwd_bwd"),
}


def expand_groups(names):
    """Group names and aliases -> ordered group names (ValueError for unknown ones).

    Parameters
    ----------
    names : iterable of str
        Group names, aliases (``ALIASES``) or 'all'; case and '-' / '_' do not matter.

    Examples
    --------
    >>> from fastlog.bench.groups import expand_groups
    >>> expand_groups(["ce", "Log-Softmax", "cross_entropy"])
    ['cross_entropy', 'cross_entropy_fwd_bwd', 'log_softmax']
    """
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
