"""Build fastlog's Cython extensions.

The kernels in src/fastlog/_core.pxi (+ the C headers in _csrc/) are compiled
once per x86-64 ISA level into fastlog._core_baseline, _core_avx2 and
_core_avx512; fastlog._dispatch picks one at import time from the CPU's
features (FASTLOG_ISA forces a level).  The default flags are portable: no
native-architecture or fast-math flags.

Environment switches:
  FASTLOG_REQUIRE_OPENMP=1  fail the build if the compiler has no OpenMP
  FASTLOG_NO_OPENMP=1       build without OpenMP
  FASTLOG_BOUNDSCHECK=1     turn Cython bounds/wraparound checks back on
"""
import os
import platform
import sys
import tempfile

import numpy as np
from Cython.Build import cythonize
from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext as _build_ext

HERE = os.path.dirname(os.path.abspath(__file__))
PKG = os.path.join("src", "fastlog")
CSRC = os.path.join(PKG, "_csrc")

IS_X86_64 = platform.machine().lower() in ("x86_64", "amd64")
# -fno-math-errno / -fno-trapping-math let GCC vectorize selects and rint;
# they keep IEEE inf/nan semantics (unlike fast-math).
COMMON = ["-O3", "-fno-math-errno", "-fno-trapping-math", "-fopenmp-simd", "-Wno-unused-function"]
ISA_FLAGS = {"baseline": []}
if IS_X86_64:
    ISA_FLAGS["avx2"] = ["-mavx2", "-mfma", "-mbmi2", "-mf16c"]
    ISA_FLAGS["avx512"] = ["-mavx2", "-mfma", "-mbmi2", "-mf16c", "-mavx512f", "-mavx512dq",
                           "-mavx512bw", "-mavx512vl", "-mavx512cd", "-mprefer-vector-width=512"]


def _truthy(name):
    return os.environ.get(name, "").strip().lower() in ("1", "true", "yes", "on")


def _compiler_has_openmp(compiler):
    """Compile and link a tiny OpenMP program with this compiler."""
    src = "#include <omp.h>\nint main(void){int n=0;\n#pragma omp parallel reduction(+:n)\nn+=1;\nreturn n>0?0:1;}\n"
    with tempfile.TemporaryDirectory() as tmp:
        c = os.path.join(tmp, "omp_probe.c")
        with open(c, "w") as f:
            f.write(src)
        try:
            objs = compiler.compile([c], output_dir=tmp, extra_postargs=["-fopenmp"])
            compiler.link_executable(objs, "omp_probe", output_dir=tmp, extra_postargs=["-fopenmp"])
        except Exception:
            return False
    return True


class build_ext(_build_ext):
    def build_extensions(self):
        use_omp = not _truthy("FASTLOG_NO_OPENMP") and _compiler_has_openmp(self.compiler)
        if not use_omp and _truthy("FASTLOG_REQUIRE_OPENMP"):
            sys.exit("FASTLOG_REQUIRE_OPENMP is set but the compiler cannot build OpenMP code")
        if not use_omp:
            print("fastlog: building WITHOUT OpenMP (single-threaded kernels)")
        for ext in self.extensions:
            if use_omp:
                ext.extra_compile_args = ext.extra_compile_args + ["-fopenmp"]
                ext.extra_link_args = ext.extra_link_args + ["-fopenmp"]
        super().build_extensions()


def extensions():
    # setuptools does not see #include'd headers or Cython include files:
    # list them so a change to any of them rebuilds every ISA module.
    import glob
    depends = sorted(glob.glob(os.path.join(CSRC, "*.h")) + glob.glob(os.path.join(PKG, "*.pxi")))
    exts = []
    for isa, flags in ISA_FLAGS.items():
        exts.append(Extension(
            f"fastlog._core_{isa}",
            sources=[os.path.join(PKG, f"_core_{isa}.pyx")],
            include_dirs=[CSRC, np.get_include()],
            define_macros=[("FL_ISA_NAME", f'"{isa}"'), ("NPY_NO_DEPRECATED_API", "NPY_1_7_API_VERSION")],
            extra_compile_args=COMMON + flags,
            depends=depends,
        ))
    checks = _truthy("FASTLOG_BOUNDSCHECK")
    return cythonize(
        exts,
        compiler_directives={
            "language_level": 3,
            "boundscheck": checks,
            "wraparound": checks,
            "cdivision": True,
            "initializedcheck": checks,
        },
        include_path=[PKG],
    )


setup(ext_modules=extensions(), cmdclass={"build_ext": build_ext})
