"""The typed records that travel from the loop to the store to every report."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

# Experiment statuses. `pending` waits for a driver to claim it; `running` is claimed by one
# (if that driver stops heartbeating, another takes it back to `pending`); `waiting` has its
# runs and waits for the best to be measured (the baseline, or the best once more). Finished
# statuses never change; only a kept experiment gains runs when it is measured again.
PENDING, RUNNING, WAITING = "pending", "running", "waiting"
KEEP, DISCARD, CRASH, TIMEOUT, VOID = "keep", "discard", "crash", "timeout", "void"
# Stopped early: its curve was worse than earlier runs' at the same step (ratchet.pruning), or
# its value at a short horizon was not good enough to go on (ratchet.fidelity).
PRUNED = "pruned"
# The `rule` of the decision that stopped a candidate after a short run (ratchet.fidelity).
PROMOTION_RULE = "successive-halving"
UNFINISHED = (PENDING, RUNNING, WAITING)
FINISHED = (KEEP, DISCARD, CRASH, TIMEOUT, VOID, PRUNED)
FAILED = (CRASH, TIMEOUT, VOID)

# Experiment kinds.
BASELINE, PROPOSAL, TRY, IMPORTED_KIND = "baseline", "proposal", "try", "imported"

# Studies whose changes come from outside rather than from a proposer ratchet runs.
IMPORTED = "import"  # an autoresearch results log brought in by `ratchet import`
EXTERNAL = "external"  # changes from `ratchet try` or `ratchet mcp`
# The built-in proposers by name (the registry in ratchet.proposers maps them to factories).
SAMPLER_NAMES = ("tpe", "cmaes", "gp", "random")
AGENT_NAMES = ("agent", "hybrid")
CLI_AGENT_NAMES = ("claude-code", "codex", "aider")
PROPOSER_NAMES = (*SAMPLER_NAMES, *AGENT_NAMES, *CLI_AGENT_NAMES)


@dataclass
class StudyRecord:
    name: str
    task: str
    repo_root: str
    base_commit: str
    proposer: str
    seed: int | None = None
    rule: str = "noise-aware"
    sigma: float | None = None
    settings: dict[str, Any] = field(default_factory=dict)
    config: str | None = None  # the task file's text, frozen when the study started
    id: int | None = None
    created_at: datetime | None = None


@dataclass
class Experiment:
    study_id: int
    number: int
    kind: str  # BASELINE | PROPOSAL | TRY | IMPORTED_KIND
    status: str = PENDING
    parent_commit: str | None = None
    commit: str | None = None
    description: str = ""
    params: dict[str, Any] | None = None
    diff: str = ""
    values: list[float] = field(default_factory=list)
    # The RATCHET_SEED each of its runs got, parallel to `values` (empty where none was
    # recorded: an imported log, a study begun before seeds were)
    seeds: list[int] = field(default_factory=list)
    value: float | None = None
    secondary: dict[str, float] = field(default_factory=dict)
    holdout: float | None = None
    delta: float | None = None
    decision: dict[str, Any] | None = None
    reason: str | None = None
    wall_s: float = 0.0
    cpu_s: float = 0.0
    peak_mem_mb: float = 0.0
    cost_usd: float = 0.0  # compute + tokens
    llm_usd: float = 0.0  # the tokens' share of cost_usd
    tokens_in: int = 0  # all input tokens, cached ones included
    tokens_out: int = 0
    tokens_cached: int = 0
    rationale: dict[str, Any] | None = None  # an agent's hypothesis, expected effect, note
    trial_number: int | None = None
    scope: str | None = None  # "in" or "outside" the classical space (ratchet.knobs.scope)
    slot: int | None = None
    pgid: int | None = None
    driver_id: int | None = None  # the driver that holds it while it runs
    remeasure: bool = False  # a kept experiment that a challenger needs measured once more
    log_path: str | None = None
    # The intermediate values of its first run, [step, value] pairs (ratchet.steps)
    curve: list[list[float]] | None = None
    saved_s: float = 0.0  # compute a pruned run did not spend, estimated from full runs
    # Its runs at short horizons, [horizon, value, wall_s], one per rung (ratchet.fidelity)
    screens: list[list[float]] = field(default_factory=list)
    created_at: datetime | None = None
    finished_at: datetime | None = None
    id: int | None = None

    @property
    def finished(self) -> bool:
        return self.status in FINISHED

    @property
    def not_promoted(self) -> bool:
        """Stopped after a run at a short horizon, rather than pruned mid-run.

        A candidate promoted to its full run and then pruned mid-run keeps the promotion as its
        last decision; it counts as pruned mid-run."""
        decision = self.decision or {}
        return (self.status == PRUNED and decision.get("rule") == PROMOTION_RULE
                and not decision.get("promoted"))


@dataclass
class Driver:
    """One `ratchet run` process working on a study; several may share one."""

    study_id: int
    host: str
    pid: int
    executor: str
    slots: int
    started_at: datetime | None = None
    heartbeat_at: datetime | None = None
    stopped_at: datetime | None = None
    stop_reason: str | None = None
    id: int | None = None

    @property
    def label(self) -> str:
        return f"driver {self.id} ({self.host}:{self.pid})"


@dataclass
class GeneralizationRun:
    """One re-run of a study's best solution at `horizon` times the task's budget."""

    study_id: int
    experiment_number: int
    horizon: float
    run: int
    status: str
    value: float | None = None
    reason: str | None = None
    wall_s: float = 0.0
