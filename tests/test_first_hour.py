"""The rough edges a newcomer hit in the first hour, each a one-line error, an honest number or
an output that is not cut short."""

import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from ratchet.cli import main
from ratchet.errors import RatchetError
from ratchet.store.database import Store, default_url
from ratchet.study import open_study


def ratchet(repo: Path, *args: str, stdin: bytes | None = None,
            env: dict[str, str] | None = None) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run([sys.executable, "-m", "ratchet.cli", *args], cwd=repo, input=stdin,
                          capture_output=True, timeout=300, env=env)


def one_line_error(result: subprocess.CompletedProcess[bytes], *words: str) -> str:
    err = result.stderr.decode().strip()
    assert result.returncode == 2 and len(err.splitlines()) == 1, err
    assert all(w in err for w in words), err
    return err


@pytest.fixture
def repo(make_repo: Callable[..., Path]) -> Path:
    return make_repo("quadratic", replace={"ratchet.toml": ("baseline_runs = 3",
                                                            "baseline_runs = 2")})


@pytest.mark.parametrize("url,words", [("sqlite://", ("in memory",)),
                                       ("sqlite:///:memory:", ("in memory",)),
                                       ("sqlite:////proc/x.db", ("cannot open storage",))])
def test_storage_urls_that_cannot_keep_a_study(repo: Path, url: str, words: tuple[str]) -> None:
    one_line_error(ratchet(repo, "run", "--storage", url, "--max-experiments", "1"), *words)


def test_a_binary_patch_is_refused_in_one_line(repo: Path) -> None:
    garbage = bytes(range(256)) * 40
    (repo / "garbage.bin").write_bytes(garbage)
    one_line_error(ratchet(repo, "try", "garbage.bin"), "garbage.bin", "not a text patch")
    one_line_error(ratchet(repo, "try", "-", stdin=garbage), "standard input", "not a text patch")


def test_a_repository_without_commits_leaves_nothing_behind(tmp_path: Path) -> None:
    repo = tmp_path / "fresh"
    repo.mkdir()
    subprocess.run(["git", "init", "-q"], cwd=repo, check=True)
    (repo / "ratchet.toml").write_text("[task]\neditable=['a.py']\ncommand='x'\n"
                                       "[metric]\nname='loss'\n")
    one_line_error(ratchet(repo, "run", "--max-experiments", "1"), "no commits")
    store = Store(default_url(repo))
    assert store.studies() == []
    store.close()


def task_printing(make_repo: Callable[..., Path], lines: str, extra: str = "") -> Path:
    """A quadratic task whose evaluate.py prints `lines` (a Python expression) too."""
    return make_repo("quadratic", replace={
        "evaluate.py": ('print(f"loss: ', f'print({lines})\nprint(f"ignored: '),
        "ratchet.toml": ("baseline_runs = 3", f"baseline_runs = 2{extra}")})


def test_a_missing_metric_names_the_metric_lines_the_output_had(
        make_repo: Callable[..., Path]) -> None:
    repo = task_printing(make_repo, '"val_acc: 0.5\\nstep 3: lr 0.1\\nepoch_loss = 2.5"')
    study = open_study(repo, "s")
    with pytest.raises(RatchetError, match="metric-like lines seen"):
        study.run(max_experiments=1)
    (baseline,) = study.experiments()
    assert baseline.status == "crash"
    assert "'loss'" in baseline.reason and "'val_acc: 0.5'" in baseline.reason
    assert "'epoch_loss = 2.5'" in baseline.reason


def test_a_huge_metric_line_is_cut_short_where_shown_and_stored(
        make_repo: Callable[..., Path]) -> None:
    repo = task_printing(make_repo, '"loss: " + "x" * 20_000_000')
    db = repo / ".ratchet" / "ratchet.db"
    result = ratchet(repo, "run", "--max-experiments", "1", "--plain")
    assert len(result.stdout) + len(result.stderr) < 20_000
    store = Store(default_url(repo))
    (baseline,) = store.experiments(store.studies()[0].id)
    assert baseline.status == "crash" and len(baseline.reason) < 500
    assert "is not a number" in baseline.reason
    store.close()
    assert db.stat().st_size < 2_000_000


def test_a_holdout_metric_never_printed_is_said_once(make_repo: Callable[..., Path]) -> None:
    repo = make_repo("quadratic", replace={
        "ratchet.toml": ('command = "python evaluate.py --holdout"',
                         'command = "python evaluate.py --holdout"\nmetric = "holdout_loss"')})
    result = ratchet(repo, "run", "--max-experiments", "4", "--plain", "--seed", "0")
    out = result.stdout.decode()
    assert result.returncode == 0, result.stderr
    warnings = [ln for ln in out.splitlines() if "holdout" in ln and "holdout_loss" in ln]
    assert len(warnings) == 1 and "'loss: " in warnings[0], out


def test_run_help_offers_only_documented_proposers(repo: Path) -> None:
    out = ratchet(repo, "run", "--help").stdout.decode()
    assert "external" not in out and "tpe" in out and "aider" in out


def test_knob_values_are_written_at_the_precision_their_range_needs(repo: Path) -> None:
    study = open_study(repo, "p", proposer="tpe", seed=0)
    study.run(max_experiments=6)
    for e in study.experiments()[1:]:
        for name in ("X", "Y"):
            assert len(repr(e.params[name])) <= 7, e.params  # range 6: 4 decimals at most
            assert f"{name} = {e.params[name]!r}" in e.diff


def test_output_closed_stops_the_run_cleanly_and_says_so(repo: Path) -> None:
    command = (f"{sys.executable} -m ratchet.cli run --plain --max-experiments 40 --seed 0 "
               "| head -n 2")
    result = subprocess.run(["bash", "-c", f"set -o pipefail; {command}"], cwd=repo,
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 1, result.stderr
    assert "output closed" in result.stderr and "Traceback" not in result.stderr
    study = open_study(repo, create=False)
    runs = study.experiments()
    assert 0 < len(runs) < 40 and all(e.finished_at for e in runs)  # stopped, nothing lost


def test_status_piped_is_not_cut_and_counts_kept_changes_without_the_baseline(
        repo: Path, capsys: pytest.CaptureFixture[str]) -> None:
    study = open_study(repo, "a-rather-long-study-name-for-the-table", proposer="tpe", seed=0)
    study.run(max_experiments=6)
    kept = [e for e in study.experiments() if e.status == "keep" and e.kind != "baseline"]
    assert main(["status", "--repo", str(repo)]) == 0
    out = capsys.readouterr().out
    assert "a-rather-long-study-name-for-the-table" in out and "…" not in out
    header, row = out.splitlines()[0], next(ln for ln in out.splitlines() if "rather" in ln)
    cells = dict(zip(header.split("\t"), row.split("\t"), strict=True))
    baseline = study.experiments()[0].value
    best = study.best()
    assert cells["kept"] == str(len(kept)) and best is not None and baseline is not None
    assert float(cells["better by"]) == pytest.approx(baseline - best.value, abs=1e-5)


def test_show_of_the_baseline_names_no_parent(repo: Path,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    open_study(repo, "b").run(max_experiments=1)
    assert main(["show", "0", "--repo", str(repo)]) == 0
    out = capsys.readouterr().out
    assert "parent" not in out.split("--- diff ---")[0].lower()


def test_log_status_best_and_export_show_the_holdout(repo: Path,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    open_study(repo, "h", seed=0).run(max_experiments=3)
    for command in (["log", "--plain"], ["status"], ["best"], ["export", "--format", "csv"]):
        assert main([*command, "--repo", str(repo)]) == 0
        assert "holdout" in capsys.readouterr().out, command
