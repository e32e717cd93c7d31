"""Capture Betty entries in memory in your own tests.

    from betty_otel.testing import capture_entries

    def test_my_skill():
        with capture_entries() as entries:
            my_skill(...)
        assert entries[0]["status"] == "success"

With pytest, the ``betty_entries`` fixture does the same (enable it with
``pytest_plugins = ["betty_otel.testing"]`` in your conftest.py).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from typing import Any

from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExporter, SpanExportResult

from betty_otel._entry import span_to_entry
from betty_otel._setup import Pipeline, recording_tracer, swap

__all__ = ["CapturedEntries", "betty_entries", "capture_entries"]


class CapturedEntries(list[dict[str, Any]]):
    """The entries recorded so far, oldest first, as they would be written to the file."""

    def by_skill(self, skill: str) -> list[dict[str, Any]]:
        """The entries of one skill."""
        return [entry for entry in self if entry["skill"] == skill]


class _MemoryExporter(SpanExporter):
    def __init__(self, into: CapturedEntries) -> None:
        self._into = into

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        for span in spans:
            entry = span_to_entry(span)
            if entry is not None:
                self._into.append(entry)
        return SpanExportResult.SUCCESS


@contextlib.contextmanager
def capture_entries() -> Iterator[CapturedEntries]:
    """Record entries in memory instead of the file while the block runs.

    The previous configuration is put back afterwards (it is reconfigured lazily
    from the environment on the next instrumented call).
    """
    entries = CapturedEntries()
    processor = SimpleSpanProcessor(_MemoryExporter(entries))
    previous = swap(Pipeline(tracer=recording_tracer(processor)))
    try:
        yield entries
    finally:
        swap(previous)
        processor.shutdown()


def _fixture() -> Iterator[CapturedEntries]:
    with capture_entries() as entries:
        yield entries


try:
    import pytest
except ImportError:  # pragma: no cover - pytest is optional for users
    pass
else:
    betty_entries = pytest.fixture(_fixture, name="betty_entries")
