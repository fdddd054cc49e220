"""`ratchet generalize`: does a study's best solution stay best when trained longer?

Each study's best commit is re-run at several horizons (multiples of the task's budget, passed
to the command as RATCHET_HORIZON; the timeout and the enforced compute budget, handed over as
RATCHET_TIME_BUDGET, scale with it), several times each, and every
run is stored. The statistics are a pure function of those runs: per method and horizon the
mean and spread over seeds (each seed's runs averaged first), and for each pair of methods
Welch's t-test on the per-seed means, from scipy, with its p-value.
"""

from __future__ import annotations

import itertools
import os
import statistics
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from scipy import stats

from ratchet.execute.process import ProcessRunner
from ratchet.records import GeneralizationRun
from ratchet.study import Study


def generalize_study(study: Study, horizons: Sequence[float], runs: int,
                     announce: Callable[[str], None] = lambda _: None) -> int:
    """Run what is missing of horizons × runs for the study's best; returns runs made."""
    best = study.best()
    if best is None or best.commit is None:
        announce(f"{study.name}: no best solution yet, skipped")
        return 0
    done = {(g.horizon, g.run) for g in study.store.generalization(study.id)
            if g.experiment_number == best.number}
    context = study.context
    worktree = context.state_dir / "worktrees" / study.name / f"generalize-{os.getpid()}"
    warning = context.check_sandbox()
    if warning:
        announce(warning)
    made = 0
    for horizon, run in itertools.product(horizons, range(runs)):
        if (horizon, run) in done:
            continue
        study.repo.export(context.materialize(best.commit), worktree)
        name = f"generalize-{best.number}-h{horizon:g}-{run}.log"
        log = context.state_dir / "logs" / study.name / name
        log.parent.mkdir(parents=True, exist_ok=True)
        result = context.evaluator.evaluate(worktree, log, ProcessRunner(context.launcher),
                                          horizon=horizon)
        study.store.add_generalization(GeneralizationRun(
            study_id=study.id, experiment_number=best.number, horizon=horizon, run=run,
            status=result.status, value=result.value if result.status == "ok" else None,
            reason=result.reason, wall_s=result.wall_s))
        announce(f"{study.name}: horizon {horizon:g}x run {run + 1}: "
                 f"{result.value if result.status == 'ok' else result.status}")
        made += 1
    return made


@dataclass(frozen=True)
class HorizonStat:
    method: str
    horizon: float
    mean: float
    std: float
    seeds: int


@dataclass(frozen=True)
class Comparison:
    a: str
    b: str
    horizon: float
    gap: float  # mean of a minus mean of b
    p_value: float | None  # None: fewer than two seeds on a side
    test: str = "Welch's t-test on per-seed means (scipy.stats.ttest_ind, equal_var=False)"


def per_seed_means(runs: Mapping[str, Sequence[GeneralizationRun]]
                   ) -> dict[float, list[float]]:
    """For one method: horizon -> each study's (seed's) mean over its successful runs."""
    by_horizon: dict[float, list[float]] = {}
    for study_runs in runs.values():
        values: dict[float, list[float]] = {}
        for run in study_runs:
            if run.value is not None:
                values.setdefault(run.horizon, []).append(run.value)
        for horizon, vals in values.items():
            by_horizon.setdefault(horizon, []).append(statistics.fmean(vals))
    return by_horizon


def horizon_stats(methods: Mapping[str, Mapping[str, Sequence[GeneralizationRun]]]
                  ) -> tuple[list[HorizonStat], list[Comparison]]:
    means = {method: per_seed_means(runs) for method, runs in methods.items()}
    table = [HorizonStat(method, horizon, statistics.fmean(vals),
                         statistics.stdev(vals) if len(vals) > 1 else 0.0, len(vals))
             for method, by_h in means.items() for horizon, vals in sorted(by_h.items())]
    comparisons = []
    for a, b in itertools.combinations(sorted(means), 2):
        for horizon in sorted(set(means[a]) & set(means[b])):
            xa, xb = means[a][horizon], means[b][horizon]
            p = None
            if len(xa) > 1 and len(xb) > 1 and (statistics.pstdev(xa) or statistics.pstdev(xb)):
                p = float(stats.ttest_ind(xa, xb, equal_var=False).pvalue)
            comparisons.append(Comparison(a, b, horizon, statistics.fmean(xa)
                                          - statistics.fmean(xb), p))
    return table, comparisons


def trend(comparisons: Sequence[Comparison], a: str, b: str) -> str:
    """Whether the gap between two methods widens or shrinks from the shortest horizon on."""
    pair = sorted((c for c in comparisons if (c.a, c.b) == (a, b)), key=lambda c: c.horizon)
    if len(pair) < 2:
        return "one horizon only"
    first, last = abs(pair[0].gap), abs(pair[-1].gap)
    if last > first:
        return "widening"
    return "shrinking" if last < first else "unchanged"
