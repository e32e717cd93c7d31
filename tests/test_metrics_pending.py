"""Durations wait for the meter's collection, and every one of them gets there.

An execution's duration is not recorded into the SDK's histogram by the call: it waits
until the meter collects (an export, a scrape, the last collection at exit) or, when
many wait, until a thread of betty_otel's records them. These tests pin that nothing is
lost or counted twice on the way: at any rate of executions, from many threads while the
meter collects, beyond the most that may wait, at exit, and across a fork (a child never
records what its parent left waiting, nor waits for a lock a thread of its parent held).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader

import betty_otel
from betty_otel import capture_telemetry
from betty_otel._metrics import pending
from helpers import is_betty_record, run_program

CLEAN_ENV = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "BETTY_"))}


@pytest.fixture
def reader(tmp_path: Path) -> Iterator[InMemoryMetricReader]:
    """betty_otel configured (batching the file) with a program MeterProvider read in memory."""
    memory = InMemoryMetricReader()
    provider = MeterProvider(metric_readers=[memory], shutdown_on_exit=False)
    betty_otel.configure(tmp_path / "telemetry.json", batch=True, meter_provider=provider)
    yield memory
    betty_otel.shutdown()
    provider.shutdown()


def collected(reader: InMemoryMetricReader) -> dict[str, list[Any]]:
    """The data points of each of betty_otel's metrics, as a collection now reports them."""
    data = reader.get_metrics_data()
    assert data is not None
    found: dict[str, list[Any]] = {}
    for resource in data.resource_metrics:
        for scope in resource.scope_metrics:
            for metric in scope.metrics:
                found.setdefault(metric.name, []).extend(metric.data.data_points)
    return found


def counts(reader: InMemoryMetricReader) -> dict[tuple[str, str], int]:
    """Executions per (skill, status) in the histogram, as a collection now reports them."""
    return {
        (point.attributes["betty.skill"], point.attributes["betty.status"]): point.count
        for point in collected(reader).get("betty.execution.duration", [])
    }


@capture_telemetry(skill_name="pending.work")
def work(number: int) -> int:
    if number % 5 == 0:
        raise LookupError(number)
    return number


def run(numbers: range) -> None:
    for number in numbers:
        with contextlib.suppress(LookupError):
            work(number)


def test_every_execution_between_two_collections_is_in_the_next_one_at_any_rate(
    reader: InMemoryMetricReader,
) -> None:
    """More executions than wait before a thread records them (twice over): the next
    collection has each once, a later one no more, and none is running."""
    total = 2 * pending.RECORD_SOON + 5
    run(range(total))
    failures = len(range(0, total, 5))
    expected = {
        ("pending.work", "success"): total - failures,
        ("pending.work", "failure"): failures,
    }
    assert counts(reader) == expected
    assert counts(reader) == expected  # cumulative: nothing recorded twice


def test_executions_on_many_threads_while_the_meter_collects_are_each_counted_once(
    reader: InMemoryMetricReader,
) -> None:
    """Four threads run executions while a fifth collects without pause: the last
    collection has every execution exactly once, and none running."""
    done = threading.Event()

    def collect_all_along() -> None:
        while not done.is_set():
            reader.collect()

    collector = threading.Thread(target=collect_all_along)
    collector.start()
    workers = [threading.Thread(target=run, args=(range(2500),)) for _ in range(4)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    done.set()
    collector.join()
    points = collected(reader)
    assert {
        (point.attributes["betty.status"], point.count)
        for point in points["betty.execution.duration"]
    } == {("success", 4 * 2000), ("failure", 4 * 500)}
    assert [(point.attributes, point.value) for point in points["betty.executions.active"]] == [
        ({"betty.skill": "pending.work"}, 0)
    ]


def test_beyond_the_most_that_may_wait_executions_record_their_own_said_once(
    reader: InMemoryMetricReader,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """With no collection for longer than the bound allows, the executions beyond it are
    recorded as they end: none is lost, and the collection says so once."""
    monkeypatch.setattr(pending, "PENDING_LIMIT", 10)
    caplog.set_level(logging.INFO)
    run(range(1, 51))
    assert counts(reader) == {("pending.work", "success"): 40, ("pending.work", "failure"): 10}
    run(range(1, 51))
    assert counts(reader) == {("pending.work", "success"): 80, ("pending.work", "failure"): 20}
    said = [r for r in caplog.records if is_betty_record(r) and "their own" in r.getMessage()]
    assert len(said) == 1


def console_counts(output: str) -> int:
    """The histogram's count in the last export the console exporter printed."""
    decoder = json.JSONDecoder()
    exports: list[Any] = []
    position = 0
    while (start := output.find("{", position)) != -1:
        export, position = decoder.raw_decode(output, start)
        exports.append(export)
    return sum(
        point["count"]
        for resource in exports[-1]["resource_metrics"]
        for scope in resource["scope_metrics"]
        for metric in scope["metrics"]
        if metric["name"] == "betty.execution.duration"
        for point in metric["data"]["data_points"]
    )


def test_a_process_that_exits_right_after_many_executions_exports_every_one(
    tmp_path: Path,
) -> None:
    """More executions than wait before a thread records them, then exit at once (the
    export interval is a minute): the last export, at exit, counts each of them."""
    output = run_program(
        f"""
        from betty_otel import capture_telemetry

        @capture_telemetry(skill_name="exit.many")
        def main(number):
            return number

        for number in range({pending.RECORD_SOON + 1000}):
            main(number)
        """,
        env={
            **CLEAN_ENV,
            "BETTY_TELEMETRY_FILE": str(tmp_path / "t.json"),
            "OTEL_METRICS_EXPORTER": "console",
            "OTEL_TRACES_EXPORTER": "none",
        },
    ).stdout
    assert console_counts(output) == pending.RECORD_SOON + 1000


def test_a_forked_child_never_records_the_durations_its_parent_left_waiting(
    tmp_path: Path,
) -> None:
    """The parent collects after one execution, runs four more (they wait) and forks;
    the child runs two. The child's collection has what its provider held at the fork
    and its own two, never the parent's four; the parent's has its five."""
    output = run_program(
        """
        import json, os
        from opentelemetry.sdk.metrics import MeterProvider
        from opentelemetry.sdk.metrics.export import InMemoryMetricReader
        import betty_otel

        reader = InMemoryMetricReader()
        provider = MeterProvider(metric_readers=[reader], shutdown_on_exit=False)
        betty_otel.configure(meter_provider=provider)

        @betty_otel.capture_telemetry(skill_name="fork.skill")
        def work():
            return 1

        def count():
            data = reader.get_metrics_data()
            return sum(
                point.count
                for resource in data.resource_metrics
                for scope in resource.scope_metrics
                for metric in scope.metrics
                if metric.name == "betty.execution.duration"
                for point in metric.data.data_points
            )

        work()
        at_fork = count()
        for _ in range(4):
            work()
        child = os.fork()
        if child == 0:
            work()
            work()
            print(json.dumps({"child": count(), "at_fork": at_fork}), flush=True)
            os._exit(0)
        os.waitpid(child, 0)
        print(json.dumps({"parent": count()}), flush=True)
        """,
        env={**CLEAN_ENV, "BETTY_TELEMETRY_FILE": str(tmp_path / "t.json")},
    ).stdout
    child, parent = (json.loads(line) for line in output.strip().splitlines())
    assert child == {"child": 1 + 2, "at_fork": 1}
    assert parent == {"parent": 5}


@pytest.mark.faults
def test_a_forked_child_never_waits_for_a_lock_a_thread_of_its_parent_held(
    tmp_path: Path,
) -> None:
    """A thread of the parent holds each of the metrics' locks when another forks (as a
    thread in the middle of recording would): the child's executions, with a skill and a
    caller never seen, and its collection run on and are counted; nothing hangs."""
    output = run_program(
        """
        import json, os, signal, threading
        from opentelemetry.sdk.metrics import MeterProvider
        from opentelemetry.sdk.metrics.export import InMemoryMetricReader
        import betty_otel
        from betty_otel._state import STATE

        reader = InMemoryMetricReader()
        provider = MeterProvider(metric_readers=[reader], shutdown_on_exit=False)
        betty_otel.configure(meter_provider=provider)

        @betty_otel.capture_telemetry(skill_name="fork.known")
        def known():
            return 1

        known()
        known()
        recorder = STATE.metrics.recorder
        locks = [recorder.guard.lock, recorder.instruments.pending.lock,
                 recorder.instruments.recording]
        held, release = threading.Event(), threading.Event()

        def hold():
            for lock in locks:
                lock.acquire()
            held.set()
            release.wait()
            for lock in locks:
                lock.release()

        holder = threading.Thread(target=hold)
        holder.start()
        held.wait()
        child = os.fork()
        if child == 0:
            signal.alarm(60)  # a child that hangs ends, and the test says so
            with betty_otel.TelemetryContext("fork.new", caller="child-only"):
                pass
            known()
            data = reader.get_metrics_data()
            counts = {
                point.attributes["betty.skill"]: point.count
                for resource in data.resource_metrics
                for scope in resource.scope_metrics
                for metric in scope.metrics
                if metric.name == "betty.execution.duration"
                for point in metric.data.data_points
            }
            print(json.dumps(counts), flush=True)
            os._exit(0)
        _, status = os.waitpid(child, 0)
        release.set()
        holder.join()
        print(json.dumps({"child exit": os.waitstatus_to_exitcode(status)}), flush=True)
        """,
        env={**CLEAN_ENV, "BETTY_TELEMETRY_FILE": str(tmp_path / "t.json")},
    ).stdout
    child, parent = (json.loads(line) for line in output.strip().splitlines())
    # fork.known: the parent's first (its provider held it at the fork) and the child's own;
    # the parent's second was waiting, the parent's to record.
    assert child == {"fork.known": 2, "fork.new": 1}
    assert parent == {"child exit": 0}
