"""Building blocks of fastlog.nn against NumPy (float64 reference) and PyTorch autograd."""
import numpy as np
import pytest

import fastlog
from fastlog.nn import linear_backward, linear_forward, relu, relu_backward

torch = pytest.importorskip("torch")

DTYPES = [np.float32, np.float64]
TOL = {np.float32: dict(rtol=2e-5, atol=2e-5), np.float64: dict(rtol=1e-12, atol=1e-12)}
TDT = {np.float32: torch.float32, np.float64: torch.float64}


def _case(m, k, n, dtype, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((m, k)).astype(dtype)
    w = (rng.standard_normal((n, k)) / np.sqrt(k)).astype(dtype)
    b = rng.standard_normal(n).astype(dtype)
    return x, w, b


def _ref_forward(x, w, b, act):
    y = x.astype(np.float64) @ w.astype(np.float64).T
    if b is not None:
        y = y + b
    return np.maximum(y, 0) if act else y


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("act", [False, True])
@pytest.mark.parametrize("with_bias", [False, True])
@pytest.mark.parametrize("shape", [(1, 1, 1), (7, 13, 5), (64, 784, 128), (300, 64, 10)])
def test_linear_forward_matches_numpy(dtype, act, with_bias, shape):
    x, w, b = _case(*shape, dtype)
    b = b if with_bias else None
    x0, w0 = x.copy(), w.copy()
    y = linear_forward(x, w, b, relu=act)
    assert y.dtype == dtype and y.shape == (shape[0], shape[2])
    np.testing.assert_allclose(y, _ref_forward(x, w, b, act), **TOL[dtype])
    np.testing.assert_array_equal(x, x0)
    np.testing.assert_array_equal(w, w0)
    if act:
        assert (y >= 0).all()


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("act", [False, True])
def test_linear_forward_matches_torch(dtype, act):
    x, w, b = _case(33, 20, 9, dtype, seed=1)
    t = torch.nn.functional.linear(torch.from_numpy(x), torch.from_numpy(w), torch.from_numpy(b))
    if act:
        t = torch.relu(t)
    np.testing.assert_allclose(linear_forward(x, w, b, relu=act), t.numpy(), **TOL[dtype])


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("act", [False, True])
@pytest.mark.parametrize("shape", [(1, 3, 2), (16, 30, 12), (129, 64, 10)])
def test_linear_backward_matches_torch_autograd(dtype, act, shape):
    x, w, b = _case(*shape, dtype, seed=2)
    rng = np.random.default_rng(3)
    g = rng.standard_normal((shape[0], shape[2])).astype(dtype)
    xt = torch.from_numpy(x.copy()).requires_grad_()
    wt = torch.from_numpy(w.copy()).requires_grad_()
    bt = torch.from_numpy(b.copy()).requires_grad_()
    yt = torch.nn.functional.linear(xt, wt, bt)
    if act:
        yt = torch.relu(yt)
    yt.backward(torch.from_numpy(g))
    y = linear_forward(x, w, b, relu=act)
    g0 = g.copy()
    gx, gw, gb = linear_backward(g, x, w, relu_output=y if act else None)
    np.testing.assert_array_equal(g, g0)  # grad_output is not modified
    for mine, ref in ((gx, xt.grad), (gw, wt.grad), (gb, bt.grad)):
        assert mine.dtype == dtype
        np.testing.assert_allclose(mine, ref.numpy(), **TOL[dtype])


@pytest.mark.parametrize("dtype", DTYPES)
def test_linear_backward_matches_numpy_and_optional_outputs(dtype):
    x, w, b = _case(40, 17, 6, dtype, seed=4)
    y = linear_forward(x, w, b, relu=True)
    g = np.random.default_rng(5).standard_normal(y.shape).astype(dtype)
    gm = g.astype(np.float64) * (y > 0)
    gx, gw, gb = linear_backward(g, x, w, relu_output=y)
    np.testing.assert_allclose(gx, gm @ w.astype(np.float64), **TOL[dtype])
    np.testing.assert_allclose(gw, gm.T @ x.astype(np.float64), **TOL[dtype])
    np.testing.assert_allclose(gb, gm.sum(0), **TOL[dtype])
    gx2, gw2, gb2 = linear_backward(g, x, w, relu_output=y, input_grad=False, bias_grad=False)
    assert gx2 is None and gb2 is None
    np.testing.assert_array_equal(gw2, gw)


@pytest.mark.parametrize("dtype", DTYPES)
def test_relu_and_backward_match_torch(dtype):
    rng = np.random.default_rng(6)
    x = rng.standard_normal((5, 11, 3)).astype(dtype)
    x[0, 0, 0] = 0.0
    xt = torch.from_numpy(x.copy()).requires_grad_()
    yt = torch.relu(xt)
    g = rng.standard_normal(x.shape).astype(dtype)
    yt.backward(torch.from_numpy(g))
    y = relu(x)
    np.testing.assert_array_equal(y, np.maximum(x, 0))
    np.testing.assert_array_equal(y, yt.detach().numpy())
    np.testing.assert_array_equal(relu_backward(g, y), xt.grad.numpy())
    np.testing.assert_array_equal(relu_backward(g, x), xt.grad.numpy())  # input gives the same mask


def test_relu_propagates_nan_like_torch():
    x = np.array([np.nan, -1.0, 2.0, -np.inf, np.inf])
    y = relu(x)
    t = torch.relu(torch.from_numpy(x)).numpy()
    np.testing.assert_array_equal(np.isnan(y), np.isnan(t))
    np.testing.assert_array_equal(y[1:], t[1:])


def test_relu_in_place_and_out():
    x = np.array([[-1.0, 2.0], [3.0, -4.0]], np.float32)
    ref = np.maximum(x, 0)
    out = relu(x, out=x)
    assert out is x
    np.testing.assert_array_equal(x, ref)
    g = np.ones((2, 2), np.float32)
    r = relu_backward(g, x, out=g)
    assert r is g
    np.testing.assert_array_equal(g, (ref > 0).astype(np.float32))


def test_linear_forward_out_and_promotion():
    x, w, b = _case(8, 5, 3, np.float32)
    out = np.empty((8, 3), np.float32)
    r = linear_forward(x, w, b, out=out)
    assert r is out
    np.testing.assert_allclose(out, _ref_forward(x, w, b, False), **TOL[np.float32])
    y64 = linear_forward(x, w.astype(np.float64), b)
    assert y64.dtype == np.float64
    np.testing.assert_allclose(y64, _ref_forward(x, w.astype(np.float64), b, False), rtol=1e-12)
    # non-contiguous inputs are accepted
    xs = np.asfortranarray(x)
    np.testing.assert_array_equal(linear_forward(xs, w, b), linear_forward(x, w, b))


def test_linear_bad_input():
    x, w, b = _case(4, 5, 3, np.float64)
    with pytest.raises(ValueError, match="features"):
        linear_forward(x, w[:, :4], b)
    with pytest.raises(ValueError, match="bias"):
        linear_forward(x, w, b[:2])
    with pytest.raises(ValueError, match="2-D"):
        linear_forward(x[0], w, b)
    a = np.zeros((3, 3))
    with pytest.raises(ValueError, match="overlap"):
        linear_forward(a, np.eye(3), out=a)
    with pytest.raises(ValueError, match="shape"):
        linear_forward(x, w, b, out=np.empty((4, 4)))
    with pytest.raises(TypeError, match="dtype"):
        linear_forward(x, w, b, out=np.empty((4, 3), np.float32))
    with pytest.raises(TypeError):
        linear_forward(x.astype(np.complex128), w, b)
    g = np.ones((4, 3))
    with pytest.raises(ValueError, match="grad_output"):
        linear_backward(g[:, :2], x, w)
    with pytest.raises(ValueError, match="relu_output"):
        linear_backward(g, x, w, relu_output=g[:3])
    with pytest.raises(ValueError, match="shape"):
        relu_backward(g, g[:2])


def test_building_blocks_thread_count_invariant():
    x, w, b = _case(2048, 300, 128, np.float32, seed=7)   # large enough to be cut into blocks
    g = np.random.default_rng(8).standard_normal((2048, 128)).astype(np.float32)
    res = []
    for n in (1, 2):
        with fastlog.num_threads(n):
            y = linear_forward(x, w, b, relu=True)
            res.append((y,) + linear_backward(g, x, w, relu_output=y))
    for a, c in zip(*res):
        np.testing.assert_array_equal(a, c)


def test_building_blocks_follow_the_out_overlap_rule():
    """The package's one out= rule : identical in place where documented, any
    other overlap a ValueError naming both arrays; in-place results equal the fresh ones."""
    rng = np.random.default_rng(3)
    buf = rng.standard_normal(41).astype(np.float32)
    x = buf[:40].reshape(8, 5)
    with pytest.raises(ValueError, match="out overlaps x"):
        relu(x, out=buf[1:].reshape(8, 5))
    want = np.maximum(x, 0)
    assert relu(x, out=x) is x and np.array_equal(x, want)

    g = rng.standard_normal((8, 5))
    y = rng.standard_normal((8, 5))
    want = g * (y > 0)
    got = relu_backward(g, y, out=y)
    assert got is y and np.array_equal(y, want)
    gbuf = rng.standard_normal(41)
    with pytest.raises(ValueError, match="out overlaps grad_output"):
        relu_backward(gbuf[:40].reshape(8, 5), y, out=gbuf[1:].reshape(8, 5))

    xw = rng.standard_normal((6, 4))
    wbuf = rng.standard_normal(30)
    w = wbuf[:12].reshape(3, 4)
    with pytest.raises(ValueError, match="out overlaps weight"):
        linear_forward(xw, w, out=wbuf[12 - 3:27].reshape(6, 3))   # shares wbuf[9:12] with w
    out = np.empty((6, 3))
    assert linear_forward(xw, w, out=out) is out
    np.testing.assert_allclose(out, xw @ w.T, rtol=1e-12)


def test_reset_parameters_checks_init_as_the_constructor_does():
    """reset_parameters(init='foo') used to fall through to Xavier silently."""
    from fastlog.nn import MLP
    model = MLP((4, 3, 2), seed=0)
    before = [p.copy() for p in model.parameters()]
    with pytest.raises(ValueError, match="init must be 'he' or 'xavier'"):
        model.reset_parameters(init="foo")
    assert all(np.array_equal(a, b) for a, b in zip(before, model.parameters()))
    with pytest.raises(ValueError, match="init must be"):
        MLP((4, 3, 2), init="foo")
