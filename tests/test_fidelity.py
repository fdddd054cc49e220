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
from ratchet.engine import SilentReporter
from ratchet.errors import ConfigError
from ratchet.fidelity import Promotion, ScreeningCost, judge, next_horizon, screening_cost
from ratchet.records import Experiment
from ratchet.reports.data import summarize
from ratchet.study import Study, open_study

TASK_PY = """\
import os, time
A = 0.5
SHORT = {}  # what the code claims at a horizon, where it lies
h = float(os.environ["RATCHET_HORIZON"])
print(f"run: horizon {h:g} budget {os.environ['RATCHET_TIME_BUDGET']}")
time.sleep(0.5 * h)  # training, for its share of the budget
loss = SHORT.get(h, A + (1 - h))
print(f"loss: {loss}")
open("measured.txt", "w").write(str(loss))  # the trained "model", for a protected evaluator
FORGED = None  # a metric line the code prints after the real one, whatever it measured
if FORGED is not None:
    print(f"loss: {FORGED}")
"""
# The evaluator sees only the committed tree: the trained value reaches it through predict.
EVALUATE_PY = ("import os\nr = int(os.environ['RATCHET_PREDICT_FDS'].split(',')[1])\n"
               "print(f\"loss: {os.fdopen(r).read()}\")\n")
PREDICT_PY = "print(open('measured.txt').read(), end='')\n"

RATCHET_TOML = """\
[task]
editable = ["task.py"]
command = "python task.py"
budget = "40s"
timeout = "60s"

[metric]
name = "loss"

[holdout]
command = "python -c 'print(4.0)'"
metric = "loss"

[decision]
rule = "greedy"
baseline_runs = 1

[fidelity]
horizons = HORIZONS
reduction_factor = 2
only_if_cheaper = false  # the cost rule has tests of its own; these must not hang on timing

[sandbox]
mode = "none"

[space]
A = { float = [0.0, 1.0] }
"""


def make_study(tmp_path: Path, horizons: str = "[0.5]", protected_evaluator: bool = False,
               training: str = "0.5 * h", only_if_cheaper: bool = False) -> Study:
    """The scripted task's study, its baseline measured; `training`: the seconds a run of
    horizon h sleeps."""
    repo = tmp_path / "fidelity"
    repo.mkdir()
    (repo / "task.py").write_text(TASK_PY.replace("0.5 * h", training))
    toml = RATCHET_TOML.replace("HORIZONS", horizons)
    if only_if_cheaper:
        toml = toml.replace("only_if_cheaper = false", "only_if_cheaper = true")
    if protected_evaluator:
        (repo / "evaluate.py").write_text(EVALUATE_PY)
        (repo / "predict.py").write_text(PREDICT_PY)
        toml = toml.replace('command = "python task.py"', 'command = "python task.py"\n'
                            'evaluate = "python evaluate.py"\npredict = "python predict.py"\n'
                            'protected = ["evaluate.py", "predict.py"]')
    (repo / "ratchet.toml").write_text(toml)
    git(repo, "init", "-q")
    commit_all(repo, "initial")
    study = open_study(repo, "f", proposer="random", seed=0)
    study.run(max_experiments=1)  # the baseline
    return study


def candidate(study: Study, a: float, short: dict[float, float] | None = None,
              forged: float | None = None, reporter: SilentReporter | None = None
              ) -> Experiment:
    before = (study.repo.root / "task.py").read_text()
    after = before.replace("A = 0.5", f"A = {a}").replace("SHORT = {}", f"SHORT = {short or {}}")
    after = after.replace("FORGED = None", f"FORGED = {forged}")
    patch = "".join(difflib.unified_diff(before.splitlines(True), after.splitlines(True),
                                         "a/task.py", "b/task.py"))
    return study.try_patch(patch, onto_base=True, reporter=reporter)


def short_values(e: Experiment) -> list[list[float]]:
    """Its [horizon, value] pairs (a screen also records its run's time)."""
    assert all(len(screen) == 3 and screen[2] > 0 for screen in e.screens)
    return [screen[:2] for screen in e.screens]


def runs(e: Experiment) -> list[tuple[str, str]]:
    """(horizon, budget) of every run the experiment's log shows, in order."""
    return re.findall(r"run: horizon (\S+) budget (\S+)", Path(e.log_path or "").read_text())


@pytest.fixture
def study(tmp_path: Path) -> Study:
    return make_study(tmp_path)


def test_candidates_run_short_first_and_only_the_promising_run_in_full(
        study: Study, capsys: pytest.CaptureFixture[str]) -> None:
    baseline = study.experiments()[0]  # run short once, as the reference, then in full
    assert runs(baseline) == [("0.5", "20"), ("1", "40")]
    assert short_values(baseline) == [[0.5, pytest.approx(1.0)]]
    assert baseline.values == [pytest.approx(0.5)] and baseline.status == "keep"

    first = candidate(study, 0.4)  # 0.9 beats the baseline's 1.0 at half the budget
    assert runs(first) == [("0.5", "20"), ("1", "40")]
    assert short_values(first) == [[0.5, pytest.approx(0.9)]]
    assert first.values == [pytest.approx(0.4)] and first.status == "keep"

    worse = candidate(study, 0.8)  # 1.3 at half the budget, last of three: stopped there
    assert runs(worse) == [("0.5", "20")]
    holdouts = [Path(e.log_path or "").read_text().count("==> ratchet: holdout:")
                for e in (first, worse)]
    assert holdouts == [1, 0]  # a short run's holdout would go unused: not run
    assert worse.status == "pruned" and worse.values == [] and worse.value is None
    assert worse.reason == "not promoted at horizon 0.5: 1.3 ranks 3 of 3 (the best 1 go on)"
    assert worse.not_promoted and worse.decision and worse.decision["competitors"] == 3
    # What it did not spend: a typical full run's time (its short run's left out) less its own
    full_runs = sorted(e.wall_s - sum(s[2] for s in e.screens) for e in (baseline, first))
    assert worse.saved_s == pytest.approx(sum(full_runs) / 2 - worse.wall_s)
    assert worse.saved_s > 0.1
    assert main(["show", "--repo", str(study.repo.root), str(worse.number)]) == 0
    shown = capsys.readouterr().out
    assert f"short runs: 1.3 at horizon 0.5 ({worse.screens[0][2]:.1f}s)" in shown
    assert f"decision: {worse.reason}" in shown

    better = candidate(study, 0.3)  # 0.8 beats 1.0, 0.9 and 1.3
    assert runs(better) == [("0.5", "20"), ("1", "40")] and better.status == "keep"
    best = study.best()
    assert best is not None and best.number == better.number


def test_a_short_run_can_end_a_candidate_but_never_keep_one(study: Study) -> None:
    candidate(study, 0.4)
    liar = candidate(study, 0.9, short={0.5: 0.0})  # perfect at the short horizon only
    assert runs(liar) == [("0.5", "20"), ("1", "40")]
    assert short_values(liar) == [[0.5, 0.0]] and liar.values == [pytest.approx(0.9)]
    assert liar.status == "discard" and liar.value == pytest.approx(0.9)
    best = study.best()
    assert best is not None and best.value == pytest.approx(0.4)


def test_a_forged_line_cannot_save_a_candidate_the_protected_value_stops(
        tmp_path: Path) -> None:
    study = make_study(tmp_path, protected_evaluator=True)
    candidate(study, 0.4)
    forger = candidate(study, 0.8, forged=0.0)  # prints "loss: 0.0" after its real 1.3
    assert "loss: 0.0" in Path(forger.log_path or "").read_text()
    assert forger.status == "pruned" and short_values(forger) == [[0.5, pytest.approx(1.3)]]
    assert forger.reason and forger.reason.startswith("not promoted at horizon 0.5: 1.3 ")
    assert runs(forger) == [("0.5", "20")]  # never given a full run


def test_each_horizon_is_a_rung_of_its_own(tmp_path: Path) -> None:
    study = make_study(tmp_path, "[0.25, 0.5]")
    first = candidate(study, 0.4)
    assert runs(first) == [("0.25", "10"), ("0.5", "20"), ("1", "40")]
    assert short_values(first) == [[0.25, pytest.approx(1.15)], [0.5, pytest.approx(0.9)]]
    # The best at 0.25 (it lies there), last of three at 0.5: it stops at the second rung.
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


def test_a_promoted_candidate_pruned_mid_run_counts_as_pruned_mid_run(study: Study) -> None:
    """Its last decision is still its promotion; the report must not count it as unpromoted."""
    promoted = Promotion(promoted=True, horizon=0.5, value=0.4, rank=1, competitors=3, places=1)
    stopped = Promotion(promoted=False, horizon=0.5, value=0.9, rank=3, competitors=3, places=1)
    base = {"study_id": 1, "kind": "candidate", "status": "pruned"}
    mid_run = Experiment(number=1, **base, decision=promoted.to_dict(),
                         reason="pruned at step 30: loss 4.5 (median pruner)")
    short = Experiment(number=2, **base, decision=stopped.to_dict(), reason=stopped.reason)
    assert not mid_run.not_promoted and short.not_promoted
    summary = summarize(study.record, [mid_run, short], minimize=True)
    assert summary.pruned_rate == pytest.approx(1 / 2)
    assert summary.unpromoted_rate == pytest.approx(1 / 2)


def test_status_counts_candidates_stopped_short_as_pruned(
        study: Study, capsys: pytest.CaptureFixture[str]) -> None:
    candidate(study, 0.4)
    candidate(study, 0.8)
    capsys.readouterr()
    assert main(["status", "--repo", str(study.repo.root)]) == 0
    header, row = capsys.readouterr().out.splitlines()[:2]
    cells = dict(zip(header.split("\t"), row.split("\t"), strict=True))
    assert cells["pruned"] == "1" and cells["failed"] == "0"


class Messages(SilentReporter):
    def __init__(self) -> None:
        self.said: list[str] = []

    def message(self, text: str) -> None:
        self.said.append(text)


def test_where_short_runs_cost_as_much_as_full_ones_candidates_run_in_full(
        tmp_path: Path) -> None:
    # Start-up is all there is: a run sleeps as long at any horizon, so a screen (then, for
    # half the candidates, a full run too) costs more than a full run alone.
    study = make_study(tmp_path, training="0.5", only_if_cheaper=True)
    assert runs(study.experiments()[0]) == [("0.5", "20"), ("1", "40")]
    said = Messages()
    first = candidate(study, 0.4, reporter=said)
    assert runs(first) == [("1", "40")] and first.screens == []
    assert first.status == "keep" and first.values == [pytest.approx(0.4)]
    verdicts = [m for m in said.said if m.startswith("short runs do not pay here")]
    assert len(verdicts) == 1 and "candidates run in full from now on" in verdicts[0]
    second = candidate(study, 0.8)  # a study reopened decides the same from the baseline
    assert runs(second) == [("1", "40")] and second.status == "discard"


def test_where_short_runs_are_cheap_candidates_are_screened(tmp_path: Path) -> None:
    study = make_study(tmp_path, horizons="[0.1]", training="3 * h", only_if_cheaper=True)
    baseline = study.experiments()[0]
    cost = screening_cost(study.config.fidelity, baseline)
    assert cost is not None and cost.pays and cost.full_s > 3 > cost.screen_s[0]
    worse = candidate(study, 0.8)  # 1.7 at a tenth of the budget, after the baseline's 1.4
    assert runs(worse) == [("0.1", "4")] and worse.status == "pruned"


def test_screening_costs_each_rung_at_the_chance_of_reaching_it() -> None:
    cheap = ScreeningCost(reduction_factor=3, screen_s=(10.0,), full_s=30.0)
    assert cheap.expected_s == pytest.approx(10 + 30 / 3) and cheap.pays
    dear = ScreeningCost(reduction_factor=3, screen_s=(25.0,), full_s=30.0)
    assert dear.expected_s == pytest.approx(35.0) and not dear.pays
    assert "took 25.0 s, a full run 30.0 s" in dear.reason and "35.0 s" in dear.reason
    two = ScreeningCost(reduction_factor=2, screen_s=(5.0, 10.0), full_s=30.0)
    assert two.expected_s == pytest.approx(5 + 10 / 2 + 30 / 4)


def test_screening_cost_is_read_from_the_baselines_runs() -> None:
    config = FidelityConfig(horizons=(0.25,), reduction_factor=3)
    baseline = Experiment(study_id=1, number=0, kind="baseline", status="keep",
                          values=[1.0, 1.1], screens=[[0.25, 2.0, 6.0]], wall_s=66.0)
    cost = screening_cost(config, baseline)
    assert cost is not None and cost.screen_s == (6.0,) and cost.full_s == pytest.approx(30.0)
    assert screening_cost(config, Experiment(study_id=1, number=0, kind="baseline", values=[1.0],
                                             wall_s=30.0)) is None  # it never screened
    assert screening_cost(config, Experiment(study_id=1, number=0, kind="baseline", wall_s=6.0,
                                             screens=[[0.25, 2.0, 6.0]])) is None  # no full run


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


def test_measured_runs_always_run_in_full() -> None:
    config = FidelityConfig(horizons=(0.25, 0.5))
    fresh = Experiment(study_id=1, number=3, kind="proposal")
    assert next_horizon(config, fresh) == 0.25
    fresh.screens = [[0.25, 1.0]]
    assert next_horizon(config, fresh) == 0.5
    fresh.screens.append([0.5, 1.0])
    assert next_horizon(config, fresh) == 1.0
    baseline = Experiment(study_id=1, number=0, kind="baseline", values=[1.0])
    assert next_horizon(config, baseline) == 1.0  # its repeats, after its short runs
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
    ('horizons = [0.5]\nonly_if_cheaper = "yes"', "must be true or false, got 'yes'"),
])
def test_a_bad_fidelity_section_is_one_clear_error(tmp_path: Path, section: str,
                                                   problem: str) -> None:
    text = RATCHET_TOML.split("[fidelity]")[0] + "[fidelity]\n" + section + "\n"
    with pytest.raises(ConfigError, match=problem) as caught:
        parse_config(tomllib.loads(text), tmp_path)
    assert "[fidelity]" in str(caught.value) and "\n" not in str(caught.value)
