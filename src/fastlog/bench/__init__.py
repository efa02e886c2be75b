"""Benchmarks of fastlog against NumPy, SciPy and PyTorch, shipped with the package.

Run ``fastlog-bench`` (or ``python -m fastlog.bench``); ``--help`` lists the
options.  The same definitions drive the pytest-benchmark suite in the
repository's ``benchmarks/`` folder.

Modules by role:

- what is timed: :mod:`.groups` (operations, their floors), :mod:`.impls` (each
  library's version), :mod:`.oracle` (the check against ``fastlog._reference``),
  :mod:`.data` (inputs), :mod:`.presets` (cases, presets, plan);
- how: :mod:`.timing` (thread pinning, timing), :mod:`.floors` (bandwidth and
  GEMM rate at the rows' sizes), :mod:`.noise` (spread, competing load,
  re-measuring), :mod:`.runner` (check, then time), :mod:`.progress`;
- output: :mod:`.records` (machine info, JSON), :mod:`.report` (text and
  Markdown tables), :mod:`.compare` (two runs), :mod:`.plot` (PNG, matplotlib
  imported only when asked), :mod:`.cli` (the command).
"""
from .cli import main

__all__ = ["main"]
