"""The executor interface: where evaluation runs happen, behind four calls.

The engine hands an executor a `Job` (which code to evaluate, where its log goes) and gets a
future of the run's `RunResult`. An executor never touches the store: results come back to the
engine, which alone writes them. A run the executor could not finish through no fault of the
code (a lost worker or node) comes back with status `lost` and is run again.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from concurrent.futures import Future
from dataclasses import dataclass, field
from pathlib import Path

from ratchet.execute.evaluate import Overlay, RunResult
from ratchet.execute.watch import StepMonitor

LOST = "lost"  # RunResult.status of a run its executor lost: never the code's fault


@dataclass(frozen=True)
class Job:
    """One evaluation run. `code` gives the commit to evaluate; it is called on the executor's
    side of the queue, so slots fill without waiting on git."""

    number: int
    code: Callable[[], str]
    log: Path
    env: Mapping[str, str] = field(default_factory=dict)
    on_start: Callable[[int], None] | None = None  # the run's process group, once started
    monitor: StepMonitor | None = None  # sees its intermediate values; may stop it early
    horizon: float = 1.0  # the fraction of the task's budget it runs for (ratchet.fidelity)
    predict_budget_s: float | None = None  # CPU its predict process may use (None: no cap)
    seed: int | None = None  # the run's own RATCHET_SEED
    # Files written into the run's copy of the commit it runs (its seed in the [seeds] files)
    overlay: Callable[[str], Overlay | None] | None = None


class Executor(ABC):
    """Runs evaluation jobs, at most `capacity` at a time."""

    name: str = ""
    capacity: int = 1

    @abstractmethod
    def submit(self, job: Job) -> Future[RunResult]:
        """Start `job` (the caller keeps at most `capacity` in flight)."""

    @abstractmethod
    def cancel(self) -> None:
        """Kill every running job; their futures end with status `interrupted`."""

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release what the executor holds (threads, work trees, a cluster connection)."""
