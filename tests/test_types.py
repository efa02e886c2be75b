"""Types you can trust: every public function of fastlog is annotated, and the compiled
module's stub names what the module has.

mypy (configured in pyproject.toml) and ``python -m mypy.stubtest fastlog._core`` check the
annotations and the stub against the code in CI (.ci/run); these tests check that nothing
public escapes them: an unannotated parameter or return, or a compiled entry point missing
from ``_core.pyi``.
"""
import ast
import importlib
import inspect
import os

import pytest


MODULES = ["fastlog", "fastlog.nn", "fastlog.nn.io", "fastlog.nn.plot", "fastlog.nn.fit",
           "fastlog.nn.lr_find", "fastlog.data", "fastlog.linear", "fastlog.train", "fastlog.bench",
           "fastlog.dask", "fastlog.torch", "fastlog.torch.distributed"]
NEEDS = {"fastlog.dask": "dask", "fastlog.torch": "torch", "fastlog.torch.distributed": "torch"}


def _unannotated(qualname, f):
    """What of f's signature lacks an annotation (the empty list when all is there)."""
    try:
        sig = inspect.signature(f)
    except (TypeError, ValueError):   # pragma: no cover - builtins
        return []
    bad = [p.name for p in sig.parameters.values()
           if p.annotation is inspect.Parameter.empty and p.name not in ("self", "cls")
           and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)]
    if sig.return_annotation is inspect.Signature.empty and not qualname.endswith("__init__"):
        bad.append("return")
    return bad


def _public_functions(module):
    names = getattr(module, "__all__", [n for n in dir(module) if not n.startswith("_")])
    for n in names:
        obj = getattr(module, n, None)
        if inspect.isclass(obj) and obj.__module__.startswith("fastlog"):
            for an, av in vars(obj).items():
                if an.startswith("_") and an != "__init__":
                    continue
                f = av.__func__ if isinstance(av, (classmethod, staticmethod)) else av
                f = f.fget if isinstance(f, property) else f
                if inspect.isfunction(f):
                    yield f"{module.__name__}.{n}.{an}", f
        elif inspect.isfunction(obj) and obj.__module__.startswith("fastlog"):
            yield f"{module.__name__}.{n}", obj


@pytest.mark.parametrize("name", MODULES)
def test_every_public_function_is_annotated(name):
    if name in NEEDS:   # (the main CI run has them; the newest CPython's may not)
        pytest.importorskip(NEEDS[name])
    module = importlib.import_module(name)
    missing = {q: bad for q, f in _public_functions(module) if (bad := _unannotated(q, f))}
    assert missing == {}, f"public functions without annotations: {missing}"


def test_the_annotation_check_sees_a_missing_one():
    def f(a, b: int = 0):
        return a

    def g(a: int) -> int:
        return a
    assert _unannotated("f", f) == ["a", "return"]
    assert _unannotated("g", g) == []


def test_core_stub_lists_every_entry_point():
    """Every public name of the compiled module is declared in _core.pyi (stubtest then
    checks each one's parameters against the running module)."""
    import fastlog
    from fastlog import _core
    stub = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "src", "fastlog",
                        "_core.pyi")
    if not os.path.exists(stub):   # pragma: no cover - tests run from a checkout
        stub = os.path.join(os.path.dirname(fastlog.__file__), "_core.pyi")
    tree = ast.parse(open(stub, encoding="utf-8").read())
    declared = set()
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.ClassDef)):
            declared.add(node.name)
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            declared.add(node.target.id)
        elif isinstance(node, ast.Assign):
            declared.update(t.id for t in node.targets if isinstance(t, ast.Name))
    runtime = {n for n in dir(_core) if not n.startswith("__")}
    assert runtime - declared == set(), f"in fastlog._core but not in _core.pyi: {sorted(runtime - declared)}"
    assert declared - runtime == set(), f"in _core.pyi but not in fastlog._core: {sorted(declared - runtime)}"
