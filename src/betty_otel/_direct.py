"""The direct path of ``betty-telemetry capture``: the entry, straight to the file.

A capture from a shell script is one short process. When nothing but the file would
receive its span (no OTLP or other trace exporter named in the environment, telemetry
disabled, or no SDK setting that would change the span), `write_directly` appends the
entry that span would have made, without importing the OpenTelemetry SDK: the same
checks and redaction (`betty_otel._manual`), the same mapping (`_entry.execution_entry`),
ids made as the SDK's RandomIdGenerator makes them (random, never zero), and $TRACEPARENT
read as the W3C propagator reads it. `spans_wanted` decides; everything here is standard
library.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from typing import Any, Final

from betty_otel._entry import execution_entry
from betty_otel._environment import disabled_by_env, sdk_settings_set, traces_exporters
from betty_otel._manual import ManualExecution
from betty_otel._store import TelemetryStore

__all__ = ["environment_ids", "new_ids", "spans_wanted", "write_directly"]

# W3C Trace Context, as opentelemetry's TraceContextTextMapPropagator reads it. Compiled
# when a $TRACEPARENT is read (re caches it), not at start-up.
_TRACEPARENT: Final = (
    r"^[ \t]*([0-9a-f]{2})-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})(?:(-.*)|[ \t]*)$"
)
_TRACEPARENT_MAX_LENGTH: Final = 512


def spans_wanted() -> bool:
    """True when a capture's span would reach more than the file, or be made differently.

    That is: the environment asks for an exporter besides the file
    (`betty_otel._environment.traces_exporters`, the pipeline's own rule) and telemetry
    is not disabled; or an SDK setting that changes spans is set (`sdk_settings_set`).
    When in doubt, the span path runs, and it is always correct.
    """
    if sdk_settings_set():
        return True
    if disabled_by_env():
        return False  # the span path records through a tracer without processors
    return bool(traces_exporters())


def environment_ids(environ: Mapping[str, str] | None = None) -> tuple[int, int] | None:
    """The (trace_id, span_id) that $TRACEPARENT names, or None when it names none validly.

    Reads it as the W3C propagator does (`betty_otel.propagation.environment_context`
    on the span path): version ``ff`` and all-zero ids are invalid, version ``00``
    takes no extra fields, more than 512 characters are ignored.
    """
    environ = os.environ if environ is None else environ
    header = environ.get("TRACEPARENT")
    if not header or len(header) > _TRACEPARENT_MAX_LENGTH:
        return None
    match = re.search(_TRACEPARENT, header)
    if match is None:
        return None
    version, trace_hex, span_hex, _, extra = match.groups()
    trace_id, span_id = int(trace_hex, 16), int(span_hex, 16)
    if not (trace_id and span_id) or version == "ff" or (version == "00" and extra):
        return None
    return trace_id, span_id


def new_ids(trace_id: int | None = None) -> tuple[int, int]:
    """(trace_id, span_id) of a new span, random and never zero, as RandomIdGenerator
    makes them; trace_id is kept when given (a child of a remote parent).

    The bits come from os.urandom, not the random module: as random, and one import
    fewer for a one-shot capture.
    """
    while not trace_id:
        trace_id = int.from_bytes(os.urandom(16), "big")
    span_id = 0
    while not span_id:
        span_id = int.from_bytes(os.urandom(8), "big")
    return trace_id, span_id


def write_directly(store: TelemetryStore, execution: ManualExecution) -> dict[str, Any]:
    """Append the entry of execution to store, as the span path would; return it.

    Its parent is $TRACEPARENT's span, unless telemetry is disabled (the span path then
    records outside any pipeline, so without the environment's parent).

    Raises:
        OSError: what TelemetryStore.append raises; nothing was written then.
    """
    parent = None if disabled_by_env() else environment_ids()
    ids = new_ids(None if parent is None else parent[0])
    entry = execution_entry(
        execution.attributes,
        name=execution.skill,
        outcome=None,  # betty.status and betty.error_message say it all
        start=execution.start,
        end=execution.end,
        ids=ids,
        parent_span_id=None if parent is None else parent[1],
    )
    try:
        store.append([entry])
    finally:
        store.close()  # as TelemetryCapture.capture: no descriptor outlives the call
    return entry
