"""The house of docs/design.md, checked against the imports: two libraries and the application beside them.

* ``motionssl.models`` is pure PyTorch: it imports neither ``motionssl.pipelines`` nor DALI nor PyAV;
* ``motionssl.pipelines`` imports no ``motionssl.models``;
* neither library imports the application — the modules of ``motionssl/`` other than the two
  libraries and ``motionssl.configs`` (the commands, the run, its config, devices and ranks, the
  evaluation protocols);
* libraries raise exceptions and commands exit: no ``SystemExit`` or ``sys.exit`` in either library,
  but in a module's ``if __name__ == "__main__":`` block (a library module run as a command says
  which command took its place).

Every module file is read with ``ast``, so an import inside a function counts as much as one at
the top, and relative imports are resolved against the module's package.
"""
from __future__ import annotations

import ast
import os
import subprocess
import sys
from typing import Iterator, List, Tuple

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
LIBRARIES = {"motionssl.pipelines": "pipelines", "motionssl.models": "models"}
NOT_APPLICATION = {"__init__", "__pycache__", "pipelines", "models", "configs"}  # the version, libraries, configs


def application_modules() -> List[str]:
    """``motionssl.<name>`` for every module and package of ``motionssl/`` that is the application."""
    found = []
    for entry in os.listdir(os.path.join(ROOT, "motionssl")):
        name, ext = os.path.splitext(entry)
        path = os.path.join(ROOT, "motionssl", entry)
        if name in NOT_APPLICATION:
            continue
        if ext == ".py" or (os.path.isdir(path) and os.path.exists(os.path.join(path, "__init__.py"))):
            found.append(f"motionssl.{name}")
    return sorted(found)


def library_files(package: str) -> Iterator[Tuple[str, str, bool]]:
    """``(module name, file, is a package's __init__)`` for every module file of a library."""
    folder = os.path.join(ROOT, LIBRARIES[package])
    for path, dirs, names in os.walk(folder):
        dirs[:] = sorted(d for d in dirs if d != "__pycache__")
        rel = os.path.relpath(path, folder)
        prefix = package if rel == "." else f"{package}.{rel.replace(os.sep, '.')}"
        for name in sorted(n for n in names if n.endswith(".py")):
            stem = name[:-3]
            yield (prefix if stem == "__init__" else f"{prefix}.{stem}"), os.path.join(path, name), stem == "__init__"


def imports_of(module: str, path: str, is_package: bool) -> Iterator[Tuple[int, str]]:
    """``(line, imported name)`` for every import of a file, at any depth; ``from a import b`` gives ``a.b``."""
    with open(path, encoding="utf-8") as f:
        tree = ast.parse(f.read(), path)
    package = module if is_package else module.rpartition(".")[0]
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")
                anchor = ".".join(parts[:len(parts) - (node.level - 1)])
                base = f"{anchor}.{base}" if base else anchor
            for alias in node.names:
                yield node.lineno, base if alias.name == "*" else f"{base}.{alias.name}"


def within(name: str, prefixes) -> bool:
    return any(name == p or name.startswith(p + ".") for p in prefixes)


def layering_violations() -> List[str]:
    application = application_modules()
    forbidden = {
        "motionssl.models": ["motionssl.pipelines", "nvidia", "av", *application],
        "motionssl.pipelines": ["motionssl.models", *application],
    }
    found = []
    for library, banned in forbidden.items():
        for module, path, is_package in library_files(library):
            for line, name in imports_of(module, path, is_package):
                if within(name, banned):
                    found.append(f"{os.path.relpath(path, ROOT)}:{line}: {module} imports {name}")
    return found


def is_main_block(node: ast.AST) -> bool:
    """Whether ``node`` is an ``if __name__ == "__main__":`` statement."""
    test = getattr(node, "test", None)
    return (isinstance(node, ast.If) and isinstance(test, ast.Compare) and isinstance(test.left, ast.Name)
            and test.left.id == "__name__" and len(test.ops) == 1 and isinstance(test.ops[0], ast.Eq)
            and isinstance(test.comparators[0], ast.Constant) and test.comparators[0].value == "__main__")


def exits(path: str) -> List[int]:
    """Lines of a file that name ``SystemExit`` or call ``sys.exit`` / ``exit`` / ``quit``, but in the body of
    the module's ``if __name__ == "__main__":`` block (at the top level; its ``else`` counts)."""
    with open(path, encoding="utf-8") as f:
        tree = ast.parse(f.read(), path)
    main = {id(n) for block in tree.body if is_main_block(block) for stmt in block.body for n in ast.walk(stmt)}
    lines = []
    for node in ast.walk(tree):
        if id(node) in main:
            continue
        if isinstance(node, ast.Name) and node.id == "SystemExit":
            lines.append(node.lineno)
        elif isinstance(node, ast.Attribute) and node.attr == "exit" and isinstance(node.value, ast.Name) \
                and node.value.id == "sys":
            lines.append(node.lineno)
        elif isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in ("exit", "quit"):
            lines.append(node.lineno)
    return sorted(lines)


def test_the_application_is_found():
    """The check below is only as good as its list of application modules."""
    found = application_modules()
    assert {"motionssl.train", "motionssl.evaluate"} <= set(found)
    assert not {"motionssl.pipelines", "motionssl.models", "motionssl.configs"} & set(found)


def test_the_import_reader_resolves_relative_and_nested_imports(tmp_path):
    source = tmp_path / "m.py"
    source.write_text("from . import files\nfrom ..models import losses\n\ndef f():\n    import nvidia.dali\n"
                      "    from .ops.config import X\n")
    got = [name for _, name in imports_of("motionssl.pipelines.m", str(source), False)]
    assert got == ["motionssl.pipelines.files", "motionssl.models.losses", "nvidia.dali",
                   "motionssl.pipelines.ops.config.X"]
    assert [n for _, n in imports_of("motionssl.pipelines.datasets", str(source), True)][:2] == [
        "motionssl.pipelines.datasets.files", "motionssl.pipelines.models.losses"]


def test_the_libraries_import_as_docs_design_draws_them():
    """models imports neither pipelines nor DALI nor PyAV; pipelines no models; neither the application."""
    found = layering_violations()
    assert not found, "imports across the layers:\n" + "\n".join(found)


@pytest.mark.parametrize("library", sorted(LIBRARIES))
def test_the_libraries_raise_and_leave_exiting_to_the_commands(library):
    found = [f"{os.path.relpath(path, ROOT)}:{line}" for _, path, _ in library_files(library) for line in exits(path)]
    assert not found, "exits in a library: " + ", ".join(found)


def test_the_exit_check_passes_only_a_modules_main_block(tmp_path):
    source = tmp_path / "m.py"
    source.write_text("import sys\n\n\ndef f():\n    raise SystemExit(1)\n\n\n"
                      "def g():\n    if __name__ == '__main__':\n        sys.exit(2)\n\n\n"
                      "if __name__ != '__main__':\n    exit()\n"
                      "if __name__ == '__main__':\n    print('the command is elsewhere', file=sys.stderr)\n"
                      "    sys.exit(2)\nelse:\n    quit()\n")
    assert exits(str(source)) == [5, 10, 14, 19]


def test_importing_every_model_module_loads_no_pipelines_and_no_dali():
    modules = [m for m, _, _ in library_files("motionssl.models")]
    code = (f"import importlib, sys\nfor m in {modules!r}:\n    importlib.import_module(m)\n"
            "loaded = sorted(m for m in sys.modules if m.startswith(('nvidia', 'motionssl.pipelines')) or m == 'av')\n"
            "assert not loaded, f'{len(loaded)} modules loaded: {loaded[:8]}'")
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-600:]
