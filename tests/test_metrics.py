"""Metrics: what each execution records, in a program's own MeterProvider and in ours.

A program's SDK MeterProvider with an InMemoryMetricReader receives betty_otel's
instruments (``configure(meter_provider=...)``, or set globally): the histogram
``betty.execution.duration`` in seconds with the documented buckets and the attributes
``betty.skill``, ``betty.status`` (canonical), ``betty.caller`` and, on failures,
``error.type``; the up-down counter ``betty.executions.active``. Label values are
bounded; reconfiguring leaves one of everything; nothing receiving metrics costs no
SDK import; the environment's exporter list is read as OTEL_TRACES_EXPORTER is.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import sys
import threading
from collections.abc import Generator, Iterator
from pathlib import Path
from typing import Any

import pytest
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import HistogramDataPoint, InMemoryMetricReader

import betty_otel
from betty_otel import TelemetryCapture, TelemetryContext, capture_telemetry
from betty_otel._metrics.conventions import BUCKETS
from betty_otel.query import running
from helpers import is_betty_record, read_entries, run_program
from inflight_helpers import open_execution, wait_until

Attributes = dict[str, Any]


class SkillError(Exception):
    """A failure of the program's own kind: error.type is its qualified class."""


@pytest.fixture
def reader(tmp_path: Path) -> Iterator[InMemoryMetricReader]:
    """betty_otel configured with a program MeterProvider read in memory."""
    memory = InMemoryMetricReader()
    provider = MeterProvider(metric_readers=[memory], shutdown_on_exit=False)
    betty_otel.configure(tmp_path / "telemetry.json", meter_provider=provider)
    yield memory
    betty_otel.shutdown()
    provider.shutdown()


def points(reader: InMemoryMetricReader, name: str) -> list[Any]:
    """Every data point of the metric name the reader holds now."""
    data = reader.get_metrics_data()
    if data is None:
        return []
    return [
        point
        for resource in data.resource_metrics
        for scope in resource.scope_metrics
        for metric in scope.metrics
        if metric.name == name
        for point in metric.data.data_points
    ]


def durations(reader: InMemoryMetricReader) -> dict[frozenset[tuple[str, Any]], HistogramDataPoint]:
    return {
        frozenset(point.attributes.items()): point
        for point in points(reader, "betty.execution.duration")
    }


def active(reader: InMemoryMetricReader) -> dict[str, int]:
    return {
        point.attributes["betty.skill"]: point.value
        for point in points(reader, "betty.executions.active")
    }


def key(**attributes: str) -> frozenset[tuple[str, Any]]:
    return frozenset({name.replace("_", "."): value for name, value in attributes.items()}.items())


@capture_telemetry(skill_name="metrics.ok")
def succeed() -> int:
    return 1


@capture_telemetry(skill_name="metrics.raise")
def fail(kind: type[BaseException]) -> None:
    raise kind("boom")


@capture_telemetry(skill_name="metrics.result")
def legacy_result() -> dict[str, str]:
    return {"status": "failed", "error": "no"}


def test_each_execution_is_counted_with_its_skill_canonical_status_caller_and_error_type(
    reader: InMemoryMetricReader,
) -> None:
    """The decorator, the context manager and capture() all record; error.type is the
    exception's qualified class, else the status; an old tool's word is its status."""
    succeed()
    succeed()
    with pytest.raises(SkillError):
        fail(SkillError)
    with pytest.raises(TimeoutError):
        fail(TimeoutError)
    legacy_result()
    with TelemetryContext("metrics.block", caller="ci") as block:
        block.set_error("bad input")
    TelemetryCapture().capture("metrics.captured", "timeout", 2500, "CLI")
    found = {attributes: point.count for attributes, point in durations(reader).items()}
    qualified = f"{SkillError.__module__}.{SkillError.__qualname__}"
    assert found == {
        key(betty_skill="metrics.ok", betty_status="success", betty_caller="runtime"): 2,
        key(
            betty_skill="metrics.raise",
            betty_status="failure",
            betty_caller="runtime",
            error_type=qualified,
        ): 1,
        key(
            betty_skill="metrics.raise",
            betty_status="timeout",
            betty_caller="runtime",
            error_type="TimeoutError",
        ): 1,
        key(
            betty_skill="metrics.result",
            betty_status="failure",
            betty_caller="runtime",
            error_type="failure",
        ): 1,
        key(
            betty_skill="metrics.block",
            betty_status="failure",
            betty_caller="ci",
            error_type="failure",
        ): 1,
        key(
            betty_skill="metrics.captured",
            betty_status="timeout",
            betty_caller="CLI",
            error_type="timeout",
        ): 1,
    }


def test_durations_are_seconds_in_the_documented_buckets(
    reader: InMemoryMetricReader, tmp_path: Path
) -> None:
    """A captured 2.5 s execution lands in the (1, 2.5] bucket of the advisory boundaries,
    the same duration as its entry in the file."""
    TelemetryCapture(tmp_path / "telemetry.json").capture("metrics.timed", "success", 2500, "CLI")
    (point,) = durations(reader).values()
    assert tuple(point.explicit_bounds) == BUCKETS
    assert point.count == 1
    assert point.sum == pytest.approx(2.5)
    assert point.bucket_counts[BUCKETS.index(2.5)] == 1
    (entry,) = read_entries(tmp_path / "telemetry.json")
    assert entry["duration_ms"] / 1000 == pytest.approx(point.sum)
    succeed()  # an execution that ran here is counted as active while it runs
    data = reader.get_metrics_data()
    assert data is not None
    units = {
        metric.name: metric.unit
        for resource in data.resource_metrics
        for scope in resource.scope_metrics
        for metric in scope.metrics
    }
    assert units == {"betty.execution.duration": "s", "betty.executions.active": "{execution}"}


def test_the_active_count_is_the_executions_running_now(reader: InMemoryMetricReader) -> None:
    """Inside a call, an async call and an open generator the count includes them; after
    they end it is back to zero, and a failing call is no exception."""
    seen: list[dict[str, int]] = []

    @capture_telemetry(skill_name="metrics.outer")
    def outer() -> None:
        inner()

    @capture_telemetry(skill_name="metrics.inner")
    def inner() -> None:
        seen.append(active(reader))

    @capture_telemetry(skill_name="metrics.async")
    async def in_loop() -> None:
        seen.append(active(reader))

    @capture_telemetry(skill_name="metrics.generator")
    def numbers() -> Generator[int, None, None]:
        yield 1
        yield 2

    outer()
    asyncio.run(in_loop())
    generator = numbers()
    next(generator)
    seen.append(active(reader))
    generator.close()
    with pytest.raises(ValueError, match="boom"):
        fail(ValueError)
    assert seen[0] == {"metrics.outer": 1, "metrics.inner": 1}
    assert seen[1]["metrics.async"] == 1
    assert seen[2]["metrics.generator"] == 1
    assert set(active(reader).values()) == {0}


def test_an_execution_ends_in_the_instruments_it_started_in(tmp_path: Path) -> None:
    """Reconfigured onto another provider while it runs, an execution still ends where it
    started: no provider's active count goes below zero or stays above it."""
    first, second = InMemoryMetricReader(), InMemoryMetricReader()
    providers = [MeterProvider(metric_readers=[r], shutdown_on_exit=False) for r in (first, second)]

    @capture_telemetry(skill_name="metrics.long")
    def long() -> None:
        betty_otel.configure(tmp_path / "telemetry.json", meter_provider=providers[1])
        succeed()

    betty_otel.configure(tmp_path / "telemetry.json", meter_provider=providers[0])
    long()
    assert active(first) == {"metrics.long": 0}
    assert active(second) == {"metrics.ok": 0}
    assert [point.count for point in durations(first).values()] == [1]
    assert [point.count for point in durations(second).values()] == [1]
    for provider in providers:
        provider.shutdown()


def test_any_number_of_configures_leaves_one_instrument_of_each_on_the_program_provider(
    reader: InMemoryMetricReader, tmp_path: Path
) -> None:
    """300 reconfigures on the same provider: still one histogram and one counter, whose
    counts go on across them."""
    provider = MeterProvider(metric_readers=[memory := InMemoryMetricReader()])
    for _ in range(300):
        betty_otel.configure(tmp_path / "telemetry.json", meter_provider=provider)
        succeed()
    data = memory.get_metrics_data()
    assert data is not None
    metrics = [
        metric.name
        for resource in data.resource_metrics
        for scope in resource.scope_metrics
        for metric in scope.metrics
    ]
    assert sorted(metrics) == ["betty.execution.duration", "betty.executions.active"]
    assert [point.count for point in durations(memory).values()] == [300]
    betty_otel.shutdown()
    provider.shutdown()


def _metric_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == "OtelPeriodicExportingMetricReader"]


def test_any_number_of_configures_and_shutdowns_leaves_one_provider_of_ours(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Our own provider is made once while the settings stay the same (its exporting
    thread counted), closed by shutdown, made again by the next configure; made anew
    when the settings change."""
    monkeypatch.setenv("OTEL_METRICS_EXPORTER", "console")
    before = len(_metric_threads())
    for _ in range(20):
        betty_otel.configure(tmp_path / "telemetry.json")
        succeed()
    assert len(_metric_threads()) == before + 1
    betty_otel.shutdown()
    assert len(_metric_threads()) == before
    for _ in range(3):
        betty_otel.configure(tmp_path / "telemetry.json")
        monkeypatch.setenv("OTEL_SERVICE_NAME", f"service-{_}")  # the next one is new
        succeed()
    assert len(_metric_threads()) == before + 1
    betty_otel.shutdown()
    assert len(_metric_threads()) == before


def test_skills_callers_and_error_types_beyond_the_bound_are_recorded_as_other_with_one_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    memory = InMemoryMetricReader()
    provider = MeterProvider(metric_readers=[memory], shutdown_on_exit=False)
    betty_otel.configure(tmp_path / "telemetry.json", meter_provider=provider, metrics_max_series=2)
    capture = TelemetryCapture(tmp_path / "telemetry.json")
    for number in range(6):
        capture.capture(f"skill.{number}", "failure", 1, f"caller.{number % 3}")
    for number in range(4):
        with pytest.raises(KeyError), TelemetryContext("skill.0"):
            raise type(f"Error{number}", (KeyError,), {})(number)
    found = durations(memory)
    skills = {dict(attributes)["betty.skill"] for attributes in found}
    callers = {dict(attributes)["betty.caller"] for attributes in found}
    types = {dict(attributes)["error.type"] for attributes in found}
    assert skills == {"skill.0", "skill.1", "other"}
    assert callers == {"caller.0", "caller.1", "other"}
    assert len(types) == 3
    assert "other" in types
    assert sum(point.count for point in found.values()) == 10  # nothing lost, only folded
    warnings = [r for r in caplog.records if is_betty_record(r) and r.levelno == logging.WARNING]
    assert len(warnings) == 1, [r.getMessage() for r in warnings]
    assert "BETTY_TELEMETRY_METRICS_MAX_SERIES" in warnings[0].getMessage()
    betty_otel.shutdown()
    provider.shutdown()


def test_the_bound_comes_from_the_environment_and_a_bad_value_is_said_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    memory = InMemoryMetricReader()
    provider = MeterProvider(metric_readers=[memory], shutdown_on_exit=False)
    monkeypatch.setenv("BETTY_TELEMETRY_METRICS_MAX_SERIES", "1")
    betty_otel.configure(tmp_path / "telemetry.json", meter_provider=provider)
    for skill in ("a", "b", "c"):
        TelemetryCapture().capture(skill, "success", 1, "CLI")
    assert {dict(k)["betty.skill"] for k in durations(memory)} == {"a", "other"}
    monkeypatch.setenv("BETTY_TELEMETRY_METRICS_MAX_SERIES", "lots")
    betty_otel.configure(tmp_path / "telemetry.json", meter_provider=provider)
    messages = [r.getMessage() for r in caplog.records if is_betty_record(r)]
    assert any("BETTY_TELEMETRY_METRICS_MAX_SERIES='lots'" in m for m in messages), messages
    betty_otel.shutdown()
    provider.shutdown()


@pytest.mark.parametrize("bad", [-1, 1.5, "10", True])
def test_an_invalid_metrics_max_series_is_refused_before_anything_changes(
    reader: InMemoryMetricReader, tmp_path: Path, bad: object
) -> None:
    with pytest.raises(ValueError, match="metrics_max_series"):
        betty_otel.configure(tmp_path / "other.json", metrics_max_series=bad)  # type: ignore[arg-type]
    succeed()
    assert len(read_entries(tmp_path / "telemetry.json")) == 1
    assert [point.count for point in durations(reader).values()] == [1]


class _BrokenMeterProvider(MeterProvider):
    """A program's provider whose instruments fail on every measurement."""

    def __init__(self, fail_at: str) -> None:
        super().__init__(shutdown_on_exit=False)
        self.fail_at = fail_at

    def get_meter(self, *args: Any, **kwargs: Any) -> Any:
        if self.fail_at == "get_meter":
            raise RuntimeError("no meter today")
        meter = super().get_meter(*args, **kwargs)

        class Broken:
            def __init__(self, *_: Any, **__: Any) -> None:
                pass

            def record(self, *_: Any, **__: Any) -> None:
                raise RuntimeError("record failed")

            add = record

        meter.create_histogram = Broken  # type: ignore[method-assign,assignment]
        meter.create_up_down_counter = Broken  # type: ignore[method-assign,assignment]
        return meter


@pytest.mark.faults
@pytest.mark.parametrize("fail_at", ["get_meter", "record"])
def test_a_failing_meter_provider_never_breaks_the_program(
    tmp_path: Path, fail_at: str, caplog: pytest.LogCaptureFixture
) -> None:
    """The call returns and raises as without us, the file has every entry; the failure
    is counted and logged."""
    betty_otel.configure(tmp_path / "telemetry.json", meter_provider=_BrokenMeterProvider(fail_at))
    assert succeed() == 1
    with pytest.raises(SkillError):
        fail(SkillError)
    TelemetryCapture(tmp_path / "telemetry.json").capture("metrics.captured", "success", 1, "CLI")
    assert len(read_entries(tmp_path / "telemetry.json")) == 3
    # the instruments failed to be made once, or each of the three executions failed
    assert betty_otel.internal_errors() == (1 if fail_at == "get_meter" else 3)
    assert any("metric" in r.getMessage() for r in caplog.records if is_betty_record(r))


CLEAN_ENV = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "BETTY_"))}


def test_with_nothing_to_receive_metrics_the_metrics_sdk_is_never_imported(
    tmp_path: Path,
) -> None:
    """No exporter asked for, no provider of the program's: executions pay one test."""
    done = run_program(
        """
        import json, sys
        import betty_otel
        from betty_otel._state import STATE

        @betty_otel.capture_telemetry(skill_name="quiet")
        def work():
            return 1

        for _ in range(3):
            work()
        betty_otel.TelemetryCapture().capture("quiet", "success", 1, "CLI")
        sdk = [m for m in sys.modules if m.startswith("opentelemetry.sdk.metrics")]
        print(json.dumps([sdk, STATE.metrics is None]))
        """,
        env={**CLEAN_ENV, "BETTY_TELEMETRY_FILE": str(tmp_path / "t.json")},
    )
    assert json.loads(done.stdout) == [[], True]


def test_a_global_meter_provider_of_the_program_gets_the_instruments(tmp_path: Path) -> None:
    """Set globally before the first call, as programs do: no configure needed, and the
    environment's exporters are the program's business (none of ours is made)."""
    done = run_program(
        """
        import json
        from opentelemetry import metrics
        from opentelemetry.sdk.metrics import MeterProvider
        from opentelemetry.sdk.metrics.export import InMemoryMetricReader
        import betty_otel
        from betty_otel._state import STATE

        reader = InMemoryMetricReader()
        metrics.set_meter_provider(MeterProvider(metric_readers=[reader]))

        @betty_otel.capture_telemetry(skill_name="global.skill")
        def work():
            return 1

        work()
        data = reader.get_metrics_data()
        names = sorted(
            m.name for r in data.resource_metrics for s in r.scope_metrics for m in s.metrics
        )
        print(json.dumps([names, STATE.metrics.own is None]))
        """,
        env={**CLEAN_ENV, "BETTY_TELEMETRY_FILE": str(tmp_path / "t.json"),
         "OTEL_METRICS_EXPORTER": "console"},
    )  # fmt: skip
    assert json.loads(done.stdout.strip().splitlines()[-1]) == [
        ["betty.execution.duration", "betty.executions.active"],
        True,
    ]


@pytest.mark.parametrize(
    ("env", "exported", "warned"),
    [
        ({"OTEL_METRICS_EXPORTER": "CONSOLE"}, True, None),
        ({"OTEL_METRICS_EXPORTER": " zipkin , Console "}, True, "'zipkin'"),
        ({"OTEL_METRICS_EXPORTER": "none,console"}, False, "'none'"),
        ({"OTEL_METRICS_EXPORTER": "none"}, False, None),
        ({"OTEL_METRICS_EXPORTER": "console", "OTEL_SDK_DISABLED": "true"}, False, None),
        ({"OTEL_METRICS_EXPORTER": "console", "BETTY_TELEMETRY_DISABLED": "1"}, False, None),
        (
            {"OTEL_METRICS_EXPORTER": "console", "OTEL_METRIC_EXPORT_INTERVAL": "-5"},
            True,
            "OTEL_METRIC_EXPORT_INTERVAL='-5'",
        ),
        (
            {"OTEL_METRICS_EXPORTER": "console", "OTEL_METRIC_EXPORT_INTERVAL": "inf"},
            True,
            "OTEL_METRIC_EXPORT_INTERVAL='inf'",
        ),
    ],
)
def test_otel_metrics_exporter_is_a_list_in_any_case_and_none_wins(
    tmp_path: Path, env: dict[str, str], exported: bool, warned: str | None
) -> None:
    """Read as OTEL_TRACES_EXPORTER is; a bad export interval falls back to the default
    with one warning (never an interval that would lose the final export)."""
    done = run_program(
        """
        import betty_otel

        @betty_otel.capture_telemetry(skill_name="listed")
        def work():
            return 1

        work()
        """,
        env={**CLEAN_ENV, "BETTY_TELEMETRY_FILE": str(tmp_path / "t.json"), **env},
    )
    assert ('"name": "betty.execution.duration"' in done.stdout) is exported
    if warned is None:
        assert done.stderr == ""
    else:
        assert warned in done.stderr
        assert len(done.stderr.strip().splitlines()) == 1, done.stderr


@pytest.mark.faults
def test_prometheus_without_its_extra_says_how_to_install_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """The exporter missing: one clear warning naming the extra; the program and the other
    exporters go on."""
    monkeypatch.setitem(sys.modules, "opentelemetry.exporter.prometheus", None)
    monkeypatch.setenv("OTEL_METRICS_EXPORTER", "prometheus")
    betty_otel.configure(tmp_path / "telemetry.json")
    assert succeed() == 1
    messages = [r.getMessage() for r in caplog.records if is_betty_record(r)]
    assert len(messages) == 1, messages
    assert "pip install 'betty-otel[prometheus]'" in messages[0]
    assert len(read_entries(tmp_path / "telemetry.json")) == 1


@pytest.mark.parametrize("inflight_after", [0, "off"])
def test_the_active_count_is_the_in_flight_registry_with_a_record_or_without(
    tmp_path: Path, inflight_after: int | str
) -> None:
    """An execution open on another thread is active while it is open, whether it has a
    record beside the log (inflight_after 0) or never gets one (off): the count and the
    records come from the same registry of executions in flight."""
    memory = InMemoryMetricReader()
    provider = MeterProvider(metric_readers=[memory], shutdown_on_exit=False)
    log = tmp_path / "telemetry.json"
    betty_otel.configure(log, meter_provider=provider, inflight_after=inflight_after)
    with open_execution("metrics.waiting"):
        assert active(memory) == {"metrics.waiting": 1}
        if inflight_after == 0:
            wait_until(lambda: running(log), "the record of an execution in flight")
        assert [r["skill"] for r in running(log)] == (
            ["metrics.waiting"] if inflight_after == 0 else []
        )
        assert active(memory) == {"metrics.waiting": 1}
    assert active(memory) == {"metrics.waiting": 0}
    betty_otel.shutdown()
    provider.shutdown()
