"""The reading commands: ``query``, ``stats``, ``trace`` and ``tail``.

They read the log through `betty_otel.query` and never write or lock it.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any, Final

from betty_otel._entry import entry_signature
from betty_otel.cli.commandline import PROG, UsageError
from betty_otel.cli.logfile import log_exists, log_file
from betty_otel.cli.render import (
    MAX_WIDTH,
    clip,
    default_format,
    dumps,
    entry_cells,
    entry_notes,
    error_cell,
    number_cell,
    print_entries,
    print_notes,
    status_cell,
    table,
    text,
)
from betty_otel.cli.running import unseen_pending, with_pending
from betty_otel.cli.terminal import err, out
from betty_otel.query import (
    Filters,
    GroupStats,
    TraceNode,
    iter_query,
    make_filters,
    openmetrics,
    query,
    stats,
    trace,
)
from betty_otel.query.trace import INDENT_LEVELS, depth_mark

__all__ = ["cmd_query", "cmd_stats", "cmd_tail", "cmd_trace", "filters_from"]


def filters_from(args: argparse.Namespace) -> Filters:
    """The Filters of the filter options (--skill, --status, ... --min-duration)."""
    return make_filters(
        skill=args.skill,
        status=args.status,
        caller=args.caller,
        trace_id=args.trace_id,
        since=args.since,
        until=args.until,
        min_duration_ms=args.min_duration,
        ignore_case=args.ignore_case,
    )


# ---------------------------------------------------------------------------
# query, stats, trace
# ---------------------------------------------------------------------------


def cmd_query(args: argparse.Namespace) -> int:
    fmt = default_format(args.format, "table", "json")
    filters = filters_from(args)
    path = log_file(args.file, must_exist=True)
    found = query(path, filters=filters, limit=args.limit)
    print_entries(with_pending(found, path, filters, args.limit), fmt)  # and those in flight
    print_notes(entry_notes(found))
    return 0


def _stats_rows(groups: Iterable[GroupStats], by: str) -> list[list[str]]:
    key_cell = status_cell if by == "status" else text
    return [
        [
            clip(key_cell(group.key), MAX_WIDTH["skill"]),
            f"{group.count:,}",
            f"{group.failures:,}",
            f"{group.failure_rate * 100:.1f}%",
            number_cell(group.p50),
            number_cell(group.p95),
            number_cell(group.p99),
            number_cell(group.max),
            number_cell(group.mean),
            ", ".join(
                f"{status_cell(name)} {count:,}" for name, count in group.original_statuses.items()
            ),
        ]
        for group in groups
    ]


def cmd_stats(args: argparse.Namespace) -> int:
    filters = filters_from(args)
    if args.format == "openmetrics":
        text = openmetrics(log_file(args.file, must_exist=True), filters=filters)
        out(text.removesuffix("\n"))
        return 0
    result = stats(log_file(args.file, must_exist=True), by=args.by, filters=filters)
    fmt = default_format(args.format, "table", "json")
    print_notes(_stats_notes(result.values()))
    if fmt == "json":
        out(dumps([dataclasses.asdict(group) for group in result.values()], indent=True))
        return 0
    if not result:
        out("No entries.")
        return 0
    headers = [args.by, "count", "failures", "fail rate", "p50 ms", "p95 ms", "p99 ms"]
    headers += ["max ms", "mean ms", "statuses"]
    out(table(headers, _stats_rows(result.values(), args.by), range(1, 9)))
    total = sum(group.count for group in result.values())
    out(f"\n{total:,} entries in {len(result):,} groups (percentiles: linear interpolation)")
    return 0


def _stats_notes(groups: Iterable[GroupStats]) -> list[str]:
    """What stats made of durations that are no numbers."""
    without = sum(group.count - group.durations for group in groups)
    if not without:
        return []
    which = "entry has" if without == 1 else "entries have"
    return [f"{without:,} {which} no duration_ms that is a number: counted, no duration figures"]


def _last_first(nodes: list[TraceNode]) -> Iterator[tuple[TraceNode, bool]]:
    """(node, is the last of nodes), the last first: pushed on a stack, they pop in order."""
    for index in range(len(nodes) - 1, -1, -1):
        yield nodes[index], index == len(nodes) - 1


def _tree_lines(roots: list[TraceNode]) -> Iterator[str]:
    """Each root, then its descendants drawn as a tree (iteratively: chains can be long).

    From depth INDENT_LEVELS on, lines stay at that indentation and say their depth.
    """
    for root in roots:
        yield _node_text(root)
        stack = [(child, 1, last, "") for child, last in _last_first(root.children)]
        while stack:
            node, depth, last, prefix = stack.pop()
            yield f"{prefix}{'└── ' if last else '├── '}{depth_mark(depth)}{_node_text(node)}"
            inner = prefix if depth >= INDENT_LEVELS else prefix + ("    " if last else "│   ")
            stack.extend(
                (child, depth + 1, end, inner) for child, end in _last_first(node.children)
            )


def _json_lines(roots: list[TraceNode]) -> Iterator[str]:
    """The trees as the JSON of ``[{"entry", "note"?, "children"}]``, piece by piece.

    Laid out as ``dumps(..., indent=True)`` lays it out, except that levels past
    INDENT_LEVELS are indented no further: linear in size, and built without
    recursion, whatever the depth.
    """
    yield "["
    stack: list[tuple[TraceNode | None, int, bool]] = [
        (root, 0, last) for root, last in _last_first(roots)
    ]
    while stack:
        node, depth, last = stack.pop()
        pad = "  " * (1 + 2 * min(depth, INDENT_LEVELS))
        comma = "" if last else ","
        if node is None:  # the end of a node whose children were written
            yield f"{pad}  ]\n{pad}}}{comma}"
            continue
        entry = dumps(node.entry, indent=True).replace("\n", f"\n{pad}  ")
        note = "" if node.note is None else f'\n{pad}  "note": {dumps(node.note)},'
        if not node.children:
            yield f'{pad}{{\n{pad}  "entry": {entry},{note}\n{pad}  "children": []\n{pad}}}{comma}'
            continue
        yield f'{pad}{{\n{pad}  "entry": {entry},{note}\n{pad}  "children": ['
        stack.append((None, depth, last))
        stack.extend((child, depth + 1, end) for child, end in _last_first(node.children))
    yield "]"


def _jsonl_lines(roots: list[TraceNode]) -> Iterator[str]:
    """One JSON object a line, depth first: ``{"depth", "entry", "note"?}``; any parser reads it."""
    for root in roots:
        for depth, node in root.walk():
            item: dict[str, Any] = {"depth": depth, "entry": node.entry}
            if node.note is not None:
                item["note"] = node.note
            yield dumps(item)


def _node_text(node: TraceNode) -> str:
    entry = node.entry
    parts = [
        text(entry.get("skill")),
        status_cell(entry.get("status")),
        f"{number_cell(entry.get('duration_ms'))} ms",
        f"caller={text(entry.get('caller'))}",
        f"span={text(entry.get('span_id'))}",
    ]
    if entry.get("execution_id") is not None:
        parts.append(f"execution={text(entry.get('execution_id'))}")
    error = error_cell(entry)
    if error:
        parts.append(f"error={clip(error, MAX_WIDTH['error'])}")
    if node.note is not None:
        parts.append(f"[{text(node.note)}]")
    return "  ".join(parts)


_TRACE_LINES: Final = {"tree": _tree_lines, "json": _json_lines, "jsonl": _jsonl_lines}
_PRINT_CHUNK: Final = 1 << 16
"""Characters of output gathered before they are written: one write per line would cost
more than making the lines of a large trace."""


def cmd_trace(args: argparse.Namespace) -> int:
    path = log_file(args.file, must_exist=False)  # a directory or FIFO is said first
    try:
        roots = trace(path, trace_id=args.trace_id)
    except (TypeError, ValueError) as exc:  # the trace id: trace() says what is wrong
        raise UsageError(str(exc)) from None
    if not roots:
        log_file(args.file, must_exist=True)  # a missing log is an error, not "no entries"
        err(f"Error: no entries with trace id {args.trace_id} in {path}")
        return 1
    print_notes(entry_notes(node.entry for root in roots for _, node in root.walk()))
    pending: list[str] = []
    size = 0
    for piece in _TRACE_LINES[args.format](roots):
        pending.append(piece)
        size += len(piece)
        if size >= _PRINT_CHUNK:
            out("\n".join(pending))
            pending, size = [], 0
    if pending:
        out("\n".join(pending))
    return 0


# ---------------------------------------------------------------------------
# tail
# ---------------------------------------------------------------------------

_TAIL_SCAN: Final = 100_000
"""At most this many entries are read back per poll to find where we left off."""


def _newer_than(path: Path, marker: bytes | None) -> tuple[list[dict[str, Any]], bool]:
    """Entries recorded after marker, oldest first, and whether marker was found.

    Reads back from the end (rotated backups included) until it meets the marker;
    without one, every entry is new. At most _TAIL_SCAN entries are read.
    """
    found: list[dict[str, Any]] = []
    for entry in iter_query(path):
        if marker is not None and entry_signature(entry) == marker:
            found.reverse()
            return found, True
        found.append(entry)
        if len(found) >= _TAIL_SCAN:
            break
    found.reverse()
    return found, marker is None


def _file_state(path: Path) -> tuple[int, int, int, int] | None:
    try:
        info = path.stat()
    except FileNotFoundError:
        return None
    return (info.st_dev, info.st_ino, info.st_size, info.st_mtime_ns)


def _tail_row(entry: dict[str, Any]) -> str:
    """An entry as one table row of fixed widths (a stream has no table to align to)."""
    cells = entry_cells(entry)
    widths = (19, 28, 8, 12, 18)
    row = "  ".join(
        cell.rjust(width) if index == 3 else cell.ljust(width)
        for index, (cell, width) in enumerate(zip(cells, widths, strict=False))
    )
    return f"{row}  {cells[5]}".rstrip()


def _follow(args: argparse.Namespace, path: Path, show: Callable[[dict[str, Any]], None]) -> None:
    """Print the newest entries, then (-f) new ones as they come, until Ctrl-C."""
    state = _file_state(path)
    newest = query(path, limit=max(args.lines, 1))
    for entry in reversed(newest[: args.lines]):
        show(entry)
    shown: set[str] = set()  # the executions in flight shown so far, as pending entries
    for entry in unseen_pending(path, shown)[-args.lines :] if args.lines else []:
        show(entry)
    sys.stdout.flush()
    print_notes(entry_notes(newest[: args.lines]))
    marker = entry_signature(newest[0]) if newest else None
    if args.follow:
        absent = "" if log_exists(path) else ", which does not exist yet"
        err(f"{PROG}: following {path}{absent} (Ctrl-C to stop)")
    while args.follow:
        time.sleep(args.interval)
        for entry in unseen_pending(path, shown):
            show(entry)
        current = _file_state(path)
        if current == state:
            sys.stdout.flush()
            continue
        state = current
        entries, found = _newer_than(path, marker)
        if not found:
            err(f"{PROG}: {path} was replaced; showing its newest entries")
            entries = entries[-args.lines :] if args.lines else []
        for entry in entries:
            show(entry)
        if entries:
            marker = entry_signature(entries[-1])
        sys.stdout.flush()
        print_notes(entry_notes(entries))


def cmd_tail(args: argparse.Namespace) -> int:
    path = log_file(args.file, must_exist=not args.follow)
    fmt = default_format(args.format, "table", "jsonl")

    def show(entry: dict[str, Any]) -> None:
        out(_tail_row(entry) if fmt == "table" else dumps(entry))

    try:
        _follow(args, path, show)
    except KeyboardInterrupt:
        # Ctrl-C is how one stops following: a clean exit, not an error.
        sys.stdout.flush()
    return 0
