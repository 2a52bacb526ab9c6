"""The binding's stub (cgrad/_C.pyi) is complete: it names every public function, class,
constant, method and property of cgrad._C, and nothing that does not exist."""
import ast
import inspect
import os

import numpy as np

import cgrad
from cgrad import _C

CLASSES = ("TensorBase", "Program", "ParamSet")


def _declared():
    """{None: the module's names, class name: the class's names} as the stub declares them.
    Plain assignments at module level are the stub's own type aliases (_Axis = ...)."""
    with open(os.path.join(os.path.dirname(cgrad.__file__), "_C.pyi")) as f:
        tree = ast.parse(f.read())

    def names(body):
        found = {node.name for node in body if isinstance(node, (ast.FunctionDef, ast.ClassDef))}
        return found | {node.target.id for node in body
                        if isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name)}

    declared = {None: names(tree.body)}
    declared.update({node.name: names(node.body) for node in tree.body if isinstance(node, ast.ClassDef)})
    return declared


def _public(names):
    return {n for n in names if not n.startswith("_")}


def _exists(owner, name):
    if name == "__buffer__":  # the buffer protocol's Python name (PEP 688), a slot before 3.12
        return np.asarray(memoryview(cgrad.zeros(2))).shape == (2,)
    return hasattr(owner, name)


def test_the_stub_names_every_public_name_of_the_binding():
    declared = _declared()
    runtime = {n for n in _public(dir(_C)) if not inspect.ismodule(getattr(_C, n))}
    missing = runtime - declared[None]
    assert not missing, f"cgrad/_C.pyi lacks {sorted(missing)}"
    for cls in CLASSES:
        missing = _public(vars(getattr(_C, cls))) - declared.get(cls, set())
        assert not missing, f"cgrad/_C.pyi: {cls} lacks {sorted(missing)}"


def test_the_stub_names_nothing_that_does_not_exist():
    declared = _declared()
    assert set(CLASSES) <= declared[None]
    extra = {owner: sorted(n for n in names if not _exists(getattr(_C, owner) if owner else _C, n))
             for owner, names in declared.items()}
    assert not any(extra.values()), f"cgrad/_C.pyi names what cgrad._C lacks: {extra}"
