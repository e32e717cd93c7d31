"""betty_otel's own MeterProvider: the readers OTEL_METRICS_EXPORTER asks for, and closing it.

Made only when nothing of the program's receives our instruments and the environment asks
for metrics (see `betty_otel._metrics.setup`); importing this module imports the SDK.

- ``otlp``: a periodic reader every OTEL_METRIC_EXPORT_INTERVAL milliseconds (60 s by
  default) into the OTLP exporter of OTEL_EXPORTER_OTLP[_METRICS]_PROTOCOL
  (http/protobuf or grpc), which reads OTEL_EXPORTER_OTLP[_METRICS]_ENDPOINT, headers
  and timeout itself: the collector the spans go to.
- ``console``: the same reader into the SDK's ConsoleMetricExporter (JSON on stdout).
- ``prometheus``: a scrape endpoint on OTEL_EXPORTER_PROMETHEUS_HOST (``localhost``) and
  OTEL_EXPORTER_PROMETHEUS_PORT (9464), from the optional ``betty-otel[prometheus]``.

Closing (`OwnMetrics.start_closing`, through `betty_otel._setup.otlp.close_collectors`)
sends what was recorded since the last export within the exit budget, in a daemon thread,
with one warning if the collector does not take it. A forked child starts over with a
provider of its own (the counts it inherited are its parent's to send) and leaves the
scrape endpoint to its parent.
"""

from __future__ import annotations

import logging
import math
import os
import threading
from typing import TYPE_CHECKING, Any, Final

from opentelemetry.sdk.metrics import AlwaysOffExemplarFilter, MeterProvider
from opentelemetry.sdk.metrics.export import (
    ConsoleMetricExporter,
    MetricExporter,
    MetricExportResult,
    MetricReader,
    MetricsData,
    PeriodicExportingMetricReader,
)
from opentelemetry.sdk.resources import Resource

from betty_otel._errors import internal_error
from betty_otel._setup.otlp import (
    DEFAULT_EXIT_TIMEOUT,
    MutedThreads,
    close_collectors,
    closing_thread,
    exit_budget,
    otlp_protocol,
)
from betty_otel._state import STATE

if TYPE_CHECKING:
    from wsgiref.simple_server import WSGIServer

__all__ = [
    "DEFAULT_INTERVAL_MS",
    "OwnMetrics",
    "after_fork_in_child",
    "export_interval",
    "own_metrics",
]

logger = logging.getLogger(__name__)

DEFAULT_INTERVAL_MS: Final = 60_000.0
_INTERVAL: Final = "OTEL_METRIC_EXPORT_INTERVAL"
_PROMETHEUS_DEFAULTS: Final = ("localhost", 9464)
_HINT: Final = "install it with: pip install 'betty-otel[{extra}]'"


def export_interval() -> float:
    """Milliseconds between exports: OTEL_METRIC_EXPORT_INTERVAL when it is a finite number
    > 0, else (with a warning when it is set) 60,000."""
    text = os.environ.get(_INTERVAL, "").strip()
    if not text:
        return DEFAULT_INTERVAL_MS
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if math.isfinite(value) and value > 0:
        return value
    logger.warning(
        "betty_otel: ignoring %s=%r (not a number of milliseconds > 0); exporting every %g ms",
        _INTERVAL,
        text,
        DEFAULT_INTERVAL_MS,
    )
    return DEFAULT_INTERVAL_MS


class _HushedLoggers:
    """The exporters' loggers hushed for the threads that send a closing provider's last
    metrics, until the last of those sends has returned (a retry message comes late)."""

    def __init__(self, loggers: set[logging.Logger]) -> None:
        self.hush = MutedThreads()
        self.loggers = loggers
        self.users = 0
        self.lock = threading.RLock()

    def enter(self) -> None:
        self.hush.threads.add(threading.get_ident())
        with self.lock:
            self.users += 1
            if self.users == 1:
                for each in self.loggers:
                    each.addFilter(self.hush)

    def exit(self) -> None:
        with self.lock:
            self.users -= 1
            if self.users == 0:
                for each in self.loggers:
                    each.removeFilter(self.hush)


class _Exporter(MetricExporter):
    """A metric exporter bound to the process that made it, told when its provider closes.

    In a forked child it sends nothing (the counts it inherited are its parent's). Once
    closing, it counts what the collector did not take and hushes the exporter's own
    retry messages, as the span collectors do: the closing provider says it once.
    """

    def __init__(self, inner: MetricExporter) -> None:
        # The reader asks the exporter for these, as the SDK's reader does of any exporter.
        super().__init__(
            preferred_temporality=inner._preferred_temporality,
            preferred_aggregation=inner._preferred_aggregation,
        )
        self.inner = inner
        self.pid = os.getpid()
        self.closing: _HushedLoggers | None = None
        self.unsent = 0

    def export(
        self, metrics_data: MetricsData, timeout_millis: float = 10_000, **kwargs: Any
    ) -> MetricExportResult:
        if os.getpid() != self.pid:
            return MetricExportResult.SUCCESS
        closing = self.closing
        if closing is None:
            return self.inner.export(metrics_data, timeout_millis=timeout_millis, **kwargs)
        closing.enter()
        result = MetricExportResult.FAILURE
        try:
            result = self.inner.export(metrics_data, timeout_millis=timeout_millis, **kwargs)
        finally:
            if result is not MetricExportResult.SUCCESS:
                self.unsent += 1
            closing.exit()
        return result

    def force_flush(self, timeout_millis: float = 10_000) -> bool:
        return self.inner.force_flush(timeout_millis=timeout_millis)

    def shutdown(self, timeout_millis: float = 30_000, **kwargs: Any) -> None:
        if os.getpid() == self.pid:
            self.inner.shutdown(timeout_millis=timeout_millis, **kwargs)


def _otlp_exporter() -> MetricExporter:
    """The OTLP metric exporter of the environment's protocol (it reads the rest itself)."""
    protocol = otlp_protocol("METRICS")
    try:
        if protocol == "grpc":
            from opentelemetry.exporter.otlp.proto.grpc.metric_exporter import (  # noqa: PLC0415
                OTLPMetricExporter as GrpcExporter,
            )

            return GrpcExporter()
        from opentelemetry.exporter.otlp.proto.http.metric_exporter import (  # noqa: PLC0415
            OTLPMetricExporter as HttpExporter,
        )
    except ImportError as exc:
        msg = f"the OTLP exporter is not installed; {_HINT.format(extra='otlp')} ({exc})"
        raise ImportError(msg) from None
    if protocol != "http/protobuf":
        logger.warning("OTLP protocol %r is not supported; using http/protobuf", protocol)
    return HttpExporter()


def _prometheus_address() -> tuple[str, int]:
    """OTEL_EXPORTER_PROMETHEUS_HOST and _PORT, each defaulted (with a warning if bad)."""
    host = os.environ.get("OTEL_EXPORTER_PROMETHEUS_HOST", "").strip() or _PROMETHEUS_DEFAULTS[0]
    text = os.environ.get("OTEL_EXPORTER_PROMETHEUS_PORT", "").strip()
    if not text:
        return host, _PROMETHEUS_DEFAULTS[1]
    if text.isascii() and text.isdigit() and int(text) <= 65535:
        return host, int(text)
    logger.warning(
        "betty_otel: ignoring OTEL_EXPORTER_PROMETHEUS_PORT=%r (not a port number); using %d",
        text,
        _PROMETHEUS_DEFAULTS[1],
    )
    return host, _PROMETHEUS_DEFAULTS[1]


def _prometheus() -> tuple[MetricReader, WSGIServer]:
    """The Prometheus reader and the scrape endpoint serving it.

    Raises:
        ImportError: the extra is not installed (the message says how).
        OSError: the address cannot be served (in use, not this host's).
    """
    try:
        from opentelemetry.exporter.prometheus import PrometheusMetricReader  # noqa: PLC0415
        from prometheus_client import start_http_server  # noqa: PLC0415
    except ImportError as exc:
        msg = (
            "OTEL_METRICS_EXPORTER=prometheus needs the Prometheus exporter, which is not "
            f"installed; {_HINT.format(extra='prometheus')} ({exc})"
        )
        raise ImportError(msg) from None
    host, port = _prometheus_address()
    try:
        server, _ = start_http_server(port, addr=host)
    except OSError as exc:
        msg = f"cannot serve {host}:{port} ({exc})"
        raise OSError(msg) from None
    return PrometheusMetricReader(), server


class OwnMetrics:
    """Our MeterProvider, its exporters and scrape endpoint, and how to close them."""

    def __init__(
        self,
        provider: MeterProvider,
        exporters: list[_Exporter],
        server: WSGIServer | None,
        wanted: frozenset[str],
        settings: tuple[object, ...],
    ) -> None:
        self.provider = provider
        self.exporters = exporters
        self.server = server
        self.wanted = wanted
        """The exporters asked for (made or not): a forked child makes them again."""
        self.settings = settings
        """What this provider was made from (`betty_otel._metrics.setup.settings_of`)."""
        self.budget = DEFAULT_EXIT_TIMEOUT
        """Seconds closing may take (configure's exit budget)."""

    def set_budget(self, exit_timeout: float | None) -> None:
        """The exit budget of the configuration that uses this provider (see exit_budget)."""
        self.budget = exit_budget(exit_timeout)

    def start_closing(self) -> threading.Thread | None:
        """Stop serving, send the last metrics and shut down, in a daemon thread; None when
        no thread can be started (late in interpreter shutdown). Never raises."""
        loggers = {logging.getLogger(PeriodicExportingMetricReader.__module__)}
        for exporter in self.exporters:
            loggers.update(
                logging.getLogger(kind.__module__) for kind in type(exporter.inner).__mro__
            )
        hushing = _HushedLoggers(loggers)
        for exporter in self.exporters:
            exporter.closing = hushing

        def close() -> None:
            hushing.enter()
            try:
                if self.server is not None:
                    self.server.shutdown()
                    self.server.server_close()
                self.provider.shutdown(timeout_millis=self.budget * 1000)
            except Exception:  # noqa: BLE001 - the SDK's shutdown must not reach the program
                internal_error("shutting down the metrics exporters")
            finally:
                hushing.exit()

        return closing_thread(close, "betty_otel-metrics-close")

    def report(self, finished: bool, budget: float) -> None:
        """One warning when the last metrics were not all taken at close."""
        unsent = sum(exporter.unsent for exporter in self.exporters)
        if not finished and self.exporters:
            logger.warning(
                "betty_otel: the metrics exporter did not take the last metrics within %g s; "
                "they are not sent (the telemetry file has every entry)",
                budget,
            )
        elif unsent:
            logger.warning(
                "betty_otel: the metrics exporter did not take the last metrics at close; "
                "they are not sent (the telemetry file has every entry)"
            )

    def close(self) -> None:
        """Close within the budget (a reconfigure that asks for other metrics)."""
        close_collectors([self], self.budget)


def own_metrics(wanted: frozenset[str], settings: tuple[object, ...]) -> OwnMetrics | None:
    """A provider with the readers wanted; None (logged) when none could be made."""
    readers: list[MetricReader] = []
    exporters: list[_Exporter] = []
    server = None
    for name in ("otlp", "console", "prometheus"):
        if name not in wanted:
            continue
        try:
            if name == "prometheus":
                reader, server = _prometheus()
                readers.append(reader)
                continue
            exporter = _Exporter(_otlp_exporter() if name == "otlp" else ConsoleMetricExporter())
        except Exception as exc:  # noqa: BLE001 - the environment must not break the program
            logger.warning("betty_otel: no %s metrics: %s", name, exc)
            continue
        exporters.append(exporter)
        readers.append(PeriodicExportingMetricReader(exporter, export_interval()))
    if not readers:
        return None
    # No exemplars: the execution's span is no longer current when its duration is
    # recorded, and offering each measurement to a reservoir doubles what a call pays.
    provider = MeterProvider(
        metric_readers=readers,
        resource=Resource.create(),
        shutdown_on_exit=False,
        exemplar_filter=AlwaysOffExemplarFilter(),
    )
    return OwnMetrics(provider, exporters, server, wanted, settings)


def after_fork_in_child() -> None:
    """In a forked child: our own metrics start over in a provider of the child's."""
    from betty_otel._metrics.setup import install  # noqa: PLC0415 - setup imports us

    metrics = STATE.metrics
    own = None if metrics is None else metrics.own
    if metrics is None or own is None:
        return
    STATE.metrics = None
    try:
        renewed = own_metrics(own.wanted - {"prometheus"}, own.settings)
        if renewed is not None:
            renewed.budget = own.budget
            install(renewed.provider, renewed, metrics.recorder.guard.limit)
    except Exception:  # noqa: BLE001 - telemetry must never break the host program
        internal_error("renewing the metrics in a forked process")
