"""Dependencies: the suite collects without torch (its tests skip cleanly), and
importing fastlog imports none of the optional packages."""
import os
import subprocess
import sys
import textwrap

HERE = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_suite_collects_without_torch(tmp_path):
    # A `torch` that cannot be imported, ahead of the real one on sys.path.
    (tmp_path / "torch.py").write_text("raise ImportError('torch hidden for this test')\n")
    env = dict(os.environ, PYTHONPATH=str(tmp_path))
    r = subprocess.run([sys.executable, "-m", "pytest", "--collect-only", "-q", "-p", "no:cacheprovider",
                        "tests"], cwd=HERE, env=env, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    assert "error" not in r.stdout.lower().splitlines()[-1]


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
