"""The command line: every command, its errors as one line with exit code 2."""

import json
import re
import subprocess
import sys
import tomllib
from collections.abc import Callable
from pathlib import Path

import pytest
from conftest import commit_all, git

from ratchet.cli import main


def ratchet(repo: Path, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "ratchet.cli", *args], cwd=repo, input=stdin,
                          capture_output=True, text=True, timeout=300)


@pytest.fixture
def repo(make_repo: Callable[..., Path]) -> Path:
    return make_repo("quadratic")


def test_run_log_show_best_export_status(repo: Path) -> None:
    run = ratchet(repo, "run", "--proposer", "tpe", "--seed", "0", "--max-experiments", "12",
                  "--plain")
    assert run.returncode == 0, run.stderr
    assert run.stdout.count("\n#") >= 11 and "stopped: experiment budget reached (12)" in run.stdout

    log = ratchet(repo, "log", "--plain").stdout.splitlines()
    assert log[0].split("\t") == ["#", "status", "metric", "better by", "holdout", "time",
                                   "space", "description"]
    assert all(row.split("\t")[6] == "IN" for row in log[2:])  # knob values only
    assert len(log) == 13 and log[1].startswith("0\tkeep\t3.84 (3 runs)")

    show = ratchet(repo, "show", "1").stdout
    assert "--- diff ---" in show and "+X = " in show and "==> ratchet: evaluate" in show
    assert re.search(r"^decision: (keep|discard): loss \S+ over 1 run\(s\) against the "
                     r"best's 3\.84 over 3 run\(s\), a gain of \S+; ", show, re.MULTILINE), show

    best = ratchet(repo, "best")
    assert best.returncode == 0 and "branch: ratchet/tpe-1" in best.stdout
    tip_tree = git(repo, "rev-parse", "ratchet/tpe-1^{tree}").strip()
    (kept_last,) = [ln for ln in log[1:] if "\tkeep\t" in ln][-1:]
    number = int(kept_last.split("\t")[0])
    assert number == 0 or tip_tree == git(repo, "rev-parse",
                                          f"refs/ratchet/tpe-1/{number}^{{tree}}").strip()

    tsv = ratchet(repo, "export", "--format", "tsv").stdout.splitlines()
    assert tsv[0] == "commit\tloss\tmemory_gb\tstatus\tdescription"
    assert len(tsv) == 13 and tsv[1].split("\t")[1:4:2] == ["3.840000", "keep"]
    rows = [json.loads(line) for line in ratchet(repo, "export", "--format", "jsonl").stdout
            .splitlines()]
    assert [r["number"] for r in rows] == list(range(12))
    csv_text = ratchet(repo, "export", "--format", "csv").stdout
    assert csv_text.startswith("number,kind,status,scope,value")

    status = ratchet(repo, "status")
    assert status.returncode == 0 and "tpe-1" in status.stdout


def test_try_evaluates_the_uncommitted_edits_and_a_patch_file(repo: Path) -> None:
    objective = repo / "objective.py"
    original = objective.read_text()
    objective.write_text(original.replace("X = 0.0", "X = 1.5"))
    result = ratchet(repo, "try", "-m", "move x to 1.5", "--plain")
    assert result.returncode == 0, result.stderr
    assert "keep" in result.stdout.splitlines()[-1]
    assert objective.read_text() == original.replace("X = 0.0", "X = 1.5")  # left as it was
    diff = git(repo, "diff")
    git(repo, "checkout", "objective.py")
    (repo / "p.diff").write_text(diff.replace("X = 1.5", "X = 9.0"))
    result = ratchet(repo, "try", "p.diff", "--plain")
    assert "void" in result.stdout and "does not apply" in result.stdout  # best already moved x
    result = ratchet(repo, "try", "p.diff", "--onto", "base", "--plain")
    assert result.returncode == 0 and "discard" in result.stdout.splitlines()[-1]
    rows = ratchet(repo, "log", "--plain").stdout.splitlines()[1:]
    assert [r.split("\t")[1] for r in rows] == ["keep", "keep", "void", "discard"]
    assert [r.split("\t")[6] for r in rows] == ["-", "IN", "-", "IN"]


def test_init_writes_a_task_file_with_the_knobs_it_found(make_repo: Callable[..., Path]) -> None:
    repo = make_repo("digits")
    (repo / "ratchet.toml").unlink()
    commit_all(repo)
    result = ratchet(repo, "init")
    assert result.returncode == 0, result.stderr
    data = tomllib.loads((repo / "ratchet.toml").read_text())
    assert data["task"]["command"] == "python train.py"
    assert "train.py" in data["task"]["editable"]
    assert data["space"]["LEARNING_RATE"] == {"float": [0.00025, 0.004], "log": True}
    assert "SEED" not in data["space"]
    again = ratchet(repo, "init")
    assert again.returncode == 2 and "already exists" in again.stderr


def test_space_discover_prints_a_table(repo: Path) -> None:
    out = ratchet(repo, "space", "--discover").stdout
    space = tomllib.loads(out)["space"]
    assert space["X"] == {"float": [0.0, 1.0]} and space["DEPTH"] == {"int": [1, 4]}
    assert "objective.py:" in out


@pytest.mark.parametrize(("setup", "args", "problem"), [
    ("bad_toml", ["run"], "ratchet.toml: [metric].goal: must be 'minimize' or 'maximize'"),
    (None, ["run", "--proposer", "simulated-annealing"], "unknown proposer 'simulated-annealing'"),
    (None, ["run", "--storage", "oracle://x"], "unsupported database 'oracle'"),
    (None, ["run", "--storage", "::nonsense::"], "not a database URL"),
    ("no_git", ["run"], "is not inside a git repository"),
    (None, ["show", "7"], "no study in this repository yet"),
    (None, ["try", "missing.diff"], "patch file 'missing.diff' not found"),
    (None, ["run", "--max-time", "soon"], "must be a duration"),
    (None, ["run", "--parallel", "0"], "must be at least 1"),
    ("bad_space", ["run"], "[space].NOPE: no module-level constant"),
])
def test_usage_errors_are_one_line_with_exit_code_2(
        repo: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], setup: str | None,
        args: list[str], problem: str) -> None:
    where = repo
    if setup == "bad_toml":
        toml = repo / "ratchet.toml"
        toml.write_text(toml.read_text().replace('goal = "minimize"', 'goal = "lower"'))
    if setup == "bad_space":
        toml = repo / "ratchet.toml"
        toml.write_text(toml.read_text() + 'NOPE = { int = [1, 2] }\n')
    if setup == "no_git":
        where = tmp_path / "plain"
        where.mkdir()
    try:
        code = main([*args, "--repo", str(where)])
    except SystemExit as exc:  # argparse's own errors: usage line, then the error line
        code = exc.code
    assert code == 2
    err = capsys.readouterr().err.strip()
    if problem.startswith("must"):  # argparse: its usage lines, then one error line
        assert err.splitlines()[0].startswith("usage: ratchet")
        assert problem in err.splitlines()[-1]
    else:
        assert len(err.splitlines()) == 1 and problem in err


def test_argparse_errors_exit_2(repo: Path) -> None:
    result = ratchet(repo, "run", "--parallel", "0")
    assert result.returncode == 2 and "must be at least 1" in result.stderr
    result = ratchet(repo, "frobnicate")
    assert result.returncode == 2


def test_demo_runs_offline_and_says_where_to_look(tmp_path: Path) -> None:
    target = tmp_path / "demo"
    result = subprocess.run([sys.executable, "-m", "ratchet.cli", "demo", "--example",
                             "quadratic", "--dir", str(target), "--max-experiments", "8",
                             "--plain"], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert "where to look:" in result.stdout
    assert f"cd {target} && " in result.stdout and "ratchet log" in result.stdout
    assert (target / ".ratchet" / "ratchet.db").is_file()
    assert "ratchet/demo-tpe" in git(target, "branch", "--list")


def test_try_after_a_failed_baseline_still_records_the_change(
        make_repo: Callable[..., Path], monkeypatch: pytest.MonkeyPatch) -> None:
    from ratchet.errors import RatchetError
    from ratchet.study import open_study

    repo = make_repo("quadratic", replace={"objective.py": (
        "NOISE = 0.0", "NOISE = 0.0\nimport os\n"
        "if os.environ.get('BREAK_TASK'): raise SystemExit('broken')")})
    study = open_study(repo, "t", proposer="random")
    monkeypatch.setenv("BREAK_TASK", "1")
    with pytest.raises(RatchetError, match="baseline failed"):
        study.try_patch("unused", "first try")
    monkeypatch.delenv("BREAK_TASK")
    objective = (repo / "objective.py").read_text()
    (repo / "objective.py").write_text(objective.replace("X = 0.0", "X = 1.5"))
    experiment = study.try_patch(git(repo, "diff"), "second try")
    git(repo, "checkout", "objective.py")
    assert (experiment.kind, experiment.description, experiment.status) == (
        "try", "second try", "keep")
    assert [e.kind for e in study.experiments()] == ["baseline", "baseline", "try"]
