"""Faults: telemetry never breaks the host program (issue 5).

With an unwritable file, a sanitizer that raises, a tracer that cannot start spans, a
span processor of the program that raises or a malformed OTEL_* environment, the
decorated function (sync, async, generator, or a TelemetryContext block) returns exactly
its value and raises exactly its exception; the failure is counted and logged.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace import Span as SdkSpan
from opentelemetry.sdk.trace import Tracer as SdkTracer
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

import betty_otel
from betty_otel import TelemetryContext, capture_telemetry, instrument
from betty_otel._sanitize import Sanitizer
from betty_otel._setup import FileSpan, FileTracer
from betty_otel._store import TelemetryStore
from collector import free_port
from helpers import betty_errors

pytestmark = pytest.mark.faults


# ---------------------------------------------------------------------------
# Telemetry never breaks the host program
# ---------------------------------------------------------------------------


class HostError(Exception):
    """The host program's own exception: it must come out as the very same object."""


def _host_call(kind: str, value: object, error: BaseException | None) -> object:
    """One call of a decorated function (or block) of the given kind; returns its result."""
    if kind == "sync":

        @capture_telemetry(skill_name="faults.host", capture_inputs=True)
        def sync_fn(password: str, data: object) -> object:
            if error is not None:
                raise error
            return value

        return sync_fn("pw-host", data={"k": [1, 2]})
    if kind == "async":

        @capture_telemetry(skill_name="faults.host", capture_inputs=True)
        async def async_fn(password: str, data: object) -> object:
            await asyncio.sleep(0)
            if error is not None:
                raise error
            return value

        return asyncio.run(async_fn("pw-host", data={"k": [1, 2]}))
    if kind == "generator":

        @capture_telemetry(skill_name="faults.host", capture_inputs=True)
        def gen_fn(password: str, data: object) -> Iterator[object]:
            yield value
            if error is not None:
                raise error

        items = list(gen_fn("pw-host", data={"k": [1, 2]}))  # runs to the end (or raises)
        return items[0]
    with TelemetryContext("faults.host", inputs={"password": "pw-host"}) as context:
        context.set_metadata({"data": {"k": [1, 2]}})
        if error is not None:
            raise error
        return value


HOST_KINDS = ("sync", "async", "generator", "context")


def _fault_directory_at_path(tmp_path: Path) -> Path:
    path = tmp_path / "telemetry.json"
    path.mkdir()
    return path


def _fault_path_under_a_file(tmp_path: Path) -> Path:
    plain = tmp_path / "plain.txt"
    plain.write_text("not a folder\n", encoding="utf-8")
    return plain / "telemetry.json"


@pytest.mark.parametrize("kind", HOST_KINDS)
@pytest.mark.parametrize(
    "fault", [_fault_directory_at_path, _fault_path_under_a_file], ids=["directory", "under-file"]
)
def test_an_unwritable_telemetry_file_never_changes_what_the_host_gets(
    fault: Callable[[Path], Path],
    kind: str,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A directory at the file's path, or a path under a regular file: the exact return
    value and the exact exception object come through; the drop is logged and counted."""
    caplog.set_level(logging.DEBUG, logger="betty_otel")
    path = fault(tmp_path)
    exporter = betty_otel.configure(path, otlp=False)
    assert exporter is not None
    value, error = object(), HostError("the host's own failure")
    assert _host_call(kind, value, None) is value
    with pytest.raises(HostError) as raised:
        _host_call(kind, value, error)
    assert raised.value is error
    assert exporter.dropped == 2
    assert betty_errors(caplog.records)


def _raise(*args: object, **kwargs: object) -> Any:
    raise RuntimeError("injected fault inside telemetry")


@pytest.mark.parametrize("kind", HOST_KINDS)
@pytest.mark.parametrize(
    "target",
    [
        (instrument, "bind_inputs"),
        (Sanitizer, "sanitize"),
        (SdkTracer, "start_span"),
        (SdkSpan, "end"),
        (SdkSpan, "set_attributes"),
        (FileTracer, "start_span"),
        (FileSpan, "end"),
        (FileSpan, "set_attributes"),
        (TelemetryStore, "append_encoded"),
    ],
    ids=lambda target: f"{target[0].__name__}.{target[1]}",
)
def test_a_failure_inside_telemetry_never_changes_what_the_host_gets(
    target: tuple[object, str],
    kind: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Input binding, the sanitizer, the tracer's start_span, the span's end/set_attributes
    (the SDK's, and the FileTracer's when the file alone receives spans) or the store
    raising: the call returns its exact value and raises its exact exception; the failure
    is counted (internal_errors or the exporter's drops) and logged on "betty_otel"."""
    caplog.set_level(logging.DEBUG, logger="betty_otel")
    owner, name = target
    if owner in (SdkTracer, SdkSpan):  # an SDK setting (at its default) makes SDK spans
        monkeypatch.setenv("OTEL_SPAN_ATTRIBUTE_COUNT_LIMIT", "128")
    exporter = betty_otel.configure(tmp_path / "telemetry.json", otlp=False)
    assert exporter is not None
    value, error = object(), HostError("the host's own failure")
    with monkeypatch.context() as patch:
        patch.setattr(owner, name, _raise)
        assert _host_call(kind, value, None) is value
        with pytest.raises(HostError) as raised:
            _host_call(kind, value, error)
    assert raised.value is error
    unused = name == "bind_inputs" and kind == "context"
    if unused:  # TelemetryContext does not bind arguments: nothing failed
        assert betty_otel.internal_errors() == 0
        return
    failures = betty_otel.internal_errors() + exporter.dropped
    assert failures >= 2, "each failing call must be counted"
    assert betty_errors(caplog.records)


def test_a_span_processor_of_the_program_that_raises_never_reaches_the_host(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """The program's own TracerProvider has a processor whose on_end raises."""

    class Exploding(SimpleSpanProcessor):
        def on_end(self, span: ReadableSpan) -> None:  # noqa: ARG002 - the SDK's signature
            raise RuntimeError("a broken processor of the program")

    provider = TracerProvider(shutdown_on_exit=False)
    provider.add_span_processor(Exploding(InMemorySpanExporter()))
    betty_otel.configure(tmp_path / "telemetry.json", otlp=False, tracer_provider=provider)
    for kind in HOST_KINDS:
        value, error = object(), HostError("the host's own failure")
        assert _host_call(kind, value, None) is value
        with pytest.raises(HostError) as raised:
            _host_call(kind, value, error)
        assert raised.value is error
    betty_otel.shutdown()
    provider.shutdown()


@pytest.mark.parametrize(
    ("variable", "value"),
    [("OTEL_BSP_MAX_EXPORT_BATCH_SIZE", "100000"), ("OTEL_BSP_SCHEDULE_DELAY", "-5")],
)
@pytest.mark.parametrize("kind", ["sync", "context"])
def test_a_malformed_otel_environment_never_breaks_a_decorated_call(
    variable: str, value: str, kind: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """Lazy configuration from the environment happens inside the first instrumented call:
    an OTLP endpoint with a batch setting the SDK rejects must not make that call raise."""
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", f"http://127.0.0.1:{free_port()}")
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_TIMEOUT", "1")
    monkeypatch.setenv(variable, value)
    monkeypatch.setenv("BETTY_TELEMETRY_FILE", str(tmp_path / "telemetry.json"))
    result, error = object(), HostError("the host's own failure")
    assert _host_call(kind, result, None) is result
    with pytest.raises(HostError) as raised:
        _host_call(kind, result, error)
    assert raised.value is error
