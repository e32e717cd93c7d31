"""The HTML report of the log: `report` writes one self-contained page that opens offline.

ingest: one streaming pass over the log (`betty_otel.query.blocks`) into a
collect.ReportCounts, which also indexes where each trace is (traceindex); waterfalls:
the traces drawn, from that index (else found by a forked child while figures, the
figures, and charts, the figures as plotly.js takes them, are made); sections and
page: the HTML. Charts need the optional extra ``betty-otel[report]`` (plotly's
package, for plotly.js and its template); without it `report` raises ImportError
saying how to install it, before reading.
"""

from __future__ import annotations

import os
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Final

from betty_otel._report.figures import summarize
from betty_otel._report.waterfalls import TraceRead, slowest_traces
from betty_otel._store import log_files, resolve_path, telemetry_file_of
from betty_otel.query import FilterArgs, Filters, PathArg, make_filters
from betty_otel.query.filters import filters_of
from betty_otel.query.trace import TraceNode

if TYPE_CHECKING:
    from typing_extensions import Unpack

__all__ = ["DEFAULT_OUTPUT", "Progress", "render_report", "report"]

DEFAULT_OUTPUT: Final = "report.html"

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
    started = time.monotonic()
    counts = read_log(base, chosen, progress)
    given = chosen.trace_id
    wanted = sorted(given) if given is not None else slowest_traces(counts.slowest_entries())
    # One read for all the traces (ids from the log or --trace-id), aside while the
    # figures and charts are made.
    found = counts.traces.entries(base, wanted) if wanted else None
    with TraceRead(base, wanted, 2 * (time.monotonic() - started) + 5, found) as reading:
        data = summarize(counts)
        nonce = new_nonce()

        def traces() -> list[tuple[str, list[TraceNode]]]:
            return [(trace_id, roots) for trace_id, roots in reading.result().items() if roots]

        parts = [*sections(data, traces, nonce), inflight_section(base, chosen, counts)]
    return page(title, summary_line(data), parts, nonce)


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
