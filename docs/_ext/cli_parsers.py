"""The argparse parsers of fastlog's command lines, as no-argument functions for sphinx-argparse."""


def bench_parser():
    """``fastlog-bench`` / ``python -m fastlog.bench``."""
    from fastlog.bench.cli import _parser
    return _parser("fastlog-bench")


def train_parser():
    """``python -m fastlog.train`` / ``fastlog-train``."""
    from fastlog.train import _parser
    return _parser("python -m fastlog.train")
