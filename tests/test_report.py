"""`betty-telemetry report` opened in a real browser (headless Chromium through Playwright).

The page must render offline with no console error and no request but itself, draw
as many marks as the data has, show hostile text from the log as text without
running anything, and look like something (a screenshot that is not blank).
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser

from betty_otel.query import iter_query, stats, trace
from browser import Opened, browser, open_report, pixel_spread  # noqa: F401 - the fixture
from cli_helpers import LEGACY_FILE, run, write
from helpers import make_entry

ROOT = Path(__file__).resolve().parents[1]


def _report(log: Path, out: Path, *args: str) -> Path:
    result = run("report", "--file", str(log), "-o", str(out), *args)
    assert result.returncode == 0, result.stderr
    assert out.is_file()
    return out


@pytest.fixture(scope="module")
def demo_log(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The log examples/quickstart.py writes, run three times."""
    folder = tmp_path_factory.mktemp("demo")
    log = folder / "telemetry.json"
    env = dict(os.environ, BETTY_TELEMETRY_FILE=str(log))
    for _ in range(3):
        subprocess.run(
            [sys.executable, str(ROOT / "examples" / "quickstart.py")],
            cwd=folder,
            env=env,
            check=True,
            capture_output=True,
            timeout=120,
        )
    return log


@pytest.fixture(scope="module")
def demo(browser: Browser, demo_log: Path) -> Iterator[Opened]:  # noqa: F811
    opened = open_report(browser, _report(demo_log, demo_log.parent / "report.html"))
    yield opened
    opened.page.close()


def test_demo_report_loads_offline_without_errors_or_requests(demo: Opened) -> None:
    assert demo.errors == []
    assert demo.requests == [demo.url]
    assert demo.dialogs == []


def test_timeline_draws_one_bar_per_bucket_and_status(demo: Opened, demo_log: Path) -> None:
    chart = demo.charts()["chart-timeline"]
    assert chart["bars"] == sum(chart["points"]) > 0
    assert sum(sum(ys) for ys in chart["y"]) == len(list(iter_query(demo_log)))
    assert set(chart["names"]) == {"success", "failure", "timeout"}


def test_trends_draw_a_marker_per_skill_and_bucket(demo: Opened, demo_log: Path) -> None:
    chart = demo.charts()["chart-trends"]
    assert chart["markers"] == sum(chart["points"]) > 0
    skills = {entry["skill"] for entry in iter_query(demo_log)}
    assert set(chart["names"]) == skills  # five rows per skill, one legend name


def test_skill_table_matches_stats(demo: Opened, demo_log: Path) -> None:
    """Count, failures and percentiles per skill are those of `stats` (same definition)."""
    rows = demo.page.eval_on_selector_all(
        "#skills table tbody tr", "rows => rows.map(r => [...r.cells].map(c => c.textContent))"
    )
    expected = stats(demo_log)
    assert len(rows) == len(expected)
    for cells in rows:
        group = expected[cells[0]]
        assert cells[1] == f"{group.count:,}"
        assert cells[2] == f"{group.failures:,}"
        assert cells[4:7] == [f"{value:,.1f}" for value in (group.p50, group.p95, group.p99)]


def test_trace_waterfall_draws_one_bar_per_execution(browser: Browser, demo_log: Path) -> None:  # noqa: F811
    compose = next(e for e in iter_query(demo_log) if e["skill"] == "workflow.compose")
    roots = trace(compose["trace_id"], demo_log)
    executions = sum(1 for root in roots for _ in root.walk())
    assert executions == 4  # compose, two validations and the publish step
    out = _report(demo_log, demo_log.parent / "trace.html", "--trace-id", compose["trace_id"])
    opened = open_report(browser, out)
    try:
        assert opened.errors == []
        charts = opened.charts()
        waterfalls = [chart for name, chart in charts.items() if name.startswith("chart-trace-")]
        assert len(waterfalls) == 1
        assert waterfalls[0]["bars"] == waterfalls[0]["points"][0] == executions
        labels = opened.texts("[id^=chart-trace-] .ytick text")
        assert next(label.strip(" └") for label in labels) == "workflow.compose"
    finally:
        opened.page.close()


def test_betty_fixture_reads_legacy_statuses_as_failures(browser: Browser, tmp_path: Path) -> None:  # noqa: F811
    opened = open_report(browser, _report(LEGACY_FILE, tmp_path / "legacy.html"))
    try:
        assert opened.errors == []
        assert opened.requests == [opened.url]
        health = dict(
            opened.page.eval_on_selector_all(
                "#health table tbody tr",
                "rows => rows.map(r => [r.cells[0].textContent, r.cells[1].textContent])",
            )
        )
        assert health["entries"] == "225"
        assert health["legacy entries (old Betty tools)"] == "225"
        assert health["damaged regions (skipped)"] == "0"
        timeline = opened.charts()["chart-timeline"]
        assert sum(sum(ys) for ys in timeline["y"]) == 225
        assert "failure" in timeline["names"]
        assert "failed" not in timeline["names"]  # "failed" is read as Betty's failure
        failures = opened.texts("#failures tbody tr td:nth-child(3)")
        assert failures
        assert set(failures) <= {"failed", "failure", "error", "timeout"}
    finally:
        opened.page.close()


HOSTILE_SKILL = "</script><script>window.__pwned=1</script><b>bold</b>&amp;"
HOSTILE_ERROR = '<img src=x onerror="window.__pwned=2;alert(1)"> %{x} </textarea>'


def test_hostile_text_shows_as_text_and_runs_nothing(browser: Browser, tmp_path: Path) -> None:  # noqa: F811
    log = write(
        tmp_path / "telemetry.json",
        [
            make_entry(
                number,
                skill=HOSTILE_SKILL,
                status="failure",
                error_message=HOSTILE_ERROR,
                caller='"><svg onload=alert(3)>',
                trace_id="ab" * 16,
                span_id=f"{number + 1:016x}",
                parent_span_id=None if number == 0 else f"{1:016x}",
            )
            for number in range(3)
        ],
    )
    out = _report(log, tmp_path / "hostile.html")
    raw = out.read_text(encoding="utf-8")
    assert "<script>window.__pwned" not in raw
    assert "<img src=x" not in raw
    opened = open_report(browser, out)
    try:
        assert opened.page.evaluate("typeof window.__pwned") == "undefined"
        assert opened.dialogs == []
        assert opened.errors == []
        assert opened.requests == [opened.url]
        assert opened.page.evaluate("document.querySelectorAll('img, svg[onload]').length") == 0
        assert set(opened.texts("#failures tbody td:nth-child(2)")) == {HOSTILE_SKILL}
        assert set(opened.texts("#failures tbody td:nth-child(7)")) == {HOSTILE_ERROR}
        assert HOSTILE_SKILL in opened.texts("#chart-trends .legendtext")
        ticks = opened.texts("[id^=chart-trace-] .ytick text")
        assert ticks
        assert all(HOSTILE_SKILL in tick for tick in ticks)
        assert opened.charts()["chart-timeline"]["names"] == ["failure"]
    finally:
        opened.page.close()


def test_screenshot_is_not_blank(browser: Browser, demo: Opened) -> None:  # noqa: F811
    spread, colours = pixel_spread(browser, demo.page.screenshot(full_page=True))
    assert spread > 20  # a blank or single-colour page has (almost) none
    assert colours > 50


def test_the_readme_picture_is_drawn_from_the_repository_s_own_files(
    browser: Browser,  # noqa: F811
    tmp_path: Path,
) -> None:
    """docs/screenshot.py (`python3 dev.py screenshot`) draws the report of the Betty
    registry in docs/: a picture of the page, not a blank or an error."""
    image = tmp_path / "report.png"
    result = subprocess.run(
        [sys.executable, str(ROOT / "docs" / "screenshot.py"), str(image)],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    spread, colours = pixel_spread(browser, image.read_bytes())
    assert spread > 20
    assert colours > 50
