"""What a task's command runs: the Python script it starts, the config files it passes, and the
settings it fixes on the command line.

Real training code is configured the nanoGPT way as often as any other:
`python train.py config/small.py --batch_size=32` runs train.py, which execs each positional
`*.py` argument in order and then applies each `--key=value`, so later assignments win and a
value on the command line beats every file. Knowing this is what lets ratchet rewrite a knob
in the file whose value the run really uses, and say when no file can change it.
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Collection
from dataclasses import dataclass, field
from pathlib import PurePosixPath

from ratchet.flags import PLACEHOLDER

_SEPARATORS = frozenset({"&&", "||", ";", "|", "&"})
_ENV_ASSIGNMENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*=")
_OVERRIDE = re.compile(r"^--([A-Za-z_][A-Za-z0-9_.]*)=(.*)$", re.DOTALL)
# Interpreter options that take a value (`python -X dev train.py`): the value is no script.
_VALUE_OPTIONS = frozenset({"-X", "-W", "-c", "--nproc_per_node", "--nnodes", "--node_rank",
                            "--master_addr", "--master_port", "--rdzv_endpoint",
                            "--rdzv_backend", "--num_processes", "--config_file"})


@dataclass(frozen=True)
class CommandLine:
    """One command as far as knobs are concerned (paths relative to the repository root)."""

    text: str = ""
    script: str | None = None
    config_files: tuple[str, ...] = ()  # positional *.py arguments, in the order they run
    overrides: dict[str, str] = field(default_factory=dict)  # --key=value, the last of each

    def override_text(self, name: str) -> str:
        return f"--{name}={self.overrides[name]}"


def read_command(command: str | None, files: Collection[str] = ()) -> CommandLine:
    """The command's script, config files and overrides; `files` (the repository's paths)
    resolves `python -m package.module` and keeps only config files that exist, when given."""
    if not command:
        return CommandLine()
    words = _split(command)
    for segment in reversed(_segments(words)):  # `python prepare.py && python train.py`
        found = _read_segment(segment, files)
        if found is not None:
            script, rest = found
            return CommandLine(command, script, *_arguments(rest, files))
    return CommandLine(command)


def _split(command: str) -> list[str]:
    try:
        return shlex.split(command)
    except ValueError:  # an unbalanced quote: read it word by word
        return command.split()


def _segments(words: list[str]) -> list[list[str]]:
    segments: list[list[str]] = [[]]
    for word in words:
        if word in _SEPARATORS:
            segments.append([])
        else:
            segments[-1].append(word)
    return [s for s in segments if s]


def _read_segment(words: list[str], files: Collection[str]) -> tuple[str, list[str]] | None:
    """The script one simple command starts, and the words after it."""
    skip = False
    for i, word in enumerate(words):
        if skip:
            skip = False
            continue
        if word == "-m" and i + 1 < len(words):
            module = _module_path(words[i + 1], files)
            if module:
                return module, words[i + 2:]
            skip = True  # a launcher module (torch.distributed.run): its script comes next
            continue
        if word in _VALUE_OPTIONS:
            skip = True
        elif _ENV_ASSIGNMENT.match(word) or word.startswith("-"):
            continue
        elif word.endswith(".py"):
            return _normal(word), words[i + 1:]
    return None


def _module_path(module: str, files: Collection[str]) -> str | None:
    base = module.replace(".", "/")
    for path in (f"{base}.py", f"{base}/__main__.py", f"src/{base}.py", f"src/{base}/__main__.py"):
        if path in files:
            return path
    return None if files else f"{base}.py"


def _arguments(words: list[str],
               files: Collection[str]) -> tuple[tuple[str, ...], dict[str, str]]:
    configs: list[str] = []
    overrides: dict[str, str] = {}
    for word in words:
        match = _OVERRIDE.match(word)
        if match and not PLACEHOLDER.search(match.group(2)):  # {name}: filled from [knobs].flags
            overrides.pop(match.group(1), None)
            overrides[match.group(1)] = match.group(2)
        elif word.endswith(".py") and not word.startswith("-") \
                and (not files or _normal(word) in files):
            configs.append(_normal(word))
    return tuple(configs), overrides


def _normal(path: str) -> str:
    """A path as the repository lists it: `./config/x.py` is `config/x.py`."""
    return PurePosixPath(path).as_posix().removeprefix("./")
