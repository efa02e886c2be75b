"""fastlog's PyTorch operators (``torch.ops.fastlog.*``) checked by ``torch.library.opcheck``.

opcheck runs, for every sample: the schema check (no mutation, no output
aliasing an input that the schema does not declare), the autograd
registration check, the fake-tensor check (the fake kernel's sizes, strides
and dtypes equal the CPU kernel's) and AOT dispatch with static and dynamic
shapes (outputs and gradients through AOTAutograd equal eager ones).  The
samples cover float32/float64/bfloat16/float16, contiguous, non-contiguous
and expanded (stride-0) inputs, inputs that require grad, every reduction,
class weights, ignore_index, label smoothing and K-dimensional targets.

Also here: the CPU kernels against PyTorch's functions (the oracle), the fake
kernels raising PyTorch's errors for shapes PyTorch rejects, the vmap rules
against PyTorch's own vmap, the statement that forward-mode AD is not
supported, and the rule that no error inside fastlog is swallowed (a fault
injected into a kernel surfaces from every function, on every route).
"""
import itertools

import numpy as np
import pytest

torch = pytest.importorskip("torch")
import torch.nn.functional as F  # noqa: E402
from torch._subclasses.fake_tensor import FakeTensorMode  # noqa: E402

import fastlog  # noqa: E402
import fastlog.torch as FL  # noqa: E402
from fastlog.torch import _ops  # noqa: E402
from fastlog.torch._route import COMPILED_MIN_ELEMENTS  # noqa: E402

ops = torch.ops.fastlog
DTYPES = (torch.float32, torch.float64, torch.bfloat16, torch.float16)
RED = ("none", "mean", "sum", "batchmean")


def gen(seed):
    return torch.Generator().manual_seed(seed)


def layout(a, kind, seed=0):
    """`a` (a fresh tensor) as a contiguous, non-contiguous (transposed storage) or
    expanded (stride-0 first axis) input that requires grad where it is floating."""
    if kind == "noncontig" and a.dim() >= 2:
        a = a.transpose(0, -1).contiguous().transpose(0, -1)
    elif kind == "expanded" and a.dim() >= 1 and a.shape[0] > 1:
        a = a[:1].expand(a.shape)
    return a


def logits(shape, dtype, kind="contig", seed=0, grad=True):
    x = (torch.randn(shape, generator=gen(seed), dtype=torch.float64) * 2).to(dtype)
    x = layout(x, kind)
    return x.requires_grad_(grad) if x.is_leaf else x


def index_target(shape, C, seed, ignore_index=None):
    bshape = () if len(shape) == 1 else (shape[0],) + tuple(shape[2:])
    t = torch.randint(0, C, bshape, generator=gen(seed))
    if ignore_index is not None and t.dim():
        t.view(-1)[::3] = ignore_index
    return t


# ----------------------------------------------------------------- samples --
def ce_samples():
    out = []
    shapes = [(5,), (6, 5), (3, 5, 4)]
    for i, (dtype, shape, red) in enumerate(itertools.product(DTYPES, shapes, (0, 1, 2))):
        C = shape[0] if len(shape) == 1 else shape[1]
        kind = ("contig", "noncontig", "expanded")[i % 3]
        half = dtype in (torch.bfloat16, torch.float16)
        w = (torch.rand(C, generator=gen(i), dtype=torch.float64) + 0.1).to(dtype) if i % 2 else None
        ign = 2 if i % 4 == 1 else -100
        eps = 0.2 if i % 3 == 2 else 0.0
        x = logits(shape, dtype, kind, seed=i)
        out.append(("index", (x, index_target(shape, C, i, ign if ign != -100 else None), w, red, ign, eps)))
        if not half or i % 2:
            p = torch.softmax(torch.randn(shape, generator=gen(100 + i), dtype=torch.float64),
                              0 if len(shape) == 1 else 1).to(dtype)
            out.append(("prob", (logits(shape, dtype, "contig", seed=i), p, w, red, -100, eps)))
    return out


def _ids(samples):
    return [f"{k}-{s[0].dtype}-{tuple(s[0].shape)}-{i}" for i, (k, s) in enumerate(samples)]


CE = ce_samples()


@pytest.mark.parametrize("sample", CE, ids=_ids(CE))
def test_opcheck_cross_entropy(sample):
    _, args = sample
    torch.library.opcheck(ops.cross_entropy.default, args)
    torch.library.opcheck(ops.cross_entropy_with_grad.default, args)


def nll_samples():
    out = []
    for i, (dtype, shape, red) in enumerate(itertools.product(DTYPES, [(6, 5), (3, 5, 4)], (0, 1, 2))):
        C = shape[1]
        x = torch.log_softmax(logits(shape, dtype, ("contig", "noncontig")[i % 2], seed=i).detach().float(),
                              1).to(dtype).requires_grad_()
        w = (torch.rand(C, generator=gen(i), dtype=torch.float64) + 0.1).to(dtype) if i % 2 else None
        out.append((x, index_target(shape, C, i, 1 if i % 3 == 0 else None), w, red, 1 if i % 3 == 0 else -100))
    return out


NLL = nll_samples()


@pytest.mark.parametrize("args", NLL, ids=[f"{a[0].dtype}-{tuple(a[0].shape)}-{a[3]}" for a in NLL])
def test_opcheck_nll_loss(args):
    torch.library.opcheck(ops.nll_loss.default, args)
    go = torch.rand(args[1].shape if args[3] == 0 else (), generator=gen(5)).to(args[0].dtype)
    torch.library.opcheck(ops.nll_loss_backward.default, (go, args[0].detach()) + args[1:],
                          test_utils=("test_schema", "test_faketensor", "test_aot_dispatch_static"))


def bce_samples():
    out = []
    for i, (dtype, shape, red) in enumerate(itertools.product(DTYPES, [(7,), (6, 5), (2, 3, 4)], (0, 1, 2))):
        x = logits(shape, dtype, ("contig", "noncontig", "expanded")[i % 3], seed=i)
        y = torch.rand(shape, generator=gen(i), dtype=torch.float64).to(dtype)
        w = (torch.rand(shape[-1], generator=gen(i + 1), dtype=torch.float64) + 0.5).to(dtype) if i % 2 else None
        pw = (torch.rand(shape[-1], generator=gen(i + 2), dtype=torch.float64) * 3).to(dtype) if i % 3 else None
        out.append((x, y, w, pw, red))
    return out


BCE = bce_samples()


@pytest.mark.parametrize("args", BCE, ids=[f"{a[0].dtype}-{tuple(a[0].shape)}-{a[4]}" for a in BCE])
def test_opcheck_bce_with_logits(args):
    torch.library.opcheck(ops.binary_cross_entropy_with_logits.default, args)
    torch.library.opcheck(ops.binary_cross_entropy_with_logits_with_grad.default, args)


KL = [(torch.log_softmax(torch.randn(4, 5, generator=gen(i), dtype=torch.float64), 1).to(dt)
       .requires_grad_(), torch.softmax(torch.randn(4, 5, generator=gen(i + 9), dtype=torch.float64), 1)
       .to(dt), red, bool(i % 2))
      for i, (dt, red) in enumerate(itertools.product(DTYPES, (0, 1, 2, 3)))]


@pytest.mark.parametrize("args", KL, ids=[f"{a[0].dtype}-{a[2]}-{a[3]}" for a in KL])
def test_opcheck_kl_div(args):
    x, t, red, log_target = args
    torch.library.opcheck(ops.kl_div.default, (x, t.log() if log_target else t, red, log_target))


SOFTMAX = [(name, logits(shape, dt, kind, seed=i), dim)
           for i, (name, dt, (shape, dim), kind) in enumerate(itertools.product(
               ("log_softmax", "softmax"), DTYPES, [((6, 5), 1), ((3, 4, 5), 0), ((7,), -1), ((), 0)],
               ("contig", "noncontig", "expanded")))
           if i % 2 == 0 or kind == "contig"]


@pytest.mark.parametrize("sample", SOFTMAX,
                         ids=[f"{n}-{x.dtype}-{tuple(x.shape)}-{d}-{i}" for i, (n, x, d) in enumerate(SOFTMAX)])
def test_opcheck_softmax_family(sample):
    name, x, dim = sample
    torch.library.opcheck(getattr(ops, name).default, (x, dim))
    y = getattr(torch, name)(x.detach(), dim)
    go = torch.randn(x.shape, generator=gen(3), dtype=torch.float64).to(x.dtype)
    torch.library.opcheck(getattr(ops, name + "_backward").default, (go, y, dim),
                          test_utils=("test_schema", "test_faketensor", "test_aot_dispatch_static"))


def lce_samples():
    out = []
    for i, (dt, red, bias) in enumerate(itertools.product((torch.float32, torch.float64), (0, 1, 2), (False, True))):
        x = logits((6, 4), dt, ("contig", "noncontig")[i % 2], seed=i)
        W = logits((9, 4), dt, seed=i + 1)
        b = logits((9,), dt, seed=i + 2) if bias else None
        t = index_target((6, 9), 9, i, 3 if i % 2 else None)
        w = (torch.rand(9, generator=gen(i), dtype=dt) + 0.5) if i % 3 == 0 else None
        out.append((x, W, b, t, w, red, 3 if i % 2 else -100, 0.1 if i % 4 == 1 else 0.0, -1 if i % 5 else 2))
    for dt in (torch.bfloat16, torch.float16):
        for red in (1, 2):
            x, W = logits((6, 4), dt, seed=red), logits((9, 4), dt, seed=red + 1)
            out.append((x, W, None, index_target((6, 9), 9, red, 3), None, red, 3, 0.1, -1))
    return out


LCE = lce_samples()


@pytest.mark.parametrize("args", LCE, ids=[f"{a[0].dtype}-{a[5]}-{a[2] is not None}-{i}" for i, a in enumerate(LCE)])
def test_opcheck_linear_cross_entropy(args):
    torch.library.opcheck(ops.linear_cross_entropy.default, args)
    x, W, b = args[:3]
    flags = (x.requires_grad, W.requires_grad, b is not None)
    torch.library.opcheck(ops.linear_cross_entropy_with_grad.default, args + flags)
    if args[5] == 0 and x.dtype in (torch.float32, torch.float64):
        go = torch.rand(x.shape[0], generator=gen(7), dtype=x.dtype)
        torch.library.opcheck(ops.linear_cross_entropy_backward.default,
                              (go, x.detach(), W.detach(), None if b is None else b.detach()) + args[3:] + flags,
                              test_utils=("test_schema", "test_faketensor", "test_aot_dispatch_static"))


SCALE = [(torch.randn(6, 5, dtype=dt), torch.tensor(go, dtype=dt), 0) for dt in DTYPES for go in (1.0, -2.5)] + [
    (torch.randn(3, 5, 4), torch.rand(3, 4), 1), (torch.randn(5), torch.tensor(0.5), 1),
    (torch.randn(6, 5), torch.rand(6, 5), 2)]


@pytest.mark.parametrize("args", SCALE, ids=[f"{a[0].dtype}-{tuple(a[0].shape)}-{a[2]}" for a in SCALE])
def test_opcheck_scale_grad_(args):
    grad, go, how = args
    torch.library.opcheck(ops.scale_grad_.default, (grad.clone(), go, how),
                          test_utils=("test_schema", "test_faketensor", "test_aot_dispatch_static",
                                      "test_aot_dispatch_dynamic"))
    g = grad.clone()
    ops.scale_grad_(g, go, how)
    want = grad * (go if how != 1 else go.reshape(_ops.K.class_axis_shape(grad.shape)))
    torch.testing.assert_close(g, want)


def test_every_operator_is_checked_here():
    checked = {"cross_entropy", "cross_entropy_with_grad", "nll_loss", "nll_loss_backward",
               "binary_cross_entropy_with_logits", "binary_cross_entropy_with_logits_with_grad", "kl_div",
               "log_softmax", "log_softmax_backward", "softmax", "softmax_backward", "linear_cross_entropy",
               "linear_cross_entropy_with_grad", "linear_cross_entropy_backward", "scale_grad_"}
    assert set(_ops.OPS) == checked


# --------------------------------------------------------- kernels vs torch --
def _torch_fn(name):
    return {"cross_entropy": lambda x, t, w, red, ign, eps: F.cross_entropy(
                x, t, w, ignore_index=ign, reduction=RED[red], label_smoothing=eps),
            "nll_loss": lambda x, t, w, red, ign: F.nll_loss(x, t, w, ignore_index=ign, reduction=RED[red]),
            "binary_cross_entropy_with_logits": lambda x, y, w, pw, red: F.binary_cross_entropy_with_logits(
                x, y, w, reduction=RED[red], pos_weight=pw),
            }[name]


@pytest.mark.parametrize("name, samples", [("cross_entropy", [s for _, s in CE]), ("nll_loss", NLL),
                                           ("binary_cross_entropy_with_logits", BCE)])
def test_operators_match_torch(name, samples):
    """Values and gradients of the operators (eager, through their autograd) against PyTorch."""
    op = getattr(ops, name).default
    ref = _torch_fn(name)
    for args in samples:
        dt = args[0].dtype
        if dt in (torch.bfloat16, torch.float16):
            continue      # half precision against float64 is test_half.py's subject
        a = args[0].detach().clone().requires_grad_()
        b = args[0].detach().clone().requires_grad_()
        got, want = op(a, *args[1:]), ref(b, *args[1:])
        tol = dict(rtol=2e-5, atol=2e-6) if dt == torch.float32 else dict(rtol=1e-10, atol=1e-12)
        torch.testing.assert_close(got, want, **tol)
        go = torch.rand(want.shape, generator=gen(1), dtype=dt) + 0.5
        got.backward(go)
        want.backward(go)
        torch.testing.assert_close(a.grad, b.grad, **tol)


# ---------------------------------------------------------- fake kernels --
BAD_SHAPES = {
    "batch mismatch": ("cross_entropy", lambda: (torch.randn(3, 5), torch.tensor([1, 2]), None),
                       dict(reduction="mean")),
    "K-dim mismatch": ("cross_entropy", lambda: (torch.randn(2, 3, 4), torch.zeros(2, 5, dtype=torch.long), None),
                       dict(reduction="mean")),
    "weight length": ("cross_entropy", lambda: (torch.randn(3, 5), torch.tensor([1, 2, 3]), torch.rand(4)),
                      dict(reduction="mean")),
    "int32 target": ("cross_entropy", lambda: (torch.randn(3, 5), torch.tensor([1, 2, 3], dtype=torch.int32),
                                               None), dict(reduction="mean")),
    "nll batch mismatch": ("nll_loss", lambda: (torch.randn(3, 5), torch.tensor([1, 2]), None),
                           dict(reduction="mean")),
    "bce shape": ("binary_cross_entropy_with_logits", lambda: (torch.randn(3, 5), torch.rand(3, 4)), {}),
}


@pytest.mark.parametrize("case", sorted(BAD_SHAPES))
def test_fake_kernels_raise_torchs_errors(case):
    name, make, kw = BAD_SHAPES[case]
    args = make()
    with pytest.raises(Exception) as ref:
        getattr(F, name)(*args, **kw)
    red = {"mean": 1}.get(kw.get("reduction"), 1)
    if name == "cross_entropy":
        op_args = args + (red, -100, 0.0)
    elif name == "nll_loss":
        op_args = args + (red, -100)
    else:
        op_args = args + (None, None, red)
    with FakeTensorMode() as mode:
        fake = [mode.from_tensor(a) if isinstance(a, torch.Tensor) else a for a in op_args]
        with pytest.raises(type(ref.value)) as got:
            getattr(ops, name)(*fake)
    # the message names what PyTorch's names (sizes, "weight", "target", ...)
    words = {"batch mismatch": "batch_size", "K-dim mismatch": "target size", "weight length": "weight",
             "int32 target": "target dtype", "nll batch mismatch": "batch_size", "bce shape": "Target size"}
    assert words[case].lower() in str(got.value).lower() and words[case].lower() in str(ref.value).lower()
    # the CPU kernel of a direct call checks the same
    with pytest.raises(type(ref.value)):
        getattr(ops, name)(*op_args)


def test_direct_call_out_of_range_target_is_index_error():
    with pytest.raises(IndexError, match="out of bounds"):
        ops.cross_entropy(torch.randn(3, 5), torch.tensor([1, 2, 7]), None, 1, -100, 0.0)
    with pytest.raises(IndexError, match="out of bounds"):
        ops.nll_loss(torch.randn(3, 5), torch.tensor([1, -2, 0]), None, 1, -100)


def test_backward_operators_are_not_differentiable():
    """The backward operators refuse to be differentiated (no silently missing
    gradient); below autograd they run.  The forward halves are differentiable."""
    x = torch.randn(4, 5, requires_grad=True)
    t = torch.tensor([0, 1, 2, 3])
    with pytest.raises(RuntimeError, match="not differentiable"):
        ops.log_softmax_backward(torch.ones(4, 5), torch.log_softmax(x, 1), 1)
    with pytest.raises(RuntimeError, match="not differentiable"):
        ops.nll_loss_backward(torch.tensor(1.0), x, t, None, 1, -100)
    loss, g = ops.cross_entropy_with_grad(x, t, None, 1, -100, 0.0)
    assert loss.requires_grad and not g.requires_grad
    loss.backward()
    torch.testing.assert_close(x.grad, g)
    torch.testing.assert_close(g, torch.func.grad(lambda a: F.cross_entropy(a, t))(x.detach()))


# -------------------------------------------------------------------- vmap --
VMAP_CASES = {
    "cross_entropy mean": (lambda f: lambda x, t: f.cross_entropy(x, t), "index"),
    "cross_entropy none smoothing": (lambda f: lambda x, t: f.cross_entropy(x, t, reduction="none",
                                                                          label_smoothing=0.1), "index"),
    "cross_entropy prob": (lambda f: lambda x, p: f.cross_entropy(x, p, reduction="sum"), "prob"),
    "nll_loss": (lambda f: lambda x, t: f.nll_loss(torch.log_softmax(x, 1), t, ignore_index=1), "index"),
    "bce": (lambda f: lambda x, p: f.binary_cross_entropy_with_logits(x, p), "prob"),
    "kl_div": (lambda f: lambda x, p: f.kl_div(torch.log_softmax(x, 1), p, reduction="batchmean"), "prob"),
    "log_softmax": (lambda f: lambda x, t: f.log_softmax(x, 1), "index"),
    "softmax": (lambda f: lambda x, t: f.softmax(x, 0), "index"),
}


@pytest.mark.parametrize("case", sorted(VMAP_CASES))
def test_vmap_and_per_sample_gradients_match_torch(case):
    make, kind = VMAP_CASES[case]
    x = torch.randn(3, 6, 5, generator=gen(1), dtype=torch.float64)
    t = (torch.randint(0, 5, (3, 6), generator=gen(2)) if kind == "index"
         else torch.softmax(torch.randn(3, 6, 5, generator=gen(3), dtype=torch.float64), -1))
    ours, theirs = make(FL), make(F)
    torch.testing.assert_close(torch.vmap(ours)(x, t), torch.vmap(theirs)(x, t))
    if case.startswith(("log_softmax", "softmax")):
        ours_s = lambda a, b: ours(a, b).square().sum()      # noqa: E731
        theirs_s = lambda a, b: theirs(a, b).square().sum()  # noqa: E731
    elif "none" in case:
        ours_s = lambda a, b: ours(a, b).sum()               # noqa: E731
        theirs_s = lambda a, b: theirs(a, b).sum()           # noqa: E731
    else:
        ours_s, theirs_s = ours, theirs
    torch.testing.assert_close(torch.vmap(torch.func.grad(ours_s))(x, t),
                               torch.vmap(torch.func.grad(theirs_s))(x, t))


def test_vmap_runs_fastlogs_operators(monkeypatch):
    seen = []
    from fastlog._dispatch import core
    # the general loss or the training-loop call's by-address kernel
    for owner, name in ((fastlog._losses, "cross_entropy"), (core, "ce_index_addr")):
        def spy(*a, _real=getattr(owner, name), **k):
            seen.append(1)
            return _real(*a, **k)
        monkeypatch.setattr(owner, name, spy)
    x = torch.randn(4, 6, 5)
    t = torch.randint(0, 5, (4, 6))
    torch.vmap(FL.cross_entropy)(x, t)
    assert len(seen) == 4      # one kernel call per batch entry (each its own mean)


# ------------------------------------------------------- forward-mode AD --
def test_forward_mode_ad_goes_to_pytorch():
    """fastlog has no forward-mode formulas: under jvp/forward_ad the functions hand
    the call to PyTorch (same values); the operators themselves refuse."""
    x = torch.randn(4, 5, dtype=torch.float64)
    t = torch.tensor([0, 1, 2, 3])
    v = torch.randn(4, 5, dtype=torch.float64)
    got = torch.func.jvp(lambda a: FL.cross_entropy(a, t), (x,), (v,))
    want = torch.func.jvp(lambda a: F.cross_entropy(a, t), (x,), (v,))
    torch.testing.assert_close(got, want)
    import torch.autograd.forward_ad as fwAD
    with fwAD.dual_level():
        d = fwAD.make_dual(x, v)
        got = fwAD.unpack_dual(FL.log_softmax(d, 1)).tangent
        want = fwAD.unpack_dual(F.log_softmax(d, 1)).tangent
    torch.testing.assert_close(got, want)
    for fn in (lambda a: ops.cross_entropy(a, t, None, 1, -100, 0.0),
               lambda a: ops.cross_entropy_with_grad(a, t, None, 1, -100, 0.0)[0],
               lambda a: ops.log_softmax(a, 1)):
        with pytest.raises(NotImplementedError, match="forward-mode AD"):
            torch.func.jvp(fn, (x,), (v,))
        with fwAD.dual_level(), pytest.raises(NotImplementedError, match="forward-mode AD"):
            fn(fwAD.make_dual(x, v))


# ------------------------------------------------- errors are not swallowed --
class Injected(ValueError):
    pass


def _boom(*a, **k):
    raise Injected("fault injected into a fastlog kernel")


def _idx(x):
    return torch.arange(x.shape[0]) % x.shape[1]


FAULT_CALLS = {
    "cross_entropy hot": (lambda x: FL.cross_entropy(x, _idx(x)), "core"),
    "cross_entropy": (lambda x: FL.cross_entropy(x, _idx(x), label_smoothing=0.1), "ce.fused"),
    "cross_entropy no grad": (lambda x: FL.cross_entropy(x.detach(), _idx(x), label_smoothing=0.1),
                              "cross_entropy"),
    "nll_loss": (lambda x: FL.nll_loss(x, _idx(x)), "nll_loss"),
    "bce": (lambda x: FL.binary_cross_entropy_with_logits(x, torch.ones_like(x) / 2),
            "binary_cross_entropy_with_logits_and_grad"),
    "kl_div": (lambda x: FL.kl_div(x, torch.ones_like(x) / 2, reduction="sum"), "kl_div"),
}


@pytest.mark.parametrize("route", ["eager", "torch.func.grad", "compile"])
@pytest.mark.parametrize("case", sorted(FAULT_CALLS))
def test_injected_kernel_fault_surfaces(case, route, monkeypatch):
    """A fastlog ValueError raised inside a kernel reaches the caller, on every route,
    and PyTorch's function is not called instead."""
    call, target = FAULT_CALLS[case]
    if target == "core":
        class Core:
            def __getattr__(self, name):
                return _boom
        from fastlog.torch import _kernels
        monkeypatch.setattr(_kernels, "core", Core())
        if route != "eager":
            # traced routes may take the general kernels; fault them too
            monkeypatch.setattr(fastlog._losses.ce, "fused", _boom)
            monkeypatch.setattr(fastlog._losses, "cross_entropy", _boom)
    elif target == "ce.fused":
        monkeypatch.setattr(fastlog._losses.ce, "fused", _boom)
        monkeypatch.setattr(fastlog._losses, "cross_entropy", _boom)
    else:
        monkeypatch.setattr(fastlog._losses, target, _boom)
        if target.endswith("_and_grad"):
            monkeypatch.setattr(fastlog._losses, target[:-len("_and_grad")], _boom)

    class NoTorch:
        def __getattr__(self, name):
            raise AssertionError(f"fastlog.torch handed the call to torch.nn.functional.{name}")
    monkeypatch.setattr(FL.functional, "F", NoTorch())
    # (under torch.compile, inputs of COMPILED_MIN_ELEMENTS or more take fastlog's operators)
    x = torch.randn(64, -(-COMPILED_MIN_ELEMENTS // 64) if route == "compile" else 5, requires_grad=True)
    if route == "eager":
        fn = call
    elif route == "torch.func.grad":
        fn = torch.func.grad(lambda a: call(a).sum()) if "no grad" not in case else call
    else:
        torch._dynamo.reset()
        fn = torch.compile(call, backend="aot_eager", fullgraph=True)
    with pytest.raises(Exception) as ei:
        fn(x.detach().requires_grad_())
    chain = [ei.value]
    while chain[-1].__cause__ is not None or chain[-1].__context__ is not None:
        chain.append(chain[-1].__cause__ or chain[-1].__context__)
    assert any(isinstance(e, Injected) for e in chain), repr(ei.value)
    torch._dynamo.reset()


def test_softmax_fault_surfaces(monkeypatch):
    monkeypatch.setattr(fastlog._softmax, "softmax", _boom)
    with pytest.raises(Injected):
        FL.softmax(torch.randn(3, 4), 1)


def test_linear_cross_entropy_fault_surfaces(monkeypatch):
    import fastlog.linear as lin
    monkeypatch.setattr(lin, "_run", _boom)
    with pytest.raises(Injected):
        FL.linear_cross_entropy(torch.randn(3, 4, requires_grad=True), torch.randn(5, 4), torch.tensor([0, 1, 4]))


def test_no_rejected_exception_is_caught_in_the_torch_face():
    """The old ``except (ValueError, TypeError, IndexError, OverflowError): pass`` is gone:
    no source file of fastlog.torch catches those exceptions."""
    import pathlib
    import re
    root = pathlib.Path(FL.__file__).parent
    # (distributed.py converts one argument and reports every local failure to the other
    # ranks before re-raising it: nothing is swallowed there either)
    for path in sorted(set(root.glob("*.py")) - {root / "distributed.py"}):
        text = path.read_text()
        assert not re.search(r"except\s*\(?\s*(_REJECTED|ValueError|TypeError|IndexError|OverflowError)", text), path


# ----------------------------------------------------------- registration --
def test_registration_route_is_library_define_and_impl():
    """Defined with torch.library.Library("fastlog", "DEF"): a CPU kernel, an Autograd
    kernel and a fake kernel for every operator; none is a custom_op."""
    for name in _ops.OPS:
        qual = f"fastlog::{name}"
        assert torch._C._dispatch_has_kernel_for_dispatch_key(qual, "CPU"), name
        assert torch._C._dispatch_has_kernel_for_dispatch_key(qual, "Autograd"), name
        assert torch._C._dispatch_has_kernel_for_dispatch_key(qual, "Meta") or \
            torch._library.simple_registry.singleton.find(qual).fake_impl.kernel is not None, name
    assert np.all([not isinstance(op, torch._library.custom_ops.CustomOpDef) for op in _ops.OPS.values()])


OUT_OF_RANGE = {
    "hot path": lambda f: f.cross_entropy(torch.randn(4, 3, requires_grad=True), torch.tensor([0, 1, 2, 5])),
    "no grad": lambda f: f.cross_entropy(torch.randn(4, 3), torch.tensor([0, 7, 2, 5])),
    "smoothing": lambda f: f.cross_entropy(torch.randn(4, 3, requires_grad=True), torch.tensor([0, -3, 2, 1]),
                                           label_smoothing=0.1),
    "weights": lambda f: f.cross_entropy(torch.randn(4, 3), torch.tensor([0, 1, 9, 1]), torch.rand(3)),
    "nll": lambda f: f.nll_loss(torch.randn(4, 3, requires_grad=True), torch.tensor([3, 1, 2, 0])),
}


@pytest.mark.parametrize("case", sorted(OUT_OF_RANGE))
def test_out_of_range_targets_raise_pytorchs_error(case):
    """Where PyTorch raises, fastlog raises PyTorch's error: same type, same message."""
    call = OUT_OF_RANGE[case]
    with pytest.raises(IndexError) as want:
        call(F)
    with pytest.raises(IndexError) as got:
        call(FL)
    assert str(got.value) == str(want.value)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("reduction", [1, 2])
def test_training_loop_path_equals_the_general_path(dtype, reduction):
    """The torch face's training-loop path (its own finishing of a finite total) gives
    bit-identical losses and gradients to the general path (fastlog._losses), also for
    the rare totals it hands to the reduction code (all ignored, overflow: +inf, as
    PyTorch gives, with no RuntimeWarning)."""
    import warnings

    from fastlog.torch import _kernels as K
    big = torch.finfo(dtype).max
    cases = [((torch.randn(64, 10) * 3).to(dtype), torch.randint(0, 10, (64,))),
             (torch.randn(5, 4).to(dtype), torch.full((5,), -100)),                     # all ignored
             (torch.tensor([[big, -big], [-big, big]], dtype=dtype), torch.tensor([1, 0]))]  # overflow
    for x, t in cases:
        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("error", RuntimeWarning)
            hot = K.cross_entropy_with_grad_hot(x, t, reduction, -100)
            gen = K.cross_entropy_with_grad(x, t, None, reduction, -100, 0.0)
            hot_loss = K.cross_entropy_hot(x, t, reduction, -100)          # the loss alone
            gen_loss = K.cross_entropy(x, t, None, reduction, -100, 0.0)
            want = F.cross_entropy(x, t, reduction=("mean", "sum")[reduction - 1])
        if not want.isfinite():      # inf (overflow) or NaN (mean over no target), as PyTorch
            torch.testing.assert_close(hot[0], want, rtol=0, atol=0, equal_nan=True)
        torch.testing.assert_close(hot[0], gen[0], rtol=0, atol=0, equal_nan=True)
        torch.testing.assert_close(hot[1], gen[1], rtol=0, atol=0, equal_nan=True)
        torch.testing.assert_close(hot_loss, gen_loss, rtol=0, atol=0, equal_nan=True)
        torch.testing.assert_close(hot_loss, gen[0], rtol=0, atol=0, equal_nan=True)
