"""The file tracer: light spans when the telemetry file is their only receiver.

Pins which tracer runs when (the FileTracer only when nothing but the file would
receive a span) and that the same executions give the same entries on both tracers,
ids and times aside: nesting, async, generators, exceptions (hostile ones too),
status results, metadata, inputs, callers, $TRACEPARENT, a subprocess child.
The SDK path is forced with an SDK setting that changes nothing here
(OTEL_SPAN_ATTRIBUTE_COUNT_LIMIT at its default, 128).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import Status, StatusCode

import betty_otel
from betty_otel import TelemetryCapture, TelemetryContext, capture_telemetry
from betty_otel._setup import FileSpan, FileTracer, current_pipeline
from helpers import read_entries
from hostile import Unrepresentable

FORCE_SDK = ("OTEL_SPAN_ATTRIBUTE_COUNT_LIMIT", "128")
PARENT_TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
PARENT_SPAN = "00f067aa0ba902b7"


def _normalised(entries: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Entries without times, their ids replaced by their positions (the tree kept)."""
    spans = {entry["span_id"]: index for index, entry in enumerate(entries)}
    traces = {entry["trace_id"]: None for entry in entries}
    trace_index = {trace_id: index for index, trace_id in enumerate(traces)}
    out = []
    for entry in entries:
        rest = {k: v for k, v in entry.items() if k not in ("timestamp", "duration_ms")}
        rest["span_id"] = spans[entry["span_id"]]
        rest["trace_id"] = (
            entry["trace_id"]
            if entry["trace_id"] == PARENT_TRACE
            else trace_index[entry["trace_id"]]
        )
        parent = entry["parent_span_id"]
        rest["parent_span_id"] = spans.get(parent, parent)
        out.append(rest)
    return out


@pytest.fixture
def both(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Callable[[Callable[[], None]], list[list[dict[str, Any]]]]:
    """Run a scenario on the FileTracer, then on the SDK's; the two entry lists."""

    def run(scenario: Callable[[], None], **options: Any) -> list[list[dict[str, Any]]]:
        results = []
        for index, sdk in enumerate((False, True)):
            if sdk:
                monkeypatch.setenv(*FORCE_SDK)
            path = tmp_path / f"run-{len(list(tmp_path.iterdir()))}-{index}.json"
            betty_otel.configure(path, otlp=False, **options)
            assert isinstance(current_pipeline().tracer, FileTracer) is not sdk
            scenario()
            betty_otel.shutdown()
            monkeypatch.delenv(FORCE_SDK[0], raising=False)
            results.append(_normalised(read_entries(path)) if path.exists() else [])
        return results

    return run


class OddError(Exception):
    """An exception whose message cannot be read."""

    def __str__(self) -> str:
        raise RuntimeError("no str")


def _swallow(function: Callable[[], object]) -> None:
    with contextlib.suppress(BaseException):  # the scenario records every kind of outcome
        function()


def _scenario() -> None:
    """Every kind of execution the decorator and the context manager record."""

    @capture_telemetry(capture_inputs=True)
    def leaf(value: object, password: str = "hunter2") -> object:
        span = trace.get_current_span()
        span.set_attribute("user.list", [1, 2, 3])  # cleaned as the SDK cleans it
        span.set_attribute("user.bad", object())  # type: ignore[arg-type] # dropped
        span.add_event("user.event")
        if isinstance(value, BaseException):
            raise value
        return value

    @capture_telemetry(skill_name="tree", detect_caller=True)
    def tree() -> None:
        leaf({"status": "failed", "error": "bad"})
        leaf({"status": "Timed out", "error_message": "slow"})
        leaf({"status": "nonsense"})
        for exc in (ValueError("boom"), OddError(), SystemExit(3), SystemExit(0), TimeoutError()):
            _swallow(functools.partial(leaf, exc))
        leaf(Unrepresentable())
        with TelemetryContext("block", caller="ctx") as block:
            block.set_inputs({"token": "sk-abcdefghijklmnopqrstuvwx", "n": 1})
            block.set_metadata({"rows": 3})
            block.set_status("timeout")
        _swallow(_raising_block)

    @capture_telemetry
    async def coroutine() -> dict[str, str]:
        await asyncio.sleep(0)
        return {"status": "error", "error": "async"}

    @capture_telemetry
    def generator() -> Iterator[int]:
        yield 1
        raise KeyError("gen")

    tree()
    asyncio.run(coroutine())
    _swallow(lambda: list(generator()))


def _raising_block() -> None:
    with TelemetryContext("raising") as block:
        block.set_error("set before raising")
        raise RuntimeError("raised")


def test_the_same_executions_give_the_same_entries_on_both_tracers(both: Any) -> None:
    light, sdk = both(_scenario)
    assert len(light) == 14
    assert light == sdk


def test_a_traceparent_parent_and_a_batch_give_the_same_entries_on_both_tracers(
    both: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TRACEPARENT", f"00-{PARENT_TRACE}-{PARENT_SPAN}-01")
    light, sdk = both(_scenario, batch=True)
    assert light == sdk
    assert light[-1]["parent_span_id"] == PARENT_SPAN
    assert {entry["trace_id"] for entry in light} == {PARENT_TRACE}


def _child(folder: Path) -> None:
    """A decorated call whose body runs a child process recording one execution, which
    must be its child (its trace, its span as parent, its skill as caller)."""
    code = (
        "import betty_otel, sys\n"
        "betty_otel.configure(sys.argv[1], otlp=False)\n"
        "betty_otel.capture_telemetry(skill_name='child', detect_caller=True)(lambda: None)()\n"
    )

    @capture_telemetry(skill_name="parent")
    def parent() -> None:
        child_file = folder / f"child-{len(list(folder.iterdir()))}.json"
        subprocess.run(
            [sys.executable, "-c", code, str(child_file)],
            env=betty_otel.subprocess_env(),
            check=True,
            timeout=120,  # generous: catches a hang, never a speed assertion
        )
        (entry,) = read_entries(child_file)
        context = trace.get_current_span().get_span_context()
        assert entry["trace_id"] == format(context.trace_id, "032x")
        assert entry["parent_span_id"] == format(context.span_id, "016x")
        assert entry["caller"] == "parent"

    parent()


def test_a_subprocess_child_joins_the_trace_on_both_tracers(both: Any, tmp_path: Path) -> None:
    folder = tmp_path / "children"
    folder.mkdir()
    light, sdk = both(lambda: _child(folder))
    assert light == sdk
    assert [entry["status"] for entry in light] == ["success"]  # the checks in it passed


_OUTCOMES = st.one_of(
    st.none(),
    st.fixed_dictionaries(
        {"status": st.sampled_from(["failed", "error", "timeout", "success", "odd", "FAILURE"])},
        optional={"error": st.text(max_size=20), "error_message": st.text(max_size=20)},
    ),
    st.builds(ValueError, st.text(max_size=20)),
    st.builds(KeyboardInterrupt),
    st.builds(SystemExit, st.one_of(st.none(), st.integers(-3, 3), st.text(max_size=5))),
)
_TREES = st.recursive(
    st.tuples(_OUTCOMES, st.just(())),
    lambda children: st.tuples(_OUTCOMES, st.lists(children, max_size=3).map(tuple)),
    max_leaves=6,
)


def _run_tree(node: Any, depth: int = 0) -> None:
    outcome, children = node

    @capture_telemetry(skill_name=f"node{depth}", capture_inputs=True)
    def execute(arguments: tuple[Any, ...]) -> object:
        for child in children:
            _swallow(functools.partial(_run_tree, child, depth + 1))
        if isinstance(outcome, BaseException):
            raise outcome
        return outcome

    execute((depth, outcome if isinstance(outcome, dict) else None))


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(tree=_TREES)
def test_any_tree_of_outcomes_gives_the_same_entries_on_both_tracers(both: Any, tree: Any) -> None:
    light, sdk = both(lambda: _swallow(lambda: _run_tree(tree)))
    assert light == sdk


# -- which tracer runs when --------------------------------------------------------


def test_the_file_tracer_runs_when_the_file_alone_receives_the_spans(telemetry_file: Path) -> None:
    assert isinstance(current_pipeline().tracer, FileTracer)
    assert current_pipeline().provider is None


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("OTEL_ATTRIBUTE_VALUE_LENGTH_LIMIT", "4"),
        ("OTEL_SPAN_ATTRIBUTE_VALUE_LENGTH_LIMIT", "4"),
        ("OTEL_ATTRIBUTE_COUNT_LIMIT", "4"),
        ("OTEL_SPAN_ATTRIBUTE_COUNT_LIMIT", "4"),
        ("OTEL_PYTHON_ID_GENERATOR", "random"),
    ],
)
def test_an_sdk_setting_that_changes_spans_keeps_the_sdk_tracer(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, variable: str, value: str
) -> None:
    monkeypatch.setenv(variable, value)
    betty_otel.configure(tmp_path / "t.json", otlp=False)
    assert not isinstance(current_pipeline().tracer, FileTracer)


def test_an_attribute_value_limit_cuts_the_span_a_collector_sees_never_the_entry(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The entry is made from betty_otel's record of the execution, not from the span."""
    monkeypatch.setenv("OTEL_ATTRIBUTE_VALUE_LENGTH_LIMIT", "4")
    path = tmp_path / "t.json"
    memory = InMemorySpanExporter()
    provider = TracerProvider(shutdown_on_exit=False)  # reads the limit, as a program's does
    provider.add_span_processor(SimpleSpanProcessor(memory))
    betty_otel.configure(path, otlp=False, tracer_provider=provider)
    capture_telemetry(skill_name="cut", caller="long-caller")(lambda: None)()
    (entry,) = read_entries(path)
    assert (entry["skill"], entry["caller"]) == ("cut", "long-caller")
    (span,) = memory.get_finished_spans()
    assert span.attributes is not None
    assert span.attributes["betty.caller"] == "long"
    provider.shutdown()


@pytest.mark.parametrize(
    "options",
    [
        {"all_spans": True},
        {"otlp": True, "otlp_endpoint": "http://127.0.0.1:9/v1/traces", "exit_timeout": 0.1},
        {"tracer_provider": "program"},
    ],
    ids=["all_spans", "otlp", "program-provider"],
)
def test_anything_else_receiving_spans_keeps_the_sdk_tracer(
    tmp_path: Path, options: dict[str, Any]
) -> None:
    provider = TracerProvider(shutdown_on_exit=False)
    if options.get("tracer_provider") == "program":
        options = {"tracer_provider": provider}
    betty_otel.configure(tmp_path / "t.json", **{"otlp": False, **options})
    assert not isinstance(current_pipeline().tracer, FileTracer)
    provider.shutdown()


def test_a_console_exporter_keeps_the_sdk_tracer(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OTEL_TRACES_EXPORTER", "console")
    betty_otel.configure(tmp_path / "t.json", otlp=False)
    assert not isinstance(current_pipeline().tracer, FileTracer)


# -- the FileSpan as a span --------------------------------------------------------


def _current_span_of_a_call() -> Any:
    """The current span as the code of a call sees it (any span: it is read as one)."""
    spans: list[trace.Span] = []
    capture_telemetry(skill_name="kept")(lambda: spans.append(trace.get_current_span()))()
    (span,) = spans
    return span


def test_a_file_span_ended_twice_or_changed_after_its_end_writes_its_entry_once_unchanged(
    tmp_path: Path,
) -> None:
    path = tmp_path / "t.json"
    betty_otel.configure(path, otlp=False, batch=True)  # mapped later: a change would show
    tracer = current_pipeline().tracer
    assert isinstance(tracer, FileTracer)
    span = tracer.start_span("kept", attributes={"betty.skill": "kept", "betty.status": "success"})
    assert isinstance(span, FileSpan)
    span.end()
    assert not span.is_recording()
    span.set_attribute("betty.status", "failure")
    span.set_status(Status(StatusCode.ERROR, "late"))
    span.update_name("renamed")
    span.end()
    betty_otel.shutdown()
    (entry,) = read_entries(path)
    assert (entry["skill"], entry["status"], entry["error_message"]) == ("kept", "success", None)


def test_threads_racing_to_end_a_file_span_write_one_entry(telemetry_file: Path) -> None:
    tracer = current_pipeline().tracer
    assert isinstance(tracer, FileTracer)
    span = tracer.start_span("raced", attributes={"betty.skill": "raced"})
    threads = [threading.Thread(target=span.end) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)  # generous: catches a hang
    assert [entry["skill"] for entry in read_entries(telemetry_file)] == ["raced"]


def test_an_ok_status_is_final_and_unset_changes_nothing_as_on_sdk_spans(
    telemetry_file: Path,
) -> None:
    tracer = current_pipeline().tracer
    assert isinstance(tracer, FileTracer)
    span = tracer.start_span("s")
    span.set_status(StatusCode.UNSET)
    assert span.status.status_code is StatusCode.UNSET
    span.set_status(StatusCode.ERROR, "first")
    span.set_status(Status(StatusCode.UNSET))
    assert (span.status.status_code, span.status.description) == (StatusCode.ERROR, "first")
    span.set_status(StatusCode.OK)
    span.set_status(StatusCode.ERROR, "after ok")
    assert span.status.status_code.name == "OK"


def test_start_as_current_span_makes_a_current_file_span_and_ends_it(
    telemetry_file: Path,
) -> None:
    tracer = current_pipeline().tracer
    assert tracer is not None
    with tracer.start_as_current_span("outer", attributes={"betty.skill": "outer"}) as outer:
        assert trace.get_current_span() is outer
        with (
            pytest.raises(ValueError, match="inner"),
            tracer.start_as_current_span("inner", attributes={"betty.skill": "inner"}),
        ):
            raise ValueError("inner")
    inner, outer_entry = read_entries(telemetry_file)
    assert inner["parent_span_id"] == outer_entry["span_id"]
    assert inner["status"] == "failure"
    assert inner["error_message"] == "ValueError: inner"


def test_capture_records_through_the_file_tracer_with_its_times(telemetry_file: Path) -> None:
    assert isinstance(current_pipeline().tracer, FileTracer)
    entry = TelemetryCapture(telemetry_file).capture("manual", "failure", 1500.0, "cli", {}, "x")
    assert entry["duration_ms"] == pytest.approx(1500.0, abs=0.001)
    assert read_entries(telemetry_file) == [entry]


def test_the_file_tracer_keeps_the_sdk_default_resource_for_otel_service_name(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OTEL_SERVICE_NAME", "betty-tests")
    betty_otel.configure(tmp_path / "t.json", otlp=False)
    span = _current_span_of_a_call()
    assert span.resource.attributes["service.name"] == "betty-tests"


def test_a_span_of_a_program_provider_we_were_not_given_is_the_parent_of_a_file_span(
    telemetry_file: Path,
) -> None:
    provider = TracerProvider(shutdown_on_exit=False)  # neither global nor passed to configure
    assert isinstance(current_pipeline().tracer, FileTracer)
    with provider.get_tracer("program").start_as_current_span("request") as request:
        capture_telemetry(skill_name="inside")(lambda: None)()
    (entry,) = read_entries(telemetry_file)
    context = request.get_span_context()
    assert entry["trace_id"] == format(context.trace_id, "032x")
    assert entry["parent_span_id"] == format(context.span_id, "016x")
    provider.shutdown()
