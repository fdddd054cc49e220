"""`ratchet mcp` driven by the `mcp` SDK's own client over stdio: the agent drives, ratchet
evaluates, decides and records."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Callable
from pathlib import Path

from mcp import ClientSession, StdioServerParameters
from mcp.client.stdio import stdio_client

import ratchet

GREEDY = ('rule = "noise-aware"\nbaseline_runs = 3', 'rule = "greedy"\nbaseline_runs = 1')


def set_x(repo: Path, value: str) -> None:
    path = repo / "objective.py"
    lines = [f"X = {value}" if line.startswith("X = ") else line
             for line in path.read_text().splitlines()]
    path.write_text("\n".join(lines) + "\n")


async def drive(repo: Path) -> list[str]:
    params = StdioServerParameters(command=sys.executable,
                                   args=["-m", "ratchet", "mcp", "--repo", str(repo)])
    texts = []
    async with stdio_client(params) as (read, write), ClientSession(read, write) as session:
        await session.initialize()
        tools = {t.name for t in (await session.list_tools()).tools}
        assert {"evaluate", "history", "best"} <= tools
        set_x(repo, "1.0")
        for args in ({"description": "X to 1.0"}, None, {"description": "X to -2.5"}):
            if args is None:  # the agent makes its next change
                set_x(repo, "-2.5")
                continue
            result = await session.call_tool("evaluate", args)
            texts.append(result.content[0].text)
        for name in ("history", "best"):
            texts.append((await session.call_tool(name, {})).content[0].text)
    return texts


def test_an_mcp_client_evaluates_two_changes(make_repo: Callable[..., Path]) -> None:
    repo = make_repo("quadratic", replace={"ratchet.toml": GREEDY})
    first, second, history, best = asyncio.run(asyncio.wait_for(drive(repo), 120))
    assert first.startswith("experiment 1: keep")
    assert second.startswith("experiment 2: discard") and "not kept" in second
    assert "#1 keep" in history and "#2 discard" in history
    assert "experiment 1" in best and "+X = 1.0" in best
    study = ratchet.open_study(repo, "mcp")
    assert [e.kind for e in study.experiments()] == ["baseline", "try", "try"]
    assert study.record.proposer == "external"
