"""ratchet: propose a code change, evaluate it under protection, keep it only if it is better."""

from ratchet.engine import Budget, Progress
from ratchet.errors import ConfigError, RatchetError, UsageError
from ratchet.proposers import Proposal, ProposalContext, Proposer
from ratchet.records import Experiment, StudyRecord
from ratchet.study import Study, open_study

__all__ = ["Budget", "ConfigError", "Experiment", "Progress", "Proposal", "ProposalContext",
           "Proposer", "RatchetError", "Study", "StudyRecord", "UsageError", "open_study"]
__version__ = "0.1.0"
