"""The exporters that receive betty_otel's spans besides the file, made from the environment.

Which ones OTEL_TRACES_EXPORTER asks for is `betty_otel._environment.traces_exporters`
(standard library, shared with the CLI's direct path); this module makes them: a
collector over OTLP (see `otlp`), or the SDK's ConsoleSpanExporter.

This applies to betty_otel's own provider only: a program that installs its own
TracerProvider chooses its exporters itself.
"""

from __future__ import annotations

from opentelemetry.sdk.trace.export import ConsoleSpanExporter

from betty_otel._environment import traces_exporters
from betty_otel._setup.otlp import BatchedExporter, otlp_collector

__all__ = ["env_collectors"]


def env_collectors(otlp: bool | None, otlp_endpoint: str | None) -> tuple[BatchedExporter, ...]:
    """The collectors of a pipeline on betty_otel's own provider.

    otlp decides OTLP when given (configure's option), else the environment does;
    console comes from the environment alone. A collector that cannot be made is
    logged and left out: the file never depends on one.
    """
    wanted = traces_exporters()
    collectors = []
    if "console" in wanted:
        collectors.append(BatchedExporter(ConsoleSpanExporter(), "the console exporter"))
    if otlp if otlp is not None else "otlp" in wanted:
        collector = otlp_collector(otlp_endpoint)
        if collector is not None:
            collectors.append(collector)
    return tuple(collectors)
