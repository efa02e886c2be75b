"""When fastlog computes and how: the routing predicates of the torch face.

Every function of :mod:`fastlog.torch` asks this module, before any kernel
runs, which of three routes a call takes:

``EAGER``
    Plain CPU tensors, eager mode.  The operator's CPU kernel
    (:mod:`._kernels`) runs straight on the tensors' memory from an
    ``autograd.Function`` (:mod:`._eager`), without the dispatcher's round
    trip (measured in ``benchmarks/README.md``: the dispatcher and the Python
    custom-op wrappers cost more than PyTorch's whole 64 x 10 step).
``OP``
    Traced or transformed code: ``torch.compile`` (Dynamo), ``torch.export``
    (strict or not) and the ``torch.func`` transforms ``grad``, ``vjp``,
    ``jacrev`` and ``vmap``.  The call is the registered operator
    ``torch.ops.fastlog.*`` (:mod:`._ops`), with its fake kernel, autograd
    formula and vmap rule, so it appears in graphs and exported programs.
``TORCH``
    PyTorch's own function (``fastlog.torch._orig``), unchanged: its result,
    its errors, its speed.

A call goes to PyTorch when

* under ``torch.compile`` (not ``torch.export``), its input has fewer than
  ``COMPILED_MIN_ELEMENTS`` elements (N x C; N x V for linear
  cross-entropy; ``COMPILED_MIN_ELEMENTS_SOFTMAX`` for log_softmax/softmax):
  there Inductor's own fused kernel costs less than the call of a Python
  operator from compiled code (about 20 us; measured in
  ``benchmarks/README.md``), so PyTorch's function is traced instead.  With
  dynamic shapes this is a guard on the size, not a specialisation;

* a tensor argument is not on the CPU, not strided, a tensor subclass (or
  has ``__torch_function__``), has a lazy negation/conjugation bit, or its
  dtype is not one fastlog computes on (float32/float64/float16, bfloat16
  where ``ml_dtypes`` is installed; class indices int64, or uint8 where
  PyTorch accepts them);
* a torch-function mode or a dispatch mode is active outside
  ``torch.compile``/``torch.export`` (e.g. ``FlopCounterMode``, a user's
  ``TorchDispatchMode``), forward-mode AD is on (``torch.autograd.forward_ad``
  or ``torch.func.jvp``/``jacfwd``: fastlog has no forward-mode formulas), or
  ``torch.func.functionalize`` is active;
* a target, class weight or pos_weight requires grad (fastlog differentiates
  with respect to the input only), or differs in dtype from the input
  (PyTorch promotes or raises);
* the arguments are ones PyTorch rejects (shapes that do not agree, an
  unknown reduction, ``label_smoothing`` above 1, an ``ignore_index`` beyond
  int64 or with probability targets, ...): PyTorch raises its own error;
* the input has no classes (``C == 0``) or, for the softmax family, no
  elements: PyTorch's empty results;
* under ``torch.autocast("cpu")`` with a half-precision input, except an
  eager ``cross_entropy`` with a reduced loss (fastlog returns PyTorch's
  float32 loss straight from the half-precision logits).

Nothing is decided by catching an exception: a call that reaches fastlog's
kernel and fails raises that error (an out-of-range target is an
``IndexError``, as in PyTorch).
"""
import importlib.util

from typing import Optional

import torch
from torch import nn
from torch.autograd import forward_ad as _forward_ad

EAGER, OP, TORCH = 1, 2, 0

FLOATS = (torch.float32, torch.float64)
HALVES = (torch.bfloat16, torch.float16)
INDEX_DTYPES = (torch.int64, torch.uint8)   # the class-index dtypes PyTorch accepts
REDUCTIONS = {"none": 0, "mean": 1, "sum": 2}
KL_REDUCTIONS = {"none": 0, "mean": 1, "sum": 2, "batchmean": 3}
_PLAIN = (torch.Tensor, nn.Parameter)
_I64 = 2 ** 63

_is_compiling = is_compiling = torch.compiler.is_compiling
_functorch_active = torch._C._are_functorch_transforms_active
_is_wrapped = torch._C._functorch.is_functorch_wrapped_tensor
_dispatch_modes = torch._C._len_torch_dispatch_stack
_tf_mode = torch._C._is_torch_function_mode_enabled
_has_torch_function = torch.overrides.has_torch_function
_grad_enabled = torch.is_grad_enabled
_autocast_cpu = torch.is_autocast_enabled


def _forward_ad_on():
    return _forward_ad._current_level >= 0


def _functorch_route():
    """OP under grad/vjp/vmap transforms; TORCH under jvp/jacfwd or functionalize."""
    from torch._functorch.pyfunctorch import retrieve_all_functorch_interpreters
    from torch._C._functorch import TransformType
    for interp in retrieve_all_functorch_interpreters():
        if interp.key() not in (TransformType.Grad, TransformType.Vmap):
            return TORCH
    return OP


# Under torch.compile, inputs below this many elements are traced as PyTorch's own
# functions (see the module docstring).  A compiled step through fastlog's operators
# costs ~0.15 ms more than Inductor's own graph outside the kernel (the operator
# calls, the compiled backward's scaling call, Dynamo's guards), which fastlog's
# fused kernel wins back only on larger inputs: cross-entropy forward + backward
# (benchmarks/bench_torch_compile.py, 2 threads) at 4096 x 10 Inductor 0.22 ms
# against 0.25 ms through the operators, at 8192 x 10 0.45 ms against 0.37 ms (1
# thread: the operators win from 4096 x 10).  A log_softmax/softmax forward alone
# saves less per element (Inductor fuses it well), hence its own bound.
COMPILED_MIN_ELEMENTS = 65536
COMPILED_MIN_ELEMENTS_SOFTMAX = 131072
_is_exporting = torch.compiler.is_exporting


def compiled_too_small(x, mode, minimum=COMPILED_MIN_ELEMENTS):
    """True when `mode` is OP because of torch.compile (not export) and `x` has fewer
    than `minimum` elements."""
    return mode == OP and _is_compiling() and not _is_exporting() and x.numel() < minimum


def compiled_small(x, minimum=COMPILED_MIN_ELEMENTS):
    """Under torch.compile (not export), `x` a tensor of fewer than `minimum` elements:
    the function is traced as PyTorch's.  Tested first, so that a traced call of that
    kind reads few globals (each read is a guard Dynamo checks at every call; the
    callers hold this function itself, not this module, and it reads no module that
    they read: two paths to one object make Dynamo add a guard in Python)."""
    return _is_compiling() and not _is_exporting() and isinstance(x, _Tensor) and x.numel() < minimum


def compiled_small_softmax(x):
    """:func:`compiled_small` with log_softmax/softmax's bound."""
    return compiled_small(x, COMPILED_MIN_ELEMENTS_SOFTMAX)


def environment(*tensors):
    """EAGER, OP or TORCH from the calling context alone (see the module docstring).

    Parameters
    ----------
    *tensors : torch.Tensor or None
        The call's tensor arguments (for ``__torch_function__`` subclasses).

    Returns
    -------
    int
        ``EAGER`` (1), ``OP`` (2) or ``TORCH`` (0).

    Examples
    --------
    >>> import torch
    >>> from fastlog.torch import _route
    >>> _route.environment(torch.zeros(2)) == _route.EAGER
    True
    >>> torch.func.grad(lambda a: (a * (_route.environment(a) == _route.OP)).sum())(torch.zeros(2))
    tensor([1., 1.])
    """
    if _is_compiling():        # first: nothing below may be traced by Dynamo
        return OP
    if _functorch_active():
        return _functorch_route()
    if _tf_mode() or _dispatch_modes() or _has_torch_function(tensors) or _forward_ad_on():
        return TORCH
    return EAGER


def cpu_tensor(t, mode):
    """A tensor fastlog's kernels can read where it is (plain CPU strided memory)."""
    if mode == EAGER:
        return (type(t) in _PLAIN and t.device.type == "cpu" and t.layout == torch.strided
                and not t.is_neg() and not t.is_conj() and not _is_wrapped(t))
    # traced: FakeTensors, functorch wrappers and Dynamo's variables all report these
    return isinstance(t, torch.Tensor) and t.device.type == "cpu" and t.layout == torch.strided


# Whether ml_dtypes (NumPy's bfloat16) is installed: found without importing it (the
# kernels import it when they first view a bfloat16 tensor); a constant to Dynamo.
_BF16_AVAILABLE = importlib.util.find_spec("ml_dtypes") is not None


def half_ok(dtype):
    """float16 always; bfloat16 where ml_dtypes (NumPy's bfloat16) is installed."""
    return dtype == torch.float16 or _BF16_AVAILABLE


def float_ok(dtype):
    return dtype in FLOATS or (dtype in HALVES and half_ok(dtype))


def input_ok(x, mode):
    return isinstance(x, torch.Tensor) and float_ok(x.dtype) and cpu_tensor(x, mode)


def const_ok(t, dtype, mode):
    """An optional non-differentiated tensor argument (weight, pos_weight) usable by fastlog."""
    if t is None:
        return True
    return (isinstance(t, torch.Tensor) and cpu_tensor(t, mode) and t.dtype == dtype
            and not (t.requires_grad and _grad_enabled()))


def autocast_half(x):
    """True when torch.autocast("cpu") is on and x is half: PyTorch would cast x to float32."""
    return x.dtype in HALVES and _autocast_cpu("cpu")


def needs_grad(x):
    return x.requires_grad and _grad_enabled()


def int64(v):
    """An int ignore_index within int64 (PyTorch's range), else None."""
    return v if type(v) is int and -_I64 <= v < _I64 else None


def class_count(x):
    return x.shape[0] if x.dim() == 1 else x.shape[1]


def batch_shape(x):
    return () if x.dim() == 1 else (x.shape[0],) + tuple(x.shape[2:])


def check_smoothing(label_smoothing):
    """Deliberately stricter than PyTorch: a negative or NaN label_smoothing, which
    torch.nn.functional.cross_entropy silently treats as 0, is a ValueError (as on
    fastlog's NumPy face).  Values above 1 and inf are left to PyTorch's RuntimeError."""
    if type(label_smoothing) in (float, int) and not label_smoothing >= 0.0:
        raise ValueError(f"label_smoothing must be in [0, 1], got {label_smoothing!r}")


def legacy_reduction(size_average, reduce, stacklevel=4):
    """Map the legacy size_average/reduce pair to `reduction`, as PyTorch does (with its warning)."""
    import warnings
    size_average = True if size_average is None else size_average
    reduce = True if reduce is None else reduce
    ret = ("mean" if size_average else "sum") if reduce else "none"
    warnings.warn(f"size_average and reduce args will be deprecated, please use reduction='{ret}' "
                  f"instead.", stacklevel=stacklevel)
    return ret


def _index_dtype_ok(input, target, weight, label_smoothing, ignore_index, mode):
    """int64 targets always; uint8 where PyTorch accepts them: 1-D/2-D inputs only
    (K-dim: "expected scalar type Long"), and not with class weights and label
    smoothing together (torch's gather() rejects uint8 there).  With label
    smoothing PyTorch masks ignored positions by ``target == ignore_index`` in
    uint8, so an ignore_index outside [0, 256) wraps (-100 matches class 156,
    2**40 class 0) for the smoothing term only: such calls, and traced uint8
    targets with smoothing, go to PyTorch."""
    if target.dtype == torch.int64:
        return True
    if target.dtype != torch.uint8 or input.dim() > 2:
        return False
    if not label_smoothing > 0.0:
        return True
    if weight is not None:
        return False
    if 0 <= ignore_index < 256:
        return True
    return mode == EAGER and not bool((target == ignore_index % 256).any())


_HOT_REDUCTIONS = {"mean": 1, "sum": 2}
_Tensor = torch.Tensor
_Parameter = nn.Parameter
_strided = torch.strided
_int64, _float32, _float64 = torch.int64, torch.float32, torch.float64
_float16, _bfloat16 = torch.float16, torch.bfloat16


def cross_entropy_hot(input, target, ignore_index, reduction):
    """The training-loop call, checked in about a microsecond: eager mode (the caller has
    checked that nothing is being compiled), plain CPU
    C-contiguous 2-D logits (float32/float64, or half precision) with classes,
    C-contiguous int64 targets of
    the batch size, 'mean' or 'sum', an int64 ignore_index (the caller has checked that
    there is no class weight, label smoothing or legacy argument).  Returns the
    reduction code, or 0 when the call needs the general routing.

    Plain ``torch.Tensor``/``Parameter`` types have no ``__torch_function__`` override
    and functorch wrappers exist only while a transform is active, so those checks
    reduce to the type test and the global flags.
    """
    if _functorch_active() or _tf_mode() or _dispatch_modes() or _forward_ad._current_level >= 0:
        return 0
    if ((type(input) is not _Tensor and type(input) is not _Parameter) or type(target) is not _Tensor
            or type(ignore_index) is not int or not -_I64 <= ignore_index < _I64):
        return 0
    if not hot_tensors(input, target):
        return 0
    return _HOT_REDUCTIONS.get(reduction, 0) if type(reduction) is str else 0


def hot_tensors(input, target):
    """The tensors of the training-loop call: CPU C-contiguous 2-D float32/float64/float16
    (bfloat16 with ml_dtypes) logits with classes (no lazy negation), C-contiguous int64
    targets of the batch size."""
    dt = input.dtype
    if ((dt is not _float32 and dt is not _float64
         and not (dt is _float16 or (dt is _bfloat16 and _BF16_AVAILABLE)))
            or target.dtype is not _int64
            or not input.is_cpu or not target.is_cpu or input.layout is not _strided
            or input.is_neg() or input.dim() != 2 or target.dim() != 1
            or not input.is_contiguous() or not target.is_contiguous()):
        return False
    n, c = input.shape
    return c != 0 and target.shape[0] == n


def cross_entropy(input, target, weight, ignore_index, reduction, label_smoothing):
    """The route of a cross_entropy call: (mode, reduction code, probability targets?).

    Examples
    --------
    >>> import torch
    >>> from fastlog.torch import _route
    >>> _route.cross_entropy(torch.zeros(2, 3), torch.tensor([0, 2]), None, -100, "mean", 0.0)
    (1, 1, False)
    >>> _route.cross_entropy(torch.zeros(2, 3), torch.tensor([0, 2]), None, -100, "avg", 0.0)[0]
    0
    """
    mode = environment(input, target, weight)
    if not mode or not input_ok(input, mode) or input.dim() == 0 or compiled_too_small(input, mode):
        return TORCH, 0, False
    red = REDUCTIONS.get(reduction) if type(reduction) is str else None
    if (red is None or int64(ignore_index) is None or type(label_smoothing) not in (float, int)
            or not 0.0 <= label_smoothing <= 1.0 or not isinstance(target, torch.Tensor)
            or not cpu_tensor(target, mode) or not const_ok(weight, input.dtype, mode)):
        return TORCH, 0, False
    C = class_count(input)
    if C == 0 or (weight is not None and tuple(weight.shape) != (C,)):
        return TORCH, 0, False
    if autocast_half(input) and (mode != EAGER or red == 0):
        return TORCH, 0, False
    if target.is_floating_point():      # class probabilities
        if (target.dtype != input.dtype or target.shape != input.shape or ignore_index >= 0
                or needs_grad(target)):
            return TORCH, 0, False
        return mode, red, True
    if tuple(target.shape) != batch_shape(input) or not _index_dtype_ok(
            input, target, weight, label_smoothing, ignore_index, mode):
        return TORCH, 0, False
    return mode, red, False


def nll_loss(input, target, weight, ignore_index, reduction):
    """The route of an nll_loss call: (mode, reduction code)."""
    mode = environment(input, target, weight)
    if (not mode or not input_ok(input, mode) or input.dim() == 0 or autocast_half(input)
            or compiled_too_small(input, mode)):
        return TORCH, 0
    red = REDUCTIONS.get(reduction) if type(reduction) is str else None
    if (red is None or int64(ignore_index) is None or not isinstance(target, torch.Tensor)
            or not cpu_tensor(target, mode) or not const_ok(weight, input.dtype, mode)):
        return TORCH, 0
    C = class_count(input)
    if (C == 0 or (weight is not None and tuple(weight.shape) != (C,))
            or target.is_floating_point() or tuple(target.shape) != batch_shape(input)
            or not _index_dtype_ok(input, target, None, 0.0, ignore_index, mode)):
        return TORCH, 0
    return mode, red


def _broadcasts_to(t, shape):
    """`t` (None or a tensor) broadcasts to `shape` without growing it."""
    if t is None:
        return True
    ts = tuple(t.shape)
    if len(ts) > len(shape):
        return False
    return all(a == 1 or a == b for a, b in zip(ts, tuple(shape)[len(shape) - len(ts):]))


def binary_cross_entropy_with_logits(input, target, weight, pos_weight, reduction):
    """The route of a binary_cross_entropy_with_logits call: (mode, reduction code)."""
    mode = environment(input, target, weight, pos_weight)
    if not mode or not input_ok(input, mode) or autocast_half(input) or compiled_too_small(input, mode):
        return TORCH, 0
    red = REDUCTIONS.get(reduction) if type(reduction) is str else None
    if (red is None or not isinstance(target, torch.Tensor) or not cpu_tensor(target, mode)
            or target.dtype != input.dtype or target.shape != input.shape or needs_grad(target)
            or not const_ok(weight, input.dtype, mode) or not const_ok(pos_weight, input.dtype, mode)
            or not _broadcasts_to(weight, input.shape) or not _broadcasts_to(pos_weight, input.shape)):
        return TORCH, 0
    return mode, red


def kl_div(input, target, reduction):
    """The route of a kl_div call: (mode, reduction code)."""
    mode = environment(input, target)
    if not mode or not input_ok(input, mode) or autocast_half(input) or compiled_too_small(input, mode):
        return TORCH, 0
    red = KL_REDUCTIONS.get(reduction) if type(reduction) is str else None
    if (red is None or not isinstance(target, torch.Tensor) or not cpu_tensor(target, mode)
            or target.dtype != input.dtype or target.shape != input.shape or needs_grad(target)):
        return TORCH, 0
    return mode, red


def softmax_family(input, dim):
    """The route of a log_softmax/softmax call: (mode, normalised dim or None for 0-d)."""
    mode = environment(input)
    if (not mode or not input_ok(input, mode) or autocast_half(input) or type(dim) is not int
            or compiled_too_small(input, mode, COMPILED_MIN_ELEMENTS_SOFTMAX)):
        return TORCH, 0
    nd = input.dim()
    if not -max(nd, 1) <= dim < max(nd, 1) or input.numel() == 0:
        return TORCH, 0      # PyTorch's errors and empty-tensor results
    return mode, (dim % nd if nd else None)


def fast_path_available(input: torch.Tensor, *others: Optional[torch.Tensor]) -> bool:
    """True when fastlog (not PyTorch) would compute a loss of `input` and `others`.

    The check made by every function of :mod:`fastlog.torch` first: CPU
    strided float32/float64/float16 plain tensors (bfloat16 too where
    ``ml_dtypes`` is installed) and no ``__torch_function__``/dispatch modes
    outside torch.compile and torch.export.  (Per-function checks on targets,
    weights and arguments come on top, see :mod:`fastlog.torch._route`.)  Under
    ``torch.compile``, ``torch.export`` and the ``torch.func`` transforms the
    answer is also True: fastlog's registered operators run there.

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
    mode = environment(input, *others)
    return bool(mode) and input_ok(input, mode) and all(o is None or cpu_tensor(o, mode) for o in others)
