"""The report's read of a large file with a helper process equals a read by one process.

The report reads a file as stats does (`betty_otel.query.parallel`): a forked helper counts
the last parts, which are taken where the read meets them at a seam. Forced on small
files with ``BETTY_OTEL_STATS_PARALLEL_BYTES=0`` (32 parts); `Helper.ready` waits for the
helper from a given part on (a slow parent), so the helper's parts are really used.
Figures, tables, damage (counted, listed and logged), abandoned entries, time buckets
(coarsened as the span read grows) and progress are those of one read.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from betty_otel._report.figures import summarize
from betty_otel._report.ingest import read_log
from betty_otel.query import make_filters
from betty_otel.query.parallel import ENV_MIN_BYTES, ENV_PARALLEL, Helper
from helpers import make_entry, patient_ready, write_damaged

DAMAGE = [
    b"garbage line",
    b'{"timestamp":"2025-10-24T14:00:00+00:00","skill":"x",',
    b'{"timestamp":"2025-10-24T14:00:00.000000+00:00","skill":"x","status":"success","duration_ms":1,}',
    b"]",
]


def entry(number: int, minutes: int) -> dict[str, Any]:
    """Entries over minutes * number minutes (buckets coarsen as the read goes on), with
    escapes, odd durations and statuses, ties in duration and time, abandoned ones."""
    day, minute = divmod(number * minutes, 1440)
    found = make_entry(
        number,
        timestamp=f"2025-{1 + day // 28 % 12:02d}-{1 + day % 28:02d}T{minute // 60:02d}:"
        f"{minute % 60:02d}:00.000000+00:00",
        skill=["a", "b", "caf\u00e9", 'q"uote', 7][number % 5],
        status=["success", "failure", "failed", "error"][number % 4],
        duration_ms=[1.5, 3, 1e6, None, "7", 2.0][number % 6],
    )
    if number % 7 == 0:
        found.update(status="error", error_message="abandoned: process 12 died")
        found["metadata"] = {"abandoned": True}
    return found


def build(
    path: Path, count: int, minutes: int, legacy: bool, damage: list[tuple[float, bytes]]
) -> None:
    """The file: canonical (or the old tools' layout, then appends), damage inserted."""
    write_damaged(path, [entry(n, minutes) for n in range(count)], legacy, damage)


def both(
    path: Path, monkeypatch: pytest.MonkeyPatch, caplog: Any, first: int, **filters: Any
) -> tuple[Any, Any, list[bool]]:
    """(one process, with a helper that the parent waits for from part first on), each a
    `read`, and what `Helper.ready` answered."""
    with monkeypatch.context() as patch:
        patch.setenv(ENV_PARALLEL, "0")
        alone = read(path, caplog, **filters)
    answers: list[bool] = []
    with monkeypatch.context() as patch:
        patch.setenv(ENV_MIN_BYTES, "0")
        patch.setattr(Helper, "ready", patient_ready(first, answers))
        helped = read(path, caplog, **filters)
    return alone, helped, answers


def read(path: Path, caplog: Any, **filters: Any) -> Any:
    """Everything the page is made of, the damage logged and the last progress call."""
    calls: list[tuple[int, int]] = []
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="betty_otel"):
        counts = read_log(
            path, make_filters(**filters), lambda done, total: calls.append((done, total))
        )
    data = summarize(counts)
    warnings = [record.getMessage() for record in caplog.records]
    # Of entries tied on the time (or duration) a table sorts by, which are kept is not
    # specified (one read keeps per block the lines read from captures first): compare keys.
    tables = [
        sorted(map(repr, (e["timestamp"] for e in data.failures))),
        sorted(map(repr, (e["duration_ms"] for e in data.slowest))),
        counts.abandoned,
        sorted(e["timestamp"] for e in counts.newest_abandoned()),
    ]
    data.failures, data.slowest = [], []
    return repr(data), tables, counts.prefix, warnings, calls[-1:]


@settings(max_examples=12, deadline=None, suppress_health_check=list(HealthCheck))
@given(
    count=st.integers(50, 400),
    minutes=st.sampled_from([0, 1, 7, 600]),
    legacy=st.booleans(),
    damage=st.lists(st.tuples(st.floats(0, 1), st.sampled_from(DAMAGE)), max_size=3),
    first=st.integers(1, 30),
    filters=st.sampled_from([{}, {"status": "failure"}, {"skill": "caf\u00e9", "caller": "CLI"}]),
)
@example(  # damage in a canonical-looking line and before it: told in the file's order
    count=50,
    minutes=0,
    legacy=False,
    damage=[(0.0, DAMAGE[0]), (0.5, DAMAGE[2])],
    first=1,
    filters={},
)
def test_a_report_read_with_a_helper_equals_one_read_alone(
    tmp_path_factory: pytest.TempPathFactory,
    monkeypatch: pytest.MonkeyPatch,
    caplog: Any,
    count: int,
    minutes: int,
    legacy: bool,
    damage: list[tuple[float, bytes]],
    first: int,
    filters: dict[str, Any],
) -> None:
    path = tmp_path_factory.mktemp("parallel") / "telemetry.json"
    build(path, count, minutes, legacy, damage)
    alone, helped, _ = both(path, monkeypatch, caplog, first, **filters)
    assert helped == alone


def test_the_helpers_parts_are_taken_and_count_as_read_here(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: Any
) -> None:
    """A parent that waits for the helper takes every part after its first from it."""
    path = tmp_path / "telemetry.json"
    build(path, 3000, 1, False, [(0.5, DAMAGE[0])])
    alone, helped, answers = both(path, monkeypatch, caplog, 1)
    assert helped == alone
    assert answers == [True]
    data = summarize(read_log(path, make_filters()))
    assert data.matched == 3000
    assert data.health.damaged == 1
