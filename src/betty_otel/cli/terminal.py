"""Writing to the terminal: every line printed, with the characters that steer it escaped.

A log entry or an argument must not be able to clear the screen, rewrite earlier
rows, set the clipboard (OSC 52) or reorder text, so C0 and C1 controls, DEL, and
bidirectional marks, overrides and isolates are printed as their JSON escapes
(``\\u001b``, ``\\r``): JSON output stays valid JSON with the same values, and a
human sees what is there. Only the standard library: usage errors print through it.

A stream closed when the process started (Python's ``None``) shows nothing, as
``print()`` shows nothing there; a stdout whose reader went away (a broken pipe) is
pointed at /dev/null once the command notices (`quiet_stdout`). Neither is an error.
"""

from __future__ import annotations

import os
import re
import sys

TYPE_CHECKING = False  # as typing.TYPE_CHECKING: a capture does not import typing
if TYPE_CHECKING:
    from typing import Final

__all__ = ["err", "escape_controls", "open_closed_streams", "out", "quiet_stdout"]

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
    """Print line (may hold several lines) on stdout, its controls escaped; nothing when
    stdout is closed. A broken pipe raises BrokenPipeError: the command stops printing."""
    stream = sys.stdout
    if stream is not None:
        stream.write(escape_controls(line, lines=True) + "\n")


def err(line: str) -> None:
    """Print a message on stderr as one line, its controls escaped; nothing when stderr is
    closed or broken (there is nowhere else to say it)."""
    stream = sys.stderr
    if stream is None:
        return
    try:
        stream.write(escape_controls(line) + "\n")
        stream.flush()
    except (OSError, ValueError):  # a broken pipe, or a file closed under us
        pass


def open_closed_streams() -> None:
    """Make stdout and stderr, where closed when the process started (None), /dev/null:
    whatever a command prints there is dropped instead of failing."""
    for name in ("stdout", "stderr"):
        if getattr(sys, name) is None:
            # Open for the life of the process, as the stream it stands in for.
            setattr(sys, name, open(os.devnull, "w", encoding="utf-8"))  # noqa: SIM115


def quiet_stdout() -> None:
    """Point stdout at /dev/null after its reader went away (``| head``): nothing more
    fails, Python's flush at exit included."""
    stream = sys.stdout
    if stream is None:
        return
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        try:
            os.dup2(devnull, stream.fileno())
        finally:
            os.close(devnull)
    except (OSError, ValueError):  # not a file (a test's StringIO): nothing to quiet
        pass
