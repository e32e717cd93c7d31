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

from betty_otel._entry import entry_error, entry_time, is_number, value_text
from betty_otel._report.buckets import utc_moment
from betty_otel._report.summary import ReportData, TrendPoint
from betty_otel.query import TraceNode

MISSING_PLOTLY: Final = "the report needs plotly: pip install 'betty-otel[report]'"

try:
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots
except ImportError as exc:  # the optional extra is not installed
    raise ImportError(MISSING_PLOTLY) from exc

__all__ = ["MISSING_PLOTLY", "STATUS_COLORS", "Figure", "timeline", "trends", "waterfall"]

Figure = dict[str, Any]
"""A figure as plotly.js takes it: {"data": [...], "layout": {...}}."""

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


def text(value: object) -> str:
    """A value from the log as text that plotly shows literally: HTML escaped, and ``%``
    too, so that a value put in a hover template is never read as a placeholder."""
    raw = value if isinstance(value, str) else value_text(value)
    return html.escape(raw, quote=True).replace("%", "&#37;")


def _when(seconds: float) -> str:
    """Epoch seconds as plotly's date format (UTC)."""
    return utc_moment(seconds).isoformat(sep=" ", timespec="seconds")[:19]


def _layout(title: str, **extra: Any) -> dict[str, Any]:
    layout: dict[str, Any] = {
        "title": {"text": html.escape(title), "x": 0.01},
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
    """Executions per time bucket, stacked by status (one bar per bucket and status with any)."""
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


_TREND_ROWS: Final = (
    ("executions", "count"),
    ("failure rate %", "failure_rate"),
    ("p50 ms", "p50"),
    ("p95 ms", "p95"),
    ("p99 ms", "p99"),
)


def _trend_value(point: TrendPoint, field: str) -> float | None:
    value: float | None = getattr(point, field)
    if field == "failure_rate" and value is not None:
        return round(value * 100, 2)
    return value


def trends(data: ReportData) -> Figure:
    """Per skill (the most executed): count, failure rate and p50/p95/p99 per time bucket."""
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


def _hover(entry: Mapping[str, Any]) -> str:
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
    return "<br>".join(lines)


def _span_times(entry: Mapping[str, Any]) -> tuple[float, float] | None:
    """(start, end) in epoch milliseconds: end is the timestamp, start end minus duration."""
    moment = entry_time(entry.get("timestamp"))
    if moment is None:
        return None
    end = moment.timestamp() * 1000
    duration = entry.get("duration_ms")
    return (end - float(duration) if is_number(duration) else end), end


def waterfall(trace_id: str, roots: Iterable[TraceNode], limit: int = 200) -> Figure:
    """One trace as a waterfall: a bar per execution from its start to its end, children
    indented under their parent (depth first), offsets in ms from the trace's first start."""
    rows: list[tuple[int, TraceNode, tuple[float, float]]] = []
    for root in roots:
        for depth, node in root.walk():
            times = _span_times(node.entry)
            if times is not None and len(rows) < limit:
                rows.append((depth, node, times))
    origin = min((times[0] for _, _, times in rows), default=0.0)
    labels = [f"{'  ' * depth}{'└ ' if depth else ''}{text(node.skill)}" for depth, node, _ in rows]
    statuses = [node.entry.get("status") for _, node, _ in rows]
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
            hovertext=[_hover(node.entry) for _, node, _ in rows],
            hoverinfo="text",
            showlegend=False,
        )
    )
    fig.update_layout(
        _layout(
            f"Trace {trace_id}",
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
