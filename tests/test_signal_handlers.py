"""A signal handler that records while its own thread is recording never waits without end.

Signal handlers run in the main thread between two bytecodes of whatever it was doing,
which may be betty_otel recording an execution. Every lock a recording takes is
re-entrant, so a handler that lands inside one goes on; only the file's own lock is
not (a handler must not write inside an interrupted append): there it waits
lock_timeout and its entry is dropped, logged and counted. The program sends a real
signal at every line betty_otel runs during a call (the fault is only where it lands)
and checks that each call ends, every execution of the program is in the file, and
every execution of the handler is in the file or counted as dropped.
"""

from __future__ import annotations

import ast
import json
from pathlib import Path

import betty_otel
from helpers import read_entries, run_script

_PROGRAM = """
    import json, os, signal, sys, threading, time
    import betty_otel
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import InMemoryMetricReader

    reader = InMemoryMetricReader()
    betty_otel.configure(
        os.environ["LOG"], otlp=False, lock_timeout=0.05, inflight_after=0,
        meter_provider=MeterProvider(metric_readers=[reader]),
    )
    state = {
        "at": -1, "seen": 0, "in handler": False, "fired": 0, "handled": 0,
        "started": time.monotonic(),
    }


    def on_signal(signum, frame):
        state["in handler"] = True
        try:
            with betty_otel.TelemetryContext("signal.handler"):
                pass
            state["handled"] += 1
        finally:
            state["in handler"] = False


    def tracer(frame, event, arg):
        if state["in handler"] or "/betty_otel/" not in frame.f_code.co_filename:
            return tracer
        if event == "line":
            state["seen"] += 1
            if state["seen"] == state["at"]:
                state["fired"] += 1
                os.kill(os.getpid(), signal.SIGUSR1)  # handled at the next bytecode: here
        return tracer


    def watchdog():
        while True:
            time.sleep(1)
            if time.monotonic() - state["started"] > 60:
                print(json.dumps({"stuck at line": state["at"]}), flush=True)
                os._exit(3)


    @betty_otel.capture_telemetry(skill_name="program.call", capture_inputs=True)
    def call(value, password):
        return value


    signal.signal(signal.SIGUSR1, on_signal)
    threading.Thread(target=watchdog, daemon=True).start()
    call(0, "hunter2-hunter2")  # the first call sets up what later ones use
    sys.settrace(tracer)
    call(0, "hunter2-hunter2")  # counts the lines a call runs
    sys.settrace(None)
    lines = state["seen"]
    before = betty_otel.internal_errors()
    for at in range(1, lines + 1):
        state.update(at=at, seen=0, started=time.monotonic())
        sys.settrace(tracer)
        assert call(at, "hunter2-hunter2") == at
        sys.settrace(None)
        reader.get_metrics_data()  # the collection's locks, between calls
    betty_otel.shutdown()
    print(json.dumps({"lines": lines, "fired": state["fired"], "handled": state["handled"],
                      "dropped": betty_otel.internal_errors() - before}), flush=True)
    """


def test_a_signal_handler_that_records_at_any_line_of_a_recording_never_waits_without_end(
    tmp_path: Path,
) -> None:
    log = tmp_path / "telemetry.json"
    output = run_script(_PROGRAM, tmp_path, {"LOG": str(log)})
    found = json.loads(output.strip().splitlines()[-1])
    assert found["lines"] > 100
    assert found["fired"] >= found["lines"] * 0.75  # at nearly every line: calls differ a little
    skills = [entry["skill"] for entry in read_entries(log)]
    assert skills.count("program.call") == found["lines"] + 2
    assert found["handled"] == found["fired"]
    assert skills.count("signal.handler") + found["dropped"] == found["handled"]
    assert "hunter2" not in log.read_text()


def _lock_calls(tree: ast.AST) -> list[int]:
    """Lines that make a lock that is not re-entrant (threading.Lock, _thread.allocate_lock)."""
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
            owner = node.func.value
            name = owner.id if isinstance(owner, ast.Name) else ""
            if (name, node.func.attr) in {("threading", "Lock"), ("_thread", "allocate_lock")}:
                found.append(node.lineno)
    return found


def test_the_only_locks_that_are_not_reentrant_are_the_files_own() -> None:
    """A new lock on the recording path is re-entrant, or a handler can wait on it forever.
    Allowed: the per-path lock of appends (see `betty_otel._store.files`). The drop-in
    fallback's helper turn is re-entrant too, with a busy flag for its pipe."""
    package = Path(betty_otel.__file__).parent
    found = {
        str(path.relative_to(package)): lines
        for path in sorted(package.rglob("*.py"))
        if (lines := _lock_calls(ast.parse(path.read_text(encoding="utf-8"))))
    }
    assert set(found) == {"_store/files.py"}
    assert len(found["_store/files.py"]) == 1
