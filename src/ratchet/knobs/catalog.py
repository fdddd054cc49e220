"""Where a task's knobs live, and the reader and writer for each kind of file.

UPPER_CASE module-level constants in every editable Python file are knobs. The files named in
`[knobs] files` hold knobs of every name: any module-level assignment of a literal in a Python
file (nanoGPT's `train.py` and `config/*.py`), every scalar key of a YAML, JSON or TOML file.
A name defined in more than one file belongs to the first file, in path order.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ratchet.config import TaskConfig
from ratchet.errors import UsageError
from ratchet.flags import FlagsError, flags_in, placeholders
from ratchet.globs import matches_any
from ratchet.knobs import datafile
from ratchet.knobs.source import Knob, find_knobs, rewrite_knobs


def holds_knobs(path: str, config: TaskConfig) -> bool:
    """Whether `path` is a file knobs are read from."""
    if path.endswith(".py"):
        return matches_any(path, config.editable)
    return datafile.is_data_file(path) and matches_any(path, config.knob_files)


def find_in(path: str, text: str, config: TaskConfig) -> list[Knob]:
    """The knobs of one file, in file order."""
    if path.endswith(".py"):
        return find_knobs(text, path, any_case=matches_any(path, config.knob_files))
    return [Knob(e.key, e.value, path, e.line) for e in datafile.entries(text, path)]


def knobs_in(sources: Mapping[str, str], config: TaskConfig) -> dict[str, Knob]:
    """Knobs by name across files; the first definition of a name wins."""
    knobs: dict[str, Knob] = {}
    for path in sorted(sources):
        for knob in find_in(path, sources[path], config):
            knobs.setdefault(knob.name, knob)
    return knobs


def rewrite(path: str, text: str, values: Mapping[str, Any]) -> str:
    """The file's text with the named knobs set to `values`, all else kept as it was."""
    if path.endswith(".py"):
        return rewrite_knobs(text, values)
    return datafile.rewrite(text, path, values)


def check_space(config: TaskConfig, knobs: Mapping[str, Knob]) -> None:
    """Every `[space]` name must be a knob of the code."""
    for param in config.space:
        if param.name not in knobs:
            raise UsageError(f"ratchet.toml: [space].{param.name}: no module-level constant "
                             "of that name in the editable files, nor a key of the [knobs] "
                             "files")


def check_flags(config: TaskConfig, sources: Mapping[str, str]) -> None:
    """Every placeholder of the command must be a setting of the base's flags file."""
    name = config.flags_file
    if name is None:
        return
    if name not in sources:
        raise UsageError(f"ratchet.toml: [knobs].flags: {name} is not in the committed code")
    try:
        settings = flags_in(sources[name], name)
    except FlagsError as exc:
        raise UsageError(f"ratchet.toml: [knobs].flags: {exc}") from None
    missing = [p for p in placeholders(config.command or "") if p not in settings]
    if missing:
        raise UsageError(f"ratchet.toml: [task].command: {{{missing[0]}}} is not a setting of "
                         f"{name} (it has: {', '.join(sorted(settings)) or 'none'})")
