"""Stopping hopeless runs early, on a task with scripted curves: a run worse than every earlier
one at a step is stopped within one reporting interval with its process tree, recorded as
`pruned`; a better run, the baseline and a candidate's re-runs are never stopped; forged
intermediate lines can neither save a hopeless run nor get one kept, nor, printed by runs that
were discarded or that ended worse than their curve says, stop a real improvement."""

from __future__ import annotations

import difflib
import os
import pickle
import re
import tomllib
from pathlib import Path

import pytest
from conftest import commit_all, git

from ratchet.cli import main
from ratchet.config import PruningConfig, parse_config
from ratchet.pruning import AGREEMENT_TOLERANCE, RunJudge, agrees, references
from ratchet.records import Experiment
from ratchet.steps import Curve, parse_line
from ratchet.study import Study, open_study
from ratchet.units import format_duration

STEP_S = 0.15
TASK_PY = f"""\
import subprocess, time
A = 0.5
FORGE = "none"
child = subprocess.Popen(["sleep", "60"])
print(f"child {{child.pid}}", flush=True)
for step in range(1, 11):
    if FORGE != "only":
        print(f"ratchet-step: {{step}} loss: {{A + 1 / step}}", flush=True)
    if FORGE != "none":
        print(f"ratchet-step: {{step}} loss: 0.0", flush=True)
    time.sleep({STEP_S})
child.kill()
print(f"loss: {{A}}")
"""

RATCHET_TOML = """\
[task]
editable = ["task.py"]
command = "python task.py"
timeout = "60s"

[metric]
name = "loss"

[decision]
rule = "greedy"
baseline_runs = 1

[pruning]
pruner = "median"
startup_runs = 2

[sandbox]
mode = "none"

[space]
A = { float = [0.0, 1.0] }
"""


@pytest.fixture
def study(tmp_path: Path) -> Study:
    repo = tmp_path / "curves"
    repo.mkdir()
    (repo / "task.py").write_text(TASK_PY)
    (repo / "ratchet.toml").write_text(RATCHET_TOML)
    git(repo, "init", "-q")
    commit_all(repo, "initial")
    study = open_study(repo, "p", proposer="random", seed=0)
    study.run(max_experiments=1)  # the baseline
    return study


def candidate(study: Study, a: float, forge: str = "none") -> Experiment:
    before = TASK_PY
    after = before.replace("A = 0.5", f"A = {a}").replace('FORGE = "none"', f'FORGE = "{forge}"')
    patch = "".join(difflib.unified_diff(before.splitlines(True), after.splitlines(True),
                                         "a/task.py", "b/task.py"))
    return study.try_patch(patch, onto_base=True)


def child_pid(e: Experiment) -> int:
    found = re.search(r"child (\d+)", Path(e.log_path or "").read_text())
    assert found
    return int(found.group(1))


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    status = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    return status != "Z"


def test_a_hopeless_run_is_stopped_and_a_better_one_is_not(study: Study) -> None:
    baseline = study.experiments()[0]
    assert baseline.status == "keep" and baseline.curve and len(baseline.curve) == 10
    early = candidate(study, 0.95)  # one earlier curve only: too few to judge by
    assert early.status == "discard" and early.curve and len(early.curve) == 10
    better = candidate(study, 0.3)
    assert better.status == "keep", better.reason
    hopeless = candidate(study, 0.9)
    assert hopeless.status == "pruned", hopeless.reason
    assert hopeless.reason and hopeless.reason.startswith("pruned at step 1: loss 1.9")
    log = Path(hopeless.log_path or "").read_text()
    assert "ratchet-step: 1 " in log and "ratchet-step: 4 " not in log  # stopped at once
    assert hopeless.wall_s < 10 * STEP_S
    assert hopeless.value is None and hopeless.values == []
    assert not alive(child_pid(hopeless))  # the whole tree, its child included
    assert hopeless.saved_s > 0  # a full run would have taken longer
    best = study.best()
    assert best is not None and best.number == better.number  # a pruned run is never kept
    assert candidate(study, 0.2).status == "keep"  # better at every step: runs to its end


def test_status_shows_the_runs_stopped_and_the_compute_saved(
        study: Study, capsys: pytest.CaptureFixture[str]) -> None:
    candidate(study, 0.4)
    candidate(study, 0.3)
    hopeless = candidate(study, 0.9)
    assert hopeless.status == "pruned"
    assert main(["status", "--repo", str(study.repo.root)]) == 0
    header, row = capsys.readouterr().out.splitlines()[:2]
    cells = dict(zip(header.split("\t"), row.split("\t"), strict=True))
    assert cells["pruned"] == "1" and cells["failed"] == "0"
    assert cells["compute saved"] == format_duration(hopeless.saved_s) != "0.0s"


def test_a_forged_better_line_cannot_save_a_hopeless_run(study: Study) -> None:
    candidate(study, 0.4)
    candidate(study, 0.3)
    forged = candidate(study, 0.9, forge="after")  # a 0.0 line after each real one
    assert forged.status == "pruned", forged.reason
    assert forged.reason and "loss 1.9" in forged.reason  # judged on the worse value


def test_a_forged_curve_cannot_get_a_run_kept(study: Study) -> None:
    candidate(study, 0.4)
    forged = candidate(study, 0.9, forge="only")  # a perfect curve, a worse final value
    assert forged.status == "discard" and forged.value == pytest.approx(0.9)
    best = study.best()
    assert best is not None and best.value == pytest.approx(0.4)


def test_discarded_runs_printing_a_perfect_curve_cannot_stop_a_real_improvement(
        study: Study) -> None:
    """The attack: four candidates print a perfect training curve and end badly (discarded);
    the median of the earlier curves would then be that perfect curve, and the next real
    improvement would be stopped at step 1."""
    for a in (0.9, 0.95, 0.85, 0.8):
        forged = candidate(study, a, forge="only")
        assert forged.status == "discard" and forged.curve == [[s, 0.0] for s in range(1, 11)]
    better = candidate(study, 0.3)
    assert better.status == "keep", better.reason
    assert better.curve is not None and len(better.curve) == 10  # ran to its end
    statuses = [e.status for e in study.experiments()]
    assert statuses == ["keep", "discard", "discard", "discard", "discard", "keep"]


def test_a_kept_run_whose_curve_beats_its_own_value_is_no_reference(study: Study) -> None:
    """A candidate really better at the end but printing a perfect curve is kept (the final,
    protected value decides), yet its curve never judges another run."""
    forged = candidate(study, 0.3, forge="only")
    assert forged.status == "keep" and forged.value == pytest.approx(0.3)
    better = candidate(study, 0.25)
    assert better.status == "keep", better.reason
    hopeless = candidate(study, 0.9)  # the honest curves (baseline, 0.25) still judge
    assert hopeless.status == "pruned", hopeless.reason
    assert hopeless.reason and "2 earlier runs" in hopeless.reason


def test_only_the_baseline_and_kept_runs_with_consistent_curves_are_references() -> None:
    def run(number: int, status: str, value: float | None, last: float,
            kind: str = "proposal") -> Experiment:
        return Experiment(study_id=1, number=number, kind=kind, status=status, value=value,
                          values=[] if value is None else [value],
                          curve=[[1, last + 1.0], [2, last]])

    config = parse_config(tomllib.loads(RATCHET_TOML), Path("."))
    experiments = [run(0, "crash", None, 1.0, "baseline"), run(1, "discard", 1.0, 1.1, "baseline"),
                   run(2, "discard", 0.9, 0.0), run(3, "pruned", None, 0.0),
                   run(4, "keep", 0.8, 0.85), run(5, "keep", 0.7, 0.1), run(6, "crash", None, 0.0),
                   run(7, "keep", 0.6, 0.6 * (1 - AGREEMENT_TOLERANCE / 2))]
    kept = references(experiments, config)
    assert [r.value for r in kept] == [1.0, 0.8, 0.6]  # the latest baseline, kept, consistent
    assert [r.value for r in references(experiments)] == [1.0, 0.8, 0.7, 0.6]  # no config
    other = parse_config(tomllib.loads(RATCHET_TOML.replace(
        'pruner = "median"', 'pruner = "median"\nmetric = "train_loss"')), Path("."))
    assert agrees(experiments[5], other)  # another quantity: nothing to check it against
    maximize = parse_config(tomllib.loads(RATCHET_TOML.replace(
        'name = "loss"', 'name = "loss"\ngoal = "maximize"')), Path("."))
    assert agrees(experiments[5], maximize) and not agrees(run(8, "keep", 0.7, 0.9), maximize)


def test_no_point_of_a_reference_is_better_than_its_runs_protected_value() -> None:
    """A kept run whose code printed a forged 0.0 early and its honest value last judges
    others by what it reached, not by the forgery."""
    config = parse_config(tomllib.loads(RATCHET_TOML), Path("."))
    forged = Experiment(study_id=1, number=3, kind="proposal", status="keep", value=0.8,
                        values=[0.8], curve=[[1, 0.0], [2, 0.0], [3, 0.9], [4, 0.8]])
    [reference] = references([forged], config)
    assert reference.curve == ((1, 0.8), (2, 0.8), (3, 0.9), (4, 0.8))
    judge = RunJudge(config.pruning, True, "loss", [reference, reference, reference])
    assert judge.report(1, 0.8) is None  # pruned against the forged 0.0, not against 0.8


def test_lines_and_curves() -> None:
    assert parse_line("ratchet-step: 200 val_loss: 3.21", "val_loss") == (200, 3.21)
    assert parse_line("ratchet-step: 200 val_loss: 3.21", "loss") is None
    assert parse_line("ratchet-step: 200 val_loss: nan", "val_loss") is None
    assert parse_line("print ratchet-step: 1 loss: 0.1", "loss") is None
    curve = Curve(minimize=True)
    curve.add_text("ratchet-step: 1 loss: 2.0\nratchet-step: 1 loss: 0.5\n"
                   "ratchet-step: 2 loss: 1.0\n", "loss")
    assert curve.pairs() == [[1, 2.0], [2, 1.0]]
    up = Curve(minimize=False)
    up.add(1, 2.0)
    up.add(1, 0.5)
    assert up.values == {1: 0.5}


def test_the_judge_waits_for_enough_earlier_runs_and_its_warmup() -> None:
    def run(value: float) -> Experiment:
        return Experiment(study_id=1, number=1, kind="proposal", status="keep",
                          value=value, values=[value],
                          curve=[[s, value + 1 / s] for s in range(1, 6)])

    config = PruningConfig(pruner="median", startup_runs=3, warmup_steps=2)
    assert RunJudge(config, True, "loss", references([run(0.1), run(0.2)])).report(1, 9.0) is None
    judge = RunJudge(config, True, "loss", references([run(0.1), run(0.2), run(0.3)]))
    assert judge.report(1, 9.0) is None  # in its warmup
    reason = judge.report(2, 9.0)
    assert reason is not None and "step 2" in reason and "3 earlier runs" in reason
    maximize = RunJudge(PruningConfig(pruner="median", startup_runs=1), False, "acc",
                        references([run(0.5)]))
    assert maximize.report(1, 9.0) is None  # higher is better here


def test_the_curve_can_be_of_another_name_than_the_metric(tmp_path: Path) -> None:
    from ratchet.execute.evaluate import Evaluator
    from ratchet.execute.process import ProcessRunner

    (tmp_path / "run.py").write_text(
        "print('ratchet-step: 1 train_loss: 2.5')\nprint('ratchet-step: 1 loss: 9.0')\n"
        "print('ratchet-step: 2 train_loss: 2.0')\nprint('loss: 1.5')\n")
    task = RATCHET_TOML.replace('command = "python task.py"', 'command = "python run.py"') \
        .replace('pruner = "median"', 'pruner = "median"\nmetric = "train_loss"')
    config = parse_config(tomllib.loads(task), tmp_path)
    assert config.step_metric == "train_loss"
    result = Evaluator(config).evaluate(tmp_path, tmp_path / "run.log", ProcessRunner())
    assert result.status == "ok" and result.value == 1.5
    assert result.curve == [[1, 2.5], [2, 2.0]]  # the train_loss lines, not the loss line


def test_the_report_counts_runs_stopped_and_compute_saved() -> None:
    from ratchet.records import StudyRecord
    from ratchet.reports.data import summarize

    def e(number: int, status: str, saved: float = 0.0) -> Experiment:
        return Experiment(study_id=1, number=number, kind="baseline" if number == 0 else "proposal",
                          status=status, value=None if status == "pruned" else 1.0,
                          values=[] if status == "pruned" else [1.0], saved_s=saved)

    record = StudyRecord(name="s", task="t", repo_root="/r", base_commit="abc", proposer="tpe")
    summary = summarize(record, [e(0, "keep"), e(1, "pruned", 30.0), e(2, "discard"),
                                 e(3, "pruned", 12.5), e(4, "crash")], minimize=True)
    assert summary.pruned_rate == pytest.approx(2 / 4) and summary.saved_s == 42.5
    assert summary.crash_rate == pytest.approx(1 / 4)


def test_a_run_judge_travels_to_another_process_with_what_it_knows() -> None:
    """The Ray executor sends the judge to the worker: there it must judge as it would here."""
    config = PruningConfig(pruner="median", startup_runs=2)
    earlier = [Experiment(study_id=1, number=i, kind="proposal", status="keep", value=v,
                          values=[v], curve=[[1, v + 1], [2, v + 0.5]])
               for i, v in enumerate([0.5, 0.4, 0.6])]
    here = RunJudge(config, True, "loss", references(earlier))
    there = pickle.loads(pickle.dumps(here))
    assert there.report(1, 1.3) is None and here.report(1, 1.3) is None  # below the median
    reason = there.report(2, 9.0)
    assert reason is not None and reason == here.report(2, 9.0)
    hopeless = pickle.loads(pickle.dumps(RunJudge(config, True, "loss", references(earlier))))
    assert hopeless.report(1, 1.9) is not None  # worse than every earlier run's 1.4 to 1.6


def test_a_run_judge_travels_without_the_earlier_runs_code() -> None:
    """Only curves and outcomes go to a worker: earlier diffs (megabytes in a long study, the
    code of every proposal) stay in the store."""
    config = PruningConfig(pruner="median", startup_runs=2)
    earlier = [Experiment(study_id=1, number=i, kind="proposal", status="keep", value=0.5,
                          values=[0.5], curve=[[1, 1.5]], diff="+" + "x" * 1_000_000,
                          description=f"secret {i}")
               for i in range(3)]
    sent = pickle.dumps(RunJudge(config, True, "loss", references(earlier)))
    assert len(sent) < 5_000 and b"secret" not in sent
