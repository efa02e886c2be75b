"""The eager route: the operators' CPU kernels called from ``autograd.Function`` s directly.

In eager mode on plain CPU tensors (see :mod:`._route`) the functions of
:mod:`fastlog.torch` skip the dispatcher: a call through
``torch.ops.fastlog.*`` with an autograd kernel costs 20-30 us in Python
wrappers alone, more than PyTorch's whole 64 x 10 cross-entropy step (the
measurements are in ``benchmarks/README.md``).  The Functions below run the same
kernels (:mod:`._kernels`) as the registered operators' CPU implementations,
so the two routes compute bit-identical results.  They are entered through
``_FunctionBase.apply`` (the C++ entry point): the route is decided before, and
no ``torch.func`` transform is active on it.

``cross_entropy`` and ``binary_cross_entropy_with_logits`` compute the
gradient in the forward pass and save it; backward only multiplies it by
``grad_output`` (not even that when ``grad_output`` is 1, as it is after
``loss.backward()`` on a reduced loss).  ``nll_loss`` and ``kl_div`` build
their (trivial) gradients in backward; ``log_softmax``/``softmax`` save their
output, as PyTorch does.

Higher-order gradients: a backward with grad mode on (``create_graph=True``)
computes the gradient with PyTorch's differentiable implementation from the
input, so ``gradgradcheck`` and Hessian-vector products work.  For that,
``cross_entropy`` keeps a plain reference to its input (no copy; changing the
logits in place after the forward is allowed, as with PyTorch, and only a
later create_graph=True backward then refuses) and drops it at the first
first-order backward; ``nll_loss`` and ``binary_cross_entropy_with_logits``
save their input as PyTorch's own implementations do.
"""
import torch

from . import _kernels as K
from . import _orig as F

_Function = torch.autograd.Function


def _raw(cls):
    """cls.apply without autograd.Function.apply's Python wrapper (functorch checks,
    argument binding): the C++ entry point ``_FunctionBase.apply``, bound to `cls`."""
    return super(_Function, cls).apply


def _is_one(grad_output):
    return grad_output.numel() == 1 and grad_output.item() == 1.0


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


class _CrossEntropy(_Function):   # the general one follows: both name their node _CrossEntropyBackward
    """_CrossEntropy for the training-loop call (see ``_route.cross_entropy_hot``)."""

    @staticmethod
    def forward(ctx, input, target, params):
        loss, g = K.cross_entropy_with_grad_hot(input, target, *params)
        # The gradient is saved (the engine releases it right after this node's backward,
        # so it becomes .grad without a copy; retain_graph=True keeps it); one attribute
        # holds the rest: the parameters and, for a create_graph=True backward only, the
        # input, its version and the targets (see _input_for_double_backward).
        ctx.save_for_backward(g)
        ctx.state = (params, input, input._version, target, target._version)
        return loss

    @staticmethod
    def backward(ctx, grad_output):
        (g,) = ctx.saved_tensors
        params, input, version, target, target_version = ctx.state
        if torch.is_grad_enabled():   # create_graph=True: PyTorch's differentiable path
            ctx.input, ctx.input_version = input, version
            input = _input_for_double_backward(ctx)
            if target._version != target_version:
                raise RuntimeError("one of the variables needed for gradient computation has been "
                                   "modified by an inplace operation: the target of "
                                   "fastlog.torch.cross_entropy")
            gi = _torch_grad(F.cross_entropy, input, grad_output, target, None, None, params[1],
                             None, K.RED_NAMES[params[0]], 0.0)
        else:
            ctx.state = (params, None, None, None, None)   # first-order backward: drop the input now
            gi = g if grad_output.item() == 1.0 else g * grad_output
        return gi, None, None


_CrossEntropyHot = _CrossEntropy


class _CrossEntropy(_Function):  # type: ignore[no-redef]  # same name: same backward node name
    @staticmethod
    def forward(ctx, input, target, weight, params):
        red, ign, eps, loss_dtype = params
        loss, g = K.cross_entropy_with_grad(input, target, weight, red, ign, eps, loss_dtype)
        ctx.save_for_backward(target, weight, g)
        ctx.params = params
        # The input itself is needed only by a create_graph=True backward.  It is kept as a
        # plain reference (not saved): PyTorch's own cross_entropy lets the logits be
        # modified in place after the forward, and so does this one.
        ctx.input, ctx.input_version, ctx.input_shape = input, input._version, input.shape
        return loss

    @staticmethod
    def backward(ctx, grad_output):
        target, weight, g = ctx.saved_tensors
        red, ign, eps, _ = ctx.params
        if torch.is_grad_enabled():   # create_graph=True: PyTorch's differentiable path
            input = _input_for_double_backward(ctx)
            gi = _torch_grad(F.cross_entropy, input, grad_output, target, weight, None, ign, None,
                             K.RED_NAMES[red], eps)
        else:
            ctx.input = None          # first-order backward: drop the reference now
            gi = (g if (red and _is_one(grad_output))
                  else K.scale_grad(g, grad_output, red, ctx.input_shape))
        return gi, None, None, None


class _NLL(_Function):
    @staticmethod
    def forward(ctx, input, target, weight, red, ign):
        ctx.save_for_backward(input, target, weight)
        ctx.params = (red, ign)
        return K.nll_loss(input, target, weight, red, ign)

    @staticmethod
    def backward(ctx, grad_output):
        input, target, weight = ctx.saved_tensors
        red, ign = ctx.params
        if torch.is_grad_enabled():
            gi = _torch_grad(F.nll_loss, input, grad_output, target, weight, None, ign, None,
                             K.RED_NAMES[red])
        else:
            # built here rather than keep an N x C array alive between forward and backward
            gi = K.nll_loss_backward(grad_output, input, target, weight, red, ign)
        return gi, None, None, None, None


class _BCEWithLogits(_Function):
    @staticmethod
    def forward(ctx, input, target, weight, pos_weight, red):
        loss, g = K.binary_cross_entropy_with_logits_with_grad(input, target, weight, pos_weight, red)
        ctx.save_for_backward(input, target, weight, pos_weight, g)
        ctx.red = red
        return loss

    @staticmethod
    def backward(ctx, grad_output):
        input, target, weight, pos_weight, g = ctx.saved_tensors
        red = ctx.red
        if torch.is_grad_enabled():
            gi = _torch_grad(F.binary_cross_entropy_with_logits, input, grad_output, target,
                             weight, None, None, K.RED_NAMES[red], pos_weight)
        elif red:
            gi = g if _is_one(grad_output) else g * grad_output
        else:
            gi = g * grad_output
        return gi, None, None, None, None


class _KLDiv(_Function):
    @staticmethod
    def forward(ctx, input, target, red, log_target):
        ctx.save_for_backward(target)
        ctx.params = (red, log_target, input.numel(), input.shape[0] if input.dim() else 1)
        return K.kl_div(input, target, red, log_target)

    @staticmethod
    def backward(ctx, grad_output):
        # a constant in the input: these torch ops are also the exact (differentiable)
        # create_graph=True backward
        (target,) = ctx.saved_tensors
        return K.kl_div_backward(grad_output, target, *ctx.params), None, None, None


def _softmax_function(name, forward_kernel, backward_kernel, torch_backward):
    """An autograd Function whose forward is fastlog's kernel (the output is saved for
    backward) and whose backward is fastlog's, or PyTorch's own differentiable formula
    when grad mode is on inside backward (or grad_output is not plain CPU memory of
    the output's dtype)."""

    class _Fn(_Function):
        @staticmethod
        def forward(ctx, input, dim):
            y = forward_kernel(input, dim)
            ctx.save_for_backward(y)
            ctx.dim = dim
            return y

        @staticmethod
        def backward(ctx, grad_output):
            (y,) = ctx.saved_tensors
            if (torch.is_grad_enabled() or type(grad_output) is not torch.Tensor
                    or grad_output.dtype != y.dtype or grad_output.is_neg() or grad_output.is_conj()):
                return torch_backward(grad_output, y, ctx.dim, y.dtype), None
            return backward_kernel(grad_output, y, ctx.dim), None

    _Fn.__name__ = _Fn.__qualname__ = name
    return _Fn


_LogSoftmax = _softmax_function("_LogSoftmax", K.log_softmax, K.log_softmax_backward,
                                torch._log_softmax_backward_data)
_Softmax = _softmax_function("_Softmax", K.softmax, K.softmax_backward, torch._softmax_backward_data)

cross_entropy = _raw(_CrossEntropy)
cross_entropy_hot = _raw(_CrossEntropyHot)
nll_loss = _raw(_NLL)
bce_with_logits = _raw(_BCEWithLogits)
kl_div = _raw(_KLDiv)
log_softmax = _raw(_LogSoftmax)
softmax = _raw(_Softmax)
