"""Betty's real data (issue 10): legacy status words count as their canonical status in
every reader, and "newest first" means by timestamp even when batching processes wrote
entries out of time order.

The status tests run on the real registry file of a Betty repository (225 entries:
22 "failed" and 3 "failure") and on canonical lines, which stats reads by its fast
byte-level scanner.
"""

from __future__ import annotations

import json
import random
import shutil
from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import orjson
import pytest

from betty_otel import TelemetryCapture
from betty_otel.query import ORDER_WINDOW, iter_query, query, stats
from cli_helpers import LEGACY_FILE

START = datetime(2025, 10, 24, tzinfo=timezone.utc)


def test_all_25_failures_of_the_real_registry_are_failures_in_stats_and_query(
    tmp_path: Path,
) -> None:
    """stats counts "failed" as a failure (workflow.compose is no longer 0.0%), keeps the
    words in original_statuses; query(status="failure") returns all 25, unchanged."""
    legacy = Path(shutil.copyfile(LEGACY_FILE, tmp_path / "telemetry.json"))
    original = json.loads(LEGACY_FILE.read_text(encoding="utf-8"))
    by_skill = stats(legacy)
    assert sum(group.failures for group in by_skill.values()) == 25
    compose = by_skill["workflow.compose"]
    assert compose.failures > 0
    assert compose.failure_rate == compose.failures / compose.count
    assert compose.statuses.get("failed") is None  # counted under its canonical status
    by_status = stats(legacy, by="status")
    assert by_status["failure"].count == 25
    assert by_status["failure"].original_statuses == {"failed": 22, "failure": 3}
    found = query(legacy, status="failure")
    assert len(found) == 25
    assert all(entry in original for entry in found)  # exactly as the file holds them
    assert TelemetryCapture(legacy).query(status="failure", limit=100) == found
    assert stats(legacy, status="failed")["workflow.compose"].count == compose.failures


WORDS = {
    "failed": "failure",
    "FAIL": "failure",
    "Failure": "failure",
    "errored": "error",
    "ERROR": "error",
    "timed_out": "timeout",
    "Timed-Out": "timeout",
    "succeeded": "success",
    "OK": "success",
    "passed": "success",
    "running": "pending",
    "started": "pending",
    "weird": "weird",  # unknown: its own status, never a success or a failure
}


def _line(index: int, status: str) -> bytes:
    return orjson.dumps(
        {
            "timestamp": (START + timedelta(seconds=index)).isoformat(),
            "skill": "s",
            "status": status,
            "duration_ms": 1.0,
            "caller": "CLI",
        }
    )


@pytest.mark.parametrize("layout", ["canonical", "indent2"])
@pytest.mark.parametrize("timed", [False, True], ids=["scan", "timed_scan"])
def test_every_reader_maps_legacy_words_to_the_canonical_status(
    tmp_path: Path, layout: str, timed: bool
) -> None:
    """Filters, stats (fast byte scanner and the parser, with a time filter or not) and
    by-status groups agree: each word counts as its canonical status, case-insensitively;
    an unknown word is its own group and neither a success nor a failure."""
    path = tmp_path / "telemetry.json"
    lines = [_line(index, word) for index, word in enumerate(WORDS)]
    if layout == "canonical":
        path.write_bytes(b"[\n" + b",\n".join(lines) + b"\n]\n")
    else:
        path.write_text(json.dumps([orjson.loads(line) for line in lines], indent=2))
    since: dict[str, Any] = {"since": START.isoformat()} if timed else {}
    want: dict[str, int] = {}
    for canonical in WORDS.values():
        want[canonical] = want.get(canonical, 0) + 1
    groups = stats(path, by="status", **since)
    assert {key: group.count for key, group in groups.items()} == want
    assert groups["weird"].failures == 0
    total = stats(path, **since)["s"]
    assert total.failures == want["failure"] + want["error"] + want["timeout"]
    assert total.statuses == dict(sorted(want.items(), key=lambda item: (-item[1], item[0])))
    assert sum(total.original_statuses.values()) == len(WORDS)
    for word, canonical in WORDS.items():
        expected = {w for w, c in WORDS.items() if c == canonical}
        assert {e["status"] for e in query(path, status=word, **since)} == expected, word
        assert stats(path, status=word, **since)["s"].count == len(expected), word


# ---------------------------------------------------------------------------
# newest first by timestamp
# ---------------------------------------------------------------------------


def batched_writes(count: int, seed: int, delay: float) -> list[dict[str, Any]]:
    """Entries in the order three batching processes append them: each ends executions
    in time order and appends its queue every `delay` seconds, so the file's order trails
    time order by up to `delay`."""
    rng = random.Random(seed)
    ended = sorted((rng.uniform(0, count / 5), rng.randrange(3), index) for index in range(count))
    written: list[tuple[float, int, dict[str, Any]]] = []
    for moment, process, index in ended:
        flush = (int(moment / delay) + 1) * delay + process * 0.01  # the next flush
        entry = {"timestamp": (START + timedelta(seconds=moment)).isoformat(), "id": index}
        written.append((flush, index, entry))
    return [entry for _, _, entry in sorted(written, key=lambda item: item[:2])]


def newest_by_time(entries: list[dict[str, Any]], count: int) -> list[dict[str, Any]]:
    return sorted(entries, key=lambda entry: entry["timestamp"], reverse=True)[:count]


def counting_loads(monkeypatch: pytest.MonkeyPatch) -> Callable[[], int]:
    """Count the entries parsed (the store parses entry lines with orjson.loads)."""
    calls = 0
    real = orjson.loads

    def counting(data: Any) -> Any:
        nonlocal calls
        calls += 1
        return real(data)

    monkeypatch.setattr("orjson.loads", counting)
    return lambda: calls


@pytest.mark.parametrize("delay", [1.0, 5.0])
def test_query_limit_returns_the_newest_by_timestamp_when_file_order_differs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, delay: float
) -> None:
    """Entries out of timestamp order by up to a few seconds (batching processes): query
    with a limit returns exactly the N newest by time, still reading only the file's end."""
    entries = batched_writes(5000, seed=int(delay), delay=delay)
    assert [e["timestamp"] for e in entries] != sorted(e["timestamp"] for e in entries)
    path = tmp_path / "telemetry.json"
    path.write_bytes(b"[\n" + b",\n".join(map(orjson.dumps, entries)) + b"\n]\n")
    parsed = counting_loads(monkeypatch)
    for count in (1, 2, 5, 10, 50):
        assert query(path, limit=count) == newest_by_time(entries, count), count
    # Five entries a second: the limit plus the entries of ORDER_WINDOW seconds, not 5,000.
    assert parsed() < 5 * (50 + 5 * (ORDER_WINDOW + delay + 1))
    monkeypatch.undo()
    assert query(path) == newest_by_time(entries, len(entries))
    assert list(iter_query(path)) == entries[::-1]  # the stream keeps recording order


def test_an_older_looking_entry_far_back_is_still_found_within_the_window(
    tmp_path: Path,
) -> None:
    """An entry written late (its timestamp older than several entries after it, within
    the window) still takes its place among the newest."""
    times = [0, 1, 2, 3, 20, 10, 11, 12]  # the entry ending at 20 s was written before 10-12
    entries = [{"timestamp": (START + timedelta(seconds=s)).isoformat(), "id": s} for s in times]
    path = tmp_path / "telemetry.json"
    path.write_bytes(b"[\n" + b",\n".join(map(orjson.dumps, entries)) + b"\n]\n")
    assert [e["id"] for e in query(path, limit=2)] == [20, 12]
    assert [e["id"] for e in query(path, limit=4)] == [20, 12, 11, 10]
