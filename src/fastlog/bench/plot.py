"""PNG plots of a report (fastlog's speed-up) and of a comparison (the change between two runs).

matplotlib is imported only here, only when a plot is asked for.  What is
drawn is what was measured: one marker per (shape, thread count, library,
dtype), no lines (the shapes of a panel are not a series), colour = library,
marker = dtype, a hollow marker = a noisy timing, error bars span the ratio
of the quartiles.  A panel with several thread counts labels each shape with
its thread count.  The legend names only what the figure draws, and the
figure has no empty panels.
"""
import textwrap

import numpy as np

from .compare import compare_rows
from .groups import GROUPS
from .impls import LIBRARIES
from .records import results_of
from .report import by_case

__all__ = ["plot_report", "plot_compare", "COLOURS", "MARKERS"]

COLOURS = {"fastlog": "#c0392b", "numpy": "#1f77b4", "scipy": "#2ca02c", "torch": "#ff7f0e",
           "torch.compile": "#8c564b", "fastlog.torch": "#9467bd", "fastlog.torch.compile": "#e377c2"}
MARKERS = {"float32": "o", "float64": "s", "bfloat16": "^", "float16": "v"}
IDEAL = {2: "--", 4: ":", 8: "-."}   # line style of the 'ideal n x' reference lines of thread scaling


def _ticks(lo, hi, most=8):
    """The densest decade ticks (1-1.2-1.5-...-8 down to 1 per decade) in [lo, hi] with at most
    `most` ticks, so that a narrow range still gets several."""
    for mantissas in ((1, 1.2, 1.5, 2, 2.5, 3, 4, 5, 6, 7, 8), (1, 1.5, 2, 3, 5, 7), (1, 2, 3, 5),
                      (1, 2, 5), (1, 3), (1,)):
        ticks = [round(m * 10.0 ** e, 12) for e in range(-6, 7) for m in mantissas
                 if lo <= m * 10.0 ** e <= hi]
        if len(ticks) <= most:
            return ticks
    return [10.0 ** e for e in range(-6, 7, 2) if lo <= 10.0 ** e <= hi]


def _pyplot():
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    return plt


def _log_axis(ax, label):
    import matplotlib.ticker
    ax.set_yscale("log")
    lo, hi = ax.get_ylim()
    lo, hi = min(lo, 0.8), max(hi, 1.25)
    ax.set_ylim(lo, hi)
    ticks = _ticks(lo, hi)
    ax.yaxis.set_minor_locator(matplotlib.ticker.NullLocator())
    ax.set_yticks(ticks)
    ax.set_yticklabels([f"{t:g}x" for t in ticks])
    ax.axhline(1.0, color="grey", lw=0.8, ls=":")
    ax.set_ylabel(label, fontsize=8)
    ax.grid(axis="y", lw=0.3, alpha=0.5)


def _series_plot(ax, labels, series):
    """series: {(library, dtype): [(x label, y, lo, hi, noisy)]} on a categorical x axis; one
    marker per point (no lines: neighbouring categories are different shapes, not a series).
    Returns the (library, dtype) pairs drawn."""
    xs = {lab: i for i, lab in enumerate(labels)}
    n = max(1, len(series))
    drawn = []
    for k, ((lib, dt), pts) in enumerate(sorted(series.items(), key=lambda s: (
            LIBRARIES.index(s[0][0]), list(MARKERS).index(s[0][1]) if s[0][1] in MARKERS else 9))):
        off = (k - (n - 1) / 2) * min(0.6 / n, 0.14)
        x = [xs[p[0]] + off for p in pts]
        y = [p[1] for p in pts]
        colour = COLOURS.get(lib, "black")
        ax.errorbar(x, y, yerr=[[max(0.0, v - p[2]) for v, p in zip(y, pts)],
                                [max(0.0, p[3] - v) for v, p in zip(y, pts)]],
                    fmt="none", ecolor=colour, elinewidth=0.8, capsize=2, alpha=0.7)
        for xi, yi, p in zip(x, y, pts):
            ax.plot([xi], [yi], marker=MARKERS.get(dt, "D"), ms=6, color=colour,
                    mfc="white" if p[4] else colour, mew=1.2, ls="none")
        drawn.append((lib, dt))
    ax.set_xticks(range(len(labels)))
    ax.set_xticklabels(labels, rotation=25, ha="right", fontsize=7.5)
    ax.set_xlim(-0.6, len(labels) - 0.4)
    return drawn


def _legend(fig, drawn, noisy):
    """A legend of what the figure draws: the libraries and dtypes of `drawn` ((library, dtype)
    pairs), and the hollow marker only when some timing was noisy."""
    from matplotlib.lines import Line2D
    libs = [lib for lib in LIBRARIES if any(d[0] == lib for d in drawn)]
    dts = [d for d in MARKERS if any(x[1] == d for x in drawn)]
    h = [Line2D([], [], color=COLOURS[lib], marker="o", ms=7, ls="none", label=lib) for lib in libs]
    h += [Line2D([], [], color="dimgrey", marker=MARKERS[d], ls="none", label=d) for d in dts]
    if noisy:
        h.append(Line2D([], [], color="dimgrey", marker="o", mfc="white", ls="none", label="noisy timing"))
    fig.legend(handles=h, loc="upper center", ncol=len(h), fontsize=8.5, frameon=False,
               bbox_to_anchor=(0.5, 0.985))


def _categories(points):
    """points: [(shape label, threads, (library, dtype), y, lo, hi, noisy)] -> (x labels, series).

    The x axis has one category per (shape, thread count), in order of first
    appearance; the thread count is written under the shape when the panel
    has more than one."""
    several = len({p[1] for p in points}) > 1
    label = {}
    for p in points:
        label.setdefault((p[0], p[1]), p[0] + (f"\n{p[1]} thread{'s' * (p[1] > 1)}" if several else ""))
    series = {}
    for p in points:
        series.setdefault(p[2], []).append((label[(p[0], p[1])],) + tuple(p[3:]))
    return list(label.values()), series


def _grid(plt, n, wide=False, cols=3):
    """A figure with n panels in rows of at most `cols` (no empty panel), plus one full-width panel
    below when `wide`."""
    cols = max(1, min(cols, n)) if n else 1
    rows = (n + cols - 1) // cols
    height = 3.7 * (rows + wide) + 0.6
    fig = plt.figure(figsize=(max(5.3 * cols, 10.6 if wide else 0), height))
    grid = fig.add_gridspec(rows + wide, cols * 2)
    axes = []
    for k in range(n):
        r, c = divmod(k, cols)
        left = rows * cols - n if r == rows - 1 else 0     # centre a short last row
        axes.append(fig.add_subplot(grid[r, 2 * c + left:2 * c + left + 2]))
    if wide:
        axes.append(fig.add_subplot(grid[rows, :]))
    return fig, axes, height


def _finish(fig, path, height):
    fig.tight_layout(rect=(0, 0, 1, 1 - 0.4 / height))
    fig.savefig(path, dpi=100)


def _ratio(num, den):
    """(num median / den median, low, high from the quartiles)."""
    return (num.stats.median / den.stats.median, num.stats.q1 / den.stats.q3, num.stats.q3 / den.stats.q1)


def _speedup_panels(cases):
    """{group: [(shape label, threads, (library, dtype), ratio, lo, hi, noisy)]}: fastlog's
    speed-up over each other library (fastlog itself is the baseline and is not drawn)."""
    panels = {}
    for c, lr in cases.items():
        f = lr.get("fastlog")
        for lib, o in lr.items():
            if lib == "fastlog" or f is None or f.status != "ok" or o.status != "ok":
                continue
            panels.setdefault(c.group, []).append(
                (c.label, c.threads, (lib, c.dtype)) + _ratio(o, f) + (f.noisy or o.noisy,))
    return panels


SCALING_MAX = 12   # categories in the thread-scaling panel


def _scaling_series(cases):
    """[(label, n threads, (library, dtype), ratio, lo, hi, noisy)] of 1-thread / n-thread time, and
    the subset's description.

    One dtype (float32 when present) and, when there are more than SCALING_MAX
    (operation, shape) pairs, the largest shapes: threads matter for big arrays.
    """
    pairs = [(c, c2) for c in cases for c2 in cases
             if c.threads == 1 and c2.data_key == c.data_key and c2.threads > 1]
    if not pairs:
        return {}, ""
    dtypes = [c.dtype for c, _ in pairs]
    dt = "float32" if "float32" in dtypes else dtypes[0]
    pairs = [(c, c2) for c, c2 in pairs if c.dtype == dt]
    size = {c: float(np.prod(c.shape)) for c, _ in pairs}
    keys = list(dict.fromkeys((c.group, c.shape) for c, _ in pairs))
    if len(keys) > SCALING_MAX:
        keep = set(sorted(keys, key=lambda k: -float(np.prod(k[1])))[:SCALING_MAX])
        pairs = [(c, c2) for c, c2 in pairs if (c.group, c.shape) in keep]
    points = []
    for c, c2 in sorted(pairs, key=lambda p: (list(GROUPS).index(p[0].group), size[p[0]], p[1].threads)):
        label = "\n".join(textwrap.wrap(GROUPS[c.group].short, 18) + [c.label])
        for lib in LIBRARIES:
            a, b = cases[c].get(lib), cases[c2].get(lib)
            if a is not None and b is not None and a.status == b.status == "ok":
                points.append((label, c2.threads, (lib, c.dtype)) + _ratio(a, b) + (a.noisy or b.noisy,))
    kept = "" if len(keys) <= SCALING_MAX else f", the {SCALING_MAX} largest shapes"
    return points, f"{dt}{kept}"


def plot_report(report, path):
    """Save a PNG: one panel per operation (fastlog's speed-up over each library), plus thread scaling.

    Raises ImportError without matplotlib and ValueError when nothing was timed.

    Parameters
    ----------
    report : dict
        A report with rows timed for fastlog and at least one other library.
    path : str or os.PathLike
        The PNG file to write.

    Returns
    -------
    list of str
        The panel titles.

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
    >>> import os, tempfile
    >>> from fastlog.bench.plot import plot_report
    >>> plot_report(rep, os.path.join(tempfile.mkdtemp(), "speedup.png"))
    ['softmax']
    """
    cases = by_case(results_of(report))
    panels = _speedup_panels(cases)
    scaling, scaling_what = _scaling_series(cases)
    if not panels and not scaling:
        raise ValueError("the report has no rows timed for both fastlog and another library")
    plt = _pyplot()
    n_cat = len({(p[0], p[1]) for p in scaling})
    wide = n_cat > 4                      # a few scaling cases fit in an ordinary panel
    fig, axes, height = _grid(plt, len(panels) + (bool(scaling) and not wide), wide=wide)
    order = [g for g in GROUPS if g in panels]
    drawn, noisy = [], False
    for ax, g in zip(axes, order):
        labels, series = _categories(panels[g])
        drawn += _series_plot(ax, labels, series)
        noisy |= any(p[-1] for p in panels[g])
        _log_axis(ax, "fastlog speed-up (x faster)")
        ax.set_title(GROUPS[g].short, fontsize=10)
        ax.set_xlabel("shape" if GROUPS[g].kind != "mlp" else "batch size", fontsize=8)
    if scaling:
        ax = axes[-1]
        labels, series = _categories(scaling)
        drawn += _series_plot(ax, labels, series)
        noisy |= any(p[-1] for p in scaling)
        for n in sorted({p[1] for p in scaling}):
            ax.axhline(n, color="black", lw=0.6, ls=IDEAL.get(n, "-."))
            ax.text(-0.5, n * 1.05, f"ideal: {n}x", fontsize=7)
        _log_axis(ax, "n threads over 1 thread (x)")
        ax.set_title(f"thread scaling: time with 1 thread / time with n threads ({scaling_what})",
                     fontsize=10)
        ax.tick_params(axis="x", labelsize=7.5, labelrotation=0)
        for t in ax.get_xticklabels():
            t.set_horizontalalignment("center")
    m = report["machine"]
    flagged = sum(r.noisy for r in results_of(report) if r.status == "ok")
    fig.suptitle(f"fastlog {m['fastlog']} ({m['isa']}) vs NumPy, SciPy, PyTorch: how many times faster "
                 f"fastlog is (above 1x: faster).  {m['cpu']}, {m['cores']} cores, {report['created']}"
                 + (f"; {flagged} noisy timings" if flagged else ""), fontsize=9.5, y=0.995)
    _legend(fig, drawn, noisy)
    _finish(fig, path, height)
    plt.close(fig)
    return [GROUPS[g].short for g in order] + (["thread scaling"] if scaling else [])


def plot_compare(old, new, path, libraries=None):
    """Save a PNG of old median / new median per row (above 1x: the new run is faster).

    Parameters
    ----------
    old, new : dict
        Two reports with rows timed in both.
    path : str or os.PathLike
        The PNG file to write.
    libraries : collection of str, optional
        Only these libraries' rows (default: all).

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
    >>> import os, tempfile
    >>> from fastlog.bench.plot import plot_compare
    >>> path = os.path.join(tempfile.mkdtemp(), "change.png")
    >>> _ = plot_compare(old, new, path)
    >>> os.path.getsize(path) > 0
    True
    """
    rows, _, _ = compare_rows(old, new, libraries=libraries)
    if not rows:
        raise ValueError("the two reports have no timed row in common")
    panels = {}
    for c, lib, ra, rb, _, _ in rows:
        panels.setdefault(c.group, []).append(
            (c.label, c.threads, (lib, c.dtype)) + _ratio(ra, rb) + (ra.noisy or rb.noisy,))
    plt = _pyplot()
    fig, axes, height = _grid(plt, len(panels))
    order = [g for g in GROUPS if g in panels] + [g for g in panels if g not in GROUPS]
    drawn = []
    for ax, g in zip(axes, order):
        labels, series = _categories(panels[g])
        drawn += _series_plot(ax, labels, series)
        _log_axis(ax, "old time / new time (x)")
        ax.set_title(GROUPS[g].short if g in GROUPS else g, fontsize=10)
    fig.suptitle(f"change from {old['created']} to {new['created']} (above 1x: the new run is faster)",
                 fontsize=10, y=0.995)
    _legend(fig, drawn, any(p[-1] for pts in panels.values() for p in pts))
    _finish(fig, path, height)
    plt.close(fig)
    return [GROUPS[g].short if g in GROUPS else g for g in order]
