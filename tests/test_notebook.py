"""The lab notebook: a hard token budget however long the history, and what it keeps."""

from __future__ import annotations

from pathlib import Path

import pytest

from ratchet.agent.notebook import Entry, build_notebook, estimate_tokens
from ratchet.config import MetricConfig, TaskConfig
from ratchet.records import CRASH, DISCARD, KEEP, PRUNED, RUNNING, Experiment

CONFIG = TaskConfig(root=Path("."), name="t", editable=("train.py",), command="python train.py",
                    metric=MetricConfig(name="val_bpb"))
CODE = {"train.py": "LR = 0.01\n" + "x = 1  # some code\n" * 300}


def history(n: int) -> list[Entry]:
    entries = [Entry("s1", Experiment(study_id=1, number=0, kind="baseline", status=KEEP,
                                      value=2.0, description="baseline"))]
    for i in range(1, n):
        status = KEEP if i % 50 == 0 else CRASH if i % 9 == 0 else DISCARD
        entries.append(Entry("s1" if i < n // 2 else "s2", Experiment(
            study_id=1, number=i, kind="proposal", status=status, value=2.0 - i * 1e-4,
            delta=-1e-4, description=f"idea number {i}", diff="-a\n+b\n" * 40,
            reason="exit code 1: out of memory" if status == CRASH else None,
            rationale={"hypothesis": f"h{i}", "notes": [f"insight {i}"] if i % 10 == 0
                       else []})))
    return entries


@pytest.mark.parametrize("n", [1, 10, 300, 5000])
def test_the_notebook_never_exceeds_its_budget(n: int) -> None:
    for budget in (2000, 8000, 16000):
        text = build_notebook(history(n), None, CODE, CONFIG, budget)
        assert estimate_tokens(text) <= budget


def test_it_keeps_the_chain_the_latest_in_full_and_summarizes_the_rest() -> None:
    entries = history(5000)
    entries[-1].experiment.status = RUNNING
    text = build_notebook(entries, entries[4950].experiment, CODE, CONFIG, 16000)
    assert "#4950 keep" in text and "#50 keep" not in text  # the latest 30 kept changes
    assert "earlier kept changes not shown" in text
    assert "### #4998 discard" in text and "Hypothesis: h4998" in text  # the latest in full
    assert "older experiments:" in text and "'exit code 1: out of memory'" in text
    assert "insight 4990" in text  # the agent's own notes
    assert "Being evaluated right now (do not duplicate): #4999" in text
    assert "in 2 studies" in text  # history from every study of the task
    assert "LR = 0.01" in text  # the best code fits in a 16k budget


def test_code_too_long_for_the_budget_is_named_not_shown() -> None:
    big = {"train.py": "x = 1\n" * 20000}
    text = build_notebook(history(10), None, big, CONFIG, 4000)
    assert "read it with read_file: train.py" in text


def test_a_pruned_run_is_shown_as_stopped_with_its_step() -> None:
    entries = history(3)
    entries.append(Entry("s1", Experiment(
        study_id=1, number=3, kind="proposal", status=PRUNED, description="lr x10",
        reason="pruned at step 200: val_bpb 3.9 (median pruner, 5 earlier runs)")))
    text = build_notebook(entries, None, CODE, CONFIG, 16000)
    assert "#3 pruned" in text and "pruned at step 200: val_bpb 3.9" in text
