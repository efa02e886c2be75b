"""Which cases run: :class:`Case`, the presets (quick, full, tiny) and :func:`plan`."""
import os
from dataclasses import dataclass

from .groups import GROUPS, expand_groups

__all__ = ["Case", "PRESETS", "ROW_SHAPES", "plan", "parse_shape", "shape_label", "usable_cores"]


@dataclass(frozen=True)
class Case:
    """One (group, shape, dtype, threads) point.

    Parameters
    ----------
    group : str
        A key of ``GROUPS``.
    shape : tuple of int
        The operation's shape (see :class:`~fastlog.bench.groups.Group`).
    dtype : str
        One of the group's dtypes.
    threads : int
        The thread count every library is pinned to.

    Examples
    --------
    >>> from fastlog.bench.presets import Case
    >>> c = Case("linear_cross_entropy", (256, 512, 32000), "float32", 1)
    >>> c.label, c.data_key
    ('256x512 @ 32000x512', ('linear_cross_entropy', (256, 512, 32000), 'float32'))
    """
    group: str
    shape: tuple
    dtype: str
    threads: int

    @property
    def data_key(self):
        """(group, shape, dtype): the inputs, shared by every thread count."""
        return (self.group, self.shape, self.dtype)

    @property
    def label(self):
        """The shape as the report prints it (see :func:`shape_label`)."""
        return shape_label(self.group, self.shape)


def shape_label(group, shape):
    """The shape as the report prints it: 'N x C', 'batch B' or the linear layer's GEMM.

    Parameters
    ----------
    group : str
        A group name (unknown names are printed as rows).
    shape : tuple of int
        The case's shape.

    Examples
    --------
    >>> from fastlog.bench.presets import shape_label
    >>> shape_label("softmax", (4096, 1000)), shape_label("mlp_train", (64,))
    ('4096x1000', 'batch 64')
    """
    kind = GROUPS[group].kind if group in GROUPS else "rows"
    if kind == "mlp":
        return f"batch {shape[0]}"
    if kind == "linear":
        return f"{shape[0]}x{shape[1]} @ {shape[2]}x{shape[1]}"
    return "x".join(str(n) for n in shape)


def parse_shape(text):
    """'4096x1000' -> (4096, 1000).

    Parameters
    ----------
    text : str
        Dimensions separated by 'x' (or '*').

    Examples
    --------
    >>> from fastlog.bench.presets import parse_shape
    >>> parse_shape("4096x1000"), parse_shape("64*10")
    ((4096, 1000), (64, 10))
    """
    try:
        dims = tuple(int(p) for p in text.lower().replace("*", "x").split("x"))
    except ValueError:
        raise ValueError(f"bad shape {text!r}: expected e.g. 4096x1000") from None
    if not dims or any(d < 1 for d in dims):
        raise ValueError(f"bad shape {text!r}: dimensions must be positive")
    return dims


def usable_cores():
    """The cores this process may run on (its CPU affinity), else ``os.cpu_count()``.

    Examples
    --------
    >>> from fastlog.bench.presets import usable_cores
    >>> usable_cores() >= 1
    True
    """
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


ROW_SHAPES = ((64, 10), (4096, 10), (4096, 1000), (1024, 32000), (128, 128256))
SCALING_SHAPES = ((4096, 1000), (1024, 32000))
MLP_BATCHES = ((64,), (1024,), (4096,))
LINEAR_SHAPES = ((256, 512, 32000), (1024, 1024, 32000))
F32, F64, BF16, F16 = "float32", "float64", "bfloat16", "float16"
_ROW_GROUPS = ("log_softmax", "softmax", "logsumexp", "cross_entropy", "cross_entropy_fwd_bwd",
               "nll", "bce_with_logits")

# Per preset: group -> list of (shape, dtypes, threads).  Thread counts above the
# machine's cores are dropped.  quick: float32 everywhere, float64 where it stays
# cheap (the float64 runs of the two largest shapes take other libraries seconds).
_MAIN = ([(s, (F32, F64), (1,)) for s in ROW_SHAPES[:3]] + [(s, (F32,), (1,)) for s in ROW_SHAPES[3:]]
         + [(s, (F32,), (2,)) for s in SCALING_SHAPES])
_SIDE = [(s, (F32,), (1,)) for s in ((64, 10), (4096, 1000), (128, 128256))]
_HALF = [(s, (BF16, F16), (1,)) for s in ((4096, 1000), (1024, 32000))]
# quick: the half-precision rows of the speed targets (README report)
_HALF_QUICK = [(s, (BF16, F16), (1,)) for s in ((1024, 32000), (128, 128256))]
PRESETS = {
    "quick": {
        "log_softmax": _MAIN + _HALF_QUICK,
        "cross_entropy_fwd_bwd": _MAIN + _HALF_QUICK,
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
        {g: [(s, (F32, F64), (1, 2)) for s in ROW_SHAPES] + (_HALF if g in ("log_softmax",
                                                                           "cross_entropy_fwd_bwd") else [])
         for g in _ROW_GROUPS},
        mlp_train=[(b, (F32, F64), (1, 2)) for b in MLP_BATCHES],
        mlp_predict=[(b, (F32, F64), (1, 2)) for b in MLP_BATCHES],
        linear_cross_entropy=[(s, (F32,), (1, 2)) for s in LINEAR_SHAPES],
    ),
    # Seconds-long smoke run for the tests (hidden option --tiny).
    "tiny": dict(
        {g: [((8, 5), (F32, F64), (1,)), ((4, 1000), (F32,), (1, 2))] for g in _ROW_GROUPS},
        mlp_train=[((8,), (F32,), (1,))],
        mlp_predict=[((8,), (F32,), (1,))],
        linear_cross_entropy=[((8, 16, 50), (F32,), (1,))],
    ),
}


def plan(preset="quick", groups=None, shapes=None, dtypes=None, threads=None, max_threads=None):
    """The list of :class:`Case` to run.

    `groups` (names or aliases), `shapes` (tuples, for the N x C groups),
    `dtypes` and `threads` override the preset's choices.  A dtype a group does
    not take (half precision for the MLP and linear+CE) and thread counts above
    `max_threads` (default: this machine's usable cores) are dropped.

    Parameters
    ----------
    preset : {'quick', 'full', 'tiny'}
        The preset (``PRESETS``).
    groups : list of str, optional
        Group names or aliases (default: the preset's).
    shapes : list of tuple, optional
        Shapes for the N x C groups (with the preset's dtypes and thread counts).
    dtypes, threads : list, optional
        Replace the preset's dtypes / thread counts.
    max_threads : int, optional
        Drop thread counts above it (default: :func:`usable_cores`).

    Examples
    --------
    >>> from fastlog.bench.presets import plan
    >>> plan("quick", groups=["linear_cross_entropy"])
    [Case(group='linear_cross_entropy', shape=(256, 512, 32000), dtype='float32', threads=1)]
    >>> [(c.shape, c.dtype) for c in plan("quick", groups=["ce"], shapes=[(64, 10)], threads=[1])]
    [((64, 10), 'float32'), ((64, 10), 'float32'), ((64, 10), 'float64')]
    """
    max_threads = usable_cores() if max_threads is None else max_threads
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
                    if th > max_threads or dt not in GROUPS[g].dtypes:
                        continue
                    c = Case(g, tuple(shape), dt, int(th))
                    if c not in cases:
                        cases.append(c)
    return cases
