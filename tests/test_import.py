"""`ratchet import`: the published autoresearch results log as a study, and bad logs refused."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

import ratchet
from ratchet.cli import main
from ratchet.store.database import Store

REFERENCE = Path(__file__).resolve().parents[2] / "shared/reference/" \
    "autoresearch-h100-mar8-results.tsv"
if not REFERENCE.exists():  # a checkout elsewhere: the repository's own copy of the log
    REFERENCE = Path(__file__).resolve().parent / "data/autoresearch-h100-mar8-results.tsv"


def test_the_published_log_imports_with_its_numbers(make_repo: Callable[..., Path],
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    repo = make_repo("quadratic")
    assert main(["import", str(REFERENCE), "--repo", str(repo), "--study", "mar8"]) == 0
    assert "126 rows" in capsys.readouterr().out
    study = ratchet.open_study(repo, "mar8", create=False)
    exps = study.experiments()
    statuses = [e.status for e in exps]
    assert (len(exps), statuses.count("keep"), statuses.count("discard"),
            statuses.count("crash")) == (126, 23, 102, 1)
    kept = [e for e in exps if e.status == "keep"]
    assert kept[0].kind == "baseline" and kept[0].value == pytest.approx(0.9979)
    assert kept[-1].value == pytest.approx(0.969686) == study.best().value
    assert kept[1].delta == pytest.approx(0.986041 - 0.9979)
    assert all(e.diff == "" and e.rationale == {"imported": True} for e in exps)
    assert exps[15].status == "crash" and exps[15].value is None  # line 17 of the file
    assert exps[1].secondary == {"memory_gb": 43.9}
    # `ratchet run` without --study or --proposer never picks an imported log to continue
    fresh = ratchet.open_study(repo)
    assert (fresh.name, fresh.record.proposer) == ("tpe-1", "tpe")


@pytest.mark.parametrize(("line", "error"), [
    ("e05a87d\t0.98\t44.0\tkept\tx", "status 'kept' is not keep, discard or crash"),
    ("e05a87d\tfast\t44.0\tkeep\tx", "metric 'fast' is not a number"),
    ("e05a87d\t0.98\t44.0\tkeep", "expected 5 tab-separated fields, found 4"),
])
def test_a_malformed_row_names_its_line_and_nothing_is_imported(
        make_repo: Callable[..., Path], tmp_path: Path, capsys: pytest.CaptureFixture[str],
        line: str, error: str) -> None:
    repo = make_repo("quadratic")
    rows = REFERENCE.read_text().splitlines()
    rows[40] = line
    bad = tmp_path / "results.tsv"
    bad.write_text("\n".join(rows) + "\n")
    assert main(["import", str(bad), "--repo", str(repo)]) == 2
    assert capsys.readouterr().err.strip() == f"ratchet: error: results.tsv:41: {error}"
    assert Store(f"sqlite:///{repo / '.ratchet/ratchet.db'}").studies() == []
