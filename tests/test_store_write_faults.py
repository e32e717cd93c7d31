"""The telemetry file store under faults: a failed write leaves no damage.

ENOSPC, EFBIG, EIO and EDQUOT, short writes, interrupts, fsync errors, a repeating clock
and a lock held elsewhere: the file stays byte-identical to before (or is restored),
no empty file or copy is left behind, no descriptor leaks. Everything runs on real files
in tmp_path; the only monkeypatching injects the fault.
"""

from __future__ import annotations

import errno
import fcntl
import os
import re
import stat
from pathlib import Path
from typing import Any

import pytest

from betty_otel._store import (
    LockTimeoutError,
    StoreError,
    TelemetryStore,
)
from helpers import (
    append_entries,
    canonical,
    load_strict,
    make_entry,
    stop_the_clock,
)
from store_helpers import LAYOUTS, tricky_entries

# ---------------------------------------------------------------------------
# faults: failed writes leave no damage
# ---------------------------------------------------------------------------

WRITE_ERRORS = [errno.ENOSPC, errno.EFBIG, errno.EIO, errno.EDQUOT]


@pytest.mark.parametrize("code", WRITE_ERRORS, ids=errno.errorcode.get)
@pytest.mark.parametrize(
    "layout", ["canonical", "indent2", "compact_one_line", "trailing_whitespace"]
)
def test_failed_write_leaves_the_file_byte_identical(
    log_path: Path, monkeypatch: pytest.MonkeyPatch, code: int, layout: str
) -> None:
    """An error on the first pwrite propagates and the file is exactly as before."""
    log_path.write_bytes(LAYOUTS[layout](tricky_entries()))
    before = log_path.read_bytes()
    real_pwrite = os.pwrite
    calls: list[int] = []

    def failing_pwrite(fd: int, data: Any, offset: int) -> int:
        calls.append(len(data))
        if len(calls) == 1:
            raise OSError(code, os.strerror(code))
        return real_pwrite(fd, data, offset)

    store = TelemetryStore(log_path)
    monkeypatch.setattr(os, "pwrite", failing_pwrite)
    with pytest.raises(OSError, match=re.escape(os.strerror(code))) as info:
        store.append([make_entry(1)])
    assert info.value.errno == code
    monkeypatch.undo()
    assert log_path.read_bytes() == before
    # The store is still usable afterwards.
    store.append([make_entry(2)])
    store.close()
    assert load_strict(log_path) == [*tricky_entries(), make_entry(2)]


@pytest.mark.parametrize("code", WRITE_ERRORS, ids=errno.errorcode.get)
def test_short_write_then_error_leaves_the_file_byte_identical(
    log_path: Path, monkeypatch: pytest.MonkeyPatch, code: int
) -> None:
    """A partial write followed by an error is rolled back: the file is exactly as before."""
    log_path.write_bytes(canonical([make_entry(n) for n in range(5)]))
    before = log_path.read_bytes()
    real_pwrite = os.pwrite
    calls: list[int] = []

    def short_then_fail(fd: int, data: Any, offset: int) -> int:
        calls.append(len(data))
        if len(calls) == 1:
            return real_pwrite(fd, bytes(data)[: len(data) // 2], offset)
        if len(calls) == 2:
            raise OSError(code, os.strerror(code))
        return real_pwrite(fd, data, offset)

    monkeypatch.setattr(os, "pwrite", short_then_fail)
    with pytest.raises(OSError, match=re.escape(os.strerror(code))) as info:
        append_entries(log_path, [make_entry(10), make_entry(11)])
    assert info.value.errno == code
    assert len(calls) == 3  # partial write, failure, restore
    monkeypatch.undo()
    assert log_path.read_bytes() == before


def test_interrupt_during_write_restores_the_file(
    log_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A KeyboardInterrupt in the middle of an append still restores the previous end."""
    log_path.write_bytes(canonical([make_entry(1)]))
    before = log_path.read_bytes()
    real_pwrite = os.pwrite
    calls: list[int] = []

    def interrupted(fd: int, data: Any, offset: int) -> int:
        calls.append(len(data))
        if len(calls) == 1:
            real_pwrite(fd, bytes(data)[:5], offset)
            raise KeyboardInterrupt
        return real_pwrite(fd, data, offset)

    monkeypatch.setattr(os, "pwrite", interrupted)
    with pytest.raises(KeyboardInterrupt):
        append_entries(log_path, [make_entry(2)])
    monkeypatch.undo()
    assert log_path.read_bytes() == before


def test_failed_first_append_leaves_no_empty_file(
    log_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A full disk on the very first append removes the file it created (0 bytes: json.load
    rejects it); an empty file that was already there is left alone."""

    def full(fd: int, data: Any, offset: int) -> int:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(os, "pwrite", full)
    with pytest.raises(OSError, match=os.strerror(errno.ENOSPC)):
        append_entries(log_path, [make_entry(1)])
    assert not log_path.exists()
    log_path.write_bytes(b"")
    with pytest.raises(OSError, match=os.strerror(errno.ENOSPC)):
        append_entries(log_path, [make_entry(1)])
    assert log_path.read_bytes() == b""
    monkeypatch.undo()
    append_entries(log_path, [make_entry(1)])
    assert load_strict(log_path) == [make_entry(1)]


def test_full_disk_while_saving_a_torn_tail_leaves_no_empty_copy(
    log_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """If the torn tail cannot be saved (disk full), the append fails, the file is unchanged
    and no empty .torn file is left behind, however often it is retried."""
    log_path.write_bytes(canonical([make_entry(1)])[: -len(b"\n]\n")] + b',\n{"torn')
    before = log_path.read_bytes()

    def full(fd: int, data: Any, offset: int) -> int:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(os, "pwrite", full)
    for _ in range(3):
        with pytest.raises(OSError, match=os.strerror(errno.ENOSPC)):
            append_entries(log_path, [make_entry(2)])
    monkeypatch.undo()
    assert log_path.read_bytes() == before
    assert [p.name for p in log_path.parent.iterdir()] == ["telemetry.json"]


def test_folder_fsync_error_leaks_no_descriptor(
    log_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With fsync=True, an EIO from the folder fsync fails the append without leaking the fd."""
    real_fsync = os.fsync

    def failing_dir_fsync(fd: int) -> None:
        if stat.S_ISDIR(os.fstat(fd).st_mode):
            raise OSError(errno.EIO, os.strerror(errno.EIO))
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", failing_dir_fsync)
    before = sum(1 for _ in Path("/proc/self/fd").iterdir())
    for _ in range(20):
        with pytest.raises(OSError, match="Input/output error"):
            append_entries(log_path, [make_entry(1)], fsync=True)
    assert sum(1 for _ in Path("/proc/self/fd").iterdir()) <= before


@pytest.mark.parametrize("kind", ["invalid", "torn"])
def test_files_set_aside_are_never_overwritten_when_the_clock_repeats(
    log_path: Path, monkeypatch: pytest.MonkeyPatch, kind: str
) -> None:
    """Two foreign files (or torn tails) set aside at the same clock reading both survive."""
    stop_the_clock(monkeypatch)  # 2025-10-24 14:30:45.123456 UTC
    saved: list[bytes] = []
    for index in range(3):
        if kind == "invalid":
            content = b'{"foreign": %d}\n' % index
            log_path.write_bytes(content)
        else:
            content = b',\n{"torn": %d' % index
            log_path.write_bytes(canonical([make_entry(index)])[: -len(b"\n]\n")] + content)
        saved.append(content)
        append_entries(log_path, [make_entry(10 + index)])
        assert load_strict(log_path)[-1] == make_entry(10 + index)
    aside = sorted(p for p in log_path.parent.iterdir() if p.name != "telemetry.json")
    assert [p.name for p in aside] == [
        f"telemetry.json.{kind}-20251024T143045.123456Z",
        f"telemetry.json.{kind}-20251024T143045.123456Z-1",
        f"telemetry.json.{kind}-20251024T143045.123456Z-2",
    ]
    assert [p.read_bytes() for p in aside] == saved


def test_unserialisable_entry_writes_nothing(log_path: Path) -> None:
    """An entry orjson cannot encode raises TypeError before anything is written."""
    log_path.write_bytes(canonical([make_entry(1)]))
    before = log_path.read_bytes()
    with pytest.raises(TypeError):
        append_entries(log_path, [make_entry(2), {"bad": object()}])
    assert log_path.read_bytes() == before


def test_fsync_option_fsyncs_the_file(log_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """With fsync=True every append fsyncs the data file (and the folder when opening it);
    a new file is fsynced once more, holding its empty array, before it is linked in place."""
    real_fsync = os.fsync
    synced: list[str] = []

    def recording_fsync(fd: int) -> None:
        mode = os.fstat(fd).st_mode
        synced.append("file" if stat.S_ISREG(mode) else "dir" if stat.S_ISDIR(mode) else "?")
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", recording_fsync)
    store = TelemetryStore(log_path, fsync=True)
    try:
        store.append([make_entry(1)])
        assert synced.count("file") == 2
        assert "dir" in synced
        store.append([make_entry(2)])
        assert synced.count("file") == 3
    finally:
        store.close()
    synced.clear()
    append_entries(log_path, [make_entry(3)])  # fsync=False: no flush
    assert synced == []


def test_fsync_error_raises_and_restores_the_file(
    log_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An EIO from fsync propagates and the file is put back to its previous end."""
    log_path.write_bytes(canonical([make_entry(1)]))
    before = log_path.read_bytes()
    real_fsync = os.fsync

    def failing_fsync(fd: int) -> None:
        if stat.S_ISREG(os.fstat(fd).st_mode):
            raise OSError(errno.EIO, os.strerror(errno.EIO))
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", failing_fsync)
    with pytest.raises(OSError, match="Input/output error") as info:
        append_entries(log_path, [make_entry(2)], fsync=True)
    assert info.value.errno == errno.EIO
    monkeypatch.undo()
    assert log_path.read_bytes() == before


def test_lock_timeout_when_another_holder_keeps_the_lock(log_path: Path) -> None:
    """If another open file description holds flock, append gives up with LockTimeoutError."""
    log_path.write_bytes(canonical([make_entry(1)]))
    before = log_path.read_bytes()
    fd = os.open(log_path, os.O_RDWR)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        store = TelemetryStore(log_path, lock_timeout=0.2)
        with pytest.raises(LockTimeoutError) as info:
            store.append([make_entry(2)])
        assert isinstance(info.value, StoreError)
        assert isinstance(info.value, OSError)
        fcntl.flock(fd, fcntl.LOCK_UN)
        store.append([make_entry(2)])  # works once the lock is free
        store.close()
    finally:
        os.close(fd)
    assert log_path.read_bytes().startswith(before[:-3])
    assert load_strict(log_path) == [make_entry(1), make_entry(2)]


def test_close_is_idempotent(log_path: Path) -> None:
    """close() may be called twice, and the store reopens the file on next use."""
    store = TelemetryStore(log_path)
    store.append([make_entry(1)])
    store.close()
    store.close()
    store.append([make_entry(2)])
    store.close()
    assert load_strict(log_path) == [make_entry(1), make_entry(2)]


def test_file_replaced_under_an_open_store_is_followed(log_path: Path, tmp_path: Path) -> None:
    """A store appends to whatever file the path names now, not to a stale descriptor."""
    store = TelemetryStore(log_path)
    try:
        store.append([make_entry(1)])
        log_path.rename(tmp_path / "moved.json")
        store.append([make_entry(2)])
        log_path.unlink()
        store.append([make_entry(3)])
    finally:
        store.close()
    assert load_strict(tmp_path / "moved.json") == [make_entry(1)]
    assert load_strict(log_path) == [make_entry(3)]
