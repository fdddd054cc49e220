"""A study at a glance: the numbers `ratchet status` and the dashboard show, and its method."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ratchet.records import (
    FAILED,
    IMPORTED,
    KEEP,
    PENDING,
    RUNNING,
    Experiment,
    StudyRecord,
)


def overview(record: StudyRecord, experiments: Sequence[Experiment]) -> dict[str, Any]:
    """A study at a glance, as `ratchet status` and the dashboard show it."""
    kept = [e for e in experiments if e.status == KEEP]
    return {"name": record.name, "method": method_of(record), "task": record.task,
            "experiments": len(experiments), "kept": len(kept),
            "failed": sum(e.status in FAILED for e in experiments),
            "running": sum(e.status in (PENDING, RUNNING) for e in experiments),
            "baseline": next((e.value for e in kept if e.kind == "baseline"), None),
            "best": kept[-1].value if kept else None,
            "spent_usd": sum(e.cost_usd for e in experiments)}


def method_of(record: StudyRecord) -> str:
    if record.settings.get("method"):
        return str(record.settings["method"])
    if record.proposer == IMPORTED:
        return f"reference: {record.name}"
    model = record.settings.get("model")
    return f"{record.proposer}:{model}" if model else record.proposer
