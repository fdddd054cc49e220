"""The built-in research agent as a proposer: one experiment = one agent episode.

Each episode starts from the best code so far with the lab notebook of the task's history,
edits through the agent's tools, and ends in a patch. The loop, never the agent, evaluates it.
"""

from __future__ import annotations

import json
import sys
from dataclasses import asdict
from typing import Any

from ratchet.agent.brief import ResearchBrief
from ratchet.agent.episode import EpisodeResult, Limits, run_episode
from ratchet.agent.tools import AgentTools
from ratchet.context import StudyContext
from ratchet.errors import PatchRejected
from ratchet.llm.chat import ChatModel
from ratchet.llm.connect import ModelSpec, connect
from ratchet.llm.prices import cost_usd, price_of
from ratchet.proposers.base import Proposal, ProposalContext, Proposer


class AgentProposer(Proposer):
    name = "agent"

    def __init__(self, study: StudyContext, model: str, base_url: str | None = None,
                 chat: ChatModel | None = None, limits: Limits | None = None) -> None:
        agent = study.config.agent
        self.study = study
        self.spec = ModelSpec.parse(model)
        self.brief = ResearchBrief(study)
        self.chat = chat or connect(self.spec, base_url or agent.base_url, agent.api_key_env)
        self.price = price_of(self.spec.name, agent.prices)
        if self.price is None:
            print(f"ratchet: warning: no price known for {self.spec.name}: its tokens count "
                  f"as $0 (set [agent.prices.{self.spec.name}] if it is a paid model)",
                  file=sys.stderr)
        self.limits = limits or Limits(max_tool_calls=agent.max_tool_calls,
                                       max_tokens=agent.max_episode_tokens)

    def propose(self, context: ProposalContext) -> Proposal | None:
        return self.propose_with(context)

    def propose_with(self, context: ProposalContext, briefing: str = "") -> Proposal:
        """One episode on the best code; `briefing` is added to the prompt."""
        parent = context.best.commit or self.study.record.base_commit
        files, read_only = self.brief.code_at(parent)
        opening = self.brief.opening(context.best, files, briefing)
        tools = AgentTools(files, read_only, self.study.config.editable,
                           self.study.config.protected)
        result = run_episode(self.chat, self.brief.system, opening, tools, self.limits)
        return self._proposal(parent, result)

    def _proposal(self, parent: str, result: EpisodeResult) -> Proposal:
        usage = result.usage
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
                patch = self.study.builder.from_files(parent, result.changes, description).diff
            except PatchRejected as exc:
                description = f"rejected: {exc}"
        return Proposal(description=description, patch=patch, parent=parent, usage=usage,
                        llm_usd=cost_usd(usage, self.price), rationale=rationale,
                        attachments={".agent.json": self._transcript(result)})

    def _transcript(self, result: EpisodeResult) -> str:
        turns = [{"type": type(t).__name__, **asdict(t)} for t in result.transcript]
        return json.dumps({"system": self.brief.system, "turns": turns,
                           "usage": asdict(result.usage)}, indent=1)
