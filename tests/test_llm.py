"""The real `openai` client path against a local server speaking the wire protocol."""

import pytest
from chat_server import ChatServer, anthropic_message, completion

from ratchet.errors import UsageError
from ratchet.llm.anthropic_chat import AnthropicChat
from ratchet.llm.chat import (
    AssistantTurn,
    InfrastructureError,
    ToolCall,
    ToolResult,
    ToolResultsTurn,
    ToolSpec,
    UserTurn,
)
from ratchet.llm.connect import ModelSpec, connect
from ratchet.llm.openai_chat import OpenAIChat
from ratchet.llm.prices import PRICES, Price, Usage, cost_usd, price_of

TOOLS = [ToolSpec("read_file", "read a file",
                  {"type": "object", "properties": {"path": {"type": "string"}},
                   "required": ["path"]})]
HI = [UserTurn("hi")]


def test_tool_calls_and_usage_come_back_typed() -> None:
    with ChatServer() as server:
        server.reply(completion(tool_calls=[("read_file", '{"path": "train.py"}')],
                                prompt_tokens=1200, completion_tokens=30, cached_tokens=1000))
        chat = OpenAIChat("test-model", base_url=server.base_url, api_key="sk-test-123")
        reply = chat.complete("be brief", [UserTurn("improve it")], TOOLS)
    (call,) = reply.tool_calls
    assert (call.name, call.parsed()) == ("read_file", {"path": "train.py"})
    assert reply.usage == Usage(input_tokens=1200, output_tokens=30, cached_tokens=1000)
    sent = server.requests[0]
    assert sent["model"] == "test-model" and sent["tools"][0]["function"]["name"] == "read_file"
    assert sent["messages"][0] == {"role": "system", "content": "be brief"}
    assert server.headers[0]["authorization"] == "Bearer sk-test-123"


def test_rate_limits_and_server_errors_are_retried() -> None:
    with ChatServer() as server:
        server.error(429, "slow down")
        server.error(500, "overloaded")
        server.reply(completion(content="done"))
        chat = OpenAIChat("m", base_url=server.base_url, api_key="k", max_retries=3)
        reply = chat.complete("", HI, TOOLS)
    assert reply.text == "done" and reply.tool_calls == []
    assert len(server.requests) == 3


def test_errors_that_outlast_the_retries_are_infrastructure_errors() -> None:
    with ChatServer() as server:
        for _ in range(3):
            server.error(503, "unavailable")
        chat = OpenAIChat("m", base_url=server.base_url, api_key="k", max_retries=2)
        with pytest.raises(InfrastructureError, match="InternalServerError"):
            chat.complete("", HI, TOOLS)
    assert len(server.requests) == 3


def test_a_client_error_is_not_retried() -> None:
    with ChatServer() as server:
        server.error(400, "bad tool schema")
        with pytest.raises(InfrastructureError, match="answered 400"):
            OpenAIChat("m", base_url=server.base_url, api_key="k",
                       max_retries=3).complete("", HI, TOOLS)
    assert len(server.requests) == 1


def test_a_malformed_tool_argument_is_reported_not_crashed_on() -> None:
    with ChatServer() as server:
        server.reply(completion(tool_calls=[("read_file", '{"path": "train.py"')]))
        reply = OpenAIChat("m", base_url=server.base_url, api_key="k").complete("", HI, TOOLS)
    with pytest.raises(ValueError, match="not valid JSON"):
        reply.tool_calls[0].parsed()


def test_token_cost_counts_cached_input_at_its_own_price() -> None:
    price = Price(input=3.0, output=15.0, cached_input=0.3)
    usage = Usage(input_tokens=1_000_000, output_tokens=100_000, cached_tokens=400_000)
    assert cost_usd(usage, price) == pytest.approx(0.6 * 3.0 + 0.4 * 0.3 + 0.1 * 15.0)
    assert cost_usd(usage, None) == 0.0
    assert price_of("claude-sonnet-4-5-20250929") == PRICES["claude-sonnet-4-5"]
    assert price_of("gpt-4.1-mini-2025") == PRICES["gpt-4.1-mini"]  # the longest prefix wins
    assert price_of("my-local-llama", {"my-local-llama": price}) == price
    assert price_of("unknown-model") is None


def test_anthropic_tool_use_cache_and_usage_through_the_sdk() -> None:
    turns = [UserTurn("improve it"),
             AssistantTurn("reading", [ToolCall("toolu_0", "read_file", '{"path": "a.py"}')]),
             ToolResultsTurn([ToolResult("toolu_0", "no such file", is_error=True)])]
    with ChatServer() as server:
        server.reply(anthropic_message("ok", [("read_file", {"path": "b.py"})],
                                       input_tokens=200, output_tokens=40, cache_read=1500,
                                       cache_write=300))
        chat = AnthropicChat("claude-test", base_url=server.anthropic_url, api_key="sk-ant-1")
        reply = chat.complete("the program", turns, TOOLS)
    assert reply.text == "ok"
    assert [(c.name, c.parsed()) for c in reply.tool_calls] == [("read_file", {"path": "b.py"})]
    # all input counted, the cache reads apart
    assert reply.usage == Usage(input_tokens=2000, output_tokens=40, cached_tokens=1500)
    sent = server.requests[0]
    assert server.paths[0] == "/v1/messages"
    assert "sk-ant-1" in (server.headers[0].get("x-api-key", "")
                          + server.headers[0].get("authorization", ""))
    assert sent["system"] == [{"type": "text", "text": "the program",
                               "cache_control": {"type": "ephemeral"}}]
    assert sent["messages"][1]["content"][1] == {
        "type": "tool_use", "id": "toolu_0", "name": "read_file", "input": {"path": "a.py"}}
    assert sent["messages"][2]["content"][0]["is_error"] is True


def test_anthropic_overload_outlasting_retries_is_an_infrastructure_error() -> None:
    with ChatServer() as server:
        for _ in range(2):
            server.error(529, "overloaded")
        chat = AnthropicChat("claude-test", base_url=server.anthropic_url, api_key="k",
                             max_retries=1)
        with pytest.raises(InfrastructureError, match="529|overloaded"):
            chat.complete("", HI, TOOLS)
    assert len(server.requests) == 2


def test_model_names_choose_the_backend_and_a_missing_key_is_a_usage_error(
        monkeypatch: pytest.MonkeyPatch) -> None:
    assert ModelSpec.parse("claude-sonnet-4-5") == ModelSpec("anthropic", "claude-sonnet-4-5")
    assert ModelSpec.parse("openai:claude-on-vllm") == ModelSpec("openai", "claude-on-vllm")
    assert ModelSpec.parse("qwen3-coder") == ModelSpec("openai", "qwen3-coder")
    for name in ("OPENAI_API_KEY", "OPENAI_BASE_URL", "ANTHROPIC_API_KEY", "ANTHROPIC_BASE_URL"):
        monkeypatch.delenv(name, raising=False)
    with pytest.raises(UsageError, match="set ANTHROPIC_API_KEY"):
        connect(ModelSpec.parse("claude-sonnet-4-5"))
    with pytest.raises(UsageError, match="set MY_CRED"):
        connect(ModelSpec.parse("gpt-5"), api_key_env="MY_CRED")
    assert connect(ModelSpec.parse("local"), base_url="http://127.0.0.1:1/v1").model == "local"
