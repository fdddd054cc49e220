"""Multi-fidelity: candidates judged at short horizons first, the promising promoted.

With `[fidelity] horizons = [0.25]`, every candidate's first run trains for a quarter of the
budget (the command gets RATCHET_HORIZON=0.25 and a budget a quarter as long; the grace and the
timeout stay whole, as start-up and evaluation do not shrink). Its
value, measured by the protected evaluator like any other, is compared with every candidate's
value at that horizon so far: in the best 1/`reduction_factor`, it is promoted and runs again
at the next horizon, the last being the full budget; otherwise it stops there, `pruned`. This
is asynchronous successive halving, decided by Optuna's `SuccessiveHalvingPruner`: each
horizon is one rung, and each decision replays the rung's earlier values into a fresh in-memory
study, so the verdict depends only on what the store holds.

The baseline runs at every horizon too, once, before its full runs: the first candidates are
then compared with something. Only full-budget runs enter the keep decision: a short run can
end a candidate, never keep one.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import asdict, dataclass

import optuna

from ratchet.config import FidelityConfig
from ratchet.records import KEEP, PROMOTION_RULE, Experiment

logging.getLogger("optuna").setLevel(logging.WARNING)


@dataclass(frozen=True)
class Promotion:
    """The verdict on one candidate after a short run."""

    promoted: bool
    horizon: float
    value: float
    rank: int  # 1 is the best at this horizon so far, the candidate included
    competitors: int  # values at this horizon, the candidate's included
    places: int  # how many of them go on: the best 1/reduction_factor, at least one

    @property
    def reason(self) -> str:
        verdict = "promoted" if self.promoted else "not promoted"
        return (f"{verdict} at horizon {self.horizon:g}: {self.value:.6g} ranks {self.rank} "
                f"of {self.competitors} (the best {self.places} go on)")

    def to_dict(self) -> dict[str, object]:
        return {"rule": PROMOTION_RULE, "verdict": "promoted" if self.promoted else "pruned",
                "reason": self.reason, **asdict(self)}


def next_horizon(config: FidelityConfig, experiment: Experiment) -> float:
    """The horizon of an experiment's next run: its next rung while it climbs, else 1. The
    baseline climbs too, always promoted: its short runs are what the first candidates meet."""
    if not config.enabled or experiment.values or experiment.status == KEEP \
            or len(experiment.screens) >= len(config.horizons):
        return 1.0
    return config.horizons[len(experiment.screens)]


def judge(config: FidelityConfig, minimize: bool, value: float, rung: int,
          earlier: Sequence[Experiment], always: bool = False) -> Promotion:
    """Whether a candidate whose run at `config.horizons[rung]` measured `value` goes on,
    against every other experiment's value at that rung (`always`: it goes on regardless,
    as the baseline does)."""
    rivals = [e.screens[rung][1] for e in earlier if len(e.screens) > rung]
    pruner = optuna.pruners.SuccessiveHalvingPruner(
        min_resource=1, reduction_factor=config.reduction_factor, min_early_stopping_rate=0)
    study = optuna.create_study(direction="minimize" if minimize else "maximize",
                                pruner=pruner, sampler=optuna.samplers.RandomSampler(seed=0))
    for rival in rivals:
        _reach_rung(study, rival)
    promoted = not _reach_rung(study, value) or always
    ordered = sorted([*rivals, value], reverse=not minimize)
    return Promotion(promoted=promoted, horizon=config.horizons[rung], value=value,
                     rank=ordered.index(value) + 1, competitors=len(ordered),
                     places=max(len(ordered) // config.reduction_factor, 1))


def _reach_rung(study: optuna.Study, value: float) -> bool:
    """One trial reaching the rung with `value`; True when the pruner stops it there."""
    trial = study.ask()
    trial.report(value, 1)  # step 1 is the first rung at min_resource=1
    stopped = trial.should_prune()
    study.tell(trial, state=optuna.trial.TrialState.PRUNED)
    return stopped
