"""Executions across processes: caller detection, TRACEPARENT in, the context handed to children.

- detect_caller=True: the caller is $BETTY_CALLER, else the enclosing execution's skill, else
  the given caller; BETTY_WORKFLOW/AGENT/EXECUTION_ID go into metadata (workflow, agent,
  execution_id); read at each call.
- A program started with TRACEPARENT (and TRACESTATE) makes its root executions children of it.
- subprocess_env() and configure(propagate_to_subprocesses=True) hand the current execution to
  real subprocesses: one trace in the file (query.trace shows one tree) and at a real collector.
- The subprocess hook never changes what Popen does otherwise, and is removed on reconfigure.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

import betty_otel
from betty_otel import TelemetryContext, capture_telemetry, subprocess_env
from betty_otel.query import trace
from collector import RotelCollector
from helpers import read_entries

REMOTE_TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
REMOTE_SPAN = "00f067aa0ba902b7"
TRACEPARENT = f"00-{REMOTE_TRACE}-{REMOTE_SPAN}-01"

CHILD = """
import sys
from betty_otel import capture_telemetry

@capture_telemetry(skill_name=sys.argv[1], caller="CLI", detect_caller=True)
def step():
    return {"status": "success"}

step()
"""


def _child(skill: str) -> list[str]:
    return [sys.executable, "-c", CHILD, skill]


# --------------------------------------------------------------------------- caller detection


def test_detect_caller_reads_betty_caller_and_the_metadata_variables_at_each_call(
    telemetry_file: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    @capture_telemetry(skill_name="skill.x", caller="CLI", detect_caller=True)
    def step() -> None:
        pass

    step()
    monkeypatch.setenv("BETTY_CALLER", "workflow.compose")
    monkeypatch.setenv("BETTY_WORKFLOW", "api_first")
    monkeypatch.setenv("BETTY_AGENT", "api.designer")
    monkeypatch.setenv("BETTY_EXECUTION_ID", "exec-42")
    step()
    monkeypatch.setenv("BETTY_CALLER", "  ")  # blank counts as unset
    step()
    plain, detected, blank = read_entries(telemetry_file)
    assert (plain["caller"], plain["metadata"]) == ("CLI", {})
    assert detected["caller"] == "workflow.compose"
    assert detected["metadata"] == {
        "workflow": "api_first",
        "agent": "api.designer",
        "execution_id": "exec-42",
    }
    assert blank["caller"] == "CLI"


def test_detect_caller_uses_the_enclosing_execution_when_betty_caller_is_unset(
    telemetry_file: Path,
) -> None:
    @capture_telemetry(skill_name="inner", caller="CLI", detect_caller=True)
    def inner() -> None:
        pass

    with TelemetryContext("workflow.compose", caller="API", detect_caller=True):
        inner()
        with TelemetryContext("step.publish", detect_caller=True):
            pass
    inner()
    nested, publish, outer, alone = read_entries(telemetry_file)
    assert (nested["skill"], nested["caller"]) == ("inner", "workflow.compose")
    assert (publish["skill"], publish["caller"]) == ("step.publish", "workflow.compose")
    assert (outer["skill"], outer["caller"]) == ("workflow.compose", "API")
    assert alone["caller"] == "CLI"


def test_without_detect_caller_the_environment_is_ignored(
    telemetry_file: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("BETTY_CALLER", "somebody")
    monkeypatch.setenv("BETTY_WORKFLOW", "w")
    with TelemetryContext("a", caller="CLI"):
        pass
    (entry,) = read_entries(telemetry_file)
    assert (entry["caller"], entry["metadata"]) == ("CLI", {})


def test_the_contexts_own_metadata_wins_over_the_environments(
    telemetry_file: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("BETTY_WORKFLOW", "from-env")
    monkeypatch.setenv("BETTY_AGENT", "agent-env")
    with TelemetryContext("a", metadata={"workflow": "mine"}, detect_caller=True):
        pass
    (entry,) = read_entries(telemetry_file)
    assert entry["metadata"] == {"workflow": "mine", "agent": "agent-env"}


# --------------------------------------------------------------------------- TRACEPARENT in


def test_root_executions_are_children_of_traceparent_and_nested_ones_of_their_parent(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TRACEPARENT", TRACEPARENT)
    monkeypatch.setenv("TRACESTATE", "vendor=opaque")
    path = tmp_path / "telemetry.json"
    betty_otel.configure(path, otlp=False)
    with TelemetryContext("workflow.compose"):
        with TelemetryContext("step"):
            pass
        env = subprocess_env()
    betty_otel.TelemetryCapture(path).capture("captured", "success", 5, "CLI")
    step, root, captured = read_entries(path)
    for entry in (step, root, captured):
        assert entry["trace_id"] == REMOTE_TRACE
    assert root["parent_span_id"] == REMOTE_SPAN
    assert captured["parent_span_id"] == REMOTE_SPAN
    assert step["parent_span_id"] == root["span_id"]
    assert env["TRACEPARENT"].startswith(f"00-{REMOTE_TRACE}-{root['span_id']}-")
    assert env["TRACESTATE"] == "vendor=opaque"  # the trace's state travels on


@pytest.mark.parametrize(
    "value", ["garbage", "00-" + "0" * 32 + "-" + "0" * 16 + "-01", "", "00-xyz-abc-01" * 1000]
)
def test_a_malformed_traceparent_is_ignored(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, value: str
) -> None:
    monkeypatch.setenv("TRACEPARENT", value)
    monkeypatch.setenv("TRACESTATE", "=,=,;;\x01")
    path = tmp_path / "telemetry.json"
    betty_otel.configure(path, otlp=False)
    with TelemetryContext("a"):
        pass
    (entry,) = read_entries(path)
    assert entry["parent_span_id"] is None


# --------------------------------------------------------------------------- context out


def test_subprocess_env_outside_an_execution_is_a_plain_copy(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("TRACEPARENT", TRACEPARENT)
    given = {"PATH": "/bin", "TRACEPARENT": TRACEPARENT}
    copy = subprocess_env(given)
    assert copy == given
    assert copy is not given
    assert subprocess_env() == dict(os.environ)


def test_subprocess_env_hands_the_execution_and_replaces_stale_values(
    telemetry_file: Path,
) -> None:
    stale = {"PATH": "/bin", "TRACEPARENT": TRACEPARENT, "TRACESTATE": "old=1", "BETTY_CALLER": "x"}
    with TelemetryContext("workflow.compose"):
        env = subprocess_env(stale)
    (entry,) = read_entries(telemetry_file)
    traceparent = env.pop("TRACEPARENT")
    assert traceparent.startswith(f"00-{entry['trace_id']}-{entry['span_id']}-")
    assert env == {"PATH": "/bin", "BETTY_CALLER": "workflow.compose"}
    assert stale["TRACESTATE"] == "old=1"  # the given mapping is not changed


def _one_tree(path: Path, children: int) -> None:
    entries = read_entries(path)
    (root,) = [entry for entry in entries if entry["skill"] == "workflow.compose"]
    assert len(entries) == children + 1
    assert {entry["trace_id"] for entry in entries} == {root["trace_id"]}
    (tree,) = trace(str(root["trace_id"]), path)
    assert tree.entry["span_id"] == root["span_id"]
    assert len(tree.children) == children
    for child in tree.children:
        assert child.entry["caller"] == "workflow.compose"  # detect_caller in the child


def test_subprocess_env_joins_real_subprocesses_to_the_trace(
    telemetry_file: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("BETTY_TELEMETRY_FILE", str(telemetry_file))
    with TelemetryContext("workflow.compose", caller="CLI"):
        for skill in ("step.one", "step.two"):
            subprocess.run(_child(skill), env=subprocess_env(), check=True, timeout=120)
    _one_tree(telemetry_file, 2)


def test_propagate_to_subprocesses_joins_every_kind_of_subprocess_call(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "telemetry.json"
    monkeypatch.setenv("BETTY_TELEMETRY_FILE", str(path))
    betty_otel.configure(path, otlp=False, propagate_to_subprocesses=True)
    with TelemetryContext("workflow.compose", caller="CLI"):
        subprocess.run(_child("by.run"), check=True, timeout=120)
        subprocess.check_output(_child("by.env"), env=dict(os.environ), timeout=120)
        with subprocess.Popen(_child("by.popen")) as process:
            assert process.wait(timeout=120) == 0
        with subprocess.Popen(  # env given positionally, as Popen allows
            _child("by.positional"), -1, None, None, None, None, None, True, False, None, None
        ) as process:
            assert process.wait(timeout=120) == 0
    _one_tree(path, 4)


def test_the_hook_acts_only_inside_an_execution_and_only_when_opted_in(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "telemetry.json"
    monkeypatch.setenv("BETTY_TELEMETRY_FILE", str(path))
    show = [sys.executable, "-c", "import os; print(os.environ.get('TRACEPARENT'))"]
    original = subprocess.Popen.__init__
    betty_otel.configure(path, otlp=False, propagate_to_subprocesses=True)
    assert subprocess.check_output(show, text=True).strip() == "None"  # outside: untouched
    betty_otel.configure(path, otlp=False)  # reconfigured without it: Popen is restored
    assert subprocess.Popen.__init__ is original
    with TelemetryContext("workflow.compose"):
        assert subprocess.check_output(show, text=True).strip() == "None"
    betty_otel.configure(path, otlp=False, propagate_to_subprocesses=True)
    betty_otel.shutdown()
    assert subprocess.Popen.__init__ is original


def _error_of(call: Callable[[], object]) -> type[BaseException] | None:
    try:
        call()
    except Exception as exc:
        return type(exc)
    return None


@pytest.mark.faults
def test_the_hook_never_changes_what_popen_does(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Popen's own errors, bytes in env and a failure of ours: all as without betty_otel."""
    path = tmp_path / "telemetry.json"
    betty_otel.configure(path, otlp=False, propagate_to_subprocesses=True)
    show = [sys.executable, "-c", "import os; print(os.environ.get('TRACEPARENT'))"]
    missing = [str(tmp_path / "no-such-program")]
    not_an_env: Any = 42

    def bad_call() -> object:
        return subprocess.run(show, env=not_an_env, check=False)

    bad_env = _error_of(bad_call)
    assert bad_env is not None
    with TelemetryContext("workflow.compose"):
        with pytest.raises(FileNotFoundError):
            subprocess.run(missing, check=False)
        assert _error_of(bad_call) is bad_env
        mixed = {b"PATH": os.fsencode(os.environ.get("PATH", "/bin")), "X": "1"}
        out = subprocess.check_output(show, env=mixed)  # type: ignore[arg-type]
        assert out.strip() == b"None"  # bytes in env: left exactly as given
        assert betty_otel.internal_errors() == 0

        def broken(*args: object, **kwargs: object) -> None:
            raise RuntimeError("injected fault inside telemetry")

        monkeypatch.setattr(TraceContextTextMapPropagator, "inject", broken)
        out = subprocess.check_output(show, env={"PATH": os.environ.get("PATH", "")})
        assert out.strip() == b"None"
        assert betty_otel.internal_errors() == 1


@pytest.mark.collector
def test_a_workflow_and_its_subprocesses_are_one_trace_at_the_collector(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, rotel_collector: RotelCollector
) -> None:
    path = tmp_path / "telemetry.json"
    monkeypatch.setenv("BETTY_TELEMETRY_FILE", str(path))
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", rotel_collector.http_endpoint)
    betty_otel.configure(path, propagate_to_subprocesses=True)
    with TelemetryContext("workflow.compose", caller="CLI"):
        for skill in ("step.one", "step.two"):
            subprocess.run(_child(skill), check=True, timeout=120)
    betty_otel.shutdown()  # flushes the OTLP batch processor
    _one_tree(path, 2)
    received = {span.span_id: span for span in rotel_collector.spans(expect=3)}
    entries = read_entries(path)
    assert set(received) == {entry["span_id"] for entry in entries}
    for entry in entries:
        span = received[str(entry["span_id"])]
        assert (span.trace_id, span.parent_span_id) == (entry["trace_id"], entry["parent_span_id"])
        assert span.attributes["betty.caller"] == entry["caller"]
