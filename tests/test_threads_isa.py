"""Determinism across thread counts, and every ISA build against the oracle.

Every test here runs at every ISA level this CPU supports, in this process
(the isa_level fixture of conftest.py); FASTLOG_ISA, which picks the level at
import, is checked in subprocesses.
"""
import os
import subprocess
import sys

import numpy as np
import pytest
import scipy.special as sp

import fastlog as fl
from fastlog import _reference as ref
from fastlog._dispatch import LEVELS, OLD_NAMES, core, supported_levels

SRC = os.path.abspath(os.path.join(os.path.dirname(fl.__file__), os.pardir))


def _env(**extra):
    e = dict(os.environ)
    e["PYTHONPATH"] = SRC + os.pathsep + e.get("PYTHONPATH", "")
    e.pop("FASTLOG_ISA", None)
    e.pop("FASTLOG_NUM_THREADS", None)
    e.update(extra)
    return e


# ------------------------------------------------------------- threads --
def _calls(x, t, p, g):
    """(name, thunk) for every threaded entry point on the same data (the
    transposing axis=0 call and the element-wise BCE only for shorter rows,
    to keep the test fast)."""
    short = x.shape[1] <= 1000
    w = np.linspace(0.5, 1.5, x.shape[1]).astype(x.dtype)
    y = fl.log_softmax(x, axis=-1)
    s = fl.softmax(x, axis=-1)
    calls = [
        ("log_softmax", lambda: fl.log_softmax(x, axis=-1)),
        ("softmax", lambda: fl.softmax(x, axis=-1)),
        ("logsumexp", lambda: fl.logsumexp(x, axis=-1)),
        ("logsumexp all", lambda: fl.logsumexp(x)),
        ("log_softmax_backward", lambda: fl.log_softmax_backward(g, y, axis=-1)),
        ("softmax_backward", lambda: fl.softmax_backward(g, s, axis=-1)),
        ("nll", lambda: fl.nll_loss_and_grad(y, t, weight=w)),
        ("ce smoothing weight", lambda: fl.cross_entropy_and_grad(x, t, weight=w, ignore_index=3,
                                                                  label_smoothing=0.1)),
        ("ce prob", lambda: fl.cross_entropy_and_grad(x, p, label_smoothing=0.05)),
        ("ce out=input", lambda: fl.cross_entropy_and_grad(x.copy(), t, reduction="sum")),
    ]
    calls += [(f"ce {red}", lambda red=red: fl.cross_entropy_and_grad(x, t, reduction=red))
              for red in ("mean", "none")]
    if short:
        calls += [("log_softmax axis=0", lambda: fl.log_softmax(x, axis=0)),
                  ("bce", lambda: fl.binary_cross_entropy_with_logits_and_grad(x, p))]
    return calls


def _bytes(r):
    return [np.asarray(v).tobytes() for v in (r if isinstance(r, tuple) else (r,))]


# The small shapes still split into several chunks (more than 65,536 elements:
# threaded), cheap enough for an emulated CPU (scripts/cross_aarch64.sh runs
# only them).
@pytest.mark.parametrize("shape", [(4096, 1000), (300, 40000), (512, 200), (4, 40000)],
                         ids=["4096x1000", "300x40000", "small-512x200", "small-4x40000"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_bit_identical_for_any_thread_count(shape, dtype, threads):
    assert fl.config()["openmp"], "this build has no OpenMP: the thread test would prove nothing"
    rng = np.random.default_rng(30)
    x = (rng.standard_normal(shape) * 4).astype(dtype)
    x[::7, ::5] = -np.inf
    t = rng.integers(0, shape[1], shape[0])
    t[::11] = 3
    p = rng.random(shape).astype(dtype)
    p /= p.sum(axis=1, keepdims=True)
    g = rng.standard_normal(shape).astype(dtype)
    for name, f in _calls(x, t, p, g):
        threads(1)
        one = _bytes(f())
        threads(2)
        assert fl.get_num_threads() == 2
        two = _bytes(f())
        assert one == two, f"{name} differs between 1 and 2 threads"


def test_threaded_result_is_right(threads):
    """The multi-threaded path (large input, 2 threads) against the reference."""
    threads(2)
    rng = np.random.default_rng(31)
    x = rng.standard_normal((2048, 300)) * 3
    t = rng.integers(0, 300, 2048)
    loss, g = fl.cross_entropy_and_grad(x, t, label_smoothing=0.1)
    rl, rg = ref.cross_entropy_and_grad(x, t, label_smoothing=0.1)
    np.testing.assert_allclose(loss, rl, rtol=1e-13)
    np.testing.assert_allclose(g, rg, rtol=1e-10, atol=1e-18)
    np.testing.assert_allclose(fl.log_softmax(x, axis=1), sp.log_softmax(x, axis=1), rtol=1e-14, atol=1e-14)


def test_num_threads_context_manager(threads):
    threads(2)
    with fl.num_threads(1) as ctx:
        assert fl.get_num_threads() == 1
        assert ctx.old == 2
    assert fl.get_num_threads() == 2
    with pytest.raises(RuntimeError):
        with fl.num_threads(1):
            raise RuntimeError("inside")
    assert fl.get_num_threads() == 2


@pytest.mark.one_isa_level
def test_fastlog_num_threads_env():
    code = "import fastlog; print(fastlog.get_num_threads())"
    r = subprocess.run([sys.executable, "-c", code], env=_env(FASTLOG_NUM_THREADS="3"),
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "3"


# ----------------------------------------------------------------- ISA --
def test_the_fixture_runs_the_level_it_names(isa_level):
    assert core.ISA == isa_level == fl.config()["isa"]
    assert core.targets[isa_level].isa == isa_level
    assert fl.config()["isa_supported"] == supported_levels()


@pytest.mark.one_isa_level
def test_targets_list_every_compiled_level():
    """As numpy._core._simd.targets: every compiled level, None where the CPU lacks it."""
    assert list(core.targets) == list(core.built_levels())
    assert set(core.built_levels()) <= set(LEVELS) and LEVELS[0] in core.built_levels()
    for lv, k in core.targets.items():
        assert (k is not None) == (lv in supported_levels()) == (core.cpu_has(lv) or lv == LEVELS[0])


@pytest.mark.one_isa_level
@pytest.mark.parametrize("value", sorted({LEVELS[0], "BASELINE", supported_levels()[-1]}))
def test_fastlog_isa_env_selects_the_level(value):
    code = "import fastlog; from fastlog._dispatch import core; print(fastlog.config()['isa'], core.ISA)"
    r = subprocess.run([sys.executable, "-c", code], env=_env(FASTLOG_ISA=value),
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    want = OLD_NAMES.get(value.lower(), value)
    assert r.stdout.split() == [want, want]


def test_every_isa_level_matches_the_oracle(isa_level):
    rng = np.random.default_rng(40)
    for dt in ("float32", "float64"):
        x = (rng.standard_normal((64, 37)) * 5).astype(dt)
        x[::5, ::4] = -np.inf
        x[3] += 1e6 if dt == "float64" else 1e4
        t = rng.integers(0, 37, 64)
        p = rng.random((64, 37)).astype(dt)
        e = np.linspace(-100, 80, 1001).astype(dt)
        ex, lg = np.empty_like(e), np.empty_like(e)
        core.exp_array(e, ex)
        core.log_array(np.abs(e) + np.asarray(1e-3, dt), lg)
        eps = float(np.finfo(dt).eps)
        big = 1e6 if dt == "float64" else 1e4

        def close(ours, want, rtol, atol, what):
            np.testing.assert_allclose(ours, want, rtol=rtol, atol=atol, err_msg=f"{isa_level} {dt} {what}")

        x64 = x.astype(np.float64)
        with np.errstate(invalid="ignore"):
            close(fl.log_softmax(x, axis=1), sp.log_softmax(x64, axis=1), 0, 8 * eps * big, "log_softmax")
            close(fl.softmax(x, axis=0), sp.softmax(x64, axis=0), 8 * eps, 1e-300, "softmax")
            close(fl.logsumexp(x, axis=1), sp.logsumexp(x64, axis=1), 8 * eps, 0, "logsumexp")
        ol, og = fl.cross_entropy_and_grad(x, t, reduction="none", label_smoothing=0.1)
        rl, rg = ref.cross_entropy_and_grad(x, t, reduction="none", label_smoothing=0.1)
        fin = np.isfinite(rl)
        assert np.array_equal(fin, np.isfinite(ol))
        close(ol[fin], rl[fin], 16 * eps, 16 * eps, "cross_entropy")
        close(og[fin], rg[fin], 16 * eps, 16 * eps, "cross_entropy grad")
        pn = p / p.sum(1, keepdims=True)
        ol, _ = fl.cross_entropy_and_grad(x, pn, reduction="none")
        rl, _ = ref.cross_entropy_and_grad(x, pn, reduction="none")
        fin = np.isfinite(rl)
        close(ol[fin], rl[fin], 16 * eps, 16 * eps, "cross_entropy (probabilities)")
        rl, _ = ref.binary_cross_entropy_with_logits_and_grad(x[:, 1:3], p[:, 1:3], reduction="none")
        close(fl.binary_cross_entropy_with_logits(x[:, 1:3], p[:, 1:3], reduction="none"), rl,
              16 * eps, 16 * eps, "bce")
        close(ex, np.exp(e.astype(np.float64)), 2 * eps, float(np.finfo(dt).smallest_subnormal), "exp")
        close(lg, np.log((np.abs(e) + np.asarray(1e-3, dt)).astype(np.float64)), 2 * eps, 0, "log")
