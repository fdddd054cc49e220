"""Coding-agent CLIs as proposers: Claude Code, Codex and Aider, run headless.

The CLI works in a work tree of its own at the best code, with the same research program and
lab notebook as prompt; whatever it leaves changed there is the proposal, a patch that goes
through the same rules as any other (a protected file touched: voided). Cost comes from the
CLI's own report where it gives one, else from the price table when the model is known.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ratchet.agent.brief import ResearchBrief
from ratchet.context import StudyContext
from ratchet.errors import RatchetError, UsageError
from ratchet.execute.process import ProcessRunner
from ratchet.execute.sandbox import Sandbox
from ratchet.llm.prices import Usage, cost_usd, price_of
from ratchet.proposers.base import Proposal, ProposalContext, Proposer

ASK = ("The code is in the current directory. Make ONE change to the editable files that you "
       "expect to improve the metric. Do not run the evaluation, do not commit. End your answer "
       "with one line: DESCRIPTION: <what you changed, in a few words>")
IGNORED = (":(exclude)**/__pycache__/**", ":(exclude)*.pyc", ":(exclude).aider*",
           ":(exclude).claude", ":(exclude).codex")


class CliAgentError(RatchetError):
    """The coding-agent CLI failed (not logged in, crashed): the study stops."""


@dataclass(frozen=True)
class Report:
    usage: Usage
    usd: float | None  # as the CLI reported it
    text: str  # the agent's final answer


@dataclass(frozen=True)
class CliAgent:
    proposer: str
    executable: str
    install: str

    def argv(self, prompt: str, model: str | None) -> list[str]:
        model_args = ["--model", model] if model else []
        if self.proposer == "claude-code":
            return [self.executable, "-p", prompt, "--output-format", "json",
                    "--permission-mode", "acceptEdits", *model_args]
        if self.proposer == "codex":
            return [self.executable, "exec", "--full-auto", "--json", "--skip-git-repo-check",
                    *model_args, prompt]
        return [self.executable, "--yes-always", "--no-auto-commits", "--no-pretty",
                *model_args, "--message", prompt]

    def report(self, output: str) -> Report:
        if self.proposer == "claude-code":
            return _claude_report(output)
        if self.proposer == "codex":
            return _codex_report(output)
        return _aider_report(output)


CLI_AGENTS = {
    "claude-code": CliAgent("claude-code", "claude",
                            "npm install -g @anthropic-ai/claude-code, then `claude` to log in"),
    "codex": CliAgent("codex", "codex", "npm install -g @openai/codex, then `codex login`"),
    "aider": CliAgent("aider", "aider", "pip install aider-chat, and set your model's API key"),
}


class CliAgentProposer(Proposer):
    def __init__(self, study: StudyContext, proposer: str) -> None:
        self.study, self.cli = study, CLI_AGENTS[proposer]
        self.name = proposer
        if shutil.which(self.cli.executable) is None:
            raise UsageError(f"{proposer}: the `{self.cli.executable}` command is not on PATH "
                             f"(install: {self.cli.install})")
        self.model: str | None = study.record.settings.get("model")
        self.brief = ResearchBrief(study, ask=ASK)
        # One work tree per driver process: drivers in one checkout must not share it.
        self.worktree = study.state_dir / "worktrees" / study.name / f"agent-{os.getpid()}"

    def propose(self, context: ProposalContext) -> Proposal | None:
        parent = context.best.commit or self.study.record.base_commit
        prompt = self.brief.system + "\n" + self.brief.opening(context.best, {})
        self._checkout(parent)
        log = self.worktree.with_name(f"{self.worktree.name}.log")  # kept with the experiment
        log.parent.mkdir(parents=True, exist_ok=True)
        log.write_text("")
        # The CLI needs its own login and keys (the evaluation never gets them).
        outcome = ProcessRunner(self.study.launcher).run(
            shlex.join(self.cli.argv(prompt, self.model)), self._sandbox(), dict(os.environ),
            self.study.config.agent.cli_timeout_s, log)
        output = log.read_text(errors="replace")
        if outcome.returncode != 0 and not outcome.timed_out:
            raise CliAgentError(f"{self.name} failed (exit {outcome.returncode}): "
                                f"{_last_line(output)} (log: {log})")
        report = self.cli.report(output)
        usd = report.usd if report.usd is not None else \
            cost_usd(report.usage, price_of(self.model or ""))
        description = _description(report.text, self.name)
        if outcome.timed_out:
            description = f"{description} (the CLI timed out)"
        return Proposal(description=description, patch=self._diff(parent), parent=parent,
                        usage=report.usage, llm_usd=usd,
                        rationale={"agent": self.name, "model": self.model,
                                   "answer": report.text[-2000:]},
                        attachments={".agent.log": output})

    def _sandbox(self) -> Sandbox:
        """Its work tree writable, the network and its own login (HOME) on; the repository,
        the store and the work tree's git link (a way back into the repository) invisible."""
        executable = Path(shutil.which(self.cli.executable) or self.cli.executable).parent
        return Sandbox(workdir=self.worktree, network=True, private_home=False,
                       unprivileged=False, conceal=tuple(self.study.concealed_paths()),
                       hidden=(self.worktree / ".git",), read_only=((executable, executable),))

    def _checkout(self, commit: str) -> None:
        repo = self.study.repo
        if not self.worktree.exists():
            repo.add_worktree(self.worktree, commit)
        repo.checkout_clean(self.worktree, commit)

    def _diff(self, parent: str) -> str:
        repo = self.study.repo
        repo.git("add", "-A", "--", ".", *IGNORED, cwd=self.worktree)
        return repo.git("diff", "--cached", "--binary", parent, cwd=self.worktree)


def _claude_report(output: str) -> Report:
    data = _last_json(output) or {}
    usage = data.get("usage") or {}
    read = int(usage.get("cache_read_input_tokens") or 0)
    written = int(usage.get("cache_creation_input_tokens") or 0)
    tokens = Usage(int(usage.get("input_tokens") or 0) + read + written,
                   int(usage.get("output_tokens") or 0), read)
    usd = data.get("total_cost_usd")
    return Report(tokens, float(usd) if isinstance(usd, int | float) else None,
                  str(data.get("result") or ""))


def _codex_report(output: str) -> Report:
    tokens, text = Usage(), ""
    for line in output.splitlines():
        event = _json_object(line)
        if event is None:
            continue
        usage = event.get("usage")
        if event.get("type") == "turn.completed" and isinstance(usage, dict):
            tokens = tokens + Usage(int(usage.get("input_tokens") or 0),
                                    int(usage.get("output_tokens") or 0),
                                    int(usage.get("cached_input_tokens") or 0))
        item = event.get("item") or {}
        if isinstance(item, dict) and item.get("type") == "agent_message":
            text = str(item.get("text") or text)
    return Report(tokens, None, text)


_AIDER_TOKENS = re.compile(r"Tokens: ([\d.]+)([kM]?) sent, ([\d.]+)([kM]?) received")
_AIDER_COST = re.compile(r"Cost: \$([\d.]+) message, \$([\d.]+) session")


def _aider_report(output: str) -> Report:
    sent = received = 0
    for match in _AIDER_TOKENS.finditer(output):
        sent += _count(match.group(1), match.group(2))
        received += _count(match.group(3), match.group(4))
    costs = _AIDER_COST.findall(output)
    usd = float(costs[-1][1]) if costs else None
    return Report(Usage(sent, received, 0), usd, output)


def _count(number: str, suffix: str) -> int:
    return int(float(number) * {"": 1, "k": 1_000, "M": 1_000_000}[suffix])


def _description(text: str, name: str) -> str:
    found = re.findall(r"DESCRIPTION:\s*(.+)", text)
    line = found[-1].strip() if found else f"{name} change"
    return line[:200]


def _last_json(output: str) -> dict[str, Any] | None:
    for line in reversed(output.strip().splitlines()):
        found = _json_object(line)
        if found is not None:
            return found
    return _json_object(output)


def _json_object(text: str) -> dict[str, Any] | None:
    try:
        value = json.loads(text)
    except (json.JSONDecodeError, ValueError):
        return None
    return value if isinstance(value, dict) else None


def _last_line(output: str) -> str:
    lines = [line for line in output.strip().splitlines() if line.strip()]
    if not lines:
        return "no output"
    data = _json_object(lines[-1])
    if data is not None and data.get("result"):
        return str(data["result"]).splitlines()[0][:200]
    return lines[-1][:200]
