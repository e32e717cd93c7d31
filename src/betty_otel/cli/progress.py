"""Progress of long work (``report``, ``export``) on stderr, only when stderr is a terminal.

One status line, rewritten in place (carriage return, then erase to the end of the
line) at most every 0.2 s, and erased when the work ends: a terminal shows that
something is happening, while a pipe, a file or a CI log receives nothing at all.
"""

from __future__ import annotations

import sys
import time
from typing import Final

from betty_otel.cli.terminal import escape_controls

__all__ = ["Progress"]

_EVERY_SECONDS: Final = 0.2
_ERASE: Final = "\r\x1b[K"


class Progress:
    """A status line on stderr; build it with `Progress.on_terminal`."""

    def __init__(self) -> None:
        self.shown = 0.0

    @classmethod
    def on_terminal(cls) -> Progress | None:
        """A Progress when stderr is a terminal, else None (nothing to show)."""
        return cls() if sys.stderr.isatty() else None

    def show(self, text: str, *, last: bool = False) -> None:
        """Show text in place of the previous status (skipped if shown < 0.2 s ago, unless last)."""
        now = time.monotonic()
        if now - self.shown < _EVERY_SECONDS and not last:
            return
        self.shown = now
        sys.stderr.write(_ERASE + escape_controls(text))
        sys.stderr.flush()

    def bytes_read(self, done: int, total: int) -> None:
        """The status of reading the log: percent and megabytes of all its files."""
        percent = done * 100 // total if total else 100
        self.show(
            f"reading the log: {percent:3d}% ({done / 1e6:,.0f} of {total / 1e6:,.0f} MB)",
            last=done >= total,
        )

    def clear(self) -> None:
        """Erase the status line (when one was shown), so later messages start clean."""
        if self.shown:
            sys.stderr.write(_ERASE)
            sys.stderr.flush()
