"""fastlog.linear_cross_entropy(_and_grad) and its torch front end.

Oracle: the unfused computation in float64 PyTorch (logits = x @ W.T + b,
then F.cross_entropy, gradients by autograd), SciPy's logsumexp, and
torch's own F.linear_cross_entropy / nn.LinearCrossEntropyLoss.
"""
import numpy as np
import pytest
import scipy.special
from _optional import optional  # noqa: E402
torch = optional("torch")   # only the tests that use it skip without torch
F = optional("torch.nn.functional")

import fastlog
FLT = optional("fastlog.torch.linear_ce")

RTOL = {np.float64: 1e-10, np.float32: 2e-5}


def _data(N, H, V, dtype, seed=0, scale=1.0, ignore=-100, n_ignored=2):
    rng = np.random.default_rng(seed)
    x = (rng.standard_normal((N, H)) * scale).astype(dtype)
    W = (rng.standard_normal((V, H)) / np.sqrt(max(H, 1))).astype(dtype)
    b = rng.standard_normal(V).astype(dtype)
    t = rng.integers(0, V, N) if V else np.zeros(N, np.int64)
    t[:min(n_ignored, N)] = ignore
    cw = rng.uniform(0.2, 2.0, V).astype(dtype)
    return x, W, b, t, cw


def _oracle(x, W, t, b=None, class_weight=None, ignore_index=-100, reduction="mean",
            label_smoothing=0.0, z_loss=0.0):
    """Unfused float64 reference: torch linear + cross_entropy (+ z-loss), autograd."""
    xt = torch.tensor(np.asarray(x, np.float64), requires_grad=True)
    Wt = torch.tensor(np.asarray(W, np.float64), requires_grad=True)
    bt = torch.tensor(np.asarray(b, np.float64), requires_grad=True) if b is not None else None
    tt = torch.tensor(np.asarray(t, np.int64))
    cwt = torch.tensor(np.asarray(class_weight, np.float64)) if class_weight is not None else None
    logits = F.linear(xt, Wt, bt)
    per = F.cross_entropy(logits, tt, weight=cwt, ignore_index=ignore_index, reduction="none",
                          label_smoothing=label_smoothing)
    keep = (tt != ignore_index).to(torch.float64)
    if z_loss:
        per = per + z_loss * torch.logsumexp(logits, dim=-1) ** 2 * keep
    if reduction == "none":
        loss = per
    elif reduction == "sum":
        loss = per.sum()
    else:
        wy = cwt[tt.clamp(0, Wt.shape[0] - 1)] if cwt is not None else torch.ones_like(keep)
        loss = per.sum() / (wy * keep).sum()
    loss.sum().backward()
    return (loss.detach().numpy(), xt.grad.numpy(), Wt.grad.numpy(),
            bt.grad.numpy() if bt is not None else None)


def _close(a, ref, dtype, what, floor=1e-300):
    """max |a - ref| <= rtol * max |ref|  (floor: the smallest scale, for exact zeros)."""
    a = np.asarray(a, np.float64)
    ref = np.asarray(ref, np.float64)
    assert a.shape == ref.shape, what
    scale = np.max(np.abs(ref)) if ref.size else 1.0
    err = np.max(np.abs(a - ref)) if ref.size else 0.0
    assert err <= RTOL[dtype] * max(scale, floor), f"{what}: max err {err:.3g} vs scale {scale:.3g}"


CONFIGS = {
    "plain": dict(),
    "bias": dict(bias=True),
    "weights": dict(class_weight=True),
    "smoothing": dict(label_smoothing=0.3),
    "weights+smoothing+bias": dict(class_weight=True, label_smoothing=0.15, bias=True),
    "ignore_in_range": dict(ignore_index=3),
    "z_loss": dict(z_loss=1e-2, bias=True, class_weight=True),
}


def _kwargs(cfg, b, cw):
    kw = dict(cfg)
    kw["bias"] = b if kw.pop("bias", False) else None
    kw["class_weight"] = cw if kw.pop("class_weight", False) else None
    return kw


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("cfg", list(CONFIGS))
@pytest.mark.parametrize("chunk_size", [None, 1, 7])
def test_matches_unfused_reference(dtype, reduction, cfg, chunk_size):
    kw0 = CONFIGS[cfg]
    x, W, b, t, cw = _data(37, 13, 29, dtype, ignore=kw0.get("ignore_index", -100))
    kw = _kwargs(kw0, b, cw)
    loss, gx, gw, gb = fastlog.linear_cross_entropy_and_grad(x, W, t, reduction=reduction,
                                                             chunk_size=chunk_size, **kw)
    bias = kw.pop("bias")
    rl, rgx, rgw, rgb = _oracle(x, W, t, bias, reduction=reduction, **kw)
    _close(loss, rl, dtype, "loss")
    _close(gx, rgx, dtype, "grad_input")
    _close(gw, rgw, dtype, "grad_weight")
    assert gx.dtype == gw.dtype == dtype and np.asarray(loss).dtype == dtype
    if bias is None:
        assert gb is None
    else:
        assert gb.dtype == dtype
        _close(gb, rgb, dtype, "grad_bias")
    # loss-only entry point gives the same loss
    l2 = fastlog.linear_cross_entropy(x, W, t, bias, reduction=reduction, chunk_size=chunk_size, **kw)
    np.testing.assert_array_equal(np.asarray(l2), np.asarray(loss))


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("N,H,V,chunk", [(0, 5, 7, None), (1, 5, 7, None), (5, 3, 1, 2), (33, 4, 300, 16),
                                         (17, 1, 2, 5), (9, 0, 6, 4), (260, 8, 50, None)])
def test_odd_sizes(dtype, N, H, V, chunk):
    x, W, b, t, cw = _data(N, H, V, dtype, seed=N + V, n_ignored=1 if N > 3 else 0)
    for red in ("mean", "sum", "none"):
        loss, gx, gw, gb = fastlog.linear_cross_entropy_and_grad(x, W, t, b, class_weight=cw,
                                                                 reduction=red, chunk_size=chunk)
        rl, rgx, rgw, rgb = _oracle(x, W, t, b, class_weight=cw, reduction=red)
        if N == 0 and red == "mean":
            assert np.isnan(loss)
        else:
            _close(loss, rl, dtype, "loss")
        assert gx.shape == (N, H) and gw.shape == (V, H) and gb.shape == (V,)
        # V == 1: the exact gradients are 0; the kernel leaves rounding-level
        # residues (p * scale - scale), so measure against scale 1.
        floor = 1.0 if V == 1 else 1e-300
        _close(gx, rgx, dtype, "grad_input", floor)
        _close(gw, rgw, dtype, "grad_weight", floor)
        _close(gb, rgb, dtype, "grad_bias", floor)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_unbatched_input(dtype):
    x, W, b, t, cw = _data(1, 6, 11, dtype, n_ignored=0)
    loss, gx, gw, gb = fastlog.linear_cross_entropy_and_grad(x[0], W, t[0], b, reduction="none")
    rl, rgx, rgw, rgb = _oracle(x[0], W, t[0], b, reduction="none")
    assert np.ndim(loss) == 0 and gx.shape == (6,)
    _close(loss, rl, dtype, "loss")
    _close(gx, rgx, dtype, "grad_input")
    _close(gw, rgw, dtype, "grad_weight")
    _close(gb, rgb, dtype, "grad_bias")


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_return_lse(dtype):
    x, W, b, t, cw = _data(40, 9, 23, dtype, scale=5.0)
    loss, lse = fastlog.linear_cross_entropy(x, W, t, b, return_lse=True, chunk_size=9)
    ref = scipy.special.logsumexp(x.astype(np.float64) @ W.astype(np.float64).T + b, axis=1)
    assert lse.shape == (40,) and lse.dtype == dtype
    _close(lse, ref, dtype, "lse")
    out = fastlog.linear_cross_entropy_and_grad(x, W, t, b, return_lse=True, z_loss=0.1)
    assert len(out) == 5
    _close(out[4], ref, dtype, "lse with grads")


def test_all_ignored_mean_is_nan_with_zero_gradients():
    x, W, b, t, cw = _data(6, 4, 5, np.float64, n_ignored=6)
    loss, gx, gw, gb = fastlog.linear_cross_entropy_and_grad(x, W, t, b)
    rl = F.cross_entropy(torch.tensor(x @ W.T + b), torch.tensor(t))
    assert np.isnan(loss) and torch.isnan(rl)
    assert not gx.any() and not gw.any() and not gb.any()


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_large_logits_stay_finite(dtype):
    x, W, b, t, cw = _data(20, 8, 30, dtype, scale=300.0, n_ignored=0)
    loss, gx, gw, gb = fastlog.linear_cross_entropy_and_grad(x, W, t, b, label_smoothing=0.1)
    rl, rgx, rgw, rgb = _oracle(x, W, t, b, label_smoothing=0.1)
    assert np.isfinite(loss) and np.isfinite(gx).all() and np.isfinite(gw).all()
    _close(loss, rl, dtype, "loss")
    _close(gx, rgx, dtype, "grad_input")
    _close(gw, rgw, dtype, "grad_weight")


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_bit_identical_for_any_thread_count(dtype):
    # 300 x 1000 blocks are large enough for the kernel to use 2 threads.
    x, W, b, t, cw = _data(300, 16, 1000, dtype)
    res = []
    for n in (1, 2, 3):
        with fastlog.num_threads(n):
            res.append(fastlog.linear_cross_entropy_and_grad(x, W, t, b, class_weight=cw,
                                                             label_smoothing=0.1, z_loss=1e-3,
                                                             return_lse=True))
    for other in res[1:]:
        for a, c in zip(res[0], other):
            np.testing.assert_array_equal(a, c)


def test_chunk_size_changes_only_rounding():
    x, W, b, t, cw = _data(100, 8, 40, np.float64)
    ref = fastlog.linear_cross_entropy_and_grad(x, W, t, b, chunk_size=100)
    for cs in (1, 3, 64, 1000):
        got = fastlog.linear_cross_entropy_and_grad(x, W, t, b, chunk_size=cs)
        for a, c in zip(got, ref):
            np.testing.assert_allclose(a, c, rtol=1e-12, atol=1e-15)


def test_inputs_unchanged_and_layouts():
    x, W, b, t, cw = _data(30, 7, 19, np.float64)
    copies = [a.copy() for a in (x, W, b, t, cw)]
    ref = fastlog.linear_cross_entropy_and_grad(x, W, t, b, class_weight=cw)
    for a, c in zip((x, W, b, t, cw), copies):
        np.testing.assert_array_equal(a, c)
    # Non-contiguous views and int32 targets give the same answer.
    Wf = np.asfortranarray(W)
    xs = np.repeat(x, 2, axis=0)[::2]
    got = fastlog.linear_cross_entropy_and_grad(xs, Wf, t.astype(np.int32), b, class_weight=cw)
    for a, c in zip(got, ref):
        np.testing.assert_allclose(a, c, rtol=1e-13, atol=1e-16)


# ------------------------------------------------------------------ errors --
def _bad(fn=fastlog.linear_cross_entropy_and_grad, **over):
    x, W, b, t, cw = _data(6, 4, 5, np.float64, n_ignored=1)
    args = dict(input=x, weight=W, target=t, bias=None)
    args.update(over)
    return fn(args.pop("input"), args.pop("weight"), args.pop("target"), args.pop("bias"), **args)


@pytest.mark.parametrize("fn", [fastlog.linear_cross_entropy, fastlog.linear_cross_entropy_and_grad])
def test_bad_inputs(fn):
    x, W, b, t, cw = _data(6, 4, 5, np.float64, n_ignored=1)
    with pytest.raises(ValueError, match="weight has 3 features"):
        _bad(fn, weight=W[:, :3])
    with pytest.raises(ValueError, match="input must have shape"):
        _bad(fn, input=x[None])
    with pytest.raises(ValueError, match="weight must have shape"):
        _bad(fn, weight=W[0])
    with pytest.raises(ValueError, match="target has shape"):
        _bad(fn, target=t[:3])
    with pytest.raises(IndexError, match="target 5 is out of bounds for 5 classes"):
        _bad(fn, target=np.array([0, 1, 2, 3, 4, 5]))
    with pytest.raises(IndexError, match="target -1 is out of bounds"):
        _bad(fn, target=np.array([0, 1, -1, 3, 4, 0]))
    with pytest.raises(IndexError, match="target -100 is out of bounds"):
        _bad(fn, ignore_index=2)
    with pytest.raises(ValueError, match="label_smoothing must be in"):
        _bad(fn, label_smoothing=1.5)
    with pytest.raises(ValueError, match="label_smoothing must be in"):
        _bad(fn, label_smoothing=-0.1)
    with pytest.raises(ValueError, match="reduction must be one of"):
        _bad(fn, reduction="avg")
    with pytest.raises(ValueError, match="class_weight must be a 1-D array of length 5"):
        _bad(fn, class_weight=cw[:4])
    with pytest.raises(ValueError, match="bias must have shape"):
        _bad(fn, bias=b[:4])
    with pytest.raises(TypeError, match="same dtype"):
        _bad(fn, weight=W.astype(np.float32))
    with pytest.raises(TypeError, match="input must be a floating array"):
        _bad(fn, input=np.ones((6, 4), np.int64))
    with pytest.raises(TypeError, match="target has floating dtype"):
        _bad(fn, target=t.astype(np.float64))
    with pytest.raises(ValueError, match="chunk_size must be >= 1"):
        _bad(fn, chunk_size=0)
    with pytest.raises(TypeError, match="chunk_size"):
        _bad(fn, chunk_size=2.5)
    with pytest.raises(ValueError, match="z_loss must be"):
        _bad(fn, z_loss=-1.0)
    with pytest.raises(TypeError, match="ignore_index must be an integer"):
        _bad(fn, ignore_index=1.5)
    with pytest.raises(ValueError, match="no classes"):
        _bad(fn, weight=np.zeros((0, 4)), target=np.zeros(6, np.int64))


# ------------------------------------------------------------------- torch --
def _torch_data(dtype, N=24, H=10, V=17, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(N, H, dtype=dtype, generator=g, requires_grad=True)
    W = torch.randn(V, H, dtype=dtype, generator=g, requires_grad=True)
    b = torch.randn(V, dtype=dtype, generator=g, requires_grad=True)
    t = torch.randint(0, V, (N,), generator=g)
    t[0] = -100
    w = torch.rand(V, dtype=dtype, generator=g) + 0.5
    return x, W, b, t, w


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("options", [None, "default", 5])
def test_torch_matches_F_linear_cross_entropy(dtype, reduction, options):
    dtype = getattr(torch, dtype)
    x, W, b, t, w = _torch_data(dtype)
    if options == "default":
        options = torch.nn.LinearCrossEntropyOptions()
    elif options is not None:
        options = torch.nn.LinearCrossEntropyOptions(batch_chunk_size=options, chunking_method=None)
    tol = dict(rtol=1e-10, atol=1e-12) if dtype == torch.float64 else dict(rtol=2e-5, atol=1e-6)
    for kw in (dict(), dict(weight=w, label_smoothing=0.2)):
        res = []
        for fn, opt in ((FLT.linear_cross_entropy, options), (F.linear_cross_entropy, None)):
            loss = fn(x, W, t, linear_bias=b, reduction=reduction, options=opt, **kw)
            go = torch.linspace(0.5, 1.5, loss.numel(), dtype=dtype).reshape(loss.shape)
            res.append((loss.detach(),) + torch.autograd.grad(loss, (x, W, b), go))
        for a, c in zip(*res):
            assert a.dtype == c.dtype and a.shape == c.shape
            torch.testing.assert_close(a, c, **tol)
    # and against torch's own chunked path
    if options is not None and reduction != "none":
        a = FLT.linear_cross_entropy(x, W, t, linear_bias=b, reduction=reduction, options=options)
        c = F.linear_cross_entropy(x, W, t, linear_bias=b, reduction=reduction, options=options)
        torch.testing.assert_close(a, c, **tol)


def test_torch_gradcheck():
    x, W, b, t, w = _torch_data(torch.float64, N=6, H=4, V=5)
    for red in ("mean", "sum", "none"):
        fn = lambda x_, W_, b_: FLT.linear_cross_entropy(x_, W_, t, linear_bias=b_, weight=w,  # noqa: E731
                                                         reduction=red, label_smoothing=0.1)
        assert torch.autograd.gradcheck(fn, (x, W, b))


def test_torch_partial_requires_grad_retain_graph_and_no_grad():
    x, W, b, t, w = _torch_data(torch.float32)
    xd = x.detach()
    loss = FLT.linear_cross_entropy(xd, W, t, linear_bias=b)          # only W, b need grads
    loss.backward(retain_graph=True)
    g1 = W.grad.clone()
    loss.backward()                                                    # second backward recomputes
    torch.testing.assert_close(W.grad, 2 * g1)
    ref = F.linear_cross_entropy(xd, W.detach().requires_grad_(), t, linear_bias=b.detach())
    ref.backward()
    with torch.no_grad():
        l2 = FLT.linear_cross_entropy(x, W, t, linear_bias=b)
    assert not l2.requires_grad
    torch.testing.assert_close(l2, ref.detach())


def test_torch_fallbacks_and_module():
    x, W, b, t, w = _torch_data(torch.float32)
    # probability targets and bfloat16 go to torch's implementation
    p = torch.softmax(torch.randn(24, 17), dim=1)
    torch.testing.assert_close(FLT.linear_cross_entropy(x, W, p), F.linear_cross_entropy(x, W, p))
    xb, Wb = x.detach().bfloat16(), W.detach().bfloat16()
    torch.testing.assert_close(FLT.linear_cross_entropy(xb, Wb, t), F.linear_cross_entropy(xb, Wb, t))
    # the module is a drop-in for torch's
    torch.manual_seed(3)
    m = FLT.LinearCrossEntropyLoss(10, 17, bias=True, weight=w, label_smoothing=0.1)
    mt = torch.nn.LinearCrossEntropyLoss(10, 17, bias=True, weight=w, label_smoothing=0.1)
    mt.load_state_dict(m.state_dict())
    la, lb = m(x, t), mt(x, t)
    la.backward()
    lb.backward()
    torch.testing.assert_close(la, lb)
    torch.testing.assert_close(m.linear.weight.grad, mt.linear.weight.grad)
    torch.testing.assert_close(m.linear.bias.grad, mt.linear.bias.grad)
    with pytest.raises(IndexError, match="out of bounds"):
        FLT.linear_cross_entropy(x, W, torch.full((24,), 17))
    with pytest.raises(TypeError, match="options must be"):
        FLT.linear_cross_entropy(x, W, t, options="chunked")


@pytest.mark.parametrize("reduction", ["mean", "none"])
def test_torch_unbatched_input(reduction):
    x, W, b, t, w = _torch_data(torch.float64, N=1)
    t = torch.tensor(4)
    res = []
    for fn in (FLT.linear_cross_entropy, F.linear_cross_entropy):
        loss = fn(x[0], W, t, linear_bias=b, reduction=reduction)
        res.append((loss.detach(),) + torch.autograd.grad(loss, (x, W, b)))
    for a, c in zip(*res):
        assert a.shape == c.shape
        torch.testing.assert_close(a, c, rtol=1e-10, atol=1e-12)
