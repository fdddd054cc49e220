"""Text from a run or a proposer, made safe to print on a terminal.

Descriptions, reasons, log lines and diffs come from code ratchet does not trust: a proposer
(an LLM, a coding agent) or the program it edited. Printed raw, a control character in them
could drive the user's terminal (ESC and 8-bit CSI sequences clear the screen, move the cursor,
retitle the window or write the clipboard with OSC 52; a carriage return overwrites a line)
and a bidi override reorders what the reader sees. `printable` writes each such character as
visible text (`\\x1b`, `\\u202e`) and leaves everything else, accents, CJK and emoji included,
as it is. Every command calls it where it prints such a text.
"""

from __future__ import annotations

import re

# C0 and C1 control characters and DEL (Unicode category Cc), the bidi controls (embeddings,
# overrides, isolates and marks: the "Trojan Source" characters), the line and paragraph
# separators, and lone surrogates (undecodable bytes read with errors="surrogateescape").
_UNSAFE = re.compile("[\x00-\x1f\x7f-\x9f\u061c\u200e\u200f\u2028-\u202e\u2066-\u2069"
                     "\ud800-\udfff]")
_SHORT = {"\t": "\\t", "\n": "\\n", "\r": "\\r"}


def _escaped(match: re.Match[str]) -> str:
    char = match.group()
    if char in _SHORT:
        return _SHORT[char]
    code = ord(char)
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def printable(text: str, multiline: bool = False) -> str:
    """`text` with every control, bidi and separator character written as an escape; with
    `multiline`, newlines and tabs stay as they are (a diff, a log), all else is escaped."""
    if not multiline:
        return _UNSAFE.sub(_escaped, text)
    return _UNSAFE.sub(lambda m: m.group() if m.group() in "\n\t" else _escaped(m), text)
