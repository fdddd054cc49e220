"""Where a task's knobs live, and the reader and writer for each kind of file.

UPPER_CASE module-level constants in every editable Python file are knobs. The files named in
`[knobs] files` hold knobs of every name: any module-level assignment of a literal in a Python
file (nanoGPT's `train.py` and `config/*.py`), every scalar key of a YAML, JSON or TOML file.

A name defined in more than one file is rewritten where the run takes its value from (`owners`):
the last config file on the command line that sets it (`python train.py config/x.py` execs it
after train.py's defaults), else the script the command runs, else the first file in path
order. A protected file never owns a knob, even where a knob-file glob covers it.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from ratchet.config import TaskConfig
from ratchet.errors import UsageError
from ratchet.flags import FlagsError, flags_in, placeholders
from ratchet.globs import matches_any
from ratchet.knobs import datafile
from ratchet.knobs.command import CommandLine, read_command
from ratchet.knobs.seeds import is_seed_name
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
    """Knobs by name across files, each in the file the run takes its value from."""
    return owners(definitions(sources, config), read_command(config.command, sources),
                  config.protected)


def definitions(sources: Mapping[str, str], config: TaskConfig) -> list[Knob]:
    """Every knob definition of every file, protected ones too, in path order."""
    return [k for path in sorted(sources) for k in find_in(path, sources[path], config)]


def owners(knobs: Iterable[Knob], command: CommandLine,
           protected: Iterable[str] = ()) -> dict[str, Knob]:
    """The definition of each name that a rewrite must change: the last config file of the
    command that sets it, else the command's script, else the first in path order; never a
    file of `protected`. A name whose value the run takes from a protected file (a protected
    config on the command line) has no owner: no rewrite could change what runs."""
    protected = tuple(protected)
    return {name: knob for name, knob in sources_of_values(knobs, command, protected).items()
            if not matches_any(knob.path, protected)}


def sources_of_values(knobs: Iterable[Knob], command: CommandLine,
                      protected: tuple[str, ...] = ()) -> dict[str, Knob]:
    """The definition each name's value comes from in a run, protected or not (a protected
    file that the command does not run never decides a name by path order)."""
    rank = {path: i for i, path in enumerate(command.config_files)}  # later runs later: wins
    best: dict[str, tuple[tuple[int, int], Knob]] = {}
    for order, knob in enumerate(knobs):
        if knob.path in rank:
            key = (0, -rank[knob.path])
        elif knob.path == command.script:
            key = (1, 0)
        elif matches_any(knob.path, protected):
            continue
        else:
            key = (2, order)
        if knob.name not in best or key < best[knob.name][0]:
            best[knob.name] = (key, knob)
    return {name: knob for name, (_, knob) in best.items()}


def rewrite(path: str, text: str, values: Mapping[str, Any]) -> str:
    """The file's text with the named knobs set to `values`, all else kept as it was."""
    if path.endswith(".py"):
        return rewrite_knobs(text, values)
    return datafile.rewrite(text, path, values)


def check_space(config: TaskConfig, sources: Mapping[str, str]) -> None:
    """Every `[space]` name must be a knob a rewrite can change: in an editable file that is
    not protected, and not fixed on the command line (`--lr=0.1` beats every file)."""
    command = read_command(config.command, sources)
    every = definitions(sources, config)
    knobs = owners(every, command, config.protected)
    for param in config.space:
        name = param.name
        if is_seed_name(name.rsplit(".", 1)[-1]):
            raise UsageError(f"ratchet.toml: [space].{name}: a seed is no knob: a change of "
                             "seeds is void whoever proposes it; ratchet varies seeds per run "
                             "(list the file in [seeds] files)")
        if name in command.overrides:
            raise UsageError(f"ratchet.toml: [space].{name}: the command sets it "
                             f"({command.override_text(name)}), which overrides every file: "
                             "take it off the command line to search it")
        if name in knobs:
            continue
        source = sources_of_values(every, command, config.protected).get(name)
        if source is not None:
            raise UsageError(f"ratchet.toml: [space].{name}: the run takes its value from "
                             f"{source.path}, which is protected: ratchet never rewrites a "
                             "protected file")
        held = sorted({k.path for k in every if k.name == name})
        if held:
            raise UsageError(f"ratchet.toml: [space].{name}: only in {', '.join(held)}, which "
                             "is protected: ratchet never rewrites a protected file")
        raise UsageError(f"ratchet.toml: [space].{name}: no module-level constant of that "
                         "name in the editable, unprotected files, nor a key of the [knobs] "
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
