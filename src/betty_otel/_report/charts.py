"""The report's charts as plotly figures (the optional ``report`` extra).

Every text that comes from the log (skills, statuses, error messages) is HTML-escaped
before it goes into a figure: plotly.js renders a small HTML subset in labels,
legends and hover text, and shows escaped entities as the characters they stand
for, so a skill named ``<b>x</b>`` reads as such and never becomes markup.
"""

from __future__ import annotations

import html
from collections.abc import Iterable, Mapping
from typing import Any, Final

from betty_otel._entry import entry_error, value_text
from betty_otel._leaves import bounded_text
from betty_otel._report.buckets import utc_moment
from betty_otel._report.figures import ReportData, TrendPoint
from betty_otel.query import TraceNode
from betty_otel.query.trace import INDENT_LEVELS, depth_mark, span_bounds

MISSING_PLOTLY: Final = "the report needs plotly: pip install 'betty-otel[report]'"

try:
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots
except ImportError as exc:  # the optional extra is not installed
    raise ImportError(MISSING_PLOTLY) from exc

__all__ = [
    "MISSING_PLOTLY",
    "STATUS_COLORS",
    "WATERFALL_ROWS",
    "Figure",
    "timeline",
    "trends",
    "waterfall",
]

Figure = dict[str, Any]
"""A figure as plotly.js takes it: {"data": [...], "layout": {...}}."""

WATERFALL_ROWS: Final = 200
"""The executions a waterfall shows at most: the first, depth first (plotly draws every bar)."""

STATUS_COLORS: Final = {
    "success": "#2e9e5b",
    "failure": "#d64545",
    "error": "#8e2bb5",
    "timeout": "#e08a1e",
    "pending": "#7f8c9a",
}
_OTHER_COLOR: Final = "#4a6fa5"
_SKILL_COLORS: Final = (
    "#1f77b4",
    "#ff7f0e",
    "#2ca02c",
    "#d62728",
    "#9467bd",
    "#8c564b",
    "#e377c2",
    "#17becf",
)
_FONT: Final = {"family": "system-ui, -apple-system, 'Segoe UI', Roboto, sans-serif", "size": 12}
_TREND_ROWS: Final = (
    ("executions", "count"),
    ("failure rate %", "failure_rate"),
    ("p50 ms", "p50"),
    ("p95 ms", "p95"),
    ("p99 ms", "p99"),
)
"""The trends chart's rows: (axis title, TrendPoint field)."""


def text(value: object) -> str:
    """A value from the log as text that plotly shows literally: HTML escaped, and ``%``
    too, so that a value put in a hover template is never read as a placeholder."""
    raw = bounded_text(value if isinstance(value, str) else value_text(value))
    return html.escape(raw, quote=True).replace("%", "&#37;")


def _when(seconds: float) -> str:
    """Epoch seconds as plotly's date format (UTC)."""
    return utc_moment(seconds).isoformat(sep=" ", timespec="seconds")[:19]


def _layout(title: str, **extra: Any) -> dict[str, Any]:
    layout: dict[str, Any] = {
        "title": {"text": html.escape(bounded_text(title)), "x": 0.01},
        "font": _FONT,
        "margin": {"l": 60, "r": 20, "t": 50, "b": 40},
        "paper_bgcolor": "#ffffff",
        "plot_bgcolor": "#fafbfc",
        "legend": {"orientation": "h", "y": -0.15},
    }
    layout.update(extra)
    return layout


def _figure(fig: Any) -> Figure:
    """A plotly figure as the plain dict plotly.js takes (validated by plotly on the way)."""
    result: Figure = fig.to_plotly_json()
    return result


def timeline(data: ReportData) -> Figure:
    """Executions per time bucket, stacked by status (every bucket, 0 where a status has none)."""
    fig = go.Figure()
    for status, points in data.timeline.items():
        fig.add_trace(
            go.Bar(
                x=[_when(start) for start, _ in points],
                y=[count for _, count in points],
                name=text(status),
                marker_color=STATUS_COLORS.get(status, _OTHER_COLOR),
                xperiod=data.unit.seconds * 1000 if data.unit.seconds else None,
                xperiodalignment="start" if data.unit.seconds else None,
                hovertemplate=f"%{{x}}<br>{text(status)}: %{{y:,}}<extra></extra>",
            )
        )
    fig.update_layout(
        _layout(f"Executions per {data.unit.name}, by status (UTC)", barmode="stack", height=360)
    )
    fig.update_xaxes(type="date")
    fig.update_yaxes(title_text="executions", rangemode="tozero")
    return _figure(fig)


def _trend_value(point: TrendPoint, field: str) -> float | None:
    value: float | None = getattr(point, field)
    if field == "failure_rate" and value is not None:
        return round(value * 100, 2)
    return value


def trends(data: ReportData) -> Figure:
    """Per skill (the most executed): count, failure rate and p50/p95/p99 per time bucket.

    A bucket without executions of the skill counts 0 and has no rate or percentile:
    those lines stop there and start again at the next bucket with executions.
    """
    fig = make_subplots(
        rows=len(_TREND_ROWS),
        cols=1,
        shared_xaxes=True,
        vertical_spacing=0.03,
        subplot_titles=[label for label, _ in _TREND_ROWS],
    )
    for index, (skill, points) in enumerate(data.trends.items()):
        color = _SKILL_COLORS[index % len(_SKILL_COLORS)]
        name = text(skill)
        for row, (label, field) in enumerate(_TREND_ROWS, 1):
            fig.add_trace(
                go.Scatter(
                    x=[_when(point.start) for point in points],
                    y=[_trend_value(point, field) for point in points],
                    mode="lines+markers",
                    connectgaps=False,  # a bucket without executions breaks the line
                    name=name,
                    legendgroup=name,
                    showlegend=row == 1,
                    line={"color": color, "width": 1.5},
                    marker={"size": 5},
                    hovertemplate=f"{name}<br>%{{x}}<br>{label}: %{{y:,}}<extra></extra>",
                ),
                row=row,
                col=1,
            )
    fig.update_layout(
        _layout(f"Per skill, per {data.unit.name} (UTC)", height=900, hovermode="closest")
    )
    fig.update_layout(legend={"orientation": "h", "y": -0.06})
    fig.update_yaxes(rangemode="tozero")
    return _figure(fig)


def _hover(entry: Mapping[str, Any], note: str | None) -> str:
    lines = [
        f"<b>{text(entry.get('skill'))}</b>",
        f"status: {text(entry.get('status'))}",
        f"duration: {text(entry.get('duration_ms'))} ms",
        f"caller: {text(entry.get('caller'))}",
        f"span: {text(entry.get('span_id'))}",
    ]
    error = entry_error(entry)
    if error is not None:
        lines.append(f"error: {text(error[:300])}")
    if note is not None:
        lines.append(f"note: {text(note)}")
    return "<br>".join(lines)


def _waterfall_rows(
    roots: Iterable[TraceNode], limit: int
) -> tuple[list[tuple[int, TraceNode, tuple[float, float]]], int]:
    """The first limit executions with a readable time, depth first, as (depth, node, (start,
    end) in epoch ms); and how many executions the trace has."""
    rows: list[tuple[int, TraceNode, tuple[float, float]]] = []
    total = 0
    for root in roots:
        for depth, node in root.walk():
            total += 1
            bounds = span_bounds(node.entry) if len(rows) < limit else None
            if bounds is not None:
                rows.append((depth, node, (bounds[0] * 1000, bounds[1] * 1000)))
    return rows, total


def _waterfall_label(depth: int, node: TraceNode) -> str:
    """A row's label: the skill, indented by depth up to INDENT_LEVELS, then marked with
    its depth."""
    indent = "  " * min(depth, INDENT_LEVELS) + ("└ " if depth else "")
    flag = " ⚠" if node.note is not None else ""
    return f"{indent}{depth_mark(depth)}{text(node.skill)}{flag}"


def waterfall(trace_id: str, roots: Iterable[TraceNode], limit: int = WATERFALL_ROWS) -> Figure:
    """One trace as a waterfall: a bar per execution from its start to its end, children
    indented under their parent (depth first), offsets in ms from the trace's first start.

    At most limit bars (the first, depth first), whatever the trace's size or depth;
    the title says when there are more. An execution with a broken link (a cycle, a
    parent not in the log, ...) is marked ⚠ and its note is in its hover text.
    """
    rows, total = _waterfall_rows(roots, limit)
    origin = min((times[0] for _, _, times in rows), default=0.0)
    labels = [_waterfall_label(depth, node) for depth, node, _ in rows]
    statuses = [node.entry.get("status") for _, node, _ in rows]
    title = f"Trace {trace_id}"
    if total > len(rows):
        title += f": {len(rows):,} of {total:,} executions shown (depth first)"
    fig = go.Figure(
        go.Bar(
            orientation="h",
            y=list(range(len(rows))),
            base=[times[0] - origin for _, _, times in rows],
            x=[max(times[1] - times[0], 0.001) for _, _, times in rows],
            marker_color=[
                STATUS_COLORS.get(status if isinstance(status, str) else "", _OTHER_COLOR)
                for status in statuses
            ],
            hovertext=[_hover(node.entry, node.note) for _, node, _ in rows],
            hoverinfo="text",
            showlegend=False,
        )
    )
    fig.update_layout(
        _layout(
            title,
            height=max(160, 60 + 26 * len(rows)),
            bargap=0.25,
            margin={"l": 220, "r": 20, "t": 50, "b": 40},
        )
    )
    fig.update_yaxes(
        tickvals=list(range(len(rows))), ticktext=labels, autorange="reversed", automargin=True
    )
    fig.update_xaxes(title_text="ms since the trace's first start", rangemode="tozero")
    return _figure(fig)
