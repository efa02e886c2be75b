"""One thread policy: fastlog's calls leave NumPy's and SciPy's BLAS thread
counts exactly as they found them, and fused linear + cross-entropy gives the
same bits for any thread setting of fastlog or of the BLAS."""
import numpy as np
import pytest
from threadpoolctl import threadpool_info, threadpool_limits

import fastlog as fl


def _blas_counts():
    return sorted((i["filepath"], i["num_threads"]) for i in threadpool_info() if i["user_api"] == "blas")


def _calls():
    rng = np.random.default_rng(0)
    X = rng.standard_normal((300, 64)).astype(np.float32)
    W = (rng.standard_normal((3000, 64)) * 0.1).astype(np.float32)
    t = rng.integers(0, 3000, 300)
    m = fl.MLP(seed=0)
    xm, ym = rng.random((128, 784)).astype(np.float32), rng.integers(0, 10, 128)
    return {
        "linear_cross_entropy": lambda: fl.linear_cross_entropy(X, W, t),
        "linear_cross_entropy_and_grad": lambda: fl.linear_cross_entropy_and_grad(X, W, t, z_loss=1e-4),
        "linear_forward": lambda: fl.linear_forward(X, W, relu=True),
        "linear_backward": lambda: fl.linear_backward(np.ones((300, 3000), np.float32), X, W),
        "mlp_train_step": lambda: m.train_step(xm, ym, lr=0.01),
        "mlp_predict_proba": lambda: m.predict_proba(xm),
    }


@pytest.mark.parametrize("name", list(_calls()))
def test_blas_threads_are_restored(name):
    if not _blas_counts():
        pytest.skip("threadpoolctl sees no BLAS")
    f = _calls()[name]
    with threadpool_limits(limits=2, user_api="blas"):
        before = _blas_counts()
        f()
        assert _blas_counts() == before
    with threadpool_limits(limits=1, user_api="blas"):
        before = _blas_counts()
        f()
        assert _blas_counts() == before


def test_linear_cross_entropy_bits_do_not_depend_on_any_thread_count(threads):
    rng = np.random.default_rng(5)
    # Large enough that the GEMMs are cut into several blocks (and that a
    # multi-threaded BLAS would split them its own way).
    X = rng.standard_normal((700, 96)).astype(np.float32)
    W = (rng.standard_normal((9000, 96)) * 0.1).astype(np.float32)
    b = rng.standard_normal(9000).astype(np.float32)
    t = rng.integers(0, 9000, 700)
    ref = None
    for blas in (1, 2, 3):
        for n in (1, 2, 3):
            threads(n)
            with threadpool_limits(limits=blas, user_api="blas"):
                got = fl.linear_cross_entropy_and_grad(X, W, t, b, chunk_size=300, label_smoothing=0.1)
            got = [np.asarray(a) for a in got]
            if ref is None:
                ref = got
                continue
            for a, r in zip(got, ref):
                assert a.tobytes() == r.tobytes(), f"BLAS threads {blas}, fastlog threads {n}"


def test_default_thread_count_adapts_but_a_chosen_one_is_kept():
    import os
    import subprocess
    import sys
    code = (
        "import fastlog as fl; from fastlog._dispatch import core\n"
        "n = fl.get_num_threads(); now = core.call_threads()\n"
        "assert not core.threads_explicit() and 1 <= now <= n, (n, now)\n"
        "run = core.runnable_tasks(); assert run == -1 or run >= 1, run\n"
        "fl.set_num_threads(3); assert core.threads_explicit() and core.call_threads() == 3\n"
        "with fl.num_threads(2): assert core.call_threads() == 2\n"
        "fl.set_num_threads(None); assert not core.threads_explicit() and fl.get_num_threads() == n\n"
        "print('ok')\n")
    env = {k: v for k, v in os.environ.items() if k != "FASTLOG_NUM_THREADS"}
    r = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0 and r.stdout.strip() == "ok", r.stderr
    r = subprocess.run([sys.executable, "-c", "from fastlog._dispatch import core; import fastlog as fl;"
                        "fl.set_num_threads(1); fl.set_num_threads(None);"
                        "print(core.threads_explicit(), core.call_threads())"],
                       env=dict(env, FASTLOG_NUM_THREADS="2"), capture_output=True, text=True, timeout=120)
    assert r.stdout.split() == ["True", "2"], r.stderr


def test_bce_sum_bits_do_not_depend_on_thread_count(threads):
    """The loss sum over more than 65,536 elements is chunked by size, not by
    thread count (one thread used to sum it in a different order)."""
    rng = np.random.default_rng(6)
    x = rng.standard_normal((300, 1000))
    y = (rng.random((300, 1000)) > 0.5).astype(np.float64)
    got = []
    for n in (1, 2, 3):
        threads(n)
        got.append([np.asarray(a).tobytes() for a in fl.binary_cross_entropy_with_logits_and_grad(x, y)])
    assert got[0] == got[1] == got[2]
