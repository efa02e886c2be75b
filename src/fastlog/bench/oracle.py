"""The check before timing: every result against ``fastlog._reference`` (float64 NumPy).

The oracle is the package's one slow reference module, the same one the tests
use; it runs once per (group, shape, dtype) on the inputs upcast to float64
(half-precision inputs are the same rounded values, so only the computation
differs).
"""
import numpy as np

from .data import is_float
from .impls import to_numpy

__all__ = ["Oracle", "agreement", "reference_for", "TOLERANCES"]

# (rtol, atol as a fraction of max|oracle|) per dtype.  Half precision follows
# PyTorch's OpInfo tolerance for bfloat16 (rtol 0.016), with an atol wide enough
# for results that pass through a half-precision sum.
TOLERANCES = {"float32": (1e-4, 1e-5), "float64": (1e-8, 1e-11),
              "bfloat16": (1.6e-2, 1e-2), "float16": (2e-3, 1e-3)}


def _as_float64(d):
    out = {}
    for k, v in d.items():
        if is_float(v):
            out[k] = v.astype(np.float64)
        elif isinstance(v, list):
            out[k] = [p.astype(np.float64) for p in v]
        else:
            out[k] = v
    return out


def reference_for(group, d):
    """The float64 oracle (an :class:`Oracle`) of `group` (a Group) on the inputs `d`.

    Parameters
    ----------
    group : Group
        The operation.
    d : dict
        Its inputs (:func:`fastlog.bench.data.data_for`), upcast to float64 here.

    Examples
    --------
    >>> from fastlog.bench.data import data_for
    >>> from fastlog.bench.groups import GROUPS
    >>> from fastlog.bench.oracle import reference_for
    >>> g = GROUPS["cross_entropy_fwd_bwd"]
    >>> ref = reference_for(g, data_for(g, (8, 5), "float32"))
    >>> [v.shape for v in ref.values]                   # loss, gradient
    [(), (8, 5)]
    """
    return Oracle(group.reference(_as_float64(d)))


class Oracle:
    """The oracle's result, with the per-element tolerances precomputed once.

    A library's result agrees when every element satisfies
    ``|out - ref| <= rtol * |ref| + atol * max|ref|`` (see TOLERANCES) and the
    shapes match.  NaN or inf where the oracle is finite fails.

    Parameters
    ----------
    values : ndarray, tensor or tuple of them
        The float64 reference result(s).

    Examples
    --------
    >>> import numpy as np
    >>> from fastlog.bench.oracle import Oracle
    >>> ref = Oracle(np.array([1.0, 2.0]))
    >>> ref.check(np.array([1.0, 2.00001], np.float32), "float32")[0]
    True
    >>> ref.check(np.array([1.0, 2.1]), "float64")[0]
    False
    """

    def __init__(self, values):
        v = to_numpy(values)
        self.values = tuple(np.asarray(a, dtype=np.float64) for a in (v if isinstance(v, tuple) else (v,)))
        self.scales = tuple(float(np.max(np.abs(a))) if a.size else 1.0 for a in self.values)
        self._tol = {}

    def _tolerances(self, dtype):
        name = dtype if isinstance(dtype, str) else np.dtype(dtype).name
        if name not in self._tol:
            rtol, atol = TOLERANCES.get(name, TOLERANCES["float64"])
            self._tol[name] = tuple(np.abs(a) * rtol + atol * (s or 1.0)
                                    for a, s in zip(self.values, self.scales))
        return self._tol[name]

    def check(self, out, dtype):
        """``(ok, err)``; err is the largest ``|out - ref| / max|ref|``.

        Parameters
        ----------
        out : ndarray, tensor or tuple of them
            A library's result (as many parts as the oracle).
        dtype : str or dtype
            The case's dtype: it picks the tolerances (``TOLERANCES``).

        Examples
        --------
        >>> import numpy as np
        >>> from fastlog.bench.oracle import Oracle
        >>> ok, err = Oracle(np.array([2.0, 4.0])).check(np.array([2.0, 4.004]), "float16")
        >>> ok, round(err, 6)
        (True, 0.001)
        """
        out = to_numpy(out)
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
            d = np.abs(np.subtract(o.reshape(-1), r.reshape(-1), dtype=np.float64))
            if not np.all(d <= tol.reshape(-1)):  # NaN compares False: fails
                ok = False
            m = float(np.max(d))
            worst = max(worst, m / (scale or 1.0) if m == m else float("inf"))
        return ok, worst


def agreement(out, ref, dtype):
    """Compare a result with the oracle (an :class:`Oracle` or plain values): ``(ok, err)``.

    Parameters
    ----------
    out : ndarray, tensor or tuple of them
        A library's result.
    ref : Oracle or array_like
        The oracle, or plain float64 values to make one from.
    dtype : str or dtype
        The case's dtype.

    Examples
    --------
    >>> import numpy as np
    >>> from fastlog.bench.oracle import agreement
    >>> agreement(np.float32(0.5), np.array(0.5), "float32")
    (True, 0.0)
    """
    return (ref if isinstance(ref, Oracle) else Oracle(ref)).check(out, dtype)
