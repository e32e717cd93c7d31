"""OpenTelemetry conventions (issue 12, item 3).

- The exception event follows the semantic conventions: ``exception.type`` is the
  qualified class name, ``exception.message`` the exception's own message only (never
  ``Type: message``), redacted like everything else. The entry's ``error_message`` and
  the span status keep ``Type: message``, as documented (the entry has no other place
  for the type).
- OTEL_TRACES_EXPORTER is a comma-separated list, case-insensitive: ``otlp``,
  ``console`` (span JSON on standard output) and ``none`` (no collector, even with an
  endpoint set); the file is written whatever it says. Other names get one warning
  when the pipeline is configured, never one per call.
- A program that installs its TracerProvider after the first recorded call gets
  exactly one warning, at its next recorded call, naming
  ``configure(tracer_provider=...)``; recording to the file goes on throughout.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import subprocess
import sys
import textwrap
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

import betty_otel
from betty_otel import TelemetryContext, capture_telemetry
from betty_otel._environment import traces_exporters
from collector import RotelCollector
from helpers import is_betty_record, read_entries


class BuildError(Exception):
    """A program's own exception class: its type is qualified by its module."""


class AuthError(Exception):
    def __init__(self, message: str, password: str) -> None:
        super().__init__(message, password)


class UnprintableError(Exception):
    def __str__(self) -> str:
        raise RuntimeError("no str")


def raise_from_decorator(exc: BaseException) -> None:
    @capture_telemetry(skill_name="conventions")
    def work() -> None:
        raise exc

    work()


def raise_from_coroutine(exc: BaseException) -> None:
    @capture_telemetry(skill_name="conventions")
    async def work() -> None:
        raise exc

    asyncio.run(work())


def raise_from_context(exc: BaseException) -> None:
    with TelemetryContext("conventions"):
        raise exc


RAISERS: dict[str, Callable[[BaseException], None]] = {
    "decorator": raise_from_decorator,
    "coroutine": raise_from_coroutine,
    "context": raise_from_context,
}

# exception, exception.type, exception.message, the entry's error_message
EXCEPTIONS: dict[str, tuple[BaseException, str, str, str]] = {
    "builtin": (ValueError("boom"), "ValueError", "boom", "ValueError: boom"),
    "qualified": (
        BuildError("no plugin.yaml"),
        "test_conventions.BuildError",
        "no plugin.yaml",
        "BuildError: no plugin.yaml",
    ),
    "key": (KeyError("k"), "KeyError", "'k'", "KeyError: 'k'"),
    "timeout": (TimeoutError("too slow"), "TimeoutError", "too slow", "TimeoutError: too slow"),
    "empty": (RuntimeError(), "RuntimeError", "", "RuntimeError"),
    "unprintable": (
        UnprintableError("x"),
        "test_conventions.UnprintableError",
        "",
        "UnprintableError",
    ),
    "multiline": (ValueError("a\nb"), "ValueError", "a\nb", "ValueError: a\nb"),
}


def exception_event(memory: InMemorySpanExporter) -> dict[str, Any]:
    (span,) = memory.get_finished_spans()
    (event,) = [event for event in span.events if event.name == "exception"]
    return dict(event.attributes or {})


@pytest.mark.parametrize("raiser", list(RAISERS))
@pytest.mark.parametrize("case", list(EXCEPTIONS))
def test_exception_message_is_the_message_only_and_the_type_is_apart(
    case: str, raiser: str, telemetry_file: Path, memory_spans: InMemorySpanExporter
) -> None:
    exc, kind, message, error_message = EXCEPTIONS[case]
    with pytest.raises(type(exc)) as raised:
        RAISERS[raiser](exc)
    assert raised.value is exc
    event = exception_event(memory_spans)
    assert event["exception.type"] == kind
    assert event["exception.message"] == message
    assert "Traceback" in event["exception.stacktrace"]
    (entry,) = read_entries(telemetry_file)
    assert entry["error_message"] == error_message
    (span,) = memory_spans.get_finished_spans()
    assert span.status.description == error_message


def test_exception_message_of_system_exit_is_its_code(
    telemetry_file: Path, memory_spans: InMemorySpanExporter
) -> None:
    with pytest.raises(SystemExit):
        raise_from_decorator(SystemExit(3))
    event = exception_event(memory_spans)
    assert (event["exception.type"], event["exception.message"]) == ("SystemExit", "3")
    assert read_entries(telemetry_file)[0]["error_message"] == "Exited with code 3"


@pytest.mark.parametrize(
    ("exc", "secret"),
    [
        (ValueError("login with password=hunter2-hunter2 failed"), "hunter2-hunter2"),
        (AuthError("login failed", "s3cr3t-s3cr3t"), "s3cr3t-s3cr3t"),
    ],
    ids=["secret-value", "secret-argument"],
)
def test_exception_message_is_redacted(
    exc: BaseException, secret: str, telemetry_file: Path, memory_spans: InMemorySpanExporter
) -> None:
    with pytest.raises(type(exc)):
        raise_from_decorator(exc)
    event = exception_event(memory_spans)
    assert "REDACTED" in event["exception.message"]
    for value in (*event.values(), telemetry_file.read_text(encoding="utf-8")):
        assert secret not in str(value)


# --------------------------------------------------------------------------- OTEL_TRACES_EXPORTER

ENDPOINT = "http://127.0.0.1:4318"


@pytest.mark.parametrize(
    ("listed", "endpoint", "expected"),
    [
        (None, False, set()),
        (None, True, {"otlp"}),
        ("", True, {"otlp"}),  # empty counts as unset
        ("otlp", False, {"otlp"}),
        ("console", True, {"console"}),  # a list without otlp turns the endpoint's OTLP off
        ("console,otlp", False, {"console", "otlp"}),
        (" OTLP , Console ", False, {"console", "otlp"}),
        ("otlp,,console,", False, {"console", "otlp"}),
        ("none", True, set()),
    ],
)
def test_traces_exporters_reads_the_list_as_the_specification_allows(
    listed: str | None,
    endpoint: bool,
    expected: set[str],
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    if listed is not None:
        monkeypatch.setenv("OTEL_TRACES_EXPORTER", listed)
    if endpoint:
        monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", ENDPOINT)
    assert traces_exporters() == expected
    assert [record for record in caplog.records if is_betty_record(record)] == []


@pytest.mark.parametrize(
    ("listed", "expected", "named"),
    [
        ("zipkin", set(), "'zipkin'"),
        ("console,jaeger,bogus", {"console"}, "'bogus', 'jaeger'"),
        ("none,otlp", set(), "'none' with other exporters"),
    ],
)
def test_names_it_cannot_honour_get_one_warning_that_names_them(
    listed: str,
    expected: set[str],
    named: str,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    monkeypatch.setenv("OTEL_TRACES_EXPORTER", listed)
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", ENDPOINT)
    assert traces_exporters() == expected
    (warning,) = [record for record in caplog.records if is_betty_record(record)]
    assert warning.levelno == logging.WARNING
    assert "OTEL_TRACES_EXPORTER" in warning.getMessage()
    assert named in warning.getMessage()


def test_an_unknown_exporter_is_warned_about_once_not_per_call(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "telemetry.json"
    monkeypatch.setenv("BETTY_TELEMETRY_FILE", str(path))
    monkeypatch.setenv("OTEL_TRACES_EXPORTER", "otlp-typo")

    @capture_telemetry(skill_name="conventions")
    def work(n: int) -> int:
        return n

    assert [work(n) for n in range(5)] == list(range(5))
    warnings = [record for record in caplog.records if is_betty_record(record)]
    assert len(warnings) == 1
    assert "'otlp-typo'" in warnings[0].getMessage()
    assert len(read_entries(path)) == 5


def run_python(code: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """code in a fresh interpreter with env added; stdout and stderr as text."""
    done = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        capture_output=True,
        text=True,
        env={**os.environ, **env},
        timeout=120,  # catches a hang only
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return done


def json_documents(text: str) -> list[dict[str, Any]]:
    """The JSON documents printed one after another (the console exporter's output)."""
    decoder = json.JSONDecoder()
    documents, rest = [], text.strip()
    while rest:
        document, end = decoder.raw_decode(rest)
        documents.append(document)
        rest = rest[end:].strip()
    return documents


RECORD_ONE = """
    from betty_otel import capture_telemetry

    @capture_telemetry(skill_name="console.skill")
    def work():
        return 1

    work()
"""


def test_console_prints_each_span_as_json_and_the_file_has_the_entry(tmp_path: Path) -> None:
    path = tmp_path / "telemetry.json"
    done = run_python(
        RECORD_ONE, {"OTEL_TRACES_EXPORTER": "console", "BETTY_TELEMETRY_FILE": str(path)}
    )
    (span,) = json_documents(done.stdout)
    (entry,) = read_entries(path)
    assert span["name"] == "console.skill"
    assert span["attributes"]["betty.skill"] == "console.skill"
    assert span["context"]["span_id"] == "0x" + entry["span_id"]
    assert span["context"]["trace_id"] == "0x" + entry["trace_id"]


@pytest.mark.collector
def test_console_and_otlp_listed_together_both_receive_the_span(
    tmp_path: Path, rotel_collector: RotelCollector
) -> None:
    path = tmp_path / "telemetry.json"
    done = run_python(
        RECORD_ONE,
        {
            "OTEL_TRACES_EXPORTER": "console, otlp",
            "OTEL_EXPORTER_OTLP_ENDPOINT": rotel_collector.http_endpoint,
            "BETTY_TELEMETRY_FILE": str(path),
        },
    )
    (entry,) = read_entries(path)
    (printed,) = json_documents(done.stdout)
    assert printed["context"]["span_id"] == "0x" + entry["span_id"]
    assert rotel_collector.span("console.skill").span_id == entry["span_id"]


@pytest.mark.collector
def test_none_sends_nothing_to_a_configured_collector_and_still_writes_the_file(
    tmp_path: Path, rotel_collector: RotelCollector, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "telemetry.json"
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", rotel_collector.http_endpoint)

    def record(skill: str) -> None:
        betty_otel.configure(path)
        with TelemetryContext(skill):
            pass
        betty_otel.shutdown()  # flushes and closes the collectors

    monkeypatch.setenv("OTEL_TRACES_EXPORTER", "none")
    record("exported.to.none")
    monkeypatch.setenv("OTEL_TRACES_EXPORTER", "otlp")
    record("exported.to.otlp")  # sent after the first: once it is there, the first never was
    rotel_collector.span("exported.to.otlp")
    assert "exported.to.none" not in rotel_collector.raw_output()
    assert [entry["skill"] for entry in read_entries(path)] == [
        "exported.to.none",
        "exported.to.otlp",
    ]


# --------------------------------------------------------------------------- a late provider

LATE_PROVIDER = """
    import json, sys
    import betty_otel
    from betty_otel import capture_telemetry
    from opentelemetry import trace
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    @capture_telemetry(skill_name="late")
    def work():
        return 1

    if sys.argv[1] == "explicit":
        betty_otel.configure()
    work()
    memory = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(memory))
    trace.set_tracer_provider(provider)
    sys.stderr.write("BEFORE THE NEXT CALL\\n")
    sys.stderr.flush()
    for _ in range(5):
        work()
    sys.stderr.write("AFTER FIVE CALLS\\n")
    sys.stderr.flush()
    betty_otel.configure(tracer_provider=provider)  # what the warning says to do
    work()
    print(json.dumps([span.name for span in memory.get_finished_spans()]))
"""


@pytest.mark.parametrize("configured", ["lazy", "explicit"])
def test_a_provider_installed_after_the_first_call_gets_one_warning_at_the_next_call(
    configured: str, tmp_path: Path
) -> None:
    path = tmp_path / "telemetry.json"
    code = textwrap.dedent(LATE_PROVIDER).replace("sys.argv[1]", repr(configured))
    done = run_python(code, {"BETTY_TELEMETRY_FILE": str(path)})
    assert done.stderr.count("configure(tracer_provider=...)") == 1, done.stderr
    before, after = done.stderr.index("BEFORE"), done.stderr.index("AFTER")
    assert before < done.stderr.index("configure(tracer_provider=...)") < after
    assert json.loads(done.stdout) == ["late"]  # the provider's exporters once configured
    assert [entry["skill"] for entry in read_entries(path)] == ["late"] * 7


def test_a_provider_installed_before_the_first_call_is_used_without_a_warning(
    tmp_path: Path,
) -> None:
    path = tmp_path / "telemetry.json"
    code = textwrap.dedent(LATE_PROVIDER).replace(
        'if sys.argv[1] == "explicit":\n    betty_otel.configure()\nwork()\n', ""
    )
    assert "explicit" not in code  # the call before the provider is gone
    done = run_python(code, {"BETTY_TELEMETRY_FILE": str(path)})
    assert "betty_otel" not in done.stderr
    assert json.loads(done.stdout) == ["late"] * 6
    assert len(read_entries(path)) == 6
