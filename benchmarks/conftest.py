"""pytest-benchmark glue: the cases of fastlog.bench (presets.plan), one test per (case, library).

Each bench_*.py module names its operations in ``GROUPS`` and has a test that
takes the ``bench_case`` parameter and the ``run_bench`` fixture.  Inputs are
made once per (operation, shape, dtype) and shared by every library and
thread count; each library's result is checked against the float64 NumPy
oracle (fastlog._reference) before it is timed, with threads pinned alike for every library.

Options: --bench-preset quick|full (default quick, or $FASTLOG_BENCH_PRESET),
--bench-threads 1,2 and --bench-libraries fastlog,torch override the preset.
"""
import os

import pytest

from fastlog.bench import data, oracle, presets, runner, timing
from fastlog.bench.groups import GROUPS
from fastlog.bench.impls import LIBRARIES, Unavailable

try:  # imported up front so that thread pinning reaches it
    import torch  # noqa: F401
except ImportError:
    pass


def pytest_addoption(parser):
    g = parser.getgroup("fastlog-bench")
    g.addoption("--bench-preset", default=os.environ.get("FASTLOG_BENCH_PRESET", "quick"),
                choices=sorted(presets.PRESETS), help="which cases to run (default quick)")
    g.addoption("--bench-threads", default=None, help="thread counts for every case, e.g. 1,2")
    g.addoption("--bench-libraries", default=",".join(LIBRARIES),
                help="libraries to time (default: all)")


def _csv(text):
    return [p.strip() for p in text.split(",") if p.strip()]


def pytest_generate_tests(metafunc):
    if "bench_case" not in metafunc.fixturenames:
        return
    opt = metafunc.config.getoption
    threads = [int(t) for t in _csv(opt("--bench-threads"))] if opt("--bench-threads") else None
    libs = _csv(opt("--bench-libraries"))
    params, ids = [], []
    for c in presets.plan(opt("--bench-preset"), metafunc.module.GROUPS, threads=threads):
        for lib in libs:
            if lib in GROUPS[c.group].impls:
                params.append((c, lib))
                ids.append(f"{c.group}-{c.label.replace(' ', '')}-{c.dtype}-{c.threads}t-{lib}")
    metafunc.parametrize("bench_case", params, ids=ids)


class _Inputs:
    """The inputs and oracle result of the last (group, shape, dtype) seen (tests run in that order)."""
    key = None
    data = None
    reference = None

    @classmethod
    def get(cls, case):
        if case.data_key != cls.key:
            cls.key = cls.data = cls.reference = None
            data.clear_data()
            cls.data = data.data_for(GROUPS[case.group], case.shape, case.dtype)
            cls.reference = oracle.reference_for(GROUPS[case.group], cls.data)
            cls.key = case.data_key
        return cls.data, cls.reference


@pytest.fixture
def run_bench():
    """run_bench(benchmark, bench_case): check one library's result, then time it."""
    def run(benchmark, bench_case):
        case, lib = bench_case
        inputs, reference = _Inputs.get(case)
        try:
            fn, getter = runner.prepare(GROUPS[case.group], lib, inputs)
        except Unavailable as e:
            pytest.skip(f"{lib}: {e}")
        benchmark.group = f"{case.group} {case.label} {case.dtype} {case.threads}t"
        benchmark.extra_info.update(library=lib, group=case.group, shape=list(case.shape),
                                    dtype=case.dtype, threads=case.threads)
        with timing.pinned_threads(case.threads):
            first = fn()
            ok, err = oracle.agreement(getter() if getter else first, reference, case.dtype)
            assert ok, (f"{lib} {case.group} {case.label} {case.dtype}: disagrees with the float64 "
                        f"NumPy oracle (max |error| / max|oracle| = {err:.3g}); not timed")
            benchmark(fn)
    return run
