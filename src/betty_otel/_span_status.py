"""The span status of a Betty outcome: ERROR with the message for a failed one, else UNSET.

Apart from `betty_otel._entry`, which must not import OpenTelemetry (reading the log and
the direct path of ``betty-telemetry capture`` need none of it); the live path (`_run`)
and export (`_replay`) use it.
"""

from __future__ import annotations

from typing import Final

from opentelemetry.trace import Status, StatusCode

from betty_otel._entry import ERROR_STATUSES

__all__ = ["span_status_for"]

_UNSET: Final = Status(StatusCode.UNSET)


def span_status_for(status: object, message: str | None) -> Status:
    """The span status of an outcome: ERROR with the message for an error status, else UNSET."""
    if isinstance(status, str) and status in ERROR_STATUSES:
        return Status(StatusCode.ERROR, message)
    return _UNSET
