"""Half-precision dtypes: detection, the dtypes results take, and error messages.

fastlog computes on ``numpy.float16`` and on ``ml_dtypes.bfloat16`` (the
NumPy bfloat16 dtype of JAX and TensorFlow) arrays in float32 and rounds each
output once (round to nearest even) to the input's dtype; see
``_csrc/fl_half.h``.  ml_dtypes is optional and never imported by fastlog: a
bfloat16 array is recognised by its dtype (an ml_dtypes ``bfloat16``) without
importing the package, and :func:`bfloat16` imports it only when asked (the
torch face does, to view a ``torch.bfloat16`` tensor's memory as NumPy).

Result dtypes (NumPy face):

* element-wise results (log_softmax, softmax, logsumexp, their backward
  passes, gradients, ``reduction='none'`` losses) have the input's dtype;
* a reduced loss (``'mean'``, ``'sum'``, ``'batchmean'``) of a half-precision
  input is a ``numpy.float32`` scalar: the sum is accumulated in float64 and
  rounded once to float32 (a bfloat16 scalar would keep only 3 significant
  digits).  The torch face returns PyTorch's dtypes instead (see
  ``fastlog.torch``).
"""
import numpy as np

_F16 = np.dtype(np.float16)
_F32 = np.dtype(np.float32)

SUPPORTED = "float32, float64, float16 or bfloat16 (ml_dtypes.bfloat16)"


def is_bfloat16(dt):
    """True for ml_dtypes' bfloat16 dtype (checked without importing ml_dtypes)."""
    return dt.itemsize == 2 and dt.name == "bfloat16" and dt.type.__module__.startswith("ml_dtypes")


def is_half(dt):
    """True for the 2-byte floating dtypes fastlog computes on: float16 and bfloat16."""
    return dt == _F16 or is_bfloat16(dt)


def compute_dtype(dt):
    """The dtype of the parameters the kernels read alongside an input of dtype
    `dt` (class weights, BCE weights): float32 for half inputs, else `dt`."""
    return _F32 if is_half(dt) else dt


def loss_dtype(dt):
    """The dtype of a reduced loss of an input of dtype `dt` (float32 for half)."""
    return _F32 if is_half(dt) else dt


def unsupported(name, dt):
    """The TypeError for an input dtype fastlog does not compute on."""
    if dt.kind == "c":
        what = f"complex input is not supported, got dtype {dt}"
    else:
        what = f"dtype {dt} is not supported"
    return TypeError(f"{name}: {what}; supported dtypes: {SUPPORTED}")


_BF16 = None


def bfloat16():
    """ml_dtypes' bfloat16 dtype, or None when ml_dtypes is not installed (imported lazily)."""
    global _BF16
    if _BF16 is None:
        try:
            import ml_dtypes
        except ImportError:
            return None
        _BF16 = np.dtype(ml_dtypes.bfloat16)
    return _BF16
