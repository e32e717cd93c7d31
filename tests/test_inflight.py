"""Executions in flight (issue 17, items 1, 2 and 4): records beside the log, and seeing them.

- An execution that outlives ``inflight_after`` has a record in ``<log>.inflight/``
  (0700, files 0600), never in the log, holding what its entry would hold and its owner;
  its last-seen time is refreshed while it runs; it is gone once the entry is written
  (in batch mode too: not before). A call shorter than ``inflight_after`` touches no
  disk; ``off`` keeps none.
- ``betty_otel.query.running`` and ``betty-telemetry running`` list them with their state;
  ``query`` and ``tail`` show them as ``pending`` entries, ``trace`` shows a running
  parent above its finished children, ``report`` what runs and what was abandoned,
  ``check`` counts them.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import stat
import subprocess
import threading
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from opentelemetry import trace

import betty_otel
from betty_otel import TelemetryContext, capture_telemetry
from betty_otel._inflight import tracker
from betty_otel.query import running
from cli_helpers import CLI
from cli_helpers import run as run_cli
from fault_writer import Children
from helpers import umask_zero  # noqa: F401 - the fixture, used by name
from inflight_helpers import (
    in_flight,
    log_entries,
    once_each,
    open_execution,
    record_files,
    wait_in_flight,
    wait_until,
)

Gate = threading.Event
FORK_WARNING = "ignore:This process .* is multi-threaded:DeprecationWarning"


def current_ids() -> tuple[str, str]:
    context = trace.get_current_span().get_span_context()
    return f"{context.trace_id:032x}", f"{context.span_id:016x}"


@capture_telemetry(skill_name="inflight.hold", caller="CLI", capture_inputs=True)
def hold(gate: Gate, api_key: str, ids: list[tuple[str, str]]) -> str:
    ids.append(current_ids())
    gate.wait(60)
    return "done"


@contextlib.contextmanager
def in_a_thread(target: Callable[[Gate], object]) -> Iterator[Gate]:
    """Run target(gate) in a thread; the block gets the gate, set when it ends."""
    gate = Gate()
    worker = threading.Thread(target=target, args=(gate,))
    worker.start()
    try:
        yield gate
    finally:
        gate.set()
        worker.join(60)


@pytest.mark.usefixtures("umask_zero")
def test_an_execution_past_inflight_after_has_a_private_record_until_its_entry_is_written(
    tmp_path: Path,
) -> None:
    """Item 1: with inflight_after=0 a running call has a record beside the log (folder
    0700, file 0600 even under umask 0), holding its skill, caller, redacted inputs, ids,
    start and owner; the log holds no entry for it meanwhile; once it returns, the entry
    is written once with the same ids and the record is gone."""
    log = tmp_path / "registry" / "telemetry.json"
    betty_otel.configure(log, inflight_after=0)
    ids: list[tuple[str, str]] = []
    with in_a_thread(lambda gate: hold(gate, "sk-live-secret-value-123456", ids)) as gate:
        (record,) = wait_in_flight(log, Counter({"inflight.hold": 1}))
        folder = tmp_path / "registry" / "telemetry.json.inflight"
        assert stat.S_IMODE(folder.stat().st_mode) == 0o700
        (name,) = record_files(log)
        assert stat.S_IMODE((folder / name).stat().st_mode) == 0o600
        assert (record["trace_id"], record["span_id"]) == ids[0]
        assert record["status"] == "pending"
        assert record["state"] == "running"
        assert (record["pid"], record["host"]) == (os.getpid(), os.uname().nodename)
        assert record["caller"] == "CLI"
        assert record["inputs"]["api_key"] == "***REDACTED***"
        assert "sk-live-secret-value-123456" not in (folder / name).read_text()
        assert record["started"] <= record["last_seen"] == record["timestamp"]
        assert not log.exists() or log_entries(log) == []
        gate.set()
    (entry,) = log_entries(log)
    assert (entry["trace_id"], entry["span_id"], entry["status"]) == (*ids[0], "success")
    assert record_files(log) == []
    assert running(log) == []


def test_a_call_shorter_than_inflight_after_touches_no_disk_and_off_keeps_no_record(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Item 1: with the default (1 s), 200 quick calls create no record folder; with
    inflight_after='off' (over BETTY_TELEMETRY_INFLIGHT_AFTER=0, which gives a record
    within milliseconds) a call that lasts half a second leaves none."""
    log = tmp_path / "telemetry.json"
    betty_otel.configure(log)

    @capture_telemetry(skill_name="inflight.quick")
    def quick(n: int) -> int:
        return n

    assert [quick(n) for n in range(200)] == list(range(200))
    assert not log.with_name("telemetry.json.inflight").exists()
    monkeypatch.setenv("BETTY_TELEMETRY_INFLIGHT_AFTER", "0")
    betty_otel.configure(log, inflight_after="off")
    ids: list[tuple[str, str]] = []
    with in_a_thread(lambda gate: hold(gate, "k", ids)):
        wait_until(lambda: ids, "the call to start")
        time.sleep(0.5)
        assert record_files(log) == []
    assert len(log_entries(log)) == 201


@pytest.mark.parametrize("value", [-1, float("nan"), float("inf"), True, "soon", "1s", [1]])
def test_an_invalid_inflight_after_is_refused_before_anything_changes(
    tmp_path: Path, value: Any
) -> None:
    """configure(inflight_after=...) takes seconds >= 0 or 'off'; anything else is a
    ValueError naming the option, and the pipeline in place stays."""
    exporter = betty_otel.configure(tmp_path / "a.json")
    with pytest.raises(ValueError, match="inflight_after"):
        betty_otel.configure(tmp_path / "b.json", inflight_after=value)
    capture_telemetry(skill_name="still")(lambda: None)()  # the pipeline in place records
    assert exporter is not None
    assert [e["skill"] for e in log_entries(exporter.path)] == ["still"]


@pytest.mark.parametrize(("text", "records"), [("0", True), (" OFF ", False), ("later", None)])
def test_the_environment_sets_inflight_after_and_a_bad_value_is_said_once(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    text: str,
    records: bool | None,
) -> None:
    """BETTY_TELEMETRY_INFLIGHT_AFTER: 0 gives a record at once, off none; a value that is
    neither gets one warning naming it, and the default (1 s) applies."""
    monkeypatch.setenv("BETTY_TELEMETRY_INFLIGHT_AFTER", text)
    log = tmp_path / "telemetry.json"
    betty_otel.configure(log)
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert (len(warnings) == 1 and "later" in warnings[0]) if records is None else not warnings
    if records:
        with in_a_thread(lambda gate: hold(gate, "k", [])):
            wait_in_flight(log, Counter({"inflight.hold": 1}))


def test_last_seen_is_refreshed_while_the_execution_runs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Item 1: the thread refreshes each record's last-seen time every LAST_SEEN_INTERVAL
    (made short here), so running shows a later last_seen and a longer duration."""
    monkeypatch.setattr(tracker, "LAST_SEEN_INTERVAL", 0.02)
    log = tmp_path / "telemetry.json"
    betty_otel.configure(log, inflight_after=0)
    with in_a_thread(lambda gate: hold(gate, "k", [])):
        (first,) = wait_in_flight(log, Counter({"inflight.hold": 1}))
        later = wait_until(
            lambda: [r for r in in_flight(log) if r["last_seen"] > first["last_seen"]],
            "a refreshed last_seen",
        )
        assert later[0]["duration_ms"] > first["duration_ms"]
        assert later[0]["started"] == first["started"]


def test_in_batch_mode_the_record_stays_until_the_queued_entry_is_on_disk(
    tmp_path: Path,
) -> None:
    """Item 3's premise: a record is removed only once its entry is in the file. In batch
    mode the call returns with its entry queued: until the flush, the execution is still
    in flight (so a kill then leaves a record to reap); after it, entry once, no record."""
    log = tmp_path / "telemetry.json"
    betty_otel.configure(log, batch=True, inflight_after=0)
    ids: list[tuple[str, str]] = []
    with in_a_thread(lambda gate: hold(gate, "k", ids)):
        wait_in_flight(log, Counter({"inflight.hold": 1}))
    assert [r["span_id"] for r in running(log)] == [ids[0][1]]
    assert not log.exists() or log_entries(log) == []
    betty_otel.shutdown()  # flushes the queue
    assert list(once_each(log_entries(log))) == [ids[0][1]]
    assert record_files(log) == []


async def _coroutine(gate: Gate) -> None:
    await asyncio.to_thread(gate.wait, 60)


def _kinds() -> dict[str, Callable[[Gate], None]]:
    """One execution of each kind, each running until its gate is set."""
    coroutine = capture_telemetry(skill_name="kind.coroutine")(_coroutine)

    @capture_telemetry(skill_name="kind.generator")
    def generator(gate: Gate) -> Iterator[int]:
        yield 1
        gate.wait(60)
        yield 2

    @capture_telemetry(skill_name="kind.asyncgen")
    async def asyncgen(gate: Gate) -> AsyncIterator[int]:
        yield 1
        await asyncio.to_thread(gate.wait, 60)

    async def consume(gate: Gate) -> None:
        async for _ in asyncgen(gate):
            pass

    def iterate(gate: Gate) -> None:
        for _ in generator(gate):
            pass

    def context(gate: Gate) -> None:
        metadata = {"target": "registry", "token": "hunter2-hunter2"}
        with TelemetryContext(
            "kind.context", inputs={"password": "hunter2-hunter2"}, metadata=metadata
        ):
            gate.wait(60)

    return {
        "kind.coroutine": lambda gate: asyncio.run(coroutine(gate)),
        "kind.generator": iterate,
        "kind.asyncgen": lambda gate: asyncio.run(consume(gate)),
        "kind.context": context,
    }


@pytest.mark.parametrize("skill", list(_kinds()))
def test_every_kind_of_execution_gets_a_record_and_one_entry(tmp_path: Path, skill: str) -> None:
    """Coroutines, generators and async generators (the whole iteration) and contexts have
    a record while they run (a context's with its inputs and metadata, redacted), and one
    entry, with the record's ids, once they end."""
    log = tmp_path / "telemetry.json"
    betty_otel.configure(log, inflight_after=0)
    with in_a_thread(_kinds()[skill]):
        (record,) = wait_in_flight(log, Counter({skill: 1}))
    (entry,) = log_entries(log)
    assert (entry["skill"], entry["span_id"], entry["status"]) == (
        skill,
        record["span_id"],
        "success",
    )
    assert "hunter2" not in json.dumps(record)
    if skill == "kind.context":  # what the entry will hold, redacted, from the start
        assert record["metadata"] == {"target": "registry", "token": "***REDACTED***"}
        assert record["inputs"] == {"password": "***REDACTED***"}
    assert record_files(log) == []


def _nested(gate: Gate) -> None:
    """A parent that runs two quick children, then holds until gate is set."""

    @capture_telemetry(skill_name="tree.child")
    def child(n: int) -> int:
        return n

    @capture_telemetry(skill_name="tree.parent")
    def parent() -> None:
        child(1)
        child(2)
        gate.wait(60)

    parent()


def test_query_tail_and_trace_show_a_running_execution_as_pending(tmp_path: Path) -> None:
    """Item 2: the CLI's query lists the running parent with status pending (selected by
    --status pending, not by --status success), tail shows it after the entries, and
    trace shows it above its finished children; python's trace does the same."""
    log = tmp_path / "telemetry.json"
    betty_otel.configure(log, inflight_after=0)
    with in_a_thread(_nested):
        (parent,) = wait_in_flight(log, Counter({"tree.parent": 1}))
        wait_until(lambda: log.exists() and len(log_entries(log)) == 2, "the children")
        pending = json.loads(run_cli("query", "--status", "pending", "--file", str(log)).stdout)
        assert [(e["skill"], e["status"], e["state"]) for e in pending] == [
            ("tree.parent", "pending", "running")
        ]
        done = json.loads(run_cli("query", "--status", "success", "--file", str(log)).stdout)
        assert Counter(e["skill"] for e in done) == Counter({"tree.child": 2})
        shown = run_cli("tail", "--format", "jsonl", "--file", str(log)).stdout.splitlines()
        assert [json.loads(line)["skill"] for line in shown][-1] == "tree.parent"
        tree = json.loads(
            run_cli("trace", parent["trace_id"], "--format", "json", "--file", str(log)).stdout
        )
        (root,) = tree
        assert (root["entry"]["span_id"], root["entry"]["status"]) == (parent["span_id"], "pending")
        assert [c["entry"]["skill"] for c in root["children"]] == ["tree.child", "tree.child"]
        (node,) = betty_otel.query.trace(parent["trace_id"], log)
        assert node.status == "pending"
        assert len(node.children) == 2


def test_running_command_lists_every_format_and_says_when_nothing_is_in_flight(
    tmp_path: Path,
) -> None:
    """Item 2: `running --format json` is one JSON array of the same dicts as
    betty_otel.query.running; jsonl one per line; the table names state, skill and pid;
    with nothing in flight: [] and 'Nothing in flight.', exit 0 (also without a log)."""
    log = tmp_path / "telemetry.json"
    assert json.loads(run_cli("running", "--format", "json", "--file", str(log)).stdout) == []
    assert (
        "Nothing in flight." in run_cli("running", "--format", "table", "--file", str(log)).stdout
    )
    betty_otel.configure(log, inflight_after=0)
    with in_a_thread(lambda gate: hold(gate, "k", [])):
        (record,) = wait_in_flight(log, Counter({"inflight.hold": 1}))
        listed = json.loads(run_cli("running", "--format", "json", "--file", str(log)).stdout)
        assert [(e["span_id"], e["state"]) for e in listed] == [(record["span_id"], "running")]
        assert set(listed[0]) >= {"state", "pid", "host", "started", "last_seen", "skill"}
        lines = run_cli("running", "--format", "jsonl", "--file", str(log)).stdout.splitlines()
        assert [json.loads(line)["span_id"] for line in lines] == [record["span_id"]]
        table = run_cli("running", "--format", "table", "--file", str(log)).stdout
        assert "inflight.hold" in table
        assert str(os.getpid()) in table
        assert table.splitlines()[0].split()[:2] == ["state", "skill"]


def _killed_child(log: Path) -> dict[str, Any]:
    """An execution of a forked child, killed while it runs; its record as running showed
    it then."""
    betty_otel.configure(log, inflight_after=0)
    with Children() as children:
        pid = children.fork(lambda: hold(Gate(), "k", []))
        (record,) = wait_until(
            lambda: [r for r in in_flight(log) if r["pid"] == pid], "the child's record"
        )
        children.kill(pid)
    return record


@pytest.mark.filterwarnings(FORK_WARNING)
def test_the_report_and_check_show_what_runs_and_what_was_abandoned(tmp_path: Path) -> None:
    """Item 2: check counts the executions in flight by state and points at repair; the
    report's section lists the running one (state, skill, pid) and, after repair, the
    abandoned one among the abandoned executions."""
    log = tmp_path / "telemetry.json"
    abandoned = _killed_child(log)
    with in_a_thread(lambda gate: hold(gate, "k", [])):
        wait_in_flight(log, Counter({"inflight.hold": 1}))
        checked = run_cli("check", "--file", str(log)).stdout
        assert "2 execution(s) in flight: 1 running, 1 abandoned, 0 on other hosts" in checked
        assert "repair" in checked
        assert run_cli("repair", "--file", str(log)).returncode == 0
        page = betty_otel.report(log, tmp_path / "report.html").read_text()
    section = page[page.index("In flight and abandoned") :]
    assert "inflight.hold" in section
    assert f">{os.getpid()}<" in section
    assert ">running<" in section
    assert "Abandoned: 1 execution(s)" in section
    assert abandoned["trace_id"] in section


def test_tail_follow_shows_an_execution_as_it_starts_running(tmp_path: Path) -> None:
    """Item 2: `tail -f` prints an execution in flight as a pending entry once its record
    is there, then its entry when it ends."""
    log = tmp_path / "telemetry.json"
    betty_otel.configure(log, inflight_after=0)
    capture_telemetry(skill_name="tail.before")(lambda: None)()
    command = [str(CLI), "tail", "-f", "--interval", "0.05", "--format", "jsonl"]
    with subprocess.Popen(
        [*command, "--file", str(log)], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True
    ) as follower:
        assert follower.stdout is not None
        try:
            assert json.loads(follower.stdout.readline())["skill"] == "tail.before"
            with in_a_thread(lambda gate: hold(gate, "k", [])):
                shown = json.loads(follower.stdout.readline())
                assert (shown["skill"], shown["status"], shown["state"]) == (
                    "inflight.hold",
                    "pending",
                    "running",
                )
            ended = json.loads(follower.stdout.readline())
            assert (ended["span_id"], ended["status"]) == (shown["span_id"], "success")
        finally:
            follower.kill()


def _threads_of_ours() -> list[str]:
    return [t.name for t in threading.enumerate() if t.name.startswith("betty_otel")]


def test_a_shut_down_process_keeps_no_thread_of_ours_and_the_next_configure_starts_one(
    tmp_path: Path,
) -> None:
    """Once betty_otel is shut down and nothing is in flight, its in-flight thread has
    ended (a later fork, or the parallel stats reader, needs a process with one thread);
    configured again, the next execution gets its record as before."""
    log = tmp_path / "telemetry.json"

    @capture_telemetry(skill_name="inflight.short")
    def short() -> int:
        return 1

    betty_otel.configure(log, inflight_after=0)
    short()
    assert "betty_otel-inflight" in _threads_of_ours()
    betty_otel.shutdown()
    assert _threads_of_ours() == []
    betty_otel.configure(log, inflight_after=0)
    with open_execution("inflight.after"):
        records = wait_until(lambda: running(log), "the record of an execution in flight")
        assert [record["skill"] for record in records] == ["inflight.after"]
    betty_otel.shutdown()
    assert running(log) == []
    assert _threads_of_ours() == []
