"""Benchmarks of fastlog against NumPy, SciPy and PyTorch, shipped with the package.

Run ``fastlog-bench`` (or ``python -m fastlog.bench``); ``--help`` lists the
options.  The same case definitions (:mod:`fastlog.bench.cases`) drive the
pytest-benchmark suite in the repository's ``benchmarks/`` folder.

Modules: :mod:`~fastlog.bench.cases` (operations, inputs, each library's
version, presets), :mod:`~fastlog.bench.timing` (thread pinning, timing,
memory bandwidth), :mod:`~fastlog.bench.runner` (check, then time),
:mod:`~fastlog.bench.report` (tables, JSON, compare, plot),
:mod:`~fastlog.bench.cli` (the command).
"""
from .cli import main

__all__ = ["main"]
