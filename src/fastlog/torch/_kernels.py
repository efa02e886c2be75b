"""The CPU kernels of fastlog's PyTorch operators, on the tensors' own memory.

Each function takes tensors and plain parameters that the routing
(:mod:`._route`) has already checked, hands the tensors' memory to fastlog's
compiled kernels through NumPy without copying (:func:`._buffers.np_view`)
and returns tensors: fresh ones, or buffers from the gradient cache that
nothing else references -- never an input or a view of one.  They are the
``CPU`` implementations of the operators in :mod:`._ops` and are also called
directly by the eager path (:mod:`._eager`), so both routes run the same code.

Reductions are passed as codes: 0 'none', 1 'mean', 2 'sum' (3 'batchmean'
for kl_div); the losses are finished by ``fastlog._losses._reduce``, the one
owner of reductions.  Errors that only the data can show (a class index out
of range) are ``IndexError`` with PyTorch's message, raised before the kernel
runs (or, on the training-loop path, from the kernel's own range check);
nothing here catches an exception.
"""

import numpy as np
import torch

from .. import _losses, _softmax
from .._dispatch import core
from .._losses import ce as _ce
from .._losses._reduce import finish, rounded, value
from ._buffers import grad_buffer, grad_tensor, half_grad, np_view, to_tensor

RED_NAMES = ("none", "mean", "sum", "batchmean")
# core.ce_index_addr's dtype codes, and the loss scalars of the first two
_ADDR_KINDS = {torch.float32: 0, torch.float64: 1, torch.float16: 2, torch.bfloat16: 3}
_LOSS_SCALARS = (np.float32, np.float64)


def _c_order(a):
    """`a` C-contiguous (a copy only if it is not; 0-d arrays stay 0-d)."""
    a = np.asarray(a)
    return a if a.flags.c_contiguous else a.copy(order="C")


# ----------------------------------------------------------- cross-entropy --
def _out_of_bounds(value):
    # PyTorch's message for a class index outside [0, C) (other than ignore_index)
    return IndexError(f"Target {int(value)} is out of bounds.")


def _check_targets(input, target, ignore_index):
    """Raise PyTorch's IndexError for the first class index outside [0, C) that is not
    `ignore_index` (the kernels check too, with fastlog's wording; this gives PyTorch's)."""
    if target.is_floating_point():
        return
    t = np_view(target).reshape(-1)
    C = input.shape[0] if input.dim() == 1 else input.shape[1]
    bad = (t >= C) if t.dtype == np.uint8 else ((t < 0) | (t >= C))
    bad &= t != ignore_index
    if bad.any():
        raise _out_of_bounds(t[np.argmax(bad)])


def cross_entropy(input, target, weight, reduction, ignore_index, label_smoothing, loss_dtype=None):
    """The loss alone (no gradient pass)."""
    _check_targets(input, target, ignore_index)
    loss = _losses.cross_entropy(np_view(input), np_view(target),
                                 None if weight is None else np_view(weight),
                                 ignore_index, RED_NAMES[reduction], label_smoothing)
    return to_tensor(loss, loss_dtype or input.dtype)


def cross_entropy_with_grad(input, target, weight, reduction, ignore_index, label_smoothing,
                            loss_dtype=None):
    """(loss, d loss / d input) from one pass over the logits; for reduction 'none'
    the gradient is that of the sum of the losses."""
    _check_targets(input, target, ignore_index)
    x = np_view(input)
    # the buffer is filled in place for 1-D/2-D inputs; K-dim ones need a moved copy
    gt, out = half_grad(input)
    if gt is None:
        out = grad_buffer(x.shape, x.dtype) if x.ndim <= 2 else None
    # ign_nan: an ignored position's gradient is PyTorch's, NaN where its logits have
    # no log-softmax (the NumPy face's is 0)
    loss, grad = _ce.fused(x, np_view(target), None if weight is None else np_view(weight),
                           ignore_index, RED_NAMES[reduction], label_smoothing, True, out, ign_nan=True)
    return to_tensor(loss, loss_dtype or input.dtype), (gt if gt is not None else to_tensor(grad))


def cross_entropy_with_grad_hot(input, target, reduction, ignore_index, loss_dtype=None):
    """:func:`cross_entropy_with_grad` of the training-loop call that
    ``_route.cross_entropy_hot`` admits (C-contiguous 2-D logits, int64 targets, no
    class weight or smoothing, 'mean'/'sum'), with the NumPy face's per-call work cut
    to the kernel call: at 64 x 10 the wrappers, not the kernel, are the time.  Called
    with grad mode off (inside ``autograd.Function.forward``) or on an input that does
    not require grad (below autograd in the operator).  An out-of-range target raises
    PyTorch's IndexError."""
    gt = grad_tensor(input)
    return _ce_hot(input, target, reduction, ignore_index, loss_dtype, gt), gt


def cross_entropy_hot(input, target, reduction, ignore_index, loss_dtype=None):
    """:func:`cross_entropy` (the loss alone) of the call :func:`cross_entropy_with_grad_hot`
    takes: an evaluation loop's call."""
    return _ce_hot(input, target, reduction, ignore_index, loss_dtype, None)


def _ce_hot(input, target, reduction, ignore_index, loss_dtype, gt):
    kind = _ADDR_KINDS[input.dtype]
    n, C = input.shape
    losses = np.empty(n, np.float64)
    # the tensors' memory by address: at 64 x 10, making NumPy arrays of the three
    # tensors would take longer than the kernel
    bad, wsum, total = core.ce_index_addr(kind, input.data_ptr(), target.data_ptr(), n, C, ignore_index,
                                          reduction, 0 if gt is None else gt.data_ptr(), losses)
    if bad >= 0:        # the kernel range-checks every target before it writes anything
        raise _out_of_bounds(target[bad])
    # the reduced loss by fastlog's one reduction rule, as a float64 rounded once to the
    # loss dtype (float32 for half precision); value() skips finish()'s NumPy scalar
    v = value(losses, total, wsum, reduction)
    if kind <= 1:
        return torch.from_numpy(np.array(rounded(v, _LOSS_SCALARS[kind])))
    # PyTorch's loss dtype: the input's, or float32 under autocast (the float32 value,
    # rounded once more, as the general path's conversion does)
    return torch.full((), float(rounded(v, np.float32)), dtype=loss_dtype or input.dtype)


def class_axis_shape(input_shape):
    """Shape that puts a per-position grad_output against the class axis 1 of the input."""
    if len(input_shape) <= 1:
        return ()
    return (input_shape[0], 1) + tuple(input_shape[2:])


def scale_grad(grad, grad_output, reduction, input_shape):
    """`grad` (d of the summed/averaged loss) times `grad_output`, as a new tensor:
    0-d for reduced losses, one value per position for 'none' (broadcast along
    the class axis)."""
    if reduction:
        return grad * grad_output
    return grad * grad_output.reshape(class_axis_shape(input_shape))


# -------------------------------------------------------------------- NLL --
def nll_loss(input, target, weight, reduction, ignore_index):
    _check_targets(input, target, ignore_index)
    loss = _losses.nll_loss(np_view(input), np_view(target), None if weight is None else np_view(weight),
                            ignore_index, RED_NAMES[reduction])
    return to_tensor(loss, input.dtype)


def nll_loss_backward(grad_output, input, target, weight, reduction, ignore_index):
    """d loss / d input scaled by `grad_output`: -w[y]/denominator at the target entries."""
    _, g = _losses.nll_loss_and_grad(np_view(input), np_view(target),
                                     None if weight is None else np_view(weight),
                                     ignore_index, RED_NAMES[reduction])
    g = to_tensor(g)
    go = grad_output if reduction else grad_output.reshape(class_axis_shape(input.shape))
    return g.mul_(go)


# -------------------------------------------------------- BCE with logits --
def binary_cross_entropy_with_logits(input, target, weight, pos_weight, reduction):
    loss = _losses.binary_cross_entropy_with_logits(
        np_view(input), np_view(target), None if weight is None else np_view(weight),
        RED_NAMES[reduction], None if pos_weight is None else np_view(pos_weight))
    return to_tensor(loss, input.dtype)


def binary_cross_entropy_with_logits_with_grad(input, target, weight, pos_weight, reduction):
    x = np_view(input)
    gt, out = half_grad(input) if input.dim() == 2 else (None, None)
    loss, grad = _losses.binary_cross_entropy_with_logits_and_grad(
        x, np_view(target), None if weight is None else np_view(weight), RED_NAMES[reduction],
        None if pos_weight is None else np_view(pos_weight),
        out=out if gt is not None else grad_buffer(x.shape, x.dtype))
    return to_tensor(loss, input.dtype), (gt if gt is not None else to_tensor(grad))


# ----------------------------------------------------------------- KL div --
def kl_div(input, target, reduction, log_target):
    loss = _losses.kl_div(np_view(input), np_view(target), RED_NAMES[reduction], log_target)
    # 'none' follows NumPy's layout rule (a transposed input gives a transposed result):
    # operators return C-contiguous tensors
    return to_tensor(_c_order(loss) if reduction == 0 else loss, input.dtype)


def kl_div_backward(grad_output, target, reduction, log_target, numel, batch):
    """d/d input of the pointwise loss is -t (-exp(t) for log targets), a constant in the
    input: built from the target with PyTorch's ops (so also differentiable)."""
    g = torch.exp(target) if log_target else target
    if reduction == 0:
        return -(g * grad_output)
    n = {1: numel, 2: 1, 3: batch}[reduction]
    return g * (-grad_output / n)


# ---------------------------------------------------- softmax/log_softmax --
def _axis(input, dim):
    return dim if input.dim() else None


def _contiguous(a):
    # the NumPy face keeps a strided input's layout; operators return C-contiguous tensors
    return to_tensor(_c_order(a))


def log_softmax(input, dim):
    # PyTorch's non-finite rows: a row whose max is not finite is NaN everywhere
    return _contiguous(_softmax.log_softmax_nan_rows(np_view(input), _axis(input, dim)))


def softmax(input, dim):
    return _contiguous(_softmax.softmax(np_view(input), axis=_axis(input, dim)))


def log_softmax_backward(grad_output, output, dim):
    return _contiguous(_softmax.log_softmax_backward(np_view(grad_output), np_view(output),
                                                     axis=_axis(output, dim)))


def softmax_backward(grad_output, output, dim):
    return _contiguous(_softmax.softmax_backward(np_view(grad_output), np_view(output),
                                                 axis=_axis(output, dim)))


# ---------------------------------------------------- linear + cross-entropy --
def _np_c(t):
    """A CPU tensor as a C-contiguous ndarray (no copy when it already is one)."""
    return None if t is None else t.detach().contiguous().numpy()


def _lce_prepare(input, linear_weight, linear_bias, target, weight, reduction, ignore_index,
                 label_smoothing, chunk_size):
    from .. import linear as _lin
    return _lin._prepare(_np_c(input), _np_c(linear_weight), _np_c(target), _np_c(linear_bias),
                         _np_c(weight), ignore_index, RED_NAMES[reduction], label_smoothing,
                         None if chunk_size < 0 else chunk_size, 0.0)


def _lce_grads(input, linear_weight, linear_bias, gX, gW, gb, dtype):
    """The kernel's gradients as tensors of the parameters' shapes; an empty (0,) tensor
    for each one that was not asked for."""
    out = []
    for g, like in ((gX, input), (gW, linear_weight), (gb, linear_bias)):
        if g is None:
            out.append(input.new_empty((0,)))
        elif isinstance(g, torch.Tensor):
            out.append(g)
        else:
            out.append(torch.from_numpy(g if g.dtype == dtype else g.astype(dtype)).reshape(like.shape))
    return out


def linear_cross_entropy_with_grad(input, linear_weight, linear_bias, target, weight, reduction,
                                   ignore_index, label_smoothing, chunk_size, grad_input, grad_weight,
                                   grad_bias):
    """(loss, grad_input, grad_weight, grad_bias) of the fused linear + cross-entropy, the
    logits never built; gradients of the reduced loss, each an empty (0,) tensor unless asked
    for.  bfloat16/float16 inputs take the half-precision path (reduction 'mean'/'sum')."""
    grad_bias = grad_bias and linear_bias is not None
    if input.dtype in (torch.bfloat16, torch.float16):
        from . import linear_ce_half as _h
        loss, gX, gW, gb = _h._run(input, linear_weight, linear_bias, target, weight,
                                   RED_NAMES[reduction], ignore_index, label_smoothing,
                                   grad_input, grad_weight, grad_bias)
        return (torch.tensor(loss, dtype=torch.float32).to(input.dtype),
                *_lce_grads(input, linear_weight, linear_bias, gX, gW, gb, None))
    from .. import linear as _lin
    prep = _lce_prepare(input, linear_weight, linear_bias, target, weight, reduction, ignore_index,
                        label_smoothing, chunk_size)
    r = _lin._run(prep, grad_input=grad_input, grad_weight=grad_weight, grad_bias=grad_bias)
    dtype = prep.dtype
    loss = finish(r.losses, r.total, r.wsum, prep.red, dtype, prep.batch_shape, smoothing=prep.eps)
    return (torch.from_numpy(np.asarray(loss, dtype=dtype).copy()),
            *_lce_grads(input, linear_weight, linear_bias, r.gX, r.gW, r.gb, dtype))


def linear_cross_entropy_backward(grad_output, input, linear_weight, linear_bias, target, weight,
                                  reduction, ignore_index, label_smoothing, chunk_size, grad_input,
                                  grad_weight, grad_bias):
    """The gradients of reduction 'none' (per-row scales `grad_output`): the logits are
    computed again block by block.  Float32/float64 only."""
    from .. import linear as _lin
    from .._enums import Reduction
    grad_bias = grad_bias and linear_bias is not None
    prep = _lce_prepare(input, linear_weight, linear_bias, target, weight, reduction, ignore_index,
                        label_smoothing, chunk_size)
    rs = np.ascontiguousarray(grad_output.detach().to(torch.float64).reshape(-1).numpy())
    r = _lin._run(prep._replace(red=Reduction.SUM), grad_input=grad_input, grad_weight=grad_weight,
                  grad_bias=grad_bias, row_scale=rs)
    return tuple(_lce_grads(input, linear_weight, linear_bias, r.gX, r.gW, r.gb, prep.dtype))
