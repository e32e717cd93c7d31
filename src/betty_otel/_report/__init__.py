"""The HTML report of the log: `report` writes one self-contained page that opens offline.

ingest: one streaming pass over the log (`betty_otel.query.blocks`) into a
collect.ReportCounts; figures: the figures; charts: plotly figures; sections and
page: the HTML. Charts need the optional extra ``betty-otel[report]`` (plotly);
without it `report` raises ImportError saying how to install it, before reading.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Final

from betty_otel._report.figures import ReportData, summarize
from betty_otel._store import log_files, resolve_path, telemetry_file_of
from betty_otel.query import FilterArgs, Filters, PathArg, make_filters
from betty_otel.query.filters import filters_of
from betty_otel.query.trace import read_traces

if TYPE_CHECKING:
    from typing_extensions import Unpack

__all__ = ["DEFAULT_OUTPUT", "Progress", "render_report", "report"]

DEFAULT_OUTPUT: Final = "report.html"
MAX_TRACES: Final = 3
"""Waterfalls of this many of the slowest traces (every trace asked for with trace_id)."""

Progress = Callable[[int, int], None]
"""Called with (bytes read, bytes in all files) while the log is read."""


def render_report(
    telemetry_file: PathArg = None,
    *,
    filters: Filters | None = None,
    progress: Progress | None = None,
    title: str = "Betty telemetry report",
) -> str:
    """The report of the entries selected by filters (default: all) as one HTML page.

    Raises:
        ImportError: plotly (the ``report`` extra) is not installed.
    """
    # Imported here, not above: they need plotly, and `import betty_otel` must not.
    from betty_otel._report import charts  # noqa: F401, PLC0415 - fails first if plotly is missing
    from betty_otel._report.inflight import inflight_section  # noqa: PLC0415
    from betty_otel._report.ingest import read_log  # noqa: PLC0415
    from betty_otel._report.page import new_nonce, page, summary_line  # noqa: PLC0415
    from betty_otel._report.sections import sections  # noqa: PLC0415

    base = resolve_path(telemetry_file)
    chosen = filters or make_filters()
    counts = read_log(base, chosen, progress)
    data = summarize(counts)
    wanted = sorted(chosen.trace_id) if chosen.trace_id is not None else _slowest_traces(data)
    found = read_traces(base, wanted)  # one read for all: ids from the log or --trace-id
    traces = [(trace_id, roots) for trace_id, roots in found.items() if roots]
    nonce = new_nonce()
    parts = [*sections(data, traces, nonce), inflight_section(base, chosen, counts)]
    return page(title, summary_line(data), parts, nonce)


def _slowest_traces(data: ReportData) -> list[str]:
    """The trace ids of the slowest executions, slowest first, at most MAX_TRACES."""
    found: list[str] = []
    for entry in data.slowest:
        trace_id = entry.get("trace_id")
        if isinstance(trace_id, str) and trace_id and trace_id not in found:
            found.append(trace_id)
    return found[:MAX_TRACES]


def report(
    telemetry_file: PathArg = None,
    output: str | os.PathLike[str] = DEFAULT_OUTPUT,
    *,
    filters: Filters | None = None,
    progress: Progress | None = None,
    path: PathArg = None,
    **filter_args: Unpack[FilterArgs],
) -> Path:
    """Write the HTML report of the log (default: the usual file) to output.

    The filters are the keywords of `betty_otel.query.query` (``filters``
    replaces them); with trace_id, the page shows those traces' waterfalls, else
    the slowest traces'. progress, if given, is called with (bytes read, bytes in
    all files) as the log is read. The page is written to a temporary file beside
    output, then renamed over it, so a reader never sees half a page. Returns the
    output path. ``path`` is the deprecated name of ``telemetry_file``.

    Raises:
        ImportError: plotly (the ``report`` extra) is not installed.
        ValueError: output is the log itself (or one of its rotated files).
    """
    chosen = filters_of(filters, filter_args)
    base = resolve_path(telemetry_file_of(telemetry_file, path))
    target = Path(output)
    _check_output(target, base)
    text = render_report(base, filters=chosen, progress=progress)
    _write(target, text.encode("utf-8"))
    return target


def _check_output(target: Path, log: Path) -> None:
    """Refuse to write the report over the log or one of its rotated files."""
    for file in log_files(log):
        try:
            same = target.exists() and target.samefile(file)
        except OSError:
            same = False
        if same or target.resolve() == file.resolve():
            msg = f"the report would overwrite the telemetry log {file}: choose another output"
            raise ValueError(msg)


def _write(target: Path, data: bytes) -> None:
    """Write data to target through a temporary file in its folder and a rename."""
    folder = target.parent
    fd, name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=folder)
    temp = Path(name)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
        temp.chmod(0o644)
        temp.replace(target)
    except BaseException:
        temp.unlink(missing_ok=True)
        raise
