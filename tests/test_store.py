"""Unit tests of the telemetry file store: layouts, edge files, faults and repair.

Everything runs on real files in tmp_path; the only monkeypatching injects faults
(ENOSPC, EIO, ...) or counts the bytes the store reads and writes.
"""

from __future__ import annotations

import errno
import fcntl
import json
import logging
import os
import re
import stat
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from betty_otel._store import (
    DEFAULT_PATH,
    ENV_FILE,
    Damage,
    LockTimeoutError,
    StoreError,
    TelemetryStore,
    check_file,
    default_path,
    encode_entry,
    iter_entries,
    log_files,
    resolve_path,
)
from helpers import (
    BOM,
    INVALID_NAME,
    Entry,
    append_entries,
    canonical,
    indent2,
    is_betty_record,
    load_strict,
    make_entry,
    read_backward,
    read_forward,
    stop_the_clock,
    umask_zero,  # noqa: F401 - a fixture, used by name
)

TORN_NAME = re.compile(r"^telemetry\.json\.torn-\d{8}T\d{6}\.\d{6}Z$")


# ---------------------------------------------------------------------------
# helpers
# ---------------------------------------------------------------------------


def tricky_entries() -> list[Entry]:
    """Entries whose text looks like structure: brackets, commas, newlines, unicode."""
    return [
        make_entry(1),
        {"msg": 'a]b,\n}{ "quoted" [', "nested": {"x": [1, [2, []]], "y": {}}, "ok": True},
        {"skill": "žluťoučký kůň 🐍", "error_message": "line1\r\nline2\u2028", "n": -0.5},
        {"empty": [], "zero": 0, "null": None, "false": False, "big": 2**62},
        {"args": [1, 2, ["deep", {"k": "]"}]]},
    ]


LAYOUTS: dict[str, Callable[[list[Entry]], bytes]] = {
    "canonical": canonical,
    "indent2": indent2,
    "indent2_final_newline": lambda es: indent2(es) + b"\n",
    "indent4_unicode": lambda es: json.dumps(es, indent=4, ensure_ascii=False).encode(),
    "crlf": lambda es: indent2(es).replace(b"\n", b"\r\n") + b"\r\n",
    "canonical_crlf": lambda es: canonical(es).replace(b"\n", b"\r\n"),
    "bom": lambda es: BOM + indent2(es),
    "bom_canonical": lambda es: BOM + canonical(es),
    "trailing_whitespace": lambda es: canonical(es) + b"\n \t\n\n   ",
    "no_final_newline": lambda es: canonical(es)[:-1],
    "compact_one_line": lambda es: json.dumps(es, separators=(",", ":")).encode(),
    "default_separators": lambda es: json.dumps(es).encode(),
    "leading_whitespace": lambda es: b"\n\n  " + indent2(es),
}

EMPTY_LAYOUTS: dict[str, bytes] = {
    "zero_bytes": b"",
    "empty_array": b"[]",
    "empty_array_newline": b"[\n]",
    "empty_array_canonical": b"[\n]\n",
    "empty_array_spaced": b"  [ \t ] \n",
    "empty_array_crlf": b"[\r\n]\r\n",
    "whitespace_only": b"  \n\t\n",
    "bom_only": BOM,
    "bom_empty_array": BOM + b"[]",
}


def collect_damage() -> tuple[list[Damage], Callable[[Damage], None]]:
    found: list[Damage] = []
    return found, found.append


def assert_readers_agree(path: Path, expected: list[Entry]) -> None:
    """Both readers return expected (oldest first / newest first) and report no damage."""
    damage, report = collect_damage()
    assert read_forward(path, on_damage=report) == expected
    assert read_backward(path, on_damage=report) == expected[::-1]
    assert damage == []


@pytest.fixture
def log_path(tmp_path: Path) -> Path:
    return tmp_path / "telemetry.json"


@pytest.fixture
def store(log_path: Path) -> Iterator[TelemetryStore]:
    instance = TelemetryStore(log_path)
    yield instance
    instance.close()


# ---------------------------------------------------------------------------
# paths and encoding
# ---------------------------------------------------------------------------


def test_resolve_path_prefers_argument_then_env_then_default(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """resolve_path: the argument wins, then $BETTY_TELEMETRY_FILE, then registry/telemetry.json
    (under the Betty root, else the working directory: see test_trust_location.py)."""
    monkeypatch.delenv(ENV_FILE, raising=False)
    assert Path("registry") / "telemetry.json" == DEFAULT_PATH
    assert resolve_path() == default_path()
    assert resolve_path().is_absolute()
    assert resolve_path().parts[-2:] == DEFAULT_PATH.parts
    assert resolve_path("") == default_path()
    monkeypatch.setenv(ENV_FILE, str(tmp_path / "env.json"))
    assert resolve_path() == tmp_path / "env.json"
    assert resolve_path(tmp_path / "arg.json") == tmp_path / "arg.json"
    assert TelemetryStore().path == tmp_path / "env.json"


def test_encode_entry_is_one_compact_line() -> None:
    """encode_entry gives compact JSON with no raw newline, even for multi-line text."""
    line = encode_entry({"a": "x\ny", "b": [1, 2], "c": "ü"})
    assert line == b'{"a":"x\\ny","b":[1,2],"c":"\xc3\xbc"}'
    assert b"\n" not in line


# ---------------------------------------------------------------------------
# layouts and edge files
# ---------------------------------------------------------------------------


def test_missing_file_is_an_empty_log(log_path: Path) -> None:
    """A missing file reads as an empty log, checks as ok, and reading does not create it."""
    assert read_forward(log_path) == []
    assert read_backward(log_path) == []
    report = check_file(log_path)
    assert not report.exists
    assert report.ok
    assert report.entries == 0
    assert not log_path.exists()


def test_fresh_file_has_the_canonical_layout(log_path: Path, store: TelemetryStore) -> None:
    """A new file is exactly ``[\\n{..},\\n{..}\\n]\\n`` and stays canonical across appends."""
    first, second, third = make_entry(1), make_entry(2), make_entry(3)
    store.append([first, second])
    assert log_path.read_bytes() == (
        b"[\n" + orjson.dumps(first) + b",\n" + orjson.dumps(second) + b"\n]\n"
    )
    store.append([third])
    assert log_path.read_bytes() == canonical([first, second, third])
    assert load_strict(log_path) == [first, second, third]


def test_empty_batches_change_nothing(log_path: Path, store: TelemetryStore) -> None:
    """append([]) and append_encoded([]) write nothing: no file, no trailing comma."""
    store.append([])
    assert not log_path.exists()
    store.append([make_entry(1)])
    before = log_path.read_bytes()
    store.append([])
    store.append_encoded([])
    assert log_path.read_bytes() == before
    assert load_strict(log_path) == [make_entry(1)]


def test_append_encoded_writes_the_given_lines(log_path: Path, store: TelemetryStore) -> None:
    """append_encoded appends pre-encoded lines exactly as given."""
    store.append_encoded([encode_entry(make_entry(1)), b'{"raw":true}'])
    assert log_path.read_bytes() == b"[\n" + orjson.dumps(make_entry(1)) + b',\n{"raw":true}\n]\n'


@pytest.mark.parametrize("layout", sorted(LAYOUTS))
def test_readers_understand_every_layout(log_path: Path, layout: str) -> None:
    """Forward and newest-first readers return the same entries, in reverse, for any layout."""
    entries = tricky_entries()
    log_path.write_bytes(LAYOUTS[layout](entries))
    assert_readers_agree(log_path, entries)
    report = check_file(log_path)
    assert report.ok
    assert report.entries == len(entries)


@pytest.mark.parametrize("layout", sorted(LAYOUTS))
def test_append_keeps_every_old_entry_in_any_layout(log_path: Path, layout: str) -> None:
    """Appending to any valid layout keeps json.load working and old entries unchanged."""
    entries = tricky_entries()
    log_path.write_bytes(LAYOUTS[layout](entries))
    new = [make_entry(10), make_entry(11)]
    append_entries(log_path, new)
    assert load_strict(log_path) == entries + new
    assert_readers_agree(log_path, entries + new)
    # A second writer (a fresh descriptor) appends after the first one's entries.
    append_entries(log_path, [make_entry(12)])
    assert load_strict(log_path) == [*entries, *new, make_entry(12)]
    assert_readers_agree(log_path, [*entries, *new, make_entry(12)])
    report = check_file(log_path)
    assert report.ok
    assert report.entries == len(entries) + 3


@pytest.mark.parametrize("layout", sorted(LAYOUTS))
def test_append_never_rewrites_existing_entries(log_path: Path, layout: str) -> None:
    """The bytes of every existing entry stay in place: only the closing bracket is replaced."""
    original = LAYOUTS[layout](tricky_entries())
    log_path.write_bytes(original)
    append_entries(log_path, [make_entry(10)])
    after = log_path.read_bytes()
    last_brace = original.rstrip(b" \t\r\n")[:-1].rstrip(b" \t\r\n")
    if original.startswith(BOM):  # the BOM is replaced by spaces so that json.load works
        assert after.startswith(b"   ")
        last_brace = b"   " + last_brace[len(BOM) :]
    assert after.startswith(last_brace)
    # An indented last element and a bracket with no newline after it may be an old Betty
    # writer whose final newline is still to land there: a blank line takes it.
    late = b"\n" if re.search(rb"\n[ \t]+}\n]\Z", original) else b""
    assert after[len(last_brace) :] == b",\n" + late + orjson.dumps(make_entry(10)) + b"\n]\n"


@pytest.mark.parametrize("layout", sorted(EMPTY_LAYOUTS))
def test_empty_files_read_empty_and_accept_appends(log_path: Path, layout: str) -> None:
    """0-byte, whitespace, ``[]``, ``[\\n]`` and BOM-only files are empty logs that take
    appends; check calls the ones without a JSON value (json.load fails on them) a problem."""
    log_path.write_bytes(EMPTY_LAYOUTS[layout])
    assert_readers_agree(log_path, [])
    report = check_file(log_path)
    assert report.empty is (b"[" not in EMPTY_LAYOUTS[layout])
    assert report.ok is not report.empty
    new = [make_entry(1), make_entry(2)]
    append_entries(log_path, new)
    assert load_strict(log_path) == new
    assert_readers_agree(log_path, new)
    append_entries(log_path, [make_entry(3)])
    assert load_strict(log_path) == [*new, make_entry(3)]


def test_bom_is_overwritten_with_spaces(log_path: Path) -> None:
    """A UTF-8 BOM is replaced in place by three spaces, so json.load(open(p)) works."""
    entries = [make_entry(1)]
    log_path.write_bytes(BOM + indent2(entries))
    with pytest.raises(json.JSONDecodeError):
        load_strict(log_path)  # the reason for overwriting it
    append_entries(log_path, [make_entry(2)])
    data = log_path.read_bytes()
    assert data.startswith(b"   [")
    assert load_strict(log_path) == [make_entry(1), make_entry(2)]


def test_append_reads_a_bounded_amount_of_a_big_file(
    log_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An append reads and writes a bounded number of bytes, not a multiple of the file size."""
    line = orjson.dumps(make_entry(0))
    count = 40_000
    log_path.write_bytes(b"[\n" + b",\n".join([line] * count) + b"\n]\n")
    size = log_path.stat().st_size
    assert size > 10_000_000

    read: list[int] = []
    written: list[int] = []
    real_pread, real_pwrite = os.pread, os.pwrite

    def counting_pread(fd: int, length: int, offset: int) -> bytes:
        data = real_pread(fd, length, offset)
        read.append(len(data))
        return data

    def counting_pwrite(fd: int, data: Any, offset: int) -> int:
        done = real_pwrite(fd, data, offset)
        written.append(done)
        return done

    monkeypatch.setattr(os, "pread", counting_pread)
    monkeypatch.setattr(os, "pwrite", counting_pwrite)
    store = TelemetryStore(log_path)
    try:
        for number in range(3):
            read.clear()
            written.clear()
            store.append([make_entry(number)])
            assert sum(read) <= 256 * 1024, f"append {number} read {sum(read)} bytes of {size}"
            assert sum(written) <= len(line) + 16
    finally:
        store.close()
    monkeypatch.undo()
    report = check_file(log_path)
    assert report.ok
    assert report.entries == count + 3


# ---------------------------------------------------------------------------
# foreign content, symlinks, directories, permissions
# ---------------------------------------------------------------------------

FOREIGN: dict[str, bytes] = {
    "json_object": b'{"entries": [1, 2, 3]}\n',
    "json_lines": b'{"skill": "a"}\n{"skill": "b"}\n',
    "binary": bytes(range(256)) * 3,
    "nul_bytes": b"\x00" * 100,
    "text": b"hello, world\n",
    "bom_object": BOM + b'{"a": 1}',
    "json_string": b'"[not an array]"',
}


@pytest.mark.parametrize("kind", sorted(FOREIGN))
def test_foreign_content_is_moved_aside_not_overwritten(
    log_path: Path, kind: str, caplog: pytest.LogCaptureFixture
) -> None:
    """A non-array file is renamed to .invalid-<UTC> (bytes intact) with a warning."""
    original = FOREIGN[kind]
    log_path.write_bytes(original)
    with caplog.at_level(logging.WARNING, logger="betty_otel"):
        append_entries(log_path, [make_entry(1)])
    moved = [p for p in log_path.parent.iterdir() if p.name.startswith("telemetry.json.invalid-")]
    assert len(moved) == 1
    assert INVALID_NAME.match(moved[0].name), moved[0].name
    assert moved[0].read_bytes() == original
    assert load_strict(log_path) == [make_entry(1)]
    assert log_path.read_bytes() == canonical([make_entry(1)])
    warnings = [r for r in caplog.records if is_betty_record(r) and r.levelno == logging.WARNING]
    assert any("not a JSON array" in r.getMessage() for r in warnings)
    assert any(moved[0].name in r.getMessage() for r in warnings)


@pytest.mark.parametrize("kind", sorted(FOREIGN))
def test_readers_and_check_report_foreign_content_without_writing(
    log_path: Path, kind: str
) -> None:
    """Readers yield nothing from a non-array file, report it as damage, and leave it untouched."""
    log_path.write_bytes(FOREIGN[kind])
    damage, report = collect_damage()
    assert read_forward(log_path, on_damage=report) == []
    assert read_backward(log_path, on_damage=report) == []
    assert [d.reason for d in damage] == ["not a JSON array"] * 2
    result = check_file(log_path)
    assert result.not_array
    assert not result.ok
    assert log_path.read_bytes() == FOREIGN[kind]
    assert list(log_path.parent.iterdir()) == [log_path]


def test_file_replaced_by_foreign_content_later_is_moved_aside(log_path: Path) -> None:
    """A file that turns into non-array content under an open store is moved aside next time."""
    store = TelemetryStore(log_path)
    try:
        store.append([make_entry(1)])
        with log_path.open("r+b") as handle:  # same inode, new content
            handle.truncate(0)
            handle.write(b'{"jsonl": 1}\n{"jsonl": 2}\n')
        store.append([make_entry(2)])
        store.append([make_entry(3)])
    finally:
        store.close()
    assert load_strict(log_path) == [make_entry(2), make_entry(3)]
    moved = [p for p in log_path.parent.iterdir() if INVALID_NAME.match(p.name)]
    assert [p.read_bytes() for p in moved] == [b'{"jsonl": 1}\n{"jsonl": 2}\n']


@pytest.mark.usefixtures("umask_zero")
def test_files_are_0600_and_folders_0700_even_under_umask_zero(tmp_path: Path) -> None:
    """The log, its torn-tail copies and every folder created for it are private to the owner."""
    path = tmp_path / "a" / "b" / "c" / "telemetry.json"
    append_entries(path, [make_entry(1)])
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    for folder in (tmp_path / "a", tmp_path / "a" / "b", tmp_path / "a" / "b" / "c"):
        assert stat.S_IMODE(folder.stat().st_mode) == 0o700, folder
    with path.open("ab") as handle:
        handle.write(b',\n{"torn": ')
    store = TelemetryStore(path)
    try:
        assert store.repair() > 0
    finally:
        store.close()
    torn = [p for p in path.parent.iterdir() if TORN_NAME.match(p.name)]
    assert len(torn) == 1
    assert stat.S_IMODE(torn[0].stat().st_mode) == 0o600


@pytest.mark.usefixtures("umask_zero")
def test_existing_folder_permissions_are_left_alone(tmp_path: Path) -> None:
    """The store only sets the mode of folders it creates."""
    folder = tmp_path / "shared"
    folder.mkdir(mode=0o755)
    append_entries(folder / "telemetry.json", [make_entry(1)])
    assert stat.S_IMODE(folder.stat().st_mode) == 0o755
    assert stat.S_IMODE((folder / "telemetry.json").stat().st_mode) == 0o600


def test_symlink_to_a_file_is_refused(log_path: Path, tmp_path: Path) -> None:
    """A symlink at the path is refused with StoreError; its target is not written."""
    target = tmp_path / "target.json"
    target.write_bytes(b"[]")
    log_path.symlink_to(target)
    store = TelemetryStore(log_path)
    with pytest.raises(StoreError) as info:
        store.append([make_entry(1)])
    assert info.value.errno == errno.ELOOP
    with pytest.raises(StoreError):
        store.repair()
    store.close()
    assert target.read_bytes() == b"[]"
    assert log_path.is_symlink()


def test_dangling_symlink_is_refused_and_target_not_created(log_path: Path, tmp_path: Path) -> None:
    """A dangling symlink at the path is refused; the file it points to is not created."""
    target = tmp_path / "elsewhere" / "target.json"
    target.parent.mkdir()
    log_path.symlink_to(target)
    with pytest.raises(StoreError):
        append_entries(log_path, [make_entry(1)])
    assert not target.exists()
    assert log_path.is_symlink()


def test_symlink_swapped_in_after_open_is_refused(log_path: Path, tmp_path: Path) -> None:
    """A store that already has the file open notices the path became a symlink and refuses it."""
    store = TelemetryStore(log_path)
    try:
        store.append([make_entry(1)])
        target = tmp_path / "target.json"
        target.write_bytes(b"[]")
        log_path.rename(tmp_path / "old.json")
        log_path.symlink_to(target)
        with pytest.raises(StoreError):
            store.append([make_entry(2)])
    finally:
        store.close()
    assert target.read_bytes() == b"[]"
    assert load_strict(tmp_path / "old.json") == [make_entry(1)]


def test_directory_at_the_path_raises(log_path: Path) -> None:
    """A directory where the file should be raises OSError and is left as it is."""
    log_path.mkdir()
    with pytest.raises(OSError, match=r"[Ii]s a directory|not a regular file"):
        append_entries(log_path, [make_entry(1)])
    assert log_path.is_dir()
    assert list(log_path.iterdir()) == []


def test_fifo_at_the_path_is_refused(log_path: Path) -> None:
    """A FIFO at the path is not a regular file: StoreError, nothing blocks."""
    os.mkfifo(log_path)
    # O_RDWR on a FIFO does not block on Linux; the store then refuses the non-regular file.
    with pytest.raises(StoreError, match="not a regular file"):
        append_entries(log_path, [make_entry(1)])


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


# ---------------------------------------------------------------------------
# settings and rotation
# ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"lock_timeout": 0}, "lock_timeout"),
        ({"lock_timeout": -1.0}, "lock_timeout"),
        ({"lock_timeout": float("nan")}, "lock_timeout"),
        ({"max_bytes": -1}, "max_bytes"),
        ({"max_bytes": 1000, "backups": 0}, "backups"),
        ({"max_bytes": 1000, "backups": -3}, "backups"),
    ],
)
def test_bad_settings_raise_value_error(
    log_path: Path, kwargs: dict[str, Any], message: str
) -> None:
    """Out-of-range settings fail at construction with a ValueError naming the setting."""
    with pytest.raises(ValueError, match=message):
        TelemetryStore(log_path, **kwargs)


def test_backups_do_not_matter_without_rotation(log_path: Path) -> None:
    """backups=0 is fine when max_bytes=0 (rotation off)."""
    append_entries(log_path, [make_entry(1)], backups=0)
    assert load_strict(log_path) == [make_entry(1)]


def test_rotation_keeps_backups_and_readers_see_all_newest_first(log_path: Path) -> None:
    """Past max_bytes the file rotates to .1, .2, ...; readers see every kept entry once."""
    entries = [make_entry(n) for n in range(40)]
    store = TelemetryStore(log_path, max_bytes=1500, backups=100)
    try:
        for entry in entries:
            store.append([entry])
    finally:
        store.close()
    files = log_files(log_path)
    assert files[0] == log_path
    assert files[1:] == [log_path.with_name(f"telemetry.json.{n}") for n in range(1, len(files))]
    assert len(files) > 3
    per_file = [load_strict(p) for p in files]
    for path in files:
        assert path.stat().st_size <= 1500
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
    # Oldest first across the files = the appended sequence, exactly once.
    assert [e for chunk in reversed(per_file) for e in chunk] == entries
    assert read_backward(log_path) == entries[::-1]
    assert read_forward(log_path) == entries
    assert list(iter_entries(log_path, rotated=False, newest_first=False)) == per_file[0]


def test_rotation_deletes_the_oldest_beyond_backups(log_path: Path) -> None:
    """Only `backups` rotated files are kept; the newest entries survive, in order."""
    entries = [make_entry(n) for n in range(60)]
    for entry in entries:
        append_entries(log_path, [entry], max_bytes=1200, backups=2)
    files = log_files(log_path)
    assert [p.name for p in files] == ["telemetry.json", "telemetry.json.1", "telemetry.json.2"]
    assert not log_path.with_name("telemetry.json.3").exists()
    kept = read_backward(log_path)
    assert 0 < len(kept) < len(entries)
    assert kept == entries[::-1][: len(kept)]
    assert read_forward(log_path) == kept[::-1]


def test_a_batch_bigger_than_max_bytes_is_written_whole(log_path: Path) -> None:
    """A batch larger than max_bytes is never split or dropped: it gets a file of its own."""
    batch = [make_entry(n) for n in range(10)]
    store = TelemetryStore(log_path, max_bytes=500, backups=3)
    try:
        store.append([make_entry(100)])
        store.append(batch)
        store.append([make_entry(101)])
    finally:
        store.close()
    assert load_strict(log_path) == [make_entry(101)]
    assert load_strict(log_path.with_name("telemetry.json.1")) == batch
    assert read_forward(log_path) == [make_entry(100), *batch, make_entry(101)]


def test_a_torn_file_is_repaired_before_it_is_rotated(log_path: Path) -> None:
    """Rotation never turns a torn tail into a permanently torn backup: it repairs first."""
    entries = [make_entry(n) for n in range(5)]
    log_path.write_bytes(canonical(entries)[: -len(b"\n]\n")] + b',\n{"torn": ')
    append_entries(log_path, [make_entry(9)], max_bytes=1000, backups=2)
    backup = log_path.with_name("telemetry.json.1")
    assert load_strict(backup) == entries
    assert check_file(backup).ok
    assert load_strict(log_path) == [make_entry(9)]
    assert [p.read_bytes() for p in log_path.parent.glob("*.torn-*")] == [b',\n{"torn": ']


def test_foreign_content_is_moved_aside_not_rotated(
    log_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A big non-array file is moved to .invalid-<UTC> with a warning, not kept as backup .1."""
    original = b'{"jsonl": 1}\n' * 200
    log_path.write_bytes(original)
    with caplog.at_level(logging.WARNING, logger="betty_otel"):
        append_entries(log_path, [make_entry(1)], max_bytes=1000, backups=2)
    assert not log_path.with_name("telemetry.json.1").exists()
    moved = [p for p in log_path.parent.iterdir() if INVALID_NAME.match(p.name)]
    assert [p.read_bytes() for p in moved] == [original]
    assert load_strict(log_path) == [make_entry(1)]
    assert any("not a JSON array" in r.getMessage() for r in caplog.records)


# ---------------------------------------------------------------------------
# damage in the middle, torn tails, repair
# ---------------------------------------------------------------------------


def damaged_file(path: Path, position: str) -> tuple[list[Entry], int, int]:
    """Five canonical entries with one bit of the middle line flipped: (others, start, end)."""
    entries = [make_entry(n) for n in range(5)]
    data = bytearray(canonical(entries))
    lines = bytes(data).split(b"\n")
    start = sum(len(line) + 1 for line in lines[:3])  # "[", entry 0, entry 1
    middle = lines[3]
    assert middle.endswith(b"},")
    index = {
        "open_brace": 0,
        "first_quote": 1,
        "colon": middle.index(b":"),
        "comma_inside": middle.index(b","),
        "close_brace": len(middle) - 2,
        "separator": len(middle) - 1,
        "digit": middle.index(b'"n":') + 4,
    }[position]
    data[start + index] ^= 0x01
    path.write_bytes(bytes(data))
    return entries[:2] + entries[3:], start, start + len(middle)


DAMAGE_POSITIONS = [
    "open_brace",
    "first_quote",
    "colon",
    "comma_inside",
    "close_brace",
    "separator",
]


@pytest.mark.parametrize("position", DAMAGE_POSITIONS)
def test_damaged_line_is_skipped_and_reported_by_both_readers(
    log_path: Path, position: str
) -> None:
    """A bit flip in a middle entry: readers return every other entry and report the damage."""
    others, start, end = damaged_file(log_path, position)
    before = log_path.read_bytes()
    for newest_first in (False, True):
        damage, report = collect_damage()
        got = list(iter_entries(log_path, newest_first=newest_first, on_damage=report))
        assert got == (others[::-1] if newest_first else others)
        assert damage, f"no damage reported (newest_first={newest_first})"
        assert all(d.offset >= 0 for d in damage)
        assert any(d.offset <= end and start <= d.offset + d.length for d in damage)
    result = check_file(log_path)
    assert not result.ok
    assert result.damage
    assert not result.torn_tail
    assert result.entries == len(others)
    assert log_path.read_bytes() == before  # reading never writes


def test_any_single_bit_flip_in_a_line_loses_only_that_line(tmp_path: Path) -> None:
    """Flip each bit (0x01, 0x20) of a middle line: readers agree and keep every other entry."""
    path = tmp_path / "telemetry.json"
    entries = [make_entry(n) for n in range(5)]
    clean = canonical(entries)
    lines = clean.split(b"\n")
    start = sum(len(line) + 1 for line in lines[:3])
    others = entries[:2] + entries[3:]
    for index in range(len(lines[3]) + 1):  # + 1: the line's newline too
        for mask in (0x01, 0x20):
            data = bytearray(clean)
            data[start + index] ^= mask
            path.write_bytes(bytes(data))
            damage, report = collect_damage()
            oldest = read_forward(path, on_damage=report)
            assert read_backward(path, on_damage=report) == oldest[::-1], (index, mask)
            if index < len(lines[3]):
                assert [e for e in oldest if e in others] == others, (index, mask)
                assert len(oldest) == 5 or damage, (index, mask)
            # Appends still work and are read back.
            append_entries(path, [{"new": index}])
            after = read_forward(path, on_damage=report)
            assert after[-1] == {"new": index}
            assert after[:-1] == oldest
            assert read_backward(path, on_damage=report) == after[::-1]
            for extra in tmp_path.iterdir():
                if extra != path:
                    extra.unlink()


def test_damage_in_a_string_value_changes_only_that_value(log_path: Path) -> None:
    """A bit flip that keeps the JSON valid (a digit) is not damage; the entry just differs."""
    others, _, _ = damaged_file(log_path, "digit")
    got = read_forward(log_path)
    assert len(got) == 5
    assert [got[0], got[1], got[3], got[4]] == others
    assert check_file(log_path).ok


def test_default_damage_report_is_a_logged_warning(
    log_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Without on_damage, readers log a warning on the betty_otel logger for each damaged region."""
    damaged_file(log_path, "colon")
    with caplog.at_level(logging.WARNING, logger="betty_otel"):
        assert len(read_forward(log_path)) == 4
    assert any("damaged" in r.getMessage() for r in caplog.records if is_betty_record(r))


@pytest.mark.parametrize("position", DAMAGE_POSITIONS)
def test_append_after_damage_works_and_keeps_the_damaged_region(
    log_path: Path, position: str
) -> None:
    """Appends go after the damage without rewriting it; the damaged bytes stay for forensics."""
    others, _, _ = damaged_file(log_path, position)
    before = log_path.read_bytes()
    append_entries(log_path, [make_entry(10)])
    after = log_path.read_bytes()
    assert after.startswith(before[: -len(b"\n]\n")])
    assert after == before[: -len(b"\n]\n")] + b",\n" + orjson.dumps(make_entry(10)) + b"\n]\n"
    damage, report = collect_damage()
    assert read_forward(log_path, on_damage=report) == [*others, make_entry(10)]
    assert read_backward(log_path, on_damage=report) == [make_entry(10), *others[::-1]]
    assert damage
    assert not list(log_path.parent.glob("*.torn-*"))


TORN_TAILS = [
    b',\n{"skill": "x", "inp',  # cut inside a string
    b',\n{"skill": "x", "args": [1, 2]',  # cut right after a nested ]
    b',\n{"a": {"b": 1}',  # cut after a nested }
    b',\n{"a": "null]',  # cut inside a string ending like a value and a bracket
    b",\n",  # cut after the separator
    b",",  # cut after the comma
    b',\n{"a": 1},\n{"b": [',  # two entries, the second one torn
]


@pytest.mark.parametrize("tail", TORN_TAILS)
def test_torn_tail_is_skipped_silently_and_reading_never_writes(
    log_path: Path, tail: bytes
) -> None:
    """A torn tail is invisible to readers (no damage reported); reading leaves the file as is."""
    entries = [make_entry(n) for n in range(3)]
    log_path.write_bytes(canonical(entries)[: -len(b"\n]\n")] + tail)
    before = log_path.read_bytes()
    mtime = log_path.stat().st_mtime_ns
    expected = entries + ([{"a": 1}] if tail.startswith(b',\n{"a": 1},') else [])
    assert_readers_agree(log_path, expected)
    report = check_file(log_path)
    assert report.torn_tail
    assert not report.damage
    assert report.entries == len(expected)
    assert log_path.read_bytes() == before
    assert log_path.stat().st_mtime_ns == mtime


@pytest.mark.parametrize("tail", TORN_TAILS)
def test_repair_cuts_the_torn_tail_and_saves_it(
    log_path: Path, tail: bytes, caplog: pytest.LogCaptureFixture
) -> None:
    """repair() keeps every complete entry, closes the array, saves removed bytes to .torn-<UTC>."""
    entries = [make_entry(n) for n in range(3)]
    if tail.startswith(b',\n{"a": 1},'):
        entries.append({"a": 1})
        tail = tail[len(b',\n{"a": 1}') :]
    body = canonical(entries)[: -len(b"\n]\n")]
    log_path.write_bytes(body + tail)
    store = TelemetryStore(log_path)
    with caplog.at_level(logging.WARNING, logger="betty_otel"):
        removed = store.repair()
    assert removed == len(tail)
    assert log_path.read_bytes() == canonical(entries)
    torn = [p for p in log_path.parent.iterdir() if TORN_NAME.match(p.name)]
    assert len(torn) == 1
    assert torn[0].read_bytes() == tail
    assert any("torn" in r.getMessage() for r in caplog.records)
    assert store.repair() == 0  # nothing left to repair
    store.append([make_entry(9)])
    store.close()
    assert load_strict(log_path) == [*entries, make_entry(9)]


@pytest.mark.parametrize("tail", TORN_TAILS)
def test_append_repairs_a_torn_tail_first(log_path: Path, tail: bytes) -> None:
    """The next append repairs a torn tail under the lock and then appends normally."""
    entries = [make_entry(n) for n in range(3)]
    log_path.write_bytes(canonical(entries)[: -len(b"\n]\n")] + tail)
    append_entries(log_path, [make_entry(9)])
    data = load_strict(log_path)
    assert data[:3] == entries
    assert data[-1] == make_entry(9)
    assert len(data) in (4, 5)
    assert check_file(log_path).ok


def test_repair_of_a_healthy_file_changes_nothing(log_path: Path) -> None:
    """repair() on a valid file returns 0, writes nothing and saves nothing."""
    for layout in ("canonical", "indent2", "compact_one_line", "crlf"):
        log_path.write_bytes(LAYOUTS[layout](tricky_entries()))
        before = log_path.read_bytes()
        store = TelemetryStore(log_path)
        assert store.repair() == 0
        store.close()
        assert log_path.read_bytes() == before, layout
    assert [p.name for p in log_path.parent.iterdir()] == ["telemetry.json"]


def test_repair_of_a_missing_closing_bracket_saves_nothing(log_path: Path) -> None:
    """A file cut just before ``]`` loses only whitespace: repaired without a .torn file."""
    entries = [make_entry(1), make_entry(2)]
    log_path.write_bytes(canonical(entries)[:-2])
    store = TelemetryStore(log_path)
    assert store.repair() == 1
    store.close()
    assert log_path.read_bytes() == canonical(entries)
    assert [p.name for p in log_path.parent.iterdir()] == ["telemetry.json"]


@pytest.mark.parametrize("cut", ["inside_last", "after_last_brace", "after_last_brace_newline"])
def test_repair_of_a_torn_legacy_file_keeps_complete_elements(log_path: Path, cut: str) -> None:
    """An old writer killed mid-dump (indent=2 prefix): readers and repair keep every complete
    element, including one whose closing brace arrived but not its comma or the bracket."""
    entries = tricky_entries()
    full = indent2(entries)
    brace = full.rindex(b"}") + 1  # the last element's closing brace
    end, complete = {
        "inside_last": (full.rindex(b'"args"'), entries[:-1]),
        "after_last_brace": (brace, entries),
        "after_last_brace_newline": (brace + 1, entries),
    }[cut]
    log_path.write_bytes(full[:end])
    assert_readers_agree(log_path, complete)
    report = check_file(log_path)
    assert report.torn_tail
    assert report.entries == len(complete)
    store = TelemetryStore(log_path)
    store.repair()
    assert load_strict(log_path) == complete
    store.append([make_entry(7)])
    store.close()
    assert load_strict(log_path) == [*complete, make_entry(7)]


def test_data_after_the_closing_bracket_is_removed_by_repair(log_path: Path) -> None:
    """Bytes after the array's end (e.g. ``]`` twice) are a torn tail that repair removes."""
    entries = [make_entry(1), make_entry(2)]
    for junk in (b"]", b"\n]\n", b"}\n]", b"\n  1]", b"x", b"\x00\x00", b"\n{"):
        log_path.write_bytes(canonical(entries) + junk)
        assert_readers_agree(log_path, entries)
        append_entries(log_path, [make_entry(3)])
        assert load_strict(log_path) == [*entries, make_entry(3)], junk


@pytest.mark.parametrize(
    "junk", [b"{}", b"\n{}", b'\n{"x":1}\n{"y":2}\n', b"\n{}\n]\n", b'{"a":1}\n]\n']
)
def test_entry_lines_after_the_end_are_removed_not_kept_as_entries(
    log_path: Path, junk: bytes
) -> None:
    """Lines that look like entries after a complete array (JSON Lines appended to it) are not
    mistaken for its tail: repair and the next append leave strict JSON with the real entries."""
    entries = [make_entry(1), make_entry(2)]
    log_path.write_bytes(canonical(entries) + junk)
    append_entries(log_path, [make_entry(3)])
    assert load_strict(log_path) == [*entries, make_entry(3)]
    saved = [p.read_bytes() for p in log_path.parent.glob("telemetry.json.torn-*")]
    assert saved == [b"\n]\n" + junk]


# ---------------------------------------------------------------------------
# Hypothesis: truncation at any offset, garbage after a valid file
# ---------------------------------------------------------------------------

json_leaf = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**63 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=12)
)
json_value = st.recursive(
    json_leaf,
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=6), children, max_size=3)
    ),
    max_leaves=8,
)
entries_strategy = st.dictionaries(st.text(max_size=8), json_value, max_size=4)
batches_strategy = st.lists(
    st.lists(entries_strategy, min_size=1, max_size=4), min_size=1, max_size=5
)
START_LAYOUTS = ["missing", "canonical", "indent2", "compact_one_line", "crlf", "bom"]

HYPOTHESIS = settings(
    deadline=None,
    max_examples=150,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


def _is_prefix(got: list[Any], appended: list[Any]) -> bool:
    return got == appended[: len(got)]


@HYPOTHESIS
@given(
    start=st.sampled_from(START_LAYOUTS),
    initial=st.lists(entries_strategy, min_size=1, max_size=3),
    batches=batches_strategy,
    data=st.data(),
)
def test_truncation_anywhere_reads_a_prefix_and_repairs_to_it(
    start: str, initial: list[Entry], batches: list[list[Entry]], data: st.DataObject
) -> None:
    """Cut the file anywhere: readers give a prefix of the appends; repair() leaves strict JSON."""
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "telemetry.json"
        appended: list[Entry] = []
        if start != "missing":
            path.write_bytes(LAYOUTS[start](initial))
            appended.extend(initial)
        for batch in batches:
            append_entries(path, batch)
            appended.extend(batch)
        full = path.read_bytes()
        assert json.loads(full) == appended
        cut = data.draw(st.integers(min_value=0, max_value=len(full)), label="cut")
        path.write_bytes(full[:cut])

        damage, report = collect_damage()
        oldest_first = read_forward(path, on_damage=report)
        newest_first = read_backward(path, on_damage=report)
        assert damage == []
        assert _is_prefix(oldest_first, appended)
        assert newest_first == oldest_first[::-1]
        assert path.read_bytes() == full[:cut]  # reading never writes

        store = TelemetryStore(path)
        try:
            store.repair()
            repaired = path.read_bytes()
            if repaired.strip():
                assert json.loads(repaired) == oldest_first
            else:
                assert oldest_first == []
            store.append([{"next": True}])
        finally:
            store.close()
        assert load_strict(path) == [*oldest_first, {"next": True}]
        assert check_file(path).ok


@HYPOTHESIS
@given(
    start=st.sampled_from(START_LAYOUTS),
    initial=st.lists(entries_strategy, min_size=1, max_size=3),
    batches=batches_strategy,
    last=st.lists(entries_strategy, min_size=1, max_size=4),
    data=st.data(),
)
def test_crash_inside_an_append_keeps_every_acknowledged_entry(
    start: str,
    initial: list[Entry],
    batches: list[list[Entry]],
    last: list[Entry],
    data: st.DataObject,
) -> None:
    """A writer dies after k bytes of its write (old bytes beyond them intact): every entry of
    an append that returned survives in both readers and in repair(), which leaves strict JSON."""
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "telemetry.json"
        acknowledged: list[Entry] = []
        if start != "missing":
            path.write_bytes(LAYOUTS[start](initial))
            acknowledged.extend(initial)
        for batch in batches:
            append_entries(path, batch)
            acknowledged.extend(batch)
        old = path.read_bytes()
        append_entries(path, last)
        new = path.read_bytes()
        pos = next(
            (i for i, (a, b) in enumerate(zip(old, new, strict=False)) if a != b),
            min(len(old), len(new)),
        )
        written = data.draw(st.integers(min_value=0, max_value=len(new) - pos), label="written")
        crashed = new[: pos + written] + old[pos + written :]
        path.write_bytes(crashed)

        damage, report = collect_damage()
        oldest_first = read_forward(path, on_damage=report)
        assert read_backward(path, on_damage=report) == oldest_first[::-1]
        assert damage == []
        assert oldest_first[: len(acknowledged)] == acknowledged
        assert _is_prefix(oldest_first, acknowledged + last)
        assert path.read_bytes() == crashed

        store = TelemetryStore(path)
        try:
            store.repair()
            assert load_strict(path) == oldest_first
            store.append([{"next": True}])
        finally:
            store.close()
        assert load_strict(path) == [*oldest_first, {"next": True}]
        assert check_file(path).ok


@HYPOTHESIS
@given(
    entries=st.lists(entries_strategy, min_size=1, max_size=6),
    garbage=st.binary(min_size=1, max_size=4096) | st.integers(1, 4096).map(lambda n: b"\0" * n),
    layout=st.sampled_from(["canonical", "indent2", "no_final_newline", "compact_one_line"]),
)
def test_garbage_after_a_valid_file_is_removed_by_repair(
    entries: list[Entry], garbage: bytes, layout: str
) -> None:
    """Random bytes or NULs after a complete array: repair removes them and every entry remains."""
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "telemetry.json"
        path.write_bytes(LAYOUTS[layout](entries) + garbage)
        store = TelemetryStore(path)
        try:
            store.repair()
            assert load_strict(path) == entries
            store.append([{"next": True}])
        finally:
            store.close()
        assert load_strict(path) == [*entries, {"next": True}]
