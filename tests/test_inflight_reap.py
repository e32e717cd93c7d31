"""No execution vanishes (issue 17, item 3): real processes, real signals, one reap.

- A workflow whose skills run in-process and as a subprocess (TRACEPARENT) is killed with
  SIGKILL, SIGTERM or SIGHUP (the whole session): after one ``repair``, every execution is
  in the log exactly once (the finished ones as they ended, the others as ``abandoned``
  errors with their ids, inputs and last sign of life) and ``trace`` shows one whole tree.
- The next betty_otel writer on the host records them by itself; the CLI's direct
  ``capture`` does not (it keeps its start-up budget).
- 8 reapers at once write one entry per execution, never two.
- A reused pid is never taken for the owner; after a reboot (the documented seam:
  ``BETTY_OTEL_BOOT_ID_FILE``) every record of the host is abandoned; records of another
  host are left alone unless ``repair --max-age`` says otherwise.

Records are edited by hand where a test needs an owner that no real process can be here
(a pid that another process now has, another host): the record format is in
`betty_otel._inflight.records`.
"""

from __future__ import annotations

import functools
import json
import os
import signal
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

import betty_otel
from betty_otel._inflight.reaper import reap
from betty_otel.query import running
from cli_helpers import run as run_cli
from fault_writer import Children
from inflight_helpers import (
    assert_abandoned,
    in_flight,
    kill_session,
    line_of,
    log_entries,
    once_each,
    program,
    record_files,
    stderr_of,
    wait_in_flight,
    wait_until,
)

pytestmark = pytest.mark.faults

WORKFLOW = """
import subprocess, sys, time
from betty_otel import TelemetryContext, capture_telemetry, subprocess_env

CHILD = '''
import time
from betty_otel import capture_telemetry

@capture_telemetry(skill_name="skill.quick")
def quick():
    return 2

@capture_telemetry(skill_name="skill.subprocess", capture_inputs=True)
def run(path, token):
    quick()
    print("child-ready", flush=True)
    time.sleep(600)

run("docs/x.md", "ghp_" + "a" * 36)
'''

@capture_telemetry(skill_name="skill.quick")
def quick():
    return 1

@capture_telemetry(skill_name="skill.inprocess", capture_inputs=True)
def inprocess(count):
    quick()
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD], env=subprocess_env(), stdout=subprocess.PIPE, text=True
    )
    assert child.stdout.readline().strip() == "child-ready"
    print("ready", flush=True)
    time.sleep(600)

@capture_telemetry(skill_name="workflow.main", caller="CLI")
def main():
    quick()
    with TelemetryContext("workflow.stage", inputs={"password": "hunter2-hunter2"}):
        inprocess(3)

main()
"""
OPEN = Counter(
    {"workflow.main": 1, "workflow.stage": 1, "skill.inprocess": 1, "skill.subprocess": 1}
)

HOLD = """
import time
from betty_otel import capture_telemetry

@capture_telemetry(skill_name="hold.one", capture_inputs=True)
def hold(n):
    print("ready", flush=True)
    time.sleep(600)

hold(1)
"""

MANY = """
import threading, time
from betty_otel import TelemetryContext, capture_telemetry

@capture_telemetry(skill_name="many.task", capture_inputs=True)
def task(n):
    with TelemetryContext("many.inner", inputs={"n": n}):
        time.sleep(600)

for n in range(24):
    threading.Thread(target=task, args=(n,), daemon=True).start()
print("ready", flush=True)
time.sleep(600)
"""


def killed(code: str, log: Path, skills: Counter[str], sig: int = signal.SIGKILL) -> list[Any]:
    """Run code until skills are in flight, kill its session with sig, and wait until the
    records say their owners are gone; the records, as running showed them."""
    with program(code, log) as process:
        assert line_of(process) == "ready", stderr_of(log)
        records = wait_in_flight(log, skills)
        kill_session(process, sig)
    wait_in_flight(log, skills, state="abandoned")
    return records


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGTERM, signal.SIGHUP])
def test_a_killed_workflow_is_whole_after_one_repair_every_execution_once(
    tmp_path: Path, sig: int
) -> None:
    """Killed (the whole session, subprocess included) with sig: one `repair` writes one
    abandoned error per open execution (same ids, skill, caller and redacted inputs); the
    finished ones stay as they were; `trace` shows one tree of all seven, none pending;
    a second repair changes nothing."""
    log = tmp_path / "telemetry.json"
    records = killed(WORKFLOW, log, OPEN, sig)
    assert "hunter2" not in json.dumps(records)
    repaired = run_cli("repair", "--file", str(log))
    assert repaired.returncode == 0, repaired.stdout
    assert "Recorded 4 abandoned execution(s)" in repaired.stdout
    entries = once_each(log_entries(log))
    assert Counter(e["skill"] for e in entries.values()) == OPEN + Counter({"skill.quick": 3})
    for record in records:
        assert_abandoned(entries[record["span_id"]], record)
    quick = [e for e in entries.values() if e["skill"] == "skill.quick"]
    assert {e["status"] for e in quick} == {"success"}
    (root,) = betty_otel.query.trace(records[0]["trace_id"], log)
    nodes = [node for _, node in root.walk()]
    assert root.skill == "workflow.main"
    assert len(nodes) == 7
    assert "pending" not in {node.status for node in nodes}
    by_skill = {node.skill: node for node in nodes}
    sub = by_skill["skill.subprocess"].entry
    assert sub["parent_span_id"] == by_skill["skill.inprocess"].span_id
    assert sub["inputs"]["token"] == "***REDACTED***"
    assert record_files(log) == []
    before = log.read_bytes()
    assert run_cli("repair", "--file", str(log)).returncode == 0
    assert log.read_bytes() == before


def test_the_next_writer_on_the_host_records_the_abandoned_by_itself_but_capture_does_not(
    tmp_path: Path,
) -> None:
    """The CLI's direct capture leaves the records alone (its start-up budget); the next
    program that configures betty_otel on the log records them in its background thread
    while it goes on working, once."""
    log = tmp_path / "telemetry.json"
    records = killed(MANY, log, Counter({"many.task": 24, "many.inner": 24}))
    captured = run_cli("capture", "shell.step", "success", "5", "CLI", "--file", str(log))
    assert captured.returncode == 0, captured.stderr
    assert len(in_flight(log, "abandoned")) == 48
    writer = """
        import time
        from betty_otel import capture_telemetry
        capture_telemetry(skill_name="next.writer")(lambda: None)()
        print("ready", flush=True)
        time.sleep(600)
    """
    with program(writer, log, BETTY_TELEMETRY_INFLIGHT_AFTER="1") as process:
        assert line_of(process) == "ready", stderr_of(log)
        wait_until(
            lambda: len(log_entries(log)) == 50 and not record_files(log),
            "the abandoned entries, and no record left",
            120,
        )
        assert process.poll() is None  # it went on working meanwhile
    entries = once_each(log_entries(log))
    for record in records:
        assert_abandoned(entries[record["span_id"]], record)
    assert record_files(log) == []


def _reaper(log: Path, start: int, out: Path) -> None:
    """A forked reaper: waits for its start signal on a pipe, reaps, says how many it wrote."""
    assert os.read(start, 1) == b"g"
    done = reap(log)
    out.write_text(json.dumps([done.recorded, done.cleared, done.busy]))


@pytest.mark.parametrize("round_", range(2))
def test_eight_concurrent_reapers_write_one_entry_per_execution(
    tmp_path: Path, round_: int
) -> None:
    """48 abandoned executions, 8 reaper processes released at once: together they write
    exactly 48 entries, one per execution; no record is left, nothing is cleared twice."""
    log = tmp_path / "telemetry.json"
    records = killed(MANY, log, Counter({"many.task": 24, "many.inner": 24}))
    read_end, write_end = os.pipe()
    outs = [tmp_path / f"reaper-{index}.json" for index in range(8)]
    with Children() as children:
        pids = [children.fork(functools.partial(_reaper, log, read_end, out)) for out in outs]
        os.write(write_end, b"g" * 8)
        codes = [children.wait(pid, timeout=120) for pid in pids]
    os.close(read_end)
    os.close(write_end)
    assert codes == [0] * 8
    results = [json.loads(out.read_text()) for out in outs]
    assert sum(recorded for recorded, _, _ in results) == 48, results
    assert sum(cleared for _, cleared, _ in results) == 0
    entries = once_each(log_entries(log))
    assert len(entries) == 48
    for record in records:
        assert_abandoned(entries[record["span_id"]], record)
    assert record_files(log) == []


def _edit_record(log: Path, change: dict[str, Any], older_by: float = 0.0) -> None:
    """Rewrite the owner of the log's one record; older_by moves its start and last-seen
    time back by that many seconds."""
    (name,) = record_files(log)
    path = log.with_name(log.name + ".inflight") / name
    seen = path.stat().st_mtime_ns - int(older_by * 1e9)
    data = json.loads(path.read_bytes())
    data["owner"].update(change)
    data["start_ns"] -= int(older_by * 1e9)
    path.write_text(json.dumps(data))
    os.utime(path, ns=(seen, seen))


def test_a_reused_pid_is_never_taken_for_the_owner(tmp_path: Path) -> None:
    """The owner is killed and its pid now names another live process (with another start
    time): the record is abandoned, and repair says why. A record naming a live process
    with its own start time is running, and repair leaves it."""
    log = tmp_path / "telemetry.json"
    (record,) = killed(HOLD, log, Counter({"hold.one": 1}))
    other_log = tmp_path / "other.json"
    with program(HOLD, other_log) as alive:
        assert line_of(alive) == "ready", stderr_of(other_log)
        (live,) = wait_in_flight(other_log, Counter({"hold.one": 1}))
        _edit_record(log, {"pid": alive.pid})
        (now,) = running(log)
        assert (now["pid"], now["state"]) == (alive.pid, "abandoned")
        reaped = reap(other_log)
        assert (reaped.recorded, in_flight(other_log, "running")) == (0, [live])
        assert reap(log).recorded == 1
    (entry,) = log_entries(log)
    assert "its pid now names another process" in entry["error_message"]
    assert entry["span_id"] == record["span_id"]


def test_after_a_reboot_every_record_of_the_host_is_abandoned(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The documented seam BETTY_OTEL_BOOT_ID_FILE gives the reaper another boot id: the
    owner's process (still alive here) cannot be this boot's, so its execution is
    abandoned and recorded once, saying the host rebooted."""
    log = tmp_path / "telemetry.json"
    with program(HOLD, log) as owner:
        assert line_of(owner) == "ready", stderr_of(log)
        (record,) = wait_in_flight(log, Counter({"hold.one": 1}))
        boot = tmp_path / "boot_id"
        boot.write_text("3f2504e0-4f89-11d3-9a0c-0305e82c3301\n")
        monkeypatch.setenv("BETTY_OTEL_BOOT_ID_FILE", str(boot))
        assert [r["state"] for r in running(log)] == ["abandoned"]
        assert run_cli("repair", "--file", str(log)).returncode == 0
    (entry,) = log_entries(log)
    assert_abandoned(entry, record)
    assert "rebooted" in entry["error_message"]


def test_records_of_another_host_are_left_unless_max_age_says_so(tmp_path: Path) -> None:
    """A record of another host is unknown: repair leaves it and says so, also with a
    --max-age it has not passed; once silent for longer, repair --max-age records it.
    A --max-age that is no duration is a usage error (exit 2)."""
    log = tmp_path / "telemetry.json"
    (record,) = killed(HOLD, log, Counter({"hold.one": 1}))
    _edit_record(log, {"host": "build-agent-7"})
    assert [r["state"] for r in running(log)] == ["unknown"]
    left = run_cli("repair", "--file", str(log))
    assert (left.returncode, "left 1 record(s)" in left.stdout) == (0, True), left.stdout
    assert run_cli("repair", "--max-age", "1h", "--file", str(log)).returncode == 0
    assert len(record_files(log)) == 1
    assert run_cli("repair", "--max-age", "soon", "--file", str(log)).returncode == 2
    _edit_record(log, {}, older_by=7200)
    assert run_cli("repair", "--max-age", "1h", "--file", str(log)).returncode == 0
    (entry,) = log_entries(log)
    assert_abandoned(entry, record)
    assert "no sign of life" in entry["error_message"]
    assert "build-agent-7" in entry["error_message"]
    assert record_files(log) == []


def test_repair_records_the_executions_of_a_log_never_written(tmp_path: Path) -> None:
    """A first execution killed before any entry was written: the log does not exist, its
    records do; repair records them into a new log (a JSON array), it does not fail."""
    log = tmp_path / "registry" / "telemetry.json"
    (record,) = killed(HOLD, log, Counter({"hold.one": 1}))
    assert not log.exists()
    repaired = run_cli("repair", "--file", str(log))
    assert repaired.returncode == 0, repaired.stdout + repaired.stderr
    (entry,) = log_entries(log)
    assert_abandoned(entry, record)
