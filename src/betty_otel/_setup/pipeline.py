"""The pipeline: configure(), the lazily configured current pipeline, and shutdown.

`configure()` sets up the pipeline; the instrumentation calls `current_pipeline()`, which
configures lazily from the environment on first use. A TracerProvider the program
already installed (an SDK one, set globally or passed in) gets our processor
added, once (a ProcessorSwitch, re-pointed on reconfigure), and our tracer on it records
what the program's sampler drops (see `sampling`); otherwise betty_otel uses a
private ALWAYS_ON provider (it does not replace the global one, so the program can
still install its own), with the exporters OTEL_TRACES_EXPORTER asks for (see
`exporters`), made once and behind a ProcessorSwitch too while the OTEL_* settings it was
made from stay the same; when the file would be its spans' only receiver (no collector, not
all_spans, no SDK setting that changes spans), a `filespan.FileTracer` instead. A
program that installs its provider after that gets one warning saying to call
``configure(tracer_provider=...)``; betty_otel does not switch by itself. The current
pipeline is `STATE.pipeline`, guarded by the setup lock here. Closing a pipeline
flushes the file first, then gives the collectors at most their exit budget (see
`otlp`); the metrics are set up by `betty_otel._metrics.setup` at each
configure and closed by shutdown together with the collectors, within the same budget.
However often betty_otel is configured and shut down, what stays behind is
one of each: one processor per provider, one audit sampler on our tracer, one
provider of our own, the process-wide hooks installed once (see `threads`,
`propagation`) and no thread of a closed pipeline.
"""

from __future__ import annotations

import atexit
import contextlib
import logging
import os
import threading
import weakref
from dataclasses import dataclass
from datetime import tzinfo
from typing import TYPE_CHECKING

from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import (
    SpanProcessor,
    SynchronousMultiSpanProcessor,
    Tracer,
    TracerProvider,
)
from opentelemetry.sdk.trace.sampling import ALWAYS_ON

from betty_otel._environment import disabled_by_env, sdk_settings_set
from betty_otel._inflight.hooks import finish_unfinished, unwatch, watch
from betty_otel._inflight.settings import inflight_after as _inflight_after
from betty_otel._metrics.series import max_series
from betty_otel._metrics.setup import take_metrics, use_metrics
from betty_otel._setup.exporters import env_collectors
from betty_otel._setup.filespan import FileTracer
from betty_otel._setup.otlp import (
    DEFAULT_EXIT_TIMEOUT,
    BatchedExporter,
    Closing,
    close_collectors,
    exit_budget,
)
from betty_otel._setup.processors import BatchFileProcessor, FileProcessor, ProcessorSwitch
from betty_otel._setup.recording import TRACER_NAME
from betty_otel._setup.sampling import audit
from betty_otel._setup.shimlog import shim_log
from betty_otel._setup.threads import propagate_to_threads
from betty_otel._state import STATE
from betty_otel.exporter import BettyFileExporter
from betty_otel.propagation import environment_context
from betty_otel.propagation import propagate_to_subprocesses as subprocess_hook

if TYPE_CHECKING:
    from collections.abc import Iterator

    from opentelemetry.metrics import MeterProvider

    from betty_otel._metrics.provider import OwnMetrics

__all__ = [
    "Pipeline",
    "after_fork_in_child",
    "configure",
    "current_pipeline",
    "disabled_by_env",
    "setup_held",
    "shutdown",
    "swap",
]

logger = logging.getLogger(__name__)

_setup_lock = threading.RLock()
"""Serialises configure and shutdown; renewed in a forked child (after_fork_in_child)."""


def after_fork_in_child() -> None:
    """A lock of the child's: a thread of the parent may have held it at the fork."""
    global _setup_lock
    _setup_lock = threading.RLock()


@contextlib.contextmanager
def setup_held() -> Iterator[None]:
    """Hold the setup lock (reentrant): no configure() or shutdown() runs meanwhile."""
    with _setup_lock:
        yield


@dataclass
class Pipeline:
    """What the instrumentation needs: a tracer, or None when telemetry is disabled."""

    tracer: trace.Tracer | None
    exporter: BettyFileExporter | None = None
    provider: TracerProvider | None = None
    remote_parent: Context | None = None
    """The parent of root executions: $TRACEPARENT when betty_otel was configured."""
    file_processor: SpanProcessor | None = None
    collectors: tuple[BatchedExporter, ...] = ()
    """What else receives the spans of our own provider (OTLP, console)."""
    switch: ProcessorSwitch | None = None
    """Our processor on the provider, pointing at routed while this pipeline is current."""
    routed: SpanProcessor | None = None
    """What switch points at: file_processor, and on our own provider the collectors'."""
    exit_timeout: float = DEFAULT_EXIT_TIMEOUT
    """Seconds closing this pipeline waits for the collectors (see exit_budget)."""
    watch_global: bool = False
    """Our own provider, made while no global one was set: `current_pipeline()` warns once
    when the program sets one later."""

    def force_flush(self, timeout_millis: int = 30_000) -> bool:
        """Write everything buffered (batch mode, OTLP); True when all finished in time."""
        flushed = self.file_processor is None or self.file_processor.force_flush(timeout_millis)
        for collector in self.collectors:
            flushed = collector.processor.force_flush(timeout_millis) and flushed
        return flushed


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
    exit_timeout: float | None = None,
    propagate_to_subprocesses: bool = False,
    threads: bool = False,
    inflight_after: float | str | None = None,
    meter_provider: MeterProvider | None = None,
    metrics_max_series: int | None = None,
) -> BettyFileExporter | None:
    """Set up (or redo) where betty_otel's spans go; returns the file exporter.

    Args:
        telemetry_file: the file; None means $BETTY_TELEMETRY_FILE, else the log of the
            drop-in shim this process imported (`betty_otel._setup.shimlog`), else
            registry/telemetry.json of the Betty repository (see the README).
        batch: write the file from a background batch processor instead of
            synchronously (faster calls; entries reach the disk within ~1 s and at
            exit). A per-process optimisation: forked and multiprocessing children
            write synchronously, since they often end without running exit hooks.
        all_spans: also write spans of other instrumentation (without betty.skill).
        otlp: send spans over OTLP too; None (default) decides from the OTEL_* variables
            (an OTLP endpoint, or OTEL_TRACES_EXPORTER, which may also ask for
            ``console`` or ``none``: see `betty_otel._setup.exporters`).
        otlp_endpoint: collector URL, instead of OTEL_EXPORTER_OTLP[_TRACES]_ENDPOINT.
        tracer_provider: an SDK TracerProvider to add our processor to; default is the
            global one if it is an SDK provider, else a private provider of ours. Its
            sampler decides what its own exporters get; the file gets every execution.
        timezone: timestamps in this zone instead of UTC.
        fsync, lock_timeout, max_bytes, backups: file options, see BettyFileExporter.
        exit_timeout: seconds the collector may delay exit (and shutdown or a
            reconfigure); default OTEL_EXPORTER_OTLP_TRACES_TIMEOUT or
            OTEL_EXPORTER_OTLP_TIMEOUT (seconds), else 1 s. The file never waits on it.
        propagate_to_subprocesses: every ``subprocess`` started inside a recorded
            execution gets its trace context and skill in its environment (see
            `betty_otel.subprocess_env`), so its executions join this trace.
        threads: tasks submitted to a ``ThreadPoolExecutor`` and ``threading.Thread``
            objects started inside a recorded execution run in its trace context, so
            their executions are its children (off by default: it wraps
            ``ThreadPoolExecutor.submit`` and ``Thread.start`` process-wide; configure
            without it, or shutdown(), restores them).
        inflight_after: seconds an execution runs before it gets a record beside the
            log, so that it is visible while it runs and recorded if its process dies
            (see betty_otel._inflight); ``0`` from its start, ``"off"`` never. Default
            $BETTY_TELEMETRY_INFLIGHT_AFTER, else 1 s.
        meter_provider: a MeterProvider for betty_otel's instruments (see
            `betty_otel._metrics`); default the global one if the program set one, else
            one of ours when OTEL_METRICS_EXPORTER or an OTLP endpoint asks for metrics,
            else none (no metrics, nothing paid).
        metrics_max_series: how many values of each metric label (skill, caller, error
            type) get series of their own before the rest is recorded as ``other``;
            default $BETTY_TELEMETRY_METRICS_MAX_SERIES, else 100.

    Returns None (and instruments nothing) when OTEL_SDK_DISABLED=true or
    BETTY_TELEMETRY_DISABLED=1.

    Raises:
        ValueError: an option is out of range.
    """
    if exit_timeout is not None:
        exit_budget(exit_timeout)  # checked before anything changes
    after = _inflight_after(inflight_after)
    limit = max_series(metrics_max_series)
    with _setup_lock:
        if disabled_by_env():
            _replace(Pipeline(tracer=None))
            watch(None, None, None)
            use_metrics(None, limit, exit_timeout)
            return None
        exporter = BettyFileExporter(
            telemetry_file if telemetry_file is not None else shim_log(),
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
        provider = _user_provider(tracer_provider)
        tracer = None if provider is None else provider.get_tracer(TRACER_NAME)
        if provider is not None and isinstance(tracer, Tracer):
            new = _on_program_provider(provider, tracer, file_processor, exporter)
        else:  # no SDK provider, or one handing out no-op tracers: the file still records
            collectors = env_collectors(otlp, otlp_endpoint)
            if collectors or all_spans or sdk_settings_set():
                new = _own_pipeline(file_processor, exporter, collectors, exit_timeout)
            else:
                new = _file_only_pipeline(file_processor, exporter)
            new.watch_global = tracer_provider is None and _no_global_provider()
        new.remote_parent = environment_context()
        _replace(new)
        watch(new, exporter.path, after)
        use_metrics(meter_provider, limit, exit_timeout)
        subprocess_hook(propagate_to_subprocesses)
        propagate_to_threads(threads)
        return exporter


def _on_program_provider(
    provider: TracerProvider,
    tracer: Tracer,
    file_processor: SpanProcessor,
    exporter: BettyFileExporter,
) -> Pipeline:
    """The file processor on a program's SDK provider, behind that provider's one ProcessorSwitch.

    Our tracer samples as the program's sampler does but records what it drops
    (AuditSampler, set through the SDK Tracer's public ``sampler``): the program's
    exporters keep its decision, and the file still gets every execution.
    """
    if STATE.switches is None:
        STATE.switches = weakref.WeakKeyDictionary()
    switch = STATE.switches.get(provider)
    if switch is None:
        switch = STATE.switches[provider] = ProcessorSwitch()
        provider.add_span_processor(switch)
    switch.inner = file_processor
    # The provider's sampler, not the tracer's: the SDK caches the tracer, whose
    # sampler the last configure already wrapped.
    tracer.sampler = audit(provider.sampler)
    return Pipeline(
        tracer=tracer,
        exporter=exporter,
        provider=provider,
        file_processor=file_processor,
        switch=switch,
        routed=file_processor,
    )


def _own_pipeline(
    file_processor: SpanProcessor,
    exporter: BettyFileExporter,
    collectors: tuple[BatchedExporter, ...],
    exit_timeout: float | None,
) -> Pipeline:
    """The file processor (and the collectors') on the private provider of ours."""
    provider, switch = _own_provider()
    routed = SynchronousMultiSpanProcessor()  # type: ignore[no-untyped-call] # untyped in the SDK
    for processor in (file_processor, *(collector.processor for collector in collectors)):
        routed.add_span_processor(processor)
    switch.inner = routed
    return Pipeline(
        tracer=provider.get_tracer(TRACER_NAME),
        exporter=exporter,
        provider=provider,
        file_processor=file_processor,
        collectors=collectors,
        switch=switch,
        routed=routed,
        exit_timeout=exit_budget(exit_timeout) if collectors else DEFAULT_EXIT_TIMEOUT,
    )


def _own_provider() -> tuple[TracerProvider, ProcessorSwitch]:
    """Our private provider and its ProcessorSwitch, made again only when the OTEL_* settings
    it was made from (resource, limits, id generator) changed.

    A provider cannot drop a processor, and each one registers an at-fork hook for
    good: a new provider per configure would leave one more of each every time.
    """
    settings = tuple(sorted(item for item in os.environ.items() if item[0].startswith("OTEL_")))
    kept = STATE.own_provider
    if kept is not None and kept[0] == settings:
        return kept[1], kept[2]
    # ALWAYS_ON: the file is an audit log of every execution, whatever
    # OTEL_TRACES_SAMPLER says (a program's own provider keeps its sampler).
    provider = TracerProvider(sampler=ALWAYS_ON, resource=Resource.create(), shutdown_on_exit=False)
    switch = ProcessorSwitch()
    provider.add_span_processor(switch)
    STATE.own_provider = (settings, provider, switch)
    return provider, switch


def _file_only_pipeline(file_processor: SpanProcessor, exporter: BettyFileExporter) -> Pipeline:
    """The file processor alone, fed by a FileTracer: nothing else would receive the spans.

    Only when no SDK setting could make the SDK's span differ from a FileSpan
    (`betty_otel._environment.sdk_settings_set`, the CLI's direct path's rule: attribute
    limits, another id generator or provider); all_spans writes other
    instrumentation's spans, which need a provider, so it keeps ours.
    """
    return Pipeline(
        tracer=FileTracer(file_processor),
        exporter=exporter,
        file_processor=file_processor,
    )


def _no_global_provider() -> bool:
    """True while the program has set no global TracerProvider.

    Reads the API's module global, which `current_pipeline()` then compares on every call:
    ``trace.get_tracer_provider()`` costs microseconds while none is set (it looks
    in os.environ each time). Should the API rename it, this is False and the late
    provider goes unnoticed; recording is unaffected.
    """
    return getattr(trace, "_TRACER_PROVIDER", False) is None


def _replace(new: Pipeline) -> None:
    subprocess_hook(False)  # configure turns them on again when asked
    propagate_to_threads(False)
    old, STATE.pipeline = STATE.pipeline, new
    if old is not None:
        _close(old)


def _close(old: Pipeline, metrics: OwnMetrics | None = None) -> None:
    """Flush and detach a pipeline that is being replaced or shut down.

    The file first, in full; then the collectors (and our own metrics, at shutdown),
    all at once within their exit budget, so a collector that is down costs at most that.
    """
    if old.switch is not None and old.routed is not None:
        old.switch.detach(old.routed, old.file_processor)
    if old.file_processor is not None:
        old.file_processor.shutdown()
    closing: list[Closing] = [*old.collectors]
    budget = old.exit_timeout if old.collectors else 0.0
    if metrics is not None:
        closing.append(metrics)
        budget = max(budget, metrics.budget)
    if closing:
        close_collectors(closing, budget)


def current_pipeline() -> Pipeline:
    """The current pipeline, configured from the environment on first use."""
    current = STATE.pipeline
    if current is not None:
        # One identity test a call (see _no_global_provider), until it warns.
        if current.watch_global and trace._TRACER_PROVIDER is not None:
            _provider_installed_late(current)
        return current
    with _setup_lock:
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


def _provider_installed_late(current: Pipeline) -> None:
    """Say once that the program's provider came after our own was made."""
    with _setup_lock:
        if not current.watch_global:
            return  # another thread said it
        current.watch_global = False
    if isinstance(trace.get_tracer_provider(), TracerProvider):
        logger.warning(
            "betty_otel: a TracerProvider was installed after betty_otel started recording; "
            "betty_otel's spans go on to its own provider, not to that provider's exporters "
            "(the telemetry file records every execution either way). Call "
            "betty_otel.configure(tracer_provider=...) after installing your provider."
        )


def swap(new: Pipeline | None) -> Pipeline | None:
    """Install a pipeline as is and return the previous one, unclosed (for testing)."""
    with _setup_lock:
        old, STATE.pipeline = STATE.pipeline, new
        return old


def shutdown() -> None:
    """Flush and close the pipeline; the next instrumented call configures a new one."""
    with _setup_lock:
        old, STATE.pipeline = STATE.pipeline, None
        own_metrics = take_metrics()
        subprocess_hook(False)
        propagate_to_threads(False)
        if old is not None:
            _close(old, own_metrics)
        elif own_metrics is not None:
            own_metrics.close()
        unwatch()


def _at_exit() -> None:
    """Record the executions still open (once, see betty_otel._inflight), then shut down."""
    finish_unfinished()
    shutdown()


atexit.register(_at_exit)
