"""Intermediate values: how a task says how its metric is doing while it runs.

A line `ratchet-step: <step> <metric>: <value>` on the command's output, for example

    ratchet-step: 200 val_loss: 3.21

says the metric stood at 3.21 after step 200 (any increasing count: iterations, tokens, a
percentage of the budget). Python tasks can call `report(step, value, name)`. These values
come from the code under test, so ratchet uses them only to stop a run early (ratchet.pruning),
never to keep one: the final, protected metric alone decides.
"""

from __future__ import annotations

import math
import re

LINE = re.compile(r"^ratchet-step:\s*(?P<step>\d{1,12})\s+(?P<name>[\w./-]+):\s*(?P<value>\S+)\s*$")
MAX_STEPS = 10_000  # per run: a flood of lines is cut here (the curve is stored)


def report(step: int, value: float, name: str) -> None:
    """Print one intermediate value of the metric `name` (flushed, so it is seen live)."""
    print(f"ratchet-step: {int(step)} {name}: {float(value)!r}", flush=True)


def parse_line(line: str, metric: str) -> tuple[int, float] | None:
    """The step and value a line reports for `metric`; None for any other line."""
    match = LINE.match(line.strip())
    if match is None or match.group("name") != metric:
        return None
    try:
        value = float(match.group("value"))
    except ValueError:
        return None
    return (int(match.group("step")), value) if math.isfinite(value) else None


class Curve:
    """The values a run reported, by step. A step reported twice keeps its worse value, so
    a second, better line for a step cannot hide the first."""

    def __init__(self, minimize: bool) -> None:
        self.minimize = minimize
        self.values: dict[int, float] = {}

    def add(self, step: int, value: float) -> bool:
        """Record a value; whether the curve changed."""
        old = self.values.get(step)
        if old is None and len(self.values) >= MAX_STEPS:
            return False
        worse = value if old is None else (max(old, value) if self.minimize else min(old, value))
        if worse == old:
            return False
        self.values[step] = worse
        return True

    def add_text(self, text: str, metric: str) -> None:
        for line in text.splitlines():
            found = parse_line(line, metric)
            if found:
                self.add(*found)

    def pairs(self) -> list[list[float]]:
        return [[step, value] for step, value in sorted(self.values.items())]
