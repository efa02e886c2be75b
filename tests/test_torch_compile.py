"""fastlog inside compiled PyTorch: torch.compile, torch.export, torch.func.

* ``torch.compile(fullgraph=True)`` (no graph break possible), static and
  dynamic shapes, of a model whose loss is ``F.cross_entropy`` etc. under
  :func:`fastlog.torch.patch`: the AOTAutograd forward graph holds fastlog's
  operators (the backward: fastlog's backward operators or the saved
  gradient times ``grad_output``), fastlog's kernel runs, and values and
  gradients equal PyTorch's.
* ``torch.export.export`` of such a model: the program holds fastlog's
  operators, survives ``run_decompositions`` and runs.
* ``torch.func.grad`` / ``vmap`` / ``jacrev`` / ``hessian`` of the functions:
  PyTorch's values.
* A tiny randomly initialised transformers GPT-2 (vocab 32000, built from its
  config: no download) trained a few steps under ``torch.compile`` with
  ``patch()``: the same losses as the unpatched compiled run.

The compiler here is AOTAutograd with eager kernels (``aot_eager``, the
graphs Inductor would compile) except for one Inductor run: Inductor's C++
code generation takes most of a minute on a 2-core machine.  Timings are in
``benchmarks/bench_torch_compile.py``, not here.
"""
import os

import numpy as np
import pytest

torch = pytest.importorskip("torch")
import torch.nn.functional as F  # noqa: E402
from torch._dynamo.backends.common import aot_autograd  # noqa: E402

import fastlog.torch as FL  # noqa: E402
from _spies import kernel_calls  # noqa: E402
from fastlog.torch._route import COMPILED_MIN_ELEMENTS  # noqa: E402

FASTLOG = torch.ops.fastlog


@pytest.fixture(autouse=True)
def _fresh():
    torch._dynamo.reset()
    FL.unpatch()
    yield
    FL.unpatch()
    torch._dynamo.reset()


class Recorder:
    """An aot_eager backend that keeps the forward and backward graphs it is given."""

    def __init__(self):
        self.graphs = []

        def keep(gm, example_inputs):
            self.graphs.append(gm)
            return gm.forward
        self.backend = aot_autograd(fw_compiler=keep, bw_compiler=keep)

    def targets(self, i):
        """The operators graph `i` calls (a mutating operator appears through the
        auto_functionalized wrapper that AOTAutograd puts around it)."""
        out = set()
        for n in self.graphs[i].graph.nodes:
            if n.op == "call_function":
                out.add(n.target)
                if "auto_functionalized" in str(n.target) and n.args:
                    out.add(n.args[0])
        return out


class Head(torch.nn.Module):
    """Features -> logits -> the losses and softmaxes of fastlog.torch, through torch's names."""

    def __init__(self, H=8, V=8192):
        super().__init__()
        torch.manual_seed(0)
        self.lin = torch.nn.Linear(H, V, dtype=torch.float64)
        self.crit = torch.nn.CrossEntropyLoss(label_smoothing=0.1)

    def forward(self, x, t, y):
        z = self.lin(x)
        return (self.crit(z, t) + F.nll_loss(F.log_softmax(z, 1), t, reduction="sum") / 7
                + F.binary_cross_entropy_with_logits(z, y) + F.softmax(z, 1).square().mean()
                + F.kl_div(F.log_softmax(z, 1), y, reduction="batchmean"))


V = 8192   # N x V logits of at least COMPILED_MIN_ELEMENTS(_SOFTMAX): fastlog's operators are traced
# classes of a 64-row batch with COMPILED_MIN_ELEMENTS or more logits (fastlog's operators)
C_BIG = -(-COMPILED_MIN_ELEMENTS // 64)


def _inputs(N, seed=0):
    g = torch.Generator().manual_seed(seed)
    return (torch.randn(N, 8, generator=g, dtype=torch.float64), torch.randint(0, V, (N,), generator=g),
            torch.rand(N, V, generator=g, dtype=torch.float64))


def _eager_ref(model, args):
    model.zero_grad()
    loss = model(*args)
    loss.backward()
    return loss.detach(), [p.grad.clone() for p in model.parameters()]


@pytest.mark.parametrize("dynamic", [False, True])
def test_compile_fullgraph_runs_fastlogs_operators(dynamic, monkeypatch):
    model = Head()
    calls = kernel_calls(monkeypatch, "ce_index")
    rec = Recorder()
    FL.patch()
    compiled = torch.compile(model, backend=rec.backend, fullgraph=True, dynamic=dynamic)
    for N in (16, 24):        # a second size: dynamic shapes, or a recompile
        args = _inputs(N, seed=N)
        FL.unpatch()
        want_loss, want_grads = _eager_ref(model, args)
        FL.patch()
        model.zero_grad()
        calls.clear()
        loss = compiled(*args)
        loss.backward()
        assert len(calls) == 1, "fastlog's cross-entropy kernel did not run in the compiled model"
        torch.testing.assert_close(loss.detach(), want_loss)
        for p, g in zip(model.parameters(), want_grads):
            torch.testing.assert_close(p.grad, g)
    fw = rec.targets(0)
    bw = rec.targets(1)
    for op in ("cross_entropy_with_grad", "nll_loss", "binary_cross_entropy_with_logits_with_grad",
               "kl_div", "log_softmax", "softmax"):
        assert getattr(FASTLOG, op).default in fw, op
    for op in ("nll_loss_backward", "log_softmax_backward", "softmax_backward"):
        assert getattr(FASTLOG, op).default in bw, op
    # no PyTorch loss or softmax kernels left in either graph
    aten = torch.ops.aten
    for op in (aten._log_softmax.default, aten._softmax.default, aten.nll_loss_forward.default):
        assert op not in fw
    if dynamic:
        assert len(rec.graphs) == 2     # one forward and one backward graph for both sizes


@pytest.mark.parametrize("reduction", ["mean", "none"])
def test_compile_scales_the_saved_gradient_by_grad_output(reduction):
    """The compiled backward scales fastlog's saved gradient in place (scale_grad_): by a
    grad_output other than 1, by one per position for 'none', not at all after
    loss.backward() on a reduced loss."""
    rec = Recorder()
    x = torch.randn(64, C_BIG, 2, dtype=torch.float64, requires_grad=True)     # K-dim
    t = torch.randint(0, C_BIG, (64, 2))
    w = torch.rand(64, 2, dtype=torch.float64) if reduction == "none" else 3.5
    y = torch.rand(64, C_BIG, 2, dtype=torch.float64)
    fn = torch.compile(lambda a: (FL.cross_entropy(a, t, reduction=reduction) * w).sum()
                       + (FL.binary_cross_entropy_with_logits(a, y, reduction=reduction) * 0.25).sum(),
                       backend=rec.backend, fullgraph=True)
    fn(x).backward()
    xr = x.detach().clone().requires_grad_()
    ((F.cross_entropy(xr, t, reduction=reduction) * w).sum()
     + (F.binary_cross_entropy_with_logits(xr, y, reduction=reduction) * 0.25).sum()).backward()
    torch.testing.assert_close(x.grad, xr.grad)
    assert FASTLOG.scale_grad_.default in rec.targets(1)


def test_compile_inductor_calls_fastlog(monkeypatch):
    from torch._inductor.utils import run_and_get_code
    calls = kernel_calls(monkeypatch, "ce_index")
    x = torch.randn(64, C_BIG, requires_grad=True)
    t = torch.randint(0, C_BIG, (64,))
    FL.patch()
    fn = torch.compile(lambda a, b: F.cross_entropy(a * 2.0, b, label_smoothing=0.05), fullgraph=True)

    def step():
        loss = fn(x, t)
        loss.backward()
        return loss
    loss, code = run_and_get_code(step)
    assert "torch.ops.fastlog.cross_entropy_with_grad" in code[0] and len(calls) == 1
    FL.unpatch()
    xr = x.detach().clone().requires_grad_()
    want = F.cross_entropy(xr * 2.0, t, label_smoothing=0.05)
    want.backward()
    torch.testing.assert_close(loss, want)
    torch.testing.assert_close(x.grad, xr.grad)


def test_compile_linear_cross_entropy():
    x = torch.randn(64, 6, dtype=torch.float64, requires_grad=True)
    W = torch.randn(C_BIG, 6, dtype=torch.float64, requires_grad=True)
    t = torch.randint(0, C_BIG, (64,))
    rec = Recorder()
    for red in ("mean", "none"):
        torch._dynamo.reset()
        rec.graphs.clear()
        fn = torch.compile(lambda a, b: FL.linear_cross_entropy(a, b, t, reduction=red).sum(),
                           backend=rec.backend, fullgraph=True)
        loss = fn(x, W)
        gx, gw = torch.autograd.grad(loss, (x, W))
        ref = F.cross_entropy(x @ W.T, t, reduction=red).sum()
        rx, rw = torch.autograd.grad(ref, (x, W))
        torch.testing.assert_close(loss, ref)
        torch.testing.assert_close(gx, rx)
        torch.testing.assert_close(gw, rw)
        assert FASTLOG.linear_cross_entropy_with_grad.default in rec.targets(0)
        if red == "none":
            assert FASTLOG.linear_cross_entropy_backward.default in rec.targets(1)


def test_compile_no_grad_uses_loss_only_operators():
    rec = Recorder()
    x = torch.randn(64, C_BIG)
    t = torch.randint(0, C_BIG, (64,))
    fn = torch.compile(lambda a: FL.cross_entropy(a, t) + FL.log_softmax(a, 1).sum(), backend=rec.backend,
                       fullgraph=True)
    with torch.no_grad():
        got = fn(x)
    torch.testing.assert_close(got, F.cross_entropy(x, t) + F.log_softmax(x, 1).sum())
    assert FASTLOG.cross_entropy.default in rec.targets(0)


def test_compile_routes_unsupported_cases_to_pytorch():
    """int32 targets: PyTorch's function is traced (and raises its error)."""
    rec = Recorder()
    x = torch.randn(64, C_BIG, requires_grad=True)
    t = torch.randint(0, C_BIG, (64,))
    p = torch.rand(C_BIG, 64).softmax(0).t()     # probability targets, transposed layout
    fn = torch.compile(lambda a: FL.cross_entropy(a, p), backend=rec.backend, fullgraph=True)
    fn(x)
    assert FASTLOG.cross_entropy_with_grad.default in rec.targets(0)
    torch._dynamo.reset()
    rec.graphs.clear()
    with pytest.raises(Exception, match="Long or Byte|expected scalar type Long"):
        torch.compile(lambda a: FL.cross_entropy(a, t.int()), backend=rec.backend, fullgraph=True)(x)


def test_compile_small_inputs_trace_pytorchs_functions():
    """Below COMPILED_MIN_ELEMENTS, Inductor's fused code is cheaper than an operator call:
    PyTorch's function is traced (a guard on the size with dynamic shapes)."""
    rec = Recorder()
    fn = torch.compile(lambda a, b: FL.cross_entropy(a, b), backend=rec.backend, fullgraph=True, dynamic=True)
    small = torch.randn(64, 10, requires_grad=True)
    fn(small, torch.randint(0, 10, (64,))).backward()
    assert not any("fastlog" in str(op) for op in rec.targets(0))
    n = COMPILED_MIN_ELEMENTS // 10 + 1
    fn(torch.randn(n, 10, requires_grad=True), torch.randint(0, 10, (n,))).backward()
    assert FASTLOG.cross_entropy_with_grad.default in rec.targets(len(rec.graphs) - 2)
    # export keeps fastlog's operators at any size
    with torch.no_grad():
        ep = torch.export.export(_Loss(), (small.detach(), torch.randint(0, 10, (64,))))
    assert FASTLOG.cross_entropy.default in {n.target for n in ep.graph.nodes if n.op == "call_function"}


class _Loss(torch.nn.Module):
    def forward(self, z, t):
        return FL.cross_entropy(z, t)


# ------------------------------------------------------------------ export --
def test_export_contains_fastlog_operators_and_runs():
    model = Head()
    args = _inputs(6)
    FL.patch()
    ep = torch.export.export(model, args)
    FL.unpatch()
    targets = {n.target for n in ep.graph.nodes if n.op == "call_function"}
    assert FASTLOG.cross_entropy_with_grad.default in targets or FASTLOG.cross_entropy.default in targets
    assert FASTLOG.log_softmax.default in targets and FASTLOG.kl_div.default in targets
    want = model(*args)
    torch.testing.assert_close(ep.module()(*args), want)
    dec = ep.run_decompositions()
    assert FASTLOG.log_softmax.default in {n.target for n in dec.graph.nodes if n.op == "call_function"}
    torch.testing.assert_close(dec.module()(*args), want)


def test_export_with_dynamic_batch():
    class M(torch.nn.Module):
        def forward(self, z, t):
            return FL.cross_entropy(z, t, reduction="sum") + FL.softmax(z, -1).amax()
    n = torch.export.Dim("n", min=2)
    z, t = torch.randn(6, 5), torch.randint(0, 5, (6,))
    ep = torch.export.export(M(), (z, t), dynamic_shapes=({0: n}, {0: n}))
    assert FASTLOG.cross_entropy.default in {nd.target for nd in ep.graph.nodes if nd.op == "call_function"}
    z2, t2 = torch.randn(11, 5), torch.randint(0, 5, (11,))
    torch.testing.assert_close(ep.module()(z2, t2), F.cross_entropy(z2, t2, reduction="sum") + F.softmax(z2, -1).amax())


# -------------------------------------------------------------- torch.func --
def test_func_transforms_give_pytorchs_values():
    x = torch.randn(5, 6, dtype=torch.float64)
    t = torch.tensor([0, 5, 2, 1, 3])
    for kw in (dict(), dict(label_smoothing=0.2, reduction="sum"), dict(ignore_index=2)):
        ours = lambda a: FL.cross_entropy(a, t, **kw)   # noqa: E731
        theirs = lambda a: F.cross_entropy(a, t, **kw)  # noqa: E731
        torch.testing.assert_close(torch.func.grad(ours)(x), torch.func.grad(theirs)(x))
        torch.testing.assert_close(torch.func.jacrev(lambda a: FL.log_softmax(a, 1))(x),
                                   torch.func.jacrev(lambda a: F.log_softmax(a, 1))(x))
        torch.testing.assert_close(torch.func.hessian(lambda a: FL.cross_entropy(a, t[:2], **kw))(x[:2]),
                                   torch.func.hessian(lambda a: F.cross_entropy(a, t[:2], **kw))(x[:2]))
    xb = torch.randn(4, 5, 6, dtype=torch.float64)
    tb = torch.randint(0, 6, (4, 5))
    torch.testing.assert_close(torch.vmap(torch.func.grad(FL.cross_entropy))(xb, tb),
                               torch.vmap(torch.func.grad(F.cross_entropy))(xb, tb))
    # the functions run fastlog's operators under the transforms
    from fastlog.torch import _route
    assert torch.func.grad(lambda a: a.sum() * (_route.environment(a) == _route.OP))(x).eq(1).all()


def test_dispatch_modes_and_subclasses_go_to_pytorch():
    from torch.utils._python_dispatch import TorchDispatchMode
    seen = []

    class Log(TorchDispatchMode):
        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            seen.append(func)
            return func(*args, **(kwargs or {}))
    x = torch.randn(3, 4)
    t = torch.tensor([0, 1, 3])
    with Log():
        FL.cross_entropy(x, t)
    assert seen and not any("fastlog" in str(f) for f in seen)


# --------------------------------------------------------------- GPT-2 --
def _tiny_gpt2(seed=0):
    transformers = pytest.importorskip("transformers")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    cfg = transformers.GPT2Config(n_layer=2, n_head=2, n_embd=64, vocab_size=32000, n_positions=64,
                                  attn_implementation="eager", bos_token_id=0, eos_token_id=0)
    torch.manual_seed(seed)
    model = transformers.GPT2LMHeadModel(cfg)
    model.loss_type = "ForCausalLM"   # (unset, transformers logs a warning: a graph break)
    return model


def _train_compiled(steps, patched, backend):
    model = _tiny_gpt2()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    ids = torch.randint(0, 32000, (4, 32), generator=torch.Generator().manual_seed(1))
    torch._dynamo.reset()
    if patched:
        FL.patch()
    try:
        step = torch.compile(lambda i: model(input_ids=i, labels=i).loss, backend=backend, fullgraph=True)
        losses = []
        for _ in range(steps):
            loss = step(ids)
            opt.zero_grad()
            loss.backward()
            opt.step()
            losses.append(float(loss.detach()))
    finally:
        FL.unpatch()
    return np.array(losses)


def test_gpt2_trains_the_same_compiled_and_patched(monkeypatch):
    n_threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        want = _train_compiled(3, False, "aot_eager")
        calls = kernel_calls(monkeypatch, "ce_index")
        rec = Recorder()
        got = _train_compiled(3, True, rec.backend)
    finally:
        torch.set_num_threads(n_threads)
    assert len(calls) == 3, "the compiled model's loss did not run fastlog's kernel"
    assert FASTLOG.cross_entropy_with_grad.default in rec.targets(0)
    np.testing.assert_allclose(got, want, rtol=1e-5)
    assert want[-1] < want[0]
