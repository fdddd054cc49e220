"""A local HTTP server speaking OpenAI's chat-completions and Anthropic's messages protocols.

It stands in only for the paid service; the real `openai` and `anthropic` SDKs talk to it over
HTTP. Each POST gets the next scripted (status, body), or, once the script is empty, the
answer of a `policy` (a scripted "model" that reads the conversation it is sent).
"""

from __future__ import annotations

import json
import threading
import time
from collections import deque
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

Call = tuple[str, Any]  # tool name, arguments (a dict, or raw text for a malformed one)


def completion(content: str | None = None, tool_calls: list[tuple[str, str]] | None = None,
               prompt_tokens: int = 100, completion_tokens: int = 20,
               cached_tokens: int = 0) -> dict[str, Any]:
    calls = [{"id": f"call_{i}", "type": "function",
              "function": {"name": name, "arguments": arguments}}
             for i, (name, arguments) in enumerate(tool_calls or [])]
    message: dict[str, Any] = {"role": "assistant", "content": content}
    if calls:
        message["tool_calls"] = calls
    return {
        "id": "chatcmpl-test", "object": "chat.completion", "created": int(time.time()),
        "model": "test-model",
        "choices": [{"index": 0, "message": message,
                     "finish_reason": "tool_calls" if calls else "stop"}],
        "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
                  "total_tokens": prompt_tokens + completion_tokens,
                  "prompt_tokens_details": {"cached_tokens": cached_tokens}},
    }


def anthropic_message(text: str = "", tool_calls: list[tuple[str, dict[str, Any]]] | None = None,
                      input_tokens: int = 100, output_tokens: int = 20,
                      cache_read: int = 0, cache_write: int = 0) -> dict[str, Any]:
    content: list[dict[str, Any]] = [{"type": "text", "text": text}] if text else []
    content.extend({"type": "tool_use", "id": f"toolu_{i}", "name": name, "input": args}
                   for i, (name, args) in enumerate(tool_calls or []))
    return {"id": "msg_test", "type": "message", "role": "assistant", "model": "test-model",
            "content": content, "stop_reason": "tool_use" if tool_calls else "end_turn",
            "stop_sequence": None,
            "usage": {"input_tokens": input_tokens, "output_tokens": output_tokens,
                      "cache_read_input_tokens": cache_read,
                      "cache_creation_input_tokens": cache_write}}


def answer(path: str, text: str = "", calls: list[Call] | None = None,
           usage: tuple[int, int, int] = (1000, 50, 600)) -> dict[str, Any]:
    """A reply in the protocol of `path`, with tool calls and (input, output, cached) usage."""
    calls = calls or []
    if path.endswith("/messages"):
        return anthropic_message(text, [(n, a if isinstance(a, dict) else {"raw": a})
                                        for n, a in calls],
                                 usage[0] - usage[2], usage[1], cache_read=usage[2])
    return completion(text or None, [(n, a if isinstance(a, str) else json.dumps(a))
                                     for n, a in calls], usage[0], usage[1], usage[2])


def conversation(body: dict[str, Any]) -> list[tuple[str, str]]:
    """The request's turns, either protocol, as (kind, text): user, assistant, tool."""
    turns: list[tuple[str, str]] = []
    for message in body.get("messages", []):
        role, content = message["role"], message.get("content")
        if role == "tool":
            turns.append(("tool", content))
        elif isinstance(content, str):
            turns.append((role, content))
        elif isinstance(content, list):
            for block in content:
                if block.get("type") == "tool_result":
                    turns.append(("tool", str(block.get("content"))))
                elif block.get("type") == "text":
                    turns.append((role, block["text"]))
                elif block.get("type") == "tool_use":
                    turns.append(("assistant", json.dumps(block["input"])))
        elif role == "assistant":
            turns.append(("assistant", json.dumps(message.get("tool_calls"))))
    return turns


class ChatServer:
    """Answers each POST with the next scripted (status, body); records every request."""

    def __init__(self, policy: Callable[[str, dict[str, Any]], dict[str, Any]] | None = None
                 ) -> None:
        self.script: deque[tuple[int, dict[str, Any]]] = deque()
        self.policy = policy
        self.requests: list[dict[str, Any]] = []
        self.paths: list[str] = []
        self.headers: list[dict[str, str]] = []
        self.lock = threading.Lock()
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server's naming
                length = int(self.headers.get("content-length", 0))
                body = json.loads(self.rfile.read(length))
                with server.lock:
                    server.requests.append(body)
                    server.paths.append(self.path)
                    server.headers.append({k.lower(): v for k, v in self.headers.items()})
                    status, reply = server._next(self.path, body)
                data = json.dumps(reply).encode()
                self.send_response(status)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(data)))
                if status == 429:
                    self.send_header("retry-after-ms", "10")
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args: object) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def _next(self, path: str, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        if self.script:
            return self.script.popleft()
        if self.policy is not None:
            return 200, self.policy(path, body)
        return 500, {"type": "error", "error": {"message": "script exhausted",
                                                "type": "api_error"}}

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"

    @property
    def anthropic_url(self) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}"

    def reply(self, body: dict[str, Any], status: int = 200) -> None:
        self.script.append((status, body))

    def error(self, status: int, message: str = "try later") -> None:
        kind = {429: "rate_limit_error", 529: "overloaded_error"}.get(status, "api_error")
        self.script.append((status, {"type": "error",
                                     "error": {"message": message, "type": kind}}))

    def __enter__(self) -> ChatServer:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
