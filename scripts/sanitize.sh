#!/usr/bin/env bash
# Build fastlog with AddressSanitizer + UndefinedBehaviorSanitizer (OpenMP on,
# checked at run time) into its own virtual environment, and run the test
# suite under every ISA level this CPU supports.  Zero ASan/UBSan reports is
# the bar: UBSan halts on the first report (halt_on_error=1), ASan aborts on
# its first error, so any report fails the run.
#
#   bash scripts/sanitize.sh              # CI subset (a few minutes per level)
#   bash scripts/sanitize.sh --full       # the whole suite under every level
#   bash scripts/sanitize.sh --survey     # UBSan keeps going: list every distinct report
#   bash scripts/sanitize.sh -- -k ce     # extra pytest arguments after --
#
# Environment: PYTHON (default python3) builds the venv (it must see NumPy,
# SciPy, pytest, meson-python, meson, ninja, Cython: --system-site-packages);
# FASTLOG_SAN_WORK (default /tmp/fastlog-san.<checksum of this checkout's path>: one per
# checkout, so two checkouts never share a build dir or venv) holds the venv and build dir;
# FASTLOG_SAN_LEVELS (default: every level this CPU runs) picks ISA levels.
#
# Python itself is not instrumented, so libasan must be loaded first
# (LD_PRELOAD); leak checking is off (CPython's allocator looks like leaks).
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
work=${FASTLOG_SAN_WORK:-/tmp/fastlog-san.$(printf %s "$here" | cksum | cut -d" " -f1)}
py=${PYTHON:-python3}
full=0
survey=0
extra=()
while [ $# -gt 0 ]; do
    case "$1" in
        --full) full=1 ;;
        --survey) survey=1 ;;
        --) shift; extra=("$@"); break ;;
        *) echo "unknown argument $1" >&2; exit 2 ;;
    esac
    shift
done

cc=${CC:-gcc}
asan=$($cc -print-file-name=libasan.so)
ubsan=$($cc -print-file-name=libubsan.so)
[ -e "$asan" ] && [ -e "$ubsan" ] || { echo "libasan/libubsan not found for $cc" >&2; exit 1; }

echo "== venv and sanitizer build in $work"
mkdir -p "$work"
[ -x "$work/venv/bin/python" ] || $py -m venv --system-site-packages "$work/venv"
vpy="$work/venv/bin/python"
# -O1 keeps the sanitizers' reports readable (meson.build keeps the kernels
# at -O3; their summation order is fixed in the source, so the accuracy
# tests hold under instrumentation too).  OpenMP is required (the build fails
# without it) and config()["openmp_threads_ok"] is checked at run time below.
FASTLOG_REQUIRE_OPENMP=1 "$vpy" -m pip install -q --no-deps --no-build-isolation \
    -Cbuild-dir="$work/build" \
    -Csetup-args=-Db_sanitize=address,undefined \
    -Csetup-args=-Db_lundef=false \
    -Csetup-args=-Doptimization=1 \
    -Csetup-args=-Dc_args=-fno-omit-frame-pointer \
    "$here"

export LD_PRELOAD="$asan:$ubsan"
# Reports also go to files (pytest captures fd 2, and an abort loses it).
logs="$work/reports"
rm -rf "$logs"; mkdir -p "$logs"
export ASAN_OPTIONS=detect_leaks=0:abort_on_error=1:halt_on_error=1:allocator_may_return_null=1:log_path=$logs/asan
if [ "$survey" = 1 ]; then
    export UBSAN_OPTIONS=halt_on_error=0:print_stacktrace=0:log_path=$logs/ubsan
else
    export UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1:log_path=$logs/ubsan
fi
export FASTLOG_REQUIRE_OPENMP=1

cd "$here"
"$vpy" - <<'PY'
import fastlog
c = fastlog.config()
fastlog.show_config()
assert c["openmp"] and c["openmp_threads_ok"], "sanitizer build must run with OpenMP threads"
PY

levels=${FASTLOG_SAN_LEVELS:-$("$vpy" -c "import fastlog._dispatch as d; print(' '.join(d.supported_levels()))")}
if [ "$full" = 1 ]; then
    tests=(tests)
else
    # CI subset: the compiled entry points, every kernel path, threads/ISA,
    # and the numerics (every function through every kernel branch).
    tests=(tests/test_compiled_api.py tests/test_kernel_paths.py tests/test_threads_isa.py tests/test_numerics.py
           tests/test_softmax.py tests/test_losses.py tests/test_linear_ce.py tests/test_mlp.py)
fi
status=0
for lv in $levels; do
    echo "== pytest under ASan+UBSan, FASTLOG_ISA=$lv"
    FASTLOG_ISA=$lv "$vpy" -m pytest -q -x -p no:cacheprovider --capture=sys "${tests[@]}" "${extra[@]}" \
        2>&1 | tee "$logs/pytest-$lv.log" || status=1
done
if grep -qh "runtime error\|ERROR: AddressSanitizer" "$logs"/* 2>/dev/null; then
    echo "== sanitizer reports (distinct locations, count) in $logs"
    grep -h "runtime error\|ERROR: AddressSanitizer" "$logs"/* | sed 's/^[^a-zA-Z_]*src\/fastlog\///; s/^\.*//' \
        | sort | uniq -c | sort -rn
    status=1
else
    echo "== no ASan/UBSan reports"
fi
exit $status
