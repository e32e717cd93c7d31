"""betty_otel.query: filters, newest-first queries, stats and trace trees, on every layout."""

from __future__ import annotations

import json
import shutil
import statistics
import threading
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import orjson
import pytest

from betty_otel import TelemetryCapture
from betty_otel._entry import canonical_status
from betty_otel._store import ForwardParser, TelemetryStore, check_file, iter_entries
from betty_otel._timestamps import entry_time
from betty_otel.query import (
    ORDER_WINDOW,
    GroupStats,
    TraceNode,
    iter_query,
    make_filters,
    parse_time,
    query,
    stats,
    trace,
)

FIXTURE = Path(__file__).resolve().parents[1].parent / "shared" / "fixtures"
LEGACY = FIXTURE / "betty-registry-telemetry.json"


def entry(index: int, **overrides: Any) -> dict[str, Any]:
    """A canonical entry (keys in the schema's order); overrides replace or add keys."""
    value: dict[str, Any] = {
        "timestamp": (
            datetime(2025, 10, 24, tzinfo=timezone.utc) + timedelta(seconds=index)
        ).isoformat(timespec="microseconds"),
        "skill": f"skill.{index % 3}",
        "status": "success",
        "duration_ms": float(index),
        "caller": "CLI",
        "inputs": {"n": index},
        "error_message": None,
        "metadata": {},
        "trace_id": f"{index:032x}",
        "span_id": f"{index + 1:016x}",
        "parent_span_id": None,
    }
    value.update(overrides)
    return value


def write_store(path: Path, entries: list[dict[str, Any]]) -> Path:
    """Write entries with the real store (canonical layout), one append per entry."""
    store = TelemetryStore(path)
    for item in entries:
        store.append([item])
    store.close()
    return path


def by_time(entries: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """What query returns: newest first by timestamp; ties and unreadable times (last) keep
    file order, the later written first."""

    def seconds(item: dict[str, Any]) -> float:
        moment = entry_time(item.get("timestamp"))
        return float("-inf") if moment is None else moment.timestamp()

    later_written_first = entries[::-1]  # a stable sort keeps this order for ties
    return sorted(later_written_first, key=seconds, reverse=True)


def write_json(path: Path, entries: list[Any], **options: Any) -> Path:
    """Write entries as the old tools do (json.dump, indent=2 by default)."""
    options.setdefault("indent", 2)
    path.write_text(json.dumps(entries, **options), encoding="utf-8")
    return path


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


def _ago(delta: timedelta) -> str:
    """A timestamp delta before now (now read afresh: the suite may run for minutes)."""
    return (datetime.now(timezone.utc) - delta).isoformat(timespec="microseconds")


@pytest.fixture
def timed(tmp_path: Path) -> tuple[Path, list[dict[str, Any]]]:
    ages = [
        timedelta(days=10),
        timedelta(days=2),
        timedelta(hours=3),
        timedelta(minutes=30),
        timedelta(seconds=10),
    ]
    entries = [entry(i, timestamp=_ago(age)) for i, age in enumerate(ages)]
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
# stats
# ---------------------------------------------------------------------------


def test_stats_hand_computed(tmp_path: Path) -> None:
    rows = [
        ("a", "success", 10, "CLI"),
        ("a", "failure", 100, "API"),
        ("a", "success", 30, "CLI"),
        ("a", "timeout", 40, "CLI"),
        ("a", "success", 20, "API"),
        ("a", "failed", "n/a", "CLI"),
        ("b", "error", 5, "CLI"),
    ]
    entries = [
        entry(i, skill=s, status=st, duration_ms=d, caller=c)
        for i, (s, st, d, c) in enumerate(rows)
    ]
    path = write_store(tmp_path / "t.json", entries)
    result = stats(path)
    assert list(result) == ["a", "b"]  # largest group first
    a = result["a"]
    assert a == GroupStats(
        key="a",
        count=6,
        statuses={"success": 3, "failure": 2, "timeout": 1},  # "failed" is a failure
        original_statuses={"success": 3, "failed": 1, "failure": 1, "timeout": 1},
        failures=3,
        failure_rate=3 / 6,
        durations=5,
        p50=30.0,  # sorted 10 20 30 40 100: rank 4 * 0.50 = 2
        p95=a.p95,
        p99=a.p99,
        max=100.0,
        mean=40.0,
    )
    assert a.p95 == pytest.approx(88.0)  # rank 3.8: 40 + 0.8 * (100 - 40)
    assert a.p99 == pytest.approx(97.6)  # rank 3.96
    b = result["b"]
    assert (b.count, b.failure_rate, b.p50, b.p99, b.max, b.mean) == (1, 1.0, 5, 5, 5, 5)

    by_caller = stats(path, by="caller")
    assert by_caller["CLI"].count == 5
    assert by_caller["API"].statuses == {"failure": 1, "success": 1}
    by_status = stats(path, by="status")
    assert by_status["success"].count == 3
    assert by_status["success"].p50 == 20
    assert stats(path, status="success", skill="a")["a"].count == 3
    assert stats(path, caller="API")["a"].count == 2
    assert stats(path, min_duration_ms=35)["a"].count == 2
    assert stats(path, trace_id=entries[1]["trace_id"])["a"].statuses == {"failure": 1}
    assert stats(path, skill="zzz") == {}


def test_stats_method_and_bad_group(tmp_path: Path) -> None:
    path = write_store(tmp_path / "t.json", [entry(1), entry(2, status="failure")])
    capture = TelemetryCapture(path)
    assert capture.stats(by="status")["failure"].count == 1
    with pytest.raises(ValueError, match="by must be one of"):
        stats(path, by="inputs")  # type: ignore[arg-type]


def reference_stats(entries: list[dict[str, Any]], by: str) -> dict[Any, tuple[Any, ...]]:
    """Stats computed the plain way, with statistics.quantiles (the same linear method)."""
    groups: dict[Any, list[dict[str, Any]]] = {}
    for item in entries:
        key = item.get(by)
        if key is not None and not isinstance(key, str):
            key = orjson.dumps(key, option=orjson.OPT_SORT_KEYS).decode()
        if by == "status" and key is not None:
            key = canonical_status(key)  # a group per canonical status
        groups.setdefault(key, []).append(item)
    result = {}
    for key, members in groups.items():
        values = sorted(
            float(m["duration_ms"]) for m in members if type(m.get("duration_ms")) in (int, float)
        )
        p50: float | None
        p95: float | None
        p99: float | None
        if len(values) > 1:
            cuts = statistics.quantiles(values, n=100, method="inclusive")
            p50, p95, p99 = cuts[49], cuts[94], cuts[98]
        else:
            p50 = p95 = p99 = values[0] if values else None
        statuses: dict[str, int] = {}
        for m in members:
            status = m.get("status")
            name = (
                "(none)"
                if status is None
                else canonical_status(status)
                if isinstance(status, str)
                else (orjson.dumps(status).decode())
            )
            statuses[name] = statuses.get(name, 0) + 1
        failures = sum(statuses.get(name, 0) for name in ("failure", "error", "timeout"))
        result[key] = (len(members), statuses, failures, len(values), p50, p95, p99)
    return result


def summarise(result: dict[Any, GroupStats]) -> dict[Any, tuple[Any, ...]]:
    return {
        key: (g.count, g.statuses, g.failures, g.durations, g.p50, g.p95, g.p99)
        for key, g in result.items()
    }


def assert_same_stats(path: Path, by: str = "skill") -> None:
    """stats() equals the plain computation over what the store's reader yields."""
    expected = reference_stats(list(iter_entries(path, newest_first=False)), by)
    got = summarise(stats(path, by=by))  # type: ignore[arg-type]
    assert set(got) == set(expected)
    for key, row in expected.items():
        count, statuses, failures, durations, *percentiles = got[key]
        assert (count, statuses, failures, durations) == row[:4], key
        assert percentiles == pytest.approx(list(row[4:])), key


def many(count: int, seed: int = 0) -> list[dict[str, Any]]:
    """Entries with varied skills, statuses, callers and awkward values."""
    skills = ["a.b", "café", 'say "hi"', "back\\slash", "new\nline", "tab\tx", "plain"]
    statuses = ["success", "success", "failure", "timeout", "error", "failed", "pending"]
    durations: list[Any] = [1.5, 2, 0, 2**63 - 1, -1, 1e-05, None, "12", True, {"a": 1}, [1, 2]]
    return [
        entry(
            i,
            skill=skills[(i * 7 + seed) % len(skills)],
            status=statuses[(i * 3 + seed) % len(statuses)],
            duration_ms=durations[i % len(durations)] if i % 5 == 0 else i * 1.25,
            caller=["CLI", "API", "x,y"][i % 3],
            inputs={"text": "}, {" * (i % 3), "list": list(range(i % 4))},
        )
        for i in range(count)
    ]


LAYOUTS = ["canonical", "indent2", "mixed", "crlf", "bom", "torn", "damaged", "compact_other"]


def write_layout(path: Path, layout: str, entries: list[dict[str, Any]]) -> Path:
    """Write entries in one of the layouts the readers must handle."""
    half = len(entries) // 2
    if layout == "canonical":
        path.write_bytes(b"[\n" + b",\n".join(map(orjson.dumps, entries)) + b"\n]\n")
    elif layout == "indent2":
        write_json(path, entries)
    elif layout == "mixed":
        write_json(path, entries[:half])
        TelemetryStore(path).append(entries[half:])
    elif layout == "crlf":
        path.write_bytes(b"[\r\n" + b",\r\n".join(map(orjson.dumps, entries)) + b"\r\n]\r\n")
    elif layout == "bom":
        path.write_bytes(b"\xef\xbb\xbf[\n" + b",\n".join(map(orjson.dumps, entries)) + b"\n]\n")
    elif layout == "torn":
        joined = b",\n".join(map(orjson.dumps, entries))
        path.write_bytes(b"[\n" + joined + b',\n{"timestamp":"2025-10-24T00:00:00+00:00",')
    elif layout == "damaged":
        lines = [orjson.dumps(item) for item in entries]
        lines[half] = b'{"timestamp":"2025-10-24T00:00:00+00:00","skill":"x","status":"s'
        lines[half + 1] = b"garbage that is not json"
        lines[half + 2] = b'{"timestamp":"x","skill":"a\tb","status":"success","duration_ms":1}'
        path.write_bytes(b"[\n" + b",\n".join(lines) + b"\n]\n")
    elif layout == "compact_other":
        option = orjson.OPT_SORT_KEYS
        path.write_bytes(
            b"[\n" + b",\n".join(orjson.dumps(item, option=option) for item in entries) + b"\n]\n"
        )
    else:  # pragma: no cover
        raise AssertionError(layout)
    return path


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("by", ["skill", "caller", "status"])
def test_stats_equal_the_plain_computation(tmp_path: Path, layout: str, by: str) -> None:
    """The regex fast path gives exactly what parsing every entry gives, on every layout."""
    # Line layouts span several 1 MiB blocks; the indent=2 parser is slower, keep it smaller.
    entries = many(1500 if layout in ("indent2", "mixed") else 9000)
    path = write_layout(tmp_path / "t.json", layout, entries)
    if layout not in ("torn", "damaged"):
        assert len(list(iter_entries(path))) == len(entries)
    assert_same_stats(path, by)


def count_fed(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Count the lines the scanner hands to the store's parser."""
    fed = [0]
    real = ForwardParser.feed

    def counting(self: ForwardParser, offset: int, raw: bytes) -> Iterator[tuple[int, Any]]:
        fed[0] += 1
        return real(self, offset, raw)

    monkeypatch.setattr(ForwardParser, "feed", counting)
    return fed


def test_stats_fast_path_is_taken(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """On a canonical file almost no line goes to the parser; on an awkward one, few do."""
    path = write_layout(tmp_path / "t.json", "canonical", [entry(i) for i in range(9000)])
    fed = count_fed(monkeypatch)
    assert sum(group.count for group in stats(path).values()) == 9000
    assert fed[0] < 20
    awkward = many(9000)
    write_layout(path, "canonical", awkward)
    fed[0] = 0
    assert sum(group.count for group in stats(path).values()) == 9000
    odd = [
        item
        for item in awkward
        if '"' in item["skill"] or not isinstance(item["duration_ms"], (int, float, type(None)))
    ]
    assert fed[0] < len(odd) + 20


def test_stats_with_time_filters_on_the_fast_path(tmp_path: Path) -> None:
    entries = [
        entry(i, timestamp=_ago(timedelta(minutes=i)), skill=f"s{i % 4}") for i in range(4000)
    ]
    entries[7]["timestamp"] = "garbage"
    path = write_layout(tmp_path / "t.json", "canonical", entries)
    result = stats(path, since="1h")
    expected = [item for item in entries[:60] if item["timestamp"] != "garbage"]
    assert sum(group.count for group in result.values()) == len(expected)
    window = stats(path, since="2h", until="1h", by="caller")
    assert window["CLI"].count == 60


def test_stats_inexact_canonical_lines_fall_back(tmp_path: Path) -> None:
    """Captures that are not plain JSON text send the file down the exact path."""
    entries = many(3000)
    lines = [orjson.dumps(item) for item in entries]
    lines[100] = lines[100].replace(b'"skill":"', b'"skill":"\xff', 1)  # invalid UTF-8
    lines[200] = lines[200].replace(b'"duration_ms":', b'"duration_ms":NaN', 1)
    path = tmp_path / "t.json"
    path.write_bytes(b"[\n" + b",\n".join(lines) + b"\n]\n")
    assert_same_stats(path)


def test_stats_reads_rotated_files(tmp_path: Path) -> None:
    path = tmp_path / "t.json"
    store = TelemetryStore(path, max_bytes=3000, backups=50)
    entries = [entry(i) for i in range(80)]
    for item in entries:
        store.append([item])
    store.close()
    assert (tmp_path / "t.json.1").exists()
    assert (tmp_path / "t.json.3").exists()
    assert query(path) == entries[::-1]
    assert query(path, skill="skill.1", limit=2) == [entries[79], entries[76]]
    assert sum(group.count for group in stats(path).values()) == 80
    assert len(trace(entries[5]["trace_id"], path)) == 1


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


# ---------------------------------------------------------------------------
# trace
# ---------------------------------------------------------------------------


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
