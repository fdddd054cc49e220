"""The lab notebook: what the agent knows of the task's history, within a hard token budget.

Built from the store at every episode: the best code, the kept chain with each change's delta,
the agent's own notes, the latest experiments in full, and one line per earlier experiment,
newest first, for as many as fit; older ones are counted and their failure reasons summarized.
History comes from every study of the task, so failed ideas are not retried.

Tokens are estimated as UTF-8 bytes / 3, which over-counts for English and code (about 4 and
3.5 bytes a token for common tokenizers), so the real prompt stays under the budget.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from ratchet.config import TaskConfig
from ratchet.records import BASELINE, FAILED, KEEP, PENDING, PRUNED, RUNNING, Experiment

RECENT_IN_FULL = 5
MAX_DIFF_CHARS = 1500
MAX_KEPT_SHOWN = 30
MAX_NOTES_SHOWN = 20
CODE_SHARE = 0.6  # of what is left after the fixed sections


def estimate_tokens(text: str) -> int:
    return math.ceil(len(text.encode()) / 3)


@dataclass(frozen=True)
class Entry:
    """One experiment of the task's history, with the study it belongs to."""

    study: str
    experiment: Experiment


def build_notebook(history: Sequence[Entry], best: Experiment | None, code: Mapping[str, str],
                   config: TaskConfig, budget_tokens: int) -> str:
    """The notebook text; `estimate_tokens` of it never exceeds `budget_tokens`."""
    fixed = [_header(history, best, config), _kept_chain(history), _notes(history)]
    recent = history[-RECENT_IN_FULL:]
    earlier = history[:-RECENT_IN_FULL] if len(history) > RECENT_IN_FULL else []
    for diff_chars in (MAX_DIFF_CHARS, 400, 0):
        recent_text = _recent(recent, diff_chars)
        used = sum(estimate_tokens(t) for t in (*fixed, recent_text)) + 16
        if used <= budget_tokens:
            break
    else:
        return _cut("\n".join(fixed), budget_tokens)
    left = budget_tokens - used
    code_text = _code(code, int(left * CODE_SHARE))
    left -= estimate_tokens(code_text)
    earlier_text = _earlier(earlier, left)
    parts = [*fixed, earlier_text, recent_text, code_text]
    return _cut("\n".join(p for p in parts if p), budget_tokens)


def _header(history: Sequence[Entry], best: Experiment | None, config: TaskConfig) -> str:
    metric = config.metric
    studies = sorted({e.study for e in history})
    baseline = next((e.experiment.value for e in history
                     if e.experiment.kind == BASELINE and e.experiment.status == KEEP), None)
    lines = ["# Lab notebook",
             f"Metric: {metric.name} ({metric.goal}). Baseline: {_num(baseline)}. "
             f"Best so far: {_num(best.value if best else None)}"
             + (f" (experiment {best.number}: {best.description})" if best else "") + ".",
             f"History: {len(history)} experiments in {len(studies)} "
             f"stud{'y' if len(studies) == 1 else 'ies'} of this task."]
    running = [e for e in history if e.experiment.status in (PENDING, RUNNING)]
    if running:
        lines.append("Being evaluated right now (do not duplicate): " + "; ".join(
            f"#{e.experiment.number} {e.experiment.description}" for e in running[-8:]))
    return "\n".join(lines) + "\n"


def _kept_chain(history: Sequence[Entry]) -> str:
    kept = [e for e in history if e.experiment.status == KEEP and e.experiment.kind != BASELINE]
    if not kept:
        return "## Kept changes\nNone yet.\n"
    shown = kept[-MAX_KEPT_SHOWN:]
    lines = ["## Kept changes (oldest first)"]
    if len(kept) > len(shown):
        lines.append(f"({len(kept) - len(shown)} earlier kept changes not shown)")
    lines.extend(f"- {_line(e)}" for e in shown)
    return "\n".join(lines) + "\n"


def _notes(history: Sequence[Entry]) -> str:
    notes = [(e.experiment.number, note) for e in history
             for note in (e.experiment.rationale or {}).get("notes", [])]
    if not notes:
        return ""
    lines = ["## Notes from earlier episodes"]
    lines.extend(f"- (#{number}) {note}" for number, note in notes[-MAX_NOTES_SHOWN:])
    return "\n".join(lines) + "\n"


def _recent(entries: Sequence[Entry], diff_chars: int) -> str:
    if not entries:
        return ""
    blocks = ["## Latest experiments in full"]
    for entry in entries:
        e = entry.experiment
        block = [f"### {_line(entry)}"]
        rationale = e.rationale or {}
        if rationale.get("hypothesis"):
            block.append(f"Hypothesis: {rationale['hypothesis']}")
        if rationale.get("expected_effect"):
            block.append(f"Expected: {rationale['expected_effect']}")
        if diff_chars and e.diff.strip():
            diff = e.diff if len(e.diff) <= diff_chars else \
                e.diff[:diff_chars] + "\n... (diff cut)"
            block.append(f"```diff\n{diff.rstrip()}\n```")
        blocks.append("\n".join(block))
    return "\n".join(blocks) + "\n"


def _code(code: Mapping[str, str], budget: int) -> str:
    text = "## The best code so far\n" + "".join(
        f"### {path}\n```\n{source.rstrip()}\n```\n" for path, source in sorted(code.items()))
    if estimate_tokens(text) <= budget:
        return text
    return ("## The best code so far\nToo long to show here; read it with read_file: "
            + ", ".join(sorted(code)) + "\n")


def _earlier(entries: Sequence[Entry], budget: int) -> str:
    if not entries:
        return ""
    title = "## Earlier experiments (newest first, one line each)"
    lines: list[str] = []
    used = estimate_tokens(title)
    summary_room = 80  # for the counts and failure reasons of what does not fit
    for entry in reversed(entries):
        line = f"- {_line(entry)}"
        cost = estimate_tokens(line) + 1
        if used + cost > budget - summary_room:
            break
        lines.append(line)
        used += cost
    rest = entries[:len(entries) - len(lines)]
    if rest:
        lines.append(_summary(rest, max(budget - used, 0)))
    return "\n".join([title, *lines]) + "\n"


def _summary(entries: Sequence[Entry], budget: int) -> str:
    statuses = Counter(e.experiment.status for e in entries)
    text = (f"- ... and {len(entries)} older experiments: "
            + ", ".join(f"{n} {s}" for s, n in statuses.most_common()))
    reasons = Counter(_short(e.experiment.reason or "", 60) for e in entries
                      if e.experiment.status in FAILED and e.experiment.reason)
    for reason, count in reasons.most_common(5):
        addition = f"; {count}x '{reason}'"
        if estimate_tokens(text + addition) > budget:
            break
        text += addition
    return text


def _line(entry: Entry) -> str:
    e = entry.experiment
    delta = f" ({e.delta:+.4g})" if e.delta is not None else ""
    value = f" {e.value:.6g}{delta}" if e.value is not None else ""
    # A stopped run shows why (the step and its value): a hopeless direction, not a bug.
    reason = f" [{_short(e.reason, 80)}]" if e.reason and e.status in (*FAILED, PRUNED) else ""
    return f"#{e.number} {e.status}{value}: {_short(e.description, 120)}{reason} ({entry.study})"


def _short(text: str, limit: int) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[:limit - 3] + "..."


def _num(value: float | None) -> str:
    return "not measured yet" if value is None else f"{value:.6g}"


def _cut(text: str, budget_tokens: int) -> str:
    limit = budget_tokens * 3
    data = text.encode()
    if len(data) <= limit:
        return text
    return data[:limit - 40].decode(errors="ignore") + "\n... (notebook cut to budget)\n"
