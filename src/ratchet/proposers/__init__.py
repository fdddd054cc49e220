"""Proposers by name: the one place that maps a `--proposer` value to a class."""

from __future__ import annotations

from ratchet.config import TaskConfig
from ratchet.errors import UsageError
from ratchet.proposers.base import PatchProposer, Proposal, ProposalContext, Proposer
from ratchet.proposers.classical import SAMPLERS, ClassicalProposer

PROPOSERS = SAMPLERS

__all__ = ["PROPOSERS", "PatchProposer", "Proposal", "ProposalContext", "Proposer",
           "create_proposer"]


def create_proposer(name: str, config: TaskConfig, storage_url: str, study_name: str,
                    seed: int | None) -> Proposer:
    check_proposer_name(name)
    return ClassicalProposer(name, config, storage_url, study_name, seed)


def check_proposer_name(name: str) -> None:
    if name not in PROPOSERS:
        raise UsageError(f"unknown proposer {name!r} (choose from: {', '.join(PROPOSERS)})")
