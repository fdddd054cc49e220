"""What an agent is told before an episode: the research program and the opening message.

Shared by the built-in agent and the coding-agent CLIs, so both start from the same program,
the same lab notebook and the same code, within the same token budget.
"""

from __future__ import annotations

import json
from dataclasses import asdict

from ratchet.agent.notebook import Entry, build_notebook, estimate_tokens
from ratchet.agent.program import system_prompt
from ratchet.agent.tools import TOOL_SPECS
from ratchet.context import StudyContext
from ratchet.errors import UsageError
from ratchet.execute.gitrepo import GitError
from ratchet.globs import matches_any
from ratchet.records import Experiment

MAX_FILE_BYTES = 200_000
ASK = ("Study the notebook and the code, then make ONE change that you expect to improve "
       "the metric, and call finish.")
TOOLS_TOKENS = estimate_tokens(json.dumps([asdict(s) for s in TOOL_SPECS]))


class ResearchBrief:
    def __init__(self, study: StudyContext, ask: str = ASK) -> None:
        self.study = study
        self.config = study.config
        self.ask = ask
        self.system = system_prompt(study.config, self._program())
        self.learn_from_earlier = self.config.agent.learn_from_earlier and \
            not study.record.settings.get("fresh", False)

    def opening(self, best: Experiment | None, code: dict[str, str], briefing: str = "") -> str:
        """The first message: notebook, briefing and the ask; the whole prompt (system, tool
        definitions, message) stays within `[agent].context_tokens`."""
        fixed = (estimate_tokens(self.system) + TOOLS_TOKENS
                 + estimate_tokens(briefing) + estimate_tokens(self.ask) + 8)
        budget = self.config.agent.context_tokens - fixed
        notebook = build_notebook(self.history(), best, code, self.config, budget)
        return "\n".join(p for p in (notebook, briefing, self.ask) if p)

    def history(self) -> list[Entry]:
        """Every experiment of this task, from every study of it unless learning is off."""
        store, record = self.study.store, self.study.record
        studies = [s for s in store.studies() if s.task == record.task
                   and s.repo_root == record.repo_root] if self.learn_from_earlier else [record]
        entries = []
        for other in studies:
            assert other.id is not None
            entries.extend(Entry(other.name, e) for e in store.experiments(other.id))
        entries.sort(key=lambda e: (e.experiment.created_at is None, e.experiment.created_at))
        return entries

    def code_at(self, commit: str) -> tuple[dict[str, str], dict[str, str]]:
        """(editable files, read-only context files) of `commit`, text files only."""
        editable: dict[str, str] = {}
        read_only: dict[str, str] = {}
        for path in self.study.repo.list_files(commit):
            is_editable = matches_any(path, self.config.editable) and \
                not matches_any(path, self.config.protected)
            if not is_editable and not matches_any(path, self.config.agent.context):
                continue
            text = self._read_text(commit, path)
            if text is not None:
                (editable if is_editable else read_only)[path] = text
        return editable, read_only

    def _program(self) -> str | None:
        path = self.config.agent.program
        if path is None:
            return None
        text = self._read_text(self.study.record.base_commit, path)
        if text is None:
            raise UsageError(f"ratchet.toml: [agent].program: {path} is not a committed text "
                             "file of the repository")
        return text

    def _read_text(self, commit: str, path: str) -> str | None:
        try:
            text = self.study.repo.read_file(commit, path)
        except (UnicodeDecodeError, GitError):  # binary or missing: not for the agent
            return None
        return text if len(text) <= MAX_FILE_BYTES else None
