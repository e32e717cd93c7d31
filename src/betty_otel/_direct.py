"""The direct path of ``betty-telemetry capture``: the entry, straight to the file.

A capture from a shell script is one short process. When nothing but the file would
receive its span (no OTLP or other trace exporter named in the environment, telemetry
disabled, or no SDK setting that would change the span), `write_directly` appends the
entry that span would have made, without importing the OpenTelemetry SDK: the same
checks and redaction (`betty_otel._manual`), the same mapping (`_entry.execution_entry`),
the same ids and $TRACEPARENT reading (`betty_otel._ids`). `spans_wanted` decides;
everything here is standard library.
"""

from __future__ import annotations

from betty_otel._entry import execution_entry
from betty_otel._environment import disabled_by_env, sdk_settings_set, traces_exporters
from betty_otel._ids import environment_traceparent, new_ids
from betty_otel._manual import ManualExecution
from betty_otel._store import TelemetryStore

TYPE_CHECKING = False  # as typing.TYPE_CHECKING: a capture does not import typing
if TYPE_CHECKING:
    from typing import Any

__all__ = ["spans_wanted", "write_directly"]


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


def write_directly(store: TelemetryStore, execution: ManualExecution) -> dict[str, Any]:
    """Append the entry of execution to store, as the span path would; return it.

    Its parent is $TRACEPARENT's span, unless telemetry is disabled (the span path then
    records outside any pipeline, so without the environment's parent).

    Raises:
        OSError: what TelemetryStore.append raises; nothing was written then.
    """
    parent = None if disabled_by_env() else environment_traceparent()
    ids = new_ids(None if parent is None else parent.trace_id)
    entry = execution_entry(
        execution.attributes,
        name=execution.skill,
        outcome=None,  # betty.status and betty.error_message say it all
        start=execution.start,
        end=execution.end,
        ids=ids,
        parent_span_id=None if parent is None else parent.span_id,
    )
    try:
        store.append([entry])
    finally:
        store.close()  # as TelemetryCapture.capture: no descriptor outlives the call
    return entry
