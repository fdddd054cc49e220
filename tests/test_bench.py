"""The head-to-head in commands: `ratchet bench` (tpe, random and the agent against the local
LLM server), `ratchet generalize`, `ratchet report`, read back from the report itself."""

from __future__ import annotations

import json
import re
import statistics
from collections.abc import Callable
from pathlib import Path

import pytest
from chat_server import ChatServer
from researcher import Researcher

import ratchet
from ratchet.cli import main

AGENT = """
[agent]
[agent.prices.test-model]
input = 3.0
output = 15.0
cached_input = 0.3
"""


def report_json(path: Path) -> dict:
    found = re.search(r'<script type="application/json" id="report-data">(.*?)</script>',
                      path.read_text(), re.S)
    assert found
    return json.loads(found.group(1).replace("<\\/", "</"))


@pytest.mark.slow
def test_bench_generalize_report_end_to_end(make_repo: Callable[..., Path], tmp_path: Path,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    text = (Path(__file__).parents[1] / "examples/quadratic/ratchet.toml").read_text()
    text = text.replace('rule = "noise-aware"\nbaseline_runs = 3',
                        'rule = "greedy"\nbaseline_runs = 1') + AGENT
    repo = make_repo("quadratic", edits={"ratchet.toml": text},
                     replace={"objective.py": ("NOISE = 0.0", "NOISE = 0.05")})
    methods = "tpe,random,agent:openai:test-model"
    with ChatServer(policy=Researcher([1.0, 1.3, 1.45])) as server:
        assert main(["bench", "--repo", str(repo), "--methods", methods, "--seeds", "2",
                     "--budget-experiments", "4", "--base-url", server.base_url,
                     "--plain"]) == 0
        # a second run continues: every study already has its budget, nothing new runs
        requests = len(server.requests)
        assert main(["bench", "--repo", str(repo), "--methods", methods, "--seeds", "2",
                     "--budget-experiments", "4", "--base-url", server.base_url,
                     "--plain"]) == 0
        assert len(server.requests) == requests
    assert main(["generalize", "--repo", str(repo), "--horizons", "1,2", "--runs", "2"]) == 0
    output = tmp_path / "report.html"
    assert main(["report", "--repo", str(repo), "--bench", "bench", "-o", str(output)]) == 0
    capsys.readouterr()

    data = report_json(output)
    names = {"tpe": "tpe", "random": "random", "agent:openai:test-model": "agent-openai-test-model"}
    assert set(data["methods"]) == set(names)
    for method, slug in names.items():
        studies = [ratchet.open_study(repo, f"bench-{slug}-s{seed}", create=False)
                   for seed in (0, 1)]
        assert [s.record.seed for s in studies] == [0, 1]
        assert all(len(s.experiments()) == 4 for s in studies)
        bests = [s.best().value for s in studies]
        m = data["methods"][method]
        assert m["seeds"] == 2
        assert m["final_best_mean"] == pytest.approx(statistics.fmean(bests))
        assert m["best_by_experiment"]["mean"][-1] == pytest.approx(statistics.fmean(bests))
        spent = [sum(e.llm_usd for e in s.experiments()) for s in studies]
        assert m["tokens_usd_mean"] == pytest.approx(statistics.fmean(spent))
        assert (m["tokens_usd_mean"] > 0) == (method.startswith("agent"))
        assert m["compute_usd_mean"] > 0
        runs = [g for s in studies for g in s.store.generalization(s.id)]
        assert len(runs) == 2 * 2 * 2 and {g.horizon for g in runs} == {1.0, 2.0}
        for horizon in (1.0, 2.0):
            row = next(r for r in data["generalization"]["table"]
                       if r["method"] == method and r["horizon"] == horizon)
            per_seed = [statistics.fmean(g.value for g in s.store.generalization(s.id)
                                         if g.horizon == horizon) for s in studies]
            assert row["mean"] == pytest.approx(statistics.fmean(per_seed))
            assert row["seeds"] == 2
    comparisons = data["generalization"]["comparisons"]
    assert len(comparisons) == 3 * 2  # three pairs at two horizons
    assert all(c["p_value"] is None or 0.0 <= c["p_value"] <= 1.0 for c in comparisons)
    page = output.read_text()
    assert page.count("<img ") == 5 and "Welch&#x27;s t-test on per-seed means" in page
    figures = sorted((tmp_path / "report_figures").glob("*.png"))
    assert [f.stem for f in figures] == ["best_by_dollar", "best_by_experiment",
                                        "generalization", "holdout", "outside_share"]
    assert all(f.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" for f in figures)
    assert 'id="final"' in page and 'id="scope"' in page and 'id="failures"' in page


def test_a_reference_log_appears_in_the_report(make_repo: Callable[..., Path], tmp_path: Path,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    from test_import import REFERENCE

    repo = make_repo("quadratic")
    assert main(["import", str(REFERENCE), "--repo", str(repo), "--study", "mar8"]) == 0
    output = tmp_path / "ref.html"
    assert main(["report", "--repo", str(repo), "--reference", "mar8", "-o", str(output)]) == 0
    (ref,) = report_json(output)["references"]
    assert (ref["experiments"], ref["kept"] + 1, ref["final_best"]) == (126, 23, 0.969686)
    assert ref["crash_rate"] == pytest.approx(1 / 125)
    page = output.read_text()
    assert "<h1>ratchet report: val_bpb (minimize)</h1>" in page  # the log's own metric
    assert ("<td>mar8</td><td>reference: mar8</td><td>0.9979</td><td>0.969686</td><td>126</td>"
            "<td>22</td>") in page
    assert "<td>0.8%</td>" in page  # its crash rate in the failures table


def test_bench_usage_errors(make_repo: Callable[..., Path],
                            capsys: pytest.CaptureFixture[str]) -> None:
    repo = make_repo("quadratic")
    assert main(["bench", "--repo", str(repo), "--methods", "tpe,agent"]) == 2
    assert "agent needs a model" in capsys.readouterr().err
    assert main(["bench", "--repo", str(repo), "--methods", "tpe,sgd"]) == 2
    assert "unknown method 'sgd'" in capsys.readouterr().err
    assert main(["bench", "--repo", str(repo), "--methods", "tpe"]) == 2
    assert "needs a budget" in capsys.readouterr().err
    assert main(["generalize", "--repo", str(repo), "--horizons", "1,x"]) == 2
    assert "--horizons '1,x'" in capsys.readouterr().err
