"""Optional test oracles (PyTorch) that skip only the tests that use them.

``torch = optional("torch")`` gives the module when it is installed; when it
is not, any attribute access (``torch.tensor``, ``F.cross_entropy``) skips the
test that made it, so the NumPy/SciPy tests of the same file still run.
CI installs torch, so there every oracle runs.
"""
import importlib

import pytest


class _Missing:
    def __init__(self, name, why):
        self._name, self._why = name, why

    def __getattr__(self, attr):
        if attr.startswith("__"):   # pytest's collection looks for __test__ etc.
            raise AttributeError(attr)
        pytest.skip(f"{self._name} is not installed ({self._why})")

    def __bool__(self):
        return False


def optional(name):
    try:
        return importlib.import_module(name)
    except ImportError as e:
        return _Missing(name, e)
