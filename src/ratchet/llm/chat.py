"""What every model backend speaks: a provider-neutral conversation, tools and replies.

The agent keeps its conversation in these types; each backend translates them to its own wire
format (OpenAI chat completions, Anthropic messages), so the agent's code never depends on one.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Protocol

from ratchet.errors import RatchetError
from ratchet.llm.prices import Usage


class InfrastructureError(RatchetError):
    """The model's service failed (after the SDK's retries): never the candidate's fault."""


@dataclass(frozen=True)
class ToolSpec:
    name: str
    description: str
    parameters: dict[str, Any]  # JSON schema of the arguments object


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


@dataclass(frozen=True)
class UserTurn:
    text: str


@dataclass(frozen=True)
class AssistantTurn:
    text: str
    tool_calls: list[ToolCall] = field(default_factory=list)


@dataclass(frozen=True)
class ToolResult:
    call_id: str
    content: str
    is_error: bool = False


@dataclass(frozen=True)
class ToolResultsTurn:
    results: list[ToolResult]


Turn = UserTurn | AssistantTurn | ToolResultsTurn


class ChatModel(Protocol):
    model: str

    def complete(self, system: str, turns: list[Turn], tools: list[ToolSpec],
                 max_tokens: int = 4096) -> Reply:
        """One model call. Raises InfrastructureError when the service fails."""
        ...


def first_line(exc: Exception) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


@contextmanager
def service_errors(retried: tuple[type[Exception], ...],
                   status_error: type[Exception]) -> Iterator[None]:
    """An SDK's errors that outlast its retries, as InfrastructureError with one line."""
    try:
        yield
    except retried as exc:
        raise InfrastructureError(f"{type(exc).__name__}: {first_line(exc)}") from None
    except status_error as exc:
        status = getattr(exc, "status_code", "an error")
        raise InfrastructureError(f"the model's service answered {status}: "
                                  f"{first_line(exc)}") from None
