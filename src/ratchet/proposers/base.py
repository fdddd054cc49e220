"""The proposer interface: one method to propose a change, one to learn its outcome."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from ratchet.llm.prices import Usage
from ratchet.records import PROPOSAL, TRY, Experiment


@dataclass(frozen=True)
class Proposal:
    """A change to evaluate: knob values set on the base code, or a patch on the best code."""

    description: str
    params: dict[str, Any] | None = None
    patch: str | None = None
    trial_number: int | None = None
    kind: str = PROPOSAL
    onto_base: bool = False  # a patch made against the base commit rather than the best
    parent: str | None = None  # the commit the change was made on, when the proposer chose it
    usage: Usage = Usage()  # tokens the proposal cost
    llm_usd: float = 0.0
    rationale: dict[str, Any] | None = None
    # Files to keep beside the experiment's log, by suffix (an agent's transcript).
    attachments: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class ProposalContext:
    """`best` is the best experiment so far: the baseline, possibly not yet measured.
    `number` is how many experiments the study holds (the database gives the real number)."""

    number: int
    best: Experiment
    base_values: Mapping[str, Any]


class Proposer(ABC):
    """Proposes changes. The loop, never the proposer, evaluates them and decides."""

    name: str = ""

    @abstractmethod
    def propose(self, context: ProposalContext) -> Proposal | None:
        """The next change to try, or None when this proposer has nothing more to offer."""

    def observe(self, experiment: Experiment) -> None:  # noqa: B027 - optional hook
        """Learn the outcome of a finished experiment (any status)."""

    def recover(self, unfinished: list[Experiment]) -> None:  # noqa: B027 - optional hook
        """On start: `unfinished` (of every driver) will be evaluated; forget other pending
        work."""

    def withdraw(self, proposal: Proposal) -> None:  # noqa: B027 - optional hook
        """`proposal` will not be evaluated (other drivers used up the experiment budget)."""


class PatchProposer(Proposer):
    """Proposes one given patch once: how `ratchet try` goes through the same loop."""

    name = "patch"

    def __init__(self, patch: str, description: str, onto_base: bool = False) -> None:
        self.patch, self.description, self.onto_base = patch, description, onto_base
        self.used = False

    def propose(self, context: ProposalContext) -> Proposal | None:
        if self.used:
            return None
        self.used = True
        return Proposal(description=self.description, patch=self.patch, kind=TRY,
                        onto_base=self.onto_base)
