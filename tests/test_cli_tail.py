"""``betty-telemetry tail``, run in a subprocess like a user would.

The newest entries, oldest first; ``--follow`` prints what is appended until Ctrl-C,
also for a file that does not exist yet.
"""

from __future__ import annotations

import json
import queue
import signal
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from cli_helpers import (
    CLI,
    entry,
    run,
    write,
)

# ---------------------------------------------------------------------------
# tail
# ---------------------------------------------------------------------------


def test_tail_prints_the_newest_oldest_first(log: Path) -> None:
    lines = run("tail", "-n", "3", "--file", str(log)).stdout.splitlines()
    assert [json.loads(line)["inputs"]["n"] for line in lines] == [9, 10, 11]
    table = run("tail", "-n", "2", "--file", str(log), "--format", "table").stdout.splitlines()
    assert len(table) == 2
    assert table[0].startswith("2025-10-24 14:00:10  skill.1")
    assert run("tail", "-n", "0", "--file", str(log)).stdout == ""


class Reader:
    """Collects a subprocess's stdout lines on a thread, so reads can time out."""

    def __init__(self, process: subprocess.Popen[str]) -> None:
        self.lines: queue.Queue[str] = queue.Queue()
        assert process.stdout is not None
        stream = process.stdout

        def pump() -> None:
            for line in stream:
                self.lines.put(line)

        self.thread = threading.Thread(target=pump, daemon=True)
        self.thread.start()

    def take(self, count: int, timeout: float = 60) -> list[dict[str, Any]]:
        deadline = time.monotonic() + timeout
        found: list[dict[str, Any]] = []
        while len(found) < count:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AssertionError(f"only {len(found)} of {count} lines arrived: {found}")
            try:
                found.append(json.loads(self.lines.get(timeout=remaining)))
            except queue.Empty:
                continue
        return found


@pytest.fixture
def follower(log: Path) -> Iterator[tuple[subprocess.Popen[str], Reader]]:
    process = subprocess.Popen(
        [str(CLI), "tail", "-n", "2", "-f", "--interval", "0.05", "--file", str(log)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        encoding="utf-8",
    )
    reader = Reader(process)
    try:
        yield process, reader
    finally:
        if process.poll() is None:
            process.kill()
        process.wait(timeout=30)
        reader.thread.join(timeout=30)
        for stream in (process.stdout, process.stderr):
            if stream is not None:
                stream.close()


def test_tail_follow_then_ctrl_c(log: Path, follower: tuple[subprocess.Popen[str], Reader]) -> None:
    """New appends appear, across a rotation and a replacement; SIGINT exits 0 quietly."""
    process, reader = follower
    assert [item["inputs"]["n"] for item in reader.take(2)] == [10, 11]
    write(log, [entry(100), entry(101)])
    assert [item["inputs"]["n"] for item in reader.take(2)] == [100, 101]
    write(log, [entry(102)])
    assert [item["inputs"]["n"] for item in reader.take(1)] == [102]
    # Rotation: the file becomes the first backup and a new file starts.
    log.rename(log.with_name(log.name + ".1"))
    write(log, [entry(103), entry(104)])
    assert [item["inputs"]["n"] for item in reader.take(2)] == [103, 104]
    # The old tools rewrite the whole file (indent=2): nothing is printed twice.
    data = json.loads(log.read_text(encoding="utf-8"))
    data.append(entry(105))
    replacement = log.with_name("replacement.json")
    replacement.write_text(json.dumps(data, indent=2), encoding="utf-8")
    replacement.replace(log)
    assert [item["inputs"]["n"] for item in reader.take(1)] == [105]
    process.send_signal(signal.SIGINT)
    assert process.wait(timeout=60) == 0
    assert process.stderr is not None
    errors = process.stderr.read()
    assert "Traceback" not in errors
    assert "KeyboardInterrupt" not in errors
    assert reader.lines.empty()


def test_tail_follow_a_file_that_does_not_exist_yet(tmp_path: Path) -> None:
    path = tmp_path / "later.json"
    process = subprocess.Popen(
        [str(CLI), "tail", "-n", "0", "-f", "--interval", "0.05", "--file", str(path)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        encoding="utf-8",
    )
    reader = Reader(process)
    try:
        assert process.stderr is not None
        assert process.stderr.readline() == (
            f"betty-telemetry: following {path}, which does not exist yet (Ctrl-C to stop)\n"
        )
        write(path, [entry(1), entry(2)])
        assert [item["inputs"]["n"] for item in reader.take(2)] == [1, 2]
        process.send_signal(signal.SIGINT)
        assert process.wait(timeout=60) == 0
    finally:
        if process.poll() is None:
            process.kill()
        process.wait(timeout=30)
        reader.thread.join(timeout=30)
        assert process.stderr is not None
        errors = process.stderr.read()
        for stream in (process.stdout, process.stderr):
            if stream is not None:
                stream.close()
    assert "Traceback" not in errors
