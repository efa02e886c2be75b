"""The ``fastlog-bench`` command (also ``python -m fastlog.bench``)."""
import argparse
import os
import subprocess
import sys
import tempfile
import time

from dataclasses import asdict, replace
from typing import Optional, Sequence

from . import plot as _plot
from . import records as _records
from . import report as _report
from .compare import format_compare
from .data import DTYPES, np_dtype
from .floors import FloorMeter
from .groups import ALIASES, GROUPS
from .impls import COMPILED, LIBRARIES, Unavailable, torch_modules
from .presets import parse_shape, plan
from .runner import BUDGETS, POLICIES, run_cases

__all__ = ["main"]

EPILOG = """\
examples:
  fastlog-bench                          quick run (about a minute on 2 cores)
  fastlog-bench --full --json full.json  every operation, shape, dtype, 1 and 2 threads
  fastlog-bench --groups ce --shapes 1024x32000 --threads 1,2
  fastlog-bench --isa all                the quick run once per ISA build (FASTLOG_ISA)
  fastlog-bench --compare old.json new.json --plot change.png
  fastlog-bench --markdown REPORT.md     the report as Markdown tables as well
  fastlog-bench --groups ce --dtypes bfloat16,float16   half precision (bfloat16 via ml_dtypes)
groups: """ + ", ".join(GROUPS) + "; aliases: " + ", ".join(
    f"{k} ({'+'.join(v)})" for k, v in ALIASES.items())


def _csv(text):
    return [p.strip() for p in text.split(",") if p.strip()]


def _threads(text):
    try:
        out = [int(p) for p in _csv(text)]
    except ValueError:
        raise argparse.ArgumentTypeError(f"--threads wants integers like 1,2, got {text!r}") from None
    if not out or any(n < 1 for n in out):
        raise argparse.ArgumentTypeError(f"--threads wants positive integers, got {text!r}")
    return out


def _shapes(text):
    try:
        return [parse_shape(p) for p in _csv(text)]
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def _parser(prog):
    p = argparse.ArgumentParser(
        prog=prog, epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Time fastlog against NumPy, SciPy and PyTorch on this machine: same inputs and "
                    "thread counts for every library, results checked before timing, medians with IQR.")
    size = p.add_mutually_exclusive_group()
    size.add_argument("--quick", action="store_true", help="the default set (about a minute on 2 cores)")
    size.add_argument("--full", action="store_true", help="every operation x shape x dtype x 1,2 threads")
    size.add_argument("--tiny", action="store_true", help=argparse.SUPPRESS)  # tests: seconds-long run
    p.add_argument("--groups", type=_csv, help="comma-separated operations or aliases (default: all)")
    p.add_argument("--shapes", type=_shapes,
                   help="N x C shapes for the N x C operations, e.g. 64x10,4096x1000")
    p.add_argument("--dtypes", type=_csv, help="comma-separated: " + ", ".join(DTYPES) +
                   " (half precision only for the N x C operations)")
    p.add_argument("--threads", type=_threads, help="thread counts, e.g. 1,2 (default: per preset)")
    p.add_argument("--libraries", type=_csv, default=list(LIBRARIES),
                   help="subset of " + ",".join(LIBRARIES))
    p.add_argument("--json", metavar="PATH", help="save the report as JSON")
    p.add_argument("--markdown", metavar="PATH", help="also write the report as Markdown tables")
    p.add_argument("--plot", metavar="PATH", help="save a PNG of fastlog's speed-up per operation, or "
                                                  "with --compare of the change (needs matplotlib)")
    p.add_argument("--isa", metavar="LEVEL", help="run under FASTLOG_ISA=LEVEL in a subprocess; 'all' "
                                                  "runs every level this CPU supports; or a list a,b")
    p.add_argument("--max-spread", type=float, default=None,
                   help="IQR / median above which a timing is noisy and re-measured (default 0.25)")
    p.add_argument("--retries", type=int, default=None,
                   help="re-measurements of a noisy timing (default: quick 1, full 2)")
    p.add_argument("--no-progress", action="store_true",
                   help="no progress on stderr (a bar on a terminal, one line per operation otherwise)")
    p.add_argument("--list", action="store_true", help="list the cases that would run, then exit")
    p.add_argument("--compare", nargs=2, metavar=("OLD.json", "NEW.json"),
                   help="compare two saved reports and print what got faster or slower")
    p.add_argument("--threshold", type=float, default=0.05,
                   help="--compare: smallest relative change that counts (default 0.05)")
    return p


def _strip_option(argv, name):
    """argv without `name VALUE` / `name=VALUE`."""
    out, skip = [], False
    for a in argv:
        if skip:
            skip = False
            continue
        if a == name:
            skip = True
            continue
        if a.startswith(name + "="):
            continue
        out.append(a)
    return out


def _with_suffix(path, level):
    root, ext = os.path.splitext(path)
    return f"{root}.{level}{ext}"


def _run_isa(args, argv, prog):
    """Re-run this command once per ISA level, each in a subprocess with FASTLOG_ISA set."""
    from fastlog import _dispatch

    supported = _dispatch.supported_levels()
    want = supported if args.isa.strip().lower() == "all" else [s.lower() for s in _csv(args.isa)]
    for lv in want:
        if lv not in supported:
            print(f"{prog}: --isa {lv}: this CPU/build supports only {', '.join(supported)}",
                  file=sys.stderr)
            return 2
    child = argv
    for opt in ("--isa", "--json", "--plot", "--markdown"):
        child = _strip_option(child, opt)
    pkg_root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    rc = 0
    reports = []
    with tempfile.TemporaryDirectory() as tmp:
        for lv in want:
            if args.json:
                jpath = _with_suffix(args.json, lv) if len(want) > 1 else args.json
            else:
                jpath = os.path.join(tmp, f"{lv}.json")
            extra = ["--json", jpath]
            if args.plot:
                extra += ["--plot", _with_suffix(args.plot, lv) if len(want) > 1 else args.plot]
            env = dict(os.environ, FASTLOG_ISA=lv)
            env["PYTHONPATH"] = os.pathsep.join(p for p in (pkg_root, env.get("PYTHONPATH")) if p)
            sys.stdout.flush()
            proc = subprocess.run([sys.executable, "-m", "fastlog.bench", *child, *extra], env=env)
            rc = max(rc, proc.returncode)
            if os.path.exists(jpath):
                reports.append((lv, _records.load_json(jpath)))
            print()
    if len(reports) > 1:
        print(_isa_summary(reports))
    if args.json and len(want) > 1:
        print(f"saved {', '.join(_with_suffix(args.json, lv) for lv, _ in reports)}")
    return rc


def _isa_summary(reports):
    """fastlog's median per case under each ISA level, and the ratio to the first level."""
    base_lv = reports[0][0]
    table = {}
    for lv, rep in reports:
        for r in _records.results_of(rep):
            if r.library == "fastlog" and r.status == "ok":
                table.setdefault(r.case, {})[lv] = r.stats.median
    levels = [lv for lv, _ in reports]
    header = ["operation", "shape", "dtype", "thr"] + [f"{lv} ms" for lv in levels] + [
        f"{base_lv}/{lv}" for lv in levels[1:]]
    rows = []
    for c, per in table.items():
        row = [c.group, c.label, c.dtype, str(c.threads)] + [
            _report.fmt_ms(per[lv]) if lv in per else "-" for lv in levels]
        row += [f"{per[base_lv] / per[lv]:.2f}x" if base_lv in per and lv in per else "-"
                for lv in levels[1:]]
        rows.append(row)
    out = [f"fastlog by ISA build (median ms; '{base_lv}/X' = speed-up of build X over {base_lv})"]
    out += _report.render_table_text(_report.Table("", header, rows, key_columns=4))
    return "\n".join(out)


def _compare(args, parser):
    try:
        old, new = (_records.load_json(p) for p in args.compare)
    except (OSError, ValueError) as e:
        parser.error(str(e))
    libs = None if args.libraries == list(LIBRARIES) else args.libraries
    text, _ = format_compare(old, new, args.threshold, libs)
    print(text)
    if args.plot:
        _save_plot(lambda: _plot.plot_compare(old, new, args.plot, libs), args.plot)
    return 0


def _save_plot(draw, path):
    try:
        draw()
    except ImportError:
        print("\n--plot: matplotlib is not installed (pip install matplotlib); no plot written",
              file=sys.stderr)
    except ValueError as e:
        print(f"\n--plot: {e}; no plot written", file=sys.stderr)
    else:
        print(f"saved {path}")


def _check_options(args, parser):
    bad = [lib for lib in args.libraries if lib not in LIBRARIES]
    if bad:
        parser.error(f"unknown library {bad[0]!r}; choose from {', '.join(LIBRARIES)}")
    for d in args.dtypes or ():
        if d not in DTYPES:
            parser.error(f"unknown dtype {d!r}; choose from {', '.join(DTYPES)}")
        try:
            np_dtype(d)
        except ValueError as e:
            parser.error(str(e))


def _cases(args, parser, preset):
    _check_options(args, parser)
    try:
        case_list = plan(preset, args.groups, args.shapes, args.dtypes, args.threads)
    except ValueError as e:
        parser.error(str(e))
    if not case_list:
        parser.error("nothing to run: the filters leave no case (thread counts above the number of "
                     "cores and half precision for the MLP / linear+CE are dropped)")
    return case_list


def _policy(args, preset):
    policy = POLICIES[preset]
    if args.max_spread is not None:
        policy = replace(policy, max_spread=args.max_spread)
    if args.retries is not None:
        policy = replace(policy, retries=max(0, args.retries))
    return policy


def _measure(args, argv, prog, preset, case_list):
    """Run the cases; the report (a dict)."""
    if any(lib.startswith(("torch", "fastlog.torch")) for lib in args.libraries):
        try:
            torch_modules()  # imported now so that thread pinning reaches it
        except Unavailable:
            pass
    policy = _policy(args, preset)
    t0, load0 = time.perf_counter(), _records.load_average()
    meter = FloorMeter(repeats=3 if preset == "tiny" else 5)
    libraries = args.libraries
    if preset == "tiny" and libraries == list(LIBRARIES):
        # the seconds-long smoke run leaves out the torch.compile contenders (each compiles for seconds)
        libraries = [lib for lib in libraries if lib not in COMPILED]
    results = run_cases(case_list, libraries, BUDGETS[preset], progress=not args.no_progress,
                        policy=policy, floors=meter)
    sys.stderr.flush()
    isa_env = os.environ.get("FASTLOG_ISA")
    command = (f"FASTLOG_ISA={isa_env} " if isa_env else "") + " ".join([prog] + argv)
    return _records.make_report(results, _records.machine_info(load0), meter.to_dict(), preset, command,
                                time.perf_counter() - t0, asdict(policy))


def _write(args, rep):
    """Print the report and save what was asked for."""
    print(_report.format_report(rep))
    if args.json:
        _records.save_json(rep, args.json)
        print(f"\nsaved {args.json}")
    if args.markdown:
        with open(args.markdown, "w") as f:
            f.write(_report.format_markdown(rep))
        print(f"saved {args.markdown}")
    if args.plot:
        _save_plot(lambda: _plot.plot_report(rep, args.plot), args.plot)


def main(argv: Optional[Sequence[str]] = None, prog: str = "fastlog-bench") -> int:
    """Entry point of ``fastlog-bench``; returns the exit status (1 if fastlog gave a wrong answer).

    Parameters
    ----------
    argv : list of str, optional
        The command-line arguments (default ``sys.argv[1:]``); ``--help`` lists them.
    prog : str, default "fastlog-bench"
        The program name shown in help and in the report's command line.

    Returns
    -------
    int
        The exit status: 0, or 1 if fastlog gave a wrong answer or raised.

    Examples
    --------
    >>> from fastlog.bench import main
    >>> main(["--tiny", "--list", "--groups", "softmax", "--threads", "1", "--libraries", "fastlog,numpy"])
    softmax                  8x5                    float32  1 thread(s)
    softmax                  8x5                    float64  1 thread(s)
    softmax                  4x1000                 float32  1 thread(s)
    3 cases x libraries fastlog, numpy
    0
    """
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = _parser(prog)
    args = parser.parse_args(argv)
    if args.compare:
        return _compare(args, parser)
    if args.isa:
        return _run_isa(args, argv, prog)
    preset = "tiny" if args.tiny else "full" if args.full else "quick"
    case_list = _cases(args, parser, preset)
    if args.list:
        for c in case_list:
            print(f"{c.group:24s} {c.label:22s} {c.dtype:8s} {c.threads} thread(s)")
        print(f"{len(case_list)} cases x libraries {', '.join(args.libraries)}")
        return 0
    rep = _measure(args, argv, prog, preset, case_list)
    _write(args, rep)
    failed = [d for d in rep["results"] if d["library"] == "fastlog" and d["status"] in ("wrong", "error")]
    return 1 if failed else 0
