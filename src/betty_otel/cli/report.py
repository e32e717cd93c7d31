"""The ``report`` command: the log as one self-contained HTML page (``betty-otel[report]``)."""

from __future__ import annotations

import argparse
import sys
import time

from betty_otel._report import report
from betty_otel.cli.logfile import log_file
from betty_otel.cli.read import filters_from
from betty_otel.cli.terminal import err

__all__ = ["cmd_report"]

_EVERY_SECONDS = 0.2


class _Progress:
    """Bytes read so far, rewritten in place on stderr (only when stderr is a terminal)."""

    def __init__(self) -> None:
        self.shown = 0.0

    def __call__(self, done: int, total: int) -> None:
        now = time.monotonic()
        if now - self.shown < _EVERY_SECONDS and done < total:
            return
        self.shown = now
        percent = done * 100 // total if total else 100
        sys.stderr.write(
            f"\rreading the log: {percent:3d}% ({done / 1e6:,.0f} of {total / 1e6:,.0f} MB)"
        )
        sys.stderr.flush()

    def clear(self) -> None:
        if self.shown:
            sys.stderr.write("\r\x1b[K")
            sys.stderr.flush()


def cmd_report(args: argparse.Namespace) -> int:
    progress = _Progress() if sys.stderr.isatty() else None
    try:
        written = report(
            log_file(args.file), args.output, filters=filters_from(args), progress=progress
        )
    except ImportError as exc:
        err(f"Error: {exc}")
        return 1
    finally:
        if progress is not None:
            progress.clear()
    err(f"Wrote {written}")
    return 0
