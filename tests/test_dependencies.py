"""Dependencies: the suite collects without torch (its tests skip cleanly), and
importing fastlog imports none of the optional packages."""
import os
import subprocess
import sys
import textwrap

HERE = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_suite_collects_without_torch(tmp_path):
    # A `torch` that cannot be imported, ahead of the real one on sys.path.  It raises
    # ModuleNotFoundError, as a missing torch does: pytest 9.2's importorskip no longer
    # skips on a plain ImportError (9.0 only warned).
    (tmp_path / "torch.py").write_text("raise ModuleNotFoundError('torch hidden for this test', name='torch')\n")
    # (FASTLOG_ISA: the files' kernel tests at one ISA level, not at every one)
    from fastlog._dispatch import core
    env = dict(os.environ, PYTHONPATH=str(tmp_path), FASTLOG_ISA=core.ISA)
    r = subprocess.run([sys.executable, "-m", "pytest", "--collect-only", "-q", "-p", "no:cacheprovider",
                        "tests"], cwd=HERE, env=env, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    assert "error" not in r.stdout.lower().splitlines()[-1]
    # The NumPy/SciPy tests of a file that also uses torch as an oracle still run:
    # only the tests that touch torch skip (tests/_optional.py).
    r = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                        "tests/test_softmax.py", "tests/test_errors.py"],
                       cwd=HERE, env=env, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    import re
    counts = dict((k, int(v)) for v, k in re.findall(r"(\d+) (passed|skipped|failed)", r.stdout))
    assert counts.get("passed", 0) >= 100 and not counts.get("failed"), r.stdout[-2000:]


def test_import_fastlog_imports_no_optional_package():
    code = textwrap.dedent("""
        import sys, fastlog
        fastlog.log_softmax([1.0, 2.0])
        bad = [m for m in ("torch", "dask", "matplotlib", "mlxtend", "ml_dtypes", "transformers")
               if m in sys.modules]
        print(",".join(bad))
    """)
    r = subprocess.run([sys.executable, "-c", code], cwd=HERE, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == ""
