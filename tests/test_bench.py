"""The benchmark command (fastlog.bench): runs, reports, JSON, compare, agreement check.

These run the command on tiny shapes (hidden --tiny preset); they check what
the report says and what it refuses (a wrong answer), never how fast anything is.
"""
import copy
import json
import os
import sys

import numpy as np
import pytest

import fastlog
from fastlog.bench import cases, main, report, runner, timing

TINY = ["--tiny", "--no-progress"]


def _run(capsys, *args):
    rc = main(TINY + list(args))
    return rc, capsys.readouterr().out


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    """One tiny run of two operations, saved as JSON: (path, printed text, exit status)."""
    path = str(tmp_path_factory.mktemp("bench") / "r.json")
    import contextlib
    import io
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        rc = main(TINY + ["--groups", "log_softmax,cross_entropy_fwd_bwd", "--json", path])
    return path, buf.getvalue(), rc


# ------------------------------------------------------------------ running --
def test_tiny_run_reports_machine_tables_and_saves_json(saved):
    path, text, rc = saved
    assert rc == 0
    m = fastlog.config()
    assert text.startswith("fastlog benchmark report")
    assert m["cpu"] in text and f"ISA build {m['isa']}" in text
    assert "copy bandwidth" in text and "GB/s" in text
    assert "log_softmax(x, axis=-1)" in text
    assert "cross-entropy forward+backward" in text
    assert "thread scaling" in text or fastlog.config()["max_threads"] < 2
    rep = report.load_json(path)
    assert rep["format"] == report.FORMAT
    assert rep["machine"]["isa"] == m["isa"]
    assert rep["bandwidth"]["bytes_per_s"] > 0
    res = report.results_of(rep)
    groups = {r.case.group for r in res}
    assert groups == {"log_softmax", "cross_entropy_fwd_bwd"}
    fl = [r for r in res if r.library == "fastlog"]
    assert fl and all(r.status == "ok" for r in fl)
    np_ = [r for r in res if r.library == "numpy"]
    assert np_ and all(r.status == "ok" for r in np_)
    assert {r.case.shape for r in fl} == {(8, 5), (4, 1000)}
    assert {r.case.dtype for r in fl} == {"float32", "float64"}
    for r in res:
        if r.status == "ok":
            s = r.stats
            assert 0 < s.min <= s.q1 <= s.median <= s.q3 <= s.max
            assert s.samples >= 2 and s.number >= 1
            assert r.err is not None and r.err < 1e-3


def test_json_round_trip_reprints_the_same_report(saved):
    path, text, _ = saved
    rep = report.load_json(path)
    again = report.format_report(rep)
    assert again in text
    for d in rep["results"]:
        assert runner.Result.from_dict(d).to_dict() == d


def test_load_json_rejects_other_files(tmp_path):
    p = tmp_path / "x.json"
    p.write_text(json.dumps({"hello": 1}))
    with pytest.raises(ValueError, match="not a fastlog-bench report"):
        report.load_json(str(p))


def test_floor_column_uses_the_measured_bandwidth(saved):
    rep = report.load_json(saved[0])
    bw = rep["bandwidth"]["bytes_per_s"]
    x_bytes = 4 * 1000 * 4
    fs = report.floor_seconds("cross_entropy_fwd_bwd", (4, 1000), "float32", bw)
    assert fs == pytest.approx(2 * x_bytes / bw)
    assert report.floor_seconds("cross_entropy_fwd_bwd", (8, 5), "float32", bw) is None  # C < 1000
    assert report.floor_seconds("logsumexp", (4, 1000), "float64", bw) == pytest.approx(
        4 * 1000 * 8 / bw)


# ---------------------------------------------------------------- compare --
def _scaled(rep, factor, library="fastlog"):
    out = copy.deepcopy(rep)
    for d in out["results"]:
        if d["library"] == library and d["stats"]:
            for k in ("median", "q1", "q3", "min", "max"):
                d["stats"][k] *= factor
    return out


def _tight(rep):
    """The report with each quartile at its median: the compare verdicts then
    depend only on the scaling, not on how noisy the tiny run happened to be
    (a measured IQR wider than 2x would make a 2x change 'unchanged')."""
    out = copy.deepcopy(rep)
    for d in out["results"]:
        if d["stats"]:
            d["stats"]["q1"] = d["stats"]["q3"] = d["stats"]["median"]
    return out


def test_compare_reports_faster_slower_and_unchanged(saved, tmp_path, capsys):
    rep = _tight(report.load_json(saved[0]))
    n_fl = sum(1 for d in rep["results"] if d["library"] == "fastlog" and d["status"] == "ok")
    n_ok = sum(1 for d in rep["results"] if d["status"] == "ok")

    _, counts = report.format_compare(rep, _scaled(rep, 0.5))
    assert counts == {"faster": n_fl, "slower": 0, "same": n_ok - n_fl}
    _, counts = report.format_compare(rep, _scaled(rep, 2.0))
    assert counts == {"faster": 0, "slower": n_fl, "same": n_ok - n_fl}
    _, counts = report.format_compare(rep, rep)
    assert counts == {"faster": 0, "slower": 0, "same": n_ok}
    # Within the threshold: not a change.
    _, counts = report.format_compare(rep, _scaled(rep, 1.02), threshold=0.05)
    assert counts["slower"] == 0

    old, new = tmp_path / "old.json", tmp_path / "new.json"
    report.save_json(rep, str(old))
    report.save_json(_scaled(rep, 0.5), str(new))
    rc = main(["--compare", str(old), str(new), "--libraries", "fastlog"])
    out = capsys.readouterr().out
    assert rc == 0
    assert "FASTER" in out and "SLOWER" not in out
    assert f"summary: {n_fl} faster, 0 slower, 0 unchanged" in out


def test_compare_rejects_a_file_that_is_not_a_report(saved, tmp_path, capsys):
    bad = tmp_path / "bad.json"
    bad.write_text("[]")
    with pytest.raises(SystemExit) as e:
        main(["--compare", saved[0], str(bad)])
    assert e.value.code == 2
    assert "not a fastlog-bench report" in capsys.readouterr().err


# ----------------------------------------------------------- agreement check --
def test_a_wrong_fastlog_answer_fails_the_run_and_is_not_timed(monkeypatch, tmp_path, capsys):
    def wrong_builder(d):
        x = d["x"]
        return lambda: fastlog.log_softmax(x, axis=-1) + x.dtype.type(1e-2)

    monkeypatch.setitem(cases.GROUPS["log_softmax"].impls, "fastlog", wrong_builder)
    path = str(tmp_path / "w.json")
    rc, out = _run(capsys, "--groups", "log_softmax", "--libraries", "fastlog,numpy", "--json", path)
    assert rc == 1
    assert "WRONG" in out and "FAILURES" in out
    res = report.results_of(report.load_json(path))
    fl = [r for r in res if r.library == "fastlog"]
    assert fl and all(r.status == "wrong" and r.stats is None for r in fl)
    assert all(r.err > 1e-4 for r in fl)
    assert all(r.status == "ok" for r in res if r.library == "numpy")


def test_a_crashing_fastlog_call_is_reported_as_error(monkeypatch, capsys):
    def broken(d):
        def run():
            raise RuntimeError("boom")
        return run

    monkeypatch.setitem(cases.GROUPS["logsumexp"].impls, "fastlog", broken)
    rc, out = _run(capsys, "--groups", "logsumexp", "--libraries", "fastlog")
    assert rc == 1
    assert "ERROR: RuntimeError: boom" in out


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_agreement_accepts_rounding_and_rejects_real_errors(dtype):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((16, 300)) * 3
    ref = cases.np_log_softmax(x)
    good = cases.np_log_softmax(x.astype(dtype))
    assert cases.agreement(good, ref, dtype)[0]
    assert cases.agreement((np.float64(1.5), good), (np.float64(1.5), ref), dtype)[0]
    bad = good.copy()
    bad[3, 7] *= 1.01
    ok, err = cases.agreement(bad, ref, dtype)
    assert not ok and err > 1e-3
    assert not cases.agreement(good[:, :-1], ref, dtype)[0]            # shape
    nan = good.copy()
    nan[0, 0] = np.nan
    assert not cases.agreement(nan, ref, dtype)[0]
    assert not cases.agreement((good,), (ref, ref), dtype)[0]           # missing output
    assert not cases.agreement(cases.np_softmax(x.astype(dtype)), cases.np_softmax(x) * 1.001, dtype)[0]


# --------------------------------------------------------- missing libraries --
def test_missing_torch_and_missing_fastlog_api_are_skipped_with_a_reason(monkeypatch, capsys):
    monkeypatch.setattr(cases, "_torch_cache", [None])
    monkeypatch.delattr(fastlog, "cross_entropy_and_grad")
    rc, out = _run(capsys, "--groups", "cross_entropy_fwd_bwd", "--dtypes", "float32", "--threads", "1")
    assert rc == 0
    assert "torch: PyTorch is not installed" in out
    assert "fastlog: fastlog.cross_entropy_and_grad is not in this build" in out
    assert "n/a" in out


# ------------------------------------------------------------ plan / options --
def test_quick_plan_has_the_required_shapes_dtypes_and_threads():
    cs = cases.plan("quick", max_threads=2)
    ce = {(c.shape, c.dtype, c.threads) for c in cs if c.group == "cross_entropy_fwd_bwd"}
    ls = {(c.shape, c.dtype, c.threads) for c in cs if c.group == "log_softmax"}
    shapes = [(64, 10), (4096, 10), (4096, 1000), (1024, 32000), (128, 128256)]
    for shape in shapes:
        assert (shape, "float32", 1) in ce and (shape, "float32", 1) in ls
    for shape in shapes[:3]:
        assert (shape, "float64", 1) in ce and (shape, "float64", 1) in ls
    for shape in [(4096, 1000), (1024, 32000)]:
        assert (shape, "float32", 2) in ce and (shape, "float32", 2) in ls
    assert not any(c.threads > 1 for c in cases.plan("quick", max_threads=1))
    assert {c.group for c in cs} == set(cases.GROUPS)
    full = {(c.group, c.shape, c.dtype, c.threads) for c in cases.plan("full", max_threads=2)}
    for g in ("log_softmax", "cross_entropy_fwd_bwd", "nll", "bce_with_logits"):
        for shape in shapes:
            for dt in ("float32", "float64"):
                assert {(g, shape, dt, 1), (g, shape, dt, 2)} <= full


def test_plan_overrides_and_aliases():
    cs = cases.plan("quick", ["ce"], shapes=[(32, 7)], dtypes=["float64"], threads=[1], max_threads=2)
    assert {c.group for c in cs} == {"cross_entropy", "cross_entropy_fwd_bwd"}
    assert {(c.shape, c.dtype, c.threads) for c in cs} == {((32, 7), "float64", 1)}
    assert {c.group for c in cases.plan("quick", ["mlp"])} == {"mlp_train", "mlp_predict"}
    with pytest.raises(ValueError, match="unknown group 'nope'"):
        cases.plan("quick", ["nope"])
    assert cases.parse_shape("4096x1000") == (4096, 1000)
    with pytest.raises(ValueError, match="bad shape"):
        cases.parse_shape("4096 by 1000")


@pytest.mark.parametrize("argv, msg", [
    (["--groups", "nope"], "unknown group"),
    (["--threads", "0"], "positive integers"),
    (["--shapes", "4x"], "bad shape"),
    (["--libraries", "jax"], "unknown library"),
    (["--dtypes", "float16"], "unknown dtype"),
])
def test_bad_options_exit_with_a_message(argv, msg, capsys):
    with pytest.raises(SystemExit) as e:
        main(TINY + argv)
    assert e.value.code == 2
    assert msg in capsys.readouterr().err


def test_list_prints_cases_without_running(capsys):
    rc, out = _run(capsys, "--list", "--groups", "nll")
    assert rc == 0
    assert "nll" in out and "cases x libraries" in out and "benchmark report" not in out


# ------------------------------------------------------------------ timing --
def test_measure_stats_are_consistent():
    calls = []
    st = timing.measure(lambda: calls.append(1), timing.Budget(target_s=0.0, min_samples=4,
                                                               max_samples=4, min_sample_s=1e-4))
    assert st.samples == 4
    assert len(calls) == 1 + 1 + 4 * st.number   # warm-up, calibration, samples
    assert 0 < st.min <= st.q1 <= st.median <= st.q3 <= st.max


def test_pinned_threads_pins_and_restores():
    before = fastlog.get_num_threads()
    with timing.pinned_threads(1):
        assert fastlog.get_num_threads() == 1
        torch = sys.modules.get("torch")
        if torch is not None:
            assert torch.get_num_threads() == 1
    assert fastlog.get_num_threads() == before


def test_copy_bandwidth_is_positive():
    med, lo, hi = timing.copy_bandwidth(2**20, repeats=3)
    assert 0 < lo <= med <= hi


# ------------------------------------------------------------- plot and ISA --
def test_plot_writes_a_png(saved, tmp_path):
    pytest.importorskip("matplotlib")
    p = tmp_path / "speedup.png"
    report.plot_report(report.load_json(saved[0]), str(p))
    assert p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_isa_option_reruns_under_the_forced_build(tmp_path, capfd):
    from fastlog import _dispatch
    level = _dispatch.supported_levels()[0]
    path = str(tmp_path / "isa.json")
    rc = main(TINY + ["--isa", level, "--groups", "logsumexp", "--libraries", "fastlog,numpy",
                      "--dtypes", "float64", "--threads", "1", "--json", path])
    out = capfd.readouterr().out
    assert rc == 0
    assert f"ISA build {level} (forced by FASTLOG_ISA)" in out
    assert f"FASTLOG_ISA={level} " in out
    rep = report.load_json(path)
    assert rep["machine"]["isa"] == level and rep["machine"]["isa_forced"] == level


def test_isa_option_rejects_an_unsupported_level(capsys):
    rc = main(TINY + ["--isa", "sse9"])
    assert rc == 2
    assert "supports only" in capsys.readouterr().err


def test_module_entry_point_runs(tmp_path):
    import subprocess
    src = os.path.dirname(os.path.dirname(os.path.abspath(fastlog.__file__)))
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in (src, os.environ.get("PYTHONPATH")) if p))
    proc = subprocess.run([sys.executable, "-m", "fastlog.bench", "--help"], env=env,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0
    assert "--quick" in proc.stdout and "--compare" in proc.stdout and "--isa" in proc.stdout
    assert "--tiny" not in proc.stdout
