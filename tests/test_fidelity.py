"""Multi-fidelity: every candidate runs first at a short horizon; only the best 1/η there go on
to the full budget, and only full-budget runs are ever judged for a keep. A scripted task shows
the horizon it was given, so every test checks which runs really happened."""

from __future__ import annotations

import difflib
import random
import re
import tomllib
from pathlib import Path

import pytest
from conftest import commit_all, git

from ratchet.cli import main
from ratchet.config import FidelityConfig, parse_config
from ratchet.errors import ConfigError
from ratchet.fidelity import judge, next_horizon
from ratchet.records import Experiment
from ratchet.reports.data import summarize
from ratchet.study import Study, open_study

TASK_PY = """\
import os
A = 0.5
SHORT = {}  # what the code claims at a horizon, where it lies
h = float(os.environ["RATCHET_HORIZON"])
print(f"run: horizon {h:g} budget {os.environ['RATCHET_TIME_BUDGET']}")
loss = SHORT.get(h, A + (1 - h))
print(f"loss: {loss}")
"""

RATCHET_TOML = """\
[task]
editable = ["task.py"]
command = "python task.py"
budget = "40s"
timeout = "60s"

[metric]
name = "loss"

[decision]
rule = "greedy"
baseline_runs = 1

[fidelity]
horizons = HORIZONS
reduction_factor = 2

[sandbox]
mode = "none"

[space]
A = { float = [0.0, 1.0] }
"""


def make_study(tmp_path: Path, horizons: str = "[0.5]") -> Study:
    repo = tmp_path / "fidelity"
    repo.mkdir()
    (repo / "task.py").write_text(TASK_PY)
    (repo / "ratchet.toml").write_text(RATCHET_TOML.replace("HORIZONS", horizons))
    git(repo, "init", "-q")
    commit_all(repo, "initial")
    study = open_study(repo, "f", proposer="random", seed=0)
    study.run(max_experiments=1)  # the baseline
    return study


def candidate(study: Study, a: float, short: dict[float, float] | None = None) -> Experiment:
    after = TASK_PY.replace("A = 0.5", f"A = {a}").replace("SHORT = {}", f"SHORT = {short or {}}")
    patch = "".join(difflib.unified_diff(TASK_PY.splitlines(True), after.splitlines(True),
                                         "a/task.py", "b/task.py"))
    return study.try_patch(patch, onto_base=True)


def runs(e: Experiment) -> list[tuple[str, str]]:
    """(horizon, budget) of every run the experiment's log shows, in order."""
    return re.findall(r"run: horizon (\S+) budget (\S+)", Path(e.log_path or "").read_text())


@pytest.fixture
def study(tmp_path: Path) -> Study:
    return make_study(tmp_path)


def test_candidates_run_short_first_and_only_the_promising_run_in_full(
        study: Study, capsys: pytest.CaptureFixture[str]) -> None:
    baseline = study.experiments()[0]
    assert runs(baseline) == [("1", "40")] and baseline.screens == []

    first = candidate(study, 0.4)  # alone at the short horizon: promoted
    assert runs(first) == [("0.5", "20"), ("1", "40")]
    assert first.screens == [[0.5, pytest.approx(0.9)]]
    assert first.values == [pytest.approx(0.4)] and first.status == "keep"

    worse = candidate(study, 0.8)  # 1.3 at half the budget, second of two: stopped there
    assert runs(worse) == [("0.5", "20")]
    assert worse.status == "pruned" and worse.values == [] and worse.value is None
    assert worse.reason == "not promoted at horizon 0.5: 1.3 ranks 2 of 2 (the best 1 go on)"
    assert worse.not_promoted and worse.decision and worse.decision["competitors"] == 2
    assert worse.saved_s > 0  # a full run would have taken longer
    assert main(["show", "--repo", str(study.repo.root), str(worse.number)]) == 0
    shown = capsys.readouterr().out
    assert "short runs: 1.3 at horizon 0.5" in shown
    assert f"decision: {worse.reason}" in shown

    better = candidate(study, 0.3)  # 0.8 beats 0.9 and 1.3
    assert runs(better) == [("0.5", "20"), ("1", "40")] and better.status == "keep"
    best = study.best()
    assert best is not None and best.number == better.number


def test_a_short_run_can_end_a_candidate_but_never_keep_one(study: Study) -> None:
    candidate(study, 0.4)
    liar = candidate(study, 0.9, short={0.5: 0.0})  # perfect at the short horizon only
    assert runs(liar) == [("0.5", "20"), ("1", "40")]
    assert liar.screens == [[0.5, 0.0]] and liar.values == [pytest.approx(0.9)]
    assert liar.status == "discard" and liar.value == pytest.approx(0.9)
    best = study.best()
    assert best is not None and best.value == pytest.approx(0.4)


def test_each_horizon_is_a_rung_of_its_own(tmp_path: Path) -> None:
    study = make_study(tmp_path, "[0.25, 0.5]")
    first = candidate(study, 0.4)
    assert runs(first) == [("0.25", "10"), ("0.5", "20"), ("1", "40")]
    assert first.screens == [[0.25, pytest.approx(1.15)], [0.5, pytest.approx(0.9)]]
    # The best at 0.25 (it lies there), second of two at 0.5: it stops at the second rung.
    late = candidate(study, 0.95, short={0.25: 0.0})
    assert [h for h, _ in runs(late)] == ["0.25", "0.5"]
    assert late.status == "pruned" and late.reason and "at horizon 0.5" in late.reason
    assert len(late.screens) == 2


def test_the_report_tells_a_short_stop_from_a_mid_run_prune(study: Study) -> None:
    candidate(study, 0.4)
    candidate(study, 0.8)
    summary = summarize(study.record, study.experiments(), minimize=True)
    assert summary.unpromoted_rate == pytest.approx(1 / 2) and summary.pruned_rate == 0
    assert summary.saved_s > 0


def test_status_counts_candidates_stopped_short_as_pruned(
        study: Study, capsys: pytest.CaptureFixture[str]) -> None:
    candidate(study, 0.4)
    candidate(study, 0.8)
    capsys.readouterr()
    assert main(["status", "--repo", str(study.repo.root)]) == 0
    header, row = capsys.readouterr().out.splitlines()[:2]
    cells = dict(zip(header.split("\t"), row.split("\t"), strict=True))
    assert cells["pruned"] == "1" and cells["failed"] == "0"


def test_the_promotion_rule_is_successive_halvings() -> None:
    """Optuna's pruner decides; the recorded rank and places agree with it on random data."""
    rng = random.Random(3)
    for eta in (2, 3, 4):
        config = FidelityConfig(horizons=(0.3,), reduction_factor=eta)
        for n in range(12):
            for minimize in (True, False):
                earlier = [Experiment(study_id=1, number=i, kind="proposal",
                                      screens=[[0.3, rng.random()]]) for i in range(n)]
                verdict = judge(config, minimize, rng.random(), 0, earlier)
                assert verdict.competitors == n + 1
                assert verdict.places == max((n + 1) // eta, 1)
                assert verdict.promoted == (verdict.rank <= verdict.places)


def test_rivals_are_compared_at_the_same_rung_only() -> None:
    config = FidelityConfig(horizons=(0.25, 0.5), reduction_factor=2)
    at_quarter = Experiment(study_id=1, number=1, kind="proposal", screens=[[0.25, 0.1]])
    at_half = Experiment(study_id=1, number=2, kind="proposal",
                         screens=[[0.25, 5.0], [0.5, 5.0]])
    verdict = judge(config, True, 1.0, 1, [at_quarter, at_half])
    assert verdict.promoted and verdict.competitors == 2  # 0.1 at 0.25 does not count


def test_the_baseline_and_measured_runs_always_run_in_full() -> None:
    config = FidelityConfig(horizons=(0.25, 0.5))
    fresh = Experiment(study_id=1, number=3, kind="proposal")
    assert next_horizon(config, fresh) == 0.25
    fresh.screens = [[0.25, 1.0]]
    assert next_horizon(config, fresh) == 0.5
    fresh.screens.append([0.5, 1.0])
    assert next_horizon(config, fresh) == 1.0
    assert next_horizon(config, Experiment(study_id=1, number=0, kind="baseline")) == 1.0
    rerun = Experiment(study_id=1, number=4, kind="proposal", values=[1.0])
    assert next_horizon(config, rerun) == 1.0  # a re-run for the noise decision
    kept = Experiment(study_id=1, number=5, kind="proposal", status="keep")
    assert next_horizon(config, kept) == 1.0  # the best measured again
    assert next_horizon(FidelityConfig(), Experiment(study_id=1, number=6,
                                                     kind="proposal")) == 1.0


@pytest.mark.parametrize(("section", "problem"), [
    ("horizons = 0.5", "must be a list of numbers"),
    ('horizons = ["half"]', "must be a list of numbers"),
    ("horizons = [0.5, 1.0]", "between 0 and 1"),
    ("horizons = [0.0]", "between 0 and 1"),
    ("horizons = [0.5, 0.25]", "must increase"),
    ("horizons = [0.5]\nreduction_factor = 1", "must be at least 2"),
    ("horizons = [0.5]\nrungs = 3", "rungs"),
])
def test_a_bad_fidelity_section_is_one_clear_error(tmp_path: Path, section: str,
                                                   problem: str) -> None:
    text = RATCHET_TOML.split("[fidelity]")[0] + "[fidelity]\n" + section + "\n"
    with pytest.raises(ConfigError, match=problem) as caught:
        parse_config(tomllib.loads(text), tmp_path)
    assert "[fidelity]" in str(caught.value) and "\n" not in str(caught.value)
