"""The size of the rooms: no function over 60 lines without its reason, no benchmark module over 400 lines.

A function in the toolkit, the application, the benchmarks or the two scripts may run longer
than ``MAX_FUNCTION`` lines (its ``def`` to its last line) only when the line just above it (above
its decorators, if any) is a comment ``# long: <why>``. A module of ``benchmarks/`` holds at most
``MAX_BENCHMARK_MODULE`` lines: one benchmark is a command and the modules it imports, each one
responsibility. Each file is read with ``ast``; nothing is imported.
"""
from __future__ import annotations

import ast
import os
import re
from typing import Dict, Iterator, Tuple

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CHECKED = ("pipelines", "models", "motionssl", "benchmarks", "train.py", "eval.py")
MAX_FUNCTION = 60
MAX_BENCHMARK_MODULE = 400
REASON = re.compile(r"# long:\s*\S")  # on the line above a long def (or its decorators), after indentation

# The long functions of the day this check was written, with their lengths: each may stay as long as it is
# until it is split, never grow. This list may only shrink — a function split below the limit, moved or
# renamed leaves it (test_the_allowance_names_only_long_functions says so), and nothing joins it: a new
# long function gives its reason in a `# long:` comment instead.
ALLOWED: Dict[str, int] = {
}


def python_files() -> Iterator[str]:
    """Every ``.py`` file of ``CHECKED``, relative to the repository root, with ``/`` separators."""
    for entry in CHECKED:
        path = os.path.join(ROOT, entry)
        if os.path.isfile(path):
            yield entry
            continue
        for folder, dirs, files in os.walk(path):
            dirs[:] = sorted(d for d in dirs if not d.startswith((".", "__pycache__")))
            for name in sorted(files):
                if name.endswith(".py"):
                    yield os.path.relpath(os.path.join(folder, name), ROOT).replace(os.sep, "/")


def functions(tree: ast.AST, prefix: str = "") -> Iterator[Tuple[str, ast.AST]]:
    """``(qualified name, node)`` of every function and method, nested ones included (``outer.inner``)."""
    for node in ast.iter_child_nodes(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            name = prefix + node.name
            if not isinstance(node, ast.ClassDef):
                yield name, node
            yield from functions(node, name + ".")
        else:
            yield from functions(node, prefix)


def long_functions() -> Dict[str, int]:
    """``path::name`` → lines of every function over ``MAX_FUNCTION`` lines without a ``# long:`` reason."""
    found = {}
    for path in python_files():
        with open(os.path.join(ROOT, path), encoding="utf-8") as f:
            source = f.read()
        lines = source.splitlines()
        for name, node in functions(ast.parse(source, path)):
            length = node.end_lineno - node.lineno + 1
            top = min([node.lineno] + [d.lineno for d in node.decorator_list])
            above = lines[top - 2].strip() if top >= 2 else ""
            if length > MAX_FUNCTION and not REASON.match(above):
                found[f"{path}::{name}"] = length
    return found


def test_no_function_is_long_without_its_reason():
    found = long_functions()
    new = {key: n for key, n in found.items() if key not in ALLOWED}
    grown = {key: f"{ALLOWED[key]} -> {n}" for key, n in found.items() if key in ALLOWED and n > ALLOWED[key]}
    assert not new, (f"functions over {MAX_FUNCTION} lines: {new}; split them, or write the reason on the line "
                     "above the def: '# long: <why>'")
    assert not grown, f"functions allowed to stay as long as they were have grown: {grown}; split them"


def test_the_allowance_names_only_long_functions():
    found = long_functions()
    stale = sorted(key for key in ALLOWED if key not in found)
    assert not stale, f"no longer long (or gone): remove them from ALLOWED in tests/test_house.py: {stale}"


def long_benchmark_modules() -> Dict[str, int]:
    """Path → lines of every module of ``benchmarks/`` over ``MAX_BENCHMARK_MODULE`` lines."""
    found = {}
    for path in python_files():
        if path.startswith("benchmarks/"):
            with open(os.path.join(ROOT, path), encoding="utf-8") as f:
                count = len(f.read().splitlines())
            if count > MAX_BENCHMARK_MODULE:
                found[path] = count
    return found


def test_no_benchmark_module_is_over_400_lines():
    found = long_benchmark_modules()
    assert not found, (f"benchmark modules over {MAX_BENCHMARK_MODULE} lines: {found}; split them by "
                       "responsibility (the command, its stages or rows, its report)")


def test_the_check_sees_long_rooms_and_the_reasons_given(tmp_path, monkeypatch):
    """Over the limit is found, at the limit is not, and a reason above the decorators clears a function."""
    def body(indent):
        return "".join(f"{indent}x = {i}\n" for i in range(MAX_FUNCTION - 1))

    (tmp_path / "benchmarks").mkdir()
    (tmp_path / "benchmarks" / "rooms.py").write_text(
        f"def at_the_limit():\n{body('    ')}\n\n"
        f"class Room:\n    def too_long(self):\n{body('        ')}        return x\n\n\n"
        f"# long: one table, row by row\n@staticmethod\ndef reasoned():\n{body('    ')}    return x\n")
    monkeypatch.setitem(globals(), "ROOT", str(tmp_path))
    monkeypatch.setitem(globals(), "CHECKED", ("benchmarks",))
    assert long_functions() == {"benchmarks/rooms.py::Room.too_long": MAX_FUNCTION + 1}
    assert long_benchmark_modules() == {}
    (tmp_path / "benchmarks" / "hall.py").write_text("x = 0\n" * (MAX_BENCHMARK_MODULE + 1))
    assert long_benchmark_modules() == {"benchmarks/hall.py": MAX_BENCHMARK_MODULE + 1}
