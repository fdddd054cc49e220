"""Knobs as command-line flags: a command template filled from the candidate's flags file, each
value one shell-quoted argument, the file's problems failing the run and never the study."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest
from conftest import commit_all, git

from ratchet.config import parse_config
from ratchet.errors import ConfigError, UsageError
from ratchet.flags import FlagsError, fill, flags_in
from ratchet.study import open_study

TRAIN = """\
import argparse
p = argparse.ArgumentParser()
p.add_argument("--lr", type=float, required=True)
p.add_argument("--width", type=int, required=True)
p.add_argument("--name", required=True)
a = p.parse_args()
print(f"got lr={a.lr!r} width={a.width!r} name={a.name!r}")
print("loss:", (a.lr - 0.3) ** 2 + (a.width - 12) ** 2 / 100)
"""

TASK = """\
[task]
editable = ["train.py", "flags.toml"]
command = "python train.py --lr={lr} --width={width} --name={run.name}"
timeout = "60s"

[metric]
name = "loss"

[decision]
rule = "greedy"
baseline_runs = 1

[knobs]
flags = "flags.toml"

[space]
lr = { float = [0.01, 1.0] }
width = { int = [4, 16] }
"""

FLAGS = 'lr = 0.1   # peak rate\nwidth = 8\n\n[run]\nname = "first run"\n'


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    repo = tmp_path / "flags-task"
    repo.mkdir()
    for name, text in {"train.py": TRAIN, "ratchet.toml": TASK, "flags.toml": FLAGS}.items():
        (repo / name).write_text(text)
    git(repo, "init", "-q")
    commit_all(repo, "initial")
    return repo


def received(log_path: str | None) -> tuple[float, int, str]:
    assert log_path is not None
    found = re.search(r"got lr=(\S+) width=(\d+) name='([^']*)'", Path(log_path).read_text())
    assert found, Path(log_path).read_text()
    return float(found.group(1)), int(found.group(2)), found.group(3)


def test_each_candidates_values_reach_the_command_as_flags(repo: Path) -> None:
    study = open_study(repo, "f", proposer="tpe", seed=0)
    study.run(max_experiments=6)
    runs = study.experiments()
    assert [e.status for e in runs].count("crash") == 0, [e.reason for e in runs]
    assert received(runs[0].log_path) == (0.1, 8, "first run")  # the baseline, as committed
    for e in runs[1:]:
        assert e.params is not None
        assert received(e.log_path)[:2] == (e.params["lr"], e.params["width"])
    best = study.best()
    assert best is not None and best.commit is not None and best.number > 0
    flags = flags_in(git(repo, "show", f"{best.commit}:flags.toml"), "flags.toml")
    assert (flags["lr"], flags["width"]) == (best.params["lr"], best.params["width"])  # type: ignore[index]
    assert "# peak rate" in git(repo, "show", f"{best.commit}:flags.toml")  # comments kept


def test_a_value_is_one_argument_never_more_shell(repo: Path) -> None:
    study = open_study(repo, "f", proposer="tpe", seed=0)
    study.run(max_experiments=1)
    attack = ("--- a/flags.toml\n+++ b/flags.toml\n@@ -2,4 +2,4 @@\n width = 8\n \n [run]\n"
              '-name = "first run"\n+name = "x; touch PWNED; $(touch PWNED2) `touch PWNED3`"\n')
    tried = study.try_patch(attack)
    assert tried.status != "crash", tried.reason
    assert received(tried.log_path)[2] == "x; touch PWNED; $(touch PWNED2) `touch PWNED3`"
    assert not list(repo.rglob("PWNED*")) and not list(Path(tried.log_path or "").parent
                                                       .parent.rglob("PWNED*"))


@pytest.mark.parametrize("patch,reason", [
    ("-lr = 0.1   # peak rate\n+rate = 0.1\n", "has no 'lr' for the command's {lr}"),
    ("-lr = 0.1   # peak rate\n+lr = [0.1, 0.2]\n", "'lr' is not a single value"),
    ("-lr = 0.1   # peak rate\n+lr = = 0.1\n", "does not parse"),
])
def test_a_broken_flags_file_fails_the_run_not_the_study(repo: Path, patch: str,
                                                         reason: str) -> None:
    study = open_study(repo, "f", proposer="tpe", seed=0)
    study.run(max_experiments=1)
    tried = study.try_patch(f"--- a/flags.toml\n+++ b/flags.toml\n@@ -1,2 +1,2 @@\n{patch}"
                            " width = 8\n")
    assert tried.status == "crash" and reason in (tried.reason or ""), tried.reason
    assert study.best() is not None and study.best().number == 0  # type: ignore[union-attr]


def test_a_flags_file_that_is_a_link_is_not_read(repo: Path, tmp_path: Path) -> None:
    secret = tmp_path / "secret.toml"
    secret.write_text('lr = 0.3\nwidth = 12\n[run]\nname = "the hidden labels"\n')
    study = open_study(repo, "f", proposer="tpe", seed=0)
    study.run(max_experiments=1)
    (repo / "flags.toml").unlink()
    (repo / "flags.toml").symlink_to(secret)
    patch = subprocess.run(["git", "diff"], cwd=repo, capture_output=True, text=True).stdout
    git(repo, "checkout", "flags.toml")
    tried = study.try_patch(patch)
    # Refused before it runs (no links in a candidate); were one to get through, the
    # evaluator would not read it either.
    assert tried.status in ("void", "crash") and "link" in (tried.reason or ""), tried.reason
    log = Path(tried.log_path) if tried.log_path else None
    assert log is None or not log.exists() or "hidden labels" not in log.read_text()


def test_the_evaluator_itself_refuses_a_linked_flags_file(tmp_path: Path) -> None:
    from ratchet.execute.evaluate import Evaluator
    from ratchet.execute.process import ProcessRunner

    tree = tmp_path / "tree"
    tree.mkdir()
    (tree / "train.py").write_text(TRAIN)
    (tmp_path / "secret.toml").write_text(FLAGS.replace("first run", "the hidden labels"))
    (tree / "flags.toml").symlink_to(tmp_path / "secret.toml")
    config = parse_config(__import__("tomllib").loads(TASK), tree)
    result = Evaluator(config).evaluate(tree, tmp_path / "run.log", ProcessRunner())
    assert result.status == "crash" and "is a link" in (result.reason or ""), result.reason


def config_error(tmp_path: Path, task: str) -> str:
    with pytest.raises(ConfigError) as caught:
        parse_config(__import__("tomllib").loads(task), tmp_path)
    return str(caught.value)


def test_the_task_file_is_checked(tmp_path: Path) -> None:
    assert "is not editable" in config_error(
        tmp_path, TASK.replace('editable = ["train.py", "flags.toml"]', 'editable = ["t.py"]'))
    assert "fill [task].command only" in config_error(
        tmp_path, TASK.replace('timeout = "60s"', 'evaluate = "python e.py --n={width}"'))
    assert "no {name} placeholder" in config_error(
        tmp_path, TASK.replace(" --lr={lr} --width={width} --name={run.name}", ""))
    assert "YAML, JSON or TOML" in config_error(
        tmp_path, TASK.replace('flags = "flags.toml"', 'flags = "train.py"'))
    config = parse_config(__import__("tomllib").loads(TASK), tmp_path)
    assert config.flags_file == "flags.toml" and "flags.toml" in config.knob_files


def test_a_placeholder_the_committed_file_lacks_stops_the_start(repo: Path) -> None:
    (repo / "ratchet.toml").write_text(TASK.replace("--width={width}", "--width={depth}"))
    commit_all(repo)
    with pytest.raises(UsageError, match=r"\{depth\} is not a setting of flags.toml"):
        open_study(repo, "f", proposer="tpe")


def test_fill_quotes_and_commands_without_flags_are_left_alone() -> None:
    assert fill("run --a={a} --b={b}", {"a": "x y", "b": 1.5}) == "run --a='x y' --b=1.5"
    with pytest.raises(FlagsError, match="has no 'c'"):
        fill("run {c}", {})
    with pytest.raises(FlagsError, match="would read as an option"):
        fill("run --name {n}", {"n": "--eval-only"})
    assert fill("run --lr {lr}", {"lr": -0.5}) == "run --lr -0.5"  # a number is a value
    with pytest.raises(FlagsError, match="over 64 KiB"):  # would not even start
        fill("run {n}", {"n": "x" * 200_000})
    levels = zip("abcdefghij", "bcdefghijk", strict=True)
    bomb = "a: &a {x: 1, y: 1}\n" + "".join(f"{c}: &{c} {{p: *{p}, q: *{p}, r: *{p}}}\n"
                                             for p, c in levels)
    with pytest.raises(FlagsError, match="over 10000 settings"):
        flags_in(bomb, "f.yaml")
