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
    """The NumPy dtype called `name` (ValueError if unknown or if ml_dtypes is missing)."""
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
    return {"float32": 4, "float64": 8, "bfloat16": 2, "float16": 2}[name]


def is_float(a):
    """True for a floating ndarray, bfloat16 (a NumPy 'V' kind) included."""
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
_CACHE = {}


def data_for(group, shape, dtype):
    """The cached inputs of (group, shape, dtype) as a dict of arrays (`group` is a Group)."""
    key = (group.name, tuple(shape), dtype)
    d = _CACHE.get(key)
    if d is None:
        d = _CACHE[key] = MAKERS[group.kind](group.name, tuple(shape), np_dtype(dtype))
    return d


def clear_data():
    """Drop the cached inputs (the runner does this between shapes to bound memory)."""
    _CACHE.clear()
