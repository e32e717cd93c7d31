"""TelemetryCapture.capture() and .query(): executions recorded after the fact, and read back.

capture() returns the entry already on disk (redacted, with the given duration), is a
child of a running execution, writes exactly once through any pipeline and also when
instrumentation is disabled, and writes nothing on a validation error; query() is newest
first, filtered and limited. All entries are written to a real file and read back.
"""

from __future__ import annotations

import math
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

import betty_otel
from betty_otel import TelemetryCapture, TelemetryContext
from helpers import no_entries, read_entries, span_hex

REDACTED = "***REDACTED***"
INVALID_STATUS = "Invalid status: bogus. Must be one of: success, failure, timeout, error, pending"


# ---------------------------------------------------------------------------
# TelemetryCapture.capture
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("duration", [0, 0.001, 12.5, 123.456789, 86_400_000])
def test_capture_returns_the_entry_already_on_disk_with_the_given_duration(
    duration: float, tmp_path: Path
) -> None:
    path = tmp_path / "captured.json"
    capture = TelemetryCapture(path)
    before = datetime.now(timezone.utc)
    entry = capture.capture(
        "skill.x",
        "failure",
        duration,
        "CLI",
        inputs={"a": 1},
        error_message="it broke",
        metadata={"m": [1, 2]},
    )
    after = datetime.now(timezone.utc)
    assert read_entries(path) == [entry]
    assert entry["skill"] == "skill.x"
    assert entry["status"] == "failure"
    assert entry["duration_ms"] == duration
    assert entry["caller"] == "CLI"
    assert entry["inputs"] == {"a": 1}
    assert entry["error_message"] == "it broke"
    assert entry["metadata"] == {"m": [1, 2]}
    assert entry["parent_span_id"] is None
    moment = datetime.fromisoformat(entry["timestamp"])
    assert before - timedelta(microseconds=1) <= moment <= after
    assert capture.path == path


def test_capture_defaults_inputs_and_metadata_to_empty(tmp_path: Path) -> None:
    entry = TelemetryCapture(tmp_path / "t.json").capture("s", "success", 1, "API")
    assert entry["inputs"] == {}
    assert entry["metadata"] == {}
    assert entry["error_message"] is None


def test_capture_without_a_file_uses_betty_telemetry_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "from-env" / "telemetry.json"
    monkeypatch.setenv("BETTY_TELEMETRY_FILE", str(path))
    entry = TelemetryCapture().capture("s", "success", 1, "API")
    assert read_entries(path) == [entry]


def test_capture_redacts_inputs_and_metadata(tmp_path: Path) -> None:
    path = tmp_path / "t.json"
    entry = TelemetryCapture(path).capture(
        "s",
        "success",
        1,
        "API",
        inputs={"user": "ann", "API-KEY": "k-999", "nested": [{"password": "p-999"}]},
        metadata={"secret": "s-999", "author": "ann"},
    )
    assert entry["inputs"] == {
        "user": "ann",
        "API-KEY": REDACTED,
        "nested": [{"password": REDACTED}],
    }
    assert entry["metadata"] == {"secret": REDACTED, "author": "ann"}
    raw = path.read_bytes()
    for secret in (b"k-999", b"p-999", b"s-999"):
        assert secret not in raw


def test_capture_inside_a_running_execution_is_its_child(telemetry_file: Path) -> None:
    with TelemetryContext("parent") as ctx:
        parent = span_hex(ctx.span)
        entry = TelemetryCapture(telemetry_file).capture("child", "success", 1, "API")
    assert entry["parent_span_id"] == parent


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        ({"status": "bogus"}, ValueError, INVALID_STATUS),
        ({"duration_ms": "12"}, TypeError, "duration"),
        ({"duration_ms": None}, TypeError, "duration"),
        ({"duration_ms": -1}, ValueError, "duration"),
        ({"duration_ms": -0.001}, ValueError, "duration"),
        ({"duration_ms": math.nan}, ValueError, "duration"),
        ({"duration_ms": math.inf}, ValueError, "duration"),
        ({"duration_ms": -math.inf}, ValueError, "duration"),
        ({"skill": ""}, ValueError, "skill"),
        ({"caller": ""}, ValueError, "caller"),
        ({"inputs": [1]}, TypeError, "inputs"),
        ({"metadata": "x"}, TypeError, "metadata"),
    ],
    ids=[
        "status",
        "duration-str",
        "duration-None",
        "duration-negative",
        "duration-small-negative",
        "duration-nan",
        "duration-inf",
        "duration-minus-inf",
        "empty-skill",
        "empty-caller",
        "inputs-list",
        "metadata-str",
    ],
)
def test_capture_validation_errors_write_nothing(
    kwargs: dict[str, Any], error: type[Exception], message: str, telemetry_file: Path
) -> None:
    arguments: dict[str, Any] = {
        "skill": "s",
        "status": "success",
        "duration_ms": 1.0,
        "caller": "API",
    }
    arguments.update(kwargs)
    with pytest.raises(error) as info:
        TelemetryCapture(telemetry_file).capture(**arguments)
    if error is ValueError and "status" in kwargs:
        assert str(info.value) == message
    else:
        assert message in str(info.value)
    assert no_entries(telemetry_file)


def test_capture_through_a_configured_pipeline_writes_exactly_once(
    telemetry_file: Path, memory_spans: InMemorySpanExporter
) -> None:
    entry = TelemetryCapture(telemetry_file).capture("once", "success", 5, "API")
    assert read_entries(telemetry_file) == [entry]
    # the span also reached the program's own exporter (the collector side)
    (span,) = memory_spans.get_finished_spans()
    assert format(span.context.span_id, "016x") == entry["span_id"]
    assert span.name == "once"
    # later executions are still written normally
    with TelemetryContext("after"):
        pass
    assert [e["skill"] for e in read_entries(telemetry_file)] == ["once", "after"]


def test_capture_with_a_batch_pipeline_on_the_same_file_writes_exactly_once(
    tmp_path: Path,
) -> None:
    path = tmp_path / "batched.json"
    betty_otel.configure(path, batch=True, otlp=False)
    entry = TelemetryCapture(path).capture("once", "success", 5, "API")
    assert read_entries(path) == [entry]
    betty_otel.shutdown()
    assert read_entries(path) == [entry]


@pytest.mark.parametrize("batch", [False, True], ids=["sync", "batch"])
def test_capture_to_another_file_writes_only_there_exactly_once(
    batch: bool, tmp_path: Path
) -> None:
    """The pipeline's file processors leave capture's span to capture: one writer path."""
    pipeline_file = tmp_path / "pipeline.json"
    betty_otel.configure(pipeline_file, batch=batch, otlp=False)
    with TelemetryContext("before"):
        pass
    path = tmp_path / "captured.json"
    entry = TelemetryCapture(path).capture("elsewhere", "success", 1, "API")
    with TelemetryContext("after"):
        pass
    betty_otel.shutdown()
    assert read_entries(path) == [entry]
    assert [e["skill"] for e in read_entries(pipeline_file)] == ["before", "after"]


@pytest.mark.parametrize(
    ("variable", "value"),
    [("BETTY_TELEMETRY_DISABLED", "1"), ("OTEL_SDK_DISABLED", "true")],
)
def test_capture_still_writes_when_instrumentation_is_disabled(
    variable: str, value: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """capture() is an explicit request to write an entry (capture.py documents this)."""
    monkeypatch.setenv(variable, value)
    betty_otel.reset()  # no recording tracer made before the variable was set
    path = tmp_path / "t.json"
    entry = TelemetryCapture(path).capture("explicit", "success", 2, "API")
    assert read_entries(path) == [entry]
    assert entry["skill"] == "explicit"


def test_capture_to_an_unwritable_file_raises_oserror_and_writes_nothing(
    tmp_path: Path,
) -> None:
    blocker = tmp_path / "afile"
    blocker.write_text("not a folder")
    with pytest.raises(OSError):  # noqa: PT011 - any OSError subclass is right here
        TelemetryCapture(blocker / "t.json").capture("s", "success", 1, "API")
    assert blocker.read_text() == "not a folder"


# ---------------------------------------------------------------------------
# TelemetryCapture.query
# ---------------------------------------------------------------------------


@pytest.fixture
def filled(tmp_path: Path) -> TelemetryCapture:
    capture = TelemetryCapture(tmp_path / "q.json")
    rows = [
        ("a", "success", "CLI"),
        ("b", "failure", "API"),
        ("a", "failure", "CLI"),
        ("c", "timeout", "workflow.compose"),
        ("a", "success", "API"),
    ]
    for n, (skill, status, caller) in enumerate(rows):
        capture.capture(skill, status, float(n), caller, metadata={"n": n})
    return capture


def _ns(entries: list[dict[str, Any]]) -> list[int]:
    return [entry["metadata"]["n"] for entry in entries]


def test_query_returns_everything_newest_first(filled: TelemetryCapture) -> None:
    assert _ns(filled.query()) == [4, 3, 2, 1, 0]


def test_query_filters_by_skill_status_caller(filled: TelemetryCapture) -> None:
    assert _ns(filled.query(skill="a")) == [4, 2, 0]
    assert _ns(filled.query(status="failure")) == [2, 1]
    assert _ns(filled.query(caller="API")) == [4, 1]
    assert _ns(filled.query(skill="a", status="success", caller="CLI")) == [0]
    assert filled.query(skill="zzz") == []


def test_query_limit_keeps_the_newest(filled: TelemetryCapture) -> None:
    assert _ns(filled.query(limit=2)) == [4, 3]
    assert _ns(filled.query(skill="a", limit=1)) == [4]
    assert filled.query(limit=0) == []


def test_query_of_a_missing_file_is_empty(tmp_path: Path) -> None:
    assert TelemetryCapture(tmp_path / "none.json").query() == []


def test_query_returns_the_entries_as_captured(filled: TelemetryCapture) -> None:
    newest = filled.capture("d", "pending", 9.5, "API", inputs={"x": 1})
    assert filled.query(limit=1) == [newest]
