#!/usr/bin/env bash
# The test suite on one more CPython than the main run's, in a venv of its own, against a
# regular (not editable) install.  CI runs the main suite on the oldest supported CPython
# (3.11, with the local torch wheel) and this on the newest one the machine has.
#
#   bash scripts/test_python.sh            # the newest supported CPython found (pyenv's or on PATH)
#   bash scripts/test_python.sh 3.12       # that version
#   PYTHON=/path/to/python bash scripts/test_python.sh
#
# torch is not installed here: `pip install torch==2.13.0` is a local wheel for CPython 3.11
# only, and anything else pulls gigabytes of CUDA; the torch tests run in the main job.
# Prints one summary line; exits non-zero on any failure.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/_pythons.sh

py=${PYTHON:-}
if [ -z "$py" ]; then
    newest_first=$(printf '%s\n' "${SUPPORTED_PYTHONS[@]}" | sort -rV)
    for v in ${1:-$newest_first}; do
        py=$(find_python "$v")
        [ -n "$py" ] && break
    done
fi
if [ -z "$py" ]; then
    echo "test_python: no CPython ${1:-of ${SUPPORTED_PYTHONS[*]}} found" >&2
    exit 1
fi
ver=$("$py" -c "import sys; print('%d.%d' % sys.version_info[:2])")
venv=${FASTLOG_PY_VENV:-${TMPDIR:-/tmp}/fastlog-py$ver}
t0=$(date +%s)
echo "== CPython $ver ($py): venv $venv"
[ -x "$venv/bin/python" ] || "$py" -m venv "$venv"
"$venv/bin/python" -m pip install -q --upgrade pip
FASTLOG_REQUIRE_OPENMP=1 "$venv/bin/python" -m pip install -q ".[test]"
"$venv/bin/python" -c "import fastlog; fastlog.show_config()"
status=0
"$venv/bin/python" -m pytest -q -p no:cacheprovider tests || status=$?
echo "test_python: CPython $ver $([ $status = 0 ] && echo passed || echo FAILED) in $(( $(date +%s) - t0 )) s"
exit $status
