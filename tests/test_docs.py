"""Every public function, class and method has a numpydoc docstring (Parameters, Examples) and
every docstring example runs as a doctest.

What "public" means here (the rule this file keeps true):

* public modules: ``fastlog`` and every module or package below it none of whose dotted-name parts
  starts with an underscore (``fastlog.nn.mlp`` is public, ``fastlog._softmax`` and
  ``fastlog.bench.__main__`` are not).  Found by walking the installed package's files, so a new
  module is covered without editing this test;
* public names of a module: its ``__all__``; where it has none, the names not starting with an
  underscore that are defined in that module (not imported into it);
* public callables: the functions and classes among those names, and the public methods of those
  classes (functions, static and class methods not starting with an underscore, defined in the
  class or in a fastlog base class).  Properties are attributes: they need a docstring, not an
  Examples section.

A public callable's docstring must have an ``Examples`` section holding doctest examples and, when
its signature takes parameters (``self``/``cls`` and names starting with an underscore aside), a
``Parameters`` section naming every one of them (``*args``/``**kwargs`` included; ``a, b : int``
names two).  For a class the parameters are its constructor's.

The doctests of every public module, and of every private module that defines a public callable
(``fastlog._softmax`` defines ``fastlog.log_softmax``), run here; the test also checks that each
public callable's docstring was among those run.  Modules, and single docstrings, whose examples
need an optional dependency (torch, dask, matplotlib, mlxtend) are skipped where it is not
installed.  This file runs once,
at the best ISA level (it is not in conftest.py's KERNEL_TEST_FILES): the examples print rounded values
that do not depend on the kernel build or the thread count.
"""
import doctest
import importlib
import importlib.util
import inspect
import pkgutil
import re
import tempfile
import time

import numpy as np
import pytest

# Optional dependencies: a public module that needs one is skipped where it is missing.
OPTIONAL = {"torch", "dask", "distributed", "matplotlib", "mlxtend", "ml_dtypes"}


def _module_names():
    """fastlog's public modules, found from the installed files (nothing is imported)."""
    spec = importlib.util.find_spec("fastlog")
    names = ["fastlog"]

    def walk(path, prefix):
        for info in pkgutil.iter_modules([path]):
            if info.name.startswith("_"):
                continue
            names.append(prefix + info.name)
            if info.ispkg:
                # The subpackage's own search path from its spec (not path/name: an editable
                # install's paths are its loader's, not folders); finding a spec runs no module.
                for sub in importlib.util.find_spec(prefix + info.name).submodule_search_locations:
                    walk(sub, prefix + info.name + ".")

    for path in spec.submodule_search_locations:
        walk(path, "fastlog.")
    return sorted(names)


MODULES = _module_names()


def _import(name):
    """The module, or a skip when an optional dependency it needs is not installed."""
    try:
        return importlib.import_module(name)
    except ModuleNotFoundError as e:
        if (e.name or "").split(".")[0] in OPTIONAL:
            pytest.skip(f"{name} needs {e.name}, not installed")
        raise


def public_names(module):
    """The public names of a module (see the module docstring)."""
    if hasattr(module, "__all__"):
        return list(module.__all__)
    return [n for n, v in vars(module).items()
            if not n.startswith("_") and getattr(v, "__module__", None) == module.__name__]


def _methods(cls):
    """(name, function or property) of the public methods and properties of a public class."""
    seen = {}
    for klass in reversed(cls.__mro__):
        if not (klass.__module__ or "").startswith("fastlog"):
            continue
        for n, v in vars(klass).items():
            if not n.startswith("_") and (isinstance(v, (staticmethod, classmethod, property))
                                          or inspect.isfunction(v)):
                seen[n] = v
    return sorted(seen.items())


def public_callables(module):
    """[(qualified name, object, kind)] for the module's public callables; kind is 'function',
    'class', 'method', 'staticmethod' or 'property'."""
    out = []
    for name in public_names(module):
        obj = getattr(module, name)
        if inspect.isclass(obj):
            out.append((f"{module.__name__}.{name}", obj, "class"))
            for mname, m in _methods(obj):
                kind = ("property" if isinstance(m, property) else
                        "staticmethod" if isinstance(m, staticmethod) else "method")
                out.append((f"{module.__name__}.{name}.{mname}", m, kind))
        elif inspect.isroutine(obj):
            out.append((f"{module.__name__}.{name}", obj, "function"))
        else:
            assert not callable(obj), f"{module.__name__}.{name}: a callable that is neither function nor class"
    return out


# ----------------------------------------------------------------- numpydoc --
def sections(doc):
    """{title: [lines]} of a numpydoc docstring (a title line underlined by dashes)."""
    lines = inspect.cleandoc(doc or "").splitlines()
    out, title = {}, None
    for i, line in enumerate(lines):
        nxt = lines[i + 1] if i + 1 < len(lines) else ""
        if line.strip() and re.fullmatch(r"\s*-{3,}\s*", nxt) and len(nxt.strip()) >= len(line.strip()) - 1:
            title = line.strip()
            out[title] = []
        elif title is not None and not re.fullmatch(r"\s*-{3,}\s*", line):
            out[title].append(line)
    return out


def documented_params(lines):
    """The parameter names of a Parameters section: 'name : type' or 'name' lines at the
    section's own indentation ('a, b : int' names a and b)."""
    body = [ln for ln in lines if ln.strip()]
    if not body:
        return set()
    indent = min(len(ln) - len(ln.lstrip()) for ln in body)
    names = set()
    for ln in body:
        if len(ln) - len(ln.lstrip()) == indent:
            head = ln.strip().split(" : ")[0]
            names.update(p.strip().lstrip("*") for p in head.split(","))
    return names


def signature_params(obj, kind):
    """The parameters a caller passes: self/cls and names starting with '_' left out."""
    fn = obj.__func__ if isinstance(obj, (staticmethod, classmethod)) else obj
    try:
        sig = inspect.signature(fn)
    except (TypeError, ValueError):  # pragma: no cover - builtins without a signature
        return []
    params = list(sig.parameters.values())
    if kind == "method" and params and params[0].name in ("self", "cls"):
        params = params[1:]
    return [p.name for p in params if not p.name.startswith("_")]


def problems(qualname, obj, kind):
    """What the docstring of one public callable lacks ([] when nothing)."""
    doc = obj.__doc__ if not isinstance(obj, (staticmethod, classmethod)) else obj.__func__.__doc__
    if not (doc or "").strip():
        return [f"{qualname}: no docstring"]
    if kind == "property":
        return []
    secs = sections(doc)
    out = []
    if ">>>" not in "\n".join(secs.get("Examples", [])):
        out.append(f"{qualname}: no Examples section with doctest examples")
    params = signature_params(obj, kind)
    if params:
        missing = [p for p in params if p not in documented_params(secs.get("Parameters", []))]
        if "Parameters" not in secs:
            out.append(f"{qualname}: no Parameters section (takes {', '.join(params)})")
        elif missing:
            out.append(f"{qualname}: Parameters does not name {', '.join(missing)}")
    return out


@pytest.mark.parametrize("name", MODULES)
def test_public_callables_have_numpydoc_with_examples(name):
    module = _import(name)
    found = public_callables(module)
    bad = [p for q, obj, kind in found for p in problems(q, obj, kind)]
    assert bad == [], "\n".join(bad)


def test_the_rule_can_fail():
    """The checker sees a missing section, a missing parameter and examples without '>>>'."""
    def f(a, b, _private=0):
        """Sum.

        Parameters
        ----------
        a : int
            First.

        Examples
        --------
        f(1, 2)
        """

    assert problems("f", f, "function") == ["f: no Examples section with doctest examples",
                                            "f: Parameters does not name b"]
    f.__doc__ = "Sum.\n\nExamples\n--------\n>>> 1\n1\n"
    assert problems("f", f, "function") == ["f: no Parameters section (takes a, b)"]
    f.__doc__ = ("Sum.\n\n    Parameters\n    ----------\n    a, b : int\n        Numbers.\n"
                 "    _private : int\n\n    Examples\n    --------\n    >>> 1\n    1\n")
    assert problems("f", f, "function") == []


# ----------------------------------------------------------------- doctests --
def _doctest_modules():
    """Every public module, and every module defining a public callable (some are private)."""
    names = set()
    for name in MODULES:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as e:
            if (e.name or "").split(".")[0] in OPTIONAL:
                continue
            raise
        names.add(name)
        for _, obj, kind in public_callables(module):
            if kind in ("function", "class"):
                names.add(obj.__module__)
    return sorted(names)


def _installed(name):
    try:
        return importlib.util.find_spec(name) is not None
    except ImportError:
        return False


def _missing_import(test):
    """The optional module an example of `test` imports that is not installed, or None."""
    for ex in test.examples:
        for m in re.finditer(r"^\s*(?:import|from)\s+([\w.]+(?:\s*,\s*[\w.]+)*)", ex.source, re.M):
            for mod in re.split(r"\s*,\s*", m.group(1)):
                top = mod.split(".")[0]
                if top in OPTIONAL and not _installed(top):
                    return top
    return None


def _optional_missing(e):
    """The missing optional module an exception (or one in its chain: fastlog turns a failed import
    into an error that names the package, train's command line into a usage error) is about."""
    seen = set()
    while e is not None and id(e) not in seen:
        seen.add(id(e))
        text = f"{getattr(e, 'name', None) or ''} {e}"
        for top in sorted(OPTIONAL):
            if re.search(rf"\b{top}\b", text) and not _installed(top):
                return top
        e = e.__cause__ or e.__context__
    return None


class _Runner(doctest.DocTestRunner):
    """A runner that counts a docstring whose example needs a missing optional module as skipped
    (an import inside the called code, e.g. matplotlib in a plot function), not failed; the
    examples after it in the same docstring are not reported either."""

    def __init__(self, **kw):
        super().__init__(**kw)
        self.missing = {}

    def report_unexpected_exception(self, out, test, example, exc_info):
        why = _optional_missing(exc_info[1])
        if why:
            self.missing.setdefault(test.name, why)
        elif test.name not in self.missing:
            super().report_unexpected_exception(out, test, example, exc_info)

    def report_failure(self, out, test, example, got):
        if test.name not in self.missing:
            super().report_failure(out, test, example, got)


@pytest.fixture
def doctest_state(tmp_path, monkeypatch):
    """Examples' temporary files go under pytest's tmp_path; fastlog's thread setting (which some
    examples change and put back through set_num_threads, making it explicit) is restored."""
    from fastlog._dispatch import core

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    saved = core.get_threads(), core.threads_explicit()
    try:
        with np.printoptions():   # an example may set print options; they do not leak
            yield
    finally:
        core.set_threads(*saved)


def test_every_docstring_example_runs(doctest_state):
    """All doctests of the modules run and pass, and they include every public callable's."""
    runner = _Runner(optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    finder = doctest.DocTestFinder(exclude_empty=True)
    ran, skipped, failed, attempted = set(), {}, [], 0
    t0 = time.perf_counter()
    for name in _doctest_modules():
        for t in finder.find(importlib.import_module(name)):
            why = _missing_import(t)
            if why:
                skipped[t.name] = why
                ran.add(t.docstring)
                continue
            r = runner.run(t)
            ran.add(t.docstring)
            if t.name in runner.missing:
                skipped[t.name] = runner.missing[t.name]
            elif r.failed:
                failed.append(t.name)
            attempted += r.attempted
    elapsed = time.perf_counter() - t0
    print(f"{attempted} doctest examples in {elapsed:.2f} s; skipped (optional module missing): {skipped}")
    assert failed == []
    assert attempted > 500
    not_run = []
    for name in MODULES:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError:
            continue
        for q, obj, kind in public_callables(module):
            doc = (obj.__func__ if isinstance(obj, (staticmethod, classmethod)) else obj).__doc__
            if kind != "property" and doc not in ran:
                not_run.append(q)
    assert not_run == []


def test_count_of_public_callables():
    """The walk finds what the docs promise (a guard against a walk that silently finds nothing)."""
    seen = set()
    for name in MODULES:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError:
            continue
        for _, obj, kind in public_callables(module):
            if kind != "property":
                seen.add(id(obj.__func__ if isinstance(obj, (staticmethod, classmethod)) else obj))
    assert {"fastlog", "fastlog.nn", "fastlog.bench", "fastlog.linear"} <= set(MODULES)
    assert len(seen) >= 100
