"""`ratchet import`: an autoresearch results log (results.tsv) as a study of its own.

The log's columns are commit, the metric (named by the header), memory_gb, status (keep,
discard, crash) and description. Rows come without diffs and are marked imported. The whole
file is checked before anything is written, and written in one transaction: a malformed row
gets an error naming its line, and nothing is half-imported.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

from ratchet.errors import UsageError
from ratchet.proposers import IMPORTED
from ratchet.records import BASELINE, CRASH, DISCARD, IMPORTED_KIND, KEEP, Experiment, StudyRecord

HEADER = ("commit", None, "memory_gb", "status", "description")
STATUSES = (KEEP, DISCARD, CRASH)


@dataclass(frozen=True)
class ResultsLog:
    metric: str
    rows: list[tuple[str, float | None, float, str, str]]  # commit, value, memory_gb, ...


def parse_results(text: str, source: str) -> ResultsLog:
    lines = text.splitlines()
    if not lines:
        raise UsageError(f"{source}: empty file")
    header = lines[0].split("\t")
    if len(header) != 5 or header[0] != "commit" or header[2:] != list(HEADER[2:]):
        raise UsageError(f"{source}:1: header must be commit, <metric>, memory_gb, status, "
                         f"description (tab-separated), got {lines[0]!r}")
    rows = []
    for number, line in enumerate(lines[1:], start=2):
        if not line.strip():
            continue
        rows.append(_row(line, f"{source}:{number}"))
    if not rows:
        raise UsageError(f"{source}: no rows after the header")
    return ResultsLog(header[1], rows)


def _row(line: str, where: str) -> tuple[str, float | None, float, str, str]:
    fields = line.split("\t")
    if len(fields) != 5:
        raise UsageError(f"{where}: expected 5 tab-separated fields, found {len(fields)}")
    commit, raw_value, raw_memory, status, description = fields
    if status not in STATUSES:
        raise UsageError(f"{where}: status {status!r} is not keep, discard or crash")
    value = _number(raw_value, where, "metric")
    memory = _number(raw_memory, where, "memory_gb")
    return commit.strip(), None if status == CRASH else value, memory, status, description


def _number(text: str, where: str, what: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise UsageError(f"{where}: {what} {text!r} is not a number") from None
    if not math.isfinite(value):
        raise UsageError(f"{where}: {what} {text!r} is not finite")
    return value


def to_experiments(log: ResultsLog) -> list[Experiment]:
    """The rows as experiments: delta against the last kept value before each row."""
    experiments, best = [], None
    for number, (commit, value, memory, status, description) in enumerate(log.rows):
        delta = None if value is None or best is None else value - best
        if status == KEEP and value is not None:  # a kept row is the new base, as in autoresearch
            best = value
        experiments.append(Experiment(
            study_id=0, number=number, kind=BASELINE if number == 0 else IMPORTED_KIND,
            status=status, commit=commit or None, description=description, diff="",
            values=[] if value is None else [value], value=value, delta=delta,
            secondary={"memory_gb": memory}, peak_mem_mb=memory * 1024.0,
            reason="imported row: no diff, no log" if status == CRASH else None,
            rationale={"imported": True}))
    return experiments


def study_record(log: ResultsLog, name: str, task: str, repo_root: str, source: Path,
                 goal: str) -> StudyRecord:
    first_commit = log.rows[0][0] or "imported"
    return StudyRecord(name=name, task=task, repo_root=repo_root, base_commit=first_commit,
                       proposer=IMPORTED, rule="imported",
                       settings={"source": str(source), "metric": log.metric, "goal": goal})
