"""What the environment asks of betty_otel: off switches, the exporters besides the file (of
spans and of metrics), and SDK settings that change spans.

Standard library only, so the CLI's direct capture path (`betty_otel._direct`) decides
from the same rules as the pipeline (`betty_otel._setup`) without importing the SDK.

OTEL_TRACES_EXPORTER is a comma-separated list, as the OpenTelemetry specification
allows, its names compared without regard to case: ``otlp`` (a collector), ``console``
(the SDK's ConsoleSpanExporter: one JSON document per span on standard output) and
``none`` (nothing but the file). Unset or blank, OTLP is on when an OTLP endpoint
variable is set. Any other name (``zipkin``, a typo) gets a warning and is ignored;
``none`` listed with other names wins, with a warning: nothing leaves the process.
The file is written whatever the variable says. OTEL_METRICS_EXPORTER follows the same
rules for metrics (``otlp``, ``console``, ``prometheus``, ``none``; unset, OTLP when an
OTLP endpoint for metrics is set): `metrics_exporters`.
"""

from __future__ import annotations

import os

from betty_otel._logs import logger

TYPE_CHECKING = False  # as typing.TYPE_CHECKING: a capture does not import typing
if TYPE_CHECKING:
    from typing import Final

__all__ = [
    "ENV_METRICS_EXPORTER",
    "ENV_TRACES_EXPORTER",
    "METRICS_EXPORTERS",
    "OTLP_ENDPOINTS",
    "OTLP_METRICS_ENDPOINTS",
    "SUPPORTED_EXPORTERS",
    "disabled_by_env",
    "metrics_exporters",
    "sdk_settings_set",
    "traces_exporters",
]

ENV_TRACES_EXPORTER: Final = "OTEL_TRACES_EXPORTER"
SUPPORTED_EXPORTERS: Final = ("otlp", "console", "none")
"""The names OTEL_TRACES_EXPORTER may list, in the order the warnings name them."""
OTLP_ENDPOINTS: Final = ("OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
ENV_METRICS_EXPORTER: Final = "OTEL_METRICS_EXPORTER"
METRICS_EXPORTERS: Final = ("otlp", "console", "prometheus", "none")
"""The names OTEL_METRICS_EXPORTER may list, in the order the warnings name them."""
OTLP_METRICS_ENDPOINTS: Final = (
    "OTEL_EXPORTER_OTLP_ENDPOINT",
    "OTEL_EXPORTER_OTLP_METRICS_ENDPOINT",
)
_TRUE: Final = frozenset({"1", "true", "yes", "on"})
_SDK_SETTINGS: Final = (
    "OTEL_PYTHON_TRACER_PROVIDER",  # a provider of the program's choosing, and its processors
    "OTEL_PYTHON_ID_GENERATOR",  # ids made by another generator
    "OTEL_ATTRIBUTE_VALUE_LENGTH_LIMIT",  # attribute values cut short
    "OTEL_SPAN_ATTRIBUTE_VALUE_LENGTH_LIMIT",
    "OTEL_ATTRIBUTE_COUNT_LIMIT",  # attributes dropped
    "OTEL_SPAN_ATTRIBUTE_COUNT_LIMIT",
)
"""Settings under which the SDK's span (and so its entry) may differ from one made without
the SDK (the CLI's direct path, the pipeline's FileTracer)."""


def _env_true(name: str) -> bool:
    return os.environ.get(name, "").strip().lower() in _TRUE


def disabled_by_env() -> bool:
    """OTEL_SDK_DISABLED=true or BETTY_TELEMETRY_DISABLED=1 turn instrumentation off."""
    return _env_true("OTEL_SDK_DISABLED") or _env_true("BETTY_TELEMETRY_DISABLED")


def traces_exporters() -> frozenset[str]:
    """The exporters the environment asks for besides the file: a subset of {otlp, console}.

    Warns about names it ignores each time it is called (configure calls it once).
    """
    return _listed(ENV_TRACES_EXPORTER, SUPPORTED_EXPORTERS, OTLP_ENDPOINTS, "spans")


def metrics_exporters() -> frozenset[str]:
    """Where the environment asks betty_otel's metrics to go: a subset of {otlp, console,
    prometheus}; empty when telemetry is disabled. Warns as `traces_exporters` does."""
    if disabled_by_env():
        return frozenset()
    return _listed(ENV_METRICS_EXPORTER, METRICS_EXPORTERS, OTLP_METRICS_ENDPOINTS, "metrics")


def _listed(
    variable: str, supported: tuple[str, ...], endpoints: tuple[str, ...], what: str
) -> frozenset[str]:
    """The names a comma-separated exporter variable lists (any case), checked: unknown
    names are ignored with a warning, ``none`` wins with one; unset or blank, ``otlp``
    when one of the endpoint variables is set."""
    listed = os.environ.get(variable, "")
    if not listed.strip():
        endpoint = any(os.environ.get(name) for name in endpoints)
        return frozenset({"otlp"}) if endpoint else frozenset()
    names = {name.strip().lower() for name in listed.split(",")} - {""}
    unknown = sorted(names.difference(supported))
    if unknown:
        logger(__name__).warning(
            "betty_otel: %s=%r: ignoring %s (betty_otel supports %s)",
            variable,
            listed,
            ", ".join(repr(name) for name in unknown),
            ", ".join(supported),
        )
    if "none" in names:
        if names != {"none"}:
            logger(__name__).warning(
                "betty_otel: %s=%r lists 'none' with other exporters; "
                "sending %s to none of them (the telemetry file is still written)",
                variable,
                listed,
                what,
            )
        return frozenset()
    return frozenset(names.intersection(supported))


def sdk_settings_set() -> bool:
    """True when an SDK setting of `_SDK_SETTINGS` is set: the SDK's span may then differ
    from one made without the SDK (the CLI's direct path, or the pipeline's FileTracer)."""
    return any(os.environ.get(name, "").strip() for name in _SDK_SETTINGS)
