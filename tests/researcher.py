"""A scripted "model" for the local chat server: a researcher that tunes X in objective.py.

Each episode it reads objective.py, replaces the line `X = <current>` with the next value of
its plan, leaves a note and finishes. It answers in whichever protocol the request came in.
"""

from __future__ import annotations

import re
from typing import Any

from chat_server import answer, conversation

USAGE = (1000, 50, 600)  # input (cached included), output, cached tokens per call


class Researcher:
    def __init__(self, plan: list[float], malformed_first: bool = False,
                 silent_episodes: tuple[int, ...] = (), target: str = "objective.py") -> None:
        self.plan = plan
        self.malformed_first = malformed_first
        self.silent_episodes = silent_episodes
        self.target = target
        self.episodes = 0

    def __call__(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        turns = conversation(body)
        results = [text for kind, text in turns if kind == "tool"]
        last = results[-1] if results else None
        if sum(kind == "assistant" for kind, _ in turns) == 0:
            self.episodes += 1
        if self.episodes in self.silent_episodes:
            return answer(path, "I would rather think about it.", usage=USAGE)
        x = self.plan[(self.episodes - 1) % len(self.plan)]
        if last is None:
            if self.malformed_first and self.episodes == 1:
                return answer(path, calls=[("read_file", '{"path": "objective.py"')],
                              usage=USAGE)
            return answer(path, calls=[("read_file", {"path": self.target})], usage=USAGE)
        if last.startswith("error: read_file"):
            return answer(path, calls=[("read_file", {"path": self.target})], usage=USAGE)
        current = re.search(r"^\s*\d+\s+(X = \S+)", last, re.MULTILINE)
        if current:
            return answer(path, calls=[
                ("replace", {"path": self.target, "old": current.group(1) + "\n",
                             "new": f"X = {x}\n"}),
                ("note", {"text": f"tried X={x}"})], usage=USAGE)
        return answer(path, calls=[("finish", {
            "description": f"move X to {x}", "hypothesis": "the optimum lies near x=1.5",
            "expected_effect": "lower loss"})], usage=USAGE)
