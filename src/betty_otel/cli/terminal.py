"""Writing to the terminal: every line printed, with the characters that steer it escaped.

A log entry or an argument must not be able to clear the screen, rewrite earlier
rows, set the clipboard (OSC 52) or reorder text, so C0 and C1 controls, DEL, and
bidirectional marks, overrides and isolates are printed as their JSON escapes
(``\\u001b``, ``\\r``): JSON output stays valid JSON with the same values, and a
human sees what is there. Only the standard library: usage errors print through it.
"""

from __future__ import annotations

import re
import sys
from typing import Final

__all__ = ["err", "escape_controls", "out"]

_CONTROLS: Final = "\x00-\x09\x0b-\x1f\x7f-\x9f\u061c\u200e\u200f\u2028-\u202e\u2066-\u2069"
"""Characters a terminal acts on instead of showing, newline aside. None of them is
printable (str.isprintable), which lets plain text skip the pattern."""
_IN_LINES: Final = f"[{_CONTROLS}]"
_IN_A_LINE: Final = f"[\n{_CONTROLS}]"
"""The patterns, compiled by re (and cached) the first time text needs them: most
output never does, and a capture's start-up does not pay for compiling them."""
_SHORT: Final = {"\b": "\\b", "\t": "\\t", "\n": "\\n", "\f": "\\f", "\r": "\\r"}


def _escape(match: re.Match[str]) -> str:
    char = match.group()
    return _SHORT.get(char) or f"\\u{ord(char):04x}"


def escape_controls(value: str, *, lines: bool = False) -> str:
    """value with every terminal control as its JSON escape; newlines too unless lines."""
    if (value.replace("\n", "") if lines else value).isprintable():
        return value  # no control character (nor any other unprintable one) in it
    return re.sub(_IN_LINES if lines else _IN_A_LINE, _escape, value)


def out(line: str = "") -> None:
    """Print line (may hold several lines) on stdout, its controls escaped."""
    sys.stdout.write(escape_controls(line, lines=True) + "\n")


def err(line: str) -> None:
    """Print a message on stderr as one line, its controls escaped."""
    sys.stderr.write(escape_controls(line) + "\n")
