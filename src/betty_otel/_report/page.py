"""The report's HTML page: one self-contained file, with plotly.js, styles and data inline.

Nothing on the page is fetched: plotly.js is inlined, fonts are the system's, and
a Content-Security-Policy forbids every request and every script but the page's
own (they carry a nonce, random per report). Text from the log is HTML-escaped in
the tables; the figures' JSON sits in ``application/json`` script elements with
``<``, ``>`` and ``&`` written as JSON escapes, so no text can close the element.
"""

from __future__ import annotations

import html
import secrets
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Final

import orjson

from betty_otel._entry import entry_error, number_text, value_text
from betty_otel._leaves import bounded_text
from betty_otel._report.buckets import utc_moment
from betty_otel._report.charts import Figure, plotly_js
from betty_otel._report.figures import ReportData

__all__ = ["Section", "page", "table"]

Section = tuple[str, str, str]
"""(id, heading, inner HTML already escaped)."""

_STYLE: Final = """
:root { color-scheme: light; }
body { font: 14px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif;
       margin: 0; background: #f3f5f8; color: #1d2733; }
header { background: #1d2733; color: #fff; padding: 18px 28px; }
header h1 { margin: 0 0 4px; font-size: 22px; }
header p { margin: 0; color: #c4ccd6; overflow-wrap: anywhere; }
main { padding: 8px 28px 40px; max-width: 1400px; }
section { background: #fff; border-radius: 8px; margin: 18px 0; padding: 14px 18px;
          box-shadow: 0 1px 3px rgba(0,0,0,.08); }
h2 { font-size: 17px; margin: 4px 0 12px; }
table { border-collapse: collapse; width: 100%; font-size: 13px; }
th, td { text-align: left; padding: 4px 8px; border-bottom: 1px solid #e5e9ef;
         vertical-align: top; }
th { background: #f6f8fa; font-weight: 600; }
td.num, th.num { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
td.err { color: #a32020; white-space: pre-wrap; overflow-wrap: anywhere; max-width: 520px; }
td.text { overflow-wrap: anywhere; max-width: 360px; }
.chart { width: 100%; }
.note { color: #5b6675; font-size: 12px; margin: 6px 0 0; }
.bad { color: #a32020; font-weight: 600; }
"""

_SCRIPT: Final = """
for (const holder of document.querySelectorAll("script[data-figure]")) {
  const figure = JSON.parse(holder.textContent);
  const target = document.getElementById(holder.dataset.figure);
  Plotly.newPlot(target, figure.data, figure.layout,
                 {responsive: true, displaylogo: false, showLink: false, showSendToCloud: false});
}
window.bettyReportReady = true;
"""


def esc(value: object) -> str:
    """Any value from the log as HTML text."""
    if value is None:
        return "-"
    text = bounded_text(value_text(value))
    return html.escape(text, quote=True)


def number(value: object, digits: int = 1) -> str:
    """A number for a table cell (``-`` when missing)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return esc(value)
    return number_text(value, digits) if isinstance(value, float) else f"{value:,}"


def table(headers: Sequence[str], rows: Iterable[Sequence[str]], kinds: Sequence[str]) -> str:
    """An HTML table of cells already escaped; kinds: a CSS class per column ("" for none)."""
    head = "".join(
        f'<th class="{kind}">{html.escape(name)}</th>'
        for name, kind in zip(headers, kinds, strict=True)
    )
    body = "".join(
        "<tr>"
        + "".join(f'<td class="{kind}">{cell}</td>' for cell, kind in zip(row, kinds, strict=True))
        + "</tr>"
        for row in rows
    )
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def figure_html(element_id: str, figure: Figure, nonce: str) -> str:
    """A chart's place on the page and its figure as inert JSON (never markup)."""
    raw = orjson.dumps(figure, option=orjson.OPT_SERIALIZE_NUMPY, default=_plain)
    safe = raw.replace(b"&", b"\\u0026").replace(b"<", b"\\u003c").replace(b">", b"\\u003e")
    return (
        f'<div class="chart" id="{element_id}"></div>'
        f'<script type="application/json" nonce="{nonce}" data-figure="{element_id}">'
        f"{safe.decode()}</script>"
    )


def _plain(value: Any) -> Any:
    """What orjson cannot write by itself (plotly's figure dicts hold only plain values)."""
    if isinstance(value, tuple | set | frozenset):
        return list(value)
    return str(value)


def entry_rows(entries: Iterable[Mapping[str, Any]]) -> list[list[str]]:
    """Table rows of entries: time, skill, status, duration, caller, trace, error."""
    return [
        [
            esc(entry.get("timestamp")),
            esc(entry.get("skill")),
            esc(entry.get("status")),
            number(entry.get("duration_ms")),
            esc(entry.get("caller")),
            esc(entry.get("trace_id")),
            esc(entry_error(entry)),
        ]
        for entry in entries
    ]


ENTRY_HEADERS: Final = ("time", "skill", "status", "ms", "caller", "trace id", "error")
ENTRY_KINDS: Final = ("num", "text", "", "num", "text", "text", "err")


def page(title: str, subtitle: str, sections: Sequence[Section], nonce: str) -> str:
    """The whole document."""
    policy = (
        "default-src 'none'; "
        f"script-src 'nonce-{nonce}'; "
        "style-src 'unsafe-inline'; img-src data: blob:; font-src data:; "
        "connect-src 'none'; base-uri 'none'; form-action 'none'"
    )
    body = "".join(
        f'<section id="{ident}"><h2>{html.escape(heading)}</h2>{inner}</section>'
        for ident, heading, inner in sections
    )
    return (
        "<!DOCTYPE html>\n"
        '<html lang="en"><head><meta charset="utf-8">'
        f'<meta http-equiv="Content-Security-Policy" content="{policy}">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{esc(title)}</title><style>{_STYLE}</style>"
        f'<script nonce="{nonce}">{plotly_js()}</script>'
        "</head><body>"
        f"<header><h1>{esc(title)}</h1><p>{subtitle}</p></header>"
        f"<main>{body}</main>"
        f'<script nonce="{nonce}">{_SCRIPT}</script>'
        "</body></html>\n"
    )


def new_nonce() -> str:
    """A fresh script nonce."""
    return secrets.token_urlsafe(18)


def when(seconds: float | None) -> str:
    """Epoch seconds as UTC text for the page."""
    if seconds is None:
        return "-"
    return utc_moment(seconds).isoformat(sep=" ", timespec="seconds")[:19] + " UTC"


def summary_line(data: ReportData) -> str:
    """The header's line under the title (escaped)."""
    health = data.health
    return (
        f"{esc(str(health.path))} · {data.matched:,} of {health.entries:,} entries selected · "
        f"{when(health.first)} to {when(health.last)}"
    )
