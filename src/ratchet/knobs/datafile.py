"""Knobs in configuration files: the scalar keys of YAML, JSON and TOML files.

A knob here is a number, boolean or string under a chain of mapping keys, named by the dotted
path (`optimizer.lr`); values inside lists are not knobs. Rewriting changes the value's own
characters and nothing else, so comments, key order, quoting and indentation survive: YAML
values are located with PyYAML's node marks, JSON values with a small scanner, TOML goes
through tomlkit, which keeps a document's formatting.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import tomlkit
import yaml

SUFFIXES = (".yaml", ".yml", ".json", ".toml")
# A plain YAML scalar that reads as a number (YAML 1.1 would leave `1e-4` a string; Hydra's
# loader and every training script read it as a float).
_YAML_NUMBER = re.compile(r"^[-+]?(\d[\d_]*)?(\.\d*)?([eE][-+]?\d+)?$")
_YAML_BOOLS = {"true": True, "false": False, "True": True, "False": False}


@dataclass(frozen=True)
class Entry:
    """One scalar of a data file: its dotted key, value, line, and where its text lies."""

    key: str
    value: Any
    line: int
    start: int = 0
    end: int = 0
    quote: str = ""  # the quote character a string value was written with


def is_data_file(path: str) -> bool:
    return path.endswith(SUFFIXES)


def entries(text: str, path: str) -> list[Entry]:
    """The knob-like scalars of a data file; none when it does not parse. A key given twice
    counts once, as its last value (what a loader reads); a key with a dot in it cannot be
    named by a dotted path and is no knob."""
    try:
        if path.endswith(".json"):
            found = list(_json_entries(text))
        elif path.endswith(".toml"):
            found = list(_toml_entries(tomlkit.parse(text), "", text))
        else:
            root = yaml.compose(text)
            found = list(_yaml_entries(root, "", _shared_nodes(root)))
    except (ValueError, yaml.YAMLError, tomlkit.exceptions.TOMLKitError, RecursionError,
            MemoryError):  # nested too deeply to read: no knobs
        return []
    last = {e.key: e for e in found}
    return [e for e in found if last[e.key] is e]


def rewrite(text: str, path: str, values: Mapping[str, Any]) -> str:
    """`text` with the scalars at the given dotted keys set to `values`."""
    if path.endswith(".toml"):
        return _rewrite_toml(text, values)
    found = {e.key: e for e in entries(text, path)}
    missing = sorted(set(values) - set(found))
    if missing:
        raise KeyError(f"no key {', '.join(missing)} in {path}")
    spans = sorted((found[k] for k in values), key=lambda e: e.start, reverse=True)
    for entry in spans:
        value = values[entry.key]
        written = _json_value(value) if path.endswith(".json") else _yaml_value(value, entry)
        text = text[:entry.start] + written + text[entry.end:]
    return text


def shape(text: str, path: str, keys: frozenset[str]) -> str | None:
    """The file's parsed content with the values at `keys` blanked, for comparing two versions
    (None when it does not parse)."""
    try:
        if path.endswith(".json"):
            data = json.loads(text)
        elif path.endswith(".toml"):
            data = tomlkit.parse(text).unwrap()
        else:
            data = yaml.safe_load(text)
        return json.dumps(_blank(data, keys, ""), sort_keys=True, default=str)
    except (ValueError, TypeError, yaml.YAMLError, tomlkit.exceptions.TOMLKitError,
            RecursionError, MemoryError):  # TypeError: keys json cannot sort
        return None


def _blank(data: Any, keys: frozenset[str], prefix: str) -> Any:
    if isinstance(data, dict):
        return {k: None if f"{prefix}{k}" in keys else _blank(v, keys, f"{prefix}{k}.")
                for k, v in data.items()}
    return data


# YAML


def _shared_nodes(root: yaml.Node | None) -> set[int]:
    """Nodes reached twice (an anchor and its aliases): one text span feeds several keys, so
    rewriting it for one key would change the others too."""
    seen: set[int] = set()
    shared: set[int] = set()
    stack = [root]
    while stack:
        node = stack.pop()
        if node is None:
            continue
        if id(node) in seen:
            shared.add(id(node))
            continue
        seen.add(id(node))
        if isinstance(node, yaml.MappingNode):
            stack += [n for pair in node.value for n in pair]
        elif isinstance(node, yaml.SequenceNode):
            stack += node.value
    return shared


def _yaml_entries(node: yaml.Node | None, prefix: str, shared: set[int]) -> Iterator[Entry]:
    if not isinstance(node, yaml.MappingNode):
        return
    for key_node, value_node in node.value:
        if not isinstance(key_node, yaml.ScalarNode) or "." in key_node.value:
            continue
        key = f"{prefix}{key_node.value}"
        if id(value_node) in shared:
            continue
        if isinstance(value_node, yaml.MappingNode):
            yield from _yaml_entries(value_node, f"{key}.", shared)
        elif isinstance(value_node, yaml.ScalarNode):
            value = _yaml_scalar(value_node)
            if value is not None:
                yield Entry(key, value, value_node.start_mark.line + 1,
                            value_node.start_mark.index, value_node.end_mark.index,
                            value_node.style if value_node.style in ("'", '"') else "")


def _yaml_scalar(node: yaml.ScalarNode) -> Any:
    text = node.value
    if node.style in ("'", '"'):
        return text
    if node.style or not text:  # block scalars (| and >) and empty values
        return None
    if text in _YAML_BOOLS:
        return _YAML_BOOLS[text]
    if _YAML_NUMBER.match(text) and any(c.isdigit() for c in text):
        number = float(text.replace("_", ""))
        plain_int = "." not in text and "e" not in text.lower()
        return int(text.replace("_", "")) if plain_int else number
    if text in ("null", "~", "Null", "NULL"):
        return None
    return text


def _yaml_value(value: Any, entry: Entry) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return _float_text(value, dot=True)
    if isinstance(value, int):
        return str(value)
    text = str(value)
    if entry.quote == "'" and text.isprintable():
        return "'" + text.replace("'", "''") + "'"
    if entry.quote or not _reads_back_plain(text):
        return _yaml_double_quoted(text)
    return text


def _reads_back_plain(text: str) -> bool:
    """Whether `text` written unquoted is read back as the same string, by PyYAML (where
    `FALSE`, `yes` and `~` are not strings) and by us."""
    if not text.isprintable() or text != text.strip() \
            or any(c in text for c in ":#{}[],&*!|>'\"%@`-?"):
        return False
    if _yaml_scalar(yaml.ScalarNode("tag:yaml.org,2002:str", text)) != text:
        return False
    try:
        return yaml.safe_load(f"k: {text}") == {"k": text}
    except yaml.YAMLError:
        return False


def _yaml_double_quoted(text: str) -> str:
    def escape(char: str) -> str:
        if char in '\\"':
            return "\\" + char
        if (char.isprintable() and char.isascii()) or char.isalnum():
            return char
        code = ord(char)
        return f"\\u{code:04x}" if code < 0x10000 else f"\\U{code:08x}"

    return '"' + "".join(escape(c) for c in text) + '"'


# JSON


def _json_entries(text: str) -> Iterator[Entry]:
    json.loads(text)  # a file that is not JSON has no knobs (raises ValueError)
    scanner = _JsonScanner(text)
    scanner.skip_space()
    if scanner.peek() == "{":
        yield from scanner.object("")


class _JsonScanner:
    """Walks valid JSON text, yielding where each scalar under object keys lies."""

    def __init__(self, text: str) -> None:
        self.text, self.at = text, 0

    def peek(self) -> str:
        return self.text[self.at] if self.at < len(self.text) else ""

    def skip_space(self) -> None:
        while self.peek() in (" ", "\t", "\n", "\r") and self.peek():
            self.at += 1

    def object(self, prefix: str) -> Iterator[Entry]:
        self.at += 1  # {
        while True:
            self.skip_space()
            if self.peek() == "}":
                self.at += 1
                return
            key = json.loads(self.text[self.at:self._string_end()])
            self.at = self._string_end()
            self.skip_space()
            self.at += 1  # :
            self.skip_space()
            found = list(self.value(f"{prefix}{key}"))  # walks past the value either way
            if "." not in key:
                yield from found
            self.skip_space()
            if self.peek() == ",":
                self.at += 1

    def value(self, key: str) -> Iterator[Entry]:
        char = self.peek()
        if char == "{":
            yield from self.object(f"{key}.")
            return
        if char == "[":
            self._skip_array()
            return
        start = self.at
        end = self._string_end() if char == '"' else self._bare_end()
        self.at = end
        value = json.loads(self.text[start:end])
        if value is not None:
            line = self.text.count("\n", 0, start) + 1
            yield Entry(key, value, line, start, end, '"' if char == '"' else "")

    def _string_end(self) -> int:
        at = self.at + 1
        while self.text[at] != '"':
            at += 2 if self.text[at] == "\\" else 1
        return at + 1

    def _bare_end(self) -> int:
        at = self.at
        while at < len(self.text) and self.text[at] not in ",}] \t\r\n":
            at += 1
        return at

    def _skip_array(self) -> None:
        depth = 0
        while True:
            char = self.peek()
            if char == '"':
                self.at = self._string_end()
                continue
            depth += {"[": 1, "{": 1, "]": -1, "}": -1}.get(char, 0)
            self.at += 1
            if depth == 0:
                return


def _json_value(value: Any) -> str:
    if isinstance(value, float):
        return _float_text(value, dot=False)
    return json.dumps(value)


# TOML


def _toml_entries(table: Any, prefix: str, text: str) -> Iterator[Entry]:
    for key, value in table.items():
        if "." in key:
            continue
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            yield from _toml_entries(value, f"{name}.", text)
        elif isinstance(value, bool | int | float | str) and not isinstance(value, list):
            yield Entry(name, _plain(value), _toml_line(text, str(key)))


def _plain(value: Any) -> Any:
    """A tomlkit item as the Python value it stands for."""
    for kind in (bool, int, float, str):
        if isinstance(value, kind):
            return kind(value)
    return value


def _toml_line(text: str, key: str) -> int:
    match = re.search(rf"^\s*(?:[\w.\"'-]+\.)?[\"']?{re.escape(key)}[\"']?\s*=", text, re.M)
    return text.count("\n", 0, match.start()) + 1 if match else 0


def _rewrite_toml(text: str, values: Mapping[str, Any]) -> str:
    document = tomlkit.parse(text)
    for key, value in values.items():
        table: Any = document
        *parents, last = key.split(".")
        for part in parents:
            table = table.get(part) if isinstance(table, dict) else None
        if not isinstance(table, dict) or last not in table:
            raise KeyError(f"no key {key}")
        table[last] = value
    return tomlkit.dumps(document)


def _float_text(value: float, dot: bool) -> str:
    """A float as text that reads back as a float: with `dot`, in the form YAML 1.1 needs."""
    if math.isnan(value) or math.isinf(value):
        raise ValueError(f"a knob cannot be set to {value}")
    text = repr(value)
    if dot and "e" in text:
        mantissa, exponent = text.split("e")
        if "." not in mantissa:
            mantissa += ".0"
        if exponent[0] not in "+-":
            exponent = "+" + exponent
        text = f"{mantissa}e{exponent}"
    return text
