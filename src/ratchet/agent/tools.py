"""The agent's tools over one code state, held in memory: read, search, edit, check, finish.

Edits never touch a checkout. Only editable files can change; read-only context files can be
read. Every misuse (no match, several matches, a protected path) is an error the agent sees and
can fix, never an exception that ends the episode.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from ratchet.globs import matches_any
from ratchet.llm.chat import ToolCall, ToolSpec

MAX_RESULT_CHARS = 20_000
MAX_READ_LINES = 400
MAX_SEARCH_HITS = 80


class ToolFailure(Exception):
    """A tool call the agent got wrong; its message goes back to the agent."""


@dataclass
class Finish:
    description: str
    hypothesis: str
    expected_effect: str


def _object(properties: dict[str, Any], required: list[str]) -> dict[str, Any]:
    return {"type": "object", "properties": properties, "required": required,
            "additionalProperties": False}


_STR = {"type": "string"}
_INT = {"type": "integer"}

TOOL_SPECS = [
    ToolSpec("list_files", "List the files you may read, marked editable or read-only.",
             _object({}, [])),
    ToolSpec("read_file", "Read a file with line numbers; optional 1-based line range.",
             _object({"path": _STR, "start_line": _INT, "end_line": _INT}, ["path"])),
    ToolSpec("search", "Search the files for a regular expression; returns path:line: text.",
             _object({"pattern": _STR, "path": _STR}, ["pattern"])),
    ToolSpec("replace", "Replace one exact occurrence of `old` with `new` in an editable file. "
             "`old` must occur exactly once: include enough surrounding lines.",
             _object({"path": _STR, "old": _STR, "new": _STR}, ["path", "old", "new"])),
    ToolSpec("write_file", "Write the whole content of an editable file (new or existing).",
             _object({"path": _STR, "content": _STR}, ["path", "content"])),
    ToolSpec("check_syntax", "Check that the changed Python files parse.", _object({}, [])),
    ToolSpec("note", "Leave a short note for later experiments (an insight, a dead end).",
             _object({"text": _STR}, ["text"])),
    ToolSpec("finish", "End the episode: the loop evaluates your change and decides. Give a "
             "short description, your hypothesis and the effect you expect.",
             _object({"description": _STR, "hypothesis": _STR, "expected_effect": _STR},
                     ["description", "hypothesis", "expected_effect"])),
]


@dataclass
class AgentTools:
    """The code an episode starts from and the edits made to it so far."""

    files: dict[str, str]  # editable files' text at the parent commit
    context: Mapping[str, str]  # read-only files the agent may read
    editable: tuple[str, ...]
    protected: tuple[str, ...]
    changed: dict[str, str] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    finished: Finish | None = None

    def current(self, path: str) -> str | None:
        if path in self.changed:
            return self.changed[path]
        if path in self.files:
            return self.files[path]
        return self.context.get(path)

    def changes(self) -> dict[str, str]:
        """The edited files whose text differs from where the episode began."""
        return {p: t for p, t in self.changed.items() if self.files.get(p) != t}

    def call(self, call: ToolCall) -> tuple[str, bool]:
        """Run one tool call: (result text, is_error)."""
        handler = getattr(self, f"_tool_{call.name}", None)
        if handler is None:
            return f"error: unknown tool {call.name!r}", True
        try:
            arguments = call.parsed()
            result = handler(**arguments)
        except ValueError as exc:
            return f"error: {call.name}: {exc}", True
        except TypeError as exc:
            return f"error: {call.name}: wrong arguments ({exc})", True
        except ToolFailure as exc:
            return f"error: {exc}", True
        return _truncate(result), False

    # the tools

    def _tool_list_files(self) -> str:
        names = sorted({*self.files, *self.changed, *self.context})
        lines = []
        for path in names:
            text = self.current(path) or ""
            kind = "editable" if self._editable(path) else "read-only"
            lines.append(f"{path}  ({kind}, {text.count(chr(10)) + 1} lines)")
        return "\n".join(lines) or "(no files)"

    def _tool_read_file(self, path: str, start_line: int = 1, end_line: int | None = None) -> str:
        text = self._readable(path)
        lines = text.splitlines()
        start = max(int(start_line), 1)
        end = min(int(end_line) if end_line else start + MAX_READ_LINES - 1, len(lines),
                  start + MAX_READ_LINES - 1)
        body = "\n".join(f"{n:5d}  {lines[n - 1]}" for n in range(start, end + 1))
        more = f"\n(lines {start}-{end} of {len(lines)})" if end < len(lines) or start > 1 else ""
        return (body or "(empty)") + more

    def _tool_search(self, pattern: str, path: str | None = None) -> str:
        try:
            regex = re.compile(pattern)
        except re.error as exc:
            raise ToolFailure(f"search: not a valid regular expression: {exc}") from None
        hits = []
        for name in sorted({*self.files, *self.changed, *self.context}):
            if path and not (name == path or matches_any(name, (path,))):
                continue
            for number, line in enumerate((self.current(name) or "").splitlines(), 1):
                if regex.search(line):
                    hits.append(f"{name}:{number}: {line}")
        if len(hits) > MAX_SEARCH_HITS:
            return "\n".join(hits[:MAX_SEARCH_HITS]) + f"\n({len(hits)} hits, first shown)"
        return "\n".join(hits) or "no match"

    def _tool_replace(self, path: str, old: str, new: str) -> str:
        self._check_editable(path)
        text = self._readable(path)
        count = text.count(old) if old else 0
        if count == 0:
            raise ToolFailure(f"replace: `old` not found in {path} (read the file and copy the "
                              "exact text, whitespace included)")
        if count > 1:
            raise ToolFailure(f"replace: `old` occurs {count} times in {path}; include more "
                              "surrounding lines so it occurs once")
        self.changed[path] = text.replace(old, new, 1)
        return f"replaced 1 occurrence in {path}"

    def _tool_write_file(self, path: str, content: str) -> str:
        self._check_editable(path)
        self.changed[path] = content
        return f"wrote {path} ({content.count(chr(10)) + 1} lines)"

    def _tool_check_syntax(self) -> str:
        problems = []
        for path, text in sorted(self.changes().items()):
            if path.endswith(".py"):
                try:
                    compile(text, path, "exec")
                except SyntaxError as exc:
                    problems.append(f"{path}:{exc.lineno}: {exc.msg}")
        if problems:
            raise ToolFailure("syntax errors:\n" + "\n".join(problems))
        return "ok: the changed Python files parse" if self.changes() else "ok: nothing changed"

    def _tool_note(self, text: str) -> str:
        self.notes.append(" ".join(str(text).split())[:500])
        return "noted"

    def _tool_finish(self, description: str, hypothesis: str, expected_effect: str) -> str:
        if not self.changes():
            raise ToolFailure("finish: you have not changed any file yet; make a change first")
        self._tool_check_syntax()
        self.finished = Finish(" ".join(description.split())[:200], hypothesis.strip(),
                               expected_effect.strip())
        return "finished: the loop will evaluate your change"

    # checks

    def _editable(self, path: str) -> bool:
        return matches_any(path, self.editable) and not matches_any(path, self.protected)

    def _check_editable(self, path: str) -> None:
        if path.startswith("/") or ".." in path.split("/"):
            raise ToolFailure(f"{path}: outside the repository")
        if matches_any(path, self.protected):
            raise ToolFailure(f"{path} is protected: you may not change it")
        if not matches_any(path, self.editable):
            raise ToolFailure(f"{path} is not editable (editable: {', '.join(self.editable)})")

    def _readable(self, path: str) -> str:
        text = self.current(path)
        if text is None:
            raise ToolFailure(f"{path}: no such file (use list_files)")
        return text


def _truncate(text: str) -> str:
    if len(text) <= MAX_RESULT_CHARS:
        return text
    return text[:MAX_RESULT_CHARS] + f"\n... ({len(text) - MAX_RESULT_CHARS} characters cut)"
