"""Tensor memory for fastlog's kernels: zero-copy NumPy views and the gradient buffer cache.

The kernels read a tensor's own memory through NumPy (``tensor.numpy()`` is
a view, never a copy; a bfloat16 tensor is viewed as an ``ml_dtypes.bfloat16``
array) and their results come back as tensors sharing the arrays' memory
(``torch.from_numpy``).

Gradient buffers: a fresh N x C array costs page faults on first touch
(about half the kernel's own time at 1024 x 32000 here).  Like PyTorch's
caching allocators, the last large (>= 1 MiB) gradient buffer of each shape
is kept and the next call of that shape writes into it, but only once nothing
references it any more (its refcount shows that no tensor, view or storage
still uses it).  Peak memory is unchanged.  :func:`set_buffer_reuse` turns
it off.
"""
import sys

import numpy as np
import torch

from .. import _half

__all__ = ["set_buffer_reuse"]

_REUSE = True
_REUSE_MIN_BYTES = 1 << 20
_buffers: dict = {}


def np_view(t):
    """Zero-copy NumPy view of a CPU tensor (never written to); bfloat16 as ml_dtypes.bfloat16."""
    if t.dtype == torch.bfloat16:
        return t.detach().view(torch.int16).numpy().view(_half.bfloat16())
    return t.detach().numpy()


def to_tensor(a, dtype=None):
    """An ndarray (or NumPy scalar) produced by fastlog, as a tensor sharing its memory
    (cast to `dtype` if given: a float32 loss of a half input becomes PyTorch's loss dtype)."""
    a = np.asarray(a)
    if _half.is_bfloat16(a.dtype):
        t = torch.from_numpy(a.view(np.int16)).view(torch.bfloat16)
    else:
        t = torch.from_numpy(a)
    return t if dtype is None or t.dtype == dtype else t.to(dtype)


def set_buffer_reuse(enabled: bool) -> None:
    """Keep (True, the default) or drop (False) fastlog.torch's cached gradient buffers.

    With reuse on, the most recent large (>= 1 MiB) gradient buffer of each
    shape is kept after its tensors are gone and written again by the next call
    of the same shape, saving the page faults of a fresh allocation.  Peak memory
    is unchanged; between steps one such buffer per shape stays allocated.
    Turning it off releases them.

    Parameters
    ----------
    enabled : bool
        Keep the buffers (True) or release them and stop keeping them (False).

    Examples
    --------
    >>> import fastlog.torch as FL
    >>> FL.set_buffer_reuse(False)   # e.g. before measuring memory
    >>> FL.set_buffer_reuse(True)
    """
    global _REUSE
    _REUSE = bool(enabled)
    if not _REUSE:
        _buffers.clear()


def grad_buffer(shape, dtype):
    """The `out=` array for a gradient of this shape: a cached one that nothing else
    references, a fresh one (kept for later if large), or None (reuse is off)."""
    if not _REUSE:
        return None
    key = (tuple(shape), np.dtype(dtype))
    arr = _buffers.pop(key, None)   # atomic under the GIL: one caller at a time gets it
    # References: `arr` here and getrefcount's argument; anything more means still in use.
    if arr is None or sys.getrefcount(arr) != 2:
        arr = np.empty(shape, dtype)
    if arr.nbytes >= _REUSE_MIN_BYTES:
        if len(_buffers) >= 4:
            _buffers.pop(next(iter(_buffers)), None)
        _buffers[key] = arr
    return arr


def grad_tensor(input):
    """A fresh C-contiguous gradient tensor of `input`'s shape and dtype (nothing else
    references it).  Large ones take their memory from the buffer cache; the tensor is
    then a base tensor on that storage, not a view, so autograd can take it as .grad
    without cloning it."""
    if not _REUSE or input.nbytes < _REUSE_MIN_BYTES:
        # small: not cached, PyTorch's allocator
        return torch.empty_like(input, memory_format=torch.contiguous_format)
    dt = input.dtype
    shape = tuple(input.shape)
    if dt is torch.float32 or dt is torch.float64:
        return torch.from_numpy(grad_buffer(shape, np.float32 if dt is torch.float32 else np.float64))
    # 2-byte dtypes: the cached array is int16 (its refcount tells when no tensor uses it)
    arr = grad_buffer(shape, np.int16)
    return torch.empty(0, dtype=dt).set_(torch.from_numpy(arr).untyped_storage(), 0, shape)


def half_grad(input):
    """(tensor, ndarray view) of a fresh gradient buffer (:func:`grad_tensor`) for a
    half-precision input of at most 2 dimensions, or (None, None).  The kernel writes
    into the tensor's memory, and the tensor (not a dtype view of a NumPy array) is what
    backward returns."""
    dt = input.dtype
    if (dt is not torch.bfloat16 and dt is not torch.float16) or input.dim() > 2:
        return None, None
    gt = grad_tensor(input)
    a = gt.view(torch.int16).numpy()
    return gt, (a.view(_half.bfloat16()) if dt is torch.bfloat16 else a.view(np.float16))
