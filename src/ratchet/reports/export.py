"""Experiments out of the store: autoresearch-compatible TSV, CSV and JSON lines.

TSV and CSV are for people and spreadsheets: a text cell shows its control characters escaped
(`printable`) and one a spreadsheet would take for a formula gets a leading `'` (OWASP's CSV
injection advice); numbers stay numbers. JSON lines are exact data (JSON escapes control
characters itself).
"""

from __future__ import annotations

import csv
import dataclasses
import io
import json
import re
from collections.abc import Iterable
from datetime import datetime
from typing import Any

from ratchet.records import CRASH, DISCARD, KEEP, Experiment
from ratchet.reports.safe_text import printable

FORMATS = ("tsv", "csv", "jsonl")
CSV_FIELDS = ["number", "kind", "status", "scope", "value", "delta", "holdout", "values",
              "commit",
              "parent_commit", "wall_s", "cpu_s", "peak_mem_mb", "cost_usd", "trial_number",
              "params", "description", "reason"]
FORMULA_START = ("=", "+", "-", "@")
NUMBER = re.compile(r"[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?")


def export(experiments: Iterable[Experiment], fmt: str, metric_name: str) -> str:
    if fmt == "tsv":
        return to_tsv(experiments, metric_name)
    if fmt == "csv":
        return to_csv(experiments)
    if fmt == "jsonl":
        return "".join(json.dumps(_jsonable(e), sort_keys=True) + "\n" for e in experiments)
    raise ValueError(f"unknown format {fmt!r}")


def autoresearch_status(status: str) -> str:
    """autoresearch knows keep, discard and crash; timeouts and voided runs are crashes."""
    return status if status in (KEEP, DISCARD) else CRASH


def to_tsv(experiments: Iterable[Experiment], metric_name: str) -> str:
    lines = [f"commit\t{metric_name}\tmemory_gb\tstatus\tdescription"]
    for e in experiments:
        if not e.finished:
            continue
        memory_gb = e.secondary.get("memory_gb", e.peak_mem_mb / 1024.0)
        value = e.value if e.value is not None and e.status in (KEEP, DISCARD) else 0.0
        description = spreadsheet_cell(printable(" ".join(e.description.split())))
        lines.append(f"{(e.commit or '')[:7]}\t{value:.6f}\t{memory_gb:.1f}\t"
                     f"{autoresearch_status(e.status)}\t{description}")
    return "\n".join(lines) + "\n"


def to_csv(experiments: Iterable[Experiment]) -> str:
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=CSV_FIELDS)
    writer.writeheader()
    for e in experiments:
        row = _jsonable(e)
        writer.writerow({k: _csv_cell(row[k]) for k in CSV_FIELDS})
    return out.getvalue()


def _csv_cell(value: Any) -> Any:
    if isinstance(value, dict | list):
        value = json.dumps(value)
    if not isinstance(value, str):
        return value  # a number is written as one
    return spreadsheet_cell(printable(value, multiline=True))


def spreadsheet_cell(text: str) -> str:
    """`text` with a leading `'` when a spreadsheet would read it as a formula: it starts
    with =, +, -, @ (after any whitespace), a tab or a carriage return, and is not a number."""
    formula = text.lstrip().startswith(FORMULA_START) or text.startswith(("\t", "\r"))
    return f"'{text}" if formula and not NUMBER.fullmatch(text.strip()) else text


def _jsonable(e: Experiment) -> dict[str, Any]:
    data = dataclasses.asdict(e)
    for key, value in data.items():
        if isinstance(value, datetime):
            data[key] = value.isoformat()
    return data
