"""How the package is organised, checked statically (no TensorFlow): no import cycle
between its modules, no module kept only to re-export another's names, no lazy
attribute forwarding except the package's own lazy import."""

import ast
import os
import re

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PACKAGE = os.path.join(ROOT, "keras_sgn")


def _modules():
    """`{dotted name: path}` of every module of keras_sgn (a package by its __init__)."""
    found = {}
    for folder, _, files in os.walk(PACKAGE):
        for file_name in files:
            if file_name.endswith(".py"):
                path = os.path.join(folder, file_name)
                name = os.path.relpath(path, ROOT)[:-3].replace(os.sep, ".")
                found[name.removesuffix(".__init__")] = path
    return found


MODULES = _modules()


def imports_of(name):
    """The keras_sgn modules `name` imports, at module level or inside functions
    (a lazy import still ties the two modules together)."""
    tree = ast.parse(open(MODULES[name], encoding="utf-8").read())
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            for alias in node.names:
                submodule = f"{node.module}.{alias.name}"
                found.add(submodule if submodule in MODULES else node.module)
        elif isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
    return {module for module in found if module in MODULES and module != name}


def import_cycles(modules, imports):
    """The strongly connected groups (more than one module) of the import graph
    restricted to `modules` (Tarjan's algorithm)."""
    index, low, stack, on_stack, groups = {}, {}, [], set(), []

    def visit(module):
        index[module] = low[module] = len(index)
        stack.append(module), on_stack.add(module)
        for other in imports[module] & modules:
            if other not in index:
                visit(other)
                low[module] = min(low[module], low[other])
            elif other in on_stack:
                low[module] = min(low[module], index[other])
        if low[module] == index[module]:
            group = []
            while not group or group[-1] != module:
                group.append(stack.pop())
                on_stack.discard(group[-1])
            if len(group) > 1:
                groups.append(sorted(group))

    for module in sorted(modules):
        if module not in index:
            visit(module)
    return groups


def test_the_cycle_finder_finds_a_cycle():
    imports = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert import_cycles(set(imports), imports) == [["a", "b", "c"]]
    assert import_cycles({"a", "b", "d"}, imports) == []


def test_no_import_cycle_between_modules():
    # Packages' __init__ files are left out: they gather their own submodules' names.
    plain = {name for name, path in MODULES.items() if not path.endswith("__init__.py")}
    imports = {name: imports_of(name) for name in plain}
    assert import_cycles(plain, imports) == []


@pytest.mark.parametrize("name", sorted(MODULES))
def test_no_module_only_re_exports_another(name):
    tree = ast.parse(open(MODULES[name], encoding="utf-8").read())
    docstring = (ast.get_docstring(tree) or "").lower()
    assert "kept for existing imports" not in docstring and "former home" not in docstring
    assert not any(isinstance(node, ast.ImportFrom) and any(a.name == "*" for a in node.names)
                   for node in tree.body), f"{name} re-exports with `import *`"
    forwards = [node for node in tree.body
                if isinstance(node, ast.FunctionDef) and node.name == "__getattr__"]
    assert not forwards or name == "keras_sgn", f"{name} forwards attributes to another module"


# Written in pieces so that this file does not match itself.
OUTSIDE_REFERENCES = re.compile("|".join([
    "DES" + r"IGN(\.md| section)", r"\biss" + r"ue \d+", "Over 60 " + "lines"]))


def test_no_code_refers_to_documents_outside_the_repository():
    """A reader of the code has the repository: its docs/ pages, not a design document
    or tracker issues; and no docstring apologises for its own length."""
    found = []
    for folder in ("keras_sgn", "tools", "tests"):
        for parent, _, files in os.walk(os.path.join(ROOT, folder)):
            for file_name in files:
                if file_name.endswith(".py"):
                    path = os.path.join(parent, file_name)
                    for number, line in enumerate(open(path, encoding="utf-8"), 1):
                        if OUTSIDE_REFERENCES.search(line):
                            found.append(f"{os.path.relpath(path, ROOT)}:{number}")
    assert found == []


def test_only_the_registry_helper_finds_close_matches():
    """Close matches of a name come from `keras_sgn.registry` alone, so every registry
    words an unknown name the same way: no other module imports difflib."""
    found = []
    for folder in ("keras_sgn", "tools"):
        for parent, _, files in os.walk(os.path.join(ROOT, folder)):
            for file_name in files:
                if not file_name.endswith(".py"):
                    continue
                path = os.path.join(parent, file_name)
                tree = ast.parse(open(path, encoding="utf-8").read())
                for node in ast.walk(tree):
                    imported = ([alias.name for alias in node.names]
                                if isinstance(node, ast.Import) else
                                [node.module] if isinstance(node, ast.ImportFrom) else [])
                    if any(name and name.split(".")[0] == "difflib" for name in imported):
                        found.append(os.path.relpath(path, ROOT))
    assert found == [os.path.join("keras_sgn", "registry.py")]
