"""``running``, and the executions in flight as the other commands show them.

``running`` lists the records beside the log (`betty_otel.query.running`; only what that
needs is imported, for a quick start); ``query``
and ``tail`` show them among the entries with status ``pending``; ``repair`` records
the abandoned ones and ``check`` counts them (see `betty_otel._inflight`).
"""

from __future__ import annotations

import argparse
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

from betty_otel._inflight.view import FolderReport, pending_entries, running
from betty_otel._timestamps import entry_time
from betty_otel.cli.commandline import PROG, UsageError
from betty_otel.cli.logfile import log_file
from betty_otel.cli.render import MAX_WIDTH, clip, default_format, dumps, table, text
from betty_otel.cli.terminal import out

if TYPE_CHECKING:
    from betty_otel._inflight.reaper import Reaped
    from betty_otel.query import Filters

__all__ = [
    "cmd_running",
    "folder_lines",
    "max_age_seconds",
    "reap_lines",
    "unseen_pending",
    "with_pending",
]

_HEADERS = ["state", "skill", "started (UTC)", "last seen (UTC)", "pid", "host", "caller", "span"]


def _time(value: object) -> str:
    moment = entry_time(value)
    return "-" if moment is None else moment.strftime("%Y-%m-%d %H:%M:%S")


def cmd_running(args: argparse.Namespace) -> int:
    found = running(log_file(args.file, must_exist=False))
    fmt = default_format(args.format, "table", "json")
    if fmt == "json":
        out(dumps(found, indent=True))
    elif fmt == "jsonl":
        for record in found:
            out(dumps(record))
    elif not found:
        out("Nothing in flight.")
    else:
        rows = [
            [
                text(record["state"]),
                clip(text(record["skill"]), MAX_WIDTH["skill"]),
                _time(record["started"]),
                _time(record["last_seen"]),
                str(record["pid"]),
                text(record["host"]),
                clip(text(record["caller"]), MAX_WIDTH["caller"]),
                text(record["span_id"]),
            ]
            for record in found
        ]
        out(table(_HEADERS, rows, [4]))
    return 0


def _newest_first(entry: dict[str, Any]) -> tuple[int, float]:
    moment = entry_time(entry.get("timestamp"))
    return (1, 0.0) if moment is None else (0, -moment.timestamp())


def with_pending(
    found: list[dict[str, Any]], path: Path, filters: Filters, limit: int | None
) -> list[dict[str, Any]]:
    """query's entries and the executions in flight that pass the filters, newest first."""
    pending = [entry for entry in pending_entries(path, known=found) if filters.matches(entry)]
    if not pending:
        return found
    merged = sorted([*pending, *found], key=_newest_first)  # stable: ties keep query's order
    return merged if limit is None else merged[:limit]


def unseen_pending(path: Path, shown: set[str]) -> list[dict[str, Any]]:
    """The executions in flight not shown yet (shown: their span ids, updated)."""
    fresh = [entry for entry in pending_entries(path) if entry["span_id"] not in shown]
    shown.update(entry["span_id"] for entry in fresh)
    return fresh


def max_age_seconds(given: str | None) -> float | None:
    """repair's --max-age in seconds (None when not given).

    Raises:
        UsageError: not a duration such as 30m, 12h or 7d.
    """
    if given is None:
        return None
    from betty_otel.query import parse_time  # noqa: PLC0415 - repair only

    now = datetime.now(timezone.utc)
    try:
        seconds = (now - parse_time(given, now=now)).total_seconds()
    except ValueError:
        seconds = -1.0
    if seconds < 0:
        msg = f"argument --max-age: expected a duration such as 30m, 12h, 7d or 1w, got {given!r}"
        raise UsageError(msg)
    return seconds


def reap_lines(reaped: Reaped) -> list[str]:
    """What repair says it did with the records beside the log."""
    lines = []
    if reaped.recorded:
        lines.append(
            f"Recorded {reaped.recorded:,} abandoned execution(s) as error entries"
            " (their process died before they ended)"
        )
    if reaped.cleared:
        lines.append(f"Removed {reaped.cleared:,} record(s) whose entry was already in the log")
    if reaped.busy:
        lines.append(f"  - {reaped.busy:,} record(s) were being recorded by another process")
    if reaped.left:
        lines.append(
            f"  - left {reaped.left:,} record(s) of executions on other hosts (state unknown);"
            " --max-age DURATION records those silent for longer"
        )
    return lines


def folder_lines(report: FolderReport, repair: str) -> tuple[list[str], list[tuple[str, str]]]:
    """check's notes on the record folder, and its problems (with what fixes each)."""
    if report.error is not None:
        problem = f"the folder of in-flight records cannot be read: {report.error}"
        fix = f"move {report.folder} aside: it must be a folder of this user's, or absent"
        return [], [(problem, fix)]
    notes = []
    states = report.states
    if sum(states.values()):
        notes.append(
            f"  note: {sum(states.values()):,} execution(s) in flight: {states['running']:,}"
            f" running, {states['abandoned']:,} abandoned, {states['unknown']:,} on other hosts"
            f" (`{PROG} running` lists them)"
        )
    if states["abandoned"]:
        notes.append(f"  note: `{repair}` records the abandoned ones (so does the next writer)")
    problems = [
        (
            f"unreadable in-flight record {item.name} in {report.folder}: {item.reason}",
            "not a record betty_otel can use: nothing reads it; look at it, then delete it",
        )
        for item in report.unreadable
    ]
    return notes, problems
