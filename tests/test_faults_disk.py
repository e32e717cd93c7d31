"""Faults: disk and file-system failures (issue 5, cases 12 to 14).

12. Disk full / file too big: RLIMIT_FSIZE just past the end (SIGXFSZ ignored), in a
    forked child, and ENOSPC injected through os.pwrite: the append reports failure,
    the file is byte-identical to before, and the program goes on.
13. fsync fails with EIO in durable mode: no success is reported, it is logged, and the
    file keeps its previous state.
14. Unwritable path, a folder where the file should be, a read-only file: the decorated
    function runs and returns normally, one clear error is logged, drops are counted.

Tests run as root, where mode bits stop nothing: "read-only" and "unwritable folder" use
the immutable attribute (``chattr +i``), which stops root too. Where chattr is refused
(another file system, no CAP_LINUX_IMMUTABLE), a non-root run uses chmod instead and a
root run substitutes a path under a regular file (ENOTDIR), also unwritable for root.
"""

from __future__ import annotations

import errno
import json
import logging
import os
import shutil
import signal
import stat
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExportResult
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

import betty_otel
from betty_otel import capture_telemetry
from betty_otel._store import TelemetryStore, check_file
from fault_writer import Children, call_id_of, padding, raw_entry, record
from helpers import Entry, append_entries, betty_errors, canonical, strict_entries

pytestmark = pytest.mark.faults


# ---------------------------------------------------------------------------
# helpers
# ---------------------------------------------------------------------------


def strict_ids(path: Path) -> list[str]:
    """The call ids of the file's entries, parsed strictly (json.loads, no NaN)."""
    return [call_id_of(entry) for entry in strict_entries(path)]


def seed(path: Path, count: int = 3) -> bytes:
    """A file with count entries (seed-0...); its bytes."""
    append_entries(path, [raw_entry(f"seed-{i}") for i in range(count)])
    return path.read_bytes()


def big_entry(call_id: str) -> Entry:
    """An entry of a few KB: longer than any slack the tests leave past the end."""
    entry = raw_entry(call_id)
    entry["metadata"] = {"pad": "x" * 3000}
    return entry


class ListHandler(logging.Handler):
    """Collects log records (in a forked child, where caplog cannot see them)."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


def betty_span(skill: str) -> ReadableSpan:
    """A finished SDK span with the betty.* attributes the exporter writes."""
    memory = InMemorySpanExporter()
    provider = TracerProvider(shutdown_on_exit=False)
    provider.add_span_processor(SimpleSpanProcessor(memory))
    provider.get_tracer("tests").start_span(
        skill,
        attributes={
            "betty.skill": skill,
            "betty.caller": "faults",
            "betty.status": "success",
            "betty.inputs": json.dumps({"call_id": skill}),
        },
    ).end()
    provider.shutdown()
    (span,) = memory.get_finished_spans()
    return span


# ---------------------------------------------------------------------------
# Case 12: disk full / file too big
# ---------------------------------------------------------------------------


def _over_the_size_limit(path: Path, before: bytes, slack: int) -> dict[str, Any]:
    """In a forked child: appends past RLIMIT_FSIZE fail and leave the file as it was;
    after lifting the limit, appends work again."""
    import resource

    handler = ListHandler()
    logger = logging.getLogger("betty_otel")
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    resource.setrlimit(resource.RLIMIT_FSIZE, (len(before) + slack, hard))

    store = TelemetryStore(path)
    try:
        store.append([big_entry("store-too-big")])
    except OSError as exc:
        store_errno = exc.errno
    else:
        raise AssertionError("an append past RLIMIT_FSIZE reported success")
    assert path.read_bytes() == before, "the file was not restored to its previous end"

    exporter = betty_otel.configure(path, otlp=False)
    assert exporter is not None
    for n in range(3):
        assert record(f"decorated-too-big-{n}", padding(3000)) == f"decorated-too-big-{n}"
    assert (exporter.dropped, exporter.exported) == (3, 0)
    assert path.read_bytes() == before, "the file was not restored to its previous end"
    errors = [r.getMessage() for r in betty_errors(handler.records)]

    resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
    store.append([raw_entry("store-after")])
    store.close()
    assert record("decorated-after") == "decorated-after"
    assert (exporter.dropped, exporter.exported) == (3, 1)
    return {"errno": store_errno, "errors": errors}


@pytest.mark.timeout(60)
@pytest.mark.parametrize("slack", [0, 5, 200])
def test_an_append_past_the_file_size_limit_fails_restores_the_file_and_the_program_goes_on(
    tmp_path: Path, slack: int
) -> None:
    """Case 12 (file too big): in a child, RLIMIT_FSIZE is set to the file's size plus 0, 5
    or 200 bytes and SIGXFSZ ignored. TelemetryStore.append raises OSError (EFBIG);
    decorated calls return their values, the exporter counts each drop and logs one error;
    the file is byte-identical to before. After the limit is lifted, a direct append and a
    decorated call both land, after the earlier entries."""
    path = tmp_path / "telemetry.json"
    before = seed(path)
    with Children() as children:
        result = children.call(lambda: _over_the_size_limit(path, before, slack))
    assert result["errno"] == errno.EFBIG
    assert len(result["errors"]) == 1, result["errors"]
    assert str(path) in result["errors"][0]
    assert os.strerror(errno.EFBIG) in result["errors"][0]
    assert strict_ids(path) == ["seed-0", "seed-1", "seed-2", "store-after", "decorated-after"]
    assert check_file(path).ok


class DiskFull:
    """A file system with `free` bytes left, shared by every file: os.pwrite may grow files
    by that much in total (a write is cut short where space runs out, and one that cannot
    make progress fails with ENOSPC); os.ftruncate gives space back."""

    def __init__(self, free: int) -> None:
        self.free = free
        self.real_pwrite = os.pwrite
        self.real_ftruncate = os.ftruncate
        self.refused = 0

    def pwrite(self, fd: int, data: Any, offset: int) -> int:
        size = os.fstat(fd).st_size
        payload = bytes(data)
        room = size + self.free - offset  # bytes that fit from offset on
        if len(payload) > room:
            if room <= 0:
                self.refused += 1
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
            payload = payload[:room]
        written = self.real_pwrite(fd, payload, offset)
        self.free -= max(0, offset + written - size)
        return written

    def ftruncate(self, fd: int, length: int) -> None:
        size = os.fstat(fd).st_size
        self.real_ftruncate(fd, length)
        self.free += size - length

    def install(self, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.setattr(os, "pwrite", self.pwrite)
        monkeypatch.setattr(os, "ftruncate", self.ftruncate)


SEEDS = [raw_entry(f"seed-{i}") for i in range(3)]


def _disk_full_start(start: str, path: Path) -> bytes:
    """Write the starting file; its bytes."""
    if start == "canonical":
        return seed(path)
    if start == "legacy-indent2":
        path.write_text(json.dumps(SEEDS, indent=2), encoding="utf-8")
    elif start == "torn-tail":  # a writer died inside its append: repaired by the next one
        seed(path)
        path.write_bytes(path.read_bytes()[:-3] + b',\n{"timestamp": "2025-10-24T14:3')
    else:
        raise AssertionError(start)
    return path.read_bytes()


def open_fds() -> int:
    return sum(1 for _ in Path("/proc/self/fd").iterdir())


@pytest.mark.parametrize("free", [0, 5, 200])
@pytest.mark.parametrize("start", ["canonical", "legacy-indent2", "torn-tail"])
def test_a_full_disk_fails_the_append_restores_the_file_and_the_program_goes_on(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    start: str,
    free: int,
) -> None:
    """Case 12 (disk full): the file system has 0, 5 or 200 bytes free, then ENOSPC.
    TelemetryStore.append raises OSError (ENOSPC); decorated calls return their values,
    each drop is counted and one error logged; the file keeps its previous bytes (a torn
    tail may have been repaired first: then it holds exactly the complete entries); every
    saved copy of a torn tail beside the file is whole (no empty or partial copies pile up
    while the disk is full); no descriptor leaks. Once space is back, appends work and
    every earlier entry is intact."""
    caplog.set_level(logging.DEBUG, logger="betty_otel")
    path = tmp_path / "telemetry.json"
    before = _disk_full_start(start, path)
    torn = before[len(canonical_seeds()) - 3 :] if start == "torn-tail" else b""
    exporter = betty_otel.configure(path, otlp=False)
    assert exporter is not None
    fds = open_fds()
    disk = DiskFull(free)
    disk.install(monkeypatch)

    store = TelemetryStore(path)
    with pytest.raises(OSError, match=os.strerror(errno.ENOSPC)) as info:
        store.append([big_entry("store-no-space")])
    assert info.value.errno == errno.ENOSPC
    for n in range(5):
        assert record(f"no-space-{n}", padding(3000)) == f"no-space-{n}"
    assert disk.refused >= 6
    assert (exporter.dropped, exporter.exported) == (5, 0)
    errors = betty_errors(caplog.records)
    assert len(errors) == 1, [r.getMessage() for r in errors]
    assert str(path) in errors[0].getMessage()
    assert os.strerror(errno.ENOSPC) in errors[0].getMessage()
    allowed = (before, canonical_seeds()) if start == "torn-tail" else (before,)
    assert path.read_bytes() in allowed
    beside = {p.name: p.read_bytes() for p in tmp_path.iterdir() if p != path}
    assert {name: data for name, data in beside.items() if data != torn} == {}
    store.close()
    assert open_fds() <= fds + 1  # the exporter's store may keep its one descriptor

    monkeypatch.undo()
    store.append([raw_entry("store-after")])
    store.close()
    assert record("decorated-after") == "decorated-after"
    assert (exporter.dropped, exporter.exported) == (5, 1)
    seeds = [call_id_of(entry) for entry in SEEDS]
    assert strict_ids(path) == [*seeds, "store-after", "decorated-after"]
    assert check_file(path).ok


def canonical_seeds() -> bytes:
    """What seed() writes: the seeds in the store's canonical layout."""
    return canonical(SEEDS)


def test_a_full_disk_on_the_first_append_leaves_no_file_json_load_rejects(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Case 12 (disk full, no file yet): the first append fails with ENOSPC. Afterwards the
    path is absent (as before) or holds a strict JSON array, never a file that json.load
    rejects (every Betty tool reads the file with json.load); once space is back, the
    next append works."""
    path = tmp_path / "registry" / "telemetry.json"
    DiskFull(0).install(monkeypatch)
    store = TelemetryStore(path)
    with pytest.raises(OSError, match=os.strerror(errno.ENOSPC)):
        store.append([raw_entry("first")])
    if path.exists():
        left = path.read_bytes()
        assert left.strip(), "the failed first append left a 0-byte file; json.load rejects it"
        assert json.loads(left) == []
    monkeypatch.undo()
    store.append([raw_entry("second")])
    store.close()
    assert strict_ids(path) == ["second"]


# ---------------------------------------------------------------------------
# Case 13: fsync fails with EIO in durable mode
# ---------------------------------------------------------------------------


def test_fsync_eio_in_durable_mode_reports_no_success_logs_it_and_keeps_the_previous_state(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """Case 13: with fsync=True and os.fsync failing with EIO on the data file, a direct
    append raises OSError(EIO), the exporter returns FAILURE for a span and counts it,
    decorated calls return their values but are counted as dropped (never as exported),
    one error naming the I/O error is logged, and the file keeps its previous bytes. Once
    fsync works again, durable appends land."""
    caplog.set_level(logging.DEBUG, logger="betty_otel")
    path = tmp_path / "telemetry.json"
    exporter = betty_otel.configure(path, otlp=False, fsync=True)
    assert exporter is not None
    assert record("durable-0") == "durable-0"
    before = path.read_bytes()
    real_fsync = os.fsync
    failed: list[int] = []

    def failing_fsync(fd: int) -> None:
        if stat.S_ISREG(os.fstat(fd).st_mode):
            failed.append(fd)
            raise OSError(errno.EIO, os.strerror(errno.EIO))
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", failing_fsync)
    fds = open_fds()

    store = TelemetryStore(path, fsync=True)
    with pytest.raises(OSError, match=os.strerror(errno.EIO)) as info:
        store.append([raw_entry("store-eio")])
    assert info.value.errno == errno.EIO
    store.close()
    assert path.read_bytes() == before

    assert exporter.export([betty_span("export-eio")]) is SpanExportResult.FAILURE
    assert (exporter.dropped, exporter.exported) == (1, 1)
    for n in range(4):
        assert record(f"eio-{n}") == f"eio-{n}"
    assert (exporter.dropped, exporter.exported) == (5, 1)
    assert len(failed) == 6
    assert path.read_bytes() == before
    errors = betty_errors(caplog.records)
    assert len(errors) == 1, [r.getMessage() for r in errors]
    assert os.strerror(errno.EIO) in errors[0].getMessage()
    assert str(path) in errors[0].getMessage()
    assert open_fds() <= fds

    monkeypatch.undo()
    assert record("durable-after") == "durable-after"
    assert (exporter.dropped, exporter.exported) == (5, 2)
    assert strict_ids(path) == ["durable-0", "durable-after"]


FOLDER_FSYNC_CALLS = 200


def test_folder_fsync_eio_in_durable_mode_reports_no_success_and_leaks_no_descriptor(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """Case 13 (the folder's fsync): in durable mode a new file's folder is fsynced when
    the file is opened; when that fails with EIO, TelemetryStore.append raises, 200
    decorated calls return their values and are counted as dropped with one logged error,
    and no file descriptor is left open per attempt (a program would otherwise run out of
    descriptors). Once fsync works again, durable appends land."""
    caplog.set_level(logging.DEBUG, logger="betty_otel")
    path = tmp_path / "registry" / "telemetry.json"
    exporter = betty_otel.configure(path, otlp=False, fsync=True)
    assert exporter is not None
    real_fsync = os.fsync

    def failing_fsync(fd: int) -> None:
        if stat.S_ISDIR(os.fstat(fd).st_mode):
            raise OSError(errno.EIO, os.strerror(errno.EIO))
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", failing_fsync)
    fds = open_fds()
    store = TelemetryStore(path, fsync=True)
    with pytest.raises(OSError, match=os.strerror(errno.EIO)):
        store.append([raw_entry("store-eio")])
    for n in range(FOLDER_FSYNC_CALLS):
        assert record(f"eio-{n}") == f"eio-{n}"
    assert (exporter.dropped, exporter.exported) == (FOLDER_FSYNC_CALLS, 0)
    errors = betty_errors(caplog.records)
    assert len(errors) == 1, [r.getMessage() for r in errors]
    assert os.strerror(errno.EIO) in errors[0].getMessage()
    store.close()
    leaked = open_fds() - fds
    assert leaked <= 0, f"{leaked} descriptors left open by {FOLDER_FSYNC_CALLS + 1} attempts"

    monkeypatch.undo()
    assert record("durable-after") == "durable-after"
    assert (exporter.dropped, exporter.exported) == (FOLDER_FSYNC_CALLS, 1)
    assert strict_ids(path) == ["durable-after"]


# ---------------------------------------------------------------------------
# Case 14: unwritable destinations
# ---------------------------------------------------------------------------


def _chattr(flag: str, target: Path) -> bool:
    """chattr flag target; True when it worked."""
    tool = shutil.which("chattr")
    if tool is None:
        return False
    done = subprocess.run([tool, flag, str(target)], capture_output=True, check=False)
    return done.returncode == 0


@pytest.fixture
def immutable() -> Iterator[Callable[[Path], bool]]:
    """Make a file or folder immutable (chattr +i); undone at teardown."""
    made: list[Path] = []

    def make(target: Path) -> bool:
        if _chattr("+i", target):
            made.append(target)
            return True
        return False

    yield make
    for target in reversed(made):
        _chattr("-i", target)


def _under_a_regular_file(tmp_path: Path) -> tuple[Path, int]:
    plain = tmp_path / "plain.txt"
    plain.write_text("a regular file, not a folder\n", encoding="utf-8")
    return plain / "telemetry.json", errno.ENOTDIR


def _unwritable(fault: str, tmp_path: Path, immutable: Callable[[Path], bool]) -> tuple[Path, int]:
    """(telemetry path, the errno its open fails with) for one kind of fault."""
    if fault == "parent-is-a-file":
        return _under_a_regular_file(tmp_path)
    if fault == "folder-at-path":
        path = tmp_path / "telemetry.json"
        path.mkdir()
        (path / "keep.txt").write_text("mine\n", encoding="utf-8")
        return path, errno.EISDIR
    if fault == "read-only-folder":
        folder = tmp_path / "registry"
        folder.mkdir()
        if immutable(folder):
            return folder / "telemetry.json", errno.EPERM
        if os.geteuid() != 0:
            folder.chmod(0o555)
            return folder / "telemetry.json", errno.EACCES
        return _under_a_regular_file(tmp_path)  # documented substitution (module docstring)
    if fault == "read-only-file":
        path = tmp_path / "telemetry.json"
        seed(path, count=1)
        if immutable(path):
            return path, errno.EPERM
        if os.geteuid() != 0:
            path.chmod(0o444)
            return path, errno.EACCES
        return _under_a_regular_file(tmp_path)  # documented substitution (module docstring)
    raise AssertionError(fault)


UNWRITABLE_CALLS = 50


@pytest.mark.parametrize(
    "fault", ["parent-is-a-file", "folder-at-path", "read-only-folder", "read-only-file"]
)
def test_an_unwritable_destination_never_breaks_the_call_logs_one_error_and_counts_drops(
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
    immutable: Callable[[Path], bool],
    fault: str,
) -> None:
    """Case 14: the telemetry path's parent is a regular file, a folder is where the file
    should be, the folder is read-only (immutable), or the file is read-only (immutable).
    50 decorated calls all run and return normally; all 50 are counted as dropped; exactly
    one error is logged for them, naming the path and the reason; what was there is left
    exactly as it was; no descriptor is left open."""
    caplog.set_level(logging.DEBUG, logger="betty_otel")
    path, code = _unwritable(fault, tmp_path, immutable)
    snapshot = {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()}
    fds = open_fds()
    exporter = betty_otel.configure(path, otlp=False)
    assert exporter is not None
    ran: list[int] = []

    @capture_telemetry(skill_name="faults.unwritable", capture_inputs=True)
    def work(n: int) -> int:
        ran.append(n)
        return n * 2

    for n in range(UNWRITABLE_CALLS):
        assert work(n) == n * 2
    assert ran == list(range(UNWRITABLE_CALLS))
    assert (exporter.dropped, exporter.exported) == (UNWRITABLE_CALLS, 0)
    errors = betty_errors(caplog.records)
    assert len(errors) == 1, [r.getMessage() for r in errors]
    message = errors[0].getMessage()
    assert str(path) in message
    assert os.strerror(code) in message, message
    assert {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()} == snapshot
    assert open_fds() <= fds
