"""Proposers by name: a registry that maps a `--proposer` value to a factory.

A factory takes the study's context and recorded settings and returns a ready proposer; the
heavy ones (LLM clients, coding-agent CLIs) are imported only when chosen. A new proposer is
one `register` call.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from ratchet.context import StudyContext
from ratchet.errors import UsageError
from ratchet.proposers.base import PatchProposer, Proposal, ProposalContext, Proposer
from ratchet.proposers.classical import ClassicalProposer
from ratchet.records import CLI_AGENT_NAMES, EXTERNAL, IMPORTED, SAMPLER_NAMES

Factory = Callable[[StudyContext, Mapping[str, Any]], Proposer]
REGISTRY: dict[str, Factory] = {}

__all__ = ["EXTERNAL", "IMPORTED", "PROPOSERS", "REGISTRY",
           "PatchProposer", "Proposal", "ProposalContext", "Proposer", "create_proposer",
           "register"]


def register(name: str, factory: Factory) -> None:
    REGISTRY[name] = factory


def create_proposer(context: StudyContext) -> Proposer:
    """The proposer a study was created with, configured from its recorded settings."""
    record = context.record
    if record.proposer == IMPORTED:
        raise UsageError(f"study {record.name!r} is an imported results log: nothing to run")
    if record.proposer == EXTERNAL:
        raise UsageError(f"study {record.name!r} is driven from outside (ratchet try, ratchet "
                         "mcp): it has no proposer to run")
    check_proposer_name(record.proposer)
    with context.store.schema_lock():  # a sampler's first start makes Optuna's tables
        return REGISTRY[record.proposer](context, record.settings)


def check_proposer_name(name: str) -> None:
    if name not in PROPOSERS:
        raise UsageError(f"unknown proposer {name!r} (choose from: {', '.join(PROPOSERS)})")


def _classical(sampler: str) -> Factory:
    def make(context: StudyContext, settings: Mapping[str, Any]) -> Proposer:
        return ClassicalProposer(sampler, context.config, context.store.url, context.name,
                                 context.record.seed)
    return make


def _model(context: StudyContext, settings: Mapping[str, Any], proposer: str) -> str:
    model = settings.get("model") or context.config.agent.model
    if not model:
        raise UsageError(f"the {proposer} proposer needs a model: --model NAME or [agent].model "
                         "in ratchet.toml (e.g. anthropic:claude-sonnet-4-5, openai:gpt-5)")
    return str(model)


def _agent(context: StudyContext, settings: Mapping[str, Any]) -> Proposer:
    from ratchet.proposers.agent import AgentProposer

    return AgentProposer(context, _model(context, settings, "agent"), settings.get("base_url"))


def _hybrid(context: StudyContext, settings: Mapping[str, Any]) -> Proposer:
    from ratchet.proposers.agent import AgentProposer
    from ratchet.proposers.hybrid import HybridProposer

    agent = AgentProposer(context, _model(context, settings, "hybrid"), settings.get("base_url"))
    return HybridProposer(context, agent)


def _cli_agent(name: str) -> Factory:
    def make(context: StudyContext, settings: Mapping[str, Any]) -> Proposer:
        from ratchet.proposers.cli_agents import CliAgentProposer

        return CliAgentProposer(context, name)
    return make


for _sampler in SAMPLER_NAMES:
    register(_sampler, _classical(_sampler))
register("agent", _agent)
register("hybrid", _hybrid)
for _cli in CLI_AGENT_NAMES:
    register(_cli, _cli_agent(_cli))

PROPOSERS = (*REGISTRY, EXTERNAL)
