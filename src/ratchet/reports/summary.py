"""A study at a glance: the numbers `ratchet status` and the dashboard show, and its method."""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from typing import Any

from ratchet.config import read_toml
from ratchet.decide import gain
from ratchet.errors import RatchetError
from ratchet.records import (
    BASELINE,
    FAILED,
    IMPORTED,
    KEEP,
    PRUNED,
    UNFINISHED,
    Driver,
    Experiment,
    StudyRecord,
)


def overview(record: StudyRecord, experiments: Sequence[Experiment],
             best: Experiment | None = None, drivers: Sequence[Driver] = ()) -> dict[str, Any]:
    """A study at a glance, as `ratchet status` and the dashboard show it. `best` is the
    store's best pointer (the last kept by number, for a study without one); `drivers` are
    the live ones."""
    kept = [e for e in experiments if e.status == KEEP]
    best = best or (kept[-1] if kept else None)
    baseline = next((e.value for e in kept if e.kind == BASELINE), None)
    metric = _metric_section(record)
    goal = metric.get("goal") if metric.get("goal") in ("minimize", "maximize") else "minimize"
    beats = None if best is None or best.value is None or baseline is None else \
        gain(best.value, baseline, goal == "minimize")
    return {"name": record.name, "method": method_of(record), "task": record.task,
            "experiments": len(experiments),
            "kept": sum(e.kind != BASELINE for e in kept),  # changes kept, not the baseline
            "failed": sum(e.status in FAILED for e in experiments),
            "running": sum(e.status in UNFINISHED for e in experiments),
            "baseline": baseline,
            "best": best.value if best else None,
            "goal": goal, "metric": metric.get("name") or "metric", "better_by": beats,
            "holdout": best.holdout if best else None,
            "spent_usd": sum(e.cost_usd for e in experiments),
            # runs stopped early, and the compute (seconds) they did not spend
            "pruned": sum(e.status == PRUNED for e in experiments),
            "saved_s": sum(e.saved_s for e in experiments),
            "drivers": [driver_row(d, experiments) for d in drivers]}


def fmt(value: float | None, signed: bool = False) -> str:
    if value is None:
        return "-"
    return f"{value:+.6g}" if signed else f"{value:.6g}"


def better_by(e: Experiment, minimize: bool) -> float | None:
    """How much better than the best it was judged against: positive is better, whatever the
    goal (the stored delta is the plain difference of the two values)."""
    return None if e.delta is None else gain(e.delta, 0.0, minimize)


def goal_of(record: StudyRecord) -> str:
    """The study's goal, from the task file it froze (minimize when it has none)."""
    goal = _metric_section(record).get("goal")
    return str(goal) if goal in ("minimize", "maximize") else "minimize"


def metric_name(record: StudyRecord) -> str | None:
    """The study's metric, from the task file it froze (None when it has none)."""
    name = _metric_section(record).get("name")
    return name if isinstance(name, str) and name else None


def _metric_section(record: StudyRecord) -> dict[str, Any]:
    """The `[metric]` table of the task file the study froze; empty when it has none."""
    if not record.config:
        return {}
    with contextlib.suppress(RatchetError):
        section = read_toml(record.config).get("metric")
        if isinstance(section, dict):
            return section
    return {}


def driver_row(driver: Driver, experiments: Sequence[Experiment]) -> dict[str, Any]:
    """A live driver and the experiments it is running now."""
    return {"id": driver.id, "host": driver.host, "pid": driver.pid,
            "executor": driver.executor, "slots": driver.slots,
            "heartbeat_at": driver.heartbeat_at.isoformat() if driver.heartbeat_at else None,
            "running": [e.number for e in experiments if e.driver_id == driver.id]}


def method_of(record: StudyRecord) -> str:
    if record.settings.get("method"):
        return str(record.settings["method"])
    if record.proposer == IMPORTED:
        return f"reference: {record.name}"
    model = record.settings.get("model")
    return f"{record.proposer}:{model}" if model else record.proposer
