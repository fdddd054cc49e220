"""OpenAI-compatible chat completions with tool calling, through the official `openai` SDK.

Works with any `base_url` (vLLM, Ollama, llama.cpp's server, OpenRouter, a LiteLLM proxy).
The endpoint and key come from the SDK's own variables (OPENAI_BASE_URL, OPENAI_API_KEY)
unless given. Rate limits, timeouts, connection errors and 5xx are retried by the SDK with
exponential backoff; what still fails is an InfrastructureError, never a failure of the code.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

import openai

from ratchet.errors import RatchetError
from ratchet.llm.prices import Usage


class InfrastructureError(RatchetError):
    """The model's service failed (after retries): not the candidate's fault."""


@dataclass(frozen=True)
class ToolCall:
    id: str
    name: str
    arguments: str  # raw JSON text as the model wrote it

    def parsed(self) -> dict[str, Any]:
        """The arguments as a dict; ValueError with the reason when they are not valid JSON."""
        try:
            value = json.loads(self.arguments or "{}")
        except json.JSONDecodeError as exc:
            raise ValueError(f"arguments are not valid JSON: {exc}") from None
        if not isinstance(value, dict):
            raise ValueError("arguments must be a JSON object")
        return value


@dataclass(frozen=True)
class Reply:
    text: str
    tool_calls: list[ToolCall] = field(default_factory=list)
    usage: Usage = field(default_factory=Usage)


class OpenAIChat:
    def __init__(self, model: str, base_url: str | None = None, api_key: str | None = None,
                 timeout_s: float = 120.0, max_retries: int = 4) -> None:
        self.model = model
        self.client = openai.OpenAI(base_url=base_url, api_key=api_key or _key_or_placeholder(),
                                    timeout=timeout_s, max_retries=max_retries)

    def complete(self, messages: list[dict[str, Any]], tools: list[dict[str, Any]]) -> Reply:
        try:
            response = self.client.chat.completions.create(
                model=self.model, messages=messages, tools=tools)  # type: ignore[arg-type]
        except (openai.APIConnectionError, openai.RateLimitError,
                openai.InternalServerError) as exc:
            raise InfrastructureError(f"{type(exc).__name__}: {_first_line(exc)}") from None
        except openai.APIStatusError as exc:
            raise InfrastructureError(f"the model's service answered {exc.status_code}: "
                                      f"{_first_line(exc)}") from None
        message = response.choices[0].message
        calls = [ToolCall(c.id, c.function.name, c.function.arguments or "")
                 for c in (message.tool_calls or []) if c.type == "function"]
        return Reply(text=message.content or "", tool_calls=calls, usage=_usage(response))


def _usage(response: Any) -> Usage:
    usage = response.usage
    if usage is None:
        return Usage()
    details = getattr(usage, "prompt_tokens_details", None)
    cached = getattr(details, "cached_tokens", 0) or 0
    return Usage(usage.prompt_tokens or 0, usage.completion_tokens or 0, cached)


def _key_or_placeholder() -> str | None:
    import os

    # Local servers need no key, but the SDK insists on one: a placeholder, never logged.
    return None if os.environ.get("OPENAI_API_KEY") else "not-needed"


def _first_line(exc: Exception) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__
