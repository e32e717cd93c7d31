"""What is in flight, for readers: `running`, the pending entries of query, tail and
trace, and what ``check`` says of the record folder.

A record is shown as an entry with status ``pending``: its timestamp is the last sign of
life and its duration the time from its start to then (so its start is where it
began), followed by ``state`` (``running``, ``abandoned`` or ``unknown``, see
`betty_otel._inflight.owner`), ``pid``, ``host``, ``started`` and ``last_seen``. One
execution is shown once, whatever the phase of its record. Nothing here writes.
"""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Iterable
from pathlib import Path
from typing import Any, Final, NamedTuple

from betty_otel._entry import ENTRY_KEYS, entry_status
from betty_otel._inflight.owner import STATES, Judge
from betty_otel._inflight.records import Record, Unreadable, folder_of, read_records
from betty_otel._store import resolve_path
from betty_otel._timestamps import format_timestamp

__all__ = [
    "ABANDONED_TEXT",
    "FolderReport",
    "folder_report",
    "is_abandoned",
    "pending_entries",
    "pending_entry",
    "running",
]

ABANDONED_TEXT: Final = b'"abandoned":true'
"""What the canonical line of an abandoned entry holds (its metadata), for a quick search."""

_PHASE_ORDER = {"running": 0, "ending": 1, "reaping": 2}


def pending_entry(record: Record, state: str) -> dict[str, Any]:
    """A record as an entry with status pending, then its state, pid, host and times."""
    entry: dict[str, Any] = {key: record.entry.get(key) for key in ENTRY_KEYS}
    seen = format_timestamp(record.last_seen_ns)
    entry.update(
        timestamp=seen,
        status="pending",
        duration_ms=(record.last_seen_ns - record.start_ns) / 1_000_000,
        error_message=None,
    )
    entry.update(
        state=state,
        pid=record.owner.pid,
        host=record.owner.host,
        started=format_timestamp(record.start_ns),
        last_seen=seen,
    )
    return entry


def is_abandoned(entry: dict[str, Any]) -> bool:
    """An entry a reaper wrote for an execution whose process died (see `reaper`)."""
    metadata = entry.get("metadata")
    return (
        isinstance(metadata, dict)
        and metadata.get("abandoned") is True
        and entry_status(entry) == "error"
        and str(entry.get("error_message")).startswith("abandoned:")
    )


def _one_each(records: list[Record]) -> list[Record]:
    """One record per execution: the one furthest along (a leftover ``.tmp`` beside its
    record, a record between two phases after a crash)."""
    chosen: dict[str, Record] = {}
    for record in records:
        held = chosen.get(record.key)
        if held is None or _PHASE_ORDER[record.phase] > _PHASE_ORDER[held.phase]:
            chosen[record.key] = record
    return list(chosen.values())


def running(telemetry_file: str | os.PathLike[str] | None = None) -> list[dict[str, Any]]:
    """Every execution in flight beside the log, oldest start first (see the module docstring).

    ``telemetry_file`` is the log (default: as everywhere, `betty_otel._store.resolve_path`);
    its records are in ``<log>.inflight/``. A record that cannot be read is left out
    (``betty-telemetry check`` names it).

    Raises:
        OSError: the record folder cannot be read (a file or a link stands in its place).
    """
    records, _ = read_records(folder_of(resolve_path(telemetry_file)))
    judge = Judge()
    found = [pending_entry(record, judge(record.owner).state) for record in _one_each(records)]
    found.sort(key=lambda entry: (entry["started"], entry["span_id"]))
    return found


def pending_entries(
    log: Path, *, trace_id: str | None = None, known: Iterable[dict[str, Any]] = ()
) -> list[dict[str, Any]]:
    """The entries of `running` (of one trace) that known (entries of the log) does not
    hold already, as readers merge them; [] when the folder cannot be read (readers of the
    log do not fail on it: ``check`` reports it)."""
    try:
        found = running(log)
    except OSError:
        return []
    # A foreign entry's ids may be any JSON value (a list is unhashable); a pending
    # entry's are strings, so only string ids can hold one of them already.
    there = {
        (trace, span)
        for entry in known
        if isinstance(trace := entry.get("trace_id"), str)
        and isinstance(span := entry.get("span_id"), str)
    }
    return [
        entry
        for entry in found
        if (trace_id is None or entry["trace_id"] == trace_id)
        and (entry["trace_id"], entry["span_id"]) not in there
    ]


class FolderReport(NamedTuple):
    """What ``check`` says of the record folder."""

    folder: Path
    states: Counter[str]
    unreadable: list[Unreadable]
    error: str | None
    """Why the folder itself cannot be read, if it cannot."""


def folder_report(log: Path) -> FolderReport:
    """Count the records by state and list the files that are none."""
    folder = folder_of(log)
    states: Counter[str] = Counter(dict.fromkeys(STATES, 0))
    try:
        records, unreadable = read_records(folder)
    except OSError as exc:
        return FolderReport(folder, states, [], exc.strerror or str(exc))
    judge = Judge()
    states.update(judge(record.owner).state for record in _one_each(records))
    return FolderReport(folder, states, unreadable, None)
