"""Codes the Python wrappers pass to the compiled layer (fastlog._core).

The same values are declared for Cython in ``_enums.pxd``;
``fastlog._core.ENUMS`` exports the compiled values and the tests check that
both agree.
"""
from enum import IntEnum

__all__ = ["Op", "Reduction", "MLPMode", "MLPOutput"]


class Op(IntEnum):
    """Row operation of ``_core.unary_rows`` / ``_core.backward_rows``."""
    LOG_SOFTMAX = 0
    SOFTMAX = 1
    LOGSUMEXP = 2


class Reduction(IntEnum):
    """Loss reduction: the gradient's scale (mean divides by the weight sum).

    BATCHMEAN (kl_div only) divides the sum by the batch size; the compiled
    kernels see only NONE, MEAN and SUM."""
    NONE = 0
    MEAN = 1
    SUM = 2
    BATCHMEAN = 3


class MLPMode(IntEnum):
    """What ``MLPWorkspace.step`` does with the gradients."""
    GRAD = 0
    SGD = 1


class MLPOutput(IntEnum):
    """What ``MLPWorkspace.forward`` writes."""
    LOGITS = 0
    LOG_PROBA = 1
    PROBA = 2
    LABELS = 3
