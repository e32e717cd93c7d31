"""Trace trees: the executions of one trace, linked by ``parent_span_id``.

Only the canonical lines that contain the trace id (or an escape) are parsed.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from betty_otel._entry import entry_time, is_number
from betty_otel._inflight.view import pending_entries
from betty_otel._store import resolve_path, telemetry_file_of
from betty_otel.query.filters import PathArg, make_filters
from betty_otel.query.scan import scan_entries

__all__ = ["TraceNode", "trace"]


@dataclass(eq=False)
class TraceNode:
    """One execution in a trace and the executions it called (children in time order)."""

    entry: dict[str, Any]
    children: list[TraceNode] = field(default_factory=list)

    @property
    def skill(self) -> Any:
        """The entry's skill (None when missing)."""
        return self.entry.get("skill")

    @property
    def status(self) -> Any:
        """The entry's status (None when missing)."""
        return self.entry.get("status")

    @property
    def duration_ms(self) -> Any:
        """The entry's duration in milliseconds (None when missing)."""
        return self.entry.get("duration_ms")

    @property
    def span_id(self) -> Any:
        """The entry's span id (None when missing)."""
        return self.entry.get("span_id")

    def walk(self, depth: int = 0) -> Iterator[tuple[int, TraceNode]]:
        """(depth, node) for this node and its descendants, depth first, in order."""
        stack: list[tuple[int, TraceNode]] = [(depth, self)]
        while stack:
            level, node = stack.pop()
            yield level, node
            stack.extend((level + 1, child) for child in reversed(node.children))


def _start_key(index: int, entry: Mapping[str, Any]) -> tuple[int, float, int]:
    """Sort key: start time (end minus duration), unreadable times last, then recording order."""
    moment = entry_time(entry.get("timestamp"))
    if moment is None:
        return (1, 0.0, index)
    duration = entry.get("duration_ms")
    start = moment.timestamp() - (float(duration) / 1000 if is_number(duration) else 0.0)
    return (0, start, index)


def trace(
    trace_id: str, telemetry_file: PathArg = None, *, path: PathArg = None
) -> list[TraceNode]:
    """The tree of executions of one trace in the log: its roots, each with its children.

    A child's ``parent_span_id`` is its parent's ``span_id``; entries whose parent
    is not in the file (or who have none) are roots. Siblings are in order of
    start time. Executions of the trace still in flight are there too, as entries
    with status ``pending`` (see `running`). Returns [] when no entry has this trace
    id. ``path`` is the deprecated name of ``telemetry_file``.
    """
    given: object = trace_id
    if not isinstance(given, str):
        msg = f"trace_id must be a string, got {type(given).__name__}"
        raise TypeError(msg)
    base = resolve_path(telemetry_file_of(telemetry_file, path))
    entries = scan_entries(base, make_filters(trace_id=trace_id))
    entries += pending_entries(base, trace_id=trace_id, known=entries)  # running parents
    order = sorted(range(len(entries)), key=lambda i: _start_key(i, entries[i]))
    nodes = [TraceNode(entries[i]) for i in order]
    by_span: dict[str, TraceNode] = {}
    for node in nodes:
        span = node.span_id
        if isinstance(span, str):
            by_span.setdefault(span, node)
    roots: list[TraceNode] = []
    parent_of: dict[int, TraceNode] = {}
    for node in nodes:
        parent_id = node.entry.get("parent_span_id")
        parent = by_span.get(parent_id) if isinstance(parent_id, str) else None
        if parent is None or parent is node:
            roots.append(node)
        else:
            parent.children.append(node)
            parent_of[id(node)] = parent
    # A cycle of parent links (damaged data) has no root: its members become roots.
    reached = {id(node) for root in roots for _, node in root.walk()}
    for node in nodes:
        if id(node) not in reached:
            siblings = parent_of[id(node)].children
            siblings[:] = [child for child in siblings if child is not node]
            roots.append(node)
            reached.update(id(item) for _, item in node.walk())
    position = {id(node): index for index, node in enumerate(nodes)}
    roots.sort(key=lambda root: position[id(root)])
    return roots
