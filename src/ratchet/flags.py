"""Knobs as command-line flags: `[task].command` as a template whose `{name}` placeholders are
filled from the flags file (`[knobs].flags`) of the code state being run.

The flags file is editable, like any knob file, so a candidate's values travel in its commit;
the command itself stays protected. Every value is shell-quoted, so a value can only ever be
one argument, never more shell; a placeholder the file does not answer fails the run as the
code's crash, since the file is the proposer's to edit.
"""

from __future__ import annotations

import json
import re
import shlex
import tomllib
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import yaml

PLACEHOLDER = re.compile(r"\{([A-Za-z_][A-Za-z0-9_.]*)\}")
# Edited code writes the file: a bounded read, and a bounded walk (YAML aliases can make a
# small file name exponentially many settings).
MAX_BYTES = 1 << 20
MAX_SETTINGS = 10_000
# One argument of a command line may hold 128 KiB on Linux; past that the process could not
# even start, and that must be the candidate's failure, not ratchet's.
MAX_COMMAND = 64 * 1024


class FlagsError(Exception):
    """The flags file cannot fill the command: the run fails, with this as its reason."""


def placeholders(template: str) -> list[str]:
    return PLACEHOLDER.findall(template)


def fill(template: str, values: Mapping[str, Any], source: str = "the flags file") -> str:
    """The command with every placeholder replaced by its value, shell-quoted."""

    def value_of(match: re.Match[str]) -> str:
        name = match.group(1)
        if name not in values:
            raise FlagsError(f"{source} has no {name!r} for the command's {{{name}}}")
        return shlex.quote(_text(values[name], name, source))

    command = PLACEHOLDER.sub(value_of, template)
    if len(command) > MAX_COMMAND:
        raise FlagsError(f"the command filled from {source} is over {MAX_COMMAND // 1024} KiB")
    return command


def read_flags(path: Path, name: str) -> dict[str, Any]:
    """Every scalar setting of a TOML, YAML or JSON file, by dotted path."""
    try:
        if path.stat().st_size > MAX_BYTES:
            raise FlagsError(f"the flags file {name} is over {MAX_BYTES // 1024} KiB")
        text = path.read_text()
    except FileNotFoundError:
        raise FlagsError(f"the flags file {name} is missing") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise FlagsError(f"the flags file {name} cannot be read: {exc}") from None
    return flags_in(text, name)


def flags_in(text: str, name: str) -> dict[str, Any]:
    """The settings of a flags file's text."""
    try:
        data = _parse(text, name)
    except (ValueError, yaml.YAMLError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise FlagsError(f"the flags file {name} does not parse: {first}") from None
    if not isinstance(data, dict):
        raise FlagsError(f"the flags file {name} is not a table of settings")
    settings: dict[str, Any] = {}
    for key, value in _flatten(data, ""):
        settings[key] = value
        if len(settings) > MAX_SETTINGS:
            raise FlagsError(f"the flags file {name} holds over {MAX_SETTINGS} settings")
    return settings


def _parse(text: str, name: str) -> Any:
    if name.endswith(".toml"):
        return tomllib.loads(text)
    if name.endswith(".json"):
        return json.loads(text)
    return yaml.safe_load(text)


def _flatten(data: Mapping[Any, Any], prefix: str) -> Iterator[tuple[str, Any]]:
    for key, value in data.items():
        if isinstance(value, Mapping):
            yield from _flatten(value, f"{prefix}{key}.")
        else:
            yield f"{prefix}{key}", value


def _text(value: Any, name: str, source: str) -> str:
    if isinstance(value, str) and value.startswith("-"):
        # A placeholder standing alone (`--lr {lr}`) would pass it as an option of its own.
        raise FlagsError(f"{source}: {name!r} begins with '-', so it would read as an option")
    if isinstance(value, bool | int | float | str):
        return str(value)
    raise FlagsError(f"{source}: {name!r} is not a single value (a number, a string or "
                     "true/false), so it cannot be one flag")
