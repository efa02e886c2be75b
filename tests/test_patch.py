"""fastlog.torch.patch() / unpatch() / patched().

Identity of what is restored, modules built before the patch, fallbacks that
call the saved original PyTorch functions (no recursion), and a real
transformers model (tiny, randomly initialised from its config, no
downloads) trained a few steps with and without the patch.
"""
import os

import numpy as np
import pytest

torch = pytest.importorskip("torch")
import torch.nn.functional as F  # noqa: E402
from torch import nn  # noqa: E402

import fastlog.torch as FL  # noqa: E402
from _spies import kernel_calls  # noqa: E402

NAMES = ["cross_entropy", "nll_loss", "binary_cross_entropy_with_logits", "kl_div", "log_softmax",
         "softmax"]
MODULES = [nn.CrossEntropyLoss, nn.NLLLoss, nn.BCEWithLogitsLoss, nn.KLDivLoss]


@pytest.fixture(autouse=True)
def _always_unpatched():
    FL.unpatch()
    yield
    FL.unpatch()


def _state():
    return ({n: getattr(F, n) for n in NAMES + ["linear_cross_entropy"] if hasattr(F, n)},
            {m: m.__dict__["forward"] for m in MODULES})


def test_patch_unpatch_restore_identity():
    before = _state()
    FL.patch()
    assert FL.is_patched()
    for n in NAMES:
        assert getattr(F, n) is getattr(FL, n)
    assert nn.CrossEntropyLoss.forward is FL.CrossEntropyLoss.forward
    FL.patch()                        # idempotent
    FL.unpatch()
    assert not FL.is_patched()
    after = _state()
    for a, b in zip(before, after):
        assert a.keys() == b.keys() and all(a[k] is b[k] for k in a)
    FL.unpatch()                      # no-op
    assert _state()[0]["cross_entropy"] is before[0]["cross_entropy"]


def test_patched_context_restores_on_error():
    before = _state()
    with pytest.raises(ZeroDivisionError):
        with FL.patched():
            assert F.cross_entropy is FL.cross_entropy
            1 / 0
    after = _state()
    for a, b in zip(before, after):
        assert all(a[k] is b[k] for k in a)
    FL.patch()
    with FL.patched():
        pass
    assert FL.is_patched()           # an outer patch() stays


def test_modules_built_before_the_patch_use_fastlog(monkeypatch):
    crit = nn.CrossEntropyLoss(label_smoothing=0.1)
    bce = nn.BCEWithLogitsLoss()
    x = torch.randn(6, 11, requires_grad=True)
    t = torch.randint(0, 11, (6,))
    y = torch.rand(6, 11)
    want = crit(x, t), bce(x, y)
    calls = kernel_calls(monkeypatch, "ce_index")
    bcalls = kernel_calls(monkeypatch, "bce_with_logits")
    with FL.patched():
        got = crit(x, t), bce(x, y)
        assert len(calls) == 1 and len(bcalls) == 1
        got[0].backward()
    for g, w in zip(got, want):
        torch.testing.assert_close(g, w)
    crit(x, t)
    assert len(calls) == 1            # unpatched again: PyTorch's forward


def test_fallbacks_call_the_saved_originals():
    """Inputs fastlog hands back to PyTorch must not recurse through the patched names."""
    x = torch.randn(5, 7, dtype=torch.bfloat16, requires_grad=True)
    t = torch.randint(0, 7, (5,))
    r = torch.rand(5, 7, requires_grad=True)
    cx = torch.randn(3, 4, dtype=torch.complex64)
    w = torch.ones(7, requires_grad=True)
    cases = [
        lambda: F.cross_entropy(x, t.int()),                               # int32 targets
        lambda: F.cross_entropy(x, torch.softmax(x.float(), 1).detach()),  # mixed dtypes
        lambda: F.nll_loss(x.float(), t, weight=w),                        # weight requires grad
        lambda: F.log_softmax(x, 1, dtype=torch.float64),
        lambda: F.softmax(cx, 1),                                          # complex
        lambda: F.kl_div(x.float(), r),                                    # target requires grad
        lambda: nn.CrossEntropyLoss()(x, t.int()),
    ]
    with FL.patched():
        got = []
        for c in cases:
            try:
                got.append(c())
            except RecursionError:      # the bug this guards against
                raise
            except RuntimeError as e:   # PyTorch's own error is fine (same as unpatched)
                got.append(type(e))
    want = []
    for c in cases:
        try:
            want.append(c())
        except RuntimeError as e:
            want.append(type(e))
    for g, w in zip(got, want):
        if isinstance(w, type):
            assert g is w
        else:
            torch.testing.assert_close(g, w)


def _tiny_gpt2(seed):
    transformers = pytest.importorskip("transformers")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    cfg = transformers.GPT2Config(n_layer=2, n_head=2, n_embd=64, vocab_size=1000, n_positions=64,
                                  attn_implementation="eager")
    torch.manual_seed(seed)
    return transformers.GPT2LMHeadModel(cfg)


def _train(steps, dtype=None, autocast=False):
    model = _tiny_gpt2(0)
    if dtype is not None:
        model = model.to(dtype)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    g = torch.Generator().manual_seed(1)
    ids = torch.randint(0, 1000, (4, 32), generator=g)   # one batch, learned over the steps
    losses = []
    for _ in range(steps):
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
            loss = model(input_ids=ids, labels=ids).loss
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(float(loss))
    return np.array(losses)


def test_transformers_gpt2_trains_the_same_patched(monkeypatch):
    torch.set_num_threads(1)
    want = _train(4)
    calls = kernel_calls(monkeypatch, "ce_index")
    with FL.patched():
        got = _train(4)
    assert len(calls) == 4, "the model's loss did not go through fastlog"
    assert not FL.is_patched()
    np.testing.assert_allclose(got, want, rtol=2e-5)
    assert want[-1] < want[0]


def test_transformers_gpt2_bf16_autocast_patched(monkeypatch):
    torch.set_num_threads(1)
    want = _train(3, autocast=True)
    seen = kernel_calls(monkeypatch, "ce_index")
    with FL.patched():
        got = _train(3, autocast=True)
    # (transformers' ForCausalLMLoss upcasts the logits with .float() itself before calling
    # cross_entropy; the bf16-logits-under-autocast path is tested in test_half.py)
    assert len(seen) == 3
    np.testing.assert_allclose(got, want, rtol=2e-3)


def test_transformers_gpt2_bf16_weights_patched(monkeypatch):
    torch.set_num_threads(1)
    want = _train(3, dtype=torch.bfloat16)
    calls = kernel_calls(monkeypatch, "ce_index")
    with FL.patched():
        got = _train(3, dtype=torch.bfloat16)
    assert len(calls) == 3
    # PyTorch sums the bf16 loss in bf16 (off by ~1e-2 relative); fastlog is the more accurate one
    np.testing.assert_allclose(got, want, rtol=3e-2)
