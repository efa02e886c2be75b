"""The original ``torch.nn.functional`` functions, saved when fastlog.torch is first imported.

fastlog.torch's fallbacks call these, never ``torch.nn.functional.<name>``
looked up at call time: after :func:`fastlog.torch.patch` those names are
fastlog's own functions, and a fallback through them would recurse forever.
fastlog.torch imports this module as ``F``, so ``F.cross_entropy``
etc. there always mean PyTorch's implementation.
"""
import torch.nn.functional as _F

_NAMES = ("cross_entropy", "nll_loss", "binary_cross_entropy_with_logits", "kl_div", "log_softmax",
          "softmax", "linear", "linear_cross_entropy")


def _saved(name):
    fn = getattr(_F, name, None)
    # If something (an earlier fastlog.torch.patch, after a reload) already replaced it,
    # the patch module keeps the true original.
    return getattr(fn, "__fastlog_original__", fn)


cross_entropy = _saved("cross_entropy")
nll_loss = _saved("nll_loss")
binary_cross_entropy_with_logits = _saved("binary_cross_entropy_with_logits")
kl_div = _saved("kl_div")
log_softmax = _saved("log_softmax")
softmax = _saved("softmax")
linear = _saved("linear")
linear_cross_entropy = _saved("linear_cross_entropy")


def __getattr__(name):   # anything else: torch.nn.functional's current attribute
    return getattr(_F, name)
