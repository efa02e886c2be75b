"""Run fastlog's test suite against the installed package, once.

The kernels are compiled for several ISA levels (x86-64, x86-64-v3,
x86-64-v4 on x86; aarch64, aarch64-sve on ARM) and one is chosen at import.
The suite covers every level this CPU supports in ONE process: the tests of
the kernel test files (tests/conftest.py, KERNEL_TEST_FILES) run once per
level through the `isa_level` fixture, which switches fastlog's kernel table;
the other files test Python behaviour and run once, on the best level.
FASTLOG_ISA=<level> in the environment restricts the run to that level.

    python scripts/run_tests.py            # every level
    python scripts/run_tests.py -x -k ce   # extra arguments go to pytest
"""
import os
import subprocess
import sys

HERE = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


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
    forced = os.environ.get("FASTLOG_ISA", "").strip()
    print(f"fastlog under test: {where}\nISA levels on this CPU: {levels.replace(',', ', ')}"
          f"{f' (FASTLOG_ISA={forced}: that level only)' if forced else ''}", flush=True)
    return subprocess.call([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *argv], cwd=HERE)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
