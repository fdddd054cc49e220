"""Which printed number is the metric, and in which direction it improves.

Names come from a script's print calls (`print(f"val_bpb: {x}")`, or mid-line as nanoGPT's
`print(f"step {i}: train loss {a:.4f}, val loss {b:.4f}")`) or from lines a run really printed.
A direction word counts only as a whole word of the name: `val_loss`, `val loss`, `top1_acc`
have one; `Overriding` ("err"), `window` ("win"), `bitmap` ("map") and `access` ("acc") do not.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

_LOWER_IS_BETTER = frozenset({
    "loss", "bpb", "bpc", "perplexity", "ppl", "error", "err", "mse", "rmse", "mae", "nll",
    "time", "latency", "seconds", "regret", "cost", "wer", "cer"})
_HIGHER_IS_BETTER = frozenset({
    "acc", "accuracy", "f1", "auc", "score", "reward", "precision", "recall", "bleu", "rouge",
    "map", "ndcg", "throughput", "r2", "win", "winrate", "mfu"})
_HELD_OUT = frozenset({"val", "valid", "validation", "test", "eval", "holdout", "dev"})
_WORDS = re.compile(r"[A-Z]?[a-z]+|[A-Z]+(?![a-z])|\d+")

# A metric line a script prints: print(f"val_bpb: {x}") or print("accuracy", acc).
PRINTED_AT_START = re.compile(r"""print\(\s*f?["']\s*([A-Za-z_][\w./-]*)\s*[:=]?\s*["'{ ]""")
# A name printed before a value mid-line: `val loss {x}`, `acc={a}`.
PRINTED_MID_LINE = re.compile(r"""(?<![\w{])([A-Za-z_]\w*(?: [A-Za-z_]\w*)?) ?[:=]? ?\{""")


@dataclass(frozen=True)
class Printed:
    """A number a file prints under a name: `val_loss`, read with `pattern` where the name is
    words in the middle of a line (None: the usual `name: value` at a line's start)."""

    name: str
    where: str
    pattern: str | None = None

    @property
    def goal(self) -> str:
        return goal(self.name) or "minimize"


def words(name: str) -> list[str]:
    """A name's words, lowercase: `val_loss` and `val loss` -> [val, loss], `top1Acc` ->
    [top, 1, acc]; its whole tokens as well (`top1`), so `f1` and `r2` stay words."""
    tokens = [t.lower() for t in re.split(r"[^A-Za-z0-9]+", name) if t]
    parts = [w.lower() for w in _WORDS.findall(name)]
    return list(dict.fromkeys(tokens + parts))


def goal(name: str) -> str | None:
    """minimize, maximize or None: by whole words only."""
    found = set(words(name))
    if found & _LOWER_IS_BETTER:
        return "minimize"
    if found & _HIGHER_IS_BETTER:
        return "maximize"
    return None


def held_out(name: str) -> bool:
    return bool(set(words(name)) & _HELD_OUT)


def printed_in(path: str, text: str) -> list[Printed]:
    """The metric-like names a file prints, in file order: `name: value` lines first, then
    names mid-line; only names with a direction."""
    lines = "\n".join(ln for ln in text.splitlines() if "print(" in ln)
    found = [Printed(n, path) for n in PRINTED_AT_START.findall(lines) if goal(n)]
    for name in PRINTED_MID_LINE.findall(lines):
        if goal(name) and " " in name:
            found.append(Printed(name.replace(" ", "_"), path, mid_line_pattern(name)))
        elif goal(name) and not any(p.name == name for p in found):
            found.append(Printed(name, path, mid_line_pattern(name)))
    return found


def mid_line_pattern(name: str) -> str:
    """A pattern for `val loss 2.1` (also `val loss: 2.1`, and a dict's `'eval_loss': 0.6`
    as Hugging Face's Trainer prints it) anywhere in a line."""
    words_ = name.replace("_", " ").split() if " " in name else [name]
    return (r"(?<![\w.])" + r"\s+".join(map(re.escape, words_))
            + r"""['"]?\s*[:=]?\s*(?P<value>[-+]?[0-9.]+(?:[eE][-+]?[0-9]+)?)""")


def choose(candidates: Sequence[Printed]) -> Printed | None:
    """The held-out name first (val, test, eval), else the first with a direction."""
    return next((c for c in candidates if held_out(c.name)), candidates[0] if candidates else None)


def seen_in(candidate: Printed, lines: Iterable[str]) -> bool:
    """Whether a run's output has the candidate's number, read as ratchet will read it."""
    pattern = candidate.pattern or rf"^{re.escape(candidate.name)}\s*[:=]\s*(?P<value>\S+)"
    regex = re.compile(pattern)
    for line in lines:
        match = regex.search(line)
        if match and _is_number(match.group("value")):
            return True
    return False


def from_output(printed: Mapping[str, object], lines: Sequence[str],
                where: str) -> list[Printed]:
    """Metric-like names a run printed that no print call of the code showed (a logger's or a
    library's), read as the output shows them: `name: value` at a line's start, else mid-line.
    `printed`: the names a run printed (`ratchet.knobs.outputfacts.printed_values`)."""
    found = []
    for name in printed:
        if not goal(name):
            continue
        at_start = " " not in name and seen_in(Printed(name, where), lines)
        found.append(Printed(name.replace(" ", "_"), where,
                             None if at_start else mid_line_pattern(name)))
    return found


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True
