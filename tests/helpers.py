"""Helpers shared by the test modules (one copy of each; fixtures live in conftest.py).

- Entries and layouts: `ENTRY_KEYS` (the documented key order), `make_entry`, `canonical`
  (the store's own layout), `indent2` (the old Betty tools' ``json.dump(indent=2)``), `BOM`,
  `INVALID_NAME`.
- Strict reads, as every Betty tool reads the file: `load_strict` (``json.load``),
  `read_entries` (a JSON array), `only_entry` / `no_entries` (exactly one entry / none) and
  `strict_entries` (valid UTF-8, no NaN/Infinity, a list of objects, lines within a budget).
- Store round trips: `append_entries`, `repair_file`, `read_forward`, `read_backward`.
- Logs: `betty_errors` (error records of betty_otel's loggers).
- Processes: `run_script` (Python code in a fresh interpreter; its stdout).
- Recording: `take` (a decorated function returning its argument, inputs captured).
- Faults: `stop_the_clock` (files set aside all get the same time), the `umask_zero`
  fixture (import it into a test module that uses it by name).
- Redaction: `token_chars` (a token body from a seed: no credential written in a test),
  `redacted` (text as betty_otel records it, checked stable under a second pass).
- Spans: `span_hex` (a span's id as the entry writes it).
- Reports: `page_figures` (an HTML report's figures, as plotly.js receives them), read from
  the `FIGURE_SCRIPT` elements.
- Secrets nowhere: `assert_nowhere` (no FRAGMENT-char piece of a secret in the file or on
  any span), built on `fragments`, `assert_no_fragment`, `file_texts` and `span_texts`.
"""

from __future__ import annotations

import json
import logging
import os
import random
import re
import string
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable, Iterable, Iterator
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import orjson
import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from betty_otel import capture_telemetry, redaction
from betty_otel._store import TelemetryStore, iter_entries
from betty_otel.query.parallel import Helper

Entry = dict[str, Any]

ENTRY_KEYS = (
    "timestamp",
    "skill",
    "status",
    "duration_ms",
    "caller",
    "inputs",
    "error_message",
    "metadata",
    "trace_id",
    "span_id",
    "parent_span_id",
)
"""The entry's keys in the order ../shared/DESIGN.md fixes."""

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


def read_entries(path: Path) -> list[Entry]:
    """The whole file, strictly parsed (fails unless it is a valid JSON array)."""
    data = load_strict(path)
    assert isinstance(data, list)
    return data


def only_entry(path: Path) -> Entry:
    """The file's one entry (fails unless it holds exactly one)."""
    entries = read_entries(path)
    assert len(entries) == 1, entries
    return entries[0]


def no_entries(path: Path) -> bool:
    """True when the file is missing or an empty array: nothing was recorded."""
    return not path.exists() or read_entries(path) == []


def _reject_constant(name: str) -> Any:
    raise AssertionError(f"the telemetry file holds the non-standard JSON constant {name}")


def strict_entries(path: Path, line_budget: int | None = None) -> list[Entry]:
    """The whole file parsed strictly: a list of objects.

    Valid UTF-8 (json.loads alone lets a lone surrogate through), no NaN/Infinity, and,
    given a line_budget, no line of that many bytes or more.
    """
    raw = path.read_bytes()
    raw.decode("utf-8")
    data = json.loads(raw, parse_constant=_reject_constant)
    assert isinstance(data, list)
    assert all(isinstance(entry, dict) for entry in data)
    if line_budget is not None:
        longest = max(len(line) for line in raw.split(b"\n"))
        assert longest < line_budget, f"an entry line takes {longest:,} bytes"
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


@capture_telemetry(skill_name="faults.hostile", caller="faults", capture_inputs=True)
def take(data: object) -> object:
    """Return data unchanged; the execution is recorded with data as its input."""
    return data


def run_script(code: str, tmp_path: Path, env: dict[str, str] | None = None) -> str:
    """Run Python code in a fresh interpreter; its stdout (fails on a non-zero exit)."""
    script = tmp_path / "script.py"
    script.write_text(textwrap.dedent(code))
    full_env = {**os.environ, **(env or {})}
    done = subprocess.run(
        [sys.executable, str(script)],
        capture_output=True,
        text=True,
        env=full_env,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def run_program(
    code: str, *args: str, env: dict[str, str] | None = None, timeout: float = 180
) -> subprocess.CompletedProcess[str]:
    """Python code (dedented) in a fresh interpreter with args, which must exit 0; a hang
    fails at the timeout."""
    done = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code), *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return done


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


FRAGMENT = 6
"""No piece of a secret this long may appear in any output."""
LINE_BUDGET = 100_000
"""Bytes one entry line may take, whatever a single input or metadata value holds."""


def fragments(secret: str) -> set[str]:
    """Every FRAGMENT-char piece of the secret (per line, for multi-line secrets)."""
    return {
        line[i : i + FRAGMENT]
        for line in secret.splitlines()
        for i in range(len(line) - FRAGMENT + 1)
    }


def assert_no_fragment(secrets: Iterable[str], texts: Iterable[str], where: str) -> None:
    """No FRAGMENT-char piece of any secret appears in any of the texts (all leaks listed)."""
    haystack = "\x00".join(texts)
    leaks = {
        secret: sorted(piece for piece in fragments(secret) if piece in haystack)[:3]
        for secret in secrets
    }
    leaks = {secret: pieces for secret, pieces in leaks.items() if pieces}
    assert not leaks, f"{where} holds pieces of {len(leaks)} secret(s): {leaks}"


def span_hex(span: trace.Span) -> str:
    """The span's id as 16 hex digits, as the entry's span_id holds it."""
    return format(span.get_span_context().span_id, "016x")


def span_texts(span: ReadableSpan) -> list[str]:
    """Every piece of text on a span: name, attributes, status, events, its JSON form."""
    texts = [span.name, span.status.description or "", span.to_json()]
    texts += [str(value) for value in (span.attributes or {}).values()]
    for event in span.events:
        texts.append(event.name)
        texts += [str(value) for value in (event.attributes or {}).values()]
    return texts


def file_texts(path: Path) -> list[str]:
    """The raw file, and every string in it decoded (escapes undone)."""
    texts = [path.read_text(encoding="utf-8")]

    def walk(value: object) -> None:
        if isinstance(value, str):
            texts.append(value)
        elif isinstance(value, dict):
            for key, item in value.items():
                texts.append(str(key))
                walk(item)
        elif isinstance(value, list):
            for item in value:
                walk(item)

    walk(strict_entries(path, LINE_BUDGET))
    return texts


def assert_nowhere(secrets: Iterable[str], path: Path, spans: InMemorySpanExporter) -> None:
    """No piece of any secret is in the file or on any finished span (there is one at least)."""
    secrets = list(secrets)
    assert_no_fragment(secrets, file_texts(path), "the telemetry file")
    finished = spans.get_finished_spans()
    assert finished
    for span in finished:
        assert_no_fragment(secrets, span_texts(span), f"the span {span.name!r}")


FIGURE_SCRIPT = re.compile(
    r'<script type="application/json" nonce="[^"]+" data-figure="([^"]+)">(.*?)</script>', re.S
)
"""A figure's element in a report: (element id, the figure's JSON)."""


def page_figures(page: str) -> dict[str, Any]:
    """An HTML report's figures by element id, as plotly.js receives them."""
    return {name: json.loads(body) for name, body in FIGURE_SCRIPT.findall(page)}


def patient_ready(first: int, answers: list[bool]) -> Callable[[Helper, int], bool]:
    """A `Helper.ready` for a slow parent: it waits for the helper from part first on (so
    the helper's parts are really used) and notes each answer in answers."""
    ready = Helper.ready

    def patient(self: Helper, index: int) -> bool:
        deadline = time.monotonic() + 60  # a bound that only catches a hang, not a speed
        while index >= first and not ready(self, index) and time.monotonic() < deadline:
            time.sleep(0.005)
        found = ready(self, index)
        answers.append(found)
        return found

    return patient


def write_damaged(
    path: Path, entries: list[Entry], legacy: bool, damage: list[tuple[float, bytes]]
) -> list[bytes]:
    """Write entries canonical (legacy: a third in the old tools' layout, then appends),
    insert each damage line at its fraction of the file; return the file's lines."""
    if legacy:
        path.write_bytes(indent2(entries[: len(entries) // 3]))
        append_entries(path, entries[len(entries) // 3 :])
    else:
        path.write_bytes(canonical(entries))
    lines = path.read_bytes().split(b"\n")
    for fraction, text in damage:
        lines.insert(1 + int((len(lines) - 2) * fraction), text)
    path.write_bytes(b"\n".join(lines))
    return lines
