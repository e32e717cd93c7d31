"""The report's charts as the figures plotly.js draws (the optional ``report`` extra).

Figures are written as the plain dicts plotly.js takes, as plotly's Python API would
build them (its default template, from the plotly package's data, included): that API
costs more to import and validate than the whole page takes to build. plotly.js
itself comes from the package too (`plotly_js`).

Every text that comes from the log (skills, statuses, error messages) is HTML-escaped
before it goes into a figure: plotly.js renders a small HTML subset in labels,
legends and hover text, and shows escaped entities as the characters they stand
for, so a skill named ``<b>x</b>`` reads as such and never becomes markup.
"""

from __future__ import annotations

import html
from collections.abc import Iterable, Mapping
from functools import cache
from importlib.util import find_spec
from pathlib import Path
from typing import Any, Final

import orjson

from betty_otel._entry import entry_error, value_text
from betty_otel._leaves import bounded_text
from betty_otel._report.buckets import utc_moment
from betty_otel._report.figures import ReportData, TrendPoint
from betty_otel.query import TraceNode
from betty_otel.query.trace import INDENT_LEVELS, depth_mark, span_bounds

MISSING_PLOTLY: Final = "the report needs plotly: pip install 'betty-otel[report]'"

try:
    _PLOTLY = find_spec("plotly")
except ValueError:  # a module without a spec stands in its place
    _PLOTLY = None
if _PLOTLY is None or not _PLOTLY.submodule_search_locations:  # the extra is not installed
    raise ImportError(MISSING_PLOTLY)
_PACKAGE_DATA: Final = Path(next(iter(_PLOTLY.submodule_search_locations))) / "package_data"

__all__ = [
    "MISSING_PLOTLY",
    "STATUS_COLORS",
    "WATERFALL_ROWS",
    "Figure",
    "plotly_js",
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


def plotly_js() -> str:
    """plotly.js, as the plotly package ships it (minified)."""
    return (_PACKAGE_DATA / "plotly.min.js").read_text(encoding="utf-8")


@cache
def _template() -> bytes:
    """plotly's default template as the package ships it, read once a process."""
    return (_PACKAGE_DATA / "templates" / "plotly.json").read_bytes()


def _figure(data: list[dict[str, Any]], layout: dict[str, Any]) -> Figure:
    """A figure with plotly's default template, as its Python API writes it (parsed for
    each figure: no two figures share its dicts)."""
    return {"data": data, "layout": {**layout, "template": orjson.loads(_template())}}


def timeline(data: ReportData) -> Figure:
    """Executions per time bucket, stacked by status (every bucket, 0 where a status has none)."""
    period = {"xperiod": data.unit.seconds * 1000, "xperiodalignment": "start"}
    bars = [
        {
            "hovertemplate": f"%{{x}}<br>{text(status)}: %{{y:,}}<extra></extra>",
            "marker": {"color": STATUS_COLORS.get(status, _OTHER_COLOR)},
            "name": text(status),
            "x": [_when(start) for start, _ in points],
            **(period if data.unit.seconds else {}),
            "y": [count for _, count in points],
            "type": "bar",
        }
        for status, points in data.timeline.items()
    ]
    layout = _layout(
        f"Executions per {data.unit.name}, by status (UTC)", barmode="stack", height=360
    )
    layout["xaxis"] = {"type": "date"}
    layout["yaxis"] = {"title": {"text": "executions"}, "rangemode": "tozero"}
    return _figure(bars, layout)


def _trend_value(point: TrendPoint, field: str) -> float | None:
    value: float | None = getattr(point, field)
    if field == "failure_rate" and value is not None:
        return round(value * 100, 2)
    return value


def trends(data: ReportData) -> Figure:
    """Per skill (the most executed): count, failure rate and p50/p95/p99 per time bucket.

    A bucket without executions of the skill counts 0 and has no rate or percentile:
    those lines stop there and start again at the next bucket with executions. One row
    per measure, sharing the time axis (as plotly's make_subplots lays them out).
    """
    lines = []
    for index, (skill, points) in enumerate(data.trends.items()):
        color = _SKILL_COLORS[index % len(_SKILL_COLORS)]
        name = text(skill)
        for row, (label, field) in enumerate(_TREND_ROWS, 1):
            axis = "" if row == 1 else str(row)
            lines.append(
                {
                    "connectgaps": False,  # a bucket without executions breaks the line
                    "hovertemplate": f"{name}<br>%{{x}}<br>{label}: %{{y:,}}<extra></extra>",
                    "legendgroup": name,
                    "line": {"color": color, "width": 1.5},
                    "marker": {"size": 5},
                    "mode": "lines+markers",
                    "name": name,
                    "showlegend": row == 1,
                    "x": [_when(point.start) for point in points],
                    "y": [_trend_value(point, field) for point in points],
                    "type": "scatter",
                    "xaxis": f"x{axis}",
                    "yaxis": f"y{axis}",
                }
            )
    layout = _layout(f"Per skill, per {data.unit.name} (UTC)", height=900, hovermode="closest")
    layout.update(_rows([label for label, _ in _TREND_ROWS], spacing=0.03))
    layout["legend"] = {**layout["legend"], "y": -0.06}
    return _figure(lines, layout)


def _rows(titles: list[str], spacing: float) -> dict[str, Any]:
    """The axes and titles of one column of rows that share the x axis, top to bottom, as
    make_subplots(rows, 1, shared_xaxes=True, vertical_spacing, subplot_titles) lays them out."""
    count = len(titles)
    height = (1.0 - spacing * (count - 1)) / count
    last = f"x{count}"
    found: dict[str, Any] = {"annotations": []}
    for row in range(1, count + 1):
        below = count - row  # rows under this one
        low = below * height + below * spacing
        high = min(low + height, 1.0)
        name = "" if row == 1 else str(row)
        found[f"xaxis{name}"] = {"anchor": f"y{name}", "domain": [0.0, 1.0]}
        if row < count:
            found[f"xaxis{name}"].update(matches=last, showticklabels=False)
        found[f"yaxis{name}"] = {"anchor": f"x{name}", "domain": [low, high], "rangemode": "tozero"}
        found["annotations"].append(
            {
                "font": {"size": 16},
                "showarrow": False,
                "text": titles[row - 1],
                "x": 0.5,
                "xanchor": "center",
                "xref": "paper",
                "y": high,
                "yanchor": "bottom",
                "yref": "paper",
            }
        )
    return found


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
    bar = {
        "base": [times[0] - origin for _, _, times in rows],
        "hoverinfo": "text",
        "hovertext": [_hover(node.entry, node.note) for _, node, _ in rows],
        "marker": {
            "color": [
                STATUS_COLORS.get(status if isinstance(status, str) else "", _OTHER_COLOR)
                for status in statuses
            ]
        },
        "orientation": "h",
        "showlegend": False,
        "x": [max(times[1] - times[0], 0.001) for _, _, times in rows],
        "y": list(range(len(rows))),
        "type": "bar",
    }
    layout = _layout(
        title,
        height=max(160, 60 + 26 * len(rows)),
        bargap=0.25,
        margin={"l": 220, "r": 20, "t": 50, "b": 40},
    )
    layout["xaxis"] = {"title": {"text": "ms since the trace's first start"}, "rangemode": "tozero"}
    layout["yaxis"] = {
        "automargin": True,
        "autorange": "reversed",
        "ticktext": labels,
        "tickvals": list(range(len(rows))),
    }
    return _figure([bar], layout)
