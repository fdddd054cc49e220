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

Screening pays only where a short run is much cheaper than a full one. Start-up and evaluation
do not shrink with the horizon, so on a task whose runs are mostly those, a screen costs nearly
a full run and screening spends more than it saves. The baseline's runs tell: once it is
measured, `screening_cost` compares a candidate's expected cost with screening (its first short
run, then each later one with the chance 1/reduction_factor per rung of getting there) with a
full run's, and where screening would cost more, candidates run in full from then on
(`only_if_cheaper = false` screens regardless).
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


@dataclass(frozen=True)
class ScreeningCost:
    """What screening costs a candidate, from the baseline's runs: its short runs' seconds
    (one a horizon) and its full runs' mean."""

    reduction_factor: int
    screen_s: tuple[float, ...]
    full_s: float

    @property
    def expected_s(self) -> float:
        """A candidate's expected seconds with screening: every rung it reaches, then the
        full run, reaching each next one with the chance 1/reduction_factor."""
        reach = [self.reduction_factor ** -rung for rung in range(len(self.screen_s) + 1)]
        return sum(r * s for r, s in zip(reach, [*self.screen_s, self.full_s], strict=True))

    @property
    def pays(self) -> bool:
        return self.expected_s < self.full_s

    @property
    def reason(self) -> str:
        screens = ", ".join(f"{s:.1f} s" for s in self.screen_s)
        return (f"short runs do not pay here: the baseline's took {screens}, a full run "
                f"{self.full_s:.1f} s, so screening would cost a candidate "
                f"{self.expected_s:.1f} s on average; candidates run in full from now on")


def screening_cost(config: FidelityConfig, baseline: Experiment) -> ScreeningCost | None:
    """What screening costs, once the baseline has run at every horizon and in full; None
    before (or if it never screened)."""
    if len(baseline.screens) < len(config.horizons) or not baseline.values:
        return None
    screen_s = tuple(float(s[2]) for s in baseline.screens[:len(config.horizons)])
    full_s = (baseline.wall_s - sum(float(s[2]) for s in baseline.screens)) \
        / len(baseline.values)
    return ScreeningCost(config.reduction_factor, screen_s, full_s)


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
