"""fastlog: fused, multithreaded CPU kernels for the log-domain core of training.

NumPy API:
  softmax family (drop-in for scipy.special): log_softmax, softmax, logsumexp,
    log_softmax_backward, softmax_backward
  losses (torch.nn.functional semantics on ndarrays): cross_entropy, nll_loss,
    binary_cross_entropy_with_logits, kl_div, and the fused loss+gradient calls
    cross_entropy_and_grad, nll_loss_and_grad,
    binary_cross_entropy_with_logits_and_grad
  configuration: show_config, set_num_threads, get_num_threads, num_threads
PyTorch users: ``import fastlog.torch`` (torch is optional; importing fastlog
never imports it).
"""
from ._version import __version__ as __version__

from ._config import config, get_num_threads, num_threads, set_num_threads, show_config
from ._losses import (binary_cross_entropy_with_logits, binary_cross_entropy_with_logits_and_grad,
                      cross_entropy, cross_entropy_and_grad, kl_div, nll_loss, nll_loss_and_grad)
from ._softmax import log_softmax, log_softmax_backward, logsumexp, softmax, softmax_backward

__all__ = [
    "log_softmax", "softmax", "logsumexp", "log_softmax_backward", "softmax_backward",
    "cross_entropy", "cross_entropy_and_grad", "nll_loss", "nll_loss_and_grad",
    "binary_cross_entropy_with_logits", "binary_cross_entropy_with_logits_and_grad", "kl_div",
    "show_config", "config", "set_num_threads", "get_num_threads", "num_threads",
]

# MLP, building blocks, data (fastlog.nn / fastlog.data).
from .nn import (MLP, LogisticRegression, linear_backward, linear_forward, mlp_gemms_only,  # noqa: E402
                 relu, relu_backward)
# Fused linear + cross-entropy (never builds the N x V logits).
from .linear import linear_cross_entropy, linear_cross_entropy_and_grad  # noqa: E402

__all__ += ["MLP", "LogisticRegression", "linear_forward", "linear_backward", "relu", "relu_backward",
            "mlp_gemms_only", "linear_cross_entropy", "linear_cross_entropy_and_grad"]
from .nn.lr_find import lr_find  # noqa: E402,F401  (learning-rate finder)
__all__ += ["lr_find"]
