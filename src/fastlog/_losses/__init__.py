"""Classification losses with ``torch.nn.functional`` semantics, on ndarrays.

Shapes follow torch: input ``(C,)``, ``(N, C)`` or ``(N, C, d1, ..., dk)``
with the class axis 1; class-index targets ``()``, ``(N,)`` or
``(N, d1, ..., dk)``; probability targets have the input's shape.

The ``*_and_grad`` calls return ``(loss, grad_input)`` from one pass over
the input: the kernel reads each row once, stores exp(x - max) straight into
the gradient buffer and scales it there while the row is in cache.
``grad_input`` is d(loss)/d(input); for ``reduction='none'`` it is the
gradient of the sum of the losses.  ``out=`` receives the gradient and may be
the input itself (no N x C allocation at all for a C-contiguous 2-D input).

Rooms: :mod:`._rows` (the row layout), one module per loss (:mod:`.ce`, :mod:`.nll`,
:mod:`.bce`, :mod:`.kl`), and
:mod:`._reduce`, the only code that turns per-row losses into a result (every
other face of fastlog uses it too).  Batch sums are accumulated in float64 in
row order, so results are identical for any thread count; the returned loss
has the input's dtype, except that a reduced loss of a float16/bfloat16 input
is float32.
"""
from .bce import binary_cross_entropy_with_logits, binary_cross_entropy_with_logits_and_grad
from .ce import cross_entropy, cross_entropy_and_grad
from .kl import kl_div
from .nll import nll_loss, nll_loss_and_grad

__all__ = ["cross_entropy", "cross_entropy_and_grad", "nll_loss", "nll_loss_and_grad",
           "binary_cross_entropy_with_logits", "binary_cross_entropy_with_logits_and_grad",
           "kl_div"]
