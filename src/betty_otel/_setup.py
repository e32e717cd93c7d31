"""TracerProvider wiring: the file processor, OTLP alongside, and environment variables.

`configure()` sets up the pipeline; the instrumentation calls `pipeline()`, which
configures lazily from the environment on first use. A TracerProvider the program
already installed (an SDK one, set globally or passed in) gets our processor
added; otherwise betty_otel creates a private provider (it does not replace the
global one, so the program can still install its own).
"""

from __future__ import annotations

import atexit
import logging
import os
import threading
import weakref
from dataclasses import dataclass, field
from datetime import tzinfo
from typing import Final

from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, Span, SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter
from opentelemetry.sdk.trace.sampling import ALWAYS_ON

from betty_otel.exporter import BettyFileExporter

__all__ = ["Pipeline", "configure", "pipeline", "shutdown", "swap"]

logger = logging.getLogger("betty_otel")

TRACER_NAME: Final = "betty_otel"
_TRUE: Final = frozenset({"1", "true", "yes", "on"})


@dataclass
class Pipeline:
    """What the instrumentation needs: a tracer, or None when telemetry is disabled."""

    tracer: trace.Tracer | None
    exporter: BettyFileExporter | None = None
    provider: TracerProvider | None = None
    owns_provider: bool = False
    processors: list[SpanProcessor] = field(default_factory=list)

    def force_flush(self, timeout_millis: int = 30_000) -> bool:
        """Write everything buffered (batch mode, OTLP); True when all finished in time."""
        return all(processor.force_flush(timeout_millis) for processor in self.processors)


class _Switch(SpanProcessor):
    """Our processor inside a provider we do not own: can be switched off on reconfigure,
    since the SDK has no way to remove a processor from a provider."""

    def __init__(self, inner: SpanProcessor) -> None:
        self.inner: SpanProcessor | None = inner

    def on_start(self, span: Span, parent_context: Context | None = None) -> None:
        inner = self.inner
        if inner is not None:
            inner.on_start(span, parent_context)

    def on_end(self, span: ReadableSpan) -> None:
        inner = self.inner
        if inner is not None:
            inner.on_end(span)

    def shutdown(self) -> None:
        inner, self.inner = self.inner, None
        if inner is not None:
            inner.shutdown()

    def force_flush(self, timeout_millis: int = 30_000) -> bool:
        inner = self.inner
        return True if inner is None else inner.force_flush(timeout_millis)


class _FileProcessor(SpanProcessor):
    """Synchronous file export: the entry is on disk when the span's end() returns.

    Leaner than SimpleSpanProcessor, which also suppresses instrumentation around
    network exporters; writing a local file needs none of that.
    """

    def __init__(self, exporter: BettyFileExporter) -> None:
        self._exporter = exporter

    def on_end(self, span: ReadableSpan) -> None:
        context = span.context
        if context is not None and context.trace_flags.sampled:
            self._exporter.export((span,))

    def shutdown(self) -> None:
        self._exporter.shutdown()

    def force_flush(self, timeout_millis: int = 30_000) -> bool:  # noqa: ARG002 - SDK signature
        return True


class _BatchFileProcessor(SpanProcessor):
    """Batched file export that never drops a span.

    A background thread writes the queue every `delay` seconds, or as soon as
    `max_batch` spans wait. Unlike the SDK's BatchSpanProcessor, a full queue is not
    emptied by throwing spans away: the thread that ends a span past `max_queue`
    writes the queue itself (backpressure, not loss). Writes are serialised, so the
    file keeps recording order.
    """

    def __init__(
        self,
        exporter: BettyFileExporter,
        *,
        delay: float = 1.0,
        max_batch: int = 512,
        max_queue: int = 8192,
    ) -> None:
        self._exporter = exporter
        self._delay = delay
        self._max_batch = max_batch
        self._max_queue = max_queue
        self._init_state()
        # A forked child starts empty: the queued spans are the parent's to write.
        reinit = weakref.WeakMethod(self._init_state)
        os.register_at_fork(after_in_child=lambda: (method := reinit()) and method())

    def _init_state(self) -> None:
        self._lock = threading.Lock()
        self._export_lock = threading.Lock()
        self._wake = threading.Event()
        self._queue: list[ReadableSpan] = []
        self._thread: threading.Thread | None = None
        self._stopped = False

    def on_end(self, span: ReadableSpan) -> None:
        context = span.context
        if context is None or not context.trace_flags.sampled:
            return
        with self._lock:
            if self._stopped:
                stopped = True
            else:
                stopped = False
                self._queue.append(span)
                waiting = len(self._queue)
                if self._thread is None:
                    self._thread = threading.Thread(
                        target=self._run, name="betty_otel-file-writer", daemon=True
                    )
                    self._thread.start()
        if stopped:  # a late span after shutdown: the exporter counts it as dropped
            self._exporter.export((span,))
            return
        if waiting >= self._max_batch:
            self._wake.set()
        if waiting >= self._max_queue:
            self._drain()

    def _run(self) -> None:
        while not self._stopped:
            self._wake.wait(self._delay)
            self._wake.clear()
            self._drain()

    def _drain(self) -> None:
        """Write everything queued so far, in order, in batches of max_batch."""
        with self._export_lock:
            with self._lock:
                queued, self._queue = self._queue, []
            for start in range(0, len(queued), self._max_batch):
                self._exporter.export(queued[start : start + self._max_batch])

    def force_flush(self, timeout_millis: int = 30_000) -> bool:  # noqa: ARG002 - SDK signature
        self._drain()
        return True

    def shutdown(self) -> None:
        with self._lock:
            self._stopped = True
            thread = self._thread
        self._wake.set()
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout=5)
        self._drain()
        self._exporter.shutdown()


def recording_provider() -> TracerProvider:
    """A processor-less SDK TracerProvider that records even under OTEL_SDK_DISABLED.

    For the places where recording was asked for explicitly (TelemetryCapture.capture,
    the testing helper): the SDK reads OTEL_SDK_DISABLED at construction and would
    hand out no-op tracers.
    """
    provider = TracerProvider(sampler=ALWAYS_ON, shutdown_on_exit=False)
    provider._disabled = False
    return provider


_lock = threading.RLock()
_current: Pipeline | None = None


def _env_true(name: str) -> bool:
    return os.environ.get(name, "").strip().lower() in _TRUE


def disabled_by_env() -> bool:
    """OTEL_SDK_DISABLED=true or BETTY_TELEMETRY_DISABLED=1 turn instrumentation off."""
    return _env_true("OTEL_SDK_DISABLED") or _env_true("BETTY_TELEMETRY_DISABLED")


def _otlp_wanted() -> bool:
    """OTLP is on when an OTLP endpoint is set or OTEL_TRACES_EXPORTER lists otlp."""
    listed = os.environ.get("OTEL_TRACES_EXPORTER")
    if listed is not None and listed.strip():
        return "otlp" in {name.strip().lower() for name in listed.split(",")}
    return bool(
        os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT")
        or os.environ.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
    )


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
    protocol = (
        protocol
        or os.environ.get("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL")
        or os.environ.get("OTEL_EXPORTER_OTLP_PROTOCOL")
        or "http/protobuf"
    ).strip()
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


def _otlp_processor(endpoint: str | None) -> SpanProcessor | None:
    """A batch processor to the collector, or None (logged) when it cannot be made.

    OTLP settings come from the environment, where a bad value must cost the
    collector's copy, never the file or the program.
    """
    try:
        return BatchSpanProcessor(otlp_exporter(endpoint))
    except Exception:
        logger.exception("betty_otel: could not set up OTLP export; writing the file only")
        return None


def _user_provider(tracer_provider: trace.TracerProvider | None) -> TracerProvider | None:
    provider = tracer_provider if tracer_provider is not None else trace.get_tracer_provider()
    return provider if isinstance(provider, TracerProvider) else None


def configure(
    telemetry_file: str | os.PathLike[str] | None = None,
    *,
    batch: bool = False,
    all_spans: bool = False,
    otlp: bool | None = None,
    otlp_endpoint: str | None = None,
    tracer_provider: trace.TracerProvider | None = None,
    timezone: tzinfo | None = None,
    fsync: bool = False,
    lock_timeout: float = 10.0,
    max_bytes: int = 0,
    backups: int = 5,
) -> BettyFileExporter | None:
    """Set up (or redo) where betty_otel's spans go; returns the file exporter.

    Args:
        telemetry_file: the file; None means $BETTY_TELEMETRY_FILE or ./registry/telemetry.json.
        batch: write the file from a background batch processor instead of
            synchronously (faster calls; entries reach the disk within ~5 s and at exit).
        all_spans: also write spans of other instrumentation (without betty.skill).
        otlp: send spans over OTLP too; None (default) decides from the OTEL_* variables.
        otlp_endpoint: collector URL, instead of OTEL_EXPORTER_OTLP[_TRACES]_ENDPOINT.
        tracer_provider: an SDK TracerProvider to add our processor to; default is the
            global one if it is an SDK provider, else a private provider of ours.
        timezone: timestamps in this zone instead of UTC.
        fsync, lock_timeout, max_bytes, backups: file options, see BettyFileExporter.

    Returns None (and instruments nothing) when OTEL_SDK_DISABLED=true or
    BETTY_TELEMETRY_DISABLED=1.

    Raises:
        ValueError: an option is out of range.
    """
    with _lock:
        if disabled_by_env():
            _replace(Pipeline(tracer=None))
            return None
        exporter = BettyFileExporter(
            telemetry_file,
            all_spans=all_spans,
            timezone=timezone,
            fsync=fsync,
            lock_timeout=lock_timeout,
            max_bytes=max_bytes,
            backups=backups,
        )
        file_processor: SpanProcessor = (
            _BatchFileProcessor(exporter) if batch else _FileProcessor(exporter)
        )
        provider = _user_provider(tracer_provider)
        owns = provider is None
        if provider is None:
            # ALWAYS_ON: the file is an audit log of every execution, whatever
            # OTEL_TRACES_SAMPLER says (a program's own provider keeps its sampler).
            provider = TracerProvider(
                sampler=ALWAYS_ON, resource=Resource.create(), shutdown_on_exit=False
            )
        processors = [file_processor]
        if owns and (otlp if otlp is not None else _otlp_wanted()):
            otlp_processor = _otlp_processor(otlp_endpoint)
            if otlp_processor is not None:
                processors.append(otlp_processor)
        if not owns:
            # Only a provider we do not own needs the switch: ours is shut down whole.
            processors = [_Switch(processor) for processor in processors]
        for processor in processors:
            provider.add_span_processor(processor)
        new = Pipeline(
            tracer=provider.get_tracer(TRACER_NAME),
            exporter=exporter,
            provider=provider,
            owns_provider=owns,
            processors=processors,
        )
        _replace(new)
        if batch:
            _flush_in_multiprocessing_children(new)
        return exporter


def _replace(new: Pipeline) -> None:
    global _current
    old, _current = _current, new
    if old is not None:
        _close(old)


def _close(old: Pipeline) -> None:
    """Flush and detach a pipeline that is being replaced or shut down."""
    if old.owns_provider and old.provider is not None:
        old.provider.shutdown()
    else:
        for processor in old.processors:
            processor.shutdown()


def pipeline() -> Pipeline:
    """The current pipeline, configured from the environment on first use."""
    current = _current
    if current is None:
        with _lock:
            if _current is None:
                try:
                    configure()
                except Exception:
                    # Instrumented code must still run: untraced, said once, not retried.
                    logger.exception(
                        "betty_otel: could not configure telemetry from the environment; "
                        "instrumented code runs untraced"
                    )
                    _replace(Pipeline(tracer=None))
            current = _current
    assert current is not None
    return current


def swap(new: Pipeline | None) -> Pipeline | None:
    """Install a pipeline as is and return the previous one, unclosed (for testing)."""
    global _current
    with _lock:
        old, _current = _current, new
        return old


def shutdown() -> None:
    """Flush and close the pipeline; the next instrumented call configures a new one."""
    global _current
    with _lock:
        old, _current = _current, None
        if old is not None:
            _close(old)


def _flush_in_multiprocessing_children(current: Pipeline) -> None:
    """A multiprocessing child ends with os._exit, skipping atexit: flush batches there.

    multiprocessing runs its finalizers before that os._exit. A child clears the
    finalizers it inherits, so children forked later register theirs in an
    after-fork hook; a pipeline configured inside a child registers at once.
    """
    import multiprocessing  # noqa: PLC0415 - only needed in batch mode
    import multiprocessing.util  # noqa: PLC0415

    def in_child(pipe: Pipeline) -> None:
        multiprocessing.util.Finalize(None, pipe.force_flush, exitpriority=100)

    multiprocessing.util.register_after_fork(current, in_child)
    if multiprocessing.parent_process() is not None:
        in_child(current)


atexit.register(shutdown)
