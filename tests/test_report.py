"""`ratchet report` without a bench: given nothing it reports the repository's latest study (the
whole bench, when that study belongs to one), in words for one study; best-so-far lines are
steps; knob values are shown as the code holds them, in the report as in `log` and `best`."""

from __future__ import annotations

import ast
import html
import re
from collections.abc import Callable
from pathlib import Path

import pytest
from conftest import git
from test_bench import report_json

from ratchet.cli import main
from ratchet.records import Experiment
from ratchet.reports.report import FIGURES
from ratchet.reports.safe_text import printable
from ratchet.store.database import Store, default_url

NOISY_GREEDY = {"ratchet.toml": ('rule = "noise-aware"\nbaseline_runs = 3',
                                 'rule = "greedy"\nbaseline_runs = 1'),
                "objective.py": ("NOISE = 0.0", "NOISE = 0.05")}


@pytest.fixture
def studied(make_repo: Callable[..., Path], capsys: pytest.CaptureFixture[str]) -> Path:
    repo = make_repo("quadratic", replace=NOISY_GREEDY)
    assert main(["run", "--repo", str(repo), "--plain", "--seed", "0",
                 "--max-experiments", "8"]) == 0
    capsys.readouterr()
    return repo


def stored(repo: Path) -> list[Experiment]:
    store = Store(default_url(repo))
    (study,) = store.studies()
    assert study.id is not None
    experiments = store.experiments(study.id)
    store.close()
    return experiments


def report(repo: Path, output: Path, *args: str) -> tuple[dict, str]:
    """The report's data and its words (the page without the embedded JSON)."""
    assert main(["report", "--repo", str(repo), "-o", str(output), *args]) == 0
    return report_json(output), output.read_text().split('<script type="application/json"')[0]


def test_with_nothing_given_the_latest_study_is_reported_in_its_own_words(
        studied: Path, tmp_path: Path) -> None:
    data, words = report(studied, tmp_path / "report.html")
    experiments = stored(studied)
    kept = [e for e in experiments if e.status == "keep"]
    assert data["bench"] is None and [s["name"] for s in data["studies"]] == ["tpe-1"]
    (study,) = data["studies"]
    assert study["experiments"] == len(experiments) == 8
    assert [k["number"] for k in study["kept_chain"]] == [e.number for e in kept]
    assert "<h1>ratchet report: study tpe-1: loss (minimize)</h1>" in words
    assert "bench" not in words.lower() and "seed" not in words.lower()
    assert 'id="final"' in words and 'id="kept"' in words and 'id="failures"' in words
    for e in kept:  # the kept chain, each with its description as recorded
        assert f"<td>{e.number}</td>" in words and html.escape(printable(e.description)) in words


def test_best_so_far_lines_are_steps(studied: Path, tmp_path: Path) -> None:
    data, _ = report(studied, tmp_path / "report.html")
    (study,) = data["studies"]
    figure, _, _ = FIGURES["best_by_experiment"](data)
    (line,) = figure.axes[0].get_lines()
    assert line.get_drawstyle() == "steps-post"  # a best holds until the next keep
    xs, ys = line.get_data()
    assert list(ys) == study["best_curve"] and list(xs) == list(range(8))
    figure, _, _ = FIGURES["best_by_dollar"](data)
    (line,) = figure.axes[0].get_lines()
    assert line.get_drawstyle() == "steps-post" and list(xs) == list(range(8))
    assert list(line.get_data()[0]) == study["dollars"]


def test_log_best_and_report_show_knob_values_as_the_code_holds_them(
        studied: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    proposals = [e for e in stored(studied) if e.kind == "proposal" and e.commit]
    assert len(proposals) == 7
    for e in proposals:
        code = git(studied, "show", f"{e.commit}:objective.py")
        for pair in e.description.removeprefix("tpe: ").split(", "):
            name, value = pair.split("=", 1)
            found = re.search(rf"^{name} = (\S+)", code, re.M)
            assert found, (pair, e.number)
            if found.group(1)[0] in "'\"":  # a string: its quotes may be the file's own
                assert ast.literal_eval(value) == ast.literal_eval(found.group(1))
            else:
                assert value == found.group(1), (pair, e.number)  # a number: its very digits
    assert main(["log", "--repo", str(studied), "--plain"]) == 0
    logged = capsys.readouterr().out
    assert all(f"\t{printable(e.description)}" in logged for e in proposals)
    assert main(["best", "--repo", str(studied)]) == 0
    first, branch = capsys.readouterr().out.splitlines()[:2]
    best = next(e for e in reversed(stored(studied)) if e.status == "keep")
    assert first.endswith(f"({printable(best.description)})")
    assert branch == "branch: ratchet/tpe-1  (merge it with `git merge ratchet/tpe-1`)"
    _, words = report(studied, tmp_path / "report.html")
    assert html.escape(printable(best.description)) in words


def test_the_latest_study_of_a_bench_reports_its_bench_and_a_named_study_itself(
        make_repo: Callable[..., Path], tmp_path: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    repo = make_repo("quadratic", replace=NOISY_GREEDY)
    assert main(["bench", "--repo", str(repo), "--methods", "tpe,random", "--seeds", "1",
                 "--budget-experiments", "2", "--plain"]) == 0
    data, words = report(repo, tmp_path / "bench.html")
    assert data["bench"] == "bench" and set(data["methods"]) == {"tpe", "random"}
    assert "ratchet report: bench bench" in words and "per seed" in words
    data, words = report(repo, tmp_path / "one.html", "--study", "bench-tpe-s0")
    assert data["bench"] is None and [s["name"] for s in data["studies"]] == ["bench-tpe-s0"]
    assert "study bench-tpe-s0" in words and "seed" not in words.lower()


def test_nothing_to_report_says_how_to_start(make_repo: Callable[..., Path], tmp_path: Path,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    repo = make_repo("quadratic")
    assert main(["report", "--repo", str(repo), "-o", str(tmp_path / "r.html")]) == 2
    assert capsys.readouterr().err.strip() == ("ratchet: error: nothing to report: no study in "
                                               "this repository yet (start one with `ratchet "
                                               "run`)")
