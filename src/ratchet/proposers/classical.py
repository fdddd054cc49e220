"""Classical optimizers over the `[space]` of knobs: Optuna's samplers through ask and tell.

The Optuna study lives in the same database as ratchet's tables (named `ratchet:<study>`), so a
resumed ratchet study continues the sampler's history and optuna-dashboard can open it. The
unmodified baseline is added as trial 0 when its values lie inside the space. A study that
starts again (it never kept a result, and its task file changed) starts its sampler afresh:
trials asked under the old `[space]` would not fit the new one.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import socket
from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Any

import optuna
import sqlalchemy as sa
from optuna.distributions import (
    BaseDistribution,
    CategoricalDistribution,
    FloatDistribution,
    IntDistribution,
)
from optuna.trial import TrialState

from ratchet.config import Param, TaskConfig
from ratchet.errors import UsageError
from ratchet.knobs.source import format_value
from ratchet.proposers.base import Proposal, ProposalContext, Proposer
from ratchet.records import BASELINE, DISCARD, KEEP, PRUNED, SAMPLER_NAMES, Experiment

optuna.logging.set_verbosity(optuna.logging.WARNING)
logging.getLogger("optuna").setLevel(logging.WARNING)

EXPERIMENT_ATTR = "ratchet_experiment"
# A RUNNING trial with no experiment this old was asked for by a driver that died before
# recording it; a younger one may be a live driver's, about to be recorded.
ORPHAN_AFTER_S = 60.0
OWNER_ATTR = "ratchet_owner"  # host:pid of the driver that asked for the trial
UNNAMED_GRACE = timedelta(seconds=1.0)


def _this_process() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def _died_here(owner: str | None) -> bool:
    """Whether `owner` (host:pid) was a process of this machine that no longer runs."""
    host, _, pid = (owner or "").rpartition(":")
    if host != socket.gethostname() or not pid.isdigit():
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False


def distribution(param: Param) -> BaseDistribution:
    if param.kind == "choice":
        return CategoricalDistribution([_hashable(c) for c in param.choices])
    if param.kind == "int":
        return IntDistribution(int(param.low), int(param.high), log=param.log,  # type: ignore[arg-type]
                               step=int(param.step or 1))
    return FloatDistribution(float(param.low), float(param.high),  # type: ignore[arg-type]
                             log=param.log, step=param.step)


def _hashable(value: Any) -> Any:
    return tuple(value) if isinstance(value, list) else value


def make_sampler(name: str, seed: int | None) -> optuna.samplers.BaseSampler:
    if name == "tpe":
        return optuna.samplers.TPESampler(seed=seed, constant_liar=True)
    if name == "cmaes":
        return optuna.samplers.CmaEsSampler(seed=seed, warn_independent_sampling=False)
    if name == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    if name == "gp":
        try:
            import scipy  # noqa: F401
            import torch  # noqa: F401
        except ImportError:
            raise UsageError("the gp proposer needs torch and scipy: "
                             "pip install 'ratchet-loop[gp]'") from None
        return optuna.samplers.GPSampler(seed=seed, warn_independent_sampling=False)
    raise UsageError(f"unknown sampler {name!r} (choose from: {', '.join(SAMPLER_NAMES)})")


def sampler_study(study_name: str) -> str:
    """The Optuna study that holds a ratchet study's sampler history."""
    return f"ratchet:{study_name}"


def forget_sampler(storage_url: str, study_name: str) -> bool:
    """Delete a ratchet study's sampler history (when there is one), for a study that starts
    again under a changed task file: a choice list with one more value is a new distribution,
    which Optuna refuses beside trials of the old one. Whether there was one to delete."""
    engine = sa.create_engine(storage_url)
    try:
        if not sa.inspect(engine).has_table("studies"):  # no sampler ever ran here
            return False
    finally:
        engine.dispose()
    try:
        optuna.delete_study(study_name=sampler_study(study_name),
                            storage=optuna.storages.RDBStorage(storage_url))
    except KeyError:  # this study never had a sampler
        return False
    return True


class ClassicalProposer(Proposer):
    def __init__(self, sampler: str, config: TaskConfig, storage_url: str, study_name: str,
                 seed: int | None) -> None:
        if not config.space:
            raise UsageError("ratchet.toml: [space] is empty: classical proposers need knobs "
                             "to search (run `ratchet space --discover`)")
        self.name = sampler
        self.distributions = {p.name: distribution(p) for p in config.space}
        storage = optuna.storages.RDBStorage(storage_url)
        direction = "minimize" if config.minimize else "maximize"
        self.study = optuna.create_study(storage=storage, study_name=sampler_study(study_name),
                                         direction=direction, load_if_exists=True,
                                         sampler=optuna.samplers.RandomSampler())
        # A resumed study must not replay the same random stream, so the seed moves on with it.
        offset = len(self.study.get_trials(deepcopy=False))
        self.study.sampler = make_sampler(sampler, None if seed is None else seed + offset)

    def propose(self, context: ProposalContext) -> Proposal | None:
        trial = self.study.ask(self.distributions)  # its number is stored on the experiment
        trial.set_user_attr(OWNER_ATTR, _this_process())
        # The code gets values at the precision their range needs (the trial keeps Optuna's
        # own, which differs by less than a ten-thousandth of the range).
        params = {k: rounded(self.distributions[k], v) for k, v in trial.params.items()}
        changed = {k: v for k, v in params.items() if context.base_values.get(k) != v}
        summary = _params(changed) or "baseline values"  # as the code will hold them
        return Proposal(description=f"{self.name}: {summary}", params=params,
                        trial_number=trial.number)

    def observe(self, experiment: Experiment) -> None:
        if experiment.kind == BASELINE:
            self._add_baseline(experiment)
            return
        if experiment.trial_number is None:
            return
        if experiment.status in (KEEP, DISCARD) and experiment.value is not None:
            self._tell(experiment.trial_number, value=experiment.value)
        elif experiment.status == PRUNED:  # the sampler learns it was stopped as hopeless
            self._tell(experiment.trial_number, state=TrialState.PRUNED)
        else:
            self._tell(experiment.trial_number, state=TrialState.FAIL)

    def withdraw(self, proposal: Proposal) -> None:
        if proposal.trial_number is not None:
            self._tell(proposal.trial_number, state=TrialState.FAIL)

    def recover(self, unfinished: list[Experiment]) -> None:
        """Fail the trials a dead driver asked for but never recorded. A trial younger than
        ORPHAN_AFTER_S may be a live driver's, between its ask and its record: left alone."""
        keep = {e.trial_number for e in unfinished}
        cutoff = datetime.now() - timedelta(seconds=ORPHAN_AFTER_S)
        for trial in self.study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
            started, owner = trial.datetime_start, trial.user_attrs.get(OWNER_ATTR)
            # A live driver names itself the moment after its ask: a trial still unnamed a
            # moment later lost its driver in between.
            unnamed = owner is None and (started is None or
                                         started < datetime.now() - UNNAMED_GRACE)
            orphan = started is None or started < cutoff or unnamed or _died_here(owner)
            if trial.number not in keep and orphan:
                self._tell(trial.number, state=TrialState.FAIL)

    def _tell(self, number: int, value: float | None = None,
              state: TrialState | None = None) -> None:
        """Tell once: a trial another driver (or a recovery) finished first stays as it is."""
        with contextlib.suppress(optuna.exceptions.UpdateFinishedTrialError):
            self.study.tell(number, value, state=state, skip_if_finished=True)

    def _add_baseline(self, experiment: Experiment) -> None:
        if experiment.status == KEEP and experiment.value is not None:
            self.add_known(experiment.number, experiment.params or {}, experiment.value)

    def add_known(self, number: int, params: Mapping[str, Any], value: float) -> bool:
        """Tell the sampler about a point measured outside ask/tell (once, if in the space)."""
        if any(t.user_attrs.get(EXPERIMENT_ATTR) == number
               for t in self.study.get_trials(deepcopy=False)):
            return False
        if not _fits(params, self.distributions):
            return False
        self.study.add_trial(optuna.trial.create_trial(
            params={k: _hashable(params[k]) for k in self.distributions},
            distributions=self.distributions, value=value,
            user_attrs={EXPERIMENT_ATTR: number}))
        return True

    def state(self, top: int = 5, recent: int = 5) -> str:
        """The sampler's view for an agent: its best configurations and its latest trials."""
        done = [t for t in self.study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
                if t.value is not None]
        reverse = self.study.direction == optuna.study.StudyDirection.MAXIMIZE
        ranked = sorted(done, key=lambda t: t.value, reverse=reverse)[:top]  # type: ignore
        lines = [f"{self.name} sampler: {len(done)} completed trials."]
        lines += ["Best configurations:"] + [f"- {t.value:.6g}: {self._written(t.params)}"
                                             for t in ranked]
        lines += ["Latest trials:"] + [f"- {t.value:.6g}: {self._written(t.params)}"
                                       for t in done[-recent:]]
        return "\n".join(lines)


    def _written(self, params: Mapping[str, Any]) -> str:
        """A trial's values as the code got them (rounded to what their range needs)."""
        return _params({k: rounded(self.distributions[k], v) if k in self.distributions else v
                        for k, v in params.items()})


def rounded(dist: BaseDistribution, value: Any) -> Any:
    """A float at 4 significant digits on a log scale, else at 4 decimals of its range's
    scale; kept inside the range."""
    if not isinstance(dist, FloatDistribution) or dist.step is not None:
        return value
    if dist.log:
        short = float(f"{value:.4g}")
    else:
        digits = max(0, 4 - math.floor(math.log10(dist.high - dist.low)))
        short = round(value, digits)
    return min(max(short, dist.low), dist.high)


def _fits(params: Mapping[str, Any], distributions: Mapping[str, BaseDistribution]) -> bool:
    for name, dist in distributions.items():
        if name not in params:
            return False
        try:
            if not dist._contains(dist.to_internal_repr(params[name])):
                return False
        except (ValueError, TypeError):
            return False
    return True


def _params(params: Mapping[str, Any]) -> str:
    """Knob values as the files will hold them (`beta2=0.95192`, never rounded for show)."""
    return ", ".join(f"{k}={format_value(v)}" for k, v in params.items())
