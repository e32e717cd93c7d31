"""Stats read with a helper process (`betty_otel.query.parallel`) equal a read by one process.

The helper is forced on small files with ``BETTY_OTEL_STATS_PARALLEL_BYTES=0`` (32
parts, so split points land on every kind of line), forked or spawned. A small file is read by this
process long before a helper has started, so `Helper.ready` is made to wait for the
helper from a given part on (a slow parent): the helper's parts are then really used.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from betty_otel.query import stats
from betty_otel.query.parallel import ENV_MIN_BYTES, ENV_PARALLEL, Helper, split_points
from betty_otel.query.proof import Proof
from betty_otel.query.summary import read_summary, summary_path
from betty_otel.query.tally import decode_part
from helpers import BOM, append_entries, canonical, indent2, make_entry

READY = Helper.ready


def patient_from(monkeypatch: pytest.MonkeyPatch, first: int, used: list[int]) -> None:
    """Make the parent wait for the helper from part first on; count the parts decoded."""

    def ready(self: Helper, index: int) -> bool:
        deadline = time.monotonic() + 60  # a bound that only catches a hang, not a speed
        while index >= first and not READY(self, index) and time.monotonic() < deadline:
            time.sleep(0.005)
        return READY(self, index)

    def decode(data: bytes) -> Any:
        used.append(1)
        return decode_part(data)

    monkeypatch.setattr(Helper, "ready", ready)
    monkeypatch.setattr("betty_otel.query.tally.decode_part", decode)


def read(path: Path, monkeypatch: pytest.MonkeyPatch, caplog: Any, **kwargs: Any) -> Any:
    """Stats from no summary: the result, the summary written, the damage warnings."""
    summary_path(path).unlink(missing_ok=True)
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="betty_otel"):
        result = stats(path, **kwargs)
    warnings = [record.getMessage() for record in caplog.records]
    return result, summary_figures(path), warnings


def summary_figures(path: Path) -> list[Any] | None:
    """What the summary says, each record checked to prove the bytes of the file it
    describes (its seed is random, and a read in parts hashes each part apart: the
    digests themselves differ from one read to another)."""
    if not summary_path(path).exists():
        return None
    records = read_summary(path)
    with path.open("rb") as handle:
        for record in records:
            with Proof(handle.fileno(), record) as proof:
                assert proof.holds()
    return [
        (r.dev, r.ino, r.by, r.end, r.plain, r.damage, {
            key: (g.count, g.statuses, list(g.durations), g.total) for key, g in r.groups.items()
        })
        for r in records
    ]  # fmt: skip


def both(
    path: Path, monkeypatch: pytest.MonkeyPatch, caplog: Any, method: str, **kwargs: Any
) -> Any:
    """(one process, with a helper started by method: fork or spawn): each a `read`."""
    monkeypatch.setenv(ENV_PARALLEL, "0")
    alone = read(path, monkeypatch, caplog, **kwargs)
    monkeypatch.setenv(ENV_PARALLEL, method)
    monkeypatch.setenv(ENV_MIN_BYTES, "0")
    return alone, read(path, monkeypatch, caplog, **kwargs)


def entry(number: int) -> dict[str, Any]:
    """Entries that take every path of the reader: escapes, odd durations, odd keys."""
    return make_entry(
        number,
        skill=["a", "b", "caf\u00e9", 'q"uote', "tab\\t", 7][number % 6],
        status=["success", "failure", "failed", "timeout", "Success"][number % 5],
        caller=["CLI", "API", None][number % 3],
        duration_ms=number
        if number % 3 == 0
        else [1.5, 3, 0.25, 1e6, None, "7", True, -0.0][number % 8],
    )


def layout(kind: str, count: int) -> bytes:
    """A file of count entries: canonical, CRLF, a BOM, or the old tools' layout then appends."""
    entries = [entry(n) for n in range(count)]
    if kind == "crlf":
        return canonical(entries).replace(b"\n", b"\r\n")
    if kind == "bom":
        return BOM + canonical(entries)
    if kind == "legacy prefix":
        return indent2(entries[: count // 3])
    return canonical(entries)


DAMAGE = [
    b"garbage line",
    b'{"timestamp":"2025-10-24T14:00:00+00:00","skill":"x",',
    b'{"timestamp":"2025-10-24T14:00:00+00:00","skill":"x","status":"success","duration_ms":1,}',
    b"  {",
    b"}",
    b"]",
    b'{"a": [1, 2',
]


def build(path: Path, kind: str, count: int, damage: list[tuple[float, bytes]], torn: int) -> None:
    """Write the file, damage inserted at fractions of its lines, then a torn tail of torn bytes."""
    path.write_bytes(layout(kind, count))
    if kind == "legacy prefix":
        append_entries(path, [entry(n) for n in range(count // 3, count)])
    lines = path.read_bytes().split(b"\n")
    for fraction, text in damage:
        lines.insert(int(len(lines) * fraction), text)
    data = b"\n".join(lines)
    if torn:
        data = data.rstrip().removesuffix(b"]") + b',\n{"timestamp":"2025-10-24T14:00:00'[:torn]
    path.write_bytes(data)


@settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck))
@given(
    kind=st.sampled_from(["canonical", "crlf", "bom", "legacy prefix"]),
    count=st.integers(0, 150),
    damage=st.lists(st.tuples(st.floats(0, 1), st.sampled_from(DAMAGE)), max_size=3),
    torn=st.sampled_from([0, 0, 5, 30]),
    first=st.integers(1, 32),
    by=st.sampled_from(["skill", "caller", "status"]),
    method=st.sampled_from(["fork", "spawn"]),
)
def test_a_read_with_the_helper_equals_a_read_by_one_process(
    tmp_path_factory: pytest.TempPathFactory,
    monkeypatch: pytest.MonkeyPatch,
    caplog: Any,
    kind: str,
    count: int,
    damage: list[tuple[float, bytes]],
    torn: int,
    first: int,
    by: str,
    method: str,
) -> None:
    """Any layout, damage anywhere (either side of a split), a torn tail, the helper taking
    over at any part: the same figures, damage warnings and summary as one process, the
    summary's digests proving the file."""
    with monkeypatch.context() as patch:
        path = tmp_path_factory.mktemp("parallel") / "telemetry.json"
        build(path, kind, count, damage, torn)
        patient_from(patch, first, [])
        alone, helped = both(path, patch, caplog, method, by=by)
        assert helped == alone


@pytest.mark.parametrize("method", ["fork", "spawn"])
@pytest.mark.parametrize("first", [1, 16, 31])
def test_the_helpers_parts_are_used_and_equal_one_process(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: Any, first: int, method: str
) -> None:
    """On a canonical file (32 parts) the helper's parts from part first on are taken,
    whether it was forked or spawned (a new interpreter): the same result."""
    path = tmp_path / "telemetry.json"
    path.write_bytes(canonical([entry(n) for n in range(400)]))
    used: list[int] = []
    patient_from(monkeypatch, first, used)
    alone, helped = both(path, monkeypatch, caplog, method, by="skill")
    assert helped == alone
    assert len(used) >= 32 - first


@pytest.mark.parametrize(
    "filters",
    [
        {"since": "2025-10-24T14:01:00+00:00"},
        {"min_duration_ms": 2},
        {"caller": "API"},
        {"skill": "b", "ignore_case": True},
        {"status": "failure", "until": "2025-10-24T14:03:00+00:00"},
    ],
)
def test_filtered_reads_with_the_helper_equal_one_process(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: Any, filters: dict[str, Any]
) -> None:
    """Filters go to the helper (pickled to a new interpreter): the same figures."""
    path = tmp_path / "telemetry.json"
    build(path, "legacy prefix", 300, [(0.7, DAMAGE[0])], 0)
    patient_from(monkeypatch, 1, [])
    alone, helped = both(path, monkeypatch, caplog, "spawn", by="caller", **filters)
    assert helped == alone


def test_split_points_start_whole_entry_lines(tmp_path: Path) -> None:
    """Every split point but the ends starts a whole canonical entry line; they increase."""
    path = tmp_path / "telemetry.json"
    build(path, "legacy prefix", 200, [(0.5, DAMAGE[1]), (0.8, DAMAGE[3])], 0)
    data = path.read_bytes()
    with path.open("rb") as handle:
        points = split_points(handle.fileno(), len(data), 64)
    assert points[0] == 0
    assert points[-1] == len(data)
    assert points == sorted(set(points))
    for point in points[1:-1]:
        assert data[point - 1 : point] == b"\n"
        line = data[point : data.index(b"\n", point)].rstrip(b"\r")
        assert line.startswith(b"{")
        assert line.endswith((b"}", b"},"))
