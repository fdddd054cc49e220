"""IN or OUTSIDE the classical search space: what kind of change an experiment made.

A change is IN when the only differences between the parent's code and the candidate's are
the values of knobs named in `[space]`; anything else (another constant, new code, a changed
structure, a file that holds no knobs) is OUTSIDE. The comparison is of parsed code (or parsed
YAML, JSON and TOML), so formatting and comments do not count.
"""

from __future__ import annotations

import ast
from collections.abc import Iterable, Mapping

from ratchet.knobs import datafile

IN, OUTSIDE = "in", "outside"


def classify(old_files: Mapping[str, str | None], new_files: Mapping[str, str | None],
             space: Iterable[str]) -> str:
    """`old_files`/`new_files`: the changed paths' contents (None where a file is absent).
    Code too deep or too large to compare (a sum of thousands of terms) is OUTSIDE."""
    try:
        return _classify(old_files, new_files, frozenset(space))
    except (RecursionError, MemoryError, ValueError, TypeError):
        return OUTSIDE


def _classify(old_files: Mapping[str, str | None], new_files: Mapping[str, str | None],
              names: frozenset[str]) -> str:
    for path in set(old_files) | set(new_files):
        old, new = old_files.get(path), new_files.get(path)
        if old is None or new is None:
            return OUTSIDE
        if path.endswith(".py"):
            old_shape, new_shape = _shape(old, names), _shape(new, names)
        elif datafile.is_data_file(path):
            old_shape, new_shape = (datafile.shape(old, path, names),
                                    datafile.shape(new, path, names))
        else:
            return OUTSIDE
        if old_shape is None or old_shape != new_shape:
            return OUTSIDE
    return IN


def _shape(source: str, knobs: frozenset[str]) -> str | None:
    """The module's syntax tree with the values of module-level `knobs` blanked out."""
    try:
        tree = ast.parse(source)
    except (SyntaxError, ValueError, RecursionError, MemoryError):  # ValueError: NUL bytes
        return None
    for node in tree.body:
        target = _knob_target(node)
        if target in knobs:
            node.value = ast.Constant(value=None)  # type: ignore[attr-defined]
    return ast.dump(tree, annotate_fields=False, include_attributes=False)


def _knob_target(node: ast.stmt) -> str | None:
    if isinstance(node, ast.Assign) and len(node.targets) == 1 \
            and isinstance(node.targets[0], ast.Name):
        return node.targets[0].id
    if isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name) and node.value:
        return node.target.id
    return None
