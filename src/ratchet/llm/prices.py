"""What tokens cost: a bundled table of dollars per million tokens, overridable by the task.

The table is a snapshot (see PRICES_AS_OF); providers change prices, so a task file can set
its own under `[agent.prices.<model>]`. A model missing from both is priced at zero (the
agent proposer warns once).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

PRICES_AS_OF = "2026-11"


@dataclass(frozen=True)
class Price:
    input: float  # dollars per million uncached input tokens
    output: float  # dollars per million output tokens
    cached_input: float  # dollars per million cached input tokens


@dataclass(frozen=True)
class Usage:
    input_tokens: int = 0  # all input tokens, cached ones included
    output_tokens: int = 0
    cached_tokens: int = 0

    def __add__(self, other: Usage) -> Usage:
        return Usage(self.input_tokens + other.input_tokens,
                     self.output_tokens + other.output_tokens,
                     self.cached_tokens + other.cached_tokens)


PRICES: dict[str, Price] = {
    "gpt-4.1": Price(2.00, 8.00, 0.50),
    "gpt-4.1-mini": Price(0.40, 1.60, 0.10),
    "gpt-5": Price(1.25, 10.00, 0.125),
    "gpt-5-mini": Price(0.25, 2.00, 0.025),
    "claude-opus-4-1": Price(15.00, 75.00, 1.50),
    "claude-sonnet-4-5": Price(3.00, 15.00, 0.30),
    "claude-haiku-4-5": Price(1.00, 5.00, 0.10),
}


def price_of(model: str, overrides: Mapping[str, Price] | None = None) -> Price | None:
    """The price of `model`: an override, an exact entry, or the entry its name starts with."""
    table = {**PRICES, **(overrides or {})}
    if model in table:
        return table[model]
    matches = [name for name in table if model.startswith(name)]
    return table[max(matches, key=len)] if matches else None


def cost_usd(usage: Usage, price: Price | None) -> float:
    if price is None:
        return 0.0
    uncached = max(usage.input_tokens - usage.cached_tokens, 0)
    return (uncached * price.input + usage.cached_tokens * price.cached_input
            + usage.output_tokens * price.output) / 1e6
