"""OTLP export alongside the file, set up from the OTEL_* environment variables.

Spans reach the collector through the SDK's BatchSpanProcessor, off the program's
threads. Closing a pipeline (at exit, on shutdown() or a reconfigure) gives its
collectors a small total budget (`exit_budget`, about 1 s): a collector that is down
or never answers costs the program that much at most, and one concise warning.
The file is flushed before, never within, that budget. A `BatchedExporter` takes any span
exporter (the console exporter of OTEL_TRACES_EXPORTER=console too, see `exporters`).
"""

from __future__ import annotations

import logging
import math
import os
import threading
import time
from collections.abc import Callable, Sequence
from typing import Final, Protocol

from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult

from betty_otel._errors import internal_error

__all__ = [
    "DEFAULT_EXIT_TIMEOUT",
    "BatchedExporter",
    "Closing",
    "MutedThreads",
    "close_collectors",
    "closing_thread",
    "exit_budget",
    "otlp_collector",
    "otlp_exporter",
    "otlp_protocol",
]

logger = logging.getLogger(__name__)

DEFAULT_EXIT_TIMEOUT: Final = 1.0
"""Seconds a closing pipeline waits for the collector, unless configured otherwise."""
_TIMEOUT_VARIABLES: Final = ("OTEL_EXPORTER_OTLP_TRACES_TIMEOUT", "OTEL_EXPORTER_OTLP_TIMEOUT")


def otlp_protocol(signal: str) -> str:
    """OTEL_EXPORTER_OTLP_{signal}_PROTOCOL, else OTEL_EXPORTER_OTLP_PROTOCOL, else
    http/protobuf (signal: TRACES or METRICS)."""
    return (
        os.environ.get(f"OTEL_EXPORTER_OTLP_{signal}_PROTOCOL")
        or os.environ.get("OTEL_EXPORTER_OTLP_PROTOCOL")
        or "http/protobuf"
    ).strip()


def otlp_exporter(
    endpoint: str | None = None,
    *,
    protocol: str | None = None,
    timeout: float | None = None,
) -> SpanExporter:
    """An OTLP span exporter; protocol, endpoint and timeout default to the OTEL_* variables.

    The protocol is OTEL_EXPORTER_OTLP[_TRACES]_PROTOCOL: http/protobuf (default) or
    grpc. An HTTP endpoint given as a base URL gets the standard /v1/traces path.

    Raises:
        ImportError: the OTLP exporters are not installed (the message says how).
    """
    protocol = protocol.strip() if protocol else otlp_protocol("TRACES")
    hint = "the OTLP exporter is not installed; install it with: pip install 'betty-otel[otlp]'"
    try:
        if protocol == "grpc":
            from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import (  # noqa: PLC0415
                OTLPSpanExporter as GrpcExporter,
            )

            return GrpcExporter(endpoint=endpoint, timeout=timeout)
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import (  # noqa: PLC0415
            OTLPSpanExporter as HttpExporter,
        )
    except ImportError as exc:
        raise ImportError(f"{hint} ({exc})") from None
    if protocol != "http/protobuf":
        logger.warning("OTLP protocol %r is not supported; using http/protobuf", protocol)
    if endpoint and not endpoint.rstrip("/").endswith("/v1/traces"):
        endpoint = endpoint.rstrip("/") + "/v1/traces"
    return HttpExporter(endpoint=endpoint, timeout=timeout)


def exit_budget(exit_timeout: float | None = None) -> float:
    """Seconds a closing pipeline gives the collector: exit_timeout if given, else
    OTEL_EXPORTER_OTLP_TRACES_TIMEOUT or OTEL_EXPORTER_OTLP_TIMEOUT (seconds, as the
    Python SDK reads them), else DEFAULT_EXIT_TIMEOUT.

    Raises:
        ValueError: exit_timeout is not a finite number >= 0.
    """
    if exit_timeout is not None:
        given: object = exit_timeout
        if (
            isinstance(given, bool)
            or not isinstance(given, (int, float))
            or not (math.isfinite(given) and given >= 0)
        ):
            msg = f"exit_timeout must be a finite number of seconds >= 0, got {exit_timeout!r}"
            raise ValueError(msg)
        return float(given)
    for name in _TIMEOUT_VARIABLES:
        text = os.environ.get(name, "").strip()
        if not text:
            continue
        try:
            value = float(text)
        except ValueError:
            value = math.nan
        if math.isfinite(value) and value >= 0:
            return value
        logger.warning("betty_otel: ignoring %s=%r (not a number of seconds >= 0)", name, text)
    return DEFAULT_EXIT_TIMEOUT


class MutedThreads(logging.Filter):
    """Drops the log records of the threads that flush a closing pipeline's spans."""

    def __init__(self) -> None:
        super().__init__()
        self.threads: set[int] = set()

    def filter(self, record: logging.LogRecord) -> bool:
        return record.thread not in self.threads


class _ClosingAware(SpanExporter):
    """The OTLP exporter, told when its pipeline closes.

    From then on it counts what the collector did not take, and hushes the
    exporter's own per-retry warnings: the closing pipeline says it once.
    """

    def __init__(self, inner: SpanExporter) -> None:
        self.inner = inner
        self.closing = False
        self.unsent = 0
        self.hush = MutedThreads()

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        if not self.closing:
            return self.inner.export(spans)
        self.hush.threads.add(threading.get_ident())
        result = SpanExportResult.FAILURE
        try:
            result = self.inner.export(spans)
        finally:
            if result is not SpanExportResult.SUCCESS:
                self.unsent += len(spans)
        return result

    def shutdown(self) -> None:
        self.inner.shutdown()

    def force_flush(self, timeout_millis: int = 30_000) -> bool:
        return self.inner.force_flush(timeout_millis)


class BatchedExporter:
    """A batch processor and the exporter behind it: what a pipeline sends besides the file."""

    def __init__(self, exporter: SpanExporter, name: str = "the OTLP collector") -> None:
        self.name = name
        """Who receives the spans, for the warnings at close."""
        self._exporter = _ClosingAware(exporter)
        self.processor = BatchSpanProcessor(self._exporter)

    def start_closing(self) -> threading.Thread | None:
        """Send what is queued and shut down, in a daemon thread; None when no thread
        can be started (late in interpreter shutdown). Never raises."""
        exporter = self._exporter
        exporter.closing = True
        loggers = [logging.getLogger(kind.__module__) for kind in type(exporter.inner).__mro__]
        for each in loggers:
            each.addFilter(exporter.hush)

        def send_and_shut_down() -> None:
            exporter.hush.threads.add(threading.get_ident())
            try:
                self.processor.shutdown()  # type: ignore[no-untyped-call] # untyped in the SDK
            except Exception:  # noqa: BLE001 - the SDK's shutdown must not reach the program
                internal_error(f"shutting down the exporter of {self.name}")
            finally:
                for each in loggers:
                    each.removeFilter(exporter.hush)

        return closing_thread(send_and_shut_down, "betty_otel-collector-close")

    def report(self, finished: bool, budget: float) -> None:
        """One warning when the spans were not all taken at close."""
        if not finished:
            logger.warning(
                "betty_otel: %s did not take the last spans within %g s; "
                "they are not sent (the telemetry file has every entry)",
                self.name,
                budget,
            )
        elif self._exporter.unsent:
            logger.warning(
                "betty_otel: %s did not take %d span(s) at close; "
                "they are not sent (the telemetry file has every entry)",
                self.name,
                self._exporter.unsent,
            )


class Closing(Protocol):
    """What close_collectors closes: a BatchedExporter of spans, or betty_otel's own metrics."""

    def start_closing(self) -> threading.Thread | None: ...

    def report(self, finished: bool, budget: float) -> None: ...


def closing_thread(close: Callable[[], None], name: str) -> threading.Thread | None:
    """Run close in a daemon thread started now (a `Closing.start_closing`); None when no
    thread can be started (late in interpreter shutdown)."""
    worker = threading.Thread(target=close, name=name, daemon=True)
    try:
        worker.start()
    except RuntimeError:  # no new threads this late in interpreter shutdown
        return None
    return worker


def close_collectors(collectors: Sequence[Closing], budget: float) -> None:
    """Close all collectors at once, waiting at most budget seconds in total; never raises.

    A collector that is down or silent is left behind (its daemon thread gives up on
    its own), with one warning; nothing of the file depends on it.
    """
    deadline = time.monotonic() + budget
    closing = [(collector, collector.start_closing()) for collector in collectors]
    for collector, worker in closing:
        if worker is not None:
            worker.join(max(0.0, deadline - time.monotonic()))
        collector.report(worker is not None and not worker.is_alive(), budget)


def otlp_collector(endpoint: str | None) -> BatchedExporter | None:
    """The collector's half of a pipeline, or None (logged) when it cannot be made.

    OTLP settings come from the environment, where a bad value must cost the
    collector's copy, never the file or the program.
    """
    try:
        return BatchedExporter(otlp_exporter(endpoint))
    except Exception:
        logger.exception("betty_otel: could not set up OTLP export; writing the file only")
        return None
