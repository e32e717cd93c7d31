"""Helpers shared by the store, query and fault tests (one copy of each).

- Entries and layouts: `make_entry`, `canonical` (the store's own layout), `indent2`
  (the old Betty tools' ``json.dump(indent=2)``), `BOM`, `INVALID_NAME`.
- Strict reads, as every Betty tool reads the file: `load_strict` (``json.load``) and
  `strict_entries` (no NaN/Infinity, a list of objects).
- Store round trips: `append_entries`, `repair_file`, `read_forward`, `read_backward`.
- Logs: `betty_errors` (error records of betty_otel's loggers).
- Faults: `stop_the_clock` (files set aside all get the same time), the `umask_zero`
  fixture (import it into a test module that uses it by name).
- Redaction: `token_chars` (a token body from a seed: no credential written in a test),
  `redacted` (text as betty_otel records it, checked stable under a second pass).
"""

from __future__ import annotations

import json
import logging
import os
import random
import re
import string
from collections.abc import Iterable, Iterator
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import orjson
import pytest

from betty_otel import redaction
from betty_otel._store import TelemetryStore, iter_entries

Entry = dict[str, Any]

BOM = b"\xef\xbb\xbf"
INVALID_NAME = re.compile(r"^telemetry\.json\.invalid-\d{8}T\d{6}\.\d{6}Z$")
"""The name of a foreign file moved aside (``telemetry.json.invalid-<UTC>``)."""
ALPHANUMERIC = string.ascii_letters + string.digits


def make_entry(number: int, **extra: Any) -> Entry:
    """A realistic entry in the documented schema (key order kept); extra replaces or adds."""
    entry: Entry = {
        "timestamp": f"2025-10-24T14:{number // 60 % 60:02d}:{number % 60:02d}.123456+00:00",
        "skill": f"workflow.step{number % 7}",
        "status": "failure" if number % 5 == 0 else "success",
        "duration_ms": 12.5 + number,
        "caller": "CLI",
        "inputs": {"n": number, "args": ["--flag", f"value-{number}"], "opts": {"deep": [1]}},
        "error_message": "boom" if number % 5 == 0 else None,
        "metadata": {},
        "trace_id": f"{number + 1:032x}",
        "span_id": f"{number + 1:016x}",
        "parent_span_id": None,
    }
    entry.update(extra)
    return entry


def canonical(entries: list[Entry]) -> bytes:
    """The documented canonical layout: one compact entry per line."""
    if not entries:
        return b"[\n]\n"
    return b"[\n" + b",\n".join(orjson.dumps(entry) for entry in entries) + b"\n]\n"


def indent2(entries: list[Entry]) -> bytes:
    """What the old Betty tools write: json.dump(indent=2), no final newline."""
    return json.dumps(entries, indent=2).encode()


def load_strict(path: Path) -> Any:
    """Read the file the way every Betty tool does: json.load on a UTF-8 text file."""
    with path.open(encoding="utf-8") as handle:
        return json.load(handle)


def _reject_constant(name: str) -> Any:
    raise AssertionError(f"the telemetry file holds the non-standard JSON constant {name}")


def strict_entries(path: Path) -> list[Entry]:
    """The whole file parsed strictly (json.loads, no NaN/Infinity): a list of objects."""
    data = json.loads(path.read_bytes(), parse_constant=_reject_constant)
    assert isinstance(data, list)
    assert all(isinstance(entry, dict) for entry in data)
    return data


def append_entries(path: Path, entries: list[Entry], **kwargs: Any) -> None:
    """One append of entries by a fresh TelemetryStore(path, **kwargs), closed after."""
    store = TelemetryStore(path, **kwargs)
    try:
        store.append(entries)
    finally:
        store.close()


def repair_file(path: Path) -> int:
    """One locked open: TelemetryStore(path).repair(); the bytes removed."""
    store = TelemetryStore(path)
    try:
        return store.repair()
    finally:
        store.close()


def read_forward(path: Path, **kwargs: Any) -> list[Entry]:
    """Every entry, oldest first (iter_entries with newest_first=False)."""
    return list(iter_entries(path, newest_first=False, **kwargs))


def read_backward(path: Path, **kwargs: Any) -> list[Entry]:
    """Every entry, newest first (iter_entries with newest_first=True)."""
    return list(iter_entries(path, newest_first=True, **kwargs))


def is_betty_record(record: logging.LogRecord) -> bool:
    """True for a record of the "betty_otel" logger or one of its children."""
    return record.name == "betty_otel" or record.name.startswith("betty_otel.")


def betty_errors(records: Iterable[logging.LogRecord]) -> list[logging.LogRecord]:
    """The records of level ERROR or above that betty_otel's loggers emitted."""
    return [r for r in records if is_betty_record(r) and r.levelno >= logging.ERROR]


class StoppedClock(datetime):
    """A wall clock that stands still (a VM restored from a snapshot, a stepped-back clock)."""

    @classmethod
    def now(cls, tz: Any = None) -> StoppedClock:
        return cls(2025, 10, 24, 14, 30, 45, 123456, tzinfo=tz or timezone.utc)


def stop_the_clock(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every file set aside is named at 2025-10-24 14:30:45.123456 UTC.

    The seam: ``datetime`` as seen from the store module that names those files.
    """
    monkeypatch.setattr("betty_otel._store.files.datetime", StoppedClock)


@pytest.fixture
def umask_zero() -> Iterator[None]:
    """Run the test under umask 000."""
    previous = os.umask(0)
    try:
        yield
    finally:
        os.umask(previous)


def token_chars(
    seed: int, length: int, alphabet: str = string.ascii_letters + string.digits
) -> str:
    """A random token body, the same for the same seed."""
    rng = random.Random(seed)
    return "".join(rng.choice(alphabet) for _ in range(length))


def redacted(text: str) -> str:
    """The text as betty_otel records it; a second pass must change nothing."""
    once = redaction.redact(text)
    assert redaction.redact(once) == once
    return once
