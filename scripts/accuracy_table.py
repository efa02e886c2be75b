"""Measure the accuracy tables of the documentation: errors in ULPs against mpmath, fastlog next to
SciPy and PyTorch on the same inputs.

    python scripts/accuracy_table.py                              # print the Markdown
    python scripts/accuracy_table.py --out docs/guide/accuracy_table.md

For each input family (below) and dtype, every library computes log_softmax, softmax and
logsumexp over the last axis, and the mean cross-entropy and its gradient with respect to the
logits (fastlog's fused ``cross_entropy_and_grad``; PyTorch's ``F.cross_entropy`` +
``backward()``).  The reference is computed from the very same (already rounded) input values
with mpmath at 40 significant digits, so the figures are the libraries' own errors, not the
inputs' rounding.  An error is ``|result - exact| / ulp(exact)``, the spacing of the output dtype
at the exact value; the table shows the largest over every element of the family.

Needs mpmath, scipy and torch (``pip install torch==2.13.0``); bfloat16 rows need ml_dtypes.
SciPy computes half-precision input in the half type itself, PyTorch and fastlog in float32.
Takes about a minute on one core (mpmath).
"""
import argparse
import datetime
import platform
import sys
import time

import numpy as np


def families(rng):
    """{name: (float64 logits, int64 targets, description)}; each is rounded to the dtype later."""
    out = {}
    x = rng.standard_normal((64, 1000))
    out["normal"] = (x, rng.integers(0, 1000, 64), "64 x 1000, N(0, 1)")
    out["wide"] = (30 * rng.standard_normal((64, 1000)), rng.integers(0, 1000, 64),
                   "64 x 1000, N(0, 30^2): a few logits dominate each row")
    out["offset"] = (rng.standard_normal((64, 1000)) + 1e4, rng.integers(0, 1000, 64),
                     "64 x 1000, N(0, 1) + 10^4")
    z = rng.standard_normal((64, 10))
    y = rng.integers(0, 10, 64)
    z[np.arange(64), y] += 20                               # the target's softmax is 1 - 2e-8
    out["confident"] = (z, y, "64 x 10, target logit 20 above the others (softmax of the target ~ 1 - 1e-8)")
    out["long"] = (rng.standard_normal((4, 32000)), rng.integers(0, 32000, 4), "4 x 32000, N(0, 1)")
    return out


def _split(v):
    """An mpmath value as a float64 pair (hi, lo) with hi + lo = v to about 2^-106 relative."""
    import mpmath
    hi = float(v)
    return hi, float(v - mpmath.mpf(hi))


def exact(x, y):
    """mpmath references of the rows of x (the float64 values of the rounded inputs): log_softmax,
    softmax, logsumexp, the mean cross-entropy and its gradient, each as a pair of float64 arrays
    (hi, lo) whose sum is the exact value (so that float64 results are measured against more than
    a float64)."""
    import mpmath

    mpmath.mp.dps = 40
    N, C = x.shape
    out = {op: (np.empty(shape), np.empty(shape)) for op, shape in (
        ("log_softmax", (N, C)), ("softmax", (N, C)), ("logsumexp", (N,)), ("cross_entropy grad", (N, C)))}
    loss = mpmath.mpf(0)

    def put(op, idx, v):
        out[op][0][idx], out[op][1][idx] = _split(v)

    for i in range(N):
        row = [mpmath.mpf(float(v)) for v in x[i]]
        m = max(row)
        s = mpmath.fsum(mpmath.exp(v - m) for v in row)
        L = m + mpmath.log(s)
        put("logsumexp", i, L)
        for j, v in enumerate(row):
            ls = v - L
            p = mpmath.exp(ls)
            put("log_softmax", (i, j), ls)
            put("softmax", (i, j), p)
            put("cross_entropy grad", (i, j), (p - (1 if j == y[i] else 0)) / N)
        loss += L - row[y[i]]
    hi, lo = _split(loss / N)
    out["cross_entropy"] = (np.array(hi), np.array(lo))
    return out


def ulps(got, ref, dtype):
    """Largest |got - exact| / ulp(exact) in `dtype`; `ref` = (hi, lo) float64 arrays summing to the exact
    value."""
    got = np.asarray(got, np.float64)
    hi, lo = ref
    if not np.all(np.isfinite(got)):
        return np.inf
    err = np.abs((got - hi) - lo)          # got - hi is exact wherever the two are close
    sp = np.spacing(np.abs(hi).astype(dtype)).astype(np.float64)
    sp = np.where(sp > 0, sp, float(np.finfo(dtype).smallest_subnormal))
    return float(np.max(err / sp))


def run_fastlog(x, y):
    import fastlog
    loss, grad = fastlog.cross_entropy_and_grad(x, y)
    return {"log_softmax": fastlog.log_softmax(x, axis=-1), "softmax": fastlog.softmax(x, axis=-1),
            "logsumexp": fastlog.logsumexp(x, axis=-1), "cross_entropy": loss, "cross_entropy grad": grad}


def run_scipy(x, y):
    import scipy.special as sp
    return {"log_softmax": sp.log_softmax(x, axis=-1), "softmax": sp.softmax(x, axis=-1),
            "logsumexp": sp.logsumexp(x, axis=-1)}


def run_torch(x, y, dtype_name):
    import torch
    import torch.nn.functional as F
    t = torch.from_numpy(np.asarray(x, np.float32) if dtype_name == "bfloat16" else x)
    if dtype_name == "bfloat16":
        t = t.to(torch.bfloat16)
    t = t.clone().requires_grad_(True)
    target = torch.from_numpy(y)
    loss = F.cross_entropy(t, target)
    loss.backward()
    as_np = (lambda v: v.detach().float().numpy()) if dtype_name == "bfloat16" else (lambda v: v.detach().numpy())
    with torch.no_grad():
        return {"log_softmax": as_np(F.log_softmax(t, dim=-1)), "softmax": as_np(F.softmax(t, dim=-1)),
                "logsumexp": as_np(torch.logsumexp(t, dim=-1)), "cross_entropy": as_np(loss),
                "cross_entropy grad": as_np(t.grad)}


OPS = ("log_softmax", "softmax", "logsumexp", "cross_entropy", "cross_entropy grad")


def measure(dtype_names, seed=0):
    rng = np.random.default_rng(seed)
    fams = families(rng)
    rows = []
    for dn in dtype_names:
        if dn == "bfloat16":
            import ml_dtypes
            dtype = np.dtype(ml_dtypes.bfloat16)
        else:
            dtype = np.dtype(dn)
        for fname, (x64, y, _) in fams.items():
            x = x64.astype(dtype)
            ref = exact(x.astype(np.float64), y)
            results = {"fastlog": run_fastlog(x, y), "torch": run_torch(x, y, dn)}
            if dn != "bfloat16":
                results["scipy"] = run_scipy(x, y)
            for op in OPS:
                # Every error is in ULPs of the input dtype (a reduced loss of a half input is a
                # float32 in fastlog, the input's dtype in PyTorch: the same yardstick for both).
                cells = {lib: ulps(res[op], ref[op], dtype) for lib, res in results.items() if op in res}
                rows.append((dn, op, fname, cells))
    return rows, {k: v[2] for k, v in fams.items()}


def fmt(v):
    if v is None:
        return "-"
    if not np.isfinite(v):
        return "inf/nan"
    return f"{v:.2f}" if v < 10 else f"{v:.0f}" if v < 1e6 else f"{v:.1e}"


def markdown(rows, described, command, elapsed):
    import scipy
    import torch

    import fastlog
    cfg = fastlog.config()
    out = [f"<!-- generated by `{command}`; do not edit -->", "",
           f"Measured {datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d} by `{command}` ({elapsed:.0f} s): "
           f"fastlog {fastlog.__version__} ({cfg['isa']} build), SciPy {scipy.__version__}, "
           f"PyTorch {torch.__version__}, NumPy {np.__version__}, {platform.machine()}.  Largest error over "
           f"every element, in units in the last place (ULPs) of the input dtype at the exact value; "
           f"reference: mpmath at 40 digits on the same rounded inputs.", "",
           "Input families: " + "; ".join(f"**{k}**: {v}" for k, v in described.items()) + ".", ""]
    for dn in dict.fromkeys(r[0] for r in rows):
        libs = ["fastlog", "scipy", "torch"] if dn != "bfloat16" else ["fastlog", "torch"]
        names = {"fastlog": "fastlog", "scipy": "SciPy", "torch": "PyTorch"}
        out += [f"**{dn}**", "", "| operation | input | " + " | ".join(names[lb] for lb in libs) + " |",
                "|:---|:---|" + "---:|" * len(libs)]
        for d, op, fname, cells in rows:
            if d == dn:
                out.append(f"| {op} | {fname} | " + " | ".join(fmt(cells.get(lb)) for lb in libs) + " |")
        out.append("")
    return "\n".join(out)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--dtypes", default="float32,float64,float16,bfloat16")
    ap.add_argument("--out", help="write the Markdown here (default: print it)")
    args = ap.parse_args(argv)
    import fastlog
    import torch
    torch.set_num_threads(1)
    fastlog.set_num_threads(1)
    t0 = time.perf_counter()
    rows, described = measure(args.dtypes.split(","))
    command = "python scripts/accuracy_table.py" + (f" --out {args.out}" if args.out else "")
    text = markdown(rows, described, command, time.perf_counter() - t0)
    if args.out:
        with open(args.out, "w") as f:
            f.write(text)
        print(f"wrote {args.out}")
    else:
        print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
