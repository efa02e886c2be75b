"""Capture the outputs of every kernel family, to show that a change leaves them bit-identical.

    python scripts/capture.py save BEFORE.npz          # on the old build
    python scripts/capture.py save AFTER.npz           # on the new build
    python scripts/capture.py compare BEFORE.npz AFTER.npz [-v]

Each ISA level this CPU runs is captured in its own process (``FASTLOG_ISA``), so the file holds
every compiled path.  The inputs come from a fixed seed: ordinary logits, large offsets, rows near
the float64 limits, non-finite entries, short rows (the 64-class path) and long rows, K-dim inputs,
weights, ignore_index and label smoothing, float32 / float64 / bfloat16 / float16.  ``compare``
lists every array whose bytes differ, with the largest difference in units of the last place.
"""
import os
import subprocess
import sys

import numpy as np


def _cases(rng):
    """(name, callable) pairs; each callable returns an array or a tuple of arrays."""
    import fastlog
    from fastlog import _half

    bf16 = _half.bfloat16()
    dtypes = [np.float32, np.float64, np.float16] + ([bf16] if bf16 is not None else [])
    shapes = [(7, 3), (33, 10), (5, 64), (6, 65), (9, 1000), (3, 4099)]
    cases = []

    def logits(shape, dt, kind):
        x = rng.standard_normal(shape) * 3
        if kind == "offset":
            x += 1e4
        elif kind == "limit":
            x = x * (1e307 if dt == np.float64 else 1e37)
            x[:, 0] = np.finfo(np.float64).max if dt == np.float64 else 3e38
            x[:, -1] = -x[:, 0]
        elif kind == "nonfinite":
            x[0, 1] = np.inf
            x[1 % shape[0], 0] = np.nan
            x[-1, :] = -np.inf
        return x.astype(dt)

    for dt in dtypes:
        dn = np.dtype(dt).name
        half = _half.is_half(np.dtype(dt))
        for shape in shapes:
            N, C = shape
            kinds = ("plain", "offset", "nonfinite") + (() if half else ("limit",))
            for kind in kinds:
                x = logits(shape, dt, kind)
                t = rng.integers(0, C, N)
                t[N // 2] = -100
                w = (rng.random(C) + 0.5).astype(np.float32 if half else dt)
                p = rng.random(shape)
                p = (p / p.sum(1, keepdims=True)).astype(dt)
                key = f"{dn}/{N}x{C}/{kind}"
                for op in ("log_softmax", "softmax", "logsumexp"):
                    cases.append((f"{op}/{key}", lambda f=getattr(fastlog, op), x=x: f(x, axis=1)))
                go = logits(shape, dt, "plain")
                y = fastlog.log_softmax(logits(shape, dt, "plain"), axis=1)
                cases.append((f"log_softmax_backward/{key}",
                              lambda go=go, y=y: fastlog.log_softmax_backward(go, y, axis=1)))
                ys = fastlog.softmax(logits(shape, dt, "plain"), axis=1)
                cases.append((f"softmax_backward/{key}",
                              lambda go=go, y=ys: fastlog.softmax_backward(go, y, axis=1)))
                for red in ("none", "mean", "sum"):
                    for eps in (0.0, 0.1):
                        for ww in (None, w):
                            tag = f"{key}/{red}/eps{eps}/{'w' if ww is not None else 'nw'}"
                            cases.append((f"ce_index/{tag}", lambda x=x, t=t, ww=ww, red=red, eps=eps:
                                          fastlog.cross_entropy_and_grad(x, t, ww, reduction=red,
                                                                         label_smoothing=eps)))
                            cases.append((f"ce_prob/{tag}", lambda x=x, p=p, ww=ww, red=red, eps=eps:
                                          fastlog.cross_entropy_and_grad(x, p, ww, reduction=red,
                                                                         label_smoothing=eps)))
                        if not half:
                            cases.append((f"nll/{key}/{red}", lambda x=x, t=t, w=w, red=red:
                                          fastlog.nll_loss_and_grad(x, t, w, reduction=red)))
                    yb = rng.random(shape).astype(dt)
                    cases.append((f"bce/{key}/{red}", lambda x=x, yb=yb, red=red:
                                  fastlog.binary_cross_entropy_with_logits_and_grad(x, yb, reduction=red)))
                    if not half:
                        cases.append((f"kl_div/{key}/{red}", lambda x=x, p=p, red=red:
                                      fastlog.kl_div(fastlog.log_softmax(x, axis=1), p, reduction=red)))
        if not half:
            # K-dim inputs, and fused linear + cross-entropy
            x = logits((4, 5, 3, 2), dt, "plain")
            t = rng.integers(0, 5, (4, 3, 2))
            cases.append((f"ce_kdim/{dn}", lambda x=x, t=t: fastlog.cross_entropy_and_grad(
                x, t, label_smoothing=0.05)))
            h = rng.standard_normal((300, 24)).astype(dt)
            W = rng.standard_normal((1500, 24)).astype(dt)
            b = rng.standard_normal(1500).astype(dt)
            tl = rng.integers(0, 1500, 300)
            tl[3] = -100
            for eps in (0.0, 0.1):
                cases.append((f"linear_ce/{dn}/eps{eps}", lambda h=h, W=W, b=b, tl=tl, eps=eps:
                              fastlog.linear_cross_entropy_and_grad(h, W, tl, b, label_smoothing=eps,
                                                                    z_loss=1e-4, chunk_size=128)))
            X = rng.standard_normal((96, 784)).astype(dt)
            yl = rng.integers(0, 10, 96)

            def mlp(dt=dt, X=X, yl=yl):
                m = fastlog.MLP((784, 128, 64, 10), dtype=dt, seed=0)
                m.train_step(X, yl, lr=0.05, momentum=0.9)
                return (m.predict_log_proba(X),) + tuple(m.parameters())
            cases.append((f"mlp/{dn}", mlp))
    return cases


def _flatten(value):
    if isinstance(value, tuple):
        return [a for v in value for a in _flatten(v)]
    if value is None:
        return []
    return [np.asarray(value)]


def _save_level(path):
    import fastlog
    from fastlog._dispatch import core

    out = {}
    with fastlog.num_threads(2):
        for name, fn in _cases(np.random.default_rng(20261206)):
            with np.errstate(all="ignore"):
                for k, a in enumerate(_flatten(fn())):
                    out[f"{core.ISA}/{name}/{k}"] = a
    np.savez_compressed(path, **out)
    print(f"{core.ISA}: {len(out)} arrays")


def save(path):
    levels = subprocess.run([sys.executable, "-c", "import fastlog._dispatch as d;"
                             "print(' '.join(d.supported_levels()))"],
                            capture_output=True, text=True, check=True).stdout.split()
    parts = []
    for lv in levels:
        part = f"{path}.{lv}.npz"
        subprocess.run([sys.executable, __file__, "_level", part], check=True,
                       env=dict(os.environ, FASTLOG_ISA=lv))
        parts.append(part)
    merged = {}
    for part in parts:
        with np.load(part) as f:
            merged.update({k: f[k] for k in f.files})
        os.remove(part)
    np.savez_compressed(path, **merged)
    print(f"{path}: {len(merged)} arrays, levels {', '.join(levels)}")


def _as_float(a, key):
    """The captured values as float64 (bfloat16 is stored as 2-byte void by np.savez)."""
    if a.dtype.kind == "V" and a.dtype.itemsize == 2:
        bits = a.view(np.uint16).astype(np.uint32) << 16
        return bits.view(np.float32).astype(np.float64)
    return a.astype(np.float64)


def _ulps(a, b, key):
    """The largest difference between finite values, in units of the last place of the
    stored dtype; inf where one side is finite and the other not."""
    af, bf = _as_float(a, key), _as_float(b, key)
    one_nonfinite = np.isfinite(af) != np.isfinite(bf)
    if one_nonfinite.any():
        return float("inf")
    fin = np.isfinite(af)
    if not fin.any():
        return 0.0
    if a.dtype.kind == "V":
        sp = np.spacing(np.abs(bf[fin]).astype(np.float32)) * 2.0**16
    else:
        sp = np.spacing(np.abs(bf[fin]).astype(a.dtype)).astype(np.float64)
    return float(np.max(np.abs(af[fin] - bf[fin]) / sp))


def _same_nan_aside(a, b, key):
    """Equal values, where any NaN equals any NaN (sign and payload aside)."""
    af, bf = _as_float(a, key), _as_float(b, key)
    return np.array_equal(af, bf, equal_nan=True) and np.array_equal(np.signbit(af) | np.isnan(af),
                                                                      np.signbit(bf) | np.isnan(bf))


def compare(before, after, verbose=False):
    """Print which arrays differ; NaNs that differ only in sign or payload (which IEEE
    arithmetic leaves to the operand order the compiler picked) are counted apart."""
    with np.load(before) as fb, np.load(after) as fa:
        kb, ka = set(fb.files), set(fa.files)
        missing, added = sorted(kb - ka), sorted(ka - kb)
        diff, nan_only = [], []
        for k in sorted(kb & ka):
            a, b = fb[k], fa[k]
            if a.shape != b.shape or a.dtype != b.dtype:
                diff.append((k, "shape/dtype"))
            elif a.tobytes() != b.tobytes():
                if _same_nan_aside(a, b, k):
                    nan_only.append(k)
                else:
                    diff.append((k, f"max {_ulps(a, b, k):.3g} ulp"))
    for k in missing:
        print(f"only in {before}: {k}")
    for k in added:
        print(f"only in {after}: {k}")
    for k, what in diff:
        print(f"DIFFERS {k}: {what}")
    if verbose:
        for k in nan_only:
            print(f"NaN bits {k}")
    n = len(kb & ka)
    print(f"{n - len(diff) - len(nan_only)} of {n} arrays bit-identical; {len(nan_only)} differ only in "
          f"the sign/payload of NaNs; {len(diff)} differ in value; {len(missing)} missing, {len(added)} new")
    return 1 if diff or missing else 0


if __name__ == "__main__":
    cmd = sys.argv[1] if len(sys.argv) > 1 else ""
    if cmd == "save" and len(sys.argv) == 3:
        save(sys.argv[2])
    elif cmd == "_level":
        _save_level(sys.argv[2])
    elif cmd == "compare" and len(sys.argv) in (4, 5):
        sys.exit(compare(sys.argv[2], sys.argv[3], verbose=sys.argv[4:] == ["-v"]))
    else:
        sys.exit(__doc__)
