"""fastlog's PyTorch operators: ``torch.ops.fastlog.*`` (schemas, CPU and fake kernels, autograd, vmap).

Registered with ``torch.library.Library("fastlog", "DEF")``: ``define`` for
the schema and ``impl`` for the CPU kernel and for the Autograd key (the
route measured cheapest; ``benchmarks/README.md`` has the numbers), then
``torch.library.register_fake`` and ``torch.library.register_vmap``.

===============================================  ======================================
operator                                         returns
===============================================  ======================================
``cross_entropy``                                loss
``cross_entropy_with_grad``                      (loss, d loss / d input)
``nll_loss`` / ``nll_loss_backward``             loss / grad_input
``binary_cross_entropy_with_logits``             loss
``binary_cross_entropy_with_logits_with_grad``   (loss, d loss / d input)
``kl_div``                                       loss
``log_softmax`` / ``log_softmax_backward``       output / grad_input
``softmax`` / ``softmax_backward``               output / grad_input
``linear_cross_entropy``                         loss
``linear_cross_entropy_with_grad``               (loss, grad_input, grad_weight, grad_bias)
``linear_cross_entropy_backward``                (grad_input, grad_weight, grad_bias)
``scale_grad_``                                  () -- scales a saved gradient in place
===============================================  ======================================

Reductions are integer codes (0 'none', 1 'mean', 2 'sum', 3 'batchmean');
``chunk_size`` -1 means fastlog's default block size.  Every operator is
functional: no argument is mutated, no output aliases an input, every output
is C-contiguous (what the fake kernels state).

Kernels: the CPU kernel runs fastlog's compiled code on the tensors' own
memory (:mod:`._kernels`); the fake kernel gives the outputs' sizes, strides
and dtypes and raises PyTorch's error where PyTorch rejects the shapes (the
same checks run before the CPU kernel).  Deliberate limits of the operators
(the functions of :mod:`fastlog.torch` send these cases to PyTorch instead):
an input without classes (``C == 0``) and, for the ``*_with_grad`` forms of
linear cross-entropy in half precision, reduction 'none'.

Autograd: the loss and softmax operators are differentiable with respect to
their input (and ``linear_cross_entropy`` with respect to input, weight and
bias).  The ``_with_grad`` forms compute the gradient in the forward pass
and backward scales it by ``grad_output`` (PyTorch ops) or, for
nll/log_softmax/softmax, is the ``*_backward`` operator: a compiled graph's
backward holds fastlog's operators and no Python.  A backward run with grad
mode on (``create_graph=True``, the ``torch.func`` transforms) computes the
gradient with PyTorch's differentiable formulas instead, so higher-order
derivatives are PyTorch's.  Forward-mode AD (``torch.func.jvp``, ``jacfwd``,
``torch.autograd.forward_ad``) is not supported: an operator called on an
input that carries a tangent raises ``NotImplementedError`` naming it (the
functions of :mod:`fastlog.torch` hand such calls to PyTorch).  The
``*_backward`` operators and ``scale_grad_`` are not differentiable: called on
inputs that require grad (in grad mode) they raise.  The forward halves
(``*_with_grad``) are: an exported program calls them directly.
The autograd ``Function`` s below have ``generate_vmap_rule``, so ``torch.vmap``
composes with ``torch.func.grad``.

vmap: every operator has a rule.  The softmax family moves the batch
dimension to the front and shifts ``dim``; the losses compute each batch
entry with one call (a reduced loss has one denominator per entry) and stack.

Direct calls through the dispatcher (``torch.ops.fastlog.*`` with an input
that requires grad) work in eager mode; under the ``torch.func`` transforms
call the functions of :mod:`fastlog.torch`, which enter through the autograd
``Function`` s (PyTorch's functorch cannot run an autograd ``Function`` from
inside an operator's Autograd kernel).
"""
import torch
from torch.autograd import forward_ad as _forward_ad

from . import _kernels as K
from . import _orig as F
from ._route import FLOATS, HALVES, batch_shape, class_count, hot_tensors

__all__ = ["lib", "OPS"]

lib = torch.library.Library("fastlog", "DEF")

_SCHEMAS = {
    "cross_entropy": "(Tensor input, Tensor target, Tensor? weight, int reduction, "
                     "int ignore_index, float label_smoothing) -> Tensor",
    "cross_entropy_with_grad": "(Tensor input, Tensor target, Tensor? weight, int reduction, "
                               "int ignore_index, float label_smoothing) -> (Tensor, Tensor)",
    "nll_loss": "(Tensor input, Tensor target, Tensor? weight, int reduction, "
                "int ignore_index) -> Tensor",
    "nll_loss_backward": "(Tensor grad_output, Tensor input, Tensor target, Tensor? weight, "
                         "int reduction, int ignore_index) -> Tensor",
    "binary_cross_entropy_with_logits": "(Tensor input, Tensor target, Tensor? weight, "
                                        "Tensor? pos_weight, int reduction) -> Tensor",
    "binary_cross_entropy_with_logits_with_grad": "(Tensor input, Tensor target, Tensor? weight, "
                                                  "Tensor? pos_weight, int reduction) "
                                                  "-> (Tensor, Tensor)",
    "kl_div": "(Tensor input, Tensor target, int reduction, bool log_target) -> Tensor",
    "log_softmax": "(Tensor input, int dim) -> Tensor",
    "log_softmax_backward": "(Tensor grad_output, Tensor output, int dim) -> Tensor",
    "softmax": "(Tensor input, int dim) -> Tensor",
    "softmax_backward": "(Tensor grad_output, Tensor output, int dim) -> Tensor",
    "linear_cross_entropy": "(Tensor input, Tensor linear_weight, Tensor? linear_bias, Tensor target, "
                            "Tensor? weight, int reduction, int ignore_index, "
                            "float label_smoothing, int chunk_size) -> Tensor",
    "linear_cross_entropy_with_grad": "(Tensor input, Tensor linear_weight, Tensor? linear_bias, "
                                      "Tensor target, Tensor? weight, int reduction, int ignore_index, "
                                      "float label_smoothing, int chunk_size, bool grad_input, "
                                      "bool grad_weight, bool grad_bias) -> (Tensor, Tensor, Tensor, Tensor)",
    "scale_grad_": "(Tensor(a!) grad, Tensor grad_output, int how) -> ()",
    "linear_cross_entropy_backward": "(Tensor grad_output, Tensor input, Tensor linear_weight, "
                                     "Tensor? linear_bias, Tensor target, Tensor? weight, int reduction, "
                                     "int ignore_index, float label_smoothing, int chunk_size, "
                                     "bool grad_input, bool grad_weight, bool grad_bias) "
                                     "-> (Tensor, Tensor, Tensor)",
}
for _name, _schema in _SCHEMAS.items():
    lib.define(_name + _schema)

ops = torch.ops.fastlog
OPS = {name: getattr(ops, name).default for name in _SCHEMAS}
_RED = ("none", "mean", "sum", "batchmean")


# ------------------------------------------------------------------ checks --
# What PyTorch checks about shapes and dtypes, with its messages and exception
# types; run by the fake kernels (so tracing fails where PyTorch would) and
# before the CPU kernels of direct operator calls.  Fake kernels check with
# torch._check (symbolic shapes become runtime asserts, not guards); the CPU
# kernels, on real sizes, with plain comparisons (torch._check costs microseconds).
class _Checks:
    """``check(cond, msg)``, ``value(cond, msg)``, ``index(cond, msg)``: raise RuntimeError,
    ValueError, IndexError (`msg` a callable) unless `cond`."""

    def __init__(self, symbolic):
        if symbolic:
            self.check, self.value, self.index = torch._check, torch._check_value, torch._check_index
        else:
            self.check = self._raiser(RuntimeError)
            self.value = self._raiser(ValueError)
            self.index = self._raiser(IndexError)

    @staticmethod
    def _raiser(exc):
        def check(cond, msg):
            if not cond:
                raise exc(msg())
        return check


_SYM, _REAL = _Checks(True), _Checks(False)
def _check_input(c, name, input, min_dim=0):
    c.check(input.dtype in FLOATS or input.dtype in HALVES,
                 lambda: f"fastlog::{name}: input must be float32, float64, float16 or bfloat16, "
                         f"got {input.dtype}")
    c.check(input.device.type in ("cpu", "meta"),
                 lambda: f"fastlog::{name} runs on CPU tensors, got device {input.device}")
    c.check(input.dim() >= min_dim,
                 lambda: f"fastlog::{name}: input must have at least {min_dim} dimension(s), got 0-d")


def _check_reduction(c, reduction, allowed=3):
    c.value(0 <= reduction < allowed,
                       lambda: f"{reduction} is not a valid value for reduction (a code in "
                               f"0..{allowed - 1}: {', '.join(_RED[:allowed])})")


def _check_weight(c, weight, input, C):
    if weight is not None:
        c.check(weight.dim() == 1 and weight.shape[0] == C,
                     lambda: f"weight tensor should be defined either for all {C} classes or no "
                             f"classes but got weight tensor of shape: {list(weight.shape)}")
        c.check(weight.dtype == input.dtype or (input.dtype in HALVES and weight.dtype == torch.float32),
                     lambda: f"expected scalar type {input.dtype} but found {weight.dtype}")


def _check_index_target(c, input, target):
    c.check(target.dtype in (torch.int64, torch.uint8),
                 lambda: f"expected target dtype to be Long or Byte, but got {target.dtype}")
    if input.dim() >= 2:
        c.value(target.dim() >= 1 and target.shape[0] == input.shape[0],
                           lambda: f"Expected input batch_size ({input.shape[0]}) to match target "
                                   f"batch_size ({target.shape[0] if target.dim() else 0}).")
    bs = batch_shape(input)
    c.check(tuple(target.shape) == tuple(bs),
                 lambda: f"Expected target size {list(bs)}, got {list(target.shape)}")


def _check_classes(c, name, input):
    c.check(class_count(input) != 0,
                 lambda: f"fastlog::{name}: the input has no classes (C == 0); "
                         f"torch.nn.functional handles that case")


def _check_ce(c, input, target, weight, reduction, ignore_index, label_smoothing):
    _check_input(c, "cross_entropy", input, 1)
    _check_reduction(c, reduction)
    c.check(0.0 <= label_smoothing <= 1.0,
                 lambda: f"label_smoothing must be between 0.0 and 1.0. Got: {label_smoothing}")
    _check_classes(c, "cross_entropy", input)
    if target.is_floating_point():
        c.check(tuple(target.shape) == tuple(input.shape),
                     lambda: f"Expected target size {list(input.shape)} (class probabilities), "
                             f"got {list(target.shape)}")
        c.check(target.dtype == input.dtype,
                     lambda: f"expected scalar type {input.dtype} but found {target.dtype}")
        c.check(ignore_index < 0, lambda: "ignore_index is not supported for floating point target")
    else:
        _check_index_target(c, input, target)
    _check_weight(c, weight, input, class_count(input))


def _check_nll(c, input, target, weight, reduction, ignore_index):
    _check_input(c, "nll_loss", input, 1)
    _check_reduction(c, reduction)
    _check_classes(c, "nll_loss", input)
    c.check(not target.is_floating_point(),
                 lambda: f"expected target dtype to be Long or Byte, but got {target.dtype}")
    _check_index_target(c, input, target)
    _check_weight(c, weight, input, class_count(input))


def _check_bce(c, input, target, weight, pos_weight, reduction):
    _check_input(c, "binary_cross_entropy_with_logits", input)
    _check_reduction(c, reduction)
    c.value(tuple(target.shape) == tuple(input.shape),
                       lambda: f"Target size ({target.shape}) must be the same as input size "
                               f"({input.shape})")
    for t in (target, weight, pos_weight):
        if t is not None:
            c.check(t.dtype == input.dtype,
                    lambda t=t: f"expected scalar type {input.dtype} but found {t.dtype}")
    for t in (weight, pos_weight):
        if t is not None:
            shape = torch.broadcast_shapes(t.shape, input.shape)   # PyTorch's error if they do not
            c.check(tuple(shape) == tuple(input.shape),
                    lambda shape=shape: f"output with shape {list(input.shape)} doesn't match the "
                                        f"broadcast shape {list(shape)}")


def _check_kl(c, input, target, reduction, log_target):
    _check_input(c, "kl_div", input)
    _check_reduction(c, reduction, 4)
    c.check(tuple(target.shape) == tuple(input.shape) and target.dtype == input.dtype,
                 lambda: f"fastlog::kl_div: target must have the input's shape {list(input.shape)} "
                         f"and dtype {input.dtype}, got {list(target.shape)} {target.dtype}")


def _check_dim(c, input, dim):
    nd = max(input.dim(), 1)
    c.index(-nd <= dim < nd,
                       lambda: f"Dimension out of range (expected to be in range of [{-nd}, {nd - 1}], "
                               f"but got {dim})")


def _check_softmax(c, name, input, dim):
    _check_input(c, name, input)
    _check_dim(c, input, dim)


def _check_softmax_backward(c, name, grad_output, output, dim):
    _check_input(c, name, output)
    c.check(tuple(grad_output.shape) == tuple(output.shape) and grad_output.dtype == output.dtype,
                 lambda: f"fastlog::{name}: grad_output must have the output's shape and dtype")
    _check_dim(c, output, dim)


def _check_lce(c, input, linear_weight, linear_bias, target, weight, reduction, ignore_index,
               label_smoothing, chunk_size):
    name = "linear_cross_entropy"
    _check_input(c, name, input, 1)
    _check_reduction(c, reduction)
    c.check(input.dim() <= 2, lambda: f"fastlog::{name}: input must be (H,) or (N, H)")
    c.check(linear_weight.dim() == 2 and linear_weight.dtype == input.dtype,
                 lambda: f"fastlog::{name}: linear_weight must be (V, H) of the input's dtype")
    c.check(linear_weight.shape[1] == input.shape[-1],
                 lambda: f"fastlog::{name}: linear_weight has {linear_weight.shape[1]} features but "
                         f"input has {input.shape[-1]}")
    c.check(linear_weight.shape[0] != 0, lambda: f"fastlog::{name}: linear_weight has 0 rows")
    V = linear_weight.shape[0]
    if linear_bias is not None:
        c.check(tuple(linear_bias.shape) == (V,) and linear_bias.dtype == input.dtype,
                     lambda: f"fastlog::{name}: linear_bias must be ({V},) of the input's dtype")
    c.check(target.dtype in (torch.int64, torch.uint8),
                 lambda: f"fastlog::{name}: target must hold class indices (int64), got {target.dtype}")
    c.check(tuple(target.shape) == tuple(input.shape[:-1]),
                 lambda: f"Expected target size {list(input.shape[:-1])}, got {list(target.shape)}")
    _check_weight(c, weight, input, V)
    c.check(0.0 <= label_smoothing <= 1.0,
                 lambda: f"label_smoothing must be between 0.0 and 1.0. Got: {label_smoothing}")
    c.check(chunk_size == -1 or chunk_size >= 1,
                 lambda: f"fastlog::{name}: chunk_size must be -1 (default) or >= 1")
    if input.dtype in HALVES:
        c.check(input.dim() == 2 and reduction != 0,
                     lambda: f"fastlog::{name}: half precision takes (N, H) input and reduction "
                             f"'mean' or 'sum'")


# ------------------------------------------------------ CPU and fake kernels --
def _loss_like(input, reduction, shape):
    return input.new_empty(tuple(shape) if reduction == 0 else ())


def _grad_like(input):
    return torch.empty_like(input, memory_format=torch.contiguous_format)


def _impl(name, check, cpu, fake):
    """Register `cpu` (after `check`) as the CPU kernel and `fake` (after `check`) as the fake one."""
    def cpu_kernel(*args):
        check(_REAL, *args)
        return cpu(*args)

    def fake_kernel(*args):
        check(_SYM, *args)
        return fake(*args)

    cpu_kernel.__name__ = f"{name}_cpu"
    fake_kernel.__name__ = f"{name}_fake"
    lib.impl(name, cpu_kernel, "CPU")
    torch.library.register_fake(f"fastlog::{name}", fake_kernel, lib=lib)


def _hot(x, t, w, red, ign, eps):
    """The training-loop call (what compiled graphs run at every step): the checks it
    needs are the hot path's own test."""
    return w is None and not eps and red and hot_tensors(x, t) and -2**63 <= ign < 2**63


def _ce_cpu(x, t, w, red, ign, eps):
    if _hot(x, t, w, red, ign, eps):
        return K.cross_entropy_hot(x, t, red, ign)
    _check_ce(_REAL, x, t, w, red, ign, eps)
    return K.cross_entropy(x, t, w, red, ign, eps)


def _ce_with_grad_cpu(x, t, w, red, ign, eps):
    if _hot(x, t, w, red, ign, eps):
        return K.cross_entropy_with_grad_hot(x, t, red, ign)
    _check_ce(_REAL, x, t, w, red, ign, eps)
    return K.cross_entropy_with_grad(x, t, w, red, ign, eps)


lib.impl("cross_entropy", _ce_cpu, "CPU")
torch.library.register_fake("fastlog::cross_entropy", lambda x, t, w, red, ign, eps: (
    _check_ce(_SYM, x, t, w, red, ign, eps), _loss_like(x, red, batch_shape(x)))[1], lib=lib)


lib.impl("cross_entropy_with_grad", _ce_with_grad_cpu, "CPU")
torch.library.register_fake("fastlog::cross_entropy_with_grad", lambda x, t, w, red, ign, eps: (
    _check_ce(_SYM, x, t, w, red, ign, eps), (_loss_like(x, red, batch_shape(x)), _grad_like(x)))[1], lib=lib)
_impl("nll_loss", _check_nll, K.nll_loss, lambda x, t, w, red, ign: _loss_like(x, red, batch_shape(x)))
_impl("nll_loss_backward", lambda c, go, x, t, w, red, ign: _check_nll(c, x, t, w, red, ign),
      K.nll_loss_backward, lambda go, x, t, w, red, ign: _grad_like(x))
_impl("binary_cross_entropy_with_logits", _check_bce, K.binary_cross_entropy_with_logits,
      lambda x, t, w, pw, red: _loss_like(x, red, x.shape))
_impl("binary_cross_entropy_with_logits_with_grad", _check_bce,
      K.binary_cross_entropy_with_logits_with_grad,
      lambda x, t, w, pw, red: (_loss_like(x, red, x.shape), _grad_like(x)))
_impl("kl_div", _check_kl, K.kl_div, lambda x, t, red, lt: _loss_like(x, red, x.shape))
_impl("log_softmax", lambda c, x, dim: _check_softmax(c, "log_softmax", x, dim),
      lambda x, dim: K.log_softmax(x, dim % max(x.dim(), 1)), lambda x, dim: _grad_like(x))
_impl("softmax", lambda c, x, dim: _check_softmax(c, "softmax", x, dim),
      lambda x, dim: K.softmax(x, dim % max(x.dim(), 1)), lambda x, dim: _grad_like(x))
_impl("log_softmax_backward",
      lambda c, go, y, dim: _check_softmax_backward(c, "log_softmax_backward", go, y, dim),
      lambda go, y, dim: K.log_softmax_backward(go, y, dim % max(y.dim(), 1)),
      lambda go, y, dim: _grad_like(y))
_impl("softmax_backward", lambda c, go, y, dim: _check_softmax_backward(c, "softmax_backward", go, y, dim),
      lambda go, y, dim: K.softmax_backward(go, y, dim % max(y.dim(), 1)),
      lambda go, y, dim: _grad_like(y))


# scale_grad_'s `how`: grad_output is a 0-d scalar (a reduced loss), one value per
# position (broadcast along the class axis 1: cross-entropy 'none'), or of grad's shape
SCALAR, PER_POSITION, ELEMENTWISE = 0, 1, 2


def _grad_output_for(grad, grad_output, how):
    if how == PER_POSITION:
        return grad_output.reshape(K.class_axis_shape(grad.shape))
    return grad_output


def _scale_grad_cpu(grad, grad_output, how):
    if how == SCALAR and float(grad_output) == 1.0:
        return                  # after loss.backward(): nothing to do
    grad.mul_(_grad_output_for(grad, grad_output, how))


def _check_scale_grad(c, grad, grad_output, how):
    c.value(how in (SCALAR, PER_POSITION, ELEMENTWISE),
            lambda: f"fastlog::scale_grad_: how must be 0, 1 or 2, got {how}")
    want = (() if how == SCALAR else tuple(grad.shape) if how == ELEMENTWISE
            else tuple(K.class_axis_shape(grad.shape))[:1] + tuple(grad.shape[2:]))
    c.check(tuple(grad_output.shape) == want,
            lambda: f"fastlog::scale_grad_: grad_output has shape {list(grad_output.shape)}, "
                    f"expected {list(want)}")


lib.impl("scale_grad_", lambda grad, go, how: (_check_scale_grad(_REAL, grad, go, how),
                                               _scale_grad_cpu(grad, go, how))[1], "CPU")
torch.library.register_fake("fastlog::scale_grad_",
                            lambda grad, go, how: _check_scale_grad(_SYM, grad, go, how), lib=lib)


def _scaled(grad, grad_output, how):
    """`grad` times `grad_output` in a backward (see scale_grad_'s `how`).

    In a compiled backward the saved gradient is a buffer nothing else uses: it is
    scaled in place by ``scale_grad_`` (which skips the pass when grad_output is 1, as
    after ``loss.backward()``), and Inductor hands the buffer on as the input's
    gradient.  Elsewhere (a backward that may run twice) a new tensor."""
    if grad.numel() == 0:
        return grad
    if torch.compiler.is_compiling():
        ops.scale_grad_(grad, grad_output, how)
        return grad
    return grad * _grad_output_for(grad, grad_output, how)


def _lce_grad_fakes(x, W, b, gi, gw, gb):
    return (_grad_like(x) if gi else x.new_empty((0,)), _grad_like(W) if gw else x.new_empty((0,)),
            _grad_like(b) if (gb and b is not None) else x.new_empty((0,)))


def _lce_cpu(x, W, b, t, w, red, ign, eps, cs):
    return K.linear_cross_entropy_with_grad(x, W, b, t, w, red, ign, eps, cs, False, False, False)[0]


_impl("linear_cross_entropy", _check_lce, _lce_cpu,
      lambda x, W, b, t, w, red, ign, eps, cs: _loss_like(x, red, x.shape[:-1]))
_impl("linear_cross_entropy_with_grad", lambda c, *a: _check_lce(c, *a[:9]), K.linear_cross_entropy_with_grad,
      lambda x, W, b, t, w, red, ign, eps, cs, gi, gw, gb: (
          _loss_like(x, red, x.shape[:-1]), *_lce_grad_fakes(x, W, b, gi, gw, gb)))


def _check_lce_backward(c, go, *a):
    _check_lce(c, *a[:9])
    c.check(a[0].dtype in FLOATS,
                 lambda: "fastlog::linear_cross_entropy_backward: float32/float64 only")


_impl("linear_cross_entropy_backward", _check_lce_backward, K.linear_cross_entropy_backward,
      lambda go, x, W, b, t, w, red, ign, eps, cs, gi, gw, gb: _lce_grad_fakes(x, W, b, gi, gw, gb))


# ---------------------------------------------------------------- autograd --
def _torch_vjp(reference, primals, cotangent):
    """The vjp of PyTorch's implementation `reference` at `primals`: differentiable,
    and composable with the torch.func transforms (for higher-order derivatives)."""
    _, vjp_fn = torch.func.vjp(reference, *primals)
    return vjp_fn(cotangent)


class _Function(torch.autograd.Function):
    # no jvp: Dynamo cannot trace a Function that defines one, and fastlog has no
    # forward-mode formulas (PyTorch raises its "jvp is not implemented" error)
    generate_vmap_rule = True


class CrossEntropyFn(_Function):
    """Loss (and the saved gradient) from ``cross_entropy_with_grad``; backward scales it."""

    @staticmethod
    def forward(input, target, weight, reduction, ignore_index, label_smoothing):
        return ops.cross_entropy_with_grad(input, target, weight, reduction, ignore_index, label_smoothing)

    @staticmethod
    def setup_context(ctx, inputs, output):
        input, target, weight, reduction, ignore_index, label_smoothing = inputs
        ctx.mark_non_differentiable(output[1])
        ctx.save_for_backward(input, target, weight, output[1])
        ctx.params = (reduction, ignore_index, label_smoothing)

    @staticmethod
    def backward(ctx, grad_loss, _grad_grad):
        input, target, weight, g = ctx.saved_tensors
        red, ign, eps = ctx.params
        if torch.is_grad_enabled():
            (gi,) = _torch_vjp(lambda a: F.cross_entropy(a, target, weight, ignore_index=ign,
                                                         reduction=_RED[red], label_smoothing=eps),
                               (input,), grad_loss)
        else:
            gi = _scaled(g, grad_loss, PER_POSITION if red == 0 else SCALAR)
        return gi, None, None, None, None, None


class BCEWithLogitsFn(_Function):
    """Loss (and the saved gradient) from ``binary_cross_entropy_with_logits_with_grad``."""

    @staticmethod
    def forward(input, target, weight, pos_weight, reduction):
        return ops.binary_cross_entropy_with_logits_with_grad(input, target, weight, pos_weight, reduction)

    @staticmethod
    def setup_context(ctx, inputs, output):
        input, target, weight, pos_weight, reduction = inputs
        ctx.mark_non_differentiable(output[1])
        ctx.save_for_backward(input, target, weight, pos_weight, output[1])
        ctx.reduction = reduction

    @staticmethod
    def backward(ctx, grad_loss, _grad_grad):
        input, target, weight, pos_weight, g = ctx.saved_tensors
        red = ctx.reduction
        if torch.is_grad_enabled():
            (gi,) = _torch_vjp(lambda a: F.binary_cross_entropy_with_logits(
                a, target, weight, reduction=_RED[red], pos_weight=pos_weight), (input,), grad_loss)
        else:
            gi = _scaled(g, grad_loss, ELEMENTWISE if red == 0 else SCALAR)
        return gi, None, None, None, None


class NLLFn(_Function):
    @staticmethod
    def forward(input, target, weight, reduction, ignore_index):
        return ops.nll_loss(input, target, weight, reduction, ignore_index)

    @staticmethod
    def setup_context(ctx, inputs, output):
        input, target, weight, reduction, ignore_index = inputs
        ctx.save_for_backward(input, target, weight)
        ctx.params = (reduction, ignore_index)

    @staticmethod
    def backward(ctx, grad_loss):
        input, target, weight = ctx.saved_tensors
        red, ign = ctx.params
        if torch.is_grad_enabled():
            (gi,) = _torch_vjp(lambda a: F.nll_loss(a, target, weight, ignore_index=ign,
                                                    reduction=_RED[red]), (input,), grad_loss)
        else:
            gi = ops.nll_loss_backward(grad_loss, input, target, weight, red, ign)
        return gi, None, None, None, None


class KLDivFn(_Function):
    @staticmethod
    def forward(input, target, reduction, log_target):
        return ops.kl_div(input, target, reduction, log_target)

    @staticmethod
    def setup_context(ctx, inputs, output):
        input, target, reduction, log_target = inputs
        ctx.save_for_backward(target)
        ctx.params = (reduction, log_target, input.numel(), input.shape[0] if input.dim() else 1)

    @staticmethod
    def backward(ctx, grad_loss):
        # a constant in the input, built with PyTorch's ops: differentiable as it is
        (target,) = ctx.saved_tensors
        return K.kl_div_backward(grad_loss, target, *ctx.params), None, None, None


def _softmax_fn(forward_op, backward_op, torch_backward):
    """The autograd Function of log_softmax or softmax: the operator forward (its output
    saved), the operator backward, or PyTorch's differentiable one when grad mode is on
    inside backward (create_graph=True)."""

    class _Fn(_Function):
        @staticmethod
        def forward(input, dim):
            return forward_op(input, dim)

        @staticmethod
        def setup_context(ctx, inputs, output):
            ctx.save_for_backward(output)
            ctx.dim = inputs[1]

        @staticmethod
        def backward(ctx, grad_output):
            (y,) = ctx.saved_tensors
            if torch.is_grad_enabled():
                return torch_backward(grad_output, y, ctx.dim, y.dtype), None
            return backward_op(grad_output, y, ctx.dim), None
    return _Fn


LogSoftmaxFn = _softmax_fn(ops.log_softmax, ops.log_softmax_backward, torch._log_softmax_backward_data)
LogSoftmaxFn.__name__ = LogSoftmaxFn.__qualname__ = "LogSoftmaxFn"
SoftmaxFn = _softmax_fn(ops.softmax, ops.softmax_backward, torch._softmax_backward_data)
SoftmaxFn.__name__ = SoftmaxFn.__qualname__ = "SoftmaxFn"


def _lce_reference(x, W, b, target, weight, red, ign, eps):
    return F.cross_entropy(F.linear(x, W, b), target, weight, ignore_index=ign, reduction=_RED[red],
                           label_smoothing=eps)


class LinearCrossEntropyFn(_Function):
    """Fused linear + cross-entropy.  Reduced losses: the gradients come from the forward
    pass (``linear_cross_entropy_with_grad``); 'none': ``linear_cross_entropy_backward``
    recomputes the logits with per-row scales.  The grad_* flags say which gradients
    to compute (the forward cannot see ``ctx.needs_input_grad``)."""

    @staticmethod
    def forward(input, linear_weight, linear_bias, target, weight, reduction, ignore_index,
                label_smoothing, chunk_size, grad_input, grad_weight, grad_bias):
        pre = reduction != 0
        return ops.linear_cross_entropy_with_grad(input, linear_weight, linear_bias, target, weight,
                                                  reduction, ignore_index, label_smoothing, chunk_size,
                                                  grad_input and pre, grad_weight and pre,
                                                  grad_bias and pre)

    @staticmethod
    def setup_context(ctx, inputs, output):
        x, W, b, target, weight, red, ign, eps, cs, gi, gw, gb = inputs
        ctx.mark_non_differentiable(*output[1:])
        ctx.save_for_backward(x, W, b, target, weight, *output[1:])
        ctx.params = (red, ign, eps, cs, gi, gw, gb)

    @staticmethod
    def backward(ctx, grad_loss, *_):
        x, W, b, target, weight, gX, gW, gb = ctx.saved_tensors
        red, ign, eps, cs, need_x, need_w, need_b = ctx.params
        need_b = need_b and b is not None
        if torch.is_grad_enabled():
            primals = (x, W) + ((b,) if b is not None else ())
            grads = _torch_vjp(lambda a, c, *d: _lce_reference(a, c, d[0] if d else None, target, weight,
                                                               red, ign, eps), primals, grad_loss)
            gX, gW = grads[:2]
            gb = grads[2] if b is not None else None
        elif red == 0:
            gX, gW, gb = ops.linear_cross_entropy_backward(grad_loss, x, W, b, target, weight, red, ign,
                                                           eps, cs, need_x, need_w, need_b)
        else:
            gX, gW, gb = (_scaled(g, grad_loss, SCALAR) for g in (gX, gW, gb))
        return ((gX if need_x else None), (gW if need_w else None), (gb if need_b else None),
                None, None, None, None, None, None, None, None, None)


# Autograd-key kernels: a direct call of a differentiable operator on tensors that
# require grad enters its Function; otherwise the call goes on below autograd.
# Forward-mode AD (an input with a tangent) is refused with an error naming it.
def _refuse_forward_ad(name, args):
    if any(isinstance(a, torch.Tensor) and _forward_ad.unpack_dual(a).tangent is not None for a in args):
        raise NotImplementedError(
            f"fastlog::{name}: forward-mode AD (torch.func.jvp, jacfwd, torch.autograd.forward_ad) is "
            f"not supported; the functions of fastlog.torch hand such calls to PyTorch")


def _autograd(name, fn, diff, unpack=None):
    op = OPS[name]

    def kernel(*args):
        if _forward_ad._current_level >= 0:
            _refuse_forward_ad(name, args)
        if torch.is_grad_enabled() and any(args[i] is not None and args[i].requires_grad for i in diff):
            out = fn(*args)
            return unpack(out) if unpack else out
        with torch._C._AutoDispatchBelowAutograd():
            return op(*args)

    kernel.__name__ = f"{name}_autograd"
    lib.impl(name, kernel, "Autograd")


def _not_differentiable(name):
    """The Autograd kernel of an internal operator: refuses to be differentiated (either
    mode) rather than give a silently missing gradient, and goes on below autograd."""
    op = OPS[name]

    def kernel(*args):
        if _forward_ad._current_level >= 0:
            _refuse_forward_ad(name, args)
        if torch.is_grad_enabled() and any(isinstance(a, torch.Tensor) and a.requires_grad for a in args):
            raise RuntimeError(f"fastlog::{name} is not differentiable (it runs inside the autograd "
                               f"formulas of fastlog's differentiable operators); an input requires grad")
        with torch._C._AutoDispatchBelowAutograd():
            return op(*args)

    kernel.__name__ = f"{name}_autograd"
    lib.impl(name, kernel, "Autograd")


_autograd("cross_entropy", CrossEntropyFn.apply, (0,), lambda out: out[0])
_autograd("binary_cross_entropy_with_logits", BCEWithLogitsFn.apply, (0,), lambda out: out[0])
_autograd("nll_loss", NLLFn.apply, (0,))
_autograd("kl_div", KLDivFn.apply, (0,))
_autograd("log_softmax", LogSoftmaxFn.apply, (0,))
_autograd("softmax", SoftmaxFn.apply, (0,))


def _lce_apply(x, W, b, t, w, red, ign, eps, cs):
    need = (x.requires_grad, W.requires_grad, b is not None and b.requires_grad)
    return LinearCrossEntropyFn.apply(x, W, b, t, w, red, ign, eps, cs, *need)


_autograd("linear_cross_entropy", _lce_apply, (0, 1, 2), lambda out: out[0])

# The forward halves are differentiable too (an exported program inlines the
# Functions' forward, so its graph calls them and autograd must still work):
# the loss with respect to the input, through the same Functions; the gradient
# outputs are not differentiable.
_autograd("cross_entropy_with_grad", CrossEntropyFn.apply, (0,))
_autograd("binary_cross_entropy_with_logits_with_grad", BCEWithLogitsFn.apply, (0,))
_autograd("linear_cross_entropy_with_grad", LinearCrossEntropyFn.apply, (0, 1, 2))

# The ``*_backward`` operators are not differentiable: they run in the backward
# of the Functions above and of compiled graphs, below autograd.
for _name in ("nll_loss_backward", "log_softmax_backward", "softmax_backward",
              "linear_cross_entropy_backward", "scale_grad_"):
    _not_differentiable(_name)


# -------------------------------------------------------------------- vmap --
def _batched(a, d, B):
    """`a` with its batch dimension first (expanded when it has none)."""
    return a.movedim(d, 0) if d is not None else a.expand(B, *a.shape)


def _softmax_vmap(name):
    op = OPS[name]

    def rule(info, in_dims, x, dim):
        xb = _batched(x, in_dims[0], info.batch_size)
        if xb.dim() == 1:           # a 0-d input per entry: a 1-element "row" each
            return op(xb.unsqueeze(1), 1).squeeze(1), 0
        return op(xb, dim % (xb.dim() - 1) + 1), 0

    torch.library.register_vmap(f"fastlog::{name}", rule, lib=lib)


def _softmax_backward_vmap(name):
    op = OPS[name]

    def rule(info, in_dims, go, y, dim):
        B = info.batch_size
        gob, yb = _batched(go, in_dims[0], B), _batched(y, in_dims[1], B)
        if yb.dim() == 1:
            return op(gob.unsqueeze(1), yb.unsqueeze(1), 1).squeeze(1), 0
        return op(gob, yb, dim % (yb.dim() - 1) + 1), 0

    torch.library.register_vmap(f"fastlog::{name}", rule, lib=lib)


def _loop_vmap(name):
    """One call per batch entry, stacked: a reduced loss has its own denominator per entry."""
    op = OPS[name]

    def rule(info, in_dims, *args):
        def entry(i):
            return [a if (d is None or not isinstance(a, torch.Tensor)) else a.select(d, i)
                    for a, d in zip(args, in_dims)]
        outs = [op(*entry(i)) for i in range(info.batch_size)]
        if isinstance(outs[0], tuple):
            return tuple(torch.stack(o) for o in zip(*outs)), (0,) * len(outs[0])
        return torch.stack(outs), 0

    torch.library.register_vmap(f"fastlog::{name}", rule, lib=lib)


def _scale_grad_vmap(info, in_dims, grad, grad_output, how):
    torch._check(in_dims[0] is not None,
                 lambda: "fastlog::scale_grad_ under vmap: the gradient it scales in place must be batched")
    gb = grad.movedim(in_dims[0], 0)
    gob = _batched(grad_output, in_dims[1], info.batch_size)
    for i in range(info.batch_size):
        OPS["scale_grad_"](gb[i], gob[i], how)
    return None, None


torch.library.register_vmap("fastlog::scale_grad_", _scale_grad_vmap, lib=lib)

for _name in ("log_softmax", "softmax"):
    _softmax_vmap(_name)
for _name in ("log_softmax_backward", "softmax_backward"):
    _softmax_backward_vmap(_name)
for _name in ("cross_entropy", "cross_entropy_with_grad", "nll_loss", "nll_loss_backward",
              "binary_cross_entropy_with_logits", "binary_cross_entropy_with_logits_with_grad",
              "kl_div", "linear_cross_entropy", "linear_cross_entropy_with_grad",
              "linear_cross_entropy_backward"):
    _loop_vmap(_name)
