"""The built-in research agent as a proposer: one experiment = one agent episode.

Each episode starts from the best code so far with the lab notebook of the task's history,
edits through the agent's tools, and ends in a patch. The loop, never the agent, evaluates it.
"""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ratchet.agent.episode import EpisodeResult, Limits, run_episode
from ratchet.agent.notebook import Entry, build_notebook, estimate_tokens
from ratchet.agent.program import system_prompt
from ratchet.agent.tools import TOOL_SPECS, AgentTools
from ratchet.errors import PatchRejected, UsageError
from ratchet.gitrepo import GitError
from ratchet.globs import matches_any
from ratchet.llm.chat import ChatModel
from ratchet.llm.connect import ModelSpec, connect
from ratchet.llm.prices import cost_usd, price_of
from ratchet.proposers.base import Proposal, ProposalContext, Proposer
from ratchet.records import Experiment

if TYPE_CHECKING:
    from ratchet.study import Study

MAX_FILE_BYTES = 200_000
OPENING = ("Study the notebook and the code, then make ONE change that you expect to improve "
           "the metric, and call finish.")


class AgentProposer(Proposer):
    name = "agent"

    def __init__(self, study: Study, model: str, base_url: str | None = None,
                 chat: ChatModel | None = None, limits: Limits | None = None) -> None:
        agent = study.config.agent
        self.study = study
        self.spec = ModelSpec.parse(model)
        self.chat = chat or connect(self.spec, base_url or agent.base_url, agent.api_key_env)
        self.price = price_of(self.spec.name, agent.prices)
        self.limits = limits or Limits(max_tool_calls=agent.max_tool_calls,
                                       max_tokens=agent.max_episode_tokens)
        self.system = system_prompt(study.config, self._program())
        self.learn_from_earlier = agent.learn_from_earlier and \
            not study.record.settings.get("fresh", False)

    def propose(self, context: ProposalContext) -> Proposal | None:
        return self.propose_with(context)

    def propose_with(self, context: ProposalContext, briefing: str = "",
                     parent: str | None = None) -> Proposal:
        """One episode on `parent` (default: the best code); `briefing` is added to the prompt."""
        parent = parent or context.best.commit or self.study.record.base_commit
        files, read_only = self._code_at(parent)
        opening = self.opening(context.best, files, briefing)
        tools = AgentTools(files, read_only, self.study.config.editable,
                           self.study.config.protected)
        result = run_episode(self.chat, self.system, opening, tools, self.limits)
        self._save_transcript(context.number, result)
        return self._proposal(context.number, parent, result)

    def opening(self, best: Experiment | None, code: dict[str, str], briefing: str = "") -> str:
        """The first message of an episode: notebook, briefing and the task, within budget."""
        fixed = estimate_tokens(self.system) + estimate_tokens(
            json.dumps([asdict(s) for s in TOOL_SPECS])) + estimate_tokens(briefing + OPENING)
        budget = self.study.config.agent.context_tokens - fixed - 8
        notebook = build_notebook(self.history(), best, code, self.study.config, budget)
        return "\n".join(p for p in (notebook, briefing, OPENING) if p)

    def history(self) -> list[Entry]:
        store, record = self.study.store, self.study.record
        studies = [s for s in store.studies() if s.task == record.task
                   and s.repo_root == record.repo_root] if self.learn_from_earlier else [record]
        entries = []
        for other in studies:
            assert other.id is not None
            entries.extend(Entry(other.name, e) for e in store.experiments(other.id))
        entries.sort(key=lambda e: (e.experiment.created_at is None, e.experiment.created_at))
        return entries

    # internals

    def _proposal(self, number: int, parent: str, result: EpisodeResult) -> Proposal:
        usage = result.usage
        usd = cost_usd(usage, self.price)
        rationale: dict[str, Any] = {"model": str(self.spec), "tool_calls": result.tool_calls,
                                     "ended": result.ended_because, "notes": result.notes}
        patch, description = "", f"no change: {result.ended_because}"
        if result.finish is not None:
            description = result.finish.description or "agent change"
            rationale |= {"hypothesis": result.finish.hypothesis,
                          "expected_effect": result.finish.expected_effect}
        elif result.changes:
            description = f"unfinished change ({result.ended_because})"
        if result.changes:
            try:
                patch = self.study.builder.from_files(parent, result.changes, description,
                                                      number).diff
            except PatchRejected as exc:
                description = f"rejected: {exc}"
        return Proposal(description=description, patch=patch, parent=parent, kind="proposal",
                        usage=usage, llm_usd=usd, rationale=rationale)

    def _code_at(self, commit: str) -> tuple[dict[str, str], dict[str, str]]:
        config, repo = self.study.config, self.study.repo
        editable: dict[str, str] = {}
        read_only: dict[str, str] = {}
        for path in repo.list_files(commit):
            is_editable = matches_any(path, config.editable) and \
                not matches_any(path, config.protected)
            if not is_editable and not matches_any(path, config.agent.context):
                continue
            text = _read_text(self.study, commit, path)
            if text is not None:
                (editable if is_editable else read_only)[path] = text
        return editable, read_only

    def _program(self) -> str | None:
        path = self.study.config.agent.program
        if path is None:
            return None
        text = _read_text(self.study, self.study.record.base_commit, path)
        if text is None:
            raise UsageError(f"ratchet.toml: [agent].program: {path} is not a committed text "
                             "file of the repository")
        return text

    def _save_transcript(self, number: int, result: EpisodeResult) -> None:
        path = Path(self.study.log_path(number)).with_suffix(".agent.json")
        path.parent.mkdir(parents=True, exist_ok=True)
        turns = [{"type": type(t).__name__, **asdict(t)} for t in result.transcript]
        path.write_text(json.dumps({"system": self.system, "turns": turns,
                                    "usage": asdict(result.usage)}, indent=1))


def _read_text(study: Study, commit: str, path: str) -> str | None:
    try:
        text = study.repo.read_file(commit, path)
    except (UnicodeDecodeError, GitError):  # a binary or missing file: not for the agent
        return None
    return text if len(text) <= MAX_FILE_BYTES else None
