"""Which exporters receive betty_otel's spans besides the file: OTEL_TRACES_EXPORTER.

The variable is a comma-separated list, as the OpenTelemetry specification allows,
its names compared without regard to case: ``otlp`` (a collector, see `otlp`),
``console`` (the SDK's ConsoleSpanExporter: one JSON document per span on standard
output) and ``none`` (nothing but the file). Unset or blank, OTLP is on when an OTLP
endpoint variable is set. Any other name (``zipkin``, a typo) gets one warning when
the pipeline is configured and is ignored; ``none`` listed with other names wins, with
a warning: nothing leaves the process. The file is written whatever the variable says.

This applies to betty_otel's own provider only: a program that installs its own
TracerProvider chooses its exporters itself.
"""

from __future__ import annotations

import logging
import os
from typing import Final

from opentelemetry.sdk.trace.export import ConsoleSpanExporter

from betty_otel._setup.otlp import Collector, otlp_collector

__all__ = ["ENV_TRACES_EXPORTER", "SUPPORTED", "env_collectors", "traces_exporters"]

logger = logging.getLogger(__name__)

ENV_TRACES_EXPORTER: Final = "OTEL_TRACES_EXPORTER"
SUPPORTED: Final = ("otlp", "console", "none")
"""The names OTEL_TRACES_EXPORTER may list, in the order the warnings name them."""
_ENDPOINTS: Final = ("OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")


def traces_exporters() -> frozenset[str]:
    """The exporters the environment asks for besides the file: a subset of {otlp, console}.

    Warns (once per call, and configure calls it once) about names it ignores.
    """
    listed = os.environ.get(ENV_TRACES_EXPORTER, "")
    if not listed.strip():
        endpoint = any(os.environ.get(name) for name in _ENDPOINTS)
        return frozenset({"otlp"}) if endpoint else frozenset()
    names = {name.strip().lower() for name in listed.split(",")} - {""}
    unknown = sorted(names.difference(SUPPORTED))
    if unknown:
        logger.warning(
            "betty_otel: %s=%r: ignoring %s (betty_otel supports %s)",
            ENV_TRACES_EXPORTER,
            listed,
            ", ".join(repr(name) for name in unknown),
            ", ".join(SUPPORTED),
        )
    if "none" in names:
        if names != {"none"}:
            logger.warning(
                "betty_otel: %s=%r lists 'none' with other exporters; "
                "sending spans to none of them (the telemetry file is still written)",
                ENV_TRACES_EXPORTER,
                listed,
            )
        return frozenset()
    return frozenset(names.intersection(SUPPORTED))


def env_collectors(otlp: bool | None, otlp_endpoint: str | None) -> tuple[Collector, ...]:
    """The collectors of a pipeline on betty_otel's own provider.

    otlp decides OTLP when given (configure's option), else the environment does;
    console comes from the environment alone. A collector that cannot be made is
    logged and left out: the file never depends on one.
    """
    wanted = traces_exporters()
    collectors = []
    if "console" in wanted:
        collectors.append(Collector(ConsoleSpanExporter(), "the console exporter"))
    if otlp if otlp is not None else "otlp" in wanted:
        collector = otlp_collector(otlp_endpoint)
        if collector is not None:
            collectors.append(collector)
    return tuple(collectors)
