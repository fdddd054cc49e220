"""Proposers by name: the one place that maps a `--proposer` value to a class."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ratchet.errors import UsageError
from ratchet.proposers.base import PatchProposer, Proposal, ProposalContext, Proposer
from ratchet.proposers.classical import SAMPLERS, ClassicalProposer
from ratchet.records import EXTERNAL, IMPORTED

if TYPE_CHECKING:
    from ratchet.study import Study

AGENTS = ("agent", "hybrid")
CLI_AGENTS = ("claude-code", "codex", "aider")
PROPOSERS = (*SAMPLERS, *AGENTS, *CLI_AGENTS, EXTERNAL)

__all__ = ["EXTERNAL", "IMPORTED", "PROPOSERS", "PatchProposer", "Proposal", "ProposalContext",
           "Proposer", "create_proposer"]


def create_proposer(study: Study) -> Proposer:
    """The proposer a study was created with, configured from its recorded settings."""
    record = study.record
    name, settings = record.proposer, record.settings
    if name in SAMPLERS:
        return ClassicalProposer(name, study.config, study.store.url, record.name, record.seed)
    if name == IMPORTED:
        raise UsageError(f"study {record.name!r} is an imported results log: nothing to run")
    if name == EXTERNAL:
        raise UsageError(f"study {record.name!r} is driven from outside (ratchet try, ratchet "
                         "mcp): it has no proposer to run")
    if name in CLI_AGENTS:
        from ratchet.proposers.cli_agents import CliAgentProposer

        return CliAgentProposer(study, name)
    check_proposer_name(name)
    model = settings.get("model") or study.config.agent.model
    if not model:
        raise UsageError(f"the {name} proposer needs a model: --model NAME or [agent].model "
                         "in ratchet.toml (e.g. anthropic:claude-sonnet-4-5, openai:gpt-5)")
    from ratchet.proposers.agent import AgentProposer

    agent = AgentProposer(study, model, settings.get("base_url"))
    if name == "agent":
        return agent
    from ratchet.proposers.hybrid import HybridProposer

    return HybridProposer(study, agent)


def check_proposer_name(name: str) -> None:
    if name not in PROPOSERS:
        raise UsageError(f"unknown proposer {name!r} (choose from: {', '.join(PROPOSERS)})")
