"""Every error path of the core API: the exception type and a message naming the argument.

Where torch (losses) or SciPy (softmax family) rejects the same call, the test
also checks that it does, so the error is part of the drop-in semantics.
"""
import os
import subprocess
import sys

import numpy as np
import pytest
import scipy.special as sp
from _optional import optional  # noqa: E402
torch = optional("torch")   # only the tests that use it skip without torch
F = optional("torch.nn.functional")

import fastlog as fl

from conftest import assert_unchanged, exact_sum, mp_prob_ce_rows, snapshot

X = np.zeros((3, 4))
T = np.array([0, 1, 2])


def both_reject(torch_call):
    """torch rejects the same call (any exception)."""
    with pytest.raises((RuntimeError, ValueError, IndexError, TypeError)):
        torch_call()


# ------------------------------------------------------------- targets --
@pytest.mark.parametrize("fn", [fl.cross_entropy, fl.nll_loss, fl.cross_entropy_and_grad,
                                fl.nll_loss_and_grad])
@pytest.mark.parametrize("bad", [4, -1, 100, -100 + 1])
def test_out_of_range_target_is_index_error(fn, bad):
    t = np.array([0, bad, 2])
    snap = snapshot(X, t)
    with pytest.raises(IndexError, match=f"target {bad} is out of bounds for 4 classes.*position 1"):
        fn(X, t)
    assert_unchanged(snap)
    tfn = F.cross_entropy if fn in (fl.cross_entropy, fl.cross_entropy_and_grad) else F.nll_loss
    both_reject(lambda: tfn(torch.tensor(X), torch.tensor(t)))


def test_out_of_range_target_k_dim_and_1d():
    with pytest.raises(IndexError, match="target 5 is out of bounds for 3 classes"):
        fl.cross_entropy(np.zeros((2, 3, 2)), np.array([[0, 1], [5, 0]]))
    with pytest.raises(IndexError, match="target 3 is out of bounds for 3 classes"):
        fl.cross_entropy(np.zeros(3), np.array(3))
    # a target equal to ignore_index is fine even outside [0, C); another one is not
    assert np.isfinite(fl.cross_entropy(X, np.array([0, 9, 1]), ignore_index=9))
    with pytest.raises(IndexError, match="target 9 is out of bounds.*ignore_index=8"):
        fl.cross_entropy(X, np.array([0, 9, 1]), ignore_index=8)


def test_huge_unsigned_target_is_index_error():
    with pytest.raises(IndexError, match="target contains a class index out of range"):
        fl.cross_entropy(X, np.array([0, 2 ** 64 - 1, 1], dtype=np.uint64))


@pytest.mark.parametrize("fn", [fl.cross_entropy, fl.nll_loss])
def test_float_target_where_indices_are_expected_is_type_error(fn):
    with pytest.raises(TypeError, match="target has floating dtype float64 and shape \\(3,\\).*integers"):
        fn(X, T.astype(float))
    both_reject(lambda: F.nll_loss(torch.tensor(X), torch.tensor(T.astype(float))))


def test_non_integer_target_is_type_error():
    with pytest.raises(TypeError, match="target must hold integer class indices, got dtype <U1"):
        fl.cross_entropy(X, np.array(["a", "b", "c"]))
    with pytest.raises(TypeError, match="target must hold integer class indices"):
        fl.nll_loss(X, np.array([True, False, True]))


@pytest.mark.parametrize("target,msg", [
    (np.array([0, 1]), "target has shape \\(2,\\), expected \\(3,\\) for class indices"),
    (np.zeros((3, 1), np.int64), "target has shape \\(3, 1\\), expected \\(3,\\)"),
    (np.array(1), "target has shape \\(\\), expected \\(3,\\)"),
])
def test_wrong_target_shape(target, msg):
    for fn in (fl.cross_entropy, fl.nll_loss, fl.cross_entropy_and_grad):
        with pytest.raises(ValueError, match=msg):
            fn(X, target)
    both_reject(lambda: F.cross_entropy(torch.tensor(X), torch.tensor(target)))


def test_wrong_probability_target_shape():
    # a float target of another shape is neither indices nor probabilities
    with pytest.raises(TypeError, match="floating dtype float64 and shape \\(3, 5\\)"):
        fl.cross_entropy(X, np.zeros((3, 5)))


# -------------------------------------------------------------- inputs --
@pytest.mark.parametrize("fn", [fl.cross_entropy, fl.nll_loss, fl.cross_entropy_and_grad])
def test_bad_loss_inputs(fn):
    with pytest.raises(TypeError, match="input must be a real numeric array, got dtype <U1"):
        fn(np.array([["a", "b"]]), np.array([0]))
    with pytest.raises(TypeError, match="input must be a real numeric array, got dtype object"):
        fn(np.array([[None, 1]], dtype=object), np.array([0]))
    with pytest.raises(TypeError, match="input must be a floating array.*got dtype int64"):
        fn(np.zeros((3, 4), np.int64), T)
    with pytest.raises(TypeError, match="input: dtype float128 is not supported; supported dtypes"):
        fn(X.astype(np.longdouble), T)
    with pytest.raises(TypeError, match="input: complex input is not supported"):
        fn(X.astype(complex), T)
    with pytest.raises(ValueError, match="input must have shape \\(C,\\), \\(N, C\\).*0-d"):
        fn(np.float64(1.0), np.array(0))
    with pytest.raises(ValueError, match="input has 0 classes"):
        fl.cross_entropy(np.zeros((3, 0)), T)


def test_bce_and_kl_bad_inputs():
    y = np.zeros((3, 4))
    with pytest.raises(ValueError, match="target size \\(3, 5\\) must be the same as input size \\(3, 4\\)"):
        fl.binary_cross_entropy_with_logits(X, np.zeros((3, 5)))
    both_reject(lambda: F.binary_cross_entropy_with_logits(torch.tensor(X), torch.zeros(3, 5)))
    with pytest.raises(ValueError, match="pos_weight of shape \\(3,\\) does not broadcast"):
        fl.binary_cross_entropy_with_logits(X, y, pos_weight=np.ones(3))
    with pytest.raises(ValueError, match="weight of shape \\(5,\\) does not broadcast"):
        fl.binary_cross_entropy_with_logits_and_grad(X, y, weight=np.ones(5))
    with pytest.raises(TypeError, match="input must be a floating array"):
        fl.binary_cross_entropy_with_logits(X.astype(int), y)
    with pytest.raises(TypeError, match="target must be a real numeric array"):
        fl.binary_cross_entropy_with_logits(X, np.full((3, 4), "a"))
    with pytest.raises(ValueError, match="target of shape \\(3, 5\\) does not broadcast against input"):
        fl.kl_div(X, np.zeros((3, 5)))
    with pytest.raises(TypeError, match="input must be a floating array"):
        fl.kl_div(X.astype(int), y)


# -------------------------------------------------------------- params --
@pytest.mark.parametrize("eps", [-0.1, 1.5, float("nan"), float("inf")])
def test_label_smoothing_outside_0_1(eps):
    with pytest.raises(ValueError, match="label_smoothing must be in \\[0, 1\\]"):
        fl.cross_entropy(X, T, label_smoothing=eps)
    with pytest.raises(ValueError, match="label_smoothing must be in \\[0, 1\\]"):
        fl.cross_entropy_and_grad(X, np.full((3, 4), 0.25), label_smoothing=eps)
    if eps > 1:  # torch 2.13 accepts negative values (and nan) without a word
        both_reject(lambda: F.cross_entropy(torch.tensor(X), torch.tensor(T), label_smoothing=eps))


def test_label_smoothing_not_a_number():
    with pytest.raises(TypeError, match="label_smoothing must be a float, got str"):
        fl.cross_entropy(X, T, label_smoothing="0.1")


@pytest.mark.parametrize("red", ["avg", "batchmean", None, "MEAN", 1])
def test_unknown_reduction(red):
    msg = "reduction must be one of 'none', 'mean', 'sum', got"
    for call in (lambda: fl.cross_entropy(X, T, reduction=red),
                 lambda: fl.cross_entropy_and_grad(X, T, reduction=red),
                 lambda: fl.nll_loss(X, T, reduction=red),
                 lambda: fl.binary_cross_entropy_with_logits(X, X, reduction=red)):
        with pytest.raises(ValueError, match=msg):
            call()
    if red != "batchmean":
        with pytest.raises(ValueError, match="reduction must be one of 'none', 'mean', 'sum', 'batchmean'"):
            fl.kl_div(X, X, reduction=red)


@pytest.mark.parametrize("w", [np.ones(3), np.ones(5), np.ones((4, 1)), np.ones((1, 4))])
def test_weight_of_wrong_length(w):
    for fn in (fl.cross_entropy, fl.nll_loss, fl.nll_loss_and_grad):
        with pytest.raises(ValueError, match=f"weight must be a 1-D array of length 4.*got shape "
                                             f"\\({w.shape[0]},"):
            fn(X, T, weight=w)
    with pytest.raises(ValueError, match="weight must be a 1-D array of length 4"):
        fl.cross_entropy(X, np.full((3, 4), 0.25), weight=w)


def test_bad_ignore_index():
    with pytest.raises(TypeError, match="ignore_index must be an integer, got float"):
        fl.cross_entropy(X, T, ignore_index=1.5)
    with pytest.raises(TypeError, match="ignore_index must be an integer, got str"):
        fl.nll_loss(X, T, ignore_index="1")


# ---------------------------------------------------------------- axis --
@pytest.mark.parametrize("name", ["log_softmax", "softmax", "logsumexp"])
def test_bad_axis(name):
    f = getattr(fl, name)
    for axis in (2, -3):
        with pytest.raises(np.exceptions.AxisError, match=f"axis {axis} is out of bounds for array of "
                                                          f"dimension 2"):
            f(X, axis=axis)
        with pytest.raises(np.exceptions.AxisError):
            getattr(sp, name)(X, axis=axis)
    with pytest.raises(TypeError, match="axis must be an int, a tuple of ints or None, got 1.0"):
        f(X, axis=1.0)
    with pytest.raises(TypeError, match="axis must be an int, a tuple of ints or None, got 'a'"):
        f(X, axis=(0, "a"))
    with pytest.raises(ValueError, match="repeated axis in \\(0, -2\\)"):
        f(X, axis=(0, -2))
    with pytest.raises(np.exceptions.AxisError):
        f(np.float64(1.0), axis=1)


@pytest.mark.parametrize("name", ["log_softmax_backward", "softmax_backward"])
def test_backward_bad_arguments(name):
    f = getattr(fl, name)
    with pytest.raises(ValueError, match="grad_output has shape \\(3, 4\\) but output has shape \\(3, 5\\)"):
        f(X, np.zeros((3, 5)))
    with pytest.raises(TypeError, match="grad_output has dtype float32 but output has dtype float64"):
        f(X.astype(np.float32), X)
    with pytest.raises(np.exceptions.AxisError, match="axis 2 is out of bounds"):
        f(X, X, axis=2)
    with pytest.raises(ValueError, match="out has shape \\(4, 3\\), expected \\(3, 4\\)"):
        f(X, X, out=np.zeros((4, 3)))
    with pytest.raises(TypeError, match="output must be a real numeric array"):
        f(X, np.full((3, 4), "a"))


# ------------------------------------------------------------ non-numeric --
@pytest.mark.parametrize("name", ["log_softmax", "softmax", "logsumexp"])
def test_non_numeric_arrays(name):
    f = getattr(fl, name)
    arg = "a" if name == "logsumexp" else "x"
    with pytest.raises(TypeError, match=f"{arg} must be a real numeric array, got dtype <U1"):
        f(np.array(["a", "b"]))
    with pytest.raises(TypeError, match=f"{arg} must be a real numeric array, got dtype object"):
        f(np.array([1, None], dtype=object))
    with pytest.raises(TypeError, match=f"{arg}: complex input is not supported"):
        f(np.ones(3, complex))
    with pytest.raises(TypeError, match=f"{arg}: dtype float128 is not supported"):
        f(np.ones(3, np.longdouble))


def test_logsumexp_bad_b():
    with pytest.raises(ValueError, match="b of shape \\(3,\\) does not broadcast against a of shape "
                                         "\\(3, 4\\)"):
        fl.logsumexp(X, b=np.ones(3))
    with pytest.raises(TypeError, match="b must be a real numeric array"):
        fl.logsumexp(X, b=np.full((3, 4), "x"))


@pytest.mark.parametrize("t", [0, -1.0, float("inf"), float("nan")])
def test_bad_temperature(t):
    with pytest.raises(ValueError, match="temperature must be a positive finite number"):
        fl.softmax(X, temperature=t)


# ------------------------------------------------------------------ out --
@pytest.mark.parametrize("call", [
    lambda out: fl.log_softmax(X, axis=1, out=out),
    lambda out: fl.softmax(X, out=out),
    lambda out: fl.log_softmax_backward(X, X, out=out),
    lambda out: fl.cross_entropy_and_grad(X, T, out=out),
    lambda out: fl.nll_loss_and_grad(X, T, out=out),
    lambda out: fl.binary_cross_entropy_with_logits_and_grad(X, X, out=out),
], ids=["log_softmax", "softmax", "backward", "ce", "nll", "bce"])
def test_bad_out(call):
    with pytest.raises(ValueError, match="out has shape \\(4, 3\\), expected \\(3, 4\\)"):
        call(np.zeros((4, 3)))
    with pytest.raises(ValueError, match="out has shape \\(12,\\), expected \\(3, 4\\)"):
        call(np.zeros(12))
    with pytest.raises(TypeError, match="out has dtype float32, expected float64"):
        call(np.zeros((3, 4), np.float32))
    with pytest.raises(TypeError, match="out must be a numpy.ndarray, got list"):
        call([[0.0] * 4] * 3)
    ro = np.zeros((3, 4))
    ro.flags.writeable = False
    with pytest.raises(ValueError, match="out is read-only"):
        call(ro)


def test_out_sharing_memory_with_probability_target():
    x = np.zeros((3, 4))
    p = np.full((3, 4), 0.25)
    with pytest.raises(ValueError, match="out must not share memory with target"):
        fl.cross_entropy_and_grad(x, p, out=p)


# ------------------------------------------------------------- threads --
@pytest.mark.parametrize("n,exc,msg", [
    (0, ValueError, "n must be >= 1, got 0"),
    (-2, ValueError, "n must be >= 1, got -2"),
    (1.5, TypeError, "n must be an integer, got float"),
    ("2", TypeError, "n must be an integer, got str"),
    (None, TypeError, "n must be an integer, got NoneType"),
])
def test_bad_set_num_threads(n, exc, msg, threads):
    before = fl.get_num_threads()
    if n is not None:   # set_num_threads(None) is the default policy (test_thread_policy)
        with pytest.raises(exc, match=msg):
            fl.set_num_threads(n)
        assert fl.get_num_threads() == before
    with pytest.raises(exc, match=msg):
        with fl.num_threads(n):
            pass  # pragma: no cover
    assert fl.get_num_threads() == before


# ----------------------------------------------------------- env vars --
def _import_with_env(**env):
    e = dict(os.environ)
    e.update(env)
    src = os.path.join(os.path.dirname(fl.__file__), os.pardir)
    e["PYTHONPATH"] = os.path.abspath(src) + os.pathsep + e.get("PYTHONPATH", "")
    return subprocess.run([sys.executable, "-c", "import fastlog; print(fastlog.config()['isa'])"],
                          env=e, capture_output=True, text=True, timeout=120)


@pytest.mark.one_isa_level
@pytest.mark.parametrize("value", ["sse9", "AVX3", "native", "1"])
def test_invalid_fastlog_isa_is_import_error(value):
    from fastlog._dispatch import LEVELS
    r = _import_with_env(FASTLOG_ISA=value)
    assert r.returncode != 0
    assert "ImportError" in r.stderr
    assert (f"FASTLOG_ISA={value.lower()!r}: expected one of {', '.join(LEVELS)} "
            f"(or the old names baseline, avx2, avx512)") in r.stderr


@pytest.mark.one_isa_level
@pytest.mark.parametrize("value,msg", [("zero", "is not an integer"), ("0", "must be >= 1"),
                                       ("-3", "must be >= 1")])
def test_invalid_fastlog_num_threads_is_import_error(value, msg):
    r = _import_with_env(FASTLOG_NUM_THREADS=value)
    assert r.returncode != 0
    assert "ImportError" in r.stderr and f"FASTLOG_NUM_THREADS={value!r} {msg}" in r.stderr


# ------------------------------------------------------ parity and bounds --
def test_probability_targets_with_ignore_index_raise_like_torch():
    x, p = np.zeros((3, 4)), np.full((3, 4), 0.25)
    for ign in (0, 1, 3, 7):
        with pytest.raises(ValueError, match="ignore_index=.* not supported with class-probability"):
            fl.cross_entropy(x, p, ignore_index=ign)
        with pytest.raises(RuntimeError, match="ignore_index is not supported"):
            F.cross_entropy(torch.tensor(x), torch.tensor(p), ignore_index=ign)
    # a negative ignore_index is accepted (and unused) by both
    for ign in (-100, -1):
        ref = F.cross_entropy(torch.tensor(x), torch.tensor(p), ignore_index=ign).item()
        assert fl.cross_entropy(x, p, ignore_index=ign) == pytest.approx(ref, rel=1e-12)


@pytest.mark.parametrize("ign", [2**63, 2**70, -2**63 - 1, -2**100])
def test_ignore_index_beyond_int64(ign):
    """A ValueError naming the argument, not an OverflowError from the compiled call."""
    for call in (lambda: fl.cross_entropy(X, T, ignore_index=ign),
                 lambda: fl.cross_entropy_and_grad(X, T, ignore_index=ign),
                 lambda: fl.nll_loss(X, T, ignore_index=ign),
                 lambda: fl.nll_loss_and_grad(X, T, ignore_index=ign),
                 lambda: fl.linear_cross_entropy(X, np.ones((4, 4)), T, ignore_index=ign)):
        with pytest.raises(ValueError, match="ignore_index must fit in int64"):
            call()
    both_reject(lambda: F.cross_entropy(torch.tensor(X), torch.tensor(T), ignore_index=ign))


@pytest.mark.parametrize("n", [2**31, 2**40, 2**70])
def test_positive_int_bounded(n):
    from fastlog._validation import positive_int
    with pytest.raises(ValueError, match="threads must be <= "):
        positive_int(n, "threads")
    assert positive_int(2**15, "threads", maximum=2**15) == 2**15
    with pytest.raises(ValueError, match="threads must be <= 32768"):
        positive_int(2**15 + 1, "threads", maximum=2**15)
    old = fl.get_num_threads()
    with pytest.raises(ValueError, match="must be <="):
        fl.set_num_threads(n)
    assert fl.get_num_threads() == old


def _onehot(t, C):
    p = np.zeros((len(t), C))
    p[np.arange(len(t)), t] = 1.0
    return p


@pytest.mark.parametrize("big", [np.finfo(np.float64).max, 1e308])
@pytest.mark.parametrize("eps", [0.0, 0.1, 0.5, 1.0])
@pytest.mark.parametrize("C", [3, 70])      # the short-row (grouped) kernel and the row kernel
def test_loss_near_float64_limit_is_exact(big, eps, C):
    """Logits near the float64 limit: lse - x_c of a [max, -max] row is 2 max, which
    overflows in torch (inf, or NaN from 0 * inf with label_smoothing=1).  fastlog
    returns the exact loss, rounded once (finite where it is: 0.1 max for eps = 0.1),
    +inf only where the exact loss overflows, never NaN; the same for reduced losses,
    with weights, written in place over the logits and through a K-dim copy.
    Oracle: mpmath (an index target is a one-hot probability target)."""
    x = np.zeros((4, C))
    x[0, :3] = [big, -big, 0.0]
    x[1, :3] = [-big, big, 1.0]
    x[2, :3] = [1.0, 2.0, 3.0]
    x[3, :3] = [big, -big, 0.0]
    w = np.linspace(0.25, 1.5, C)
    for t in (np.array([0, 1, 2, 1]), np.array([1, 0, 2, 0])):
        for ww in (None, w):
            want = mp_prob_ce_rows(x, _onehot(t, C), ww, eps)
            got = fl.cross_entropy(x, t, ww, label_smoothing=eps, reduction="none")
            np.testing.assert_allclose(got, want, rtol=1e-12)
            assert not np.isnan(got).any()
            ref = F.cross_entropy(torch.tensor(x), torch.tensor(t),
                                  None if ww is None else torch.tensor(ww), label_smoothing=eps,
                                  reduction="none").numpy()
            fin = np.isfinite(ref)
            np.testing.assert_allclose(got[fin], ref[fin], rtol=1e-12)   # torch agrees where finite
            total = exact_sum(want) if np.isfinite(want).all() else np.inf
            wsum = 4.0 if ww is None else float(ww[t].sum())
            for red, exact in (("sum", total), ("mean", total / wsum)):
                assert fl.cross_entropy(x, t, ww, label_smoothing=eps, reduction=red) == \
                    pytest.approx(exact, rel=1e-12)
                loss, g = fl.cross_entropy_and_grad(x, t, ww, label_smoothing=eps, reduction=red)
                assert loss == pytest.approx(exact, rel=1e-12) and np.isfinite(g).all()
                # in place: the logits are overwritten by the gradient
                xc = x.copy()
                loss2, g2 = fl.cross_entropy_and_grad(xc, t, ww, label_smoothing=eps, reduction=red,
                                                      out=xc)
                assert loss2 == loss and g2 is xc
                np.testing.assert_array_equal(g2, g)
                # K-dim: the kernel writes the gradient over its private copy of the rows
                lk, gk = fl.cross_entropy_and_grad(x[:, :, None], t[:, None], ww, label_smoothing=eps,
                                                   reduction=red)
                assert lk == loss
                np.testing.assert_array_equal(gk[:, :, 0], g)
    # probability targets: the exact loss too.  With p = fl(1/3) the loss of a [max, -max, 0]
    # row is just BELOW max, so it is max, where torch's -log p_c = 2 max overflows to inf.
    p = np.full((4, C), 1 / C)
    np.testing.assert_allclose(fl.cross_entropy(x, p, label_smoothing=eps, reduction="none"),
                               mp_prob_ce_rows(x, p, eps=eps), rtol=1e-12)


def test_softmax_empty_rows_is_empty():
    """(5, 0, 0) over the last axis: no rows at all, an empty result (SciPy raises)."""
    x = np.zeros((5, 0, 0))
    for f in (fl.softmax, fl.log_softmax):
        r = f(x, axis=-1)
        assert r.shape == (5, 0, 0)
        out = np.empty((5, 0, 0))
        assert f(x, axis=-1, out=out) is out
    assert torch.softmax(torch.zeros(5, 0, 0), -1).shape == (5, 0, 0)
    # an empty reduced axis with rows to fill is still an error (as SciPy/NumPy)
    with pytest.raises(ValueError, match="zero-size"):
        fl.softmax(np.zeros((5, 0)), axis=-1)


# ---------------------------------------------------------- alignment --
def _misaligned(a):
    """A writable copy of `a` whose data starts one byte past an aligned address
    (what np.frombuffer at an odd offset, or an array unpickled inside a larger
    frame -- Dask workers -- gives)."""
    a = np.asarray(a)
    buf = np.zeros(a.nbytes + a.itemsize + 1, np.uint8)
    m = buf[1:1 + a.nbytes].view(a.dtype).reshape(a.shape)
    m[...] = a
    assert not m.flags.aligned or a.itemsize == 1
    return m


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_misaligned_arrays_are_read_safely_and_misaligned_out_rejected(dtype):
    """Misaligned inputs (logits, targets, weights) give the aligned answer -- the
    wrappers copy them, so no kernel reads through a misaligned typed pointer (the
    sanitizer job, scripts/sanitize.sh, turns such a read into a failure: UBSan
    found them via the Dask workers); a misaligned `out` is a ValueError."""
    rng = np.random.default_rng(5)
    x = rng.standard_normal((6, 5)).astype(dtype)
    t = rng.integers(0, 5, 6)
    w = rng.random(5).astype(dtype)
    p = rng.random((6, 5)).astype(dtype)
    y = rng.random((6, 5)).astype(dtype)
    xm, tm, wm, pm, ym = map(_misaligned, (x, t, w, p, y))
    calls = [
        lambda x, t, w, p, y: fl.cross_entropy(x, t, w, label_smoothing=0.1),
        lambda x, t, w, p, y: fl.cross_entropy_and_grad(x, t),
        lambda x, t, w, p, y: fl.cross_entropy_and_grad(x, p, w),
        lambda x, t, w, p, y: fl.nll_loss_and_grad(x, t, w, reduction="none"),
        lambda x, t, w, p, y: fl.binary_cross_entropy_with_logits_and_grad(x, y, w),
        lambda x, t, w, p, y: fl.kl_div(x, y),
        lambda x, t, w, p, y: fl.log_softmax(x, axis=-1),
        lambda x, t, w, p, y: fl.softmax(x, axis=0),
        lambda x, t, w, p, y: fl.logsumexp(x, axis=1),
        lambda x, t, w, p, y: fl.linear_cross_entropy_and_grad(x, x[:4], t % 4),
    ]
    for i, call in enumerate(calls):
        want = call(x, t, w, p, y)
        got = call(xm, tm, wm, pm, ym)
        for g_, w_ in zip(got if isinstance(got, tuple) else (got,),
                          want if isinstance(want, tuple) else (want,)):
            np.testing.assert_array_equal(g_, w_, err_msg=f"call {i}")
    for call in (lambda o: fl.log_softmax(x, axis=-1, out=o),
                 lambda o: fl.cross_entropy_and_grad(x, t, out=o),
                 lambda o: fl.binary_cross_entropy_with_logits_and_grad(x, y, out=o)):
        with pytest.raises(ValueError, match="out is not aligned"):
            call(_misaligned(np.zeros_like(x)))


# ------------------------------------------------------------ numbers --
def _numeric_calls():
    """(call, parameter name): every public number parameter of the NumPy side, each
    called with a value given by the test."""
    from fastlog.nn import MLP, LogisticRegression, save_logreg
    from fastlog.data import train_test_split
    x, t = np.zeros((4, 3), np.float32), np.array([0, 1, 2, 0])
    h, W = np.ones((4, 2)), np.ones((3, 2))
    X, y = np.ones((4, 3), np.float32), np.array([0, 1, 1, 0])
    return [
        (lambda v: fl.cross_entropy(x, t, label_smoothing=v), "label_smoothing"),
        (lambda v: fl.cross_entropy(x, t, ignore_index=v), "ignore_index"),
        (lambda v: fl.softmax(x, axis=1, temperature=v), "temperature"),
        (lambda v: fl.linear_cross_entropy(h, W, t, z_loss=v), "z_loss"),
        (lambda v: fl.linear_cross_entropy(h, W, t, chunk_size=v), "chunk_size"),
        (lambda v: MLP((3, v, 2)), "sizes"),
        (lambda v: MLP((3, 4, 2)).train_step(X, y, lr=v), "lr"),
        (lambda v: MLP((3, 4, 2)).train_step(X, y, momentum=v), "momentum"),
        (lambda v: MLP((3, 4, 2)).fit(X, y, epochs=v, progress=False), "epochs"),
        (lambda v: MLP((3, 4, 2)).fit(X, y, epochs=1, batch_size=v, progress=False), "batch_size"),
        (lambda v: MLP((3, 4, 2)).fit(X, y, epochs=1, weight_decay=v, progress=False), "weight_decay"),
        (lambda v: LogisticRegression(3).fit(X, y, epochs=1, lr=v, progress=False), "lr"),
        (lambda v: LogisticRegression(v), "n_features"),
        (lambda v: save_logreg(LogisticRegression(4), "unused.json", final_accuracy=v, training_samples=1,
                               learning_rate=0.1, image_shape=(2, 2)), "final_accuracy"),
        (lambda v: train_test_split(X, y, test_size=v), "test_size"),
        (lambda v: fl.set_num_threads(v), "n"),
    ]


@pytest.mark.parametrize("value", [10**400, -10**400, 2**70, float("nan"), float("inf")],
                         ids=["1e400-int", "neg-1e400-int", "2**70", "nan", "inf"])
def test_numbers_that_cannot_be_taken_name_the_parameter(value):
    """A number no parameter can take -- an integer too large for a float or a C
    integer, NaN, infinity -- is a ValueError (or TypeError: a float where an integer
    is needed) naming the parameter, never an OverflowError from deep inside or a
    silent wrong value."""
    old = fl.get_num_threads()
    try:
        for call, name in _numeric_calls():
            if isinstance(value, float) and name in ("ignore_index", "chunk_size", "sizes", "epochs",
                                                     "batch_size", "n_features", "n"):
                with pytest.raises(TypeError, match=name):
                    call(value)
                continue
            if name == "ignore_index" and value == 2**70 or name == "test_size" and value == 2**70:
                # an int64 parameter takes no 2**70; a test_size that large leaves no training rows
                with pytest.raises(ValueError, match=name):
                    call(value)
                continue
            if value == 2**70 and name in ("lr", "momentum", "weight_decay", "z_loss", "temperature"):
                call(value)   # a representable (if silly) float: accepted
                continue
            with pytest.raises(ValueError, match=name):
                call(value)
    finally:
        fl.set_num_threads(old)


def test_seed_is_a_nonnegative_integer():
    """Seeds are what numpy.random.default_rng takes: any integer >= 0 (10**400 too)."""
    from fastlog.nn import MLP
    assert MLP((3, 4, 2), seed=10**400).sizes == (3, 4, 2)
    with pytest.raises(ValueError, match="seed must be >= 0"):
        MLP((3, 4, 2), seed=-1)
    with pytest.raises(TypeError, match="seed must be an integer"):
        MLP((3, 4, 2), seed=1.5)


def test_layer_sizes_beyond_memory_name_sizes():
    """Layer sizes whose parameter count no machine can address: a ValueError naming
    sizes before anything is allocated (not NumPy's 'Maximum allowed dimension')."""
    from fastlog.nn import MLP
    with pytest.raises(ValueError, match="sizes"):
        MLP((2**40, 2**40, 10))
    with pytest.raises(ValueError, match="sizes"):
        MLP((784, 0, 10))
    with pytest.raises(TypeError, match="sizes"):
        MLP((784, 12.5, 10))


@pytest.mark.parametrize("C", [5, 40, 100])
def test_loss_of_rows_full_of_float64_limits_is_exact(C):
    """Rows whose every logit is +-float64 max (the differential fuzz's case): the exact
    loss's partial sums are themselves near the float64 limit, where an unscaled
    double-double sum overflows inside TwoSum (inf - inf = NaN: the loss came out NaN).
    The loss is the exact value: +inf where it overflows, finite where it does not.
    Oracle: mpmath."""
    big = np.finfo(np.float64).max
    rng = np.random.default_rng(C)
    x = np.where(rng.random((6, C)) < 0.5, big, -big)
    x[:, 0], x[:, 1] = big, -big
    w = rng.uniform(0.01, 2.0, C)
    t = rng.integers(0, C, 6)
    p = (rng.random((6, C)) < 0.2).astype(np.float64)
    for eps in (0.0, 0.1):
        for ww in (None, w):
            got = fl.cross_entropy(x, t, ww, reduction="none", label_smoothing=eps)
            np.testing.assert_allclose(got, mp_prob_ce_rows(x, _onehot(t, C), ww, eps), rtol=1e-12)
            gp = fl.cross_entropy(x, p, ww, reduction="none", label_smoothing=eps)
            np.testing.assert_allclose(gp, mp_prob_ce_rows(x, p, ww, eps), rtol=1e-12)
            assert not np.isnan(got).any() and not np.isnan(gp).any()
