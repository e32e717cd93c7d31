"""The entry comes from betty_otel's own record, never from what code does to the current span.

Code inside an execution may do anything a span allows to ``trace.get_current_span()``:
thousands of attributes (past the SDK's count limit, which evicts the oldest), writes to
the entry's ``betty.*`` keys, events, links, statuses, renames, ``record_exception``,
even ``end()``. Pinned here, on every tracer path (the light FileTracer, SDK spans on
betty_otel's provider, a program's provider, synchronous and batched, the console
exporter, TelemetryContext and TelemetryCapture.capture): the entry is complete and
correct, written exactly once with the right status; whatever reaches the file or a
collector under a ``betty.*`` key went through redaction; and every path writes the
same entry.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanContext, Status, StatusCode, TraceFlags

import betty_otel
from betty_otel import TelemetryCapture, TelemetryContext, capture_telemetry
from betty_otel._direct import write_directly
from betty_otel._manual import manual_execution
from betty_otel._setup import FileTracer, current_pipeline
from betty_otel._store import TelemetryStore
from helpers import read_entries

SECRET = "hunter2-very-secret"
TOKEN = "Bearer abcdefghijklmnopqrstuvwxyz012345"  # a value the value rules find
REDACTED = "***REDACTED***"
ENTRY_KEYS = (
    *("betty.skill", "betty.caller", "betty.status"),
    *("betty.inputs", "betty.error_message", "betty.metadata"),
)

# -- the paths ---------------------------------------------------------------------


class Way:
    """One way of recording: configure, then what a collector received (if any)."""

    def __init__(self, name: str, env: dict[str, str], program: bool, batch: bool) -> None:
        self.name = name
        self.env = env
        self.program = program
        self.batch = batch


PATHS = [
    Way("file-tracer", {}, program=False, batch=False),
    Way("file-tracer-batch", {}, program=False, batch=True),
    Way("sdk", {"OTEL_SPAN_ATTRIBUTE_COUNT_LIMIT": "128"}, program=False, batch=False),
    Way("sdk-limit-3", {"OTEL_ATTRIBUTE_COUNT_LIMIT": "3"}, program=False, batch=True),
    Way("program", {}, program=True, batch=False),
    Way("program-batch-limit-5", {"OTEL_SPAN_ATTRIBUTE_COUNT_LIMIT": "5"}, True, True),
]


@contextlib.contextmanager
def recording(
    path: Way, file: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[InMemorySpanExporter | None]:
    """Configured on one path; yields the program's in-memory exporter on a program path."""
    for name, value in path.env.items():
        monkeypatch.setenv(name, value)
    memory = provider = None
    if path.program:
        memory = InMemorySpanExporter()
        provider = TracerProvider(shutdown_on_exit=False)  # reads the limits, as programs do
        provider.add_span_processor(SimpleSpanProcessor(memory))
    betty_otel.configure(file, otlp=False, batch=path.batch, tracer_provider=provider)
    assert isinstance(current_pipeline().tracer, FileTracer) is (
        path.name.startswith("file-tracer")
    )
    try:
        yield memory
    finally:
        betty_otel.shutdown()
        if provider is not None:
            provider.shutdown()
        for name in path.env:
            monkeypatch.delenv(name)


def the_entry(entries: list[dict[str, Any]]) -> dict[str, Any]:
    """The one entry, without what each run makes for itself (times and ids)."""
    (entry,) = entries
    own = ("timestamp", "duration_ms", "trace_id", "span_id")
    return {key: value for key, value in entry.items() if key not in own}


def wire_text(span: ReadableSpan) -> str:
    """Everything a collector receives of a span, as text."""
    events = [(event.name, dict(event.attributes or {})) for event in span.events]
    links = [dict(link.attributes or {}) for link in span.links]
    status = (span.status.status_code.name, span.status.description)
    return repr((span.name, dict(span.attributes or {}), events, links, status))


# -- random operations on the current span ------------------------------------------

_KEYS = st.sampled_from([*ENTRY_KEYS, "betty.note", "betty.password", "user.key", "http.route"])
_VALUES = st.sampled_from(
    ["failure", "hacked", SECRET, TOKEN, '{"password": "p4ssw0rd-in-json"}', "plain"]
) | st.integers(-5, 5)
_CONTEXT = SpanContext(0x1234, 0x5678, is_remote=True, trace_flags=TraceFlags(1))

OPERATIONS = st.one_of(
    st.tuples(st.just("set_attribute"), _KEYS, _VALUES),
    st.tuples(st.just("many_attributes"), st.integers(0, 300)),
    st.tuples(st.just("add_event"), st.sampled_from(["exception", "user.event"]), _VALUES),
    st.tuples(st.just("add_link"), _VALUES),
    st.tuples(st.just("set_status"), st.sampled_from(list(StatusCode)), _VALUES),
    st.tuples(st.just("update_name"), _VALUES),
    st.tuples(st.just("end")),
    st.tuples(st.just("record_exception"), _VALUES),
)
OUTCOMES = st.sampled_from(["return", "status-dict", "raise", "timeout", "exit"])


def tamper(span: trace.Span, operations: list[tuple[Any, ...]]) -> None:
    """Do each operation to span, as user code may."""
    for kind, *args in operations:
        if kind == "set_attribute":
            span.set_attribute(args[0], args[1])
        elif kind == "many_attributes":
            span.set_attributes({f"user.{n}": n for n in range(args[0])})
        elif kind == "add_event":
            span.add_event(args[0], {"exception.message": str(args[1]), "detail": args[1]})
        elif kind == "add_link":
            span.add_link(_CONTEXT, {"why": args[0]})
        elif kind == "set_status":
            span.set_status(args[0], str(args[1]) if args[0] is StatusCode.ERROR else None)
        elif kind == "update_name":
            span.update_name(str(args[0]))
        elif kind == "end":
            span.end()
        else:
            span.record_exception(ValueError(str(args[0])))


def outcome_of(outcome: str) -> object:
    """Return the outcome's value, or raise it."""
    if outcome == "status-dict":
        return {"status": "failed", "error": "said so"}
    if outcome == "raise":
        raise ValueError(f"broke with {SECRET}")
    if outcome == "timeout":
        raise TimeoutError
    if outcome == "exit":
        raise SystemExit(3)
    return None


EXPECTED = {
    "return": ("success", None),
    "status-dict": ("failure", "said so"),
    "raise": ("failure", f"ValueError: broke with {REDACTED}"),
    "timeout": ("timeout", "TimeoutError"),
    "exit": ("failure", "Exited with code 3"),
}


def run_execution(via: str, operations: list[tuple[Any, ...]], outcome: str) -> None:
    """One execution named "tampered" whose code tampers with its span, then ends so."""
    if via == "decorator":

        @capture_telemetry(skill_name="tampered", caller="tests", capture_inputs=True)
        def call(n: int, password: str) -> object:
            tamper(trace.get_current_span(), operations)
            return outcome_of(outcome)

        call(7, SECRET)
    else:
        with TelemetryContext(
            "tampered", "tests", inputs={"n": 7, "password": SECRET}, metadata={"m": 1}
        ) as block:
            tamper(block.span, operations)
            result = outcome_of(outcome)
            if isinstance(result, dict):
                block.set_error(result["error"])


def expected_entry(via: str, outcome: str) -> dict[str, Any]:
    status, error = EXPECTED[outcome]
    return {
        "skill": "tampered",
        "status": status,
        "caller": "tests",
        "inputs": {"n": 7, "password": REDACTED},
        "error_message": error,
        "metadata": {"m": 1} if via == "context" else {},
        "parent_span_id": None,
    }


def check_the_wire(span: ReadableSpan, expected: dict[str, Any], limited: bool) -> None:
    """No secret in what the collector got; betty_otel's attributes and the span status
    as the entry says (unless a count limit below the record's size evicts some)."""
    text = wire_text(span)
    for secret in (SECRET, "abcdefghijklmnopqrstuvwxyz012345", "p4ssw0rd-in-json"):
        assert secret not in text
    if limited:
        return
    attributes = span.attributes or {}
    assert attributes["betty.skill"] == expected["skill"]
    assert attributes["betty.caller"] == expected["caller"]
    assert attributes["betty.status"] == expected["status"]
    assert json.loads(str(attributes["betty.inputs"])) == expected["inputs"]
    assert attributes.get("betty.error_message") == expected["error_message"]
    if expected["status"] != "success":
        assert span.status.status_code is StatusCode.ERROR
        assert span.status.description == expected["error_message"]


@settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    via=st.sampled_from(["decorator", "context"]),
    operations=st.lists(OPERATIONS, max_size=6),
    outcome=OUTCOMES,
)
def test_any_span_operations_give_the_same_complete_entry_on_every_tracer_path(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    via: str,
    operations: list[tuple[Any, ...]],
    outcome: str,
) -> None:
    expected = expected_entry(via, outcome)
    for path in PATHS:
        file = tmp_path / f"{path.name}-{len(list(tmp_path.iterdir()))}.json"
        # The outcome raises as it should: suppressed here.
        with recording(path, file, monkeypatch) as memory, contextlib.suppress(BaseException):
            run_execution(via, operations, outcome)
        assert the_entry(read_entries(file)) == expected, path.name
        if memory is not None:
            (span,) = memory.get_finished_spans()
            check_the_wire(span, expected, limited="limit" in path.name)


# -- each class of tampering, spelled out --------------------------------------------


@pytest.fixture
def program(telemetry_file: Path) -> Iterator[InMemorySpanExporter]:
    """Configured on a program's provider whose in-memory exporter is the collector."""
    memory = InMemorySpanExporter()
    provider = TracerProvider(shutdown_on_exit=False)
    provider.add_span_processor(SimpleSpanProcessor(memory))
    betty_otel.configure(telemetry_file, otlp=False, tracer_provider=provider)
    yield memory
    betty_otel.shutdown()
    provider.shutdown()


def printed_spans(text: str) -> list[dict[str, Any]]:
    """The spans ConsoleSpanExporter printed (JSON objects one after another)."""
    decoder = json.JSONDecoder()
    spans, position = [], 0
    while text[position:].strip():
        position += len(text[position:]) - len(text[position:].lstrip())
        span, position = decoder.raw_decode(text, position)
        spans.append(span)
    return spans


@capture_telemetry(skill_name="crowded", caller="tests", capture_inputs=True)
def crowded(count: int) -> None:
    trace.get_current_span().set_attributes({f"user.{n}": n for n in range(count)})


def test_a_thousand_attributes_never_evict_the_execution_from_the_file_or_the_collector(
    telemetry_file: Path, program: InMemorySpanExporter
) -> None:
    crowded(1000)
    (entry,) = read_entries(telemetry_file)
    assert (entry["skill"], entry["caller"], entry["inputs"]) == (
        "crowded",
        "tests",
        {"count": 1000},
    )
    (span,) = program.get_finished_spans()
    attributes = span.attributes or {}
    assert (attributes["betty.skill"], attributes["betty.caller"]) == ("crowded", "tests")
    assert attributes["betty.status"] == "success"
    assert attributes["betty.inputs"] == '{"count":1000}'


_CONSOLE_PROGRAM = """
import sys
import betty_otel
from opentelemetry import trace

@betty_otel.capture_telemetry(skill_name="crowded", caller="tests", capture_inputs=True)
def crowded(count):
    trace.get_current_span().set_attributes({f"user.{n}": n for n in range(count)})

betty_otel.configure(sys.argv[1], otlp=False)
crowded(1000)
"""


def test_a_thousand_attributes_never_evict_the_execution_with_the_console_exporter(
    tmp_path: Path,
) -> None:
    path = tmp_path / "t.json"
    done = subprocess.run(
        [sys.executable, "-c", _CONSOLE_PROGRAM, str(path)],
        env={**os.environ, "OTEL_TRACES_EXPORTER": "console", "PYTHONWARNINGS": "ignore"},
        capture_output=True,
        text=True,
        check=True,
        timeout=120,  # generous: catches a hang, never a speed assertion
    )
    (entry,) = read_entries(path)
    assert (entry["skill"], entry["caller"], entry["inputs"]) == (
        "crowded",
        "tests",
        {"count": 1000},
    )
    (printed,) = printed_spans(done.stdout)
    assert printed["attributes"]["betty.skill"] == "crowded"
    assert printed["attributes"]["betty.inputs"] == '{"count":1000}'


def test_code_writing_the_entry_keys_changes_neither_the_entry_nor_the_span_a_collector_sees(
    telemetry_file: Path, program: InMemorySpanExporter
) -> None:
    @capture_telemetry(skill_name="honest", caller="tests")
    def honest() -> None:
        span = trace.get_current_span()
        span.set_attribute("betty.skill", "forged")
        span.set_attribute("betty.status", "failure")
        span.set_attributes({"betty.caller": "forged", "betty.inputs": '{"password": "pw-1234"}'})
        span.set_attribute("betty.error_message", "token=ghp_" + "a1" * 18)
        span.set_attribute("betty.metadata", '{"forged": true}')

    honest()
    (entry,) = read_entries(telemetry_file)
    assert the_entry([entry]) == {
        "skill": "honest",
        "status": "success",
        "caller": "tests",
        "inputs": {},
        "error_message": None,
        "metadata": {},
        "parent_span_id": None,
    }
    (span,) = program.get_finished_spans()
    betty = {
        key: value for key, value in (span.attributes or {}).items() if key.startswith("betty.")
    }
    assert betty == {"betty.skill": "honest", "betty.caller": "tests", "betty.status": "success"}


def test_other_attributes_events_links_and_names_reach_the_collector_only_redacted(
    program: InMemorySpanExporter,
) -> None:
    jwt = (
        "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0."
        "dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U"
    )

    @capture_telemetry(skill_name="leaky")
    def leaky() -> None:
        span = trace.get_current_span()
        span.set_attribute("betty.note", f"Authorization: Bearer {jwt}")
        span.set_attribute("betty.password", "plain-words-here")
        span.set_attribute("db.password", "plain-words-here")
        span.set_attribute("http.url", f"https://x.test/?token={jwt}")
        span.set_attribute("user.list", ["ok", f"Bearer {jwt}"])
        span.add_event("user.event", {"api_key": "plain-words-here", "note": jwt})
        span.add_link(_CONTEXT, {"secret": "plain-words-here"})
        span.update_name(f"renamed {jwt}")

    leaky()
    (span,) = program.get_finished_spans()
    text = wire_text(span)
    assert jwt not in text
    assert "plain-words-here" not in text
    attributes = span.attributes or {}
    assert attributes["betty.password"] == attributes["db.password"] == REDACTED
    assert attributes["user.list"] == ("ok", f"Bearer {REDACTED}")
    assert span.name == f"renamed {REDACTED}"


def _end_then_raise() -> None:
    trace.get_current_span().end()
    raise ValueError("after end")


async def _end_then_raise_async() -> None:
    _end_then_raise()


def _end_then_raise_generator() -> Iterator[int]:
    yield 1
    _end_then_raise()


def _end_then_raise_block() -> None:
    with TelemetryContext("ender", caller="tests") as block:
        block.span.end()
        raise ValueError("after end")


KINDS = {
    "function": capture_telemetry(skill_name="ender", caller="tests")(_end_then_raise),
    "coroutine": lambda: asyncio.run(
        capture_telemetry(skill_name="ender", caller="tests")(_end_then_raise_async)()
    ),
    "generator": lambda: list(
        capture_telemetry(skill_name="ender", caller="tests")(_end_then_raise_generator)()
    ),
    "context": _end_then_raise_block,
}


@pytest.mark.parametrize("way", PATHS, ids=lambda way: way.name)
@pytest.mark.parametrize("kind", sorted(KINDS))
def test_a_call_that_ends_its_span_then_raises_is_written_once_as_a_failure(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, way: Way, kind: str
) -> None:
    file = tmp_path / "t.json"
    with recording(way, file, monkeypatch) as memory, pytest.raises(ValueError, match="after end"):
        KINDS[kind]()
    (entry,) = read_entries(file)
    assert (entry["skill"], entry["status"]) == ("ender", "failure")
    assert entry["error_message"] == "ValueError: after end"
    if memory is not None:
        (span,) = memory.get_finished_spans()
        assert span.status.status_code is StatusCode.ERROR


def test_nothing_is_written_before_the_execution_ends_whatever_its_code_ends(
    telemetry_file: Path,
) -> None:
    seen: list[list[dict[str, Any]]] = []

    @capture_telemetry(skill_name="early")
    def early() -> None:
        trace.get_current_span().end()
        assert trace.get_current_span().is_recording()
        seen.append(read_entries(telemetry_file) if telemetry_file.exists() else [])
        capture_telemetry(skill_name="inner")(lambda: None)()

    early()
    assert seen == [[]]
    inner, outer = read_entries(telemetry_file)
    assert (inner["skill"], outer["skill"]) == ("inner", "early")
    assert inner["parent_span_id"] == outer["span_id"]


def test_an_ok_status_set_by_code_gives_way_to_a_failure_in_the_file_and_on_the_wire(
    telemetry_file: Path, program: InMemorySpanExporter
) -> None:
    @capture_telemetry(skill_name="optimist")
    def optimist() -> None:
        trace.get_current_span().set_status(Status(StatusCode.OK))
        raise RuntimeError("no")

    with pytest.raises(RuntimeError):
        optimist()
    (entry,) = read_entries(telemetry_file)
    assert entry["status"] == "failure"
    (span,) = program.get_finished_spans()
    assert (span.status.status_code, span.status.description) == (
        StatusCode.ERROR,
        "RuntimeError: no",
    )


def test_a_status_code_sets_on_a_success_reaches_the_wire_redacted_and_the_entry_stays_success(
    telemetry_file: Path, program: InMemorySpanExporter
) -> None:
    @capture_telemetry(skill_name="handled")
    def handled() -> None:
        span = trace.get_current_span()
        span.set_status(StatusCode.ERROR, "retry with password=pw-12345")
        span.set_status(StatusCode.UNSET)  # changes nothing, as on SDK spans

    handled()
    (entry,) = read_entries(telemetry_file)
    assert (entry["status"], entry["error_message"]) == ("success", None)
    (span,) = program.get_finished_spans()
    assert span.status.status_code is StatusCode.ERROR
    assert span.status.description == f"retry with password={REDACTED}"


def test_record_exception_by_code_is_redacted_and_changes_no_outcome(
    telemetry_file: Path, program: InMemorySpanExporter
) -> None:
    @capture_telemetry(skill_name="recorder")
    def recorder() -> None:
        try:
            raise ValueError("Authorization: Bearer abcdefghijklmnopqrstuvwxyz0123")
        except ValueError as exc:
            trace.get_current_span().record_exception(exc, {"extra.password": "pw-12345"})

    recorder()
    (entry,) = read_entries(telemetry_file)
    assert entry["status"] == "success"
    (span,) = program.get_finished_spans()
    (event,) = span.events
    attributes = dict(event.attributes or {})
    assert attributes["exception.type"] == "ValueError"
    assert attributes["exception.message"] == f"Authorization: Bearer {REDACTED}"
    assert attributes["extra.password"] == REDACTED
    assert "abcdefghijklmnopqrstuvwxyz0123" not in str(attributes["exception.stacktrace"])


@pytest.mark.parametrize("way", PATHS, ids=lambda way: way.name)
def test_a_nested_execution_detects_its_caller_from_the_record_not_the_span(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, way: Way
) -> None:
    @capture_telemetry(skill_name="inner", detect_caller=True)
    def inner() -> None:
        pass

    @capture_telemetry(skill_name="outer")
    def outer() -> None:
        span = trace.get_current_span()
        span.set_attribute("betty.skill", "forged")
        span.set_attributes({f"user.{n}": n for n in range(200)})
        assert span.attributes["betty.skill"] == "outer"  # type: ignore[attr-defined]
        inner()

    file = tmp_path / "t.json"
    with recording(way, file, monkeypatch):
        outer()
    inner_entry, outer_entry = read_entries(file)
    assert (inner_entry["caller"], outer_entry["skill"]) == ("outer", "outer")


def test_the_current_span_never_raises_into_user_code(telemetry_file: Path) -> None:
    class Hostile(dict):  # type: ignore[type-arg]
        def items(self) -> Any:
            raise RuntimeError("hostile items")

    @capture_telemetry(skill_name="misuse")
    def misuse() -> str:
        span = trace.get_current_span()
        span.set_attributes(None)  # type: ignore[arg-type]
        span.set_attributes(Hostile())
        span.add_event("e", Hostile())
        span.add_link(_CONTEXT, Hostile())
        span.set_status("not a status")  # type: ignore[arg-type]
        span.record_exception("not an exception")  # type: ignore[arg-type]
        return "ran"

    assert misuse() == "ran"
    (entry,) = read_entries(telemetry_file)
    assert (entry["skill"], entry["status"]) == ("misuse", "success")
    # each failing call counted: set_attributes twice, add_link, record_exception
    assert betty_otel.internal_errors() == 4


@pytest.mark.parametrize("limit", ["1", "2", "5"])
def test_a_capture_under_any_attribute_count_limit_writes_the_whole_entry_on_both_paths(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, limit: str
) -> None:
    monkeypatch.setenv("OTEL_ATTRIBUTE_COUNT_LIMIT", limit)
    arguments = ("manual", "failure", 12.5, "CLI", {"n": 1}, "it broke", {"rows": 3})
    by_span = TelemetryCapture(tmp_path / "span.json").capture(*arguments)
    direct = write_directly(TelemetryStore(tmp_path / "direct.json"), manual_execution(*arguments))
    assert the_entry([by_span]) == the_entry([direct])
    assert the_entry([by_span]) == {
        "skill": "manual",
        "status": "failure",
        "caller": "CLI",
        "inputs": {"n": 1},
        "error_message": "it broke",
        "metadata": {"rows": 3},
        "parent_span_id": None,
    }
    assert read_entries(tmp_path / "span.json") == [by_span]
