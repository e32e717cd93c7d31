"""betty_otel.query.stats: hand-computed figures, equal to a plain computation on every layout.

The fast path over canonical lines is taken (also with time filters), inexact lines fall
back to parsing, and rotated files are read.
"""

from __future__ import annotations

import statistics
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import orjson
import pytest

from betty_otel import TelemetryCapture
from betty_otel._entry import canonical_status
from betty_otel._store import ForwardParser, TelemetryStore, iter_entries
from betty_otel.query import (
    GroupStats,
    query,
    stats,
    trace,
)

# ---------------------------------------------------------------------------
# stats
# ---------------------------------------------------------------------------
from query_helpers import LAYOUTS, ago, entry, many, write_layout, write_store


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
        entry(i, timestamp=ago(timedelta(minutes=i)), skill=f"s{i % 4}") for i in range(4000)
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
