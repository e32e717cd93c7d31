"""What the commands print: aligned tables of short cells, JSON and JSON lines.

Cells are single lines with their control characters escaped (`text`); everything
is printed through `betty_otel.cli.terminal`, which escapes what is left. Any entry
is shown, whatever it holds: a value the schema does not promise (a timestamp that
is no time, a skill that is an object, a duration that is text) is shown as well as
it can be, and `entry_notes` says on stderr what was made of it.
"""

from __future__ import annotations

import sys
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping, Sequence
from datetime import timezone
from typing import Any, Final

from betty_otel._entry import (
    canonical_status,
    entry_error,
    has_foreign_text,
    is_finite_number,
    number_text,
    value_text,
)
from betty_otel._jsonout import json_bytes
from betty_otel._timestamps import entry_time, parse_iso_time
from betty_otel.cli.commandline import PROG
from betty_otel.cli.terminal import err, escape_controls, out

__all__ = [
    "MAX_WIDTH",
    "clip",
    "default_format",
    "dumps",
    "entry_cells",
    "entry_notes",
    "error_cell",
    "number_cell",
    "print_entries",
    "print_notes",
    "status_cell",
    "table",
    "text",
]

MAX_WIDTH: Final = {"skill": 40, "caller": 28, "error": 60, "status": 20, "time": 32}
"""The widest a table cell of these columns gets before it is clipped."""

_ENTRY_HEADERS: Final = ["time (UTC)", "skill", "status", "duration_ms", "caller", "error"]
_ENTRY_RIGHT: Final = frozenset({3})


def dumps(value: Any, *, indent: bool = False) -> str:
    """JSON text of what a command prints, whatever the entries hold (any depth)."""
    return json_bytes(value, indent=indent).decode()


def text(value: object) -> str:
    """A cell: one line, missing as ``-``, a non-string as JSON.

    Line breaks and tabs become single spaces (readable); other controls are escaped.
    """
    if value is None:
        return "-"
    cell = value_text(value)
    if "\n" in cell or "\r" in cell or "\t" in cell:
        cell = " ".join(cell.split())
    return escape_controls(cell)


def clip(cell: str, width: int) -> str:
    """cell cut to at most width characters."""
    return cell if len(cell) <= width else cell[: width - 1] + "…"


def _time_cell(value: object) -> str:
    """The time in UTC; a timestamp that is no readable time as written (see `entry_notes`)."""
    moment = entry_time(value)
    if moment is None:
        return clip(text(value), MAX_WIDTH["time"])
    return moment.astimezone(timezone.utc).isoformat(sep=" ", timespec="seconds")[:19]


def number_cell(value: object, digits: int = 1) -> str:
    """A number as `number_text`; anything else as `text`."""
    if is_finite_number(value):
        return number_text(value, digits)
    return text(value)


def status_cell(value: object) -> str:
    """The canonical status, and the word the file holds where it differs: ``failure (failed)``."""
    if isinstance(value, str) and canonical_status(value) != value:
        return text(f"{canonical_status(value)} ({value})")
    return text(value)


def error_cell(entry: dict[str, Any]) -> str:
    """The error text (old tools' ``error`` too), else a non-zero ``exit_code``; or empty."""
    error = entry_error(entry)
    if error is None:
        code = entry.get("exit_code")
        error = None if code in (None, 0) else f"exit code {value_text(code)}"
    return "" if error is None else text(error)


def entry_cells(entry: dict[str, Any]) -> list[str]:
    """An entry's table row: time, skill, status, duration, caller, error."""
    return [
        _time_cell(entry.get("timestamp")),
        clip(text(entry.get("skill")), MAX_WIDTH["skill"]),
        clip(status_cell(entry.get("status")), MAX_WIDTH["status"]),
        number_cell(entry.get("duration_ms")),
        clip(text(entry.get("caller")), MAX_WIDTH["caller"]),
        clip(error_cell(entry), MAX_WIDTH["error"]),
    ]


def table(headers: Sequence[str], rows: Sequence[Sequence[str]], right: Iterable[int]) -> str:
    """Aligned columns, two spaces apart; columns in right are right-aligned."""
    aligned = set(right)
    widths = [len(header) for header in headers]
    for row in rows:
        widths = [max(width, len(cell)) for width, cell in zip(widths, row, strict=True)]

    def line(cells: Sequence[str]) -> str:
        parts = [
            cell.rjust(width) if index in aligned else cell.ljust(width)
            for index, (cell, width) in enumerate(zip(cells, widths, strict=True))
        ]
        return "  ".join(parts).rstrip()

    rule = ["-" * width for width in widths]
    return "\n".join([line(headers), line(rule), *(line(row) for row in rows)])


def default_format(given: str | None, tty_default: str, pipe_default: str) -> str:
    """The format asked for, else one for a terminal or one for a pipe."""
    if given:
        return given
    return tty_default if sys.stdout.isatty() else pipe_default


_NOTES: Final = {
    "untimed": "without a readable timestamp (missing, not ISO 8601, or no date in UTC):"
    " time shown as written, ordered as the oldest",
    "naive": "with a timestamp without an offset: read as UTC",
    "text": "whose skill, status or caller is not text: shown as JSON",
    "duration": "whose duration_ms is not a number >= 0: shown as written",
}
"""What the output makes of each kind of value the schema does not promise."""


def _oddities(entry: Mapping[str, Any]) -> Iterator[str]:
    """The kinds of _NOTES an entry has."""
    stamp = entry.get("timestamp")
    if entry_time(stamp) is None:
        yield "untimed"
    elif (written := parse_iso_time(str(stamp))) is not None and written.tzinfo is None:
        yield "naive"  # (a readable timestamp is a string)
    if has_foreign_text(entry):
        yield "text"
    duration = entry.get("duration_ms")
    if not (is_finite_number(duration) and duration >= 0):
        yield "duration"


def entry_notes(entries: Iterable[Mapping[str, Any]]) -> list[str]:
    """One line per kind of odd value among entries, with how many: shown as well as can be."""
    counts: Counter[str] = Counter()
    for entry in entries:
        counts.update(_oddities(entry))
    return [
        f"{counts[kind]:,} {'entry' if counts[kind] == 1 else 'entries'} {note}"
        for kind, note in _NOTES.items()
        if counts[kind]
    ]


def print_notes(notes: Iterable[str]) -> None:
    """Notes on stderr, one line each, apart from the output (JSON stays JSON)."""
    for note in notes:
        err(f"{PROG}: note: {note}")


def print_entries(entries: list[dict[str, Any]], fmt: str) -> None:
    if fmt == "json":
        out(dumps(entries, indent=True))
    elif fmt == "jsonl":
        for entry in entries:
            out(dumps(entry))
    elif entries:
        rows = [entry_cells(entry) for entry in entries]
        out(table(_ENTRY_HEADERS, rows, _ENTRY_RIGHT))
    else:
        out("No entries.")
