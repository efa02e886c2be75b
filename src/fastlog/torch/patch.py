"""Process-wide patching: unmodified PyTorch code runs on fastlog's kernels.

::

    import fastlog.torch
    fastlog.torch.patch()            # from here on, for the whole process
    ...                              # transformers / timm / Lightning code, unchanged
    fastlog.torch.unpatch()          # torch exactly as it was

    with fastlog.torch.patched():    # or for one block
        loss = model(**batch).loss

What is replaced: the ``torch.nn.functional`` functions ``cross_entropy``,
``nll_loss``, ``binary_cross_entropy_with_logits``, ``kl_div``,
``log_softmax``, ``softmax`` (and ``linear_cross_entropy`` when this PyTorch
has it) by their :mod:`fastlog.torch` namesakes, and the ``forward`` of
``torch.nn.CrossEntropyLoss``, ``NLLLoss``, ``BCEWithLogitsLoss`` and
``KLDivLoss`` (a class attribute, so modules built before the patch use it
too).  Code that looks the functions up at call time (``F.cross_entropy(...)``,
``nn.functional.cross_entropy(...)``, as transformers does) gets fastlog;
a reference taken before the patch (``from torch.nn.functional import
cross_entropy``) keeps PyTorch's.  ``torch.log_softmax`` / ``Tensor.softmax``
and friends are not replaced.

:func:`unpatch` puts back the very objects that were there (identity, not
copies).  Whatever fastlog does not handle (GPU tensors, torch.compile,
unsupported dtypes, ...) is computed by the SAVED ORIGINAL PyTorch functions
(``fastlog.torch._orig``), so the patched names never call themselves.
"""
import contextlib
import threading
from typing import Any, Dict, Iterator

import torch.nn.functional as _F
from torch import nn

from . import _orig

_lock = threading.Lock()
_saved = None   # {(owner, name): original object} while patched


def _replacements():
    from . import functional as flt
    from . import linear_ce, modules

    funcs = {"cross_entropy": flt.cross_entropy, "nll_loss": flt.nll_loss,
             "binary_cross_entropy_with_logits": flt.binary_cross_entropy_with_logits,
             "kl_div": flt.kl_div, "log_softmax": flt.log_softmax, "softmax": flt.softmax}
    if getattr(_F, "linear_cross_entropy", None) is not None:
        funcs["linear_cross_entropy"] = linear_ce.linear_cross_entropy
    out = {(_F, name): fn for name, fn in funcs.items()}
    for torch_cls, fl_cls in ((nn.CrossEntropyLoss, modules.CrossEntropyLoss), (nn.NLLLoss, modules.NLLLoss),
                              (nn.BCEWithLogitsLoss, modules.BCEWithLogitsLoss),
                              (nn.KLDivLoss, modules.KLDivLoss)):
        out[(torch_cls, "forward")] = fl_cls.__dict__["forward"]
    return out


def patch() -> None:
    """Replace torch.nn.functional's losses/softmaxes and the nn loss modules' forward
    by fastlog's, process-wide.  Calling it again while patched does nothing.

    Examples
    --------
    >>> import torch, torch.nn.functional as F, fastlog.torch
    >>> fastlog.torch.patch()
    >>> F.cross_entropy is fastlog.torch.cross_entropy
    True
    >>> fastlog.torch.unpatch()
    >>> F.cross_entropy is fastlog.torch.cross_entropy
    False
    """
    global _saved
    with _lock:
        if _saved is not None:
            return
        rep = _replacements()
        saved = {}
        for (owner, name), fn in rep.items():
            saved[(owner, name)] = owner.__dict__[name] if isinstance(owner, type) else getattr(owner, name)
        for (owner, name), fn in rep.items():
            setattr(owner, name, fn)
        _saved = saved


def unpatch() -> None:
    """Restore exactly what :func:`patch` replaced (the same objects).  No-op if not patched.

    Examples
    --------
    >>> import torch.nn.functional as F, fastlog.torch
    >>> before = F.softmax
    >>> fastlog.torch.patch(); fastlog.torch.unpatch()
    >>> F.softmax is before
    True
    """
    global _saved
    with _lock:
        if _saved is None:
            return
        for (owner, name), orig in _saved.items():
            setattr(owner, name, orig)
        _saved = None


def is_patched() -> bool:
    """True between :func:`patch` and :func:`unpatch`.

    Returns
    -------
    bool
        True between :func:`patch` and :func:`unpatch`.

    Examples
    --------
    >>> import fastlog.torch
    >>> with fastlog.torch.patched():
    ...     fastlog.torch.is_patched()
    True
    >>> fastlog.torch.is_patched()
    False
    """
    return _saved is not None


@contextlib.contextmanager
def patched() -> Iterator[None]:
    """``with fastlog.torch.patched(): ...`` -- patch for the block, restore after it
    (also on an exception).  Inside an outer patch() it leaves the patch in place.

    Examples
    --------
    >>> import torch, torch.nn.functional as F, fastlog.torch
    >>> x, t = torch.tensor([[1.0, 2.0, 3.0]]), torch.tensor([2])
    >>> with fastlog.torch.patched():
    ...     loss = torch.nn.CrossEntropyLoss()(x, t)   # runs fastlog.torch.cross_entropy
    >>> round(loss.item(), 4), fastlog.torch.is_patched()
    (0.4076, False)
    """
    was = is_patched()
    patch()
    try:
        yield
    finally:
        if not was:
            unpatch()


def originals() -> Dict[str, Any]:
    """PyTorch's own functions as saved by fastlog.torch (what the fallbacks call).

    Returns
    -------
    dict of str to callable
        ``torch.nn.functional``'s functions (and the loss modules' ``forward``)
        as they were when fastlog.torch was first imported.

    Examples
    --------
    >>> import torch.nn.functional as F, fastlog.torch
    >>> from fastlog.torch.patch import originals
    >>> with fastlog.torch.patched():
    ...     originals()["cross_entropy"] is F.cross_entropy
    False
    """
    return {name: getattr(_orig, name) for name in _orig._NAMES}
