"""Which meter betty_otel's instruments live on, decided when betty_otel is configured.

In this order: the MeterProvider given to ``configure(meter_provider=...)``; else the one
the program installed globally (its readers and views decide what happens to our
instruments, as its TracerProvider gets the file processor); else, when
OTEL_METRICS_EXPORTER (or an OTLP endpoint) asks for metrics, a provider of betty_otel's
own (`betty_otel._metrics.provider`); else none, and then the metrics SDK is not
imported and each execution pays one test (`betty_otel._metrics.record`). Telemetry
disabled by the environment records no metrics.

Our own provider is kept across reconfigures while the OTEL_* settings it was made from
stay the same (its counts go on, nothing is rebound or restarted), and closed by
`shutdown` within the exit budget, together with the span collectors.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

from betty_otel._environment import disabled_by_env, metrics_exporters
from betty_otel._errors import internal_error
from betty_otel._metrics.conventions import METER_NAME
from betty_otel._metrics.record import Recorder
from betty_otel._metrics.series import SeriesGuard
from betty_otel._state import STATE

if TYPE_CHECKING:
    from opentelemetry.metrics import MeterProvider

    from betty_otel._metrics.provider import OwnMetrics

__all__ = ["Metrics", "install", "settings_of", "take_metrics", "use_metrics"]


class Metrics:
    """The current metrics: the recorder the executions use, and our own provider if any."""

    __slots__ = ("own", "recorder")

    def __init__(self, recorder: Recorder, own: OwnMetrics | None = None) -> None:
        self.recorder = recorder
        self.own = own


def _program_provider(given: MeterProvider | None) -> MeterProvider | None:
    """The program's MeterProvider: given, else the global one if the program set one."""
    if given is not None:
        return given
    from opentelemetry import metrics  # noqa: PLC0415 - the API only, loaded with its traces

    provider = metrics.get_meter_provider()
    # Unset, the API hands out a proxy that records nowhere until a provider is set.
    if isinstance(provider, metrics.NoOpMeterProvider) or type(provider).__name__ in (
        "_ProxyMeterProvider",
        "ProxyMeterProvider",
    ):
        return None
    return provider


def settings_of(wanted: frozenset[str]) -> tuple[object, ...]:
    """What our own provider is made from: the exporters and every OTEL_* setting."""
    return (
        wanted,
        tuple(sorted(item for item in os.environ.items() if item[0].startswith("OTEL_"))),
    )


def use_metrics(
    meter_provider: MeterProvider | None, limit: int, exit_timeout: float | None
) -> None:
    """Make the metrics of a configuration current (configure calls it under its lock).

    limit: the bound on each label's values (`series.max_series`); exit_timeout:
    configure's, for the seconds our own provider may take to send its last metrics.
    """
    kept = STATE.metrics.own if STATE.metrics is not None else None
    provider = None if disabled_by_env() else _program_provider(meter_provider)
    wanted = frozenset() if provider is not None else metrics_exporters()
    settings = settings_of(wanted)
    if kept is not None and kept.settings != settings:
        STATE.metrics = None
        kept.close()  # before a new one serves the same port
        kept = None
    own = kept
    if own is None and wanted:
        from betty_otel._metrics.provider import own_metrics  # noqa: PLC0415 - the SDK, now

        own = own_metrics(wanted, settings)
    if own is not None:
        own.set_budget(exit_timeout)
        provider = own.provider
    STATE.metrics = None if provider is None else _metrics_on(provider, own, limit)


def install(provider: MeterProvider, own: OwnMetrics | None, limit: int) -> None:
    """Record into provider's meter from now on (own: ours, if it is), labels bound by limit."""
    STATE.metrics = _metrics_on(provider, own, limit)


def _metrics_on(provider: MeterProvider, own: OwnMetrics | None, limit: int) -> Metrics | None:
    """The instruments on provider's meter; None (logged, counted) when a program's provider
    fails to make them: the program runs on, without metrics."""
    try:
        return Metrics(Recorder(provider.get_meter(METER_NAME), SeriesGuard(limit)), own)
    except Exception:  # noqa: BLE001 - telemetry must never break the host program
        internal_error("making the metric instruments")
        return None


def take_metrics() -> OwnMetrics | None:
    """Stop recording metrics; our own provider, for the caller to close (shutdown)."""
    metrics, STATE.metrics = STATE.metrics, None
    return None if metrics is None else metrics.own
