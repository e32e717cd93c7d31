"""betty_otel.query: filters, newest-first queries, time filters, other tools' entries.

Readers never yield a torn tail nor a partial entry while writers append. Stats and
trace trees: test_query_stats.py and test_query_trace.py.
"""

from __future__ import annotations

import json
import shutil
import threading
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import orjson
import pytest

from betty_otel._store import TelemetryStore, check_file
from betty_otel._timestamps import entry_time
from betty_otel.query import (
    ORDER_WINDOW,
    iter_query,
    make_filters,
    parse_time,
    query,
    stats,
    trace,
)
from query_helpers import ago, entry, write_json, write_store

FIXTURE = Path(__file__).resolve().parents[1].parent / "shared" / "fixtures"
LEGACY = FIXTURE / "betty-registry-telemetry.json"


def by_time(entries: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """What query returns: newest first by timestamp; ties and unreadable times (last) keep
    file order, the later written first."""

    def seconds(item: dict[str, Any]) -> float:
        moment = entry_time(item.get("timestamp"))
        return float("-inf") if moment is None else moment.timestamp()

    later_written_first = entries[::-1]  # a stable sort keeps this order for ties
    return sorted(later_written_first, key=seconds, reverse=True)


@pytest.fixture
def legacy(tmp_path: Path) -> Path:
    """A copy of the real legacy Betty telemetry file (indent=2, 225 entries)."""
    target = tmp_path / "legacy.json"
    shutil.copyfile(LEGACY, target)
    return target


# ---------------------------------------------------------------------------
# query: filters, limits, order
# ---------------------------------------------------------------------------


def test_query_is_newest_first_by_timestamp_and_iter_query_by_recording_order(
    tmp_path: Path,
) -> None:
    """query orders by timestamp (issue 10: the original skill sorted by time); iter_query
    streams the file's order, reversed by default."""
    entries = [entry(i) for i in (5, 1, 9, 3)]
    path = write_store(tmp_path / "t.json", entries)
    assert query(path) == [entries[2], entries[0], entries[3], entries[1]]
    assert query(path, limit=2) == [entries[2], entries[0]]
    assert list(iter_query(path)) == entries[::-1]
    assert list(iter_query(path, newest_first=False)) == entries


def test_filters_take_a_value_or_a_collection(tmp_path: Path) -> None:
    entries = [
        entry(0, skill="a", status="success", caller="CLI"),
        entry(1, skill="b", status="failure", caller="API", error_message="boom"),
        entry(2, skill="c", status="timeout", caller="workflow.compose"),
        entry(3, skill="a", status="error", caller="API"),
    ]
    path = write_store(tmp_path / "t.json", entries)
    assert query(path, skill="a") == [entries[3], entries[0]]
    assert query(path, skill=("a", "b")) == [entries[3], entries[1], entries[0]]
    assert query(path, skill={"c"}, status=["timeout"]) == [entries[2]]
    assert query(path, caller="API", status=frozenset({"failure", "error"})) == [
        entries[3],
        entries[1],
    ]
    assert query(path, trace_id=entries[1]["trace_id"]) == [entries[1]]
    assert query(path, min_duration_ms=2) == [entries[3], entries[2]]
    assert query(path, skill=[]) == []  # an empty collection matches nothing
    assert query(path, skill="nope") == []


def test_limit_stops_reading(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The limit is applied while streaming: only the end of the file is parsed (the limit,
    then the entries of the last ORDER_WINDOW seconds: here one a second)."""
    path = tmp_path / "t.json"
    path.write_bytes(b"[\n" + b",\n".join(orjson.dumps(entry(i)) for i in range(3000)) + b"\n]\n")
    parsed = 0
    real = orjson.loads

    def counting(data: Any) -> Any:
        nonlocal parsed
        parsed += 1
        return real(data)

    monkeypatch.setattr("orjson.loads", counting)  # the store parses entry lines with it
    found = query(path, limit=3)
    assert [item["duration_ms"] for item in found] == [2999.0, 2998.0, 2997.0]
    assert parsed < 3 + ORDER_WINDOW + 20
    assert query(path, limit=0) == []
    assert len(query(path, limit=None)) == 3000


@pytest.mark.parametrize(
    ("limit", "error"), [(-1, ValueError), (True, TypeError), (1.5, TypeError)]
)
def test_bad_limit(tmp_path: Path, limit: Any, error: type[Exception]) -> None:
    with pytest.raises(error, match="limit"):
        query(tmp_path / "t.json", limit=limit)


def test_missing_file_is_an_empty_log(tmp_path: Path) -> None:
    assert query(tmp_path / "absent.json") == []
    assert stats(tmp_path / "absent.json") == {}
    assert trace("0" * 32, tmp_path / "absent.json") == []


def test_default_path_is_the_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = write_store(tmp_path / "env.json", [entry(1)])
    monkeypatch.setenv("BETTY_TELEMETRY_FILE", str(path))
    assert query() == [entry(1)]


# ---------------------------------------------------------------------------
# time filters
# ---------------------------------------------------------------------------


@pytest.fixture
def timed(tmp_path: Path) -> tuple[Path, list[dict[str, Any]]]:
    ages = [
        timedelta(days=10),
        timedelta(days=2),
        timedelta(hours=3),
        timedelta(minutes=30),
        timedelta(seconds=10),
    ]
    entries = [entry(i, timestamp=ago(age)) for i, age in enumerate(ages)]
    entries.append(entry(9, timestamp="not a time"))
    entries.append(entry(10, timestamp=12345))
    missing = entry(11)
    del missing["timestamp"]
    entries.append(missing)
    return write_store(tmp_path / "t.json", entries), entries


@pytest.mark.parametrize(
    ("since", "count"),
    [("15m", 1), ("1h", 2), ("1d", 3), ("1w", 4), ("30s", 1), ("2H", 2), ("1.5d", 3)],
)
def test_relative_since(timed: tuple[Path, list[dict[str, Any]]], since: str, count: int) -> None:
    path, _ = timed
    assert len(query(path, since=since)) == count


def test_until_and_ranges(timed: tuple[Path, list[dict[str, Any]]]) -> None:
    path, entries = timed
    assert query(path, until="1d") == [entries[1], entries[0]]
    assert query(path, since="7d", until="1h") == [entries[2], entries[1]]
    # since is inclusive, until exclusive
    exact = entries[2]["timestamp"]
    assert query(path, since=exact, until=exact) == []
    assert query(path, since=exact, until=entries[3]["timestamp"]) == [entries[2]]


def test_absolute_times(timed: tuple[Path, list[dict[str, Any]]]) -> None:
    path, entries = timed
    cut = datetime.now(timezone.utc) - timedelta(hours=1)
    expected = [entries[4], entries[3]]
    assert query(path, since=cut) == expected
    assert query(path, since=cut.isoformat()) == expected
    assert query(path, since=cut.astimezone(timezone(timedelta(hours=5))).isoformat()) == expected
    assert query(path, since=cut.replace(tzinfo=None)) == expected  # naive means UTC
    assert query(path, since=cut.strftime("%Y-%m-%dT%H:%M:%S.%fZ")) == expected


def test_unreadable_timestamps_match_no_time_filter(
    timed: tuple[Path, list[dict[str, Any]]],
) -> None:
    path, entries = timed
    assert all(item["timestamp"] != "not a time" for item in query(path, since="100w"))
    everything = query(path)
    assert everything == by_time(entries)  # without a time filter nothing is dropped
    assert everything[-3:] == entries[-1:-4:-1]  # unreadable times last, in file order


@pytest.mark.parametrize("bad", ["yesterday", "15x", "", "-5m", "m", "2025-13-01"])
def test_bad_times_are_clear_errors(tmp_path: Path, bad: str) -> None:
    with pytest.raises(ValueError, match="Invalid time") as info:
        query(tmp_path / "t.json", since=bad)
    assert "15m" in str(info.value)


def test_since_after_until_and_wrong_types(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="after until"):
        query(tmp_path / "t.json", since="1h", until="2h")
    with pytest.raises(TypeError, match="datetime or a string"):
        query(tmp_path / "t.json", since=5)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="strings"):
        query(tmp_path / "t.json", skill=[1])  # type: ignore[list-item]
    with pytest.raises(ValueError, match="finite"):
        query(tmp_path / "t.json", min_duration_ms=float("nan"))


def test_parse_time() -> None:
    now = datetime(2025, 1, 2, 3, 4, 5, tzinfo=timezone.utc)
    assert parse_time("15m", now=now) == now - timedelta(minutes=15)
    assert parse_time(" 2h ", now=now) == now - timedelta(hours=2)
    assert parse_time("1w", now=now) == now - timedelta(days=7)
    assert parse_time("2025-01-01") == datetime(2025, 1, 1, tzinfo=timezone.utc)
    filters = make_filters(since="1h", now=now)
    assert filters.since == now - timedelta(hours=1)


# ---------------------------------------------------------------------------
# entries of other tools
# ---------------------------------------------------------------------------


def test_legacy_fixture_is_returned_unchanged(legacy: Path) -> None:
    """Every entry exactly as the file holds it; its 22 "failed" and 3 "failure" entries are
    all failures to the status filter, whichever word is asked for."""
    original = json.loads(LEGACY.read_text(encoding="utf-8"))
    assert len(original) == 225
    assert query(legacy) == by_time(original)
    assert list(iter_query(legacy)) == original[::-1]
    failures = [item for item in original if item.get("status") in ("failed", "failure")]
    assert len(failures) == 25
    for word in ("failure", "failed", "FAILED", "fail"):
        assert query(legacy, status=word) == by_time(failures), word
    assert query(legacy, status="failure", limit=2) == by_time(failures)[:2]
    assert {item["status"] for item in query(legacy, status="failure")} == {"failed", "failure"}
    assert legacy.read_bytes() == LEGACY.read_bytes()  # reading never writes


def test_legacy_fixture_stats_and_appends(legacy: Path) -> None:
    original = json.loads(LEGACY.read_text(encoding="utf-8"))
    result = stats(legacy, by="status")
    assert sum(group.count for group in result.values()) == 225
    assert set(result) == {"success", "failure"}
    assert result["failure"].count == 25
    assert result["failure"].failure_rate == 1.0
    assert result["failure"].original_statuses == {"failed": 22, "failure": 3}
    # The store appends canonical lines after the indent=2 ones: both are read.
    write_store(legacy, [entry(1, skill="new.skill")])
    assert list(iter_query(legacy)) == [entry(1, skill="new.skill"), *original[::-1]]
    assert query(legacy) == by_time([*original, entry(1, skill="new.skill")])
    assert stats(legacy)["new.skill"].count == 1
    assert sum(group.count for group in stats(legacy).values()) == 226


def test_foreign_entries_never_crash(tmp_path: Path) -> None:
    foreign: list[Any] = [
        {"skill": ["x"], "status": 5, "duration_ms": "12", "caller": None},
        {"foo": 1},
        {"timestamp": "bad", "skill": "a", "status": "success", "duration_ms": True, "x": [1]},
        {"skill": "a", "status": "weird", "duration_ms": 7, "extra": {"deep": [1, {"a": 2}]}},
        42,
        "text",
        None,
    ]
    path = write_json(tmp_path / "t.json", foreign)
    dicts = [item for item in foreign if isinstance(item, dict)]
    assert query(path) == dicts[::-1]
    assert query(path, skill="a") == [dicts[3], dicts[2]]
    assert query(path, status="weird") == [dicts[3]]
    assert query(path, caller="CLI") == []
    assert query(path, min_duration_ms=0) == [dicts[3]]  # True and "12" are not numbers
    result = stats(path)
    assert set(result) == {'["x"]', None, "a"}
    assert result["a"].count == 2
    assert result["a"].durations == 1
    assert result["a"].statuses == {"success": 1, "weird": 1}
    assert result[None].statuses == {"(none)": 1}
    assert result['["x"]'].statuses == {"5": 1}
    assert result['["x"]'].p50 is None


# ---------------------------------------------------------------------------
# torn tails and concurrent writers
# ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "tail",
    [
        b',\n{"timestamp":"2025-10-24T00:00:00+00:00","skill":"torn"',
        b',\n{"timestamp":"2025-10-24T00:00:00+00:00","skill":"torn","status":"success",'
        b'"duration_ms":1,"caller":"c","inputs":{}',
        b',\n{"timestamp":"2025-10-24T00:00:00+00:00","skill":"torn","inputs":{"a":[1]',
        b",",
    ],
)
def test_torn_tail_is_never_yielded(tmp_path: Path, tail: bytes) -> None:
    entries = [entry(i) for i in range(50)]
    path = write_store(tmp_path / "t.json", entries)
    data = path.read_bytes()
    path.write_bytes(data[: data.rindex(b"\n]")] + tail)
    assert check_file(path).torn_tail
    assert query(path) == entries[::-1]
    assert query(path, limit=1) == [entries[-1]]
    assert "torn" not in stats(path)
    assert sum(group.count for group in stats(path).values()) == 50
    assert [node.entry for node in trace(entries[-1]["trace_id"], path)] == [entries[-1]]


def test_readers_never_see_a_partial_entry_while_writing(tmp_path: Path) -> None:
    """A writer appends batches while readers query, stats and trace the same file."""
    path = write_store(tmp_path / "t.json", [entry(i) for i in range(200)])
    stop = threading.Event()
    keys = set(entry(0))

    def writer() -> None:
        store = TelemetryStore(path)
        index = 200
        while not stop.is_set():
            store.append([entry(index + k) for k in range(20)])
            index += 20
        store.close()

    thread = threading.Thread(target=writer)
    thread.start()
    try:
        for _ in range(30):
            found = query(path, limit=50)
            assert all(set(item) == keys for item in found)
            total = sum(group.count for group in stats(path).values())
            assert total >= 200
    finally:
        stop.set()
        thread.join()
    final = query(path)
    assert all(set(item) == keys for item in final)
    assert sum(group.count for group in stats(path).values()) == len(final)
