"""Two saved reports side by side: what got faster or slower."""
import textwrap

from .groups import GROUPS
from .presets import shape_label
from .records import results_of
from .report import NOISY, WIDTH, Table, fmt_ms, render_table_text

__all__ = ["compare_rows", "format_compare"]


def _verdict(ra, rb, threshold):
    ratio = rb.stats.median / ra.stats.median
    apart = rb.stats.q3 < ra.stats.q1 or rb.stats.q1 > ra.stats.q3
    if apart and ratio < 1 - threshold:
        return ratio, "faster"
    if apart and ratio > 1 + threshold:
        return ratio, "slower"
    return ratio, "same"


def compare_rows(old, new, threshold=0.05, libraries=None):
    """The rows timed in both reports, with the change and its verdict.

    Parameters
    ----------
    old, new : dict
        Two reports (:func:`fastlog.bench.records.load_json`).
    threshold : float, default 0.05
        A change within this fraction of the old median is 'same' (so is one
        whose interquartile ranges overlap the old ones).
    libraries : collection of str, optional
        Only these libraries' rows (default: all).

    Returns
    -------
    rows : list of tuple
        ``(case, library, old Result, new Result, new/old ratio, verdict)`` for
        the rows timed ('ok') in both; verdict is 'faster', 'slower' or 'same'.
    old_rows, new_rows : dict
        ``{(case, library): Result}`` of each report's timed rows.

    Examples
    --------
    >>> from fastlog.bench.presets import Case
    >>> from fastlog.bench.records import machine_info, make_report
    >>> from fastlog.bench.runner import Result
    >>> from fastlog.bench.timing import Stats
    >>> case = Case("softmax", (4096, 1000), "float32", 1)
    >>> def timed(lib, ms):
    ...     return Result(case, lib, "ok", err=0.0, stats=Stats.from_samples([ms / 1e3] * 5, 1))
    >>> old = make_report([timed("fastlog", 2.0), timed("numpy", 8.0)], machine_info(), None, "quick", "old")
    >>> new = make_report([timed("fastlog", 1.0), timed("numpy", 8.0)], machine_info(), None, "quick", "new")
    >>> from fastlog.bench.compare import compare_rows
    >>> rows, _, _ = compare_rows(old, new)
    >>> [(lib, ratio, verdict) for _, lib, _, _, ratio, verdict in rows]
    [('fastlog', 0.5, 'faster'), ('numpy', 1.0, 'same')]
    """
    def index(rep):
        return {(r.case, r.library): r for r in results_of(rep)
                if r.status == "ok" and (libraries is None or r.library in libraries)}
    a, b = index(old), index(new)
    return [(k[0], k[1], a[k], b[k]) + _verdict(a[k], b[k], threshold) for k in b if k in a], a, b


def _side(rep):
    m = rep["machine"]
    return f"{rep['created']}  {rep['command']}  [ISA {m['isa']}, {m['cpu']}, fastlog {m['fastlog']}]"


def format_compare(old, new, threshold=0.05, libraries=None, width=WIDTH):
    """The comparison as text; returns ``(text, counts)`` with counts of faster/slower/same rows.

    A change counts when the medians differ by more than `threshold` (a
    fraction) and the interquartile ranges do not overlap; otherwise '~'.

    Parameters
    ----------
    old, new, threshold, libraries
        As in :func:`compare_rows`.
    width : int, default 100
        Line width of the text.

    Examples
    --------
    >>> from fastlog.bench.presets import Case
    >>> from fastlog.bench.records import machine_info, make_report
    >>> from fastlog.bench.runner import Result
    >>> from fastlog.bench.timing import Stats
    >>> case = Case("softmax", (4096, 1000), "float32", 1)
    >>> def timed(lib, ms):
    ...     return Result(case, lib, "ok", err=0.0, stats=Stats.from_samples([ms / 1e3] * 5, 1))
    >>> old = make_report([timed("fastlog", 2.0), timed("numpy", 8.0)], machine_info(), None, "quick", "old")
    >>> new = make_report([timed("fastlog", 1.0), timed("numpy", 8.0)], machine_info(), None, "quick", "new")
    >>> from fastlog.bench.compare import format_compare
    >>> text, counts = format_compare(old, new)
    >>> counts
    {'faster': 1, 'slower': 0, 'same': 1}
    >>> print(text[text.index("softmax(x"):text.index("summary:")].strip())
    softmax(x, axis=-1)
      shape      dtype    thr  library  old ms  new ms  change  verdict
      ---------  -------  ---  -------  ------  ------  ------  -------
      4096x1000  float32  1    fastlog    2.00    1.00    0.50   FASTER
      4096x1000  float32  1    numpy      8.00    8.00    1.00        ~
    """
    rows, a, b = compare_rows(old, new, threshold, libraries)
    out = ["fastlog benchmark comparison"]
    for label, text in (("old:", _side(old)), ("new:", _side(new)),
                        ("", f"change = new median / old median; FASTER / SLOWER when it moves by "
                             f"more than {threshold:.0%} and the IQRs do not overlap, '~' otherwise; "
                             f"{NOISY} = noisy in either run")):
        out += textwrap.wrap(text, width, initial_indent=f"  {label:4s} ", subsequent_indent=" " * 7)
    if old["machine"]["cpu"] != new["machine"]["cpu"]:
        out.append("  WARNING: the two reports come from different CPUs")
    counts = {"faster": 0, "slower": 0, "same": 0}
    per_group = {}
    for c, lib, ra, rb, ratio, verdict in rows:
        counts[verdict] += 1
        per_group.setdefault(c.group, []).append(
            [shape_label(c.group, c.shape), c.dtype, str(c.threads), lib, fmt_ms(ra.stats.median),
             fmt_ms(rb.stats.median), f"{ratio:.2f}" + (NOISY if ra.noisy or rb.noisy else ""),
             {"same": "~"}.get(verdict, verdict.upper())])
    for g, table_rows in per_group.items():
        t = Table(GROUPS[g].title if g in GROUPS else g,
                  ["shape", "dtype", "thr", "library", "old ms", "new ms", "change", "verdict"], table_rows,
                  key_columns=4)
        out += ["", t.title] + render_table_text(t, width)
    only_old, only_new = sum(k not in b for k in a), sum(k not in a for k in b)
    out += ["", f"summary: {counts['faster']} faster, {counts['slower']} slower, {counts['same']} unchanged"
            f" ({len(rows)} rows in both reports; {only_old} only in old, {only_new} only in new)"]
    return "\n".join(out), counts
