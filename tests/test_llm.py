"""The real `openai` client path against a local server speaking the wire protocol."""

import pytest
from chat_server import ChatServer, completion

from ratchet.llm.openai_chat import InfrastructureError, OpenAIChat
from ratchet.llm.prices import PRICES, Price, Usage, cost_usd, price_of

TOOLS = [{"type": "function", "function": {
    "name": "read_file", "description": "read a file",
    "parameters": {"type": "object", "properties": {"path": {"type": "string"}},
                   "required": ["path"]}}}]


def test_tool_calls_and_usage_come_back_typed() -> None:
    with ChatServer() as server:
        server.reply(completion(tool_calls=[("read_file", '{"path": "train.py"}')],
                                prompt_tokens=1200, completion_tokens=30, cached_tokens=1000))
        chat = OpenAIChat("test-model", base_url=server.base_url, api_key="sk-test-123")
        reply = chat.complete([{"role": "user", "content": "improve it"}], TOOLS)
    (call,) = reply.tool_calls
    assert (call.name, call.parsed()) == ("read_file", {"path": "train.py"})
    assert reply.usage == Usage(input_tokens=1200, output_tokens=30, cached_tokens=1000)
    sent = server.requests[0]
    assert sent["model"] == "test-model" and sent["tools"][0]["function"]["name"] == "read_file"
    assert server.headers[0]["authorization"] == "Bearer sk-test-123"


def test_rate_limits_and_server_errors_are_retried() -> None:
    with ChatServer() as server:
        server.error(429, "slow down")
        server.error(500, "overloaded")
        server.reply(completion(content="done"))
        reply = OpenAIChat("m", base_url=server.base_url, max_retries=3).complete(
            [{"role": "user", "content": "hi"}], TOOLS)
    assert reply.text == "done" and reply.tool_calls == []
    assert len(server.requests) == 3


def test_errors_that_outlast_the_retries_are_infrastructure_errors() -> None:
    with ChatServer() as server:
        for _ in range(3):
            server.error(503, "unavailable")
        chat = OpenAIChat("m", base_url=server.base_url, max_retries=2)
        with pytest.raises(InfrastructureError, match="InternalServerError"):
            chat.complete([{"role": "user", "content": "hi"}], TOOLS)
    assert len(server.requests) == 3


def test_a_client_error_is_not_retried() -> None:
    with ChatServer() as server:
        server.error(400, "bad tool schema")
        with pytest.raises(InfrastructureError, match="answered 400"):
            OpenAIChat("m", base_url=server.base_url, max_retries=3).complete(
                [{"role": "user", "content": "hi"}], TOOLS)
    assert len(server.requests) == 1


def test_a_malformed_tool_argument_is_reported_not_crashed_on() -> None:
    with ChatServer() as server:
        server.reply(completion(tool_calls=[("read_file", '{"path": "train.py"')]))
        reply = OpenAIChat("m", base_url=server.base_url).complete(
            [{"role": "user", "content": "x"}], TOOLS)
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
