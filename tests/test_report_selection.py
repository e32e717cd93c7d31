"""The report draws the entries its filters select, and only them.

Its time buckets fit the selected entries' span, not the whole log's: a filtered
report charts as the log of its selected entries alone would. Its time filters never
select an entry whose timestamp is no real time (month 13, a letter for a digit), as
`betty_otel.query.query` and `stats` never do, however its line is read.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import betty_otel
from betty_otel._report.collect import TOP
from betty_otel._report.ingest import read_log
from betty_otel.query import make_filters, query
from betty_otel.query.parallel import ENV_MIN_BYTES, ENV_PARALLEL
from helpers import make_entry, page_figures

DAY = datetime(2025, 1, 6, tzinfo=timezone.utc)


def _day(skill: str) -> list[dict[str, Any]]:
    """Executions every 20 minutes over one day."""
    return [
        make_entry(n, skill=skill, timestamp=(DAY + timedelta(minutes=20 * n)).isoformat())
        for n in range(72)
    ]


def _write(path: Path, entries: list[dict[str, Any]]) -> Path:
    path.write_bytes(b"[\n" + b",\n".join(map(orjson.dumps, entries)) + b"\n]\n")
    return path


def _charts(log: Path, out: Path, **filters: Any) -> dict[str, Any]:
    """The report's charts over time (what plotly.js receives)."""
    page = betty_otel.report(log, out, **filters).read_text(encoding="utf-8")
    figures = page_figures(page)
    return {name: figures[name] for name in ("chart-timeline", "chart-trends")}


FAR = [
    ("long ago", {"since": DAY.isoformat()}),
    ("far ahead", {"until": (DAY + timedelta(days=2)).isoformat()}),
    ("long ago", {"skill": "day"}),
    ("far ahead", {"skill": "day", "since": DAY.isoformat()}),
]


@pytest.mark.parametrize("helper", [False, True])
@pytest.mark.parametrize(("where", "filters"), FAR)
def test_a_filtered_report_charts_as_its_selected_entries_alone(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    where: str,
    filters: dict[str, Any],
    helper: bool,
) -> None:
    """A day of entries beside one ten years away: the filters select the day, whose
    charts are in 15-minute buckets, as the day alone draws, not in months."""
    monkeypatch.setenv(*((ENV_MIN_BYTES, "0") if helper else (ENV_PARALLEL, "0")))
    moment = DAY + timedelta(days=3650 if where == "far ahead" else -3650)
    other = make_entry(0, skill="other", timestamp=moment.isoformat())
    entries = [other, *_day("day")] if where == "long ago" else [*_day("day"), other]
    log = _write(tmp_path / "telemetry.json", entries)
    alone = _write(tmp_path / "alone.json", _day("day"))
    filtered = _charts(log, tmp_path / "filtered.html", **filters)
    assert filtered == _charts(alone, tmp_path / "alone.html")
    assert filtered["chart-timeline"]["layout"]["title"]["text"].startswith(
        "Executions per 15 minutes,"
    )


VALID = "2025-01-06T14:05:09.123456+00:00"
HOSTILE = [
    "2025-13-45T99:99:99.999999+00:00",
    "2025-01-0XT14:05:09.123456+00:00",
    "2025-02-29T14:05:09.123456+00:00",
    "2025-04-31T14:05:09.123456+00:00",
    "2025-00-06T14:05:09.123456+00:00",
    "2025-01-00T14:05:09.123456+00:00",
    "2025-01-06T24:05:09.123456+00:00",
    "2025-01-06T14:60:09.123456+00:00",
    "2025-01-06T14:05:60.123456+00:00",
    "0000-01-06T14:05:09.123456+00:00",
    "2025-01-06T14:05:09.12345 +00:00",
    "2025-1-06T14:05:09.1234567+00:00",
]


@st.composite
def stamps(draw: st.DrawFn) -> str:
    """A time in the store's layout, or one with a field out of range or a byte not a digit."""
    if draw(st.booleans()):
        return draw(st.sampled_from([VALID, "2024-02-29T23:59:59.999999+00:00", *HOSTILE]))
    chars = list(VALID)
    for _ in range(draw(st.integers(1, 3))):
        at = draw(st.sampled_from([i for i, c in enumerate(VALID[:26]) if c.isdigit()]))
        chars[at] = draw(st.sampled_from("0123456789X :-"))
    return "".join(chars)


@settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck))
@given(
    times=st.lists(stamps(), min_size=1, max_size=TOP),
    since=st.sampled_from([None, "2000-01-01T00:00:00+00:00", "2025-01-06T14:00:00+00:00"]),
    until=st.sampled_from([None, "2025-01-06T15:00:00+00:00", "9999-01-01T00:00:00+00:00"]),
)
def test_the_report_selects_by_time_as_query_does_whatever_the_timestamps(
    tmp_path_factory: pytest.TempPathFactory, times: list[str], since: str | None, until: str | None
) -> None:
    """A timestamp that is no real time is never selected by since or until (the failures
    table lists every selected entry: all are failures, at most TOP)."""
    path = tmp_path_factory.mktemp("stamps") / "telemetry.json"
    entries = [make_entry(n, timestamp=t, status="failure") for n, t in enumerate(times)]
    _write(path, entries)
    counts = read_log(path, make_filters(since=since, until=until))
    selected = query(path, limit=None, since=since, until=until)
    expected = sorted(entry["span_id"] for entry in selected)
    assert sorted(entry["span_id"] for entry in counts.failures()) == expected
    assert counts.matched == len(expected)
