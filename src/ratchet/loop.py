"""The engine: propose, build, evaluate in parallel slots, decide, record, until a budget ends.

One thread (the caller's) proposes, decides and writes to the store; evaluations run in worker
threads, each in its own slot (work tree, optional GPU). Every state change is committed before
the next step, so a killed driver loses no finished experiment and a resumed one re-runs the
experiments that were in flight.
"""

from __future__ import annotations

import signal
import threading
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from ratchet.decide import REMEASURE, RERUN, Noise, decide, pooled_noise
from ratchet.errors import RatchetError
from ratchet.evaluate import RunResult
from ratchet.process import ProcessRunner
from ratchet.proposers.base import ProposalContext, Proposer
from ratchet.records import (
    DISCARD,
    KEEP,
    PENDING,
    RUNNING,
    Experiment,
)

if TYPE_CHECKING:
    from ratchet.study import Study


@dataclass(frozen=True)
class Budget:
    max_experiments: int | None = None
    max_time_s: float | None = None
    max_usd: float | None = None


@dataclass
class Progress:
    """What a live view shows; updated by the engine after every event."""

    study: str
    budget: Budget
    experiments: int = 0
    spent_usd: float = 0.0
    started: float = field(default_factory=time.monotonic)
    baseline: float | None = None
    best: Experiment | None = None
    last: Experiment | None = None
    running: int = 0
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
    def update(self, progress: Progress) -> None: ...
    def finished_experiment(self, experiment: Experiment, progress: Progress) -> None: ...
    def message(self, text: str) -> None: ...


class SilentReporter:
    def update(self, progress: Progress) -> None:
        pass

    def finished_experiment(self, experiment: Experiment, progress: Progress) -> None:
        pass

    def message(self, text: str) -> None:
        pass


@dataclass
class Slot:
    index: int
    worktree: Path
    gpu: str | None = None
    runner: ProcessRunner | None = None


class Engine:
    def __init__(self, study: Study, proposer: Proposer, budget: Budget, parallel: int = 1,
                 gpus: list[str] | None = None, reporter: Reporter | None = None) -> None:
        self.study = study
        self.store = study.store
        self.config = study.config
        self.proposer = proposer
        self.budget = budget
        self.reporter = reporter or SilentReporter()
        self.slots = [Slot(i, study.worktree_path(i), gpus[i % len(gpus)] if gpus else None)
                      for i in range(parallel)]
        self.queue: deque[Experiment] = deque()
        self.in_flight: dict[Future[RunResult], tuple[Experiment, Slot]] = {}
        self.stopping = False
        self.interrupts = 0
        self.exhausted = False
        self.failure: RatchetError | None = None  # why the proposer could not go on
        self.progress = Progress(study=study.name, budget=budget)
        # Proposals run beside the baseline; results that finish first wait here to be judged.
        self.baseline: Experiment | None = None
        self.awaiting_baseline: list[Experiment] = []
        # Every measured value by experiment: the noise is pooled over all of them.
        self.samples: dict[int, list[float]] = {}
        # Candidates judged once the best has been measured again.
        self.waiting_for_best: list[Experiment] = []
        self.remeasuring: Experiment | None = None

    # the main loop

    def run(self) -> Progress:
        self._load_state()
        with ThreadPoolExecutor(max_workers=len(self.slots)) as pool, _sigint(self._interrupt):
            while True:
                self._fill_slots(pool)
                if not self.in_flight:
                    break
                self.progress.running = len(self.in_flight)
                self.reporter.update(self.progress)
                done, _ = wait(list(self.in_flight), timeout=0.5, return_when=FIRST_COMPLETED)
                for future in done:
                    experiment, slot = self.in_flight.pop(future)
                    self._finish_run(experiment, slot, future)
        self.progress.running = 0
        if self.failure is not None:
            raise self.failure
        if self.progress.stop_reason is None:
            self.progress.stop_reason = self._stop_reason() or "nothing left to run"
        self.reporter.update(self.progress)
        return self.progress

    def _load_state(self) -> None:
        experiments = self.store.experiments(self.study.id)
        self.samples = {e.number: list(e.values) for e in experiments if e.values}
        self.next_number = experiments[-1].number + 1 if experiments else 0
        self.progress.experiments = len(experiments)
        self.progress.spent_usd = sum(e.cost_usd for e in experiments)
        kept = [e for e in experiments if e.status == KEEP]
        self.progress.best = kept[-1] if kept else None
        baseline = next((e for e in reversed(experiments) if e.kind == "baseline"), None)
        self.baseline = baseline
        if baseline is not None and baseline.status == KEEP:
            self.progress.baseline = baseline.value
        unfinished = [e for e in experiments if e.status in (PENDING, RUNNING)]
        self.study.kill_leftovers(unfinished)
        self.proposer.recover(unfinished)
        for experiment in unfinished:
            self.reporter.message(f"resuming: experiment {experiment.number} was interrupted, "
                                  "running it again")
            self.queue.append(experiment)
        if baseline is None or (baseline.finished and baseline.status != KEEP):
            if baseline is not None:
                self.reporter.message("the last baseline failed: measuring it again")
            self.baseline = self._add_baseline()
            self.queue.append(self.baseline)

    def _fill_slots(self, pool: ThreadPoolExecutor) -> None:
        busy = {slot.index for _, slot in self.in_flight.values()}
        for slot in self.slots:
            if slot.index in busy:
                continue
            experiment = self._next_experiment()
            if experiment is None:
                return
            if experiment.status != KEEP:  # the best, measured again, stays kept
                experiment.status = RUNNING
            experiment.slot = slot.index
            self.store.save_experiment(experiment)
            slot.runner = ProcessRunner(self.study.launcher,
                                        on_start=self._pgid_recorder(experiment))
            future = pool.submit(self.study.evaluate_in_slot, experiment, slot)
            self.in_flight[future] = (experiment, slot)

    def _next_experiment(self) -> Experiment | None:
        if self.queue:
            if self.stopping:
                return None
            return self.queue.popleft()
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
            return "stopped by the user"
        if self.exhausted:
            return "the proposer has nothing more to propose"
        if budget.max_experiments is not None and progress.experiments >= budget.max_experiments:
            return f"experiment budget reached ({budget.max_experiments})"
        if budget.max_usd is not None and progress.spent_usd >= budget.max_usd:
            return f"dollar budget reached (${budget.max_usd:g})"
        if budget.max_time_s is not None and progress.elapsed_s >= budget.max_time_s:
            return "time budget reached"
        return None

    # experiments

    def _add_baseline(self) -> Experiment:
        base = self.study.record.base_commit
        experiment = Experiment(
            study_id=self.study.id, number=self._take_number(), kind="baseline",
            parent_commit=base, commit=base, description="baseline",
            params=dict(self.study.base_values), log_path=None)
        experiment.log_path = str(self.study.log_path(experiment.number))
        self.progress.experiments += 1
        return self.store.add_experiment(experiment)

    def _propose(self) -> Experiment | None:
        best = self.progress.best or self.baseline
        assert best is not None
        number = self.next_number
        proposal = self.proposer.propose(
            ProposalContext(number=number, best=best, base_values=self.study.base_values))
        if proposal is None:
            self.exhausted = True
            return None
        self._take_number()
        self.progress.experiments += 1
        self.progress.spent_usd += proposal.llm_usd
        # The candidate commit is built in the evaluation slot, so slots fill without waiting
        # on git; until then `diff` holds the proposed patch and `parent_commit` its parent.
        parent = proposal.parent or (self.study.record.base_commit
                                     if proposal.params is not None or proposal.onto_base
                                     else best.commit)
        usage = proposal.usage
        return self.store.add_experiment(Experiment(
            study_id=self.study.id, number=number, kind=proposal.kind,
            description=proposal.description, params=proposal.params, diff=proposal.patch or "",
            parent_commit=parent, trial_number=proposal.trial_number,
            cost_usd=proposal.llm_usd, llm_usd=proposal.llm_usd, tokens_in=usage.input_tokens,
            tokens_out=usage.output_tokens, tokens_cached=usage.cached_tokens,
            rationale=proposal.rationale, log_path=str(self.study.log_path(number))))

    def _take_number(self) -> int:
        number = self.next_number
        self.next_number += 1
        return number

    def _pgid_recorder(self, experiment: Experiment) -> Callable[[int], None]:
        def record(pgid: int) -> None:
            assert experiment.id is not None
            self.store.set_pgid(experiment.id, pgid)
        return record

    # results

    def _finish_run(self, experiment: Experiment, slot: Slot, future: Future[RunResult]) -> None:
        try:
            result = future.result()
        except Exception as exc:  # an error of ratchet's own, not of the candidate
            self.stopping = True
            self.progress.stop_reason = f"internal error while evaluating: {exc}"
            experiment.status = PENDING
            self.store.save_experiment(experiment)
            raise
        self._account(experiment, result)
        if experiment.status == KEEP:
            self._remeasured(experiment, result)
            return
        if result.status == "interrupted":
            experiment.status = PENDING  # evaluated again when the study resumes
            self.store.save_experiment(experiment)
            return
        if result.status != "ok":
            experiment.status, experiment.reason = result.status, result.reason
            self._close(experiment)
            if experiment.kind == "baseline":
                self._baseline_failed(experiment)
            return
        assert result.value is not None
        experiment.values = [*experiment.values, result.value]
        self.samples[experiment.number] = list(experiment.values)
        experiment.secondary = {**experiment.secondary, **result.secondary}
        if result.holdout is not None:
            experiment.holdout = result.holdout
        if experiment.kind == "baseline":
            self._judge_baseline(experiment)
        elif self.progress.best is None:
            self.store.save_experiment(experiment)
            self.awaiting_baseline.append(experiment)
        else:
            self._judge(experiment)

    def _account(self, experiment: Experiment, result: RunResult) -> None:
        cost = result.wall_s * self.config.compute_usd_per_hour / 3600.0
        experiment.wall_s += result.wall_s
        experiment.cpu_s += result.cpu_s
        experiment.peak_mem_mb = max(experiment.peak_mem_mb, result.peak_mem_mb)
        experiment.cost_usd += cost
        experiment.pgid = None
        self.progress.spent_usd += cost

    def _judge_baseline(self, experiment: Experiment) -> None:
        runs_needed = self.config.decision.baseline_runs
        if len(experiment.values) < runs_needed:
            self.store.save_experiment(experiment)
            self.queue.appendleft(experiment)
            return
        noise = self._noise()
        experiment.value = sum(experiment.values) / len(experiment.values)
        experiment.status = KEEP
        experiment.decision = {"rule": self.config.decision.rule, "sigma": noise.sigma,
                               "df": noise.df, "runs": len(experiment.values), "verdict": KEEP,
                               "reason": f"baseline measured {len(experiment.values)} time(s)"}
        self.progress.baseline = experiment.value
        self.progress.best = experiment
        self._close(experiment)
        waiting, self.awaiting_baseline = self.awaiting_baseline, []
        for candidate in waiting:
            self._judge(candidate)

    def _judge(self, experiment: Experiment, can_remeasure: bool = True) -> None:
        best = self.progress.best
        assert best is not None and best.value is not None
        decision = decide(experiment.values, best.values or [best.value], self.config.minimize,
                          self.config.decision, self._noise(), can_remeasure)
        experiment.decision = decision.to_dict()
        if decision.verdict in (RERUN, REMEASURE):
            self.store.save_experiment(experiment)
            if decision.verdict == RERUN:
                self.queue.appendleft(experiment)
            else:
                self._remeasure_best(experiment, best)
            return
        experiment.value = decision.mean
        experiment.delta = decision.mean - decision.best
        experiment.status = KEEP if decision.verdict == KEEP else DISCARD
        if experiment.status == KEEP:
            self.study.advance_branch(experiment, best)
            self.progress.best = experiment
        self._close(experiment)

    def _noise(self) -> Noise:
        """σ pooled over every code state measured more than once; the study records it."""
        noise = pooled_noise(self.samples.values())
        if noise.sigma != self.study.record.sigma:
            self.store.set_sigma(self.study.id, noise.sigma)
            self.study.record.sigma = noise.sigma
        return noise

    def _remeasure_best(self, challenger: Experiment, best: Experiment) -> None:
        self.waiting_for_best.append(challenger)
        if self.remeasuring is None:
            self.remeasuring = best
            self.queue.appendleft(best)

    def _remeasured(self, best: Experiment, result: RunResult) -> None:
        """The best was measured once more: its value is the mean of all its runs."""
        self.remeasuring = None
        if result.status == "interrupted":
            return  # the waiting challengers are evaluated again when the study resumes
        if result.status == "ok" and result.value is not None:
            best.values = [*best.values, result.value]
            best.value = sum(best.values) / len(best.values)
            self.samples[best.number] = list(best.values)
        self.store.save_experiment(best)
        waiting, self.waiting_for_best = self.waiting_for_best, []
        for challenger in waiting:  # a failed re-run: judged on the runs the best has
            self._judge(challenger, can_remeasure=result.status == "ok")

    def _close(self, experiment: Experiment) -> None:
        experiment.finished_at = datetime.now(UTC)
        experiment.pgid = None
        self.store.save_experiment(experiment)
        self.proposer.observe(experiment)
        self.progress.last = experiment
        self.reporter.finished_experiment(experiment, self.progress)

    def _baseline_failed(self, experiment: Experiment) -> None:
        self.stopping = True
        self.progress.stop_reason = "the baseline failed"
        for _, slot in self.in_flight.values():  # they run again once the task is fixed
            if slot.runner:
                slot.runner.cancel()
        raise RatchetError(
            f"the unmodified baseline failed ({experiment.status}: {experiment.reason}); "
            f"fix the task and run again (log: {experiment.log_path})")

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
        for _, slot in list(self.in_flight.values()):
            if slot.runner:
                slot.runner.cancel()


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

