"""Loss inputs laid out as rows: (C,), (N, C) or (N, C, d1, ..., dk) seen as (M, C).

The kernels read C-contiguous rows of classes; this module brings any input
to that layout once (free for C-contiguous 1-D and 2-D inputs), chooses where
the gradient is written, and puts it back in the input's layout.
"""
import numpy as np

from .._validation import _F32, _F64, check_out, check_overlap, float_array

__all__ = ["Rows", "check_grad_out"]


class Rows:
    """An input of shape (C,), (N, C) or (N, C, d...) seen as 2-D rows (M, C).

    `rows` is the input itself when it is already C-contiguous and 2-D (or 1-D);
    otherwise a private copy with the class axis moved last (`owned` True).
    """
    __slots__ = ("a", "rows", "C", "batch_shape", "owned")

    def __init__(self, x, name="input"):
        # Fast path first: a native float32/float64 ndarray (the per-call
        # overhead matters at N x C = 64 x 10).
        dt = x.dtype if type(x) is np.ndarray else None
        a = x if (dt is _F32 or dt is _F64) and x.flags.aligned else float_array(x, name, promote_int=False)
        nd = a.ndim
        if nd == 0:
            raise ValueError(f"{name} must have shape (C,), (N, C) or (N, C, d1, ...), got a 0-d array")
        shape = a.shape
        C = shape[0] if nd == 1 else shape[1]
        owned = False
        if nd <= 2:
            rows = a.reshape(1, C) if nd == 1 else a
            if not rows.flags.c_contiguous:
                rows = np.ascontiguousarray(rows)
                owned = True
            self.batch_shape = () if nd == 1 else (shape[0],)
        else:
            # Always a private copy: with d1*...*dk == 1 (or C == 1) the moved
            # view is already C-contiguous, and ascontiguousarray would hand back
            # the input itself, which the kernels then overwrite with the gradient.
            rows = np.array(np.moveaxis(a, 1, -1), order="C").reshape(-1, C)
            owned = True
            self.batch_shape = (shape[0],) + shape[2:]
        self.a, self.rows, self.C, self.owned = a, rows, C, owned

    def same_layout(self, t, name):
        """A probability target of the input's shape, laid out like `rows`."""
        a = self.a
        if t.shape != a.shape:
            raise ValueError(f"{name} has shape {t.shape}; probability targets must have the "
                             f"input's shape {a.shape}")
        t = t.astype(a.dtype, copy=False)
        if not t.flags.aligned:
            t = t.copy()
        if a.ndim <= 2:
            return np.ascontiguousarray(t).reshape(self.rows.shape)
        return np.ascontiguousarray(np.moveaxis(t, 1, -1)).reshape(self.rows.shape)

    def grad_buffer(self, out):
        """Where the kernel writes the gradient (rows layout), honouring `out`."""
        a = self.a
        if out is not None:
            if not (type(out) is np.ndarray and out.dtype is a.dtype and out.shape == a.shape
                    and out.flags.writeable and out.flags.aligned):
                check_out(out, a.shape, a.dtype)
            if a.ndim <= 2 and out.flags.c_contiguous:
                return out if a.ndim == 2 else out.reshape(self.rows.shape)
        # The private copy can take the gradient in place.
        return self.rows if self.owned else np.empty(self.rows.shape, a.dtype)

    def finish_grad(self, g, out):
        """The gradient in the input's layout (into `out` if given)."""
        a = self.a
        if out is not None and a.ndim <= 2 and out.flags.c_contiguous:
            return out
        if a.ndim <= 2:
            res = g.reshape(a.shape)
        else:
            res = np.moveaxis(g.reshape(self.batch_shape + (self.C,)), -1, 1)
        if out is None:
            return np.ascontiguousarray(res) if a.ndim > 2 else res
        out[...] = res
        return out


def check_grad_out(out: np.ndarray, a: np.ndarray, input, target, weight) -> None:
    """The out= overlap rule for the gradient of a loss: `out` may be the input
    itself (the kernels read each row before they write its gradient), and must
    not overlap the input otherwise, nor the targets or the class weights."""
    if out is not a:
        check_out(out, a.shape, a.dtype)
    if out is not a or not isinstance(target, np.ndarray) or isinstance(weight, np.ndarray):
        check_overlap(out, ((input, "input"), (target, "target"), (weight, "weight")),
                      inplace=("input",))
    else:   # out is the input: only the target can still overlap
        check_overlap(out, ((target, "target"),))
