"""The ``fastlog-bench`` command (also ``python -m fastlog.bench``)."""
import argparse
import os
import subprocess
import sys
import tempfile
import time

from . import cases as _cases
from . import report as _report
from .runner import BUDGETS, run_cases
from .timing import copy_bandwidth

__all__ = ["main"]

EPILOG = """\
examples:
  fastlog-bench                          quick run (about a minute on 2 cores)
  fastlog-bench --full --json full.json  every operation, shape, dtype, 1 and 2 threads
  fastlog-bench --groups ce --shapes 1024x32000 --threads 1,2
  fastlog-bench --isa all                the quick run once per ISA build (FASTLOG_ISA)
  fastlog-bench --compare old.json new.json
groups: """ + ", ".join(_cases.GROUPS) + "; aliases: " + ", ".join(
    f"{k} ({'+'.join(v)})" for k, v in _cases.ALIASES.items())


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
        return [_cases.parse_shape(p) for p in _csv(text)]
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
    p.add_argument("--shapes", type=_shapes, help="N x C shapes for the N x C operations, e.g. 64x10,4096x1000")
    p.add_argument("--dtypes", type=_csv, help="float32, float64 or both")
    p.add_argument("--threads", type=_threads, help="thread counts, e.g. 1,2 (default: per preset)")
    p.add_argument("--libraries", type=_csv, default=list(_cases.LIBRARIES),
                   help="subset of " + ",".join(_cases.LIBRARIES))
    p.add_argument("--json", metavar="PATH", help="save the report as JSON")
    p.add_argument("--plot", metavar="PATH", help="save a PNG of fastlog's speed-up per class count "
                                                  "(needs matplotlib)")
    p.add_argument("--isa", metavar="LEVEL", help="run under FASTLOG_ISA=LEVEL in a subprocess; 'all' "
                                                  "runs every level this CPU supports; or a list a,b")
    p.add_argument("--bandwidth-mb", type=int, default=256, help="size of the copy that measures "
                                                                   "memory bandwidth (default 256)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
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
    child = _strip_option(_strip_option(_strip_option(argv, "--isa"), "--json"), "--plot")
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
                reports.append((lv, _report.load_json(jpath)))
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
        for r in _report.results_of(rep):
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
    _report._table(header, rows, out)
    return "\n".join(out)


def main(argv=None, prog="fastlog-bench"):
    """Entry point of ``fastlog-bench``; returns the exit status (1 if fastlog gave a wrong answer)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = _parser(prog)
    args = parser.parse_args(argv)

    if args.compare:
        try:
            old, new = (_report.load_json(p) for p in args.compare)
        except (OSError, ValueError) as e:
            parser.error(str(e))
        libs = None if args.libraries == list(_cases.LIBRARIES) else args.libraries
        text, _ = _report.format_compare(old, new, args.threshold, libs)
        print(text)
        return 0

    if args.isa:
        return _run_isa(args, argv, prog)

    preset = "tiny" if args.tiny else "full" if args.full else "quick"
    bad = [lib for lib in args.libraries if lib not in _cases.LIBRARIES]
    if bad:
        parser.error(f"unknown library {bad[0]!r}; choose from {', '.join(_cases.LIBRARIES)}")
    if args.dtypes:
        bad = [d for d in args.dtypes if d not in ("float32", "float64")]
        if bad:
            parser.error(f"unknown dtype {bad[0]!r}; choose float32 and/or float64")
    try:
        case_list = _cases.plan(preset, args.groups, args.shapes, args.dtypes, args.threads)
    except ValueError as e:
        parser.error(str(e))
    if not case_list:
        parser.error("nothing to run: the filters leave no case (thread counts above the number of "
                     "cores are dropped)")
    if args.list:
        for c in case_list:
            print(f"{c.group:24s} {c.label:22s} {c.dtype:8s} {c.threads} thread(s)")
        print(f"{len(case_list)} cases x libraries {', '.join(args.libraries)}")
        return 0

    if "torch" in args.libraries:
        try:
            import torch  # noqa: F401  (imported now so that thread pinning reaches it)
        except ImportError:
            pass
    t0 = time.perf_counter()
    mb = 8 if preset == "tiny" else args.bandwidth_mb
    bw = copy_bandwidth(mb * 2**20, repeats=3 if preset == "tiny" else 10 if preset == "full" else 5)
    results = run_cases(case_list, args.libraries, BUDGETS[preset], progress=not args.no_progress)
    isa_env = os.environ.get("FASTLOG_ISA")
    command = (f"FASTLOG_ISA={isa_env} " if isa_env else "") + " ".join([prog] + argv)
    rep = _report.make_report(results, _report.machine_info(), bw + (mb * 2**20,), preset, command,
                              time.perf_counter() - t0)
    print(_report.format_report(rep))
    if args.json:
        _report.save_json(rep, args.json)
        print(f"\nsaved {args.json}")
    if args.plot:
        try:
            _report.plot_report(rep, args.plot)
        except ImportError:
            print(f"\n--plot: matplotlib is not installed (pip install matplotlib); no plot written",
                  file=sys.stderr)
        except ValueError as e:
            print(f"\n--plot: {e}; no plot written", file=sys.stderr)
        else:
            print(f"saved {args.plot}")
    failed = [r for r in results if r.library == "fastlog" and r.status in ("wrong", "error")]
    return 1 if failed else 0
