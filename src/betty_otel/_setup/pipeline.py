"""The pipeline: configure(), the lazily configured current pipeline, and shutdown.

`configure()` sets up the pipeline; the instrumentation calls `pipeline()`, which
configures lazily from the environment on first use. A TracerProvider the program
already installed (an SDK one, set globally or passed in) gets our processor
added; otherwise betty_otel creates a private provider (it does not replace the
global one, so the program can still install its own). The current pipeline is
`STATE.pipeline`, guarded by `STATE.setup_lock`.
"""

from __future__ import annotations

import atexit
import logging
import os
from dataclasses import dataclass, field
from datetime import tzinfo
from typing import Final

from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import (
    SpanLimits,
    SpanProcessor,
    SynchronousMultiSpanProcessor,
    Tracer,
    TracerProvider,
)
from opentelemetry.sdk.trace.id_generator import RandomIdGenerator
from opentelemetry.sdk.trace.sampling import ALWAYS_ON
from opentelemetry.sdk.util.instrumentation import InstrumentationScope

from betty_otel._setup.otlp import otlp_processor, otlp_wanted
from betty_otel._setup.processors import BatchFileProcessor, FileProcessor, Switch
from betty_otel._state import STATE
from betty_otel.exporter import BettyFileExporter
from betty_otel.propagation import environment_context
from betty_otel.propagation import propagate_to_subprocesses as subprocess_hook

__all__ = [
    "TRACER_NAME",
    "Pipeline",
    "configure",
    "disabled_by_env",
    "pipeline",
    "recording_tracer",
    "shared_recording_tracer",
    "shutdown",
    "swap",
]

logger = logging.getLogger(__name__)

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
    remote_parent: Context | None = None
    """The parent of root executions: $TRACEPARENT when betty_otel was configured."""

    def force_flush(self, timeout_millis: int = 30_000) -> bool:
        """Write everything buffered (batch mode, OTLP); True when all finished in time."""
        return all(processor.force_flush(timeout_millis) for processor in self.processors)


def recording_tracer(*processors: SpanProcessor) -> Tracer:
    """An SDK tracer that records even under OTEL_SDK_DISABLED, into processors.

    For the places where recording was asked for explicitly (TelemetryCapture.capture,
    the testing helper). A TracerProvider reads OTEL_SDK_DISABLED when it is made and
    then hands out no-op tracers, so this builds the tracer with the SDK's public
    Tracer constructor, as a provider would (sampler ALWAYS_ON, default resource).
    """
    to_all = SynchronousMultiSpanProcessor()  # type: ignore[no-untyped-call] # untyped in the SDK
    for processor in processors:
        to_all.add_span_processor(processor)
    return Tracer(
        ALWAYS_ON,
        Resource.create(),
        to_all,
        RandomIdGenerator(),
        # The deprecated InstrumentationInfo (its constructor warns); spans take None.
        None,  # type: ignore[arg-type]
        SpanLimits(),
        InstrumentationScope(TRACER_NAME, ""),
    )


def shared_recording_tracer() -> Tracer:
    """One processor-less recording tracer for the process (see recording_tracer)."""
    tracer = STATE.recording_tracer
    if tracer is None:
        tracer = STATE.recording_tracer = recording_tracer()
    return tracer


def _env_true(name: str) -> bool:
    return os.environ.get(name, "").strip().lower() in _TRUE


def disabled_by_env() -> bool:
    """OTEL_SDK_DISABLED=true or BETTY_TELEMETRY_DISABLED=1 turn instrumentation off."""
    return _env_true("OTEL_SDK_DISABLED") or _env_true("BETTY_TELEMETRY_DISABLED")


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
    propagate_to_subprocesses: bool = False,
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
        propagate_to_subprocesses: every ``subprocess`` started inside a recorded
            execution gets its trace context and skill in its environment (see
            `betty_otel.subprocess_env`), so its executions join this trace.

    Returns None (and instruments nothing) when OTEL_SDK_DISABLED=true or
    BETTY_TELEMETRY_DISABLED=1.

    Raises:
        ValueError: an option is out of range.
    """
    with STATE.setup_lock:
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
            BatchFileProcessor(exporter) if batch else FileProcessor(exporter)
        )
        new = _pipeline_with(file_processor, exporter, tracer_provider, otlp, otlp_endpoint)
        new.remote_parent = environment_context()
        _replace(new)
        subprocess_hook(propagate_to_subprocesses)
        if batch:
            _flush_in_multiprocessing_children(new)
        return exporter


def _pipeline_with(
    file_processor: SpanProcessor,
    exporter: BettyFileExporter,
    tracer_provider: trace.TracerProvider | None,
    otlp: bool | None,
    otlp_endpoint: str | None,
) -> Pipeline:
    """The file processor (and OTLP) on the program's SDK provider, or on one of ours."""
    provider = _user_provider(tracer_provider)
    owns = provider is None
    if provider is None:
        # ALWAYS_ON: the file is an audit log of every execution, whatever
        # OTEL_TRACES_SAMPLER says (a program's own provider keeps its sampler).
        provider = TracerProvider(
            sampler=ALWAYS_ON, resource=Resource.create(), shutdown_on_exit=False
        )
    processors = [file_processor]
    if owns and (otlp if otlp is not None else otlp_wanted()):
        to_collector = otlp_processor(otlp_endpoint)
        if to_collector is not None:
            processors.append(to_collector)
    if not owns:
        # Only a provider we do not own needs the switch: ours is shut down whole.
        processors = [Switch(processor) for processor in processors]
    for processor in processors:
        provider.add_span_processor(processor)
    return Pipeline(
        tracer=provider.get_tracer(TRACER_NAME),
        exporter=exporter,
        provider=provider,
        owns_provider=owns,
        processors=processors,
    )


def _replace(new: Pipeline) -> None:
    subprocess_hook(False)  # configure turns it on again when asked
    old, STATE.pipeline = STATE.pipeline, new
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
    current = STATE.pipeline
    if current is None:
        with STATE.setup_lock:
            if STATE.pipeline is None:
                try:
                    configure()
                except Exception:
                    # Instrumented code must still run: untraced, said once, not retried.
                    logger.exception(
                        "betty_otel: could not configure telemetry from the environment; "
                        "instrumented code runs untraced"
                    )
                    _replace(Pipeline(tracer=None))
            current = STATE.pipeline
    assert current is not None
    return current


def swap(new: Pipeline | None) -> Pipeline | None:
    """Install a pipeline as is and return the previous one, unclosed (for testing)."""
    with STATE.setup_lock:
        old, STATE.pipeline = STATE.pipeline, new
        return old


def shutdown() -> None:
    """Flush and close the pipeline; the next instrumented call configures a new one."""
    with STATE.setup_lock:
        old, STATE.pipeline = STATE.pipeline, None
        subprocess_hook(False)
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
