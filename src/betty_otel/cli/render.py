"""What the commands print: aligned tables of short cells, JSON and JSON lines.

Cells are single lines with their control characters escaped (`text`); everything
is printed through `betty_otel.cli.terminal`, which escapes what is left.
"""

from __future__ import annotations

import sys
from collections.abc import Iterable, Sequence
from datetime import timezone
from typing import Any, Final

import orjson

from betty_otel._entry import canonical_status, entry_error, entry_time, value_text
from betty_otel.cli.terminal import escape_controls, out

__all__ = [
    "MAX_WIDTH",
    "clip",
    "default_format",
    "dumps",
    "entry_cells",
    "error_cell",
    "number_cell",
    "print_entries",
    "status_cell",
    "table",
    "text",
]

MAX_WIDTH: Final = {"skill": 40, "caller": 28, "error": 60, "status": 20}
"""The widest a table cell of these columns gets before it is clipped."""

_ENTRY_HEADERS: Final = ["time (UTC)", "skill", "status", "duration_ms", "caller", "error"]
_ENTRY_RIGHT: Final = frozenset({3})


def dumps(value: Any, *, indent: bool = False) -> str:
    """JSON text of what a command prints (non-string keys and odd values as text)."""
    option = orjson.OPT_INDENT_2 if indent else 0
    return orjson.dumps(value, option=option | orjson.OPT_NON_STR_KEYS, default=str).decode()


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
    moment = entry_time(value)
    if moment is None:
        return text(value)
    return moment.astimezone(timezone.utc).strftime("%Y-%m-%d %H:%M:%S")


def number_cell(value: object, digits: int = 1) -> str:
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return f"{value:,.{digits}f}"
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
