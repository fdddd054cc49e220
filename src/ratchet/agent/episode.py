"""One agent episode: a conversation of tool calls that ends in one proposed change.

The episode is bounded by a number of tool calls and a number of tokens. The model's service
failing is retried with growing pauses; the same failure several times in a row stops the study
(InfrastructureStreak) instead of spending the budget on a dead endpoint.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

from ratchet.agent.tools import TOOL_SPECS, AgentTools, Finish
from ratchet.errors import RatchetError
from ratchet.llm.chat import (
    AssistantTurn,
    ChatModel,
    InfrastructureError,
    Reply,
    ToolResult,
    ToolResultsTurn,
    ToolSpec,
    Turn,
    UserTurn,
)
from ratchet.llm.prices import Usage

NUDGE = ("Use the tools to make one change, then call finish. Do not answer in prose only.")
MAX_NUDGES = 2
GRACE_CALLS = 3  # calls past the limit, enough to finish


class InfrastructureStreak(RatchetError):
    """The model's service failed the same way too many times in a row."""


@dataclass(frozen=True)
class Limits:
    max_tool_calls: int = 40
    max_tokens: int = 300_000
    max_reply_tokens: int = 4096
    identical_failures: int = 3  # the same infrastructure error this often in a row: stop
    retry_pauses_s: tuple[float, ...] = (5.0, 30.0, 120.0)


@dataclass
class EpisodeResult:
    changes: dict[str, str]
    finish: Finish | None
    notes: list[str]
    usage: Usage = Usage()
    tool_calls: int = 0
    transcript: list[Turn] = field(default_factory=list)
    ended_because: str = "finished"


def run_episode(chat: ChatModel, system: str, opening: str, tools: AgentTools,
                limits: Limits, sleep: Callable[[float], None] = time.sleep,
                specs: list[ToolSpec] | None = None) -> EpisodeResult:
    specs = specs or TOOL_SPECS
    offered = {spec.name for spec in specs}
    turns: list[Turn] = [UserTurn(opening)]
    usage, calls, nudges = Usage(), 0, 0
    ended = "finished"
    while tools.finished is None:
        if usage.input_tokens + usage.output_tokens >= limits.max_tokens:
            ended = f"token limit ({limits.max_tokens}) reached"
            break
        reply = _call_with_retries(chat, system, turns, specs, limits, sleep)
        usage = usage + reply.usage
        turns.append(AssistantTurn(reply.text, reply.tool_calls))
        if not reply.tool_calls:
            nudges += 1
            if nudges > MAX_NUDGES:
                ended = "the model stopped calling tools"
                break
            turns.append(UserTurn(NUDGE))
            continue
        results = []
        for call in reply.tool_calls:
            calls += 1
            if call.name not in offered:
                results.append(ToolResult(call.id, f"error: unknown tool {call.name!r}", True))
                continue
            if calls > limits.max_tool_calls and call.name != "finish":
                results.append(ToolResult(call.id, "error: tool call limit reached; call "
                                          "finish now", True))
                continue
            text, is_error = tools.call(call)
            results.append(ToolResult(call.id, text, is_error))
        turns.append(ToolResultsTurn(results))
        if calls > limits.max_tool_calls + GRACE_CALLS and tools.finished is None:
            ended = f"tool call limit ({limits.max_tool_calls}) reached"
            break
    return EpisodeResult(tools.changes(), tools.finished, list(tools.notes), usage, calls,
                         turns, ended)


def _call_with_retries(chat: ChatModel, system: str, turns: list[Turn], specs: list[ToolSpec],
                       limits: Limits, sleep: Callable[[float], None]) -> Reply:
    """One model call; the SDK has already retried each failure with its own backoff."""
    last: str | None = None
    streak = 0
    attempt = 0
    while True:
        try:
            return chat.complete(system, turns, specs, limits.max_reply_tokens)
        except InfrastructureError as exc:
            message = str(exc)
            streak = streak + 1 if message == last else 1
            last = message
            if streak >= limits.identical_failures or attempt >= 2 * limits.identical_failures:
                raise InfrastructureStreak(
                    f"the model's service failed {streak} times in a row ({message}); "
                    "stopping the study: fix the endpoint or key and run again to resume"
                ) from None
            pauses = limits.retry_pauses_s
            sleep(pauses[min(attempt, len(pauses) - 1)] if pauses else 0.0)
            attempt += 1
