"""The benchmark command (fastlog.bench): runs, floors, noise flags, reports, compare, plots.

These run the command on tiny shapes (hidden --tiny preset) or feed the
report code made-up timings; they check what the report says and what it
refuses (a wrong answer), never how fast anything is.
"""
import contextlib
import copy
import io
import json
import os
import re
import sys

import numpy as np
import pytest

import fastlog
from fastlog import _reference as ref
from fastlog.bench import (data, floors, impls, main, noise, oracle, presets, progress, records, report,
                           runner, timing)
from fastlog.bench.compare import format_compare
from fastlog.bench.groups import GROUPS
from fastlog.bench.presets import Case
from fastlog.bench.timing import Stats

TINY = ["--tiny", "--no-progress"]


def _run(capsys, *args):
    rc = main(TINY + list(args))
    return rc, capsys.readouterr().out


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    """One tiny run (softmax row ops, the MLP step, linear+CE), saved as JSON and Markdown."""
    d = tmp_path_factory.mktemp("bench")
    path, md = str(d / "r.json"), str(d / "r.md")
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        rc = main(TINY + ["--groups", "log_softmax,cross_entropy_fwd_bwd,mlp_train,linear_cross_entropy",
                          "--json", path, "--markdown", md])
    return path, buf.getvalue(), rc, md


# ------------------------------------------------------------------ running --
def test_tiny_run_reports_machine_tables_and_saves_json(saved):
    path, text, rc, _ = saved
    assert rc == 0
    m = fastlog.config()
    assert text.startswith("fastlog benchmark report")
    assert m["cpu"] in text and f"ISA build {m['isa']}" in text
    assert "log_softmax(x, axis=-1)" in text and "cross-entropy forward+backward" in text
    assert "thread scaling" in text or presets.usable_cores() < 2
    assert "timings, 0 fastlog failures" in text and "flagged as noisy" in text
    rep = records.load_json(path)
    assert rep["format"] == records.FORMAT and rep["machine"]["isa"] == m["isa"]
    res = records.results_of(rep)
    assert {r.case.group for r in res} == {"log_softmax", "cross_entropy_fwd_bwd", "mlp_train",
                                           "linear_cross_entropy"}
    fl = [r for r in res if r.library == "fastlog"]
    assert fl and all(r.status == "ok" for r in fl)
    assert all(r.status == "ok" for r in res if r.library == "numpy")
    for r in res:
        if r.status == "ok":
            s = r.stats
            assert 0 < s.min <= s.q1 <= s.median <= s.q3 <= s.max
            assert r.err is not None and r.err < 1e-3
            assert set(r.noise) >= {"attempts", "spread", "others", "load1", "flag"}
            assert r.noise["spread"] == pytest.approx(s.spread)


def test_json_round_trip_reprints_the_same_report(saved):
    path, text, _, _ = saved
    rep = records.load_json(path)
    assert report.format_report(rep) in text
    for d in rep["results"]:
        assert runner.Result.from_dict(d).to_dict() == d


def test_load_json_rejects_other_files(tmp_path):
    p = tmp_path / "x.json"
    p.write_text(json.dumps({"hello": 1}))
    with pytest.raises(ValueError, match="not a fastlog-bench report"):
        records.load_json(str(p))


def test_text_report_fits_in_100_columns(saved):
    rep = records.load_json(saved[0])
    for line in report.format_report(rep).splitlines():
        assert len(line) <= report.WIDTH, line
    # a table too wide for 60 columns is split, its key columns repeated in every part
    t = report.Table("t", ["shape", "dtype", "thr"] + [f"column {i}" for i in range(8)],
                     [["4096x1000", "float32", "1"] + ["12.3 (4%)"] * 8])
    lines = report.render_table_text(t, width=60)
    assert all(len(ln) <= 60 for ln in lines)
    assert sum(ln.lstrip().startswith("shape") for ln in lines) >= 2
    assert all(f"column {i}" in "\n".join(lines) for i in range(8))


# ------------------------------------------------------------------- floors --
N, C = 1024, 1000


@pytest.mark.parametrize("group, expected", [
    ("log_softmax", 2 * N * C * 4),                    # read x, write y
    ("softmax", 2 * N * C * 4),
    ("logsumexp", N * C * 4 + N * 4),                  # read x, write N results
    ("cross_entropy", N * C * 4 + 8 * N),              # read logits and int64 targets
    ("cross_entropy_fwd_bwd", 2 * N * C * 4 + 8 * N),  # ... and write the gradient
    ("nll", N * 64 + 8 * N + N * C * 4),               # gather 1 line per row, write the gradient
    ("bce_with_logits", 3 * N * C * 4),                # read x and t, write the gradient
])
def test_memory_floor_counts_the_bytes_each_op_moves(group, expected):
    f = GROUPS[group].floor((N, C), "float32")
    assert f.kind == "memory" and f.amount == expected and f.array_bytes == N * C * 4
    assert GROUPS[group].floor((N, C), "bfloat16").array_bytes == N * C * 2


def test_floor_details_half_precision_and_short_rows():
    assert GROUPS["log_softmax"].floor((N, C), "bfloat16").amount == 2 * N * C * 2
    assert GROUPS["cross_entropy_fwd_bwd"].floor((N, C), "float64").amount == 2 * N * C * 8 + 8 * N
    # 10 float32 classes: the gathered row is 40 bytes, less than a cache line
    assert GROUPS["nll"].floor((N, 10), "float32").amount == N * 40 + 8 * N + N * 10 * 4


def test_compute_floor_counts_gemm_flops():
    S = 784 * 128 + 128 * 64 + 64 * 10
    assert GROUPS["mlp_predict"].floor((64,), "float32").amount == 2 * 64 * S
    # forward + weight gradients of 3 layers + input gradients of the last 2
    assert GROUPS["mlp_train"].floor((64,), "float32").amount == 2 * 64 * (3 * S - 784 * 128)
    f = GROUPS["linear_cross_entropy"].floor((256, 512, 32000), "float32")
    assert f.kind == "compute" and f.amount == 6 * 256 * 512 * 32000


def test_gemm_shapes_are_the_products_whose_flops_the_floor_counts():
    for group, shape in (("mlp_train", (64,)), ("mlp_train", (1024,)), ("mlp_predict", (64,)),
                         ("linear_cross_entropy", (256, 512, 32000))):
        shapes = floors.gemm_shapes(group, shape)
        assert sum(2 * m * n * k for m, n, k, _, _ in shapes) == GROUPS[group].floor(shape, "float32").amount
    # the MLP step: forward X @ W.T, weight gradients G.T @ X, input gradients G @ W (not the first layer)
    assert len(floors.gemm_shapes("mlp_train", (64,))) == 3 + 3 + 2
    assert floors.gemm_shapes("softmax", (64, 10)) == []


def test_traffic_splits_each_memory_floor_into_reads_and_writes():
    for name, g in GROUPS.items():
        if g.floor is None or g.kind != "rows":
            continue
        r, w = floors.traffic(name, (N, C), "float32")
        assert r > 0 and w >= 0 and r + w == g.floor((N, C), "float32").amount, name
    assert floors.traffic("nll", (N, C), "float32") == (N * 64 + 8 * N, N * C * 4)      # mostly writes
    assert floors.traffic("logsumexp", (N, C), "float64") == (N * C * 8, N * 8)         # mostly reads
    assert floors.traffic("cross_entropy", (N, C), "float32")[1] == 0                   # a scalar out


def _fake_rates(monkeypatch, calls):
    def rate(kind, per_thread):
        def f(nbytes, threads, repeats):
            calls.append((kind, nbytes, threads))
            return (0.9 * per_thread * threads, 0.5 * per_thread, per_thread * threads)   # (median, min, best)
        return f

    monkeypatch.setattr(floors, "copy_rate", rate("copy", 2e10))      # bytes/s, 2 bytes moved per byte
    monkeypatch.setattr(floors, "read_rate", rate("read", 1.5e10))
    monkeypatch.setattr(floors, "write_rate", rate("write", 4e10))
    monkeypatch.setattr(floors, "exp_rates", lambda dtype, n, repeats: {"fastlog": 2e9 if dtype == "float32"
                                                                         else 1e9, "numpy": 1e9})
    monkeypatch.setattr(floors, "gemm_shape_rate",
                        lambda m, n, k, dtype, threads, ta, tb, repeats: 1e9 * threads * min(m, n, k))


def test_floor_meter_takes_the_larger_of_the_memory_and_exp_floors(monkeypatch):
    calls = []
    _fake_rates(monkeypatch, calls)
    meter = floors.FloorMeter()
    # cross-entropy fwd+bwd 1024x2000: reads = writes (+ targets): the copy's rate binds the memory part
    c1 = Case("cross_entropy_fwd_bwd", (N, 2000), "float32", 1)
    f = meter.floor(c1)
    nc = N * 2000 * 4
    assert f["memory"]["seconds"] == pytest.approx(max((nc + 8 * N) / 1.5e10, nc / 4e10, 2 * nc / 2e10))
    assert f["exp"]["count"] == N * 2000 and f["exp"]["seconds"] == pytest.approx(N * 2000 / 2e9)
    assert f["bound"] == "exp" and f["seconds"] == max(f["memory"]["seconds"], f["exp"]["seconds"])
    # two threads: the exp floor halves (one core's best rate per thread), the bandwidths are remeasured
    f2 = meter.floor(Case("cross_entropy_fwd_bwd", (N, 2000), "float32", 2))
    assert f2["exp"]["seconds"] == pytest.approx(f["exp"]["seconds"] / 2)
    assert f2["memory"]["seconds"] == pytest.approx(f["memory"]["seconds"] / 2)
    meter.floor(Case("log_softmax", (N, 2000), "float32", 1))       # same size: measured once
    assert [c for c in calls if c[0] == "copy"] == [("copy", nc, 1), ("copy", nc, 2)]
    # NLL mostly writes: the write rate (memset) binds, and it has no exponentials
    g = meter.floor(Case("nll", (N, 2000), "float32", 1))
    assert "exp" not in g and g["bound"] == "memory"
    assert g["seconds"] == pytest.approx(max((N * 64 + 8 * N) / 1.5e10, nc / 4e10, 2 * (N * 64 + 8 * N) / 2e10))
    # half precision computes in float32: float32's exp rate; float64 its own
    assert meter.floor(Case("softmax", (N, 2000), "bfloat16", 1))["exp"]["rate"] == 2e9
    assert meter.floor(Case("softmax", (N, 2000), "float64", 1))["exp"]["rate"] == 1e9
    # in cache: no memory floor, but the exponentials still bound it; nll in cache has no floor
    small = meter.floor(Case("log_softmax", (64, 10), "float32", 1))
    assert "memory" not in small and small["bound"] == "exp"
    assert meter.floor(Case("nll", (64, 10), "float32", 1)) is None
    saved = meter.to_dict()
    assert {b["threads"] for b in saved["bandwidth"]} == {1, 2} and saved["exp"][0]["per_s"]["numpy"] == 1e9


def test_gemm_floor_uses_the_best_rate_at_the_operations_own_shapes(monkeypatch):
    _fake_rates(monkeypatch, [])
    meter = floors.FloorMeter()
    g = meter.floor(Case("mlp_train", (64,), "float32", 2))
    shapes = floors.gemm_shapes("mlp_train", (64,))
    best = max(1e9 * 2 * min(s[:3]) for s in shapes)     # the fake rate grows with the smallest dimension
    assert g["bound"] == "gemm" and g["gemm"]["rate"] == best
    assert g["seconds"] == pytest.approx(g["gemm"]["flops"] / best)
    assert tuple(g["gemm"]["at"]) in shapes
    assert len(meter.to_dict()["gemm"]) == len(set(shapes))


def test_x_floor_column_is_fastlog_time_over_the_larger_floor(saved):
    rep = records.load_json(saved[0])
    rows = [f for f in rep["floors"]["rows"]]
    assert rows, "the tiny run has floors (exp floors of the row ops, GEMM floors of the MLP, linear+CE)"
    lce = next(f for f in rows if f["group"] == "linear_cross_entropy")
    fl = next(r for r in records.results_of(rep) if r.library == "fastlog"
              and r.case.group == "linear_cross_entropy")
    table = next(t for t in report.tables_of(rep) if t.title.startswith("fused linear"))
    row = table.rows[0]
    x = fl.stats.median / lce["seconds"]
    assert row[table.header.index("x floor")] == report.fmt_multiple(x) + ("!" if x < 1 else "")
    assert row[table.header.index("GEMM floor ms")] == report.fmt_ms(lce["gemm"]["seconds"])
    assert "best rate SciPy's BLAS reached at the operation's own GEMM shapes" in " ".join(table.notes)
    ce = next(t for t in report.tables_of(rep) if t.title.startswith("cross-entropy forward+backward"))
    assert "exp floor ms" in ce.header


def _below_floor_report(saved_path):
    """The saved tiny report with the cross-entropy rows' floors set to twice fastlog's time."""
    rep = copy.deepcopy(records.load_json(saved_path))
    t = {(d["group"], tuple(d["shape"]), d["dtype"], d["threads"]): d["stats"]["median"]
         for d in rep["results"] if d["library"] == "fastlog" and d["status"] == "ok"}
    n = 0
    for f in rep["floors"]["rows"]:
        if f["group"] == "cross_entropy_fwd_bwd":
            f["exp"]["seconds"] = f["seconds"] = 2 * t[(f["group"], tuple(f["shape"]), f["dtype"], f["threads"])]
            f["bound"] = "exp"
            n += 1
    return rep, n


def test_a_row_below_its_floor_is_reported_loudly(saved):
    rep, n = _below_floor_report(saved[0])
    assert n > 0
    assert len(report.below_floor(rep)) == n
    text = report.format_report(rep)
    assert f"WARNING: {n} fastlog row" in text and "BELOW THE FLOOR" in text
    assert re.search(r"cross-entropy forward\+backward \S+ float\d+ \dt: .* exp floor .* \(x floor 0\.50\)", text)
    assert f"{n} below" in text.splitlines()[-1] or f"{n} below" in text
    t = next(t for t in report.tables_of(rep) if t.title.startswith("cross-entropy forward+backward"))
    assert all(r[t.header.index("x floor")] == "0.50!" for r in t.rows)
    md = report.format_markdown(rep)
    assert "BELOW THE FLOOR" in md and "0.50!" in md
    # the unchanged run: every row at or above its floor
    assert "no row is below its floor" in report.format_report(records.load_json(saved[0]))


def test_old_reports_floors_still_render():
    """Reports saved before the exp floor had one floor per row ('kind': memory or compute)."""
    rep = {"floors": {"rows": [{"group": "mlp_train", "shape": [64], "dtype": "float32", "threads": 1,
                                "kind": "compute", "flops": 1e6, "rate": 1e11, "seconds": 1e-5}]}}
    f = report.floors_of(rep)[("mlp_train", (64,), "float32", 1)]
    assert f["bound"] == "gemm" and f["gemm"]["seconds"] == 1e-5


def test_copy_read_write_exp_and_gemm_rates_are_positive():
    for rate in (floors.copy_rate, floors.read_rate, floors.write_rate):
        med, lo, hi = rate(2**20, threads=2, repeats=3)
        assert 0 < lo <= med <= hi
    assert floors.gemm_rate("float64", 1, n=64) > 0
    assert floors.gemm_shape_rate(32, 16, 8, "float32", 1, True, True, repeats=2) > 0
    assert min(floors.exp_rates("float64", n=1024, repeats=2).values()) > 0


# -------------------------------------------------------------------- noise --
def _stats(median, spread):
    return Stats(median, median * (1 - spread / 2), median * (1 + spread / 2), median * 0.5, median * 2, 5, 1)


QUICK2 = noise.NoisePolicy(retries=2, pause_s=0)
ONCE = noise.NoisePolicy(retries=0, pause_s=0)


class _FakeMonitor:
    """Replays (others, load1) readings, one per measurement."""
    readings = []

    def __enter__(self):
        self.others, self.load1 = self.readings.pop(0)
        return self

    def __exit__(self, *exc):
        return False


def test_noise_reason_spread_competing_load_and_load_average():
    pol = noise.NoisePolicy(max_spread=0.25)
    assert noise.noise_reason(_stats(1.0, 0.1), 0.0, 0.5, 2, 1, pol) is None
    assert "IQR 40%" in noise.noise_reason(_stats(1.0, 0.4), 0.0, 0.5, 2, 1, pol)
    # 1 thread on 2 cores leaves 1 core: others using 1.2 are fine, 1.8 are not
    assert noise.noise_reason(_stats(1.0, 0.1), 1.2, None, 2, 1, pol) is None
    assert "1.8 of 2 cores" in noise.noise_reason(_stats(1.0, 0.1), 1.8, None, 2, 1, pol)
    assert noise.noise_reason(_stats(1.0, 0.1), 0.8, None, 2, 2, pol)         # 2 threads: none free
    # no /proc/stat reading: the load average (minus the row's own threads) decides
    assert noise.noise_reason(_stats(1.0, 0.1), None, 1.4, 2, 1, pol) is None
    assert "load average 3.5" in noise.noise_reason(_stats(1.0, 0.1), None, 3.5, 2, 1, pol)


def test_a_noisy_timing_is_remeasured_and_kept_clean(monkeypatch):
    timings = [_stats(2.0, 0.9), _stats(1.0, 0.05)]
    _FakeMonitor.readings = [(0.0, 0.0), (0.0, 0.0)]
    st, info = noise.measure_reliably(lambda: timings.pop(0), 2, 1, QUICK2, _FakeMonitor)
    assert st.median == 1.0 and info["attempts"] == 2 and info["flag"] is None


def test_a_timing_noisy_every_time_is_flagged_with_the_least_noisy_attempt():
    timings = [_stats(2.0, 0.9), _stats(1.5, 0.5), _stats(3.0, 0.7)]
    _FakeMonitor.readings = [(0.0, 0.0)] * 3
    st, info = noise.measure_reliably(lambda: timings.pop(0), 2, 1, QUICK2, _FakeMonitor)
    assert st.median == 1.5 and info["attempts"] == 3 and "IQR 50%" in info["flag"]
    # competing load alone also flags; retries=0 measures once
    _FakeMonitor.readings = [(1.9, 4.0)]
    st, info = noise.measure_reliably(lambda: _stats(1.0, 0.0), 2, 1, ONCE, _FakeMonitor)
    assert info["attempts"] == 1 and "other processes" in info["flag"]


def test_cpu_monitor_reads_the_machine():
    with noise.CpuMonitor() as mon:
        sum(range(200000))
        import time
        time.sleep(0.06)
    if os.path.exists("/proc/stat"):
        assert mon.others is not None and mon.others >= 0
    assert mon.load1 is None or mon.load1 >= 0


def _synthetic_report(saved_path, noisy_library="numpy"):
    """The saved tiny report with exactly one timing (the first of `noisy_library`) flagged."""
    rep = copy.deepcopy(records.load_json(saved_path))
    timed = [d for d in rep["results"] if d["status"] == "ok"]
    for d in timed:
        d["noise"] = dict(d["noise"], flag=None)
    next(d for d in timed if d["library"] == noisy_library)["noise"]["flag"] = "IQR 80% of the median"
    return rep


def test_noisy_rows_are_marked_in_the_table_and_counted(saved):
    rep = _synthetic_report(saved[0])
    text = report.format_report(rep)
    n_ok = sum(1 for d in rep["results"] if d["status"] == "ok")
    assert f"1 of {n_ok} timings flagged" in text
    assert "1 flagged as noisy (*): 1 IQR over the limit" in text
    marked = [ln for ln in text.splitlines() if re.search(r"\(\d+%\)\*", ln)]
    assert len(marked) == 1
    assert sum(r.noisy for r in records.results_of(rep)) == 1


# ------------------------------------------------------------- output hygiene --
def test_non_terminal_output_has_no_carriage_returns(capsys):
    rc = main(["--tiny", "--groups", "logsumexp", "--libraries", "fastlog,numpy", "--dtypes", "float64",
               "--threads", "1"])
    out, err = capsys.readouterr()
    assert rc == 0
    assert "\r" not in out and "\r" not in err
    assert out.startswith("fastlog benchmark report")
    assert re.match(r"\[1/\d+\] logsumexp", err)          # one plain progress line per operation


def test_progress_bar_redraws_only_on_a_terminal():
    class Tty(io.StringIO):
        def isatty(self):
            return True

    tty, plain = Tty(), io.StringIO()
    for stream in (tty, plain):
        bar = progress.Progress(2, True, stream)
        bar.update("a", section="one")
        bar.update("b", section="one")
        bar.close()
    assert "\r" in tty.getvalue() and tty.getvalue().endswith("\r")
    assert plain.getvalue() == "[1/2] one\n"


def test_markdown_report_is_tables(saved):
    md = open(saved[3]).read()
    assert md.startswith("# fastlog benchmark report")
    blocks, cur = [], []
    for line in md.splitlines() + [""]:
        if line.startswith("|"):
            cur.append(line)
        elif cur:
            blocks.append(cur)
            cur = []
    rep = records.load_json(saved[0])
    assert len(blocks) == len(report.tables_of(rep))
    for b in blocks:
        cells = [re.split(r"(?<!\\)\|", ln)[1:-1] for ln in b]
        assert len({len(c) for c in cells}) == 1                      # same width every row
        assert all(re.fullmatch(r":?-+:?", c.strip()) for c in cells[1])  # separator row
        assert len(b) >= 3
    assert "| shape | dtype | thr | fastlog ms |" in md
    assert "x floor" in md


# ------------------------------------------------------------ missing library --
def test_missing_torch_is_worded_as_the_readme_says(monkeypatch, capsys):
    monkeypatch.setattr(impls, "_torch_cache", [None])
    monkeypatch.delitem(sys.modules, "torch", raising=False)
    monkeypatch.delattr(fastlog, "cross_entropy_and_grad")
    rc, out = _run(capsys, "--groups", "cross_entropy_fwd_bwd", "--dtypes", "float32", "--threads", "1")
    out = " ".join(out.split())   # lines are wrapped at 100 columns
    assert rc == 0
    assert "torch: PyTorch is not installed (pip install torch==2.13.0 to compare against it)" in out
    assert "torch not installed (pip install torch==2.13.0)" in out
    assert "torch.set_num_threads" not in out
    assert "pip install torch " not in out.replace("pip install torch==", "")
    assert "fastlog: fastlog.cross_entropy_and_grad is not in this build" in out
    assert "n/a" in out


def test_half_precision_rows_run_and_fastlog_is_unavailable_until_it_has_kernels(capsys, tmp_path):
    pytest.importorskip("ml_dtypes")
    path = str(tmp_path / "half.json")
    rc, out = _run(capsys, "--groups", "log_softmax", "--dtypes", "bfloat16,float16",
                   "--libraries", "fastlog,numpy,torch", "--threads", "1", "--json", path)
    assert rc == 0
    res = records.results_of(records.load_json(path))
    assert {r.case.dtype for r in res} == {"bfloat16", "float16"}
    assert all(r.status == "ok" for r in res if r.library == "numpy")
    for r in res:
        if r.library == "fastlog":
            assert r.status == "ok" or (r.status == "skipped" and
                                        f"no {r.case.dtype} kernels in this fastlog yet" in r.reason)
    if any(r.library == "fastlog" and r.status == "skipped" for r in res):
        assert "(its functions raise TypeError for that dtype)" in " ".join(out.split())


def test_half_precision_inputs_and_conversions():
    pytest.importorskip("ml_dtypes")
    g = GROUPS["cross_entropy_fwd_bwd"]
    d = data.data_for(g, (4, 7), "bfloat16")
    assert d["x"].dtype.name == "bfloat16" and d["y"].dtype == np.int64
    assert data.is_float(d["x"]) and not data.is_float(d["y"])
    o = oracle.reference_for(g, d)
    expected = ref.cross_entropy_and_grad(d["x"].astype(np.float64), d["y"])[1]
    np.testing.assert_array_equal(o.values[1], expected)
    assert impls.to_numpy(d["x"]).dtype == np.float32
    data.clear_data()
    with pytest.raises(ValueError, match="unknown dtype"):
        data.np_dtype("float8")


# ---------------------------------------------------------------- oracle --
def test_the_oracle_is_fastlog_reference():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((6, 9)).astype(np.float32)
    y = rng.integers(0, 9, 6)
    d = {"x": x, "y": y}
    o = oracle.reference_for(GROUPS["log_softmax"], d)
    np.testing.assert_array_equal(o.values[0], ref.log_softmax(x.astype(np.float64), axis=-1))
    o = oracle.reference_for(GROUPS["nll"], d)
    np.testing.assert_array_equal(o.values[1], ref.nll_loss_and_grad(x.astype(np.float64), y)[1])


def test_reference_mlp_step_and_linear_ce_match_independent_code():
    rng = np.random.default_rng(1)
    sizes = (12, 8, 5)
    params = []
    for a, b in zip(sizes[:-1], sizes[1:]):
        params += [rng.standard_normal((b, a)), rng.standard_normal(b)]
    x, y = rng.standard_normal((7, 12)), rng.integers(0, 5, 7)
    mine = [p.copy() for p in params]
    impls.np_mlp_train_step(mine, x, y, 0.1)                 # the NumPy contender, in float64
    for a, b in zip(ref.mlp_sgd_step(params, x, y, 0.1), mine):
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(ref.mlp_forward(params, x), impls.np_mlp_forward(params, x)[-1], rtol=1e-13)
    torch = pytest.importorskip("torch")
    w = rng.standard_normal((5, 12))
    xt, wt = torch.tensor(x, requires_grad=True), torch.tensor(w, requires_grad=True)
    loss = torch.nn.functional.cross_entropy(xt @ wt.T, torch.tensor(y))
    loss.backward()
    r = ref.linear_cross_entropy_and_grad(x, w, y)
    np.testing.assert_allclose(r[0], loss.item(), rtol=1e-12)
    np.testing.assert_allclose(r[1], xt.grad.numpy(), rtol=1e-10, atol=1e-14)
    np.testing.assert_allclose(r[2], wt.grad.numpy(), rtol=1e-10, atol=1e-14)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_agreement_accepts_rounding_and_rejects_real_errors(dtype):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((16, 300)) * 3
    r = ref.log_softmax(x, axis=-1)
    good = impls.np_log_softmax(x.astype(dtype))
    assert oracle.agreement(good, r, dtype)[0]
    assert oracle.agreement((np.float64(1.5), good), (np.float64(1.5), r), dtype)[0]
    bad = good.copy()
    bad[3, 7] *= 1.01
    ok, err = oracle.agreement(bad, r, dtype)
    assert not ok and err > 1e-3
    assert not oracle.agreement(good[:, :-1], r, dtype)[0]            # shape
    nan = good.copy()
    nan[0, 0] = np.nan
    assert not oracle.agreement(nan, r, dtype)[0]
    assert not oracle.agreement((good,), (r, r), dtype)[0]           # missing output


# ----------------------------------------------------------- agreement check --
def test_a_wrong_fastlog_answer_fails_the_run_and_is_not_timed(monkeypatch, tmp_path, capsys):
    def wrong_builder(d):
        x = d["x"]
        return lambda: fastlog.log_softmax(x, axis=-1) + x.dtype.type(1e-2)

    monkeypatch.setitem(GROUPS["log_softmax"].impls, "fastlog", wrong_builder)
    path = str(tmp_path / "w.json")
    rc, out = _run(capsys, "--groups", "log_softmax", "--libraries", "fastlog,numpy", "--threads", "1",
                   "--json", path)
    assert rc == 1
    assert "WRONG" in out and "FAILURES of fastlog" in out
    res = records.results_of(records.load_json(path))
    fl = [r for r in res if r.library == "fastlog"]
    assert fl and all(r.status == "wrong" and r.stats is None and r.err > 1e-4 for r in fl)
    assert all(r.status == "ok" for r in res if r.library == "numpy")


def test_a_crashing_fastlog_call_is_reported_as_error(monkeypatch, capsys):
    def broken(d):
        def run():
            raise RuntimeError("boom")
        return run

    monkeypatch.setitem(GROUPS["logsumexp"].impls, "fastlog", broken)
    rc, out = _run(capsys, "--groups", "logsumexp", "--libraries", "fastlog", "--threads", "1")
    assert rc == 1
    assert "ERROR: RuntimeError: boom" in out


# ---------------------------------------------------------------- compare --
def _scaled(rep, factor, library="fastlog"):
    out = copy.deepcopy(rep)
    for d in out["results"]:
        if d["library"] == library and d["stats"]:
            for k in ("median", "q1", "q3", "min", "max"):
                d["stats"][k] *= factor
    return out


def _tight(rep):
    """Each quartile at its median: the verdicts then depend only on the scaling."""
    out = copy.deepcopy(rep)
    for d in out["results"]:
        if d["stats"]:
            d["stats"]["q1"] = d["stats"]["q3"] = d["stats"]["median"]
        if d.get("noise"):
            d["noise"]["flag"] = None
    return out


def test_compare_reports_faster_slower_and_unchanged(saved, tmp_path, capsys):
    rep = _tight(records.load_json(saved[0]))
    n_fl = sum(1 for d in rep["results"] if d["library"] == "fastlog" and d["status"] == "ok")
    n_ok = sum(1 for d in rep["results"] if d["status"] == "ok")
    _, counts = format_compare(rep, _scaled(rep, 0.5))
    assert counts == {"faster": n_fl, "slower": 0, "same": n_ok - n_fl}
    _, counts = format_compare(rep, _scaled(rep, 2.0))
    assert counts == {"faster": 0, "slower": n_fl, "same": n_ok - n_fl}
    _, counts = format_compare(rep, rep)
    assert counts == {"faster": 0, "slower": 0, "same": n_ok}
    _, counts = format_compare(rep, _scaled(rep, 1.02), threshold=0.05)
    assert counts["slower"] == 0

    old, new, png = tmp_path / "old.json", tmp_path / "new.json", tmp_path / "change.png"
    records.save_json(rep, str(old))
    records.save_json(_scaled(rep, 0.5), str(new))
    args = ["--compare", str(old), str(new), "--libraries", "fastlog"]
    has_mpl = True
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        has_mpl = False
    rc = main(args + (["--plot", str(png)] if has_mpl else []))
    out = capsys.readouterr().out
    assert rc == 0
    lines = out.splitlines()
    assert lines[0] == "fastlog benchmark comparison" and lines[1].startswith("  old: ")
    assert all(len(ln) <= 100 for ln in lines)
    assert re.search(r"shape +dtype +thr +library +old ms +new ms +change", out)
    assert "FASTER\n" in out and "SLOWER\n" not in out      # the verdict column
    assert f"summary: {n_fl} faster, 0 slower, 0 unchanged" in out
    if has_mpl:
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_compare_reads_format_1_reports(saved, tmp_path):
    rep = _tight(records.load_json(saved[0]))
    old = copy.deepcopy(rep)
    old["format"] = "fastlog-bench/1"
    for d in old["results"]:
        d.pop("noise")
    p = tmp_path / "old.json"
    records.save_json(old, str(p))
    text, counts = format_compare(records.load_json(str(p)), rep)
    assert counts["faster"] == counts["slower"] == 0


def test_compare_rejects_a_file_that_is_not_a_report(saved, tmp_path, capsys):
    bad = tmp_path / "bad.json"
    bad.write_text("[]")
    with pytest.raises(SystemExit) as e:
        main(["--compare", saved[0], str(bad)])
    assert e.value.code == 2
    assert "not a fastlog-bench report" in capsys.readouterr().err


# ------------------------------------------------------------------- plot --
def test_plot_has_a_panel_per_operation_and_thread_scaling(saved, tmp_path):
    pytest.importorskip("matplotlib")
    p = tmp_path / "speedup.png"
    rep = _synthetic_report(saved[0])
    panels = __import__("fastlog.bench.plot", fromlist=["plot_report"]).plot_report(rep, str(p))
    assert p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    expected = ["log-softmax", "cross-entropy forward+backward", "MLP training step",
                "linear + cross-entropy (fused)"]
    assert panels[:4] == expected
    if presets.usable_cores() >= 2:
        assert panels[-1] == "thread scaling"
    from matplotlib.image import imread
    h, w = imread(str(p)).shape[:2]
    assert w > 1000 and h > 300


def _captured_figure(monkeypatch, fn, *args):
    """Run a plot function and return (its result, the matplotlib figure it saved)."""
    from fastlog.bench import plot
    seen = {}
    real = plot._finish

    def finish(fig, path, height):
        seen["fig"] = fig
        real(fig, path, height)

    monkeypatch.setattr(plot, "_finish", finish)
    return fn(*args), seen["fig"]


@pytest.mark.parametrize("groups", [("log_softmax", "mlp_train"), ("log_softmax",
                                                                  "cross_entropy_fwd_bwd", "mlp_train",
                                                                  "linear_cross_entropy")])
def test_plot_draws_what_it_measures(saved, tmp_path, monkeypatch, groups):
    """No empty panel; markers, no lines between shapes; the legend names only what is drawn."""
    pytest.importorskip("matplotlib")
    from fastlog.bench import plot
    rep = _synthetic_report(saved[0])
    rep["results"] = [d for d in rep["results"] if d["group"] in groups]
    panels, fig = _captured_figure(monkeypatch, plot.plot_report, rep, str(tmp_path / "p.png"))
    axes = fig.get_axes()
    assert len(axes) == len(panels)                        # one axes per panel: none left empty
    for ax in axes:
        markers = [ln for ln in ax.get_lines() if ln.get_marker() not in (None, "None", "")]
        assert markers, ax.get_title()                     # every panel draws points
        joined = [ln for ln in ax.get_lines() if len(ln.get_xdata()) > 1 and ln.get_linestyle() != "None"
                  and ln.get_marker() in (None, "None", "")
                  and not np.allclose(np.asarray(ln.get_ydata(), float), ln.get_ydata()[0])]
        assert joined == [], ax.get_title()                # only horizontal reference lines
    labels = [t.get_text() for t in fig.legends[0].get_texts()]
    drawn_colours = {ln.get_color() for ax in axes for ln in ax.get_lines()
                     if ln.get_marker() not in (None, "None", "")}
    for lib, colour in plot.COLOURS.items():
        assert (lib in labels) == (colour in drawn_colours), lib
    scaling = "thread scaling" in panels
    assert ("fastlog" in labels) == scaling                # fastlog is drawn only as its own thread scaling
    assert "noisy timing" in labels                        # the synthetic report has one noisy timing


def test_plot_ticks_are_readable_for_wide_and_narrow_ranges():
    from fastlog.bench import plot
    assert plot._ticks(0.65, 1.7) == [0.7, 0.8, 1, 1.2, 1.5]
    assert plot._ticks(0.01, 10000) == [0.01, 0.1, 1, 10, 100, 1000, 10000]
    assert all(len(plot._ticks(lo, lo * f)) >= 2 for lo in (0.3, 1, 7) for f in (1.5, 10, 1e4))


def test_plot_colours_are_one_per_library():
    from fastlog.bench import plot
    assert set(plot.COLOURS) == set(impls.LIBRARIES) and len(set(plot.COLOURS.values())) == len(impls.LIBRARIES)
    assert set(plot.MARKERS) == set(data.DTYPES)


def test_importing_the_bench_imports_no_plotting_library():
    import subprocess
    code = ("import sys, fastlog.bench, fastlog.bench.plot; "
            "print(sorted(m for m in ('matplotlib', 'torch', 'ml_dtypes') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                         env=_env()).stdout
    assert out.strip() == "[]"


# ------------------------------------------------------------ plan / options --
def test_quick_plan_has_the_required_shapes_dtypes_and_threads():
    cs = presets.plan("quick", max_threads=2)
    ce = {(c.shape, c.dtype, c.threads) for c in cs if c.group == "cross_entropy_fwd_bwd"}
    shapes = [(64, 10), (4096, 10), (4096, 1000), (1024, 32000), (128, 128256)]
    for shape in shapes:
        assert (shape, "float32", 1) in ce
    for shape in shapes[:3]:
        assert (shape, "float64", 1) in ce
    for shape in [(4096, 1000), (1024, 32000)]:
        assert (shape, "float32", 2) in ce
    for group in ("cross_entropy_fwd_bwd", "log_softmax"):   # the half-precision rows
        got = {(c.shape, c.dtype) for c in cs if c.group == group and c.threads == 1}
        for shape in [(1024, 32000), (128, 128256)]:
            assert {(shape, "bfloat16"), (shape, "float16")} <= got
    assert not any(c.threads > 1 for c in presets.plan("quick", max_threads=1))
    assert {c.group for c in cs} == set(GROUPS)
    full = {(c.group, c.shape, c.dtype, c.threads) for c in presets.plan("full", max_threads=2)}
    assert ("cross_entropy_fwd_bwd", (1024, 32000), "bfloat16", 1) in full


def test_plan_overrides_aliases_and_dtypes_a_group_does_not_take():
    cs = presets.plan("quick", ["ce"], shapes=[(32, 7)], dtypes=["float64"], threads=[1], max_threads=2)
    assert {c.group for c in cs} == {"cross_entropy", "cross_entropy_fwd_bwd"}
    assert {(c.shape, c.dtype, c.threads) for c in cs} == {((32, 7), "float64", 1)}
    assert presets.plan("quick", ["mlp"], dtypes=["bfloat16"]) == []
    with pytest.raises(ValueError, match="unknown group 'nope'"):
        presets.plan("quick", ["nope"])
    assert presets.parse_shape("4096x1000") == (4096, 1000)
    with pytest.raises(ValueError, match="bad shape"):
        presets.parse_shape("4096 by 1000")


@pytest.mark.parametrize("argv, msg", [
    (["--groups", "nope"], "unknown group"),
    (["--threads", "0"], "positive integers"),
    (["--shapes", "4x"], "bad shape"),
    (["--libraries", "jax"], "unknown library"),
    (["--dtypes", "float8"], "unknown dtype"),
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


def test_the_old_cases_module_keeps_its_names():
    from fastlog.bench import cases
    d = cases.data_for("log_softmax", (3, 4), "float64")
    ok, err = cases.agreement(ref.log_softmax(d["x"], axis=-1), cases.reference_for("log_softmax", d), "float64")
    assert ok and err == 0
    assert cases.plan("quick", ["nll"]) == presets.plan("quick", ["nll"])
    cases.clear_data()


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


# ------------------------------------------------------------------- ISA --
def _env():
    src = os.path.dirname(os.path.dirname(os.path.abspath(fastlog.__file__)))
    return dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in (src, os.environ.get("PYTHONPATH")) if p))


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
    rep = records.load_json(path)
    assert rep["machine"]["isa"] == level and rep["machine"]["isa_forced"] == level


def test_isa_option_rejects_an_unsupported_level(capsys):
    rc = main(TINY + ["--isa", "sse9"])
    assert rc == 2
    assert "supports only" in capsys.readouterr().err


def test_module_entry_point_runs():
    import subprocess
    proc = subprocess.run([sys.executable, "-m", "fastlog.bench", "--help"], env=_env(),
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0
    for opt in ("--quick", "--compare", "--isa", "--markdown", "--max-spread", "bfloat16"):
        assert opt in proc.stdout
    assert "--tiny" not in proc.stdout


def test_readme_report_section_is_the_generated_report():
    """The README's report section is docs/REPORT.md (a real `--markdown` run), spliced in by
    scripts/readme_report.py: editing the README's figures by hand, or regenerating the report
    without splicing it, fails here."""
    import pathlib
    import subprocess
    import sys
    root = pathlib.Path(__file__).resolve().parents[1]
    if not (root / "README.md").exists() or not (root / "scripts" / "readme_report.py").exists():
        pytest.skip("not run from a source checkout")
    r = subprocess.run([sys.executable, str(root / "scripts" / "readme_report.py"), "--check"],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr
    report = (root / "docs" / "REPORT.md").read_text()
    assert "Generated by `python -m fastlog.bench" in report
    assert "Generated by `python -m fastlog.bench" in (root / "README.md").read_text()
