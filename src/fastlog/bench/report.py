"""Reports: machine info, tables, JSON files, comparing two reports, the PNG plot."""
import datetime
import json
import os
import platform
import sys

from . import cases as _cases
from .runner import Result

__all__ = ["machine_info", "make_report", "format_report", "save_json", "load_json",
           "format_compare", "plot_report", "FORMAT"]

FORMAT = "fastlog-bench/1"


# ------------------------------------------------------------ machine info --
def _version(mod_name):
    mod = sys.modules.get(mod_name)
    if mod is None:
        try:
            mod = __import__(mod_name)
        except ImportError:
            return None
    return getattr(mod, "__version__", "?")


def _blas():
    try:
        from threadpoolctl import threadpool_info
    except ImportError:
        return []
    return sorted({f"{i.get('internal_api')} {i.get('version')}" for i in threadpool_info()
                   if i.get("user_api") == "blas"})


def usable_cores():
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def machine_info():
    """CPU model, cores, the ISA build fastlog chose, OpenMP, library versions."""
    import fastlog

    c = fastlog.config()
    return {
        "cpu": c["cpu"],
        "cores": usable_cores(),
        "platform": f"{platform.system()} {platform.machine()}",
        "fastlog": c["version"],
        "isa": c["isa"],
        "isa_supported": list(c["isa_supported"]),
        "isa_forced": os.environ.get("FASTLOG_ISA", "") or None,
        "openmp": bool(c["openmp"]),
        "python": c["python"],
        "numpy": c["numpy"],
        "scipy": _version("scipy"),
        "torch": _version("torch") if "torch" in sys.modules else _torch_version_lazy(),
        "blas": _blas(),
        "load_avg_1min": os.getloadavg()[0] if hasattr(os, "getloadavg") else None,
    }


def _torch_version_lazy():
    try:
        from importlib.metadata import version
        return version("torch")
    except Exception:
        return None


# ------------------------------------------------------------------ report --
def make_report(results, machine, bandwidth, preset, command, elapsed_s=None):
    """The JSON-able report of one run."""
    bw, bw_min, bw_max, nbytes = bandwidth
    return {
        "format": FORMAT,
        "created": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "command": command,
        "preset": preset,
        "elapsed_s": elapsed_s,
        "machine": machine,
        "bandwidth": {"bytes_per_s": bw, "min": bw_min, "max": bw_max, "nbytes": nbytes,
                      "method": "np.copyto of a large float64 array; 2 * nbytes / time (read + write)"},
        "results": [r.to_dict() for r in results],
    }


def save_json(report, path):
    with open(path, "w") as f:
        json.dump(report, f, indent=1)
        f.write("\n")


def load_json(path):
    with open(path) as f:
        rep = json.load(f)
    if not isinstance(rep, dict) or rep.get("format") != FORMAT:
        raise ValueError(f"{path} is not a fastlog-bench report (expected format {FORMAT!r})")
    return rep


def results_of(report):
    return [Result.from_dict(d) for d in report["results"]]


def fmt_ms(seconds):
    ms = seconds * 1e3
    if ms >= 100:
        return f"{ms:.0f}"
    if ms >= 10:
        return f"{ms:.1f}"
    if ms >= 1:
        return f"{ms:.2f}"
    return f"{ms:.3g}"


def fmt_ratio(r):
    return f"{r:.0f}x" if r >= 100 else f"{r:.1f}x" if r >= 10 else f"{r:.2f}x"


def _table(header, rows, out):
    widths = [max(len(str(r[i])) for r in [header] + rows) for i in range(len(header))]
    for k, r in enumerate([header] + rows):
        cells = []
        for i, (v, w) in enumerate(zip(r, widths)):
            cells.append(str(v).ljust(w) if i < 3 else str(v).rjust(w))
        out.append("  " + "  ".join(cells).rstrip())
        if k == 0:
            out.append("  " + "  ".join("-" * w for w in widths))


def floor_seconds(group, shape, dtype, bandwidth):
    """Time to move a memory-bound kernel's N x C streams once at the measured copy bandwidth."""
    g = _cases.GROUPS[group]
    if g.kind != "rows" or not g.streams or shape[1] < 1000 or not bandwidth:
        return None
    return g.streams * g.nbytes(shape, dtype) / bandwidth


def _cell(r):
    if r is None:
        return "-"
    if r.status == "ok":
        return f"{fmt_ms(r.stats.median)} ({r.stats.iqr_pct:.0f}%)"
    return {"wrong": "WRONG", "error": "ERROR", "skipped": "n/a"}[r.status]


def format_report(report, title="fastlog benchmark report"):
    """The text report: machine header, one table per operation, scaling, failures."""
    m = report["machine"]
    bw = report["bandwidth"]
    results = results_of(report)
    out = [f"{title}  ({report['created']})",
           f"command:   {report['command']}",
           f"cpu:       {m['cpu']}, {m['cores']} usable cores, {m['platform']}"
           + (f", 1-min load average {m['load_avg_1min']:.1f} at the end (this run adds about 1; "
              f"more means other processes competed)" if m.get("load_avg_1min") is not None else ""),
           f"fastlog:   {m['fastlog']}, ISA build {m['isa']}"
           f"{' (forced by FASTLOG_ISA)' if m.get('isa_forced') else ''}"
           f" (CPU supports {', '.join(m['isa_supported'])}), OpenMP {'on' if m['openmp'] else 'OFF'}",
           f"versions:  python {m['python']}, numpy {m['numpy']}, scipy {m['scipy']}, "
           f"torch {m['torch'] or 'not installed'}; BLAS {', '.join(m['blas']) or '?'}",
           f"threads:   every library pinned to the row's thread count (fastlog.set_num_threads, "
           f"threadpoolctl, torch.set_num_threads)",
           f"memory:    copy bandwidth {bw['bytes_per_s'] / 1e9:.1f} GB/s (np.copyto of "
           f"{bw['nbytes'] / 2**20:.0f} MiB, read+write; min {bw['min'] / 1e9:.1f}, max {bw['max'] / 1e9:.1f})",
           "timing:    median ms per call after warm-up; (n%) = interquartile range / median; every "
           "result is first",
           "           checked against a float64 NumPy oracle, and a wrong one is not timed",
           "speed-up:  'vs X' = X's median / fastlog's median: how many times faster fastlog is than X "
           "(< 1: slower)"]
    if report.get("elapsed_s"):
        out[1] += f"   [{report['elapsed_s']:.0f} s]"
    by_case = {}
    for r in results:
        by_case.setdefault(r.case, {})[r.library] = r
    groups = []
    for c in by_case:
        if c.group not in groups:
            groups.append(c.group)
    for gname in groups:
        g = _cases.GROUPS[gname]
        libs = [lib for lib in _cases.LIBRARIES if lib in g.impls
                and any(lib in v for c, v in by_case.items() if c.group == gname)]
        others = [lib for lib in libs if lib != "fastlog"]
        has_floor = any(floor_seconds(gname, c.shape, c.dtype, bw["bytes_per_s"])
                        for c in by_case if c.group == gname)
        header = ["shape", "dtype", "thr"] + [f"{lib} ms" for lib in libs] + [f"vs {lib}" for lib in others]
        if has_floor:
            header += ["floor ms", "x floor"]
        rows = []
        for c, libres in by_case.items():
            if c.group != gname:
                continue
            row = [c.label, c.dtype, str(c.threads)] + [_cell(libres.get(lib)) for lib in libs]
            fl = libres.get("fastlog")
            fl_ok = fl is not None and fl.status == "ok"
            for lib in others:
                o = libres.get(lib)
                row.append(fmt_ratio(o.stats.median / fl.stats.median)
                           if fl_ok and o is not None and o.status == "ok" else "-")
            if has_floor:
                fs = floor_seconds(gname, c.shape, c.dtype, bw["bytes_per_s"])
                row += [fmt_ms(fs) if fs else "-",
                        f"{fl.stats.median / fs:.2f}" if fs and fl_ok else "-"]
            rows.append(row)
        out.append("")
        out.append(f"{g.title}")
        _table(header, rows, out)
        if has_floor:
            out.append(f"  floor = {g.streams} x N*C*itemsize bytes / copy bandwidth (C >= 1000); "
                       "x floor = fraction of the floor = fastlog time / floor time (1.00 = at the memory limit)")
    out += _scaling_lines(by_case)
    out += _problem_lines(results)
    return "\n".join(out)


def _scaling_lines(by_case):
    """Speed-up from 1 thread to the largest thread count measured, per case and library."""
    rows = []
    for c, libres in by_case.items():
        if c.threads != 1:
            continue
        for c2, libres2 in by_case.items():
            if c2.data_key != c.data_key or c2.threads == 1:
                continue
            cells = []
            for lib in _cases.LIBRARIES:
                a, b = libres.get(lib), libres2.get(lib)
                if a is not None and b is not None and a.status == b.status == "ok":
                    cells.append(f"{lib} {a.stats.median / b.stats.median:.2f}x")
            if cells:
                rows.append([c.group, c.label, c.dtype, f"1 -> {c2.threads}", ", ".join(cells)])
    if not rows:
        return []
    out = ["", "thread scaling (1-thread median / n-thread median; ideal = n)"]
    _table(["operation", "shape", "dtype", "threads", "speed-up"], rows, out)
    return out


def _problem_lines(results):
    out = []
    bad = [r for r in results if r.status in ("wrong", "error")]
    if bad:
        out += ["", "FAILURES (not timed; a fast wrong answer is not a win):"]
        for r in bad:
            c = r.case
            err = f", max |error| / max|oracle| = {r.err:.3g}" if r.err is not None else ""
            out.append(f"  {r.library:8s} {c.group} {c.label} {c.dtype} {c.threads}t: "
                       f"{r.status.upper()}: {r.reason}{err}")
    skipped = {}
    for r in results:
        if r.status == "skipped":
            skipped.setdefault((r.library, r.reason), []).append(r.case.group)
    if skipped:
        out += ["", "skipped (n/a):"]
        for (lib, reason), gs in skipped.items():
            out.append(f"  {lib}: {reason} [{', '.join(dict.fromkeys(gs))}]")
    return out


# ----------------------------------------------------------------- compare --
def format_compare(old, new, threshold=0.05, libraries=None):
    """What got faster or slower from report `old` to report `new`.

    A change counts when the medians differ by more than `threshold` (a
    fraction) and the interquartile ranges do not overlap; otherwise '~'.
    Returns ``(text, counts)`` with counts of faster/slower/same rows.
    """
    def index(rep):
        return {(r.case, r.library): r for r in results_of(rep) if r.status == "ok"}

    a, b = index(old), index(new)
    keys = [k for k in b if k in a and (libraries is None or k[1] in libraries)]
    out = ["fastlog benchmark comparison",
           f"  old: {old['created']}  {old['command']}  [ISA {old['machine']['isa']}, "
           f"{old['machine']['cpu']}, fastlog {old['machine']['fastlog']}]",
           f"  new: {new['created']}  {new['command']}  [ISA {new['machine']['isa']}, "
           f"{new['machine']['cpu']}, fastlog {new['machine']['fastlog']}]",
           f"  change = new median / old median; 'faster'/'slower' when it moves by more than "
           f"{threshold:.0%} and the IQRs do not overlap"]
    if old["machine"]["cpu"] != new["machine"]["cpu"]:
        out.append("  WARNING: the two reports come from different CPUs")
    counts = {"faster": 0, "slower": 0, "same": 0}
    rows_by_group = {}
    for key in keys:
        (c, lib) = key
        ra, rb = a[key], b[key]
        ratio = rb.stats.median / ra.stats.median
        apart = rb.stats.q3 < ra.stats.q1 or rb.stats.q1 > ra.stats.q3
        if apart and ratio < 1 - threshold:
            verdict = "faster"
        elif apart and ratio > 1 + threshold:
            verdict = "slower"
        else:
            verdict = "same"
        counts[verdict] += 1
        rows_by_group.setdefault(c.group, []).append(
            [c.label, c.dtype, str(c.threads), lib, fmt_ms(ra.stats.median), fmt_ms(rb.stats.median),
             f"{ratio:.2f}", {"same": "~"}.get(verdict, verdict.upper())])
    for gname, rows in rows_by_group.items():
        out += ["", _cases.GROUPS[gname].title if gname in _cases.GROUPS else gname]
        _table(["shape", "dtype", "thr", "library", "old ms", "new ms", "change", ""], rows, out)
    only_old = sum(1 for k in a if k not in b and (libraries is None or k[1] in libraries))
    only_new = sum(1 for k in b if k not in a and (libraries is None or k[1] in libraries))
    out += ["", f"summary: {counts['faster']} faster, {counts['slower']} slower, {counts['same']} unchanged"
            f" ({len(keys)} rows in both reports; {only_old} only in old, {only_new} only in new)"]
    return "\n".join(out), counts


# -------------------------------------------------------------------- plot --
def plot_report(report, path):
    """Save a PNG: fastlog's speed-up against class count, one line per other library.

    One panel per N x C operation (float32 and the lowest thread count when
    present).  Raises ImportError if matplotlib is missing.
    """
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import matplotlib.ticker

    by_case = {}
    for r in results_of(report):
        by_case.setdefault(r.case, {})[r.library] = r
    panels = {}
    for c, libres in by_case.items():
        if _cases.GROUPS[c.group].kind == "rows":
            panels.setdefault(c.group, []).append((c, libres))
    if not panels:
        raise ValueError("the report has no N x C cases to plot")
    n = len(panels)
    cols = min(3, n)
    rows = (n + cols - 1) // cols
    fig, axes = plt.subplots(rows, cols, figsize=(5.2 * cols, 3.8 * rows), squeeze=False)
    for ax, (gname, items) in zip(axes.flat, panels.items()):
        dtypes = [c.dtype for c, _ in items]
        dt = "float32" if "float32" in dtypes else dtypes[0]
        th = min(c.threads for c, _ in items if c.dtype == dt)
        chosen = sorted(((c, lr) for c, lr in items if c.dtype == dt and c.threads == th),
                        key=lambda t: t[0].shape[1])
        # Categorical x axis sorted by C (two shapes may share a C, e.g. 64x10 and 4096x10).
        for lib in _cases.LIBRARIES[1:]:
            xs, ys = [], []
            for i, (c, lr) in enumerate(chosen):
                f, o = lr.get("fastlog"), lr.get(lib)
                if f is not None and o is not None and f.status == o.status == "ok":
                    xs.append(i)
                    ys.append(o.stats.median / f.stats.median)
            if xs:
                ax.plot(xs, ys, marker="o", label=f"vs {lib}")
        ax.axhline(1.0, color="grey", lw=0.8, ls="--")
        ax.set_yscale("log")
        lo, hi = ax.get_ylim()
        ticks = [t for t in (0.1, 0.2, 0.3, 0.5, 1, 2, 3, 5, 10, 20, 30, 50, 100, 200, 500) if lo <= t <= hi]
        ax.yaxis.set_minor_locator(matplotlib.ticker.NullLocator())
        ax.set_yticks(ticks)
        ax.set_yticklabels([f"{t:g}x" for t in ticks])
        ax.set_xlabel("shape N x C, by class count C")
        ax.set_ylabel("fastlog speed-up (x)")
        ax.set_title(f"{gname} ({dt}, {th} thread{'s' if th > 1 else ''})", fontsize=10)
        ax.set_xticks(range(len(chosen)))
        ax.set_xticklabels([c.label for c, _ in chosen], rotation=30, fontsize=7)
        ax.legend(fontsize=8)
    for ax in list(axes.flat)[n:]:
        ax.set_visible(False)
    m = report["machine"]
    fig.suptitle(f"fastlog {m['fastlog']} ({m['isa']}) on {m['cpu']}, {report['created']}", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
