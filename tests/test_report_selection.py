"""The report draws the entries its filters select, and only them.

Its time buckets fit the selected entries' span, not the whole log's: a filtered
report charts as the log of its selected entries alone would. Its time filters never
select an entry whose timestamp is no real time (month 13, a letter for a digit), as
`betty_otel.query.query` and `stats` never do.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import orjson
import pytest

import betty_otel
from betty_otel.query.parts import ENV_MIN_BYTES, ENV_PARALLEL
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
