"""Trust: foreign files are never destroyed, readers never hang, paths never move.

- A file whose first byte is ``[`` but which is not a JSON array of entries is moved
  aside byte for byte; a tail is cut only when what precedes it is a valid array of
  entries (a real torn append).
- Readers (query, check, tail, ``query()``) never hang on a FIFO, raise only the
  package's documented ``StoreError`` for a directory or an unreadable file, and read
  through a symlink (writers still refuse to write through one).
- A relative path is resolved once, when the pipeline or store is created: a later
  ``os.chdir`` does not split the log.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

import betty_otel
from betty_otel import StoreError, TelemetryCapture, capture_telemetry
from betty_otel.query import query, stats, trace
from helpers import read_entries

pytestmark = pytest.mark.faults

CLI = Path(sys.executable).parent / "betty-telemetry"

ENTRY = (
    b'{"timestamp":"2025-10-24T14:30:45.123456+00:00","skill":"old","status":"success",'
    b'"duration_ms":1.0,"caller":"CLI","inputs":{},"error_message":null,"metadata":{},'
    b'"trace_id":null,"span_id":null,"parent_span_id":null}'
)

# Each starts with "[" but is not a valid array of entries followed by a torn append.
FOREIGN_BRACKETED = {
    "markdown_link": b"[telemetry](https://example.invalid) is documented elsewhere\n",
    "ini_section": b"[registry]\npath = telemetry.json\n",
    "binary": b"[\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + bytes(range(256)),
    "numbers_torn": b"[1, 2, 3, 4",
    "strings_torn": b'["a", "b", "c',
    "nested_arrays_torn": b"[[1, 2], [3, 4], [5",
    "entry_then_garbage": b"[" + ENTRY + b",\nthis is not json at all\n",
    "entry_then_number_tail": b"[" + ENTRY + b",\n12345",
    "object_then_text": b'[{"a": 1} trailing words',
    "bracket_then_words": b"[ not json ]",
}


def _aside(path: Path, kind: str) -> list[Path]:
    return sorted(p for p in path.parent.iterdir() if p.name.startswith(f"{path.name}.{kind}-"))


@pytest.mark.parametrize("content", FOREIGN_BRACKETED.values(), ids=FOREIGN_BRACKETED.keys())
@pytest.mark.parametrize("writer", ["decorator", "capture"])
def test_a_bracketed_foreign_file_is_moved_aside_byte_for_byte_never_cut(
    tmp_path: Path, content: bytes, writer: str
) -> None:
    path = tmp_path / "telemetry.json"
    path.write_bytes(content)
    if writer == "decorator":
        betty_otel.configure(path, otlp=False)
        capture_telemetry(skill_name="new")(lambda: None)()
    else:
        TelemetryCapture(path).capture("new", "success", 1.0, "CLI")
    moved = _aside(path, "invalid")
    assert len(moved) == 1
    assert moved[0].read_bytes() == content  # the original survives, byte for byte
    assert _aside(path, "torn") == []
    assert [entry["skill"] for entry in read_entries(path)] == ["new"]


@pytest.mark.parametrize(
    "tail",
    [b'{"timestamp":"2025-10-', b"{", b'{"skill":"half', b"\n]"[:1]],
    ids=["half_entry", "open_brace", "half_key", "newline"],
)
def test_a_real_torn_append_after_valid_entries_is_cut_and_saved_keeping_every_entry(
    tmp_path: Path, tail: bytes
) -> None:
    path = tmp_path / "telemetry.json"
    path.write_bytes(b"[\n" + ENTRY + b",\n" + ENTRY + b",\n" + tail)
    TelemetryCapture(path).capture("new", "success", 1.0, "CLI")
    assert [entry["skill"] for entry in read_entries(path)] == ["old", "old", "new"]
    assert _aside(path, "invalid") == []


# ---------------------------------------------------------------------------
# readers: never hang, documented errors only, symlinks readable
# ---------------------------------------------------------------------------


def _run_cli(*args: str, timeout: float = 30) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(CLI), *args], capture_output=True, text=True, timeout=timeout, check=False
    )


def test_readers_never_hang_on_a_fifo_at_the_log_path(tmp_path: Path) -> None:
    path = tmp_path / "telemetry.json"
    os.mkfifo(path)
    code = (
        "import sys\n"
        "from betty_otel import StoreError\n"
        "from betty_otel.query import query, stats\n"
        "for read in (lambda: query(sys.argv[1]), lambda: stats(sys.argv[1])):\n"
        "    try:\n"
        "        read()\n"
        "    except StoreError as exc:\n"
        "        print('StoreError', exc)\n"
    )
    # A hang is the failure; the subprocess timeout turns it into one.
    done = subprocess.run(
        [sys.executable, "-c", code, str(path)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    for command in (["query"], ["check"], ["tail", "-n", "3"], ["stats"]):
        result = _run_cli(*command, "--file", str(path))
        assert result.returncode == 1, (command, result)
        assert "Traceback" not in result.stderr
        assert "not a regular file" in result.stderr


@pytest.mark.parametrize("kind", ["directory", "fifo"])
def test_query_on_a_path_that_cannot_be_read_raises_only_store_error(
    tmp_path: Path, kind: str
) -> None:
    path = tmp_path / "telemetry.json"
    if kind == "directory":
        path.mkdir()
    else:
        os.mkfifo(path)
    for read in (lambda: query(path), lambda: stats(path), lambda: trace("0" * 32, path)):
        with pytest.raises(StoreError):
            read()


def test_readers_read_a_log_through_a_symlink_but_writers_refuse_to_write_through_it(
    tmp_path: Path,
) -> None:
    real = tmp_path / "real.json"
    real.write_bytes(b"[\n" + ENTRY + b"\n]\n")
    link = tmp_path / "telemetry.json"
    link.symlink_to(real)
    assert [entry["skill"] for entry in query(link)] == ["old"]
    assert stats(link)["old"].count == 1
    result = _run_cli("query", "--file", str(link), "--format", "json")
    assert result.returncode == 0, result.stderr
    assert [entry["skill"] for entry in json.loads(result.stdout)] == ["old"]
    assert _run_cli("check", "--file", str(link)).returncode == 0
    before = real.read_bytes()
    with pytest.raises(StoreError, match="symbolic link"):
        TelemetryCapture(link).capture("new", "success", 1.0, "CLI")
    assert real.read_bytes() == before


# ---------------------------------------------------------------------------
# relative paths are resolved once
# ---------------------------------------------------------------------------


@capture_telemetry(skill_name="moved")
def step() -> None:
    return None


def test_a_relative_configured_path_does_not_move_with_chdir(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    monkeypatch.chdir(tmp_path / "a")
    betty_otel.configure("logs/telemetry.json", otlp=False)
    step()
    monkeypatch.chdir(tmp_path / "b")
    step()
    assert len(read_entries(tmp_path / "a" / "logs" / "telemetry.json")) == 2
    assert not (tmp_path / "b" / "logs").exists()


def test_a_relative_environment_path_does_not_move_with_chdir(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    monkeypatch.setenv("BETTY_TELEMETRY_FILE", "rel/telemetry.json")
    monkeypatch.chdir(tmp_path / "a")
    step()  # configures from the environment here
    monkeypatch.chdir(tmp_path / "b")
    step()
    assert len(read_entries(tmp_path / "a" / "rel" / "telemetry.json")) == 2
    assert not (tmp_path / "b" / "rel").exists()


def test_a_capture_object_with_a_relative_path_keeps_writing_where_it_was_created(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    monkeypatch.chdir(tmp_path / "a")
    capture = TelemetryCapture("t.json")
    capture.capture("one", "success", 1.0, "CLI")
    monkeypatch.chdir(tmp_path / "b")
    capture.capture("two", "success", 1.0, "CLI")
    entries: list[dict[str, Any]] = capture.query()
    assert [entry["skill"] for entry in entries] == ["two", "one"]
    assert len(read_entries(tmp_path / "a" / "t.json")) == 2
    assert not (tmp_path / "b" / "t.json").exists()
