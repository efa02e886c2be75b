"""fastlog.dask against fastlog's in-memory NumPy API (and SciPy), for random uneven chunkings.

The threaded scheduler runs most tests; one module-scoped LocalCluster (2 worker
processes, 1 thread each, started by the tests, bounded in time and closed)
checks the distributed scheduler and the thread policy inside the workers.
"""
import subprocess
import sys

import numpy as np
import pytest

da = pytest.importorskip("dask.array")
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402
from scipy import special  # noqa: E402

import fastlog  # noqa: E402
import fastlog.dask as fd  # noqa: E402

RTOL = {np.float32: 6e-7, np.float64: 1e-12}   # a few ulps of float32; 1e-12 for float64


def _chunks(draw, n):
    """A random partition of n into chunk sizes (uneven, sometimes one chunk)."""
    if n == 0:
        return (0,)
    cuts = sorted(draw(st.sets(st.integers(1, n - 1), max_size=min(5, n - 1)))) if n > 1 else []
    edges = [0] + cuts + [n]
    return tuple(b - a for a, b in zip(edges[:-1], edges[1:]))


def _close(got, ref, dtype):
    got = np.asarray(got)
    ref = np.asarray(ref)
    assert got.shape == ref.shape
    assert got.dtype == ref.dtype
    np.testing.assert_allclose(got, ref, rtol=RTOL[dtype], atol=RTOL[dtype] * 10, equal_nan=True)


SYNC = dict(scheduler="threads", num_workers=2)


# ------------------------------------------------------------ class losses --
@st.composite
def ce_case(draw):
    dtype = draw(st.sampled_from([np.float32, np.float64]))
    N = draw(st.integers(1, 60))
    C = draw(st.integers(1, 9))
    seed = draw(st.integers(0, 2**31 - 1))
    return dict(dtype=dtype, N=N, C=C, seed=seed, xchunks=_chunks(draw, N), tchunks=_chunks(draw, N),
                cchunks=_chunks(draw, C),
                weighted=draw(st.booleans()), ignore=draw(st.sampled_from([-100, 0, 2])),
                reduction=draw(st.sampled_from(["mean", "sum", "none"])),
                eps=draw(st.sampled_from([0.0, 0.15])), prob=draw(st.booleans()),
                fn=draw(st.sampled_from(["ce", "nll"])), split_every=draw(st.sampled_from([None, 2])))


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(ce_case())
def test_class_losses_equal_in_memory_for_any_chunking(c):
    rng = np.random.default_rng(c["seed"])
    dtype, N, C = c["dtype"], c["N"], c["C"]
    x = (rng.standard_normal((N, C)) * 3).astype(dtype)
    w = (rng.random(C) + 0.2).astype(dtype) if c["weighted"] else None
    X = da.from_array(x, chunks=(c["xchunks"], c["cchunks"]))     # the class axis split too
    prob = c["prob"] and c["fn"] == "ce"
    if prob:
        t = fastlog.softmax(rng.standard_normal((N, C)), axis=1).astype(dtype)
        T = da.from_array(t, chunks=(c["tchunks"], C))
    else:
        t = rng.integers(0, C, N)
        t[rng.random(N) < 0.3] = c["ignore"]
        T = da.from_array(t, chunks=(c["tchunks"],))                 # row chunks misaligned
    if c["fn"] == "ce":
        # torch (and so fastlog) rejects a non-negative ignore_index with probability targets
        ignore = -100 if prob else c["ignore"]
        args = dict(weight=w, ignore_index=ignore, reduction=c["reduction"], label_smoothing=c["eps"])
        ref = fastlog.cross_entropy(x, t, **args)
        got = fd.cross_entropy(X, T, split_every=c["split_every"], **args)
    else:
        x = fastlog.log_softmax(x, axis=1)
        X = da.from_array(x, chunks=(c["xchunks"], c["cchunks"]))
        args = dict(weight=w, ignore_index=c["ignore"], reduction=c["reduction"])
        ref = fastlog.nll_loss(x, t, **args)
        got = fd.nll_loss(X, T, split_every=c["split_every"], **args)
    assert isinstance(got, da.Array)
    if c["reduction"] == "none":
        assert got.chunks[0] == c["xchunks"]           # lazy, one block per row chunk
    _close(got.compute(**SYNC), ref, dtype)


def test_mean_is_not_a_mean_of_block_means():
    # Unequal blocks with ignored rows: the exact mean differs from dask-ml's mean of means.
    rng = np.random.default_rng(1)
    x = rng.standard_normal((50, 4))
    t = rng.integers(0, 4, 50)
    t[:8] = -100
    X = da.from_array(x, chunks=((10, 40), 4))
    exact = fastlog.cross_entropy(x, t)
    means = [fastlog.cross_entropy(x[a:b], t[a:b]) for a, b in ((0, 10), (10, 50))]
    assert abs(np.mean(means) - exact) > 1e-3
    assert fd.cross_entropy(X, t).compute(**SYNC) == pytest.approx(exact, rel=1e-13)


def test_kdim_cross_entropy_and_single_row():
    rng = np.random.default_rng(2)
    x = rng.standard_normal((20, 5, 3))
    t = rng.integers(0, 5, (20, 3))
    for red in ("mean", "sum", "none"):
        got = fd.cross_entropy(da.from_array(x, chunks=(7, 2, 2)), da.from_array(t, chunks=(3, 1)),
                               reduction=red, label_smoothing=0.2).compute(**SYNC)
        _close(got, fastlog.cross_entropy(x, t, reduction=red, label_smoothing=0.2), np.float64)
    x1 = rng.standard_normal(6).astype(np.float32)
    _close(fd.cross_entropy(da.from_array(x1, chunks=2), np.int64(3)).compute(**SYNC),
           fastlog.cross_entropy(x1, np.int64(3)), np.float32)


# ------------------------------------------------------ elementwise losses --
@st.composite
def ew_case(draw):
    dtype = draw(st.sampled_from([np.float32, np.float64]))
    shape = (draw(st.integers(1, 30)), draw(st.integers(1, 6)))
    return dict(dtype=dtype, shape=shape, seed=draw(st.integers(0, 2**31 - 1)),
                xchunks=tuple(_chunks(draw, n) for n in shape), tchunks=tuple(_chunks(draw, n) for n in shape),
                weighted=draw(st.booleans()), pos=draw(st.booleans()), log_target=draw(st.booleans()),
                reduction=draw(st.sampled_from(["mean", "sum", "none", "batchmean"])))


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(ew_case())
def test_bce_and_kl_equal_in_memory_for_any_chunking(c):
    rng = np.random.default_rng(c["seed"])
    dtype, shape = c["dtype"], c["shape"]
    x = (rng.standard_normal(shape) * 4).astype(dtype)
    y = rng.random(shape).astype(dtype)
    X, Y = da.from_array(x, chunks=c["xchunks"]), da.from_array(y, chunks=c["tchunks"])
    w = (rng.random(shape[1]) + 0.5).astype(dtype) if c["weighted"] else None
    pw = (rng.random(shape[1]) * 3).astype(dtype) if c["pos"] else None
    red = c["reduction"]
    if red != "batchmean":
        ref = fastlog.binary_cross_entropy_with_logits(x, y, w, red, pw)
        _close(fd.binary_cross_entropy_with_logits(X, Y, w, red, pw).compute(**SYNC), ref, dtype)
    lp = fastlog.log_softmax(x, axis=1)
    tgt = np.log(y + 0.01).astype(dtype) if c["log_target"] else y
    ref = fastlog.kl_div(lp, tgt, red, c["log_target"])
    got = fd.kl_div(da.from_array(lp, chunks=c["xchunks"]), da.from_array(tgt, chunks=c["tchunks"]), red,
                    c["log_target"]).compute(**SYNC)
    _close(got, ref, dtype)


# ----------------------------------------------------------- softmax family --
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("axis", [None, 0, 1, -1, (0, 1)])
@pytest.mark.parametrize("chunks", [(5, 3), (40, 9), ((3, 30, 7), (2, 7))])
def test_softmax_family_matches_scipy(dtype, axis, chunks):
    rng = np.random.default_rng(3)
    x = (rng.standard_normal((40, 9)) * 5).astype(dtype)
    x[4, :] = -np.inf            # an all -inf row
    x[7, 2] = np.inf             # a row with +inf
    x[9, 1] = -np.inf
    X = da.from_array(x, chunks=chunks)
    with np.errstate(all="ignore"):
        for name in ("log_softmax", "softmax"):
            got = getattr(fd, name)(X, axis=axis).compute(**SYNC)
            ref = getattr(special, name)(x, axis=axis)
            assert got.dtype == ref.dtype
            # Split axes go through x - lse: a few ulps of the result's magnitude.
            np.testing.assert_allclose(got, ref, rtol=8 * RTOL[dtype], atol=8 * RTOL[dtype] * 10,
                                       equal_nan=True)
        for keepdims in (False, True):
            got = fd.logsumexp(X, axis=axis, keepdims=keepdims).compute(**SYNC)
            ref = special.logsumexp(x, axis=axis, keepdims=keepdims)
            assert np.shape(got) == np.shape(ref) and got.dtype == ref.dtype
            np.testing.assert_allclose(got, ref, rtol=4 * RTOL[dtype], equal_nan=True)


def test_logsumexp_of_integers_is_float64():
    x = np.arange(30).reshape(6, 5)
    got = fd.logsumexp(da.from_array(x, chunks=2), axis=0, split_every=2).compute(**SYNC)
    np.testing.assert_allclose(got, special.logsumexp(x, axis=0), rtol=1e-14)
    assert got.dtype == np.float64


# --------------------------------------------------------------- bad input --
def test_bad_input():
    X = da.from_array(np.zeros((10, 4)), chunks=3)
    with pytest.raises(ValueError, match="target has shape"):
        fd.cross_entropy(X, np.zeros(9, np.int64))
    with pytest.raises(ValueError, match="reduction"):
        fd.cross_entropy(X, np.zeros(10, np.int64), reduction="avg")
    with pytest.raises(ValueError, match="weight"):
        fd.cross_entropy(X, np.zeros(10, np.int64), weight=np.ones(3))
    with pytest.raises(TypeError, match="float32 or float64"):
        fd.cross_entropy(X.astype(np.float16), np.zeros(10, np.int64))
    with pytest.raises(ValueError, match="label_smoothing"):
        fd.cross_entropy(X, np.zeros(10, np.int64), label_smoothing=2.0)
    with pytest.raises(ValueError, match="threads"):
        fd.cross_entropy(X, np.zeros(10, np.int64), threads=0)
    t = np.zeros(10, np.int64)
    t[8] = 4
    lazy = fd.cross_entropy(X, da.from_array(t, chunks=4))    # lazy: nothing raised yet
    with pytest.raises(IndexError, match="out of bounds"):
        lazy.compute(**SYNC)
    with pytest.raises(ValueError, match="must be the same as input size"):
        fd.binary_cross_entropy_with_logits(X, np.zeros((10, 3)))
    with pytest.raises(ValueError, match="broadcast"):
        fd.kl_div(X, np.zeros((3, 4)))


# ------------------------------------------------------------------ threads --
def test_tasks_use_one_fastlog_thread_per_dask_thread():
    x = np.random.default_rng(4).standard_normal((400, 30))
    X = da.from_array(x, chunks=50)
    t = np.zeros(400, np.int64)
    with fastlog.num_threads(2):
        fd.last_task_threads = None
        fd.cross_entropy(X, t).compute(**SYNC)
        assert fd.last_task_threads == 1            # what the tasks saw
        assert fastlog.get_num_threads() == 2       # restored afterwards
        fd.cross_entropy(X, t, threads=2).compute(scheduler="sync")
        assert fd.last_task_threads == 2


def test_import_fastlog_does_not_import_dask():
    code = "import sys, fastlog; assert 'dask' not in sys.modules, 'dask imported'"
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120, cwd="/")


# ------------------------------------------------------- dask.distributed --
@pytest.fixture(scope="module")
def client():
    distributed = pytest.importorskip("distributed")
    # FASTLOG_NUM_THREADS=2 in the workers: their default would be 2 fastlog threads per task.
    cluster = distributed.LocalCluster(n_workers=2, processes=True, threads_per_worker=1,
                                       dashboard_address=None, memory_limit="1GiB",
                                       env={"FASTLOG_NUM_THREADS": "2", "OMP_WAIT_POLICY": "PASSIVE"})
    cl = distributed.Client(cluster, timeout="60s")
    try:
        yield cl
    finally:
        cl.close(timeout=30)
        cluster.close(timeout=30)


def _worker_threads():
    import fastlog.dask
    return fastlog.dask.last_task_threads


def test_distributed_cluster(client):
    rng = np.random.default_rng(5)
    x = rng.standard_normal((3000, 17)).astype(np.float32)
    t = rng.integers(0, 17, 3000)
    t[::7] = -100
    w = rng.random(17).astype(np.float32) + 0.5
    X = da.from_array(x, chunks=((500, 1000, 700, 800), 17))
    T = da.from_array(t, chunks=600)
    fut = client.compute(fd.cross_entropy(X, T, w, label_smoothing=0.1))
    _close(fut.result(timeout=60), fastlog.cross_entropy(x, t, w, label_smoothing=0.1), np.float32)
    fut = client.compute(fd.cross_entropy(X, T, reduction="none"))
    _close(fut.result(timeout=60), fastlog.cross_entropy(x, t, reduction="none"), np.float32)
    seen = client.run(_worker_threads)
    assert set(seen.values()) <= {1, None} and 1 in seen.values(), seen
    bad = t.copy()
    bad[2999] = 17
    with pytest.raises(IndexError, match="out of bounds"):
        client.compute(fd.cross_entropy(X, bad)).result(timeout=60)
    lse = client.compute(fd.logsumexp(da.from_array(x, chunks=(700, 5)), axis=1)).result(timeout=60)
    np.testing.assert_allclose(lse, special.logsumexp(x, axis=1), rtol=4 * RTOL[np.float32])


@pytest.mark.parametrize("fn", ["logsumexp", "log_softmax", "softmax"])
def test_an_axis_out_of_range_is_an_axis_error_not_wrapped(fn):
    """axis=2 of a 2-d array raised nothing and was taken as axis 0 (2 % 2): a silent wrong answer."""
    import dask.array as da
    import fastlog.dask
    x = da.from_array(np.arange(12.0).reshape(4, 3), chunks=2)
    for axis in (2, -3, (0, 5)):
        with pytest.raises(np.exceptions.AxisError, match="axis"):
            getattr(fastlog.dask, fn)(x, axis=axis)
        with pytest.raises(np.exceptions.AxisError):             # the NumPy face says the same
            getattr(fastlog, fn)(x.compute(), axis=axis)
    with pytest.raises(ValueError, match="repeated"):
        getattr(fastlog.dask, fn)(x, axis=(1, -1))
    np.testing.assert_allclose(getattr(fastlog.dask, fn)(x, axis=-1).compute(scheduler="synchronous"),
                               getattr(fastlog, fn)(x.compute(), axis=-1))
