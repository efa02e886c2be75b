"""Helpers for building a portable (manylinux_2_28 or older) fastlog wheel,
for x86-64 or aarch64 (the architecture is read from each ELF file).

fastlog's own compiled objects need only old glibc symbols (GLIBC_2.14 or
older on x86-64, GLIBC_2.17 -- the first aarch64 glibc -- on aarch64), but
GCC's `-fopenmp` makes them depend on libgomp.so.1, and `auditwheel repair`
bundles whichever libgomp the loader finds.  The host's libgomp (GCC 12 on
Debian 12) needs GLIBC_2.34, which caps the wheel at manylinux_2_34.  The fix
used here is the one the manylinux images apply implicitly: bundle a
libgomp.so.1 that was itself built for an old glibc.  `fetch-libgomp` takes
the one scikit-learn ships in its manylinux wheels for the architecture
(GCC runtime, GPLv3 + GCC Runtime Library Exception: redistributable, the
same license as the libgomp auditwheel bundles by default), and
`check-omp` verifies that it exports every GOMP_/OMP_ symbol version the
extension imports (libgomp keeps old symbol versions stable, so code compiled
by a newer GCC runs on an older libgomp as long as no newer symbol is used).

    python scripts/wheel_tools.py fetch-libgomp DIR [ARCH]   # DIR/libgomp.so.1 (ARCH: x86_64, aarch64)
    python scripts/wheel_tools.py glibc FILE_OR_WHEEL...      # GLIBC_ summary
    python scripts/wheel_tools.py check-omp WHEEL LIBGOMP     # symbols present?
    python scripts/wheel_tools.py check-tag WHEEL [2.28]      # tag old enough?
    python scripts/wheel_tools.py check-arch WHEEL ARCH       # every ELF file built for ARCH?

Only the standard library, `pip` and binutils' `objdump` are used (for an
aarch64 file on another machine, Debian's `aarch64-linux-gnu-objdump` when
it is installed).
"""
import glob
import hashlib
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
import zipfile

# The wheel whose bundled libgomp is taken (any CPython/manylinux wheel of
# this release carries the same file); override with FASTLOG_LIBGOMP_FROM.
LIBGOMP_FROM = "scikit-learn==1.9.1"
MAX_GLIBC = (2, 28)
LEGACY_TAGS = {"manylinux1": (2, 5), "manylinux2010": (2, 12), "manylinux2014": (2, 17)}


def _ver(s):
    return tuple(int(p) for p in s.split("."))


def _fmt(v):
    return ".".join(str(p) for p in v)


# ELF e_machine -> architecture name (as in wheel platform tags).
ELF_MACHINES = {62: "x86_64", 183: "aarch64"}


def elf_arch(path):
    """The architecture an ELF file is built for (from its header's e_machine)."""
    with open(path, "rb") as f:
        head = f.read(20)
    if head[:4] != b"\x7fELF":
        raise ValueError(f"{path}: not an ELF file")
    machine = int.from_bytes(head[18:20], "little" if head[5] == 1 else "big")
    return ELF_MACHINES.get(machine, f"e_machine={machine}")


def _objdump(path):
    """objdump for this file: the host's for host files, else `<arch>-linux-gnu-objdump` if installed."""
    arch = elf_arch(path)
    if arch != platform.machine():
        cross = shutil.which(f"{arch}-linux-gnu-objdump")
        if cross:
            return cross
    return "objdump"


def _dynsyms(path):
    """(defined, undefined) sets of (name, version) from `objdump -T`."""
    out = subprocess.run([_objdump(path), "-T", path], check=True, capture_output=True, text=True).stdout
    defined, undefined = set(), set()
    for line in out.splitlines():
        # 0000 g    DF .text  0000  (GOMP_4.0)   GOMP_parallel   |   0000  DF *UND*  0000 (GOMP_4.0) GOMP_parallel
        m = re.search(r"\s(\*UND\*|\.\S+)\s+[0-9a-f]+\s+(?:\(?([A-Za-z_][\w.]*)\)?\s+)?(\S+)$", line)
        if not m or not m.group(2):
            continue
        section, version, name = m.groups()
        (undefined if section == "*UND*" else defined).add((name, version))
    return defined, undefined


def _elf_files(paths, tmp):
    """Expand wheels into their .so files (extracted under tmp)."""
    files = []
    for p in paths:
        if p.endswith(".whl"):
            with zipfile.ZipFile(p) as z:
                for n in z.namelist():
                    if re.search(r"\.so(\.\d+)*$", n):
                        files.append(z.extract(n, tmp))
        else:
            files.append(p)
    return files


def glibc_needed(path):
    """Highest GLIBC_x.y symbol version `path` needs, and all of them."""
    _, undefined = _dynsyms(path)
    vers = sorted({_ver(v[6:]) for _, v in undefined if v and v.startswith("GLIBC_")})
    return (vers[-1] if vers else None), vers


def cmd_glibc(paths):
    worst = (0,)
    with tempfile.TemporaryDirectory() as tmp:
        for f in _elf_files(paths, tmp):
            top, vers = glibc_needed(f)
            name = os.path.relpath(f, tmp) if f.startswith(tmp) else f
            print(f"  {name}: GLIBC {', '.join(_fmt(v) for v in vers) or '-'}"
                  f"  (max {_fmt(top) if top else '-'})")
            worst = max(worst, top or (0,))
    print(f"  highest GLIBC needed: {_fmt(worst)}")
    return 0


def cmd_fetch_libgomp(dest, arch=None):
    """Put an old-glibc libgomp.so.1 for `arch` (default: this machine's) into
    dest, taken from a manylinux wheel."""
    arch = arch or platform.machine()
    os.makedirs(dest, exist_ok=True)
    target = os.path.join(dest, "libgomp.so.1")
    spec = os.environ.get("FASTLOG_LIBGOMP_FROM", LIBGOMP_FROM)
    if not os.path.exists(target):
        with tempfile.TemporaryDirectory() as tmp:
            subprocess.run([sys.executable, "-m", "pip", "download", "-q", "--no-deps",
                            "--only-binary", ":all:", "--platform", f"manylinux_2_28_{arch}",
                            "--python-version", "3.11", "--implementation", "cp", "--abi", "cp311",
                            "-d", tmp, spec], check=True)
            whl, = glob.glob(os.path.join(tmp, "*.whl"))
            with zipfile.ZipFile(whl) as z:
                name, = [n for n in z.namelist() if re.search(r"\.libs/libgomp[^/]*\.so", n)]
                with z.open(name) as src, open(target, "wb") as dst:
                    shutil.copyfileobj(src, dst)
            print(f"libgomp.so.1 <- {os.path.basename(whl)}:{name}")
    if elf_arch(target) != arch:
        print(f"ERROR: {target} is built for {elf_arch(target)}, not {arch}", file=sys.stderr)
        return 1
    top, _ = glibc_needed(target)
    with open(target, "rb") as f:
        digest = hashlib.sha256(f.read()).hexdigest()
    print(f"{target}: {os.path.getsize(target)} bytes, sha256 {digest[:16]}..., needs GLIBC {_fmt(top)}")
    if top > MAX_GLIBC:
        print(f"ERROR: this libgomp needs GLIBC {_fmt(top)} > {_fmt(MAX_GLIBC)}", file=sys.stderr)
        return 1
    return 0


def cmd_check_omp(wheel, libgomp):
    """Every GOMP_/OMP_ symbol the wheel's extensions import must be in libgomp."""
    exported, _ = _dynsyms(libgomp)
    missing, used = set(), set()
    with tempfile.TemporaryDirectory() as tmp:
        for f in _elf_files([wheel], tmp):
            if "libgomp" in os.path.basename(f):
                continue
            _, undefined = _dynsyms(f)
            need = {s for s in undefined if s[1] and re.match(r"G?OMP_", s[1])}
            used |= need
            missing |= need - exported
    print(f"  OpenMP symbols imported: {len(used)} "
          f"({', '.join(sorted({v for _, v in used}))}); missing from {os.path.basename(libgomp)}: "
          f"{len(missing)}")
    if missing:
        for name, ver in sorted(missing):
            print(f"    MISSING {name}@{ver}", file=sys.stderr)
        return 1
    return 0


def wheel_glibc_floor(wheel):
    """The newest glibc any of the wheel's platform tags asks for (None if not manylinux)."""
    plats = os.path.basename(wheel)[:-4].split("-")[-1].split(".")
    floors = []
    for p in plats:
        m = re.match(r"manylinux_(\d+)_(\d+)_", p)
        if m:
            floors.append((int(m.group(1)), int(m.group(2))))
        elif p.split("_")[0] in LEGACY_TAGS:
            floors.append(LEGACY_TAGS[p.split("_")[0]])
        else:
            return None
    return max(floors)


def cmd_check_tag(wheel, limit=None):
    limit = _ver(limit) if limit else MAX_GLIBC
    floor = wheel_glibc_floor(wheel)
    tag = os.path.basename(wheel)[:-4].split("-")[-1]
    if floor is None or floor > limit:
        print(f"ERROR: wheel tag {tag} is not manylinux_{limit[0]}_{limit[1]} or older", file=sys.stderr)
        return 1
    print(f"  wheel tag {tag}: needs glibc >= {_fmt(floor)} (limit {_fmt(limit)}): OK")
    return 0


def cmd_check_arch(wheel, arch):
    """Every ELF file in the wheel, and its platform tags, are for `arch`."""
    bad = 0
    with tempfile.TemporaryDirectory() as tmp:
        for f in _elf_files([wheel], tmp):
            got = elf_arch(f)
            print(f"  {os.path.relpath(f, tmp)}: {got}")
            bad += got != arch
    plats = os.path.basename(wheel)[:-4].split("-")[-1].split(".")
    wrong = [p for p in plats if not p.endswith("_" + arch)]
    if wrong:
        print(f"ERROR: platform tags {', '.join(wrong)} are not for {arch}", file=sys.stderr)
    if bad:
        print(f"ERROR: {bad} ELF file(s) not built for {arch}", file=sys.stderr)
    return 1 if bad or wrong else 0


def main(argv):
    cmds = {"glibc": lambda a: cmd_glibc(a), "fetch-libgomp": lambda a: cmd_fetch_libgomp(*a),
            "check-omp": lambda a: cmd_check_omp(*a), "check-tag": lambda a: cmd_check_tag(*a),
            "check-arch": lambda a: cmd_check_arch(*a)}
    if not argv or argv[0] not in cmds:
        print(__doc__)
        return 2
    return cmds[argv[0]](argv[1:])


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
