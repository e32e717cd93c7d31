"""betty_otel.query.trace: the tree of one trace's executions.

Parents and children as recorded; cycles, the legacy layout, escaped ids and large files.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import orjson
import pytest

from betty_otel import TelemetryCapture
from betty_otel.query import (
    TraceNode,
    stats,
    trace,
)

# ---------------------------------------------------------------------------
# trace
# ---------------------------------------------------------------------------
from query_helpers import entry, many, write_json, write_layout, write_store

TRACE = "ab" * 16


def span(
    name: str, span_id: str, parent: str | None, start: float, duration: float
) -> dict[str, Any]:
    end = datetime(2025, 10, 24, tzinfo=timezone.utc) + timedelta(seconds=start + duration / 1000)
    return entry(
        0,
        timestamp=end.isoformat(timespec="microseconds"),
        skill=name,
        duration_ms=duration,
        trace_id=TRACE,
        span_id=span_id,
        parent_span_id=parent,
    )


def shape(nodes: list[TraceNode]) -> list[Any]:
    return [(node.skill, shape(node.children)) for node in nodes]


def test_trace_tree(tmp_path: Path) -> None:
    """Children are recorded before their parent; siblings come out in start order."""
    root = span("workflow", "1" * 16, None, 0, 10_000)
    first = span("first", "2" * 16, "1" * 16, 1, 2_000)
    inner = span("inner", "4" * 16, "2" * 16, 1.5, 500)
    second = span("second", "3" * 16, "1" * 16, 5, 1_000)
    orphan = span("orphan", "5" * 16, "f" * 16, 20, 1)
    no_span = span("no-span", "6" * 16, None, 30, 1)
    del no_span["span_id"]
    other = entry(7, trace_id="cd" * 16, parent_span_id="1" * 16)
    entries = [inner, second, first, other, root, orphan, no_span]
    path = write_store(tmp_path / "t.json", entries)
    roots = trace(TRACE, path)
    assert shape(roots) == [
        ("workflow", [("first", [("inner", [])]), ("second", [])]),
        ("orphan", []),
        ("no-span", []),
    ]
    assert roots[0].entry == root
    assert roots[0].duration_ms == 10_000
    assert roots[0].status == "success"
    assert roots[0].span_id == "1" * 16
    assert [(depth, node.skill) for depth, node in roots[0].walk()] == [
        (0, "workflow"),
        (1, "first"),
        (2, "inner"),
        (1, "second"),
    ]
    assert trace("ef" * 16, path) == []
    assert shape(TelemetryCapture(path).trace(TRACE)) == shape(roots)


def test_trace_survives_cycles_and_legacy_layout(tmp_path: Path) -> None:
    x = span("x", "1" * 16, "2" * 16, 0, 1)
    y = span("y", "2" * 16, "1" * 16, 1, 1)
    path = write_json(tmp_path / "t.json", [x, y])
    assert shape(trace(TRACE, path)) == [("x", [("y", [])])]
    with pytest.raises(TypeError, match="trace_id"):
        trace(5, path)  # type: ignore[arg-type]


def test_trace_finds_escaped_ids(tmp_path: Path) -> None:
    """A trace id written with JSON escapes is still found (the prefilter allows for it)."""
    item = entry(1, trace_id=TRACE)
    line = orjson.dumps(item).replace(TRACE.encode(), b"\\u0061" + TRACE[1:].encode())
    assert orjson.loads(line)["trace_id"] == TRACE
    lines = [orjson.dumps(entry(i)) for i in range(5000)]
    lines[2500] = line  # in the middle of a block of canonical lines: the fast path
    path = tmp_path / "t.json"
    path.write_bytes(b"[\n" + b",\n".join(lines) + b"\n]\n")
    assert [node.entry for node in trace(TRACE, path)] == [item]


def test_trace_among_escaped_lines(tmp_path: Path) -> None:
    """Lines with escapes are parsed to be sure; several hits on one line count once."""
    entries = [
        entry(i, error_message=f"line one\nline two \\ {i}", trace_id=TRACE if i % 7 == 0 else None)
        for i in range(6000)
    ]
    entries[70]["metadata"] = {"also": TRACE, "again": TRACE}
    path = write_layout(tmp_path / "t.json", "canonical", entries)
    found = [node.entry for node in iter_nodes(trace(TRACE, path))]
    assert sorted(item["duration_ms"] for item in found) == [
        item["duration_ms"] for item in entries if item["trace_id"] == TRACE
    ]
    wanted = [item for item in entries if item["trace_id"] == TRACE and item["skill"] == "skill.0"]
    assert stats(path, trace_id=TRACE)["skill.0"].count == len(wanted)


def iter_nodes(nodes: list[TraceNode]) -> Iterator[TraceNode]:
    for node in nodes:
        for _, item in node.walk():
            yield item


def test_trace_on_a_large_file(tmp_path: Path) -> None:
    entries = many(9000)
    wanted = entries[4321]["trace_id"]
    path = write_layout(tmp_path / "t.json", "canonical", entries)
    assert [node.entry for node in iter_nodes(trace(wanted, path))] == [entries[4321]]
