"""The documentation site's sources keep their promises without building the site (the build itself,
``python -m sphinx -W``, runs in CI after the tests):

* every public name of the documented modules is listed on an API page (or is the documented
  alias of one), and every "See Also" counterpart points into a link inventory;
* the error messages quoted on the troubleshooting page are the ones fastlog gives (its examples
  run as doctests);
* the README stays short and its links into the site point at pages that exist.
"""
import doctest
import importlib
import os
import re
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DOCS = os.path.join(ROOT, "docs")

if not os.path.isdir(os.path.join(DOCS, "_ext")):
    pytest.skip("not run from a source checkout", allow_module_level=True)
sys.path.insert(0, os.path.join(DOCS, "_ext"))
import fastlog_docs  # noqa: E402


def _listed():
    """The fully qualified names the API pages list in their autosummary tables."""
    names = set()
    for fn in os.listdir(os.path.join(DOCS, "api")):
        if not fn.endswith(".rst"):
            continue
        module = None
        in_table = False
        for line in open(os.path.join(DOCS, "api", fn)):
            m = re.match(r"\.\. (?:current)?module:: (\S+)", line)
            if m:
                module = m.group(1)
            if line.startswith(".. autosummary::"):
                in_table = True
                continue
            if in_table:
                s = line.strip()
                if not s or s.startswith(":"):
                    continue
                if line.startswith("   "):
                    names.add(f"{module}.{s}")
                else:
                    in_table = False
    return names


def test_every_public_name_is_on_an_api_page():
    listed = _listed()
    missing = []
    for mod in fastlog_docs.PUBLIC:
        try:
            module = importlib.import_module(mod)
        except ModuleNotFoundError as e:          # an optional dependency (torch, dask)
            pytest.importorskip(e.name)
        for name in module.__all__:
            full = f"{mod}.{name}"
            if full in fastlog_docs.CONSTANTS:
                continue
            if full not in listed and fastlog_docs.ALIASES.get(full) not in listed:
                missing.append(full)
    assert missing == []
    # an alias must point at a listed name that is the same object
    for alias, target in fastlog_docs.ALIASES.items():
        a_mod, a_name = alias.rsplit(".", 1)
        t_mod, t_name = target.rsplit(".", 1)
        assert target in listed, target
        assert getattr(importlib.import_module(a_mod), a_name) is getattr(importlib.import_module(t_mod), t_name)


def test_counterparts_name_real_objects_and_resolve_through_the_inventories():
    external = {name for _, objects in fastlog_docs.EXTERNAL.values() for name in objects}
    for name, links in fastlog_docs.COUNTERPARTS.items():
        mod, attr = name.rsplit(".", 1)
        try:
            module = importlib.import_module(mod)
        except ModuleNotFoundError as e:
            pytest.importorskip(e.name)
        assert hasattr(module, attr), name
        for target, text in links:
            assert target in external, f"{name}: {target} is not in docs/_ext/fastlog_docs.py's EXTERNAL"
            assert text and not text.endswith("."), (name, text)


def test_every_counterpart_target_exists_in_its_library():
    """The inventories' objects are real (the links point at pages of objects that exist)."""
    torch = pytest.importorskip("torch")  # noqa: F841
    pytest.importorskip("dask")
    pytest.importorskip("sklearn")
    for project, (_, objects) in fastlog_docs.EXTERNAL.items():
        for name in objects:
            parts = name.split(".")
            for k in range(len(parts) - 1, 0, -1):
                try:
                    obj = importlib.import_module(".".join(parts[:k]))
                    break
                except ImportError:
                    continue
            for p in parts[k:]:
                obj = getattr(obj, p)
            assert obj is not None, name


def test_troubleshooting_messages_are_real():
    """The ```pycon blocks of guide/troubleshooting.md run as doctests: the messages are fastlog's."""
    text = open(os.path.join(DOCS, "guide", "troubleshooting.md")).read()
    blocks = re.findall(r"```pycon\n(.*?)```", text, re.S)
    assert len(blocks) >= 4
    needs_torch = [b for b in blocks if "import torch" in b]
    if needs_torch:
        try:
            import torch  # noqa: F401
        except ImportError:
            blocks = [b for b in blocks if b not in needs_torch]
    parser = doctest.DocTestParser()
    runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    # one doctest of all the blocks: they share one namespace, as on the page
    runner.run(parser.get_doctest("\n".join(blocks), {}, "troubleshooting", "troubleshooting.md", 0))
    assert runner.failures == 0 and runner.tries > 15


def test_readme_is_short_and_links_into_the_site():
    text = open(os.path.join(ROOT, "README.md")).read()
    assert len(text.splitlines()) <= 250
    links = re.findall(r"\]\((docs/[^)#]+)\)", text)
    assert len(links) >= 15
    for link in links:
        assert os.path.exists(os.path.join(ROOT, link)), link
    for command in ('pip install torch==2.13.0 && pip install ".[bench]" && python -m fastlog.bench',
                    'pip install torch==2.13.0 && pip install ".[test]" && python scripts/run_tests.py'):
        assert command in text
    ci = open(os.path.join(ROOT, ".ci", "run")).read()
    assert 'pip install ".[test]" && python scripts/run_tests.py' in ci     # what the README says CI runs
    assert "python -m sphinx -W --keep-going -b html docs" in ci


def test_every_guide_page_is_in_the_toctree():
    index = open(os.path.join(DOCS, "guide", "index.md")).read()
    pages = {f[:-3] for f in os.listdir(os.path.join(DOCS, "guide")) if f.endswith(".md")}
    included = {"accuracy_table"}      # included into accuracy.md, not a page of its own
    for page in pages - included - {"index"}:
        assert re.search(rf"^{page}$", index, re.M), page


# Public callables documented without a Returns section: they return None.
RETURN_NONE = {
    "fastlog.show_config", "fastlog.set_num_threads", "fastlog.MLP.reset_optimizer", "fastlog.MLP.reset_parameters",
    "fastlog.MLP.save", "fastlog.LogisticRegression.save", "fastlog.mlp_gemms_only", "fastlog.torch.set_buffer_reuse",
    "fastlog.torch.patch", "fastlog.torch.unpatch", "fastlog.nn.save_mlp", "fastlog.nn.save_logreg",
    "fastlog.torch.patched",        # a context manager: nothing to bind with `as`
}
# ... and without a Raises section: they raise nothing of their own (they read state or build an
# object from values their callers produced), or only what PyTorch's constructor they subclass raises.
RAISE_NOTHING = {
    "fastlog.show_config", "fastlog.config", "fastlog.get_num_threads", "fastlog.MLP.parameters",
    "fastlog.MLP.reset_optimizer", "fastlog.MLP.state_dict", "fastlog.torch.CrossEntropyLoss",
    "fastlog.torch.NLLLoss", "fastlog.torch.BCEWithLogitsLoss", "fastlog.torch.KLDivLoss",
    "fastlog.torch.LinearCrossEntropyLoss", "fastlog.torch.fast_path_available", "fastlog.torch.set_buffer_reuse",
    "fastlog.torch.patch", "fastlog.torch.unpatch", "fastlog.torch.patched", "fastlog.torch.is_patched",
    "fastlog.nn.LRFinderResult", "fastlog.nn.WeightEvolution", "fastlog.nn.io.mlp_to_json",
}


def test_every_api_entry_says_what_it_returns_and_raises():
    """The API pages promise each entry's returns and raises: numpydoc Returns and Raises sections,
    except for the listed callables that return None or raise nothing of their own."""
    sys.path.insert(0, os.path.join(ROOT, "tests"))
    from test_docs import public_callables, sections
    seen, missing = set(), []
    for mod in fastlog_docs.PUBLIC:
        try:
            module = importlib.import_module(mod)
        except ModuleNotFoundError as e:
            pytest.importorskip(e.name)
        for q, obj, kind in public_callables(module):
            f = obj.__func__ if isinstance(obj, (staticmethod, classmethod)) else obj
            if kind == "property" or id(f) in seen:
                continue
            seen.add(id(f))
            secs = sections(f.__doc__)
            if kind != "class" and "Returns" not in secs and "Yields" not in secs and q not in RETURN_NONE:
                missing.append(f"{q}: Returns")
            if "Raises" not in secs and q not in RAISE_NOTHING:
                missing.append(f"{q}: Raises")
    assert missing == []
    assert len(seen) > 100
