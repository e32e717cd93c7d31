"""Outcomes the code states: a TelemetryContext's set_error/set_status when the block raises,
and the original Betty skill's documentation examples, run verbatim.

- An error status or message set before the block raised is the one recorded (the original
  skill's ``ctx.set_error(str(e)); raise``); the exception's type still reaches the span's
  exception event.
- A success or pending set before the block raised gives way to the exception's outcome.
"""

from __future__ import annotations

import asyncio
import sys
import textwrap
import types
from pathlib import Path
from typing import Any

import pytest
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import StatusCode

from betty_otel import TelemetryContext, capture_telemetry
from helpers import read_entries


def _only(memory: InMemorySpanExporter) -> Any:
    (span,) = memory.get_finished_spans()
    return span


def test_set_error_then_raise_records_the_message_the_code_set(
    telemetry_file: Path, memory_spans: InMemorySpanExporter
) -> None:
    def build() -> None:
        with TelemetryContext("plugin.build") as ctx:
            try:
                raise ValueError("boom")
            except ValueError as e:
                ctx.set_error(f"could not build: {e}")
                raise

    with pytest.raises(ValueError, match="boom"):
        build()
    (entry,) = read_entries(telemetry_file)
    assert entry["status"] == "failure"
    assert entry["error_message"] == "could not build: boom"
    span = _only(memory_spans)
    assert span.status.status_code is StatusCode.ERROR
    assert span.status.description == "could not build: boom"
    (event,) = [event for event in span.events if event.name == "exception"]
    assert event.attributes["exception.type"] == "ValueError"
    assert event.attributes["exception.message"] == "boom"


def _set_then_raise(status: str | None, error: str | None, exc: BaseException) -> None:
    with TelemetryContext("step") as ctx:
        if status is not None:
            ctx.set_status(status)
        if error is not None:
            ctx.set_error(error)
        raise exc


@pytest.mark.parametrize("status", ["failure", "timeout", "error"])
def test_an_error_status_set_before_raising_is_kept_with_the_exceptions_message(
    telemetry_file: Path, status: str
) -> None:
    with pytest.raises(RuntimeError):
        _set_then_raise(status, None, RuntimeError("lost the lock"))
    (entry,) = read_entries(telemetry_file)
    assert entry["status"] == status
    assert entry["error_message"] == "RuntimeError: lost the lock"


@pytest.mark.parametrize("status", ["success", "pending"])
def test_a_success_or_pending_set_before_raising_gives_way_to_the_exception(
    telemetry_file: Path, status: str
) -> None:
    with pytest.raises(KeyError):
        _set_then_raise(status, None, KeyError("late"))
    (entry,) = read_entries(telemetry_file)
    assert entry["status"] == "failure"
    assert entry["error_message"] == "KeyError: 'late'"


def test_set_error_is_kept_through_an_interrupt_and_a_clean_exit(telemetry_file: Path) -> None:
    with pytest.raises(KeyboardInterrupt):
        _set_then_raise(None, "stopped by the operator", KeyboardInterrupt())
    with pytest.raises(SystemExit):
        _set_then_raise(None, "gave up", SystemExit(0))
    first, second = read_entries(telemetry_file)
    assert (first["status"], first["error_message"]) == ("failure", "stopped by the operator")
    assert (second["status"], second["error_message"]) == ("failure", "gave up")


def test_set_error_is_kept_in_async_with_and_secrets_in_it_are_redacted(
    telemetry_file: Path,
) -> None:
    async def block() -> None:
        async with TelemetryContext("async.step") as ctx:
            try:
                raise OSError("disk full")
            except OSError as e:
                ctx.set_error(f"{e}; password=hunter2-secret")
                raise

    with pytest.raises(OSError, match="disk full"):
        asyncio.run(block())
    (entry,) = read_entries(telemetry_file)
    assert entry["status"] == "failure"
    assert entry["error_message"].startswith("disk full")
    assert "hunter2-secret" not in telemetry_file.read_text(encoding="utf-8")


def test_set_error_with_a_value_whose_str_raises_is_recorded_as_a_marker(
    telemetry_file: Path,
) -> None:
    class Unprintable:
        def __str__(self) -> str:
            raise RuntimeError("no")

    with TelemetryContext("step") as ctx:
        ctx.set_error(Unprintable())  # type: ignore[arg-type] # callers without type checks
    (entry,) = read_entries(telemetry_file)
    assert entry["status"] == "failure"
    assert entry["error_message"].startswith("<unrepresentable ")
    assert entry["error_message"].endswith("Unprintable>")


# The original skill's documentation (telemetry.capture.md), its examples as written there.
# `telemetry_utils` is the module the original skill shipped; here it is betty_otel's names.
CONTEXT_MANAGER_EXAMPLE = """
from telemetry_utils import TelemetryContext

def build_plugin(plugin_path: str):
    with TelemetryContext(skill="plugin.build", caller="CLI") as ctx:
        ctx.set_inputs({"plugin_path": plugin_path})

        try:
            # Perform build operations
            result = create_plugin_archive(plugin_path)
            ctx.set_status("success")
            return result
        except Exception as e:
            ctx.set_error(str(e))
            raise
"""

DECORATOR_EXAMPLE = """
from telemetry_utils import capture_telemetry

@capture_telemetry(skill_name="agent.run", caller="CLI", capture_inputs=True)
def run_agent(agent_path: str, task_context: str = None):
    \"\"\"Execute a Betty agent.\"\"\"
    # ... implementation
    return {"status": "success", "result": execution_result}
"""


@pytest.fixture
def telemetry_utils(monkeypatch: pytest.MonkeyPatch) -> None:
    module = types.ModuleType("telemetry_utils")
    module.capture_telemetry = capture_telemetry  # type: ignore[attr-defined]
    module.TelemetryContext = TelemetryContext  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "telemetry_utils", module)


def _example(code: str, **names: object) -> dict[str, Any]:
    namespace: dict[str, Any] = dict(names)
    exec(textwrap.dedent(code), namespace)  # the documentation's own example
    return namespace


@pytest.mark.usefixtures("telemetry_utils")
def test_the_documented_context_manager_records_the_error_the_code_set(
    telemetry_file: Path,
) -> None:
    def create_plugin_archive(path: str) -> str:
        if path == "broken.yaml":
            raise ValueError("Validation failed at step 3")
        return f"{path}.tar.gz"

    build_plugin = _example(CONTEXT_MANAGER_EXAMPLE, create_plugin_archive=create_plugin_archive)[
        "build_plugin"
    ]
    assert build_plugin("./plugin.yaml") == "./plugin.yaml.tar.gz"
    with pytest.raises(ValueError, match="step 3"):
        build_plugin("broken.yaml")
    ok, failed = read_entries(telemetry_file)
    assert (ok["skill"], ok["status"], ok["caller"]) == ("plugin.build", "success", "CLI")
    assert ok["inputs"] == {"plugin_path": "./plugin.yaml"}
    assert (failed["status"], failed["error_message"]) == ("failure", "Validation failed at step 3")


@pytest.mark.usefixtures("telemetry_utils")
@pytest.mark.parametrize(
    ("word", "status"), [("success", "success"), ("failed", "failure"), ("error", "error")]
)
def test_the_documented_decorator_records_the_status_the_result_gives(
    telemetry_file: Path, word: str, status: str
) -> None:
    code = DECORATOR_EXAMPLE.replace('"status": "success"', f'"status": "{word}"')
    run_agent = _example(code, execution_result={"done": True})["run_agent"]
    result = run_agent("/agents/api.designer", "Design user authentication API")
    assert result == {"status": word, "result": {"done": True}}
    (entry,) = read_entries(telemetry_file)
    assert (entry["skill"], entry["status"], entry["caller"]) == ("agent.run", status, "CLI")
    assert entry["inputs"] == {
        "agent_path": "/agents/api.designer",
        "task_context": "Design user authentication API",
    }
