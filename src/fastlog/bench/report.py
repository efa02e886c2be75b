"""The report as text (terminal, ~100 columns) or Markdown: one table per operation.

Both renderers draw from the same :class:`Table` list built by
:func:`tables_of`, so the Markdown file never says something the terminal
report does not.
"""
import textwrap
from dataclasses import dataclass, field

from .groups import GROUPS
from .impls import LIBRARIES, TORCH_PAIRS
from .records import results_of

__all__ = ["format_report", "format_markdown", "tables_of", "render_text", "render_markdown",
           "fmt_ms", "fmt_ratio", "floors_of", "below_floor", "WIDTH", "NOISY", "BELOW"]

WIDTH = 100
NOISY = "*"


@dataclass
class Table:
    title: str
    header: list
    rows: list
    notes: list = field(default_factory=list)
    key_columns: int = 3      # repeated when a wide table is split


def fmt_ms(seconds):
    """Seconds as milliseconds with 3 significant digits (at least the integer part).

    Parameters
    ----------
    seconds : float
        A time.

    Examples
    --------
    >>> from fastlog.bench.report import fmt_ms
    >>> fmt_ms(0.1234), fmt_ms(0.01234), fmt_ms(0.001234), fmt_ms(1.234e-5)
    ('123', '12.3', '1.23', '0.0123')
    """
    ms = seconds * 1e3
    if ms >= 100:
        return f"{ms:.0f}"
    if ms >= 10:
        return f"{ms:.1f}"
    if ms >= 1:
        return f"{ms:.2f}"
    return f"{ms:.3g}"


def fmt_ratio(r):
    """A speed ratio with 3 significant digits and an 'x'.

    Parameters
    ----------
    r : float
        The ratio.

    Examples
    --------
    >>> from fastlog.bench.report import fmt_ratio
    >>> fmt_ratio(123.4), fmt_ratio(12.34), fmt_ratio(1.234), fmt_ratio(0.01234)
    ('123x', '12.3x', '1.23x', '0.012x')
    """
    return f"{r:.0f}x" if r >= 100 else f"{r:.1f}x" if r >= 10 else f"{r:.2f}x" if r >= 0.1 else f"{r:.2g}x"


def fmt_multiple(r):
    return f"{r:.0f}" if r >= 100 else f"{r:.1f}" if r >= 10 else f"{r:.2f}"


def _cell(r):
    if r is None:
        return "-"
    if r.status == "ok":
        return f"{fmt_ms(r.stats.median)} ({r.stats.iqr_pct:.0f}%)" + (NOISY if r.noisy else "")
    return {"wrong": "WRONG", "error": "ERROR", "skipped": "n/a"}[r.status]


def by_case(results):
    out = {}
    for r in results:
        out.setdefault(r.case, {})[r.library] = r
    return out


def _normalized(f):
    """A floor row in the current form (``seconds``, ``bound`` and one entry per floor); rows of
    reports written before the exp floor existed had one floor of kind 'memory' or 'compute'."""
    if "bound" in f or "kind" not in f:
        return f
    part = "memory" if f["kind"] == "memory" else "gemm"
    return dict(f, bound=part, **{part: {k: v for k, v in f.items() if k in ("bytes", "flops", "rate",
                                                                           "seconds", "array_bytes")}})


def floors_of(report):
    """{(group, shape, dtype, threads): floor dict} from the report (see ``FloorMeter.floor``).

    Parameters
    ----------
    report : dict
        A report.

    Examples
    --------
    >>> from fastlog.bench.report import floors_of
    >>> rep = {"floors": {"rows": [{"group": "softmax", "shape": [4096, 1000], "dtype": "float32",
    ...                             "threads": 1, "kind": "memory", "bytes": 32768000, "seconds": 0.001}]}}
    >>> f = floors_of(rep)[("softmax", (4096, 1000), "float32", 1)]
    >>> f["bound"], f["memory"]["seconds"]
    ('memory', 0.001)
    """
    rows = (report.get("floors") or {}).get("rows", [])
    return {(f["group"], tuple(f["shape"]), f["dtype"], f["threads"]): _normalized(f) for f in rows}


# The floors a table can show, in column order: (key, column title).
FLOOR_COLUMNS = (("memory", "memory floor ms"), ("exp", "exp floor ms"), ("gemm", "GEMM floor ms"))
BELOW = "!"   # marks an 'x floor' under 1: impossible for a true floor


def _floor_notes(g, kinds):
    out = []
    if "memory" in kinds:
        out.append(f"memory floor: {g.floor_text}; the largest of the reads at the read rate, the writes at the "
                   f"write rate and the bytes both read and written at the copy rate, measured on arrays of "
                   f"this size and thread count; none under 4 MiB (in cache)")
    if "exp" in kinds:
        out.append("exp floor: N x C exponentials (at least one per element) at the best exp throughput "
                   "measured in this run (one thread, in cache) times the thread count")
    if "gemm" in kinds:
        out.append(f"GEMM floor: {g.floor_text.replace('at the measured GEMM rate', '')}at the best rate "
                   f"SciPy's BLAS reached at the operation's own GEMM shapes")
    out.append(f"x floor = fastlog time / the larger floor (1.00 = at the limit; below 1.00 a floor "
               f"is wrong, marked {BELOW})")
    return out


def below_floor(report):
    """[(case, fastlog time, floor dict)] for every timed fastlog row faster than its floor.

    A floor is a least time: a row below it means the floor or the timing is
    wrong.  The report lists these loudly.

    Parameters
    ----------
    report : dict
        A report.

    Examples
    --------
    >>> from fastlog.bench.presets import Case
    >>> from fastlog.bench.records import machine_info, make_report
    >>> from fastlog.bench.runner import Result
    >>> from fastlog.bench.timing import Stats
    >>> from fastlog.bench.report import below_floor
    >>> case = Case("softmax", (4096, 1000), "float32", 1)
    >>> res = [Result(case, "fastlog", "ok", err=0.0, stats=Stats.from_samples([1e-3] * 5, 1))]
    >>> floors = {"rows": [{"group": "softmax", "shape": [4096, 1000], "dtype": "float32", "threads": 1,
    ...                     "seconds": 2e-3, "bound": "exp", "exp": {"count": 4096000, "seconds": 2e-3}}]}
    >>> [(c.label, t) for c, t, f in below_floor(make_report(res, machine_info(), floors, "quick", "x"))]
    [('4096x1000', 0.001)]
    """
    floors = floors_of(report)
    out = []
    for r in results_of(report):
        if r.library == "fastlog" and r.status == "ok":
            f = floors.get((r.case.group, r.case.shape, r.case.dtype, r.case.threads))
            if f and r.stats.median < f["seconds"]:
                out.append((r.case, r.stats.median, f))
    return out


def _group_table(gname, items, floors):
    g = GROUPS[gname]
    libs = [lib for lib in LIBRARIES if lib in g.impls and any(lib in lr for _, lr in items)]
    others = [lib for lib in libs if lib != "fastlog"]
    fl_of = {c: floors.get((c.group, c.shape, c.dtype, c.threads)) for c, _ in items}
    kinds = [k for k, _ in FLOOR_COLUMNS if any(f and k in f for f in fl_of.values())]
    pairs = [(a, b) for a, b in TORCH_PAIRS if a in libs and b in libs]
    header = ["shape", "dtype", "thr"] + [f"{lib} ms" for lib in libs] + [f"vs {lib}" for lib in others]
    header += [f"{b} / {a}" for a, b in pairs]
    header += [title for k, title in FLOOR_COLUMNS if k in kinds] + (["x floor"] if kinds else [])
    rows = []
    for c, lr in items:
        fl = lr.get("fastlog")
        fl_ok = fl is not None and fl.status == "ok"
        row = [c.label, c.dtype, str(c.threads)] + [_cell(lr.get(lib)) for lib in libs]
        for lib in others:
            o = lr.get(lib)
            ok = fl_ok and o is not None and o.status == "ok"
            row.append(fmt_ratio(o.stats.median / fl.stats.median) + (NOISY if fl.noisy or o.noisy else "")
                       if ok else "-")
        for a, b in pairs:   # the torch face against what it replaces: b's time / a's time
            ra, rb = lr.get(a), lr.get(b)
            ok = ra is not None and rb is not None and ra.status == rb.status == "ok"
            row.append(fmt_ratio(rb.stats.median / ra.stats.median) + (NOISY if ra.noisy or rb.noisy else "")
                       if ok else "-")
        if kinds:
            f = fl_of[c]
            row += [fmt_ms(f[k]["seconds"]) if f and k in f else "-" for k in kinds]
            if f and fl_ok:
                x = fl.stats.median / f["seconds"]
                row.append(fmt_multiple(x) + (BELOW if x < 1 else ""))
            else:
                row.append("-")
        rows.append(row)
    notes = _floor_notes(g, kinds) if kinds else []
    return Table(g.title, header, rows, notes)


def _scaling_table(cases):
    """Speed-up from 1 thread to each larger thread count, per case and library."""
    rows, libs = [], [lib for lib in LIBRARIES]
    for c, lr in cases.items():
        if c.threads != 1:
            continue
        for c2, lr2 in cases.items():
            if c2.data_key != c.data_key or c2.threads == 1:
                continue
            cells = []
            for lib in libs:
                a, b = lr.get(lib), lr2.get(lib)
                ok = a is not None and b is not None and a.status == b.status == "ok"
                cells.append(fmt_ratio(a.stats.median / b.stats.median)
                             + (NOISY if a.noisy or b.noisy else "") if ok else "-")
            rows.append([GROUPS[c.group].short, c.label, c.dtype, f"1 -> {c2.threads}"] + cells)
    if not rows:
        return None
    return Table("thread scaling (1-thread median / n-thread median; ideal = n)",
                 ["operation", "shape", "dtype", "threads"] + libs, rows, key_columns=4)


def tables_of(report):
    """The report's tables: one per operation, then thread scaling.

    Parameters
    ----------
    report : dict
        A report (:func:`fastlog.bench.records.make_report` or ``load_json``).

    Returns
    -------
    list of Table
        ``title``, ``header``, ``rows`` (lists of cells), ``notes``.

    Examples
    --------
    >>> from fastlog.bench.presets import Case
    >>> from fastlog.bench.records import machine_info, make_report
    >>> from fastlog.bench.runner import Result
    >>> from fastlog.bench.timing import Stats
    >>> case = Case("softmax", (4096, 1000), "float32", 1)
    >>> def timed(lib, ms):
    ...     return Result(case, lib, "ok", err=0.0, stats=Stats.from_samples([ms / 1e3] * 5, 1))
    >>> rep = make_report([timed("fastlog", 2.0), timed("numpy", 8.0)], machine_info(), None, "quick", "example")
    >>> from fastlog.bench.report import tables_of
    >>> [t] = tables_of(rep)
    >>> t.title, t.rows
    ('softmax(x, axis=-1)', [['4096x1000', 'float32', '1', '2.00 (0%)', '8.00 (0%)', '4.00x']])
    """
    cases = by_case(results_of(report))
    floors = floors_of(report)
    groups = list(dict.fromkeys(c.group for c in cases))
    tables = [_group_table(g, [(c, lr) for c, lr in cases.items() if c.group == g], floors) for g in groups]
    scaling = _scaling_table(cases)
    return tables + ([scaling] if scaling else [])


def _rates(report):
    """(bandwidth, exp, GEMM) texts for the header: what the floors were computed from."""
    fl = report.get("floors") or {}
    bw = ", ".join(f"{b['array_bytes'] / 2**20:.3g} MiB x {b['threads']}t {b['max'] / 1e9:.1f}"
                   + (f" / {b['read_max'] / 1e9:.1f} / {b['write_max'] / 1e9:.1f}" if "read_max" in b else "")
                   for b in sorted(fl.get("bandwidth", []), key=lambda b: (b["threads"], b["array_bytes"])))
    old = report.get("bandwidth")  # format 1: one large copy
    if not bw and old:
        bw = f"{old['nbytes'] / 2**20:.0f} MiB x 1t {old['bytes_per_s'] / 1e9:.1f}"
    ex = "; ".join(f"{e['dtype']} " + ", ".join(f"{k} {v / 1e9:.2f}" for k, v in e["per_s"].items())
                   for e in fl.get("exp", []))
    gm = []
    for g in fl.get("gemm", []):
        if "shape" in g:
            m, n, k, ta, tb = g["shape"]
            gm.append(f"{m}x{k}{'.T' if ta else ''} @ {k}x{n}{'.T' if tb else ''} {g['dtype']} {g['threads']}t "
                      f"{g['flops_per_s'] / 1e9:.0f}")
        else:    # reports written before the floors used the operations' own shapes
            gm.append(f"{g.get('n', 1024)}^3 {g['dtype']} {g['threads']}t {g['flops_per_s'] / 1e9:.0f}")
    return bw, ex, ", ".join(gm), fl.get("repeats", 5)


def header_items(report):
    """(label, text) pairs describing the machine and the method."""
    m = report["machine"]
    results = results_of(report)
    timed = [r for r in results if r.status == "ok"]
    flagged = sum(r.noisy for r in timed)
    load = m.get("load_avg_1min")
    start = m.get("load_avg_start")
    load_text = "" if load is None else (
        f"; 1-min load average {start:.1f} at the start, {load:.1f} at the end" if start is not None
        else f"; 1-min load average {load:.1f} at the end")
    if load is not None and max(load, start or 0) > m["cores"]:
        load_text += " (above the core count: the machine was shared with other work)"
    torch = m.get("torch") or f"not installed ({m.get('torch_install', 'pip install torch==2.13.0')})"
    bw, ex, gm, repeats = _rates(report)
    items = [
        ("command", report["command"]
         + (f"   [{report['elapsed_s']:.0f} s]" if report.get("elapsed_s") else "")),
        ("cpu", f"{m['cpu']}, {m['cores']} usable cores, {m['platform']}{load_text}"),
        ("fastlog", f"{m['fastlog']}, ISA build {m['isa']}"
                    f"{' (forced by FASTLOG_ISA)' if m.get('isa_forced') else ''}"
                    f" (CPU supports {', '.join(m['isa_supported'])}),"
                    f" OpenMP {'on' if m['openmp'] else 'OFF'}"),
        ("versions", f"python {m['python']}, numpy {m['numpy']}, scipy {m['scipy']}, torch {torch}; "
                     f"BLAS {', '.join(m['blas']) or '?'}"),
        ("threads", "every library pinned to the row's thread count: "
                    + m.get("pinning", "fastlog.set_num_threads, threadpoolctl, torch.set_num_threads")),
    ]
    if bw:
        items.append(("memory", f"best bandwidth per array size and thread count (CPU time with 1 thread; best "
                                f"of {repeats} passes and of 50 ms), GB/s: copy (np.copyto, read+write) / read "
                                f"(sum) / write (memset): {bw}"))
    if ex:
        items.append(("exp", f"exp throughput, one thread, in cache (CPU time; best of 50 ms of passes), G/s: {ex}"))
    if gm:
        items.append(("GEMM", f"SciPy's BLAS at each operation's own GEMM shapes (row-major; CPU time with "
                              f"1 thread; best of {repeats} calls and of 50 ms), GFLOP/s: {gm}"))
    bad = below_floor(report)
    if (report.get("floors") or {}).get("rows"):
        items.append(("floors", "each row's floor is the larger of its memory, exp or GEMM floor (see under each "
                                "table); " + (f"WARNING: {len(bad)} fastlog row{'s' * (len(bad) != 1)} BELOW "
                                              f"{'their' if len(bad) != 1 else 'its'} floor (listed at the end: "
                                              f"the floor or the timing is wrong)" if bad
                                              else "no row is below its floor")))
    items += [
        ("timing", "median ms per call after warm-up; (n%) = interquartile range / median; every result "
                   "is first checked against fastlog._reference (float64), and a wrong one is not timed"),
        ("speed-up", "'vs X' = X's median / fastlog's median: how many times faster fastlog is than X "
                     "(< 1: slower)"),
        ("noise", f"{NOISY} = still noisy after re-measuring (IQR over "
                  f"{(report.get('noise_policy') or {}).get('max_spread', 0.25):.0%} of the median, or other "
                  f"processes kept busy the cores the row needs); {flagged} of {len(timed)} timings flagged"),
    ]
    return items


def _describe(r):
    return (f"{r.library} {r.case.group} {r.case.label} {r.case.dtype} {r.case.threads}t: "
            f"{r.status.upper()}: {r.reason}"
            + (f", max |error| / max|oracle| = {r.err:.3g}" if r.err is not None else ""))


def _problems(results):
    """(title, lines) sections: fastlog's failures, other libraries' ones, what was not available."""
    out = []
    bad = [r for r in results if r.status in ("wrong", "error")]
    if any(r.library == "fastlog" for r in bad):
        out.append(("FAILURES of fastlog (not timed; a fast wrong answer is not a win; exit status 1)",
                    [_describe(r) for r in bad if r.library == "fastlog"]))
    if any(r.library != "fastlog" for r in bad):
        out.append(("other libraries' wrong answers or errors (not timed)",
                    [_describe(r) for r in bad if r.library != "fastlog"]))
    skipped = {}
    for r in results:
        if r.status == "skipped":
            name = GROUPS[r.case.group].short if r.case.group in GROUPS else r.case.group
            skipped.setdefault((r.library, r.reason), []).append(name)
    if skipped:
        out.append(("not available (n/a)", [f"{lib}: {reason} [{', '.join(dict.fromkeys(gs))}]"
                                            for (lib, reason), gs in skipped.items()]))
    return out


def _summary(results):
    """One line: timings, failures, and how many timings were flagged as noisy and why."""
    bad = [r for r in results if r.status in ("wrong", "error")]
    fl_bad = sum(r.library == "fastlog" for r in bad)
    noisy = [r for r in results if r.status == "ok" and r.noisy]
    line = (f"{sum(r.status == 'ok' for r in results)} timings, {fl_bad} fastlog failures, "
            + (f"{len(bad) - fl_bad} wrong answers or errors from other libraries, "
               if len(bad) > fl_bad else "")
            + f"{len(noisy)} flagged as noisy ({NOISY})")
    reasons = {}
    for r in noisy:
        for part in r.noise["flag"].split("; "):
            key = "IQR over the limit" if part.startswith("IQR") else "competing load"
            reasons[key] = reasons.get(key, 0) + 1
    return line + (": " + ", ".join(f"{n} {k}" for k, n in reasons.items()) if reasons else "")


def _footer(report):
    results = results_of(report)
    bad = below_floor(report)
    out = _problems(results)
    if bad:
        out.append((f"BELOW THE FLOOR: {len(bad)} fastlog row{'s' * (len(bad) != 1)} faster than the least "
                    f"time the floor allows (a floor cannot be beaten: the floor or the timing is wrong)",
                    [f"{GROUPS[c.group].short} {c.label} {c.dtype} {c.threads}t: {fmt_ms(t)} ms, "
                     f"{f['bound']} floor {fmt_ms(f['seconds'])} ms (x floor {t / f['seconds']:.2f})"
                     for c, t, f in bad]))
    summary = _summary(results) + (f", {len(bad)} below {'their' if len(bad) != 1 else 'its'} floor ({BELOW})"
                                   if bad else "")
    return out + [("summary", [summary])]


# ------------------------------------------------------------------ text --
def _split_columns(t, width):
    """Column groups (after the key columns) that each fit in `width`, as even as possible."""
    widths = [max(len(str(r[i])) for r in [t.header] + t.rows) for i in range(len(t.header))]
    key_w = sum(widths[:t.key_columns]) + 2 * t.key_columns + 2
    rest = list(range(t.key_columns, len(t.header)))

    def fill(limit):
        chunks, cur, w = [], [], key_w
        for i in rest:
            if cur and w + widths[i] + 2 > limit:
                chunks.append(cur)
                cur, w = [], key_w
            cur.append(i)
            w += widths[i] + 2
        return chunks + [cur] if cur else chunks

    chunks = fill(width)
    if len(chunks) > 1:   # the same number of parts, balanced
        even = key_w + sum(widths[i] + 2 for i in rest) / len(chunks)
        for limit in range(int(even), width + 1):
            balanced = fill(limit)
            if len(balanced) == len(chunks):
                return widths, balanced
    return widths, chunks


def render_table_text(t, width=WIDTH):
    out = []
    widths, chunks = _split_columns(t, width)
    for cols in chunks:
        idx = list(range(t.key_columns)) + cols
        for k, r in enumerate([t.header] + t.rows):
            cells = [str(r[i]).ljust(widths[i]) if i < t.key_columns else str(r[i]).rjust(widths[i])
                     for i in idx]
            out.append("  " + "  ".join(cells).rstrip())
            if k == 0:
                out.append("  " + "  ".join("-" * widths[i] for i in idx))
        if cols is not chunks[-1]:
            out.append("")
    for n in t.notes:
        out += textwrap.wrap(n, width, initial_indent="  ", subsequent_indent="  ")
    return out


def render_text(report, title="fastlog benchmark report", width=WIDTH):
    """The report as text: a header on the machine and the method, one table per operation, a summary.  Also ``format_report``.

    Parameters
    ----------
    report : dict
        A report (:func:`fastlog.bench.records.make_report` or ``load_json``).
    title : str
        The first line.
    width : int, default 100
        Line width; wider tables are split.

    Examples
    --------
    >>> from fastlog.bench.presets import Case
    >>> from fastlog.bench.records import machine_info, make_report
    >>> from fastlog.bench.runner import Result
    >>> from fastlog.bench.timing import Stats
    >>> case = Case("softmax", (4096, 1000), "float32", 1)
    >>> def timed(lib, ms):
    ...     return Result(case, lib, "ok", err=0.0, stats=Stats.from_samples([ms / 1e3] * 5, 1))
    >>> rep = make_report([timed("fastlog", 2.0), timed("numpy", 8.0)], machine_info(), None, "quick", "example")
    >>> from fastlog.bench.report import render_text
    >>> text = render_text(rep)
    >>> print(text[text.index("softmax(x"):].strip())
    softmax(x, axis=-1)
      shape      dtype    thr  fastlog ms   numpy ms  vs numpy
      ---------  -------  ---  ----------  ---------  --------
      4096x1000  float32  1     2.00 (0%)  8.00 (0%)     4.00x
    <BLANKLINE>
    summary:
      2 timings, 0 fastlog failures, 0 flagged as noisy (*)
    """
    out = [f"{title}  ({report['created']})"]
    for label, text in header_items(report):
        out += textwrap.wrap(text, width, initial_indent=f"{label + ':':10s} ", subsequent_indent=" " * 11)
    for t in tables_of(report):
        out += ["", t.title] + render_table_text(t, width)
    for title_, lines in _footer(report):
        out += [""] + textwrap.wrap(title_ + ":", width)
        for ln in lines:
            out += textwrap.wrap(ln, width, initial_indent="  ", subsequent_indent="    ")
    return "\n".join(out)


format_report = render_text


# -------------------------------------------------------------- markdown --
def _md_escape(s):
    return str(s).replace("|", "\\|").replace("*", "\\*")


def render_table_markdown(t):
    out = ["| " + " | ".join(_md_escape(h) for h in t.header) + " |",
           "|" + "|".join(":---" if i < t.key_columns else "---:" for i in range(len(t.header))) + "|"]
    out += ["| " + " | ".join(_md_escape(c) for c in r) + " |" for r in t.rows]
    return out + [""] + [_md_escape(n) for n in t.notes]


def render_markdown(report, title="fastlog benchmark report"):
    """The report as Markdown (the same tables as :func:`render_text`).  Also ``format_markdown``.

    Parameters
    ----------
    report : dict
        A report.
    title : str
        The level-1 heading.

    Examples
    --------
    >>> from fastlog.bench.presets import Case
    >>> from fastlog.bench.records import machine_info, make_report
    >>> from fastlog.bench.runner import Result
    >>> from fastlog.bench.timing import Stats
    >>> case = Case("softmax", (4096, 1000), "float32", 1)
    >>> def timed(lib, ms):
    ...     return Result(case, lib, "ok", err=0.0, stats=Stats.from_samples([ms / 1e3] * 5, 1))
    >>> rep = make_report([timed("fastlog", 2.0), timed("numpy", 8.0)], machine_info(), None, "quick", "example")
    >>> from fastlog.bench.report import render_markdown
    >>> md = render_markdown(rep)
    >>> print(md[md.index("## "):md.index("**summary**")].strip())
    ## softmax(x, axis=-1)
    <BLANKLINE>
    | shape | dtype | thr | fastlog ms | numpy ms | vs numpy |
    |:---|:---|:---|---:|---:|---:|
    | 4096x1000 | float32 | 1 | 2.00 (0%) | 8.00 (0%) | 4.00x |
    """
    took = f" in {report['elapsed_s']:.0f} s" if report.get("elapsed_s") else ""
    out = [f"# {title}", "", f"Generated by `{report['command']}` on {report['created']}{took}.", ""]
    out += [f"- **{label}**: {_md_escape(text)}" for label, text in header_items(report) if label != "command"]
    for t in tables_of(report):
        out += ["", f"## {t.title}", ""] + render_table_markdown(t)
    for title_, lines in _footer(report):
        out += ["", f"**{title_}**", ""] + [f"- {ln}" for ln in lines]
    return "\n".join(out) + "\n"


format_markdown = render_markdown
