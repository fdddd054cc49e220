"""OpenAI-compatible chat completions with tool calling, through the official `openai` SDK.

Works with any `base_url` (vLLM, Ollama, llama.cpp's server, OpenRouter, a LiteLLM proxy).
The endpoint and key come from the SDK's own variables (OPENAI_BASE_URL, OPENAI_API_KEY)
unless given. Rate limits, timeouts, connection errors and 5xx are retried by the SDK with
exponential backoff; what still fails is an InfrastructureError, never a failure of the code.
"""

from __future__ import annotations

from typing import Any

import openai

from ratchet.llm.chat import (
    AssistantTurn,
    InfrastructureError,
    Reply,
    ToolCall,
    ToolResultsTurn,
    ToolSpec,
    Turn,
    UserTurn,
    service_errors,
)
from ratchet.llm.prices import Usage

RETRIED = (openai.APIConnectionError, openai.RateLimitError, openai.InternalServerError)


class OpenAIChat:
    def __init__(self, model: str, base_url: str | None = None, api_key: str | None = None,
                 timeout_s: float = 120.0, max_retries: int = 4) -> None:
        self.model = model
        self.client = openai.OpenAI(base_url=base_url, api_key=api_key, timeout=timeout_s,
                                    max_retries=max_retries)

    def complete(self, system: str, turns: list[Turn], tools: list[ToolSpec],
                 max_tokens: int = 4096) -> Reply:
        messages = [{"role": "system", "content": system}, *_messages(turns)]
        with service_errors(RETRIED, openai.APIStatusError):
            response = self.client.chat.completions.create(
                model=self.model, messages=messages, tools=[_tool(t) for t in tools],
                max_completion_tokens=max_tokens)  # type: ignore[arg-type]
        if not response.choices:
            raise InfrastructureError("the model's service returned no choices")
        message = response.choices[0].message
        calls = [ToolCall(c.id, c.function.name, c.function.arguments or "")
                 for c in (message.tool_calls or []) if c.type == "function"]
        return Reply(text=message.content or "", tool_calls=calls, usage=_usage(response))


def _tool(spec: ToolSpec) -> dict[str, Any]:
    return {"type": "function", "function": {
        "name": spec.name, "description": spec.description, "parameters": spec.parameters}}


def _messages(turns: list[Turn]) -> list[dict[str, Any]]:
    messages: list[dict[str, Any]] = []
    for turn in turns:
        if isinstance(turn, UserTurn):
            messages.append({"role": "user", "content": turn.text})
        elif isinstance(turn, AssistantTurn):
            message: dict[str, Any] = {"role": "assistant", "content": turn.text or None}
            if turn.tool_calls:
                message["tool_calls"] = [
                    {"id": c.id, "type": "function",
                     "function": {"name": c.name, "arguments": c.arguments}}
                    for c in turn.tool_calls]
            messages.append(message)
        elif isinstance(turn, ToolResultsTurn):
            messages.extend({"role": "tool", "tool_call_id": r.call_id, "content": r.content}
                            for r in turn.results)
    return messages


def _usage(response: Any) -> Usage:
    usage = response.usage
    if usage is None:
        return Usage()
    details = getattr(usage, "prompt_tokens_details", None)
    cached = getattr(details, "cached_tokens", 0) or 0
    return Usage(usage.prompt_tokens or 0, usage.completion_tokens or 0, cached)

