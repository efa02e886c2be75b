"""Shared fixtures and array generators for the tests of fastlog's core NumPy API.

The generator follows bottleneck's idea: one stream of awkward arrays (nan/inf
mixes, empty and 0-d shapes, huge offsets, ties, every memory layout,
byte-swapped) feeds every equivalence test against an oracle, and a test fails
when only one side raises.
"""
import itertools
import math

import numpy as np
import pytest

import fastlog

DTYPES = (np.float32, np.float64)

# Shapes: 0-d, empty, 1-D, rows, 3-D/4-D.
SHAPES = [(), (0,), (1,), (7,), (0, 3), (3, 0), (1, 1), (2, 3), (5, 17), (33, 9),
          (3, 1, 4), (2, 3, 5), (2, 3, 4, 2)]


def tol(dtype):
    """A few ULPs of `dtype` (the unit of every tolerance in these tests)."""
    return float(np.finfo(dtype).eps)


# ------------------------------------------------------------ values --
def _fill(rng, shape, kind, dtype):
    """Values of one `kind` for an array of `shape`."""
    n = int(np.prod(shape, dtype=np.int64))
    if kind == "normal":
        v = rng.standard_normal(n) * 3
    elif kind == "wide":           # magnitudes up to 1e30 (logits that overflow exp)
        v = rng.standard_normal(n) * 10.0 ** rng.integers(0, 31, n)
    elif kind == "offset":         # a huge common offset: only the shift keeps it finite
        v = rng.standard_normal(n) * 5 + 1e30 * (1 if rng.random() < 0.5 else -1)
    elif kind == "big":            # beyond float32 exp range, ordinary otherwise
        v = rng.standard_normal(n) * 5 + 500
    elif kind == "ties":           # many equal maxima
        v = rng.integers(-2, 3, n).astype(np.float64)
    elif kind == "neginf":         # -inf masks mixed with finite values
        v = rng.standard_normal(n)
        v[rng.random(n) < 0.4] = -np.inf
    elif kind == "allneginf":
        v = np.full(n, -np.inf)
    elif kind == "posinf":
        v = rng.standard_normal(n)
        v[rng.random(n) < 0.2] = np.inf
    elif kind == "nan":
        v = rng.standard_normal(n)
        v[rng.random(n) < 0.2] = np.nan
    elif kind == "mix":            # everything at once
        v = rng.standard_normal(n) * 10
        r = rng.random(n)
        v[r < 0.1] = np.nan
        v[(r >= 0.1) & (r < 0.2)] = np.inf
        v[(r >= 0.2) & (r < 0.4)] = -np.inf
    elif kind == "tiny":           # subnormal-scale differences
        v = rng.standard_normal(n) * 1e-40
    else:  # pragma: no cover
        raise ValueError(kind)
    with np.errstate(over="ignore"):
        return v.astype(dtype).reshape(shape)


VALUE_KINDS = ("normal", "wide", "offset", "big", "ties", "neginf", "allneginf", "posinf",
               "nan", "mix", "tiny")


# ----------------------------------------------------------- layouts --
def layouts(a):
    """(name, view) pairs: the same values as `a` in different memory layouts.

    Every view compares equal to `a` element by element; none is a C-contiguous
    native-endian copy except the first.
    """
    out = [("C", a)]
    if a.ndim >= 2:
        out.append(("F", np.asfortranarray(a)))
        out.append(("T.T", np.ascontiguousarray(a.T).T))
    if a.ndim >= 1:
        rev = np.ascontiguousarray(a[::-1])
        out.append(("negstride", rev[::-1]))
        big = np.zeros(a.shape[:-1] + (2 * a.shape[-1] + 1,), a.dtype)
        big[..., 1::2] = a
        out.append(("strided", big[..., 1::2]))
    sw = a.astype(a.dtype.newbyteorder(), copy=True)
    out.append(("byteswapped", sw))
    for _, v in out:
        assert v.shape == a.shape
    return out


def gen_arrays(seed=0, dtypes=DTYPES, shapes=SHAPES, kinds=VALUE_KINDS, with_layouts=True):
    """Yield (description, array) for every dtype x shape x value kind (x layout)."""
    rng = np.random.default_rng(seed)
    for dtype, shape, kind in itertools.product(dtypes, shapes, kinds):
        a = _fill(rng, shape, kind, dtype)
        if with_layouts:
            for lname, v in layouts(a):
                yield f"{np.dtype(dtype).name}-{shape}-{kind}-{lname}", v
        else:
            yield f"{np.dtype(dtype).name}-{shape}-{kind}", a


def axes_for(ndim):
    """Every axis argument worth trying for an ndim-d array: None, each int
    (positive and negative), and tuples of axes (unsorted, negative)."""
    out = [None]
    if ndim == 0:
        out += [0, -1, ()]
    for ax in range(ndim):
        out += [ax, ax - ndim]
    if ndim >= 2:
        out += [(0, ndim - 1), (ndim - 1, 0), (-1, -2), tuple(range(ndim))]
    if ndim >= 3:
        out += [(0, 2), (1, -1)]
    return out


# ------------------------------------------------------- comparisons --
def call(f, *args, **kwargs):
    """(result, None) or (None, exception)."""
    try:
        return f(*args, **kwargs), None
    except Exception as e:  # noqa: BLE001 - we compare which side raised
        return None, e


def assert_close(ours, ref, rtol, atol=0.0, what=""):
    """Same shape, same nan positions, same infinities, close finite values
    (`rtol` a number or an array broadcastable to `ref`)."""
    ours = np.asarray(ours)
    ref = np.asarray(ref)
    assert ours.shape == ref.shape, f"{what}: shape {ours.shape} != {ref.shape}"
    on, rn = np.isnan(ours), np.isnan(ref)
    assert np.array_equal(on, rn), f"{what}: nan at {np.argwhere(on != rn)[:5].tolist()}"
    oi, ri = np.isinf(ours), np.isinf(ref)
    bad_inf = (oi | ri) & ~(on | rn) & (ours != ref)
    assert not bad_inf.any(), (f"{what}: infinities differ at {np.argwhere(bad_inf)[:5].tolist()}: "
                               f"{ours[bad_inf][:5]} vs {ref[bad_inf][:5]}")
    fin = np.isfinite(ref) & np.isfinite(ours)
    o = ours[fin].astype(np.float64)
    r = ref[fin].astype(np.float64)
    err = np.abs(o - r)
    if np.ndim(rtol):   # a tolerance per element
        rtol = np.broadcast_to(rtol, ref.shape)[fin]
    lim = rtol * np.abs(r) + atol
    if err.size:
        k = int(np.argmax(err - lim))
        assert err[k] <= lim[k], (f"{what}: |{o[k]!r} - {r[k]!r}| = {err[k]:.3g} > {lim[k]:.3g} "
                                  f"({int((err > lim).sum())} of {err.size} values off)")


def mp_prob_ce_rows(x, t, w=None, eps=0.0, dps=60):
    """Exact cross-entropy of each row of float64 logits `x` with class-probability
    targets `t` (class weights `w`, label smoothing `eps`), in mpmath: no overflow
    anywhere; rounded once to float64 (+-inf beyond its range).  The oracle for
    logits near the float64 limits."""
    import mpmath as mp
    x, t = np.atleast_2d(x), np.atleast_2d(t)
    C = x.shape[1]
    w = np.ones(C) if w is None else np.asarray(w, np.float64)
    big = mp.mpf(float(np.finfo(np.float64).max)) * (1 + mp.mpf(2) ** -54)   # rounds to inf
    out = []
    with mp.workdps(dps):
        for xi, ti in zip(x, t):
            v = [mp.mpf(float(a)) for a in xi]
            m = max(v)
            # terms below e^-(10 dps) of the max term change nothing at this precision (and
            # exp of -1e308 is slow to evaluate)
            ls = mp.log(mp.fsum(mp.e ** (a - m) for a in v if a - m > -10 * dps))
            li = mp.fsum(mp.mpf(float(w[c])) * ((1 - mp.mpf(eps)) * mp.mpf(float(ti[c])) + mp.mpf(eps) / C)
                         * ((m - v[c]) + ls) for c in range(C))
            out.append(math.copysign(math.inf, li) if abs(li) >= big else float(li))
    return np.array(out)


def exact_sum(terms):
    """The correctly rounded sum of float `terms` (exact rational arithmetic; +-inf
    only where the exact sum overflows float64)."""
    from fractions import Fraction
    s = sum(Fraction(float(v)) for v in terms)
    try:
        return float(s)
    except OverflowError:
        return math.inf if s > 0 else -math.inf


def same_kind_of_result(ours, ref, what=""):
    """Scalar results stay scalars, arrays stay arrays, same dtype."""
    assert isinstance(ours, np.ndarray) == isinstance(ref, np.ndarray), \
        f"{what}: type {type(ours).__name__} vs {type(ref).__name__}"
    assert np.asarray(ours).dtype == np.asarray(ref).dtype, \
        f"{what}: dtype {np.asarray(ours).dtype} vs {np.asarray(ref).dtype}"


def snapshot(*arrays):
    """Copies (with layout) of the ndarray arguments, to prove they are not mutated."""
    return [(a, a.copy(order="K")) if isinstance(a, np.ndarray) else (a, None) for a in arrays]


def assert_unchanged(snap):
    for a, c in snap:
        if c is not None:
            assert np.array_equal(a, c, equal_nan=True), "an input array was modified"


# ---------------------------------------------------------- fixtures --
@pytest.fixture(params=DTYPES, ids=lambda d: np.dtype(d).name)
def dtype(request):
    return np.dtype(request.param)


@pytest.fixture
def threads():
    """fastlog.set_num_threads for the test; afterwards the thread policy in force
    before it comes back: an explicit count stays that count, and fastlog's default
    (all cores, cut to the idle ones at each call) stays the default rather than
    becoming an explicit count."""
    from fastlog._dispatch import core
    saved = core.get_default_threads(), core.threads_explicit()
    yield fastlog.set_num_threads
    if saved[1]:
        fastlog.set_num_threads(saved[0])
    else:
        fastlog.set_num_threads(None)
    assert core.threads_explicit() == saved[1]
