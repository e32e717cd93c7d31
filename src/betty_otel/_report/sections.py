"""The report's sections, in page order: health, timeline, skills, failures, slowest, traces."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Final

from betty_otel._report import charts
from betty_otel._report.figures import ReportData
from betty_otel._report.page import (
    ENTRY_HEADERS,
    ENTRY_KINDS,
    Section,
    entry_rows,
    esc,
    figure_html,
    number,
    table,
    when,
)
from betty_otel.query import TraceNode

__all__ = ["MAX_SKILL_ROWS", "sections"]

MAX_SKILL_ROWS: Final = 200


def _health(data: ReportData) -> Section:
    health = data.health
    files = "<br>".join(f"{esc(str(path))} ({size:,} bytes)" for path, size in health.files)
    damaged = f'<span class="bad">{health.damaged:,}</span>' if health.damaged else "0"
    rows = [
        ["file", esc(str(health.path))],
        ["files read (oldest first)", files or "none: the file does not exist"],
        ["entries", f"{health.entries:,}"],
        ["selected by the filters", f"{data.matched:,}"],
        ["time range", f"{when(health.first)} to {when(health.last)}"],
        ["damaged regions (skipped)", damaged],
        ["legacy entries (old Betty tools)", f"{health.legacy:,}"],
        ["selected entries without a readable time", f"{health.untimed:,}"],
        ["selected entries with a skill, status or caller that is not text", f"{health.foreign:,}"],
        ["selected entries without a numeric duration", f"{health.no_duration:,}"],
    ]
    inner = table(["", ""], rows, ["", "num"])
    if health.damage:
        damage_rows = [
            [esc(str(file)), number(item.offset), number(item.length), esc(item.reason)]
            for file, item in health.damage
        ]
        inner += "<h3>Damaged regions</h3>" + table(
            ["file", "offset", "bytes", "reason"], damage_rows, ["text", "num", "num", "text"]
        )
    inner += (
        '<p class="note">Legacy entries use a status such as "failed", the old '
        "<code>error</code> key, or have no trace id; they are read with Betty's meaning. "
        "Values of other kinds are shown as well as they can be: a time that is no readable "
        "time (missing, not ISO 8601, or no date in UTC) as written, and left out of the "
        "charts over time; a skill, status or caller that is not text as JSON; an entry "
        "without a numeric duration is counted but left out of the duration figures. "
        "Run <code>betty-telemetry check</code> for details on damage.</p>"
    )
    return ("health", "The log's health", inner)


def _skills(data: ReportData, nonce: str) -> Section:
    rows = [
        [
            esc(row.skill),
            number(row.count),
            number(row.failures),
            f"{row.failure_rate * 100:.1f}%",
            number(row.p50),
            number(row.p95),
            number(row.p99),
            esc(", ".join(f"{name} {count:,}" for name, count in row.statuses.items())),
        ]
        for row in data.skills[:MAX_SKILL_ROWS]
    ]
    headers = ["skill", "count", "failures", "failure rate", "p50 ms", "p95 ms", "p99 ms"]
    kinds = ["text", "num", "num", "num", "num", "num", "num", "text"]
    inner = table([*headers, "statuses"], rows, kinds)
    if len(data.skills) > MAX_SKILL_ROWS:
        inner += f'<p class="note">and {len(data.skills) - MAX_SKILL_ROWS:,} more skills.</p>'
    inner += (
        '<p class="note">Failures: failure, error and timeout (and the old words for them). '
        "Percentiles by linear interpolation between the closest ranks, as "
        "<code>betty-telemetry stats</code> computes them.</p>"
    )
    if data.trends:
        inner += figure_html("chart-trends", charts.trends(data), nonce)
    return ("skills", "Per skill", inner)


def sections(
    data: ReportData, traces: Callable[[], Sequence[tuple[str, list[TraceNode]]]], nonce: str
) -> list[Section]:
    """Every section of the page, each with its chart or table; traces() gives the traces
    to draw, asked for last (they may still be being read)."""
    timeline = figure_html("chart-timeline", charts.timeline(data), nonce)
    if not data.timeline:
        timeline = '<p class="note">No selected entry has a readable time.</p>'
    skills = _skills(data, nonce)
    traces_html = (
        "".join(
            figure_html(f"chart-trace-{index}", charts.waterfall(trace_id, roots), nonce)
            for index, (trace_id, roots) in enumerate(traces())
        )
        or '<p class="note">No trace to show: no selected entry has a trace id.</p>'
    )
    return [
        _health(data),
        ("timeline", "Executions over time", timeline),
        skills,
        (
            "failures",
            "Most recent failures",
            table(ENTRY_HEADERS, entry_rows(data.failures), ENTRY_KINDS),
        ),
        (
            "slowest",
            "Slowest executions",
            table(ENTRY_HEADERS, entry_rows(data.slowest), ENTRY_KINDS),
        ),
        ("traces", "Trace waterfalls", traces_html),
    ]
