"""The built-in research agent through the whole loop, against a local server that speaks the
OpenAI and Anthropic wire protocols through the real SDKs."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest
from chat_server import ChatServer, answer, conversation
from conftest import commit_all
from researcher import USAGE, Researcher

import ratchet
from ratchet.agent.episode import InfrastructureStreak, Limits
from ratchet.cli import main
from ratchet.errors import RatchetError
from ratchet.llm.connect import ModelSpec, connect
from ratchet.proposers.agent import AgentProposer
from ratchet.proposers.hybrid import HybridProposer
from ratchet.records import KEEP, VOID

PRICES = """
[agent]
model = "test-model"
max_tool_calls = 8

[agent.prices.test-model]
input = 3.0
output = 15.0
cached_input = 0.3
"""
CALL_USD = ((USAGE[0] - USAGE[2]) * 3.0 + USAGE[2] * 0.3 + USAGE[1] * 15.0) / 1e6


def agent_repo(make_repo: Callable[..., Path], extra: str = "") -> Path:
    text = (Path(__file__).parents[1] / "examples/quadratic/ratchet.toml").read_text()
    text = text.replace('rule = "noise-aware"\nbaseline_runs = 3',
                        'rule = "greedy"\nbaseline_runs = 1')
    agent = PRICES.replace("[agent]\n", "[agent]\n" + extra)
    return make_repo("quadratic", edits={"ratchet.toml": text + agent})


def run_agent(repo: Path, server: ChatServer, backend: str, experiments: int,
              limits: Limits | None = None, max_retries: int = 2,
              model: str = "test-model") -> ratchet.Study:
    study = ratchet.open_study(repo, f"agent-{backend}", proposer="agent",
                               settings={"model": f"{backend}:{model}"})
    url = server.anthropic_url if backend == "anthropic" else server.base_url
    chat = connect(ModelSpec(backend, model), url, max_retries=max_retries)
    proposer = AgentProposer(study.context, f"{backend}:{model}", chat=chat,
                             limits=limits or Limits(max_tool_calls=8, retry_pauses_s=(0.0,)))
    study.run(max_experiments=experiments, proposer=proposer)
    return study


@pytest.mark.parametrize("backend", ["openai", "anthropic"])
def test_agent_episodes_run_through_the_loop(make_repo: Callable[..., Path],
                                             backend: str) -> None:
    repo = agent_repo(make_repo)
    with ChatServer(policy=Researcher([1.0, 1.4, -2.0], malformed_first=True)) as server:
        study = run_agent(repo, server, backend, experiments=4)
    baseline, *proposals = study.experiments()
    assert [e.description for e in proposals] == ["move X to 1.0", "move X to 1.4",
                                                  "move X to -2.0"]
    assert [e.status for e in proposals] == ["keep", "keep", "discard"]
    # each episode built on the best code: the third patch changes X from 1.4
    assert "-X = 1.4\n+X = -2.0" in proposals[2].diff
    # tokens and dollars of every call are on the experiment, and in its total cost
    first = proposals[0]
    calls = 4  # malformed read, read, replace+note, finish
    assert (first.tokens_in, first.tokens_out, first.tokens_cached) == (
        calls * USAGE[0], calls * USAGE[1], calls * USAGE[2])
    assert first.llm_usd == pytest.approx(calls * CALL_USD)
    assert first.cost_usd > first.llm_usd  # compute is added on top
    assert proposals[1].llm_usd == pytest.approx(3 * CALL_USD)
    assert first.rationale is not None
    assert first.rationale["hypothesis"] == "the optimum lies near x=1.5"
    assert first.rationale["notes"] == ["tried X=1.0"]
    # the malformed argument came back to the model as an error it could fix
    expected = "arguments are not valid JSON" if backend == "openai" else "wrong arguments"
    assert f"error: read_file: {expected}" in str(server.requests[1]["messages"])
    # later episodes see the notebook: the kept chain and the earlier notes
    openings = [_first_user_text(r) for r in server.requests
                if not any(m["role"] == "assistant" for m in r["messages"])]
    assert len(openings) == 3
    assert "#1 keep" in openings[2] and "tried X=1.0" in openings[2]
    assert "X = 1.4" in openings[2]  # the best code so far is in the prompt
    if backend == "anthropic":
        sent = server.requests[0]
        assert sent["system"][0]["cache_control"] == {"type": "ephemeral"}
        assert sent["tools"][-1]["cache_control"] == {"type": "ephemeral"}


def test_rate_limits_and_server_errors_are_not_failures_of_the_code(
        make_repo: Callable[..., Path]) -> None:
    repo = agent_repo(make_repo)
    with ChatServer(policy=Researcher([1.0])) as server:
        server.error(429, "slow down")
        server.error(500, "overloaded")
        study = run_agent(repo, server, "anthropic", experiments=2)
    proposal = study.experiments()[1]
    assert proposal.status == KEEP and proposal.description == "move X to 1.0"
    assert len(server.requests) == 5  # two failed attempts, then three calls


def test_repeated_identical_infrastructure_errors_stop_the_study(
        make_repo: Callable[..., Path]) -> None:
    repo = agent_repo(make_repo)
    with ChatServer() as server:
        for _ in range(10):
            server.error(503, "upstream unavailable")
        with pytest.raises(InfrastructureStreak, match="3 times in a row"):
            run_agent(repo, server, "openai", experiments=5, max_retries=0)
    study = ratchet.open_study(repo, "agent-openai")
    # the baseline finished; no experiment was charged to the code
    assert [(e.kind, e.status) for e in study.experiments()] == [("baseline", KEEP)]


def test_a_reply_with_no_edit_is_voided_and_its_tokens_counted(
        make_repo: Callable[..., Path]) -> None:
    repo = agent_repo(make_repo)
    with ChatServer(policy=Researcher([1.0], silent_episodes=(1,))) as server:
        study = run_agent(repo, server, "openai", experiments=3)
    silent, normal = study.experiments()[1:]
    assert silent.status == VOID and "no change" in silent.description
    assert silent.tokens_in == 3 * USAGE[0]  # the first answer and two nudges
    assert normal.status == KEEP


def test_an_edit_to_a_protected_file_through_the_tools_is_refused(
        make_repo: Callable[..., Path]) -> None:
    repo = agent_repo(make_repo)

    def tamper(path: str, body: dict) -> dict:
        if len(body["messages"]) <= 2:
            return answer(path, calls=[("write_file", {"path": "evaluate.py",
                                                       "content": "print('loss: 0')\n"})])
        return answer(path, calls=[("finish", {"description": "cheat", "hypothesis": "h",
                                               "expected_effect": "e"})])

    with ChatServer(policy=tamper) as server:
        study = run_agent(repo, server, "openai", experiments=2,
                          limits=Limits(max_tool_calls=3, retry_pauses_s=(0.0,)))
    refused = str(server.requests[-1]["messages"])
    assert "evaluate.py is protected" in refused
    assert "you have not changed any file" in refused
    tampered = study.experiments()[1]
    assert tampered.status == VOID and tampered.diff == ""
    assert (repo / "evaluate.py").read_text().startswith('"""')


def test_resuming_with_another_model_is_refused(make_repo: Callable[..., Path]) -> None:
    repo = agent_repo(make_repo)
    ratchet.open_study(repo, "a", proposer="agent", settings={"model": "openai:m1"})
    with pytest.raises(RatchetError, match="was started with model"):
        ratchet.open_study(repo, "a", proposer="agent", settings={"model": "openai:m2"})


def _first_user_text(request: dict) -> str:
    content = next(m for m in request["messages"] if m["role"] == "user")["content"]
    return content if isinstance(content, str) else content[0]["text"]


@pytest.mark.parametrize("variable", ["OPENAI_API_KEY", "RESEARCH_LLM_CRED"])
def test_the_key_never_reaches_store_logs_prompts_or_evaluation(
        make_repo: Callable[..., Path], monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str], variable: str) -> None:
    secret = "sk-test-9f8e7d6c5b4a-never-leak"
    extra = "" if variable == "OPENAI_API_KEY" else f'api_key_env = "{variable}"\n'
    repo = agent_repo(make_repo, extra)
    objective = (repo / "objective.py").read_text()
    (repo / "objective.py").write_text(
        objective + "import os\nprint('ENV', sorted(os.environ.items()))\n")
    commit_all(repo, "print the environment")
    monkeypatch.setenv(variable, secret)
    with ChatServer(policy=Researcher([1.0, 1.2])) as server:
        code = main(["run", "--repo", str(repo), "--proposer", "agent", "--model",
                     "openai:test-model", "--base-url", server.base_url,
                     "--max-experiments", "3", "--plain"])
    assert code == 0
    assert all(h["authorization"] == f"Bearer {secret}" for h in server.headers)  # it was used
    assert secret not in json.dumps(server.requests)  # not in any prompt
    logs = [p for p in (repo / ".ratchet" / "logs").rglob("*.log")
            if not p.name.endswith(".predict.log")]
    assert logs and all("ENV [" in log.read_text() for log in logs)  # it printed its env
    for path in (repo / ".ratchet").rglob("*"):  # store, its WAL, logs, transcripts
        if path.is_file():
            assert secret.encode() not in path.read_bytes(), path
    out = capsys.readouterr()
    assert secret not in out.out + out.err


def test_hybrid_continues_the_classical_search_on_the_agents_structural_change(
        make_repo: Callable[..., Path]) -> None:
    repo = agent_repo(make_repo, "hybrid_warmup = 2\n")
    structural = ("jitter = [rng.gauss(0.0, NOISE) for _ in range(2)]\n",
                  "jitter = [1.5 - X, -0.7 - Y]  # learned offset\n")

    def restructure(path: str, body: dict) -> dict:
        results = [t for k, t in conversation(body) if k == "tool"]
        if not results:
            return answer(path, calls=[("replace", {"path": "objective.py",
                                                    "old": structural[0],
                                                    "new": structural[1]})])
        return answer(path, calls=[("finish", {"description": "learn the offset",
                                               "hypothesis": "h", "expected_effect": "e"})])

    with ChatServer(policy=restructure) as server:
        study = ratchet.open_study(repo, "hy", proposer="hybrid", seed=0,
                                   settings={"model": "openai:test-model"})
        chat = connect(ModelSpec("openai", "test-model"), server.base_url, max_retries=0)
        agent = AgentProposer(study.context, "openai:test-model", chat=chat)
        steps = iter([0.0, 0.9, 0.9])  # agent on the first step after warm-up, then the sampler
        study.run(max_experiments=6, proposer=HybridProposer(study.context, agent,
                                                             choose=lambda: next(steps)))
    exps = study.experiments()
    assert [e.trial_number is None for e in exps[1:]] == [False, False, True, False, False]
    agent_step = exps[3]
    assert agent_step.description == "agent: learn the offset"
    assert agent_step.scope == "outside" and agent_step.status == KEEP
    # the agent saw the sampler's state
    opening = _first_user_text(server.requests[0])
    assert "tpe sampler: 3 completed trials" in opening and "Best configurations" in opening
    for later in exps[4:]:  # knob values now set on the agent's code
        assert later.parent_commit == agent_step.commit
        assert later.scope == "in" and "learned offset" not in later.diff


def test_space_llm_is_checked_against_the_knobs_and_retried(
        make_repo: Callable[..., Path], capsys: pytest.CaptureFixture[str]) -> None:
    repo = agent_repo(make_repo)
    attempts = [
        'LR = { float = [0.1, 1.0] }',  # not a knob
        '[space]\nX = { float = [0.5, 3.0] }\nDEPTH = { int = [1, 12] }',  # X=0.0 outside
        '[space]\nX = { float = [-3.0, 3.0] }\nDEPTH = { int = [1, 12] }\n'
        'ACTIVATION = { choice = ["relu", "gelu", "tanh"] }',
    ]

    def designer(path: str, body: dict) -> dict:
        results = [t for k, t in conversation(body) if k == "tool"]
        if not results:
            return answer(path, calls=[("read_file", {"path": "objective.py"})])
        return answer(path, calls=[("write_space", {"toml": attempts[len(results) - 1]})])

    with ChatServer(policy=designer) as server:
        code = main(["space", "--repo", str(repo), "--llm", "--model", "openai:test-model",
                     "--base-url", server.base_url])
    out = capsys.readouterr()
    assert code == 0
    feedback = str(server.requests[2]["messages"]) + str(server.requests[3]["messages"])
    assert "LR is not a knob of the code" in feedback
    assert "[0.5, 3.0] must contain the current value 0.0" in feedback
    table = __import__("tomllib").loads(out.out)["space"]
    assert table == {"X": {"float": [-3.0, 3.0]}, "DEPTH": {"int": [1, 12]},
                     "ACTIVATION": {"choice": ["relu", "gelu", "tanh"]}}
    assert "4000 tokens in" in out.err and "$0.0" in out.err


def test_a_model_without_a_price_is_counted_at_zero_with_a_warning(
        make_repo: Callable[..., Path], capsys: pytest.CaptureFixture[str]) -> None:
    repo = agent_repo(make_repo)
    with ChatServer(policy=Researcher([1.0])) as server:
        study = run_agent(repo, server, "openai", experiments=2, model="unpriced-model")
    assert "no price known for unpriced-model: its tokens count as $0" in capsys.readouterr().err
    proposal = study.experiments()[1]
    assert proposal.tokens_in == 3 * USAGE[0] and proposal.llm_usd == 0.0
