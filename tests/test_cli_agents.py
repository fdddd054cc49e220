"""Coding-agent CLIs as proposers, with fake `claude`, `codex` and `aider` on PATH."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from fake_clis import install, prompts

import ratchet
from ratchet.cli import main
from ratchet.llm.prices import PRICES, Usage, cost_usd
from ratchet.records import KEEP, VOID

GREEDY = ('rule = "noise-aware"\nbaseline_runs = 3', 'rule = "greedy"\nbaseline_runs = 1')


@pytest.fixture
def fake_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    install(tmp_path / "bin")
    monkeypatch.setenv("PATH", f"{tmp_path / 'bin'}:{__import__('os').environ['PATH']}")
    # A CLI runs sandboxed: its private /tmp is gone afterwards, its HOME (its login) stays.
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    log = home / "prompts.jsonl"
    monkeypatch.setenv("FAKE_PROMPTS", str(log))
    return log


@pytest.mark.parametrize(("proposer", "tokens", "usd"), [
    ("claude-code", (5500, 400, 5000), 0.0123),
    ("codex", (7000, 900, 4000), None),
    ("aider", (4200, 312, 0), 0.02),
])
def test_each_cli_proposes_through_the_loop(make_repo: Callable[..., Path], fake_path: Path,
                                            proposer: str, tokens: tuple, usd: float | None
                                            ) -> None:
    repo = make_repo("quadratic", replace={"ratchet.toml": GREEDY})
    study = ratchet.open_study(repo, proposer, proposer=proposer)
    study.run(max_experiments=3)
    _, first, second = study.experiments()
    assert first.status == KEEP and first.description == "move X to 1.000"
    assert second.status == KEEP and second.parent_commit == first.commit  # built on the best
    assert "__pycache__" not in first.diff and "+X = 1.0" in first.diff
    assert (first.tokens_in, first.tokens_out, first.tokens_cached) == tokens
    if usd is not None:
        assert first.llm_usd == pytest.approx(usd)
    else:  # codex reports no dollars and no model was named: tokens only
        assert first.llm_usd == 0.0
    sent = prompts(fake_path)
    assert len(sent) == 2
    assert "Research program" in sent[0]["prompt"] and "Lab notebook" in sent[0]["prompt"]
    assert "#1 keep" in sent[1]["prompt"]  # the second episode knows the first
    assert Path(sent[0]["cwd"]) != repo  # its own work tree, never the user's checkout


def test_a_cli_edit_of_a_protected_file_is_voided(make_repo: Callable[..., Path],
                                                   fake_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FAKE_MODE", "protected")
    repo = make_repo("quadratic", replace={"ratchet.toml": GREEDY})
    study = ratchet.open_study(repo, "c", proposer="claude-code")
    study.run(max_experiments=2)
    tampered = study.experiments()[1]
    assert tampered.status == VOID and "evaluate.py: protected file" in (tampered.reason or "")


def test_a_cli_that_is_not_logged_in_stops_with_one_line(
        make_repo: Callable[..., Path], fake_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("FAKE_MODE", "login")
    repo = make_repo("quadratic", replace={"ratchet.toml": GREEDY})
    code = main(["run", "--repo", str(repo), "--proposer", "claude-code", "--plain",
                 "--max-experiments", "3"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 1
    assert err[-1].startswith("ratchet: error: claude-code failed (exit 1): Invalid API key")


def test_a_cli_that_is_not_installed_is_a_usage_error(
        make_repo: Callable[..., Path], monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("PATH", "/usr/bin:/bin")
    repo = make_repo("quadratic")
    code = main(["run", "--repo", str(repo), "--proposer", "codex", "--plain"])
    assert code == 2
    assert "the `codex` command is not on PATH (install: npm install -g @openai/codex" in \
        capsys.readouterr().err


def test_codex_tokens_are_priced_when_the_model_is_named(make_repo: Callable[..., Path],
                                                        fake_path: Path) -> None:
    repo = make_repo("quadratic", replace={"ratchet.toml": GREEDY})
    study = ratchet.open_study(repo, "cx", proposer="codex", settings={"model": "gpt-5"})
    study.run(max_experiments=2)
    proposal = study.experiments()[1]
    assert proposal.llm_usd == pytest.approx(
        cost_usd(Usage(7000, 900, 4000), PRICES["gpt-5"])) and proposal.llm_usd > 0
    assert prompts(fake_path)[0]["args"][4:6] == ["--model", "gpt-5"]
