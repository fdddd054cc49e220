"""From a model name to a chat client: which backend, which endpoint, which key.

`anthropic:NAME` and `openai:NAME` choose a backend; a bare name starting with `claude` goes to
Anthropic, any other to an OpenAI-compatible endpoint. Keys are read from the environment at
connection time and handed to the SDK only: they never enter a prompt, the store or a log.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from ratchet.errors import UsageError
from ratchet.llm.chat import ChatModel

BACKENDS = ("openai", "anthropic")
DEFAULT_KEY_VARIABLE = {"openai": "OPENAI_API_KEY", "anthropic": "ANTHROPIC_API_KEY"}
BASE_URL_VARIABLE = {"openai": "OPENAI_BASE_URL", "anthropic": "ANTHROPIC_BASE_URL"}


@dataclass(frozen=True)
class ModelSpec:
    backend: str
    name: str

    @classmethod
    def parse(cls, text: str) -> ModelSpec:
        backend, sep, name = text.partition(":")
        if sep and backend in BACKENDS:
            if not name:
                raise UsageError(f"model {text!r}: no model name after {backend}:")
            return cls(backend, name)
        if not text.strip():
            raise UsageError("no model given (use --model NAME, e.g. anthropic:claude-sonnet-4-5)")
        return cls("anthropic" if text.startswith("claude") else "openai", text)

    def __str__(self) -> str:
        return f"{self.backend}:{self.name}"


def key_variable(spec: ModelSpec, api_key_env: str | None) -> str:
    return api_key_env or DEFAULT_KEY_VARIABLE[spec.backend]


def connect(spec: ModelSpec, base_url: str | None = None, api_key_env: str | None = None,
            max_retries: int = 4, timeout_s: float = 120.0) -> ChatModel:
    """A client for `spec`. A hosted endpoint without a key is a usage error, said up front."""
    variable = key_variable(spec, api_key_env)
    key = os.environ.get(variable) or None
    endpoint = base_url or os.environ.get(BASE_URL_VARIABLE[spec.backend])
    if key is None:
        if endpoint is None:
            raise UsageError(f"no API key for {spec}: set {variable} (or point --base-url at "
                             "a local server)")
        key = "not-needed"  # local servers take any key; the SDKs insist on one
    if spec.backend == "anthropic":
        from ratchet.llm.anthropic_chat import AnthropicChat

        return AnthropicChat(spec.name, endpoint, key, timeout_s, max_retries)
    from ratchet.llm.openai_chat import OpenAIChat

    return OpenAIChat(spec.name, endpoint, key, timeout_s, max_retries)
