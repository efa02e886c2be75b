"""fastlog's modules import each other without cycles, at module level or inside functions.

A cycle makes the import order carry meaning (a module half-initialized when the
other one runs) and ties modules that should change independently.  The graph is
read from the source with ``ast``: every ``import fastlog...`` and every relative
``from . import ...`` anywhere in a module, a function body included.  Importing a
submodule also runs its package's ``__init__``; that implicit edge is Python's and
not counted (a package re-exporting its submodules is not a cycle).
"""
import ast
import os

SRC = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "src", "fastlog")


def _modules():
    """{module name: (path, is_package)} for the package's Python modules, and the
    compiled ones (a .pyx source) as leaves."""
    mods = {}
    for dirpath, dirnames, files in os.walk(SRC):
        dirnames[:] = [d for d in dirnames if d != "__pycache__"]
        rel = os.path.relpath(dirpath, os.path.dirname(SRC)).replace(os.sep, ".")
        for f in files:
            stem, ext = os.path.splitext(f)
            if ext not in (".py", ".pyx"):
                continue
            name = rel if stem == "__init__" else f"{rel}.{stem}"
            mods[name] = (os.path.join(dirpath, f) if ext == ".py" else None, stem == "__init__")
    return mods


def _graph(mods):
    graph = {}
    for name, (path, is_pkg) in mods.items():
        deps = set()
        if path is not None:
            pkg = name if is_pkg else name.rpartition(".")[0]
            for node in ast.walk(ast.parse(open(path, encoding="utf-8").read(), path)):
                if isinstance(node, ast.Import):
                    deps.update(a.name for a in node.names if a.name.split(".")[0] == "fastlog")
                elif isinstance(node, ast.ImportFrom):
                    if node.level:
                        base = pkg.split(".")
                        base = base[: len(base) - node.level + 1]
                        target = ".".join(base + ([node.module] if node.module else []))
                    else:
                        target = node.module or ""
                    if target.split(".")[0] != "fastlog":
                        continue
                    for a in node.names:
                        sub = f"{target}.{a.name}"
                        deps.add(sub if sub in mods else target)
        graph[name] = {d for d in deps if d in mods and d != name}
    return graph


def _cycles(graph):
    """The strongly connected components of more than one module (Tarjan)."""
    index, low, stack, on, out, counter = {}, {}, [], set(), [], [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def test_no_import_cycles():
    mods = _modules()
    assert "fastlog._core" in mods and "fastlog.nn.mlp" in mods
    graph = _graph(mods)
    cycles = _cycles(graph)
    detail = ["; ".join(f"{m} -> {sorted(graph[m] & set(c))}" for m in c) for c in cycles]
    assert cycles == [], "import cycles: " + " | ".join(detail)


def test_the_checker_finds_a_cycle():
    """The detector itself, on a made-up graph (a test that cannot fail proves nothing)."""
    g = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}, "e": set()}
    assert _cycles(g) == [["a", "b", "c"]]
    assert _cycles({"a": {"b"}, "b": set()}) == []
