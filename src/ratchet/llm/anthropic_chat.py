"""Anthropic's Messages API with tool use, through the official `anthropic` SDK.

The system prompt and the tool definitions are the same in every call of an episode (and of a
study), so both are marked for prompt caching: later calls read them at the cached price.
The endpoint and key come from the SDK's own variables (ANTHROPIC_BASE_URL, ANTHROPIC_API_KEY)
unless given. Rate limits, overloads, timeouts and 5xx are retried by the SDK with backoff.
"""

from __future__ import annotations

from typing import Any

import anthropic

from ratchet.llm.chat import (
    AssistantTurn,
    Reply,
    ToolCall,
    ToolResultsTurn,
    ToolSpec,
    Turn,
    UserTurn,
    service_errors,
)
from ratchet.llm.prices import Usage

CACHE = {"type": "ephemeral"}
RETRIED = (anthropic.APIConnectionError, anthropic.RateLimitError,
           anthropic.InternalServerError)


class AnthropicChat:
    def __init__(self, model: str, base_url: str | None = None, api_key: str | None = None,
                 timeout_s: float = 120.0, max_retries: int = 4) -> None:
        self.model = model
        self.client = anthropic.Anthropic(base_url=base_url, api_key=api_key,
                                          timeout=timeout_s, max_retries=max_retries)

    def complete(self, system: str, turns: list[Turn], tools: list[ToolSpec],
                 max_tokens: int = 4096) -> Reply:
        with service_errors(RETRIED, anthropic.APIStatusError):
            response = self.client.messages.create(
                model=self.model, max_tokens=max_tokens,
                system=[{"type": "text", "text": system, "cache_control": CACHE}],
                tools=_tools(tools), messages=_messages(turns))  # type: ignore[arg-type]
        text = "".join(block.text for block in response.content if block.type == "text")
        calls = [ToolCall(block.id, block.name, _json(block.input))
                 for block in response.content if block.type == "tool_use"]
        return Reply(text=text, tool_calls=calls, usage=_usage(response.usage))


def _tools(specs: list[ToolSpec]) -> list[dict[str, Any]]:
    tools: list[dict[str, Any]] = [
        {"name": s.name, "description": s.description, "input_schema": s.parameters}
        for s in specs]
    if tools:
        tools[-1]["cache_control"] = CACHE  # caches every tool definition before it too
    return tools


def _messages(turns: list[Turn]) -> list[dict[str, Any]]:
    messages: list[dict[str, Any]] = []
    for turn in turns:
        if isinstance(turn, UserTurn):
            messages.append({"role": "user", "content": turn.text})
        elif isinstance(turn, AssistantTurn):
            blocks: list[dict[str, Any]] = []
            if turn.text:
                blocks.append({"type": "text", "text": turn.text})
            blocks.extend({"type": "tool_use", "id": c.id, "name": c.name,
                           "input": _input(c)} for c in turn.tool_calls)
            messages.append({"role": "assistant", "content": blocks or [
                {"type": "text", "text": "(no reply)"}]})
        elif isinstance(turn, ToolResultsTurn):
            messages.append({"role": "user", "content": [
                {"type": "tool_result", "tool_use_id": r.call_id, "content": r.content,
                 "is_error": r.is_error} for r in turn.results]})
    return messages


def _input(call: ToolCall) -> dict[str, Any]:
    try:
        return call.parsed()
    except ValueError:
        return {}


def _json(value: Any) -> str:
    import json

    return json.dumps(value)


def _usage(usage: Any) -> Usage:
    """Anthropic counts cache reads and writes apart from `input_tokens`; Usage counts all input."""
    read = getattr(usage, "cache_read_input_tokens", 0) or 0
    written = getattr(usage, "cache_creation_input_tokens", 0) or 0
    return Usage(usage.input_tokens + read + written, usage.output_tokens, read)
