"""The ``report`` command: the log as one self-contained HTML page (``betty-otel[report]``)."""

from __future__ import annotations

import argparse

from betty_otel._report import report
from betty_otel.cli.logfile import log_file
from betty_otel.cli.progress import Progress
from betty_otel.cli.read import filters_from
from betty_otel.cli.terminal import err

__all__ = ["cmd_report"]


def cmd_report(args: argparse.Namespace) -> int:
    filters = filters_from(args)
    path = log_file(args.file, must_exist=True)
    progress = Progress.on_terminal()
    try:
        written = report(
            path,
            args.output,
            filters=filters,
            progress=None if progress is None else progress.bytes_read,
        )
    except ImportError as exc:
        err(f"Error: {exc}")
        return 1
    finally:
        if progress is not None:
            progress.clear()
    err(f"Wrote {written}")
    return 0
