"""Data a run reads that its commit lacks, as `[sandbox] read_only` entries.

A study's runs see only committed files: nanoGPT's `data/shakespeare_char/train.bin` is
ignored by git, so every sandboxed run fails on it until the folder is mounted read-only.
An observed run says so itself (`FileNotFoundError`); without one, a folder the code names by
string (`os.path.join('data', dataset)`) that holds untracked or ignored files is the guess.
Outputs (`out_dir = 'out'`, `os.makedirs(...)`) are never suggested: mounted read-only, the
run could not write them.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from pathlib import PurePosixPath
from typing import TYPE_CHECKING

from ratchet.knobs.printnames import words

if TYPE_CHECKING:
    from ratchet.knobs.observe import Observation

# Folders never mounted for data: environments, caches of tools, outputs.
_NOT_DATA = frozenset({".git", ".venv", "venv", "env", "__pycache__", ".ratchet", "node_modules",
                       ".ipynb_checkpoints", ".idea", ".vscode", ".pytest_cache", ".mypy_cache",
                       ".ruff_cache", "build", "dist"})
_OUTPUT_WORDS = frozenset({"out", "output", "outputs", "save", "log", "logs", "ckpt",
                           "checkpoint", "checkpoints", "results", "runs", "wandb"})


@dataclass(frozen=True)
class ReadOnly:
    """A `[sandbox] read_only` entry: data the run reads that the commit lacks."""

    path: str
    why: str
    observed: bool


def read_only(files: Mapping[str, str], run_files: list[str], untracked: Collection[str],
              observations: Sequence[Observation]) -> list[ReadOnly]:
    """Data the commit lacks that a run reads: what an observed run could not open, else
    folders the code names by string that hold untracked or ignored files."""
    if any(o.runs for o in observations):
        seen: dict[str, ReadOnly] = {}
        for o in observations:
            for p in o.read_only():
                missed = ", ".join(m for m in o.missing() if _under(m, p))
                seen.setdefault(p, ReadOnly(p, f"the observed run could not open {missed}",
                                            observed=True))
        return list(seen.values())
    found: dict[str, ReadOnly] = {}
    for path in run_files:
        for folder in _named_folders(files[path]):
            holds = [u for u in untracked if _under(u, folder)]
            if holds and folder not in found:
                found[folder] = ReadOnly(folder, f"{path} reads '{folder}', which holds files "
                                         f"the commit lacks ({_few(holds)})", observed=False)
    return list(found.values())


def _named_folders(text: str) -> list[str]:
    """Top-level folders a file names in its string constants (`os.path.join('data', name)`),
    except outputs (`out_dir = 'out'`, `os.makedirs(...)`) and tool folders."""
    tree = _parse(text)
    if tree is None:
        return []
    outputs = {id(n) for node in ast.walk(tree) for n in _output_strings(node)}
    found: dict[str, None] = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and isinstance(node.value, str) \
                and id(node) not in outputs:
            top = _top_folder(node.value)
            if top:
                found.setdefault(top, None)
    return list(found)


def _output_strings(node: ast.AST) -> list[ast.AST]:
    """String constants that name where the code writes."""
    if isinstance(node, ast.Assign) and any(
            isinstance(t, ast.Name) and set(words(t.id)) & _OUTPUT_WORDS
            for t in node.targets):
        return list(ast.walk(node.value))
    if isinstance(node, ast.Call) and getattr(node.func, "attr", getattr(node.func, "id", "")) \
            in ("makedirs", "mkdir", "save", "savefig", "to_csv", "dump"):
        return [n for a in node.args for n in ast.walk(a)]
    return []


def _top_folder(text: str) -> str | None:
    path = text.strip()
    if not path or len(path) > 200 or any(c in path for c in " \n\t{}%*?:\\") \
            or path.startswith(("/", "~", "..")):
        return None
    top = PurePosixPath(path).parts[0] if PurePosixPath(path).parts else ""
    return top if top and top not in _NOT_DATA and not top.startswith(".") \
        and not top.endswith(".py") and re.fullmatch(r"[\w.-]+", top) else None


def _under(path: str, folder: str) -> bool:
    return path.rstrip("/") == folder or path.startswith(folder.rstrip("/") + "/")


def _few(paths: list[str], most: int = 3) -> str:
    shown = ", ".join(sorted(paths)[:most])
    return shown + (f" and {len(paths) - most} more" if len(paths) > most else "")


def _parse(text: str) -> ast.Module | None:
    try:
        return ast.parse(text)
    except (SyntaxError, ValueError, RecursionError, MemoryError):  # ValueError: NUL bytes
        return None
