"""The engine: propose, evaluate through an executor, decide, record, until a budget ends.

One engine is one *driver* of a study; several drivers (processes, machines) may work on the
same study through one database. The database is the queue and the referee: experiment numbers
are allocated by it, work is claimed with row locks, and every verdict is written in one
transaction that holds the study's lock, so two drivers that both beat the best cannot both
win. A driver heartbeats; the work of a driver that stops heartbeating goes back to the queue.

Only the engine's own thread writes experiment rows. Evaluations run in the executor's
threads (or on a cluster); their results come back here.
"""

from __future__ import annotations

import os
import queue
import signal
import socket
import threading
import time
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, Future, wait
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Protocol

from sqlalchemy.exc import SQLAlchemyError

from ratchet.context import StudyContext
from ratchet.decide import (
    REMEASURE,
    RERUN,
    BaselineVerdict,
    Noise,
    baseline_verdict,
    decide,
    pooled_noise,
)
from ratchet.errors import RatchetError, UsageError
from ratchet.execute.evaluate import PREDICT_CPU, RunResult, derived_predict_budget, draw_seed
from ratchet.execute.executor import LOST, Executor, Job
from ratchet.execute.process import kill_group
from ratchet.execute.workspace import run_failure
from ratchet.fidelity import Promotion, next_horizon, screening_cost
from ratchet.fidelity import judge as judge_promotion
from ratchet.knobs.observe import tail_lines
from ratchet.knobs.outputfacts import missing_files_hint
from ratchet.proposers.base import Proposal, ProposalContext, Proposer
from ratchet.pruning import RunJudge, references, unspent_s
from ratchet.records import (
    BASELINE,
    DISCARD,
    KEEP,
    PENDING,
    PRUNED,
    RUNNING,
    UNFINISHED,
    VOID,
    WAITING,
    Driver,
    Experiment,
)
from ratchet.store.database import ClaimLost, Judgement

HEARTBEAT_S = 5.0
# A driver silent this long is taken for dead and its work re-run by another: generous,
# because a driver busy in a long proposal (an agent's episode) still heartbeats from a thread.
STALE_AFTER_S = 60.0
VIEW_REFRESH_S = 1.0


@dataclass(frozen=True)
class Budget:
    max_experiments: int | None = None  # of the whole study, over all its drivers
    max_time_s: float | None = None  # of this driver
    max_usd: float | None = None  # of the whole study


@dataclass
class Progress:
    """What a live view shows; updated by the engine after every event."""

    study: str
    budget: Budget
    minimize: bool = True
    experiments: int = 0
    spent_usd: float = 0.0
    started: float = field(default_factory=time.monotonic)
    baseline: float | None = None
    best: Experiment | None = None
    last: Experiment | None = None
    running: int = 0
    drivers: int = 1
    stop_reason: str | None = None

    @property
    def elapsed_s(self) -> float:
        return time.monotonic() - self.started

    @property
    def time_left_s(self) -> float | None:
        if self.budget.max_time_s is None:
            return None
        return max(self.budget.max_time_s - self.elapsed_s, 0.0)


class Reporter(Protocol):
    # A reporter that can no longer show anything (its output was closed) asks the driver to
    # stop as Ctrl-C does: no new experiments, the running ones finish and are recorded.
    stop_requested: bool

    def update(self, progress: Progress) -> None: ...
    def finished_experiment(self, experiment: Experiment, progress: Progress) -> None: ...
    def message(self, text: str) -> None: ...


class SilentReporter:
    stop_requested = False

    def update(self, progress: Progress) -> None:
        pass

    def finished_experiment(self, experiment: Experiment, progress: Progress) -> None:
        pass

    def message(self, text: str) -> None:
        pass


@dataclass
class _Verdicts:
    """What one transaction decided, acted on once it has committed."""

    closed: list[Experiment] = field(default_factory=list)
    kept: list[tuple[Experiment, Experiment]] = field(default_factory=list)  # (new, previous)
    baseline_failed: Experiment | None = None
    baseline_repeats: Experiment | None = None  # its runs repeat one value: noise unseen
    messages: list[str] = field(default_factory=list)  # said once the verdicts are committed


class Engine:
    def __init__(self, context: StudyContext, proposer: Proposer, executor: Executor,
                 budget: Budget, reporter: Reporter | None = None,
                 heartbeat_s: float = HEARTBEAT_S, stale_after_s: float = STALE_AFTER_S,
                 driver: Driver | None = None) -> None:
        self.context = context
        self.store = context.store
        self.config = context.config
        self.proposer = proposer
        self.executor = executor
        self.budget = budget
        self.reporter = reporter or SilentReporter()
        self.heartbeat_s, self.stale_after_s = heartbeat_s, stale_after_s
        self.driver = driver or self.register(context, executor)
        self.in_flight: dict[Future[RunResult], Experiment] = {}
        self.built: dict[int, tuple[str, str, str]] = {}  # id -> commit, diff, scope
        self.started: queue.SimpleQueue[tuple[int, int]] = queue.SimpleQueue()  # id, pgid
        self.wake: Future[None] = Future()  # set when a run starts: its group is recorded now
        self.progress = Progress(study=context.name, budget=budget,
                                 minimize=context.config.minimize)
        self.stopping = False
        self.exhausted = False
        self.holdout_warned = False
        self.screening_pays: bool | None = None  # decided once the baseline is measured
        self.baseline_predict_cpu: float | None = None  # CPU its predict process took
        self.limit_reached = False
        self.interrupts = 0
        self.failure: BaseException | None = None
        self.last_check = 0.0
        self.refreshed = 0.0

    @staticmethod
    def register(context: StudyContext, executor: Executor) -> Driver:
        return context.store.register_driver(Driver(
            study_id=context.id, host=socket.gethostname(), pid=os.getpid(),
            executor=executor.name, slots=executor.capacity))

    @property
    def driver_id(self) -> int:
        assert self.driver.id is not None
        return self.driver.id

    # the main loop

    def run(self) -> Progress:
        heartbeat = _Heartbeat(self.heartbeat_s, self._heartbeat)
        reason = "finished"
        try:
            with heartbeat, _sigint(self._interrupt):
                self._start()
                self._loop()
                # Trials of drivers that died since this one started are failed now too.
                self.proposer.recover(self.store.experiments(self.context.id,
                                                             statuses=UNFINISHED))
        except BaseException as exc:
            reason = f"failed: {exc}"
            self.executor.cancel()
            raise
        finally:
            self.executor.close()
            self.store.stop_driver(self.driver_id, self.progress.stop_reason or reason)
        self.context.sync_branch()
        if self.failure is not None:
            raise self.failure
        if self.progress.stop_reason is None:
            self.progress.stop_reason = self._stop_reason() or "nothing left to run"
        self._refresh()
        self.reporter.update(self.progress)
        return self.progress

    def _loop(self) -> None:
        while True:
            if self.reporter.stop_requested and not self.stopping:
                self.stopping = True
                self.progress.stop_reason = "the output was closed"
            self._record_started()
            self._check_other_drivers()
            self._fill()
            if not self.in_flight:
                return
            self._refresh_view()
            done, _ = wait([*self.in_flight, self.wake], timeout=0.5,
                           return_when=FIRST_COMPLETED)
            self._record_started()
            for future in done:
                if future in self.in_flight:
                    self._finish_run(self.in_flight.pop(future), future)

    def _start(self) -> None:
        """Take back the work of dead drivers, then make sure the study has a baseline."""
        released = {e.number for e in self._check_other_drivers(force=True)}
        unfinished = self.store.experiments(self.context.id, statuses=UNFINISHED)
        self.proposer.recover(unfinished)
        for experiment in unfinished:
            if experiment.status == PENDING and experiment.number not in released:
                self.reporter.message(f"resuming: experiment {experiment.number} was "
                                      "interrupted, running it again")
        context = self.context
        context.check_seed_files()
        baseline = self.store.ensure_baseline(Experiment(
            study_id=context.id, number=0, kind=BASELINE, parent_commit=context.record.base_commit,
            commit=context.record.base_commit, description="baseline",
            params=dict(context.base_values)), log_path=self._log_path)
        if baseline.number > 0 and baseline.status == PENDING and not baseline.values:
            self.reporter.message("the last baseline failed: measuring it again")
        self._refresh()

    def _fill(self) -> None:
        while len(self.in_flight) < self.executor.capacity:
            experiment = self._next_experiment()
            if experiment is None:
                return
            self._submit(experiment)

    def _next_experiment(self) -> Experiment | None:
        if self.stopping:
            return None
        claimed = self.store.claim(self.context.id, self.driver_id)
        if claimed is not None:
            if claimed.number in {e.number for e in self.in_flight.values()}:
                raise RatchetError(f"experiment {claimed.number} claimed twice by one driver")
            return claimed
        while not self._stop_reason():
            try:
                experiment = self._propose()
            except RatchetError as exc:  # e.g. the model's service keeps failing
                self.failure, self.stopping = exc, True
                self.progress.stop_reason = str(exc)
                self.reporter.message(f"stopping: {exc} (running evaluations finish first)")
                return None
            if experiment is not None:
                return experiment
        return None

    def _stop_reason(self) -> str | None:
        budget, progress = self.budget, self.progress
        if self.stopping:
            return progress.stop_reason or "stopped by the user"
        if self.exhausted:
            return "the proposer has nothing more to propose"
        if self.limit_reached or (budget.max_experiments is not None
                                  and progress.experiments >= budget.max_experiments):
            return f"experiment budget reached ({budget.max_experiments})"
        if budget.max_usd is not None and progress.spent_usd >= budget.max_usd:
            return f"dollar budget reached (${budget.max_usd:g})"
        if budget.max_time_s is not None and progress.elapsed_s >= budget.max_time_s:
            return "time budget reached"
        return None

    def _refresh(self) -> None:
        """The study's totals and best, as every driver has left them."""
        progress = self.progress
        progress.experiments, progress.spent_usd = self.store.count(self.context.id)
        progress.best = self.store.best(self.context.id)
        if progress.best is not None and progress.baseline is None:
            kept = self.store.experiments(self.context.id, statuses=[KEEP])
            progress.baseline = next((e.value for e in reversed(kept) if e.kind == BASELINE),
                                     None)
        progress.running = len(self.in_flight)
        self.refreshed = time.monotonic()

    def _refresh_view(self) -> None:
        """The live view, at most once a second: other drivers change the study too."""
        if time.monotonic() - self.refreshed >= VIEW_REFRESH_S:
            self._refresh()
        self.progress.running = len(self.in_flight)
        self.reporter.update(self.progress)

    # proposing and submitting

    def _propose(self) -> Experiment | None:
        self._refresh()
        best = self.progress.best or self._baseline()
        if best.commit is not None:
            self.context.materialize(best.commit)  # a kept change another clone made
        proposal = self.proposer.propose(ProposalContext(
            number=self.progress.experiments, best=best, base_values=self.context.base_values))
        if proposal is None:
            self.exhausted = True
            return None
        # The candidate commit is built in the executor, so slots fill without waiting on git;
        # until then `diff` holds the proposed patch and `parent_commit` its parent.
        parent = proposal.parent or (self.context.record.base_commit
                                     if proposal.params is not None or proposal.onto_base
                                     else best.commit)
        usage = proposal.usage
        added = self.store.add_experiment(Experiment(
            study_id=self.context.id, number=0, kind=proposal.kind, status=RUNNING,
            driver_id=self.driver_id, description=proposal.description, params=proposal.params,
            diff=proposal.patch or "", parent_commit=parent, trial_number=proposal.trial_number,
            cost_usd=proposal.llm_usd, llm_usd=proposal.llm_usd, tokens_in=usage.input_tokens,
            tokens_out=usage.output_tokens, tokens_cached=usage.cached_tokens,
            rationale=proposal.rationale), limit=self.budget.max_experiments,
            log_path=self._log_path)
        if added is None:  # other drivers used up the experiment budget meanwhile
            self.limit_reached = True
            self.proposer.withdraw(proposal)
            return None
        self._attach(added, proposal)
        self.progress.experiments += 1
        self.progress.spent_usd += proposal.llm_usd
        return added

    def _baseline(self) -> Experiment:
        """The study's latest baseline; an error if it failed (on this driver or another)."""
        experiments = self.store.experiments(self.context.id)
        baseline = next(e for e in reversed(experiments) if e.kind == BASELINE)
        if baseline.finished and baseline.status != KEEP:
            raise RatchetError(f"the unmodified baseline failed ({baseline.status}: "
                               f"{baseline.reason}); fix the task and run again "
                               f"(log: {baseline.log_path})")
        return baseline

    def _attach(self, experiment: Experiment, proposal: Proposal) -> None:
        """Files the proposal brought (an agent's transcript), beside the experiment's log."""
        for suffix, text in proposal.attachments.items():
            path = Path(self._log_path(experiment.number)).with_suffix(suffix)
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text)

    def _log_path(self, number: int) -> str:
        return str(self.context.log_path(number))

    def _submit(self, experiment: Experiment) -> None:
        env = {"RATCHET_STUDY": self.context.name, "RATCHET_EXPERIMENT": str(experiment.number)}
        horizon = self._horizon(experiment)
        seed = draw_seed()  # every run its own, which no proposer can know ahead
        job = Job(number=experiment.number, code=lambda: self._code(experiment),
                  log=Path(experiment.log_path or self._log_path(experiment.number)), env=env,
                  on_start=lambda pgid: self._run_started(experiment, pgid),
                  monitor=None if horizon < 1.0 else self._run_judge(experiment),
                  horizon=horizon, predict_budget_s=self._predict_budget(experiment),
                  seed=seed, overlay=lambda commit: self.context.seed_overlay(commit, seed))
        self.in_flight[self.executor.submit(job)] = experiment

    def _horizon(self, experiment: Experiment) -> float:
        """Its next run's horizon; a candidate's is 1 once the baseline's runs showed that
        short runs cost more than they save."""
        horizon = next_horizon(self.config.fidelity, experiment)
        if horizon < 1.0 and experiment.kind != BASELINE and not self._screens_pay():
            return 1.0
        return horizon

    def _screens_pay(self) -> bool:
        """Whether short runs save compute on this task: unknown (so yes) until the baseline
        is measured, then decided once, from its runs (yes if it never ran short), and said
        if not."""
        if not self.config.fidelity.only_if_cheaper:
            return True
        if self.screening_pays is None:
            baselines = [e for e in self.store.experiments(self.context.id)
                         if e.kind == BASELINE and e.status == KEEP]
            if not baselines:
                return True
            cost = screening_cost(self.config.fidelity, baselines[-1])
            self.screening_pays = cost is None or cost.pays
            if cost is not None and not cost.pays:
                self.reporter.message(cost.reason)
        return self.screening_pays

    def _predict_budget(self, experiment: Experiment) -> float | None:
        """The CPU a candidate's predict process may use: the task's `predict_budget`, or
        derived from what the baseline's took. The baseline itself is never capped."""
        if not self.config.predict or experiment.kind == BASELINE:
            return None
        if self.config.predict_budget_s is not None:
            return self.config.predict_budget_s
        if self.baseline_predict_cpu is None:  # read once: candidates run after the baseline
            baseline = next((e for e in self.store.experiments(self.context.id)
                             if e.kind == BASELINE), None)
            self.baseline_predict_cpu = baseline.secondary.get(PREDICT_CPU) if baseline else None
        if self.baseline_predict_cpu is None:
            return None
        return derived_predict_budget(self.baseline_predict_cpu)

    def _run_judge(self, experiment: Experiment) -> RunJudge | None:
        """Who may stop this run early: nobody for the baseline, for the best measured again
        or for a candidate's further runs (the noise decision needs them whole)."""
        pruning = self.config.pruning
        if not pruning.enabled or experiment.kind == BASELINE or experiment.values \
                or experiment.status == KEEP:
            return None
        return RunJudge(pruning, self.config.minimize, self.config.step_metric,
                        references(self.store.experiments(self.context.id), self.config))

    def _code(self, experiment: Experiment) -> str:
        """The commit to evaluate (on the executor's thread): built once, then reused."""
        if experiment.commit is not None:
            return self.context.materialize(experiment.commit)
        candidate, scope = self.context.build_candidate(experiment)
        assert experiment.id is not None
        self.built[experiment.id] = (candidate.commit, candidate.diff, scope)
        return candidate.commit

    def _run_started(self, experiment: Experiment, pgid: int) -> None:
        """On the executor's thread: hand the process group to the engine's thread."""
        self.started.put((experiment.id or 0, pgid))
        if not self.wake.done():
            self.wake.set_result(None)

    def _record_started(self) -> None:
        """Runs that started: their process group (so a dead driver's leftovers can be
        killed) and the commit they run, if it was built for them."""
        if self.wake.done():
            self.wake = Future()
        while not self.started.empty():
            experiment_id, pgid = self.started.get()
            commit, diff, scope = self.built.get(experiment_id, (None, None, None))
            self.store.mark_started(experiment_id, self.driver_id, pgid, commit, diff, scope)

    # results

    def _finish_run(self, experiment: Experiment, future: Future[RunResult]) -> None:
        try:
            result = future.result()
        except (UsageError, SQLAlchemyError):
            raise  # the driver's own problem (its repository, its store): it stops
        except Exception as exc:  # noqa: BLE001 - whatever the candidate caused is its outcome
            status, reason = run_failure(exc)
            result = RunResult(status=status, reason=reason)
        if result.holdout_problem and not self.holdout_warned:
            self.holdout_warned = True  # once per driver: it is the same for every run
            self.reporter.message(f"experiment {experiment.number}: no holdout value: "
                                  f"{result.holdout_problem} (holdout command: "
                                  f"{self.config.holdout_command})")
        built = self.built.pop(experiment.id or 0, None)
        if built is not None:
            experiment.commit, experiment.diff, experiment.scope = built
        _account(experiment, result, self.config.compute_usd_per_hour)
        if experiment.curve is None and result.horizon == 1.0:
            experiment.curve = result.curve  # the first full run's
        earlier = [e for e in self.store.experiments(self.context.id) if e.id != experiment.id]
        promotion = self._promotion(experiment, result, earlier)
        if promotion is not None:
            experiment.screens = [*experiment.screens,
                                  [promotion.horizon, promotion.value, result.wall_s]]
        if result.status == PRUNED or (promotion is not None and not promotion.promoted):
            experiment.saved_s = unspent_s(experiment.wall_s, earlier)
        self.progress.spent_usd += result.wall_s * self.config.compute_usd_per_hour / 3600.0
        try:
            with self.store.judging(self.context.id, self.driver_id) as tx:
                verdicts = self._record(tx, experiment, result, promotion)
        except ClaimLost as exc:
            self.reporter.message(f"{exc}: another driver took it over; this run is dropped")
            return
        for kept, previous in verdicts.kept:
            self.context.advance_branch(kept, previous)
        for closed in verdicts.closed:
            self._closed(closed)
        for message in verdicts.messages:
            self.reporter.message(message)
        if verdicts.baseline_failed is not None:
            self._baseline_failed(verdicts.baseline_failed)
        if verdicts.baseline_repeats is not None:
            self._baseline_repeats(verdicts.baseline_repeats)

    def _promotion(self, experiment: Experiment, result: RunResult,
                   rivals: list[Experiment]) -> Promotion | None:
        """For a successful run at a short horizon, whether the candidate goes on (decided
        outside the study's lock: it replays every value at that horizon)."""
        if result.horizon >= 1.0 or result.status != "ok" or result.value is None:
            return None
        return judge_promotion(self.config.fidelity, self.config.minimize, result.value,
                               len(experiment.screens), rivals,
                               always=experiment.kind == BASELINE)

    def _record(self, tx: Judgement, experiment: Experiment, result: RunResult,
                promotion: Promotion | None = None) -> _Verdicts:
        verdicts = _Verdicts()
        experiment.pgid = None
        if experiment.status == KEEP:
            return self._remeasured(tx, experiment, result)
        if result.status in ("interrupted", LOST):
            if result.status == LOST:
                self.reporter.message(f"experiment {experiment.number}: {result.reason}; "
                                      "it runs again")
            experiment.status = PENDING  # evaluated again, by this driver or another
            tx.save(experiment, release=True)
            return verdicts
        if result.status != "ok":
            experiment.status, experiment.reason = result.status, result.reason
            self._close(tx, experiment, verdicts)
            if experiment.kind == BASELINE:
                verdicts.baseline_failed = experiment
            return verdicts
        assert result.value is not None
        if promotion is not None:
            self._screened(tx, experiment, promotion, verdicts)
            return verdicts
        _add_run(experiment, result)
        experiment.secondary = {**experiment.secondary, **result.secondary}
        if result.holdout is not None:
            experiment.holdout = result.holdout
        if experiment.kind == BASELINE:
            self._judge_baseline(tx, experiment, verdicts)
        elif tx.best() is None:
            experiment.status = WAITING  # judged once the baseline is known
            tx.save(experiment, release=True)
        else:
            self._judge(tx, experiment, verdicts)
        return verdicts

    def _screened(self, tx: Judgement, experiment: Experiment, promotion: Promotion,
                  verdicts: _Verdicts) -> None:
        """After a short run: promoted to the next horizon (queued again), or stopped."""
        experiment.decision = promotion.to_dict()
        if promotion.promoted:
            experiment.status = PENDING
            tx.save(experiment, release=True)
            return
        experiment.status, experiment.reason = PRUNED, promotion.reason
        self._close(tx, experiment, verdicts)

    def _judge_baseline(self, tx: Judgement, experiment: Experiment,
                        verdicts: _Verdicts) -> None:
        if len(experiment.values) < self.config.decision.baseline_runs:
            experiment.status = PENDING  # measured again, first in line
            tx.save(experiment, release=True)
            return
        noise = self._noise(tx, experiment)
        experiment.value = sum(experiment.values) / len(experiment.values)
        steady = self._repeated_baseline(experiment.values)
        reason = f"baseline measured {len(experiment.values)} time(s)"
        experiment.decision = {"rule": self.config.decision.rule, "sigma": noise.sigma,
                               "df": noise.df, "runs": len(experiment.values),
                               "verdict": KEEP if steady.keep else VOID,
                               "reason": f"{reason}: {steady.message}" if steady.message
                               else reason}
        if not steady.keep:  # not kept: the study starts again once the task is fixed
            experiment.status, experiment.reason = VOID, steady.message
            self._close(tx, experiment, verdicts)
            verdicts.baseline_repeats = experiment
            return
        if steady.message:
            verdicts.messages.append(steady.message)
        experiment.status = KEEP
        tx.move_best(tx.best(), experiment)
        self._close(tx, experiment, verdicts)
        self._judge_waiting(tx, verdicts, can_remeasure=True)

    def _repeated_baseline(self, values: list[float]) -> BaselineVerdict:
        """What the baseline's runs say of the task's noise, with what seeds ratchet varied
        and what seeds it found (read only when the runs all gave one value)."""
        context, decision = self.context, self.config.decision
        if decision.deterministic or len(values) < 2 or len(set(values)) > 1:
            return baseline_verdict(values, decision.deterministic, [], [])
        varied, fixed = context.varied_seeds, context.fixed_seeds
        return baseline_verdict(values, False, [str(s) for s in varied],
                                [str(s) for s in fixed],
                                context.seed_fix(fixed[0]) if fixed else None)

    def _judge(self, tx: Judgement, experiment: Experiment, verdicts: _Verdicts,
               can_remeasure: bool = True) -> None:
        best = tx.best()
        assert best is not None and best.value is not None
        decision = decide(experiment.values, best.values or [best.value], self.config.minimize,
                          self.config.decision, self._noise(tx, experiment), can_remeasure)
        experiment.decision = decision.to_dict()
        if decision.verdict == RERUN:
            experiment.status = PENDING
            tx.save(experiment, release=True)
            return
        if decision.verdict == REMEASURE:
            experiment.status = WAITING
            tx.save(experiment, release=True)
            tx.request_remeasure(best)
            return
        experiment.value = decision.mean
        experiment.delta = decision.mean - decision.best
        experiment.status = KEEP if decision.verdict == KEEP else DISCARD
        if experiment.status == KEEP:
            tx.move_best(best, experiment)
            verdicts.kept.append((experiment, best))
        self._close(tx, experiment, verdicts)

    def _remeasured(self, tx: Judgement, best: Experiment, result: RunResult) -> _Verdicts:
        """A kept experiment was measured once more: its value is the mean of all its runs."""
        verdicts = _Verdicts()
        if result.status == "interrupted" or result.status == LOST:
            tx.save(best, release=True)  # still to be measured again, by whichever driver
            return verdicts
        if result.status == "ok" and result.value is not None:
            _add_run(best, result)
            best.value = sum(best.values) / len(best.values)
        best.remeasure = False
        tx.save(best, release=True)
        tx.best_changed()
        self._judge_waiting(tx, verdicts, can_remeasure=result.status == "ok")
        return verdicts

    def _judge_waiting(self, tx: Judgement, verdicts: _Verdicts, can_remeasure: bool) -> None:
        """Judge every experiment that waited for the best (a failed re-run of the best: on
        the runs it has)."""
        for waiting in tx.take_waiting():
            self._judge(tx, waiting, verdicts, can_remeasure)

    def _noise(self, tx: Judgement, judged: Experiment) -> Noise:
        """σ pooled over every code state measured more than once; the study records it."""
        samples = tx.samples()
        samples[judged.id or 0] = list(judged.values)
        noise = pooled_noise(samples.values())
        if noise.sigma != self.context.record.sigma:
            tx.set_sigma(noise.sigma)
            self.context.record.sigma = noise.sigma
        return noise

    def _close(self, tx: Judgement, experiment: Experiment, verdicts: _Verdicts) -> None:
        experiment.finished_at = datetime.now(UTC)
        tx.save(experiment, release=True)
        verdicts.closed.append(experiment)

    def _closed(self, experiment: Experiment) -> None:
        self.proposer.observe(experiment)
        if experiment.status == KEEP:
            self.progress.best = experiment
            if experiment.kind == BASELINE:
                self.progress.baseline = experiment.value
        self.progress.last = experiment
        self.reporter.finished_experiment(experiment, self.progress)

    def _baseline_failed(self, experiment: Experiment) -> None:
        self.stopping = True
        self.progress.stop_reason = "the baseline failed"
        self.executor.cancel()  # they run again once the task is fixed
        hint = missing_files_hint(tail_lines(Path(experiment.log_path)), self.config.root) \
            if experiment.log_path else None
        raise RatchetError(
            f"the unmodified baseline failed ({experiment.status}: {experiment.reason}); "
            + (f"{hint}; " if hint else "")
            + f"fix the task and run again (log: {experiment.log_path})")

    def _baseline_repeats(self, experiment: Experiment) -> None:
        """The baseline's runs repeat one value in a task not declared deterministic: nothing
        could be judged, so the study stops as after a failed baseline, saying what to change."""
        self.stopping = True
        self.progress.stop_reason = "the baseline's runs repeat one value (a fixed seed?)"
        self.executor.cancel()  # they run again once the task is fixed
        raise RatchetError(f"{experiment.reason} (log: {experiment.log_path})")

    # other drivers

    def _heartbeat(self) -> None:
        if not self.store.heartbeat(self.driver_id) and not self.stopping:
            self.stopping = True
            self.progress.stop_reason = "declared stopped by another driver (no heartbeat)"
            self.reporter.message("this driver was declared stopped by another (its heartbeat "
                                  "stalled): its running evaluations are dropped")

    def _check_other_drivers(self, force: bool = False) -> list[Experiment]:
        """Take back the work of drivers that stopped heartbeating (or, on this machine, died),
        killing what they left running here."""
        now = time.monotonic()
        if not force and now - self.last_check < self.heartbeat_s:
            return []
        self.last_check = now
        host = socket.gethostname()
        live = self.store.drivers(self.context.id, live=True)
        dead = [d.id for d in live if d.host == host and d.id != self.driver_id
                and not _process_alive(d.pid)]
        released = self.store.reclaim_stale(self.context.id, self.stale_after_s, dead)
        self.progress.drivers = len(live) - len(dead)
        here = {d.id for d in live if d.host == host}  # another machine's groups are not ours
        groups = {e.pgid for e in released if e.pgid and e.driver_id in here}
        if groups:
            _kill_groups_in_worktrees(groups, self.context.state_dir.parent)
        for experiment in released:
            if experiment.status == PENDING:
                self.reporter.message(f"resuming: experiment {experiment.number} was "
                                      "interrupted, running it again")
        return released

    # Ctrl-C

    def _interrupt(self) -> None:
        self.interrupts += 1
        self.stopping = True
        self.progress.stop_reason = "stopped by the user"
        if self.interrupts == 1:
            self.reporter.message("stopping: finishing the running evaluations "
                                  "(press Ctrl-C again to kill them)")
            return
        self.reporter.message("killing the running evaluations; they will run again on resume")
        self.executor.cancel()


def _add_run(experiment: Experiment, result: RunResult) -> None:
    """A full run's value, and the seed it ran with beside it."""
    assert result.value is not None
    experiment.values = [*experiment.values, result.value]
    if result.seed is not None:
        experiment.seeds = [*experiment.seeds, result.seed]


def _account(experiment: Experiment, result: RunResult, usd_per_hour: float) -> None:
    if result.slot is not None:
        experiment.slot = result.slot
    experiment.wall_s += result.wall_s
    experiment.cpu_s += result.cpu_s
    experiment.peak_mem_mb = max(experiment.peak_mem_mb, result.peak_mem_mb)
    experiment.cost_usd += result.wall_s * usd_per_hour / 3600.0


def _process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _kill_groups_in_worktrees(groups: set[int], repo_root: Path) -> None:
    """Kill leftover process groups, only where a process of the group works in a ratchet work
    tree (a recorded group id may have been reused by an unrelated process since)."""
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            pgid = os.getpgid(int(entry))
            cwd = os.readlink(f"/proc/{entry}/cwd")
        except OSError:
            continue
        if pgid in groups and "/.ratchet/worktrees/" in cwd + "/":
            kill_group(pgid, signal.SIGKILL)


class _Heartbeat:
    """Calls `beat` every `interval_s` from a thread while the engine runs."""

    def __init__(self, interval_s: float, beat: Callable[[], None]) -> None:
        self.interval_s, self.beat = interval_s, beat
        self.done = threading.Event()
        self.thread = threading.Thread(target=self._run, name="heartbeat", daemon=True)

    def __enter__(self) -> None:
        self.thread.start()

    def __exit__(self, *exc: object) -> None:
        self.done.set()
        self.thread.join()

    def _run(self) -> None:
        while not self.done.wait(self.interval_s):
            try:
                self.beat()
            except Exception:  # a database hiccup: the next beat tries again
                continue


class _sigint:
    """Route SIGINT to a callback while the engine runs (main thread only)."""

    def __init__(self, callback: Callable[[], None]) -> None:
        self.callback = callback
        self.previous: object = None

    def __enter__(self) -> None:
        if threading.current_thread() is threading.main_thread():
            self.previous = signal.signal(signal.SIGINT, lambda *_: self.callback())

    def __exit__(self, *exc: object) -> None:
        if self.previous is not None:
            signal.signal(signal.SIGINT, self.previous)  # type: ignore[arg-type]
