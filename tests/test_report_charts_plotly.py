"""The report's figures are plain dicts, written as plotly's Python API would build them.

`betty_otel._report.charts` writes the figures plotly.js takes without importing
plotly's Python API (whose import and validation cost more than the whole page). These
tests hold them to that API: each figure is one plotly accepts as it is (its
validators raise on any property plotly.js does not know), carries plotly's default
template, and the trends' rows are laid out exactly as ``make_subplots`` lays them out.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import plotly.graph_objects as go
import plotly.io as pio
from plotly.subplots import make_subplots

from betty_otel._report import charts
from betty_otel._report.figures import ReportData, summarize
from betty_otel._report.ingest import read_log
from betty_otel.query import make_filters
from betty_otel.query.trace import read_traces
from helpers import append_entries, make_entry, run_script

TRACE = f"{7:032x}"


def report_data(path: Path) -> ReportData:
    """A log over a few hours, statuses of every kind, one trace of a parent and children."""
    entries = [
        make_entry(
            number,
            timestamp=f"2025-10-24T{10 + number % 5:02d}:{number % 60:02d}:00.000000+00:00",
            skill=["a", "<b>b</b>", "c%d"][number % 3],
            status=["success", "failure", "timeout", "error", "pending"][number % 5],
            trace_id=TRACE if number < 4 else f"{number + 100:032x}",
            span_id=f"{number + 1:016x}",
            parent_span_id=f"{1:016x}" if 0 < number < 4 else None,
        )
        for number in range(40)
    ]
    append_entries(path, entries)
    return summarize(read_log(path, make_filters()))


def figures(path: Path) -> list[dict[str, Any]]:
    data = report_data(path)
    roots = read_traces(path, [TRACE])[TRACE]
    return [
        charts.timeline(data),
        charts.trends(data),
        charts.waterfall(TRACE, roots),
        charts.waterfall(TRACE, roots, limit=1),
    ]


def test_every_figure_is_one_plotly_accepts_as_it_is(tmp_path: Path) -> None:
    for figure in figures(tmp_path / "telemetry.json"):
        checked = go.Figure(figure).to_plotly_json()  # raises on any unknown property
        assert json.loads(json.dumps(checked, default=list)) == json.loads(json.dumps(figure))


def test_the_figures_carry_plotlys_default_template(tmp_path: Path) -> None:
    template = pio.templates["plotly"].to_plotly_json()
    for figure in figures(tmp_path / "telemetry.json"):
        assert figure["layout"]["template"] == template


def close(mine: Any, theirs: Any) -> bool:
    """Equal, floats to rounding (plotly sums the rows' heights in its own order)."""
    if isinstance(mine, dict) and isinstance(theirs, dict):
        return mine.keys() == theirs.keys() and all(close(mine[k], theirs[k]) for k in mine)
    if isinstance(mine, list) and isinstance(theirs, list):
        return len(mine) == len(theirs) and all(map(close, mine, theirs))
    if isinstance(mine, float) or isinstance(theirs, float):
        return math.isclose(mine, theirs, abs_tol=1e-12)
    return bool(mine == theirs)


def test_the_trend_rows_are_laid_out_as_make_subplots_lays_them_out(tmp_path: Path) -> None:
    layout = charts.trends(report_data(tmp_path / "telemetry.json"))["layout"]
    titles = [annotation["text"] for annotation in layout["annotations"]]
    reference = make_subplots(
        rows=len(titles), cols=1, shared_xaxes=True, vertical_spacing=0.03, subplot_titles=titles
    )
    reference.update_yaxes(rangemode="tozero")
    expected = reference.to_plotly_json()["layout"]
    expected.pop("template")
    assert titles == ["executions", "failure rate %", "p50 ms", "p95 ms", "p99 ms"]
    assert close({key: layout[key] for key in expected}, expected)


def test_a_report_imports_no_part_of_plotly(tmp_path: Path) -> None:
    """plotly's package is only read (plotly.js and the template), never imported."""
    log = tmp_path / "telemetry.json"
    report_data(log)
    output = run_script(
        f"""
        import sys
        import betty_otel
        betty_otel.report({str(log)!r}, {str(tmp_path / "report.html")!r})
        print(sorted(name for name in sys.modules if name.split(".")[0] == "plotly"))
        """,
        tmp_path,
    )
    assert output.strip() == "[]"
    page = (tmp_path / "report.html").read_text(encoding="utf-8")
    assert charts.plotly_js() in page
