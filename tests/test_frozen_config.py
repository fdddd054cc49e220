"""A study's task file is frozen when it starts: its rules cannot change under it once it has
kept a result. A study that never kept one (its baseline failed) is bound by nothing: under a
changed, committed task file it starts again from the checkout."""

from collections.abc import Callable
from pathlib import Path

import pytest
import sqlalchemy as sa
from conftest import commit_all, git

from ratchet.cli import main
from ratchet.config import changed_keys, read_toml
from ratchet.errors import UsageError
from ratchet.records import Driver
from ratchet.store.database import Store, default_url
from ratchet.study import open_study


@pytest.fixture
def repo(make_repo: Callable[..., Path]) -> Path:
    return make_repo("quadratic", replace={"ratchet.toml": ("baseline_runs = 3",
                                                            "baseline_runs = 2")})


def edit_task_file(repo: Path, old: str, new: str) -> None:
    path = repo / "ratchet.toml"
    text = path.read_text()
    assert old in text
    path.write_text(text.replace(old, new))


def run(repo: Path, capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str]:
    code = main(["run", "--repo", str(repo), "--plain", "--seed", "0", *args])
    return code, capsys.readouterr().err.strip()


def experiments(repo: Path) -> list[tuple[int, str, float | None]]:
    store = Store(default_url(repo))
    study = store.studies()[-1]
    assert study.id is not None
    rows = [(e.number, e.status, e.value) for e in store.experiments(study.id)]
    store.close()
    return rows


def test_flipped_goal_on_a_resumed_study_is_refused_and_nothing_changes(
        repo: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert run(repo, capsys, "--max-experiments", "3") == (0, "")
    before = experiments(repo)
    branch = git(repo, "rev-parse", "ratchet/tpe-1")

    edit_task_file(repo, 'goal = "minimize"', 'goal = "maximize"')
    code, err = run(repo, capsys, "--max-experiments", "6")
    assert code == 2 and len(err.splitlines()) == 1
    assert "metric.goal" in err and "tpe-1" in err
    assert "commit it (git add ratchet.toml && git commit), then" in err
    assert "`ratchet run --study NEW_NAME ...`" in err
    # committing the change does not make it the study's: still refused, naming the command
    commit_all(repo, "maximize")
    code, err = run(repo, capsys, "--max-experiments", "6")
    assert code == 2 and "metric.goal" in err and "commit it" not in err
    assert "`ratchet run --study NEW_NAME ...`" in err
    assert experiments(repo) == before
    assert git(repo, "rev-parse", "ratchet/tpe-1") == branch


def failed_baseline(make_repo: Callable[..., Path], capsys: pytest.CaptureFixture[str]) -> Path:
    """A study whose baseline crashed: the command names a script that is not there."""
    repo = make_repo("quadratic", replace={"ratchet.toml": ('command = "python objective.py"',
                                                            'command = "python missing.py"')})
    code, err = run(repo, capsys, "--max-experiments", "3")
    assert code != 0 and "the unmodified baseline failed (crash" in err
    assert experiments(repo) == [(0, "crash", None)]
    return repo


def test_a_study_whose_baseline_failed_starts_again_under_the_fixed_task_file(
        make_repo: Callable[..., Path], capsys: pytest.CaptureFixture[str]) -> None:
    repo = failed_baseline(make_repo, capsys)
    old_base = git(repo, "rev-parse", "HEAD").strip()
    edit_task_file(repo, "python missing.py", "python objective.py")
    commit_all(repo, "run the right script")
    head = git(repo, "rev-parse", "HEAD").strip()

    assert main(["run", "--repo", str(repo), "--plain", "--seed", "0",
                 "--max-experiments", "2"]) == 0
    said = [line for line in capsys.readouterr().out.splitlines() if "starts again" in line]
    assert len(said) == 1 and "never kept a result" in said[0] and "task.command" in said[0]
    assert head[:10] in said[0] and "#0 crash" in said[0]
    store = Store(default_url(repo))
    (study,) = store.studies()
    assert study.name == "tpe-1" and study.base_commit == head
    assert study.config == (repo / "ratchet.toml").read_text()
    assert study.id is not None
    failed, baseline = store.experiments(study.id)[:2]
    store.close()
    assert (failed.number, failed.status, failed.commit) == (0, "crash", old_base)  # as it was
    assert (baseline.kind, baseline.status, baseline.commit) == ("baseline", "keep", head)
    assert git(repo, "merge-base", "--is-ancestor", head, "ratchet/tpe-1") == ""
    assert open_study(repo, "tpe-1").config.command == "python objective.py"


def test_a_restart_waits_for_a_committed_file_and_for_other_drivers(
        make_repo: Callable[..., Path], capsys: pytest.CaptureFixture[str]) -> None:
    repo = failed_baseline(make_repo, capsys)
    branch = git(repo, "rev-parse", "ratchet/tpe-1")
    edit_task_file(repo, "python missing.py", "python objective.py")
    code, err = run(repo, capsys, "--max-experiments", "2")
    assert code == 2 and "uncommitted changes (task.command): commit them first" in err

    commit_all(repo, "run the right script")
    store = Store(default_url(repo))
    (study,) = store.studies()
    assert study.id is not None
    driver = store.register_driver(Driver(study_id=study.id, host="elsewhere", pid=4242,
                                          executor="local", slots=1))
    code, err = run(repo, capsys, "--max-experiments", "2")
    assert code == 2 and "being run by another driver (pid 4242)" in err
    assert store.get_study("tpe-1") == study and experiments(repo) == [(0, "crash", None)]
    assert git(repo, "rev-parse", "ratchet/tpe-1") == branch

    assert driver.id is not None
    store.stop_driver(driver.id, "done")
    store.close()
    code, _ = run(repo, capsys, "--max-experiments", "2")
    assert code == 0 and [row[:2] for row in experiments(repo)][:2] == [(0, "crash"), (1, "keep")]


def test_the_study_runs_by_its_frozen_file_and_a_new_study_takes_the_new_one(
        repo: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert run(repo, capsys, "--max-experiments", "2")[0] == 0
    edit_task_file(repo, 'goal = "minimize"', 'goal = "maximize"')
    commit_all(repo, "maximize")
    assert open_study(repo, "tpe-1").config.metric.goal == "minimize"  # reads still work
    assert main(["log", "--repo", str(repo), "--study", "tpe-1", "--plain"]) == 0
    assert run(repo, capsys, "--study", "max-1", "--max-experiments", "2")[0] == 0
    assert open_study(repo, "max-1").config.metric.goal == "maximize"


def test_comments_and_layout_may_change(repo: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert run(repo, capsys, "--max-experiments", "2")[0] == 0
    path = repo / "ratchet.toml"
    path.write_text("# a note\n\n" + path.read_text().replace(" = ", "="))
    assert run(repo, capsys, "--max-experiments", "3") == (0, "")


@pytest.mark.parametrize("change", ["uncommitted", "untracked"])
def test_a_new_study_needs_the_task_file_committed(
        make_repo: Callable[..., Path], capsys: pytest.CaptureFixture[str], change: str) -> None:
    repo = make_repo("quadratic")
    if change == "uncommitted":
        edit_task_file(repo, "[-3.0, 3.0] }\nY", "[-1.0, 1.0] }\nY")
        expected = "uncommitted changes (space.X.float)"
    else:
        git(repo, "rm", "-q", "--cached", "ratchet.toml")
        git(repo, "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "untrack")
        expected = "ratchet.toml is not committed"
    code, err = run(repo, capsys, "--max-experiments", "2")
    assert code == 2 and len(err.splitlines()) == 1 and expected in err
    store = Store(default_url(repo))
    assert store.studies() == []  # nothing left behind
    store.close()
    assert "ratchet/" not in git(repo, "branch", "--list")


def test_a_space_error_leaves_no_study_behind(
        repo: Path, capsys: pytest.CaptureFixture[str]) -> None:
    edit_task_file(repo, "[space]\n", "[space]\nNOPE = { int = [1, 2] }\n")
    commit_all(repo, "bad space")
    code, err = run(repo, capsys, "--max-experiments", "2")
    assert code == 2 and "[space].NOPE" in err
    store = Store(default_url(repo))
    assert store.studies() == []
    store.close()


def test_a_study_from_before_freezing_freezes_its_base_commits_file(repo: Path) -> None:
    open_study(repo, "old").run(max_experiments=1)  # its baseline kept: its rules are fixed
    store = Store(default_url(repo))
    base_text = (repo / "ratchet.toml").read_text()
    with store.engine.begin() as conn:  # as a study recorded before migration 0006
        conn.exec_driver_sql("UPDATE ratchet_studies SET config = NULL")
    edit_task_file(repo, 'goal = "minimize"', 'goal = "maximize"')
    commit_all(repo, "maximize")
    reopened = open_study(repo, "old")
    assert reopened.record.config == base_text
    assert reopened.config.metric.goal == "minimize"
    with pytest.raises(UsageError, match="metric.goal"):
        reopened.run(max_experiments=1)
    store.close()


def test_changed_keys_names_every_difference() -> None:
    old = read_toml('[task]\na = 1\n[space]\nX = { float = [0.0, 1.0] }\n')
    new = read_toml('[task]\na = 2\nb = 1\n[space]\nX = { float = [0.0, 2.0] }\n[cost]\nc = 1\n')
    assert changed_keys(old, new) == ["cost", "space.X.float", "task.a", "task.b"]
    assert changed_keys(old, old) == []


def test_a_restart_under_a_changed_space_starts_the_sampler_afresh(
        make_repo: Callable[..., Path], capsys: pytest.CaptureFixture[str]) -> None:
    """Trials asked under the old [space] (a choice list one value shorter) are not the
    restarted study's: its TPE proposes under the new one instead of failing every run."""
    repo = make_repo("quadratic", replace={"ratchet.toml": ('command = "python objective.py"',
                                                            'command = "python missing.py"')})
    code, err = run(repo, capsys, "--max-experiments", "3", "--parallel", "2")
    assert code != 0 and "the unmodified baseline failed (crash" in err
    store = Store(default_url(repo))
    asked = store.engine.connect().execute(sa.text("SELECT COUNT(*) FROM trials")).scalar()
    store.close()
    assert asked and asked >= 1  # the sampler asked while the baseline ran
    edit_task_file(repo, "python missing.py", "python objective.py")
    edit_task_file(repo, '"relu", "gelu", "tanh"]', '"relu", "gelu", "tanh", "silu"]')
    commit_all(repo, "the right script, one more activation")
    code, err = run(repo, capsys, "--max-experiments", "4")
    assert (code, err) == (0, "")
    rows = experiments(repo)
    assert [status for _, status, _ in rows][:3] == ["crash", "void", "keep"]
    assert len(rows) >= 4 and all(status in ("keep", "discard") for _, status, _ in rows[3:])
    assert run(repo, capsys, "--max-experiments", "2")[0] == 0  # and it resumes as usual
