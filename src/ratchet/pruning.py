"""Stopping hopeless runs early: Optuna's pruners judge a running experiment's curve against
the curves of the study's earlier runs, whichever proposer made them.

Each run gets a fresh in-memory Optuna study holding the earlier runs it is judged against
as complete trials, and one trial for itself; its values are reported as they arrive and the
pruner is asked after each. Curves come from the code under test, so they can only stop a run,
never keep one; and only curves ratchet can trust judge others: the baseline's and kept
experiments', never a discarded or stopped candidate's (four discarded runs printing a perfect
curve would otherwise stop every real improvement), nor one that claims to have ended better
than the protected metric says its run did.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass

import optuna
from optuna.trial import TrialState

from ratchet.config import PruningConfig, TaskConfig
from ratchet.decide import gain
from ratchet.records import BASELINE, DISCARD, KEEP, Experiment
from ratchet.steps import Curve

logging.getLogger("optuna").setLevel(logging.WARNING)

# How much better than its run's protected value a curve may end before it is not believed
# (relative): a last evaluation on other batches than the final one differs a little.
AGREEMENT_TOLERANCE = 0.02


def make_pruner(config: PruningConfig) -> optuna.pruners.BasePruner:
    startup, warmup = config.startup_runs, config.warmup_steps
    if config.pruner == "median":
        return optuna.pruners.MedianPruner(n_startup_trials=startup, n_warmup_steps=warmup)
    if config.pruner == "percentile":
        return optuna.pruners.PercentilePruner(config.percentile, n_startup_trials=startup,
                                               n_warmup_steps=warmup)
    if config.pruner == "halving":
        return optuna.pruners.SuccessiveHalvingPruner()
    if config.pruner == "hyperband":
        return optuna.pruners.HyperbandPruner()
    if config.pruner == "wilcoxon":
        return optuna.pruners.WilcoxonPruner(n_startup_steps=warmup)
    raise ValueError(f"no pruner {config.pruner!r}")


@dataclass(frozen=True)
class Reference:
    """What a running experiment is compared with: a trusted earlier run's curve and value
    (and nothing else of it: a judge sent to a Ray worker carries these, not experiments)."""

    value: float
    curve: tuple[tuple[int, float], ...]


def references(experiments: Sequence[Experiment],
               config: TaskConfig | None = None) -> list[Reference]:
    """The earlier runs a running one is compared with: the study's latest baseline and its
    kept experiments, with a curve and a value. With the task's `config`, where the curve is
    of the metric itself, a curve ending better than its run's protected value is left out,
    and no point of the others counts as better than that value."""
    trusted = [e for e in experiments if e.status == KEEP and e.kind != BASELINE]
    baselines = [e for e in experiments if e.kind == BASELINE]
    if baselines:
        trusted.insert(0, baselines[-1])
    return [Reference(e.value, _bounded_curve(e, config))
            for e in trusted if e.finished and e.value is not None and e.curve
            and (config is None or agrees(e, config))]


def _bounded_curve(experiment: Experiment, config: TaskConfig | None
                   ) -> tuple[tuple[int, float], ...]:
    """The curve, where it is of the metric itself, with no point better than its run's
    protected value: a kept run whose code printed a flattering curve before its honest last
    line (a forged early 0.0) judges others by what it really reached."""
    curve = tuple((int(s), v) for s, v in experiment.curve)
    if config is None or config.step_metric != config.metric.name:
        return curve
    final = experiment.values[0] if experiment.values else experiment.value
    assert final is not None
    worse = max if config.minimize else min
    return tuple((step, worse(value, final)) for step, value in curve)


def agrees(experiment: Experiment, config: TaskConfig) -> bool:
    """Whether a run's curve is consistent with its own protected value: it does not end
    better than the first run's value (the curve's run) beyond the tolerance. A curve of
    another quantity than the metric cannot be checked, and passes."""
    if config.step_metric != config.metric.name or not experiment.curve:
        return True
    final = experiment.values[0] if experiment.values else experiment.value
    if final is None:
        return False
    last = experiment.curve[-1][1]
    scale = max(abs(final), abs(last))
    return gain(last, final, config.minimize) <= AGREEMENT_TOLERANCE * scale


class RunJudge:
    """Decides, value by value, whether one running experiment should be stopped."""

    def __init__(self, config: PruningConfig, minimize: bool, metric: str,
                 earlier: Sequence[Reference]) -> None:
        self.config, self.minimize, self.metric = config, minimize, metric
        self.earlier = list(earlier)
        self.study = optuna.create_study(
            direction="minimize" if minimize else "maximize", pruner=make_pruner(config),
            sampler=optuna.samplers.RandomSampler(seed=0))
        for e in self.earlier:
            self.study.add_trial(optuna.trial.create_trial(
                state=TrialState.COMPLETE, value=e.value, intermediate_values=dict(e.curve)))
        self.curve = Curve(minimize)
        self.trial = self.study.ask()

    def __reduce__(self) -> tuple[object, tuple[object, ...]]:
        """Sent to another process (a Ray worker) as what it is made of, made anew there:
        its Optuna study holds locks, which do not travel."""
        return RunJudge, (self.config, self.minimize, self.metric, self.earlier)

    def report(self, step: int, value: float) -> str | None:
        seen = step in self.curve.values
        if not self.curve.add(step, value):
            return None
        if seen:  # a worse second value for a step: a trial of its own holds the worse curve
            self.trial = self.study.ask()
            for known, worse in sorted(self.curve.values.items()):
                self.trial.report(worse, known)
        else:
            self.trial.report(value, step)
        if len(self.earlier) < self.config.startup_runs or step < self.config.warmup_steps:
            return None
        if not self.trial.should_prune():
            return None
        return self._reason(step)

    def _reason(self, step: int) -> str:
        at_step = [v for e in self.earlier for s, v in e.curve if s == step]
        best = (min if self.minimize else max)(at_step) if at_step else None
        compared = f"; the best earlier run had {best:.6g} there" if best is not None else ""
        return (f"pruned at step {step}: {self.metric} {self.curve.values[step]:.6g} "
                f"({self.config.pruner} pruner, {len(self.earlier)} earlier runs{compared})")


def unspent_s(pruned_wall_s: float, earlier: Sequence[Experiment]) -> float:
    """The compute a stopped run did not spend: a typical full run's wall time (the median
    over the finished experiments of their time per full run, short runs left out) less what
    it ran."""
    full = sorted((e.wall_s - sum(s[2] for s in e.screens)) / len(e.values) for e in earlier
                  if e.status in (KEEP, DISCARD) and e.values)
    if not full:
        return 0.0
    middle = len(full) // 2
    typical = full[middle] if len(full) % 2 else (full[middle - 1] + full[middle]) / 2
    return max(typical - pruned_wall_s, 0.0)
