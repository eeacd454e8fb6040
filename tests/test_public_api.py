"""The public API: each package says what it offers (`__all__`), each public name has one
home, and the whole surface stays small enough to learn."""

import ast
import importlib
import os
import pathlib
import subprocess
import sys
import types

import pytest

import keras_sgn

PACKAGE_DIR = pathlib.Path(keras_sgn.__file__).parent
#: The most public names (over every package's `__all__`) a user should have to learn.
MAX_PUBLIC_NAMES = 120


def _packages():
    return sorted("keras_sgn" + ("." + ".".join(init.parent.relative_to(PACKAGE_DIR).parts)
                                 if init.parent != PACKAGE_DIR else "")
                  for init in PACKAGE_DIR.rglob("__init__.py")
                  if "__pycache__" not in init.parts)


PACKAGES = _packages()


def _init_path(package):
    return PACKAGE_DIR.joinpath(*package.split(".")[1:], "__init__.py")


def _is_submodule(package, name):
    folder = _init_path(package).parent
    return (folder / f"{name}.py").exists() or (folder / name / "__init__.py").exists()


def _bound_names(package):
    """Names an `__init__` binds at its top level: imported from keras_sgn, defined or
    assigned (the standard library modules it imports for itself aside)."""
    names = set()
    for node in ast.parse(_init_path(package).read_text()).body:
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("keras_sgn"):
            names.update(alias.asname or alias.name for alias in node.names)
        elif isinstance(node, (ast.FunctionDef, ast.ClassDef)):
            names.add(node.name)
        elif isinstance(node, ast.Assign):
            names.update(target.id for target in node.targets if isinstance(target, ast.Name))
    return names


def test_every_package_lists_its_public_names():
    missing = [package for package in PACKAGES
               if not isinstance(getattr(importlib.import_module(package), "__all__", None),
                                 list)]
    assert not missing, f"packages without an __all__ list: {missing}"


@pytest.mark.parametrize("package", PACKAGES)
def test_every_public_name_resolves(package):
    module = importlib.import_module(package)
    assert len(set(module.__all__)) == len(module.__all__), "a name listed twice"
    unresolved = [name for name in module.__all__ if getattr(module, name, None) is None]
    assert not unresolved


@pytest.mark.parametrize("package", PACKAGES)
def test_an_init_binds_only_its_public_names_and_submodules(package):
    """A helper imported into an `__init__` but left out of `__all__` is a second, hidden
    home for it: code then imports it from either place."""
    public = set(importlib.import_module(package).__all__)
    hidden = sorted(name for name in _bound_names(package) - public
                    if not name.startswith("_") and not _is_submodule(package, name))
    assert not hidden, f"{package} binds {hidden} without listing them in __all__"


def test_no_object_is_public_in_two_packages():
    homes = {}
    for package in PACKAGES:
        module = importlib.import_module(package)
        for name in module.__all__:
            value = getattr(module, name)
            if isinstance(value, types.ModuleType) or name == "__version__":
                continue
            homes.setdefault(id(value), []).append(f"{package}.{name}")
    twice = [places for places in homes.values() if len(places) > 1]
    assert not twice, f"exported from two packages: {twice}"


def test_the_public_surface_stays_small():
    total = sum(len(importlib.import_module(package).__all__) for package in PACKAGES)
    assert total <= MAX_PUBLIC_NAMES, (
        f"{total} public names; keep helpers in their modules (not in __all__)")


def test_the_headline_names_live_at_the_top():
    assert {"load_pretrained", "list_pretrained", "evaluate_pretrained"} <= set(keras_sgn.__all__)
    assert keras_sgn.load_pretrained is keras_sgn.zoo.loading.load_pretrained
    assert "load_pretrained" not in keras_sgn.zoo.__all__  # one home


def _python(code):
    env = dict(os.environ, PYTHONPATH=str(PACKAGE_DIR.parent))
    env.pop("KERAS_SGN_LAZY_IMPORT", None)
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=300, env=env)


def test_the_core_imports_without_the_optional_extras():
    # `None` in sys.modules makes an import of that name fail, as if it were not installed
    # (torch is only checked: other libraries probe sys.modules for it).
    result = _python(
        "import sys\n"
        "sys.modules['keras_tuner'] = None\n"
        "import keras_sgn\n"
        "print(sorted(name for name in sys.modules if name.split('.')[0] in ('torch', "
        "'torchattacks') or name.split('.')[:2] in "
        "(['keras_sgn', 'tuning'], ['keras_sgn', 'experiments'], ['keras_sgn', 'hub'])))\n")
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip().splitlines()[-1] == "[]"


def test_a_missing_extra_is_named_with_its_install_command():
    result = _python(
        "import sys\n"
        "sys.modules['keras_tuner'] = None\n"
        "from keras_sgn import errors\n"
        "try:\n"
        "    import keras_sgn.tuning\n"
        "except errors.MissingExtraError as error:\n"
        "    print(isinstance(error, errors.UserError), error)\n")
    assert result.returncode == 0, result.stderr[-2000:]
    line = result.stdout.strip().splitlines()[-1]
    assert line.startswith("True keras_sgn.tuning needs keras-tuner")
    assert 'pip install "keras-sgn[tune]"' in line
