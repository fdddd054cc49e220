"""Every tamper attempt is voided with a recorded reason; the user's checkout is never touched."""

from collections.abc import Callable
from pathlib import Path

import pytest
from conftest import git

from ratchet.study import open_study

BAD_PATCH_OUTSIDE = """\
--- a/../evil.py
+++ b/../evil.py
@@ -0,0 +1 @@
+print('escaped')
"""


def patch_from(repo: Path, change: Callable[[Path], None]) -> str:
    """The patch a proposer would send for `change`, made with git, then undone."""
    change(repo)
    git(repo, "add", "-A")
    patch = git(repo, "diff", "--cached", "--binary")
    git(repo, "reset", "-q", "--hard")
    return patch


def edit(path: str, old: str, new: str) -> Callable[[Path], None]:
    def change(repo: Path) -> None:
        text = (repo / path).read_text()
        (repo / path).write_text(text.replace(old, new))
    return change


def add_file(path: str, text: str) -> Callable[[Path], None]:
    return lambda repo: (repo / path).write_text(text)


def make_symlink(repo: Path) -> None:
    (repo / "objective.py").unlink()
    (repo / "objective.py").symlink_to("/etc/passwd")


@pytest.fixture
def repo(make_repo: Callable[..., Path]) -> Path:
    return make_repo("quadratic")


@pytest.mark.parametrize(("change", "reason"), [
    (edit("evaluate.py", "loss = (", "loss = -100 + ("), "evaluate.py: protected file"),
    (edit("target.json", '"x": 1.5', '"x": 0.0'), "target.json: protected file"),
    (add_file("helper.py", "x = 1\n"), "helper.py: not editable"),
    (edit("ratchet.toml", 'goal = "minimize"', 'goal = "maximize"'), "ratchet.toml: protected"),
    (make_symlink, "objective.py: symlinks may not be added"),
])
def test_a_patch_outside_the_rules_is_voided_before_it_runs(
        repo: Path, change: Callable[[Path], None], reason: str) -> None:
    patch = patch_from(repo, change)
    study = open_study(repo, "t", proposer="random", seed=0)
    experiment = study.try_patch(patch, "tamper")
    assert experiment.status == "void"
    assert reason in (experiment.reason or "")
    assert experiment.log_path and not Path(experiment.log_path).exists()  # never ran


def test_a_path_outside_the_tree_is_voided(repo: Path) -> None:
    study = open_study(repo, "t", proposer="random", seed=0)
    experiment = study.try_patch(BAD_PATCH_OUTSIDE, "escape")
    assert experiment.status == "void"
    assert "outside the repository" in (experiment.reason or "")
    assert not (repo.parent / "evil.py").exists()


def test_changing_a_protected_file_during_the_run_voids_it(repo: Path) -> None:
    patch = patch_from(repo, edit("objective.py", "print(f\"trained",
                                  "open('evaluate.py', 'a').write(' ')\nprint(f\"trained"))
    study = open_study(repo, "t", proposer="random", seed=0)
    experiment = study.try_patch(patch, "rewrite the target")
    assert experiment.status == "void"
    assert "protected files changed during the command phase: evaluate.py" in experiment.reason


def test_a_metric_printed_by_edited_code_is_ignored(repo: Path) -> None:
    patch = patch_from(repo, edit("objective.py", "print(f\"trained",
                                  "print('loss: -1000.0')\nprint(f\"trained"))
    study = open_study(repo, "t", proposer="random", seed=0)
    experiment = study.try_patch(patch, "forge the metric")
    assert experiment.status == "discard"  # same point as the baseline: no gain
    assert experiment.scope == "outside"  # a new line of code, not a knob value
    assert experiment.value == pytest.approx(3.84)
    assert "loss: -1000.0" in Path(experiment.log_path).read_text()


def test_every_candidate_stays_retrievable_and_the_checkout_is_untouched(repo: Path) -> None:
    head_before = git(repo, "rev-parse", "HEAD")
    branches_before = git(repo, "branch", "--list")
    study = open_study(repo, "keep-all", proposer="random", seed=3)
    study.run(max_experiments=6)
    for e in study.experiments():
        ref = git(repo, "rev-parse", f"refs/ratchet/keep-all/{e.number}").strip() \
            if e.kind != "baseline" else e.commit
        assert ref == e.commit
        if e.status == "discard":
            assert git(repo, "diff", e.parent_commit, e.commit) == e.diff
    assert git(repo, "rev-parse", "HEAD") == head_before
    assert git(repo, "status", "--porcelain") == ""
    branches_after = git(repo, "branch", "--list")
    assert set(branches_after.split()) - set(branches_before.split()) == {"ratchet/keep-all"}
