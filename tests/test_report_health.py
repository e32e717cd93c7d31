"""The report's health counts each entry by one rule, whatever path reads it.

A canonical line is read from its regex captures or parsed whole (a block with an
unusual line, a part read by a helper process): legacy entries (a status synonym, no
top-level trace_id, the old ``error`` key) and entries whose skill, status or caller is
not text are counted the same either way, as a line-by-line recount of the file does.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from betty_otel._entry import canonical_status
from betty_otel._report.ingest import read_log
from betty_otel.query import make_filters
from betty_otel.query.parallel import ENV_MIN_BYTES, ENV_PARALLEL, Helper
from helpers import make_entry

READY = Helper.ready
VARIANTS = [
    "plain",
    "synonym",
    "no trace",
    "nested trace",
    "escaped trace key",
    "quoted trace key",
    "old error",
    "escaped old error",
    "nested old error",
    "number caller",
    "object caller",
    "null caller",
    "no caller",
    "number skill",
    "naive time",
]


def line(number: int, variant: str) -> bytes:
    """One canonical line of the given kind."""
    entry = make_entry(number)
    if variant == "synonym":
        entry["status"] = ["failed", "ok", "completed"][number % 3]
    elif variant in ("no trace", "nested trace", "quoted trace key"):
        del entry["trace_id"]
        if variant == "nested trace":
            entry["inputs"] = {"trace_id": "ab" * 16}
        if variant == "quoted trace key":
            entry['a"trace_id'] = "ab" * 16
    elif variant in ("old error", "escaped old error"):
        entry["error"] = "old key"
    elif variant == "nested old error":
        entry["inputs"] = {"error": "an argument"}
    elif variant in ("number caller", "object caller", "null caller"):
        entry["caller"] = {"number caller": 7, "object caller": {"a": 1}}.get(variant)
    elif variant == "no caller":
        del entry["caller"]
    elif variant == "number skill":
        entry["skill"] = 12
    elif variant == "naive time":
        entry["timestamp"] = "2025-10-24T14:00:00"
    data = orjson.dumps(entry)
    if variant == "escaped trace key":
        data = data.replace(b'"trace_id"', b'"tr\\u0061ce_id"')
    if variant == "escaped old error":
        data = data.replace(b'"error":', b'"\\u0065rror":')
    return data


def recount(path: Path) -> list[int]:
    """[entries, legacy, foreign] from each line parsed on its own."""
    entries = [json.loads(text.rstrip(b",")) for text in path.read_bytes().split(b"\n")[1:-2]]

    def legacy(entry: dict[str, Any]) -> bool:
        status = entry.get("status")
        synonym = isinstance(status, str) and canonical_status(status) != status
        return synonym or "trace_id" not in entry or "error" in entry

    def foreign(entry: dict[str, Any]) -> bool:
        return any(
            not isinstance(entry.get(key), (str, type(None)))
            for key in ("skill", "status", "caller")
        )

    return [len(entries), sum(map(legacy, entries)), sum(map(foreign, entries))]


def health(path: Path) -> list[int]:
    counts = read_log(path, make_filters())
    return [counts.health.entries, counts.health.legacy, counts.health.foreign]


def helped(path: Path, monkeypatch: pytest.MonkeyPatch, first: int) -> list[int]:
    """health(path) read with a helper whose parts the parent waits for from part first on."""

    def ready(self: Helper, index: int) -> bool:
        deadline = time.monotonic() + 60  # a bound that only catches a hang, not a speed
        while index >= first and not READY(self, index) and time.monotonic() < deadline:
            time.sleep(0.005)
        return READY(self, index)

    with monkeypatch.context() as patch:
        patch.setenv(ENV_MIN_BYTES, "0")
        patch.setattr(Helper, "ready", ready)
        return health(path)


@settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck))
@given(
    kinds=st.lists(st.sampled_from(VARIANTS), min_size=1, max_size=120),
    first=st.integers(1, 30),
)
def test_health_counts_equal_a_line_by_line_recount_alone_and_with_a_helper(
    tmp_path_factory: pytest.TempPathFactory,
    monkeypatch: pytest.MonkeyPatch,
    kinds: list[str],
    first: int,
) -> None:
    path = tmp_path_factory.mktemp("health") / "telemetry.json"
    lines = [line(number, kind) for number, kind in enumerate(kinds)]
    path.write_bytes(b"[\n" + b",\n".join(lines) + b"\n]\n")
    expected = recount(path)
    with monkeypatch.context() as patch:
        patch.setenv(ENV_PARALLEL, "0")
        assert health(path) == expected
    assert helped(path, monkeypatch, first) == expected


@pytest.mark.parametrize("variant", VARIANTS[1:-1])
def test_a_legacy_or_foreign_line_among_canonical_ones_is_counted(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, variant: str
) -> None:
    """One unusual line in a block of lines read from their captures."""
    monkeypatch.setenv(ENV_PARALLEL, "0")
    path = tmp_path / "telemetry.json"
    lines = [line(number, "plain") for number in range(50)]
    lines[25] = line(25, variant)
    path.write_bytes(b"[\n" + b",\n".join(lines) + b"\n]\n")
    assert health(path) == recount(path)
