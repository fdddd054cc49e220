"""Local slots: evaluations as threads of the driver, each in its own work tree (and GPU)."""

from __future__ import annotations

import contextlib
import threading
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from ratchet.execute.evaluate import Evaluator, RunResult
from ratchet.execute.executor import Executor, Job
from ratchet.execute.gitrepo import GitRepo, remove_tree
from ratchet.execute.process import ProcessRunner
from ratchet.execute.sandbox import Launcher


@dataclass
class Slot:
    index: int
    worktree: Path
    gpu: str | None = None
    runner: ProcessRunner | None = None


class LocalExecutor(Executor):
    name = "local"

    def __init__(self, repo: GitRepo, evaluator: Evaluator, launcher: Launcher,
                 worktrees: list[Path], gpus: list[str] | None = None) -> None:
        self.repo, self.evaluator, self.launcher = repo, evaluator, launcher
        self.slots = [Slot(i, path, gpus[i % len(gpus)] if gpus else None)
                      for i, path in enumerate(worktrees)]
        self.capacity = len(self.slots)
        self.free = list(self.slots)
        self.lock = threading.Lock()
        self.pool = ThreadPoolExecutor(max_workers=self.capacity, thread_name_prefix="slot")

    def submit(self, job: Job) -> Future[RunResult]:
        with self.lock:
            slot = self.free.pop(0)
            slot.runner = ProcessRunner(self.launcher, on_start=job.on_start)
        return self.pool.submit(self._run, job, slot)

    def _run(self, job: Job, slot: Slot) -> RunResult:
        try:
            commit = job.code()
            overlay = job.overlay(commit) if job.overlay is not None else None
            self.repo.export(commit, slot.worktree)
            job.log.parent.mkdir(parents=True, exist_ok=True)
            env = {**job.env, "RATCHET_SLOT": str(slot.index)}
            if slot.gpu is not None:
                env["CUDA_VISIBLE_DEVICES"] = slot.gpu
            assert slot.runner is not None
            result = self.evaluator.evaluate(slot.worktree, job.log, slot.runner, env,
                                             horizon=job.horizon, monitor=job.monitor,
                                             predict_budget_s=job.predict_budget_s,
                                             seed=job.seed, overlay=overlay)
            result.slot = slot.index
            return result
        finally:
            # Whatever the run left there goes now (a tree only its files' owner could
            # remove, a sparse file of many GiB), not when the next candidate comes.
            _clear(slot.worktree)
            with self.lock:
                self.free.append(slot)

    def cancel(self) -> None:
        with self.lock:
            busy = [s for s in self.slots if s not in self.free]
        for slot in busy:
            if slot.runner is not None:
                slot.runner.cancel()

    def close(self) -> None:
        self.pool.shutdown(wait=True)
        for slot in self.slots:
            _clear(slot.worktree)


def _clear(worktree: Path) -> None:
    """Remove a slot's work tree. What cannot be removed at all (an immutable file) stays, and
    the next export into the slot fails as that candidate's crash, never the driver's."""
    with contextlib.suppress(OSError):
        remove_tree(worktree)
