"""The compiled layer (fastlog._core) called directly, as a careless caller would:
a wrong dtype, shape, length or a None where an array is needed raises
TypeError/ValueError instead of touching memory it should not; the enum codes
agree between Cython and Python; the thread count is fixed per call and
thread-local under ``fastlog.num_threads``; OpenMP really runs threads.
"""
import os
import threading
import time

import numpy as np
import pytest

import fastlog as fl
from fastlog import _enums
from fastlog._dispatch import core

F32, F64, I64 = np.float32, np.float64, np.int64


def _ce_args(n=8, C=5, dt=F32):
    x = np.random.default_rng(0).standard_normal((n, C)).astype(dt)
    return x, np.arange(n, dtype=I64) % C, np.empty(n, F64)


# ------------------------------------------------------------ enums --
def test_enums_match_the_compiled_codes():
    for name, values in core.ENUMS.items():
        enum = getattr(_enums, name)
        assert {m.name: int(m) for m in enum} == values


# ------------------------------------------------- typed entry points --
@pytest.mark.parametrize("dt", [F32, F64])
def test_ce_index_by_address_equals_ce_index_and_checks_its_arguments(dt):
    """The training-loop entry of the torch face reads memory by address: it gives
    ce_index's results bit for bit, reports a bad target before writing, and rejects a
    code, size or address it cannot use."""
    x, t, loss = _ce_args(6, 7, dt)
    t[2] = -100                                    # an ignored row
    kind = 0 if dt is F32 else 1
    for red in (1, 2):
        g1, g2, l2 = np.empty_like(x), np.empty_like(x), np.empty_like(loss)
        got = core.ce_index_addr(kind, x.ctypes.data, t.ctypes.data, 6, 7, -100, red, g1.ctypes.data, loss)
        want = core.ce_index(x, t, None, -100, 0.0, red, g2, l2, True)
        assert got == want
        np.testing.assert_array_equal(g1, g2)
        np.testing.assert_array_equal(loss, l2)
    bad_t = t.copy()
    bad_t[4] = 7
    g = np.full_like(x, 5.0)
    assert core.ce_index_addr(kind, x.ctypes.data, bad_t.ctypes.data, 6, 7, -100, 1, g.ctypes.data, loss)[0] == 4
    assert (g == 5.0).all()                        # nothing written
    a = (x.ctypes.data, t.ctypes.data)
    with pytest.raises(ValueError, match="kind"):
        core.ce_index_addr(4, *a, 6, 7, -100, 1, g.ctypes.data, loss)
    with pytest.raises(ValueError, match="C > 0"):
        core.ce_index_addr(kind, *a, 6, 0, -100, 1, g.ctypes.data, loss)
    with pytest.raises(ValueError, match="non-null"):
        core.ce_index_addr(kind, 0, t.ctypes.data, 6, 7, -100, 1, g.ctypes.data, loss)
    l3 = np.empty_like(loss)                       # grad 0: the losses alone, the same ones
    assert core.ce_index_addr(kind, *a, 6, 7, -100, 1, 0, l3) == core.ce_index(x, t, None, -100, 0.0, 1,
                                                                                None, loss, True)
    np.testing.assert_array_equal(l3, loss)
    with pytest.raises(ValueError, match="reduction"):
        core.ce_index_addr(kind, *a, 6, 7, -100, 5, g.ctypes.data, loss)
    with pytest.raises(ValueError, match="loss"):
        core.ce_index_addr(kind, *a, 6, 7, -100, 1, g.ctypes.data, loss[:5].copy())


@pytest.mark.parametrize("fn", ["ce_index", "nll"])
def test_index_losses_reject_bad_arguments(fn):
    kern = getattr(core, fn)
    x, t, loss = _ce_args()
    args = dict(x=x, target=t, weight=None, ignore_index=-100, reduction=1, grad=None, loss=loss)
    if fn == "ce_index":
        args["eps"] = 0.0

    def call(**kw):
        a = dict(args, **kw)
        if fn == "ce_index":
            return kern(a["x"], a["target"], a["weight"], a["ignore_index"], a["eps"], a["reduction"],
                        a["grad"], a["loss"])
        return kern(a["x"], a["target"], a["weight"], a["ignore_index"], a["reduction"], a["grad"], a["loss"])

    assert call()[0] == -1
    with pytest.raises(TypeError, match="int64"):
        call(target=t.astype(np.int32))
    with pytest.raises(ValueError, match="targets"):
        call(target=t[:-1].copy())
    with pytest.raises(TypeError, match="float32 or float64"):
        call(x=x.astype(np.int16))      # (float16 / bfloat16 go to the half kernels: test_half.py)
    with pytest.raises(ValueError, match="C-contiguous"):
        call(x=np.asfortranarray(x))
    with pytest.raises(ValueError, match="2-D"):
        call(x=x.ravel())
    with pytest.raises(ValueError, match="weight"):
        call(weight=np.ones(4, F32))
    with pytest.raises(TypeError, match="weight"):
        call(weight=np.ones(5, F64))
    with pytest.raises(ValueError, match="grad"):
        call(grad=np.empty((7, 5), F32))
    with pytest.raises(TypeError, match="grad"):
        call(grad=[0.0] * 40)
    with pytest.raises(ValueError, match="loss"):
        call(loss=np.empty(3, F64))
    with pytest.raises(TypeError, match="loss"):
        call(loss=np.empty(8, F32))
    with pytest.raises(ValueError, match="reduction"):
        call(reduction=7)
    with pytest.raises(TypeError):
        call(x=None)
    ro = np.empty(8, F64)
    ro.flags.writeable = False
    with pytest.raises(ValueError, match="read-only"):
        call(loss=ro)


def test_softmax_family_rejects_bad_arguments():
    x = np.zeros((4, 6), F64)
    core.unary_rows(0, x, np.empty_like(x))
    with pytest.raises(ValueError, match="elements"):
        core.unary_rows(0, x, np.empty(23, F64))
    with pytest.raises(TypeError, match="dtype"):
        core.unary_rows(1, x, np.empty_like(x, dtype=F32))
    with pytest.raises(ValueError, match="4 elements"):
        core.unary_rows(2, x, np.empty(24, F64))
    with pytest.raises(ValueError, match="whole rows"):
        core.unary_rows(0, x, np.empty_like(x), 5)
    with pytest.raises(ValueError, match="op"):
        core.unary_rows(3, x, np.empty_like(x))
    with pytest.raises(ValueError, match="grad_input"):
        core.backward_rows(0, x, x, np.empty(5, F64))
    with pytest.raises(ValueError, match="op"):
        core.backward_rows(2, x, x, np.empty_like(x))
    with pytest.raises(ValueError, match="out"):
        core.exp_array(x, np.empty(3, F64))


def test_prob_bce_relu_gemm_reject_bad_arguments():
    x, _, loss = _ce_args()
    with pytest.raises(ValueError, match="target"):
        core.ce_prob(x, x[:4].copy(), None, 0.0, 1.0, None, loss)
    with pytest.raises(ValueError, match="pw"):
        core.bce_with_logits(x, x, None, np.ones(3, F32), 1.0, None, None)
    with pytest.raises(TypeError, match="y"):
        core.bce_with_logits(x, x.astype(F64), None, None, 1.0, None, None)
    with pytest.raises(ValueError, match="out"):
        core.relu_fwd(x, np.empty(3, F32))
    with pytest.raises(ValueError, match="y"):
        core.relu_bwd(x, x[:2].copy(), np.empty_like(x))
    with pytest.raises(ValueError, match="shapes"):
        core.gemm(np.ones((3, 4), F32), np.ones((5, 2), F32), np.empty((3, 2), F32))
    a, b = np.ones((3, 4), F64), np.ones((4, 2), F64)
    c = np.empty((3, 2), F64)
    core.gemm(a, b, c)
    np.testing.assert_array_equal(c, a @ b)
    with pytest.raises(ValueError, match="w"):
        core.linear_fwd(x, np.ones((3, 4), F32), None, np.empty((8, 3), F32), False)
    with pytest.raises(ValueError, match="out"):
        core.linear_fwd(x, np.ones((3, 5), F32), None, np.empty((8, 2), F32), False)


def test_linear_ce_rejects_bad_arguments():
    rng = np.random.default_rng(1)
    X, W = rng.standard_normal((6, 4)).astype(F32), rng.standard_normal((9, 4)).astype(F32)
    t, loss, work = np.arange(6, dtype=I64), np.empty(6, F64), np.empty(2 * 9, F32)

    def call(**kw):
        a = dict(X=X, Wm=W, bias=None, target=t, weight=None, ignore_index=-100, eps=0.0, reduction=1,
                 row_scale=None, zscale=0.0, work=work, scratch=None, loss=loss, lse=None, gX=None,
                 gW=None, gb=None)
        a.update(kw)
        return core.linear_ce(*a.values())

    assert call()[0] == -1
    with pytest.raises(ValueError, match="Wm"):
        call(Wm=W[:, :3].copy())
    with pytest.raises(ValueError, match="work"):
        call(work=np.empty(4, F32))
    with pytest.raises(ValueError, match="gW"):
        call(gW=np.empty((9, 3), F32))
    with pytest.raises(ValueError, match="scratch"):
        call(zscale=1e-3, gX=np.empty((6, 4), F32), scratch=np.empty(3, F32))
    with pytest.raises(ValueError, match="scratch"):
        call(zscale=1e-3, gX=np.empty((6, 4), F32), scratch=None)
    with pytest.raises(TypeError, match="gb"):
        call(gb=np.empty(9, F32))


def _ws_args(sizes=(5, 4, 3), dt=F32, cap=8):
    s = list(sizes)
    n = sum(o * i + o for i, o in zip(s[:-1], s[1:]))
    hidden = max(s[1:-1]) if len(s) > 2 else 1
    return dict(sizes=s, params=np.zeros(n, dt), grads=np.zeros(n, dt), velocity=np.zeros(n, dt),
                acts=np.empty(cap * sum(s[1:]), dt), dscratch=np.empty(cap * hidden, dt),
                rowloss=np.empty(cap, F64), acc=np.empty(max(s), F64), cap=cap, wscratch=None)


def test_mlp_workspace_checks_layer_sizes_and_buffers():
    core.MLPWorkspace(**_ws_args())
    with pytest.raises(ValueError, match="sizes"):
        core.MLPWorkspace(**dict(_ws_args(), sizes=[5]))
    with pytest.raises(ValueError, match="sizes"):
        core.MLPWorkspace(**_ws_args(sizes=[3] * 70))          # was a silent overflow of s[65]
    with pytest.raises(ValueError, match="sizes"):
        core.MLPWorkspace(**dict(_ws_args(), sizes=[5, 0, 3]))
    for name, bad in [("params", np.zeros(3, F32)), ("acts", np.empty(3, F32)),
                      ("dscratch", np.empty(3, F32)), ("rowloss", np.empty(3, F64)),
                      ("acc", np.empty(2, F64)), ("grads", np.zeros(3, F32))]:
        with pytest.raises(ValueError, match=name):
            core.MLPWorkspace(**dict(_ws_args(), **{name: bad}))
    with pytest.raises(TypeError, match="rowloss"):
        core.MLPWorkspace(**dict(_ws_args(), rowloss=np.empty(8, F32)))
    with pytest.raises(TypeError, match="velocity"):
        core.MLPWorkspace(**dict(_ws_args(), velocity=np.zeros(39, F64)))
    ws = core.MLPWorkspace(**_ws_args())
    with pytest.raises(ValueError, match="does not fit"):
        ws.forward(np.zeros((2, 4), F32), 0, np.empty((2, 3), F32), None)
    with pytest.raises(ValueError, match="out"):
        ws.forward(np.zeros((2, 5), F32), 0, np.empty((1, 3), F32), None)
    with pytest.raises(TypeError, match="labels"):
        ws.forward(np.zeros((2, 5), F32), 3, None, np.empty(2, np.int32))
    with pytest.raises(ValueError, match="labels"):
        ws.forward(np.zeros((2, 5), F32), 3, None, np.empty(1, I64))
    with pytest.raises(ValueError, match="kind"):
        ws.forward(np.zeros((2, 5), F32), 7, np.empty((2, 3), F32), None)
    with pytest.raises(ValueError, match="mode"):
        ws.step(np.zeros((2, 5), F32), np.zeros(2, I64), 5)


def test_mlp_workspaces_over_shared_params_run_concurrently():
    """One workspace per thread over the same parameters (what MLP inference
    from several Python threads needs): every thread gets the serial answer."""
    rng = np.random.default_rng(2)
    base = _ws_args(sizes=(64, 256, 10), cap=512)
    base["params"][:] = rng.standard_normal(base["params"].size).astype(F32) * 0.1
    x = rng.standard_normal((2000, 64)).astype(F32)
    ref = np.empty((2000, 10), F32)
    core.MLPWorkspace(**base).forward(x, 2, ref, None)
    errors = []

    def worker():
        own = dict(_ws_args(sizes=(64, 256, 10), cap=512), params=base["params"])
        ws = core.MLPWorkspace(**own)
        out = np.empty_like(ref)
        for _ in range(5):
            ws.forward(x, 2, out, None)
            if not np.array_equal(out, ref):
                errors.append("mismatch")

    ts = [threading.Thread(target=worker) for _ in range(4)]
    for t in ts:
        t.start()
    for t in ts:
        t.join(60)
    assert not errors


def test_mlp_workspace_in_use_by_another_thread_raises():
    rng = np.random.default_rng(3)
    args = _ws_args(sizes=(256, 512, 10), cap=4096)
    args["params"][:] = rng.standard_normal(args["params"].size).astype(F32) * 0.05
    ws = core.MLPWorkspace(**args)
    x = rng.standard_normal((30_000, 256)).astype(F32)
    out = np.empty((30_000, 10), F32)
    outcome = []

    def run():
        try:
            ws.forward(x, 0, out, None)
            outcome.append("ok")
        except RuntimeError as e:
            outcome.append(str(e))

    ts = [threading.Thread(target=run) for _ in range(3)]
    for t in ts:
        t.start()
    for t in ts:
        t.join(120)
    assert "ok" in outcome
    # Any call that overlapped a running one raised instead of sharing scratch.
    assert all(o == "ok" or "in use by another thread" in o for o in outcome)


# ----------------------------------------------------------- threads --
def test_num_threads_is_per_python_thread(threads):
    threads(3)
    seen, barrier = {}, threading.Barrier(2, timeout=30)

    def use(n):
        with fl.num_threads(n):
            barrier.wait()
            seen[n] = fl.get_num_threads()
            barrier.wait()
        seen[f"after{n}"] = fl.get_num_threads()

    ts = [threading.Thread(target=use, args=(n,)) for n in (1, 2)]
    for t in ts:
        t.start()
    for t in ts:
        t.join(60)
    assert seen == {1: 1, 2: 2, "after1": 3, "after2": 3}
    assert fl.get_num_threads() == 3
    with fl.num_threads(2):
        with fl.num_threads(1):
            assert fl.get_num_threads() == 1
        assert fl.get_num_threads() == 2
    assert fl.get_num_threads() == 3


def test_set_num_threads_bounds(threads):
    with pytest.raises(ValueError, match="n"):
        fl.set_num_threads(2**40)
    with pytest.raises(ValueError, match="n"):
        fl.num_threads(2**40)
    with pytest.raises(ValueError):
        fl.set_num_threads(0)


def test_z_loss_with_set_num_threads_hammered_from_another_thread(threads):
    """The z-loss scratch is sized from the thread count at entry; another
    thread changing the count mid-call must neither corrupt memory nor change
    the result (it once failed with 'free(): invalid next size')."""
    rng = np.random.default_rng(4)
    X = rng.standard_normal((96, 16)).astype(F32)
    W = rng.standard_normal((2048, 16)).astype(F32)
    t = rng.integers(0, 2048, 96)
    threads(1)
    ref = fl.linear_cross_entropy_and_grad(X, W, t, z_loss=1e-3, chunk_size=32)
    stop = threading.Event()

    def hammer():
        k = 0
        while not stop.is_set():
            fl.set_num_threads(1 + (k % 4))
            k += 1
            time.sleep(0)

    h = threading.Thread(target=hammer)
    h.start()
    try:
        for _ in range(10):
            got = fl.linear_cross_entropy_and_grad(X, W, t, z_loss=1e-3, chunk_size=32)
            for a, b in zip(got, ref):
                np.testing.assert_array_equal(a, b)
    finally:
        stop.set()
        h.join(30)


def test_openmp_runs_threads():
    """The build's OpenMP is real: a region asked for 2 threads runs 2.
    FASTLOG_REQUIRE_OPENMP=1 (CI) makes a build without OpenMP a failure."""
    cfg = fl.config()
    if os.environ.get("FASTLOG_REQUIRE_OPENMP", "") == "1":
        assert cfg["openmp"], "FASTLOG_REQUIRE_OPENMP=1 but fastlog was built without OpenMP"
    if cfg["openmp"]:
        assert core.openmp_team_size(2) == 2
        assert cfg["openmp_threads_ok"]
    else:
        assert core.openmp_team_size(2) == 1


def test_kernel_tables_and_cpu_levels():
    levels = core.cpu_levels()
    assert levels[0] == core.LEVELS[0] and set(levels) <= set(core.built_levels())
    assert fl.config()["isa"] == core.ISA in levels
    with pytest.raises(ValueError):
        core.Kernels("avx1024")
