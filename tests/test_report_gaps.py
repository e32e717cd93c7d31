"""The report's charts over time show a time bucket without executions as empty.

A count is 0 there (the timeline's bars and the trends' executions row), and a
failure rate or percentile has no value, so its line stops at the last bucket
with executions and starts again at the next: no line runs across days without
executions as if there were a trend between. Read from the page's figures (what
plotly.js receives) and, for the lines, from what headless Chromium draws.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Browser, Page

import betty_otel
from browser import browser, open_report  # noqa: F401 - the fixture
from cli_helpers import write
from helpers import make_entry, page_figures

ROOT = Path(__file__).resolve().parents[1]
BETTY_FIXTURE = ROOT / "docs" / "betty-registry-telemetry.json"
"""The repository's copy of a real Betty registry (ten days, a gap of a week)."""

START = datetime(2025, 1, 6, 10, tzinfo=timezone.utc)
TREND_ROWS = ("executions", "failure rate %", "p50 ms", "p95 ms", "p99 ms")
"""The trends chart's rows, top to bottom (y axes y, y2, ... y5)."""


def _burst(start: datetime, skills: tuple[str, ...]) -> list[dict[str, Any]]:
    """Ten executions of each skill over an hour and a half from start."""
    return [
        make_entry(
            number,
            skill=skill,
            timestamp=(start + timedelta(minutes=10 * number)).isoformat(timespec="microseconds"),
        )
        for skill in skills
        for number in range(10)
    ]


@pytest.fixture
def gapped_log(tmp_path: Path) -> Path:
    """Two bursts 48 hours apart: "both" runs in each, "early" only in the first."""
    entries = _burst(START, ("both", "early")) + _burst(START + timedelta(hours=48), ("both",))
    return write(tmp_path / "telemetry.json", entries)


def _hours(count: int) -> list[str]:
    return [(START + timedelta(hours=n)).strftime("%Y-%m-%d %H:%M:%S") for n in range(count)]


def _trend_rows(figure: dict[str, Any]) -> dict[tuple[str, str], dict[str, Any]]:
    """The trends chart's traces by (skill, row title)."""
    axes = ["y", *(f"y{n}" for n in range(2, len(TREND_ROWS) + 1))]
    return {
        (trace["name"], TREND_ROWS[axes.index(trace.get("yaxis", "y"))]): trace
        for trace in figure["data"]
    }


def test_the_timeline_counts_0_in_every_empty_bucket(gapped_log: Path, tmp_path: Path) -> None:
    page = betty_otel.report(gapped_log, tmp_path / "r.html").read_text(encoding="utf-8")
    timeline = page_figures(page)["chart-timeline"]
    assert timeline["layout"]["title"]["text"].startswith("Executions per hour,")
    busy = {0, 1, 48, 49}  # the hours with executions: 10:00 and 11:00 of two days
    for trace in timeline["data"]:
        assert trace["x"] == _hours(50)  # every hour from the first busy one to the last
        assert all(count == 0 for hour, count in enumerate(trace["y"]) if hour not in busy)
    assert sum(sum(trace["y"]) for trace in timeline["data"]) == 30


def test_trend_counts_are_0_and_rates_and_percentiles_absent_in_empty_buckets(
    gapped_log: Path, tmp_path: Path
) -> None:
    page = betty_otel.report(gapped_log, tmp_path / "r.html").read_text(encoding="utf-8")
    rows = _trend_rows(page_figures(page)["chart-trends"])
    assert len(rows) == 2 * len(TREND_ROWS)
    busy = {"both": {0, 1, 48, 49}, "early": {0, 1}}
    for (skill, row), trace in rows.items():
        assert trace["x"] == _hours(50)  # one time axis for every skill
        assert trace["connectgaps"] is False
        for hour, value in enumerate(trace["y"]):
            if hour in busy[skill]:
                assert isinstance(value, int | float), (skill, row, hour)
            elif row == "executions":
                assert value == 0, (skill, row, hour)
            else:
                assert value is None, (skill, row, hour)


def test_the_betty_fixture_draws_no_line_across_its_quiet_week(tmp_path: Path) -> None:
    """The registry ran Oct 23-25 and again Nov 2 (2025): nothing between is a trend."""
    page = betty_otel.report(BETTY_FIXTURE, tmp_path / "r.html").read_text(encoding="utf-8")
    found = page_figures(page)
    quiet = ("2025-10-26", "2025-11-02")  # no execution from Oct 26 to Nov 1, inclusive
    timeline = found["chart-timeline"]["data"]
    for trace in timeline:
        assert all(
            y == 0 for x, y in zip(trace["x"], trace["y"], strict=True) if quiet[0] <= x < quiet[1]
        )
    for (skill, row), trace in _trend_rows(found["chart-trends"]).items():
        inside = [
            y for x, y in zip(trace["x"], trace["y"], strict=True) if quiet[0] <= x < quiet[1]
        ]
        assert len(inside) == 28  # the week in 6-hour buckets, each there
        assert set(inside) == ({0} if row == "executions" else {None}), (skill, row)


@pytest.fixture
def gapped_page(browser: Browser, gapped_log: Path, tmp_path: Path) -> Iterator[Page]:  # noqa: F811
    opened = open_report(browser, betty_otel.report(gapped_log, tmp_path / "r.html"))
    assert opened.errors == []
    yield opened.page
    opened.page.close()


def test_the_browser_draws_a_percentile_line_in_one_piece_per_run_of_busy_buckets(
    gapped_page: Page,
) -> None:
    """Chromium draws "both"'s p50 as two lines (one per burst), its count as one line
    that drops to 0 between, and "early"'s p50 as one line over its own burst."""
    pieces: dict[str, int] = gapped_page.evaluate(
        """() => {
            const gd = document.getElementById('chart-trends');
            const traces = [...gd.querySelectorAll('.scatterlayer .trace')];
            const found = {};
            gd.data.forEach((trace, index) => {
                const lines = traces[index].querySelectorAll('path.js-line');
                const key = trace.name + ' ' + (trace.yaxis || 'y');
                found[key] = [...lines].filter(l => (l.getAttribute('d') || '') !== '').length;
            });
            return found;
        }"""
    )
    assert pieces["both y3"] == 2  # p50: the line breaks across the empty hours
    assert pieces["both y"] == 1  # executions: one line, down to 0 and back
    assert pieces["early y3"] == 1


def _log_of(tmp_path: Path, times: list[datetime]) -> Path:
    entries = [
        make_entry(number, timestamp=moment.isoformat(timespec="microseconds"))
        for number, moment in enumerate(times)
    ]
    return write(tmp_path / "telemetry.json", entries)


def test_the_widest_span_datetime_has_fits_about_120_buckets(tmp_path: Path) -> None:
    """Years 1 to 9999, every bucket on the axis: 100-year buckets, not 10,000 years."""
    edges = [datetime(1, 1, 1, tzinfo=timezone.utc), datetime(9999, 12, 31, tzinfo=timezone.utc)]
    page = betty_otel.report(_log_of(tmp_path, edges), tmp_path / "r.html")
    timeline = page_figures(page.read_text(encoding="utf-8"))["chart-timeline"]
    assert timeline["layout"]["title"]["text"].startswith("Executions per 100 years,")
    for trace in timeline["data"]:
        assert 90 <= len(trace["x"]) <= 130
        assert trace["x"][0].startswith("0001-01-01")
        assert trace["x"][-1].startswith("9900-01-01")


def test_the_bucket_fits_the_selected_entries_not_the_whole_log(tmp_path: Path) -> None:
    """A day selected from a 40-day log is drawn as that day alone is (in 15 minutes), not
    in the buckets of the whole log's span."""
    times = [START + timedelta(hours=number) for number in range(40 * 24)]
    since, until = "2025-01-20T00:00:00+00:00", "2025-01-21T00:00:00+00:00"
    log = _log_of(tmp_path, times)
    page = betty_otel.report(log, tmp_path / "r.html", since=since, until=until)
    timeline = page_figures(page.read_text(encoding="utf-8"))["chart-timeline"]
    assert timeline["layout"]["title"]["text"].startswith("Executions per 15 minutes,")
    for trace in timeline["data"]:
        assert trace["x"][0] >= since[:10]
        assert trace["x"][-1] < until[:10]
