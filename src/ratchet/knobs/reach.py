"""The repository files a script runs: itself, the modules it imports from the repository
(transitively), the files it execs (`exec(open('configurator.py').read())`) and the config
files its command passes.

Init reads the metric, the knobs and the data a run uses from these files only: a `bench.py`
beside `train.py` prints its own `time:`, and that is no metric of the training run.
"""

from __future__ import annotations

import ast
from collections.abc import Iterable, Mapping
from pathlib import PurePosixPath


def reached(script: str, files: Mapping[str, str], config_files: Iterable[str] = ()) -> list[str]:
    """`script`, the config files, and every repository file they import or exec, in the
    order found (the script first)."""
    order = [script, *[c for c in config_files if c != script]]
    seen = set(order)
    queue = list(order)
    while queue:
        path = queue.pop(0)
        if path not in files:
            continue
        for found in _dependencies(path, files[path], files, script):
            if found not in seen:
                seen.add(found)
                order.append(found)
                queue.append(found)
    return [p for p in order if p in files]


def _dependencies(path: str, text: str, files: Mapping[str, str], script: str) -> list[str]:
    try:
        tree = ast.parse(text)
    except (SyntaxError, ValueError, RecursionError, MemoryError):  # ValueError: NUL bytes
        return []
    roots = _roots(script, path)
    found: list[str] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                found += _resolve(alias.name, roots, files)
        elif isinstance(node, ast.ImportFrom):
            found += _from_import(node, path, roots, files)
        elif isinstance(node, ast.Call):
            found += [p for p in [_exec_target(node)] if p in files]
    return found


def _roots(script: str, path: str) -> list[str]:
    """Where imports are looked up: the script's folder (Python puts it first on sys.path),
    the importing file's folder, the repository root and `src/`."""
    folders = [str(PurePosixPath(script).parent), str(PurePosixPath(path).parent), ".", "src"]
    return list(dict.fromkeys("" if f == "." else f for f in folders))


def _resolve(module: str, roots: list[str], files: Mapping[str, str]) -> list[str]:
    """The files of a dotted module: each package's `__init__.py` on the way, and the module."""
    parts = module.split(".")
    for root in roots:
        base = PurePosixPath(root) if root else PurePosixPath()
        found = []
        for i in range(1, len(parts) + 1):
            stem = base.joinpath(*parts[:i]).as_posix()
            for candidate in (f"{stem}.py", f"{stem}/__init__.py"):
                if candidate in files:
                    found.append(candidate)
        if found:
            return found
    return []


def _from_import(node: ast.ImportFrom, path: str, roots: list[str],
                 files: Mapping[str, str]) -> list[str]:
    """`from a.b import c`: a/b.py, or a/b/c.py when c is a submodule; relative imports from
    the importing file's package."""
    module = node.module or ""
    if node.level:
        parents = PurePosixPath(path).parents
        if node.level > len(parents):
            return []  # above the repository: nothing of ours
        package = parents[node.level - 1].as_posix()
        roots = ["" if package == "." else package]
    found = _resolve(module, roots, files) if module else []
    for alias in node.names:
        name = f"{module}.{alias.name}" if module else alias.name
        found += [p for p in _resolve(name, roots, files) if p not in found]
    return found


def _exec_target(node: ast.Call) -> str | None:
    """The file of `exec(open('x.py').read())`, the way nanoGPT runs its configurator."""
    if not (isinstance(node.func, ast.Name) and node.func.id == "exec" and node.args):
        return None
    read = node.args[0]
    if isinstance(read, ast.Call) and isinstance(read.func, ast.Attribute) \
            and read.func.attr == "read" and isinstance(read.func.value, ast.Call):
        opened = read.func.value
        if isinstance(opened.func, ast.Name) and opened.func.id == "open" and opened.args \
                and isinstance(opened.args[0], ast.Constant) \
                and isinstance(opened.args[0].value, str):
            return PurePosixPath(opened.args[0].value).as_posix()
    return None
