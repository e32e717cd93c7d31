"""The report's section on executions in flight and on those recorded as abandoned.

In flight: the records beside the log (`betty_otel.query.running`) that the report's
filters select, with their state. Abandoned: the entries reapers wrote for executions
whose process died, found while the log is read for the report
(`betty_otel._report.ingest`: only the lines that hold ``"abandoned":true`` are
parsed), newest first (by time, as the failures).
"""

from __future__ import annotations

from pathlib import Path

from betty_otel._inflight.view import pending_entries
from betty_otel._report.collect import ReportCounts
from betty_otel._report.page import ENTRY_HEADERS, ENTRY_KINDS, Section, entry_rows, esc, table
from betty_otel.query import Filters

__all__ = ["inflight_section"]

_HEADERS = ("state", "skill", "started", "last seen", "pid", "host", "caller", "trace id")
_KINDS = ("", "text", "num", "num", "num", "text", "text", "text")


def inflight_section(log: Path, filters: Filters, counts: ReportCounts) -> Section:
    """The section: what is in flight now, and what the read of the log (counts) found
    abandoned."""
    flying = [entry for entry in pending_entries(log) if filters.matches(entry)]
    rows = [
        [
            esc(entry["state"]),
            esc(entry["skill"]),
            esc(entry["started"]),
            esc(entry["last_seen"]),
            esc(entry["pid"]),
            esc(entry["host"]),
            esc(entry["caller"]),
            esc(entry["trace_id"]),
        ]
        for entry in flying
    ]
    inner = (
        table(list(_HEADERS), rows, list(_KINDS))
        if rows
        else '<p class="note">Nothing selected is in flight.</p>'
    )
    inner += f"<h3>Abandoned: {counts.abandoned:,} execution(s) whose process died</h3>"
    if counts.abandoned:
        rows = entry_rows(counts.newest_abandoned())
        inner += table(list(ENTRY_HEADERS), rows, list(ENTRY_KINDS))
    inner += (
        '<p class="note">An execution that runs longer than <code>inflight_after</code> '
        "(1 s by default) has a record beside the log while it runs: running (its process "
        "is alive), abandoned (its process died: <code>betty-telemetry repair</code> or the "
        "next writer records it) or unknown (another host). An abandoned execution is "
        "recorded once, as an <code>error</code> entry whose message starts with "
        "<code>abandoned:</code>; its duration runs to its last sign of life.</p>"
    )
    return ("inflight", "In flight and abandoned", inner)
