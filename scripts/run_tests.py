"""Run fastlog's test suite against the installed package, once per ISA level.

The kernels are compiled for several x86-64 levels (baseline, avx2, avx512)
and one is chosen at import time; FASTLOG_ISA forces a level.  This runs the
whole pytest suite under the best level, then again under every other level
this CPU supports, so every compiled path is tested on one machine.

Test files that exercise no kernel path of their own (process groups, Dask
clusters, the command line, examples, docstring examples, model files, the
benchmark report, packaging) run once, under the best level: their kernels
are the ones the other files test at every level, and they are the slow part
of the suite.

    python scripts/run_tests.py            # all levels
    python scripts/run_tests.py -x -k ce   # extra arguments go to pytest
"""
import os
import subprocess
import sys

HERE = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# Run under the best ISA level only (see the module docstring).
ONCE = ("test_bench.py", "test_dask.py", "test_data.py", "test_dependencies.py",
        "test_distributed.py", "test_docs.py", "test_examples.py", "test_patch.py",
        "test_torch_compile.py", "test_torch_ops.py", "test_workflow_io.py", "test_workflow_train.py")


def main(argv):
    # Never test the source tree by accident: `import fastlog` must be the
    # installed package (src/ is not on sys.path; run from the repo root).
    probe = subprocess.run(
        [sys.executable, "-c", "import fastlog, fastlog._dispatch as d; print(fastlog.__file__);"
         "print(','.join(d.supported_levels()))"],
        cwd=HERE, capture_output=True, text=True)
    if probe.returncode:
        sys.stderr.write(probe.stderr)
        return probe.returncode
    where, levels = probe.stdout.split()
    levels = levels.split(",")
    print(f"fastlog under test: {where}\nISA levels on this CPU: {', '.join(levels)}", flush=True)
    order = [levels[-1]] + [lv for lv in reversed(levels[:-1])]
    failed = []
    for lv in order:
        env = dict(os.environ, FASTLOG_ISA=lv)
        skip = [] if lv == order[0] else [f"--ignore=tests/{f}" for f in ONCE]
        print(f"\n===== pytest with FASTLOG_ISA={lv}"
              f"{'' if lv == order[0] else ' (kernel tests; the rest ran above)'} =====", flush=True)
        rc = subprocess.call([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *skip, *argv],
                             cwd=HERE, env=env)
        if rc:
            failed.append(f"{lv} (exit {rc})")
    if failed:
        print(f"\nFAILED under: {', '.join(failed)}")
        return 1
    print(f"\nall test runs passed under: {', '.join(order)}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
