"""``betty-telemetry export --otlp``: replay the log's entries to a collector as spans.

Each entry becomes the span the live pipeline would have sent (`entry_to_span`),
oldest first, in batches. This is the only command that loads the OTel SDK and the
OTLP exporters.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path
from typing import Final

from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult
from opentelemetry.sdk.util.instrumentation import InstrumentationScope

import betty_otel
from betty_otel._replay import ATTR_NOTE, ATTR_TIMESTAMP, entry_to_span
from betty_otel._setup import TRACER_NAME, otlp_exporter
from betty_otel.cli.commandline import UsageError
from betty_otel.cli.logfile import log_file
from betty_otel.cli.progress import Progress
from betty_otel.cli.read import filters_from
from betty_otel.cli.terminal import err, out
from betty_otel.query import Filters, iter_query

__all__ = ["cmd_export"]


def _exporter(protocol: str, endpoint: str | None, timeout: float) -> SpanExporter:
    """The OTLP span exporter for protocol; endpoint None means the OTEL_* variables."""
    try:
        return otlp_exporter(endpoint, protocol=protocol, timeout=timeout)
    except ImportError as exc:
        raise RuntimeError(str(exc)) from None


class _LastMessage(logging.Handler):
    """Keeps the last message the OTLP exporter logged, to explain a failed export."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.message = ""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self.message = record.getMessage().splitlines()[0]
        except Exception:  # noqa: BLE001 - a logging handler must never raise
            self.message = str(record.msg)


_BATCH_CHARS: Final = 1 << 19
"""A batch is sent once its spans' texts reach this many characters, whatever --batch-size
says: at most 4 bytes each, the request stays under the 4 MiB a collector accepts by
default over gRPC. A span's texts are bounded (`betty_otel._replay`), so one span fits."""
_SPAN_CHARS: Final = 64
"""What a span takes besides its texts (ids, times, kind, status), about."""


def _text_size(span: ReadableSpan) -> int:
    """About the characters a span takes in a request: its name, attribute keys and texts."""
    items = (span.attributes or {}).items()
    texts = sum(len(key) + (len(value) if isinstance(value, str) else 8) for key, value in items)
    return _SPAN_CHARS + len(span.name) + texts


class _Replay:
    """Sends the spans of a file's entries in batches; counts what went and what not."""

    def __init__(
        self, exporter: SpanExporter, batch_size: int, progress: Progress | None = None
    ) -> None:
        self.exporter = exporter
        self.batch_size = batch_size
        self.progress = progress
        self.batch: list[ReadableSpan] = []
        self.batch_chars = 0
        """About the size of the batch's texts (see _BATCH_CHARS)."""
        self.exported = 0
        self.skipped = 0
        self.moved = 0
        """Spans sent at another time than their entry's (outside what OTLP carries)."""

    def flush(self) -> bool:
        """Send the batch; False when the collector rejected it or did not answer."""
        if not self.batch:
            return True
        if self.exporter.export(self.batch) is not SpanExportResult.SUCCESS:
            return False
        self.exported += len(self.batch)
        self.batch.clear()
        self.batch_chars = 0
        if self.progress is not None:
            self.progress.show(f"exporting: {self.exported:,} spans sent")
        return True

    def run(self, path: Path, filters: Filters, resource: Resource) -> bool:
        """Send every matching entry, oldest first; stop at the first failed batch.

        The batch that failed is sent once more at the end, as the last batch is.
        """
        scope = InstrumentationScope(TRACER_NAME, betty_otel.__version__)
        for entry in iter_query(path, filters=filters, newest_first=False):
            span = entry_to_span(entry, resource, scope, otlp=True)
            if span is None:
                self.skipped += 1
                continue
            self.moved += ATTR_NOTE in (span.attributes or {})
            self.batch.append(span)
            self.batch_chars += _text_size(span)
            full = len(self.batch) >= self.batch_size or self.batch_chars >= _BATCH_CHARS
            if full and not self.flush():
                break
        return self.flush()


def _notes(skipped: int, moved: int) -> str:
    """What the summary line adds about entries that could not be sent as they are."""
    notes = []
    if skipped:
        notes.append(f"{skipped} entries without a readable timestamp skipped")
    if moved:
        notes.append(
            f"{moved} entries with a time outside what OTLP carries sent at the nearest"
            f" time it does, with {ATTR_NOTE} and {ATTR_TIMESTAMP}"
        )
    return f" ({'; '.join(notes)})" if notes else ""


def cmd_export(args: argparse.Namespace) -> int:
    if not args.otlp:
        msg = "choose a destination: --otlp (the only one so far)"
        raise UsageError(msg)
    filters = filters_from(args)
    path = log_file(args.file, must_exist=True)
    resource = Resource.create({"service.name": args.service_name} if args.service_name else {})
    exporter = _exporter(args.protocol, args.endpoint, args.timeout)
    replay = _Replay(exporter, args.batch_size, Progress.on_terminal())
    where = args.endpoint or "the endpoint of the OTEL_EXPORTER_OTLP_* variables"
    quiet = _LastMessage()
    otel_logger = logging.getLogger("opentelemetry")
    otel_logger.addHandler(quiet)
    otel_logger.propagate = False
    try:
        ok = replay.run(path, filters, resource)
    finally:
        replay.exporter.shutdown()
        otel_logger.removeHandler(quiet)
        otel_logger.propagate = True
        if replay.progress is not None:
            replay.progress.clear()
    exported = replay.exported
    note = _notes(replay.skipped, replay.moved)
    if not ok:
        detail = f": {quiet.message}" if quiet.message else ""
        err(
            f"Error: the collector at {where} rejected the spans or did not answer{detail}; "
            f"exported {exported} before that{note}"
        )
        return 1
    out(f"Exported {exported} spans from {path} to {where} over OTLP ({args.protocol}){note}")
    return 0
