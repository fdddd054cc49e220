"""The hybrid proposer: a classical sampler proposes knob values, and on a share of steps the
agent, shown the sampler's state, either overrides the values or changes the code's structure.

Knob values are always set on the latest kept structural change, so the classical search
continues on the code the agent improved. An agent change that only moved knob values (IN the
space) is told to the sampler as a measured point.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import replace

from ratchet.context import StudyContext
from ratchet.proposers.agent import AgentProposer
from ratchet.proposers.base import Proposal, ProposalContext, Proposer
from ratchet.proposers.classical import ClassicalProposer
from ratchet.records import BASELINE, DISCARD, KEEP, Experiment

BRIEFING = """\
## Hybrid search
A classical optimizer is tuning the knobs below; this step is yours. Either set knob values
you expect to beat its best (an override), or make a structural change to the code that the
knobs cannot express. After a kept structural change the optimizer continues on your code.
{state}
"""


class HybridProposer(Proposer):
    name = "hybrid"

    def __init__(self, study: StudyContext, agent: AgentProposer, sampler: str = "tpe",
                 choose: Callable[[], float] | None = None) -> None:
        self.study, self.agent = study, agent
        self.classical = ClassicalProposer(sampler, study.config, study.store.url, study.name,
                                           study.record.seed)
        self.share = study.config.agent.hybrid_share
        self.warmup = study.config.agent.hybrid_warmup
        self.choose = choose or random.Random(study.record.seed).random
        self.code_base = self._latest_structural_base()

    def propose(self, context: ProposalContext) -> Proposal | None:
        if context.number > self.warmup and self.choose() < self.share:
            briefing = BRIEFING.format(state=self.classical.state())
            proposal = self.agent.propose_with(context, briefing)
            return replace(proposal, description=f"agent: {proposal.description}")
        proposal = self.classical.propose(context)
        return proposal and replace(proposal, parent=self.code_base)

    def observe(self, experiment: Experiment) -> None:
        self.classical.observe(experiment)
        if experiment.trial_number is not None or experiment.kind == BASELINE:
            return
        if experiment.scope == "in" and experiment.status in (KEEP, DISCARD) \
                and experiment.value is not None and experiment.commit:
            values = {k.name: k.value for k in self.study.knobs_at(experiment.commit).values()}
            self.classical.add_known(experiment.number, values, experiment.value)
        elif experiment.scope == "outside" and experiment.status == KEEP and experiment.commit:
            self.code_base = experiment.commit

    def recover(self, unfinished: list[Experiment]) -> None:
        self.classical.recover(unfinished)

    def withdraw(self, proposal: Proposal) -> None:
        self.classical.withdraw(proposal)

    def _latest_structural_base(self) -> str:
        """On resume: the commit of the last kept structural change, or the study's base."""
        kept = [e for e in self.study.experiments() if e.status == KEEP
                and e.scope == "outside" and e.trial_number is None and e.commit]
        return kept[-1].commit if kept else self.study.record.base_commit  # type: ignore
