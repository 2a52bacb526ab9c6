"""Imports inside cgrad run one way (docs/architecture.md, "The three layers"): no module
imports another that imports it back, lazily or not, and the binding imports nothing
from the facade but the low-level cgrad._state."""
import ast
import os
import re

import cgrad

PKG = os.path.dirname(os.path.abspath(cgrad.__file__))
SRC = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "cgrad")
ROOT = SRC if os.path.isdir(SRC) else PKG  # the checkout's sources, else the installed ones


def _module_name(path):
    rel = os.path.relpath(path, ROOT)[:-3].replace(os.sep, ".")
    rel = rel[:-len(".__init__")] if rel.endswith(".__init__") else ("" if rel == "__init__" else rel)
    return "cgrad" + ("." + rel if rel else "")


def _is_package(name):
    return os.path.isfile(os.path.join(ROOT, *name.split(".")[1:], "__init__.py"))


def _is_module(name):
    """A .py file, or the compiled binding (_C.pyx in the sources)."""
    path = os.path.join(ROOT, *name.split(".")[1:])
    return os.path.isfile(path + ".py") or os.path.isfile(path + ".pyx")


def _resolve(importer, level, module, names):
    """The cgrad modules a `from ... import` (level > 0) names."""
    base = importer if _is_package(importer) else importer.rsplit(".", 1)[0]
    for _ in range(level - 1):
        base = base.rsplit(".", 1)[0]
    target = f"{base}.{module}" if module else base
    subs = [f"{target}.{n}" for n in names]
    subs = [m for m in subs if _is_package(m) or _is_module(m)]
    # `from . import sibling` needs only the sibling: the package is being imported already
    return subs if module is None and len(subs) == len(names) else [target] + subs


def _runtime_imports(tree):
    """Import nodes, leaving out `if TYPE_CHECKING:` blocks (never run)."""
    skip = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            skip.update(id(n) for n in ast.walk(node))
    return [n for n in ast.walk(tree) if isinstance(n, (ast.Import, ast.ImportFrom)) and id(n) not in skip]


def import_graph():
    graph = {}
    for folder, _, files in os.walk(ROOT):
        for f in files:
            if not f.endswith(".py"):
                continue
            path = os.path.join(folder, f)
            me = _module_name(path)
            edges = graph.setdefault(me, set())
            for node in _runtime_imports(ast.parse(open(path).read())):
                if isinstance(node, ast.ImportFrom) and node.level:
                    edges.update(_resolve(me, node.level, node.module, [a.name for a in node.names]))
                elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("cgrad"):
                    edges.add(node.module)
                elif isinstance(node, ast.Import):
                    edges.update(a.name for a in node.names if a.name.startswith("cgrad"))
            edges.discard(me)
    return graph


def _cycles(graph):
    """Strongly connected components of more than one module (Tarjan's algorithm)."""
    index, low, stack, on, found = {}, {}, [], set(), []

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in graph.get(v, ()):
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
                found.append(sorted(comp))

    for v in list(graph):
        if v not in index:
            visit(v)
    return found


def test_no_import_cycle_in_cgrad():
    graph = import_graph()
    # the CLI imports cgrad as a user's script does (`python -m cgrad` runs it after the package)
    graph.pop("cgrad.__main__", None)
    assert len(graph) > 15, sorted(graph)
    assert _cycles(graph) == []


def test_the_cycle_finder_finds_cycles():
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert _cycles({"a": {"b"}, "b": set()}) == []


def test_the_binding_imports_only_the_low_level_state():
    imported = set()
    for f in os.listdir(ROOT):
        if f.startswith("_C") and f.endswith((".pyx", ".pxi")):
            for line in open(os.path.join(ROOT, f)):
                m = re.match(r"\s*from \.(\w*) import (\w+)", line)
                if m:
                    imported.add(m.group(1) or m.group(2))
    assert imported <= {"_state"}, imported
    assert import_graph()["cgrad._state"] == set()


def test_import_cgrad_imports_no_optional_package():
    # the integrations import their packages inside the functions that use them, so a user
    # without them (or who does not call them) pays nothing; a fresh interpreter, because
    # this one has imported them for other tests
    from conftest import run_python
    optional = ["sklearn", "joblib", "dask", "distributed", "onnx", "onnxruntime", "safetensors",
                "matplotlib", "torch", "jax", "pandas", "tqdm", "graphviz"]
    code = (f"import sys, cgrad, cgrad.nn, cgrad.optim, cgrad.dask, cgrad.onnx, cgrad.viz\n"
            f"print([m for m in {optional!r} if m in sys.modules])")
    assert run_python(code).stdout.strip().splitlines()[-1] == "[]"
