"""Durations ("90s", "10m", "1h30m") and memory sizes ("512M", "4G") as people write them."""

from __future__ import annotations

import re

_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)")
_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
_MEMORY = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([KMGT]?)i?B?\s*$", re.IGNORECASE)
_BYTES = {"": 1, "K": 2**10, "M": 2**20, "G": 2**30, "T": 2**40}


def parse_duration(text: str | int | float) -> float:
    """Seconds in `text`: a bare number is seconds; units ms, s, m, h, d may be combined."""
    if isinstance(text, int | float) and not isinstance(text, bool):
        if text <= 0:
            raise ValueError(f"must be a positive duration, got {text}")
        return float(text)
    if not isinstance(text, str):
        raise ValueError(f"must be a duration such as '90s', '10m' or '2h', got {text!r}")
    compact = text.replace(" ", "")
    parts = _DURATION_PART.findall(compact)
    if not parts or "".join(n + u for n, u in parts) != compact:
        try:
            seconds = float(compact)
        except ValueError:
            raise ValueError(
                f"must be a duration such as '90s', '10m' or '2h', got {text!r}") from None
    else:
        seconds = sum(float(n) * _SECONDS[u] for n, u in parts)
    if seconds <= 0:
        raise ValueError(f"must be a positive duration, got {text!r}")
    return seconds


def parse_memory(text: str | int) -> int:
    """Bytes in `text`: a bare number is bytes; K, M, G, T are powers of 1024."""
    if isinstance(text, int) and not isinstance(text, bool) and text > 0:
        return text
    match = _MEMORY.match(text) if isinstance(text, str) else None
    if not match:
        raise ValueError(f"must be a memory size such as '512M' or '4G', got {text!r}")
    value = int(float(match.group(1)) * _BYTES[match.group(2).upper()])
    if value <= 0:
        raise ValueError(f"must be a positive memory size, got {text!r}")
    return value


def format_duration(seconds: float) -> str:
    if seconds < 60:
        return f"{seconds:.1f}s"
    minutes, secs = divmod(int(round(seconds)), 60)
    if minutes < 60:
        return f"{minutes}m{secs:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m"


def format_memory(size: int) -> str:
    """`size` bytes in the largest unit that keeps it at least 1 (as `parse_memory` reads)."""
    for unit in ("T", "G", "M", "K"):
        if size >= _BYTES[unit]:
            return f"{size / _BYTES[unit]:g}{unit}"
    return f"{size}"
