"""The Examples sections of the workflow modules' docstrings run as doctests (fast, deterministic)."""
import doctest
import importlib

import pytest

MODULES = ["fastlog.nn.functional", "fastlog.nn.mlp", "fastlog.nn.fit", "fastlog.nn.io", "fastlog.nn.logistic",
           "fastlog.nn.lr_find", "fastlog.nn.plot", "fastlog.data", "fastlog.train"]
NEEDS = {"fastlog.nn.plot": "matplotlib", "fastlog.data": "mlxtend", "fastlog.train": "mlxtend"}


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name):
    if name in NEEDS:
        pytest.importorskip(NEEDS[name])
    module = importlib.import_module(name)
    finder = doctest.DocTestFinder(exclude_empty=True)
    tests = finder.find(module)
    assert sum(len(t.examples) for t in tests) > 0
    runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    for t in tests:
        runner.run(t)
    result = runner.summarize(verbose=False)
    assert result.failed == 0


@pytest.mark.parametrize("name", MODULES)
def test_every_public_name_has_an_examples_section(name):
    module = importlib.import_module(name)
    missing = []
    for attr in getattr(module, "__all__", []):
        obj = getattr(module, attr)
        if not callable(obj):
            continue
        if "Examples" not in (obj.__doc__ or ""):
            missing.append(attr)
        for meth, fn in vars(obj).items() if isinstance(obj, type) else ():
            if not meth.startswith("_") and callable(fn) and "Examples" not in (fn.__doc__ or ""):
                missing.append(f"{attr}.{meth}")
    assert missing == []
