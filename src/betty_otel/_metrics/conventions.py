"""What betty_otel's metrics are called, measured in and labelled with, in one place.

Both the live instruments (`betty_otel._metrics.record`) and the log's histogram in
OpenMetrics text (`betty_otel.query.openmetrics`) take their names, labels and buckets
from here, so a dashboard reads both the same way. Standard library only.

Names follow OpenTelemetry's conventions for durations and counts in progress (a
histogram in seconds, ``*.duration``; an up-down counter, ``*.active``) under betty's
own namespace, as ``http.server.request.duration`` and ``http.server.active_requests``
do for HTTP. The error attribute is the conventions' ``error.type``.
"""

from __future__ import annotations

from typing import Final

from betty_otel._entry import ATTR_CALLER, ATTR_SKILL, ATTR_STATUS

__all__ = [
    "ACTIVE",
    "ACTIVE_DESCRIPTION",
    "ACTIVE_UNIT",
    "ATTR_CALLER",
    "ATTR_ERROR_TYPE",
    "ATTR_SKILL",
    "ATTR_STATUS",
    "BUCKETS",
    "DURATION",
    "DURATION_DESCRIPTION",
    "DURATION_UNIT",
    "METER_NAME",
    "PROMETHEUS_DURATION",
    "PROMETHEUS_LABELS",
    "prometheus_label",
]

METER_NAME: Final = "betty_otel"
"""The instrumentation scope of the instruments, as of betty_otel's tracer."""
DURATION: Final = "betty.execution.duration"
DURATION_UNIT: Final = "s"
DURATION_DESCRIPTION: Final = "Duration of Betty skill executions, from start to end."
ACTIVE: Final = "betty.executions.active"
ACTIVE_UNIT: Final = "{execution}"
ACTIVE_DESCRIPTION: Final = "Betty skill executions running now."

# betty.skill, betty.caller and betty.status (the canonical status, the file's words)
# are the span's own attribute names (betty_otel._entry).
ATTR_ERROR_TYPE: Final = "error.type"
"""On failures only: the exception's qualified class, or the status when none was raised."""

BUCKETS: Final = (
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
    30.0,
    60.0,
    120.0,
    300.0,
    600.0,
    1800.0,
    3600.0,
)
"""Upper bounds in seconds, for executions from milliseconds to an hour: OpenTelemetry's
HTTP duration advisory (5 ms to 10 s), extended by the minutes that skills, agents and
workflows take. Given as the histogram's advisory, so a program's View may replace them."""

PROMETHEUS_DURATION: Final = "betty_execution_duration_seconds"
"""The histogram's name in Prometheus: the OpenTelemetry name with dots as underscores and
the unit as a suffix, as the Prometheus exporter writes it."""


def prometheus_label(attribute: str) -> str:
    """An attribute's name as a Prometheus label (``betty.skill`` -> ``betty_skill``)."""
    return attribute.replace(".", "_")


PROMETHEUS_LABELS: Final = tuple(
    prometheus_label(name) for name in (ATTR_SKILL, ATTR_STATUS, ATTR_CALLER)
)
"""The labels of every series of the histogram, in the order the log's text gives them."""
