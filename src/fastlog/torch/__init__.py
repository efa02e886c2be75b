"""fastlog for PyTorch: drop-in replacements for ``torch.nn.functional``'s losses on CPU.

Change one import::

    import fastlog.torch as FL          # instead of: import torch.nn.functional as F
    loss = FL.cross_entropy(logits, y)  # same parameters, same values, same gradients
    loss.backward()

Functions (same signatures as their ``torch.nn.functional`` namesakes):
:func:`cross_entropy`, :func:`nll_loss`, :func:`binary_cross_entropy_with_logits`,
:func:`kl_div`, :func:`log_softmax`, :func:`softmax`, :func:`linear_cross_entropy`;
modules (subclasses of the ``torch.nn`` ones, so ``isinstance`` checks,
``state_dict`` keys and ``repr`` are unchanged): :class:`CrossEntropyLoss`,
:class:`NLLLoss`, :class:`BCEWithLogitsLoss`, :class:`KLDivLoss`,
:class:`LinearCrossEntropyLoss`.  :func:`patch` installs them process-wide.

The rooms (mirroring ``torch.nn``)
----------------------------------
``_route.py`` (which route a call takes, decided before anything runs),
``_buffers.py`` (zero-copy NumPy views, the gradient buffer cache),
``_kernels.py`` (the CPU kernels), ``_ops.py`` (the operators
``torch.ops.fastlog.*``: schemas, fake kernels, autograd, vmap), ``_eager.py``
(the eager path), ``functional.py``, ``modules.py``, ``linear_ce.py``,
``patch.py``, ``distributed.py``; this module only re-exports.

How
---
Three routes (``_route.py``):

* **eager**, plain CPU tensors: an ``autograd.Function`` whose forward hands
  the tensor's memory to fastlog's compiled kernel through NumPy without
  copying.  ``cross_entropy`` and ``binary_cross_entropy_with_logits`` compute
  the gradient in the same pass as the loss and save it; backward only
  multiplies it by ``grad_output`` (not even that when it is 1).
  ``nll_loss`` and ``kl_div`` build their (trivial) gradients in backward;
  ``log_softmax``/``softmax`` save their output, as PyTorch does.
* **operators**, under ``torch.compile`` (``fullgraph=True``, static or
  dynamic shapes), ``torch.export`` and the ``torch.func`` transforms
  (``grad``, ``vjp``, ``jacrev``, ``vmap``): the call is
  ``torch.ops.fastlog.<name>``, registered with a schema, a fake kernel, an
  autograd formula and a vmap rule, so compiled graphs and exported programs
  contain fastlog's operators (no graph break) and run its kernels; the
  backward of a compiled graph is fastlog's saved gradient times
  ``grad_output`` or fastlog's backward operator.  Under ``torch.func``
  transforms, backward uses PyTorch's differentiable formulas (so higher
  derivatives are PyTorch's).  Forward-mode AD (``torch.func.jvp``,
  ``torch.autograd.forward_ad``) is not supported by fastlog's operators:
  such calls go to PyTorch.
* **PyTorch**: the call is forwarded unchanged to PyTorch's own function
  (``fastlog.torch._orig``: same result, same errors, PyTorch's speed) for
  non-CPU or non-strided tensors, tensor subclasses and
  ``__torch_function__``/dispatch modes outside compile/export, unsupported
  dtypes, a target or weight that requires grad, arguments PyTorch rejects,
  and the other cases listed in ``_route.py``.

Half precision (bfloat16, float16): the kernels read the tensor's memory
(a bfloat16 tensor is viewed as an ``ml_dtypes.bfloat16`` array, no copy;
without ml_dtypes bfloat16 goes to PyTorch), compute in float32 and round
each output/gradient once.  Loss and gradient dtypes are PyTorch's: the
input's dtype, except that under ``torch.autocast("cpu")`` (where PyTorch
casts cross_entropy's input to float32) an eager ``cross_entropy`` returns a
float32 loss computed straight from the half-precision logits (no float32
copy); the other functions, ``reduction='none'`` and traced code go to
PyTorch under autocast.

Under ``torch.no_grad()`` (or when the input does not require grad) only
the loss is computed: no gradient pass, no graph.

Higher-order gradients (eager): ``backward(create_graph=True)`` makes
backward recompute the gradient with PyTorch's differentiable implementation
from the input, so ``torch.autograd.gradgradcheck`` and Hessian-vector
products work (``cross_entropy`` keeps a plain reference to its input for
this and drops it at the first first-order backward; changing the logits in
place after the forward is allowed, as with PyTorch, and only a later
create_graph=True backward then refuses).

Gradient buffers: the last large (>= 1 MiB) gradient buffer of each shape
is kept and written again by a later call once no tensor references it any
more (like a caching allocator; peak memory is unchanged).
:func:`set_buffer_reuse` turns it off.

Threads: fastlog's kernels use fastlog's own thread count
(``fastlog.set_num_threads``), PyTorch's ops ``torch.set_num_threads``; on a
small machine set both, e.g. to the number of physical cores.

The legacy ``size_average``/``reduce`` arguments are accepted and converted
to ``reduction`` with PyTorch's deprecation warning.

Errors
------
Where PyTorch raises, these functions raise PyTorch's error: the routing sends
every argument PyTorch rejects to PyTorch before any kernel runs (and the
operators' fake kernels raise PyTorch's errors for shapes it rejects).  An
out-of-range target is an ``IndexError`` from fastlog's kernel, as in
PyTorch.  No exception is caught and turned into a PyTorch call: an
unexpected error inside fastlog surfaces as it is.  Class-probability
targets with ``ignore_index >= 0`` raise PyTorch's RuntimeError ("ignore_index
is not supported for floating point target").

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
   finite float32, fastlog returns the finite value.  A float64 row with
   logits near the float64 limits has the exact loss, rounded once: where
   PyTorch's ``lse - x_c`` overflows (2 max for a [max, -max] row) its loss
   is inf, or NaN from ``0 * inf``, while fastlog's is finite where the exact
   loss is (label smoothing 0.1 on such a row: 0.1 max) and +inf where the
   exact loss overflows, never NaN, also for ``label_smoothing=1``;
   ``linear_cross_entropy`` the same for its logits.  fastlog's NumPy face
   gives the same values.
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

Importing :mod:`fastlog` never imports torch; only ``import fastlog.torch``
does.
"""
from ._buffers import set_buffer_reuse
from ._route import fast_path_available
from .functional import (binary_cross_entropy_with_logits, cross_entropy, kl_div, log_softmax,
                         nll_loss, softmax)
from .modules import BCEWithLogitsLoss, CrossEntropyLoss, KLDivLoss, NLLLoss
from .patch import is_patched, patch, patched, unpatch

__all__ = ["cross_entropy", "nll_loss", "binary_cross_entropy_with_logits", "kl_div",
           "log_softmax", "softmax", "CrossEntropyLoss", "NLLLoss", "BCEWithLogitsLoss",
           "KLDivLoss", "fast_path_available", "set_buffer_reuse", "patch", "unpatch", "patched",
           "is_patched"]

# Fused linear + cross-entropy (F.linear_cross_entropy's namesake) lives in its own module.
try:
    from .linear_ce import LinearCrossEntropyLoss, linear_cross_entropy  # noqa: F401
except ImportError:
    pass
else:
    __all__ += ["linear_cross_entropy", "LinearCrossEntropyLoss"]
