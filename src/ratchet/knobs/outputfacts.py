"""What a run's output says, read as facts: the numbers it printed, the files it could not open.

Pure functions over output lines (`ratchet init` reads them from an observed run, see
`ratchet.knobs.observe`).

A printed value is a name followed by a number: `name: value`, `name=value` or `name value`,
anywhere on a line and several to a line, so nanoGPT's `step 0: train loss 4.2, val loss 4.3`
prints `step`, `train loss` and `val loss`. A name is one to three words as printed (letters,
digits, `_ . / -`; a dict's quoted key counts), without a leading article or a trailing verb
(`the loss is 0.3` prints `loss`). A number may carry a short unit (`120.5ms`, `1.2%`); one run
into other text (`3abc`, a version `3.11.4`, a date, `5/100`, a time `12:30`, `16,384`) is not
a value. NaN and infinities are values as printed (a number too large for a float is inf).
ANSI escapes and carriage-return progress bars are taken apart first; a line is read up to
MAX_LINE_CHARS. A traceback's `File "x.py", line 4` and an `[Errno 2]` are not values.

A missing path is one an error line says could not be found: Python's `[Errno 2] No such file
or directory: 'x'`, a shell tool's `cat: x: No such file or directory`, `can't open file 'x'`,
`cannot access 'x'`, or a quoted path in a `FileNotFoundError` / `OSError` line that names no
other errno. Placed for the user, it is in the repository (shown relative to it: data the
commit lacks), elsewhere on the machine (shown absolute), or nowhere.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable
from pathlib import Path

MAX_LINE_CHARS = 4096
_ANSI = re.compile(r"\x1b(?:\[[0-9;?]*[ -/]*[@-~]|\][^\x07\x1b]*(?:\x07|\x1b\\)|[@-Z\\-_])")
_WORD = r"[A-Za-z_][\w.\-/]*"
_NUMBER = (r"[-+]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][-+]?\d+)?"
           r"|[-+]?(?:nan|NaN|NAN|inf|Inf|INF|infinity|Infinity)(?!\w)")
_PAIR = re.compile(
    rf"(?<![\w./])(?P<name>{_WORD}(?: {_WORD}){{0,2}})['\"]?"
    rf"(?:[ \t]*[:=][ \t]*|[ \t]+)(?P<value>{_NUMBER})"
    r"[A-Za-z%µ]{0,4}(?!\w|\.\w|[:/\-,]\d)")
# Not values: a traceback's `File "x.py", line 4`, an error's `[Errno 2]`.
_NOT_VALUES = re.compile(r'^\s*File ".*", line \d+.*$|\[Errno \d+\]')
_LEADING = frozenset({"the", "a", "an"})
_TRAILING = frozenset({"is", "was", "are", "were", "be", "of", "at", "to", "in", "for", "now",
                       "by"})

_ERRNO_2 = re.compile(r"No such file or directory:\s*b?(['\"])(?P<path>.+?)\1")
_CANT_OPEN = re.compile(r"(?:can't open file|cannot access|cannot open|can't open)\s+"
                        r"(?:(['\"])(?P<quoted>[^'\"]+)\1|(?P<bare>[^\s'\":]+))")
# A shell tool's `cat: data/x: No such file or directory`; `not found` only for a path with a
# folder in it (`sh: 1: ./run.sh: not found`), not a missing command.
_TOOL = re.compile(r"(?:^|: )(?P<path>[^\s:'\"]+): (?P<what>No such file or directory|not found)")
_RAISED = re.compile(r"\b(?:FileNotFoundError|OSError|IOError)\b(?P<rest>.*)")
_QUOTED = re.compile(r"(['\"])(?P<path>[^'\"\s]+)\1")
_OTHER_ERRNO = re.compile(r"\[Errno (?!2\])\d+\]")
_CODE_SUFFIXES = (".py", ".sh", ".ipynb")


def clean_lines(lines: Iterable[str]) -> list[str]:
    """Lines without ANSI escapes, each carriage-return segment a line of its own, cut long."""
    cleaned = []
    for line in lines:
        for part in _ANSI.sub("", line[:MAX_LINE_CHARS * 4]).split("\r"):
            if part.strip():
                cleaned.append(part[:MAX_LINE_CHARS])
    return cleaned


def printed_values(lines: Iterable[str]) -> dict[str, list[float]]:
    """Every number printed after a name, keyed by the name as printed, in order of output."""
    values: dict[str, list[float]] = {}
    for line in clean_lines(lines):
        for match in _PAIR.finditer(_NOT_VALUES.sub(" ", line)):
            name, value = _name(match.group("name")), _number(match.group("value"))
            if name is not None and value is not None:
                values.setdefault(name, []).append(value)
    return values


def _name(raw: str) -> str | None:
    words = [w.rstrip(".-/") for w in raw.split(" ")]
    while words and words[0].lower() in _LEADING:
        words.pop(0)
    while words and words[-1].lower() in _TRAILING:
        words.pop()
    name = " ".join(words)
    return name if name and (name[0].isalpha() or name[0] == "_") else None


def _number(raw: str) -> float | None:
    try:
        return float(raw)  # `nan`, `inf`, `infinity` too; a huge number is inf
    except (ValueError, OverflowError):
        return None


def failed_paths(lines: Iterable[str]) -> list[str]:
    """The paths error lines say could not be found, as printed, first mention first."""
    found: dict[str, None] = {}
    for line in clean_lines(lines):
        for path in _paths_in(line):
            found.setdefault(path.strip(), None)
    return [path for path in found if path]


def _paths_in(line: str) -> list[str]:
    match = _ERRNO_2.search(line)
    if match:
        return [match.group("path")]
    match = _CANT_OPEN.search(line)
    if match and (match.group("quoted") or _looks_like_path(match.group("bare"))):
        return [match.group("quoted") or match.group("bare")]
    match = _TOOL.search(line)
    if match and (match.group("what") != "not found" or "/" in match.group("path")):
        return [match.group("path")]
    raised = _RAISED.search(line)
    if raised and not _OTHER_ERRNO.search(line):
        return [m.group("path") for m in _QUOTED.finditer(raised.group("rest"))
                if _looks_like_path(m.group("path"))]
    return []


def _looks_like_path(text: str) -> bool:
    """A folder in it, or a file suffix; never a URL."""
    if "://" in text:
        return False
    return "/" in text or re.search(r"\.[A-Za-z][A-Za-z0-9]{0,7}$", text) is not None


def missing_paths(lines: Iterable[str], repo_root: Path, workdir: Path | None = None,
                  ) -> list[str]:
    """The paths a run could not open that the user has: relative to the repository where
    they are in it (untracked or ignored data), absolute elsewhere (a dataset in ~/.cache).
    `workdir`: where the run ran (its absolute paths there mean the repository's)."""
    return [shown for shown, exists in _located(lines, repo_root, workdir) if exists]


def absent_paths(lines: Iterable[str], repo_root: Path, workdir: Path | None = None,
                 ) -> list[str]:
    """The paths a run could not open that exist nowhere the user has them either."""
    return [shown for shown, exists in _located(lines, repo_root, workdir) if not exists]


def read_only_suggestions(lines: Iterable[str], repo_root: Path,
                          workdir: Path | None = None) -> list[str]:
    """`[sandbox] read_only` entries that would give the run what it missed: the top-level
    folder in the repository (`data`), or the folder outside it (`~/.cache/huggingface`);
    never code (an untracked script is to be committed, not mounted)."""
    suggested: dict[str, None] = {}
    for path in missing_paths(lines, repo_root, workdir):
        if not path.endswith(_CODE_SUFFIXES):
            suggested.setdefault(_mount_point(path), None)
    return list(suggested)


def untracked_code(lines: Iterable[str], repo_root: Path, workdir: Path | None = None,
                   ) -> list[str]:
    """Missing paths in the repository that are code: to be committed."""
    return [path for path in missing_paths(lines, repo_root, workdir)
            if not os.path.isabs(path) and path.endswith(_CODE_SUFFIXES)]


def _located(lines: Iterable[str], repo_root: Path,
             workdir: Path | None) -> list[tuple[str, bool]]:
    located: dict[str, bool] = {}
    for printed in failed_paths(lines):
        shown, where = _place(printed, repo_root, workdir)
        located.setdefault(shown, os.path.lexists(where))
    return list(located.items())


def _place(printed: str, repo_root: Path, workdir: Path | None) -> tuple[str, Path]:
    """How to show a printed path, and where it would be for the user."""
    path = Path(os.path.normpath(printed))
    for base in (workdir, repo_root):
        if base is not None and path.is_absolute() and path.is_relative_to(base):
            path = path.relative_to(base)
            break
    if path.is_absolute():
        return str(path), path
    relative = path.as_posix()
    if relative == ".." or relative.startswith("../"):
        outside = Path(os.path.normpath(repo_root / path))
        return str(outside), outside
    return relative, repo_root / path


def _mount_point(path: str) -> str:
    """What to mount for `path`: its top folder in the repository; outside, its folder in
    HOME (two levels for a hidden one: `~/.cache/x`), or the folder that holds it."""
    if not os.path.isabs(path):
        return Path(path).parts[0]
    absolute, home = Path(path), Path.home()
    if absolute.is_relative_to(home) and absolute != home:
        parts = absolute.relative_to(home).parts
        depth = 2 if parts[0].startswith(".") and len(parts) > 2 else 1
        return str(home.joinpath(*parts[:depth]))
    parent = absolute.parent
    return str(absolute if parent in (Path("/"), Path("/tmp")) else parent)


def missing_files_hint(lines: Iterable[str], repo_root: Path) -> str | None:
    """What a failed baseline's output says is missing that the user has, and the fix: data
    to mount read-only, code to commit. None when it names nothing of the kind."""
    lines = list(lines)
    code = untracked_code(lines, repo_root)
    mounts = read_only_suggestions(lines, repo_root)
    if code:
        return (f"it could not open {code[0]}, which your repository has but the commit "
                "lacks: commit it")
    if mounts:
        missed = missing_paths(lines, repo_root)[0]
        listed = ", ".join(f'"{m}"' for m in mounts)
        return (f"it could not open {missed}, which is not in the commit (a study's runs see "
                f"only committed files): add [sandbox] read_only = [{listed}] to ratchet.toml")
    return None
