"""Inputs of the benchmark: dtypes by name, and the cached arrays of one (group, shape, dtype).

Every library is timed on the same arrays: they are made once per (group,
shape, dtype) from a seeded generator and reused for every library and thread
count.  bfloat16 is ``ml_dtypes.bfloat16`` on the NumPy side (imported only
when a bfloat16 case runs).
"""
import numpy as np

from .. import _reference

__all__ = ["DTYPES", "HALF", "np_dtype", "itemsize", "is_float", "data_for", "clear_data",
           "MLP_SIZES"]

DTYPES = ("float32", "float64", "bfloat16", "float16")
HALF = ("bfloat16", "float16")
MLP_SIZES = (784, 128, 64, 10)


def np_dtype(name):
    """The NumPy dtype called `name` (ValueError if unknown or if ml_dtypes is missing).

    Parameters
    ----------
    name : str
        One of ``DTYPES``: 'float32', 'float64', 'bfloat16' (needs ml_dtypes), 'float16'.

    Examples
    --------
    >>> from fastlog.bench.data import np_dtype
    >>> np_dtype("float16")
    dtype('float16')
    """
    if name == "bfloat16":
        try:
            import ml_dtypes
        except ImportError:
            raise ValueError("bfloat16 needs the ml_dtypes package (pip install ml_dtypes)") from None
        return np.dtype(ml_dtypes.bfloat16)
    if name not in DTYPES:
        raise ValueError(f"unknown dtype {name!r}; choose from {', '.join(DTYPES)}")
    return np.dtype(name)


def itemsize(name):
    """Bytes per element of the dtype called `name` (no import of ml_dtypes).

    Parameters
    ----------
    name : str
        One of ``DTYPES``.

    Examples
    --------
    >>> from fastlog.bench.data import itemsize
    >>> itemsize("bfloat16"), itemsize("float64")
    (2, 8)
    """
    return {"float32": 4, "float64": 8, "bfloat16": 2, "float16": 2}[name]


def is_float(a):
    """True for a floating ndarray, bfloat16 (a NumPy 'V' kind) included.

    Parameters
    ----------
    a : object
        Anything; only an ndarray can be True.

    Examples
    --------
    >>> import numpy as np
    >>> from fastlog.bench.data import is_float
    >>> is_float(np.zeros(2, np.float16)), is_float(np.zeros(2, np.int64)), is_float(1.0)
    (True, False, False)
    """
    return isinstance(a, np.ndarray) and (a.dtype.kind == "f" or a.dtype.name == "bfloat16")


def _rows_data(group, shape, dtype):
    N, C = shape
    rng = np.random.default_rng([N, C, 17])
    x = rng.standard_normal((N, C), dtype=np.float32) * 3
    d = {}
    if group == "bce_with_logits":
        d["t"] = (rng.random((N, C)) < 0.3).astype(dtype)
    else:
        d["y"] = rng.integers(0, C, N, dtype=np.int64)
    if group == "nll":
        x = _reference.log_softmax(x, axis=-1)  # nll takes log-probabilities
    d["x"] = x.astype(dtype)
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


MAKERS = {"rows": _rows_data, "mlp": _mlp_data, "linear": _linear_data}
_CACHE: dict = {}


def data_for(group, shape, dtype):
    """The cached inputs of (group, shape, dtype) as a dict of arrays (`group` is a Group).

    Parameters
    ----------
    group : Group
        The operation (its ``kind`` says which inputs it takes).
    shape : tuple of int
        (N, C) for the row operations, (batch,) for the MLP, (N, D, V) for linear + CE.
    dtype : str
        One of ``DTYPES``.

    Examples
    --------
    >>> from fastlog.bench.data import data_for
    >>> from fastlog.bench.groups import GROUPS
    >>> d = data_for(GROUPS["cross_entropy"], (8, 5), "float32")
    >>> sorted(d), d["x"].shape, d["x"].dtype, d["y"].dtype
    (['x', 'y'], (8, 5), dtype('float32'), dtype('int64'))
    >>> data_for(GROUPS["cross_entropy"], (8, 5), "float32") is d      # cached
    True
    """
    key = (group.name, tuple(shape), dtype)
    d = _CACHE.get(key)
    if d is None:
        d = _CACHE[key] = MAKERS[group.kind](group.name, tuple(shape), np_dtype(dtype))
    return d


def clear_data():
    """Drop the cached inputs (the runner does this between shapes to bound memory).

    Examples
    --------
    >>> from fastlog.bench.data import clear_data, data_for
    >>> from fastlog.bench.groups import GROUPS
    >>> d = data_for(GROUPS["softmax"], (8, 5), "float32")
    >>> clear_data()
    >>> data_for(GROUPS["softmax"], (8, 5), "float32") is d
    False
    """
    _CACHE.clear()
