"""Reconfiguring costs nothing per call: any number of configure()/shutdown() cycles
leaves one of everything betty_otel puts into a process.

Counted, on betty_otel's own pipelines (the light file tracer, its own provider, its
own provider with a collector) and on a program's provider, in both export modes:
samplers a span runs through, processors on providers, atexit and at-fork hooks, the
thread and subprocess patches, logging handlers and filters, threads and open file
descriptors. The one registration that is not ours: the SDK's BatchSpanProcessor of
a collector registers a weak at-fork hook per processor, and each configure that
sends to a collector makes one.
"""

from __future__ import annotations

import atexit
import logging
import os
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from opentelemetry.context import Context
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.sdk.trace.sampling import ALWAYS_ON, Sampler, SamplingResult
from opentelemetry.trace import Link, SpanKind
from opentelemetry.trace.span import TraceState
from opentelemetry.util.types import Attributes

import betty_otel
from betty_otel import _setup, capture_telemetry
from helpers import read_entries

CYCLES = 30
KINDS = ("file", "own provider", "collector", "program provider")
"""file: the light FileTracer; own provider: all_spans=True; collector: OTEL_TRACES_EXPORTER=
console on our provider; program provider: configure(tracer_provider=...)."""


class CountingSampler(Sampler):
    """A program's sampler that samples everything and counts how often it is asked, and
    through how many samplers (the ``should_sample`` frames on the stack, its own included)."""

    def __init__(self) -> None:
        self.calls = 0
        self.depths: list[int] = []

    def should_sample(
        self,
        parent_context: Context | None,
        trace_id: int,
        name: str,
        kind: SpanKind | None = None,
        attributes: Attributes = None,
        links: Sequence[Link] | None = None,
        trace_state: TraceState | None = None,
    ) -> SamplingResult:
        self.calls += 1
        frames = [sys._getframe()]
        while (outer := frames[-1].f_back) is not None:
            frames.append(outer)
        self.depths.append(sum(frame.f_code.co_name == "should_sample" for frame in frames))
        return ALWAYS_ON.should_sample(
            parent_context, trace_id, name, kind, attributes, links, trace_state
        )

    def get_description(self) -> str:
        return "Counting"


@capture_telemetry(skill_name="reconfigured", capture_inputs=True)
def work(number: int) -> int:
    return number


def _program_provider(sampler: Sampler | None = None) -> TracerProvider:
    provider = TracerProvider(sampler=sampler, shutdown_on_exit=False)
    provider.add_span_processor(SimpleSpanProcessor(InMemorySpanExporter()))
    return provider


def test_300_reconfigures_on_a_programs_provider_ask_its_sampler_once_per_span(
    tmp_path: Path,
) -> None:
    sampler = CountingSampler()
    provider = _program_provider(sampler)
    path = tmp_path / "telemetry.json"
    for _ in range(300):
        betty_otel.configure(path, otlp=False, tracer_provider=provider)
    sampler.calls, sampler.depths = 0, []
    for number in range(10):
        assert work(number) == number
    assert sampler.calls == 10
    assert sampler.depths == [2] * 10  # betty_otel's audit sampler, then the program's
    assert len(read_entries(path)) == 10
    provider.shutdown()


def test_a_sampler_the_program_replaces_between_configures_is_the_one_asked(
    tmp_path: Path,
) -> None:
    """Each configure wraps the provider's current sampler, never the previous wrapper."""
    first, second = CountingSampler(), CountingSampler()
    provider = _program_provider(first)
    path = tmp_path / "telemetry.json"
    betty_otel.configure(path, otlp=False, tracer_provider=provider)
    provider.sampler = second
    betty_otel.configure(path, otlp=False, tracer_provider=provider)
    work(1)
    assert (first.calls, second.calls) == (0, 1)
    provider.shutdown()


@contextmanager
def counting_registrations(monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, list[str]]]:
    """Count atexit and at-fork registrations (by the registering callable's module)."""
    seen: dict[str, list[str]] = {"atexit": [], "fork": []}
    real_atexit, real_fork = atexit.register, os.register_at_fork

    def on_exit(function: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        seen["atexit"].append(getattr(function, "__module__", "?"))
        return real_atexit(function, *args, **kwargs)

    def at_fork(**hooks: Callable[[], object]) -> None:
        seen["fork"].extend(getattr(hook, "__module__", "?") for hook in hooks.values())
        real_fork(**hooks)

    monkeypatch.setattr(atexit, "register", on_exit)
    monkeypatch.setattr(os, "register_at_fork", at_fork)
    yield seen
    monkeypatch.undo()


def _logging_state() -> dict[str, tuple[int, int]]:
    """Handlers and filters on every logger that has any, by name."""
    known = logging.Logger.manager.loggerDict.values()
    loggers = [logging.getLogger(), *(each for each in known if isinstance(each, logging.Logger))]
    return {
        each.name: (len(each.handlers), len(each.filters))
        for each in loggers
        if each.handlers or each.filters
    }


def _open_fds() -> int:
    return sum(1 for _ in Path("/proc/self/fd").iterdir())


def _patches() -> tuple[object, object, object]:
    return (ThreadPoolExecutor.submit, threading.Thread.start, subprocess.Popen.__init__)


def _configure(kind: str, path: Path, batch: bool, provider: TracerProvider) -> None:
    betty_otel.configure(
        path,
        otlp=False,
        batch=batch,
        all_spans=kind == "own provider",
        tracer_provider=provider if kind == "program provider" else None,
        threads=True,
        propagate_to_subprocesses=True,
    )


@pytest.mark.parametrize("batch", [False, True], ids=["sync", "batch"])
@pytest.mark.parametrize("kind", KINDS)
def test_configure_and_shutdown_cycles_leave_one_of_everything(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, kind: str, batch: bool
) -> None:
    if kind == "collector":
        monkeypatch.setenv("OTEL_TRACES_EXPORTER", "console")
    provider = _program_provider()
    processors = provider._active_span_processor._span_processors  # the SDK's own list
    path = tmp_path / "telemetry.json"
    originals, threads = _patches(), set(threading.enumerate())
    logging_before, fds = _logging_state(), _open_fds()
    _configure(kind, path, batch, provider)  # what the first configure makes, once
    work(-1)
    betty_otel.shutdown()

    own_providers = set()
    with counting_registrations(monkeypatch) as registered:
        for number in range(CYCLES):
            _configure(kind, path, batch, provider)
            work(number)
            own_providers.add(id(_setup.current_pipeline().provider))
            if number % 3 == 0:
                betty_otel.shutdown()
        # Configured: one layer of each patch, one processor of ours on the provider.
        submit, start, popen = _patches()
        assert getattr(submit, "__wrapped__", None) is originals[0]
        assert getattr(start, "__wrapped__", None) is originals[1]
        assert getattr(popen, "__wrapped__", None) is originals[2]
        live = [each.name for each in threading.enumerate() if each not in threads]
        assert live.count("betty_otel-file-writer") <= 1
        assert live.count("OtelBatchSpanRecordProcessor") <= 1
        betty_otel.shutdown()

    assert registered["atexit"] == []
    assert [module for module in registered["fork"] if module.startswith("betty_otel")] == []
    sdk_hooks = CYCLES if kind == "collector" else 0  # the collector's batch processor's
    assert len(registered["fork"]) == sdk_hooks
    ours = 1 if kind == "program provider" else 0
    assert len(provider._active_span_processor._span_processors) == len(processors) + ours
    assert len(own_providers) == 1
    assert _patches() == originals
    assert set(threading.enumerate()) == threads
    assert _logging_state() == logging_before
    assert _open_fds() == fds
    numbers = sorted(entry["inputs"]["number"] for entry in read_entries(path))
    assert numbers == list(range(-1, CYCLES))
    provider.shutdown()


def test_a_changed_otel_setting_gives_our_provider_a_new_resource(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Our provider is kept across reconfigures only while the settings it was made from hold."""
    path = tmp_path / "telemetry.json"
    monkeypatch.setenv("OTEL_SERVICE_NAME", "first")
    betty_otel.configure(path, otlp=False, all_spans=True)
    first = _setup.current_pipeline().provider
    betty_otel.configure(path, otlp=False, all_spans=True)
    assert _setup.current_pipeline().provider is first
    monkeypatch.setenv("OTEL_SERVICE_NAME", "second")
    betty_otel.configure(path, otlp=False, all_spans=True)
    second = _setup.current_pipeline().provider
    assert second is not None
    assert first is not None
    assert second.resource.attributes["service.name"] == "second"
    assert first.resource.attributes["service.name"] == "first"
    work(1)
    assert [entry["skill"] for entry in read_entries(path)] == ["reconfigured"]
