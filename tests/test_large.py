"""Opt-in: arrays of more than 2**31 elements (FASTLOG_LARGE=1).

Each test holds ONE float32 array of 2**31 + a few elements (8.6 GB) and works
in place (``out=`` the input), so the peak is that array plus small blocks.
The values are a cheap function of the flat index, so the float64 reference is
recomputed block by block without a second copy.  Skipped unless
FASTLOG_LARGE=1 and /proc/meminfo shows enough available memory.
"""
import math
import os

import numpy as np
import pytest

import fastlog

BIG = 2**31 + 7
BLOCK = 1 << 24
NEED = BIG * 4 + (2 << 30)   # the array plus headroom

pytestmark = pytest.mark.skipif(os.environ.get("FASTLOG_LARGE") != "1",
                                reason="opt-in: FASTLOG_LARGE=1 (needs ~11 GB of memory)")


def _available():
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


@pytest.fixture(autouse=True)
def _memory():
    if _available() < NEED:
        pytest.skip(f"needs {NEED / 2**30:.1f} GiB available, have {_available() / 2**30:.1f}")


def _values(lo, hi):
    """float64 values at flat indices [lo, hi): a scrambled pattern in [-8, 8)."""
    i = np.arange(lo, hi, dtype=np.uint64)
    return ((i * np.uint64(2654435761)) % np.uint64(65536)).astype(np.float64) / 4096.0 - 8.0


def _fill(a):
    flat = a.reshape(-1)
    for lo in range(0, flat.size, BLOCK):
        hi = min(lo + BLOCK, flat.size)
        flat[lo:hi] = _values(lo, hi)


def test_log_softmax_one_row_over_2_31_in_place():
    x = np.empty(BIG, np.float32)
    _fill(x)
    # float64 reference logsumexp of the float32 values, in blocks
    m = -math.inf
    for lo in range(0, BIG, BLOCK):
        m = max(m, float(x[lo:lo + BLOCK].max()))
    s = 0.0
    for lo in range(0, BIG, BLOCK):
        s += float(np.exp(x[lo:lo + BLOCK].astype(np.float64) - m).sum())
    lse = m + math.log(s)
    got_lse = fastlog.logsumexp(x)
    assert abs(float(got_lse) - lse) <= 4 * np.finfo(np.float32).eps * abs(lse)
    r = fastlog.log_softmax(x, out=x)
    assert r is x
    worst = 0.0
    for lo in range(0, BIG, BLOCK):
        hi = min(lo + BLOCK, BIG)
        ref = _values(lo, hi).astype(np.float32).astype(np.float64) - lse
        worst = max(worst, float(np.abs(x[lo:hi] - ref).max()))
    # float32 result of magnitude ~|lse|: a few ULPs of it
    assert worst <= 4 * np.finfo(np.float32).eps * (abs(lse) + 8), worst


def test_cross_entropy_n_times_c_over_2_31_in_place():
    C = 512
    Nr = BIG // C + 1                      # N * C = 2**31 + 512
    x = np.empty((Nr, C), np.float32)
    _fill(x)
    rng = np.random.default_rng(0)
    t = rng.integers(0, C, Nr)
    t[::97] = -100                         # some ignored rows
    loss, g = fastlog.cross_entropy_and_grad(x, t, reduction="sum", out=x)
    assert g is x
    rows = BLOCK // C
    total = 0.0
    worst = 0.0
    for r0 in range(0, Nr, rows):
        r1 = min(r0 + rows, Nr)
        xb = _values(r0 * C, r1 * C).astype(np.float32).astype(np.float64).reshape(-1, C)
        tb = t[r0:r1]
        m = xb.max(axis=1, keepdims=True)
        e = np.exp(xb - m)
        se = e.sum(axis=1, keepdims=True)
        keep = tb != -100
        lse = (m + np.log(se))[:, 0]
        idx = np.where(keep, tb, 0)
        total += float(((lse - xb[np.arange(r1 - r0), idx]) * keep).sum())
        ref_g = e / se
        ref_g[np.arange(r1 - r0), idx] -= 1.0
        ref_g[~keep] = 0.0
        worst = max(worst, float(np.abs(g[r0:r1] - ref_g).max()))
    assert worst <= 1e-6, worst
    assert abs(float(loss) - total) <= 1e-5 * abs(total), (float(loss), total)
