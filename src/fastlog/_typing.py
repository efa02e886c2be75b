"""Type aliases used in fastlog's public signatures."""
from typing import Literal, Optional, Sequence, Union

import numpy as np
from numpy.typing import ArrayLike, DTypeLike

__all__ = ["ArrayLike", "DTypeLike", "Axis", "ReductionName", "KLReductionName", "Loss", "Scalar",
           "OptArray"]

#: An axis, several axes, or None (all of them).
Axis = Union[int, Sequence[int], None]
#: The reductions of the losses (PyTorch's names).
ReductionName = Literal["none", "mean", "sum"]
#: kl_div's reductions.
KLReductionName = Literal["none", "mean", "sum", "batchmean"]
#: A NumPy scalar (a reduced loss, the result of a 0-d input).
Scalar = np.floating
#: A loss: an array for reduction='none', else a scalar.
Loss = Union[np.ndarray, np.floating]
OptArray = Optional[np.ndarray]
