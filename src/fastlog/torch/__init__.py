"""fastlog for PyTorch: drop-in replacements for ``torch.nn.functional``'s losses on CPU.

Change one import::

    import fastlog.torch as FL          # instead of: import torch.nn.functional as F
    loss = FL.cross_entropy(logits, y)  # same parameters, same values, same gradients
    loss.backward()

Functions (same signatures as their ``torch.nn.functional`` namesakes):
:func:`cross_entropy`, :func:`nll_loss`, :func:`binary_cross_entropy_with_logits`,
:func:`kl_div`, :func:`log_softmax`, :func:`softmax`; modules (subclasses of
the ``torch.nn`` ones, so ``isinstance`` checks, ``state_dict`` keys and
``repr`` are unchanged): :class:`CrossEntropyLoss`, :class:`NLLLoss`,
:class:`BCEWithLogitsLoss`, :class:`KLDivLoss`.

How
---
Each function is a ``torch.autograd.Function`` whose forward hands the
tensor's memory to fastlog's compiled kernel through NumPy without copying
(``tensor.detach().numpy()``; results come back with ``torch.from_numpy``).
``cross_entropy`` and ``binary_cross_entropy_with_logits`` compute the
gradient in the same pass as the loss (``fastlog.cross_entropy_and_grad``)
and save it; backward only multiplies it by ``grad_output`` (not even that
when ``grad_output`` is 1, as it is after ``loss.backward()`` on a reduced
loss), so no log-probabilities are stored and nothing is recomputed.  With
``reduction='none'`` backward scales each position by its ``grad_output``.
``nll_loss`` and ``kl_div`` build their (trivial) gradients in backward;
``log_softmax``/``softmax`` save their output, as PyTorch does.  The input
tensor is never written to.

Half precision (bfloat16, float16): the kernels read the tensor's memory
(a bfloat16 tensor is viewed as an ``ml_dtypes.bfloat16`` array, no copy;
without ml_dtypes bfloat16 goes to PyTorch), compute in float32 and round
each output/gradient once.  Loss and gradient dtypes are PyTorch's: the
input's dtype, except that under ``torch.autocast("cpu")`` (where PyTorch
casts cross_entropy's input to float32) ``cross_entropy`` returns a float32
loss computed straight from the half-precision logits (no float32 copy); the
other functions, and ``reduction='none'``, go to PyTorch under autocast.
:func:`patch` installs these functions process-wide (``patch.py``).

Under ``torch.no_grad()`` (or when the input does not require grad) only
the loss is computed: no gradient pass, no graph.

When PyTorch's own implementation runs instead
-------------------------------------------------
The call is forwarded, unchanged, to ``torch.nn.functional`` (same result,
same errors, PyTorch's speed) when any tensor argument

* is not on the CPU, is not strided (sparse, mkldnn), or is a tensor
  subclass / has ``__torch_function__`` (or a torch-function / dispatch mode
  is active, or it is wrapped by ``torch.func`` transforms such as ``vmap``);
* has a dtype other than float32/float64/float16/bfloat16 (integer
  targets other than int64/uint8; a target or weight whose dtype differs
  from the input's, which PyTorch promotes);
* is a target, weight or pos_weight that requires grad (fastlog
  differentiates with respect to the input only);

and when ``torch.compiler.is_compiling()`` is true: under ``torch.compile``
the functions trace as ``torch.nn.functional`` calls (no graph break, checked
with ``fullgraph=True``), so compiled models work with PyTorch's (or
Inductor's) kernels inside the compiled graph and fastlog stays out of it.
Arguments that fastlog rejects (out-of-range targets, wrong shapes, bad
reductions, ...) are also handed to PyTorch, so the exception raised is
PyTorch's own.

Higher-order gradients: ``backward(create_graph=True)`` (grad mode on inside
backward) makes backward recompute the gradient with PyTorch's differentiable
implementation from the input, so ``torch.autograd.gradgradcheck`` and
Hessian-vector products work.  For that, ``cross_entropy`` keeps a plain
reference to its input (no copy; changing the logits in place after the
forward is allowed, as with PyTorch, and only a later create_graph=True
backward then refuses) and drops it at the first first-order backward;
``nll_loss`` and ``binary_cross_entropy_with_logits`` save their input as
PyTorch's own implementations do; ``kl_div``'s gradient is constant in the
input and needs only the target.

Gradient buffers: a fresh N x C array costs page faults on first touch.  The
last large (>= 1 MiB) gradient buffer of each shape is kept and written again
by a later call once no tensor references it any more (like a caching
allocator; peak memory is unchanged).  :func:`set_buffer_reuse` turns it off.

Threads: fastlog's kernels use fastlog's own thread count
(``fastlog.set_num_threads``), PyTorch's ops ``torch.set_num_threads``; on a
small machine set both, e.g. to the number of physical cores.

The legacy ``size_average``/``reduce`` arguments are accepted and converted
to ``reduction`` with PyTorch's deprecation warning.

Errors
------
Where PyTorch raises, these functions raise; an argument that fastlog's
validation rejects is handed to PyTorch, so the exception is PyTorch's own
(``RuntimeError``, ``IndexError``, ``ValueError`` for an ``ignore_index``
beyond int64, ...), raised as one exception (no "during handling of the above
exception" chain).  Class-probability targets with ``ignore_index >= 0`` raise
(PyTorch: "ignore_index is not supported for floating point target").

Parity, and the deliberate differences from PyTorch
----------------------------------------------------
On every input PyTorch accepts, results and gradients match PyTorch's
(checked by a differential fuzz, ``tests/test_fuzz_torch.py``), non-finite
patterns included: ``log_softmax`` of a row holding NaN or +inf is NaN
everywhere, as PyTorch gives (fastlog's NumPy face follows SciPy there); the
gradient of an ignored target position is NaN where that position's logits
have no log-softmax, as PyTorch's is.  The deliberate differences:

1. ``label_smoothing`` negative or NaN is a ``ValueError``; PyTorch silently
   treats it as 0.  (Above 1 and inf: PyTorch's RuntimeError.)
2. float32 losses are accumulated in float64.  Where PyTorch's float32 sum
   overflows (to inf, or inf - inf = NaN) although the exact result is a
   finite float32, fastlog returns the finite value; where the exact loss
   overflows it is +inf, never NaN (e.g. label smoothing with logits of
   +-float64 max; fastlog's NumPy face gives the same), also for
   ``label_smoothing=1`` where PyTorch's ``0 * inf`` gives NaN.
3. ``linear_cross_entropy`` keeps rows independent: a row with non-finite
   logits does not turn other rows' (or ignored rows') gradients into NaN, as
   PyTorch's chunked implementation can; its invalid arguments raise
   fastlog's ValueError/TypeError/IndexError.
4. A reduced loss ('sum', 'mean', 'batchmean') is the correctly rounded sum of
   the per-position losses (divided by PyTorch's denominator): where float64
   terms near the float64 limits make PyTorch's summation order overflow (to
   +-inf, or inf - inf = NaN) although the exact total is finite, fastlog
   returns the finite total; it is +-inf only where the exact sum overflows.
   The same holds per row for class-probability targets with logits near the
   float64 limits: ``-log p_c`` of a [max, -max] row is 2 max, which
   overflows in PyTorch (inf; NaN where a target probability is 0 or
   negative), while fastlog returns the exact loss (finite when it is below
   the float64 maximum).
   ``linear_cross_entropy``'s logits and gradients are GEMM sums in BLAS's
   order: where such a sum of terms near the float limit can overflow, a
   logit (so that row's loss: NaN for inf - inf) or a gradient element may
   be non-finite where PyTorch's is finite, or the other way round.

Where PyTorch itself is inconsistent, fastlog follows what PyTorch returns:
uint8 targets with label smoothing and an ``ignore_index`` outside [0, 256)
go to PyTorch (its smoothing term compares ``target == ignore_index`` in
uint8, so -100 matches class 156); a smoothed 'mean' whose counted targets
have zero total weight is NaN (PyTorch's NLL part is 0/0), gradient included.

Importing :mod:`fastlog` never imports torch; only ``import fastlog.torch``
does.
"""
import sys
import warnings

import numpy as np
import torch
from torch import nn

from .. import _half, _losses, _softmax
from .._losses import ce as _ce
# PyTorch's own functions, saved before any patch(): every fallback below calls these.
from . import _orig as F

__all__ = ["cross_entropy", "nll_loss", "binary_cross_entropy_with_logits", "kl_div",
           "log_softmax", "softmax", "CrossEntropyLoss", "NLLLoss", "BCEWithLogitsLoss",
           "KLDivLoss", "fast_path_available", "set_buffer_reuse"]

_FLOATS = (torch.float32, torch.float64)
# Half precision: fastlog computes in float32 and rounds once (issue 13).  bfloat16 tensors are
# viewed as ml_dtypes.bfloat16 arrays (no copy); without ml_dtypes they go to PyTorch.
_HALVES = (torch.bfloat16, torch.float16)
_INDEX_DTYPES = (torch.int64, torch.uint8)   # the class-index dtypes PyTorch accepts
_PLAIN = (torch.Tensor, nn.Parameter)
# What fastlog raises for arguments it rejects; PyTorch then gets the call and raises its own.
_REJECTED = (ValueError, TypeError, IndexError, OverflowError)

try:
    _is_wrapped = torch._C._functorch.is_functorch_wrapped_tensor
except AttributeError:  # pragma: no cover - older torch
    def _is_wrapped(t):
        return False

try:
    _dispatch_modes = torch._C._len_torch_dispatch_stack
except AttributeError:  # pragma: no cover - older torch
    def _dispatch_modes():
        return 0


# --------------------------------------------------------------- dispatch --
def _plain_cpu(t):
    """A tensor whose memory NumPy can view as is: plain CPU strided, no lazy neg/conj bit."""
    return (type(t) in _PLAIN and t.device.type == "cpu" and t.layout == torch.strided
            and not t.is_neg() and not t.is_conj() and not _is_wrapped(t))


def _env_ok(*tensors):
    """No torch.compile tracing, no __torch_function__ subclass or mode, no dispatch mode."""
    if torch.compiler.is_compiling():
        return False
    if torch.overrides.has_torch_function(tuple(t for t in tensors if t is not None)):
        return False
    return _dispatch_modes() == 0


def _const_ok(t, dtype):
    """An optional non-differentiated tensor argument (weight, pos_weight) usable by fastlog."""
    if t is None:
        return True
    return (isinstance(t, torch.Tensor) and _plain_cpu(t) and t.dtype == dtype
            and not (t.requires_grad and torch.is_grad_enabled()))


def _input_ok(x):
    # is_compiling first: under torch.compile nothing below may be traced.
    return (not torch.compiler.is_compiling() and isinstance(x, torch.Tensor) and _plain_cpu(x)
            and (x.dtype in _FLOATS or (x.dtype in _HALVES and _half_ok(x.dtype))))


def _half_ok(dtype):
    return dtype == torch.float16 or _half.bfloat16() is not None


def _autocast_half(x):
    """True when torch.autocast("cpu") is on and x is half: PyTorch would cast x to float32."""
    return x.dtype in _HALVES and torch.is_autocast_enabled("cpu")


def fast_path_available(input, *others):
    """True when fastlog (not PyTorch) would compute a loss of `input` and `others`.

    The check made by every function here before choosing fastlog's kernel:
    CPU strided float32/float64/float16 plain tensors (bfloat16 too where
    ``ml_dtypes`` is installed), no torch.compile tracing, no
    ``__torch_function__``/dispatch modes.  (Per-function checks on targets and
    weights come on top.)

    Parameters
    ----------
    input : torch.Tensor
        The loss's input.
    *others : torch.Tensor or None
        Further tensor arguments (target, weight, ...).

    Returns
    -------
    bool
        True when fastlog's kernel (not PyTorch's) would compute a loss of these
        tensors.

    Examples
    --------
    >>> import torch, fastlog.torch as FL
    >>> FL.fast_path_available(torch.zeros(2, 3)), FL.fast_path_available(torch.zeros(2, 3).half())
    (True, True)
    >>> FL.fast_path_available(torch.zeros(2, 3, dtype=torch.complex64))
    False
    """
    return _input_ok(input) and all(o is None or _plain_cpu(o) for o in others) \
        and _env_ok(input, *others)


def _np(t):
    """Zero-copy NumPy view of a CPU tensor (never written to); bfloat16 as ml_dtypes.bfloat16."""
    if t.dtype == torch.bfloat16:
        return t.detach().view(torch.int16).numpy().view(_half.bfloat16())
    return t.detach().numpy()


def _tensor(a, dtype=None):
    """An ndarray (or NumPy scalar) produced by fastlog, as a tensor sharing its memory
    (cast to `dtype` if given: a float32 loss of a half input becomes PyTorch's loss dtype)."""
    a = np.asarray(a)
    if _half.is_bfloat16(a.dtype):
        t = torch.from_numpy(a.view(np.int16)).view(torch.bfloat16)
    else:
        t = torch.from_numpy(a)
    return t if dtype is None or t.dtype == dtype else t.to(dtype)


# ------------------------------------------------------- gradient buffers --
# A fresh N x C gradient array costs page faults on first touch (about half the
# kernel's own time at 1024 x 32000 here).  Like PyTorch's caching allocators,
# keep the last large gradient buffer of each shape and write the next step's
# gradient into it, but only once nothing references it any more (its refcount
# shows that no tensor, view or storage still uses it).  Small buffers are not kept.
_REUSE = True
_REUSE_MIN_BYTES = 1 << 20
_buffers = {}


def set_buffer_reuse(enabled):
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


def _half_grad(input):
    """(tensor, ndarray view) of a fresh gradient buffer for a half-precision input, or
    (None, None).  The kernel writes into the tensor's memory, and the tensor (not a
    dtype view of a NumPy array) is what backward returns, so autograd can take it
    as .grad without cloning it."""
    if input.dtype not in _HALVES or input.dim() > 2:
        return None, None
    shape = tuple(input.shape)
    # The memory comes from the buffer cache (an int16 array: its refcount tells when no
    # tensor uses it any more); the tensor is a base tensor on that storage, not a view.
    arr = _grad_buffer(shape, np.int16)
    if arr is None:
        arr = np.empty(shape, np.int16)
    gt = torch.empty(0, dtype=input.dtype).set_(torch.from_numpy(arr).untyped_storage(), 0, shape)
    return gt, _np(gt)


def _grad_buffer(shape, dtype):
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


def _reduction(size_average, reduce, reduction):
    """Map the legacy size_average/reduce pair to `reduction`, as PyTorch does (with its warning)."""
    if size_average is None and reduce is None:
        return reduction
    size_average = True if size_average is None else size_average
    reduce = True if reduce is None else reduce
    ret = ("mean" if size_average else "sum") if reduce else "none"
    warnings.warn(f"size_average and reduce args will be deprecated, please use reduction='{ret}' "
                  f"instead.", stacklevel=3)
    return ret


def _needs_grad(x):
    return torch.is_grad_enabled() and x.requires_grad


def _scale(g, grad_output, reduction, batch_dim_shape=None):
    """grad_output times the saved gradient of the summed/averaged loss.

    reduced losses: grad_output is 0-d (1 after ``loss.backward()``: the saved
    tensor is returned as is).  'none': grad_output has the loss's shape and is
    broadcast along the class axis (`batch_dim_shape` reshapes it for that).
    """
    if reduction != "none":
        if grad_output.numel() == 1 and grad_output.item() == 1.0:
            return g
        return g * grad_output
    if batch_dim_shape is not None:
        grad_output = grad_output.reshape(batch_dim_shape)
    return g * grad_output


def _class_axis_shape(input_shape):
    """Shape that puts a per-position grad_output against the class axis 1 of the input."""
    if len(input_shape) <= 1:
        return ()
    return (input_shape[0], 1) + tuple(input_shape[2:])


def _input_for_double_backward(ctx):
    input = ctx.input
    if input is None:
        raise RuntimeError("fastlog.torch: a backward with create_graph=True must come before any "
                           "first-order backward of the same graph (the input was released); "
                           "use torch.nn.functional for this pattern")
    if input._version != ctx.input_version:
        raise RuntimeError("one of the variables needed for gradient computation has been modified "
                           "by an inplace operation: the input of fastlog.torch.cross_entropy is "
                           "needed by a create_graph=True backward")
    return input


def _torch_grad(loss_fn, input, grad_output, *args):
    """Differentiable gradient by PyTorch's implementation (for backward(create_graph=True))."""
    with torch.enable_grad():
        loss = loss_fn(input, *args)
    (g,) = torch.autograd.grad(loss, input, grad_output, create_graph=True)
    return g


# ----------------------------------------------------------- cross-entropy --
class _CrossEntropy(torch.autograd.Function):
    @staticmethod
    def forward(ctx, input, target, weight, ignore_index, reduction, label_smoothing):
        x = _np(input)
        # (the buffer is filled in place for 1-D/2-D inputs; K-dim ones need a moved copy)
        gt, out = _half_grad(input)
        if gt is None:
            out = _grad_buffer(x.shape, x.dtype) if x.ndim <= 2 else None
        # (ign_nan: an ignored position's gradient is PyTorch's, NaN where its logits
        # have no log-softmax)
        loss, grad = _ce.fused(
            x, _np(target), None if weight is None else _np(weight),
            ignore_index, reduction, label_smoothing, True, out, ign_nan=True)
        ctx.save_for_backward(target, weight, gt if gt is not None else _tensor(grad))
        ctx.args = (ignore_index, reduction, label_smoothing)
        # The input itself is needed only by a create_graph=True backward.  It is kept as a
        # plain reference (not saved): PyTorch's own cross_entropy lets the logits be
        # modified in place after the forward, and so does this one.
        ctx.input, ctx.input_version, ctx.input_shape = input, input._version, input.shape
        # PyTorch's loss dtype: the input's, or float32 for a half input under autocast
        return _tensor(loss, torch.float32 if _autocast_half(input) else input.dtype)

    @staticmethod
    def backward(ctx, grad_output):
        target, weight, g = ctx.saved_tensors
        ignore_index, reduction, label_smoothing = ctx.args
        if torch.is_grad_enabled():   # create_graph=True: PyTorch's differentiable path
            input = _input_for_double_backward(ctx)
            gi = _torch_grad(F.cross_entropy, input, grad_output, target, weight, None,
                             ignore_index, None, reduction, label_smoothing)
        else:
            ctx.input = None          # first-order backward: drop the reference now
            gi = _scale(g, grad_output, reduction, _class_axis_shape(ctx.input_shape))
        return gi, None, None, None, None, None


def _ce_fast_ok(input, target, weight, label_smoothing, ignore_index=-100):
    if not (_input_ok(input) and isinstance(target, torch.Tensor) and _plain_cpu(target)
            and _const_ok(weight, input.dtype) and _env_ok(input, target, weight)):
        return False
    if target.is_floating_point():   # class probabilities
        return (target.dtype == input.dtype and target.shape == input.shape
                and not (target.requires_grad and torch.is_grad_enabled()))
    return _index_dtype_ok(input, target, weight, label_smoothing, ignore_index)


def _index_dtype_ok(input, target, weight=None, label_smoothing=0.0, ignore_index=-100):
    """int64 targets always; uint8 where PyTorch accepts them: 1-D/2-D inputs only
    (K-dim: "expected scalar type Long"), and not with class weights and label
    smoothing together (torch's gather() rejects uint8 there).  With label
    smoothing PyTorch masks ignored positions by ``target == ignore_index`` in
    uint8, so an ignore_index outside [0, 256) wraps (-100 matches class 156,
    2**40 class 0) for the smoothing term only; such calls go to PyTorch."""
    if target.dtype == torch.int64:
        return True
    if target.dtype != torch.uint8 or input.dim() > 2:
        return False
    try:
        if not label_smoothing > 0.0:
            return True
        if weight is not None:
            return False
        return (type(ignore_index) is int and 0 <= ignore_index < 256) or not bool(
            (target == ignore_index % 256).any())
    except TypeError:
        return False


def _check_smoothing(label_smoothing):
    """Deliberately stricter than PyTorch: a negative or NaN label_smoothing, which
    torch.nn.functional.cross_entropy silently treats as 0, is a ValueError (as on
    fastlog's NumPy face).  Values above 1 and inf are left to PyTorch's RuntimeError."""
    try:
        bad = not label_smoothing >= 0.0
    except TypeError:    # not a number: PyTorch's own TypeError follows
        return
    if bad:
        raise ValueError(f"label_smoothing must be in [0, 1], got {label_smoothing!r}")


def cross_entropy(input, target, weight=None, size_average=None, ignore_index=-100, reduce=None,
                  reduction="mean", label_smoothing=0.0):
    """``torch.nn.functional.cross_entropy`` computed by fastlog's fused kernel.

    Same parameters and results: input ``(C,)``, ``(N, C)`` or ``(N, C, d1, ...)``
    logits; target class indices (int64/uint8) or class probabilities (the
    input's shape and dtype); `weight`, `ignore_index`, `reduction`
    ('mean', 'sum', 'none'), `label_smoothing`.  The forward computes loss and
    gradient in one pass; backward scales the saved gradient by grad_output.
    Falls back to PyTorch as described in the module docstring.

    Parameters
    ----------
    input, target, weight, ignore_index, reduction, label_smoothing
        As ``torch.nn.functional.cross_entropy``'s.
    size_average, reduce
        ``size_average``/``reduce`` are PyTorch's deprecated pair, converted to `reduction` with its warning.

    Returns
    -------
    Tensor
        What the ``torch.nn.functional`` function of the same name returns: the
        same value, dtype and shape, with autograd.

    Raises
    ------
    RuntimeError, IndexError, ValueError
        PyTorch's own: an argument fastlog would reject is handed to PyTorch, so
        the exception is the one ``torch.nn.functional`` raises, as a single
        exception (e.g. ``IndexError: Target 5 is out of bounds.``), except for
        the deliberate differences of the module docstring (a negative or NaN
        `label_smoothing` is a ``ValueError``).

    Examples
    --------
    >>> import torch, torch.nn.functional as F, fastlog.torch as FL
    >>> x = torch.tensor([[1.0, 2.0, 3.0], [1.0, 1.0, 1.0]], requires_grad=True)
    >>> t = torch.tensor([2, 0])
    >>> loss = FL.cross_entropy(x, t, label_smoothing=0.1)
    >>> round(loss.item(), 4)
    0.8031
    >>> loss.backward()
    >>> x.grad.round(decimals=4)
    tensor([[ 0.0283,  0.1057, -0.1340],
            [-0.3000,  0.1500,  0.1500]])
    """
    reduction = _reduction(size_average, reduce, reduction)
    _check_smoothing(label_smoothing)
    if (not _ce_fast_ok(input, target, weight, label_smoothing, ignore_index)
            or (reduction == "none" and _autocast_half(input))):
        return F.cross_entropy(input, target, weight, ignore_index=ignore_index,
                               reduction=reduction, label_smoothing=label_smoothing)
    try:
        if _needs_grad(input):
            return _CrossEntropy.apply(input, target, weight, ignore_index, reduction,
                                       label_smoothing)
        return _tensor(_losses.cross_entropy(_np(input), _np(target),
                                             None if weight is None else _np(weight),
                                             ignore_index, reduction, label_smoothing),
                       torch.float32 if _autocast_half(input) else input.dtype)
    except _REJECTED:
        pass   # PyTorch raises its own error (or computes what it accepts), unchained
    return F.cross_entropy(input, target, weight, ignore_index=ignore_index,
                               reduction=reduction, label_smoothing=label_smoothing)


# -------------------------------------------------------------------- NLL --
class _NLL(torch.autograd.Function):
    @staticmethod
    def forward(ctx, input, target, weight, ignore_index, reduction):
        x, t, w = _np(input), _np(target), None if weight is None else _np(weight)
        loss = _losses.nll_loss(x, t, w, ignore_index, reduction)
        ctx.save_for_backward(input, target, weight)
        ctx.args = (ignore_index, reduction)
        return _tensor(loss, input.dtype)

    @staticmethod
    def backward(ctx, grad_output):
        input, target, weight = ctx.saved_tensors
        ignore_index, reduction = ctx.args
        if torch.is_grad_enabled():
            gi = _torch_grad(F.nll_loss, input, grad_output, target, weight, None, ignore_index,
                             None, reduction)
        else:
            # The gradient is -w[y]/denominator at the target entries: cheap to build here
            # rather than keep an N x C array alive between forward and backward.
            _, g = _losses.nll_loss_and_grad(_np(input), _np(target),
                                             None if weight is None else _np(weight),
                                             ignore_index, reduction)
            gi = _scale(_tensor(g), grad_output, reduction, _class_axis_shape(input.shape))
        return gi, None, None, None, None


def nll_loss(input, target, weight=None, size_average=None, ignore_index=-100, reduce=None,
             reduction="mean"):
    """``torch.nn.functional.nll_loss`` computed by fastlog (same parameters and results).

    Parameters
    ----------
    input, target, weight, ignore_index, reduction
        As ``torch.nn.functional.nll_loss``'s.
    size_average, reduce
        ``size_average``/``reduce`` are PyTorch's deprecated pair, converted to `reduction` with its warning.

    Returns
    -------
    Tensor
        What the ``torch.nn.functional`` function of the same name returns: the
        same value, dtype and shape, with autograd.

    Raises
    ------
    RuntimeError, IndexError, ValueError
        PyTorch's own: an argument fastlog would reject is handed to PyTorch, so
        the exception is the one ``torch.nn.functional`` raises, as a single
        exception (e.g. ``IndexError: Target 5 is out of bounds.``), except for
        the deliberate differences of the module docstring (a negative or NaN
        `label_smoothing` is a ``ValueError``).

    Examples
    --------
    >>> import torch, fastlog.torch as FL
    >>> logp = torch.log(torch.tensor([[0.5, 0.25, 0.25], [0.1, 0.1, 0.8]]))
    >>> round(FL.nll_loss(logp, torch.tensor([0, 2])).item(), 4)
    0.4581
    """
    reduction = _reduction(size_average, reduce, reduction)
    if not (_input_ok(input) and isinstance(target, torch.Tensor) and _plain_cpu(target)
            and _index_dtype_ok(input, target) and _const_ok(weight, input.dtype)
            and _env_ok(input, target, weight) and not _autocast_half(input)):
        return F.nll_loss(input, target, weight, ignore_index=ignore_index, reduction=reduction)
    try:
        if _needs_grad(input):
            return _NLL.apply(input, target, weight, ignore_index, reduction)
        return _tensor(_losses.nll_loss(_np(input), _np(target),
                                        None if weight is None else _np(weight),
                                        ignore_index, reduction), input.dtype)
    except _REJECTED:
        pass   # PyTorch raises its own error (or computes what it accepts), unchained
    return F.nll_loss(input, target, weight, ignore_index=ignore_index, reduction=reduction)


# -------------------------------------------------------- BCE with logits --
class _BCEWithLogits(torch.autograd.Function):
    @staticmethod
    def forward(ctx, input, target, weight, pos_weight, reduction):
        x = _np(input)
        gt, out = _half_grad(input) if input.dim() == 2 else (None, None)
        loss, grad = _losses.binary_cross_entropy_with_logits_and_grad(
            x, _np(target), None if weight is None else _np(weight), reduction,
            None if pos_weight is None else _np(pos_weight),
            out=out if gt is not None else _grad_buffer(x.shape, x.dtype))
        ctx.save_for_backward(input, target, weight, pos_weight, gt if gt is not None else _tensor(grad))
        ctx.reduction = reduction
        return _tensor(loss, input.dtype)

    @staticmethod
    def backward(ctx, grad_output):
        input, target, weight, pos_weight, g = ctx.saved_tensors
        if torch.is_grad_enabled():
            gi = _torch_grad(F.binary_cross_entropy_with_logits, input, grad_output, target,
                             weight, None, None, ctx.reduction, pos_weight)
        else:
            gi = _scale(g, grad_output, ctx.reduction)
        return gi, None, None, None, None


def binary_cross_entropy_with_logits(input, target, weight=None, size_average=None, reduce=None,
                                     reduction="mean", pos_weight=None):
    """``torch.nn.functional.binary_cross_entropy_with_logits`` by fastlog's fused kernel.

    `target` has the input's shape and dtype; `weight` and `pos_weight`
    broadcast against the input.  Loss and gradient come from one pass.

    Parameters
    ----------
    input, target, weight, reduction, pos_weight
        As ``torch.nn.functional.binary_cross_entropy_with_logits``'s.
    size_average, reduce
        ``size_average``/``reduce`` are PyTorch's deprecated pair, converted to `reduction` with its warning.

    Returns
    -------
    Tensor
        What the ``torch.nn.functional`` function of the same name returns: the
        same value, dtype and shape, with autograd.

    Raises
    ------
    RuntimeError, IndexError, ValueError
        PyTorch's own: an argument fastlog would reject is handed to PyTorch, so
        the exception is the one ``torch.nn.functional`` raises, as a single
        exception (e.g. ``IndexError: Target 5 is out of bounds.``), except for
        the deliberate differences of the module docstring (a negative or NaN
        `label_smoothing` is a ``ValueError``).

    Examples
    --------
    >>> import torch, fastlog.torch as FL
    >>> z, y = torch.tensor([0.0, 2.0, -1.0]), torch.tensor([1.0, 1.0, 0.0])
    >>> round(FL.binary_cross_entropy_with_logits(z, y).item(), 4)
    0.3778
    """
    reduction = _reduction(size_average, reduce, reduction)
    if not (_input_ok(input) and isinstance(target, torch.Tensor) and _plain_cpu(target)
            and target.dtype == input.dtype and target.shape == input.shape
            and not (target.requires_grad and torch.is_grad_enabled())
            and _const_ok(weight, input.dtype) and _const_ok(pos_weight, input.dtype)
            and _env_ok(input, target, weight, pos_weight) and not _autocast_half(input)):
        return F.binary_cross_entropy_with_logits(input, target, weight, reduction=reduction,
                                                  pos_weight=pos_weight)
    try:
        if _needs_grad(input):
            return _BCEWithLogits.apply(input, target, weight, pos_weight, reduction)
        return _tensor(_losses.binary_cross_entropy_with_logits(
            _np(input), _np(target), None if weight is None else _np(weight), reduction,
            None if pos_weight is None else _np(pos_weight)), input.dtype)
    except _REJECTED:
        pass   # PyTorch raises its own error (or computes what it accepts), unchained
    return F.binary_cross_entropy_with_logits(input, target, weight, reduction=reduction,
                                                  pos_weight=pos_weight)


# ----------------------------------------------------------------- KL div --
_KL_MEAN_WARNING = ("reduction: 'mean' divides the total loss by both the batch size and the "
                    "support size.'batchmean' divides only by the batch size, and aligns with "
                    "the KL div math definition.'mean' will be changed to behave the same as "
                    "'batchmean' in the next major release.")


class _KLDiv(torch.autograd.Function):
    @staticmethod
    def forward(ctx, input, target, reduction, log_target):
        loss = _losses.kl_div(_np(input), _np(target), reduction, log_target)
        ctx.save_for_backward(target)
        ctx.args = (reduction, log_target, {"none": 1, "sum": 1, "mean": input.numel(),
                                            "batchmean": input.shape[0] if input.dim() else 1}[reduction])
        return _tensor(loss, input.dtype)

    @staticmethod
    def backward(ctx, grad_output):
        # d/dx of the pointwise loss is -t (-exp(t) for log targets), a constant in x: these
        # torch ops are also the exact (differentiable) create_graph=True backward.
        (target,) = ctx.saved_tensors
        reduction, log_target, n = ctx.args
        g = torch.exp(target) if log_target else target
        if reduction == "none":
            return -(g * grad_output), None, None, None
        return g * (-grad_output / n), None, None, None


def kl_div(input, target, size_average=None, reduce=None, reduction="mean", log_target=False):
    """``torch.nn.functional.kl_div`` (input holds log-probabilities), computed by fastlog.

    Pointwise ``exp(t) * (t - x)`` if `log_target` else ``xlogy(t, t) - t * x``;
    'mean' averages over all elements (with PyTorch's warning), 'batchmean'
    divides the sum by the batch size.  The gradient (-t or -exp(t), scaled)
    is formed in backward from the saved target.

    Parameters
    ----------
    input, target, reduction, log_target
        As ``torch.nn.functional.kl_div``'s (`reduction` also 'batchmean').
    size_average, reduce
        ``size_average``/``reduce`` are PyTorch's deprecated pair, converted to `reduction` with its warning.

    Returns
    -------
    Tensor
        What the ``torch.nn.functional`` function of the same name returns: the
        same value, dtype and shape, with autograd.

    Raises
    ------
    RuntimeError, IndexError, ValueError
        PyTorch's own: an argument fastlog would reject is handed to PyTorch, so
        the exception is the one ``torch.nn.functional`` raises, as a single
        exception (e.g. ``IndexError: Target 5 is out of bounds.``), except for
        the deliberate differences of the module docstring (a negative or NaN
        `label_smoothing` is a ``ValueError``).

    Examples
    --------
    >>> import torch, fastlog.torch as FL
    >>> logq = torch.log(torch.tensor([[0.5, 0.5], [0.25, 0.75]]))
    >>> p = torch.tensor([[0.5, 0.5], [0.5, 0.5]])
    >>> round(FL.kl_div(logq, p, reduction="batchmean").item(), 4)
    0.0719
    """
    legacy = size_average is not None or reduce is not None
    reduction = _reduction(size_average, reduce, reduction)
    if not (_input_ok(input) and isinstance(target, torch.Tensor) and _plain_cpu(target)
            and target.dtype == input.dtype and target.shape == input.shape
            and not (target.requires_grad and torch.is_grad_enabled())
            and reduction in ("none", "mean", "sum", "batchmean")
            and _env_ok(input, target) and not _autocast_half(input)):
        return F.kl_div(input, target, reduction=reduction, log_target=log_target)
    if reduction == "mean" and not legacy:
        warnings.warn(_KL_MEAN_WARNING, stacklevel=2)
    try:
        if _needs_grad(input):
            return _KLDiv.apply(input, target, reduction, bool(log_target))
        return _tensor(_losses.kl_div(_np(input), _np(target), reduction, bool(log_target)), input.dtype)
    except _REJECTED:
        pass   # PyTorch raises its own error (or computes what it accepts), unchained
    return F.kl_div(input, target, reduction=reduction, log_target=log_target)


# ---------------------------------------------------- softmax/log_softmax --
def _softmax_function(name, np_forward, np_backward, torch_backward):
    """An autograd Function whose forward is fastlog's kernel (the output is
    saved for backward) and whose backward is fastlog's, or PyTorch's own
    differentiable formula when grad mode is on inside backward."""

    class _Fn(torch.autograd.Function):
        @staticmethod
        def forward(ctx, input, dim):
            y = _tensor(np_forward(_np(input), axis=dim))
            ctx.save_for_backward(y)
            ctx.dim = dim
            return y

        @staticmethod
        def backward(ctx, grad_output):
            (y,) = ctx.saved_tensors
            if torch.is_grad_enabled() or not _plain_cpu(grad_output) or grad_output.dtype != y.dtype:
                return torch_backward(grad_output, y, ctx.dim, y.dtype), None
            return _tensor(np_backward(_np(grad_output), _np(y), axis=ctx.dim)), None

    _Fn.__name__ = _Fn.__qualname__ = name
    return _Fn


_LogSoftmax = _softmax_function("_LogSoftmax", _softmax.log_softmax_nan_rows, _softmax.log_softmax_backward,
                                torch._log_softmax_backward_data)
_Softmax = _softmax_function("_Softmax", _softmax.softmax, _softmax.softmax_backward,
                             torch._softmax_backward_data)


def _softmax_family(name, fn, np_fn, torch_fn, input, dim, _stacklevel, dtype):
    if dim is None:
        # PyTorch's legacy implicit dimension, with its deprecation warning.
        warnings.warn(f"Implicit dimension choice for {name} has been deprecated. "
                      "Change the call to include dim=X as an argument.", stacklevel=_stacklevel)
        dim = 0 if input.dim() in (0, 1, 3) else 1
    if dtype is not None:
        input = input.to(dtype)
    if not (_input_ok(input) and _env_ok(input)) or _autocast_half(input):
        return torch_fn(input, dim)
    nd = input.dim()
    if not isinstance(dim, int) or not -max(nd, 1) <= dim < max(nd, 1) or input.numel() == 0:
        return torch_fn(input, dim)   # PyTorch's errors and empty-tensor results
    dim = dim % max(nd, 1)
    if nd == 0:
        dim = None
    if _needs_grad(input):
        return fn.apply(input, dim)
    return _tensor(np_fn(_np(input), axis=dim))


def log_softmax(input, dim=None, _stacklevel=3, dtype=None):
    """``torch.nn.functional.log_softmax`` computed by fastlog's kernel (one exp per element).

    `dim` None picks PyTorch's legacy implicit dimension (with its warning);
    `dtype` casts the input first.  Backward uses the saved output.

    Parameters
    ----------
    input : torch.Tensor
        Any shape.
    dim : int or None
        The axis to normalise (None: PyTorch's legacy implicit choice, with its warning).
    dtype : torch.dtype, optional
        Cast the input to it first.

    Returns
    -------
    Tensor
        What the ``torch.nn.functional`` function of the same name returns: the
        same value, dtype and shape, with autograd.

    Raises
    ------
    RuntimeError, IndexError, ValueError
        PyTorch's own: an argument fastlog would reject is handed to PyTorch, so
        the exception is the one ``torch.nn.functional`` raises, as a single
        exception (e.g. ``IndexError: Target 5 is out of bounds.``), except for
        the deliberate differences of the module docstring (a negative or NaN
        `label_smoothing` is a ``ValueError``).

    Examples
    --------
    >>> import torch, fastlog.torch as FL
    >>> FL.log_softmax(torch.tensor([[1.0, 2.0, 3.0]]), dim=1).round(decimals=4)
    tensor([[-2.4076, -1.4076, -0.4076]])
    >>> FL.log_softmax(torch.tensor([[1.0, float("inf")]]), dim=1)   # as torch: all NaN
    tensor([[nan, nan]])
    """
    return _softmax_family("log_softmax", _LogSoftmax, _softmax.log_softmax_nan_rows, torch.log_softmax,
                           input, dim, _stacklevel, dtype)


def softmax(input, dim=None, _stacklevel=3, dtype=None):
    """``torch.nn.functional.softmax`` computed by fastlog's kernel (same parameters).

    Parameters
    ----------
    input : torch.Tensor
        Any shape.
    dim : int or None
        The axis to normalise (None: PyTorch's legacy implicit choice, with its warning).
    dtype : torch.dtype, optional
        Cast the input to it first.

    Returns
    -------
    Tensor
        What the ``torch.nn.functional`` function of the same name returns: the
        same value, dtype and shape, with autograd.

    Raises
    ------
    RuntimeError, IndexError, ValueError
        PyTorch's own: an argument fastlog would reject is handed to PyTorch, so
        the exception is the one ``torch.nn.functional`` raises, as a single
        exception (e.g. ``IndexError: Target 5 is out of bounds.``), except for
        the deliberate differences of the module docstring (a negative or NaN
        `label_smoothing` is a ``ValueError``).

    Examples
    --------
    >>> import torch, fastlog.torch as FL
    >>> FL.softmax(torch.tensor([[1.0, 2.0, 3.0]]), dim=1).round(decimals=4)
    tensor([[0.0900, 0.2447, 0.6652]])
    """
    return _softmax_family("softmax", _Softmax, _softmax.softmax, torch.softmax,
                           input, dim, _stacklevel, dtype)


# ---------------------------------------------------------------- modules --
class CrossEntropyLoss(nn.CrossEntropyLoss):
    """``torch.nn.CrossEntropyLoss`` whose forward is :func:`fastlog.torch.cross_entropy`.

    Parameters
    ----------
    weight, size_average, ignore_index, reduce, reduction, label_smoothing
        As ``torch.nn.CrossEntropyLoss``'s (the same constructor).

    Examples
    --------
    >>> import torch, fastlog.torch as FL
    >>> crit = FL.CrossEntropyLoss(ignore_index=0)
    >>> round(crit(torch.tensor([[1.0, 2.0, 3.0], [1.0, 1.0, 1.0]]), torch.tensor([2, 0])).item(), 4)
    0.4076
    """

    def forward(self, input, target):
        """The loss of `input` against `target` (also ``module(input, target)``).

        Parameters
        ----------
        input : torch.Tensor
            Logits, class axis 1 (or 0 for a single sample).
        target : torch.Tensor
            Class indices or class probabilities.

        Returns
        -------
        torch.Tensor
            :func:`cross_entropy` of the arguments with the module's settings.

        Raises
        ------
        RuntimeError, IndexError, ValueError
            PyTorch's own, as :func:`cross_entropy`.

        Examples
        --------
        >>> import torch, fastlog.torch as FL
        >>> crit = FL.CrossEntropyLoss(reduction="sum")
        >>> round(crit.forward(torch.tensor([[0.0, 0.0]]), torch.tensor([1])).item(), 4)
        0.6931
        """
        return cross_entropy(input, target, weight=self.weight, ignore_index=self.ignore_index,
                             reduction=self.reduction, label_smoothing=self.label_smoothing)


class NLLLoss(nn.NLLLoss):
    """``torch.nn.NLLLoss`` whose forward is :func:`fastlog.torch.nll_loss`.

    Parameters
    ----------
    weight, size_average, ignore_index, reduce, reduction
        As ``torch.nn.NLLLoss``'s (the same constructor).

    Examples
    --------
    >>> import torch, fastlog.torch as FL
    >>> logp = torch.log(torch.tensor([[0.5, 0.25, 0.25], [0.1, 0.1, 0.8]]))
    >>> round(FL.NLLLoss()(logp, torch.tensor([0, 2])).item(), 4)
    0.4581
    """

    def forward(self, input, target):
        """The loss of `input` against `target` (also ``module(input, target)``).

        Parameters
        ----------
        input : torch.Tensor
            Log-probabilities, class axis 1.
        target : torch.Tensor
            Class indices.

        Returns
        -------
        torch.Tensor
            :func:`nll_loss` of the arguments with the module's settings.

        Raises
        ------
        RuntimeError, IndexError, ValueError
            PyTorch's own, as :func:`nll_loss`.

        Examples
        --------
        >>> import torch, fastlog.torch as FL
        >>> crit = FL.NLLLoss(weight=torch.tensor([1.0, 3.0]))
        >>> crit.forward(torch.tensor([[-0.5, -1.0], [-2.0, -0.25]]), torch.tensor([0, 1])).item()
        0.3125
        """
        return nll_loss(input, target, weight=self.weight, ignore_index=self.ignore_index,
                        reduction=self.reduction)


class BCEWithLogitsLoss(nn.BCEWithLogitsLoss):
    """``torch.nn.BCEWithLogitsLoss`` whose forward is
    :func:`fastlog.torch.binary_cross_entropy_with_logits`.

    Parameters
    ----------
    weight, size_average, reduce, reduction, pos_weight
        As ``torch.nn.BCEWithLogitsLoss``'s (the same constructor).

    Examples
    --------
    >>> import torch, fastlog.torch as FL
    >>> z, y = torch.tensor([0.0, 2.0, -1.0]), torch.tensor([1.0, 1.0, 0.0])
    >>> round(FL.BCEWithLogitsLoss(pos_weight=torch.tensor(2.0))(z, y).item(), 4)
    0.6511
    """

    def forward(self, input, target):
        """The loss of `input` against `target` (also ``module(input, target)``).

        Parameters
        ----------
        input : torch.Tensor
            Logits.
        target : torch.Tensor
            Targets in [0, 1], the input's shape and dtype.

        Returns
        -------
        torch.Tensor
            :func:`binary_cross_entropy_with_logits` of the arguments with the module's settings.

        Raises
        ------
        RuntimeError, IndexError, ValueError
            PyTorch's own, as :func:`binary_cross_entropy_with_logits`.

        Examples
        --------
        >>> import torch, fastlog.torch as FL
        >>> crit = FL.BCEWithLogitsLoss(reduction="none")
        >>> crit.forward(torch.tensor([0.0, 0.0]), torch.tensor([1.0, 0.0])).round(decimals=4)
        tensor([0.6931, 0.6931])
        """
        return binary_cross_entropy_with_logits(input, target, self.weight,
                                                pos_weight=self.pos_weight,
                                                reduction=self.reduction)


class KLDivLoss(nn.KLDivLoss):
    """``torch.nn.KLDivLoss`` whose forward is :func:`fastlog.torch.kl_div`.

    Parameters
    ----------
    size_average, reduce, reduction, log_target
        As ``torch.nn.KLDivLoss``'s (the same constructor).

    Examples
    --------
    >>> import torch, fastlog.torch as FL
    >>> logq = torch.log(torch.tensor([[0.5, 0.5], [0.25, 0.75]]))
    >>> p = torch.tensor([[0.5, 0.5], [0.5, 0.5]])
    >>> round(FL.KLDivLoss(reduction="batchmean")(logq, p).item(), 4)
    0.0719
    """

    def forward(self, input, target):
        """The loss of `input` against `target` (also ``module(input, target)``).

        Parameters
        ----------
        input : torch.Tensor
            Log-probabilities.
        target : torch.Tensor
            Probabilities (log-probabilities with ``log_target=True``), the input's shape.

        Returns
        -------
        torch.Tensor
            :func:`kl_div` of the arguments with the module's settings.

        Raises
        ------
        RuntimeError, IndexError, ValueError
            PyTorch's own, as :func:`kl_div`.

        Examples
        --------
        >>> import torch, fastlog.torch as FL
        >>> crit = FL.KLDivLoss(reduction="sum", log_target=True)
        >>> logq = torch.log(torch.tensor([[0.5, 0.5]]))
        >>> crit.forward(logq, logq).item()
        0.0
        """
        return kl_div(input, target, reduction=self.reduction, log_target=self.log_target)


# Process-wide patching of torch.nn.functional / torch.nn (patch.py).
from .patch import is_patched, patch, patched, unpatch  # noqa: E402

__all__ += ["patch", "unpatch", "patched", "is_patched"]

# Fused linear + cross-entropy (F.linear_cross_entropy's namesake) lives in its own module.
try:
    from .linear_ce import LinearCrossEntropyLoss, linear_cross_entropy  # noqa: F401
except ImportError:
    pass
else:
    __all__ += ["linear_cross_entropy", "LinearCrossEntropyLoss"]
